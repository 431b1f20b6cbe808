/*
 * llvm_attention.c - the block-sparse attention kernels of the CPU backend
 * (method §7): one query block (BS rows) against one selected key block.
 *
 * Layout choice.  Scores are computed transposed, S^T[u][t] = K[u] . Q[t],
 * so that nothing has to be transposed per key block: K and V blocks are
 * only converted to fp32 rows (cheap, vectorized), and Q is transposed
 * once per query block by load_q (then reused for every selected block).
 * With S^T, the softmax statistics of a query t run down a column, i.e.
 * element-wise across rows, so the online-softmax update is vectorized
 * over queries; and P V reads P^T[u][t] as broadcast scalars.  Both
 * products are the same register-blocked micro-kernel
 *
 *     C[m][n] (+)= sum_k A[m*a_sm + k*a_sk] * B[k*ldb + n]
 *
 * with `rows` (8 with 32 vector registers, else 4) rows of C times two
 * vector registers of columns held in registers while k runs; A is
 * broadcast one scalar at a time (an embedded broadcast on AVX-512).
 *
 * Scores are in log2 units (load_q folds log2(e)/sqrt(D) into Q), so the
 * softmax uses exp2, emitted as a polynomial (llvm_ir.c).  Masking: key u
 * of the block is visible to query row t when u < kn and u <= t + delta
 * (causality; C computes delta from the positions), invisible keys get
 * probability 0 and a query with nothing visible yet keeps m = -inf,
 * l = 0 without producing NaNs.
 */
#ifdef PRISM_WITH_LLVM

#include "gen/cpu/llvm_ir.h"

#include <math.h>

/* void prism_cpu_load_q(const void *q, i64 stride_s, i32 n, float scale,
 *                       float *qt) */
void llvm_emit_load_q(ir *e) {
    LLVMTypeRef params[] = {ir_ptr_t(e->i8), e->i64, e->i32, e->f32,
                            ir_ptr_t(e->f32)};
    LLVMValueRef fn = ir_function(e, PRISM_CPU_LOAD_Q_NAME, params, 5);
    LLVMBuilderRef b = e->b;
    int D = e->D, BS = e->BS;
    LLVMValueRef q = ir_as_elt_ptr(e, LLVMGetParam(fn, 0));
    LLVMValueRef stride = LLVMGetParam(fn, 1);
    LLVMValueRef n = LLVMBuildSExt(b, LLVMGetParam(fn, 2), e->i64, "n");
    LLVMValueRef scale = ir_splat(e, LLVMGetParam(fn, 3), D);
    LLVMValueRef qt = LLVMGetParam(fn, 4);

    ir_loop t;
    ir_loop_begin(e, &t, ir_i64(e, 0), n, 1, "row");
    LLVMValueRef row = LLVMBuildFMul(
        b, ir_load_dtype(e, q, LLVMBuildMul(b, t.index, stride, ""), D),
        scale, "");
    for (int d = 0; d < D; d++)
        ir_store_f32(e, qt,
                     LLVMBuildAdd(b, t.index, ir_i64(e, (long long)d * BS), ""),
                     LLVMBuildExtractElement(b, row, ir_i32(e, d), ""));
    ir_loop_end(e, &t);
    ir_loop z;
    ir_loop_begin(e, &z, n, ir_i64(e, BS), 1, "pad");
    for (int d = 0; d < D; d++)
        ir_store_f32(e, qt,
                     LLVMBuildAdd(b, z.index, ir_i64(e, (long long)d * BS), ""),
                     ir_f32(e, 0.0));
    ir_loop_end(e, &z);
    LLVMBuildRetVoid(b);
}

typedef struct gemm_args {
    LLVMValueRef a, b, c;           /* float *                          */
    long long a_sm, a_sk, ldb, ldc; /* element strides                  */
    LLVMValueRef m_end;             /* i64, a multiple of e->rows       */
    int n;                          /* columns of C (a constant)        */
    LLVMValueRef k_end;             /* i64                              */
    LLVMValueRef row_scale;         /* NULL: C starts at 0; else
                                       C = C * row_scale[m] first      */
} gemm_args;

/* i64 value + constant. */
static LLVMValueRef add_c(ir *e, LLVMValueRef v, long long c) {
    return c ? LLVMBuildAdd(e->b, v, ir_i64(e, c), "") : v;
}

static LLVMValueRef mul_c(ir *e, LLVMValueRef v, long long c) {
    return c == 1 ? v : LLVMBuildMul(e->b, v, ir_i64(e, c), "");
}

static void emit_gemm(ir *e, const gemm_args *g) {
    LLVMBuilderRef b = e->b;
    int R = e->rows, NU = 2 * e->vec;
    LLVMValueRef slots[2][16]; /* [full chunk, remainder chunk][row] */
    int rem = g->n % NU;
    for (int r = 0; r < R; r++) {
        slots[0][r] = ir_alloca(e, ir_vec_t(e->f32, NU), "acc");
        slots[1][r] = rem ? ir_alloca(e, ir_vec_t(e->f32, rem), "acc_tail")
                          : NULL;
    }
    ir_loop mb;
    ir_loop_begin(e, &mb, ir_i64(e, 0), g->m_end, R, "m_block");
    for (int c0 = 0; c0 < g->n; c0 += NU) {
        int w = g->n - c0 < NU ? g->n - c0 : NU;
        LLVMValueRef *slot = slots[w == NU ? 0 : 1];
        LLVMTypeRef vt = ir_vec_t(e->f32, w);
        for (int r = 0; r < R; r++) {
            LLVMValueRef init = ir_f32_splat(e, 0.0, w);
            if (g->row_scale) {
                LLVMValueRef m = add_c(e, mb.index, r);
                LLVMValueRef c_at = add_c(e, mul_c(e, m, g->ldc), c0);
                LLVMValueRef s = ir_load_f32(e, g->row_scale, m);
                init = LLVMBuildFMul(b, ir_load_vec(e, e->f32, g->c, c_at, w),
                                     ir_splat(e, s, w), "");
            }
            LLVMBuildStore(b, init, slot[r]);
        }
        ir_loop k;
        ir_loop_begin(e, &k, ir_i64(e, 0), g->k_end, 1, "k");
        LLVMValueRef bv =
            ir_load_vec(e, e->f32, g->b, add_c(e, mul_c(e, k.index, g->ldb), c0),
                        w);
        LLVMValueRef a_k = mul_c(e, k.index, g->a_sk);
        for (int r = 0; r < R; r++) {
            LLVMValueRef a_at = LLVMBuildAdd(
                b, mul_c(e, add_c(e, mb.index, r), g->a_sm), a_k, "");
            LLVMValueRef a = ir_splat(e, ir_load_f32(e, g->a, a_at), w);
            LLVMValueRef acc = LLVMBuildLoad2(b, vt, slot[r], "");
            LLVMBuildStore(b, ir_fmuladd(e, a, bv, acc), slot[r]);
        }
        ir_loop_end(e, &k);
        for (int r = 0; r < R; r++) {
            LLVMValueRef c_at =
                add_c(e, mul_c(e, add_c(e, mb.index, r), g->ldc), c0);
            ir_store_vec(e, e->f32, g->c, c_at, LLVMBuildLoad2(b, vt, slot[r], ""),
                         w);
        }
    }
    ir_loop_end(e, &mb);
}

/* The online-softmax update of method §7 over S^T[0..kn)[c0..c0+w): columns
 * are queries.  state = m[BS], l[BS], alpha[BS]. */
static void emit_softmax_chunk(ir *e, LLVMValueRef st, LLVMValueRef kn,
                               LLVMValueRef delta, LLVMValueRef state, int c0,
                               int w) {
    LLVMBuilderRef b = e->b;
    int BS = e->BS;
    LLVMTypeRef vt = ir_vec_t(e->f32, w);
    LLVMValueRef lane[1024];
    for (int i = 0; i < w; i++)
        lane[i] = ir_i32(e, c0 + i);
    /* key u is visible to query t when u <= t + delta */
    LLVMValueRef limit = LLVMBuildAdd(b, LLVMConstVector(lane, (unsigned)w),
                                      ir_splat(e, delta, w), "limit");
    LLVMValueRef neg_inf = ir_f32_splat(e, -INFINITY, w);
    LLVMValueRef zero = ir_f32_splat(e, 0.0, w);

    LLVMValueRef mx = ir_alloca(e, vt, "max");
    LLVMBuildStore(b, neg_inf, mx);
    ir_loop u;
    ir_loop_begin(e, &u, ir_i64(e, 0), kn, 1, "max_u");
    LLVMValueRef at = add_c(e, mul_c(e, u.index, BS), c0);
    LLVMValueRef s = ir_load_vec(e, e->f32, st, at, w);
    LLVMValueRef u32 = ir_splat(e, LLVMBuildTrunc(b, u.index, e->i32, ""), w);
    LLVMValueRef vis = LLVMBuildICmp(b, LLVMIntSLE, u32, limit, "visible");
    LLVMBuildStore(b,
                   ir_fmax(e, LLVMBuildLoad2(b, vt, mx, ""),
                           LLVMBuildSelect(b, vis, s, neg_inf, "")),
                   mx);
    ir_loop_end(e, &u);

    LLVMValueRef m_old = ir_load_vec(e, e->f32, state, ir_i64(e, c0), w);
    LLVMValueRef m_new = ir_fmax(e, m_old, LLVMBuildLoad2(b, vt, mx, ""));
    LLVMValueRef none = LLVMBuildFCmp(b, LLVMRealOEQ, m_new, neg_inf, "");
    LLVMValueRef m_use = LLVMBuildSelect(b, none, zero, m_new, "m_use");
    LLVMValueRef alpha =
        ir_exp2(e, LLVMBuildFSub(b, m_old, m_use, ""), w);

    LLVMValueRef sum = ir_alloca(e, vt, "sum");
    LLVMBuildStore(b, zero, sum);
    ir_loop p;
    ir_loop_begin(e, &p, ir_i64(e, 0), kn, 1, "exp_u");
    at = add_c(e, mul_c(e, p.index, BS), c0);
    s = ir_load_vec(e, e->f32, st, at, w);
    u32 = ir_splat(e, LLVMBuildTrunc(b, p.index, e->i32, ""), w);
    vis = LLVMBuildICmp(b, LLVMIntSLE, u32, limit, "visible");
    LLVMValueRef prob = LLVMBuildSelect(
        b, vis, ir_exp2(e, LLVMBuildFSub(b, s, m_use, ""), w), zero, "p");
    ir_store_vec(e, e->f32, st, at, prob, w);
    LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, vt, sum, ""), prob, ""),
                   sum);
    ir_loop_end(e, &p);

    LLVMValueRef l_at = ir_i64(e, BS + c0);
    LLVMValueRef l = ir_fmuladd(e, ir_load_vec(e, e->f32, state, l_at, w), alpha,
                                LLVMBuildLoad2(b, vt, sum, ""));
    ir_store_vec(e, e->f32, state, l_at, l, w);
    ir_store_vec(e, e->f32, state, ir_i64(e, c0), m_new, w);
    ir_store_vec(e, e->f32, state, ir_i64(e, 2 * BS + c0), alpha, w);
}

/* void prism_cpu_attend(const float *qt, const void *k, i64 k_stride,
 *                       const void *v, i64 v_stride, i32 kn, i32 delta,
 *                       float *state, float *acc, float *scratch) */
void llvm_emit_attend(ir *e) {
    LLVMTypeRef params[] = {ir_ptr_t(e->f32), ir_ptr_t(e->i8), e->i64,
                            ir_ptr_t(e->i8),  e->i64,          e->i32,
                            e->i32,           ir_ptr_t(e->f32), ir_ptr_t(e->f32),
                            ir_ptr_t(e->f32)};
    LLVMValueRef fn = ir_function(e, PRISM_CPU_ATTEND_NAME, params, 10);
    LLVMBuilderRef b = e->b;
    int D = e->D, BS = e->BS, R = e->rows;
    LLVMValueRef qt = LLVMGetParam(fn, 0);
    LLVMValueRef k = ir_as_elt_ptr(e, LLVMGetParam(fn, 1));
    LLVMValueRef k_stride = LLVMGetParam(fn, 2);
    LLVMValueRef v = ir_as_elt_ptr(e, LLVMGetParam(fn, 3));
    LLVMValueRef v_stride = LLVMGetParam(fn, 4);
    LLVMValueRef kn = LLVMBuildSExt(b, LLVMGetParam(fn, 5), e->i64, "kn");
    LLVMValueRef delta = LLVMGetParam(fn, 6);
    LLVMValueRef state = LLVMGetParam(fn, 7), acc = LLVMGetParam(fn, 8);
    LLVMValueRef scratch = LLVMGetParam(fn, 9);
    LLVMValueRef kf = scratch;
    LLVMValueRef vf = ir_gep(e, e->f32, scratch, ir_i64(e, (long long)BS * D));
    LLVMValueRef st =
        ir_gep(e, e->f32, scratch, ir_i64(e, 2LL * BS * D));
    /* rows of K rounded up to the micro-kernel's row block */
    LLVMValueRef m_pad = LLVMBuildAnd(b, add_c(e, kn, R - 1), ir_i64(e, -R), "");

    ir_loop u;
    ir_loop_begin(e, &u, ir_i64(e, 0), kn, 1, "pack");
    LLVMValueRef row_at = mul_c(e, u.index, D);
    ir_store_vec(e, e->f32, kf, row_at,
                 ir_load_dtype(e, k, LLVMBuildMul(b, u.index, k_stride, ""), D),
                 D);
    ir_store_vec(e, e->f32, vf, row_at,
                 ir_load_dtype(e, v, LLVMBuildMul(b, u.index, v_stride, ""), D),
                 D);
    ir_loop_end(e, &u);
    ir_loop z;
    ir_loop_begin(e, &z, kn, m_pad, 1, "pad");
    ir_store_vec(e, e->f32, kf, mul_c(e, z.index, D), ir_f32_splat(e, 0.0, D),
                 D);
    ir_loop_end(e, &z);

    gemm_args qk = {.a = kf, .b = qt, .c = st, .a_sm = D, .a_sk = 1,
                    .ldb = BS, .ldc = BS, .m_end = m_pad, .n = BS,
                    .k_end = ir_i64(e, D), .row_scale = NULL};
    emit_gemm(e, &qk);

    int chunk = 2 * e->vec < BS ? 2 * e->vec : BS;
    for (int c0 = 0; c0 < BS; c0 += chunk)
        emit_softmax_chunk(e, st, kn, delta, state, c0, chunk);

    gemm_args pv = {.a = st, .b = vf, .c = acc, .a_sm = 1, .a_sk = BS,
                    .ldb = D, .ldc = D, .m_end = ir_i64(e, BS), .n = D,
                    .k_end = kn,
                    .row_scale = ir_gep(e, e->f32, state, ir_i64(e, 2LL * BS))};
    emit_gemm(e, &pv);
    LLVMBuildRetVoid(b);
}

/* void prism_cpu_store_o(const float *acc, const float *state, i32 n,
 *                        void *o, i64 stride_s) */
void llvm_emit_store_o(ir *e) {
    LLVMTypeRef params[] = {ir_ptr_t(e->f32), ir_ptr_t(e->f32), e->i32,
                            ir_ptr_t(e->i8), e->i64};
    LLVMValueRef fn = ir_function(e, PRISM_CPU_STORE_O_NAME, params, 5);
    LLVMBuilderRef b = e->b;
    int D = e->D, BS = e->BS;
    LLVMValueRef acc = LLVMGetParam(fn, 0), state = LLVMGetParam(fn, 1);
    LLVMValueRef n = LLVMBuildSExt(b, LLVMGetParam(fn, 2), e->i64, "n");
    LLVMValueRef o = ir_as_elt_ptr(e, LLVMGetParam(fn, 3));
    LLVMValueRef stride = LLVMGetParam(fn, 4);

    ir_loop t;
    ir_loop_begin(e, &t, ir_i64(e, 0), n, 1, "row");
    LLVMValueRef l = ir_load_f32(e, state, add_c(e, t.index, BS));
    LLVMValueRef pos = LLVMBuildFCmp(b, LLVMRealOGT, l, ir_f32(e, 0.0), "");
    LLVMValueRef inv = LLVMBuildSelect(
        b, pos, LLVMBuildFDiv(b, ir_f32(e, 1.0), l, ""), ir_f32(e, 0.0), "");
    LLVMValueRef row = ir_load_vec(e, e->f32, acc, mul_c(e, t.index, D), D);
    row = LLVMBuildFMul(b, row, ir_splat(e, inv, D), "");
    ir_store_dtype(e, o, LLVMBuildMul(b, t.index, stride, ""), row, D);
    ir_loop_end(e, &t);
    LLVMBuildRetVoid(b);
}

#else
typedef int prism_llvm_attention_unused; /* built without the CPU backend */
#endif /* PRISM_WITH_LLVM */
