/*
 * tune_gpu.h - measuring candidates on one GPU (internal to autotune/).
 *
 * One tune_gpu belongs to one thread: it holds that device's primary
 * context current, its own prism_context (plans need one per device), the
 * inputs of the current length bucket and the default candidate's outputs
 * every other candidate is compared with.
 */
#ifndef PRISM_TUNE_GPU_H
#define PRISM_TUNE_GPU_H

#include "autotune/autotune.h"
#include "base/cuda_driver.h"

/* What a kernel's candidates are timed on: the stage of the public API
 * that launches the kernel. */
typedef enum tune_stage {
    TUNE_STAGE_NONE = 0, /* no harness for this kernel: not tuned */
    TUNE_STAGE_ESTIMATE, /* prism_estimate: pool_stats + estimate kernels */
    TUNE_STAGE_ATTENTION /* prism_sparse_attention over random masks */
} tune_stage;

tune_stage tune_stage_of(const char *kernel);

typedef struct tune_gpu tune_gpu;

/* Opens device `ordinal` on the calling thread (its primary context stays
 * current there).  ctx supplies the cache and the logger. */
prism_status tune_gpu_open(const prism_context *ctx, int ordinal,
                           tune_gpu **out, char *err, size_t err_size);
void tune_gpu_close(tune_gpu *g);

/* Inputs (iid Gaussian, deterministic), the masks of each density and
 * room for the outputs, for sequences of `seq` tokens of cfg's shape.
 * Keeps everything when called again with the same seq. */
prism_status tune_gpu_prepare(tune_gpu *g, const prism_config *cfg, int seq,
                              const double *densities, int n_densities,
                              char *err, size_t err_size);

/* Verifies and times one candidate (cand_cfg pins it) on `stage`; the
 * reference outputs come from ref_cfg (the untuned pins), computed on
 * first use.  Sets c->status, reason, timings and median/min/max. */
void tune_gpu_measure(tune_gpu *g, tune_stage stage,
                      const prism_config *ref_cfg, const prism_config *cand_cfg,
                      prism_tune_candidate *c);

/* True once a launch has left the device unusable (sticky CUDA error);
 * why gets the reason. */
bool tune_gpu_broken(const tune_gpu *g, char *why, size_t why_size);

#endif
