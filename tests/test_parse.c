/*
 * test_parse.c - base/parse.h: the one reader of counts, sizes and
 * switches, whether they come from a flag or an environment variable, and
 * the length check that keeps user paths from being cut short (the
 * context's cache directory and $PRISM_TUNE_DIR included).  Tables of
 * inputs with what each must give, so a new spelling is one line.
 */
#include "base/parse.h"
#include "cache_testutil.h"
#include "runtime/plan_tuning.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

TestSuite(parse);

typedef struct number_case {
    const char *text;
    bool ok;
    int64_t value;
} number_case;

Test(parse, counts_take_binary_suffixes) {
    const number_case cases[] = {
        {"0", true, 0},
        {"4096", true, 4096},
        {"8k", true, 8192},
        {"8K", true, 8192},
        {"128K", true, 131072},
        {"1M", true, 1 << 20},
        {"1m", true, 1 << 20},
        {"2G", true, INT64_C(2) << 30},
        {"", false, 0},
        {"k", false, 0},
        {"8x", false, 0},
        {"8kB", false, 0}, /* bytes only */
        {"8KiB", false, 0},
        {"-1", false, 0},
        {"+1", false, 0},
        {" 8", false, 0},
        {"8 ", false, 0},
        {"1.5k", false, 0},
        {"0x10", false, 0},
        {"8kk", false, 0},
        {"99999999999999999999", false, 0},
        {"9223372036854775807k", false, 0},
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(cases); i++) {
        int64_t v = -7;
        bool ok = prism_parse_count(cases[i].text, 0, INT64_MAX, &v);
        cr_assert_eq(ok, cases[i].ok, "'%s'", cases[i].text);
        cr_assert_eq(v, ok ? cases[i].value : -7, "'%s' gave %lld",
                     cases[i].text, (long long)v);
    }
    int64_t v = 0;
    cr_assert(prism_parse_count("1k", 1, 1024, &v) && v == 1024);
    cr_assert_not(prism_parse_count("1k", 1, 1023, &v), "above max");
    cr_assert_not(prism_parse_count("0", 1, 10, &v), "below min");
    cr_assert_not(prism_parse_count(NULL, 0, 10, &v));
}

Test(parse, sizes_take_the_same_suffixes_and_a_unit) {
    const number_case cases[] = {
        {"4096", true, 4096},
        {"4096B", true, 4096},
        {"100K", true, 102400},
        {"100k", true, 102400},
        {"100KB", true, 102400},
        {"100KiB", true, 102400},
        {"100kb", true, 102400},
        {"2M", true, 2 << 20},
        {"500MiB", true, INT64_C(500) << 20},
        {"1G", true, INT64_C(1) << 30},
        {"1GB", true, INT64_C(1) << 30},
        {"1Ki", false, 0},
        {"1KiBB", false, 0},
        {"1e9", false, 0},
        {"12abc", false, 0},
        {"-5", false, 0},
        {"lots", false, 0},
        {"", false, 0},
        {"B", false, 0},
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(cases); i++) {
        int64_t v = -7;
        bool ok = prism_parse_bytes(cases[i].text, 0, INT64_MAX, &v);
        cr_assert_eq(ok, cases[i].ok, "'%s'", cases[i].text);
        cr_assert_eq(v, ok ? cases[i].value : -7, "'%s' gave %lld",
                     cases[i].text, (long long)v);
    }
}

Test(parse, switches_are_case_insensitive) {
    const struct {
        const char *text;
        int want; /* 1 on, 0 off, -1 not a switch */
    } cases[] = {
        {"on", 1},    {"ON", 1},    {"On", 1},    {"1", 1},      {"true", 1},
        {"TRUE", 1},  {"yes", 1},   {"Yes", 1},   {"off", 0},    {"OFF", 0},
        {"Off", 0},   {"0", 0},     {"false", 0}, {"False", 0},  {"no", 0},
        {"NO", 0},    {"", -1},     {"2", -1},    {"onn", -1},   {"of", -1},
        {"y", -1},    {"t", -1},    {" on", -1},  {"on ", -1},   {"enable", -1},
    };
    for (size_t i = 0; i < PRISM_ARRAY_LEN(cases); i++) {
        bool v = cases[i].want != 1; /* the opposite of the answer */
        bool ok = prism_parse_bool(cases[i].text, &v);
        cr_assert_eq(ok, cases[i].want >= 0, "'%s'", cases[i].text);
        if (ok)
            cr_assert_eq(v, cases[i].want == 1, "'%s'", cases[i].text);
    }
}

Test(parse, environment_switches_name_the_variable_when_wrong) {
    char err[256];
    bool v;
    unsetenv("PRISM_TEST_SWITCH");
    cr_assert_eq(prism_env_bool("PRISM_TEST_SWITCH", true, &v, err, sizeof err),
                 PRISM_OK);
    cr_assert(v, "unset: the fallback");
    setenv("PRISM_TEST_SWITCH", "", 1);
    cr_assert_eq(
        prism_env_bool("PRISM_TEST_SWITCH", false, &v, err, sizeof err),
        PRISM_OK);
    cr_assert_not(v, "empty: the fallback");
    setenv("PRISM_TEST_SWITCH", "OFF", 1);
    cr_assert_eq(prism_env_bool("PRISM_TEST_SWITCH", true, &v, err, sizeof err),
                 PRISM_OK);
    cr_assert_not(v, "OFF is off");
    setenv("PRISM_TEST_SWITCH", "maybe", 1);
    cr_assert_eq(prism_env_bool("PRISM_TEST_SWITCH", true, &v, err, sizeof err),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_assert(v, "not a switch: the fallback");
    cr_assert(strstr(err, "PRISM_TEST_SWITCH='maybe'"), "%s", err);
    cr_assert(strstr(err, PRISM_BOOL_WORDS), "%s", err);
    unsetenv("PRISM_TEST_SWITCH");
}

Test(parse, environment_sizes_read_like_flags) {
    char err[256];
    int64_t v;
    setenv("PRISM_TEST_SIZE", "100K", 1);
    cr_assert_eq(prism_env_bytes("PRISM_TEST_SIZE", 5, &v, err, sizeof err),
                 PRISM_OK);
    cr_assert_eq(v, 102400);
    const char *bad[] = {"0", "-1", "1e9", "12abc", "100Q"};
    for (size_t i = 0; i < PRISM_ARRAY_LEN(bad); i++) {
        setenv("PRISM_TEST_SIZE", bad[i], 1);
        cr_assert_eq(prism_env_bytes("PRISM_TEST_SIZE", 5, &v, err, sizeof err),
                     PRISM_ERR_INVALID_ARGUMENT, "%s", bad[i]);
        cr_assert_eq(v, 5, "%s: the fallback", bad[i]);
        cr_assert(strstr(err, "PRISM_TEST_SIZE"), "%s", err);
    }
    unsetenv("PRISM_TEST_SIZE");
    cr_assert_eq(prism_env_bytes("PRISM_TEST_SIZE", 5, &v, err, sizeof err),
                 PRISM_OK);
    cr_assert_eq(v, 5);
}

/* A path of exactly `length` bytes under a fresh directory (malloc'd);
 * the directories on the way are made when `make` is set. */
static char *long_path(const char *root, size_t length, bool make) {
    char *p = malloc(length + 1);
    cr_assert_not_null(p);
    size_t n = (size_t)snprintf(p, length + 1, "%s", root);
    while (n < length) {
        size_t part = length - n - 1 < 200 ? length - n - 1 : 200;
        p[n++] = '/';
        memset(p + n, 'd', part);
        n += part;
        p[n] = '\0';
        if (make)
            cr_assert(mkdir(p, 0700) == 0 || part == 0, "mkdir %s", p);
    }
    return p;
}

Test(parse, long_paths_are_refused_never_cut_short) {
    char err[256];
    char *ok = long_path("/tmp", PRISM_PATH_MAX - 1, false);
    char *bad = long_path("/tmp", PRISM_PATH_MAX, false);
    cr_assert_eq(prism_check_path_length(ok, "config", err, sizeof err),
                 PRISM_OK);
    cr_assert_eq(prism_check_path_length(bad, "config", err, sizeof err),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "config path") && strstr(err, "1024 bytes long"),
              "%s", err);
    free(ok);
    free(bad);
}

/* A cache directory longer than PRISM_PATH_MAX works (the cache takes up
 * to 4 KiB); the context reports all of it, and $PRISM_TUNE_DIR that long
 * is refused with a warning rather than used cut short. */
Test(parse, context_paths_keep_their_full_length) {
    char *root = cache_tu_mkdtemp();
    char *dir = long_path(root, 1500, true);
    prism_context_options o;
    prism_context_options_init(&o);
    o.cache_dir = dir;
    o.cache_path = "";
    o.log_level = PRISM_LOG_ERROR;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    cr_assert_str_eq(prism_context_cache_dir(ctx), dir);

    char(*dirs)[PRISM_PATH_MAX] = malloc(PRISM_TUNE_MAX_DIRS * sizeof *dirs);
    cr_assert_not_null(dirs);
    setenv("PRISM_TUNE_DIR", dir, 1);
    cr_assert_geq(prism_plan_tuning_dirs(ctx, dirs), 1);
    cr_assert_str_eq(dirs[0], "", "no shortened tuning directory");
    unsetenv("PRISM_TUNE_DIR");
    free(dirs);
    prism_context_destroy(ctx);
    cache_tu_rm_rf(root);
    free(dir);
    free(root);
}
