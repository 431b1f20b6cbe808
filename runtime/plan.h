/*
 * plan.h - a plan's internals, shared by plan.c (creation) and launch.c.
 */
#ifndef PRISM_PLAN_H
#define PRISM_PLAN_H

#include "runtime/context.h"
#include "base/cuda_driver.h"
#include "gen/launch.h"
#include "gen/kernels.h"

/* One loaded kernel, in the slot of its role (gen/kernels.h). */
typedef struct plan_kernel {
    CUmodule module;
    CUfunction main;           /* the spec's entry point 0                  */
    CUfunction second;         /* entry point 1: the schedule kernel of the
                                  persistent attention, or 0                */
    const char *main_name, *second_name;
    prism_launch_shape shape;  /* from the spec (gen/launch.c)              */
    int dynamic_smem;          /* dynamic bytes the function is set up for  */
} plan_kernel;

/* Byte offsets of the workspace regions (see workspace_layout in plan.c). */
typedef struct plan_workspace {
    size_t pooled_q, pooled_k, stats_q, stats_k, totals, scales, counts,
        indices, schedule, split_arrived, partial_o, partial_ml, total;
    int split_slots; /* partial slots for split rows (persistent kernel) */
    size_t stats_bytes; /* stats_q .. totals, zeroed before each estimate */
} plan_workspace;

struct prism_plan {
    prism_context *ctx;
    prism_config cfg;
    prism_plan_limits limits;
    prism_arch arch;
    const prism_driver *drv;
    CUdevice device;
    CUcontext cu_ctx;
    int sm_count;         /* multiprocessors: the persistent grid size */
    prism_module *module;
    plan_kernel kernels[PRISM_KERNEL_COUNT];
    CUdeviceptr workspace; /* owned, or 0 with caller_workspace */
    size_t workspace_size;
    CUdeviceptr last_totals; /* selected / block-causal counts of the last
                                estimate (device, 2 x u64) */
    prism_stream last_stream;
    bool has_estimate;
    char last_error[PRISM_ERRMSG_MAX];
    struct prism_cpu_plan *cpu; /* CPU plans only (cpu_backend.h); then
                                   none of the CUDA fields is used */
};

/* Records a message in the plan's last-error slot and returns status. */
prism_status prism_plan_fail(prism_plan *plan, prism_status status,
                             const char *fmt, ...) PRISM_PRINTF(3, 4);

/* The workspace regions for a batch of `batch` sequences of up to
 * seqlen_q / seqlen_k tokens. */
void prism_plan_workspace_layout(const prism_plan *plan, int batch,
                                 int seqlen_q, int seqlen_k,
                                 plan_workspace *ws);

static inline int prism_ceil_div(int a, int b) { return (a + b - 1) / b; }

#endif
