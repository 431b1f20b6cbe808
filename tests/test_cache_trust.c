/*
 * test_cache_trust.c - the trust rule of every cache layer: a directory or
 * entry that another account owns or can write is never used, because a
 * cubin runs on the GPU with the rights of the process that loads it.
 *
 * The rule (cache_internal.h): trusted when owned by the effective uid or
 * root and writable by neither group nor others.  The suite runs as root in
 * CI, so "another account" is uid 65534: a forked child that setuid()s to
 * it writes entries the way a second user would, or files are chown'ed to
 * it.  Where that is impossible (not root) the tests say so and skip.
 * Other trust cases (dirs owned by 65534) are in test_cache_layers.c.
 */
#include "test_cache_common.h"

#include <signal.h>

TestSuite(cache_trust, .init = setup, .fini = teardown, .timeout = 120);

#define OTHER_UID 65534

static void need_root(void) {
    if (geteuid() != 0)
        cr_skip_test("needs root to act as a second account (uid %d)",
                     OTHER_UID);
}

/* A valid entry for key, built as ourselves in a scratch dir; its path is
 * left in out (the caller copies it elsewhere). */
static void build_entry(const prism_cache_key *key, cache_tu_builder *b,
                        char *out, size_t size) {
    char *scratch = subdir("scratch", false);
    mkdir(scratch, 0700);
    prism_cache *c = cache_tu_open(scratch, &g_logger, 0);
    get_ok(c, key, b);
    prism_cache_close(c);
    cache_tu_entry_path(out, size, scratch, key);
}

/* Copies `from` to `to` from a child running as OTHER_UID, the way another
 * account would plant an entry; true when the child managed it. */
static bool copy_as_other_account(const char *from, const char *to) {
    int fd = open(from, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s", from);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (setgid(OTHER_UID) != 0 || setuid(OTHER_UID) != 0)
            _exit(2);
        int out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (out < 0)
            _exit(3);
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)n) != n)
                _exit(4);
        _exit(close(out) == 0 && n == 0 ? 0 : 5);
    }
    close(fd);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static prism_cache *open_layers(const char *dir, const char *layers) {
    prism_cache_options o = {
        .dir = dir, .read_only_path = layers, .logger = &g_logger};
    prism_cache *c = NULL;
    cr_assert_eq(prism_cache_open(&o, &c, NULL, 0), PRISM_OK);
    return c;
}

static uint64_t disk_hits(prism_cache *c) {
    prism_counters n;
    prism_cache_counters(c, &n);
    return n.disk_hits;
}

/* ---- the writable layer -------------------------------------------------- */

/* The report's case: a mode-0777 PRISM_CACHE_DIR of our own, and an entry
 * another account wrote into it, which used to be served as a disk hit. */
Test(cache_trust, world_writable_dir_and_planted_entry_are_not_used) {
    need_root();
    prism_cache_key key = cache_tu_key("planted by another account");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 9};
    char built[2048], planted[2048];
    build_entry(&key, &b, built, sizeof built);
    char *dir = subdir("shared", true);
    cr_assert_eq(chmod(dir, 0777), 0);
    cr_assert_eq(chmod(g_dir, 0711), 0, "let the other account reach it");
    cache_tu_entry_path(planted, sizeof planted, dir, &key);
    cr_assert(copy_as_other_account(built, planted),
              "the child (uid %d) could not write into %s", OTHER_UID, dir);
    struct stat st;
    cr_assert_eq(stat(planted, &st), 0);
    cr_assert_eq(st.st_uid, OTHER_UID);

    g_log.warnings = 0;
    g_log.text[0] = '\0';
    b.calls = 0;
    prism_cache *c = cache_tu_open(dir, &g_logger, 0);
    cr_assert_str_eq(prism_cache_dir(c), "", "a 0777 dir must not be used");
    cr_assert_eq(g_log.warnings, 1, "one warning: %s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, dir), 1, "%s", g_log.text);
    char fix[1200];
    snprintf(fix, sizeof fix, "chmod go-w %s", dir);
    cr_assert_eq(cache_tu_log_count(&g_log, fix), 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "memory only"), 1);
    cr_assert_not(get_ok(c, &key, &b), "the planted entry must not be served");
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(disk_hits(c), 0);
    cr_assert(get_ok(c, &key, &b), "the memory layer still works");
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    prism_cache_close(c);
    cr_assert_eq(cache_tu_count(dir, ""), 1, "nothing written to the dir");
}

Test(cache_trust, group_writable_dir_is_untrusted_even_when_ours) {
    char *dir = subdir("group", true);
    cr_assert_eq(chmod(dir, 0770), 0);
    prism_cache *c = cache_tu_open(dir, &g_logger, 0);
    cr_assert_str_eq(prism_cache_dir(c), "");
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "writable by its group"), 1, "%s",
                 g_log.text);
    prism_cache_close(c);
}

Test(cache_trust, dir_of_ours_with_mode_0755_is_trusted) {
    char *dir = subdir("plain", true);
    cr_assert_eq(chmod(dir, 0755), 0);
    prism_cache *c = cache_tu_open(dir, &g_logger, 0);
    cr_assert_str_eq(prism_cache_dir(c), dir);
    cr_assert_eq(g_log.warnings, 0, "%s", g_log.text);
    prism_cache_close(c);
}

/* An entry owned by another account in a dir we trust (only root could
 * have put it there): skipped with one warning, rebuilt and replaced. */
Test(cache_trust, entry_owned_by_another_account_is_skipped_and_replaced) {
    need_root();
    prism_cache_key key = cache_tu_key("chowned entry");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 3};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    get_ok(c, &key, &b);
    prism_cache_close(c);
    char path[2048];
    cache_tu_entry_path(path, sizeof path, g_dir, &key);
    cr_assert_eq(chmod(path, 0644), 0);
    cr_assert_eq(chown(path, OTHER_UID, OTHER_UID), 0);

    b.calls = 0;
    c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert_not(get_ok(c, &key, &b), "an entry of uid %d must not hit",
                  OTHER_UID);
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(disk_hits(c), 0);
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "owned by uid 65534"), 1, "%s",
                 g_log.text);
    prism_cache_close(c);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_uid, geteuid(), "the entry was not replaced");
}

/* ---- read-only layers ---------------------------------------------------- */

Test(cache_trust, world_writable_read_only_layer_of_ours_is_skipped) {
    prism_cache_key key = cache_tu_key("shipped in a 0777 layer");
    cache_tu_builder b = {.size = 64, .fill = 5};
    char built[2048], shipped[2048];
    build_entry(&key, &b, built, sizeof built);
    char *rw = subdir("rw", true), *ro = subdir("ro", true);
    cache_tu_entry_path(shipped, sizeof shipped, ro, &key);
    copy_file(built, shipped);
    cr_assert_eq(chmod(ro, 0777), 0);
    g_log.warnings = 0;
    g_log.text[0] = '\0';
    b.calls = 0;
    prism_cache *c = open_layers(rw, ro);
    cr_assert_eq(prism_cache_layer_count(c), 0);
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    char fix[1200];
    snprintf(fix, sizeof fix, "chmod go-w %s", ro);
    cr_assert_eq(cache_tu_log_count(&g_log, fix), 1, "%s", g_log.text);
    cr_assert_not(get_ok(c, &key, &b));
    cr_assert_eq(b.calls, 1);
    prism_cache_close(c);
}

Test(cache_trust, read_only_entry_of_another_account_is_skipped_untouched) {
    need_root();
    prism_cache_key key = cache_tu_key("shipped by someone else");
    cache_tu_builder b = {.size = 64, .fill = 6};
    char built[2048], shipped[2048];
    build_entry(&key, &b, built, sizeof built);
    char *rw = subdir("rw", true), *ro = subdir("ro", true);
    cr_assert_eq(chmod(ro, 0755), 0);
    cache_tu_entry_path(shipped, sizeof shipped, ro, &key);
    copy_file(built, shipped);
    cr_assert_eq(chmod(shipped, 0644), 0);
    cr_assert_eq(chown(shipped, OTHER_UID, OTHER_UID), 0);
    g_log.warnings = 0;
    g_log.text[0] = '\0';
    b.calls = 0;
    prism_cache *c = open_layers(rw, ro);
    cr_assert_eq(prism_cache_layer_count(c), 1, "the layer itself is fine");
    cr_assert_not(get_ok(c, &key, &b), "an entry of uid %d must not hit",
                  OTHER_UID);
    prism_cache_key other = cache_tu_key("another");
    cr_assert_not(get_ok(c, &other, &b));
    cr_assert_eq(g_log.warnings, 1, "once per layer: %s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, shipped), 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "PRISM_CACHE_PATH"), 1);
    prism_counters n;
    prism_cache_counters(c, &n);
    cr_assert_eq(n.disk_hits, 0);
    cr_assert_eq(n.corrupt, 0, "an untrusted entry is not a corrupt one");
    prism_cache_close(c);
    struct stat st;
    cr_assert_eq(stat(shipped, &st), 0);
    cr_assert_eq(st.st_uid, OTHER_UID, "a read-only layer is never written");
}

/* Root-owned layers are trusted: that is how a system-wide cache ships. */
Test(cache_trust, root_owned_read_only_layer_is_trusted) {
    need_root();
    prism_cache_key key = cache_tu_key("system cache");
    cache_tu_builder b = {.size = 64, .fill = 7};
    char built[2048], shipped[2048];
    build_entry(&key, &b, built, sizeof built);
    char *rw = subdir("rw", true), *ro = subdir("ro", true);
    cr_assert_eq(chmod(ro, 0755), 0);
    cache_tu_entry_path(shipped, sizeof shipped, ro, &key);
    copy_file(built, shipped);
    cr_assert_eq(chmod(shipped, 0444), 0);
    g_log.warnings = 0;
    b.calls = 0;
    prism_cache *c = open_layers(rw, ro);
    cr_assert(get_ok(c, &key, &b));
    cr_assert_eq(b.calls, 0);
    cr_assert_eq(g_log.warnings, 0, "%s", g_log.text);
    prism_cache_close(c);
}
