/* metrics.c - GET /metrics: Prometheus text exposition (format 0.0.4).
 *
 * Per model version, from the runtime's statistics: requests by outcome, batch items and
 * executions, histograms of end-to-end, queue and compute seconds and of batch sizes, queue
 * depth and in-flight gauges, load time and state. Server-wide, from the HTTP layer: requests by
 * status code, bytes, requests in flight. Names follow Prometheus conventions: ferry_ prefix,
 * units in the name, _total on counters.
 */
#include "serve/internal.h"

#include "serve/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const code_labels[SRV_CODE_COUNT] = {
    [SRV_CODE_200] = "200", [SRV_CODE_400] = "400", [SRV_CODE_404] = "404",
    [SRV_CODE_405] = "405", [SRV_CODE_413] = "413", [SRV_CODE_500] = "500",
    [SRV_CODE_501] = "501", [SRV_CODE_503] = "503", [SRV_CODE_OTHER] = "other",
};

void srv_count_refused(srv_server *s, const char *model, int64_t version)
{
    pthread_mutex_lock(&s->refused_lock);
    srv_refused *e = NULL;
    for (size_t i = 0; i < s->n_refused; i++) {
        if (s->refused[i].version == version && !strcmp(s->refused[i].name, model)) {
            e = &s->refused[i];
            break;
        }
    }
    if (!e && s->n_refused < SRV_MAX_REFUSED) {
        e = &s->refused[s->n_refused++];
        snprintf(e->name, sizeof(e->name), "%s", model);
        e->version = version;
    }
    if (e) atomic_fetch_add_explicit(&e->count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->refused_lock);
}

static uint64_t refused_for(srv_server *s, const char *model, int64_t version)
{
    uint64_t n = 0;
    pthread_mutex_lock(&s->refused_lock);
    for (size_t i = 0; i < s->n_refused; i++)
        if (s->refused[i].version == version && !strcmp(s->refused[i].name, model))
            n = atomic_load_explicit(&s->refused[i].count, memory_order_relaxed);
    pthread_mutex_unlock(&s->refused_lock);
    return n;
}

static void head(srv_buf *b, const char *name, const char *type, const char *help)
{
    srv_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Model names are [A-Za-z0-9_.-] (rt_name_valid), so they need no escaping in labels. */
typedef struct series {
    const char *model;
    char version[24];
    rt_model_stats st;
    uint64_t refused;
} series;

enum { H_REQUEST, H_QUEUE, H_COMPUTE, H_BATCH };

static void histogram(srv_buf *b, const char *name, const series *s, size_t n, int which)
{
    for (size_t i = 0; i < n; i++) {
        const uint64_t *buckets;
        size_t nb;
        const double *bounds;
        uint64_t count;
        double sum;
        if (which != H_BATCH) {
            const rt_latency_histogram *h = which == H_QUEUE     ? &s[i].st.queue_latency
                                            : which == H_COMPUTE ? &s[i].st.compute_latency
                                                                 : &s[i].st.request_latency;
            buckets = h->buckets;
            nb = RT_LATENCY_BUCKETS;
            bounds = rt_latency_bounds_s;
            count = h->count;
            sum = h->sum_s;
        } else {
            const rt_batch_histogram *h = &s[i].st.batch_size;
            buckets = h->buckets;
            nb = RT_BATCH_BUCKETS;
            bounds = rt_batch_bounds;
            count = h->count;
            sum = (double)h->sum;
        }
        for (size_t k = 0; k < nb; k++)
            srv_buf_printf(b, "%s_bucket{model=\"%s\",version=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                           name, s[i].model, s[i].version, bounds[k], buckets[k]);
        srv_buf_printf(b, "%s_bucket{model=\"%s\",version=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name,
                       s[i].model, s[i].version, count);
        srv_buf_printf(b, "%s_sum{model=\"%s\",version=\"%s\"} %.9g\n", name, s[i].model,
                       s[i].version, sum);
        srv_buf_printf(b, "%s_count{model=\"%s\",version=\"%s\"} %" PRIu64 "\n", name, s[i].model,
                       s[i].version, count);
    }
}

#define EACH_MODEL(fmt, ...)                                                                       \
    for (size_t i = 0; i < n; i++) srv_buf_printf(b, fmt, s[i].model, s[i].version, __VA_ARGS__);

void srv_ep_metrics(srv_server *srv, srv_reply *r)
{
    srv_buf buf = {0}, *b = &buf;
    rt_model **list = NULL;
    size_t n = 0;
    ferry_status *err = rt_model_list(srv->rt, NULL, &list, &n);
    if (err) {
        srv_reply_error(r, err);
        return;
    }
    series *s = calloc(n ? n : 1, sizeof(*s));
    if (!s) {
        rt_model_list_free(list, n);
        srv_reply_message(r, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        s[i].model = rt_model_name(list[i]);
        snprintf(s[i].version, sizeof(s[i].version), "%" PRId64, rt_model_version(list[i]));
        rt_model_get_stats(list[i], &s[i].st);
        s[i].refused = refused_for(srv, s[i].model, rt_model_version(list[i]));
    }

    head(b, "ferry_inference_requests_total", "counter",
         "Inference requests by model version and outcome (success, invalid, rejected, timeout, "
         "error).");
    for (size_t i = 0; i < n; i++) {
        for (int o = 0; o < RT_OUTCOME_COUNT; o++) {
            uint64_t v = s[i].st.requests[o];
            if (o == RT_OUTCOME_INVALID) v += s[i].refused;
            srv_buf_printf(b,
                           "ferry_inference_requests_total{model=\"%s\",version=\"%s\","
                           "outcome=\"%s\"} %" PRIu64 "\n",
                           s[i].model, s[i].version, rt_outcome_name((rt_outcome)o), v);
        }
    }
    head(b, "ferry_inference_items_total", "counter",
         "Batch items inferred (a request of batch 4 counts 4).");
    EACH_MODEL("ferry_inference_items_total{model=\"%s\",version=\"%s\"} %" PRIu64 "\n",
               s[i].st.inference_count)
    head(b, "ferry_inference_executions_total", "counter",
         "Engine runs; items / executions is the average batch size.");
    EACH_MODEL("ferry_inference_executions_total{model=\"%s\",version=\"%s\"} %" PRIu64 "\n",
               s[i].st.execution_count)
    head(b, "ferry_inference_request_duration_seconds", "histogram",
         "End-to-end time of inference requests in the runtime, submission to completion.");
    histogram(b, "ferry_inference_request_duration_seconds", s, n, H_REQUEST);
    head(b, "ferry_inference_queue_duration_seconds", "histogram",
         "Time inference requests waited in the model's queue.");
    histogram(b, "ferry_inference_queue_duration_seconds", s, n, H_QUEUE);
    head(b, "ferry_inference_compute_duration_seconds", "histogram",
         "Time of each execution: gathering inputs, the engine run, splitting outputs.");
    histogram(b, "ferry_inference_compute_duration_seconds", s, n, H_COMPUTE);
    head(b, "ferry_inference_batch_size", "histogram", "Batch items per execution.");
    histogram(b, "ferry_inference_batch_size", s, n, H_BATCH);
    head(b, "ferry_inference_queue_depth", "gauge", "Requests waiting in the model's queue now.");
    EACH_MODEL("ferry_inference_queue_depth{model=\"%s\",version=\"%s\"} %" PRId64 "\n",
               s[i].st.queue_depth)
    head(b, "ferry_inference_queue_capacity", "gauge",
         "Most requests the model's queue holds; more are refused with 503.");
    EACH_MODEL("ferry_inference_queue_capacity{model=\"%s\",version=\"%s\"} %" PRIu32 "\n",
               s[i].st.queue_capacity)
    head(b, "ferry_inference_in_flight_requests", "gauge",
         "Requests submitted to the model and not yet completed.");
    EACH_MODEL("ferry_inference_in_flight_requests{model=\"%s\",version=\"%s\"} %" PRId64 "\n",
               s[i].st.in_flight)
    head(b, "ferry_model_instances", "gauge", "Instances (threads) running the model version.");
    EACH_MODEL("ferry_model_instances{model=\"%s\",version=\"%s\"} %d\n", s[i].st.instance_count)
    head(b, "ferry_model_load_duration_seconds", "gauge", "How long loading the version took.");
    EACH_MODEL("ferry_model_load_duration_seconds{model=\"%s\",version=\"%s\"} %.6f\n",
               (double)s[i].st.load_ns / 1e9)
    head(b, "ferry_model_loaded_timestamp_seconds", "gauge",
         "When the version became ready, in seconds since the epoch.");
    EACH_MODEL("ferry_model_loaded_timestamp_seconds{model=\"%s\",version=\"%s\"} %.3f\n",
               (double)s[i].st.loaded_at_ms / 1e3)
    head(b, "ferry_model_last_inference_timestamp_seconds", "gauge",
         "When the version last ran, in seconds since the epoch (0: never).");
    EACH_MODEL("ferry_model_last_inference_timestamp_seconds{model=\"%s\",version=\"%s\"} %.3f\n",
               (double)s[i].st.last_inference_ms / 1e3)
    rt_model_list_free(list, n);
    free(s);

    /* State of every model in the repository, loaded or not, from the index. */
    rt_index_entry *rows = NULL;
    size_t nrows = 0;
    err = rt_runtime_index(srv->rt, false, &rows, &nrows);
    if (err) {
        ferry_status_free(err);
        nrows = 0;
    }
    head(b, "ferry_model_state", "gauge",
         "1 for the state each model version is in (READY, LOADING, UNLOADING, UNAVAILABLE); "
         "version=\"\" is the model without a loaded version.");
    for (size_t i = 0; i < nrows; i++) {
        char v[24] = "";
        if (rows[i].version >= 0) snprintf(v, sizeof(v), "%" PRId64, rows[i].version);
        srv_buf_printf(b, "ferry_model_state{model=\"%s\",version=\"%s\",state=\"%s\"} 1\n",
                       rows[i].name, v, rt_model_state_name(rows[i].state));
    }
    free(rows);

    head(b, "ferry_http_requests_total", "counter", "HTTP requests answered, by status code.");
    for (int c = 0; c < SRV_CODE_COUNT; c++)
        srv_buf_printf(b, "ferry_http_requests_total{code=\"%s\"} %" PRIu64 "\n", code_labels[c],
                       atomic_load_explicit(&srv->codes[c], memory_order_relaxed));
    head(b, "ferry_http_in_flight_requests", "gauge", "HTTP requests being handled now.");
    srv_buf_printf(b, "ferry_http_in_flight_requests %" PRId64 "\n",
                   atomic_load_explicit(&srv->active, memory_order_relaxed));
    head(b, "ferry_http_received_bytes_total", "counter", "Request body bytes received.");
    srv_buf_printf(b, "ferry_http_received_bytes_total %" PRIu64 "\n",
                   atomic_load_explicit(&srv->bytes_in, memory_order_relaxed));
    head(b, "ferry_http_sent_bytes_total", "counter", "Response body bytes sent.");
    srv_buf_printf(b, "ferry_http_sent_bytes_total %" PRIu64 "\n",
                   atomic_load_explicit(&srv->bytes_out, memory_order_relaxed));
    head(b, "ferry_start_time_seconds", "gauge",
         "When the server started, seconds since the epoch.");
    srv_buf_printf(b, "ferry_start_time_seconds %.3f\n", (double)srv->start_ms / 1e3);
    head(b, "ferry_build_info", "gauge", "Ferry's version.");
    srv_buf_printf(b, "ferry_build_info{version=\"%s\"} 1\n", FERRY_VERSION);

    if (b->failed) {
        srv_buf_free(b);
        srv_reply_message(r, 500, "out of memory");
        return;
    }
    r->status = 200;
    r->body = srv_buf_steal(b, &r->len);
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
