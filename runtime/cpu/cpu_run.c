/*
 * cpu_run.c - the C half of the CPU backend: everything around the JIT'd
 * kernels that depends on lengths rather than on the config's shape, and
 * everything that reads the launch's run-time parameters (head counts,
 * thresholds, temperatures, calibrate, the forced blocks, the softmax
 * scale: c->prm), which the generated code never sees.
 *
 * Estimation (method §2-6), three passes over validated arguments:
 *   pool     parallel over (sequence, Q or K head, block): the pool kernel
 *            writes each block's mean and its three band energies (a
 *            paged batch's full key blocks go through the pooled-key
 *            cache when it has one: copied when written, else pooled and
 *            written; the blocks of a chunk's prefix then go
 *            POOL_SWEEP_BLOCKS to a work item, as the CUDA launch does:
 *            gen/templates/pool_stats_params.h)
 *   scales   per (sequence, query head): the calibration formula of method §4
 *            from the energies summed in double (or the temperatures)
 *   rows     parallel over (sequence, query head, query block): the score
 *            kernel gives both bands' logits of the block-causal key
 *            blocks; softmax in double; top-p by sorting (probability
 *            descending, ties to the lower block, as the reference); the
 *            union of both bands plus the forced sink and diagonal is
 *            written as the row's ascending index list
 * Attention (method §7): parallel over (sequence, query head, query block),
 * handed out longest rows first (largest query block index) so the last
 * work items are the short rows; per row, load_q once, then attend for
 * every selected key block, then store_o and the log-sum-exp.
 *
 * Rows never share outputs, so results do not depend on the thread count
 * or the order in which rows run.  Paged K and V (prism_paged_kv) differ
 * only in where a key block starts (kv_ptr): a block lies in one page.
 */
#include "runtime/cpu/cpu_backend.h"
#include "runtime/paged.h"
#include "base/threadpool.h"
#include "reference/reference.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gen/templates/pool_stats_params.h"

/* Scales below this are treated as this (select.c does the same). */
#define SCALE_FLOOR 1e-12

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

typedef struct sort_entry {
    double prob;
    int j;
} sort_entry;

size_t cpu_est_scratch_bytes(int nk) {
    size_t n = (size_t)(nk > 0 ? nk : 1);
    return round64(2 * n * sizeof(float)) + round64(2 * n * sizeof(double)) +
           round64(n * sizeof(sort_entry)) + round64(2 * n);
}

size_t cpu_attn_scratch_bytes(int D, int BS) {
    size_t d = (size_t)D, bs = (size_t)BS;
    return round64(d * bs * sizeof(float)) +      /* qt    */
           round64(3 * bs * sizeof(float)) +      /* state */
           round64(bs * d * sizeof(float)) +      /* acc   */
           round64(PRISM_CPU_ATTEND_SCRATCH(D, BS) * sizeof(float));
}

/* Region r of the call's workspace. */
static char *region(const cpu_call *c, prism_ws_region r) {
    return c->ws + c->layout->at[r];
}

static size_t elem_size(const prism_plan *p) {
    return p->cfg.dtype == PRISM_DTYPE_FP32 ? 4 : 2;
}

/* Address of token s (sequence-relative start included) of head h. */
static const char *token_ptr(const prism_tensor *t, const cpu_seq *s,
                             int64_t h, int64_t token, size_t esize) {
    int64_t off = s->view_b * t->stride_b + h * t->stride_h +
                  token * t->stride_s;
    return (const char *)t->data + off * (int64_t)esize;
}

/* Key `token` (sequence-relative) of KV head h in K or V: a row of the
 * sequence's own range, or of its page (prism_paged_kv; the table's
 * entries were checked against num_pages). */
static const char *kv_ptr(const cpu_call *c, const prism_tensor *t, int b,
                          int64_t h, int64_t token, size_t esize) {
    const cpu_seq *s = &c->seqs[b];
    if (!c->paged)
        return token_ptr(t, s, h, s->k_start + token, esize);
    const prism_paged_kv *pg = c->paged;
    int64_t page = pg->page_table[(int64_t)b * pg->max_pages +
                                  token / pg->page_size];
    int64_t off = page * t->stride_b + h * t->stride_h +
                  (token % pg->page_size) * t->stride_s;
    return (const char *)t->data + off * (int64_t)esize;
}

/* ------------------------------------------------------------------------ */
/* Estimation                                                               */
/* ------------------------------------------------------------------------ */

/* The pooled-key cache entry of key block n of sequence b, KV head h, or
 * NULL: no cache, or a partial block (never stored). */
static float *pooled_entry(const cpu_call *c, int b, int h, int n) {
    const prism_paged_kv *pg = c->paged;
    const cpu_seq *s = &c->seqs[b];
    int BS = c->p->cfg.block_size;
    if (!pg || !pg->pooled_keys || ((int64_t)n + 1) * BS > s->k_len)
        return NULL;
    int per_page = pg->page_size / BS;
    int64_t page = pg->page_table[(int64_t)b * pg->max_pages + n / per_page];
    return pg->pooled_keys +
           prism_paged_entry(page, per_page, n, c->prm->kv_heads, h,
                             c->p->cfg.head_dim);
}

/* Key block n of sequence b, head h, through the pooled-key cache: an
 * entry marked written is copied, else the block is pooled and, when it
 * is full, its entry written and marked last. */
static void pool_key_block(const cpu_call *c, int b, int h, int n, float *out,
                           float *energy) {
    const prism_config *cfg = &c->p->cfg;
    int BS = cfg->block_size, D = cfg->head_dim;
    const cpu_seq *s = &c->seqs[b];
    float *entry = pooled_entry(c, b, h, n);
    if (entry && entry[D + 3] == PRISM_PAGED_MARK) {
        memcpy(out, entry, (size_t)D * sizeof *out);
        memcpy(energy, entry + D, 3 * sizeof *energy);
        return;
    }
    int64_t len = s->k_len - (int64_t)n * BS;
    c->k->pool(kv_ptr(c, c->kt, b, h, (int64_t)n * BS, elem_size(c->p)),
               c->kt->stride_s, (int32_t)(len < BS ? len : BS), out, energy);
    if (!entry)
        return;
    memcpy(entry, out, (size_t)D * sizeof *out);
    memcpy(entry + D, energy, 3 * sizeof *energy);
    entry[D + 3] = PRISM_PAGED_MARK;
}

/* The pooling pass's work items: `width` per (sequence, head).  Without
 * a pooled-key cache item n of a head is its block n; with one, a KV
 * head's items follow the rule of gen/templates/pool_stats_params.h, as
 * the CUDA launch's CTAs do: the first `fresh` pool the blocks from the
 * sequence's prefix on, the rest POOL_SWEEP_BLOCKS prefix blocks each. */
typedef struct pool_work {
    const cpu_call *c;
    int width, fresh;
    bool cached;
} pool_work;

static pool_work pool_work_of(const cpu_call *c) {
    pool_work w = {c, c->nq > c->nk ? c->nq : c->nk, c->nk, false};
    if (!c->paged || !c->paged->pooled_keys)
        return w;
    int BS = c->p->cfg.block_size, fresh = 0, sweeps = 0;
    for (int b = 0; b < c->B; b++) {
        const cpu_seq *s = &c->seqs[b];
        int prefix = pool_prefix_blocks((int32_t)s->q_len, (int32_t)s->k_len,
                                        BS);
        int sw = (prefix + POOL_SWEEP_BLOCKS - 1) / POOL_SWEEP_BLOCKS;
        fresh = s->nk - prefix > fresh ? s->nk - prefix : fresh;
        sweeps = sw > sweeps ? sw : sweeps;
    }
    w.cached = true;
    w.fresh = fresh;
    w.width = c->nq > fresh + sweeps ? c->nq : fresh + sweeps;
    return w;
}

/* Key block n of sequence b, KV head h, into the workspace. */
static void pool_key_row(const cpu_call *c, int b, int h, int n) {
    size_t row = ((size_t)b * c->prm->kv_heads + h) * c->nk + n;
    pool_key_block(c, b, h, n,
                   (float *)region(c, PRISM_WS_POOLED_K) +
                       row * c->p->cfg.head_dim,
                   (float *)region(c, PRISM_WS_STATS_K) + row * 3);
}

static void pool_item(void *ctx, int64_t index, int worker) {
    (void)worker;
    const pool_work *w = ctx;
    const cpu_call *c = w->c;
    const prism_config *cfg = &c->p->cfg;
    int Hq = c->prm->q_heads, Hkv = c->prm->kv_heads, BS = cfg->block_size;
    int n = (int)(index % w->width);
    int head = (int)((index / w->width) % (Hq + Hkv));
    int b = (int)(index / ((int64_t)w->width * (Hq + Hkv)));
    const cpu_seq *s = &c->seqs[b];
    bool is_q = head < Hq;
    int h = is_q ? head : head - Hq;
    if (!is_q) {
        if (w->cached) {
            int prefix = pool_prefix_blocks((int32_t)s->q_len,
                                            (int32_t)s->k_len, BS);
            if (n >= w->fresh) { /* a sweep of the prefix */
                int lo = (n - w->fresh) * POOL_SWEEP_BLOCKS;
                for (int j = lo; j < lo + POOL_SWEEP_BLOCKS && j < prefix; j++)
                    pool_key_row(c, b, h, j);
                return;
            }
            n += prefix;
        }
        if (n < s->nk)
            pool_key_row(c, b, h, n);
        return;
    }
    if (n >= s->nq)
        return;
    size_t row = ((size_t)b * Hq + h) * c->nq + n;
    float *out = (float *)region(c, PRISM_WS_POOLED_Q) + row * cfg->head_dim;
    float *energy = (float *)region(c, PRISM_WS_STATS_Q) + row * 3;
    int64_t len = s->q_len - (int64_t)n * BS;
    c->k->pool(token_ptr(c->q, s, h, s->q_start + (int64_t)n * BS,
                         elem_size(c->p)),
               c->q->stride_s, (int32_t)(len < BS ? len : BS), out, energy);
}

/* Sum of the energies [0, n) of one head: all, high, low. */
static void energy_sums(const float *e, int n, double sums[3]) {
    sums[0] = sums[1] = sums[2] = 0.0;
    for (int i = 0; i < n; i++)
        for (int w = 0; w < 3; w++)
            sums[w] += e[(size_t)i * 3 + w];
}

static void compute_scales(const cpu_call *c) {
    const prism_config *cfg = &c->p->cfg;
    const prism_params *m = c->prm;
    int Hq = m->q_heads, Hkv = m->kv_heads, group = Hq / Hkv;
    double D = cfg->head_dim, dh = cfg->high_dim, dl = cfg->low_dim;
    const float *eq = (const float *)region(c, PRISM_WS_STATS_Q);
    const float *ek = (const float *)region(c, PRISM_WS_STATS_K);
    float *inv = (float *)region(c, PRISM_WS_SCALES);
    for (int b = 0; b < c->B; b++) {
        const cpu_seq *s = &c->seqs[b];
        for (int h = 0; h < Hq; h++) {
            double sh, sl;
            if (m->calibrate) {
                double q[3], k[3];
                energy_sums(eq + ((size_t)b * Hq + h) * c->nq * 3, s->nq, q);
                energy_sums(ek + ((size_t)b * Hkv + h / group) * c->nk * 3,
                            s->nk, k);
                double nq = s->nq > 0 ? s->nq : 1, nk = s->nk > 0 ? s->nk : 1;
                double rq = sqrt(q[0] / (nq * D)), rqh = sqrt(q[1] / (nq * dh));
                double rql = sqrt(q[2] / (nq * dl)), rk = sqrt(k[0] / (nk * D));
                double rkh = sqrt(k[1] / (nk * dh)), rkl = sqrt(k[2] / (nk * dl));
                double th = sqrt(dh / D) * (rqh / fmax(rq, 1e-6)) *
                            (rkh / fmax(rk, 1e-6));
                double tl = sqrt(dl / D) * (rql / fmax(rq, 1e-6)) *
                            (rkl / fmax(rk, 1e-6));
                sh = sqrt(dh) * th;
                sl = sqrt(dl) * tl;
            } else {
                sh = sqrt(dh) * m->temp_high;
                sl = sqrt(dl) * m->temp_low;
            }
            inv[((size_t)b * Hq + h) * 2] = (float)(1.0 / fmax(sh, SCALE_FLOOR));
            inv[((size_t)b * Hq + h) * 2 + 1] =
                (float)(1.0 / fmax(sl, SCALE_FLOOR));
        }
    }
}

static int by_prob_desc(const void *x, const void *y) {
    const sort_entry *a = x, *b = y;
    if (a->prob != b->prob)
        return a->prob > b->prob ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

/* Softmax of n logits in double, then top-p into keep[0, n). */
static void top_p(const float *logit, int n, double threshold, double *prob,
                  sort_entry *order, unsigned char *keep) {
    double mx = logit[0], sum = 0.0;
    for (int j = 1; j < n; j++)
        mx = logit[j] > mx ? logit[j] : mx;
    for (int j = 0; j < n; j++) {
        prob[j] = exp((double)logit[j] - mx);
        sum += prob[j];
    }
    for (int j = 0; j < n; j++) {
        prob[j] /= sum;
        order[j] = (sort_entry){prob[j], j};
        keep[j] = 0;
    }
    qsort(order, (size_t)n, sizeof *order, by_prob_desc);
    double mass_before = 0.0;
    for (int r = 0; r < n && mass_before < threshold; r++) {
        keep[order[r].j] = 1;
        mass_before += order[r].prob;
    }
}

/* Block-causal blocks of row i of sequence s (the selection contract). */
static int allowed_blocks(const cpu_seq *s, int i) {
    if (i >= s->nq)
        return 0;
    int a = i + s->nk - s->nq + 1;
    return a < 0 ? 0 : a > s->nk ? s->nk : a;
}

static void estimate_row(void *ctx, int64_t row, int worker) {
    const cpu_call *c = ctx;
    const prism_config *cfg = &c->p->cfg;
    const prism_params *m = c->prm;
    int Hq = m->q_heads, group = Hq / m->kv_heads, D = cfg->head_dim;
    int i = (int)(row % c->nq);
    int h = (int)((row / c->nq) % Hq);
    int b = (int)(row / ((int64_t)c->nq * Hq));
    const cpu_seq *s = &c->seqs[b];
    int allowed = allowed_blocks(s, i);
    c->counts[row] = 0;
    if (allowed == 0)
        return;
    char *scratch = region(c, PRISM_WS_EST_SCRATCH) + worker * c->est_stride;
    size_t nk = (size_t)c->nk;
    float *logit_h = (float *)scratch, *logit_l = logit_h + nk;
    double *prob = (double *)(scratch + round64(2 * nk * sizeof(float)));
    sort_entry *order =
        (sort_entry *)((char *)prob + round64(2 * nk * sizeof(double)));
    unsigned char *keep_h =
        (unsigned char *)order + round64(nk * sizeof(sort_entry));
    unsigned char *keep_l = keep_h + nk;

    const float *pq = (const float *)region(c, PRISM_WS_POOLED_Q) +
                      (size_t)row * D;
    const float *pk = (const float *)region(c, PRISM_WS_POOLED_K) +
                      ((size_t)b * m->kv_heads + h / group) * nk * D;
    const float *inv =
        (const float *)region(c, PRISM_WS_SCALES) + ((size_t)b * Hq + h) * 2;
    c->k->score(pq, pk, allowed, inv[0], inv[1], logit_h, logit_l);
    top_p(logit_h, allowed, m->threshold_high, prob, order, keep_h);
    top_p(logit_l, allowed, m->threshold_low, prob + nk, order, keep_l);
    if (m->force_sink)
        keep_h[0] = 1;
    if (m->force_recent)
        for (int j = allowed - m->recent_blocks; j < allowed; j++)
            if (j >= 0)
                keep_h[j] = 1;
    int32_t *out = c->indices + (size_t)row * nk;
    int count = 0;
    for (int j = 0; j < allowed; j++)
        if (keep_h[j] || keep_l[j])
            out[count++] = j;
    c->counts[row] = count;
}

void cpu_run_estimate(const cpu_call *c, uint64_t *selected, uint64_t *causal,
                      double *pool_ms, double *select_ms) {
    int Hq = c->prm->q_heads, Hkv = c->prm->kv_heads;
    pool_work w = pool_work_of(c);
    double t0 = prism_now_ms();
    prism_parallel_for((int64_t)c->B * (Hq + Hkv) * w.width, c->threads,
                       pool_item, &w);
    compute_scales(c);
    double t1 = prism_now_ms();
    int64_t rows = (int64_t)c->B * Hq * c->nq;
    prism_parallel_for(rows, c->threads, estimate_row, (void *)c);
    *selected = *causal = 0;
    for (int64_t r = 0; r < rows; r++) {
        int i = (int)(r % c->nq);
        int b = (int)(r / ((int64_t)c->nq * Hq));
        *selected += (uint64_t)c->counts[r];
        *causal += (uint64_t)allowed_blocks(&c->seqs[b], i);
    }
    *pool_ms = t1 - t0;
    *select_ms = prism_now_ms() - t1;
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                */
/* ------------------------------------------------------------------------ */

static void attention_row(void *ctx, int64_t index, int worker) {
    const cpu_call *c = ctx;
    const prism_config *cfg = &c->p->cfg;
    int Hq = c->prm->q_heads, group = Hq / c->prm->kv_heads;
    int D = cfg->head_dim, BS = cfg->block_size;
    /* largest query block index first: those rows have the most blocks */
    int64_t heads = (int64_t)c->B * Hq;
    int i = c->nq - 1 - (int)(index / heads);
    int64_t bh = index % heads;
    int b = (int)(bh / Hq), h = (int)(bh % Hq);
    const cpu_seq *s = &c->seqs[b];
    if (i >= s->nq)
        return;
    int64_t row = bh * c->nq + i;
    size_t es = elem_size(c->p);
    char *scratch = region(c, PRISM_WS_ATTN_SCRATCH) + worker * c->attn_stride;
    float *qt = (float *)scratch;
    float *state = (float *)(scratch + round64((size_t)D * BS * sizeof(float)));
    float *acc = (float *)((char *)state + round64(3 * (size_t)BS * sizeof(float)));
    float *work = (float *)((char *)acc + round64((size_t)BS * D * sizeof(float)));

    int64_t q_first = (int64_t)i * BS;
    int qn = (int)(s->q_len - q_first < BS ? s->q_len - q_first : BS);
    int64_t offset = s->k_len - s->q_len; /* query t sits at t + offset */
    int kvh = h / group;
    float scale_log2 = (float)(1.4426950408889634 * c->prm->softmax_scale);
    c->k->load_q(token_ptr(c->q, s, h, s->q_start + q_first, es),
                 c->q->stride_s, qn, scale_log2, qt);
    for (int t = 0; t < BS; t++) {
        state[t] = -INFINITY;
        state[BS + t] = 0.0f;
    }
    memset(acc, 0, (size_t)BS * D * sizeof *acc);
    int count = c->counts[row];
    const int32_t *idx = c->indices + (size_t)row * c->nk;
    for (int n = 0; n < count; n++) {
        int64_t js = (int64_t)idx[n] * BS;
        int64_t kn = s->k_len - js < BS ? s->k_len - js : BS;
        /* key u visible to row t iff js + u <= q_first + t + offset */
        int64_t delta = q_first + offset - js;
        if (kn <= 0 || delta + (qn - 1) < 0)
            continue; /* no query of the tile sees any of these keys */
        if (delta > BS)
            delta = BS;
        c->k->attend(qt, kv_ptr(c, c->kt, b, kvh, js, es), c->kt->stride_s,
                     kv_ptr(c, c->v, b, kvh, js, es), c->v->stride_s,
                     (int32_t)kn, (int32_t)delta, state, acc, work);
    }
    c->k->store_o(acc, state, qn,
                  (void *)token_ptr(c->o, s, h, s->q_start + q_first, es),
                  c->o->stride_s);
    if (!c->lse)
        return;
    float *lse = c->varlen ? c->lse + (int64_t)h * c->lse_tokens + s->q_start
                           : c->lse + bh * c->lse_tokens;
    for (int t = 0; t < qn; t++) {
        float l = state[BS + t];
        lse[q_first + t] =
            l > 0.0f ? (float)(((double)state[t] + log2((double)l)) *
                               0.6931471805599453)
                     : -INFINITY;
    }
}

void cpu_run_attention(const cpu_call *c) {
    prism_parallel_for((int64_t)c->B * c->prm->q_heads * c->nq, c->threads,
                       attention_row, (void *)c);
}
