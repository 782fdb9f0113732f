/* serve.h - `ferry serve`: the KServe v2 HTTP server over the runtime.
 *
 * The command line fills an srv_options and calls srv_run(), which owns the process until
 * SIGTERM or SIGINT: it opens the model repository (runtime), starts the HTTP threads
 * (libmicrohttpd's thread pool), logs one JSON "start" line with the bound address, and on the
 * signal stops accepting connections, lets in-flight requests finish, and returns.
 */
#ifndef SERVE_SERVE_H
#define SERVE_SERVE_H

#include "ferry.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_options {
    const char *host;              /* address to bind: "127.0.0.1" (default), "0.0.0.0", "::" */
    int port;                      /* 0: any free port (the start line says which) */
    int threads;                   /* HTTP threads; 0: one per CPU */
    size_t max_request_bytes;      /* largest inference body; larger gets 413 */
    unsigned connection_timeout_s; /* idle connections (keep-alive, slow headers) are closed */
    unsigned max_connections;      /* concurrent connections; more are refused */
    unsigned drain_timeout_s;      /* on SIGTERM, how long in-flight requests may take */
    bool access_log;               /* one JSON line per request on stderr */
    rt_options runtime;            /* repository, control mode, instances ... */
} srv_options;

/* Defaults for every field but runtime.repository. */
void srv_options_default(srv_options *opts);

/* Runs the server until SIGTERM or SIGINT (blocked in the calling thread and every thread it
 * starts, then waited for). Returns NULL after a clean shutdown, or the error that kept the
 * server from starting (repository unreadable, address in use ...), which the caller owns. */
ferry_status *srv_run(const srv_options *opts);

/* The HTTP status for a ferry code: the one table the server uses (400 bad request, 404 unknown
 * model or version, 503 unavailable, 500 internal ...). */
int srv_http_status(ferry_code code);

#endif
