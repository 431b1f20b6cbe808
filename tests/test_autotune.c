/*
 * test_autotune.c - the tuning database, plan-side lookup and the
 * candidate space, without a GPU: database entries are made in memory for
 * a made-up device and candidates compile through NVRTC for real.
 * `prism autotune` itself is tested in test_autotune_cli.c.
 */
#include "autotune/autotune.h"
#include "runtime/plan_tuning.h"
#include "cache_testutil.h"
#include "base/fs.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static char *g_dir;
static char g_cache[1024], g_tune[1024 + 16];
static cache_tu_log g_log;

static void setup(void) {
    g_dir = cache_tu_mkdtemp();
    cr_assert_not_null(g_dir);
    snprintf(g_cache, sizeof g_cache, "%s/cache", g_dir);
    snprintf(g_tune, sizeof g_tune, "%s/cache/tuning", g_dir);
    unsetenv("PRISM_TUNE_DIR");
    unsetenv("PRISM_TUNE");
    unsetenv("PRISM_CACHE_PATH");
    unsetenv("PRISM_JIT");
}

static void teardown(void) {
    cache_tu_rm_rf(g_dir);
    free(g_dir);
}

TestSuite(tune_db, .init = setup, .fini = teardown, .timeout = 600);
TestSuite(tune_space, .init = setup, .fini = teardown, .timeout = 600);

static prism_config load(const char *name) {
    char path[1024], err[1024];
    prism_config cfg;
    snprintf(path, sizeof path, "%s/configs/%s", PRISM_SOURCE_DIR, name);
    cr_assert_eq(prism_config_load_file(path, &cfg, err, sizeof err), PRISM_OK,
                 "%s", err);
    return cfg;
}

/* A context on g_cache whose warnings land in g_log. */
static prism_context *context(const char *ro_path, bool no_jit) {
    prism_logger logger;
    cache_tu_log_init(&g_log, &logger);
    prism_context_options o;
    prism_context_options_init(&o);
    o.log = logger.fn;
    o.log_user = logger.user;
    o.log_level = PRISM_LOG_WARN;
    o.cache_dir = g_cache;
    o.cache_path = ro_path ? ro_path : "";
    o.disable_jit = no_jit;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    return ctx;
}

static prism_tune_device fake_device(const char *name, int major, int minor) {
    prism_tune_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", name);
    d.sm_count = 132;
    d.cc_major = major;
    d.cc_minor = minor;
    snprintf(d.nvrtc, sizeof d.nvrtc, "%s", "13.0 (test)");
    d.driver_version = 13000;
    prism_tune_device_set_key(&d);
    return d;
}

/* An attention entry of cfg on dev: default 1.0 ms, (64, 32, 16) 0.5 ms,
 * (128, 64, 32) 0.7 ms, one pruned, one mismatch, one untimed. */
static void make_entry(prism_tune_entry *e, const prism_config *cfg,
                       const prism_tune_device *dev, int bucket) {
    const prism_kernel_def *def = prism_kernel_def_find("attention");
    cr_assert_eq(prism_tune_entry_init(e, def, 6), PRISM_OK);
    e->device = *dev;
    snprintf(e->date, sizeof e->date, "2026-12-01T10:00:00Z");
    snprintf(e->config_name, sizeof e->config_name, "%s", cfg->name);
    cr_assert_eq(prism_tune_config_hash(cfg, e->config_hash), PRISM_OK);
    e->bucket = bucket;
    e->seq = bucket;
    static const int64_t v[6][3] = {{0, 0, 0},      {64, 32, 16}, {128, 64, 32},
                                    {128, 128, 32}, {64, 64, 16}, {0, 32, 0}};
    static const double ms[6] = {1.0, 0.5, 0.7, 0, 0, 0};
    static const prism_tune_status s[6] = {
        PRISM_TUNE_OK,     PRISM_TUNE_OK,       PRISM_TUNE_OK,
        PRISM_TUNE_PRUNED, PRISM_TUNE_MISMATCH, PRISM_TUNE_UNTIMED};
    for (int i = 0; i < 6; i++) {
        prism_tune_candidate *c = &e->candidates[i];
        memcpy(c->values, v[i], sizeof v[i]);
        c->status = s[i];
        if (s[i] == PRISM_TUNE_OK) {
            c->median_ms = ms[i];
            c->min_ms = ms[i] * 0.97;
            c->max_ms = ms[i] * 1.1 + 1e-9;
            c->n_timings = 2;
            c->timings[0] = (prism_tune_timing){0.1, ms[i] * 0.4, ms[i] * 0.38,
                                                ms[i] * 0.45, 100};
            c->timings[1] = (prism_tune_timing){0.2, ms[i] * 0.6, ms[i] * 0.59,
                                                ms[i] * 0.65, 51};
            c->registers = 255;
            c->spill_bytes = 0;
            c->shared_bytes = 0;
        }
    }
    snprintf(e->candidates[3].reason, sizeof e->candidates[3].reason,
             "spills 48 bytes");
    snprintf(e->candidates[4].reason, sizeof e->candidates[4].reason,
             "output differs \"quoted\" by 3e-2");
    e->complete = false;
}

static void entry_path(char *buf, size_t size, const prism_tune_entry *e) {
    char name[200];
    prism_tune_file_name(e->device.key, e->config_hash, e->kernel, e->bucket,
                         name, sizeof name);
    snprintf(buf, size, "%s/%s", g_tune, name);
}

Test(tune_db, buckets_and_keys) {
    cr_assert_eq(prism_tune_bucket(1), 4096);
    cr_assert_eq(prism_tune_bucket(4096), 4096);
    cr_assert_eq(prism_tune_bucket(4097), 8192);
    cr_assert_eq(prism_tune_bucket(100000), 131072);
    cr_assert_eq(prism_tune_bucket(262144), 262144);
    cr_assert_eq(prism_tune_bucket(1 << 24), 262144);

    prism_config a = load("default.yaml"), b = a;
    char ha[65], hb[65];
    snprintf(b.name, sizeof b.name, "renamed");
    b.n_targets = 1;
    b.n_tuning = 1;
    snprintf(b.tuning[0].kernel, 64, "attention");
    snprintf(b.tuning[0].param, 64, "block_m");
    b.tuning[0].value = 64;
    prism_tune_config_hash(&a, ha);
    prism_tune_config_hash(&b, hb);
    cr_assert_str_eq(ha, hb,
                     "name, targets and tuning do not change what "
                     "the kernels compute");
    b.threshold_high = 0.9;
    prism_tune_config_hash(&b, hb);
    cr_assert_str_neq(ha, hb);

    prism_tune_device d = fake_device("GPU", 9, 0), e = d;
    cr_assert_eq(strlen(d.key), 64);
    e.driver_version++;
    prism_tune_device_set_key(&e);
    cr_assert_str_neq(d.key, e.key, "a new driver is a new device key");
    e = d;
    snprintf(e.nvrtc, sizeof e.nvrtc, "13.1");
    prism_tune_device_set_key(&e);
    cr_assert_str_neq(d.key, e.key, "a new NVRTC is a new device key");
    prism_arch arch;
    cr_assert(prism_tune_device_arch(&d, &arch));
    cr_assert_eq(arch, PRISM_ARCH_SM90A);
    e.cc_major = 7;
    cr_assert_not(prism_tune_device_arch(&e, &arch));
}

Test(tune_db, round_trip_is_identical) {
    prism_config cfg = load("default.yaml");
    prism_tune_device dev = fake_device("NVIDIA H100 \"80GB\" HBM3", 9, 0);
    prism_tune_entry e, back;
    make_entry(&e, &cfg, &dev, 4096);
    char err[1024], path[1400], written[PRISM_PATH_MAX];
    cr_assert_eq(prism_tune_entry_write(g_tune, &e, written, err, sizeof err),
                 PRISM_OK, "%s", err);
    entry_path(path, sizeof path, &e);
    cr_assert_str_eq(written, path);
    bool absent = true;
    cr_assert_eq(prism_tune_entry_read(path, &back, &absent, err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_str_eq(back.device.name, dev.name);
    cr_assert_str_eq(back.device.key, dev.key);
    cr_assert_str_eq(back.config_hash, e.config_hash);
    cr_assert_str_eq(back.kernel, "attention");
    cr_assert_eq(back.bucket, 4096);
    cr_assert_eq(back.complete, false);
    cr_assert_eq(back.n_candidates, e.n_candidates);
    for (int i = 0; i < e.n_candidates; i++) {
        const prism_tune_candidate *x = &e.candidates[i],
                                   *y = &back.candidates[i];
        cr_assert_eq(memcmp(x->values, y->values, sizeof x->values), 0);
        cr_assert_eq(x->status, y->status);
        cr_assert_str_eq(x->reason, y->reason);
        cr_assert_eq(x->median_ms, y->median_ms, "doubles round-trip exactly");
        cr_assert_eq(x->min_ms, y->min_ms);
        cr_assert_eq(x->max_ms, y->max_ms);
        cr_assert_eq(x->n_timings, y->n_timings);
        for (int t = 0; t < x->n_timings; t++)
            cr_assert_eq(
                memcmp(&x->timings[t], &y->timings[t], sizeof x->timings[t]),
                0);
        cr_assert_eq(x->registers, y->registers);
    }
    /* re-serializing what was read gives the same bytes */
    char *t1, *t2;
    size_t n1, n2;
    cr_assert_eq(prism_tune_entry_to_yaml(&e, &t1, &n1, err, sizeof err),
                 PRISM_OK);
    cr_assert_eq(prism_tune_entry_to_yaml(&back, &t2, &n2, err, sizeof err),
                 PRISM_OK);
    cr_assert_eq(n1, n2);
    cr_assert_str_eq(t1, t2);
    cr_assert(strstr(t1, "values: {block_m: 64, block_n: 32, warp_m: 16, "
                         "path: 0, stages: 0, overlap: 0}"),
              "%s", t1);
    cr_assert_eq(prism_tune_entry_best(&back), 1, "0.5 ms wins");
    free(t1);
    free(t2);
    prism_tune_entry_free(&e);
    prism_tune_entry_free(&back);
}

Test(tune_db, lookup_picks_the_best_for_the_bucket) {
    prism_config cfg = load("default.yaml");
    prism_tune_device dev = fake_device("GPU", 9, 0);
    prism_tune_entry e;
    make_entry(&e, &cfg, &dev, 8192);
    char err[1024];
    cr_assert_eq(prism_tune_entry_write(g_tune, &e, NULL, err, sizeof err),
                 PRISM_OK);
    prism_context *ctx = context(NULL, false);
    int64_t v[PRISM_MAX_TUNABLES];
    bool found = false;
    cr_assert_eq(
        prism_plan_tuning_lookup(ctx, &dev, &cfg, "attention", 5000, v, &found),
        PRISM_OK);
    cr_assert(found);
    cr_assert(v[0] == 64 && v[1] == 32 && v[2] == 16);
    cr_assert_eq(
        prism_plan_tuning_lookup(ctx, &dev, &cfg, "attention", 8193, v, &found),
        PRISM_OK);
    cr_assert_not(found, "bucket 16384 has no entry");
    cr_assert_eq(
        prism_plan_tuning_lookup(ctx, &dev, &cfg, "estimate", 8192, v, &found),
        PRISM_OK);
    cr_assert_not(found);
    prism_tune_device other = fake_device("GPU", 8, 0);
    cr_assert_eq(
        prism_plan_tuning_lookup(ctx, &other, &cfg, "attention", 8192, v,
                                 &found),
        PRISM_OK);
    cr_assert_not(found);
    cr_assert_eq(g_log.warnings, 0, "a missing entry is silent: %s",
                 g_log.text);
    /* $PRISM_TUNE_DIR replaces the cache's tuning/ */
    char alt[1100];
    snprintf(alt, sizeof alt, "%s/alt", g_dir);
    setenv("PRISM_TUNE_DIR", alt, 1);
    cr_assert_eq(
        prism_plan_tuning_lookup(ctx, &dev, &cfg, "attention", 8192, v, &found),
        PRISM_OK);
    cr_assert_not(found);
    cr_assert_eq(prism_tune_entry_write(alt, &e, NULL, err, sizeof err),
                 PRISM_OK);
    cr_assert_eq(
        prism_plan_tuning_lookup(ctx, &dev, &cfg, "attention", 8192, v, &found),
        PRISM_OK);
    cr_assert(found);
    prism_context_destroy(ctx);
    prism_tune_entry_free(&e);
}

/* Writes text over the entry's file, looks it up: a miss, one warning. */
static void expect_bad(const prism_config *cfg, const prism_tune_device *dev,
                       const char *path, const char *text, size_t size,
                       const char *needle) {
    char err[1024];
    cr_assert_eq(prism_fs_write_atomic(path, text, size, err, sizeof err),
                 PRISM_OK);
    prism_context *ctx = context(NULL, false);
    int64_t v[PRISM_MAX_TUNABLES];
    bool found = true;
    cr_assert_eq(
        prism_plan_tuning_lookup(ctx, dev, cfg, "attention", 4096, v, &found),
        PRISM_OK);
    cr_assert_not(found, "a bad entry is a miss (%s)", needle);
    cr_assert_eq(g_log.warnings, 1, "one warning for %s, got: %s", needle,
                 g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, needle), 1, "%s not in: %s", needle,
                 g_log.text);
    prism_context_destroy(ctx);
}

static char *replace(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    cr_assert_not_null(at, "'%s' not in the entry", from);
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

Test(tune_db, corrupt_entries_are_misses_with_one_warning) {
    prism_config cfg = load("default.yaml");
    prism_tune_device dev = fake_device("GPU", 9, 0);
    prism_tune_device b = fake_device("Another GPU", 9, 0);
    prism_tune_entry e;
    make_entry(&e, &cfg, &dev, 4096);
    char path[1400], err[1024], *text;
    size_t size;
    entry_path(path, sizeof path, &e);
    cr_assert_eq(prism_tune_entry_write(g_tune, &e, NULL, err, sizeof err),
                 PRISM_OK);
    cr_assert_eq(prism_tune_entry_to_yaml(&e, &text, &size, err, sizeof err),
                 PRISM_OK);

    expect_bad(&cfg, &dev, path, text, size / 2, path); /* truncated */
    expect_bad(&cfg, &dev, path, "\x01\xff garbage: [\n{", 15, "not YAML");
    expect_bad(&cfg, &dev, path, "- a list\n", 9, "mapping");
    char *t = replace(text, "block_m: 64", "block_m: 96");
    expect_bad(&cfg, &dev, path, t, strlen(t), "no longer legal");
    free(t);
    t = replace(text, "seq: 4096\n", "");
    expect_bad(&cfg, &dev, path, t, strlen(t), "missing 'seq'");
    free(t);
    t = replace(text, "format: 1", "format: 99");
    expect_bad(&cfg, &dev, path, t, strlen(t), "format 99");
    free(t);
    t = replace(text, "sm_count: 132", "sm_count: 114");
    expect_bad(&cfg, &dev, path, t, strlen(t), "device key does not match");
    free(t);
    /* a well-formed entry of another device under this device's name */
    prism_tune_entry other;
    make_entry(&other, &cfg, &b, 4096);
    char *t2;
    size_t n2;
    cr_assert_eq(prism_tune_entry_to_yaml(&other, &t2, &n2, err, sizeof err),
                 PRISM_OK);
    expect_bad(&cfg, &dev, path, t2, n2, "another device");
    free(t2);
    prism_tune_entry_free(&other);
    /* and the good one is still found after all that */
    cr_assert_eq(prism_fs_write_atomic(path, text, size, err, sizeof err),
                 PRISM_OK);
    prism_context *ctx = context(NULL, false);
    int64_t v[PRISM_MAX_TUNABLES];
    bool found = false;
    prism_plan_tuning_lookup(ctx, &dev, &cfg, "attention", 4096, v, &found);
    cr_assert(found);
    prism_context_destroy(ctx);
    free(text);
    prism_tune_entry_free(&e);
}

static int64_t override_of(const prism_config *c, const char *k,
                           const char *p) {
    for (int i = 0; i < c->n_tuning; i++)
        if (!strcmp(c->tuning[i].kernel, k) && !strcmp(c->tuning[i].param, p))
            return c->tuning[i].value;
    return -1;
}

Test(tune_db, apply_appends_tuned_values_and_explicit_ones_win) {
    prism_config cfg = load("default.yaml"), out;
    prism_tune_device dev = fake_device("GPU", 9, 0);
    prism_tune_entry e;
    make_entry(&e, &cfg, &dev, 4096);
    char err[1024];
    cr_assert_eq(prism_tune_entry_write(g_tune, &e, NULL, err, sizeof err),
                 PRISM_OK);
    prism_context *ctx = context(NULL, false);
    int applied = 0;
    cr_assert_eq(prism_plan_tuning_apply(ctx, &cfg, &dev, 4096, &out, &applied),
                 PRISM_OK);
    cr_assert_eq(applied, 1);
    cr_assert_eq(override_of(&out, "attention", "block_m"), 64);
    cr_assert_eq(override_of(&out, "attention", "block_n"), 32);
    cr_assert_eq(override_of(&out, "attention", "warp_m"), 16);
    cr_assert_eq(prism_config_validate(&out, err, sizeof err), PRISM_OK, "%s",
                 err);

    prism_config pinned = cfg;
    pinned.n_tuning = 1;
    snprintf(pinned.tuning[0].kernel, 64, "attention");
    snprintf(pinned.tuning[0].param, 64, "block_n");
    pinned.tuning[0].value = 64;
    cr_assert_eq(
        prism_plan_tuning_apply(ctx, &pinned, &dev, 4096, &out, &applied),
        PRISM_OK);
    cr_assert_eq(applied, 1, "the hash ignores tuning: same entry");
    cr_assert_eq(override_of(&out, "attention", "block_n"), 64,
                 "explicit wins");
    cr_assert_eq(override_of(&out, "attention", "block_m"), 64);
    cr_assert_eq(out.n_tuning, 6, "every attention tunable");

    setenv("PRISM_TUNE", "off", 1);
    cr_assert_eq(prism_plan_tuning_apply(ctx, &cfg, &dev, 4096, &out, &applied),
                 PRISM_OK);
    cr_assert_eq(applied, 0);
    cr_assert_eq(out.n_tuning, 0);
    unsetenv("PRISM_TUNE");
    cr_assert_eq(g_log.warnings, 0, "%s", g_log.text);
    prism_context_destroy(ctx);
    prism_tune_entry_free(&e);
}

Test(tune_db, apply_skips_a_combination_the_config_rejects) {
    /* head_dim 256: warp_m = 32 is legal per tunable but not for this config */
    prism_config cfg = load("gemma-2-9b.yaml"), out;
    prism_tune_device dev = fake_device("GPU", 9, 0);
    prism_tune_entry e;
    make_entry(&e, &cfg, &dev, 4096);
    e.candidates[2].median_ms = 0.1; /* (128, 64, 32) wins */
    e.candidates[2].min_ms = 0.09;
    char err[1024];
    cr_assert_eq(prism_tune_entry_write(g_tune, &e, NULL, err, sizeof err),
                 PRISM_OK);
    prism_context *ctx = context(NULL, false);
    int applied = 7;
    cr_assert_eq(prism_plan_tuning_apply(ctx, &cfg, &dev, 4096, &out, &applied),
                 PRISM_OK);
    cr_assert_eq(applied, 0);
    cr_assert_eq(out.n_tuning, cfg.n_tuning);
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "warp_m = 32"), 1, "%s",
                 g_log.text);
    prism_context_destroy(ctx);
    prism_tune_entry_free(&e);
}

/* ---- the candidate space ------------------------------------------------- */

static int find_cand(const prism_tune_candidate *c, int n, int64_t a, int64_t b,
                     int64_t d) {
    for (int i = 0; i < n; i++)
        if (c[i].values[0] == a && c[i].values[1] == b && c[i].values[2] == d)
            return i;
    return -1;
}

Test(tune_space, enumeration_is_the_legal_product_default_first) {
    prism_config cfg = load("default.yaml");
    prism_tune_candidate *c;
    int n, illegal;
    char err[1024];
    int k = -1;
    for (int i = 0; i < prism_kernel_count(); i++)
        if (!strcmp(prism_kernel_name(i), "attention"))
            k = i;
    cr_assert_eq(prism_autotune_enumerate(&cfg, k, PRISM_ARCH_SM90A, &c, &n,
                                          &illegal, err, sizeof err),
                 PRISM_OK, "%s", err);
    /* block_m x block_n x warp_m x path x stages x overlap = 972 for
     * D = 128, of which legal: path 0 with block_m or warp_m pinned
     * (mma.sync, stages and overlap 0) 8 x 4 = 32, path 0 otherwise
     * (wgmma) 4 x 3 stages x 3 overlaps = 36, path 1 3 x 4 x 3 = 36,
     * path 2 (wgmma, block_m = warp_m = 0) 36. */
    cr_assert_eq(n, 32 + 36 + 36 + 36);
    cr_assert_eq(illegal, 972 - n);
    cr_assert(c[0].values[0] == 0 && c[0].values[1] == 0 &&
              c[0].values[2] == 0);
    cr_assert_eq(c[0].status, PRISM_TUNE_UNTIMED);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            cr_assert_neq(memcmp(c[i].values, c[j].values, sizeof c[i].values),
                          0);
    free(c);

    /* D = 256: warp_m = 32 and overlap = 1 are rejected by the kernel's
     * spec */
    prism_config g = load("gemma-2-9b.yaml");
    cr_assert_eq(prism_autotune_enumerate(&g, k, PRISM_ARCH_SM90A, &c, &n,
                                          &illegal, err, sizeof err),
                 PRISM_OK, "%s", err);
    /* as above with warp_m 32 out (5 x 4 on path 0 mma.sync, 3 x 4 x 2 on
     * path 1) and overlap 1 out of the wgmma paths (4 x 3 x 2 each) */
    cr_assert_eq(n, 20 + 24 + 24 + 24);
    cr_assert_eq(illegal, 972 - n);
    cr_assert_eq(find_cand(c, n, 0, 0, 32), -1);
    free(c);

    /* the default is the config's own override when it has one */
    g.n_tuning = 1;
    snprintf(g.tuning[0].kernel, 64, "attention");
    snprintf(g.tuning[0].param, 64, "block_n");
    g.tuning[0].value = 64;
    cr_assert_eq(prism_autotune_enumerate(&g, k, PRISM_ARCH_SM90A, &c, &n,
                                          &illegal, err, sizeof err),
                 PRISM_OK);
    cr_assert(c[0].values[0] == 0 && c[0].values[1] == 64 &&
              c[0].values[2] == 0);
    prism_config pins;
    cr_assert_eq(
        prism_autotune_candidate_config(&g, k, c[3].values, &pins, err,
                                        sizeof err),
        PRISM_OK);
    cr_assert_eq(pins.n_tuning, 8, "every tunable of every kernel is pinned");
    cr_assert_eq(override_of(&pins, "attention", "block_m"), c[3].values[0]);
    cr_assert_eq(override_of(&pins, "pool_stats", "threads"), 128);
    cr_assert_eq(prism_config_validate(&pins, err, sizeof err), PRISM_OK, "%s",
                 err);
    free(c);
}

Test(tune_space, prune_reasons_from_ptxas_info) {
    prism_kernel_info i;
    char why[256];
    memset(&i, 0, sizeof i);
    i.registers = 64;
    cr_assert_not(prism_autotune_prune_reason(&i, 256, why, sizeof why));
    i.spill_bytes = 48;
    cr_assert(prism_autotune_prune_reason(&i, 256, why, sizeof why));
    cr_assert(strstr(why, "spills 48 bytes"), "%s", why);
    i.spill_bytes = 0;
    i.shared_bytes = 64 * 1024;
    cr_assert(prism_autotune_prune_reason(&i, 256, why, sizeof why));
    cr_assert(strstr(why, "shared memory"), "%s", why);
    i.shared_bytes = 0;
    i.registers = 255;
    cr_assert(prism_autotune_prune_reason(&i, 512, why, sizeof why));
    cr_assert(strstr(why, "registers"), "%s", why);
    cr_assert_not(prism_autotune_prune_reason(&i, -1, why, sizeof why),
                  "unknown CTA size: no register rule");
}

/* Without a ptxas report (an NVRTC that returns an empty log), the stack
 * frame read from the cubin stands for spills, and a kernel whose
 * statistics cannot be read at all is said to be unchecked, never taken
 * for one that does not spill. */
Test(tune_space, spills_without_a_ptxas_report) {
    prism_kernel_info i;
    char why[256];
    memset(&i, 0, sizeof i);
    i.registers = 64;
    cr_assert_eq(prism_autotune_spill_check(&i), PRISM_SPILLS_REPORTED);
    i.spill_bytes = -1;
    i.local_bytes = 0;
    cr_assert_eq(prism_autotune_spill_check(&i), PRISM_SPILLS_FROM_FRAME);
    cr_assert_not(prism_autotune_prune_reason(&i, 256, why, sizeof why),
                  "no stack frame: nothing spills");
    i.local_bytes = 32;
    cr_assert(prism_autotune_prune_reason(&i, 256, why, sizeof why));
    cr_assert(strstr(why, "32 bytes of local memory") &&
                  strstr(why, "stands for"),
              "%s", why);
    i.registers = i.local_bytes = i.shared_bytes = -1;
    cr_assert_eq(prism_autotune_spill_check(&i), PRISM_SPILLS_UNKNOWN);
    cr_assert_not(prism_autotune_prune_reason(&i, 256, why, sizeof why));
}

/* Real NVRTC: every pool_stats and estimate candidate of a head_dim 256
 * config, and attention candidates on sm_80 (163 KB), where big tiles do
 * not fit; a candidate listed twice, and one whose tunables pin the very
 * tile shape the defaults resolve to (the source carries the resolved
 * shape, gen/launch.c), give the same cubin and are timed once. */
Test(tune_space, compiles_and_prunes_real_candidates) {
    prism_config cfg = load("gemma-2-9b.yaml");
    prism_context *ctx = context(NULL, false);
    char err[1024];
    const prism_arch arch = PRISM_ARCH_SM80;
    for (int k = 0; k < prism_kernel_count(); k++) {
        prism_tune_candidate *c;
        int n, illegal;
        cr_assert_eq(prism_autotune_enumerate(&cfg, k, arch, &c, &n, &illegal, err,
                                          sizeof err),
                     PRISM_OK);
        bool attention = !strcmp(prism_kernel_name(k), "attention");
        int keep[5] = {0, -1, -1, -1, -1}, m = 1;
        if (attention) { /* default, itself again, pinned default, too big,
                            fits */
            keep[m++] = 0;
            keep[m++] = find_cand(c, n, 64, 32, 16);
            keep[m++] = find_cand(c, n, 128, 128, 16);
            keep[m++] = find_cand(c, n, 64, 64, 16);
        } else {
            m = n;
            for (int i = 0; i < n; i++)
                keep[i] = i;
        }
        prism_tune_candidate sub[5];
        prism_autotune_build builds[5];
        memset(builds, 0, sizeof builds);
        for (int i = 0; i < m; i++) {
            cr_assert_geq(keep[i], 0);
            sub[i] = c[keep[i]];
        }
        cr_assert_eq(prism_autotune_compile(ctx, &cfg, k, arch, sub, builds, m, 2,
                                        0),
                     PRISM_OK);
        cr_assert(builds[0].ready, "%s default: %s", prism_kernel_name(k),
                  sub[0].reason);
        cr_assert_gt(sub[0].registers, 0);
        cr_assert_eq(sub[0].spill_bytes, 0);
        for (int i = 0; i < m; i++) {
            cr_assert(builds[i].attempted);
            cr_assert(builds[i].ready || sub[i].status == PRISM_TUNE_PRUNED);
            cr_assert(builds[i].ready || sub[i].reason[0]);
        }
        if (attention) {
            for (int i = 1; i <= 2; i++) {
                cr_assert_eq(sub[i].status, PRISM_TUNE_PRUNED);
                cr_assert(strstr(sub[i].reason, "same cubin as block_m=0 "
                                                "block_n=0 warp_m=0"),
                          "%s", sub[i].reason);
            }
            cr_assert_eq(sub[3].status, PRISM_TUNE_PRUNED);
            cr_assert(strstr(sub[3].reason, "does not compile"), "%s",
                      sub[3].reason);
            cr_assert(builds[4].ready, "(64, 64, 16) fits: %s", sub[4].reason);
        }
        free(c);
    }
    prism_context_destroy(ctx);
}
