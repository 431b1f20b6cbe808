/*
 * test_cache.c - the verified on-disk kernel cache (cache/cache*.c):
 * keys, entries, corruption and concurrent builders.  Layers, trust,
 * eviction, pruning and maintenance are in test_cache_layers.c.
 *
 * Every test gets a fresh directory under /tmp (the fixture), passes it as
 * options.dir and never touches the user's cache.  A fake builder stands in
 * for NVRTC so the suite needs no GPU; it counts its calls, which is how
 * "built exactly once" is checked, across threads and across processes
 * (there through a file every call appends to).  The suite runs as root in
 * CI, so "unwritable" is made with a path under a regular file and
 * "untrusted" with chown to nobody, not with chmod.
 */
#include "test_cache_common.h"

TestSuite(cache, .init = setup, .fini = teardown, .timeout = 120);

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
