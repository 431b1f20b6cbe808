/*
 * test_cpu_common.h - helpers shared by the CPU backend's suites
 * (test_cpu_backend.c: numerics against the reference; test_cpu_api.c: the
 * API, workspaces, cache and `prism run`): the inputs (test_inputs.h,
 * shared with test_gpu.c), and CPU contexts and plans.  Header-only, like
 * test_ref_common.h, because every test file is its own executable.  A
 * suite skips when libprism was built without the LLVM backend.
 */
#ifndef PRISM_TEST_CPU_COMMON_H
#define PRISM_TEST_CPU_COMMON_H

#include <criterion/criterion.h>

#include "runtime/cpu/cpu_backend.h"
#include "reference/reference.h"
#include "test_inputs.h"

typedef input_case cpu_case;

#define BF16 PRISM_DTYPE_BF16
#define FP16 PRISM_DTYPE_FP16
#define HALF PRISM_ROPE_HALF
#define INTER PRISM_ROPE_INTERLEAVED

/* ---- CPU contexts and plans ------------------------------------------ */

static inline prism_tensor api_tensor(const host_tensor *t) {
    prism_tensor a = {t->data, t->view.stride[0], t->view.stride[1],
                      t->view.stride[2]};
    return a;
}

/* A CPU context (threads 0 = all CPUs); the suite skips without LLVM. */
static inline prism_context *cpu_context(int threads) {
    prism_context_options o;
    prism_context_options_init(&o);
    o.device = PRISM_DEVICE_CPU;
    o.cpu_threads = threads;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    return ctx;
}

static inline prism_plan *cpu_plan(prism_context *ctx, const case_data *d,
                            bool caller_workspace) {
    prism_plan_limits limits = {d->batch.batch, d->max_sq, d->max_sk,
                                caller_workspace, false};
    prism_plan *plan = NULL;
    prism_status st = prism_plan_create(ctx, &d->cfg, &limits, &plan);
    if (st == PRISM_ERR_UNSUPPORTED &&
        strstr(prism_context_last_error(ctx), "without"))
        cr_skip_test("%s", prism_context_last_error(ctx));
    cr_assert_eq(st, PRISM_OK, "%s: %s", d->cfg.name,
                 prism_context_last_error(ctx));
    return plan;
}

static inline prism_selection new_selection(const case_data *d) {
    prism_selection sel;
    char err[512];
    cr_assert_eq(prism_selection_alloc_for(&sel, d->batch.batch,
                                           d->cfg.q_heads, d->S_q, d->S_k,
                                           d->vl, d->cfg.block_size, err,
                                           sizeof err),
                 PRISM_OK, "%s", err);
    return sel;
}

static inline prism_block_mask mask_of(prism_selection *sel) {
    return (prism_block_mask){sel->counts, sel->indices, sel->nq, sel->nk};
}

static inline void poison_selection(prism_selection *sel) {
    size_t rows = (size_t)sel->B * sel->Hq * sel->nq;
    memset(sel->counts, 0xff, rows * sizeof(int32_t));
    memset(sel->indices, 0xff, rows * sel->nk * sizeof(int32_t));
}

#endif /* PRISM_TEST_CPU_COMMON_H */
