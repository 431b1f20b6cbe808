/*
 * llvm_ir.h - small helpers over the LLVM C API shared by the CPU kernel
 * emitters (gen/cpu/llvm_estimate.c, gen/cpu/llvm_attention.c).
 *
 * The emitters write IR the way a front end at -O0 does: loop counters are
 * phis, but anything carried around a loop (accumulators) lives in an
 * entry-block alloca that default<O3> promotes to registers.  That keeps
 * the emitters short and leaves scheduling to LLVM.  Vectors are explicit
 * (<N x float> for N up to the head dim); LLVM splits them into the host's
 * registers, so the emitters only choose register-block shapes.
 *
 * LLVM 14 has typed pointers: every helper takes the element type and
 * bitcasts as needed.  No helper emits a library call: exp2 is a
 * polynomial, rounding is the 1.5 * 2^23 trick, fp16 goes through LLVM's
 * half type (F16C on x86) and bf16 through integer shifts.
 */
#ifndef PRISM_LLVM_IR_H
#define PRISM_LLVM_IR_H

#ifdef PRISM_WITH_LLVM

#include "gen/cpu/llvm_gen.h"

#include <llvm-c/Core.h>
#include <stdbool.h>

typedef struct ir {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMValueRef fn; /* the function being emitted */
    LLVMTypeRef f32, i1, i8, i16, i32, i64, half, void_t;
    LLVMTypeRef elt;  /* storage type of the config's dtype: i16 or half */
    bool bf16;        /* dtype is bf16 (else fp16)                      */
    int D, BS;        /* head dim, block size                           */
    int vec;          /* floats per vector register                     */
    int rows;         /* register-block rows of the GEMM micro-kernel   */
    const int *high_mask, *low_mask; /* [D]: 1 where the dim is in the band */
} ir;

typedef struct ir_loop {
    LLVMBasicBlockRef pre, header, body, exit;
    LLVMValueRef index, start, step;
} ir_loop;

/* Types and constants. */
LLVMTypeRef ir_vec_t(LLVMTypeRef elem, int n);
LLVMTypeRef ir_ptr_t(LLVMTypeRef elem);
LLVMValueRef ir_i32(const ir *e, long long v);
LLVMValueRef ir_i64(const ir *e, long long v);
LLVMValueRef ir_f32(const ir *e, double v);
/* <n x float> of v, or of the scalar value s. */
LLVMValueRef ir_f32_splat(const ir *e, double v, int n);
LLVMValueRef ir_splat(const ir *e, LLVMValueRef s, int n);
/* <n x float> constant: mask[first + i] ? 1 : 0. */
LLVMValueRef ir_mask_vec(const ir *e, const int *mask, int first, int n);

/* Starts an externally visible void function; pointer parameters are
 * noalias.  Leaves the builder at the entry block. */
LLVMValueRef ir_function(ir *e, const char *name, LLVMTypeRef *params,
                         int n_params);
/* An alloca of type t in the entry block (whatever the current block). */
LLVMValueRef ir_alloca(ir *e, LLVMTypeRef t, const char *name);

/* for (i = start; i < end; i += step): body follows ir_loop_begin, the
 * index is l->index (i64 when start is i64). */
void ir_loop_begin(ir *e, ir_loop *l, LLVMValueRef start, LLVMValueRef end,
                   long long step, const char *name);
void ir_loop_end(ir *e, ir_loop *l);

/* &base[index] for a pointer to elem (index i64). */
LLVMValueRef ir_gep(ir *e, LLVMTypeRef elem, LLVMValueRef base,
                    LLVMValueRef index);
/* Load / store n consecutive elem at base[index] as one vector. */
LLVMValueRef ir_load_vec(ir *e, LLVMTypeRef elem, LLVMValueRef base,
                         LLVMValueRef index, int n);
void ir_store_vec(ir *e, LLVMTypeRef elem, LLVMValueRef base,
                  LLVMValueRef index, LLVMValueRef value, int n);
LLVMValueRef ir_load_f32(ir *e, LLVMValueRef base, LLVMValueRef index);
void ir_store_f32(ir *e, LLVMValueRef base, LLVMValueRef index,
                  LLVMValueRef value);

/* n elements of the dtype at base[index] (base: elt*) as <n x float>, and
 * back (round to nearest even; bf16 keeps NaNs quiet like half.h). */
LLVMValueRef ir_load_dtype(ir *e, LLVMValueRef base, LLVMValueRef index,
                           int n);
void ir_store_dtype(ir *e, LLVMValueRef base, LLVMValueRef index,
                    LLVMValueRef value, int n);
/* A void* parameter as elt*. */
LLVMValueRef ir_as_elt_ptr(ir *e, LLVMValueRef p);

/* Element-wise helpers on float vectors (or scalars). */
LLVMValueRef ir_fmuladd(ir *e, LLVMValueRef a, LLVMValueRef b,
                        LLVMValueRef c);
LLVMValueRef ir_fmax(ir *e, LLVMValueRef a, LLVMValueRef b);
/* 2^x for x <= 0 (clamped below at -125), relative error ~2e-7. */
LLVMValueRef ir_exp2(ir *e, LLVMValueRef x, int n);
/* Sum of the n lanes (pairwise tree). */
LLVMValueRef ir_hsum(ir *e, LLVMValueRef v, int n);

/* The kernels (one function each, named in llvm_gen.h). */
void llvm_emit_pool(ir *e);      /* llvm_estimate.c  */
void llvm_emit_score(ir *e);     /* llvm_estimate.c  */
void llvm_emit_load_q(ir *e);    /* llvm_attention.c */
void llvm_emit_attend(ir *e);    /* llvm_attention.c */
void llvm_emit_store_o(ir *e);   /* llvm_attention.c */

#endif /* PRISM_WITH_LLVM */
#endif /* PRISM_LLVM_IR_H */
