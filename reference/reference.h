/*
 * reference.h - the CPU reference ("oracle") of the Prism pipeline.
 *
 * Internal to the project (not installed): the tests, `prism run` and the
 * GPU runtime's checks use it to know what every kernel must compute.  It
 * follows docs/method.md section by section and favours obviously correct
 * code over speed; the inner loops are written so that a dense 8K x
 * 32-head run still takes seconds to a minute on a few cores.
 *
 *   views        strided tensors of fp32/bf16/fp16 (BHSD, BSHD, ragged)
 *   paged K/V    the contiguous tensor a paged batch stands for
 *   pooling      docs/method.md §2     prism_ref_pool()
 *   bands        docs/method.md §3     prism_ref_band_dims()
 *   calibration  docs/method.md §4     prism_ref_band_scales()
 *   selection    docs/method.md §5-6  prism_ref_estimate()
 *   attention    docs/method.md §7     prism_ref_attention(), _dense_direct()
 *   workloads    synthetic Q/K/V    prism_ref_workload_build()
 *   metrics      density, recall, output error, selection agreement
 *
 * Every function returns a prism_status and writes a one-line reason into
 * `err` (may be NULL) on failure; nothing aborts, exits or prints.
 * Functions that run in parallel use prism_cpu_threads() worker threads
 * unless an explicit count is passed (0 = all online CPUs); results never
 * depend on the thread count.
 *
 * ---------------------------------------------------------------------------
 * THE SELECTION FORMAT (the contract between estimation and attention)
 * ---------------------------------------------------------------------------
 * A selection covers B sequences, Hq query heads, nq query blocks and nk key
 * blocks of block_size tokens.  One "row" is (b, h, i): sequence b, query
 * head h, query block i.  Row r = (b * Hq + h) * nq + i.
 *
 *   counts[r]              number of selected key blocks of row r, in
 *                          [0, nk]
 *   indices[r * nk + c]    for c < counts[r]: the selected key-block indices
 *                          of row r, int32, strictly ASCENDING; entries at
 *                          c >= counts[r] are unspecified (any value)
 *
 * Query block i of sequence b covers that sequence's query tokens
 * [i*BS, min((i+1)*BS, Sq_b)); key block j covers key tokens
 * [j*BS, min((j+1)*BS, Sk_b)).  The queries are the last Sq_b positions, so
 * query token t sits at absolute position t + (Sk_b - Sq_b).  A selected
 * block j of row i always satisfies the block-causal bound
 * j <= i + (nk_b - nq_b); attention applies token-level causality on top
 * (key position <= query position), which only trims the diagonal block.
 *
 * Ragged batches: nq and nk are the maxima over the batch; seq_nq[b] and
 * seq_nk[b] hold each sequence's own block counts (ceil(Sq_b / BS),
 * ceil(Sk_b / BS)); rows i >= seq_nq[b] have count 0.  For a regular batch
 * every entry equals nq / nk.
 *
 * The reference requires (Sk_b - Sq_b) to be a multiple of BS for every
 * sequence (PRISM_ERR_UNSUPPORTED otherwise): only then does each query
 * block meet exactly one diagonal key block, so that the the method's block-causal
 * bound contains every key a query may causally see and "all blocks
 * selected" equals dense causal attention.  (With an unaligned offset the
 * the method's bound would silently drop keys.)  The direct dense implementation
 * has no such restriction.
 */
#ifndef PRISM_REFERENCE_H
#define PRISM_REFERENCE_H

#include "prism.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Tensor views                                                             */
/* ------------------------------------------------------------------------ */

/* A strided 4-D tensor [B, H, S, D] (batch, head, token, dim).  Strides are
 * in ELEMENTS and may be any non-negative values, so BHSD (PyTorch eager),
 * BSHD (serving engines) and slices of larger buffers all work.  Loads
 * convert through half.h; stores round to nearest even. */
typedef struct prism_tensor_view {
    void *data;
    prism_dtype dtype; /* PRISM_DTYPE_FP32, _BF16 or _FP16 */
    int64_t shape[4];  /* B, H, S, D */
    int64_t stride[4]; /* element strides of B, H, S, D  */
} prism_tensor_view;

/* Contiguous [B, H, S, D]: strides {H*S*D, S*D, D, 1}. */
prism_tensor_view prism_view_bhsd(void *data, prism_dtype dtype, int64_t B,
                                  int64_t H, int64_t S, int64_t D);
/* Memory order [B, S, H, D] seen as [B, H, S, D]:
 * strides {S*H*D, D, H*D, 1}. */
prism_tensor_view prism_view_bshd(void *data, prism_dtype dtype, int64_t B,
                                  int64_t H, int64_t S, int64_t D);
/* Bytes of one element of dtype (4, 2, 2); 0 for an unknown dtype. */
size_t prism_dtype_size(prism_dtype dtype);
/* Number of elements a view spans: 1 + sum (shape-1)*stride (0 if empty). */
int64_t prism_view_span(const prism_tensor_view *view);
/* Element (b, h, s, d) as float. */
float prism_view_load(const prism_tensor_view *view, int64_t b, int64_t h,
                      int64_t s, int64_t d);
/* Stores value (rounded to the view's dtype) at (b, h, s, d). */
void prism_view_store(const prism_tensor_view *view, int64_t b, int64_t h,
                      int64_t s, int64_t d, float value);
/* Copies (and converts) src into dst of the same shape. */
prism_status prism_view_copy(const prism_tensor_view *dst,
                             const prism_tensor_view *src, char *err,
                             size_t err_size);

/* Ragged ("varlen") batches, as FlashAttention's varlen API: the views have
 * B = 1 and S = total tokens; sequence b owns query tokens
 * [cu_seqlens_q[b], cu_seqlens_q[b+1]) of Q and key tokens
 * [cu_seqlens_k[b], cu_seqlens_k[b+1]) of K and V.  Both arrays hold
 * num_seqs + 1 non-decreasing entries starting at 0.  Every function that
 * takes a `const prism_varlen *` treats NULL as a regular batch (sequence b
 * = batch entry b of the views, all of length S). */
typedef struct prism_varlen {
    int num_seqs;
    const int32_t *cu_seqlens_q;
    const int32_t *cu_seqlens_k;
} prism_varlen;

/* Paged K/V (prism.h, prism_paged_kv).  pool views the pages as
 * [num_pages, Hkv, page_size, D] (its strides give NHD or HND pages): key
 * t of sequence b is row t % page_size of page
 * page_table[b * max_pages + t / page_size].  The sequences are those of
 * the contiguous view and varlen (NULL: regular, every entry of the view
 * one sequence of all its tokens; else its cu_seqlens_k).  Every table
 * entry a sequence uses is checked against the pool first.
 *   gather:  dst (contiguous [B, Hkv, Sk, D] or ragged) = the pages' keys,
 *            the tensor a paged batch stands for
 *   scatter: the pages = src's keys (the pages the table does not name,
 *            and the rows past a sequence's end, are left alone) */
prism_status prism_ref_paged_gather(const prism_tensor_view *pool,
                                    const int32_t *page_table, int max_pages,
                                    const prism_varlen *varlen,
                                    const prism_tensor_view *dst, char *err,
                                    size_t err_size);
prism_status prism_ref_paged_scatter(const prism_tensor_view *pool,
                                     const int32_t *page_table, int max_pages,
                                     const prism_varlen *varlen,
                                     const prism_tensor_view *src, char *err,
                                     size_t err_size);

/* ------------------------------------------------------------------------ */
/* Selection (format described at the top of this file)                    */
/* ------------------------------------------------------------------------ */
typedef struct prism_selection {
    int B, Hq, nq, nk;
    int block_size;
    int32_t *counts;  /* [B * Hq * nq]                                     */
    int32_t *indices; /* [B * Hq * nq * nk]                                */
    int32_t *seq_nq;  /* [B] query blocks of each sequence (<= nq)         */
    int32_t *seq_nk;  /* [B] key blocks of each sequence (<= nk)           */
} prism_selection;

/* Allocates a regular selection (every seq_nq = nq, seq_nk = nk) with all
 * counts 0.  On failure *sel is zeroed. */
prism_status prism_selection_alloc(prism_selection *sel, int B, int Hq, int nq,
                                   int nk, int block_size);
/* Allocates the selection for B sequences of Sq queries and Sk keys
 * (regular batch) or for a ragged batch (varlen non-NULL; B, Sq and Sk are
 * then ignored and taken from varlen).  All counts start at 0. */
prism_status prism_selection_alloc_for(prism_selection *sel, int B, int Hq,
                                       int64_t Sq, int64_t Sk,
                                       const prism_varlen *varlen,
                                       int block_size, char *err,
                                       size_t err_size);
/* Frees the arrays and zeroes *sel; NULL and zeroed selections are fine. */
void prism_selection_free(prism_selection *sel);
/* Sets every row to all its block-causal blocks 0..i+(seq_nk-seq_nq):
 * with it, prism_ref_attention() is dense causal attention. */
void prism_selection_fill_full(prism_selection *sel);
/* Number of block-causal blocks of row (b, i): i + seq_nk - seq_nq + 1,
 * clamped to [0, seq_nk]; 0 when i >= seq_nq[b]. */
int prism_selection_allowed(const prism_selection *sel, int b, int i);
/* Checks the format: counts in range, indices ascending, block-causal. */
prism_status prism_selection_validate(const prism_selection *sel, char *err,
                                      size_t err_size);

/* ------------------------------------------------------------------------ */
/* Pooling (docs/method.md §2)                                                 */
/* ------------------------------------------------------------------------ */

/* Block means of a Q or K tensor: data[((b * H + h) * nblocks + n) * D + d],
 * fp32, the mean over the VALID tokens of block n (accumulated in double).
 * The published code zero-pads a partial last block and divides by BS; we
 * divide by the number of valid tokens (the true mean), which only changes
 * the last block of a sequence whose length is not a multiple of BS.
 * Rows n >= seq_blocks[b] of a shorter ragged sequence are zero. */
typedef struct prism_pooled {
    int B, H, nblocks, D;
    int32_t *seq_blocks; /* [B] valid blocks of each sequence */
    float *data;         /* [B][H][nblocks][D]                */
} prism_pooled;

/* cu_seqlens: NULL for a regular batch (B = view B, every sequence S
 * tokens), else num_seqs+1 offsets into the view's S axis (view B must be
 * 1).  threads: 0 = all CPUs. */
prism_status prism_ref_pool(const prism_tensor_view *x,
                            const int32_t *cu_seqlens, int num_seqs,
                            int block_size, int threads, prism_pooled *out,
                            char *err, size_t err_size);
void prism_pooled_free(prism_pooled *pooled);

/* ------------------------------------------------------------------------ */
/* Bands and calibration (docs/method.md §3-4)                                */
/* ------------------------------------------------------------------------ */

/* Writes the dims of a band of `width` dims (width/2 RoPE pairs), ascending,
 * into dims[width].  High band: pairs [0, width/2); low band: pairs
 * [D/2 - width/2, D/2).  Pair i is dims (i, i + D/2) for the half layout and
 * (2i, 2i + 1) for the interleaved one.  Returns the number of dims written
 * (= width), or -1 when head_dim is not even and positive, width is not
 * even or not in [2, head_dim], or the layout is unknown. */
int prism_ref_band_dims(int head_dim, prism_rope_layout layout, int width,
                        bool high, int *dims);

/* Root mean square of pooled rows [0, nrows) of `rows` (row stride D) over
 * the listed dims (all D dims when dims == NULL): sqrt(mean x^2). */
double prism_ref_band_rms(const float *rows, int nrows, int D, const int *dims,
                          int ndims);

/* Logit scales of one (b, query head h) per docs/method.md §4.  With
 * cfg->calibrate (and calibrated == true):
 *   th = sqrt(dh/D) * (rqh / max(rq, 1e-6)) * (rkh / max(rk, 1e-6))
 *   tl = sqrt(dl/D) * (rql / max(rq, 1e-6)) * (rkl / max(rk, 1e-6))
 *   scale_h = sqrt(dh) * th, scale_l = sqrt(dl) * tl
 * where the rms are over the sequence's valid pooled blocks of Q (head h)
 * and K (KV head h / (Hq/Hkv)).  Otherwise scale_h = sqrt(dh) * temp_high,
 * scale_l = sqrt(dl) * temp_low.  The caller divides logits by the scales
 * (prism_ref_estimate floors them at 1e-12, reached only by a band without
 * any energy, whose logits are then all 0). */
prism_status prism_ref_band_scales(const prism_config *cfg, bool calibrated,
                                   const prism_pooled *pq,
                                   const prism_pooled *pk, int b, int h,
                                   double *scale_high, double *scale_low,
                                   char *err, size_t err_size);

/* ------------------------------------------------------------------------ */
/* Block scores and selection (docs/method.md §5-6)                           */
/* ------------------------------------------------------------------------ */

/* In-place softmax of n logits (double); n == 0 is a no-op. */
void prism_ref_softmax(double *x, int n);
/* Top-p of one row: order = blocks by decreasing prob, ties toward the lower
 * j; keep[j] = 1 while the mass before j is < threshold (so the block that
 * crosses the threshold is kept), else 0.  order_scratch holds n ints.
 * Returns the number kept. */
int prism_ref_top_p(const double *prob, int n, double threshold,
                    int *order_scratch, unsigned char *keep);

typedef enum prism_ref_method {
    PRISM_REF_PRISM = 0,          /* dual band, calibrated per cfg->calibrate */
    PRISM_REF_PRISM_UNCALIBRATED, /* dual band, scales from the temps        */
    PRISM_REF_MEAN_POOLING,       /* one band of all D dims, logits
                                     <p_q, p_k> / sqrt(D), threshold_high    */
    PRISM_REF_METHOD_COUNT_
} prism_ref_method;

/* "prism", "prism-nocal", "meanpool"; NULL when out of range. */
const char *prism_ref_method_name(prism_ref_method method);

typedef struct prism_ref_estimate_options {
    prism_ref_method method;
    int threads;     /* 0 = all online CPUs                              */
    bool want_probs; /* with stats: also keep the block probabilities,
                        [rows][2][nk] floats                           */
} prism_ref_estimate_options;

/* Debug output of one estimation.  Row r as in the selection format. */
typedef struct prism_ref_estimate_stats {
    int B, Hq, nq, nk;
    double *scale_high; /* [B * Hq] (mean pooling: sqrt(D) in both)       */
    double *scale_low;  /* [B * Hq]                                      */
    int32_t *allowed;   /* [rows] block-causal blocks of the row          */
    int32_t *high_kept; /* [rows] blocks kept by the high band's top-p    */
    int32_t *low_kept;  /* [rows] by the low band's (0 for mean pooling)  */
    float *probs;       /* want_probs: [rows][2][nk], band 0 = high (the
                           single band of mean pooling), band 1 = low;
                           0 past the allowed blocks                    */
    double density;     /* selected / block-causal blocks, whole batch   */
} prism_ref_estimate_stats;

typedef struct prism_ref_timing {
    double pool_ms;      /* block pooling of Q and K                       */
    double estimate_ms;  /* calibration, scores, softmax, top-p            */
    double attention_ms; /* prism_ref_attention                            */
} prism_ref_timing;

/* Q [B, Hq, Sq, D] and K [B, Hkv, Sk, D] (or ragged, see prism_varlen) ->
 * selection.  `sel` must be allocated with prism_selection_alloc_for() for
 * the same shapes and cfg->block_size.  stats and timing may be NULL; stats
 * arrays are allocated here (free with prism_ref_estimate_stats_free). */
prism_status
prism_ref_estimate(const prism_tensor_view *q, const prism_tensor_view *k,
                   const prism_varlen *varlen, const prism_config *cfg,
                   const prism_ref_estimate_options *options,
                   prism_selection *sel, prism_ref_estimate_stats *stats,
                   prism_ref_timing *timing, char *err, size_t err_size);
void prism_ref_estimate_stats_free(prism_ref_estimate_stats *stats);

/* ------------------------------------------------------------------------ */
/* Attention (docs/method.md §7)                                               */
/* ------------------------------------------------------------------------ */
typedef struct prism_ref_attention_options {
    int threads;  /* 0 = all online CPUs                               */
    double scale; /* softmax scale; 0 = 1/sqrt(D)                      */
    float *lse;   /* optional [B, Hq, S] fp32 (B, S of the Q view:
                     ragged batches index it by the token's row in the
                     view), natural-log log-sum-exp of scaled logits;
                     -inf for a query that sees no key               */
    /* Optional attention-mass recall: for every query token, the share of
     * THIS call's softmax probability that lies inside the token's row of
     * recall_sel[m], written to recall_out[m][(b * Hq + h) * S + s] (same
     * indexing as lse).  Call with the full selection to get the usual
     * recall of a sparse selection against dense attention. */
    int n_recall;
    const prism_selection *const *recall_sel;
    float *const *recall_out;
} prism_ref_attention_options;

/* O = block-sparse causal attention of Q over the blocks of `sel`.
 * Q [B, Hq, Sq, D]; K, V [B, Hkv, Sk, D]; O [B, Hq, Sq, D] in any dtype and
 * strides (typically the input dtype, or fp32 for metrics).  GQA: query head
 * h reads KV head h / (Hq / Hkv).  Scores and probabilities are fp32 per
 * key block; running sums (softmax denominator, P*V) are double.  A query
 * row with no visible key gets O = 0 (and lse = -inf). */
prism_status
prism_ref_attention(const prism_tensor_view *q, const prism_tensor_view *k,
                    const prism_tensor_view *v, const prism_varlen *varlen,
                    const prism_selection *sel,
                    const prism_ref_attention_options *options,
                    const prism_tensor_view *out, char *err, size_t err_size);

/* Dense causal attention computed directly (no blocks, no selection), all in
 * double, one query at a time: the check of prism_ref_attention.  Any
 * Sk >= Sq; lse optional (indexing as above); scale 0 = 1/sqrt(D). */
prism_status prism_ref_attention_dense_direct(
    const prism_tensor_view *q, const prism_tensor_view *k,
    const prism_tensor_view *v, const prism_varlen *varlen, double scale,
    int threads, const prism_tensor_view *out, float *lse, char *err,
    size_t err_size);

/* ------------------------------------------------------------------------ */
/* Workloads (synthetic Q/K/V with known attention structure)              */
/* ------------------------------------------------------------------------ */
/* See reference/WORKLOADS.md for the construction of every pattern. */
typedef enum prism_workload_kind {
    PRISM_WORKLOAD_SINK = 0,
    PRISM_WORKLOAD_LOCAL,
    PRISM_WORKLOAD_SLASH,
    PRISM_WORKLOAD_VERTICAL,
    PRISM_WORKLOAD_NEEDLE,
    PRISM_WORKLOAD_RANDOM,
    PRISM_WORKLOAD_MIXED,
    PRISM_WORKLOAD_COUNT_
} prism_workload_kind;

/* Pattern components a KV head carries (bit flags). */
enum {
    PRISM_PATTERN_SINK = 1 << 0,
    PRISM_PATTERN_LOCAL = 1 << 1,
    PRISM_PATTERN_SLASH = 1 << 2,
    PRISM_PATTERN_VERTICAL = 1 << 3,
    PRISM_PATTERN_NEEDLE = 1 << 4
};

#define PRISM_WORKLOAD_MAX_VERTICAL 8
#define PRISM_WORKLOAD_MAX_NEEDLES 4
#define PRISM_WORKLOAD_SINK_TOKENS 4
#define PRISM_WORKLOAD_SLASH_NEAR 16  /* offsets 0..16 */
#define PRISM_WORKLOAD_TOPICS 8       /* recurring topics of the text */
#define PRISM_WORKLOAD_TOPIC_SPAN 320 /* tokens per topic span */

/* "sink", "local", ...; NULL when out of range. */
const char *prism_workload_name(prism_workload_kind kind);
/* Parses a name; PRISM_ERR_INVALID_ARGUMENT for an unknown one. */
prism_status prism_workload_parse(const char *name, prism_workload_kind *out);

/* A needle: the key tokens [key_start, key_start + length) match the query
 * tokens [query_start, query_start + length) (query indices, 0..Sq-1). */
typedef struct prism_needle {
    int64_t key_start, query_start, length;
} prism_needle;

/* Where a KV head's structure lies (positions are absolute key positions). */
typedef struct prism_head_pattern {
    unsigned components; /* PRISM_PATTERN_* flags                  */
    int64_t slash_far;   /* far offset of the slash pattern (0: none) */
    int n_vertical;
    int64_t vertical[PRISM_WORKLOAD_MAX_VERTICAL];
    int n_needles;
    prism_needle needles[PRISM_WORKLOAD_MAX_NEEDLES];
} prism_head_pattern;

typedef struct prism_workload {
    int B, Hq, Hkv, D;
    int64_t Sq, Sk;
    prism_workload_kind kind;
    uint64_t seed;
    float *q;                     /* [B, Hq, Sq, D] fp32, RoPE applied      */
    float *k;                     /* [B, Hkv, Sk, D]                        */
    float *v;                     /* [B, Hkv, Sk, D]                        */
    prism_head_pattern *patterns; /* [B * Hkv], index b * Hkv + kv_head     */
} prism_workload;

/* Builds the workload deterministically from seed (independent of the
 * thread count).  Uses cfg->head_dim, q_heads, kv_heads, rope_theta,
 * rope_layout; B >= 1, 1 <= Sq <= Sk. */
prism_status prism_ref_workload_build(const prism_config *cfg, int B,
                                      int64_t Sq, int64_t Sk,
                                      prism_workload_kind kind, uint64_t seed,
                                      prism_workload *out, char *err,
                                      size_t err_size);
void prism_ref_workload_free(prism_workload *w);
/* Topic (0 .. PRISM_WORKLOAD_TOPICS-1) of the text at absolute position pos
 * for KV head kv_head of sequence b: every structured head reads its text as
 * spans of PRISM_WORKLOAD_TOPIC_SPAN tokens, each about one of the recurring
 * topics, and same-topic tokens attract each other (reference/WORKLOADS.md).
 * -1 for random heads and out-of-range arguments. */
int prism_ref_workload_topic(const prism_workload *w, int b, int kv_head,
                             int64_t pos);

/* Applies RoPE in place to x[n_tokens][D] whose token r sits at absolute
 * position first_position + r: pair i rotates by position * theta^(-2i/D). */
void prism_ref_apply_rope(float *x, int64_t n_tokens, int D,
                          int64_t first_position, double theta,
                          prism_rope_layout layout);

/* ------------------------------------------------------------------------ */
/* Metrics                                                                  */
/* ------------------------------------------------------------------------ */

/* Density: selected / block-causal blocks.  per_head (optional, [Hq]) gets
 * each query head's density over all sequences.  Returns 0 for an empty
 * selection. */
double prism_ref_density(const prism_selection *sel, double *per_head);

typedef struct prism_ref_summary {
    double mean, min, max;
    int64_t count;
} prism_ref_summary;

/* mean / min / max over n values (all 0 when n == 0). */
prism_ref_summary prism_ref_summarize(const float *values, int64_t n);

/* Recall values of the valid query tokens only (a ragged batch leaves rows
 * of the [B, Hq, S] arrays unused): summary over the tokens that belong to
 * a sequence.  varlen as elsewhere; S the Q view's token count. */
prism_ref_summary prism_ref_recall_summary(const float *recall, int B, int Hq,
                                           int64_t S,
                                           const prism_varlen *varlen);

/* Relative L2 error per query head: for each (b, h) over the valid tokens,
 * ||O - O_ref||_2 / ||O_ref||_2 (0 when both are 0, +inf when only O_ref
 * is).  Summary over the B * Hq heads; per_head (optional) gets
 * [B * Hq] values. */
prism_status prism_ref_output_error(const prism_tensor_view *out,
                                    const prism_tensor_view *ref,
                                    const prism_varlen *varlen,
                                    prism_ref_summary *summary,
                                    double *per_head, char *err,
                                    size_t err_size);

/* One (row, block) membership on which two selections disagree. */
typedef struct prism_selection_diff {
    int b, h, i, j;
    bool in_a, in_b;
} prism_selection_diff;

typedef struct prism_ref_agreement {
    int64_t compared; /* block-causal (row, block) pairs                    */
    int64_t differ;   /* pairs selected by exactly one of the two           */
    double share;     /* (compared - differ) / compared; 1 when compared = 0 */
} prism_ref_agreement;

/* Compares two selections of the same geometry.  The first max_diffs
 * differing memberships, in row-major order, go to diffs (may be NULL). */
prism_status prism_ref_selection_agreement(const prism_selection *a,
                                           const prism_selection *b,
                                           prism_ref_agreement *out,
                                           prism_selection_diff *diffs,
                                           int max_diffs, char *err,
                                           size_t err_size);

#ifdef __cplusplus
}
#endif
#endif /* PRISM_REFERENCE_H */
