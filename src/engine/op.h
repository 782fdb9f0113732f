/* op.h - the contract between the engine and its operators.
 *
 * Each operator family lives in one file under src/engine/ops/ and exports a table of eng_op
 * entries that ops/registry.c lists. The engine calls, per node:
 *
 *   init   once at model load: read and validate attributes, keep what run needs in *state.
 *   infer  each time a memory plan is built (new input shapes): check input dtypes and shapes,
 *          set every output's dtype, rank and dims, and say how much scratch memory run needs.
 *          Inputs flagged in value_inputs have their data available here (Reshape's shape,
 *          Slice's starts...); other inputs' data pointers may be NULL.
 *   run    on every execution: compute outputs from inputs. Must not allocate; may use the
 *          workspace reserved by infer. Returns an error only for data-dependent problems
 *          (an index out of range), never for anything infer could have checked.
 *
 * Errors from init and infer should name the problem in the user's terms; the engine prefixes
 * the node's name and operator.
 */
#ifndef ENGINE_OP_H
#define ENGINE_OP_H

#include "ferry.h"
#include "core/status.h"
#include "core/dtype.h"
#include "core/pool.h"
#include "core/threadpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Engine tensors are the public view type: dtype, rank, dims, data. */
typedef ferry_tensor_view eng_tensor;

typedef struct eng_node eng_node;

typedef enum eng_attr_type {
    ENG_ATTR_UNDEFINED = 0,
    ENG_ATTR_FLOAT = 1,
    ENG_ATTR_INT = 2,
    ENG_ATTR_STRING = 3,
    ENG_ATTR_TENSOR = 4,
    ENG_ATTR_GRAPH = 5,
    ENG_ATTR_FLOATS = 6,
    ENG_ATTR_INTS = 7,
    ENG_ATTR_STRINGS = 8,
    ENG_ATTR_TENSORS = 9,
    ENG_ATTR_GRAPHS = 10,
    ENG_ATTR_SPARSE_TENSOR = 11,
    ENG_ATTR_SPARSE_TENSORS = 12,
    ENG_ATTR_TYPE_PROTO = 13,
    ENG_ATTR_TYPE_PROTOS = 14,
} eng_attr_type;

/* An activation the graph optimiser moved into the producing operator (Conv + Relu ...). */
typedef enum eng_activation {
    ENG_ACT_NONE = 0,
    ENG_ACT_RELU,       /* max(x, 0) */
    ENG_ACT_CLIP,       /* min(max(x, a), b) */
    ENG_ACT_LEAKY_RELU, /* x < 0 ? a * x : x */
} eng_activation;

typedef struct eng_fused_activation {
    eng_activation kind;
    float a, b;
} eng_fused_activation;

/* eng_op.flags */
#define ENG_OP_FUSES_ACTIVATION 1u /* run applies eng_node_activation() to output 0 */

/* One call of an operator on concrete tensors. */
typedef struct eng_op_call {
    const eng_node *node;
    int opset;                /* the model's opset version for the node's domain */
    int n_in, n_out;          /* as the node lists them, including trailing optional ones */
    eng_tensor **in;          /* in[i] is NULL when an optional input is absent ("" in the model) */
    eng_tensor **out;         /* out[i] is NULL when an optional output is not requested */
    const void *state;        /* what init stored; shared by every thread: read only */
    void *workspace;          /* run: scratch memory of workspace_size bytes, 64-byte aligned */
    size_t workspace_size;    /* infer sets it (0 by default) */
    const void *packed;       /* what pack prepared from constant inputs (NULL when none) */
    core_threadpool *threads; /* run: the context's intra-op pool; may be NULL (one thread) */
    core_pool *strings;       /* run: where operators that create strings allocate them (valid
                               * until the next run); string tensors hold const char * elements */
} eng_op_call;

typedef struct eng_op {
    const char *domain;    /* "" for ai.onnx, "ai.onnx.ml" ... */
    const char *name;      /* op_type */
    int since_version;     /* the entry applies from this opset version up to the next entry's */
    uint32_t value_inputs; /* bit i set: infer reads the data of input i */
    ferry_status *(*init)(const eng_node *node, int opset, void **state); /* may be NULL */
    void (*fini)(void *state);                                            /* may be NULL */
    ferry_status *(*infer)(eng_op_call *call);
    ferry_status *(*run)(eng_op_call *call);
    /* Optional, called once at load after constant folding: INPUTS[i] is the tensor of input i
     * when it is a constant (weights), NULL otherwise (also for i past the node's inputs, up
     * to 64). Lets an operator prepare weights once
     * (packed GEMM panels, folded layouts) for every context to share; *packed is freed with
     * unpack. A NULL *packed means "nothing to prepare". */
    ferry_status *(*pack)(const eng_node *node, const eng_tensor *const *inputs, const void *state,
                          void **packed);
    void (*unpack)(void *packed);
    uint32_t flags; /* ENG_OP_* */
    /* Control flow (If, Loop, Scan): computes outputs, shapes included, in one go, allocating
     * them from POOL; INS has the node's inputs followed by the outer values its subgraphs
     * read. Such nodes run while planning, with everything they read known. */
    ferry_status *(*eval)(const eng_node *node, eng_tensor **ins, int n_ins, eng_tensor **outs,
                          core_pool *pool);
} eng_op;

/* Every operator family exports its table like this, listed in ops/registry.c. */
typedef struct eng_op_table {
    const eng_op *ops;
    size_t count;
} eng_op_table;

/* Finds the implementation of DOMAIN/NAME for a model importing OPSET of that domain: the entry
 * with the greatest since_version <= OPSET. NULL when Ferry has none. */
const eng_op *eng_op_find(const char *domain, const char *name, int opset);

/* --- node and attribute access (graph.c) --- */

const char *eng_node_name(const eng_node *node);    /* never NULL; "" when unnamed */
const char *eng_node_op_type(const eng_node *node); /* "Conv" */

/* The activation fused into the node's output 0 ({ENG_ACT_NONE} when none); never NULL. */
const eng_fused_activation *eng_node_activation(const eng_node *node);
/* True when a graph pass fused a following Add into the node (Conv): its input 3 is the Add's
 * other operand, to be added to output 0 before the activation. */
bool eng_node_fused_residual(const eng_node *node);

/* True when the node has an attribute NAME. */
bool eng_attr_has(const eng_node *node, const char *name);
/* The attribute's type, ENG_ATTR_UNDEFINED when absent. */
eng_attr_type eng_attr_kind(const eng_node *node, const char *name);
/* Scalar attributes, or DFLT when absent. */
int64_t eng_attr_int(const eng_node *node, const char *name, int64_t dflt);
float eng_attr_float(const eng_node *node, const char *name, float dflt);
/* A NUL-terminated string attribute, or DFLT when absent. */
const char *eng_attr_string(const eng_node *node, const char *name, const char *dflt);
/* List attributes: the array (owned by the model) and its length in *count, or NULL and
 * *count = 0 when absent. */
const int64_t *eng_attr_ints(const eng_node *node, const char *name, size_t *count);
const float *eng_attr_floats(const eng_node *node, const char *name, size_t *count);
/* A string list attribute (TreeEnsemble's nodes_modes): NUL-terminated strings owned by the
 * model, or NULL and *count = 0 when absent. */
const char *const *eng_attr_strings(const eng_node *node, const char *name, size_t *count);
/* A tensor attribute (Constant's value, ConstantOfShape's value), or NULL when absent. */
const eng_tensor *eng_attr_tensor(const eng_node *node, const char *name);

/* --- helpers for operators (op_util.c) --- */

/* Product of dims; 1 for a scalar. */
int64_t eng_numel(const eng_tensor *t);
/* Bytes of T's data. */
size_t eng_nbytes(const eng_tensor *t);
/* Copies dtype, rank and dims (not data) from SRC to DST. */
void eng_same_shape(eng_tensor *dst, const eng_tensor *src);
/* Sets DST's rank and dims. */
void eng_set_shape(eng_tensor *dst, int rank, const int64_t *dims);
/* Formats a shape as "[2,3,4]" into BUF (for error messages); returns BUF. */
const char *eng_shape_str(const eng_tensor *t, char *buf, size_t size);

/* Normalises AXIS (negative counts from the end) for a tensor of RANK; error when out of
 * [-rank, rank-1]. */
ferry_status *eng_axis(int64_t axis, int rank, int *out);

/* Numpy-style multidirectional broadcasting of N shapes into OUT's rank and dims; error
 * naming the shapes when they are incompatible. */
ferry_status *eng_broadcast_shapes(eng_tensor *out, const eng_tensor *const *ins, int n);

/* Reads the integer tensor T (int32 or int64, any rank) into DST (up to MAX values); error
 * when T is not an integer tensor or has more than MAX elements. *count receives the count. */
ferry_status *eng_read_ints(const eng_tensor *t, int64_t *dst, size_t max, size_t *count);

/* Writes a dense row-major tensor of RANK/DIMS whose element (i0, i1, ...) is read from SRC at
 * element offset i0*strides[0] + i1*strides[1] + ...; strides may be 0 (broadcast) or negative
 * (reversed). Elements are ESZ bytes. Behind Transpose, Slice, Expand (ops/layout_copy.c). */
void eng_copy_strided(void *dst, const void *src, size_t esz, int rank, const int64_t *dims,
                      const int64_t *strides);

/* Copies SRC into DST with every byte it refers to allocated from POOL: tensor data, the text
 * of strings, and the elements of sequences and optionals, recursively. */
ferry_status *eng_copy_value(core_pool *pool, const eng_tensor *src, eng_tensor *dst);

/* True when A and B hold the same value: type, shape and contents (strings by text, sequences
 * element by element). */
bool eng_value_equal(const eng_tensor *a, const eng_tensor *b);

/* Error for an input dtype that the operator does not support. */
ferry_status *eng_bad_dtype(const char *what, ferry_dtype dt);

#endif
