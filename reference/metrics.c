/*
 * metrics.c - the numbers that say how good a selection is.
 *
 *  density    selected / block-causal blocks (the work a sparse kernel does
 *             relative to dense causal attention)
 *  recall     per query token, the share of its dense softmax mass inside
 *             its selected blocks (computed by prism_ref_attention's recall
 *             option during the dense run; summarised here)
 *  error      relative L2 error of a sparse output against the dense one,
 *             per (sequence, query head)
 *  agreement  how many (row, block) memberships two selections share, and
 *             which differ: the check between a GPU estimation kernel and
 *             this reference, where rounding may flip a borderline block
 *
 * Only valid rows and tokens count: ragged batches leave padding rows and
 * tokens that are not part of any sequence.
 */
#include "reference/ref_internal.h"

#include <math.h>
#include <stdlib.h>

double prism_ref_density(const prism_selection *sel, double *per_head) {
    if (!sel || !sel->counts || !sel->seq_nq)
        return 0.0;
    int64_t selected = 0, allowed = 0;
    for (int h = 0; h < sel->Hq; h++) {
        int64_t head_selected = 0, head_allowed = 0;
        for (int b = 0; b < sel->B; b++)
            for (int i = 0; i < sel->seq_nq[b]; i++) {
                size_t row = ((size_t)b * sel->Hq + h) * sel->nq + i;
                head_selected += sel->counts[row];
                head_allowed += prism_selection_allowed(sel, b, i);
            }
        if (per_head)
            per_head[h] = head_allowed
                              ? (double)head_selected / (double)head_allowed
                              : 0.0;
        selected += head_selected;
        allowed += head_allowed;
    }
    return allowed ? (double)selected / (double)allowed : 0.0;
}

typedef struct summary_acc {
    double sum, min, max;
    int64_t count;
} summary_acc;

static void acc_add(summary_acc *a, double x) {
    if (a->count == 0 || x < a->min)
        a->min = x;
    if (a->count == 0 || x > a->max)
        a->max = x;
    a->sum += x;
    a->count++;
}

static prism_ref_summary acc_done(const summary_acc *a) {
    prism_ref_summary s = {0.0, 0.0, 0.0, a->count};
    if (a->count) {
        s.mean = a->sum / (double)a->count;
        s.min = a->min;
        s.max = a->max;
    }
    return s;
}

prism_ref_summary prism_ref_summarize(const float *values, int64_t n) {
    summary_acc a = {0};
    for (int64_t i = 0; values && i < n; i++)
        acc_add(&a, values[i]);
    return acc_done(&a);
}

prism_ref_summary prism_ref_recall_summary(const float *recall, int B, int Hq,
                                           int64_t S,
                                           const prism_varlen *varlen) {
    summary_acc a = {0};
    if (!recall)
        return acc_done(&a);
    int nseq = varlen ? varlen->num_seqs : B;
    for (int b = 0; b < nseq; b++) {
        int64_t view_b = varlen ? 0 : b;
        int64_t start = varlen ? varlen->cu_seqlens_q[b] : 0;
        int64_t len = varlen ? varlen->cu_seqlens_q[b + 1] - start : S;
        for (int h = 0; h < Hq; h++)
            for (int64_t t = 0; t < len; t++)
                acc_add(&a, recall[((size_t)view_b * Hq + h) * S + start + t]);
    }
    return acc_done(&a);
}

prism_status prism_ref_output_error(const prism_tensor_view *out,
                                    const prism_tensor_view *ref,
                                    const prism_varlen *varlen,
                                    prism_ref_summary *summary,
                                    double *per_head, char *err,
                                    size_t err_size) {
    prism_status st = ref_check_view(out, "output", err, err_size);
    if (st == PRISM_OK)
        st = ref_check_view(ref, "reference output", err, err_size);
    if (st != PRISM_OK)
        return st;
    for (int a = 0; a < 4; a++)
        if (out->shape[a] != ref->shape[a])
            return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                                "output error: shapes differ in dimension %d",
                                a);
    ref_span *spans = NULL;
    int nseq = 0;
    st = ref_spans_make(ref, varlen ? varlen->cu_seqlens_q : NULL,
                        varlen ? varlen->num_seqs : 0, "output", &spans, &nseq,
                        err, err_size);
    if (st != PRISM_OK)
        return st;
    summary_acc a = {0};
    int64_t H = ref->shape[1], D = ref->shape[3];
    for (int b = 0; b < nseq; b++)
        for (int64_t h = 0; h < H; h++) {
            double diff2 = 0.0, ref2 = 0.0;
            for (int64_t t = 0; t < spans[b].len; t++)
                for (int64_t d = 0; d < D; d++) {
                    int64_t s = spans[b].start + t;
                    double r = prism_view_load(ref, spans[b].view_b, h, s, d);
                    double o = prism_view_load(out, spans[b].view_b, h, s, d);
                    diff2 += (o - r) * (o - r);
                    ref2 += r * r;
                }
            double rel = ref2 > 0.0    ? sqrt(diff2 / ref2)
                         : diff2 > 0.0 ? INFINITY
                                       : 0.0;
            if (per_head)
                per_head[(size_t)b * H + h] = rel;
            acc_add(&a, rel);
        }
    free(spans);
    if (summary)
        *summary = acc_done(&a);
    return PRISM_OK;
}

prism_status prism_ref_selection_agreement(const prism_selection *a,
                                           const prism_selection *b,
                                           prism_ref_agreement *out,
                                           prism_selection_diff *diffs,
                                           int max_diffs, char *err,
                                           size_t err_size) {
    if (!a || !b || !out)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "agreement: NULL argument");
    prism_status st = prism_selection_validate(a, err, err_size);
    if (st == PRISM_OK)
        st = prism_selection_validate(b, err, err_size);
    if (st != PRISM_OK)
        return st;
    bool same = a->B == b->B && a->Hq == b->Hq && a->nq == b->nq &&
                a->nk == b->nk && a->block_size == b->block_size;
    for (int s = 0; same && s < a->B; s++)
        same = a->seq_nq[s] == b->seq_nq[s] && a->seq_nk[s] == b->seq_nk[s];
    if (!same)
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "agreement: the selections have different "
                            "geometry (B, Hq, blocks or block size)");
    prism_ref_agreement r = {0, 0, 1.0};
    int listed = 0;
    for (int s = 0; s < a->B; s++)
        for (int h = 0; h < a->Hq; h++)
            for (int i = 0; i < a->seq_nq[s]; i++) {
                size_t row = ((size_t)s * a->Hq + h) * a->nq + i;
                const int32_t *ia = a->indices + row * a->nk;
                const int32_t *ib = b->indices + row * b->nk;
                int na = a->counts[row], nb = b->counts[row];
                int allowed = prism_selection_allowed(a, s, i);
                int pa = 0, pb = 0;
                for (int j = 0; j < allowed; j++) {
                    bool in_a = pa < na && ia[pa] == j;
                    bool in_b = pb < nb && ib[pb] == j;
                    pa += in_a;
                    pb += in_b;
                    if (in_a == in_b)
                        continue;
                    r.differ++;
                    if (diffs && listed < max_diffs)
                        diffs[listed++] =
                            (prism_selection_diff){s, h, i, j, in_a, in_b};
                }
                r.compared += allowed;
            }
    if (r.compared)
        r.share = (double)(r.compared - r.differ) / (double)r.compared;
    *out = r;
    return PRISM_OK;
}
