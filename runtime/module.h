/*
 * module.h - the module builder's internals for plans (runtime/module.c).
 */
#ifndef PRISM_MODULE_H
#define PRISM_MODULE_H

#include "runtime/context.h"
#include "gen/spec.h"

/* prism_module_build for a config that is valid already (a plan's):
 * nothing is validated again. */
prism_status prism_module_build_valid(prism_context *ctx,
                                      const prism_config *cfg, prism_arch arch,
                                      prism_module **out);

/* Where a kernel's compile time went (all 0 when it came from the cache;
 * the phases -1 unless the context timed them: prism_context.time_phases). */
typedef struct prism_module_timing {
    bool compiled;
    double wall_ms, cpu_ms;               /* nvrtcCompileProgram */
    double frontend_ms, nvvm_ms, ptxas_ms; /* NVRTC's own phases */
} prism_module_timing;

prism_status prism_module_kernel_timing(const prism_module *m, int index,
                                        prism_module_timing *out);

/* Wall time the module spent getting its kernels (cache or NVRTC), and in
 * *threads how many threads did it. */
double prism_module_fetch_ms(const prism_module *m, int *threads);

/* The spec kernel `index` was generated from (owned by the module), or
 * NULL. */
const prism_kernel_spec *prism_module_kernel_spec(const prism_module *m,
                                                  int index);

#endif
