/*
 * tunables.h - the tunables of the generated kernels: their names, defaults
 * and legal values.
 *
 * A config may set any of them (`tuning:` in configs/README.md), so the
 * loader and the validator must know them; they are data about the
 * kernels, not code of the generator, and live here, below it.  Each row of
 * gen/kernels.c (template, entry points, shape constants) points at its
 * kernel's entry of this table; the tuning database and the autotuner read
 * them through that row.  Not installed.
 */
#ifndef PRISM_TUNABLES_H
#define PRISM_TUNABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PRISM_MAX_TUNABLES 8

/* One tunable of a kernel: its default and the legal values. */
typedef struct prism_tunable {
    const char *name;
    int64_t default_value;
    const int64_t *allowed; /* legal values, terminated by -1 */
    const char *doc;
} prism_tunable;

/* The tunables of one kernel; a NULL name ends the list. */
typedef struct prism_kernel_tunables {
    const char *kernel; /* "pool_stats"; the name of its gen/kernels.c row */
    prism_tunable tunables[PRISM_MAX_TUNABLES];
} prism_kernel_tunables;

/* What each kernel does in the pipeline, in pipeline order: the order of
 * gen/kernels.c's rows; a plan launches them in this order and finds each
 * by its role, never by name. */
typedef enum prism_kernel_role {
    PRISM_KERNEL_POOL_STATS, /* block means of Q and K, band energies      */
    PRISM_KERNEL_ESTIMATE,   /* band scales, scores, top-p: the block mask */
    PRISM_KERNEL_ATTENTION,  /* block-sparse attention over the mask       */
    PRISM_KERNEL_COUNT
} prism_kernel_role;

extern const prism_kernel_tunables prism_tunables_table[PRISM_KERNEL_COUNT];

/* The entry of kernel `name`, or NULL. */
const prism_kernel_tunables *prism_tunables_find(const char *kernel);

/* Is `param` a tunable of `kernel` and `value` legal for it?  On false,
 * writes what is allowed (the kernel names, tunable names or values) into
 * `allowed`. */
bool prism_tunables_check(const char *kernel, const char *param,
                          int64_t value, char *allowed, size_t size);

#endif
