/* server.c - the HTTP server: libmicrohttpd daemon, router, inference requests, shutdown.
 *
 * Threads. libmicrohttpd runs a pool of HTTP threads, each with its own epoll set. They parse,
 * decode and encode, but never run a model: an inference request is decoded into tensor views,
 * handed to the runtime (rt_submit), and its connection is suspended. The runtime's completion
 * callback, on a worker thread, only resumes the connection; the HTTP thread that owns it then
 * encodes the response. Model loads and unloads, which can take seconds, run on short-lived
 * helper threads in the same way.
 *
 * Suspend and resume race: the runtime may finish before the HTTP thread has suspended the
 * connection. An atomic phase settles it (see on_done() and park()): whichever of the two comes
 * second resumes, and if the result is already there before suspending, the reply goes out
 * without suspending at all.
 *
 * Memory. One srv_request per HTTP request, holding the body, an arena for everything decoded
 * from it, and the runtime request; all of it is freed when libmicrohttpd reports the request
 * complete. A response with binary outputs points straight at the runtime's output buffers (an
 * iovec), so those are freed with the response instead.
 */
#include "serve/internal.h"

#include "core/status.h"
#include "serve/codec.h"
#include "serve/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bodies of requests other than inference (index, load, unload) are small JSON objects. */
#define MAX_ADMIN_BODY (1u << 20)
/* Concurrent load/unload helper threads; more get 503. */
#define MAX_ADMIN_THREADS 4
/* Bytes of the arena kept inside each request: a typical request never calls malloc for it. */
#define INLINE_ARENA 4096
/* A request's arena may take this multiple of its body (decoded JSON numbers are wider than
 * their text only for 8-byte types, at most 4x), plus a fixed allowance. */
#define ARENA_FACTOR 4
#define ARENA_SLACK  (1u << 20)
/* libmicrohttpd's per-connection memory (headers, read and write buffers). It zeroes all of
 * it for every request, so it is kept small; bodies go to our own buffer in chunks anyway. */
#define CONNECTION_MEMORY (8 * 1024)
/* How often an inference is retried when the version it went to was replaced meanwhile. */
#define MAX_RETRIES 3

typedef enum route {
    EP_NOT_FOUND = 0,
    EP_LIVE,
    EP_READY,
    EP_SERVER_META,
    EP_MODEL_META,
    EP_MODEL_READY,
    EP_MODEL_CONFIG,
    EP_MODEL_STATS,
    EP_ALL_STATS,
    EP_INFER,
    EP_REPO_INDEX,
    EP_REPO_LOAD,
    EP_REPO_UNLOAD,
    EP_METRICS,
    EP_COUNT
} route;

static const struct {
    const char *name; /* for the access log */
    bool post;        /* POST, else GET (and HEAD) */
} routes[EP_COUNT] = {
    [EP_NOT_FOUND] = {"not_found", false},          [EP_LIVE] = {"health_live", false},
    [EP_READY] = {"health_ready", false},           [EP_SERVER_META] = {"server_metadata", false},
    [EP_MODEL_META] = {"model_metadata", false},    [EP_MODEL_READY] = {"model_ready", false},
    [EP_MODEL_CONFIG] = {"model_config", false},    [EP_MODEL_STATS] = {"model_stats", false},
    [EP_ALL_STATS] = {"model_stats", false},        [EP_INFER] = {"infer", true},
    [EP_REPO_INDEX] = {"repository_index", true},   [EP_REPO_LOAD] = {"repository_load", true},
    [EP_REPO_UNLOAD] = {"repository_unload", true}, [EP_METRICS] = {"metrics", false},
};

enum { PHASE_NONE, PHASE_SUBMITTED, PHASE_SUSPENDED, PHASE_DONE };

typedef struct srv_request {
    srv_server *srv;
    struct MHD_Connection *conn;
    uint64_t t_start;
    route ep;
    int bad_status; /* router's verdict when it refused the request */
    const char *bad_message;
    char path[256];
    char method[8];
    char model[RT_MAX_NAME + 1];
    char version[24];
    char trace_id[33], span_id[17];

    /* Body */
    char *body;
    size_t body_len, body_cap, body_max;
    int64_t header_len; /* Inference-Header-Content-Length, or -1 */

    /* Inference */
    rt_model *model_ref;
    rt_request *rt_req;
    srv_model_sig sig;
    srv_infer_req req;
    int retries;
    _Atomic int phase;
    rt_request_timing timing;
    int64_t model_version;

    /* Load/unload on a helper thread */
    srv_reply admin_reply;

    /* What went out, for the access log */
    int status;
    size_t bytes_out;

    srv_arena arena;
    _Alignas(64) char arena_inline[INLINE_ARENA];
} srv_request;

/* ---------------------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------------------- */

static int code_slot(int status)
{
    switch (status) {
    case 200:
        return SRV_CODE_200;
    case 400:
        return SRV_CODE_400;
    case 404:
        return SRV_CODE_404;
    case 405:
        return SRV_CODE_405;
    case 413:
        return SRV_CODE_413;
    case 500:
        return SRV_CODE_500;
    case 501:
        return SRV_CODE_501;
    case 503:
        return SRV_CODE_503;
    default:
        return SRV_CODE_OTHER;
    }
}

/* Headers every reply gets; false when libmicrohttpd ran out of memory. */
static bool common_headers(srv_request *q, struct MHD_Response *resp, int status,
                           const char *content_type)
{
    bool ok = true;
    if (content_type)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) == MHD_YES;
    if (status == 503) ok &= MHD_add_response_header(resp, "Retry-After", "1") == MHD_YES;
    if (status == 405)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                      routes[q->ep].post ? "POST" : "GET, HEAD") == MHD_YES;
    /* While draining, tell keep-alive clients to go elsewhere for their next request. */
    if (atomic_load_explicit(&q->srv->draining, memory_order_relaxed))
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
    return ok;
}

static enum MHD_Result queue(srv_request *q, struct MHD_Response *resp, int status, size_t len)
{
    if (!resp) return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(q->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    q->status = status;
    q->bytes_out = len;
    atomic_fetch_add_explicit(&q->srv->codes[code_slot(status)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&q->srv->bytes_out, len, memory_order_relaxed);
    return ret;
}

/* Sends R (taking its body). */
static enum MHD_Result send_reply(srv_request *q, srv_reply *r)
{
    struct MHD_Response *resp;
    const char *ctype = r->content_type ? r->content_type : "application/json";
    if (r->body) {
        resp = MHD_create_response_from_buffer_with_free_callback(r->len, r->body, free);
        if (!resp) free(r->body);
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    r->body = NULL;
    if (resp && !common_headers(q, resp, r->status, ctype)) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    return queue(q, resp, r->status, r->len);
}

static enum MHD_Result send_message(srv_request *q, int status, const char *message)
{
    srv_reply r;
    srv_reply_message(&r, status, message);
    return send_reply(q, &r);
}

static enum MHD_Result send_status(srv_request *q, ferry_status *st)
{
    srv_reply r;
    srv_reply_error(&r, st);
    return send_reply(q, &r);
}

/* ---------------------------------------------------------------------------------------
 * Routing
 * ------------------------------------------------------------------------------------- */

/* Splits PATH into at most MAX segments; false for empty segments or too many. A single
 * trailing slash is ignored. */
static int split_path(const char *path, const char *seg[], size_t len[], int max)
{
    if (path[0] != '/') return -1;
    int n = 0;
    const char *p = path + 1;
    size_t total = strlen(path);
    if (total > 1 && path[total - 1] == '/') total--;
    const char *end = path + total;
    if (p >= end) return 0;
    while (p <= end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *e = slash ? slash : end;
        if (e == p || n >= max) return -1;
        seg[n] = p;
        len[n] = (size_t)(e - p);
        n++;
        if (!slash) break;
        p = slash + 1;
    }
    return n;
}

static bool seg_is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && !memcmp(s, lit, len);
}

/* Copies a model name segment; refuses what rt_name_valid refuses, so a name that reaches the
 * runtime is one it could also find on disk. */
static bool take_name(srv_request *q, const char *s, size_t len)
{
    if (len > RT_MAX_NAME) return false;
    memcpy(q->model, s, len);
    q->model[len] = 0;
    if (strlen(q->model) != len || !rt_name_valid(q->model)) return false;
    return true;
}

static bool take_version(srv_request *q, const char *s, size_t len)
{
    int64_t v;
    if (len >= sizeof(q->version)) return false;
    memcpy(q->version, s, len);
    q->version[len] = 0;
    return strlen(q->version) == len && rt_version_parse(q->version, &v);
}

static void route_request(srv_request *q, const char *url)
{
    const char *seg[8];
    size_t len[8];
    int n = split_path(url, seg, len, 8);
    q->ep = EP_NOT_FOUND;
    if (n < 1) return;
    if (n == 1 && seg_is(seg[0], len[0], "metrics")) {
        q->ep = EP_METRICS;
        return;
    }
    if (!seg_is(seg[0], len[0], "v2")) return;
    if (n == 1) {
        q->ep = EP_SERVER_META;
        return;
    }
    if (seg_is(seg[1], len[1], "health")) {
        if (n == 3 && seg_is(seg[2], len[2], "live")) q->ep = EP_LIVE;
        if (n == 3 && seg_is(seg[2], len[2], "ready")) q->ep = EP_READY;
        return;
    }
    if (seg_is(seg[1], len[1], "repository")) {
        if (n == 3 && seg_is(seg[2], len[2], "index")) {
            q->ep = EP_REPO_INDEX;
        } else if (n == 5 && seg_is(seg[2], len[2], "models") &&
                   (seg_is(seg[4], len[4], "load") || seg_is(seg[4], len[4], "unload"))) {
            q->ep = seg_is(seg[4], len[4], "load") ? EP_REPO_LOAD : EP_REPO_UNLOAD;
            if (!take_name(q, seg[3], len[3])) {
                q->bad_status = 400;
                q->bad_message = "invalid model name: use 1-128 characters of [A-Za-z0-9_.-], "
                                 "not starting with '.'";
            }
        }
        return;
    }
    if (!seg_is(seg[1], len[1], "models") || n < 3) return;
    if (n == 3 && seg_is(seg[2], len[2], "stats")) {
        q->ep = EP_ALL_STATS;
        return;
    }
    int i = 3;
    route ep = EP_MODEL_META;
    if (n >= 5 && seg_is(seg[3], len[3], "versions")) i = 5;
    if (n > i + 1) return;
    if (n == i + 1) {
        const char *a = seg[i];
        size_t l = len[i];
        if (seg_is(a, l, "infer"))
            ep = EP_INFER;
        else if (seg_is(a, l, "ready"))
            ep = EP_MODEL_READY;
        else if (seg_is(a, l, "config"))
            ep = EP_MODEL_CONFIG;
        else if (seg_is(a, l, "stats"))
            ep = EP_MODEL_STATS;
        else
            return;
    }
    if (i == 3 && n >= 4 && seg_is(seg[3], len[3], "versions")) return; /* ".../versions" alone */
    q->ep = ep;
    if (!take_name(q, seg[2], len[2])) {
        q->bad_status = 400;
        q->bad_message = "invalid model name: use 1-128 characters of [A-Za-z0-9_.-], not "
                         "starting with '.'";
    } else if (i == 5 && !take_version(q, seg[4], len[4])) {
        q->bad_status = 400;
        q->bad_message = "invalid model version: use a positive integer without leading zeros";
    }
}

/* Parses a non-negative decimal header value; -1 when absent, -2 when malformed. */
static int64_t header_int(struct MHD_Connection *conn, const char *name)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    if (!v) return -1;
    while (*v == ' ' || *v == '\t') v++;
    if (!*v) return -2;
    int64_t n = 0;
    for (; *v >= '0' && *v <= '9'; v++) {
        if (n > (INT64_MAX - 9) / 10) return -2;
        n = n * 10 + (*v - '0');
    }
    while (*v == ' ' || *v == '\t') v++;
    return *v ? -2 : n;
}

/* W3C trace context: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>". Anything else is
 * ignored, as the recommendation says. */
static void read_traceparent(srv_request *q)
{
    const char *v = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "traceparent");
    if (!v || strlen(v) < 55) return;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 55; i++) {
        bool dash = i == 2 || i == 35 || i == 52;
        if (dash ? v[i] != '-' : !strchr(hex, v[i]) || !v[i]) return;
    }
    if ((v[0] == 'f' && v[1] == 'f') || (v[55] && (v[0] == '0' && v[1] == '0'))) return;
    if (!strncmp(v + 3, "00000000000000000000000000000000", 32)) return;
    if (!strncmp(v + 36, "0000000000000000", 16)) return;
    memcpy(q->trace_id, v + 3, 32);
    q->trace_id[32] = 0;
    memcpy(q->span_id, v + 36, 16);
    q->span_id[16] = 0;
}

/* ---------------------------------------------------------------------------------------
 * Inference
 * ------------------------------------------------------------------------------------- */

/* The runtime's completion callback, on a worker thread: never encodes, only wakes the HTTP
 * thread. */
static void on_done(rt_request *rr, void *user)
{
    (void)rr;
    srv_request *q = user;
    if (atomic_exchange(&q->phase, PHASE_DONE) == PHASE_SUSPENDED) MHD_resume_connection(q->conn);
}

/* After a successful submit: suspends the connection unless the result is already there.
 * Returns true when the caller should reply now. */
static bool park(srv_request *q)
{
    if (atomic_load(&q->phase) == PHASE_DONE) return true;
    MHD_suspend_connection(q->conn);
    int expected = PHASE_SUBMITTED;
    if (!atomic_compare_exchange_strong(&q->phase, &expected, PHASE_SUSPENDED))
        MHD_resume_connection(q->conn); /* finished in between: the thread comes straight back */
    return false;
}

/* The model's signature as the decoder wants it, from the bound config. */
static ferry_status *build_sig(srv_request *q, const rt_model_config *cfg)
{
    srv_model_sig *sig = &q->sig;
    size_t ni = cfg->input_count, no = cfg->output_count;
    srv_tensor_spec *in = srv_arena_alloc(&q->arena, (ni ? ni : 1) * sizeof(*in), 16);
    srv_tensor_spec *out = srv_arena_alloc(&q->arena, (no ? no : 1) * sizeof(*out), 16);
    if (!in || !out) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    int lead = cfg->max_batch_size > 0 ? 1 : 0;
    for (size_t k = 0; k < ni + no; k++) {
        const rt_tensor_config *t = k < ni ? &cfg->inputs[k] : &cfg->outputs[k - ni];
        srv_tensor_spec *s = k < ni ? &in[k] : &out[k - ni];
        if (t->rank + lead > FERRY_MAX_RANK)
            return core_error(FERRY_ERR_INTERNAL, "tensor '%s' has too many dimensions", t->name);
        s->name = t->name;
        s->dtype = t->dtype;
        s->rank = t->rank + lead;
        s->optional = t->optional;
        s->dims[0] = -1;
        memcpy(s->dims + lead, t->dims, (size_t)t->rank * sizeof(t->dims[0]));
    }
    *sig = (srv_model_sig){in, ni, out, no, cfg->max_batch_size};
    return NULL;
}

static enum MHD_Result finish_infer(srv_request *q);

/* Decodes the body for the model version the URL names and submits it. */
static enum MHD_Result start_infer(srv_request *q)
{
    srv_server *s = q->srv;
    ferry_status *st;
    for (;;) {
        rt_model *m = NULL;
        rt_request *rr = NULL;
        st = rt_model_acquire(s->rt, q->model, q->version[0] ? q->version : NULL, &m);
        if (st) return send_status(q, st);
        q->model_ref = m;
        q->model_version = rt_model_version(q->model_ref);
        if ((st = build_sig(q, rt_model_get_config(q->model_ref)))) return send_status(q, st);
        st = srv_decode_infer(&q->sig, q->body ? q->body : "", q->body_len, q->header_len,
                              &q->arena, &q->req);
        if (st) {
            srv_count_refused(s, q->model, q->model_version);
            return send_status(q, st);
        }
        if ((st = rt_request_create(q->model_ref, &rr))) return send_status(q, st);
        q->rt_req = rr;
        for (size_t i = 0; i < q->req.n_inputs && !st; i++)
            if (q->req.given[i]) st = rt_request_set_input(q->rt_req, i, &q->req.inputs[i]);
        for (size_t i = 0; i < q->req.n_outputs && !st; i++)
            st = rt_request_add_output(q->rt_req, q->req.outputs[i].index);
        if (st) return send_status(q, st);
        if (q->req.timeout_us) rt_request_set_timeout_us(q->rt_req, (uint64_t)q->req.timeout_us);
        rt_request_set_callback(q->rt_req, on_done, q);
        atomic_store(&q->phase, PHASE_SUBMITTED);
        st = rt_submit(q->rt_req);
        if (!st) break;
        atomic_store(&q->phase, PHASE_NONE);
        /* The version this request went to was replaced (poll mode, explicit reload) between
         * acquire and submit: send it to the new default version instead of failing it. */
        bool replaced = ferry_status_code(st) == FERRY_ERR_UNAVAILABLE && !q->version[0] &&
                        rt_model_get_state(q->model_ref) == RT_STATE_UNLOADING &&
                        q->retries < MAX_RETRIES;
        if (!replaced) return send_status(q, st);
        ferry_status_free(st);
        rt_request_free(q->rt_req);
        q->rt_req = NULL;
        rt_model_release(q->model_ref);
        q->model_ref = NULL;
        q->retries++;
    }
    if (park(q)) return finish_infer(q); /* already done: reply without suspending */
    return MHD_YES;                      /* finish_infer runs when the connection resumes */
}

typedef struct binary_reply {
    rt_request *rt_req;
    char *json;
} binary_reply;

static void free_binary_reply(void *cls)
{
    binary_reply *b = cls;
    rt_request_free(b->rt_req);
    free(b->json);
    free(b);
}

/* On the HTTP thread, once the runtime is done: encodes and queues the response. */
static enum MHD_Result finish_infer(srv_request *q)
{
    rt_request *rr = q->rt_req;
    rt_request_get_timing(rr, &q->timing);
    const ferry_status *rst = rt_request_status(rr);
    if (rst) {
        ferry_status *copy = core_error(ferry_status_code(rst), "%s", ferry_status_message(rst));
        return send_status(q, copy);
    }
    size_t n = rt_request_output_count(rr);
    if (n != q->req.n_outputs)
        return send_status(q, core_error(FERRY_ERR_INTERNAL,
                                         "the runtime returned %zu outputs, "
                                         "%zu were asked for",
                                         n, q->req.n_outputs));
    ferry_tensor_view *views = srv_arena_alloc(&q->arena, (n ? n : 1) * sizeof(*views), 16);
    if (!views) return send_status(q, core_error(FERRY_ERR_NO_MEMORY, "out of memory"));
    for (size_t i = 0; i < n; i++) {
        ferry_status *st = rt_request_output(rr, i, NULL, &views[i]);
        if (st) return send_status(q, st);
    }
    char version[24];
    snprintf(version, sizeof(version), "%" PRId64, q->model_version);
    srv_buf json = {.max = (size_t)1 << 30};
    ferry_status *st = srv_encode_infer(&q->sig, &q->req, q->model, version, views, &json);
    if (st) {
        srv_buf_free(&json);
        return send_status(q, st);
    }
    struct MHD_Response *resp;
    size_t total = json.len;
    if (!q->req.any_binary_output) {
        /* JSON only: the outputs were copied into the text, the runtime request can go now. */
        rt_request_free(rr);
        q->rt_req = NULL;
        char *text = srv_buf_steal(&json, NULL);
        resp = MHD_create_response_from_buffer_with_free_callback(total, text, free);
        if (!resp) free(text);
        if (resp && !common_headers(q, resp, 200, "application/json")) {
            MHD_destroy_response(resp);
            resp = NULL;
        }
        return queue(q, resp, 200, total);
    }
    /* Binary outputs go out in place from the runtime's buffers, after the JSON. */
    struct MHD_IoVec *iov = srv_arena_alloc(&q->arena, (n + 1) * sizeof(*iov), 16);
    binary_reply *br = malloc(sizeof(*br));
    if (!iov || !br) {
        free(br);
        srv_buf_free(&json);
        return send_status(q, core_error(FERRY_ERR_NO_MEMORY, "out of memory"));
    }
    char hlen[24];
    snprintf(hlen, sizeof(hlen), "%zu", json.len);
    size_t k = 0;
    iov[k++] = (struct MHD_IoVec){json.data, json.len};
    for (size_t i = 0; i < n; i++) {
        if (!q->req.outputs[i].binary) continue;
        size_t bytes = srv_view_bytes(&views[i]);
        iov[k++] = (struct MHD_IoVec){views[i].data, bytes};
        total += bytes;
    }
    br->rt_req = rr;
    br->json = srv_buf_steal(&json, NULL);
    q->rt_req = NULL; /* the response owns it now */
    resp = MHD_create_response_from_iovec(iov, (unsigned)k, free_binary_reply, br);
    if (!resp) {
        free_binary_reply(br);
        return MHD_NO;
    }
    if (!common_headers(q, resp, 200, "application/octet-stream") ||
        MHD_add_response_header(resp, "Inference-Header-Content-Length", hlen) != MHD_YES) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    return queue(q, resp, 200, total);
}

/* ---------------------------------------------------------------------------------------
 * Load and unload on a helper thread
 * ------------------------------------------------------------------------------------- */

static void *admin_thread(void *arg)
{
    srv_request *q = arg;
    srv_ep_repository_load(q->srv, q->model, q->ep == EP_REPO_LOAD, q->body, q->body_len,
                           &q->admin_reply);
    srv_server *s = q->srv;
    on_done(NULL, q);
    atomic_fetch_sub(&s->admin_threads, 1);
    return NULL;
}

static enum MHD_Result start_admin(srv_request *q)
{
    srv_server *s = q->srv;
    if (atomic_fetch_add(&s->admin_threads, 1) >= MAX_ADMIN_THREADS) {
        atomic_fetch_sub(&s->admin_threads, 1);
        return send_message(q, 503, "too many model loads and unloads in progress");
    }
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_store(&q->phase, PHASE_SUBMITTED);
    int err = pthread_create(&t, &attr, admin_thread, q);
    pthread_attr_destroy(&attr);
    if (err) {
        atomic_store(&q->phase, PHASE_NONE);
        atomic_fetch_sub(&s->admin_threads, 1);
        return send_message(q, 503, "cannot start a thread for the request");
    }
    if (park(q)) return send_reply(q, &q->admin_reply);
    return MHD_YES;
}

/* ---------------------------------------------------------------------------------------
 * The handler
 * ------------------------------------------------------------------------------------- */

static enum MHD_Result dispatch(srv_request *q)
{
    srv_server *s = q->srv;
    srv_reply r = {0};
    const char *version = q->version[0] ? q->version : NULL;
    switch (q->ep) {
    case EP_INFER:
        return start_infer(q);
    case EP_REPO_LOAD:
    case EP_REPO_UNLOAD:
        return start_admin(q);
    case EP_LIVE:
        if (rt_runtime_live(s->rt))
            r = (srv_reply){200, NULL, 0, "text/plain"};
        else
            srv_reply_message(&r, 400, "server is not live");
        break;
    case EP_READY:
        if (srv_server_ready(s))
            r = (srv_reply){200, NULL, 0, "text/plain"};
        else
            srv_reply_message(&r, 400, "server is not ready");
        break;
    case EP_SERVER_META:
        srv_ep_server_metadata(s, &r);
        break;
    case EP_MODEL_META:
        srv_ep_model_metadata(s, q->model, version, &r);
        break;
    case EP_MODEL_READY:
        srv_ep_model_ready(s, q->model, version, &r);
        break;
    case EP_MODEL_CONFIG:
        srv_ep_model_config(s, q->model, version, &r);
        break;
    case EP_MODEL_STATS:
        srv_ep_model_stats(s, q->model, version, &r);
        break;
    case EP_ALL_STATS:
        srv_ep_model_stats(s, NULL, NULL, &r);
        break;
    case EP_REPO_INDEX:
        srv_ep_repository_index(s, q->body, q->body_len, &r);
        break;
    case EP_METRICS:
        srv_ep_metrics(s, &r);
        break;
    default:
        srv_reply_message(&r, 404, "not found");
        break;
    }
    return send_reply(q, &r);
}

static srv_request *request_new(srv_server *s, struct MHD_Connection *conn, const char *url,
                                const char *method)
{
    srv_request *q = malloc(sizeof(*q));
    if (!q) return NULL;
    /* Only the head of the struct needs zeroing; the inline arena is scratch. */
    memset(q, 0, offsetof(srv_request, arena));
    q->srv = s;
    q->conn = conn;
    q->t_start = srv_now_ns();
    q->header_len = -1;
    q->model_version = -1;
    snprintf(q->path, sizeof(q->path), "%s", url);
    snprintf(q->method, sizeof(q->method), "%s", method);
    size_t limit = s->opts.max_request_bytes * ARENA_FACTOR + ARENA_SLACK;
    srv_arena_init(&q->arena, q->arena_inline, sizeof(q->arena_inline), limit);
    atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
    return q;
}

/* First call for a request: headers are in, the body (if any) is not. */
static enum MHD_Result begin(srv_request *q, const char *url, const char *method)
{
    srv_server *s = q->srv;
    route_request(q, url); /* the whole URL: q->path is cut short for the log */
    read_traceparent(q);
    bool is_post = !strcmp(method, MHD_HTTP_METHOD_POST);
    bool is_get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    /* Replies wait for the handler's next call: libmicrohttpd 0.9.75 closes the connection
     * after a reply queued on the first call (it cannot know the body was read), which would
     * cost keep-alive on every GET. Refused requests keep their verdict until then. */
    if (q->ep == EP_NOT_FOUND) {
        q->bad_status = 404;
        q->bad_message = "not found";
    } else if (routes[q->ep].post ? !is_post : !is_get) {
        q->bad_status = 405;
        q->bad_message = "method not allowed";
    }
    if (q->bad_status || !is_post) return MHD_YES;

    q->body_max = q->ep == EP_INFER ? s->opts.max_request_bytes : MAX_ADMIN_BODY;
    int64_t clen = header_int(q->conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (clen >= 0 && (uint64_t)clen > q->body_max) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "request body of %" PRId64 " bytes is larger than the limit "
                 "of %zu bytes",
                 clen, q->body_max);
        return send_message(q, 413, msg);
    }
    if (q->ep == EP_INFER) {
        q->header_len = header_int(q->conn, "Inference-Header-Content-Length");
        if (q->header_len == -2) {
            q->bad_status = 400;
            q->bad_message = "Inference-Header-Content-Length is not a number";
            return MHD_YES;
        }
    }
    /* Small bodies get their whole buffer now; large ones grow as bytes arrive, so a client
     * announcing a large body it never sends holds little memory. */
    if (clen > 0) {
        size_t first = (uint64_t)clen < 65536 ? (size_t)clen : 65536;
        q->body = malloc(first + 1);
        if (!q->body) return send_message(q, 503, "out of memory");
        q->body_cap = first;
    }
    return MHD_YES;
}

static bool append_body(srv_request *q, const char *data, size_t n)
{
    if (n > q->body_max - q->body_len) return false;
    if (q->body_len + n > q->body_cap) {
        size_t cap = q->body_cap ? q->body_cap : 4096;
        while (cap < q->body_len + n) cap = cap > q->body_max / 2 ? q->body_max : cap * 2;
        char *b = realloc(q->body, cap + 1);
        if (!b) return false;
        q->body = b;
        q->body_cap = cap;
    }
    memcpy(q->body + q->body_len, data, n);
    q->body_len += n;
    return true;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *http_version,
                               const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)http_version;
    srv_server *s = cls;
    srv_request *q = *con_cls;
    if (!q) {
        q = request_new(s, conn, url, method);
        if (!q) return MHD_NO;
        *con_cls = q;
        return begin(q, url, method);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (q->status || q->bad_status) return MHD_YES; /* answered or refused: discard */
        atomic_fetch_add_explicit(&s->bytes_in, n, memory_order_relaxed);
        /* A body without Content-Length (chunked) that outgrows the limit: the reply cannot be
         * queued mid-upload, so the connection is closed. */
        if (!append_body(q, upload_data, n)) return MHD_NO;
        return MHD_YES;
    }
    if (q->status) return MHD_YES;
    int phase = atomic_load(&q->phase);
    if (phase == PHASE_DONE) {
        if (q->ep == EP_INFER) return finish_infer(q);
        return send_reply(q, &q->admin_reply);
    }
    if (phase != PHASE_NONE) return MHD_YES; /* still running: cannot happen while suspended */
    if (q->bad_status) return send_message(q, q->bad_status, q->bad_message);
    if (q->body) q->body[q->body_len] = 0;
    return dispatch(q);
}

static void access_log(srv_request *q, enum MHD_RequestTerminationCode toe)
{
    srv_buf b = {.max = 16384};
    srv_log_begin(&b, q->status >= 500 || !q->status ? "warn" : "info", "request");
    srv_log_str(&b, "method", q->method);
    srv_log_str(&b, "path", q->path);
    srv_log_str(&b, "endpoint", routes[q->ep].name);
    srv_log_int(&b, "status", q->status);
    if (q->model[0]) srv_log_str(&b, "model", q->model);
    if (q->model_version >= 0) srv_log_int(&b, "version", q->model_version);
    if (q->req.id) srv_log_str(&b, "request_id", q->req.id);
    if (q->trace_id[0]) {
        srv_log_str(&b, "trace_id", q->trace_id);
        srv_log_str(&b, "span_id", q->span_id);
    }
    srv_log_ms(&b, "total_ms", srv_now_ns() - q->t_start);
    if (q->ep == EP_INFER && q->timing.total_ns) {
        srv_log_ms(&b, "queue_ms", q->timing.queue_ns);
        srv_log_ms(&b, "compute_ms", q->timing.compute_ns);
        srv_log_int(&b, "batch", q->timing.batch_size);
    }
    srv_log_int(&b, "bytes_in", (int64_t)q->body_len);
    srv_log_int(&b, "bytes_out", (int64_t)q->bytes_out);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(q->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        char addr[INET6_ADDRSTRLEN] = "";
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
        if (addr[0]) srv_log_str(&b, "remote", addr);
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        const char *why = toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED   ? "timeout"
                          : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT    ? "client closed"
                          : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "shutdown"
                                                                          : "connection error";
        srv_log_str(&b, "error", why);
    }
    srv_log_end(&b);
    srv_buf_free(&b);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    srv_server *s = cls;
    srv_request *q = *con_cls;
    if (!q) return;
    *con_cls = NULL;
    if (s->opts.access_log) access_log(q, toe);
    rt_request_free(q->rt_req);
    rt_model_release(q->model_ref);
    srv_arena_release(&q->arena);
    free(q->body);
    free(q->admin_reply.body);
    free(q);
    atomic_fetch_sub_explicit(&s->active, 1, memory_order_release);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = 0;
    srv_log_event("warn", "http_library", msg);
}

/* ---------------------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------------------- */

void srv_options_default(srv_options *o)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = 8000;
    o->threads = 0;
    o->max_request_bytes = (size_t)64 << 20;
    o->connection_timeout_s = 60;
    o->max_connections = 1024;
    o->drain_timeout_s = 30;
    o->access_log = true;
    o->runtime.control_mode = RT_CONTROL_NONE;
}

static ferry_status *resolve(const char *host, int port, struct sockaddr_storage *ss,
                             socklen_t *len)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int err = getaddrinfo(host, portstr, &hints, &res);
    if (err || !res)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "cannot resolve host '%s': %s", host,
                          gai_strerror(err));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return NULL;
}

static void format_address(const struct sockaddr_storage *ss, int port, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host, sizeof(host));
        snprintf(buf, size, "[%s]:%d", host, port);
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
        snprintf(buf, size, "%s:%d", host, port);
    }
}

static int cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
}

static void log_start(srv_server *s, int port, int threads)
{
    srv_buf b = {.max = 16384};
    srv_log_begin(&b, "info", "start");
    srv_log_str(&b, "address", s->address);
    srv_log_int(&b, "port", port);
    srv_log_str(&b, "version", FERRY_VERSION);
    srv_log_str(&b, "repository", s->opts.runtime.repository);
    static const char *const modes[] = {"none", "poll", "explicit"};
    srv_log_str(&b, "model_control_mode", modes[s->opts.runtime.control_mode % 3]);
    srv_log_int(&b, "http_threads", threads);
    srv_log_int(&b, "max_request_bytes", (int64_t)s->opts.max_request_bytes);
    srv_log_end(&b);
    srv_buf_free(&b);
}

/* Waits until no HTTP request is in flight, for at most TIMEOUT_S seconds. */
static bool wait_idle(srv_server *s, unsigned timeout_s)
{
    uint64_t deadline = srv_now_ns() + (uint64_t)timeout_s * 1000000000u;
    while (atomic_load(&s->active) > 0 || atomic_load(&s->admin_threads) > 0) {
        if (srv_now_ns() > deadline) return false;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(signal_pipe[1], &b, 1) < 0) {
        /* The pipe is full: a signal is already waiting to be read. */
    }
    errno = saved;
}

ferry_status *srv_run(const srv_options *opts)
{
    ferry_status *st = NULL;
    srv_server *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->opts = *opts;
    s->start_ms = srv_wall_ms();
    pthread_mutex_init(&s->refused_lock, NULL);

    /* SIGTERM and SIGINT only write a byte to a pipe that this thread reads. The threads
     * started below inherit a mask that blocks them, so the handler normally runs here; but
     * a thread we did not start (a sanitizer's) may take the signal too, and then the handler
     * still turns it into a byte instead of the default action, which would kill the process
     * with requests in flight. */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (pipe(signal_pipe) != 0) {
        free(s);
        return core_error(FERRY_ERR_IO, "cannot create a pipe: %s", strerror(errno));
    }
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_storage ss;
    socklen_t sslen;
    if ((st = resolve(opts->host, opts->port, &ss, &sslen))) goto out;
    if ((st = rt_runtime_create(&opts->runtime, &s->rt))) goto out;

    int threads = opts->threads > 0 ? opts->threads : cpu_count();
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)opts->port, NULL, NULL, handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
        s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)threads, MHD_OPTION_CONNECTION_TIMEOUT, opts->connection_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, opts->max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONNECTION_MEMORY, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        char where[128];
        format_address(&ss, opts->port, where, sizeof(where));
        st =
            core_error(FERRY_ERR_IO, "cannot listen on %s (address in use, or not allowed)", where);
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : opts->port;
    format_address(&ss, port, s->address, sizeof(s->address));
    log_start(s, port, threads);
    /* Access log lines go out in batches: one write(2) per line would cost more than the
     * rest of a small request's work. */
    if (opts->access_log) srv_log_buffered_start();

    pthread_sigmask(SIG_SETMASK, &old, NULL);
    unsigned char sig = 0;
    while (read(signal_pipe[0], &sig, 1) != 1 && errno == EINTR) {
    }
    char msg[64];
    snprintf(msg, sizeof(msg), "%s: finishing in-flight requests",
             sig == SIGINT ? "SIGINT" : "SIGTERM");
    srv_log_event("info", "draining", msg);

    /* 1. No new connections; replies now carry Connection: close. */
    atomic_store(&s->draining, true);
    /* The listening socket is ours to close, but only once the HTTP threads are gone (they
     * drop it from their epoll sets with a delay, and its number must not be reused before).
     * shutdown() stops the listening now: new connections are refused instead of waiting in
     * the kernel's backlog for an accept that never comes. */
    MHD_socket lsock = MHD_quiesce_daemon(s->daemon);
    if (lsock != MHD_INVALID_SOCKET) shutdown(lsock, SHUT_RDWR);
    /* 2. Requests already in flight finish (keep-alive clients get one more answer each). */
    bool idle = wait_idle(s, opts->drain_timeout_s);
    /* 3. The runtime completes whatever is still queued, which resumes those connections. */
    rt_runtime_shutdown(s->rt);
    if (!idle) wait_idle(s, 5);
    /* A load or unload still running resumes its connection when it ends: the HTTP threads
     * must outlive it. Loads end (the runtime refuses new ones now), so this wait does too. */
    while (atomic_load(&s->admin_threads) > 0) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    if (lsock != MHD_INVALID_SOCKET) close(lsock);
    srv_log_buffered_stop();
    srv_log_event("info", "stop", idle ? "all requests finished" : "drain timeout passed");
out:
    if (s->daemon) MHD_stop_daemon(s->daemon);
    srv_log_buffered_stop();
    rt_runtime_destroy(s->rt);
    pthread_mutex_destroy(&s->refused_lock);
    free(s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    close(signal_pipe[0]);
    close(signal_pipe[1]);
    return st;
}
