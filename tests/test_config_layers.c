/*
 * test_config_layers.c - per-layer settings of a config: the layers:
 * section (dense layers, overrides), its errors with their positions, its
 * YAML output, and prism_config_for_layer(), which an engine uses to make
 * one plan per distinct layer setting.
 *
 * The error rows check the position as well as the words, as the other
 * config suites do: a rule broken inside layers.overrides[1] must point at
 * the line of that entry's offending value, not at the top of the file.
 */
#include "prism.h"
#include "test_config_common.h"
#include "cli_testutil.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* BASE (6 lines) and a layers section from line 7. */
static const char layered[] =
    BASE
    "layers:\n"                                          /*  7 */
    "  dense: [0, 1, 2]\n"                               /*  8 */
    "  overrides:\n"                                     /*  9 */
    "    - layers: 3-10\n"                               /* 10 */
    "      thresholds: {high: 0.99, low: 0.99}\n"        /* 11 */
    "    - layers: [12, 20-22]\n"                        /* 12 */
    "      high_dim: 32\n"                               /* 13 */
    "      calibrate: false\n"                           /* 14 */
    "      temps: {low: 2.5}\n";                         /* 15 */

Test(config_layers, a_layers_section_loads) {
    prism_config c = load_ok(layered);
    cr_expect_eq(c.n_dense, 3);
    cr_expect(c.dense[2].first == 2 && c.dense[2].last == 2);
    cr_expect_eq(c.n_layer_overrides, 2);
    const prism_layer_override *a = &c.layer_overrides[0], *b =
                                                              &c.layer_overrides[1];
    cr_expect(a->n_ranges == 1 && a->ranges[0].first == 3 &&
              a->ranges[0].last == 10);
    cr_expect_eq(a->fields,
                 PRISM_LAYER_THRESHOLD_HIGH | PRISM_LAYER_THRESHOLD_LOW);
    cr_expect(a->threshold_high == 0.99 && a->threshold_low == 0.99);
    cr_expect(b->n_ranges == 2 && b->ranges[1].first == 20 &&
              b->ranges[1].last == 22);
    cr_expect_eq(b->fields, PRISM_LAYER_HIGH_DIM | PRISM_LAYER_CALIBRATE |
                                PRISM_LAYER_TEMP_LOW);
    cr_expect(b->high_dim == 32 && !b->calibrate && b->temp_low == 2.5);
    /* the top level is untouched */
    cr_expect(c.threshold_high == 0.95 && c.high_dim == 64 && c.calibrate);
    expect_round_trip(&c);
}

Test(config_layers, output_lists_only_what_is_set) {
    prism_config c = load_ok(layered);
    char *y = prism_config_to_yaml(&c);
    cr_assert_not_null(y);
    const char *want = "layers:\n"
                       "  dense: [0, 1, 2]\n"
                       "  overrides:\n"
                       "    - layers: [3-10]\n"
                       "      thresholds:\n"
                       "        high: 0.99\n"
                       "        low: 0.99\n"
                       "    - layers: [12, 20-22]\n"
                       "      high_dim: 32\n"
                       "      calibrate: false\n"
                       "      temps:\n"
                       "        low: 2.5\n";
    const char *at = strstr(y, "layers:\n");
    cr_assert_not_null(at, "%s", y);
    cr_expect_str_eq(at, want);
    free(y);
    /* a config without per-layer settings prints no layers: at all */
    prism_config plain = load_ok(BASE);
    y = prism_config_to_yaml(&plain);
    cr_assert_not_null(y);
    cr_expect_null(strstr(y, "layers"), "%s", y);
    free(y);
}

Test(config_layers, accepted_forms) {
    prism_config c = load_ok(BASE "layers:\n  dense: 5\n");
    cr_expect(c.n_dense == 1 && c.dense[0].first == 5 && c.dense[0].last == 5);
    c = load_ok(BASE "layers: {dense: \"0-3\"}\n");
    cr_expect(c.n_dense == 1 && c.dense[0].first == 0 && c.dense[0].last == 3);
    c = load_ok(BASE "layers:\n");
    cr_expect(c.n_dense == 0 && c.n_layer_overrides == 0);
    c = load_ok(BASE "layers:\n  overrides:\n    - {layers: 7, "
                     "force_sink: false, force_recent: false, low_dim: 64}\n");
    cr_expect_eq(c.layer_overrides[0].fields, PRISM_LAYER_FORCE_SINK |
                                                  PRISM_LAYER_FORCE_RECENT |
                                                  PRISM_LAYER_LOW_DIM);
    expect_round_trip(&c);
}

/* A local window per layer: the override's recent_blocks for its layers,
 * the top level's elsewhere. */
Test(config_layers, recent_window_per_layer) {
    prism_config c = load_ok(BASE "prism: {recent_blocks: 4}\n"
                                  "layers:\n  overrides:\n"
                                  "    - {layers: 3-10, recent_blocks: 16}\n");
    cr_expect_eq(c.recent_blocks, 4);
    cr_expect_eq(c.layer_overrides[0].fields, PRISM_LAYER_RECENT_BLOCKS);
    prism_config l;
    bool dense = true;
    cr_assert_eq(prism_config_for_layer(&c, 5, &l, &dense), PRISM_OK);
    cr_expect(!dense && l.recent_blocks == 16);
    cr_assert_eq(prism_config_for_layer(&c, 11, &l, &dense), PRISM_OK);
    cr_expect_eq(l.recent_blocks, 4);
    expect_round_trip(&c);
}

Test(config_layers, errors_point_at_the_entry) {
    static const bad_case t[] = {
        {BASE "layers:\n  overrides:\n    - layers: 3\n      block_size: 64\n",
         "t.yaml:10:7: layers.overrides[0].block_size cannot differ between "
         "layers"},
        {BASE "layers:\n  overrides:\n    - {layers: 3, head_dim: 64}\n",
         "t.yaml:9:19: unknown key 'layers.overrides[0].head_dim'; allowed "
         "keys of layers.overrides[0]: layers, high_dim, low_dim"},
        {BASE "layers:\n  overrides:\n    - {calibrate: false}\n",
         "t.yaml:9:7: missing required key 'layers.overrides[0].layers'"},
        {BASE "layers:\n  overrides:\n    - {layers: 3}\n",
         "t.yaml:9:7: layers.overrides[0] sets no field; give at least one"},
        {BASE "layers:\n  overrides:\n    - {layers: 1, calibrate: false}\n"
              "    - layers: 2\n      thresholds: {high: 1.5}\n",
         "t.yaml:11:26: layers.overrides[1].thresholds.high 1.5 is outside "
         "(0, 1]"},
        {BASE "layers:\n  overrides:\n    - {layers: 1, high_dim: 65}\n",
         "t.yaml:9:29: layers.overrides[0].high_dim 65 is odd; band widths "
         "must be even, 2..head_dim (128)"},
        {BASE "layers:\n  overrides:\n    - {layers: 1, low_dim: 256}\n",
         "t.yaml:9:28: layers.overrides[0].low_dim 256 exceeds head_dim"},
        {BASE "layers:\n  overrides:\n    - {layers: 1, temps: {high: 0}}\n",
         "t.yaml:9:33: layers.overrides[0].temps.high 0 is not a finite "
         "number > 0"},
        {BASE "layers:\n  dense: [0, 10-3]\n",
         "t.yaml:8:14: layers.dense[1] = 10-3 is not a range of layers"},
        {BASE "layers:\n  dense: [1024]\n",
         "t.yaml:8:11: layers.dense[0] = 1024-1024 is not a range of layers; "
         "write a layer 0..1023"},
        {BASE "layers:\n  dense: [0-2]\n  overrides:\n"
              "    - {layers: [5, 2-4], calibrate: false}\n",
         "t.yaml:10:20: layer 2 is named twice, in layers.dense[0] and "
         "layers.overrides[0].layers[1]; name each layer once"},
        {BASE "layers:\n  overrides:\n    - {layers: 0-9, calibrate: false}\n"
              "    - {layers: 9, calibrate: true}\n",
         "t.yaml:10:16: layer 9 is named twice, in "
         "layers.overrides[0].layers[0] and layers.overrides[1].layers[0]"},
        {BASE "layers:\n  dense: [3, 1-5]\n",
         "t.yaml:8:14: layer 3 is named twice, in layers.dense[0] and "
         "layers.dense[1]"},
        {BASE "layers:\n  dense: []\n",
         "t.yaml:8:10: layers.dense is empty; list layers"},
        {BASE "layers:\n  overrides: []\n",
         "t.yaml:8:14: layers.overrides is empty; add an entry"},
        {BASE "layers:\n  overrides: {layers: 1}\n",
         "t.yaml:8:14: layers.overrides: expected a sequence, got a mapping"},
        {BASE "layers:\n  overrides: [3]\n",
         "t.yaml:8:15: layers.overrides[0]: expected a mapping, got '3'"},
        {BASE "layers:\n  dense: 3-\n",
         "t.yaml:8:10: layers.dense: expected a layer or a range, got '3-'"},
        {BASE "layers:\n  dense: \"3\"\n",
         "t.yaml:8:10: layers.dense: expected a layer or a range, got the "
         "string \"3\""},
        {BASE "layers:\n  dense: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, "
              "13, 14, 15, 16]\n",
         "t.yaml:8:10: layers.dense has 17 entries; at most 16"},
        {BASE "layers:\n  sparse: [1]\n",
         "t.yaml:8:3: unknown key 'layers.sparse'; allowed keys of layers: "
         "dense, overrides"},
    };
    EXPECT_ERRORS(t);
}

Test(config_layers, validate_names_the_entry) {
    prism_config c;
    char err[512] = "";
    prism_config_init(&c);
    c.n_layer_overrides = 1;
    c.layer_overrides[0].n_ranges = 1;
    c.layer_overrides[0].ranges[0] = (prism_layer_range){4, 6};
    c.layer_overrides[0].fields = PRISM_LAYER_THRESHOLD_LOW;
    c.layer_overrides[0].threshold_low = 2.0;
    cr_expect_eq(prism_config_validate(&c, err, sizeof err), PRISM_ERR_CONFIG);
    cr_expect_str_eq(err, "config 'default': layers.overrides[0].thresholds.low "
                          "2 is outside (0, 1]; use a top-p mass such as 0.95");
    c.layer_overrides[0].fields = 1u << 12;
    prism_config_validate(&c, err, sizeof err);
    cr_expect(strstr(err, "unknown field bits 0x1000") != NULL, "%s", err);
    c.layer_overrides[0].fields = PRISM_LAYER_CALIBRATE;
    c.n_dense = -1;
    cr_expect_eq(prism_config_validate(&c, err, sizeof err), PRISM_ERR_CONFIG);
    c.n_dense = 0;
    c.n_layer_overrides = PRISM_MAX_LAYER_OVERRIDES + 1;
    cr_expect_eq(prism_config_validate(&c, err, sizeof err), PRISM_ERR_CONFIG);
    /* to_yaml of an invalid count must not read past the arrays */
    char *y = prism_config_to_yaml(&c);
    cr_expect_not_null(y);
    free(y);
}

/* ------------------------------------------------------------------------ */
/* prism_config_for_layer                                                    */
/* ------------------------------------------------------------------------ */

Test(config_for_layer, resolves_each_layer) {
    prism_config c = load_ok(layered), out;
    bool dense = false;
    cr_assert_eq(prism_config_for_layer(&c, 1, &out, &dense), PRISM_OK);
    cr_expect(dense);
    cr_expect(out.threshold_high == 0.95 && out.n_dense == 0 &&
              out.n_layer_overrides == 0);
    cr_assert_eq(prism_config_for_layer(&c, 7, &out, &dense), PRISM_OK);
    cr_expect(!dense);
    cr_expect(out.threshold_high == 0.99 && out.threshold_low == 0.99 &&
              out.calibrate && out.high_dim == 64);
    cr_assert_eq(prism_config_for_layer(&c, 21, &out, &dense), PRISM_OK);
    cr_expect(out.high_dim == 32 && !out.calibrate && out.temp_low == 2.5 &&
              out.temp_high == 1.0 && out.threshold_high == 0.95);
    char err[512] = "";
    cr_expect_eq(prism_config_validate(&out, err, sizeof err), PRISM_OK, "%s",
                 err);
    /* a layer no entry names: the top level, as a plain config */
    cr_assert_eq(prism_config_for_layer(&c, 11, &out, &dense), PRISM_OK);
    prism_config plain = load_ok(BASE);
    cr_expect(!dense);
    cr_expect(!memcmp(&out, &plain, sizeof out),
              "layer 11 should resolve to the config without layers:");
}

Test(config_for_layer, equal_settings_compare_equal) {
    prism_config c = load_ok(layered), a, b;
    bool da, db;
    prism_config_for_layer(&c, 3, &a, &da);
    prism_config_for_layer(&c, 10, &b, &db);
    cr_expect(!memcmp(&a, &b, sizeof a));
    prism_config_for_layer(&c, 12, &b, &db);
    cr_expect(memcmp(&a, &b, sizeof a) != 0);
    prism_config_for_layer(&c, 11, &a, &da);
    prism_config_for_layer(&c, 29, &b, &db);
    cr_expect(!memcmp(&a, &b, sizeof a));
}

Test(config_for_layer, out_may_be_cfg) {
    prism_config c = load_ok(layered);
    bool dense = true;
    cr_assert_eq(prism_config_for_layer(&c, 4, &c, &dense), PRISM_OK);
    cr_expect(!dense && c.threshold_high == 0.99 && c.n_layer_overrides == 0);
}

Test(config_for_layer, bad_arguments) {
    prism_config c = load_ok(layered), out;
    bool dense = true;
    out.threshold_high = -1.0;
    cr_expect_eq(prism_config_for_layer(NULL, 0, &out, &dense),
                 PRISM_ERR_NULL_POINTER);
    cr_expect_eq(prism_config_for_layer(&c, 0, NULL, &dense),
                 PRISM_ERR_NULL_POINTER);
    cr_expect_eq(prism_config_for_layer(&c, 0, &out, NULL),
                 PRISM_ERR_NULL_POINTER);
    cr_expect_eq(prism_config_for_layer(&c, -1, &out, &dense),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_expect_eq(prism_config_for_layer(&c, PRISM_MAX_LAYER + 1, &out, &dense),
                 PRISM_ERR_INVALID_ARGUMENT);
    c.layer_overrides[0].threshold_high = 7.0;
    cr_expect_eq(prism_config_for_layer(&c, 5, &out, &dense), PRISM_ERR_CONFIG);
    cr_expect(out.threshold_high == -1.0 && dense, "outputs must be unchanged");
}

/* ------------------------------------------------------------------------ */
/* prism check prints the section back                                       */
/* ------------------------------------------------------------------------ */

Test(config_layers, prism_check_prints_layers) {
    char path[] = "/tmp/prism-layers-XXXXXX.yaml";
    int fd = mkstemps(path, 5);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, layered, strlen(layered)), (ssize_t)strlen(layered));
    close(fd);
    static char out[16384];
    int rc = cli_tu_run(out, sizeof out, NULL, 0, "%s check %s",
                        PRISM_CLI_PATH, path);
    unlink(path);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "  dense: [0, 1, 2]\n") != NULL, "%s", out);
    cr_expect(strstr(out, "    - layers: [12, 20-22]\n") != NULL, "%s", out);
}
