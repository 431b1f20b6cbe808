// Block pooling and band energies (docs/method.md §2-3, the sums section 4
// calibrates with).
//
// prism_pool_stats: one CTA pools one block of BLOCK_SIZE tokens of one head
// (query heads first, then KV heads, along gridDim.y) into its fp32 mean,
// dividing by the number of VALID tokens of a partial last block.  It then
// adds the block's squared values -- over all dims, the high band and the
// low band -- into per-(batch, head) sums with one atomicAdd each, so the
// calibration needs no second pass over the pooled tensors.
//
// The estimator turns those sums into the two band scales of the method section
// 4 (band_scales, gen/templates/estimate.cu): they used to come from a kernel of
// their own (one CTA), whose 3 us and launch were ~8% of the estimator
// at 8K tokens on an H200 (docs/performance.md).
//
// Pooling reads Q and K once, so it runs at memory bandwidth: every load is
// 16 bytes (8 elements; POOL_LANES = HEAD_DIM / 8 lanes cover a token row),
// THREADS / POOL_LANES token rows are summed side by side, and the token
// loop is unrolled so each thread keeps several loads in flight (they are
// streamed past L1: nothing is read twice).  The rows of a warp are then
// folded with shuffles and the warps through shared memory.  The host
// guarantees: D stride 1, sequence / head / batch strides that are
// multiples of 8 elements, 16-byte aligned bases, stats zeroed before the
// launch.
//
// prism_pool_stats_paged is the same kernel over paged K (prism.h,
// prism_paged_kv): a K block lies in one page (page_size is a multiple of
// BLOCK_SIZE), so only its first row's address differs, and full blocks
// go through the pooled-key cache when there is one.  With a cache the
// key CTAs follow the rule of pool_stats_params.h: one per block from the
// chunk's prefix to the sequence's end, and sweep CTAs that serve the
// prefix's blocks POOL_SWEEP_BLOCKS at a time (pool_sweep), so that a
// chunk over a long cached prefix does not launch a CTA per prefix block
// and head only for it to find its entry written.

static constexpr int POOL_VEC = 8;                     // elements per load
static constexpr int POOL_LANES = HEAD_DIM / POOL_VEC; // lanes per token row
static constexpr int POOL_ROWS = THREADS / POOL_LANES; // tokens in parallel
static constexpr int POOL_WARPS = THREADS / 32;
// 16-byte loads in flight per thread: with 128 threads at HEAD_DIM 128 a
// thread's whole share of a 128-token block in one round trip (4 took 28.8
// instead of 27.0 us at 8K on an H200: docs/performance.md).
static constexpr int POOL_UNROLL = 16;
static_assert(32 % POOL_LANES == 0, "a token row within one warp");
static_assert(THREADS % 32 == 0, "whole warps");

// 16 bytes that are read exactly once: not kept in L1.
static __device__ __forceinline__ uint4 load_stream16(const u16 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

static __device__ __forceinline__ void add8(const uint4 w, float (&s)[POOL_VEC]) {
    const u32 words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int e = 0; e < 4; e++) {
        float lo, hi;
        input2_to_float(words[e], lo, hi);
        s[2 * e] += lo;
        s[2 * e + 1] += hi;
    }
}

// POOLED-KEY CACHE (prism_paged_kv.pooled_keys).  A full K block's
// entry holds its mean, its three band energies and a mark (1.0f once
// written; the caller zeroes entries).  A marked entry is copied into
// pooled_k and its energies added to the head's sums, exactly what
// pooling the block would add; an unmarked one is pooled below and
// written, the mark last.  Returns whether the entry served the block.
static __device__ __forceinline__ bool pool_key_cached(const PoolParams &p,
                                                       const float *entry, int b,
                                                       int head, int block) {
    const float mark = *reinterpret_cast<const volatile float *>(entry + HEAD_DIM + 3);
    if (mark != 1.0f)
        return false;
    __threadfence(); // the mark before the entry (another CTA may write it)
    float *out = p.pooled_k + (((i64)b * p.kv_heads + head) * p.nk_max + block) * HEAD_DIM;
    for (int d = threadIdx.x; d < HEAD_DIM; d += THREADS)
        out[d] = entry[d];
    if (threadIdx.x == 0) {
        float *stats = p.stats_k + ((i64)b * p.kv_heads + head) * 3;
        for (int c = 0; c < 3; c++)
            atomicAdd(stats + c, entry[HEAD_DIM + c]);
    }
    return true;
}

// One block of one head: block `block` of sequence b (`begin`, `len`:
// its range) of query head `head` (is_q) or KV head `head`.  PAGED: the K
// blocks of prism_pool_stats_paged, from pages and through the pooled-key
// cache (pool_key_cached); the contiguous kernel's code is this one with
// PAGED false, unchanged.  Every thread of the CTA calls it with the same
// arguments; it may return early, all threads together.
template <bool PAGED>
static __device__ __forceinline__ void pool_block(const PoolParams &p,
                                                  const PoolPagedParams &pg,
                                                  bool is_q, int head, int b,
                                                  int block, int begin,
                                                  int len) {
    __shared__ float4 partial[POOL_WARPS][HEAD_DIM / 4];
    __shared__ float energy[POOL_WARPS][3];

    const int q_heads = p.q_heads; // heads are launch parameters
    const int first = block * BLOCK_SIZE;
    if (first >= len)
        return; // past this sequence's last block
    const int count = min(BLOCK_SIZE, len - first);

    const u16 *base = is_q ? p.q : p.k;
    const i64 stride_s = is_q ? p.q_stride_s : p.k_stride_s;
    const i64 batch_offset = p.cu_seqlens_q || p.cu_seqlens_k
                                 ? (i64)begin * stride_s
                                 : (i64)b * (is_q ? p.q_stride_b : p.k_stride_b);
    base += batch_offset + (i64)head * (is_q ? p.q_stride_h : p.k_stride_h);
    float *entry = nullptr; // PAGED: the block's pooled-key cache entry
    if constexpr (PAGED) {
        if (!is_q) {
            // the page's base, less `first` rows: src below adds them back
            const int per_page = pg.page_size / BLOCK_SIZE;
            const i64 page = __ldg(pg.page_table + (i64)b * pg.max_pages + block / per_page);
            base = p.k + page * p.k_stride_b + (i64)head * p.k_stride_h +
                   (i64)((block % per_page) * BLOCK_SIZE - first) * stride_s;
            if (pg.pooled_keys && count == BLOCK_SIZE) {
                entry = pg.pooled_keys +
                        ((page * per_page + block % per_page) * p.kv_heads + head) *
                            (HEAD_DIM + 4);
                if (pool_key_cached(p, entry, b, head, block))
                    return;
            }
        }
    }

    const int lane = threadIdx.x % POOL_LANES; // dims [8 lane, 8 lane + 8)
    const int row = threadIdx.x / POOL_LANES;
    const u16 *src = base + (i64)(first + row) * stride_s + POOL_VEC * lane;
    const i64 step = (i64)POOL_ROWS * stride_s;
    float s[POOL_VEC];
#pragma unroll
    for (int e = 0; e < POOL_VEC; e++)
        s[e] = 0.f;
    // POOL_UNROLL loads in flight per thread before any of them is summed
    // (a missing token reads as zeros, which add nothing).
    for (int t = row; t < count; t += POOL_UNROLL * POOL_ROWS) {
        uint4 w[POOL_UNROLL];
#pragma unroll
        for (int u = 0; u < POOL_UNROLL; u++)
            w[u] = t + u * POOL_ROWS < count ? load_stream16(src + u * step)
                                             : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
        for (int u = 0; u < POOL_UNROLL; u++)
            add8(w[u], s);
        src += POOL_UNROLL * step;
    }
    // The estimator (launched as this kernel's dependent on sm_90) may
    // start its CTAs once every CTA here is past its loads: they take the
    // SMs of the tail and wait (pdl_wait) while the last sums finish.
    pdl_launch_dependents();

    // Fold the token rows of the warp (lanes POOL_LANES apart) ...
#pragma unroll
    for (int offset = POOL_LANES; offset < 32; offset <<= 1)
#pragma unroll
        for (int e = 0; e < POOL_VEC; e++)
            s[e] += __shfl_xor_sync(0xffffffffu, s[e], offset);
    // ... then the warps.
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 < POOL_LANES) {
        partial[warp][2 * lane] = make_float4(s[0], s[1], s[2], s[3]);
        partial[warp][2 * lane + 1] = make_float4(s[4], s[5], s[6], s[7]);
    }
    __syncthreads();

    float sq_all = 0.f, sq_high = 0.f, sq_low = 0.f;
    const float inv = 1.f / (float)count;
    const int nblocks = is_q ? p.nq_max : p.nk_max;
    float *out = (is_q ? p.pooled_q : p.pooled_k) +
                 (((i64)b * (is_q ? q_heads : p.kv_heads) + head) * nblocks +
                  block) * HEAD_DIM;
    for (int d = threadIdx.x; d < HEAD_DIM; d += THREADS) {
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < POOL_WARPS; w++)
            sum += reinterpret_cast<const float *>(partial[w])[d];
        const float mean = sum * inv;
        out[d] = mean;
        if constexpr (PAGED)
            if (entry)
                entry[d] = mean;
        const float sq = mean * mean;
        sq_all += sq;
        sq_high += in_high_band(d) ? sq : 0.f;
        sq_low += in_low_band(d) ? sq : 0.f;
    }
    if constexpr (PAGED)
        if (entry)
            __threadfence(); // this thread's means before thread 0's mark
    sq_all = warp_sum(sq_all);
    sq_high = warp_sum(sq_high);
    sq_low = warp_sum(sq_low);
    if (threadIdx.x % 32 == 0) {
        energy[warp][0] = sq_all;
        energy[warp][1] = sq_high;
        energy[warp][2] = sq_low;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float total[3] = {0.f, 0.f, 0.f};
        for (int w = 0; w < POOL_WARPS; w++)
            for (int c = 0; c < 3; c++)
                total[c] += energy[w][c];
        float *stats = (is_q ? p.stats_q : p.stats_k) +
                       ((i64)b * (is_q ? q_heads : p.kv_heads) + head) * 3;
        for (int c = 0; c < 3; c++)
            atomicAdd(stats + c, total[c]);
        if constexpr (PAGED) {
            if (entry) {
                // the energies, then the mark: a reader that sees the
                // mark sees the entry (every thread fenced its means)
                for (int c = 0; c < 3; c++)
                    entry[HEAD_DIM + c] = total[c];
                __threadfence();
                *reinterpret_cast<volatile float *>(entry + HEAD_DIM + 3) = 1.0f;
            }
        }
    }
}

// PREFIX SWEEP (with a pooled-key cache, pool_stats_params.h): the CTA
// serves key blocks [lo, hi) of sequence b, KV head `head`, all full
// blocks of the chunk's prefix.  A thread a block reads the entry's mark
// and, marked, its energies; the CTA adds the energies to the head's sums
// with one atomic each and copies the marked entries' means into pooled_k
// with 16-byte loads spread over all threads -- what one CTA per block
// (pool_key_cached) would do, without a CTA per block.  Returns how many
// blocks' entries are not marked (a cache that does not hold this
// prefix), listed in `missing` (shared memory): the caller pools and
// writes those (pool_block), one after another.
static __device__ int pool_sweep(const PoolParams &p, const PoolPagedParams &pg,
                                 int b, int head, int lo, int hi,
                                 int *missing) {
    __shared__ const float *entries[POOL_SWEEP_BLOCKS]; // null: not marked
    __shared__ int missing_count;
    __shared__ float sweep_energy[POOL_WARPS][3];
    const int n = hi - lo; // 1..POOL_SWEEP_BLOCKS
    const int per_page = pg.page_size / BLOCK_SIZE;
    if (threadIdx.x == 0)
        missing_count = 0;
    __syncthreads();
    float e[3] = {0.f, 0.f, 0.f};
    for (int i = threadIdx.x; i < n; i += THREADS) {
        const int block = lo + i;
        const i64 page = __ldg(pg.page_table + (i64)b * pg.max_pages + block / per_page);
        const float *entry = pg.pooled_keys +
                             ((page * per_page + block % per_page) * p.kv_heads + head) *
                                 (HEAD_DIM + 4);
        const float mark = *reinterpret_cast<const volatile float *>(entry + HEAD_DIM + 3);
        if (mark == 1.0f) {
            __threadfence(); // the mark before the entry (as pool_key_cached)
            for (int c = 0; c < 3; c++)
                e[c] += entry[HEAD_DIM + c];
            entries[i] = entry;
        } else {
            entries[i] = nullptr;
            missing[atomicAdd(&missing_count, 1)] = block;
        }
    }
    for (int c = 0; c < 3; c++)
        e[c] = warp_sum(e[c]);
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0)
        for (int c = 0; c < 3; c++)
            sweep_energy[warp][c] = e[c];
    __syncthreads(); // entries, missing and the energies visible
    if (threadIdx.x == 0) {
        float total[3] = {0.f, 0.f, 0.f};
        for (int w = 0; w < POOL_WARPS; w++)
            for (int c = 0; c < 3; c++)
                total[c] += sweep_energy[w][c];
        float *stats = p.stats_k + ((i64)b * p.kv_heads + head) * 3;
        for (int c = 0; c < 3; c++)
            atomicAdd(stats + c, total[c]);
    }
    float4 *out = reinterpret_cast<float4 *>(
        p.pooled_k + (((i64)b * p.kv_heads + head) * p.nk_max + lo) * HEAD_DIM);
    for (int x = threadIdx.x; x < n * (HEAD_DIM / 4); x += THREADS) {
        const float *entry = entries[x / (HEAD_DIM / 4)];
        if (entry)
            out[x] = reinterpret_cast<const float4 *>(entry)[x % (HEAD_DIM / 4)];
    }
    return missing_count;
}

// A sweep's blocks whose entries were not marked, pooled and written one
// after another.  Not inlined: a second inlined copy of pool_block, or
// one in a loop, took the paged kernel from 48 to 72-80 registers (sm_80
// and sm_90a), for a path only a cache that lacks the prefix takes; the
// call costs it 8.  The parameter block is __grid_constant__, so the
// references reach it without a copy to the stack.
static __device__ __noinline__ void pool_missing(const PoolParams &p,
                                                 const PoolPagedParams &pg,
                                                 int b, int head, int begin,
                                                 int len, const int *missing,
                                                 int count) {
    for (int m = 0; m < count; m++)
        pool_block<true>(p, pg, false, head, b, missing[m], begin, len);
}

// The CTA's block: blockIdx.x of its head (query heads first, then KV
// heads, along gridDim.y) -- or, for the key CTAs of a paged launch with
// a pooled-key cache, the rule of pool_stats_params.h: fresh CTA x pools
// block prefix + x, the CTAs after the fresh ones sweep the prefix.
template <bool PAGED>
static __device__ __forceinline__ void pool_stats(const PoolParams &p,
                                                  const PoolPagedParams &pg) {
    const int q_heads = p.q_heads; // heads are launch parameters
    const bool is_q = (int)blockIdx.y < q_heads;
    const int head = is_q ? (int)blockIdx.y : (int)blockIdx.y - q_heads;
    const int b = blockIdx.z;

    int begin, len;
    sequence_range(is_q ? p.cu_seqlens_q : p.cu_seqlens_k,
                   is_q ? p.seqlen_q : p.seqlen_k, b, begin, len);
    int block = blockIdx.x;
    if constexpr (PAGED) {
        if (!is_q && pg.pooled_keys) {
            int begin_q, len_q;
            sequence_range(p.cu_seqlens_q, p.seqlen_q, b, begin_q, len_q);
            const int prefix = pool_prefix_blocks(len_q, len, BLOCK_SIZE);
            if (block >= pg.fresh_ctas) {
                __shared__ int missing[POOL_SWEEP_BLOCKS];
                const int lo = (block - pg.fresh_ctas) * POOL_SWEEP_BLOCKS;
                if (lo >= prefix)
                    return;
                const int count = pool_sweep(
                    p, pg, b, head, lo, min(lo + POOL_SWEEP_BLOCKS, prefix),
                    missing);
                if (count > 0)
                    pool_missing(p, pg, b, head, begin, len, missing, count);
                return;
            }
            block += prefix;
        }
    }
    pool_block<PAGED>(p, pg, is_q, head, b, block, begin, len);
}

// The entry points: the generator compiles each in a program of its own
// (gen/kernels.c), PRISM_PAGED_PROGRAM defined in the paged one only.
#ifndef PRISM_PAGED_PROGRAM
extern "C" __global__ void __launch_bounds__(THREADS)
prism_pool_stats(const PoolParams p) {
    pool_stats<false>(p, PoolPagedParams{});
}
#else
extern "C" __global__ void __launch_bounds__(THREADS)
prism_pool_stats_paged(const __grid_constant__ PoolPagedParams P) {
    pool_stats<true>(P.p, P);
}
#endif
