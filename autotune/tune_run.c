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
 * files.
 *
 * Timings of different devices are not comparable, so the GPUs are
 * grouped by device key (model, SM count, software) and each group is a
 * pipeline of its own with its own entries; the groups run side by side
 * and share the compile workers' count, the budget and the progress
 * counts.  Within a group the split above assumes its GPUs are alike;
 * once it is over, the finalists of every job are re-timed on each GPU of
 * the group (tune_finals.c) before the entries get their last write.
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
    for (int m = 0; r->models && m < r->n_models; m++)
        free(r->models[m].rows);
    free(r->models);
    r->models = NULL;
    r->n_models = 0;
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
                    tune_run_expect(R, -1);
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
                tune_run_expect(R, -1); /* nothing of this kernel is timed */
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
        prism_autotune_compile_one(wctx, R->cfg, c.kernel, R->g.arch,
                                   c.cand == 0, &cand, &build);
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

/* Under the lock: counts a finished task and tells the caller about it
 * (under the shared lock, so the callback is never entered twice). */
static void report_progress(run *R, const job *j, const prism_tune_candidate *c,
                            int ordinal, bool retime) {
    R->done_tasks++;
    tune_shared *sh = R->sh;
    pthread_mutex_lock(&sh->lock);
    int done = ++sh->done;
    int total = sh->expected > done ? sh->expected : done;
    if (!R->o->progress) {
        pthread_mutex_unlock(&sh->lock);
        return;
    }
    char values[160];
    const prism_kernel_def *def = prism_kernel_def_at(j->kernel);
    prism_tune_values_text(def, c->values, values, sizeof values);
    double now = prism_now_ms();
    double elapsed = (now - R->t0) / 1000, left = (R->deadline - now) / 1000;
    double eta = elapsed / done * (total - done);
    if (R->deadline > 0 && eta > left)
        eta = left > 0 ? left : 0;
    const prism_tune_candidate *d = &j->entry.candidates[0];
    prism_autotune_progress p = {
        .done = done,
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
        .device = ordinal,
        .retime = retime};
    R->o->progress(R->o->progress_user, &p);
    pthread_mutex_unlock(&sh->lock);
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

/* Under the lock: the split search is over -- everything is compiled and
 * no task is queued or being measured. */
static bool split_idle(const run *R) {
    for (int jj = 0; R->compile_done && jj < R->n_jobs; jj++)
        if (R->jobs[jj].head < R->jobs[jj].tail || R->jobs[jj].inflight)
            return false;
    return R->compile_done;
}

/* Under the lock: waits for a task for GPU index d -- a candidate of the
 * split search (*final = -1) or finalist *final of the returned job's to
 * re-time; NULL when there is none to come or the budget is spent.
 * Whichever GPU finds its group idle plans the next finalists. */
static job *next_task(run *R, int d, int *cand, int *final) {
    for (;;) {
        if (R->deadline > 0 && prism_now_ms() > R->deadline) {
            R->out_of_budget = true;
            return NULL;
        }
        *final = -1;
        job *j = R->phase == TUNE_SPLIT    ? take_task(R, cand)
                 : R->phase == TUNE_FINALS ? tune_finals_take(R, d, final)
                                           : NULL;
        if (j) {
            if (*final >= 0)
                *cand = j->finals[*final];
            return j;
        }
        if (R->phase == TUNE_DONE)
            return NULL;
        if (R->phase == TUNE_SPLIT ? split_idle(R) : tune_finals_idle(R)) {
            tune_finals_plan(R);
            pthread_cond_broadcast(&R->changed);
            continue;
        }
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
    int index, ordinal; /* in the group; of the driver */
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
        pthread_mutex_lock(&R->lock);
        R->live[a->index] = false;
        pthread_cond_broadcast(&R->changed);
        pthread_mutex_unlock(&R->lock);
        return NULL;
    }
    pthread_mutex_lock(&R->lock);
    for (;;) {
        int i = -1, final = -1;
        job *j = next_task(R, a->index, &i, &final);
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
        bool write = false;
        if (final >= 0) {
            tune_finals_done(R, j, a->index, final, &c);
        } else {
            j->entry.candidates[i] = c;
            j->inflight--;
            j->finished++;
            j->dirty = true;
            bool over = R->compile_done && j->head == j->tail && !j->inflight;
            write = over || prism_now_ms() - j->last_write > 30000;
        }
        report_progress(R, j, &c, a->ordinal, final >= 0);
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
    R->live[a->index] = false; /* its finalists are not waited for */
    pthread_cond_broadcast(&R->changed);
    pthread_mutex_unlock(&R->lock);
    tune_gpu_close(g);
    free(cand);
    return NULL;
}

/* Compile workers and one thread per GPU, until the work or the budget
 * runs out; then the finalists' results go into the entries and every
 * entry with unwritten results is written. */
static void run_pipeline(run *R) {
    int nc = R->compile_workers;
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
    for (int i = 0; i < R->g.n_dev; i++)
        R->live[i] = true;
    pthread_mutex_unlock(&R->lock);
    for (int i = 0; i < R->g.n_dev; i++) {
        args[i].R = R;
        args[i].index = i;
        args[i].ordinal = R->g.ordinals[i];
        args[i].started =
            pthread_create(&args[i].thread, NULL, device_main, &args[i]) == 0;
        if (args[i].started)
            continue;
        prism_log(&R->ctx->logger, PRISM_LOG_WARN,
                  "autotune: cannot start a thread for GPU %d",
                  R->g.ordinals[i]);
        pthread_mutex_lock(&R->lock);
        R->live[i] = false;
        pthread_cond_broadcast(&R->changed);
        pthread_mutex_unlock(&R->lock);
    }
    for (int i = 0; i < R->g.n_dev; i++)
        if (args[i].started)
            pthread_join(args[i].thread, NULL);
    /* the GPUs are done (or gone): stop compiling what nobody will time */
    pthread_mutex_lock(&R->lock);
    R->next_compile = R->n_order;
    pthread_mutex_unlock(&R->lock);
    for (int i = 0; i < started; i++)
        pthread_join(compilers[i], NULL);
    for (int jj = 0; jj < R->n_jobs; jj++) {
        tune_finals_record(R, &R->jobs[jj]);
        save_job(R, &R->jobs[jj]);
    }
}

static void *pipeline_main(void *arg) {
    run_pipeline(arg);
    return NULL;
}

static void fill_report(run *R, prism_autotune_model *m) {
    m->device = R->g.device;
    m->arch = R->g.arch;
    m->n_devices = R->g.n_dev;
    memcpy(m->ordinals, R->g.ordinals, sizeof m->ordinals);
    for (int jj = 0; m->rows && jj < R->n_jobs; jj++) {
        job *j = &R->jobs[jj];
        const prism_tune_entry *e = &j->entry;
        prism_autotune_row *row = &m->rows[m->n_rows++];
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
        tune_finals_report(R, j, row);
    }
}

/* One group's run, set up to the point where its pipeline may start. */
static prism_status setup_run(run *R) {
    pthread_mutex_init(&R->lock, NULL);
    pthread_mutex_init(&R->io, NULL);
    pthread_cond_init(&R->changed, NULL);
    prism_status st;
    if ((st = tune_run_open_tune_dir(R)) != PRISM_OK)
        return st;
    if ((st = prism_tune_config_hash(R->cfg, R->cfg_hash)) != PRISM_OK)
        return tune_run_fail(R, st, "out of memory hashing the config");
    if ((st = tune_run_make_jobs(R)) != PRISM_OK ||
        (st = tune_run_plan_compiles(R)) != PRISM_OK)
        return st;
    R->rep->rows = calloc((size_t)R->n_jobs + 1, sizeof *R->rep->rows);
    if (!R->rep->rows)
        return tune_run_fail(R, PRISM_ERR_OUT_OF_MEMORY, "out of memory");
    return PRISM_OK;
}

/* Sets up a run per group from proto (the checked options), runs their
 * pipelines side by side (the first on this thread) and fills their
 * models of the report. */
static prism_status run_groups(const run *proto, tune_shared *sh,
                               const tune_group *groups, int n_groups,
                               run *runs, prism_autotune_report *rep) {
    prism_status st = PRISM_OK;
    int nc = proto->ctx->options.compile_threads;
    for (int i = 0; i < n_groups && st == PRISM_OK; i++) {
        run *R = &runs[i];
        *R = *proto;
        R->sh = sh;
        R->g = groups[i];
        R->rep = &rep->models[i];
        R->t0 = sh->t0;
        R->deadline = sh->deadline;
        /* the groups share the CPUs that compile */
        R->compile_workers = nc / n_groups > 0 ? nc / n_groups : 1;
        rep->n_models = i + 1;
        st = setup_run(R);
    }
    if (st != PRISM_OK)
        return st;
    pthread_t threads[PRISM_TUNE_MAX_DEVICES];
    bool started[PRISM_TUNE_MAX_DEVICES] = {false};
    for (int i = 1; i < n_groups; i++)
        started[i] =
            pthread_create(&threads[i], NULL, pipeline_main, &runs[i]) == 0;
    run_pipeline(&runs[0]);
    for (int i = 1; i < n_groups; i++) {
        if (started[i])
            pthread_join(threads[i], NULL);
        else
            run_pipeline(&runs[i]);
    }
    int expected = 0, done = 0;
    for (int i = 0; i < n_groups; i++) {
        fill_report(&runs[i], &rep->models[i]);
        rep->out_of_budget = rep->out_of_budget || runs[i].out_of_budget;
        expected += runs[i].expected;
        done += runs[i].done_tasks;
    }
    if (expected > done && !rep->out_of_budget)
        st = tune_run_fail(&runs[0], PRISM_ERR_CUDA,
                           "autotune: %d of %d candidates were not measured: "
                           "no GPU could take them (see the warnings above); "
                           "what was measured is in %s",
                           expected - done, expected, runs[0].tune_dir);
    return st;
}

prism_status prism_autotune_run(prism_context *ctx,
                                const prism_autotune_options *o,
                                prism_autotune_report *rep) {
    if (!ctx || !o || !o->cfg || !rep)
        return prism_context_fail(ctx, PRISM_ERR_NULL_POINTER,
                                  "prism_autotune_run: NULL argument");
    memset(rep, 0, sizeof *rep);
    run *runs = NULL, *proto = calloc(1, sizeof *proto);
    if (!proto)
        return prism_context_fail(ctx, PRISM_ERR_OUT_OF_MEMORY,
                                  "out of memory");
    tune_shared sh = {.o = o, .t0 = prism_now_ms()};
    sh.deadline = o->budget_s > 0 ? sh.t0 + o->budget_s * 1000 : 0;
    pthread_mutex_init(&sh.lock, NULL);
    tune_group groups[PRISM_TUNE_MAX_DEVICES];
    int n_groups = 0;
    proto->ctx = ctx;
    proto->o = o;
    proto->cfg = o->cfg;
    prism_status st = tune_run_check_options(proto);
    if (st == PRISM_OK)
        st = tune_probe_groups(ctx, o, groups, &n_groups);
    if (st == PRISM_OK) {
        runs = calloc((size_t)n_groups, sizeof *runs);
        rep->models = calloc((size_t)n_groups, sizeof *rep->models);
        st = runs && rep->models
                 ? run_groups(proto, &sh, groups, n_groups, runs, rep)
                 : prism_context_fail(ctx, PRISM_ERR_OUT_OF_MEMORY,
                                      "out of memory");
    }
    for (int i = 0; runs && i < rep->n_models; i++) {
        rep->n_devices += runs[i].g.n_dev;
        if (!rep->tune_dir[0])
            prism_strlcpy(rep->tune_dir, runs[i].tune_dir,
                          sizeof rep->tune_dir);
        tune_run_free(&runs[i]);
        pthread_cond_destroy(&runs[i].changed);
        pthread_mutex_destroy(&runs[i].io);
        pthread_mutex_destroy(&runs[i].lock);
    }
    rep->elapsed_s = (prism_now_ms() - sh.t0) / 1000;
    pthread_mutex_destroy(&sh.lock);
    free(runs);
    free(proto);
    return st;
}
