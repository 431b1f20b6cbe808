/*
 * tensor.c - strided tensor views, sequence geometry and the selection
 * container of the reference.
 *
 * Views exist so that the oracle never assumes a memory layout: every load
 * goes through the four strides and converts through half.h, the same
 * rounding the GPU uses.  The sequence helpers turn a regular or ragged
 * batch into one list of (batch entry, token range) pairs, so that every
 * later stage has a single code path.  The selection allocator and
 * validator implement the format documented at the top of reference.h.
 */
#include "reference/ref_internal.h"

#include "base/half.h"

#include <stdlib.h>
#include <string.h>

prism_tensor_view prism_view_bhsd(void *data, prism_dtype dtype, int64_t B,
                                  int64_t H, int64_t S, int64_t D) {
    prism_tensor_view v = {data, dtype, {B, H, S, D}, {H * S * D, S * D, D, 1}};
    return v;
}

prism_tensor_view prism_view_bshd(void *data, prism_dtype dtype, int64_t B,
                                  int64_t H, int64_t S, int64_t D) {
    prism_tensor_view v = {data, dtype, {B, H, S, D}, {S * H * D, D, H * D, 1}};
    return v;
}

size_t prism_dtype_size(prism_dtype dtype) {
    switch (dtype) {
    case PRISM_DTYPE_FP32: return 4;
    case PRISM_DTYPE_BF16: return 2;
    case PRISM_DTYPE_FP16: return 2;
    }
    return 0;
}

int64_t prism_view_span(const prism_tensor_view *view) {
    int64_t span = 1;
    for (int a = 0; a < 4; a++) {
        if (view->shape[a] <= 0)
            return 0;
        span += (view->shape[a] - 1) * view->stride[a];
    }
    return span;
}

static inline int64_t view_offset(const prism_tensor_view *view, int64_t b,
                                  int64_t h, int64_t s, int64_t d) {
    return b * view->stride[0] + h * view->stride[1] + s * view->stride[2] +
           d * view->stride[3];
}

float prism_view_load(const prism_tensor_view *view, int64_t b, int64_t h,
                      int64_t s, int64_t d) {
    int64_t at = view_offset(view, b, h, s, d);
    switch (view->dtype) {
    case PRISM_DTYPE_FP32: return ((const float *)view->data)[at];
    case PRISM_DTYPE_BF16:
        return prism_bf16_to_f32(((const uint16_t *)view->data)[at]);
    case PRISM_DTYPE_FP16:
        return prism_fp16_to_f32(((const uint16_t *)view->data)[at]);
    }
    return 0.0f;
}

void prism_view_store(const prism_tensor_view *view, int64_t b, int64_t h,
                      int64_t s, int64_t d, float value) {
    int64_t at = view_offset(view, b, h, s, d);
    switch (view->dtype) {
    case PRISM_DTYPE_FP32: ((float *)view->data)[at] = value; break;
    case PRISM_DTYPE_BF16:
        ((uint16_t *)view->data)[at] = prism_f32_to_bf16(value);
        break;
    case PRISM_DTYPE_FP16:
        ((uint16_t *)view->data)[at] = prism_f32_to_fp16(value);
        break;
    }
}

prism_status ref_check_view(const prism_tensor_view *view, const char *name,
                            char *err, size_t err_size) {
    if (!view || !view->data)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "%s: NULL view or data pointer", name);
    if (prism_dtype_size(view->dtype) == 0)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "%s: unknown dtype %d", name, (int)view->dtype);
    for (int a = 0; a < 4; a++) {
        if (view->shape[a] <= 0 || view->shape[a] > INT32_MAX)
            return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                                "%s: dimension %d is %lld; must be in "
                                "[1, 2^31)",
                                name, a, (long long)view->shape[a]);
        if (view->stride[a] < 0)
            return prism_errorf(err, err_size, PRISM_ERR_BAD_STRIDE,
                                "%s: stride %d is negative", name, a);
    }
    return PRISM_OK;
}

prism_status prism_view_copy(const prism_tensor_view *dst,
                             const prism_tensor_view *src, char *err,
                             size_t err_size) {
    prism_status st = ref_check_view(src, "source", err, err_size);
    if (st == PRISM_OK)
        st = ref_check_view(dst, "destination", err, err_size);
    if (st != PRISM_OK)
        return st;
    for (int a = 0; a < 4; a++)
        if (dst->shape[a] != src->shape[a])
            return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                                "copy: shapes differ in dimension %d", a);
    for (int64_t b = 0; b < src->shape[0]; b++)
        for (int64_t h = 0; h < src->shape[1]; h++)
            for (int64_t s = 0; s < src->shape[2]; s++)
                for (int64_t d = 0; d < src->shape[3]; d++)
                    prism_view_store(dst, b, h, s, d,
                                     prism_view_load(src, b, h, s, d));
    return PRISM_OK;
}

/* ------------------------------------------------------------------------ */
/* Sequences                                                                */
/* ------------------------------------------------------------------------ */

prism_status ref_spans_make(const prism_tensor_view *view, const int32_t *cu,
                            int num_seqs, const char *name, ref_span **out,
                            int *count, char *err, size_t err_size) {
    *out = NULL;
    *count = 0;
    int n = cu ? num_seqs : (int)view->shape[0];
    if (cu && num_seqs < 1)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "%s: a ragged batch needs num_seqs >= 1", name);
    if (cu && view->shape[0] != 1)
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "%s: a ragged batch needs a view with B = 1, "
                            "got B = %lld",
                            name, (long long)view->shape[0]);
    if (cu && cu[0] != 0)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "%s: cu_seqlens[0] must be 0, got %d", name,
                            (int)cu[0]);
    ref_span *spans = calloc((size_t)n, sizeof *spans);
    if (!spans)
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "%s: out of memory for %d sequences", name, n);
    for (int b = 0; b < n; b++) {
        if (!cu) {
            spans[b] = (ref_span){b, 0, view->shape[2]};
            continue;
        }
        if (cu[b + 1] < cu[b] || cu[b + 1] > view->shape[2]) {
            free(spans);
            return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                                "%s: cu_seqlens[%d] = %d must be >= "
                                "cu_seqlens[%d] and <= the view's %lld tokens",
                                name, b + 1, (int)cu[b + 1], b,
                                (long long)view->shape[2]);
        }
        spans[b] = (ref_span){0, cu[b], cu[b + 1] - cu[b]};
    }
    *out = spans;
    *count = n;
    return PRISM_OK;
}

prism_status ref_seqs_make(const prism_tensor_view *q,
                           const prism_tensor_view *k,
                           const prism_varlen *varlen, int block_size,
                           ref_seq **out, int *count, char *err,
                           size_t err_size) {
    *out = NULL;
    *count = 0;
    if (varlen && (!varlen->cu_seqlens_q || !varlen->cu_seqlens_k))
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "varlen: NULL cu_seqlens array");
    if (!varlen && q->shape[0] != k->shape[0])
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "Q has batch %lld but K has %lld",
                            (long long)q->shape[0], (long long)k->shape[0]);
    int nseq = varlen ? varlen->num_seqs : 0;
    ref_span *qs = NULL, *ks = NULL;
    int nq = 0, nk = 0;
    prism_status st = ref_spans_make(q, varlen ? varlen->cu_seqlens_q : NULL,
                                     nseq, "Q", &qs, &nq, err, err_size);
    if (st != PRISM_OK)
        goto done;
    st = ref_spans_make(k, varlen ? varlen->cu_seqlens_k : NULL, nseq, "K", &ks,
                        &nk, err, err_size);
    if (st != PRISM_OK)
        goto done;
    ref_seq *seqs = calloc((size_t)nq, sizeof *seqs);
    if (!seqs) {
        st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                          "out of memory for %d sequences", nq);
        goto done;
    }
    for (int b = 0; b < nq; b++) {
        seqs[b].q = qs[b];
        seqs[b].k = ks[b];
        int64_t sq = qs[b].len, sk = ks[b].len;
        if (sk < sq) {
            st = prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                              "sequence %d has %lld queries but only %lld "
                              "keys; the queries are the last Sq positions, "
                              "so Sk >= Sq is required",
                              b, (long long)sq, (long long)sk);
            free(seqs);
            goto done;
        }
        if (block_size > 0 && (sk - sq) % block_size != 0) {
            st = prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                              "sequence %d: Sk - Sq = %lld is not a multiple "
                              "of the block size %d (the block-causal mask "
                              "needs aligned query and key blocks)",
                              b, (long long)(sk - sq), block_size);
            free(seqs);
            goto done;
        }
    }
    *out = seqs;
    *count = nq;
done:
    free(qs);
    free(ks);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Selection                                                                */
/* ------------------------------------------------------------------------ */

prism_status prism_selection_alloc(prism_selection *sel, int B, int Hq, int nq,
                                   int nk, int block_size) {
    memset(sel, 0, sizeof *sel);
    if (B < 1 || Hq < 1 || nq < 0 || nk < 0 || block_size < 1)
        return PRISM_ERR_INVALID_ARGUMENT;
    size_t rows = (size_t)B * (size_t)Hq * (size_t)nq;
    size_t entries = rows * (size_t)nk;
    sel->counts = calloc(rows > 0 ? rows : 1, sizeof *sel->counts);
    sel->indices = calloc(entries > 0 ? entries : 1, sizeof *sel->indices);
    sel->seq_nq = calloc((size_t)B, sizeof *sel->seq_nq);
    sel->seq_nk = calloc((size_t)B, sizeof *sel->seq_nk);
    if (!sel->counts || !sel->indices || !sel->seq_nq || !sel->seq_nk) {
        prism_selection_free(sel);
        return PRISM_ERR_OUT_OF_MEMORY;
    }
    sel->B = B;
    sel->Hq = Hq;
    sel->nq = nq;
    sel->nk = nk;
    sel->block_size = block_size;
    for (int b = 0; b < B; b++) {
        sel->seq_nq[b] = nq;
        sel->seq_nk[b] = nk;
    }
    return PRISM_OK;
}

prism_status prism_selection_alloc_for(prism_selection *sel, int B, int Hq,
                                       int64_t Sq, int64_t Sk,
                                       const prism_varlen *varlen,
                                       int block_size, char *err,
                                       size_t err_size) {
    memset(sel, 0, sizeof *sel);
    if (block_size < 1 || Hq < 1)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "selection: block size %d and Hq %d must be >= 1",
                            block_size, Hq);
    if (varlen) {
        if (!varlen->cu_seqlens_q || !varlen->cu_seqlens_k ||
            varlen->num_seqs < 1)
            return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                                "selection: ragged batch without sequences");
        B = varlen->num_seqs;
    }
    int64_t max_q = 0, max_k = 0;
    for (int b = 0; varlen && b < B; b++) {
        int64_t lq = varlen->cu_seqlens_q[b + 1] - varlen->cu_seqlens_q[b];
        int64_t lk = varlen->cu_seqlens_k[b + 1] - varlen->cu_seqlens_k[b];
        if (lq < 0 || lk < 0)
            return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                                "selection: cu_seqlens decrease at %d", b);
        max_q = lq > max_q ? lq : max_q;
        max_k = lk > max_k ? lk : max_k;
    }
    if (!varlen) {
        if (Sq < 0 || Sk < 0 || B < 1)
            return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                                "selection: bad shape B=%d Sq=%lld Sk=%lld", B,
                                (long long)Sq, (long long)Sk);
        max_q = Sq;
        max_k = Sk;
    }
    int64_t nq = ref_ceil_div(max_q, block_size);
    int64_t nk = ref_ceil_div(max_k, block_size);
    if (nq > INT32_MAX || nk > INT32_MAX)
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "selection: too many blocks");
    prism_status st =
        prism_selection_alloc(sel, B, Hq, (int)nq, (int)nk, block_size);
    if (st != PRISM_OK)
        return prism_errorf(err, err_size, st,
                            "selection: out of memory for %d x %d x %lld x "
                            "%lld entries",
                            B, Hq, (long long)nq, (long long)nk);
    for (int b = 0; varlen && b < B; b++) {
        sel->seq_nq[b] = (int32_t)ref_ceil_div(
            varlen->cu_seqlens_q[b + 1] - varlen->cu_seqlens_q[b], block_size);
        sel->seq_nk[b] = (int32_t)ref_ceil_div(
            varlen->cu_seqlens_k[b + 1] - varlen->cu_seqlens_k[b], block_size);
    }
    return PRISM_OK;
}

void prism_selection_free(prism_selection *sel) {
    if (!sel)
        return;
    free(sel->counts);
    free(sel->indices);
    free(sel->seq_nq);
    free(sel->seq_nk);
    memset(sel, 0, sizeof *sel);
}

int prism_selection_allowed(const prism_selection *sel, int b, int i) {
    int snq = sel->seq_nq[b], snk = sel->seq_nk[b];
    if (i < 0 || i >= snq)
        return 0;
    int64_t allowed = (int64_t)i + snk - snq + 1;
    if (allowed < 0)
        allowed = 0;
    if (allowed > snk)
        allowed = snk;
    return (int)allowed;
}

void prism_selection_fill_full(prism_selection *sel) {
    for (int b = 0; b < sel->B; b++)
        for (int h = 0; h < sel->Hq; h++)
            for (int i = 0; i < sel->nq; i++) {
                size_t row = ((size_t)b * sel->Hq + h) * sel->nq + i;
                int allowed = prism_selection_allowed(sel, b, i);
                sel->counts[row] = allowed;
                for (int j = 0; j < allowed; j++)
                    sel->indices[row * sel->nk + j] = j;
            }
}

prism_status prism_selection_validate(const prism_selection *sel, char *err,
                                      size_t err_size) {
    if (!sel || !sel->counts || !sel->indices || !sel->seq_nq || !sel->seq_nk)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "selection: not allocated");
    for (int b = 0; b < sel->B; b++)
        if (sel->seq_nq[b] < 0 || sel->seq_nq[b] > sel->nq ||
            sel->seq_nk[b] < 0 || sel->seq_nk[b] > sel->nk)
            return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                                "selection: sequence %d has %d x %d blocks, "
                                "beyond %d x %d",
                                b, sel->seq_nq[b], sel->seq_nk[b], sel->nq,
                                sel->nk);
    for (int b = 0; b < sel->B; b++)
        for (int h = 0; h < sel->Hq; h++)
            for (int i = 0; i < sel->nq; i++) {
                size_t row = ((size_t)b * sel->Hq + h) * sel->nq + i;
                int count = sel->counts[row];
                int allowed = prism_selection_allowed(sel, b, i);
                if (count < 0 || count > allowed)
                    return prism_errorf(err, err_size,
                                        PRISM_ERR_INVALID_ARGUMENT,
                                        "selection: row (b=%d, h=%d, i=%d) "
                                        "has %d blocks; allowed 0..%d",
                                        b, h, i, count, allowed);
                const int32_t *idx = sel->indices + row * sel->nk;
                for (int c = 0; c < count; c++) {
                    if (idx[c] < 0 || idx[c] >= allowed ||
                        (c > 0 && idx[c] <= idx[c - 1]))
                        return prism_errorf(
                            err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "selection: row (b=%d, h=%d, i=%d) entry %d = %d "
                            "is not ascending within [0, %d)",
                            b, h, i, c, (int)idx[c], allowed);
                }
            }
    return PRISM_OK;
}

prism_status ref_selection_matches(const prism_selection *sel,
                                   const ref_seq *seqs, int n, int Hq,
                                   char *err, size_t err_size) {
    if (!sel || !sel->counts || !sel->indices || !sel->seq_nq || !sel->seq_nk)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "selection: not allocated");
    if (sel->B != n || sel->Hq != Hq)
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "selection is for B=%d, Hq=%d; inputs have "
                            "B=%d, Hq=%d",
                            sel->B, sel->Hq, n, Hq);
    for (int b = 0; b < n; b++) {
        int64_t snq = ref_ceil_div(seqs[b].q.len, sel->block_size);
        int64_t snk = ref_ceil_div(seqs[b].k.len, sel->block_size);
        if (snq != sel->seq_nq[b] || snk != sel->seq_nk[b] || snq > sel->nq ||
            snk > sel->nk)
            return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                                "selection: sequence %d has %lld x %lld "
                                "blocks of %d tokens but the selection says "
                                "%d x %d",
                                b, (long long)snq, (long long)snk,
                                sel->block_size, sel->seq_nq[b],
                                sel->seq_nk[b]);
    }
    return PRISM_OK;
}
