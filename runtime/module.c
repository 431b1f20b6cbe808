/*
 * module.c - the pipeline, as a flat list of passes per kernel:
 *
 *   1. spec     config -> kernel spec            (gen/spec.c)
 *   2. emit     kernel spec -> CUDA source       (gen/emit.c)
 *   3. key      source + NVRTC + arch + options -> cache key (cache.c)
 *   4. fetch    cache layers, or on a miss:
 *   5. compile  NVRTC -> cubin + ptxas info      (nvrtc_compile.c), then publish
 *
 * Passes 1-3 run serially (microseconds); 4-5 run on worker threads, one
 * kernel at a time each, because NVRTC takes seconds per kernel and the
 * cache serialises compiles of one key across threads and processes.
 *
 * A program is one kernel's source and cubin.  A module holds each kernel's
 * plain program, or (prism_module_build_programs) the paged programs of
 * the kernels that have one, which only paged launches need, or both.
 *
 * The module keeps its own copy of the config and each kernel's spec, so
 * a plan launches with the very spec its source was generated from (the
 * launch shape, the entry points) instead of building it again.  The
 * config is validated once, by prism_module_build; a plan, which has
 * validated it already, builds through prism_module_build_valid.
 */
#include "runtime/module.h"
#include "compile/nvrtc_compile.h"

#include <stdlib.h>
#include <string.h>

typedef struct kernel_job {
    const prism_config *cfg;
    const prism_kernel_def *def;
    prism_kernel_spec spec;
    prism_arch arch;
    char *source;
    prism_cache_key key;
    prism_cache_entry entry;
    bool hit;
    double lookup_ms;
    prism_nvrtc_extra extra; /* NVRTC's phases, ptxas threads */
    prism_module_timing timing; /* of the compile, when this job compiled */
    prism_status status;
    char err[PRISM_ERRMSG_MAX];
} kernel_job;

struct prism_module {
    prism_config cfg; /* the specs point here */
    prism_arch arch;
    int n_kernels;
    kernel_job *jobs;
    double fetch_ms; /* passes 4-5 of every kernel, wall */
    int threads;     /* that ran them */
};

typedef struct job_queue {
    prism_context *ctx;
    kernel_job *jobs;
    int order[2 * PRISM_KERNEL_COUNT]; /* job indices, longest source first */
    int n_jobs;
    int next; /* taken under lock */
    pthread_mutex_t lock;
} job_queue;

/* Cache builder: compile with NVRTC and hand the cubin to the cache. */
static prism_status build_with_nvrtc(void *user, void **payload,
                                     size_t *payload_size,
                                     prism_cache_meta *meta, char **log,
                                     char *err, size_t err_size) {
    kernel_job *job = user;
    prism_nvrtc_result r;
    char name[96];
    snprintf(name, sizeof name, "%s.cu", job->spec.name);
    prism_status st = prism_nvrtc_compile_ex(job->source, name, job->arch,
                                             &job->extra, &r, err, err_size);
    job->timing = (prism_module_timing){
        .compiled = true, .wall_ms = r.compile_ms, .cpu_ms = r.cpu_ms,
        .frontend_ms = r.frontend_ms, .nvvm_ms = r.nvvm_ms,
        .ptxas_ms = r.ptxas_ms};
    if (st != PRISM_OK) {
        *log = r.log; /* the whole log travels with the error */
        r.log = NULL;
        prism_nvrtc_result_free(&r);
        return st;
    }
    *payload = r.cubin;
    *payload_size = r.cubin_size;
    *log = r.log;
    meta->registers = r.registers;
    meta->spill_bytes = r.spill_bytes;
    meta->shared_bytes = r.shared_bytes;
    meta->local_bytes = r.local_bytes;
    meta->compile_ms = r.compile_ms;
    return PRISM_OK;
}

static void run_job(prism_context *ctx, kernel_job *job) {
    prism_cache_meta meta;
    memset(&meta, 0, sizeof meta);
    prism_strlcpy(meta.config_name, job->cfg->name, sizeof meta.config_name);
    prism_strlcpy(meta.kernel_name, job->spec.name, sizeof meta.kernel_name);
    prism_strlcpy(meta.arch, prism_arch_name(job->arch), sizeof meta.arch);
    /* the key's compiler, so that `prism cache verify` can tell which
     * hosts will ever look the entry up */
    prism_strlcpy(meta.compiler, prism_nvrtc_version(), sizeof meta.compiler);
    double t0 = prism_now_ms();
    job->status = prism_cache_get(ctx->cache, &job->key, &meta,
                                  build_with_nvrtc, job, &job->entry,
                                  &job->hit, job->err, sizeof job->err);
    job->lookup_ms = prism_now_ms() - t0;
}

static void *worker(void *arg) {
    job_queue *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        int i = q->next < q->n_jobs ? q->order[q->next++] : -1;
        pthread_mutex_unlock(&q->lock);
        if (i < 0)
            return NULL;
        run_job(q->ctx, &q->jobs[i]);
    }
}

/* The longest source first: a compile takes roughly as long as its
 * source, and starting the longest first keeps it off the end of the
 * critical path when there are fewer threads than kernels. */
static void order_jobs(job_queue *q) {
    for (int i = 0; i < q->n_jobs; i++) {
        int j = i;
        size_t len = strlen(q->jobs[i].source);
        for (; j > 0 && strlen(q->jobs[q->order[j - 1]].source) < len; j--)
            q->order[j] = q->order[j - 1];
        q->order[j] = i;
    }
}

/* Passes 4-5 for every job, on up to compile_threads threads; returns how
 * many threads ran. */
static int fetch_all(prism_context *ctx, kernel_job *jobs, int n) {
    job_queue q = {.ctx = ctx, .jobs = jobs, .n_jobs = n, .next = 0};
    order_jobs(&q);
    pthread_mutex_init(&q.lock, NULL);
    int want = ctx->options.compile_threads < n ? ctx->options.compile_threads
                                                : n;
    pthread_t threads[16];
    int started = 0;
    for (int i = 1; i < want && started < 16; i++)
        if (pthread_create(&threads[started], NULL, worker, &q) == 0)
            started++;
    worker(&q); /* the calling thread works too */
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&q.lock);
    return started + 1;
}

/* Passes 1-3 for one program: kernel `index`'s, or its paged one. */
static prism_status prepare_job(const prism_config *cfg, int index,
                                prism_arch arch, bool paged, kernel_job *job) {
    job->cfg = cfg;
    job->def = prism_kernel_def_at(index);
    job->arch = arch;
    prism_status st = prism_spec_build(cfg, index, arch, &job->spec, job->err,
                                       sizeof job->err);
    if (st == PRISM_OK && paged)
        prism_spec_paged(&job->spec);
    if (st == PRISM_OK)
        st = prism_emit_source(&job->spec, &job->source, job->err,
                               sizeof job->err);
    if (st != PRISM_OK)
        return st;
    const char *opts[PRISM_NVRTC_MAX_OPTIONS];
    int n_opts = prism_nvrtc_options(arch, opts);
    prism_cache_key_input in = {
        .source = job->source,
        .nvrtc_version = prism_nvrtc_version(),
        .arch = prism_arch_name(arch),
        .options = opts,
        .n_options = n_opts,
    };
    prism_cache_key_compute(&in, &job->key);
    return PRISM_OK;
}

prism_status prism_module_build(prism_context *ctx, const prism_config *cfg,
                                prism_arch arch, prism_module **out) {
    if (!ctx || !cfg || !out)
        return prism_context_fail(ctx, PRISM_ERR_NULL_POINTER,
                                  "prism_module_build: NULL argument");
    *out = NULL;
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_config_validate(cfg, err, sizeof err);
    if (st != PRISM_OK)
        return prism_context_fail(ctx, st, err);
    return prism_module_build_valid(ctx, cfg, arch, out);
}

prism_status prism_module_build_valid(prism_context *ctx,
                                      const prism_config *cfg, prism_arch arch,
                                      prism_module **out) {
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_module_build_programs(ctx, cfg, arch,
                                                  PRISM_PROGRAMS_PLAIN, out,
                                                  err, sizeof err);
    return st == PRISM_OK ? st : prism_context_fail(ctx, st, err);
}

prism_status prism_module_build_programs(prism_context *ctx,
                                         const prism_config *cfg,
                                         prism_arch arch, unsigned programs,
                                         prism_module **out, char *err,
                                         size_t err_size) {
    prism_status st = PRISM_OK;
    *out = NULL;
    prism_module *m = calloc(1, sizeof *m);
    int n = 0, kernels = prism_kernel_count();
    if (!m || !(m->jobs = calloc(2 * (size_t)kernels, sizeof *m->jobs))) {
        free(m);
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory creating a module");
    }
    m->cfg = *cfg;
    m->arch = arch;
    /* the plain programs in pipeline order, then the paged ones */
    for (int pass = 0; pass < 2; pass++) {
        bool paged = pass == 1;
        if (!(programs & (paged ? PRISM_PROGRAMS_PAGED : PRISM_PROGRAMS_PLAIN)))
            continue;
        for (int i = 0; i < kernels; i++) {
            if (paged && !prism_kernel_def_at(i)->paged_entry)
                continue;
            m->n_kernels = n + 1;
            st = prepare_job(&m->cfg, i, arch, paged, &m->jobs[n]);
            if (st != PRISM_OK) {
                prism_strlcpy(err, m->jobs[n].err, err_size);
                goto fail;
            }
            n++;
        }
    }
    for (int i = 0; i < n; i++)
        m->jobs[i].extra = (prism_nvrtc_extra){
            .phases = ctx->time_phases,
            .ptxas_threads = ctx->options.compile_threads};
    double t0 = prism_now_ms();
    m->threads = fetch_all(ctx, m->jobs, n);
    m->fetch_ms = prism_now_ms() - t0;
    for (int i = 0; i < n; i++) {
        if (m->jobs[i].status != PRISM_OK) {
            st = m->jobs[i].status;
            prism_strlcpy(err, m->jobs[i].err, err_size);
            goto fail;
        }
    }
    *out = m;
    return PRISM_OK;

fail:
    prism_module_destroy(m);
    return st;
}

void prism_module_destroy(prism_module *m) {
    if (!m)
        return;
    for (int i = 0; i < m->n_kernels; i++) {
        free(m->jobs[i].source);
        prism_cache_entry_free(&m->jobs[i].entry);
    }
    free(m->jobs);
    free(m);
}

int prism_module_kernel_count(const prism_module *m) {
    return m ? m->n_kernels : 0;
}

prism_status prism_module_kernel_info(const prism_module *m, int index,
                                      prism_kernel_info *out) {
    if (!m || !out)
        return PRISM_ERR_NULL_POINTER;
    if (index < 0 || index >= m->n_kernels)
        return PRISM_ERR_INVALID_ARGUMENT;
    const kernel_job *job = &m->jobs[index];
    const prism_cache_meta *meta = &job->entry.meta;
    memset(out, 0, sizeof *out);
    out->name = job->spec.name;
    out->arch = m->arch;
    out->cache_hit = job->hit;
    memcpy(out->key_hex, job->key.hex, sizeof out->key_hex);
    out->registers = meta->registers;
    out->spill_bytes = meta->spill_bytes;
    out->shared_bytes = meta->shared_bytes;
    out->local_bytes = meta->local_bytes;
    if (meta->registers < 0) {
        /* an entry published without ptxas statistics: read the cubin */
        prism_nvrtc_result r;
        prism_nvrtc_stats(NULL, job->entry.payload, job->entry.payload_size,
                          &r);
        out->registers = r.registers;
        out->spill_bytes = r.spill_bytes;
        out->shared_bytes = r.shared_bytes;
        out->local_bytes = r.local_bytes;
    }
    out->compile_ms = meta->compile_ms;
    out->lookup_ms = job->lookup_ms;
    out->cubin = job->entry.payload;
    out->cubin_size = job->entry.payload_size;
    return PRISM_OK;
}

const prism_kernel_spec *prism_module_kernel_spec(const prism_module *m,
                                                  int index) {
    if (!m || index < 0 || index >= m->n_kernels)
        return NULL;
    return &m->jobs[index].spec;
}

const char *prism_module_kernel_log(const prism_module *m, int index) {
    if (!m || index < 0 || index >= m->n_kernels || !m->jobs[index].entry.log)
        return "";
    return m->jobs[index].entry.log;
}

prism_status prism_module_kernel_timing(const prism_module *m, int index,
                                        prism_module_timing *out) {
    if (!m || !out)
        return PRISM_ERR_NULL_POINTER;
    if (index < 0 || index >= m->n_kernels)
        return PRISM_ERR_INVALID_ARGUMENT;
    *out = m->jobs[index].timing;
    return PRISM_OK;
}

double prism_module_fetch_ms(const prism_module *m, int *threads) {
    if (threads)
        *threads = m ? m->threads : 0;
    return m ? m->fetch_ms : 0;
}
