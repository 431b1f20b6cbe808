/*
 * attention.c - docs/method.md §7: block-sparse causal attention over a
 * selection, and a direct dense implementation that checks it.
 *
 * prism_ref_attention() works on one row (batch, query head, query block)
 * at a time, like the GPU kernel: it gathers the row's queries, computes the
 * scaled scores against the keys of every selected block (fp32 dot products
 * with eight partial sums, so the compiler can vectorise them), applies
 * token-level causality (key position <= query position; only the diagonal
 * block is ever cut), and accumulates softmax(scores) * V.  Each block's
 * contribution is summed in fp32 and the running sums over blocks (softmax
 * denominator and output) in double, which keeps long rows accurate.  K and V
 * are first converted once to contiguous fp32 so that the inner loops read
 * plain arrays whatever the input layout and dtype.
 *
 * prism_ref_attention_dense_direct() is deliberately naive: one query at a
 * time, every causal key, double everywhere, loads through the views.  With
 * the full selection (prism_selection_fill_full) both must agree.
 */
#include "reference/ref_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The inner loops use four-float vectors (GCC/Clang vector extensions;
 * one SSE/NEON register), two per step so that each dot product keeps
 * eight partial sums.  Loads and stores go through memcpy, so no alignment
 * is assumed.  Other compilers get the plain loops. */
#if defined(__GNUC__) || defined(__clang__)
#define REF_VECTOR 1
typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, v4f v) { memcpy(p, &v, sizeof v); }

static inline float sum4x2(v4f a, v4f b) {
    v4f v = a + b;
    return (v[0] + v[2]) + (v[1] + v[3]);
}
#else
#define REF_VECTOR 0
#endif

/* fp32 dot product. */
static inline float dot_f32(const float *a, const float *b, int n) {
    int d = 0;
    float sum = 0.0f;
#if REF_VECTOR
    v4f lo = {0}, hi = {0};
    for (; d + 8 <= n; d += 8) {
        lo += load4(a + d) * load4(b + d);
        hi += load4(a + d + 4) * load4(b + d + 4);
    }
    sum = sum4x2(lo, hi);
#endif
    for (; d < n; d++)
        sum += a[d] * b[d];
    return sum;
}

/* Four fp32 dot products of a against b0..b3 (a is read once for all). */
static inline void dot4_f32(const float *a, const float *b0, const float *b1,
                            const float *b2, const float *b3, int n,
                            float out[4]) {
    int d = 0;
    out[0] = out[1] = out[2] = out[3] = 0.0f;
#if REF_VECTOR
    v4f l0 = {0}, h0 = {0}, l1 = {0}, h1 = {0};
    v4f l2 = {0}, h2 = {0}, l3 = {0}, h3 = {0};
    for (; d + 8 <= n; d += 8) {
        v4f xl = load4(a + d), xh = load4(a + d + 4);
        l0 += xl * load4(b0 + d);
        h0 += xh * load4(b0 + d + 4);
        l1 += xl * load4(b1 + d);
        h1 += xh * load4(b1 + d + 4);
        l2 += xl * load4(b2 + d);
        h2 += xh * load4(b2 + d + 4);
        l3 += xl * load4(b3 + d);
        h3 += xh * load4(b3 + d + 4);
    }
    out[0] = sum4x2(l0, h0);
    out[1] = sum4x2(l1, h1);
    out[2] = sum4x2(l2, h2);
    out[3] = sum4x2(l3, h3);
#endif
    for (; d < n; d++) {
        out[0] += a[d] * b0[d];
        out[1] += a[d] * b1[d];
        out[2] += a[d] * b2[d];
        out[3] += a[d] * b3[d];
    }
}

/* out[d] = sum over u < n of p[u] * v[u * D + d], for d < D: one key
 * block's P * V.  Sixteen output floats (one cache line of each V row) are
 * kept in registers while the keys stream by. */
static inline void pv_block(float *out, const float *p, const float *v, int n,
                            int D) {
    int d = 0;
#if REF_VECTOR
    for (; d + 16 <= D; d += 16) {
        v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int u = 0; u < n; u++) {
            const float *row = v + (size_t)u * D + d;
            v4f w = {p[u], p[u], p[u], p[u]};
            a0 += w * load4(row);
            a1 += w * load4(row + 4);
            a2 += w * load4(row + 8);
            a3 += w * load4(row + 12);
        }
        store4(out + d, a0);
        store4(out + d + 4, a1);
        store4(out + d + 8, a2);
        store4(out + d + 12, a3);
    }
#endif
    for (; d < D; d++) {
        float sum = 0.0f;
        for (int u = 0; u < n; u++)
            sum += p[u] * v[(size_t)u * D + d];
        out[d] = sum;
    }
}

/* ------------------------------------------------------------------------ */
/* Shared checks                                                            */
/* ------------------------------------------------------------------------ */

static prism_status check_qkvo(const prism_tensor_view *q,
                               const prism_tensor_view *k,
                               const prism_tensor_view *v,
                               const prism_tensor_view *out, char *err,
                               size_t err_size) {
    prism_status st = ref_check_view(q, "Q", err, err_size);
    if (st == PRISM_OK)
        st = ref_check_view(k, "K", err, err_size);
    if (st == PRISM_OK)
        st = ref_check_view(v, "V", err, err_size);
    if (st == PRISM_OK)
        st = ref_check_view(out, "O", err, err_size);
    if (st != PRISM_OK)
        return st;
    for (int a = 0; a < 4; a++) {
        if (k->shape[a] != v->shape[a])
            return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                                "attention: K and V shapes differ in "
                                "dimension %d",
                                a);
        if (out->shape[a] != q->shape[a])
            return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                                "attention: O and Q shapes differ in "
                                "dimension %d",
                                a);
    }
    if (q->shape[3] != k->shape[3])
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "attention: Q head dim %lld != K head dim %lld",
                            (long long)q->shape[3], (long long)k->shape[3]);
    if (q->shape[1] % k->shape[1] != 0)
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "attention: Hq = %lld is not a multiple of "
                            "Hkv = %lld",
                            (long long)q->shape[1], (long long)k->shape[1]);
    return PRISM_OK;
}

/* ------------------------------------------------------------------------ */
/* fp32 copies of K and V                                                   */
/* ------------------------------------------------------------------------ */

typedef struct convert_job {
    const prism_tensor_view *src;
    float *dst; /* [B][H][S][D] */
} convert_job;

static void convert_head(void *ctx, int64_t index, int worker) {
    (void)worker;
    const convert_job *job = ctx;
    const prism_tensor_view *x = job->src;
    int64_t H = x->shape[1], S = x->shape[2], D = x->shape[3];
    int64_t b = index / H, h = index % H;
    float *dst = job->dst + index * S * D;
    for (int64_t s = 0; s < S; s++)
        for (int64_t d = 0; d < D; d++)
            dst[s * D + d] = prism_view_load(x, b, h, s, d);
}

static float *to_fp32(const prism_tensor_view *x, int threads) {
    size_t n = (size_t)x->shape[0] * x->shape[1] * x->shape[2] * x->shape[3];
    float *dst = malloc(n * sizeof *dst);
    if (!dst)
        return NULL;
    convert_job job = {x, dst};
    prism_parallel_for(x->shape[0] * x->shape[1], threads, convert_head,
                           &job);
    return dst;
}

/* ------------------------------------------------------------------------ */
/* Block-sparse attention                                                   */
/* ------------------------------------------------------------------------ */

typedef struct attn_scratch {
    float *q;        /* [BS][D] the row's queries                           */
    float *scores;   /* [BS][nk * BS] scaled scores, then probabilities      */
    int *col_start;  /* [nk + 1] first score column of each selected block;
                        col_start[count] = total columns                    */
    double *acc;     /* [BS][D] output sums                                 */
    float *facc;     /* [D] one block's output for one query                */
    double *mass;    /* [BS][nk] probability mass per query, selected block */
    float *row_max;  /* [BS] max visible score of each query                */
    double *row_sum; /* [BS] softmax denominators                           */
} attn_scratch;

typedef struct attn_job {
    const prism_tensor_view *q, *out;
    const float *k, *v; /* fp32 [Bk][Hkv][Sk_view][D] */
    int64_t k_heads, k_tokens;
    const ref_seq *seqs;
    const prism_selection *sel;
    const prism_ref_attention_options *opt;
    double scale;
    int D, group;
    int64_t q_tokens; /* S of the Q view (lse / recall indexing) */
    attn_scratch *scratch;
} attn_job;

/* Keys of the block starting at key token js (blen tokens) that a query at
 * position qpos may see: a prefix of the block, of this length. */
static inline int visible_keys(int64_t qpos, int64_t js, int blen) {
    int64_t nv = qpos - js + 1;
    return (int)(nv < 0 ? 0 : nv > blen ? blen : nv);
}

/* Share of a query's mass lying in the blocks of `other_row` (both index
 * lists ascending; mass[c] belongs to this row's c-th block). */
static double row_recall(const int32_t *mine, int n_mine, const double *mass,
                         const int32_t *other, int n_other) {
    double in = 0.0;
    int a = 0, b = 0;
    while (a < n_mine && b < n_other) {
        if (mine[a] == other[b]) {
            in += mass[a];
            a++;
            b++;
        } else if (mine[a] < other[b]) {
            a++;
        } else {
            b++;
        }
    }
    return in;
}

static void attention_row(void *ctx, int64_t row, int worker) {
    const attn_job *job = ctx;
    const prism_selection *sel = job->sel;
    const prism_ref_attention_options *opt = job->opt;
    attn_scratch *ws = &job->scratch[worker];
    int i = (int)(row % sel->nq);
    int h = (int)((row / sel->nq) % sel->Hq);
    int b = (int)(row / ((int64_t)sel->nq * sel->Hq));
    if (i >= sel->seq_nq[b])
        return;
    const ref_seq *seq = &job->seqs[b];
    int BS = sel->block_size, D = job->D;
    int64_t offset = seq->k.len - seq->q.len; /* query t is at t + offset */
    int64_t q_first = (int64_t)i * BS;
    int qn = (int)(seq->q.len - q_first < BS ? seq->q.len - q_first : BS);
    int kvh = h / job->group;
    /* first key row of this sequence and KV head in the fp32 copies */
    size_t first_key =
        ((size_t)seq->k.view_b * job->k_heads + kvh) * job->k_tokens +
        seq->k.start;
    const float *kbase = job->k + first_key * D;
    const float *vbase = job->v + first_key * D;
    int count = sel->counts[row];
    const int32_t *idx = sel->indices + row * sel->nk;

    for (int t = 0; t < qn; t++)
        for (int d = 0; d < D; d++)
            ws->q[t * D + d] = prism_view_load(job->q, seq->q.view_b, h,
                                               seq->q.start + q_first + t, d);
    int *col = ws->col_start;
    col[0] = 0;
    for (int c = 0; c < count; c++) {
        int64_t js = (int64_t)idx[c] * BS;
        col[c + 1] =
            col[c] + (int)(seq->k.len - js < BS ? seq->k.len - js : BS);
    }
    int ncols = col[count];

    /* Scores, one key block at a time (the block stays in cache). */
    float scale = (float)job->scale;
    for (int c = 0; c < count; c++) {
        int64_t js = (int64_t)idx[c] * BS;
        for (int t = 0; t < qn; t++) {
            int nv =
                visible_keys(q_first + t + offset, js, col[c + 1] - col[c]);
            float *srow = ws->scores + (size_t)t * ncols + col[c];
            const float *qt = ws->q + t * D;
            const float *kb = kbase + js * D;
            int u = 0;
            for (; u + 4 <= nv; u += 4) {
                float dots[4];
                dot4_f32(qt, kb + u * D, kb + (u + 1) * D, kb + (u + 2) * D,
                         kb + (u + 3) * D, D, dots);
                for (int e = 0; e < 4; e++)
                    srow[u + e] = scale * dots[e];
            }
            for (; u < nv; u++)
                srow[u] = scale * dot_f32(qt, kb + u * D, D);
        }
    }

    /* Row maxima over the visible scores. */
    for (int t = 0; t < qn; t++) {
        int64_t qpos = q_first + t + offset;
        const float *srow = ws->scores + (size_t)t * ncols;
        float mx = -INFINITY;
        for (int c = 0; c < count; c++) {
            int nv =
                visible_keys(qpos, (int64_t)idx[c] * BS, col[c + 1] - col[c]);
            for (int u = 0; u < nv; u++)
                mx = srow[col[c] + u] > mx ? srow[col[c] + u] : mx;
        }
        ws->row_max[t] = mx;
        ws->row_sum[t] = 0.0;
    }

    /* exp and P * V, again one key block at a time: within a block in
     * fp32, across blocks in double. */
    memset(ws->acc, 0, (size_t)qn * D * sizeof *ws->acc);
    for (int c = 0; c < count; c++) {
        int64_t js = (int64_t)idx[c] * BS;
        for (int t = 0; t < qn; t++) {
            int nv =
                visible_keys(q_first + t + offset, js, col[c + 1] - col[c]);
            float *p = ws->scores + (size_t)t * ncols + col[c];
            float mx = ws->row_max[t], block_sum = 0.0f;
            for (int u = 0; u < nv; u++) {
                p[u] = expf(p[u] - mx);
                block_sum += p[u];
            }
            pv_block(ws->facc, p, vbase + js * D, nv, D);
            double *acc = ws->acc + (size_t)t * D;
            for (int d = 0; d < D; d++)
                acc[d] += ws->facc[d];
            ws->mass[(size_t)t * job->sel->nk + c] = block_sum;
            ws->row_sum[t] += block_sum;
        }
    }

    for (int t = 0; t < qn; t++) {
        double sum = ws->row_sum[t];
        const double *acc = ws->acc + (size_t)t * D;
        int64_t out_s = seq->q.start + q_first + t;
        size_t flat =
            ((size_t)seq->q.view_b * sel->Hq + h) * job->q_tokens + out_s;
        for (int d = 0; d < D; d++)
            prism_view_store(job->out, seq->q.view_b, h, out_s, d,
                             sum > 0.0 ? (float)(acc[d] / sum) : 0.0f);
        if (opt && opt->lse)
            opt->lse[flat] = sum > 0.0
                                 ? (float)((double)ws->row_max[t] + log(sum))
                                 : -INFINITY;
        for (int m = 0; opt && m < opt->n_recall; m++) {
            const prism_selection *other = opt->recall_sel[m];
            double in = row_recall(idx, count, ws->mass + (size_t)t * sel->nk,
                                   other->indices + row * other->nk,
                                   other->counts[row]);
            opt->recall_out[m][flat] = sum > 0.0 ? (float)(in / sum) : 0.0f;
        }
    }
}

static bool same_geometry(const prism_selection *a, const prism_selection *b) {
    if (a->B != b->B || a->Hq != b->Hq || a->nq != b->nq || a->nk != b->nk ||
        a->block_size != b->block_size)
        return false;
    for (int s = 0; s < a->B; s++)
        if (a->seq_nq[s] != b->seq_nq[s] || a->seq_nk[s] != b->seq_nk[s])
            return false;
    return true;
}

prism_status
prism_ref_attention(const prism_tensor_view *q, const prism_tensor_view *k,
                    const prism_tensor_view *v, const prism_varlen *varlen,
                    const prism_selection *sel,
                    const prism_ref_attention_options *options,
                    const prism_tensor_view *out, char *err, size_t err_size) {
    prism_status st = check_qkvo(q, k, v, out, err, err_size);
    if (st != PRISM_OK)
        return st;
    if (!sel || sel->block_size < 1)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "attention: NULL or empty selection");
    st = prism_selection_validate(sel, err, err_size);
    if (st != PRISM_OK)
        return st;
    for (int m = 0; options && m < options->n_recall; m++) {
        if (!options->recall_sel || !options->recall_out ||
            !options->recall_sel[m] || !options->recall_out[m])
            return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                                "attention: recall %d has a NULL selection "
                                "or output",
                                m);
        if (!same_geometry(sel, options->recall_sel[m]))
            return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                                "attention: recall selection %d has another "
                                "geometry than the attention's",
                                m);
        st = prism_selection_validate(options->recall_sel[m], err, err_size);
        if (st != PRISM_OK)
            return st;
    }
    ref_seq *seqs = NULL;
    int nseq = 0;
    st = ref_seqs_make(q, k, varlen, sel->block_size, &seqs, &nseq, err,
                       err_size);
    if (st != PRISM_OK)
        return st;
    int threads = options && options->threads > 0 ? options->threads
                                                  : prism_cpu_threads();
    int D = (int)q->shape[3], BS = sel->block_size;
    float *kf = NULL, *vf = NULL;
    attn_scratch *scratch = NULL;
    st =
        ref_selection_matches(sel, seqs, nseq, (int)q->shape[1], err, err_size);
    if (st != PRISM_OK)
        goto done;
    kf = to_fp32(k, threads);
    vf = to_fp32(v, threads);
    scratch = calloc((size_t)threads, sizeof *scratch);
    if (!kf || !vf || !scratch)
        goto oom;
    size_t nk = (size_t)(sel->nk > 0 ? sel->nk : 1);
    for (int w = 0; w < threads; w++) {
        attn_scratch *ws = &scratch[w];
        ws->q = malloc((size_t)BS * D * sizeof *ws->q);
        ws->scores = malloc((size_t)BS * nk * BS * sizeof *ws->scores);
        ws->col_start = malloc((nk + 1) * sizeof *ws->col_start);
        ws->acc = malloc((size_t)BS * D * sizeof *ws->acc);
        ws->facc = malloc((size_t)D * sizeof *ws->facc);
        ws->mass = malloc((size_t)BS * nk * sizeof *ws->mass);
        ws->row_max = malloc((size_t)BS * sizeof *ws->row_max);
        ws->row_sum = malloc((size_t)BS * sizeof *ws->row_sum);
        if (!ws->q || !ws->scores || !ws->col_start || !ws->acc || !ws->facc ||
            !ws->mass || !ws->row_max || !ws->row_sum)
            goto oom;
    }
    double scale = options && options->scale > 0.0 ? options->scale
                                                   : 1.0 / sqrt((double)D);
    attn_job job = {q,           out,         kf,
                    vf,          k->shape[1], k->shape[2],
                    seqs,        sel,         options,
                    scale,       D,           (int)(q->shape[1] / k->shape[1]),
                    q->shape[2], scratch};
    prism_parallel_for((int64_t)sel->B * sel->Hq * sel->nq, threads,
                           attention_row, &job);
    goto done;
oom:
    st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                      "attention: out of memory for fp32 K/V or scratch");
done:
    for (int w = 0; scratch && w < threads; w++) {
        free(scratch[w].q);
        free(scratch[w].scores);
        free(scratch[w].col_start);
        free(scratch[w].acc);
        free(scratch[w].facc);
        free(scratch[w].mass);
        free(scratch[w].row_max);
        free(scratch[w].row_sum);
    }
    free(scratch);
    free(kf);
    free(vf);
    free(seqs);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Direct dense attention                                                   */
/* ------------------------------------------------------------------------ */

typedef struct dense_job {
    const prism_tensor_view *q, *k, *v, *out;
    const ref_seq *seqs;
    int Hq, group, D;
    int64_t max_sq, q_tokens;
    double scale;
    float *lse;
    double **scores; /* per worker [max Sk] */
    double **acc;    /* per worker [D]      */
} dense_job;

static void dense_query(void *ctx, int64_t index, int worker) {
    const dense_job *job = ctx;
    int64_t t = index % job->max_sq;
    int h = (int)((index / job->max_sq) % job->Hq);
    int b = (int)(index / (job->max_sq * job->Hq));
    const ref_seq *seq = &job->seqs[b];
    if (t >= seq->q.len)
        return;
    int kvh = h / job->group, D = job->D;
    int64_t qpos = t + seq->k.len - seq->q.len;
    int64_t qs = seq->q.start + t;
    double *score = job->scores[worker], *acc = job->acc[worker];
    double mx = -INFINITY;
    for (int64_t s = 0; s <= qpos; s++) {
        double dot = 0.0;
        for (int d = 0; d < D; d++)
            dot += (double)prism_view_load(job->q, seq->q.view_b, h, qs, d) *
                   (double)prism_view_load(job->k, seq->k.view_b, kvh,
                                           seq->k.start + s, d);
        score[s] = dot * job->scale;
        mx = score[s] > mx ? score[s] : mx;
    }
    double sum = 0.0;
    for (int d = 0; d < D; d++)
        acc[d] = 0.0;
    for (int64_t s = 0; s <= qpos; s++) {
        double p = exp(score[s] - mx);
        sum += p;
        for (int d = 0; d < D; d++)
            acc[d] += p * (double)prism_view_load(job->v, seq->k.view_b, kvh,
                                                  seq->k.start + s, d);
    }
    for (int d = 0; d < D; d++)
        prism_view_store(job->out, seq->q.view_b, h, qs, d,
                         (float)(acc[d] / sum));
    if (job->lse)
        job->lse[((size_t)seq->q.view_b * job->Hq + h) * job->q_tokens + qs] =
            (float)(mx + log(sum));
}

prism_status prism_ref_attention_dense_direct(
    const prism_tensor_view *q, const prism_tensor_view *k,
    const prism_tensor_view *v, const prism_varlen *varlen, double scale,
    int threads, const prism_tensor_view *out, float *lse, char *err,
    size_t err_size) {
    prism_status st = check_qkvo(q, k, v, out, err, err_size);
    if (st != PRISM_OK)
        return st;
    ref_seq *seqs = NULL;
    int nseq = 0;
    st = ref_seqs_make(q, k, varlen, 0, &seqs, &nseq, err, err_size);
    if (st != PRISM_OK)
        return st;
    if (threads <= 0)
        threads = prism_cpu_threads();
    int64_t max_sq = 1, max_sk = 1;
    for (int b = 0; b < nseq; b++) {
        max_sq = seqs[b].q.len > max_sq ? seqs[b].q.len : max_sq;
        max_sk = seqs[b].k.len > max_sk ? seqs[b].k.len : max_sk;
    }
    int D = (int)q->shape[3];
    double **scores = calloc((size_t)threads, sizeof *scores);
    double **acc = calloc((size_t)threads, sizeof *acc);
    if (!scores || !acc)
        goto oom;
    for (int w = 0; w < threads; w++) {
        scores[w] = malloc((size_t)max_sk * sizeof **scores);
        acc[w] = malloc((size_t)D * sizeof **acc);
        if (!scores[w] || !acc[w])
            goto oom;
    }
    dense_job job = {q,
                     k,
                     v,
                     out,
                     seqs,
                     (int)q->shape[1],
                     (int)(q->shape[1] / k->shape[1]),
                     D,
                     max_sq,
                     q->shape[2],
                     scale > 0.0 ? scale : 1.0 / sqrt((double)D),
                     lse,
                     scores,
                     acc};
    prism_parallel_for((int64_t)nseq * job.Hq * max_sq, threads,
                           dense_query, &job);
    goto done;
oom:
    st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                      "dense attention: out of memory");
done:
    for (int w = 0; w < threads; w++) {
        if (scores)
            free(scores[w]);
        if (acc)
            free(acc[w]);
    }
    free(scores);
    free(acc);
    free(seqs);
    return st;
}
