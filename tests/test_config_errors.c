/*
 * test_config_errors.c - the YAML config loader on bad input: every error
 * class as a table, file errors, and `prism check`.  (Valid input:
 * test_config.c; the two share tests/test_config_common.h.)  A separate
 * file only to keep each under the project's 800-line limit.
 *
 * Most tests are tables: a YAML text and the start of the error line it
 * must produce, "t.yaml:LINE:COLUMN: what".  Checking the position as well
 * as the words is the point: an error that names the wrong line is a bug.
 * Every error class of configs/README.md has at least one row.
 */
#include "prism.h"
#include "test_config_common.h"
#include "cli_testutil.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Error classes                                                             */
/* ------------------------------------------------------------------------ */

Test(config_errors, unknown_keys) {
    static const bad_case t[] = {
        {BASE "foo: 1\n", "t.yaml:7:1: unknown key 'foo'; allowed keys at the "
                          "top level: name, model, dtype, rope, prism, "
                          "targets, tuning"},
        {"model:\n  head_dim: 128\n  heads: 32\n", "t.yaml:3:3: unknown key "
                                                   "'model.heads'; allowed "
                                                   "keys of model: head_dim"},
        {BASE "prism:\n  thresholds:\n    mid: 0.5\n",
         "t.yaml:9:5: unknown key 'prism.thresholds.mid'"},
        {BASE "prism: {temps: {hi: 1}}\n",
         "t.yaml:7:17: unknown key 'prism.temps.hi'"},
        {BASE "Dtype: bf16\n",
         "t.yaml:7:1: unknown key 'Dtype' (keys are lowercase)"},
        {BASE "rope_theta: 1\n", "t.yaml:7:1: unknown key 'rope_theta'"},
        {BASE "<<: {dtype: bf16}\n", "t.yaml:7:1: unknown key '<<'"},
        {BASE "? [a]\n: 1\n", "t.yaml:7:3: a key of the top level: expected "
                              "a plain string key, got a sequence"},
        {BASE "~: 1\n", "t.yaml:7:1: a key of the top level: expected a "
                        "plain string key, got nothing (null)"},
        {BASE "prism: {? {a: 1} : 2}\n",
         "t.yaml:7:11: a key of prism: expected a plain string key, got a "
         "mapping"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, wrong_types) {
    static const bad_case t[] = {
        {"model:\n  head_dim: \"128\"\n",
         "t.yaml:2:13: model.head_dim: expected an integer, got the string "
         "\"128\"; write a whole number"},
        {"model:\n  head_dim: 128.0\n",
         "t.yaml:2:13: model.head_dim: expected an integer, got '128.0'"},
        {"model:\n  head_dim: 1e2\n",
         "t.yaml:2:13: model.head_dim: expected an integer, got '1e2'"},
        {"model:\n  head_dim: 0x80\n",
         "t.yaml:2:13: model.head_dim: expected an integer, got '0x80'"},
        {"model:\n  head_dim: [128]\n",
         "t.yaml:2:13: model.head_dim: expected an integer, got a sequence"},
        {"model:\n  head_dim:\n  q_heads: 1\n",
         "t.yaml:2:12: model.head_dim: expected an integer, got nothing "
         "(null)"},
        {"model:\n  q_heads: thirty-two\n",
         "t.yaml:2:12: model.q_heads: expected an integer, got 'thirty-two'"},
        {"model:\n  q_heads: 99999999999\n",
         "t.yaml:2:12: model.q_heads: 99999999999 is out of range"},
        {"model:\n  q_heads: -99999999999999999999999\n",
         "t.yaml:2:12: model.q_heads: -99999999999999999999999 is out of "
         "range"},
        {MODEL "rope: {theta: \"1e4\"}\n", "t.yaml:2:15: rope.theta: expected "
                                           "a number, got the string \"1e4\""},
        {MODEL "rope: {theta: .inf}\n",
         "t.yaml:2:15: rope.theta: expected a number, got '.inf'"},
        {MODEL "rope: {theta: .nan}\n",
         "t.yaml:2:15: rope.theta: expected a number, got '.nan'"},
        {MODEL "rope: {theta: 1e999}\n",
         "t.yaml:2:15: rope.theta: 1e999 is out of range"},
        {MODEL "rope: {theta: 10k}\n",
         "t.yaml:2:15: rope.theta: expected a number, got '10k'"},
        {BASE "prism: {calibrate: yes}\n",
         "t.yaml:7:20: prism.calibrate: expected a boolean, got 'yes'; write "
         "true or false"},
        {BASE "prism: {force_sink: 1}\n",
         "t.yaml:7:21: prism.force_sink: expected a boolean, got '1'"},
        {BASE "prism: {force_recent: \"true\"}\n",
         "t.yaml:7:23: prism.force_recent: expected a boolean, got the "
         "string \"true\""},
        {BASE "prism: {recent_blocks: 0}\n",
         "t.yaml:7:24: prism.recent_blocks 0 is out of range; allowed: 1 "
         "(the diagonal block) up to 4096 key blocks"},
        {BASE "dtype: [bf16]\n",
         "t.yaml:7:8: dtype: expected a string, got a sequence"},
        {BASE "name: {a: 1}\n",
         "t.yaml:7:7: name: expected a string, got a mapping"},
        {BASE "name:\n", "t.yaml:7:6: name: expected a string, got nothing"},
        {BASE "name: \"a\\0b\"\n",
         "t.yaml:7:7: name: the string contains a NUL byte"},
        {"model: 5\n", "t.yaml:1:8: model: expected a mapping, got '5'"},
        {"model:\n" ROPE,
         "t.yaml:1:7: model: expected a mapping, got nothing (null)"},
        {MODEL "rope: [theta]\n",
         "t.yaml:2:7: rope: expected a mapping, got a sequence"},
        {BASE "prism: []\n",
         "t.yaml:7:8: prism: expected a mapping, got a sequence"},
        {BASE "prism: {thresholds: 0.9}\n",
         "t.yaml:7:21: prism.thresholds: expected a mapping, got '0.9'"},
        {BASE "targets: sm_80\n",
         "t.yaml:7:10: targets: expected a sequence, got 'sm_80'"},
        {BASE "targets:\n",
         "t.yaml:7:9: targets: expected a sequence, got nothing (null)"},
        {BASE "targets: [[sm_80]]\n",
         "t.yaml:7:11: targets: expected a string, got a sequence"},
        {BASE "tuning: [pool_stats]\n",
         "t.yaml:7:9: tuning: expected a mapping, got a sequence"},
        {BASE "tuning: {pool_stats: 128}\n",
         "t.yaml:7:22: tuning.pool_stats: expected a mapping, got '128'"},
        {BASE "tuning: {pool_stats: {threads: 1.5}}\n",
         "t.yaml:7:32: tuning.pool_stats.threads: expected an integer, got "
         "'1.5'"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, missing_required_keys) {
    static const bad_case t[] = {
        {ROPE, "t.yaml:1:1: missing required key 'model'; add a model: "
               "mapping with head_dim, q_heads and kv_heads"},
        {MODEL, "t.yaml:1:1: missing required key 'rope'"},
        {"model:\n  q_heads: 32\n  kv_heads: 8\n" ROPE,
         "t.yaml:2:3: missing required key 'model.head_dim'; add head_dim: "
         "64, 128 or 256"},
        {"model:\n  head_dim: 128\n  kv_heads: 8\n" ROPE,
         "t.yaml:2:3: missing required key 'model.q_heads'"},
        {"model:\n  head_dim: 128\n  q_heads: 32\n" ROPE,
         "t.yaml:2:3: missing required key 'model.kv_heads'"},
        {MODEL "rope: {layout: half}\n",
         "t.yaml:2:7: missing required key 'rope.theta'"},
        {MODEL "rope: {}\n", "t.yaml:2:7: missing required key 'rope.theta'"},
        {"name: x\n", "t.yaml:1:1: missing required key 'model'"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, model_shape) {
    static const bad_case t[] = {
        {"model: {head_dim: 96, q_heads: 32, kv_heads: 8}\n" ROPE,
         "t.yaml:1:19: model.head_dim 96 is not supported; allowed: 64, 128, "
         "256"},
        {"model: {head_dim: 512, q_heads: 32, kv_heads: 8}\n" ROPE,
         "t.yaml:1:19: model.head_dim 512 is not supported"},
        {"model: {head_dim: 0, q_heads: 32, kv_heads: 8}\n" ROPE,
         "t.yaml:1:19: model.head_dim 0 is not supported"},
        {"model: {head_dim: 128, q_heads: 0, kv_heads: 8}\n" ROPE,
         "t.yaml:1:33: model.q_heads 0 is out of range; allowed: 1..1024"},
        {"model: {head_dim: 128, q_heads: -32, kv_heads: 8}\n" ROPE,
         "t.yaml:1:33: model.q_heads -32 is out of range"},
        {"model: {head_dim: 128, q_heads: 32, kv_heads: 0}\n" ROPE,
         "t.yaml:1:47: model.kv_heads 0 is out of range"},
        {"model: {head_dim: 128, q_heads: 4096, kv_heads: 8}\n" ROPE,
         "t.yaml:1:33: model.q_heads 4096 is out of range"},
        {"model: {head_dim: 128, q_heads: 32, kv_heads: 5}\n" ROPE,
         "t.yaml:1:47: model.q_heads 32 is not a multiple of model.kv_heads "
         "5; kv_heads must divide q_heads"},
        {"model: {head_dim: 128, q_heads: 8, kv_heads: 32}\n" ROPE,
         "t.yaml:1:46: model.q_heads 8 is not a multiple of model.kv_heads "
         "32"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, dtype_layout_theta) {
    static const bad_case t[] = {
        {BASE "dtype: fp32\n",
         "t.yaml:7:8: dtype 'fp32' is not supported; allowed: bf16, fp16"},
        {BASE "dtype: BF16\n", "t.yaml:7:8: dtype 'BF16' is not supported"},
        {BASE "dtype: bfloat16\n",
         "t.yaml:7:8: dtype 'bfloat16' is not supported"},
        {MODEL "rope: {layout: rotate_half, theta: 1}\n",
         "t.yaml:2:16: rope.layout 'rotate_half' is not supported; allowed: "
         "half, interleaved"},
        {MODEL "rope: {theta: 0}\n",
         "t.yaml:2:15: rope.theta 0 is not a finite number > 0"},
        {MODEL "rope: {theta: -10000}\n",
         "t.yaml:2:15: rope.theta -10000 is not a finite number > 0"},
        {MODEL "rope: {theta: 1e-400}\n",
         "t.yaml:2:15: rope.theta 0 is not a finite number > 0"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, block_size) {
    static const bad_case t[] = {
        {BASE "prism: {block_size: 100}\n",
         "t.yaml:7:21: prism.block_size 100 is not a power of two in 16..256; "
         "allowed: 16, 32, 64, 128, 256"},
        {BASE "prism: {block_size: 8}\n",
         "t.yaml:7:21: prism.block_size 8 is not a power of two"},
        {BASE "prism: {block_size: 512}\n",
         "t.yaml:7:21: prism.block_size 512 is not a power of two"},
        {BASE "prism: {block_size: 0}\n",
         "t.yaml:7:21: prism.block_size 0 is not a power of two"},
        {BASE "prism: {block_size: -128}\n",
         "t.yaml:7:21: prism.block_size -128 is not a power of two"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, band_widths) {
    static const bad_case t[] = {
        {BASE "prism:\n  high_dim: 65\n",
         "t.yaml:8:13: prism.high_dim 65 is odd; band widths must be even, "
         "2..head_dim (128)"},
        {BASE "prism:\n  low_dim: 33\n",
         "t.yaml:8:12: prism.low_dim 33 is odd"},
        {BASE "prism:\n  high_dim: 0\n",
         "t.yaml:8:13: prism.high_dim 0 is below 2"},
        {BASE "prism:\n  low_dim: -2\n",
         "t.yaml:8:12: prism.low_dim -2 is below 2"},
        {BASE "prism:\n  low_dim: 130\n",
         "t.yaml:8:12: prism.low_dim 130 exceeds head_dim; band widths must "
         "be even, 2..head_dim (128)"},
        {"model: {head_dim: 64, q_heads: 8, kv_heads: 8}\n" ROPE
         "prism: {high_dim: 96}\n",
         "t.yaml:3:19: prism.high_dim 96 exceeds head_dim; band widths must "
         "be even, 2..head_dim (64)"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, thresholds_and_temps) {
    static const bad_case t[] = {
        {BASE "prism: {thresholds: {high: 0}}\n",
         "t.yaml:7:28: prism.thresholds.high 0 is outside (0, 1]; use a top-p "
         "mass such as 0.95"},
        {BASE "prism: {thresholds: {low: 1.5}}\n",
         "t.yaml:7:27: prism.thresholds.low 1.5 is outside (0, 1]"},
        {BASE "prism: {thresholds: {high: -0.1}}\n",
         "t.yaml:7:28: prism.thresholds.high -0.1 is outside (0, 1]"},
        {BASE "prism: {temps: {high: 0}}\n",
         "t.yaml:7:23: prism.temps.high 0 is not a finite number > 0"},
        {BASE "prism: {temps: {low: -1}}\n",
         "t.yaml:7:22: prism.temps.low -1 is not a finite number > 0"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, targets) {
    static const bad_case t[] = {
        {BASE "targets: [sm_80, sm_75]\n",
         "t.yaml:7:18: unknown arch 'sm_75' in targets; allowed: sm_80, sm_86, "
         "sm_89, sm_90a, sm_100, sm_120, compute_80"},
        {BASE "targets: [sm_100a]\n", "t.yaml:7:11: unknown arch 'sm_100a'"},
        {BASE "targets: [sm_90]\n", "t.yaml:7:11: unknown arch 'sm_90'"},
        {BASE "targets:\n  - sm_80\n  - SM_86\n",
         "t.yaml:9:5: unknown arch 'SM_86'"},
        {BASE "targets: [sm_80, sm_90a, sm_80]\n",
         "t.yaml:7:26: targets lists sm_80 twice; list each arch once"},
        {BASE "targets: []\n",
         "t.yaml:7:10: targets is empty; list at least one of sm_80, sm_86, "
         "sm_89, sm_90a, sm_100, sm_120, compute_80"},
        {BASE "targets: [sm_80, sm_86, sm_89, sm_90a, sm_80, sm_86, sm_89, "
              "sm_90a, sm_80]\n",
         "t.yaml:7:10: targets has 9 entries; at most 8"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, names) {
    static const bad_case t[] = {
        {BASE "name: \"\"\n", "t.yaml:7:7: name is empty; use printable"},
        {BASE "name: a/b\n", "t.yaml:7:7: name contains the byte 0x2f"},
        {BASE "name: \"tab\\there\"\n",
         "t.yaml:7:7: name contains the byte 0x09"},
        {BASE "name: \"caf\\u00e9\"\n",
         "t.yaml:7:7: name contains the byte 0xc3"},
        {BASE "name: "
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "\n",
         "t.yaml:7:7: name is 128 bytes long; use at most 127"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, duplicate_keys) {
    static const bad_case t[] = {
        {BASE "dtype: bf16\ndtype: fp16\n",
         "t.yaml:8:1: duplicate key 'dtype' (first at line 7, column 1); keep "
         "one of them"},
        {"model:\n  head_dim: 128\n  head_dim: 64\n",
         "t.yaml:3:3: duplicate key 'model.head_dim' (first at line 2, "
         "column 3)"},
        {BASE "rope: {theta: 2}\n",
         "t.yaml:7:1: duplicate key 'rope' (first at line 5, column 1)"},
        {BASE "prism: {thresholds: {high: 0.9, high: 0.8}}\n",
         "t.yaml:7:33: duplicate key 'prism.thresholds.high' (first at line "
         "7, column 22)"},
        {BASE "tuning:\n  pool_stats: {threads: 64}\n"
              "  pool_stats: {threads: 128}\n",
         "t.yaml:9:3: duplicate key 'tuning.pool_stats' (first at line 8, "
         "column 3)"},
        {BASE "tuning:\n  pool_stats: {threads: 64, threads: 128}\n",
         "t.yaml:8:29: duplicate key 'tuning.pool_stats.threads' (first at "
         "line 8, column 16)"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, tuning_overrides) {
    static const bad_case t[] = {
        {BASE "tuning:\n  pool_stat: {threads: 64}\n",
         "t.yaml:8:3: unknown kernel 'pool_stat' in tuning; kernels: "
         "pool_stats"},
        {BASE "tuning:\n  pool_stats: {thread: 64}\n",
         "t.yaml:8:16: unknown tunable 'tuning.pool_stats.thread'; pool_stats "
         "tunables: threads"},
        {BASE "tuning:\n  pool_stats: {threads: 100}\n",
         "t.yaml:8:25: tuning.pool_stats.threads = 100 is not allowed; "
         "pool_stats.threads values: "},
        {BASE "tuning:\n  pool_stats:\n    threads: -1\n",
         "t.yaml:9:14: tuning.pool_stats.threads = -1 is not allowed"},
        {BASE "tuning:\n  pool_stats:\n    threads: 99999999999999999999\n",
         "t.yaml:9:14: tuning.pool_stats.threads: 99999999999999999999 is out "
         "of range"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, documents) {
    static const bad_case t[] = {
        {"", "t.yaml:1:1: the config is empty; write a mapping"},
        {"# only a comment\n\n", "t.yaml:1:1: the config is empty"},
        {"42\n", "t.yaml:1:1: the config: expected a mapping, got '42'"},
        {"hello\n", "t.yaml:1:1: the config: expected a mapping, got 'hello'"},
        {"- model\n- rope\n",
         "t.yaml:1:1: the config: expected a mapping, got a sequence"},
        {"[a, b]\n",
         "t.yaml:1:1: the config: expected a mapping, got a sequence"},
        {"---\n",
         "t.yaml:2:1: the config: expected a mapping, got nothing (null)"},
        {"\"model\"\n",
         "t.yaml:1:1: the config: expected a mapping, got the string"},
        {BASE "---\nfoo: 1\n",
         "t.yaml:7:1: a second YAML document starts here; a config is one "
         "document"},
        {"---\n" BASE "...\n---\n" BASE, "t.yaml:9:1: a second YAML document"},
        {BASE "---\n", "t.yaml:7:1: a second YAML document"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, yaml_syntax) {
    static const bad_case t[] = {
        {"model: [1, 2\n",
         "t.yaml:2:1: invalid YAML: did not find expected ',' or ']' (while "
         "parsing a flow sequence at line 1, column 8)"},
        {"a: b: c\n", "t.yaml:1:5: invalid YAML: mapping values are not "
                      "allowed in this context"},
        {"model:\n\thead_dim: 1\n",
         "t.yaml:2:1: invalid YAML: found character that cannot start any "
         "token"},
        {"model:\n  head_dim: 1\n q_heads: 2\n", "t.yaml:3:2: invalid YAML: "},
        {"name: 'open\n", "t.yaml:2:1: invalid YAML: found unexpected end of "
                          "stream"},
        {BASE "dtype: *x\n", "t.yaml:7:8: invalid YAML: found undefined "
                             "alias"},
        {BASE "dtype: !!str bf16\n",
         "t.yaml:7:8: explicit YAML tags are not supported (found "
         "'tag:yaml.org,2002:str'); remove the tag"},
        {BASE "prism: !custom {}\n",
         "t.yaml:7:8: explicit YAML tags are not supported (found '!custom')"},
        {"name: \xff\n", "t.yaml:1:7: invalid input: invalid leading UTF-8 "
                         "octet; a config is UTF-8 text"},
        {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
         "]\n",
         "t.yaml:1:17: nesting deeper than 16 levels; the schema nests at "
         "most 5"},
        {"a: {b: {c: {d: {e: {f: {g: {h: {i: {j: {k: {l: {m: {n: {o: {p: {q: "
         "1}}}}}}}}}}}}}}}}}\n",
         "t.yaml:1:64: nesting deeper than 16 levels"},
    };
    EXPECT_ERRORS(t);
}

Test(config_errors, nul_byte_in_the_input) {
    prism_config cfg;
    char err[512] = "";
    cr_expect_eq(load("name: a\0b\n", 10, &cfg, err, sizeof err),
                 PRISM_ERR_CONFIG);
    cr_expect_str_eq(err, "t.yaml:1:8: invalid input: control characters are "
                          "not allowed; a config is UTF-8 text");
}

Test(config_errors, file_names_with_control_bytes_stay_on_one_line) {
    prism_config cfg;
    char err[512] = "";
    const char *y = BASE "foo: 1\n";
    cr_expect_eq(prism_config_load_string(y, strlen(y), "a\nb.yaml", &cfg, err,
                                          sizeof err),
                 PRISM_ERR_CONFIG);
    cr_expect(!strncmp(err, "a?b.yaml:7:1: unknown key 'foo'", 31), "%s", err);
}

Test(config_errors, deep_nesting_does_not_overflow_the_stack) {
    size_t n = 1 << 19; /* 512 KiB of '[' */
    char *yaml = malloc(n + 1);
    cr_assert_not_null(yaml);
    memset(yaml, '[', n);
    yaml[n] = '\0';
    prism_config cfg;
    char err[512] = "";
    cr_expect_eq(load(yaml, n, &cfg, err, sizeof err), PRISM_ERR_CONFIG);
    cr_expect(strstr(err, "nesting deeper than") != NULL, "%s", err);
    free(yaml);
}

Test(config_errors, oversized_string) {
    size_t n = (1 << 20) + 1;
    char *yaml = malloc(n);
    cr_assert_not_null(yaml);
    memset(yaml, '#', n);
    prism_config cfg;
    char err[512] = "";
    cr_expect_eq(load(yaml, n, &cfg, err, sizeof err), PRISM_ERR_CONFIG);
    cr_expect(strstr(err, "t.yaml: the config is 1048577 bytes; the limit is "
                          "1 MiB") != NULL,
              "%s", err);
    free(yaml);
}

Test(config_errors, null_arguments_and_small_buffers) {
    prism_config cfg;
    char err[16];
    cr_expect_eq(prism_config_load_string(NULL, 0, "x", &cfg, err, sizeof err),
                 PRISM_ERR_NULL_POINTER);
    cr_expect_eq(prism_config_load_string("a: 1", 4, "x", NULL, NULL, 0),
                 PRISM_ERR_NULL_POINTER);
    cr_expect_eq(prism_config_load_file(NULL, &cfg, NULL, 0),
                 PRISM_ERR_NULL_POINTER);
    cr_expect_eq(prism_config_load_file("x.yaml", NULL, NULL, 0),
                 PRISM_ERR_NULL_POINTER);
    cr_expect_eq(prism_config_validate(NULL, NULL, 0), PRISM_ERR_NULL_POINTER);
    cr_expect_null(prism_config_to_yaml(NULL));
    /* err may be NULL, and a short buffer is truncated, not overrun. */
    cr_expect_eq(load(BASE "foo: 1\n", 0, &cfg, NULL, 0), PRISM_ERR_CONFIG);
    cr_expect_eq(load(BASE "foo: 1\n", 0, &cfg, err, sizeof err),
                 PRISM_ERR_CONFIG);
    cr_expect_str_eq(err, "t.yaml:7:1: unk");
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

static char tmpdir[] = "/tmp/prism-test-config-XXXXXX";

static void make_tmpdir(void) { cr_assert_not_null(mkdtemp(tmpdir)); }

static void remove_tmpdir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(text, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

TestSuite(config_files, .init = make_tmpdir, .fini = remove_tmpdir);

Test(config_files, missing_file_is_an_io_error_naming_it) {
    prism_config cfg;
    char err[1024] = "";
    cr_expect_eq(prism_config_load_file("/nonexistent/dir/x.yaml", &cfg, err,
                                        sizeof err),
                 PRISM_ERR_IO);
    cr_expect(strstr(err, "/nonexistent/dir/x.yaml: cannot open the config: "
                          "No such file or directory") != NULL,
              "%s", err);
}

Test(config_files, directory_is_an_io_error) {
    prism_config cfg;
    char err[1024] = "";
    cr_expect_eq(prism_config_load_file(tmpdir, &cfg, err, sizeof err),
                 PRISM_ERR_IO);
    cr_expect(strstr(err, "Is a directory") != NULL, "%s", err);
}

Test(config_files, unreadable_file_is_an_io_error) {
    char path[256], err[1024] = "";
    prism_config cfg;
    if (geteuid() == 0)
        cr_skip_test("root reads files without permission");
    snprintf(path, sizeof path, "%s/secret.yaml", tmpdir);
    write_file(path, BASE, strlen(BASE));
    cr_assert_eq(chmod(path, 0), 0);
    cr_expect_eq(prism_config_load_file(path, &cfg, err, sizeof err),
                 PRISM_ERR_IO);
    cr_expect(strstr(err, "Permission denied") != NULL, "%s", err);
}

Test(config_files, read_error_is_an_io_error) {
    prism_config cfg;
    char err[1024] = "";
    /* Opens fine, but read(2) at offset 0 fails (EIO), even for root. */
    cr_expect_eq(
        prism_config_load_file("/proc/self/mem", &cfg, err, sizeof err),
        PRISM_ERR_IO);
    cr_expect(strstr(err, "/proc/self/mem: cannot read the config: ") != NULL,
              "%s", err);
}

Test(config_files, size_limit_is_one_mebibyte) {
    char path[256], err[1024] = "";
    prism_config cfg;
    size_t limit = 1 << 20, base = strlen(BASE);
    char *text = malloc(limit + 1);
    cr_assert_not_null(text);
    memcpy(text, BASE, base);
    memset(text + base, '#', limit + 1 - base);
    text[base] = '\n';
    snprintf(path, sizeof path, "%s/big.yaml", tmpdir);
    write_file(path, text, limit); /* exactly 1 MiB: accepted */
    cr_expect_eq(prism_config_load_file(path, &cfg, err, sizeof err), PRISM_OK,
                 "%s", err);
    write_file(path, text, limit + 1); /* one more byte: refused */
    cr_expect_eq(prism_config_load_file(path, &cfg, err, sizeof err),
                 PRISM_ERR_IO);
    cr_expect(strstr(err, "big.yaml: the file is larger than 1 MiB") != NULL,
              "%s", err);
    free(text);
}

Test(config_files, errors_name_the_path) {
    char path[256], err[1024] = "", want[300];
    prism_config cfg;
    snprintf(path, sizeof path, "%s/bad.yaml", tmpdir);
    const char *text = BASE "prism:\n  high_dim: 63\n";
    write_file(path, text, strlen(text));
    cr_expect_eq(prism_config_load_file(path, &cfg, err, sizeof err),
                 PRISM_ERR_CONFIG);
    snprintf(want, sizeof want, "%s:8:13: prism.high_dim 63 is odd", path);
    cr_expect(!strncmp(err, want, strlen(want)), "%s", err);
}

/* ------------------------------------------------------------------------ */
/* prism check                                                               */
/* ------------------------------------------------------------------------ */

/* Runs `prism ARGS`, stdout into out and stderr into errtext; exit status. */
static int run_cli(const char *args, char *out, char *errtext, size_t size) {
    return cli_tu_run(out, size, errtext, size, "'%s' %s", PRISM_CLI_PATH, args);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

TestSuite(config_cli, .init = make_tmpdir, .fini = remove_tmpdir);

Test(config_cli, check_prints_the_resolved_config) {
    static char out[65536], err[65536];
    char path[300];
    cr_assert_eq(
        run_cli("check '" CONFIGS "smollm2-135m.yaml'", out, err, sizeof out),
        0, "stderr: %s", err);
    cr_expect_str_empty(err);
    cr_expect(strstr(out, "name: \"smollm2-135m\"\n") != NULL, "%s", out);
    cr_expect(strstr(out, "  high_dim: 32\n  low_dim: 48\n") != NULL, "%s",
              out);
    /* The printed config is itself a valid config with the same values. */
    snprintf(path, sizeof path, "%s/resolved.yaml", tmpdir);
    write_file(path, out, strlen(out));
    prism_config printed = load_file_ok(path);
    prism_config original = load_file_ok(CONFIGS "smollm2-135m.yaml");
    snprintf(printed.source, sizeof printed.source, "%s", original.source);
    expect_same_config(&original, &printed);
}

Test(config_cli, check_reports_an_invalid_config_in_one_line) {
    static char out[65536], err[65536];
    char path[300], args[400];
    snprintf(path, sizeof path, "%s/bad.yaml", tmpdir);
    const char *text = BASE "dtype: fp8\n";
    write_file(path, text, strlen(text));
    snprintf(args, sizeof args, "check '%s'", path);
    cr_expect_eq(run_cli(args, out, err, sizeof out), 1);
    cr_expect_str_empty(out);
    cr_expect_eq(count_lines(err), 1, "%s", err);
    cr_expect(strstr(err, "bad.yaml:7:8: dtype 'fp8' is not supported") != NULL,
              "%s", err);
    cr_expect_eq(run_cli("check /nonexistent.yaml", out, err, sizeof out), 1);
    cr_expect_eq(count_lines(err), 1, "%s", err);
    cr_expect(strstr(err, "/nonexistent.yaml: cannot open") != NULL, "%s", err);
}

Test(config_cli, check_usage) {
    static char out[65536], err[65536];
    cr_expect_eq(run_cli("check --help", out, err, sizeof out), 0);
    cr_expect(strstr(out, "usage: prism check") != NULL, "%s", out);
    cr_expect_eq(run_cli("check", out, err, sizeof out), 2);
    cr_expect(strstr(err, "prism check: ") != NULL, "%s", err);
    cr_expect_eq(run_cli("check a.yaml b.yaml", out, err, sizeof out), 2);
    cr_expect_eq(run_cli("check --frobnicate x.yaml", out, err, sizeof out), 2);
    cr_expect_eq(
        run_cli("check -q '" CONFIGS "gptj-6b.yaml'", out, err, sizeof out), 0,
        "%s", err);
    cr_expect_str_empty(out);
}
