/*
 * test_gpu.c - the GPU kernels against the CPU reference.
 *
 * Skips cleanly where there is no driver or device.  On a GPU, every case
 * of the matrix below runs the three stages and compares each with the
 * reference on fresh inputs:
 *   pooling + calibration  pooled Q/K and band scales read from the plan's
 *                          workspace vs prism_ref_pool / _band_scales
 *   estimation             GPU selection vs prism_ref_estimate: >= 99.9%
 *                          of block memberships agree (near-ties differ)
 *   attention              on the reference's selection, O and LSE vs
 *                          prism_ref_attention within 1e-2 relative L2;
 *                          outputs poisoned first, every element checked
 *   prefill                end to end, against the reference attention on
 *                          the GPU's own selection, and its density
 * A second matrix runs the same stages with run-time parameters
 * (prism_params in the batch) on a plan made from a config with other
 * values and other head counts: thresholds 0.9 and 0.98, uncalibrated
 * temperatures, a softmax scale, tensor-parallel shards of 4 / 1 and
 * 24 / 3 heads; the reference runs the config with the params applied.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "gpu_testutil.h"
#include "base/half.h"
#include "config/params.h"
#include "runtime/workspace.h"
#include "runtime/plan.h"
#include "reference/reference.h"
#include "test_inputs.h"

#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

typedef input_case gpu_case; /* block_size 0: the config default, 128 */

static const gpu_case cases[] = {
    {"d128-gqa4-bf16-mixed", 128, 8, 2, 0, 1, {1536}, {1536}, false, false,
     PRISM_DTYPE_BF16, PRISM_ROPE_HALF, PRISM_WORKLOAD_MIXED},
    {"d128-gqa8-fp16-random-odd", 128, 8, 1, 0, 1, {1000}, {1000}, false, true,
     PRISM_DTYPE_FP16, PRISM_ROPE_HALF, -1},
    {"d64-mha-bf16-sk>sq", 64, 4, 4, 0, 2, {700}, {956}, false, false,
     PRISM_DTYPE_BF16, PRISM_ROPE_INTERLEAVED, PRISM_WORKLOAD_MIXED},
    {"d256-gqa4-fp16-interleaved", 256, 4, 1, 0, 1, {900}, {1156}, false, false,
     PRISM_DTYPE_FP16, PRISM_ROPE_INTERLEAVED, PRISM_WORKLOAD_SLASH},
    {"d128-ragged3-bf16", 128, 8, 2, 0, 3, {300, 1100, 77}, {300, 1228, 333},
     true, true, PRISM_DTYPE_BF16, PRISM_ROPE_HALF, -1},
    {"d64-ragged3-fp16-gqa8", 64, 8, 1, 0, 3, {513, 128, 1000}, {641, 128, 1000},
     true, true, PRISM_DTYPE_FP16, PRISM_ROPE_HALF, -1},
    {"d256-mha-bf16-ragged", 256, 2, 2, 0, 3, {200, 450, 129}, {200, 450, 257},
     true, true, PRISM_DTYPE_BF16, PRISM_ROPE_HALF, -1},
    /* 32 heads x 16 query tiles = 512 work items: on an H100 (132 SMs) each
     * CTA of the persistent sm_90a kernel takes several, so barrier phases,
     * the Q hand-over and the work queue run across items */
    {"d128-gqa4-bf16-many-items", 128, 32, 8, 0, 1, {2048}, {2048}, false, false,
     PRISM_DTYPE_BF16, PRISM_ROPE_HALF, PRISM_WORKLOAD_MIXED},
    /* the same across packed sequences (TMA stores of whole tiles, direct
     * stores where a tile passes its sequence's end) and across a fixed
     * batch (rank-4 tensor maps): 32 x 3 x 16 items (32 x 30 within the
     * sequences) and 16 x 2 x 24.  Both are more than 4 per CTA, so each
     * CTA first runs a static item while the schedule kernel builds the
     * queue (some of the ragged batch's static items lie past their
     * sequence's end and are skipped) */
    {"d128-ragged3-bf16-many-items", 128, 32, 8, 0, 3, {1000, 2048, 700},
     {1000, 2176, 700}, true, true, PRISM_DTYPE_BF16, PRISM_ROPE_HALF, -1},
    {"d64-batch2-fp16-many-items", 64, 16, 4, 0, 2, {3072}, {3072}, false, true,
     PRISM_DTYPE_FP16, PRISM_ROPE_HALF, PRISM_WORKLOAD_MIXED},
    /* 32 x 3 x 23 = 2208 items, 16 or more per CTA on an H100 (132 SMs):
     * two rounds of static items (STATIC ROUNDS in the sm_90a producer),
     * many of them past their sequence's end and skipped */
    {"d128-ragged3-bf16-static-rounds", 128, 32, 8, 0, 3, {2900, 300, 1500},
     {2900, 300, 1500}, true, false, PRISM_DTYPE_BF16, PRISM_ROPE_HALF, -1},
    /* a short query chunk over a long context: 4 heads x 2 query tiles = 8
     * rows of ~95 key blocks for 132 SMs, so the schedule splits each row
     * into pieces on several CTAs and the last one merges them */
    {"d128-gqa4-fp16-chunk-split", 128, 4, 1, 0, 1, {256}, {12160}, false, true,
     PRISM_DTYPE_FP16, PRISM_ROPE_HALF, PRISM_WORKLOAD_MIXED},
};

/* ---- device tensors and masks ------------------------------------------ */

static prism_tensor device_tensor(CUdeviceptr p, const host_tensor *t) {
    prism_tensor d = {(void *)(uintptr_t)p, t->view.stride[0],
                      t->view.stride[1], t->view.stride[2]};
    return d;
}

static prism_block_mask device_mask(const prism_selection *shape,
                                    const prism_selection *contents) {
    size_t rows = (size_t)shape->B * shape->Hq * shape->nq;
    prism_block_mask m = {.nq = shape->nq, .nk = shape->nk};
    CUdeviceptr counts, indices;
    if (contents) {
        counts = gpu_upload(contents->counts, rows * sizeof(int32_t));
        indices = gpu_upload(contents->indices, rows * shape->nk * sizeof(int32_t));
    } else {
        counts = gpu_alloc_poisoned(rows * sizeof(int32_t), 0xff);
        indices = gpu_alloc_poisoned(rows * shape->nk * sizeof(int32_t), 0xff);
    }
    m.counts = (int32_t *)(uintptr_t)counts;
    m.indices = (int32_t *)(uintptr_t)indices;
    return m;
}

static void download_mask(const prism_block_mask *m, prism_selection *sel) {
    size_t rows = (size_t)sel->B * sel->Hq * sel->nq;
    gpu_download(sel->counts, (CUdeviceptr)(uintptr_t)m->counts,
                 rows * sizeof(int32_t));
    gpu_download(sel->indices, (CUdeviceptr)(uintptr_t)m->indices,
                 rows * sel->nk * sizeof(int32_t));
}

static void free_mask(prism_block_mask *m) {
    gpu_free((CUdeviceptr)(uintptr_t)m->counts);
    gpu_free((CUdeviceptr)(uintptr_t)m->indices);
}

/* Checks pooled Q/K and the band scales left in the plan's workspace. */
static void check_pooling(const gpu_case *c, case_data *d, prism_plan *plan,
                          const prism_batch *batch) {
    char err[512];
    prism_workspace ws;
    prism_ws_shape shape = {batch->batch, batch->seqlen_q, batch->seqlen_k,
                            c->q_heads, c->kv_heads};
    prism_workspace_layout(plan, &shape, &ws);
    CUdeviceptr base = (CUdeviceptr)(uintptr_t)plan->workspace;
    prism_pooled pq, pk;
    cr_assert_eq(prism_ref_pool(&d->q.view, d->vl ? d->cu_q : NULL, c->batch,
                                128, 0, &pq, err, sizeof err), PRISM_OK, "%s", err);
    cr_assert_eq(prism_ref_pool(&d->k.view, d->vl ? d->cu_k : NULL, c->batch,
                                128, 0, &pk, err, sizeof err), PRISM_OK, "%s", err);
    size_t nq_f = (size_t)c->batch * c->q_heads * pq.nblocks * c->head_dim;
    float *gq = malloc(nq_f * sizeof(float));
    float *scales = malloc((size_t)c->batch * c->q_heads * 2 * sizeof(float));
    gpu_download(gq, base + ws.at[PRISM_WS_POOLED_Q], nq_f * sizeof(float));
    gpu_download(scales, base + ws.at[PRISM_WS_SCALES],
                 (size_t)c->batch * c->q_heads * 2 * sizeof(float));
    double worst = 0;
    for (int b = 0; b < c->batch; b++)
        for (int h = 0; h < c->q_heads; h++)
            for (int n = 0; n < pq.seq_blocks[b]; n++)
                for (int e = 0; e < c->head_dim; e++) {
                    size_t at = (((size_t)b * c->q_heads + h) * pq.nblocks + n) *
                                    c->head_dim + e;
                    double diff = fabs((double)gq[at] - pq.data[at]);
                    worst = diff > worst ? diff : worst;
                }
    cr_expect_lt(worst, 1e-4, "%s: pooled Q differs by %g", c->name, worst);
    for (int b = 0; b < c->batch; b++)
        for (int h = 0; h < c->q_heads; h++) {
            double sh, sl;
            cr_assert_eq(prism_ref_band_scales(&d->cfg, true, &pq, &pk, b, h,
                                               &sh, &sl, err, sizeof err),
                         PRISM_OK, "%s", err);
            const float *g = scales + ((size_t)b * c->q_heads + h) * 2;
            cr_expect_lt(fabs(g[0] - sh) / sh, 1e-3, "%s: scale_high b%d h%d "
                         "%g vs %g", c->name, b, h, g[0], sh);
            cr_expect_lt(fabs(g[1] - sl) / sl, 1e-3, "%s: scale_low b%d h%d "
                         "%g vs %g", c->name, b, h, g[1], sl);
        }
    free(gq);
    free(scales);
    prism_pooled_free(&pq);
    prism_pooled_free(&pk);
}

/* The softmax scale a launch of batch runs (0: 1/sqrt(D), as the
 * reference's option reads it). */
static double scale_of(const prism_batch *batch) {
    return batch->params ? batch->params->softmax_scale : 0.0;
}

/* Output (downloaded, in the input dtype) vs the reference with softmax
 * scale `scale`, and LSE. */
static void check_output(const gpu_case *c, case_data *d, const void *o_host,
                         const float *lse_gpu, const prism_selection *sel,
                         double scale, const char *stage) {
    char err[512];
    host_tensor ref = tensor_new(PRISM_DTYPE_FP32, d->B_view, c->q_heads, d->S_q,
                                 c->head_dim, false);
    size_t lse_n = (size_t)d->B_view * c->q_heads * d->S_q;
    float *lse_ref = malloc(lse_n * sizeof(float));
    prism_ref_attention_options opt = {.lse = lse_ref, .scale = scale};
    cr_assert_eq(prism_ref_attention(&d->q.view, &d->k.view, &d->v.view, d->vl,
                                     sel, &opt, &ref.view, err, sizeof err),
                 PRISM_OK, "%s", err);
    prism_tensor_view out = d->q.view;
    out.data = (void *)o_host;
    int64_t unwritten = 0;
    for (int64_t b = 0; b < out.shape[0]; b++)
        for (int64_t h = 0; h < out.shape[1]; h++)
            for (int64_t s = 0; s < out.shape[2]; s++)
                for (int64_t e = 0; e < out.shape[3]; e++)
                    unwritten += isnan(prism_view_load(&out, b, h, s, e));
    cr_expect_eq(unwritten, 0, "%s %s: %lld output elements unwritten (NaN)",
                 c->name, stage, (long long)unwritten);
    prism_ref_summary err_sum;
    cr_assert_eq(prism_ref_output_error(&out, &ref.view, d->vl, &err_sum, NULL,
                                        err, sizeof err), PRISM_OK, "%s", err);
    cr_expect_leq(err_sum.max, 1e-2, "%s %s: relative L2 error max %g mean %g",
                  c->name, stage, err_sum.max, err_sum.mean);
    double lse_worst = 0;
    for (size_t i = 0; i < lse_n; i++) {
        if (isinf(lse_ref[i]) && isinf(lse_gpu[i]))
            continue;
        double diff = fabs((double)lse_gpu[i] - lse_ref[i]);
        if (!(diff <= lse_worst)) /* NaN counts as worst */
            lse_worst = isnan(diff) ? INFINITY : diff;
    }
    cr_expect_leq(lse_worst, 1e-2, "%s %s: LSE differs by %g", c->name, stage,
                  lse_worst);
    free(lse_ref);
    free(ref.data);
}

/* Appends the override attention.param = value to cfg's tuning. */
static void tune_attention(prism_config *cfg, const char *param,
                           int64_t value) {
    cr_assert_lt(cfg->n_tuning, PRISM_MAX_TUNING);
    prism_tuning_override *t = &cfg->tuning[cfg->n_tuning++];
    snprintf(t->kernel, sizeof t->kernel, "attention");
    snprintf(t->param, sizeof t->param, "%s", param);
    t->value = value;
}

/* Attention of `plan` over `mask` (the reference's selection ref_sel) into
 * freshly poisoned O and LSE, checked against the reference. */
static void check_attention(const gpu_case *c, case_data *d, prism_plan *plan,
                            const prism_batch *batch,
                            const prism_tensor tqkv[3],
                            const prism_block_mask *mask,
                            prism_selection *ref_sel, const char *what) {
    size_t o_bytes = tensor_bytes(&d->q);
    size_t lse_bytes = (size_t)d->B_view * c->q_heads * d->S_q * sizeof(float);
    void *o_host = malloc(o_bytes);
    float *lse_host = malloc(lse_bytes);
    CUdeviceptr dout = gpu_alloc_poisoned(o_bytes, 0xff);
    CUdeviceptr dlse = gpu_alloc_poisoned(lse_bytes, 0xff);
    prism_tensor to = device_tensor(dout, &d->q);
    cr_assert_eq(prism_sparse_attention(plan, batch, &tqkv[0], &tqkv[1],
                                        &tqkv[2], mask, &to,
                                        (float *)(uintptr_t)dlse, NULL, 0,
                                        NULL),
                 PRISM_OK, "%s: %s", what, prism_plan_last_error(plan));
    gpu_download(o_host, dout, o_bytes);
    gpu_download(lse_host, dlse, lse_bytes);
    check_output(c, d, o_host, lse_host, ref_sel, scale_of(batch), what);
    gpu_free(dout);
    gpu_free(dlse);
    free(o_host);
    free(lse_host);
}

/* The config a plan of params runs is made from: the case's shape with
 * the default method and 32 / 8 heads, so that every params value and
 * head count of the launch differs from it (none of them is code). */
static prism_config model_config(const prism_config *shape) {
    prism_config m;
    prism_config_init(&m);
    prism_config c = *shape;
    prism_params defaults;
    prism_params_init_from_config(&m, &defaults);
    prism_config_apply_params(&c, &defaults);
    snprintf(c.name, sizeof c.name, "model");
    return c;
}

/* One case: with prm NULL the plan runs the case's config; else the plan
 * is made from model_config and every launch passes prm, which the
 * reference runs by applying it to the case's config. */
static void run_case(const gpu_case *c, prism_context *ctx,
                     const prism_params *prm) {
    char err[512];
    case_data d;
    build_inputs(c, (uint64_t)time(NULL) ^ ((uint64_t)c->head_dim << 32), &d);
    prism_config plan_cfg = d.cfg;
    if (prm) {
        cr_assert_eq(prm->q_heads, c->q_heads);
        cr_assert_eq(prm->kv_heads, c->kv_heads);
        prism_config_apply_params(&d.cfg, prm); /* what the reference runs */
        plan_cfg = model_config(&d.cfg);
    }

    prism_plan_limits limits = {c->batch, d.max_sq, d.max_sk, false, false};
    prism_plan *plan = NULL;
    cr_assert_eq(prism_plan_create(ctx, &plan_cfg, &limits, &plan), PRISM_OK,
                 "%s: %s", c->name, prism_context_last_error(ctx));
    if (prm) { /* the case's own config is no other kernel */
        prism_counters before, after;
        prism_context_counters(ctx, &before);
        prism_plan *same = NULL;
        cr_assert_eq(prism_plan_create(ctx, &d.cfg, &limits, &same), PRISM_OK,
                     "%s: %s", c->name, prism_context_last_error(ctx));
        prism_context_counters(ctx, &after);
        cr_expect_eq(after.compiles, before.compiles,
                     "%s: a config of other run-time values compiled",
                     c->name);
        prism_plan_destroy(same);
    }

    CUdeviceptr dq = gpu_upload(d.q.data, tensor_bytes(&d.q));
    CUdeviceptr dk = gpu_upload(d.k.data, tensor_bytes(&d.k));
    CUdeviceptr dv = gpu_upload(d.v.data, tensor_bytes(&d.v));
    CUdeviceptr dcu_q = c->varlen ? gpu_upload(d.cu_q, sizeof d.cu_q) : 0;
    CUdeviceptr dcu_k = c->varlen ? gpu_upload(d.cu_k, sizeof d.cu_k) : 0;
    prism_tensor tq = device_tensor(dq, &d.q), tk = device_tensor(dk, &d.k),
                 tv = device_tensor(dv, &d.v);
    prism_batch batch = {
        .dtype = c->dtype, .batch = c->batch, .seqlen_q = d.max_sq,
        .seqlen_k = d.max_sk,
        .cu_seqlens_q = (const int32_t *)(uintptr_t)dcu_q,
        .cu_seqlens_k = (const int32_t *)(uintptr_t)dcu_k,
        .total_q = (int)d.S_q, .total_k = (int)d.S_k, .params = prm};

    /* 1-2: estimation against the reference selection */
    prism_selection ref_sel, gpu_sel;
    cr_assert_eq(prism_selection_alloc_for(&ref_sel, c->batch, c->q_heads,
                                           d.S_q, d.S_k, d.vl, 128, err,
                                           sizeof err), PRISM_OK, "%s", err);
    cr_assert_eq(prism_selection_alloc_for(&gpu_sel, c->batch, c->q_heads,
                                           d.S_q, d.S_k, d.vl, 128, err,
                                           sizeof err), PRISM_OK, "%s", err);
    prism_ref_estimate_options eopt = {.method = PRISM_REF_PRISM};
    cr_assert_eq(prism_ref_estimate(&d.q.view, &d.k.view, d.vl, &d.cfg, &eopt,
                                    &ref_sel, NULL, NULL, err, sizeof err),
                 PRISM_OK, "%s", err);
    prism_block_mask mask = device_mask(&gpu_sel, NULL);
    cr_assert_eq(prism_estimate(plan, &batch, &tq, &tk, &mask, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    download_mask(&mask, &gpu_sel);
    check_pooling(c, &d, plan, &batch);
    cr_assert_eq(prism_selection_validate(&gpu_sel, err, sizeof err), PRISM_OK,
                 "%s: GPU selection malformed: %s", c->name, err);
    prism_ref_agreement agree;
    prism_selection_diff diffs[8];
    cr_assert_eq(prism_ref_selection_agreement(&ref_sel, &gpu_sel, &agree, diffs,
                                               8, err, sizeof err), PRISM_OK);
    for (int i = 0; i < agree.differ && i < 8; i++)
        cr_log_info("%s: selection differs at b%d h%d row %d block %d (ref %d, "
                    "gpu %d)", c->name, diffs[i].b, diffs[i].h, diffs[i].i,
                    diffs[i].j, diffs[i].in_a, diffs[i].in_b);
    cr_expect_geq(agree.share, 0.999, "%s: selections agree on %.5f of %lld "
                  "blocks", c->name, agree.share, (long long)agree.compared);
    double density = 0;
    cr_assert_eq(prism_plan_density(plan, &density), PRISM_OK);
    cr_expect_lt(fabs(density - prism_ref_density(&gpu_sel, NULL)), 1e-9,
                 "%s: density %g vs %g", c->name, density,
                 prism_ref_density(&gpu_sel, NULL));
    free_mask(&mask);

    /* 3: attention on the reference's selection: the plan's own kernel
     * (on sm_90a the wgmma/TMA one, streaming across items), then the
     * mma.sync kernel forced (tuning attention.path = 1) so that both face
     * the reference on every case, then the wgmma kernel's other shapes
     * the autotuner may pick -- the plain loop (overlap 2, 2 stages), the
     * streaming loop with 2 stages, and with 64-key tiles -- where this
     * GPU runs the wgmma kernel; a config the shape rejects (overlap 1 at
     * head_dim 256) is skipped */
    const prism_tensor tqkv[3] = {tq, tk, tv};
    prism_block_mask ref_mask = device_mask(&ref_sel, &ref_sel);
    check_attention(c, &d, plan, &batch, tqkv, &ref_mask, &ref_sel, "attention");
    static const struct {
        const char *what, *param[2];
        int64_t value[2];
    } variants[] = {
        {"attention (mma.sync)", {"path", NULL}, {1, 0}},
        {"attention (wgmma, plain loop)", {"overlap", "stages"}, {2, 2}},
        {"attention (wgmma, streaming, 2 stages)", {"overlap", "stages"}, {1, 2}},
        {"attention (wgmma, 64-key tiles)", {"block_n", NULL}, {64, 0}},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        prism_config cfg_v = plan_cfg;
        for (int k = 0; k < 2 && variants[i].param[k]; k++)
            tune_attention(&cfg_v, variants[i].param[k], variants[i].value[k]);
        prism_plan *plan_v = NULL;
        prism_status st = prism_plan_create(ctx, &cfg_v, &limits, &plan_v);
        cr_assert(st == PRISM_OK || (i > 0 && st == PRISM_ERR_CONFIG), "%s %s: %s",
                  c->name, variants[i].what, prism_context_last_error(ctx));
        if (st != PRISM_OK) {
            cr_log_info("%s: %s skipped: %s", c->name, variants[i].what,
                        prism_context_last_error(ctx));
            continue;
        }
        check_attention(c, &d, plan_v, &batch, tqkv, &ref_mask, &ref_sel,
                        variants[i].what);
        prism_plan_destroy(plan_v);
    }
    free_mask(&ref_mask);

    size_t o_bytes = tensor_bytes(&d.q);
    size_t lse_bytes = (size_t)d.B_view * c->q_heads * d.S_q * sizeof(float);
    void *o_host = malloc(o_bytes);
    float *lse_host = malloc(lse_bytes);
    /* 4: prefill end to end, checked on its own selection */
    CUdeviceptr dout = gpu_alloc_poisoned(o_bytes, 0xff);
    CUdeviceptr dlse = gpu_alloc_poisoned(lse_bytes, 0xff);
    prism_tensor to = device_tensor(dout, &d.q);
    prism_block_mask out_mask = device_mask(&gpu_sel, NULL);
    cr_assert_eq(prism_prefill(plan, &batch, &tq, &tk, &tv, &to,
                               (float *)(uintptr_t)dlse, &out_mask, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    download_mask(&out_mask, &gpu_sel);
    gpu_download(o_host, dout, o_bytes);
    gpu_download(lse_host, dlse, lse_bytes);
    check_output(c, &d, o_host, lse_host, &gpu_sel, scale_of(&batch),
                 "prefill");
    free_mask(&out_mask);

    gpu_free(dout);
    gpu_free(dlse);
    gpu_free(dq);
    gpu_free(dk);
    gpu_free(dv);
    gpu_free(dcu_q);
    gpu_free(dcu_k);
    free(o_host);
    free(lse_host);
    prism_selection_free(&ref_sel);
    prism_selection_free(&gpu_sel);
    prism_plan_destroy(plan);
    free_inputs(&d);
}

static prism_context *new_context(void) {
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(NULL, &ctx), PRISM_OK);
    return ctx;
}

#define SKIP_WITHOUT_GPU()                                                   \
    do {                                                                     \
        char why_[512];                                                      \
        if (!gpu_open(why_, sizeof why_))                                    \
            cr_skip_test("no GPU: %s", why_);                                \
    } while (0)

ParameterizedTestParameters(gpu, matrix) {
    return cr_make_param_array(gpu_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(const gpu_case *c, gpu, matrix, .timeout = 600) {
    SKIP_WITHOUT_GPU();
    cr_log_info("case %s", c->name);
    prism_context *ctx = new_context();
    run_case(c, ctx, NULL);
    prism_context_destroy(ctx);
    gpu_close();
}

/* ---- run-time parameters ------------------------------------------------ */

typedef struct params_case {
    gpu_case shape;
    double threshold_high, threshold_low;
    bool calibrate;
    double temp_high, temp_low, softmax_scale;
    int recent_blocks;
} params_case;

#define BF16_MIXED(name, hq, hkv, s)                                          \
    {name, 128, hq, hkv, 0, 1, {s}, {s}, false, false, PRISM_DTYPE_BF16,     \
     PRISM_ROPE_HALF, PRISM_WORKLOAD_MIXED}

static const params_case params_cases[] = {
    {BF16_MIXED("thresholds-0.9", 32, 8, 1536), 0.9, 0.9, true, 1, 1, 0, 1},
    {BF16_MIXED("thresholds-0.98", 32, 8, 1536), 0.98, 0.98, true, 1, 1, 0, 1},
    {BF16_MIXED("uncalibrated-temps", 32, 8, 1536), 0.95, 0.9, false, 0.5, 2,
     0, 1},
    {BF16_MIXED("softmax-scale-0.05", 32, 8, 1536), 0.95, 0.95, true, 1, 1,
     0.05, 1},
    /* a local window of 8 blocks: 8 lanes of each 32-block chunk forced */
    {BF16_MIXED("recent-window-8", 32, 8, 4096), 0.9, 0.9, true, 1, 1, 0, 8},
    /* a tensor-parallel shard: 4 query heads of one KV head, 12 query
     * tiles: 48 items for the SMs, so the schedule splits rows */
    {BF16_MIXED("tp-shard-4-1", 4, 1, 1536), 0.95, 0.95, true, 1, 1, 0, 1},
    /* 24 / 3 heads (groups of 8, an odd KV head count) x 32 tiles: static
     * items and a queue, the item arithmetic by non-power-of-two heads */
    {{"tp-shard-24-3-fp16-bshd", 128, 24, 3, 0, 1, {4096}, {4096}, false,
      true, PRISM_DTYPE_FP16, PRISM_ROPE_HALF, -1},
     0.9, 0.98, true, 1, 1, 0.1, 1},
    {{"shard-6-6-ragged", 64, 6, 6, 0, 3, {300, 1100, 77}, {300, 1228, 333},
      true, true, PRISM_DTYPE_BF16, PRISM_ROPE_INTERLEAVED, -1},
     0.9, 0.95, false, 1.5, 0.75, 0.2, 1},
};

ParameterizedTestParameters(gpu, run_time_params) {
    return cr_make_param_array(params_case, params_cases,
                               sizeof params_cases / sizeof params_cases[0]);
}

ParameterizedTest(const params_case *pc, gpu, run_time_params,
                  .timeout = 600) {
    SKIP_WITHOUT_GPU();
    cr_log_info("case %s", pc->shape.name);
    prism_params prm = {
        .threshold_high = pc->threshold_high,
        .threshold_low = pc->threshold_low,
        .calibrate = pc->calibrate,
        .temp_high = pc->temp_high,
        .temp_low = pc->temp_low,
        .force_sink = true,
        .force_recent = true,
        .softmax_scale = pc->softmax_scale,
        .recent_blocks = pc->recent_blocks,
        .q_heads = pc->shape.q_heads,
        .kv_heads = pc->shape.kv_heads,
    };
    prism_context *ctx = new_context();
    run_case(&pc->shape, ctx, &prm);
    prism_counters n;
    prism_context_counters(ctx, &n);
    cr_log_info("%s: %llu compiles in this context", pc->shape.name,
                (unsigned long long)n.compiles);
    prism_context_destroy(ctx);
    gpu_close();
}

Test(gpu, launch_arguments_are_validated, .timeout = 300) {
    SKIP_WITHOUT_GPU();
    prism_context *ctx = new_context();
    prism_config cfg;
    prism_config_init(&cfg);
    prism_plan_limits limits = {2, 1024, 2048, false, false};
    prism_plan *plan = NULL;
    cr_assert_eq(prism_plan_create(ctx, &cfg, &limits, &plan), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    CUdeviceptr buf = gpu_alloc_poisoned(1 << 24, 0);
    void *base = (void *)(uintptr_t)buf;
    int64_t D = cfg.head_dim;
    prism_tensor q = {base, 32 * 1024 * D, 1024 * D, D};
    prism_tensor k = {base, 8 * 2048 * D, 2048 * D, D};
    prism_batch b = {.dtype = PRISM_DTYPE_BF16, .batch = 1, .seqlen_q = 1024,
                     .seqlen_k = 2048};
    int32_t *ip = (int32_t *)base;
    prism_block_mask m = {ip, ip, 8, 16};
    cr_expect_eq(prism_estimate(plan, &b, &q, &k, &m, NULL, 0, NULL), PRISM_OK,
                 "%s", prism_plan_last_error(plan));
    prism_batch bad = b;
    bad.dtype = PRISM_DTYPE_FP16;
    cr_expect_eq(prism_estimate(plan, &bad, &q, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_DTYPE_MISMATCH);
    bad = b;
    bad.seqlen_k = 512;
    cr_expect_eq(prism_estimate(plan, &bad, &q, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_BAD_SHAPE);
    bad = b;
    bad.batch = 3;
    cr_expect_eq(prism_estimate(plan, &bad, &q, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_BAD_SHAPE);
    cr_expect_eq(prism_estimate(plan, &b, NULL, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_NULL_POINTER);
    prism_tensor misaligned = q;
    misaligned.data = (char *)base + 2;
    cr_expect_eq(prism_estimate(plan, &b, &misaligned, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_MISALIGNED);
    prism_tensor strided = q;
    strided.stride_s = 3;
    cr_expect_eq(prism_estimate(plan, &b, &strided, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_BAD_STRIDE);
    prism_block_mask wrong = m;
    wrong.nq = 7;
    cr_expect_eq(prism_estimate(plan, &b, &q, &k, &wrong, NULL, 0, NULL),
                 PRISM_ERR_BAD_SHAPE);
    bad = b;
    bad.cu_seqlens_q = ip;
    cr_expect_eq(prism_estimate(plan, &bad, &q, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_expect_eq(prism_estimate(plan, &b, &q, &k, &m, base, 64, NULL),
                 PRISM_ERR_INVALID_ARGUMENT, "a too-small workspace is refused");
    cr_expect(strlen(prism_plan_last_error(plan)) > 10);
    gpu_sync();
    gpu_free(buf);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    gpu_close();
}

Test(gpu, without_a_gpu_plans_fail_with_a_clear_status) {
    char why[512];
    if (gpu_open(why, sizeof why)) {
        gpu_close();
        cr_skip_test("this machine has a GPU");
    }
    prism_context *ctx = new_context();
    prism_config cfg;
    prism_config_init(&cfg);
    prism_plan_limits limits = {1, 1024, 1024, false, false};
    prism_plan *plan = (prism_plan *)1;
    prism_status st = prism_plan_create(ctx, &cfg, &limits, &plan);
    cr_assert(st == PRISM_ERR_NO_DRIVER || st == PRISM_ERR_NO_DEVICE,
              "status %s", prism_status_name(st));
    cr_assert_null(plan);
    cr_assert(strstr(prism_context_last_error(ctx), "CUDA") != NULL ||
                  strstr(prism_context_last_error(ctx), "device") != NULL,
              "%s", prism_context_last_error(ctx));
    prism_context_destroy(ctx);
}
