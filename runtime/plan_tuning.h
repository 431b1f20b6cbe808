/*
 * plan_tuning.h - tuned kernels for plans: the one hook runtime/plan.c
 * calls instead of building the config's module directly.
 */
#ifndef PRISM_PLAN_TUNING_H
#define PRISM_PLAN_TUNING_H

#include "base/cuda_driver.h"
#include "tune/tune.h"

/* Fills the device key fields of an open device (driver loaded, device
 * valid); the NVRTC version is this process's. */
prism_status prism_tuning_device_query(const prism_driver *drv, CUdevice dev,
                                       prism_tuning_device *out, char *err,
                                       size_t err_size);

/* Builds the module a plan runs: cfg plus the tuning database's best
 * values for (this device, cfg, each kernel, bucket of max_seqlen_k)
 * (prism_tuning_apply), compiled through the cache.  When the tuned
 * config does not build (a pack without that variant under PRISM_JIT=off,
 * a stale entry...) it warns once and builds cfg untuned.  *used gets the
 * config the module was built from: the plan must launch with its
 * constants.  Errors are those of prism_module_build on cfg. */
prism_status prism_tuning_plan_module(prism_context *ctx,
                                      const prism_driver *drv, CUdevice dev,
                                      prism_arch arch, const prism_config *cfg,
                                      int64_t max_seqlen_k, prism_config *used,
                                      prism_module **module);

#endif
