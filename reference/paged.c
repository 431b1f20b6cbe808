/*
 * paged.c - what a paged K/V batch means (prism.h, prism_paged_kv), as
 * copies between the page pools and the contiguous tensor they stand for.
 *
 * The reference defines every stage on contiguous [B, H, S, D] views; a
 * paged batch is the same computation on the tensor whose key t of
 * sequence b is row t % page_size of page page_table[b][t / page_size].
 * Gathering that tensor is the definition the paged kernels are tested
 * against, and scattering a contiguous tensor into pages is how the tests
 * and benchmarks build paged inputs from ordinary ones.
 */
#include "reference/ref_internal.h"

#include <stdlib.h>

typedef struct paged_map {
    const prism_tensor_view *pool; /* [num_pages, Hkv, page_size, D] */
    const int32_t *table;
    int max_pages;
} paged_map;

/* Checks the pool against the contiguous view and every table entry the
 * spans use, before anything is copied. */
static prism_status check_map(const paged_map *m, const prism_tensor_view *x,
                              const ref_span *spans, int n, char *err,
                              size_t err_size) {
    const prism_tensor_view *pool = m->pool;
    prism_status st = ref_check_view(pool, "page pool", err, err_size);
    if (st != PRISM_OK)
        return st;
    if (pool->shape[1] != x->shape[1] || pool->shape[3] != x->shape[3])
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "page pool has %lld heads of %lld dims, the "
                            "tensor %lld of %lld",
                            (long long)pool->shape[1],
                            (long long)pool->shape[3], (long long)x->shape[1],
                            (long long)x->shape[3]);
    int64_t page_size = pool->shape[2];
    for (int b = 0; b < n; b++) {
        int64_t pages = ref_ceil_div(spans[b].len, page_size);
        if (pages > m->max_pages)
            return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                                "sequence %d has %lld keys: more than "
                                "max_pages %d pages of %lld",
                                b, (long long)spans[b].len, m->max_pages,
                                (long long)page_size);
        for (int64_t i = 0; i < pages; i++) {
            int32_t id = m->table[(int64_t)b * m->max_pages + i];
            if (id < 0 || id >= pool->shape[0])
                return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                                    "page_table[%d][%lld] = %d is outside "
                                    "[0, %lld)",
                                    b, (long long)i, (int)id,
                                    (long long)pool->shape[0]);
        }
    }
    return PRISM_OK;
}

/* Copies every key of every sequence between the pages and x, in the
 * direction `to_pages`. */
static prism_status copy_paged(const paged_map *m, const prism_tensor_view *x,
                               const prism_varlen *varlen, bool to_pages,
                               char *err, size_t err_size) {
    prism_status st = ref_check_view(x, "K/V", err, err_size);
    if (st != PRISM_OK)
        return st;
    ref_span *spans = NULL;
    int n = 0;
    st = ref_spans_make(x, varlen ? varlen->cu_seqlens_k : NULL,
                        varlen ? varlen->num_seqs : 0, "K/V", &spans, &n, err,
                        err_size);
    if (st == PRISM_OK)
        st = check_map(m, x, spans, n, err, err_size);
    int64_t ps = m->pool->shape[2], H = x->shape[1], D = x->shape[3];
    for (int b = 0; st == PRISM_OK && b < n; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < spans[b].len; t++) {
                int64_t page = m->table[(int64_t)b * m->max_pages + t / ps];
                int64_t xb = spans[b].view_b, xs = spans[b].start + t;
                for (int64_t d = 0; d < D; d++) {
                    if (to_pages)
                        prism_view_store(m->pool, page, h, t % ps, d,
                                         prism_view_load(x, xb, h, xs, d));
                    else
                        prism_view_store(x, xb, h, xs, d,
                                         prism_view_load(m->pool, page, h,
                                                         t % ps, d));
                }
            }
    free(spans);
    return st;
}

prism_status prism_ref_paged_gather(const prism_tensor_view *pool,
                                    const int32_t *page_table, int max_pages,
                                    const prism_varlen *varlen,
                                    const prism_tensor_view *dst, char *err,
                                    size_t err_size) {
    if (!pool || !page_table || !dst)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_ref_paged_gather: NULL argument");
    paged_map m = {pool, page_table, max_pages};
    return copy_paged(&m, dst, varlen, false, err, err_size);
}

prism_status prism_ref_paged_scatter(const prism_tensor_view *pool,
                                     const int32_t *page_table, int max_pages,
                                     const prism_varlen *varlen,
                                     const prism_tensor_view *src, char *err,
                                     size_t err_size) {
    if (!pool || !page_table || !src)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_ref_paged_scatter: NULL argument");
    paged_map m = {pool, page_table, max_pages};
    return copy_paged(&m, src, varlen, true, err, err_size);
}
