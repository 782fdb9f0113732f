/* rt_internal.h - what the runtime's files share: the protobuf text tree, the logger, clocks
 * and the structures behind rt_runtime, rt_model and rt_request. Never included outside
 * src/runtime/ (the front ends see only runtime.h). */
#ifndef RUNTIME_RT_INTERNAL_H
#define RUNTIME_RT_INTERNAL_H

#include "runtime/runtime.h"
#include "core/pool.h"
#include "core/status.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

/* ---------------------------------------------------------------------------------------
 * Protobuf text format (pbtxt.c): a tree of fields, each with the line it started on.
 * ------------------------------------------------------------------------------------- */

typedef enum rt_pbtxt_kind {
    RT_PBTXT_MESSAGE = 0,
    RT_PBTXT_STRING, /* decoded, NUL-free */
    RT_PBTXT_NUMBER, /* the literal as written, "-" included */
    RT_PBTXT_IDENT,  /* enum names, true/false, inf/nan */
} rt_pbtxt_kind;

typedef struct rt_pbtxt_node rt_pbtxt_node;
struct rt_pbtxt_node {
    const char *name; /* field name; "" for the root */
    int line;
    rt_pbtxt_kind kind;
    const char *text;     /* scalars */
    rt_pbtxt_node *child; /* messages: first field */
    rt_pbtxt_node *next;  /* next field of the same message */
};

/* Limits of the text parser, beyond RT_MAX_CONFIG_BYTES. */
#define RT_PBTXT_MAX_DEPTH 32
#define RT_PBTXT_MAX_NODES 65536

/* Parses TEXT into a tree allocated from POOL. Errors are FERRY_ERR_INVALID_MODEL with
 * "FILE:LINE: ..." messages. */
ferry_status *rt_pbtxt_parse(const char *text, size_t len, const char *file, core_pool *pool,
                             rt_pbtxt_node **root);

/* ---------------------------------------------------------------------------------------
 * Logging and clocks (log.c)
 * ------------------------------------------------------------------------------------- */

/* A JSON object under construction; bounded, silently truncating long values. */
typedef struct rt_jlog {
    char buf[2048];
    size_t len;
    bool full;
    rt_log_level level;
} rt_jlog;

void rt_jlog_begin(rt_jlog *j, rt_log_level level, const char *event);
void rt_jlog_str(rt_jlog *j, const char *key, const char *value);
void rt_jlog_int(rt_jlog *j, const char *key, int64_t value);
void rt_jlog_num(rt_jlog *j, const char *key, double value);
/* Closes the object and hands it to the runtime's log callback (or stderr). */
void rt_jlog_emit(rt_runtime *rt, rt_jlog *j);

uint64_t rt_now_ns(void);  /* CLOCK_MONOTONIC */
uint64_t rt_wall_ms(void); /* CLOCK_REALTIME, ms since the epoch */

/* ---------------------------------------------------------------------------------------
 * Structures
 * ------------------------------------------------------------------------------------- */

/* Identity of a file as last seen, to notice replaced files in poll mode. */
typedef struct rt_file_sig {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
} rt_file_sig;

typedef struct rt_hist {
    _Atomic uint64_t buckets[RT_LATENCY_BUCKETS + 1]; /* not cumulative */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} rt_hist;

typedef struct rt_stats {
    _Atomic uint64_t requests[RT_OUTCOME_COUNT];
    _Atomic uint64_t inference_count, execution_count, last_inference_ms;
    _Atomic uint64_t success_n, success_ns, fail_n, fail_ns, queue_n, queue_ns;
    _Atomic uint64_t cin_n, cin_ns, cinfer_n, cinfer_ns, cout_n, cout_ns;
    rt_hist request, queue, compute;
    _Atomic uint64_t batch_buckets[RT_BATCH_BUCKETS + 1];
    _Atomic uint64_t batch_sum;
    _Atomic int64_t queue_depth, in_flight;
} rt_stats;

typedef struct rt_instance {
    rt_model *m;
    int index;
    pthread_t thread;
    bool started;
    ferry_context *ctx;
    void **buf; /* per input: the concatenated batch */
    size_t *cap;
    rt_request **batch; /* the requests of the current execution */
    size_t batch_cap;
    ferry_tensor_view *views; /* the engine's inputs for the current execution */
} rt_instance;

struct rt_model {
    rt_runtime *rt;
    char name[RT_MAX_NAME + 1];
    int64_t version;
    rt_model_config cfg;
    ferry_model *engine;
    rt_file_sig model_sig, config_sig;

    _Atomic int refs;
    _Atomic int state; /* rt_model_state */

    /* Scheduler, under qlock. */
    pthread_mutex_t qlock;
    pthread_cond_t work;    /* idle instances: requests queued, or stop */
    pthread_cond_t more;    /* the gathering instance: a request arrived */
    pthread_cond_t drained; /* the queue is empty and nothing runs */
    rt_request *qhead, *qtail;
    uint32_t qdepth;
    uint32_t running;   /* taken by instances, callbacks not yet returned */
    bool gathering;     /* one instance is forming a batch */
    bool accepting;     /* false once unloaded or stopping */
    bool stop;          /* instances exit */
    bool batching;      /* dynamic batching on */
    uint32_t max_batch; /* items per execution */

    int instance_count;
    rt_instance *instances;

    rt_stats stats;
    uint64_t load_ns, loaded_at_ms;

    rt_model *reap_next;             /* on the runtime's reap list */
    rt_model *live_prev, *live_next; /* on the runtime's list of every model not yet freed */
};

struct rt_request {
    rt_model *m;
    ferry_tensor_view *inputs; /* config input order */
    bool *input_set;
    size_t *outs_idx; /* requested config output indices */
    size_t outs_n;
    bool outs_explicit;
    uint64_t timeout_us;
    rt_done_fn done;
    void *user;
    bool submitted;

    int64_t batch; /* items: dim 0 when max_batch_size > 0, else 1 */
    uint64_t t_submit, t_start, t_end, deadline;
    uint64_t compute_ns;
    uint32_t exec_batch;
    ferry_status *status;
    ferry_tensor_view *out_views;
    void *out_mem;

    rt_request *prev, *next; /* queue links */
};

/* ---------------------------------------------------------------------------------------
 * Between the repository (repository.c) and the scheduler (scheduler.c)
 * ------------------------------------------------------------------------------------- */

/* Creates a ready version: takes ownership of ENGINE and CFG (bound) in every case, starts the
 * instances. The returned model holds one reference (the repository's table). */
ferry_status *rt_model_start(rt_runtime *rt, const char *name, int64_t version, ferry_model *engine,
                             rt_model_config *cfg, rt_model **out);

/* Stops taking new submissions (explicit unload, shutdown). */
void rt_model_close_queue(rt_model *m);

/* Blocks until M's queue is empty and nothing runs. */
void rt_model_wait_drained(rt_model *m);

/* Stops and joins the instances and frees M. Its references must be gone. */
void rt_model_destroy(rt_model *m);

/* The repository's part of release: puts a model whose last reference went on the reap list. */
void rt_runtime_reap(rt_runtime *rt, rt_model *m);

/* Adds and removes M on the runtime's list of live models. */
void rt_runtime_track(rt_runtime *rt, rt_model *m);
void rt_runtime_untrack(rt_runtime *rt, rt_model *m);

/* True once rt_runtime_shutdown() started. */
bool rt_runtime_stopping(const rt_runtime *rt);

uint64_t rt_runtime_default_timeout(const rt_runtime *rt);

/* Formats DIMS as "[1,-1,3]" into BUF. */
const char *rt_dims_str(char *buf, size_t size, const int64_t *dims, int rank);

#endif
