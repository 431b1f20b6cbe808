/*
 * launch.h - how the host launches each generated kernel.
 *
 * The generator fixes a kernel's launch shape together with its source:
 * threads per CTA, dynamic shared memory, the tiles the host must know
 * (tensor-map boxes, grid sizes) and the rule that turns a batch into a
 * grid.  One function per kernel (launch.c) computes it from the kernel
 * spec; it lands in spec->launch for the launcher (runtime/cuda) and as
 * constants in the generated source for the template, so the two cannot
 * disagree and nothing has to be read back from a cubin.
 */
#ifndef PRISM_LAUNCH_H
#define PRISM_LAUNCH_H

#include "prism.h"

#include <stdbool.h>
#include <stdint.h>

/* How a batch becomes a grid (prism_launch_grid). */
typedef enum prism_grid_rule {
    PRISM_GRID_BLOCKS,      /* (max(nq, key CTAs), Hq + Hkv, batch): one
                               CTA per pooled block of one head; the key
                               CTAs are nk, or with a pooled-key cache
                               those of prism_launch_pool_keys          */
    PRISM_GRID_ROW_GROUPS,  /* (ceil(nq Hq / Hkv / rows) Hkv batch, 1, 1):
                               one CTA per group of query-block rows that
                               share a KV head                           */
    PRISM_GRID_QUERY_TILES, /* (ceil(Sq / tile_m), Hq, batch)             */
    PRISM_GRID_PERSISTENT   /* (min(SMs, 16 x tiles x Hq x batch), 1, 1),
                               after a schedule kernel of one CTA fills
                               the work queue                            */
} prism_grid_rule;

typedef struct prism_launch_shape {
    prism_grid_rule grid;
    int threads;          /* per CTA                                        */
    int dynamic_smem;     /* bytes of dynamic shared memory per CTA ...     */
    int smem_per_row_block; /* ... plus this many per query-block row and
                               key block (the estimator's logits)           */
    int max_rows;         /* query-block rows per CTA at most (estimator)   */
    int tile_m, tile_n;   /* query rows per CTA, keys per tile (attention) */
    bool tensor_maps;     /* the kernel takes AttnTmaParams (TMA)           */
    int schedule_threads; /* persistent: the schedule kernel's CTA size     */
} prism_launch_shape;

/* What a launch's grid depends on besides the shape: the batch and the
 * launch's head counts (run-time parameters, prism_params). */
typedef struct prism_grid_input {
    int batch, seqlen_q;
    int q_heads, kv_heads;
    int nq, nk;        /* query / key blocks of the longest sequence */
    int rows_per_cta;  /* PRISM_GRID_ROW_GROUPS                      */
    int sm_count;      /* PRISM_GRID_PERSISTENT                      */
    /* PRISM_GRID_BLOCKS with a pooled-key cache (prism_paged_kv): */
    bool pooled_keys;  /* the launch reads and writes the cache      */
    bool ragged;       /* cu_seqlens: per-sequence lengths unknown   */
    int seqlen_k, block_size;
} prism_grid_input;

/* The grid of one launch. */
void prism_launch_grid(const prism_launch_shape *shape,
                       const prism_grid_input *in, unsigned grid[3]);

/* The key CTAs per (sequence, KV head) of a pool_stats launch
 * (PRISM_GRID_BLOCKS): without a pooled-key cache *fresh = nk and
 * *sweeps = 0, one CTA per key block; with one, the rule of
 * gen/templates/pool_stats_params.h: *fresh CTAs for the blocks from each
 * sequence's prefix to its end, then *sweeps CTAs of POOL_SWEEP_BLOCKS
 * prefix blocks each.  A regular batch's lengths are those of every
 * sequence, so the counts are exact; a ragged batch's are device memory,
 * so its counts are bounds over every sequence the maxima allow (a
 * sequence's fresh blocks are at most ceil(len_q / block_size) + 1, its
 * prefix at most seqlen_k / block_size blocks), and its CTAs past their
 * own sequence's blocks exit. */
void prism_launch_pool_keys(const prism_grid_input *in, int *fresh,
                            int *sweeps);

/* The persistent attention's CTA count rule, also its `ctas` parameter. */
unsigned prism_launch_persistent_ctas(const prism_launch_shape *shape,
                                      const prism_grid_input *in);

/* The magic numbers of a FastDiv (gen/templates/attention_params.h) for
 * divisor d in [1, 2^31): x / d = (umulhi(x, *mul) + x) >> *shift for
 * every 0 <= x < 2^31. */
void prism_launch_fastdiv(int32_t d, uint32_t *mul, uint32_t *shift);

struct prism_kernel_spec;

/* The launch functions of the kernel table (gen/kernels.c). */
prism_status prism_launch_pool_stats(struct prism_kernel_spec *spec,
                                     char *err, size_t err_size);
prism_status prism_launch_estimate(struct prism_kernel_spec *spec, char *err,
                                   size_t err_size);
prism_status prism_launch_attention(struct prism_kernel_spec *spec,
                                    char *err, size_t err_size);

#endif
