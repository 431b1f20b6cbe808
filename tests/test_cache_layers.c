/*
 * test_cache_layers.c - the kernel cache's read-only layers, directory
 * trust, eviction, pruning, PRISM_JIT=off, clear/verify/list and the
 * environment (keys, entries and races: test_cache.c).  A separate file
 * (same suite name, same fixture from test_cache_common.h) only to keep
 * each under the project's 800-line limit.
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

/* A bad entry of a read-only layer is skipped, not replaced: it must not
 * count as a "corrupt entry replaced", and the fixes offered must be ones
 * that reach that layer ('prism cache clear' never does). */
Test(cache, read_only_corruption_is_not_counted_as_replaced) {
    char *rw = subdir("rw", true), *ro = subdir("ro", true);
    prism_cache_key key = cache_tu_key("shipped, then damaged");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 4};
    ship_entry(&key, &b, ro);
    char path[2048];
    cache_tu_entry_path(path, sizeof path, ro, &key);
    flip_byte(path, -1);
    g_log.warnings = 0;
    g_log.text[0] = '\0';
    prism_cache *c = open_with_layers(rw, ro);
    cr_assert_not(get_ok(c, &key, &b));
    prism_counters n;
    prism_cache_counters(c, &n);
    cr_assert_eq(n.corrupt, 0, "nothing was replaced");
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    char layer[1100];
    snprintf(layer, sizeof layer, "read-only layer %s", ro);
    cr_assert_eq(cache_tu_log_count(&g_log, layer), 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "PRISM_CACHE_PATH"), 1);

    char lines[8192] = "", err[PRISM_ERRMSG_MAX];
    int bad = -1;
    cr_assert_eq(prism_cache_verify(c, collect, lines, &bad, err, sizeof err),
                 PRISM_ERR_CACHE);
    cr_assert_eq(bad, 1);
    cr_assert(strstr(err, layer), "%s", err);
    cr_assert_null(strstr(err, "run 'prism cache clear'"), "%s", err);
    cr_assert(strstr(err, "PRISM_CACHE_PATH"), "%s", err);
    prism_cache_close(c);

    /* the same damage in the writable dir is counted: it is replaced */
    char rw_path[2048];
    cache_tu_entry_path(rw_path, sizeof rw_path, rw, &key);
    flip_byte(rw_path, -1);
    c = open_with_layers(rw, NULL);
    cr_assert_not(get_ok(c, &key, &b));
    prism_cache_counters(c, &n);
    cr_assert_eq(n.corrupt, 1);
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
