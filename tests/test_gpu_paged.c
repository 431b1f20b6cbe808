/*
 * test_gpu_paged.c - paged K/V (prism.h, prism_paged_kv) on the GPU.
 *
 * Skips cleanly where there is no driver or device.  On a GPU each case
 * builds its K and V in shuffled pages (paged_inputs.h: NHD or HND, pages
 * of one or two blocks, spare pages and the rows past each sequence's end
 * filled with other values) and checks the paged kernels against the
 * contiguous ones on the same device, in the same process:
 *   estimate   the paged selection (prism_pool_stats_paged) against the
 *              contiguous one: >= 99.9% of memberships agree (the
 *              energies' atomic sums may round differently), and the same
 *              with the pooled-key cache, once writing it and once reading
 *   attention  over the contiguous selection, the paged output against
 *              the contiguous output (the same kernel code reading other
 *              addresses): equal to within 1e-3 relative L2, outputs
 *              poisoned first; and against the CPU reference on it
 * The cases run the sm_90a wgmma/TMA kernel (block size 128, head dim
 * 128) and the mma.sync kernel (block size 64), regular batches with Sk >
 * Sq (a prefix and a chunk), ragged batches, and a short chunk over a
 * long prefix whose rows the persistent kernel splits.  A chunked prefill
 * checks its estimates with the cache, chunk by chunk, against the
 * contiguous ones.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "gpu_testutil.h"
#include "paged_inputs.h"
#include "reference/reference.h"

#include <math.h>

typedef struct paged_gpu_case {
    input_case in;
    int page_blocks; /* page_size = page_blocks x block size */
    bool hnd;
} paged_gpu_case;

static const paged_gpu_case cases[] = {
    {{"d128-reg-nhd-1x", 128, 8, 2, 128, 2, {640}, {1664}, false, false,
      PRISM_DTYPE_BF16, PRISM_ROPE_HALF, PRISM_WORKLOAD_MIXED}, 1, false},
    {{"d128-reg-hnd-2x", 128, 8, 2, 128, 1, {1000}, {2024}, false, true,
      PRISM_DTYPE_FP16, PRISM_ROPE_HALF, PRISM_WORKLOAD_MIXED}, 2, true},
    {{"d128-ragged-nhd-2x", 128, 8, 1, 128, 3, {300, 1100, 77},
      {556, 1228, 333}, true, true, PRISM_DTYPE_BF16, PRISM_ROPE_HALF, -1},
     2, false},
    {{"d128-chunk-split-hnd-1x", 128, 4, 1, 128, 1, {256}, {12160}, false,
      true, PRISM_DTYPE_BF16, PRISM_ROPE_HALF, PRISM_WORKLOAD_MIXED}, 1, true},
    {{"d64-mma-ragged-hnd-2x", 64, 4, 2, 64, 3, {200, 450, 129},
      {328, 450, 257}, true, false, PRISM_DTYPE_FP16, PRISM_ROPE_HALF, -1},
     2, true},
    {{"d64-mma-reg-nhd-1x", 64, 8, 8, 64, 1, {700}, {956}, false, true,
      PRISM_DTYPE_BF16, PRISM_ROPE_INTERLEAVED, PRISM_WORKLOAD_MIXED}, 1,
     false},
};

#define SKIP_WITHOUT_GPU()                                                   \
    do {                                                                     \
        char why_[512];                                                      \
        if (!gpu_open(why_, sizeof why_))                                    \
            cr_skip_test("no GPU: %s", why_);                                \
    } while (0)

static prism_tensor on_device(CUdeviceptr p, const host_tensor *t) {
    return (prism_tensor){(void *)(uintptr_t)p, t->view.stride[0],
                          t->view.stride[1], t->view.stride[2]};
}

/* A device mask of d's geometry (poisoned) and its host copy. */
typedef struct dev_mask {
    prism_block_mask m;
    prism_selection host;
} dev_mask;

static dev_mask mask_new_for(const case_data *d, int64_t sq, int64_t sk) {
    dev_mask x;
    char err[256];
    cr_assert_eq(prism_selection_alloc_for(&x.host, d->batch.batch,
                                           d->cfg.q_heads, sq, sk, d->vl,
                                           d->cfg.block_size, err, sizeof err),
                 PRISM_OK, "%s", err);
    size_t rows = (size_t)x.host.B * x.host.Hq * x.host.nq;
    x.m = (prism_block_mask){
        (int32_t *)(uintptr_t)gpu_alloc_poisoned(rows * 4, 0xff),
        (int32_t *)(uintptr_t)gpu_alloc_poisoned(rows * x.host.nk * 4, 0xff),
        x.host.nq, x.host.nk};
    return x;
}

static dev_mask mask_new(const case_data *d) {
    return mask_new_for(d, d->S_q, d->S_k);
}

static void mask_download(dev_mask *x) {
    size_t rows = (size_t)x->host.B * x->host.Hq * x->host.nq;
    gpu_download(x->host.counts, (CUdeviceptr)(uintptr_t)x->m.counts, rows * 4);
    gpu_download(x->host.indices, (CUdeviceptr)(uintptr_t)x->m.indices,
                 rows * x->host.nk * 4);
}

static void mask_free(dev_mask *x) {
    gpu_free((CUdeviceptr)(uintptr_t)x->m.counts);
    gpu_free((CUdeviceptr)(uintptr_t)x->m.indices);
    prism_selection_free(&x->host);
}

static void expect_agree(const prism_selection *a, const prism_selection *b,
                         const char *name, const char *what) {
    prism_ref_agreement agree;
    char err[256];
    cr_assert_eq(prism_ref_selection_agreement(a, b, &agree, NULL, 0, err,
                                               sizeof err),
                 PRISM_OK, "%s", err);
    cr_expect_geq(agree.share, 0.999, "%s %s: %lld of %lld memberships differ",
                  name, what, (long long)agree.differ,
                  (long long)agree.compared);
}

/* Everything of one case on the device. */
typedef struct dev_case {
    case_data d;
    paged_inputs pi;
    prism_paged_kv pg;       /* device table */
    prism_batch flat, paged; /* device cu_seqlens */
    prism_tensor q, k, v, kp, vp, o;
    CUdeviceptr bufs[10];
    int n_bufs;
} dev_case;

static CUdeviceptr keep(dev_case *c, CUdeviceptr p) {
    c->bufs[c->n_bufs++] = p;
    return p;
}

static void dev_case_build(const paged_gpu_case *pc, dev_case *c) {
    memset(c, 0, sizeof *c);
    case_data *d = &c->d;
    build_inputs(&pc->in, 41, d);
    paged_build(d, pc->page_blocks * d->cfg.block_size, pc->hnd, 3, 5, &c->pi);
    c->q = on_device(keep(c, gpu_upload(d->q.data, tensor_bytes(&d->q))), &d->q);
    c->k = on_device(keep(c, gpu_upload(d->k.data, tensor_bytes(&d->k))), &d->k);
    c->v = on_device(keep(c, gpu_upload(d->v.data, tensor_bytes(&d->v))), &d->v);
    c->kp = on_device(keep(c, gpu_upload(c->pi.kp.data, tensor_bytes(&c->pi.kp))),
                      &c->pi.kp);
    c->vp = on_device(keep(c, gpu_upload(c->pi.vp.data, tensor_bytes(&c->pi.vp))),
                      &c->pi.vp);
    c->o = on_device(keep(c, gpu_alloc_poisoned(tensor_bytes(&d->q), 0xff)),
                     &d->q);
    size_t table = (size_t)d->batch.batch * c->pi.max_pages * 4;
    c->pg = c->pi.pg;
    c->pg.page_table = (int32_t *)(uintptr_t)keep(c, gpu_upload(c->pi.table, table));
    c->flat = d->batch;
    if (d->vl) {
        c->flat.cu_seqlens_q = (int32_t *)(uintptr_t)keep(c, gpu_upload(d->cu_q, sizeof d->cu_q));
        c->flat.cu_seqlens_k = (int32_t *)(uintptr_t)keep(c, gpu_upload(d->cu_k, sizeof d->cu_k));
    }
    c->paged = c->flat;
    c->paged.paged = &c->pg;
}

static void dev_case_free(dev_case *c) {
    for (int i = 0; i < c->n_bufs; i++)
        gpu_free(c->bufs[i]);
    paged_free(&c->pi);
    free_inputs(&c->d);
}

static void estimate_into(prism_plan *plan, const prism_batch *b,
                          const dev_case *c, const prism_tensor *k,
                          dev_mask *x) {
    cr_assert_eq(prism_estimate(plan, b, &c->q, k, &x->m, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    gpu_sync();
    mask_download(x);
}

/* The paged output against the contiguous one and the reference. */
static void check_attention(prism_plan *plan, dev_case *c, dev_mask *sel,
                            const char *name) {
    case_data *d = &c->d;
    size_t bytes = tensor_bytes(&d->q);
    void *flat = malloc(bytes), *paged = malloc(bytes);
    cr_assert_eq(prism_sparse_attention(plan, &c->flat, &c->q, &c->k, &c->v,
                                        &sel->m, &c->o, NULL, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    gpu_sync();
    gpu_download(flat, (CUdeviceptr)(uintptr_t)c->o.data, bytes);
    CUdeviceptr again = gpu_alloc_poisoned(bytes, 0xff);
    prism_tensor o = c->o;
    o.data = (void *)(uintptr_t)again;
    cr_assert_eq(prism_sparse_attention(plan, &c->paged, &c->q, &c->kp, &c->vp,
                                        &sel->m, &o, NULL, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    gpu_sync();
    gpu_download(paged, again, bytes);
    gpu_free(again);
    prism_tensor_view a = d->q.view, b = d->q.view;
    a.data = flat;
    b.data = paged;
    prism_ref_summary s;
    char err[256];
    cr_assert_eq(prism_ref_output_error(&b, &a, d->vl, &s, NULL, err,
                                        sizeof err),
                 PRISM_OK, "%s", err);
    cr_expect_leq(s.max, 1e-3, "%s: paged vs contiguous output: max %g",
                  name, s.max);
    host_tensor ref = tensor_new(PRISM_DTYPE_FP32, d->B_view, d->cfg.q_heads,
                                 d->S_q, d->cfg.head_dim, false);
    prism_ref_attention_options opt = {0};
    cr_assert_eq(prism_ref_attention(&d->q.view, &d->k.view, &d->v.view, d->vl,
                                     &sel->host, &opt, &ref.view, err,
                                     sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(prism_ref_output_error(&b, &ref.view, d->vl, &s, NULL, err,
                                        sizeof err),
                 PRISM_OK, "%s", err);
    cr_expect_leq(s.max, 1e-2, "%s: paged vs reference: max %g", name, s.max);
    free(ref.data);
    free(flat);
    free(paged);
}

ParameterizedTestParameters(gpu_paged, matches_contiguous) {
    return cr_make_param_array(paged_gpu_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(const paged_gpu_case *pc, gpu_paged, matches_contiguous,
                  .timeout = 600) {
    SKIP_WITHOUT_GPU();
    const char *name = pc->in.name;
    dev_case c;
    dev_case_build(pc, &c);
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(NULL, &ctx), PRISM_OK);
    prism_plan_limits lim = {c.d.batch.batch, c.d.max_sq, c.d.max_sk, false, false};
    prism_plan *plan = NULL;
    cr_assert_eq(prism_plan_create(ctx, &c.d.cfg, &lim, &plan), PRISM_OK,
                 "%s: %s", name, prism_context_last_error(ctx));
    dev_mask flat = mask_new(&c.d), paged = mask_new(&c.d);
    estimate_into(plan, &c.flat, &c, &c.k, &flat);
    estimate_into(plan, &c.paged, &c, &c.kp, &paged);
    expect_agree(&flat.host, &paged.host, name, "paged estimate");
    /* the pooled-key cache: written by the first estimate, read by the
     * second */
    size_t bytes = prism_paged_pooled_bytes(&c.d.cfg, c.pi.num_pages,
                                            c.pi.page_size, c.d.cfg.kv_heads);
    c.pg.pooled_keys = (float *)(uintptr_t)keep(&c, gpu_alloc_poisoned(bytes, 0));
    for (int pass = 0; pass < 2; pass++) {
        estimate_into(plan, &c.paged, &c, &c.kp, &paged);
        expect_agree(&flat.host, &paged.host, name,
                     pass ? "estimate reading the cache"
                          : "estimate writing the cache");
    }
    c.pg.pooled_keys = NULL;
    check_attention(plan, &c, &flat, name);
    mask_free(&flat);
    mask_free(&paged);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    dev_case_free(&c);
    gpu_close();
}

/* A chunked prefill's estimates over the pages with the pooled-key cache
 * against the contiguous estimates of the same chunks: a chunk pools its
 * own blocks and sweeps its prefix 32 blocks to a CTA (gen/templates/
 * pool_stats_params.h), reading what the chunks before it wrote.  Chunks
 * that end inside blocks, prefixes of up to 39 blocks (two sweeps), and a
 * zeroed cache taken up at the third chunk, whose sweeps pool the prefix
 * they find unmarked. */
Test(gpu_paged, chunked_estimates_with_the_cache, .timeout = 600) {
    SKIP_WITHOUT_GPU();
    static const paged_gpu_case pc = {
        {"d128-chunks-nhd-2x", 128, 8, 2, 128, 1, {8500}, {8500}, false, true,
         PRISM_DTYPE_BF16, PRISM_ROPE_HALF, PRISM_WORKLOAD_MIXED},
        2, false};
    static const int ends[] = {0, 1000, 1100, 5000, 8500};
    dev_case c;
    dev_case_build(&pc, &c);
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(NULL, &ctx), PRISM_OK);
    prism_plan_limits lim = {1, c.d.max_sq, c.d.max_sk, false, false};
    prism_plan *plan = NULL;
    cr_assert_eq(prism_plan_create(ctx, &c.d.cfg, &lim, &plan), PRISM_OK,
                 "%s", prism_context_last_error(ctx));
    size_t bytes = prism_paged_pooled_bytes(&c.d.cfg, c.pi.num_pages,
                                            c.pi.page_size, c.d.cfg.kv_heads);
    float *cache = (float *)(uintptr_t)keep(&c, gpu_alloc_poisoned(bytes, 0));
    size_t es = prism_dtype_size(c.d.cfg.dtype);
    for (int late = 0; late < 2; late++) {
        if (late) { /* a fresh cache, first used by chunk 2 */
            gpu_free((CUdeviceptr)(uintptr_t)cache);
            c.bufs[c.n_bufs - 1] = gpu_alloc_poisoned(bytes, 0);
            cache = (float *)(uintptr_t)c.bufs[c.n_bufs - 1];
        }
        for (int k = 0; k < 4; k++) {
            int q0 = ends[k], sq = ends[k + 1] - q0;
            prism_batch flat = {.dtype = c.d.cfg.dtype, .batch = 1,
                                .seqlen_q = sq, .seqlen_k = q0 + sq};
            prism_paged_kv pg = c.pg;
            pg.pooled_keys = !late || k >= 2 ? cache : NULL;
            prism_batch paged = flat;
            paged.paged = &pg;
            prism_tensor q = c.q;
            q.data = (char *)q.data + (size_t)q0 * (size_t)q.stride_s * es;
            dev_mask a = mask_new_for(&c.d, sq, q0 + sq);
            dev_mask b = mask_new_for(&c.d, sq, q0 + sq);
            cr_assert_eq(prism_estimate(plan, &flat, &q, &c.k, &a.m, NULL, 0,
                                        NULL),
                         PRISM_OK, "%s", prism_plan_last_error(plan));
            cr_assert_eq(prism_estimate(plan, &paged, &q, &c.kp, &b.m, NULL, 0,
                                        NULL),
                         PRISM_OK, "%s", prism_plan_last_error(plan));
            gpu_sync();
            mask_download(&a);
            mask_download(&b);
            char what[64];
            snprintf(what, sizeof what, "chunk %d%s", k,
                     late ? " (cache from chunk 2)" : "");
            expect_agree(&a.host, &b.host, pc.in.name, what);
            mask_free(&a);
            mask_free(&b);
        }
    }
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    dev_case_free(&c);
    gpu_close();
}
