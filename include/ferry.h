/* ferry.h - the public C API of Ferry's inference engine.
 *
 * Ferry loads an ONNX model once and runs it from any number of threads:
 *
 *   ferry_model *model;
 *   ferry_status *st = ferry_model_open_file("model.onnx", NULL, &model);
 *   if (st) { fprintf(stderr, "%s\n", ferry_status_message(st)); ferry_status_free(st); }
 *   ferry_context *ctx;
 *   st = ferry_context_create(model, &ctx);
 *   ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {1, 64}, data};
 *   st = ferry_context_run(ctx, &in, 1);
 *   ferry_tensor_view out;
 *   ferry_context_output(ctx, 0, &out);
 *
 * Conventions used by every function below:
 * - A function that can fail returns a ferry_status pointer: NULL means success, anything else
 *   is an error the caller owns and releases with ferry_status_free(). Errors carry a code and
 *   a message written for the person running the model ("input 'x': expected shape [1,4], got
 *   [2,5]").
 * - Objects are opaque handles with a create/destroy (or open/close) pair; destroying NULL is a
 *   no-op.
 * - Nothing in this library aborts or exits on bad input: malformed models and wrong inputs
 *   are reported as errors.
 */
#ifndef FERRY_H
#define FERRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_VERSION "0.1.0"

/* The largest tensor rank Ferry accepts. Models with higher ranks are rejected at load. */
#define FERRY_MAX_RANK 8

/* ---------------------------------------------------------------------------------------
 * Status
 * ------------------------------------------------------------------------------------- */

typedef enum ferry_code {
    FERRY_OK = 0,
    FERRY_ERR_INVALID_ARGUMENT, /* the caller passed something wrong: inputs, shapes, dtypes */
    FERRY_ERR_INVALID_MODEL,    /* the model file is malformed or inconsistent */
    FERRY_ERR_UNSUPPORTED,      /* valid ONNX that Ferry does not implement (yet) */
    FERRY_ERR_NOT_FOUND,        /* a file, input or output that does not exist */
    FERRY_ERR_IO,               /* reading or writing a file failed */
    FERRY_ERR_NO_MEMORY,        /* an allocation failed or a size limit was exceeded */
    FERRY_ERR_RUNTIME,          /* a value computed while running is invalid (index out of range) */
    FERRY_ERR_INTERNAL,         /* a bug in Ferry: please report it */
    FERRY_ERR_UNAVAILABLE,      /* temporarily unable: queue full, model loading or draining */
    FERRY_ERR_TIMEOUT,          /* a deadline passed before the work was done */
    FERRY_CODE_COUNT
} ferry_code;

typedef struct ferry_status ferry_status;

/* The error's code. A NULL status is FERRY_OK. Thread-safe. */
ferry_code ferry_status_code(const ferry_status *st);

/* The error's message, valid until ferry_status_free(). Never NULL ("ok" for NULL). */
const char *ferry_status_message(const ferry_status *st);

/* A short stable name for a code ("invalid_argument"), for logs and scripts. */
const char *ferry_code_name(ferry_code code);

/* Releases an error. Accepts NULL. */
void ferry_status_free(ferry_status *st);

/* ---------------------------------------------------------------------------------------
 * Element types: the numbering is ONNX's TensorProto.DataType, so values read from a model or
 * a protocol carry over unchanged.
 * ------------------------------------------------------------------------------------- */

typedef enum ferry_dtype {
    FERRY_DTYPE_UNDEFINED = 0,
    FERRY_DTYPE_FLOAT = 1,
    FERRY_DTYPE_UINT8 = 2,
    FERRY_DTYPE_INT8 = 3,
    FERRY_DTYPE_UINT16 = 4,
    FERRY_DTYPE_INT16 = 5,
    FERRY_DTYPE_INT32 = 6,
    FERRY_DTYPE_INT64 = 7,
    FERRY_DTYPE_STRING = 8,
    FERRY_DTYPE_BOOL = 9,
    FERRY_DTYPE_FLOAT16 = 10,
    FERRY_DTYPE_DOUBLE = 11,
    FERRY_DTYPE_UINT32 = 12,
    FERRY_DTYPE_UINT64 = 13,
    FERRY_DTYPE_COMPLEX64 = 14,
    FERRY_DTYPE_COMPLEX128 = 15,
    FERRY_DTYPE_BFLOAT16 = 16,
    FERRY_DTYPE_COUNT,
    /* Not tensor element types but kinds of values, numbered away from ONNX's types:
     * a sequence view has rank 1, dims[0] elements and data pointing to that many
     * ferry_tensor_view; an optional view has rank 1 and dims[0] 1 (data points to the one
     * ferry_tensor_view it holds) or 0 (empty). */
    FERRY_DTYPE_SEQUENCE = 64,
    FERRY_DTYPE_OPTIONAL = 65,
} ferry_dtype;

/* Bytes per element, or 0 for undefined types. A string tensor's elements are pointers to
 * NUL-terminated UTF-8 strings (const char *). */
size_t ferry_dtype_size(ferry_dtype dtype);

/* ONNX's name for the type ("float", "int64", "bool" ...); "undefined" for unknown values. */
const char *ferry_dtype_name(ferry_dtype dtype);

/* ---------------------------------------------------------------------------------------
 * Tensor views: a borrowed description of memory, never owning it. Elements are dense,
 * row-major (C order). A rank-0 view is a scalar holding one element. For FERRY_DTYPE_STRING
 * the data is an array of const char * (NUL-terminated UTF-8).
 * ------------------------------------------------------------------------------------- */

typedef struct ferry_tensor_view {
    ferry_dtype dtype;
    int rank;
    int64_t dims[FERRY_MAX_RANK];
    void *data;
} ferry_tensor_view;

/* Number of elements (product of dims; 1 for a scalar). */
int64_t ferry_tensor_view_count(const ferry_tensor_view *view);

/* ---------------------------------------------------------------------------------------
 * Owned tensors read from files (.npy and ONNX TensorProto .pb). Used by the command line,
 * tests and batch scoring to feed models from disk.
 * ------------------------------------------------------------------------------------- */

typedef struct ferry_tensor ferry_tensor;

/* Reads a tensor from PATH. The format comes from the extension: ".npy" (NumPy format 1.0-3.0,
 * little-endian, C order) or ".pb" (a serialized onnx.TensorProto). On success *out is owned by
 * the caller (ferry_tensor_free). On failure *out is NULL. Thread-safe. */
ferry_status *ferry_tensor_read_file(const char *path, ferry_tensor **out);

/* Reads a ".pb" file holding a value of KIND: FERRY_DTYPE_SEQUENCE (onnx.SequenceProto of
 * tensors), FERRY_DTYPE_OPTIONAL (onnx.OptionalProto) or any other value for a TensorProto. */
ferry_status *ferry_value_read_pb(const char *path, ferry_dtype kind, ferry_tensor **out);

/* The tensor's view; valid until ferry_tensor_free(). */
const ferry_tensor_view *ferry_tensor_get_view(const ferry_tensor *t);

/* The tensor's name when the file carried one (TensorProto.name), else "". */
const char *ferry_tensor_name(const ferry_tensor *t);

void ferry_tensor_free(ferry_tensor *t);

/* Writes VIEW to PATH in NumPy .npy format (version 1.0). Thread-safe. */
ferry_status *ferry_tensor_write_npy(const ferry_tensor_view *view, const char *path);

/* ---------------------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------------------- */

typedef struct ferry_model ferry_model;

typedef struct ferry_model_options {
    /* Upper bound on the bytes of weights a model may declare; 0 means the default (16 GiB). */
    uint64_t max_weight_bytes;
    /* Threads each execution context uses inside one run (the caller's thread included);
     * 0 or 1 runs single-threaded. Each context owns its own workers. */
    int intra_op_threads;
    /* Batch slicing. When every operator of a model computes the samples of a batch
     * independently (most vision models: see ferry_model_batch_separable), a large batch runs as
     * slices of a few samples, so that a slice's activations stay in cache, and with several
     * threads each thread runs its own slices from the first operator to the last. Outputs are
     * the same either way. A slice holds as many samples as fit in batch_slice_bytes of
     * activations (0: 8 MiB, a share of a server's last-level cache); a batch that fits whole
     * runs whole. Set disable_batch_slicing to always run the whole batch at once. */
    bool disable_batch_slicing;
    size_t batch_slice_bytes;
} ferry_model_options;

/* Describes one graph input or output. Strings and arrays belong to the model. */
typedef struct ferry_value_info {
    const char *name;
    ferry_dtype dtype;            /* FERRY_DTYPE_UNDEFINED when the model does not say */
    int rank;                     /* -1 when the model declares no shape at all */
    const int64_t *dims;          /* rank entries; -1 for a symbolic or unknown dimension */
    const char *const *dim_names; /* rank entries; the symbol ("batch") or NULL */
} ferry_value_info;

/* Opens an ONNX model file. The file is mapped, not read, and the weights are used in place where
 * their alignment allows; external data files must lie in the model's folder. OPTIONS may be
 * NULL. On success *out is owned by the caller (ferry_model_close); on failure it is NULL.
 * Thread-safe. */
ferry_status *ferry_model_open_file(const char *path, const ferry_model_options *options,
                                    ferry_model **out);

/* Opens a model held in memory. The buffer is borrowed: it must stay valid and unchanged until
 * ferry_model_close(). Models loaded this way cannot refer to external data files. */
ferry_status *ferry_model_open_memory(const void *data, size_t size,
                                      const ferry_model_options *options, ferry_model **out);

/* Frees the model. Every context created from it must have been destroyed. Accepts NULL. */
void ferry_model_close(ferry_model *model);

/* The inputs a caller provides (graph inputs without an initializer), and the outputs, in the
 * graph's order. The info functions return FERRY_ERR_NOT_FOUND for an index out of range.
 * A loaded model is immutable: these and every other model query are safe from any thread. */
size_t ferry_model_input_count(const ferry_model *model);
size_t ferry_model_output_count(const ferry_model *model);
ferry_status *ferry_model_input_info(const ferry_model *model, size_t index, ferry_value_info *out);
ferry_status *ferry_model_output_info(const ferry_model *model, size_t index,
                                      ferry_value_info *out);

/* The position of the input or output called NAME, or -1. */
int ferry_model_input_index(const ferry_model *model, const char *name);
int ferry_model_output_index(const ferry_model *model, const char *name);

/* Opset imports: domain "" is ai.onnx. Returns FERRY_ERR_NOT_FOUND past the end. */
size_t ferry_model_opset_count(const ferry_model *model);
ferry_status *ferry_model_opset(const ferry_model *model, size_t index, const char **domain,
                                int64_t *version);

/* Model metadata. Strings belong to the model and are "" when absent. */
typedef struct ferry_model_metadata {
    int64_t ir_version;
    const char *producer_name;
    const char *producer_version;
    const char *domain;
    int64_t model_version;
    const char *doc_string;
    const char *graph_name;
    size_t property_count; /* metadata_props */
} ferry_model_metadata;

void ferry_model_get_metadata(const ferry_model *model, ferry_model_metadata *out);
ferry_status *ferry_model_property(const ferry_model *model, size_t index, const char **key,
                                   const char **value);

/* Graph statistics, as `ferry inspect` shows them. */
size_t ferry_model_node_count(const ferry_model *model);
/* The operator of node INDEX (in execution order) as "Domain:OpType" or "OpType" for ai.onnx. */
const char *ferry_model_node_op(const ferry_model *model, size_t index);
/* True when every input and output carries the batch on axis 0 and no operator mixes samples,
 * so that batches may run in slices (ferry_model_options.batch_slicing). Decided at load from the
 * operators and their attributes; conservative (a model using Shape, for one, is not). */
bool ferry_model_batch_separable(const ferry_model *model);
/* Number of parameters (elements of all initializers) and their bytes. */
void ferry_model_parameter_stats(const ferry_model *model, uint64_t *count, uint64_t *bytes);

/* ---------------------------------------------------------------------------------------
 * Execution contexts: one per concurrent execution. A context owns the memory plan and arena of
 * its runs; it is not thread-safe itself, but any number of contexts may run the same model at
 * once.
 * ------------------------------------------------------------------------------------- */

typedef struct ferry_context ferry_context;

/* Creates a context for MODEL. The model must outlive the context. */
ferry_status *ferry_context_create(const ferry_model *model, ferry_context **out);

void ferry_context_destroy(ferry_context *ctx);

/* Runs the model. INPUTS holds one view per model input, in ferry_model_input_*() order; the
 * views are borrowed for the duration of the call. Dtypes and shapes are checked against the
 * model before anything runs. A new input shape builds a new memory plan; repeating shapes
 * reuses it without allocating. On failure the outputs of the previous run are gone. */
ferry_status *ferry_context_run(ferry_context *ctx, const ferry_tensor_view *inputs,
                                size_t input_count);

/* Samples per slice in the last successful run, or 0 when the batch ran whole (see
 * ferry_model_options.disable_batch_slicing). */
int64_t ferry_context_slice_size(const ferry_context *ctx);

/* The view of output INDEX from the last successful run, owned by the context and valid until
 * the next run or ferry_context_destroy(). */
ferry_status *ferry_context_output(const ferry_context *ctx, size_t index, ferry_tensor_view *out);

/* ---------------------------------------------------------------------------------------
 * Profiling: per-node run counts and wall time, as ONNX Runtime's profiler and TFLite's
 * benchmark_model report them. Off by default; when off a run pays a NULL check per node. Like the
 * context itself, these functions must not be called while another thread runs the context.
 * ------------------------------------------------------------------------------------- */

/* Turns per-node counters on or off. Enabling allocates one zeroed counter per node, owned by
 * the context (enabling again keeps the counts; ferry_context_reset_profile() zeroes them);
 * disabling frees them. From then on every ferry_context_run() adds one run and the node's wall
 * time (its kernel, threads included, measured on CLOCK_MONOTONIC) to each node it executes.
 * A batch of independent samples may run as slices, several at once on the context's threads
 * (see ferry_model_options.disable_batch_slicing): a node's time is then the sum over its slices,
 * which can exceed the run's latency; shares between nodes stay meaningful. Returns
 * FERRY_ERR_NO_MEMORY when the counters cannot be allocated; profiling then stays off. */
ferry_status *ferry_context_set_profiling(ferry_context *ctx, bool enabled);

/* One node's profile. The strings belong to the model. */
typedef struct ferry_node_profile {
    const char *name;     /* the node's name; "" when the model gives none */
    const char *op;       /* as ferry_model_node_op() gives it: "Conv", "com.microsoft:Gelu" */
    uint64_t runs;        /* runs that executed the node since profiling was enabled or reset */
    uint64_t nanoseconds; /* their total time, summed over batch slices */
} ferry_node_profile;

/* The profile of node INDEX, numbered in execution order as ferry_model_node_op() numbers
 * them. Nodes that never run as steps report 0 runs: those folded into constants at load, those
 * fused into the node that produces their input (an activation applied by its Conv), and those
 * evaluated while a plan is built (shape computations, control flow). Returns
 * FERRY_ERR_INVALID_ARGUMENT when profiling is off and FERRY_ERR_NOT_FOUND for an index out of
 * range. */
ferry_status *ferry_context_node_profile(const ferry_context *ctx, size_t index,
                                         ferry_node_profile *out);

/* Zeroes every node's counters, for instance after warm-up runs. A no-op when profiling is
 * off. */
void ferry_context_reset_profile(ferry_context *ctx);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_H */
