/* threadpool.c - fork-join workers with a shared atomic chunk counter. */
#include "core/threadpool.h"
#include "core/status.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#define SPIN_ITERATIONS 20000

/* A spinning thread yields its core's shared resources to the other hyperthread (or vCPU) while
 * it waits; without it a spinning worker slowed the caller's own serial work several-fold. */
#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

struct core_threadpool {
    int size;
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    /* the current job */
    core_parallel_fn fn;
    void *arg;
    int64_t n, chunk;
    atomic_int_fast64_t next; /* next chunk index to take */
    atomic_int pending;       /* workers still inside the current job */
    atomic_uint generation;   /* bumped for each job; workers wait for a new value */
    bool stop;
};

static void work(core_threadpool *p)
{
    for (;;) {
        int64_t c = atomic_fetch_add(&p->next, 1);
        int64_t begin = c * p->chunk;
        if (begin >= p->n) break;
        int64_t end = begin + p->chunk < p->n ? begin + p->chunk : p->n;
        p->fn(p->arg, begin, end);
    }
}

static void *worker_main(void *arg)
{
    core_threadpool *p = arg;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               spins < SPIN_ITERATIONS) {
            CPU_RELAX();
            spins++;
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->lock);
            while ((gen = atomic_load(&p->generation)) == seen && !p->stop)
                pthread_cond_wait(&p->wake, &p->lock);
            bool stop = p->stop;
            pthread_mutex_unlock(&p->lock);
            if (stop) return NULL;
        }
        seen = gen;
        work(p);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

ferry_status *core_threadpool_create(int threads, core_threadpool **out)
{
    *out = NULL;
    if (threads < 1) threads = 1;
    if (threads > 1024) threads = 1024;
    core_threadpool *p = calloc(1, sizeof(*p));
    if (!p) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    p->size = threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof(pthread_t));
        if (!p->workers) {
            core_threadpool_destroy(p);
            return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        }
        for (int i = 0; i < threads - 1; i++) {
            if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
                p->size = i + 1; /* join the ones that started */
                core_threadpool_destroy(p);
                return core_error(FERRY_ERR_NO_MEMORY, "cannot start thread %d of %d", i + 2,
                                  threads);
            }
        }
    }
    *out = p;
    return NULL;
}

void core_threadpool_destroy(core_threadpool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; p->workers && i < p->size - 1; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int core_threadpool_size(const core_threadpool *p)
{
    return p ? p->size : 1;
}

void core_parallel_for(core_threadpool *p, core_parallel_fn fn, void *arg, int64_t n, int64_t grain)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->size == 1 || n <= grain) {
        fn(arg, 0, n);
        return;
    }
    /* A few chunks per thread balance uneven work without much counter traffic. */
    int64_t chunk = (n + (int64_t)p->size * 4 - 1) / ((int64_t)p->size * 4);
    if (chunk < grain) chunk = grain;
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    atomic_store(&p->pending, p->size - 1);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    work(p);
    if (atomic_load(&p->pending) > 0) {
        int spins = 0;
        while (atomic_load(&p->pending) > 0 && spins < SPIN_ITERATIONS) {
            CPU_RELAX();
            spins++;
        }
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }
}
