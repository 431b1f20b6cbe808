/*
 * cpu_plan.c - the CPU backend's table: plans, workspace regions, calls.
 *
 * runtime/dispatch/plan.c runs the checks every backend shares (batch shape against
 * the limits, dtype, tensor strides with this backend's relaxed host
 * rules, mask geometry, the workspace) and then calls in here.  What only
 * the CPU can check is checked here: the CPU reads cu_seqlens, block
 * masks and page tables itself, so their contents are validated before
 * any pointer is formed from them (a GPU kernel reads them on the
 * device).
 *
 * Workspace (host memory, 64-byte aligned regions, runtime/workspace.h):
 * the shared regions, the band energies per pooled block, then per-worker
 * scratch for estimation and for attention.  No call allocates a
 * workspace: estimate, sparse attention and prefill all work in the
 * caller's or the plan's.
 */
#include "runtime/cpu/cpu_backend.h"
#include "runtime/paged.h"
#include "base/checked.h"
#include "base/threadpool.h"
#include "reference/reference.h"

#include <stdlib.h>
#include <string.h>

static prism_cpu_plan *cpu_of(const prism_plan *p) {
    return (prism_cpu_plan *)p->impl;
}

const prism_cpu_plan *prism_cpu_plan_of(const prism_plan *p) {
    return p && p->backend == &prism_cpu_backend ? cpu_of(p) : NULL;
}

/* Band energies per pooled block, and each worker's scratch. */
static void cpu_workspace_regions(const prism_plan *p,
                                  const prism_ws_shape *shape,
                                  size_t bytes[PRISM_WS_REGIONS]) {
    const prism_config *c = &p->cfg;
    size_t b = (size_t)shape->batch, threads = (size_t)cpu_of(p)->threads;
    size_t nq = (size_t)prism_ceil_div(shape->seqlen_q, c->block_size);
    int nk = prism_ceil_div(shape->seqlen_k, c->block_size);
    bytes[PRISM_WS_STATS_Q] =
        prism_size_mul4(b * (size_t)shape->q_heads, nq, 3, sizeof(float));
    bytes[PRISM_WS_STATS_K] = prism_size_mul4(b * (size_t)shape->kv_heads,
                                              (size_t)nk, 3, sizeof(float));
    bytes[PRISM_WS_EST_SCRATCH] =
        prism_size_mul(threads, cpu_est_scratch_bytes(nk));
    bytes[PRISM_WS_ATTN_SCRATCH] =
        prism_size_mul(threads, cpu_attn_scratch_bytes(c->head_dim, c->block_size));
}

static prism_status cpu_workspace_alloc(prism_plan *p, size_t bytes,
                                        void **out) {
    if (!(*out = aligned_alloc(64, bytes)))
        return prism_plan_fail(p, PRISM_ERR_OUT_OF_MEMORY,
                               "out of host memory for the CPU plan's "
                               "workspace (%zu bytes)",
                               bytes);
    return PRISM_OK;
}

static void cpu_workspace_free(prism_plan *p, void *workspace) {
    (void)p;
    free(workspace);
}

static prism_status cpu_create(prism_plan *p) {
    prism_cpu_plan *cpu = calloc(1, sizeof *cpu);
    if (!cpu)
        return prism_plan_fail(p, PRISM_ERR_OUT_OF_MEMORY,
                               "out of memory creating a CPU plan");
    p->impl = cpu;
    int want = p->ctx->options.cpu_threads;
    cpu->threads = want > 0 ? (want > 1024 ? 1024 : want) : prism_cpu_threads();
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_cpu_jit_build(p->ctx, &p->cfg, &cpu->code, &cpu->k,
                                          &cpu->jit, err, sizeof err);
    if (st != PRISM_OK)
        return prism_plan_fail(p, st, "%s", err);
    return PRISM_OK;
}

static void cpu_destroy(prism_plan *p) {
    prism_cpu_plan *cpu = cpu_of(p);
    if (!cpu)
        return;
    prism_cpu_jit_free(cpu->code);
    free(cpu);
    p->impl = NULL;
}

/* The sequences of a batch; for a ragged one, cu_seqlens are validated,
 * for a paged one the page table entries each sequence uses. */
static prism_status make_seqs(prism_plan *p, const prism_batch *b,
                              cpu_seq **out) {
    int BS = p->cfg.block_size;
    cpu_seq *s = calloc((size_t)b->batch, sizeof *s);
    if (!s)
        return prism_plan_fail(p, PRISM_ERR_OUT_OF_MEMORY, "out of memory");
    const int32_t *cq = b->cu_seqlens_q, *ck = b->cu_seqlens_k;
    if (cq && (cq[0] != 0 || ck[0] != 0)) {
        free(s);
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "cu_seqlens_q[0] = %d and cu_seqlens_k[0] = %d "
                               "must be 0",
                               (int)cq[0], (int)ck[0]);
    }
    for (int i = 0; i < b->batch; i++) {
        cpu_seq *q = &s[i];
        if (cq) {
            q->q_start = cq[i];
            q->k_start = ck[i];
            q->q_len = (int64_t)cq[i + 1] - cq[i];
            q->k_len = (int64_t)ck[i + 1] - ck[i];
        } else {
            q->view_b = i;
            q->q_len = b->seqlen_q;
            q->k_len = b->seqlen_k;
        }
        long long len_q = q->q_len, len_k = q->k_len;
        if (len_q < 0 || len_k < 0 || len_q > b->seqlen_q ||
            len_k > b->seqlen_k || len_k < len_q) {
            free(s);
            return prism_plan_fail(
                p, PRISM_ERR_BAD_SHAPE,
                "sequence %d has %lld queries and %lld keys: cu_seqlens must "
                "not decrease, lengths must not exceed seqlen_q %d / "
                "seqlen_k %d, and Sk >= Sq",
                i, len_q, len_k, b->seqlen_q, b->seqlen_k);
        }
        q->nq = prism_ceil_div((int)q->q_len, BS);
        q->nk = prism_ceil_div((int)q->k_len, BS);
        prism_status st;
        if (b->paged && (st = prism_paged_check_sequence(p, b->paged, i,
                                                         q->k_len)) !=
                            PRISM_OK) {
            free(s);
            return st;
        }
    }
    *out = s;
    return PRISM_OK;
}

/* A caller's mask must hold, per valid row, count <= block-causal blocks
 * and strictly ascending indices below that bound. */
static prism_status check_mask_contents(prism_plan *p, const prism_call *call,
                                        const cpu_seq *seqs) {
    const prism_batch *b = call->b;
    const prism_block_mask *m = call->mask;
    int Hq = call->prm.q_heads;
    for (int s = 0; s < b->batch; s++)
        for (int h = 0; h < Hq; h++)
            for (int i = 0; i < seqs[s].nq; i++) {
                int64_t row = ((int64_t)s * Hq + h) * m->nq + i;
                int allowed = i + seqs[s].nk - seqs[s].nq + 1;
                allowed = allowed < 0 ? 0 : allowed > seqs[s].nk ? seqs[s].nk
                                                                 : allowed;
                int count = m->counts[row];
                const int32_t *idx = m->indices + row * m->nk;
                bool ok = count >= 0 && count <= allowed;
                for (int c = 0; ok && c < count; c++)
                    ok = idx[c] >= 0 && idx[c] < allowed &&
                         (c == 0 || idx[c] > idx[c - 1]);
                if (!ok)
                    return prism_plan_fail(
                        p, PRISM_ERR_INVALID_ARGUMENT,
                        "block mask row (sequence %d, head %d, query block "
                        "%d): %d blocks; a row holds at most its %d "
                        "block-causal blocks, strictly ascending",
                        s, h, i, count, allowed);
            }
    return PRISM_OK;
}

/* The call's work description over the validated arguments. */
static void init_call(prism_plan *p, const prism_call *call,
                      const cpu_seq *seqs, cpu_call *c) {
    const prism_batch *b = call->b;
    prism_cpu_plan *cpu = cpu_of(p);
    memset(c, 0, sizeof *c);
    c->p = p;
    c->prm = &call->prm;
    c->k = &cpu->k;
    c->B = b->batch;
    c->nq = prism_ceil_div(b->seqlen_q, p->cfg.block_size);
    c->nk = prism_ceil_div(b->seqlen_k, p->cfg.block_size);
    c->seqs = seqs;
    c->q = call->q;
    c->kt = call->k;
    c->v = call->v;
    c->o = call->o;
    c->lse = call->lse;
    c->varlen = b->cu_seqlens_q != NULL;
    c->paged = b->paged;
    c->lse_tokens = c->varlen ? b->cu_seqlens_q[b->batch] : b->seqlen_q;
    c->threads = cpu->threads;
    c->ws = (char *)call->ws;
    c->layout = &call->layout;
    c->est_stride = cpu_est_scratch_bytes(c->nk);
    c->attn_stride = cpu_attn_scratch_bytes(p->cfg.head_dim, p->cfg.block_size);
    if (call->mask) {
        c->counts = call->mask->counts;
        c->indices = call->mask->indices;
    } else { /* the prefill's own mask */
        c->counts = (int32_t *)(c->ws + call->layout.at[PRISM_WS_COUNTS]);
        c->indices = (int32_t *)(c->ws + call->layout.at[PRISM_WS_INDICES]);
    }
}

static void estimate_into(prism_plan *p, cpu_call *c) {
    prism_cpu_plan *cpu = cpu_of(p);
    cpu_run_estimate(c, &cpu->last_selected, &cpu->last_causal,
                     &cpu->last_pool_ms, &cpu->last_select_ms);
}

static prism_status cpu_estimate(prism_plan *p, const prism_call *call) {
    cpu_seq *seqs = NULL;
    prism_status st = make_seqs(p, call->b, &seqs);
    if (st != PRISM_OK)
        return st;
    cpu_call c;
    init_call(p, call, seqs, &c);
    estimate_into(p, &c);
    free(seqs);
    return PRISM_OK;
}

static prism_status cpu_attention(prism_plan *p, const prism_call *call) {
    cpu_seq *seqs = NULL;
    prism_status st = make_seqs(p, call->b, &seqs);
    if (st != PRISM_OK)
        return st;
    cpu_call c;
    init_call(p, call, seqs, &c);
    if ((st = check_mask_contents(p, call, seqs)) == PRISM_OK)
        cpu_run_attention(&c);
    free(seqs);
    return st;
}

static prism_status cpu_prefill(prism_plan *p, const prism_call *call) {
    cpu_seq *seqs = NULL;
    prism_status st = make_seqs(p, call->b, &seqs);
    if (st != PRISM_OK)
        return st;
    cpu_call c;
    init_call(p, call, seqs, &c);
    estimate_into(p, &c);
    cpu_run_attention(&c);
    free(seqs);
    return PRISM_OK;
}

static prism_status cpu_density(prism_plan *p, double *density) {
    const prism_cpu_plan *cpu = cpu_of(p);
    *density = cpu->last_causal ? (double)cpu->last_selected /
                                      (double)cpu->last_causal
                                : 0.0;
    return PRISM_OK;
}

bool prism_cpu_plan_timing(const prism_plan *p, double *pool_ms,
                           double *select_ms) {
    const prism_cpu_plan *cpu = prism_cpu_plan_of(p);
    if (!cpu || !p->has_estimate)
        return false;
    *pool_ms = cpu->last_pool_ms;
    *select_ms = cpu->last_select_ms;
    return true;
}

/* Host memory: element alignment, any positive stride, cache-line
 * regions; every call is synchronous. */
const prism_backend prism_cpu_backend = {
    .name = "cpu",
    .tensor_align = 2,
    .stride_multiple = 1,
    .workspace_align = 64,
    .pack_stats = false,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .workspace_regions = cpu_workspace_regions,
    .workspace_alloc = cpu_workspace_alloc,
    .workspace_free = cpu_workspace_free,
    .estimate = cpu_estimate,
    .attention = cpu_attention,
    .prefill = cpu_prefill,
    .density = cpu_density,
};
