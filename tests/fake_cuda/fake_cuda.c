/*
 * fake_cuda.c - a stand-in libcuda.so.1 for testing the host side of the
 * GPU code (prism autotune's pipeline) on machines without a GPU.
 *
 * Device memory is host memory (256-byte aligned), kernels do nothing, memsets do
 * nothing (so every candidate "computes" the reference's output) unless
 * FAKE_CUDA_MEMSET is set (then outputs stay poisoned and every candidate
 * mismatches).  CUDA events report a time derived from the bytes of the
 * cubin the kernel was loaded from, so different candidates get different,
 * reproducible times.  FAKE_CUDA_DEVICES sets the device count (default
 * 1); FAKE_CUDA_CC=MAJOR.MINOR the compute capability (default 9.0),
 * with the shared memory limits of that generation.  Several GPU models
 * and GPUs that disagree take comma lists, one item per ordinal (a device
 * past the end of a list, or with an empty item, keeps the default):
 * FAKE_CUDA_NAMES the names (default "Fake GPU (tests/fake_cuda)"),
 * FAKE_CUDA_SMS the SM counts (default 132), and FAKE_CUDA_SKEW the
 * timing of each device: 0 (default) as above; K > 0 in reverse order,
 * with times K times as far apart, so that the kernel slowest on a 0
 * device is the fastest on a K device and two such GPUs of one model
 * always disagree (with K > 1 a kernel's mean over the two is lowest
 * where the K device is fastest).  FAKE_CUDA_FAIL=N
 * makes launches from one cubin in N fail, and with
 * FAKE_CUDA_STICKY the failure breaks the context as an illegal address
 * would.  FAKE_CUDA_TRACE=FILE appends one line per stream operation
 * ("launch", "memset BYTES", "event", and "module cubin" or "module
 * ptx" per module loaded) to FILE, so a test can check what a command
 * enqueues and in which order; with FAKE_CUDA_GRIDS set as well, a
 * launch is followed by "grid X Y Z".  Streams are checked: an operation
 * on a handle that is neither NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD
 * nor a live one from cuStreamCreate fails with CUDA_ERROR_INVALID_HANDLE
 * (a real driver may crash on it), so a stream mangled on its way from a
 * caller is seen.  NVRTC dlopens libcuda.so.1 too and asks for
 * cuGetExportTable, which is refused.  Only the tests load it, through
 * LD_LIBRARY_PATH of a child process.
 */
#include <cuda.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MODULES 4096
#define MAX_EVENTS 1024
#define MAX_STREAMS 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int broken;

static int env_int(const char *name, int fallback) {
    const char *e = getenv(name);
    return e && *e ? atoi(e) : fallback;
}

/* Item `index` of the comma list in $name, copied into buf; false when
 * the list is unset, too short or the item empty. */
static bool env_item(const char *name, int index, char *buf, size_t size) {
    const char *p = getenv(name);
    if (!p || !*p)
        return false;
    for (int i = 0; i < index && p; i++) {
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    if (!p)
        return false;
    size_t n = strcspn(p, ",");
    if (n == 0 || n >= size)
        return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return true;
}

static int env_item_int(const char *name, int index, int fallback) {
    char buf[32];
    return env_item(name, index, buf, sizeof buf) ? atoi(buf) : fallback;
}

static void trace(const char *fmt, ...) {
    const char *path = getenv("FAKE_CUDA_TRACE");
    FILE *f = path && *path ? fopen(path, "a") : NULL;
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

CUresult cuInit(unsigned flags) {
    (void)flags;
    return CUDA_SUCCESS;
}

CUresult cuGetErrorString(CUresult e, const char **s) {
    (void)e;
    *s = "fake driver error";
    return CUDA_SUCCESS;
}

CUresult cuGetExportTable(const void **table, const CUuuid *id) {
    (void)id;
    *table = NULL;
    return CUDA_ERROR_NOT_SUPPORTED;
}

CUresult cuDriverGetVersion(int *v) {
    *v = 13000;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *n) {
    *n = env_int("FAKE_CUDA_DEVICES", 1);
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *d, int ordinal) {
    if (ordinal < 0 || ordinal >= env_int("FAKE_CUDA_DEVICES", 1))
        return CUDA_ERROR_INVALID_DEVICE;
    *d = ordinal;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice d) {
    char own[256];
    if (!env_item("FAKE_CUDA_NAMES", d, own, sizeof own))
        strcpy(own, "Fake GPU (tests/fake_cuda)");
    strncpy(name, own, (size_t)len);
    return CUDA_SUCCESS;
}

/* FAKE_CUDA_CC, "9.0" by default. */
static void compute_capability(int *major, int *minor) {
    const char *e = getenv("FAKE_CUDA_CC");
    *major = 9;
    *minor = 0;
    if (e && *e && sscanf(e, "%d.%d", major, minor) != 2)
        *major = 9, *minor = 0;
}

/* Shared memory per CTA (opt-in) of a generation: 99 KB on 8.6, 8.9 and
 * 12.x, 163 KB on 8.0 and 8.7, 227 KB elsewhere. */
static int smem_optin(int major, int minor) {
    if ((major == 8 && (minor == 6 || minor == 9)) || major == 12)
        return 99 * 1024;
    return major == 8 ? 163 * 1024 : 227 * 1024;
}

CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d) {
    int major, minor;
    compute_capability(&major, &minor);
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
        *v = major;
        break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
        *v = minor;
        break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
        *v = env_item_int("FAKE_CUDA_SMS", d, 132);
        break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
        *v = smem_optin(major, minor);
        break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR:
        *v = smem_optin(major, minor) + 1024;
        break;
    default:
        *v = 0;
    }
    return CUDA_SUCCESS;
}

static int contexts[64];
/* The device of the calling thread's current context. */
static __thread int current_device;

CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) {
    *c = (CUcontext)&contexts[d & 63];
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) {
    (void)d;
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext c) {
    if (c)
        current_device = (int)((int *)c - contexts);
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void) {
    return broken ? CUDA_ERROR_ILLEGAL_ADDRESS : CUDA_SUCCESS;
}

/* Streams: slots of this array, live between create and destroy. */
static int streams[MAX_STREAMS];

CUresult cuStreamCreate(CUstream *s, unsigned flags) {
    (void)flags;
    pthread_mutex_lock(&lock);
    int i = 0;
    while (i < MAX_STREAMS && streams[i])
        i++;
    if (i < MAX_STREAMS)
        streams[i] = 1;
    pthread_mutex_unlock(&lock);
    if (i == MAX_STREAMS)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *s = (CUstream)&streams[i];
    return CUDA_SUCCESS;
}

static int stream_slot(CUstream s) {
    uintptr_t p = (uintptr_t)s, first = (uintptr_t)streams;
    if (p < first || p >= first + sizeof streams || (p - first) % sizeof(int))
        return -1;
    return (int)((p - first) / sizeof(int));
}

CUresult cuStreamDestroy(CUstream s) {
    int i = stream_slot(s);
    if (i < 0 || !streams[i])
        return CUDA_ERROR_INVALID_HANDLE;
    streams[i] = 0;
    return CUDA_SUCCESS;
}

static int stream_ok(CUstream s) {
    if (!s || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
        return 1;
    int i = stream_slot(s);
    return i >= 0 && streams[i];
}

CUresult cuStreamSynchronize(CUstream s) {
    return stream_ok(s) ? cuCtxSynchronize() : CUDA_ERROR_INVALID_HANDLE;
}

/* A module: the hash of its cubin and its functions (names). */
typedef struct fake_module {
    uint64_t hash;
    char functions[4][64];
} fake_module;

static fake_module modules[MAX_MODULES];
static int n_modules;

/* A cubin is an ELF file; anything else is taken for PTX text, which the
 * real driver compiles here (and which is NUL-terminated). */
CUresult cuModuleLoadData(CUmodule *m, const void *image) {
    const unsigned char *p = image;
    bool elf = memcmp(p, "\177ELF", 4) == 0;
    size_t n = elf ? 2048 : strnlen(image, 2048);
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    trace("module %s", elf ? "cubin" : "ptx");
    pthread_mutex_lock(&lock);
    fake_module *f = &modules[n_modules++ % MAX_MODULES];
    pthread_mutex_unlock(&lock);
    memset(f, 0, sizeof *f);
    f->hash = h;
    *m = (CUmodule)f;
    return CUDA_SUCCESS;
}

CUresult cuModuleUnload(CUmodule m) {
    (void)m;
    return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction *fn, CUmodule m, const char *name) {
    fake_module *f = (fake_module *)m;
    for (int i = 0; i < 4; i++)
        if (!f->functions[i][0] || !strcmp(f->functions[i], name)) {
            strncpy(f->functions[i], name, 63);
            *fn = (CUfunction)f->functions[i];
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_NOT_FOUND;
}

/* Prism reads no module globals (launch shapes come from the kernel
 * specs); the symbol exists because the driver table loads it. */
CUresult cuModuleGetGlobal_v2(CUdeviceptr *p, size_t *bytes, CUmodule m,
                              const char *name) {
    (void)p, (void)bytes, (void)m, (void)name;
    return CUDA_ERROR_NOT_FOUND;
}

CUresult cuTensorMapEncodeTiled(CUtensorMap *map, CUtensorMapDataType t,
                                 cuuint32_t rank, void *addr,
                                 const cuuint64_t *dims,
                                 const cuuint64_t *strides,
                                 const cuuint32_t *box,
                                 const cuuint32_t *elem_strides,
                                 CUtensorMapInterleave il,
                                 CUtensorMapSwizzle sw,
                                 CUtensorMapL2promotion l2,
                                 CUtensorMapFloatOOBfill oob) {
    (void)t, (void)addr, (void)dims, (void)strides, (void)box;
    (void)elem_strides, (void)il, (void)sw, (void)l2, (void)oob;
    if (!map || rank < 1 || rank > 5)
        return CUDA_ERROR_INVALID_VALUE;
    memset(map, 0, sizeof *map);
    return CUDA_SUCCESS;
}

CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v) {
    (void)f, (void)a, (void)v;
    return CUDA_SUCCESS;
}

CUresult cuFuncGetAttribute(int *v, CUfunction_attribute a, CUfunction f) {
    (void)a, (void)f;
    *v = 0;
    return CUDA_SUCCESS;
}

/* Fake time on this thread's stream, in microseconds. */
static __thread uint64_t clock_us;

/* The runtime's one launch entry point (runtime/cuda/launch.c: launch_as). */
CUresult cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **args,
                          void **extra) {
    (void)args, (void)extra;
    if (!stream_ok(c->hStream))
        return CUDA_ERROR_INVALID_HANDLE;
    if (c->blockDimX == 0 || c->blockDimX > 1024 || broken)
        return CUDA_ERROR_INVALID_VALUE;
    size_t off = (size_t)((char *)f - (char *)modules) % sizeof(fake_module);
    const fake_module *m = (const fake_module *)((char *)f - off);
    int fail = env_int("FAKE_CUDA_FAIL", 0);
    if (fail > 0 && m->hash % (uint64_t)fail == 0) {
        if (getenv("FAKE_CUDA_STICKY"))
            broken = 1;
        return CUDA_ERROR_LAUNCH_FAILED;
    }
    uint64_t t = m->hash % 997;
    int skew = env_item_int("FAKE_CUDA_SKEW", current_device, 0);
    if (skew > 0) /* FAKE_CUDA_SKEW: this device ranks in reverse */
        t = (uint64_t)skew * (996 - t);
    clock_us += 10 + t;
    trace("launch");
    if (getenv("FAKE_CUDA_GRIDS"))
        trace("grid %u %u %u %s", c->gridDimX, c->gridDimY, c->gridDimZ,
              (const char *)f); /* f is the name in the module's table */
    return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
    void *x = NULL; /* 256-byte aligned, zeroed: what cuMemAlloc promises */
    if (posix_memalign(&x, 256, n ? n : 1) != 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    memset(x, 0, n ? n : 1);
    *p = (CUdeviceptr)(uintptr_t)x;
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr p) {
    free((void *)(uintptr_t)p);
    return CUDA_SUCCESS;
}

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
    *free_bytes = *total = (size_t)80 << 30;
    return CUDA_SUCCESS;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n) {
    memcpy((void *)(uintptr_t)d, s, n);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n) {
    memcpy(d, (const void *)(uintptr_t)s, n);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, CUstream st) {
    if (!stream_ok(st))
        return CUDA_ERROR_INVALID_HANDLE;
    return cuMemcpyDtoH_v2(d, s, n);
}

CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s) {
    if (!stream_ok(s))
        return CUDA_ERROR_INVALID_HANDLE;
    if (getenv("FAKE_CUDA_MEMSET"))
        memset((void *)(uintptr_t)d, v, n);
    trace("memset %zu", n);
    return CUDA_SUCCESS;
}

CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned v, size_t n) {
    unsigned *p = (unsigned *)(uintptr_t)d;
    for (size_t i = 0; i < n; i++)
        p[i] = v;
    return CUDA_SUCCESS;
}

typedef struct fake_event {
    uint64_t at;
} fake_event;

static fake_event events[MAX_EVENTS];
static int n_events;

CUresult cuEventCreate(CUevent *e, unsigned flags) {
    (void)flags;
    pthread_mutex_lock(&lock);
    *e = (CUevent)&events[n_events++ % MAX_EVENTS];
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(CUevent e) {
    (void)e;
    return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent e, CUstream s) {
    if (!stream_ok(s))
        return CUDA_ERROR_INVALID_HANDLE;
    ((fake_event *)e)->at = clock_us;
    trace("event");
    return CUDA_SUCCESS;
}

CUresult cuEventSynchronize(CUevent e) {
    (void)e;
    return broken ? CUDA_ERROR_ILLEGAL_ADDRESS : CUDA_SUCCESS;
}

CUresult cuEventElapsedTime_v2(float *ms, CUevent a, CUevent b) {
    *ms = (float)(((fake_event *)b)->at - ((fake_event *)a)->at) / 1000.0f;
    return CUDA_SUCCESS;
}
