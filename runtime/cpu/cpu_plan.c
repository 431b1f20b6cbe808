/*
 * cpu_plan.c - CPU plans: creation, workspace, and the glue between the
 * public entry points and the backend.
 *
 * launch.c runs the checks shared with the GPU (batch shape against the
 * limits, dtype, tensor strides, mask geometry) and then calls in here.
 * What only the CPU can check is checked here: the CPU reads cu_seqlens
 * and block masks itself, so their contents are validated before any
 * pointer is formed from them (a GPU kernel reads them on the device).
 * Host tensors need only element alignment and positive strides.
 *
 * Workspace (host memory, 64-byte aligned regions, see cpu_backend.h):
 * pooled Q and K, their band energies, the inverse band scales, the
 * prefill's own block mask, then per-worker scratch for estimation and for
 * attention.  No call allocates: estimate, sparse attention and prefill
 * all work in the caller's workspace or the plan's.
 */
#include "runtime/cpu/cpu_backend.h"
#include "base/threadpool.h"
#include "reference/reference.h"

#include <stdlib.h>
#include <string.h>

static size_t take(size_t *cursor, size_t bytes) {
    size_t at = (*cursor + 63) & ~(size_t)63;
    *cursor = at + bytes;
    return at;
}

void prism_cpu_workspace_layout(const prism_plan *p, int batch, int seqlen_q,
                                int seqlen_k, cpu_workspace *ws) {
    const prism_config *c = &p->cfg;
    size_t b = (size_t)batch, d = (size_t)c->head_dim;
    int nq_i = prism_ceil_div(seqlen_q, c->block_size);
    int nk_i = prism_ceil_div(seqlen_k, c->block_size);
    size_t nq = (size_t)nq_i, nk = (size_t)nk_i;
    size_t hq = (size_t)c->q_heads, hkv = (size_t)c->kv_heads;
    size_t threads = (size_t)p->cpu->threads, cursor = 0;
    memset(ws, 0, sizeof *ws);
    ws->pooled_q = take(&cursor, b * hq * nq * d * sizeof(float));
    ws->pooled_k = take(&cursor, b * hkv * nk * d * sizeof(float));
    ws->energy_q = take(&cursor, b * hq * nq * 3 * sizeof(float));
    ws->energy_k = take(&cursor, b * hkv * nk * 3 * sizeof(float));
    ws->inv_scales = take(&cursor, b * hq * 2 * sizeof(float));
    ws->counts = take(&cursor, b * hq * nq * sizeof(int32_t));
    ws->indices = take(&cursor, b * hq * nq * nk * sizeof(int32_t));
    ws->est_stride = cpu_est_scratch_bytes(nk_i);
    ws->est_scratch = take(&cursor, threads * ws->est_stride);
    ws->attn_stride = cpu_attn_scratch_bytes(c->head_dim, c->block_size);
    ws->attn_scratch = take(&cursor, threads * ws->attn_stride);
    ws->total = (cursor + 63) & ~(size_t)63;
}

size_t prism_cpu_workspace_size(const prism_plan *p, const prism_batch *b) {
    cpu_workspace ws;
    if (b)
        prism_cpu_workspace_layout(p, b->batch, b->seqlen_q, b->seqlen_k, &ws);
    else
        prism_cpu_workspace_layout(p, p->limits.max_batch,
                                   p->limits.max_seqlen_q,
                                   p->limits.max_seqlen_k, &ws);
    return ws.total;
}

prism_status prism_cpu_plan_create(prism_plan *p) {
    struct prism_cpu_plan *cpu = calloc(1, sizeof *cpu);
    if (!cpu)
        return prism_plan_fail(p, PRISM_ERR_OUT_OF_MEMORY,
                               "out of memory creating a CPU plan");
    p->cpu = cpu;
    p->arch = PRISM_ARCH_COUNT_; /* no GPU arch */
    int want = p->ctx->options.cpu_threads;
    cpu->threads = want > 0 ? (want > 1024 ? 1024 : want) : prism_cpu_threads();
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_cpu_jit_build(p->ctx, &p->cfg, &cpu->code, &cpu->k,
                                          &cpu->jit, err, sizeof err);
    if (st != PRISM_OK)
        return prism_plan_fail(p, st, "%s", err);
    if (!p->limits.caller_workspace) {
        size_t bytes = prism_cpu_workspace_size(p, NULL);
        cpu->workspace = aligned_alloc(64, bytes);
        if (!cpu->workspace)
            return prism_plan_fail(p, PRISM_ERR_OUT_OF_MEMORY,
                                   "out of host memory for the CPU plan's "
                                   "workspace (%zu bytes)",
                                   bytes);
        cpu->workspace_size = bytes;
    }
    return PRISM_OK;
}

void prism_cpu_plan_destroy(struct prism_cpu_plan *cpu) {
    if (!cpu)
        return;
    prism_cpu_jit_free(cpu->code);
    free(cpu->workspace);
    free(cpu);
}

/* The sequences of a batch; for a ragged one, cu_seqlens are validated. */
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
    }
    *out = s;
    return PRISM_OK;
}

/* A caller's mask must hold, per valid row, count <= block-causal blocks
 * and strictly ascending indices below that bound. */
static prism_status check_mask_contents(prism_plan *p, const prism_batch *b,
                                        const cpu_seq *seqs,
                                        const prism_block_mask *m) {
    int Hq = p->cfg.q_heads;
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

/* The workspace to use: the caller's (checked) or the plan's. */
static prism_status pick_workspace(prism_plan *p, const prism_batch *b,
                                   void *workspace, size_t size, char **base,
                                   cpu_workspace *ws) {
    prism_cpu_workspace_layout(p, b->batch, b->seqlen_q, b->seqlen_k, ws);
    if (workspace) {
        if ((uintptr_t)workspace % 64)
            return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                                   "CPU workspace must be 64-byte aligned");
        if (size < ws->total)
            return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                                   "workspace of %zu bytes is too small: this "
                                   "batch needs %zu (prism_plan_workspace_size)",
                                   size, ws->total);
        *base = workspace;
        return PRISM_OK;
    }
    if (!p->cpu->workspace)
        return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                               "the plan was created with caller_workspace: "
                               "pass a workspace");
    *base = p->cpu->workspace;
    return PRISM_OK;
}

static void init_call(prism_plan *p, const prism_batch *b, const cpu_seq *seqs,
                      const prism_tensor *q, const prism_tensor *k,
                      cpu_call *c) {
    memset(c, 0, sizeof *c);
    c->p = p;
    c->k = &p->cpu->k;
    c->B = b->batch;
    c->nq = prism_ceil_div(b->seqlen_q, p->cfg.block_size);
    c->nk = prism_ceil_div(b->seqlen_k, p->cfg.block_size);
    c->seqs = seqs;
    c->q = q;
    c->kt = k;
    c->varlen = b->cu_seqlens_q != NULL;
    c->lse_tokens = c->varlen ? b->cu_seqlens_q[b->batch] : b->seqlen_q;
    c->threads = p->cpu->threads;
}

static void estimate_into(prism_plan *p, cpu_call *c) {
    struct prism_cpu_plan *cpu = p->cpu;
    cpu_run_estimate(c, &cpu->last_selected, &cpu->last_causal,
                     &cpu->last_pool_ms, &cpu->last_select_ms);
    cpu->has_estimate = true;
}

prism_status prism_cpu_estimate(prism_plan *p, const prism_batch *b,
                                const prism_tensor *q, const prism_tensor *k,
                                const prism_block_mask *mask, void *workspace,
                                size_t workspace_size) {
    cpu_seq *seqs = NULL;
    prism_status st = make_seqs(p, b, &seqs);
    if (st != PRISM_OK)
        return st;
    cpu_call c;
    init_call(p, b, seqs, q, k, &c);
    if ((st = pick_workspace(p, b, workspace, workspace_size, &c.ws,
                             &c.layout)) == PRISM_OK) {
        c.counts = mask->counts;
        c.indices = mask->indices;
        estimate_into(p, &c);
    }
    free(seqs);
    return st;
}

prism_status prism_cpu_sparse_attention(prism_plan *p, const prism_batch *b,
                                        const prism_tensor *q,
                                        const prism_tensor *k,
                                        const prism_tensor *v,
                                        const prism_block_mask *mask,
                                        const prism_tensor *o, float *lse,
                                        void *workspace, size_t workspace_size) {
    cpu_seq *seqs = NULL;
    prism_status st = make_seqs(p, b, &seqs);
    if (st != PRISM_OK)
        return st;
    cpu_call c;
    init_call(p, b, seqs, q, k, &c);
    c.v = v;
    c.o = o;
    c.lse = lse;
    c.counts = mask->counts;
    c.indices = mask->indices;
    if ((st = check_mask_contents(p, b, seqs, mask)) == PRISM_OK &&
        (st = pick_workspace(p, b, workspace, workspace_size, &c.ws,
                             &c.layout)) == PRISM_OK) {
        c.attn_scratch = c.ws + c.layout.attn_scratch;
        c.attn_stride = c.layout.attn_stride;
        cpu_run_attention(&c);
    }
    free(seqs);
    return st;
}

prism_status prism_cpu_prefill(prism_plan *p, const prism_batch *b,
                               const prism_tensor *q, const prism_tensor *k,
                               const prism_tensor *v, const prism_tensor *o,
                               float *lse, const prism_block_mask *mask,
                               void *workspace, size_t workspace_size) {
    cpu_seq *seqs = NULL;
    prism_status st = make_seqs(p, b, &seqs);
    if (st != PRISM_OK)
        return st;
    cpu_call c;
    init_call(p, b, seqs, q, k, &c);
    c.v = v;
    c.o = o;
    c.lse = lse;
    if ((st = pick_workspace(p, b, workspace, workspace_size, &c.ws,
                             &c.layout)) == PRISM_OK) {
        c.counts = mask ? mask->counts : (int32_t *)(c.ws + c.layout.counts);
        c.indices = mask ? mask->indices : (int32_t *)(c.ws + c.layout.indices);
        c.attn_scratch = c.ws + c.layout.attn_scratch;
        c.attn_stride = c.layout.attn_stride;
        estimate_into(p, &c);
        cpu_run_attention(&c);
    }
    free(seqs);
    return st;
}

prism_status prism_cpu_density(prism_plan *p, double *density) {
    struct prism_cpu_plan *cpu = p->cpu;
    if (!cpu->has_estimate)
        return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                               "no estimate has run on this plan yet");
    *density = cpu->last_causal ? (double)cpu->last_selected /
                                      (double)cpu->last_causal
                                : 0.0;
    return PRISM_OK;
}

bool prism_cpu_plan_timing(const prism_plan *p, double *pool_ms,
                           double *select_ms) {
    if (!p || !p->cpu || !p->cpu->has_estimate)
        return false;
    *pool_ms = p->cpu->last_pool_ms;
    *select_ms = p->cpu->last_select_ms;
    return true;
}
