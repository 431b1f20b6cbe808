/*
 * plan.c - plans: creation, validation of every call, dispatch.
 *
 * This file sits above both backends (runtime/cuda, runtime/cpu): it is
 * the one place that knows them all, and they know only runtime/plan.h
 * and runtime/backend.h below them.
 *
 * Everything that does not depend on the device happens here, once: the
 * config is validated when the plan is made (a plan made from a file
 * trusts the loader's validation), the limits are checked, the backend is
 * picked by the context's device kind and builds its state, and the
 * plan's workspace is laid out (runtime/workspace.c) and allocated.  Each
 * call's arguments -- batch shape against the limits, dtype, tensors, mask
 * geometry, lse, workspace, and the run-time parameters (the batch's, or
 * the config's) -- are checked here too, with the backend's alignment
 * rules, before the call goes to the backend's table
 * (runtime/backend.h); a paged batch's fields too (runtime/paged.c), its
 * K and V pools checked as tensors of num_pages pages.  What only a backend can check (the CPU reads masks
 * and cu_seqlens itself, so it checks their contents) it checks itself.
 */
#include "runtime/backend.h"
#include "runtime/paged.h"

#include "base/checked.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* The backend of each device kind. */
static const prism_backend *backend_for(prism_device_kind kind) {
    static const prism_backend *const table[] = {
        [PRISM_DEVICE_CUDA] = &prism_cuda_backend,
        [PRISM_DEVICE_CPU] = &prism_cpu_backend,
    };
    if ((unsigned)kind >= PRISM_ARRAY_LEN(table))
        return NULL;
    return table[kind];
}

static prism_status check_limits(prism_plan *p, const prism_plan_limits *l) {
    if (l->max_batch < 1 || l->max_seqlen_q < 1 || l->max_seqlen_k < 1)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "plan limits must be positive (max_batch %d, "
                               "max_seqlen_q %d, max_seqlen_k %d)",
                               l->max_batch, l->max_seqlen_q, l->max_seqlen_k);
    if (l->max_batch > PRISM_MAX_BATCH)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "max_batch %d is above PRISM_MAX_BATCH (%d)",
                               l->max_batch, PRISM_MAX_BATCH);
    if (l->max_seqlen_q > PRISM_MAX_SEQLEN || l->max_seqlen_k > PRISM_MAX_SEQLEN)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "max_seqlen_q %d / max_seqlen_k %d: above "
                               "PRISM_MAX_SEQLEN (%d)", l->max_seqlen_q,
                               l->max_seqlen_k, PRISM_MAX_SEQLEN);
    if (l->max_seqlen_k < l->max_seqlen_q)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "max_seqlen_k %d < max_seqlen_q %d: queries are "
                               "the last tokens of the keys, so Sk >= Sq",
                               l->max_seqlen_k, l->max_seqlen_q);
    return PRISM_OK;
}

/* The workspace shape of the plan's limits, with the config's heads. */
static prism_ws_shape limits_shape(const prism_plan *p) {
    return (prism_ws_shape){p->limits.max_batch, p->limits.max_seqlen_q,
                            p->limits.max_seqlen_k, p->cfg.q_heads,
                            p->cfg.kv_heads};
}

/* The workspace the limits need must stay under the documented maximum,
 * with or without caller_workspace: a caller sizes its buffer from
 * prism_plan_workspace_size, which must never wrap. */
static prism_status check_workspace_limit(prism_plan *p) {
    prism_workspace ws;
    prism_ws_shape shape = limits_shape(p);
    prism_workspace_layout(p, &shape, &ws);
    if (ws.total > PRISM_MAX_WORKSPACE_BYTES)
        return prism_plan_fail(
            p, PRISM_ERR_BAD_SHAPE,
            "plan limits (max_batch %d, max_seqlen_q %d, max_seqlen_k %d) "
            "need a workspace of %s%zu bytes, above PRISM_MAX_WORKSPACE_BYTES "
            "(%zu); lower the limits", p->limits.max_batch,
            p->limits.max_seqlen_q, p->limits.max_seqlen_k,
            ws.total == SIZE_MAX ? "over " : "", ws.total,
            (size_t)PRISM_MAX_WORKSPACE_BYTES);
    return PRISM_OK;
}

/* The plan's own workspace for its limits (none with caller_workspace). */
static prism_status own_workspace(prism_plan *p) {
    if (p->limits.caller_workspace)
        return PRISM_OK;
    prism_workspace ws;
    prism_ws_shape shape = limits_shape(p);
    prism_workspace_layout(p, &shape, &ws);
    prism_status st = p->backend->workspace_alloc(p, ws.total, &p->workspace);
    if (st == PRISM_OK)
        p->workspace_size = ws.total;
    return st;
}

/* Creation from a valid config. */
static prism_status create_valid(prism_context *ctx, const prism_config *cfg,
                                 const prism_plan_limits *limits,
                                 prism_plan **out) {
    prism_plan *p = calloc(1, sizeof *p);
    if (!p)
        return prism_context_fail(ctx, PRISM_ERR_OUT_OF_MEMORY,
                                  "out of memory creating a plan");
    p->ctx = ctx;
    p->cfg = *cfg;
    p->limits = *limits;
    p->arch = PRISM_ARCH_COUNT_;
    prism_status st;
    if (!(p->backend = backend_for(ctx->options.device)))
        st = prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                             "unknown device kind %d in the context options",
                             (int)ctx->options.device);
    else if ((st = check_limits(p, limits)) == PRISM_OK &&
             (st = p->backend->create(p)) == PRISM_OK &&
             (st = check_workspace_limit(p)) == PRISM_OK)
        st = own_workspace(p);
    if (st != PRISM_OK) {
        prism_plan_destroy(p);
        return st;
    }
    *out = p;
    return PRISM_OK;
}

prism_status prism_plan_create(prism_context *ctx, const prism_config *cfg,
                               const prism_plan_limits *limits,
                               prism_plan **out) {
    if (!ctx || !cfg || !limits || !out)
        return prism_context_fail(ctx, PRISM_ERR_NULL_POINTER,
                                  "prism_plan_create: NULL argument");
    *out = NULL;
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_config_validate(cfg, err, sizeof err);
    if (st != PRISM_OK)
        return prism_context_fail(ctx, st, err);
    return create_valid(ctx, cfg, limits, out);
}

prism_status prism_plan_create_from_file(prism_context *ctx, const char *path,
                                         const prism_plan_limits *limits,
                                         prism_plan **out) {
    if (!ctx || !path || !limits || !out)
        return prism_context_fail(ctx, PRISM_ERR_NULL_POINTER,
                                  "prism_plan_create_from_file: NULL argument");
    *out = NULL;
    prism_config cfg;
    char err[PRISM_ERRMSG_MAX];
    /* the loader validates; the plan trusts it */
    prism_status st = prism_config_load_file(path, &cfg, err, sizeof err);
    if (st != PRISM_OK)
        return prism_context_fail(ctx, st, err);
    return create_valid(ctx, &cfg, limits, out);
}

void prism_plan_destroy(prism_plan *p) {
    if (!p)
        return;
    if (p->workspace)
        p->backend->workspace_free(p, p->workspace);
    if (p->backend)
        p->backend->destroy(p);
    free(p);
}

size_t prism_plan_workspace_size(const prism_plan *p, const prism_batch *b) {
    if (!p)
        return 0;
    if (b && (b->batch < 1 || b->batch > p->limits.max_batch ||
              b->seqlen_q < 1 || b->seqlen_q > p->limits.max_seqlen_q ||
              b->seqlen_k < b->seqlen_q ||
              b->seqlen_k > p->limits.max_seqlen_k ||
              (b->params && prism_params_validate(b->params, NULL, 0))))
        return 0;
    prism_ws_shape shape = limits_shape(p);
    if (b) {
        shape = (prism_ws_shape){b->batch, b->seqlen_q, b->seqlen_k,
                                 p->cfg.q_heads, p->cfg.kv_heads};
        if (b->params) {
            shape.q_heads = b->params->q_heads;
            shape.kv_heads = b->params->kv_heads;
        }
    }
    prism_workspace ws;
    prism_workspace_layout(p, &shape, &ws);
    return ws.total <= PRISM_MAX_WORKSPACE_BYTES ? ws.total : 0;
}

prism_arch prism_plan_arch(const prism_plan *p) {
    return p ? p->arch : PRISM_ARCH_COUNT_;
}

const prism_config *prism_plan_config(const prism_plan *p) {
    return p ? &p->cfg : NULL;
}

const char *prism_plan_last_error(const prism_plan *p) {
    return p ? p->last_error : "no plan (NULL)";
}

/* ------------------------------------------------------------------------ */
/* Calls                                                                    */
/* ------------------------------------------------------------------------ */

static prism_status check_batch(prism_plan *p, const prism_batch *b) {
    if (!b)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER, "batch is NULL");
    const char *dtype = prism_dtype_name(b->dtype);
    if (b->dtype != p->cfg.dtype)
        return prism_plan_fail(p, PRISM_ERR_DTYPE_MISMATCH,
                               "batch dtype %s but the plan's config '%s' is "
                               "%s; create a plan for %s",
                               dtype ? dtype : "?", p->cfg.name,
                               prism_dtype_name(p->cfg.dtype),
                               dtype ? dtype : "it");
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
    if (b->cu_seqlens_q &&
        (b->total_q < 0 || b->total_k < 0 || b->total_q > PRISM_MAX_SEQLEN ||
         b->total_k > PRISM_MAX_SEQLEN))
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "ragged batch totals total_q %d / total_k %d "
                               "outside [0, PRISM_MAX_SEQLEN = %d]",
                               b->total_q, b->total_k, PRISM_MAX_SEQLEN);
    if (((uintptr_t)b->cu_seqlens_q | (uintptr_t)b->cu_seqlens_k) % 4)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "cu_seqlens must be 4-byte aligned int32 arrays");
    return PRISM_OK;
}

/* The call's run-time parameters: the batch's (checked), else the
 * config's; a softmax scale of 0 becomes 1/sqrt(head_dim). */
static prism_status resolve_params(prism_plan *p, prism_call *c) {
    if (c->b->params) {
        char err[PRISM_ERRMSG_MAX];
        prism_status st = prism_params_validate(c->b->params, err, sizeof err);
        if (st != PRISM_OK)
            return prism_plan_fail(p, st, "%s", err);
        c->prm = *c->b->params;
    } else {
        prism_params_init_from_config(&p->cfg, &c->prm);
    }
    if (c->prm.softmax_scale == 0.0)
        c->prm.softmax_scale = 1.0 / sqrt((double)p->cfg.head_dim);
    return PRISM_OK;
}

/* The elements a tensor's strides reach over its extents, checked against
 * PRISM_MAX_TENSOR_BYTES without wrapping. */
static bool tensor_span_ok(const prism_plan *p, const prism_tensor *t,
                           int64_t batch, int64_t heads, int64_t tokens) {
    int64_t span = p->cfg.head_dim;
    if (!prism_i64_mul_add(batch - 1, t->stride_b, span, &span) ||
        !prism_i64_mul_add(heads - 1, t->stride_h, span, &span) ||
        !prism_i64_mul_add(tokens > 0 ? tokens - 1 : 0, t->stride_s, span,
                           &span))
        return false;
    int64_t bytes;
    return !__builtin_mul_overflow(span, (int64_t)2, &bytes) &&
           bytes <= PRISM_MAX_TENSOR_BYTES &&
           (uintptr_t)t->data <= UINTPTR_MAX - (uintptr_t)bytes;
}

/* The extents a tensor's strides must cover in this call: its batch
 * entries, head count and tokens; stride_b counts unless the batch is
 * ragged.  A paged K or V is a pool of num_pages entries of page_size
 * tokens (prism_paged_kv). */
typedef struct tensor_extent {
    int64_t batch, heads, tokens;
    bool uses_stride_b;
} tensor_extent;

static tensor_extent extent_of(const prism_batch *b, int heads, bool queries,
                               bool kv) {
    if (kv && b->paged)
        return (tensor_extent){b->paged->num_pages, heads,
                               b->paged->page_size, true};
    bool varlen = b->cu_seqlens_q != NULL;
    int64_t tokens = varlen ? (queries ? b->total_q : b->total_k)
                            : (queries ? b->seqlen_q : b->seqlen_k);
    return (tensor_extent){varlen ? 1 : b->batch, heads, tokens, !varlen};
}

/* A tensor's data and strides, by the backend's rules (GPU kernels load
 * 16 bytes at a time; host code needs element alignment only), and the
 * span they reach over its extents. */
static prism_status check_tensor(prism_plan *p, const prism_tensor *t,
                                 const char *name, tensor_extent e) {
    if (!t || !t->data)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER,
                               "tensor %s is NULL", name);
    int align = p->backend->tensor_align, mult = p->backend->stride_multiple;
    if ((uintptr_t)t->data % (uintptr_t)align)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "tensor %s at %p is not %d-byte aligned", name,
                               t->data, align);
    int64_t d = p->cfg.head_dim;
    bool bad = t->stride_h <= 0 || t->stride_s <= 0 || t->stride_h % mult ||
               t->stride_s % mult || t->stride_s < (t->stride_h < d ? d : 1);
    if (e.uses_stride_b)
        bad = bad || t->stride_b <= 0 || t->stride_b % mult;
    if (bad)
        return prism_plan_fail(p, PRISM_ERR_BAD_STRIDE,
                               "tensor %s strides (b %lld, h %lld, s %lld) must "
                               "be positive multiples of %d elements with rows "
                               "of head_dim %d not overlapping", name,
                               (long long)t->stride_b, (long long)t->stride_h,
                               (long long)t->stride_s, mult, p->cfg.head_dim);
    if (!tensor_span_ok(p, t, e.batch, e.heads, e.tokens))
        return prism_plan_fail(p, PRISM_ERR_BAD_STRIDE,
                               "tensor %s strides (b %lld, h %lld, s %lld) over "
                               "%lld x %lld x %lld rows reach beyond "
                               "PRISM_MAX_TENSOR_BYTES (2^48 bytes); check the "
                               "strides", name, (long long)t->stride_b,
                               (long long)t->stride_h, (long long)t->stride_s,
                               (long long)e.batch, (long long)e.heads,
                               (long long)e.tokens);
    return PRISM_OK;
}

static prism_status check_mask(prism_plan *p, const prism_batch *b,
                               const prism_block_mask *m) {
    if (!m)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER, "mask is NULL");
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

/* The workspace to use: the caller's (checked) or the plan's. */
static prism_status pick_workspace(prism_plan *p, void *workspace, size_t size,
                                   prism_call *c) {
    const prism_batch *b = c->b;
    prism_ws_shape shape = {b->batch, b->seqlen_q, b->seqlen_k,
                            c->prm.q_heads, c->prm.kv_heads};
    prism_workspace_layout(p, &shape, &c->layout);
    /* within the limits with the config's heads, but a launch may have
     * more (prism_params) */
    if (c->layout.total > PRISM_MAX_WORKSPACE_BYTES)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "this batch with %d query / %d KV heads needs "
                               "a workspace above PRISM_MAX_WORKSPACE_BYTES "
                               "(%zu); use fewer sequences, tokens or heads "
                               "per launch", c->prm.q_heads, c->prm.kv_heads,
                               (size_t)PRISM_MAX_WORKSPACE_BYTES);
    if (workspace) {
        size_t align = p->backend->workspace_align;
        if ((uintptr_t)workspace % align)
            return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                                   "%s workspace must be %zu-byte aligned",
                                   p->backend->name, align);
        if (size < c->layout.total)
            return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                                   "workspace of %zu bytes is too small: this "
                                   "batch needs %zu (prism_plan_workspace_size)",
                                   size, c->layout.total);
        c->ws = (uintptr_t)workspace;
        return PRISM_OK;
    }
    if (!p->workspace)
        return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                               "the plan was created with caller_workspace: "
                               "pass a workspace");
    if (c->layout.total > p->workspace_size)
        return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                               "this batch with %d query / %d KV heads needs "
                               "a workspace of %zu bytes, more than the "
                               "plan's own %zu (sized for the config's %d / "
                               "%d heads); pass a workspace of "
                               "prism_plan_workspace_size(plan, batch) bytes",
                               c->prm.q_heads, c->prm.kv_heads,
                               c->layout.total, p->workspace_size,
                               p->cfg.q_heads, p->cfg.kv_heads);
    c->ws = (uintptr_t)p->workspace;
    return PRISM_OK;
}

enum { WITH_VO = 1, WITH_MASK = 2, MASK_OPTIONAL = 4 };

/* Every check of a call's arguments, then its workspace. */
static prism_status check_call(prism_plan *p, prism_call *c, unsigned what,
                               void *workspace, size_t workspace_size) {
    prism_status st;
    if ((st = check_batch(p, c->b)) != PRISM_OK ||
        (st = resolve_params(p, c)) != PRISM_OK)
        return st;
    int hq = c->prm.q_heads, hkv = c->prm.kv_heads;
    const prism_batch *b = c->b;
    if (b->paged && (st = prism_paged_check(p, b)) != PRISM_OK)
        return st;
    if ((st = check_tensor(p, c->q, "q", extent_of(b, hq, true, false))) !=
            PRISM_OK ||
        (st = check_tensor(p, c->k, "k", extent_of(b, hkv, false, true))) !=
            PRISM_OK)
        return st;
    if ((what & WITH_VO) &&
        ((st = check_tensor(p, c->v, "v", extent_of(b, hkv, false, true))) !=
             PRISM_OK ||
         (st = check_tensor(p, c->o, "o", extent_of(b, hq, true, false))) !=
             PRISM_OK))
        return st;
    if ((what & WITH_MASK) && (c->mask || !(what & MASK_OPTIONAL)) &&
        (st = check_mask(p, c->b, c->mask)) != PRISM_OK)
        return st;
    if ((uintptr_t)c->lse % 4)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "lse must be 4-byte aligned fp32");
    return pick_workspace(p, workspace, workspace_size, c);
}

prism_status prism_estimate(prism_plan *p, const prism_batch *b,
                            const prism_tensor *q, const prism_tensor *k,
                            const prism_block_mask *mask, void *workspace,
                            size_t workspace_size, prism_stream stream) {
    if (!p)
        return PRISM_ERR_NULL_POINTER;
    prism_call c = {.b = b, .q = q, .k = k, .mask = mask, .stream = stream};
    prism_status st = check_call(p, &c, WITH_MASK, workspace, workspace_size);
    if (st == PRISM_OK && (st = p->backend->estimate(p, &c)) == PRISM_OK)
        p->has_estimate = true;
    return st;
}

prism_status prism_sparse_attention(prism_plan *p, const prism_batch *b,
                                    const prism_tensor *q,
                                    const prism_tensor *k,
                                    const prism_tensor *v,
                                    const prism_block_mask *mask,
                                    const prism_tensor *o, float *lse,
                                    void *workspace, size_t workspace_size,
                                    prism_stream stream) {
    if (!p)
        return PRISM_ERR_NULL_POINTER;
    prism_call c = {.b = b, .q = q, .k = k, .v = v, .o = o, .lse = lse,
                    .mask = mask, .stream = stream};
    prism_status st = check_call(p, &c, WITH_VO | WITH_MASK, workspace,
                                 workspace_size);
    return st == PRISM_OK ? p->backend->attention(p, &c) : st;
}

prism_status prism_prefill(prism_plan *p, const prism_batch *b,
                           const prism_tensor *q, const prism_tensor *k,
                           const prism_tensor *v, const prism_tensor *o,
                           float *lse, const prism_block_mask *mask,
                           void *workspace, size_t workspace_size,
                           prism_stream stream) {
    if (!p)
        return PRISM_ERR_NULL_POINTER;
    prism_call c = {.b = b, .q = q, .k = k, .v = v, .o = o, .lse = lse,
                    .mask = mask, .stream = stream};
    prism_status st = check_call(p, &c, WITH_VO | WITH_MASK | MASK_OPTIONAL,
                                 workspace, workspace_size);
    if (st == PRISM_OK && (st = p->backend->prefill(p, &c)) == PRISM_OK)
        p->has_estimate = true;
    return st;
}

prism_status prism_plan_density(prism_plan *p, double *density) {
    if (!p || !density)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER,
                               "prism_plan_density: NULL argument");
    if (!p->has_estimate)
        return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                               "no estimate has run on this plan yet");
    return p->backend->density(p, density);
}
