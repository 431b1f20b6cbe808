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
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "runtime/backend.h"
#include "fake_testutil.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cuda/cuda_backend.h"
#include "config/config_rules.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- inputs ------------------------------------------------------------- */

typedef struct inputs {
    prism_batch b;
    prism_tensor q, k, v, o;
    int32_t *counts, *indices;
    prism_block_mask mask;
    void *mem[6];
} inputs;

/* Zeroed BHSD tensors (16-byte aligned: device rules) and a mask. */
static void make_inputs(const prism_config *c, int batch, int sq, int sk,
                        inputs *in) {
    memset(in, 0, sizeof *in);
    in->b = (prism_batch){.dtype = c->dtype, .batch = batch, .seqlen_q = sq,
                          .seqlen_k = sk};
    int64_t d = c->head_dim;
    size_t qb = (size_t)batch * c->q_heads * sq * d * 2;
    size_t kb = (size_t)batch * c->kv_heads * sk * d * 2;
    size_t sizes[4] = {qb, kb, kb, qb};
    prism_tensor *t[4] = {&in->q, &in->k, &in->v, &in->o};
    for (int i = 0; i < 4; i++) {
        bool is_q = i == 0 || i == 3;
        int64_t s = is_q ? sq : sk, h = is_q ? c->q_heads : c->kv_heads;
        in->mem[i] = aligned_alloc(256, (sizes[i] + 255) & ~(size_t)255);
        cr_assert_not_null(in->mem[i]);
        memset(in->mem[i], 0, sizes[i]);
        *t[i] = (prism_tensor){in->mem[i], h * s * d, s * d, d};
    }
    int nq = (sq + c->block_size - 1) / c->block_size;
    int nk = (sk + c->block_size - 1) / c->block_size;
    size_t rows = (size_t)batch * c->q_heads * nq;
    in->mem[4] = in->counts = calloc(rows, sizeof(int32_t));
    in->mem[5] = in->indices = calloc(rows * nk, sizeof(int32_t));
    in->mask = (prism_block_mask){in->counts, in->indices, nq, nk};
}

static void free_inputs(inputs *in) {
    for (int i = 0; i < 6; i++)
        free(in->mem[i]);
}

static void config_path(const char *name, char *path, size_t size) {
    snprintf(path, size, "%s/configs/%s", PRISM_SOURCE_DIR, name);
}

static prism_config load(const char *name) {
    char path[512], err[512];
    prism_config cfg;
    config_path(name, path, sizeof path);
    cr_assert_eq(prism_config_load_file(path, &cfg, err, sizeof err), PRISM_OK,
                 "%s", err);
    return cfg;
}

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

/* ---- the CUDA backend, on tests/fake_cuda --------------------------------- */

static char cache_dir[64], trace_path[96];

static void fake_setup(void) {
    strcpy(cache_dir, "/tmp/prism-test-backend-XXXXXX");
    cr_assert_not_null(mkdtemp(cache_dir));
    snprintf(trace_path, sizeof trace_path, "%s/trace", cache_dir);
    setenv("PRISM_TUNE", "off", 1); /* no tuning database lookups */
}

static void fake_teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
    cr_assert_eq(system(cmd), 0);
}

/* A CUDA context on the stand-in driver; skips anywhere else. */
static prism_context *fake_context(void) {
    skip_unless_fake_driver();
    prism_context_options o;
    prism_context_options_init(&o);
    o.cache_dir = cache_dir;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    return ctx;
}

/* The stream operations enqueued since the last call (fake_cuda's trace). */
static void take_trace(int *launches, int *memsets) {
    *launches = *memsets = 0;
    FILE *f = fopen(trace_path, "r");
    char line[128];
    while (f && fgets(line, sizeof line, f)) {
        *launches += !strncmp(line, "launch", 6);
        *memsets += !strncmp(line, "memset", 6);
    }
    if (f)
        fclose(f);
    unlink(trace_path);
}

/* The grids of the launches since the last call ("grid X Y Z" lines of
 * the trace with FAKE_CUDA_GRIDS), at most max of them; returns how many. */
static int take_grids(unsigned grids[][3], int max) {
    int n = 0;
    FILE *f = fopen(trace_path, "r");
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (n < max && sscanf(line, "grid %u %u %u", &grids[n][0],
                              &grids[n][1], &grids[n][2]) == 3)
            n++;
    if (f)
        fclose(f);
    unlink(trace_path);
    return n;
}

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
    prism_config cfg = load(fc->config);
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
        prism_config cfg = load(configs[i]);
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

/* The kernels launched since the last call (the names of the trace's grid
 * lines), space-separated into names. */
static void take_names(char *names, size_t size) {
    names[0] = 0;
    FILE *f = fopen(trace_path, "r");
    char line[160], name[96];
    unsigned x, y, z;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "grid %u %u %u %95s", &x, &y, &z, name) == 4 &&
            strlen(names) + strlen(name) + 2 < size) {
            strcat(names, name);
            strcat(names, " ");
        }
    if (f)
        fclose(f);
    unlink(trace_path);
}

/* NVRTC compiles this context has run. */
static uint64_t compiles_of(const prism_context *ctx) {
    prism_counters c;
    cr_assert_eq(prism_context_counters(ctx, &c), PRISM_OK);
    return c.compiles;
}

/* A paged batch (prism_paged_kv) on CUDA plans runs the paged entry
 * points of both attention kernels (mma.sync for smollm2's block size 64,
 * the persistent sm_90a kernel for llama) with the schedule kernel
 * unchanged; its fields are checked, a device table's entries are not.
 * The paged entry points are programs of their own: a plan compiles none
 * of them, and its first paged launch compiles both (pool_stats and
 * attention), once. */
Test(backend, cuda_paged_batches_launch_the_paged_kernels, .init = fake_setup,
     .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    static const char *const configs[] = {"smollm2-135m.yaml",
                                          "llama-3.1-8b.yaml"};
    for (int i = 0; i < 2; i++) {
        prism_config cfg = load(configs[i]);
        prism_plan_limits lim = {2, 256, 1024, false, false};
        prism_plan *plan = NULL;
        uint64_t before = compiles_of(ctx);
        cr_assert_eq(prism_plan_create(ctx, &cfg, &lim, &plan), PRISM_OK,
                     "%s", prism_context_last_error(ctx));
        cr_assert_eq(compiles_of(ctx) - before, (uint64_t)prism_kernel_count(),
                     "%s: the plain programs alone", configs[i]);
        cr_assert_not(atomic_load(&cuda_of(plan)->paged_ready));
        inputs in;
        make_inputs(&cfg, 2, 256, 1024, &in); /* k, v: 2 x 1024 tokens */
        before = compiles_of(ctx);
        cr_assert_eq(prism_prefill(plan, &in.b, &in.q, &in.k, &in.v, &in.o,
                                   NULL, NULL, NULL, 0, NULL),
                     PRISM_OK, "%s", prism_plan_last_error(plan));
        cr_assert_eq(compiles_of(ctx), before, "a contiguous launch");
        cr_assert_null(cuda_of(plan)->kernels[PRISM_KERNEL_ATTENTION].paged);
        int ps = 2 * cfg.block_size, per_seq = 1024 / ps;
        int32_t table[64];
        for (int p = 0; p < 2 * per_seq; p++)
            table[p] = 1000 + p; /* out of range: a device table's
                                    entries are the caller's promise */
        prism_paged_kv pg = {table, per_seq, ps, 2 * per_seq, NULL};
        /* NHD pools over the same memory: 2 x per_seq pages */
        int64_t d = cfg.head_dim, hkv = cfg.kv_heads;
        prism_tensor kp = {in.k.data, ps * hkv * d, d, hkv * d}, vp = kp;
        vp.data = in.v.data;
        in.b.paged = &pg;
        setenv("FAKE_CUDA_TRACE", trace_path, 1);
        setenv("FAKE_CUDA_GRIDS", "1", 1);
        char names[512];
        take_names(names, sizeof names);
        for (int r = 0; r < 2; r++)
            cr_assert_eq(prism_prefill(plan, &in.b, &in.q, &kp, &vp, &in.o,
                                       NULL, NULL, NULL, 0, NULL),
                         PRISM_OK, "%s", prism_plan_last_error(plan));
        cr_assert_eq(compiles_of(ctx) - before, 2,
                     "%s: pool_stats_paged and attention_paged, once",
                     configs[i]);
        cr_assert(atomic_load(&cuda_of(plan)->paged_ready));
        take_names(names, sizeof names);
        char *second = strstr(names, "prism_pool_stats_paged ");
        cr_assert(second && (second = strstr(second + 1,
                                             "prism_pool_stats_paged ")),
                  "%s", names);
        *second = '\0'; /* the first launch's names */
        bool persistent = cuda_of(plan)
                              ->kernels[PRISM_KERNEL_ATTENTION]
                              .shape.grid == PRISM_GRID_PERSISTENT;
        cr_expect_str_eq(names,
                         persistent
                             ? "prism_pool_stats_paged prism_estimate "
                               "prism_attention_schedule "
                               "prism_attention_paged "
                             : "prism_pool_stats_paged prism_estimate "
                               "prism_attention_paged ",
                         "%s", configs[i]);
        pg.page_size = cfg.block_size + 8;
        cr_expect_eq(prism_prefill(plan, &in.b, &in.q, &kp, &vp, &in.o, NULL,
                                   NULL, NULL, 0, NULL),
                     PRISM_ERR_INVALID_ARGUMENT);
        cr_expect(strstr(prism_plan_last_error(plan), "paged.page_size"),
                  "%s", prism_plan_last_error(plan));
        pg.page_size = ps;
        pg.max_pages = per_seq - 1; /* short of seqlen_k */
        cr_expect_eq(prism_estimate(plan, &in.b, &in.q, &kp, &in.mask, NULL,
                                    0, NULL),
                     PRISM_ERR_BAD_SHAPE);
        take_names(names, sizeof names);
        cr_expect_str_eq(names, "", "nothing launched");
        unsetenv("FAKE_CUDA_GRIDS");
        unsetenv("FAKE_CUDA_TRACE");
        free_inputs(&in);
        prism_plan_destroy(plan);
    }
    prism_context_destroy(ctx);
}

/* A plan made with limits.paged gets its paged programs at creation, so
 * that prism_plan_create_async overlaps them too: its first paged launch
 * compiles nothing, and a second plan of the same config finds all of
 * them in the cache. */
Test(backend, cuda_plan_with_paged_limits_compiles_them_at_creation,
     .init = fake_setup, .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    prism_config cfg = load("smollm2-135m.yaml");
    prism_plan_limits lim = {1, 256, 1024, false, true};
    prism_plan *plan = NULL;
    uint64_t before = compiles_of(ctx);
    cr_assert_eq(prism_plan_create(ctx, &cfg, &lim, &plan), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    cr_assert_eq(compiles_of(ctx) - before,
                 (uint64_t)prism_kernel_count() + 2,
                 "the plain programs and pool_stats_paged, attention_paged");
    cr_assert(atomic_load(&cuda_of(plan)->paged_ready));
    cr_assert_not_null(cuda_of(plan)->kernels[PRISM_KERNEL_ATTENTION].paged);
    inputs in;
    make_inputs(&cfg, 1, 256, 1024, &in);
    int ps = 2 * cfg.block_size, pages = 1024 / ps;
    int32_t table[16];
    for (int p = 0; p < pages; p++)
        table[p] = pages - 1 - p;
    prism_paged_kv pg = {table, pages, ps, pages, NULL};
    int64_t d = cfg.head_dim, hkv = cfg.kv_heads;
    prism_tensor kp = {in.k.data, ps * hkv * d, d, hkv * d}, vp = kp;
    vp.data = in.v.data;
    in.b.paged = &pg;
    before = compiles_of(ctx);
    cr_assert_eq(prism_prefill(plan, &in.b, &in.q, &kp, &vp, &in.o, NULL,
                               NULL, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    cr_assert_eq(compiles_of(ctx), before, "the first paged launch");
    free_inputs(&in);
    prism_plan_destroy(plan);
    /* the same plan again: every program from the cache */
    before = compiles_of(ctx);
    cr_assert_eq(prism_plan_create(ctx, &cfg, &lim, &plan), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    cr_assert_eq(compiles_of(ctx), before);
    cr_assert(atomic_load(&cuda_of(plan)->paged_ready));
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
}

static void *load_paged(void *plan) {
    return (void *)(intptr_t)prism_cuda_load_paged(plan);
}

/* Threads launching a plan's first paged batches at once: one gets the
 * paged programs, compiling each once, the others wait for them. */
Test(backend, cuda_paged_programs_load_once_across_threads,
     .init = fake_setup, .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    prism_config cfg = load("smollm2-135m.yaml");
    prism_plan_limits lim = {1, 256, 256, true, false};
    prism_plan *plan = NULL;
    cr_assert_eq(prism_plan_create(ctx, &cfg, &lim, &plan), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    uint64_t before = compiles_of(ctx);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, load_paged, plan), 0);
    for (int i = 0; i < 4; i++) {
        void *st;
        pthread_join(t[i], &st);
        cr_expect_eq((intptr_t)st, PRISM_OK, "%s",
                     prism_plan_last_error(plan));
    }
    cr_assert_eq(compiles_of(ctx) - before, 2);
    cr_assert_not_null(cuda_of(plan)->kernels[PRISM_KERNEL_POOL_STATS].paged);
    cr_assert_not_null(cuda_of(plan)->kernels[PRISM_KERNEL_ATTENTION].paged);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
}

/* The stream operations since the last call, as take_grids: the pool
 * launch's grid (the first "grid" line) and the bytes of every memset. */
static void take_pool_launch(unsigned grid[3], size_t *memset_bytes,
                             int *memsets) {
    grid[0] = grid[1] = grid[2] = 0;
    *memset_bytes = 0;
    *memsets = 0;
    FILE *f = fopen(trace_path, "r");
    char line[160];
    bool first = true;
    size_t n;
    while (f && fgets(line, sizeof line, f)) {
        if (first && sscanf(line, "grid %u %u %u", &grid[0], &grid[1],
                            &grid[2]) == 3)
            first = false;
        if (sscanf(line, "memset %zu", &n) == 1) {
            *memset_bytes += n;
            (*memsets)++;
        }
    }
    if (f)
        fclose(f);
    unlink(trace_path);
}

/* With a pooled-key cache the pooling launch of a chunk is sized by the
 * chunk (gen/templates/pool_stats_params.h): a two-chunk prefill's second
 * chunk, 3 blocks over a prefix of 40, gets a CTA per block from the
 * prefix on and a sweep CTA per 32 prefix blocks -- 3 + 2, not a CTA per
 * key block of the context as without the cache (43).  A chunk that does
 * not start on a block boundary counts the block it starts in as its own.
 * Each estimate clears only the energy sums, whose size does not depend on
 * the context. */
Test(backend, cuda_pooled_key_cache_sizes_pooling_by_the_chunk,
     .init = fake_setup, .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    static const char *const configs[] = {"smollm2-135m.yaml",
                                          "llama-3.1-8b.yaml"};
    for (int i = 0; i < 2; i++) {
        prism_config cfg = load(configs[i]);
        int bs = cfg.block_size, prefix = 40 * bs, chunk = 3 * bs;
        int sk = prefix + chunk, ps = 2 * bs, pages = (sk + ps - 1) / ps;
        prism_plan_limits lim = {1, prefix, sk, false, false};
        prism_plan *plan = NULL;
        cr_assert_eq(prism_plan_create(ctx, &cfg, &lim, &plan), PRISM_OK,
                     "%s", prism_context_last_error(ctx));
        inputs in;
        make_inputs(&cfg, 1, prefix, sk, &in);
        int32_t table[64];
        for (int p = 0; p < pages; p++)
            table[p] = p;
        size_t cache_bytes =
            prism_paged_pooled_bytes(&cfg, pages, ps, cfg.kv_heads);
        float *cache = aligned_alloc(256, (cache_bytes + 255) & ~(size_t)255);
        cr_assert_not_null(cache);
        memset(cache, 0, cache_bytes);
        int64_t d = cfg.head_dim, hkv = cfg.kv_heads;
        prism_tensor kp = {in.k.data, ps * hkv * d, d, hkv * d}, vp = kp;
        vp.data = in.v.data;
        unsigned hq_hkv = (unsigned)(cfg.q_heads + cfg.kv_heads);
        setenv("FAKE_CUDA_TRACE", trace_path, 1);
        setenv("FAKE_CUDA_GRIDS", "1", 1);
        unsigned g[3];
        size_t bytes[2];
        int memsets;
        take_pool_launch(g, &bytes[0], &memsets);
        for (int with = 0; with < 2; with++) {
            prism_paged_kv pg = {table, pages, ps, pages, with ? cache : NULL};
            prism_batch b = in.b;
            b.paged = &pg;
            /* chunk 1: the prefix, queries over their own keys */
            b.seqlen_q = b.seqlen_k = prefix;
            cr_assert_eq(prism_prefill(plan, &b, &in.q, &kp, &vp, &in.o, NULL,
                                       NULL, NULL, 0, NULL),
                         PRISM_OK, "%s", prism_plan_last_error(plan));
            take_pool_launch(g, &bytes[0], &memsets);
            cr_expect(g[0] == 40 && g[1] == hq_hkv && g[2] == 1,
                      "%s chunk 1 (cache %d): pool grid %u %u %u",
                      configs[i], with, g[0], g[1], g[2]);
            cr_expect_eq(memsets, 1);
            /* chunk 2: 3 blocks over the 40 of chunk 1 */
            b.seqlen_q = chunk;
            b.seqlen_k = sk;
            cr_assert_eq(prism_prefill(plan, &b, &in.q, &kp, &vp, &in.o, NULL,
                                       NULL, NULL, 0, NULL),
                         PRISM_OK, "%s", prism_plan_last_error(plan));
            take_pool_launch(g, &bytes[1], &memsets);
            unsigned want = with ? 3 + 2 : 43;
            cr_expect(g[0] == want && g[1] == hq_hkv && g[2] == 1,
                      "%s chunk 2 (cache %d): pool grid %u %u %u, want %u",
                      configs[i], with, g[0], g[1], g[2], want);
            cr_expect(memsets == 1 && bytes[1] == bytes[0],
                      "%s: %d memsets, %zu bytes after %zu", configs[i],
                      memsets, bytes[1], bytes[0]);
            /* a chunk that starts inside block 40: blocks 40..42 are its
             * own, 0..39 the prefix */
            b.seqlen_q = chunk - 10;
            prism_block_mask m = in.mask; /* 3 x 43 blocks */
            m.nq = 3;
            cr_assert_eq(prism_estimate(plan, &b, &in.q, &kp, &m, NULL, 0,
                                        NULL),
                         PRISM_OK, "%s", prism_plan_last_error(plan));
            take_pool_launch(g, &bytes[1], &memsets);
            cr_expect(g[0] == want,
                      "%s unaligned chunk (cache %d): pool grid %u, want %u",
                      configs[i], with, g[0], want);
        }
        unsetenv("FAKE_CUDA_GRIDS");
        unsetenv("FAKE_CUDA_TRACE");
        free(cache);
        free_inputs(&in);
        prism_plan_destroy(plan);
    }
    prism_context_destroy(ctx);
}
