/*
 * test_backend.c - plans reach their device through the backend table
 * (runtime/backend.h), and build what they need once.
 *
 *   - plan.c validates every call once and dispatches it through
 *     plan->backend: a counting backend defined here sees only the calls
 *     whose arguments passed, each once;
 *   - a CPU plan runs on prism_cpu_backend, a CUDA plan -- on the stand-in
 *     libcuda of tests/fake_cuda, which ctest puts on LD_LIBRARY_PATH --
 *     on prism_cuda_backend, with the launches each call enqueues
 *     (FAKE_CUDA_TRACE): the persistent sm_90a attention's schedule kernel
 *     included;
 *   - both lay out their workspace with the one shared function;
 *   - creating a plan builds each kernel spec once and validates the
 *     config once: this executable is linked with prism_spec_build,
 *     prism_config_validate and prism_config_check wrapped
 *     (-Wl,--wrap), so the calls are counted.
 * Paged K/V launches on CUDA plans: test_backend_paged.c.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "runtime/backend.h"
#include "runtime/cpu/cpu_backend.h"
#include "config/config_rules.h"
#include "test_backend_common.h"

/* ---- link-time counters ----------------------------------------------- */

static int spec_builds, validations;

prism_status __real_prism_spec_build(const prism_config *cfg, int index,
                                     prism_arch arch, prism_kernel_spec *spec,
                                     char *err, size_t err_size);
prism_status __wrap_prism_spec_build(const prism_config *cfg, int index,
                                     prism_arch arch, prism_kernel_spec *spec,
                                     char *err, size_t err_size) {
    spec_builds++;
    return __real_prism_spec_build(cfg, index, arch, spec, err, err_size);
}

prism_status __real_prism_config_validate(const prism_config *cfg, char *err,
                                          size_t err_size);
prism_status __wrap_prism_config_validate(const prism_config *cfg, char *err,
                                          size_t err_size) {
    validations++;
    return __real_prism_config_validate(cfg, err, err_size);
}

/* the checks called from other files (a call inside config_validate.c,
 * such as prism_config_validate's or prism_config_check_targets' own call
 * of prism_config_check, is not wrapped) */
bool __real_prism_config_check(const prism_config *cfg,
                               prism_config_problem *p);
bool __wrap_prism_config_check(const prism_config *cfg,
                               prism_config_problem *p) {
    validations++;
    return __real_prism_config_check(cfg, p);
}

/* the loader's check: every rule, for every target */
bool __real_prism_config_check_targets(const prism_config *cfg,
                                       prism_config_problem *p);
bool __wrap_prism_config_check_targets(const prism_config *cfg,
                                       prism_config_problem *p) {
    validations++;
    return __real_prism_config_check_targets(cfg, p);
}

static void reset_counts(void) { spec_builds = validations = 0; }

/* ---- the table ---------------------------------------------------------- */

ParameterizedTestParameters(backend, table_is_complete) {
    static int which[] = {0, 1};
    return cr_make_param_array(int, which, 2);
}

ParameterizedTest(int *which, backend, table_is_complete) {
    const prism_backend *be = *which ? &prism_cpu_backend : &prism_cuda_backend;
    cr_assert_str_eq(be->name, *which ? "cpu" : "cuda");
    cr_assert(be->create && be->destroy && be->workspace_regions &&
              be->workspace_alloc && be->workspace_free && be->estimate &&
              be->attention && be->prefill && be->density);
    cr_assert_gt(be->workspace_align, 0);
    cr_assert_eq(be->workspace_align & (be->workspace_align - 1), 0);
    cr_assert_gt(be->tensor_align, 0);
    cr_assert_gt(be->stride_multiple, 0);
}

/* ---- dispatch: a counting backend --------------------------------------- */

static int created, destroyed, estimates, attentions, prefills, densities;

static prism_status count_create(prism_plan *p) {
    created++;
    p->impl = &created;
    return PRISM_OK;
}
static void count_destroy(prism_plan *p) { destroyed += p->impl == &created; }
static void count_regions(const prism_plan *p, const prism_ws_shape *shape,
                          size_t bytes[PRISM_WS_REGIONS]) {
    (void)p, (void)shape;
    bytes[PRISM_WS_EST_SCRATCH] = 1000; /* a backend-only region */
}
static prism_status count_alloc(prism_plan *p, size_t n, void **out) {
    (void)p;
    *out = aligned_alloc(64, (n + 63) & ~(size_t)63);
    return *out ? PRISM_OK : PRISM_ERR_OUT_OF_MEMORY;
}
static void count_free(prism_plan *p, void *ws) {
    (void)p;
    free(ws);
}
static prism_status count_estimate(prism_plan *p, const prism_call *c) {
    cr_assert(c->ws == (uintptr_t)p->workspace);
    estimates++;
    return PRISM_OK;
}
static prism_status count_attention(prism_plan *p, const prism_call *c) {
    (void)p, (void)c;
    attentions++;
    return PRISM_OK;
}
static prism_status count_prefill(prism_plan *p, const prism_call *c) {
    (void)p;
    cr_assert_null(c->mask, "prefill without a mask keeps its own");
    prefills++;
    return PRISM_OK;
}
static prism_status count_density(prism_plan *p, double *d) {
    (void)p;
    densities++;
    *d = 0.5;
    return PRISM_OK;
}

static const prism_backend counting = {
    .name = "counting", .tensor_align = 16, .stride_multiple = 8,
    .workspace_align = 64, .create = count_create, .destroy = count_destroy,
    .workspace_regions = count_regions, .workspace_alloc = count_alloc,
    .workspace_free = count_free, .estimate = count_estimate,
    .attention = count_attention, .prefill = count_prefill,
    .density = count_density,
};

/* A plan on `counting`, made as plan.c makes one. */
static prism_plan *counting_plan(const prism_config *cfg) {
    prism_plan *p = calloc(1, sizeof *p);
    p->backend = &counting;
    p->cfg = *cfg;
    p->limits = (prism_plan_limits){2, 256, 512, false, false};
    cr_assert_eq(counting.create(p), PRISM_OK);
    p->workspace_size = prism_plan_workspace_size(p, NULL);
    cr_assert_eq(counting.workspace_alloc(p, p->workspace_size, &p->workspace),
                 PRISM_OK);
    return p;
}

Test(backend, calls_are_validated_once_then_dispatched) {
    prism_config cfg;
    prism_config_init(&cfg);
    prism_plan *p = counting_plan(&cfg);
    inputs in;
    make_inputs(&cfg, 2, 256, 512, &in);
    double density;
    cr_assert_eq(prism_plan_density(p, &density), PRISM_ERR_INVALID_ARGUMENT,
                 "no estimate yet: refused before the backend");
    prism_batch bad = in.b;
    bad.seqlen_q = 257;
    prism_tensor odd = in.q;
    odd.stride_s = 12; /* not a multiple of this backend's 8 */
    prism_block_mask wrong = in.mask;
    wrong.nk++;
    cr_assert_eq(prism_estimate(p, &bad, &in.q, &in.k, &in.mask, NULL, 0, NULL),
                 PRISM_ERR_BAD_SHAPE);
    cr_assert_eq(prism_estimate(p, &in.b, &odd, &in.k, &in.mask, NULL, 0, NULL),
                 PRISM_ERR_BAD_STRIDE);
    cr_assert_eq(prism_sparse_attention(p, &in.b, &in.q, &in.k, &in.v, &wrong,
                                        &in.o, NULL, NULL, 0, NULL),
                 PRISM_ERR_BAD_SHAPE);
    cr_assert_eq(prism_prefill(p, &in.b, &in.q, &in.k, &in.v, &in.o,
                               (float *)2, NULL, NULL, 0, NULL),
                 PRISM_ERR_MISALIGNED, "lse");
    cr_assert_eq(estimates + attentions + prefills, 0,
                 "nothing invalid reaches the backend");
    cr_assert_eq(prism_estimate(p, &in.b, &in.q, &in.k, &in.mask, NULL, 0, NULL),
                 PRISM_OK);
    cr_assert_eq(prism_sparse_attention(p, &in.b, &in.q, &in.k, &in.v,
                                        &in.mask, &in.o, NULL, NULL, 0, NULL),
                 PRISM_OK);
    cr_assert_eq(prism_prefill(p, &in.b, &in.q, &in.k, &in.v, &in.o, NULL,
                               NULL, NULL, 0, NULL),
                 PRISM_OK);
    cr_assert_eq(prism_plan_density(p, &density), PRISM_OK);
    cr_assert_float_eq(density, 0.5, 0);
    cr_assert(estimates == 1 && attentions == 1 && prefills == 1 &&
              densities == 1);
    /* a caller workspace: checked against the shared layout */
    size_t need = prism_plan_workspace_size(p, &in.b);
    void *ws = aligned_alloc(64, need);
    cr_assert_eq(prism_estimate(p, &in.b, &in.q, &in.k, &in.mask,
                                (char *)ws + 32, need, NULL),
                 PRISM_ERR_MISALIGNED);
    cr_assert_eq(prism_estimate(p, &in.b, &in.q, &in.k, &in.mask, ws, need - 1,
                                NULL),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_assert_eq(estimates, 1);
    free(ws);
    free_inputs(&in);
    prism_plan_destroy(p);
    cr_assert_eq(destroyed, 1, "the backend frees its own state");
}

/* ---- the shared workspace layout ---------------------------------------- */

typedef struct ws_shape {
    int batch, sq, sk;
} ws_shape;

ParameterizedTestParameters(backend, workspace_layout_is_shared) {
    static ws_shape shapes[] = {{1, 1, 1}, {1, 130, 900}, {3, 4096, 8192}};
    return cr_make_param_array(ws_shape, shapes, 3);
}

/* Regions in order, at the backend's alignment, apart from each other;
 * the shared ones the same size for every backend. */
ParameterizedTest(ws_shape *s, backend, workspace_layout_is_shared) {
    prism_config cfg;
    prism_config_init(&cfg);
    prism_plan *p = counting_plan(&cfg);
    prism_workspace a;
    prism_ws_shape shape = {s->batch, s->sq, s->sk, cfg.q_heads, cfg.kv_heads};
    prism_workspace_layout(p, &shape, &a);
    size_t end = 0;
    for (int r = 0; r < PRISM_WS_REGIONS; r++) {
        if (!a.bytes[r])
            continue;
        cr_assert_eq(a.at[r] % 64, 0, "region %d aligned", r);
        cr_assert_geq(a.at[r], end, "region %d after the one before", r);
        end = a.at[r] + a.bytes[r];
    }
    cr_assert_leq(end, a.total);
    cr_assert_eq(a.total % 64, 0);
    cr_assert_eq(a.bytes[PRISM_WS_EST_SCRATCH], 1000);
    size_t nq = (size_t)(s->sq + 127) / 128, nk = (size_t)(s->sk + 127) / 128;
    cr_assert_eq(a.bytes[PRISM_WS_POOLED_Q], s->batch * 32 * nq * 128 * 4);
    cr_assert_eq(a.bytes[PRISM_WS_INDICES], s->batch * 32 * nq * nk * 4);
    /* the public size is the layout's within the plan's limits, and 0 for
     * a batch beyond them */
    p->limits = (prism_plan_limits){s->batch, s->sq, s->sk, false, false};
    prism_batch b = {.batch = s->batch, .seqlen_q = s->sq, .seqlen_k = s->sk};
    cr_assert_eq(prism_plan_workspace_size(p, &b), a.total);
    b.batch = s->batch + 1;
    cr_assert_eq(prism_plan_workspace_size(p, &b), 0);
    prism_plan_destroy(p);
}

/* ---- the CPU backend ---------------------------------------------------- */

Test(backend, cpu_plan_runs_on_the_cpu_table) {
    prism_context_options o;
    prism_context_options_init(&o);
    o.device = PRISM_DEVICE_CPU;
    o.cpu_threads = 2;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    char path[512];
    config_path("smollm2-135m.yaml", path, sizeof path);
    prism_plan_limits lim = {1, 256, 256, false, false};
    prism_plan *plan = NULL;
    reset_counts();
    prism_status st = prism_plan_create_from_file(ctx, path, &lim, &plan);
    if (st == PRISM_ERR_UNSUPPORTED)
        cr_skip_test("%s", prism_context_last_error(ctx));
    cr_assert_eq(st, PRISM_OK, "%s", prism_context_last_error(ctx));
    cr_assert_eq(validations, 1, "validated once, by the loader");
    cr_assert_eq(plan->backend, &prism_cpu_backend);
    cr_assert_not_null(prism_cpu_plan_of(plan));
    cr_assert_eq(prism_cuda_plan_device(plan), -1);
    cr_assert_eq(prism_plan_arch(plan), PRISM_ARCH_COUNT_);
    inputs in;
    make_inputs(&plan->cfg, 1, 256, 256, &in);
    cr_assert_eq(prism_prefill(plan, &in.b, &in.q, &in.k, &in.v, &in.o, NULL,
                               &in.mask, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    double density = -1;
    cr_assert_eq(prism_plan_density(plan, &density), PRISM_OK);
    cr_assert(density > 0 && density <= 1, "%g", density);
    free_inputs(&in);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
}

/* ---- the CUDA backend, on tests/fake_cuda ------------------------------ */

typedef struct fake_case {
    char config[32];
    int grid_rule;  /* the attention's */
    int attention_launches;
} fake_case;

ParameterizedTestParameters(backend, cuda_plan_runs_on_the_cuda_table) {
    static fake_case cases[] = {
        /* block_size 64: the mma.sync kernel, one launch */
        {"smollm2-135m.yaml", PRISM_GRID_QUERY_TILES, 1},
        /* sm_90a wgmma: the schedule kernel, then the persistent one */
        {"llama-3.1-8b.yaml", PRISM_GRID_PERSISTENT, 2},
    };
    return cr_make_param_array(fake_case, cases, 2);
}

ParameterizedTest(fake_case *fc, backend, cuda_plan_runs_on_the_cuda_table,
                  .init = fake_setup, .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    char path[512];
    config_path(fc->config, path, sizeof path);
    prism_plan_limits lim = {2, 512, 1024, false, false};
    prism_plan *plan = NULL;
    reset_counts();
    cr_assert_eq(prism_plan_create_from_file(ctx, path, &lim, &plan), PRISM_OK,
                 "%s", prism_context_last_error(ctx));
    cr_assert_eq(validations, 1, "validated once, by the loader");
    cr_assert_eq(spec_builds, prism_kernel_count(), "each spec built once");
    cr_assert_eq(plan->backend, &prism_cuda_backend);
    cr_assert_eq(prism_plan_arch(plan), PRISM_ARCH_SM90A); /* the fake's 9.0 */
    cr_assert_eq(prism_cuda_plan_device(plan), 0);
    cr_assert_null(prism_cpu_plan_of(plan));
    const cuda_plan *g = cuda_of(plan);
    cr_assert_eq((int)g->kernels[PRISM_KERNEL_ATTENTION].shape.grid,
                 fc->grid_rule);
    cr_assert_eq(g->kernels[PRISM_KERNEL_ATTENTION].second != NULL,
                 fc->grid_rule == PRISM_GRID_PERSISTENT);

    inputs in;
    make_inputs(&plan->cfg, 2, 512, 1024, &in);
    setenv("FAKE_CUDA_TRACE", trace_path, 1);
    int launches, memsets;
    take_trace(&launches, &memsets);
    cr_assert_eq(prism_estimate(plan, &in.b, &in.q, &in.k, &in.mask, NULL, 0,
                                NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    take_trace(&launches, &memsets);
    cr_assert(launches == 2 && memsets == 1, "pool_stats, estimate: %d, %d",
              launches, memsets);
    cr_assert_eq(prism_sparse_attention(plan, &in.b, &in.q, &in.k, &in.v,
                                        &in.mask, &in.o, NULL, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    take_trace(&launches, &memsets);
    cr_assert_eq(launches, fc->attention_launches);
    cr_assert_eq(prism_prefill(plan, &in.b, &in.q, &in.k, &in.v, &in.o, NULL,
                               NULL, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    take_trace(&launches, &memsets);
    cr_assert_eq(launches, 2 + fc->attention_launches);
    double density = -1;
    cr_assert_eq(prism_plan_density(plan, &density), PRISM_OK);
    cr_assert_float_eq(density, 0.0, 0, "the fake's kernels count nothing");
    unsetenv("FAKE_CUDA_TRACE");
    free_inputs(&in);
    prism_plan_destroy(plan);

    /* the same from a config in memory: one validation, at creation */
    prism_config cfg = shipped_config(fc->config);
    reset_counts();
    cr_assert_eq(prism_plan_create(ctx, &cfg, &lim, &plan), PRISM_OK);
    cr_assert_eq(validations, 1);
    cr_assert_eq(spec_builds, prism_kernel_count());
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
}

/* Run-time head counts reach the grids: a plan of a 32 / 8 head config
 * launched for a shard of 4 / 1 heads (prism_params) sizes every grid by
 * the shard, and bad params launch nothing. */
Test(backend, cuda_grids_follow_the_launch_heads, .init = fake_setup,
     .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    static const char *const configs[] = {"smollm2-135m.yaml",
                                          "llama-3.1-8b.yaml"};
    for (int i = 0; i < 2; i++) {
        prism_config cfg = shipped_config(configs[i]);
        prism_plan_limits lim = {2, 512, 1024, false, false};
        prism_plan *plan = NULL;
        cr_assert_eq(prism_plan_create(ctx, &cfg, &lim, &plan), PRISM_OK,
                     "%s", prism_context_last_error(ctx));
        prism_params prm;
        prism_params_init_from_config(&cfg, &prm);
        prm.q_heads = 4;
        prm.kv_heads = 1;
        prm.threshold_high = 0.9;
        prm.softmax_scale = 0.1;
        prism_config shard = cfg;
        shard.q_heads = 4;
        shard.kv_heads = 1;
        inputs in;
        make_inputs(&shard, 2, 512, 1024, &in);
        in.b.params = &prm;
        int bs = cfg.block_size, nq = 512 / bs, nk = 1024 / bs;
        setenv("FAKE_CUDA_TRACE", trace_path, 1);
        setenv("FAKE_CUDA_GRIDS", "1", 1);
        unsigned g[4][3];
        take_grids(g, 4);
        cr_assert_eq(prism_estimate(plan, &in.b, &in.q, &in.k, &in.mask, NULL,
                                    0, NULL),
                     PRISM_OK, "%s", prism_plan_last_error(plan));
        cr_assert_eq(take_grids(g, 4), 2);
        cr_expect(g[0][0] == (unsigned)nk && g[0][1] == 5 && g[0][2] == 2,
                  "%s pool_stats grid %u %u %u", configs[i], g[0][0], g[0][1],
                  g[0][2]);
        /* 4 query heads a KV head: 4 nq rows per (sequence, KV head), at
         * most 8 a CTA */
        unsigned rows = 4u * (unsigned)nq, est = 0;
        for (unsigned r = 1; r <= 8; r *= 2)
            if (g[1][0] == (rows + r - 1) / r * 2u)
                est = r;
        cr_expect(est > 0 && g[1][1] == 1, "%s estimate grid %u", configs[i],
                  g[1][0]);
        cr_assert_eq(prism_sparse_attention(plan, &in.b, &in.q, &in.k, &in.v,
                                            &in.mask, &in.o, NULL, NULL, 0,
                                            NULL),
                     PRISM_OK, "%s", prism_plan_last_error(plan));
        int n = take_grids(g, 4);
        const prism_launch_shape *l =
            &cuda_of(plan)->kernels[PRISM_KERNEL_ATTENTION].shape;
        unsigned tiles = (unsigned)((512 + l->tile_m - 1) / l->tile_m);
        if (l->grid == PRISM_GRID_PERSISTENT)
            cr_expect(n == 2 && g[1][0] <= tiles * 4 * 2 * 16,
                      "%s persistent grid %u", configs[i], g[1][0]);
        else
            cr_expect(n == 1 && g[0][0] == tiles && g[0][1] == 4 &&
                          g[0][2] == 2,
                      "%s attention grid %u %u %u", configs[i], g[0][0],
                      g[0][1], g[0][2]);
        prm.kv_heads = 3; /* 4 % 3 != 0 */
        cr_expect_eq(prism_prefill(plan, &in.b, &in.q, &in.k, &in.v, &in.o,
                                   NULL, NULL, NULL, 0, NULL),
                     PRISM_ERR_INVALID_ARGUMENT);
        cr_expect(strstr(prism_plan_last_error(plan), "params.q_heads"), "%s",
                  prism_plan_last_error(plan));
        cr_expect_eq(take_grids(g, 4), 0, "nothing launched");
        unsetenv("FAKE_CUDA_GRIDS");
        unsetenv("FAKE_CUDA_TRACE");
        free_inputs(&in);
        prism_plan_destroy(plan);
    }
    prism_context_destroy(ctx);
}
