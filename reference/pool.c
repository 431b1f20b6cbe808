/*
 * pool.c - docs/method.md §2: block mean pooling of Q and K.
 *
 * Each pooled vector is the mean of the valid tokens of one block of one
 * head, summed in double and stored as fp32 (the method computes it in fp32;
 * double sums make the oracle's own rounding negligible next to any GPU
 * kernel's).  A partial last block is divided by its token count, not by
 * BS as in the published code's zero padding: the true mean keeps the last
 * block's scale comparable to the others.  Ragged batches pool each
 * sequence's own tokens; rows past a shorter sequence's blocks stay zero.
 */
#include "reference/ref_internal.h"

#include <stdlib.h>
#include <string.h>

/* Head dims up to this sum token-major in a stack array. */
#define POOL_STACK_DIMS 1024

typedef struct pool_job {
    const prism_tensor_view *x;
    const ref_span *spans;
    int block_size;
    prism_pooled *out;
} pool_job;

static void pool_one(void *ctx, int64_t index, int worker) {
    (void)worker;
    const pool_job *job = ctx;
    const prism_pooled *out = job->out;
    int64_t n = index % out->nblocks;
    int64_t h = (index / out->nblocks) % out->H;
    int64_t b = index / ((int64_t)out->nblocks * out->H);
    float *dst = out->data + index * out->D;
    if (n >= out->seq_blocks[b])
        return; /* calloc'd zero row */
    const ref_span *span = &job->spans[b];
    int64_t first = n * job->block_size;
    int64_t last = first + job->block_size;
    if (last > span->len)
        last = span->len;
    double inv = 1.0 / (double)(last - first);
    double sums[POOL_STACK_DIMS];
    if (out->D > POOL_STACK_DIMS) { /* unusual head dim: dim-major order */
        for (int d = 0; d < out->D; d++) {
            double sum = 0.0;
            for (int64_t t = first; t < last; t++)
                sum += prism_view_load(job->x, span->view_b, h, span->start + t,
                                       d);
            dst[d] = (float)(sum * inv);
        }
        return;
    }
    for (int d = 0; d < out->D; d++)
        sums[d] = 0.0;
    for (int64_t t = first; t < last; t++)
        for (int d = 0; d < out->D; d++)
            sums[d] +=
                prism_view_load(job->x, span->view_b, h, span->start + t, d);
    for (int d = 0; d < out->D; d++)
        dst[d] = (float)(sums[d] * inv);
}

prism_status ref_pool_spans(const prism_tensor_view *x, const ref_span *spans,
                            int n, int block_size, int threads,
                            prism_pooled *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    if (block_size < 1)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "pool: block size %d must be >= 1", block_size);
    int64_t max_len = 0;
    for (int b = 0; b < n; b++)
        max_len = spans[b].len > max_len ? spans[b].len : max_len;
    int64_t nblocks = ref_ceil_div(max_len, block_size);
    size_t count =
        (size_t)n * (size_t)x->shape[1] * (size_t)nblocks * (size_t)x->shape[3];
    out->seq_blocks = calloc((size_t)n, sizeof *out->seq_blocks);
    out->data = calloc(count ? count : 1, sizeof *out->data);
    if (!out->seq_blocks || !out->data) {
        prism_pooled_free(out);
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "pool: out of memory for %zu floats", count);
    }
    out->B = n;
    out->H = (int)x->shape[1];
    out->nblocks = (int)nblocks;
    out->D = (int)x->shape[3];
    for (int b = 0; b < n; b++)
        out->seq_blocks[b] = (int32_t)ref_ceil_div(spans[b].len, block_size);
    pool_job job = {x, spans, block_size, out};
    prism_parallel_for((int64_t)n * out->H * out->nblocks, threads,
                           pool_one, &job);
    return PRISM_OK;
}

prism_status prism_ref_pool(const prism_tensor_view *x,
                            const int32_t *cu_seqlens, int num_seqs,
                            int block_size, int threads, prism_pooled *out,
                            char *err, size_t err_size) {
    if (!out)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "pool: NULL output");
    memset(out, 0, sizeof *out);
    prism_status st = ref_check_view(x, "pool input", err, err_size);
    if (st != PRISM_OK)
        return st;
    ref_span *spans = NULL;
    int n = 0;
    st = ref_spans_make(x, cu_seqlens, num_seqs, "pool input", &spans, &n, err,
                        err_size);
    if (st != PRISM_OK)
        return st;
    st = ref_pool_spans(x, spans, n, block_size, threads, out, err, err_size);
    free(spans);
    return st;
}

void prism_pooled_free(prism_pooled *pooled) {
    if (!pooled)
        return;
    free(pooled->seq_blocks);
    free(pooled->data);
    memset(pooled, 0, sizeof *pooled);
}
