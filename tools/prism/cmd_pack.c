/*
 * cmd_pack.c - `prism cache pack` and `prism cache verify PACK`, the two
 * cache subcommands that work on shippable packs (runtime/pack.h) rather
 * than on the cache in use; cmd_cache.c dispatches to them.
 *
 *   prism cache pack CONFIG... [--arch A]... -o DIR|FILE.tar [--force]
 *                    [--paged]
 *   prism cache verify PACK
 *
 * An existing output is never overwritten by surprise: pack refuses it,
 * whether a directory or a .tar, unless --force, which replaces a pack
 * and nothing else (see check_output).
 */
#include "tools/common/cli.h"
#include "tools/prism/host_table.h"
#include "runtime/pack.h"
#include "base/fs.h"
#include "base/parse.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void human(long long n, char *buf, size_t size) {
    if (n >= 1 << 20)
        snprintf(buf, size, "%.1f MiB", (double)n / (1 << 20));
    else if (n >= 1 << 10)
        snprintf(buf, size, "%.1f KiB", (double)n / (1 << 10));
    else
        snprintf(buf, size, "%lld B", n);
}

static bool ends_with_tar(const char *path) {
    size_t n = strlen(path);
    return n > 4 && !strcmp(path + n - 4, ".tar");
}

/* An existing output is refused unless --force, and --force replaces only
 * a pack (FILE.tar, or a directory holding MANIFEST.yaml): never a
 * directory of something else.  An empty directory is used as it is. */
static int check_output(const char *out, bool force) {
    char err[PRISM_ERRMSG_MAX], manifest[PRISM_PATH_MAX];
    struct stat st;
    if (prism_check_path_length(out, "-o", err, sizeof err) != PRISM_OK)
        return cli_usage("cache pack", "%s", err);
    if (stat(out, &st) != 0 || (S_ISDIR(st.st_mode) && prism_fs_dir_empty(out)))
        return CLI_OK;
    bool dir = S_ISDIR(st.st_mode);
    bool pack = dir ? prism_fs_join(manifest, sizeof manifest, out,
                                    PRISM_PACK_MANIFEST) &&
                          access(manifest, F_OK) == 0
                    : S_ISREG(st.st_mode) && ends_with_tar(out);
    if (!force)
        return cli_fail("%s exists; choose a new -o, or add --force to "
                        "replace it%s",
                        out, pack ? "" : " (only a pack can be replaced)");
    if (!pack)
        return cli_fail("%s exists and is not a pack (%s); --force replaces "
                        "only a pack: choose a new -o",
                        out, dir ? "no " PRISM_PACK_MANIFEST : "not FILE.tar");
    if (dir && prism_fs_rm_rf(out, err, sizeof err) != PRISM_OK)
        return cli_fail("--force: %s", err);
    return CLI_OK; /* a .tar is replaced atomically once the new one is done */
}

int prism_cmd_cache_pack(int argc, char **argv) {
    const char *out = NULL;
    bool force = false, paged = false;
    cli_archs archs = {0};
    int n_configs = 0;
    const char **paths = calloc((size_t)argc, sizeof *paths);
    prism_config *cfgs = NULL;
    int rc = CLI_FAIL;
    if (!paths)
        return cli_fail("out of memory");
    const cli_option opts[] = {
        CLI_OPT_STRING("output", 'o', &out),
        CLI_OPT_CUSTOM("arch", &archs, cli_opt_arch, true, false),
        CLI_OPT_FLAG("force", 0, &force),
        CLI_OPT_FLAG("paged", 0, &paged),
    };
    cli_spec spec = {"cache pack", opts, PRISM_ARRAY_LEN(opts), paths, argc};
    if ((rc = cli_parse(&spec, argc - 1, argv + 1, &n_configs)) != CLI_OK)
        goto done;
    if (!n_configs || !out) {
        rc = cli_usage("cache pack", "need CONFIG... and -o DIR|FILE.tar");
        goto done;
    }
    rc = CLI_FAIL;
    if (!(cfgs = calloc((size_t)n_configs, sizeof *cfgs))) {
        rc = cli_fail("out of memory");
        goto done;
    }
    for (int i = 0; i < n_configs; i++)
        if (!cli_load_config(paths[i], &cfgs[i]))
            goto done;
    if ((rc = check_output(out, force)) != CLI_OK)
        goto done;
    rc = CLI_FAIL;
    prism_context *ctx = cli_context();
    if (!ctx)
        goto done;
    prism_pack_options po = {.configs = cfgs,
                             .n_configs = n_configs,
                             .archs = archs.v,
                             .n_archs = archs.n,
                             .output = out,
                             .paged = paged};
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
        if (ends_with_tar(out))
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

/* The host table of the pack's entries. */
static int print_host_use(const char *pack) {
    char err[PRISM_ERRMSG_MAX];
    prism_host_table t = {0};
    struct stat st_;
    prism_status st =
        stat(pack, &st_) == 0 && S_ISDIR(st_.st_mode)
            ? prism_host_table_add_dir(&t, pack, NULL, true, err, sizeof err)
            : prism_host_table_add_tar(&t, pack, NULL, err, sizeof err);
    if (st == PRISM_OK)
        cli_print_host_table(&t, stdout);
    prism_host_table_free(&t);
    return st == PRISM_OK ? CLI_OK : cli_fail("%s", err);
}

int prism_cmd_cache_verify_pack(const char *pack) {
    char err[PRISM_ERRMSG_MAX];
    int problems = 0, files = 0;
    prism_status st = prism_pack_verify(pack, print_line, stdout, &problems,
                                        &files, err, sizeof err);
    if ((st == PRISM_OK || st == PRISM_ERR_CACHE) &&
        print_host_use(pack) != CLI_OK)
        return CLI_FAIL;
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
