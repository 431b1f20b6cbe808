/*
 * llvm_estimate.c - the estimation kernels of the CPU backend (method §2-5):
 * block pooling with band energies, and dual-band block scores.
 *
 * Both work on whole head-dim vectors (<D x float>): D is a constant, so a
 * pooled row is a handful of registers and a band is a constant 0/1 mask
 * multiplied in, the same trick as the CUDA estimate kernel (no gathers,
 * no branches).  The calibration of method §4 needs, per (batch, head), the
 * mean square of the pooled rows over all dims and over each band; pool
 * returns each block's three sums of squares so that C only adds them up
 * (in double) and applies the formula.  Softmax and top-p stay in C: they
 * are per-row scalar work over at most nk values and want double
 * precision to agree with the reference at near-ties.
 */
#ifdef PRISM_WITH_LLVM

#include "gen/cpu/llvm_ir.h"

/* void prism_cpu_pool(const void *x, i64 stride_s, i32 n, float *out,
 *                     float *energy) */
void llvm_emit_pool(ir *e) {
    LLVMTypeRef params[] = {ir_ptr_t(e->i8), e->i64, e->i32,
                            ir_ptr_t(e->f32), ir_ptr_t(e->f32)};
    LLVMValueRef fn = ir_function(e, PRISM_CPU_POOL_NAME, params, 5);
    LLVMBuilderRef b = e->b;
    int D = e->D;
    LLVMTypeRef row_t = ir_vec_t(e->f32, D);
    LLVMValueRef x = ir_as_elt_ptr(e, LLVMGetParam(fn, 0));
    LLVMValueRef stride = LLVMGetParam(fn, 1);
    LLVMValueRef n = LLVMBuildSExt(b, LLVMGetParam(fn, 2), e->i64, "n");
    LLVMValueRef out = LLVMGetParam(fn, 3), energy = LLVMGetParam(fn, 4);

    LLVMValueRef sum = ir_alloca(e, row_t, "sum");
    LLVMBuildStore(b, ir_f32_splat(e, 0.0, D), sum);
    ir_loop t;
    ir_loop_begin(e, &t, ir_i64(e, 0), n, 1, "token");
    LLVMValueRef row =
        ir_load_dtype(e, x, LLVMBuildMul(b, t.index, stride, ""), D);
    LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, row_t, sum, ""), row,
                                    ""),
                   sum);
    ir_loop_end(e, &t);

    LLVMValueRef count = LLVMBuildSIToFP(b, n, e->f32, "");
    LLVMValueRef mean = LLVMBuildFDiv(b, LLVMBuildLoad2(b, row_t, sum, ""),
                                      ir_splat(e, count, D), "mean");
    ir_store_vec(e, e->f32, out, ir_i64(e, 0), mean, D);
    LLVMValueRef sq = LLVMBuildFMul(b, mean, mean, "");
    LLVMValueRef all = ir_hsum(e, sq, D);
    LLVMValueRef high = ir_hsum(
        e, LLVMBuildFMul(b, sq, ir_mask_vec(e, e->high_mask, 0, D), ""), D);
    LLVMValueRef low = ir_hsum(
        e, LLVMBuildFMul(b, sq, ir_mask_vec(e, e->low_mask, 0, D), ""), D);
    ir_store_f32(e, energy, ir_i64(e, 0), all);
    ir_store_f32(e, energy, ir_i64(e, 1), high);
    ir_store_f32(e, energy, ir_i64(e, 2), low);
    LLVMBuildRetVoid(b);
}

/* void prism_cpu_score(const float *q, const float *k, i32 n,
 *                      float inv_high, float inv_low, float *out_high,
 *                      float *out_low) */
void llvm_emit_score(ir *e) {
    LLVMTypeRef params[] = {ir_ptr_t(e->f32), ir_ptr_t(e->f32), e->i32,
                            e->f32,           e->f32,           ir_ptr_t(e->f32),
                            ir_ptr_t(e->f32)};
    LLVMValueRef fn = ir_function(e, PRISM_CPU_SCORE_NAME, params, 7);
    LLVMBuilderRef b = e->b;
    int D = e->D;
    LLVMValueRef q = LLVMGetParam(fn, 0), k = LLVMGetParam(fn, 1);
    LLVMValueRef n = LLVMBuildSExt(b, LLVMGetParam(fn, 2), e->i64, "n");
    LLVMValueRef inv_high = LLVMGetParam(fn, 3), inv_low = LLVMGetParam(fn, 4);
    LLVMValueRef out_high = LLVMGetParam(fn, 5), out_low = LLVMGetParam(fn, 6);

    LLVMValueRef qv = ir_load_vec(e, e->f32, q, ir_i64(e, 0), D);
    LLVMValueRef qh =
        LLVMBuildFMul(b, qv, ir_mask_vec(e, e->high_mask, 0, D), "q_high");
    LLVMValueRef ql =
        LLVMBuildFMul(b, qv, ir_mask_vec(e, e->low_mask, 0, D), "q_low");
    ir_loop j;
    ir_loop_begin(e, &j, ir_i64(e, 0), n, 1, "key_block");
    LLVMValueRef kv = ir_load_vec(
        e, e->f32, k, LLVMBuildMul(b, j.index, ir_i64(e, D), ""), D);
    LLVMValueRef h = ir_hsum(e, LLVMBuildFMul(b, qh, kv, ""), D);
    LLVMValueRef l = ir_hsum(e, LLVMBuildFMul(b, ql, kv, ""), D);
    ir_store_f32(e, out_high, j.index, LLVMBuildFMul(b, h, inv_high, ""));
    ir_store_f32(e, out_low, j.index, LLVMBuildFMul(b, l, inv_low, ""));
    ir_loop_end(e, &j);
    LLVMBuildRetVoid(b);
}

#else
typedef int prism_llvm_estimate_unused; /* built without the CPU backend */
#endif /* PRISM_WITH_LLVM */
