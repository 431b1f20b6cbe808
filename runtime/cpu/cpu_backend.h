/*
 * cpu_backend.h - the CPU backend's internals: a prism_plan whose context
 * has device PRISM_DEVICE_CPU carries a prism_cpu_plan (plan->cpu) instead
 * of CUDA modules, and the public entry points of launch.c hand over to the
 * functions below after their shared argument checks.
 *
 *   cpu_jit.c    config -> LLVM module (gen/cpu/llvm_*.c) -> default<O3> ->
 *                object file for the host CPU, through the kernel cache,
 *                loaded with ORC LLJIT
 *   cpu_plan.c   plan creation, workspace layout, host-side validation
 *                (cu_seqlens and mask contents), the public-call glue
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
#include "runtime/plan.h"

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

/* Byte offsets of a CPU workspace's regions, and per-worker strides. */
typedef struct cpu_workspace {
    size_t pooled_q, pooled_k, energy_q, energy_k, inv_scales, counts,
        indices, est_scratch, attn_scratch, total;
    size_t est_stride, attn_stride;
} cpu_workspace;

struct prism_cpu_plan {
    int threads;
    prism_cpu_code *code;
    prism_cpu_kernels k;
    prism_cpu_jit_info jit;
    void *workspace; /* owned (64-byte aligned), NULL with caller_workspace */
    size_t workspace_size;
    uint64_t last_selected, last_causal; /* of the last estimate */
    bool has_estimate;
    double last_pool_ms, last_select_ms; /* stage times of that estimate */
};

/* cpu_jit.c: builds (or loads from the cache) and links the kernels of
 * cfg for this host.  PRISM_ERR_UNSUPPORTED without PRISM_WITH_LLVM. */
prism_status prism_cpu_jit_build(prism_context *ctx, const prism_config *cfg,
                                 prism_cpu_code **code, prism_cpu_kernels *k,
                                 prism_cpu_jit_info *info, char *err,
                                 size_t err_size);
void prism_cpu_jit_free(prism_cpu_code *code);

/* cpu_plan.c: the plan hooks (plan.c, launch.c). */
prism_status prism_cpu_plan_create(prism_plan *p);
void prism_cpu_plan_destroy(struct prism_cpu_plan *cpu);
void prism_cpu_workspace_layout(const prism_plan *p, int batch, int seqlen_q,
                                int seqlen_k, cpu_workspace *ws);
size_t prism_cpu_workspace_size(const prism_plan *p, const prism_batch *b);
prism_status prism_cpu_estimate(prism_plan *p, const prism_batch *b,
                                const prism_tensor *q, const prism_tensor *k,
                                const prism_block_mask *mask, void *workspace,
                                size_t workspace_size);
prism_status prism_cpu_sparse_attention(prism_plan *p, const prism_batch *b,
                                        const prism_tensor *q,
                                        const prism_tensor *k,
                                        const prism_tensor *v,
                                        const prism_block_mask *mask,
                                        const prism_tensor *o, float *lse,
                                        void *workspace, size_t workspace_size);
prism_status prism_cpu_prefill(prism_plan *p, const prism_batch *b,
                               const prism_tensor *q, const prism_tensor *k,
                               const prism_tensor *v, const prism_tensor *o,
                               float *lse, const prism_block_mask *mask,
                               void *workspace, size_t workspace_size);
prism_status prism_cpu_density(prism_plan *p, double *density);
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
    const prism_cpu_kernels *k;
    int B, nq, nk;            /* the mask geometry (batch maxima)       */
    const cpu_seq *seqs;      /* [B]                                    */
    const prism_tensor *q, *kt, *v, *o;
    float *lse;
    int64_t lse_tokens;       /* seqlen_q, or total_q for ragged        */
    bool varlen;
    int32_t *counts, *indices;
    char *ws;                 /* estimation: workspace base (`layout`)  */
    cpu_workspace layout;
    char *attn_scratch;       /* attention: per-worker scratch          */
    size_t attn_stride;       /* bytes per worker                       */
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
