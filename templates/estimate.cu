// Dual-band block scores, softmax and top-p selection (SPEC sections 5-6),
// fused per query-block row: no probability matrix reaches global memory.
//
// One CTA owns one row (batch b, query head h, query block i).  It
//   1. scores every block-causal key block j <= diag = i + (nk - nq) in
//      both bands at once: one pass over the pooled K row against two
//      copies of the pooled Q row, each zeroed outside its band (so the
//      inner loop has no branches);
//   2. turns each band's logits into a softmax in shared memory;
//   3. finds each band's crossing probability by bisection on the float
//      bit pattern (positive floats order like their bits): the crossing
//      block c is the one whose probability v is the smallest value with
//      mass(p > v) < threshold.  Blocks above v are kept; blocks tied at v
//      are kept in index order while the mass before them stays below the
//      threshold -- exactly SPEC section 6 without a sort;
//   4. writes the union of both bands plus the sink and diagonal blocks as
//      an ascending index list (a block-wide prefix sum compacts it).
// Rows past a sequence's last query block get count 0.

struct EstimateParams {
    const float *pooled_q;  // [batch, Q_HEADS, nq_max, HEAD_DIM]
    const float *pooled_k;  // [batch, KV_HEADS, nk_max, HEAD_DIM]
    const float *scales;    // [batch, Q_HEADS, 2]: scale_high, scale_low
    const int *cu_seqlens_q; // [batch + 1] or null
    const int *cu_seqlens_k;
    int *block_counts;      // [batch, Q_HEADS, nq_max]
    int *block_indices;     // [batch, Q_HEADS, nq_max, nk_max]
    unsigned long long *selected_total; // += selected blocks, or null
    unsigned long long *causal_total;   // += block-causal blocks, or null
    int batch;
    int seqlen_q, seqlen_k; // used when cu_seqlens are null
    int nq_max, nk_max;
};

static constexpr int EST_WARPS = THREADS / 32;

static __device__ __forceinline__ float block_reduce(float v, bool use_max,
                                                     float *scratch) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, v, offset);
        v = use_max ? fmaxf(v, other) : v + other;
    }
    __syncthreads(); // scratch may still be read by a previous reduction
    if (threadIdx.x % 32 == 0)
        scratch[threadIdx.x / 32] = v;
    __syncthreads();
    float r = scratch[0];
    for (int w = 1; w < EST_WARPS; w++)
        r = use_max ? fmaxf(r, scratch[w]) : r + scratch[w];
    return r;
}

// Softmax of logits[0, n) in place; returns nothing, probabilities sum to 1.
static __device__ __forceinline__ void softmax_in_place(float *logits, int n, float *scratch) {
    float m = -INFINITY;
    for (int j = threadIdx.x; j < n; j += THREADS)
        m = fmaxf(m, logits[j]);
    m = block_reduce(m, true, scratch);
    float s = 0.f;
    for (int j = threadIdx.x; j < n; j += THREADS) {
        const float e = __expf(logits[j] - m);
        logits[j] = e;
        s += e;
    }
    s = block_reduce(s, false, scratch);
    const float inv = 1.f / s;
    for (int j = threadIdx.x; j < n; j += THREADS)
        logits[j] *= inv;
    __syncthreads();
}

// Mass of the probabilities strictly above v.
static __device__ __forceinline__ float mass_above(const float *p, int n, float v,
                                   float *scratch) {
    float s = 0.f;
    for (int j = threadIdx.x; j < n; j += THREADS)
        s += p[j] > v ? p[j] : 0.f;
    return block_reduce(s, false, scratch);
}

// The crossing probability of SPEC section 6 (see the header comment) in
// .x and the mass above it in .y.
static __device__ __forceinline__ float2 crossing_value(const float *p, int n,
                                                        float threshold,
                                                        float *scratch) {
    u32 lo = 0, hi = __float_as_uint(1.0f); // mass_above(1.0) = 0 < threshold
    while (lo < hi) {
        const u32 mid = lo + (hi - lo) / 2;
        if (mass_above(p, n, __uint_as_float(mid), scratch) < threshold)
            hi = mid;
        else
            lo = mid + 1;
    }
    const float v = __uint_as_float(lo);
    return make_float2(v, mass_above(p, n, v, scratch));
}

// Is block j kept by top-p?  p[j] > v: yes; tied at v: while the mass
// before it (everything above v plus the earlier ties) is below threshold.
static __device__ __forceinline__ bool kept(const float *p, int j, float v,
                                            float above, float threshold) {
    if (p[j] != v)
        return p[j] > v;
    int earlier_ties = 0;
    for (int k = 0; k < j; k++)
        earlier_ties += p[k] == v;
    return above + v * (float)earlier_ties < threshold;
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
prism_estimate(const EstimateParams p) {
    extern __shared__ float shared[];
    __shared__ float4 q_high[HEAD_DIM / 4]; // pooled Q row, high band only
    __shared__ float4 q_low[HEAD_DIM / 4];  // pooled Q row, low band only
    __shared__ float scratch[EST_WARPS];
    __shared__ int warp_counts[EST_WARPS];

    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int kv = h / GQA_GROUP;
    int begin, len_q, len_k;
    sequence_range(p.cu_seqlens_q, p.seqlen_q, b, begin, len_q);
    sequence_range(p.cu_seqlens_k, p.seqlen_k, b, begin, len_k);
    const int nq = (len_q + BLOCK_SIZE - 1) / BLOCK_SIZE;
    const int nk = (len_k + BLOCK_SIZE - 1) / BLOCK_SIZE;
    const i64 row = ((i64)b * Q_HEADS + h) * p.nq_max + i;
    const int diag = i + (nk - nq);
    const int allowed = diag + 1; // block-causal: j in [0, diag]
    if (i >= nq || allowed <= 0) { // past the sequence, or Sk < Sq
        if (threadIdx.x == 0)
            p.block_counts[row] = 0;
        return;
    }

    float *prob_high = shared;
    float *prob_low = shared + p.nk_max;
    const float *q_src = p.pooled_q + row * HEAD_DIM;
    for (int d = threadIdx.x; d < HEAD_DIM; d += THREADS) {
        reinterpret_cast<float *>(q_high)[d] = in_high_band(d) ? q_src[d] : 0.f;
        reinterpret_cast<float *>(q_low)[d] = in_low_band(d) ? q_src[d] : 0.f;
    }
    __syncthreads();

    const float inv_high = 1.f / p.scales[(b * Q_HEADS + h) * 2];
    const float inv_low = 1.f / p.scales[(b * Q_HEADS + h) * 2 + 1];
    const float *k_base = p.pooled_k + ((i64)b * KV_HEADS + kv) * p.nk_max * HEAD_DIM;
    for (int j = threadIdx.x; j < allowed; j += THREADS) {
        const float4 *k_row = reinterpret_cast<const float4 *>(k_base + (i64)j * HEAD_DIM);
        float high = 0.f, low = 0.f;
#pragma unroll 4
        for (int d4 = 0; d4 < HEAD_DIM / 4; d4++) {
            const float4 k4 = k_row[d4];
            const float4 qh = q_high[d4], ql = q_low[d4];
            high += qh.x * k4.x + qh.y * k4.y + qh.z * k4.z + qh.w * k4.w;
            low += ql.x * k4.x + ql.y * k4.y + ql.z * k4.z + ql.w * k4.w;
        }
        prob_high[j] = high * inv_high;
        prob_low[j] = low * inv_low;
    }
    __syncthreads();
    softmax_in_place(prob_high, allowed, scratch);
    softmax_in_place(prob_low, allowed, scratch);

    const float2 cross_high =
        crossing_value(prob_high, allowed, THRESHOLD_HIGH, scratch);
    const float2 cross_low =
        crossing_value(prob_low, allowed, THRESHOLD_LOW, scratch);

    // Ascending compaction, THREADS candidates at a time.
    int *out = p.block_indices + row * p.nk_max;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int total = 0;
    for (int base = 0; base < allowed; base += THREADS) {
        const int j = base + threadIdx.x;
        bool sel = false;
        if (j < allowed)
            sel = (FORCE_SINK && j == 0) || (FORCE_RECENT && j == diag) ||
                  kept(prob_high, j, cross_high.x, cross_high.y,
                       THRESHOLD_HIGH) ||
                  kept(prob_low, j, cross_low.x, cross_low.y, THRESHOLD_LOW);
        const u32 ballot = __ballot_sync(0xffffffffu, sel);
        __syncthreads(); // warp_counts of the previous chunk fully read
        if (lane == 0)
            warp_counts[warp] = __popc(ballot);
        __syncthreads();
        int offset = total;
        for (int w = 0; w < warp; w++)
            offset += warp_counts[w];
        if (sel)
            out[offset + __popc(ballot & ((1u << lane) - 1u))] = j;
        for (int w = 0; w < EST_WARPS; w++)
            total += warp_counts[w];
    }
    if (threadIdx.x == 0) {
        p.block_counts[row] = total;
        if (p.selected_total)
            atomicAdd(p.selected_total, (unsigned long long)total);
        if (p.causal_total)
            atomicAdd(p.causal_total, (unsigned long long)allowed);
    }
}
