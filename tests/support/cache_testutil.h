/*
 * cache_testutil.h - helpers shared by the cache suites (test_cache.c,
 * test_cache_layers.c through test_cache_common.h, and test_cache_cli.c):
 * throw-away cache directories, a logger that counts warnings, and a fake
 * builder that stands in for NVRTC (so the cache is tested without a GPU).
 */
#ifndef PRISM_CACHE_TESTUTIL_H
#define PRISM_CACHE_TESTUTIL_H

#include "cache/cache.h"

#include <pthread.h>
#include <stdatomic.h>

/* A logger that records warnings; thread-safe. */
typedef struct cache_tu_log {
    pthread_mutex_t lock;
    int warnings;
    char text[16384]; /* every warning, one per line */
} cache_tu_log;

void cache_tu_log_init(cache_tu_log *log, prism_logger *logger);
/* How many recorded warnings contain needle. */
int cache_tu_log_count(cache_tu_log *log, const char *needle);

/* A fake builder: payload of `size` bytes derived from `fill`. */
typedef struct cache_tu_builder {
    atomic_int calls;
    size_t size;
    unsigned char fill;
    int delay_ms;
    const char *record_path; /* each call appends one line (O_APPEND) */
    prism_status fail;       /* != PRISM_OK: fail with "boom"... */
    int fail_first;          /* ...only the first N calls (0: every call) */
} cache_tu_builder;

prism_status cache_tu_build(void *user, void **payload, size_t *payload_size,
                            prism_cache_meta *meta, char **log, char *err,
                            size_t err_size);
/* The payload cache_tu_build makes for (size, fill), for comparison. */
void cache_tu_expected(unsigned char *buf, size_t size, unsigned char fill);
/* True when e holds exactly that payload. */
int cache_tu_payload_ok(const prism_cache_entry *e, size_t size,
                        unsigned char fill);

/* A key from a source text (fixed NVRTC version, arch and options). */
prism_cache_key cache_tu_key(const char *source);
/* Metadata the tests pass to prism_cache_get. */
prism_cache_meta cache_tu_meta(const char *kernel);

/* mkdtemp under /tmp; malloc'd path. */
char *cache_tu_mkdtemp(void);
/* rm -rf (never follows symlinks). */
void cache_tu_rm_rf(const char *path);
/* Number of names in dir that end with suffix ("" counts everything). */
int cache_tu_count(const char *dir, const char *suffix);
/* The names in dir, sorted, joined with '\n'; malloc'd. */
char *cache_tu_listing(const char *dir);
/* DIR/<hex>.prc into buf. */
void cache_tu_entry_path(char *buf, size_t size, const char *dir,
                         const prism_cache_key *key);
/* Opens a cache on dir with no read-only layers and the given logger. */
prism_cache *cache_tu_open(const char *dir, const prism_logger *logger,
                           int64_t max_bytes);

#endif
