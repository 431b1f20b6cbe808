/*
 * kernels.h - the registry of generated kernels and their tunables.
 *
 * A kernel is one template file of gen/templates/ plus the constants the
 * generator fixes for it.  Adding a kernel means adding a template and one
 * row to the table in kernels.c (with its spec function in spec.c); the
 * cache, the CLI and the module builder iterate this table and need no
 * change.
 */
#ifndef PRISM_KERNELS_H
#define PRISM_KERNELS_H

#include "prism.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PRISM_MAX_TUNABLES 8
#define PRISM_MAX_ENTRY_POINTS 4

/* One tunable of a kernel: its default and the legal values. */
typedef struct prism_tunable {
    const char *name;
    int64_t default_value;
    const int64_t *allowed; /* legal values, terminated by -1 */
    const char *doc;
} prism_tunable;

struct prism_kernel_spec;

typedef struct prism_kernel_def {
    const char *name;          /* "pool_stats"                          */
    const char *template_file; /* "pool_stats.cu" in gen/templates/         */
    const char *summary;       /* one line for humans                   */
    const char *entry_points[PRISM_MAX_ENTRY_POINTS]; /* __global__ names */
    prism_tunable tunables[PRISM_MAX_TUNABLES];
    /* Adds the kernel's shape constants to spec (tunables are added by the
     * generic code).  Returns PRISM_OK or an error line. */
    prism_status (*add_constants)(struct prism_kernel_spec *spec, char *err,
                                  size_t err_size);
} prism_kernel_def;

/* The table, in pipeline order. */
const prism_kernel_def *prism_kernel_def_at(int index);
const prism_kernel_def *prism_kernel_def_find(const char *name);

/* Is `param` a tunable of `kernel` and `value` legal for it?  On false,
 * writes what is allowed (the kernel names, tunable names or values) into
 * `allowed`. */
bool prism_kernel_check_tunable(const char *kernel, const char *param,
                                int64_t value, char *allowed, size_t size);

#endif
