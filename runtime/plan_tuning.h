/*
 * plan_tuning.h - tuned kernels for plans: the tuning database of a
 * context (its directories, lookup, merging tuned values into a config)
 * and the one hook runtime/plan.c calls instead of building the config's
 * module directly.  The database's files and keys are tune/tune.h's.
 */
#ifndef PRISM_PLAN_TUNING_H
#define PRISM_PLAN_TUNING_H

#include "base/cuda_driver.h"
#include "tune/tune.h"

/* ---- the tuning database of a context ------------------------------------ */

#define PRISM_TUNE_MAX_DIRS 17

/* The tuning directories of a context in search order: the writable one
 * first ("" when there is none), then tuning/ of each read-only cache
 * layer.  Returns the count written into dirs. */
int prism_plan_tuning_dirs(const prism_context *ctx,
                           char dirs[PRISM_TUNE_MAX_DIRS][PRISM_PATH_MAX]);

/* The best candidate's tunable values (the kernel's tunable order) for
 * (device, config, kernel, bucket of seqlen): the first valid entry of the
 * tuning directories.  *found false is a miss (not an error). */
prism_status
prism_plan_tuning_lookup(prism_context *ctx, const prism_tune_device *dev,
                         const prism_config *cfg, const char *kernel,
                         int64_t seqlen, int64_t values[PRISM_MAX_TUNABLES],
                         bool *found);

/* Appends to *trial (in, plus earlier merges) the values of kernel k's
 * tunables that `in` does not set itself, and checks the combination on
 * arch.  false (why set) when it cannot be used. */
bool prism_plan_tuning_merge_kernel(prism_config *trial,
                                    const prism_config *in, int k,
                                    prism_arch arch, const int64_t *values,
                                    char *why, size_t why_size);

/* out = in plus, for every kernel, the looked-up values of the tunables
 * `in` does not set itself.  A kernel whose merged combination is not
 * legal keeps its untuned values (one warning).  $PRISM_TUNE=off disables
 * it.  *n_applied (optional) counts the kernels that got tuned values. */
prism_status prism_plan_tuning_apply(prism_context *ctx, const prism_config *in,
                                     const prism_tune_device *dev,
                                     int64_t max_seqlen, prism_config *out,
                                     int *n_applied);

/* ---- plans --------------------------------------------------------------- */

/* Fills the device key fields of an open device (driver loaded, device
 * valid); the NVRTC version is this process's. */
prism_status prism_plan_tuning_device_query(const prism_driver *drv,
                                            CUdevice dev,
                                            prism_tune_device *out, char *err,
                                            size_t err_size);

/* Builds the module a plan runs from its valid config (not validated
 * again): cfg plus the tuning database's best
 * values for (this device, cfg, each kernel, bucket of max_seqlen_k)
 * (prism_plan_tuning_apply), compiled through the cache.  When the tuned
 * config does not build (a pack without that variant under PRISM_JIT=off,
 * a stale entry...) it warns once and builds cfg untuned.  *used gets the
 * config the module was built from: the plan must launch with its
 * constants.  Errors are those of prism_module_build on cfg. */
prism_status prism_plan_tuning_module(prism_context *ctx,
                                      const prism_driver *drv, CUdevice dev,
                                      prism_arch arch, const prism_config *cfg,
                                      int64_t max_seqlen_k, prism_config *used,
                                      prism_module **module);

#endif
