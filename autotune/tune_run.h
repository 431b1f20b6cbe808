/*
 * tune_run.h - the state of one autotune run, shared by its set-up
 * (tune_setup.c: options, devices, candidates, jobs) and its execution
 * (tune_run.c: the compile/measure pipeline and the report).  Internal to
 * autotune/.
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
} job;

typedef struct cref { /* one candidate of one kernel to compile */
    int kernel, cand;
} cref;

typedef struct run {
    prism_context *ctx;
    const prism_autotune_options *o;
    const prism_config *cfg;
    char cfg_hash[65];
    prism_tune_device device;
    prism_arch arch;
    int n_dev, ordinals[PRISM_TUNE_MAX_DEVICES];
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
    prism_autotune_report *rep;
    pthread_mutex_t lock;   /* everything above that changes while running */
    pthread_cond_t changed; /* a task appeared or compiling ended */
    pthread_mutex_t io;     /* orders the writes of entries */
} run;

/* Records a one-line error in the context and returns st. */
prism_status tune_run_fail(run *R, prism_status st, const char *fmt, ...)
    PRISM_PRINTF(3, 4);

/* Set-up, in this order; each fails with the context's last error set. */
prism_status tune_run_check_options(run *R);
prism_status tune_run_probe_devices(run *R);
prism_status tune_run_open_tune_dir(run *R);
/* Candidates of every kernel and the jobs (with a previous run's results
 * when resuming). */
prism_status tune_run_make_jobs(run *R);
/* The compile queue: each kernel's default, then every candidate some job
 * still has to time; R->expected counts the measurements wanted. */
prism_status tune_run_plan_compiles(run *R);
void tune_run_free(run *R);

#endif
