/*
 * test_context_options.c - prism_context_create checks its options and
 * names the field that is wrong.
 *
 * A negative thread count or size, an unknown device kind or a device
 * ordinal the driver does not have used to be accepted and to fail later,
 * somewhere else, or never.  The ordinal is checked against a driver when
 * there is one: this machine may have none, so that test runs the suite's
 * own binary again with tests/fake_cuda's libcuda.so.1 on its library path
 * (the dynamic loader reads LD_LIBRARY_PATH only at start).
 */
#include "prism.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_log[4096];

static void record(void *user, prism_log_level level, const char *message) {
    (void)user;
    if (level == PRISM_LOG_ERROR)
        snprintf(g_log, sizeof g_log, "%s", message);
}

static prism_context_options options(void) {
    prism_context_options o;
    prism_context_options_init(&o);
    o.log = record;
    o.disable_disk_cache = true;
    g_log[0] = '\0';
    return o;
}

/* create fails with `want`, and the log and last_error(NULL) name field */
static void expect_rejected(const prism_context_options *o, prism_status want,
                            const char *field) {
    prism_context *ctx = (prism_context *)1;
    prism_status st = prism_context_create(o, &ctx);
    cr_assert_eq(st, want, "%s: got %s", field, prism_status_name(st));
    cr_assert_null(ctx);
    cr_assert(strstr(g_log, field), "the log must name %s: '%s'", field,
              g_log);
    cr_assert(strstr(prism_context_last_error(NULL), field), "%s",
              prism_context_last_error(NULL));
}

Test(context_options, negative_counts_and_sizes_are_rejected_by_name) {
    prism_context_options o = options();
    o.cpu_threads = -5;
    expect_rejected(&o, PRISM_ERR_INVALID_ARGUMENT, "options.cpu_threads = -5");
    o = options();
    o.cache_max_bytes = -1;
    expect_rejected(&o, PRISM_ERR_INVALID_ARGUMENT,
                    "options.cache_max_bytes = -1");
    o = options();
    o.compile_threads = -2;
    expect_rejected(&o, PRISM_ERR_INVALID_ARGUMENT,
                    "options.compile_threads = -2");
    o = options();
    o.device_ordinal = -1;
    expect_rejected(&o, PRISM_ERR_INVALID_ARGUMENT,
                    "options.device_ordinal = -1");
    o = options();
    o.device = (prism_device_kind)7;
    expect_rejected(&o, PRISM_ERR_INVALID_ARGUMENT, "options.device = 7");
}

Test(context_options, defaults_and_zeros_are_accepted) {
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(NULL, &ctx), PRISM_OK);
    prism_context_destroy(ctx);
    prism_context_options o = options();
    o.device = PRISM_DEVICE_CPU;
    o.cpu_threads = 3;
    o.device_ordinal = 5; /* unused by a CPU context */
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK, "%s", g_log);
    prism_context_destroy(ctx);
}

/* Without a driver the first GPU use reports it, cleanly. */
Test(context_options, a_missing_device_fails_the_first_plan_cleanly) {
    prism_context_options o = options();
    o.device_ordinal = 7;
    prism_context *ctx = NULL;
    prism_status st = prism_context_create(&o, &ctx);
    if (st == PRISM_ERR_NO_DEVICE) { /* a driver with fewer devices */
        cr_assert(strstr(g_log, "device_ordinal = 7"), "%s", g_log);
        return;
    }
    cr_assert_eq(st, PRISM_OK, "%s", g_log);
    prism_config cfg;
    prism_config_init(&cfg);
    prism_plan_limits limits = {1, 128, 128, false, false};
    prism_plan *plan = (prism_plan *)1;
    st = prism_plan_create(ctx, &cfg, &limits, &plan);
    cr_assert(st == PRISM_ERR_NO_DRIVER || st == PRISM_ERR_NO_DEVICE,
              "got %s: %s", prism_status_name(st),
              prism_context_last_error(ctx));
    cr_assert_null(plan);
    cr_assert_neq(prism_context_last_error(ctx)[0], '\0');
    prism_context_destroy(ctx);
}

#define FAKE_RUN "PRISM_TEST_FAKE_CUDA"

/* The checks that need a driver, run under the fake one (see the top). */
static void with_fake_driver(void) {
    prism_context_options o = options();
    prism_context *ctx = NULL;
    o.device_ordinal = 1;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK, "%s", g_log);
    prism_context_destroy(ctx);
    o.device_ordinal = 2;
    expect_rejected(&o, PRISM_ERR_NO_DEVICE, "options.device_ordinal = 2");
    cr_assert(strstr(g_log, "has 2 CUDA device(s)"), "%s", g_log);
    o = options();
    o.device_ordinal = 7;
    expect_rejected(&o, PRISM_ERR_NO_DEVICE, "options.device_ordinal = 7");
}

Test(context_options, an_ordinal_the_driver_does_not_have_is_rejected) {
    if (getenv(FAKE_RUN)) {
        with_fake_driver();
        return;
    }
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(n, 0);
    self[n] = '\0';
    /* BXFI_MAP is Criterion's own link to the test it runs; a nested run
     * that inherits it aborts */
    char cmd[4096], out[16384] = "";
    snprintf(cmd, sizeof cmd,
             "env -u BXFI_MAP LD_LIBRARY_PATH='%s' FAKE_CUDA_DEVICES=2 "
             FAKE_RUN "=1 '%s' "
             "--filter 'context_options/"
             "an_ordinal_the_driver_does_not_have_is_rejected' 2>&1",
             PRISM_FAKE_CUDA_DIR, self);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    int rc = pclose(p);
    cr_assert_eq(rc, 0, "the run under the fake driver failed:\n%s", out);
    cr_assert(strstr(out, "Tested: 1 | Passing: 1"), "%s", out);
}
