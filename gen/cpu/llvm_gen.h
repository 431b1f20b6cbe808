/*
 * llvm_gen.h - the CPU backend's code generator: LLVM IR for the hot inner
 * kernels of Prism, specialized to one config's constants.
 *
 * The CUDA path turns a config into CUDA source for NVRTC; the CPU path
 * turns the same config into an LLVM module through the LLVM C API, which
 * runtime/cpu/cpu_jit.c optimizes (default<O3>), compiles to an object file for
 * the host CPU, caches and loads with ORC LLJIT.
 *
 * The split between generated code and C:
 *
 *   generated (this module)             C (runtime/cpu/cpu_run.c)
 *   -------------------------------     ----------------------------------
 *   pool:    mean of one token block    loops over (batch, head, block)
 *            + its squared energy in    calibration formula (method §4) from
 *            all / high / low dims      the summed energies
 *   score:   both bands' logits of one  per-row softmax (double) and top-p
 *            pooled query block against by sort, union with sink and
 *            n pooled key blocks        diagonal, the index list
 *   load_q:  a query block, scaled and  the (batch, head, query block)
 *            transposed to fp32         thread pool, selected-block loop
 *   attend:  one key block: K/V to      causal offsets, ragged sequences,
 *            fp32, S^T = K Q^T, online  log-sum-exp
 *            softmax update, O += P V
 *   store_o: O / l in the input dtype
 *
 * Only the generated functions see the head dim, block size, band dims and
 * dtype, all as constants, so every inner loop has a fixed trip count and
 * fixed vector widths; C keeps everything that depends on lengths.
 *
 * Generated functions (C ABI; pointers never alias; "elements" are of the
 * config's dtype, bf16 or fp16; D = head dim, BS = block size):
 */
#ifndef PRISM_LLVM_GEN_H
#define PRISM_LLVM_GEN_H

#include "base/base.h"

#include <stdint.h>

/* Block mean of n_tokens (1..BS) rows starting at x, stride_s elements
 * apart: out[D] (fp32, summed in fp32), energy[3] = sum of out^2 over all
 * dims, over the high-band dims, over the low-band dims. */
typedef void (*prism_cpu_pool_fn)(const void *x, int64_t stride_s,
                                  int32_t n_tokens, float *out,
                                  float *energy);
#define PRISM_CPU_POOL_NAME "prism_cpu_pool"

/* Band logits of pooled query q[D] against pooled keys k[n][D]:
 * out_high[j] = <q, k_j>_high * inv_high, out_low[j] likewise. */
typedef void (*prism_cpu_score_fn)(const float *q, const float *k, int32_t n,
                                   float inv_high, float inv_low,
                                   float *out_high, float *out_low);
#define PRISM_CPU_SCORE_NAME "prism_cpu_score"

/* Query rows [0, n) at q (stride_s elements apart) times `scale`, into
 * qt[D][BS] (transposed, fp32); rows n..BS-1 are zero. */
typedef void (*prism_cpu_load_q_fn)(const void *q, int64_t stride_s,
                                    int32_t n, float scale, float *qt);
#define PRISM_CPU_LOAD_Q_NAME "prism_cpu_load_q"

/* One key block of kn (1..BS) keys against the query tile qt (scores in
 * log2 units: load_q's scale includes log2(e)).  Key u is visible to tile
 * row t when u <= t + delta.  state = m[BS] running max, l[BS] running
 * sum, alpha[BS] scratch; acc[BS][D] the unnormalized output.  scratch
 * holds PRISM_CPU_ATTEND_SCRATCH(D, BS) floats, 64-byte aligned. */
typedef void (*prism_cpu_attend_fn)(const float *qt, const void *k,
                                    int64_t k_stride, const void *v,
                                    int64_t v_stride, int32_t kn,
                                    int32_t delta, float *state, float *acc,
                                    float *scratch);
#define PRISM_CPU_ATTEND_NAME "prism_cpu_attend"
#define PRISM_CPU_ATTEND_SCRATCH(D, BS)                                        \
    (2 * (size_t)(BS) * (size_t)(D) + (size_t)(BS) * (size_t)(BS))

/* Rows [0, n) of acc / l into o (stride_s elements apart) in the dtype;
 * a row with l == 0 is written as zeros. */
typedef void (*prism_cpu_store_o_fn)(const float *acc, const float *state,
                                     int32_t n, void *o, int64_t stride_s);
#define PRISM_CPU_STORE_O_NAME "prism_cpu_store_o"

/* What the generator needs to know about the host. */
typedef struct prism_llvm_target {
    int vector_bits; /* widest float vector: 128, 256 or 512 */
    int registers;   /* vector registers: 16 or 32           */
} prism_llvm_target;

#ifdef PRISM_WITH_LLVM
#include <llvm-c/Core.h>

/* Emits the five functions above for cfg into a new module of ctx.  The
 * module is named "prism_cpu" whatever the config's name, so configs of
 * equal shapes share compiled code (and cache entries).  On failure *out is
 * NULL and err holds one line. */
prism_status prism_llvm_emit_module(const prism_config *cfg,
                                    const prism_llvm_target *target,
                                    LLVMContextRef ctx, LLVMModuleRef *out,
                                    char *err, size_t err_size);
#endif

#endif /* PRISM_LLVM_GEN_H */
