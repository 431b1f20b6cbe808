// Block-sparse causal attention for sm_90a: TMA loads into an mbarrier
// pipeline, wgmma on two consumer warpgroups (docs/method.md §7).
//
// WHAT.  The same function as gen/templates/attention.cu (whose header states
// it in full): for sequence b, query head h and query block i, softmax over
// the keys of the selected key blocks of row (b, h, i), restricted to keys
// at positions <= the query's own and < Sk, times V; fp32 accumulation,
// output in the input dtype, optional LSE; a query that sees no key gets a
// zero row and LSE = -inf; rows past Sq are never written.  The generator
// picks this template for sm_90a when BLOCK_SIZE >= 128 (a CTA's 128 query
// rows then share one selection row) and HEAD_DIM is 64, 128 or 256; its
// PTX wrappers come first (gen/templates/attention_sm90_ptx.cuh), the
// overlapped consumer (gen/templates/attention_sm90_stream.cu), the producer
// (gen/templates/attention_sm90_produce.cu), the split rows and the work
// queue after it (gen/templates/attention_sm90_schedule.cu).
//
// WHY A SECOND KERNEL.  mma.sync issues 16x8x16 products per warp and
// needs every K/V fragment copied from shared memory into registers
// (ldmatrix) first; on an H100 that path tops out near 380 TFLOP/s.  wgmma
// multiplies 64 x N x 16 per warpgroup straight out of shared memory, and
// the copy engine (TMA) moves whole tiles without any thread issuing loads,
// so the math warps do nothing but MMAs and the softmax.
//
// ROLES (384 threads = 3 warpgroups, one CTA per SM).
//  * Warpgroup 0, the producer, gives its registers away (setmaxnreg.dec
//    to H_PRODUCER_REGS) and one thread of it takes the work items (see
//    PERSISTENT SCHEDULE below) and issues every TMA copy: per item the Q
//    tile once, then for each key tile of the selection the K tile and the
//    V tile, each onto its own "full" mbarrier, into stage it % H_STAGES.
//    Before reusing a stage's K (V) buffer it waits on the stage's "K
//    empty" ("V empty") mbarrier.
//  * Warpgroups 1 and 2, the consumers, take the registers (setmaxnreg.inc
//    to H_CONSUMER_REGS) and own 64 query rows each.  Per key tile: wait
//    K full; S = Q K^T (HEAD_DIM/16 wgmma m64nTNk16, Q from shared memory,
//    or from registers in the overlapped consumer; K from shared memory);
//    mask near the diagonal; online softmax in registers;
//    P converted to bf16/fp16 in registers; wait V full; O += P V
//    (TN/16 wgmma m64nDk16, A = P from registers, B = V from shared memory
//    read transposed).  Every consumer thread arrives on the stage's K
//    empty barrier (count 256) once its S retired and on its V empty
//    barrier once its P V did, so the next K tile loads a P V earlier
//    than a stage-wide release would let it (STAGE SLACK below).  The two
//    warpgroups run independently, so one's softmax overlaps the other's
//    MMAs.
//
// KEY WALK.  As the sm_80 kernel: each selected block is BLOCK_SIZE / TN
// tiles in ascending order; the walk stops at the first tile starting
// after lim, the largest query position of the CTA's valid rows.  Only
// the producer reads the selection row; it hands each tile's first key
// and whether it is the item's last to the consumers through shared
// memory (HANDOVER, in gen/templates/attention_sm90_produce.cu).  A tile
// needs masking (key > query position, or key >= Sk) only when it
// reaches past a warpgroup's smallest query position or past Sk.
//
// SHARED LAYOUT.  Every tile is stored as HEAD_DIM / 64 column chunks; a
// chunk is [rows][64 elements] = rows x 128 bytes, written by TMA with the
// 128-byte swizzle (16-byte unit u of row r lands at u ^ (r & 7)), which is
// the swizzle wgmma's descriptors name.  Chunks are 1024-byte aligned.
//   [Q: 128 rows][K: STAGES x TN rows][V: STAGES x TN rows][mbarriers]
//   [handover ints: 3 item slots, 2 split arrivals, STAGES tile words]
// Descriptors (PTX ISA, "Matrix Descriptor"; canonical layouts):
//  * Q (A) and K (B of S) are K-major (the reduction dimension, D, is
//    contiguous): SBO = 1024 (8 rows x 128 B), LBO unused; k-step kk
//    (16 dims) starts at chunk kk / 4, byte (kk % 4) * 32.
//  * V (B of P V) is MN-major (D contiguous, the reduction runs over keys):
//    LBO = TN * 128 (from one 64-dim chunk to the next), SBO = 1024 (8
//    keys); k-step kk (16 keys) starts at byte kk * 16 * 128; trans-b = 1.
//
// FRAGMENTS.  A warpgroup's m64nN f32 accumulator gives warp w rows 16 w +
// g and 16 w + g + 8 (lane = 4 g + t); register 4 j + e holds column 8 j +
// 2 t + (e & 1) of row g + 8 (e >> 1) -- the mma.m16n8 C layout repeated
// over N/8.  A from registers (P) uses the mma.m16n8k16 A layout per warp,
// so P of k-step kk is packed from S registers of n8 blocks 2 kk, 2 kk + 1
// exactly as in the sm_80 kernel: no shuffles.
//
// EPILOGUE.  The overlapped consumer stages O in its warpgroup's Q rows
// (free by then: Q lives in registers) and stores it with one TMA copy
// (gen/templates/attention_sm90_stream.cu).  Where that cannot be (the plain
// consumer, split pieces, a varlen tile passing its sequence's end), O is
// normalised and stored straight from the accumulators, after a transpose
// inside each quad of threads (h_store_quad, attention_sm90_ptx.cuh) so
// that every thread writes 16 bytes and every store of a warp whole
// 32-byte sectors (h_store_o).  In the plain consumer the Q rows go back
// to the producer as soon as the item's last S = Q K^T retired, so the
// next item's Q tile loads during the last P V and the epilogue.
//
// HOST CONTRACT.  As the sm_80 kernel, plus four tensor maps built by the
// host with cuTensorMapEncodeTiled (128B swizzle, box {64, rows}, zero
// fill out of bounds): Q box 128 rows, K and V box TN rows, O box 64 rows,
// over {D, S, H} (batch 1 or varlen: S = all tokens) or {D, S, H, B}.  The
// kernel parameter is AttnTmaParams, passed as __grid_constant__ so the
// TMA unit reads the maps from parameter memory (the blocks are defined
// in gen/templates/attention_params.h, for both compilers).  The launch
// shape is the host's (gen/launch.c): H_THREADS, H_SMEM_BYTES, H_TM rows
// per CTA (the Q box), H_TN keys per tile (the K/V box rows), persistent:
// the host launches prism_attention_schedule (1 CTA of H_SCHED_THREADS,
// the same parameters) and then prism_attention on min(SMs, work items)
// CTAs; the work queue p.schedule (4 + 4 x entries ints) lives in the
// plan's workspace.
//
// OVERLAP (the default with 3 stages).  Tile i's S = Q K^T is issued in
// one batch with tile i-1's O += P V; the consumer waits for S only, runs
// tile i's softmax while P V finishes, then waits for P V, rescales O and
// packs P -- and runs on across work items, Q held in registers
// (gen/templates/attention_sm90_stream.cu says why and how).  The two
// consumers issue their batches independently.  (They used to take turns
// on named barriers, FA3's ping-pong; on the H200 that changed nothing
// dense and cost 1-4% on sparse masks, where short rows keep the two
// warpgroups out of step: docs/performance.md.)
//
// On the H100 (D = 128, bf16, dense causal, bench/results/h100-2026-11-28-4
// and -5): overlapped with 2 stages 480-520 TFLOP/s, plain loop 550-583,
// overlapped with 3 stages 600-618 -- the overlap keeps a stage busy one
// tile longer, so it needs the third stage to keep TMA ahead.
//
// TUNABLES.  BLOCK_N in {0, 64, 128} (keys per tile; 0: 128 for D <= 128,
// 64 for D = 256), STAGES in {0, 2, 3} (0: 3 where it fits, else 2),
// OVERLAP in {0, 1, 2} (0: auto, 1: overlapped -- HEAD_DIM <= 128 only, a
// config error above: it spills at 256 --, 2: plain loop; the plain
// loop's two consumers overlap each other only as the warp schedulers
// interleave them).  BLOCK_M and WARP_M belong
// to the sm_80 kernel and are ignored here.

// The launch shape comes from the host (gen/launch.c): H_TM = 128 query
// rows per CTA (2 consumers x 64), H_TN keys per tile (BLOCK_N; default 128
// for D <= 128, else 64), H_STAGES K/V stages (STAGES; default 3 where they
// fit, else 2), H_THREADS = 384 and H_SMEM_BYTES of dynamic shared memory.
// OVERLAP 1: S of tile i issued with P V of tile i-1;
// 2: the plain loop (S, softmax, P V, one tile at a time); 0: overlap with
// 3 or more stages (it holds a stage one tile longer), else plain.
static constexpr bool H_OVERLAP = OVERLAP == 1 || (OVERLAP == 0 && H_STAGES >= 3);
static constexpr int H_PRODUCER_REGS = 40;
static constexpr int H_CONSUMER_REGS = 232;
// setmaxnreg only moves registers inside the CTA's launch allocation (384
// threads x 168, the most __launch_bounds__(384, 1) leaves): with more,
// setmaxnreg.inc waits forever for registers nobody releases.  40 leaves
// the producer's work-queue loop room (24 spilled once it took items).
static_assert(H_PRODUCER_REGS + 2 * H_CONSUMER_REGS <= 3 * 168,
              "setmaxnreg budget: producer + 2 consumers <= 3 x 168");
static constexpr int H_CHUNKS = HEAD_DIM / 64; // 128-byte column chunks per row
static constexpr int H_Q_BYTES = H_TM * HEAD_DIM * 2;
static constexpr int H_KV_BYTES = H_TN * HEAD_DIM * 2;
static constexpr int H_K_OFFSET = H_Q_BYTES;
static constexpr int H_V_OFFSET = H_K_OFFSET + H_STAGES * H_KV_BYTES;
static constexpr int H_BAR_OFFSET = H_V_OFFSET + H_STAGES * H_KV_BYTES;
// barriers: full_q, then per stage full_k, full_v, empty_k, empty_v
// (h_stage_bars); then q_empty and the work-item barriers (one per slot);
// then the ints the producer hands over
static constexpr int H_ITEM_SLOTS = 3;
static constexpr int H_STAGE_BARS = 4;
static constexpr int H_BARS = 1 + H_STAGE_BARS * H_STAGES + 1 + H_ITEM_SLOTS;
static constexpr int H_Q_EMPTY_OFFSET = H_BAR_OFFSET + 8 * (1 + H_STAGE_BARS * H_STAGES);
static constexpr int H_ITEM_OFFSET = H_BAR_OFFSET + 8 * H_BARS;
// Ints at H_ITEM_OFFSET (HANDOVER, attention_sm90_produce.cu): H_ITEM_SLOTS work-item slots
// of H_SLOT_INTS, one split-arrival int per consumer, one tile word per
// stage.
static constexpr int H_SLOT_INTS = 14;
static constexpr int H_ARRIVED_INT = H_ITEM_SLOTS * H_SLOT_INTS;
static constexpr int H_TILE_INT = H_ARRIVED_INT + 2;
static constexpr int H_SMEM_USED = H_ITEM_OFFSET + 4 * (H_TILE_INT + H_STAGES) + 1024;
// STAGE SLACK.  The producer refills a K buffer once both consumers'
// S = Q K^T of its last tile retired, and a V buffer once their P V did.
// The overlapped loop holds tile i's K and tile i-1's V, so with one
// release per stage (after P V) the next K tile could load only a P V
// later than its buffer was free, and one warpgroup could run only about
// a tile ahead of the other before it waited for K; separate releases
// double that.  (H200: dense 0.5-0.9% faster, 8K sparse unchanged --
// docs/performance.md.)
// Stage s's barriers: full K at the address returned, full V at + 8,
// K empty at + 16, V empty at + 24.
static constexpr int H_FULL_V = 8, H_EMPTY_K = 16, H_EMPTY_V = 24;
static constexpr int H_SPLIT_MAX = 16;       // pieces of one split row at most
static constexpr int H_MIN_PIECE_TILES = 8;  // key tiles of a piece at least
static constexpr int H_SUBTILES = BLOCK_SIZE / H_TN;
static constexpr int H_S_REGS = H_TN / 2;     // S accumulators per thread
static constexpr int H_O_REGS = HEAD_DIM / 2; // O accumulators per thread
static constexpr int H_CHAINS = 4; // partial maxima / sums per row (h_softmax)
static_assert(H_CHAINS == 4 && H_TN / 8 >= H_CHAINS,
              "h_softmax combines exactly 4 partial results, each of >= 1 n8 block");

static_assert(HEAD_DIM == 64 || HEAD_DIM == 128 || HEAD_DIM == 256,
              "attention (sm_90a): head_dim must be 64, 128 or 256");
static_assert(H_TM == 128 && H_THREADS == 3 * 128,
              "attention (sm_90a): a producer and two 64-row consumers");
static_assert(H_TN == 64 || H_TN == 128,
              "attention (sm_90a): block_n must be 0 (auto), 64 or 128");
static_assert(BLOCK_SIZE >= H_TM && BLOCK_SIZE % H_TN == 0,
              "attention (sm_90a): block_size must be >= 128");
static_assert(H_STAGES == 2 || H_STAGES == 3,
              "attention (sm_90a): stages must be 0 (auto), 2 or 3");
static_assert(H_SMEM_USED <= H_SMEM_BYTES,
              "attention (sm_90a): the launch shape (gen/launch.c) grants less "
              "shared memory than this layout needs");
static_assert(H_SMEM_BYTES <= 227 * 1024,
              "attention (sm_90a): (128 + 2 stages x block_n) x head_dim x 2 "
              "bytes exceed 227 KB; lower block_n or stages");
static_assert(WGMMA_SS_N == H_TN && WGMMA_RS_N == HEAD_DIM,
              "generator and template disagree on the wgmma shapes");

// Online softmax of one S tile (rows g and g + 8 of the thread's warp):
// optional causal / Sk masking, running max m and partial sum l per row;
// S becomes P (unnormalised, fp32) and alpha the factor O must be scaled
// by (applied by the caller: O may still be in use by a wgmma here).
template <bool MASKED>
static __device__ __forceinline__ void
h_softmax(float (&s)[H_S_REGS], float (&m)[2], float (&l)[2], float (&alpha)[2],
          int key0, int qpos0, int qcap, float scale) {
    const int t = threadIdx.x & 3;
    if constexpr (MASKED) {
        // key = key0 + 8 j + 2 t + (e & 1) is masked past the row's last
        // visible key; with that limit taken relative to key0 + 2 t once per
        // row, each element is one compare against an immediate.
        const int last[2] = {qpos0 + min(0, qcap) - key0 - 2 * t,
                             qpos0 + min(8, qcap) - key0 - 2 * t};
#pragma unroll
        for (int j = 0; j < H_TN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (8 * j + (e & 1) > last[e >> 1])
                    s[4 * j + e] = -INFINITY;
    }
    // Row maxima and sums in H_CHAINS interleaved partial results: one
    // running value per row would be a chain of H_TN / 4 dependent FMNMX
    // (and H_TN / 2 FADD) on the consumer's critical path.
    float mx[2] = {-INFINITY, -INFINITY};
    {
        float part[H_CHAINS][2];
#pragma unroll
        for (int j = 0; j < H_TN / 8; j++) {
            float (&pc)[2] = part[j % H_CHAINS];
            const float m0 = fmaxf(s[4 * j], s[4 * j + 1]);
            const float m1 = fmaxf(s[4 * j + 2], s[4 * j + 3]);
            pc[0] = j < H_CHAINS ? m0 : fmaxf(pc[0], m0);
            pc[1] = j < H_CHAINS ? m1 : fmaxf(pc[1], m1);
        }
#pragma unroll
        for (int r = 0; r < 2; r++)
            mx[r] = fmaxf(fmaxf(part[0][r], part[1][r]), fmaxf(part[2][r], part[3][r]));
    }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        const float m_new = fmaxf(m[r], mx[r] * scale);
        base[r] = m_new == -INFINITY ? 0.f : m_new; // no inf - inf
        alpha[r] = exp2_approx(m[r] - base[r]);          // m = -inf -> 0
        m[r] = m_new;
    }
    float sum[H_CHAINS][2] = {};
#pragma unroll
    for (int j = 0; j < H_TN / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            s[4 * j + e] = exp2_approx(fmaf(s[4 * j + e], scale, -base[e >> 1]));
            sum[j % H_CHAINS][e >> 1] += s[4 * j + e];
        }
#pragma unroll
    for (int r = 0; r < 2; r++)
        l[r] = l[r] * alpha[r] + ((sum[0][r] + sum[1][r]) + (sum[2][r] + sum[3][r]));
}

// O *= alpha per row; skipped when every row of the warp kept its maximum
// (the usual case once the maxima settle; warp-uniform branch).
static __device__ __forceinline__ void h_rescale(float (&o)[H_O_REGS],
                                                 const float (&alpha)[2]) {
    if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
        for (int j = 0; j < HEAD_DIM / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                o[4 * j + e] *= alpha[e >> 1];
    }
}

// P (fp32 S registers) -> the A fragments of the P V k-steps.
static __device__ __forceinline__ void h_pack_p(u32 (&pa)[H_TN / 16][4],
                                                const float (&sc)[H_S_REGS]) {
#pragma unroll
    for (int kk = 0; kk < H_TN / 16; kk++) {
        pa[kk][0] = float2_to_input2(sc[8 * kk + 0], sc[8 * kk + 1]);
        pa[kk][1] = float2_to_input2(sc[8 * kk + 2], sc[8 * kk + 3]);
        pa[kk][2] = float2_to_input2(sc[8 * kk + 4], sc[8 * kk + 5]);
        pa[kk][3] = float2_to_input2(sc[8 * kk + 6], sc[8 * kk + 7]);
    }
}

// S = Q K^T over HEAD_DIM / 16 k-steps (issued, not waited for).
static __device__ __forceinline__ void h_issue_s(float (&sc)[H_S_REGS], u32 q_base,
                                                 u32 k_base) {
    const u32 qa = h_desc_lo(q_base, 16), kb = h_desc_lo(k_base, 16);
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; kk++) {
        const u32 off = (kk & 3) * 32; // 16 dims = 32 bytes
        const u64 da = h_desc(qa + ((kk / 4) * H_TM * 128 + off) / 16, 1024);
        const u64 db = h_desc(kb + ((kk / 4) * H_TN * 128 + off) / 16, 1024);
        wgmma_ss(sc, da, db, kk > 0);
    }
    h_wgmma_commit();
}

// O += P V over H_TN / 16 k-steps (issued, not waited for).
static __device__ __forceinline__ void h_issue_pv(float (&o)[H_O_REGS],
                                                  const u32 (&pa)[H_TN / 16][4],
                                                  u32 v_base) {
    const u32 vb = h_desc_lo(v_base, H_TN * 128);
#pragma unroll
    for (int kk = 0; kk < H_TN / 16; kk++)
        wgmma_rs(o, pa[kk], h_desc(vb + kk * 16 * 128 / 16, 1024));
    h_wgmma_commit();
}

// One work item = (sequence b, query head h, query tile of H_TM rows),
// numbered ((b * Hq + h) * tiles + tile).  A queue entry is the item
// and its split info: (first partial slot << 10) | (piece << 5) | (pieces
// - 1); piece s of k walks selected blocks [s * per, (s + 1) * per) of the
// row, per = ceil(count / k).

struct HSplit {
    int pieces, piece, first; // pieces == 1: not split; first partial slot
};

static __device__ __forceinline__ HSplit h_split_info(int info) {
    return {(info & 31) + 1, (info >> 5) & 31, info >> 10};
}

// The selected blocks of piece sp of a row of count blocks: first and n.
static __device__ __forceinline__ void h_piece_blocks(int count, const HSplit &sp,
                                                      int &first, int &n) {
    const int per = (count + sp.pieces - 1) / sp.pieces;
    first = min(sp.piece * per, count);
    n = min(per, count - first);
}

// An item as the producer hands it to the consumers (HANDOVER), in a
// slot of H_SLOT_INTS ints: the item (-1: no more work), its split info,
// first query row, lengths, the first key of its first tile, the last
// query position of its rows (key0 > lim: no tile), its TMA coordinates
// (row, head, batch: as the Q copy's, for the O store), and the element
// offsets of its O and LSE rows.
struct HSlot {
    int w, info, q0, Sq, Sk, key0, lim, row, h, b;
    i64 o_off, lse_off;
};
static_assert(sizeof(HSlot) <= 4 * H_SLOT_INTS && H_SLOT_INTS % 2 == 0,
              "HSlot must fit its slot, 8-byte aligned");

// Item n's slot and its barrier (count 1, completing once per use of the
// slot).  Three slots: item n + 3 reuses slot n % 3 only after q_empty
// completed for item n + 1, i.e. after every consumer moved past item n's
// end (the overlapped consumer reads item n's slot again there).
static __device__ __forceinline__ volatile int *h_slot_at(volatile int *handover, int n) {
    return handover + H_SLOT_INTS * (n % H_ITEM_SLOTS);
}
static __device__ __forceinline__ u32 h_stage_bars(u32 smem, int s) {
    return smem + H_BAR_OFFSET + 8 * (1 + H_STAGE_BARS * s);
}
static __device__ __forceinline__ u32 h_item_bar(u32 smem, int n) {
    return smem + H_Q_EMPTY_OFFSET + 8 * (1 + n % H_ITEM_SLOTS);
}
static __device__ __forceinline__ int h_item_parity(int n) {
    return (n / H_ITEM_SLOTS) & 1;
}

// Read after the slot's barrier wait, whose asm clobbers memory: plain
// loads, so the fields a caller does not use are never loaded.
static __device__ __forceinline__ HSlot h_slot_get(const volatile int *vslot) {
    const int *slot = const_cast<const int *>(vslot);
    const i64 *wide = reinterpret_cast<const i64 *>(slot + 10);
    return {slot[0], slot[1], slot[2], slot[3], slot[4], slot[5], slot[6],
            slot[7], slot[8], slot[9], wide[0], wide[1]};
}

// Natural-log LSE of a row from its maximum m (scaled log2 domain) and
// its sum; -inf for a row that saw no key.
static __device__ __forceinline__ float h_lse(float m, float sum) {
    return sum > 0.f ? (m + __log2f(sum)) * 0.693147180559945309f : -INFINITY;
}

// Split rows (a piece's partial state, the last piece's merge): defined
// with the schedule kernel in gen/templates/attention_sm90_schedule.cu.
static __device__ __forceinline__ void
h_split_piece(const AttnParams &p, int info, int wg, int wt,
              const float (&o)[H_O_REGS], const float (&m)[2], const float (&l)[2],
              volatile int *arrived, int q0, int Sq, u16 *og, float *lse);

// The direct epilogue: normalise O and store it straight from the
// accumulators, 16 bytes per thread and store (h_store_quad): a warp's
// store writes 64 contiguous bytes of 8 rows; and the LSE.  og and lse
// point at the item's (sequence, head); rows >= Sq are not written.
static __device__ __forceinline__ void h_store_o(const AttnParams &p,
                                                 const float (&o)[H_O_REGS],
                                                 const float (&m)[2], const float (&l)[2],
                                                 int wg, int wt, int q0, int Sq, u16 *og,
                                                 float *lse) {
    const int warp = wt >> 5, g = (wt & 31) >> 2, t = wt & 3;
    const int row0 = q0 + (wg - 1) * 64 + 16 * warp + g; // the thread's row g
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float sum = l[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        inv[r] = sum > 0.f ? 1.f / sum : 0.f;
        if (lse && t == 0 && row0 + 8 * r < Sq)
            lse[row0 + 8 * r] = h_lse(m[r], sum);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + 8 * r;
        u16 *orow = og + (i64)row * p.o_stride_s;
#pragma unroll
        for (int j0 = 0; j0 < HEAD_DIM / 8; j0 += 4) {
            u32 a[4];
#pragma unroll
            for (int k = 0; k < 4; k++)
                a[k] = float2_to_input2(o[4 * (j0 + k) + 2 * r] * inv[r],
                                        o[4 * (j0 + k) + 2 * r + 1] * inv[r]);
            h_store_quad(orow + 8 * j0, a, t, row < Sq);
        }
    }
}

// An item's end without a successor in flight: a split piece's partial
// state (the last piece merges), or the direct epilogue.
static __device__ __forceinline__ void h_finish(const AttnParams &p, const HSlot &it,
                                                int wg, int wt,
                                                const float (&o)[H_O_REGS],
                                                const float (&m)[2], const float (&l)[2],
                                                volatile int *handover) {
    u16 *og = p.o + it.o_off;
    float *lse = p.lse ? p.lse + it.lse_off : nullptr;
    if ((it.info & 31) != 0)
        h_split_piece(p, it.info, wg, wt, o, m, l, handover + H_ARRIVED_INT + (wg - 1),
                      it.q0, it.Sq, og, lse);
    else
        h_store_o(p, o, m, l, wg, wt, it.q0, it.Sq, og, lse);
}

// The masked softmax only where the tile reaches past the warpgroup's
// smallest query position or past Sk.  Rows of one warpgroup (64 query
// rows of an item): the thread's row g position, its distance to Sk - 1,
// the warpgroup's smallest position, and Sk.
struct HRows {
    int qpos0, qcap, first, Sk;
};

static __device__ __forceinline__ HRows h_rows(const HSlot &it, int wg, int wt) {
    const int shift = it.Sk - it.Sq;
    const int first = it.q0 + (wg - 1) * 64 + shift;
    const int qpos0 = first + 16 * (wt >> 5) + ((wt & 31) >> 2);
    return {qpos0, it.Sk - 1 - qpos0, first, it.Sk};
}

static __device__ __forceinline__ void h_softmax_at(float (&s)[H_S_REGS], float (&m)[2],
                                                    float (&l)[2], float (&alpha)[2],
                                                    int key0, const HRows &r,
                                                    float scale) {
    if (key0 + H_TN - 1 > r.first || key0 + H_TN > r.Sk)
        h_softmax<true>(s, m, l, alpha, key0, r.qpos0, r.qcap, scale);
    else
        h_softmax<false>(s, m, l, alpha, key0, r.qpos0, r.qcap, scale);
}

// The overlapped consumer (H_OVERLAP): gen/templates/attention_sm90_stream.cu.
static __device__ __forceinline__ void h_consume_stream(const AttnTmaParams &P, u32 smem,
                                                        volatile int *handover, int wg);

// The producer thread's loop: gen/templates/attention_sm90_produce.cu.
template <bool PAGED>
static __device__ __forceinline__ void h_producer(const AttnTmaParams &P,
                                                  const AttnPaging &pg, u32 smem,
                                                  volatile int *handover);

// ---- the plain consumer (!H_OVERLAP): 64 query rows of one item ----
// Work item n of the CTA (slot it), whose first tile is the CTA's tile
// it0: S, softmax and P V one tile at a time, Q read from shared memory
// by wgmma; returns it0 advanced past the item's tiles (the producer's
// count).
static __device__ __forceinline__ int
h_consume(const AttnParams &p, u32 smem, volatile int *handover, int wg, int n,
          int it0, const HSlot &it_slot) {
    // wgmma reads its descriptors from uniform registers, and nvcc keeps a
    // value there only when it can prove it warp-uniform.  wg (from
    // threadIdx) and it0 (from loaded selection counts) are uniform in fact
    // but not provably, so every descriptor used to be built in ordinary
    // registers and moved over with 2-4 R2UR per wgmma, on the batch's
    // issue path.  Broadcast from lane 0 (here and for wg in the kernel)
    // they are provably uniform and a batch issues back to back (H200:
    // dense 6-7% faster; docs/performance.md).
    it0 = __shfl_sync(0xffffffffu, it0, 0);
    const int wt = threadIdx.x - 128 * wg; // thread within the warpgroup
    const HRows rows = h_rows(it_slot, wg, wt);
    const float scale = p.scale_log2;
    const u32 bar_q = smem + H_BAR_OFFSET;

    float o[H_O_REGS];
#pragma unroll
    for (int i = 0; i < H_O_REGS; i++)
        o[i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

    h_bar_wait(bar_q, n & 1);
    const u32 q_base = smem + (wg - 1) * 64 * 128; // + chunk * H_TM * 128
    // it: the item's tile index; it0 + it names the stage and its phase
    auto stage = [&](int it) { return (it0 + it) % H_STAGES; };
    auto parity = [&](int it) { return ((it0 + it) / H_STAGES) & 1; };
    float sc[H_S_REGS], alpha[2];
    u32 pa[H_TN / 16][4];
    // The Q rows go back to the producer (q_empty) as soon as this
    // warpgroup's last S = Q K^T retired, so the next item's Q tile loads
    // while this item's last P V and epilogue run.
    const u32 q_empty = smem + H_Q_EMPTY_OFFSET;
    int tiles = 0;
    const bool any = it_slot.key0 <= it_slot.lim;
    if (!any)
        h_bar_arrive(q_empty);
    for (int it = 0, word = 0; any && !(word & 1); it++) {
        const u32 full_k = h_stage_bars(smem, stage(it));
        h_bar_wait(full_k, parity(it));
        word = handover[H_TILE_INT + stage(it)];
        h_wgmma_fence();
        h_issue_s(sc, q_base, smem + H_K_OFFSET + stage(it) * H_KV_BYTES);
        h_wgmma_wait0();
        h_bar_arrive(full_k + H_EMPTY_K); // this thread is done with the K tile
        if (word & 1)
            h_bar_arrive(q_empty); // the item's last S retired
        h_softmax_at(sc, m, l, alpha, word >> 1, rows, scale);
        h_rescale(o, alpha);
        h_pack_p(pa, sc);
        h_bar_wait(full_k + H_FULL_V, parity(it));
        h_wgmma_fence();
        h_issue_pv(o, pa, smem + H_V_OFFSET + stage(it) * H_KV_BYTES);
        h_wgmma_wait0();
        h_bar_arrive(full_k + H_EMPTY_V); // and with the V tile
        tiles = it + 1;
    }
    h_finish(p, it_slot, wg, wt, o, m, l, handover);
    return it0 + tiles;
}

// PERSISTENT SCHEDULE.  The grid is one CTA per SM (or fewer when there
// is less work); each CTA takes work items from p.schedule, a list the
// schedule kernel (gen/templates/attention_sm90_schedule.cu) grouped by KV
// head and sorted inside a group by decreasing selected-block count, with
// an atomic ticket counter: the longest rows start first and a CTA that
// finishes early takes the next item, so the tail is the shortest rows
// (density-aware load balance).  The producer thread takes the ticket and
// publishes the item (HSlot: what the consumers need of it, derived once)
// in one of three shared slots, each with an mbarrier (count 1) the
// consumers wait on; item n uses slot n % 3 (h_slot_at).  Barrier
// phases run on across items: full_q completes once per item, each
// stage's barriers once per use of the stage (the running tile count),
// and q_empty (256 consumer arrivals once per item: the consumers are
// done with the item's Q rows) lets the producer overwrite the Q rows.
// The producer issues the next item's first K/V tile before it waits for
// q_empty.  The plain consumer arrives once its item's last S retired, so
// the next Q loads under the last P V and the epilogue; the overlapped
// consumer arrives once Q is in its registers (and its staged O was
// read), so the next Q loads while the item runs.
// PAGED (prism_attention_paged, prism.h's prism_paged_kv): K and V come
// from page pools; only the producer's copies differ (h_produce), the
// consumers and the schedule are the same code.
template <bool PAGED>
static __device__ __forceinline__ void h_attention(const AttnTmaParams &P,
                                                   const AttnPaging &pg) {
    extern __shared__ __align__(1024) u8 h_smem_raw[];
    // 1024-byte alignment for the 128B-swizzle atoms
    u8 *smem_ptr = h_smem_raw + ((1024 - (smem_u32(h_smem_raw) & 1023)) & 1023);
    const u32 smem = smem_u32(smem_ptr);
    const AttnParams &p = P.a;
    const u32 bars = smem + H_BAR_OFFSET;
    const u32 q_empty = smem + H_Q_EMPTY_OFFSET;
    volatile int *handover = reinterpret_cast<volatile int *>(smem_ptr + H_ITEM_OFFSET);

    const int tid = threadIdx.x;
    if (tid == 0) {
        h_bar_init(bars, 1);
        for (int s = 0; s < H_STAGES; s++) {
            const u32 sb = h_stage_bars(smem, s);
            h_bar_init(sb, 1);              // full K
            h_bar_init(sb + H_FULL_V, 1);   // full V
            h_bar_init(sb + H_EMPTY_K, 256);
            h_bar_init(sb + H_EMPTY_V, 256);
        }
        h_bar_init(q_empty, 256);
        for (int n = 0; n < H_ITEM_SLOTS; n++)
            h_bar_init(h_item_bar(smem, n), 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    const int wg = __shfl_sync(0xffffffffu, tid / 128, 0); // provably uniform: h_consume
    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(H_PRODUCER_REGS));
        if (tid != 0)
            return;
        h_producer<PAGED>(P, pg, smem, handover);
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(H_CONSUMER_REGS));
    if constexpr (H_OVERLAP) {
        h_consume_stream(P, smem, handover, wg);
    } else {
        int it = 0;
        for (int n = 0;; n++) {
            h_bar_wait(h_item_bar(smem, n), h_item_parity(n));
            const HSlot slot = h_slot_get(h_slot_at(handover, n));
            if (slot.w < 0)
                return;
            it = h_consume(p, smem, handover, wg, n, it, slot);
        }
    }
}

// The entry points: the generator compiles each in a program of its own
// (gen/kernels.c), PRISM_PAGED_PROGRAM defined in the paged one only; the
// schedule kernel (attention_sm90_schedule.cu) serves both and is in the
// plain program.
#ifndef PRISM_PAGED_PROGRAM
extern "C" __global__ void __launch_bounds__(H_THREADS, 1)
prism_attention(const __grid_constant__ AttnTmaParams P) {
    h_attention<false>(P, AttnPaging{});
}
#else
extern "C" __global__ void __launch_bounds__(H_THREADS, 1)
prism_attention_paged(const __grid_constant__ AttnTmaPagedParams P) {
    h_attention<true>(P.t, P.pg);
}
#endif
