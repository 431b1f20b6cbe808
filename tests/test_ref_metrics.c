/*
 * test_ref_metrics.c - density, recall summaries, output error and
 * selection agreement on hand examples, including ragged batches whose
 * padding must not count.
 */
#include "test_ref_common.h"

#include <criterion/criterion.h>

/* B=1, Hq=2, nq=nk=2: row 0 allows block 0, row 1 blocks 0 and 1. */
static void two_heads(prism_selection *sel, const int *rows[4],
                      const int counts[4]) {
    cr_assert_eq(prism_selection_alloc(sel, 1, 2, 2, 2, 4), PRISM_OK);
    for (int r = 0; r < 4; r++) {
        sel->counts[r] = counts[r];
        for (int c = 0; c < counts[r]; c++)
            sel->indices[r * 2 + c] = rows[r][c];
    }
}

Test(ref_metrics, density_overall_and_per_head) {
    /* head 0: {0}, {1} -> 2 of 3; head 1: {0}, {0, 1} -> 3 of 3 */
    prism_selection sel;
    two_heads(
        &sel,
        (const int *[]){(int[]){0}, (int[]){1}, (int[]){0}, (int[]){0, 1}},
        (int[]){1, 1, 1, 2});
    double per_head[2];
    cr_assert_float_eq(prism_ref_density(&sel, per_head), 5.0 / 6.0, 1e-12);
    cr_assert_float_eq(per_head[0], 2.0 / 3.0, 1e-12);
    cr_assert_float_eq(per_head[1], 1.0, 1e-12);
    prism_selection_free(&sel);
    cr_assert_eq(prism_ref_density(&sel, NULL), 0.0);
}

Test(ref_metrics, density_ignores_padding_rows_of_ragged_batches) {
    int32_t cu_q[] = {0, 4, 20}, cu_k[] = {0, 4, 20};
    prism_varlen vl = {2, cu_q, cu_k};
    prism_selection sel;
    cr_assert_eq(prism_selection_alloc_for(&sel, 0, 1, 0, 0, &vl, 4, NULL, 0),
                 PRISM_OK);
    /* seq 0: one row (1 block); seq 1: rows allow 1, 2, 3, 4 blocks */
    prism_selection_fill_full(&sel);
    sel.counts[4 + 3] = 2; /* seq 1, last row keeps {0, 1} of 4 */
    cr_assert_float_eq(prism_ref_density(&sel, NULL), 9.0 / 11.0, 1e-12);
    prism_selection_free(&sel);
}

Test(ref_metrics, summaries) {
    float v[] = {0.5f, 1.0f, 0.25f, 0.75f};
    prism_ref_summary s = prism_ref_summarize(v, 4);
    cr_assert_float_eq(s.mean, 0.625, 1e-12);
    cr_assert_eq(s.min, 0.25);
    cr_assert_eq(s.max, 1.0);
    cr_assert_eq(s.count, 4);
    s = prism_ref_summarize(v, 0);
    cr_assert_eq(s.count, 0);
    cr_assert_eq(s.mean, 0.0);
    /* ragged: sequences of 2 and 3 tokens in a view of 6; token 5 is not
     * part of any sequence and must not count */
    float recall[] = {1.0f, 0.5f, 0.25f, 0.75f, 1.0f, -99.0f};
    int32_t cu_q[] = {0, 2, 5}, cu_k[] = {0, 2, 5};
    prism_varlen vl = {2, cu_q, cu_k};
    s = prism_ref_recall_summary(recall, 1, 1, 6, &vl);
    cr_assert_eq(s.count, 5);
    cr_assert_float_eq(s.mean, 0.7, 1e-7);
    cr_assert_eq(s.min, 0.25);
    /* regular batch: B=2, Hq=1, S=3 */
    s = prism_ref_recall_summary(recall, 2, 1, 3, NULL);
    cr_assert_eq(s.count, 6);
    cr_assert_eq(s.min, -99.0);
}

Test(ref_metrics, relative_output_error_per_head) {
    /* [B=1, H=3, S=1, D=2]: head 0 ref (3, 4) out (3, 4.5) -> 0.1;
     * head 1 ref (1, 0) out (0, 0) -> 1; head 2 both zero -> 0 */
    float ref[] = {3, 4, 1, 0, 0, 0};
    float out[] = {3, 4.5f, 0, 0, 0, 0};
    prism_tensor_view rv = prism_view_bhsd(ref, PRISM_DTYPE_FP32, 1, 3, 1, 2);
    prism_tensor_view ov = prism_view_bhsd(out, PRISM_DTYPE_FP32, 1, 3, 1, 2);
    prism_ref_summary s;
    double per_head[3];
    cr_assert_eq(prism_ref_output_error(&ov, &rv, NULL, &s, per_head, NULL, 0),
                 PRISM_OK);
    cr_assert_float_eq(per_head[0], 0.1, 1e-7);
    cr_assert_float_eq(per_head[1], 1.0, 1e-7);
    cr_assert_eq(per_head[2], 0.0);
    cr_assert_float_eq(s.mean, 1.1 / 3.0, 1e-7);
    cr_assert_float_eq(s.max, 1.0, 1e-7);
    cr_assert_eq(s.count, 3);
    /* a zero reference with a non-zero output is infinitely wrong */
    out[4] = 1.0f;
    cr_assert_eq(prism_ref_output_error(&ov, &rv, NULL, &s, per_head, NULL, 0),
                 PRISM_OK);
    cr_assert(isinf(per_head[2]));
    prism_tensor_view short_ref = rv;
    short_ref.shape[1] = 2;
    cr_assert_eq(
        prism_ref_output_error(&ov, &short_ref, NULL, &s, NULL, NULL, 0),
        PRISM_ERR_BAD_SHAPE);
}

Test(ref_metrics, output_error_of_a_ragged_batch_skips_padding) {
    /* one head, D=1, view of 4 tokens, sequences {0} and {1, 2} */
    float ref[] = {1, 2, 2, 7};
    float out[] = {1, 2, 3, -5};
    int32_t cu_q[] = {0, 1, 3}, cu_k[] = {0, 1, 3};
    prism_varlen vl = {2, cu_q, cu_k};
    prism_tensor_view rv = prism_view_bhsd(ref, PRISM_DTYPE_FP32, 1, 1, 4, 1);
    prism_tensor_view ov = prism_view_bhsd(out, PRISM_DTYPE_FP32, 1, 1, 4, 1);
    prism_ref_summary s;
    double per_seq[2];
    cr_assert_eq(prism_ref_output_error(&ov, &rv, &vl, &s, per_seq, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(per_seq[0], 0.0);
    cr_assert_float_eq(per_seq[1], 1.0 / sqrt(8.0), 1e-7);
    cr_assert_eq(s.count, 2);
}

Test(ref_metrics, agreement_counts_and_lists_differences) {
    prism_selection a, b;
    /* a: head 0 {0}, {0, 1}; head 1 {0}, {1}
     * b: head 0 {0}, {1};    head 1 {0}, {0, 1} */
    two_heads(
        &a, (const int *[]){(int[]){0}, (int[]){0, 1}, (int[]){0}, (int[]){1}},
        (int[]){1, 2, 1, 1});
    two_heads(
        &b, (const int *[]){(int[]){0}, (int[]){1}, (int[]){0}, (int[]){0, 1}},
        (int[]){1, 1, 1, 2});
    prism_ref_agreement ag;
    prism_selection_diff diffs[4];
    cr_assert_eq(prism_ref_selection_agreement(&a, &b, &ag, diffs, 4, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(ag.compared, 6);
    cr_assert_eq(ag.differ, 2);
    cr_assert_float_eq(ag.share, 4.0 / 6.0, 1e-12);
    cr_assert(diffs[0].b == 0 && diffs[0].h == 0 && diffs[0].i == 1 &&
              diffs[0].j == 0 && diffs[0].in_a && !diffs[0].in_b);
    cr_assert(diffs[1].h == 1 && diffs[1].i == 1 && diffs[1].j == 0 &&
              !diffs[1].in_a && diffs[1].in_b);
    /* only the first max_diffs are listed, all are counted */
    cr_assert_eq(prism_ref_selection_agreement(&a, &b, &ag, diffs, 1, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(ag.differ, 2);
    cr_assert_eq(prism_ref_selection_agreement(&a, &a, &ag, NULL, 0, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(ag.differ, 0);
    cr_assert_eq(ag.share, 1.0);
    prism_selection c;
    cr_assert_eq(prism_selection_alloc(&c, 1, 2, 2, 3, 4), PRISM_OK);
    cr_assert_eq(prism_ref_selection_agreement(&a, &c, &ag, NULL, 0, NULL, 0),
                 PRISM_ERR_BAD_SHAPE);
    prism_selection_free(&a);
    prism_selection_free(&b);
    prism_selection_free(&c);
}
