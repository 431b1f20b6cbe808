/*
 * cmd_cache.c - `prism cache path|ls|verify|prune|clear|pack`.  `pack` and
 * `verify PACK` work on shippable packs and live in cmd_pack.c.
 *
 * A thin shell over the maintenance calls of cache/cache.h: it opens the
 * cache the way a context would (same environment variables, same trust
 * rules), so what it shows is exactly what a program would use.  It works
 * on the cache directly rather than through a context because it needs the
 * layers and the maintenance calls, which are not public API.
 */
#include "cache/cache.h"
#include "tools/common/cli.h"
#include "tools/prism/host_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct subcommand {
    const char *name;
    const char *args;
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"path", "", "print the writable cache directory and the read-only layers"},
    {"ls", "", "list the entries, most recently used first, and a total"},
    {"verify", " [PACK]",
     "check every entry and say which this host will use; exit 1 if any\n"
     "           is bad (with PACK: check a pack against its manifest)"},
    {"prune", " [--max-bytes N]",
     "evict least recently used entries down to N bytes (default: the cap)\n"
     "           and remove stale temp and lock files"},
    {"clear", "", "remove every entry of the writable directory"},
    {"pack", " CONFIG... [--arch A]... -o DIR|FILE.tar [--force] [--paged]",
     "compile CONFIGs (and their tuned variants) into a self-contained,\n"
     "           pretuned cache for PRISM_CACHE_PATH"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: prism cache COMMAND\n\ncommands:\n");
    for (size_t i = 0; i < PRISM_ARRAY_LEN(subcommands); i++)
        fprintf(out, "  %-8s %s\n", subcommands[i].name,
                subcommands[i].summary);
    fprintf(
        out,
        "\nThe cache lives in $PRISM_CACHE_DIR, else $XDG_CACHE_HOME/prism, "
        "else\n~/.cache/prism; $PRISM_CACHE_PATH lists read-only layers "
        "(colon-separated)\nand $PRISM_CACHE_MAX_BYTES caps its size "
        "(default 2 GiB).\n'prism cache COMMAND --help' describes one "
        "command.\n");
}

static void sub_usage(const subcommand *s) {
    printf("usage: prism cache %s%s\n\n  %s\n", s->name, s->args, s->summary);
    if (!strcmp(s->name, "prune"))
        printf("\n  N is a size in bytes such as 500M: K, M and G are "
               "1024, 1024^2 and 1024^3\n  (a B or iB may follow: 500MB = "
               "500MiB = 500M); so is $PRISM_CACHE_MAX_BYTES.\n");
    if (!strcmp(s->name, "verify"))
        printf("\n  Checks the writable directory and the read-only layers; "
               "bad entries\n  are listed on stdout.  With PACK (a directory "
               "or .tar made by 'prism cache\n  pack'), lists every file that "
               "is altered, missing or not in its manifest.\n\n"
               "  Then one line per entry says whether this host will use "
               "it: yes (the\n  device's first choice), fallback (a family "
               "cubin or the PTX, while no\n  better image of its kernel is "
               "found), spare (a better one comes first),\n  no (another "
               "device, NVRTC major.minor or Prism release: its key never\n"
               "  comes up here), untrusted (the cache's trust rule), bad, or "
               "no device\n  (no CUDA device here to match its arch).  "
               "Device 0 is the one matched;\n  PRISM_JIT=off and a missing "
               "NVRTC make fallbacks count.\n");
    if (!strcmp(s->name, "pack"))
        printf("\n  --arch defaults to each config's targets.  The pack "
               "also holds the tuning\n  entries of the configs found in "
               "the tuning database.  An existing output\n  (a .tar, or a "
               "directory that is not empty) is refused; --force replaces "
               "it\n  when it is a pack (a .tar, or a directory holding "
               "MANIFEST.yaml).\n  --paged also packs the paged K/V "
               "kernels, which plans otherwise\n  compile at their first "
               "paged launch (hosts with PRISM_JIT=off need them).\n");
}

/* 1536 -> "1.5 KiB" */
static void human_size(long long n, char *buf, size_t size) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < PRISM_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%lld B", n);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
}

static void print_line(void *user, const char *line) {
    fprintf((FILE *)user, "%s\n", line);
}

static int run_path(prism_cache *cache) {
    char cap[32];
    human_size(prism_cache_max_bytes(cache), cap, sizeof cap);
    const char *dir = prism_cache_dir(cache);
    if (*dir)
        printf("writable   %s  (cap %s)\n", dir, cap);
    else
        printf("writable   none (kernels are kept in memory only)\n");
    for (int i = 0; i < prism_cache_layer_count(cache); i++)
        printf("read-only  %s\n", prism_cache_layer_dir(cache, i));
    return CLI_OK;
}

static int run_ls(prism_cache *cache) {
    char err[PRISM_ERRMSG_MAX], a[32], b[32];
    prism_cache_usage u;
    if (prism_cache_list(cache, print_line, stdout, err, sizeof err) !=
            PRISM_OK ||
        prism_cache_get_usage(cache, &u, err, sizeof err) != PRISM_OK)
        return cli_fail("%s", err);
    human_size(u.bytes, a, sizeof a);
    human_size(prism_cache_max_bytes(cache), b, sizeof b);
    const char *dir = prism_cache_dir(cache);
    printf("total: %lld entries, %s in %s (cap %s)", (long long)u.entries, a,
           *dir ? dir : "no writable dir", b);
    if (prism_cache_layer_count(cache)) {
        human_size(u.ro_bytes, a, sizeof a);
        printf("; %lld entries, %s in read-only layers",
               (long long)u.ro_entries, a);
    }
    printf("\n");
    return CLI_OK;
}

/* The host table of every layer in use (untrusted layers were dropped
 * when the cache opened). */
static int print_host_use(prism_cache *cache) {
    char err[PRISM_ERRMSG_MAX];
    prism_host_table t = {0};
    prism_status st = PRISM_OK;
    const char *dir = prism_cache_dir(cache);
    if (*dir)
        st = prism_host_table_add_dir(&t, dir, NULL, false, err, sizeof err);
    for (int i = 0; st == PRISM_OK && i < prism_cache_layer_count(cache); i++)
        st = prism_host_table_add_dir(&t, prism_cache_layer_dir(cache, i),
                                      NULL, false, err, sizeof err);
    if (st == PRISM_OK)
        cli_print_host_table(&t, stdout);
    prism_host_table_free(&t);
    return st == PRISM_OK ? CLI_OK : cli_fail("%s", err);
}

static int run_verify(prism_cache *cache) {
    char err[PRISM_ERRMSG_MAX];
    int bad = 0;
    prism_cache_usage u;
    prism_status st =
        prism_cache_verify(cache, print_line, stdout, &bad, err, sizeof err);
    if (print_host_use(cache) != CLI_OK)
        return CLI_FAIL;
    fflush(stdout);
    if (st != PRISM_OK)
        return cli_fail("%s", err);
    if (prism_cache_get_usage(cache, &u, err, sizeof err) != PRISM_OK)
        return cli_fail("%s", err);
    printf("verified %lld entries: all good\n",
           (long long)(u.entries + u.ro_entries));
    return CLI_OK;
}

/* The arguments of path, ls, verify, prune and clear, read before the
 * cache is opened: prune's --max-bytes, verify's PACK. */
static int parse_sub(int argc, char **argv, long long *max_bytes,
                     const char **pack) {
    char cmd[32];
    snprintf(cmd, sizeof cmd, "cache %s", argv[1]);
    bool prune = !strcmp(argv[1], "prune");
    const cli_option opts[] = {
        CLI_OPT_BYTES("max-bytes", max_bytes, 1, INT64_MAX / 4)};
    cli_spec spec = {cmd, opts, prune ? 1 : 0, pack,
                     !strcmp(argv[1], "verify") ? 1 : 0};
    int n_pos;
    return cli_parse(&spec, argc - 1, argv + 1, &n_pos);
}

static int run_prune(prism_cache *cache, long long max_bytes) {
    char err[PRISM_ERRMSG_MAX], a[32], b[32];
    int removed = 0;
    prism_cache_usage u;
    if (prism_cache_prune(cache, max_bytes, &removed, err, sizeof err) !=
            PRISM_OK ||
        prism_cache_get_usage(cache, &u, err, sizeof err) != PRISM_OK)
        return cli_fail("%s", err);
    human_size(u.bytes, a, sizeof a);
    human_size(max_bytes > 0 ? max_bytes : prism_cache_max_bytes(cache), b,
               sizeof b);
    printf("removed %d files from %s; %lld entries, %s left (cap %s)\n",
           removed, prism_cache_dir(cache), (long long)u.entries, a, b);
    return CLI_OK;
}

static int run_clear(prism_cache *cache) {
    char err[PRISM_ERRMSG_MAX];
    int removed = 0;
    if (prism_cache_clear(cache, &removed, err, sizeof err) != PRISM_OK)
        return cli_fail("%s", err);
    printf("removed %d entries from %s\n", removed, prism_cache_dir(cache));
    return CLI_OK;
}

int prism_cmd_cache(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") ||
        !strcmp(name, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    const subcommand *sub = NULL;
    for (size_t i = 0; i < PRISM_ARRAY_LEN(subcommands); i++)
        if (!strcmp(name, subcommands[i].name))
            sub = &subcommands[i];
    if (!sub)
        return cli_usage("cache", "unknown command '%s'", name);
    if (cli_wants_help(argc - 1, argv + 1)) {
        sub_usage(sub);
        return CLI_OK;
    }
    if (!strcmp(name, "pack"))
        return prism_cmd_cache_pack(argc, argv);
    long long max_bytes = 0;
    const char *pack = NULL;
    int rc = parse_sub(argc, argv, &max_bytes, &pack);
    if (rc != CLI_OK)
        return rc;
    if (pack)
        return prism_cmd_cache_verify_pack(pack);

    prism_logger logger = {
        .fn = NULL, /* stderr */
        .user = NULL,
        .level = cli_verbose() ? PRISM_LOG_INFO : PRISM_LOG_WARN,
    };
    prism_cache_options opt = {.logger = &logger};
    prism_cache *cache = NULL;
    char err[PRISM_ERRMSG_MAX];
    if (prism_cache_open(&opt, &cache, err, sizeof err) != PRISM_OK)
        return cli_fail("%s", err);

    if (!strcmp(name, "path"))
        rc = run_path(cache);
    else if (!strcmp(name, "ls"))
        rc = run_ls(cache);
    else if (!strcmp(name, "verify"))
        rc = run_verify(cache);
    else if (!strcmp(name, "prune"))
        rc = run_prune(cache, max_bytes);
    else
        rc = run_clear(cache);
    prism_cache_close(cache);
    return rc;
}
