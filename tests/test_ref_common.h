/*
 * test_ref_common.h - small helpers shared by the tests of the CPU reference
 * (tests/test_ref_*.c): a config filled by hand (so the reference tests do
 * not depend on the YAML loader), deterministic random tensors and
 * comparisons.  Header-only because every test file is its own executable.
 */
#ifndef PRISM_TEST_REF_COMMON_H
#define PRISM_TEST_REF_COMMON_H

#include "reference/reference.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The docs/method.md §8 defaults for head dim D, written out field by field. */
static inline void test_config(prism_config *cfg, int D, int Hq, int Hkv,
                               int block_size) {
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->name, "test");
    strcpy(cfg->source, "<memory>");
    cfg->head_dim = D;
    cfg->q_heads = Hq;
    cfg->kv_heads = Hkv;
    cfg->dtype = PRISM_DTYPE_BF16;
    cfg->rope_layout = PRISM_ROPE_HALF;
    cfg->rope_theta = 500000.0;
    cfg->block_size = block_size;
    cfg->high_dim = D / 2;
    cfg->low_dim = 3 * D / 4;
    cfg->threshold_high = 0.95;
    cfg->threshold_low = 0.95;
    cfg->calibrate = true;
    cfg->temp_high = 1.0;
    cfg->temp_low = 1.0;
    cfg->force_sink = true;
    cfg->force_recent = true;
    cfg->recent_blocks = 1;
}

/* Deterministic uniform floats in [-1, 1) (an LCG: tests only). */
static inline void test_fill(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

static inline float *test_random(size_t n, uint64_t seed, float scale) {
    float *x = malloc(n * sizeof *x);
    if (x) {
        test_fill(x, n, seed);
        for (size_t i = 0; i < n; i++)
            x[i] *= scale;
    }
    return x;
}

/* Largest |a - b| over two views of one shape. */
static inline double test_max_diff(const prism_tensor_view *a,
                                   const prism_tensor_view *b) {
    double worst = 0.0;
    for (int64_t i = 0; i < a->shape[0]; i++)
        for (int64_t h = 0; h < a->shape[1]; h++)
            for (int64_t s = 0; s < a->shape[2]; s++)
                for (int64_t d = 0; d < a->shape[3]; d++) {
                    double x = prism_view_load(a, i, h, s, d);
                    double y = prism_view_load(b, i, h, s, d);
                    double e = fabs(x - y);
                    if (!(e <= worst)) /* also catches NaN */
                        worst = e;
                }
    return worst;
}

#endif /* PRISM_TEST_REF_COMMON_H */
