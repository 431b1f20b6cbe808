/*
 * test_cache_cli.c - `prism cache ...` end to end.
 *
 * Entries are made with the library (a fake builder, no GPU) in a fresh
 * directory under /tmp; the built `prism` binary (PRISM_CLI_PATH) is then
 * run on it through the environment, as a user would, and its exit code
 * and output are checked.
 */
#include "cache_testutil.h"
#include "cli_testutil.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *g_dir;

static void setup(void) {
    g_dir = cache_tu_mkdtemp();
    cr_assert_not_null(g_dir);
}

static void teardown(void) {
    cache_tu_rm_rf(g_dir);
    free(g_dir);
}

TestSuite(cache_cli, .init = setup, .fini = teardown, .timeout = 120);

static char g_out[65536];

/* Runs `prism cache ARGS` with PRISM_CACHE_DIR=dir (stdout and stderr
 * together into g_out); returns the exit code. */
static int run_cli(const char *dir, const char *fmt, ...) {
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = cli_tu_run(g_out, sizeof g_out, NULL, 0,
                        "PRISM_CACHE_DIR='%s' PRISM_CACHE_PATH= PRISM_CACHE_MAX_BYTES= "
                        "'%s' cache %s",
                        dir, PRISM_CLI_PATH, args);
    cr_assert(rc >= 0, "prism cache %s did not exit", args);
    return rc;
}

/* Publishes n entries (payload 1000 bytes) with keys "cli-0".. */
static void populate(const char *dir, int n, prism_cache_key *keys) {
    prism_cache *c = cache_tu_open(dir, NULL, 0);
    cr_assert_not_null(c);
    cache_tu_builder b = {.size = 1000, .fill = 1};
    for (int i = 0; i < n; i++) {
        char src[32];
        snprintf(src, sizeof src, "cli-%d", i);
        keys[i] = cache_tu_key(src);
        prism_cache_meta meta = cache_tu_meta("pool_stats");
        prism_cache_entry e;
        bool hit;
        cr_assert_eq(prism_cache_get(c, &keys[i], &meta, cache_tu_build, &b, &e,
                                     &hit, NULL, 0),
                     PRISM_OK);
        prism_cache_entry_free(&e);
    }
    prism_cache_close(c);
}

Test(cache_cli, path_names_the_directory) {
    cr_assert_eq(run_cli(g_dir, "path"), 0, "%s", g_out);
    cr_assert(strstr(g_out, g_dir), "%s", g_out);
}

Test(cache_cli, ls_lists_entries_and_a_total) {
    prism_cache_key k[2];
    populate(g_dir, 2, k);
    cr_assert_eq(run_cli(g_dir, "ls"), 0, "%s", g_out);
    for (int i = 0; i < 2; i++) {
        char prefix[13];
        snprintf(prefix, sizeof prefix, "%.12s", k[i].hex);
        cr_assert(strstr(g_out, prefix), "%s", g_out);
    }
    cr_assert(strstr(g_out, "pool_stats"), "%s", g_out);
    cr_assert(strstr(g_out, "total: 2 entries"), "%s", g_out);
}

Test(cache_cli, verify_passes_then_fails_on_tampering) {
    prism_cache_key k[3];
    populate(g_dir, 3, k);
    cr_assert_eq(run_cli(g_dir, "verify"), 0, "%s", g_out);
    cr_assert(strstr(g_out, "verified 3 entries"), "%s", g_out);

    char path[2048];
    cache_tu_entry_path(path, sizeof path, g_dir, &k[1]);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, "X", 1, 700), 1);
    close(fd);
    cr_assert_eq(run_cli(g_dir, "verify"), 1, "%s", g_out);
    cr_assert(strstr(g_out, path), "the bad entry is named: %s", g_out);
    cr_assert(strstr(g_out, "1 of 3"), "%s", g_out);
}

Test(cache_cli, prune_to_a_cap_and_clear) {
    prism_cache_key k[3];
    populate(g_dir, 3, k);
    cr_assert_eq(run_cli(g_dir, "prune"), 0, "%s", g_out);
    cr_assert(strstr(g_out, "removed 0 files"), "%s", g_out);
    cr_assert_eq(run_cli(g_dir, "prune --max-bytes 2K"), 0, "%s", g_out);
    cr_assert(strstr(g_out, "removed 2 files"), "%s", g_out);
    cr_assert_eq(cache_tu_count(g_dir, ".prc"), 1);
    cr_assert_eq(run_cli(g_dir, "clear"), 0, "%s", g_out);
    cr_assert(strstr(g_out, "removed 1 entries"), "%s", g_out);
    cr_assert_eq(cache_tu_count(g_dir, ".prc"), 0);
    cr_assert_eq(run_cli(g_dir, "ls"), 0, "%s", g_out);
    cr_assert(strstr(g_out, "total: 0 entries"), "%s", g_out);
}

Test(cache_cli, usage_errors_and_help) {
    cr_assert_eq(run_cli(g_dir, "--help"), 0);
    cr_assert(strstr(g_out, "usage: prism cache"), "%s", g_out);
    const char *subs[] = {"path", "ls", "verify", "prune", "clear"};
    for (size_t i = 0; i < PRISM_ARRAY_LEN(subs); i++) {
        cr_assert_eq(run_cli(g_dir, "%s --help", subs[i]), 0, "%s", subs[i]);
        char want[64];
        snprintf(want, sizeof want, "usage: prism cache %s", subs[i]);
        cr_assert(strstr(g_out, want), "%s", g_out);
    }
    cr_assert_eq(run_cli(g_dir, ""), 2);
    cr_assert_eq(run_cli(g_dir, "frobnicate"), 2);
    cr_assert(strstr(g_out, "frobnicate"), "%s", g_out);
    cr_assert_eq(run_cli(g_dir, "prune --max-bytes lots"), 2);
    cr_assert(strstr(g_out, "lots"), "%s", g_out);
    cr_assert_eq(run_cli(g_dir, "prune --max-bytes"), 2);
    cr_assert_eq(run_cli(g_dir, "ls extra"), 2);
}

Test(cache_cli, unusable_directory_is_one_clear_error) {
    char file[1100], bad[1200];
    snprintf(file, sizeof file, "%s/plainfile", g_dir);
    fclose(fopen(file, "w"));
    snprintf(bad, sizeof bad, "%s/cache", file);
    cr_assert_eq(run_cli(bad, "clear"), 1, "%s", g_out);
    cr_assert(strstr(g_out, bad), "the path is named: %s", g_out);
    cr_assert(strstr(g_out, "PRISM_CACHE_DIR"), "the fix is named: %s", g_out);
    cr_assert_eq(run_cli(bad, "path"), 0, "%s", g_out);
    cr_assert(strstr(g_out, "none"), "%s", g_out);
}
