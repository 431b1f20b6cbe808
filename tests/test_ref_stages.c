/*
 * test_ref_stages.c - the estimation stages of the CPU reference on cases
 * small enough to compute by hand: pooling (partial blocks, layouts, ragged
 * batches), band dims, calibration, softmax, top-p, the block-causal mask
 * with Sk > Sq, sink/diagonal forcing, the mean-pooling baseline and the
 * selection container.
 */
#include "test_ref_common.h"

#include <criterion/criterion.h>

#define EPS 1e-6

/* ------------------------------------------------------------------------ */
/* Views                                                                    */
/* ------------------------------------------------------------------------ */

Test(ref_views, bhsd_and_bshd_address_the_same_element) {
    /* [B=2, H=3, S=4, D=5]: element value encodes its logical index */
    float bhsd[120], bshd[120];
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 3; h++)
            for (int s = 0; s < 4; s++)
                for (int d = 0; d < 5; d++) {
                    float v = (float)(1000 * b + 100 * h + 10 * s + d);
                    bhsd[((b * 3 + h) * 4 + s) * 5 + d] = v;
                    bshd[((b * 4 + s) * 3 + h) * 5 + d] = v;
                }
    prism_tensor_view x = prism_view_bhsd(bhsd, PRISM_DTYPE_FP32, 2, 3, 4, 5);
    prism_tensor_view y = prism_view_bshd(bshd, PRISM_DTYPE_FP32, 2, 3, 4, 5);
    cr_assert_eq(prism_view_load(&y, 1, 2, 3, 4), 1234.0f);
    cr_assert_eq(prism_view_load(&x, 1, 2, 3, 4), 1234.0f);
    cr_assert_eq(prism_view_load(&y, 0, 1, 2, 0), 120.0f);
    cr_assert_eq(test_max_diff(&x, &y), 0.0);
    cr_assert_eq(prism_view_span(&y), 120);
}

Test(ref_views, half_precision_round_trip) {
    uint16_t bf[2], hf[2];
    prism_tensor_view b = prism_view_bhsd(bf, PRISM_DTYPE_BF16, 1, 1, 1, 2);
    prism_tensor_view h = prism_view_bhsd(hf, PRISM_DTYPE_FP16, 1, 1, 1, 2);
    prism_view_store(&b, 0, 0, 0, 0, 1.5f);
    prism_view_store(&h, 0, 0, 0, 0, 1.5f);
    prism_view_store(&b, 0, 0, 0, 1, 1.0f + 1.0f / 512); /* below bf16 ulp */
    prism_view_store(&h, 0, 0, 0, 1, 1.0f + 1.0f / 512); /* fp16 keeps it */
    cr_assert_eq(prism_view_load(&b, 0, 0, 0, 0), 1.5f);
    cr_assert_eq(prism_view_load(&h, 0, 0, 0, 0), 1.5f);
    cr_assert_eq(prism_view_load(&b, 0, 0, 0, 1), 1.0f);
    cr_assert_eq(prism_view_load(&h, 0, 0, 0, 1), 1.0f + 1.0f / 512);
}

/* ------------------------------------------------------------------------ */
/* Pooling                                                                  */
/* ------------------------------------------------------------------------ */

Test(ref_pool, partial_last_block_is_the_mean_of_its_valid_tokens) {
    /* 5 tokens, D=2, BS=2: blocks {t0,t1}, {t2,t3}, {t4} */
    float x[] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 20};
    prism_tensor_view v = prism_view_bhsd(x, PRISM_DTYPE_FP32, 1, 1, 5, 2);
    prism_pooled p;
    cr_assert_eq(prism_ref_pool(&v, NULL, 0, 2, 1, &p, NULL, 0), PRISM_OK);
    cr_assert_eq(p.nblocks, 3);
    cr_assert_eq(p.seq_blocks[0], 3);
    float want[] = {2, 3, 6, 7, 10, 20}; /* zero-padding would give 5, 10 */
    for (int i = 0; i < 6; i++)
        cr_assert_float_eq(p.data[i], want[i], EPS, "element %d", i);
    prism_pooled_free(&p);
}

Test(ref_pool, layouts_and_heads_pool_the_same) {
    enum { H = 3, S = 37, D = 8 };
    float *bhsd = test_random(H * S * D, 7, 1.0f);
    float *bshd = malloc(sizeof(float) * H * S * D);
    for (int h = 0; h < H; h++)
        for (int s = 0; s < S; s++)
            for (int d = 0; d < D; d++)
                bshd[(s * H + h) * D + d] = bhsd[(h * S + s) * D + d];
    prism_tensor_view a = prism_view_bhsd(bhsd, PRISM_DTYPE_FP32, 1, H, S, D);
    prism_tensor_view b = prism_view_bshd(bshd, PRISM_DTYPE_FP32, 1, H, S, D);
    prism_pooled pa, pb;
    cr_assert_eq(prism_ref_pool(&a, NULL, 0, 16, 2, &pa, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_ref_pool(&b, NULL, 0, 16, 2, &pb, NULL, 0), PRISM_OK);
    cr_assert_eq(pa.nblocks, 3);
    cr_assert_eq(memcmp(pa.data, pb.data, sizeof(float) * H * 3 * D), 0);
    /* head 2, block 2 = tokens 32..36 */
    for (int d = 0; d < D; d++) {
        double sum = 0;
        for (int s = 32; s < 37; s++)
            sum += bhsd[(2 * S + s) * D + d];
        cr_assert_float_eq(pa.data[((2 * 3) + 2) * D + d], sum / 5, 1e-6);
    }
    prism_pooled_free(&pa);
    prism_pooled_free(&pb);
    free(bhsd);
    free(bshd);
}

Test(ref_pool, ragged_sequences_pool_their_own_tokens) {
    /* two sequences of 2 and 5 tokens packed in one view, D=1, BS=2 */
    float x[] = {1, 3, 10, 20, 30, 40, 50};
    int32_t cu[] = {0, 2, 7};
    prism_tensor_view v = prism_view_bhsd(x, PRISM_DTYPE_FP32, 1, 1, 7, 1);
    prism_pooled p;
    cr_assert_eq(prism_ref_pool(&v, cu, 2, 2, 1, &p, NULL, 0), PRISM_OK);
    cr_assert_eq(p.B, 2);
    cr_assert_eq(p.nblocks, 3);
    cr_assert_eq(p.seq_blocks[0], 1);
    cr_assert_eq(p.seq_blocks[1], 3);
    float want[] = {2, 0, 0, 15, 35, 50};
    for (int i = 0; i < 6; i++)
        cr_assert_float_eq(p.data[i], want[i], EPS, "element %d", i);
    prism_pooled_free(&p);
}

Test(ref_pool, bad_ragged_offsets_are_rejected) {
    float x[4] = {0};
    prism_tensor_view v = prism_view_bhsd(x, PRISM_DTYPE_FP32, 1, 1, 4, 1);
    prism_pooled p;
    int32_t past_end[] = {0, 2, 5};
    int32_t decreasing[] = {0, 3, 2};
    int32_t not_zero[] = {1, 3};
    char err[256] = "";
    cr_assert_eq(prism_ref_pool(&v, past_end, 2, 2, 1, &p, err, sizeof err),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "cu_seqlens[2]"), "%s", err);
    cr_assert_eq(prism_ref_pool(&v, decreasing, 2, 2, 1, &p, NULL, 0),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_assert_eq(prism_ref_pool(&v, not_zero, 1, 2, 1, &p, NULL, 0),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_assert_eq(prism_ref_pool(&v, NULL, 0, 0, 1, &p, NULL, 0),
                 PRISM_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------ */
/* Bands                                                                    */
/* ------------------------------------------------------------------------ */

static void expect_dims(int D, prism_rope_layout layout, int width, bool high,
                        const int *ranges, int n_ranges) {
    int dims[512], want[512], n = 0;
    for (int r = 0; r < n_ranges; r++)
        for (int d = ranges[2 * r]; d < ranges[2 * r + 1]; d++)
            want[n++] = d;
    cr_assert_eq(prism_ref_band_dims(D, layout, width, high, dims), width,
                 "D=%d width=%d", D, width);
    cr_assert_eq(n, width, "test table for D=%d is wrong", D);
    for (int i = 0; i < n; i++)
        cr_assert_eq(dims[i], want[i], "D=%d %s %s band: dim %d is %d, want %d",
                     D, layout == PRISM_ROPE_HALF ? "half" : "interleaved",
                     high ? "high" : "low", i, dims[i], want[i]);
}

Test(ref_bands, half_layout_for_64_128_256) {
    /* the the method's example: D=128, dh=64 -> 0..31, 64..95; dl=96 -> 16..63,
     * 80..127 */
    expect_dims(128, PRISM_ROPE_HALF, 64, true, (int[]){0, 32, 64, 96}, 2);
    expect_dims(128, PRISM_ROPE_HALF, 96, false, (int[]){16, 64, 80, 128}, 2);
    expect_dims(64, PRISM_ROPE_HALF, 32, true, (int[]){0, 16, 32, 48}, 2);
    expect_dims(64, PRISM_ROPE_HALF, 48, false, (int[]){8, 32, 40, 64}, 2);
    expect_dims(256, PRISM_ROPE_HALF, 128, true, (int[]){0, 64, 128, 192}, 2);
    expect_dims(256, PRISM_ROPE_HALF, 192, false, (int[]){32, 128, 160, 256},
                2);
}

Test(ref_bands, interleaved_layout_for_64_128_256) {
    expect_dims(128, PRISM_ROPE_INTERLEAVED, 64, true, (int[]){0, 64}, 1);
    expect_dims(128, PRISM_ROPE_INTERLEAVED, 96, false, (int[]){32, 128}, 1);
    expect_dims(64, PRISM_ROPE_INTERLEAVED, 32, true, (int[]){0, 32}, 1);
    expect_dims(64, PRISM_ROPE_INTERLEAVED, 48, false, (int[]){16, 64}, 1);
    expect_dims(256, PRISM_ROPE_INTERLEAVED, 128, true, (int[]){0, 128}, 1);
    expect_dims(256, PRISM_ROPE_INTERLEAVED, 192, false, (int[]){64, 256}, 1);
}

Test(ref_bands, full_width_bands_cover_every_dim) {
    expect_dims(16, PRISM_ROPE_HALF, 16, true, (int[]){0, 16}, 1);
    expect_dims(16, PRISM_ROPE_HALF, 16, false, (int[]){0, 16}, 1);
    expect_dims(16, PRISM_ROPE_HALF, 2, false, (int[]){7, 8, 15, 16}, 2);
}

Test(ref_bands, invalid_widths_are_rejected) {
    int dims[256];
    cr_assert_eq(prism_ref_band_dims(128, PRISM_ROPE_HALF, 63, true, dims), -1);
    cr_assert_eq(prism_ref_band_dims(128, PRISM_ROPE_HALF, 130, true, dims),
                 -1);
    cr_assert_eq(prism_ref_band_dims(128, PRISM_ROPE_HALF, 0, true, dims), -1);
    cr_assert_eq(prism_ref_band_dims(127, PRISM_ROPE_HALF, 64, true, dims), -1);
    cr_assert_eq(prism_ref_band_dims(128, (prism_rope_layout)7, 64, true, dims),
                 -1);
}

/* ------------------------------------------------------------------------ */
/* Calibration (D = 4, dh = dl = 2: high = dims 0, 2; low = dims 1, 3)      */
/* ------------------------------------------------------------------------ */

typedef struct tiny_pooled {
    prism_pooled q, k;
    int32_t q_blocks[1], k_blocks[1];
} tiny_pooled;

/* Q: 4 heads x 2 blocks, K: 2 KV heads x 1 block, D = 4. */
static float tiny_q[4 * 2 * 4] = {
    2, 0, 0, 0, 0, 0, 0, 1, /* head 0 */
    2, 0, 0, 0, 0, 0, 0, 1, /* head 1 */
    2, 0, 0, 0, 0, 0, 0, 1, /* head 2 */
    2, 0, 0, 0, 0, 0, 0, 1, /* head 3 */
};
static float tiny_k[2 * 1 * 4] = {
    1, 1, 1, 1, /* KV head 0 */
    2, 0, 0, 0, /* KV head 1 */
};

static void tiny_setup(tiny_pooled *t, prism_config *cfg) {
    test_config(cfg, 4, 4, 2, 1);
    cfg->high_dim = 2;
    cfg->low_dim = 2;
    t->q_blocks[0] = 2;
    t->k_blocks[0] = 1;
    t->q = (prism_pooled){1, 4, 2, 4, t->q_blocks, tiny_q};
    t->k = (prism_pooled){1, 2, 1, 4, t->k_blocks, tiny_k};
}

Test(ref_calibration, hand_example) {
    /* head 0, KV head 0: rq = sqrt(5/8), rqh = 1, rql = 1/2, rk = rkh = rkl
     * = 1.  th = sqrt(1/2) * sqrt(8/5) = sqrt(4/5), scale_h = sqrt(8/5);
     * tl = sqrt(1/2) * (1/2) sqrt(8/5), scale_l = sqrt(2/5). */
    tiny_pooled t;
    prism_config cfg;
    tiny_setup(&t, &cfg);
    double sh, sl;
    cr_assert_eq(
        prism_ref_band_scales(&cfg, true, &t.q, &t.k, 0, 0, &sh, &sl, NULL, 0),
        PRISM_OK);
    cr_assert_float_eq(sh, sqrt(8.0 / 5.0), 1e-12);
    cr_assert_float_eq(sl, sqrt(2.0 / 5.0), 1e-12);
}

Test(ref_calibration, query_head_uses_its_groups_kv_head) {
    /* Hq=4, Hkv=2: heads 2 and 3 read KV head 1 = [2,0,0,0]: rk = 1,
     * rkh = sqrt(2), rkl = 0 -> scale_h = sqrt(16/5), scale_l = 0. */
    tiny_pooled t;
    prism_config cfg;
    tiny_setup(&t, &cfg);
    double sh, sl;
    for (int h = 0; h < 4; h++) {
        cr_assert_eq(prism_ref_band_scales(&cfg, true, &t.q, &t.k, 0, h, &sh,
                                           &sl, NULL, 0),
                     PRISM_OK);
        double want_h = h < 2 ? sqrt(8.0 / 5.0) : sqrt(16.0 / 5.0);
        double want_l = h < 2 ? sqrt(2.0 / 5.0) : 0.0;
        cr_assert_float_eq(sh, want_h, 1e-12, "head %d", h);
        cr_assert_float_eq(sl, want_l, 1e-12, "head %d", h);
    }
}

Test(ref_calibration, temperatures_when_calibration_is_off) {
    tiny_pooled t;
    prism_config cfg;
    tiny_setup(&t, &cfg);
    cfg.temp_high = 0.5;
    cfg.temp_low = 2.0;
    double sh, sl;
    cr_assert_eq(
        prism_ref_band_scales(&cfg, false, &t.q, &t.k, 0, 0, &sh, &sl, NULL, 0),
        PRISM_OK);
    cr_assert_float_eq(sh, sqrt(2.0) * 0.5, 1e-12);
    cr_assert_float_eq(sl, sqrt(2.0) * 2.0, 1e-12);
    cfg.calibrate = false; /* the config switch alone also selects temps */
    cr_assert_eq(
        prism_ref_band_scales(&cfg, true, &t.q, &t.k, 0, 0, &sh, &sl, NULL, 0),
        PRISM_OK);
    cr_assert_float_eq(sh, sqrt(2.0) * 0.5, 1e-12);
}

Test(ref_calibration, rms_over_listed_dims) {
    float rows[] = {3, 4, 0, 0, 0, 0};
    int dims[] = {0, 1};
    cr_assert_float_eq(prism_ref_band_rms(rows, 2, 3, dims, 2),
                       sqrt(25.0 / 4.0), 1e-12);
    cr_assert_float_eq(prism_ref_band_rms(rows, 2, 3, NULL, 0),
                       sqrt(25.0 / 6.0), 1e-12);
    cr_assert_eq(prism_ref_band_rms(rows, 0, 3, NULL, 0), 0.0);
}

/* ------------------------------------------------------------------------ */
/* Softmax and top-p                                                        */
/* ------------------------------------------------------------------------ */

Test(ref_select, softmax_hand_example) {
    double x[] = {0.0, log(3.0), -INFINITY};
    prism_ref_softmax(x, 3);
    cr_assert_float_eq(x[0], 0.25, 1e-15);
    cr_assert_float_eq(x[1], 0.75, 1e-15);
    cr_assert_eq(x[2], 0.0);
}

static int kept(const double *p, int n, double th, unsigned char *keep) {
    int order[64];
    return prism_ref_top_p(p, n, th, order, keep);
}

Test(ref_select, top_p_keeps_the_crossing_block) {
    double p[] = {0.1, 0.5, 0.3, 0.1};
    unsigned char keep[4];
    /* 0.5 (before: 0) and 0.3 (before: 0.5 < 0.7) are kept; the mass
     * before the next one is 0.8 >= 0.7 */
    cr_assert_eq(kept(p, 4, 0.7, keep), 2);
    cr_assert(!keep[0] && keep[1] && keep[2] && !keep[3]);
    /* the mass before the second block is exactly 0.5: not < 0.5, stop */
    cr_assert_eq(kept(p, 4, 0.5, keep), 1);
    cr_assert(keep[1] && !keep[2]);
}

Test(ref_select, top_p_ties_go_to_the_lower_block) {
    double flat[] = {0.25, 0.25, 0.25, 0.25};
    unsigned char keep[4];
    cr_assert_eq(kept(flat, 4, 0.5, keep), 2);
    cr_assert(keep[0] && keep[1] && !keep[2] && !keep[3]);
    double tail[] = {0.1, 0.3, 0.3, 0.3};
    cr_assert_eq(kept(tail, 4, 0.35, keep), 2);
    cr_assert(!keep[0] && keep[1] && keep[2] && !keep[3]);
    double late[] = {0.1, 0.2, 0.1, 0.6};
    /* order 3, 1, then the tie 0 / 2 -> 0 first */
    cr_assert_eq(kept(late, 4, 0.85, keep), 3);
    cr_assert(keep[0] && keep[1] && !keep[2] && keep[3]);
}

Test(ref_select, top_p_threshold_one_skips_zero_mass) {
    double p[] = {0.5, 0.5, 0.0, 0.0};
    unsigned char keep[4];
    cr_assert_eq(kept(p, 4, 1.0, keep), 2);
    cr_assert(keep[0] && keep[1] && !keep[2] && !keep[3]);
}

/* ------------------------------------------------------------------------ */
/* The estimation pipeline                                                  */
/* ------------------------------------------------------------------------ */

static void row_is(const prism_selection *sel, int b, int h, int i,
                   const int *want, int n) {
    size_t row = ((size_t)b * sel->Hq + h) * sel->nq + i;
    cr_assert_eq(sel->counts[row], n, "row (%d,%d,%d) has %d blocks, want %d",
                 b, h, i, sel->counts[row], n);
    for (int c = 0; c < n; c++)
        cr_assert_eq(sel->indices[row * sel->nk + c], want[c],
                     "row (%d,%d,%d) entry %d", b, h, i, c);
}

/* D=4, BS=1 (pooled = the tokens), temps 1/sqrt(2) so that the logits are
 * the raw band dot products.  Sq = 2, Sk = 5: row i allows j <= i + 3. */
Test(ref_estimate, dual_band_hand_example) {
    prism_config cfg;
    test_config(&cfg, 4, 1, 1, 1);
    cfg.high_dim = cfg.low_dim = 2;
    cfg.calibrate = false;
    cfg.temp_high = cfg.temp_low = 1.0 / sqrt(2.0);
    cfg.threshold_high = 0.75;
    cfg.threshold_low = 0.3;
    cfg.force_sink = cfg.force_recent = false;
    /* q0 only in dim 0 (high band); keys' dim 0 = log of 1, 2, 5, 1, 9 */
    float q[2 * 4] = {1, 0, 0, 0, 0, 0, 0, 0};
    float k[5 * 4] = {0};
    float logs[] = {0, (float)log(2.0), (float)log(5.0), 0, (float)log(9.0)};
    for (int j = 0; j < 5; j++)
        k[j * 4] = logs[j];
    prism_tensor_view qv = prism_view_bhsd(q, PRISM_DTYPE_FP32, 1, 1, 2, 4);
    prism_tensor_view kv = prism_view_bhsd(k, PRISM_DTYPE_FP32, 1, 1, 5, 4);
    prism_selection sel;
    cr_assert_eq(prism_selection_alloc_for(&sel, 1, 1, 2, 5, NULL, 1, NULL, 0),
                 PRISM_OK);
    prism_ref_estimate_options opt = {PRISM_REF_PRISM, 1, true};
    prism_ref_estimate_stats st;
    cr_assert_eq(prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &sel, &st, NULL,
                                    NULL, 0),
                 PRISM_OK);
    /* row 0, high band over j = 0..3: probs 1/9, 2/9, 5/9, 1/9; order 2,
     * 1, ...; masses before: 0, 5/9 < 0.75, then 7/9 -> keep {1, 2}.  Low
     * band: all logits 0 -> 1/4 each; keep 0 and 1 (the mass before 1 is
     * 1/4 < 0.3).  Union {0, 1, 2}; block 4 is masked (j <= i + 3). */
    row_is(&sel, 0, 0, 0, (int[]){0, 1, 2}, 3);
    cr_assert_float_eq(st.probs[2], 5.0 / 9.0, 1e-6);
    cr_assert_float_eq(st.probs[5 + 0], 0.25, 1e-6); /* low band, j = 0 */
    cr_assert_eq(st.probs[4], 0.0f); /* beyond the block-causal bound */
    cr_assert_eq(st.allowed[0], 4);
    cr_assert_eq(st.high_kept[0], 2);
    cr_assert_eq(st.low_kept[0], 2);
    /* row 1: q1 = 0 -> both bands uniform over 5 blocks (0.2 each): high
     * keeps 0..3 (mass before 3 is 0.6 < 0.75), low keeps 0, 1 */
    row_is(&sel, 0, 0, 1, (int[]){0, 1, 2, 3}, 4);
    cr_assert_float_eq(st.density, 7.0 / 9.0, 1e-12);
    cr_assert_eq(prism_selection_validate(&sel, NULL, 0), PRISM_OK);

    /* forcing adds the diagonal j = i + (nk - nq) = i + 3 */
    cfg.force_recent = true;
    prism_ref_estimate_stats_free(&st);
    cr_assert_eq(prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &sel, NULL,
                                    NULL, NULL, 0),
                 PRISM_OK);
    row_is(&sel, 0, 0, 0, (int[]){0, 1, 2, 3}, 4);
    row_is(&sel, 0, 0, 1, (int[]){0, 1, 2, 3, 4}, 5);
    prism_selection_free(&sel);
}

/* All-zero Q and K: every band is uniform, a tiny threshold keeps only the
 * first block in order, which the tie rule makes j = 0.  What remains is
 * the forcing, checked for Sk > Sq with partial blocks. */
Test(ref_estimate, forcing_and_offsets_with_longer_keys) {
    prism_config cfg;
    test_config(&cfg, 8, 2, 1, 2);
    cfg.threshold_high = cfg.threshold_low = 1e-9;
    float q[2 * 3 * 8] = {0}, k[7 * 8] = {0};
    /* Sq = 3 (nq = 2), Sk = 7 (nk = 4): diagonal of row i is i + 2 */
    prism_tensor_view qv = prism_view_bhsd(q, PRISM_DTYPE_FP32, 1, 2, 3, 8);
    prism_tensor_view kv = prism_view_bhsd(k, PRISM_DTYPE_FP32, 1, 1, 7, 8);
    prism_selection sel;
    cr_assert_eq(prism_selection_alloc_for(&sel, 1, 2, 3, 7, NULL, 2, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(sel.nq, 2);
    cr_assert_eq(sel.nk, 4);
    prism_ref_estimate_options opt = {PRISM_REF_PRISM, 2, false};
    cr_assert_eq(prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &sel, NULL,
                                    NULL, NULL, 0),
                 PRISM_OK);
    for (int h = 0; h < 2; h++) {
        row_is(&sel, 0, h, 0, (int[]){0, 2}, 2);
        row_is(&sel, 0, h, 1, (int[]){0, 3}, 2);
    }
    cfg.force_recent = false;
    cr_assert_eq(prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &sel, NULL,
                                    NULL, NULL, 0),
                 PRISM_OK);
    row_is(&sel, 0, 1, 1, (int[]){0}, 1);
    /* with the sink off, block 0 still comes from the tie rule */
    cfg.force_sink = false;
    cfg.force_recent = true;
    cr_assert_eq(prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &sel, NULL,
                                    NULL, NULL, 0),
                 PRISM_OK);
    row_is(&sel, 0, 0, 0, (int[]){0, 2}, 2);
    cr_assert_float_eq(prism_ref_density(&sel, NULL), 8.0 / 14.0, 1e-12);
    /* a local window: the 2 blocks ending at the diagonal, and no block
     * before 0 when the window is longer than the row */
    cfg.recent_blocks = 2;
    cr_assert_eq(prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &sel, NULL,
                                    NULL, NULL, 0),
                 PRISM_OK);
    row_is(&sel, 0, 0, 0, (int[]){0, 1, 2}, 3);
    row_is(&sel, 0, 1, 1, (int[]){0, 2, 3}, 3);
    cfg.recent_blocks = 9;
    cr_assert_eq(prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &sel, NULL,
                                    NULL, NULL, 0),
                 PRISM_OK);
    row_is(&sel, 0, 1, 1, (int[]){0, 1, 2, 3}, 4);
    prism_selection_free(&sel);
}

Test(ref_estimate, unaligned_key_offset_is_unsupported) {
    prism_config cfg;
    test_config(&cfg, 8, 1, 1, 4);
    float q[3 * 8] = {0}, k[8 * 8] = {0};
    prism_tensor_view qv = prism_view_bhsd(q, PRISM_DTYPE_FP32, 1, 1, 3, 8);
    prism_tensor_view kv = prism_view_bhsd(k, PRISM_DTYPE_FP32, 1, 1, 8, 8);
    prism_selection sel;
    cr_assert_eq(prism_selection_alloc_for(&sel, 1, 1, 3, 8, NULL, 4, NULL, 0),
                 PRISM_OK);
    prism_ref_estimate_options opt = {PRISM_REF_PRISM, 1, false};
    char err[256] = "";
    cr_assert_eq(prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &sel, NULL,
                                    NULL, err, sizeof err),
                 PRISM_ERR_UNSUPPORTED);
    cr_assert(strstr(err, "multiple of the block size"), "%s", err);
    prism_selection_free(&sel);
}

Test(ref_estimate, mean_pooling_uses_all_dims_and_the_high_threshold) {
    /* D=4, BS=1, Sq=1, Sk=3: logits <q, k_j> / 2 with q = [2, 0, 0, 0] and
     * k_1 = [log 3, ...] -> probs 0.2, 0.6, 0.2.  threshold_high 0.7 keeps
     * 1 then 0 (tie 0 / 2 -> 0; mass before 0.6 < 0.7). */
    prism_config cfg;
    test_config(&cfg, 4, 1, 1, 1);
    cfg.high_dim = cfg.low_dim = 2;
    cfg.threshold_high = 0.7;
    cfg.threshold_low = 1e-9;
    cfg.force_sink = cfg.force_recent = false;
    float q[4] = {2, 0, 0, 0}, k[3 * 4] = {0};
    k[4] = (float)log(3.0);
    prism_tensor_view qv = prism_view_bhsd(q, PRISM_DTYPE_FP32, 1, 1, 1, 4);
    prism_tensor_view kv = prism_view_bhsd(k, PRISM_DTYPE_FP32, 1, 1, 3, 4);
    prism_selection sel;
    cr_assert_eq(prism_selection_alloc_for(&sel, 1, 1, 1, 3, NULL, 1, NULL, 0),
                 PRISM_OK);
    prism_ref_estimate_options opt = {PRISM_REF_MEAN_POOLING, 1, true};
    prism_ref_estimate_stats st;
    cr_assert_eq(prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &sel, &st, NULL,
                                    NULL, 0),
                 PRISM_OK);
    row_is(&sel, 0, 0, 0, (int[]){0, 1}, 2);
    cr_assert_float_eq(st.probs[1], 0.6, 1e-6);
    cr_assert_float_eq(st.scale_high[0], 2.0, 1e-12);
    cr_assert_eq(st.low_kept[0], 0);
    prism_ref_estimate_stats_free(&st);
    prism_selection_free(&sel);
}

Test(ref_estimate, ragged_batch_equals_separate_sequences) {
    enum { D = 16, Hq = 4, Hkv = 2, BS = 8 };
    prism_config cfg;
    test_config(&cfg, D, Hq, Hkv, BS);
    /* sequence 0: Sq = 19, Sk = 35; sequence 1: Sq = Sk = 50 */
    int32_t cu_q[] = {0, 19, 69}, cu_k[] = {0, 35, 85};
    float *q = test_random((size_t)Hq * 69 * D, 11, 2.0f);
    float *k = test_random((size_t)Hkv * 85 * D, 12, 2.0f);
    /* packed BSHD, as serving engines store it */
    prism_tensor_view qv = prism_view_bshd(q, PRISM_DTYPE_FP32, 1, Hq, 69, D);
    prism_tensor_view kv = prism_view_bshd(k, PRISM_DTYPE_FP32, 1, Hkv, 85, D);
    prism_varlen vl = {2, cu_q, cu_k};
    prism_selection all;
    cr_assert_eq(prism_selection_alloc_for(&all, 0, Hq, 0, 0, &vl, BS, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(all.nq, 7);
    cr_assert_eq(all.nk, 7);
    cr_assert_eq(all.seq_nq[0], 3);
    cr_assert_eq(all.seq_nk[0], 5);
    prism_ref_estimate_options opt = {PRISM_REF_PRISM, 2, false};
    cr_assert_eq(prism_ref_estimate(&qv, &kv, &vl, &cfg, &opt, &all, NULL, NULL,
                                    NULL, 0),
                 PRISM_OK);
    for (int b = 0; b < 2; b++) {
        int sq = cu_q[b + 1] - cu_q[b], sk = cu_k[b + 1] - cu_k[b];
        /* the same sequence alone, as a regular batch of one */
        prism_tensor_view qs = qv, ks = kv;
        qs.data = q + (size_t)cu_q[b] * Hq * D;
        qs.shape[2] = sq;
        ks.data = k + (size_t)cu_k[b] * Hkv * D;
        ks.shape[2] = sk;
        prism_selection one;
        cr_assert_eq(
            prism_selection_alloc_for(&one, 1, Hq, sq, sk, NULL, BS, NULL, 0),
            PRISM_OK);
        cr_assert_eq(prism_ref_estimate(&qs, &ks, NULL, &cfg, &opt, &one, NULL,
                                        NULL, NULL, 0),
                     PRISM_OK);
        for (int h = 0; h < Hq; h++)
            for (int i = 0; i < all.nq; i++) {
                size_t r_all = ((size_t)b * Hq + h) * all.nq + i;
                if (i >= one.nq) {
                    cr_assert_eq(all.counts[r_all], 0);
                    continue;
                }
                size_t r_one = (size_t)h * one.nq + i;
                cr_assert_eq(all.counts[r_all], one.counts[r_one]);
                for (int c = 0; c < one.counts[r_one]; c++)
                    cr_assert_eq(all.indices[r_all * all.nk + c],
                                 one.indices[r_one * one.nk + c]);
            }
        prism_selection_free(&one);
    }
    prism_selection_free(&all);
    free(q);
    free(k);
}

static bool same_selection(const prism_selection *a, const prism_selection *b) {
    prism_ref_agreement ag;
    cr_assert_eq(prism_ref_selection_agreement(a, b, &ag, NULL, 0, NULL, 0),
                 PRISM_OK);
    return ag.differ == 0;
}

Test(ref_estimate, layouts_and_half_inputs_agree) {
    enum { D = 32, Hq = 4, Hkv = 2, S = 100, BS = 16 };
    prism_config cfg;
    test_config(&cfg, D, Hq, Hkv, BS);
    size_t nq = (size_t)Hq * S * D, nk = (size_t)Hkv * S * D;
    float *q = test_random(nq, 51, 3.0f), *k = test_random(nk, 52, 3.0f);
    float *qs = malloc(nq * sizeof *qs), *ks = malloc(nk * sizeof *ks);
    uint16_t *qh = malloc(nq * 2), *kh = malloc(nk * 2);
    prism_tensor_view qv = prism_view_bhsd(q, PRISM_DTYPE_FP32, 1, Hq, S, D);
    prism_tensor_view kv = prism_view_bhsd(k, PRISM_DTYPE_FP32, 1, Hkv, S, D);
    prism_tensor_view qb = prism_view_bhsd(qh, PRISM_DTYPE_BF16, 1, Hq, S, D);
    prism_tensor_view kb = prism_view_bhsd(kh, PRISM_DTYPE_BF16, 1, Hkv, S, D);
    prism_tensor_view qsv = prism_view_bshd(qs, PRISM_DTYPE_FP32, 1, Hq, S, D);
    prism_tensor_view ksv = prism_view_bshd(ks, PRISM_DTYPE_FP32, 1, Hkv, S, D);
    /* round to bf16, then make every fp32 copy hold the rounded values */
    cr_assert_eq(prism_view_copy(&qb, &qv, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&kb, &kv, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&qv, &qb, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&kv, &kb, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&qsv, &qv, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_view_copy(&ksv, &kv, NULL, 0), PRISM_OK);
    prism_selection a, b, c;
    cr_assert_eq(prism_selection_alloc_for(&a, 1, Hq, S, S, NULL, BS, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(prism_selection_alloc_for(&b, 1, Hq, S, S, NULL, BS, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(prism_selection_alloc_for(&c, 1, Hq, S, S, NULL, BS, NULL, 0),
                 PRISM_OK);
    prism_ref_estimate_options opt = {PRISM_REF_PRISM, 2, false};
    cr_assert_eq(
        prism_ref_estimate(&qv, &kv, NULL, &cfg, &opt, &a, NULL, NULL, NULL, 0),
        PRISM_OK);
    cr_assert_eq(
        prism_ref_estimate(&qb, &kb, NULL, &cfg, &opt, &b, NULL, NULL, NULL, 0),
        PRISM_OK);
    cr_assert_eq(prism_ref_estimate(&qsv, &ksv, NULL, &cfg, &opt, &c, NULL,
                                    NULL, NULL, 0),
                 PRISM_OK);
    cr_assert(same_selection(&a, &b));
    cr_assert(same_selection(&a, &c));
    prism_selection_free(&a);
    prism_selection_free(&b);
    prism_selection_free(&c);
    free(q);
    free(k);
    free(qs);
    free(ks);
    free(qh);
    free(kh);
}

/* ------------------------------------------------------------------------ */
/* Selection container                                                      */
/* ------------------------------------------------------------------------ */

Test(ref_selection, full_selection_of_a_ragged_batch) {
    int32_t cu_q[] = {0, 3, 10}, cu_k[] = {0, 5, 12};
    prism_varlen vl = {2, cu_q, cu_k};
    prism_selection sel;
    cr_assert_eq(prism_selection_alloc_for(&sel, 0, 1, 0, 0, &vl, 4, NULL, 0),
                 PRISM_OK);
    /* seq 0: nq 1, nk 2; seq 1: nq 2, nk 2 (7 keys) */
    cr_assert_eq(sel.nq, 2);
    cr_assert_eq(sel.nk, 2);
    prism_selection_fill_full(&sel);
    cr_assert_eq(prism_selection_allowed(&sel, 0, 0), 2);
    cr_assert_eq(prism_selection_allowed(&sel, 0, 1), 0);
    cr_assert_eq(prism_selection_allowed(&sel, 1, 0), 1);
    cr_assert_eq(prism_selection_allowed(&sel, 1, 1), 2);
    row_is(&sel, 0, 0, 0, (int[]){0, 1}, 2);
    row_is(&sel, 0, 0, 1, NULL, 0);
    row_is(&sel, 1, 0, 1, (int[]){0, 1}, 2);
    cr_assert_eq(prism_selection_validate(&sel, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_ref_density(&sel, NULL), 1.0);
    prism_selection_free(&sel);
    prism_selection_free(&sel); /* a zeroed selection frees twice */
}

Test(ref_selection, validate_catches_format_errors) {
    prism_selection sel;
    cr_assert_eq(prism_selection_alloc(&sel, 1, 1, 2, 2, 4), PRISM_OK);
    prism_selection_fill_full(&sel);
    cr_assert_eq(prism_selection_validate(&sel, NULL, 0), PRISM_OK);
    char err[256];
    sel.indices[2] = 1; /* row 1 = {1, 1}: not strictly ascending */
    sel.indices[3] = 1;
    cr_assert_eq(prism_selection_validate(&sel, err, sizeof err),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "ascending"), "%s", err);
    sel.indices[2] = 0;
    sel.counts[0] = 2; /* row 0 may only hold block 0 */
    cr_assert_eq(prism_selection_validate(&sel, NULL, 0),
                 PRISM_ERR_INVALID_ARGUMENT);
    sel.counts[0] = 1;
    sel.indices[0] = -1;
    cr_assert_eq(prism_selection_validate(&sel, NULL, 0),
                 PRISM_ERR_INVALID_ARGUMENT);
    prism_selection_free(&sel);
    cr_assert_eq(prism_selection_alloc(&sel, 0, 1, 1, 1, 4),
                 PRISM_ERR_INVALID_ARGUMENT);
}
