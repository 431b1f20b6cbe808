/*
 * attention_params.h - the parameter blocks of prism_attention (both
 * variants: gen/templates/attention.cu takes AttnParams, the sm_90a
 * kernel of gen/templates/attention_sm90.cu AttnTmaParams), of their
 * paged entry points prism_attention_paged (the same blocks followed by
 * AttnPaging) and of prism_attention_schedule, the one definition of
 * their layout.
 *
 * Compiled twice, as pool_stats_params.h says: into the kernel's CUDA
 * source after common.cuh and into the host launcher after <stdint.h>;
 * fixed-width fields with natural alignment, C11 and CUDA C++.  The size
 * checks at the end run in both compilers, so a layout the two disagree
 * on does not build on either side.
 */
#ifndef PRISM_ATTENTION_PARAMS_H
#define PRISM_ATTENTION_PARAMS_H

#ifdef __cplusplus
#define PRISM_PARAMS_ALIGN(n) alignas(n)
#define PRISM_PARAMS_ASSERT(cond, what) static_assert(cond, what)
#else
#define PRISM_PARAMS_ALIGN(n) _Alignas(n)
#define PRISM_PARAMS_ASSERT(cond, what) _Static_assert(cond, what)
#endif

// x / d for 0 <= x < 2^31 as (umulhi(x, mul) + x) >> shift, with mul and
// shift from the host (prism_launch_fastdiv, gen/launch.c): a multiply-high,
// an add and a shift where a division by a run-time value takes some twenty
// instructions.  The head counts are launch parameters, and the sm_90a
// kernels divide by them per work item (attention_sm90_produce.cu).
typedef struct FastDiv {
    int32_t d;      // the divisor, >= 1
    uint32_t mul;   // 2^32 (2^shift - d) / d + 1, truncated
    uint32_t shift; // ceil(log2(d))
} FastDiv;

typedef struct AttnParams {
    const uint16_t *q; // [B, q_heads, Sq, HEAD_DIM] by strides (varlen: B=1, tokens packed)
    const uint16_t *k; // [B, kv_heads, Sk, HEAD_DIM]
    const uint16_t *v; // [B, kv_heads, Sk, HEAD_DIM]
    uint16_t *o;       // [B, q_heads, Sq, HEAD_DIM] by strides, same dtype as inputs
    float *lse;        // fixed: [batch, q_heads, seqlen_q]; varlen: [q_heads, total_q]; or null
    int64_t q_stride_b, q_stride_h, q_stride_s; // element strides; the D stride is 1
    int64_t k_stride_b, k_stride_h, k_stride_s;
    int64_t v_stride_b, v_stride_h, v_stride_s;
    int64_t o_stride_b, o_stride_h, o_stride_s;
    const int32_t *cu_seqlens_q;  // [batch+1] or null (then fixed lengths seqlen_q/seqlen_k)
    const int32_t *cu_seqlens_k;  // both null or both set
    const int32_t *block_counts;  // [batch, q_heads, nq_max]
    const int32_t *block_indices; // [batch, q_heads, nq_max, nk_max]; row (b,h,i): ascending key-block indices, first block_counts[...] valid
    int32_t *schedule;      // sm_90a work queue: [0] ticket counter, [1] entries, then entries
    float *partial_o;       // split rows: per piece and warpgroup, O unnormalised,
    float *partial_ml;      //   and m, l, in the accumulator's register order
    int32_t *split_arrived; // per split item and warpgroup: pieces finished
    int32_t ctas, split_slots; // persistent grid size; partial slots in the workspace
    int32_t batch, seqlen_q, seqlen_k; // seqlen_* used when cu_seqlens are null
    int32_t nq_max, nk_max;            // blocks of BLOCK_SIZE tokens (max over the batch)
    float scale_log2;                  // log2(e) * softmax scale (prism_params)
    FastDiv q_heads, kv_heads, group;  // Hq, Hkv, Hq / Hkv of the launch
} AttnParams;

// Paged K and V (prism.h, prism_paged_kv): the extra block of the
// prism_attention_paged entry points.  k and v are then page pools,
// k_stride_b / v_stride_b the strides from page to page, and key t of
// sequence b is row t % page_size of page
// page_table[b * max_pages + t / page_size]; a page holds whole key
// blocks (page_size is a multiple of BLOCK_SIZE), so a key tile lies in
// one page.
typedef struct AttnPaging {
    const int32_t *page_table;  // [batch, max_pages], device memory
    int32_t max_pages, page_size;
    FastDiv blocks_per_page;    // page_size / BLOCK_SIZE
    int32_t unused;
} AttnPaging;

// The mma.sync kernel's paged parameter block: the plain one first.
typedef struct AttnPagedParams {
    AttnParams a;
    AttnPaging pg;
} AttnPagedParams;

// A TMA tensor map (the driver's CUtensorMap: 128 opaque bytes).  64-byte
// alignment is all TMA needs; the host's CUtensorMap asks for 128, so the
// host keeps its AttnTmaParams 128-byte aligned and, the maps coming
// first, every map is 128-byte aligned there too.
typedef struct TmaMap {
    PRISM_PARAMS_ALIGN(64) uint64_t opaque[16];
} TmaMap;

// The sm_90a kernel's parameter (a __grid_constant__, so the TMA unit
// reads the maps from parameter memory): q at 0, k at 128, v at 256, o at
// 384, a at 512.
typedef struct AttnTmaParams {
    TmaMap q, k, v, o; // rank 3 {D, S, H} or rank 4 {D, S, H, B}; o: box 64 rows
    AttnParams a;
    int32_t rank;      // 3 or 4
} AttnTmaParams;

// The sm_90a kernel's paged parameter block: the plain one first, so the
// schedule kernel (which takes AttnTmaParams) reads it as it is; k and v
// map the page pools as {D, page_size, Hkv, pages}.
typedef struct AttnTmaPagedParams {
    AttnTmaParams t;
    AttnPaging pg;
} AttnTmaPagedParams;

PRISM_PARAMS_ASSERT(sizeof(TmaMap) == 128, "a tensor map is 128 bytes");
PRISM_PARAMS_ASSERT(sizeof(AttnPaging) == 32, "AttnPaging layout");
PRISM_PARAMS_ASSERT(sizeof(AttnPagedParams) == 304, "AttnPagedParams layout");
PRISM_PARAMS_ASSERT(sizeof(AttnTmaPagedParams) == 896,
                    "AttnTmaPagedParams layout: the plain block, then pg");
PRISM_PARAMS_ASSERT(sizeof(FastDiv) == 12, "FastDiv layout");
PRISM_PARAMS_ASSERT(sizeof(AttnParams) == 272, "AttnParams layout");
PRISM_PARAMS_ASSERT(sizeof(AttnTmaParams) == 832,
                    "AttnTmaParams layout: four maps, then a at 512");

#endif
