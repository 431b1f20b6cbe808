// PTX wrappers and register-layout helpers of the sm_90a attention kernel,
// placed by the generator before gen/templates/attention_sm90.cu (after
// common.cuh and the generated wgmma wrappers): mbarriers, TMA copies,
// stores and L2 prefetches, wgmma fences and waits, ldmatrix / stmatrix,
// named barriers, wgmma shared-memory descriptors, and the quad transpose
// of the direct epilogue's stores.
// Why a file of its own: these are the kernel's vocabulary, each a few
// lines of inline PTX with the ISA's rules in its comment; the kernel
// file keeps the pipeline (producer, softmax, consumer, schedule) and
// stays readable at one sitting.

// ---- PTX wrappers: mbarriers, TMA, warpgroup control ----

static __device__ __forceinline__ void h_bar_init(u32 bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count)
                 : "memory");
}

static __device__ __forceinline__ void h_bar_expect_tx(u32 bar, int bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
                 "r"(bytes)
                 : "memory");
}

static __device__ __forceinline__ void h_bar_arrive(u32 bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// Spins until the phase with parity `parity` of the barrier has completed.
static __device__ __forceinline__ void h_bar_wait(u32 bar, int parity) {
    // the braces scope the labels, so every inlined copy may reuse them
    asm volatile("{\n"
                 ".reg .pred done;\n"
                 "WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WAIT;\n"
                 "}\n" ::"r"(bar),
                 "r"(parity)
                 : "memory");
}

// One TMA tile copy (box of the map) to shared memory, completing on bar.
static __device__ __forceinline__ void h_tma_load(u32 dst, const void *map,
                                                  int rank, int c0, int c1,
                                                  int c2, int c3, u32 bar) {
    const u64 m = reinterpret_cast<u64>(map);
    if (rank == 3)
        asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile"
                     ".mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n"
                     ::"r"(dst), "l"(m), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
                     : "memory");
    else
        asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile"
                     ".mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
                     ::"r"(dst), "l"(m), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                     : "memory");
}

// Pulls the box at those coordinates into L2 (no shared memory, no
// barrier): the later h_tma_load of it then hits L2.
static __device__ __forceinline__ void h_tma_prefetch(const void *map, int rank,
                                                      int c0, int c1, int c2, int c3) {
    const u64 m = reinterpret_cast<u64>(map);
    if (rank == 3)
        asm volatile("cp.async.bulk.prefetch.tensor.3d.L2.global.tile [%0, {%1, %2, %3}];\n"
                     ::"l"(m), "r"(c0), "r"(c1), "r"(c2) : "memory");
    else
        asm volatile("cp.async.bulk.prefetch.tensor.4d.L2.global.tile"
                     " [%0, {%1, %2, %3, %4}];\n"
                     ::"l"(m), "r"(c0), "r"(c1), "r"(c2), "r"(c3) : "memory");
}

// The reverse copy: a box from shared memory to global (OOB rows of the
// box are not written), into the issuing thread's bulk group.  The shared
// source must have been written before a fence.proxy.async.shared::cta
// (h_fence_async_smem) by every thread that wrote it.
static __device__ __forceinline__ void h_tma_store(const void *map, int rank, u32 src,
                                                   int c0, int c1, int c2, int c3) {
    const u64 m = reinterpret_cast<u64>(map);
    if (rank == 3)
        asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group"
                     " [%0, {%1, %2, %3}], [%4];\n"
                     ::"l"(m), "r"(c0), "r"(c1), "r"(c2), "r"(src) : "memory");
    else
        asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group"
                     " [%0, {%1, %2, %3, %4}], [%5];\n"
                     ::"l"(m), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(src) : "memory");
}

// Closes the thread's bulk group of stores; wait_read: until every store
// of this thread has read its shared source (the rows may be reused);
// wait_all: until they completed (before the CTA exits).
static __device__ __forceinline__ void h_bulk_commit() {
    asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
static __device__ __forceinline__ void h_bulk_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
static __device__ __forceinline__ void h_bulk_wait_all() {
    asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}

// Orders this thread's ordinary shared-memory writes before later reads of
// the async proxy (a TMA store of those rows).
static __device__ __forceinline__ void h_fence_async_smem() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// ldmatrix / stmatrix .x4: four 8x8 b16 matrices, lanes 8 i .. 8 i + 7
// naming the rows (16 bytes each) of matrix i; register i of every thread
// holds its two elements of matrix i in the mma.m16n8 fragment layout
// (row lane / 4, columns 2 (lane % 4), + 1).
static __device__ __forceinline__ void h_ldmatrix4(u32 (&r)[4], u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
static __device__ __forceinline__ void h_stmatrix4(u32 addr, u32 a, u32 b, u32 c,
                                                   u32 d) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n"
                 ::"r"(addr), "r"(a), "r"(b), "r"(c), "r"(d)
                 : "memory");
}

static __device__ __forceinline__ void h_wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
static __device__ __forceinline__ void h_wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
static __device__ __forceinline__ void h_wgmma_wait0() {
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
static __device__ __forceinline__ void h_wgmma_wait1() {
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
}

// Named barrier over the 128 threads of one consumer warpgroup.
static __device__ __forceinline__ void h_warpgroup_sync(int id) {
    asm volatile("bar.sync %0, 128;\n" ::"r"(id) : "memory");
}

// wgmma shared-memory descriptor (PTX ISA, "Matrix Descriptor"): start
// address / 16 in bits 0-13 and LBO / 16 in bits 16-29 (the low word), SBO
// / 16 in bits 32-45 and the 128B swizzle in bits 62-63 (the high word, a
// constant here).  Shared addresses stay below 256 KB, so the start field
// never carries into LBO: the descriptor of byte `off` of a tile is the
// tile's low word + off / 16.  The issue loops add that constant instead
// of rebuilding each descriptor (a dependent shift-mask-or chain before
// every wgmma).
static __device__ __forceinline__ u32 h_desc_lo(u32 addr, u32 lbo) {
    return (addr >> 4) | ((lbo >> 4) << 16);
}
static __device__ __forceinline__ u64 h_desc(u32 lo, u32 sbo) {
    return ((u64)((sbo >> 4) | (1u << 30)) << 32) | lo;
}

// Stores 4 consecutive 8-column groups of one row, held by the 4 threads
// of a quad in the accumulator layout (thread t: columns 2 t, 2 t + 1 of
// each group, a[k] for group k), as one 16-byte store per thread: thread
// t writes group t.  A 4 x 4 transpose of the quad's words in two
// shuffle rounds (partners t ^ 1, then t ^ 2); every lane shuffles,
// only those with `store` write.  Four 4-byte stores per thread wrote
// half sectors and queued behind the LSU (14% of the consumers' time on
// short rows, docs/performance.md).
static __device__ __forceinline__ void h_store_quad(u16 *row, const u32 (&a)[4], int t,
                                                    bool store) {
    const bool odd = t & 1, high = t & 2;
    // round 1: keep the groups of my parity (p, p + 2), swap the others
    const u32 keep0 = odd ? a[1] : a[0], keep1 = odd ? a[3] : a[2];
    const u32 got0 = __shfl_xor_sync(0xffffffffu, odd ? a[0] : a[1], 1);
    const u32 got1 = __shfl_xor_sync(0xffffffffu, odd ? a[2] : a[3], 1);
    // round 2: keep group t (from t and t ^ 1), swap group t ^ 2
    const u32 own = high ? keep1 : keep0, mate = high ? got1 : got0;
    const u32 far0 = __shfl_xor_sync(0xffffffffu, high ? keep0 : keep1, 2);
    const u32 far1 = __shfl_xor_sync(0xffffffffu, high ? got0 : got1, 2);
    // the word of source thread s is the one from thread t ^ (s ^ t)
    const u32 w0 = odd ? mate : own, w1 = odd ? own : mate;
    const u32 w2 = odd ? far1 : far0, w3 = odd ? far0 : far1;
    uint4 v;
    v.x = high ? w2 : w0;
    v.y = high ? w3 : w1;
    v.z = high ? w0 : w2;
    v.w = high ? w1 : w3;
    if (store)
        *reinterpret_cast<uint4 *>(row + 8 * t) = v;
}
