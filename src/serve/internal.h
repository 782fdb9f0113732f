/* internal.h - what the serving layer's files share: the server object, its HTTP counters and
 * the reply type the endpoints produce. Never included outside src/serve/. */
#ifndef SERVE_INTERNAL_H
#define SERVE_INTERNAL_H

#include "serve/buf.h"
#include "serve/serve.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* HTTP status codes counted in ferry_http_requests_total; the rest count as "other". */
enum {
    SRV_CODE_200,
    SRV_CODE_400,
    SRV_CODE_404,
    SRV_CODE_405,
    SRV_CODE_413,
    SRV_CODE_500,
    SRV_CODE_501,
    SRV_CODE_503,
    SRV_CODE_OTHER,
    SRV_CODE_COUNT
};

/* Requests refused by the front end (before the runtime saw them) per model version, so that
 * ferry_inference_requests_total{outcome="invalid"} counts every bad request for a model. */
#define SRV_MAX_REFUSED 1024
typedef struct srv_refused {
    char name[RT_MAX_NAME + 1];
    int64_t version;
    _Atomic uint64_t count;
} srv_refused;

typedef struct srv_server {
    srv_options opts;
    rt_runtime *rt;
    struct MHD_Daemon *daemon;
    char address[96]; /* "127.0.0.1:8000" */
    uint64_t start_ms;

    atomic_bool draining;      /* SIGTERM seen: replies say Connection: close */
    _Atomic int64_t active;    /* HTTP requests begun and not yet completed */
    _Atomic int admin_threads; /* load/unload threads running */

    _Atomic uint64_t codes[SRV_CODE_COUNT];
    _Atomic uint64_t bytes_in, bytes_out;

    pthread_mutex_t refused_lock;
    size_t n_refused;
    srv_refused refused[SRV_MAX_REFUSED];
} srv_server;

/* A reply body built by an endpoint. */
typedef struct srv_reply {
    int status;
    char *body; /* malloc'd, owned by the reply (NULL: empty body) */
    size_t len;
    const char *content_type; /* NULL: application/json */
} srv_reply;

/* Fills R from an error (taking ownership of ST): {"error": message} and the mapped status. */
void srv_reply_error(srv_reply *r, ferry_status *st);
/* Fills R with STATUS and {"error": MESSAGE}. */
void srv_reply_message(srv_reply *r, int status, const char *message);

/* Endpoints (endpoints.c). MODEL and VERSION were validated by the router; VERSION may be "". */
void srv_ep_server_metadata(srv_server *s, srv_reply *r);
bool srv_server_ready(srv_server *s);
void srv_ep_model_metadata(srv_server *s, const char *model, const char *version, srv_reply *r);
void srv_ep_model_ready(srv_server *s, const char *model, const char *version, srv_reply *r);
void srv_ep_model_config(srv_server *s, const char *model, const char *version, srv_reply *r);
/* MODEL NULL: every model. */
void srv_ep_model_stats(srv_server *s, const char *model, const char *version, srv_reply *r);
void srv_ep_repository_index(srv_server *s, const char *body, size_t len, srv_reply *r);
/* Runs on a helper thread: loading can take seconds and must not hold an HTTP thread. */
void srv_ep_repository_load(srv_server *s, const char *model, bool load, const char *body,
                            size_t len, srv_reply *r);

/* Prometheus text exposition (metrics.c). */
void srv_ep_metrics(srv_server *s, srv_reply *r);
/* Counts a request for MODEL/VERSION that the front end refused as invalid. */
void srv_count_refused(srv_server *s, const char *model, int64_t version);

#endif
