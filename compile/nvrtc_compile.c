/*
 * nvrtc_compile.c - compile generated CUDA source with NVRTC.
 *
 * We compile straight to a cubin for the exact arch (sm_90a, not
 * compute_90a): the driver then loads it with no JIT step and the arch's
 * own instructions (wgmma, setmaxnreg) are available.  The one exception
 * is PRISM_ARCH_PTX (compute_80): PTX text, NUL included, for devices no
 * cubin covers, which the driver compiles when it loads the module.  ptxas runs with -v
 * so the program log carries registers, spills and shared memory, which the
 * cache stores and the autotuner prunes on.  Some NVRTC builds return an
 * empty log for a successful compile; the statistics are then read from
 * the cubin itself (cubin_info.c), all but the spills.  Nothing here
 * aborts: every NVRTC failure is a status plus the log.
 *
 * NVRTC itself is opened with dlopen at the first compile (PRISM_NVRTC_PATH,
 * else libnvrtc.so.13, .12): a host that runs only from a kernel pack, or
 * with PRISM_JIT=off, needs no CUDA toolkit, and no process pays for a
 * probe compile at start-up.
 */
#include "compile/nvrtc_compile.h"
#include "compile/cubin_info.h"

#include "base/arch.h"
#include "base/base.h"
#include "base/parse.h"

#include <cuda.h>
#include <dlfcn.h>
#include <nvrtc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* X(field, prototype-name): the NVRTC entry points the compiler uses.  They
 * are looked up with dlsym, so libprism does not need libnvrtc at load time:
 * a host that runs only from a kernel pack never loads it. */
#define PRISM_NVRTC_FUNCTIONS(X)                                              \
    X(version, nvrtcVersion)                                                  \
    X(get_error_string, nvrtcGetErrorString)                                  \
    X(create_program, nvrtcCreateProgram)                                     \
    X(compile_program, nvrtcCompileProgram)                                   \
    X(destroy_program, nvrtcDestroyProgram)                                   \
    X(get_program_log_size, nvrtcGetProgramLogSize)                           \
    X(get_program_log, nvrtcGetProgramLog)                                    \
    X(get_cubin_size, nvrtcGetCUBINSize)                                      \
    X(get_cubin, nvrtcGetCUBIN)                                               \
    X(get_ptx_size, nvrtcGetPTXSize)                                          \
    X(get_ptx, nvrtcGetPTX)

typedef struct nvrtc_api {
#define NVRTC_FIELD_(field, proto) __typeof__(proto) *field;
    PRISM_NVRTC_FUNCTIONS(NVRTC_FIELD_)
#undef NVRTC_FIELD_
} nvrtc_api;

static nvrtc_api nvrtc;
static prism_status nvrtc_status;
static char nvrtc_error[PRISM_ERRMSG_MAX];
static char loaded_version[64];
static pthread_once_t nvrtc_once = PTHREAD_ONCE_INIT;

/* The libraries tried, in order, when PRISM_NVRTC_PATH is not set: the
 * major version the library was built with first, then the previous one. */
static const char *const nvrtc_names[] = {"libnvrtc.so.13", "libnvrtc.so.12",
                                          "libnvrtc.so"};

static void *open_nvrtc(char *tried, size_t size) {
    const char *path = getenv("PRISM_NVRTC_PATH");
    if (path && *path) {
        snprintf(tried, size, "%s (PRISM_NVRTC_PATH)", path);
        return dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    tried[0] = '\0';
    for (size_t i = 0; i < PRISM_ARRAY_LEN(nvrtc_names); i++) {
        void *lib = dlopen(nvrtc_names[i], RTLD_NOW | RTLD_LOCAL);
        if (lib)
            return lib;
        size_t used = strlen(tried);
        snprintf(tried + used, size - used, "%s%s", i ? ", " : "",
                 nvrtc_names[i]);
    }
    return NULL;
}

static void load_nvrtc(void) {
    char tried[PRISM_PATH_MAX + 64];
    void *lib = open_nvrtc(tried, sizeof tried);
    if (!lib) {
        nvrtc_status = prism_errorf(
            nvrtc_error, sizeof nvrtc_error, PRISM_ERR_NVRTC,
            "NVRTC not found (looked for %s); install the CUDA toolkit's "
            "NVRTC, set PRISM_NVRTC_PATH to libnvrtc.so, or ship a kernel "
            "pack for this config and arch",
            tried);
        return;
    }
#define NVRTC_LOAD_(field, proto)                                              \
    nvrtc.field = (__typeof__(proto) *)dlsym(lib, #proto);                     \
    if (!nvrtc.field) {                                                        \
        nvrtc_status = prism_errorf(nvrtc_error, sizeof nvrtc_error,           \
                                    PRISM_ERR_NVRTC,                           \
                                    "%s lacks %s; use NVRTC 12 or newer",      \
                                    tried, #proto);                            \
        return;                                                                \
    }
    PRISM_NVRTC_FUNCTIONS(NVRTC_LOAD_)
#undef NVRTC_LOAD_
    int major = 0, minor = 0;
    if (nvrtc.version(&major, &minor) != NVRTC_SUCCESS)
        snprintf(loaded_version, sizeof loaded_version, "unknown");
    else
        snprintf(loaded_version, sizeof loaded_version, "%d.%d", major, minor);
    nvrtc_status = PRISM_OK;
}

prism_status prism_nvrtc_load(char *err, size_t err_size) {
    pthread_once(&nvrtc_once, load_nvrtc);
    if (nvrtc_status != PRISM_OK)
        prism_strlcpy(err, nvrtc_error, err_size);
    return nvrtc_status;
}

/* The cache key names the CUDA generation the library was built for
 * (major.minor of its toolkit headers), not the patch level of whatever
 * NVRTC happens to be installed: a cubin for an exact arch does not depend
 * on it, and the key must be computable on a host without NVRTC. */
static char key_version[32];
static pthread_once_t key_version_once = PTHREAD_ONCE_INIT;

static void fill_key_version(void) {
    snprintf(key_version, sizeof key_version, "nvrtc %d.%d",
             CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10);
}

const char *prism_nvrtc_version(void) {
    pthread_once(&key_version_once, fill_key_version);
    return key_version;
}

const char *prism_nvrtc_loaded_version(void) {
    char err[PRISM_ERRMSG_MAX];
    return prism_nvrtc_load(err, sizeof err) == PRISM_OK ? loaded_version
                                                         : "not found";
}

static bool line_info;
static pthread_once_t line_info_once = PTHREAD_ONCE_INIT;

/* Not a switch: off (the context reports the value). */
static void read_line_info(void) {
    char why[PRISM_ERRMSG_MAX];
    if (prism_env_bool("PRISM_LINEINFO", false, &line_info, why, sizeof why) !=
        PRISM_OK)
        line_info = false;
}

bool prism_nvrtc_line_info(void) {
    pthread_once(&line_info_once, read_line_info);
    return line_info;
}

int prism_nvrtc_options(prism_arch arch, const char **opts) {
    static const char *const arch_opts[PRISM_ARCH_COUNT_] = {
        [PRISM_ARCH_SM80] = "--gpu-architecture=sm_80",
        [PRISM_ARCH_SM86] = "--gpu-architecture=sm_86",
        [PRISM_ARCH_SM89] = "--gpu-architecture=sm_89",
        [PRISM_ARCH_SM90A] = "--gpu-architecture=sm_90a",
        [PRISM_ARCH_SM100] = "--gpu-architecture=sm_100",
        [PRISM_ARCH_SM120] = "--gpu-architecture=sm_120",
        [PRISM_ARCH_PTX] = "--gpu-architecture=compute_80"};
    int n = 0;
    opts[n++] = arch_opts[arch];
    opts[n++] = "--std=c++17";
    if (!prism_arch_is_ptx(arch))
        opts[n++] = "--ptxas-options=-v"; /* no ptxas runs for PTX */
    if (prism_nvrtc_line_info())
        opts[n++] = "--generate-line-info";
    opts[n++] = "--device-as-default-execution-space";
    /* every kernel sees every constant; unused ones are not a problem */
    opts[n++] = "--diag-suppress=177";
    return n;
}

/* Value of the integer just before `suffix` in line, or -1. */
static int number_before(const char *line, const char *suffix) {
    const char *p = strstr(line, suffix);
    if (!p)
        return -1;
    while (p > line && p[-1] == ' ')
        p--;
    const char *q = p;
    while (q > line && q[-1] >= '0' && q[-1] <= '9')
        q--;
    return q < p ? atoi(q) : -1;
}

void prism_nvrtc_parse_info(const char *log, prism_nvrtc_result *r) {
    r->registers = r->spill_bytes = r->shared_bytes = r->local_bytes = -1;
    if (!log)
        return;
    int spill_stores = -1, spill_loads = -1;
    for (const char *line = log; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[512];
        if (len >= sizeof buf)
            len = sizeof buf - 1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        int v;
        /* Several entry points: report the worst of each statistic. */
        if ((v = number_before(buf, " registers")) > r->registers)
            r->registers = v;
        if ((v = number_before(buf, " bytes smem")) > r->shared_bytes)
            r->shared_bytes = v;
        if ((v = number_before(buf, " bytes stack frame")) > r->local_bytes)
            r->local_bytes = v;
        if ((v = number_before(buf, " bytes spill stores")) > spill_stores)
            spill_stores = v;
        if ((v = number_before(buf, " bytes spill loads")) > spill_loads)
            spill_loads = v;
        line = end ? end + 1 : line + len;
    }
    if (spill_stores >= 0 || spill_loads >= 0)
        r->spill_bytes = (spill_stores > 0 ? spill_stores : 0) +
                         (spill_loads > 0 ? spill_loads : 0);
    if (r->registers >= 0 && r->shared_bytes < 0)
        r->shared_bytes = 0; /* ptxas omits smem when there is none */
}

void prism_nvrtc_stats(const char *log, const void *image, size_t size,
                       prism_nvrtc_result *r) {
    prism_nvrtc_parse_info(log, r);
    r->stats_from_cubin = false;
    prism_cubin_stats c;
    if (r->registers >= 0 || !prism_cubin_read_stats(image, size, &c))
        return;
    r->registers = c.registers;
    r->shared_bytes = c.shared_bytes;
    r->local_bytes = c.frame_bytes > c.stack_bytes ? c.frame_bytes
                                                   : c.stack_bytes;
    r->spill_bytes = -1; /* a cubin does not tell spills from other local
                            memory */
    r->stats_from_cubin = true;
}

/* First line of the log that mentions an error, for the one-line message. */
static void first_error_line(const char *log, char *out, size_t size) {
    const char *p = log ? strstr(log, "error") : NULL;
    if (!p) {
        prism_strlcpy(out, "no error line in the NVRTC log", size);
        return;
    }
    while (p > log && p[-1] != '\n')
        p--;
    size_t len = strcspn(p, "\n");
    if (len >= size)
        len = size - 1;
    memcpy(out, p, len);
    out[len] = '\0';
}

static char *copy_log(nvrtcProgram prog) {
    size_t n = 0;
    if (nvrtc.get_program_log_size(prog, &n) != NVRTC_SUCCESS || n == 0)
        n = 1;
    char *log = calloc(1, n);
    if (log && n > 1 && nvrtc.get_program_log(prog, log) != NVRTC_SUCCESS)
        log[0] = '\0';
    return log;
}

/* ---- phase times ----------------------------------------------------------
 * NVRTC's --time=FILE appends one CSV row per phase to FILE ("k.cu, CUDA
 * C++ Frontend, 132, ms"; no heading when the file exists already). */

typedef struct phase_file {
    char path[PRISM_PATH_MAX];
    char option[PRISM_PATH_MAX + 16];
} phase_file;

/* An empty temporary file for the rows, or false (then no phases). */
static bool phase_file_open(phase_file *f) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int n = snprintf(f->path, sizeof f->path, "%s/prism-nvrtc-time-XXXXXX",
                     dir);
    if (n < 0 || (size_t)n >= sizeof f->path)
        return false;
    int fd = mkstemp(f->path);
    if (fd < 0)
        return false;
    close(fd);
    snprintf(f->option, sizeof f->option, "--time=%s", f->path);
    return true;
}

/* Reads the rows into r's phase fields and removes the file. */
static void phase_file_read(phase_file *f, prism_nvrtc_result *r) {
    char text[2048] = "";
    FILE *in = fopen(f->path, "r");
    if (in) {
        size_t n = fread(text, 1, sizeof text - 1, in);
        text[n] = '\0';
        fclose(in);
    }
    unlink(f->path);
    static const struct {
        const char *phase;
        size_t field;
    } phases[] = {
        {", CUDA C++ Frontend, ", offsetof(prism_nvrtc_result, frontend_ms)},
        {", NVVM Optimizer, ", offsetof(prism_nvrtc_result, nvvm_ms)},
        {", PTX Translation, ", offsetof(prism_nvrtc_result, ptxas_ms)},
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(phases); i++) {
        const char *p = strstr(text, phases[i].phase);
        double *field = (double *)((char *)r + phases[i].field);
        if (p)
            *field = strtod(p + strlen(phases[i].phase), NULL);
    }
    if (r->frontend_ms >= 0 && r->ptxas_ms < 0)
        r->ptxas_ms = 0; /* PTX: no ptxas */
}

static double thread_cpu_ms(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0)
        return 0;
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

prism_status prism_nvrtc_compile(const char *source, const char *name,
                                 prism_arch arch, prism_nvrtc_result *result,
                                 char *err, size_t err_size) {
    return prism_nvrtc_compile_ex(source, name, arch, NULL, result, err,
                                  err_size);
}

prism_status prism_nvrtc_compile_ex(const char *source, const char *name,
                                    prism_arch arch,
                                    const prism_nvrtc_extra *extra,
                                    prism_nvrtc_result *result, char *err,
                                    size_t err_size) {
    prism_status st = PRISM_OK;
    nvrtcProgram prog = NULL;
    if (!source || !result)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_nvrtc_compile: NULL argument");
    memset(result, 0, sizeof *result);
    result->frontend_ms = result->nvvm_ms = result->ptxas_ms = -1;
    if (!prism_arch_name(arch))
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "unknown arch value %d", (int)arch);
    prism_status loaded = prism_nvrtc_load(err, err_size);
    if (loaded != PRISM_OK)
        return loaded;
    const char *opts[PRISM_NVRTC_MAX_OPTIONS + 2];
    int n_opts = prism_nvrtc_options(arch, opts);
    phase_file times;
    bool phases = extra && extra->phases && phase_file_open(&times);
    if (phases)
        opts[n_opts++] = times.option;
    char split[48];
    if (extra && extra->ptxas_threads > 1 && !prism_arch_is_ptx(arch)) {
        snprintf(split, sizeof split, "--ptxas-options=--split-compile=%d",
                 extra->ptxas_threads < 64 ? extra->ptxas_threads : 64);
        opts[n_opts++] = split;
    }

    double t0 = prism_now_ms(), c0 = thread_cpu_ms();
    nvrtcResult rc = nvrtc.create_program(&prog, source, name, 0, NULL, NULL);
    if (rc != NVRTC_SUCCESS) {
        st = prism_errorf(err, err_size, PRISM_ERR_NVRTC,
                          "%s: nvrtcCreateProgram failed: %s", name,
                          nvrtc.get_error_string(rc));
        if (phases)
            unlink(times.path);
        goto fail;
    }
    rc = nvrtc.compile_program(prog, n_opts, opts);
    result->compile_ms = prism_now_ms() - t0;
    result->cpu_ms = thread_cpu_ms() - c0;
    if (phases)
        phase_file_read(&times, result);
    result->log = copy_log(prog);
    if (!result->log) {
        st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                          "%s: out of memory reading the NVRTC log", name);
        goto fail;
    }
    if (rc != NVRTC_SUCCESS) {
        char line[512];
        first_error_line(result->log, line, sizeof line);
        st = prism_errorf(err, err_size, PRISM_ERR_NVRTC,
                          "%s for %s: %s: %s", name, prism_arch_name(arch),
                          nvrtc.get_error_string(rc), line);
        goto fail;
    }
    bool ptx = prism_arch_is_ptx(arch);
    size_t size = 0;
    if ((ptx ? nvrtc.get_ptx_size(prog, &size)
             : nvrtc.get_cubin_size(prog, &size)) != NVRTC_SUCCESS ||
        size == 0) {
        st = prism_errorf(err, err_size, PRISM_ERR_NVRTC,
                          "%s: NVRTC produced no %s for %s", name,
                          ptx ? "PTX" : "cubin", prism_arch_name(arch));
        goto fail;
    }
    result->cubin = malloc(size);
    if (!result->cubin) {
        st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                          "%s: out of memory for a %zu-byte image", name, size);
        goto fail;
    }
    if ((ptx ? nvrtc.get_ptx(prog, result->cubin)
             : nvrtc.get_cubin(prog, result->cubin)) != NVRTC_SUCCESS) {
        st = prism_errorf(err, err_size, PRISM_ERR_NVRTC,
                          "%s: nvrtcGet%s failed", name, ptx ? "PTX" : "CUBIN");
        goto fail;
    }
    result->cubin_size = size;
    prism_nvrtc_stats(result->log, result->cubin, size, result);
    nvrtc.destroy_program(&prog);
    return PRISM_OK;

fail:
    free(result->cubin);
    result->cubin = NULL;
    result->cubin_size = 0;
    if (prog)
        nvrtc.destroy_program(&prog);
    return st;
}

void prism_nvrtc_result_free(prism_nvrtc_result *result) {
    if (!result)
        return;
    free(result->cubin);
    free(result->log);
    memset(result, 0, sizeof *result);
}
