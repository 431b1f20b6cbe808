/*
 * plan_async.c - making a plan on a background thread.
 *
 * A cold plan compiles its kernels: seconds per config on a small machine.
 * A host that starts the plan early can load its weights, open its
 * sockets, warm its own caches meanwhile and wait for the plan only when
 * it needs it.  The background thread runs prism_plan_create as it is, so
 * the plan is the very plan a synchronous call would make (the same
 * device, tuning, cache entries), and its compiles share the context's
 * cache with everything else: a kernel compiled here is compiled once, and
 * a plan made meanwhile that needs it waits for it (cache/cache.c's
 * in-flight builds) instead of compiling it again.
 */
#include "runtime/context.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct prism_plan_pending {
    prism_context *ctx;
    prism_config cfg;
    prism_plan_limits limits;
    pthread_t thread;
    pthread_mutex_t lock;
    bool done;
    prism_status status;
    prism_plan *plan;
    char error[PRISM_ERRMSG_MAX]; /* the failure's message, from the thread
                                     that saw it */
};

static void *make_plan(void *arg) {
    prism_plan_pending *w = arg;
    prism_plan *plan = NULL;
    prism_status st = prism_plan_create(w->ctx, &w->cfg, &w->limits, &plan);
    pthread_mutex_lock(&w->lock);
    w->status = st;
    w->plan = plan;
    if (st != PRISM_OK)
        prism_strlcpy(w->error, prism_context_last_error(w->ctx),
                      sizeof w->error);
    w->done = true;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

prism_status prism_plan_create_async(prism_context *ctx,
                                     const prism_config *cfg,
                                     const prism_plan_limits *limits,
                                     prism_plan_pending **out) {
    if (out)
        *out = NULL;
    if (!ctx || !cfg || !limits || !out)
        return prism_context_fail(ctx, PRISM_ERR_NULL_POINTER,
                                  "prism_plan_create_async: NULL argument");
    char err[PRISM_ERRMSG_MAX];
    prism_status st = prism_config_validate(cfg, err, sizeof err);
    if (st != PRISM_OK)
        return prism_context_fail(ctx, st, err);
    prism_plan_pending *w = calloc(1, sizeof *w);
    if (!w)
        return prism_context_fail(ctx, PRISM_ERR_OUT_OF_MEMORY,
                                  "out of memory starting a plan");
    w->ctx = ctx;
    w->cfg = *cfg;
    w->limits = *limits;
    pthread_mutex_init(&w->lock, NULL);
    if (pthread_create(&w->thread, NULL, make_plan, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        free(w);
        return prism_context_fail(ctx, PRISM_ERR_INTERNAL,
                                  "cannot start a thread to make the plan");
    }
    *out = w;
    return PRISM_OK;
}

bool prism_plan_pending_ready(const prism_plan_pending *w) {
    if (!w)
        return false;
    prism_plan_pending *m = (prism_plan_pending *)w; /* the lock only */
    pthread_mutex_lock(&m->lock);
    bool done = m->done;
    pthread_mutex_unlock(&m->lock);
    return done;
}

prism_status prism_plan_wait(prism_plan_pending *w, prism_plan **out) {
    if (out)
        *out = NULL;
    if (!w)
        return PRISM_ERR_NULL_POINTER;
    pthread_join(w->thread, NULL);
    prism_status st = w->status;
    if (st == PRISM_OK && out)
        *out = w->plan;
    else if (st == PRISM_OK)
        prism_plan_destroy(w->plan); /* nobody to take it */
    else
        prism_context_fail(w->ctx, st, w->error);
    pthread_mutex_destroy(&w->lock);
    free(w);
    return st;
}
