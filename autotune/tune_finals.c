/*
 * tune_finals.c - the finalists of a model with several GPUs, re-timed on
 * each of them.  A file of its own because it is a second stage with its
 * own rule, after the split search of tune_run.c.
 *
 * The split search gives each candidate to whichever GPU of the group is
 * free, which is right only while the GPUs are alike; two boards of one
 * model can still differ (clocks, cooling, power limits).  So once the
 * split is over, the PRISM_TUNE_FINALISTS fastest candidates of every job
 * are timed again on every GPU of the group, and a finalist's recorded
 * time becomes the median of its times over those GPUs (the mean of the
 * middle two for an even count; per shape the same, min of the mins, max
 * of the maxes); a finalist that fails or mismatches on any GPU is
 * recorded with that GPU's result.  Every other candidate keeps the one
 * time the split gave it, so any of them that is not slower than the best
 * finalist's median could still win the entry: it becomes a finalist too,
 * and the rounds go on until none is left.  The rule, then: the entry's
 * winner is the candidate with the best median over the model's GPUs, and
 * no candidate timed on one GPU only beats it.  Where the GPUs' own
 * fastest finalists differ, the report says so (tune_finals_report).
 *
 * A round starts when no GPU of the group has anything left to measure;
 * the GPU that notices plans it (tune_finals_plan, under the run's lock),
 * and each GPU takes its own copy of every finalist in job order, so the
 * inputs of a bucket are made once per round.
 */
#include "autotune/tune_run.h"

#include <stdlib.h>
#include <string.h>

/* The median of n values (sorted in place). */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static prism_tune_candidate *run_of(const run *R, const job *j, int f, int d) {
    return &j->runs[(size_t)f * (size_t)R->g.n_dev + (size_t)d];
}

/* Finalist f's median over the GPUs that measured it, into *ms; false
 * when fewer than two did or any of them did not pass. */
static bool final_median(const run *R, const job *j, int f, double *ms) {
    double v[PRISM_TUNE_MAX_DEVICES];
    int n = 0;
    for (int d = 0; d < R->g.n_dev; d++) {
        const prism_tune_candidate *c = run_of(R, j, f, d);
        if (c->status == PRISM_TUNE_UNTIMED)
            continue;
        if (c->status != PRISM_TUNE_OK)
            return false;
        v[n++] = c->median_ms;
    }
    if (n < 2)
        return false;
    *ms = median(v, n);
    return true;
}

static bool is_final(const job *j, int cand) {
    for (int f = 0; f < j->n_finals; f++)
        if (j->finals[f] == cand)
            return true;
    return false;
}

/* Makes candidate cand of j a finalist, not yet timed on any GPU. */
static bool promote(run *R, job *j, int cand) {
    int nd = R->g.n_dev;
    if (j->n_finals == j->cap_finals) {
        int cap = j->cap_finals ? 2 * j->cap_finals : PRISM_TUNE_FINALISTS;
        int *finals = realloc(j->finals, sizeof *finals * (size_t)cap);
        if (!finals)
            return false;
        j->finals = finals;
        prism_tune_candidate *runs =
            realloc(j->runs, sizeof *runs * (size_t)cap * (size_t)nd);
        if (!runs)
            return false;
        j->runs = runs;
        j->cap_finals = cap;
    }
    int f = j->n_finals++;
    j->finals[f] = cand;
    for (int d = 0; d < nd; d++) {
        prism_tune_candidate *c = run_of(R, j, f, d);
        *c = j->entry.candidates[cand];
        c->status = PRISM_TUNE_UNTIMED;
    }
    return true;
}

/* The first finalists of j: its fastest OK candidates, when it has at
 * least two to choose from. */
static int promote_fastest(run *R, job *j) {
    const prism_tune_entry *e = &j->entry;
    int ok = 0, added = 0;
    for (int i = 0; i < e->n_candidates; i++)
        ok += e->candidates[i].status == PRISM_TUNE_OK;
    if (ok < 2)
        return 0;
    while (added < PRISM_TUNE_FINALISTS && added < ok) {
        int best = -1;
        for (int i = 0; i < e->n_candidates; i++) {
            const prism_tune_candidate *c = &e->candidates[i];
            if (c->status == PRISM_TUNE_OK && !is_final(j, i) &&
                (best < 0 || c->median_ms < e->candidates[best].median_ms))
                best = i;
        }
        if (best < 0 || !promote(R, j, best))
            break;
        added++;
    }
    return added;
}

/* Later finalists of j: every OK candidate whose one time is not slower
 * than the best finalist's median. */
static int promote_rivals(run *R, job *j) {
    double best = 0, ms;
    bool any = false;
    for (int f = 0; f < j->n_finals; f++)
        if (final_median(R, j, f, &ms) && (!any || ms < best))
            best = ms, any = true;
    int added = 0;
    const prism_tune_entry *e = &j->entry;
    for (int i = 0; any && i < e->n_candidates; i++)
        if (e->candidates[i].status == PRISM_TUNE_OK && !is_final(j, i) &&
            e->candidates[i].median_ms <= best)
            added += promote(R, j, i);
    return added;
}

void tune_finals_plan(run *R) {
    int live = 0;
    for (int d = 0; d < R->g.n_dev; d++)
        live += R->live[d];
    int added = 0;
    for (int jj = 0; live >= 2 && jj < R->n_jobs; jj++) {
        job *j = &R->jobs[jj];
        if (R->phase == TUNE_SPLIT)
            added += promote_fastest(R, j);
        else if (j->n_finals > 0)
            added += promote_rivals(R, j);
    }
    R->phase = added ? TUNE_FINALS : TUNE_DONE;
    if (added)
        tune_run_expect(R, added * live);
}

job *tune_finals_take(run *R, int d, int *final) {
    for (int jj = 0; jj < R->n_jobs; jj++) {
        job *j = &R->jobs[jj];
        if (j->next_final[d] < j->n_finals) {
            *final = j->next_final[d]++;
            j->finals_inflight++;
            return j;
        }
    }
    return NULL;
}

void tune_finals_done(run *R, job *j, int d, int f,
                      const prism_tune_candidate *c) {
    *run_of(R, j, f, d) = *c;
    j->finals_inflight--;
}

bool tune_finals_idle(const run *R) {
    for (int jj = 0; jj < R->n_jobs; jj++) {
        const job *j = &R->jobs[jj];
        if (j->finals_inflight)
            return false;
        for (int d = 0; d < R->g.n_dev; d++)
            if (R->live[d] && j->next_final[d] < j->n_finals)
                return false;
    }
    return true;
}

/* The record of finalist f from its GPUs' results (see the top). */
static void record_one(run *R, job *j, int f) {
    prism_tune_candidate *rec = &j->entry.candidates[j->finals[f]];
    const prism_tune_candidate *runs[PRISM_TUNE_MAX_DEVICES];
    int n = 0;
    for (int d = 0; d < R->g.n_dev; d++) {
        const prism_tune_candidate *c = run_of(R, j, f, d);
        if (c->status == PRISM_TUNE_UNTIMED)
            continue;
        if (c->status != PRISM_TUNE_OK) {
            prism_tune_candidate copy = *c;
            *rec = copy;
            int at = snprintf(rec->reason, sizeof rec->reason, "GPU %d: ",
                              R->g.ordinals[d]);
            prism_strlcpy(rec->reason + at, copy.reason,
                          sizeof rec->reason - (size_t)at);
            j->dirty = true;
            return;
        }
        runs[n++] = c;
    }
    if (n < 2)
        return; /* the budget ended the round: the split's time stays */
    double v[PRISM_TUNE_MAX_DEVICES];
    for (int i = 0; i < n; i++)
        v[i] = runs[i]->median_ms;
    rec->median_ms = median(v, n);
    rec->min_ms = runs[0]->min_ms;
    rec->max_ms = runs[0]->max_ms;
    for (int i = 1; i < n; i++) {
        rec->min_ms = runs[i]->min_ms < rec->min_ms ? runs[i]->min_ms
                                                    : rec->min_ms;
        rec->max_ms = runs[i]->max_ms > rec->max_ms ? runs[i]->max_ms
                                                    : rec->max_ms;
    }
    rec->n_timings = runs[0]->n_timings;
    for (int t = 0; t < rec->n_timings; t++) {
        prism_tune_timing *out = &rec->timings[t];
        *out = runs[0]->timings[t];
        out->reps = 0;
        for (int i = 0; i < n; i++) {
            const prism_tune_timing *x = &runs[i]->timings[t];
            v[i] = x->median_ms;
            out->min_ms = x->min_ms < out->min_ms ? x->min_ms : out->min_ms;
            out->max_ms = x->max_ms > out->max_ms ? x->max_ms : out->max_ms;
            out->reps += x->reps;
        }
        out->median_ms = median(v, n);
    }
    j->dirty = true;
}

void tune_finals_record(run *R, job *j) {
    for (int f = 0; f < j->n_finals; f++)
        record_one(R, j, f);
}

void tune_finals_report(const run *R, const job *j, prism_autotune_row *row) {
    row->finalists = j->n_finals;
    if (!j->n_finals)
        return;
    const prism_kernel_def *def = prism_kernel_def_at(j->kernel);
    int chosen = prism_tune_entry_best(&j->entry), first = -1;
    for (int d = 0; d < R->g.n_dev; d++) {
        int best = -1, at = -1;
        for (int f = 0; f < j->n_finals; f++) {
            const prism_tune_candidate *c = run_of(R, j, f, d);
            if (c->status == PRISM_TUNE_OK &&
                (best < 0 || c->median_ms < run_of(R, j, best, d)->median_ms))
                best = f;
            if (j->finals[f] == chosen && c->status == PRISM_TUNE_OK)
                at = f;
        }
        if (best < 0)
            continue;
        prism_autotune_pick *p = &row->picks[row->n_picks++];
        p->ordinal = R->g.ordinals[d];
        prism_tune_values_text(def, j->entry.candidates[j->finals[best]].values,
                               p->best, sizeof p->best);
        p->best_ms = run_of(R, j, best, d)->median_ms;
        p->chosen_ms = at >= 0 ? run_of(R, j, at, d)->median_ms : 0;
        if (first < 0)
            first = j->finals[best];
        else if (first != j->finals[best])
            row->disagree = true;
    }
}
