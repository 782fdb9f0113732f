/* scheduler.c - one loaded model version: its bounded queue, its instances, the dynamic
 * batcher, requests and statistics.
 *
 * Each version owns a FIFO of submitted requests (a linked list through the requests, bounded
 * by the queue capacity, so memory never grows with load) and N instance threads, each with
 * its own ferry_context. An idle instance takes the oldest request; with dynamic batching it
 * becomes the "gatherer": it keeps taking queued requests whose non-batch shapes match the
 * first one until the batch is full, reaches a preferred size, or the first request has waited
 * max_queue_delay. Only one instance gathers at a time, so the others never steal half a batch;
 * they run the batches formed before. Inputs of a batch are concatenated along dimension 0 into
 * the instance's own buffers (grown once, then reused), run once, and the outputs are copied
 * back per request into one allocation each.
 *
 * Locking: the queue lock is held only to link and unlink requests and while the gatherer
 * waits (a condition wait, which releases it). Statistics are relaxed atomics. Callbacks run
 * without any lock held.
 */
#include "runtime/rt_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double rt_latency_bounds_s[RT_LATENCY_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

const double rt_batch_bounds[RT_BATCH_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

/* The latency bounds in nanoseconds, for the hot path (no floating point per observation). */
static const uint64_t bounds_ns[RT_LATENCY_BUCKETS] = {
    100000,   250000,    500000,    1000000,   2500000,    5000000,     10000000,    25000000,
    50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000u, 5000000000u, 10000000000u,
};

/* Upper bound on the elements of one request tensor: 2^40 (a terabyte of bytes) keeps every
 * byte count below 2^44 and far from overflow, while no real request comes near it. */
#define MAX_ELEMENTS ((int64_t)1 << 40)

#define relaxed memory_order_relaxed

const char *rt_outcome_name(rt_outcome outcome)
{
    static const char *const names[] = {"success", "invalid", "rejected", "timeout", "error"};
    return (unsigned)outcome < RT_OUTCOME_COUNT ? names[outcome] : "unknown";
}

/* ---------------------------------------------------------------------------------------
 * Statistics
 * ------------------------------------------------------------------------------------- */

static void hist_observe(rt_hist *h, uint64_t ns)
{
    int b = 0;
    while (b < RT_LATENCY_BUCKETS && ns > bounds_ns[b]) b++;
    atomic_fetch_add_explicit(&h->buckets[b], 1, relaxed);
    atomic_fetch_add_explicit(&h->count, 1, relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, relaxed);
}

static void hist_snapshot(const rt_hist *h, rt_latency_histogram *out)
{
    uint64_t acc = 0;
    for (int b = 0; b <= RT_LATENCY_BUCKETS; b++) {
        acc += atomic_load_explicit(&h->buckets[b], relaxed);
        out->buckets[b] = acc;
    }
    /* The count is the +Inf bucket so that the exposition is consistent even while other
     * threads observe. */
    out->count = acc;
    out->sum_s = (double)atomic_load_explicit(&h->sum_ns, relaxed) / 1e9;
}

static void add(_Atomic uint64_t *counter, uint64_t v)
{
    atomic_fetch_add_explicit(counter, v, relaxed);
}

static uint64_t get(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, relaxed);
}

void rt_model_get_stats(const rt_model *m, rt_model_stats *out)
{
    memset(out, 0, sizeof(*out));
    const rt_stats *s = &m->stats;
    for (int i = 0; i < RT_OUTCOME_COUNT; i++) out->requests[i] = get(&s->requests[i]);
    out->inference_count = get(&s->inference_count);
    out->execution_count = get(&s->execution_count);
    out->last_inference_ms = get(&s->last_inference_ms);
    out->success = (rt_duration_stat){get(&s->success_n), get(&s->success_ns)};
    out->fail = (rt_duration_stat){get(&s->fail_n), get(&s->fail_ns)};
    out->queue = (rt_duration_stat){get(&s->queue_n), get(&s->queue_ns)};
    out->compute_input = (rt_duration_stat){get(&s->cin_n), get(&s->cin_ns)};
    out->compute_infer = (rt_duration_stat){get(&s->cinfer_n), get(&s->cinfer_ns)};
    out->compute_output = (rt_duration_stat){get(&s->cout_n), get(&s->cout_ns)};
    hist_snapshot(&s->request, &out->request_latency);
    hist_snapshot(&s->queue, &out->queue_latency);
    hist_snapshot(&s->compute, &out->compute_latency);
    uint64_t acc = 0;
    for (int b = 0; b <= RT_BATCH_BUCKETS; b++) {
        acc += get(&s->batch_buckets[b]);
        out->batch_size.buckets[b] = acc;
    }
    out->batch_size.count = acc;
    out->batch_size.sum = get(&s->batch_sum);
    out->queue_depth = atomic_load_explicit(&s->queue_depth, relaxed);
    out->in_flight = atomic_load_explicit(&s->in_flight, relaxed);
    out->state = (rt_model_state)atomic_load(&m->state);
    out->load_ns = m->load_ns;
    out->loaded_at_ms = m->loaded_at_ms;
    out->instance_count = m->instance_count;
    out->queue_capacity = m->cfg.queue_capacity;
}

/* ---------------------------------------------------------------------------------------
 * Accessors and references
 * ------------------------------------------------------------------------------------- */

const char *rt_model_name(const rt_model *m)
{
    return m->name;
}
int64_t rt_model_version(const rt_model *m)
{
    return m->version;
}
const rt_model_config *rt_model_get_config(const rt_model *m)
{
    return &m->cfg;
}
const ferry_model *rt_model_engine(const rt_model *m)
{
    return m->engine;
}

const char *rt_model_platform(const rt_model *m)
{
    if (m->cfg.platform && m->cfg.platform[0]) return m->cfg.platform;
    return "onnxruntime_onnx";
}

rt_model_state rt_model_get_state(const rt_model *m)
{
    return (rt_model_state)atomic_load(&m->state);
}

rt_model *rt_model_retain(rt_model *m)
{
    atomic_fetch_add(&m->refs, 1);
    return m;
}

void rt_model_release(rt_model *m)
{
    if (!m) return;
    /* The last reference hands the version to the housekeeping thread: the releasing thread
     * may be one of the version's own instances (a callback freeing its request), which cannot
     * join itself. */
    if (atomic_fetch_sub(&m->refs, 1) == 1) rt_runtime_reap(m->rt, m);
}

/* ---------------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------------- */

ferry_status *rt_request_create(rt_model *m, rt_request **out)
{
    *out = NULL;
    size_t ni = m->cfg.input_count, no = m->cfg.output_count;
    size_t size = sizeof(rt_request) + ni * sizeof(ferry_tensor_view) + no * sizeof(size_t) +
                  ni * sizeof(bool);
    rt_request *r = calloc(1, size);
    if (!r) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    r->inputs = (ferry_tensor_view *)(r + 1);
    r->outs_idx = (size_t *)(r->inputs + ni);
    r->input_set = (bool *)(r->outs_idx + no);
    r->m = rt_model_retain(m);
    *out = r;
    return NULL;
}

ferry_status *rt_request_set_input(rt_request *req, size_t index, const ferry_tensor_view *view)
{
    const rt_model_config *cfg = &req->m->cfg;
    if (index >= cfg->input_count)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input index %zu: the model has %zu inputs",
                          index, cfg->input_count);
    if (!view || view->rank < 0 || view->rank > FERRY_MAX_RANK)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input '%s': invalid tensor view",
                          cfg->inputs[index].name);
    req->inputs[index] = *view;
    req->input_set[index] = true;
    return NULL;
}

ferry_status *rt_request_add_output(rt_request *req, size_t index)
{
    const rt_model_config *cfg = &req->m->cfg;
    if (index >= cfg->output_count)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "output index %zu: the model has %zu outputs",
                          index, cfg->output_count);
    for (size_t i = 0; i < req->outs_n; i++)
        if (req->outs_idx[i] == index)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "output '%s' is requested twice",
                              cfg->outputs[index].name);
    req->outs_idx[req->outs_n++] = index;
    req->outs_explicit = true;
    return NULL;
}

void rt_request_set_timeout_us(rt_request *req, uint64_t timeout_us)
{
    req->timeout_us = timeout_us;
}

void rt_request_set_callback(rt_request *req, rt_done_fn done, void *user)
{
    req->done = done;
    req->user = user;
}

const ferry_status *rt_request_status(const rt_request *req)
{
    return req->status;
}

size_t rt_request_output_count(const rt_request *req)
{
    return req->out_views ? req->outs_n : 0;
}

ferry_status *rt_request_output(const rt_request *req, size_t i, size_t *config_index,
                                ferry_tensor_view *out)
{
    if (!req->out_views || i >= req->outs_n)
        return core_error(FERRY_ERR_NOT_FOUND, "output %zu: the request has %zu outputs", i,
                          rt_request_output_count(req));
    if (config_index) *config_index = req->outs_idx[i];
    *out = req->out_views[i];
    return NULL;
}

void rt_request_get_timing(const rt_request *req, rt_request_timing *out)
{
    memset(out, 0, sizeof(*out));
    if (req->t_start) out->queue_ns = req->t_start - req->t_submit;
    out->compute_ns = req->compute_ns;
    if (req->t_end) out->total_ns = req->t_end - req->t_submit;
    out->batch_size = req->exec_batch;
}

rt_model *rt_request_model(const rt_request *req)
{
    return req->m;
}

void rt_request_free(rt_request *req)
{
    if (!req) return;
    ferry_status_free(req->status);
    free(req->out_mem);
    free(req->out_views);
    rt_model *m = req->m;
    free(req);
    rt_model_release(m);
}

/* ---------------------------------------------------------------------------------------
 * Submission
 * ------------------------------------------------------------------------------------- */

static void count_outcome(rt_model *m, rt_outcome o)
{
    add(&m->stats.requests[o], 1);
}

/* Checks the request's inputs against the config; sets req->batch. */
static ferry_status *check_inputs(rt_request *req)
{
    const rt_model_config *cfg = &req->m->cfg;
    bool batched = cfg->max_batch_size > 0;
    int64_t batch = -1;
    char a[160], b[160];
    for (size_t i = 0; i < cfg->input_count; i++) {
        const rt_tensor_config *t = &cfg->inputs[i];
        if (!req->input_set[i])
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "input '%s' is missing", t->name);
        const ferry_tensor_view *v = &req->inputs[i];
        if (v->dtype != t->dtype) {
            const char *got = rt_dtype_wire_name(v->dtype);
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input '%s': expected data type %s, got %s", t->name,
                              rt_dtype_wire_name(t->dtype), got ? got : ferry_dtype_name(v->dtype));
        }
        int64_t want[FERRY_MAX_RANK + 1];
        int rank = 0;
        if (batched) want[rank++] = -1;
        for (int d = 0; d < t->rank; d++) want[rank++] = t->dims[d];
        bool ok = v->rank == rank;
        int64_t count = 1;
        for (int d = 0; ok && d < rank; d++) {
            if (v->dims[d] < 0 || (want[d] >= 0 && v->dims[d] != want[d]))
                ok = false;
            else if (v->dims[d] && count > MAX_ELEMENTS / v->dims[d])
                ok = false;
            else
                count *= v->dims[d];
        }
        if (!ok || (batched && v->dims[0] < 1))
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "input '%s': expected shape %s, got %s",
                              t->name, rt_dims_str(a, sizeof(a), want, rank),
                              rt_dims_str(b, sizeof(b), v->dims, v->rank < 0 ? 0 : v->rank));
        if (count && !v->data)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "input '%s': no data", t->name);
        if (batched) {
            if (v->dims[0] > cfg->max_batch_size)
                return core_error(FERRY_ERR_INVALID_ARGUMENT,
                                  "input '%s': batch size %lld is above the model's "
                                  "max_batch_size %d",
                                  t->name, (long long)v->dims[0], cfg->max_batch_size);
            if (batch >= 0 && v->dims[0] != batch)
                return core_error(FERRY_ERR_INVALID_ARGUMENT,
                                  "input '%s': batch size %lld differs from the other inputs' "
                                  "%lld",
                                  t->name, (long long)v->dims[0], (long long)batch);
            batch = v->dims[0];
        }
    }
    req->batch = batched ? batch : 1;
    if (req->batch < 1) req->batch = 1; /* a model without inputs */
    return NULL;
}

ferry_status *rt_submit(rt_request *req)
{
    rt_model *m = req->m;
    ferry_status *st;
    uint64_t now = rt_now_ns();
    if (req->submitted)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the request was already submitted");
    if (!req->done)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the request has no completion callback");
    if ((st = check_inputs(req))) {
        count_outcome(m, RT_OUTCOME_INVALID);
        return core_error_wrap(st, "model '%s' version %lld", m->name, (long long)m->version);
    }
    if (!req->outs_explicit) {
        req->outs_n = m->cfg.output_count;
        for (size_t i = 0; i < req->outs_n; i++) req->outs_idx[i] = i;
    }
    uint64_t timeout = req->timeout_us, cfg_timeout = m->cfg.timeout_us;
    if (!cfg_timeout) cfg_timeout = rt_runtime_default_timeout(m->rt);
    if (!timeout || (cfg_timeout && timeout > cfg_timeout)) timeout = cfg_timeout;
    req->t_submit = now;
    req->deadline =
        timeout ? now + (timeout > UINT64_MAX / 2000 ? UINT64_MAX / 2 : timeout * 1000) : 0;
    pthread_mutex_lock(&m->qlock);
    if (!m->accepting || rt_runtime_stopping(m->rt)) {
        bool stopping = rt_runtime_stopping(m->rt);
        pthread_mutex_unlock(&m->qlock);
        count_outcome(m, RT_OUTCOME_REJECTED);
        return core_error(
            FERRY_ERR_UNAVAILABLE, "model '%s' version %lld is %s", m->name, (long long)m->version,
            stopping ? "not taking requests: the server is shutting down" : "unloading");
    }
    if (m->qdepth >= m->cfg.queue_capacity) {
        uint32_t cap = m->cfg.queue_capacity;
        pthread_mutex_unlock(&m->qlock);
        count_outcome(m, RT_OUTCOME_REJECTED);
        return core_error(FERRY_ERR_UNAVAILABLE,
                          "model '%s' version %lld: the queue is full (%u requests waiting)",
                          m->name, (long long)m->version, cap);
    }
    req->submitted = true;
    req->prev = m->qtail;
    req->next = NULL;
    if (m->qtail)
        m->qtail->next = req;
    else
        m->qhead = req;
    m->qtail = req;
    m->qdepth++;
    atomic_fetch_add_explicit(&m->stats.queue_depth, 1, relaxed);
    atomic_fetch_add_explicit(&m->stats.in_flight, 1, relaxed);
    if (m->gathering)
        pthread_cond_signal(&m->more);
    else
        pthread_cond_signal(&m->work);
    pthread_mutex_unlock(&m->qlock);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Instances
 * ------------------------------------------------------------------------------------- */

static void unlink_req(rt_model *m, rt_request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        m->qhead = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        m->qtail = r->prev;
    r->prev = r->next = NULL;
    m->qdepth--;
    atomic_fetch_sub_explicit(&m->stats.queue_depth, 1, relaxed);
}

/* Whether B may join a batch started by A: the same non-batch dimensions everywhere. */
static bool compatible(const rt_model *m, const rt_request *a, const rt_request *b)
{
    for (size_t i = 0; i < m->cfg.input_count; i++) {
        const ferry_tensor_view *x = &a->inputs[i], *y = &b->inputs[i];
        if (x->rank != y->rank) return false;
        for (int d = 1; d < x->rank; d++)
            if (x->dims[d] != y->dims[d]) return false;
    }
    return true;
}

static bool is_preferred(const rt_model *m, int64_t total)
{
    const rt_dynamic_batching *b = &m->cfg.dynamic_batching;
    for (size_t i = 0; i < b->preferred_count; i++)
        if (b->preferred_batch_sizes[i] == total) return true;
    return false;
}

/* Forms the next execution for instance IN (qlock held; may wait on `more`). Requests that
 * expired are unlinked onto *EXPIRED. Returns the number of requests in in->batch. */
static size_t gather(rt_model *m, rt_instance *in, rt_request **expired, size_t *nexpired)
{
    size_t n = 0;
    int64_t total = 0;
    const rt_dynamic_batching *db = &m->cfg.dynamic_batching;
    /* With preferred sizes, the largest one caps the batch (Triton's batcher aims for them);
     * otherwise max_batch_size does. */
    int64_t limit = m->max_batch, top = 0;
    for (size_t i = 0; m->batching && i < db->preferred_count; i++)
        if (db->preferred_batch_sizes[i] > top) top = db->preferred_batch_sizes[i];
    if (top && top < limit) limit = top;
    m->gathering = true;
    for (;;) {
        uint64_t now = rt_now_ns();
        for (rt_request *r = m->qhead, *next; r && total < limit && n < in->batch_cap; r = next) {
            next = r->next;
            if (r->deadline && now >= r->deadline) {
                unlink_req(m, r);
                r->next = *expired;
                *expired = r;
                (*nexpired)++;
                continue;
            }
            if (n && (!m->batching || total + r->batch > limit || !compatible(m, in->batch[0], r)))
                continue;
            unlink_req(m, r);
            r->t_start = now;
            in->batch[n++] = r;
            total += r->batch;
            if (!m->batching) break;
        }
        if (!n || !m->batching || total >= limit || n >= in->batch_cap || is_preferred(m, total))
            break;
        uint64_t until = in->batch[0]->t_submit + db->max_queue_delay_us * 1000;
        if (now >= until || !m->accepting) break;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        pthread_cond_timedwait(&m->more, &m->qlock, &ts);
    }
    m->gathering = false;
    m->running += (uint32_t)(n + *nexpired);
    return n;
}

/* Finishes REQ with status ST (taking it): statistics, then the callback. */
static void complete(rt_model *m, rt_request *req, ferry_status *st, rt_outcome outcome)
{
    req->status = st;
    req->t_end = rt_now_ns();
    uint64_t total = req->t_end - req->t_submit;
    rt_stats *s = &m->stats;
    add(&s->requests[outcome], 1);
    hist_observe(&s->request, total);
    if (outcome == RT_OUTCOME_SUCCESS) {
        add(&s->success_n, 1);
        add(&s->success_ns, total);
    } else {
        add(&s->fail_n, 1);
        add(&s->fail_ns, total);
    }
    req->done(req, req->user); /* may free REQ; M lives on, its instances are not joined yet */
    atomic_fetch_sub_explicit(&s->in_flight, 1, relaxed);
}

/* Copies the requested outputs of the run in IN's context back into each request of the
 * batch. ROWS is the batch's total items. */
static ferry_status *split_outputs(rt_model *m, rt_instance *in, size_t n, int64_t rows)
{
    const rt_model_config *cfg = &m->cfg;
    bool batched = cfg->max_batch_size > 0;
    int64_t row0 = 0;
    for (size_t k = 0; k < n; k++) {
        rt_request *r = in->batch[k];
        size_t bytes = 0;
        r->out_views = calloc(r->outs_n ? r->outs_n : 1, sizeof(ferry_tensor_view));
        if (!r->out_views) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        /* First pass: shapes and sizes; second: one allocation and the copies. */
        for (int pass = 0; pass < 2; pass++) {
            size_t off = 0;
            for (size_t j = 0; j < r->outs_n; j++) {
                const rt_tensor_config *t = &cfg->outputs[r->outs_idx[j]];
                ferry_tensor_view ov;
                ferry_status *st = ferry_context_output(in->ctx, (size_t)t->engine_index, &ov);
                if (st) return st;
                size_t esize = ferry_dtype_size(ov.dtype);
                if (!esize)
                    return core_error(FERRY_ERR_UNSUPPORTED,
                                      "output '%s': type %s cannot be "
                                      "returned",
                                      t->name, ferry_dtype_name(ov.dtype));
                int64_t per_row = ferry_tensor_view_count(&ov);
                int64_t my_rows = 1, skip = 0;
                if (n > 1 || batched) {
                    if (ov.rank < 1 || ov.dims[0] != rows)
                        return core_error(FERRY_ERR_RUNTIME,
                                          "output '%s': the model returned %lld rows for a "
                                          "batch of %lld",
                                          t->name, (long long)(ov.rank ? ov.dims[0] : 0),
                                          (long long)rows);
                    per_row = rows ? per_row / rows : 0;
                    my_rows = r->batch;
                    skip = row0;
                }
                size_t len = (size_t)(per_row * my_rows) * esize;
                ferry_tensor_view *v = &r->out_views[j];
                if (pass == 0) {
                    v->dtype = ov.dtype;
                    v->rank = ov.rank;
                    memcpy(v->dims, ov.dims, sizeof(v->dims));
                    if (n > 1 || batched) v->dims[0] = my_rows;
                    if (t->has_reshape) {
                        /* The client sees the config's dims: [rows] + dims, -1 inferred. */
                        int64_t fixed = 1, items = per_row;
                        for (int d = 0; d < t->rank; d++)
                            if (t->dims[d] >= 0) fixed *= t->dims[d];
                        int rank = 0;
                        if (batched)
                            v->dims[rank++] = my_rows;
                        else
                            items = per_row * my_rows;
                        for (int d = 0; d < t->rank; d++)
                            v->dims[rank++] =
                                t->dims[d] < 0 ? (fixed ? items / fixed : 0) : t->dims[d];
                        v->rank = rank;
                        if (ferry_tensor_view_count(v) != per_row * my_rows)
                            return core_error(FERRY_ERR_RUNTIME,
                                              "output '%s': %lld elements do not fit the "
                                              "config's dims",
                                              t->name, (long long)(per_row * my_rows));
                    }
                    bytes += (len + 63) & ~(size_t)63;
                } else {
                    v->data = (char *)r->out_mem + off;
                    const char *from = (const char *)ov.data + (size_t)(skip * per_row) * esize;
                    if (len) memcpy(v->data, from, len);
                    off += (len + 63) & ~(size_t)63;
                }
            }
            if (pass == 0) {
                r->out_mem = malloc(bytes ? bytes : 1);
                if (!r->out_mem) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            }
        }
        row0 += r->batch;
    }
    return NULL;
}

/* Turns a config tensor's view of request data into the model's view: batch rows + reshape. */
static void model_view(const rt_model_config *cfg, const rt_tensor_config *t, ferry_tensor_view *v)
{
    if (!t->has_reshape) return;
    int64_t rows = cfg->max_batch_size > 0 ? v->dims[0] : 1;
    int64_t items = ferry_tensor_view_count(v) / (rows ? rows : 1), fixed = 1;
    for (int d = 0; d < t->reshape_rank; d++)
        if (t->reshape[d] >= 0) fixed *= t->reshape[d];
    int rank = 0;
    if (cfg->max_batch_size > 0) v->dims[rank++] = rows;
    for (int d = 0; d < t->reshape_rank; d++)
        v->dims[rank++] = t->reshape[d] >= 0 ? t->reshape[d] : (fixed ? items / fixed : 0);
    v->rank = rank;
}

/* Runs the N requests in in->batch as one execution and completes them. */
static void execute(rt_model *m, rt_instance *in, size_t n)
{
    const rt_model_config *cfg = &m->cfg;
    ferry_status *st = NULL;
    uint64_t t0 = rt_now_ns();
    int64_t rows = 0;
    for (size_t k = 0; k < n; k++) rows += in->batch[k]->batch;
    for (size_t i = 0; i < cfg->input_count; i++) {
        ferry_tensor_view *v = &in->views[i];
        *v = in->batch[0]->inputs[i];
        if (n > 1) {
            /* Concatenate along dimension 0 into this instance's buffer for input I. */
            size_t row_bytes = ferry_dtype_size(v->dtype);
            for (int d = 1; d < v->rank; d++) row_bytes *= (size_t)v->dims[d];
            size_t need = row_bytes * (size_t)rows;
            if (need > in->cap[i]) {
                void *grown = realloc(in->buf[i], need);
                if (!grown) {
                    st = core_error(FERRY_ERR_NO_MEMORY, "out of memory for a batch of %lld",
                                    (long long)rows);
                    break;
                }
                in->buf[i] = grown;
                in->cap[i] = need;
            }
            size_t off = 0;
            for (size_t k = 0; k < n; k++) {
                size_t len = row_bytes * (size_t)in->batch[k]->batch;
                if (len) memcpy((char *)in->buf[i] + off, in->batch[k]->inputs[i].data, len);
                off += len;
            }
            v->data = in->buf[i];
            v->dims[0] = rows;
        }
        model_view(cfg, &cfg->inputs[i], v);
    }
    uint64_t t1 = rt_now_ns();
    if (!st) st = ferry_context_run(in->ctx, in->views, cfg->input_count);
    uint64_t t2 = rt_now_ns();
    if (!st) st = split_outputs(m, in, n, rows);
    uint64_t t3 = rt_now_ns();

    rt_stats *s = &m->stats;
    add(&s->execution_count, 1);
    add(&s->inference_count, (uint64_t)rows);
    atomic_store_explicit(&s->last_inference_ms, rt_wall_ms(), relaxed);
    int b = 0;
    while (b < RT_BATCH_BUCKETS && (double)rows > rt_batch_bounds[b]) b++;
    add(&s->batch_buckets[b], 1);
    add(&s->batch_sum, (uint64_t)rows);
    hist_observe(&s->compute, t2 - t1);
    for (size_t k = 0; k < n; k++) {
        rt_request *r = in->batch[k];
        add(&s->queue_n, 1);
        add(&s->queue_ns, r->t_start - r->t_submit);
        hist_observe(&s->queue, r->t_start - r->t_submit);
        add(&s->cin_n, 1);
        add(&s->cin_ns, t1 - t0);
        add(&s->cinfer_n, 1);
        add(&s->cinfer_ns, t2 - t1);
        add(&s->cout_n, 1);
        add(&s->cout_ns, t3 - t2);
        r->compute_ns = t3 - t0;
        r->exec_batch = (uint32_t)rows;
    }
    for (size_t k = 0; k < n; k++) {
        rt_request *r = in->batch[k];
        ferry_status *mine = NULL;
        if (st) {
            /* Each request owns its status; the message names the model for the reply. */
            mine = core_error(ferry_status_code(st), "model '%s' version %lld: %s", m->name,
                              (long long)m->version, ferry_status_message(st));
            free(r->out_mem);
            free(r->out_views);
            r->out_mem = NULL;
            r->out_views = NULL;
        }
        complete(m, r, mine, st ? RT_OUTCOME_ERROR : RT_OUTCOME_SUCCESS);
    }
    ferry_status_free(st);
}

static void *instance_main(void *arg)
{
    rt_instance *in = arg;
    rt_model *m = in->m;
    pthread_mutex_lock(&m->qlock);
    for (;;) {
        while (!m->stop && (!m->qhead || m->gathering)) pthread_cond_wait(&m->work, &m->qlock);
        if (m->stop && !m->qhead) break;
        rt_request *expired = NULL;
        size_t nexpired = 0;
        size_t n = gather(m, in, &expired, &nexpired);
        bool more = m->qhead != NULL;
        pthread_mutex_unlock(&m->qlock);
        if (more) pthread_cond_signal(&m->work); /* another instance takes the rest */
        while (expired) {
            rt_request *r = expired;
            expired = r->next;
            r->next = NULL;
            ferry_status *st = core_error(
                FERRY_ERR_TIMEOUT,
                "model '%s' version %lld: the request timed out after %.3f ms "
                "in the queue",
                m->name, (long long)m->version, (double)(rt_now_ns() - r->t_submit) / 1e6);
            complete(m, r, st, RT_OUTCOME_TIMEOUT);
        }
        if (n) execute(m, in, n);
        pthread_mutex_lock(&m->qlock);
        m->running -= (uint32_t)(n + nexpired);
        if (!m->qdepth && !m->running) pthread_cond_broadcast(&m->drained);
    }
    pthread_mutex_unlock(&m->qlock);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Life cycle of a version
 * ------------------------------------------------------------------------------------- */

void rt_model_close_queue(rt_model *m)
{
    pthread_mutex_lock(&m->qlock);
    m->accepting = false;
    /* A gatherer waiting for more requests runs what it has now. */
    pthread_cond_broadcast(&m->more);
    pthread_mutex_unlock(&m->qlock);
}

void rt_model_wait_drained(rt_model *m)
{
    pthread_mutex_lock(&m->qlock);
    while (m->qdepth || m->running) pthread_cond_wait(&m->drained, &m->qlock);
    pthread_mutex_unlock(&m->qlock);
}

void rt_model_destroy(rt_model *m)
{
    if (!m) return;
    pthread_mutex_lock(&m->qlock);
    m->stop = true;
    pthread_cond_broadcast(&m->work);
    pthread_cond_broadcast(&m->more);
    pthread_mutex_unlock(&m->qlock);
    for (int i = 0; i < m->instance_count; i++) {
        rt_instance *in = &m->instances[i];
        if (in->started) pthread_join(in->thread, NULL);
        ferry_context_destroy(in->ctx);
        for (size_t k = 0; in->buf && k < m->cfg.input_count; k++) free(in->buf[k]);
        free(in->buf);
        free(in->cap);
        free(in->batch);
        free(in->views);
    }
    free(m->instances);
    ferry_model_close(m->engine);
    rt_config_free(&m->cfg);
    pthread_mutex_destroy(&m->qlock);
    pthread_cond_destroy(&m->work);
    pthread_cond_destroy(&m->more);
    pthread_cond_destroy(&m->drained);
    free(m);
}

ferry_status *rt_model_start(rt_runtime *rt, const char *name, int64_t version, ferry_model *engine,
                             rt_model_config *cfg, rt_model **out)
{
    *out = NULL;
    ferry_status *st = NULL;
    rt_model *m = calloc(1, sizeof(*m));
    if (!m) {
        ferry_model_close(engine);
        rt_config_free(cfg);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    }
    m->rt = rt;
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->version = version;
    m->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    m->engine = engine;
    atomic_init(&m->refs, 1);
    atomic_init(&m->state, RT_STATE_LOADING);
    pthread_mutex_init(&m->qlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->work, &ca);
    pthread_cond_init(&m->more, &ca);
    pthread_cond_init(&m->drained, &ca);
    pthread_condattr_destroy(&ca);
    m->accepting = true;
    m->batching = m->cfg.max_batch_size > 0 && m->cfg.has_dynamic_batching;
    m->max_batch = m->cfg.max_batch_size > 0 ? (uint32_t)m->cfg.max_batch_size : 1;
    size_t batch_cap = m->batching ? m->max_batch : 1;
    if (batch_cap > m->cfg.queue_capacity) batch_cap = m->cfg.queue_capacity;
    if (!batch_cap) batch_cap = 1;
    size_t ni = m->cfg.input_count;
    m->instances = calloc((size_t)m->cfg.instance_count, sizeof(rt_instance));
    if (!m->instances) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    m->instance_count = m->cfg.instance_count;
    for (int i = 0; i < m->instance_count; i++) {
        rt_instance *in = &m->instances[i];
        in->m = m;
        in->index = i;
        in->batch_cap = batch_cap;
        in->buf = calloc(ni ? ni : 1, sizeof(void *));
        in->cap = calloc(ni ? ni : 1, sizeof(size_t));
        in->views = calloc(ni ? ni : 1, sizeof(ferry_tensor_view));
        in->batch = calloc(batch_cap, sizeof(rt_request *));
        if (!in->buf || !in->cap || !in->views || !in->batch) {
            st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            goto out;
        }
        if ((st = ferry_context_create(engine, &in->ctx))) goto out;
    }
    for (int i = 0; i < m->instance_count; i++) {
        rt_instance *in = &m->instances[i];
        int e = pthread_create(&in->thread, NULL, instance_main, in);
        if (e) {
            st = core_error(FERRY_ERR_NO_MEMORY, "cannot start instance thread %d: %s", i,
                            strerror(e));
            goto out;
        }
        in->started = true;
    }
    m->loaded_at_ms = rt_wall_ms();
    atomic_store(&m->state, RT_STATE_READY);
    rt_runtime_track(rt, m);
    *out = m;
out:
    if (st) rt_model_destroy(m);
    return st;
}
