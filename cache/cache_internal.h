/*
 * cache_internal.h - what the files of the cache share: cache.c (lookup),
 * cache_open.c, cache_maint.c, and below them cache_mem.c, cache_lock.c and
 * cache_entry.c.
 *
 * Not used outside the cache: everything else goes through cache.h.  The
 * struct lives here so the maintenance code can walk the same layers and
 * take the same locks as the lookup path without a second set of accessors.
 */
#ifndef PRISM_CACHE_INTERNAL_H
#define PRISM_CACHE_INTERNAL_H

#include "cache/cache.h"

#include <pthread.h>
#include <sys/stat.h>

#define CACHE_MAGIC "PRISMC\0\1"
#define CACHE_FORMAT_VERSION 1u
#define CACHE_HEADER_SIZE 384u
#define CACHE_HEADER_HASHED 352u /* header bytes covered by its checksum */
#define CACHE_ENTRY_EXT ".prc"
#define CACHE_LOCK_EXT ".lock"
#define CACHE_TMP_PREFIX ".tmp."
#define CACHE_TMP_MAX_AGE_S 3600
#define CACHE_DEFAULT_MAX_BYTES (2LL << 30)
/* $PRISM_LOCK_TIMEOUT: default and largest value, in seconds */
#define CACHE_LOCK_TIMEOUT_S 120
#define CACHE_LOCK_TIMEOUT_MAX_S 86400
/* a lock wait is reported after this long (or half the timeout) */
#define CACHE_LOCK_NOTICE_MS 5000
/* Longest name the cache puts in a directory (".tmp.<pid>.<16 hex>" and
 * "<64 hex>.lock" both fit), so DIR + '/' + name always fits PATH_BUF. */
#define CACHE_NAME_MAX 80
#define CACHE_PATH_BUF 4096

/* Warn-once bits of a layer (set under the cache mutex). */
enum {
    CACHE_WARNED_UNTRUSTED = 1u << 0,
    CACHE_WARNED_UNREADABLE = 1u << 1,
    CACHE_WARNED_PUBLISH = 1u << 2,
    CACHE_WARNED_LOCK = 1u << 3,
};

typedef struct cache_layer {
    char *dir;       /* never NULL; "" for the writable layer when unusable */
    unsigned warned; /* CACHE_WARNED_* */
} cache_layer;

/* One entry of the memory layer (a chained hash table on the key). */
typedef struct cache_mem_node {
    struct cache_mem_node *next;
    unsigned char key[32];
    prism_cache_meta meta;
    void *payload;
    size_t payload_size;
    char *log;
} cache_mem_node;

/* A build in flight in this process, used only without a writable dir (no
 * lock file to take); lives on the building thread's stack. */
typedef struct cache_inflight {
    struct cache_inflight *next;
    unsigned char key[32];
} cache_inflight;

struct prism_cache {
    prism_logger logger;
    cache_layer rw;  /* rw.dir "" when there is no writable dir */
    cache_layer *ro; /* read-only layers, in search order */
    int n_ro;
    int64_t max_bytes;
    int64_t lock_timeout_ms; /* $PRISM_LOCK_TIMEOUT: see prism.h */
    bool disable_jit;

    pthread_mutex_t lock; /* memory layer, counters, warned bits, inflight */
    pthread_cond_t inflight_done;
    cache_mem_node **buckets;
    size_t n_buckets, n_nodes;
    cache_inflight *inflight;
    prism_counters counters;
};

/* ---- cache_entry.c: the entry codec and file reader ---------------------- */

typedef enum cache_read_result {
    CACHE_READ_OK,
    CACHE_READ_ABSENT,    /* no such file                                */
    CACHE_READ_CORRUPT,   /* exists but fails validation (why says how)  */
    CACHE_READ_UNTRUSTED, /* fails the trust rule (why says how)         */
    CACHE_READ_ERROR      /* cannot be read (permissions, memory)        */
} cache_read_result;

enum {
    CACHE_READ_HEADER_ONLY = 1u << 0, /* skip reading and hashing the payload */
    CACHE_READ_TOUCH = 1u << 1        /* on success, set atime/mtime to now  */
};

/* Encodes the 384-byte header of an entry (see cache.h for the layout). */
void prism_cache__header_encode(const unsigned char key[32],
                                const prism_cache_meta *meta,
                                const void *payload, size_t payload_size,
                                unsigned char header[CACHE_HEADER_SIZE]);

/* Reads and validates the entry at path against key.  On CACHE_READ_OK out
 * holds the metadata and (unless HEADER_ONLY) the payload; st (optional)
 * gets the file's stat.  Otherwise why gets the reason. */
cache_read_result
prism_cache__entry_read(const char *path, const unsigned char key[32],
                        unsigned flags, prism_cache_entry *out, struct stat *st,
                        char *why, size_t why_size);

/* True for "<64 lowercase hex>.prc"; fills key when non-NULL. */
bool prism_cache__entry_name_parse(const char *name, unsigned char key[32]);
/* True for "<64 lowercase hex>.lock". */
bool prism_cache__lock_name_is(const char *name);
/* True for ".tmp.*". */
bool prism_cache__tmp_name_is(const char *name);

/* The trust rule of every layer, for its directory and each entry (a
 * cubin runs on the GPU with the caller's rights, so nothing another
 * account could have written is used): trusted when owned by the
 * effective uid or by root AND writable by neither group nor others.
 * Group-writable counts even when the group is one's own: its other
 * members are other accounts.  The sticky bit does not help (others could
 * still add entries).  On false, why gets "untrusted: ..." and fix the
 * command that repairs path. */
bool prism_cache__stat_trusted(const struct stat *st, const char *path,
                               char *why, size_t why_size, char *fix,
                               size_t fix_size);

/* DIR/NAME into buf (CACHE_PATH_BUF); false if it does not fit. */
bool prism_cache__path_join(char *buf, const char *dir, const char *name);

/* strdup that is C11 (NULL when out of memory). */
char *prism_cache__strdup(const char *s);

/* ---- cache_lock.c: the per-key lock file ------------------------------- */

/* How long prism_cache__lock_acquire waits for a lock someone else holds. */
typedef struct cache_lock_wait {
    int64_t timeout_ms; /* give up after this long (<= 0: do not wait)     */
    int64_t notice_ms;  /* call notice once after this long                */
    /* told the holder's pid (-1 when unknown) and the time waited so far */
    void (*notice)(void *user, long holder_pid, int64_t waited_ms);
    void *user;
    long *holder; /* optional: the holder's pid when the wait times out */
} cache_lock_wait;

/* Takes the exclusive OFD lock of path and writes our pid into the file.
 * create: make the file if missing (else ENOENT fails); wait NULL or with
 * no timeout: fail with EAGAIN when the lock is held, else poll until the
 * lock is ours or fail with ETIMEDOUT at the deadline.  Returns the fd or
 * -1 with errno set.  The lock file is always the one currently at path. */
int prism_cache__lock_acquire(const char *path, bool create,
                              const cache_lock_wait *wait);
/* The pid written into a lock file by its holder, or -1. */
long prism_cache__lock_holder(int fd);
/* Removes the lock file (still holding the lock) and closes fd. */
void prism_cache__lock_release(const char *path, int fd);

/* ---- cache_mem.c: the memory layer -------------------------------------- */

/* Copies the entry of key out into *out and counts a memory hit; false
 * when it is not in memory (or copying it ran out of memory). */
bool prism_cache__mem_get(prism_cache *cache, const unsigned char *key,
                          prism_cache_entry *out);
/* Keeps a copy of e under key (no-op when present or out of memory). */
void prism_cache__mem_put(prism_cache *cache, const unsigned char *key,
                          const prism_cache_entry *e);
/* Drops every entry of the memory layer. */
void prism_cache__mem_clear(prism_cache *cache);

/* ---- cache.c: the warn-once helper -------------------------------------- */

/* Logs a warning unless layer already has bit set (under the cache mutex). */
void prism_cache__warn_once(prism_cache *cache, cache_layer *layer,
                            unsigned bit, const char *fmt, ...)
    PRISM_PRINTF(4, 5);

/* ---- cache_maint.c: eviction ------------------------------------------- */

/* Removes temp files older than an hour from the writable dir and, while
 * its entries total more than cap bytes, the least recently accessed entry
 * (never `keep`, when non-NULL).  stale_locks: also remove lock files that
 * nobody holds.  Adds the files deleted to *removed. */
prism_status prism_cache__evict(prism_cache *cache, int64_t cap,
                                const unsigned char *keep, bool stale_locks,
                                int *removed, char *err, size_t err_size);

#endif /* PRISM_CACHE_INTERNAL_H */
