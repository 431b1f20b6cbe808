/*
 * cache.h - the verified on-disk kernel cache (internal API).
 *
 * The cache maps a content key (SHA-256 over everything that decides the
 * bytes of a compiled kernel) to a payload (a cubin) plus metadata.  Layers,
 * searched in order: an in-process memory layer, one writable directory,
 * then read-only directories from PRISM_CACHE_PATH.
 *
 * On-disk layout (flat, one directory per layer):
 *
 *   DIR/<64 hex key>.prc          one entry (format below)
 *   DIR/<64 hex key>.lock         per-key OFD lock file, present only while a
 *                                 build of that key runs (or after a crash;
 *                                 `prism cache prune` removes stale ones)
 *   DIR/.tmp.<pid>.<16 hex>       an entry being written; renamed over the
 *                                 .prc when complete, removed by prune after
 *                                 an hour if its writer died
 *
 * Entry format version 1: a 384-byte header, then the payload.  Integers are
 * fixed-width little-endian, strings NUL-padded (always NUL-terminated).
 *
 *   off  size  field
 *     0     8  magic "PRISMC\0\1"
 *     8     4  u32 format version (1)
 *    12     4  u32 header size (384)
 *    16    32  key (SHA-256, must equal the file name and the request)
 *    48    32  SHA-256 of the payload
 *    80     8  u64 payload size (header size + this == file size)
 *    88   128  config name
 *   216    64  kernel name
 *   280    16  arch
 *   296     4  i32 registers
 *   300     4  i32 spill bytes
 *   304     4  i32 shared bytes
 *   308     4  i32 local bytes
 *   312     8  f64 compile ms (IEEE-754 binary64 bits)
 *   320     8  i64 created, unix seconds
 *   328    16  compiler generation of the key, e.g. "nvrtc 13.0"
 *   344     8  Prism release of the key, e.g. "0.2.0"
 *   352    32  SHA-256 of header bytes [0, 352)
 *   384     -  payload
 *
 * The last two fields say which hosts can ever ask for the entry (a key
 * hashes both, see prism_cache_key_compute); entries written before they
 * were recorded have zeros there, read as "" (unknown).
 *
 * The file's mtime is its last access time (touched on every disk hit); it
 * drives eviction only, never staleness.  cache.c has lookup and the
 * locking protocol, cache_open.c directory resolution and trust checks,
 * cache_entry.c the key and the codec, cache_maint.c eviction and
 * maintenance.
 */
#ifndef PRISM_CACHE_H
#define PRISM_CACHE_H

#include "base/base.h"

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
    /* the key's compiler generation (prism_cache_key_input.nvrtc_version,
     * "" unknown) and Prism release (filled on publish, "" unknown) */
    char compiler[16];
    char prism_version[8];
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

/* Thread-safe.  Hashes, with every field length-prefixed: the key format
 * (PRISM_CACHE_KEY_FORMAT), PRISM_VERSION_STRING, source, nvrtc_version,
 * arch, the option count and the options sorted with strcmp.  NULL strings
 * hash as "".  Returns PRISM_OK, or PRISM_ERR_INVALID_ARGUMENT (NULL option,
 * negative count) / PRISM_ERR_OUT_OF_MEMORY; on failure out->hex is "" and
 * prism_cache_get() rejects the key, so ignoring the status is safe. */
prism_status prism_cache_key_compute(const prism_cache_key_input *in,
                                     prism_cache_key *out);

prism_status prism_cache_open(const prism_cache_options *options,
                              prism_cache **out, char *err, size_t err_size);
void prism_cache_close(prism_cache *cache); /* NULL is a no-op */

/* The writable directory in use, "" when none (unwritable or disabled). */
const char *prism_cache_dir(const prism_cache *cache);
/* The read-only layers in use (missing and untrusted ones are dropped at
 * open), in search order; NULL when index is out of range. */
int prism_cache_layer_count(const prism_cache *cache);
const char *prism_cache_layer_dir(const prism_cache *cache, int index);
/* The size cap of the writable directory, in bytes. */
int64_t prism_cache_max_bytes(const prism_cache *cache);

/* Thread-safe.  Memory, then writable dir, then read-only layers; on a miss
 * takes the per-key lock, re-checks, calls build, publishes atomically.
 * *hit tells whether the payload came without building.  meta_in carries
 * config and kernel names and the arch for the entry's header (may be NULL);
 * build starts from a copy of it.  A corrupt or untrusted entry is a miss
 * (logged once) and is replaced.  When build fails its status and error
 * line are returned as they are, nothing is published, and out->log holds
 * the build log if the builder gave one (free out with
 * prism_cache_entry_free() either way). */
prism_status prism_cache_get(prism_cache *cache, const prism_cache_key *key,
                             const prism_cache_meta *meta_in,
                             prism_cache_build_fn build, void *build_user,
                             prism_cache_entry *out, bool *hit, char *err,
                             size_t err_size);

/* Frees payload and log and zeroes the entry; NULL is a no-op. */
void prism_cache_entry_free(prism_cache_entry *entry);

/* Thread-safe snapshot of the counters. */
void prism_cache_counters(const prism_cache *cache, prism_counters *out);

/* Maintenance used by `prism cache ...`.  Each writes one line per entry or
 * problem through the callback.  All are thread-safe and safe to run while
 * other processes use the cache. */
typedef void (*prism_cache_line_fn)(void *user, const char *line);
/* One line per entry of the writable dir, then of each read-only layer,
 * most recently accessed first: key prefix, config, kernel, arch, size,
 * registers, created, last access (read-only entries end with the layer).
 * Reads headers only (fast); a bad header gives a "BAD: path (why)" line.
 * prism_cache_verify() is what checks payloads. */
prism_status prism_cache_list(prism_cache *cache, prism_cache_line_fn fn,
                              void *user, char *err, size_t err_size);

/* Totals of the writable dir (what the cap applies to) and of the
 * read-only layers. */
typedef struct prism_cache_usage {
    int64_t entries, bytes;       /* writable dir      */
    int64_t ro_entries, ro_bytes; /* read-only layers  */
} prism_cache_usage;
prism_status prism_cache_get_usage(prism_cache *cache, prism_cache_usage *out,
                                   char *err, size_t err_size);
/* Returns PRISM_OK when every entry verifies; PRISM_ERR_CACHE otherwise.
 * *bad counts the entries that failed. */
prism_status prism_cache_verify(prism_cache *cache, prism_cache_line_fn fn,
                                void *user, int *bad, char *err,
                                size_t err_size);
/* One entry file as `prism cache verify` sees it: its header, or why it
 * cannot be used.  The payload is not hashed (prism_cache_verify and a
 * pack's manifest check it). */
typedef enum prism_cache_entry_state {
    PRISM_CACHE_ENTRY_OK,
    PRISM_CACHE_ENTRY_BAD,       /* malformed, truncated, wrong key...     */
    PRISM_CACHE_ENTRY_UNTRUSTED  /* fails the trust rule (cache_open.c)    */
} prism_cache_entry_state;

typedef struct prism_cache_inspected {
    char key_hex[65];
    prism_cache_entry_state state;
    char why[256];         /* BAD, UNTRUSTED: the reason */
    prism_cache_meta meta; /* OK: the header's metadata */
    int64_t size;          /* bytes of the file */
} prism_cache_inspected;

typedef void (*prism_cache_inspect_fn)(void *user,
                                       const prism_cache_inspected *entry);
/* Reads the header of every entry of dir (a cache layer or a pack
 * directory), in name order, and calls fn for each.  Entries are checked
 * against the trust rule as a lookup would; the directory is not (see
 * prism_cache_dir_trusted).  PRISM_ERR_IO when dir cannot be read. */
prism_status prism_cache_inspect_dir(const char *dir, prism_cache_inspect_fn fn,
                                     void *user, char *err, size_t err_size);
/* The same for one entry held in memory (a member `name` of a pack
 * archive), which no trust rule applies to.  False when name is not an
 * entry's name ("<64 hex>.prc"): out is then untouched. */
bool prism_cache_inspect_image(const char *name, const void *data,
                               size_t size, prism_cache_inspected *out);
/* Whether a lookup would use dir as a read-only layer: it is a
 * directory, readable, and passes the trust rule (owned by you or root,
 * writable by no one else).  why gets the reason when not. */
bool prism_cache_dir_trusted(const char *dir, char *why, size_t why_size);

/* Evicts least recently accessed entries until the total is <= max_bytes
 * (max_bytes <= 0: the configured cap), removes temp files older than an
 * hour and lock files nobody holds.  *removed counts deleted files.
 * PRISM_ERR_CACHE when there is no writable dir. */
prism_status prism_cache_prune(prism_cache *cache, int64_t max_bytes,
                               int *removed, char *err, size_t err_size);
/* Removes every entry of the writable dir (never a read-only layer) and
 * empties the memory layer.  PRISM_ERR_CACHE when there is no writable dir. */
prism_status prism_cache_clear(prism_cache *cache, int *removed, char *err,
                               size_t err_size);

#endif /* PRISM_CACHE_H */
