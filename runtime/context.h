/*
 * context.h - the context's internals, shared by the modules that use it.
 */
#ifndef PRISM_CONTEXT_H
#define PRISM_CONTEXT_H

#include "cache/cache.h"

#include <pthread.h>
#include <stdarg.h>

struct prism_context {
    prism_context_options options;
    prism_logger logger;
    prism_cache *cache;
    pthread_mutex_t error_lock;
    char last_error[PRISM_ERRMSG_MAX];
    /* modules time NVRTC's phases of each compile (`prism compile
     * --verbose`); set before the context is shared */
    bool time_phases;
};

/* Records msg as the context's last error and returns status. */
prism_status prism_context_fail(prism_context *ctx, prism_status status,
                                const char *msg);

/* The same with a printf message (at most PRISM_ERRMSG_MAX bytes kept). */
prism_status prism_context_failf(prism_context *ctx, prism_status status,
                                 const char *fmt, ...) PRISM_PRINTF(3, 4);
prism_status prism_context_failv(prism_context *ctx, prism_status status,
                                 const char *fmt, va_list ap);

#endif
