// The producer of the sm_90a attention kernel, placed by the generator
// after gen/templates/attention_sm90.cu and attention_sm90_stream.cu, whose
// constants, slots and barriers it uses: one thread of the first
// warpgroup takes work items from the queue (PERSISTENT SCHEDULE in
// attention_sm90.cu), hands each to the consumers in a slot (HANDOVER)
// and issues every TMA copy.  A file of its own because it is the other
// side of every protocol the consumers follow: the copies, the slots, the
// queue entries of the schedule kernel (gen/templates/attention_sm90_schedule.cu).

// Key tile `it` of the walk: its first key, or a sentinel past every lim.
static __device__ __forceinline__ int h_tile_start(const int *sel, int total, int it) {
    return it < total ? __ldg(sel + it / H_SUBTILES) * BLOCK_SIZE +
                            (it % H_SUBTILES) * H_TN
                      : 0x7fffffff;
}

// HANDOVER.  The producer already walks the item and its selection row
// for the TMA coordinates, so it hands the consumers what they need in
// shared memory instead of letting them derive it again: per item a slot
// (HSlot: the item's coordinates, lengths, split info, first key and last
// query position) and
// per stage a tile word, (first key << 1) | (last tile of the item), the
// latter written before the stage's K copy is armed, so that the full_k
// wait that precedes every use of the stage also publishes its word.
// Deriving them on the consumers was an integer division and two
// dependent global loads (the selection count, then the entry) at the
// start of every item, ~12% of the consumers' time on short rows.
static __device__ __forceinline__ int h_tile_word(int key0, bool last) {
    return (key0 << 1) | (last ? 1 : 0);
}

// PAGED: the slot of key `key0` in its sequence's row of the page table
// (the division a FastDiv, as HEADS below explains), and the page.  The
// producer looks the page up per tile rather than a tile ahead, and
// derives the key's row in it (key0 - slot * page_size) where it loads:
// at its 40 registers (H_PRODUCER_REGS) a value carried across tiles
// spilled.
static __device__ __forceinline__ int h_page_slot(const AttnPaging &pg, int key0) {
    const u32 x = (u32)(key0 / BLOCK_SIZE);
    return (int)((__umulhi(x, pg.blocks_per_page.mul) + x) >> pg.blocks_per_page.shift);
}
static __device__ __forceinline__ int h_page(const AttnPaging &pg, int seq, int key0) {
    return __ldg(pg.page_table + (i64)seq * pg.max_pages + h_page_slot(pg, key0));
}

// ---- the producer: one thread issues every copy ----
// One work item: the first K/V tile, then the Q tile once the consumers
// released the Q rows of item n - 1 (after its last S = Q K^T), then the
// remaining K/V tiles.  `it` is the CTA's running tile count over all
// its items: tile it uses stage it % H_STAGES for the (it / H_STAGES)-th
// time.  Before a stage's K copy the producer writes the stage's tile word
// (HANDOVER): the consumers then never read the selection row.  key0 is
// the first tile's key, already in the item's slot.  Returns it advanced
// past this item's tiles, and the next item's ticket in `ticket`: taken
// before the last tile's stage wait, so that the atomic's round trip runs
// under the wait (a ticket is held at most one tile early: the tail does
// not notice).  A static item (FIRST ITEMS WITHOUT THE QUEUE) does not
// draw (`draw` false): its CTA's first queue ticket is blockIdx.x, and the
// counter may be touched only after the schedule is complete.
// PAGED (prism_attention_paged): the K and V maps cover the page pools
// as {D, page_size, Hkv, pages}, and a key tile, which lies in one page,
// is the box at (its row in the page, kvh, its page): the page comes from
// the table (h_page) before the stage's wait.  seq is the item's sequence
// (b is 0 for packed sequences).
template <bool PAGED>
static __device__ __forceinline__ int
h_produce(const AttnTmaParams &p, const AttnPaging &pg, int seq, u32 smem,
          volatile int *handover, int n, int it, int q_row, int k_row, int h, int kvh,
          int b, const int *sel, int total, int key0, int lim, bool draw, int &ticket) {
    const u32 bar_q = smem + H_BAR_OFFSET;
    const u32 q_empty = smem + H_Q_EMPTY_OFFSET;
    auto load_q = [&]() {
        if (n > 0)
            h_bar_wait(q_empty, (n - 1) & 1);
        h_bar_expect_tx(bar_q, H_Q_BYTES);
        for (int c = 0; c < H_CHUNKS; c++)
            h_tma_load(smem + c * H_TM * 128, &p.q, p.rank, c * 64, q_row, h, b, bar_q);
    };
    // Q is read from HBM once per item; its load waits for the previous
    // item's last S, so fetch it into L2 now, while that item still runs.
    if (n > 0)
        for (int c = 0; c < H_CHUNKS; c++)
            h_tma_prefetch(&p.q, p.rank, c * 64, q_row, h, b);
    if (key0 > lim) {
        load_q();
        if (draw)
            ticket = atomicAdd(p.a.schedule, 1);
    }
    for (int i = 0; key0 <= lim; i++, it++) {
        const int s = it % H_STAGES;
        const u32 full_k = h_stage_bars(smem, s), full_v = full_k + H_FULL_V;
        const int reuse = ((it / H_STAGES) & 1) ^ 1; // the buffers' last use
        // the next entry is loaded while the stage drains
        const int next = h_tile_start(sel, total, i + 1);
        // PAGED: the tile's page, loaded before the stage wait below, which
        // hides the load's latency (the stages run ahead of the consumers)
        const int page = PAGED ? h_page(pg, seq, key0) : 0;
        const int page_row = PAGED ? key0 - h_page_slot(pg, key0) * pg.page_size : 0;

        if (draw && next > lim)
            ticket = atomicAdd(p.a.schedule, 1);
        if (it >= H_STAGES) // the consumers' S of the stage's last tile retired
            h_bar_wait(full_k + H_EMPTY_K, reuse);
        // published by the expect_tx arrive (release) below
        handover[H_TILE_INT + s] = h_tile_word(key0, next > lim);
        const u32 dk = smem + H_K_OFFSET + s * H_KV_BYTES;
        const u32 dv = smem + H_V_OFFSET + s * H_KV_BYTES;
        h_bar_expect_tx(full_k, H_KV_BYTES);
        if constexpr (PAGED) // the box at (row, kvh, page)
            for (int c = 0; c < H_CHUNKS; c++)
                h_tma_load(dk + c * H_TN * 128, &p.k, 4, c * 64, page_row, kvh, page,
                           full_k);
        else
            for (int c = 0; c < H_CHUNKS; c++)
                h_tma_load(dk + c * H_TN * 128, &p.k, p.rank, c * 64, k_row + key0, kvh,
                           b, full_k);
        if (it >= H_STAGES) // and their P V
            h_bar_wait(full_k + H_EMPTY_V, reuse);
        h_bar_expect_tx(full_v, H_KV_BYTES);
        if constexpr (PAGED)
            for (int c = 0; c < H_CHUNKS; c++)
                h_tma_load(dv + c * H_TN * 128, &p.v, 4, c * 64, page_row, kvh, page,
                           full_v);
        else
            for (int c = 0; c < H_CHUNKS; c++)
                h_tma_load(dv + c * H_TN * 128, &p.v, p.rank, c * 64, k_row + key0, kvh,
                           b, full_v);
        if (i == 0)
            load_q();
        key0 = next;
    }
    return it;
}

struct HItem {
    int b, h, q0, Sq, Sk, q_begin, k_begin, lim, total;
    const int *sel;
};

// A work-queue entry (4 ints at p.schedule + 4 + 4 e: one 16-byte load):
// the item, its split info, the selection row's block count and the first
// key of the piece's first tile (h_tile_start), all written by the
// schedule kernel -- so the producer's way from a ticket to the item's
// first copy is two dependent loads (the ticket, the entry), not four.
struct HEntry {
    int w, info, count, key0;
};

static __device__ __forceinline__ HEntry h_entry(const AttnParams &p, int ticket,
                                                 int entries) {
    if (ticket >= entries)
        return {-1, 0, 0, 0};
    const int4 e = __ldg(reinterpret_cast<const int4 *>(p.schedule + 4) + ticket);
    return {e.x, e.y, e.z, e.w};
}

// HEADS.  The head counts are launch parameters (p.q_heads, p.kv_heads,
// p.group = Hq / Hkv), and an item's index arithmetic divides by them --
// per item, in the schedule kernel's passes over every item (issue-bound
// on its one SM) and in the producer's loop.  So each division is a
// FastDiv (attention_params.h): a multiply-high, an add and a shift, what
// a constant power-of-two divisor cost as a shift, instead of a run-time
// division's ~20 instructions.
static __device__ __forceinline__ int h_div(int x, const FastDiv &f) {
    return (int)((__umulhi((u32)x, f.mul) + (u32)x) >> f.shift);
}
// x % d from the quotient q = h_div(x, f)
static __device__ __forceinline__ int h_rem(int x, int q, const FastDiv &f) {
    return x - q * f.d;
}

// FEW ROWS (attention_sm90_schedule.cu): at most this many items per CTA.
static constexpr int H_FEW_ROWS = 4;

// Item w's selection row (its query tile's block row of its head).
static __device__ __forceinline__ i64 h_sel_row(const AttnParams &p, int w, int tiles) {
    return (i64)(w / tiles) * p.nq_max + (w % tiles) * H_TM / BLOCK_SIZE;
}

// Item w's cost: its selected-block count, -1 past its sequence's end.
static __device__ __forceinline__ int h_item_cost(const AttnParams &p, int w, int tiles) {
    const int bh = w / tiles, q0 = (w % tiles) * H_TM;
    int begin, Sq;
    sequence_range(p.cu_seqlens_q, p.seqlen_q, h_div(bh, p.q_heads), begin, Sq);
    if (q0 >= Sq)
        return -1;
    return max(__ldg(p.block_counts + h_sel_row(p, w, tiles)), 0);
}

// FIRST ITEMS WITHOUT THE QUEUE.  prism_attention is launched with
// programmatic dependent launch behind the schedule kernel, which lets it
// start once the schedule kernel's own wait for the mask returned
// (pdl_launch_dependents right after it: the mask, Q, K and V are then
// complete); only what the queue holds must wait for the schedule to
// complete (pdl_wait).  So with many
// items per CTA (more than H_FEW_ROWS) CTA c starts on static item c
// while the schedule is built, and takes queue tickets after it; the
// schedule leaves the static items out of the queue and never splits them.
// The static items are the queue's first in its order -- (sequence, KV
// head) group, lowest first -- and inside the group the query tiles from
// the last down, the group's heads in turn: under a causal mask the
// longest rows, which the queue would start first too.  Without this the
// CTAs idled for the schedule kernel's launch and run (~8 us of a 160 us
// 8K sparse attention on an H200).
// STATIC ROUNDS.  The schedule kernel's time grows with the item count
// (one CTA: ~3 ns an item on an H200, 93 us for 256 sequences of 512
// tokens), one static item does not: so 1 / H_STATIC_SHARE of the items
// are static (one round at least), CTA c running static items c, c +
// ctas, c + 2 ctas, ... (round j takes the j-th ctas items of the order,
// consecutive as the queue's tickets are).
static constexpr int H_STATIC_SHARE = 8;
static __device__ __forceinline__ int h_static_items(const AttnParams &p, int tiles) {
    const int n = p.batch * p.q_heads.d * tiles;
    const int rounds = max(n / (H_STATIC_SHARE * p.ctas), 1);
    return n > H_FEW_ROWS * p.ctas ? p.ctas * rounds : 0;
}

// Static item c's item index, and the inverse: item w's place in that order.
static __device__ __forceinline__ int h_static_item(const AttnParams &p, int c, int tiles) {
    const int G = p.group.d, per_group = G * tiles, g = c / per_group, r = c % per_group;
    const int gb = h_div(g, p.kv_heads), rt = h_div(r, p.group);
    const int bh = gb * p.q_heads.d + h_rem(g, gb, p.kv_heads) * G + h_rem(r, rt, p.group);
    return bh * tiles + (tiles - 1 - rt);
}
static __device__ __forceinline__ int h_static_rank(const AttnParams &p, int w, int tiles) {
    const int bh = w / tiles, b = h_div(bh, p.q_heads), h = h_rem(bh, b, p.q_heads);
    const int hg = h_div(h, p.group);
    const int g = b * p.kv_heads.d + hg;
    return (g * tiles + (tiles - 1 - w % tiles)) * p.group.d + h_rem(h, hg, p.group);
}

// The entry of item w's piece `info` (count: the item's block count): the
// piece's first key, as the walk will find it (h_tile_start).
static __device__ __forceinline__ HEntry h_make_entry(const AttnParams &p, int w, int tiles,
                                                      int count, int info) {
    int first, blocks;
    h_piece_blocks(count, h_split_info(info), first, blocks);
    const int *sel = p.block_indices + h_sel_row(p, w, tiles) * p.nk_max + first;
    return {w, info, count, h_tile_start(sel, blocks * H_SUBTILES, 0)};
}

// This CTA's static entry of round j (unsplit: info 0), or w = -1: none,
// or its query tile lies past its sequence's end.  The rounds' bound is
// derived again per call rather than kept across the producer's loop: at
// 40 registers, keeping it there (and the item index) spilled 8 bytes.
static __device__ __forceinline__ HEntry h_static_entry(const AttnParams &p, int tiles,
                                                       int j) {
    const int c = blockIdx.x + j * p.ctas;
    if (c >= h_static_items(p, tiles))
        return {-1, 0, 0, 0};
    const int w = h_static_item(p, c, tiles), count = h_item_cost(p, w, tiles);
    return count < 0 ? HEntry{-1, 0, 0, 0} : h_make_entry(p, w, tiles, count, 0);
}

static __device__ __forceinline__ HItem h_item(const AttnParams &p, const HEntry &e,
                                               int tiles) {
    HItem t;
    const int w = e.w;
    const int bh = w / tiles;
    t.q0 = (w % tiles) * H_TM;
    t.b = h_div(bh, p.q_heads);
    t.h = h_rem(bh, t.b, p.q_heads);
    sequence_range(p.cu_seqlens_q, p.seqlen_q, t.b, t.q_begin, t.Sq);
    sequence_range(p.cu_seqlens_k, p.seqlen_k, t.b, t.k_begin, t.Sk);
    t.lim = min(t.q0 + H_TM, t.Sq) - 1 + (t.Sk - t.Sq); // causal: Sk - Sq shift
    const i64 sel_row = (i64)bh * p.nq_max + t.q0 / BLOCK_SIZE;
    int first, blocks;
    h_piece_blocks(e.count, h_split_info(e.info), first, blocks);
    t.total = blocks * H_SUBTILES;
    t.sel = p.block_indices + sel_row * p.nk_max + first;
    return t;
}

static __device__ __forceinline__ void h_slot_put(volatile int *slot, const HSlot &s) {
    slot[0] = s.w;
    slot[1] = s.info;
    slot[2] = s.q0;
    slot[3] = s.Sq;
    slot[4] = s.Sk;
    slot[5] = s.key0;
    slot[6] = s.lim;
    slot[7] = s.row;
    slot[8] = s.h;
    slot[9] = s.b;
    volatile i64 *wide = reinterpret_cast<volatile i64 *>(slot + 10);
    wide[0] = s.o_off;
    wide[1] = s.lse_off;
}

// The slot of item w (the producer's side).
static __device__ __forceinline__ HSlot h_slot_of(const AttnParams &p, const HEntry &e,
                                                  const HItem &t, bool varlen) {
    HSlot s;
    s.w = e.w;
    s.info = e.info;
    s.q0 = t.q0;
    s.Sq = t.Sq;
    s.Sk = t.Sk;
    s.key0 = e.key0;
    s.lim = t.lim;
    s.row = (varlen ? t.q_begin : 0) + t.q0;
    s.h = t.h;
    s.b = varlen ? 0 : t.b;
    s.o_off = (varlen ? (i64)t.q_begin * p.o_stride_s : (i64)t.b * p.o_stride_b) +
              (i64)t.h * p.o_stride_h;
    s.lse_off = varlen ? (i64)t.h * p.cu_seqlens_q[p.batch] + t.q_begin
                       : ((i64)t.b * p.q_heads.d + t.h) * p.seqlen_q;
    return s;
}

// The producer thread's loop: a ticket, the item's slot, its copies;
// the slot of a ticket past the queue's end says "no more work".
template <bool PAGED>
static __device__ __forceinline__ void h_producer(const AttnTmaParams &P,
                                                  const AttnPaging &pg, u32 smem,
                                                  volatile int *handover) {
    const AttnParams &p = P.a;
    const int tiles = (p.seqlen_q + H_TM - 1) / H_TM;
    const bool varlen = p.cu_seqlens_q != nullptr;
    const int rounds = h_static_items(p, tiles) / max(p.ctas, 1);
    int round = 0; // the next static round (STATIC ROUNDS)
    int entries = -1; // read once the schedule is complete
    int it = 0, ticket = blockIdx.x; // the counter starts past the first tickets
    for (int n = 0;; n++) {
        HEntry e = {-1, 0, 0, 0};
        while (e.w < 0 && round < rounds)
            e = h_static_entry(p, tiles, round++);
        if (e.w < 0) {
            if (entries < 0) {
                pdl_wait();
                entries = p.schedule[1];
            }
            e = h_entry(p, ticket, entries);
        }
        volatile int *slot = h_slot_at(handover, n);
        if (e.w < 0) {
            slot[0] = -1;
            h_bar_arrive(h_item_bar(smem, n)); // release: the slot is visible
            return;
        }
        const HItem t = h_item(p, e, tiles);
        const HSlot s = h_slot_of(p, e, t, varlen);
        h_slot_put(slot, s);
        h_bar_arrive(h_item_bar(smem, n));
        // TMA coordinates (the slot's): varlen / batch 1 index tokens
        // of the packed tensor (rank 3); a fixed batch uses its own.
        it = h_produce<PAGED>(P, pg, t.b, smem, handover, n, it, s.row,
                              varlen ? t.k_begin : 0, s.h, h_div(s.h, p.group), s.b, t.sel,
                              t.total, s.key0, t.lim, entries >= 0, ticket);
    }
}
