/* parallel.h - running independent tasks on a context's thread pool with per-thread scratch.
 *
 * core_parallel_for hands out index ranges but does not say which thread runs them, so an
 * operator cannot give each thread its own piece of workspace. kern_parallel does: every call
 * of the task function gets a SLOT, and no two calls running at the same time share a slot.
 */
#ifndef ENGINE_KERNELS_PARALLEL_H
#define ENGINE_KERNELS_PARALLEL_H

#include "core/threadpool.h"

#include <stdint.h>

/* Work item: task number TASK in [0, ntasks), run with scratch slot SLOT. */
typedef void (*kern_task_fn)(void *arg, int64_t task, int slot);

/* The number of slots kern_parallel may use on POOL: size workspace for this many threads. */
int kern_slots(const core_threadpool *pool);

/* Runs FN for every task in [0, NTASKS) on POOL and the calling thread (inline when POOL is NULL
 * or has one thread), handing tasks out one at a time so uneven tasks balance, and returns when
 * all are done. SLOT is below kern_slots(POOL). Not reentrant on the same pool. */
void kern_parallel(core_threadpool *pool, int64_t ntasks, kern_task_fn fn, void *arg);

#endif
