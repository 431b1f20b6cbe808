/*
 * test_cache_common.h - the fixture and helpers shared by the cache suites
 * (tests/test_cache.c: keys, entries, corruption, races;
 * tests/test_cache_layers.c: read-only layers, trust, eviction, pruning,
 * JIT off, maintenance and the environment).  Header-only: every test file
 * is its own executable; the helpers are static inline so each uses only
 * what it needs.
 */
#ifndef PRISM_TEST_CACHE_COMMON_H
#define PRISM_TEST_CACHE_COMMON_H

#include "cache_testutil.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 1000
#define ENTRY_BYTES (PAYLOAD + 384)

static char *g_dir;
static cache_tu_log g_log;
static prism_logger g_logger;

static inline void setup(void) {
    unsetenv("PRISM_CACHE_DIR");
    unsetenv("PRISM_CACHE_PATH");
    unsetenv("PRISM_CACHE_MAX_BYTES");
    g_dir = cache_tu_mkdtemp();
    cr_assert_not_null(g_dir, "mkdtemp failed");
    cache_tu_log_init(&g_log, &g_logger);
}

static inline void teardown(void) {
    cache_tu_rm_rf(g_dir);
    free(g_dir);
}


/* A subdirectory of the fixture dir; returns a static-lifetime copy. */
static char *subdir(const char *name, bool create) {
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
    if (create)
        cr_assert_eq(mkdir(b, 0700), 0, "mkdir %s: %s", b, strerror(errno));
    return b;
}

/* One get; asserts success and the expected payload; returns *hit. */
static inline bool get_ok(prism_cache *c, const prism_cache_key *key,
                   cache_tu_builder *b) {
    prism_cache_entry e;
    prism_cache_meta meta = cache_tu_meta("pool_stats");
    bool hit = false;
    char err[PRISM_ERRMSG_MAX] = "";
    prism_status st = prism_cache_get(c, key, &meta, cache_tu_build, b, &e,
                                      &hit, err, sizeof err);
    cr_assert_eq(st, PRISM_OK, "get failed: %s (%s)", prism_status_name(st),
                 err);
    cr_assert(cache_tu_payload_ok(&e, b->size, b->fill), "wrong payload");
    cr_assert_str_eq(e.meta.kernel_name, "pool_stats");
    cr_assert_eq(e.meta.registers, 42);
    prism_cache_entry_free(&e);
    return hit;
}

static inline void flip_byte(const char *path, off_t offset) {
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "open %s", path);
    unsigned char c;
    if (offset < 0)
        offset += lseek(fd, 0, SEEK_END);
    cr_assert_eq(pread(fd, &c, 1, offset), 1);
    c ^= 0x5a;
    cr_assert_eq(pwrite(fd, &c, 1, offset), 1);
    close(fd);
}

static inline void set_mtime(const char *path, time_t when) {
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0, "utimensat %s", path);
}

static inline time_t mtime_of(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return st.st_mtime;
}

static inline bool exists(const char *path) { return access(path, F_OK) == 0; }

static inline void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "copy %s -> %s", from, to);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

/* ---- keys ---------------------------------------------------------------- */

static inline prism_cache_key key_of(const char *src, const char *nvrtc,
                              const char *arch, const char *const *opts,
                              int n) {
    prism_cache_key_input in = {src, nvrtc, arch, opts, n};
    prism_cache_key k;
    cr_assert_eq(prism_cache_key_compute(&in, &k), PRISM_OK);
    return k;
}

static inline bool same(prism_cache_key a, prism_cache_key b) {
    return memcmp(a.bytes, b.bytes, 32) == 0 && strcmp(a.hex, b.hex) == 0;
}


#endif
