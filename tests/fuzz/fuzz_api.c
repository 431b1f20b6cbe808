/*
 * fuzz_api.c - libFuzzer target for the argument checks of the C API.
 *
 * Every launch of include/prism.h takes shapes, strides, limits and
 * workspace sizes from its caller, and a wrong one must come back as a
 * status, never as a crash, a wild access or a hang.  This target builds
 * them from the input (huge and negative values included) for a CPU plan
 * (no GPU needed, and the CPU backend reads every argument on the host)
 * and calls prism_plan_create, prism_plan_workspace_size, prism_estimate,
 * prism_sparse_attention, prism_prefill and prism_plan_density with small
 * real buffers.
 *
 * The buffers sit against PROT_NONE guard pages, so an access past one
 * faults at once even from the LLVM-compiled kernels, which ASan does not
 * instrument.  A call is only made when the caller's side of the contract
 * can be kept or is impossible to keep:
 *  - each tensor, mask, lse and cu_seqlens array the call may touch, as the
 *    arguments describe it, fits its buffer (the call must not touch
 *    anything else) and the work (batch x Hq x seqlen_q x seqlen_k x D) is
 *    at most 2^28, so that a legal call ends quickly (a timeout is a hang);
 *  - or one of them spans more than INT64_MAX bytes, which no caller can
 *    own, or is a NULL tensor: the library must refuse the call before it
 *    touches memory;
 *  - anything in between would be the caller's error, which the library
 *    cannot see, and is not called.
 * One more oracle: prism_plan_workspace_size must be 0 or at least the
 * bytes the block mask alone needs (B x Hq x nq x nk x 4); a smaller value
 * is an overflow that would let a launch write past a caller's workspace.
 *
 * Input decoding (deterministic; bytes past the end read as 0):
 *   byte 0, flags:
 *     bit 0     plan limits: caller_workspace
 *     bit 1     config B (D 128, Hq 4, Hkv 2, block 32, fp16), else config A
 *               (D 64, Hq 2, Hkv 1, block 16, bf16)
 *     bit 2     ragged batch: cu_seqlens_q/k given
 *     bits 3-4  calls: 0 estimate, 1 sparse_attention, 2 prefill, 3 all three
 *     bit 5     pass our workspace (else NULL: the plan's own)
 *     bit 6     pass lse, and prefill's mask (else NULL)
 *     bit 7     the batch's dtype is the other one
 *   byte 1, modes:
 *     bits 0-1  mask contents: 0 valid causal, 1 small random, 2 any int32,
 *               3 counts past nk
 *     bits 2-3  cu_seqlens: 0 even split of the totals, 1 small random,
 *               2 any int32, 3 decreasing
 *     bits 4-6  0-3 every tensor given; 4 q, 5 k, 6 v, 7 o is NULL
 *   then numbers, in this order:
 *     limits   max_batch, max_seqlen_q, max_seqlen_k      (0: 2, 256, 256)
 *     batch    batch, seqlen_q, seqlen_k, total_q, total_k
 *              (0: 1, 64, seqlen_q, batch x seqlen_q, batch x seqlen_k)
 *     strides  q, k, v, o: stride_b, stride_h, stride_s
 *              (0: contiguous [B, H, S, D])
 *     mask     nq and nk added to the right ones (0: right)
 *     size     workspace size passed (0 or more than the buffer: all of it)
 *     seed     of the random mask and cu_seqlens contents
 *   A number is a tag byte t and what follows it:
 *     t < 0xC0          the value t
 *     0xC0 <= t < 0xE0  special[t - 0xC0] (INT_MAX, INT64_MAX / 2, ...)
 *     0xE0 <= t < 0xF0  -(t - 0xDF): -1 .. -16
 *     0xF0 <= t         (t - 0xEF) bytes, little-endian two's complement
 *                       (at most 8 used)
 *   An int field takes the low 32 bits of its number.
 *
 * Build and run (as .ci/test does):
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DPRISM_FUZZ=ON \
 *         -DPRISM_BUILD_TESTS=OFF
 *   cmake --build build-fuzz --target fuzz_api
 *   ./build-fuzz/fuzz_api -max_total_time=60 -timeout=30 /tmp/fuzz-api \
 *         tests/fuzz/api_corpus
 * tests/fuzz/api_seeds.py writes the seed corpus; inputs that crashed are
 * kept in tests/fuzz/api_crashes/ (run one: ./build-fuzz/fuzz_api FILE;
 * with FUZZ_API_TRACE=1 in the environment it prints each call's status).
 * FUZZ_API_FITS_ONLY=1 makes only calls whose buffers all fit and skips
 * the workspace-size oracle: a way to explore past known crashes.
 */
#include "prism.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define TENSOR_CAP (256 * 1024)
#define LSE_CAP (64 * 1024)
#define MASK_CAP (256 * 1024)
#define CU_CAP (16 * 1024)
#define WS_CAP (8 * 1024 * 1024)
#define WORK_MAX (1LL << 28)

typedef __int128 wide;

/* ---- input decoding -------------------------------------------------- */

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t byte_of(reader *r) {
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static const int64_t special[32] = {
    INT_MAX,           INT_MIN,         INT_MAX - 1,       INT_MAX / 2,
    INT_MAX / 2 + 1,   INT64_MAX,       INT64_MIN,         INT64_MAX / 2,
    INT64_MAX / 2 + 1, -INT64_MAX / 2,  1LL << 31,         1LL << 32,
    1LL << 40,         1LL << 62,       255,               256,
    257,               1023,            1024,              1025,
    4095,              4096,            4097,              65535,
    65536,             65537,           1 << 20,           1 << 24,
    1 << 30,           (1LL << 31) - 8, 46341 /* ~sqrt(2^31) */, 3037000500LL};

static int64_t number(reader *r) {
    uint8_t t = byte_of(r);
    if (t < 0xC0)
        return t;
    if (t < 0xE0)
        return special[t - 0xC0];
    if (t < 0xF0)
        return -(int64_t)(t - 0xDF);
    int n = t - 0xEF;
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = byte_of(r);
        if (i < 8)
            v |= b << (8 * i);
    }
    int64_t s;
    memcpy(&s, &v, sizeof s);
    return s;
}

static int int_of(int64_t v) { return (int)(int32_t)(uint32_t)(uint64_t)v; }

static int number_or(reader *r, int fallback) {
    int v = int_of(number(r));
    return v ? v : fallback;
}

/* ---- guarded buffers ------------------------------------------------- */

/* `size` bytes (a multiple of the page size) between two PROT_NONE pages. */
static void *guarded(size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *m = mmap(NULL, size + 2 * page, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m + page, size, PROT_READ | PROT_WRITE))
        abort();
    return m + page;
}

static struct buffers {
    uint16_t *q, *k, *v, *o;
    float *lse;
    int32_t *counts, *indices, *cu_q, *cu_k;
    void *ws;
} B;

static uint64_t rng(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 17;
}

static void make_buffers(void) {
    B.q = guarded(TENSOR_CAP);
    B.k = guarded(TENSOR_CAP);
    B.v = guarded(TENSOR_CAP);
    B.o = guarded(TENSOR_CAP);
    B.lse = guarded(LSE_CAP);
    B.counts = guarded(MASK_CAP);
    B.indices = guarded(MASK_CAP);
    B.cu_q = guarded(CU_CAP);
    B.cu_k = guarded(CU_CAP);
    B.ws = guarded(WS_CAP);
    uint64_t s = 1;
    uint16_t *t[3] = {B.q, B.k, B.v};
    for (int i = 0; i < 3; i++) /* small values, bf16 and fp16 alike */
        for (size_t j = 0; j < TENSOR_CAP / 2; j++)
            t[i][j] = (uint16_t)(0x3000 + rng(&s) % 0x800);
}

/* ---- plans ----------------------------------------------------------- */

static void quiet(void *user, prism_log_level level, const char *message) {
    (void)user, (void)level, (void)message;
}

static prism_context *g_ctx;
static prism_config g_cfg[2];

static void make_context(void) {
    prism_context_options o;
    prism_context_options_init(&o);
    o.device = PRISM_DEVICE_CPU;
    o.cpu_threads = 2;
    o.disable_disk_cache = true;
    o.log = quiet;
    if (prism_context_create(&o, &g_ctx) != PRISM_OK)
        abort();
    static const int shape[2][5] = {{64, 2, 1, 16, PRISM_DTYPE_BF16},
                                    {128, 4, 2, 32, PRISM_DTYPE_FP16}};
    for (int i = 0; i < 2; i++) {
        prism_config *c = &g_cfg[i];
        prism_config_init(c);
        c->head_dim = shape[i][0];
        c->q_heads = shape[i][1];
        c->kv_heads = shape[i][2];
        c->block_size = shape[i][3];
        c->dtype = (prism_dtype)shape[i][4];
        c->high_dim = c->head_dim / 2;
        c->low_dim = 3 * c->head_dim / 4;
        if (prism_config_validate(c, NULL, 0) != PRISM_OK)
            abort();
    }
}

/* Plans are kept by (config, limits): creating one compiles nothing twice
 * (the memory cache) but still links the kernels. */
#define PLANS 8
static struct kept {
    int cfg;
    prism_plan_limits limits;
    prism_plan *plan;
    prism_status status;
} g_plans[PLANS];
static int g_next;

static bool same_limits(const prism_plan_limits *a, const prism_plan_limits *b) {
    return a->max_batch == b->max_batch && a->max_seqlen_q == b->max_seqlen_q &&
           a->max_seqlen_k == b->max_seqlen_k &&
           a->caller_workspace == b->caller_workspace;
}

static prism_plan *plan_for(int cfg, const prism_plan_limits *l) {
    for (int i = 0; i < PLANS; i++)
        if (g_plans[i].status != (prism_status)-1 && g_plans[i].cfg == cfg &&
            same_limits(&g_plans[i].limits, l))
            return g_plans[i].plan;
    struct kept *k = &g_plans[g_next++ % PLANS];
    prism_plan_destroy(k->plan);
    k->cfg = cfg;
    k->limits = *l;
    k->plan = NULL;
    k->status = prism_plan_create(g_ctx, &g_cfg[cfg], l, &k->plan);
    if ((k->status == PRISM_OK) != (k->plan != NULL))
        abort();
    return k->plan;
}

/* ---- what the arguments describe --------------------------------------- */

typedef enum fit { FITS, SKIP, IMPOSSIBLE } fit;

/* A buffer of `bytes` (exact) against a buffer of cap bytes. */
static fit fit_of(wide bytes, size_t cap) {
    if (bytes <= (wide)cap)
        return FITS;
    return bytes > (wide)INT64_MAX ? IMPOSSIBLE : SKIP;
}

static wide mag(int64_t v) { return v < 0 ? -(wide)v : (wide)v; }

/* Bytes a [b, h, s, D] tensor of 2-byte elements spans (0 when a count is
 * below 1: the library must refuse it before reading). */
static wide tensor_bytes(const prism_tensor *t, wide b, wide h, wide s,
                         int d) {
    if (b < 1 || h < 1 || s < 1)
        return 0;
    return 2 * ((b - 1) * mag(t->stride_b) + (h - 1) * mag(t->stride_h) +
                (s - 1) * mag(t->stride_s) + d);
}

static void contiguous(prism_tensor *t, reader *r, int64_t h, int64_t s,
                       int d) {
    int64_t sb = number(r), sh = number(r), ss = number(r);
    t->stride_s = ss ? ss : d;
    t->stride_h = sh ? sh : s * d;
    t->stride_b = sb ? sb : h * s * d;
}

static wide ceil_div(wide a, wide b) { return a < 1 ? 0 : (a + b - 1) / b; }

/* The buffers a call may touch. */
enum { BUF_Q, BUF_K, BUF_V, BUF_O, BUF_LSE, BUF_CU, BUF_MASK, BUFS };

typedef struct call {
    uint8_t flags, modes;
    int cfg;
    prism_plan_limits limits;
    prism_batch batch;
    prism_tensor q, k, v, o;
    prism_block_mask mask;
    size_t ws_size;
    uint64_t seed;
    fit fits[BUFS];
    bool too_much_work;
} call;

static fit worse(fit a, fit b) {
    return a == IMPOSSIBLE || b == IMPOSSIBLE ? IMPOSSIBLE
           : a == SKIP || b == SKIP           ? SKIP
                                              : FITS;
}

static void decode_shapes(call *c, reader *r) {
    const prism_config *g = &g_cfg[c->cfg];
    c->limits.max_batch = number_or(r, 2);
    c->limits.max_seqlen_q = number_or(r, 256);
    c->limits.max_seqlen_k = number_or(r, 256);
    c->limits.caller_workspace = c->flags & 1;
    if (!c->limits.caller_workspace) { /* the plan allocates for these */
        if (c->limits.max_batch > 4)
            c->limits.max_batch = 4;
        if (c->limits.max_seqlen_q > 2048)
            c->limits.max_seqlen_q = 2048;
        if (c->limits.max_seqlen_k > 2048)
            c->limits.max_seqlen_k = 2048;
    }
    prism_batch *b = &c->batch;
    b->dtype = (c->flags & 0x80) ? (prism_dtype)(1 - g->dtype) : g->dtype;
    b->batch = number_or(r, 1);
    b->seqlen_q = number_or(r, 64);
    b->seqlen_k = number_or(r, b->seqlen_q);
    b->total_q = number_or(r, int_of((int64_t)b->batch * b->seqlen_q));
    b->total_k = number_or(r, int_of((int64_t)b->batch * b->seqlen_k));
    bool ragged = c->flags & 4;
    int64_t bq = ragged ? 1 : b->batch;
    int64_t sq = ragged ? b->total_q : b->seqlen_q;
    int64_t sk = ragged ? b->total_k : b->seqlen_k;
    contiguous(&c->q, r, g->q_heads, sq, g->head_dim);
    contiguous(&c->k, r, g->kv_heads, sk, g->head_dim);
    contiguous(&c->v, r, g->kv_heads, sk, g->head_dim);
    contiguous(&c->o, r, g->q_heads, sq, g->head_dim);
    c->fits[BUF_Q] =
        fit_of(tensor_bytes(&c->q, bq, g->q_heads, sq, g->head_dim), TENSOR_CAP);
    c->fits[BUF_K] = fit_of(
        tensor_bytes(&c->k, bq, g->kv_heads, sk, g->head_dim), TENSOR_CAP);
    c->fits[BUF_V] = fit_of(
        tensor_bytes(&c->v, bq, g->kv_heads, sk, g->head_dim), TENSOR_CAP);
    c->fits[BUF_O] =
        fit_of(tensor_bytes(&c->o, bq, g->q_heads, sq, g->head_dim), TENSOR_CAP);
    int null_one = (c->modes >> 4) & 7; /* a NULL tensor: must be refused */
    if (null_one >= 4)
        c->fits[BUF_Q + null_one - 4] = IMPOSSIBLE;
    wide nb = b->batch < 1 ? 0 : b->batch;
    /* lse: [batch, Hq, seqlen_q], ragged [Hq, total_q] */
    c->fits[BUF_LSE] =
        fit_of((wide)bq * g->q_heads * (sq < 1 ? 0 : sq) * 4, LSE_CAP);
    c->fits[BUF_CU] = ragged ? fit_of((nb + 1) * 4, CU_CAP) : FITS;
    wide nq = ceil_div(b->seqlen_q, g->block_size);
    wide nk = ceil_div(b->seqlen_k, g->block_size);
    c->mask.nq = int_of((int64_t)((uint64_t)nq + (uint64_t)number(r)));
    c->mask.nk = int_of((int64_t)((uint64_t)nk + (uint64_t)number(r)));
    c->fits[BUF_MASK] = worse(fit_of(nb * g->q_heads * nq * 4, MASK_CAP),
                              fit_of(nb * g->q_heads * nq * nk * 4, MASK_CAP));
    wide work = nb * g->q_heads * (b->seqlen_q < 1 ? 0 : b->seqlen_q) *
                (b->seqlen_k < 1 ? 0 : b->seqlen_k) * g->head_dim;
    c->too_much_work = work > WORK_MAX;
    int64_t size = number(r);
    c->ws_size = size <= 0 || size > WS_CAP ? WS_CAP : (size_t)size;
    c->seed = (uint64_t)number(r);
}

/* ---- contents -------------------------------------------------------- */

static void fill_mask(const call *c) {
    uint64_t s = c->seed;
    int mode = c->modes & 3;
    int64_t nk = c->mask.nk > 0 ? c->mask.nk : 1;
    size_t n = MASK_CAP / 4;
    for (size_t i = 0; i < n; i++) {
        int64_t v = mode == 0   ? (int64_t)(i % (size_t)nk) + 1
                    : mode == 1 ? (int64_t)(rng(&s) % (uint64_t)(nk + 3)) - 1
                    : mode == 2 ? (int64_t)rng(&s)
                                : nk + 1 + (int64_t)(rng(&s) % 4);
        B.counts[i] = int_of(v);
    }
    for (size_t i = 0; i < n; i++) {
        int64_t v = mode == 0   ? (int64_t)(i % (size_t)nk)
                    : mode == 1 ? (int64_t)(rng(&s) % (uint64_t)(nk + 3)) - 1
                                : (int64_t)rng(&s);
        B.indices[i] = int_of(v);
    }
}

static void fill_cu(const call *c) {
    uint64_t s = c->seed ^ 0x9e3779b97f4a7c15ULL;
    int mode = (c->modes >> 2) & 3;
    int64_t n = c->batch.batch;
    for (int64_t i = 0; i < CU_CAP / 4; i++) {
        int32_t q, k;
        if (mode == 0 && n > 0) {
            q = (int32_t)((int64_t)c->batch.total_q * (i < n ? i : n) / n);
            k = (int32_t)((int64_t)c->batch.total_k * (i < n ? i : n) / n);
        } else if (mode == 1) {
            q = (int32_t)(rng(&s) % 300) - 10;
            k = (int32_t)(rng(&s) % 300) - 10;
        } else if (mode == 2) {
            q = (int32_t)rng(&s);
            k = (int32_t)rng(&s);
        } else {
            q = (int32_t)(1000 - i);
            k = (int32_t)(1000 - 2 * i);
        }
        B.cu_q[i] = q;
        B.cu_k[i] = k;
    }
}

/* ---- the oracle of workspace sizes --------------------------------------- */

/* Bytes of the block mask alone for (batch, seqlen_q, seqlen_k); 0 when a
 * count is below 1. */
static wide mask_bytes(const prism_config *g, int b, int sq, int sk) {
    if (b < 1 || sq < 1 || sk < 1)
        return 0;
    return (wide)b * g->q_heads * ceil_div(sq, g->block_size) *
           ceil_div(sk, g->block_size) * 4;
}

static void check_size(size_t got, wide need, const char *what) {
    wide floor = need > (wide)SIZE_MAX ? (wide)SIZE_MAX : need;
    if (got != 0 && (wide)got < floor) {
        fprintf(stderr,
                "fuzz_api: prism_plan_workspace_size(%s) = %zu, below the "
                "%.0f bytes its block mask alone needs (an overflow)\n",
                what, got, (double)need);
        abort();
    }
}

static void check_sizes(prism_plan *plan, const call *c) {
    const prism_config *g = prism_plan_config(plan);
    const prism_plan_limits *l = &c->limits;
    check_size(prism_plan_workspace_size(plan, NULL),
               mask_bytes(g, l->max_batch, l->max_seqlen_q, l->max_seqlen_k),
               "limits");
    const prism_batch *b = &c->batch;
    size_t got = prism_plan_workspace_size(plan, b);
    if (b->batch <= l->max_batch && b->seqlen_q <= l->max_seqlen_q &&
        b->seqlen_k <= l->max_seqlen_k)
        check_size(got, mask_bytes(g, b->batch, b->seqlen_q, b->seqlen_k),
                   "batch");
}

/* ---- the calls ------------------------------------------------------- */

/* $FUZZ_API_TRACE set: each call's status on stderr (to see what an input
 * does when replaying it). */
static void trace(prism_plan *plan, const char *what, prism_status st) {
    if (getenv("FUZZ_API_TRACE"))
        fprintf(stderr, "fuzz_api: %s: %s%s%s\n", what, prism_status_name(st),
                st ? ": " : "", st ? prism_plan_last_error(plan) : "");
}

/* Whether a call that may touch the buffers `uses` (a bit per BUF_*) is
 * made: when all of them fit (and the work is bounded), or one is such
 * that the library must refuse the call. */
static bool may_call(const call *c, unsigned uses, const char *what) {
    fit f = FITS;
    for (int i = 0; i < BUFS; i++)
        if (uses & (1u << i))
            f = worse(f, c->fits[i]);
    bool yes = (f == IMPOSSIBLE && !getenv("FUZZ_API_FITS_ONLY")) ||
               (f == FITS && !c->too_much_work);
    if (!yes && getenv("FUZZ_API_TRACE"))
        fprintf(stderr, "fuzz_api: %s: not called (%s)\n", what,
                f == SKIP ? "a buffer only its caller could own"
                          : "too much work");
    return yes;
}

#define USE(b) (1u << (b))

static void run(prism_plan *plan, call *c) {
    prism_batch *b = &c->batch;
    if (c->flags & 4) {
        fill_cu(c);
        b->cu_seqlens_q = B.cu_q;
        b->cu_seqlens_k = B.cu_k;
    }
    fill_mask(c);
    c->q.data = B.q;
    c->k.data = B.k;
    c->v.data = B.v;
    c->o.data = B.o;
    prism_tensor *tensors[4] = {&c->q, &c->k, &c->v, &c->o};
    int which = (c->modes >> 4) & 7;
    if (which >= 4)
        tensors[which - 4]->data = NULL;
    c->mask.counts = B.counts;
    c->mask.indices = B.indices;
    bool extras = c->flags & 0x40;
    float *lse = extras ? B.lse : NULL;
    void *ws = (c->flags & 0x20) ? B.ws : NULL;
    size_t ws_size = ws ? c->ws_size : 0;
    int calls = (c->flags >> 3) & 3;
    unsigned qk = USE(BUF_Q) | USE(BUF_K) | USE(BUF_CU);
    unsigned all = qk | USE(BUF_V) | USE(BUF_O) | (lse ? USE(BUF_LSE) : 0);
    if ((calls == 0 || calls == 3) &&
        may_call(c, qk | USE(BUF_MASK), "estimate"))
        trace(plan, "estimate",
              prism_estimate(plan, b, &c->q, &c->k, &c->mask, ws, ws_size,
                             NULL));
    if ((calls == 1 || calls == 3) &&
        may_call(c, all | USE(BUF_MASK), "sparse_attention"))
        trace(plan, "sparse_attention",
              prism_sparse_attention(plan, b, &c->q, &c->k, &c->v, &c->mask,
                                     &c->o, lse, ws, ws_size, NULL));
    if ((calls == 2 || calls == 3) &&
        may_call(c, all | (extras ? USE(BUF_MASK) : 0), "prefill"))
        trace(plan, "prefill",
              prism_prefill(plan, b, &c->q, &c->k, &c->v, &c->o, lse,
                            extras ? &c->mask : NULL, ws, ws_size, NULL));
    double density;
    trace(plan, "density", prism_plan_density(plan, &density));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ctx) {
        make_buffers();
        make_context();
        for (int i = 0; i < PLANS; i++)
            g_plans[i].status = (prism_status)-1;
    }
    reader r = {data, size};
    call c;
    memset(&c, 0, sizeof c);
    c.flags = byte_of(&r);
    c.modes = byte_of(&r);
    c.cfg = (c.flags >> 1) & 1;
    decode_shapes(&c, &r);
    prism_plan *plan = plan_for(c.cfg, &c.limits);
    if (!plan) {
        if (getenv("FUZZ_API_TRACE"))
            fprintf(stderr, "fuzz_api: no plan: %s\n",
                    prism_context_last_error(g_ctx));
        return 0;
    }
    if (!getenv("FUZZ_API_FITS_ONLY"))
        check_sizes(plan, &c);
    run(plan, &c);
    return 0;
}
