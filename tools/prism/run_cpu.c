/*
 * run_cpu.c - `prism run --device cpu` on the LLVM CPU backend: the same
 * public API a host program uses (a context with device CPU, a plan,
 * prism_estimate / prism_sparse_attention on host pointers).
 *
 * Scoring without the reference's dense pass: the backend's dense output
 * (every block selected) is the error baseline, and a selection's recall
 * per query is exp(lse_selection - lse_dense), which is exactly the share
 * of the query's dense softmax mass that lies inside its selected blocks
 * (the selection's normaliser over the dense one).  So the CPU rows cost
 * one dense and one sparse pass of the backend each, and the reference's
 * slow dense attention is not needed.  Outputs are in the config's dtype,
 * as the API writes them, so the error column includes their rounding
 * (about 2e-3 relative for bf16).  With reps > 1 every stage runs that
 * many times and the fastest run is reported (results are identical run to
 * run), which filters out time lost to other processes on the machine.
 */
#include "tools/prism/run_cpu.h"

#include "tools/common/cli.h"
#include "runtime/cpu/cpu_backend.h"
#include "base/base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static prism_tensor contiguous(const void *data, int H, int64_t S, int D) {
    prism_tensor t = {(void *)data, (int64_t)H * S * D, S * D, D};
    return t;
}

static prism_batch batch_of(const cpu_backend_run *run) {
    prism_batch b = {.dtype = run->cfg->dtype, .batch = run->B,
                     .seqlen_q = (int)run->Sq, .seqlen_k = (int)run->Sk};
    return b;
}

prism_status cpu_backend_open(const prism_config *cfg, int B, int64_t Sq,
                              int64_t Sk, int threads, int reps,
                              cpu_backend_run *run, char *why,
                              size_t why_size) {
    memset(run, 0, sizeof *run);
    run->reps = reps > 0 ? reps : 1;
    run->cfg = cfg;
    run->B = B;
    run->Sq = Sq;
    run->Sk = Sk;
    prism_context_options o;
    prism_context_options_init(&o);
    o.device = PRISM_DEVICE_CPU;
    o.cpu_threads = threads;
    o.log_level = cli_verbose() ? PRISM_LOG_INFO : PRISM_LOG_WARN;
    prism_status st = prism_context_create(&o, &run->ctx);
    if (st != PRISM_OK)
        return prism_errorf(why, why_size, st, "cannot create a CPU context");
    prism_plan_limits limits = {B, (int)Sq, (int)Sk, false, false};
    st = prism_plan_create(run->ctx, cfg, &limits, &run->plan);
    if (st != PRISM_OK)
        return prism_errorf(why, why_size, st, "%s",
                            prism_context_last_error(run->ctx));
    const prism_cpu_plan *cpu = prism_cpu_plan_of(run->plan);
    const prism_cpu_jit_info *jit = &cpu->jit;
    snprintf(run->device, sizeof run->device,
             "llvm backend on %s, %d-bit vectors, %d threads, code %s%s",
             jit->cpu, jit->vector_bits, cpu->threads,
             jit->cache_hit ? "cached" : "compiled",
             run->reps > 1 ? ", fastest of reps" : "");
    size_t n_out = (size_t)B * cfg->q_heads * Sq;
    size_t bytes = n_out * cfg->head_dim * prism_dtype_size(cfg->dtype);
    run->o_dense = malloc(bytes);
    run->o = malloc(bytes);
    run->lse_dense = malloc(n_out * sizeof(float));
    run->lse = malloc(n_out * sizeof(float));
    run->recall = malloc(n_out * sizeof(float));
    if (!run->o_dense || !run->o || !run->lse_dense || !run->lse ||
        !run->recall)
        return prism_errorf(why, why_size, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory for the backend's outputs");
    char err[PRISM_ERRMSG_MAX];
    if ((st = prism_selection_alloc_for(&run->sel, B, cfg->q_heads, Sq, Sk,
                                        NULL, cfg->block_size, err,
                                        sizeof err)) != PRISM_OK ||
        (st = prism_selection_alloc_for(&run->full, B, cfg->q_heads, Sq, Sk,
                                        NULL, cfg->block_size, err,
                                        sizeof err)) != PRISM_OK)
        return prism_errorf(why, why_size, st, "%s", err);
    prism_selection_fill_full(&run->full);
    return PRISM_OK;
}

void cpu_backend_close(cpu_backend_run *run) {
    prism_plan_destroy(run->plan);
    prism_context_destroy(run->ctx);
    prism_selection_free(&run->sel);
    prism_selection_free(&run->full);
    free(run->o_dense);
    free(run->o);
    free(run->lse_dense);
    free(run->lse);
    free(run->recall);
    memset(run, 0, sizeof *run);
}

static int attend(cpu_backend_run *run, const void *q, const void *k,
                  const void *v, const prism_selection *sel, void *o,
                  float *lse, double *ms) {
    const prism_config *c = run->cfg;
    prism_batch b = batch_of(run);
    prism_tensor tq = contiguous(q, c->q_heads, run->Sq, c->head_dim);
    prism_tensor tk = contiguous(k, c->kv_heads, run->Sk, c->head_dim);
    prism_tensor tv = contiguous(v, c->kv_heads, run->Sk, c->head_dim);
    prism_tensor to = contiguous(o, c->q_heads, run->Sq, c->head_dim);
    prism_block_mask m = {sel->counts, sel->indices, sel->nq, sel->nk};
    for (int r = 0; r < run->reps; r++) {
        double t0 = prism_now_ms();
        if (prism_sparse_attention(run->plan, &b, &tq, &tk, &tv, &m, &to, lse,
                                   NULL, 0, NULL) != PRISM_OK)
            return cli_fail("llvm backend attention: %s",
                            prism_plan_last_error(run->plan));
        double ms_r = prism_now_ms() - t0;
        *ms = r == 0 || ms_r < *ms ? ms_r : *ms;
    }
    return CLI_OK;
}

int cpu_backend_dense(cpu_backend_run *run, const void *q, const void *k,
                      const void *v, double *attention_ms) {
    return attend(run, q, k, v, &run->full, run->o_dense, run->lse_dense,
                  attention_ms);
}

int cpu_backend_estimate(cpu_backend_run *run, const void *q, const void *k,
                         double *pool_ms, double *estimate_ms,
                         double *density) {
    const prism_config *c = run->cfg;
    prism_batch b = batch_of(run);
    prism_tensor tq = contiguous(q, c->q_heads, run->Sq, c->head_dim);
    prism_tensor tk = contiguous(k, c->kv_heads, run->Sk, c->head_dim);
    prism_block_mask m = {run->sel.counts, run->sel.indices, run->sel.nq,
                          run->sel.nk};
    for (int r = 0; r < run->reps; r++) {
        double pool_r, est_r;
        if (prism_estimate(run->plan, &b, &tq, &tk, &m, NULL, 0, NULL) !=
                PRISM_OK ||
            prism_plan_density(run->plan, density) != PRISM_OK)
            return cli_fail("llvm backend estimate: %s",
                            prism_plan_last_error(run->plan));
        if (!prism_cpu_plan_timing(run->plan, &pool_r, &est_r))
            return cli_fail("llvm backend: no stage times");
        *pool_ms = r == 0 || pool_r < *pool_ms ? pool_r : *pool_ms;
        *estimate_ms = r == 0 || est_r < *estimate_ms ? est_r : *estimate_ms;
    }
    return CLI_OK;
}

int cpu_backend_attend(cpu_backend_run *run, const void *q, const void *k,
                       const void *v, const prism_selection *sel,
                       double *attention_ms, prism_ref_summary *recall,
                       prism_ref_summary *error) {
    int rc = attend(run, q, k, v, sel, run->o, run->lse, attention_ms);
    if (rc != CLI_OK)
        return rc;
    const prism_config *c = run->cfg;
    size_t n = (size_t)run->B * c->q_heads * run->Sq;
    for (size_t i = 0; i < n; i++) {
        /* both -inf only for a query that sees nothing: nothing to miss */
        double share = isinf(run->lse_dense[i])
                           ? 1.0
                           : exp((double)run->lse[i] - run->lse_dense[i]);
        run->recall[i] = (float)(share < 1.0 ? share : 1.0);
    }
    *recall = prism_ref_recall_summary(run->recall, run->B, c->q_heads,
                                       run->Sq, NULL);
    prism_tensor_view ov = prism_view_bhsd(run->o, c->dtype, run->B,
                                           c->q_heads, run->Sq, c->head_dim);
    prism_tensor_view dv = prism_view_bhsd(run->o_dense, c->dtype, run->B,
                                           c->q_heads, run->Sq, c->head_dim);
    char err[PRISM_ERRMSG_MAX];
    if (prism_ref_output_error(&ov, &dv, NULL, error, NULL, err, sizeof err) !=
        PRISM_OK)
        return cli_fail("%s", err);
    return CLI_OK;
}
