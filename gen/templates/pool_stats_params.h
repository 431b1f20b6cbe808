/*
 * pool_stats_params.h - the parameter blocks of prism_pool_stats and
 * prism_pool_stats_paged (gen/templates/pool_stats.cu), the one
 * definition of their layout.
 *
 * Compiled twice: the generator pastes this file into the kernel's CUDA
 * source after common.cuh (whose typedefs give the fixed-width names), and
 * the host launcher (runtime/cuda/launch.c) includes it after <stdint.h>.
 * The kernel takes the block by value, so both sides must lay it out alike:
 * C11 and CUDA C++ both accept this file, every field has a fixed width
 * and natural alignment (8-byte pointers and int64_t, 4-byte int32_t).
 */
#ifndef PRISM_POOL_STATS_PARAMS_H
#define PRISM_POOL_STATS_PARAMS_H

typedef struct PoolParams {
    const uint16_t *q;     // [B, q_heads, Sq, D] by strides (varlen: B = 1)
    const uint16_t *k;     // [B, kv_heads, Sk, D]
    int64_t q_stride_b, q_stride_h, q_stride_s;
    int64_t k_stride_b, k_stride_h, k_stride_s;
    const int32_t *cu_seqlens_q; // [batch + 1] or null (fixed lengths)
    const int32_t *cu_seqlens_k;
    float *pooled_q;       // [batch, q_heads, nq_max, HEAD_DIM]
    float *pooled_k;       // [batch, kv_heads, nk_max, HEAD_DIM]
    float *stats_q;        // [batch, q_heads, 3]: sum x^2 all, high, low
    float *stats_k;        // [batch, kv_heads, 3]
    int32_t batch;
    int32_t seqlen_q, seqlen_k; // used when cu_seqlens are null
    int32_t nq_max, nk_max;
    int32_t q_heads, kv_heads;  // Hq, Hkv of the launch (prism_params)
} PoolParams;

// prism_pool_stats_paged's block: PoolParams over paged K (prism.h,
// prism_paged_kv) -- k is the page pool, k_stride_b the stride from page
// to page, key t of sequence b row t % page_size of page
// page_table[b * max_pages + t / page_size] -- and the pooled-key cache.
typedef struct PoolPagedParams {
    PoolParams p;
    const int32_t *page_table;  // [batch, max_pages]
    float *pooled_keys;         // null, or [pages][page_size / BLOCK_SIZE]
                                //   [kv_heads][HEAD_DIM + 4]
    int32_t max_pages, page_size;
} PoolPagedParams;

#endif
