/*
 * cmd_compile.c - `prism compile`: every kernel of a config through the
 * cache, one line per kernel, then the cache counters.
 */
#include "tools/common/cli.h"
#include "base/arch.h"

#include <string.h>

static const char compile_usage[] =
    "usage: prism compile CONFIG [--arch A]...\n\n"
    "Compiles every kernel of CONFIG for each arch (default: the config's\n"
    "targets and compute_80, the PTX image every config keeps) through the\n"
    "kernel cache and prints one line per kernel:\n"
    "  kernel, arch, hit|miss, key prefix, registers, spill bytes (~N:\n"
    "  no ptxas report, N bytes of stack frame stand for them),\n"
    "  shared memory bytes, milliseconds spent getting the cubin.\n"
    "Environment: PRISM_CACHE_DIR, PRISM_CACHE_PATH, PRISM_CACHE_MAX_BYTES,\n"
    "PRISM_JIT=off (a miss is an error instead of a compile).\n"
    "A repeated --arch is compiled once.\n";

/* Spills as ptxas reported them, or "~N": no report, N bytes of stack
 * frame read from the cubin stand for them.  Returns whether it is one. */
static bool spill_text(const prism_kernel_info *k, char *out, size_t size) {
    bool proxy = k->spill_bytes < 0 && k->local_bytes >= 0;
    if (proxy)
        snprintf(out, size, "~%d", k->local_bytes);
    else
        snprintf(out, size, "%d", k->spill_bytes);
    return proxy;
}

static bool print_kernel(const prism_kernel_info *k) {
    char spills[16];
    bool proxy = spill_text(k, spills, sizeof spills);
    printf("%-12s %-7s %-4s %.12s  regs %3d  spills %4s  smem %6d  "
           "%8.1f ms%s\n",
           k->name, prism_arch_name(k->arch), k->cache_hit ? "hit" : "miss",
           k->key_hex, k->registers, spills, k->shared_bytes, k->lookup_ms,
           k->cache_hit ? "" : " (compiled)");
    return proxy;
}

int prism_cmd_compile(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(compile_usage, stdout);
        return CLI_OK;
    }
    const char *config = NULL;
    cli_archs archs = {0};
    const cli_option opts[] = {
        CLI_OPT_CUSTOM("arch", &archs, cli_opt_arch, true, false)};
    cli_spec spec = {"compile", opts, 1, &config, 1};
    int n_pos;
    int rc = cli_parse(&spec, argc, argv, &n_pos);
    if (rc != CLI_OK)
        return rc;
    if (!config)
        return cli_usage("compile", "missing CONFIG");
    prism_config cfg;
    if (!cli_load_config(config, &cfg))
        return CLI_FAIL;
    /* the config's targets and its PTX image, or the archs asked for */
    prism_arch list[PRISM_MAX_TARGETS + 1];
    int n_archs = archs.n;
    memcpy(list, archs.v, sizeof archs.v);
    if (archs.n == 0)
        n_archs = prism_arch_with_ptx(cfg.targets, cfg.n_targets, list);
    prism_context *ctx = cli_context();
    if (!ctx)
        return CLI_FAIL;
    bool proxy = false;
    for (int t = 0; t < n_archs && rc == CLI_OK; t++) {
        prism_module *m = NULL;
        if (prism_module_build(ctx, &cfg, list[t], &m) != PRISM_OK) {
            rc = cli_fail("%s", prism_context_last_error(ctx));
            break;
        }
        for (int k = 0; k < prism_module_kernel_count(m); k++) {
            prism_kernel_info info;
            if (prism_module_kernel_info(m, k, &info) == PRISM_OK)
                proxy |= print_kernel(&info);
        }
        prism_module_destroy(m);
    }
    if (proxy)
        printf("spills ~N: NVRTC gave no ptxas report; N is the stack frame "
               "read from the cubin (0: nothing spills)\n");
    cli_print_counters(ctx, stdout);
    prism_context_destroy(ctx);
    return rc;
}
