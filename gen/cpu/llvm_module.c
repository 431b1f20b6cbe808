/*
 * llvm_module.c - config -> LLVM module for the CPU backend.
 *
 * Fixes everything the kernels specialize on (head dim, block size, dtype,
 * the two band masks from the RoPE layout and band widths, the register
 * block from the host's vector width) and emits the five kernels of
 * llvm_gen.h into one module.  Fields that do not change the code (names,
 * head counts, thresholds, temperatures) are deliberately left out, so the
 * module text -- the cache key's source -- is the same for every config of
 * one shape.  The rules mirror the CUDA side (gen/templates/bands.cuh) and the
 * reference (prism_ref_band_dims): pair(d) = d / 2 (interleaved) or
 * d mod D/2 (half); high band = pairs < dh/2, low band = pairs >= D/2 - dl/2.
 */
#ifdef PRISM_WITH_LLVM

#include "gen/cpu/llvm_ir.h"

#include <stdlib.h>

static prism_status check_shape(const prism_config *cfg,
                                const prism_llvm_target *t, char *err,
                                size_t err_size) {
    int D = cfg->head_dim, BS = cfg->block_size;
    if (D < 2 || D > 512 || D % 2)
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "CPU backend: head_dim %d must be even, 2..512", D);
    if (BS < 16 || BS > 256 || (BS & (BS - 1)))
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "CPU backend: block_size %d must be a power of "
                            "two in 16..256",
                            BS);
    if (cfg->dtype != PRISM_DTYPE_BF16 && cfg->dtype != PRISM_DTYPE_FP16)
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "CPU backend: dtype %s; allowed: bf16, half",
                            prism_dtype_name(cfg->dtype)
                                ? prism_dtype_name(cfg->dtype)
                                : "?");
    if (t->vector_bits != 128 && t->vector_bits != 256 &&
        t->vector_bits != 512)
        return prism_errorf(err, err_size, PRISM_ERR_INTERNAL,
                            "CPU backend: vector width %d bits",
                            t->vector_bits);
    return PRISM_OK;
}

prism_status prism_llvm_emit_module(const prism_config *cfg,
                                    const prism_llvm_target *target,
                                    LLVMContextRef ctx, LLVMModuleRef *out,
                                    char *err, size_t err_size) {
    *out = NULL;
    prism_status st = check_shape(cfg, target, err, err_size);
    if (st != PRISM_OK)
        return st;
    int D = cfg->head_dim;
    int *high = malloc((size_t)D * sizeof *high);
    int *low = malloc((size_t)D * sizeof *low);
    if (!high || !low) {
        free(high);
        free(low);
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "CPU backend: out of memory");
    }
    for (int d = 0; d < D; d++) {
        int pair = cfg->rope_layout == PRISM_ROPE_INTERLEAVED ? d / 2
                                                              : d % (D / 2);
        high[d] = pair < cfg->high_dim / 2;
        low[d] = pair >= D / 2 - cfg->low_dim / 2;
    }
    ir e = {
        .ctx = ctx,
        .mod = LLVMModuleCreateWithNameInContext("prism_cpu", ctx),
        .b = LLVMCreateBuilderInContext(ctx),
        .f32 = LLVMFloatTypeInContext(ctx),
        .i1 = LLVMInt1TypeInContext(ctx),
        .i8 = LLVMInt8TypeInContext(ctx),
        .i16 = LLVMInt16TypeInContext(ctx),
        .i32 = LLVMInt32TypeInContext(ctx),
        .i64 = LLVMInt64TypeInContext(ctx),
        .half = LLVMHalfTypeInContext(ctx),
        .void_t = LLVMVoidTypeInContext(ctx),
        .bf16 = cfg->dtype == PRISM_DTYPE_BF16,
        .D = D,
        .BS = cfg->block_size,
        .vec = target->vector_bits / 32,
        .rows = target->registers >= 32 ? 8 : 4,
        .high_mask = high,
        .low_mask = low,
    };
    e.elt = e.bf16 ? e.i16 : e.half;
    llvm_emit_pool(&e);
    llvm_emit_score(&e);
    llvm_emit_load_q(&e);
    llvm_emit_attend(&e);
    llvm_emit_store_o(&e);
    LLVMDisposeBuilder(e.b);
    free(high);
    free(low);
    *out = e.mod;
    return PRISM_OK;
}

#else
typedef int prism_llvm_module_unused; /* built without the CPU backend */
#endif /* PRISM_WITH_LLVM */
