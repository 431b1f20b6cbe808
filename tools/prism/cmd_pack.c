/*
 * cmd_pack.c - `prism cache pack` and `prism cache verify PACK`, the two
 * cache subcommands that work on shippable packs (runtime/pack.h) rather
 * than on the cache in use; cmd_cache.c dispatches to them.
 *
 *   prism cache pack CONFIG... [--arch A]... -o DIR|FILE.tar
 *   prism cache verify PACK
 */
#include "tools/common/cli.h"
#include "runtime/pack.h"

#include <stdlib.h>
#include <string.h>

static void human(long long n, char *buf, size_t size) {
    if (n >= 1 << 20)
        snprintf(buf, size, "%.1f MiB", (double)n / (1 << 20));
    else if (n >= 1 << 10)
        snprintf(buf, size, "%.1f KiB", (double)n / (1 << 10));
    else
        snprintf(buf, size, "%lld B", n);
}

int prism_cmd_cache_pack(int argc, char **argv) {
    const char *out = NULL;
    prism_arch archs[PRISM_MAX_TARGETS];
    int n_archs = 0, n_configs = 0;
    const char **paths = calloc((size_t)argc, sizeof *paths);
    prism_config *cfgs = NULL;
    int rc = CLI_FAIL;
    if (!paths)
        return cli_fail("out of memory");
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if ((!strcmp(o, "-o") || !strcmp(o, "--output")) && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(o, "--arch") && i + 1 < argc) {
            prism_arch a;
            if (prism_arch_parse(argv[++i], &a) != PRISM_OK) {
                rc = cli_usage("cache pack",
                               "unknown arch '%s'; use sm_80, "
                               "sm_86, sm_89 or sm_90a",
                               argv[i]);
                goto done;
            }
            if (n_archs >= PRISM_MAX_TARGETS) {
                rc = cli_usage("cache pack", "at most %d --arch",
                               PRISM_MAX_TARGETS);
                goto done;
            }
            archs[n_archs++] = a;
        } else if (o[0] == '-') {
            rc =
                cli_usage("cache pack", "unknown or incomplete option '%s'", o);
            goto done;
        } else {
            paths[n_configs++] = o;
        }
    }
    if (!n_configs || !out) {
        rc = cli_usage("cache pack", "need CONFIG... and -o DIR|FILE.tar");
        goto done;
    }
    if (!(cfgs = calloc((size_t)n_configs, sizeof *cfgs))) {
        rc = cli_fail("out of memory");
        goto done;
    }
    for (int i = 0; i < n_configs; i++)
        if (!cli_load_config(paths[i], &cfgs[i]))
            goto done;
    prism_context *ctx = cli_context();
    if (!ctx)
        goto done;
    prism_pack_options po = {.configs = cfgs,
                             .n_configs = n_configs,
                             .archs = archs,
                             .n_archs = n_archs,
                             .output = out};
    prism_pack_report rep;
    if (prism_pack_create(ctx, &po, &rep) != PRISM_OK) {
        rc = cli_fail("%s", prism_context_last_error(ctx));
    } else {
        char size[32];
        human(rep.bytes, size, sizeof size);
        printf("packed %d config%s into %s: %d config/arch builds and %d "
               "tuned variants (%llu NVRTC compiles), %d tuning entries, %d "
               "files, %s\n",
               n_configs, n_configs == 1 ? "" : "s", out, rep.modules,
               rep.tuned_variants, (unsigned long long)rep.compiles,
               rep.tuning_entries, rep.files, size);
        size_t n = strlen(out);
        if (n > 4 && !strcmp(out + n - 4, ".tar"))
            printf("use: tar -xf %s -C DIR; then PRISM_CACHE_PATH=DIR "
                   "(PRISM_JIT=off makes a miss an error)\n",
                   out);
        else
            printf("use: PRISM_CACHE_PATH=%s (PRISM_JIT=off makes a miss an "
                   "error)\n",
                   out);
        rc = CLI_OK;
    }
    prism_context_destroy(ctx);
done:
    free(paths);
    free(cfgs);
    return rc;
}

static void print_line(void *user, const char *line) {
    fprintf((FILE *)user, "%s\n", line);
}

int prism_cmd_cache_verify_pack(const char *pack) {
    char err[PRISM_ERRMSG_MAX];
    int problems = 0, files = 0;
    prism_status st = prism_pack_verify(pack, print_line, stdout, &problems,
                                        &files, err, sizeof err);
    fflush(stdout);
    if (st == PRISM_OK) {
        printf("pack %s: %d files verified against its manifest: all good\n",
               pack, files);
        return CLI_OK;
    }
    if (st == PRISM_ERR_CACHE)
        return cli_fail("pack %s: %d problem%s found", pack, problems,
                        problems == 1 ? "" : "s");
    return cli_fail("%s", err);
}
