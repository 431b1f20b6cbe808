/*
 * plan.h - a plan's internals, shared by plan.c and the backends.
 *
 * A plan is device-neutral: the config and limits it was made for, its
 * workspace, its last error, and a backend (runtime/backend.h) whose state
 * sits behind `impl`.
 */
#ifndef PRISM_PLAN_H
#define PRISM_PLAN_H

#include "runtime/context.h"

struct prism_backend;

struct prism_plan {
    prism_context *ctx;
    const struct prism_backend *backend;
    void *impl;            /* the backend's state, owned by the backend */
    prism_config cfg;      /* valid; the config the kernels were built from */
    prism_plan_limits limits;
    prism_arch arch;       /* PRISM_ARCH_COUNT_ off the GPU */
    void *workspace;       /* owned (backend memory), NULL with caller_workspace */
    size_t workspace_size;
    bool has_estimate;     /* an estimate or prefill has run */
    char last_error[PRISM_ERRMSG_MAX];
};

/* Records a message in the plan's last-error slot and returns status. */
prism_status prism_plan_fail(prism_plan *plan, prism_status status,
                             const char *fmt, ...) PRISM_PRINTF(3, 4);

static inline int prism_ceil_div(int a, int b) { return (a + b - 1) / b; }

#endif
