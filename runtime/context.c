/*
 * context.c - the context: logger, kernel cache and last-error slot.
 *
 * A context is what a host program creates once.  It owns the cache (and
 * so the counters) and is safe to share between threads: the cache locks
 * itself and the last-error slot has its own mutex.
 *
 * Its options are checked at creation, so that a wrong one fails there,
 * naming the field, rather than as a confusing error of some later call.
 * Creation has no context to keep the message in, so it is logged (ERROR)
 * and kept per thread for prism_context_last_error(NULL).  Only a nonzero
 * CUDA device ordinal asks the driver (the first GPU call would have to
 * anyway); ordinal 0, and any ordinal on a machine without a driver, is
 * checked by the first plan, which fails with PRISM_ERR_NO_DRIVER or
 * PRISM_ERR_NO_DEVICE.
 */
#include "runtime/context.h"
#include "base/cuda_driver.h"
#include "base/parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NO_CONTEXT "no context (NULL)"

/* The message of the last prism_context_create that failed on this
 * thread (prism_context_last_error(NULL)). */
static _Thread_local char create_error[PRISM_ERRMSG_MAX] = NO_CONTEXT;

static prism_status create_fail(const prism_logger *logger,
                                prism_status status, const char *fmt, ...)
    PRISM_PRINTF(3, 4);

static prism_status create_fail(const prism_logger *logger,
                                prism_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(create_error, sizeof create_error, fmt, ap);
    va_end(ap);
    prism_log(logger, PRISM_LOG_ERROR, "%s", create_error);
    return status;
}

/* The CUDA ordinal against the driver's device count, when there is a
 * driver to ask (see the file comment). */
static prism_status check_ordinal(const prism_context_options *o,
                                  const prism_logger *logger) {
    if (o->device != PRISM_DEVICE_CUDA || o->device_ordinal == 0)
        return PRISM_OK;
    const prism_driver *drv;
    char err[PRISM_ERRMSG_MAX];
    int count = 0;
    if (prism_driver_get(&drv, err, sizeof err) != PRISM_OK ||
        drv->device_get_count(&count) != CUDA_SUCCESS)
        return PRISM_OK; /* the first plan reports it */
    if (o->device_ordinal < count)
        return PRISM_OK;
    return create_fail(logger, PRISM_ERR_NO_DEVICE,
                       "prism_context_create: options.device_ordinal = %d, "
                       "but this machine has %d CUDA device(s); use 0..%d",
                       o->device_ordinal, count, count - 1);
}

/* Every option a caller can get wrong, by name. */
static prism_status check_options(const prism_context_options *o,
                                  const prism_logger *logger) {
    static const char who[] = "prism_context_create: options.";
    if (o->device != PRISM_DEVICE_CUDA && o->device != PRISM_DEVICE_CPU)
        return create_fail(logger, PRISM_ERR_INVALID_ARGUMENT,
                           "%sdevice = %d is not a device kind; use "
                           "PRISM_DEVICE_CUDA or PRISM_DEVICE_CPU",
                           who, (int)o->device);
    if (o->device_ordinal < 0)
        return create_fail(logger, PRISM_ERR_INVALID_ARGUMENT,
                           "%sdevice_ordinal = %d is negative; use a CUDA "
                           "device number from 0",
                           who, o->device_ordinal);
    if (o->cpu_threads < 0)
        return create_fail(logger, PRISM_ERR_INVALID_ARGUMENT,
                           "%scpu_threads = %d is negative; use 0 (one per "
                           "online CPU) or a count",
                           who, o->cpu_threads);
    if (o->compile_threads < 0)
        return create_fail(logger, PRISM_ERR_INVALID_ARGUMENT,
                           "%scompile_threads = %d is negative; use 0 (one "
                           "per online CPU) or a count",
                           who, o->compile_threads);
    if (o->cache_max_bytes < 0)
        return create_fail(logger, PRISM_ERR_INVALID_ARGUMENT,
                           "%scache_max_bytes = %lld is negative; use 0 "
                           "($PRISM_CACHE_MAX_BYTES or 2 GiB) or a size",
                           who, (long long)o->cache_max_bytes);
    return check_ordinal(o, logger);
}

void prism_context_options_init(prism_context_options *o) {
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->log_level = PRISM_LOG_WARN;
}

/* $PRISM_JIT=off (a switch, base/parse.h) turns a cache miss into an
 * error; a value that is not a switch is logged and ignored. */
static bool jit_disabled_by_env(const prism_logger *logger) {
    bool on;
    char why[PRISM_ERRMSG_MAX];
    if (prism_env_bool("PRISM_JIT", true, &on, why, sizeof why) != PRISM_OK)
        prism_log(logger, PRISM_LOG_WARN, "%s", why);
    return !on;
}

/* $PRISM_LINEINFO is read by the compiler (compile/nvrtc_compile.c),
 * which has no logger: a value that is not a switch is reported here. */
static void warn_bad_line_info(const prism_logger *logger) {
    bool on;
    char why[PRISM_ERRMSG_MAX];
    if (prism_env_bool("PRISM_LINEINFO", false, &on, why, sizeof why) !=
        PRISM_OK)
        prism_log(logger, PRISM_LOG_WARN, "%s", why);
}

prism_status prism_context_create(const prism_context_options *options,
                                  prism_context **out) {
    if (!out)
        return PRISM_ERR_NULL_POINTER;
    *out = NULL;
    prism_context_options defaults;
    prism_context_options_init(&defaults);
    if (!options)
        options = &defaults;
    prism_logger logger = {options->log, options->log_user,
                           options->log_level};
    prism_status st = check_options(options, &logger);
    if (st != PRISM_OK)
        return st;
    prism_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return create_fail(&logger, PRISM_ERR_OUT_OF_MEMORY,
                           "prism_context_create: out of memory");
    ctx->options = *options;
    if (ctx->options.compile_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        ctx->options.compile_threads = n > 0 ? (int)n : 1;
    }
    /* The caller's strings need not outlive this call. */
    ctx->options.cache_dir = NULL;
    ctx->options.cache_path = NULL;
    ctx->logger.fn = ctx->options.log;
    ctx->logger.user = ctx->options.log_user;
    ctx->logger.level = ctx->options.log_level;
    if (jit_disabled_by_env(&ctx->logger))
        ctx->options.disable_jit = true;
    warn_bad_line_info(&ctx->logger);
    pthread_mutex_init(&ctx->error_lock, NULL);

    prism_cache_options co = {
        .dir = options->cache_dir,
        .read_only_path = options->cache_path,
        .max_bytes = ctx->options.cache_max_bytes,
        .disable_disk = ctx->options.disable_disk_cache,
        .disable_jit = ctx->options.disable_jit,
        .logger = &ctx->logger,
    };
    char err[PRISM_ERRMSG_MAX];
    st = prism_cache_open(&co, &ctx->cache, err, sizeof err);
    if (st != PRISM_OK) {
        create_fail(&ctx->logger, st, "%s", err);
        pthread_mutex_destroy(&ctx->error_lock);
        free(ctx);
        return st;
    }
    *out = ctx;
    return PRISM_OK;
}

void prism_context_destroy(prism_context *ctx) {
    if (!ctx)
        return;
    prism_cache_close(ctx->cache);
    pthread_mutex_destroy(&ctx->error_lock);
    free(ctx);
}

prism_status prism_context_fail(prism_context *ctx, prism_status status,
                                const char *msg) {
    if (!ctx)
        return status;
    pthread_mutex_lock(&ctx->error_lock);
    prism_strlcpy(ctx->last_error, msg ? msg : prism_status_string(status),
                  sizeof ctx->last_error);
    pthread_mutex_unlock(&ctx->error_lock);
    return status;
}

prism_status prism_context_failv(prism_context *ctx, prism_status status,
                                 const char *fmt, va_list ap) {
    char msg[PRISM_ERRMSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return prism_context_fail(ctx, status, msg);
}

prism_status prism_context_failf(prism_context *ctx, prism_status status,
                                 const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    prism_status st = prism_context_failv(ctx, status, fmt, ap);
    va_end(ap);
    return st;
}

const char *prism_context_last_error(const prism_context *ctx) {
    if (!ctx)
        return create_error;
    return ctx->last_error;
}

prism_status prism_context_counters(const prism_context *ctx,
                                    prism_counters *out) {
    if (!ctx || !out)
        return PRISM_ERR_NULL_POINTER;
    prism_cache_counters(ctx->cache, out);
    return PRISM_OK;
}

const char *prism_context_cache_dir(const prism_context *ctx) {
    /* the cache's own string: it lives as long as the context and is
     * never cut short, whatever its length */
    return ctx ? prism_cache_dir(ctx->cache) : "";
}
