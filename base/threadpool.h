/*
 * threadpool.h - the library's one parallel construct: a parallel for over
 * independent indices, used by the CPU reference and the CPU backend.
 */
#ifndef PRISM_BASE_THREADPOOL_H
#define PRISM_BASE_THREADPOOL_H

#include <stdint.h>

/* Thread-safe.  Online CPUs (at least 1, at most 256). */
int prism_cpu_threads(void);

/* Thread-safe.  Runs fn(ctx, index, worker) for index in [0, n) on
 * `threads` workers (0 = prism_cpu_threads(); worker in [0, threads)).
 * Indices are handed out dynamically; fn must not fail.  If threads cannot
 * be created the calling thread does the remaining work, so this never
 * fails. */
void prism_parallel_for(int64_t n, int threads,
                        void (*fn)(void *ctx, int64_t index, int worker),
                        void *ctx);

#endif
