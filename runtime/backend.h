/*
 * backend.h - what a plan asks of the device it runs on.
 *
 * A plan (runtime/dispatch/plan.c) is device-neutral: it validates the config and
 * the limits once at creation, and every call's arguments once per call,
 * lays out the workspace (runtime/workspace.c), then hands the call to its
 * backend through this table -- the same operations for every device, as
 * ggml's backends do.  runtime/cuda/ implements it with the CUDA driver and
 * NVRTC-compiled kernels, runtime/cpu/ with LLVM-compiled host code.  A
 * backend's own state lives behind plan->impl: created by `create`, freed
 * by `destroy`, opaque to everything else.
 *
 * The tables are declared here and defined by the backends; plan.c picks
 * one by the context's device kind and never tests the kind again.
 */
#ifndef PRISM_BACKEND_H
#define PRISM_BACKEND_H

#include "runtime/plan.h"
#include "runtime/workspace.h"

/* One call's arguments, validated by plan.c. */
typedef struct prism_call {
    const prism_batch *b;
    prism_params prm;                  /* the launch's run-time parameters
                                          (the batch's, else the config's),
                                          valid, softmax_scale resolved
                                          (> 0)                          */
    const prism_tensor *q, *k, *v, *o; /* v and o: attention and prefill */
    float *lse;                        /* NULL or 4-byte aligned         */
    const prism_block_mask *mask;      /* prefill: NULL keeps its own    */
    uintptr_t ws;                      /* the workspace's base address   */
    prism_workspace layout;            /* its regions for this batch     */
    prism_stream stream;               /* ignored by synchronous backends */
} prism_call;

typedef struct prism_backend {
    const char *name;       /* "cuda", "cpu"                                 */
    /* The memory rules of the backend's tensors and workspaces. */
    int tensor_align;       /* bytes of alignment of tensor data            */
    int stride_multiple;    /* elements every tensor stride is a multiple of */
    size_t workspace_align; /* bytes, of the workspace and of each region   */
    /* stats_q, stats_k and the totals back to back (8-byte aligned), so
     * one memset clears them before each estimate */
    bool pack_stats;

    /* Fills p->impl and p->arch (PRISM_ARCH_COUNT_ off the GPU); may
     * replace p->cfg by the config its kernels were built from (tuned).
     * p->cfg and p->limits are valid.  On failure destroy still runs. */
    prism_status (*create)(prism_plan *p);
    /* Frees p->impl (which may be partly built, or NULL). */
    void (*destroy)(prism_plan *p);
    /* Sizes of the backend's own regions (stats, totals and the regions
     * only it uses) for a batch; the shared ones are already set. */
    void (*workspace_regions)(const prism_plan *p, const prism_ws_shape *shape,
                              size_t bytes[PRISM_WS_REGIONS]);
    /* The plan's own workspace, in the backend's memory. */
    prism_status (*workspace_alloc)(prism_plan *p, size_t bytes, void **out);
    void (*workspace_free)(prism_plan *p, void *workspace);

    /* The calls (prism.h), over validated arguments. */
    prism_status (*estimate)(prism_plan *p, const prism_call *c);
    prism_status (*attention)(prism_plan *p, const prism_call *c);
    prism_status (*prefill)(prism_plan *p, const prism_call *c);
    /* The last estimate's density; one has run (plan.c checks). */
    prism_status (*density)(prism_plan *p, double *density);
} prism_backend;

extern const prism_backend prism_cuda_backend; /* runtime/cuda/cuda_plan.c */
extern const prism_backend prism_cpu_backend;  /* runtime/cpu/cpu_plan.c   */

#endif
