/*
 * test_bench_cli.c - `prism bench` through the real binary: its usage
 * errors, and what it enqueues per timed repetition, on the stand-in
 * libcuda of tests/fake_cuda (host memory, kernels that do nothing, a
 * trace of every stream operation).  The timings themselves are the GPU
 * host's business (bench/gpu_run.sh); here the protocol is checked: with
 * the default L2 flush every repetition's start event follows a 256 MB
 * memset, with --no-flush no such memset is enqueued at all.
 */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
    char args[1024], cmd[4096], err_path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(err_path, sizeof err_path, "%s/stderr", dir);
    snprintf(cmd, sizeof cmd, "%s PRISM_CACHE_DIR='%s/cache' '%s' bench %s 2>'%s'",
             env, dir, PRISM_CLI_PATH, args, err_path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    FILE *e = fopen(err_path, "r");
    n = e ? fread(err, 1, sizeof err - 1, e) : 0;
    err[n] = '\0';
    if (e)
        fclose(e);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs bench on the stand-in driver with a trace; the trace's lines. */
static int traced_bench(const char *extra, char ***lines) {
    char env[1024], trace[512];
    snprintf(trace, sizeof trace, "%s/trace", dir);
    unlink(trace);
    snprintf(env, sizeof env, "LD_LIBRARY_PATH='%s' FAKE_CUDA_TRACE='%s'",
             PRISM_FAKE_CUDA_DIR, trace);
    int rc = bench(env, "'%s/configs/llama-3.1-8b.yaml' --seq 512 --reps 3 %s "
                        "--json '%s/bench.json'",
                   PRISM_SOURCE_DIR, extra, dir);
    cr_assert_eq(rc, 0, "prism bench %s failed: %s", extra, err);
    FILE *f = fopen(trace, "r");
    cr_assert_not_null(f, "no trace written");
    int n = 0, cap = 64;
    char buf[128], **v = malloc(cap * sizeof *v);
    while (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = '\0';
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = strdup(buf);
    }
    fclose(f);
    *lines = v;
    return n;
}

static void free_lines(char **v, int n) {
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The JSON the last traced_bench wrote. */
static char *read_json(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/bench.json", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char text[16384];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

TestSuite(bench_cli, .init = make_dir, .fini = remove_dir, .timeout = 300);

Test(bench_cli, usage_errors_name_the_fix) {
    struct {
        const char *args, *message;
    } cases[] = {
        {"'%s/configs/llama-3.1-8b.yaml'", "need CONFIG and --seq N > 0"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 0", "need CONFIG and --seq N > 0"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --sq 1024", "0 < --sq <= --seq"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --density 1.5", "(0, 1]"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --flush", "unknown or incomplete"},
        {"'%s/configs/llama-3.1-8b.yaml' --seq 512 --workload nope", "unknown workload"},
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
    free_lines(v, n);
    cr_assert_not_null(strstr(out, "3 reps, 3 input copies, L2 flush"), "%s", out);
    cr_assert_not_null(strstr(read_json(),
                              "\"flush\": true"));
}

Test(bench_cli, no_flush_enqueues_no_flush) {
    char **v;
    int n = traced_bench("--no-flush", &v);
    int events = 0;
    for (int i = 0; i < n; i++) {
        cr_assert_str_neq(v[i], FLUSH_LINE, "a flush at line %d", i + 1);
        events += !strcmp(v[i], "event");
    }
    cr_assert_eq(events, 2 * STAGES * (3 + 2), "%d events", events);
    free_lines(v, n);
    cr_assert_not_null(strstr(out, "3 reps, 3 input copies, no flush"), "%s", out);
    cr_assert_not_null(strstr(read_json(),
                              "\"flush\": false"));
}
