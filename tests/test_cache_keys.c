/*
 * test_cache_keys.c - cache keys depend on a config's content, never on
 * where it was read from: the same YAML loaded from two files in two
 * directories (under two names) and from a string generates the same
 * source for every kernel and arch, gets the same cache keys, and a
 * second build -- through the library or `prism compile` from the other
 * path -- is all cache hits; so is a pack made from one path and moved,
 * on a host with JIT off and no NVRTC.
 */
#include "cache_testutil.h"
#include "cli_testutil.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *g_dir;
static char g_text[4096], g_path[2][512];

/* The config's text, written under two paths. */
static void setup(void) {
    g_dir = cache_tu_mkdtemp();
    cr_assert_not_null(g_dir);
    char src[512];
    snprintf(src, sizeof src, "%s/configs/smollm2-135m.yaml", PRISM_SOURCE_DIR);
    FILE *f = fopen(src, "r");
    cr_assert_not_null(f);
    size_t n = fread(g_text, 1, sizeof g_text - 1, f);
    g_text[n] = '\0';
    fclose(f);
    snprintf(g_path[0], sizeof g_path[0], "%s/a.yaml", g_dir);
    snprintf(g_path[1], sizeof g_path[1], "%s/elsewhere/other-name.yaml", g_dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/elsewhere' '%s/cache'", g_dir, g_dir);
    cr_assert_eq(system(cmd), 0);
    for (int i = 0; i < 2; i++) {
        FILE *out = fopen(g_path[i], "w");
        cr_assert_not_null(out);
        fputs(g_text, out);
        fclose(out);
    }
}

static void teardown(void) {
    cache_tu_rm_rf(g_dir);
    free(g_dir);
}

TestSuite(cache_keys, .init = setup, .fini = teardown, .timeout = 300);

/* The same config three ways: two files and a string. */
static void load_three(prism_config cfg[3]) {
    char err[512];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(prism_config_load_file(g_path[i], &cfg[i], err, sizeof err),
                     PRISM_OK, "%s", err);
    cr_assert_eq(prism_config_load_string(g_text, strlen(g_text), "in memory",
                                          &cfg[2], err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_str_neq(cfg[0].source, cfg[1].source);
}

Test(cache_keys, sources_are_the_same_from_any_path) {
    prism_config cfg[3];
    load_three(cfg);
    for (int a = 0; a < PRISM_ARCH_COUNT_; a++)
        for (int k = 0; k < prism_kernel_count(); k++) {
            char *src[3], err[512];
            for (int i = 0; i < 3; i++)
                cr_assert_eq(prism_generate_source(&cfg[i], k, (prism_arch)a,
                                                   &src[i], err, sizeof err),
                             PRISM_OK, "%s", err);
            cr_expect_str_eq(src[0], src[1], "%s %s", prism_kernel_name(k),
                             prism_arch_name((prism_arch)a));
            cr_expect_str_eq(src[0], src[2]);
            cr_expect_null(strstr(src[0], g_dir), "no path in the source");
            for (int i = 0; i < 3; i++)
                free(src[i]);
        }
}

Test(cache_keys, a_second_build_from_another_path_hits) {
    prism_config cfg[3];
    load_three(cfg);
    prism_context_options opt;
    prism_context_options_init(&opt);
    char cache[600];
    snprintf(cache, sizeof cache, "%s/cache", g_dir);
    opt.cache_dir = cache;
    char keys[3][8][65];
    for (int i = 0; i < 3; i++) {
        /* a fresh context each time: hits come from the disk, as in a
         * second process */
        prism_context *ctx = NULL;
        cr_assert_eq(prism_context_create(&opt, &ctx), PRISM_OK);
        prism_module *m = NULL;
        cr_assert_eq(prism_module_build(ctx, &cfg[i], PRISM_ARCH_SM80, &m),
                     PRISM_OK, "%s", prism_context_last_error(ctx));
        for (int k = 0; k < prism_module_kernel_count(m); k++) {
            prism_kernel_info info;
            cr_assert_eq(prism_module_kernel_info(m, k, &info), PRISM_OK);
            strcpy(keys[i][k], info.key_hex);
            cr_expect_eq(info.cache_hit, i > 0, "%s from config %d",
                         info.name, i);
            if (i > 0)
                cr_expect_str_eq(keys[i][k], keys[0][k]);
        }
        prism_counters c;
        cr_assert_eq(prism_context_counters(ctx, &c), PRISM_OK);
        if (i > 0)
            cr_expect_eq(c.compiles, 0);
        prism_module_destroy(m);
        prism_context_destroy(ctx);
    }
}

Test(cache_keys, prism_compile_from_another_path_is_all_hits) {
    static char out[2][8192];
    for (int i = 0; i < 2; i++) {
        int rc = cli_tu_run(out[i], sizeof out[i], NULL, 0,
                            "PRISM_CACHE_DIR='%s/cache' PRISM_CACHE_PATH= "
                            "'%s' compile '%s' --arch sm_80",
                            g_dir, PRISM_CLI_PATH, g_path[i]);
        cr_assert_eq(rc, 0, "%s", out[i]);
    }
    cr_expect(strstr(out[0], "3 misses"), "%s", out[0]);
    cr_expect(strstr(out[1], "0 misses, 0 compiles"), "%s", out[1]);
    cr_expect_null(strstr(out[1], " miss "), "%s", out[1]);
    /* the same keys, line for line */
    const char *a = out[0], *b = out[1];
    for (int line = 0; line < prism_kernel_count(); line++) {
        char ka[32] = "", kb[32] = "";
        cr_assert_eq(sscanf(a, "%*s %*s %*s %31s", ka), 1);
        cr_assert_eq(sscanf(b, "%*s %*s %*s %31s", kb), 1);
        cr_expect_str_eq(ka, kb);
        a = strchr(a, '\n') + 1;
        b = strchr(b, '\n') + 1;
    }
}

/* A pack travels: built from the config at one path, moved elsewhere,
 * it serves the same content read from another path and under another
 * name, with PRISM_JIT=off and no NVRTC at all (PRISM_NVRTC_PATH points
 * nowhere), with no compile; `prism cache verify` says a device of its
 * arch uses every entry. */
Test(cache_keys, a_moved_pack_serves_another_path_without_nvrtc) {
    static char out[16384];
    int rc = cli_tu_run(out, sizeof out, NULL, 0,
                        "cd '%s' && PRISM_CACHE_DIR=cache PRISM_CACHE_PATH= "
                        "'%s' cache pack '%s' --arch sm_80 -o built && "
                        "mkdir -p shipped/to && mv built shipped/to/pack",
                        g_dir, PRISM_CLI_PATH, g_path[0]);
    cr_assert_eq(rc, 0, "%s", out);
    const char *host = "cd '%s' && PRISM_CACHE_DIR=host "
                       "PRISM_CACHE_PATH=shipped/to/pack PRISM_JIT=off "
                       "PRISM_NVRTC_PATH=/nonexistent/libnvrtc.so "
                       "LD_LIBRARY_PATH='%s' FAKE_CUDA_CC=8.0 '%s' %s";
    rc = cli_tu_run(out, sizeof out, NULL, 0, host, g_dir, PRISM_FAKE_CUDA_DIR,
                    PRISM_CLI_PATH, "compile elsewhere/other-name.yaml "
                                    "--arch sm_80");
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "3 disk hits, 0 misses, 0 compiles"), "%s", out);
    rc = cli_tu_run(out, sizeof out, NULL, 0, host, g_dir, PRISM_FAKE_CUDA_DIR,
                    PRISM_CLI_PATH, "cache verify shipped/to/pack");
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "no JIT (PRISM_JIT=off)"), "%s", out);
    cr_expect(strstr(out, "host summary: 3 of 3 entries used here (3 first "
                          "choice"),
              "%s", out);
}

/* Configs of one shape under other names (default.yaml, llama-3.1-8b.yaml
 * and qwen3-8b.yaml: D 128, 32 query and 8 KV heads, the same bands; their
 * RoPE bases and targets differ, which shape no kernel) generate the same
 * kernels, so a host that uses several compiles them once; a run-time
 * parameter changes none, a band width only the kernels that use it. */
Test(cache_keys, configs_of_one_shape_share_their_kernels) {
    static const char *const files[] = {"llama-3.1-8b.yaml", "qwen3-8b.yaml"};
    prism_config a, b[2];
    char err[512];
    cr_assert_eq(prism_config_load_file(PRISM_SOURCE_DIR "/configs/default.yaml",
                                        &a, err, sizeof err),
                 PRISM_OK, "%s", err);
    for (int i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/configs/%s", PRISM_SOURCE_DIR, files[i]);
        cr_assert_eq(prism_config_load_file(path, &b[i], err, sizeof err),
                     PRISM_OK, "%s", err);
        cr_assert_str_neq(a.name, b[i].name);
    }
    prism_config run = a, shape = a;
    run.threshold_high = 0.9; /* a launch parameter */
    shape.low_dim = 64;       /* pool_stats' and estimate's constant */
    for (int k = 0; k < prism_kernel_count(); k++) {
        const char *name = prism_kernel_name(k);
        char *sa, *s;
        cr_assert_eq(prism_generate_source(&a, k, PRISM_ARCH_SM90A, &sa, err,
                                           sizeof err),
                     PRISM_OK, "%s", err);
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(prism_generate_source(&b[i], k, PRISM_ARCH_SM90A, &s,
                                               err, sizeof err),
                         PRISM_OK, "%s", err);
            cr_expect_str_eq(sa, s, "%s %s", files[i], name);
            free(s);
        }
        cr_assert_eq(prism_generate_source(&run, k, PRISM_ARCH_SM90A, &s, err,
                                           sizeof err),
                     PRISM_OK, "%s", err);
        cr_expect_str_eq(sa, s, "threshold: %s", name);
        free(s);
        cr_assert_eq(prism_generate_source(&shape, k, PRISM_ARCH_SM90A, &s, err,
                                           sizeof err),
                     PRISM_OK, "%s", err);
        bool uses = strcmp(name, "attention") != 0;
        cr_expect_eq(strcmp(sa, s) != 0, uses, "low_dim: %s", name);
        free(s);
        free(sa);
    }
}
