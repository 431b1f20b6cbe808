/*
 * test_ref_workloads.c - the synthetic workloads: RoPE itself, determinism,
 * and for every pattern that its structure is visible in the dense
 * attention (token-level softmax computed here by brute force), in the
 * configurations that matter: both RoPE layouts and two RoPE bases.
 */
#include "test_ref_common.h"

#include <criterion/criterion.h>
#include <stdio.h>

Test(ref_rope, hand_example_half_and_interleaved) {
    /* D = 4, theta = 100: pair 0 turns by 1 rad per position, pair 1 by
     * 0.1 rad.  half: pair 0 = dims (0, 2); interleaved: dims (0, 1). */
    float x[4] = {1, 0, 0, 0};
    prism_ref_apply_rope(x, 1, 4, 1, 100.0, PRISM_ROPE_HALF);
    cr_assert_float_eq(x[0], cos(1.0), 1e-6);
    cr_assert_float_eq(x[2], sin(1.0), 1e-6);
    cr_assert_eq(x[1], 0.0f);
    float y[4] = {0, 0, 1, 0}; /* pair 1, first dim, position 3 */
    prism_ref_apply_rope(y, 1, 4, 3, 100.0, PRISM_ROPE_INTERLEAVED);
    cr_assert_float_eq(y[2], cos(0.3), 1e-6);
    cr_assert_float_eq(y[3], sin(0.3), 1e-6);
    float z[2 * 4] = {1, 2, 3, 4, 1, 2, 3, 4}; /* positions 0 and 1 */
    prism_ref_apply_rope(z, 2, 4, 0, 100.0, PRISM_ROPE_HALF);
    cr_assert_eq(z[0], 1.0f); /* position 0 does not move */
    cr_assert_eq(z[3], 4.0f);
    cr_assert_float_eq(z[4 + 1], 2 * cos(0.1) - 4 * sin(0.1), 1e-6);
}

Test(ref_rope, dot_products_depend_on_relative_position_only) {
    for (int layout = 0; layout < 2; layout++) {
        float q[64], k[64], q2[64], k2[64];
        test_fill(q, 64, 1);
        test_fill(k, 64, 2);
        memcpy(q2, q, sizeof q);
        memcpy(k2, k, sizeof k);
        prism_ref_apply_rope(q, 1, 64, 10, 10000.0, layout);
        prism_ref_apply_rope(k, 1, 64, 3, 10000.0, layout);
        prism_ref_apply_rope(q2, 1, 64, 1010, 10000.0, layout);
        prism_ref_apply_rope(k2, 1, 64, 1003, 10000.0, layout);
        double a = 0, b = 0;
        for (int d = 0; d < 64; d++) {
            a += (double)q[d] * k[d];
            b += (double)q2[d] * k2[d];
        }
        cr_assert_float_eq(a, b, 1e-4, "layout %d", layout);
    }
}

Test(ref_workload, deterministic_in_the_seed) {
    prism_config cfg;
    test_config(&cfg, 32, 4, 2, 32);
    prism_workload a, b, c;
    cr_assert_eq(prism_ref_workload_build(
                     &cfg, 2, 96, 160, PRISM_WORKLOAD_MIXED, 42, &a, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(prism_ref_workload_build(
                     &cfg, 2, 96, 160, PRISM_WORKLOAD_MIXED, 42, &b, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(prism_ref_workload_build(
                     &cfg, 2, 96, 160, PRISM_WORKLOAD_MIXED, 43, &c, NULL, 0),
                 PRISM_OK);
    size_t nq = (size_t)2 * 4 * 96 * 32, nk = (size_t)2 * 2 * 160 * 32;
    cr_assert_eq(memcmp(a.q, b.q, nq * sizeof(float)), 0);
    cr_assert_eq(memcmp(a.k, b.k, nk * sizeof(float)), 0);
    cr_assert_eq(memcmp(a.v, b.v, nk * sizeof(float)), 0);
    cr_assert_neq(memcmp(a.q, c.q, nq * sizeof(float)), 0);
    cr_assert_neq(memcmp(a.v, c.v, nk * sizeof(float)), 0);
    /* the two sequences of a batch differ */
    cr_assert_neq(memcmp(a.k, a.k + nk / 2, nk / 2 * sizeof(float)), 0);
    prism_ref_workload_free(&a);
    prism_ref_workload_free(&b);
    prism_ref_workload_free(&c);
}

Test(ref_workload, names_and_bad_arguments) {
    prism_workload_kind kind;
    for (int k = 0; k < PRISM_WORKLOAD_COUNT_; k++) {
        cr_assert_eq(prism_workload_parse(prism_workload_name(k), &kind),
                     PRISM_OK);
        cr_assert_eq((int)kind, k);
    }
    cr_assert_eq(prism_workload_parse("diagonal", &kind),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_assert_null(prism_workload_name(PRISM_WORKLOAD_COUNT_));
    prism_config cfg;
    test_config(&cfg, 32, 4, 2, 32);
    prism_workload w;
    cr_assert_eq(prism_ref_workload_build(&cfg, 1, 100, 50, PRISM_WORKLOAD_SINK,
                                          1, &w, NULL, 0),
                 PRISM_ERR_BAD_SHAPE);
    cfg.kv_heads = 3;
    cr_assert_eq(prism_ref_workload_build(&cfg, 1, 10, 50, PRISM_WORKLOAD_SINK,
                                          1, &w, NULL, 0),
                 PRISM_ERR_CONFIG);
}

/* ------------------------------------------------------------------------ */
/* Patterns in the dense attention                                          */
/* ------------------------------------------------------------------------ */

/* Average attention shares of one query head over sampled queries. */
typedef struct head_stats {
    double sink;     /* keys 0..3                                    */
    double local;    /* the 64 most recent keys                      */
    double near;     /* offsets 0..24                                */
    double far;      /* offsets within 16 of the slash offset        */
    double vertical; /* the vertical keys                            */
    double needle;   /* needle queries: their needle's keys          */
    double max_prob; /* the largest single probability               */
} head_stats;

static void dense_probs(const prism_workload *w, int b, int h, int64_t t,
                        double *p) {
    int D = w->D, kvh = h / (w->Hq / w->Hkv);
    int64_t pos = t + w->Sk - w->Sq;
    const float *q = w->q + (((size_t)b * w->Hq + h) * w->Sq + t) * D;
    const float *k = w->k + ((size_t)b * w->Hkv + kvh) * w->Sk * D;
    double mx = -INFINITY, sum = 0;
    for (int64_t s = 0; s <= pos; s++) {
        double dot = 0;
        for (int d = 0; d < D; d++)
            dot += (double)q[d] * k[s * D + d];
        p[s] = dot / sqrt((double)D);
        mx = p[s] > mx ? p[s] : mx;
    }
    for (int64_t s = 0; s <= pos; s++)
        sum += (p[s] = exp(p[s] - mx));
    for (int64_t s = 0; s <= pos; s++)
        p[s] /= sum;
}

static head_stats measure(const prism_workload *w, int b, int h) {
    const prism_head_pattern *pt =
        &w->patterns[(size_t)b * w->Hkv + h / (w->Hq / w->Hkv)];
    double *p = malloc((size_t)w->Sk * sizeof *p);
    head_stats st = {0};
    int n = 0, n_far = 0, n_needle = 0;
    int64_t off = w->Sk - w->Sq, F = pt->slash_far;
    for (int64_t t = 256 - off > 0 ? 256 - off : 0; t < w->Sq; t += 5) {
        int64_t pos = t + off;
        dense_probs(w, b, h, t, p);
        n++;
        double mx = 0;
        for (int64_t s = 0; s <= pos; s++) {
            mx = p[s] > mx ? p[s] : mx;
            if (s < PRISM_WORKLOAD_SINK_TOKENS)
                st.sink += p[s];
            if (pos - s < 64)
                st.local += p[s];
            if (pos - s <= 24)
                st.near += p[s];
        }
        st.max_prob += mx;
        for (int v = 0; v < pt->n_vertical; v++)
            st.vertical += pt->vertical[v] <= pos ? p[pt->vertical[v]] : 0.0;
        if (F > 0 && pos >= F + 16) {
            n_far++;
            for (int64_t s = pos - F - 16; s <= pos - F + 16; s++)
                st.far += p[s];
        }
    }
    for (int m = 0; m < pt->n_needles; m++) {
        const prism_needle *nd = &pt->needles[m];
        for (int64_t t = nd->query_start; t < nd->query_start + nd->length;
             t++) {
            dense_probs(w, b, h, t, p);
            n_needle++;
            for (int64_t s = nd->key_start; s < nd->key_start + nd->length; s++)
                st.needle += p[s];
        }
    }
    st.sink /= n;
    st.local /= n;
    st.near /= n;
    st.vertical /= n;
    st.max_prob /= n;
    st.far = n_far ? st.far / n_far : 0.0;
    st.needle = n_needle ? st.needle / n_needle : 0.0;
    free(p);
    return st;
}

/* Checks the pattern of components `comp` on head stats st. */
static void expect_pattern(unsigned comp, const head_stats *st,
                           const char *what) {
    char info[256];
    snprintf(info, sizeof info,
             "%s: sink %.3f local %.3f near %.3f far %.3f vertical %.3f "
             "needle %.3f max %.3f",
             what, st->sink, st->local, st->near, st->far, st->vertical,
             st->needle, st->max_prob);
    if (comp & PRISM_PATTERN_SINK) {
        cr_assert_gt(st->sink, 0.35, "%s", info);
        if (comp & PRISM_PATTERN_LOCAL)
            cr_assert_gt(st->sink + st->local, 0.9, "%s", info);
    } else {
        cr_assert_lt(st->sink, 0.05, "%s", info);
    }
    if (comp == PRISM_PATTERN_LOCAL)
        cr_assert_gt(st->local, 0.85, "%s", info);
    if (comp & PRISM_PATTERN_SLASH) {
        /* of the mass the sink leaves, most lies on the two diagonals */
        double rest = 1.0 - st->sink;
        cr_assert_gt(st->far, 0.4 * rest, "%s", info);
        cr_assert_gt(st->near + st->far, 0.6 * rest, "%s", info);
    }
    if (comp & PRISM_PATTERN_VERTICAL)
        cr_assert_gt(st->vertical, 0.5, "%s", info);
    if (comp & PRISM_PATTERN_NEEDLE)
        cr_assert_gt(st->needle, 0.6, "%s", info);
    if (comp == 0) { /* random: nothing stands out */
        cr_assert_lt(st->max_prob, 0.25, "%s", info);
        cr_assert_lt(st->local, 0.3, "%s", info);
    }
}

static void check_workload(prism_workload_kind kind, prism_rope_layout layout,
                           double theta, int B, int Hq, int Hkv,
                           unsigned expected_first) {
    prism_config cfg;
    test_config(&cfg, 128, Hq, Hkv, 64);
    cfg.rope_layout = layout;
    cfg.rope_theta = theta;
    prism_workload w;
    char err[256];
    cr_assert_eq(prism_ref_workload_build(&cfg, B, 896, 1024, kind, 5, &w, err,
                                          sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(w.patterns[0].components, expected_first);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            char what[96];
            snprintf(what, sizeof what, "%s, %s layout, theta %g, b %d head %d",
                     prism_workload_name(kind), prism_rope_layout_name(layout),
                     theta, b, h);
            const prism_head_pattern *pt =
                &w.patterns[(size_t)b * Hkv + h / (Hq / Hkv)];
            head_stats st = measure(&w, b, h);
            expect_pattern(pt->components, &st, what);
        }
    prism_ref_workload_free(&w);
}

#define HALF PRISM_ROPE_HALF
#define ILV PRISM_ROPE_INTERLEAVED

Test(ref_workload, sink_is_visible) {
    check_workload(PRISM_WORKLOAD_SINK, HALF, 5e5, 1, 2, 1,
                   PRISM_PATTERN_SINK | PRISM_PATTERN_LOCAL);
}

Test(ref_workload, local_is_visible) {
    check_workload(PRISM_WORKLOAD_LOCAL, HALF, 5e5, 1, 2, 1,
                   PRISM_PATTERN_LOCAL);
}

Test(ref_workload, slash_is_visible) {
    check_workload(PRISM_WORKLOAD_SLASH, HALF, 5e5, 1, 2, 1,
                   PRISM_PATTERN_SLASH);
}

Test(ref_workload, vertical_is_visible) {
    check_workload(PRISM_WORKLOAD_VERTICAL, HALF, 5e5, 1, 2, 1,
                   PRISM_PATTERN_VERTICAL | PRISM_PATTERN_LOCAL);
}

Test(ref_workload, needle_is_visible) {
    check_workload(PRISM_WORKLOAD_NEEDLE, HALF, 5e5, 1, 2, 1,
                   PRISM_PATTERN_NEEDLE | PRISM_PATTERN_LOCAL);
}

Test(ref_workload, random_is_diffuse) {
    check_workload(PRISM_WORKLOAD_RANDOM, HALF, 5e5, 1, 2, 1, 0);
}

Test(ref_workload, mixed_heads_cycle_through_patterns) {
    check_workload(PRISM_WORKLOAD_MIXED, HALF, 5e5, 2, 5, 5,
                   PRISM_PATTERN_SINK | PRISM_PATTERN_LOCAL);
}

Test(ref_workload, mixed_with_interleaved_rope_and_small_base) {
    check_workload(PRISM_WORKLOAD_MIXED, ILV, 1e4, 1, 5, 5,
                   PRISM_PATTERN_SINK | PRISM_PATTERN_LOCAL);
}

Test(ref_workload, pattern_positions_are_recorded) {
    prism_config cfg;
    test_config(&cfg, 64, 5, 5, 64);
    prism_workload w;
    cr_assert_eq(prism_ref_workload_build(&cfg, 1, 1024, 2048,
                                          PRISM_WORKLOAD_MIXED, 9, &w, NULL, 0),
                 PRISM_OK);
    const prism_head_pattern *slash = &w.patterns[1], *vert = &w.patterns[2];
    const prism_head_pattern *needle = &w.patterns[3];
    cr_assert_eq(slash->slash_far, 512);
    cr_assert_eq(vert->n_vertical, PRISM_WORKLOAD_MAX_VERTICAL);
    for (int v = 0; v < vert->n_vertical; v++)
        cr_assert(vert->vertical[v] >= PRISM_WORKLOAD_SINK_TOKENS &&
                  vert->vertical[v] < 1024);
    cr_assert_eq(needle->n_needles, PRISM_WORKLOAD_MAX_NEEDLES);
    for (int m = 0; m < needle->n_needles; m++) {
        const prism_needle *nd = &needle->needles[m];
        cr_assert_eq(nd->length, 64);
        cr_assert(nd->key_start + nd->length <= 1024);
        /* queries sit after the keys they retrieve, inside the Sq range */
        cr_assert(nd->query_start >= 0 && nd->query_start + nd->length <= 1024);
        cr_assert(nd->query_start + 1024 >= nd->key_start + nd->length);
    }
    prism_ref_workload_free(&w);
}

Test(ref_workload, same_topic_keys_attract_more) {
    /* a local head: outside the last 64 keys, keys of the query's topic get
     * far more probability per key than keys of other topics */
    prism_config cfg;
    test_config(&cfg, 128, 1, 1, 64);
    prism_workload w;
    cr_assert_eq(prism_ref_workload_build(&cfg, 1, 512, 2048,
                                          PRISM_WORKLOAD_LOCAL, 3, &w, NULL, 0),
                 PRISM_OK);
    double *p = malloc(2048 * sizeof *p);
    double same = 0, other = 0;
    int64_t n_same = 0, n_other = 0;
    for (int64_t t = 0; t < 512; t += 9) {
        int64_t pos = t + 1536;
        dense_probs(&w, 0, 0, t, p);
        int topic = prism_ref_workload_topic(&w, 0, 0, pos);
        cr_assert(topic >= 0 && topic < 8);
        for (int64_t s = 0; s < pos - 64; s++) {
            if (prism_ref_workload_topic(&w, 0, 0, s) == topic) {
                same += p[s];
                n_same++;
            } else {
                other += p[s];
                n_other++;
            }
        }
    }
    cr_assert_gt(n_same, 0);
    cr_assert_gt(same / n_same, 5.0 * (other / n_other), "%g vs %g",
                 same / n_same, other / n_other);
    cr_assert_eq(prism_ref_workload_topic(&w, 0, 0, 2048), -1);
    free(p);
    prism_ref_workload_free(&w);
    cr_assert_eq(prism_ref_workload_build(
                     &cfg, 1, 64, 64, PRISM_WORKLOAD_RANDOM, 3, &w, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(prism_ref_workload_topic(&w, 0, 0, 10), -1);
    prism_ref_workload_free(&w);
}
