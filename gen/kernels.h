/*
 * kernels.h - the registry of generated kernels and their tunables.
 *
 * A kernel is one template file of templates/ plus the constants the
 * generator fixes for it.  Adding a kernel means adding a template and one
 * row to the table in kernels.c; the cache, the CLI and the module builder
 * iterate this table and need no change.
 */
#ifndef PRISM_KERNELS_H
#define PRISM_KERNELS_H

#include "prism.h"

#include <stdbool.h>
#include <stdint.h>

#define PRISM_MAX_TUNABLES 8

/* One tunable of a kernel: its default and the legal values. */
typedef struct prism_tunable {
    const char *name;
    int64_t default_value;
    const int64_t *allowed; /* legal values, terminated by -1 */
} prism_tunable;

/* Is `param` a tunable of `kernel` and `value` legal for it?  On false,
 * writes "allowed: ..." (the legal names or values) into `allowed`. */
bool prism_kernel_check_tunable(const char *kernel, const char *param,
                                int64_t value, char *allowed, size_t size);

#endif
