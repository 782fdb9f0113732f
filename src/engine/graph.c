/* graph.c - the model's value table, attribute access and the load-time graph passes:
 * topological order, operator resolution, constant folding and the marking of values that
 * shape inference needs.
 */
#include "engine/graph.h"
#include "engine/plan.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------
 * Value table
 * ---------------------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

int eng_value_find(const ferry_model *m, const char *name)
{
    if (!m->index_cap) return -1;
    size_t mask = m->index_cap - 1;
    for (size_t i = hash_str(name) & mask;; i = (i + 1) & mask) {
        int v = m->index[i];
        if (v < 0) return -1;
        if (!strcmp(m->values[v].name, name)) return v;
    }
}

static bool grow_index(ferry_model *m)
{
    size_t cap = m->index_cap ? m->index_cap * 2 : 64;
    int *idx = core_pool_alloc(&m->pool, cap * sizeof(int), 8);
    if (!idx) return false;
    memset(idx, 0xff, cap * sizeof(int));
    for (int v = 0; v < m->n_values; v++) {
        size_t i = hash_str(m->values[v].name) & (cap - 1);
        while (idx[i] >= 0) i = (i + 1) & (cap - 1);
        idx[i] = v;
    }
    m->index = idx;
    m->index_cap = cap;
    return true;
}

int eng_value_add(ferry_model *m, const char *name)
{
    if (m->n_values >= (1 << 28)) return -1;
    if (m->n_values == m->cap_values) {
        int cap = m->cap_values ? m->cap_values * 2 : 64;
        eng_value *vals = core_pool_alloc(&m->pool, (size_t)cap * sizeof(eng_value), 8);
        if (!vals) return -1;
        if (m->n_values) memcpy(vals, m->values, (size_t)m->n_values * sizeof(eng_value));
        m->values = vals;
        m->cap_values = cap;
    }
    if ((size_t)(m->n_values + 1) * 2 > m->index_cap && !grow_index(m)) return -1;
    int v = m->n_values++;
    eng_value *val = &m->values[v];
    memset(val, 0, sizeof(*val));
    val->name = name;
    val->producer = -1;
    val->declared_rank = -1;
    size_t mask = m->index_cap - 1;
    size_t i = hash_str(name) & mask;
    while (m->index[i] >= 0) i = (i + 1) & mask;
    m->index[i] = v;
    return v;
}

/* ------------------------------------------------------------------------------------------
 * Attributes
 * ---------------------------------------------------------------------------------------- */

static const eng_attr *find_attr(const eng_node *n, const char *name)
{
    for (int i = 0; i < n->n_attrs; i++)
        if (!strcmp(n->attrs[i].name, name)) return &n->attrs[i];
    return NULL;
}

const ferry_model *eng_node_subgraph(const eng_node *n, const char *name)
{
    const eng_attr *a = find_attr(n, name);
    return a && a->type == ENG_ATTR_GRAPH ? a->graph : NULL;
}

const eng_fused_activation *eng_node_activation(const eng_node *n)
{
    return &n->activation;
}

bool eng_node_fused_residual(const eng_node *n)
{
    return n->fused_residual;
}

const char *eng_node_name(const eng_node *n)
{
    return n->name ? n->name : "";
}

const char *eng_node_op_type(const eng_node *n)
{
    return n->op_type;
}

bool eng_attr_has(const eng_node *n, const char *name)
{
    return find_attr(n, name) != NULL;
}

eng_attr_type eng_attr_kind(const eng_node *n, const char *name)
{
    const eng_attr *a = find_attr(n, name);
    return a ? a->type : ENG_ATTR_UNDEFINED;
}

int64_t eng_attr_int(const eng_node *n, const char *name, int64_t dflt)
{
    const eng_attr *a = find_attr(n, name);
    return a && a->type == ENG_ATTR_INT ? a->i : dflt;
}

float eng_attr_float(const eng_node *n, const char *name, float dflt)
{
    const eng_attr *a = find_attr(n, name);
    if (!a) return dflt;
    if (a->type == ENG_ATTR_FLOAT) return a->f;
    if (a->type == ENG_ATTR_INT) return (float)a->i;
    return dflt;
}

const char *eng_attr_string(const eng_node *n, const char *name, const char *dflt)
{
    const eng_attr *a = find_attr(n, name);
    return a && a->type == ENG_ATTR_STRING && a->s ? a->s : dflt;
}

const int64_t *eng_attr_ints(const eng_node *n, const char *name, size_t *count)
{
    const eng_attr *a = find_attr(n, name);
    if (!a || a->type != ENG_ATTR_INTS) {
        *count = 0;
        return NULL;
    }
    *count = a->count;
    static const int64_t empty[1] = {0};
    return a->ints ? a->ints : empty;
}

const float *eng_attr_floats(const eng_node *n, const char *name, size_t *count)
{
    const eng_attr *a = find_attr(n, name);
    if (!a || a->type != ENG_ATTR_FLOATS) {
        *count = 0;
        return NULL;
    }
    *count = a->count;
    static const float empty[1] = {0};
    return a->floats ? a->floats : empty;
}

const char *const *eng_attr_strings(const eng_node *n, const char *name, size_t *count)
{
    const eng_attr *a = find_attr(n, name);
    if (!a || a->type != ENG_ATTR_STRINGS) {
        *count = 0;
        return NULL;
    }
    *count = a->count;
    static const char *const empty[1] = {""};
    return a->strings ? (const char *const *)a->strings : empty;
}

const eng_tensor *eng_attr_tensor(const eng_node *n, const char *name)
{
    const eng_attr *a = find_attr(n, name);
    return a && a->type == ENG_ATTR_TENSOR ? a->t : NULL;
}

/* ------------------------------------------------------------------------------------------
 * Graph passes
 * ---------------------------------------------------------------------------------------- */

static int64_t opset_of(const ferry_model *m, const char *domain)
{
    for (size_t i = 0; i < m->n_opsets; i++)
        if (!strcmp(m->opsets[i].domain, domain)) return m->opsets[i].version;
    return -1;
}

/* Kahn's algorithm; nodes end up in m->nodes in execution order. */
static ferry_status *sort_nodes(ferry_model *m)
{
    int n = m->n_nodes;
    if (n == 0) return NULL;
    ferry_status *st = NULL;
    int *pending = calloc((size_t)n, sizeof(int));
    int *order = malloc((size_t)n * sizeof(int));
    int *queue = malloc((size_t)n * sizeof(int));
    /* consumers: CSR list of nodes reading each value */
    int *cstart = calloc((size_t)m->n_values + 1, sizeof(int));
    int *clist = NULL;
    eng_node *sorted = NULL;
    if (!pending || !order || !queue || !cstart) goto nomem;
    size_t edges = 0;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < m->nodes[k].n_in; i++) {
            int v = m->nodes[k].in[i];
            if (v >= 0 && m->values[v].kind == ENG_VALUE_NODE) {
                cstart[v + 1]++;
                pending[k]++;
                edges++;
            }
        }
    for (int v = 0; v < m->n_values; v++) cstart[v + 1] += cstart[v];
    clist = malloc((edges + 1) * sizeof(int));
    if (!clist) goto nomem;
    {
        int *fill = calloc((size_t)m->n_values + 1, sizeof(int));
        if (!fill) goto nomem;
        for (int k = 0; k < n; k++)
            for (int i = 0; i < m->nodes[k].n_in; i++) {
                int v = m->nodes[k].in[i];
                if (v >= 0 && m->values[v].kind == ENG_VALUE_NODE) clist[cstart[v] + fill[v]++] = k;
            }
        free(fill);
    }
    int head = 0, tail = 0, done = 0;
    for (int k = 0; k < n; k++)
        if (!pending[k]) queue[tail++] = k;
    while (head < tail) {
        int k = queue[head++];
        order[done++] = k;
        for (int o = 0; o < m->nodes[k].n_out; o++) {
            int v = m->nodes[k].out[o];
            if (v < 0) continue;
            for (int c = cstart[v]; c < cstart[v + 1]; c++)
                if (--pending[clist[c]] == 0) queue[tail++] = clist[c];
        }
    }
    if (done < n) {
        for (int k = 0; k < n; k++)
            if (pending[k]) {
                st = core_error(FERRY_ERR_INVALID_MODEL,
                                "the graph has a cycle through node '%s' (%s)", m->nodes[k].name,
                                m->nodes[k].op_type);
                goto out;
            }
    }
    sorted = core_pool_alloc(&m->pool, (size_t)n * sizeof(eng_node), 8);
    if (!sorted) goto nomem;
    for (int i = 0; i < n; i++) sorted[i] = m->nodes[order[i]];
    m->nodes = sorted;
    for (int k = 0; k < n; k++)
        for (int o = 0; o < sorted[k].n_out; o++)
            if (sorted[k].out[o] >= 0) m->values[sorted[k].out[o]].producer = k;
    goto out;
nomem:
    st = core_error(FERRY_ERR_NO_MEMORY, "out of memory while sorting the graph");
out:
    free(pending);
    free(order);
    free(queue);
    free(cstart);
    free(clist);
    return st;
}

static ferry_status *resolve_ops(ferry_model *m)
{
    for (int k = 0; k < m->n_nodes; k++) {
        eng_node *n = &m->nodes[k];
        int64_t opset = opset_of(m, n->domain);
        const char *dom = *n->domain ? n->domain : "ai.onnx";
        if (opset < 0)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "node '%s' (%s) uses domain '%s', which the model does not import",
                              n->name, n->op_type, dom);
        n->opset = opset > 1000 ? 1000 : (int)opset;
        n->op = eng_op_find(n->domain, n->op_type, n->opset);
        if (!n->op && *n->name)
            return core_error(FERRY_ERR_UNSUPPORTED,
                              "unsupported operator '%s' (domain '%s', opset %lld) in node '%s'",
                              n->op_type, dom, (long long)opset, n->name);
        if (!n->op)
            return core_error(FERRY_ERR_UNSUPPORTED,
                              "unsupported operator '%s' (domain '%s', opset %lld) in node #%d "
                              "(unnamed)",
                              n->op_type, dom, (long long)opset, k);
        if (n->op->init) {
            ferry_status *st = n->op->init(n, n->opset, &n->state);
            if (st) return core_error_wrap(st, "node '%s' (%s)", n->name, n->op_type);
        }
    }
    return NULL;
}

/* Runs nodes whose inputs are all constants once, at load, so that no context repeats the
 * work and their results are shared. Their outputs become constants. */
static ferry_status *fold_constants(ferry_model *m)
{
    for (int k = 0; k < m->n_nodes; k++) {
        eng_node *n = &m->nodes[k];
        bool all_const = n->n_in > 0;
        for (int i = 0; i < n->n_in && all_const; i++)
            if (n->in[i] >= 0 && m->values[n->in[i]].kind != ENG_VALUE_CONST) all_const = false;
        if (!all_const) continue;
        eng_tensor *ins[64], outs[64];
        if (n->n_in > 64 || n->n_out > 64) continue;
        for (int i = 0; i < n->n_in; i++)
            ins[i] = n->in[i] >= 0 ? &m->values[n->in[i]].tensor : NULL;
        ferry_status *st = eng_eval_node(n, ins, outs, &m->pool);
        if (st) return st;
        for (int o = 0; o < n->n_out; o++) {
            if (n->out[o] < 0) continue;
            eng_value *v = &m->values[n->out[o]];
            v->kind = ENG_VALUE_CONST;
            v->tensor = outs[o];
            v->producer = -1;
        }
        n->folded = true;
    }
    return NULL;
}

/* Marks every value whose data shape inference reads, following producers back so that the
 * whole chain runs while planning. Shape (and Size) only need their input's shape, so the walk
 * stops there; caller inputs reached this way become part of the plan's key. */
static void demand(ferry_model *m, int v)
{
    /* An explicit stack keeps hostile deep graphs from overflowing the C stack. */
    int *stack = malloc(((size_t)m->n_values + 1) * sizeof(int));
    if (!stack) return;
    int top = 0;
    stack[top++] = v;
    while (top) {
        int x = stack[--top];
        eng_value *val = &m->values[x];
        if (val->needs_value) continue;
        val->needs_value = true;
        if (val->kind == ENG_VALUE_INPUT) val->keyed = true;
        if (val->kind != ENG_VALUE_NODE) continue;
        eng_node *p = &m->nodes[val->producer];
        p->plan_time = true;
        if (!strcmp(p->op_type, "Shape") || !strcmp(p->op_type, "Size")) continue;
        for (int i = 0; i < p->n_in; i++)
            if (p->in[i] >= 0 && !m->values[p->in[i]].needs_value && top < m->n_values)
                stack[top++] = p->in[i];
    }
    free(stack);
}

static void mark_plan_values(ferry_model *m)
{
    for (int k = 0; k < m->n_nodes; k++) {
        eng_node *n = &m->nodes[k];
        if (n->folded) continue;
        if (n->op->eval) {
            /* Control flow runs while planning: everything it reads must be known then. */
            n->plan_time = true;
            for (int i = 0; i < n->n_in; i++)
                if (n->in[i] >= 0) demand(m, n->in[i]);
            continue;
        }
        for (int i = 0; i < n->n_in && i < 32; i++)
            if ((n->op->value_inputs >> i & 1) && n->in[i] >= 0) demand(m, n->in[i]);
    }
}

/* Reads a constant scalar float input, for Clip's bounds. */
static bool const_scalar(const ferry_model *m, int v, float *out)
{
    if (v < 0) return false;
    const eng_value *val = &m->values[v];
    if (val->kind != ENG_VALUE_CONST || eng_numel(&val->tensor) != 1) return false;
    if (val->tensor.dtype != FERRY_DTYPE_FLOAT) return false;
    *out = *(const float *)val->tensor.data;
    return true;
}

/* Describes node N as an activation that a producer can apply in its output loop. */
static bool as_activation(const ferry_model *m, const eng_node *n, eng_fused_activation *act)
{
    if (*n->domain || n->n_in < 1 || n->n_out != 1) return false;
    if (!strcmp(n->op_type, "Relu")) {
        *act = (eng_fused_activation){ENG_ACT_RELU, 0, 0};
        return true;
    }
    if (!strcmp(n->op_type, "LeakyRelu")) {
        *act = (eng_fused_activation){ENG_ACT_LEAKY_RELU, eng_attr_float(n, "alpha", 0.01f), 0};
        return true;
    }
    if (!strcmp(n->op_type, "Clip")) {
        float lo = -3.402823466e38f, hi = 3.402823466e38f;
        if (n->opset < 11) {
            lo = eng_attr_float(n, "min", lo);
            hi = eng_attr_float(n, "max", hi);
        } else {
            if (n->n_in > 1 && n->in[1] >= 0 && !const_scalar(m, n->in[1], &lo)) return false;
            if (n->n_in > 2 && n->in[2] >= 0 && !const_scalar(m, n->in[2], &hi)) return false;
        }
        *act = (eng_fused_activation){ENG_ACT_CLIP, lo, hi};
        return true;
    }
    return false;
}

/* Moves an activation into the operator producing its input when that operator can apply it
 * while writing its output (Conv, Gemm, MatMul): one pass over memory instead of two. */
static void fuse_matmul_bias(ferry_model *m, const int *uses);
static void fuse_conv_residual(ferry_model *m, const int *uses);

static void fuse_activations(ferry_model *m)
{
    int *uses = calloc((size_t)m->n_values + 1, sizeof(int));
    if (!uses) return; /* an optimisation: skipping it is correct */
    for (int k = 0; k < m->n_nodes; k++)
        for (int i = 0; i < m->nodes[k].n_in; i++)
            if (m->nodes[k].in[i] >= 0) uses[m->nodes[k].in[i]]++;
    for (int i = 0; i < m->n_outputs; i++) uses[m->outputs[i]] += 2;
    /* Bias first, so that MatMul + Add + Relu ends as one MatMul. A fused Add's output keeps
     * its single use (now by the activation), so the counts stay right. */
    fuse_matmul_bias(m, uses);
    fuse_conv_residual(m, uses);
    for (int k = 0; k < m->n_nodes; k++) {
        eng_node *act = &m->nodes[k];
        eng_fused_activation fa;
        if (act->folded || !as_activation(m, act, &fa)) continue;
        int v = act->in[0];
        if (v < 0 || m->values[v].kind != ENG_VALUE_NODE || uses[v] != 1) continue;
        eng_node *prod = &m->nodes[m->values[v].producer];
        if (prod->folded || !(prod->op->flags & ENG_OP_FUSES_ACTIVATION) ||
            prod->activation.kind != ENG_ACT_NONE || prod->out[0] != v)
            continue;
        /* The producer now writes the activation's output; the activation node is gone. */
        int out = act->out[0];
        prod->out[0] = out;
        prod->activation = fa;
        m->values[out].producer = m->values[v].producer;
        act->folded = true;
    }
    free(uses);
}

/* MatMul(A, B) followed by Add of a constant float vector over B's columns becomes MatMul with
 * that vector as its third input (a bias its kernel adds while writing the output), as exporters
 * emit Linear layers. Only when the bias provably matches: B constant with its last dimension
 * equal to the vector's length. */
static void fuse_matmul_bias(ferry_model *m, const int *uses)
{
    for (int k = 0; k < m->n_nodes; k++) {
        eng_node *add = &m->nodes[k];
        if (add->folded || *add->domain || strcmp(add->op_type, "Add") || add->n_in != 2 ||
            add->n_out != 1 || add->opset < 7)
            continue;
        for (int side = 0; side < 2; side++) {
            int v = add->in[side], c = add->in[1 - side];
            if (v < 0 || c < 0 || m->values[v].kind != ENG_VALUE_NODE || uses[v] != 1) continue;
            const eng_tensor *bias = &m->values[c].tensor;
            if (m->values[c].kind != ENG_VALUE_CONST || bias->dtype != FERRY_DTYPE_FLOAT ||
                bias->rank != 1)
                continue;
            eng_node *mm = &m->nodes[m->values[v].producer];
            if (mm->folded || *mm->domain || strcmp(mm->op_type, "MatMul") || mm->n_in != 2 ||
                mm->n_implicit || mm->out[0] != v || mm->activation.kind != ENG_ACT_NONE)
                continue;
            int b = mm->in[1];
            if (b < 0 || m->values[b].kind != ENG_VALUE_CONST) continue;
            const eng_tensor *w = &m->values[b].tensor;
            if (w->dtype != FERRY_DTYPE_FLOAT || w->rank < 2 ||
                w->dims[w->rank - 1] != bias->dims[0])
                continue;
            int *ins = core_pool_alloc(&m->pool, 4 * sizeof(int), 8);
            if (!ins) return; /* an optimisation: skipping it is correct */
            ins[0] = mm->in[0];
            ins[1] = b;
            ins[2] = c;
            mm->in = ins;
            mm->n_in = 3;
            mm->out[0] = add->out[0];
            m->values[add->out[0]].producer = m->values[v].producer;
            add->folded = true;
            break;
        }
    }
}

/* Add(Conv(...), R) becomes a Conv that adds R while writing its output (ResNet's and
 * MobileNetV2's skip connections), so that a following Relu fuses too and the sum never takes
 * a pass of its own. R must be computed before the Conv runs; with both operands from Convs,
 * the later one takes the Add. Float weights with more than one input channel per group only
 * (the GEMM paths, whose epilogue adds it); Conv itself handles shapes that broadcast. */
static void fuse_conv_residual(ferry_model *m, const int *uses)
{
    for (int k = 0; k < m->n_nodes; k++) {
        eng_node *add = &m->nodes[k];
        if (add->folded || *add->domain || strcmp(add->op_type, "Add") || add->n_in != 2 ||
            add->n_out != 1 || add->opset < 7 || add->in[0] == add->in[1])
            continue;
        for (int side = 1; side >= 0; side--) {
            int v = add->in[side], r = add->in[1 - side];
            if (v < 0 || r < 0 || m->values[v].kind != ENG_VALUE_NODE || uses[v] != 1 ||
                m->values[r].kind == ENG_VALUE_CONST)
                continue;
            int ci = m->values[v].producer;
            eng_node *conv = &m->nodes[ci];
            if (conv->folded || *conv->domain || strcmp(conv->op_type, "Conv") || conv->n_in < 2 ||
                conv->n_in > 3 || conv->n_implicit || conv->out[0] != v ||
                conv->activation.kind != ENG_ACT_NONE || conv->fused_residual)
                continue;
            int w = conv->in[1];
            if (w < 0 || m->values[w].kind != ENG_VALUE_CONST) continue;
            const eng_tensor *wt = &m->values[w].tensor;
            if (wt->dtype != FERRY_DTYPE_FLOAT || wt->rank < 3 || wt->dims[1] == 1) continue;
            if (m->values[r].kind == ENG_VALUE_NODE && m->values[r].producer >= ci) continue;
            int *ins = core_pool_alloc(&m->pool, 4 * sizeof(int), 8);
            if (!ins) return; /* an optimisation: skipping it is correct */
            ins[0] = conv->in[0];
            ins[1] = w;
            ins[2] = conv->n_in > 2 ? conv->in[2] : -1;
            ins[3] = r;
            conv->in = ins;
            conv->n_in = 4;
            conv->fused_residual = true;
            conv->out[0] = add->out[0];
            m->values[add->out[0]].producer = ci;
            add->folded = true;
            break;
        }
    }
}

/* Lets operators prepare constant inputs (weights) once for all contexts. */
static ferry_status *pack_weights(ferry_model *m)
{
    const eng_tensor *ins[64];
    for (int k = 0; k < m->n_nodes; k++) {
        eng_node *n = &m->nodes[k];
        if (n->folded || n->plan_time || !n->op->pack || n->n_in > 64) continue;
        /* Inputs the node does not have read as absent, whatever index an operator asks. */
        for (int i = 0; i < 64; i++) ins[i] = NULL;
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            ins[i] = v >= 0 && m->values[v].kind == ENG_VALUE_CONST ? &m->values[v].tensor : NULL;
        }
        ferry_status *st = n->op->pack(n, ins, n->state, &n->packed);
        if (st) return core_error_wrap(st, "node '%s' (%s)", n->name, n->op_type);
    }
    return NULL;
}

/* Whether value V (a misaligned initializer) is read only as the weights of Conv nodes that
 * pack them (float, more than one input channel per group, so not depthwise) and whose input X
 * depends on a caller input, so that no Conv reading it is ever evaluated at load. */
static bool packing_only(const ferry_model *m, int v, const bool *runtime)
{
    const eng_tensor *t = &m->values[v].tensor;
    if (t->dtype != FERRY_DTYPE_FLOAT || t->rank < 3 || t->dims[1] == 1) return false;
    for (int i = 0; i < m->n_outputs; i++)
        if (m->outputs[i] == v) return false;
    bool read = false;
    for (int k = 0; k < m->n_nodes; k++) {
        const eng_node *n = &m->nodes[k];
        for (int i = 0; i < n->n_in; i++) {
            if (n->in[i] != v) continue;
            if (i != 1 || *n->domain || strcmp(n->op_type, "Conv") || n->in[0] < 0 ||
                !runtime[n->in[0]])
                return false;
            read = true;
        }
    }
    return read;
}

/* Copies misaligned initializers into aligned memory, except weights that only Conv's packing
 * reads (it copies them a group at a time while packing): a model exported with its tensors at
 * arbitrary offsets keeps no second copy of most of its weights. */
static ferry_status *align_constants(ferry_model *m)
{
    bool *runtime = calloc((size_t)m->n_values + 1, sizeof(bool));
    if (!runtime) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    for (int v = 0; v < m->n_values; v++) runtime[v] = m->values[v].kind == ENG_VALUE_INPUT;
    for (int k = 0; k < m->n_nodes; k++) {
        const eng_node *n = &m->nodes[k];
        bool any = false;
        for (int i = 0; i < n->n_in; i++) any |= n->in[i] >= 0 && runtime[n->in[i]];
        for (int o = 0; o < n->n_out; o++)
            if (n->out[o] >= 0) runtime[n->out[o]] = any;
    }
    ferry_status *st = NULL;
    for (int v = 0; v < m->n_values && !st; v++) {
        eng_value *val = &m->values[v];
        if (!val->misaligned || packing_only(m, v, runtime)) continue;
        size_t bytes = eng_nbytes(&val->tensor);
        void *copy = core_pool_alloc(&m->pool, bytes ? bytes : 1, 64);
        if (!copy) {
            st = core_error(FERRY_ERR_NO_MEMORY, "out of memory while loading the model");
            break;
        }
        memcpy(copy, val->tensor.data, bytes);
        val->tensor.data = copy;
        val->misaligned = false;
    }
    free(runtime);
    return st;
}

ferry_status *eng_graph_finish(ferry_model *m)
{
    ferry_status *st;
    if ((st = sort_nodes(m))) return st;
    if ((st = resolve_ops(m))) return st;
    if ((st = align_constants(m))) return st;
    if ((st = fold_constants(m))) return st;
    fuse_activations(m);
    mark_plan_values(m);
    if ((st = pack_weights(m))) return st;
    m->node_ops = core_pool_alloc(&m->pool, ((size_t)m->n_nodes + 1) * sizeof(char *), 8);
    if (!m->node_ops) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    for (int k = 0; k < m->n_nodes; k++) {
        eng_node *n = &m->nodes[k];
        if (!*n->domain) {
            m->node_ops[k] = n->op_type;
            continue;
        }
        size_t dl = strlen(n->domain), ol = strlen(n->op_type);
        char *s = core_pool_alloc(&m->pool, dl + ol + 2, 1);
        if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        memcpy(s, n->domain, dl);
        s[dl] = ':';
        memcpy(s + dl + 1, n->op_type, ol + 1);
        m->node_ops[k] = s;
    }
    return NULL;
}
