/*
 * test_config_tuning.c - the rules between tuning overrides, the shape and
 * the arch (config/config_tuning.c), and that the loader, `prism check`
 * and the generator agree on them.
 *
 * A config that `prism check` accepts must generate for every target, and
 * what it rejects it must reject with FILE:LINE:COLUMN at the override.
 * The agreement test walks every combination of the attention tunables
 * over head dims, block sizes and archs and compares the config's rule
 * with the generator's own decision (prism_spec_build), so the two cannot
 * drift apart.
 */
#include "prism.h"
#include "test_config_common.h"
#include "cli_testutil.h"

#include "config/config_rules.h"
#include "config/tunables.h"
#include "gen/spec.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The three configs of the report: `prism check` accepted them, `prism
 * gen` and `prism compile` did not, and their errors had no position. */
#define STAGES_WITH_DEFAULT_TARGETS BASE "tuning: {attention: {stages: 3}}\n"
#define OVERLAP_AT_D256                                                        \
    "model: {head_dim: 256, q_heads: 8, kv_heads: 8}\n" ROPE                   \
    "tuning: {attention: {overlap: 1}}\n"
#define PATH2_WITH_BLOCKS_OF_64                                                \
    BASE "prism: {block_size: 64}\n"                                           \
         "tuning:\n"                                                           \
         "  attention:\n"                                                      \
         "    path: 2\n"

Test(config_tuning, the_reported_configs_fail_to_load_with_a_position) {
    static const bad_case t[] = {
        {STAGES_WITH_DEFAULT_TARGETS,
         "t.yaml:7:30: tuning.attention.stages = 3 shapes the wgmma kernel, "
         "which is not built for sm_80"},
        {OVERLAP_AT_D256, "t.yaml:3:31: tuning.attention.overlap = 1 needs "
                          "head_dim <= 128"},
        {PATH2_WITH_BLOCKS_OF_64,
         "t.yaml:10:11: tuning.attention.path = 2 (wgmma) cannot build for "
         "sm_90a with head_dim 128 and block_size 64"},
    };
    EXPECT_ERRORS(t);
}

Test(config_tuning, other_combinations_the_generator_rejects) {
    static const bad_case t[] = {
        {BASE "targets: [sm_90a]\n"
              "tuning: {attention: {path: 2, block_m: 64}}\n",
         "t.yaml:8:40: tuning.attention.block_m = 64 applies to the mma.sync "
         "path"},
        {"model: {head_dim: 256, q_heads: 8, kv_heads: 8}\n" ROPE
         "tuning: {attention: {warp_m: 32}}\n",
         "t.yaml:3:30: tuning.attention.warp_m = 32 needs head_dim <= 128"},
        {"model: {head_dim: 256, q_heads: 8, kv_heads: 8}\n" ROPE
         "tuning: {pool_stats: {threads: 64}}\n",
         "t.yaml:3:32: tuning.pool_stats.threads = 64 is below head_dim/2 = "
         "128"},
        {BASE "targets: [sm_90a]\n"
              "tuning: {attention: {path: 1, overlap: 2}}\n",
         "t.yaml:8:40: tuning.attention.overlap = 2 shapes the wgmma kernel, "
         "which is not built for sm_90a here"},
        {BASE "targets: [sm_90a, sm_86]\n"
              "tuning: {attention: {path: 2}}\n",
         "t.yaml:8:28: tuning.attention.path = 2 (wgmma) cannot build for "
         "sm_86"},
    };
    EXPECT_ERRORS(t);
}

static void expect_loads(const char *yaml) {
    prism_config cfg;
    char err[1024] = "";
    cr_expect_eq(load(yaml, 0, &cfg, err, sizeof err), PRISM_OK, "%s\n%s",
                 yaml, err);
}

Test(config_tuning, what_every_target_can_build_loads) {
    expect_loads(BASE "targets: [sm_90a]\ntuning: {attention: {stages: 3}}\n");
    expect_loads(BASE "targets: [sm_90a]\n"
                      "tuning: {attention: {overlap: 1, stages: 2}}\n");
    expect_loads(BASE "targets: [sm_90a]\ntuning: {attention: {path: 2}}\n");
    expect_loads(BASE "tuning: {attention: {block_m: 64, warp_m: 16}}\n");
    expect_loads(BASE "tuning: {attention: {path: 1, warp_m: 32}}\n");
    expect_loads("model: {head_dim: 256, q_heads: 8, kv_heads: 8}\n" ROPE
                 "targets: [sm_90a]\ntuning: {attention: {overlap: 2}}\n");
    expect_loads("model: {head_dim: 64, q_heads: 9, kv_heads: 3}\n" ROPE
                 "tuning: {pool_stats: {threads: 64}}\n");
}

/* In memory, a config is checked for what holds on every arch; tuned
 * variants keep their base config's targets but are built for one arch,
 * whose rules the generator applies. */
Test(config_tuning, validate_rejects_what_no_arch_builds) {
    prism_config cfg;
    char err[1024] = "";
    cr_assert_eq(load(BASE, 0, &cfg, err, sizeof err), PRISM_OK, "%s", err);
    cfg.n_tuning = 1;
    strcpy(cfg.tuning[0].kernel, "attention");
    strcpy(cfg.tuning[0].param, "path");
    cfg.tuning[0].value = 2;
    cfg.block_size = 64;
    cr_assert_eq(prism_config_validate(&cfg, err, sizeof err),
                 PRISM_ERR_CONFIG);
    cr_assert(strstr(err, "tuning.attention.path = 2"), "%s", err);

    cfg.block_size = 128;
    strcpy(cfg.tuning[0].param, "stages");
    cfg.tuning[0].value = 3;
    cr_assert_eq(prism_config_validate(&cfg, err, sizeof err), PRISM_OK, "%s",
                 err);
    char *src = NULL;
    int attention = 2;
    cr_assert_str_eq(prism_kernel_name(attention), "attention");
    cr_assert_eq(prism_generate_source(&cfg, attention, PRISM_ARCH_SM80, &src,
                                       err, sizeof err),
                 PRISM_ERR_CONFIG, "sm_80 has no wgmma kernel");
    cr_assert_eq(prism_generate_source(&cfg, attention, PRISM_ARCH_SM90A, &src,
                                       err, sizeof err),
                 PRISM_OK, "%s", err);
    free(src);
}

/* ---- the config's rules are the generator's ------------------------------ */

static const prism_tunable *attention_tunables(int *n) {
    const prism_kernel_tunables *k = prism_tunables_find("attention");
    cr_assert_not_null(k);
    for (*n = 0; *n < PRISM_MAX_TUNABLES && k->tunables[*n].name; (*n)++)
        ;
    return k->tunables;
}

/* Every combination of the attention tunables, for each head dim, block
 * size and arch: the config's rule and the generator agree. */
Test(config_tuning, config_rules_agree_with_the_generator) {
    int n;
    const prism_tunable *t = attention_tunables(&n);
    int count[PRISM_MAX_TUNABLES], digit[PRISM_MAX_TUNABLES] = {0};
    long total = 1;
    for (int i = 0; i < n; i++) {
        for (count[i] = 0; t[i].allowed[count[i]] >= 0; count[i]++)
            ;
        total *= count[i];
    }
    static const int dims[] = {64, 128, 256}, blocks[] = {64, 128};
    prism_kernel_spec *spec = malloc(sizeof *spec);
    long checked = 0, legal = 0;
    for (long combo = 0; combo < total; combo++) {
        prism_config cfg;
        prism_config_init(&cfg);
        cfg.n_tuning = n;
        for (int i = 0; i < n; i++) {
            strcpy(cfg.tuning[i].kernel, "attention");
            strcpy(cfg.tuning[i].param, t[i].name);
            cfg.tuning[i].value = t[i].allowed[digit[i]];
        }
        for (int i = n - 1; i >= 0 && ++digit[i] == count[i]; i--)
            digit[i] = 0;
        for (size_t d = 0; d < PRISM_ARRAY_LEN(dims); d++)
            for (size_t b = 0; b < PRISM_ARRAY_LEN(blocks); b++)
                for (int a = 0; a < PRISM_ARCH_COUNT_; a++) {
                    cfg.head_dim = dims[d];
                    cfg.block_size = blocks[b];
                    prism_config_band_defaults(cfg.head_dim, &cfg.high_dim,
                                               &cfg.low_dim);
                    prism_config_problem p;
                    char err[1024];
                    bool ok = prism_config_check(&cfg, &p) &&
                              prism_config_check_arch(&cfg, (prism_arch)a, &p);
                    prism_status st = prism_spec_build(
                        &cfg, PRISM_KERNEL_ATTENTION, (prism_arch)a, spec, err,
                        sizeof err);
                    cr_assert_eq(ok, st == PRISM_OK,
                                 "D %d BS %d %s: config says %s, generator %s",
                                 cfg.head_dim, cfg.block_size,
                                 prism_arch_name((prism_arch)a),
                                 ok ? "ok" : p.text,
                                 st == PRISM_OK ? "ok" : err);
                    checked++;
                    legal += ok;
                }
    }
    free(spec);
    cr_assert_eq(checked, total * 3 * 2 * PRISM_ARCH_COUNT_);
    cr_assert(legal > 0 && legal < checked);
}

Test(config_tuning, pool_stats_threads_agree_with_the_generator) {
    static const int dims[] = {64, 128, 256}, threads[] = {64, 128, 256};
    prism_kernel_spec *spec = malloc(sizeof *spec);
    for (size_t d = 0; d < PRISM_ARRAY_LEN(dims); d++)
        for (size_t i = 0; i < PRISM_ARRAY_LEN(threads); i++) {
            prism_config cfg;
            prism_config_init(&cfg);
            cfg.head_dim = dims[d];
            prism_config_band_defaults(cfg.head_dim, &cfg.high_dim,
                                       &cfg.low_dim);
            cfg.n_tuning = 1;
            strcpy(cfg.tuning[0].kernel, "pool_stats");
            strcpy(cfg.tuning[0].param, "threads");
            cfg.tuning[0].value = threads[i];
            prism_config_problem p;
            char err[1024];
            bool ok = prism_config_check_targets(&cfg, &p);
            prism_status st = prism_spec_build(
                &cfg, PRISM_KERNEL_POOL_STATS, PRISM_ARCH_SM80, spec, err,
                sizeof err);
            cr_assert_eq(ok, st == PRISM_OK, "D %d threads %d", dims[d],
                         threads[i]);
        }
    free(spec);
}

/* ---- bools of configs built in code -------------------------------------- */

Test(config_tuning, a_bool_that_is_not_0_or_1_is_rejected_and_written_true) {
    prism_config cfg;
    prism_config_init(&cfg);
    unsigned char two = 2;
    memcpy(&cfg.calibrate, &two, 1);
    char err[1024] = "";
    cr_assert_eq(prism_config_validate(&cfg, err, sizeof err),
                 PRISM_ERR_CONFIG);
    cr_assert(strstr(err, "prism.calibrate holds the byte 2"), "%s", err);
    /* to_yaml writes any config, reading the byte rather than the bool
     * (the sanitizer build checks that no invalid bool is loaded) */
    memcpy(&cfg.force_sink, &two, 1);
    memcpy(&cfg.force_recent, &two, 1);
    char *yaml = prism_config_to_yaml(&cfg);
    cr_assert_not_null(yaml);
    cr_assert(strstr(yaml, "calibrate: true"), "%s", yaml);
    cr_assert(strstr(yaml, "force_sink: true"), "%s", yaml);
    cr_assert(strstr(yaml, "force_recent: true"), "%s", yaml);
    free(yaml);
}

/* ---- `prism check` and `prism gen` --------------------------------------- */

static char tmpdir[] = "/tmp/prism-test-tuning-XXXXXX";

static void make_tmpdir(void) { cr_assert_not_null(mkdtemp(tmpdir)); }

static void remove_tmpdir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(config_tuning_cli, .init = make_tmpdir, .fini = remove_tmpdir);

/* `prism check` and `prism gen` on yaml: both exit 1 with the same first
 * line, "FILE:LINE:COLUMN: expect...". */
static void cli_rejects(const char *name, const char *yaml,
                        const char *expect) {
    char path[256], out[8192], err[8192], gen_err[8192];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    int rc = cli_tu_run(out, sizeof out, err, sizeof err,
                        "'%s' check '%s'", PRISM_CLI_PATH, path);
    cr_assert_eq(rc, 1, "prism check %s: exit %d\n%s%s", name, rc, out, err);
    char want[512];
    snprintf(want, sizeof want, "%s:%s", path, expect);
    cr_assert(strstr(err, want), "want %s\ngot %s", want, err);
    rc = cli_tu_run(out, sizeof out, gen_err, sizeof gen_err,
                    "PRISM_CACHE_DIR='%s' '%s' gen '%s' -o '%s/out'", tmpdir,
                    PRISM_CLI_PATH, path, tmpdir);
    cr_assert_eq(rc, 1, "prism gen %s: exit %d\n%s%s", name, rc, out, gen_err);
    cr_assert_str_eq(gen_err, err, "gen and check disagree");
}

Test(config_tuning_cli, check_rejects_what_gen_rejects) {
    cli_rejects("stages.yaml", STAGES_WITH_DEFAULT_TARGETS,
                "7:30: tuning.attention.stages = 3");
    cli_rejects("overlap.yaml", OVERLAP_AT_D256,
                "3:31: tuning.attention.overlap = 1");
    cli_rejects("path.yaml", PATH2_WITH_BLOCKS_OF_64,
                "10:11: tuning.attention.path = 2");
}
