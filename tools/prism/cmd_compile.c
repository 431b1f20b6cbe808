/*
 * cmd_compile.c - `prism compile`: every kernel of a config through the
 * cache (with --paged also the paged K/V programs, which plans otherwise
 * compile at their first paged launch), one line per kernel, then the
 * cache counters; with --verbose
 * also where each compile's time went (NVRTC's front end, NVVM, ptxas),
 * the wall time of each arch and the process's CPU time, so that a cold
 * start's cost can be read off one run.
 */
#include "tools/common/cli.h"
#include "runtime/module.h"
#include "base/arch.h"

#include <string.h>
#include <sys/resource.h>

static const char compile_usage[] =
    "usage: prism compile CONFIG [--arch A]... [--paged] [--verbose]\n\n"
    "Compiles every kernel of CONFIG for each arch (default: the config's\n"
    "targets and compute_80, the PTX image every config keeps) through the\n"
    "kernel cache and prints one line per kernel:\n"
    "  kernel, arch, hit|miss, key prefix, registers, spill bytes (~N:\n"
    "  no ptxas report, N bytes of stack frame stand for them),\n"
    "  shared memory bytes, milliseconds spent getting the cubin.\n"
    "Environment: PRISM_CACHE_DIR, PRISM_CACHE_PATH, PRISM_CACHE_MAX_BYTES,\n"
    "PRISM_JIT=off (a miss is an error instead of a compile).\n"
    "A repeated --arch is compiled once.\n"
    "--paged: also the paged K/V kernels (pool_stats_paged,\n"
    "attention_paged), which plans otherwise compile at their first paged\n"
    "launch: for a cache or pack that hosts with PRISM_JIT=off and paged\n"
    "batches use.\n"
    "--verbose (or PRISM_VERBOSE=1): under each compiled kernel, its wall\n"
    "and CPU time and NVRTC's phases (C++ front end, NVVM optimizer and\n"
    "PTX code generation, ptxas); per arch the wall time of the module\n"
    "and its threads; at the end the process's CPU time.\n";

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
    printf("%-16s %-7s %-4s %.12s  regs %3d  spills %4s  smem %6d  "
           "%8.1f ms%s\n",
           k->name, prism_arch_name(k->arch), k->cache_hit ? "hit" : "miss",
           k->key_hex, k->registers, spills, k->shared_bytes, k->lookup_ms,
           k->cache_hit ? "" : " (compiled)");
    return proxy;
}

static void print_timing(const prism_module *m, int k) {
    prism_module_timing t;
    if (prism_module_kernel_timing(m, k, &t) != PRISM_OK || !t.compiled)
        return;
    printf("  compile %.1f ms wall, %.1f ms CPU", t.wall_ms, t.cpu_ms);
    if (t.frontend_ms >= 0)
        printf(": front end %.0f ms, NVVM %.0f ms, ptxas %.0f ms",
               t.frontend_ms, t.nvvm_ms, t.ptxas_ms);
    printf("\n");
}

/* CPU time of the whole process so far (every thread), seconds. */
static double process_cpu_s(void) {
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0)
        return 0;
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int prism_cmd_compile(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(compile_usage, stdout);
        return CLI_OK;
    }
    const char *config = NULL;
    cli_archs archs = {0};
    bool verbose = false, paged = false;
    const cli_option opts[] = {
        CLI_OPT_CUSTOM("arch", &archs, cli_opt_arch, true, false),
        CLI_OPT_FLAG("paged", 0, &paged),
        CLI_OPT_FLAG("verbose", 'v', &verbose)};
    cli_spec spec = {"compile", opts, 3, &config, 1};
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
    verbose = verbose || cli_verbose();
    prism_context *ctx = cli_context();
    if (!ctx)
        return CLI_FAIL;
    ctx->time_phases = verbose;
    double total_ms = 0;
    bool proxy = false;
    for (int t = 0; t < n_archs && rc == CLI_OK; t++) {
        prism_module *m = NULL;
        char err[PRISM_ERRMSG_MAX];
        unsigned programs = PRISM_PROGRAMS_PLAIN |
                            (paged ? PRISM_PROGRAMS_PAGED : 0);
        if (prism_config_validate(&cfg, err, sizeof err) != PRISM_OK ||
            prism_module_build_programs(ctx, &cfg, list[t], programs, &m, err,
                                        sizeof err) != PRISM_OK) {
            rc = cli_fail("%s", err);
            break;
        }
        for (int k = 0; k < prism_module_kernel_count(m); k++) {
            prism_kernel_info info;
            if (prism_module_kernel_info(m, k, &info) == PRISM_OK)
                proxy |= print_kernel(&info);
            if (verbose)
                print_timing(m, k);
        }
        int threads;
        double ms = prism_module_fetch_ms(m, &threads);
        total_ms += ms;
        if (verbose)
            printf("%s: %d kernels in %.1f ms wall on %d threads\n",
                   prism_arch_name(list[t]), prism_module_kernel_count(m), ms,
                   threads);
        prism_module_destroy(m);
    }
    if (proxy)
        printf("spills ~N: NVRTC gave no ptxas report; N is the stack frame "
               "read from the cubin (0: nothing spills)\n");
    cli_print_counters(ctx, stdout);
    if (verbose && rc == CLI_OK)
        printf("total: %.1f ms wall getting kernels; the process used %.2f s "
               "of CPU\n",
               total_ms, process_cpu_s());
    prism_context_destroy(ctx);
    return rc;
}
