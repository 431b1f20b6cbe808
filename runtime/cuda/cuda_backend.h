/*
 * cuda_backend.h - the CUDA backend's state behind a plan (plan->impl).
 *
 *   cuda_plan.c  creation: the driver and the device, the arch we generate
 *                for, the module (through the cache and the tuning
 *                database), its kernels loaded by role with the launch
 *                shapes of their specs; the workspace in device memory;
 *                the density read back
 *   paged_load.c the paged programs, at the first paged launch
 *   launch.c     the calls: parameter blocks (gen/templates/KERNEL_params.h),
 *                grids (gen/launch.h) and launches
 */
#ifndef PRISM_CUDA_BACKEND_H
#define PRISM_CUDA_BACKEND_H

#include "runtime/backend.h"
#include "base/cuda_driver.h"
#include "gen/spec.h"

#include <pthread.h>
#include <stdatomic.h>

/* One loaded kernel of the module. */
typedef struct cuda_kernel {
    CUmodule module;
    CUfunction main;           /* spec entry point 0                         */
    CUfunction second;         /* entry point 1: the schedule kernel, or 0   */
    CUmodule paged_module;     /* the kernel's paged program, once loaded    */
    CUfunction paged;          /* its entry point: main over paged K/V, or 0
                                  (set before cuda_plan.paged_ready)         */
    const char *main_name, *second_name, *paged_name;
    prism_launch_shape shape;  /* from the spec (gen/launch.c)               */
    int static_smem;           /* the compiler's static shared memory bytes */
    int smem_limit;            /* dynamic bytes the function is set up for  */
} cuda_kernel;

typedef struct cuda_plan {
    const prism_driver *drv;
    CUdevice device;
    CUcontext cu_ctx;
    int sm_count;              /* multiprocessors: the persistent grid size */
    int smem_optin;            /* shared memory per CTA with opt-in         */
    int smem_per_sm;           /* shared memory per multiprocessor          */
    prism_module *module;
    cuda_kernel kernels[PRISM_KERNEL_COUNT];
    /* The paged programs (gen/kernels.h, paged_entry): got and loaded by
     * the first paged launch (prism_cuda_load_paged), under paged_lock;
     * paged_ready says they are, after which the launches read the
     * kernels' paged functions without the lock. */
    prism_module *paged_programs;
    pthread_mutex_t paged_lock;
    bool paged_lock_made;
    atomic_bool paged_ready;
    CUdeviceptr last_totals;   /* selected / block-causal counts of the last
                                  estimate (device, 2 x u64)                */
    prism_stream last_stream;
} cuda_plan;

static inline cuda_plan *cuda_of(const prism_plan *p) {
    return (cuda_plan *)p->impl;
}

/* Partial-result slots of split rows in the workspace: two per SM for the
 * persistent attention kernel, none for the others. */
static inline size_t cuda_split_slots(const cuda_plan *g) {
    return g->kernels[PRISM_KERNEL_ATTENTION].shape.grid == PRISM_GRID_PERSISTENT
               ? 2 * (size_t)g->sm_count
               : 0;
}

/* paged_load.c: the paged programs of the plan's config and arch, through
 * the cache (compiling on a miss, as plan creation does), loaded into the
 * kernels' paged slots; once, whichever thread launches paged first.  A
 * failure is the plan's last error, and the next paged launch tries
 * again.  The plan's context is current. */
prism_status prism_cuda_load_paged(prism_plan *p);

/* launch.c: the calls of the table. */
prism_status prism_cuda_estimate(prism_plan *p, const prism_call *c);
prism_status prism_cuda_attention(prism_plan *p, const prism_call *c);
prism_status prism_cuda_prefill(prism_plan *p, const prism_call *c);

/* The device of a CUDA plan (for its name), or -1 for another plan. */
CUdevice prism_cuda_plan_device(const prism_plan *p);

#endif
