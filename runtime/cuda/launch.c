/*
 * launch.c - argument validation and kernel launches.
 *
 * The kernels take their parameter blocks by value; the blocks are defined
 * once, in gen/templates/KERNEL_params.h, which the generated sources and
 * this file both compile, so host and device agree on every offset by
 * construction.  Grids and launch shapes come from the kernels' specs
 * (gen/launch.h).  Nothing here allocates or synchronises.
 */
#include "runtime/plan.h"
#include "runtime/cpu/cpu_backend.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gen/templates/attention_params.h"
#include "gen/templates/estimate_params.h"
#include "gen/templates/pool_stats_params.h"

#define DEV(p) ((CUdeviceptr)(uintptr_t)(p))
#define PTR(base, off) ((void *)(uintptr_t)((base) + (off)))

static prism_status check_batch(prism_plan *p, const prism_batch *b) {
    if (!b)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER, "batch is NULL");
    if (b->dtype != p->cfg.dtype)
        return prism_plan_fail(p, PRISM_ERR_DTYPE_MISMATCH,
                               "batch dtype %s but the plan's config '%s' is "
                               "%s; create a plan for %s",
                               prism_dtype_name(b->dtype) ? prism_dtype_name(b->dtype) : "?",
                               p->cfg.name, prism_dtype_name(p->cfg.dtype),
                               prism_dtype_name(b->dtype) ? prism_dtype_name(b->dtype) : "it");
    if (b->batch < 1 || b->batch > p->limits.max_batch)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "batch %d outside [1, %d] (the plan's max_batch)",
                               b->batch, p->limits.max_batch);
    if (b->seqlen_q < 1 || b->seqlen_q > p->limits.max_seqlen_q ||
        b->seqlen_k > p->limits.max_seqlen_k)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "seqlen_q %d / seqlen_k %d outside the plan's "
                               "limits (1..%d / ..%d)", b->seqlen_q, b->seqlen_k,
                               p->limits.max_seqlen_q, p->limits.max_seqlen_k);
    if (b->seqlen_k < b->seqlen_q)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "seqlen_k %d < seqlen_q %d: queries are the last "
                               "tokens of the keys, so Sk >= Sq",
                               b->seqlen_k, b->seqlen_q);
    if (!b->cu_seqlens_q != !b->cu_seqlens_k)
        return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                               "pass both cu_seqlens_q and cu_seqlens_k, or "
                               "neither");
    if (((uintptr_t)b->cu_seqlens_q | (uintptr_t)b->cu_seqlens_k) % 4)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "cu_seqlens must be 4-byte aligned int32 arrays");
    return PRISM_OK;
}

static prism_status check_tensor(prism_plan *p, const prism_tensor *t,
                                 const char *name, bool varlen) {
    if (!t || !t->data)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER,
                               "tensor %s is NULL", name);
    int align = p->cpu ? 2 : 16, mult = p->cpu ? 1 : 8; /* host: relaxed */
    if ((uintptr_t)t->data % (uintptr_t)align)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "tensor %s at %p is not %d-byte aligned", name,
                               t->data, align);
    int64_t d = p->cfg.head_dim;
    bool bad = t->stride_h <= 0 || t->stride_s <= 0 || t->stride_h % mult ||
               t->stride_s % mult || t->stride_s < (t->stride_h < d ? d : 1);
    if (!varlen)
        bad = bad || t->stride_b <= 0 || t->stride_b % mult;
    if (bad)
        return prism_plan_fail(p, PRISM_ERR_BAD_STRIDE,
                               "tensor %s strides (b %lld, h %lld, s %lld) must "
                               "be positive multiples of %d elements with rows "
                               "of head_dim %d not overlapping", name,
                               (long long)t->stride_b, (long long)t->stride_h,
                               (long long)t->stride_s, mult, p->cfg.head_dim);
    return PRISM_OK;
}

static prism_status check_mask(prism_plan *p, const prism_batch *b,
                               const prism_block_mask *m) {
    if (!m->counts || !m->indices)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER,
                               "block mask counts/indices are NULL");
    if (((uintptr_t)m->counts | (uintptr_t)m->indices) % 4)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "block mask arrays must be 4-byte aligned");
    int nq = prism_ceil_div(b->seqlen_q, p->cfg.block_size);
    int nk = prism_ceil_div(b->seqlen_k, p->cfg.block_size);
    if (m->nq != nq || m->nk != nk)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "block mask is %d x %d blocks but this batch "
                               "needs nq %d x nk %d (block_size %d)", m->nq,
                               m->nk, nq, nk, p->cfg.block_size);
    return PRISM_OK;
}

/* Launches f.  dependent: a programmatic dependent launch where the
 * device has them (sm_90; elsewhere a plain launch) -- the kernel may
 * start while the one before it on the stream still runs, once that one
 * allows it (griddepcontrol.launch_dependents), and waits itself for what
 * it needs of it (griddepcontrol.wait).  Everything earlier on the stream
 * has completed by then, as the kernel before could not start earlier. */
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
    CUresult rc = p->drv->launch_kernel_ex(&cfg, f, args, NULL);
    if (rc != CUDA_SUCCESS) {
        char err[PRISM_ERRMSG_MAX];
        prism_cuda_error(p->drv, rc, what, err, sizeof err);
        return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
    }
    return PRISM_OK;
}

static prism_grid_input grid_input(const prism_plan *p, const prism_batch *b) {
    prism_grid_input in = {
        .batch = b->batch,
        .seqlen_q = b->seqlen_q,
        .nq = prism_ceil_div(b->seqlen_q, p->cfg.block_size),
        .nk = prism_ceil_div(b->seqlen_k, p->cfg.block_size),
        .sm_count = p->sm_count,
    };
    return in;
}

/* The workspace to use: the caller's (checked for size) or the plan's. */
static prism_status pick_workspace(prism_plan *p, const prism_batch *b,
                                   void *workspace, size_t size,
                                   CUdeviceptr *base, plan_workspace *ws) {
    prism_plan_workspace_layout(p, b->batch, b->seqlen_q, b->seqlen_k, ws);
    if (workspace) {
        if ((uintptr_t)workspace % 256)
            return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                                   "workspace must be 256-byte aligned");
        if (size < ws->total)
            return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                                   "workspace of %zu bytes is too small: this "
                                   "batch needs %zu (prism_plan_workspace_size)",
                                   size, ws->total);
        *base = DEV(workspace);
        return PRISM_OK;
    }
    if (!p->workspace)
        return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                               "the plan was created with caller_workspace: "
                               "pass a workspace");
    *base = p->workspace;
    return PRISM_OK;
}

/* prism_estimate's CTA holds up to max_rows query-block rows (one warp
 * selects each) that share every pooled-K tile, with both bands' logits of
 * each row in dynamic shared memory (smem_per_row_block bytes per key
 * block).  Take as many rows as keep two CTAs per SM, else as many as fit
 * at all; raise the kernel's dynamic shared memory limit when that needs
 * more than 48 KiB. */
static prism_status estimate_shape(prism_plan *p, plan_kernel *est, int nk,
                                   int *rows, int *smem) {
    int static_bytes = 0, optin = 0, per_sm = 0;
    CUresult rc = p->drv->func_get_attribute(
        &static_bytes, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, est->main);
    if (rc == CUDA_SUCCESS)
        rc = p->drv->device_get_attribute(
            &optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            p->device);
    if (rc == CUDA_SUCCESS)
        rc = p->drv->device_get_attribute(
            &per_sm, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
            p->device);
    char err[PRISM_ERRMSG_MAX];
    if (rc != CUDA_SUCCESS) {
        prism_cuda_error(p->drv, rc, "prism_estimate shared memory", err,
                         sizeof err);
        return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
    }
    const int64_t per_row = (int64_t)est->shape.smem_per_row_block * nk;
    const int64_t two_per_sm = per_sm / 2 - 1024; /* 1 KiB reserved per CTA */
    int r = est->shape.max_rows;
    while (r > 1 && static_bytes + r * per_row > two_per_sm)
        r /= 2;
    while (r > 1 && static_bytes + r * per_row > optin)
        r /= 2;
    if (static_bytes + r * per_row > optin)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "%s needs %lld bytes of shared memory for %d "
                               "key blocks but the device allows %d; use a "
                               "larger block_size",
                               est->main_name,
                               (long long)(static_bytes + r * per_row), nk,
                               optin);
    *rows = r;
    *smem = est->shape.dynamic_smem + (int)(r * per_row);
    if (*smem > est->dynamic_smem && static_bytes + *smem > 48 * 1024) {
        rc = p->drv->func_set_attribute(
            est->main, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, *smem);
        if (rc != CUDA_SUCCESS) {
            prism_cuda_error(p->drv, rc, "prism_estimate shared memory", err,
                             sizeof err);
            return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
        }
        est->dynamic_smem = *smem; /* the limit now set on the function */
    }
    return PRISM_OK;
}

static prism_status run_estimate(prism_plan *p, const prism_batch *b,
                                 const prism_tensor *q, const prism_tensor *k,
                                 const prism_block_mask *mask, CUdeviceptr base,
                                 const plan_workspace *ws, prism_stream stream) {
    prism_grid_input in = grid_input(p, b);
    CUresult rc = p->drv->memset_d8_async(base + ws->stats_q, 0, ws->stats_bytes,
                                          (CUstream)stream);
    if (rc != CUDA_SUCCESS) {
        char err[PRISM_ERRMSG_MAX];
        prism_cuda_error(p->drv, rc, "clearing the workspace", err, sizeof err);
        return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
    }
    bool varlen = b->cu_seqlens_q != NULL;
    PoolParams pp = {
        .q = q->data, .k = k->data,
        .q_stride_b = varlen ? 0 : q->stride_b, .q_stride_h = q->stride_h,
        .q_stride_s = q->stride_s,
        .k_stride_b = varlen ? 0 : k->stride_b, .k_stride_h = k->stride_h,
        .k_stride_s = k->stride_s,
        .cu_seqlens_q = b->cu_seqlens_q, .cu_seqlens_k = b->cu_seqlens_k,
        .pooled_q = PTR(base, ws->pooled_q), .pooled_k = PTR(base, ws->pooled_k),
        .stats_q = PTR(base, ws->stats_q), .stats_k = PTR(base, ws->stats_k),
        .batch = b->batch, .seqlen_q = b->seqlen_q, .seqlen_k = b->seqlen_k,
        .nq_max = in.nq, .nk_max = in.nk,
    };
    const plan_kernel *pool = &p->kernels[PRISM_KERNEL_POOL_STATS];
    unsigned grid[3];
    prism_launch_grid(&pool->shape, &p->cfg, &in, grid);
    prism_status st = launch_as(p, pool->main, grid, pool->shape.threads, 0,
                                &pp, stream, false, pool->main_name);
    if (st != PRISM_OK)
        return st;
    uint64_t *totals = PTR(base, ws->totals);
    EstimateParams ep = {
        .pooled_q = pp.pooled_q, .pooled_k = pp.pooled_k,
        .stats_q = pp.stats_q, .stats_k = pp.stats_k,
        .scales = PTR(base, ws->scales),
        .cu_seqlens_q = b->cu_seqlens_q, .cu_seqlens_k = b->cu_seqlens_k,
        .block_counts = mask->counts, .block_indices = mask->indices,
        .selected_total = totals, .causal_total = totals + 1,
        .batch = b->batch, .seqlen_q = b->seqlen_q, .seqlen_k = b->seqlen_k,
        .nq_max = in.nq, .nk_max = in.nk,
    };
    plan_kernel *est = &p->kernels[PRISM_KERNEL_ESTIMATE];
    int smem = 0;
    if ((st = estimate_shape(p, est, in.nk, &ep.rows_per_cta, &smem)) != PRISM_OK)
        return st;
    in.rows_per_cta = ep.rows_per_cta;
    prism_launch_grid(&est->shape, &p->cfg, &in, grid);
    /* a dependent launch: its CTAs start in pool_stats' tail */
    st = launch_as(p, est->main, grid, est->shape.threads, smem, &ep, stream,
                   true, est->main_name);
    if (st == PRISM_OK) {
        p->last_totals = base + ws->totals;
        p->last_stream = stream;
        p->has_estimate = true;
    }
    return st;
}

/* A TMA map over one of Q, K, V: dims {D, S, H[, B]} innermost first, a box
 * of 64 elements (128 bytes, the 128B swizzle's width) x `rows`, zeros
 * outside the tensor.  Rank 3 for batch 1 and varlen (S = every packed
 * token), else rank 4. */
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
    CUresult rc = p->drv->tensor_map_encode_tiled(
        (CUtensorMap *)(void *)map, /* 128-byte aligned (tma_params) */
        p->cfg.dtype == PRISM_DTYPE_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                         : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        (cuuint32_t)rank, t->data, dims, strides, box, elem,
        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (rc != CUDA_SUCCESS) {
        char err[PRISM_ERRMSG_MAX];
        prism_cuda_error(p->drv, rc, "cuTensorMapEncodeTiled", err, sizeof err);
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
static prism_status tma_params(prism_plan *p, const prism_batch *b,
                               const prism_tensor *q, const prism_tensor *k,
                               const prism_tensor *v, const prism_tensor *o,
                               const AttnParams *ap, AttnTmaParams *tp) {
    const prism_config *c = &p->cfg;
    const prism_launch_shape *at = &p->kernels[PRISM_KERNEL_ATTENTION].shape;
    bool varlen = b->cu_seqlens_q != NULL;
    memset(tp, 0, sizeof *tp);
    tp->a = *ap;
    tp->rank = varlen || b->batch == 1 ? 3 : 4;
    int64_t sq = varlen ? b->total_q : b->seqlen_q;
    int64_t sk = varlen ? b->total_k : b->seqlen_k;
    int batch = tp->rank == 3 ? 1 : b->batch;
    prism_status st;
    if ((st = encode_map(p, &tp->q, q, "q", tp->rank, sq, c->q_heads, batch,
                         at->tile_m)) != PRISM_OK ||
        (st = encode_map(p, &tp->k, k, "k", tp->rank, sk, c->kv_heads, batch,
                         at->tile_n)) != PRISM_OK ||
        (st = encode_map(p, &tp->v, v, "v", tp->rank, sk, c->kv_heads, batch,
                         at->tile_n)) != PRISM_OK)
        return st;
    return encode_map(p, &tp->o, o, "o", tp->rank, sq, c->q_heads, batch,
                      at->tile_m / 2);
}

/* The attention launch.  A persistent kernel (sm_90a) first gets its
 * work queue from the schedule kernel (one CTA) on the same stream, then
 * runs one CTA per SM; the schedule may split long rows into pieces for
 * the CTAs that would otherwise idle (gen/templates/attention_sm90*.cu).  Both
 * are programmatic dependent launches: the schedule kernel starts while
 * the kernel before it (the estimator's, or the caller's that wrote the
 * mask) finishes and waits for it; the attention CTAs start once it has,
 * while the schedule is built, on first items that need no queue. */
static prism_status run_attention(prism_plan *p, const prism_batch *b,
                                  const prism_tensor *q, const prism_tensor *k,
                                  const prism_tensor *v,
                                  const prism_block_mask *mask,
                                  const prism_tensor *o, float *lse,
                                  CUdeviceptr base, const plan_workspace *ws,
                                  prism_stream stream) {
    const prism_config *c = &p->cfg;
    bool varlen = b->cu_seqlens_q != NULL;
    AttnParams ap = {
        .q = q->data, .k = k->data, .v = v->data, .o = o->data, .lse = lse,
        .q_stride_b = varlen ? 0 : q->stride_b, .q_stride_h = q->stride_h,
        .q_stride_s = q->stride_s,
        .k_stride_b = varlen ? 0 : k->stride_b, .k_stride_h = k->stride_h,
        .k_stride_s = k->stride_s,
        .v_stride_b = varlen ? 0 : v->stride_b, .v_stride_h = v->stride_h,
        .v_stride_s = v->stride_s,
        .o_stride_b = varlen ? 0 : o->stride_b, .o_stride_h = o->stride_h,
        .o_stride_s = o->stride_s,
        .cu_seqlens_q = b->cu_seqlens_q, .cu_seqlens_k = b->cu_seqlens_k,
        .block_counts = mask->counts, .block_indices = mask->indices,
        .schedule = PTR(base, ws->schedule),
        .partial_o = PTR(base, ws->partial_o),
        .partial_ml = PTR(base, ws->partial_ml),
        .split_arrived = PTR(base, ws->split_arrived),
        .split_slots = ws->split_slots,
        .batch = b->batch, .seqlen_q = b->seqlen_q, .seqlen_k = b->seqlen_k,
        .nq_max = mask->nq, .nk_max = mask->nk,
        .scale_log2 = (float)(1.4426950408889634 / sqrt((double)c->head_dim)),
    };
    const plan_kernel *at = &p->kernels[PRISM_KERNEL_ATTENTION];
    const prism_launch_shape *l = &at->shape;
    prism_grid_input in = grid_input(p, b);
    ap.ctas = (int32_t)prism_launch_persistent_ctas(l, c, &in);
    _Alignas(128) AttnTmaParams tp; /* CUtensorMap's alignment, maps first */
    void *params = &ap;
    if (l->tensor_maps) {
        prism_status st = tma_params(p, b, q, k, v, o, &ap, &tp);
        if (st != PRISM_OK)
            return st;
        params = &tp;
    }
    unsigned grid[3];
    prism_launch_grid(l, c, &in, grid);
    if (l->grid != PRISM_GRID_PERSISTENT)
        return launch_as(p, at->main, grid, l->threads, l->dynamic_smem,
                         params, stream, false, at->main_name);
    static const unsigned one[3] = {1, 1, 1};
    prism_status st = launch_as(p, at->second, one, l->schedule_threads, 0,
                                params, stream, true, at->second_name);
    if (st != PRISM_OK)
        return st;
    return launch_as(p, at->main, grid, l->threads, l->dynamic_smem, params,
                     stream, true, at->main_name);
}

static prism_status check_qk(prism_plan *p, const prism_batch *b,
                             const prism_tensor *q, const prism_tensor *k) {
    prism_status st;
    if (!p)
        return PRISM_ERR_NULL_POINTER;
    bool varlen = b && b->cu_seqlens_q;
    if ((st = check_batch(p, b)) != PRISM_OK ||
        (st = check_tensor(p, q, "q", varlen)) != PRISM_OK ||
        (st = check_tensor(p, k, "k", varlen)) != PRISM_OK)
        return st;
    if (!p->cpu && p->drv->ctx_set_current(p->cu_ctx) != CUDA_SUCCESS)
        return prism_plan_fail(p, PRISM_ERR_CUDA, "cannot make the plan's "
                                                  "CUDA context current");
    return PRISM_OK;
}

prism_status prism_estimate(prism_plan *p, const prism_batch *b,
                            const prism_tensor *q, const prism_tensor *k,
                            const prism_block_mask *mask, void *workspace,
                            size_t workspace_size, prism_stream stream) {
    prism_status st = check_qk(p, b, q, k);
    if (st != PRISM_OK)
        return st;
    if (!mask)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER, "mask is NULL");
    if ((st = check_mask(p, b, mask)) != PRISM_OK)
        return st;
    if (p->cpu)
        return prism_cpu_estimate(p, b, q, k, mask, workspace, workspace_size);
    CUdeviceptr base;
    plan_workspace ws;
    if ((st = pick_workspace(p, b, workspace, workspace_size, &base, &ws)) != PRISM_OK)
        return st;
    return run_estimate(p, b, q, k, mask, base, &ws, stream);
}

prism_status prism_sparse_attention(prism_plan *p, const prism_batch *b,
                                    const prism_tensor *q,
                                    const prism_tensor *k,
                                    const prism_tensor *v,
                                    const prism_block_mask *mask,
                                    const prism_tensor *o, float *lse,
                                    void *workspace, size_t workspace_size,
                                    prism_stream stream) {
    prism_status st = check_qk(p, b, q, k);
    if (st != PRISM_OK)
        return st;
    bool varlen = b->cu_seqlens_q != NULL;
    if ((st = check_tensor(p, v, "v", varlen)) != PRISM_OK ||
        (st = check_tensor(p, o, "o", varlen)) != PRISM_OK)
        return st;
    if (!mask)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER, "mask is NULL");
    if ((st = check_mask(p, b, mask)) != PRISM_OK)
        return st;
    if ((uintptr_t)lse % 4)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "lse must be 4-byte aligned fp32");
    if (p->cpu)
        return prism_cpu_sparse_attention(p, b, q, k, v, mask, o, lse,
                                          workspace, workspace_size);
    CUdeviceptr base;
    plan_workspace ws;
    if ((st = pick_workspace(p, b, workspace, workspace_size, &base, &ws)) != PRISM_OK)
        return st;
    return run_attention(p, b, q, k, v, mask, o, lse, base, &ws, stream);
}

prism_status prism_prefill(prism_plan *p, const prism_batch *b,
                           const prism_tensor *q, const prism_tensor *k,
                           const prism_tensor *v, const prism_tensor *o,
                           float *lse, const prism_block_mask *mask,
                           void *workspace, size_t workspace_size,
                           prism_stream stream) {
    prism_status st = check_qk(p, b, q, k);
    if (st != PRISM_OK)
        return st;
    bool varlen = b->cu_seqlens_q != NULL;
    if ((st = check_tensor(p, v, "v", varlen)) != PRISM_OK ||
        (st = check_tensor(p, o, "o", varlen)) != PRISM_OK)
        return st;
    if ((uintptr_t)lse % 4)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "lse must be 4-byte aligned fp32");
    if (p->cpu) {
        if (mask && (st = check_mask(p, b, mask)) != PRISM_OK)
            return st;
        return prism_cpu_prefill(p, b, q, k, v, o, lse, mask, workspace,
                                 workspace_size);
    }
    CUdeviceptr base;
    plan_workspace ws;
    if ((st = pick_workspace(p, b, workspace, workspace_size, &base, &ws)) != PRISM_OK)
        return st;
    prism_block_mask own = {
        .counts = PTR(base, ws.counts), .indices = PTR(base, ws.indices),
        .nq = prism_ceil_div(b->seqlen_q, p->cfg.block_size),
        .nk = prism_ceil_div(b->seqlen_k, p->cfg.block_size)};
    if (mask && (st = check_mask(p, b, mask)) != PRISM_OK)
        return st;
    const prism_block_mask *use = mask ? mask : &own;
    if ((st = run_estimate(p, b, q, k, use, base, &ws, stream)) != PRISM_OK)
        return st;
    return run_attention(p, b, q, k, v, use, o, lse, base, &ws, stream);
}

prism_status prism_plan_density(prism_plan *p, double *density) {
    if (!p || !density)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER,
                               "prism_plan_density: NULL argument");
    if (p->cpu)
        return prism_cpu_density(p, density);
    if (!p->has_estimate)
        return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                               "no estimate has run on this plan yet");
    unsigned long long totals[2] = {0, 0};
    CUresult rc = p->drv->ctx_set_current(p->cu_ctx);
    if (rc == CUDA_SUCCESS)
        rc = p->drv->stream_synchronize((CUstream)p->last_stream);
    if (rc == CUDA_SUCCESS)
        rc = p->drv->memcpy_dtoh(totals, p->last_totals, sizeof totals);
    if (rc != CUDA_SUCCESS) {
        char err[PRISM_ERRMSG_MAX];
        prism_cuda_error(p->drv, rc, "reading the density", err, sizeof err);
        return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
    }
    *density = totals[1] ? (double)totals[0] / (double)totals[1] : 0.0;
    return PRISM_OK;
}
