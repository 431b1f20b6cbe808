/*
 * gpu_testutil.h - device helpers for the GPU suites: skip cleanly without
 * a GPU, allocate, upload, download, poison.
 */
#ifndef PRISM_GPU_TESTUTIL_H
#define PRISM_GPU_TESTUTIL_H

#include "base/cuda_driver.h"

#include <stdbool.h>
#include <stddef.h>

/* The driver and a current primary context, or NULL (and why) when this
 * machine has no usable GPU. */
const prism_driver *gpu_open(char *why, size_t why_size);
void gpu_close(void);

/* cuMemAlloc + upload; aborts the test on failure. */
CUdeviceptr gpu_upload(const void *host, size_t bytes);
CUdeviceptr gpu_alloc_poisoned(size_t bytes, unsigned char poison);
void gpu_download(void *host, CUdeviceptr dev, size_t bytes);
void gpu_free(CUdeviceptr dev);
void gpu_sync(void);

#endif
