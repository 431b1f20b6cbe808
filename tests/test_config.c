/*
 * test_config.c - the YAML config loader on valid input: the shipped
 * configs, defaults, accepted values, in-memory validation and YAML output.
 * Error tables, files and `prism check` are in test_config_errors.c.
 *
 * Most tests are tables: a YAML text and the start of the error line it
 * must produce, "t.yaml:LINE:COLUMN: what".  Checking the position as well
 * as the words is the point: an error that names the wrong line is a bug.
 * Every error class of configs/README.md has at least one row.
 */
#include "prism.h"
#include "test_config_common.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Shipped configs and defaults                                              */
/* ------------------------------------------------------------------------ */

static const char *const shipped[] = {"default.yaml",    "llama-3.1-8b.yaml",
                                      "qwen3-8b.yaml",   "smollm2-135m.yaml",
                                      "gemma-2-9b.yaml", "gptj-6b.yaml"};

Test(config_shipped, every_config_loads_and_round_trips) {
    for (size_t i = 0; i < sizeof shipped / sizeof *shipped; i++) {
        char path[1024];
        snprintf(path, sizeof path, CONFIGS "%s", shipped[i]);
        prism_config cfg = load_file_ok(path);
        char err[512] = "";
        cr_expect_eq(prism_config_validate(&cfg, err, sizeof err), PRISM_OK,
                     "%s: %s", path, err);
        cr_expect_str_eq(cfg.source, path);
        expect_round_trip(&cfg);
    }
}

Test(config_shipped, default_yaml_is_prism_config_init) {
    prism_config want, got = load_file_ok(CONFIGS "default.yaml");
    prism_config_init(&want);
    snprintf(want.source, sizeof want.source, "%s", CONFIGS "default.yaml");
    expect_same_config(&want, &got);
}

Test(config_shipped, llama) {
    prism_config c = load_file_ok(CONFIGS "llama-3.1-8b.yaml");
    cr_expect_str_eq(c.name, "llama-3.1-8b");
    cr_expect_eq(c.head_dim, 128);
    cr_expect_eq(c.q_heads, 32);
    cr_expect_eq(c.kv_heads, 8);
    cr_expect_eq(c.rope_layout, PRISM_ROPE_HALF);
    cr_expect(c.rope_theta == 500000.0);
    cr_expect_eq(c.high_dim, 64);
    cr_expect_eq(c.low_dim, 96);
}

Test(config_shipped, qwen3) {
    prism_config c = load_file_ok(CONFIGS "qwen3-8b.yaml");
    cr_expect_eq(c.head_dim, 128);
    cr_expect_eq(c.q_heads, 32);
    cr_expect_eq(c.kv_heads, 8);
    cr_expect(c.rope_theta == 1000000.0);
    cr_expect_eq(c.n_targets, 4);
}

Test(config_shipped, smollm2_bands_scale_with_head_dim) {
    prism_config c = load_file_ok(CONFIGS "smollm2-135m.yaml");
    cr_expect_eq(c.head_dim, 64);
    cr_expect_eq(c.q_heads, 9);
    cr_expect_eq(c.kv_heads, 3);
    cr_expect(c.rope_theta == 100000.0);
    cr_expect_eq(c.high_dim, 32);
    cr_expect_eq(c.low_dim, 48);
    cr_expect_eq(c.block_size, 64);
}

Test(config_shipped, gemma2) {
    prism_config c = load_file_ok(CONFIGS "gemma-2-9b.yaml");
    cr_expect_eq(c.head_dim, 256);
    cr_expect_eq(c.q_heads, 16);
    cr_expect_eq(c.kv_heads, 8);
    cr_expect(c.rope_theta == 10000.0);
    cr_expect_eq(c.high_dim, 128);
    cr_expect_eq(c.low_dim, 192);
}

Test(config_shipped, gptj_interleaved) {
    prism_config c = load_file_ok(CONFIGS "gptj-6b.yaml");
    cr_expect_eq(c.rope_layout, PRISM_ROPE_INTERLEAVED);
    cr_expect_eq(c.dtype, PRISM_DTYPE_FP16);
    cr_expect_eq(c.q_heads, 16);
    cr_expect_eq(c.kv_heads, 16);
    cr_expect_eq(c.high_dim, 64);
    cr_expect_eq(c.low_dim, 192);
}

Test(config_defaults, init_is_spec_section_8) {
    prism_config c;
    prism_config_init(&c);
    cr_expect_eq(c.head_dim, 128);
    cr_expect_eq(c.q_heads, 32);
    cr_expect_eq(c.kv_heads, 8);
    cr_expect_eq(c.dtype, PRISM_DTYPE_BF16);
    cr_expect_eq(c.rope_layout, PRISM_ROPE_HALF);
    cr_expect(c.rope_theta == 500000.0);
    cr_expect_eq(c.block_size, 128);
    cr_expect_eq(c.high_dim, 64);
    cr_expect_eq(c.low_dim, 96);
    cr_expect(c.threshold_high == 0.95 && c.threshold_low == 0.95);
    cr_expect(c.calibrate && c.force_sink && c.force_recent);
    cr_expect(c.temp_high == 1.0 && c.temp_low == 1.0);
    cr_expect_eq(c.n_targets, 2);
    cr_expect_eq(c.targets[0], PRISM_ARCH_SM80);
    cr_expect_eq(c.targets[1], PRISM_ARCH_SM90A);
    cr_expect_eq(c.n_tuning, 0);
    cr_expect_eq(prism_config_validate(&c, NULL, 0), PRISM_OK);
    prism_config_init(NULL); /* a no-op */
}

Test(config_defaults, minimal_config_gets_every_default) {
    prism_config c = load_ok("model: {head_dim: 64, q_heads: 4, kv_heads: 2}\n"
                             "rope: {theta: 10000}\n");
    cr_expect_str_eq(c.name, "t");
    cr_expect_str_eq(c.source, "t.yaml");
    cr_expect_eq(c.dtype, PRISM_DTYPE_BF16);
    cr_expect_eq(c.rope_layout, PRISM_ROPE_HALF);
    cr_expect_eq(c.block_size, 128);
    cr_expect_eq(c.high_dim, 32); /* 64/2 */
    cr_expect_eq(c.low_dim, 48);  /* 3*64/4 */
    cr_expect(c.threshold_high == 0.95 && c.threshold_low == 0.95);
    cr_expect(c.calibrate && c.force_sink && c.force_recent);
    cr_expect(c.temp_high == 1.0 && c.temp_low == 1.0);
    cr_expect_eq(c.n_targets, 2);
    cr_expect_eq(c.n_tuning, 0);
}

Test(config_defaults, explicit_band_keeps_the_other_default) {
    prism_config c = load_ok("model: {head_dim: 256, q_heads: 8, kv_heads: 8}\n"
                             "rope: {theta: 10000}\n"
                             "prism: {high_dim: 16}\n");
    cr_expect_eq(c.high_dim, 16);
    cr_expect_eq(c.low_dim, 192);
}

Test(config_defaults, names_and_sources) {
    prism_config c;
    char err[512];
    const char *y = MODEL ROPE;
    cr_assert_eq(
        prism_config_load_string(y, strlen(y), NULL, &c, err, sizeof err),
        PRISM_OK, "%s", err);
    cr_expect_str_eq(c.source, "<memory>");
    cr_expect_str_eq(c.name, "<memory>");
    cr_assert_eq(prism_config_load_string(y, strlen(y), "dir/my-model.yml", &c,
                                          err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_expect_str_eq(c.name, "my-model");
    cr_expect_str_eq(c.source, "dir/my-model.yml");
    c = load_ok("name: 'it''s \"mine\"'\n" MODEL ROPE);
    cr_expect_str_eq(c.name, "it's \"mine\"");
    expect_round_trip(&c);
}

Test(config_values, accepted_spellings) {
    prism_config c = load_ok("name: flow\n" MODEL "dtype: \"fp16\"\n"
                             "rope: {layout: 'interleaved', theta: 5e5}\n"
                             "prism:\n"
                             "  block_size: +16\n"
                             "  thresholds: {high: 1, low: .5}\n"
                             "  calibrate: False\n"
                             "  temps: {high: 2., low: 1.5E-1}\n"
                             "  force_sink: TRUE\n"
                             "  force_recent: false\n"
                             "targets:\n  - sm_86\n  - \"sm_89\"\n");
    cr_expect_eq(c.dtype, PRISM_DTYPE_FP16);
    cr_expect_eq(c.rope_layout, PRISM_ROPE_INTERLEAVED);
    cr_expect(c.rope_theta == 500000.0);
    cr_expect_eq(c.block_size, 16);
    cr_expect(c.threshold_high == 1.0 && c.threshold_low == 0.5);
    cr_expect(!c.calibrate && c.force_sink && !c.force_recent);
    cr_expect(c.temp_high == 2.0 && c.temp_low == 0.15);
    cr_expect_eq(c.n_targets, 2);
    cr_expect_eq(c.targets[0], PRISM_ARCH_SM86);
    cr_expect_eq(c.targets[1], PRISM_ARCH_SM89);
}

Test(config_values, empty_optional_mappings_mean_defaults) {
    prism_config c = load_ok(BASE "prism:\ntuning:\n");
    cr_expect_eq(c.block_size, 128);
    cr_expect_eq(c.n_tuning, 0);
    c = load_ok(BASE "prism: {thresholds: ~, temps: null}\n"
                     "tuning: {pool_stats: }\n");
    cr_expect(c.threshold_high == 0.95);
    cr_expect_eq(c.n_tuning, 0);
}

Test(config_values, anchors_and_aliases_resolve) {
    prism_config c = load_ok(BASE "prism:\n"
                                  "  thresholds: &t {high: 0.9, low: 0.8}\n"
                                  "  temps: *t\n");
    cr_expect(c.temp_high == 0.9 && c.temp_low == 0.8);
}

Test(config_values, tuning_is_stored_with_its_position) {
    prism_config c = load_ok(BASE "tuning:\n"
                                  "  pool_stats:\n"
                                  "    threads: 256\n");
    cr_assert_eq(c.n_tuning, 1);
    cr_expect_str_eq(c.tuning[0].kernel, "pool_stats");
    cr_expect_str_eq(c.tuning[0].param, "threads");
    cr_expect_eq(c.tuning[0].value, 256);
    cr_expect_eq(c.tuning[0].line, 9);
    cr_expect_eq(c.tuning[0].column, 14);
    expect_round_trip(&c);
}

Test(config_values, failure_leaves_the_config_untouched) {
    prism_config c, before;
    char err[256];
    memset(&c, 0x5a, sizeof c);
    memcpy(&before, &c, sizeof c);
    const char *y = BASE "prism: {high_dim: 3}\n";
    cr_expect_eq(load(y, 0, &c, err, sizeof err), PRISM_ERR_CONFIG);
    cr_expect(!memcmp(&c, &before, sizeof c));
}

/* ------------------------------------------------------------------------ */
/* In-memory validation and output                                           */
/* ------------------------------------------------------------------------ */

typedef struct mem_case {
    void (*edit)(prism_config *);
    const char *expect;
} mem_case;

static void e_name_empty(prism_config *c) { c->name[0] = '\0'; }
static void e_name_slash(prism_config *c) { strcpy(c->name, "a/b"); }
static void e_name_unterminated(prism_config *c) {
    memset(c->name, 'a', sizeof c->name);
}
static void e_head_dim(prism_config *c) { c->head_dim = 100; }
static void e_q_heads(prism_config *c) { c->q_heads = 0; }
static void e_kv_heads(prism_config *c) { c->kv_heads = -1; }
static void e_gqa(prism_config *c) { c->kv_heads = 3; }
static void e_dtype(prism_config *c) { c->dtype = PRISM_DTYPE_FP32; }
static void e_layout(prism_config *c) { c->rope_layout = 7; }
static void e_theta_nan(prism_config *c) { c->rope_theta = NAN; }
static void e_theta_inf(prism_config *c) { c->rope_theta = INFINITY; }
static void e_block(prism_config *c) { c->block_size = 48; }
static void e_high_odd(prism_config *c) { c->high_dim = 65; }
static void e_low_big(prism_config *c) { c->low_dim = 130; }
static void e_band_zero(prism_config *c) { c->high_dim = 0; }
static void e_thr_nan(prism_config *c) { c->threshold_low = NAN; }
static void e_thr_big(prism_config *c) { c->threshold_high = 1.0000001; }
static void e_temp(prism_config *c) { c->temp_low = 0; }
static void e_no_targets(prism_config *c) { c->n_targets = 0; }
static void e_many_targets(prism_config *c) { c->n_targets = 9; }
static void e_bad_target(prism_config *c) { c->targets[1] = 9; }
static void e_dup_target(prism_config *c) { c->targets[1] = c->targets[0]; }
static void e_tuning_count(prism_config *c) { c->n_tuning = 33; }
static void e_tuning_negative(prism_config *c) { c->n_tuning = -1; }
static void add(prism_config *c, const char *k, const char *p, int64_t v) {
    prism_tuning_override *t = &c->tuning[c->n_tuning++];
    snprintf(t->kernel, sizeof t->kernel, "%s", k);
    snprintf(t->param, sizeof t->param, "%s", p);
    t->value = v;
}
static void e_tuning_kernel(prism_config *c) { add(c, "nope", "threads", 1); }
static void e_tuning_param(prism_config *c) {
    add(c, "pool_stats", "warps", 1);
}
static void e_tuning_value(prism_config *c) {
    add(c, "pool_stats", "threads", 96);
}
static void e_tuning_twice(prism_config *c) {
    add(c, "pool_stats", "threads", 64);
    add(c, "pool_stats", "threads", 128);
}
static void e_tuning_unterminated(prism_config *c) {
    add(c, "pool_stats", "threads", 64);
    memset(c->tuning[0].param, 'x', sizeof c->tuning[0].param);
}

Test(config_validate, in_memory_configs) {
    static const mem_case t[] = {
        {e_name_empty, "config '': name is empty"},
        {e_name_slash, "config 'a/b': name contains the byte 0x2f"},
        {e_name_unterminated, "config 'aaaa"},
        {e_head_dim, "config 'default': model.head_dim 100 is not supported; "
                     "allowed: 64, 128, 256"},
        {e_q_heads, "config 'default': model.q_heads 0 is out of range"},
        {e_kv_heads, "config 'default': model.kv_heads -1 is out of range"},
        {e_gqa, "config 'default': model.q_heads 32 is not a multiple of "
                "model.kv_heads 3"},
        {e_dtype, "config 'default': dtype 2 is not supported by the kernels; "
                  "allowed: bf16, fp16"},
        {e_layout, "config 'default': rope.layout 7 is not known"},
        {e_theta_nan, "config 'default': rope.theta nan is not a finite"},
        {e_theta_inf, "config 'default': rope.theta inf is not a finite"},
        {e_block, "config 'default': prism.block_size 48 is not a power of "
                  "two"},
        {e_high_odd, "config 'default': prism.high_dim 65 is odd; band widths "
                     "must be even, 2..head_dim (128)"},
        {e_low_big, "config 'default': prism.low_dim 130 exceeds head_dim"},
        {e_band_zero, "config 'default': prism.high_dim 0 is below 2"},
        {e_thr_nan, "config 'default': prism.thresholds.low nan is outside "
                    "(0, 1]"},
        {e_thr_big, "config 'default': prism.thresholds.high 1 is outside"},
        {e_temp, "config 'default': prism.temps.low 0 is not a finite number "
                 "> 0"},
        {e_no_targets, "config 'default': targets is empty"},
        {e_many_targets, "config 'default': targets has 9 entries; at most 8"},
        {e_bad_target, "config 'default': targets[1] = 9 is not a known arch"},
        {e_dup_target, "config 'default': targets lists sm_80 twice"},
        {e_tuning_count, "config 'default': tuning has 33 overrides; at most "
                         "32"},
        {e_tuning_negative, "config 'default': tuning has -1 overrides"},
        {e_tuning_kernel, "config 'default': tuning.nope.threads = 1 is not "
                          "allowed; kernels: pool_stats"},
        {e_tuning_param, "config 'default': tuning.pool_stats.warps = 1 is "
                         "not allowed; pool_stats tunables: threads"},
        {e_tuning_value, "config 'default': tuning.pool_stats.threads = 96 "
                         "is not allowed; pool_stats.threads values: "},
        {e_tuning_twice, "config 'default': tuning.pool_stats.threads is set "
                         "twice; set it once"},
        {e_tuning_unterminated, "config 'default': tuning[0] has an "
                                "unterminated"},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        prism_config c;
        char err[1024] = "";
        prism_config_init(&c);
        t[i].edit(&c);
        prism_status st = prism_config_validate(&c, err, sizeof err);
        cr_expect_eq(st, PRISM_ERR_CONFIG, "row %zu: %s", i,
                     prism_status_name(st));
        cr_expect(!strncmp(err, t[i].expect, strlen(t[i].expect)),
                  "row %zu:\n  expected: %s...\n  got:      %s", i, t[i].expect,
                  err);
        cr_expect(!strchr(err, '\n'), "row %zu: %s", i, err);
        char *yaml = prism_config_to_yaml(&c); /* never crashes */
        cr_expect_not_null(yaml);
        free(yaml);
    }
}

Test(config_output, awkward_values_round_trip_exactly) {
    prism_config c;
    prism_config_init(&c);
    strcpy(c.name, "we \"quote\" back\\slashes: #and - [brackets]");
    strcpy(c.source, "awkward.yaml");
    c.head_dim = 256;
    c.q_heads = 1024;
    c.kv_heads = 1;
    c.rope_theta = 0.1 + 0.2; /* 0.30000000000000004 */
    c.high_dim = 2;
    c.low_dim = 256;
    c.threshold_high = 1.0 / 3.0;
    c.threshold_low = 5e-324; /* the smallest subnormal */
    c.temp_high = 1.7976931348623157e308;
    c.temp_low = 123456.789;
    c.calibrate = false;
    c.force_sink = false;
    c.n_targets = 4;
    c.targets[0] = PRISM_ARCH_SM90A;
    c.targets[1] = PRISM_ARCH_SM89;
    c.targets[2] = PRISM_ARCH_SM86;
    c.targets[3] = PRISM_ARCH_SM80;
    add(&c, "pool_stats", "threads", 256);
    char err[512] = "";
    cr_assert_eq(prism_config_validate(&c, err, sizeof err), PRISM_OK, "%s",
                 err);
    expect_round_trip(&c);
}

Test(config_output, numbers_are_short_and_locale_independent) {
    prism_config c;
    prism_config_init(&c);
    c.threshold_high = 0.9;
    /* A decimal comma locale, when the system has one, must not leak in. */
    const char *locales[] = {"de_DE.UTF-8", "fr_FR.UTF-8", "C.UTF-8"};
    for (size_t i = 0; i < 3 && !setlocale(LC_NUMERIC, locales[i]); i++)
        ;
    char *yaml = prism_config_to_yaml(&c);
    setlocale(LC_NUMERIC, "C");
    cr_assert_not_null(yaml);
    cr_expect(strstr(yaml, "    high: 0.9\n") != NULL, "%s", yaml);
    cr_expect(strstr(yaml, "  theta: 500000.0\n") != NULL, "%s", yaml);
    cr_expect(strstr(yaml, "targets: [sm_80, sm_90a]\n") != NULL, "%s", yaml);
    cr_expect(strstr(yaml, "tuning: {}\n") != NULL, "%s", yaml);
    free(yaml);
}

