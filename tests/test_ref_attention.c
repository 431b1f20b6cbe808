/*
 * test_ref_attention.c - block-sparse attention of the CPU reference:
 * a hand example, equality with the direct dense implementation when every
 * block is selected, an independent brute-force check of a sparse
 * selection, GQA head mapping, layouts, half-precision inputs and outputs,
 * ragged batches, LSE and the recall option.
 */
#include "test_ref_common.h"

#include "base/half.h"

#include <criterion/criterion.h>

/* Brute force over BHSD fp32 arrays, in double: keys of the blocks that
 * sel selects for the query's row (every causal key when sel is NULL). */
static void brute_force(const float *q, const float *k, const float *v, int B,
                        int Hq, int Hkv, int Sq, int Sk, int D,
                        const prism_selection *sel, double *out, double *lse) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++)
            for (int t = 0; t < Sq; t++) {
                int kvh = h / (Hq / Hkv), pos = t + Sk - Sq;
                const float *qt = q + (((size_t)b * Hq + h) * Sq + t) * D;
                double mx = -INFINITY, *w = calloc((size_t)Sk, sizeof *w);
                bool *use = calloc((size_t)Sk, sizeof *use);
                for (int s = 0; s <= pos; s++) {
                    use[s] = true;
                    if (sel) {
                        size_t row = ((size_t)b * Hq + h) * sel->nq +
                                     t / sel->block_size;
                        use[s] = false;
                        for (int c = 0; c < sel->counts[row]; c++)
                            if (sel->indices[row * sel->nk + c] ==
                                s / sel->block_size)
                                use[s] = true;
                    }
                    if (!use[s])
                        continue;
                    const float *ks =
                        k + (((size_t)b * Hkv + kvh) * Sk + s) * D;
                    double dot = 0;
                    for (int d = 0; d < D; d++)
                        dot += (double)qt[d] * ks[d];
                    w[s] = dot / sqrt((double)D);
                    mx = w[s] > mx ? w[s] : mx;
                }
                double sum = 0;
                double *o = out + (((size_t)b * Hq + h) * Sq + t) * D;
                for (int d = 0; d < D; d++)
                    o[d] = 0;
                for (int s = 0; s <= pos; s++) {
                    if (!use[s])
                        continue;
                    double p = exp(w[s] - mx);
                    sum += p;
                    const float *vs =
                        v + (((size_t)b * Hkv + kvh) * Sk + s) * D;
                    for (int d = 0; d < D; d++)
                        o[d] += p * vs[d];
                }
                for (int d = 0; d < D; d++)
                    o[d] = sum > 0 ? o[d] / sum : 0.0;
                if (lse)
                    lse[((size_t)b * Hq + h) * Sq + t] =
                        sum > 0 ? mx + log(sum) : -INFINITY;
                free(w);
                free(use);
            }
}

typedef struct problem {
    int B, Hq, Hkv, Sq, Sk, D, BS;
    float *q, *k, *v, *o;
    float *lse;
    prism_tensor_view qv, kv, vv, ov;
} problem;

static void problem_make(problem *p, int B, int Hq, int Hkv, int Sq, int Sk,
                         int D, int BS, uint64_t seed) {
    *p =
        (problem){B, Hq, Hkv, Sq, Sk, D, BS, 0, 0, 0, 0, 0, {0}, {0}, {0}, {0}};
    p->q = test_random((size_t)B * Hq * Sq * D, seed, 1.5f);
    p->k = test_random((size_t)B * Hkv * Sk * D, seed + 1, 1.5f);
    p->v = test_random((size_t)B * Hkv * Sk * D, seed + 2, 1.0f);
    p->o = calloc((size_t)B * Hq * Sq * D, sizeof *p->o);
    p->lse = calloc((size_t)B * Hq * Sq, sizeof *p->lse);
    p->qv = prism_view_bhsd(p->q, PRISM_DTYPE_FP32, B, Hq, Sq, D);
    p->kv = prism_view_bhsd(p->k, PRISM_DTYPE_FP32, B, Hkv, Sk, D);
    p->vv = prism_view_bhsd(p->v, PRISM_DTYPE_FP32, B, Hkv, Sk, D);
    p->ov = prism_view_bhsd(p->o, PRISM_DTYPE_FP32, B, Hq, Sq, D);
}

static void problem_free(problem *p) {
    free(p->q);
    free(p->k);
    free(p->v);
    free(p->o);
    free(p->lse);
}

static void full_selection(const problem *p, prism_selection *sel) {
    cr_assert_eq(prism_selection_alloc_for(sel, p->B, p->Hq, p->Sq, p->Sk, NULL,
                                           p->BS, NULL, 0),
                 PRISM_OK);
    prism_selection_fill_full(sel);
}

Test(ref_attention, hand_example) {
    /* one query, two keys, D = 2: scores 0 and log 3 -> weights 1/4, 3/4 */
    float q[] = {1, 0};
    float k[] = {0, 0, (float)(log(3.0) * sqrt(2.0)), 0};
    float v[] = {1, 0, 0, 1};
    float o[2], lse;
    prism_tensor_view qv = prism_view_bhsd(q, PRISM_DTYPE_FP32, 1, 1, 1, 2);
    prism_tensor_view kv = prism_view_bhsd(k, PRISM_DTYPE_FP32, 1, 1, 2, 2);
    prism_tensor_view vv = prism_view_bhsd(v, PRISM_DTYPE_FP32, 1, 1, 2, 2);
    prism_tensor_view ov = prism_view_bhsd(o, PRISM_DTYPE_FP32, 1, 1, 1, 2);
    prism_selection sel;
    cr_assert_eq(prism_selection_alloc_for(&sel, 1, 1, 1, 2, NULL, 1, NULL, 0),
                 PRISM_OK);
    prism_selection_fill_full(&sel);
    prism_ref_attention_options opt = {1, 0.0, &lse, 0, NULL, NULL};
    cr_assert_eq(
        prism_ref_attention(&qv, &kv, &vv, NULL, &sel, &opt, &ov, NULL, 0),
        PRISM_OK);
    cr_assert_float_eq(o[0], 0.25, 1e-6);
    cr_assert_float_eq(o[1], 0.75, 1e-6);
    cr_assert_float_eq(lse, log(4.0), 1e-6);
    o[0] = o[1] = lse = 0;
    cr_assert_eq(prism_ref_attention_dense_direct(&qv, &kv, &vv, NULL, 0.0, 1,
                                                  &ov, &lse, NULL, 0),
                 PRISM_OK);
    cr_assert_float_eq(o[0], 0.25, 1e-7);
    cr_assert_float_eq(lse, log(4.0), 1e-7);
    /* only block 1 selected: the query sees key 1 alone */
    sel.counts[0] = 1;
    sel.indices[0] = 1;
    cr_assert_eq(
        prism_ref_attention(&qv, &kv, &vv, NULL, &sel, &opt, &ov, NULL, 0),
        PRISM_OK);
    cr_assert_float_eq(o[0], 0.0, 1e-7);
    cr_assert_float_eq(o[1], 1.0, 1e-7);
    cr_assert_float_eq(lse, log(3.0), 1e-6);
    prism_selection_free(&sel);
}

static void check_full_equals_direct(int Sq, int Sk) {
    problem p;
    problem_make(&p, 2, 4, 2, Sq, Sk, 32, 16, 100 + (uint64_t)Sq);
    prism_selection sel;
    full_selection(&p, &sel);
    prism_ref_attention_options opt = {2, 0.0, p.lse, 0, NULL, NULL};
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &sel, &opt,
                                     &p.ov, NULL, 0),
                 PRISM_OK);
    size_t n = (size_t)p.B * p.Hq * Sq * p.D;
    float *direct = malloc(n * sizeof *direct);
    float *direct_lse = malloc((size_t)p.B * p.Hq * Sq * sizeof *direct_lse);
    prism_tensor_view dv =
        prism_view_bhsd(direct, PRISM_DTYPE_FP32, p.B, p.Hq, Sq, p.D);
    cr_assert_eq(prism_ref_attention_dense_direct(&p.qv, &p.kv, &p.vv, NULL,
                                                  0.0, 2, &dv, direct_lse, NULL,
                                                  0),
                 PRISM_OK);
    cr_assert_lt(test_max_diff(&p.ov, &dv), 1e-6, "Sq=%d Sk=%d: %g", Sq, Sk,
                 test_max_diff(&p.ov, &dv));
    for (size_t i = 0; i < (size_t)p.B * p.Hq * Sq; i++)
        cr_assert_float_eq(p.lse[i], direct_lse[i], 1e-5, "lse %zu", i);
    /* and the direct implementation against the brute force in double */
    double *bf = malloc(n * sizeof *bf);
    brute_force(p.q, p.k, p.v, p.B, p.Hq, p.Hkv, Sq, Sk, p.D, NULL, bf, NULL);
    for (size_t i = 0; i < n; i++)
        cr_assert_float_eq(direct[i], bf[i], 1e-6, "element %zu", i);
    free(bf);
    free(direct);
    free(direct_lse);
    prism_selection_free(&sel);
    problem_free(&p);
}

Test(ref_attention, full_selection_equals_direct_dense) {
    check_full_equals_direct(70, 70); /* partial last block */
    check_full_equals_direct(45, 77); /* Sk - Sq = 32 = 2 blocks */
    check_full_equals_direct(1, 33);  /* a single query (decode-like) */
}

Test(ref_attention, sparse_selection_matches_brute_force) {
    problem p;
    problem_make(&p, 1, 2, 1, 60, 76, 16, 16, 7);
    prism_selection sel;
    full_selection(&p, &sel); /* nq 4, nk 5, row i allows i + 2 blocks */
    /* keep block 0 and the diagonal, plus block 1 on head 1 row 3 */
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) {
            size_t row = (size_t)h * 4 + i;
            int32_t *idx = sel.indices + row * 5;
            int diag = i + 1;
            sel.counts[row] = 2;
            idx[0] = 0;
            idx[1] = diag;
            if (h == 1 && i == 3) {
                idx[1] = 1;
                idx[2] = diag;
                sel.counts[row] = 3;
            }
        }
    prism_ref_attention_options opt = {2, 0.0, p.lse, 0, NULL, NULL};
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &sel, &opt,
                                     &p.ov, NULL, 0),
                 PRISM_OK);
    size_t n = (size_t)2 * 60 * 16;
    double *want = malloc(n * sizeof *want), *want_lse = malloc(120 * 8);
    brute_force(p.q, p.k, p.v, 1, 2, 1, 60, 76, 16, &sel, want, want_lse);
    for (size_t i = 0; i < n; i++)
        cr_assert_float_eq(p.o[i], want[i], 1e-6, "element %zu", i);
    for (size_t i = 0; i < 120; i++)
        cr_assert_float_eq(p.lse[i], want_lse[i], 1e-5, "lse %zu", i);
    free(want);
    free(want_lse);
    prism_selection_free(&sel);
    problem_free(&p);
}

Test(ref_attention, gqa_query_heads_read_their_groups_kv_head) {
    /* Hq = 4, Hkv = 2: V of KV head 0 is 0, of KV head 1 is 1, so heads 0
     * and 1 output 0 and heads 2 and 3 output 1 */
    problem p;
    problem_make(&p, 1, 4, 2, 20, 20, 8, 8, 3);
    for (int s = 0; s < 20 * 8; s++) {
        p.v[s] = 0.0f;
        p.v[20 * 8 + s] = 1.0f;
    }
    prism_selection sel;
    full_selection(&p, &sel);
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &sel, NULL,
                                     &p.ov, NULL, 0),
                 PRISM_OK);
    for (int h = 0; h < 4; h++)
        for (int i = 0; i < 20 * 8; i++)
            cr_assert_float_eq(p.o[h * 20 * 8 + i], h < 2 ? 0.0 : 1.0, 1e-6,
                               "head %d", h);
    prism_selection_free(&sel);
    problem_free(&p);
}

Test(ref_attention, bhsd_and_bshd_give_identical_results) {
    problem p;
    problem_make(&p, 2, 4, 2, 40, 40, 16, 16, 21);
    float *qs = malloc(sizeof(float) * 2 * 4 * 40 * 16);
    float *ks = malloc(sizeof(float) * 2 * 2 * 40 * 16);
    float *vs = malloc(sizeof(float) * 2 * 2 * 40 * 16);
    float *os = malloc(sizeof(float) * 2 * 4 * 40 * 16);
    prism_tensor_view qv = prism_view_bshd(qs, PRISM_DTYPE_FP32, 2, 4, 40, 16);
    prism_tensor_view kv = prism_view_bshd(ks, PRISM_DTYPE_FP32, 2, 2, 40, 16);
    prism_tensor_view vv = prism_view_bshd(vs, PRISM_DTYPE_FP32, 2, 2, 40, 16);
    prism_tensor_view ov = prism_view_bshd(os, PRISM_DTYPE_FP32, 2, 4, 40, 16);
    cr_assert_eq(prism_view_copy(&qv, &p.qv, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&kv, &p.kv, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&vv, &p.vv, NULL, 0), PRISM_OK);
    prism_selection sel;
    full_selection(&p, &sel);
    sel.counts[4] = 1; /* make it sparse somewhere: row (0, 1, 1) = {1} */
    sel.indices[4 * sel.nk] = 1;
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &sel, NULL,
                                     &p.ov, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(
        prism_ref_attention(&qv, &kv, &vv, NULL, &sel, NULL, &ov, NULL, 0),
        PRISM_OK);
    cr_assert_eq(test_max_diff(&p.ov, &ov), 0.0);
    prism_selection_free(&sel);
    free(qs);
    free(ks);
    free(vs);
    free(os);
    problem_free(&p);
}

static void check_half_inputs(prism_dtype dtype) {
    problem p;
    problem_make(&p, 1, 2, 1, 50, 50, 16, 16, 5);
    size_t nq = (size_t)2 * 50 * 16, nk = (size_t)50 * 16;
    uint16_t *qh = malloc(nq * 2), *kh = malloc(nk * 2), *vh = malloc(nk * 2);
    uint16_t *oh = malloc(nq * 2);
    prism_tensor_view qv = prism_view_bhsd(qh, dtype, 1, 2, 50, 16);
    prism_tensor_view kv = prism_view_bhsd(kh, dtype, 1, 1, 50, 16);
    prism_tensor_view vv = prism_view_bhsd(vh, dtype, 1, 1, 50, 16);
    prism_tensor_view ov = prism_view_bhsd(oh, dtype, 1, 2, 50, 16);
    cr_assert_eq(prism_view_copy(&qv, &p.qv, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&kv, &p.kv, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&vv, &p.vv, NULL, 0), PRISM_OK);
    /* the fp32 problem now holds exactly the rounded values */
    cr_assert_eq(prism_view_copy(&p.qv, &qv, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&p.kv, &kv, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&p.vv, &vv, NULL, 0), PRISM_OK);
    prism_selection sel;
    full_selection(&p, &sel);
    cr_assert_eq(
        prism_ref_attention(&qv, &kv, &vv, NULL, &sel, NULL, &ov, NULL, 0),
        PRISM_OK);
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &sel, NULL,
                                     &p.ov, NULL, 0),
                 PRISM_OK);
    /* same arithmetic, then one rounding of the output */
    for (size_t i = 0; i < nq; i++) {
        uint16_t want = dtype == PRISM_DTYPE_BF16 ? prism_f32_to_bf16(p.o[i])
                                                  : prism_f32_to_fp16(p.o[i]);
        cr_assert_eq(oh[i], want, "element %zu", i);
    }
    prism_selection_free(&sel);
    free(qh);
    free(kh);
    free(vh);
    free(oh);
    problem_free(&p);
}

Test(ref_attention, bf16_inputs_and_output) {
    check_half_inputs(PRISM_DTYPE_BF16);
}
Test(ref_attention, fp16_inputs_and_output) {
    check_half_inputs(PRISM_DTYPE_FP16);
}

Test(ref_attention, ragged_batch_equals_separate_sequences) {
    enum { Hq = 4, Hkv = 2, D = 16, BS = 8 };
    int32_t cu_q[] = {0, 13, 13, 43}, cu_k[] = {0, 29, 37, 67};
    /* seq 0: 13 queries / 29 keys; seq 1: no queries / 8 keys;
     * seq 2: 30 / 30 */
    int total_q = 43, total_k = 67;
    float *q = test_random((size_t)total_q * Hq * D, 31, 1.5f);
    float *k = test_random((size_t)total_k * Hkv * D, 32, 1.5f);
    float *v = test_random((size_t)total_k * Hkv * D, 33, 1.0f);
    float *o = calloc((size_t)total_q * Hq * D, sizeof *o);
    float *lse = calloc((size_t)Hq * total_q, sizeof *lse);
    prism_tensor_view qv =
        prism_view_bshd(q, PRISM_DTYPE_FP32, 1, Hq, total_q, D);
    prism_tensor_view kv =
        prism_view_bshd(k, PRISM_DTYPE_FP32, 1, Hkv, total_k, D);
    prism_tensor_view vv =
        prism_view_bshd(v, PRISM_DTYPE_FP32, 1, Hkv, total_k, D);
    prism_tensor_view ov =
        prism_view_bshd(o, PRISM_DTYPE_FP32, 1, Hq, total_q, D);
    prism_varlen vl = {3, cu_q, cu_k};
    prism_selection sel;
    cr_assert_eq(prism_selection_alloc_for(&sel, 0, Hq, 0, 0, &vl, BS, NULL, 0),
                 PRISM_OK);
    prism_selection_fill_full(&sel);
    prism_ref_attention_options opt = {2, 0.0, lse, 0, NULL, NULL};
    cr_assert_eq(
        prism_ref_attention(&qv, &kv, &vv, &vl, &sel, &opt, &ov, NULL, 0),
        PRISM_OK);
    for (int b = 0; b < 3; b++) {
        int sq = cu_q[b + 1] - cu_q[b], sk = cu_k[b + 1] - cu_k[b];
        if (sq == 0)
            continue;
        prism_tensor_view qs = qv, ks = kv, vs = vv;
        qs.data = q + (size_t)cu_q[b] * Hq * D;
        qs.shape[2] = sq;
        ks.data = k + (size_t)cu_k[b] * Hkv * D;
        ks.shape[2] = sk;
        vs.data = v + (size_t)cu_k[b] * Hkv * D;
        vs.shape[2] = sk;
        float *one = malloc((size_t)Hq * sq * D * sizeof *one);
        float *one_lse = malloc((size_t)Hq * sq * sizeof *one_lse);
        prism_tensor_view os =
            prism_view_bhsd(one, PRISM_DTYPE_FP32, 1, Hq, sq, D);
        prism_selection s1;
        cr_assert_eq(
            prism_selection_alloc_for(&s1, 1, Hq, sq, sk, NULL, BS, NULL, 0),
            PRISM_OK);
        prism_selection_fill_full(&s1);
        prism_ref_attention_options o1 = {1, 0.0, one_lse, 0, NULL, NULL};
        cr_assert_eq(
            prism_ref_attention(&qs, &ks, &vs, NULL, &s1, &o1, &os, NULL, 0),
            PRISM_OK);
        for (int h = 0; h < Hq; h++)
            for (int t = 0; t < sq; t++) {
                for (int d = 0; d < D; d++)
                    cr_assert_eq(prism_view_load(&ov, 0, h, cu_q[b] + t, d),
                                 one[((size_t)h * sq + t) * D + d],
                                 "seq %d head %d token %d", b, h, t);
                /* ragged lse is [Hq, total_q] */
                cr_assert_eq(lse[(size_t)h * total_q + cu_q[b] + t],
                             one_lse[(size_t)h * sq + t]);
            }
        prism_selection_free(&s1);
        free(one);
        free(one_lse);
    }
    /* the direct dense implementation agrees on the ragged batch too */
    float *direct = calloc((size_t)total_q * Hq * D, sizeof *direct);
    prism_tensor_view dv =
        prism_view_bshd(direct, PRISM_DTYPE_FP32, 1, Hq, total_q, D);
    cr_assert_eq(prism_ref_attention_dense_direct(&qv, &kv, &vv, &vl, 0.0, 2,
                                                  &dv, NULL, NULL, 0),
                 PRISM_OK);
    cr_assert_lt(test_max_diff(&ov, &dv), 1e-6);
    free(direct);
    prism_selection_free(&sel);
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
}

Test(ref_attention, recall_is_the_mass_inside_the_other_selection) {
    problem p;
    problem_make(&p, 1, 2, 1, 48, 48, 8, 16, 41);
    prism_selection full, part;
    full_selection(&p, &full);
    full_selection(&p, &part);
    for (int r = 0; r < 2 * 3; r++) { /* keep only the diagonal block */
        part.counts[r] = 1;
        part.indices[(size_t)r * part.nk] = r % 3;
    }
    size_t n = (size_t)2 * 48;
    float *rec_full = malloc(n * sizeof(float)),
          *rec_part = malloc(n * sizeof(float));
    const prism_selection *sels[] = {&full, &part};
    float *outs[] = {rec_full, rec_part};
    prism_ref_attention_options opt = {2, 0.0, NULL, 2, sels, outs};
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &full, &opt,
                                     &p.ov, NULL, 0),
                 PRISM_OK);
    for (int h = 0; h < 2; h++)
        for (int t = 0; t < 48; t++) {
            /* brute-force dense probabilities of query t */
            const float *qt = p.q + ((size_t)h * 48 + t) * 8;
            double w[48], mx = -INFINITY, sum = 0, in = 0;
            for (int s = 0; s <= t; s++) {
                double dot = 0;
                for (int d = 0; d < 8; d++)
                    dot += (double)qt[d] * p.k[s * 8 + d];
                w[s] = dot / sqrt(8.0);
                mx = w[s] > mx ? w[s] : mx;
            }
            for (int s = 0; s <= t; s++) {
                double e = exp(w[s] - mx);
                sum += e;
                if (s / 16 == t / 16)
                    in += e;
            }
            cr_assert_float_eq(rec_full[h * 48 + t], 1.0, 1e-6);
            cr_assert_float_eq(rec_part[h * 48 + t], in / sum, 1e-6,
                               "head %d token %d", h, t);
        }
    prism_ref_summary s = prism_ref_recall_summary(rec_part, 1, 2, 48, NULL);
    cr_assert_eq(s.count, 96);
    cr_assert_eq(s.max, 1.0f); /* token 0 sees only itself */
    cr_assert_lt(s.min, 1.0);
    free(rec_full);
    free(rec_part);
    prism_selection_free(&full);
    prism_selection_free(&part);
    problem_free(&p);
}

Test(ref_attention, a_row_without_blocks_outputs_zero) {
    problem p;
    problem_make(&p, 1, 1, 1, 16, 16, 8, 8, 9);
    prism_selection sel;
    full_selection(&p, &sel);
    sel.counts[1] = 0;
    prism_ref_attention_options opt = {1, 0.0, p.lse, 0, NULL, NULL};
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &sel, &opt,
                                     &p.ov, NULL, 0),
                 PRISM_OK);
    for (int t = 8; t < 16; t++) {
        cr_assert(isinf(p.lse[t]) && p.lse[t] < 0);
        for (int d = 0; d < 8; d++)
            cr_assert_eq(p.o[t * 8 + d], 0.0f);
    }
    cr_assert(isfinite(p.lse[0]));
    prism_selection_free(&sel);
    problem_free(&p);
}

Test(ref_attention, invalid_inputs_are_rejected) {
    problem p;
    problem_make(&p, 1, 2, 1, 16, 16, 8, 8, 9);
    prism_selection sel, other;
    full_selection(&p, &sel);
    char err[256] = "";
    /* a selection made for other shapes */
    cr_assert_eq(
        prism_selection_alloc_for(&other, 1, 2, 16, 24, NULL, 8, NULL, 0),
        PRISM_OK);
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &other, NULL,
                                     &p.ov, err, sizeof err),
                 PRISM_ERR_BAD_SHAPE);
    /* a block beyond the causal bound */
    sel.indices[0] = 1;
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &sel, NULL,
                                     &p.ov, err, sizeof err),
                 PRISM_ERR_INVALID_ARGUMENT);
    sel.indices[0] = 0;
    /* Hq not a multiple of Hkv */
    prism_tensor_view k3 = p.kv;
    k3.shape[1] = 3;
    cr_assert_eq(prism_ref_attention(&p.qv, &k3, &k3, NULL, &sel, NULL, &p.ov,
                                     err, sizeof err),
                 PRISM_ERR_BAD_SHAPE);
    /* queries longer than keys */
    prism_tensor_view short_k = p.kv, short_v = p.vv;
    short_k.shape[2] = short_v.shape[2] = 8;
    cr_assert_eq(prism_ref_attention_dense_direct(&p.qv, &short_k, &short_v,
                                                  NULL, 0.0, 1, &p.ov, NULL,
                                                  err, sizeof err),
                 PRISM_ERR_BAD_SHAPE);
    prism_tensor_view null_q = p.qv;
    null_q.data = NULL;
    cr_assert_eq(prism_ref_attention(&null_q, &p.kv, &p.vv, NULL, &sel, NULL,
                                     &p.ov, err, sizeof err),
                 PRISM_ERR_NULL_POINTER);
    prism_selection_free(&sel);
    prism_selection_free(&other);
    problem_free(&p);
}

Test(ref_attention, results_do_not_depend_on_the_thread_count) {
    problem p;
    problem_make(&p, 2, 4, 2, 64, 96, 16, 16, 77);
    prism_selection sel;
    full_selection(&p, &sel);
    float *o1 = malloc(sizeof(float) * 2 * 4 * 64 * 16);
    prism_tensor_view ov1 = prism_view_bhsd(o1, PRISM_DTYPE_FP32, 2, 4, 64, 16);
    prism_ref_attention_options one = {1, 0.0, NULL, 0, NULL, NULL};
    prism_ref_attention_options three = {3, 0.0, NULL, 0, NULL, NULL};
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &sel, &one,
                                     &ov1, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(prism_ref_attention(&p.qv, &p.kv, &p.vv, NULL, &sel, &three,
                                     &p.ov, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(memcmp(o1, p.o, sizeof(float) * 2 * 4 * 64 * 16), 0);
    free(o1);
    prism_selection_free(&sel);
    problem_free(&p);
}
