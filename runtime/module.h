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

/* The spec kernel `index` was generated from (owned by the module), or
 * NULL. */
const prism_kernel_spec *prism_module_kernel_spec(const prism_module *m,
                                                  int index);

#endif
