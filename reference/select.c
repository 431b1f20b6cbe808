/*
 * select.c - docs/method.md §5 and §6: dual-band block scores, per-band
 * softmax and top-p, and the estimation pipeline that turns Q and K into a
 * selection (plus the mean-pooling baseline that uses one band of all dims).
 *
 * One row (batch, query head, query block) is independent of every other,
 * so rows run in parallel; per-worker scratch holds the row's logits.
 * Everything after pooling is computed in double: the method's fp32 softmax
 * can only differ from it on rows whose cumulative mass lands within
 * rounding of a threshold, which the agreement metric (metrics.c) reports.
 * Top-p sorts the allowed blocks by decreasing probability with a stable
 * merge sort over ascending j, so ties keep the lower j first; a block is
 * kept while the mass of the blocks before it is below the threshold, so
 * the block that crosses the threshold is kept.
 */
#include "reference/ref_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Scales below this are treated as this: only a band with no energy at all
 * gets here, and then its logits are 0 (a uniform softmax). */
#define SCALE_FLOOR 1e-12

static const char *const method_names[] = {"prism", "prism-nocal", "meanpool"};

const char *prism_ref_method_name(prism_ref_method method) {
    return (unsigned)method < PRISM_ARRAY_LEN(method_names)
               ? method_names[method]
               : NULL;
}

void prism_ref_softmax(double *x, int n) {
    if (n <= 0)
        return;
    double mx = x[0];
    for (int j = 1; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        x[j] = exp(x[j] - mx);
        sum += x[j];
    }
    for (int j = 0; j < n; j++)
        x[j] /= sum;
}

/* Stable bottom-up merge sort of order[0..n) by decreasing prob. */
static void sort_by_prob_desc(const double *prob, int *order, int *tmp, int n) {
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            int mid = lo + width < n ? lo + width : n;
            int hi = lo + 2 * width < n ? lo + 2 * width : n;
            int a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                /* strict >: on ties the left (lower j) element goes first */
                tmp[o++] =
                    prob[order[b]] > prob[order[a]] ? order[b++] : order[a++];
            while (a < mid)
                tmp[o++] = order[a++];
            while (b < hi)
                tmp[o++] = order[b++];
        }
        memcpy(order, tmp, (size_t)n * sizeof *order);
    }
}

int prism_ref_top_p(const double *prob, int n, double threshold,
                    int *order_scratch, unsigned char *keep) {
    if (n <= 0)
        return 0;
    int *order = order_scratch, *tmp = order_scratch + n;
    for (int j = 0; j < n; j++) {
        order[j] = j;
        keep[j] = 0;
    }
    sort_by_prob_desc(prob, order, tmp, n);
    double mass_before = 0.0;
    int kept = 0;
    for (int r = 0; r < n && mass_before < threshold; r++) {
        keep[order[r]] = 1;
        mass_before += prob[order[r]];
        kept++;
    }
    return kept;
}

/* ------------------------------------------------------------------------ */
/* Estimation                                                               */
/* ------------------------------------------------------------------------ */

typedef struct worker_scratch {
    double *logit_high, *logit_low;
    int *order; /* 2 * nk */
    unsigned char *keep_high, *keep_low;
} worker_scratch;

typedef struct estimate_job {
    const prism_config *cfg;
    prism_ref_method method;
    const prism_pooled *pq, *pk;
    const int *high_dims, *low_dims;
    int n_high, n_low;
    const double *scale_high, *scale_low; /* [B * Hq] */
    prism_selection *sel;
    prism_ref_estimate_stats *stats; /* NULL when not wanted */
    worker_scratch *scratch;
} estimate_job;

static double band_dot(const float *a, const float *b, const int *dims, int n) {
    double sum = 0.0;
    for (int c = 0; c < n; c++)
        sum += (double)a[dims[c]] * (double)b[dims[c]];
    return sum;
}

static void estimate_row(void *ctx, int64_t row, int worker) {
    const estimate_job *job = ctx;
    prism_selection *sel = job->sel;
    const prism_config *cfg = job->cfg;
    worker_scratch *ws = &job->scratch[worker];
    int i = (int)(row % sel->nq);
    int h = (int)((row / sel->nq) % sel->Hq);
    int b = (int)(row / ((int64_t)sel->nq * sel->Hq));
    int allowed = prism_selection_allowed(sel, b, i);
    int32_t *indices = sel->indices + row * sel->nk;
    prism_ref_estimate_stats *stats = job->stats;
    if (stats)
        stats->allowed[row] = allowed;
    sel->counts[row] = 0;
    if (allowed == 0)
        return;

    const prism_pooled *pq = job->pq, *pk = job->pk;
    int D = pq->D, kv = h / (pq->H / pk->H);
    const float *qrow =
        pq->data + (((size_t)b * pq->H + h) * pq->nblocks + i) * D;
    const float *krows = pk->data + ((size_t)b * pk->H + kv) * pk->nblocks * D;
    bool dual = job->method != PRISM_REF_MEAN_POOLING;
    double sh = fmax(job->scale_high[(size_t)b * sel->Hq + h], SCALE_FLOOR);
    double sl = fmax(job->scale_low[(size_t)b * sel->Hq + h], SCALE_FLOOR);
    for (int j = 0; j < allowed; j++) {
        const float *krow = krows + (size_t)j * D;
        ws->logit_high[j] =
            band_dot(qrow, krow, job->high_dims, job->n_high) / sh;
        if (dual)
            ws->logit_low[j] =
                band_dot(qrow, krow, job->low_dims, job->n_low) / sl;
    }
    prism_ref_softmax(ws->logit_high, allowed);
    int kept_high = prism_ref_top_p(
        ws->logit_high, allowed, cfg->threshold_high, ws->order, ws->keep_high);
    int kept_low = 0;
    if (dual) {
        prism_ref_softmax(ws->logit_low, allowed);
        kept_low = prism_ref_top_p(ws->logit_low, allowed, cfg->threshold_low,
                                   ws->order, ws->keep_low);
    } else {
        memset(ws->keep_low, 0, (size_t)allowed);
    }
    if (cfg->force_sink)
        ws->keep_high[0] = 1;
    if (cfg->force_recent) /* the diagonal is j = i + (nk_b - nq_b) */
        for (int j = allowed - cfg->recent_blocks; j < allowed; j++)
            if (j >= 0)
                ws->keep_high[j] = 1;
    int count = 0;
    for (int j = 0; j < allowed; j++)
        if (ws->keep_high[j] || ws->keep_low[j])
            indices[count++] = j;
    sel->counts[row] = count;
    if (stats) {
        stats->high_kept[row] = kept_high;
        stats->low_kept[row] = kept_low;
        if (stats->probs) {
            float *p = stats->probs + (size_t)row * 2 * sel->nk;
            for (int j = 0; j < allowed; j++) {
                p[j] = (float)ws->logit_high[j];
                p[sel->nk + j] = dual ? (float)ws->logit_low[j] : 0.0f;
            }
        }
    }
}

/* Checks the config fields the estimation reads against the views. */
static prism_status check_config(const prism_config *cfg,
                                 prism_ref_method method,
                                 const prism_tensor_view *q,
                                 const prism_tensor_view *k, char *err,
                                 size_t err_size) {
    int D = cfg->head_dim;
    if (D < 2 || D % 2 || q->shape[3] != D || k->shape[3] != D)
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "estimate: head_dim %d (even) must match Q's %lld "
                            "and K's %lld",
                            D, (long long)q->shape[3], (long long)k->shape[3]);
    if (q->shape[1] % k->shape[1] != 0)
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "estimate: Hq = %lld is not a multiple of "
                            "Hkv = %lld",
                            (long long)q->shape[1], (long long)k->shape[1]);
    if (cfg->block_size < 1)
        return prism_errorf(err, err_size, PRISM_ERR_CONFIG,
                            "estimate: block_size %d must be >= 1",
                            cfg->block_size);
    if (cfg->high_dim < 2 || cfg->high_dim % 2 || cfg->high_dim > D ||
        cfg->low_dim < 2 || cfg->low_dim % 2 || cfg->low_dim > D)
        return prism_errorf(err, err_size, PRISM_ERR_CONFIG,
                            "estimate: band widths high %d / low %d must be "
                            "even and in [2, %d]",
                            cfg->high_dim, cfg->low_dim, D);
    if (!(cfg->threshold_high > 0.0 && cfg->threshold_high <= 1.0) ||
        !(cfg->threshold_low > 0.0 && cfg->threshold_low <= 1.0))
        return prism_errorf(err, err_size, PRISM_ERR_CONFIG,
                            "estimate: thresholds %g / %g must be in (0, 1]",
                            cfg->threshold_high, cfg->threshold_low);
    bool uses_temps = method == PRISM_REF_PRISM_UNCALIBRATED ||
                      (method == PRISM_REF_PRISM && !cfg->calibrate);
    if (uses_temps && (!(cfg->temp_high > 0.0) || !(cfg->temp_low > 0.0)))
        return prism_errorf(err, err_size, PRISM_ERR_CONFIG,
                            "estimate: temperatures %g / %g must be > 0",
                            cfg->temp_high, cfg->temp_low);
    return PRISM_OK;
}

void prism_ref_estimate_stats_free(prism_ref_estimate_stats *stats) {
    if (!stats)
        return;
    free(stats->scale_high);
    free(stats->scale_low);
    free(stats->allowed);
    free(stats->high_kept);
    free(stats->low_kept);
    free(stats->probs);
    memset(stats, 0, sizeof *stats);
}

static prism_status alloc_stats(prism_ref_estimate_stats *stats,
                                const prism_selection *sel, bool want_probs) {
    size_t heads = (size_t)sel->B * sel->Hq;
    size_t rows = heads * (size_t)sel->nq;
    memset(stats, 0, sizeof *stats);
    stats->B = sel->B;
    stats->Hq = sel->Hq;
    stats->nq = sel->nq;
    stats->nk = sel->nk;
    stats->scale_high = calloc(heads, sizeof *stats->scale_high);
    stats->scale_low = calloc(heads, sizeof *stats->scale_low);
    stats->allowed = calloc(rows + 1, sizeof *stats->allowed);
    stats->high_kept = calloc(rows + 1, sizeof *stats->high_kept);
    stats->low_kept = calloc(rows + 1, sizeof *stats->low_kept);
    if (want_probs)
        stats->probs =
            calloc(rows * 2 * (size_t)sel->nk + 1, sizeof *stats->probs);
    if (!stats->scale_high || !stats->scale_low || !stats->allowed ||
        !stats->high_kept || !stats->low_kept || (want_probs && !stats->probs))
        return PRISM_ERR_OUT_OF_MEMORY;
    return PRISM_OK;
}

prism_status
prism_ref_estimate(const prism_tensor_view *q, const prism_tensor_view *k,
                   const prism_varlen *varlen, const prism_config *cfg,
                   const prism_ref_estimate_options *options,
                   prism_selection *sel, prism_ref_estimate_stats *stats,
                   prism_ref_timing *timing, char *err, size_t err_size) {
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!cfg || !options || !sel)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "estimate: NULL config, options or selection");
    if ((unsigned)options->method >= PRISM_REF_METHOD_COUNT_)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "estimate: unknown method %d",
                            (int)options->method);
    prism_status st = ref_check_view(q, "Q", err, err_size);
    if (st == PRISM_OK)
        st = ref_check_view(k, "K", err, err_size);
    if (st == PRISM_OK)
        st = check_config(cfg, options->method, q, k, err, err_size);
    if (st != PRISM_OK)
        return st;

    int threads = options->threads > 0 ? options->threads : prism_cpu_threads();
    int D = cfg->head_dim, Hq = (int)q->shape[1];
    ref_seq *seqs = NULL;
    int nseq = 0;
    ref_span *qspans = NULL, *kspans = NULL;
    prism_pooled pq = {0}, pk = {0};
    int *high_dims = NULL, *low_dims = NULL;
    double *scale_high = NULL, *scale_low = NULL;
    worker_scratch *scratch = NULL;

    st = ref_seqs_make(q, k, varlen, cfg->block_size, &seqs, &nseq, err,
                       err_size);
    if (st != PRISM_OK)
        goto done;
    st = ref_selection_matches(sel, seqs, nseq, Hq, err, err_size);
    if (st != PRISM_OK)
        goto done;
    if (sel->block_size != cfg->block_size) {
        st = prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                          "estimate: selection block size %d differs from "
                          "the config's %d",
                          sel->block_size, cfg->block_size);
        goto done;
    }
    qspans = malloc((size_t)nseq * sizeof *qspans);
    kspans = malloc((size_t)nseq * sizeof *kspans);
    high_dims = malloc((size_t)D * sizeof *high_dims);
    low_dims = malloc((size_t)D * sizeof *low_dims);
    scale_high = calloc((size_t)nseq * Hq, sizeof *scale_high);
    scale_low = calloc((size_t)nseq * Hq, sizeof *scale_low);
    scratch = calloc((size_t)threads, sizeof *scratch);
    if (!qspans || !kspans || !high_dims || !low_dims || !scale_high ||
        !scale_low || !scratch) {
        st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                          "estimate: out of memory");
        goto done;
    }
    for (int b = 0; b < nseq; b++) {
        qspans[b] = seqs[b].q;
        kspans[b] = seqs[b].k;
    }

    double t0 = prism_now_ms();
    st = ref_pool_spans(q, qspans, nseq, cfg->block_size, threads, &pq, err,
                        err_size);
    if (st == PRISM_OK)
        st = ref_pool_spans(k, kspans, nseq, cfg->block_size, threads, &pk, err,
                            err_size);
    if (st != PRISM_OK)
        goto done;
    double t1 = prism_now_ms();

    int n_high, n_low;
    if (options->method == PRISM_REF_MEAN_POOLING) {
        for (int d = 0; d < D; d++)
            high_dims[d] = d;
        n_high = D;
        n_low = 0;
    } else {
        n_high = prism_ref_band_dims(D, cfg->rope_layout, cfg->high_dim, true,
                                     high_dims);
        n_low = prism_ref_band_dims(D, cfg->rope_layout, cfg->low_dim, false,
                                    low_dims);
        if (n_high < 0 || n_low < 0) {
            st = prism_errorf(err, err_size, PRISM_ERR_CONFIG,
                              "estimate: unknown RoPE layout %d",
                              (int)cfg->rope_layout);
            goto done;
        }
    }
    for (int b = 0; b < nseq; b++)
        for (int h = 0; h < Hq; h++) {
            size_t at = (size_t)b * Hq + h;
            if (options->method == PRISM_REF_MEAN_POOLING) {
                scale_high[at] = scale_low[at] = sqrt((double)D);
                continue;
            }
            st = prism_ref_band_scales(cfg, options->method == PRISM_REF_PRISM,
                                       &pq, &pk, b, h, &scale_high[at],
                                       &scale_low[at], err, err_size);
            if (st != PRISM_OK)
                goto done;
        }

    if (stats && alloc_stats(stats, sel, options->want_probs) != PRISM_OK) {
        st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                          "estimate: out of memory for statistics");
        goto done;
    }
    size_t nk = (size_t)(sel->nk > 0 ? sel->nk : 1);
    for (int w = 0; w < threads; w++) {
        scratch[w].logit_high = malloc(nk * sizeof(double));
        scratch[w].logit_low = malloc(nk * sizeof(double));
        scratch[w].order = malloc(2 * nk * sizeof(int));
        scratch[w].keep_high = malloc(nk);
        scratch[w].keep_low = malloc(nk);
        if (!scratch[w].logit_high || !scratch[w].logit_low ||
            !scratch[w].order || !scratch[w].keep_high ||
            !scratch[w].keep_low) {
            st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                              "estimate: out of memory for scratch");
            goto done;
        }
    }
    estimate_job job = {
        cfg,   options->method, &pq,       &pk, high_dims, low_dims, n_high,
        n_low, scale_high,      scale_low, sel, stats,     scratch};
    prism_parallel_for((int64_t)sel->B * sel->Hq * sel->nq, threads,
                           estimate_row, &job);
    double t2 = prism_now_ms();
    if (timing) {
        timing->pool_ms = t1 - t0;
        timing->estimate_ms = t2 - t1;
    }
    if (stats) {
        memcpy(stats->scale_high, scale_high,
               (size_t)nseq * Hq * sizeof *scale_high);
        memcpy(stats->scale_low, scale_low,
               (size_t)nseq * Hq * sizeof *scale_low);
        stats->density = prism_ref_density(sel, NULL);
    }

done:
    if (st != PRISM_OK && stats)
        prism_ref_estimate_stats_free(stats);
    for (int w = 0; scratch && w < threads; w++) {
        free(scratch[w].logit_high);
        free(scratch[w].logit_low);
        free(scratch[w].order);
        free(scratch[w].keep_high);
        free(scratch[w].keep_low);
    }
    free(scratch);
    free(scale_high);
    free(scale_low);
    free(high_dims);
    free(low_dims);
    prism_pooled_free(&pq);
    prism_pooled_free(&pk);
    free(qspans);
    free(kspans);
    free(seqs);
    return st;
}
