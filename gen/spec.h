/*
 * spec.h - a kernel spec: everything the generator fixes for one kernel of
 * one config on one arch.  It is the middle stage of the pipeline
 *   config -> kernel spec -> CUDA source -> NVRTC cubin
 * and the only input of the emitter, so the generated source is a pure
 * function of the spec.
 */
#ifndef PRISM_SPEC_H
#define PRISM_SPEC_H

#include "gen/kernels.h"
#include "gen/launch.h"

#define PRISM_MAX_CONSTANTS 64

typedef enum prism_constant_kind {
    PRISM_CONST_INT,
    PRISM_CONST_FLOAT,
    PRISM_CONST_BOOL
} prism_constant_kind;

/* Where a constant comes from; the source lists each group apart. */
typedef enum prism_constant_group {
    PRISM_CONST_SHAPE,   /* what of the config shapes the code          */
    PRISM_CONST_TUNABLE, /* a tunable: its default or a tuning override   */
    PRISM_CONST_LAUNCH   /* the launch shape (gen/launch.c)               */
} prism_constant_group;

typedef struct prism_constant {
    char name[48];
    prism_constant_kind kind;
    int64_t i; /* INT and BOOL */
    double f;  /* FLOAT */
    char comment[96];
    prism_constant_group group;
} prism_constant;

typedef struct prism_kernel_spec {
    const prism_kernel_def *def;
    const prism_config *cfg;
    prism_arch arch;
    /* gen/templates/ files the source is built from, in this order after
     * common.cuh: def->templates unless add_constants picked arch-specific
     * ones (attention on sm_90a); unused entries NULL */
    const char *templates[PRISM_MAX_TEMPLATES];
    /* __global__ names, entry_points[0] the kernel proper; unused NULL.
     * The paged program (paged) has [2], the paged entry point, alone. */
    const char *entry_points[PRISM_MAX_ENTRY_POINTS];
    /* The kernel's paged program (prism_spec_paged): def->paged_entry
     * alone, PRISM_PAGED_PROGRAM defined in its source */
    bool paged;
    const char *name; /* def->name, or def->paged_name when paged */
    int variant; /* the variant add_constants picked (attention: 1 mma.sync,
                    2 wgmma); 0 for kernels with one */
    prism_launch_shape launch;
    int n_constants;
    prism_constant constants[PRISM_MAX_CONSTANTS];
} prism_kernel_spec;

/* Builds the spec of kernel `index` for cfg on arch: each tunable (default
 * or the config's override, checked against its legal values), the
 * kernel's shape constants and rules, then its launch shape.  cfg must be
 * valid (loaded, or passed by prism_config_validate): this is the inner
 * step of generation and does not validate it again.  spec keeps cfg. */
prism_status prism_spec_build(const prism_config *cfg, int index,
                              prism_arch arch, prism_kernel_spec *spec,
                              char *err, size_t err_size);

/* Turns a spec that prism_spec_build made into its kernel's paged program
 * (the same constants and launch shape, the paged entry point alone).
 * Returns false, leaving spec alone, when the kernel has none. */
bool prism_spec_paged(prism_kernel_spec *spec);

/* Appends a constant; fails when the table is full. */
prism_status prism_spec_add_int(prism_kernel_spec *spec, const char *name,
                                int64_t value, const char *comment);
prism_status prism_spec_add_float(prism_kernel_spec *spec, const char *name,
                                  double value, const char *comment);
prism_status prism_spec_add_bool(prism_kernel_spec *spec, const char *name,
                                 bool value, const char *comment);
/* A launch constant (PRISM_CONST_LAUNCH, an int). */
prism_status prism_spec_add_launch(prism_kernel_spec *spec, const char *name,
                                   int64_t value, const char *comment);
/* Value of an INT/BOOL constant already in the spec, or `fallback`. */
int64_t prism_spec_int(const prism_kernel_spec *spec, const char *name,
                       int64_t fallback);

/* Renders the CUDA source of spec (malloc'd, NUL-terminated): a banner
 * naming the kernel and the arch (never the config's name or file, so the
 * source and its cache key depend on what shapes the code only), the
 * constants the templates use, then the templates. */
prism_status prism_emit_source(const prism_kernel_spec *spec, char **source,
                               char *err, size_t err_size);

#endif
