/*
 * config_tuning.c - the rules between tuning overrides, the shape and the
 * arch: which attention kernel a config builds on an arch, and which
 * tunables that kernel takes.
 *
 * Each override is checked on its own against config/tunables.c by
 * prism_config_check(); this file adds what depends on several values at
 * once.  The attention template has two kernels: mma.sync (any arch) and
 * wgmma/TMA (sm_90a, a head dim of 64, 128 or 256, blocks of at least 128
 * tokens).  `path` picks one (0: wgmma where it can, unless block_m or
 * warp_m is pinned), and stages/overlap only mean something to wgmma,
 * block_m/warp_m only to mma.sync.  These rules are data about the kernels,
 * like the tunables, and live here so that the loader can report a broken
 * one at the line of the override, and `prism check` rejects exactly what
 * generation would.  The generator applies the same function for the arch
 * it builds.  This file uses nothing of config_validate.c, which calls it.
 */
#include "config/config_rules.h"
#include "config/tunables.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The value of kernel.param: its override (*index its entry), else the
 * tunable's default (*index -1). */
static int64_t value_of(const prism_config *c, const char *kernel,
                        const char *param, int *index) {
    *index = -1;
    for (int i = 0; i < c->n_tuning && i < PRISM_MAX_TUNING; i++)
        if (!strcmp(c->tuning[i].kernel, kernel) &&
            !strcmp(c->tuning[i].param, param)) {
            *index = i;
            return c->tuning[i].value;
        }
    const prism_kernel_tunables *k = prism_tunables_find(kernel);
    for (int i = 0; k && i < PRISM_MAX_TUNABLES && k->tunables[i].name; i++)
        if (!strcmp(k->tunables[i].name, param))
            return k->tunables[i].default_value;
    return 0;
}

static bool broken(prism_config_problem *p, int index, const char *fmt, ...)
    PRISM_PRINTF(3, 4);

static bool broken(prism_config_problem *p, int index, const char *fmt, ...) {
    va_list ap;
    p->field = PRISM_CF_TUNING;
    p->index = index;
    va_start(ap, fmt);
    vsnprintf(p->text, sizeof p->text, fmt, ap);
    va_end(ap);
    return false;
}

/* The attention tunables of one config, and the kernel they select. */
typedef struct attention_choice {
    int64_t path, block_m, warp_m, stages, overlap;
    int i_path, i_block_m, i_warp_m, i_stages, i_overlap;
    bool hopper_ok; /* the shape and arch allow wgmma */
    bool wgmma;     /* the kernel built */
} attention_choice;

static attention_choice choose(const prism_config *c, prism_arch arch) {
    attention_choice a;
    a.path = value_of(c, "attention", "path", &a.i_path);
    a.block_m = value_of(c, "attention", "block_m", &a.i_block_m);
    a.warp_m = value_of(c, "attention", "warp_m", &a.i_warp_m);
    a.stages = value_of(c, "attention", "stages", &a.i_stages);
    a.overlap = value_of(c, "attention", "overlap", &a.i_overlap);
    a.hopper_ok = arch == PRISM_ARCH_SM90A &&
                  (c->head_dim == 64 || c->head_dim == 128 ||
                   c->head_dim == 256) &&
                  c->block_size >= 128;
    bool pins = a.block_m != 0 || a.warp_m != 0;
    a.wgmma = a.path == 2 || (a.path == 0 && a.hopper_ok && !pins);
    return a;
}

static bool check_attention(const prism_config *c, prism_arch arch,
                            prism_config_problem *p) {
    attention_choice a = choose(c, arch);
    const char *an = prism_arch_name(arch);
    if (a.path == 2 && !a.hopper_ok)
        return broken(p, a.i_path,
                      "tuning.attention.path = 2 (wgmma) cannot build for %s "
                      "with head_dim %d and block_size %d: it needs arch "
                      "sm_90a, head_dim 64, 128 or 256 and block_size >= 128; "
                      "use path 0 (auto) or 1 (mma.sync)%s",
                      an, c->head_dim, c->block_size,
                      arch != PRISM_ARCH_SM90A ? ", or target only sm_90a"
                                               : "");
    if (a.wgmma && (a.block_m != 0 || a.warp_m != 0)) {
        bool m = a.block_m != 0;
        return broken(p, m ? a.i_block_m : a.i_warp_m,
                      "tuning.attention.%s = %lld applies to the mma.sync "
                      "path (path 1), not to path 2 (wgmma); leave block_m "
                      "and warp_m 0",
                      m ? "block_m" : "warp_m",
                      (long long)(m ? a.block_m : a.warp_m));
    }
    if (!a.wgmma && (a.stages != 0 || a.overlap != 0)) {
        bool s = a.stages != 0;
        return broken(p, s ? a.i_stages : a.i_overlap,
                      "tuning.attention.%s = %lld shapes the wgmma kernel, "
                      "which is not built for %s here (it needs sm_90a, "
                      "head_dim 64, 128 or 256, block_size >= 128, path 0 or "
                      "2 and block_m = warp_m = 0); leave it 0%s",
                      s ? "stages" : "overlap",
                      (long long)(s ? a.stages : a.overlap), an,
                      arch != PRISM_ARCH_SM90A ? ", or target only sm_90a"
                                               : "");
    }
    if (a.wgmma && a.overlap == 1 && c->head_dim > 128)
        return broken(p, a.i_overlap,
                      "tuning.attention.overlap = 1 needs head_dim <= 128: "
                      "the overlapped loop holds S, P and O of two tiles at "
                      "once and spills at head_dim %d (where only 2 stages "
                      "fit, and with 2 stages it is slower than the plain "
                      "loop anyway); use overlap 0 or 2",
                      c->head_dim);
    if (!a.wgmma && a.warp_m == 32 && c->head_dim > 128)
        return broken(p, a.i_warp_m,
                      "tuning.attention.warp_m = 32 needs head_dim <= 128 "
                      "(registers); use 16 or 0 (default) for head_dim %d",
                      c->head_dim);
    return true;
}

static bool check_pool_stats(const prism_config *c, prism_config_problem *p) {
    int i;
    int64_t threads = value_of(c, "pool_stats", "threads", &i);
    if (threads >= c->head_dim / 2)
        return true;
    return broken(p, i,
                  "tuning.pool_stats.threads = %lld is below head_dim/2 = %d "
                  "(one thread per rotary pair); use at least %d",
                  (long long)threads, c->head_dim / 2, c->head_dim / 2);
}

bool prism_config_check_arch(const prism_config *cfg, prism_arch arch,
                             prism_config_problem *p) {
    return check_pool_stats(cfg, p) && check_attention(cfg, arch, p);
}

/* What no arch can build is wrong whatever the targets; the problem is
 * told as sm_90a sees it, the arch that accepts the most. */
bool prism_config_check_some_arch(const prism_config *cfg,
                                  prism_config_problem *p) {
    for (int a = 0; a < PRISM_ARCH_COUNT_; a++)
        if (prism_config_check_arch(cfg, (prism_arch)a, p))
            return true;
    return prism_config_check_arch(cfg, PRISM_ARCH_SM90A, p);
}
