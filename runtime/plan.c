/*
 * plan.c - creating a plan: device, kernels, workspace.
 *
 * All the expensive and fallible work happens here, once: finding the
 * driver and the device, mapping its compute capability to the arch we
 * generate for, getting cubins through the cache (compiling on a miss),
 * loading them, and allocating the workspace for the caller's limits.
 * Each kernel is loaded into the slot of its role in the kernel table, by
 * the entry points of its spec and with the spec's launch shape
 * (gen/launch.c): nothing is named here and nothing is read back from a
 * cubin.  The launch path (launch.c) then only validates arguments and
 * launches.
 */
#include "runtime/plan.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/plan_tuning.h"
#include "gen/spec.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

prism_status prism_plan_fail(prism_plan *plan, prism_status status,
                             const char *fmt, ...) {
    char msg[PRISM_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (plan) {
        prism_strlcpy(plan->last_error, msg, sizeof plan->last_error);
        prism_context_fail(plan->ctx, status, msg);
    }
    return status;
}

/* 256-byte aligned bump allocation inside the workspace. */
static size_t take(size_t *cursor, size_t bytes) {
    size_t at = (*cursor + 255) & ~(size_t)255;
    *cursor = at + bytes;
    return at;
}

void prism_plan_workspace_layout(const prism_plan *plan, int batch,
                                 int seqlen_q, int seqlen_k,
                                 plan_workspace *ws) {
    const prism_config *c = &plan->cfg;
    size_t b = (size_t)batch, d = (size_t)c->head_dim;
    size_t nq = (size_t)prism_ceil_div(seqlen_q, c->block_size);
    size_t nk = (size_t)prism_ceil_div(seqlen_k, c->block_size);
    size_t hq = (size_t)c->q_heads, hkv = (size_t)c->kv_heads;
    size_t cursor = 0;
    memset(ws, 0, sizeof *ws);
    ws->pooled_q = take(&cursor, b * hq * nq * d * sizeof(float));
    ws->pooled_k = take(&cursor, b * hkv * nk * d * sizeof(float));
    /* stats_q, stats_k and totals are contiguous: one memset clears them */
    ws->stats_q = take(&cursor, b * hq * 3 * sizeof(float));
    ws->stats_k = ws->stats_q + b * hq * 3 * sizeof(float);
    ws->totals = (ws->stats_k + b * hkv * 3 * sizeof(float) + 7) & ~(size_t)7;
    cursor = ws->totals + 2 * sizeof(unsigned long long);
    ws->stats_bytes = cursor - ws->stats_q;
    ws->scales = take(&cursor, b * hq * 2 * sizeof(float));
    ws->counts = take(&cursor, b * hq * nq * sizeof(int32_t));
    ws->indices = take(&cursor, b * hq * nq * nk * sizeof(int32_t));
    /* The persistent attention kernel (gen/templates/attention_sm90.cu): its
     * work queue (a ticket counter and the entry count, padded to 16
     * bytes, then 4-int entries {item, split, block count, first key}:
     * one per query tile of >= 64 rows, plus the extra pieces of
     * split rows), and for split rows two partial slots per SM, each with
     * O (128 rows x head_dim fp32) and m, l (4 x 128 floats per
     * warpgroup), plus an arrival counter per slot and warpgroup.  About
     * 17 MB at head_dim 128 on an H100; nothing for the other kernels. */
    const plan_kernel *at = &plan->kernels[PRISM_KERNEL_ATTENTION];
    size_t slots = at->shape.grid == PRISM_GRID_PERSISTENT
                       ? 2 * (size_t)plan->sm_count
                       : 0;
    size_t tiles = (size_t)prism_ceil_div(seqlen_q, 64);
    ws->split_slots = (int)slots;
    ws->schedule = take(&cursor, (4 + 4 * (b * hq * tiles + slots)) * sizeof(int32_t));
    ws->split_arrived = take(&cursor, 2 * slots * sizeof(int32_t));
    ws->partial_o = take(&cursor, slots * 128 * d * sizeof(float));
    ws->partial_ml = take(&cursor, slots * 2 * 512 * sizeof(float));
    ws->total = (cursor + 255) & ~(size_t)255;
}

/* The arch we generate for a compute capability, or false. */
static bool arch_for_device(int major, int minor, prism_arch *arch) {
    if (major == 8 && minor == 0)
        *arch = PRISM_ARCH_SM80;
    else if (major == 8 && minor == 6)
        *arch = PRISM_ARCH_SM86;
    else if (major == 8 && minor == 9)
        *arch = PRISM_ARCH_SM89;
    else if (major == 9 && minor == 0)
        *arch = PRISM_ARCH_SM90A;
    else
        return false;
    return true;
}

static prism_status open_device(prism_plan *p) {
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_driver_get(&p->drv, err, sizeof err);
    if (st != PRISM_OK)
        return prism_plan_fail(p, st, "%s", err);
    const prism_driver *drv = p->drv;
    int count = 0;
    CUresult rc = drv->device_get_count(&count);
    int ordinal = p->ctx->options.device_ordinal;
    if (rc != CUDA_SUCCESS || count == 0)
        return prism_plan_fail(p, PRISM_ERR_NO_DEVICE, "no CUDA device");
    if (ordinal < 0 || ordinal >= count)
        return prism_plan_fail(p, PRISM_ERR_NO_DEVICE,
                               "device ordinal %d out of range: this machine "
                               "has %d CUDA device(s)", ordinal, count);
    if ((rc = drv->device_get(&p->device, ordinal)) != CUDA_SUCCESS ||
        (rc = drv->primary_ctx_retain(&p->cu_ctx, p->device)) != CUDA_SUCCESS) {
        prism_cuda_error(drv, rc, "opening the device", err, sizeof err);
        return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
    }
    if ((rc = drv->ctx_set_current(p->cu_ctx)) != CUDA_SUCCESS) {
        prism_cuda_error(drv, rc, "cuCtxSetCurrent", err, sizeof err);
        return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
    }
    int major = 0, minor = 0;
    drv->device_get_attribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                              p->device);
    drv->device_get_attribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                              p->device);
    if (drv->device_get_attribute(&p->sm_count,
                                  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                  p->device) != CUDA_SUCCESS ||
        p->sm_count < 1)
        p->sm_count = 1;
    if (!arch_for_device(major, minor, &p->arch))
        return prism_plan_fail(p, PRISM_ERR_NO_KERNEL,
                               "compute capability %d.%d has no Prism kernels; "
                               "supported: 8.0, 8.6, 8.9, 9.0", major, minor);
    return PRISM_OK;
}

/* Loads kernel `index` of the module into the slot of its role. */
static prism_status load_kernel(prism_plan *p, int index) {
    char err[PRISM_ERRMSG_MAX];
    prism_kernel_spec spec;
    if (prism_spec_build(&p->cfg, index, p->arch, &spec, err, sizeof err) !=
        PRISM_OK)
        return prism_plan_fail(p, PRISM_ERR_GENERATE, "%s", err);
    prism_kernel_info info;
    prism_module_kernel_info(p->module, index, &info);
    plan_kernel *k = &p->kernels[spec.def->role];
    const prism_driver *drv = p->drv;
    k->shape = spec.launch;
    k->main_name = spec.entry_points[0];
    k->second_name = spec.entry_points[1];
    CUresult rc = drv->module_load_data(&k->module, info.cubin);
    if (rc == CUDA_SUCCESS)
        rc = drv->module_get_function(&k->main, k->module, k->main_name);
    if (rc == CUDA_SUCCESS && k->second_name)
        rc = drv->module_get_function(&k->second, k->module, k->second_name);
    if (rc != CUDA_SUCCESS) {
        prism_cuda_error(drv, rc, spec.def->name, err, sizeof err);
        return prism_plan_fail(p, PRISM_ERR_CUDA, "loading kernel %s", err);
    }
    if (k->shape.dynamic_smem > 0) {
        rc = drv->func_set_attribute(
            k->main, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            k->shape.dynamic_smem);
        if (rc != CUDA_SUCCESS) {
            prism_cuda_error(drv, rc, "kernel shared memory", err, sizeof err);
            return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
        }
        k->dynamic_smem = k->shape.dynamic_smem;
    }
    return PRISM_OK;
}

static prism_status check_limits(prism_plan *p, const prism_plan_limits *l) {
    if (l->max_batch < 1 || l->max_seqlen_q < 1 || l->max_seqlen_k < 1)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "plan limits must be positive (max_batch %d, "
                               "max_seqlen_q %d, max_seqlen_k %d)",
                               l->max_batch, l->max_seqlen_q, l->max_seqlen_k);
    if (l->max_seqlen_k < l->max_seqlen_q)
        return prism_plan_fail(p, PRISM_ERR_BAD_SHAPE,
                               "max_seqlen_k %d < max_seqlen_q %d: queries are "
                               "the last tokens of the keys, so Sk >= Sq",
                               l->max_seqlen_k, l->max_seqlen_q);
    return PRISM_OK;
}

prism_status prism_plan_create(prism_context *ctx, const prism_config *cfg,
                               const prism_plan_limits *limits,
                               prism_plan **out) {
    if (!ctx || !cfg || !limits || !out)
        return prism_context_fail(ctx, PRISM_ERR_NULL_POINTER,
                                  "prism_plan_create: NULL argument");
    *out = NULL;
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_config_validate(cfg, err, sizeof err);
    if (st != PRISM_OK)
        return prism_context_fail(ctx, st, err);
    prism_plan *p = calloc(1, sizeof *p);
    if (!p)
        return prism_context_fail(ctx, PRISM_ERR_OUT_OF_MEMORY,
                                  "out of memory creating a plan");
    p->ctx = ctx;
    p->cfg = *cfg;
    p->limits = *limits;
    if (ctx->options.device == PRISM_DEVICE_CPU) { /* cpu_plan.c */
        if ((st = check_limits(p, limits)) != PRISM_OK ||
            (st = prism_cpu_plan_create(p)) != PRISM_OK)
            goto fail;
        *out = p;
        return PRISM_OK;
    }
    if (ctx->options.device != PRISM_DEVICE_CUDA) {
        st = prism_plan_fail(p, PRISM_ERR_INVALID_ARGUMENT,
                             "unknown device kind %d in the context options",
                             (int)ctx->options.device);
        goto fail;
    }
    if ((st = check_limits(p, limits)) != PRISM_OK ||
        (st = open_device(p)) != PRISM_OK)
        goto fail;
    /* the tuning database's best kernels for this device and length
     * (runtime/plan_tuning.c); p->cfg becomes the config they were
     * built from, whose constants the launches must use */
    if ((st = prism_plan_tuning_module(ctx, p->drv, p->device, p->arch, cfg,
                                       limits->max_seqlen_k, &p->cfg,
                                       &p->module)) != PRISM_OK) {
        prism_strlcpy(p->last_error, prism_context_last_error(ctx),
                      sizeof p->last_error);
        goto fail;
    }
    for (int k = 0; k < prism_module_kernel_count(p->module); k++)
        if ((st = load_kernel(p, k)) != PRISM_OK)
            goto fail;
    if (!limits->caller_workspace) {
        plan_workspace ws;
        prism_plan_workspace_layout(p, limits->max_batch, limits->max_seqlen_q,
                                    limits->max_seqlen_k, &ws);
        CUresult rc = p->drv->mem_alloc(&p->workspace, ws.total);
        if (rc != CUDA_SUCCESS) {
            prism_cuda_error(p->drv, rc, "allocating the plan workspace", err,
                             sizeof err);
            st = prism_plan_fail(p, PRISM_ERR_CUDA, "%s (%zu bytes)", err,
                                 ws.total);
            goto fail;
        }
        p->workspace_size = ws.total;
    }
    *out = p;
    return PRISM_OK;

fail:
    prism_plan_destroy(p);
    return st;
}

prism_status prism_plan_create_from_file(prism_context *ctx, const char *path,
                                         const prism_plan_limits *limits,
                                         prism_plan **out) {
    if (!ctx || !path || !out)
        return prism_context_fail(ctx, PRISM_ERR_NULL_POINTER,
                                  "prism_plan_create_from_file: NULL argument");
    prism_config cfg;
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_config_load_file(path, &cfg, err, sizeof err);
    if (st != PRISM_OK)
        return prism_context_fail(ctx, st, err);
    return prism_plan_create(ctx, &cfg, limits, out);
}

void prism_plan_destroy(prism_plan *p) {
    if (!p)
        return;
    if (p->drv) {
        if (p->cu_ctx)
            p->drv->ctx_set_current(p->cu_ctx);
        if (p->workspace)
            p->drv->mem_free(p->workspace);
        for (int k = 0; k < PRISM_KERNEL_COUNT; k++)
            if (p->kernels[k].module)
                p->drv->module_unload(p->kernels[k].module);
        if (p->cu_ctx)
            p->drv->primary_ctx_release(p->device);
    }
    prism_module_destroy(p->module);
    prism_cpu_plan_destroy(p->cpu);
    free(p);
}

size_t prism_plan_workspace_size(const prism_plan *p, const prism_batch *b) {
    if (!p)
        return 0;
    if (p->cpu)
        return prism_cpu_workspace_size(p, b);
    plan_workspace ws;
    if (b)
        prism_plan_workspace_layout(p, b->batch, b->seqlen_q, b->seqlen_k, &ws);
    else
        prism_plan_workspace_layout(p, p->limits.max_batch,
                                    p->limits.max_seqlen_q,
                                    p->limits.max_seqlen_k, &ws);
    return ws.total;
}

prism_arch prism_plan_arch(const prism_plan *p) {
    return p ? p->arch : PRISM_ARCH_COUNT_;
}

const prism_config *prism_plan_config(const prism_plan *p) {
    return p ? &p->cfg : NULL;
}

const char *prism_plan_last_error(const prism_plan *p) {
    return p ? p->last_error : "no plan (NULL)";
}
