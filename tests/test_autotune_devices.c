/*
 * test_autotune_devices.c - `prism autotune --devices` over several GPUs,
 * on the stand-in driver (tests/fake_cuda) with per-device names, SM
 * counts and timings: GPUs are grouped by model and each model gets its
 * own entries; GPUs of one model re-time their finalists, say when they
 * disagree, and record the candidate with the best median over them.
 */
#include "autotune/autotune.h"
#include "cache_testutil.h"
#include "cli_testutil.h"
#include "compile/nvrtc_compile.h"
#include "base/fs.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_NAME "Fake GPU (tests/fake_cuda)"
#define CONFIG "smollm2-135m.yaml"

static char *g_dir;
static char g_cache[1024];

static void setup(void) {
    g_dir = cache_tu_mkdtemp();
    cr_assert_not_null(g_dir);
    snprintf(g_cache, sizeof g_cache, "%s/cache", g_dir);
}

static void teardown(void) {
    cache_tu_rm_rf(g_dir);
    free(g_dir);
}

TestSuite(autotune_devices, .init = setup, .fini = teardown, .timeout = 600);

static char g_out[262144];

/* `prism autotune CONFIG --seq 4096 --density 0.3` on the stand-in driver
 * with the FAKE_CUDA_* settings `env` and `--devices devices`, recording
 * into g_dir/<tune>; stdout and stderr together into g_out; returns the
 * exit code. */
static int autotune(const char *tune, const char *env, const char *devices) {
    int rc = cli_tu_run(
        g_out, sizeof g_out, NULL, 0,
        "PRISM_CACHE_DIR='%s' PRISM_CACHE_PATH= PRISM_TUNE_DIR='%s/%s' "
        "LD_LIBRARY_PATH='%s' %s '%s' autotune %s/configs/%s --seq 4096 "
        "--density 0.3 --devices %s --budget 500",
        g_cache, g_dir, tune, PRISM_FAKE_CUDA_DIR, env, PRISM_CLI_PATH,
        PRISM_SOURCE_DIR, CONFIG, devices);
    cr_assert(rc >= 0, "prism autotune did not exit");
    return rc;
}

/* The device key the stand-in driver gives a GPU of this name and SM
 * count (compute capability 9.0, driver 13000). */
static prism_tune_device fake_device(const char *name, int sms) {
    prism_tune_device dev;
    memset(&dev, 0, sizeof dev);
    snprintf(dev.name, sizeof dev.name, "%s", name);
    dev.sm_count = sms;
    dev.cc_major = 9;
    snprintf(dev.nvrtc, sizeof dev.nvrtc, "%s", prism_nvrtc_version());
    dev.driver_version = 13000;
    prism_tune_device_set_key(&dev);
    return dev;
}

/* The entry of kernel k at 4096 for dev in g_dir/<tune>; fails the test
 * where it is missing or not for dev. */
static prism_tune_entry read_entry(const char *tune,
                                   const prism_tune_device *dev, int k) {
    char err[1024], hash[65], name[256], path[2048];
    prism_config cfg;
    snprintf(path, sizeof path, "%s/configs/%s", PRISM_SOURCE_DIR, CONFIG);
    cr_assert_eq(prism_config_load_file(path, &cfg, err, sizeof err), PRISM_OK,
                 "%s", err);
    cr_assert_eq(prism_tune_config_hash(&cfg, hash), PRISM_OK);
    prism_tune_file_name(dev->key, hash, prism_kernel_name(k), 4096, name,
                         sizeof name);
    snprintf(path, sizeof path, "%s/%s/%s", g_dir, tune, name);
    prism_tune_entry e;
    cr_assert_eq(prism_tune_entry_read(path, &e, NULL, err, sizeof err),
                 PRISM_OK, "%s: %s\n%s", path, err, g_out);
    cr_assert_str_eq(e.device.key, dev->key);
    cr_assert_str_eq(e.device.name, dev->name);
    cr_assert_eq(e.device.sm_count, dev->sm_count);
    cr_assert(e.complete, "%s", path);
    return e;
}

static int count_entries(const char *tune) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", g_dir, tune);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "%s", path);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        n += len > 5 && !strcmp(de->d_name + len - 5, ".yaml");
    }
    closedir(d);
    return n;
}

/* ---- GPUs of different models ------------------------------------------- */

typedef struct model_case {
    const char *env; /* FAKE_CUDA_* */
    int n_models;
    struct {
        const char *name;
        int sms;
        const char *gpus; /* "GPU 1", "GPUs 0,2" */
        int n_gpus;
    } m[2];
} model_case;

static const model_case model_cases[] = {
    {"FAKE_CUDA_DEVICES=2 FAKE_CUDA_NAMES='Fake A,Fake B'",
     2,
     {{"Fake A", 132, "GPU 0", 1}, {"Fake B", 132, "GPU 1", 1}}},
    {"FAKE_CUDA_DEVICES=2 FAKE_CUDA_SMS=132,114",
     2,
     {{FAKE_NAME, 132, "GPU 0", 1}, {FAKE_NAME, 114, "GPU 1", 1}}},
    {"FAKE_CUDA_DEVICES=3 FAKE_CUDA_NAMES=',Fake B,'",
     2,
     {{FAKE_NAME, 132, "GPUs 0,2", 2}, {"Fake B", 132, "GPU 1", 1}}},
    {"FAKE_CUDA_DEVICES=2", 1, {{FAKE_NAME, 132, "GPUs 0,1", 2}}},
};

/* Indices into model_cases: a test runs in a process of its own, where
 * only plain values of the parameters survive. */
ParameterizedTestParameters(autotune_devices, one_entry_per_model) {
    static int which[] = {0, 1, 2, 3};
    _Static_assert(sizeof which / sizeof which[0] ==
                       sizeof model_cases / sizeof model_cases[0],
                   "one index per case");
    return cr_make_param_array(int, which, sizeof which / sizeof which[0]);
}

ParameterizedTest(int *which, autotune_devices, one_entry_per_model) {
    const model_case *c = &model_cases[*which];
    cr_assert_eq(autotune("t", c->env, "all"), 0, "%s", g_out);
    char want[512];
    snprintf(want, sizeof want, "on %d GPUs of %d model%s",
             c->m[0].n_gpus + (c->n_models > 1 ? c->m[1].n_gpus : 0),
             c->n_models, c->n_models > 1 ? "s" : "");
    cr_assert(strstr(g_out, want), "%s: %s", want, g_out);
    for (int m = 0; m < c->n_models; m++) {
        snprintf(want, sizeof want, "\n%s (%d SMs, sm_90a) x%d, %s: ",
                 c->m[m].name, c->m[m].sms, c->m[m].n_gpus, c->m[m].gpus);
        cr_assert(strstr(g_out, want), "%s: %s", want, g_out);
        prism_tune_device dev = fake_device(c->m[m].name, c->m[m].sms);
        for (int k = 0; k < prism_kernel_count(); k++) {
            prism_tune_entry e = read_entry("t", &dev, k);
            cr_assert_eq(e.candidates[0].status, PRISM_TUNE_OK, "%s",
                         e.candidates[0].reason);
            cr_assert_geq(prism_tune_entry_best(&e), 0);
            prism_tune_entry_free(&e);
        }
    }
    cr_assert_eq(count_entries("t"), c->n_models * prism_kernel_count(),
                 "one entry per model and kernel");
    /* alike GPUs of the stand-in time alike: nothing to disagree on */
    cr_assert_null(strstr(g_out, "disagree"), "%s", g_out);
}

/* ---- GPUs of one model -------------------------------------------------- */

/* The time in e of the candidate whose values are `values` ("block_m=64
 * ..."), or of the candidate it duplicates: which of two candidates with
 * one cubin is timed depends on which compiles first. */
static double time_of(const prism_tune_entry *e, int k, const char *values) {
    for (int i = 0; i < e->n_candidates; i++) {
        const prism_tune_candidate *c = &e->candidates[i];
        char text[160];
        prism_tune_values_text(prism_kernel_def_at(k), c->values, text,
                               sizeof text);
        if (strcmp(text, values))
            continue;
        if (c->status == PRISM_TUNE_OK)
            return c->median_ms;
        const char *dup = "same cubin as ";
        cr_assert(c->status == PRISM_TUNE_PRUNED &&
                      !strncmp(c->reason, dup, strlen(dup)),
                  "%s in the %s entry: %s", values, e->kernel, c->reason);
        return time_of(e, k, c->reason + strlen(dup));
    }
    cr_assert_fail("no candidate %s in the %s entry", values, e->kernel);
    return 0;
}

static bool near(double a, double b) {
    return fabs(a - b) <= 1e-3 * fabs(b) + 1e-6;
}

/* Two GPUs of one model that rank the candidates in opposite orders
 * (FAKE_CUDA_SKEW=0,2) disagree: the line names both GPUs, each one's
 * fastest and its time; the entry records the candidate with the best
 * median over the two, which on the stand-in is GPU 1's fastest, at the
 * mean of what each GPU alone measures for it. */
Test(autotune_devices, gpus_of_one_model_that_disagree) {
    /* each GPU on its own: every candidate's time there */
    cr_assert_eq(autotune("gpu0", "FAKE_CUDA_DEVICES=1", "0"), 0, "%s", g_out);
    cr_assert_eq(autotune("gpu1", "FAKE_CUDA_DEVICES=1 FAKE_CUDA_SKEW=2", "0"),
                 0, "%s", g_out);
    cr_assert_eq(autotune("both", "FAKE_CUDA_DEVICES=2 FAKE_CUDA_SKEW=0,2",
                          "0,1"),
                 0, "%s", g_out);
    cr_assert(strstr(g_out, "x2, GPUs 0,1: "), "%s", g_out);
    cr_assert(strstr(g_out, "(finalist timed on every GPU)"), "%s", g_out);
    prism_tune_device dev = fake_device(FAKE_NAME, 132);
    int attention = -1;
    for (int k = 0; k < prism_kernel_count(); k++)
        if (!strcmp(prism_kernel_name(k), "attention"))
            attention = k;
    cr_assert_geq(attention, 0);
    int disagreements = 0;
    for (int k = 0; k < prism_kernel_count(); k++) {
        prism_tune_entry e0 = read_entry("gpu0", &dev, k);
        prism_tune_entry e1 = read_entry("gpu1", &dev, k);
        prism_tune_entry both = read_entry("both", &dev, k);
        int w = prism_tune_entry_best(&both);
        cr_assert_geq(w, 0);
        char vw[160], line[1024];
        const prism_kernel_def *def = prism_kernel_def_at(k);
        prism_tune_values_text(def, both.candidates[w].values, vw, sizeof vw);
        snprintf(line, sizeof line, "GPUs 0,1 disagree on %s @4096:",
                 def->name);
        const char *at = strstr(g_out, line);
        if (!at) {
            /* only a kernel with one candidate that passes has nothing to
             * disagree on */
            int ok = 0;
            for (int i = 0; i < both.n_candidates; i++)
                ok += both.candidates[i].status == PRISM_TUNE_OK;
            cr_assert_lt(ok, 2, "%s: %s", def->name, g_out);
            cr_assert_neq(k, attention, "%s", g_out);
            goto next;
        }
        disagreements++;
        const char *end = strchr(at, '\n');
        cr_assert_not_null(end);
        char text[2048];
        snprintf(text, sizeof text, "%.*s", (int)(end - at), at);
        /* the rule: the best median over both GPUs, which the stand-in's
         * skew makes GPU 1's fastest finalist */
        double t0 = time_of(&e0, k, vw), t1 = time_of(&e1, k, vw);
        cr_assert(near(both.candidates[w].median_ms, (t0 + t1) / 2),
                  "%s recorded %.4f ms, GPU 0 alone %.4f, GPU 1 alone %.4f",
                  vw, both.candidates[w].median_ms, t0, t1);
        char want[512];
        snprintf(want, sizeof want, "GPU 1 fastest %s (", vw);
        cr_assert(strstr(text, want), "%s in: %s", want, text);
        snprintf(want, sizeof want, "; recorded %s, the best median over the "
                 "GPUs (%.4f ms)", vw, both.candidates[w].median_ms);
        cr_assert(strstr(text, want), "%s in: %s", want, text);
        /* GPU 0's own fastest is named with its time there */
        const char *g0 = strstr(text, "GPU 0 fastest ");
        cr_assert_not_null(g0, "%s", text);
        char v0pick[160];
        const char *open = strstr(g0, " (");
        snprintf(v0pick, sizeof v0pick, "%.*s",
                 (int)(open - g0 - strlen("GPU 0 fastest ")),
                 g0 + strlen("GPU 0 fastest "));
        cr_assert_str_neq(v0pick, vw, "%s", text);
        double own = time_of(&e0, k, v0pick);
        snprintf(want, sizeof want, "GPU 0 fastest %s (%.4f ms)", v0pick, own);
        cr_assert(strstr(text, want), "%s in: %s", want, text);
        snprintf(want, sizeof want,
                 "GPU 0 runs it %.2fx slower than its fastest", t0 / own);
        cr_assert(strstr(text, want), "%s in: %s", want, text);
        /* no candidate of the entry beats the recorded one */
        for (int i = 0; i < both.n_candidates; i++)
            if (both.candidates[i].status == PRISM_TUNE_OK)
                cr_assert_geq(both.candidates[i].median_ms,
                              both.candidates[w].median_ms);
    next:
        prism_tune_entry_free(&e0);
        prism_tune_entry_free(&e1);
        prism_tune_entry_free(&both);
    }
    cr_assert_geq(disagreements, 1, "%s", g_out);
}

/* Two alike GPUs agree: finalists are re-timed on both, nothing is said,
 * and each entry records what one GPU alone measures. */
Test(autotune_devices, gpus_of_one_model_that_agree) {
    cr_assert_eq(autotune("one", "FAKE_CUDA_DEVICES=1", "0"), 0, "%s", g_out);
    cr_assert_null(strstr(g_out, "finalist"), "one GPU re-times nothing");
    cr_assert_eq(autotune("both", "FAKE_CUDA_DEVICES=2", "all"), 0, "%s",
                 g_out);
    cr_assert(strstr(g_out, "(finalist timed on every GPU)"), "%s", g_out);
    cr_assert_null(strstr(g_out, "disagree"), "%s", g_out);
    prism_tune_device dev = fake_device(FAKE_NAME, 132);
    for (int k = 0; k < prism_kernel_count(); k++) {
        prism_tune_entry one = read_entry("one", &dev, k);
        prism_tune_entry both = read_entry("both", &dev, k);
        int a = prism_tune_entry_best(&one), b = prism_tune_entry_best(&both);
        cr_assert(a >= 0 && b >= 0, "%s", one.kernel);
        cr_assert(near(both.candidates[b].median_ms,
                       one.candidates[a].median_ms),
                  "%s: %.4f ms on two GPUs, %.4f on one", one.kernel,
                  both.candidates[b].median_ms, one.candidates[a].median_ms);
        prism_tune_entry_free(&one);
        prism_tune_entry_free(&both);
    }
}
