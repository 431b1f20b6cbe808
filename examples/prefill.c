/*
 * prefill.c - one Prism prefill through the public API (include/prism.h).
 *
 * The README's C example, kept as a file so that the build compiles it and
 * ctest runs it.  It uses the CPU backend, so it runs on any machine built
 * with LLVM; on a GPU, leave the context's device at its default
 * (PRISM_DEVICE_CUDA), pass device pointers and a CUDA stream.
 *
 *   ./build/example_prefill [CONFIG.yaml] [TOKENS]
 */
#include "prism.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* bf16 is the top half of an fp32 (rounded to nearest even). */
static uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* A contiguous [1, H, S, D] tensor of small pseudo-random values. */
static prism_tensor make_tensor(int H, int S, int D, unsigned seed) {
    size_t n = (size_t)H * S * D;
    uint16_t *data = malloc(n * sizeof *data);
    for (size_t i = 0; data && i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        data[i] = to_bf16((float)(seed >> 8) / (float)(1u << 24) - 0.5f);
    }
    prism_tensor t = {data, (int64_t)H * S * D, (int64_t)S * D, D};
    return t;
}

static int prefill(prism_context *ctx, const char *config, int S) {
    prism_plan_limits limits = {.max_batch = 1, .max_seqlen_q = S,
                                .max_seqlen_k = S};
    prism_plan *plan;
    if (prism_plan_create_from_file(ctx, config, &limits, &plan) != PRISM_OK) {
        fprintf(stderr, "%s\n", prism_context_last_error(ctx));
        return 1;
    }
    const prism_config *cfg = prism_plan_config(plan);
    int D = cfg->head_dim, Hq = cfg->q_heads, Hkv = cfg->kv_heads;
    prism_tensor q = make_tensor(Hq, S, D, 1), k = make_tensor(Hkv, S, D, 2),
                 v = make_tensor(Hkv, S, D, 3), o = make_tensor(Hq, S, D, 4);
    prism_batch batch = {.dtype = PRISM_DTYPE_BF16, .batch = 1,
                         .seqlen_q = S, .seqlen_k = S};
    double density = 0.0;
    int rc = 1;
    if (!q.data || !k.data || !v.data || !o.data)
        fprintf(stderr, "out of memory\n");
    else if (prism_prefill(plan, &batch, &q, &k, &v, &o, NULL, NULL, NULL, 0,
                           NULL) != PRISM_OK ||
             prism_plan_density(plan, &density) != PRISM_OK)
        fprintf(stderr, "%s\n", prism_plan_last_error(plan));
    else {
        printf("%s: %d tokens, %d query heads, density %.3f\n", cfg->name, S,
               Hq, density);
        rc = 0;
    }
    free(q.data);
    free(k.data);
    free(v.data);
    free(o.data);
    prism_plan_destroy(plan);
    return rc;
}

int main(int argc, char **argv) {
    const char *config = argc > 1 ? argv[1] : "configs/smollm2-135m.yaml";
    int tokens = argc > 2 ? atoi(argv[2]) : 2048;
    prism_context_options options;
    prism_context_options_init(&options);
    options.device = PRISM_DEVICE_CPU; /* leave out for the GPU */
    prism_context *ctx;
    if (prism_context_create(&options, &ctx) != PRISM_OK) {
        fprintf(stderr, "cannot create a Prism context\n");
        return 1;
    }
    int rc = tokens > 0 ? prefill(ctx, config, tokens) : 2;
    prism_context_destroy(ctx);
    return rc;
}
