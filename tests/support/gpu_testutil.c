/*
 * gpu_testutil.c - see gpu_testutil.h.
 */
#include "gpu_testutil.h"

#include <criterion/criterion.h>

static const prism_driver *drv;
static CUdevice device;
static CUcontext context;

const prism_driver *gpu_open(char *why, size_t why_size) {
    if (drv)
        return drv;
    const prism_driver *d = NULL;
    if (prism_driver_get(&d, why, why_size) != PRISM_OK)
        return NULL;
    int count = 0;
    if (d->device_get_count(&count) != CUDA_SUCCESS || count == 0) {
        snprintf(why, why_size, "no CUDA device");
        return NULL;
    }
    if (d->device_get(&device, 0) != CUDA_SUCCESS ||
        d->primary_ctx_retain(&context, device) != CUDA_SUCCESS ||
        d->ctx_set_current(context) != CUDA_SUCCESS) {
        snprintf(why, why_size, "cannot open CUDA device 0");
        return NULL;
    }
    drv = d;
    return drv;
}

void gpu_close(void) {
    if (drv)
        drv->primary_ctx_release(device);
    drv = NULL;
}

static void check(CUresult rc, const char *what) {
    if (rc != CUDA_SUCCESS) {
        const char *text = NULL;
        drv->get_error_string(rc, &text);
        cr_assert_fail("%s: CUDA error %d (%s)", what, (int)rc, text ? text : "?");
    }
}

CUdeviceptr gpu_upload(const void *host, size_t bytes) {
    CUdeviceptr p = 0;
    check(drv->mem_alloc(&p, bytes ? bytes : 1), "cuMemAlloc");
    if (bytes)
        check(drv->memcpy_htod(p, host, bytes), "cuMemcpyHtoD");
    return p;
}

CUdeviceptr gpu_alloc_poisoned(size_t bytes, unsigned char poison) {
    CUdeviceptr p = 0;
    check(drv->mem_alloc(&p, bytes ? bytes : 1), "cuMemAlloc");
    check(drv->memset_d8_async(p, poison, bytes ? bytes : 1, NULL),
          "cuMemsetD8Async");
    check(drv->ctx_synchronize(), "cuCtxSynchronize");
    return p;
}

void gpu_download(void *host, CUdeviceptr dev, size_t bytes) {
    check(drv->ctx_synchronize(), "kernel execution");
    check(drv->memcpy_dtoh(host, dev, bytes), "cuMemcpyDtoH");
}

void gpu_free(CUdeviceptr dev) {
    if (dev)
        drv->mem_free(dev);
}

void gpu_sync(void) { check(drv->ctx_synchronize(), "cuCtxSynchronize"); }
