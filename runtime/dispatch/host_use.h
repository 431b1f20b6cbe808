/*
 * host_use.h - which kernel cache entries this host will use
 * (`prism cache verify`).
 *
 * A plan asks the cache for a key that hashes, besides the generated
 * source and the options, the Prism release, the compiler generation
 * ("nvrtc 13.0") and the arch; so an entry serves a host only when both
 * match its own, when its arch is one the plan takes for the host's device
 * (base/arch.c: the device's own cubin, else its family's, else the PTX),
 * and when it passes the cache's trust rule.  Each entry's header records
 * its config, kernel, arch, compiler and release, which is enough to say,
 * per entry, whether this host will use it and if not why -- without the
 * config files that made it.
 */
#ifndef PRISM_HOST_USE_H
#define PRISM_HOST_USE_H

#include "cache/cache.h"

/* What this host asks the cache for. */
typedef struct prism_host {
    char prism_version[16]; /* PRISM_VERSION_STRING                      */
    char compiler[32];      /* the GPU keys' compiler, "nvrtc 13.0"      */
    bool device;            /* a CUDA device answered                   */
    int ordinal, cc_major, cc_minor;
    char device_name[128];
    char no_device[PRISM_ERRMSG_MAX]; /* why none, when !device           */
    prism_arch order[PRISM_ARCH_COUNT_]; /* the archs a plan tries, best first */
    int n_order;
    bool jit;                         /* a miss compiles here              */
    char no_jit[PRISM_ERRMSG_MAX];    /* why not, when !jit                */
    char cpu_compiler[32];            /* CPU keys' compiler, "" without one */
    char cpu_name[64];                /* the CPU plans' target CPU         */
} prism_host;

/* Fills host from this process: the CUDA device of `ordinal` (the driver
 * is loaded; no context is created), PRISM_JIT and whether NVRTC loads,
 * the CPU backend's target.  Never fails: what is missing is said in
 * no_device / no_jit. */
void prism_host_probe(int ordinal, prism_host *host);

typedef enum prism_host_use {
    PRISM_HOST_USES,          /* its kernel's first choice on this host  */
    PRISM_HOST_FALLBACK,      /* used while nothing better of it is found */
    PRISM_HOST_SPARE,         /* runs here, but a better image comes first */
    PRISM_HOST_NO_DEVICE,     /* all else fits; no device to match its arch */
    PRISM_HOST_OTHER_DEVICE,  /* its arch does not run on this device      */
    PRISM_HOST_OTHER_COMPILER,/* keyed for another compiler generation     */
    PRISM_HOST_OTHER_RELEASE, /* keyed by another Prism release           */
    PRISM_HOST_UNTRUSTED,     /* fails the trust rule                     */
    PRISM_HOST_BAD,           /* unreadable or damaged                    */
    PRISM_HOST_USE_COUNT_
} prism_host_use;

/* "yes", "fallback", "spare", "no device", "no" ..., for the table. */
const char *prism_host_use_name(prism_host_use use);

typedef struct prism_host_row {
    prism_cache_inspected entry;
    prism_host_use use;
    char why[256]; /* the verdict's reason, one line */
} prism_host_row;

typedef struct prism_host_table {
    prism_host_row *rows;
    size_t n, cap;
    int counts[PRISM_HOST_USE_COUNT_]; /* after prism_host_table_judge */
} prism_host_table;

/* Adds every entry of dir.  compiler: what entries that do not record
 * their compiler were made with (a pack's manifest says), or NULL.  With
 * check_dir, a dir that fails the trust rule makes every entry untrusted
 * (a lookup skips the whole layer).  PRISM_ERR_IO when dir cannot be
 * read. */
prism_status prism_host_table_add_dir(prism_host_table *t, const char *dir,
                                      const char *compiler, bool check_dir,
                                      char *err, size_t err_size);
/* Adds every entry held in the archive tar (a pack shipped as FILE.tar):
 * no trust rule applies before it is unpacked. */
prism_status prism_host_table_add_tar(prism_host_table *t, const char *tar,
                                      const char *compiler, char *err,
                                      size_t err_size);
/* Gives every row its verdict for host and counts them. */
void prism_host_table_judge(prism_host_table *t, const prism_host *host);
void prism_host_table_free(prism_host_table *t);

#endif
