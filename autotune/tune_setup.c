/*
 * tune_setup.c - setting up an autotune run: the options, the GPUs grouped
 * by device key, and for each group the tuning directory, every kernel's
 * candidates, one job per (kernel, bucket) -- seeded from the database
 * when resuming -- and the compile queue.  Nothing here touches a GPU
 * beyond reading its name and attributes; tune_run.c runs the pipeline.
 */
#include "autotune/tune_run.h"

#include "runtime/context.h"
#include "runtime/plan_tuning.h"
#include "base/fs.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

prism_status tune_run_fail(run *R, prism_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    st = prism_context_failv(R->ctx, st, fmt, ap);
    va_end(ap);
    return st;
}

void tune_run_expect(run *R, int delta) {
    R->expected += delta;
    pthread_mutex_lock(&R->sh->lock);
    R->sh->expected += delta;
    pthread_mutex_unlock(&R->sh->lock);
}

/* ---- set-up -------------------------------------------------------------- */

prism_status tune_run_check_options(run *R) {
    const prism_autotune_options *o = R->o;
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_config_validate(R->cfg, err, sizeof err);
    if (st != PRISM_OK)
        return tune_run_fail(R, st, "%s", err);
    if (o->n_seqs < 0 || o->n_seqs > PRISM_TUNE_MAX_SEQS ||
        o->n_densities < 0 || o->n_densities > PRISM_TUNE_MAX_SHAPES ||
        o->n_devices < 0 || o->n_devices > PRISM_TUNE_MAX_DEVICES)
        return tune_run_fail(
            R, PRISM_ERR_INVALID_ARGUMENT,
            "autotune: at most %d lengths, %d densities and %d "
            "devices",
            PRISM_TUNE_MAX_SEQS, PRISM_TUNE_MAX_SHAPES, PRISM_TUNE_MAX_DEVICES);
    for (int b = PRISM_TUNE_MIN_BUCKET;
         !o->n_seqs && b <= PRISM_TUNE_MAX_BUCKET; b *= 2)
        R->seqs[R->n_seqs++] = b;
    for (int i = 0; i < o->n_seqs; i++) {
        if (o->seqs[i] < 1)
            return tune_run_fail(
                R, PRISM_ERR_INVALID_ARGUMENT,
                "autotune: sequence length %d must be positive", o->seqs[i]);
        for (int j = 0; j < i; j++)
            if (prism_tune_bucket(o->seqs[j]) ==
                prism_tune_bucket(o->seqs[i]))
                return tune_run_fail(
                    R, PRISM_ERR_INVALID_ARGUMENT,
                    "autotune: lengths %d and %d fall in the same "
                    "bucket %d; give one length per bucket",
                    o->seqs[j], o->seqs[i], prism_tune_bucket(o->seqs[i]));
        R->seqs[R->n_seqs++] = o->seqs[i];
    }
    R->n_dens = o->n_densities;
    memcpy(R->dens, o->densities, sizeof(double) * (size_t)R->n_dens);
    if (!R->n_dens) {
        R->dens[0] = 0.1;
        R->dens[1] = 0.2;
        R->n_dens = 2;
    }
    for (int i = 0; i < R->n_dens; i++)
        if (!(R->dens[i] > 0 && R->dens[i] <= 1))
            return tune_run_fail(R, PRISM_ERR_INVALID_ARGUMENT,
                                 "autotune: density %g is not in (0, 1]",
                                 R->dens[i]);
    return PRISM_OK;
}

/* The ordinals of options: every GPU, the list, or GPU 0. */
static prism_status pick_ordinals(prism_context *ctx,
                                  const prism_autotune_options *o, int count,
                                  int *ordinals, int *n) {
    *n = 0;
    if (o->all_devices)
        for (int i = 0; i < count && i < PRISM_TUNE_MAX_DEVICES; i++)
            ordinals[(*n)++] = i;
    for (int i = 0; !o->all_devices && i < o->n_devices; i++) {
        if (o->devices[i] < 0 || o->devices[i] >= count)
            return prism_context_failf(
                ctx, PRISM_ERR_NO_DEVICE,
                "autotune: no GPU %d; this machine has %d (0..%d)",
                o->devices[i], count, count - 1);
        for (int j = 0; j < i; j++)
            if (o->devices[j] == o->devices[i])
                return prism_context_failf(
                    ctx, PRISM_ERR_INVALID_ARGUMENT,
                    "autotune: GPU %d is listed twice", o->devices[i]);
        ordinals[(*n)++] = o->devices[i];
    }
    if (!*n)
        ordinals[(*n)++] = 0;
    return PRISM_OK;
}

prism_status tune_probe_groups(prism_context *ctx,
                               const prism_autotune_options *o,
                               tune_group *groups, int *n_groups) {
    char err[PRISM_ERRMSG_MAX];
    const prism_driver *drv = NULL;
    *n_groups = 0;
    prism_status st = prism_driver_get(&drv, err, sizeof err);
    if (st != PRISM_OK)
        return prism_context_failf(ctx, st, "autotune needs a CUDA GPU: %s",
                                   err);
    int count = 0;
    if (drv->device_get_count(&count) != CUDA_SUCCESS || count < 1)
        return prism_context_failf(
            ctx, PRISM_ERR_NO_DEVICE,
            "autotune needs a CUDA GPU: the driver reports none");
    int ordinals[PRISM_TUNE_MAX_DEVICES], n = 0;
    if ((st = pick_ordinals(ctx, o, count, ordinals, &n)) != PRISM_OK)
        return st;
    for (int i = 0; i < n; i++) {
        CUdevice dev;
        prism_tune_device d;
        CUresult rc = drv->device_get(&dev, ordinals[i]);
        if (rc != CUDA_SUCCESS)
            return prism_context_fail(
                ctx, prism_cuda_error(drv, rc, "cuDeviceGet", err, sizeof err),
                err);
        if ((st = prism_plan_tuning_device_query(drv, dev, &d, err,
                                                 sizeof err)) != PRISM_OK)
            return prism_context_fail(ctx, st, err);
        int g = 0;
        while (g < *n_groups && strcmp(groups[g].device.key, d.key))
            g++;
        if (g == *n_groups) {
            memset(&groups[g], 0, sizeof groups[g]);
            groups[g].device = d;
            if (!prism_tune_device_arch(&d, &groups[g].arch))
                return prism_context_failf(
                    ctx, PRISM_ERR_NO_KERNEL,
                    "autotune: GPU %d (%s) has compute capability %d.%d, "
                    "which has no Prism kernels (supported: 8.0, 8.6, 8.9, "
                    "9.0); leave it out with --devices",
                    ordinals[i], d.name, d.cc_major, d.cc_minor);
            (*n_groups)++;
        }
        groups[g].ordinals[groups[g].n_dev++] = ordinals[i];
    }
    return PRISM_OK;
}

prism_status tune_run_open_tune_dir(run *R) {
    char(*dirs)[PRISM_PATH_MAX] = malloc(PRISM_TUNE_MAX_DIRS * sizeof *dirs);
    if (!dirs)
        return tune_run_fail(R, PRISM_ERR_OUT_OF_MEMORY, "out of memory");
    prism_plan_tuning_dirs(R->ctx, dirs);
    prism_strlcpy(R->tune_dir, dirs[0], sizeof R->tune_dir);
    free(dirs);
    char err[PRISM_ERRMSG_MAX];
    if (!R->tune_dir[0])
        return tune_run_fail(
            R, PRISM_ERR_IO,
            "autotune: no writable tuning directory; set "
            "PRISM_TUNE_DIR or PRISM_CACHE_DIR to a directory you own");
    prism_status st = prism_fs_mkdir_p(R->tune_dir, 0755, err, sizeof err);
    return st == PRISM_OK ? PRISM_OK
                          : tune_run_fail(R, st, "autotune: %s", err);
}

/* Candidates of every kernel, and the jobs with the results of a previous
 * run when resuming. */
prism_status tune_run_make_jobs(run *R) {
    char err[PRISM_ERRMSG_MAX];
    int nk = prism_kernel_count();
    R->spaces = calloc((size_t)nk, sizeof *R->spaces);
    R->jobs = calloc((size_t)nk * R->n_seqs, sizeof *R->jobs);
    if (!R->spaces || !R->jobs)
        return tune_run_fail(R, PRISM_ERR_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; k < nk; k++) {
        space *s = &R->spaces[k];
        prism_status st =
            prism_autotune_enumerate(R->cfg, k, R->g.arch, &s->cands, &s->n,
                                     &s->n_illegal, err, sizeof err);
        if (st != PRISM_OK)
            return tune_run_fail(R, st, "%s", err);
        R->rep->illegal += s->n_illegal;
        s->builds = calloc((size_t)s->n, sizeof *s->builds);
        s->ref_cfg = malloc(sizeof *s->ref_cfg);
        if (!s->builds || !s->ref_cfg)
            return tune_run_fail(R, PRISM_ERR_OUT_OF_MEMORY, "out of memory");
        if ((st = prism_autotune_candidate_config(R->cfg, k, s->cands[0].values,
                                                  s->ref_cfg, err,
                                                  sizeof err)) != PRISM_OK)
            return tune_run_fail(R, st, "%s", err);
    }
    for (int b = 0; b < R->n_seqs; b++)
        for (int k = 0; k < nk; k++) {
            const prism_kernel_def *def = prism_kernel_def_at(k);
            tune_stage stage = tune_stage_of(def->name);
            if (stage == TUNE_STAGE_NONE) {
                prism_log(&R->ctx->logger, PRISM_LOG_WARN,
                          "autotune: no timing harness for kernel %s; "
                          "not tuned",
                          def->name);
                continue;
            }
            job *j = &R->jobs[R->n_jobs++];
            j->kernel = k;
            j->stage = stage;
            j->seq = R->seqs[b];
            j->bucket = prism_tune_bucket(j->seq);
            prism_tune_entry *e = &j->entry;
            j->queue = malloc(sizeof *j->queue * (size_t)R->spaces[k].n);
            if (!j->queue ||
                prism_tune_entry_init(e, def, R->spaces[k].n) != PRISM_OK)
                return tune_run_fail(R, PRISM_ERR_OUT_OF_MEMORY,
                                     "out of memory");
            memcpy(e->candidates, R->spaces[k].cands,
                   sizeof *e->candidates * (size_t)e->n_candidates);
            e->device = R->g.device;
            prism_strlcpy(e->config_name, R->cfg->name, sizeof e->config_name);
            memcpy(e->config_hash, R->cfg_hash, sizeof e->config_hash);
            e->bucket = j->bucket;
            e->seq = j->seq;
            char name[256];
            prism_tune_file_name(R->g.device.key, R->cfg_hash, def->name,
                                 j->bucket, name, sizeof name);
            if (!prism_fs_join(j->path, sizeof j->path, R->tune_dir, name))
                return tune_run_fail(R, PRISM_ERR_IO,
                                     "autotune: path too long: %s",
                                     R->tune_dir);
            prism_tune_entry old;
            bool absent = false;
            if (!R->o->resume ||
                prism_tune_entry_read(j->path, &old, &absent, err,
                                      sizeof err) != PRISM_OK)
                continue;
            if (prism_tune_entry_matches(&old, &R->g.device, R->cfg_hash,
                                         def->name, j->bucket, err,
                                         sizeof err) &&
                old.seq == j->seq)
                for (int i = 0; i < e->n_candidates; i++)
                    for (int m = 0; m < old.n_candidates; m++)
                        if (old.candidates[m].status != PRISM_TUNE_UNTIMED &&
                            !memcmp(old.candidates[m].values,
                                    e->candidates[i].values,
                                    sizeof e->candidates[i].values))
                            e->candidates[i] = old.candidates[m];
            prism_tune_entry_free(&old);
        }
    return PRISM_OK;
}

prism_status tune_run_plan_compiles(run *R) {
    int nk = prism_kernel_count(), total = 0;
    for (int k = 0; k < nk; k++)
        total += R->spaces[k].n;
    R->order = calloc((size_t)total + 1, sizeof *R->order);
    if (!R->order)
        return tune_run_fail(R, PRISM_ERR_OUT_OF_MEMORY, "out of memory");
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < nk; k++) {
            const space *s = &R->spaces[k];
            for (int i = pass ? 1 : 0; i < (pass ? s->n : 1); i++) {
                int wanted = 0;
                for (int jj = 0; jj < R->n_jobs; jj++)
                    wanted += R->jobs[jj].kernel == k &&
                              R->jobs[jj].entry.candidates[i].status ==
                                  PRISM_TUNE_UNTIMED;
                tune_run_expect(R, wanted);
                /* a default is built whenever its kernel has work */
                bool work = wanted > 0;
                for (int m = 1; i == 0 && !work && m < s->n; m++)
                    for (int jj = 0; jj < R->n_jobs && !work; jj++)
                        work = R->jobs[jj].kernel == k &&
                               R->jobs[jj].entry.candidates[m].status ==
                                   PRISM_TUNE_UNTIMED;
                if (work)
                    R->order[R->n_order++] = (cref){k, i};
            }
        }
    return PRISM_OK;
}

void tune_run_free(run *R) {
    for (int k = 0; R->spaces && k < prism_kernel_count(); k++) {
        free(R->spaces[k].cands);
        free(R->spaces[k].builds);
        free(R->spaces[k].ref_cfg);
    }
    for (int jj = 0; R->jobs && jj < R->n_jobs; jj++) {
        prism_tune_entry_free(&R->jobs[jj].entry);
        free(R->jobs[jj].queue);
        free(R->jobs[jj].finals);
        free(R->jobs[jj].runs);
    }
    free(R->spaces);
    free(R->jobs);
    free(R->order);
}
