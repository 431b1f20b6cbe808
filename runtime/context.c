/*
 * context.c - the context: logger, kernel cache and last-error slot.
 *
 * A context is what a host program creates once.  It owns the cache (and
 * so the counters) and is safe to share between threads: the cache locks
 * itself and the last-error slot has its own mutex.
 */
#include "runtime/context.h"
#include "base/parse.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    prism_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return PRISM_ERR_OUT_OF_MEMORY;
    if (options)
        ctx->options = *options;
    else
        prism_context_options_init(&ctx->options);
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
        .dir = options ? options->cache_dir : NULL,
        .read_only_path = options ? options->cache_path : NULL,
        .max_bytes = ctx->options.cache_max_bytes,
        .disable_disk = ctx->options.disable_disk_cache,
        .disable_jit = ctx->options.disable_jit,
        .logger = &ctx->logger,
    };
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_cache_open(&co, &ctx->cache, err, sizeof err);
    if (st != PRISM_OK) {
        prism_log(&ctx->logger, PRISM_LOG_ERROR, "%s", err);
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

const char *prism_context_last_error(const prism_context *ctx) {
    if (!ctx)
        return "no context (NULL)";
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
