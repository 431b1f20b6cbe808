// Block-sparse causal attention, FlashAttention-2 style (docs/method.md §7).
//
// WHAT.  For sequence b, query head h (KV head h / G, G = Hq / Hkv of the
// launch) and query block i, every query token t of the block (absolute
// position t + Sk - Sq) gets softmax(scale q.k) (scale 1 / sqrt(D) unless
// the launch gives another: prism_params) over the keys of the selected key
// blocks of row (b, h, i) -- block_indices, ascending, block_counts of them --
// restricted to keys at positions <= its own and < Sk, times V.  fp32
// accumulation, output in the input dtype, optional natural-log LSE.  A query
// that sees no key gets a zero row and LSE = -inf.  Rows past the
// sequence's Sq are never written.  With every block selected this is dense
// causal FlashAttention.  Any ascending subset of [0, nk) is accepted (not
// only block-causal ones): blocks above the diagonal or past Sk are skipped.
//
// GRID.  x = query tiles of ATTN_TILE_M rows (tile index reversed, so the
// tiles at the end of a sequence -- the ones with the most causal keys --
// start first), y = query head, z = sequence.  A CTA whose first row is past
// its sequence's Sq exits, so any grid.x >= ceil(Sq_max / ATTN_TILE_M) is
// correct.  ATTN_TILE_M = min(BLOCK_M, BLOCK_SIZE): a CTA's rows lie inside
// one query block and share one selection row.
//
// WARPS.  A warp owns ATTN_WARP_M = 16 or 32 query rows: one or two m16
// atoms of mma.m16n8k16 (ATTN_MT).  With 32, every K and V fragment read
// from shared memory feeds two MMAs instead of one -- half the ldmatrix
// traffic per MMA, which is what limits the 16-row shape (measured on H100:
// 1.61 ms vs 1.83 ms for dense causal 8K, D = 128).  A CTA has
// ATTN_TILE_M / ATTN_WARP_M warps (1 for BLOCK_SIZE 16, 4 for the default
// 128 x 32).  Warps never exchange scores: the softmax of a row lives in
// the 4 lanes of one quad, so the only CTA-wide barrier per key tile is the
// one guarding the shared K/V buffers.
//
// KEY WALK.  Key tiles have ATTN_TILE_N = min(BLOCK_N, BLOCK_SIZE) keys;
// each selected key block is walked as BLOCK_SIZE / ATTN_TILE_N tiles in
// ascending order.  With lim = largest absolute query position of the CTA's
// valid rows (<= Sk - 1), a tile starting after lim is fully masked for every
// row, and since tiles ascend so is every later one: the walk stops there
// (this also skips any selected block above the diagonal or past Sk).  A
// shared-memory tile is consumed in chunks of ATTN_CHUNK_N (<= 64) keys, one
// softmax step each.  A chunk is MASKED (token-level causal + key < Sk) only
// if its last key can exceed the CTA's smallest query position or the chunk
// crosses Sk, i.e. near the diagonal; all other chunks run the unmasked
// code.  Masked scores are -inf before the row max.
//
// PIPELINE (cp.async 16-byte copies, 2 stages).  Shared memory holds the Q
// tile and two stages of (K tile, V tile).  Prologue: Q and key tile 0 in
// one cp.async group, wait_group 0, __syncthreads.  Iteration n: issue tile
// n+1 into the other stage as one group (the barrier that ended iteration
// n-1 proves nobody still reads that stage), then S = Q K^T, softmax,
// O += P V on stage n & 1, then wait_group 0 + __syncthreads (tile n+1
// landed and is visible to all warps; stage n & 1 is free).  Rows past Sq
// and keys past Sk are zero-filled by cp.async (src-size 0, the source
// address is the valid row 0 and is not read), so no out-of-bounds load
// happens and masked P (= 0) never meets garbage V.  The block index of tile
// n+2 is fetched during tile n, off the critical path.
//
// SHARED LAYOUT.  Every tile is row-major [rows][HEAD_DIM] bf16/fp16, a row
// being HEAD_DIM/8 16-byte chunks; chunk c of row r is stored at chunk
// position c ^ (r & 7) (XOR swizzle).  ldmatrix reads 8 rows of one logical
// chunk and cp.async writes 8 chunks of one row per 8-lane phase: both hit
// 8 distinct 16-byte bank groups, so neither conflicts, without padding.
//   [Q: TILE_M rows][K stage 0][K stage 1][V stage 0][V stage 1]
//   [64 B loop constants][lean only: softmax state, 16 * MT B per thread]
//   ATTN_SMEM_BYTES = (TILE_M + 4 TILE_N) * HEAD_DIM * 2 + 64
//                     + (ATTN_LEAN ? THREADS * MT * 16 : 0)
// At the end each warp stages its output rows in its own (dead) rows of the
// Q tile and writes them out as coalesced 16-byte stores.
//
// FRAGMENTS (mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.f32; lane =
// 4 g + t).  A 16x16 row-major, 4 x .b32: a0 (row g, k 2t..2t+1), a1 (row
// g+8, k 2t..), a2 (row g, k 2t+8..), a3 (row g+8, k 2t+8..).  B 16x8
// "col-major" (k contiguous per n), 2 x .b32: b0 (k 2t..2t+1, n g), b1 (k
// 2t+8.., n g).  C/D 16x8 fp32: c0,c1 (row g, n 2t, 2t+1), c2,c3 (row g+8).
// (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type".)
// ldmatrix.x4: lanes 8m..8m+7 give the 8 row addresses of matrix m; each
// lane receives row g, elements 2t, 2t+1 of every matrix (.trans: the
// transpose's, i.e. rows 2t, 2t+1 of column g).
//  * Q as A (preloaded registers when MT * D <= 128, else re-read from
//    shared memory per k-step): matrix m = rows +8*(m&1), k-chunk +(m>>1)
//    -> registers a0..a3 in order.
//  * K as B of S = Q K^T: K is [key][dim] = B[k=dim][n=key] col-major, the
//    natural layout; plain ldmatrix.x4 over 16 keys x 16 dims: matrix m =
//    keys +8*(m>>1), dim-chunk +(m&1) -> (b0, b1) of key n-tile 0, then 1.
//  * P as A of O += P V: the S accumulators of key n-tiles 2kk and 2kk+1
//    are exactly the A fragment of k-step kk: a0 = pack(S[2kk].c0, c1),
//    a1 = pack(S[2kk].c2, c3), a2 = pack(S[2kk+1].c0, c1), a3 = pack(
//    S[2kk+1].c2, c3) with cvt.rn.{bf16x2,f16x2}.f32: P goes from fp32
//    registers straight into the MMA (no shared-memory round trip).
//  * V as B: V is [key=k][dim=n] row-major, so ldmatrix.x4.trans over 16
//    keys x 16 dims: matrix m = keys +8*(m&1), dim-chunk +(m>>1) -> (b0, b1)
//    of dim n-tile 0, then 1.
//
// SOFTMAX (fp32, base 2).  Scores are scaled by scale_log2 = log2(e) *
// scale (a launch parameter, p.scale_log2), folded into one FFMA with the
// running max: p = 2^(s*scale - m)
// (ex2.approx).  Per row: m = running max (scaled), l = per-lane partial sum
// (quad-reduced once at the end), O rescaled by alpha = 2^(m_old - m_new)
// per chunk -- skipped when alpha == 1 for every row of the warp (the usual
// case once the maxima settle).  A row whose keys are all masked so far has
// m = -inf; it uses 0 as the subtraction base so no inf - inf arises.
// Final: O /= l, LSE = (m + log2 l) * ln 2; l == 0 -> O = 0, LSE = -inf.
//
// REGISTERS.  D = 128 with 32 rows per warp keeps 128 O + 64 S fp32
// accumulators per lane; ptxas fills the rest of the 255 registers with
// prefetched fragments and spills the loop state.  That shape (ATTN_LEAN)
// therefore keeps the softmax state and the loop constants in shared
// memory, unrolls the Q K^T k-loop by 4 only, and re-derives every epilogue
// index after the loop: 0 spills, no stack, at no measurable cost.
//
// HOST CONTRACT.  Inputs: 16-byte aligned base pointers, every S/H/B stride
// a multiple of 8 elements, D stride 1 (cp.async 16-byte copies and 16-byte
// output stores).  Varlen: cu_seqlens_q and cu_seqlens_k both set, strides_b
// ignored, sequence b starts at cu_seqlens[b] * stride_s.  LSE layout:
// [batch, Hq, seqlen_q] (fixed lengths) or [Hq, total_q] with
// total_q = cu_seqlens_q[batch] (varlen, FlashAttention's layout, as in
// prism.h and reference/).  The launch shape -- ATTN_THREADS, ATTN_TILE_M
// rows per CTA, ATTN_SMEM_BYTES of dynamic shared memory, one CTA per
// query tile and head -- comes from the host (gen/launch.c); dynamic smem
// > 48 KB needs CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
//
// TUNABLES (0 = per-shape default).  BLOCK_M in {0, 64, 128}: query rows
// per CTA (default 128 for D <= 128, 64 for D = 256).  BLOCK_N in {0, 32,
// 64, 128}: keys per shared-memory tile (default 64 for D <= 128, 32 for
// D = 256 and for D = 128 on the 99 KB sm_86/sm_89).  WARP_M in {0, 16,
// 32}: query rows per warp (default 32 where D <= 128 and the CTA tile has
// 128 rows, else 16; 32 needs D <= 128).  Shapes whose shared memory exceeds
// the arch's limit fail to compile with a static_assert saying so.

// ---- tile shape ----
// The host fixes the launch shape (gen/launch.c) and emits it above:
// ATTN_TILE_M query rows per CTA (min(BLOCK_M, BLOCK_SIZE); default 128
// for D <= 128, else 64), ATTN_TILE_N keys per tile (min(BLOCK_N,
// BLOCK_SIZE); default 64 for D <= 128, 32 for D = 256 and for D = 128 on
// the 99 KB sm_86/sm_89), ATTN_WARP_M rows per warp (32 where the
// registers allow it -- two m16 atoms sharing every K/V fragment: half the
// shared-memory traffic per MMA -- and the CTA still has 4 warps to share
// the copies; else 16), ATTN_THREADS and ATTN_SMEM_BYTES.
// Shared memory one CTA may use (NVRTC compiles device code only, so
// __CUDA_ARCH__ is always the target): sm_80 163 KB, sm_86/sm_89 99 KB,
// sm_90 227 KB.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
static constexpr int ATTN_SMEM_LIMIT = 227 * 1024;
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ != 800
static constexpr int ATTN_SMEM_LIMIT = 99 * 1024;
#else
static constexpr int ATTN_SMEM_LIMIT = 163 * 1024;
#endif
static constexpr int ATTN_MT = ATTN_WARP_M / 16; // m16 atoms per warp
static constexpr int ATTN_WARPS = ATTN_THREADS / 32;
static constexpr int ATTN_SUBTILES = BLOCK_SIZE / ATTN_TILE_N; // key tiles per block
static constexpr int ATTN_ROW_BYTES = HEAD_DIM * 2;
static constexpr int ATTN_ROW_CHUNKS = HEAD_DIM / 8; // 16-byte chunks per row
static constexpr int ATTN_Q_BYTES = ATTN_TILE_M * ATTN_ROW_BYTES;
static constexpr int ATTN_KV_BYTES = ATTN_TILE_N * ATTN_ROW_BYTES; // one K or V tile
static constexpr int ATTN_CONSTS_OFFSET = ATTN_Q_BYTES + 4 * ATTN_KV_BYTES;
// LEAN: the D = 128 x 32-row shape, whose 128 O + 64 S accumulators leave
// ptxas no room: the softmax state (running max and sum of each of the
// lane's 2 MT rows) and the loop constants live in shared memory, re-read
// once per chunk / tile, and the Q K^T k-loop is unrolled by 4 only.
static constexpr bool ATTN_LEAN = ATTN_MT * HEAD_DIM >= 256 && ATTN_MT > 1;
static constexpr int ATTN_STATE_STRIDE = ATTN_LEAN ? ATTN_THREADS : 1;
static constexpr int ATTN_ROWSUM_OFFSET = ATTN_CONSTS_OFFSET + 64;
static constexpr int ATTN_SMEM_USED = // + lean: per-lane softmax sums and maxima
    ATTN_ROWSUM_OFFSET + (ATTN_LEAN ? 2 * ATTN_THREADS * ATTN_MT * 2 * 4 : 0);
static constexpr bool ATTN_Q_IN_REGS = ATTN_MT * HEAD_DIM <= 128;
static constexpr int ATTN_KSTEPS = HEAD_DIM / 16; // k-steps of Q K^T
// Keys per softmax step: a shared-memory tile is consumed in sub-tiles of
// ATTN_CHUNK_N keys so that the S accumulators (ATTN_MT * ATTN_CHUNK_N / 2
// registers) plus O (ATTN_MT * HEAD_DIM / 2) stay clear of 255 registers.
static constexpr int ATTN_CHUNK_N_MAX = ATTN_MT * HEAD_DIM > 256 ? 32 : 64;
static constexpr int ATTN_CHUNK_N =
    ATTN_TILE_N < ATTN_CHUNK_N_MAX ? ATTN_TILE_N : ATTN_CHUNK_N_MAX;
static constexpr int ATTN_CHUNKS = ATTN_TILE_N / ATTN_CHUNK_N;
static constexpr int ATTN_NTILES_S = ATTN_CHUNK_N / 8; // n-tiles of S
static constexpr int ATTN_PSTEPS = ATTN_CHUNK_N / 16;  // k-steps of P V
static constexpr int ATTN_NTILES_O = HEAD_DIM / 8;    // n-tiles of O
static constexpr int ATTN_QK_UNROLL = ATTN_LEAN ? 4 : ATTN_KSTEPS;

static_assert(HEAD_DIM == 64 || HEAD_DIM == 128 || HEAD_DIM == 256,
              "attention: head_dim must be 64, 128 or 256");
static_assert(BLOCK_SIZE >= 16 && (BLOCK_SIZE & (BLOCK_SIZE - 1)) == 0,
              "attention: block_size must be a power of two >= 16");
static_assert(ATTN_TILE_M == 16 || ATTN_TILE_M == 32 || ATTN_TILE_M == 64 ||
                  ATTN_TILE_M == 128,
              "attention: block_m must be 0 (auto), 64 or 128");
static_assert(ATTN_TILE_N == 16 || ATTN_TILE_N == 32 || ATTN_TILE_N == 64 ||
                  ATTN_TILE_N == 128,
              "attention: block_n must be 0 (auto), 32, 64 or 128");
static_assert(ATTN_WARP_M == 16 || ATTN_WARP_M == 32,
              "attention: warp_m must be 0 (auto), 16 or 32");
static_assert(ATTN_MT * HEAD_DIM <= 256,
              "attention: warp_m = 32 needs head_dim <= 128 (the O "
              "accumulator alone would take warp_m * head_dim / 32 registers)");
static_assert(ATTN_TILE_M % ATTN_WARP_M == 0 && ATTN_TILE_N % 16 == 0 &&
                  ATTN_WARPS * ATTN_WARP_M == ATTN_TILE_M &&
                  ATTN_WARPS * 32 == ATTN_THREADS,
              "tile shape");
static_assert(ATTN_THREADS % ATTN_ROW_CHUNKS == 0, "loader mapping");
static_assert(sizeof(void *) == 8 && 2 * 8 + 2 * 8 + 8 + 4 * 4 <= 64, "consts slot");
static_assert(ATTN_SMEM_USED <= ATTN_SMEM_BYTES,
              "attention: the launch shape (gen/launch.c) grants less shared "
              "memory than this layout needs");
static_assert(ATTN_SMEM_BYTES <= ATTN_SMEM_LIMIT,
              "attention: ATTN_SMEM_BYTES = (tile_m + 4 tile_n) * head_dim * 2 "
              "+ 64 (+ 16 * threads for the lean shape) exceeds this arch's "
              "shared memory per CTA (sm_80 163 KB, sm_86/89 99 KB, sm_90 "
              "227 KB); lower block_m or block_n");

// ---- PTX wrappers (no cuda headers under NVRTC) ----

// 16-byte global -> shared copy, L2 only; valid == false zero-fills.
static __device__ __forceinline__ void attn_cp_async16(u32 dst, const void *src,
                                                       bool valid) {
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst),
                 "l"(src), "r"(bytes)
                 : "memory");
}

static __device__ __forceinline__ void attn_cp_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

static __device__ __forceinline__ void attn_cp_wait_all() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

static __device__ __forceinline__ void attn_ldsm_x4(u32 addr, u32 &r0, u32 &r1,
                                                    u32 &r2, u32 &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

static __device__ __forceinline__ void attn_ldsm_x4_trans(u32 addr, u32 &r0,
                                                          u32 &r1, u32 &r2,
                                                          u32 &r3) {
    asm volatile(
        "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
        : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
        : "r"(addr));
}

// c += A (16x16) * B (16x8), fp32 accumulate.
static __device__ __forceinline__ void attn_mma(float (&c)[4], const u32 (&a)[4],
                                               u32 b0, u32 b1) {
    if constexpr (INPUT_BF16)
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Special registers through volatile asm: each call is a fresh read that
// the compiler can neither hoist nor merge with an earlier one.
static __device__ __forceinline__ int attn_sreg_tid() {
    int v;
    asm volatile("mov.u32 %0, %%tid.x;\n" : "=r"(v));
    return v;
}
static __device__ __forceinline__ int attn_sreg_ctaid_x() {
    int v;
    asm volatile("mov.u32 %0, %%ctaid.x;\n" : "=r"(v));
    return v;
}
static __device__ __forceinline__ int attn_sreg_ctaid_y() {
    int v;
    asm volatile("mov.u32 %0, %%ctaid.y;\n" : "=r"(v));
    return v;
}
static __device__ __forceinline__ int attn_sreg_ctaid_z() {
    int v;
    asm volatile("mov.u32 %0, %%ctaid.z;\n" : "=r"(v));
    return v;
}
static __device__ __forceinline__ int attn_sreg_nctaid_x() {
    int v;
    asm volatile("mov.u32 %0, %%nctaid.x;\n" : "=r"(v));
    return v;
}

// Byte offset of 16-byte chunk `chunk` of tile row `row` (XOR swizzle).
static __device__ __forceinline__ u32 attn_swz(int row, int chunk) {
    return (u32)(row * ATTN_ROW_BYTES + ((chunk ^ (row & 7)) << 4));
}

// Issues the cp.async copies of ROWS rows starting at sequence row `first`
// of the [S, HEAD_DIM] matrix at `base` (row stride `stride`) into the
// swizzled tile at shared address `dst`; rows >= `end` are zero-filled
// (their source address is the valid row 0, and is not read).
template <int ROWS>
static __device__ __forceinline__ void attn_load_tile(u32 dst, const u16 *base,
                                                      i64 stride, int first,
                                                      int end, int tid) {
    constexpr int TOTAL = ROWS * ATTN_ROW_CHUNKS;
    constexpr int ITERS = (TOTAL + ATTN_THREADS - 1) / ATTN_THREADS;
    constexpr int RSTEP = ATTN_THREADS / ATTN_ROW_CHUNKS;
    const int chunk = tid % ATTN_ROW_CHUNKS;
    const int r0 = tid / ATTN_ROW_CHUNKS;
    // Row r0 + i RSTEP is valid iff i RSTEP < rem: one register for all i
    // (per-i row numbers would be kept alive across the key loop).
    const int rem = end - first - r0;
    const u16 *src = base + (i64)(first + r0) * stride + chunk * 8;
    const i64 step = (i64)RSTEP * stride;
    const u32 dst0 = dst + attn_swz(r0, chunk);
#pragma unroll
    for (int i = 0; i < ITERS; i++) {
        if (TOTAL % ATTN_THREADS == 0 || r0 + i * RSTEP < ROWS) {
            const bool ok = i * RSTEP < rem;
            const u32 d = RSTEP % 8 == 0
                              ? dst0 + (u32)(i * RSTEP * ATTN_ROW_BYTES)
                              : dst + attn_swz(r0 + i * RSTEP, chunk);
            attn_cp_async16(d, ok ? src : base, ok);
        }
        src += step;
    }
}

// One key tile: S = Q K^T (WARP_M x TILE_N per warp), online softmax,
// O += P V.  Index mt = m16 atom of the warp, h = row half (g or g + 8).
template <bool MASKED>
static __device__ __forceinline__ void
attn_tile(float (&o)[ATTN_MT][ATTN_NTILES_O][4], float *m,
          float *l,
          const u32 (&qf)[ATTN_Q_IN_REGS ? ATTN_MT : 1][ATTN_Q_IN_REGS ? ATTN_KSTEPS : 1][4],
          u32 q_addr, u32 k_addr, u32 v_addr, int lane_q_cx, int lane_k_cx,
          int lane_v_cx, int key0, int qpos0, int qcap, float scale) {
    float s[ATTN_MT][ATTN_NTILES_S][4];
#pragma unroll
    for (int mt = 0; mt < ATTN_MT; mt++)
#pragma unroll
        for (int j = 0; j < ATTN_NTILES_S; j++)
            s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;

    // S = Q K^T.  Chunk 2kk + hi of a lane's row sits at ((2kk) ^ cx) << 4
    // with cx = hi ^ (row & 7) (see the header).  With Q read from shared
    // memory the k-loop is unrolled by 4 only: fully unrolled, ptxas
    // prefetches fragments of later k-steps into the registers the loop
    // state needs, and spills.
#pragma unroll(ATTN_QK_UNROLL)
    for (int kk = 0; kk < ATTN_KSTEPS; kk++) {
        u32 a[ATTN_MT][4];
#pragma unroll
        for (int mt = 0; mt < ATTN_MT; mt++) {
            if constexpr (ATTN_Q_IN_REGS) {
                a[mt][0] = qf[mt][kk][0];
                a[mt][1] = qf[mt][kk][1];
                a[mt][2] = qf[mt][kk][2];
                a[mt][3] = qf[mt][kk][3];
            } else {
                const u32 off = (u32)(mt * 16 * ATTN_ROW_BYTES + (kk >> 2) * 128 +
                                      ((((kk & 3) << 1) ^ lane_q_cx) << 4));
                attn_ldsm_x4(q_addr + off, a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
            }
        }
        const u32 koff = (u32)((kk >> 2) * 128 + ((((kk & 3) << 1) ^ lane_k_cx) << 4));
#pragma unroll
        for (int nn = 0; nn < ATTN_CHUNK_N / 16; nn++) {
            u32 b0, b1, b2, b3;
            attn_ldsm_x4(k_addr + nn * 16 * ATTN_ROW_BYTES + koff, b0, b1, b2, b3);
#pragma unroll
            for (int mt = 0; mt < ATTN_MT; mt++) {
                attn_mma(s[mt][2 * nn], a[mt], b0, b1);
                attn_mma(s[mt][2 * nn + 1], a[mt], b2, b3);
            }
        }
    }

    const int t = threadIdx.x & 3;
#pragma unroll
    for (int mt = 0; mt < ATTN_MT; mt++) {
        if constexpr (MASKED) {
#pragma unroll
            for (int j = 0; j < ATTN_NTILES_S; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    // allowed: key <= the row's position and key < Sk,
                    // i.e. key <= qpos0 + min(row offset, qcap)
                    const int key = key0 + 8 * j + 2 * t + e;
                    if (key > qpos0 + min(mt * 16, qcap))
                        s[mt][j][e] = -INFINITY;
                    if (key > qpos0 + min(mt * 16 + 8, qcap))
                        s[mt][j][2 + e] = -INFINITY;
                }
        }
        // Online softmax; rows g (c0, c1) and g + 8 (c2, c3).
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < ATTN_NTILES_S; j++) {
            mx0 = fmaxf(mx0, fmaxf(s[mt][j][0], s[mt][j][1]));
            mx1 = fmaxf(mx1, fmaxf(s[mt][j][2], s[mt][j][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float m_old0 = m[(2 * mt) * ATTN_STATE_STRIDE];
        const float m_old1 = m[(2 * mt + 1) * ATTN_STATE_STRIDE];
        const float m_new0 = fmaxf(m_old0, mx0 * scale);
        const float m_new1 = fmaxf(m_old1, mx1 * scale);
        const float base0 = m_new0 == -INFINITY ? 0.f : m_new0;
        const float base1 = m_new1 == -INFINITY ? 0.f : m_new1;
        const float alpha0 = exp2_approx(m_old0 - base0); // m = -inf -> 0
        const float alpha1 = exp2_approx(m_old1 - base1);
        m[(2 * mt) * ATTN_STATE_STRIDE] = m_new0;
        m[(2 * mt + 1) * ATTN_STATE_STRIDE] = m_new1;
        float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
        for (int j = 0; j < ATTN_NTILES_S; j++) {
            s[mt][j][0] = exp2_approx(fmaf(s[mt][j][0], scale, -base0));
            s[mt][j][1] = exp2_approx(fmaf(s[mt][j][1], scale, -base0));
            s[mt][j][2] = exp2_approx(fmaf(s[mt][j][2], scale, -base1));
            s[mt][j][3] = exp2_approx(fmaf(s[mt][j][3], scale, -base1));
            sum0 += s[mt][j][0] + s[mt][j][1];
            sum1 += s[mt][j][2] + s[mt][j][3];
        }
        l[(2 * mt) * ATTN_STATE_STRIDE] = l[(2 * mt) * ATTN_STATE_STRIDE] * alpha0 + sum0;
        l[(2 * mt + 1) * ATTN_STATE_STRIDE] = l[(2 * mt + 1) * ATTN_STATE_STRIDE] * alpha1 + sum1;
        // Once the running maxima settle, alpha is exactly 1 for every row
        // of the warp: skip the D/2 multiplies (warp-uniform branch).
        if (__any_sync(0xffffffffu, alpha0 != 1.f || alpha1 != 1.f)) {
#pragma unroll
            for (int d = 0; d < ATTN_NTILES_O; d++) {
                o[mt][d][0] *= alpha0;
                o[mt][d][1] *= alpha0;
                o[mt][d][2] *= alpha1;
                o[mt][d][3] *= alpha1;
            }
        }
    }

    // O += P V, P straight from the S registers.
#pragma unroll
    for (int kk = 0; kk < ATTN_PSTEPS; kk++) {
        u32 a[ATTN_MT][4];
#pragma unroll
        for (int mt = 0; mt < ATTN_MT; mt++) {
            a[mt][0] = float2_to_input2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
            a[mt][1] = float2_to_input2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
            a[mt][2] = float2_to_input2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
            a[mt][3] = float2_to_input2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
        const u32 vrow = v_addr + kk * 16 * ATTN_ROW_BYTES;
#pragma unroll
        for (int dd = 0; dd < HEAD_DIM / 16; dd++) {
            const u32 voff =
                (u32)((dd >> 2) * 128 + ((((dd & 3) << 1) ^ lane_v_cx) << 4));
            u32 b0, b1, b2, b3;
            attn_ldsm_x4_trans(vrow + voff, b0, b1, b2, b3);
#pragma unroll
            for (int mt = 0; mt < ATTN_MT; mt++) {
                attn_mma(o[mt][2 * dd], a[mt], b0, b1);
                attn_mma(o[mt][2 * dd + 1], a[mt], b2, b3);
            }
        }
    }
}

// Loop-invariant, CTA-uniform values the key loop needs only once per tile
// (to address the next tile's copies and classify its chunks).  In the lean
// shape they live in shared memory and are re-read just before each tile's
// barrier, so no register holds them across the MMAs; otherwise they are
// plain registers.
struct AttnLoopConsts {
    const u16 *k, *v;      // this sequence's / KV head's row 0
    i64 k_stride, v_stride;
    const int *sel;        // the selection row
    int total;             // selected key tiles (counts * SUBTILES)
    int Sk;                // this sequence's keys
    int lim;               // largest query position of the CTA's valid rows
    int mask_thr;          // a chunk starting after this key needs masking
};

// x / d for 0 <= x < 2^31 (FastDiv, attention_params.h).
static __device__ __forceinline__ int attn_div(int x, const FastDiv &f) {
    return (int)((__umulhi((u32)x, f.mul) + (u32)x) >> f.shift);
}

// PAGED.  prism_attention_paged reads K and V from page pools
// (AttnPaging): a key tile lies in one page, so only the tile's base and
// first row change -- the page's base (one table entry, looked up a tile
// ahead so that its latency hides behind a tile's MMAs) and the tile's
// row inside the page.
// The page of key `key0` of sequence b.
static __device__ __forceinline__ int attn_page(const AttnPaging &pg, int b, int key0) {
    const int slot = attn_div(key0 / BLOCK_SIZE, pg.blocks_per_page);
    return __ldg(pg.page_table + (i64)b * pg.max_pages + slot);
}

// The K and V tiles of key tile `key0` into dk and dv; PAGED: from page
// `page`, whose first key is the sequence's key slot * page_size.
template <bool PAGED>
static __device__ __forceinline__ void
attn_load_kv(u32 dk, u32 dv, const u16 *k, const u16 *v, i64 k_stride, i64 v_stride,
             int key0, int Sk, int tid, const AttnParams &p, const AttnPaging &pg,
             int page) {
    if constexpr (PAGED) {
        const int first = attn_div(key0 / BLOCK_SIZE, pg.blocks_per_page) * pg.page_size;
        k += (i64)page * p.k_stride_b;
        v += (i64)page * p.v_stride_b;
        key0 -= first;
        Sk -= first;
    }
    attn_load_tile<ATTN_TILE_N>(dk, k, k_stride, key0, Sk, tid);
    attn_load_tile<ATTN_TILE_N>(dv, v, v_stride, key0, Sk, tid);
}

template <bool PAGED>
static __device__ __forceinline__ void attn_main(const AttnParams &p, const AttnPaging &pg) {
    extern __shared__ __align__(128) u8 attn_smem[];
    AttnLoopConsts &attn_lc =
        *reinterpret_cast<AttnLoopConsts *>(attn_smem + ATTN_CONSTS_OFFSET);

    const int tile = (int)(gridDim.x - 1 - blockIdx.x); // heavy tiles first
    const int h = blockIdx.y;
    const int b = blockIdx.z;
    int q_begin, Sq, k_begin, Sk;
    sequence_range(p.cu_seqlens_q, p.seqlen_q, b, q_begin, Sq);
    sequence_range(p.cu_seqlens_k, p.seqlen_k, b, k_begin, Sk);
    const int q0 = tile * ATTN_TILE_M;
    if (q0 >= Sq)
        return;

    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int kvh = h / p.group.d; // once per CTA: the head counts are launch parameters
    const bool varlen = p.cu_seqlens_q != nullptr;
    const u16 *qg = p.q + (varlen ? (i64)q_begin * p.q_stride_s : (i64)b * p.q_stride_b) +
                    (i64)h * p.q_stride_h;
    // (paged: the pools' head offset; each tile adds its page's)
    const u16 *kg = p.k + (PAGED ? (i64)0 : varlen ? (i64)k_begin * p.k_stride_s
                                                   : (i64)b * p.k_stride_b) +
                    (i64)kvh * p.k_stride_h;
    const u16 *vg = p.v + (PAGED ? (i64)0 : varlen ? (i64)k_begin * p.v_stride_s
                                                   : (i64)b * p.v_stride_b) +
                    (i64)kvh * p.v_stride_h;
    // Output row 0 of this (sequence, head) and its LSE row; evaluated only
    // where they are written, so that nothing of them lives across the loop.
    auto out_base = [&]() -> u16 * {
        return p.o + (varlen ? (i64)q_begin * p.o_stride_s : (i64)b * p.o_stride_b) +
               (i64)h * p.o_stride_h;
    };
    auto lse_base = [&]() -> float * {
        if (!p.lse)
            return nullptr;
        return varlen ? p.lse + (i64)h * p.cu_seqlens_q[p.batch] + q_begin
                      : p.lse + ((i64)b * p.q_heads.d + h) * p.seqlen_q;
    };

    const int shift = Sk - Sq; // absolute position of query row t: t + shift
    const int q_end = min(q0 + ATTN_TILE_M, Sq);
    const int lim = q_end - 1 + shift; // largest query position (<= Sk - 1)
    const int q_first = q0 + shift;    // smallest query position

    const i64 sel_row = ((i64)b * p.q_heads.d + h) * p.nq_max + q0 / BLOCK_SIZE;
    const int total = __ldg(p.block_counts + sel_row) * ATTN_SUBTILES;
    const int *sel = p.block_indices + sel_row * p.nk_max;
    constexpr int NO_TILE = 0x7fffffff;
    auto tile_start = [](const int *sel, int total, int it) -> int {
        return it < total ? __ldg(sel + it / ATTN_SUBTILES) * BLOCK_SIZE +
                                (it % ATTN_SUBTILES) * ATTN_TILE_N
                          : NO_TILE;
    };
    int cur = tile_start(sel, total, 0);

    if (cur > lim) {
        // No key visible to any row of the tile: zero rows, LSE = -inf.
        u16 *og = out_base();
        float *lse = lse_base();
        for (int c = tid; c < ATTN_TILE_M * ATTN_ROW_CHUNKS; c += ATTN_THREADS) {
            const int r = c / ATTN_ROW_CHUNKS;
            if (q0 + r < Sq) {
                u32x4 z = {0u, 0u, 0u, 0u};
                *reinterpret_cast<u32x4 *>(og + (i64)(q0 + r) * p.o_stride_s +
                                                (c % ATTN_ROW_CHUNKS) * 8) = z;
            }
        }
        if (lse)
            for (int r = tid; r < ATTN_TILE_M; r += ATTN_THREADS)
                if (q0 + r < Sq)
                    lse[q0 + r] = -INFINITY;
        return;
    }
    int nxt = tile_start(sel, total, 1);
    int nxt_page = 0; // PAGED: nxt's page, looked up a tile ahead
    if constexpr (PAGED)
        nxt_page = nxt <= lim ? attn_page(pg, b, nxt) : 0;
    const AttnLoopConsts lc0{kg, vg, p.k_stride_s, p.v_stride_s, sel, total, Sk, lim,
                             min(q_first - ATTN_CHUNK_N + 1, Sk - ATTN_CHUNK_N)};
    if (ATTN_LEAN && tid == 0) // published by the barrier after the prologue
        attn_lc = lc0;

    const u32 sQ = smem_u32(attn_smem);
    const u32 sK = sQ + ATTN_Q_BYTES;
    const u32 sV = sK + 2 * ATTN_KV_BYTES;

    // Prologue: Q and key tile 0.
    attn_load_tile<ATTN_TILE_M>(sQ, qg, p.q_stride_s, q0, Sq, tid);
    attn_load_kv<PAGED>(sK, sV, kg, vg, p.k_stride_s, p.v_stride_s, cur, Sk, tid, p, pg,
                        PAGED ? attn_page(pg, b, cur) : 0);
    attn_cp_commit();

    // Per-lane ldmatrix addressing (see FRAGMENTS above).  Every tile row
    // base is a multiple of 8, so the swizzle term of a lane is r = lane & 7
    // and chunk (2x + hi) lands at ((2x) ^ (hi ^ r)) << 4.
    const int r8 = lane & 7;
    const int mi = lane >> 3;
    const int q_row = warp * ATTN_WARP_M + r8 + (mi & 1) * 8;
    const int lane_q_cx = (mi >> 1) ^ r8;
    const u32 q_addr = sQ + q_row * ATTN_ROW_BYTES;
    const int k_row = r8 + (mi >> 1) * 8;
    const int lane_k_cx = (mi & 1) ^ r8;
    const int v_row = r8 + (mi & 1) * 8;
    const int lane_v_cx = (mi >> 1) ^ r8;

    // This lane's rows: warp rows mt * 16 + g + 8 h; qpos0 = position of
    // its first row (mt = h = 0).
    const int g = lane >> 2;
    const int wrow0 = q0 + warp * ATTN_WARP_M; // first sequence row of the warp
    const int qpos0 = wrow0 + g + shift;
    const int qcap = Sk - 1 - qpos0; // keys past Sk - 1 are masked too
    const float scale = p.scale_log2;

    float o[ATTN_MT][ATTN_NTILES_O][4];
    // Softmax state of the lane's 2 MT rows: partial sums l, running maxima
    // m.  Lean shape: shared-memory slots [2 mt + h][tid] (conflict-free,
    // read and written once per chunk); else a register array.
    float state_regs[ATTN_LEAN ? 1 : 4 * ATTN_MT];
    float *l = ATTN_LEAN ? reinterpret_cast<float *>(attn_smem + ATTN_ROWSUM_OFFSET) + tid
                         : state_regs;
    float *m = l + 2 * ATTN_MT * ATTN_STATE_STRIDE; // running maxima, same scheme
#pragma unroll
    for (int mt = 0; mt < ATTN_MT; mt++) {
#pragma unroll
        for (int d = 0; d < ATTN_NTILES_O; d++)
            o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.f;
        m[(2 * mt) * ATTN_STATE_STRIDE] = m[(2 * mt + 1) * ATTN_STATE_STRIDE] = -INFINITY;
        l[(2 * mt) * ATTN_STATE_STRIDE] = l[(2 * mt + 1) * ATTN_STATE_STRIDE] = 0.f;
    }

    attn_cp_wait_all();
    __syncthreads();

    u32 qf[ATTN_Q_IN_REGS ? ATTN_MT : 1][ATTN_Q_IN_REGS ? ATTN_KSTEPS : 1][4];
    if constexpr (ATTN_Q_IN_REGS) {
#pragma unroll
        for (int mt = 0; mt < ATTN_MT; mt++)
#pragma unroll
            for (int kk = 0; kk < ATTN_KSTEPS; kk++) {
                const u32 off = (u32)(mt * 16 * ATTN_ROW_BYTES + (kk >> 2) * 128 +
                                      ((((kk & 3) << 1) ^ lane_q_cx) << 4));
                attn_ldsm_x4(q_addr + off, qf[mt][kk][0], qf[mt][kk][1],
                             qf[mt][kk][2], qf[mt][kk][3]);
            }
    } else {
        qf[0][0][0] = qf[0][0][1] = qf[0][0][2] = qf[0][0][3] = 0u;
    }

    AttnLoopConsts lc = ATTN_LEAN ? attn_lc : lc0;
    for (int it = 0;; it++) {
        const int stage = it & 1;
        const bool has_next = nxt <= lc.lim;
        if (has_next) {
            const u32 off = (stage ^ 1) * ATTN_KV_BYTES;
            attn_load_kv<PAGED>(sK + off, sV + off, lc.k, lc.v, lc.k_stride, lc.v_stride,
                                nxt, lc.Sk, tid, p, pg, nxt_page);
        }
        attn_cp_commit();
        // consumed next iteration: the load's latency hides behind this tile
        const int after = tile_start(lc.sel, lc.total, it + 2);
        int after_page = 0;
        if constexpr (PAGED)
            after_page = after <= lc.lim ? attn_page(pg, b, after) : 0;
        // Chunks [0, n_chunks) see a key; chunk c needs masking iff
        // c * CHUNK_N > mask_rel.  (Only cur, qpos0 and qcap cross the MMAs.)
        const int n_chunks = min(ATTN_CHUNKS, (lc.lim - cur) / ATTN_CHUNK_N + 1);
        const int mask_rel = lc.mask_thr - cur;

        const u32 k_addr = sK + stage * ATTN_KV_BYTES + k_row * ATTN_ROW_BYTES;
        const u32 v_addr = sV + stage * ATTN_KV_BYTES + v_row * ATTN_ROW_BYTES;
#pragma unroll 1
        for (int c = 0; c < n_chunks; c++) {
            const int key0 = cur + c * ATTN_CHUNK_N;
            const u32 coff = c * ATTN_CHUNK_N * ATTN_ROW_BYTES;
            if (c * ATTN_CHUNK_N > mask_rel)
                attn_tile<true>(o, m, l, qf, q_addr, k_addr + coff, v_addr + coff,
                                lane_q_cx, lane_k_cx, lane_v_cx, key0, qpos0, qcap,
                                scale);
            else
                attn_tile<false>(o, m, l, qf, q_addr, k_addr + coff, v_addr + coff,
                                 lane_q_cx, lane_k_cx, lane_v_cx, key0, qpos0, qcap,
                                 scale);
        }

        // Re-read the loop constants before the barrier: their live range is
        // then barrier-to-copies, never across the MMAs.
        if constexpr (ATTN_LEAN)
            lc = attn_lc;
        attn_cp_wait_all();
        __syncthreads();
        if (!has_next)
            break;
        cur = nxt;
        nxt = after;
        if constexpr (PAGED)
            nxt_page = after_page;
    }

    // Epilogue: normalise, stage the warp's rows in its own Q rows (only
    // this warp ever read them), then 16-byte coalesced stores.  Every
    // index is re-derived here from the special registers (read through
    // volatile asm, so the compiler cannot reuse the prologue's values):
    // nothing but O has to stay in registers across the key loop.
    {
    const int tid = attn_sreg_tid();
    const int b = attn_sreg_ctaid_z();
    const int h = attn_sreg_ctaid_y();
    const int q0 = (attn_sreg_nctaid_x() - 1 - attn_sreg_ctaid_x()) * ATTN_TILE_M;
    int q_begin, Sq;
    sequence_range(p.cu_seqlens_q, p.seqlen_q, b, q_begin, Sq);
    const bool varlen = p.cu_seqlens_q != nullptr;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int g = lane >> 2;
    const int wrow0 = q0 + warp * ATTN_WARP_M;
    const float *l = ATTN_LEAN ? reinterpret_cast<const float *>(attn_smem +
                                                                 ATTN_ROWSUM_OFFSET) + tid
                               : state_regs;
    const float *m = l + 2 * ATTN_MT * ATTN_STATE_STRIDE;
    u16 *og = p.o + (varlen ? (i64)q_begin * p.o_stride_s : (i64)b * p.o_stride_b) +
              (i64)h * p.o_stride_h;
    float *lse = nullptr;
    if (p.lse)
        lse = varlen ? p.lse + (i64)h * p.cu_seqlens_q[p.batch] + q_begin
                     : p.lse + ((i64)b * p.q_heads.d + h) * p.seqlen_q;
    const int t = lane & 3;
    u8 *stage_rows = attn_smem + warp * ATTN_WARP_M * ATTN_ROW_BYTES;
#pragma unroll
    for (int mt = 0; mt < ATTN_MT; mt++) {
        float inv[2];
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float sum = l[(2 * mt + hh) * ATTN_STATE_STRIDE];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            inv[hh] = sum > 0.f ? 1.f / sum : 0.f;
            const int row = wrow0 + mt * 16 + hh * 8 + g;
            if (lse && t == 0 && row < Sq)
                lse[row] = sum > 0.f
                               ? (m[(2 * mt + hh) * ATTN_STATE_STRIDE] + __log2f(sum)) * 0.693147180559945309f
                               : -INFINITY;
        }
#pragma unroll
        for (int d = 0; d < ATTN_NTILES_O; d++) {
            // n-tile d = dims 8d..8d+7 = chunk d; lane holds dims 8d+2t, +1.
            *reinterpret_cast<u32 *>(stage_rows + attn_swz(mt * 16 + g, d) + 4 * t) =
                float2_to_input2(o[mt][d][0] * inv[0], o[mt][d][1] * inv[0]);
            *reinterpret_cast<u32 *>(stage_rows + attn_swz(mt * 16 + g + 8, d) + 4 * t) =
                float2_to_input2(o[mt][d][2] * inv[1], o[mt][d][3] * inv[1]);
        }
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < ATTN_WARP_M * ATTN_ROW_CHUNKS / 32; i++) {
        const int c = lane + 32 * i;
        const int r = c / ATTN_ROW_CHUNKS;
        const int chunk = c % ATTN_ROW_CHUNKS;
        if (wrow0 + r < Sq)
            *reinterpret_cast<u32x4 *>(og + (i64)(wrow0 + r) * p.o_stride_s +
                                            chunk * 8) =
                *reinterpret_cast<const u32x4 *>(stage_rows + attn_swz(r, chunk));
    }
    }
}

// The entry points: the generator compiles each in a program of its own
// (gen/kernels.c), PRISM_PAGED_PROGRAM defined in the paged one only.
#ifndef PRISM_PAGED_PROGRAM
extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
prism_attention(const AttnParams p) {
    attn_main<false>(p, AttnPaging{});
}
#else
extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
prism_attention_paged(const AttnPagedParams P) {
    attn_main<true>(P.a, P.pg);
}
#endif
