/*
 * autotune.h - the search behind `prism autotune` (internal API).
 *
 *   1. enumerate   each kernel's candidates: the cartesian product of its
 *                  tunables' legal values, minus the combinations its spec
 *                  rejects (prism_spec_build runs the kernel's own
 *                  add_constants rules, e.g. attention.warp_m = 32 needs
 *                  head_dim <= 128).  Candidate 0 is the registry default.
 *   2. compile     every candidate through the cache on worker threads;
 *                  prune (never time) those that do not compile, spill,
 *                  use more static shared memory than a CTA may, need more
 *                  registers than an SM has, or produce the same cubin as
 *                  an earlier candidate.
 *   3. time        on the GPU(s): each candidate's output must match the
 *                  default's before it may win; then the median of
 *                  repetitions with CUDA events (tune_gpu.c).  GPUs of
 *                  one model split the candidates, then re-time the
 *                  finalists on each of them (tune_finals.c).
 *   4. record      one database entry per (GPU model, kernel, bucket)
 *                  (tune_db.c).
 *
 * A candidate config pins every tunable of every kernel (the candidate's
 * values for the kernel under test, the untuned values for the others), so
 * plans made from it are untouched by the database being written.  The
 * "default" candidate, the reference every other output must match, is
 * what the config builds untuned: its own `tuning:` overrides, else the
 * registry defaults.  The search itself covers every legal value, pinned
 * or not; a config's own overrides still win when a plan applies it.
 */
#ifndef PRISM_AUTOTUNE_H
#define PRISM_AUTOTUNE_H

#include "tune/tune.h"

/* ---- candidates --------------------------------------------------------- */

/* The values kernel_index builds with when nothing is tuned: the config's
 * own `tuning:` overrides, else the registry defaults. */
void prism_autotune_default_values(const prism_config *cfg, int kernel_index,
                                   int64_t values[PRISM_MAX_TUNABLES]);

/* cfg with its tuning section replaced by pins for every tunable of every
 * kernel: `values` for kernel_index, prism_autotune_default_values
 * elsewhere. */
prism_status prism_autotune_candidate_config(const prism_config *cfg,
                                             int kernel_index,
                                             const int64_t *values,
                                             prism_config *out, char *err,
                                             size_t err_size);

/* A context for a worker thread: the same writable cache, read-only
 * layers, logger and JIT setting as ctx, on device `ordinal`. */
prism_status prism_autotune_context_like(const prism_context *ctx, int ordinal,
                                         prism_context **out);

/* The legal candidates of one kernel for arch (malloc'd; candidate 0 is
 * prism_autotune_default_values).  *n_illegal counts the combinations the
 * spec rejected. */
prism_status prism_autotune_enumerate(const prism_config *cfg, int kernel_index,
                                      prism_arch arch,
                                      prism_tune_candidate **out, int *n,
                                      int *n_illegal, char *err,
                                      size_t err_size);

/* What a compiled kernel's statistics say about spills: ptxas reported
 * them; or it wrote no report and the stack frame read from the cubin
 * stands for them (0: nothing spills; more: local memory, spilled or
 * not, which prunes like a spill); or nothing could be read, and the
 * candidate is timed unchecked. */
typedef enum prism_autotune_spills {
    PRISM_SPILLS_REPORTED = 0,
    PRISM_SPILLS_FROM_FRAME,
    PRISM_SPILLS_UNKNOWN
} prism_autotune_spills;

prism_autotune_spills prism_autotune_spill_check(const prism_kernel_info *info);

/* Why a compiled kernel must not be timed, from its ptxas information and
 * its CTA size (threads <= 0: unknown); false when it may be timed. */
bool prism_autotune_prune_reason(const prism_kernel_info *info, int threads,
                                 char *why, size_t why_size);

/* Compile results of one candidate beyond what the candidate records. */
typedef struct prism_autotune_build {
    bool ready;     /* compiled and not pruned: may be timed */
    bool attempted; /* false: the deadline came first */
    prism_autotune_spills spills; /* how spills were checked (REPORTED
                                     when the build failed) */
    unsigned char cubin_sha[32];
} prism_autotune_build;

/* Step 2 for one candidate, with ctx (the calling worker's own context):
 * fills its ptxas information, sets build->ready when it may be timed, or
 * PRUNED with a reason.  The default candidate (is_default) is the
 * reference and is pruned only when it does not build. */
void prism_autotune_compile_one(prism_context *ctx, const prism_config *cfg,
                                int kernel_index, prism_arch arch,
                                bool is_default, prism_tune_candidate *c,
                                prism_autotune_build *build);

/* The same cubin twice is the same kernel: prunes candidate i when one of
 * cands[0..n) other than i is ready with an identical cubin.  Never
 * candidate 0.  Returns whether it pruned. */
bool prism_autotune_dedupe(int kernel_index, prism_tune_candidate *cands,
                           prism_autotune_build *builds, int n, int i);

/* Step 2 for n candidates of one kernel: builds on `threads` workers (0:
 * the context's compile_threads), each with its own context (so every
 * failure keeps its own message), until deadline_ms (prism_now_ms()
 * clock; <= 0: none).  Fills registers/spill/shared of each candidate and
 * sets PRUNED with a reason where it must not be timed; candidates that
 * already have a status are skipped. */
prism_status prism_autotune_compile(prism_context *ctx, const prism_config *cfg,
                                    int kernel_index, prism_arch arch,
                                    prism_tune_candidate *cands,
                                    prism_autotune_build *builds, int n,
                                    int threads, double deadline_ms);

/* ---- the whole run ------------------------------------------------------- */

#define PRISM_TUNE_MAX_SEQS 8
#define PRISM_TUNE_MAX_DEVICES 16

typedef struct prism_autotune_progress {
    int done, total;    /* candidate measurements, over every model */
    const char *kernel; /* of the measurement just finished */
    int bucket;
    const char *values; /* "block_m=64 block_n=32 warp_m=16" */
    prism_tune_status status;
    const char *reason; /* why, when not ok */
    double ms;          /* its time (sum over shapes), when ok */
    double best_ms;     /* best ok time of that (kernel, bucket) */
    double default_ms;  /* the default candidate's, or 0 */
    double elapsed_s, eta_s;
    int device;  /* ordinal that measured it */
    bool retime; /* a finalist re-timed on every GPU of its model */
} prism_autotune_progress;

typedef void (*prism_autotune_progress_fn)(void *user,
                                           const prism_autotune_progress *p);

typedef struct prism_autotune_options {
    const prism_config *cfg;
    int n_seqs; /* 0: every bucket 4K..256K */
    int seqs[PRISM_TUNE_MAX_SEQS];
    int n_densities; /* 0: 0.1 and 0.2 */
    double densities[PRISM_TUNE_MAX_SHAPES];
    double budget_s;  /* <= 0: no limit */
    bool all_devices; /* every GPU of the host */
    int n_devices;    /* else these ordinals (0: GPU 0) */
    int devices[PRISM_TUNE_MAX_DEVICES];
    bool resume;                         /* keep results already recorded */
    prism_autotune_progress_fn progress; /* called under a lock */
    void *progress_user;
} prism_autotune_options;

/* How many candidates of each (kernel, bucket) are re-timed on every GPU
 * of a model with several, at least (tune_finals.c). */
#define PRISM_TUNE_FINALISTS 3

/* One GPU's view of the finalists of a (kernel, bucket): its own fastest
 * and its time for the candidate recorded. */
typedef struct prism_autotune_pick {
    int ordinal;
    char best[160]; /* values of this GPU's fastest finalist */
    double best_ms, chosen_ms;
} prism_autotune_pick;

typedef struct prism_autotune_row {
    char kernel[64];
    int bucket;
    double default_ms, tuned_ms; /* 0 when not timed */
    char best[160];              /* values of the winner */
    int timed, pruned, failed, mismatched, untimed, candidates;
    char path[PRISM_PATH_MAX]; /* the entry written ("" if none) */
    /* with several GPUs: candidates re-timed on each (0: none were), each
     * GPU's fastest of them, and whether those differ */
    int finalists;
    int n_picks;
    prism_autotune_pick picks[PRISM_TUNE_MAX_DEVICES];
    bool disagree;
} prism_autotune_row;

/* The GPUs of one model (one device key) and their entries. */
typedef struct prism_autotune_model {
    prism_tune_device device;
    prism_arch arch;
    int n_devices;
    int ordinals[PRISM_TUNE_MAX_DEVICES];
    int n_rows;
    prism_autotune_row *rows; /* malloc'd */
    int compiled, pruned_at_compile, illegal;
    /* compiled candidates without a ptxas spill report: checked on their
     * stack frame instead, or not checked at all (nothing readable) */
    int spills_from_frame, spills_unknown;
} prism_autotune_model;

typedef struct prism_autotune_report {
    int n_models; /* in the order of their first GPU */
    prism_autotune_model *models; /* malloc'd: prism_autotune_report_free */
    int n_devices;                /* over every model */
    char tune_dir[PRISM_PATH_MAX];
    bool out_of_budget;
    double elapsed_s;
} prism_autotune_report;

void prism_autotune_report_free(prism_autotune_report *report);

/* Runs the search: the GPUs are grouped by device key (model, SM count,
 * software), every group is tuned at once, one thread per GPU, and each
 * writes its own entries.  Fails with PRISM_ERR_NO_DRIVER /
 * PRISM_ERR_NO_DEVICE (and a one-line message in the context's last
 * error) where there is no GPU; results already measured are written even
 * when it fails later. */
prism_status prism_autotune_run(prism_context *ctx,
                                const prism_autotune_options *options,
                                prism_autotune_report *report);

#endif
