/*
 * cli_common.c - the helpers every command of the prism tools shares:
 * error and usage lines, config loading, the context with a stderr logger,
 * the counters line and size parsing.
 */
#include "tools/common/cli.h"

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
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return true;
    return false;
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
    const char *v = getenv("PRISM_VERBOSE");
    opt.log_level = (v && *v && strcmp(v, "0")) ? PRISM_LOG_INFO : PRISM_LOG_WARN;
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

bool cli_parse_size(const char *text, long long *out) {
    if (!text || !*text)
        return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || v < 0)
        return false;
    long long mul = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mul = 1LL << 10; break;
        case 'm': case 'M': mul = 1LL << 20; break;
        case 'g': case 'G': mul = 1LL << 30; break;
        default: return false;
        }
        end++;
        if (*end == 'i' || *end == 'B')
            end++;
        if (*end == 'B')
            end++;
        if (*end)
            return false;
    }
    if (v > (1LL << 62) / mul)
        return false;
    *out = v * mul;
    return true;
}
