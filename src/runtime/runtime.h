/* runtime.h - the model repository and scheduler that the serving and batch front ends share.
 *
 * The runtime owns everything between "a request for model M" and "one engine run":
 *
 *   repository  <repo>/<model>/<version>/model.onnx plus an optional <repo>/<model>/config.pbtxt
 *               in Triton's text format; discovery, version policy, load, unload, hot reload.
 *   models      one rt_model per loaded version, reference counted: a new version is loaded and
 *               made ready before it takes traffic, the old one drains and is freed when its last
 *               reference goes.
 *   scheduler   per version: a bounded queue, N instances (threads, each with its own
 *               ferry_context) and an optional dynamic batcher.
 *   statistics  per version counters and histograms, updated with relaxed atomics.
 *
 * Typical use by a front end:
 *
 *   rt_runtime *rt;  rt_runtime_create(&opts, &rt);
 *   rt_model *m;     rt_model_acquire(rt, "mnist", NULL, &m);   // NULL version: the default
 *   rt_request *r;   rt_request_create(m, &r);
 *   rt_request_set_input(r, 0, &view);                           // borrowed until completion
 *   rt_request_set_callback(r, on_done, conn);
 *   st = rt_submit(r);     // error: nothing was queued, the callback will not run
 *   ...                    // on_done(r, conn) runs on a worker thread: read outputs, reply,
 *   rt_request_free(r);    // then free the request (from any thread, inside the callback too)
 *   rt_model_release(m);
 *
 * Conventions are ferry.h's: a ferry_status (NULL = success) per fallible call, owned by the
 * caller; destroy/free/release functions accept NULL. Codes a front end should map:
 *   FERRY_ERR_INVALID_ARGUMENT  bad name, version, input dtype or shape      -> 400
 *   FERRY_ERR_NOT_FOUND         no such model or version in the repository   -> 404
 *   FERRY_ERR_UNAVAILABLE       queue full, model loading/unloading/stopping -> 503 (+Retry-After)
 *   FERRY_ERR_TIMEOUT           the request waited past its deadline         -> 504 or 503
 *   FERRY_ERR_UNSUPPORTED       e.g. repository API outside explicit mode    -> 501 or 400
 * Every function is thread-safe unless its comment says otherwise.
 */
#ifndef RUNTIME_RUNTIME_H
#define RUNTIME_RUNTIME_H

#include "ferry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------
 * Limits: everything that grows from a repository or a request is bounded by these.
 * ------------------------------------------------------------------------------------- */

#define RT_MAX_NAME         128  /* bytes of a model name, without the NUL */
#define RT_MAX_MODELS       4096 /* model directories considered in one repository */
#define RT_MAX_VERSIONS     256  /* version directories considered per model */
#define RT_MAX_VERSION      999999999999999999LL /* the largest version number (18 digits) */
#define RT_MAX_IO           1024                 /* inputs or outputs per model */
#define RT_MAX_INSTANCES    64                   /* instances (threads) per model version */
#define RT_MAX_BATCH        65536                /* the largest max_batch_size */
#define RT_MAX_QUEUE        1000000              /* the largest queue capacity */
#define RT_MAX_CONFIG_BYTES (1u << 20)           /* config.pbtxt size */
#define RT_MAX_REASON       512                  /* bytes of an index reason, with the NUL */

/* ---------------------------------------------------------------------------------------
 * Data types: Triton's config names (TYPE_FP32) and KServe wire names (FP32).
 * ------------------------------------------------------------------------------------- */

/* "TYPE_FP32" etc. for the types config.pbtxt can name; "TYPE_INVALID" otherwise. */
const char *rt_dtype_config_name(ferry_dtype dtype);

/* The KServe v2 wire name ("FP32", "INT64", "BOOL", "BYTES" for strings), or NULL when the type
 * has none. */
const char *rt_dtype_wire_name(ferry_dtype dtype);

/* Parses a wire name ("FP32"); FERRY_DTYPE_UNDEFINED when unknown. Case-sensitive, as in KServe. */
ferry_dtype rt_dtype_from_wire_name(const char *name);

/* ---------------------------------------------------------------------------------------
 * Model configuration: Triton's ModelConfig, the subset Ferry honours, parsed from config.pbtxt
 * or derived from the model. Every string and array belongs to the config.
 * ------------------------------------------------------------------------------------- */

typedef enum rt_version_policy_kind {
    RT_POLICY_LATEST = 0, /* the num_versions highest versions (the default, N = 1) */
    RT_POLICY_ALL,        /* every version present */
    RT_POLICY_SPECIFIC,   /* the listed versions */
} rt_version_policy_kind;

typedef struct rt_version_policy {
    rt_version_policy_kind kind;
    uint32_t num_versions; /* RT_POLICY_LATEST; >= 1 */
    size_t version_count;  /* RT_POLICY_SPECIFIC */
    int64_t *versions;     /* RT_POLICY_SPECIFIC, as written */
} rt_version_policy;

/* ModelInput.format, carried for rendering only. */
typedef enum rt_tensor_format {
    RT_FORMAT_NONE = 0,
    RT_FORMAT_NHWC = 1,
    RT_FORMAT_NCHW = 2,
} rt_tensor_format;

/* One input or output. DIMS exclude the batch dimension when max_batch_size > 0, exactly as
 * Triton writes them; -1 is a variable dimension. The full request shape is
 * ([-1] if max_batch_size > 0) + dims. RESHAPE, when present, is the shape (again without the
 * batch dimension) the model itself sees; requests and responses use DIMS. */
typedef struct rt_tensor_config {
    const char *name;
    ferry_dtype dtype; /* from data_type: TYPE_FP32 -> FERRY_DTYPE_FLOAT ... */
    int rank;          /* >= 1 in a config file; 0 only for a derived scalar */
    int64_t dims[FERRY_MAX_RANK];
    bool has_reshape;
    int reshape_rank; /* may be 0: "reshape: { shape: [ ] }" for a scalar */
    int64_t reshape[FERRY_MAX_RANK];
    rt_tensor_format format;    /* inputs only */
    bool optional;              /* inputs only; refused when true (the engine needs them all) */
    bool is_shape_tensor;       /* refused when true */
    bool allow_ragged_batch;    /* refused when true */
    const char *label_filename; /* outputs only; "" when absent */
    int engine_index;           /* the model's input/output index; set by rt_config_bind() */
} rt_tensor_config;

typedef struct rt_dynamic_batching {
    size_t preferred_count;
    int32_t *preferred_batch_sizes; /* each in [1, max_batch_size] */
    uint64_t max_queue_delay_us;
    bool preserve_ordering;   /* accepted; responses are per request anyway */
    uint32_t priority_levels; /* accepted and ignored: one priority */
    uint32_t default_priority_level;
    /* default_queue_policy, the fields Ferry honours: */
    uint32_t max_queue_size;     /* 0: the runtime's queue capacity */
    uint64_t default_timeout_us; /* 0: none */
    bool allow_timeout_override;
} rt_dynamic_batching;

typedef enum rt_instance_kind {
    RT_KIND_AUTO = 0,
    RT_KIND_GPU = 1, /* refused */
    RT_KIND_CPU = 2,
    RT_KIND_MODEL = 3, /* refused */
} rt_instance_kind;

typedef struct rt_instance_group {
    const char *name; /* "" when not given; rendered as "<model>_<index>" by Triton */
    int32_t count;    /* >= 1 */
    rt_instance_kind kind;
} rt_instance_group;

typedef struct rt_parameter { /* parameters { key: "k" value { string_value: "v" } } */
    const char *key;
    const char *value;
} rt_parameter;

typedef struct rt_model_config {
    const char *name;       /* the directory name when the file leaves it out */
    const char *platform;   /* "onnxruntime_onnx" (Triton's ONNX platform) or "" */
    const char *backend;    /* "onnxruntime", "ferry" or "" */
    int32_t max_batch_size; /* 0: no batch dimension; > 0: requests carry [b, dims...] */
    rt_version_policy version_policy;
    size_t input_count;
    rt_tensor_config *inputs; /* after rt_config_bind(): in the model's input order */
    size_t output_count;
    rt_tensor_config *outputs; /* the outputs a request may ask for (a subset of the model's) */
    bool has_dynamic_batching; /* dynamic_batching { } present (or derived) */
    rt_dynamic_batching dynamic_batching;
    size_t instance_group_count;
    rt_instance_group *instance_groups;
    size_t parameter_count;
    rt_parameter *parameters;           /* in file order; a repeated key keeps its last value */
    const char *default_model_filename; /* "model.onnx" unless the file says otherwise */

    /* Ferry's own settings. They are written as parameters so a Triton server still accepts the
     * file: parameters { key: "ferry.queue_capacity" value { string_value: "64" } } and
     * "ferry.timeout_microseconds". Other "ferry." keys are errors. */
    uint32_t queue_capacity; /* 0 until bound: then the effective queue bound */
    uint64_t timeout_us;     /* 0: no default timeout */

    /* Filled by rt_config_bind(): */
    int instance_count; /* total over instance groups (the runtime default when none) */
    bool derived;       /* true when no config.pbtxt existed */

    void *mem_; /* private: the allocations behind the pointers above */
} rt_model_config;

/* Parses config.pbtxt text (protobuf text format, Triton's ModelConfig schema). FILE names the
 * source in error messages, which read "FILE:LINE: field 'x': problem" (e.g.
 * "m/config.pbtxt:7: field 'dims': expected an integer, got 'abc'"). Unknown fields, repeated
 * singular fields, wrong value kinds, out-of-range numbers and unsupported settings
 * (sequence_batching, ensembles, KIND_GPU, TYPE_STRING ...) are errors
 * (FERRY_ERR_INVALID_MODEL, or FERRY_ERR_UNSUPPORTED for settings Ferry does not implement).
 * Triton fields that change nothing on a CPU (optimization, model_warmup, response_cache,
 * metric_tags ...) are accepted and ignored. LEN is at most RT_MAX_CONFIG_BYTES.
 * On success *OUT holds the config (rt_config_free); on failure *OUT is zeroed. */
ferry_status *rt_config_parse(const char *text, size_t len, const char *file, rt_model_config *out);

/* Builds the config of a model directory that has no config.pbtxt: inputs and outputs from the
 * model; max_batch_size = DEFAULT_MAX_BATCH (with dynamic batching, delay 0) when every input
 * and output has a symbolic leading dimension and DEFAULT_MAX_BATCH > 0, else 0; the
 * runtime's defaults for the rest. Types the config format cannot name are errors. */
ferry_status *rt_config_derive(const ferry_model *model, const char *name,
                               int32_t default_max_batch, rt_model_config *out);

/* Checks CFG against MODEL and completes it: every config input and output must exist in the
 * model with the same dtype and compatible dims (a fixed dim must match, a reshape must hold the
 * same number of elements, max_batch_size > 0 needs a variable leading dimension everywhere),
 * every model input must be in the config; inputs are put in the model's order and
 * engine_index is set; instance_count and queue_capacity get DEFAULT_INSTANCES and
 * DEFAULT_QUEUE when the config leaves them out; an empty input or output list is filled from
 * the model (Triton's auto-complete). Errors name the tensor, expected and got ("input 'x': the
 * config gives the model shape [-1,5], the model has [-1,4]"). After a failure CFG may be
 * partly completed or reordered: free it, do not use it. */
ferry_status *rt_config_bind(rt_model_config *cfg, const ferry_model *model, int default_instances,
                             uint32_t default_queue);

/* Frees the config's allocations and zeroes it. Accepts NULL and a zeroed config. */
void rt_config_free(rt_model_config *cfg);

/* The config entry for NAME, or -1. Plain string compare, no allocation. */
int rt_config_input_index(const rt_model_config *cfg, const char *name);
int rt_config_output_index(const rt_model_config *cfg, const char *name);

/* The value of parameter KEY, or NULL. */
const char *rt_config_parameter(const rt_model_config *cfg, const char *key);

/* ---------------------------------------------------------------------------------------
 * Names and versions coming from requests: checked before they are looked up anywhere.
 * ------------------------------------------------------------------------------------- */

/* True when NAME is a valid model name: 1..RT_MAX_NAME bytes of [A-Za-z0-9_.-], not starting
 * with '.'. (So never "", ".", "..", "a/b" or anything with a NUL, slash or backslash.) */
bool rt_name_valid(const char *name);

/* Parses a version string: 1..18 decimal digits, no sign, no leading zero. Returns false (and
 * leaves *OUT alone) otherwise. */
bool rt_version_parse(const char *text, int64_t *out);

/* ---------------------------------------------------------------------------------------
 * The runtime
 * ------------------------------------------------------------------------------------- */

typedef enum rt_control_mode {
    RT_CONTROL_NONE = 0, /* load every model at start, never change */
    RT_CONTROL_POLL,     /* load every model at start, rescan every poll interval */
    RT_CONTROL_EXPLICIT, /* load only start_models at start, then on rt_runtime_load() */
} rt_control_mode;

typedef enum rt_log_level {
    RT_LOG_DEBUG = 0,
    RT_LOG_INFO,
    RT_LOG_WARN,
    RT_LOG_ERROR,
} rt_log_level;

/* Receives one complete JSON object per event, without a trailing newline, e.g.
 * {"ts":"2024-05-01T12:00:00.123Z","level":"info","component":"runtime","event":"model_ready",
 *  "model":"m","version":2,"load_ms":3.1}
 * Called from any runtime thread, possibly concurrently; must not call back into the runtime. */
typedef void (*rt_log_fn)(void *user, rt_log_level level, const char *json);

typedef struct rt_options {
    const char *repository; /* required: the repository directory */
    rt_control_mode control_mode;
    uint32_t poll_interval_ms; /* RT_CONTROL_POLL; 0 means 15000 */
    /* RT_CONTROL_EXPLICIT: models to load at start ("*" alone means all). Others ignore it. */
    const char *const *start_models;
    size_t start_model_count;
    int default_instances;           /* instances per version without instance_group; 0 means 1 */
    uint32_t default_queue_capacity; /* per version, when the config says nothing; 0 means 1024 */
    int32_t default_max_batch;   /* for derived configs; 0 means 4, negative means no batching */
    uint64_t default_timeout_us; /* applies when neither request nor config set one; 0: none */
    uint64_t max_weight_bytes;   /* passed to ferry_model_open_file; 0: the engine's default */
    rt_log_fn log;               /* NULL: JSON lines on stderr */
    void *log_user;
    rt_log_level log_level; /* events below this level are not emitted; 0 (DEBUG) emits
                             * all, including "model_freed" when a drained version goes */
} rt_options;

typedef struct rt_runtime rt_runtime;

/* Opens the repository and loads the start-up models (per control mode) before returning.
 * Models that fail to load do not fail the call: they appear in the index as UNAVAILABLE with
 * the reason, and are logged. Fails only when the repository cannot be opened or the options
 * are invalid. In poll mode a background thread rescans every poll_interval_ms.
 * On success *OUT is owned by the caller (rt_runtime_destroy). */
ferry_status *rt_runtime_create(const rt_options *options, rt_runtime **out);

/* Graceful stop (SIGTERM): new submissions and loads fail with FERRY_ERR_UNAVAILABLE, polling
 * stops, and every queued and running request completes (its callback has returned) before
 * this returns. Models stay readable (metadata, statistics) until rt_runtime_destroy(), which
 * joins the then idle instance threads. Idempotent. Must not be called from a completion
 * callback. */
void rt_runtime_shutdown(rt_runtime *rt);

/* Shuts down if needed and frees everything. Every rt_model reference and rt_request must have
 * been released before. Accepts NULL. */
void rt_runtime_destroy(rt_runtime *rt);

/* True between a successful create and shutdown (for /v2/health/live and ready). */
bool rt_runtime_live(const rt_runtime *rt);

/* Rescans the repository now: discovers new and removed models, versions and changed files,
 * and in poll mode loads, reloads and unloads to match. In the other modes it only refreshes
 * the index. Returns an error only for an unreadable repository; model failures are recorded
 * per model. Serialised with load and unload. */
ferry_status *rt_runtime_rescan(rt_runtime *rt);

/* Repository API (explicit mode; other modes get FERRY_ERR_UNSUPPORTED, as Triton does).
 * load: (re)reads <repo>/NAME from disk and loads the versions its policy selects; a new
 * version takes traffic only once ready, then the versions it replaces drain. If any selected
 * version fails, the versions that were serving keep serving and the error is returned (and
 * recorded in the index). Blocks until done.
 * unload: the model stops taking new requests at once; its queued and running requests finish;
 * memory is freed when the last reference goes. Returns without waiting for the drain.
 * NAME is validated (rt_name_valid) and must be a directory in the repository. */
ferry_status *rt_runtime_load(rt_runtime *rt, const char *name);
ferry_status *rt_runtime_unload(rt_runtime *rt, const char *name);

typedef enum rt_model_state {
    RT_STATE_UNAVAILABLE = 0,
    RT_STATE_LOADING,
    RT_STATE_READY,
    RT_STATE_UNLOADING,
} rt_model_state;

/* "UNAVAILABLE", "LOADING", "READY", "UNLOADING" (Triton's index strings). */
const char *rt_model_state_name(rt_model_state state);

/* One row of POST /v2/repository/index. */
typedef struct rt_index_entry {
    char name[RT_MAX_NAME + 1];
    int64_t version; /* -1: the row is about the model, not a version */
    rt_model_state state;
    char reason[RT_MAX_REASON]; /* "" when none; e.g. "unloaded", "load failed: ..." */
} rt_index_entry;

/* A snapshot of the index, sorted by name then version: every model directory found, with one
 * row per version that is loaded or failed to load, or a single version -1 row when none is.
 * READY_ONLY keeps only ready rows. On success *OUT (free with free()) holds *COUNT rows;
 * *OUT may be NULL when *COUNT is 0. Does not touch the file system. */
ferry_status *rt_runtime_index(rt_runtime *rt, bool ready_only, rt_index_entry **out,
                               size_t *count);

/* ---------------------------------------------------------------------------------------
 * Models: one loaded version, reference counted.
 * ------------------------------------------------------------------------------------- */

typedef struct rt_model rt_model;

/* Takes a reference on a ready version of NAME. VERSION is NULL or "" for the default (the
 * highest ready version), else a version string from a URL (validated with
 * rt_version_parse). Errors: FERRY_ERR_INVALID_ARGUMENT for a malformed name or version,
 * FERRY_ERR_NOT_FOUND for a model or version the repository does not have,
 * FERRY_ERR_UNAVAILABLE for one that exists but is not ready (loading, failed, unloaded;
 * the message says which). Never touches the file system. On success *OUT is released with
 * rt_model_release(). */
ferry_status *rt_model_acquire(rt_runtime *rt, const char *name, const char *version,
                               rt_model **out);

/* Takes another reference on M (which the caller already holds). */
rt_model *rt_model_retain(rt_model *m);

/* Drops a reference. The version's memory and threads go when the last one is gone and it is no
 * longer served. Safe from completion callbacks. Accepts NULL. */
void rt_model_release(rt_model *m);

/* Accessors; the pointers live as long as the reference. */
const char *rt_model_name(const rt_model *m);
int64_t rt_model_version(const rt_model *m);
const rt_model_config *rt_model_get_config(const rt_model *m);
const ferry_model *rt_model_engine(const rt_model *m); /* for ferry_model_* metadata queries */
const char *rt_model_platform(const rt_model *m);      /* the config's, else "onnxruntime_onnx" */
rt_model_state rt_model_get_state(const rt_model *m);  /* READY, or UNLOADING once replaced */

/* Versions of NAME that are ready, highest first: fills up to CAP entries of VERSIONS and
 * returns how many there are (for "versions" in model metadata). 0 when none or unknown. */
size_t rt_model_ready_versions(rt_runtime *rt, const char *name, int64_t *versions, size_t cap);

/* References on every ready version of every model (NAME NULL), or of model NAME, sorted by
 * name then version: for /metrics and /v2/models/stats. On success *OUT holds *COUNT references
 * (possibly 0, *OUT then may be NULL); release them all with rt_model_list_free(). */
ferry_status *rt_model_list(rt_runtime *rt, const char *name, rt_model ***out, size_t *count);
void rt_model_list_free(rt_model **models, size_t count);

/* ---------------------------------------------------------------------------------------
 * Statistics: per model version, since it was loaded.
 * ------------------------------------------------------------------------------------- */

/* Upper bounds (seconds) of the latency histogram buckets, ascending; +Inf is implied after the
 * last. The same for end-to-end, queue and compute time. */
#define RT_LATENCY_BUCKETS 16
extern const double rt_latency_bounds_s[RT_LATENCY_BUCKETS];

/* Upper bounds of the batch size histogram (requests' batch items per execution). */
#define RT_BATCH_BUCKETS 10
extern const double rt_batch_bounds[RT_BATCH_BUCKETS];

typedef enum rt_outcome {
    RT_OUTCOME_SUCCESS = 0,
    RT_OUTCOME_INVALID,  /* refused at submit: bad inputs */
    RT_OUTCOME_REJECTED, /* refused at submit: queue full, unloading, stopping */
    RT_OUTCOME_TIMEOUT,  /* expired in the queue */
    RT_OUTCOME_ERROR,    /* the engine run failed */
    RT_OUTCOME_COUNT
} rt_outcome;

/* "success", "invalid", "rejected", "timeout", "error": for a Prometheus label. */
const char *rt_outcome_name(rt_outcome outcome);

typedef struct rt_duration_stat { /* Triton's $duration_stat */
    uint64_t count;
    uint64_t ns;
} rt_duration_stat;

/* Cumulative, Prometheus style: buckets[i] counts observations <= the i-th bound;
 * buckets[RT_LATENCY_BUCKETS] (+Inf) equals count. */
typedef struct rt_latency_histogram {
    uint64_t buckets[RT_LATENCY_BUCKETS + 1];
    uint64_t count;
    double sum_s;
} rt_latency_histogram;

typedef struct rt_batch_histogram {
    uint64_t buckets[RT_BATCH_BUCKETS + 1];
    uint64_t count; /* executions */
    uint64_t sum;   /* batch items */
} rt_batch_histogram;

typedef struct rt_model_stats {
    uint64_t requests[RT_OUTCOME_COUNT]; /* requests by outcome */
    uint64_t inference_count;            /* batch items run (a request of batch 4 counts 4) */
    uint64_t execution_count;            /* engine runs */
    uint64_t last_inference_ms;          /* wall clock, ms since the epoch; 0 when none */
    /* Triton's inference_stats: */
    rt_duration_stat success;             /* end to end, successful requests */
    rt_duration_stat fail;                /* end to end, requests that failed after being queued */
    rt_duration_stat queue;               /* time queued, requests that reached an instance */
    rt_duration_stat compute_input;       /* gathering inputs into the batch buffer */
    rt_duration_stat compute_infer;       /* the engine run (per request) */
    rt_duration_stat compute_output;      /* splitting outputs back */
    rt_latency_histogram request_latency; /* end to end (submit to completion), every completion */
    rt_latency_histogram queue_latency;
    rt_latency_histogram compute_latency; /* per execution */
    rt_batch_histogram batch_size;
    int64_t queue_depth; /* gauge: requests queued now */
    int64_t in_flight;   /* gauge: requests submitted and not yet completed */
    rt_model_state state;
    uint64_t load_ns;      /* how long loading took */
    uint64_t loaded_at_ms; /* wall clock when it became ready */
    int instance_count;
    uint32_t queue_capacity;
} rt_model_stats;

/* A consistent-enough snapshot (each counter is read atomically, not all together). */
void rt_model_get_stats(const rt_model *m, rt_model_stats *out);

/* ---------------------------------------------------------------------------------------
 * Inference requests
 * ------------------------------------------------------------------------------------- */

typedef struct rt_request rt_request;

/* Called once per submitted request, on a worker thread, after the outputs are in place. It may
 * call rt_request_free() and rt_model_release(), but must not block for long: it holds up that
 * instance. */
typedef void (*rt_done_fn)(rt_request *req, void *user);

/* Creates an empty request for M (taking its own reference on M). */
ferry_status *rt_request_create(rt_model *m, rt_request **out);

/* Sets input INDEX (the config's input order, which is the model's; see
 * rt_config_input_index). The view and its data are borrowed until the callback has run (or
 * submit failed). The shape includes the batch dimension when max_batch_size > 0. Errors for an
 * index out of range. Not thread-safe per request (nor are the other setters). */
ferry_status *rt_request_set_input(rt_request *req, size_t index, const ferry_tensor_view *view);

/* Asks for output INDEX (config output order). Without any call every config output is
 * returned, in config order; otherwise the asked ones, in the order asked (duplicates are
 * errors). */
ferry_status *rt_request_add_output(rt_request *req, size_t index);

/* A deadline relative to submission: a request still queued after TIMEOUT_US fails with
 * FERRY_ERR_TIMEOUT without running. 0 uses the config's (dynamic_batching
 * default_timeout_microseconds or ferry.timeout_microseconds), then the runtime's default. A
 * request may shorten that timeout, never lengthen it. */
void rt_request_set_timeout_us(rt_request *req, uint64_t timeout_us);

void rt_request_set_callback(rt_request *req, rt_done_fn done, void *user);

/* Queues the request. Returns an error, with nothing queued and no callback to come, when:
 * an input is missing or its dtype or shape does not match the config
 * (FERRY_ERR_INVALID_ARGUMENT: "input 'x': expected shape [-1,4], got [2,5]"); the batch is
 * larger than max_batch_size; the queue is full, the version was unloaded (rt_runtime_unload)
 * or the runtime is stopping (FERRY_ERR_UNAVAILABLE); no callback is set. A version that was
 * merely replaced by a newer one still accepts requests from references taken before the
 * switch, so a hot reload loses none. On success the callback runs exactly once, possibly
 * before rt_submit returns. A request is submitted at most once; after an error it may be
 * submitted again (e.g. after a Retry-After). */
ferry_status *rt_submit(rt_request *req);

/* After the callback: the outcome (NULL = success), owned by the request. */
const ferry_status *rt_request_status(const rt_request *req);

/* After a successful completion: the number of outputs and output I (in the order described
 * at rt_request_add_output). The view's memory belongs to the request until rt_request_free.
 * *CONFIG_INDEX (may be NULL) receives the config output index. */
size_t rt_request_output_count(const rt_request *req);
ferry_status *rt_request_output(const rt_request *req, size_t i, size_t *config_index,
                                ferry_tensor_view *out);

typedef struct rt_request_timing {
    uint64_t queue_ns;   /* submit until an instance took it */
    uint64_t compute_ns; /* input gathering + engine run + output split */
    uint64_t total_ns;   /* submit until just before the callback */
    uint32_t batch_size; /* batch items in the execution it was part of (0: did not run) */
} rt_request_timing;

void rt_request_get_timing(const rt_request *req, rt_request_timing *out);

/* The model the request was created for (borrowed). */
rt_model *rt_request_model(const rt_request *req);

/* Frees the request, its outputs and its reference on the model. Must not be called between a
 * successful submit and the start of the callback. Accepts NULL. */
void rt_request_free(rt_request *req);

#ifdef __cplusplus
}
#endif

#endif /* RUNTIME_RUNTIME_H */
