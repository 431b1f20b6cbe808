/*
 * estimate_params.h - the parameter block of prism_estimate
 * (gen/templates/estimate.cu), the one definition of its layout.
 *
 * Compiled twice, as pool_stats_params.h says: into the kernel's CUDA
 * source after common.cuh and into the host launcher after <stdint.h>;
 * fixed-width fields with natural alignment, C11 and CUDA C++.
 */
#ifndef PRISM_ESTIMATE_PARAMS_H
#define PRISM_ESTIMATE_PARAMS_H

typedef struct EstimateParams {
    const float *pooled_q;  // [batch, q_heads, nq_max, HEAD_DIM]
    const float *pooled_k;  // [batch, kv_heads, nk_max, HEAD_DIM]
    const float *stats_q;   // [batch, q_heads, 3]: summed energies (pool_stats)
    const float *stats_k;   // [batch, kv_heads, 3]
    float *scales;          // [batch, q_heads, 2]: scale_high, scale_low (out)
    const int32_t *cu_seqlens_q; // [batch + 1] or null
    const int32_t *cu_seqlens_k;
    int32_t *block_counts;  // [batch, q_heads, nq_max]
    int32_t *block_indices; // [batch, q_heads, nq_max, nk_max]
    uint64_t *selected_total; // += selected blocks, or null
    uint64_t *causal_total;   // += block-causal blocks, or null
    int32_t batch;
    int32_t seqlen_q, seqlen_k; // used when cu_seqlens are null
    int32_t nq_max, nk_max;
    int32_t rows_per_cta;   // 1..EST_ROWS; dynamic smem = rows * 2 * nk_max floats
    // The launch's method parameters (prism_params; the host fills them,
    // runtime/cuda/launch.c): head counts, the thresholds as the fixed
    // point the selection compares with ("mass < t" <=> mass_fx <
    // ceil(float(t) * 2^31)), the band temperatures, and 0/1 switches.
    int32_t q_heads, kv_heads, group; // Hq, Hkv, Hq / Hkv
    uint32_t threshold_high_fx, threshold_low_fx;
    float temp_high, temp_low;
    int32_t calibrate, force_sink, force_recent;
    int32_t recent_blocks; // force_recent keeps key blocks diag-recent+1..diag
} EstimateParams;

#endif
