// The work queue of the persistent sm_90a attention kernel: the kernel
// prism_attention_schedule, appended by the generator to
// templates/attention_sm90.cu (whose constants and AttnTmaParams it uses)
// and launched by the host right before prism_attention.
//
// ---- the work queue ----
// One CTA of 1024 threads builds the queue for prism_attention.
//  1. Costs: an item's cost is the selected-block count of its selection
//     row (items past their sequence's end are left out).  Sum and max.
//  2. Splitting, where it pays: with C CTAs the work per CTA is sum / C;
//     an item costlier than cap = max(sum / C, H_MIN_PIECE_TILES of work)
//     would outlast the rest, so it is cut into min(ceil(cost / cap),
//     H_SPLIT_MAX) pieces.  The pieces of split items need partial slots
//     (p.split_slots in the workspace); while they need more, cap doubles.
//     With many heads and long rows sum / C exceeds every row and nothing
//     is split; short query chunks over long contexts (Sk >> Sq) and few
//     heads are the cases it is for.
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
//     bench/NOTES.md).  Inside a group the longest rows start first and
//     the short ones fill the tail.
// Writes schedule[0] = 0 (the ticket counter), schedule[1] = entries, then
// the entries as {item, split info} pairs, and zeroes the split items'
// arrival counters.  The host launches it right before prism_attention on
// the same stream, with the same parameters.
static constexpr int H_SCHED_THREADS = 1024;
static constexpr int H_SCHED_BINS = 2048;
static constexpr int H_KV_HEADS = Q_HEADS / GQA_GROUP;

static __device__ __forceinline__ int h_item_cost(const AttnParams &p, int w, int tiles) {
    const int bh = w / tiles, q0 = (w % tiles) * H_TM;
    int begin, Sq;
    sequence_range(p.cu_seqlens_q, p.seqlen_q, bh / Q_HEADS, begin, Sq);
    if (q0 >= Sq)
        return -1;
    return max(__ldg(p.block_counts + (i64)bh * p.nq_max + q0 / BLOCK_SIZE), 0);
}

static __device__ __forceinline__ int h_pieces(int cost, int cap) {
    return cost > cap ? min((cost + cap - 1) / cap, H_SPLIT_MAX) : 1;
}

// The sort bin of item w of cost c: its (sequence, KV head) group first,
// lowest first, then its pieces' cost bucket (quant blocks a bucket),
// highest first; its piece count in k.  The scan runs from the top bin.
static __device__ __forceinline__ int h_piece_bin(int w, int tiles, int c, int cap,
                                                  int quant, int buckets, int groups,
                                                  int &k) {
    k = h_pieces(c, cap);
    const int bucket = min((c + k - 1) / k / quant, buckets - 1);
    const int bh = w / tiles;
    const int group = min((bh / Q_HEADS) * H_KV_HEADS + bh % Q_HEADS / GQA_GROUP,
                          groups - 1);
    return (groups - 1 - group) * buckets + bucket;
}

// Sum of v over the CTA (every thread gets it).
static __device__ __forceinline__ long long h_block_sum(long long v, long long *red) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); // red is free
    if ((threadIdx.x & 31) == 0)
        red[threadIdx.x >> 5] = v;
    __syncthreads();
    long long total = 0;
    for (int i = 0; i < H_SCHED_THREADS / 32; i++)
        total += red[i];
    return total;
}

extern "C" __global__ void __launch_bounds__(H_SCHED_THREADS, 1)
prism_attention_schedule(const __grid_constant__ AttnTmaParams P) {
    const AttnParams &p = P.a;
    __shared__ int bin[H_SCHED_BINS]; // counts, then next free entry per bin
    __shared__ long long red[H_SCHED_THREADS / 32];
    __shared__ int next_slot;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tiles = (p.seqlen_q + H_TM - 1) / H_TM;
    const int n = p.batch * Q_HEADS * tiles;
    for (int i = tid; i < H_SCHED_BINS; i += H_SCHED_THREADS)
        bin[i] = 0;
    if (tid == 0)
        next_slot = 0;

    // 1. the total cost and the largest
    long long sum = 0, longest = 0;
    for (int w = tid; w < n; w += H_SCHED_THREADS) {
        const int c = h_item_cost(p, w, tiles);
        sum += max(c, 0);
        longest = max(longest, (long long)c);
    }
    sum = h_block_sum(sum, red);
    for (int o = 16; o > 0; o >>= 1)
        longest = max(longest, __shfl_xor_sync(0xffffffffu, longest, o));
    __syncthreads();
    if (lane == 0)
        red[warp] = longest;
    __syncthreads();
    for (int i = 0; i < H_SCHED_THREADS / 32; i++)
        longest = max(longest, red[i]);

    // 2. the piece size: no item splits unless it outlasts sum / ctas
    constexpr int MIN_PIECE = H_MIN_PIECE_TILES / H_SUBTILES > 0
                                  ? H_MIN_PIECE_TILES / H_SUBTILES : 1;
    long long cap = max((sum + p.ctas - 1) / max(p.ctas, 1), (long long)MIN_PIECE);
    if (p.split_slots <= 0 || longest <= cap)
        cap = 0x7fffffff; // nothing to split
    while (cap < 0x7fffffff) { // the split pieces must fit the slots
        long long need = 0;
        for (int w = tid; w < n; w += H_SCHED_THREADS) {
            const int k = h_pieces(h_item_cost(p, w, tiles), (int)cap);
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
    const int groups = min(p.batch * H_KV_HEADS, H_SCHED_BINS);
    const int buckets = H_SCHED_BINS / groups;
    const int quant = (int)(longest / buckets) + 1;
    for (int w = tid; w < n; w += H_SCHED_THREADS) {
        const int c = h_item_cost(p, w, tiles);
        int k;
        if (c >= 0)
            atomicAdd(&bin[h_piece_bin(w, tiles, c, (int)cap, quant, buckets, groups, k)], k);
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
    int at = incl - own; // entries in the bins of earlier threads
    for (int i = 0; i < warp; i++)
        at += (int)red[i];
#pragma unroll
    for (int e = 0; e < PER; e++) {
        bin[H_SCHED_BINS - 1 - (PER * tid + e)] = at;
        at += mine[e];
    }
    if (tid == H_SCHED_THREADS - 1) {
        p.schedule[0] = 0;
        p.schedule[1] = at; // every piece of every item
    }
    __syncthreads();
    for (int w = tid; w < n; w += H_SCHED_THREADS) {
        const int c = h_item_cost(p, w, tiles);
        if (c < 0)
            continue;
        int k;
        const int b = h_piece_bin(w, tiles, c, (int)cap, quant, buckets, groups, k);
        int slot = 0;
        if (k > 1) {
            slot = atomicAdd(&next_slot, k);
            p.split_arrived[2 * slot] = 0;
            p.split_arrived[2 * slot + 1] = 0;
        }
        for (int s = 0; s < k; s++) {
            const int e = atomicAdd(&bin[b], 1);
            p.schedule[2 + 2 * e] = w;
            p.schedule[3 + 2 * e] = (slot << 10) | (s << 5) | (k - 1);
        }
    }
}
