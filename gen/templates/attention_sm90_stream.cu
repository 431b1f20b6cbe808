// The overlapped consumer of the sm_90a attention kernel (H_OVERLAP: the
// default with 3 stages, HEAD_DIM <= 128), placed by the generator after
// gen/templates/attention_sm90.cu, whose constants, producer protocol and
// helpers it uses.
//
// WHY STREAM ACROSS ITEMS.  Inside an item, tile i's S = Q K^T is issued
// in one batch with tile i-1's O += P V, so the tensor cores work while
// the warpgroup waits for S and runs its softmax.  An item's first S and
// last P V have no partner, though, and its epilogue runs with nothing in
// flight; with ~5 tiles an item (8K tokens, 10% masks) that was a third
// of the consumers' time (docs/performance.md).  So the
// consumer runs on from one item into the next: the next item's first S
// goes into the batch of this item's last P V, the next item's first
// softmax runs under that P V, and this item's O leaves through shared
// memory and one TMA store while the next item's tiles run.
//
// WHY Q IN REGISTERS.  Streaming needs the next item's Q while this
// item's is still being read, and at D = 128 the three K/V stages leave no
// room for a second Q tile (a second stage's worth of dense speed, 10-20%,
// is the other price).  So each warpgroup copies its 64 Q rows into
// registers when its item starts (ldmatrix, the A fragments of wgmma:
// HEAD_DIM / 4 registers per thread) and S = Q K^T takes A from there
// (wgmma_rs_s).  The Q rows of shared memory are then free for the whole
// item: the producer loads the next item's Q into them early, and at the
// boundary, once that Q is in registers, they hold this item's O for its
// TMA store.
//
// THE Q ROWS' PROTOCOL.  q_empty (256 arrivals, one phase per item, as for
// the plain consumer) now says "the Q rows of item n are no longer
// needed": every consumer thread arrives once its item's Q is in its
// registers and, when the previous item's O was staged in those rows, once
// the TMA store read them (its issuing thread waits for that,
// h_bulk_wait_read, one batch later, so the wait overlaps the tensor
// cores' work).  An arrival is never left pending across a wait for the
// next Q (that would deadlock with the producer).  Nor is a stage: the
// producer loads the next Q after the next item's first K/V tile, so the
// wait for that Q comes only after this warpgroup released every stage
// but the one it is reading -- with 2 stages, waiting for the next Q
// while the last P V but one still holds its stage deadlocks (taking
// the next Q there was tried: docs/performance.md, "Tried and dropped").
//
// WHEN AN ITEM ENDS ALONE.  The next item has no tile (no more work, or an
// empty row or piece), this item is a split piece (its merge is out of
// line), or a varlen item whose last rows pass its sequence's end (a TMA
// store would write them into the next sequence): then the last P V runs
// alone and the epilogue is the direct one (h_finish), and the next item
// starts with nothing in flight.
//
// ptxas keeps the wgmma pipeline only if every batch is straight-line code
// under warp-uniform control flow and O has one definition on every path
// (zeroed on one path and rescaled on another made it serialise, C7511):
// O restarts at an item boundary through the rescale (alpha = 0, since m
// restarts at -inf), and the values deciding branches around batches are
// broadcast from lane 0 (provably uniform).

// The warpgroup's 64 Q rows (swizzled 128-byte chunks, as TMA wrote them)
// into the A fragments of the HEAD_DIM / 16 k-steps: k-step kk covers
// 16-byte units 2 (kk % 4), + 1 of chunk kk / 4; matrices 0-3 are rows 0-7
// / 8-15 of the warp's 16 rows at the first unit, then at the second.
static __device__ __forceinline__ void h_load_q(u32 (&qa)[HEAD_DIM / 16][4], u32 q_rows,
                                                int wt) {
    const int warp = wt >> 5, lane = wt & 31, mat = lane >> 3, r8 = lane & 7;
    const u32 row = q_rows + (16 * warp + 8 * (mat & 1) + r8) * 128;
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; kk++) {
        const int unit = 2 * (kk & 3) + (mat >> 1);
        h_ldmatrix4(qa[kk], row + (kk / 4) * H_TM * 128 + ((unit ^ r8) << 4));
    }
}

// S = Q K^T with Q from registers (issued, not waited for).
static __device__ __forceinline__ void h_issue_s_rs(float (&sc)[H_S_REGS],
                                                    const u32 (&qa)[HEAD_DIM / 16][4],
                                                    u32 k_base) {
    const u32 kb = h_desc_lo(k_base, 16);
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; kk++) {
        const u32 off = (kk & 3) * 32; // 16 dims = 32 bytes
        wgmma_rs_s(sc, qa[kk], h_desc(kb + ((kk / 4) * H_TN * 128 + off) / 16, 1024),
                   kk > 0);
    }
    h_wgmma_commit();
}

// An item's output as the boundary leaves it: 1 / l per row (its LSE is
// already written) and the TMA coordinates of the warpgroup's first row.
struct HOutRows {
    float inv[2];
    int row, h, b;
};

// At an item's end, m and l are final before its last P V retires: write
// the LSE and keep 1 / l for the staged epilogue.
static __device__ __forceinline__ HOutRows h_out_rows(const AttnParams &p, const HSlot &it,
                                                      int wg, int wt, const float (&m)[2],
                                                      const float (&l)[2]) {
    HOutRows r;
    const int t = wt & 3;
    const int row0 = it.q0 + (wg - 1) * 64 + 16 * (wt >> 5) + ((wt & 31) >> 2);
#pragma unroll
    for (int k = 0; k < 2; k++) {
        float sum = l[k];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        r.inv[k] = sum > 0.f ? 1.f / sum : 0.f;
        if (p.lse && t == 0 && row0 + 8 * k < it.Sq)
            p.lse[it.lse_off + row0 + 8 * k] = h_lse(m[k], sum);
    }
    r.row = it.row + (wg - 1) * 64;
    r.h = it.h;
    r.b = it.b;
    return r;
}

// The staged epilogue: O normalised into the warpgroup's Q rows in the
// TMA layout (stmatrix: the accumulator layout is stmatrix's fragment
// layout), then one thread stores them, HEAD_DIM / 64 boxes of 64 rows
// (rows past the tensor's end are clipped by the copy engine).
static __device__ __forceinline__ void h_stage_o(const AttnTmaParams &P,
                                                 const float (&o)[H_O_REGS],
                                                 const HOutRows &r, u32 q_rows, int wg,
                                                 int wt) {
    const int warp = wt >> 5, lane = wt & 31, mat = lane >> 3, r8 = lane & 7;
    const u32 row = q_rows + (16 * warp + 8 * (mat & 1) + r8) * 128;
#pragma unroll
    for (int j = 0; j < HEAD_DIM / 8; j += 2) {
        const int blk = j + (mat >> 1); // this lane's n8 block (16-byte unit)
        const u32 addr = row + (blk / 8) * H_TM * 128 + (((blk & 7) ^ r8) << 4);
        h_stmatrix4(addr,
                    float2_to_input2(o[4 * j] * r.inv[0], o[4 * j + 1] * r.inv[0]),
                    float2_to_input2(o[4 * j + 2] * r.inv[1], o[4 * j + 3] * r.inv[1]),
                    float2_to_input2(o[4 * j + 4] * r.inv[0], o[4 * j + 5] * r.inv[0]),
                    float2_to_input2(o[4 * j + 6] * r.inv[1], o[4 * j + 7] * r.inv[1]));
    }
    h_fence_async_smem();
    h_warpgroup_sync(wg);
    if (wt == 0) {
        for (int c = 0; c < H_CHUNKS; c++)
            h_tma_store(&P.o, P.rank, q_rows + c * H_TM * 128, c * 64, r.row, r.h, r.b);
        h_bulk_commit();
    }
}

// ---- the overlapped consumer: 64 query rows of every item of the CTA ----
static __device__ __forceinline__ void h_consume_stream(const AttnTmaParams &P, u32 smem,
                                                        volatile int *handover, int wg) {
    const AttnParams &p = P.a;
    const int wt = threadIdx.x - 128 * wg; // thread within the warpgroup
    const float scale = p.scale_log2;
    const bool varlen = p.cu_seqlens_q != nullptr;
    const u32 bar_q = smem + H_BAR_OFFSET, q_empty = smem + H_Q_EMPTY_OFFSET;
    const u32 q_rows = smem + (wg - 1) * 64 * 128; // + chunk * H_TM * 128
    // tile `it` of the CTA's running count: its stage, phase and tile word
    auto full_k = [&](int it) { return h_stage_bars(smem, it % H_STAGES); };
    auto k_tile = [&](int it) { return smem + H_K_OFFSET + (it % H_STAGES) * H_KV_BYTES; };
    auto v_tile = [&](int it) { return smem + H_V_OFFSET + (it % H_STAGES) * H_KV_BYTES; };
    auto parity = [&](int it) { return (it / H_STAGES) & 1; };
    auto tile_word = [&](int it) {
        return __shfl_sync(0xffffffffu, handover[H_TILE_INT + it % H_STAGES], 0);
    };
    auto take = [&](int n) {
        h_bar_wait(h_item_bar(smem, n), h_item_parity(n));
        return h_slot_get(h_slot_at(handover, n));
    };
    // Item n's slot stays valid until this warpgroup's q_empty arrival for
    // item n + 1 (h_slot_at).
    auto slot = [&](int n) { return h_slot_get(h_slot_at(handover, n)); };
    // held: the Q rows still hold the previous item's O, being stored, and
    // the arrival for the current item waits for the store to read them.
    bool held = false;
    auto release = [&]() {
        if (held && wt == 0)
            h_bulk_wait_read();
        held = false;
        h_bar_arrive(q_empty);
    };

    float o[H_O_REGS], m[2], l[2], sc[H_S_REGS], alpha[2];
    u32 pa[H_TN / 16][4], qa[HEAD_DIM / 16][4];
    int it = 0; // the CTA's tile count: the tile whose S is issued next
    int n = 0;  // the current item
    HSlot cur = take(0);
    while (__shfl_sync(0xffffffffu, cur.w, 0) >= 0) {
        // ---- item n starts with nothing in flight ----
        it = __shfl_sync(0xffffffffu, it, 0);
#pragma unroll
        for (int i = 0; i < H_O_REGS; i++)
            o[i] = 0.f;
        m[0] = m[1] = -INFINITY;
        l[0] = l[1] = 0.f;
        h_bar_wait(bar_q, n & 1);
        h_load_q(qa, q_rows, wt);
        if (!__shfl_sync(0xffffffffu, cur.key0 <= cur.lim, 0)) {
            release(); // no tile: zero rows and LSE -inf, or an empty piece
            h_finish(p, cur, wg, wt, o, m, l, handover);
            cur = take(++n);
            continue;
        }
        release();
        HRows rows = h_rows(cur, wg, wt);
        h_bar_wait(full_k(it), parity(it));
        int word = tile_word(it);
        h_wgmma_fence();
        h_issue_s_rs(sc, qa, k_tile(it));
        h_wgmma_wait0();
        h_bar_arrive(full_k(it) + H_EMPTY_K);
        h_softmax_at(sc, m, l, alpha, word >> 1, rows, scale);
        h_pack_p(pa, sc); // O is still 0: no rescale
        it++;
        // ---- steady state: S of tile it with P V of tile it - 1, on into
        // the next item while it has tiles and this one may stream ----
        for (;;) {
            bool boundary = false;
            HOutRows prev;
            if (word & 1) { // tile it - 1 was the item's last
                if (held)
                    release();
                const HSlot done = slot(n);
                const HSlot next = take(n + 1);
                const bool stream =
                    next.w >= 0 && next.key0 <= next.lim && (done.info & 31) == 0 &&
                    (!varlen || done.q0 + H_TM <= done.Sq);
                if (!__shfl_sync(0xffffffffu, stream, 0)) {
                    h_bar_wait(full_k(it - 1) + H_FULL_V, parity(it - 1));
                    h_wgmma_fence();
                    h_issue_pv(o, pa, v_tile(it - 1));
                    h_wgmma_wait0();
                    h_bar_arrive(full_k(it - 1) + H_EMPTY_V);
                    h_finish(p, done, wg, wt, o, m, l, handover);
                    cur = next;
                    n++;
                    break;
                }
                prev = h_out_rows(p, done, wg, wt, m, l);
                cur = next;
                n++;
                rows = h_rows(cur, wg, wt);
                h_bar_wait(bar_q, n & 1);
                h_load_q(qa, q_rows, wt); // the last S of item n - 1 retired
                boundary = true;
            }
            h_bar_wait(full_k(it), parity(it));
            h_bar_wait(full_k(it - 1) + H_FULL_V, parity(it - 1));
            word = tile_word(it);
            h_wgmma_fence();
            h_issue_s_rs(sc, qa, k_tile(it));
            h_issue_pv(o, pa, v_tile(it - 1));
            if (held)
                release(); // the store had this batch's issue to read the rows
            h_wgmma_wait1(); // S retired (P V may still run)
            h_bar_arrive(full_k(it) + H_EMPTY_K); // its K tile is free
            if (boundary)
                m[0] = m[1] = -INFINITY, l[0] = l[1] = 0.f;
            h_softmax_at(sc, m, l, alpha, word >> 1, rows, scale);
            h_wgmma_wait0(); // P V of tile it-1 retired
            h_bar_arrive(full_k(it - 1) + H_EMPTY_V); // its V tile is free
            if (boundary) { // that P V was the previous item's last
                h_stage_o(P, o, prev, q_rows, wg, wt);
                held = true;
            }
            // At a boundary m was -inf, so alpha = 0 and O restarts at 0.
            h_rescale(o, alpha);
            h_pack_p(pa, sc);
            it++;
        }
    }
    if (wt == 0)
        h_bulk_wait_all(); // the stores complete before the CTA exits
}
