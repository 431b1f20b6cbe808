/*
 * test_plan_async.c - plans made on a background thread
 * (prism_plan_create_async, prism_plan_wait), on the stand-in libcuda of
 * tests/fake_cuda, which ctest puts on LD_LIBRARY_PATH; kernels compile
 * through NVRTC for real.
 *
 * What a host relies on: the call returns before the compiles end; the
 * plan is the one prism_plan_create makes; a plan made meanwhile on
 * another thread shares the compiles instead of repeating them; errors
 * of the arguments come back at once and errors of the creation from
 * prism_plan_wait, with their message.
 */
#include <criterion/criterion.h>

#include "base/cuda_driver.h"
#include "fake_testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64];

static void setup(void) {
    strcpy(g_dir, "/tmp/prism-test-async-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    setenv("PRISM_TUNE", "off", 1);
    setenv("FAKE_CUDA_CC", "8.0", 1);
    unsetenv("PRISM_JIT");
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
    unsetenv("FAKE_CUDA_CC");
}

static prism_context *fake_context(bool jit) {
    skip_unless_fake_driver();
    prism_context_options o;
    prism_context_options_init(&o);
    o.cache_dir = g_dir;
    o.disable_jit = !jit;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    return ctx;
}

static const prism_plan_limits limits = {1, 256, 256, false, false};

typedef struct sync_plan {
    prism_context *ctx;
    prism_config cfg;
    prism_status status;
    prism_plan *plan;
} sync_plan;

static void *make_sync(void *arg) {
    sync_plan *s = arg;
    s->status = prism_plan_create(s->ctx, &s->cfg, &limits, &s->plan);
    return NULL;
}

/* Started early, the plan compiles while the host does other work; a
 * plan made at the same time on another thread gets the same kernels
 * without compiling them again. */
Test(plan_async, overlaps_and_shares_its_compiles, .init = setup,
     .fini = teardown, .timeout = 600) {
    prism_context *ctx = fake_context(true);
    prism_config cfg = shipped_config("smollm2-135m.yaml");
    prism_plan_pending *pending = NULL;
    cr_assert_eq(prism_plan_create_async(ctx, &cfg, &limits, &pending),
                 PRISM_OK, "%s", prism_context_last_error(ctx));
    cr_assert_not_null(pending);
    cr_assert_not(prism_plan_pending_ready(pending),
                  "the call returns before NVRTC has compiled anything");

    sync_plan other = {.ctx = ctx, .cfg = cfg};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, make_sync, &other), 0);
    for (int i = 0; i < 6000 && !prism_plan_pending_ready(pending); i++)
        usleep(50 * 1000);
    cr_assert(prism_plan_pending_ready(pending));
    prism_plan *plan = NULL;
    cr_assert_eq(prism_plan_wait(pending, &plan), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    cr_assert_not_null(plan);
    cr_assert_eq(prism_plan_arch(plan), PRISM_ARCH_SM80);
    cr_assert_str_eq(prism_plan_config(plan)->name, cfg.name);
    pthread_join(t, NULL);
    cr_assert_eq(other.status, PRISM_OK, "%s", prism_context_last_error(ctx));

    prism_counters c;
    cr_assert_eq(prism_context_counters(ctx, &c), PRISM_OK);
    cr_assert_eq(c.compiles, (uint64_t)prism_kernel_count(),
                 "each kernel compiled once for both plans: %llu",
                 (unsigned long long)c.compiles);
    prism_plan_destroy(plan);
    prism_plan_destroy(other.plan);
    prism_context_destroy(ctx);
}

/* Without a plan to take (out NULL) it is a warm-up: the kernels stay in
 * the cache and the next plan compiles nothing. */
Test(plan_async, warm_up_leaves_the_kernels_in_the_cache, .init = setup,
     .fini = teardown, .timeout = 600) {
    prism_context *ctx = fake_context(true);
    prism_config cfg = shipped_config("smollm2-135m.yaml");
    prism_plan_pending *pending = NULL;
    cr_assert_eq(prism_plan_create_async(ctx, &cfg, &limits, &pending),
                 PRISM_OK);
    cr_assert_eq(prism_plan_wait(pending, NULL), PRISM_OK);
    prism_counters before, after;
    prism_context_counters(ctx, &before);
    prism_plan *plan = NULL;
    cr_assert_eq(prism_plan_create(ctx, &cfg, &limits, &plan), PRISM_OK);
    prism_context_counters(ctx, &after);
    cr_assert_eq(after.compiles, before.compiles);
    cr_assert_gt(after.memory_hits, before.memory_hits);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
}

Test(plan_async, errors_come_back_at_once_or_from_the_wait, .init = setup,
     .fini = teardown, .timeout = 300) {
    prism_context *ctx = fake_context(false);
    prism_config cfg = shipped_config("smollm2-135m.yaml");
    prism_plan_pending *pending = (prism_plan_pending *)&cfg;
    cr_assert_eq(prism_plan_create_async(ctx, &cfg, NULL, &pending),
                 PRISM_ERR_NULL_POINTER);
    cr_assert_null(pending);
    prism_config bad = cfg;
    bad.head_dim = 3;
    cr_assert_eq(prism_plan_create_async(ctx, &bad, &limits, &pending),
                 PRISM_ERR_CONFIG);
    cr_assert_null(pending);
    cr_assert_neq(prism_context_last_error(ctx)[0], '\0');

    /* JIT off and an empty cache: the creation itself fails */
    cr_assert_eq(prism_plan_create_async(ctx, &cfg, &limits, &pending),
                 PRISM_OK);
    prism_plan *plan = (prism_plan *)&cfg;
    cr_assert_eq(prism_plan_wait(pending, &plan), PRISM_ERR_CACHE_MISS);
    cr_assert_null(plan);
    cr_assert(strstr(prism_context_last_error(ctx), "sm_80") ||
                  strstr(prism_context_last_error(ctx), "cache"),
              "%s", prism_context_last_error(ctx));
    cr_assert_eq(prism_plan_wait(NULL, &plan), PRISM_ERR_NULL_POINTER);
    cr_assert_not(prism_plan_pending_ready(NULL));
    prism_context_destroy(ctx);
}
