/*
 * run_gpu.c - `prism run --device gpu`: the same pipeline through a plan.
 *
 * The inputs are the run's rounded host tensors, uploaded once; the plan
 * runs the generated kernels (estimation, then attention over the GPU's own
 * selection), and both results come back to the host so that `prism run`
 * scores them with the reference metrics next to the CPU methods.
 */
#include "tools/prism/run_gpu.h"

#include "tools/common/cli.h"
#include "base/cuda_driver.h"
#include "runtime/cuda/cuda_backend.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

typedef struct gpu_buffers {
    const prism_driver *drv;
    CUdeviceptr q, k, v, o, counts, indices;
} gpu_buffers;

static void buffers_free(gpu_buffers *g) {
    if (!g->drv)
        return;
    CUdeviceptr all[] = {g->q, g->k, g->v, g->o, g->counts, g->indices};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            g->drv->mem_free(all[i]);
}

static bool upload(gpu_buffers *g, CUdeviceptr *dst, const void *src,
                   size_t bytes) {
    return g->drv->mem_alloc(dst, bytes) == CUDA_SUCCESS &&
           (!src || g->drv->memcpy_htod(*dst, src, bytes) == CUDA_SUCCESS);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median event time of `reps` runs of one stage (after one warm-up). */
static bool time_median(const prism_driver *drv, prism_plan *plan, bool attend,
                        const prism_batch *b, const prism_tensor *t,
                        const prism_block_mask *m, int reps, double *median,
                        char *err, size_t err_size) {
    CUevent e0, e1;
    double ms[64];
    if (reps > 64)
        reps = 64;
    drv->event_create(&e0, CU_EVENT_DEFAULT);
    drv->event_create(&e1, CU_EVENT_DEFAULT);
    bool ok = true;
    for (int r = -1; ok && r < reps; r++) {
        drv->event_record(e0, NULL);
        ok = (attend ? prism_sparse_attention(plan, b, &t[0], &t[1], &t[2], m,
                                              &t[3], NULL, NULL, 0, NULL)
                     : prism_estimate(plan, b, &t[0], &t[1], m, NULL, 0,
                                      NULL)) == PRISM_OK;
        drv->event_record(e1, NULL);
        float f = 0;
        ok = ok && prism_event_elapsed(drv, e0, e1,
                                       attend ? "attention" : "estimate", &f,
                                       err, err_size) == PRISM_OK;
        if (r >= 0)
            ms[r] = f;
    }
    drv->event_destroy(e0);
    drv->event_destroy(e1);
    if (ok) {
        qsort(ms, (size_t)reps, sizeof ms[0], cmp_double);
        *median = ms[reps / 2];
    }
    return ok;
}

static int download_results(gpu_buffers *g, const prism_config *cfg, int B,
                            int64_t Sq, int64_t Sk, gpu_run_result *out) {
    char err[PRISM_ERRMSG_MAX];
    if (prism_selection_alloc_for(&out->sel, B, cfg->q_heads, Sq, Sk, NULL,
                                  cfg->block_size, err, sizeof err) != PRISM_OK)
        return cli_fail("%s", err);
    size_t rows = (size_t)B * cfg->q_heads * out->sel.nq;
    size_t n_out = (size_t)B * cfg->q_heads * Sq * cfg->head_dim;
    void *o_half = malloc(n_out * 2);
    out->out = malloc(n_out * sizeof(float));
    bool ok = o_half && out->out &&
              g->drv->ctx_synchronize() == CUDA_SUCCESS &&
              g->drv->memcpy_dtoh(out->sel.counts, g->counts,
                                  rows * sizeof(int32_t)) == CUDA_SUCCESS &&
              g->drv->memcpy_dtoh(out->sel.indices, g->indices,
                                  rows * out->sel.nk * sizeof(int32_t)) ==
                  CUDA_SUCCESS &&
              g->drv->memcpy_dtoh(o_half, g->o, n_out * 2) == CUDA_SUCCESS;
    if (ok) {
        prism_tensor_view from = prism_view_bhsd(o_half, cfg->dtype, B,
                                                 cfg->q_heads, Sq, cfg->head_dim);
        prism_tensor_view to = prism_view_bhsd(out->out, PRISM_DTYPE_FP32, B,
                                               cfg->q_heads, Sq, cfg->head_dim);
        ok = prism_view_copy(&to, &from, err, sizeof err) == PRISM_OK;
    }
    free(o_half);
    return ok ? CLI_OK : cli_fail("reading the GPU results back failed");
}

int run_gpu(const prism_config *cfg, int B, int64_t Sq, int64_t Sk,
            const void *q, const void *k, const void *v, int reps,
            gpu_run_result *out) {
    char err[PRISM_ERRMSG_MAX];
    int rc = CLI_FAIL;
    gpu_buffers g = {0};
    memset(out, 0, sizeof *out);
    prism_context *ctx = cli_context();
    prism_plan *plan = NULL;
    if (!ctx)
        return CLI_FAIL;
    prism_plan_limits lim = {B, (int)Sq, (int)Sk, false, false};
    if (prism_plan_create(ctx, cfg, &lim, &plan) != PRISM_OK) {
        cli_fail("%s", prism_context_last_error(ctx));
        goto done;
    }
    if (prism_driver_get(&g.drv, err, sizeof err) != PRISM_OK) {
        cli_fail("%s", err);
        goto done;
    }
    int64_t D = cfg->head_dim, Hq = cfg->q_heads, Hkv = cfg->kv_heads;
    int nq = (int)((Sq + cfg->block_size - 1) / cfg->block_size);
    int nk = (int)((Sk + cfg->block_size - 1) / cfg->block_size);
    size_t qb = (size_t)(B * Hq * Sq * D) * 2, kb = (size_t)(B * Hkv * Sk * D) * 2;
    size_t rows = (size_t)B * Hq * nq;
    if (!upload(&g, &g.q, q, qb) || !upload(&g, &g.k, k, kb) ||
        !upload(&g, &g.v, v, kb) || !upload(&g, &g.o, NULL, qb) ||
        !upload(&g, &g.counts, NULL, rows * 4) ||
        !upload(&g, &g.indices, NULL, rows * nk * 4)) {
        cli_fail("out of GPU memory uploading the workload");
        goto done;
    }
    prism_tensor t[4] = {
        {(void *)(uintptr_t)g.q, Hq * Sq * D, Sq * D, D},
        {(void *)(uintptr_t)g.k, Hkv * Sk * D, Sk * D, D},
        {(void *)(uintptr_t)g.v, Hkv * Sk * D, Sk * D, D},
        {(void *)(uintptr_t)g.o, Hq * Sq * D, Sq * D, D}};
    prism_batch batch = {.dtype = cfg->dtype, .batch = B, .seqlen_q = (int)Sq,
                         .seqlen_k = (int)Sk};
    char cuda_err[PRISM_ERRMSG_MAX] = "";
    prism_block_mask mask = {(int32_t *)(uintptr_t)g.counts,
                             (int32_t *)(uintptr_t)g.indices, nq, nk};
    if (!time_median(g.drv, plan, false, &batch, t, &mask, reps,
                     &out->estimate_ms, cuda_err, sizeof cuda_err) ||
        prism_plan_density(plan, &out->density) != PRISM_OK ||
        !time_median(g.drv, plan, true, &batch, t, &mask, reps,
                     &out->attention_ms, cuda_err, sizeof cuda_err)) {
        cli_fail("GPU run failed: %s",
                 cuda_err[0] ? cuda_err : prism_plan_last_error(plan));
        goto done;
    }
    g.drv->device_get_name(out->device, sizeof out->device,
                           prism_cuda_plan_device(plan));
    rc = download_results(&g, cfg, B, Sq, Sk, out);
done:
    buffers_free(&g);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    return rc;
}

void gpu_run_result_free(gpu_run_result *r) {
    prism_selection_free(&r->sel);
    free(r->out);
    memset(r, 0, sizeof *r);
}
