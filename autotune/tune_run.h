/*
 * tune_run.h - the state of one autotune run, shared by its set-up
 * (tune_setup.c: options, devices, candidates, jobs), its execution
 * (tune_run.c: the compile/measure pipeline and the report) and the
 * re-timing of finalists on every GPU of a model (tune_finals.c).
 * Internal to autotune/.
 *
 * The GPUs of a run are grouped by device key (tune_group); each group is
 * a `run` of its own -- its candidates, jobs, threads and entries -- and
 * all groups run at once, sharing only the budget and the progress counts
 * (tune_shared).
 */
#ifndef PRISM_TUNE_RUN_H
#define PRISM_TUNE_RUN_H

#include "autotune/tune_gpu.h"

#include <pthread.h>

typedef struct space { /* one kernel's candidates, compiled once */
    prism_tune_candidate *cands;
    prism_autotune_build *builds;
    int n, n_illegal;
    prism_config *ref_cfg; /* the default candidate's pins */
} space;

/* The GPUs of one model: one device key, so one entry per job. */
typedef struct tune_group {
    prism_tune_device device;
    prism_arch arch;
    int n_dev, ordinals[PRISM_TUNE_MAX_DEVICES];
} tune_group;

/* What the groups of one run share. */
typedef struct tune_shared {
    const prism_autotune_options *o;
    double t0, deadline; /* prism_now_ms() clock; deadline 0: none */
    pthread_mutex_t lock; /* expected, done and the progress callback;
                             taken inside a run's lock, never around one */
    int expected, done;   /* measurements wanted / done, over every group */
} tune_shared;

typedef struct job {
    int kernel, bucket, seq;
    tune_stage stage;
    prism_tune_entry entry;
    int *queue; /* pending candidate indices, FIFO */
    int head, tail;
    int inflight, finished; /* tasks being measured / done in this run */
    bool dirty;             /* results not yet written */
    double last_write;
    char path[PRISM_PATH_MAX];
    /* the finalists re-timed on every GPU (tune_finals.c) */
    int *finals; /* candidate indices, in the order promoted */
    int n_finals, cap_finals;
    prism_tune_candidate *runs; /* [final][GPU index]: each GPU's result */
    int next_final[PRISM_TUNE_MAX_DEVICES]; /* per GPU: first not taken */
    int finals_inflight;
} job;

typedef struct cref { /* one candidate of one kernel to compile */
    int kernel, cand;
} cref;

/* Where a group's GPUs are: splitting the candidates, re-timing the
 * finalists, or finished. */
typedef enum tune_phase { TUNE_SPLIT = 0, TUNE_FINALS, TUNE_DONE } tune_phase;

typedef struct run { /* one group's part of the run */
    prism_context *ctx;
    tune_shared *sh;
    const prism_autotune_options *o;
    const prism_config *cfg;
    char cfg_hash[65];
    tune_group g;
    int n_seqs, seqs[PRISM_TUNE_MAX_SEQS];
    int n_dens;
    double dens[PRISM_TUNE_MAX_SHAPES];
    char tune_dir[PRISM_PATH_MAX];
    space *spaces;
    job *jobs;
    int n_jobs;
    cref *order; /* the compile queue */
    int n_order, next_compile, compile_workers;
    bool compile_done;
    int expected, done_tasks; /* measurements still wanted / done */
    double t0, deadline;
    bool out_of_budget;
    tune_phase phase;
    bool live[PRISM_TUNE_MAX_DEVICES]; /* per GPU index: its thread works */
    prism_autotune_model *rep;
    pthread_mutex_t lock;   /* everything above that changes while running */
    pthread_cond_t changed; /* a task appeared or compiling ended */
    pthread_mutex_t io;     /* orders the writes of entries */
} run;

/* Records a one-line error in the context and returns st. */
prism_status tune_run_fail(run *R, prism_status st, const char *fmt, ...)
    PRISM_PRINTF(3, 4);

/* Changes the measurements wanted by delta, in R and over the run; under
 * R's lock once threads run. */
void tune_run_expect(run *R, int delta);

/* The GPUs of options, grouped by device key in the order of their first
 * ordinal; fails with the context's last error set. */
prism_status tune_probe_groups(prism_context *ctx,
                               const prism_autotune_options *o,
                               tune_group *groups, int *n_groups);

/* Set-up, in this order; each fails with the context's last error set.
 * The options are checked once, into the run every group's run starts
 * from; the rest is per group. */
prism_status tune_run_check_options(run *R);
prism_status tune_run_open_tune_dir(run *R);
/* Candidates of every kernel and the jobs (with a previous run's results
 * when resuming). */
prism_status tune_run_make_jobs(run *R);
/* The compile queue: each kernel's default, then every candidate some job
 * still has to time; R->expected counts the measurements wanted. */
prism_status tune_run_plan_compiles(run *R);
void tune_run_free(run *R);

/* ---- finalists (tune_finals.c) ------------------------------------------ */

/* Under the lock, when no GPU of the group has anything left to measure:
 * promotes the next finalists of every job (the first time the fastest
 * PRISM_TUNE_FINALISTS; later any candidate that could still beat the
 * finalists' best median) and sets R->phase to TUNE_FINALS, or to
 * TUNE_DONE when there is nothing more to re-time. */
void tune_finals_plan(run *R);
/* Under the lock: the next finalist for GPU index d to time, or NULL. */
job *tune_finals_take(run *R, int d, int *final);
/* Under the lock: GPU index d's result for final f of j. */
void tune_finals_done(run *R, job *j, int d, int f,
                      const prism_tune_candidate *c);
/* Under the lock: true when no finalist is being timed and no live GPU
 * has one left to take. */
bool tune_finals_idle(const run *R);
/* After the threads: records each finalist's median over the GPUs in the
 * job's entry (marking it unwritten). */
void tune_finals_record(run *R, job *j);
/* Fills the row's finalists, picks and disagreement. */
void tune_finals_report(const run *R, const job *j, prism_autotune_row *row);

#endif
