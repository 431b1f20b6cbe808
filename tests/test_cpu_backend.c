/*
 * test_cpu_backend.c - the LLVM CPU backend against the CPU reference.
 *
 * Plans are created on a context with device PRISM_DEVICE_CPU and driven
 * through the public API with host pointers, exactly like GPU plans.  Each
 * case of the shape matrix, and each workload, runs every stage on fresh
 * inputs and compares it with the reference (the oracle):
 *   pooling + calibration  pooled Q and the band scales left in the plan's
 *                          workspace vs prism_ref_pool / _band_scales
 *   estimation             selection vs prism_ref_estimate: >= 99.9% of
 *                          block memberships agree (the reference is double
 *                          precision, so only near-ties may differ), and
 *                          prism_plan_density matches the selection
 *   attention              on the reference's selection, O (poisoned first,
 *                          every element checked) and LSE vs
 *                          prism_ref_attention: relative L2 <= 1e-2 (the
 *                          output is bf16/fp16), LSE within 1e-3
 *   prefill                end to end: its selection equals estimate's, and
 *                          its output matches the reference on it
 * Then dense attention (the full selection) against the direct dense
 * reference.  test_cpu_api.c covers the API around it.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "test_cpu_common.h"

static const cpu_case matrix[] = {
    {"d128-gqa4-bf16-mixed", 128, 8, 2, 128, 1, {2500}, {2500}, false, false,
     BF16, HALF, PRISM_WORKLOAD_MIXED},
    {"d64-mha-fp16-inter-sk>sq", 64, 4, 4, 128, 1, {700}, {956}, false, true,
     FP16, INTER, -1},
    {"d256-gqa8-bf16-inter-slash", 256, 8, 1, 128, 1, {600}, {856}, false,
     false, BF16, INTER, PRISM_WORKLOAD_SLASH},
    {"d64-gqa4-fp16-bs64-batch2", 64, 4, 1, 64, 2, {333}, {461}, false, false,
     FP16, HALF, PRISM_WORKLOAD_LOCAL},
    {"d128-ragged3-bf16-gqa4", 128, 8, 2, 128, 3, {300, 1100, 77},
     {300, 1228, 333}, true, true, BF16, HALF, -1},
    {"d64-ragged3-fp16-gqa8", 64, 8, 1, 128, 3, {513, 128, 1000},
     {641, 128, 1000}, true, true, FP16, INTER, -1},
    {"d256-ragged3-bf16-mha", 256, 2, 2, 128, 3, {200, 450, 129},
     {200, 450, 257}, true, false, BF16, HALF, -1},
    {"d128-ragged3-fp16-inter", 128, 4, 1, 128, 3, {129, 700, 1},
     {257, 700, 129}, true, true, FP16, INTER, -1},
};

/* ---- checks ------------------------------------------------------------ */

/* Pooled Q and the band scales the plan left in its workspace. */
static void check_pooling(const case_data *d, prism_plan *plan) {
    char err[512];
    const prism_config *cfg = &d->cfg;
    int B = d->batch.batch, Hq = cfg->q_heads, D = cfg->head_dim;
    prism_workspace ws;
    prism_ws_shape shape = {B, d->max_sq, d->max_sk, Hq, cfg->kv_heads};
    prism_workspace_layout(plan, &shape, &ws);
    const char *base = plan->workspace;
    prism_pooled pq, pk;
    cr_assert_eq(prism_ref_pool(&d->q.view, d->vl ? d->cu_q : NULL, B,
                                cfg->block_size, 0, &pq, err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(prism_ref_pool(&d->k.view, d->vl ? d->cu_k : NULL, B,
                                cfg->block_size, 0, &pk, err, sizeof err),
                 PRISM_OK, "%s", err);
    const float *mine = (const float *)(base + ws.at[PRISM_WS_POOLED_Q]);
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++)
            for (int n = 0; n < pq.seq_blocks[b]; n++)
                for (int e = 0; e < D; e++) {
                    size_t at = (((size_t)b * Hq + h) * pq.nblocks + n) * D + e;
                    double diff = fabs((double)mine[at] - pq.data[at]) /
                                  fmax(1.0, fabs(pq.data[at]));
                    worst = diff > worst ? diff : worst;
                }
    cr_expect_lt(worst, 1e-4, "%s: pooled Q differs by %g", cfg->name, worst);
    const float *inv = (const float *)(base + ws.at[PRISM_WS_SCALES]);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            double sh, sl;
            cr_assert_eq(prism_ref_band_scales(cfg, true, &pq, &pk, b, h, &sh,
                                               &sl, err, sizeof err),
                         PRISM_OK, "%s", err);
            const float *g = inv + ((size_t)b * Hq + h) * 2;
            if (pq.seq_blocks[b] == 0)
                continue;
            cr_expect_lt(fabs(1.0 / g[0] - sh) / sh, 1e-3,
                         "%s: scale_high b%d h%d %g vs %g", cfg->name, b, h,
                         1.0 / g[0], sh);
            cr_expect_lt(fabs(1.0 / g[1] - sl) / sl, 1e-3,
                         "%s: scale_low b%d h%d %g vs %g", cfg->name, b, h,
                         1.0 / g[1], sl);
        }
    prism_pooled_free(&pq);
    prism_pooled_free(&pk);
}

/* Output (in the input dtype, at o) and LSE vs the reference on sel. */
static void check_output(const case_data *d, const void *o, const float *lse,
                         const prism_selection *sel, const char *stage) {
    char err[512];
    const prism_config *cfg = &d->cfg;
    host_tensor ref = tensor_new(PRISM_DTYPE_FP32, d->B_view, cfg->q_heads,
                                 d->S_q, cfg->head_dim, false);
    size_t lse_n = (size_t)d->B_view * cfg->q_heads * d->S_q;
    float *lse_ref = malloc(lse_n * sizeof(float));
    prism_ref_attention_options opt = {.lse = lse_ref};
    cr_assert_eq(prism_ref_attention(&d->q.view, &d->k.view, &d->v.view, d->vl,
                                     sel, &opt, &ref.view, err, sizeof err),
                 PRISM_OK, "%s", err);
    prism_tensor_view out = d->q.view;
    out.data = (void *)o;
    int64_t unwritten = 0;
    for (int64_t b = 0; b < out.shape[0]; b++)
        for (int64_t h = 0; h < out.shape[1]; h++)
            for (int64_t s = 0; s < out.shape[2]; s++)
                for (int64_t e = 0; e < out.shape[3]; e++)
                    unwritten += isnan(prism_view_load(&out, b, h, s, e));
    cr_expect_eq(unwritten, 0, "%s %s: %lld output elements unwritten (NaN)",
                 cfg->name, stage, (long long)unwritten);
    prism_ref_summary sum;
    cr_assert_eq(prism_ref_output_error(&out, &ref.view, d->vl, &sum, NULL,
                                        err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_expect_leq(sum.max, 1e-2, "%s %s: relative L2 error max %g mean %g",
                  cfg->name, stage, sum.max, sum.mean);
    double worst = 0;
    for (size_t i = 0; i < lse_n; i++) {
        if (isinf(lse_ref[i]) && lse[i] == lse_ref[i])
            continue;
        double diff = fabs((double)lse[i] - lse_ref[i]);
        if (!(diff <= worst))
            worst = isnan(diff) ? INFINITY : diff;
    }
    cr_expect_leq(worst, 1e-3, "%s %s: LSE differs by %g", cfg->name, stage,
                  worst);
    cr_log_info("%s %s: relative L2 max %.2e mean %.2e, LSE max diff %.2e",
                cfg->name, stage, sum.max, sum.mean, worst);
    free(lse_ref);
    free(ref.data);
}

static void check_agreement(const case_data *d, const prism_selection *ref,
                            const prism_selection *mine) {
    char err[512];
    cr_assert_eq(prism_selection_validate(mine, err, sizeof err), PRISM_OK,
                 "%s: selection malformed: %s", d->cfg.name, err);
    prism_ref_agreement agree;
    prism_selection_diff diffs[8];
    cr_assert_eq(prism_ref_selection_agreement(ref, mine, &agree, diffs, 8,
                                               err, sizeof err),
                 PRISM_OK, "%s", err);
    for (int i = 0; i < agree.differ && i < 8; i++)
        cr_log_info("%s: selection differs at b%d h%d row %d block %d "
                    "(ref %d, cpu %d)",
                    d->cfg.name, diffs[i].b, diffs[i].h, diffs[i].i,
                    diffs[i].j, diffs[i].in_a, diffs[i].in_b);
    cr_expect_geq(agree.share, 0.999, "%s: selections agree on %.5f of %lld",
                  d->cfg.name, agree.share, (long long)agree.compared);
    cr_log_info("%s: selections agree on %lld of %lld blocks, density %.3f",
                d->cfg.name, (long long)(agree.compared - agree.differ),
                (long long)agree.compared, prism_ref_density(mine, NULL));
}

static void run_case(const cpu_case *c, uint64_t seed) {
    char err[512];
    case_data d;
    build_inputs(c, seed, &d);
    prism_context *ctx = cpu_context(0);
    prism_plan *plan = cpu_plan(ctx, &d, false);
    cr_expect_eq(prism_plan_arch(plan), PRISM_ARCH_COUNT_);
    prism_tensor tq = api_tensor(&d.q), tk = api_tensor(&d.k),
                 tv = api_tensor(&d.v);

    /* estimation */
    prism_selection ref = new_selection(&d), mine = new_selection(&d);
    prism_ref_estimate_options eo = {.method = PRISM_REF_PRISM};
    cr_assert_eq(prism_ref_estimate(&d.q.view, &d.k.view, d.vl, &d.cfg, &eo,
                                    &ref, NULL, NULL, err, sizeof err),
                 PRISM_OK, "%s", err);
    poison_selection(&mine);
    prism_block_mask mask = mask_of(&mine);
    cr_assert_eq(prism_estimate(plan, &d.batch, &tq, &tk, &mask, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    check_agreement(&d, &ref, &mine);
    double density = -1;
    cr_assert_eq(prism_plan_density(plan, &density), PRISM_OK);
    cr_expect_lt(fabs(density - prism_ref_density(&mine, NULL)), 1e-12,
                 "%s: density %g vs %g", c->name, density,
                 prism_ref_density(&mine, NULL));
    check_pooling(&d, plan);

    /* attention on the reference's selection */
    size_t o_bytes = tensor_bytes(&d.q);
    size_t lse_bytes = (size_t)d.B_view * c->q_heads * d.S_q * sizeof(float);
    void *o = malloc(o_bytes);
    float *lse = malloc(lse_bytes);
    memset(o, 0xff, o_bytes);
    memset(lse, 0xff, lse_bytes);
    prism_tensor to = {o, d.q.view.stride[0], d.q.view.stride[1],
                       d.q.view.stride[2]};
    prism_block_mask ref_mask = mask_of(&ref);
    cr_assert_eq(prism_sparse_attention(plan, &d.batch, &tq, &tk, &tv,
                                        &ref_mask, &to, lse, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    check_output(&d, o, lse, &ref, "attention");

    /* prefill end to end */
    prism_selection pre = new_selection(&d);
    poison_selection(&pre);
    prism_block_mask pre_mask = mask_of(&pre);
    memset(o, 0xff, o_bytes);
    memset(lse, 0xff, lse_bytes);
    cr_assert_eq(prism_prefill(plan, &d.batch, &tq, &tk, &tv, &to, lse,
                               &pre_mask, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    prism_ref_agreement same;
    cr_assert_eq(prism_ref_selection_agreement(&mine, &pre, &same, NULL, 0, err,
                                               sizeof err),
                 PRISM_OK, "%s", err);
    cr_expect_eq(same.differ, 0, "%s: prefill selected differently",
                 c->name);
    check_output(&d, o, lse, &pre, "prefill");

    free(o);
    free(lse);
    prism_selection_free(&ref);
    prism_selection_free(&mine);
    prism_selection_free(&pre);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    free_inputs(&d);
}

/* ---- the suites ------------------------------------------------------------ */

ParameterizedTestParameters(cpu_backend, matrix) {
    return cr_make_param_array(cpu_case, matrix,
                               sizeof matrix / sizeof matrix[0]);
}

ParameterizedTest(const cpu_case *c, cpu_backend, matrix, .timeout = 300) {
    cr_log_info("case %s", c->name);
    run_case(c, 0x5eed0000u + (uint64_t)c->head_dim);
}

typedef struct workload_case {
    int kind;
} workload_case;

ParameterizedTestParameters(cpu_backend, workloads) {
    static workload_case kinds[PRISM_WORKLOAD_COUNT_];
    for (int i = 0; i < PRISM_WORKLOAD_COUNT_; i++)
        kinds[i].kind = i;
    return cr_make_param_array(workload_case, kinds, PRISM_WORKLOAD_COUNT_);
}

/* Every workload on one shape, alternating head dim, dtype and layout. */
ParameterizedTest(const workload_case *w, cpu_backend, workloads,
                  .timeout = 300) {
    bool odd = w->kind % 2;
    cpu_case c = {"", odd ? 64 : 128, 4, odd ? 2 : 1, 128, 1, {1100},
                  {1228}, false, odd, odd ? FP16 : BF16, odd ? INTER : HALF,
                  w->kind};
    snprintf(c.name, sizeof c.name, "workload-%s",
             prism_workload_name((prism_workload_kind)w->kind));
    run_case(&c, 17 + (uint64_t)w->kind);
}

/* With every block selected the kernel is dense causal attention: compare
 * with the direct (blockless, all-double) reference. */
Test(cpu_backend, full_selection_is_dense_attention, .timeout = 300) {
    char err[512];
    cpu_case c = {"dense", 128, 4, 2, 128, 1, {400}, {528}, false, false,
                  BF16, HALF, -1};
    case_data d;
    build_inputs(&c, 3, &d);
    prism_context *ctx = cpu_context(0);
    prism_plan *plan = cpu_plan(ctx, &d, false);
    prism_selection full = new_selection(&d);
    prism_selection_fill_full(&full);
    prism_block_mask m = mask_of(&full);
    size_t n = (size_t)c.q_heads * d.S_q;
    void *o = malloc(tensor_bytes(&d.q));
    float *lse = malloc(n * sizeof(float)), *lse_ref = malloc(n * sizeof(float));
    memset(o, 0xff, tensor_bytes(&d.q));
    prism_tensor tq = api_tensor(&d.q), tk = api_tensor(&d.k),
                 tv = api_tensor(&d.v), to = tq;
    to.data = o;
    cr_assert_eq(prism_sparse_attention(plan, &d.batch, &tq, &tk, &tv, &m, &to,
                                        lse, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    host_tensor ref = tensor_new(PRISM_DTYPE_FP32, 1, c.q_heads, d.S_q,
                                 c.head_dim, false);
    cr_assert_eq(prism_ref_attention_dense_direct(&d.q.view, &d.k.view,
                                                  &d.v.view, NULL, 0.0, 0,
                                                  &ref.view, lse_ref, err,
                                                  sizeof err),
                 PRISM_OK, "%s", err);
    prism_tensor_view out = d.q.view;
    out.data = o;
    prism_ref_summary sum;
    cr_assert_eq(prism_ref_output_error(&out, &ref.view, NULL, &sum, NULL, err,
                                        sizeof err),
                 PRISM_OK);
    cr_expect_leq(sum.max, 1e-2, "dense: relative L2 %g", sum.max);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)lse[i] - lse_ref[i]));
    cr_expect_leq(worst, 1e-3, "dense: LSE differs by %g", worst);
    free(ref.data);
    free(o);
    free(lse);
    free(lse_ref);
    prism_selection_free(&full);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    free_inputs(&d);
}

