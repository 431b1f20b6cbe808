/*
 * ref_internal.h - helpers shared by the files of reference/ only.
 *
 * The reference handles regular and ragged batches with one code path: the
 * public entry points turn (views, prism_varlen) into a list of sequences,
 * each naming its batch entry in the views and its token ranges, and the
 * stage code loops over that list.
 */
#ifndef PRISM_REF_INTERNAL_H
#define PRISM_REF_INTERNAL_H

#include "base/base.h"
#include "reference/reference.h"
#include "base/threadpool.h"

/* Tokens [start, start + len) of batch entry view_b of a view. */
typedef struct ref_span {
    int64_t view_b, start, len;
} ref_span;

/* One sequence: its queries and its keys/values. */
typedef struct ref_seq {
    ref_span q, k;
} ref_seq;

/* Checks one view: known dtype, non-NULL data, positive shape, strides >= 0.
 * name is used in the message ("Q", "K"...). */
prism_status ref_check_view(const prism_tensor_view *view, const char *name,
                            char *err, size_t err_size);

/* Spans of a regular batch (cu == NULL: one per batch entry of length S) or
 * of a ragged one (view B must be 1, cu[0] = 0, non-decreasing, cu[n] <= S).
 * *out is malloc'd. */
prism_status ref_spans_make(const prism_tensor_view *view, const int32_t *cu,
                            int num_seqs, const char *name, ref_span **out,
                            int *count, char *err, size_t err_size);

/* Sequences of Q and K (V shares K's spans): checks head/dim compatibility
 * is the caller's; this checks Sk >= Sq for every sequence and, when
 * block_size > 0, that Sk - Sq is a multiple of it.  *out is malloc'd. */
prism_status ref_seqs_make(const prism_tensor_view *q,
                           const prism_tensor_view *k,
                           const prism_varlen *varlen, int block_size,
                           ref_seq **out, int *count, char *err,
                           size_t err_size);

/* Pools the spans (see prism_ref_pool). */
prism_status ref_pool_spans(const prism_tensor_view *x, const ref_span *spans,
                            int n, int block_size, int threads,
                            prism_pooled *out, char *err, size_t err_size);

/* Checks that a selection matches the sequences (B, blocks per sequence). */
prism_status ref_selection_matches(const prism_selection *sel,
                                   const ref_seq *seqs, int n, int Hq,
                                   char *err, size_t err_size);

static inline int64_t ref_ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

#endif /* PRISM_REF_INTERNAL_H */
