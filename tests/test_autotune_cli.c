/*
 * test_autotune_cli.c - `prism autotune` (and prism-autotune) end to end.
 *
 * Three ways: without a GPU it must fail with one clear line; on a stand-in
 * driver (tests/fake_cuda, loaded into the child process only) the whole
 * pipeline -- compile, verify, time, record, resume, fail -- runs on any
 * machine, under the sanitizers too; on a real GPU the tuner runs on a
 * small budget and a plan then uses its kernels and computes what the
 * untuned plan does (skipped without a GPU).
 */
#include "autotune/autotune.h"
#include "cache_testutil.h"
#include "cli_testutil.h"
#include "runtime/context.h"
#include "gpu_testutil.h"
#include "base/half.h"
#include "compile/nvrtc_compile.h"
#include "runtime/plan_tuning.h"
#include "base/fs.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

TestSuite(autotune_cli, .init = setup, .fini = teardown, .timeout = 600);

/* The build's paths, or $PRISM_TEST_CLI / $PRISM_TEST_SOURCE_DIR where the
 * binaries were carried elsewhere (a GPU host bundle). */
static const char *cli_path(void) {
    const char *e = getenv("PRISM_TEST_CLI");
    return e && *e ? e : PRISM_CLI_PATH;
}

static const char *source_dir(void) {
    const char *e = getenv("PRISM_TEST_SOURCE_DIR");
    return e && *e ? e : PRISM_SOURCE_DIR;
}

static prism_config load(const char *name) {
    char path[1024], err[1024];
    prism_config cfg;
    snprintf(path, sizeof path, "%s/configs/%s", source_dir(), name);
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

/* ---- prism autotune ------------------------------------------------------ */

static char g_out[65536];

/* Runs a command with the test's cache and tuning dirs; stdout and stderr
 * together into g_out; returns the exit code. */
static int run_cmd(const char *fmt, ...) {
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = cli_tu_run(g_out, sizeof g_out, NULL, 0,
                        "PRISM_CACHE_DIR='%s' PRISM_CACHE_PATH= PRISM_TUNE_DIR= %s",
                        g_cache, args);
    cr_assert(rc >= 0, "%s did not exit", args);
    return rc;
}

static bool have_gpu(void) {
    char why[256];
    return gpu_open(why, sizeof why) != NULL;
}

Test(autotune_cli, usage_errors) {
    cr_assert_eq(run_cmd("'%s' autotune", cli_path()), 2, "%s", g_out);
    cr_assert_eq(run_cmd("'%s' autotune %s/configs/default.yaml --density 2",
                         cli_path(), source_dir()),
                 2, "%s", g_out);
    cr_assert_eq(run_cmd("'%s' autotune %s/configs/default.yaml --devices x",
                         cli_path(), source_dir()),
                 2, "%s", g_out);
    cr_assert_eq(run_cmd("'%s' autotune --help", cli_path()), 0);
    cr_assert(strstr(g_out, "usage: prism autotune"));
    cr_assert_eq(run_cmd("'%s' autotune /nonexistent.yaml", cli_path()), 1);
    cr_assert_eq(run_cmd("'%s' autotune %s/configs/default.yaml --seq 4096 "
                         "5000 6000",
                         cli_path(), source_dir()),
                 1);
    cr_assert(strstr(g_out, "same bucket 8192"), "%s", g_out);
}

Test(autotune_cli, without_a_gpu_it_fails_with_one_line) {
    if (have_gpu())
        cr_skip_test("this machine has a GPU");
    const char *bins[2] = {cli_path(), PRISM_AUTOTUNE_PATH};
    const char *sub[2] = {" autotune", ""};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(run_cmd("'%s'%s %s/configs/default.yaml --seq 4096",
                             bins[i], sub[i], source_dir()),
                     1, "%s", g_out);
        cr_assert(!strncmp(g_out, "prism: autotune needs a CUDA GPU: ", 34),
                  "%s", g_out);
        char *nl = strchr(g_out, '\n');
        cr_assert(nl && nl[1] == '\0', "one line: %s", g_out);
    }
}

/* The whole tuner on the GPU: a small budget on one length, then a plan
 * that picks the tuned kernels up and computes what the untuned plan does. */
Test(autotune_cli, tunes_on_the_gpu_and_plans_use_it, .timeout = 300) {
    if (!have_gpu())
        cr_skip_test("no CUDA GPU");
    double t0 = prism_now_ms();
    int rc = run_cmd("'%s' autotune %s/configs/default.yaml --seq 4096 "
                     "--budget 60",
                     cli_path(), source_dir());
    double took = (prism_now_ms() - t0) / 1000;
    cr_assert_eq(rc, 0, "%s", g_out);
    cr_assert(strstr(g_out, "speedup"), "%s", g_out);
    cr_log_info("prism autotune took %.1f s:\n%s", took, g_out);
    cr_expect_lt(took, 120, "60 s budget, %.1f s", took);

    prism_config cfg = load("default.yaml");
    prism_context *ctx = context(NULL, false);
    const prism_driver *drv;
    char err[1024];
    CUdevice dev;
    prism_tune_device device;
    cr_assert_eq(prism_driver_get(&drv, err, sizeof err), PRISM_OK);
    drv->device_get(&dev, 0);
    cr_assert_eq(
        prism_plan_tuning_device_query(drv, dev, &device, err, sizeof err),
        PRISM_OK);
    int timed_kernels = 0;
    for (int k = 0; k < prism_kernel_count(); k++) {
        int64_t v[PRISM_MAX_TUNABLES];
        bool found = false;
        prism_plan_tuning_lookup(ctx, &device, &cfg, prism_kernel_name(k), 4096,
                                 v, &found);
        timed_kernels += found;
    }
    cr_assert_eq(timed_kernels, prism_kernel_count(), "%s", g_log.text);

    /* tuned and untuned plans agree */
    prism_plan *tuned = NULL, *plain = NULL;
    prism_plan_limits lim = {1, 4096, 4096, false, false};
    cr_assert_eq(prism_plan_create(ctx, &cfg, &lim, &tuned), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    cr_assert_eq(prism_plan_config(tuned)->n_tuning, 8,
                 "every tunable came from the database");
    setenv("PRISM_TUNE", "off", 1);
    cr_assert_eq(prism_plan_create(ctx, &cfg, &lim, &plain), PRISM_OK);
    cr_assert_eq(prism_plan_config(plain)->n_tuning, 0);
    unsetenv("PRISM_TUNE");
    size_t nq = (size_t)cfg.q_heads * 4096 * 128,
           nk = (size_t)cfg.kv_heads * 4096 * 128;
    uint16_t *h = malloc(nq * 2);
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < nq; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        h[i] = prism_f32_to_bf16(((float)(x >> 40) / 16777216.0f - 0.5f) * 4);
    }
    CUdeviceptr q = gpu_upload(h, nq * 2), k = gpu_upload(h + 3, nk * 2),
                v = gpu_upload(h + 11, nk * 2);
    CUdeviceptr o1 = gpu_alloc_poisoned(nq * 2, 0xff),
                o2 = gpu_alloc_poisoned(nq * 2, 0xff);
    prism_batch b = {
        .dtype = cfg.dtype, .batch = 1, .seqlen_q = 4096, .seqlen_k = 4096};
    prism_tensor tq = {(void *)(uintptr_t)q, (int64_t)nq, 4096 * 128, 128};
    prism_tensor tk = {(void *)(uintptr_t)k, (int64_t)nk, 4096 * 128, 128};
    prism_tensor tv = tk, t1 = tq, t2 = tq;
    tv.data = (void *)(uintptr_t)v;
    t1.data = (void *)(uintptr_t)o1;
    t2.data = (void *)(uintptr_t)o2;
    cr_assert_eq(
        prism_prefill(tuned, &b, &tq, &tk, &tv, &t1, NULL, NULL, NULL, 0, NULL),
        PRISM_OK, "%s", prism_plan_last_error(tuned));
    cr_assert_eq(
        prism_prefill(plain, &b, &tq, &tk, &tv, &t2, NULL, NULL, NULL, 0, NULL),
        PRISM_OK);
    gpu_sync();
    uint16_t *r1 = malloc(nq * 2), *r2 = malloc(nq * 2);
    gpu_download(r1, o1, nq * 2);
    gpu_download(r2, o2, nq * 2);
    double d2 = 0, n2 = 0;
    for (size_t i = 0; i < nq; i++) {
        double a = prism_bf16_to_f32(r1[i]), c = prism_bf16_to_f32(r2[i]);
        cr_assert(isfinite(a), "tuned output %zu unwritten", i);
        d2 += (a - c) * (a - c);
        n2 += c * c;
    }
    cr_assert_lt(sqrt(d2 / n2), 1e-2, "tuned vs untuned prefill: %g",
                 sqrt(d2 / n2));
    free(h);
    free(r1);
    free(r2);
    gpu_free(q);
    gpu_free(k);
    gpu_free(v);
    gpu_free(o1);
    gpu_free(o2);
    prism_plan_destroy(tuned);
    prism_plan_destroy(plain);

    /* everything is recorded: a resumed run has nothing left to time */
    cr_assert_eq(run_cmd("'%s' autotune %s/configs/default.yaml --seq 4096 "
                         "--budget 60 --resume",
                         cli_path(), source_dir()),
                 0, "%s", g_out);
    prism_context_destroy(ctx);
}

/* The whole pipeline -- compile, verify, time, record, resume, fail -- on
 * two stand-in GPUs (tests/fake_cuda: host memory, kernels that do
 * nothing, times derived from each cubin), so that it runs everywhere,
 * under the sanitizers too.  The numbers mean nothing; the flow does. */
Test(autotune_cli, pipeline_on_a_fake_driver) {
    const char *cfg_name = "smollm2-135m.yaml";
    int rc = run_cmd("LD_LIBRARY_PATH='%s' FAKE_CUDA_DEVICES=2 '%s' autotune "
                     "%s/configs/%s --seq 4096 --density 0.3 --devices all "
                     "--budget 500",
                     PRISM_FAKE_CUDA_DIR, cli_path(), source_dir(), cfg_name);
    cr_assert_eq(rc, 0, "%s", g_out);
    cr_assert(strstr(g_out, "Fake GPU (tests/fake_cuda) (132 SMs, sm_90a) x2"),
              "%s", g_out);
    cr_assert_null(strstr(g_out, "budget ran out"), "%s", g_out);

    prism_config cfg = load(cfg_name);
    prism_tune_device dev;
    memset(&dev, 0, sizeof dev);
    snprintf(dev.name, sizeof dev.name, "Fake GPU (tests/fake_cuda)");
    dev.sm_count = 132;
    dev.cc_major = 9;
    snprintf(dev.nvrtc, sizeof dev.nvrtc, "%s", prism_nvrtc_version());
    dev.driver_version = 13000;
    prism_tune_device_set_key(&dev);
    char hash[65], name[256], path[1400], err[1024];
    prism_tune_config_hash(&cfg, hash);
    for (int k = 0; k < prism_kernel_count(); k++) {
        prism_tune_file_name(dev.key, hash, prism_kernel_name(k), 4096, name,
                             sizeof name);
        snprintf(path, sizeof path, "%s/%s", g_tune, name);
        prism_tune_entry e;
        cr_assert_eq(prism_tune_entry_read(path, &e, NULL, err, sizeof err),
                     PRISM_OK, "%s: %s", path, err);
        cr_assert(e.complete, "%s", path);
        cr_assert_eq(e.candidates[0].status, PRISM_TUNE_OK, "%s: %s", path,
                     e.candidates[0].reason);
        cr_assert_eq(e.candidates[0].n_timings, 1, "one density or none");
        for (int i = 0; i < e.n_candidates; i++)
            cr_assert(e.candidates[i].status == PRISM_TUNE_OK ||
                          e.candidates[i].status == PRISM_TUNE_PRUNED,
                      "%s candidate %d: %s", path, i, e.candidates[i].reason);
        cr_assert_geq(prism_tune_entry_best(&e), 0);
        prism_tune_entry_free(&e);
    }
    prism_context *ctx = context(NULL, false);
    prism_config tuned;
    int applied = 0;
    cr_assert_eq(
        prism_plan_tuning_apply(ctx, &cfg, &dev, 4096, &tuned, &applied),
        PRISM_OK);
    cr_assert_eq(applied, prism_kernel_count(), "%s", g_log.text);
    prism_context_destroy(ctx);

    /* everything is recorded: resuming measures nothing */
    rc = run_cmd("LD_LIBRARY_PATH='%s' '%s' autotune %s/configs/%s --seq 4096 "
                 "--density 0.3 --resume",
                 PRISM_FAKE_CUDA_DIR, cli_path(), source_dir(), cfg_name);
    cr_assert_eq(rc, 0, "%s", g_out);
    cr_assert_null(strstr(g_out, "autotune: ["), "nothing timed: %s", g_out);

    /* outputs that do not match the default's never win */
    rc =
        run_cmd("PRISM_TUNE_DIR='%s/mismatch' FAKE_CUDA_MEMSET=1 "
                "LD_LIBRARY_PATH='%s' '%s' autotune %s/configs/%s --seq 4096",
                g_dir, PRISM_FAKE_CUDA_DIR, cli_path(), source_dir(), cfg_name);
    cr_assert_eq(rc, 0, "%s", g_out);
    cr_assert(strstr(g_out, "mismatch: output element 0 is not finite"), "%s",
              g_out);
    cr_assert(strstr(g_out, "mismatch: head 0 row 0 selects -1"), "%s", g_out);

    /* a launch that breaks the context retires the GPU: exit 1, one line */
    rc =
        run_cmd("PRISM_TUNE_DIR='%s/broken' FAKE_CUDA_FAIL=1 "
                "FAKE_CUDA_STICKY=1 LD_LIBRARY_PATH='%s' '%s' autotune "
                "%s/configs/%s --seq 4096",
                g_dir, PRISM_FAKE_CUDA_DIR, cli_path(), source_dir(), cfg_name);
    cr_assert_eq(rc, 1, "%s", g_out);
    cr_assert(strstr(g_out, "is unusable after a failed launch"), "%s", g_out);
    cr_assert(strstr(g_out, "candidates were not measured"), "%s", g_out);
}
