/*
 * tune_gpu.c - verifying and timing one candidate on one GPU.
 *
 * Candidates run through the public plan API (a plan per candidate, with a
 * caller workspace so plans allocate nothing), which is exactly the code
 * path a tuned plan will take; the kernels under test are launched the
 * way production launches them.  A kernel is timed as the stage that
 * launches it: pool_stats and estimate candidates as prism_estimate,
 * attention candidates as prism_sparse_attention over random block masks
 * of the requested densities (the sum over densities is the score).
 *
 * Before a candidate is timed its output must match the default
 * candidate's on the same inputs: the selection of the estimate stage
 * exactly, up to near-ties (at most 1 + 1e-5 of the block memberships may
 * differ: the calibration statistics are float atomics whose order varies
 * run to run, so even the default does not reproduce itself bit for bit),
 * the attention output within 4e-3 relative L2: two correct kernels that
 * round P to bf16/fp16 at different points (the mma.sync kernel rescales
 * per 64-key chunk, the wgmma kernel per 128-key tile) differ by about
 * 1.3e-3 (measured on an H100), a wrong one by far more than the 1e-2 the
 * GPU tests allow against the fp64 reference.  Outputs are poisoned
 * before each check so a kernel that writes nothing cannot pass.
 *
 * Timing follows tools/prism/cmd_bench.c: CUDA events around each launch, two
 * warm-up launches, then the median, min and max of up to 100 launches
 * (about 200 ms of work, at least 5), rotating over three copies of the
 * inputs when they fit so that the L2 cache does not flatter small shapes
 * (larger inputs exceed L2 by themselves).  A failed launch makes the
 * candidate infinitely slow; if it leaves the context broken the device is
 * retired for the rest of the run.
 */
#include "autotune/tune_gpu.h"

#include "base/half.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ALLOCS 64
#define MAX_COPIES 3
#define WARMUP 2
#define MIN_REPS 5
#define MAX_REPS 100
#define TARGET_MS 200.0
#define ATTN_TOLERANCE 4e-3
#define CHUNK_ELEMS ((size_t)16 << 20) /* host staging, in elements */
#define COPIES_BYTES_MAX ((size_t)3 << 30)

struct tune_gpu {
    int ordinal;
    prism_context *ctx;
    const prism_driver *drv;
    CUdevice dev;
    CUcontext cu;
    bool retained;
    CUevent start, stop;
    bool broken;
    char broken_why[PRISM_ERRMSG_MAX];
    /* the bucket's buffers */
    int seq, nq, nk, copies, n_dens;
    int head_dim, q_heads, kv_heads, block_size;
    prism_dtype dtype;
    double dens[PRISM_TUNE_MAX_SHAPES];
    CUdeviceptr allocs[MAX_ALLOCS];
    int n_allocs;
    prism_tensor q[MAX_COPIES], k[MAX_COPIES], v[MAX_COPIES], o;
    size_t q_elems;
    CUdeviceptr ws;
    size_t ws_size;
    prism_block_mask est, est_ref;
    bool have_est_ref;
    prism_block_mask masks[PRISM_TUNE_MAX_SHAPES];
    CUdeviceptr ref_o[PRISM_TUNE_MAX_SHAPES];
    bool have_attn_ref;
};

tune_stage tune_stage_of(const char *kernel) {
    if (!strcmp(kernel, "pool_stats") || !strcmp(kernel, "estimate"))
        return TUNE_STAGE_ESTIMATE;
    if (!strcmp(kernel, "attention"))
        return TUNE_STAGE_ATTENTION;
    return TUNE_STAGE_NONE;
}

static bool cuda_ok(tune_gpu *g, CUresult rc, const char *what, char *err,
                    size_t err_size) {
    if (rc == CUDA_SUCCESS)
        return true;
    prism_cuda_error(g->drv, rc, what, err, err_size);
    return false;
}

static void free_bucket(tune_gpu *g) {
    for (int i = 0; i < g->n_allocs; i++)
        g->drv->mem_free(g->allocs[i]);
    if (g->ws)
        g->drv->mem_free(g->ws);
    g->n_allocs = 0;
    g->ws = 0;
    g->ws_size = 0;
    g->seq = 0;
    g->have_est_ref = g->have_attn_ref = false;
}

prism_status tune_gpu_open(const prism_context *ctx, int ordinal,
                           tune_gpu **out, char *err, size_t err_size) {
    *out = NULL;
    tune_gpu *g = calloc(1, sizeof *g);
    if (!g)
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory opening GPU %d", ordinal);
    g->ordinal = ordinal;
    prism_status st = prism_driver_get(&g->drv, err, err_size);
    int count = 0;
    if (st != PRISM_OK)
        goto fail;
    if (g->drv->device_get_count(&count) != CUDA_SUCCESS || ordinal < 0 ||
        ordinal >= count) {
        st = prism_errorf(err, err_size, PRISM_ERR_NO_DEVICE,
                          "no CUDA device %d (this machine has %d)", ordinal,
                          count);
        goto fail;
    }
    st = PRISM_ERR_CUDA;
    if (!cuda_ok(g, g->drv->device_get(&g->dev, ordinal), "cuDeviceGet", err,
                 err_size) ||
        !cuda_ok(g, g->drv->primary_ctx_retain(&g->cu, g->dev),
                 "cuDevicePrimaryCtxRetain", err, err_size))
        goto fail;
    g->retained = true;
    if (!cuda_ok(g, g->drv->ctx_set_current(g->cu), "cuCtxSetCurrent", err,
                 err_size) ||
        !cuda_ok(g, g->drv->event_create(&g->start, CU_EVENT_DEFAULT),
                 "cuEventCreate", err, err_size) ||
        !cuda_ok(g, g->drv->event_create(&g->stop, CU_EVENT_DEFAULT),
                 "cuEventCreate", err, err_size))
        goto fail;
    if ((st = prism_autotune_context_like(ctx, ordinal, &g->ctx)) != PRISM_OK) {
        prism_errorf(err, err_size, st, "cannot create a context for GPU %d",
                     ordinal);
        goto fail;
    }
    *out = g;
    return PRISM_OK;
fail:
    tune_gpu_close(g);
    return st;
}

void tune_gpu_close(tune_gpu *g) {
    if (!g)
        return;
    if (g->retained) {
        g->drv->ctx_set_current(g->cu);
        free_bucket(g);
        if (g->start)
            g->drv->event_destroy(g->start);
        if (g->stop)
            g->drv->event_destroy(g->stop);
        g->drv->primary_ctx_release(g->dev);
    }
    prism_context_destroy(g->ctx);
    free(g);
}

bool tune_gpu_broken(const tune_gpu *g, char *why, size_t why_size) {
    if (g->broken && why)
        prism_strlcpy(why, g->broken_why, why_size);
    return g->broken;
}

static CUdeviceptr dev_alloc(tune_gpu *g, size_t bytes) {
    CUdeviceptr p = 0;
    if (g->n_allocs >= MAX_ALLOCS ||
        g->drv->mem_alloc(&p, bytes ? bytes : 1) != CUDA_SUCCESS)
        return 0;
    g->allocs[g->n_allocs++] = p;
    return p;
}

/* Uploads `elems` near-Gaussian values (sum of 4 uniforms) of the dtype to
 * each of dst[0..n), one host chunk at a time. */
static bool upload_gaussian(tune_gpu *g, const CUdeviceptr *dst, int n,
                            size_t elems, uint64_t seed, uint16_t *chunk) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
    for (size_t at = 0; at < elems; at += CHUNK_ELEMS) {
        size_t m = elems - at < CHUNK_ELEMS ? elems - at : CHUNK_ELEMS;
        prism_fill_gaussian16(chunk, m, g->dtype, &x);
        for (int c = 0; c < n; c++)
            if (g->drv->memcpy_htod(dst[c] + at * 2, chunk, m * 2) !=
                CUDA_SUCCESS)
                return false;
    }
    return true;
}

/* A random block-causal mask: sink, diagonal, and each other allowed
 * block with probability `density`; uploaded one head at a time. */
static bool upload_mask(tune_gpu *g, double density, uint64_t seed,
                        const prism_block_mask *m) {
    size_t row_ints = (size_t)g->nq * g->nk;
    int32_t *rows = calloc(row_ints, sizeof *rows);
    int32_t *counts = calloc((size_t)g->nq, sizeof *counts);
    bool ok = rows && counts;
    for (int h = 0; ok && h < g->q_heads; h++) {
        for (int i = 0; i < g->nq; i++) {
            int diag = i + (g->nk - g->nq), n = 0;
            int32_t *row = rows + (size_t)i * g->nk;
            for (int j = 0; j <= diag; j++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                double u = (double)(seed >> 11) / 9007199254740992.0;
                if (j == 0 || j == diag || u < density)
                    row[n++] = j;
            }
            counts[i] = n;
        }
        ok = g->drv->memcpy_htod((CUdeviceptr)(uintptr_t)m->counts +
                                     (size_t)h * g->nq * 4,
                                 counts, (size_t)g->nq * 4) == CUDA_SUCCESS &&
             g->drv->memcpy_htod((CUdeviceptr)(uintptr_t)m->indices +
                                     (size_t)h * row_ints * 4,
                                 rows, row_ints * 4) == CUDA_SUCCESS;
    }
    free(rows);
    free(counts);
    return ok;
}

static bool alloc_mask(tune_gpu *g, prism_block_mask *m) {
    size_t rows = (size_t)g->q_heads * g->nq;
    CUdeviceptr c = dev_alloc(g, rows * 4), i = dev_alloc(g, rows * g->nk * 4);
    *m = (prism_block_mask){(int32_t *)(uintptr_t)c, (int32_t *)(uintptr_t)i,
                            g->nq, g->nk};
    return c && i;
}

static prism_tensor tensor(CUdeviceptr p, int heads, int seq, int d) {
    return (prism_tensor){(void *)(uintptr_t)p, (int64_t)heads * seq * d,
                          (int64_t)seq * d, d};
}

prism_status tune_gpu_prepare(tune_gpu *g, const prism_config *cfg, int seq,
                              const double *dens, int n_dens, char *err,
                              size_t err_size) {
    if (n_dens < 0 || n_dens > PRISM_TUNE_MAX_SHAPES)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "%d densities; at most %d", n_dens,
                            PRISM_TUNE_MAX_SHAPES);
    if (g->seq == seq && g->head_dim == cfg->head_dim &&
        g->q_heads == cfg->q_heads && g->kv_heads == cfg->kv_heads &&
        g->block_size == cfg->block_size && g->dtype == cfg->dtype &&
        g->n_dens == n_dens &&
        !memcmp(g->dens, dens, sizeof(double) * (size_t)n_dens))
        return PRISM_OK;
    g->drv->ctx_set_current(g->cu);
    free_bucket(g);
    g->head_dim = cfg->head_dim;
    g->q_heads = cfg->q_heads;
    g->kv_heads = cfg->kv_heads;
    g->block_size = cfg->block_size;
    g->dtype = cfg->dtype;
    g->n_dens = n_dens;
    memcpy(g->dens, dens, sizeof(double) * (size_t)n_dens);
    g->nq = g->nk = (seq + cfg->block_size - 1) / cfg->block_size;
    size_t d = (size_t)cfg->head_dim;
    g->q_elems = (size_t)cfg->q_heads * seq * d;
    size_t k_elems = (size_t)cfg->kv_heads * seq * d;
    size_t per_copy = 2 * (g->q_elems + 2 * k_elems);
    g->copies = per_copy * MAX_COPIES <= COPIES_BYTES_MAX ? MAX_COPIES : 1;
    CUdeviceptr q[MAX_COPIES], k[MAX_COPIES], v[MAX_COPIES];
    bool ok = true;
    for (int c = 0; c < g->copies && ok; c++) {
        q[c] = dev_alloc(g, g->q_elems * 2);
        k[c] = dev_alloc(g, k_elems * 2);
        v[c] = dev_alloc(g, k_elems * 2);
        ok = q[c] && k[c] && v[c];
        g->q[c] = tensor(q[c], cfg->q_heads, seq, cfg->head_dim);
        g->k[c] = tensor(k[c], cfg->kv_heads, seq, cfg->head_dim);
        g->v[c] = tensor(v[c], cfg->kv_heads, seq, cfg->head_dim);
    }
    CUdeviceptr o = ok ? dev_alloc(g, g->q_elems * 2) : 0;
    g->o = tensor(o, cfg->q_heads, seq, cfg->head_dim);
    ok = ok && o && alloc_mask(g, &g->est) && alloc_mask(g, &g->est_ref);
    for (int i = 0; ok && i < n_dens; i++)
        ok = alloc_mask(g, &g->masks[i]) &&
             (g->ref_o[i] = dev_alloc(g, g->q_elems * 2)) != 0;
    if (!ok) {
        free_bucket(g);
        return prism_errorf(err, err_size, PRISM_ERR_CUDA,
                            "GPU %d: out of device memory for sequences of %d "
                            "tokens",
                            g->ordinal, seq);
    }
    uint16_t *chunk = malloc(CHUNK_ELEMS * sizeof *chunk);
    ok = chunk && upload_gaussian(g, q, g->copies, g->q_elems, 1, chunk) &&
         upload_gaussian(g, k, g->copies, k_elems, 2, chunk) &&
         upload_gaussian(g, v, g->copies, k_elems, 3, chunk);
    free(chunk);
    for (int i = 0; ok && i < n_dens; i++)
        ok = upload_mask(g, dens[i], 12345 + (uint64_t)i, &g->masks[i]);
    if (!ok) {
        free_bucket(g);
        return prism_errorf(err, err_size, PRISM_ERR_CUDA,
                            "GPU %d: cannot upload the inputs for %d tokens",
                            g->ordinal, seq);
    }
    g->seq = seq;
    return PRISM_OK;
}

/* ---- plans and launches -------------------------------------------------- */

/* A plan for cfg on this bucket, and a workspace large enough for it. */
static bool make_plan(tune_gpu *g, const prism_config *cfg, prism_plan **plan,
                      char *why, size_t why_size) {
    prism_plan_limits lim = {.max_batch = 1,
                             .max_seqlen_q = g->seq,
                             .max_seqlen_k = g->seq,
                             .caller_workspace = true};
    *plan = NULL;
    if (prism_plan_create(g->ctx, cfg, &lim, plan) != PRISM_OK) {
        snprintf(why, why_size, "plan: %s", prism_context_last_error(g->ctx));
        return false;
    }
    size_t need = prism_plan_workspace_size(*plan, NULL);
    if (need > g->ws_size) {
        if (g->ws)
            g->drv->mem_free(g->ws);
        g->ws = 0;
        g->ws_size = 0;
        if (!cuda_ok(g, g->drv->mem_alloc(&g->ws, need), "workspace", why,
                     why_size)) {
            prism_plan_destroy(*plan);
            *plan = NULL;
            return false;
        }
        g->ws_size = need;
    }
    return true;
}

static prism_status launch(tune_gpu *g, prism_plan *plan, tune_stage stage,
                           int shape, int copy, const prism_tensor *o,
                           const prism_block_mask *selection) {
    prism_batch b = {
        .dtype = g->dtype, .batch = 1, .seqlen_q = g->seq, .seqlen_k = g->seq};
    if (stage == TUNE_STAGE_ESTIMATE)
        return prism_estimate(plan, &b, &g->q[copy], &g->k[copy], selection,
                              (void *)(uintptr_t)g->ws, g->ws_size, NULL);
    return prism_sparse_attention(plan, &b, &g->q[copy], &g->k[copy],
                                  &g->v[copy], &g->masks[shape], o, NULL,
                                  (void *)(uintptr_t)g->ws, g->ws_size, NULL);
}

/* After a failure: a context that no longer synchronizes is broken for
 * good (sticky error), and this device takes no more candidates. */
static void check_health(tune_gpu *g) {
    CUresult rc = g->drv->ctx_synchronize();
    if (rc != CUDA_SUCCESS) {
        g->broken = true;
        prism_cuda_error(g->drv, rc, "the device after a failed launch",
                         g->broken_why, sizeof g->broken_why);
    }
}

/* Runs the stage once on copy 0 and waits for it. */
static bool run_once(tune_gpu *g, prism_plan *plan, tune_stage stage, int shape,
                     const prism_tensor *o, const prism_block_mask *selection,
                     char *why, size_t why_size) {
    if (launch(g, plan, stage, shape, 0, o, selection) != PRISM_OK) {
        snprintf(why, why_size, "launch: %s", prism_plan_last_error(plan));
        check_health(g);
        return false;
    }
    if (!cuda_ok(g, g->drv->ctx_synchronize(), "running the kernel", why,
                 why_size)) {
        check_health(g);
        return false;
    }
    return true;
}

/* The default candidate's outputs for this bucket, computed on first use. */
static bool ensure_reference(tune_gpu *g, tune_stage stage,
                             const prism_config *ref_cfg, char *why,
                             size_t why_size) {
    bool *have =
        stage == TUNE_STAGE_ESTIMATE ? &g->have_est_ref : &g->have_attn_ref;
    if (*have)
        return true;
    prism_plan *plan = NULL;
    if (!make_plan(g, ref_cfg, &plan, why, why_size))
        return false;
    bool ok = true;
    if (stage == TUNE_STAGE_ESTIMATE) {
        ok = run_once(g, plan, stage, 0, NULL, &g->est_ref, why, why_size);
    } else {
        for (int s = 0; ok && s < g->n_dens; s++) {
            prism_tensor o = g->o;
            o.data = (void *)(uintptr_t)g->ref_o[s];
            ok = run_once(g, plan, stage, s, &o, NULL, why, why_size);
        }
    }
    prism_plan_destroy(plan);
    *have = ok;
    return ok;
}

/* 0: same selection (up to near-ties), 1: differs, -1: CUDA error. */
static int compare_selection(tune_gpu *g, char *why, size_t why_size) {
    size_t row_ints = (size_t)g->nq * g->nk;
    int32_t *a = malloc(row_ints * 4), *b = malloc(row_ints * 4);
    int32_t *ca = malloc((size_t)g->nq * 4), *cb = malloc((size_t)g->nq * 4);
    long long differ = 0, total = 0;
    int result = -1;
    if (!a || !b || !ca || !cb) {
        snprintf(why, why_size, "out of host memory comparing selections");
        goto done;
    }
    for (int h = 0; h < g->q_heads; h++) {
        size_t co = (size_t)h * g->nq * 4, io = (size_t)h * row_ints * 4;
        if (!cuda_ok(g,
                     g->drv->memcpy_dtoh(
                         ca, (CUdeviceptr)(uintptr_t)g->est.counts + co,
                         (size_t)g->nq * 4),
                     "downloading a selection", why, why_size) ||
            !cuda_ok(g,
                     g->drv->memcpy_dtoh(
                         cb, (CUdeviceptr)(uintptr_t)g->est_ref.counts + co,
                         (size_t)g->nq * 4),
                     "downloading a selection", why, why_size) ||
            !cuda_ok(g,
                     g->drv->memcpy_dtoh(
                         a, (CUdeviceptr)(uintptr_t)g->est.indices + io,
                         row_ints * 4),
                     "downloading a selection", why, why_size) ||
            !cuda_ok(g,
                     g->drv->memcpy_dtoh(
                         b, (CUdeviceptr)(uintptr_t)g->est_ref.indices + io,
                         row_ints * 4),
                     "downloading a selection", why, why_size))
            goto done;
        for (int i = 0; i < g->nq; i++) {
            int na = ca[i], nb = cb[i];
            if (na < 0 || na > g->nk || nb < 0 || nb > g->nk) {
                snprintf(why, why_size,
                         "head %d row %d selects %d of %d "
                         "blocks (the default %d)",
                         h, i, na, g->nk, nb);
                result = 1;
                goto done;
            }
            const int32_t *ra = a + (size_t)i * g->nk,
                          *rb = b + (size_t)i * g->nk;
            int x = 0, y = 0; /* both rows ascending: merge */
            while (x < na || y < nb) {
                if (y >= nb || (x < na && ra[x] < rb[y]))
                    x++, differ++;
                else if (x >= na || rb[y] < ra[x])
                    y++, differ++;
                else
                    x++, y++;
            }
            total += nb;
        }
    }
    long long allowed = 1 + total / 100000;
    result = differ > allowed;
    if (result)
        snprintf(why, why_size,
                 "selection differs from the default's in %lld "
                 "of %lld block memberships (at most %lld allowed)",
                 differ, total, allowed);
done:
    free(a);
    free(b);
    free(ca);
    free(cb);
    return result;
}

static float to_f32(const tune_gpu *g, uint16_t h) {
    return g->dtype == PRISM_DTYPE_BF16 ? prism_bf16_to_f32(h)
                                        : prism_fp16_to_f32(h);
}

/* 0: within tolerance, 1: differs, -1: CUDA error. */
static int compare_output(tune_gpu *g, CUdeviceptr ref, char *why,
                          size_t why_size) {
    uint16_t *a = malloc(CHUNK_ELEMS * 2), *b = malloc(CHUNK_ELEMS * 2);
    double diff2 = 0, ref2 = 0;
    int result = -1;
    if (!a || !b) {
        snprintf(why, why_size, "out of host memory comparing outputs");
        goto done;
    }
    CUdeviceptr out = (CUdeviceptr)(uintptr_t)g->o.data;
    for (size_t at = 0; at < g->q_elems; at += CHUNK_ELEMS) {
        size_t m =
            g->q_elems - at < CHUNK_ELEMS ? g->q_elems - at : CHUNK_ELEMS;
        if (!cuda_ok(g, g->drv->memcpy_dtoh(a, out + at * 2, m * 2),
                     "downloading an output", why, why_size) ||
            !cuda_ok(g, g->drv->memcpy_dtoh(b, ref + at * 2, m * 2),
                     "downloading an output", why, why_size))
            goto done;
        for (size_t i = 0; i < m; i++) {
            double x = to_f32(g, a[i]), y = to_f32(g, b[i]);
            if (!isfinite(x)) {
                snprintf(why, why_size,
                         "output element %zu is not finite "
                         "(unwritten or overflowed)",
                         at + i);
                result = 1;
                goto done;
            }
            diff2 += (x - y) * (x - y);
            ref2 += y * y;
        }
    }
    double rel = sqrt(diff2 / (ref2 > 1e-30 ? ref2 : 1e-30));
    result = !(rel <= ATTN_TOLERANCE);
    if (result)
        snprintf(why, why_size,
                 "output differs from the default's by %.3g "
                 "relative L2 (at most %g allowed)",
                 rel, ATTN_TOLERANCE);
done:
    free(a);
    free(b);
    return result;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Warm-up, then reps launches timed with CUDA events. */
static bool time_shape(tune_gpu *g, prism_plan *plan, tune_stage stage,
                       int shape, prism_tune_timing *t, char *why,
                       size_t why_size) {
    double ms[MAX_REPS];
    int reps = MIN_REPS;
    for (int r = -WARMUP; r < reps; r++) {
        int copy = (r + WARMUP) % g->copies;
        float elapsed = 0;
        g->drv->event_record(g->start, NULL);
        prism_status st = launch(g, plan, stage, shape, copy, &g->o, &g->est);
        g->drv->event_record(g->stop, NULL);
        prism_status timed = prism_event_elapsed(g->drv, g->start, g->stop,
                                                 "timing", &elapsed, why,
                                                 why_size);
        if (st != PRISM_OK || timed != PRISM_OK) {
            if (st != PRISM_OK)
                snprintf(why, why_size, "launch: %s",
                         prism_plan_last_error(plan));
            check_health(g);
            return false;
        }
        if (r == -1) { /* the last warm-up sizes the run */
            double want = ceil(TARGET_MS / (elapsed > 1e-3 ? elapsed : 1e-3));
            reps = want < MIN_REPS   ? MIN_REPS
                   : want > MAX_REPS ? MAX_REPS
                                     : (int)want;
        }
        if (r >= 0)
            ms[r] = elapsed;
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
    t->density = stage == TUNE_STAGE_ESTIMATE ? -1 : g->dens[shape];
    t->median_ms =
        reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
    t->min_ms = ms[0];
    t->max_ms = ms[reps - 1];
    t->reps = reps;
    return true;
}

static void set_result(prism_tune_candidate *c, prism_tune_status s,
                       const char *why) {
    c->status = s;
    prism_strlcpy(c->reason, why ? why : "", sizeof c->reason);
}

void tune_gpu_measure(tune_gpu *g, tune_stage stage,
                      const prism_config *ref_cfg, const prism_config *cand_cfg,
                      prism_tune_candidate *c) {
    char why[PRISM_ERRMSG_MAX], reason[PRISM_ERRMSG_MAX + 64];
    prism_plan *plan = NULL;
    c->n_timings = 0;
    c->median_ms = c->min_ms = c->max_ms = 0;
    if (g->broken || g->seq <= 0 || stage == TUNE_STAGE_NONE) {
        set_result(c, PRISM_TUNE_FAILED,
                   g->broken ? g->broken_why : "no timing harness");
        return;
    }
    g->drv->ctx_set_current(g->cu);
    if (!ensure_reference(g, stage, ref_cfg, why, sizeof why)) {
        snprintf(reason, sizeof reason, "the default candidate failed: %s",
                 why);
        set_result(c, PRISM_TUNE_FAILED, reason);
        return;
    }
    if (!make_plan(g, cand_cfg, &plan, why, sizeof why)) {
        set_result(c, PRISM_TUNE_FAILED, why);
        return;
    }
    int shapes = stage == TUNE_STAGE_ESTIMATE ? 1 : g->n_dens;
    for (int s = 0; s < shapes; s++) {
        CUresult rc =
            stage == TUNE_STAGE_ESTIMATE
                ? g->drv->memset_d8_async(
                      (CUdeviceptr)(uintptr_t)g->est.indices, 0xff,
                      (size_t)g->q_heads * g->nq * g->nk * 4, NULL)
                : g->drv->memset_d8_async((CUdeviceptr)(uintptr_t)g->o.data,
                                          0xff, g->q_elems * 2, NULL);
        if (rc == CUDA_SUCCESS && stage == TUNE_STAGE_ESTIMATE)
            rc = g->drv->memset_d8_async((CUdeviceptr)(uintptr_t)g->est.counts,
                                         0xff, (size_t)g->q_heads * g->nq * 4,
                                         NULL);
        if (!cuda_ok(g, rc, "poisoning the output", why, sizeof why) ||
            !run_once(g, plan, stage, s, &g->o, &g->est, why, sizeof why)) {
            set_result(c, PRISM_TUNE_FAILED, why);
            goto done;
        }
        int cmp = stage == TUNE_STAGE_ESTIMATE
                      ? compare_selection(g, why, sizeof why)
                      : compare_output(g, g->ref_o[s], why, sizeof why);
        if (cmp) {
            set_result(c, cmp > 0 ? PRISM_TUNE_MISMATCH : PRISM_TUNE_FAILED,
                       why);
            goto done;
        }
    }
    for (int s = 0; s < shapes; s++) {
        prism_tune_timing *t = &c->timings[c->n_timings];
        if (!time_shape(g, plan, stage, s, t, why, sizeof why)) {
            c->n_timings = 0;
            c->median_ms = c->min_ms = c->max_ms = 0;
            set_result(c, PRISM_TUNE_FAILED, why);
            goto done;
        }
        c->n_timings++;
        c->median_ms += t->median_ms;
        c->min_ms += t->min_ms;
        c->max_ms += t->max_ms;
    }
    set_result(c, PRISM_TUNE_OK, NULL);
done:
    prism_plan_destroy(plan);
}
