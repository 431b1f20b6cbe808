/*
 * launch.c - the launch shape of each kernel, from its spec.
 *
 * What the host needs to launch a kernel (threads per CTA, dynamic shared
 * memory, the tiles behind its grid and tensor maps) is decided here, once
 * per spec, and emitted into the kernel's source as constants that the
 * template builds on: the template does not decide its own launch shape,
 * so there is nothing to read back from a cubin, and the launcher and the
 * kernel take the same numbers from the same place.  The templates keep
 * static_asserts that their shared-memory layout fits what is granted.
 *
 * Tile defaults (tunables left 0) follow the arch's shared memory per CTA:
 * sm_80 163 KB, sm_86 / sm_89 / sm_120 99 KB, sm_90a / sm_100 227 KB, and
 * 99 KB for the PTX image, which must fit any device it may load on.
 */
#include "gen/spec.h"

#include "base/base.h"

#include <stdint.h>

#include "gen/templates/pool_stats_params.h"

static prism_status full(const prism_kernel_spec *s, char *err, size_t n) {
    return prism_errorf(err, n, PRISM_ERR_GENERATE,
                        "kernel spec for '%s' is full", s->def->name);
}

static int imin(int a, int b) { return a < b ? a : b; }

/* One CTA per pooled block of one head; THREADS is a tunable. */
prism_status prism_launch_pool_stats(prism_kernel_spec *s, char *err,
                                     size_t n) {
    (void)err, (void)n;
    s->launch.grid = PRISM_GRID_BLOCKS;
    s->launch.threads = (int)prism_spec_int(s, "THREADS", 128);
    return PRISM_OK;
}

/* A warp per query-block row, so THREADS / 32 rows per CTA at most; the
 * launcher picks fewer when their logits (2 floats per row and key block,
 * dynamic shared memory) do not fit (runtime/cuda/launch.c). */
prism_status prism_launch_estimate(prism_kernel_spec *s, char *err,
                                   size_t n) {
    prism_launch_shape *l = &s->launch;
    l->grid = PRISM_GRID_ROW_GROUPS;
    l->threads = (int)prism_spec_int(s, "THREADS", 256);
    l->max_rows = l->threads / 32;
    l->smem_per_row_block = 2 * (int)sizeof(float);
    if (prism_spec_add_launch(s, "EST_ROWS", l->max_rows,
                              "query-block rows per CTA at most") != PRISM_OK)
        return full(s, err, n);
    return PRISM_OK;
}

static int smem_per_cta(prism_arch arch) {
    return arch == PRISM_ARCH_SM90A || arch == PRISM_ARCH_SM100 ? 227 * 1024
           : arch == PRISM_ARCH_SM80                            ? 163 * 1024
                                                                : 99 * 1024;
}

/* gen/templates/attention.cu: ATTN_TILE_M query rows per CTA in warps of
 * ATTN_WARP_M rows, key tiles of ATTN_TILE_N, shared memory for Q, two
 * stages of K and V, 64 bytes of loop constants and, for the lean shape
 * (32-row warps at head_dim >= 128), the per-lane softmax state. */
static prism_status attention_mma(prism_kernel_spec *s, char *err, size_t n) {
    const int D = s->cfg->head_dim, BS = s->cfg->block_size;
    const int bm = (int)prism_spec_int(s, "BLOCK_M", 0);
    const int bn = (int)prism_spec_int(s, "BLOCK_N", 0);
    const int wm = (int)prism_spec_int(s, "WARP_M", 0);
    const int limit = smem_per_cta(s->arch);
    const int block_m = bm > 0 ? bm : (D <= 128 ? 128 : 64);
    const int block_n = bn > 0 ? bn
                        : (D == 64 || (D == 128 && limit > 99 * 1024)) ? 64
                                                                         : 32;
    const int tile_m = imin(block_m, BS), tile_n = imin(block_n, BS);
    const int warp_m = imin(wm > 0 ? wm : (D <= 128 && tile_m >= 128 ? 32 : 16),
                            tile_m);
    const int mt = warp_m / 16, threads = tile_m / warp_m * 32;
    const bool lean = mt * D >= 256 && mt > 1;
    prism_launch_shape *l = &s->launch;
    l->grid = PRISM_GRID_QUERY_TILES;
    l->threads = threads;
    l->tile_m = tile_m;
    l->tile_n = tile_n;
    l->dynamic_smem = (tile_m + 4 * tile_n) * D * 2 + 64 +
                      (lean ? 2 * threads * mt * 2 * 4 : 0);
    if (prism_spec_add_launch(s, "ATTN_TILE_M", tile_m,
                              "query rows per CTA") != PRISM_OK ||
        prism_spec_add_launch(s, "ATTN_TILE_N", tile_n,
                              "keys per shared-memory tile") != PRISM_OK ||
        prism_spec_add_launch(s, "ATTN_WARP_M", warp_m,
                              "query rows per warp") != PRISM_OK ||
        prism_spec_add_launch(s, "ATTN_THREADS", threads,
                              "threads per CTA") != PRISM_OK ||
        prism_spec_add_launch(s, "ATTN_SMEM_BYTES", l->dynamic_smem,
                              "dynamic shared memory per CTA") != PRISM_OK)
        return full(s, err, n);
    return PRISM_OK;
}

/* gen/templates/attention_sm90*.cu: 3 warpgroups (a producer, two
 * consumers of 64 query rows), key tiles of H_TN, H_STAGES K/V stages
 * where they fit; shared memory for Q, the stages, the mbarriers (Q full,
 * four per stage, Q empty, one per work-item slot), the producer's
 * handover ints (3 slots of 14, 2 split arrivals, a tile word per stage)
 * and 1 KB to align the base to the 128B swizzle's 1024 bytes.  One CTA
 * per SM; a schedule kernel of 1024 threads fills the work queue first. */
static prism_status attention_wgmma(prism_kernel_spec *s, char *err,
                                    size_t n) {
    const int D = s->cfg->head_dim;
    const int bn = (int)prism_spec_int(s, "BLOCK_N", 0);
    const int st = (int)prism_spec_int(s, "STAGES", 0);
    const int tm = 128, tn = bn > 0 ? bn : (D <= 128 ? 128 : 64);
    const int q_bytes = tm * D * 2, stage_bytes = 2 * tn * D * 2;
    const int stages =
        st > 0 ? st : (q_bytes + 3 * stage_bytes + 2048 <= 227 * 1024 ? 3 : 2);
    const int item_slots = 3, slot_ints = 14;
    const int barriers = 1 + 4 * stages + 1 + item_slots;
    const int handover_ints = item_slots * slot_ints + 2 + stages;
    prism_launch_shape *l = &s->launch;
    l->grid = PRISM_GRID_PERSISTENT;
    l->threads = 384;
    l->tile_m = tm;
    l->tile_n = tn;
    l->tensor_maps = true;
    l->schedule_threads = 1024;
    l->dynamic_smem = q_bytes + stages * stage_bytes + 8 * barriers +
                      4 * handover_ints + 1024;
    if (prism_spec_add_int(s, "WGMMA_SS_N", tn,
                           "wgmma N of S = Q K^T (keys per tile)") != PRISM_OK ||
        prism_spec_add_int(s, "WGMMA_RS_N", D,
                           "wgmma N of O += P V (head dim)") != PRISM_OK ||
        prism_spec_add_launch(s, "H_TM", tm, "query rows per CTA") != PRISM_OK ||
        prism_spec_add_launch(s, "H_TN", tn, "keys per tile") != PRISM_OK ||
        prism_spec_add_launch(s, "H_STAGES", stages,
                              "K/V pipeline stages") != PRISM_OK ||
        prism_spec_add_launch(s, "H_THREADS", l->threads,
                              "threads per CTA: 3 warpgroups") != PRISM_OK ||
        prism_spec_add_launch(s, "H_SMEM_BYTES", l->dynamic_smem,
                              "dynamic shared memory per CTA") != PRISM_OK ||
        prism_spec_add_launch(s, "H_SCHED_THREADS", l->schedule_threads,
                              "threads of the schedule kernel") != PRISM_OK)
        return full(s, err, n);
    return PRISM_OK;
}

prism_status prism_launch_attention(prism_kernel_spec *s, char *err,
                                    size_t n) {
    return s->variant == 2 ? attention_wgmma(s, err, n)
                           : attention_mma(s, err, n);
}

unsigned prism_launch_persistent_ctas(const prism_launch_shape *l,
                                      const prism_grid_input *in) {
    /* one CTA per SM, fewer only where even split into the most pieces
     * (16) the rows are fewer */
    unsigned tiles = (unsigned)((in->seqlen_q + l->tile_m - 1) / l->tile_m);
    unsigned items = tiles * (unsigned)in->q_heads * (unsigned)in->batch;
    return items * 16 < (unsigned)in->sm_count ? items * 16
                                               : (unsigned)in->sm_count;
}

void prism_launch_pool_keys(const prism_grid_input *in, int *fresh,
                            int *sweeps) {
    if (!in->pooled_keys || in->block_size < 1) {
        *fresh = in->nk;
        *sweeps = 0;
        return;
    }
    int prefix = in->ragged ? in->seqlen_k / in->block_size
                            : pool_prefix_blocks(in->seqlen_q, in->seqlen_k,
                                                 in->block_size);
    *fresh = in->ragged ? imin(in->nk, in->nq + 1) : in->nk - prefix;
    *sweeps = (prefix + POOL_SWEEP_BLOCKS - 1) / POOL_SWEEP_BLOCKS;
}

void prism_launch_grid(const prism_launch_shape *l, const prism_grid_input *in,
                       unsigned grid[3]) {
    grid[0] = grid[1] = grid[2] = 1;
    switch (l->grid) {
    case PRISM_GRID_BLOCKS: {
        int fresh, sweeps;
        prism_launch_pool_keys(in, &fresh, &sweeps);
        grid[0] = (unsigned)(in->nq > fresh + sweeps ? in->nq : fresh + sweeps);
        grid[1] = (unsigned)(in->q_heads + in->kv_heads);
        grid[2] = (unsigned)in->batch;
        break;
    }
    case PRISM_GRID_ROW_GROUPS: {
        int rows = in->nq * (in->q_heads / in->kv_heads);
        unsigned groups = (unsigned)((rows + in->rows_per_cta - 1) /
                                     in->rows_per_cta);
        grid[0] = groups * (unsigned)in->kv_heads * (unsigned)in->batch;
        break;
    }
    case PRISM_GRID_QUERY_TILES:
        grid[0] = (unsigned)((in->seqlen_q + l->tile_m - 1) / l->tile_m);
        grid[1] = (unsigned)in->q_heads;
        grid[2] = (unsigned)in->batch;
        break;
    case PRISM_GRID_PERSISTENT:
        grid[0] = prism_launch_persistent_ctas(l, in);
        break;
    }
}

/* Granlund and Montgomery's round-up method with a 33-bit multiplier
 * whose top bit is the "+ x" of the formula: with shift = ceil(log2 d),
 * m = 2^32 (2^shift - d) / d + 1 fits 32 bits, and (umulhi(x, m) + x)
 * >> shift is exact for x < 2^31 (tests/test_gen_facts.c checks it). */
void prism_launch_fastdiv(int32_t d, uint32_t *mul, uint32_t *shift) {
    uint32_t s = 0;
    while (s < 31 && ((uint32_t)1 << s) < (uint32_t)d)
        s++;
    uint64_t m = (((uint64_t)1 << 32) * (((uint64_t)1 << s) - (uint64_t)d)) /
                     (uint64_t)d + 1;
    *mul = (uint32_t)m;
    *shift = s;
}
