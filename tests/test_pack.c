/*
 * test_pack.c - pretuned cache packs: `prism cache pack`, `prism cache
 * verify PACK`, and using a pack with no compile at all.
 *
 * Packs are built for real (NVRTC, no GPU needed) from the small
 * smollm2-135m config for sm_80, in a fresh directory per test.  Tamper
 * checks change one thing at a time (a byte, a missing file, an extra
 * file) and expect exactly that problem, for directories and archives.
 */
#include "cache_testutil.h"
#include "cli_testutil.h"
#include "runtime/pack.h"
#include "runtime/plan_tuning.h"
#include "cache/tar.h"
#include "base/fs.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *g_dir;
static char g_cache[1024], g_tune[1024], g_pack[1024], g_tar[1024];
static char g_lines[16384];
static int g_n_lines;

static void setup(void) {
    g_dir = cache_tu_mkdtemp();
    cr_assert_not_null(g_dir);
    snprintf(g_cache, sizeof g_cache, "%s/cache", g_dir);
    snprintf(g_tune, sizeof g_tune, "%s/tune", g_dir);
    snprintf(g_pack, sizeof g_pack, "%s/pack", g_dir);
    snprintf(g_tar, sizeof g_tar, "%s/pack.tar", g_dir);
    unsetenv("PRISM_TUNE");
    unsetenv("PRISM_CACHE_PATH");
    unsetenv("PRISM_JIT");
    setenv("PRISM_TUNE_DIR", g_tune, 1);
    g_lines[0] = '\0';
    g_n_lines = 0;
}

static void teardown(void) {
    cache_tu_rm_rf(g_dir);
    free(g_dir);
}

TestSuite(pack, .init = setup, .fini = teardown, .timeout = 300);

static prism_config load(const char *name) {
    char path[1024], err[1024];
    prism_config cfg;
    snprintf(path, sizeof path, "%s/configs/%s", PRISM_SOURCE_DIR, name);
    cr_assert_eq(prism_config_load_file(path, &cfg, err, sizeof err), PRISM_OK,
                 "%s", err);
    return cfg;
}

static prism_context *context(const char *cache_dir, const char *ro,
                              bool no_jit) {
    prism_context_options o;
    prism_context_options_init(&o);
    o.cache_dir = cache_dir;
    o.cache_path = ro ? ro : "";
    o.disable_jit = no_jit;
    o.log_level = PRISM_LOG_ERROR;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    return ctx;
}

static void make_pack(const prism_config *cfg, const char *out,
                      prism_pack_report *rep) {
    prism_context *ctx = context(g_cache, NULL, false);
    prism_arch arch = PRISM_ARCH_SM80;
    prism_pack_options o = {.configs = cfg,
                            .n_configs = 1,
                            .archs = &arch,
                            .n_archs = 1,
                            .output = out};
    cr_assert_eq(prism_pack_create(ctx, &o, rep), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    prism_context_destroy(ctx);
}

static void on_line(void *user, const char *line) {
    (void)user;
    size_t n = strlen(g_lines);
    snprintf(g_lines + n, sizeof g_lines - n, "%s\n", line);
    g_n_lines++;
}

/* Verifies pack; returns the problem count (lines in g_lines). */
static int verify(const char *pack) {
    char err[1024];
    int problems = -1, files = 0;
    g_lines[0] = '\0';
    g_n_lines = 0;
    prism_status st = prism_pack_verify(pack, on_line, NULL, &problems, &files,
                                        err, sizeof err);
    cr_assert(st == PRISM_OK || st == PRISM_ERR_CACHE, "%s: %s", pack, err);
    cr_assert_eq(st == PRISM_OK, problems == 0);
    return problems;
}

static void read_file(const char *path, char **data, size_t *size) {
    char err[1024];
    cr_assert_eq(
        prism_fs_read_all(path, 1u << 26, data, size, NULL, err, sizeof err),
        PRISM_OK, "%s", err);
}

static void write_file(const char *path, const void *data, size_t size) {
    char err[1024];
    cr_assert_eq(prism_fs_write_atomic(path, data, size, err, sizeof err),
                 PRISM_OK, "%s", err);
}

/* The path of the first .prc of dir. */
static void first_entry(const char *dir, char *out, size_t size) {
    prism_fs_list l;
    char err[1024];
    cr_assert_eq(prism_fs_walk(dir, &l, err, sizeof err), PRISM_OK);
    out[0] = '\0';
    for (size_t i = 0; i < l.n && !out[0]; i++)
        if (strstr(l.items[i].path, ".prc"))
            snprintf(out, size, "%s/%s", dir, l.items[i].path);
    prism_fs_list_free(&l);
    cr_assert(out[0], "no entry in %s", dir);
}

Test(pack, directory_verifies_and_every_tampering_is_found) {
    prism_config cfg = load("smollm2-135m.yaml");
    prism_pack_report rep;
    make_pack(&cfg, g_pack, &rep);
    cr_assert_eq(rep.modules, 1);
    cr_assert_eq(rep.files, prism_kernel_count(), "one entry per kernel");
    cr_assert_eq(rep.compiles, (uint64_t)prism_kernel_count());
    cr_assert_eq(verify(g_pack), 0, "%s", g_lines);

    char entry[2048], *data, extra[1100];
    size_t size;
    first_entry(g_pack, entry, sizeof entry);
    read_file(entry, &data, &size);
    data[size / 2] ^= 0x40; /* one byte */
    write_file(entry, data, size);
    cr_assert_eq(verify(g_pack), 1, "%s", g_lines);
    cr_assert(strstr(g_lines, "ALTERED: ") && strstr(g_lines, ".prc"), "%s",
              g_lines);
    data[size / 2] ^= 0x40;
    write_file(entry, data, size);
    cr_assert_eq(verify(g_pack), 0, "%s", g_lines);

    cr_assert_eq(unlink(entry), 0);
    cr_assert_eq(verify(g_pack), 1, "%s", g_lines);
    cr_assert(strstr(g_lines, "MISSING: "), "%s", g_lines);
    write_file(entry, data, size);

    snprintf(extra, sizeof extra, "%s/notes.txt", g_pack);
    write_file(extra, "hello", 5);
    cr_assert_eq(verify(g_pack), 1, "%s", g_lines);
    cr_assert(strstr(g_lines, "EXTRA: notes.txt"), "%s", g_lines);
    unlink(extra);

    snprintf(extra, sizeof extra, "%s/%s", g_pack, PRISM_PACK_MANIFEST);
    free(data);
    read_file(extra, &data, &size);
    unlink(extra);
    cr_assert_eq(verify(g_pack), 1, "%s", g_lines);
    cr_assert(strstr(g_lines, "MISSING: MANIFEST.yaml"), "%s", g_lines);
    write_file(extra, data, size / 2); /* truncated manifest */
    cr_assert_geq(verify(g_pack), 1, "%s", g_lines);
    write_file(extra, data, size);
    cr_assert_eq(verify(g_pack), 0, "%s", g_lines);
    free(data);

    /* a pack is written only into a new or empty directory */
    prism_context *ctx = context(g_cache, NULL, false);
    prism_pack_options o = {.configs = &cfg, .n_configs = 1, .output = g_pack};
    cr_assert_neq(prism_pack_create(ctx, &o, &rep), PRISM_OK);
    cr_assert(strstr(prism_context_last_error(ctx), "not an empty directory"));
    prism_context_destroy(ctx);
}

/* Offset of the data of the first .prc member of a tar in memory. */
static size_t first_prc_data(const char *tar, size_t size) {
    for (size_t off = 0; off + 512 <= size; off += 512)
        if (!memcmp(tar + off + 257, "ustar", 5) && strstr(tar + off, ".prc"))
            return off + 512;
    cr_assert_fail("no .prc member");
    return 0;
}

Test(pack, archive_verifies_and_every_tampering_is_found) {
    prism_config cfg = load("smollm2-135m.yaml");
    prism_pack_report rep;
    make_pack(&cfg, g_tar, &rep);
    cr_assert_eq(verify(g_tar), 0, "%s", g_lines);
    struct stat st;
    char tmpdirs[1100];
    snprintf(tmpdirs, sizeof tmpdirs, "%s/pack.tar.d.", g_dir);
    cr_assert_eq(cache_tu_count(g_dir, ".tar"), 1);
    char *listing = cache_tu_listing(g_dir);
    cr_assert_null(strstr(listing, "pack.tar.d."), "assembly dir removed: %s",
                   listing);
    free(listing);

    /* any tar(1) reads it, manifest first */
    if (stat("/usr/bin/tar", &st) == 0 || stat("/bin/tar", &st) == 0) {
        char cmd[2200], line[256] = "";
        snprintf(cmd, sizeof cmd, "tar -tf '%s'", g_tar);
        FILE *p = popen(cmd, "r");
        cr_assert_not_null(p);
        cr_assert_not_null(fgets(line, sizeof line, p));
        int lines = 1;
        char more[256];
        while (fgets(more, sizeof more, p))
            lines++;
        cr_assert_eq(pclose(p), 0);
        cr_assert_str_eq(line, "MANIFEST.yaml\n");
        cr_assert_eq(lines, 1 + prism_kernel_count());
    }

    char *data;
    size_t size;
    read_file(g_tar, &data, &size);
    size_t at = first_prc_data(data, size);
    data[at + 100] ^= 1;
    char bad[1100];
    snprintf(bad, sizeof bad, "%s/altered.tar", g_dir);
    write_file(bad, data, size);
    cr_assert_eq(verify(bad), 1, "%s", g_lines);
    cr_assert(strstr(g_lines, "ALTERED: "), "%s", g_lines);
    data[at + 100] ^= 1;
    data[at - 512 + 120] ^= 1; /* a header byte: the archive is damaged */
    write_file(bad, data, size);
    char err[1024];
    int problems, files;
    cr_assert_eq(
        prism_pack_verify(bad, NULL, NULL, &problems, &files, err, sizeof err),
        PRISM_ERR_IO);
    cr_assert(strstr(err, "corrupt"), "%s", err);
    write_file(bad, data, size / 2);
    cr_assert_eq(
        prism_pack_verify(bad, NULL, NULL, &problems, &files, err, sizeof err),
        PRISM_ERR_IO);
    free(data);

    /* missing and extra members: re-archive a changed directory */
    make_pack(&cfg, g_pack, &rep);
    char entry[2048], extra[1100];
    first_entry(g_pack, entry, sizeof entry);
    cr_assert_eq(unlink(entry), 0);
    cr_assert_eq(prism_tar_write_dir(g_pack, PRISM_PACK_MANIFEST, bad, 0, err,
                                     sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(verify(bad), 1, "%s", g_lines);
    cr_assert(strstr(g_lines, "MISSING: "), "%s", g_lines);
    cache_tu_rm_rf(g_pack);
    make_pack(&cfg, g_pack, &rep);
    snprintf(extra, sizeof extra, "%s/tuning", g_pack);
    cr_assert_eq(mkdir(extra, 0755), 0);
    snprintf(extra, sizeof extra, "%s/tuning/x.yaml", g_pack);
    write_file(extra, "a: 1\n", 5);
    cr_assert_eq(prism_tar_write_dir(g_pack, PRISM_PACK_MANIFEST, bad, 0, err,
                                     sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(verify(bad), 1, "%s", g_lines);
    cr_assert(strstr(g_lines, "EXTRA: tuning/x.yaml"), "%s", g_lines);
}

/* A fake tuning entry of `kernel` for an sm_80 device, best = values. */
static prism_tune_device write_entry(const prism_config *cfg,
                                     const char *kernel, const int64_t *v) {
    prism_tune_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "NVIDIA A100-SXM4-80GB");
    d.sm_count = 108;
    d.cc_major = 8;
    d.nvrtc[0] = 'x';
    d.driver_version = 13000;
    prism_tune_device_set_key(&d);
    prism_tune_entry e;
    cr_assert_eq(prism_tune_entry_init(&e, prism_kernel_def_find(kernel), 1),
                 PRISM_OK);
    e.device = d;
    prism_tune_config_hash(cfg, e.config_hash);
    snprintf(e.config_name, sizeof e.config_name, "%s", cfg->name);
    e.bucket = e.seq = 4096;
    e.complete = true;
    memcpy(e.candidates[0].values, v, sizeof(int64_t) * PRISM_MAX_TUNABLES);
    e.candidates[0].status = PRISM_TUNE_OK;
    e.candidates[0].median_ms = e.candidates[0].min_ms =
        e.candidates[0].max_ms = 1;
    char err[1024];
    cr_assert_eq(prism_tune_entry_write(g_tune, &e, NULL, err, sizeof err),
                 PRISM_OK, "%s", err);
    prism_tune_entry_free(&e);
    return d;
}

Test(pack, a_pack_serves_untuned_and_tuned_kernels_with_no_compile) {
    prism_config cfg = load("smollm2-135m.yaml");
    int64_t v[PRISM_MAX_TUNABLES] = {64, 32, 16};
    prism_tune_device dev = write_entry(&cfg, "attention", v);
    prism_pack_report rep;
    make_pack(&cfg, g_pack, &rep);
    cr_assert_eq(rep.tuning_entries, 1);
    cr_assert_eq(rep.tuned_variants, 1);
    cr_assert_eq(rep.files, prism_kernel_count() + 2,
                 "entries, the tuned "
                 "attention and its tuning entry");
    cr_assert_eq(verify(g_pack), 0, "%s", g_lines);

    /* a host: the pack as a read-only layer, an empty writable cache, no
     * JIT, and no tuning directory of its own */
    unsetenv("PRISM_TUNE_DIR");
    char fresh[1100];
    snprintf(fresh, sizeof fresh, "%s/fresh", g_dir);
    prism_context *ctx = context(fresh, g_pack, true);
    prism_module *m = NULL;
    cr_assert_eq(prism_module_build(ctx, &cfg, PRISM_ARCH_SM80, &m), PRISM_OK,
                 "%s", prism_context_last_error(ctx));
    prism_module_destroy(m);
    prism_config tuned;
    int applied = 0;
    cr_assert_eq(
        prism_plan_tuning_apply(ctx, &cfg, &dev, 3000, &tuned, &applied),
        PRISM_OK);
    cr_assert_eq(applied, 1, "the pack's tuning/ is a read-only layer");
    cr_assert_eq(prism_module_build(ctx, &tuned, PRISM_ARCH_SM80, &m), PRISM_OK,
                 "%s", prism_context_last_error(ctx));
    prism_module_destroy(m);
    prism_counters c;
    prism_context_counters(ctx, &c);
    cr_assert_eq(c.compiles, 0);
    cr_assert_eq(c.misses, 0);
    cr_assert_eq(cache_tu_count(fresh, ".prc"), 0, "nothing was written");
    /* run-time parameters are no kernels: the pack serves other values */
    prism_config other = cfg;
    other.threshold_low = 0.9;
    other.q_heads = 3;
    other.kv_heads = 1;
    cr_assert_eq(prism_module_build(ctx, &other, PRISM_ARCH_SM80, &m), PRISM_OK,
                 "%s", prism_context_last_error(ctx));
    prism_module_destroy(m);
    /* what the pack lacks is an error under JIT off, not a compile */
    other.low_dim = other.head_dim / 2;
    cr_assert_eq(prism_module_build(ctx, &other, PRISM_ARCH_SM80, &m),
                 PRISM_ERR_CACHE_MISS);
    prism_context_destroy(ctx);

    /* the same through the environment, as a host program would do it */
    setenv("PRISM_CACHE_PATH", g_pack, 1);
    setenv("PRISM_JIT", "off", 1);
    prism_context_options o;
    prism_context_options_init(&o);
    o.cache_dir = fresh;
    o.log_level = PRISM_LOG_ERROR;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    cr_assert_eq(prism_module_build(ctx, &tuned, PRISM_ARCH_SM80, &m), PRISM_OK,
                 "%s", prism_context_last_error(ctx));
    prism_module_destroy(m);
    cr_assert_eq(prism_module_build(ctx, &other, PRISM_ARCH_SM80, &m),
                 PRISM_ERR_CACHE_MISS);
    prism_context_counters(ctx, &c);
    cr_assert_eq(c.compiles, 0);
    prism_context_destroy(ctx);
}

static char g_out[16384];

static int run_cli(const char *fmt, ...) {
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = cli_tu_run(g_out, sizeof g_out, NULL, 0,
                        "PRISM_CACHE_DIR='%s' PRISM_CACHE_PATH= PRISM_TUNE_DIR='%s' "
                        "'%s' %s",
                        g_cache, g_tune, PRISM_CLI_PATH, args);
    cr_assert(rc >= 0);
    return rc;
}

Test(pack, cli_pack_and_verify) {
    cr_assert_eq(run_cli("cache pack"), 2, "%s", g_out);
    cr_assert_eq(
        run_cli("cache pack %s/configs/smollm2-135m.yaml", PRISM_SOURCE_DIR), 2,
        "no -o: %s", g_out);
    cr_assert_eq(run_cli("cache pack %s/configs/smollm2-135m.yaml --arch sm_99 "
                         "-o x",
                         PRISM_SOURCE_DIR),
                 2, "%s", g_out);
    cr_assert_eq(run_cli("cache pack --help"), 0);
    cr_assert_eq(run_cli("cache pack %s/configs/smollm2-135m.yaml --arch sm_80 "
                         "-o '%s'",
                         PRISM_SOURCE_DIR, g_tar),
                 0, "%s", g_out);
    cr_assert(strstr(g_out, "packed 1 config"), "%s", g_out);
    cr_assert_eq(run_cli("cache verify '%s'", g_tar), 0, "%s", g_out);
    cr_assert(strstr(g_out, "all good"), "%s", g_out);
    cr_assert_eq(run_cli("cache verify '%s/nonexistent'", g_dir), 1, "%s",
                 g_out);
    cr_assert_eq(run_cli("cache pack %s/configs/smollm2-135m.yaml --arch sm_80 "
                         "-o '%s'",
                         PRISM_SOURCE_DIR, g_pack),
                 0, "%s", g_out);
    char extra[1100];
    snprintf(extra, sizeof extra, "%s/stray.prc", g_pack);
    write_file(extra, "x", 1);
    cr_assert_eq(run_cli("cache verify '%s'", g_pack), 1, "%s", g_out);
    cr_assert(strstr(g_out, "EXTRA: stray.prc"), "%s", g_out);
    cr_assert(strstr(g_out, "prism: pack "), "%s", g_out);
    /* verify without PACK is still the cache's own check */
    cr_assert_eq(run_cli("cache verify"), 0, "%s", g_out);
    cr_assert(strstr(g_out, "verified"), "%s", g_out);
}

/* An existing output is refused alike whether it is a .tar or a directory;
 * --force replaces a pack of either kind and nothing else. */
Test(pack, cli_existing_output_needs_force) {
    char other[1100], keep[1200];
    snprintf(other, sizeof other, "%s/other", g_dir);
    snprintf(keep, sizeof keep, "%s/keep.txt", other);
    cr_assert_eq(mkdir(other, 0700), 0);
    write_file(keep, "x", 1);
    const struct {
        const char *out, *force;
        int rc;
        const char *message;
    } rows[] = {
        {g_tar, "", 0, "packed 1 config"},
        {g_tar, "", 1, "exists; choose a new -o, or add --force"},
        {g_tar, "--force", 0, "packed 1 config"},
        {g_pack, "", 0, "packed 1 config"},
        {g_pack, "", 1, "exists; choose a new -o, or add --force"},
        {g_pack, "--force", 0, "packed 1 config"},
        {other, "", 1, "(only a pack can be replaced)"},
        {other, "--force", 1, "is not a pack (no MANIFEST.yaml)"},
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(rows); i++) {
        int rc = run_cli("cache pack %s/configs/smollm2-135m.yaml --arch sm_80 "
                         "-o '%s' %s",
                         PRISM_SOURCE_DIR, rows[i].out, rows[i].force);
        cr_assert_eq(rc, rows[i].rc, "row %zu: %s", i, g_out);
        cr_assert(strstr(g_out, rows[i].message), "row %zu: %s", i, g_out);
        if (rc == 0)
            cr_assert_eq(verify(rows[i].out), 0, "row %zu: %s", i, g_lines);
    }
    cr_assert_eq(access(keep, F_OK), 0, "a directory not a pack is kept");
}
