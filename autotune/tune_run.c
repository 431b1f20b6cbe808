/*
 * tune_run.c - one `prism autotune` run: devices, jobs, tasks, budget.
 *
 * A job is one (kernel, length bucket) and becomes one database entry; a
 * task is one candidate of one job to verify and time.  The run is a
 * pipeline: compile workers (one per CPU) build candidates in order --
 * every kernel's default first, since nothing can be compared before its
 * reference exists -- and each candidate that may be timed becomes a task
 * of every job of its kernel at once (the cubin does not depend on the
 * length).  One thread per GPU takes tasks as they appear, so the GPUs
 * time while NVRTC still compiles and a small budget still ends with
 * usable entries.  While compiling goes on the GPUs stay on the first
 * bucket; afterwards they take buckets in order, so each GPU makes the
 * inputs of a bucket once.
 *
 * Results go straight into their job's entry (the merge of several GPUs is
 * just that).  An entry is written from a snapshot taken under the lock:
 * when its job has nothing left, every 30 s while it runs, and at the end,
 * so an interrupted run loses little and `--resume` starts from the
 * files.  Several GPUs must be the same model with the same software (one
 * device key): timings of different devices are not comparable.
 */
#include "autotune/tune_run.h"

#include "runtime/context.h"
#include "base/fs.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void prism_autotune_report_free(prism_autotune_report *r) {
    if (!r)
        return;
    free(r->rows);
    r->rows = NULL;
    r->n_rows = 0;
}

/* ---- compiling ----------------------------------------------------------- */

static void push_task(job *j, int cand) { j->queue[j->tail++] = cand; }

/* Under the lock: how a compiled candidate of kernel k was checked for
 * spills (a failed build counts as reported); the first that could not
 * be checked at all says so, once per run. */
static void count_spill_check(run *R, int k, prism_autotune_spills how) {
    if (how == PRISM_SPILLS_FROM_FRAME)
        R->rep->spills_from_frame++;
    if (how != PRISM_SPILLS_UNKNOWN || R->rep->spills_unknown++ > 0)
        return;
    prism_log(&R->ctx->logger, PRISM_LOG_WARN,
              "autotune: NVRTC reported no spills for %s and its cubin could "
              "not be read; candidates that spill are timed, not pruned",
              prism_kernel_def_at(k)->name);
}

/* Under the lock: candidate i of kernel k is compiled (or pruned).  A
 * ready candidate becomes a task of every job of its kernel once the
 * kernel's default (the reference) is ready too. */
static void compiled(run *R, int k, int i) {
    space *s = &R->spaces[k];
    bool ready = s->builds[i].ready;
    bool base_failed = s->builds[0].attempted && !s->builds[0].ready;
    R->rep->compiled += ready;
    R->rep->pruned_at_compile += s->cands[i].status == PRISM_TUNE_PRUNED;
    if (s->builds[i].attempted)
        count_spill_check(R, k, s->builds[i].spills);
    if (i == 0 && !ready)
        prism_log(&R->ctx->logger, PRISM_LOG_WARN,
                  "autotune: the untuned %s kernel does not build (%s); it "
                  "is not tuned",
                  prism_kernel_def_at(k)->name, s->cands[0].reason);
    for (int jj = 0; jj < R->n_jobs; jj++) {
        job *j = &R->jobs[jj];
        if (j->kernel != k)
            continue;
        prism_tune_candidate *c = &j->entry.candidates[i];
        if (c->status == PRISM_TUNE_UNTIMED) {
            c->registers = s->cands[i].registers;
            c->spill_bytes = s->cands[i].spill_bytes;
            c->shared_bytes = s->cands[i].shared_bytes;
            if (s->cands[i].status == PRISM_TUNE_PRUNED) {
                c->status = PRISM_TUNE_PRUNED;
                memcpy(c->reason, s->cands[i].reason, sizeof c->reason);
                if (!base_failed || i == 0)
                    R->expected--;
            } else if (ready && s->builds[0].ready) {
                push_task(j, i);
            }
        }
        if (i != 0)
            continue;
        for (int m = 1; m < s->n; m++) {
            const prism_tune_candidate *w = &j->entry.candidates[m];
            if (w->status != PRISM_TUNE_UNTIMED)
                continue;
            if (!ready)
                R->expected--; /* nothing of this kernel will be timed */
            else if (s->builds[m].ready)
                push_task(j, m); /* it was waiting for the reference */
        }
    }
}

static void *compile_main(void *arg) {
    run *R = arg;
    prism_context *wctx = NULL;
    if (prism_autotune_context_like(R->ctx, 0, &wctx) != PRISM_OK)
        wctx = NULL;
    for (;;) {
        pthread_mutex_lock(&R->lock);
        int at = -1;
        if (wctx && R->next_compile < R->n_order) {
            if (R->deadline > 0 && prism_now_ms() > R->deadline)
                R->out_of_budget = true;
            else
                at = R->next_compile++;
        }
        pthread_mutex_unlock(&R->lock);
        if (at < 0)
            break;
        cref c = R->order[at];
        space *s = &R->spaces[c.kernel];
        prism_tune_candidate cand = s->cands[c.cand]; /* fixed since made */
        prism_autotune_build build = {0};
        prism_autotune_compile_one(wctx, R->cfg, c.kernel, R->arch, c.cand == 0,
                                   &cand, &build);
        pthread_mutex_lock(&R->lock);
        s->cands[c.cand] = cand;
        s->builds[c.cand] = build;
        prism_autotune_dedupe(c.kernel, s->cands, s->builds, s->n, c.cand);
        compiled(R, c.kernel, c.cand);
        pthread_cond_broadcast(&R->changed);
        pthread_mutex_unlock(&R->lock);
    }
    prism_context_destroy(wctx);
    pthread_mutex_lock(&R->lock);
    if (--R->compile_workers == 0) {
        R->compile_done = true;
        pthread_cond_broadcast(&R->changed);
    }
    pthread_mutex_unlock(&R->lock);
    return NULL;
}

/* ---- measuring ----------------------------------------------------------- */

/* Under the lock: a copy of the entry, to write outside it. */
static bool snapshot(job *j, prism_tune_entry *out) {
    const prism_tune_entry *e = &j->entry;
    *out = *e;
    out->candidates = malloc(sizeof *e->candidates * (size_t)e->n_candidates);
    if (!out->candidates)
        return false;
    memcpy(out->candidates, e->candidates,
           sizeof *e->candidates * (size_t)e->n_candidates);
    out->complete = true;
    for (int i = 0; i < e->n_candidates; i++)
        out->complete =
            out->complete && e->candidates[i].status != PRISM_TUNE_UNTIMED;
    prism_fs_utc_date((int64_t)time(NULL), out->date, sizeof out->date);
    j->dirty = false;
    j->last_write = prism_now_ms();
    return true;
}

/* Writes the job's entry if it has unwritten results.  Snapshots are
 * taken and written under R->io, so a newer one is never overwritten by
 * an older one that another thread was still writing. */
static void save_job(run *R, job *j) {
    prism_tune_entry snap;
    char err[PRISM_ERRMSG_MAX];
    pthread_mutex_lock(&R->io);
    pthread_mutex_lock(&R->lock);
    bool ok = j->dirty && snapshot(j, &snap);
    pthread_mutex_unlock(&R->lock);
    if (ok) {
        if (prism_tune_entry_write(R->tune_dir, &snap, NULL, err, sizeof err) !=
            PRISM_OK)
            prism_log(&R->ctx->logger, PRISM_LOG_WARN, "autotune: %s", err);
        prism_tune_entry_free(&snap);
    }
    pthread_mutex_unlock(&R->io);
}

static double best_ms(const prism_tune_entry *e) {
    int b = prism_tune_entry_best(e);
    return b >= 0 ? e->candidates[b].median_ms : 0;
}

/* Under the lock: tells the caller about a finished task. */
static void report_progress(run *R, const job *j, const prism_tune_candidate *c,
                            int ordinal) {
    if (!R->o->progress)
        return;
    char values[160];
    const prism_kernel_def *def = prism_kernel_def_at(j->kernel);
    prism_tune_values_text(def, c->values, values, sizeof values);
    double now = prism_now_ms();
    double elapsed = (now - R->t0) / 1000, left = (R->deadline - now) / 1000;
    int total = R->expected > R->done_tasks ? R->expected : R->done_tasks;
    double eta =
        R->done_tasks ? elapsed / R->done_tasks * (total - R->done_tasks) : 0;
    if (R->deadline > 0 && eta > left)
        eta = left > 0 ? left : 0;
    const prism_tune_candidate *d = &j->entry.candidates[0];
    prism_autotune_progress p = {
        .done = R->done_tasks,
        .total = total,
        .kernel = def->name,
        .bucket = j->bucket,
        .values = values,
        .status = c->status,
        .reason = c->reason,
        .ms = c->status == PRISM_TUNE_OK ? c->median_ms : 0,
        .best_ms = best_ms(&j->entry),
        .default_ms = d->status == PRISM_TUNE_OK ? d->median_ms : 0,
        .elapsed_s = elapsed,
        .eta_s = eta,
        .device = ordinal};
    R->o->progress(R->o->progress_user, &p);
}

/* Under the lock: the next task, in job order; while candidates are still
 * compiling, only from the first bucket. */
static job *take_task(run *R, int *cand) {
    for (int jj = 0; jj < R->n_jobs; jj++) {
        job *j = &R->jobs[jj];
        if (!R->compile_done && j->bucket != R->jobs[0].bucket)
            return NULL;
        if (j->head < j->tail) {
            *cand = j->queue[j->head++];
            j->inflight++;
            return j;
        }
    }
    return NULL;
}

/* Under the lock: waits for a task; NULL when there is none to come or the
 * budget is spent. */
static job *next_task(run *R, int *cand) {
    for (;;) {
        if (R->deadline > 0 && prism_now_ms() > R->deadline) {
            R->out_of_budget = true;
            return NULL;
        }
        job *j = take_task(R, cand);
        if (j || R->compile_done)
            return j;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&R->changed, &R->lock, &ts);
    }
}

typedef struct device_arg {
    run *R;
    int ordinal;
    pthread_t thread;
    bool started;
} device_arg;

static void *device_main(void *arg) {
    device_arg *a = arg;
    run *R = a->R;
    char err[PRISM_ERRMSG_MAX];
    tune_gpu *g = NULL;
    prism_config *cand = malloc(sizeof *cand);
    if (!cand ||
        tune_gpu_open(R->ctx, a->ordinal, &g, err, sizeof err) != PRISM_OK) {
        prism_log(&R->ctx->logger, PRISM_LOG_WARN, "autotune: GPU %d: %s",
                  a->ordinal, cand ? err : "out of memory");
        free(cand);
        return NULL;
    }
    pthread_mutex_lock(&R->lock);
    for (;;) {
        int i = -1;
        job *j = next_task(R, &i);
        if (!j)
            break;
        prism_tune_candidate c = j->entry.candidates[i];
        const space *s = &R->spaces[j->kernel];
        pthread_mutex_unlock(&R->lock);
        prism_status st = tune_gpu_prepare(g, R->cfg, j->seq, R->dens,
                                           R->n_dens, err, sizeof err);
        if (st == PRISM_OK)
            st = prism_autotune_candidate_config(R->cfg, j->kernel, c.values,
                                                 cand, err, sizeof err);
        if (st == PRISM_OK) {
            tune_gpu_measure(g, j->stage, s->ref_cfg, cand, &c);
        } else {
            c.status = PRISM_TUNE_FAILED;
            prism_strlcpy(c.reason, err, sizeof c.reason);
        }
        pthread_mutex_lock(&R->lock);
        j->entry.candidates[i] = c;
        j->inflight--;
        j->finished++;
        j->dirty = true;
        R->done_tasks++;
        report_progress(R, j, &c, a->ordinal);
        bool over = R->compile_done && j->head == j->tail && !j->inflight;
        bool write = over || prism_now_ms() - j->last_write > 30000;
        pthread_mutex_unlock(&R->lock);
        if (write)
            save_job(R, j);
        bool broken = tune_gpu_broken(g, err, sizeof err);
        if (broken)
            prism_log(&R->ctx->logger, PRISM_LOG_WARN,
                      "autotune: GPU %d is unusable after a failed launch "
                      "(%s); it takes no more candidates",
                      a->ordinal, err);
        pthread_mutex_lock(&R->lock);
        if (broken)
            break;
    }
    pthread_mutex_unlock(&R->lock);
    tune_gpu_close(g);
    free(cand);
    return NULL;
}

/* Compile workers and one thread per GPU, until the work or the budget
 * runs out; then every entry with unwritten results is written. */
static void run_pipeline(run *R) {
    int nc = R->ctx->options.compile_threads;
    nc = nc < 1 ? 1 : nc > 64 ? 64 : nc;
    pthread_t compilers[64];
    device_arg args[PRISM_TUNE_MAX_DEVICES];
    memset(args, 0, sizeof args);
    int started = 0;
    R->compile_workers = nc;
    for (int i = 0; i < nc; i++)
        if (pthread_create(&compilers[started], NULL, compile_main, R) == 0)
            started++;
    pthread_mutex_lock(&R->lock);
    R->compile_workers -= nc - started;
    if (R->compile_workers == 0)
        R->compile_done = true; /* no thread at all: nothing compiles */
    pthread_mutex_unlock(&R->lock);
    for (int i = 0; i < R->n_dev; i++) {
        args[i].R = R;
        args[i].ordinal = R->ordinals[i];
        args[i].started =
            pthread_create(&args[i].thread, NULL, device_main, &args[i]) == 0;
        if (!args[i].started)
            prism_log(&R->ctx->logger, PRISM_LOG_WARN,
                      "autotune: cannot start a thread for GPU %d",
                      R->ordinals[i]);
    }
    for (int i = 0; i < R->n_dev; i++)
        if (args[i].started)
            pthread_join(args[i].thread, NULL);
    /* the GPUs are done (or gone): stop compiling what nobody will time */
    pthread_mutex_lock(&R->lock);
    R->next_compile = R->n_order;
    pthread_mutex_unlock(&R->lock);
    for (int i = 0; i < started; i++)
        pthread_join(compilers[i], NULL);
    for (int jj = 0; jj < R->n_jobs; jj++)
        save_job(R, &R->jobs[jj]);
}

static void fill_report(run *R, prism_autotune_report *rep) {
    for (int jj = 0; jj < R->n_jobs; jj++) {
        job *j = &R->jobs[jj];
        const prism_tune_entry *e = &j->entry;
        prism_autotune_row *row = &rep->rows[rep->n_rows++];
        memset(row, 0, sizeof *row);
        prism_strlcpy(row->kernel, e->kernel, sizeof row->kernel);
        row->bucket = j->bucket;
        row->candidates = e->n_candidates;
        if (j->last_write > 0)
            prism_strlcpy(row->path, j->path, sizeof row->path);
        if (e->n_candidates && e->candidates[0].status == PRISM_TUNE_OK)
            row->default_ms = e->candidates[0].median_ms;
        int best = prism_tune_entry_best(e);
        if (best >= 0) {
            row->tuned_ms = e->candidates[best].median_ms;
            prism_tune_values_text(prism_kernel_def_at(j->kernel),
                                   e->candidates[best].values, row->best,
                                   sizeof row->best);
        }
        for (int i = 0; i < e->n_candidates; i++) {
            switch (e->candidates[i].status) {
            case PRISM_TUNE_OK:
                row->timed++;
                break;
            case PRISM_TUNE_PRUNED:
                row->pruned++;
                break;
            case PRISM_TUNE_FAILED:
                row->failed++;
                break;
            case PRISM_TUNE_MISMATCH:
                row->mismatched++;
                break;
            case PRISM_TUNE_UNTIMED:
                row->untimed++;
                break;
            }
        }
    }
}

prism_status prism_autotune_run(prism_context *ctx,
                                const prism_autotune_options *o,
                                prism_autotune_report *rep) {
    if (!ctx || !o || !o->cfg || !rep)
        return prism_context_fail(ctx, PRISM_ERR_NULL_POINTER,
                                  "prism_autotune_run: NULL argument");
    memset(rep, 0, sizeof *rep);
    run *R = calloc(1, sizeof *R);
    if (!R)
        return prism_context_fail(ctx, PRISM_ERR_OUT_OF_MEMORY,
                                  "out of memory");
    R->ctx = ctx;
    R->o = o;
    R->cfg = o->cfg;
    R->rep = rep;
    R->t0 = prism_now_ms();
    R->deadline = o->budget_s > 0 ? R->t0 + o->budget_s * 1000 : 0;
    pthread_mutex_init(&R->lock, NULL);
    pthread_mutex_init(&R->io, NULL);
    pthread_cond_init(&R->changed, NULL);
    prism_status st;
    if ((st = tune_run_check_options(R)) != PRISM_OK ||
        (st = tune_run_probe_devices(R)) != PRISM_OK ||
        (st = tune_run_open_tune_dir(R)) != PRISM_OK)
        goto done;
    if ((st = prism_tune_config_hash(R->cfg, R->cfg_hash)) != PRISM_OK) {
        tune_run_fail(R, st, "out of memory hashing the config");
        goto done;
    }
    if ((st = tune_run_make_jobs(R)) != PRISM_OK ||
        (st = tune_run_plan_compiles(R)) != PRISM_OK)
        goto done;
    rep->rows = calloc((size_t)R->n_jobs + 1, sizeof *rep->rows);
    if (!rep->rows) {
        st = tune_run_fail(R, PRISM_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    run_pipeline(R);
    fill_report(R, rep);
    rep->out_of_budget = R->out_of_budget;
    if (R->expected > R->done_tasks && !R->out_of_budget)
        st = tune_run_fail(R, PRISM_ERR_CUDA,
                           "autotune: %d of %d candidates were not measured: "
                           "no GPU could take them (see the warnings above); "
                           "what was measured is in %s",
                           R->expected - R->done_tasks, R->expected,
                           R->tune_dir);
done:
    rep->device = R->device;
    rep->arch = R->arch;
    rep->n_devices = R->n_dev;
    prism_strlcpy(rep->tune_dir, R->tune_dir, sizeof rep->tune_dir);
    rep->elapsed_s = (prism_now_ms() - R->t0) / 1000;
    tune_run_free(R);
    pthread_cond_destroy(&R->changed);
    pthread_mutex_destroy(&R->io);
    pthread_mutex_destroy(&R->lock);
    free(R);
    return st;
}
