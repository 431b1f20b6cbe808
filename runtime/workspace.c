/*
 * workspace.c - laying out a plan's workspace, for every backend.
 *
 * The regions follow one another in the order of prism_ws_region, each at
 * the backend's alignment (256 bytes on a GPU, a cache line on the host),
 * so a caller's workspace needs that alignment only.  The shared regions
 * are sized here; the backend sizes the rest (runtime/backend.h).  An empty
 * region takes no space.  Sizes saturate (base/checked.h): a layout whose
 * total is above PRISM_MAX_WORKSPACE_BYTES is refused by the caller.  With pack_stats, the two energy regions and the
 * totals sit back to back (the totals 8-byte aligned), so one memset
 * before each estimate clears all three.
 */
#include "runtime/backend.h"

#include "base/checked.h"

#include <string.h>

static size_t align_up(size_t n, size_t align) {
    return prism_size_align(n, align);
}

/* The sizes of the regions every backend has. */
static void shared_regions(const prism_config *c, const prism_ws_shape *s,
                           size_t bytes[PRISM_WS_REGIONS]) {
    size_t b = (size_t)s->batch, d = (size_t)c->head_dim;
    size_t nq = (size_t)prism_ceil_div(s->seqlen_q, c->block_size);
    size_t nk = (size_t)prism_ceil_div(s->seqlen_k, c->block_size);
    size_t hq = (size_t)s->q_heads, hkv = (size_t)s->kv_heads;
    bytes[PRISM_WS_POOLED_Q] = prism_size_mul4(b * hq, nq, d, sizeof(float));
    bytes[PRISM_WS_POOLED_K] = prism_size_mul4(b * hkv, nk, d, sizeof(float));
    bytes[PRISM_WS_SCALES] = prism_size_mul4(b, hq, 2, sizeof(float));
    bytes[PRISM_WS_COUNTS] = prism_size_mul4(b, hq, nq, sizeof(int32_t));
    bytes[PRISM_WS_INDICES] =
        prism_size_mul4(b * hq, nq, nk, sizeof(int32_t));
}

void prism_workspace_layout(const prism_plan *p, const prism_ws_shape *shape,
                            prism_workspace *ws) {
    const prism_backend *be = p->backend;
    memset(ws, 0, sizeof *ws);
    shared_regions(&p->cfg, shape, ws->bytes);
    be->workspace_regions(p, shape, ws->bytes);
    size_t cursor = 0;
    for (int r = 0; r < PRISM_WS_REGIONS; r++) {
        if (be->pack_stats && r == PRISM_WS_STATS_K)
            ws->at[r] = cursor;
        else if (be->pack_stats && r == PRISM_WS_TOTALS)
            ws->at[r] = align_up(cursor, 8);
        else
            ws->at[r] = align_up(cursor, be->workspace_align);
        cursor = prism_size_add(ws->at[r], ws->bytes[r]);
    }
    ws->total = align_up(cursor, be->workspace_align);
}
