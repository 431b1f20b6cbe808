/*
 * plan_tuning.c - reading the tuning database on behalf of plans.
 *
 * A plan is made for one device and a longest key length, so it can use
 * the timings `prism autotune` recorded for exactly that device and that
 * length bucket.  The lookup is deliberately forgiving: a missing entry is
 * silent, an invalid one is a warning, and a tuned config that does not
 * build falls back to the untuned one.  Tuning may make a plan faster but
 * must never make a working plan fail.
 */
#include "runtime/plan_tuning.h"

#include "runtime/module.h"
#include "compile/nvrtc_compile.h"
#include "base/fs.h"
#include "base/parse.h"

#include <stdlib.h>
#include <string.h>

int prism_plan_tuning_dirs(const prism_context *ctx,
                           char dirs[PRISM_TUNE_MAX_DIRS][PRISM_PATH_MAX]) {
    int n = 0;
    const char *env = getenv("PRISM_TUNE_DIR");
    const char *cache_dir = prism_context_cache_dir(ctx);
    char why[PRISM_ERRMSG_MAX];
    dirs[n][0] = '\0';
    if (env && *env) {
        /* never a shortened path: without it there is no writable dir */
        if (prism_check_path_length(env, "PRISM_TUNE_DIR", why, sizeof why) ==
            PRISM_OK)
            prism_strlcpy(dirs[n], env, PRISM_PATH_MAX);
        else if (ctx)
            prism_log(&ctx->logger, PRISM_LOG_WARN, "%s", why);
    } else if (*cache_dir) {
        prism_fs_join(dirs[n], PRISM_PATH_MAX, cache_dir, "tuning");
    }
    n++;
    for (int i = 0; ctx && i < prism_cache_layer_count(ctx->cache) &&
                    n < PRISM_TUNE_MAX_DIRS;
         i++)
        if (prism_fs_join(dirs[n], PRISM_PATH_MAX,
                          prism_cache_layer_dir(ctx->cache, i), "tuning"))
            n++;
    return n;
}

prism_status
prism_plan_tuning_lookup(prism_context *ctx, const prism_tune_device *dev,
                         const prism_config *cfg, const char *kernel,
                         int64_t seqlen, int64_t values[PRISM_MAX_TUNABLES],
                         bool *found) {
    if (!ctx || !dev || !cfg || !kernel || !values || !found)
        return PRISM_ERR_NULL_POINTER;
    *found = false;
    char hash[65], name[256], path[PRISM_PATH_MAX], why[PRISM_ERRMSG_MAX];
    prism_status st = prism_tune_config_hash(cfg, hash);
    if (st != PRISM_OK)
        return st;
    int bucket = prism_tune_bucket(seqlen);
    prism_tune_file_name(dev->key, hash, kernel, bucket, name, sizeof name);
    char(*dirs)[PRISM_PATH_MAX] = malloc(PRISM_TUNE_MAX_DIRS * sizeof *dirs);
    if (!dirs)
        return PRISM_ERR_OUT_OF_MEMORY;
    int n_dirs = prism_plan_tuning_dirs(ctx, dirs);
    for (int d = 0; d < n_dirs && !*found; d++) {
        if (!dirs[d][0] || !prism_fs_join(path, sizeof path, dirs[d], name))
            continue;
        prism_tune_entry e;
        bool absent = false;
        if (prism_tune_entry_read(path, &e, &absent, why, sizeof why) !=
            PRISM_OK) {
            if (!absent)
                prism_log(&ctx->logger, PRISM_LOG_WARN,
                          "tuning entry %s ignored: %s. Fix: re-run 'prism "
                          "autotune' or delete the file",
                          path, why);
            continue;
        }
        if (!prism_tune_entry_matches(&e, dev, hash, kernel, bucket, why,
                                      sizeof why)) {
            prism_log(&ctx->logger, PRISM_LOG_WARN,
                      "tuning entry %s ignored: %s. Fix: re-run 'prism "
                      "autotune' on this machine",
                      path, why);
        } else {
            int best = prism_tune_entry_best(&e);
            if (best >= 0) {
                memcpy(values, e.candidates[best].values,
                       sizeof(int64_t) * PRISM_MAX_TUNABLES);
                *found = true;
                prism_log(&ctx->logger, PRISM_LOG_DEBUG,
                          "tuning entry %s: candidate %d of %d", path, best,
                          e.n_candidates);
            } else {
                prism_log(&ctx->logger, PRISM_LOG_DEBUG,
                          "tuning entry %s has no timed candidate", path);
            }
        }
        prism_tune_entry_free(&e);
    }
    free(dirs);
    return PRISM_OK;
}

/* $PRISM_TUNE=off (a switch, base/parse.h) makes plans ignore the tuning
 * database; a value that is not a switch is logged and ignored. */
static bool tuning_disabled(const prism_context *ctx) {
    bool on;
    char why[PRISM_ERRMSG_MAX];
    if (prism_env_bool("PRISM_TUNE", true, &on, why, sizeof why) != PRISM_OK)
        prism_log(&ctx->logger, PRISM_LOG_WARN, "%s", why);
    return !on;
}

static bool is_pinned(const prism_config *c, const char *kernel,
                      const char *param) {
    for (int i = 0; i < c->n_tuning && i < PRISM_MAX_TUNING; i++)
        if (!strcmp(c->tuning[i].kernel, kernel) &&
            !strcmp(c->tuning[i].param, param))
            return true;
    return false;
}

bool prism_plan_tuning_merge_kernel(prism_config *trial,
                                    const prism_config *in, int k,
                                    prism_arch arch, const int64_t *values,
                                    char *why, size_t why_size) {
    const prism_kernel_def *def = prism_kernel_def_at(k);
    for (int t = 0; t < PRISM_MAX_TUNABLES && def->tunables[t].name; t++) {
        if (is_pinned(in, def->name, def->tunables[t].name))
            continue;
        if (trial->n_tuning >= PRISM_MAX_TUNING) {
            snprintf(why, why_size,
                     "the config already has %d tuning "
                     "overrides",
                     PRISM_MAX_TUNING);
            return false;
        }
        prism_tuning_override *o = &trial->tuning[trial->n_tuning++];
        memset(o, 0, sizeof *o);
        prism_strlcpy(o->kernel, def->name, sizeof o->kernel);
        prism_strlcpy(o->param, def->tunables[t].name, sizeof o->param);
        o->value = values[t];
    }
    prism_kernel_spec *spec = malloc(sizeof *spec);
    if (!spec) {
        snprintf(why, why_size, "out of memory");
        return false;
    }
    bool ok = prism_spec_build(trial, k, arch, spec, why, why_size) == PRISM_OK;
    free(spec);
    return ok;
}

prism_status prism_plan_tuning_apply(prism_context *ctx, const prism_config *in,
                                     const prism_tune_device *dev,
                                     int64_t max_seqlen, prism_config *out,
                                     int *n_applied) {
    if (!ctx || !in || !dev || !out)
        return PRISM_ERR_NULL_POINTER;
    if (out != in)
        *out = *in;
    if (n_applied)
        *n_applied = 0;
    prism_arch arch;
    if (tuning_disabled(ctx) || !prism_tune_device_arch(dev, &arch))
        return PRISM_OK;
    prism_config *trial = malloc(sizeof *trial);
    if (!trial)
        return PRISM_ERR_OUT_OF_MEMORY;
    prism_status st = PRISM_OK;
    for (int k = 0; k < prism_kernel_count(); k++) {
        const prism_kernel_def *def = prism_kernel_def_at(k);
        int free_tunables = 0;
        for (int t = 0; t < PRISM_MAX_TUNABLES && def->tunables[t].name; t++)
            free_tunables += !is_pinned(in, def->name, def->tunables[t].name);
        if (!free_tunables)
            continue;
        int64_t values[PRISM_MAX_TUNABLES];
        bool found = false;
        st = prism_plan_tuning_lookup(ctx, dev, in, def->name, max_seqlen,
                                      values, &found);
        if (st != PRISM_OK)
            break;
        if (!found)
            continue;
        char why[PRISM_ERRMSG_MAX], text[256];
        prism_tune_values_text(def, values, text, sizeof text);
        *trial = *out;
        if (!prism_plan_tuning_merge_kernel(trial, in, k, arch, values, why,
                                            sizeof why)) {
            prism_log(&ctx->logger, PRISM_LOG_WARN,
                      "tuned %s (%s) for bucket %d does not fit config '%s' "
                      "(%s); using the untuned kernel",
                      def->name, text, prism_tune_bucket(max_seqlen),
                      in->name, why);
            continue;
        }
        *out = *trial;
        if (n_applied)
            (*n_applied)++;
        prism_log(&ctx->logger, PRISM_LOG_INFO,
                  "%s: tuned for %s, bucket %d: %s", def->name, dev->name,
                  prism_tune_bucket(max_seqlen), text);
    }
    free(trial);
    return st;
}

prism_status prism_plan_tuning_device_query(const prism_driver *drv,
                                            CUdevice dev,
                                            prism_tune_device *out, char *err,
                                            size_t err_size) {
    memset(out, 0, sizeof *out);
    CUresult rc = drv->device_get_name(out->name, (int)sizeof out->name, dev);
    if (rc == CUDA_SUCCESS)
        rc = drv->device_get_attribute(
            &out->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
    if (rc == CUDA_SUCCESS)
        rc = drv->device_get_attribute(
            &out->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    if (rc == CUDA_SUCCESS)
        rc = drv->device_get_attribute(
            &out->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    if (rc == CUDA_SUCCESS)
        rc = drv->driver_get_version(&out->driver_version);
    if (rc != CUDA_SUCCESS)
        return prism_cuda_error(drv, rc,
                                "querying the device for its tuning "
                                "key",
                                err, err_size);
    out->name[sizeof out->name - 1] = '\0';
    prism_strlcpy(out->nvrtc, prism_nvrtc_version(), sizeof out->nvrtc);
    prism_tune_device_set_key(out);
    return PRISM_OK;
}

prism_status prism_plan_tuning_module(prism_context *ctx,
                                      const prism_driver *drv, CUdevice dev,
                                      prism_arch arch, const prism_config *cfg,
                                      int64_t max_seqlen_k, prism_config *used,
                                      prism_module **module) {
    char err[PRISM_ERRMSG_MAX];
    prism_tune_device device;
    int applied = 0;
    prism_config *tuned = malloc(sizeof *tuned);
    if (!tuned)
        return prism_context_fail(ctx, PRISM_ERR_OUT_OF_MEMORY,
                                  "out of memory creating a plan");
    prism_status st =
        prism_plan_tuning_device_query(drv, dev, &device, err, sizeof err);
    if (st != PRISM_OK)
        prism_log(&ctx->logger, PRISM_LOG_DEBUG, "no tuning: %s", err);
    else if ((st = prism_plan_tuning_apply(ctx, cfg, &device, max_seqlen_k,
                                           tuned, &applied)) != PRISM_OK)
        prism_log(&ctx->logger, PRISM_LOG_WARN,
                  "tuning database lookup failed (%s); using untuned kernels",
                  prism_status_string(st));
    if (applied > 0) {
        st = prism_module_build_valid(ctx, tuned, arch, module);
        if (st == PRISM_OK) {
            *used = *tuned;
            free(tuned);
            return PRISM_OK;
        }
        prism_log(&ctx->logger, PRISM_LOG_WARN,
                  "the tuned kernels of config '%s' do not build (%s); using "
                  "the untuned ones",
                  cfg->name, prism_context_last_error(ctx));
    }
    free(tuned);
    *used = *cfg;
    return prism_module_build_valid(ctx, cfg, arch, module);
}
