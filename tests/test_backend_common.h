/*
 * test_backend_common.h - what the backend suites share (test_backend.c:
 * the table, dispatch and the CPU and CUDA plans; test_backend_paged.c: the
 * CUDA plans' paged K/V launches): zeroed inputs of a config, configs by
 * name, and CUDA contexts on the stand-in driver of tests/fake_cuda with
 * the launches it traces (FAKE_CUDA_TRACE, FAKE_CUDA_GRIDS).  Header-only,
 * like test_cpu_common.h, because every test file is its own executable.
 */
#ifndef PRISM_TEST_BACKEND_COMMON_H
#define PRISM_TEST_BACKEND_COMMON_H

#include <criterion/criterion.h>

#include "fake_testutil.h"
#include "runtime/cuda/cuda_backend.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- inputs -------------------------------------------------------- */

typedef struct inputs {
    prism_batch b;
    prism_tensor q, k, v, o;
    int32_t *counts, *indices;
    prism_block_mask mask;
    void *mem[6];
} inputs;

/* Zeroed BHSD tensors (16-byte aligned: device rules) and a mask. */
static inline void make_inputs(const prism_config *c, int batch, int sq,
                               int sk, inputs *in) {
    memset(in, 0, sizeof *in);
    in->b = (prism_batch){.dtype = c->dtype, .batch = batch, .seqlen_q = sq,
                          .seqlen_k = sk};
    int64_t d = c->head_dim;
    size_t qb = (size_t)batch * c->q_heads * sq * d * 2;
    size_t kb = (size_t)batch * c->kv_heads * sk * d * 2;
    size_t sizes[4] = {qb, kb, kb, qb};
    prism_tensor *t[4] = {&in->q, &in->k, &in->v, &in->o};
    for (int i = 0; i < 4; i++) {
        bool is_q = i == 0 || i == 3;
        int64_t s = is_q ? sq : sk, h = is_q ? c->q_heads : c->kv_heads;
        in->mem[i] = aligned_alloc(256, (sizes[i] + 255) & ~(size_t)255);
        cr_assert_not_null(in->mem[i]);
        memset(in->mem[i], 0, sizes[i]);
        *t[i] = (prism_tensor){in->mem[i], h * s * d, s * d, d};
    }
    int nq = (sq + c->block_size - 1) / c->block_size;
    int nk = (sk + c->block_size - 1) / c->block_size;
    size_t rows = (size_t)batch * c->q_heads * nq;
    in->mem[4] = in->counts = calloc(rows, sizeof(int32_t));
    in->mem[5] = in->indices = calloc(rows * nk, sizeof(int32_t));
    in->mask = (prism_block_mask){in->counts, in->indices, nq, nk};
}

static inline void free_inputs(inputs *in) {
    for (int i = 0; i < 6; i++)
        free(in->mem[i]);
}

static inline void config_path(const char *name, char *path, size_t size) {
    snprintf(path, size, "%s/configs/%s", PRISM_SOURCE_DIR, name);
}

/* ---- CUDA plans on tests/fake_cuda ---------------------------------- */

static char cache_dir[64], trace_path[96];

static inline void fake_setup(void) {
    strcpy(cache_dir, "/tmp/prism-test-backend-XXXXXX");
    cr_assert_not_null(mkdtemp(cache_dir));
    snprintf(trace_path, sizeof trace_path, "%s/trace", cache_dir);
    setenv("PRISM_TUNE", "off", 1); /* no tuning database lookups */
}

static inline void fake_teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
    cr_assert_eq(system(cmd), 0);
}

/* A CUDA context on the stand-in driver; skips anywhere else. */
static inline prism_context *fake_context(void) {
    skip_unless_fake_driver();
    prism_context_options o;
    prism_context_options_init(&o);
    o.cache_dir = cache_dir;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    return ctx;
}

/* The stream operations enqueued since the last call (fake_cuda's trace). */
static inline void take_trace(int *launches, int *memsets) {
    *launches = *memsets = 0;
    FILE *f = fopen(trace_path, "r");
    char line[128];
    while (f && fgets(line, sizeof line, f)) {
        *launches += !strncmp(line, "launch", 6);
        *memsets += !strncmp(line, "memset", 6);
    }
    if (f)
        fclose(f);
    unlink(trace_path);
}

/* The grids of the launches since the last call ("grid X Y Z" lines of
 * the trace with FAKE_CUDA_GRIDS), at most max of them; returns how many. */
static inline int take_grids(unsigned grids[][3], int max) {
    int n = 0;
    FILE *f = fopen(trace_path, "r");
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (n < max && sscanf(line, "grid %u %u %u", &grids[n][0],
                              &grids[n][1], &grids[n][2]) == 3)
            n++;
    if (f)
        fclose(f);
    unlink(trace_path);
    return n;
}

/* The kernels launched since the last call (the names of the trace's grid
 * lines), space-separated into names. */
static inline void take_names(char *names, size_t size) {
    names[0] = 0;
    FILE *f = fopen(trace_path, "r");
    char line[160], name[96];
    unsigned x, y, z;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "grid %u %u %u %95s", &x, &y, &z, name) == 4 &&
            strlen(names) + strlen(name) + 2 < size) {
            strcat(names, name);
            strcat(names, " ");
        }
    if (f)
        fclose(f);
    unlink(trace_path);
}

/* NVRTC compiles this context has run. */
static inline uint64_t compiles_of(const prism_context *ctx) {
    prism_counters c;
    cr_assert_eq(prism_context_counters(ctx, &c), PRISM_OK);
    return c.compiles;
}

#endif
