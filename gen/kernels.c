/*
 * kernels.c - the table of kernels every config generates.
 *
 * Each row names a kernel's role, its templates, its __global__ entry
 * points, its tunables (their table is config/tunables.c, which the config
 * loader checks overrides against), the function that derives its shape
 * constants from the config and the one that fixes its launch shape
 * (launch.c).  The rest of the pipeline (spec, emit, NVRTC, cache, CLI,
 * plans) is table-driven, so a new kernel is its templates, its tunables
 * and a row here.
 *
 * Every spec gets the config's shape constants; the emitter writes into a
 * kernel's source only those its templates use, so a change that concerns
 * one kernel changes that kernel's cache key alone.  The head counts and
 * the method's settings are not constants at all but launch parameters.
 */
#include "gen/kernels.h"
#include "gen/spec.h"

#include "base/base.h"
#include "config/config_rules.h"

#include <stdio.h>
#include <string.h>

/* What shapes a kernel's code, as constants (the emitter keeps those a
 * kernel's templates use).  Only compile-time facts belong here: the head
 * counts and the method's settings (thresholds, temperatures, calibrate,
 * force_*, the softmax scale) are launch parameters (prism_params, the
 * templates' *_params.h), so that they share the kernels and cache keys. */
static prism_status add_common_constants(prism_kernel_spec *s, char *err,
                                         size_t n) {
    const prism_config *c = s->cfg;
    prism_status st = PRISM_OK;
#define TRY(call)                                                            \
    do {                                                                     \
        if ((st = (call)) != PRISM_OK)                                       \
            return prism_errorf(err, n, st, "kernel spec for '%s' is full", \
                                s->def->name);                               \
    } while (0)
    TRY(prism_spec_add_int(s, "HEAD_DIM", c->head_dim, "D"));
    TRY(prism_spec_add_int(s, "BLOCK_SIZE", c->block_size,
                           "tokens per pooled block"));
    TRY(prism_spec_add_bool(s, "INPUT_BF16", c->dtype == PRISM_DTYPE_BF16,
                            "false: fp16 inputs"));
    TRY(prism_spec_add_bool(s, "ROPE_INTERLEAVED",
                            c->rope_layout == PRISM_ROPE_INTERLEAVED,
                            "false: rotate_half layout"));
    TRY(prism_spec_add_int(s, "HIGH_DIM", c->high_dim, "dh, high band width"));
    TRY(prism_spec_add_int(s, "LOW_DIM", c->low_dim, "dl, low band width"));
    TRY(prism_spec_add_int(s, "HIGH_PAIR_END", c->high_dim / 2,
                           "high band: rotary pairs [0, HIGH_PAIR_END)"));
    TRY(prism_spec_add_int(s, "LOW_PAIR_BEGIN", (c->head_dim - c->low_dim) / 2,
                           "low band: rotary pairs [LOW_PAIR_BEGIN, D/2)"));
#undef TRY
    return PRISM_OK;
}

/* The config's tuning rules for this arch: the one function the loader
 * (and so `prism check`) runs too (config/config_tuning.c). */
static prism_status check_arch_rules(const prism_kernel_spec *s, char *err,
                                     size_t n) {
    prism_config_problem p;
    if (prism_config_check_arch(s->cfg, s->arch, &p))
        return PRISM_OK;
    return prism_errorf(err, n, PRISM_ERR_CONFIG, "%s: %s", s->cfg->source,
                        p.text);
}

static prism_status pool_stats_constants(prism_kernel_spec *s, char *err,
                                         size_t n) {
    prism_status st = add_common_constants(s, err, n);
    if (st != PRISM_OK)
        return st;
    return check_arch_rules(s, err, n);
}

static prism_status estimate_constants(prism_kernel_spec *s, char *err,
                                       size_t n) {
    return add_common_constants(s, err, n);
}

/* Picks the attention variant (mma.sync, or wgmma/TMA on sm_90a) and its
 * templates.  The launch shape (launch.c) resolves the tile defaults; the
 * templates reject illegal shapes with static_asserts, and the rules worth
 * a config error up front are the config's own (check_arch_rules), so a
 * config that passes `prism check` generates. */
static prism_status attention_constants(prism_kernel_spec *s, char *err,
                                        size_t n) {
    prism_status st = add_common_constants(s, err, n);
    if (st != PRISM_OK)
        return st;
    if ((st = check_arch_rules(s, err, n)) != PRISM_OK)
        return st;
    const prism_config *c = s->cfg;
    int64_t path = prism_spec_int(s, "PATH", 0);
    bool hopper_ok = s->arch == PRISM_ARCH_SM90A &&
                     (c->head_dim == 64 || c->head_dim == 128 ||
                      c->head_dim == 256) &&
                     c->block_size >= 128;
    /* block_m / warp_m shape the mma.sync kernel only: pinning one picks
     * that path under path 0 */
    bool sm80_pins = prism_spec_int(s, "BLOCK_M", 0) != 0 ||
                     prism_spec_int(s, "WARP_M", 0) != 0;
    bool wgmma = path == 2 || (path == 0 && hopper_ok && !sm80_pins);
    s->variant = wgmma ? 2 : 1;
    if (wgmma) {
        static const char *const sm90[PRISM_MAX_TEMPLATES] = {
            "attention_params.h",        "input.cuh",
            "attention_sm90_ptx.cuh",    "attention_sm90.cu",
            "attention_sm90_stream.cu",  "attention_sm90_produce.cu",
            "attention_sm90_schedule.cu"};
        memcpy(s->templates, sm90, sizeof s->templates);
        s->entry_points[1] = "prism_attention_schedule";
        return PRISM_OK;
    }
    return PRISM_OK;
}

static const prism_kernel_def kernel_table[] = {
    [PRISM_KERNEL_POOL_STATS] = {
        .name = "pool_stats",
        .role = PRISM_KERNEL_POOL_STATS,
        .summary = "block mean pooling of Q and K with band energy "
                   "statistics",
        .templates = {"pool_stats_params.h", "input.cuh", "bands.cuh",
                      "pool_stats.cu"},
        .entry_points = {"prism_pool_stats"},
        /* the same over paged K (prism_paged_kv), a program of its own */
        .paged_entry = "prism_pool_stats_paged",
        .paged_name = "pool_stats_paged",
        .tunables = prism_tunables_table[PRISM_KERNEL_POOL_STATS].tunables,
        .add_constants = pool_stats_constants,
        .launch = prism_launch_pool_stats,
    },
    [PRISM_KERNEL_ESTIMATE] = {
        .name = "estimate",
        .role = PRISM_KERNEL_ESTIMATE,
        .summary = "calibrated band scales, dual-band block scores, "
                   "softmax and top-p selection (radix select) fused per "
                   "group of query-block rows",
        .templates = {"estimate_params.h", "bands.cuh", "estimate.cu"},
        .entry_points = {"prism_estimate"},
        .tunables = prism_tunables_table[PRISM_KERNEL_ESTIMATE].tunables,
        .add_constants = estimate_constants,
        .launch = prism_launch_estimate,
    },
    [PRISM_KERNEL_ATTENTION] = {
        .name = "attention",
        .role = PRISM_KERNEL_ATTENTION,
        .summary = "block-sparse FlashAttention forward over the selection "
                   "(sm_80: mma.sync, ldmatrix, cp.async; sm_90a: TMA, "
                   "mbarriers, wgmma warpgroups)",
        .templates = {"attention_params.h", "input.cuh", "attention.cu"},
        /* [1]: sm_90a's schedule kernel (attention_constants) */
        .entry_points = {"prism_attention"},
        /* the same over paged K and V (prism_paged_kv), a program of its
         * own that launches after the plain program's schedule kernel */
        .paged_entry = "prism_attention_paged",
        .paged_name = "attention_paged",
        .tunables = prism_tunables_table[PRISM_KERNEL_ATTENTION].tunables,
        .add_constants = attention_constants,
        .launch = prism_launch_attention,
    },
};

/* one row per entry of config/tunables.c, in its order and with its names
 * (tests/test_gen.c checks the names) */
_Static_assert(PRISM_ARRAY_LEN(kernel_table) == PRISM_KERNEL_COUNT,
               "gen/kernels.c and config/tunables.c list the same kernels");

int prism_kernel_count(void) { return (int)PRISM_ARRAY_LEN(kernel_table); }

const char *prism_kernel_name(int index) {
    const prism_kernel_def *d = prism_kernel_def_at(index);
    return d ? d->name : NULL;
}

const prism_kernel_def *prism_kernel_def_at(int index) {
    if (index < 0 || index >= prism_kernel_count())
        return NULL;
    return &kernel_table[index];
}

int prism_kernel_index_of(prism_kernel_role role) {
    for (int i = 0; i < prism_kernel_count(); i++)
        if (kernel_table[i].role == role)
            return i;
    return -1;
}

const prism_kernel_def *prism_kernel_def_find(const char *name) {
    for (int i = 0; name && i < prism_kernel_count(); i++)
        if (!strcmp(kernel_table[i].name, name))
            return &kernel_table[i];
    return NULL;
}
