/*
 * test_ref_run_cli.c - `prism run` end to end through the real binary:
 * the table and JSON outputs, their invariants (dense is the reference,
 * recall and density in range), and the usage errors with their exit codes.
 * Runs on a small config so that each call takes a fraction of a second.
 */
#include "cli_testutil.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char config_path[256];

static void write_config(void) {
    snprintf(config_path, sizeof config_path, "/tmp/prism-ref-run-%d.yaml",
             (int)getpid());
    FILE *f = fopen(config_path, "w");
    cr_assert_not_null(f);
    fputs("name: tiny\n"
          "model:\n  head_dim: 64\n  q_heads: 4\n  kv_heads: 2\n"
          "dtype: bf16\n"
          "rope:\n  layout: half\n  theta: 500000\n"
          "prism:\n  block_size: 32\n"
          "targets: [sm_80]\n",
          f);
    fclose(f);
}

static void remove_config(void) { unlink(config_path); }

/* Runs `prism run ARGS`, returns the exit status; stdout/stderr captured. */
static int run_cli(const char *args, char *out, size_t out_size, char *err,
                   size_t err_size) {
    return cli_tu_run(out, out_size, err, err_size, "%s run %s", PRISM_CLI_PATH,
                      args);
}

static double json_number(const char *text, const char *method,
                          const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"method\": \"%s\"", method);
    const char *at = strstr(text, pattern);
    cr_assert_not_null(at, "no method %s in %s", method, text);
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    at = strstr(at, k);
    cr_assert_not_null(at, "no %s for %s", key, method);
    return strtod(at + strlen(k), NULL);
}

TestSuite(ref_run_cli, .init = write_config, .fini = remove_config);

Test(ref_run_cli, table_lists_every_method) {
    char out[8192], err[4096], args[512];
    snprintf(args, sizeof args,
             "%s --device cpu --seq 256 --sq 192 --threads 2", config_path);
    cr_assert_eq(run_cli(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    const char *names[] = {"prism ", "prism-nocal", "meanpool", "dense"};
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(strstr(out, names[i]), "%s missing:\n%s", names[i],
                           out);
    cr_assert_not_null(strstr(out, "Sq=192 Sk=256"), "%s", out);
    cr_assert_not_null(strstr(out, "workload mixed"), "%s", out);
}

Test(ref_run_cli, json_results_are_consistent) {
    char out[8192], err[4096], args[512];
    snprintf(args, sizeof args,
             "%s --device cpu --seq 320 --batch 2 --workload local --seed 7 "
             "--json",
             config_path);
    cr_assert_eq(run_cli(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert_eq(out[0], '{', "%s", out);
    cr_assert_not_null(strstr(out, "\"workload\": \"local\""), "%s", out);
    cr_assert_not_null(strstr(out, "\"batch\": 2"), "%s", out);
    cr_assert_eq(json_number(out, "dense", "density"), 1.0);
    cr_assert_eq(json_number(out, "dense", "recall_min"), 1.0);
    cr_assert_eq(json_number(out, "dense", "error_max"), 0.0);
    const char *methods[] = {"prism", "prism-nocal", "meanpool"};
    for (int m = 0; m < 3; m++) {
        double density = json_number(out, methods[m], "density");
        double recall = json_number(out, methods[m], "recall_mean");
        double rmin = json_number(out, methods[m], "recall_min");
        double emean = json_number(out, methods[m], "error_mean");
        double emax = json_number(out, methods[m], "error_max");
        cr_assert(density > 0.0 && density <= 1.0, "%s density %g", methods[m],
                  density);
        cr_assert(rmin >= 0.0 && rmin <= recall && recall <= 1.0 + 1e-6,
                  "%s recall %g min %g", methods[m], recall, rmin);
        cr_assert(emean >= 0.0 && emean <= emax, "%s error %g max %g",
                  methods[m], emean, emax);
        /* a local workload is easy: most of the mass is found */
        cr_assert_gt(recall, 0.9, "%s", methods[m]);
    }
    /* the same seed gives the same numbers */
    char again[8192];
    cr_assert_eq(run_cli(args, again, sizeof again, err, sizeof err), 0);
    cr_assert_eq(json_number(out, "prism", "density"),
                 json_number(again, "prism", "density"));
    cr_assert_eq(json_number(out, "prism", "recall_min"),
                 json_number(again, "prism", "recall_min"));
}

Test(ref_run_cli, gpu_without_a_gpu_is_one_clear_line) {
    char out[4096], err[4096], args[512];
    snprintf(args, sizeof args, "%s --device gpu --seq 256", config_path);
    int rc = run_cli(args, out, sizeof out, err, sizeof err);
    if (rc == 0) /* this machine has a GPU: the run must include its row */
        cr_assert_not_null(strstr(out, "prism-gpu"), "%s", out);
    else {
        cr_assert_eq(rc, 1, "%s", err);
        cr_assert(strstr(err, "CUDA") || strstr(err, "device"), "%s", err);
        cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1,
                     "one line: %s", err);
    }
}

Test(ref_run_cli, usage_errors) {
    char out[4096], err[4096], args[512];
    struct {
        const char *args;
        const char *message;
    } cases[] = {
        {"--device tpu --seq 64", "allowed values: cpu, gpu"},
        {"--seq 64", "missing --device"},
        {"--device cpu", "missing --seq"},
        {"--device cpu --seq 64 --sq 65", "exceeds --seq"},
        {"--device cpu --seq 64 --sq 40", "multiple of the block size"},
        {"--device cpu --seq 0", "--seq '0'"},
        {"--device cpu --seq 64 --workload diagonal", "allowed values are"},
        {"--device cpu --seq 64 --frobnicate", "unknown option"},
        {"--device cpu --seq 64 --seed", "needs a value"},
        {"--device cpu --seq 8x", "--seq '8x': expected a whole number"},
        {"--device cpu --seq 64 --seq 128", "--seq given twice"},
        {"--device cpu --seq 64 --threads 2 --threads 4",
         "--threads given twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "%s %s", config_path, cases[i].args);
        cr_assert_eq(run_cli(args, out, sizeof out, err, sizeof err), 2,
                     "'%s': %s", cases[i].args, err);
        cr_assert_not_null(strstr(err, cases[i].message), "'%s' said: %s",
                           cases[i].args, err);
    }
    cr_assert_eq(
        run_cli("--device cpu --seq 64", out, sizeof out, err, sizeof err), 2);
    cr_assert_not_null(strstr(err, "missing CONFIG"), "%s", err);
}

/* --seq 1k is 1024, as in every command that reads a count. */
Test(ref_run_cli, counts_take_binary_suffixes) {
    static const char *const seqs[] = {"1k", "1K", "1024"};
    char out[8192], err[4096], args[512];
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        snprintf(args, sizeof args,
                 "%s --device cpu --backend reference --threads 2 --seq %s "
                 "--sq 64 --json",
                 config_path, seqs[i]);
        cr_assert_eq(run_cli(args, out, sizeof out, err, sizeof err), 0,
                     "%s: %s", seqs[i], err);
        cr_assert_not_null(strstr(out, "\"seq_k\": 1024"), "%s: %s", seqs[i],
                           out);
    }
}

Test(ref_run_cli, missing_config_fails_and_help_succeeds) {
    char out[4096], err[4096];
    cr_assert_eq(run_cli("/nonexistent/prism.yaml --device cpu --seq 64", out,
                         sizeof out, err, sizeof err),
                 1);
    cr_assert_eq(run_cli("--help", out, sizeof out, err, sizeof err), 0);
    cr_assert_not_null(strstr(out, "usage: prism run CONFIG"), "%s", out);
}
