/*
 * workspace.h - the regions of a plan's workspace.
 *
 * Every backend keeps the same kinds of intermediate results between the
 * kernels of one call (pooled Q and K, band energies, band scales, the
 * prefill's own block mask) plus a few of its own (the CUDA persistent
 * kernel's work queue, the CPU workers' scratch).  One function lays them
 * all out: the shared regions' sizes come from the config, the batch
 * shape and the launch's head counts, the backend adds the sizes of its
 * own regions and states its alignment (runtime/backend.h), and a region
 * a backend does not use is empty.
 */
#ifndef PRISM_WORKSPACE_H
#define PRISM_WORKSPACE_H

#include "prism.h"

typedef enum prism_ws_region {
    PRISM_WS_POOLED_Q,      /* fp32 block means of Q [B, Hq, nq, D]        */
    PRISM_WS_POOLED_K,      /*   and of K [B, Hkv, nk, D]                   */
    PRISM_WS_STATS_Q,       /* band energies of Q (backend: per head or per
                               block, 3 floats each)                        */
    PRISM_WS_STATS_K,       /*   and of K                                   */
    PRISM_WS_TOTALS,        /* selected / block-causal counts (2 x u64)     */
    PRISM_WS_SCALES,        /* band scales, or their inverses [B, Hq, 2]    */
    PRISM_WS_COUNTS,        /* the prefill's own block mask: counts
                               [B, Hq, nq] ...                              */
    PRISM_WS_INDICES,       /*   ... and indices [B, Hq, nq, nk] (int32)    */
    PRISM_WS_SCHEDULE,      /* CUDA persistent kernel: its work queue,      */
    PRISM_WS_SPLIT_ARRIVED, /*   the arrival counters of split rows,        */
    PRISM_WS_PARTIAL_O,     /*   their partial outputs                      */
    PRISM_WS_PARTIAL_ML,    /*   and softmax statistics                     */
    PRISM_WS_EST_SCRATCH,   /* CPU: each worker's estimation scratch        */
    PRISM_WS_ATTN_SCRATCH,  /*   and attention scratch                      */
    PRISM_WS_REGIONS
} prism_ws_region;

typedef struct prism_workspace {
    size_t at[PRISM_WS_REGIONS];    /* byte offset of each region */
    size_t bytes[PRISM_WS_REGIONS]; /* its size (0: not used)     */
    size_t total;                   /* bytes of the whole workspace */
} prism_workspace;

/* What a workspace is laid out for: a batch of `batch` sequences of up to
 * seqlen_q / seqlen_k tokens, with the launch's head counts. */
typedef struct prism_ws_shape {
    int batch, seqlen_q, seqlen_k;
    int q_heads, kv_heads;
} prism_ws_shape;

/* The regions for shape on plan p's backend. */
void prism_workspace_layout(const prism_plan *p, const prism_ws_shape *shape,
                            prism_workspace *ws);

#endif
