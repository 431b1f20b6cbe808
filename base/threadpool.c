/*
 * threadpool.c - the one parallel construct of the library: a parallel
 * for over independent indices.
 *
 * The reference's work splits naturally into independent rows (a batch
 * entry, a head and a block), so a dynamic "next index" counter shared by a
 * few pthreads is all it needs: no queue, no persistent pool, no state
 * between calls.  Each call starts its workers and joins them.  Results do
 * not depend on which worker ran an index because every index writes its
 * own outputs; `worker` only selects per-thread scratch memory.  If a
 * thread cannot be started the caller runs as worker 0 and the others that
 * did start share the work, so the call cannot fail.
 */
#include "base/threadpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

int prism_cpu_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > 256 ? 256 : (int)n;
}

typedef struct parallel_job {
    atomic_llong next;
    int64_t n;
    void (*fn)(void *ctx, int64_t index, int worker);
    void *ctx;
} parallel_job;

typedef struct worker_arg {
    parallel_job *job;
    int worker;
} worker_arg;

static void run_worker(parallel_job *job, int worker) {
    for (;;) {
        int64_t index = (int64_t)atomic_fetch_add(&job->next, 1);
        if (index >= job->n)
            return;
        job->fn(job->ctx, index, worker);
    }
}

static void *worker_main(void *p) {
    worker_arg *arg = p;
    run_worker(arg->job, arg->worker);
    return NULL;
}

void prism_parallel_for(int64_t n, int threads,
                            void (*fn)(void *ctx, int64_t index, int worker),
                            void *ctx) {
    if (n <= 0)
        return;
    if (threads <= 0)
        threads = prism_cpu_threads();
    if ((int64_t)threads > n)
        threads = (int)n;
    parallel_job job;
    atomic_init(&job.next, 0);
    job.n = n;
    job.fn = fn;
    job.ctx = ctx;
    if (threads == 1) {
        run_worker(&job, 0);
        return;
    }
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    worker_arg *args = calloc((size_t)threads, sizeof *args);
    bool *started = calloc((size_t)threads, sizeof *started);
    if (tids && args && started) {
        for (int w = 1; w < threads; w++) {
            args[w] = (worker_arg){&job, w};
            started[w] =
                pthread_create(&tids[w], NULL, worker_main, &args[w]) == 0;
        }
    }
    run_worker(&job, 0);
    if (tids && args && started)
        for (int w = 1; w < threads; w++)
            if (started[w])
                pthread_join(tids[w], NULL);
    free(tids);
    free(args);
    free(started);
}
