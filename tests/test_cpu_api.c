/*
 * test_cpu_api.c - the CPU backend through the public API, around the
 * numerics that test_cpu_backend.c checks: argument validation on the CPU
 * path (including the host-read contents of masks and cu_seqlens), relaxed
 * host layouts and caller workspaces (bit-identical results), results
 * independent of the worker-thread count, the compiled-code cache (keys
 * shared by equal shapes, disk hits across contexts, other dtypes other
 * code), and `prism run --device cpu` agreeing with --backend reference.
 */
#include <criterion/criterion.h>

#include "cli_testutil.h"
#include "runtime/context.h"
#include "test_cpu_common.h"

#include <limits.h>
#include <unistd.h>

/* A shared case for the API tests: 2 regular sequences, D=64. */
static const cpu_case small = {"small", 64, 4, 2, 64, 2, {300}, {428},
                               false, false, BF16, HALF, -1};

Test(cpu_api, arguments_are_validated) {
    case_data d;
    build_inputs(&small, 5, &d);
    prism_context *ctx = cpu_context(0);
    prism_plan *plan = cpu_plan(ctx, &d, false);
    double density;
    cr_expect_eq(prism_plan_density(plan, &density),
                 PRISM_ERR_INVALID_ARGUMENT, "no estimate yet");
    prism_tensor q = api_tensor(&d.q), k = api_tensor(&d.k),
                 v = api_tensor(&d.v), o = q;
    o.data = malloc(tensor_bytes(&d.q));
    prism_selection sel = new_selection(&d);
    prism_block_mask m = mask_of(&sel);
    prism_batch b = d.batch;
    cr_assert_eq(prism_estimate(plan, &b, &q, &k, &m, NULL, 0, NULL), PRISM_OK,
                 "%s", prism_plan_last_error(plan));
    prism_batch bad = b;
    bad.dtype = FP16;
    cr_expect_eq(prism_estimate(plan, &bad, &q, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_DTYPE_MISMATCH);
    bad = b;
    bad.seqlen_k = 1000;
    cr_expect_eq(prism_estimate(plan, &bad, &q, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_BAD_SHAPE);
    cr_expect_eq(prism_estimate(plan, &b, NULL, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_NULL_POINTER);
    prism_tensor odd = q;
    odd.data = (char *)q.data + 1;
    cr_expect_eq(prism_estimate(plan, &b, &odd, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_MISALIGNED);
    prism_tensor backwards = q;
    backwards.stride_s = -64;
    cr_expect_eq(prism_estimate(plan, &b, &backwards, &k, &m, NULL, 0, NULL),
                 PRISM_ERR_BAD_STRIDE);
    prism_block_mask wrong = m;
    wrong.nk = 3;
    cr_expect_eq(prism_estimate(plan, &b, &q, &k, &wrong, NULL, 0, NULL),
                 PRISM_ERR_BAD_SHAPE);
    /* mask contents are read on the host, so they are checked */
    int32_t saved = sel.counts[0];
    sel.counts[0] = 4; /* row 0 has nk - nq + 1 = 3 block-causal blocks */
    cr_expect_eq(prism_sparse_attention(plan, &b, &q, &k, &v, &m, &o, NULL,
                                        NULL, 0, NULL),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(prism_plan_last_error(plan), "block mask row") != NULL,
              "%s", prism_plan_last_error(plan));
    sel.counts[0] = 2;
    sel.indices[0] = 1;
    sel.indices[1] = 0;
    cr_expect_eq(prism_sparse_attention(plan, &b, &q, &k, &v, &m, &o, NULL,
                                        NULL, 0, NULL),
                 PRISM_ERR_INVALID_ARGUMENT, "indices must ascend");
    sel.counts[0] = saved;
    sel.indices[0] = 0;
    sel.indices[1] = 1;
    /* ragged batches: cu_seqlens are read on the host, so checked too */
    int32_t cu_q[3] = {0, 200, 100}, cu_k[3] = {0, 300, 428};
    bad = b;
    bad.cu_seqlens_q = cu_q;
    bad.cu_seqlens_k = cu_k;
    prism_tensor qv = q, kv = k;
    cr_expect_eq(prism_estimate(plan, &bad, &qv, &kv, &m, NULL, 0, NULL),
                 PRISM_ERR_BAD_SHAPE, "decreasing cu_seqlens");
    cu_q[0] = 1;
    cu_q[2] = 300;
    cr_expect_eq(prism_estimate(plan, &bad, &qv, &kv, &m, NULL, 0, NULL),
                 PRISM_ERR_BAD_SHAPE, "cu_seqlens must start at 0");
    /* workspaces */
    void *ws = aligned_alloc(64, 4096);
    cr_expect_eq(prism_estimate(plan, &b, &q, &k, &m, ws, 4096, NULL),
                 PRISM_ERR_INVALID_ARGUMENT, "too small");
    cr_expect_eq(prism_estimate(plan, &b, &q, &k, &m, (char *)ws + 16,
                                1 << 30, NULL),
                 PRISM_ERR_MISALIGNED);
    cr_expect(strlen(prism_plan_last_error(plan)) > 10);
    free(ws);
    free(o.data);
    prism_selection_free(&sel);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    free_inputs(&d);
}

/* Host tensors need only element alignment: odd strides, a 2-byte offset
 * and a caller workspace give bit-identical results. */
Test(cpu_api, host_layouts_and_workspaces) {
    case_data d;
    build_inputs(&small, 9, &d);
    prism_context *ctx = cpu_context(0);
    prism_plan *own = cpu_plan(ctx, &d, false);
    prism_plan *caller = cpu_plan(ctx, &d, true);
    prism_tensor q = api_tensor(&d.q), k = api_tensor(&d.k),
                 v = api_tensor(&d.v), o = q;
    size_t o_bytes = tensor_bytes(&d.q);
    o.data = malloc(o_bytes);
    prism_selection a = new_selection(&d), b2 = new_selection(&d);
    prism_block_mask ma = mask_of(&a), mb = mask_of(&b2);
    cr_assert_eq(prism_prefill(own, &d.batch, &q, &k, &v, &o, NULL, &ma, NULL,
                               0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(own));

    /* Q copied with row stride D + 3 at an address 2 bytes past 16 */
    int D = small.head_dim, H = small.q_heads;
    int64_t rs = D + 3, n_rows = (int64_t)small.batch * H * d.S_q;
    uint16_t *padded = malloc((size_t)(n_rows * rs + 9) * 2);
    uint16_t *base = padded + 1;
    for (int64_t r = 0; r < n_rows; r++)
        memcpy(base + r * rs, (uint16_t *)d.q.data + r * D, (size_t)D * 2);
    prism_tensor qp = {base, H * d.S_q * rs, d.S_q * rs, rs};
    void *o2 = malloc(o_bytes);
    prism_tensor op = o;
    op.data = o2;
    cr_expect_eq(prism_plan_density(caller, &(double){0}),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_expect_eq(prism_prefill(caller, &d.batch, &qp, &k, &v, &op, NULL, &mb,
                               NULL, 0, NULL),
                 PRISM_ERR_INVALID_ARGUMENT, "caller_workspace needs one");
    size_t need = prism_plan_workspace_size(caller, &d.batch);
    cr_assert_gt(need, 0);
    cr_expect_eq(prism_plan_workspace_size(caller, NULL), need,
                 "the batch is the plan's limits");
    void *ws = aligned_alloc(64, (need + 63) & ~(size_t)63);
    cr_assert_eq(prism_prefill(caller, &d.batch, &qp, &k, &v, &op, NULL, &mb,
                               ws, need, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(caller));
    size_t rows = (size_t)small.batch * H * a.nq;
    cr_expect_eq(memcmp(a.counts, b2.counts, rows * sizeof(int32_t)), 0);
    cr_expect_eq(memcmp(o.data, o2, o_bytes), 0, "outputs differ");
    free(ws);
    free(padded);
    free(o2);
    free(o.data);
    prism_selection_free(&a);
    prism_selection_free(&b2);
    prism_plan_destroy(own);
    prism_plan_destroy(caller);
    prism_context_destroy(ctx);
    free_inputs(&d);
}

/* Rows never share outputs, so the thread count cannot change a bit. */
Test(cpu_api, results_do_not_depend_on_threads) {
    static const cpu_case ragged = {"ragged", 128, 8, 2, 128, 3,
                                    {300, 1100, 77}, {300, 1228, 333}, true,
                                    true, BF16, HALF, -1};
    const cpu_case *c = &ragged;
    case_data d;
    build_inputs(c, 11, &d);
    prism_tensor q = api_tensor(&d.q), k = api_tensor(&d.k),
                 v = api_tensor(&d.v);
    size_t o_bytes = tensor_bytes(&d.q);
    size_t lse_n = (size_t)c->q_heads * d.S_q;
    void *out[2];
    float *lse[2];
    for (int t = 0; t < 2; t++) {
        prism_context *ctx = cpu_context(t == 0 ? 1 : 3);
        prism_plan *plan = cpu_plan(ctx, &d, false);
        out[t] = malloc(o_bytes);
        lse[t] = malloc(lse_n * sizeof(float));
        prism_tensor o = q;
        o.data = out[t];
        cr_assert_eq(prism_prefill(plan, &d.batch, &q, &k, &v, &o, lse[t],
                                   NULL, NULL, 0, NULL),
                     PRISM_OK, "%s", prism_plan_last_error(plan));
        prism_plan_destroy(plan);
        prism_context_destroy(ctx);
    }
    cr_expect_eq(memcmp(out[0], out[1], o_bytes), 0);
    cr_expect_eq(memcmp(lse[0], lse[1], lse_n * sizeof(float)), 0);
    for (int t = 0; t < 2; t++) {
        free(out[t]);
        free(lse[t]);
    }
    free_inputs(&d);
}

/* Compiled code is cached like cubins: keyed by the IR, LLVM and the CPU;
 * equal shapes share an entry whatever the config's name. */
Test(cpu_api, compiled_code_is_cached) {
    char dir[] = "/tmp/prism-cpu-cache-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    prism_context_options o;
    prism_context_options_init(&o);
    o.device = PRISM_DEVICE_CPU;
    o.cache_dir = dir;
    case_data d;
    build_inputs(&small, 1, &d);
    prism_plan *p[4] = {NULL};
    prism_counters n;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    p[0] = cpu_plan(ctx, &d, true);
    cr_expect(!prism_cpu_plan_of(p[0])->jit.cache_hit);
    prism_context_counters(ctx, &n);
    cr_expect_eq(n.compiles, 1);
    snprintf(d.cfg.name, sizeof d.cfg.name, "renamed");
    d.cfg.threshold_high = 0.5; /* thresholds live in C, not in the code */
    p[1] = cpu_plan(ctx, &d, true);
    cr_expect(prism_cpu_plan_of(p[1])->jit.cache_hit);
    cr_expect_str_eq(prism_cpu_plan_of(p[0])->jit.key_hex, prism_cpu_plan_of(p[1])->jit.key_hex);
    prism_plan_destroy(p[0]);
    prism_plan_destroy(p[1]);
    p[0] = p[1] = NULL;
    prism_context_destroy(ctx);
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    p[2] = cpu_plan(ctx, &d, true);
    prism_context_counters(ctx, &n);
    cr_expect(prism_cpu_plan_of(p[2])->jit.cache_hit && n.disk_hits == 1 && n.compiles == 0,
              "a new context finds the entry on disk");
    d.cfg.dtype = FP16;
    d.batch.dtype = FP16;
    p[3] = cpu_plan(ctx, &d, true);
    cr_expect(!prism_cpu_plan_of(p[3])->jit.cache_hit, "another dtype is other code");
    cr_expect_str_neq(prism_cpu_plan_of(p[2])->jit.key_hex, prism_cpu_plan_of(p[3])->jit.key_hex);
    int removed = 0;
    char err[256];
    prism_cache_clear(ctx->cache, &removed, err, sizeof err);
    cr_expect_eq(removed, 2);
    for (int i = 0; i < 4; i++)
        prism_plan_destroy(p[i]);
    prism_context_destroy(ctx);
    rmdir(dir);
    free_inputs(&d);
}

/* ---- prism run --device cpu --------------------------------------------- */

static double json_number(const char *text, const char *method,
                          const char *key) {
    char pattern[64], k[64];
    snprintf(pattern, sizeof pattern, "\"method\": \"%s\"", method);
    const char *at = strstr(text, pattern);
    cr_assert_not_null(at, "no method %s in %s", method, text);
    snprintf(k, sizeof k, "\"%s\": ", key);
    at = strstr(at, k);
    cr_assert_not_null(at, "no %s for %s", key, method);
    return strtod(at + strlen(k), NULL);
}

static void run_cli(const char *args, char *out, size_t size) {
    char err[4096];
    cr_assert_eq(cli_tu_run(out, size, err, sizeof err, "%s run %s", PRISM_CLI_PATH, args),
                 0, "prism run %s failed: %s%s", args, out, err);
}

/* The llvm backend (the default) and the reference give the same table:
 * equal selections, and recall/error up to output rounding. */
Test(cpu_api, prism_run_backends_agree, .timeout = 300) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/prism-cpu-run-%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("name: tiny\nmodel:\n  head_dim: 64\n  q_heads: 4\n  kv_heads: 2\n"
          "dtype: bf16\nrope:\n  layout: half\n  theta: 500000\n"
          "prism:\n  block_size: 32\ntargets: [sm_80]\n",
          f);
    fclose(f);
    static char llvm[8192], ref[8192];
    char args[256];
    snprintf(args, sizeof args,
             "%s --device cpu --seq 700 --sq 572 --batch 2 --json", path);
    run_cli(args, llvm, sizeof llvm);
    if (!strstr(llvm, "\"backend\": \"llvm\"")) {
        unlink(path);
        cr_skip_test("prism run fell back to the reference: %s", llvm);
    }
    snprintf(args, sizeof args,
             "%s --device cpu --seq 700 --sq 572 --batch 2 --json "
             "--backend reference",
             path);
    run_cli(args, ref, sizeof ref);
    unlink(path);
    cr_assert_not_null(strstr(ref, "\"backend\": \"reference\""), "%s", ref);
    const char *methods[] = {"prism", "prism-nocal", "meanpool"};
    for (int m = 0; m < 3; m++) {
        const char *n = methods[m];
        cr_expect_eq(json_number(llvm, n, "density"),
                     json_number(ref, n, "density"), "%s density", n);
        cr_expect_lt(fabs(json_number(llvm, n, "recall_mean") -
                          json_number(ref, n, "recall_mean")),
                     1e-4, "%s recall", n);
        cr_expect_lt(fabs(json_number(llvm, n, "error_mean") -
                          json_number(ref, n, "error_mean")),
                     1e-2, "%s error", n);
    }
    cr_expect_eq(json_number(llvm, "dense", "density"), 1.0);
}

/* Sizes from caller input never wrap: strides whose span over the batch
 * overflows or passes PRISM_MAX_TENSOR_BYTES are refused before any
 * pointer is formed (INT64_MAX/2 once crashed the CPU path), and so are
 * limits whose workspace would wrap or pass PRISM_MAX_WORKSPACE_BYTES. */
typedef struct stride_row {
    const char *what;
    int tensor; /* 0 q, 1 k, 2 v, 3 o */
    int field;  /* 0 b, 1 h, 2 s */
    int64_t value;
} stride_row;

static const stride_row huge_strides[] = {
    {"q stride_h INT64_MAX/2", 0, 1, INT64_MAX / 2},
    {"q stride_b INT64_MAX/2", 0, 0, INT64_MAX / 2},
    {"k stride_s INT64_MAX/2", 1, 2, INT64_MAX / 2},
    {"v stride_h 2^47", 2, 1, (int64_t)1 << 47},
    {"o stride_b 2^47", 3, 0, (int64_t)1 << 47},
    {"q stride_s INT64_MAX", 0, 2, INT64_MAX},
};

Test(cpu_api, strides_beyond_the_tensor_limit_are_refused) {
    case_data d;
    build_inputs(&small, 7, &d);
    prism_context *ctx = cpu_context(0);
    prism_plan *plan = cpu_plan(ctx, &d, false);
    prism_tensor t[4] = {api_tensor(&d.q), api_tensor(&d.k), api_tensor(&d.v),
                         api_tensor(&d.q)};
    t[3].data = malloc(tensor_bytes(&d.q));
    prism_selection sel = new_selection(&d);
    prism_block_mask m = mask_of(&sel);
    for (size_t i = 0; i < sizeof huge_strides / sizeof huge_strides[0]; i++) {
        const stride_row *r = &huge_strides[i];
        prism_tensor x[4] = {t[0], t[1], t[2], t[3]};
        int64_t *f[3] = {&x[r->tensor].stride_b, &x[r->tensor].stride_h,
                         &x[r->tensor].stride_s};
        *f[r->field] = r->value;
        prism_status st = prism_prefill(plan, &d.batch, &x[0], &x[1], &x[2],
                                        &x[3], NULL, &m, NULL, 0, NULL);
        cr_expect_eq(st, PRISM_ERR_BAD_STRIDE, "%s: %s", r->what,
                     prism_status_name(st));
        const char *names = "qkvo";
        char want[16];
        snprintf(want, sizeof want, "tensor %c", names[r->tensor]);
        cr_expect(strstr(prism_plan_last_error(plan), want), "%s: %s",
                  r->what, prism_plan_last_error(plan));
    }
    /* the valid strides still run */
    cr_expect_eq(prism_prefill(plan, &d.batch, &t[0], &t[1], &t[2], &t[3],
                               NULL, &m, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    free(t[3].data);
    prism_selection_free(&sel);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    free_inputs(&d);
}

typedef struct limits_row {
    const char *what;
    prism_plan_limits limits;
    const char *names; /* a word the message must hold */
} limits_row;

static const limits_row bad_limits[] = {
    {"INT_MAX lengths, caller workspace", {4096, INT_MAX, INT_MAX, true, false},
     "PRISM_MAX_SEQLEN"},
    {"2^30 lengths", {1, 1 << 30, 1 << 30, false, false}, "PRISM_MAX_SEQLEN"},
    {"INT_MAX batch", {INT_MAX, 128, 128, true, false}, "PRISM_MAX_BATCH"},
    {"workspace past the limit", {PRISM_MAX_BATCH, PRISM_MAX_SEQLEN,
                                  PRISM_MAX_SEQLEN, true, false},
     "PRISM_MAX_WORKSPACE_BYTES"},
    {"negative batch", {-1, 128, 128, false, false}, "positive"},
};

Test(cpu_api, limits_whose_sizes_would_wrap_are_refused) {
    prism_context *ctx = cpu_context(1);
    prism_config cfg;
    prism_config_init(&cfg);
    for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++) {
        const limits_row *r = &bad_limits[i];
        prism_plan *plan = NULL;
        prism_status st = prism_plan_create(ctx, &cfg, &r->limits, &plan);
        if (st == PRISM_ERR_UNSUPPORTED)
            cr_skip_test("%s", prism_context_last_error(ctx));
        cr_expect_eq(st, PRISM_ERR_BAD_SHAPE, "%s: %s", r->what,
                     prism_status_name(st));
        cr_expect_null(plan);
        cr_expect(strstr(prism_context_last_error(ctx), r->names), "%s: %s",
                  r->what, prism_context_last_error(ctx));
    }
    /* within the limits, the size a caller allocates is exact and a batch
     * outside the plan's limits has no size */
    prism_plan_limits ok = {2, 4096, 8192, true, false};
    prism_plan *plan = NULL;
    cr_assert_eq(prism_plan_create(ctx, &cfg, &ok, &plan), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    size_t whole = prism_plan_workspace_size(plan, NULL);
    cr_expect(whole > 0 && whole < ((size_t)1 << 32), "%zu", whole);
    prism_batch over = {.dtype = cfg.dtype, .batch = 3, .seqlen_q = 128,
                        .seqlen_k = 128};
    cr_expect_eq(prism_plan_workspace_size(plan, &over), 0);
    over.batch = 1;
    over.seqlen_k = INT_MAX;
    cr_expect_eq(prism_plan_workspace_size(plan, &over), 0);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
}
