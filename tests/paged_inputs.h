/*
 * paged_inputs.h - paged K/V inputs for the paged suites (test_paged.c on
 * the CPU, test_gpu.c on a GPU): the K and V of a case (test_inputs.h)
 * scattered into page pools in NHD or HND order, through a page table
 * that is a random permutation of the pages, with spare pages and the
 * rows past each sequence's end filled with other (finite) values, so a
 * kernel that reads a wrong page or row gives a wrong result.
 * Header-only because every test file is its own executable.
 */
#ifndef PRISM_PAGED_INPUTS_H
#define PRISM_PAGED_INPUTS_H

#include <stdio.h>

#include "test_inputs.h"

typedef struct paged_inputs {
    int page_size, max_pages, num_pages;
    bool hnd;
    int32_t *table;         /* [batch, max_pages]                        */
    host_tensor kp, vp;     /* pools, views [num_pages, Hkv, page_size, D] */
    prism_paged_kv pg;      /* table, sizes; pooled_keys NULL            */
    prism_batch batch;      /* the case's batch with .paged = &pg        */
} paged_inputs;

/* Keys of sequence b of a case. */
static inline int64_t case_k_len(const case_data *d, int b) {
    return d->vl ? d->cu_k[b + 1] - d->cu_k[b] : d->S_k;
}

/* splitmix64 step for the permutation (not the Gaussian stream). */
static inline uint64_t paged_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Pools of `page_size`-token pages holding d's K and V, a permuted page
 * table with `spare` unused pages among the used ones. */
static inline void paged_build(const case_data *d, int page_size, bool hnd,
                               int spare, uint64_t seed, paged_inputs *pi) {
    memset(pi, 0, sizeof *pi);
    int B = d->batch.batch, Hkv = d->cfg.kv_heads, D = d->cfg.head_dim;
    pi->page_size = page_size;
    pi->hnd = hnd;
    int used = 0;
    for (int b = 0; b < B; b++) {
        int pages = (int)((case_k_len(d, b) + page_size - 1) / page_size);
        pi->max_pages = pages > pi->max_pages ? pages : pi->max_pages;
        used += pages;
    }
    pi->num_pages = used + spare;
    int32_t *perm = malloc((size_t)pi->num_pages * sizeof *perm);
    pi->table = calloc((size_t)B * pi->max_pages, sizeof *pi->table);
    cr_assert(perm && pi->table);
    uint64_t state = seed ^ 0x5eedULL;
    for (int i = 0; i < pi->num_pages; i++)
        perm[i] = i;
    for (int i = pi->num_pages - 1; i > 0; i--) {
        int j = (int)(paged_next(&state) % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int next = 0;
    for (int b = 0; b < B; b++) {
        int pages = (int)((case_k_len(d, b) + page_size - 1) / page_size);
        for (int i = 0; i < pages; i++)
            pi->table[(size_t)b * pi->max_pages + i] = perm[next++];
    }
    free(perm);
    /* NHD memory [pages, page_size, Hkv, D] is the BSHD order of the
     * [pages, Hkv, page_size, D] view; HND is its BHSD order */
    pi->kp = tensor_new(d->cfg.dtype, pi->num_pages, Hkv, page_size, D, !hnd);
    pi->vp = tensor_new(d->cfg.dtype, pi->num_pages, Hkv, page_size, D, !hnd);
    fill_gaussian(&pi->kp);
    fill_gaussian(&pi->vp);
    char err[512];
    cr_assert_eq(prism_ref_paged_scatter(&pi->kp.view, pi->table,
                                         pi->max_pages, d->vl, &d->k.view, err,
                                         sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(prism_ref_paged_scatter(&pi->vp.view, pi->table,
                                         pi->max_pages, d->vl, &d->v.view, err,
                                         sizeof err),
                 PRISM_OK, "%s", err);
    pi->pg = (prism_paged_kv){pi->table, pi->max_pages, page_size,
                              pi->num_pages, NULL};
    pi->batch = d->batch;
    pi->batch.paged = &pi->pg;
}

static inline void paged_free(paged_inputs *pi) {
    free(pi->table);
    free(pi->kp.data);
    free(pi->vp.data);
}

#endif /* PRISM_PAGED_INPUTS_H */
