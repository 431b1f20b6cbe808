/*
 * test_tools_cli.c - what every command of the prism tools must do alike,
 * checked through the built binaries: a lost write to stdout is a failure
 * (exit 1 and one line), options read the same way in every command (an
 * unknown option, a missing value, a single-value option given twice are
 * usage errors naming the option; a repeated --arch counts once), the
 * environment's switches and sizes read as the flags do, and a config path
 * that is a FIFO, a device or too long fails at once instead of hanging or
 * being cut short.  Each check is a table: one row per command or input.
 *
 * Rows are command lines with two placeholders: @C the small shipped
 * config (smollm2-135m), @D the test's own directory.
 */
#include "cache_testutil.h"
#include "cli_testutil.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *g_dir;
static char g_out[1 << 20], g_err[16384]; /* a dump of sources is ~100 KiB */

static void setup(void) {
    g_dir = cache_tu_mkdtemp();
    cr_assert_not_null(g_dir);
}

static void teardown(void) {
    cache_tu_rm_rf(g_dir);
    free(g_dir);
}

TestSuite(tools_cli, .init = setup, .fini = teardown, .timeout = 300);

/* row with @C and @D replaced, into buf. */
static void expand(const char *row, char *buf, size_t size) {
    char config[1100];
    snprintf(config, sizeof config, "'%s/configs/smollm2-135m.yaml'",
             PRISM_SOURCE_DIR);
    size_t n = 0;
    for (const char *p = row; *p; p++) {
        char one[2] = {*p, '\0'};
        const char *piece = one;
        if (p[0] == '@' && (p[1] == 'C' || p[1] == 'D'))
            piece = *++p == 'C' ? config : g_dir;
        size_t len = strlen(piece);
        cr_assert_lt(n + len, size, "command too long: %s", row);
        memcpy(buf + n, piece, len + 1);
        n += len;
    }
}

/* Runs `ENV BIN ROW REDIRECT` in the test's directory with its own cache
 * (stdout in g_out unless redirected, stderr in g_err); BIN is prism
 * unless the row starts with "prism-autotune". */
static int run_row(const char *env, const char *row, const char *redirect) {
    char args[4096];
    expand(row, args, sizeof args);
    bool tuner = !strncmp(row, "prism-autotune", 14);
    int rc = cli_tu_run(g_out, sizeof g_out, g_err, sizeof g_err,
                        "cd '%s' && PRISM_CACHE_DIR='%s/cache' "
                        "PRISM_CACHE_PATH= PRISM_TUNE_DIR='%s/tune' "
                        "PRISM_CACHE_MAX_BYTES= PRISM_JIT= PRISM_VERBOSE= %s "
                        "timeout 60 '%s' %s %s",
                        g_dir, g_dir, g_dir, env,
                        tuner ? PRISM_AUTOTUNE_PATH : PRISM_CLI_PATH,
                        tuner ? args + 14 : args, redirect);
    cr_assert(rc >= 0, "%s did not exit", args);
    return rc;
}

/* Every command that writes to stdout, first as it should work (exit 0),
 * then with stdout on a full device: exit 1 and one line saying so. */
Test(tools_cli, a_lost_write_to_stdout_fails_every_command) {
    static const char *const rows[] = {
        "--help",
        "--version",
        "check @C",
        "gen @C --arch sm_80 --dump spec",
        "gen @C --arch sm_80 --dump source",
        "gen @C --arch sm_80 -o @D/gen",
        "compile @C --arch sm_80",
        "cache --help",
        "cache path",
        "cache ls",
        "cache verify",
        "cache prune",
        "cache clear",
        "cache pack @C --arch sm_80 -o @D/pack.tar --force",
        "cache verify @D/pack.tar",
        "run @C --device cpu --backend reference --seq 64 --json",
        "autotune --help",
        "prism-autotune --help",
        "prism-autotune --version",
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(rows); i++) {
        cr_assert_eq(run_row("", rows[i], ""), 0, "'%s' failed: %s", rows[i],
                     g_err);
        cr_assert_eq(run_row("", rows[i], ">/dev/full"), 1,
                     "'%s' > /dev/full: %s", rows[i], g_err);
        cr_assert(strstr(g_err, "prism: cannot write to stdout: "),
                  "'%s' said: %s", rows[i], g_err);
    }
}

/* The same mistakes read the same in every command. */
Test(tools_cli, usage_errors_read_the_same_in_every_command) {
    static const struct {
        const char *row, *message;
    } rows[] = {
        {"check --frob @C", "prism check: unknown option '--frob'"},
        {"gen @C --frob", "prism gen: unknown option '--frob'"},
        {"compile @C -x", "prism compile: unknown option '-x'"},
        {"run @C --device cpu --seq 64 --frob", "unknown option '--frob'"},
        {"bench @C --seq 64 --frob", "prism bench: unknown option '--frob'"},
        {"cache prune --frob", "prism cache prune: unknown option '--frob'"},
        {"cache pack @C -o x.tar --frob", "unknown option '--frob'"},
        {"autotune @C --frob", "prism autotune: unknown option '--frob'"},
        {"gen @C --dump", "--dump needs a value"},
        {"gen @C -o", "--output needs a value"},
        {"run @C --device cpu --seq", "--seq needs a value"},
        {"bench @C --seq", "--seq needs a value"},
        {"cache prune --max-bytes", "--max-bytes needs a value"},
        {"autotune @C --budget", "--budget needs a value"},
        {"check -q=1 @C", "unknown option"},
        {"run @C --device cpu --seq 64 --json=yes", "--json takes no value"},
        {"run @C --device cpu --seq 64 --seq 128", "--seq given twice"},
        {"run @C --device cpu --seq=64 --seq=64", "--seq given twice"},
        {"run @C --device cpu --device gpu --seq 64", "--device given twice"},
        {"run @C --device cpu --seq 64 --seed 1 --seed 2",
         "--seed given twice"},
        {"bench @C --seq 64 --seq 128", "--seq given twice"},
        {"bench @C --seq 64 --reps 3 --reps 4", "--reps given twice"},
        {"bench @C --seq 64 --json a --json b", "--json given twice"},
        {"gen @C --dump spec --dump source", "--dump given twice"},
        {"gen @C -o a --output b", "--output given twice"},
        {"gen @C --kernel attention --kernel estimate", "--kernel given twice"},
        {"cache prune --max-bytes 1M --max-bytes 2M",
         "--max-bytes given twice"},
        {"cache pack @C -o a.tar -o b.tar", "--output given twice"},
        {"autotune @C --budget 5 --budget 6", "--budget given twice"},
        {"autotune @C --devices 0 --devices 1", "--devices given twice"},
        {"check @C @C", "unexpected argument"},
        {"cache ls extra", "prism cache ls: takes no arguments, got 'extra'"},
        {"cache verify a b", "unexpected argument 'b'"},
        {"gen @C --arch sm_99", "--arch 'sm_99': unknown arch"},
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(rows); i++) {
        cr_assert_eq(run_row("", rows[i].row, ""), 2, "'%s': %s", rows[i].row,
                     g_err);
        cr_assert(strstr(g_err, rows[i].message), "'%s' said: %s", rows[i].row,
                  g_err);
        cr_assert_eq(strchr(g_err, '\n'), g_err + strlen(g_err) - 1,
                     "'%s': one line: %s", rows[i].row, g_err);
    }
}

/* How often `needle` occurs in text. */
static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

Test(tools_cli, a_repeated_arch_counts_once) {
    static const struct {
        const char *row, *line;
        int times;
    } rows[] = {
        {"gen @C --arch sm_80 --arch sm_80 --dump spec",
         "kernel pool_stats for sm_80", 1},
        {"gen @C --arch sm_80 --arch sm_90a --arch sm_80 --dump spec",
         "kernel pool_stats for sm_80", 1},
        {"gen @C --arch sm_80 --arch sm_90a --arch sm_80 --dump spec",
         "kernel pool_stats for sm_90a", 1},
        {"gen @C --arch=sm_80 --arch sm_80 -o @D/gen", "pool_stats.sm_80.cu",
         1},
        {"compile @C --arch sm_80 --arch sm_80", "pool_stats       sm_80", 1},
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(rows); i++) {
        cr_assert_eq(run_row("", rows[i].row, ""), 0, "'%s': %s", rows[i].row,
                     g_err);
        cr_assert_eq(count(g_out, rows[i].line), rows[i].times,
                     "'%s' printed:\n%s", rows[i].row, g_out);
    }
}

/* The paged K/V programs are compiled by `prism compile --paged` only:
 * then a host with JIT off finds them in the cache; `prism cache pack
 * --paged` packs them. */
Test(tools_cli, compile_paged_adds_the_paged_programs) {
    cr_assert_eq(run_row("", "compile @C --arch sm_80", ""), 0, "%s", g_err);
    cr_assert_eq(count(g_out, "_paged"), 0, "%s", g_out);
    cr_assert_neq(run_row("PRISM_JIT=off", "compile @C --arch sm_80 --paged",
                          ""),
                  0, "not in the cache yet: %s", g_out);
    cr_assert_eq(run_row("", "compile @C --arch sm_80 --paged", ""), 0, "%s",
                 g_err);
    cr_assert_eq(count(g_out, "pool_stats_paged sm_80   miss"), 1, "%s", g_out);
    cr_assert_eq(count(g_out, "attention_paged  sm_80   miss"), 1, "%s", g_out);
    cr_assert_eq(count(g_out, " hit "), 3, "the plain programs: %s", g_out);
    cr_assert_eq(run_row("PRISM_JIT=off", "compile @C --arch sm_80 --paged",
                         ""),
                 0, "%s", g_err);
    cr_assert_eq(count(g_out, " hit "), 5, "%s", g_out);
    /* a pack for such hosts */
    cr_assert_eq(run_row("", "cache pack @C --arch sm_80 --paged -o @D/pk",
                         ""),
                 0, "%s", g_err);
    cr_assert_eq(count(g_out, " 5 files"), 1, "%s", g_out);
}

/* $PRISM_JIT reads as a switch in any case; with JIT off and an empty
 * cache, compile fails at once; a value that is no switch is named. */
Test(tools_cli, switches_in_the_environment_ignore_case) {
    static const char *const off[] = {"OFF", "off", "Off", "0",
                                      "false", "FALSE", "no", "NO"};
    static const char *const on[] = {"on", "ON", "1", "true", "Yes"};
    for (size_t i = 0; i < PRISM_ARRAY_LEN(off); i++) {
        char env[64];
        snprintf(env, sizeof env, "PRISM_JIT=%s", off[i]);
        cr_assert_eq(run_row(env, "compile @C --arch sm_80", ""), 1, "%s: %s",
                     env, g_err);
        cr_assert(strstr(g_err, "JIT compilation is disabled"), "%s: %s", env,
                  g_err);
    }
    cr_assert_eq(run_row("PRISM_JIT=maybe", "compile @C --arch sm_80", ""), 0,
                 "%s", g_err);
    cr_assert(strstr(g_err, "PRISM_JIT='maybe' is not a switch"), "%s", g_err);
    for (size_t i = 0; i < PRISM_ARRAY_LEN(on); i++) { /* now cached */
        char env[64];
        snprintf(env, sizeof env, "PRISM_JIT=%s", on[i]);
        cr_assert_eq(run_row(env, "compile @C --arch sm_80", ""), 0, "%s: %s",
                     env, g_err);
        cr_assert_eq(g_err[0], '\0', "%s: %s", env, g_err);
    }
    cr_assert_eq(run_row("PRISM_VERBOSE=loud", "cache path", ""), 0);
    cr_assert(strstr(g_err, "PRISM_VERBOSE='loud' is not a switch"), "%s",
              g_err);
}

/* One size reader: $PRISM_CACHE_MAX_BYTES and --max-bytes take the same
 * spellings and give the same cap. */
Test(tools_cli, sizes_read_the_same_from_environment_and_flags) {
    static const struct {
        const char *text, *cap;
    } rows[] = {
        {"100K", "(cap 100.0 KiB)"}, {"100k", "(cap 100.0 KiB)"},
        {"100KB", "(cap 100.0 KiB)"}, {"100KiB", "(cap 100.0 KiB)"},
        {"2M", "(cap 2.0 MiB)"},     {"1G", "(cap 1.0 GiB)"},
        {"4096", "(cap 4.0 KiB)"},
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(rows); i++) {
        char env[64], row[64];
        snprintf(env, sizeof env, "PRISM_CACHE_MAX_BYTES=%s", rows[i].text);
        cr_assert_eq(run_row(env, "cache path", ""), 0, "%s", g_err);
        cr_assert(strstr(g_out, rows[i].cap), "%s: %s", env, g_out);
        cr_assert_eq(g_err[0], '\0', "%s: %s", env, g_err);
        snprintf(row, sizeof row, "cache prune --max-bytes %s", rows[i].text);
        cr_assert_eq(run_row("", row, ""), 0, "%s", g_err);
        cr_assert(strstr(g_out, rows[i].cap), "%s: %s", row, g_out);
    }
    static const char *const bad[] = {"100Q", "1e9", "-5", "0", "lots"};
    for (size_t i = 0; i < PRISM_ARRAY_LEN(bad); i++) {
        char env[64], row[64];
        snprintf(env, sizeof env, "PRISM_CACHE_MAX_BYTES=%s", bad[i]);
        cr_assert_eq(run_row(env, "cache path", ""), 0, "%s", g_err);
        cr_assert(strstr(g_out, "(cap 2.0 GiB)"), "%s: %s", env, g_out);
        cr_assert(strstr(g_err, "PRISM_CACHE_MAX_BYTES="), "%s: %s", env,
                  g_err);
        snprintf(row, sizeof row, "cache prune --max-bytes %s", bad[i]);
        cr_assert_eq(run_row("", row, ""), 2, "%s", g_err);
        cr_assert(strstr(g_err, "--max-bytes"), "%s: %s", row, g_err);
    }
}

/* A config path that is not a regular file fails at once with one line
 * (a FIFO used to block forever), and so does one too long to keep. */
Test(tools_cli, check_refuses_what_is_not_a_config_file) {
    char fifo[1100], dir[1100];
    snprintf(fifo, sizeof fifo, "%s/fifo.yaml", g_dir);
    snprintf(dir, sizeof dir, "%s/dir.yaml", g_dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(mkdir(dir, 0700), 0);
    /* a real config under a path of more than PRISM_PATH_MAX bytes */
    char deep[4096];
    int n = snprintf(deep, sizeof deep, "%s", g_dir);
    while (n < PRISM_PATH_MAX) {
        n += snprintf(deep + n, sizeof deep - (size_t)n, "/%0200d", 0);
        cr_assert_eq(mkdir(deep, 0700), 0, "%s", deep);
    }
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp '%s/configs/default.yaml' '%s/'",
             PRISM_SOURCE_DIR, deep);
    cr_assert_eq(system(cmd), 0);
    strcat(deep, "/default.yaml");
    const struct {
        const char *path, *message;
    } rows[] = {
        {fifo, "not a regular file (a FIFO)"},
        {"/dev/null", "not a regular file (a character device)"},
        {"/dev/zero", "not a regular file (a character device)"},
        {dir, "Is a directory"},
        {deep, "File name too long"},
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(rows); i++) {
        char row[8192];
        snprintf(row, sizeof row, "check '%s'", rows[i].path);
        cr_assert_eq(run_row("", row, ""), 1, "%.80s: %s", rows[i].path,
                     g_err);
        cr_assert(strstr(g_err, rows[i].message), "%.80s said: %s",
                  rows[i].path, g_err);
    }
}
