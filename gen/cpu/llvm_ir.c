/*
 * llvm_ir.c - helpers over the LLVM C API for the CPU kernel emitters.
 *
 * See llvm_ir.h for the conventions (allocas for loop-carried values,
 * explicit vectors, no library calls).  Everything here only builds
 * instructions at the builder's position; nothing can fail except by
 * producing IR that LLVMVerifyModule (run by cpu_jit.c before any pass)
 * rejects, which turns into PRISM_ERR_GENERATE with LLVM's message.
 */
#ifdef PRISM_WITH_LLVM

#include "gen/cpu/llvm_ir.h"

#include <string.h>

LLVMTypeRef ir_vec_t(LLVMTypeRef elem, int n) {
    return n > 0 ? LLVMVectorType(elem, (unsigned)n) : elem;
}

LLVMTypeRef ir_ptr_t(LLVMTypeRef elem) { return LLVMPointerType(elem, 0); }

LLVMValueRef ir_i32(const ir *e, long long v) {
    return LLVMConstInt(e->i32, (unsigned long long)v, 1);
}

LLVMValueRef ir_i64(const ir *e, long long v) {
    return LLVMConstInt(e->i64, (unsigned long long)v, 1);
}

LLVMValueRef ir_f32(const ir *e, double v) { return LLVMConstReal(e->f32, v); }

/* n copies of a constant (n == 0: the constant itself). */
static LLVMValueRef const_splat(LLVMValueRef c, int n) {
    if (n == 0)
        return c;
    LLVMValueRef lanes[1024];
    for (int i = 0; i < n; i++)
        lanes[i] = c;
    return LLVMConstVector(lanes, (unsigned)n);
}

LLVMValueRef ir_f32_splat(const ir *e, double v, int n) {
    return const_splat(ir_f32(e, v), n);
}

static LLVMValueRef i32_splat(const ir *e, long long v, int n) {
    return const_splat(ir_i32(e, v), n);
}

LLVMValueRef ir_splat(const ir *e, LLVMValueRef s, int n) {
    if (n == 0)
        return s;
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), (unsigned)n);
    LLVMValueRef one =
        LLVMBuildInsertElement(e->b, LLVMGetUndef(vt), s, ir_i32(e, 0), "");
    LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(e->i32, (unsigned)n));
    return LLVMBuildShuffleVector(e->b, one, LLVMGetUndef(vt), zeros, "splat");
}

LLVMValueRef ir_mask_vec(const ir *e, const int *mask, int first, int n) {
    LLVMValueRef lanes[1024];
    for (int i = 0; i < n; i++)
        lanes[i] = ir_f32(e, mask[first + i] ? 1.0 : 0.0);
    return LLVMConstVector(lanes, (unsigned)n);
}

LLVMValueRef ir_function(ir *e, const char *name, LLVMTypeRef *params,
                         int n_params) {
    LLVMTypeRef fty =
        LLVMFunctionType(e->void_t, params, (unsigned)n_params, 0);
    LLVMValueRef fn = LLVMAddFunction(e->mod, name, fty);
    static const char *const fn_attrs[] = {"nounwind", "nofree", "nosync"};
    for (size_t i = 0; i < sizeof fn_attrs / sizeof fn_attrs[0]; i++) {
        unsigned kind =
            LLVMGetEnumAttributeKindForName(fn_attrs[i], strlen(fn_attrs[i]));
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                                LLVMCreateEnumAttribute(e->ctx, kind, 0));
    }
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    unsigned nocapture = LLVMGetEnumAttributeKindForName("nocapture", 9);
    for (int i = 0; i < n_params; i++) {
        if (LLVMGetTypeKind(params[i]) != LLVMPointerTypeKind)
            continue;
        LLVMAddAttributeAtIndex(fn, (unsigned)i + 1,
                                LLVMCreateEnumAttribute(e->ctx, noalias, 0));
        LLVMAddAttributeAtIndex(fn, (unsigned)i + 1,
                                LLVMCreateEnumAttribute(e->ctx, nocapture, 0));
    }
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(e->ctx, fn, "entry");
    LLVMPositionBuilderAtEnd(e->b, entry);
    e->fn = fn;
    return fn;
}

LLVMValueRef ir_alloca(ir *e, LLVMTypeRef t, const char *name) {
    LLVMBuilderRef tmp = LLVMCreateBuilderInContext(e->ctx);
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(e->fn);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first)
        LLVMPositionBuilderBefore(tmp, first);
    else
        LLVMPositionBuilderAtEnd(tmp, entry);
    LLVMValueRef slot = LLVMBuildAlloca(tmp, t, name);
    LLVMDisposeBuilder(tmp);
    return slot;
}

void ir_loop_begin(ir *e, ir_loop *l, LLVMValueRef start, LLVMValueRef end,
                   long long step, const char *name) {
    l->pre = LLVMGetInsertBlock(e->b);
    l->header = LLVMAppendBasicBlockInContext(e->ctx, e->fn, name);
    l->body = LLVMAppendBasicBlockInContext(e->ctx, e->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(e->ctx, e->fn, "done");
    l->start = start;
    l->step = LLVMConstInt(LLVMTypeOf(start), (unsigned long long)step, 1);
    LLVMBuildBr(e->b, l->header);
    LLVMPositionBuilderAtEnd(e->b, l->header);
    l->index = LLVMBuildPhi(e->b, LLVMTypeOf(start), name);
    LLVMAddIncoming(l->index, &start, &l->pre, 1);
    LLVMValueRef more = LLVMBuildICmp(e->b, LLVMIntSLT, l->index, end, "");
    LLVMBuildCondBr(e->b, more, l->body, l->exit);
    LLVMPositionBuilderAtEnd(e->b, l->body);
}

void ir_loop_end(ir *e, ir_loop *l) {
    LLVMValueRef next = LLVMBuildNSWAdd(e->b, l->index, l->step, "next");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(e->b);
    LLVMBuildBr(e->b, l->header);
    LLVMAddIncoming(l->index, &next, &latch, 1);
    LLVMPositionBuilderAtEnd(e->b, l->exit);
}

LLVMValueRef ir_gep(ir *e, LLVMTypeRef elem, LLVMValueRef base,
                    LLVMValueRef index) {
    return LLVMBuildGEP2(e->b, elem, base, &index, 1, "");
}

static unsigned elem_align(const ir *e, LLVMTypeRef elem) {
    return elem == e->f32 || elem == e->i32 ? 4 : 2;
}

LLVMValueRef ir_load_vec(ir *e, LLVMTypeRef elem, LLVMValueRef base,
                         LLVMValueRef index, int n) {
    LLVMValueRef p = ir_gep(e, elem, base, index);
    LLVMTypeRef vt = ir_vec_t(elem, n);
    if (n > 0)
        p = LLVMBuildBitCast(e->b, p, ir_ptr_t(vt), "");
    LLVMValueRef v = LLVMBuildLoad2(e->b, vt, p, "");
    LLVMSetAlignment(v, elem_align(e, elem));
    return v;
}

void ir_store_vec(ir *e, LLVMTypeRef elem, LLVMValueRef base,
                  LLVMValueRef index, LLVMValueRef value, int n) {
    LLVMValueRef p = ir_gep(e, elem, base, index);
    if (n > 0)
        p = LLVMBuildBitCast(e->b, p, ir_ptr_t(ir_vec_t(elem, n)), "");
    LLVMValueRef st = LLVMBuildStore(e->b, value, p);
    LLVMSetAlignment(st, elem_align(e, elem));
}

LLVMValueRef ir_load_f32(ir *e, LLVMValueRef base, LLVMValueRef index) {
    return ir_load_vec(e, e->f32, base, index, 0);
}

void ir_store_f32(ir *e, LLVMValueRef base, LLVMValueRef index,
                  LLVMValueRef value) {
    ir_store_vec(e, e->f32, base, index, value, 0);
}

LLVMValueRef ir_as_elt_ptr(ir *e, LLVMValueRef p) {
    return LLVMBuildBitCast(e->b, p, ir_ptr_t(e->elt), "");
}

LLVMValueRef ir_load_dtype(ir *e, LLVMValueRef base, LLVMValueRef index,
                           int n) {
    LLVMValueRef raw = ir_load_vec(e, e->elt, base, index, n);
    if (!e->bf16)
        return LLVMBuildFPExt(e->b, raw, ir_vec_t(e->f32, n), "");
    LLVMValueRef wide = LLVMBuildZExt(e->b, raw, ir_vec_t(e->i32, n), "");
    wide = LLVMBuildShl(e->b, wide, i32_splat(e, 16, n), "");
    return LLVMBuildBitCast(e->b, wide, ir_vec_t(e->f32, n), "");
}

void ir_store_dtype(ir *e, LLVMValueRef base, LLVMValueRef index,
                    LLVMValueRef value, int n) {
    LLVMValueRef narrow;
    if (!e->bf16) {
        narrow = LLVMBuildFPTrunc(e->b, value, ir_vec_t(e->half, n), "");
    } else {
        /* half.h's prism_f32_to_bf16: round to nearest even, quiet NaN */
        LLVMBuilderRef b = e->b;
        LLVMValueRef u = LLVMBuildBitCast(b, value, ir_vec_t(e->i32, n), "");
        LLVMValueRef mag = LLVMBuildAnd(b, u, i32_splat(e, 0x7fffffff, n), "");
        LLVMValueRef nan =
            LLVMBuildICmp(b, LLVMIntUGT, mag, i32_splat(e, 0x7f800000, n), "");
        LLVMValueRef top = LLVMBuildLShr(b, u, i32_splat(e, 16, n), "");
        LLVMValueRef lsb = LLVMBuildAnd(b, top, i32_splat(e, 1, n), "");
        LLVMValueRef bias = LLVMBuildAdd(b, lsb, i32_splat(e, 0x7fff, n), "");
        LLVMValueRef rounded = LLVMBuildLShr(
            b, LLVMBuildAdd(b, u, bias, ""), i32_splat(e, 16, n), "");
        LLVMValueRef quiet = LLVMBuildOr(b, top, i32_splat(e, 0x40, n), "");
        LLVMValueRef bits = LLVMBuildSelect(b, nan, quiet, rounded, "");
        narrow = LLVMBuildTrunc(b, bits, ir_vec_t(e->i16, n), "");
    }
    ir_store_vec(e, e->elt, base, index, narrow, n);
}

static LLVMValueRef intrinsic(ir *e, const char *name, LLVMTypeRef t,
                              LLVMValueRef *args, int n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(e->mod, id, &t, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(e->ctx, id, &t, 1);
    return LLVMBuildCall2(e->b, fty, fn, args, (unsigned)n, "");
}

LLVMValueRef ir_fmuladd(ir *e, LLVMValueRef a, LLVMValueRef b,
                        LLVMValueRef c) {
    LLVMValueRef args[3] = {a, b, c};
    return intrinsic(e, "llvm.fmuladd", LLVMTypeOf(a), args, 3);
}

LLVMValueRef ir_fmax(ir *e, LLVMValueRef a, LLVMValueRef b) {
    LLVMValueRef gt = LLVMBuildFCmp(e->b, LLVMRealOGT, a, b, "");
    return LLVMBuildSelect(e->b, gt, a, b, "");
}

LLVMValueRef ir_exp2(ir *e, LLVMValueRef x, int n) {
    /* Cephes exp2f: 2^x = 2^r * P(f), r = round(x), f = x - r in
     * [-0.5, 0.5]; 2^r is added to the exponent bits. */
    static const double poly[] = {1.535336188319500e-4, 1.339887440266574e-3,
                                  9.618437357674640e-3, 5.550332471162809e-2,
                                  2.402264791363012e-1, 6.931472028550421e-1,
                                  1.0};
    LLVMBuilderRef b = e->b;
    LLVMValueRef lo = ir_f32_splat(e, -125.0, n);
    LLVMValueRef below = LLVMBuildFCmp(b, LLVMRealOLT, x, lo, "");
    x = LLVMBuildSelect(b, below, lo, x, "");
    LLVMValueRef magic = ir_f32_splat(e, 12582912.0, n); /* 1.5 * 2^23 */
    LLVMValueRef r =
        LLVMBuildFSub(b, LLVMBuildFAdd(b, x, magic, ""), magic, "round");
    LLVMValueRef f = LLVMBuildFSub(b, x, r, "frac");
    LLVMValueRef p = ir_f32_splat(e, poly[0], n);
    for (size_t i = 1; i < sizeof poly / sizeof poly[0]; i++)
        p = ir_fmuladd(e, p, f, ir_f32_splat(e, poly[i], n));
    LLVMValueRef ri = LLVMBuildFPToSI(b, r, ir_vec_t(e->i32, n), "");
    LLVMValueRef shifted = LLVMBuildShl(b, ri, i32_splat(e, 23, n), "");
    LLVMValueRef bits = LLVMBuildBitCast(b, p, ir_vec_t(e->i32, n), "");
    bits = LLVMBuildAdd(b, bits, shifted, "");
    return LLVMBuildBitCast(b, bits, ir_vec_t(e->f32, n), "exp2");
}

/* Lanes [first, first + count) of v as a vector. */
static LLVMValueRef lanes(ir *e, LLVMValueRef v, int first, int count) {
    LLVMValueRef idx[1024];
    for (int i = 0; i < count; i++)
        idx[i] = ir_i32(e, first + i);
    return LLVMBuildShuffleVector(e->b, v, LLVMGetUndef(LLVMTypeOf(v)),
                                  LLVMConstVector(idx, (unsigned)count), "");
}

LLVMValueRef ir_hsum(ir *e, LLVMValueRef v, int n) {
    if (n == 0)
        return v;
    LLVMValueRef extra = NULL; /* lanes left over by odd widths */
    while (n > 1) {
        int h = n / 2;
        if (n % 2) {
            LLVMValueRef last =
                LLVMBuildExtractElement(e->b, v, ir_i32(e, n - 1), "");
            extra = extra ? LLVMBuildFAdd(e->b, extra, last, "") : last;
        }
        v = LLVMBuildFAdd(e->b, lanes(e, v, 0, h), lanes(e, v, h, h), "");
        n = h;
    }
    LLVMValueRef s = LLVMBuildExtractElement(e->b, v, ir_i32(e, 0), "");
    return extra ? LLVMBuildFAdd(e->b, s, extra, "") : s;
}

#else
typedef int prism_llvm_ir_unused; /* built without the CPU backend */
#endif /* PRISM_WITH_LLVM */
