/*
 * nvrtc_compile.c - compile generated CUDA source with NVRTC.
 *
 * We compile straight to a cubin for the exact arch (sm_90a, not
 * compute_90a): the driver then loads it with no JIT step and the arch's
 * own instructions (wgmma, setmaxnreg) are available.  ptxas runs with -v
 * so the program log carries registers, spills and shared memory, which the
 * cache stores and the autotuner prunes on.  Nothing here aborts: every
 * NVRTC failure is a status plus the log.
 */
#include "compile/nvrtc_compile.h"

#include "base/base.h"

#include <nvrtc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static char version_text[128];
static pthread_once_t version_once = PTHREAD_ONCE_INIT;

/* NVRTC reports only major.minor through its API; the toolkit build
 * ("V13.0.88") is printed in the header of every PTX file it writes. */
static void read_version(void) {
    int major = 0, minor = 0;
    if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) {
        snprintf(version_text, sizeof version_text, "unknown");
        return;
    }
    char build[64] = "unknown build";
    nvrtcProgram prog = NULL;
    const char *src = "extern \"C\" __global__ void prism_probe() {}\n";
    const char *opts[] = {"--gpu-architecture=compute_80"};
    if (nvrtcCreateProgram(&prog, src, "probe.cu", 0, NULL, NULL) ==
            NVRTC_SUCCESS &&
        nvrtcCompileProgram(prog, 1, opts) == NVRTC_SUCCESS) {
        size_t n = 0;
        if (nvrtcGetPTXSize(prog, &n) == NVRTC_SUCCESS && n) {
            char *ptx = malloc(n);
            if (ptx && nvrtcGetPTX(prog, ptx) == NVRTC_SUCCESS) {
                const char *v = strstr(ptx, ", V");
                if (v) {
                    size_t k = 0;
                    v += 2;
                    while (v[k] && v[k] != '\n' && v[k] != '\r' &&
                           k + 1 < sizeof build)
                        k++;
                    memcpy(build, v, k);
                    build[k] = '\0';
                }
            }
            free(ptx);
        }
    }
    nvrtcDestroyProgram(&prog);
    snprintf(version_text, sizeof version_text, "%d.%d (%s)", major, minor,
             build);
}

const char *prism_nvrtc_version(void) {
    pthread_once(&version_once, read_version);
    return version_text;
}

int prism_nvrtc_options(prism_arch arch, const char **opts) {
    static const char *const arch_opts[PRISM_ARCH_COUNT_] = {
        "--gpu-architecture=sm_80", "--gpu-architecture=sm_86",
        "--gpu-architecture=sm_89", "--gpu-architecture=sm_90a"};
    int n = 0;
    opts[n++] = arch_opts[arch];
    opts[n++] = "--std=c++17";
    opts[n++] = "--ptxas-options=-v";
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
    if (nvrtcGetProgramLogSize(prog, &n) != NVRTC_SUCCESS || n == 0)
        n = 1;
    char *log = calloc(1, n);
    if (log && n > 1 && nvrtcGetProgramLog(prog, log) != NVRTC_SUCCESS)
        log[0] = '\0';
    return log;
}

prism_status prism_nvrtc_compile(const char *source, const char *name,
                                 prism_arch arch, prism_nvrtc_result *result,
                                 char *err, size_t err_size) {
    prism_status st = PRISM_OK;
    nvrtcProgram prog = NULL;
    if (!source || !result)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_nvrtc_compile: NULL argument");
    memset(result, 0, sizeof *result);
    if (!prism_arch_name(arch))
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "unknown arch value %d", (int)arch);
    const char *opts[PRISM_NVRTC_MAX_OPTIONS];
    int n_opts = prism_nvrtc_options(arch, opts);

    double t0 = prism_now_ms();
    nvrtcResult rc = nvrtcCreateProgram(&prog, source, name, 0, NULL, NULL);
    if (rc != NVRTC_SUCCESS) {
        st = prism_errorf(err, err_size, PRISM_ERR_NVRTC,
                          "%s: nvrtcCreateProgram failed: %s", name,
                          nvrtcGetErrorString(rc));
        goto fail;
    }
    rc = nvrtcCompileProgram(prog, n_opts, opts);
    result->compile_ms = prism_now_ms() - t0;
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
                          nvrtcGetErrorString(rc), line);
        goto fail;
    }
    size_t size = 0;
    if (nvrtcGetCUBINSize(prog, &size) != NVRTC_SUCCESS || size == 0) {
        st = prism_errorf(err, err_size, PRISM_ERR_NVRTC,
                          "%s: NVRTC produced no cubin for %s", name,
                          prism_arch_name(arch));
        goto fail;
    }
    result->cubin = malloc(size);
    if (!result->cubin) {
        st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                          "%s: out of memory for a %zu-byte cubin", name, size);
        goto fail;
    }
    if (nvrtcGetCUBIN(prog, result->cubin) != NVRTC_SUCCESS) {
        st = prism_errorf(err, err_size, PRISM_ERR_NVRTC,
                          "%s: nvrtcGetCUBIN failed", name);
        goto fail;
    }
    result->cubin_size = size;
    prism_nvrtc_parse_info(result->log, result);
    nvrtcDestroyProgram(&prog);
    return PRISM_OK;

fail:
    free(result->cubin);
    result->cubin = NULL;
    result->cubin_size = 0;
    if (prog)
        nvrtcDestroyProgram(&prog);
    return st;
}

void prism_nvrtc_result_free(prism_nvrtc_result *result) {
    if (!result)
        return;
    free(result->cubin);
    free(result->log);
    memset(result, 0, sizeof *result);
}
