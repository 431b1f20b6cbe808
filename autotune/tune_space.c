/*
 * tune_space.c - a kernel's candidates: enumeration, compilation, pruning.
 *
 * The registry (gen/kernels.c) is the only source of truth for what may be
 * tuned: each tunable lists its legal values, and a kernel's spec function
 * rejects combinations that cannot work for a config.  So the search space
 * is simply every combination that prism_spec_build accepts; nothing here
 * knows about a particular kernel.
 *
 * Candidates are compiled through the ordinary cache with prism_module_build
 * on a config that pins them, so a later plan made from the same pins (or a
 * tuned plan, or a pack) finds the very same cubins.  Each compile worker
 * has its own context: a context keeps one last-error slot, and a failing
 * candidate's message must not be overwritten by its neighbour's.
 */
#include "autotune/autotune.h"

#include "runtime/context.h"
#include "gen/spec.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STATIC_SHARED                                                      \
    (48 * 1024) /* static __shared__ per CTA, any arch                         \
                 */
#define REGISTERS_PER_SM 65536

void prism_autotune_default_values(const prism_config *cfg, int k,
                                   int64_t values[PRISM_MAX_TUNABLES]) {
    const prism_kernel_def *def = prism_kernel_def_at(k);
    memset(values, 0, sizeof(int64_t) * PRISM_MAX_TUNABLES);
    for (int t = 0; def && t < PRISM_MAX_TUNABLES && def->tunables[t].name;
         t++) {
        values[t] = def->tunables[t].default_value;
        for (int i = 0; i < cfg->n_tuning && i < PRISM_MAX_TUNING; i++)
            if (!strcmp(cfg->tuning[i].kernel, def->name) &&
                !strcmp(cfg->tuning[i].param, def->tunables[t].name))
                values[t] = cfg->tuning[i].value;
    }
}

prism_status prism_autotune_candidate_config(const prism_config *cfg, int k,
                                             const int64_t *values,
                                             prism_config *out, char *err,
                                             size_t err_size) {
    if (out != cfg)
        *out = *cfg;
    int64_t pinned[PRISM_MAX_TUNABLES];
    int n = 0;
    prism_tuning_override pins[PRISM_MAX_TUNING];
    for (int j = 0; j < prism_kernel_count(); j++) {
        const prism_kernel_def *def = prism_kernel_def_at(j);
        prism_autotune_default_values(cfg, j, pinned);
        for (int t = 0; t < PRISM_MAX_TUNABLES && def->tunables[t].name; t++) {
            if (n >= PRISM_MAX_TUNING)
                return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                                    "the kernels have more than %d tunables "
                                    "together; a config cannot pin them all",
                                    PRISM_MAX_TUNING);
            prism_tuning_override *o = &pins[n++];
            memset(o, 0, sizeof *o);
            prism_strlcpy(o->kernel, def->name, sizeof o->kernel);
            prism_strlcpy(o->param, def->tunables[t].name, sizeof o->param);
            o->value = j == k ? values[t] : pinned[t];
        }
    }
    memset(out->tuning, 0, sizeof out->tuning);
    memcpy(out->tuning, pins, sizeof pins[0] * (size_t)n);
    out->n_tuning = n;
    return PRISM_OK;
}

prism_status prism_autotune_context_like(const prism_context *ctx, int ordinal,
                                         prism_context **out) {
    /* field by field from fresh defaults: a worker always runs on CUDA,
     * whatever else the caller's context was set up for */
    prism_context_options o;
    prism_context_options_init(&o);
    o.log = ctx->options.log;
    o.log_user = ctx->options.log_user;
    o.log_level = ctx->options.log_level;
    o.cache_max_bytes = ctx->options.cache_max_bytes;
    o.disable_jit = ctx->options.disable_jit;
    char path[PRISM_PATH_MAX * 4] = "";
    size_t used = 0;
    for (int i = 0; i < prism_cache_layer_count(ctx->cache); i++) {
        int n = snprintf(path + used, sizeof path - used, "%s%s", i ? ":" : "",
                         prism_cache_layer_dir(ctx->cache, i));
        if (n < 0 || (size_t)n >= sizeof path - used)
            break; /* a layer less only costs compiles */
        used += (size_t)n;
    }
    const char *dir = prism_context_cache_dir(ctx);
    o.device_ordinal = ordinal;
    o.cache_dir = *dir ? dir : NULL;
    o.disable_disk_cache = ctx->options.disable_disk_cache || !*dir;
    o.cache_path = path; /* "" means no layers, never $PRISM_CACHE_PATH */
    o.compile_threads = 1;
    return prism_context_create(&o, out);
}

prism_status prism_autotune_enumerate(const prism_config *cfg, int k,
                                      prism_arch arch,
                                      prism_tune_candidate **out, int *n_out,
                                      int *n_illegal, char *err,
                                      size_t err_size) {
    *out = NULL;
    *n_out = 0;
    *n_illegal = 0;
    const prism_kernel_def *def = prism_kernel_def_at(k);
    if (!def)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "kernel index %d out of range", k);
    int n_tun = 0, count[PRISM_MAX_TUNABLES] = {0};
    long long total = 1;
    for (; n_tun < PRISM_MAX_TUNABLES && def->tunables[n_tun].name; n_tun++) {
        while (def->tunables[n_tun].allowed[count[n_tun]] >= 0)
            count[n_tun]++;
        total *= count[n_tun] ? count[n_tun] : 1;
    }
    if (total > PRISM_TUNE_MAX_CANDIDATES)
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "%s has %lld combinations of tunables; at most %d "
                            "can be searched",
                            def->name, total, PRISM_TUNE_MAX_CANDIDATES);
    prism_tune_candidate *c = calloc((size_t)total + 1, sizeof *c);
    prism_config *trial = malloc(sizeof *trial);
    prism_kernel_spec *spec = malloc(sizeof *spec);
    prism_status st = PRISM_OK;
    if (!c || !trial || !spec) {
        st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                          "out of memory enumerating candidates");
        goto done;
    }
    /* candidate 0: the untuned values, legal or not (a config that cannot
     * build untuned fails here, which is the right error) */
    int n = 1;
    prism_autotune_default_values(cfg, k, c[0].values);
    if ((st = prism_autotune_candidate_config(cfg, k, c[0].values, trial, err,
                                              err_size)) != PRISM_OK ||
        (st = prism_spec_build(trial, k, arch, spec, err, err_size)) !=
            PRISM_OK)
        goto done;
    int digit[PRISM_MAX_TUNABLES] = {0};
    for (long long combo = 0; combo < total; combo++) {
        int64_t v[PRISM_MAX_TUNABLES] = {0};
        for (int t = 0; t < n_tun; t++)
            v[t] = count[t] ? def->tunables[t].allowed[digit[t]]
                            : def->tunables[t].default_value;
        for (int t = n_tun - 1; t >= 0;
             t--) { /* odometer, last digit fastest */
            if (++digit[t] < (count[t] ? count[t] : 1))
                break;
            digit[t] = 0;
        }
        if (!memcmp(v, c[0].values, sizeof v))
            continue;
        char why[PRISM_ERRMSG_MAX];
        if (prism_autotune_candidate_config(cfg, k, v, trial, why,
                                            sizeof why) != PRISM_OK ||
            prism_spec_build(trial, k, arch, spec, why, sizeof why) !=
                PRISM_OK) {
            (*n_illegal)++;
            continue;
        }
        memcpy(c[n++].values, v, sizeof v);
    }
    for (int i = 0; i < n; i++)
        c[i].registers = c[i].spill_bytes = c[i].shared_bytes = -1;
    *out = c;
    *n_out = n;
    c = NULL;
done:
    free(c);
    free(trial);
    free(spec);
    return st;
}

prism_autotune_spills prism_autotune_spill_check(const prism_kernel_info *i) {
    return i->spill_bytes >= 0  ? PRISM_SPILLS_REPORTED
           : i->local_bytes >= 0 ? PRISM_SPILLS_FROM_FRAME
                                 : PRISM_SPILLS_UNKNOWN;
}

bool prism_autotune_prune_reason(const prism_kernel_info *info, int threads,
                                 char *why, size_t why_size) {
    if (info->spill_bytes > 0)
        return snprintf(why, why_size, "spills %d bytes", info->spill_bytes),
               true;
    /* no ptxas report: the stack frame read from the cubin bounds spills */
    if (info->spill_bytes < 0 && info->local_bytes > 0)
        return snprintf(why, why_size,
                        "%d bytes of local memory (stack frame; ptxas "
                        "reported no spills, so local memory stands for them)",
                        info->local_bytes),
               true;
    if (info->shared_bytes > MAX_STATIC_SHARED)
        return snprintf(why, why_size,
                        "%d bytes of static shared memory; a CTA may have "
                        "%d",
                        info->shared_bytes, MAX_STATIC_SHARED),
               true;
    if (threads > 0 && info->registers > 0 &&
        (long long)info->registers * threads > REGISTERS_PER_SM)
        return snprintf(why, why_size,
                        "%d registers x %d threads exceed the %d registers "
                        "of an SM",
                        info->registers, threads, REGISTERS_PER_SM),
               true;
    return false;
}

typedef struct compile_queue {
    prism_context *ctx;
    const prism_config *cfg;
    int k;
    prism_arch arch;
    prism_tune_candidate *cands;
    prism_autotune_build *builds;
    int n, next;
    double deadline_ms;
    pthread_mutex_t lock;
} compile_queue;

void prism_autotune_compile_one(prism_context *ctx, const prism_config *base,
                                int k, prism_arch arch, bool is_default,
                                prism_tune_candidate *c,
                                prism_autotune_build *b) {
    char why[PRISM_ERRMSG_MAX];
    prism_module *m = NULL;
    prism_config *cfg = malloc(sizeof *cfg);
    prism_kernel_spec *spec = malloc(sizeof *spec);
    b->attempted = true;
    b->ready = false;
    if (!cfg || !spec) {
        c->status = PRISM_TUNE_PRUNED;
        snprintf(c->reason, sizeof c->reason, "out of memory");
        goto done;
    }
    if (prism_autotune_candidate_config(base, k, c->values, cfg, why,
                                        sizeof why) != PRISM_OK ||
        prism_spec_build(cfg, k, arch, spec, why, sizeof why) != PRISM_OK) {
        c->status = PRISM_TUNE_PRUNED;
        snprintf(c->reason, sizeof c->reason, "illegal: %.180s", why);
        goto done;
    }
    if (prism_module_build(ctx, cfg, arch, &m) != PRISM_OK) {
        c->status = PRISM_TUNE_PRUNED;
        snprintf(c->reason, sizeof c->reason, "does not compile: %.170s",
                 prism_context_last_error(ctx));
        goto done;
    }
    prism_kernel_info info;
    prism_module_kernel_info(m, k, &info);
    c->registers = info.registers;
    c->spill_bytes = info.spill_bytes;
    c->shared_bytes = info.shared_bytes;
    b->spills = prism_autotune_spill_check(&info);
    prism_sha256(info.cubin, info.cubin_size, b->cubin_sha);
    int threads = (int)prism_spec_int(spec, "THREADS", -1);
    /* the untuned kernel is the reference: it is what runs without tuning,
     * so it is timed whatever ptxas says about it */
    if (!is_default &&
        prism_autotune_prune_reason(&info, threads, why, sizeof why)) {
        c->status = PRISM_TUNE_PRUNED;
        prism_strlcpy(c->reason, why, sizeof c->reason);
    } else {
        b->ready = true;
    }
done:
    prism_module_destroy(m);
    free(cfg);
    free(spec);
}

static void *compile_worker(void *arg) {
    compile_queue *q = arg;
    prism_context *wctx = NULL;
    if (prism_autotune_context_like(q->ctx, 0, &wctx) != PRISM_OK)
        return NULL; /* the other workers (or none: candidates stay untried) */
    for (;;) {
        pthread_mutex_lock(&q->lock);
        int i = -1;
        while (q->next < q->n && i < 0) {
            int j = q->next++;
            if (q->cands[j].status == PRISM_TUNE_UNTIMED &&
                !q->builds[j].attempted)
                i = j;
        }
        bool late = q->deadline_ms > 0 && prism_now_ms() > q->deadline_ms;
        pthread_mutex_unlock(&q->lock);
        if (i < 0 || late)
            break;
        prism_autotune_compile_one(wctx, q->cfg, q->k, q->arch, i == 0,
                                   &q->cands[i], &q->builds[i]);
    }
    prism_context_destroy(wctx);
    return NULL;
}

prism_status prism_autotune_compile(prism_context *ctx, const prism_config *cfg,
                                    int k, prism_arch arch,
                                    prism_tune_candidate *cands,
                                    prism_autotune_build *builds, int n,
                                    int threads, double deadline_ms) {
    if (!ctx || !cfg || (!cands && n) || (!builds && n))
        return PRISM_ERR_NULL_POINTER;
    if (!prism_kernel_def_at(k))
        return PRISM_ERR_INVALID_ARGUMENT;
    compile_queue q = {.ctx = ctx,
                       .cfg = cfg,
                       .k = k,
                       .arch = arch,
                       .cands = cands,
                       .builds = builds,
                       .n = n,
                       .deadline_ms = deadline_ms};
    pthread_mutex_init(&q.lock, NULL);
    if (threads <= 0)
        threads = ctx->options.compile_threads;
    if (threads > n)
        threads = n;
    if (threads > 64)
        threads = 64;
    pthread_t tid[64];
    int started = 0;
    for (int i = 1; i < threads; i++)
        if (pthread_create(&tid[started], NULL, compile_worker, &q) == 0)
            started++;
    compile_worker(&q);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&q.lock);
    for (int i = 1; i < n; i++)
        prism_autotune_dedupe(k, cands, builds, i, i);
    return PRISM_OK;
}

bool prism_autotune_dedupe(int k, prism_tune_candidate *cands,
                           prism_autotune_build *builds, int n, int i) {
    if (i == 0 || !builds[i].ready)
        return false;
    for (int j = 0; j < n; j++) {
        if (j == i || !builds[j].ready ||
            memcmp(builds[i].cubin_sha, builds[j].cubin_sha, 32))
            continue;
        char text[160];
        prism_tune_values_text(prism_kernel_def_at(k), cands[j].values, text,
                               sizeof text);
        builds[i].ready = false;
        cands[i].status = PRISM_TUNE_PRUNED;
        snprintf(cands[i].reason, sizeof cands[i].reason, "same cubin as %s",
                 text);
        return true;
    }
    return false;
}
