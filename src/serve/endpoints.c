/* endpoints.c - the JSON endpoints other than inference: server and model metadata, readiness,
 * model configuration (Triton's JSON form), statistics (Triton's statistics extension) and the
 * model repository extension (index, load, unload).
 *
 * These are not on the hot path, so they build their replies with jansson; inference requests
 * and responses have their own codec (codec.h).
 */
#include "serve/internal.h"

#include "serve/codec.h"
#include "core/status.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The extensions Ferry implements, as Triton names them in server metadata. */
static const char *const extensions[] = {
    "binary_tensor_data", "model_repository", "model_configuration",
    "statistics",         "parameters",       "schedule_policy",
};

static const struct {
    ferry_code code;
    int http;
} status_table[] = {
    {FERRY_OK, 200},
    {FERRY_ERR_INVALID_ARGUMENT, 400},
    {FERRY_ERR_INVALID_MODEL, 400},
    /* Triton answers 501 for unsupported features, but a request using one (BYTES tensors,
     * shared memory) is a request this server cannot take: the client must change it. */
    {FERRY_ERR_UNSUPPORTED, 400},
    {FERRY_ERR_NOT_FOUND, 404},
    {FERRY_ERR_IO, 500},
    {FERRY_ERR_NO_MEMORY, 500},
    {FERRY_ERR_RUNTIME, 500},
    {FERRY_ERR_INTERNAL, 500},
    {FERRY_ERR_UNAVAILABLE, 503},
    /* Expired in the queue: the server is overloaded, the client may retry (Retry-After). */
    {FERRY_ERR_TIMEOUT, 503},
};
_Static_assert(sizeof(status_table) / sizeof(status_table[0]) == FERRY_CODE_COUNT,
               "every ferry_code has an HTTP status");

int srv_http_status(ferry_code code)
{
    for (size_t i = 0; i < sizeof(status_table) / sizeof(status_table[0]); i++)
        if (status_table[i].code == code) return status_table[i].http;
    return 500;
}

void srv_reply_message(srv_reply *r, int status, const char *message)
{
    srv_buf b = {0};
    srv_encode_error(&b, message);
    r->status = status;
    r->content_type = NULL;
    r->body = srv_buf_steal(&b, &r->len);
}

void srv_reply_error(srv_reply *r, ferry_status *st)
{
    srv_reply_message(r, srv_http_status(ferry_status_code(st)), ferry_status_message(st));
    ferry_status_free(st);
}

/* Takes ownership of J. */
static void reply_json(srv_reply *r, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        srv_reply_message(r, 500, "out of memory");
        return;
    }
    r->status = status;
    r->body = text;
    r->len = strlen(text);
    r->content_type = NULL;
}

static void reply_empty(srv_reply *r, int status)
{
    r->status = status;
    r->body = NULL;
    r->len = 0;
    r->content_type = "text/plain";
}

static json_t *version_string(int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_string(buf);
}

void srv_ep_server_metadata(srv_server *s, srv_reply *r)
{
    (void)s;
    json_t *ext = json_array();
    for (size_t i = 0; i < sizeof(extensions) / sizeof(extensions[0]); i++)
        json_array_append_new(ext, json_string(extensions[i]));
    reply_json(
        r, 200,
        json_pack("{s:s, s:s, s:o}", "name", "ferry", "version", FERRY_VERSION, "extensions", ext));
}

bool srv_server_ready(srv_server *s)
{
    if (atomic_load(&s->draining) || !rt_runtime_live(s->rt)) return false;
    /* Ready when nothing is still loading and, unless models are loaded on request only, every
     * model found in the repository serves at least one version. */
    rt_index_entry *rows = NULL;
    size_t n = 0;
    ferry_status *st = rt_runtime_index(s->rt, false, &rows, &n);
    if (st) {
        ferry_status_free(st);
        return false;
    }
    bool ready = true;
    bool explicit_mode = s->opts.runtime.control_mode == RT_CONTROL_EXPLICIT;
    /* Rows come sorted by name: one pass over each model's rows. */
    for (size_t i = 0; i < n && ready;) {
        bool any = false;
        size_t k = i;
        for (; k < n && !strcmp(rows[k].name, rows[i].name); k++) {
            if (rows[k].state == RT_STATE_LOADING) ready = false;
            if (rows[k].state == RT_STATE_READY) any = true;
        }
        if (!any && !explicit_mode) ready = false;
        i = k;
    }
    free(rows);
    return ready;
}

/* A shape as a request sends it: the batch dimension (-1) first when the model batches. */
static json_t *request_shape(const rt_model_config *cfg, const rt_tensor_config *t)
{
    json_t *a = json_array();
    if (cfg->max_batch_size > 0) json_array_append_new(a, json_integer(-1));
    for (int i = 0; i < t->rank; i++) json_array_append_new(a, json_integer(t->dims[i]));
    return a;
}

static json_t *tensor_metadata(const rt_model_config *cfg, const rt_tensor_config *t, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *wire = srv_dtype_wire_name(t[i].dtype);
        json_array_append_new(a, json_pack("{s:s, s:s, s:o}", "name", t[i].name, "datatype",
                                           wire ? wire : "INVALID", "shape",
                                           request_shape(cfg, &t[i])));
    }
    return a;
}

void srv_ep_model_metadata(srv_server *s, const char *model, const char *version, srv_reply *r)
{
    rt_model *m;
    ferry_status *st = rt_model_acquire(s->rt, model, version, &m);
    if (st) {
        srv_reply_error(r, st);
        return;
    }
    const rt_model_config *cfg = rt_model_get_config(m);
    json_t *versions = json_array();
    int64_t v[RT_MAX_VERSIONS];
    size_t nv = rt_model_ready_versions(s->rt, model, v, RT_MAX_VERSIONS);
    /* Every ready version, whichever one the URL named, as Triton answers. */
    for (size_t i = 0; i < nv && i < RT_MAX_VERSIONS; i++)
        json_array_append_new(versions, version_string(v[i]));
    json_t *j = json_pack("{s:s, s:o, s:s, s:o, s:o}", "name", rt_model_name(m), "versions",
                          versions, "platform", rt_model_platform(m), "inputs",
                          tensor_metadata(cfg, cfg->inputs, cfg->input_count), "outputs",
                          tensor_metadata(cfg, cfg->outputs, cfg->output_count));
    rt_model_release(m);
    reply_json(r, 200, j);
}

void srv_ep_model_ready(srv_server *s, const char *model, const char *version, srv_reply *r)
{
    rt_model *m;
    ferry_status *st = rt_model_acquire(s->rt, model, version, &m);
    if (!st) {
        rt_model_release(m);
        reply_empty(r, 200);
        return;
    }
    /* A model that exists but is not ready is a "false" answer, which Triton gives as 400;
     * an unknown model stays 404. */
    ferry_code code = ferry_status_code(st);
    srv_reply_message(r, code == FERRY_ERR_NOT_FOUND ? 404 : 400, ferry_status_message(st));
    ferry_status_free(st);
}

static json_t *dims_array(const int64_t *dims, int rank)
{
    json_t *a = json_array();
    for (int i = 0; i < rank; i++) json_array_append_new(a, json_integer(dims[i]));
    return a;
}

static const char *format_name(rt_tensor_format f)
{
    switch (f) {
    case RT_FORMAT_NHWC:
        return "FORMAT_NHWC";
    case RT_FORMAT_NCHW:
        return "FORMAT_NCHW";
    default:
        return "FORMAT_NONE";
    }
}

/* Triton's JSON form of ModelConfig: proto field names, enums as strings, defaults filled in. */
static json_t *config_json(const rt_model_config *c)
{
    json_t *policy;
    switch (c->version_policy.kind) {
    case RT_POLICY_ALL:
        policy = json_pack("{s:{}}", "all");
        break;
    case RT_POLICY_SPECIFIC: {
        json_t *v = json_array();
        for (size_t i = 0; i < c->version_policy.version_count; i++)
            json_array_append_new(v, json_integer(c->version_policy.versions[i]));
        policy = json_pack("{s:{s:o}}", "specific", "versions", v);
        break;
    }
    default:
        policy = json_pack("{s:{s:I}}", "latest", "num_versions",
                           (json_int_t)c->version_policy.num_versions);
    }
    json_t *inputs = json_array();
    for (size_t i = 0; i < c->input_count; i++) {
        const rt_tensor_config *t = &c->inputs[i];
        json_t *in =
            json_pack("{s:s, s:s, s:s, s:o, s:b, s:b, s:b}", "name", t->name, "data_type",
                      rt_dtype_config_name(t->dtype), "format", format_name(t->format), "dims",
                      dims_array(t->dims, t->rank), "is_shape_tensor", t->is_shape_tensor,
                      "allow_ragged_batch", t->allow_ragged_batch, "optional", t->optional);
        if (t->has_reshape)
            json_object_set_new(
                in, "reshape",
                json_pack("{s:o}", "shape", dims_array(t->reshape, t->reshape_rank)));
        json_array_append_new(inputs, in);
    }
    json_t *outputs = json_array();
    for (size_t i = 0; i < c->output_count; i++) {
        const rt_tensor_config *t = &c->outputs[i];
        json_t *out = json_pack(
            "{s:s, s:s, s:o, s:s, s:b}", "name", t->name, "data_type",
            rt_dtype_config_name(t->dtype), "dims", dims_array(t->dims, t->rank), "label_filename",
            t->label_filename ? t->label_filename : "", "is_shape_tensor", t->is_shape_tensor);
        if (t->has_reshape)
            json_object_set_new(
                out, "reshape",
                json_pack("{s:o}", "shape", dims_array(t->reshape, t->reshape_rank)));
        json_array_append_new(outputs, out);
    }
    json_t *groups = json_array();
    for (size_t i = 0; i < c->instance_group_count; i++) {
        const rt_instance_group *g = &c->instance_groups[i];
        char name[RT_MAX_NAME + 32];
        if (g->name && g->name[0])
            snprintf(name, sizeof(name), "%s", g->name);
        else
            snprintf(name, sizeof(name), "%s_%zu", c->name, i);
        json_array_append_new(groups,
                              json_pack("{s:s, s:s, s:i, s:[], s:b}", "name", name, "kind",
                                        "KIND_CPU", "count", (int)g->count, "gpus", "passive", 0));
    }
    if (c->instance_group_count == 0) {
        char name[RT_MAX_NAME + 32];
        snprintf(name, sizeof(name), "%s_0", c->name);
        json_array_append_new(groups, json_pack("{s:s, s:s, s:i, s:[], s:b}", "name", name, "kind",
                                                "KIND_CPU", "count", c->instance_count, "gpus",
                                                "passive", 0));
    }
    json_t *params = json_object();
    for (size_t i = 0; i < c->parameter_count; i++)
        json_object_set_new(params, c->parameters[i].key,
                            json_pack("{s:s}", "string_value", c->parameters[i].value));
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:o, s:i, s:o, s:o, s:[], s:[], s:o, s:s, "
                  "s:{}, s:o, s:[]}",
                  "name", c->name, "platform", c->platform ? c->platform : "", "backend",
                  c->backend ? c->backend : "", "runtime", "", "version_policy", policy,
                  "max_batch_size", (int)c->max_batch_size, "input", inputs, "output", outputs,
                  "batch_input", "batch_output", "instance_group", groups, "default_model_filename",
                  c->default_model_filename ? c->default_model_filename : "model.onnx",
                  "metric_tags", "parameters", params, "model_warmup");
    if (j && c->has_dynamic_batching) {
        const rt_dynamic_batching *d = &c->dynamic_batching;
        json_t *pref = json_array();
        for (size_t i = 0; i < d->preferred_count; i++)
            json_array_append_new(pref, json_integer(d->preferred_batch_sizes[i]));
        json_object_set_new(j, "dynamic_batching",
                            json_pack("{s:o, s:I, s:b, s:I, s:I, s:{s:s, s:I, s:b, s:I}, s:{}}",
                                      "preferred_batch_size", pref, "max_queue_delay_microseconds",
                                      (json_int_t)d->max_queue_delay_us, "preserve_ordering",
                                      d->preserve_ordering, "priority_levels",
                                      (json_int_t)d->priority_levels, "default_priority_level",
                                      (json_int_t)d->default_priority_level, "default_queue_policy",
                                      "timeout_action", "REJECT", "default_timeout_microseconds",
                                      (json_int_t)d->default_timeout_us, "allow_timeout_override",
                                      d->allow_timeout_override, "max_queue_size",
                                      (json_int_t)d->max_queue_size, "priority_queue_policy"));
    }
    return j;
}

void srv_ep_model_config(srv_server *s, const char *model, const char *version, srv_reply *r)
{
    rt_model *m;
    ferry_status *st = rt_model_acquire(s->rt, model, version, &m);
    if (st) {
        srv_reply_error(r, st);
        return;
    }
    json_t *j = config_json(rt_model_get_config(m));
    rt_model_release(m);
    reply_json(r, 200, j);
}

static json_t *duration(rt_duration_stat d)
{
    return json_pack("{s:I, s:I}", "count", (json_int_t)d.count, "ns", (json_int_t)d.ns);
}

static json_t *model_stats_json(rt_model *m)
{
    rt_model_stats st;
    rt_model_get_stats(m, &st);
    rt_duration_stat zero = {0, 0};
    json_t *inference = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "success", duration(st.success), "fail",
        duration(st.fail), "queue", duration(st.queue), "compute_input", duration(st.compute_input),
        "compute_infer", duration(st.compute_infer), "compute_output", duration(st.compute_output),
        "cache_hit", duration(zero), "cache_miss", duration(zero));
    return json_pack("{s:s, s:o, s:I, s:I, s:I, s:o, s:{}, s:[], s:[]}", "name", rt_model_name(m),
                     "version", version_string(rt_model_version(m)), "last_inference",
                     (json_int_t)st.last_inference_ms, "inference_count",
                     (json_int_t)st.inference_count, "execution_count",
                     (json_int_t)st.execution_count, "inference_stats", inference, "response_stats",
                     "batch_stats", "memory_usage");
}

void srv_ep_model_stats(srv_server *s, const char *model, const char *version, srv_reply *r)
{
    rt_model **list = NULL;
    size_t n = 0;
    ferry_status *st = rt_model_list(s->rt, model, &list, &n);
    if (st) {
        srv_reply_error(r, st);
        return;
    }
    int64_t want = -1;
    if (version && version[0] && !rt_version_parse(version, &want)) want = -2;
    json_t *a = json_array();
    size_t matched = 0;
    for (size_t i = 0; i < n; i++) {
        if (want != -1 && rt_model_version(list[i]) != want) continue;
        json_array_append_new(a, model_stats_json(list[i]));
        matched++;
    }
    rt_model_list_free(list, n);
    if (model && matched == 0) {
        /* Nothing loaded matches: let acquire say why (unknown, or not ready). */
        rt_model *m = NULL;
        st = rt_model_acquire(s->rt, model, version, &m);
        if (!st) rt_model_release(m);
        if (st) {
            json_decref(a);
            srv_reply_error(r, st);
            return;
        }
    }
    reply_json(r, 200, json_pack("{s:o}", "model_stats", a));
}

/* Parses an optional JSON object body; NULL (and an error reply) when it is not one. */
static json_t *parse_body(const char *body, size_t len, srv_reply *r)
{
    if (len == 0) return json_object();
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!j || !json_is_object(j)) {
        char msg[300];
        if (j)
            snprintf(msg, sizeof(msg), "the request body must be a JSON object");
        else
            snprintf(msg, sizeof(msg), "malformed JSON: %s", err.text);
        json_decref(j);
        srv_reply_message(r, 400, msg);
        return NULL;
    }
    return j;
}

void srv_ep_repository_index(srv_server *s, const char *body, size_t len, srv_reply *r)
{
    json_t *req = parse_body(body, len, r);
    if (!req) return;
    json_t *ready = json_object_get(req, "ready");
    if (ready && !json_is_boolean(ready)) {
        json_decref(req);
        srv_reply_message(r, 400, "'ready' must be true or false");
        return;
    }
    bool ready_only = ready && json_is_true(ready);
    json_decref(req);
    rt_index_entry *rows = NULL;
    size_t n = 0;
    ferry_status *st = rt_runtime_index(s->rt, ready_only, &rows, &n);
    if (st) {
        srv_reply_error(r, st);
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_pack("{s:s, s:s}", "name", rows[i].name, "state",
                                rt_model_state_name(rows[i].state));
        if (rows[i].version >= 0)
            json_object_set_new(row, "version", version_string(rows[i].version));
        if (rows[i].reason[0]) json_object_set_new(row, "reason", json_string(rows[i].reason));
        json_array_append_new(a, row);
    }
    free(rows);
    reply_json(r, 200, a);
}

void srv_ep_repository_load(srv_server *s, const char *model, bool load, const char *body,
                            size_t len, srv_reply *r)
{
    json_t *req = parse_body(body, len, r);
    if (!req) return;
    json_t *params = json_object_get(req, "parameters");
    if (params && !json_is_object(params)) {
        json_decref(req);
        srv_reply_message(r, 400, "'parameters' must be an object");
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach(params, key, value)
    {
        /* Triton's load overrides (an inline config, uploaded files) would let a client write
         * into the repository; Ferry serves only what is on disk. unload_dependents has no
         * meaning without ensembles. */
        if (!load && !strcmp(key, "unload_dependents")) continue;
        char msg[200];
        snprintf(msg, sizeof(msg), "%s parameter '%.64s' is not supported",
                 load ? "load" : "unload", key);
        json_decref(req);
        srv_reply_message(r, 400, msg);
        return;
    }
    json_decref(req);
    ferry_status *st = load ? rt_runtime_load(s->rt, model) : rt_runtime_unload(s->rt, model);
    if (st) {
        srv_reply_error(r, st);
        return;
    }
    reply_empty(r, 200);
}
