/* parallel.c - task queue with scratch slots over core_parallel_for.
 *
 * The pool is asked for exactly one index per slot. Each index is run by one thread, and a
 * thread that runs two indices runs them one after the other, so a slot is never used by two
 * threads at once. Inside, threads take runs of task numbers from a shared counter until none are
 * left: a thread that wakes late simply finds the queue empty.
 */
#include "engine/kernels/parallel.h"

#include <stdatomic.h>

typedef struct queue {
    kern_task_fn fn;
    void *arg;
    int64_t ntasks;
    int64_t step; /* tasks taken per visit to the counter */
    atomic_int_fast64_t next;
} queue;

static void drain(void *arg, int64_t begin, int64_t end)
{
    queue *q = arg;
    for (int64_t slot = begin; slot < end; slot++) {
        int64_t t;
        while ((t = atomic_fetch_add_explicit(&q->next, q->step, memory_order_relaxed)) <
               q->ntasks) {
            int64_t last = t + q->step < q->ntasks ? t + q->step : q->ntasks;
            for (; t < last; t++) q->fn(q->arg, t, (int)slot);
        }
    }
}

int kern_slots(const core_threadpool *pool)
{
    return core_threadpool_size(pool);
}

void kern_parallel(core_threadpool *pool, int64_t ntasks, kern_task_fn fn, void *arg)
{
    if (ntasks <= 0) return;
    int slots = kern_slots(pool);
    if (slots <= 1 || ntasks == 1) {
        for (int64_t t = 0; t < ntasks; t++) fn(arg, t, 0);
        return;
    }
    /* Hundreds of small tasks (a depthwise plane each) would make the threads take turns on
     * the counter's cache line; a run of tasks per visit keeps 16 visits per thread. */
    int64_t step = ntasks / ((int64_t)slots * 16);
    queue q = {.fn = fn, .arg = arg, .ntasks = ntasks, .step = step > 1 ? step : 1};
    atomic_init(&q.next, 0);
    int64_t n = ntasks < slots ? ntasks : slots;
    core_parallel_for(pool, drain, &q, n, 1);
}
