/*
 * test_inputs.h - test inputs shared by the CPU suites (test_cpu_common.h)
 * and the GPU suite (test_gpu.c): a case as plain data (Criterion may run
 * each parameter in a fresh process, where a pointer copied from the
 * runner would dangle), host tensors in BHSD or BSHD order, and the inputs
 * of a case -- config, varlen offsets, Q/K/V filled from the reference
 * workloads or with iid Gaussians -- from a seed.  Header-only because
 * every test file is its own executable.
 */
#ifndef PRISM_TEST_INPUTS_H
#define PRISM_TEST_INPUTS_H

#include <criterion/criterion.h>

#include "reference/reference.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct input_case {
    char name[48];
    int head_dim, q_heads, kv_heads;
    int block_size;   /* 0: the config default                       */
    int batch;        /* sequences                                   */
    int sq[3], sk[3]; /* per sequence when varlen, else sq[0], sk[0] */
    bool varlen, bshd;
    prism_dtype dtype;
    prism_rope_layout layout;
    int workload; /* prism_workload_kind, or -1: iid Gaussian */
} input_case;

/* ---- inputs ---------------------------------------------------------- */

typedef struct host_tensor {
    void *data;
    prism_tensor_view view; /* B, H, S, D as the kernels see them */
} host_tensor;

typedef struct case_data {
    prism_config cfg;
    int B_view;             /* 1 for ragged batches                 */
    int64_t S_q, S_k;       /* view token counts                    */
    int max_sq, max_sk;
    int32_t cu_q[4], cu_k[4];
    prism_varlen varlen;
    const prism_varlen *vl; /* NULL for a regular batch             */
    host_tensor q, k, v;
    prism_batch batch;
} case_data;

static uint64_t rng;

static inline double gaussian(void) {
    /* splitmix64 + Box-Muller: deterministic per seed */
    double u[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        u[i] = ((double)(z >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* A [B, H, S, D] tensor of dtype in BHSD or BSHD order. */
static inline host_tensor tensor_new(prism_dtype dtype, int64_t B, int64_t H,
                                     int64_t S, int64_t D, bool bshd) {
    host_tensor t;
    size_t bytes = (size_t)(B * H * S * D) * prism_dtype_size(dtype);
    t.data = malloc(bytes ? bytes : 1);
    cr_assert_not_null(t.data);
    t.view = bshd ? prism_view_bshd(t.data, dtype, B, H, S, D)
                  : prism_view_bhsd(t.data, dtype, B, H, S, D);
    return t;
}

static inline size_t tensor_bytes(const host_tensor *t) {
    return (size_t)prism_view_span(&t->view) * prism_dtype_size(t->view.dtype);
}

static inline void fill_gaussian(host_tensor *t) {
    const prism_tensor_view *v = &t->view;
    for (int64_t b = 0; b < v->shape[0]; b++)
        for (int64_t h = 0; h < v->shape[1]; h++)
            for (int64_t s = 0; s < v->shape[2]; s++)
                for (int64_t d = 0; d < v->shape[3]; d++)
                    prism_view_store(v, b, h, s, d, (float)gaussian());
}

static inline void build_inputs(const input_case *c, uint64_t seed, case_data *d) {
    memset(d, 0, sizeof *d);
    prism_config_init(&d->cfg);
    snprintf(d->cfg.name, sizeof d->cfg.name, "%s", c->name);
    d->cfg.head_dim = c->head_dim;
    d->cfg.high_dim = c->head_dim / 2;
    d->cfg.low_dim = c->head_dim * 3 / 4;
    d->cfg.q_heads = c->q_heads;
    d->cfg.kv_heads = c->kv_heads;
    if (c->block_size > 0)
        d->cfg.block_size = c->block_size;
    d->cfg.dtype = c->dtype;
    d->cfg.rope_layout = c->layout;
    if (c->varlen) {
        for (int b = 0; b < c->batch; b++) {
            d->cu_q[b + 1] = d->cu_q[b] + c->sq[b];
            d->cu_k[b + 1] = d->cu_k[b] + c->sk[b];
            d->max_sq = c->sq[b] > d->max_sq ? c->sq[b] : d->max_sq;
            d->max_sk = c->sk[b] > d->max_sk ? c->sk[b] : d->max_sk;
        }
        d->varlen = (prism_varlen){c->batch, d->cu_q, d->cu_k};
        d->vl = &d->varlen;
        d->B_view = 1;
        d->S_q = d->cu_q[c->batch];
        d->S_k = d->cu_k[c->batch];
    } else {
        d->B_view = c->batch;
        d->S_q = d->max_sq = c->sq[0];
        d->S_k = d->max_sk = c->sk[0];
    }
    int D = c->head_dim;
    d->q = tensor_new(c->dtype, d->B_view, c->q_heads, d->S_q, D, c->bshd);
    d->k = tensor_new(c->dtype, d->B_view, c->kv_heads, d->S_k, D, c->bshd);
    d->v = tensor_new(c->dtype, d->B_view, c->kv_heads, d->S_k, D, c->bshd);
    d->batch = (prism_batch){
        .dtype = c->dtype, .batch = c->batch, .seqlen_q = d->max_sq,
        .seqlen_k = d->max_sk, .cu_seqlens_q = c->varlen ? d->cu_q : NULL,
        .cu_seqlens_k = c->varlen ? d->cu_k : NULL, .total_q = (int)d->S_q,
        .total_k = (int)d->S_k};
    rng = seed;
    if (c->workload < 0) {
        fill_gaussian(&d->q);
        fill_gaussian(&d->k);
        fill_gaussian(&d->v);
        return;
    }
    prism_workload w;
    char err[512];
    cr_assert_eq(prism_ref_workload_build(&d->cfg, c->batch, d->S_q, d->S_k,
                                          (prism_workload_kind)c->workload,
                                          seed, &w, err, sizeof err),
                 PRISM_OK, "%s", err);
    prism_tensor_view wq = prism_view_bhsd(w.q, PRISM_DTYPE_FP32, c->batch,
                                           c->q_heads, d->S_q, D);
    prism_tensor_view wk = prism_view_bhsd(w.k, PRISM_DTYPE_FP32, c->batch,
                                           c->kv_heads, d->S_k, D);
    prism_tensor_view wv = prism_view_bhsd(w.v, PRISM_DTYPE_FP32, c->batch,
                                           c->kv_heads, d->S_k, D);
    cr_assert_eq(prism_view_copy(&d->q.view, &wq, err, sizeof err), PRISM_OK);
    cr_assert_eq(prism_view_copy(&d->k.view, &wk, err, sizeof err), PRISM_OK);
    cr_assert_eq(prism_view_copy(&d->v.view, &wv, err, sizeof err), PRISM_OK);
    prism_ref_workload_free(&w);
}

static inline void free_inputs(case_data *d) {
    free(d->q.data);
    free(d->k.data);
    free(d->v.data);
}

#endif /* PRISM_TEST_INPUTS_H */
