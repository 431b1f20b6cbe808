/*
 * run_gpu.h - the GPU half of `prism run --device gpu`.
 */
#ifndef PRISM_RUN_GPU_H
#define PRISM_RUN_GPU_H

#include "reference/reference.h"

typedef struct gpu_run_result {
    prism_selection sel; /* the GPU's selection, downloaded            */
    float *out;          /* fp32 [B, Hq, Sq, D] attention output        */
    double density;      /* as the plan measured it                     */
    double estimate_ms;  /* median GPU time of prism_estimate           */
    double attention_ms; /* median GPU time of prism_sparse_attention   */
    char device[128];
} gpu_run_result;

/* Runs Prism estimation and attention on the GPU over the host inputs
 * (config dtype, contiguous BHSD), timing each stage with CUDA events
 * (median of `reps` after a warm-up).  Returns CLI_OK or prints one error
 * line and returns CLI_FAIL. */
int run_gpu(const prism_config *cfg, int B, int64_t Sq, int64_t Sk,
            const void *q, const void *k, const void *v, int reps,
            gpu_run_result *out);
void gpu_run_result_free(gpu_run_result *r);

#endif
