/* graph.h - the loaded model: values, nodes in execution order, constants.
 *
 * A ferry_model is built once by the loader (onnx_load.c), checked and optimised by graph.c,
 * and never changes afterwards, so any number of execution contexts may read it at once.
 * Everything it points to lives in its pool or in the mapped model file.
 */
#ifndef ENGINE_GRAPH_H
#define ENGINE_GRAPH_H

#include "core/pool.h"
#include "engine/op.h"

typedef enum eng_value_kind {
    ENG_VALUE_NODE = 0, /* produced by a node at run time */
    ENG_VALUE_INPUT,    /* provided by the caller */
    ENG_VALUE_CONST,    /* initializer, Constant node or folded at load */
} eng_value_kind;

typedef struct eng_value {
    const char *name;
    eng_value_kind kind;
    int producer;               /* node index for ENG_VALUE_NODE, else -1 */
    eng_tensor tensor;          /* CONST: the data; INPUT: declared dtype and dims (-1 unknown) */
    int declared_rank;          /* INPUT/outputs: -1 when the model gives no shape */
    const char **dim_names;     /* INPUT/outputs: symbolic dimension names or NULL */
    ferry_dtype declared_dtype; /* from value_info/inputs/outputs, UNDEFINED if unknown */
    bool needs_value;           /* shape inference reads its data: compute it while planning */
    bool misaligned; /* CONST read in place from the file although not aligned to its element:
                      * graph finishing copies it unless only weight packing reads it */
    bool keyed;      /* an input whose data is part of the plan's key */
} eng_value;

typedef struct eng_attr {
    const char *name;
    eng_attr_type type;
    int64_t i;
    float f;
    const char *s; /* NUL-terminated copy */
    size_t count;  /* INTS, FLOATS, STRINGS */
    int64_t *ints;
    float *floats;
    const char **strings; /* STRINGS: NUL-terminated copies */
    eng_tensor *t;
    const uint8_t *graph_data; /* GRAPH: the GraphProto bytes until the subgraph is loaded */
    size_t graph_len;
    ferry_model *graph; /* GRAPH: the loaded subgraph */
} eng_attr;

struct eng_node {
    const char *name;
    const char *op_type;
    const char *domain;
    int n_in, n_out;
    int n_implicit; /* the last n_implicit inputs are outer values its subgraphs read */
    int *in;        /* value indices; -1 for an absent optional input */
    int *out;       /* value indices; -1 for an absent optional output */
    int n_attrs;
    eng_attr *attrs;
    const eng_op *op;
    int opset;
    void *state;  /* from op->init */
    void *packed; /* from op->pack */
    bool folded;  /* computed at load (outputs are constants) or fused into its producer */
    eng_fused_activation activation; /* applied by this node's op to output 0 */
    bool fused_residual; /* Conv: input 3 is an Add's other operand, added before activation */
    bool plan_time;      /* its outputs are needed by shape inference: run while planning */
};

typedef struct eng_opset {
    const char *domain;
    int64_t version;
} eng_opset;

typedef struct eng_mapping {
    void *addr;
    size_t size;
} eng_mapping;

struct ferry_model {
    core_pool pool;
    eng_mapping file;       /* the model file when opened from a path */
    eng_mapping *externals; /* external data files */
    size_t n_externals;
    char *dir; /* the model's folder, for external data; NULL from memory */

    int64_t ir_version, model_version;
    const char *producer_name, *producer_version, *domain, *doc_string, *graph_name;
    eng_opset *opsets;
    size_t n_opsets;
    const char **prop_keys, **prop_values;
    size_t n_props;

    eng_value *values;
    int n_values, cap_values;
    eng_node *nodes; /* execution order after graph_finish */
    int n_nodes;
    int *inputs; /* caller-provided values, in graph order */
    int n_inputs;
    int *outputs;
    int n_outputs;
    uint64_t max_weight_bytes, weight_bytes;
    int intra_op_threads;
    bool batch_separable;     /* samples never mix: a batch may run in slices (batch_split.h) */
    size_t batch_slice_bytes; /* activations one slice may hold; 0: never slice */
    uint64_t param_count, param_bytes;
    const char **node_ops; /* "Domain:Op" per node, for ferry_model_node_op */

    /* Subgraphs (If/Loop/Scan bodies) are ferry_models too. Their inputs are the formal ones
     * followed by captures: values of enclosing graphs they read, which their node receives
     * as implicit inputs. The root owns every subgraph. */
    ferry_model *parent;
    int n_formal_inputs;
    const char **capture_names;
    int n_captures, cap_captures;
    ferry_model **subgraphs;
    size_t n_subgraphs, cap_subgraphs;

    /* name -> value index, open addressing */
    int *index;
    size_t index_cap;
};

/* --- onnx_load.c --- */

/* Decodes an onnx.TensorProto into T, using the bytes in place when aligned. NAME receives the
 * tensor's name (pool-owned) when not NULL. MODEL may be NULL (no external data allowed). */
ferry_status *eng_parse_tensor(ferry_model *model, core_pool *pool, const uint8_t *buf, size_t len,
                               eng_tensor *t, const char **name);

/* Decodes a ModelProto held in DATA into MODEL (already zeroed, with dir/options set). */
ferry_status *eng_load_model(ferry_model *model, const uint8_t *data, size_t size);

/* The subgraph held by graph attribute NAME of node N, or NULL. */
const ferry_model *eng_node_subgraph(const eng_node *n, const char *name);

/* --- graph.c --- */

/* Looks up a value by name; -1 when absent. */
int eng_value_find(const ferry_model *model, const char *name);
/* Adds a value named NAME (pool-copied by the caller); returns its index or -1 when out of
 * memory. */
int eng_value_add(ferry_model *model, const char *name);

/* Sorts the nodes, resolves operators, folds constants and marks values shape inference
 * needs. Called once by the loader after every node is read. */
ferry_status *eng_graph_finish(ferry_model *model);

/* The largest number of elements one tensor may have (2^40), so sizes never overflow. */
#define ENG_MAX_ELEMENTS ((int64_t)1 << 40)

/* Checks T's dtype and dims describe a tensor Ferry can hold. */
ferry_status *eng_check_tensor_shape(const eng_tensor *t);

#endif
