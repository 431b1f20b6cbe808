/*
 * cache.h - the verified on-disk kernel cache (internal API).
 *
 * The cache maps a content key (SHA-256 over everything that decides the
 * bytes of a compiled kernel) to a payload (a cubin) plus metadata.  Layers,
 * searched in order: an in-process memory layer, one writable directory,
 * then read-only directories from PRISM_CACHE_PATH.  See cache.c for the
 * on-disk format and the locking protocol.
 */
#ifndef PRISM_CACHE_H
#define PRISM_CACHE_H

#include "internal.h"

#include <stdbool.h>
#include <stdint.h>

#define PRISM_CACHE_KEY_FORMAT 1

/* What decides a cubin's bytes.  Hashed by prism_cache_key_compute(). */
typedef struct prism_cache_key_input {
    const char *source;       /* generated CUDA source, exact text       */
    const char *nvrtc_version; /* e.g. "13.0 (build cuda_13.0.r13.0/...)" */
    const char *arch;          /* exact arch, e.g. "sm_90a"              */
    const char *const *options; /* compile options, any order (sorted)   */
    int n_options;
} prism_cache_key_input;

typedef struct prism_cache_key {
    unsigned char bytes[32];
    char hex[65];
} prism_cache_key;

/* Metadata stored in each entry's header. */
typedef struct prism_cache_meta {
    char config_name[128];
    char kernel_name[64];
    char arch[16];
    int32_t registers;
    int32_t spill_bytes;
    int32_t shared_bytes;
    int32_t local_bytes;
    double compile_ms;
    int64_t created_unix; /* seconds since the epoch (filled on publish) */
} prism_cache_meta;

/* A payload handed out by the cache.  Owned by the caller: free with
 * prism_cache_entry_free(). */
typedef struct prism_cache_entry {
    prism_cache_meta meta;
    void *payload;
    size_t payload_size;
    char *log; /* build log kept with a fresh compile; NULL from disk */
} prism_cache_entry;

typedef struct prism_cache_options {
    const char *dir;         /* NULL: environment, see prism.h           */
    const char *read_only_path; /* NULL: $PRISM_CACHE_PATH               */
    int64_t max_bytes;       /* 0: $PRISM_CACHE_MAX_BYTES or 2 GiB         */
    bool disable_disk;       /* memory layer only                          */
    bool disable_jit;        /* never call the builder: a miss is an error */
    const prism_logger *logger;
} prism_cache_options;

/* Builder called on a miss, under the per-key lock.  Fills payload (malloc'd,
 * ownership passes to the cache), its size, the metadata (registers...),
 * and optionally a malloc'd log.  Returns a status and an error line. */
typedef prism_status (*prism_cache_build_fn)(void *user, void **payload,
                                             size_t *payload_size,
                                             prism_cache_meta *meta,
                                             char **log, char *err,
                                             size_t err_size);

typedef struct prism_cache prism_cache;

/* Counters kept by the cache; prism_counters mirrors them. */
void prism_cache_key_compute(const prism_cache_key_input *in,
                             prism_cache_key *out);

prism_status prism_cache_open(const prism_cache_options *options,
                              prism_cache **out, char *err, size_t err_size);
void prism_cache_close(prism_cache *cache); /* NULL is a no-op */

/* The writable directory in use, "" when none (unwritable or disabled). */
const char *prism_cache_dir(const prism_cache *cache);

/* Thread-safe.  Memory, then writable dir, then read-only layers; on a miss
 * takes the per-key lock, re-checks, calls build, publishes atomically.
 * *hit tells whether the payload came without building.  meta_in carries
 * config and kernel names and the arch for the entry's header. */
prism_status prism_cache_get(prism_cache *cache, const prism_cache_key *key,
                             const prism_cache_meta *meta_in,
                             prism_cache_build_fn build, void *build_user,
                             prism_cache_entry *out, bool *hit, char *err,
                             size_t err_size);

void prism_cache_entry_free(prism_cache_entry *entry);

/* Thread-safe snapshot of the counters. */
void prism_cache_counters(const prism_cache *cache, prism_counters *out);

/* Maintenance used by `prism cache ...`.  Each writes one line per entry or
 * problem through the callback. */
typedef void (*prism_cache_line_fn)(void *user, const char *line);
prism_status prism_cache_list(prism_cache *cache, prism_cache_line_fn fn,
                              void *user, char *err, size_t err_size);
/* Returns PRISM_OK when every entry verifies; PRISM_ERR_CACHE otherwise.
 * *bad counts the entries that failed. */
prism_status prism_cache_verify(prism_cache *cache, prism_cache_line_fn fn,
                                void *user, int *bad, char *err,
                                size_t err_size);
/* Evicts least recently accessed entries until the total is <= max_bytes
 * (max_bytes <= 0: the configured cap) and removes temp files older than an
 * hour.  *removed counts deleted files. */
prism_status prism_cache_prune(prism_cache *cache, int64_t max_bytes,
                               int *removed, char *err, size_t err_size);
prism_status prism_cache_clear(prism_cache *cache, int *removed, char *err,
                               size_t err_size);

#endif /* PRISM_CACHE_H */
