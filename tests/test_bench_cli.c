/*
 * test_bench_cli.c - `prism bench` through the real binary: its usage
 * errors, and what it enqueues per timed repetition, on the stand-in
 * libcuda of tests/fake_cuda (host memory, kernels that do nothing, a
 * trace of every stream operation).  The timings themselves are the GPU
 * host's business (bench/gpu_run.sh); here the protocol is checked: with
 * the default L2 flush every repetition's start event follows a 256 MB
 * memset, with --no-flush no such memset is enqueued at all.
 */
#include "cli_testutil.h"

#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_LINE "memset 268435456" /* bench's BENCH_FLUSH_BYTES */
#define STAGES 6 /* estimate, Prism's mask, prefill, dense, 10%, 20% */

static char dir[256], out[16384], err[4096];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/prism-bench-cli-%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    cr_assert_eq(system(cmd), 0);
}

static void remove_dir(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Runs `ENV prism bench ARGS` in a shell; stdout in out, stderr in err. */
static int bench(const char *env, const char *fmt, ...) {
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return cli_tu_run(out, sizeof out, err, sizeof err,
                      "%s PRISM_CACHE_DIR='%s/cache' '%s' bench %s", env, dir,
                      PRISM_CLI_PATH, args);
}

/* File `name` of the test's directory into buf, NUL-terminated. */
static char *read_text(const char *name, char *buf, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no %s written", path);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Runs bench at --seq `seq` writing --json `json` on the stand-in driver
 * with a trace; returns its exit code, and the trace's lines (in a static
 * buffer, until the next call) when it succeeded. */
static int traced_bench_at(const char *seq, const char *json, const char *extra,
                           char ***lines, int *n_lines) {
    static char text[1 << 16], *v[4096];
    char env[1024], trace[512];
    snprintf(trace, sizeof trace, "%s/trace", dir);
    unlink(trace);
    snprintf(env, sizeof env, "LD_LIBRARY_PATH='%s' FAKE_CUDA_TRACE='%s'",
             PRISM_FAKE_CUDA_DIR, trace);
    int rc = bench(env, "'%s/configs/llama-3.1-8b.yaml' --seq %s --reps 3 %s "
                        "--json '%s'",
                   PRISM_SOURCE_DIR, seq, extra, json);
    *n_lines = 0;
    if (rc != 0)
        return rc;
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(read_text("trace", text, sizeof text), "\n", &save);
         line; line = strtok_r(NULL, "\n", &save)) {
        cr_assert_lt(n, 4096, "trace longer than expected");
        v[n++] = line;
    }
    *lines = v;
    *n_lines = n;
    return rc;
}

/* The default run of the tests below: --seq 512, JSON in bench.json. */
static int traced_bench(const char *extra, char ***lines) {
    char json[512];
    int n;
    snprintf(json, sizeof json, "%s/bench.json", dir);
    cr_assert_eq(traced_bench_at("512", json, extra, lines, &n), 0,
                 "prism bench %s failed: %s", extra, err);
    return n;
}

/* How many of the trace's n lines are exactly `op`. */
static int count_lines(char **v, int n, const char *op) {
    int k = 0;
    for (int i = 0; i < n; i++)
        k += !strcmp(v[i], op);
    return k;
}

/* The JSON the last traced_bench wrote. */
static char *read_json(void) {
    static char text[16384];
    return read_text("bench.json", text, sizeof text);
}

TestSuite(bench_cli, .init = make_dir, .fini = remove_dir, .timeout = 300);

Test(bench_cli, usage_errors_name_the_fix) {
    struct {
        const char *args, *message;
    } cases[] = {
        {"'%s/configs/llama-3.1-8b.yaml'", "need CONFIG and --seq N > 0"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 0", "--seq '0': expected a whole number"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 8x", "--seq '8x': expected a whole number"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 1.5k", "--seq '1.5k'"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --seq 1k", "--seq given twice"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --sq 1024", "0 < --sq <= --seq"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --density 1.5", "(0, 1]"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --flush", "unknown option '--flush'"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --workload nope", "unknown workload"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --batch 0",
         "--batch '0': expected a whole number in [1, 4096]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[512];
        snprintf(args, sizeof args, cases[i].args, PRISM_SOURCE_DIR);
        cr_assert_eq(bench("", "%s", args), 2, "'%s': %s", args, err);
        cr_assert_not_null(strstr(err, cases[i].message), "'%s' said: %s", args, err);
    }
    cr_assert_eq(bench("", "--help"), 0);
    cr_assert_not_null(strstr(out, "--no-flush"), "%s", out);
}

/* Default: per stage, warm-up (2) + reps (3) repetitions, each a 256 MB
 * memset directly followed by the start event, then the stage's work (the
 * estimate clears its statistics first) and the stop event. */
Test(bench_cli, every_repetition_starts_after_an_l2_flush) {
    char **v;
    int n = traced_bench("", &v);
    int flushes = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(v[i], FLUSH_LINE))
            continue;
        flushes++;
        cr_assert(i + 1 < n && !strcmp(v[i + 1], "event"),
                  "flush %d (line %d) is not followed by the start event",
                  flushes, i + 1);
        int launches = 0, j = i + 2;
        for (; j < n && strcmp(v[j], "event"); j++)
            launches += !strcmp(v[j], "launch");
        cr_assert(j < n && launches > 0,
                  "flush %d (line %d): no launch between the start event and "
                  "a stop event",
                  flushes, i + 1);
    }
    cr_assert_eq(flushes, STAGES * (3 + 2), "%d flushes", flushes);
    cr_assert_not_null(strstr(out, "3 reps, 3 input copies, L2 flush"), "%s", out);
    cr_assert_not_null(strstr(read_json(),
                              "\"flush\": true"));
}

Test(bench_cli, no_flush_enqueues_no_flush) {
    char **v;
    int n = traced_bench("--no-flush", &v);
    cr_assert_eq(count_lines(v, n, FLUSH_LINE), 0, "a flush was enqueued");
    int events = count_lines(v, n, "event");
    cr_assert_eq(events, 2 * STAGES * (3 + 2), "%d events", events);
    cr_assert_not_null(strstr(out, "3 reps, 3 input copies, no flush"), "%s", out);
    cr_assert_not_null(strstr(read_json(),
                              "\"flush\": false"));
}

/* --batch B: B sequences of the same length in every stage -- the plan
 * limits, the inputs and the masks (B * Hq * nq rows), the FLOP count --
 * and the header and JSON say so.  The stand-in driver's kernels do
 * nothing, so the timings here are meaningless; the test checks that a
 * batched run sets up and launches every stage. */
Test(bench_cli, batch_runs_every_stage_on_b_sequences) {
    char **v;
    int n = traced_bench("--batch 3 --workload mixed", &v);
    int launches = count_lines(v, n, "launch");
    cr_assert_geq(launches, STAGES * (3 + 2), "%d launches", launches);
    cr_assert_not_null(strstr(out, "B=3 Hq=32 Hkv=8 D=128 bf16, Sq=512 Sk=512, mixed"),
                       "%s", out);
    cr_assert_not_null(strstr(read_json(), "\"batch\": 3"), "%s", read_json());
}

/* Counts read as every command reads them: 1k is 1024 here as in `prism
 * run`; and the JSON file's writes are checked like stdout's. */
Test(bench_cli, seq_suffixes_and_json_write_errors) {
    static const char *const seqs[] = {"1k", "1K", "1024"};
    char json[512], **v;
    int n;
    snprintf(json, sizeof json, "%s/bench.json", dir);
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        cr_assert_eq(traced_bench_at(seqs[i], json, "", &v, &n), 0,
                     "--seq %s: %s", seqs[i], err);
        cr_assert_not_null(strstr(out, "Sq=1024 Sk=1024"), "--seq %s: %s",
                           seqs[i], out);
        cr_assert_not_null(strstr(read_json(), "\"sk\": 1024"));
    }
    cr_assert_eq(traced_bench_at("512", "/dev/full", "", &v, &n), 1, "%s",
                 err);
    cr_assert_not_null(strstr(err, "cannot write /dev/full"), "%s", err);
}
