/*
 * test_config_common.h - helpers shared by the config loader's suites
 * (tests/test_config.c: shipped configs, defaults, accepted values,
 * in-memory validation and output; tests/test_config_errors.c: error
 * tables, files and `prism check`).  Header-only, static inline: every
 * test file is its own executable and uses only part of it.
 */
#ifndef PRISM_TEST_CONFIG_COMMON_H
#define PRISM_TEST_CONFIG_COMMON_H

#include "prism.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIGS PRISM_SOURCE_DIR "/configs/"

/* A valid config in 6 lines; rows append their own lines from line 7. */
#define BASE                                                                   \
    "model:\n"                                                                 \
    "  head_dim: 128\n"                                                        \
    "  q_heads: 32\n"                                                          \
    "  kv_heads: 8\n"                                                          \
    "rope:\n"                                                                  \
    "  theta: 500000\n"

/* The same on 2 lines, for rows that need model: or rope: themselves. */
#define MODEL "model: {head_dim: 128, q_heads: 32, kv_heads: 8}\n"
#define ROPE "rope: {theta: 10000}\n"

typedef struct bad_case {
    const char *yaml;
    const char *expect; /* prefix of the error line */
} bad_case;

static inline prism_status load(const char *yaml, size_t length, prism_config *cfg,
                         char *err, size_t size) {
    return prism_config_load_string(yaml, length ? length : strlen(yaml),
                                    "t.yaml", cfg, err, size);
}

static inline void expect_errors(const bad_case *cases, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const bad_case *c = &cases[i];
        prism_config cfg;
        char err[1024] = "";
        prism_status st = load(c->yaml, 0, &cfg, err, sizeof err);
        cr_expect_eq(st, PRISM_ERR_CONFIG, "row %zu: status %s for\n%s", i,
                     prism_status_name(st), c->yaml);
        cr_expect(!strncmp(err, c->expect, strlen(c->expect)),
                  "row %zu:\n  expected: %s...\n  got:      %s", i, c->expect,
                  err);
        cr_expect(!strchr(err, '\n'), "row %zu: message is not one line: %s", i,
                  err);
        cr_expect(strstr(err, "; ") != NULL,
                  "row %zu: message lacks '; what is allowed': %s", i, err);
    }
}

#define EXPECT_ERRORS(table) expect_errors(table, sizeof table / sizeof *table)

static inline prism_config load_ok(const char *yaml) {
    prism_config cfg;
    char err[1024] = "";
    prism_status st = load(yaml, 0, &cfg, err, sizeof err);
    cr_assert_eq(st, PRISM_OK, "unexpected error: %s\nfor:\n%s", err, yaml);
    return cfg;
}

static inline prism_config load_file_ok(const char *path) {
    prism_config cfg;
    char err[1024] = "";
    prism_status st = prism_config_load_file(path, &cfg, err, sizeof err);
    cr_assert_eq(st, PRISM_OK, "%s: %s", path, err);
    return cfg;
}

/* Field by field; the positions of tuning entries may differ. */
static inline void expect_same_config(const prism_config *a, const prism_config *b) {
    cr_expect_str_eq(a->name, b->name);
    cr_expect_str_eq(a->source, b->source);
    cr_expect_eq(a->head_dim, b->head_dim);
    cr_expect_eq(a->q_heads, b->q_heads);
    cr_expect_eq(a->kv_heads, b->kv_heads);
    cr_expect_eq(a->dtype, b->dtype);
    cr_expect_eq(a->rope_layout, b->rope_layout);
    cr_expect(a->rope_theta == b->rope_theta, "theta %.17g vs %.17g",
              a->rope_theta, b->rope_theta);
    cr_expect_eq(a->block_size, b->block_size);
    cr_expect_eq(a->high_dim, b->high_dim);
    cr_expect_eq(a->low_dim, b->low_dim);
    cr_expect(a->threshold_high == b->threshold_high, "%.17g vs %.17g",
              a->threshold_high, b->threshold_high);
    cr_expect(a->threshold_low == b->threshold_low, "%.17g vs %.17g",
              a->threshold_low, b->threshold_low);
    cr_expect_eq(a->calibrate, b->calibrate);
    cr_expect(a->temp_high == b->temp_high, "%.17g vs %.17g", a->temp_high,
              b->temp_high);
    cr_expect(a->temp_low == b->temp_low, "%.17g vs %.17g", a->temp_low,
              b->temp_low);
    cr_expect_eq(a->force_sink, b->force_sink);
    cr_expect_eq(a->force_recent, b->force_recent);
    cr_expect_eq(a->n_targets, b->n_targets);
    for (int i = 0; i < a->n_targets && i < b->n_targets; i++)
        cr_expect_eq(a->targets[i], b->targets[i], "targets[%d]", i);
    cr_expect_eq(a->n_tuning, b->n_tuning);
    for (int i = 0; i < a->n_tuning && i < b->n_tuning; i++) {
        cr_expect_str_eq(a->tuning[i].kernel, b->tuning[i].kernel);
        cr_expect_str_eq(a->tuning[i].param, b->tuning[i].param);
        cr_expect_eq(a->tuning[i].value, b->tuning[i].value);
    }
    cr_expect_eq(a->n_dense, b->n_dense);
    for (int i = 0; i < a->n_dense && i < b->n_dense; i++)
        cr_expect(a->dense[i].first == b->dense[i].first &&
                      a->dense[i].last == b->dense[i].last,
                  "dense[%d]", i);
    cr_expect_eq(a->n_layer_overrides, b->n_layer_overrides);
    for (int i = 0; i < a->n_layer_overrides && i < b->n_layer_overrides; i++)
        cr_expect(!memcmp(&a->layer_overrides[i], &b->layer_overrides[i],
                          sizeof a->layer_overrides[i]),
                  "layer_overrides[%d]", i);
}

/* to_yaml, load that back under the same source name, compare. */
static inline void expect_round_trip(const prism_config *cfg) {
    char err[1024] = "";
    prism_config again;
    char *yaml = prism_config_to_yaml(cfg);
    cr_assert_not_null(yaml);
    prism_status st = prism_config_load_string(yaml, strlen(yaml), cfg->source,
                                               &again, err, sizeof err);
    cr_assert_eq(st, PRISM_OK, "reload failed: %s\n%s", err, yaml);
    expect_same_config(cfg, &again);
    char *twice = prism_config_to_yaml(&again);
    cr_assert_not_null(twice);
    cr_expect_str_eq(yaml, twice);
    free(twice);
    free(yaml);
}

#endif
