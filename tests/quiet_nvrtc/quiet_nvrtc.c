/*
 * quiet_nvrtc.c - a stand-in libnvrtc.so that forwards to the real NVRTC
 * but, like some NVRTC builds, returns an empty program log for every
 * compile that succeeds (ptxas statistics included).  Tests point
 * PRISM_NVRTC_PATH at it to check that kernel statistics survive without
 * the log.  QUIET_NVRTC_REAL names the real library (default
 * libnvrtc.so.13).
 */
#include <dlfcn.h>
#include <nvrtc.h>
#include <pthread.h>
#include <stdlib.h>

#define FORWARDED(X)                                                          \
    X(nvrtcVersion)                                                           \
    X(nvrtcGetErrorString)                                                    \
    X(nvrtcCreateProgram)                                                     \
    X(nvrtcCompileProgram)                                                    \
    X(nvrtcDestroyProgram)                                                    \
    X(nvrtcGetProgramLogSize)                                                 \
    X(nvrtcGetProgramLog)                                                     \
    X(nvrtcGetCUBINSize)                                                      \
    X(nvrtcGetCUBIN)                                                          \
    X(nvrtcGetPTXSize)                                                        \
    X(nvrtcGetPTX)

static struct {
#define FIELD_(name) __typeof__(name) *name;
    FORWARDED(FIELD_)
#undef FIELD_
} real;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    const char *path = getenv("QUIET_NVRTC_REAL");
    void *lib = dlopen(path && *path ? path : "libnvrtc.so.13",
                       RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return;
#define LOAD_(name) real.name = (__typeof__(name) *)dlsym(lib, #name);
    FORWARDED(LOAD_)
#undef LOAD_
}

#define REAL(name) (pthread_once(&once, load), real.name)
#define FORWARD(name, ...)                                                    \
    return REAL(name) ? real.name(__VA_ARGS__) : NVRTC_ERROR_INTERNAL_ERROR

/* Programs whose compile succeeded: their log is withheld. */
static nvrtcProgram quiet[1024];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int is_quiet(nvrtcProgram p) {
    int found = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 1024 && !found; i++)
        found = quiet[i] == p;
    pthread_mutex_unlock(&lock);
    return found;
}

static void set_quiet(nvrtcProgram p, nvrtcProgram value) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 1024; i++)
        if (quiet[i] == p) {
            quiet[i] = value;
            break;
        }
    pthread_mutex_unlock(&lock);
}

nvrtcResult nvrtcVersion(int *major, int *minor) {
    return REAL(nvrtcVersion) ? real.nvrtcVersion(major, minor)
                              : NVRTC_ERROR_INTERNAL_ERROR;
}

const char *nvrtcGetErrorString(nvrtcResult r) {
    return REAL(nvrtcGetErrorString) ? real.nvrtcGetErrorString(r)
                                     : "quiet_nvrtc: no real NVRTC";
}

nvrtcResult nvrtcCreateProgram(nvrtcProgram *p, const char *src,
                               const char *name, int n, const char *const *h,
                               const char *const *hn) {
    if (!REAL(nvrtcCreateProgram))
        return NVRTC_ERROR_INTERNAL_ERROR;
    return real.nvrtcCreateProgram(p, src, name, n, h, hn);
}

nvrtcResult nvrtcCompileProgram(nvrtcProgram p, int n, const char *const *o) {
    if (!REAL(nvrtcCompileProgram))
        return NVRTC_ERROR_INTERNAL_ERROR;
    nvrtcResult r = real.nvrtcCompileProgram(p, n, o);
    if (r == NVRTC_SUCCESS)
        set_quiet(NULL, p);
    return r;
}

nvrtcResult nvrtcDestroyProgram(nvrtcProgram *p) {
    set_quiet(*p, NULL);
    FORWARD(nvrtcDestroyProgram, p);
}

nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram p, size_t *size) {
    if (is_quiet(p)) {
        *size = 0;
        return NVRTC_SUCCESS;
    }
    FORWARD(nvrtcGetProgramLogSize, p, size);
}

nvrtcResult nvrtcGetProgramLog(nvrtcProgram p, char *log) {
    if (is_quiet(p)) {
        log[0] = '\0';
        return NVRTC_SUCCESS;
    }
    FORWARD(nvrtcGetProgramLog, p, log);
}

nvrtcResult nvrtcGetCUBINSize(nvrtcProgram p, size_t *size) {
    FORWARD(nvrtcGetCUBINSize, p, size);
}

nvrtcResult nvrtcGetCUBIN(nvrtcProgram p, char *cubin) {
    FORWARD(nvrtcGetCUBIN, p, cubin);
}

nvrtcResult nvrtcGetPTXSize(nvrtcProgram p, size_t *size) {
    FORWARD(nvrtcGetPTXSize, p, size);
}

nvrtcResult nvrtcGetPTX(nvrtcProgram p, char *ptx) {
    FORWARD(nvrtcGetPTX, p, ptx);
}
