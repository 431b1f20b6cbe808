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
    int32_t fresh_ctas;         // with pooled_keys: the key CTAs (per
                                //   sequence and KV head) that pool the
                                //   blocks from the prefix on (below)
} PoolPagedParams;

// THE KEY BLOCKS A CHUNK POOLS WITH A POOLED-KEY CACHE.  A call of len_q
// queries over len_k keys is a chunk of a longer prefill whose queries
// are the last len_q keys; the key blocks that end at or before its first
// query -- pool_prefix_blocks() of them, all full -- are keys that the
// calls of earlier chunks have seen, so their cache entries are normally
// written already, while the blocks from there to the sequence's end
// (those the chunk's own keys touch, at most ceil(len_q / BLOCK_SIZE) + 1)
// are normally not.  With a cache, a key CTA of each (sequence, KV head)
// pools one block of the latter, and each of the prefix's blocks is
// served by a sweep CTA that takes POOL_SWEEP_BLOCKS of them at once:
// it copies the entries' means and adds their energies, and pools (then
// writes) any entry that is not marked, so a prefix the cache does not
// hold costs time, never correctness.  The launch then grows with the
// chunk, and with the prefix only by a CTA per POOL_SWEEP_BLOCKS blocks
// instead of one per block and head.  The host sizes the grid by this
// rule (gen/launch.c, prism_launch_pool_keys: exactly for regular
// batches, by bounds for ragged ones, whose lengths live on the device),
// the paged kernel (gen/templates/pool_stats.cu) and the CPU backend
// (runtime/cpu/cpu_run.c) place their work by it.
#define POOL_SWEEP_BLOCKS 32

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define POOL_RULE_FN static __device__ __forceinline__
#else
#define POOL_RULE_FN static inline
#endif

// Key blocks of a sequence of len_q queries over len_k keys that end at
// or before its first query (key len_k - len_q); 0 when len_k <= len_q.
POOL_RULE_FN int32_t pool_prefix_blocks(int32_t len_q, int32_t len_k,
                                        int32_t block_size) {
    return len_k > len_q ? (len_k - len_q) / block_size : 0;
}

#endif
