/*
 * driver.c - dlopen the CUDA driver once per process.
 *
 * The result (success or the reason for failure) is computed once under
 * pthread_once and then shared read-only, so every thread sees the same
 * answer and nothing is retried in a hot path.
 */
#include "base/cuda_driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

static prism_driver driver;
static prism_status driver_status;
static char driver_error[PRISM_ERRMSG_MAX];
static pthread_once_t driver_once = PTHREAD_ONCE_INIT;

static void load_driver(void) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        driver_status = prism_errorf(
            driver_error, sizeof driver_error, PRISM_ERR_NO_DRIVER,
            "CUDA driver not found (dlopen libcuda.so.1: %s); install the "
            "NVIDIA driver or use the CPU path",
            why ? why : "unknown error");
        return;
    }
#define PRISM_DRIVER_LOAD_(field, proto, symbol)                               \
    driver.field = (__typeof__(proto) *)dlsym(lib, symbol);                    \
    if (!driver.field) {                                                       \
        driver_status = prism_errorf(driver_error, sizeof driver_error,        \
                                     PRISM_ERR_NO_DRIVER,                      \
                                     "CUDA driver too old: libcuda.so.1 lacks " \
                                     "%s; update the NVIDIA driver", symbol);  \
        return;                                                                \
    }
    PRISM_DRIVER_FUNCTIONS(PRISM_DRIVER_LOAD_)
#undef PRISM_DRIVER_LOAD_
    CUresult rc = driver.init(0);
    if (rc == CUDA_ERROR_NO_DEVICE) {
        driver_status = prism_errorf(driver_error, sizeof driver_error,
                                     PRISM_ERR_NO_DEVICE,
                                     "no CUDA device (cuInit: "
                                     "CUDA_ERROR_NO_DEVICE)");
        return;
    }
    if (rc != CUDA_SUCCESS) {
        const char *text = NULL;
        driver.get_error_string(rc, &text);
        driver_status = prism_errorf(driver_error, sizeof driver_error,
                                     PRISM_ERR_NO_DEVICE,
                                     "cuInit failed: %s (error %d)",
                                     text ? text : "unknown", (int)rc);
        return;
    }
    driver_status = PRISM_OK;
}

prism_status prism_driver_get(const prism_driver **out, char *err,
                              size_t err_size) {
    pthread_once(&driver_once, load_driver);
    if (driver_status != PRISM_OK) {
        prism_strlcpy(err, driver_error, err_size);
        *out = NULL;
        return driver_status;
    }
    *out = &driver;
    return PRISM_OK;
}

prism_status prism_cuda_error(const prism_driver *drv, CUresult rc,
                              const char *what, char *err, size_t err_size) {
    const char *text = NULL;
    if (drv && drv->get_error_string)
        drv->get_error_string(rc, &text);
    return prism_errorf(err, err_size, PRISM_ERR_CUDA, "%s: CUDA error %d (%s)",
                        what, (int)rc, text ? text : "unknown");
}

prism_status prism_event_elapsed(const prism_driver *drv, CUevent start,
                                 CUevent stop, const char *what, float *ms,
                                 char *err, size_t err_size) {
    CUresult rc = drv->event_synchronize(stop);
    if (rc == CUDA_SUCCESS)
        rc = drv->event_elapsed_time(ms, start, stop);
    return rc == CUDA_SUCCESS ? PRISM_OK
                              : prism_cuda_error(drv, rc, what, err, err_size);
}
