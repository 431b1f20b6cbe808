/*
 * cuda_plan.c - the CUDA backend: creating a plan's device state.
 *
 * All the expensive and fallible work happens here, once: finding the
 * driver and the device, mapping its compute capability to the arch we
 * generate for, getting cubins through the cache (compiling on a miss),
 * loading them.  Each kernel is found by its role in the kernel table and
 * loaded by the entry points of the spec it was generated from, with that
 * spec's launch shape (gen/launch.c): nothing is named here and nothing is
 * read back from a cubin.  The launch path (launch.c) then only launches.
 */
#include "runtime/cuda/cuda_backend.h"
#include "runtime/module.h"
#include "runtime/plan_tuning.h"
#include "base/checked.h"

#include <stdlib.h>
#include <string.h>

static prism_status cuda_fail(prism_plan *p, CUresult rc, const char *what) {
    char err[PRISM_ERRMSG_MAX];
    prism_cuda_error(cuda_of(p)->drv, rc, what, err, sizeof err);
    return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
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

/* The device's limits the launches depend on. */
static prism_status read_limits(prism_plan *p) {
    cuda_plan *g = cuda_of(p);
    const prism_driver *drv = g->drv;
    int major = 0, minor = 0;
    drv->device_get_attribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                              g->device);
    drv->device_get_attribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                              g->device);
    if (drv->device_get_attribute(&g->sm_count,
                                  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                  g->device) != CUDA_SUCCESS ||
        g->sm_count < 1)
        g->sm_count = 1;
    if (!arch_for_device(major, minor, &p->arch))
        return prism_plan_fail(p, PRISM_ERR_NO_KERNEL,
                               "compute capability %d.%d has no Prism kernels; "
                               "supported: 8.0, 8.6, 8.9, 9.0", major, minor);
    CUresult rc = drv->device_get_attribute(
        &g->smem_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        g->device);
    if (rc == CUDA_SUCCESS)
        rc = drv->device_get_attribute(
            &g->smem_per_sm,
            CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR, g->device);
    return rc == CUDA_SUCCESS ? PRISM_OK
                              : cuda_fail(p, rc, "reading the shared memory "
                                                 "limits");
}

static prism_status open_device(prism_plan *p) {
    cuda_plan *g = cuda_of(p);
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_driver_get(&g->drv, err, sizeof err);
    if (st != PRISM_OK)
        return prism_plan_fail(p, st, "%s", err);
    const prism_driver *drv = g->drv;
    int count = 0;
    CUresult rc = drv->device_get_count(&count);
    int ordinal = p->ctx->options.device_ordinal;
    if (rc != CUDA_SUCCESS || count == 0)
        return prism_plan_fail(p, PRISM_ERR_NO_DEVICE, "no CUDA device");
    if (ordinal < 0 || ordinal >= count)
        return prism_plan_fail(p, PRISM_ERR_NO_DEVICE,
                               "device ordinal %d out of range: this machine "
                               "has %d CUDA device(s)", ordinal, count);
    if ((rc = drv->device_get(&g->device, ordinal)) != CUDA_SUCCESS ||
        (rc = drv->primary_ctx_retain(&g->cu_ctx, g->device)) != CUDA_SUCCESS)
        return cuda_fail(p, rc, "opening the device");
    if ((rc = drv->ctx_set_current(g->cu_ctx)) != CUDA_SUCCESS)
        return cuda_fail(p, rc, "cuCtxSetCurrent");
    return read_limits(p);
}

/* Loads kernel `index` of the module into its role's slot. */
static prism_status load_kernel(prism_plan *p, int index) {
    cuda_plan *g = cuda_of(p);
    const prism_kernel_spec *spec = prism_module_kernel_spec(g->module, index);
    cuda_kernel *k = &g->kernels[spec->def->role];
    const prism_driver *drv = g->drv;
    prism_kernel_info info;
    prism_module_kernel_info(g->module, index, &info);
    k->shape = spec->launch;
    k->main_name = spec->entry_points[0];
    k->second_name = spec->entry_points[1];
    k->paged_name = spec->entry_points[2];
    CUresult rc = drv->module_load_data(&k->module, info.cubin);
    if (rc == CUDA_SUCCESS)
        rc = drv->module_get_function(&k->main, k->module, k->main_name);
    if (rc == CUDA_SUCCESS && k->second_name)
        rc = drv->module_get_function(&k->second, k->module, k->second_name);
    if (rc == CUDA_SUCCESS && k->paged_name)
        rc = drv->module_get_function(&k->paged, k->module, k->paged_name);
    if (rc == CUDA_SUCCESS)
        rc = drv->func_get_attribute(&k->static_smem,
                                     CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
                                     k->main);
    if (rc != CUDA_SUCCESS) {
        char what[128];
        snprintf(what, sizeof what, "loading kernel %s", spec->def->name);
        return cuda_fail(p, rc, what);
    }
    if (k->shape.dynamic_smem > 0) {
        rc = drv->func_set_attribute(
            k->main, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            k->shape.dynamic_smem);
        if (rc == CUDA_SUCCESS && k->paged)
            rc = drv->func_set_attribute(
                k->paged, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                k->shape.dynamic_smem);
        if (rc != CUDA_SUCCESS)
            return cuda_fail(p, rc, "setting the shared memory of a kernel");
        k->smem_limit = k->shape.dynamic_smem;
    }
    return PRISM_OK;
}

static prism_status load_kernels(prism_plan *p) {
    cuda_plan *g = cuda_of(p);
    for (int i = 0; i < prism_module_kernel_count(g->module); i++) {
        prism_status st = load_kernel(p, i);
        if (st != PRISM_OK)
            return st;
    }
    for (int r = 0; r < PRISM_KERNEL_COUNT; r++)
        if (!g->kernels[r].main)
            return prism_plan_fail(p, PRISM_ERR_NO_KERNEL,
                                   "this build has no kernel for pipeline "
                                   "step %d",
                                   r);
    return PRISM_OK;
}

static prism_status cuda_create(prism_plan *p) {
    cuda_plan *g = calloc(1, sizeof *g);
    if (!g)
        return prism_plan_fail(p, PRISM_ERR_OUT_OF_MEMORY,
                               "out of memory creating a plan");
    p->impl = g;
    prism_status st = open_device(p);
    if (st != PRISM_OK)
        return st;
    /* the tuning database's best kernels for this device and length
     * (runtime/plan_tuning.c); p->cfg becomes the config they were built
     * from, whose constants the launches must use */
    prism_config asked = p->cfg;
    if ((st = prism_plan_tuning_module(p->ctx, g->drv, g->device, p->arch,
                                       &asked, p->limits.max_seqlen_k, &p->cfg,
                                       &g->module)) != PRISM_OK) {
        prism_strlcpy(p->last_error, prism_context_last_error(p->ctx),
                      sizeof p->last_error);
        return st;
    }
    return load_kernels(p);
}

static void cuda_destroy(prism_plan *p) {
    cuda_plan *g = cuda_of(p);
    if (!g)
        return;
    if (g->drv) {
        if (g->cu_ctx)
            g->drv->ctx_set_current(g->cu_ctx);
        for (int k = 0; k < PRISM_KERNEL_COUNT; k++)
            if (g->kernels[k].module)
                g->drv->module_unload(g->kernels[k].module);
        if (g->cu_ctx)
            g->drv->primary_ctx_release(g->device);
    }
    prism_module_destroy(g->module);
    free(g);
    p->impl = NULL;
}

/* The persistent attention kernel (gen/templates/attention_sm90.cu): its
 * work queue (a ticket counter and the entry count, padded to 16 bytes,
 * then 4-int entries {item, split, block count, first key}: one per query
 * tile of >= 64 rows, plus the extra pieces of split rows), and for split
 * rows two partial slots per SM, each with O (128 rows x head_dim fp32)
 * and m, l (4 x 128 floats per warpgroup), plus an arrival counter per
 * slot and warpgroup.  About 17 MB at head_dim 128 on an H100; nothing
 * for the other kernels.  The band energies are summed per head. */
static void cuda_workspace_regions(const prism_plan *p,
                                   const prism_ws_shape *shape,
                                   size_t bytes[PRISM_WS_REGIONS]) {
    const cuda_plan *g = cuda_of(p);
    const prism_config *c = &p->cfg;
    size_t b = (size_t)shape->batch, hq = (size_t)shape->q_heads;
    size_t slots = cuda_split_slots(g);
    size_t tiles = (size_t)prism_ceil_div(shape->seqlen_q, 64);
    bytes[PRISM_WS_STATS_Q] = b * hq * 3 * sizeof(float);
    bytes[PRISM_WS_STATS_K] = b * (size_t)shape->kv_heads * 3 * sizeof(float);
    bytes[PRISM_WS_TOTALS] = 2 * sizeof(uint64_t);
    bytes[PRISM_WS_SCHEDULE] = prism_size_mul(
        prism_size_add(4, prism_size_mul(4, prism_size_add(
                              prism_size_mul4(b, hq, tiles, 1), slots))),
        sizeof(int32_t));
    bytes[PRISM_WS_SPLIT_ARRIVED] = 2 * slots * sizeof(int32_t);
    bytes[PRISM_WS_PARTIAL_O] = slots * 128 * (size_t)c->head_dim * sizeof(float);
    bytes[PRISM_WS_PARTIAL_ML] = slots * 2 * 512 * sizeof(float);
}

static prism_status cuda_workspace_alloc(prism_plan *p, size_t bytes,
                                         void **out) {
    cuda_plan *g = cuda_of(p);
    CUdeviceptr ptr = 0;
    CUresult rc = g->drv->ctx_set_current(g->cu_ctx);
    if (rc == CUDA_SUCCESS)
        rc = g->drv->mem_alloc(&ptr, bytes);
    if (rc != CUDA_SUCCESS) {
        char err[PRISM_ERRMSG_MAX];
        prism_cuda_error(g->drv, rc, "allocating the plan workspace", err,
                         sizeof err);
        return prism_plan_fail(p, PRISM_ERR_CUDA, "%s (%zu bytes)", err, bytes);
    }
    *out = (void *)(uintptr_t)ptr;
    return PRISM_OK;
}

static void cuda_workspace_free(prism_plan *p, void *workspace) {
    cuda_plan *g = cuda_of(p);
    g->drv->ctx_set_current(g->cu_ctx);
    g->drv->mem_free((CUdeviceptr)(uintptr_t)workspace);
}

/* Waits for the last estimate's stream and reads its two counts. */
static prism_status cuda_density(prism_plan *p, double *density) {
    cuda_plan *g = cuda_of(p);
    unsigned long long totals[2] = {0, 0};
    CUresult rc = g->drv->ctx_set_current(g->cu_ctx);
    if (rc == CUDA_SUCCESS)
        rc = g->drv->stream_synchronize((CUstream)g->last_stream);
    if (rc == CUDA_SUCCESS)
        rc = g->drv->memcpy_dtoh(totals, g->last_totals, sizeof totals);
    if (rc != CUDA_SUCCESS)
        return cuda_fail(p, rc, "reading the density");
    *density = totals[1] ? (double)totals[0] / (double)totals[1] : 0.0;
    return PRISM_OK;
}

CUdevice prism_cuda_plan_device(const prism_plan *p) {
    return p && p->backend == &prism_cuda_backend ? cuda_of(p)->device : -1;
}

/* Device memory: 16-byte loads (cp.async, TMA) need 16-byte aligned data
 * and strides that are multiples of 8 elements; 256-byte regions. */
const prism_backend prism_cuda_backend = {
    .name = "cuda",
    .tensor_align = 16,
    .stride_multiple = 8,
    .workspace_align = 256,
    .pack_stats = true,
    .create = cuda_create,
    .destroy = cuda_destroy,
    .workspace_regions = cuda_workspace_regions,
    .workspace_alloc = cuda_workspace_alloc,
    .workspace_free = cuda_workspace_free,
    .estimate = prism_cuda_estimate,
    .attention = prism_cuda_attention,
    .prefill = prism_cuda_prefill,
    .density = cuda_density,
};
