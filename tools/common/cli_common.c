/*
 * cli_common.c - the helpers every command of the prism tools shares:
 * error and usage lines, config loading, the context with a stderr logger,
 * the counters line, $PRISM_VERBOSE and the checks that every write to
 * stdout or to a file reached it.
 */
#include "tools/common/cli.h"

#include "base/parse.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("prism: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "prism %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'prism %s --help')\n", cmd);
    va_end(ap);
    return CLI_USAGE;
}

bool cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return true;
    return false;
}

bool cli_verbose(void) {
    static bool warned;
    bool on;
    char why[PRISM_ERRMSG_MAX];
    if (prism_env_bool("PRISM_VERBOSE", false, &on, why, sizeof why) !=
            PRISM_OK &&
        !warned) {
        fprintf(stderr, "prism: warning: %s\n", why);
        warned = true;
    }
    return on;
}

int cli_finish(int rc) {
    bool lost = ferror(stdout) != 0;
    errno = 0;
    if (fclose(stdout) != 0)
        lost = true;
    if (!lost)
        return rc;
    fprintf(stderr, "prism: cannot write to stdout: %s\n",
            errno ? strerror(errno) : "write error");
    return rc == CLI_OK ? CLI_FAIL : rc;
}

int cli_close_file(FILE *f, const char *path) {
    bool lost = ferror(f) != 0;
    errno = 0;
    if (fclose(f) != 0)
        lost = true;
    if (!lost)
        return CLI_OK;
    return cli_fail("cannot write %s: %s", path,
                    errno ? strerror(errno) : "write error");
}

bool cli_load_config(const char *path, prism_config *cfg) {
    char err[PRISM_PATH_MAX + 512];
    prism_status st = prism_config_load_file(path, cfg, err, sizeof err);
    if (st != PRISM_OK) {
        fprintf(stderr, "prism: %s\n", err);
        return false;
    }
    return true;
}

static void cli_logger(void *user, prism_log_level level, const char *msg) {
    (void)user;
    fprintf(stderr, "prism: %s: %s\n",
            level >= PRISM_LOG_ERROR ? "error"
            : level == PRISM_LOG_WARN ? "warning"
                                      : "info",
            msg);
}

prism_context *cli_context(void) {
    prism_context_options opt;
    prism_context_options_init(&opt);
    opt.log = cli_logger;
    opt.log_level = cli_verbose() ? PRISM_LOG_INFO : PRISM_LOG_WARN;
    prism_context *ctx = NULL;
    prism_status st = prism_context_create(&opt, &ctx);
    if (st != PRISM_OK) {
        fprintf(stderr, "prism: cannot create a context: %s\n",
                prism_status_string(st));
        return NULL;
    }
    return ctx;
}

void cli_print_counters(const prism_context *ctx, FILE *out) {
    prism_counters c;
    if (prism_context_counters(ctx, &c) != PRISM_OK)
        return;
    fprintf(out,
            "cache: %llu memory hits, %llu disk hits, %llu misses, "
            "%llu compiles (%.1f ms), %llu corrupt entries replaced\n",
            (unsigned long long)c.memory_hits, (unsigned long long)c.disk_hits,
            (unsigned long long)c.misses, (unsigned long long)c.compiles,
            c.compile_ms, (unsigned long long)c.corrupt);
}
