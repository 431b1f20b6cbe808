/*
 * kernels.h - the registry of generated kernels.
 *
 * A kernel is a list of template files of gen/templates/ plus the
 * constants the generator fixes for it and the shape it is launched with.
 * Adding a kernel means adding its templates, its tunables to
 * config/tunables.c and one row to the table in kernels.c (with its
 * constants function there and its launch function in launch.c); the
 * cache, the CLI, the module builder and the plans iterate this table and
 * need no change.  A plan finds each kernel by its role, never by name.
 */
#ifndef PRISM_KERNELS_H
#define PRISM_KERNELS_H

#include "prism.h"
#include "config/tunables.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PRISM_MAX_ENTRY_POINTS 4
/* template files one kernel's source is built from after common.cuh */
#define PRISM_MAX_TEMPLATES 8


struct prism_kernel_spec;

typedef struct prism_kernel_def {
    const char *name;          /* "pool_stats"                          */
    prism_kernel_role role;
    const char *summary;       /* one line for humans                   */
    /* gen/templates/ files after common.cuh, in order (the parameter
     * block, the helpers it needs, the kernel); add_constants may pick
     * others for an arch */
    const char *templates[PRISM_MAX_TEMPLATES];
    /* __global__ names by role: [0] the kernel, [1] one launched before
     * it (add_constants adds the sm_90a attention's schedule kernel); NULL
     * where none.  [2], the kernel over paged K/V, is in a program of its
     * own (paged_entry) */
    const char *entry_points[PRISM_MAX_ENTRY_POINTS];
    /* The kernel over paged K/V (prism_paged_kv), or NULL: its entry
     * point, and the name of its program, which has the same templates,
     * constants and launch shape with PRISM_PAGED_PROGRAM defined and
     * that entry point alone.  It is generated and compiled apart, only
     * for what launches paged batches, so that the other kernels' compile
     * does not pay for it. */
    const char *paged_entry;
    const char *paged_name;
    /* the kernel's tunables (config/tunables.c); a NULL name ends them */
    const prism_tunable *tunables;
    /* Adds the kernel's shape constants to spec (tunables are added by the
     * generic code).  Returns PRISM_OK or an error line. */
    prism_status (*add_constants)(struct prism_kernel_spec *spec, char *err,
                                  size_t err_size);
    /* Fixes how the host launches the kernel (gen/launch.c): fills
     * spec->launch and adds the constants the template takes from it. */
    prism_status (*launch)(struct prism_kernel_spec *spec, char *err,
                           size_t err_size);
} prism_kernel_def;

/* The table, in pipeline order. */
const prism_kernel_def *prism_kernel_def_at(int index);
const prism_kernel_def *prism_kernel_def_find(const char *name);
/* Index of the kernel with that role, or -1. */
int prism_kernel_index_of(prism_kernel_role role);

#endif
