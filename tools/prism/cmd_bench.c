/*
 * cmd_bench.c - `prism bench`: GPU timings of every stage.
 *
 *   prism bench CONFIG --seq N [--sq M] [--batch B] [--density P]...
 *                      [--reps R] [--workload NAME] [--no-flush] [--json FILE]
 *                      [--paged PAGE_SIZE [--layout nhd|hnd] [--pooled-cache]]
 *
 * Inputs are iid Gaussian bf16/fp16, B sequences of the same lengths
 * (default 1; many short prompts are the other prefill shape that matters:
 * each query tile's row of key tiles is short there, as under a sparse
 * mask, so --batch lets dense rows of a given length be compared with
 * SDPA's on identical shapes), or with --workload one of the
 * reference's structured workloads (mixed, slash, ...: RoPE'd Q/K with
 * real attention structure), on which Prism's own mask is sparse; on iid
 * inputs it selects nearly every block.  Stages: Prism estimation
 * (pooling + calibration + selection), attention over Prism's own mask,
 * dense attention (every block-causal block), and attention over random
 * masks of the given densities (sink + diagonal + random blocks).  Each is
 * timed with CUDA events: warm-up, then the median, min and max of R
 * repetitions, rotating over input copies so the L2 cache does not flatter
 * small sizes.  Before each repetition's start event a 256 MB memset runs
 * on the stream (as triton.testing.do_bench does): it evicts L2, and it
 * keeps the GPU busy while the host records the start event and enqueues
 * the stage, so the events time what the GPU does, not how long the host
 * takes to launch it (with the GPU idle, the start event fires at once and
 * the host's launch work lands inside the measurement: microseconds that
 * only matter for stages of a few hundred).  --no-flush times that way
 * instead.  bench/sdpa_baseline.py does the same for SDPA.  TFLOP/s count
 * 2*2*B*Hq*D*Sq*(Sk - Sq/2) times the density (2*2*Hq*D*S^2/2 for B = 1,
 * Sq = Sk = S: the causal half).  --paged adds the same stages over K and
 * V in shuffled pages (prism_paged_kv), each timed right after its
 * contiguous twin, and --pooled-cache the estimate through a pooled-key
 * cache: the tables of docs/paged.md come from these.
 */
#include "tools/common/cli.h"
#include "base/cuda_driver.h"
#include "base/half.h"
#include "reference/reference.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char bench_usage[] =
    "usage: prism bench CONFIG --seq N [--sq M] [--batch B] [--density P]...\n"
    "                   [--reps R] [--workload NAME] [--no-flush] [--json FILE]\n"
    "                   [--paged PAGE_SIZE [--layout nhd|hnd] [--pooled-cache]]\n\n"
    "Times Prism estimation, attention over Prism's mask, dense attention and\n"
    "attention over random block masks of density P (default 0.1 and 0.2) on\n"
    "the GPU: median/min/max of R repetitions (default 20) after warm-up,\n"
    "on B sequences of Sq queries over Sk = N keys (default B 1, Sq N).\n"
    "Inputs: iid Gaussian, or --workload mixed|sink|local|slash|vertical|\n"
    "needle|random (the reference's structured inputs, where Prism's mask\n"
    "is sparse).  Each repetition starts after a 256 MB memset (L2 flushed,\n"
    "the host's launch hidden); --no-flush starts it on an idle GPU.\n"
    "--paged PAGE_SIZE also times the estimate and attention with K and V in\n"
    "shuffled pages of PAGE_SIZE tokens (a multiple of the block size;\n"
    "--layout nhd (default) or hnd), each right after its contiguous twin;\n"
    "--pooled-cache adds the estimate through a pooled-key cache.\n"
    "Counts take a K or M suffix, powers of two (--seq 8k = 8192); each\n"
    "option but --density is given once.\n";

typedef struct bench_args {
    const char *config, *json, *workload_name, *layout;
    bool use_workload, no_flush, pooled_cache;
    prism_workload_kind workload;
    int seq, sq, batch, reps, n_density, page_size;
    double density[8];
} bench_args;

static int opt_workload(const char *cmd, const cli_option *o,
                        const char *value, bool trailing) {
    (void)trailing;
    bench_args *a = o->dest;
    a->workload_name = value;
    a->use_workload = strcmp(value, "iid") != 0;
    if (a->use_workload &&
        prism_workload_parse(value, &a->workload) != PRISM_OK)
        return cli_usage(cmd, "unknown workload '%s'", value);
    return CLI_OK;
}

static int parse_bench(int argc, char **argv, bench_args *a) {
    memset(a, 0, sizeof *a);
    long long seq = 0, sq = 0, batch = 1, reps = 20, paged = 0;
    cli_reals density = {a->density, 0, 8};
    const cli_option opts[] = {
        CLI_OPT_COUNT("seq", &seq, 1, INT32_MAX),
        CLI_OPT_COUNT("sq", &sq, 1, INT32_MAX),
        CLI_OPT_COUNT("batch", &batch, 1, 4096),
        CLI_OPT_COUNT("reps", &reps, 1, 1000000),
        CLI_OPT_FLAG("no-flush", 0, &a->no_flush),
        CLI_OPT_STRING("json", 0, &a->json),
        CLI_OPT_CUSTOM("workload", a, opt_workload, false, false),
        CLI_OPT_CUSTOM("density", &density, cli_opt_density, true, false),
        CLI_OPT_COUNT("paged", &paged, 1, 1 << 20),
        CLI_OPT_STRING("layout", 0, &a->layout),
        CLI_OPT_FLAG("pooled-cache", 0, &a->pooled_cache),
    };
    cli_spec spec = {"bench", opts, PRISM_ARRAY_LEN(opts), &a->config, 1};
    int n_pos;
    int rc = cli_parse(&spec, argc, argv, &n_pos);
    if (rc != CLI_OK)
        return rc;
    if (!a->config || seq <= 0)
        return cli_usage("bench", "need CONFIG and --seq N > 0");
    if (sq > seq)
        return cli_usage("bench", "need 0 < --sq <= --seq");
    a->seq = (int)seq;
    a->sq = sq > 0 ? (int)sq : a->seq;
    a->batch = (int)batch;
    a->reps = (int)reps;
    a->page_size = (int)paged;
    if (a->layout && strcmp(a->layout, "nhd") && strcmp(a->layout, "hnd"))
        return cli_usage("bench", "--layout is nhd or hnd");
    if ((a->layout || a->pooled_cache) && !a->page_size)
        return cli_usage("bench", "--layout and --pooled-cache need --paged");
    a->n_density = density.n;
    if (a->n_density == 0) {
        a->density[0] = 0.1;
        a->density[1] = 0.2;
        a->n_density = 2;
    }
    return CLI_OK;
}

typedef struct timing {
    char name[48];
    double median, min, max, density;
} timing;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fills a random block mask: sink, diagonal and random blocks up to
 * `density` of the block-causal blocks of each row (density 1: dense);
 * `hq` counts the (sequence, head) pairs, every one a set of nq rows. */
static double fill_mask(int32_t *counts, int32_t *indices, int hq, int nq,
                        int nk, double density, uint64_t seed) {
    long long chosen = 0, allowed_total = 0;
    for (int h = 0; h < hq; h++)
        for (int i = 0; i < nq; i++) {
            int diag = i + (nk - nq), n = 0;
            int32_t *row = indices + ((size_t)h * nq + i) * nk;
            for (int j = 0; j <= diag; j++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                double u = (double)(seed >> 11) / 9007199254740992.0;
                if (j == 0 || j == diag || u < density)
                    row[n++] = j;
            }
            counts[(size_t)h * nq + i] = n;
            chosen += n;
            allowed_total += diag + 1;
        }
    return (double)chosen / (double)allowed_total;
}

/* Everything one bench run holds on the device. */
typedef struct bench_state {
    const prism_driver *drv;
    prism_plan *plan;
    const prism_config *cfg;
    prism_batch batch;
    int copies;
    prism_tensor q[3], k[3], v[3], o;
    prism_block_mask prism_mask;
    /* --paged: K and V in page pools through a shuffled page table */
    bool use_paged;            /* launch_stage runs the paged batch       */
    prism_batch paged_batch;   /* batch with .paged = &pg                 */
    prism_paged_kv pg;
    prism_tensor kp, vp;
    float *pooled_cache;       /* --pooled-cache: zeroed once, device      */
    CUdeviceptr flush; /* BENCH_FLUSH_BYTES cleared before each rep; 0: none */
    CUdeviceptr allocs[32];
    int n_allocs;
} bench_state;

static CUdeviceptr dev_alloc(bench_state *s, size_t bytes) {
    CUdeviceptr p = 0;
    if (s->n_allocs >= 32 || s->drv->mem_alloc(&p, bytes) != CUDA_SUCCESS)
        return 0;
    s->allocs[s->n_allocs++] = p;
    return p;
}

/* Four times the L2 of an H100 or H200 (50 MB), triton's choice. */
#define BENCH_FLUSH_BYTES ((size_t)256 << 20)

typedef enum stage { STAGE_ESTIMATE, STAGE_ATTENTION, STAGE_PREFILL } stage;

static prism_status launch_stage(bench_state *s, stage st, int copy,
                                 const prism_block_mask *mask) {
    const prism_batch *b = s->use_paged ? &s->paged_batch : &s->batch;
    const prism_tensor *k = s->use_paged ? &s->kp : &s->k[copy];
    const prism_tensor *v = s->use_paged ? &s->vp : &s->v[copy];
    switch (st) {
    case STAGE_ESTIMATE:
        return prism_estimate(s->plan, b, &s->q[copy], k, &s->prism_mask,
                              NULL, 0, NULL);
    case STAGE_ATTENTION:
        return prism_sparse_attention(s->plan, b, &s->q[copy], k, v, mask,
                                      &s->o, NULL, NULL, 0, NULL);
    case STAGE_PREFILL:
        return prism_prefill(s->plan, b, &s->q[copy], k, v, &s->o, NULL,
                             &s->prism_mask, NULL, 0, NULL);
    }
    return PRISM_ERR_INTERNAL;
}

/* Warm-up, then `reps` timed launches with CUDA events. */
static bool time_stage(bench_state *s, stage st, const prism_block_mask *mask,
                       int reps, timing *t) {
    CUevent start, stop;
    s->drv->event_create(&start, CU_EVENT_DEFAULT);
    s->drv->event_create(&stop, CU_EVENT_DEFAULT);
    double *ms = calloc((size_t)reps, sizeof *ms);
    char cuda_err[PRISM_ERRMSG_MAX] = "";
    bool ok = ms != NULL;
    for (int r = -2; ok && r < reps; r++) {
        int copy = (r + 2) % s->copies;
        if (s->flush)
            ok = s->drv->memset_d8_async(s->flush, (unsigned char)r,
                                         BENCH_FLUSH_BYTES, NULL) == CUDA_SUCCESS;
        s->drv->event_record(start, NULL);
        ok = ok && launch_stage(s, st, copy, mask) == PRISM_OK;
        s->drv->event_record(stop, NULL);
        float elapsed = 0;
        ok = ok && prism_event_elapsed(s->drv, start, stop, "kernel execution",
                                       &elapsed, cuda_err,
                                       sizeof cuda_err) == PRISM_OK;
        if (ok && r >= 0)
            ms[r] = elapsed;
    }
    if (ok) {
        qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
        t->median = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
        t->min = ms[0];
        t->max = ms[reps - 1];
    } else {
        fprintf(stderr, "prism: bench stage %s failed: %s\n", t->name,
                cuda_err[0] ? cuda_err : prism_plan_last_error(s->plan));
    }
    free(ms);
    s->drv->event_destroy(start);
    s->drv->event_destroy(stop);
    return ok;
}

/* Near-Gaussian values in the config's dtype, the same sequence each call. */
static void fill_iid(uint16_t *host, size_t n, prism_dtype dtype) {
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    prism_fill_gaussian16(host, n, dtype, &x);
}

static void round_to(uint16_t *dst, const float *src, size_t n,
                     prism_dtype dtype) {
    for (size_t i = 0; i < n; i++)
        dst[i] = prism_f32_to_half(src[i], dtype);
}

/* Host Q, K, V ([B, Hq|Hkv, S, D] in the config's dtype): iid, or the
 * reference workload `a->workload` built at this length. */
static bool host_inputs(const prism_config *c, const bench_args *a,
                        uint16_t *hq, uint16_t *hk, uint16_t *hv,
                        size_t q_elems, size_t k_elems) {
    if (!a->use_workload) {
        fill_iid(hq, q_elems, c->dtype);
        fill_iid(hk, k_elems, c->dtype);
        for (size_t i = 0; i < k_elems; i++) /* V: K shifted, not K itself */
            hv[i] = hk[(i + 7) % k_elems];
        return true;
    }
    prism_workload w;
    char err[PRISM_ERRMSG_MAX];
    if (prism_ref_workload_build(c, a->batch, a->sq, a->seq, a->workload, 1, &w, err,
                                 sizeof err) != PRISM_OK) {
        cli_fail("%s", err);
        return false;
    }
    round_to(hq, w.q, q_elems, c->dtype);
    round_to(hk, w.k, k_elems, c->dtype);
    round_to(hv, w.v, k_elems, c->dtype);
    prism_ref_workload_free(&w);
    return true;
}

/* One page pool ([pages, page_size, Hkv, D] or [pages, Hkv, page_size,
 * D]) holding host x ([B, Hkv, S, D]) through `table`. */
static CUdeviceptr page_pool(bench_state *s, const uint16_t *x, int B, int S,
                             const int32_t *table, int max_pages, int pages,
                             int ps, bool hnd) {
    size_t d = (size_t)s->cfg->head_dim, hkv = (size_t)s->cfg->kv_heads;
    size_t elems = (size_t)pages * ps * hkv * d;
    uint16_t *pool = calloc(elems, 2);
    if (!pool)
        return 0;
    for (int b = 0; b < B; b++)
        for (size_t h = 0; h < hkv; h++)
            for (int t = 0; t < S; t++) {
                size_t page = (size_t)table[(size_t)b * max_pages + t / ps];
                size_t row = (size_t)(t % ps);
                size_t at = hnd ? ((page * hkv + h) * ps + row) * d
                                : ((page * ps + row) * hkv + h) * d;
                memcpy(pool + at, x + (((size_t)b * hkv + h) * S + t) * d,
                       d * 2);
            }
    CUdeviceptr dev = dev_alloc(s, elems * 2);
    if (dev && s->drv->memcpy_htod(dev, pool, elems * 2) != CUDA_SUCCESS)
        dev = 0;
    free(pool);
    return dev;
}

/* --paged: K and V in pages of a->page_size tokens, the pages of all
 * sequences shuffled, so that no sequence's keys are contiguous. */
static bool make_paged(bench_state *s, const bench_args *a, const uint16_t *hk,
                       const uint16_t *hv) {
    int ps = a->page_size, max_pages = (a->seq + ps - 1) / ps;
    int pages = a->batch * max_pages;
    bool hnd = a->layout && !strcmp(a->layout, "hnd");
    int32_t *table = malloc((size_t)pages * sizeof *table);
    if (!table)
        return false;
    for (int i = 0; i < pages; i++)
        table[i] = i;
    uint64_t x = 0x243f6a8885a308d3ULL;
    for (int i = pages - 1; i > 0; i--) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int j = (int)((x >> 33) % (uint64_t)(i + 1));
        int32_t t = table[i];
        table[i] = table[j];
        table[j] = t;
    }
    size_t d = (size_t)s->cfg->head_dim, hkv = (size_t)s->cfg->kv_heads;
    CUdeviceptr dt = dev_alloc(s, (size_t)pages * 4);
    CUdeviceptr kp = page_pool(s, hk, a->batch, a->seq, table, max_pages,
                               pages, ps, hnd);
    CUdeviceptr vp = page_pool(s, hv, a->batch, a->seq, table, max_pages,
                               pages, ps, hnd);
    bool ok = dt && kp && vp &&
              s->drv->memcpy_htod(dt, table, (size_t)pages * 4) == CUDA_SUCCESS;
    free(table);
    size_t cache = prism_paged_pooled_bytes(s->cfg, pages, ps, (int)hkv);
    CUdeviceptr dc = ok && a->pooled_cache ? dev_alloc(s, cache) : 0;
    if (a->pooled_cache)
        ok = ok && dc && s->drv->memset_d32(dc, 0, cache / 4) == CUDA_SUCCESS;
    s->pg = (prism_paged_kv){(const int32_t *)(uintptr_t)dt, max_pages, ps,
                             pages, NULL};
    int64_t page_stride = (int64_t)(ps * hkv * d);
    s->kp = hnd ? (prism_tensor){(void *)(uintptr_t)kp, page_stride,
                                 (int64_t)(ps * d), (int64_t)d}
                : (prism_tensor){(void *)(uintptr_t)kp, page_stride,
                                 (int64_t)d, (int64_t)(hkv * d)};
    s->vp = s->kp;
    s->vp.data = (void *)(uintptr_t)vp;
    s->paged_batch = s->batch;
    s->paged_batch.paged = &s->pg;
    s->pooled_cache = (float *)(uintptr_t)dc;
    return ok;
}

/* Device inputs: `copies` device copies of Q, K and V, and O. */
static bool make_inputs(bench_state *s, const bench_args *a) {
    const prism_config *c = s->cfg;
    int seq = a->seq, sq = a->sq;
    size_t d = (size_t)c->head_dim;
    size_t q_elems = (size_t)a->batch * c->q_heads * sq * d;
    size_t k_elems = (size_t)a->batch * c->kv_heads * seq * d;
    uint16_t *hq = malloc(q_elems * 2), *hk = malloc(k_elems * 2),
             *hv = malloc(k_elems * 2);
    bool ok = hq && hk && hv &&
              host_inputs(c, a, hq, hk, hv, q_elems, k_elems);
    size_t total = (q_elems * 2 + k_elems * 2) * 2;
    s->copies = total * 3 < ((size_t)3 << 30) ? 3 : 1;
    for (int cp = 0; cp < s->copies && ok; cp++) {
        CUdeviceptr q = dev_alloc(s, q_elems * 2), k = dev_alloc(s, k_elems * 2),
                    v = dev_alloc(s, k_elems * 2);
        ok = q && k && v &&
             s->drv->memcpy_htod(q, hq, q_elems * 2) == CUDA_SUCCESS &&
             s->drv->memcpy_htod(k, hk, k_elems * 2) == CUDA_SUCCESS &&
             s->drv->memcpy_htod(v, hv, k_elems * 2) == CUDA_SUCCESS;
        s->q[cp] = (prism_tensor){(void *)(uintptr_t)q, (int64_t)(c->q_heads * sq * d),
                                  (int64_t)(sq * d), (int64_t)d};
        s->k[cp] = (prism_tensor){(void *)(uintptr_t)k, (int64_t)(c->kv_heads * seq * d),
                                  (int64_t)(seq * d), (int64_t)d};
        s->v[cp] = s->k[cp];
        s->v[cp].data = (void *)(uintptr_t)v;
    }
    if (ok && a->page_size)
        ok = make_paged(s, a, hk, hv);
    CUdeviceptr o = ok ? dev_alloc(s, q_elems * 2) : 0;
    s->o = s->q[0];
    s->o.data = (void *)(uintptr_t)o;
    free(hq);
    free(hk);
    free(hv);
    return ok && o;
}

static bool upload_mask(bench_state *s, double density, prism_block_mask *m,
                        double *actual) {
    int hq = s->batch.batch * s->cfg->q_heads, nq = s->prism_mask.nq,
        nk = s->prism_mask.nk;
    size_t rows = (size_t)hq * nq;
    int32_t *counts = malloc(rows * sizeof *counts);
    int32_t *indices = malloc(rows * nk * sizeof *indices);
    bool ok = counts && indices;
    if (ok) {
        *actual = fill_mask(counts, indices, hq, nq, nk, density, 12345);
        CUdeviceptr dc = dev_alloc(s, rows * 4), di = dev_alloc(s, rows * nk * 4);
        ok = dc && di &&
             s->drv->memcpy_htod(dc, counts, rows * 4) == CUDA_SUCCESS &&
             s->drv->memcpy_htod(di, indices, rows * nk * 4) == CUDA_SUCCESS;
        *m = (prism_block_mask){(int32_t *)(uintptr_t)dc,
                                (int32_t *)(uintptr_t)di, nq, nk};
    }
    free(counts);
    free(indices);
    return ok;
}

/* A stage over the page pools (--paged), right after its contiguous
 * twin: a same-run A/B. */
static bool time_paged(bench_state *s, stage st, const prism_block_mask *mask,
                       int reps, timing *t) {
    s->use_paged = true;
    bool ok = time_stage(s, st, mask, reps, t);
    s->use_paged = false;
    return ok;
}

/* The estimate over pages, and with --pooled-cache through the cache: its
 * warm-up writes every full block's entry, the timed repetitions read
 * them (a chunk over a prefix whose blocks earlier chunks pooled). */
static bool time_paged_estimates(bench_state *s, const bench_args *a,
                                 timing *t, int *n) {
    snprintf(t[*n].name, sizeof t[*n].name, "prism estimate (paged)");
    if (!time_paged(s, STAGE_ESTIMATE, NULL, a->reps, &t[(*n)++]))
        return false;
    if (!a->pooled_cache)
        return true;
    s->pg.pooled_keys = s->pooled_cache;
    snprintf(t[*n].name, sizeof t[*n].name, "prism estimate (cached)");
    bool ok = time_paged(s, STAGE_ESTIMATE, NULL, a->reps, &t[(*n)++]);
    s->pg.pooled_keys = NULL;
    return ok;
}

static void print_timing(FILE *f, const timing *t, double flops, bool json,
                         bool last) {
    double tf = t->density > 0 ? flops * t->density / (t->median * 1e9) : 0;
    if (json)
        fprintf(f, "  {\"stage\": \"%s\", \"ms\": %.4f, \"min\": %.4f, "
                   "\"max\": %.4f, \"density\": %.4f, \"tflops\": %.1f}%s\n",
                t->name, t->median, t->min, t->max, t->density, tf,
                last ? "" : ",");
    else if (t->density > 0)
        fprintf(f, "%-24s %10.3f ms  (min %.3f, max %.3f)  density %.3f  "
                   "%6.1f TFLOP/s\n",
                t->name, t->median, t->min, t->max, t->density, tf);
    else
        fprintf(f, "%-24s %10.3f ms  (min %.3f, max %.3f)\n", t->name,
                t->median, t->min, t->max);
}

static int bench_run(const prism_config *cfg, const bench_args *a) {
    char err[PRISM_ERRMSG_MAX];
    int rc = CLI_FAIL, n = 0;
    timing t[16];
    memset(t, 0, sizeof t);
    bench_state s;
    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    prism_context *ctx = cli_context();
    if (!ctx)
        return CLI_FAIL;
    /* a paged run gets the paged programs with the plan, not in its
     * first timed launch */
    prism_plan_limits lim = {a->batch, a->sq, a->seq, false,
                             a->page_size > 0};
    if (prism_plan_create(ctx, cfg, &lim, &s.plan) != PRISM_OK) {
        cli_fail("%s", prism_context_last_error(ctx));
        goto done;
    }
    if (prism_driver_get(&s.drv, err, sizeof err) != PRISM_OK) {
        cli_fail("%s", err);
        goto done;
    }
    s.batch = (prism_batch){.dtype = cfg->dtype, .batch = a->batch, .seqlen_q = a->sq,
                            .seqlen_k = a->seq};
    int nq = (a->sq + cfg->block_size - 1) / cfg->block_size;
    int nk = (a->seq + cfg->block_size - 1) / cfg->block_size;
    size_t mask_rows = (size_t)a->batch * cfg->q_heads * nq;
    CUdeviceptr mc = dev_alloc(&s, mask_rows * 4);
    CUdeviceptr mi = dev_alloc(&s, mask_rows * nk * 4);
    s.prism_mask = (prism_block_mask){(int32_t *)(uintptr_t)mc,
                                      (int32_t *)(uintptr_t)mi, nq, nk};
    s.flush = a->no_flush ? 0 : dev_alloc(&s, BENCH_FLUSH_BYTES);
    if (!mc || !mi || (!a->no_flush && !s.flush) || !make_inputs(&s, a)) {
        cli_fail("could not set up the inputs for seq %d (GPU memory or "
                 "workload)", a->seq);
        goto done;
    }
    double prism_density = 0;
    snprintf(t[n].name, sizeof t[n].name, "prism estimate");
    if (!time_stage(&s, STAGE_ESTIMATE, NULL, a->reps, &t[n++]) ||
        prism_plan_density(s.plan, &prism_density) != PRISM_OK)
        goto done;
    if (a->page_size && !time_paged_estimates(&s, a, t, &n))
        goto done;
    snprintf(t[n].name, sizeof t[n].name, "attention (prism mask)");
    t[n].density = prism_density;
    if (!time_stage(&s, STAGE_ATTENTION, &s.prism_mask, a->reps, &t[n++]))
        goto done;
    if (a->page_size) {
        snprintf(t[n].name, sizeof t[n].name, "attention (prism, paged)");
        t[n].density = prism_density;
        if (!time_paged(&s, STAGE_ATTENTION, &s.prism_mask, a->reps, &t[n++]))
            goto done;
    }
    snprintf(t[n].name, sizeof t[n].name, "prism prefill (total)");
    t[n].density = prism_density;
    if (!time_stage(&s, STAGE_PREFILL, NULL, a->reps, &t[n++]))
        goto done;
    double densities[9] = {1.0};
    memcpy(densities + 1, a->density, sizeof(double) * (size_t)a->n_density);
    for (int i = 0; i <= a->n_density; i++) {
        prism_block_mask m;
        double actual = 0;
        if (!upload_mask(&s, densities[i], &m, &actual)) {
            cli_fail("out of GPU memory for a block mask");
            goto done;
        }
        snprintf(t[n].name, sizeof t[n].name, i ? "attention (random %.0f%%)"
                                                : "attention (dense)",
                 densities[i] * 100);
        t[n].density = actual;
        if (!time_stage(&s, STAGE_ATTENTION, &m, a->reps, &t[n++]))
            goto done;
        if (i == 0 && a->page_size) {
            snprintf(t[n].name, sizeof t[n].name, "attention (dense, paged)");
            t[n].density = actual;
            if (!time_paged(&s, STAGE_ATTENTION, &m, a->reps, &t[n++]))
                goto done;
        }
    }
    /* causal keys: Sq (Sk - Sq) + Sq^2 / 2 = Sq (Sk - Sq / 2); Sq^2 / 2
     * when Sq = Sk, as the 2*2*Hq*D*Sq*Sk/2 */
    double flops = 2.0 * 2.0 * a->batch * cfg->q_heads * cfg->head_dim * (double)a->sq *
                   ((double)a->seq - (double)a->sq / 2.0);
    const char *inputs = a->use_workload ? a->workload_name : "iid";
    printf("prism bench: %s, B=%d Hq=%d Hkv=%d D=%d %s, Sq=%d Sk=%d, %s inputs, "
           "%d reps, %d input copies, %s\n",
           cfg->name, a->batch, cfg->q_heads, cfg->kv_heads, cfg->head_dim,
           prism_dtype_name(cfg->dtype), a->sq, a->seq, inputs, a->reps,
           s.copies, a->no_flush ? "no flush" : "L2 flush");
    if (a->page_size)
        printf("paged K/V: pages of %d tokens, %s, shuffled%s\n", a->page_size,
               a->layout ? a->layout : "nhd",
               a->pooled_cache ? ", pooled-key cache" : "");
    for (int i = 0; i < n; i++)
        print_timing(stdout, &t[i], flops, false, false);
    if (a->json) {
        FILE *f = fopen(a->json, "w");
        if (!f) {
            cli_fail("cannot write %s: %s", a->json, strerror(errno));
            goto done;
        }
        fprintf(f, "{\"config\": \"%s\", \"batch\": %d, \"sq\": %d, \"sk\": %d, "
                   "\"hq\": %d, \"hkv\": %d, \"d\": %d, \"dtype\": \"%s\", "
                   "\"workload\": \"%s\", \"flush\": %s, \"stages\": [\n",
                cfg->name, a->batch, a->sq, a->seq, cfg->q_heads, cfg->kv_heads,
                cfg->head_dim, prism_dtype_name(cfg->dtype), inputs,
                a->no_flush ? "false" : "true");
        for (int i = 0; i < n; i++)
            print_timing(f, &t[i], flops, true, i == n - 1);
        fprintf(f, "]}\n");
        if (cli_close_file(f, a->json) != CLI_OK)
            goto done;
    }
    rc = CLI_OK;
done:
    for (int i = 0; s.drv && i < s.n_allocs; i++)
        s.drv->mem_free(s.allocs[i]);
    prism_plan_destroy(s.plan);
    prism_context_destroy(ctx);
    return rc;
}

int prism_cmd_bench(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(bench_usage, stdout);
        return CLI_OK;
    }
    bench_args a;
    int rc = parse_bench(argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    prism_config cfg;
    if (!cli_load_config(a.config, &cfg))
        return CLI_FAIL;
    return bench_run(&cfg, &a);
}
