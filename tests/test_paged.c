/*
 * test_paged.c - paged K/V (prism.h, prism_paged_kv) on CPU plans.
 *
 * A paged batch must compute exactly what the contiguous batch its pages
 * stand for computes: the same selection and, bit for bit, the same
 * outputs and log-sum-exp, for random page permutations, NHD and HND
 * pages, pages of one and two blocks, regular and ragged batches and
 * Sk > Sq (a prefix in the cache and a new chunk).  Then the pooled-key
 * cache (selections identical with and without it, full blocks written
 * once and read after, long prefixes served in sweeps, a cache that
 * starts late), a chunked prefill against the one-shot prefill,
 * the argument checks that name the field, and the reference's page
 * copies.  The contiguous path itself is tested against the reference by
 * test_cpu_backend.c.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "paged_inputs.h"
#include "test_cpu_common.h"

typedef struct paged_case {
    cpu_case in;
    int page_blocks; /* page_size = page_blocks x block_size */
    bool hnd;
} paged_case;

#define REG(name, sq, sk) {name, 64, 4, 2, 32, 2, {sq}, {sk}, false, true, \
                           BF16, HALF, PRISM_WORKLOAD_MIXED}
#define RAGGED(name) {name, 64, 4, 1, 32, 3, {40, 100, 7}, {104, 100, 71},   \
                      true, false, FP16, INTER, -1}

static const paged_case cases[] = {
    {REG("reg-nhd-1x", 96, 224), 1, false},
    {REG("reg-hnd-2x", 96, 224), 2, true},
    {REG("reg-nhd-2x-odd", 70, 230), 2, false},
    {RAGGED("ragged-hnd-1x"), 1, true},
    {RAGGED("ragged-nhd-2x"), 2, false},
};

/* Every valid row of two selections (rows past a sequence's query blocks
 * are unspecified) holds the same blocks. */
static void expect_same_rows(const prism_selection *a, const prism_selection *b,
                             const char *what) {
    for (int s = 0; s < a->B; s++)
        for (int h = 0; h < a->Hq; h++)
            for (int i = 0; i < a->seq_nq[s]; i++) {
                size_t r = ((size_t)s * a->Hq + h) * a->nq + i;
                cr_assert_eq(a->counts[r], b->counts[r],
                             "%s: row (%d, %d, %d) counts %d vs %d", what, s,
                             h, i, a->counts[r], b->counts[r]);
                cr_assert_eq(memcmp(a->indices + r * a->nk,
                                    b->indices + r * a->nk,
                                    (size_t)a->counts[r] * sizeof(int32_t)),
                             0, "%s: row (%d, %d, %d) blocks differ", what, s,
                             h, i);
            }
}

typedef struct run_out {
    prism_selection sel;
    void *o;
    float *lse;
} run_out;

static void run_prefill(prism_plan *plan, const case_data *d,
                        const prism_batch *b, const prism_tensor *k,
                        const prism_tensor *v, run_out *r) {
    r->sel = new_selection(d);
    poison_selection(&r->sel);
    prism_block_mask m = mask_of(&r->sel);
    prism_tensor q = api_tensor(&d->q), o = q;
    r->o = calloc(1, tensor_bytes(&d->q));
    r->lse = calloc((size_t)d->cfg.q_heads * d->S_q * d->B_view, sizeof(float));
    o.data = r->o;
    cr_assert_eq(prism_prefill(plan, b, &q, k, v, &o, r->lse, &m, NULL, 0,
                               NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
}

static void free_out(run_out *r) {
    prism_selection_free(&r->sel);
    free(r->o);
    free(r->lse);
}

ParameterizedTestParameters(paged, matches_contiguous) {
    return cr_make_param_array(paged_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(const paged_case *c, paged, matches_contiguous,
                  .timeout = 300) {
    case_data d;
    build_inputs(&c->in, 21, &d);
    paged_inputs pi;
    paged_build(&d, c->page_blocks * d.cfg.block_size, c->hnd, 3, 77, &pi);
    prism_context *ctx = cpu_context(0);
    prism_plan *plan = cpu_plan(ctx, &d, false);
    prism_tensor k = api_tensor(&d.k), v = api_tensor(&d.v);
    prism_tensor kp = api_tensor(&pi.kp), vp = api_tensor(&pi.vp);
    run_out flat, paged;
    run_prefill(plan, &d, &d.batch, &k, &v, &flat);
    run_prefill(plan, &d, &pi.batch, &kp, &vp, &paged);
    expect_same_rows(&flat.sel, &paged.sel, c->in.name);
    cr_expect_eq(memcmp(flat.o, paged.o, tensor_bytes(&d.q)), 0,
                 "%s: outputs differ", c->in.name);
    cr_expect_eq(memcmp(flat.lse, paged.lse,
                        (size_t)d.cfg.q_heads * d.S_q * d.B_view *
                            sizeof(float)),
                 0, "%s: lse differs", c->in.name);
    /* attention alone over a given mask reads the pages too */
    prism_block_mask m = mask_of(&flat.sel);
    prism_tensor q = api_tensor(&d.q), o = q;
    o.data = paged.o;
    memset(paged.o, 0, tensor_bytes(&d.q));
    cr_assert_eq(prism_sparse_attention(plan, &pi.batch, &q, &kp, &vp, &m, &o,
                                        NULL, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    cr_expect_eq(memcmp(flat.o, paged.o, tensor_bytes(&d.q)), 0);
    free_out(&flat);
    free_out(&paged);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    paged_free(&pi);
    free_inputs(&d);
}

/* An estimate over pages with a pooled-key cache, as a mask. */
static prism_selection estimate_paged(prism_plan *plan, const case_data *d,
                                      const paged_inputs *pi,
                                      const prism_batch *b) {
    prism_selection sel = new_selection(d);
    poison_selection(&sel);
    prism_block_mask m = mask_of(&sel);
    prism_tensor q = api_tensor(&d->q), kp = api_tensor(&pi->kp);
    cr_assert_eq(prism_estimate(plan, b, &q, &kp, &m, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    return sel;
}

/* The cache holds every full block once written, never a partial one;
 * selections with it (writing, then reading) equal those without; and a
 * read does not look at the keys: with the full blocks' keys overwritten
 * by NaN the selection is unchanged. */
Test(paged, pooled_key_cache_keeps_selections, .timeout = 300) {
    const cpu_case c = RAGGED("cache");
    case_data d;
    build_inputs(&c, 5, &d);
    paged_inputs pi;
    paged_build(&d, 2 * d.cfg.block_size, false, 2, 9, &pi);
    prism_context *ctx = cpu_context(0);
    prism_plan *plan = cpu_plan(ctx, &d, false);
    size_t bytes = prism_paged_pooled_bytes(&d.cfg, pi.num_pages,
                                            pi.page_size, d.cfg.kv_heads);
    int D = d.cfg.head_dim, per_page = 2, BS = d.cfg.block_size;
    cr_assert_eq(bytes, (size_t)pi.num_pages * per_page * d.cfg.kv_heads *
                            (D + 4) * sizeof(float));
    float *cache = aligned_alloc(64, bytes);
    memset(cache, 0, bytes);
    prism_selection plain = estimate_paged(plan, &d, &pi, &pi.batch);
    prism_paged_kv pg = pi.pg;
    pg.pooled_keys = cache;
    prism_batch b = pi.batch;
    b.paged = &pg;
    prism_selection first = estimate_paged(plan, &d, &pi, &b);
    expect_same_rows(&plain, &first, "writing the cache");
    for (int s = 0; s < 3; s++) {
        int64_t len = case_k_len(&d, s);
        for (int n = 0; n < (len + BS - 1) / BS; n++) {
            int page = pi.table[s * pi.max_pages + n / per_page];
            float mark = cache[((size_t)(page * per_page + n % per_page) *
                                    d.cfg.kv_heads) * (D + 4) + D + 3];
            cr_expect_eq(mark, (n + 1) * BS <= len ? 1.0f : 0.0f,
                         "sequence %d block %d", s, n);
        }
    }
    /* full blocks now come from the cache: poison their keys */
    for (int s = 0; s < 3; s++)
        for (int64_t t = 0; t < case_k_len(&d, s) / BS * BS; t++)
            for (int h = 0; h < d.cfg.kv_heads; h++)
                for (int x = 0; x < D; x++)
                    prism_view_store(&pi.kp.view,
                                     pi.table[s * pi.max_pages +
                                              t / pi.page_size],
                                     h, t % pi.page_size, x, NAN);
    prism_selection second = estimate_paged(plan, &d, &pi, &b);
    expect_same_rows(&plain, &second, "reading the cache");
    prism_selection_free(&plain);
    prism_selection_free(&first);
    prism_selection_free(&second);
    free(cache);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    paged_free(&pi);
    free_inputs(&d);
}

/* One chunk of a chunked prefill: queries [q0, q0 + sq) of d's single
 * sequence over keys [0, q0 + sq) in the pages; O into the same rows. */
static prism_selection prefill_chunk(prism_plan *plan, const case_data *d,
                                     const paged_inputs *pi,
                                     const prism_paged_kv *pg,
                                     const prism_params *prm, int q0, int sq,
                                     void *o_data) {
    prism_selection sel;
    char err[256];
    cr_assert_eq(prism_selection_alloc_for(&sel, 1, d->cfg.q_heads, sq,
                                           q0 + sq, NULL, d->cfg.block_size,
                                           err, sizeof err),
                 PRISM_OK, "%s", err);
    prism_block_mask m = mask_of(&sel);
    prism_tensor q = api_tensor(&d->q), o = q;
    size_t es = prism_dtype_size(d->cfg.dtype);
    q.data = (char *)d->q.data + (size_t)q0 * q.stride_s * es;
    o.data = (char *)o_data + (size_t)q0 * o.stride_s * es;
    prism_batch b = {.dtype = d->cfg.dtype, .batch = 1, .seqlen_q = sq,
                     .seqlen_k = q0 + sq, .params = prm, .paged = pg};
    prism_tensor kp = api_tensor(&pi->kp), vp = api_tensor(&pi->vp);
    cr_assert_eq(prism_prefill(plan, &b, &q, &kp, &vp, &o, NULL, &m, NULL, 0,
                               NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    return sel;
}

/* Chunk c's rows of the one-shot selection are the chunk's selection
 * (the same key blocks: a row's allowed blocks end at its diagonal). */
static void expect_chunk_rows(const prism_selection *full,
                              const prism_selection *chunk, int first_block) {
    for (int h = 0; h < chunk->Hq; h++)
        for (int i = 0; i < chunk->nq; i++) {
            size_t rc = (size_t)h * chunk->nq + i;
            size_t rf = (size_t)h * full->nq + first_block + i;
            cr_assert_eq(chunk->counts[rc], full->counts[rf],
                         "head %d block %d", h, first_block + i);
            cr_assert_eq(memcmp(chunk->indices + rc * chunk->nk,
                                full->indices + rf * full->nk,
                                (size_t)chunk->counts[rc] * sizeof(int32_t)),
                         0, "head %d block %d", h, first_block + i);
        }
}

/* A prefill in chunks of two blocks over the pages equals the one-shot
 * prefill row for row when the band scales do not depend on the call's
 * queries (calibration off: docs/method.md §4 calibrates each call on its
 * own pooled rows), and the pooled-key cache changes nothing. */
Test(paged, chunked_prefill_equals_one_shot, .timeout = 300) {
    const cpu_case c = {"chunks", 64, 4, 2, 32, 1, {256}, {256}, false, true,
                        BF16, HALF, PRISM_WORKLOAD_MIXED};
    case_data d;
    build_inputs(&c, 31, &d);
    paged_inputs pi;
    paged_build(&d, 2 * d.cfg.block_size, true, 1, 13, &pi);
    prism_context *ctx = cpu_context(0);
    prism_plan *plan = cpu_plan(ctx, &d, false);
    prism_params prm;
    prism_params_init_from_config(&d.cfg, &prm);
    prm.calibrate = false;
    prism_batch one = d.batch; /* contiguous K and V */
    one.params = &prm;
    prism_tensor k = api_tensor(&d.k), v = api_tensor(&d.v);
    run_out full;
    run_prefill(plan, &d, &one, &k, &v, &full);
    size_t o_bytes = tensor_bytes(&d.q), cache_bytes = prism_paged_pooled_bytes(
        &d.cfg, pi.num_pages, pi.page_size, d.cfg.kv_heads);
    float *cache = aligned_alloc(64, cache_bytes);
    memset(cache, 0, cache_bytes);
    void *o[2] = {calloc(1, o_bytes), calloc(1, o_bytes)};
    int chunk = 2 * d.cfg.block_size;
    for (int with = 0; with < 2; with++) {
        prism_paged_kv pg = pi.pg;
        pg.pooled_keys = with ? cache : NULL;
        for (int q0 = 0; q0 < 256; q0 += chunk) {
            prism_selection sel = prefill_chunk(plan, &d, &pi, &pg, &prm, q0,
                                                chunk, o[with]);
            expect_chunk_rows(&full.sel, &sel, q0 / d.cfg.block_size);
            prism_selection_free(&sel);
        }
    }
    cr_expect_eq(memcmp(o[0], full.o, o_bytes), 0, "chunked vs one-shot");
    cr_expect_eq(memcmp(o[1], full.o, o_bytes), 0, "with the cache");
    free(o[0]);
    free(o[1]);
    free(cache);
    free_out(&full);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    paged_free(&pi);
    free_inputs(&d);
}

/* Whether every key block of sequence 0's first `blocks` holds a marked
 * entry for every KV head. */
static bool all_marked(const float *cache, const case_data *d,
                       const paged_inputs *pi, int blocks) {
    int per_page = pi->page_size / d->cfg.block_size, D = d->cfg.head_dim;
    for (int n = 0; n < blocks; n++)
        for (int h = 0; h < d->cfg.kv_heads; h++) {
            size_t page = (size_t)pi->table[n / per_page];
            size_t e = ((page * per_page + n % per_page) * d->cfg.kv_heads +
                        h) * (D + 4);
            if (cache[e + D + 3] != 1.0f)
                return false;
        }
    return true;
}

/* With the cache, a chunk pools its own blocks and sweeps its prefix 32
 * blocks to a work item (gen/templates/pool_stats_params.h).  A prompt of
 * 73 blocks in chunks that end inside blocks, calibration on, prefilled
 * three ways -- without the cache, with it from the first chunk, and with
 * a zeroed one from the third chunk on (its prefix of 34 blocks not
 * cached: the sweeps pool it) -- gives every chunk the same selection and
 * the same output, bit for bit; after the last chunk every block is in
 * the cache.  Then, calibration off, chunks on block boundaries (prefixes
 * of up to 64 blocks, two sweeps) equal the one-shot prefill with the
 * cache as without it. */
Test(paged, pooled_key_cache_sweeps_long_prefixes, .timeout = 300) {
    const cpu_case c = {"sweeps", 64, 4, 2, 32, 1, {2336}, {2336}, false,
                        true, BF16, HALF, PRISM_WORKLOAD_MIXED};
    case_data d;
    build_inputs(&c, 7, &d);
    paged_inputs pi;
    paged_build(&d, 2 * d.cfg.block_size, false, 3, 17, &pi);
    prism_context *ctx = cpu_context(0);
    prism_plan *plan = cpu_plan(ctx, &d, false);
    prism_params prm;
    prism_params_init_from_config(&d.cfg, &prm);
    size_t o_bytes = tensor_bytes(&d.q), cache_bytes = prism_paged_pooled_bytes(
        &d.cfg, pi.num_pages, pi.page_size, d.cfg.kv_heads);
    float *cache = aligned_alloc(64, cache_bytes);
    static const int unaligned[] = {0, 1000, 1100, 1600, 2336};
    static const int aligned[] = {0, 256, 1280, 2048, 2336};
    for (int calibrate = 1; calibrate >= 0; calibrate--) {
        prm.calibrate = calibrate;
        const int *ends = calibrate ? unaligned : aligned;
        prism_selection sel[3][4];
        void *o[3];
        for (int run = 0; run < 3; run++) {
            memset(cache, 0, cache_bytes);
            o[run] = calloc(1, o_bytes);
            for (int k = 0; k < 4; k++) {
                prism_paged_kv pg = pi.pg;
                pg.pooled_keys =
                    run == 1 || (run == 2 && k >= 2) ? cache : NULL;
                sel[run][k] = prefill_chunk(plan, &d, &pi, &pg, &prm, ends[k],
                                            ends[k + 1] - ends[k], o[run]);
            }
            if (run > 0)
                cr_expect(all_marked(cache, &d, &pi, 2336 / 32),
                          "run %d: every block cached", run);
        }
        for (int k = 0; k < 4; k++) {
            for (int run = 1; run < 3; run++)
                expect_same_rows(&sel[0][k], &sel[run][k],
                                 run == 1 ? "cache from the first chunk"
                                          : "cache from the third chunk");
        }
        cr_expect_eq(memcmp(o[1], o[0], o_bytes), 0, "calibrate %d: cache",
                     calibrate);
        cr_expect_eq(memcmp(o[2], o[0], o_bytes), 0,
                     "calibrate %d: a cache that starts late", calibrate);
        if (!calibrate) {
            prism_batch one = d.batch; /* contiguous K and V, one call */
            one.params = &prm;
            prism_tensor kt = api_tensor(&d.k), vt = api_tensor(&d.v);
            run_out full;
            run_prefill(plan, &d, &one, &kt, &vt, &full);
            for (int k = 0; k < 4; k++)
                expect_chunk_rows(&full.sel, &sel[1][k],
                                  ends[k] / d.cfg.block_size);
            cr_expect_eq(memcmp(o[1], full.o, o_bytes), 0,
                         "chunked with the cache vs one-shot");
            free_out(&full);
        }
        for (int run = 0; run < 3; run++) {
            for (int k = 0; k < 4; k++)
                prism_selection_free(&sel[run][k]);
            free(o[run]);
        }
    }
    free(cache);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    paged_free(&pi);
    free_inputs(&d);
}

/* The checks name the field; a host table's entries are checked before
 * any page is read. */
Test(paged, arguments_are_validated) {
    const cpu_case c = RAGGED("checks");
    case_data d;
    build_inputs(&c, 3, &d);
    paged_inputs pi;
    paged_build(&d, d.cfg.block_size, false, 0, 1, &pi);
    prism_context *ctx = cpu_context(0);
    prism_plan *plan = cpu_plan(ctx, &d, false);
    prism_selection sel = new_selection(&d);
    prism_block_mask m = mask_of(&sel);
    prism_tensor q = api_tensor(&d.q), kp = api_tensor(&pi.kp);
    prism_batch b = pi.batch;
    prism_paged_kv pg = pi.pg;
    b.paged = &pg;
    cr_assert_eq(prism_estimate(plan, &b, &q, &kp, &m, NULL, 0, NULL),
                 PRISM_OK, "%s", prism_plan_last_error(plan));
    struct {
        prism_paged_kv pg;
        prism_status st;
        const char *field;
    } bad[] = {
        {{pi.table, pi.max_pages, 48, pi.num_pages, NULL},
         PRISM_ERR_INVALID_ARGUMENT, "paged.page_size"},
        {{pi.table, pi.max_pages, 0, pi.num_pages, NULL},
         PRISM_ERR_INVALID_ARGUMENT, "paged.page_size"},
        {{pi.table, 1, pi.page_size, pi.num_pages, NULL}, PRISM_ERR_BAD_SHAPE,
         "paged.max_pages"},
        {{pi.table, pi.max_pages, pi.page_size, 0, NULL}, PRISM_ERR_BAD_SHAPE,
         "paged.num_pages"},
        {{NULL, pi.max_pages, pi.page_size, pi.num_pages, NULL},
         PRISM_ERR_NULL_POINTER, "paged.page_table"},
        {{pi.table, pi.max_pages, pi.page_size, pi.num_pages,
          (float *)((char *)d.q.data + 4)},
         PRISM_ERR_MISALIGNED, "paged.pooled_keys"},
        /* fewer pages than the table names: an entry out of range */
        {{pi.table, pi.max_pages, pi.page_size, pi.num_pages - 1, NULL},
         PRISM_ERR_INVALID_ARGUMENT, "paged.page_table["},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pg = bad[i].pg;
        cr_expect_eq(prism_estimate(plan, &b, &q, &kp, &m, NULL, 0, NULL),
                     bad[i].st, "case %zu: %s", i,
                     prism_plan_last_error(plan));
        cr_expect(strstr(prism_plan_last_error(plan), bad[i].field) != NULL,
                  "case %zu: %s", i, prism_plan_last_error(plan));
    }
    /* a negative id in the rows a sequence uses; padding past them is
     * never read */
    pg = pi.pg;
    int32_t saved = pi.table[pi.max_pages];
    pi.table[pi.max_pages] = -1;
    cr_expect_eq(prism_estimate(plan, &b, &q, &kp, &m, NULL, 0, NULL),
                 PRISM_ERR_INVALID_ARGUMENT);
    pi.table[pi.max_pages] = saved;
    int pages2 = (int)((case_k_len(&d, 2) + pi.page_size - 1) / pi.page_size);
    if (pages2 < pi.max_pages) {
        pi.table[2 * pi.max_pages + pages2] = -7;
        cr_expect_eq(prism_estimate(plan, &b, &q, &kp, &m, NULL, 0, NULL),
                     PRISM_OK, "%s", prism_plan_last_error(plan));
    }
    /* the pools are tensors of num_pages pages: their strides are checked */
    prism_tensor wrong = kp;
    wrong.stride_b = 0;
    cr_expect_eq(prism_estimate(plan, &b, &q, &wrong, &m, NULL, 0, NULL),
                 PRISM_ERR_BAD_STRIDE);
    cr_expect_eq(prism_paged_pooled_bytes(&d.cfg, 4, 48, 2), 0);
    cr_expect_eq(prism_paged_pooled_bytes(NULL, 4, 64, 2), 0);
    cr_expect_eq(prism_paged_pooled_bytes(&d.cfg, 0, 64, 2), 0);
    prism_selection_free(&sel);
    prism_plan_destroy(plan);
    prism_context_destroy(ctx);
    paged_free(&pi);
    free_inputs(&d);
}

/* The reference's copies: gathering the scattered pages gives the tensor
 * back, and a bad entry is refused before any copy. */
Test(paged, reference_gather_inverts_scatter) {
    const cpu_case c = RAGGED("gather");
    case_data d;
    build_inputs(&c, 8, &d);
    paged_inputs pi;
    paged_build(&d, 2 * d.cfg.block_size, true, 2, 4, &pi);
    host_tensor back = tensor_new(d.cfg.dtype, d.B_view, d.cfg.kv_heads, d.S_k,
                                  d.cfg.head_dim, true);
    char err[256];
    cr_assert_eq(prism_ref_paged_gather(&pi.kp.view, pi.table, pi.max_pages,
                                        d.vl, &back.view, err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_expect_eq(memcmp(back.data, d.k.data, tensor_bytes(&d.k)), 0);
    pi.table[0] = pi.num_pages;
    cr_expect_eq(prism_ref_paged_gather(&pi.kp.view, pi.table, pi.max_pages,
                                        d.vl, &back.view, err, sizeof err),
                 PRISM_ERR_INVALID_ARGUMENT);
    free(back.data);
    paged_free(&pi);
    free_inputs(&d);
}
