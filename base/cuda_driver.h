/*
 * driver.h - the CUDA Driver API, loaded with dlopen at first GPU use.
 *
 * libprism never links libcuda: on machines without a driver everything
 * but launches keeps working, and GPU calls return PRISM_ERR_NO_DRIVER or
 * PRISM_ERR_NO_DEVICE.  cuda.h is used for types and prototypes only; each
 * entry point is looked up by its exact versioned symbol name.
 */
#ifndef PRISM_DRIVER_H
#define PRISM_DRIVER_H

#include "base/base.h"

#include <cuda.h>

/* X(field, prototype-name, "exported symbol") */
#define PRISM_DRIVER_FUNCTIONS(X)                                             \
    X(init, cuInit, "cuInit")                                                 \
    X(get_error_string, cuGetErrorString, "cuGetErrorString")                 \
    X(driver_get_version, cuDriverGetVersion, "cuDriverGetVersion")           \
    X(device_get_count, cuDeviceGetCount, "cuDeviceGetCount")                 \
    X(device_get, cuDeviceGet, "cuDeviceGet")                                 \
    X(device_get_name, cuDeviceGetName, "cuDeviceGetName")                    \
    X(device_get_attribute, cuDeviceGetAttribute, "cuDeviceGetAttribute")     \
    X(primary_ctx_retain, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain") \
    X(primary_ctx_release, cuDevicePrimaryCtxRelease,                          \
      "cuDevicePrimaryCtxRelease_v2")                                         \
    X(ctx_set_current, cuCtxSetCurrent, "cuCtxSetCurrent")                    \
    X(ctx_synchronize, cuCtxSynchronize, "cuCtxSynchronize")                  \
    X(module_load_data, cuModuleLoadData, "cuModuleLoadData")                 \
    X(module_unload, cuModuleUnload, "cuModuleUnload")                        \
    X(module_get_function, cuModuleGetFunction, "cuModuleGetFunction")        \
    X(module_get_global, cuModuleGetGlobal, "cuModuleGetGlobal_v2")           \
    X(func_set_attribute, cuFuncSetAttribute, "cuFuncSetAttribute")           \
    X(tensor_map_encode_tiled, cuTensorMapEncodeTiled,                        \
      "cuTensorMapEncodeTiled")                                               \
    X(func_get_attribute, cuFuncGetAttribute, "cuFuncGetAttribute")           \
    X(launch_kernel_ex, cuLaunchKernelEx, "cuLaunchKernelEx")                 \
    X(mem_alloc, cuMemAlloc, "cuMemAlloc_v2")                                 \
    X(mem_free, cuMemFree, "cuMemFree_v2")                                    \
    X(mem_get_info, cuMemGetInfo, "cuMemGetInfo_v2")                          \
    X(memcpy_htod, cuMemcpyHtoD, "cuMemcpyHtoD_v2")                           \
    X(memcpy_dtoh, cuMemcpyDtoH, "cuMemcpyDtoH_v2")                           \
    X(memcpy_dtoh_async, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2")           \
    X(memset_d8_async, cuMemsetD8Async, "cuMemsetD8Async")                    \
    X(memset_d32, cuMemsetD32, "cuMemsetD32_v2")                              \
    X(stream_synchronize, cuStreamSynchronize, "cuStreamSynchronize")         \
    X(event_create, cuEventCreate, "cuEventCreate")                           \
    X(event_destroy, cuEventDestroy, "cuEventDestroy_v2")                     \
    X(event_record, cuEventRecord, "cuEventRecord")                           \
    X(event_synchronize, cuEventSynchronize, "cuEventSynchronize")            \
    X(event_elapsed_time, cuEventElapsedTime, "cuEventElapsedTime_v2")

typedef struct prism_driver {
#define PRISM_DRIVER_FIELD_(field, proto, symbol) __typeof__(proto) *field;
    PRISM_DRIVER_FUNCTIONS(PRISM_DRIVER_FIELD_)
#undef PRISM_DRIVER_FIELD_
} prism_driver;

/* Loads libcuda.so.1 once (thread-safe) and calls cuInit.  Returns
 * PRISM_ERR_NO_DRIVER with a message when the library or a symbol is
 * missing, PRISM_ERR_NO_DEVICE when cuInit finds no device. */
prism_status prism_driver_get(const prism_driver **out, char *err,
                              size_t err_size);

/* Formats "what: CUDA_ERROR_X (text)" and returns PRISM_ERR_CUDA. */
prism_status prism_cuda_error(const prism_driver *drv, CUresult rc,
                              const char *what, char *err, size_t err_size);

/* Waits for `stop` and writes the milliseconds since `start` to *ms.  A
 * kernel fault of the work between the two events surfaces here: then the
 * error is formatted as prism_cuda_error's with `what`. */
prism_status prism_event_elapsed(const prism_driver *drv, CUevent start,
                                 CUevent stop, const char *what, float *ms,
                                 char *err, size_t err_size);

#endif
