/*
 * cpu_backend.h - the CPU backend's internals: a prism_plan whose context
 * has device PRISM_DEVICE_CPU runs on prism_cpu_backend (runtime/backend.h),
 * whose state behind plan->impl is a prism_cpu_plan; runtime/dispatch/plan.c hands
 * each call over after the argument checks every backend shares.
 *
 *   cpu_jit.c    config -> LLVM module (gen/cpu/llvm_*.c) -> default<O3> ->
 *                object file for the host CPU, through the kernel cache,
 *                loaded with ORC LLJIT
 *   cpu_plan.c   the backend table: plan creation, the backend's workspace
 *                regions, host-side validation (cu_seqlens and mask
 *                contents), the calls
 *   cpu_run.c    the C orchestration: thread pool over rows, calibration,
 *                softmax and top-p, the attention loop over selected blocks
 *
 * All pointers are host pointers and every call is synchronous (the stream
 * is ignored).  A CPU plan fixes its worker-thread count at creation
 * (context option cpu_threads, else the online CPUs); results never depend
 * on it.
 */
#ifndef PRISM_CPU_BACKEND_H
#define PRISM_CPU_BACKEND_H

#include "gen/cpu/llvm_gen.h"
#include "runtime/backend.h"

typedef struct prism_cpu_kernels {
    prism_cpu_pool_fn pool;
    prism_cpu_score_fn score;
    prism_cpu_load_q_fn load_q;
    prism_cpu_attend_fn attend;
    prism_cpu_store_o_fn store_o;
} prism_cpu_kernels;

/* How the plan's code was obtained. */
typedef struct prism_cpu_jit_info {
    bool cache_hit;
    char key_hex[65];
    char cpu[64];       /* LLVMGetHostCPUName()            */
    int vector_bits;    /* vector width the code uses      */
    double compile_ms;  /* optimization + codegen (cached) */
    double lookup_ms;   /* this plan's emit + cache + load */
} prism_cpu_jit_info;

/* The loaded code (an LLJIT instance); opaque outside cpu_jit.c. */
typedef struct prism_cpu_code prism_cpu_code;

/* A CPU plan's state (plan->impl). */
typedef struct prism_cpu_plan {
    int threads;
    prism_cpu_code *code;
    prism_cpu_kernels k;
    prism_cpu_jit_info jit;
    uint64_t last_selected, last_causal; /* of the last estimate */
    double last_pool_ms, last_select_ms; /* stage times of that estimate */
} prism_cpu_plan;

/* cpu_jit.c: builds (or loads from the cache) and links the kernels of
 * cfg for this host.  PRISM_ERR_UNSUPPORTED without PRISM_WITH_LLVM. */
prism_status prism_cpu_jit_build(prism_context *ctx, const prism_config *cfg,
                                 prism_cpu_code **code, prism_cpu_kernels *k,
                                 prism_cpu_jit_info *info, char *err,
                                 size_t err_size);
void prism_cpu_jit_free(prism_cpu_code *code);
/* What the CPU plans' cache keys name: the CPU the code is built for
 * (LLVMGetHostCPUName) and the compiler ("llvm 14.0.6"); both "" without
 * the LLVM backend. */
void prism_cpu_jit_host(char *cpu, size_t cpu_size, char *compiler,
                        size_t compiler_size);

/* cpu_plan.c: the state of a CPU plan, or NULL for another plan. */
const prism_cpu_plan *prism_cpu_plan_of(const prism_plan *p);
/* Stage times (ms) of the plan's last estimate: pooling + calibration, and
 * scores + selection.  False when no estimate ran or p is not a CPU plan. */
bool prism_cpu_plan_timing(const prism_plan *p, double *pool_ms,
                           double *select_ms);

/* cpu_run.c: one call's work over validated arguments. */
typedef struct cpu_seq {
    int64_t view_b;           /* batch entry of the tensors             */
    int64_t q_start, q_len;   /* token range along the S axis           */
    int64_t k_start, k_len;
    int nq, nk;               /* this sequence's query / key blocks     */
} cpu_seq;

typedef struct cpu_call {
    const prism_plan *p;
    const prism_params *prm;  /* the launch's run-time parameters
                                 (resolved: runtime/backend.h)          */
    const prism_cpu_kernels *k;
    int B, nq, nk;            /* the mask geometry (batch maxima)       */
    const cpu_seq *seqs;      /* [B]                                    */
    const prism_tensor *q, *kt, *v, *o;
    float *lse;
    int64_t lse_tokens;       /* seqlen_q, or total_q for ragged        */
    bool varlen;
    const prism_paged_kv *paged; /* NULL, or K and V are page pools      */
    int32_t *counts, *indices;
    char *ws;                 /* the workspace's base (`layout`)        */
    const prism_workspace *layout;
    size_t est_stride;        /* per-worker scratch bytes: estimation   */
    size_t attn_stride;       /*   and attention                        */
    int threads;
} cpu_call;

/* Per-worker scratch bytes (64-byte multiples). */
size_t cpu_est_scratch_bytes(int nk);
size_t cpu_attn_scratch_bytes(int head_dim, int block_size);

/* Estimation into c->counts / c->indices; *selected and *causal get the
 * density's numerator and denominator, pool_ms / select_ms stage times.
 * Cannot fail: every argument was validated and the workspace sized. */
void cpu_run_estimate(const cpu_call *c, uint64_t *selected, uint64_t *causal,
                      double *pool_ms, double *select_ms);
/* Attention over the selection in c->counts / c->indices. */
void cpu_run_attention(const cpu_call *c);

#endif /* PRISM_CPU_BACKEND_H */
