/* cmd_serve.c - `ferry serve`: the KServe v2 HTTP server on a model repository.
 *
 * Every flag has an environment twin (FERRY_<FLAG>), so a container needs no config file: the
 * environment is read first, then the command line, which wins.
 *
 * FERRY_HAVE_SERVE comes with the ferry_serve library (src/serve/CMakeLists.txt); a build that
 * does not link it (the engine-only edge build) gets a `ferry serve` that explains the server
 * is not built in.
 */
#include "cli/cli.h"

#ifndef FERRY_HAVE_SERVE
int cli_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail("this ferry was built without the HTTP server (ferry_serve)");
}
#else
#include "serve/serve.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LOAD_MODELS 1024

static const char serve_usage[] =
    "usage: ferry serve --model-repository DIR [options]\n"
    "\n"
    "Serves the models of a Triton-style repository (DIR/<model>/<version>/model.onnx, optional\n"
    "DIR/<model>/config.pbtxt) over HTTP with the KServe v2 protocol. Every option has an\n"
    "environment variable twin; the command line wins.\n"
    "\n"
    "  --model-repository DIR        FERRY_MODEL_REPOSITORY     the repository (required)\n"
    "  --host ADDR                   FERRY_HOST                 address to bind [127.0.0.1]\n"
    "  --http-port N                 FERRY_HTTP_PORT            port; 0 picks a free one [8000]\n"
    "  --model-control-mode MODE     FERRY_MODEL_CONTROL_MODE   none | poll | explicit [none]\n"
    "  --repository-poll-secs N      FERRY_REPOSITORY_POLL_SECS rescan interval in poll mode [15]\n"
    "  --load-model NAME             FERRY_LOAD_MODEL           explicit mode: load at start\n"
    "                                                           (repeatable; env: comma list;\n"
    "                                                           '*' loads every model)\n"
    "  --threads N                   FERRY_THREADS              HTTP threads [one per CPU]\n"
    "  --instances N                 FERRY_INSTANCES            instances per model version when\n"
    "                                                           config.pbtxt sets none [1]\n"
    "  --queue-capacity N            FERRY_QUEUE_CAPACITY       queued requests per version\n"
    "                                                           before 503 [1024]\n"
    "  --max-batch-size N            FERRY_MAX_BATCH_SIZE       dynamic batching limit for models\n"
    "                                                           without config.pbtxt; 0 = off [4]\n"
    "  --request-timeout-ms N        FERRY_REQUEST_TIMEOUT_MS   queue deadline; 0 = none [0]\n"
    "  --max-request-bytes N         FERRY_MAX_REQUEST_BYTES    largest inference body; K, M, G\n"
    "                                                           suffixes [64M]\n"
    "  --connection-timeout-secs N   FERRY_CONNECTION_TIMEOUT_SECS  idle connection timeout [60]\n"
    "  --max-connections N           FERRY_MAX_CONNECTIONS      concurrent connections [1024]\n"
    "  --drain-timeout-secs N        FERRY_DRAIN_TIMEOUT_SECS   time in-flight requests get on\n"
    "                                                           SIGTERM [30]\n"
    "  --access-log on|off           FERRY_ACCESS_LOG           JSON line per request [on]\n"
    "  --log-level LEVEL             FERRY_LOG_LEVEL            debug|info|warn|error [info]\n"
    "\n"
    "Logs are JSON lines on stderr; the first says where the server listens. SIGTERM or SIGINT\n"
    "stops accepting connections, finishes in-flight requests and exits 0.\n";

typedef struct serve_args {
    srv_options o;
    const char *models[MAX_LOAD_MODELS];
    size_t n_models;
    char *env_models; /* a writable copy of FERRY_LOAD_MODEL, split in place */
    bool models_from_flags;
} serve_args;

/* Parses a whole decimal number with an optional K/M/G suffix (powers of 1024) within
 * [MIN, MAX]. */
static bool parse_num(const char *s, bool suffix, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+') return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    uint64_t mult = 1;
    if (suffix && *end) {
        switch (*end) {
        case 'k':
        case 'K':
            mult = 1ull << 10;
            break;
        case 'm':
        case 'M':
            mult = 1ull << 20;
            break;
        case 'g':
        case 'G':
            mult = 1ull << 30;
            break;
        default:
            return false;
        }
        end++;
    }
    if (*end) return false;
    if (v > UINT64_MAX / mult) return false;
    v *= mult;
    if (v < min || v > max) return false;
    *out = v;
    return true;
}

/* Applies one setting; WHERE names its source ("--threads" or "FERRY_THREADS") in errors.
 * Returns CLI_EXIT_OK or a usage error. */
static int apply(serve_args *a, const char *flag, const char *where, const char *val, bool from_env)
{
    srv_options *o = &a->o;
    uint64_t n;
    if (!strcmp(flag, "model-repository")) {
        if (!*val) return cli_usage_error("%s needs a directory", where);
        o->runtime.repository = val;
    } else if (!strcmp(flag, "host")) {
        if (!*val) return cli_usage_error("%s needs an address", where);
        o->host = val;
    } else if (!strcmp(flag, "http-port")) {
        if (!parse_num(val, false, 0, 65535, &n))
            return cli_usage_error("%s must be a port number 0-65535, got '%s'", where, val);
        o->port = (int)n;
    } else if (!strcmp(flag, "model-control-mode")) {
        if (!strcmp(val, "none"))
            o->runtime.control_mode = RT_CONTROL_NONE;
        else if (!strcmp(val, "poll"))
            o->runtime.control_mode = RT_CONTROL_POLL;
        else if (!strcmp(val, "explicit"))
            o->runtime.control_mode = RT_CONTROL_EXPLICIT;
        else
            return cli_usage_error("%s must be none, poll or explicit, got '%s'", where, val);
    } else if (!strcmp(flag, "repository-poll-secs")) {
        if (!parse_num(val, false, 1, 86400, &n))
            return cli_usage_error("%s must be 1-86400 seconds, got '%s'", where, val);
        o->runtime.poll_interval_ms = (uint32_t)(n * 1000);
    } else if (!strcmp(flag, "load-model")) {
        if (from_env) {
            free(a->env_models);
            a->env_models = strdup(val);
            if (!a->env_models) return cli_fail("out of memory");
            a->n_models = 0;
            for (char *save = NULL, *t = strtok_r(a->env_models, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                while (*t == ' ') t++;
                if (!*t) continue;
                if (a->n_models >= MAX_LOAD_MODELS) return cli_usage_error("%s: too many", where);
                a->models[a->n_models++] = t;
            }
        } else {
            /* Flags replace the environment's list rather than adding to it. */
            if (!a->models_from_flags) a->n_models = 0;
            a->models_from_flags = true;
            if (!*val) return cli_usage_error("%s needs a model name", where);
            if (a->n_models >= MAX_LOAD_MODELS) return cli_usage_error("%s: too many", where);
            a->models[a->n_models++] = val;
        }
    } else if (!strcmp(flag, "threads")) {
        if (!parse_num(val, false, 1, 256, &n))
            return cli_usage_error("%s must be 1-256, got '%s'", where, val);
        o->threads = (int)n;
    } else if (!strcmp(flag, "instances")) {
        if (!parse_num(val, false, 1, RT_MAX_INSTANCES, &n))
            return cli_usage_error("%s must be 1-%d, got '%s'", where, RT_MAX_INSTANCES, val);
        o->runtime.default_instances = (int)n;
    } else if (!strcmp(flag, "queue-capacity")) {
        if (!parse_num(val, false, 1, RT_MAX_QUEUE, &n))
            return cli_usage_error("%s must be 1-%d, got '%s'", where, RT_MAX_QUEUE, val);
        o->runtime.default_queue_capacity = (uint32_t)n;
    } else if (!strcmp(flag, "max-batch-size")) {
        if (!parse_num(val, false, 0, RT_MAX_BATCH, &n))
            return cli_usage_error("%s must be 0-%d, got '%s'", where, RT_MAX_BATCH, val);
        o->runtime.default_max_batch = n ? (int32_t)n : -1; /* the runtime's "no batching" */
    } else if (!strcmp(flag, "request-timeout-ms")) {
        if (!parse_num(val, false, 0, 86400000, &n))
            return cli_usage_error("%s must be 0-86400000, got '%s'", where, val);
        o->runtime.default_timeout_us = n * 1000;
    } else if (!strcmp(flag, "max-request-bytes")) {
        if (!parse_num(val, true, 1024, (uint64_t)2 << 30, &n))
            return cli_usage_error("%s must be 1K-2G bytes, got '%s'", where, val);
        o->max_request_bytes = (size_t)n;
    } else if (!strcmp(flag, "connection-timeout-secs")) {
        if (!parse_num(val, false, 1, 86400, &n))
            return cli_usage_error("%s must be 1-86400 seconds, got '%s'", where, val);
        o->connection_timeout_s = (unsigned)n;
    } else if (!strcmp(flag, "max-connections")) {
        if (!parse_num(val, false, 1, 1000000, &n))
            return cli_usage_error("%s must be 1-1000000, got '%s'", where, val);
        o->max_connections = (unsigned)n;
    } else if (!strcmp(flag, "drain-timeout-secs")) {
        if (!parse_num(val, false, 0, 86400, &n))
            return cli_usage_error("%s must be 0-86400 seconds, got '%s'", where, val);
        o->drain_timeout_s = (unsigned)n;
    } else if (!strcmp(flag, "access-log")) {
        if (!strcmp(val, "on") || !strcmp(val, "1") || !strcmp(val, "true"))
            o->access_log = true;
        else if (!strcmp(val, "off") || !strcmp(val, "0") || !strcmp(val, "false"))
            o->access_log = false;
        else
            return cli_usage_error("%s must be on or off, got '%s'", where, val);
    } else if (!strcmp(flag, "log-level")) {
        if (!strcmp(val, "debug"))
            o->runtime.log_level = RT_LOG_DEBUG;
        else if (!strcmp(val, "info"))
            o->runtime.log_level = RT_LOG_INFO;
        else if (!strcmp(val, "warn"))
            o->runtime.log_level = RT_LOG_WARN;
        else if (!strcmp(val, "error"))
            o->runtime.log_level = RT_LOG_ERROR;
        else
            return cli_usage_error("%s must be debug, info, warn or error, got '%s'", where, val);
    } else {
        return cli_usage_error("unknown option '--%s' for serve", flag);
    }
    return CLI_EXIT_OK;
}

static const char *const flags[] = {
    "model-repository",
    "host",
    "http-port",
    "model-control-mode",
    "repository-poll-secs",
    "load-model",
    "threads",
    "instances",
    "queue-capacity",
    "max-batch-size",
    "request-timeout-ms",
    "max-request-bytes",
    "connection-timeout-secs",
    "max-connections",
    "drain-timeout-secs",
    "access-log",
    "log-level",
};

/* FERRY_ + the flag in upper case with '_' for '-'. */
static void env_name(const char *flag, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "FERRY_");
    for (const char *p = flag; *p && n + 1 < size; p++)
        buf[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    buf[n] = 0;
}

static int parse_args(int argc, char **argv, serve_args *a)
{
    srv_options_default(&a->o);
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        char env[64];
        env_name(flags[i], env, sizeof(env));
        const char *v = getenv(env);
        if (!v) continue;
        int rc = apply(a, flags[i], env, v, true);
        if (rc) return rc;
    }
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            fputs(serve_usage, stdout);
            return -1;
        }
        if (strncmp(s, "--", 2) || !s[2]) return cli_usage_error("unexpected argument '%s'", s);
        char flag[64];
        const char *eq = strchr(s, '=');
        size_t len = eq ? (size_t)(eq - s - 2) : strlen(s + 2);
        if (len >= sizeof(flag)) return cli_usage_error("unknown option '%s' for serve", s);
        memcpy(flag, s + 2, len);
        flag[len] = 0;
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) return cli_usage_error("%s needs a value", s);
            val = argv[++i];
        }
        char where[80];
        snprintf(where, sizeof(where), "--%s", flag);
        int rc = apply(a, flag, where, val, false);
        if (rc) return rc;
    }
    if (!a->o.runtime.repository)
        return cli_usage_error("serve needs --model-repository DIR (or FERRY_MODEL_REPOSITORY)");
    a->o.runtime.start_models = a->models;
    a->o.runtime.start_model_count = a->n_models;
    if (a->n_models && a->o.runtime.control_mode != RT_CONTROL_EXPLICIT)
        return cli_usage_error("--load-model needs --model-control-mode explicit");
    return CLI_EXIT_OK;
}

int cli_serve(int argc, char **argv)
{
    serve_args *a = calloc(1, sizeof(*a));
    if (!a) return cli_fail("out of memory");
    int rc = parse_args(argc, argv, a);
    if (rc) goto out;
    ferry_status *st = srv_run(&a->o);
    if (st) rc = cli_fail_status(st);
out:
    if (rc < 0) rc = CLI_EXIT_OK; /* --help */
    free(a->env_models);
    free(a);
    return rc;
}
#endif /* FERRY_HAVE_SERVE */
