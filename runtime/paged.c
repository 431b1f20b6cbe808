/*
 * paged.c - the checks of paged K/V arguments (prism.h, prism_paged_kv)
 * and the size of a pooled-key cache.
 *
 * Every rule the header states for a paged batch that the host can check
 * is checked here, so that the CPU and CUDA plans reject the same
 * arguments with the same messages: the fields whatever the device, and
 * the table's entries where the table is host memory.  What a device
 * table holds cannot be seen before the launch; prism.h says so.
 */
#include "runtime/paged.h"

#include "base/checked.h"

size_t prism_paged_pooled_bytes(const prism_config *cfg, int num_pages,
                                int page_size, int kv_heads) {
    if (!cfg || cfg->block_size < 1 || cfg->head_dim < 1 || num_pages < 1 ||
        kv_heads < 1 || page_size < 1 || page_size % cfg->block_size)
        return 0;
    size_t entries = prism_size_mul4((size_t)num_pages,
                                     (size_t)(page_size / cfg->block_size),
                                     (size_t)kv_heads,
                                     (size_t)prism_paged_entry_floats(
                                         cfg->head_dim));
    size_t bytes = prism_size_mul(entries, sizeof(float));
    return bytes <= (size_t)PRISM_MAX_TENSOR_BYTES ? bytes : 0;
}

static prism_status check_counts(prism_plan *p, const prism_paged_kv *pg) {
    int bs = p->cfg.block_size;
    if (pg->page_size < 1 || pg->page_size % bs ||
        pg->page_size > PRISM_MAX_SEQLEN)
        return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                               "paged.page_size %d must be a positive "
                               "multiple of the config's block_size %d (%d, "
                               "%d, ...) up to PRISM_MAX_SEQLEN",
                               pg->page_size, bs, bs, 2 * bs);
    if (pg->num_pages < 1 || pg->max_pages < 1 ||
        pg->max_pages > PRISM_MAX_SEQLEN)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "paged.num_pages %d / paged.max_pages %d must "
                               "be positive (max_pages at most "
                               "PRISM_MAX_SEQLEN)",
                               pg->num_pages, pg->max_pages);
    return PRISM_OK;
}

prism_status prism_paged_check(prism_plan *p, const prism_batch *b) {
    const prism_paged_kv *pg = b->paged;
    if (!pg->page_table)
        return prism_plan_fail(p, PRISM_ERR_NULL_POINTER,
                               "paged.page_table is NULL");
    if ((uintptr_t)pg->page_table % 4)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "paged.page_table must be a 4-byte aligned "
                               "int32 array");
    if ((uintptr_t)pg->pooled_keys % 16)
        return prism_plan_fail(p, PRISM_ERR_MISALIGNED,
                               "paged.pooled_keys must be 16-byte aligned");
    prism_status st = check_counts(p, pg);
    if (st != PRISM_OK)
        return st;
    if ((int64_t)pg->max_pages * pg->page_size < b->seqlen_k)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "paged.max_pages %d pages of page_size %d "
                               "tokens hold %lld keys, fewer than seqlen_k %d "
                               "(the longest sequence)",
                               pg->max_pages, pg->page_size,
                               (long long)pg->max_pages * pg->page_size,
                               b->seqlen_k);
    return PRISM_OK;
}

prism_status prism_paged_check_sequence(prism_plan *p,
                                        const prism_paged_kv *pg, int seq,
                                        int64_t k_len) {
    int64_t pages = (k_len + pg->page_size - 1) / pg->page_size;
    const int32_t *row = pg->page_table + (int64_t)seq * pg->max_pages;
    for (int64_t i = 0; i < pages; i++)
        if (row[i] < 0 || row[i] >= pg->num_pages)
            return prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                                   "paged.page_table[%d][%lld] = %d is "
                                   "outside [0, num_pages %d) (sequence %d "
                                   "has %lld keys)",
                                   seq, (long long)i, (int)row[i],
                                   pg->num_pages, seq, (long long)k_len);
    return PRISM_OK;
}
