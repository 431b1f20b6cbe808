/*
 * test_cache.c - the verified on-disk kernel cache (runtime/cache*.c).
 *
 * Every test gets a fresh directory under /tmp (the fixture), passes it as
 * options.dir and never touches the user's cache.  A fake builder stands in
 * for NVRTC so the suite needs no GPU; it counts its calls, which is how
 * "built exactly once" is checked, across threads and across processes
 * (there through a file every call appends to).  The suite runs as root in
 * CI, so "unwritable" is made with a path under a regular file and
 * "untrusted" with chown to nobody, not with chmod.
 */
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

static void setup(void) {
    unsetenv("PRISM_CACHE_DIR");
    unsetenv("PRISM_CACHE_PATH");
    unsetenv("PRISM_CACHE_MAX_BYTES");
    g_dir = cache_tu_mkdtemp();
    cr_assert_not_null(g_dir, "mkdtemp failed");
    cache_tu_log_init(&g_log, &g_logger);
}

static void teardown(void) {
    cache_tu_rm_rf(g_dir);
    free(g_dir);
}

TestSuite(cache, .init = setup, .fini = teardown, .timeout = 120);

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
static bool get_ok(prism_cache *c, const prism_cache_key *key,
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

static void flip_byte(const char *path, off_t offset) {
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

static void set_mtime(const char *path, time_t when) {
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0, "utimensat %s", path);
}

static time_t mtime_of(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return st.st_mtime;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void copy_file(const char *from, const char *to) {
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

static prism_cache_key key_of(const char *src, const char *nvrtc,
                              const char *arch, const char *const *opts,
                              int n) {
    prism_cache_key_input in = {src, nvrtc, arch, opts, n};
    prism_cache_key k;
    cr_assert_eq(prism_cache_key_compute(&in, &k), PRISM_OK);
    return k;
}

static bool same(prism_cache_key a, prism_cache_key b) {
    return memcmp(a.bytes, b.bytes, 32) == 0 && strcmp(a.hex, b.hex) == 0;
}

Test(cache, key_is_deterministic_hex_sha256) {
    const char *o[] = {"-a", "-b"};
    prism_cache_key a = key_of("src", "13.0", "sm_80", o, 2);
    prism_cache_key b = key_of("src", "13.0", "sm_80", o, 2);
    cr_assert(same(a, b));
    cr_assert_eq(strlen(a.hex), 64);
    char hex[65];
    prism_hex(a.bytes, 32, hex);
    cr_assert_str_eq(hex, a.hex);
}

Test(cache, key_ignores_option_order) {
    const char *o1[] = {"--use_fast_math", "-arch=sm_90a", "-DX=1",
                        "-lineinfo"};
    const char *o2[] = {"-lineinfo", "-DX=1", "--use_fast_math",
                        "-arch=sm_90a"};
    const char *o3[] = {"-arch=sm_90a", "-lineinfo", "--use_fast_math",
                        "-DX=1"};
    prism_cache_key a = key_of("s", "v", "sm_90a", o1, 4);
    cr_assert(same(a, key_of("s", "v", "sm_90a", o2, 4)));
    cr_assert(same(a, key_of("s", "v", "sm_90a", o3, 4)));
}

Test(cache, key_changes_with_every_field) {
    const char *o[] = {"-a", "-b"};
    const char *o_changed[] = {"-a", "-c"};
    const char *o_more[] = {"-a", "-b", "-b"};
    prism_cache_key keys[] = {
        key_of("src", "13.0", "sm_80", o, 2),
        key_of("src ", "13.0", "sm_80", o, 2),        /* source      */
        key_of("src", "13.1", "sm_80", o, 2),         /* NVRTC       */
        key_of("src", "13.0", "sm_86", o, 2),         /* arch        */
        key_of("src", "13.0", "sm_80", o_changed, 2), /* option */
        key_of("src", "13.0", "sm_80", o, 1),         /* fewer       */
        key_of("src", "13.0", "sm_80", o_more, 3),    /* duplicate */
        key_of("src", "13.0", "sm_80", NULL, 0),
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(keys); i++)
        for (size_t j = i + 1; j < PRISM_ARRAY_LEN(keys); j++)
            cr_assert(!same(keys[i], keys[j]), "keys %zu and %zu collide", i,
                      j);
}

Test(cache, key_fields_do_not_bleed) {
    const char *ab[] = {"ab"};
    const char *a_b[] = {"a", "b"};
    cr_assert(!same(key_of("ab", "v", "c", NULL, 0),
                    key_of("a", "v", "bc", NULL, 0)));
    cr_assert(
        !same(key_of("x", "ab", "", NULL, 0), key_of("x", "a", "b", NULL, 0)));
    cr_assert(
        !same(key_of("s", "v", "c", ab, 1), key_of("s", "v", "c", a_b, 2)));
    const char *empty[] = {""};
    cr_assert(
        !same(key_of("s", "v", "c", empty, 1), key_of("s", "v", "c", NULL, 0)));
}

Test(cache, bad_key_input_is_rejected_and_unusable) {
    const char *o[] = {"-a", NULL};
    prism_cache_key_input in = {"s", "v", "sm_80", o, 2};
    prism_cache_key k;
    cr_assert_eq(prism_cache_key_compute(&in, &k), PRISM_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(k.hex, "");
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    cache_tu_builder b = {.size = 10};
    prism_cache_entry e;
    bool hit;
    cr_assert_eq(
        prism_cache_get(c, &k, NULL, cache_tu_build, &b, &e, &hit, NULL, 0),
        PRISM_ERR_INVALID_ARGUMENT);
    cr_assert_eq(b.calls, 0);
    prism_cache_close(c);
}

/* ---- hits and misses ---------------------------------------------------- */

Test(cache, miss_then_memory_hit_then_disk_hit) {
    prism_cache_key key = cache_tu_key("kernel A");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 3};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert_not_null(c);
    cr_assert_str_eq(prism_cache_dir(c), g_dir);

    cr_assert_not(get_ok(c, &key, &b), "first get must miss");
    cr_assert_eq(b.calls, 1);
    cr_assert(get_ok(c, &key, &b), "second get must hit");
    cr_assert_eq(b.calls, 1);
    prism_counters n;
    prism_cache_counters(c, &n);
    cr_assert_eq(n.misses, 1);
    cr_assert_eq(n.compiles, 1);
    cr_assert_eq(n.memory_hits, 1);
    cr_assert_eq(n.disk_hits, 0);
    cr_assert_float_eq(n.compile_ms, 12.5, 1e-9);
    prism_cache_close(c);

    char path[2048];
    cache_tu_entry_path(path, sizeof path, g_dir, &key);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "entry %s not published", path);
    cr_assert_eq(st.st_size, ENTRY_BYTES);
    cr_assert_eq(cache_tu_count(g_dir, ""), 1, "temp or lock files left");

    /* A second instance (a new process, in effect) hits from disk. */
    c = cache_tu_open(g_dir, &g_logger, 0);
    prism_cache_entry e;
    prism_cache_meta meta = cache_tu_meta("pool_stats");
    bool hit = false;
    cr_assert_eq(
        prism_cache_get(c, &key, &meta, cache_tu_build, &b, &e, &hit, NULL, 0),
        PRISM_OK);
    cr_assert(hit);
    cr_assert_eq(b.calls, 1);
    cr_assert(cache_tu_payload_ok(&e, PAYLOAD, 3));
    cr_assert_str_eq(e.meta.config_name, "llama3-8b");
    cr_assert_str_eq(e.meta.arch, "sm_90a");
    cr_assert_eq(e.meta.registers, 42);
    cr_assert_eq(e.meta.spill_bytes, 8);
    cr_assert_eq(e.meta.shared_bytes, 4096);
    cr_assert_eq(e.meta.local_bytes, 16);
    cr_assert_float_eq(e.meta.compile_ms, 12.5, 1e-9);
    cr_assert_geq(e.meta.created_unix, (int64_t)time(NULL) - 60);
    cr_assert_null(e.log, "a disk hit has no build log");
    prism_cache_entry_free(&e);
    prism_cache_counters(c, &n);
    cr_assert_eq(n.disk_hits, 1);
    cr_assert_eq(n.misses, 0);
    cr_assert_eq(n.compiles, 0);
    prism_cache_close(c);
    cr_assert_eq(g_log.warnings, 0, "%s", g_log.text);
}

Test(cache, fresh_build_keeps_its_log) {
    prism_cache_key key = cache_tu_key("log");
    cache_tu_builder b = {.size = 16};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    prism_cache_entry e;
    bool hit = true;
    cr_assert_eq(
        prism_cache_get(c, &key, NULL, cache_tu_build, &b, &e, &hit, NULL, 0),
        PRISM_OK);
    cr_assert_not(hit);
    cr_assert_str_eq(e.log, "ptxas info: ok");
    cr_assert_gt(e.meta.created_unix, 0);
    prism_cache_entry_free(&e);
    prism_cache_close(c);
}

Test(cache, disk_hit_records_access_time) {
    prism_cache_key key = cache_tu_key("touch");
    cache_tu_builder b = {.size = 64};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    get_ok(c, &key, &b);
    prism_cache_close(c);
    char path[2048];
    cache_tu_entry_path(path, sizeof path, g_dir, &key);
    set_mtime(path, time(NULL) - 86400);
    c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert(get_ok(c, &key, &b));
    cr_assert_geq(mtime_of(path), time(NULL) - 60);
    prism_cache_close(c);
}

/* ---- corruption --------------------------------------------------------- */

/* Publishes key, damages it with `damage`, checks the next instance
 * rebuilds, replaces the entry and warns exactly once. */
static void check_corruption(void (*damage)(const char *path),
                             const char *reason) {
    prism_cache_key key = cache_tu_key("corrupt me");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 9};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    get_ok(c, &key, &b);
    prism_cache_close(c);
    char path[2048];
    cache_tu_entry_path(path, sizeof path, g_dir, &key);
    damage(path);

    c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert_not(get_ok(c, &key, &b), "a corrupt entry must be a miss");
    cr_assert_eq(b.calls, 2, "the corrupt entry must be rebuilt");
    cr_assert_eq(g_log.warnings, 1, "want one warning, got: %s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, path), 1, "warning must name %s",
                 path);
    cr_assert_eq(cache_tu_log_count(&g_log, reason), 1, "want '%s' in: %s",
                 reason, g_log.text);
    prism_counters n;
    prism_cache_counters(c, &n);
    cr_assert_eq(n.corrupt, 1);
    prism_cache_close(c);

    /* Replaced: a third instance hits from disk without warnings. */
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, ENTRY_BYTES);
    c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert(get_ok(c, &key, &b));
    cr_assert_eq(b.calls, 2);
    cr_assert_eq(g_log.warnings, 1);
    prism_cache_close(c);
}

static void flip_payload(const char *path) { flip_byte(path, -1); }
static void flip_magic(const char *path) { flip_byte(path, 0); }
static void flip_registers(const char *path) { flip_byte(path, 296); }
static void truncate_tail(const char *path) {
    cr_assert_eq(truncate(path, ENTRY_BYTES - 10), 0);
}
static void truncate_header(const char *path) {
    cr_assert_eq(truncate(path, 100), 0);
}
static void append_junk(const char *path) {
    FILE *f = fopen(path, "ab");
    fputs("junk", f);
    fclose(f);
}

Test(cache, corrupt_payload_byte_is_rebuilt) {
    check_corruption(flip_payload, "payload checksum");
}
Test(cache, corrupt_magic_is_rebuilt) { check_corruption(flip_magic, "magic"); }
Test(cache, corrupt_metadata_is_rebuilt) {
    check_corruption(flip_registers, "header checksum");
}
Test(cache, truncated_payload_is_rebuilt) {
    check_corruption(truncate_tail, "truncated");
}
Test(cache, truncated_header_is_rebuilt) {
    check_corruption(truncate_header, "truncated");
}
Test(cache, trailing_bytes_are_rebuilt) {
    check_corruption(append_junk, "trailing");
}

Test(cache, entry_under_the_wrong_name_is_rebuilt) {
    prism_cache_key a = cache_tu_key("A"), k = cache_tu_key("B");
    cache_tu_builder b = {.size = 100, .fill = 1};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    get_ok(c, &a, &b);
    prism_cache_close(c);
    char pa[2048], pb[2048];
    cache_tu_entry_path(pa, sizeof pa, g_dir, &a);
    cache_tu_entry_path(pb, sizeof pb, g_dir, &k);
    copy_file(pa, pb);
    c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert_not(get_ok(c, &k, &b));
    cr_assert_eq(b.calls, 2);
    cr_assert_eq(cache_tu_log_count(&g_log, "key mismatch"), 1, "%s",
                 g_log.text);
    prism_cache_close(c);
}

/* ---- races -------------------------------------------------------------- */

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0, ch;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

Test(cache, racing_processes_build_once) {
    enum { KIDS = 6 };
    char record[1024];
    snprintf(record, sizeof record, "%s/builds.txt", g_dir);
    char *dir = subdir("cache", true);
    prism_cache_key key = cache_tu_key("raced across processes");
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t kids[KIDS];
    for (int i = 0; i < KIDS; i++) {
        kids[i] = fork();
        cr_assert_geq(kids[i], 0);
        if (kids[i] == 0) {
            close(go[1]);
            char ch;
            while (read(go[0], &ch, 1) > 0) /* wait for the start (EOF) */
                ;
            cache_tu_builder b = {.size = PAYLOAD,
                                  .fill = 77,
                                  .delay_ms = 300,
                                  .record_path = record};
            prism_cache *c = cache_tu_open(dir, NULL, 0);
            prism_cache_entry e;
            bool hit;
            prism_status st = c ? prism_cache_get(c, &key, NULL, cache_tu_build,
                                                  &b, &e, &hit, NULL, 0)
                                : PRISM_ERR_INTERNAL;
            int ok = st == PRISM_OK && cache_tu_payload_ok(&e, PAYLOAD, 77);
            if (st == PRISM_OK)
                prism_cache_entry_free(&e);
            prism_cache_close(c);
            _exit(ok ? 0 : 1);
        }
    }
    close(go[0]);
    usleep(50 * 1000);
    close(go[1]); /* everyone starts now */
    for (int i = 0; i < KIDS; i++) {
        int status;
        cr_assert_eq(waitpid(kids[i], &status, 0), kids[i]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child %d failed", i);
    }
    cr_assert_eq(count_lines(record), 1, "want exactly one build");
    cr_assert_eq(cache_tu_count(dir, ".prc"), 1);
    cr_assert_eq(cache_tu_count(dir, ".lock"), 0, "lock files left behind");
    cr_assert_eq(cache_tu_count(dir, ""), 1);
}

typedef struct race_arg {
    prism_cache *cache;
    prism_cache_key key;
    cache_tu_builder *builder;
    pthread_barrier_t *start;
    int ok;
    bool hit;
} race_arg;

static void *race_thread(void *p) {
    race_arg *a = p;
    pthread_barrier_wait(a->start);
    prism_cache_entry e;
    prism_status st = prism_cache_get(a->cache, &a->key, NULL, cache_tu_build,
                                      a->builder, &e, &a->hit, NULL, 0);
    a->ok = st == PRISM_OK &&
            cache_tu_payload_ok(&e, a->builder->size, a->builder->fill);
    prism_cache_entry_free(&e);
    return NULL;
}

static void race_threads(prism_cache *c) {
    enum { THREADS = 8 };
    cache_tu_builder b = {.size = PAYLOAD, .fill = 5, .delay_ms = 200};
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    race_arg args[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (race_arg){
            c, cache_tu_key("raced across threads"), &b, &start, 0, false};
        cr_assert_eq(pthread_create(&t[i], NULL, race_thread, &args[i]), 0);
    }
    int hits = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        cr_assert(args[i].ok, "thread %d failed", i);
        hits += args[i].hit;
    }
    pthread_barrier_destroy(&start);
    cr_assert_eq(b.calls, 1, "want exactly one build, got %d", (int)b.calls);
    cr_assert_eq(hits, THREADS - 1);
    prism_counters n;
    prism_cache_counters(c, &n);
    cr_assert_eq(n.compiles, 1);
    cr_assert_eq(n.memory_hits + n.disk_hits, THREADS - 1);
}

Test(cache, racing_threads_build_once) {
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    race_threads(c);
    prism_cache_close(c);
    cr_assert_eq(cache_tu_count(g_dir, ""), 1, "only the entry may remain");
}

Test(cache, racing_threads_build_once_in_memory_only_mode) {
    prism_cache_options o = {.disable_disk = true, .logger = &g_logger};
    prism_cache *c = NULL;
    cr_assert_eq(prism_cache_open(&o, &c, NULL, 0), PRISM_OK);
    cr_assert_str_eq(prism_cache_dir(c), "");
    race_threads(c);
    prism_cache_close(c);
    cr_assert_eq(g_log.warnings, 0, "disable_disk is not a problem");
}

typedef struct late_arg {
    prism_cache *cache;
    cache_tu_builder *builder;
    int start_ms;
    prism_status status;
    bool hit;
} late_arg;

static void *late_thread(void *p) {
    late_arg *a = p;
    usleep((useconds_t)a->start_ms * 1000);
    prism_cache_key key = cache_tu_key("fails first");
    prism_cache_entry e;
    a->status = prism_cache_get(a->cache, &key, NULL, cache_tu_build,
                                a->builder, &e, &a->hit, NULL, 0);
    prism_cache_entry_free(&e);
    return NULL;
}

/* The first build fails, so nothing is published when its holder drops the
 * lock.  The waiter (B) then builds; a late arrival (C) must wait for B
 * rather than lock a fresh lock file beside B's unlinked one. */
Test(cache, lock_holds_after_a_failed_build_with_late_arrivals) {
    cache_tu_builder b = {.size = 100,
                          .fill = 3,
                          .delay_ms = 500,
                          .fail = PRISM_ERR_NVRTC,
                          .fail_first = 1};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    late_arg args[3] = {
        {c, &b, 0, 0, false}, {c, &b, 150, 0, false}, {c, &b, 750, 0, false}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, late_thread, &args[i]), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    /* Whichever of the first two got the lock first failed, the other built
     * (either order is fine; a slow scheduler may swap them). */
    int failed = (args[0].status == PRISM_ERR_NVRTC) +
                 (args[1].status == PRISM_ERR_NVRTC);
    int built = (args[0].status == PRISM_OK && !args[0].hit) +
                (args[1].status == PRISM_OK && !args[1].hit);
    cr_assert_eq(failed, 1);
    cr_assert_eq(built, 1);
    cr_assert_eq(args[2].status, PRISM_OK);
    cr_assert(args[2].hit, "the late arrival must wait and hit");
    cr_assert_eq(b.calls, 2);
    prism_cache_close(c);
    cr_assert_eq(cache_tu_count(g_dir, ""), 1);
}

/* ---- read-only layers --------------------------------------------------- */

static prism_cache *open_with_layers(const char *dir, const char *layers) {
    prism_cache_options o = {
        .dir = dir, .read_only_path = layers, .logger = &g_logger};
    prism_cache *c = NULL;
    cr_assert_eq(prism_cache_open(&o, &c, NULL, 0), PRISM_OK);
    return c;
}

/* Publishes key into a scratch dir and copies the entry into `layer`. */
static void ship_entry(const prism_cache_key *key, cache_tu_builder *b,
                       const char *layer) {
    char *scratch = subdir("scratch", false);
    mkdir(scratch, 0700);
    prism_cache *c = cache_tu_open(scratch, &g_logger, 0);
    get_ok(c, key, b);
    prism_cache_close(c);
    char from[2048], to[2048];
    cache_tu_entry_path(from, sizeof from, scratch, key);
    cache_tu_entry_path(to, sizeof to, layer, key);
    copy_file(from, to);
    cache_tu_rm_rf(scratch);
}

Test(cache, read_only_layer_is_searched_and_never_written) {
    char *rw = subdir("rw", true), *ro1 = subdir("ro1", true),
         *ro2 = subdir("ro2", true);
    prism_cache_key shipped = cache_tu_key("shipped"),
                    fresh = cache_tu_key("fresh");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 11};
    ship_entry(&shipped, &b, ro2);
    b.calls = 0;
    char *before1 = cache_tu_listing(ro1), *before2 = cache_tu_listing(ro2);
    char layers[2200];
    snprintf(layers, sizeof layers, "%s::%s:/nonexistent/prism", ro1, ro2);

    prism_cache *c = open_with_layers(rw, layers);
    cr_assert_eq(prism_cache_layer_count(c), 2);
    cr_assert_str_eq(prism_cache_layer_dir(c, 0), ro1);
    cr_assert_str_eq(prism_cache_layer_dir(c, 1), ro2);
    cr_assert(get_ok(c, &shipped, &b), "the shipped entry must hit");
    cr_assert_eq(b.calls, 0);
    cr_assert_not(get_ok(c, &fresh, &b));
    cr_assert_eq(b.calls, 1);
    prism_counters n;
    prism_cache_counters(c, &n);
    cr_assert_eq(n.disk_hits, 1);
    prism_cache_close(c);

    char *after1 = cache_tu_listing(ro1), *after2 = cache_tu_listing(ro2);
    cr_assert_str_eq(before1, after1, "read-only layer written");
    cr_assert_str_eq(before2, after2, "read-only layer written");
    cr_assert_eq(cache_tu_count(rw, ".prc"), 1, "the miss goes to rw");
    cr_assert_eq(cache_tu_count(rw, ""), 1);
    cr_assert_eq(g_log.warnings, 0, "%s", g_log.text);
    free(before1);
    free(before2);
    free(after1);
    free(after2);
}

Test(cache, read_only_layer_serves_when_writable_dir_is_unusable) {
    char file[1100], bad[1200];
    snprintf(file, sizeof file, "%s/plainfile", g_dir);
    fclose(fopen(file, "w"));
    snprintf(bad, sizeof bad, "%s/cache", file);
    char *ro = subdir("ro", true);
    prism_cache_key key = cache_tu_key("shipped");
    cache_tu_builder b = {.size = 50, .fill = 2};
    ship_entry(&key, &b, ro);
    b.calls = 0;
    g_log.warnings = 0;
    prism_cache *c = open_with_layers(bad, ro);
    cr_assert_str_eq(prism_cache_dir(c), "");
    cr_assert(get_ok(c, &key, &b));
    cr_assert_eq(b.calls, 0);
    prism_cache_close(c);
}

Test(cache, corrupt_entry_in_read_only_layer_is_skipped_untouched) {
    char *rw = subdir("rw", true), *ro = subdir("ro", true);
    prism_cache_key key = cache_tu_key("shipped broken");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 4};
    ship_entry(&key, &b, ro);
    b.calls = 0;
    char path[2048];
    cache_tu_entry_path(path, sizeof path, ro, &key);
    flip_byte(path, -1);
    struct stat before, after;
    cr_assert_eq(stat(path, &before), 0);
    g_log.warnings = 0;
    prism_cache *c = open_with_layers(rw, ro);
    cr_assert_not(get_ok(c, &key, &b));
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, path), 1);
    prism_cache_close(c);
    cr_assert_eq(stat(path, &after), 0);
    cr_assert_eq(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
    cr_assert_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
    cr_assert_eq(cache_tu_count(rw, ".prc"), 1);
}

/* ---- unusable and untrusted directories --------------------------------- */

Test(cache, unwritable_dir_falls_back_to_memory_with_one_warning) {
    char file[1100], bad[1200];
    snprintf(file, sizeof file, "%s/plainfile", g_dir);
    fclose(fopen(file, "w"));
    snprintf(bad, sizeof bad, "%s/sub/cache", file);
    prism_cache *c = cache_tu_open(bad, &g_logger, 0);
    cr_assert_not_null(c, "open must not fail");
    cr_assert_str_eq(prism_cache_dir(c), "");
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, bad), 1);
    cr_assert_eq(cache_tu_log_count(&g_log, "PRISM_CACHE_DIR"), 1);
    prism_cache_key k1 = cache_tu_key("one"), k2 = cache_tu_key("two");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 6};
    cr_assert_not(get_ok(c, &k1, &b));
    cr_assert(get_ok(c, &k1, &b));
    cr_assert_not(get_ok(c, &k2, &b));
    cr_assert_eq(b.calls, 2);
    cr_assert_eq(g_log.warnings, 1, "warn once only: %s", g_log.text);
    int removed;
    char err[PRISM_ERRMSG_MAX];
    cr_assert_eq(prism_cache_clear(c, &removed, err, sizeof err),
                 PRISM_ERR_CACHE);
    cr_assert(strstr(err, "PRISM_CACHE_DIR"));
    prism_cache_close(c);
}

static bool make_untrusted(const char *path, mode_t mode) {
    if (chmod(path, mode) != 0 || chown(path, 65534, 65534) != 0)
        return false;
    return geteuid() != 65534;
}

Test(cache, untrusted_writable_dir_is_not_used) {
    char *dir = subdir("shared", true);
    if (!make_untrusted(dir, 0777))
        cr_skip_test("cannot chown to 65534 here");
    prism_cache *c = cache_tu_open(dir, &g_logger, 0);
    cr_assert_str_eq(prism_cache_dir(c), "");
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "untrusted"), 1, "%s", g_log.text);
    prism_cache_key k = cache_tu_key("x");
    cache_tu_builder b = {.size = 10};
    get_ok(c, &k, &b);
    prism_cache_close(c);
    cr_assert_eq(cache_tu_count(dir, ""), 0, "nothing written there");
}

Test(cache, sticky_world_writable_dir_of_another_user_is_untrusted) {
    char *dir = subdir("tmpstyle", true);
    if (!make_untrusted(dir, 01777))
        cr_skip_test("cannot chown to 65534 here");
    prism_cache *c = cache_tu_open(dir, &g_logger, 0);
    cr_assert_str_eq(prism_cache_dir(c), "");
    cr_assert_eq(g_log.warnings, 1);
    prism_cache_close(c);
}

Test(cache, untrusted_read_only_layer_is_skipped) {
    char *rw = subdir("rw", true), *ro = subdir("ro", true);
    prism_cache_key key = cache_tu_key("planted");
    cache_tu_builder b = {.size = 10, .fill = 1};
    ship_entry(&key, &b, ro);
    b.calls = 0;
    if (!make_untrusted(ro, 0777))
        cr_skip_test("cannot chown to 65534 here");
    g_log.warnings = 0;
    prism_cache *c = open_with_layers(rw, ro);
    cr_assert_eq(prism_cache_layer_count(c), 0);
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, ro), 1);
    cr_assert_not(get_ok(c, &key, &b), "planted entry must not be used");
    prism_cache_close(c);
}

Test(cache, untrusted_entries_are_skipped_with_one_warning_and_replaced) {
    prism_cache_key k1 = cache_tu_key("e1"), k2 = cache_tu_key("e2");
    cache_tu_builder b = {.size = 100, .fill = 8};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    get_ok(c, &k1, &b);
    get_ok(c, &k2, &b);
    prism_cache_close(c);
    char p1[2048], p2[2048];
    cache_tu_entry_path(p1, sizeof p1, g_dir, &k1);
    cache_tu_entry_path(p2, sizeof p2, g_dir, &k2);
    if (!make_untrusted(p1, 0666) || !make_untrusted(p2, 0666))
        cr_skip_test("cannot chown to 65534 here");
    c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert_not(get_ok(c, &k1, &b));
    cr_assert_not(get_ok(c, &k2, &b));
    cr_assert_eq(b.calls, 4);
    cr_assert_eq(g_log.warnings, 1, "once per dir: %s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "untrusted"), 1);
    prism_cache_close(c);
    struct stat st;
    cr_assert_eq(stat(p1, &st), 0);
    cr_assert_eq(st.st_uid, geteuid(), "the entry was not replaced");
    cr_assert_eq(st.st_mode & 022, 0);
}

/* ---- size cap, eviction, prune ------------------------------------------ */

Test(cache, eviction_drops_the_least_recently_accessed_entry) {
    int64_t cap = 3 * ENTRY_BYTES + 100;
    prism_cache_key k[4] = {cache_tu_key("A"), cache_tu_key("B"),
                            cache_tu_key("C"), cache_tu_key("D")};
    char p[4][2048];
    cache_tu_builder b = {.size = PAYLOAD, .fill = 1};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, cap);
    cr_assert_eq(prism_cache_max_bytes(c), cap);
    for (int i = 0; i < 3; i++) {
        get_ok(c, &k[i], &b);
        cache_tu_entry_path(p[i], sizeof p[i], g_dir, &k[i]);
    }
    cache_tu_entry_path(p[3], sizeof p[3], g_dir, &k[3]);
    prism_cache_close(c);
    time_t now = time(NULL);
    set_mtime(p[0], now - 300); /* A: oldest publish...              */
    set_mtime(p[1], now - 200);
    set_mtime(p[2], now - 100);

    c = cache_tu_open(g_dir, &g_logger, cap);
    cr_assert(get_ok(c, &k[0], &b));     /* ...but accessed most recently */
    cr_assert_not(get_ok(c, &k[3], &b)); /* D pushes the total over the cap */
    prism_cache_close(c);
    cr_assert(exists(p[0]), "A was just accessed");
    cr_assert_not(exists(p[1]), "B is the least recently accessed");
    cr_assert(exists(p[2]));
    cr_assert(exists(p[3]), "the new entry stays");
    cr_assert_eq(cache_tu_count(g_dir, ".prc"), 3);
}

Test(cache, max_bytes_from_environment) {
    setenv("PRISM_CACHE_MAX_BYTES", "123456", 1);
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert_eq(prism_cache_max_bytes(c), 123456);
    prism_cache_close(c);
    c = cache_tu_open(g_dir, &g_logger, 999);
    cr_assert_eq(prism_cache_max_bytes(c), 999, "the option wins");
    prism_cache_close(c);
    cr_assert_eq(g_log.warnings, 0);
    const char *garbage[] = {"12abc", "-5",  "0",
                             "lots",  "1e9", "99999999999999999999"};
    for (size_t i = 0; i < PRISM_ARRAY_LEN(garbage); i++) {
        setenv("PRISM_CACHE_MAX_BYTES", garbage[i], 1);
        g_log.warnings = 0;
        c = cache_tu_open(g_dir, &g_logger, 0);
        cr_assert_eq(prism_cache_max_bytes(c), 2LL << 30, "%s", garbage[i]);
        cr_assert_eq(g_log.warnings, 1, "%s", garbage[i]);
        cr_assert_eq(cache_tu_log_count(&g_log, "PRISM_CACHE_MAX_BYTES"), 1);
        prism_cache_close(c);
        g_log.text[0] = '\0';
    }
}

static void touch_file(const char *dir, const char *name, time_t mtime) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("partial", f);
    fclose(f);
    if (mtime)
        set_mtime(path, mtime);
}

Test(cache, prune_removes_old_temp_files_only) {
    touch_file(g_dir, ".tmp.4242.00112233aabbccdd", time(NULL) - 7200);
    touch_file(g_dir, ".tmp.4243.deadbeefdeadbeef", 0);
    touch_file(g_dir, "README", time(NULL) - 7200);
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    int removed = -1;
    char err[PRISM_ERRMSG_MAX];
    cr_assert_eq(prism_cache_prune(c, 0, &removed, err, sizeof err), PRISM_OK,
                 "%s", err);
    cr_assert_eq(removed, 1);
    char old[2048], fresh[2048], other[2048];
    snprintf(old, sizeof old, "%s/.tmp.4242.00112233aabbccdd", g_dir);
    snprintf(fresh, sizeof fresh, "%s/.tmp.4243.deadbeefdeadbeef", g_dir);
    snprintf(other, sizeof other, "%s/README", g_dir);
    cr_assert_not(exists(old));
    cr_assert(exists(fresh), "a fresh temp file may be a publish in flight");
    cr_assert(exists(other), "foreign files are left alone");
    prism_cache_close(c);
}

Test(cache, prune_removes_stale_lock_files_only) {
    prism_cache_key a = cache_tu_key("stale"), h = cache_tu_key("held");
    char name[100], held[2048], stale[2048];
    snprintf(name, sizeof name, "%s.lock", a.hex);
    touch_file(g_dir, name, 0);
    snprintf(stale, sizeof stale, "%s/%s", g_dir, name);
    snprintf(held, sizeof held, "%s/%s.lock", g_dir, h.hex);
    int fd = open(held, O_RDWR | O_CREAT, 0600);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    cr_assert_eq(fcntl(fd, F_OFD_SETLK, &fl), 0);

    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    int removed = -1;
    cr_assert_eq(prism_cache_prune(c, 0, &removed, NULL, 0), PRISM_OK);
    cr_assert_eq(removed, 1);
    cr_assert_not(exists(stale));
    cr_assert(exists(held), "a held lock is a build in progress");
    close(fd);
    cr_assert_eq(prism_cache_prune(c, 0, &removed, NULL, 0), PRISM_OK);
    cr_assert_eq(removed, 1);
    cr_assert_not(exists(held));
    prism_cache_close(c);
}

Test(cache, prune_to_a_smaller_cap) {
    cache_tu_builder b = {.size = PAYLOAD};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    char src[16];
    for (int i = 0; i < 5; i++) {
        snprintf(src, sizeof src, "k%d", i);
        prism_cache_key k = cache_tu_key(src);
        get_ok(c, &k, &b);
    }
    int removed = 0;
    cr_assert_eq(prism_cache_prune(c, 2 * ENTRY_BYTES, &removed, NULL, 0),
                 PRISM_OK);
    cr_assert_eq(removed, 3);
    cr_assert_eq(cache_tu_count(g_dir, ".prc"), 2);
    prism_cache_usage u;
    cr_assert_eq(prism_cache_get_usage(c, &u, NULL, 0), PRISM_OK);
    cr_assert_eq(u.entries, 2);
    cr_assert_eq(u.bytes, 2 * ENTRY_BYTES);
    prism_cache_close(c);
}

/* ---- JIT off and build failures ----------------------------------------- */

Test(cache, disable_jit_turns_a_miss_into_an_error) {
    prism_cache_key k = cache_tu_key("never built");
    cache_tu_builder b = {.size = 10};
    prism_cache_options o = {.dir = g_dir,
                             .read_only_path = "",
                             .disable_jit = true,
                             .logger = &g_logger};
    prism_cache *c = NULL;
    cr_assert_eq(prism_cache_open(&o, &c, NULL, 0), PRISM_OK);
    prism_cache_entry e;
    prism_cache_meta meta = cache_tu_meta("pool_stats");
    bool hit = true;
    char err[PRISM_ERRMSG_MAX];
    cr_assert_eq(prism_cache_get(c, &k, &meta, cache_tu_build, &b, &e, &hit,
                                 err, sizeof err),
                 PRISM_ERR_CACHE_MISS);
    cr_assert_not(hit);
    cr_assert_eq(b.calls, 0);
    cr_assert(strstr(err, k.hex), "the message names the key: %s", err);
    cr_assert(strstr(err, "PRISM_JIT"), "and the fix: %s", err);
    cr_assert(strstr(err, "pool_stats"), "and the kernel: %s", err);
    prism_counters n;
    prism_cache_counters(c, &n);
    cr_assert_eq(n.misses, 1);
    prism_cache_close(c);
    cr_assert_eq(cache_tu_count(g_dir, ""), 0);

    /* Hits still work with JIT off. */
    c = cache_tu_open(g_dir, &g_logger, 0);
    get_ok(c, &k, &b);
    prism_cache_close(c);
    cr_assert_eq(prism_cache_open(&o, &c, NULL, 0), PRISM_OK);
    cr_assert(get_ok(c, &k, &b));
    cr_assert_eq(b.calls, 1);
    prism_cache_close(c);
}

Test(cache, build_failure_propagates_and_publishes_nothing) {
    prism_cache_key k = cache_tu_key("does not compile");
    cache_tu_builder b = {.size = 10, .fail = PRISM_ERR_NVRTC};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    prism_cache_entry e;
    bool hit = true;
    char err[PRISM_ERRMSG_MAX];
    cr_assert_eq(prism_cache_get(c, &k, NULL, cache_tu_build, &b, &e, &hit, err,
                                 sizeof err),
                 PRISM_ERR_NVRTC);
    cr_assert_not(hit);
    cr_assert_str_eq(err, "boom: injected build failure");
    cr_assert_null(e.payload);
    cr_assert_str_eq(e.log, "error: injected failure log");
    prism_cache_entry_free(&e);
    cr_assert_eq(cache_tu_count(g_dir, ""), 0, "no entry, temp or lock file");
    cr_assert_eq(prism_cache_get(c, &k, NULL, cache_tu_build, &b, &e, &hit, err,
                                 sizeof err),
                 PRISM_ERR_NVRTC);
    prism_cache_entry_free(&e);
    cr_assert_eq(b.calls, 2, "a failure is not cached");
    b.fail = PRISM_OK;
    cr_assert_not(get_ok(c, &k, &b));
    cr_assert_eq(cache_tu_count(g_dir, ".prc"), 1);
    prism_cache_close(c);
}

/* ---- maintenance -------------------------------------------------------- */

static void collect(void *user, const char *line) {
    char *buf = user;
    size_t n = strlen(buf);
    snprintf(buf + n, 8192 - n, "%s\n", line);
}

Test(cache, clear_removes_writable_entries_only) {
    char *rw = subdir("rw", true), *ro = subdir("ro", true);
    cache_tu_builder b = {.size = 100};
    prism_cache_key shipped = cache_tu_key("shipped");
    ship_entry(&shipped, &b, ro);
    prism_cache *c = open_with_layers(rw, ro);
    char src[16];
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "k%d", i);
        prism_cache_key k = cache_tu_key(src);
        get_ok(c, &k, &b);
    }
    int calls = b.calls;
    int removed = 0;
    cr_assert_eq(prism_cache_clear(c, &removed, NULL, 0), PRISM_OK);
    cr_assert_eq(removed, 3);
    cr_assert_eq(cache_tu_count(rw, ".prc"), 0);
    cr_assert_eq(cache_tu_count(ro, ".prc"), 1);
    prism_cache_key k0 = cache_tu_key("k0");
    cr_assert_not(get_ok(c, &k0, &b), "memory layer cleared too");
    cr_assert_eq(b.calls, calls + 1);
    prism_cache_close(c);
}

Test(cache, verify_reports_bad_entries_in_every_layer) {
    char *rw = subdir("rw", true), *ro = subdir("ro", true);
    cache_tu_builder b = {.size = 100};
    prism_cache_key shipped = cache_tu_key("shipped");
    ship_entry(&shipped, &b, ro);
    prism_cache *c = open_with_layers(rw, ro);
    prism_cache_key k1 = cache_tu_key("k1"), k2 = cache_tu_key("k2");
    get_ok(c, &k1, &b);
    get_ok(c, &k2, &b);
    char lines[8192] = "", err[PRISM_ERRMSG_MAX];
    int bad = -1;
    cr_assert_eq(prism_cache_verify(c, collect, lines, &bad, err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(bad, 0);
    cr_assert_str_eq(lines, "");

    char p1[2048], pro[2048];
    cache_tu_entry_path(p1, sizeof p1, rw, &k1);
    cache_tu_entry_path(pro, sizeof pro, ro, &shipped);
    flip_byte(p1, 400);
    cr_assert_eq(truncate(pro, 390), 0);
    cr_assert_eq(prism_cache_verify(c, collect, lines, &bad, err, sizeof err),
                 PRISM_ERR_CACHE);
    cr_assert_eq(bad, 2);
    cr_assert(strstr(lines, p1), "%s", lines);
    cr_assert(strstr(lines, pro), "%s", lines);
    cr_assert(strstr(err, "2 of 3"), "%s", err);
    prism_cache_close(c);
}

Test(cache, list_prints_one_line_per_entry) {
    char *rw = subdir("rw", true), *ro = subdir("ro", true);
    cache_tu_builder b = {.size = 100};
    prism_cache_key shipped = cache_tu_key("shipped");
    ship_entry(&shipped, &b, ro);
    prism_cache *c = open_with_layers(rw, ro);
    prism_cache_key k1 = cache_tu_key("k1");
    get_ok(c, &k1, &b);
    char lines[8192] = "";
    cr_assert_eq(prism_cache_list(c, collect, lines, NULL, 0), PRISM_OK);
    char prefix[13];
    snprintf(prefix, sizeof prefix, "%.12s", k1.hex);
    cr_assert(strstr(lines, prefix), "%s", lines);
    snprintf(prefix, sizeof prefix, "%.12s", shipped.hex);
    cr_assert(strstr(lines, prefix), "%s", lines);
    cr_assert(strstr(lines, "llama3-8b"), "%s", lines);
    cr_assert(strstr(lines, "pool_stats"), "%s", lines);
    cr_assert(strstr(lines, "sm_90a"), "%s", lines);
    cr_assert(strstr(lines, "regs  42"), "%s", lines);
    cr_assert(strstr(lines, "read-only"), "%s", lines);
    int n = 0;
    for (const char *p = lines; (p = strchr(p, '\n')); p++)
        n++;
    cr_assert_eq(n, 2, "%s", lines);
    prism_cache_usage u;
    cr_assert_eq(prism_cache_get_usage(c, &u, NULL, 0), PRISM_OK);
    cr_assert_eq(u.entries, 1);
    cr_assert_eq(u.ro_entries, 1);
    cr_assert_eq(u.ro_bytes, 484);
    prism_cache_close(c);
}

/* ---- where the cache lives ---------------------------------------------- */

Test(cache, directory_comes_from_the_environment) {
    char *env_dir = subdir("from-env", false);
    char *xdg = subdir("xdg", false), *home = subdir("home", false);
    char want[1200];
    prism_cache *c;

    setenv("PRISM_CACHE_DIR", env_dir, 1);
    c = cache_tu_open(NULL, &g_logger, 0);
    cr_assert_str_eq(prism_cache_dir(c), env_dir);
    prism_cache_close(c);
    struct stat st;
    cr_assert_eq(stat(env_dir, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700, "created private");

    unsetenv("PRISM_CACHE_DIR");
    setenv("XDG_CACHE_HOME", xdg, 1);
    c = cache_tu_open(NULL, &g_logger, 0);
    snprintf(want, sizeof want, "%s/prism", xdg);
    cr_assert_str_eq(prism_cache_dir(c), want);
    prism_cache_close(c);

    setenv("XDG_CACHE_HOME", "relative/path", 1); /* ignored per XDG spec */
    setenv("HOME", home, 1);
    c = cache_tu_open(NULL, &g_logger, 0);
    snprintf(want, sizeof want, "%s/.cache/prism", home);
    cr_assert_str_eq(prism_cache_dir(c), want);
    prism_cache_close(c);

    /* An explicit dir wins over everything; trailing slashes are dropped. */
    setenv("PRISM_CACHE_DIR", env_dir, 1);
    snprintf(want, sizeof want, "%s/explicit//", g_dir);
    c = cache_tu_open(want, &g_logger, 0);
    snprintf(want, sizeof want, "%s/explicit", g_dir);
    cr_assert_str_eq(prism_cache_dir(c), want);
    prism_cache_close(c);

    /* PRISM_CACHE_PATH supplies the read-only layers. */
    char *ro = subdir("ro", true);
    setenv("PRISM_CACHE_PATH", ro, 1);
    prism_cache_options o = {.logger = &g_logger};
    cr_assert_eq(prism_cache_open(&o, &c, NULL, 0), PRISM_OK);
    cr_assert_eq(prism_cache_layer_count(c), 1);
    cr_assert_str_eq(prism_cache_layer_dir(c, 0), ro);
    prism_cache_close(c);
    cr_assert_eq(g_log.warnings, 0, "%s", g_log.text);
}

Test(cache, publish_leaves_no_temp_files_and_entries_not_writable_by_others) {
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    cache_tu_builder b = {.size = 0}; /* an empty payload is legal */
    prism_cache_key k = cache_tu_key("empty");
    prism_cache_entry e;
    bool hit;
    cr_assert_eq(
        prism_cache_get(c, &k, NULL, cache_tu_build, &b, &e, &hit, NULL, 0),
        PRISM_OK);
    cr_assert_eq(e.payload_size, 0);
    prism_cache_entry_free(&e);
    prism_cache_close(c);
    cr_assert_eq(cache_tu_count(g_dir, ""), 1);
    char path[2048];
    cache_tu_entry_path(path, sizeof path, g_dir, &k);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 384);
    cr_assert_eq(st.st_mode & 022, 0);
    c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert_eq(
        prism_cache_get(c, &k, NULL, cache_tu_build, &b, &e, &hit, NULL, 0),
        PRISM_OK);
    cr_assert(hit);
    cr_assert_eq(e.payload_size, 0);
    prism_cache_entry_free(&e);
    prism_cache_close(c);
}
