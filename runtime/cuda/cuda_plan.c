/*
 * cuda_plan.c - the CUDA backend: creating a plan's device state.
 *
 * All the expensive and fallible work happens here, once: finding the
 * driver and the device, choosing from its compute capability the arch
 * whose kernels it runs (its own cubin, else its family's, else the PTX
 * image: base/arch.c), getting them through the cache (compiling on a
 * miss), loading them.  Each kernel is found by its role in the kernel table and
 * loaded by the entry points of the spec it was generated from, with that
 * spec's launch shape (gen/launch.c): nothing is named here and nothing is
 * read back from a cubin.  The launch path (launch.c) then only launches,
 * but for a plan's first paged launch, which gets and loads the kernels'
 * paged programs (prism_cuda_load_paged): a plan that never launches a
 * paged batch never compiles them, and one made with limits.paged gets
 * them at creation instead.
 */
#include "runtime/cuda/cuda_backend.h"
#include "runtime/module.h"
#include "runtime/plan_tuning.h"
#include "base/arch.h"
#include "base/checked.h"

#include <stdlib.h>
#include <string.h>

static prism_status cuda_fail(prism_plan *p, CUresult rc, const char *what) {
    char err[PRISM_ERRMSG_MAX];
    prism_cuda_error(cuda_of(p)->drv, rc, what, err, sizeof err);
    return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
}

/* The device's limits the launches depend on, and its compute
 * capability (cc[0].cc[1]). */
static prism_status read_limits(prism_plan *p, int cc[2]) {
    cuda_plan *g = cuda_of(p);
    const prism_driver *drv = g->drv;
    cc[0] = cc[1] = 0;
    drv->device_get_attribute(&cc[0], CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                              g->device);
    drv->device_get_attribute(&cc[1], CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                              g->device);
    if (drv->device_get_attribute(&g->sm_count,
                                  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                  g->device) != CUDA_SUCCESS ||
        g->sm_count < 1)
        g->sm_count = 1;
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

static prism_status open_device(prism_plan *p, int cc[2]) {
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
    return read_limits(p, cc);
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
    if (k->shape.dynamic_smem > g->smem_optin)
        return prism_plan_fail(p, PRISM_ERR_NO_KERNEL,
                               "kernel %s for %s needs %d bytes of shared "
                               "memory per CTA; this device allows %d",
                               spec->def->name, prism_arch_name(p->arch),
                               k->shape.dynamic_smem, g->smem_optin);
    CUresult rc = drv->module_load_data(&k->module, info.cubin);
    if (rc == CUDA_SUCCESS)
        rc = drv->module_get_function(&k->main, k->module, k->main_name);
    if (rc == CUDA_SUCCESS && k->second_name)
        rc = drv->module_get_function(&k->second, k->module, k->second_name);
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

/* Undoes a failed try_arch: the loaded modules and the module. */
static void drop_kernels(prism_plan *p) {
    cuda_plan *g = cuda_of(p);
    for (int k = 0; k < PRISM_KERNEL_COUNT; k++)
        if (g->kernels[k].module)
            g->drv->module_unload(g->kernels[k].module);
    memset(g->kernels, 0, sizeof g->kernels);
    prism_module_destroy(g->module);
    g->module = NULL;
}

/* The kernels of arch: the tuning database's best for this device and
 * length (runtime/plan_tuning.c), through the cache, loaded.  p->cfg
 * becomes the config they were built from, whose constants the launches
 * must use. */
static prism_status try_arch(prism_plan *p, const prism_config *asked,
                             prism_arch arch) {
    cuda_plan *g = cuda_of(p);
    p->arch = arch;
    p->cfg = *asked;
    prism_status st = prism_plan_tuning_module(
        p->ctx, g->drv, g->device, arch, asked, p->limits.max_seqlen_k,
        &p->cfg, &g->module);
    if (st != PRISM_OK) {
        prism_strlcpy(p->last_error, prism_context_last_error(p->ctx),
                      sizeof p->last_error);
        return st;
    }
    if ((st = load_kernels(p)) != PRISM_OK)
        drop_kernels(p);
    return st;
}

/* Whether a failure with arch is worth trying the next candidate for: the
 * image is not there (no JIT), does not compile (an NVRTC that lacks the
 * arch), does not fit or does not load. */
static bool try_next(prism_status st) {
    return st == PRISM_ERR_CACHE_MISS || st == PRISM_ERR_NVRTC ||
           st == PRISM_ERR_NO_KERNEL || st == PRISM_ERR_CUDA;
}

/* Says which kernels a device of compute capability cc got when they are
 * not its own cubins: archs[i] of the candidates. */
static void log_choice(const prism_plan *p, const int cc[2],
                       const prism_arch *archs, int i) {
    const prism_logger *log = &p->ctx->logger;
    const char *name = prism_arch_name(archs[i]);
    if (prism_arch_is_ptx(archs[i]))
        prism_log(log, PRISM_LOG_WARN,
                  "compute capability %d.%d: no Prism cubin for this device, "
                  "so the driver compiles the %s PTX as the kernels load "
                  "(slower the first time)%s%s%s",
                  cc[0], cc[1], name,
                  i > 0 ? "; a cache or pack with its " : "",
                  i > 0 ? prism_arch_name(archs[0]) : "",
                  i > 0 ? " kernels would load faster" : "");
    else if (!prism_arch_is_exact(archs[i], cc[0], cc[1]))
        prism_log(log, PRISM_LOG_INFO,
                  "compute capability %d.%d runs the %s kernels", cc[0],
                  cc[1], name);
}

/* The kernels for a device of compute capability cc: the first of
 * base/arch.c's candidates (its own cubin, its family's, the PTX) that
 * builds and loads.  A failure is the first candidate's. */
static prism_status choose_kernels(prism_plan *p, const int cc[2]) {
    prism_arch archs[PRISM_ARCH_COUNT_];
    int n = prism_arch_candidates(cc[0], cc[1], archs);
    if (n == 0)
        return prism_plan_fail(p, PRISM_ERR_NO_KERNEL,
                               "compute capability %d.%d has no Prism "
                               "kernels; Prism needs 8.0 or newer",
                               cc[0], cc[1]);
    prism_config asked = p->cfg;
    prism_status first = PRISM_OK;
    char first_error[PRISM_ERRMSG_MAX] = "";
    for (int i = 0; i < n; i++) {
        prism_status st = try_arch(p, &asked, archs[i]);
        if (st == PRISM_OK) {
            log_choice(p, cc, archs, i);
            return PRISM_OK;
        }
        if (i == 0) {
            first = st;
            prism_strlcpy(first_error, p->last_error, sizeof first_error);
        }
        if (!try_next(st) || i + 1 == n)
            break;
        prism_log(&p->ctx->logger, PRISM_LOG_INFO,
                  "%s kernels unavailable (%s); trying %s",
                  prism_arch_name(archs[i]), p->last_error,
                  prism_arch_name(archs[i + 1]));
    }
    p->cfg = asked;
    return prism_plan_fail(p, first, "%s", first_error);
}

static prism_status cuda_create(prism_plan *p) {
    cuda_plan *g = calloc(1, sizeof *g);
    if (!g)
        return prism_plan_fail(p, PRISM_ERR_OUT_OF_MEMORY,
                               "out of memory creating a plan");
    p->impl = g;
    if (pthread_mutex_init(&g->paged_lock, NULL) != 0)
        return prism_plan_fail(p, PRISM_ERR_OUT_OF_MEMORY,
                               "cannot create the plan's lock");
    g->paged_lock_made = true;
    atomic_init(&g->paged_ready, false);
    int cc[2];
    prism_status st = open_device(p, cc);
    if (st == PRISM_OK)
        st = choose_kernels(p, cc);
    if (st == PRISM_OK && p->limits.paged)
        st = prism_cuda_load_paged(p);
    return st;
}

static void cuda_destroy(prism_plan *p) {
    cuda_plan *g = cuda_of(p);
    if (!g)
        return;
    if (g->drv) {
        if (g->cu_ctx)
            g->drv->ctx_set_current(g->cu_ctx);
        for (int k = 0; k < PRISM_KERNEL_COUNT; k++) {
            if (g->kernels[k].module)
                g->drv->module_unload(g->kernels[k].module);
            if (g->kernels[k].paged_module)
                g->drv->module_unload(g->kernels[k].paged_module);
        }
        if (g->cu_ctx)
            g->drv->primary_ctx_release(g->device);
    }
    prism_module_destroy(g->module);
    prism_module_destroy(g->paged_programs);
    if (g->paged_lock_made)
        pthread_mutex_destroy(&g->paged_lock);
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
