/*
 * test_nvrtc.c - NVRTC compiles every kernel for sm_80 and sm_90a (no GPU
 * needed), ptxas info is parsed, failures are statuses with the log, the
 * module builder goes through the cache (miss, then hit), and configs that
 * differ only in run-time parameters share their cubins.
 */
#include <criterion/criterion.h>

#include "fake_testutil.h"
#include "cli_testutil.h"
#include "compile/nvrtc_compile.h"
#include "prism.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static prism_config config_for(int head_dim, prism_dtype dtype,
                               prism_rope_layout layout) {
    prism_config cfg;
    prism_config_init(&cfg);
    cfg.head_dim = head_dim;
    cfg.high_dim = head_dim / 2;
    cfg.low_dim = head_dim * 3 / 4;
    cfg.dtype = dtype;
    cfg.rope_layout = layout;
    strcpy(cfg.name, "unit");
    strcpy(cfg.source, "unit.yaml");
    return cfg;
}

Test(nvrtc, key_version_is_major_minor_only) {
    const char *v = prism_nvrtc_version();
    int major = 0, minor = 0, used = 0;
    cr_assert_eq(sscanf(v, "nvrtc %d.%d%n", &major, &minor, &used), 2,
                 "version: %s", v);
    cr_assert_eq(v[used], '\0', "no patch level in the key: %s", v);
    cr_assert_geq(major, 12);
    cr_assert_eq(v, prism_nvrtc_version());
}

Test(nvrtc, loaded_version_is_read_without_a_probe_compile) {
    const char *v = prism_nvrtc_loaded_version();
    int major = 0, minor = 0;
    cr_assert_eq(sscanf(v, "%d.%d", &major, &minor), 2, "loaded: %s", v);
    cr_assert_geq(major, 12);
}

/* A missing NVRTC is an error only when something must be compiled, and
 * the error names what was looked for. */
Test(nvrtc, missing_nvrtc_is_a_clear_error_at_compile_time) {
    setenv("PRISM_NVRTC_PATH", "/nonexistent/libnvrtc.so.13", 1);
    prism_nvrtc_result r;
    char err[1024] = "";
    cr_assert_eq(prism_nvrtc_compile("__global__ void k() {}", "k.cu",
                                     PRISM_ARCH_SM80, &r, err, sizeof err),
                 PRISM_ERR_NVRTC);
    cr_assert(strstr(err, "/nonexistent/libnvrtc.so.13") &&
                  strstr(err, "PRISM_NVRTC_PATH"),
              "%s", err);
    cr_assert_str_eq(prism_nvrtc_loaded_version(), "not found");
}

Test(nvrtc, parses_ptxas_info) {
    const char *log =
        "ptxas info    : Compiling entry function 'a' for 'sm_90a'\n"
        "ptxas         .     24 bytes stack frame, 8 bytes spill stores, 12 "
        "bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 1 barriers, 1072 bytes smem\n"
        "ptxas info    : Compiling entry function 'b' for 'sm_90a'\n"
        "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 "
        "bytes spill loads\n"
        "ptxas info    : Used 12 registers\n";
    prism_nvrtc_result r;
    memset(&r, 0, sizeof r);
    prism_nvrtc_parse_info(log, &r);
    cr_assert_eq(r.registers, 40);
    cr_assert_eq(r.shared_bytes, 1072);
    cr_assert_eq(r.local_bytes, 24);
    cr_assert_eq(r.spill_bytes, 20);
    prism_nvrtc_parse_info("", &r);
    cr_assert_eq(r.registers, -1);
}

Test(nvrtc, every_kernel_compiles_for_sm80_and_sm90a, .timeout = 600) {
    static const int dims[] = {64, 128, 256};
    static const prism_arch archs[] = {PRISM_ARCH_SM80, PRISM_ARCH_SM90A};
    for (int d = 0; d < 3; d++)
        for (int a = 0; a < 2; a++)
            for (int k = 0; k < prism_kernel_count(); k++) {
                prism_config cfg = config_for(
                    dims[d], d == 1 ? PRISM_DTYPE_FP16 : PRISM_DTYPE_BF16,
                    d == 2 ? PRISM_ROPE_INTERLEAVED : PRISM_ROPE_HALF);
                char *src = NULL;
                char err[1024];
                cr_assert_eq(prism_generate_source(&cfg, k, archs[a], &src,
                                                   err, sizeof err),
                             PRISM_OK, "%s", err);
                prism_nvrtc_result r;
                prism_status st =
                    prism_nvrtc_compile(src, "k.cu", archs[a], &r, err,
                                        sizeof err);
                cr_assert_eq(st, PRISM_OK, "%s D=%d %s: %s\n%s",
                             prism_kernel_name(k), dims[d],
                             prism_arch_name(archs[a]), err,
                             r.log ? r.log : "");
                cr_assert_gt(r.cubin_size, 1000);
                /* a cubin is an ELF file, not PTX text */
                cr_assert(memcmp(r.cubin, "\177ELF", 4) == 0);
                cr_assert_gt(r.registers, 0);
                cr_assert_eq(r.spill_bytes, 0, "%s D=%d %s spills:\n%s",
                             prism_kernel_name(k), dims[d],
                             prism_arch_name(archs[a]), r.log);
                cr_assert_gt(r.compile_ms, 0.0);
                prism_nvrtc_result_free(&r);
                free(src);
            }
}

/* The archs after sm_90a run the mma.sync kernels: NVRTC compiles them
 * for sm_100 and sm_120 without spills, and into PTX for compute_80, the
 * image a device no cubin covers loads (text for the driver to compile,
 * NUL-terminated, no ptxas statistics). */
Test(nvrtc, every_kernel_compiles_for_blackwell_and_ptx, .timeout = 900) {
    static const int dims[] = {64, 256};
    static const prism_arch archs[] = {PRISM_ARCH_SM100, PRISM_ARCH_SM120,
                                       PRISM_ARCH_PTX};
    for (int d = 0; d < 2; d++)
        for (int a = 0; a < 3; a++)
            for (int k = 0; k < prism_kernel_count(); k++) {
                prism_config cfg = config_for(dims[d], PRISM_DTYPE_BF16,
                                              PRISM_ROPE_HALF);
                char *src = NULL;
                char err[1024];
                cr_assert_eq(prism_generate_source(&cfg, k, archs[a], &src,
                                                   err, sizeof err),
                             PRISM_OK, "%s", err);
                cr_assert_null(strstr(src, "wgmma.mma_async"),
                               "the wgmma kernel is sm_90a's alone");
                prism_nvrtc_result r;
                prism_status st = prism_nvrtc_compile(src, "k.cu", archs[a],
                                                      &r, err, sizeof err);
                const char *what = prism_arch_name(archs[a]);
                cr_assert_eq(st, PRISM_OK, "%s D=%d %s: %s\n%s",
                             prism_kernel_name(k), dims[d], what, err,
                             r.log ? r.log : "");
                if (archs[a] == PRISM_ARCH_PTX) {
                    const char *ptx = r.cubin;
                    cr_assert_eq(ptx[r.cubin_size - 1], '\0');
                    cr_assert(strstr(ptx, ".target sm_80"), "%.200s", ptx);
                    cr_assert_eq(r.registers, -1);
                } else {
                    cr_assert(memcmp(r.cubin, "\177ELF", 4) == 0);
                    cr_assert_gt(r.registers, 0);
                    cr_assert_eq(r.spill_bytes, 0, "%s D=%d %s spills:\n%s",
                                 prism_kernel_name(k), dims[d], what, r.log);
                }
                prism_nvrtc_result_free(&r);
                free(src);
            }
}

/* The sm_90a attention kernel in every shape the tuner may pick: wgmma
 * stays asynchronous (ptxas says C7514, C7511, C7520... when it has to
 * serialise wgmma),
 * setmaxnreg is honoured (C7508 when ignored), nothing spills or uses
 * local memory. */
Test(nvrtc, hopper_attention_variants_keep_wgmma_async, .timeout = 600) {
    static const int dims[] = {64, 128, 256};
    static const int64_t variants[][2] = {{0, 0}, {2, 1}, {3, 1}, {3, 2}};
    for (int d = 0; d < 3; d++)
        for (int v = 0; v < 4; v++) {
            prism_config cfg = config_for(dims[d], PRISM_DTYPE_BF16,
                                          PRISM_ROPE_HALF);
            const char *names[] = {"stages", "overlap"};
            for (int i = 0; i < 2; i++) {
                snprintf(cfg.tuning[i].kernel, 64, "attention");
                snprintf(cfg.tuning[i].param, 64, "%s", names[i]);
                cfg.tuning[i].value = variants[v][i];
            }
            cfg.n_tuning = 2;
            int k = -1;
            for (int i = 0; i < prism_kernel_count(); i++)
                if (!strcmp(prism_kernel_name(i), "attention"))
                    k = i;
            char *src = NULL, err[1024];
            prism_status st = prism_generate_source(&cfg, k, PRISM_ARCH_SM90A,
                                                    &src, err, sizeof err);
            if (dims[d] == 256 && variants[v][1] == 1) {
                /* overlap 1 at head_dim 256 spills: a config error */
                cr_assert_eq(st, PRISM_ERR_CONFIG);
                cr_assert(strstr(err, "overlap = 1 needs head_dim <= 128"), "%s",
                          err);
                continue;
            }
            if (dims[d] == 256 && variants[v][0] == 3) {
                /* (128 + 3 x 64) x 256 x 2 bytes: over 227 KB */
                cr_assert_eq(st, PRISM_OK, "%s", err);
                prism_nvrtc_result r;
                cr_assert_eq(prism_nvrtc_compile(src, "k.cu", PRISM_ARCH_SM90A,
                                                 &r, err, sizeof err),
                             PRISM_ERR_NVRTC);
                cr_assert(strstr(err, "exceed 227 KB"), "%s", err);
                prism_nvrtc_result_free(&r);
                free(src);
                continue;
            }
            cr_assert_eq(st, PRISM_OK, "%s", err);
            cr_assert(strstr(src, "gen/templates/attention_sm90.cu") &&
                      strstr(src, "wgmma.mma_async"));
            prism_nvrtc_result r;
            cr_assert_eq(prism_nvrtc_compile(src, "k.cu", PRISM_ARCH_SM90A, &r,
                                             err, sizeof err),
                         PRISM_OK, "%s", err);
            cr_assert_eq(r.spill_bytes, 0, "D=%d stages %lld overlap %lld:\n%s",
                         dims[d], (long long)variants[v][0],
                         (long long)variants[v][1], r.log);
            /* no local memory at all (the largest stack frame of any
             * function): the split-row merge once indexed an array with
             * a loop variable and kept it on the stack */
            cr_assert_eq(r.local_bytes, 0, "D=%d stages %lld overlap %lld:\n%s",
                         dims[d], (long long)variants[v][0],
                         (long long)variants[v][1], r.log);
            /* C7514 (a batch under a branch) is a warning; C7511 (register
             * resources), C7520 (a divergent path) and their kin are info
             * lines that all say "are serialized" */
            cr_assert_null(strstr(r.log, "C7514"), "serialised wgmma:\n%s", r.log);
            cr_assert_null(strstr(r.log, "are serialized"), "serialised wgmma:\n%s",
                           r.log);
            cr_assert_null(strstr(r.log, "C7508"), "setmaxnreg ignored:\n%s",
                           r.log);
            cr_assert_gt(r.registers, 0, "ptxas info is in the log:\n%s", r.log);
            prism_nvrtc_result_free(&r);
            free(src);
        }
}

Test(nvrtc, compile_error_is_a_status_with_the_log) {
    prism_nvrtc_result r;
    char err[512];
    prism_status st = prism_nvrtc_compile(
        "extern \"C\" __global__ void k() { undefined_thing(); }", "bad.cu",
        PRISM_ARCH_SM80, &r, err, sizeof err);
    cr_assert_eq(st, PRISM_ERR_NVRTC);
    cr_assert(strstr(err, "bad.cu") != NULL, "%s", err);
    cr_assert(strstr(err, "undefined_thing") != NULL, "%s", err);
    cr_assert_not_null(r.log);
    cr_assert(strstr(r.log, "undefined_thing") != NULL);
    cr_assert_null(r.cubin);
    prism_nvrtc_result_free(&r);
}

static char cache_dir[64];

static void make_cache_dir(void) {
    strcpy(cache_dir, "/tmp/prism-test-nvrtc-XXXXXX");
    cr_assert_not_null(mkdtemp(cache_dir));
}

static void remove_cache_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
    cr_assert_eq(system(cmd), 0);
}

Test(nvrtc, module_build_misses_then_hits, .init = make_cache_dir,
     .fini = remove_cache_dir, .timeout = 300) {
    prism_config cfg = config_for(128, PRISM_DTYPE_BF16, PRISM_ROPE_HALF);
    prism_context_options opt;
    prism_context_options_init(&opt);
    opt.cache_dir = cache_dir;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&opt, &ctx), PRISM_OK);

    prism_module *m = NULL;
    cr_assert_eq(prism_module_build(ctx, &cfg, PRISM_ARCH_SM90A, &m), PRISM_OK,
                 "%s", prism_context_last_error(ctx));
    cr_assert_eq(prism_module_kernel_count(m), prism_kernel_count());
    prism_kernel_info info;
    cr_assert_eq(prism_module_kernel_info(m, 0, &info), PRISM_OK);
    cr_assert_not(info.cache_hit);
    cr_assert_eq(strlen(info.key_hex), 64);
    cr_assert_gt(info.cubin_size, 0);
    cr_assert_gt(info.registers, 0);
    char first_key[65];
    strcpy(first_key, info.key_hex);
    prism_module_destroy(m);

    /* a second context (as a second process would) hits on disk */
    prism_context *ctx2 = NULL;
    cr_assert_eq(prism_context_create(&opt, &ctx2), PRISM_OK);
    cr_assert_eq(prism_module_build(ctx2, &cfg, PRISM_ARCH_SM90A, &m), PRISM_OK);
    cr_assert_eq(prism_module_kernel_info(m, 0, &info), PRISM_OK);
    cr_assert(info.cache_hit);
    cr_assert_str_eq(info.key_hex, first_key);
    cr_assert_gt(info.registers, 0, "metadata comes back from the entry");
    prism_module_destroy(m);
    prism_counters c;
    cr_assert_eq(prism_context_counters(ctx2, &c), PRISM_OK);
    cr_assert_eq(c.compiles, 0);
    cr_assert_eq(c.disk_hits, (uint64_t)prism_kernel_count());

    /* another arch is another key */
    cr_assert_eq(prism_module_build(ctx2, &cfg, PRISM_ARCH_SM80, &m), PRISM_OK);
    cr_assert_eq(prism_module_kernel_info(m, 0, &info), PRISM_OK);
    cr_assert_not(info.cache_hit);
    cr_assert_str_neq(info.key_hex, first_key);
    prism_module_destroy(m);
    prism_module_destroy(NULL);
    prism_context_destroy(ctx);
    prism_context_destroy(ctx2);
    prism_context_destroy(NULL);
}

/* Head counts and the method's settings are launch parameters: configs
 * that differ only in them (and in their names) share every cubin. */
Test(nvrtc, run_time_parameters_share_the_cubins, .init = make_cache_dir,
     .fini = remove_cache_dir, .timeout = 600) {
    prism_config a = config_for(64, PRISM_DTYPE_BF16, PRISM_ROPE_HALF);
    prism_config b = a;
    strcpy(b.name, "tp-shard");
    b.threshold_high = 0.9;
    b.threshold_low = 0.98;
    b.calibrate = false;
    b.temp_high = 0.5;
    b.force_sink = false;
    b.q_heads = 4;
    b.kv_heads = 1;
    prism_context_options opt;
    prism_context_options_init(&opt);
    opt.cache_dir = cache_dir;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&opt, &ctx), PRISM_OK);
    static const prism_arch archs[] = {PRISM_ARCH_SM80, PRISM_ARCH_SM90A};
    for (int i = 0; i < 2; i++) {
        prism_module *ma = NULL, *mb = NULL;
        prism_counters before, after;
        cr_assert_eq(prism_module_build(ctx, &a, archs[i], &ma), PRISM_OK,
                     "%s", prism_context_last_error(ctx));
        prism_context_counters(ctx, &before);
        cr_assert_eq(prism_module_build(ctx, &b, archs[i], &mb), PRISM_OK,
                     "%s", prism_context_last_error(ctx));
        prism_context_counters(ctx, &after);
        cr_expect_eq(after.compiles, before.compiles, "%s: no compile",
                     prism_arch_name(archs[i]));
        for (int k = 0; k < prism_kernel_count(); k++) {
            prism_kernel_info x, y;
            cr_assert_eq(prism_module_kernel_info(ma, k, &x), PRISM_OK);
            cr_assert_eq(prism_module_kernel_info(mb, k, &y), PRISM_OK);
            cr_expect(y.cache_hit);
            cr_expect_str_eq(x.key_hex, y.key_hex, "%s %s",
                             prism_arch_name(archs[i]), x.name);
        }
        prism_module_destroy(ma);
        prism_module_destroy(mb);
    }
    prism_context_destroy(ctx);
}

/* Kernels compiled by another process serve a process that cannot load
 * NVRTC at all: a cache hit never opens it. */
Test(nvrtc, cache_hits_need_no_nvrtc, .init = make_cache_dir,
     .fini = remove_cache_dir, .timeout = 300) {
    char out[8192];
    int rc = cli_tu_run(out, sizeof out, NULL, 0,
                        "PRISM_CACHE_DIR='%s' '%s' compile "
                        "'%s/configs/smollm2-135m.yaml' --arch sm_80",
                        cache_dir, PRISM_CLI_PATH, PRISM_SOURCE_DIR);
    cr_assert_eq(rc, 0, "%s", out);

    setenv("PRISM_NVRTC_PATH", "/nonexistent/libnvrtc.so.13", 1);
    prism_config cfg = shipped_config("smollm2-135m.yaml");
    prism_context_options opt;
    prism_context_options_init(&opt);
    opt.cache_dir = cache_dir;
    opt.disable_jit = true;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&opt, &ctx), PRISM_OK);
    prism_module *m = NULL;
    cr_assert_eq(prism_module_build(ctx, &cfg, PRISM_ARCH_SM80, &m), PRISM_OK,
                 "%s", prism_context_last_error(ctx));
    prism_counters c;
    cr_assert_eq(prism_context_counters(ctx, &c), PRISM_OK);
    cr_assert_eq(c.compiles, 0);
    cr_assert_eq(c.disk_hits, (uint64_t)prism_kernel_count());
    prism_module_destroy(m);

    /* with JIT on, a miss for another arch needs NVRTC and says so */
    opt.disable_jit = false;
    prism_context *ctx2 = NULL;
    cr_assert_eq(prism_context_create(&opt, &ctx2), PRISM_OK);
    cr_assert_eq(prism_module_build(ctx2, &cfg, PRISM_ARCH_SM90A, &m),
                 PRISM_ERR_NVRTC);
    cr_assert(strstr(prism_context_last_error(ctx2), "PRISM_NVRTC_PATH"),
              "%s", prism_context_last_error(ctx2));
    prism_context_destroy(ctx);
    prism_context_destroy(ctx2);
}

/* `prism compile --verbose` says where a cold compile's time goes: per
 * kernel NVRTC's phases, per arch the module's wall time, at the end the
 * process's CPU time; PTX has no ptxas phase.  Line information is off
 * by default and, asked for, is another cache key. */
Test(nvrtc, compile_verbose_times_each_phase, .init = make_cache_dir,
     .fini = remove_cache_dir, .timeout = 300) {
    char out[16384];
    int rc = cli_tu_run(out, sizeof out, NULL, 0,
                        "PRISM_CACHE_DIR='%s' '%s' compile --verbose "
                        "'%s/configs/smollm2-135m.yaml' --arch sm_80 "
                        "--arch compute_80",
                        cache_dir, PRISM_CLI_PATH, PRISM_SOURCE_DIR);
    cr_assert_eq(rc, 0, "%s", out);
    int phases = 0;
    for (const char *p = out; (p = strstr(p, ": front end ")); p++)
        phases++;
    cr_assert_eq(phases, 2 * prism_kernel_count(), "%s", out);
    cr_assert(strstr(out, "NVVM") && strstr(out, "ptxas 0 ms"), "%s", out);
    cr_assert(strstr(out, "sm_80: 3 kernels in ") &&
                  strstr(out, "compute_80: 3 kernels in "),
              "%s", out);
    cr_assert(strstr(out, "the process used "), "%s", out);
    cr_assert_not(prism_nvrtc_line_info());

    char lines[16384];
    rc = cli_tu_run(lines, sizeof lines, NULL, 0,
                    "PRISM_LINEINFO=1 PRISM_CACHE_DIR='%s' '%s' compile "
                    "'%s/configs/smollm2-135m.yaml' --arch sm_80",
                    cache_dir, PRISM_CLI_PATH, PRISM_SOURCE_DIR);
    cr_assert_eq(rc, 0, "%s", lines);
    cr_assert(strstr(lines, "miss"), "another key, compiled again:\n%s",
              lines);
    cr_assert_null(strstr(lines, " hit "), "%s", lines);
}

Test(nvrtc, jit_off_turns_a_miss_into_an_error, .init = make_cache_dir,
     .fini = remove_cache_dir) {
    prism_config cfg = config_for(64, PRISM_DTYPE_BF16, PRISM_ROPE_HALF);
    prism_context_options opt;
    prism_context_options_init(&opt);
    opt.cache_dir = cache_dir;
    opt.disable_jit = true;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&opt, &ctx), PRISM_OK);
    prism_module *m = NULL;
    cr_assert_eq(prism_module_build(ctx, &cfg, PRISM_ARCH_SM80, &m),
                 PRISM_ERR_CACHE_MISS);
    cr_assert_null(m);
    cr_assert_neq(prism_context_last_error(ctx)[0], '\0');
    prism_context_destroy(ctx);
}
