/* codec.h - KServe v2 inference requests and responses <-> tensor views.
 *
 * Decoding reads the JSON request (and, with Triton's binary tensor data extension, the raw
 * bytes after it) straight into tensor views: binary tensors are used in place inside the body
 * when their alignment allows, JSON data is parsed element by element into one buffer sized from
 * the declared shape. Names, datatypes and shapes are checked against the model's signature
 * before any data is decoded, and every count that comes from the request is bounded by the
 * body's length before memory is taken for it. Errors are FERRY_ERR_INVALID_ARGUMENT (or
 * FERRY_ERR_UNSUPPORTED for protocol features Ferry does not offer) with a message naming the
 * input at fault.
 *
 * The codec knows nothing about HTTP or the runtime: the front end fills an srv_model_sig from
 * the runtime's model description, so the decoder can be unit-tested and fuzzed alone.
 */
#ifndef SERVE_CODEC_H
#define SERVE_CODEC_H

#include "ferry.h"
#include "serve/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most inputs or outputs a request may name; a model with more is served, but requests list at
 * most this many outputs explicitly. */
#define SRV_MAX_TENSORS 1024

/* One declared model input or output, as a request must send it: DIMS include the batch
 * dimension when the model batches. -1 is a dimension of any size. */
typedef struct srv_tensor_spec {
    const char *name;
    ferry_dtype dtype;
    int rank;
    int64_t dims[FERRY_MAX_RANK];
    bool optional; /* an input the request may leave out */
} srv_tensor_spec;

typedef struct srv_model_sig {
    const srv_tensor_spec *inputs;
    size_t n_inputs;
    const srv_tensor_spec *outputs;
    size_t n_outputs;
    int64_t max_batch_size; /* > 0: dims[0] is the batch, at most this many; 0: no batching */
} srv_model_sig;

typedef struct srv_output_req {
    size_t index; /* into the signature's outputs */
    bool binary;  /* send as raw bytes after the JSON */
} srv_output_req;

/* A decoded request. Everything it points to lives in the arena passed to the decoder, or in
 * the request body (binary tensors used in place): both must outlive it. */
typedef struct srv_infer_req {
    const char *id;            /* the request's "id", NUL-terminated; NULL when absent */
    ferry_tensor_view *inputs; /* n_inputs views in the signature's order */
    bool *given;               /* false for an optional input the request left out */
    size_t n_inputs;
    srv_output_req *outputs; /* the outputs to send back, in the order to send them */
    size_t n_outputs;
    int64_t timeout_us; /* parameters.timeout; 0 when absent */
    int64_t priority;   /* parameters.priority; 0 when absent */
    int64_t batch;      /* batch size (first dim) for batching models, else 1 */
    bool any_binary_output;
} srv_infer_req;

/* The protocol's name for DT ("FP32", "INT64", "BOOL" ...), or NULL when it has none. */
const char *srv_dtype_wire_name(ferry_dtype dt);
/* The dtype for a wire name, or FERRY_DTYPE_UNDEFINED ("BYTES" is FERRY_DTYPE_STRING). */
ferry_dtype srv_dtype_from_wire(const char *name, size_t len);

/* Decodes an inference request for the model described by SIG.
 *
 * BODY holds BODY_LEN bytes. HEADER_LEN is the value of the Inference-Header-Content-Length
 * header, or -1 when the request has none: then the whole body is JSON. With a header length, the
 * JSON is the first HEADER_LEN bytes and the binary tensors follow in the order their inputs
 * appear; 0 means the body is the raw bytes of the model's only input. The body is not
 * modified, but binary tensors point into it. MAX_ELEMENTS bounds the elements of one tensor.
 *
 * On success OUT is filled from ARENA. On failure the returned error (the caller owns it) names
 * what is wrong; OUT and the arena's contents are then meaningless but safe to release. */
ferry_status *srv_decode_infer(const srv_model_sig *sig, const char *body, size_t body_len,
                               int64_t header_len, srv_arena *arena, srv_infer_req *out);

/* Encodes the response for REQ: the JSON part into JSON. OUTPUTS holds one view per entry of
 * REQ->outputs (same order). MODEL and VERSION go into model_name / model_version. Outputs sent
 * as binary are only described in the JSON (binary_data_size); the caller sends their bytes,
 * in the same order, after the JSON. Fails with FERRY_ERR_NO_MEMORY when JSON's maximum is
 * reached, or FERRY_ERR_UNSUPPORTED for an output type JSON cannot carry. */
ferry_status *srv_encode_infer(const srv_model_sig *sig, const srv_infer_req *req,
                               const char *model, const char *version,
                               const ferry_tensor_view *outputs, srv_buf *json);

/* Appends the JSON error body {"error": MESSAGE}. */
void srv_encode_error(srv_buf *json, const char *message);

/* Bytes of a view's data (count * element size); 0 for types without a flat size. */
size_t srv_view_bytes(const ferry_tensor_view *v);

#endif
