/*
 * paged_load.c - a CUDA plan's paged programs (gen/kernels.h, paged_entry),
 * got at its first paged launch rather than at creation: a plan that never
 * launches a paged batch never compiles them.  The launch path calls
 * prism_cuda_load_paged before every paged launch; after the first it is
 * one atomic load.
 */
#include "runtime/cuda/cuda_backend.h"
#include "runtime/module.h"

#include <string.h>

static prism_status cuda_fail(prism_plan *p, CUresult rc, const char *what) {
    char err[PRISM_ERRMSG_MAX];
    prism_cuda_error(cuda_of(p)->drv, rc, what, err, sizeof err);
    return prism_plan_fail(p, PRISM_ERR_CUDA, "%s", err);
}

/* Loads paged program `index` of g->paged_programs into its kernel's paged
 * slot (the plain program is loaded: its launch shape is the same). */
static prism_status load_paged_kernel(prism_plan *p, int index) {
    cuda_plan *g = cuda_of(p);
    const prism_kernel_spec *spec =
        prism_module_kernel_spec(g->paged_programs, index);
    cuda_kernel *k = &g->kernels[spec->def->role];
    const prism_driver *drv = g->drv;
    prism_kernel_info info;
    prism_module_kernel_info(g->paged_programs, index, &info);
    CUfunction f = NULL;
    CUresult rc = drv->module_load_data(&k->paged_module, info.cubin);
    if (rc == CUDA_SUCCESS)
        rc = drv->module_get_function(&f, k->paged_module,
                                      spec->entry_points[2]);
    if (rc == CUDA_SUCCESS && k->shape.dynamic_smem > 0)
        rc = drv->func_set_attribute(
            f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            k->shape.dynamic_smem);
    if (rc != CUDA_SUCCESS) {
        char what[128];
        snprintf(what, sizeof what, "loading kernel %s", spec->name);
        return cuda_fail(p, rc, what);
    }
    k->paged = f;
    k->paged_name = spec->entry_points[2];
    return PRISM_OK;
}

/* Undoes a failed load of the paged programs. */
static void drop_paged(prism_plan *p) {
    cuda_plan *g = cuda_of(p);
    for (int k = 0; k < PRISM_KERNEL_COUNT; k++) {
        cuda_kernel *ck = &g->kernels[k];
        if (ck->paged_module)
            g->drv->module_unload(ck->paged_module);
        ck->paged_module = NULL;
        ck->paged = NULL;
        ck->paged_name = NULL;
    }
    prism_module_destroy(g->paged_programs);
    g->paged_programs = NULL;
}

prism_status prism_cuda_load_paged(prism_plan *p) {
    cuda_plan *g = cuda_of(p);
    if (atomic_load_explicit(&g->paged_ready, memory_order_acquire))
        return PRISM_OK;
    pthread_mutex_lock(&g->paged_lock);
    prism_status st = PRISM_OK;
    if (!atomic_load_explicit(&g->paged_ready, memory_order_relaxed)) {
        /* the config and arch of the plain programs, tuning included */
        char err[PRISM_ERRMSG_MAX];
        st = prism_module_build_programs(p->ctx, &p->cfg, p->arch,
                                         PRISM_PROGRAMS_PAGED,
                                         &g->paged_programs, err, sizeof err);
        if (st != PRISM_OK)
            prism_plan_fail(p, st, "the paged K/V kernels for %s: %s",
                            prism_arch_name(p->arch), err);
        for (int i = 0;
             st == PRISM_OK && i < prism_module_kernel_count(g->paged_programs);
             i++)
            st = load_paged_kernel(p, i);
        if (st == PRISM_OK)
            atomic_store_explicit(&g->paged_ready, true, memory_order_release);
        else
            drop_paged(p);
    }
    pthread_mutex_unlock(&g->paged_lock);
    return st;
}
