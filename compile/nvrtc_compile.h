/*
 * nvrtc_compile.h - CUDA source -> cubin through NVRTC, with ptxas statistics.
 */
#ifndef PRISM_NVRTC_COMPILE_H
#define PRISM_NVRTC_COMPILE_H

#include "prism.h"

#include <stdbool.h>
#include <stddef.h>

#define PRISM_NVRTC_MAX_OPTIONS 8

typedef struct prism_nvrtc_result {
    void *cubin; /* malloc'd; for PRISM_ARCH_PTX the PTX text, NUL included */
    size_t cubin_size;
    char *log;   /* malloc'd program log, may be "" */
    /* ptxas statistics (-1 unknown): from the log when ptxas wrote one,
     * else read from the cubin (stats_from_cubin), which records no spills:
     * spill_bytes stays -1 and local_bytes, the stack frame, bounds them */
    int registers, spill_bytes, shared_bytes, local_bytes;
    bool stats_from_cubin;
    double compile_ms; /* wall time of nvrtcCompileProgram */
    double cpu_ms;     /* CPU time of the compiling thread in it */
    /* NVRTC's own phases when asked for (else -1): the C++ front end,
     * NVVM (optimizer and PTX code generation), ptxas (PTX to SASS; 0
     * for PTX, which skips it) */
    double frontend_ms, nvvm_ms, ptxas_ms;
} prism_nvrtc_result;

/* The compiler generation that enters cache keys: "nvrtc MAJOR.MINOR" of
 * the CUDA toolkit the library was built with.  Needs no NVRTC at run time;
 * patch levels never enter a key.  Thread-safe. */
const char *prism_nvrtc_version(void);

/* Loads NVRTC once (PRISM_NVRTC_PATH, else libnvrtc.so.13, .12, .so).
 * Returns PRISM_ERR_NVRTC with what was looked for when it is missing.
 * Thread-safe. */
prism_status prism_nvrtc_load(char *err, size_t err_size);

/* "MAJOR.MINOR" of the NVRTC that compiles (loading it), or "not found".
 * Thread-safe. */
const char *prism_nvrtc_loaded_version(void);

/* The compile options for arch (a cubin for the exact arch; PTX for
 * PRISM_ARCH_PTX).  Returns their count; opts must hold
 * PRISM_NVRTC_MAX_OPTIONS. */
int prism_nvrtc_options(prism_arch arch, const char **opts);

/* Compiles source for arch.  On failure returns PRISM_ERR_NVRTC, the first
 * error line in err and the whole log in result->log.  Thread-safe. */
prism_status prism_nvrtc_compile(const char *source, const char *name,
                                 prism_arch arch, prism_nvrtc_result *result,
                                 char *err, size_t err_size);

/* What a compile may do beyond the keyed options, none of which changes
 * the code (so none enters the cache key): */
typedef struct prism_nvrtc_extra {
    /* NVRTC's time per phase into the result (NVRTC writes them to a
     * temporary file, which is removed) */
    bool phases;
    /* ptxas works on up to this many threads (its --split-compile; <= 1:
     * one), which shortens a program with several functions (the sm_90a
     * attention: two entry points and the split-row merge) and changes
     * little for one function.  The SASS is the same either way
     * (tests/test_cubin_info.c compares it); only the cubin's tool note,
     * which records the command line, differs. */
    int ptxas_threads;
} prism_nvrtc_extra;

/* prism_nvrtc_compile with extra (NULL: nothing extra). */
prism_status prism_nvrtc_compile_ex(const char *source, const char *name,
                                    prism_arch arch,
                                    const prism_nvrtc_extra *extra,
                                    prism_nvrtc_result *result, char *err,
                                    size_t err_size);

/* Whether kernels are compiled with line information ($PRISM_LINEINFO, a
 * switch, read once; off by default): it maps SASS to the generated
 * source in profilers, costs compile time and triples a cubin's size
 * (the cubin then embeds the PTX).  Thread-safe. */
bool prism_nvrtc_line_info(void);

void prism_nvrtc_result_free(prism_nvrtc_result *result);

/* Parses ptxas -v lines of log into the statistics fields of result
 * (exposed for tests; fields not found are -1). */
void prism_nvrtc_parse_info(const char *log, prism_nvrtc_result *result);

/* The statistics of a compiled kernel: from log (may be NULL or "") when
 * it has ptxas lines, else from the cubin image (compile/cubin_info.h),
 * else -1.  Fills only the statistics fields and stats_from_cubin. */
void prism_nvrtc_stats(const char *log, const void *image, size_t size,
                       prism_nvrtc_result *result);

#endif
