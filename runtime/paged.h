/*
 * paged.h - paged K/V (prism.h, prism_paged_kv): the checks of a paged
 * batch, in one place for every backend, and the layout of the
 * pooled-key cache that the backends and tests share.
 *
 * runtime/dispatch/plan.c runs prism_paged_check on every paged call
 * (what the host can see whatever the device: the fields and the table's
 * length against seqlen_k); a backend
 * whose page table is host memory (the CPU's) runs
 * prism_paged_check_sequence on each sequence before it reads a page.
 */
#ifndef PRISM_PAGED_H
#define PRISM_PAGED_H

#include "runtime/plan.h"

/* Floats per pooled-key cache entry: the block mean (head_dim), its three
 * band energies (all, high, low) and the mark. */
#define PRISM_PAGED_ENTRY_EXTRA 4
/* The mark of a written entry (a zeroed entry is not written). */
#define PRISM_PAGED_MARK 1.0f

static inline int64_t prism_paged_entry_floats(int head_dim) {
    return (int64_t)head_dim + PRISM_PAGED_ENTRY_EXTRA;
}

/* The entry of key block `blk` (sequence-relative) whose page is `page`,
 * for KV head h of kv_heads: an offset in floats. */
static inline int64_t prism_paged_entry(int64_t page, int blocks_per_page,
                                        int blk, int kv_heads, int h,
                                        int head_dim) {
    return ((page * blocks_per_page + blk % blocks_per_page) * kv_heads + h) *
           prism_paged_entry_floats(head_dim);
}

/* The checks of b->paged's fields every paged call gets, against the
 * plan's config: page size, counts, the table's length against the
 * batch's seqlen_k, alignment.  The message names the field.  (The K and
 * V pools are tensors: plan.c checks them with the others, as num_pages
 * entries of page_size tokens.) */
prism_status prism_paged_check(prism_plan *p, const prism_batch *b);

/* Host-visible tables: the entries of sequence `seq`'s k_len keys lie in
 * [0, num_pages). */
prism_status prism_paged_check_sequence(prism_plan *p,
                                        const prism_paged_kv *pg, int seq,
                                        int64_t k_len);

#endif
