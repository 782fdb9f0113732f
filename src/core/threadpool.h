/* threadpool.h - a fork-join pool for intra-operator parallelism.
 *
 * Each execution context owns one pool, so concurrent contexts never queue behind each other.
 * The calling thread always takes part in the work: a pool of N threads starts N-1 workers.
 * Workers spin briefly after each job before sleeping, because operators arrive back to back
 * and a futex wake costs more than a short spin on a busy engine.
 */
#ifndef CORE_THREADPOOL_H
#define CORE_THREADPOOL_H

#include "ferry.h"

#include <stdint.h>

typedef struct core_threadpool core_threadpool;

/* Work item: process indices [begin, end). */
typedef void (*core_parallel_fn)(void *arg, int64_t begin, int64_t end);

/* Creates a pool of THREADS threads in all (THREADS <= 1 gives a pool that runs inline). */
ferry_status *core_threadpool_create(int threads, core_threadpool **out);

/* Stops and joins the workers. Accepts NULL. */
void core_threadpool_destroy(core_threadpool *pool);

/* Threads taking part in a run (1 for NULL). */
int core_threadpool_size(const core_threadpool *pool);

/* Splits [0, N) into chunks of at least GRAIN indices, runs FN on them across the pool and the
 * caller, and returns when all are done. POOL may be NULL (runs inline). Not reentrant: FN must
 * not call core_parallel_for on the same pool. */
void core_parallel_for(core_threadpool *pool, core_parallel_fn fn, void *arg, int64_t n,
                       int64_t grain);

#endif
