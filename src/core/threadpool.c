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

/* The current job's claim word: generation (32 bits) | chunk count (16) | next chunk (16).
 * A worker claims a chunk with a compare-and-swap that only succeeds while the word still names
 * the job it woke for, so a worker that wakes late can never take a chunk of a newer job, nor
 * read the job's fields while the caller rewrites them: the caller publishes a new job only
 * after every chunk of the last one is done. */
#define CLAIM_BITS 16
#define CLAIM_MASK ((1u << CLAIM_BITS) - 1)
#define MAX_CHUNKS ((int64_t)CLAIM_MASK)

struct core_threadpool {
    int size;
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    /* the current job */
    core_parallel_fn fn;
    void *arg;
    int64_t n, chunk;
    atomic_uint_fast64_t claim;   /* see CLAIM_BITS */
    atomic_int_fast64_t finished; /* chunks of the current job done */
    atomic_uint generation;       /* bumped for each job; workers wait for a new value */
    bool caller_asleep;           /* under lock: the caller waits on done */
    bool stop;
};

/* Takes the next chunk of job GEN; false when the job has none left or is over. */
static bool claim_chunk(core_threadpool *p, uint64_t gen, int64_t *index)
{
    uint64_t v = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        uint64_t next = v & CLAIM_MASK, count = (v >> CLAIM_BITS) & CLAIM_MASK;
        if ((v >> (2 * CLAIM_BITS)) != gen || next >= count) return false;
        if (atomic_compare_exchange_weak_explicit(&p->claim, &v, v + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *index = (int64_t)next;
            return true;
        }
    }
}

/* Runs chunks of job GEN until none are left. */
static void work(core_threadpool *p, uint64_t gen)
{
    int64_t c;
    while (claim_chunk(p, gen, &c)) {
        int64_t begin = c * p->chunk;
        int64_t end = begin + p->chunk < p->n ? begin + p->chunk : p->n;
        int64_t count = (p->n + p->chunk - 1) / p->chunk;
        p->fn(p->arg, begin, end);
        if (atomic_fetch_add_explicit(&p->finished, 1, memory_order_acq_rel) + 1 == count) {
            pthread_mutex_lock(&p->lock);
            if (p->caller_asleep) pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
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
        work(p, gen);
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
    if ((n + chunk - 1) / chunk > MAX_CHUNKS) chunk = (n + MAX_CHUNKS - 1) / MAX_CHUNKS;
    int64_t count = (n + chunk - 1) / chunk;
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->chunk = chunk;
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    unsigned gen = atomic_load_explicit(&p->generation, memory_order_relaxed) + 1;
    atomic_store_explicit(&p->claim,
                          (uint64_t)gen << (2 * CLAIM_BITS) | (uint64_t)count << CLAIM_BITS,
                          memory_order_release);
    pthread_mutex_lock(&p->lock);
    atomic_store_explicit(&p->generation, gen, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    work(p, gen);
    /* Every chunk is taken; wait for the ones other threads still run. Workers that have not
     * woken yet are not waited for: they will find the job over. */
    int spins = 0;
    while (atomic_load_explicit(&p->finished, memory_order_acquire) < count &&
           spins < SPIN_ITERATIONS) {
        CPU_RELAX();
        spins++;
    }
    if (atomic_load_explicit(&p->finished, memory_order_acquire) < count) {
        pthread_mutex_lock(&p->lock);
        p->caller_asleep = true;
        while (atomic_load_explicit(&p->finished, memory_order_acquire) < count)
            pthread_cond_wait(&p->done, &p->lock);
        p->caller_asleep = false;
        pthread_mutex_unlock(&p->lock);
    }
}
