// Dual-band block scores, softmax and top-p selection (SPEC sections 5-6),
// fused per group of query-block rows: no probability matrix reaches
// global memory.
//
// Work split.  One CTA owns `rows_per_cta` rows (at most EST_ROWS =
// THREADS / 32) that share a KV head: rows are numbered L = i * GQA_GROUP +
// (h % GQA_GROUP) per (batch, KV head), and CTA c takes L in [c * rows,
// (c + 1) * rows), so with GQA the query heads of a group (and, for
// rows > GQA_GROUP, neighbouring query blocks) read every pooled-K tile
// once instead of once per row.  The grid is 1-D with the row group
// slowest and reversed: causal row i has i + 1 + (nk - nq) blocks, so the
// longest rows start first and the short ones fill the tail.  The host
// picks rows_per_cta (launch.c): EST_ROWS when the probabilities fit shared
// memory twice per SM, fewer for very long sequences.
//
//   1. Scores.  The pooled K of the KV head streams through shared memory
//      in tiles of THREADS key blocks x TILE_D dims (cp.async, double
//      buffered, XOR-swizzled so both the copy and the reads are
//      bank-conflict free).  Thread t scores key block j = tile + t against
//      all the CTA's query rows (broadcast float4 reads of the pooled Q
//      rows), in both bands at once: the dim loop is fully unrolled, so the
//      band membership of every dim is a compile-time constant and each
//      dim costs one FMA per band it belongs to (no zeroed copies of Q).
//      Logits (already divided by the band scale) go to shared memory.
//   2. Softmax.  From here on warp w alone handles row w: no block
//      barriers.  Max, exp and sum per band with warp reductions.
//   3. Crossing value by radix select.  SPEC section 6 keeps blocks in
//      decreasing probability while the mass before them is below the
//      threshold T.  The block that crosses has probability v, the
//      smallest probability with mass(p > v) < T; blocks above v are kept,
//      blocks tied at v are kept in index order while the mass before them
//      (mass(p > v) + v * earlier ties) stays below T.  Positive floats
//      order like their bit patterns, so v is found on the 31 bits of p
//      (the sign is 0) in four passes of 8, 8, 8 and 7 bits.
//      Invariant of every pass: the bits of v above the current digit are
//      known (`prefix`) and `above` = mass of the probabilities whose bits
//      exceed every key with that prefix, with above < T.  The pass builds
//      a histogram of MASS per digit value over the probabilities that
//      match the prefix (shared-memory atomics); the warp scans it from the top (each lane owns 8
//      buckets, a shuffle suffix scan gives the mass above each lane) and
//      picks the smallest digit d with above + mass(digits > d) < T --
//      the digit of v, because the mass above every key of a lower digit
//      is >= T.  That sum becomes the new `above` (still < T) and d joins
//      the prefix.  After the last pass prefix = v and above =
//      mass(p > v).  (If every probability is below v's bucket the digit
//      is 0; v may be 0, then every block is kept.)  The old kernel found
//      the same v with a 31-step bisection of block-wide reductions.
//      Mass is counted in fixed point, round(p * 2^31) in a u32 (the sum
//      of a softmax row stays below 2^32), so histogram sums are exact
//      and independent of the order of the shared-memory atomics: the
//      selection is deterministic and equal to a sort-based top-p on the
//      same rounded masses ("mass < T" is mass_fx < ceil(T * 2^31)).  The
//      rounding (2^-32 per block) is far below the fp32 softmax error that
//      the >= 99.9% agreement test with the double reference absorbs.
//   4. Output.  Warp-wide ballots in 32-block chunks give the union of both
//      bands plus the sink and diagonal blocks as an ascending index list,
//      and count the ties at v seen so far (the tie rule above).
// Rows past a sequence's last query block (and rows with no causal block)
// get count 0.

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
    int rows_per_cta;       // 1..EST_ROWS; dynamic smem = rows * 2 * nk_max floats
};

static constexpr int EST_WARPS = THREADS / 32;
static constexpr int EST_ROWS = EST_WARPS; // rows per CTA at most: a warp each
static constexpr int TILE_J = THREADS;     // key blocks per K tile: one a thread
static constexpr int TILE_D = 16;          // dims per K tile stage
static constexpr int TILE_D4 = TILE_D / 4;
static constexpr int D_STAGES = HEAD_DIM / TILE_D;
static constexpr int RADIX_BUCKETS = 256;
static_assert(THREADS % 32 == 0, "whole warps");
static_assert(HEAD_DIM % TILE_D == 0 && D_STAGES % 2 == 0,
              "the double buffer alternates with the stage index");
static_assert((TILE_J * TILE_D4) % THREADS == 0, "whole cp.async rounds");

// Shared memory reused by the two phases: the double-buffered K tile while
// scoring, then one histogram per warp and band while selecting.
static constexpr int K_TILE_F4 = 2 * TILE_J * TILE_D4;
static constexpr int HIST_F4 = EST_WARPS * 2 * RADIX_BUCKETS / 4;
static constexpr int PHASE_F4 = K_TILE_F4 > HIST_F4 ? K_TILE_F4 : HIST_F4;

// Fixed-point mass of a probability in [0, 1]: round(p * 2^31).
static __device__ __forceinline__ u32 mass_fx(float p) {
    return __float2uint_rn(p * 2147483648.0f);
}

// "mass < t" for a fixed-point mass m  <=>  m < ceil(t * 2^31).
static constexpr u32 threshold_fx(float t) {
    const double x = (double)t * 2147483648.0;
    const u32 floor_x = (u32)x;
    return (double)floor_x < x ? floor_x + 1u : floor_x;
}
static constexpr u32 T_HIGH_FX = threshold_fx(THRESHOLD_HIGH);
static constexpr u32 T_LOW_FX = threshold_fx(THRESHOLD_LOW);

static __device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    const u32 dst = smem_u32(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst),
                 "l"(gmem));
}

static __device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

static __device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
}

// Float4 slot of dims [4 c4, 4 c4 + 4) of tile row `row`: the XOR makes
// 8 consecutive rows (the reads) and 2 rows x 4 slots (the copies) hit 8
// distinct 16-byte bank groups.
static __device__ __forceinline__ int tile_slot(int row, int c4) {
    return row * TILE_D4 + (c4 ^ ((row >> 1) & (TILE_D4 - 1)));
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// One radix pass's resolution (see the header): reads and clears the
// warp's histogram, picks the digit of v and updates prefix / above.
static __device__ __forceinline__ void radix_resolve(u32 *hist, int shift,
                                                     u32 threshold, u32 &prefix,
                                                     u32 &above) {
    const int lane = threadIdx.x % 32;
    uint4 *h4 = reinterpret_cast<uint4 *>(hist) + 2 * lane;
    const uint4 a = h4[0], c = h4[1];
    h4[0] = make_uint4(0u, 0u, 0u, 0u); // ready for the next pass
    h4[1] = make_uint4(0u, 0u, 0u, 0u);
    const u32 m[8] = {a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w};
    u32 lane_sum = 0;
#pragma unroll
    for (int k = 0; k < 8; k++)
        lane_sum += m[k];
    u32 suffix = lane_sum; // mass of buckets of lanes >= this lane
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
        const u32 other = __shfl_down_sync(0xffffffffu, suffix, offset);
        if (lane + offset < 32)
            suffix += other;
    }
    // Mass above bucket 8 * lane + k is acc when k is reached going down.
    u32 acc = above + (suffix - lane_sum);
    int digit = 8;
    u32 digit_above = 0;
#pragma unroll
    for (int k = 7; k >= 0; k--) {
        if (acc < threshold) { // nonincreasing in k: the last hit is smallest
            digit = k;
            digit_above = acc;
        }
        acc += m[k];
    }
    // Lanes whose top bucket qualifies are a suffix of the warp (lane 31
    // always: its top bucket has `above` < threshold over it).
    const u32 ok = __ballot_sync(0xffffffffu, digit < 8);
    const int src = __ffs(ok) - 1;
    const u32 bucket = (u32)__shfl_sync(0xffffffffu, 8 * lane + digit, src);
    above = __shfl_sync(0xffffffffu, digit_above, src);
    prefix |= bucket << shift;
}

// Scores of dims [STAGE * TILE_D, +TILE_D) of this thread's key block
// (tile row threadIdx.x of kt) against every row of q_s.  STAGE is a
// template argument so the band membership of each dim is a compile-time
// constant: one FMA per band a dim belongs to, nothing for the others.
template <int STAGE>
static __device__ __forceinline__ void score_stage(
    const float4 *kt, const float4 (*q_s)[HEAD_DIM / 4],
    float (&high)[EST_ROWS], float (&low)[EST_ROWS]) {
#pragma unroll
    for (int c4 = 0; c4 < TILE_D4; c4++) {
        const float4 k4 = kt[tile_slot(threadIdx.x, c4)];
        const float kd[4] = {k4.x, k4.y, k4.z, k4.w};
#pragma unroll
        for (int r = 0; r < EST_ROWS; r++) {
            const float4 q4 = q_s[r][STAGE * TILE_D4 + c4];
            const float qd[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                constexpr int dim0 = STAGE * TILE_D;
                const int d = dim0 + 4 * c4 + e; // constant after unrolling
                if (in_high_band(d))
                    high[r] = fmaf(qd[e], kd[e], high[r]);
                if (in_low_band(d))
                    low[r] = fmaf(qd[e], kd[e], low[r]);
            }
        }
    }
}

// score_stage<stage> for a run-time stage.  The stage loop stays a loop
// (unrolling all D_STAGES stages lets the scheduler stretch live ranges
// across them and spill for HEAD_DIM 256).
template <int S = 0>
static __device__ __forceinline__ void score_stage_at(
    int stage, const float4 *kt, const float4 (*q_s)[HEAD_DIM / 4],
    float (&high)[EST_ROWS], float (&low)[EST_ROWS]) {
    if (stage == S)
        score_stage<S>(kt, q_s, high, low);
    else if constexpr (S + 1 < D_STAGES)
        score_stage_at<S + 1>(stage, kt, q_s, high, low);
}

extern "C" __global__ void __launch_bounds__(THREADS, 512 / THREADS)
prism_estimate(const EstimateParams p) {
    extern __shared__ float probs[]; // [rows_per_cta][2][nk_max] logits, then p
    __shared__ float4 phase_smem[PHASE_F4];
    __shared__ float4 q_s[EST_ROWS][HEAD_DIM / 4]; // pooled Q rows
    __shared__ float inv_scale[EST_ROWS][2];
    __shared__ int row_allowed[EST_ROWS];

    const int rows = p.rows_per_cta;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int groups = (GQA_GROUP * p.nq_max + rows - 1) / rows;
    const int kv = blockIdx.x % KV_HEADS;
    const int b = (blockIdx.x / KV_HEADS) % p.batch;
    const int group = groups - 1 - (int)(blockIdx.x / (KV_HEADS * p.batch));
    const int first = group * rows; // L of the CTA's row 0

    int begin, len_q, len_k;
    sequence_range(p.cu_seqlens_q, p.seqlen_q, b, begin, len_q);
    sequence_range(p.cu_seqlens_k, p.seqlen_k, b, begin, len_k);
    const int nq = (len_q + BLOCK_SIZE - 1) / BLOCK_SIZE;
    const int nk = (len_k + BLOCK_SIZE - 1) / BLOCK_SIZE;

    // Block-causal lengths: row i allows j in [0, i + (nk - nq)].  Rows
    // past the sequence (or with Sk < Sq) allow nothing.
    int max_allowed = 0;
#pragma unroll
    for (int r = 0; r < EST_ROWS; r++) {
        const int L = first + r;
        const int i = L / GQA_GROUP;
        int allowed = 0;
        if (r < rows && L < GQA_GROUP * p.nq_max && i < nq)
            allowed = max(i + (nk - nq) + 1, 0);
        max_allowed = max(max_allowed, allowed);
        if (threadIdx.x == r) {
            row_allowed[r] = allowed;
            const int h = kv * GQA_GROUP + L % GQA_GROUP;
            const float *s = p.scales + ((i64)b * Q_HEADS + h) * 2;
            inv_scale[r][0] = allowed > 0 ? 1.f / s[0] : 0.f;
            inv_scale[r][1] = allowed > 0 ? 1.f / s[1] : 0.f;
        }
    }

    __syncthreads(); // row_allowed / inv_scale visible to every warp

    if (max_allowed > 0) { // uniform over the CTA
        for (int e = threadIdx.x; e < EST_ROWS * (HEAD_DIM / 4); e += THREADS) {
            const int r = e / (HEAD_DIM / 4), d4 = e % (HEAD_DIM / 4);
            const int L = first + r;
            const int i = L / GQA_GROUP;
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (r < rows && L < GQA_GROUP * p.nq_max && i < nq) {
                const int h = kv * GQA_GROUP + L % GQA_GROUP;
                v = reinterpret_cast<const float4 *>(
                    p.pooled_q + (((i64)b * Q_HEADS + h) * p.nq_max + i) *
                                     HEAD_DIM)[d4];
            }
            q_s[r][d4] = v;
        }

        // This thread copies float4 column col4 of tile rows row0 + m * ROW_STEP
        // (the swizzle of those rows is the same: ROW_STEP % 8 == 0).
        constexpr int ROW_STEP = THREADS / TILE_D4;
        static_assert(ROW_STEP % 8 == 0, "one swizzle for every copy");
        const int row0 = threadIdx.x / TILE_D4, col4 = threadIdx.x % TILE_D4;
        // Key block row0 of the current tile, dims [4 col4, 4 col4 + 4).
        const float *tile_src = p.pooled_k +
                                ((i64)b * KV_HEADS + kv) * p.nk_max * HEAD_DIM +
                                (i64)row0 * HEAD_DIM + 4 * col4;
        float4 *k_tile = phase_smem;
        float4 *k_dst = k_tile + tile_slot(row0, col4);
        const int tiles = (max_allowed + TILE_J - 1) / TILE_J;
        // Copies the TILE_D dims at src of this thread's key blocks of a tile
        // into buffer `buf`; blocks at or past the longest row (rows_left
        // counts from row0) are skipped: nobody reads their scores.
        auto copy_stage = [&](const float *src, int rows_left, int buf) {
#pragma unroll
            for (int m = 0; m < TILE_J / ROW_STEP; m++)
                if (m * ROW_STEP < rows_left)
                    cp_async16(k_dst + buf * TILE_J * TILE_D4 + m * ROW_STEP * TILE_D4,
                               src + m * ROW_STEP * HEAD_DIM);
            cp_async_commit();
        };

        int rows_left = max_allowed - row0;
        copy_stage(tile_src, rows_left, 0);
        for (int tile = 0; tile < tiles;
             tile++, tile_src += TILE_J * HEAD_DIM, rows_left -= TILE_J) {
            float high[EST_ROWS], low[EST_ROWS];
#pragma unroll
            for (int r = 0; r < EST_ROWS; r++)
                high[r] = low[r] = 0.f;
            // Warps whose 32 key blocks all lie past the longest row skip
            // the math (they still copy and meet the barriers).
            const bool active = tile * TILE_J + warp * 32 < max_allowed;
#pragma unroll 1
            for (int stage = 0; stage < D_STAGES; stage++) {
                cp_async_wait_all();
                __syncthreads(); // this stage landed; the other buffer is free
                if (stage + 1 < D_STAGES)
                    copy_stage(tile_src + (stage + 1) * TILE_D, rows_left,
                               (stage + 1) % 2);
                else if (tile + 1 < tiles)
                    copy_stage(tile_src + TILE_J * HEAD_DIM, rows_left - TILE_J, 0);
                if (active)
                    score_stage_at(stage, k_tile + (stage % 2) * TILE_J * TILE_D4,
                                   q_s, high, low);
            }
            const int j = tile * TILE_J + threadIdx.x;
#pragma unroll
            for (int r = 0; r < EST_ROWS; r++)
                if (j < row_allowed[r]) { // false for r >= rows
                    probs[(2 * r) * p.nk_max + j] = high[r] * inv_scale[r][0];
                    probs[(2 * r + 1) * p.nk_max + j] = low[r] * inv_scale[r][1];
                }
        }
        __syncthreads(); // logits complete; the K tile becomes histograms
    }

    // ---- selection: warp `warp` owns row `warp` -------------------------
    const int r = warp;
    const int L = first + r;
    if (r >= rows || L >= GQA_GROUP * p.nq_max)
        return; // no such row (no block barrier follows)
    const int i = L / GQA_GROUP;
    const int h = kv * GQA_GROUP + L % GQA_GROUP;
    const i64 row = ((i64)b * Q_HEADS + h) * p.nq_max + i;
    const int allowed = row_allowed[r];
    if (allowed <= 0) { // past the sequence, or Sk < Sq
        if (lane == 0)
            p.block_counts[row] = 0;
        return;
    }
    const int diag = allowed - 1;

    float *ph = probs + (2 * r) * p.nk_max;
    float *pl = ph + p.nk_max;
    u32 *hist_h = reinterpret_cast<u32 *>(phase_smem) + warp * 2 * RADIX_BUCKETS;
    u32 *hist_l = hist_h + RADIX_BUCKETS;
    {
        uint4 *z = reinterpret_cast<uint4 *>(hist_h);
#pragma unroll
        for (int k = 0; k < 2 * RADIX_BUCKETS / 4 / 32; k++)
            z[lane + 32 * k] = make_uint4(0u, 0u, 0u, 0u);
    }

    // Softmax of both bands (probabilities sum to 1).
    float mh = -INFINITY, ml = -INFINITY;
    for (int j = lane; j < allowed; j += 32) {
        mh = fmaxf(mh, ph[j]);
        ml = fmaxf(ml, pl[j]);
    }
    mh = warp_max(mh);
    ml = warp_max(ml);
    float sh = 0.f, sl = 0.f;
    for (int j = lane; j < allowed; j += 32) {
        const float eh = __expf(ph[j] - mh), el = __expf(pl[j] - ml);
        ph[j] = eh;
        pl[j] = el;
        sh += eh;
        sl += el;
    }
    sh = warp_sum(sh);
    sl = warp_sum(sl);
    const float inv_h = 1.f / sh, inv_l = 1.f / sl;
    __syncwarp(); // histograms cleared
    // Normalise, fused with radix pass 1 (bits 30..23; every key matches).
    for (int j = lane; j < allowed; j += 32) {
        const float xh = ph[j] * inv_h, xl = pl[j] * inv_l;
        ph[j] = xh;
        pl[j] = xl;
        atomicAdd(hist_h + (__float_as_uint(xh) >> 23), mass_fx(xh));
        atomicAdd(hist_l + (__float_as_uint(xl) >> 23), mass_fx(xl));
    }
    __syncwarp();
    u32 prefix_h = 0, prefix_l = 0, above_h = 0, above_l = 0;
    radix_resolve(hist_h, 23, T_HIGH_FX, prefix_h, above_h);
    radix_resolve(hist_l, 23, T_LOW_FX, prefix_l, above_l);
#pragma unroll
    for (int pass = 1; pass < 4; pass++) {
        const int shift = pass < 3 ? 23 - 8 * pass : 0; // 15, 7, 0
        const int known = pass < 3 ? shift + 8 : 7;     // bits >= known: prefix
        const u32 digit_mask = pass < 3 ? 0xffu : 0x7fu;
        __syncwarp(); // histograms cleared by radix_resolve
        for (int j = lane; j < allowed; j += 32) {
            const u32 kh = __float_as_uint(ph[j]), kl = __float_as_uint(pl[j]);
            if ((kh >> known) == (prefix_h >> known))
                atomicAdd(hist_h + ((kh >> shift) & digit_mask),
                          mass_fx(__uint_as_float(kh)));
            if ((kl >> known) == (prefix_l >> known))
                atomicAdd(hist_l + ((kl >> shift) & digit_mask),
                          mass_fx(__uint_as_float(kl)));
        }
        __syncwarp();
        radix_resolve(hist_h, shift, T_HIGH_FX, prefix_h, above_h);
        radix_resolve(hist_l, shift, T_LOW_FX, prefix_l, above_l);
    }
    const float vh = __uint_as_float(prefix_h), vl = __uint_as_float(prefix_l);
    const u64 mvh = mass_fx(vh), mvl = mass_fx(vl);

    // Ascending compaction, 32 candidates at a time.
    int *out = p.block_indices + row * p.nk_max;
    const u32 lower = (1u << lane) - 1u;
    int total = 0, ties_h = 0, ties_l = 0;
    for (int base = 0; base < allowed; base += 32) {
        const int j = base + lane;
        const bool in = j < allowed;
        const float xh = in ? ph[j] : 0.f, xl = in ? pl[j] : 0.f;
        const bool tie_h = in && xh == vh, tie_l = in && xl == vl;
        const u32 ball_h = __ballot_sync(0xffffffffu, tie_h);
        const u32 ball_l = __ballot_sync(0xffffffffu, tie_l);
        const bool keep_h =
            xh > vh ||
            (tie_h && above_h + mvh * (u64)(ties_h + __popc(ball_h & lower)) <
                          T_HIGH_FX);
        const bool keep_l =
            xl > vl ||
            (tie_l && above_l + mvl * (u64)(ties_l + __popc(ball_l & lower)) <
                          T_LOW_FX);
        const bool sel = in && ((FORCE_SINK && j == 0) ||
                                (FORCE_RECENT && j == diag) || keep_h || keep_l);
        const u32 ball = __ballot_sync(0xffffffffu, sel);
        if (sel)
            out[total + __popc(ball & lower)] = j;
        total += __popc(ball);
        ties_h += __popc(ball_h);
        ties_l += __popc(ball_l);
    }
    if (lane == 0) {
        p.block_counts[row] = total;
        if (p.selected_total)
            atomicAdd(p.selected_total, (unsigned long long)total);
        if (p.causal_total)
            atomicAdd(p.causal_total, (unsigned long long)allowed);
    }
}
