/*
 * test_backend_paged.c - a CUDA plan's paged K/V launches, on the stand-in
 * libcuda of tests/fake_cuda (which ctest puts on LD_LIBRARY_PATH), with
 * the launches each call enqueues (FAKE_CUDA_TRACE, FAKE_CUDA_GRIDS):
 *
 *   - a paged batch runs the paged entry points of both attention kernels
 *     and of pool_stats, compiled at the plan's first paged launch, once
 *     across threads, or with the plan when its limits ask for them;
 *   - with a pooled-key cache, a chunk's pooling grid follows the chunk,
 *     not the context (gen/templates/pool_stats_params.h).
 */
#include <criterion/criterion.h>

#include "test_backend_common.h"

#include <pthread.h>
#include <stdatomic.h>

/* A paged batch (prism_paged_kv) on CUDA plans runs the paged entry
 * points of both attention kernels (mma.sync for smollm2's block size 64,
 * the persistent sm_90a kernel for llama) with the schedule kernel
 * unchanged; its fields are checked, a device table's entries are not.
 * The paged entry points are programs of their own: a plan compiles none
 * of them, and its first paged launch compiles both (pool_stats and
 * attention), once. */
Test(backend_paged, cuda_paged_batches_launch_the_paged_kernels,
     .init = fake_setup, .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    static const char *const configs[] = {"smollm2-135m.yaml",
                                          "llama-3.1-8b.yaml"};
    for (int i = 0; i < 2; i++) {
        prism_config cfg = shipped_config(configs[i]);
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
Test(backend_paged, cuda_plan_with_paged_limits_compiles_them_at_creation,
     .init = fake_setup, .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    prism_config cfg = shipped_config("smollm2-135m.yaml");
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
Test(backend_paged, cuda_paged_programs_load_once_across_threads,
     .init = fake_setup, .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    prism_config cfg = shipped_config("smollm2-135m.yaml");
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
Test(backend_paged, cuda_pooled_key_cache_sizes_pooling_by_the_chunk,
     .init = fake_setup, .fini = fake_teardown, .timeout = 300) {
    prism_context *ctx = fake_context();
    static const char *const configs[] = {"smollm2-135m.yaml",
                                          "llama-3.1-8b.yaml"};
    for (int i = 0; i < 2; i++) {
        prism_config cfg = shipped_config(configs[i]);
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
