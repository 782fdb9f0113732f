/* control.c - If, Loop and Scan: operators that run subgraphs.
 *
 * A subgraph is a ferry_model of its own (see graph.h): its inputs are the formal ones
 * followed by the outer values it reads ("captures"), which its node receives as implicit
 * inputs after its own. These operators use the eval hook: they run while a plan is built,
 * with every input known, and produce their outputs (shapes included) in one go. That keeps
 * data-dependent control flow correct at the price of re-planning when the inputs that decide
 * it change.
 */
#include "engine/plan.h"

#include <stdlib.h>
#include <string.h>

#define MAX_IO 1024
/* A Loop without a trip count stops here rather than spinning forever on a hostile model. */
#define MAX_ITERATIONS 10000000

/* Where subgraph attribute NAME's captures start among node N's inputs. */
static int capture_offset(const eng_node *n, const char *name)
{
    int off = n->n_in - n->n_implicit;
    for (int a = 0; a < n->n_attrs; a++) {
        const eng_attr *attr = &n->attrs[a];
        if (attr->type != ENG_ATTR_GRAPH || !attr->graph) continue;
        if (!strcmp(attr->name, name)) return off;
        off += attr->graph->n_captures;
    }
    return -1;
}

/* Fills INPUTS (g->n_inputs entries) with FORMAL followed by the node's captured values. */
static ferry_status *bind_inputs(const eng_node *n, const char *attr, const ferry_model *g,
                                 eng_tensor **ins, const eng_tensor *formal, int n_formal,
                                 eng_tensor *inputs)
{
    if (n_formal != g->n_formal_inputs)
        return core_error(FERRY_ERR_INVALID_MODEL, "subgraph '%s' takes %d inputs, got %d", attr,
                          g->n_formal_inputs, n_formal);
    for (int i = 0; i < n_formal; i++) inputs[i] = formal[i];
    int off = capture_offset(n, attr);
    for (int c = 0; c < g->n_captures; c++) {
        const eng_tensor *t = ins[off + c];
        if (!t) return core_error(FERRY_ERR_INTERNAL, "captured value %d is missing", c);
        inputs[n_formal + c] = *t;
    }
    return NULL;
}

/* Runs G, reusing *PLAN when the input signature has not changed. */
static ferry_status *run_graph(const ferry_model *g, const eng_tensor *inputs, eng_plan **plan)
{
    if (!*plan || !eng_plan_matches(*plan, g, inputs)) {
        eng_plan_free(*plan);
        *plan = NULL;
        ferry_status *st = eng_plan_build(g, inputs, false, NULL, plan);
        if (st) return st;
    }
    return eng_plan_run(*plan, g, inputs, NULL, NULL);
}

static ferry_status *copy_to_pool(core_pool *pool, const eng_tensor *src, eng_tensor *dst)
{
    return eng_copy_value(pool, src, dst);
}

/* Loop-carried values, double-buffered: each iteration's results are copied into the spare
 * pool before the previous iteration's pool is released, so nothing points into a plan that a
 * changed shape may rebuild. */
typedef struct carried {
    eng_tensor *values;
    int count;
    core_pool pools[2];
    int cur;
} carried;

static ferry_status *carried_init(carried *c, eng_tensor **srcs, int count)
{
    c->count = count;
    c->values = calloc((size_t)count + 1, sizeof(eng_tensor));
    if (!c->values) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < count; i++) {
        if (!srcs[i]) return core_error(FERRY_ERR_INVALID_MODEL, "state input %d is missing", i);
        ferry_status *st = eng_copy_value(&c->pools[0], srcs[i], &c->values[i]);
        if (st) return st;
    }
    return NULL;
}

/* Replaces the values with the plan outputs OUTS[FIRST .. FIRST+count). */
static ferry_status *carried_update(carried *c, const eng_plan *plan, const int *outs)
{
    int next = c->cur ^ 1;
    for (int i = 0; i < c->count; i++) {
        ferry_status *st =
            eng_copy_value(&c->pools[next], eng_plan_value(plan, outs[i]), &c->values[i]);
        if (st) return st;
    }
    core_pool_release(&c->pools[c->cur]);
    c->cur = next;
    return NULL;
}

static void carried_free(carried *c)
{
    core_pool_release(&c->pools[0]);
    core_pool_release(&c->pools[1]);
    free(c->values);
}

static bool truth(const eng_tensor *t)
{
    return core_load_f64(t->dtype, t->data, 0) != 0;
}

/* ------------------------------------------------------------------------------------------
 * If
 * ---------------------------------------------------------------------------------------- */

static ferry_status *if_eval(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                             core_pool *pool)
{
    (void)n_ins;
    const eng_tensor *cond = ins[0];
    if (!cond || eng_numel(cond) != 1 || !cond->data)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "cond must hold exactly one value");
    const char *branch = truth(cond) ? "then_branch" : "else_branch";
    const ferry_model *g = eng_node_subgraph(n, branch);
    if (!g) return core_error(FERRY_ERR_INVALID_MODEL, "attribute %s is missing", branch);
    if (g->n_outputs != n->n_out)
        return core_error(FERRY_ERR_INVALID_MODEL, "%s has %d outputs, the node %d", branch,
                          g->n_outputs, n->n_out);
    eng_tensor *inputs = calloc((size_t)g->n_inputs + 1, sizeof(eng_tensor));
    if (!inputs) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    eng_plan *plan = NULL;
    ferry_status *st = bind_inputs(n, branch, g, ins, NULL, 0, inputs);
    if (!st) st = run_graph(g, inputs, &plan);
    for (int o = 0; !st && o < n->n_out; o++)
        if (outs[o]) st = copy_to_pool(pool, eng_plan_value(plan, g->outputs[o]), outs[o]);
    eng_plan_free(plan);
    free(inputs);
    return st ? core_error_wrap(st, "%s", branch) : NULL;
}

static ferry_status *graph_attr_init(const eng_node *n, int opset, void **state)
{
    (void)opset;
    (void)state;
    const char *names[3] = {NULL, NULL, NULL};
    if (!strcmp(eng_node_op_type(n), "If"))
        names[0] = "then_branch", names[1] = "else_branch";
    else
        names[0] = "body";
    for (int i = 0; names[i]; i++)
        if (!eng_node_subgraph(n, names[i]))
            return core_error(FERRY_ERR_INVALID_MODEL, "graph attribute '%s' is missing", names[i]);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Loop
 * ---------------------------------------------------------------------------------------- */

/* Stacked per-iteration outputs: a growing buffer of equal-shaped elements. */
typedef struct stack {
    eng_tensor elem; /* shape and type of one element */
    uint8_t *data;
    size_t count, cap;
    core_pool refs; /* what string and sequence elements point to */
} stack;

static ferry_status *stack_push(stack *s, const eng_tensor *src)
{
    eng_tensor copy;
    const eng_tensor *t = src;
    if (src->dtype == FERRY_DTYPE_STRING || src->dtype == FERRY_DTYPE_SEQUENCE ||
        src->dtype == FERRY_DTYPE_OPTIONAL) {
        ferry_status *st = eng_copy_value(&s->refs, src, &copy);
        if (st) return st;
        t = &copy;
    }
    size_t bytes = eng_nbytes(t);
    if (s->count == 0) {
        s->elem = *t;
    } else {
        bool same = s->elem.dtype == t->dtype && s->elem.rank == t->rank;
        for (int d = 0; same && d < t->rank; d++) same = s->elem.dims[d] == t->dims[d];
        if (!same)
            return core_error(FERRY_ERR_RUNTIME,
                              "a scan output changes shape or type between iterations");
    }
    if ((s->count + 1) * bytes > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : bytes * 4 + 64;
        while (cap < (s->count + 1) * bytes) cap *= 2;
        uint8_t *d = realloc(s->data, cap);
        if (!d) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        s->data = d;
        s->cap = cap;
    }
    if (bytes) memcpy(s->data + s->count * bytes, t->data, bytes);
    s->count++;
    return NULL;
}

/* Writes the stacked elements as one tensor [count, elem...] into the pool. */
static ferry_status *stack_emit(stack *s, const eng_value *decl, core_pool *pool, eng_tensor *out)
{
    memset(out, 0, sizeof(*out));
    if (s->count == 0) {
        /* No iteration ran: an empty tensor of the declared element type and shape. */
        out->dtype = decl && decl->declared_dtype ? decl->declared_dtype : FERRY_DTYPE_FLOAT;
        out->rank = 1;
        if (decl && decl->declared_rank > 0 && decl->declared_rank < FERRY_MAX_RANK) {
            out->rank = decl->declared_rank + 1;
            for (int d = 0; d < decl->declared_rank; d++)
                out->dims[d + 1] = decl->tensor.dims[d] > 0 ? decl->tensor.dims[d] : 0;
        }
        out->dims[0] = 0;
        out->data = core_pool_alloc(pool, 1, 64);
        return out->data ? NULL : core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    }
    if (s->elem.rank + 1 > FERRY_MAX_RANK)
        return core_error(FERRY_ERR_UNSUPPORTED, "a stacked scan output exceeds rank %d",
                          FERRY_MAX_RANK);
    out->dtype = s->elem.dtype;
    out->rank = s->elem.rank + 1;
    out->dims[0] = (int64_t)s->count;
    for (int d = 0; d < s->elem.rank; d++) out->dims[d + 1] = s->elem.dims[d];
    size_t bytes = eng_nbytes(out);
    eng_tensor stacked = *out;
    stacked.data = s->data;
    (void)bytes;
    return eng_copy_value(pool, &stacked, out);
}

static ferry_status *loop_eval(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                               core_pool *pool)
{
    (void)n_ins;
    const ferry_model *g = eng_node_subgraph(n, "body");
    int n_formal = n->n_in - n->n_implicit;
    int k = n_formal - 2; /* loop-carried values */
    if (k < 0) return core_error(FERRY_ERR_INVALID_MODEL, "Loop needs inputs M and cond");
    int n_scan = n->n_out - k;
    if (n_scan < 0 || g->n_outputs != 1 + k + n_scan || g->n_formal_inputs != 2 + k)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "the body must take 2 + %d inputs and return 1 + %d + %d outputs", k, k,
                          n_scan < 0 ? 0 : n_scan);
    if (k > MAX_IO || n_scan > MAX_IO) return core_error(FERRY_ERR_UNSUPPORTED, "too many values");
    int64_t max_trips = MAX_ITERATIONS;
    bool bounded = false;
    if (ins[0]) {
        if (eng_numel(ins[0]) != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "M must be a scalar");
        max_trips = core_load_i64(ins[0]->dtype, ins[0]->data, 0);
        bounded = true;
    }
    bool cond = true;
    if (ins[1]) {
        if (eng_numel(ins[1]) != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "cond must be a scalar");
        cond = truth(ins[1]);
    }
    ferry_status *st = NULL;
    eng_plan *plan = NULL;
    carried state = {0};
    stack *scans = calloc((size_t)n_scan + 1, sizeof(stack));
    eng_tensor *formal = calloc((size_t)k + 3, sizeof(eng_tensor));
    eng_tensor *inputs = calloc((size_t)g->n_inputs + 1, sizeof(eng_tensor));
    if (!scans || !formal || !inputs) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    if ((st = carried_init(&state, ins + 2, k))) goto out;
    int64_t iter = 0;
    uint8_t cond_byte;
    for (; cond && iter < max_trips; iter++) {
        if (!bounded && iter >= MAX_ITERATIONS) {
            st = core_error(FERRY_ERR_RUNTIME, "the loop ran %d iterations without stopping",
                            MAX_ITERATIONS);
            goto out;
        }
        cond_byte = 1;
        /* iteration_num and cond_in are scalars; honour a body that declares them [1]. */
        formal[0] = (eng_tensor){FERRY_DTYPE_INT64, 0, {0}, &iter};
        formal[1] = (eng_tensor){FERRY_DTYPE_BOOL, 0, {0}, &cond_byte};
        for (int j = 0; j < 2; j++) {
            const eng_value *v = &g->values[g->inputs[j]];
            if (v->declared_rank == 1) formal[j].rank = 1, formal[j].dims[0] = 1;
        }
        for (int i = 0; i < k; i++) formal[2 + i] = state.values[i];
        if ((st = bind_inputs(n, "body", g, ins, formal, 2 + k, inputs))) goto out;
        if ((st = run_graph(g, inputs, &plan))) goto out;
        const eng_tensor *c = eng_plan_value(plan, g->outputs[0]);
        if (eng_numel(c) != 1) {
            st = core_error(FERRY_ERR_RUNTIME, "the body's cond output must hold one value");
            goto out;
        }
        cond = truth(c);
        if ((st = carried_update(&state, plan, g->outputs + 1))) goto out;
        for (int s = 0; s < n_scan; s++)
            if ((st = stack_push(&scans[s], eng_plan_value(plan, g->outputs[1 + k + s])))) goto out;
    }
    for (int i = 0; i < k; i++)
        if (outs[i] && (st = copy_to_pool(pool, &state.values[i], outs[i]))) goto out;
    for (int s = 0; s < n_scan; s++)
        if (outs[k + s] &&
            (st = stack_emit(&scans[s], &g->values[g->outputs[1 + k + s]], pool, outs[k + s])))
            goto out;
out:
    eng_plan_free(plan);
    carried_free(&state);
    for (int s = 0; scans && s < n_scan; s++) {
        free(scans[s].data);
        core_pool_release(&scans[s].refs);
    }
    free(scans);
    free(formal);
    free(inputs);
    return st ? core_error_wrap(st, "body") : NULL;
}

/* ------------------------------------------------------------------------------------------
 * Scan (opset 9 and later: no batch axis)
 * ---------------------------------------------------------------------------------------- */

static ferry_status *read_axes(const eng_node *n, const char *name, int count, int64_t *out)
{
    size_t len;
    const int64_t *v = eng_attr_ints(n, name, &len);
    for (int i = 0; i < count; i++) out[i] = 0;
    if (!v) return NULL;
    if ((int)len != count)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute %s has %zu values, expected %d", name,
                          len, count);
    for (int i = 0; i < count; i++) out[i] = v[i];
    return NULL;
}

/* Copies slice T along AXIS of SRC into DST (whose data is preallocated). */
static void take_slice(const eng_tensor *src, int axis, int64_t t, eng_tensor *dst)
{
    int64_t strides[FERRY_MAX_RANK], dims[FERRY_MAX_RANK], st[FERRY_MAX_RANK];
    int64_t s = 1;
    for (int d = src->rank - 1; d >= 0; d--) {
        strides[d] = s;
        s *= src->dims[d];
    }
    int r = 0;
    for (int d = 0; d < src->rank; d++) {
        if (d == axis) continue;
        dims[r] = src->dims[d];
        st[r++] = strides[d];
    }
    dst->dtype = src->dtype;
    dst->rank = r;
    for (int d = 0; d < r; d++) dst->dims[d] = dims[d];
    size_t esz = ferry_dtype_size(src->dtype);
    eng_copy_strided(dst->data, (const uint8_t *)src->data + (size_t)(t * strides[axis]) * esz, esz,
                     r, dims, st);
}

/* The scan itself: INS holds the node's inputs (states from FIRST, then M scan inputs, then
 * the captures at their usual place); axes have been read from the attributes. */
static ferry_status *scan_core(const eng_node *n, const ferry_model *g, eng_tensor **ins, int first,
                               int n_state, int m, int n_scan_out, int64_t *in_axes,
                               const int64_t *in_dirs, const int64_t *out_axes,
                               const int64_t *out_dirs, eng_tensor **outs, core_pool *pool)
{
    int n_formal = n_state + m;
    ferry_status *st;
    int64_t steps = -1;
    for (int j = 0; j < m; j++) {
        const eng_tensor *x = ins[first + n_state + j];
        int axis;
        if (!x) return core_error(FERRY_ERR_INVALID_MODEL, "scan input %d is missing", j);
        if ((st = eng_axis(in_axes[j], x->rank, &axis))) return st;
        in_axes[j] = axis;
        if (steps >= 0 && x->dims[axis] != steps)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "scan inputs have different lengths (%lld and %lld)",
                              (long long)steps, (long long)x->dims[axis]);
        steps = x->dims[axis];
    }
    eng_plan *plan = NULL;
    carried state = {0};
    stack *stacks = calloc((size_t)n_scan_out + 1, sizeof(stack));
    eng_tensor *formal = calloc((size_t)n_formal + 1, sizeof(eng_tensor));
    eng_tensor *inputs = calloc((size_t)g->n_inputs + 1, sizeof(eng_tensor));
    void **slices = calloc((size_t)m + 1, sizeof(void *));
    if (!stacks || !formal || !inputs || !slices) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    if ((st = carried_init(&state, ins + first, n_state))) goto out;
    for (int j = 0; j < m; j++) {
        const eng_tensor *x = ins[first + n_state + j];
        size_t bytes = x->dims[in_axes[j]] ? eng_nbytes(x) / (size_t)x->dims[in_axes[j]] : 0;
        if (!(slices[j] = malloc(bytes ? bytes : 1))) {
            st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            goto out;
        }
    }
    for (int64_t t = 0; t < steps; t++) {
        for (int i = 0; i < n_state; i++) formal[i] = state.values[i];
        for (int j = 0; j < m; j++) {
            formal[n_state + j].data = slices[j];
            take_slice(ins[first + n_state + j], (int)in_axes[j], in_dirs[j] ? steps - 1 - t : t,
                       &formal[n_state + j]);
        }
        if ((st = bind_inputs(n, "body", g, ins, formal, n_formal, inputs))) goto out;
        if ((st = run_graph(g, inputs, &plan))) goto out;
        if ((st = carried_update(&state, plan, g->outputs))) goto out;
        for (int s = 0; s < n_scan_out; s++)
            if ((st = stack_push(&stacks[s], eng_plan_value(plan, g->outputs[n_state + s]))))
                goto out;
    }
    for (int i = 0; i < n_state; i++)
        if (outs[i] && (st = copy_to_pool(pool, &state.values[i], outs[i]))) goto out;
    for (int s = 0; s < n_scan_out; s++) {
        eng_tensor stacked;
        eng_tensor *out = outs[n_state + s];
        if (!out) continue;
        if ((st = stack_emit(&stacks[s], &g->values[g->outputs[n_state + s]], pool, &stacked)))
            goto out;
        int axis;
        if ((st = eng_axis(out_axes[s], stacked.rank, &axis))) goto out;
        /* Stacked is [steps, e...]; move the step axis to AXIS and reverse it if asked. */
        int r = stacked.rank;
        int64_t src_strides[FERRY_MAX_RANK], perm[FERRY_MAX_RANK], st_out[FERRY_MAX_RANK];
        int64_t acc = 1;
        for (int d = r - 1; d >= 0; d--) {
            src_strides[d] = acc;
            acc *= stacked.dims[d];
        }
        int e = 1;
        for (int d = 0; d < r; d++) perm[d] = d == axis ? 0 : e++;
        *out = stacked;
        for (int d = 0; d < r; d++) {
            out->dims[d] = stacked.dims[perm[d]];
            st_out[d] = src_strides[perm[d]];
        }
        size_t esz = ferry_dtype_size(stacked.dtype);
        const uint8_t *src = stacked.data;
        if (out_dirs[s] && steps > 0) {
            src += (size_t)((steps - 1) * src_strides[0]) * esz;
            st_out[axis] = -src_strides[0];
        }
        out->data = core_pool_alloc(pool, eng_nbytes(out) ? eng_nbytes(out) : 1, 64);
        if (!out->data) {
            st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            goto out;
        }
        if (eng_numel(out)) eng_copy_strided(out->data, src, esz, r, out->dims, st_out);
    }
out:
    eng_plan_free(plan);
    carried_free(&state);
    for (int s = 0; stacks && s < n_scan_out; s++) {
        free(stacks[s].data);
        core_pool_release(&stacks[s].refs);
    }
    for (int j = 0; slices && j < m; j++) free(slices[j]);
    free(stacks);
    free(formal);
    free(inputs);
    free(slices);
    return st ? core_error_wrap(st, "body") : NULL;
}

/* ------------------------------------------------------------------------------------------
 * SequenceMap: the body runs once per element of the first input; further inputs that are
 * sequences are walked in step, tensors are passed whole. Each output collects a sequence.
 * ---------------------------------------------------------------------------------------- */

static ferry_status *sequence_map_eval(const eng_node *n, eng_tensor **ins, int n_ins,
                                       eng_tensor **outs, core_pool *pool)
{
    (void)n_ins;
    const ferry_model *g = eng_node_subgraph(n, "body");
    int n_formal = n->n_in - n->n_implicit;
    if (n_formal < 1 || !ins[0] || ins[0]->dtype != FERRY_DTYPE_SEQUENCE)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input_sequence must be a sequence");
    if (g->n_formal_inputs != n_formal || g->n_outputs != n->n_out || n_formal > MAX_IO)
        return core_error(FERRY_ERR_INVALID_MODEL, "the body's inputs or outputs do not match");
    int64_t len = ins[0]->dims[0];
    for (int i = 1; i < n_formal; i++)
        if (ins[i] && ins[i]->dtype == FERRY_DTYPE_SEQUENCE && ins[i]->dims[0] != len)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "sequences differ in length");
    ferry_status *st = NULL;
    eng_plan *plan = NULL;
    eng_tensor *formal = calloc((size_t)n_formal + 1, sizeof(eng_tensor));
    eng_tensor *inputs = calloc((size_t)g->n_inputs + 1, sizeof(eng_tensor));
    if (!formal || !inputs) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    for (int o = 0; o < n->n_out; o++) {
        if (!outs[o]) continue;
        memset(outs[o], 0, sizeof(eng_tensor));
        outs[o]->dtype = FERRY_DTYPE_SEQUENCE;
        outs[o]->rank = 1;
        outs[o]->dims[0] = len;
        outs[o]->data = core_pool_alloc(pool, ((size_t)len + 1) * sizeof(eng_tensor), 64);
        if (!outs[o]->data) {
            st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            goto out;
        }
    }
    for (int64_t t = 0; t < len; t++) {
        for (int i = 0; i < n_formal; i++) {
            const eng_tensor *x = ins[i];
            if (!x) {
                st = core_error(FERRY_ERR_INVALID_MODEL, "input %d is missing", i);
                goto out;
            }
            formal[i] = x->dtype == FERRY_DTYPE_SEQUENCE ? ((const eng_tensor *)x->data)[t] : *x;
        }
        if ((st = bind_inputs(n, "body", g, ins, formal, n_formal, inputs))) goto out;
        if ((st = run_graph(g, inputs, &plan))) goto out;
        for (int o = 0; o < n->n_out; o++)
            if (outs[o] && (st = eng_copy_value(pool, eng_plan_value(plan, g->outputs[o]),
                                                &((eng_tensor *)outs[o]->data)[t])))
                goto out;
    }
out:
    eng_plan_free(plan);
    free(formal);
    free(inputs);
    return st ? core_error_wrap(st, "body") : NULL;
}

static ferry_status *scan_eval(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                               core_pool *pool)
{
    (void)n_ins;
    const ferry_model *g = eng_node_subgraph(n, "body");
    int n_formal = n->n_in - n->n_implicit;
    int m = (int)eng_attr_int(n, "num_scan_inputs", -1);
    int n_state = n_formal - m;
    int n_scan_out = n->n_out - n_state;
    if (m < 1 || n_state < 0 || n_scan_out < 0 || g->n_formal_inputs != n_formal ||
        g->n_outputs != n->n_out || m > MAX_IO || n->n_out > MAX_IO)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "num_scan_inputs, the node's inputs/outputs and the body disagree");
    int64_t in_axes[MAX_IO], in_dirs[MAX_IO], out_axes[MAX_IO], out_dirs[MAX_IO];
    ferry_status *st;
    if ((st = read_axes(n, "scan_input_axes", m, in_axes)) ||
        (st = read_axes(n, "scan_input_directions", m, in_dirs)) ||
        (st = read_axes(n, "scan_output_axes", n_scan_out, out_axes)) ||
        (st = read_axes(n, "scan_output_directions", n_scan_out, out_dirs)))
        return st;
    return scan_core(n, g, ins, 0, n_state, m, n_scan_out, in_axes, in_dirs, out_axes, out_dirs,
                     outs, pool);
}

/* Scan-8: every input and output has a leading batch axis, and the optional first input gives
 * each batch entry's sequence length. Each entry is scanned on its own, its outputs padded
 * with zeros to the longest length, then stacked. */
static ferry_status *scan8_eval(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                                core_pool *pool)
{
    (void)n_ins;
    const ferry_model *g = eng_node_subgraph(n, "body");
    int n_formal = n->n_in - n->n_implicit - 1; /* without sequence_lens */
    int m = (int)eng_attr_int(n, "num_scan_inputs", -1);
    int n_state = n_formal - m;
    int n_scan_out = n->n_out - n_state;
    if (m < 1 || n_state < 0 || n_scan_out < 0 || g->n_formal_inputs != n_formal ||
        g->n_outputs != n->n_out || m > MAX_IO || n->n_out > MAX_IO)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "num_scan_inputs, the node's inputs/outputs and the body disagree");
    int64_t in_dirs[MAX_IO], zeros[MAX_IO] = {0}, axes[MAX_IO];
    ferry_status *st = read_axes(n, "directions", m, in_dirs);
    if (st) return st;
    int64_t batch = -1;
    for (int i = 1; i <= n_formal; i++) {
        if (!ins[i] || ins[i]->rank < 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "input %d needs a batch axis", i);
        if (batch >= 0 && ins[i]->dims[0] != batch)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "inputs differ in batch size");
        batch = ins[i]->dims[0];
    }
    int64_t max_len = ins[1 + n_state]->rank > 1 ? ins[1 + n_state]->dims[1] : 0;
    eng_tensor **sub_ins = calloc((size_t)n->n_in + 1, sizeof(eng_tensor *));
    eng_tensor *slices = calloc((size_t)n_formal + 1, sizeof(eng_tensor));
    eng_tensor *parts = calloc(((size_t)batch + 1) * ((size_t)n->n_out + 1), sizeof(eng_tensor));
    eng_tensor **part_ptrs = calloc((size_t)n->n_out + 1, sizeof(eng_tensor *));
    core_pool tmp = {0};
    if (!sub_ins || !slices || !parts || !part_ptrs) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    for (int i = 0; i < n->n_in; i++) sub_ins[i] = ins[i];
    for (int64_t b = 0; b < batch; b++) {
        int64_t len = max_len;
        if (ins[0] && eng_numel(ins[0]) == batch) {
            len = core_load_i64(ins[0]->dtype, ins[0]->data, b);
            if (len < 0 || len > max_len) {
                st = core_error(FERRY_ERR_RUNTIME, "sequence_lens[%lld] is out of range",
                                (long long)b);
                goto out;
            }
        }
        /* Entry b of every input, with scan inputs cut to this entry's length. */
        for (int i = 0; i < n_formal; i++) {
            const eng_tensor *x = ins[1 + i];
            int64_t strides[FERRY_MAX_RANK], acc = 1;
            for (int d = x->rank - 1; d >= 0; d--) {
                strides[d] = acc;
                acc *= x->dims[d];
            }
            eng_tensor *t = &slices[i];
            t->dtype = x->dtype;
            t->rank = x->rank - 1;
            for (int d = 1; d < x->rank; d++) t->dims[d - 1] = x->dims[d];
            if (i >= n_state && t->rank > 0) t->dims[0] = len;
            size_t esz = ferry_dtype_size(x->dtype), bytes = eng_nbytes(t);
            t->data = core_pool_alloc(&tmp, bytes ? bytes : 1, 64);
            if (!t->data) {
                st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
                goto out;
            }
            if (bytes)
                eng_copy_strided(t->data, (const char *)x->data + (size_t)(b * strides[0]) * esz,
                                 esz, t->rank, t->dims, strides + 1);
            sub_ins[1 + i] = t;
        }
        for (int o = 0; o < n->n_out; o++) part_ptrs[o] = &parts[b * n->n_out + o];
        for (int j = 0; j < n_scan_out; j++) axes[j] = 0;
        int64_t in_axes[MAX_IO] = {0};
        if ((st = scan_core(n, g, sub_ins, 1, n_state, m, n_scan_out, in_axes, in_dirs, axes, zeros,
                            part_ptrs, &tmp)))
            goto out;
    }
    /* Stack entry results: states [batch, ...], scan outputs [batch, max_len, ...]. */
    for (int o = 0; o < n->n_out && batch > 0; o++) {
        if (!outs[o]) continue;
        const eng_tensor *p0 = &parts[o];
        eng_tensor *out = outs[o];
        memset(out, 0, sizeof(*out));
        out->dtype = p0->dtype;
        out->rank = p0->rank + 1;
        if (out->rank > FERRY_MAX_RANK) {
            st = core_error(FERRY_ERR_UNSUPPORTED, "rank too large");
            goto out;
        }
        out->dims[0] = batch;
        for (int d = 0; d < p0->rank; d++) out->dims[d + 1] = p0->dims[d];
        if (o >= n_state && p0->rank > 0) out->dims[1] = max_len;
        size_t bytes = eng_nbytes(out), row = batch ? bytes / (size_t)batch : 0;
        out->data = core_pool_alloc(pool, bytes ? bytes : 1, 64);
        if (!out->data) {
            st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            goto out;
        }
        memset(out->data, 0, bytes);
        for (int64_t b = 0; b < batch; b++) {
            const eng_tensor *p = &parts[b * n->n_out + o];
            size_t have = eng_nbytes(p);
            if (have > row) have = row;
            if (have) memcpy((char *)out->data + (size_t)b * row, p->data, have);
        }
    }
out:
    core_pool_release(&tmp);
    free(sub_ins);
    free(slices);
    free(parts);
    free(part_ptrs);
    return st;
}

static ferry_status *no_infer(eng_op_call *call)
{
    (void)call;
    return core_error(FERRY_ERR_INTERNAL, "control flow runs through eval");
}

static const eng_op ops[] = {
    {.domain = "",
     .name = "If",
     .since_version = 1,
     .init = graph_attr_init,
     .infer = no_infer,
     .run = no_infer,
     .eval = if_eval},
    {.domain = "",
     .name = "Loop",
     .since_version = 1,
     .init = graph_attr_init,
     .infer = no_infer,
     .run = no_infer,
     .eval = loop_eval},
    {.domain = "",
     .name = "Scan",
     .since_version = 8,
     .init = graph_attr_init,
     .infer = no_infer,
     .run = no_infer,
     .eval = scan8_eval},
    {.domain = "",
     .name = "Scan",
     .since_version = 9,
     .init = graph_attr_init,
     .infer = no_infer,
     .run = no_infer,
     .eval = scan_eval},
    {.domain = "",
     .name = "SequenceMap",
     .since_version = 17,
     .init = graph_attr_init,
     .infer = no_infer,
     .run = no_infer,
     .eval = sequence_map_eval},
};

const eng_op_table eng_ops_control = {ops, sizeof(ops) / sizeof(ops[0])};
