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

/* The programs a module holds: every kernel's plain program (what a plan
 * creates, and prism_module_build), the paged programs (gen/kernels.h,
 * paged_entry: what a paged launch needs), or both. */
#define PRISM_PROGRAMS_PLAIN 1u
#define PRISM_PROGRAMS_PAGED 2u

/* prism_module_build_valid for the programs asked for, plain ones first
 * in pipeline order, then the paged ones.  A failure is returned with its
 * message in err only (the context's last error is left alone). */
prism_status prism_module_build_programs(prism_context *ctx,
                                         const prism_config *cfg,
                                         prism_arch arch, unsigned programs,
                                         prism_module **out, char *err,
                                         size_t err_size);

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
