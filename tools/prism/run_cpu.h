/*
 * run_cpu.h - the LLVM CPU backend half of `prism run --device cpu`.
 */
#ifndef PRISM_RUN_CPU_H
#define PRISM_RUN_CPU_H

#include "reference/reference.h"

typedef struct cpu_backend_run {
    prism_context *ctx;
    prism_plan *plan;
    const prism_config *cfg;
    int B;
    int64_t Sq, Sk;
    prism_selection sel, full; /* the backend's selection; all blocks   */
    void *o_dense, *o;         /* outputs in the config's dtype          */
    float *lse_dense, *lse;    /* [B, Hq, Sq]                            */
    float *recall;             /* [B, Hq, Sq] scratch                    */
    char device[160];          /* "llvm backend on znver3, 512-bit ..." */
    int reps;                  /* timed runs per stage; the fastest counts */
} cpu_backend_run;

/* Creates the CPU plan (JIT or cache) and the buffers.  Prints nothing:
 * on failure returns the status with its message in why
 * (PRISM_ERR_UNSUPPORTED: libprism built without the LLVM backend);
 * cpu_backend_close() is needed either way. */
prism_status cpu_backend_open(const prism_config *cfg, int B, int64_t Sq,
                              int64_t Sk, int threads, int reps,
                              cpu_backend_run *run, char *why,
                              size_t why_size);
void cpu_backend_close(cpu_backend_run *run);

/* Dense attention (every block-causal block) into o_dense / lse_dense. */
int cpu_backend_dense(cpu_backend_run *run, const void *q, const void *k,
                      const void *v, double *attention_ms);
/* Prism estimation into run->sel; stage times and density. */
int cpu_backend_estimate(cpu_backend_run *run, const void *q, const void *k,
                         double *pool_ms, double *estimate_ms,
                         double *density);
/* Attention over sel (any method's), scored against the dense output:
 * recall per query = exp(lse - lse_dense) (the share of the dense softmax
 * mass inside the selection), error = relative L2 per head. */
int cpu_backend_attend(cpu_backend_run *run, const void *q, const void *k,
                       const void *v, const prism_selection *sel,
                       double *attention_ms, prism_ref_summary *recall,
                       prism_ref_summary *error);

#endif
