/*
 * launch.c - the CUDA backend's calls: parameter blocks and launches.
 *
 * The kernels take their parameter blocks by value; the blocks are defined
 * once, in gen/templates/KERNEL_params.h, which the generated sources and this
 * file both compile, so host and device agree on every offset by
 * construction.  Grids and launch shapes come from the kernels' specs
 * (gen/launch.h).  The launch's run-time parameters (head counts, the
 * method's settings, the softmax scale: prism_params) go into the blocks
 * here, in the form the kernels use them (fixed-point thresholds, FastDiv
 * divisors, the scale times log2(e)).  A paged batch (prism_paged_kv)
 * runs the kernels' paged entry points with the same blocks followed by
 * the paging fields, and the sm_90a kernel's K and V tensor maps cover
 * the page pools.  Arguments were validated by runtime/dispatch/plan.c;
 * nothing here allocates or synchronises.
 */
#include "runtime/cuda/cuda_backend.h"

#include <stdint.h>
#include <string.h>

#include "gen/templates/attention_params.h"
#include "gen/templates/estimate_params.h"
#include "gen/templates/pool_stats_params.h"

#define PTR(base, off) ((void *)((base) + (off)))

static prism_status cuda_fail(prism_plan *p, CUresult rc, const char *what) {
    char err[PRISM_ERRMSG_MAX];
    prism_cuda_error(cuda_of(p)->drv, rc, what, err, sizeof err);
    return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
}

/* Launches f on grid x block threads.  dependent: a programmatic dependent
 * launch where the device has them (sm_90; elsewhere a plain launch) --
 * the kernel may start while the one before it on the stream still runs,
 * once that one allows it (griddepcontrol.launch_dependents), and waits
 * itself for what it needs of it (griddepcontrol.wait).  Everything
 * earlier on the stream has completed by then, as the kernel before could
 * not start earlier. */
static prism_status launch_as(prism_plan *p, CUfunction f,
                              const unsigned grid[3], int threads, int smem,
                              void *params, prism_stream stream,
                              bool dependent, const char *what) {
    CUlaunchAttribute attr = {
        .id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        .value.programmaticStreamSerializationAllowed = 1,
    };
    CUlaunchConfig cfg = {
        .gridDimX = grid[0], .gridDimY = grid[1], .gridDimZ = grid[2],
        .blockDimX = (unsigned)threads, .blockDimY = 1, .blockDimZ = 1,
        .sharedMemBytes = (unsigned)smem, .hStream = (CUstream)stream,
        .attrs = &attr,
        .numAttrs = dependent && p->arch == PRISM_ARCH_SM90A ? 1 : 0,
    };
    void *args[] = {params};
    CUresult rc = cuda_of(p)->drv->launch_kernel_ex(&cfg, f, args, NULL);
    return rc == CUDA_SUCCESS ? PRISM_OK : cuda_fail(p, rc, what);
}

static prism_status make_current(prism_plan *p) {
    cuda_plan *g = cuda_of(p);
    if (g->drv->ctx_set_current(g->cu_ctx) != CUDA_SUCCESS)
        return prism_plan_fail(p, PRISM_ERR_CUDA, "cannot make the plan's "
                                                  "CUDA context current");
    return PRISM_OK;
}

static prism_grid_input grid_input(const prism_plan *p, const prism_call *c) {
    const prism_batch *b = c->b;
    prism_grid_input in = {
        .batch = b->batch,
        .seqlen_q = b->seqlen_q,
        .q_heads = c->prm.q_heads,
        .kv_heads = c->prm.kv_heads,
        .nq = prism_ceil_div(b->seqlen_q, p->cfg.block_size),
        .nk = prism_ceil_div(b->seqlen_k, p->cfg.block_size),
        .sm_count = cuda_of(p)->sm_count,
        .pooled_keys = b->paged && b->paged->pooled_keys,
        .ragged = b->cu_seqlens_q != NULL,
        .seqlen_k = b->seqlen_k,
        .block_size = p->cfg.block_size,
    };
    return in;
}

/* The estimator compares fixed-point masses with ceil(t * 2^31) for the
 * threshold t rounded to fp32, as its source did with a constant
 * (gen/templates/estimate.cu); t <= 1 keeps it within 32 bits. */
static uint32_t threshold_fx(double t) {
    double x = (double)(float)t * 2147483648.0;
    uint32_t floor_x = (uint32_t)x;
    return (double)floor_x < x ? floor_x + 1u : floor_x;
}

/* The method's settings and head counts of EstimateParams. */
static void estimate_method(const prism_params *m, EstimateParams *ep) {
    ep->q_heads = m->q_heads;
    ep->kv_heads = m->kv_heads;
    ep->group = m->q_heads / m->kv_heads;
    ep->threshold_high_fx = threshold_fx(m->threshold_high);
    ep->threshold_low_fx = threshold_fx(m->threshold_low);
    ep->temp_high = (float)m->temp_high;
    ep->temp_low = (float)m->temp_low;
    ep->calibrate = m->calibrate;
    ep->force_sink = m->force_sink;
    ep->force_recent = m->force_recent;
    ep->recent_blocks = m->recent_blocks;
}

/* prism_estimate's CTA holds up to max_rows query-block rows (one warp
 * selects each) that share every pooled-K tile, with both bands' logits of
 * each row in dynamic shared memory (smem_per_row_block bytes per key
 * block).  Take as many rows as keep two CTAs per SM, else as many as fit
 * at all; raise the kernel's dynamic shared memory limit when that needs
 * more than 48 KiB. */
static prism_status estimate_rows(prism_plan *p, cuda_kernel *est, int nk,
                                  int *rows, int *smem) {
    const cuda_plan *g = cuda_of(p);
    const int64_t static_bytes = est->static_smem;
    const int64_t per_row = (int64_t)est->shape.smem_per_row_block * nk;
    const int64_t two_per_sm = g->smem_per_sm / 2 - 1024; /* 1 KiB per CTA */
    int r = est->shape.max_rows;
    while (r > 1 && static_bytes + r * per_row > two_per_sm)
        r /= 2;
    while (r > 1 && static_bytes + r * per_row > g->smem_optin)
        r /= 2;
    if (static_bytes + r * per_row > g->smem_optin)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "%s needs %lld bytes of shared memory for %d "
                               "key blocks but the device allows %d; use a "
                               "larger block_size",
                               est->main_name,
                               (long long)(static_bytes + r * per_row), nk,
                               g->smem_optin);
    *rows = r;
    *smem = est->shape.dynamic_smem + (int)(r * per_row);
    if (*smem > est->smem_limit && static_bytes + *smem > 48 * 1024) {
        CUresult rc = g->drv->func_set_attribute(
            est->main, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, *smem);
        if (rc != CUDA_SUCCESS)
            return cuda_fail(p, rc, "setting the estimator's shared memory");
        est->smem_limit = *smem; /* the limit now set on the function */
    }
    return PRISM_OK;
}

/* A kernel's paged entry point (prism_paged_kv), from its paged program,
 * which the plan gets at its first paged launch. */
static prism_status need_paged(prism_plan *p, const cuda_kernel *k) {
    prism_status st = prism_cuda_load_paged(p);
    if (st != PRISM_OK || k->paged)
        return st;
    return prism_plan_fail(p, PRISM_ERR_NO_KERNEL,
                           "kernel %s has no entry point for paged K/V",
                           k->main_name);
}

/* Pooling, then (a dependent launch: its CTAs start in pool_stats' tail)
 * the estimator, writing the selection into `mask`.  With a pooled-key
 * cache the pooling grid's key CTAs are those of prism_launch_pool_keys
 * (gen/launch.h): the chunk's own blocks, and a sweep CTA per
 * POOL_SWEEP_BLOCKS blocks of its prefix. */
static prism_status run_estimate(prism_plan *p, const prism_call *c,
                                 const prism_block_mask *mask) {
    cuda_plan *g = cuda_of(p);
    const prism_batch *b = c->b;
    const size_t *at = c->layout.at;
    const size_t stats_bytes = at[PRISM_WS_TOTALS] +
                               c->layout.bytes[PRISM_WS_TOTALS] -
                               at[PRISM_WS_STATS_Q];
    CUresult rc = g->drv->memset_d8_async(c->ws + at[PRISM_WS_STATS_Q], 0,
                                          stats_bytes, (CUstream)c->stream);
    if (rc != CUDA_SUCCESS)
        return cuda_fail(p, rc, "clearing the workspace");
    prism_grid_input in = grid_input(p, c);
    bool varlen = b->cu_seqlens_q != NULL;
    const prism_tensor *q = c->q, *k = c->k;
    PoolParams pp = {
        .q = q->data, .k = k->data,
        .q_stride_b = varlen ? 0 : q->stride_b, .q_stride_h = q->stride_h,
        .q_stride_s = q->stride_s,
        .k_stride_b = varlen ? 0 : k->stride_b, .k_stride_h = k->stride_h,
        .k_stride_s = k->stride_s,
        .cu_seqlens_q = b->cu_seqlens_q, .cu_seqlens_k = b->cu_seqlens_k,
        .pooled_q = PTR(c->ws, at[PRISM_WS_POOLED_Q]),
        .pooled_k = PTR(c->ws, at[PRISM_WS_POOLED_K]),
        .stats_q = PTR(c->ws, at[PRISM_WS_STATS_Q]),
        .stats_k = PTR(c->ws, at[PRISM_WS_STATS_K]),
        .batch = b->batch, .seqlen_q = b->seqlen_q, .seqlen_k = b->seqlen_k,
        .nq_max = in.nq, .nk_max = in.nk,
        .q_heads = in.q_heads, .kv_heads = in.kv_heads,
    };
    const cuda_kernel *pool = &g->kernels[PRISM_KERNEL_POOL_STATS];
    unsigned grid[3];
    prism_launch_grid(&pool->shape, &in, grid);
    prism_status st;
    if (b->paged) {
        const prism_paged_kv *pg = b->paged;
        int fresh, sweeps;
        prism_launch_pool_keys(&in, &fresh, &sweeps);
        PoolPagedParams ppp = {.p = pp, .page_table = pg->page_table,
                               .pooled_keys = pg->pooled_keys,
                               .max_pages = pg->max_pages,
                               .page_size = pg->page_size,
                               .fresh_ctas = fresh};
        ppp.p.k_stride_b = k->stride_b; /* from page to page */
        if ((st = need_paged(p, pool)) != PRISM_OK)
            return st;
        st = launch_as(p, pool->paged, grid, pool->shape.threads, 0, &ppp,
                       c->stream, false, pool->paged_name);
    } else {
        st = launch_as(p, pool->main, grid, pool->shape.threads, 0, &pp,
                       c->stream, false, pool->main_name);
    }
    if (st != PRISM_OK)
        return st;
    uint64_t *totals = PTR(c->ws, at[PRISM_WS_TOTALS]);
    EstimateParams ep = {
        .pooled_q = pp.pooled_q, .pooled_k = pp.pooled_k,
        .stats_q = pp.stats_q, .stats_k = pp.stats_k,
        .scales = PTR(c->ws, at[PRISM_WS_SCALES]),
        .cu_seqlens_q = b->cu_seqlens_q, .cu_seqlens_k = b->cu_seqlens_k,
        .block_counts = mask->counts, .block_indices = mask->indices,
        .selected_total = totals, .causal_total = totals + 1,
        .batch = b->batch, .seqlen_q = b->seqlen_q, .seqlen_k = b->seqlen_k,
        .nq_max = in.nq, .nk_max = in.nk,
    };
    estimate_method(&c->prm, &ep);
    cuda_kernel *est = &g->kernels[PRISM_KERNEL_ESTIMATE];
    int rows = 0, smem = 0;
    if ((st = estimate_rows(p, est, in.nk, &rows, &smem)) != PRISM_OK)
        return st;
    ep.rows_per_cta = in.rows_per_cta = rows;
    prism_launch_grid(&est->shape, &in, grid);
    st = launch_as(p, est->main, grid, est->shape.threads, smem, &ep,
                   c->stream, true, est->main_name);
    if (st == PRISM_OK) {
        g->last_totals = (CUdeviceptr)(uintptr_t)totals;
        g->last_stream = c->stream;
    }
    return st;
}

static FastDiv fast_div(int32_t d) {
    FastDiv f = {.d = d};
    prism_launch_fastdiv(d, &f.mul, &f.shift);
    return f;
}

/* The paged attention kernels' extra block (AttnPaging). */
static AttnPaging paging_of(const prism_plan *p, const prism_paged_kv *pg) {
    AttnPaging a = {.page_table = pg->page_table,
                    .max_pages = pg->max_pages,
                    .page_size = pg->page_size,
                    .blocks_per_page = fast_div(pg->page_size /
                                                p->cfg.block_size)};
    return a;
}

/* A TMA map over one of Q, K, V, O: dims {D, S, H[, B]} innermost first, a
 * box of 64 elements (128 bytes, the 128B swizzle's width) x `rows`, zeros
 * outside the tensor.  Rank 3 for batch 1 and varlen (S = every packed
 * token), else rank 4.  `map` is 128-byte aligned (tma_params). */
static prism_status encode_map(prism_plan *p, TmaMap *map,
                               const prism_tensor *t, const char *name,
                               int rank, int64_t seq, int heads, int batch,
                               int rows) {
    cuuint64_t dims[4] = {(cuuint64_t)p->cfg.head_dim, (cuuint64_t)seq,
                          (cuuint64_t)heads, (cuuint64_t)batch};
    cuuint64_t strides[3] = {(cuuint64_t)t->stride_s * 2,
                             (cuuint64_t)t->stride_h * 2,
                             (cuuint64_t)t->stride_b * 2};
    cuuint32_t box[4] = {64, (cuuint32_t)rows, 1, 1};
    cuuint32_t elem[4] = {1, 1, 1, 1};
    const prism_driver *drv = cuda_of(p)->drv;
    CUresult rc = drv->tensor_map_encode_tiled(
        (CUtensorMap *)(void *)map,
        p->cfg.dtype == PRISM_DTYPE_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                         : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        (cuuint32_t)rank, t->data, dims, strides, box, elem,
        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (rc != CUDA_SUCCESS) {
        char err[PRISM_ERRMSG_MAX];
        prism_cuda_error(drv, rc, "cuTensorMapEncodeTiled", err, sizeof err);
        return prism_plan_fail(p, PRISM_ERR_CUDA,
                               "tensor map of %s (strides s %lld h %lld b %lld "
                               "elements): %s",
                               name, (long long)t->stride_s,
                               (long long)t->stride_h, (long long)t->stride_b,
                               err);
    }
    return PRISM_OK;
}

/* Fills tp: the plain parameters ap and the Q, K, V and O tensor maps.
 * O's box is one consumer warpgroup's rows (half the kernel's tile_m):
 * the overlapped consumer stores O through shared memory with it. */
static prism_status tma_params(prism_plan *p, const prism_call *c,
                               const AttnParams *ap, AttnTmaParams *tp) {
    const prism_launch_shape *l =
        &cuda_of(p)->kernels[PRISM_KERNEL_ATTENTION].shape;
    const prism_batch *b = c->b;
    bool varlen = b->cu_seqlens_q != NULL;
    memset(tp, 0, sizeof *tp);
    tp->a = *ap;
    tp->rank = varlen || b->batch == 1 ? 3 : 4;
    int64_t sq = varlen ? b->total_q : b->seqlen_q;
    int64_t sk = varlen ? b->total_k : b->seqlen_k;
    int batch = tp->rank == 3 ? 1 : b->batch;
    prism_status st;
    int hq = c->prm.q_heads, hkv = c->prm.kv_heads;
    /* paged: K and V are {D, page_size, Hkv, pages}, a tile's box at (its
     * row in the page, head, page) */
    const prism_paged_kv *pg = b->paged;
    int kv_rank = pg ? 4 : tp->rank;
    int64_t kv_rows = pg ? pg->page_size : sk;
    int kv_batch = pg ? pg->num_pages : batch;
    if ((st = encode_map(p, &tp->q, c->q, "q", tp->rank, sq, hq, batch,
                         l->tile_m)) != PRISM_OK ||
        (st = encode_map(p, &tp->k, c->k, "k", kv_rank, kv_rows, hkv,
                         kv_batch, l->tile_n)) != PRISM_OK ||
        (st = encode_map(p, &tp->v, c->v, "v", kv_rank, kv_rows, hkv,
                         kv_batch, l->tile_n)) != PRISM_OK)
        return st;
    return encode_map(p, &tp->o, c->o, "o", tp->rank, sq, hq, batch,
                      l->tile_m / 2);
}

/* The attention launch.  A persistent kernel (sm_90a) first gets its
 * work queue from the schedule kernel (one CTA) on the same stream, then
 * runs one CTA per SM; the schedule may split long rows into pieces for
 * the CTAs that would otherwise idle (gen/templates/attention_sm90*.cu).  Both
 * are programmatic dependent launches: the schedule kernel starts while
 * the kernel before it (the estimator's, or the caller's that wrote the
 * mask) finishes and waits for it; the attention CTAs start once it has,
 * while the schedule is built, on first items that need no queue. */
static prism_status run_attention(prism_plan *p, const prism_call *c,
                                  const prism_block_mask *mask) {
    const cuda_plan *g = cuda_of(p);
    const prism_batch *b = c->b;
    const size_t *at = c->layout.at;
    const prism_tensor *q = c->q, *k = c->k, *v = c->v, *o = c->o;
    bool varlen = b->cu_seqlens_q != NULL;
    const cuda_kernel *attn = &g->kernels[PRISM_KERNEL_ATTENTION];
    const prism_launch_shape *l = &attn->shape;
    prism_grid_input in = grid_input(p, c);
    AttnParams ap = {
        .q = q->data, .k = k->data, .v = v->data, .o = o->data, .lse = c->lse,
        .q_stride_b = varlen ? 0 : q->stride_b, .q_stride_h = q->stride_h,
        .q_stride_s = q->stride_s,
        /* paged: from page to page */
        .k_stride_b = varlen && !b->paged ? 0 : k->stride_b,
        .k_stride_h = k->stride_h, .k_stride_s = k->stride_s,
        .v_stride_b = varlen && !b->paged ? 0 : v->stride_b,
        .v_stride_h = v->stride_h, .v_stride_s = v->stride_s,
        .o_stride_b = varlen ? 0 : o->stride_b, .o_stride_h = o->stride_h,
        .o_stride_s = o->stride_s,
        .cu_seqlens_q = b->cu_seqlens_q, .cu_seqlens_k = b->cu_seqlens_k,
        .block_counts = mask->counts, .block_indices = mask->indices,
        .schedule = PTR(c->ws, at[PRISM_WS_SCHEDULE]),
        .partial_o = PTR(c->ws, at[PRISM_WS_PARTIAL_O]),
        .partial_ml = PTR(c->ws, at[PRISM_WS_PARTIAL_ML]),
        .split_arrived = PTR(c->ws, at[PRISM_WS_SPLIT_ARRIVED]),
        .ctas = (int32_t)prism_launch_persistent_ctas(l, &in),
        .split_slots = (int32_t)cuda_split_slots(g),
        .batch = b->batch, .seqlen_q = b->seqlen_q, .seqlen_k = b->seqlen_k,
        .nq_max = mask->nq, .nk_max = mask->nk,
        .scale_log2 = (float)(1.4426950408889634 * c->prm.softmax_scale),
        .q_heads = fast_div(c->prm.q_heads),
        .kv_heads = fast_div(c->prm.kv_heads),
        .group = fast_div(c->prm.q_heads / c->prm.kv_heads),
    };
    /* CUtensorMap's alignment, maps first; a paged block starts with the
     * plain one, which is all the schedule kernel reads */
    _Alignas(128) AttnTmaPagedParams tpp;
    AttnPagedParams app = {.a = ap};
    void *params = &ap;
    if (l->tensor_maps) {
        prism_status st = tma_params(p, c, &ap, &tpp.t);
        if (st != PRISM_OK)
            return st;
        params = &tpp;
    }
    CUfunction f = attn->main;
    const char *name = attn->main_name;
    if (b->paged) {
        prism_status st = need_paged(p, attn);
        if (st != PRISM_OK)
            return st;
        app.pg = paging_of(p, b->paged);
        tpp.pg = app.pg;
        params = l->tensor_maps ? (void *)&tpp : (void *)&app;
        f = attn->paged;
        name = attn->paged_name;
    }
    unsigned grid[3];
    prism_launch_grid(l, &in, grid);
    if (l->grid == PRISM_GRID_PERSISTENT) {
        static const unsigned one[3] = {1, 1, 1};
        prism_status st = launch_as(p, attn->second, one, l->schedule_threads,
                                    0, params, c->stream, true,
                                    attn->second_name);
        if (st != PRISM_OK)
            return st;
        return launch_as(p, f, grid, l->threads, l->dynamic_smem, params,
                         c->stream, true, name);
    }
    return launch_as(p, f, grid, l->threads, l->dynamic_smem, params,
                     c->stream, false, name);
}

prism_status prism_cuda_estimate(prism_plan *p, const prism_call *c) {
    prism_status st = make_current(p);
    return st == PRISM_OK ? run_estimate(p, c, c->mask) : st;
}

prism_status prism_cuda_attention(prism_plan *p, const prism_call *c) {
    prism_status st = make_current(p);
    return st == PRISM_OK ? run_attention(p, c, c->mask) : st;
}

/* Estimation into the caller's mask, or into the workspace's own. */
prism_status prism_cuda_prefill(prism_plan *p, const prism_call *c) {
    prism_status st = make_current(p);
    if (st != PRISM_OK)
        return st;
    const size_t *at = c->layout.at;
    prism_block_mask own = {
        .counts = PTR(c->ws, at[PRISM_WS_COUNTS]),
        .indices = PTR(c->ws, at[PRISM_WS_INDICES]),
        .nq = prism_ceil_div(c->b->seqlen_q, p->cfg.block_size),
        .nk = prism_ceil_div(c->b->seqlen_k, p->cfg.block_size)};
    const prism_block_mask *use = c->mask ? c->mask : &own;
    if ((st = run_estimate(p, c, use)) != PRISM_OK)
        return st;
    return run_attention(p, c, use);
}
