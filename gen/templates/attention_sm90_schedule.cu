// The work queue of the persistent sm_90a attention kernel, appended by
// the generator to gen/templates/attention_sm90.cu (whose constants, params
// and helpers it uses): the merge of split rows, which prism_attention
// calls, and the kernel prism_attention_schedule, which the host launches
// right before prism_attention.
//
// ---- split rows ----
// A row much longer than the work per CTA (few heads, or a short query
// chunk over a long context: Sk >> Sq) is cut by the schedule kernel below
// into pieces that run on different CTAs.  Each piece's consumer
// warpgroup stores its unnormalised O, row maximum m (scaled log2 domain)
// and partial row sum l, in register order (element i of thread wt at
// [i][wt]: coalesced), then counts itself in split_arrived.  The piece
// that arrives last reads every piece back (from L2: __ldcg) and merges
// them as the online softmax would, M = max m_s, L = sum l_s 2^(m_s - M),
// O = sum O_s 2^(m_s - M) / L, writing O and LSE straight from the merge
// (h_split_combine).  Pieces that saw no key have m = -inf and weigh 0.

// Partial slot of piece s for one warpgroup: O (H_O_REGS x 128 floats)
// and m, l (4 x 128 floats), each at its thread's column wt.
static __device__ __forceinline__ float *h_partial_o(const AttnParams &p, int first,
                                                     int s, int wg, int wt) {
    return p.partial_o + ((i64)(first + s) * 2 + (wg - 1)) * (H_O_REGS * 128) + wt;
}
static __device__ __forceinline__ float *h_partial_ml(const AttnParams &p, int first,
                                                      int s, int wg, int wt) {
    return p.partial_ml + ((i64)(first + s) * 2 + (wg - 1)) * (4 * 128) + wt;
}

// The last piece's merge.  Not inlined: its registers are then allocated
// apart from the consumer's accumulators (inlined, HEAD_DIM 256 spilled).
static __device__ __noinline__ void h_split_combine(const AttnParams &p, int first,
                                                    int pieces, int wg, int wt,
                                                    int q0, int Sq, u16 *og,
                                                    float *lse) {
    __threadfence(); // every other piece's partial is visible
    const int warp = wt >> 5, g = (wt & 31) >> 2, t = wt & 3;
    float M[2] = {-INFINITY, -INFINITY}, L[2] = {0.f, 0.f};
    for (int s = 0; s < pieces; s++) {
        const float *ml = h_partial_ml(p, first, s, wg, wt);
        M[0] = fmaxf(M[0], __ldcg(ml));
        M[1] = fmaxf(M[1], __ldcg(ml + 128));
    }
    // piece s's weight for row r: 2^(m_s - M) (0 for a piece that saw no key)
    auto weight = [&](const float *ml, int r) {
        const float ms = __ldcg(ml + 128 * r);
        // r is not a compile-time index in the loop below: select, so the
        // arrays stay in registers (an indexed read went to local memory)
        return ms == -INFINITY ? 0.f : exp2_approx(ms - (r ? M[1] : M[0]));
    };
    for (int s = 0; s < pieces; s++) {
        const float *ml = h_partial_ml(p, first, s, wg, wt);
        L[0] = fmaf(__ldcg(ml + 256), weight(ml, 0), L[0]);
        L[1] = fmaf(__ldcg(ml + 384), weight(ml, 1), L[1]);
    }
    float inv[2];
    const int row_wg = (wg - 1) * 64;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        L[r] += __shfl_xor_sync(0xffffffffu, L[r], 1);
        L[r] += __shfl_xor_sync(0xffffffffu, L[r], 2);
        inv[r] = L[r] > 0.f ? 1.f / L[r] : 0.f;
        const int row = q0 + row_wg + 16 * warp + g + 8 * r;
        if (lse && t == 0 && row < Sq)
            lse[row] = h_lse(M[r], L[r]);
    }
    // element pair (i, i + 1): row g + 8 ((i >> 1) & 1), columns 8 (i / 4) + 2 t
#pragma unroll 1
    for (int i = 0; i < H_O_REGS; i += 2) {
        const int r = (i >> 1) & 1;
        float a0 = 0.f, a1 = 0.f;
        for (int s = 0; s < pieces; s++) { // weights recomputed: few registers
            const float *os = h_partial_o(p, first, s, wg, wt) + i * 128;
            const float fs = weight(h_partial_ml(p, first, s, wg, wt), r);
            a0 = fmaf(__ldcg(os), fs, a0);
            a1 = fmaf(__ldcg(os + 128), fs, a1);
        }
        const int row = q0 + row_wg + 16 * warp + g + 8 * r;
        if (row < Sq)
            *reinterpret_cast<u32 *>(og + (i64)row * p.o_stride_s + 8 * (i >> 2) + 2 * t) =
                float2_to_input2(a0 * (r ? inv[1] : inv[0]), a1 * (r ? inv[1] : inv[0]));
    }
}

// One piece of a split row (declared in attention_sm90.cu): store the
// partial, count the arrival, merge when it is the last.
static __device__ __forceinline__ void
h_split_piece(const AttnParams &p, int info, int wg, int wt,
              const float (&o)[H_O_REGS], const float (&m)[2], const float (&l)[2],
              volatile int *arrived, int q0, int Sq, u16 *og, float *lse) {
    const HSplit sp = h_split_info(info);
    float *po = h_partial_o(p, sp.first, sp.piece, wg, wt);
    float *pml = h_partial_ml(p, sp.first, sp.piece, wg, wt);
#pragma unroll
    for (int i = 0; i < H_O_REGS; i++)
        po[i * 128] = o[i];
    pml[0] = m[0];
    pml[128] = m[1];
    pml[256] = l[0];
    pml[384] = l[1];
    __threadfence(); // the partial is visible before the arrival counts
    h_warpgroup_sync(wg);
    if (wt == 0)
        *arrived = atomicAdd(p.split_arrived + 2 * sp.first + (wg - 1), 1);
    h_warpgroup_sync(wg);
    if (*arrived == sp.pieces - 1)
        h_split_combine(p, sp.first, sp.pieces, wg, wt, q0, Sq, og, lse);
}

// ---- the work queue ----
// One CTA of 1024 threads builds the queue for prism_attention.
//  1. Costs: an item's cost is the selected-block count of its selection
//     row (items past their sequence's end are left out, and so are the
//     static items the CTAs run before their first ticket: FIRST ITEMS
//     WITHOUT THE QUEUE, attention_sm90_produce.cu).  Sum and max.
//  2. Splitting, where it pays: with C CTAs the work per CTA is sum / C;
//     an item costlier than cap = max(sum / C, H_MIN_PIECE_TILES of work)
//     would outlast the rest, so it is cut into min(ceil(cost / cap),
//     H_SPLIT_MAX) pieces.  The pieces of split items need partial slots
//     (p.split_slots in the workspace); while they need more, cap doubles.
//     With many heads and long rows sum / C exceeds every row and nothing
//     is split; short query chunks over long contexts (Sk >> Sq) and few
//     heads are the cases it is for.  With at most H_FEW_ROWS items per
//     CTA, cap is instead chosen so that the pieces fill whole waves of
//     CTAs (FEW ROWS, h_cap_by_waves).
//  3. Order: by (sequence, KV head) group, and inside a group longest
//     first: a counting sort on (group, cost bucket) bins, the cost in
//     H_SCHED_BINS / groups buckets of the longest row (a shared
//     histogram, a scan from the top bin down, each piece placed at its
//     bin's next slot; the order inside a bin is whatever the atomics
//     give: it changes timing, never results).  Why groups first: the
//     CTAs in flight take consecutive entries; sharing a KV head, they
//     stream the same K/V tiles through L2.  Sorted by cost alone, the
//     CTAs at 128K took the same query tile of every head, eight K/V
//     streams at once, and dense attention ran 10% slower (H100,
//     docs/performance.md).  Inside a group the longest rows start first and
//     the short ones fill the tail.
// Writes schedule[0] = p.ctas (the ticket counter: CTA c takes ticket c
// first, without it), schedule[1] = entries, then
// from schedule[4] on the entries (HEntry: item, split info, block count,
// first key), and zeroes the split items'
// arrival counters.  The host launches it right before prism_attention on
// the same stream, with the same parameters; its first instruction lets
// prism_attention (a programmatic dependent launch) start.  It runs as one
// CTA of H_SCHED_THREADS (the launch shape, gen/launch.c).
static constexpr int H_SCHED_BINS = 2048;
// Costs of the first H_SCHED_CACHE items are read from global memory once
// and kept in shared memory for the later passes (later items are read
// again: long sequences, where this kernel's microseconds do not count).
static constexpr int H_SCHED_CACHE = 8192;

static __device__ __forceinline__ int h_pieces(int cost, int cap) {
    return cost > cap ? min((cost + cap - 1) / cap, H_SPLIT_MAX) : 1;
}

// The sort bin of item w of cost c: its (sequence, KV head) group first,
// lowest first, then its pieces' cost bucket (quant blocks a bucket),
// highest first; its piece count in k.  The scan runs from the top bin.
static __device__ __forceinline__ int h_piece_bin(const AttnParams &p, int w, int tiles,
                                                  int c, int cap, int quant, int buckets,
                                                  int groups, int &k) {
    k = h_pieces(c, cap);
    const int bucket = min((c + k - 1) / k / quant, buckets - 1);
    const int bh = w / tiles, b = h_div(bh, p.q_heads);
    const int group = min(b * p.kv_heads.d + h_div(h_rem(bh, b, p.q_heads), p.group),
                          groups - 1);
    return (groups - 1 - group) * buckets + bucket;
}

// Sum of v and maximum of x over the CTA (every thread gets both): warp
// shuffles, then warp 0 over the 32 warps' results.  red: 33 + 33 slots.
static __device__ __forceinline__ void h_block_sum_max(long long &v, long long &x,
                                                       long long *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
        x = max(x, __shfl_xor_sync(0xffffffffu, x, o));
    }
    __syncthreads(); // red is free
    if (lane == 0) {
        red[warp] = v;
        red[33 + warp] = x;
    }
    __syncthreads();
    if (warp == 0) {
        v = red[lane];
        x = red[33 + lane];
        for (int o = 16; o > 0; o >>= 1) {
            v += __shfl_xor_sync(0xffffffffu, v, o);
            x = max(x, __shfl_xor_sync(0xffffffffu, x, o));
        }
        if (lane == 0) {
            red[32] = v;
            red[65] = x;
        }
    }
    __syncthreads();
    v = red[32];
    x = red[65];
}

static __device__ __forceinline__ long long h_block_sum(long long v, long long *red) {
    long long unused = 0;
    h_block_sum_max(v, unused, red);
    return v;
}

// FEW ROWS.  With rows a few times the CTAs or fewer, the pieces that
// cap = sum / ctas gives can leave a last wave that mostly idles: the TP-8
// chunk (64 rows of ~1000 blocks, 132 CTAs) became 192 pieces, two waves
// of a third of a row, where 128 pieces of half a row fit one wave (a
// third faster).  So the longest row's piece count k = 1 .. H_SPLIT_MAX is
// chosen by an estimate of the makespan: the pieces longer than half a
// piece come in waves of ctas, each a piece long (the shorter ones fill the
// gaps), at least the average work per CTA, plus k for the merge; the
// split pieces must fit the slots (k = 1 always does), so the cap it
// returns needs no further check.  cost(w): the item
// costs; red: the reduction scratch (its first slot carries the result).
// (H_FEW_ROWS: attention_sm90_produce.cu.)

static __device__ __forceinline__ long long h_cap_of(long long longest, int k, int min_piece) {
    return max((longest + k - 1) / k, (long long)min_piece);
}

template <typename Cost>
static __device__ __forceinline__ long long h_cap_by_waves(const AttnParams &p, int n,
                                                           long long sum, long long longest,
                                                           int min_piece, Cost cost,
                                                           long long *red) {
    __shared__ int big[H_SPLIT_MAX], split[H_SPLIT_MAX];
    const int tid = threadIdx.x;
    if (tid < H_SPLIT_MAX)
        big[tid] = split[tid] = 0;
    __syncthreads();
    for (int w = tid; w < n; w += H_SCHED_THREADS) {
        const int c = cost(w);
        for (int k = 1; c > 0 && k <= H_SPLIT_MAX; k++) {
            const int cap = (int)h_cap_of(longest, k, min_piece);
            const int pieces = h_pieces(c, cap);
            if (2 * ((c + pieces - 1) / pieces) > cap)
                atomicAdd(&big[k - 1], pieces);
            if (pieces > 1)
                atomicAdd(&split[k - 1], pieces);
        }
    }
    __syncthreads();
    if (tid == 0) {
        const long long ctas = max(p.ctas, 1), avg = (sum + ctas - 1) / ctas;
        long long best = -1, best_cap = 0x7fffffff;
        for (int k = 1; k <= H_SPLIT_MAX; k++) {
            const long long cap = h_cap_of(longest, k, min_piece);
            if (split[k - 1] > p.split_slots || (k > 1 && cap >= longest))
                continue;
            const long long waves = (big[k - 1] + ctas - 1) / ctas;
            const long long e = max(waves * cap, avg) + k;
            if (best < 0 || e < best) {
                best = e;
                best_cap = k == 1 ? 0x7fffffff : cap;
            }
        }
        red[0] = best_cap;
    }
    __syncthreads();
    const long long cap = red[0];
    __syncthreads(); // red is free again
    return cap;
}

// In the plain program only (the paged one launches this one's).
#ifndef PRISM_PAGED_PROGRAM
extern "C" __global__ void __launch_bounds__(H_SCHED_THREADS, 1)
prism_attention_schedule(const __grid_constant__ AttnTmaParams P) {
    const AttnParams &p = P.a;
    __shared__ int bin[H_SCHED_BINS]; // counts, then next free entry per bin
    __shared__ int cached[H_SCHED_CACHE]; // item costs (h_item_cost)
    __shared__ long long red[66];
    __shared__ int next_slot;
    // The schedule kernel is itself a dependent launch (of the estimator,
    // or of whatever wrote the mask): it waits for that, and only then
    // lets prism_attention start its static items, which read the mask,
    // Q, K and V before their own wait.
    pdl_wait();
    pdl_launch_dependents();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tiles = (p.seqlen_q + H_TM - 1) / H_TM;
    const int n = p.batch * p.q_heads.d * tiles;
    const int statics = h_static_items(p, tiles);
    for (int i = tid; i < H_SCHED_BINS; i += H_SCHED_THREADS)
        bin[i] = 0;
    if (tid == 0)
        next_slot = 0;

    // 1. the total cost and the largest queued one; the static items
    // count as work but not as queue items (cost -1 from here on)
    auto is_static = [&](int w) { return h_static_rank(p, w, tiles) < statics; };
    long long sum = 0, longest = 0;
    for (int w = tid; w < n; w += H_SCHED_THREADS) {
        const int c = h_item_cost(p, w, tiles);
        const int q = is_static(w) ? -1 : c;
        if (w < H_SCHED_CACHE)
            cached[w] = q;
        sum += max(c, 0);
        longest = max(longest, (long long)q);
    }
    h_block_sum_max(sum, longest, red);
    auto cost = [&](int w) {
        return w < H_SCHED_CACHE ? cached[w] : is_static(w) ? -1 : h_item_cost(p, w, tiles);
    };

    // 2. the piece size: no item splits unless it outlasts sum / ctas
    constexpr int MIN_PIECE = H_MIN_PIECE_TILES / H_SUBTILES > 0
                                  ? H_MIN_PIECE_TILES / H_SUBTILES : 1;
    long long cap = max((sum + p.ctas - 1) / max(p.ctas, 1), (long long)MIN_PIECE);
    if (p.split_slots <= 0 || longest <= cap)
        cap = 0x7fffffff; // nothing to split
    if (cap < 0x7fffffff && n <= H_FEW_ROWS * p.ctas)
        cap = h_cap_by_waves(p, n, sum, longest, MIN_PIECE, cost, red); // fits the slots
    else
        while (cap < 0x7fffffff) { // the split pieces must fit the slots
            long long need = 0;
            for (int w = tid; w < n; w += H_SCHED_THREADS) {
                const int k = h_pieces(cost(w), (int)cap);
                need += k > 1 ? k : 0;
            }
            if (h_block_sum(need, red) <= p.split_slots)
                break;
            cap *= 2;
            if (cap >= longest)
                cap = 0x7fffffff;
        }
    __syncthreads();

    // 3. counting sort of the pieces by decreasing cost bucket, then KV head
    const int groups = min(p.batch * p.kv_heads.d, H_SCHED_BINS);
    const int buckets = H_SCHED_BINS / groups;
    const int quant = (int)(longest / buckets) + 1;
    // an item's bin and piece count, (bin << 5) | (pieces - 1), or -1:
    // computed here (integer divisions: this kernel is issue-bound on its
    // one SM) and kept in the cost's place for the placement pass
    auto placement = [&](int w) {
        const int c = cost(w);
        int k = 1;
        return c < 0 ? -1
                     : (h_piece_bin(p, w, tiles, c, (int)cap, quant, buckets, groups, k) << 5) |
                           (k - 1);
    };
    for (int w = tid; w < n; w += H_SCHED_THREADS) {
        const int at = placement(w);
        if (at >= 0)
            atomicAdd(&bin[at >> 5], (at & 31) + 1);
        if (w < H_SCHED_CACHE)
            cached[w] = at; // this thread's own entry: no barrier needed
    }
    __syncthreads();
    // exclusive scan from the top bin down: thread t owns the bins
    // H_SCHED_BINS - 1 - (PER * t + e), e < PER
    constexpr int PER = H_SCHED_BINS / H_SCHED_THREADS;
    int mine[PER], own = 0;
#pragma unroll
    for (int e = 0; e < PER; e++) {
        mine[e] = bin[H_SCHED_BINS - 1 - (PER * tid + e)];
        own += mine[e];
    }
    int incl = own; // inclusive scan over the warp
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o)
            incl += v;
    }
    __syncthreads();
    if (lane == 31)
        red[warp] = incl;
    __syncthreads();
    if (warp == 0) { // exclusive scan of the 32 warp totals
        const long long total = red[lane];
        long long before = total;
        for (int o = 1; o < 32; o <<= 1) {
            const long long v = __shfl_up_sync(0xffffffffu, before, o);
            if (lane >= o)
                before += v;
        }
        red[33 + lane] = before - total;
    }
    __syncthreads();
    int at = incl - own + (int)red[33 + warp]; // entries in earlier threads' bins
#pragma unroll
    for (int e = 0; e < PER; e++) {
        bin[H_SCHED_BINS - 1 - (PER * tid + e)] = at;
        at += mine[e];
    }
    if (tid == H_SCHED_THREADS - 1) {
        p.schedule[0] = p.ctas; // CTA c's first ticket is c: no atomic at the start
        p.schedule[1] = at; // every piece of every item
    }
    __syncthreads();
    for (int w = tid; w < n; w += H_SCHED_THREADS) {
        const int at = w < H_SCHED_CACHE ? cached[w] : placement(w);
        if (at < 0)
            continue;
        const int b = at >> 5, k = (at & 31) + 1;
        int slot = 0;
        if (k > 1) {
            slot = atomicAdd(&next_slot, k);
            p.split_arrived[2 * slot] = 0;
            p.split_arrived[2 * slot + 1] = 0;
        }
        // the entries (h_make_entry): the block count is read again (an
        // L2 hit)
        const int count = h_item_cost(p, w, tiles);
        for (int s = 0; s < k; s++) {
            const HEntry en = h_make_entry(p, w, tiles, count, (slot << 10) | (s << 5) | (k - 1));
            const int e = atomicAdd(&bin[b], 1);
            reinterpret_cast<int4 *>(p.schedule + 4)[e] = make_int4(en.w, en.info, en.count, en.key0);
        }
    }
}
#endif
