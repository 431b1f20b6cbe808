// Dual-band block scores, softmax and top-p selection (docs/method.md §5-6),
// fused per group of query-block rows: no probability matrix reaches
// global memory.
//
// Work split.  One CTA owns `rows_per_cta` rows (at most EST_ROWS, a
// warp each: THREADS / 32, fixed with the launch shape in gen/launch.c)
// that share a KV head: with G = p.group query heads per KV head, rows
// are numbered L = i * G + (h % G) per (batch, KV head), and CTA c takes
// L in [c * rows, (c + 1) * rows), so with GQA the query heads of a group
// (and, for rows > G, neighbouring query blocks) read every pooled-K tile
// once instead of once per row.  The head counts and the method's
// settings (thresholds, temperatures, calibrate, the forced blocks) are
// launch parameters (EstimateParams): they are read once per CTA or per
// row, and no division by G runs per key block.  The grid is 1-D with the
// row group slowest and reversed: causal row i has i + 1 + (nk - nq)
// blocks, so the longest rows start first and the short ones fill the
// tail.  The host
// picks rows_per_cta (runtime/cuda/launch.c): EST_ROWS when the
// probabilities fit shared memory twice per SM, fewer for very long
// sequences.
//
//   0. Band scales.  Each row's two scales (docs/method.md §4) come from the
//      energies pool_stats summed (band_scales, below); the
//      CTAs holding query block 0 store them in the workspace as well.
//   1. Scores, on tensor cores.  Per band the scores are K Q^T: one
//      mma.sync m16n8k8 TF32 product per 16 key blocks (M, rows of A =
//      pooled K) x 8 query rows (N, columns of B = pooled Q^T; zero past
//      the CTA's rows) x 8 dims, made fp32-accurate by the 3xTF32 split:
//      x = hi + lo with hi = tf32(x) and lo = x - hi (which the MMA
//      truncates to tf32), and the product is hi*hi + hi*lo + lo*hi (the
//      dropped lo*lo and lo's truncation are each < 2^-22 of it).  Q is split
//      once per CTA into shared memory (when hi and lo do not fit the
//      budget, 8 rows of HEAD_DIM 256, the fp32 rows are kept and each
//      stage splits them in registers), K in registers after each load.
//      Warp w owns key blocks [32 w, 32 w + 32) of every tile of TILE_J =
//      THREADS blocks (two m-tiles) and streams them through its own
//      double buffer of 32 blocks x TILE_D dims (cp.async 16 B, the source
//      pointer advanced once per stage; waited with cp.async.wait_group
//      and __syncwarp): no block barrier in the loop, and a warp whose
//      blocks all lie past the longest row is done.  The k order inside a
//      stage is free as long as A and B agree: k-step kk of stage s takes
//      dims 16 s + 4 t + 2 kk (k = t) and 16 s + 4 t + 2 kk + 1 (k = t + 4)
//      for lane 4 g + t, so each lane reads its K rows and its Q row as
//      one float4 per stage and every warp-wide read covers 512 contiguous
//      bytes (no bank conflicts, no swizzle).  The stage index is a
//      template argument (dispatched from a run-time loop: unrolling all
//      stages spills at HEAD_DIM 256), so whether the 8 dims of a k-step
//      are all in a band (B as is), none (no MMAs for that band) or some
//      (B masked per lane, only at a band edge) is known at compile time.
//      Logits (already divided by the band scale) go from the C fragments
//      to shared memory.  Why: the former version (a thread per key block,
//      FFMA against broadcast float4 reads of Q, a block barrier per
//      stage) took 598 us at 128K on an H100 (B 1, Hq 32, Hkv 8, D 128,
//      block 128); of its stall samples, 47% fell in the tile loop: ~25%
//      on the FFMA and the broadcast LDS.128 of Q (8 per 32 FFMA), 10-14%
//      on cp.async addresses recomputed per copy, ~8% at the barrier.
//   2. Softmax.  From here on warp w alone handles row w: no block
//      barriers.  Max, exp and sum per band with warp reductions.
//   3. Crossing value by radix select.  docs/method.md §6 keeps blocks in
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

static constexpr int EST_WARPS = THREADS / 32;
static constexpr int TILE_J = THREADS;     // key blocks per tile: 32 a warp
static constexpr int TILE_D = 16;          // dims per stage: two k-steps of 8
static constexpr int TILE_D4 = TILE_D / 4;
static constexpr int D_STAGES = HEAD_DIM / TILE_D;
static constexpr int RADIX_BUCKETS = 256;
static_assert(THREADS % 32 == 0 && EST_ROWS <= EST_WARPS && EST_ROWS <= 8,
              "whole warps, one per row; N = 8 rows");
static_assert(HEAD_DIM % TILE_D == 0 && D_STAGES % 2 == 0,
              "the double buffer alternates with the stage index");

// Shared memory reused by the two phases: each warp's double-buffered K
// stages (2 x 32 blocks x TILE_D4 float4) while scoring, then one
// histogram per warp and band while selecting.
static constexpr int WARP_STAGE_F4 = 32 * TILE_D4; // one stage of a warp
static constexpr int K_TILE_F4 = EST_WARPS * 2 * WARP_STAGE_F4;
static constexpr int HIST_F4 = EST_WARPS * 2 * RADIX_BUCKETS / 4;
static constexpr int PHASE_F4 = K_TILE_F4 > HIST_F4 ? K_TILE_F4 : HIST_F4;

// Pooled Q in shared memory, per stage s: [parts][EST_ROWS][TILE_D4] float4,
// so lane 4 g + t reads float4 t of row g at (s * Q_PARTS + part) *
// Q_PART_F4 + lane.  Two parts (tf32 hi, lo) where they fit 8 KiB, else
// one (fp32, split per stage): 8 rows at HEAD_DIM 256 would otherwise add
// 8 KiB and cost rows per CTA at ~1K key blocks (launch.c).
static constexpr bool Q_SPLIT = 2 * EST_ROWS * HEAD_DIM * 4 <= 8192;
static constexpr int Q_PARTS = Q_SPLIT ? 2 : 1;
static constexpr int Q_PART_F4 = EST_ROWS * TILE_D4;
static constexpr int Q_F4 = D_STAGES * Q_PARTS * Q_PART_F4;

// The two band scales of docs/method.md §4 for a query head of a sequence of
// nq query and nk key blocks, from the summed squared pooled values
// (sq of the head, sk of its KV head: all dims, high band, low band;
// gen/templates/pool_stats.cu adds them up), or the uncalibrated
// sqrt(d) * temp.  A band without any energy would divide by zero; the
// reference floors the scale the same way, which makes that band's logits
// all 0.
static __device__ __forceinline__ float band_rms(float sum_sq, int blocks, int dims) {
    return sqrtf(sum_sq / ((float)blocks * (float)dims));
}
static __device__ __forceinline__ float2 band_scales(const EstimateParams &p,
                                                     const float (&sq)[3],
                                                     const float (&sk)[3], int nq,
                                                     int nk) {
    float scale_high = sqrtf((float)HIGH_DIM) * p.temp_high;
    float scale_low = sqrtf((float)LOW_DIM) * p.temp_low;
    if (p.calibrate && nq > 0 && nk > 0) {
        const float rq = fmaxf(band_rms(sq[0], nq, HEAD_DIM), 1e-6f);
        const float rk = fmaxf(band_rms(sk[0], nk, HEAD_DIM), 1e-6f);
        const float th = sqrtf((float)HIGH_DIM / HEAD_DIM) *
                         (band_rms(sq[1], nq, HIGH_DIM) / rq) *
                         (band_rms(sk[1], nk, HIGH_DIM) / rk);
        const float tl = sqrtf((float)LOW_DIM / HEAD_DIM) *
                         (band_rms(sq[2], nq, LOW_DIM) / rq) *
                         (band_rms(sk[2], nk, LOW_DIM) / rk);
        scale_high = sqrtf((float)HIGH_DIM) * th;
        scale_low = sqrtf((float)LOW_DIM) * tl;
    }
    return make_float2(fmaxf(scale_high, 1e-12f), fmaxf(scale_low, 1e-12f));
}

// Fixed-point mass of a probability in [0, 1]: round(p * 2^31).
static __device__ __forceinline__ u32 mass_fx(float p) {
    return __float2uint_rn(p * 2147483648.0f);
}

// "mass < t" for a fixed-point mass m  <=>  m < ceil(t * 2^31): the host
// passes that bound per band (p.threshold_high_fx, p.threshold_low_fx,
// from the threshold rounded to fp32; runtime/cuda/launch.c).

// 16-byte cp.async from src + SRC_OFF bytes to shared dst + DST_OFF if
// `pred`.  Predicate and offsets stay inside the instruction: the copy
// costs no branch and no address arithmetic (the compiler would otherwise
// sink a copy of the address computation into every guarded copy; the
// global offset must fit the copy's signed 12-bit immediate).
template <int DST_OFF, int SRC_OFF>
static __device__ __forceinline__ void cp_async16_if(bool pred, u32 dst,
                                                     const float *src) {
    static_assert(SRC_OFF >= -2048 && SRC_OFF < 2048, "LDGSTS immediate");
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %0, 0;\n\t"
                 "@p cp.async.cg.shared.global [%1+%3], [%2+%4], 16;\n\t}\n"
                 ::"r"((int)pred), "r"(dst), "l"(src), "n"(DST_OFF),
                 "n"(SRC_OFF));
}

// 16-byte shared load from addr + OFF bytes (volatile: it stays after the
// cp.async wait and __syncwarp that make the data visible).
template <int OFF>
static __device__ __forceinline__ float4 lds128(u32 addr) {
    float4 v;
    asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4+%5];\n"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(addr), "n"(OFF));
    return v;
}

static __device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

static __device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
}

// Which of the 8 dims of k-step kk of stage s (see the header) lie in the
// band: bit 2 t + e for dim s * TILE_D + 4 t + 2 kk + e.
static constexpr u32 kstep_band(bool high, int s, int kk) {
    u32 mask = 0;
    for (int t = 0; t < 4; t++)
        for (int e = 0; e < 2; e++) {
            const int d = s * TILE_D + 4 * t + 2 * kk + e;
            if (high ? in_high_band(d) : in_low_band(d))
                mask |= 1u << (2 * t + e);
        }
    return mask;
}

// x = hi + lo for 3xTF32: hi = tf32(x) rounded to nearest (ties away:
// add half an ulp, clear the 13 low bits), lo = x - hi (exact, |lo| <=
// 2^-11 |x|).  lo goes to the MMA as is: a .tf32 operand's 13 low bits are
// ignored, which truncates lo by < 2^-22 |x|, as small as the dropped
// lo * lo term.  Integer ops: cvt.rna.tf32.f32 compiles to the same plus an
// isfinite select per value; pooled K and Q are finite.
static __device__ __forceinline__ void tf32_split(float x, u32 &hi, u32 &lo) {
    hi = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
    lo = __float_as_uint(x - __uint_as_float(hi));
}

// c += A B, m16n8k8, fp32 accumulators (fragments: see score_stage).
static __device__ __forceinline__ void mma_tf32(float (&c)[4], u32 a0,
                                                u32 a1, u32 a2, u32 a3, u32 b0,
                                                u32 b1) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
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

// k-step KK of stage STAGE for one band: c += A B in 3xTF32, A from the
// split K float4s of rows g (k0) and g + 8 (k8), B from the split Q float4.
// Skipped when no dim of the k-step is in the band; at a band edge each
// lane zeroes B for its dims outside it.
template <int STAGE, int KK, bool HIGH>
static __device__ __forceinline__ void band_mma(
    float (&c)[4], const u32 (&k0h)[4], const u32 (&k0l)[4],
    const u32 (&k8h)[4], const u32 (&k8l)[4], const u32 (&qh)[4],
    const u32 (&ql)[4]) {
    constexpr u32 mask = kstep_band(HIGH, STAGE, KK);
    constexpr int e0 = 2 * KK, e1 = 2 * KK + 1;
    if constexpr (mask != 0) {
        u32 bh0 = qh[e0], bh1 = qh[e1], bl0 = ql[e0], bl1 = ql[e1];
        if constexpr (mask != 0xffu) {
            const int t = threadIdx.x % 4;
            const bool in0 = (mask >> (2 * t)) & 1u;
            const bool in1 = (mask >> (2 * t + 1)) & 1u;
            bh0 = in0 ? bh0 : 0u;
            bl0 = in0 ? bl0 : 0u;
            bh1 = in1 ? bh1 : 0u;
            bl1 = in1 ? bl1 : 0u;
        }
        // Small terms first.
        mma_tf32(c, k0l[e0], k8l[e0], k0l[e1], k8l[e1], bh0, bh1);
        mma_tf32(c, k0h[e0], k8h[e0], k0h[e1], k8h[e1], bl0, bl1);
        mma_tf32(c, k0h[e0], k8h[e0], k0h[e1], k8h[e1], bh0, bh1);
    }
}

// Stage STAGE (dims [STAGE * TILE_D, +TILE_D)) of the warp's 32 key blocks
// against the CTA's Q rows, into acc[band][mt] (band 0 high, 1 low).  kb
// and q: shared addresses of float4 `lane` of the stage's buffer and of
// q_s.  Fragments of m16n8k8 .tf32 for lane 4 g + t (PTX ISA): a0 =
// A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4]; b0 = B[t][g],
// b1 = B[t+4][g]; c = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1].  Row
// m of m-tile mt is buffer row 16 mt + m (float4s 4 (16 mt + m) .. + 3;
// which key block that is: see the kernel).  With A[m][k] = K[row][dim(k)],
// B[k][n] = Q[n][dim(k)], dim(t) = 16 STAGE + 4 t + 2 kk and dim(t + 4) =
// dim(t) + 1, a lane's A values are components 2 kk and 2 kk + 1 of float4
// t of rows g and g + 8, and its B values the same components of float4 t
// of Q row g.
template <int STAGE>
static __device__ __forceinline__ void score_stage(u32 kb, u32 q,
                                                   float (&acc)[2][2][4]) {
    if constexpr ((kstep_band(true, STAGE, 0) | kstep_band(true, STAGE, 1) |
                   kstep_band(false, STAGE, 0) | kstep_band(false, STAGE, 1)) ==
                  0)
        return; // no dim of the stage is in either band
    // B: Q row g, dims 16 STAGE + 4 t .. + 3; rows g >= EST_ROWS are 0.
    u32 qh[4] = {0u, 0u, 0u, 0u}, ql[4] = {0u, 0u, 0u, 0u};
    if (EST_ROWS == 8 || threadIdx.x % 32 < 4 * EST_ROWS) {
        constexpr int Q_OFF = STAGE * Q_PARTS * Q_PART_F4 * 16;
        const float4 h = lds128<Q_OFF>(q);
        const float x[4] = {h.x, h.y, h.z, h.w};
        if constexpr (Q_SPLIT) {
            const float4 l = lds128<Q_OFF + Q_PART_F4 * 16>(q);
            const float y[4] = {l.x, l.y, l.z, l.w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                qh[e] = __float_as_uint(x[e]);
                ql[e] = __float_as_uint(y[e]);
            }
        } else {
#pragma unroll
            for (int e = 0; e < 4; e++)
                tf32_split(x[e], qh[e], ql[e]);
        }
    }
    const float4 rows[4] = {lds128<0>(kb), lds128<512>(kb), lds128<1024>(kb),
                            lds128<1536>(kb)}; // buffer rows g + 8 i
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const float4 r0 = rows[2 * mt];     // buffer row 16 mt + g
        const float4 r8 = rows[2 * mt + 1]; // buffer row 16 mt + g + 8
        const float k0[4] = {r0.x, r0.y, r0.z, r0.w};
        const float k8[4] = {r8.x, r8.y, r8.z, r8.w};
        u32 k0h[4], k0l[4], k8h[4], k8l[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            tf32_split(k0[e], k0h[e], k0l[e]);
            tf32_split(k8[e], k8h[e], k8l[e]);
        }
        band_mma<STAGE, 0, true>(acc[0][mt], k0h, k0l, k8h, k8l, qh, ql);
        band_mma<STAGE, 1, true>(acc[0][mt], k0h, k0l, k8h, k8l, qh, ql);
        band_mma<STAGE, 0, false>(acc[1][mt], k0h, k0l, k8h, k8l, qh, ql);
        band_mma<STAGE, 1, false>(acc[1][mt], k0h, k0l, k8h, k8l, qh, ql);
    }
}

// score_stage<stage> for a run-time stage in [LO, HI), by bisection (log2
// D_STAGES branches).  The stage loop stays a loop (unrolling all D_STAGES
// stages lets the scheduler stretch live ranges across them and spill for
// HEAD_DIM 256).
template <int LO = 0, int HI = D_STAGES>
static __device__ __forceinline__ void score_stage_at(int stage, u32 kb, u32 q,
                                                      float (&acc)[2][2][4]) {
    if constexpr (HI - LO == 1) {
        score_stage<LO>(kb, q, acc);
    } else {
        constexpr int MID = (LO + HI) / 2;
        if (stage < MID)
            score_stage_at<LO, MID>(stage, kb, q, acc);
        else
            score_stage_at<MID, HI>(stage, kb, q, acc);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS, 512 / THREADS)
prism_estimate(const EstimateParams p) {
    extern __shared__ float probs[]; // [rows_per_cta][2][nk_max] logits, then p
    __shared__ float4 phase_smem[PHASE_F4];
    __shared__ float4 q_s[Q_F4]; // pooled Q rows (layout: Q_SPLIT)
    __shared__ float inv_scale[EST_ROWS][2];
    __shared__ int row_allowed[EST_ROWS];

    const int rows = p.rows_per_cta;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int G = p.group, kv_heads = p.kv_heads; // launch parameters
    const int groups = (G * p.nq_max + rows - 1) / rows;
    const int kv = (int)blockIdx.x % kv_heads;
    const int b = ((int)blockIdx.x / kv_heads) % p.batch;
    const int group = groups - 1 - (int)blockIdx.x / (kv_heads * p.batch);
    const int first = group * rows; // L of the CTA's row 0

    int begin, len_q, len_k;
    sequence_range(p.cu_seqlens_q, p.seqlen_q, b, begin, len_q);
    sequence_range(p.cu_seqlens_k, p.seqlen_k, b, begin, len_k);
    const int nq = (len_q + BLOCK_SIZE - 1) / BLOCK_SIZE;
    const int nk = (len_k + BLOCK_SIZE - 1) / BLOCK_SIZE;

    // On sm_90 this kernel is launched as pool_stats' dependent (runtime/
    // launch.c): its CTAs may start in that kernel's tail, and everything
    // below reads what it wrote (band energies, pooled Q and K).
    pdl_wait();

    // Block-causal lengths: row i allows j in [0, i + (nk - nq)].  Rows
    // past the sequence (or with Sk < Sq) allow nothing.  Row r is L =
    // first + r, query block L / G: stepped from the first row's, one
    // division per CTA rather than one per row (G is a run-time value).
    int max_allowed = 0, my_allowed = 0;
    {
        int i = first / G, head_in_group = first - i * G;
#pragma unroll
        for (int r = 0; r < EST_ROWS; r++) {
            int allowed = 0;
            if (r < rows && i < p.nq_max && i < nq)
                allowed = max(i + (nk - nq) + 1, 0);
            max_allowed = max(max_allowed, allowed);
            my_allowed = threadIdx.x == r ? allowed : my_allowed;
            if (++head_in_group == G) {
                head_in_group = 0;
                i++;
            }
        }
    }
    // Thread r < EST_ROWS computes row r's band scales: its head's energies
    // are loaded here and used after the Q rows' loads below, so the two
    // waits overlap.  (One branch per row inside the loop above, as the
    // scales' loads once were, runs the rows one after the other, each
    // waiting for its load.)
    float stats_q[3] = {0.f, 0.f, 0.f}, stats_k[3] = {0.f, 0.f, 0.f};
    const int my_head = kv * G + (first + (int)threadIdx.x) % G;
    if (threadIdx.x < EST_ROWS)
        for (int c = 0; c < 3; c++) {
            stats_q[c] = p.stats_q[((i64)b * p.q_heads + my_head) * 3 + c];
            stats_k[c] = p.stats_k[((i64)b * kv_heads + kv) * 3 + c];
        }

    // Lane l copies float4 l % 4 (dims 4 (l % 4) .. + 3 of the stage) of
    // the warp's key blocks 4 (l / 4) + m, m = 0..3, to float4 l + 32 m of
    // the warp's stage buffer: buffer row l / 4 + 8 m holds block
    // 4 (row % 8) + row / 8.  Every copy instruction reads 8 whole 64-byte
    // row segments and writes 512 contiguous bytes, and a lane's four
    // sources lie within 2 KiB of one pointer (block 4 (l / 4) + 2): the
    // offsets fit the copy's immediate, so a stage costs one pointer
    // increment.  In score_stage, row g of m-tile mt is block 4 g + 2 mt and
    // row g + 8 block 4 g + 2 mt + 1: lane 4 g + t ends with blocks 4 g ..
    // 4 g + 3 of rows 2 t and 2 t + 1.  Blocks at or past the longest row
    // are not copied (nobody reads their scores; they may lie past the
    // sequence or nk_max): rows_left counts from the lane's first block.
    float4 *k_buf = phase_smem + warp * 2 * WARP_STAGE_F4;
    const u32 k_dst = smem_u32(k_buf + lane), q_addr = smem_u32(q_s + lane);
    const float *k_src = p.pooled_k +
                         ((i64)b * kv_heads + kv) * p.nk_max * HEAD_DIM +
                         (i64)(32 * warp + 4 * (lane / 4) + 2) * HEAD_DIM +
                         4 * (lane % 4);
    int rows_left = max_allowed - (32 * warp + 4 * (lane / 4));
    auto copy_stage = [&](u32 dst) {
        constexpr int ROW = HEAD_DIM * 4; // bytes
        cp_async16_if<0, -2 * ROW>(0 < rows_left, dst, k_src);
        cp_async16_if<512, -ROW>(1 < rows_left, dst, k_src);
        cp_async16_if<1024, 0>(2 < rows_left, dst, k_src);
        cp_async16_if<1536, ROW>(3 < rows_left, dst, k_src);
        cp_async_commit();
    };
    if (32 * warp < max_allowed) // stage 0 of tile 0 flies while Q loads
        copy_stage(k_dst);

    if (max_allowed > 0) { // uniform over the CTA
        for (int e = threadIdx.x; e < EST_ROWS * (HEAD_DIM / 4); e += THREADS) {
            const int r = e / (HEAD_DIM / 4), d4 = e % (HEAD_DIM / 4);
            const int L = first + r;
            const int i = L / G; // EST_ROWS x HEAD_DIM / 4 / THREADS times a CTA
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (r < rows && i < p.nq_max && i < nq) {
                const int h = kv * G + (L - i * G);
                v = reinterpret_cast<const float4 *>(
                    p.pooled_q + (((i64)b * p.q_heads + h) * p.nq_max + i) *
                                     HEAD_DIM)[d4];
            }
            float4 *dst = q_s + (d4 / TILE_D4) * Q_PARTS * Q_PART_F4 +
                          r * TILE_D4 + d4 % TILE_D4;
            if constexpr (Q_SPLIT) {
                u32 hi[4], lo[4];
                tf32_split(v.x, hi[0], lo[0]);
                tf32_split(v.y, hi[1], lo[1]);
                tf32_split(v.z, hi[2], lo[2]);
                tf32_split(v.w, hi[3], lo[3]);
                dst[0] =
                    make_float4(__uint_as_float(hi[0]), __uint_as_float(hi[1]),
                                __uint_as_float(hi[2]), __uint_as_float(hi[3]));
                dst[Q_PART_F4] =
                    make_float4(__uint_as_float(lo[0]), __uint_as_float(lo[1]),
                                __uint_as_float(lo[2]), __uint_as_float(lo[3]));
            } else {
                dst[0] = v;
            }
        }
    }
    if (threadIdx.x < EST_ROWS) {
        const int r = threadIdx.x;
        const float2 s = band_scales(p, stats_q, stats_k, nq, nk);
        row_allowed[r] = my_allowed;
        inv_scale[r][0] = my_allowed > 0 ? 1.f / s.x : 0.f;
        inv_scale[r][1] = my_allowed > 0 ? 1.f / s.y : 0.f;
        if (r < rows && first + r < G) // query block 0's rows: one a head
            reinterpret_cast<float2 *>(p.scales)[(i64)b * p.q_heads + my_head] = s;
    }
    __syncthreads(); // row_allowed, inv_scale and Q visible to every warp

    if (max_allowed > 0) {
        // Warp `warp` scores key blocks tile * TILE_J + 32 warp + [0, 32) of
        // every tile that starts before the longest row ends.
        for (int j0 = 32 * warp; j0 < max_allowed; j0 += TILE_J) {
            float acc[2][2][4]; // [band][m-tile][fragment]
#pragma unroll
            for (int band = 0; band < 2; band++)
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        acc[band][mt][e] = 0.f;
            // Buffer (stage % 2) is read, the other one refilled; the two
            // addresses swap every stage (D_STAGES is even).
            u32 k_read = k_dst, k_write = k_dst + WARP_STAGE_F4 * 16;
#pragma unroll 1
            for (int stage = 0; stage < D_STAGES; stage++) {
                cp_async_wait_all();
                __syncwarp(); // this stage landed; the other buffer is free
                const bool last = stage + 1 == D_STAGES;
                if (!last || j0 + TILE_J < max_allowed) { // else nothing left
                    // The next stage, or stage 0 of the warp's next tile.
                    k_src += last ? TILE_J * HEAD_DIM - (HEAD_DIM - TILE_D)
                                  : TILE_D;
                    rows_left -= last ? TILE_J : 0;
                    copy_stage(k_write);
                }
                score_stage_at(stage, k_read, q_addr, acc);
                const u32 k_next = k_write;
                k_write = k_read;
                k_read = k_next;
            }
            // C fragments: blocks j0 + 4 g + 2 mt (+ 1), rows 2 t and 2 t + 1.
            const int g = lane / 4, t = lane % 4;
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int r = 2 * t + e;
                if (EST_ROWS == 8 || r < EST_ROWS) {
                    const int allowed = row_allowed[r]; // 0 for r >= rows
                    const float ish = inv_scale[r][0], isl = inv_scale[r][1];
#pragma unroll
                    for (int mt = 0; mt < 2; mt++)
#pragma unroll
                        for (int half = 0; half < 2; half++) {
                            const int j = j0 + 4 * g + 2 * mt + half;
                            if (j < allowed) {
                                probs[(2 * r) * p.nk_max + j] =
                                    acc[0][mt][2 * half + e] * ish;
                                probs[(2 * r + 1) * p.nk_max + j] =
                                    acc[1][mt][2 * half + e] * isl;
                            }
                        }
                }
            }
        }
        __syncthreads(); // logits complete; the K stages become histograms
    }
    // The attention's schedule kernel (this kernel's dependent) may start
    // once every CTA got here: it waits for the whole selection anyway,
    // and starting it earlier would hold an SM's registers through the
    // scoring of the grid's later waves.
    pdl_launch_dependents();

    // ---- selection: warp `warp` owns row `warp` -------------------------
    const int r = warp;
    const int L = first + r;
    if (r >= rows || L >= G * p.nq_max)
        return; // no such row (no block barrier follows)
    const int i = L / G; // once per warp
    const int h = kv * G + (L - i * G);
    const i64 row = ((i64)b * p.q_heads + h) * p.nq_max + i;
    const u32 t_high = p.threshold_high_fx, t_low = p.threshold_low_fx;
    const bool force_sink = p.force_sink != 0;
    // force_recent: the local window of recent_blocks ending at the diagonal
    const int recent = p.force_recent != 0 ? p.recent_blocks : 0;
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
    radix_resolve(hist_h, 23, t_high, prefix_h, above_h);
    radix_resolve(hist_l, 23, t_low, prefix_l, above_l);
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
        radix_resolve(hist_h, shift, t_high, prefix_h, above_h);
        radix_resolve(hist_l, shift, t_low, prefix_l, above_l);
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
                          t_high);
        const bool keep_l =
            xl > vl ||
            (tie_l && above_l + mvl * (u64)(ties_l + __popc(ball_l & lower)) <
                          t_low);
        const bool sel = in && ((force_sink && j == 0) ||
                                j > diag - recent || keep_h || keep_l);
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
