/* batch_split.c - which models compute samples independently, and running them in slices. */
#include "engine/batch_split.h"
#include "engine/kernels/parallel.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NOT_BATCH   (-2) /* the value does not carry the batch */
#define RANK_UNSEEN (-1) /* carries the batch, rank unknown */
#define MAX_AXES    16

/* ------------------------------------------------------------------------------------------
 * Which operators keep samples apart
 * ---------------------------------------------------------------------------------------- */

/* Operators whose output 0 has the rank of input 0 and whose sample i depends only on sample
 * i of input 0, given that every other input is a constant (weights, bounds, scales). */
static const char *const per_sample[] = {"Abs",
                                         "AveragePool",
                                         "BatchNormalization",
                                         "Cast",
                                         "Ceil",
                                         "Celu",
                                         "Conv",
                                         "ConvTranspose",
                                         "Cos",
                                         "DepthToSpace",
                                         "Dropout",
                                         "Elu",
                                         "Erf",
                                         "Exp",
                                         "Floor",
                                         "Gelu",
                                         "GlobalAveragePool",
                                         "GlobalLpPool",
                                         "GlobalMaxPool",
                                         "HardSigmoid",
                                         "HardSwish",
                                         "Identity",
                                         "InstanceNormalization",
                                         "IsInf",
                                         "IsNaN",
                                         "LRN",
                                         "LeakyRelu",
                                         "Log",
                                         "LpPool",
                                         "MaxPool",
                                         "Mish",
                                         "Neg",
                                         "Not",
                                         "Reciprocal",
                                         "Relu",
                                         "Round",
                                         "Selu",
                                         "Shrink",
                                         "Sigmoid",
                                         "Sign",
                                         "Sin",
                                         "Softplus",
                                         "Softsign",
                                         "SpaceToDepth",
                                         "Sqrt",
                                         "Tanh",
                                         "ThresholdedRelu",
                                         "Clip",
                                         NULL};

/* Elementwise operators with multidirectional broadcasting. */
static const char *const broadcasting[] = {
    "Add", "And",   "BitShift", "Div", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual",
    "Max", "Mean",  "Min",      "Mod", "Mul",   "Or",      "PRelu",          "Pow",  "Sub",
    "Sum", "Where", "Xor",      NULL};

static const char *const reductions[] = {
    "ReduceL1",  "ReduceL2",   "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum",    "ReduceSumSquare", NULL};

static bool listed(const char *op, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(op, *list)) return true;
    return false;
}

typedef struct walk {
    const ferry_model *m;
    const eng_node *n;
    const int *rank; /* per value: NOT_BATCH, RANK_UNSEEN or the rank */
} walk;

static bool is_const(const walk *w, int v)
{
    return v >= 0 && w->m->values[v].kind == ENG_VALUE_CONST;
}

static const eng_tensor *const_of(const walk *w, int i)
{
    int v = i < w->n->n_in ? w->n->in[i] : -1;
    return is_const(w, v) ? &w->m->values[v].tensor : NULL;
}

static int in_rank(const walk *w, int i)
{
    int v = i < w->n->n_in ? w->n->in[i] : -1;
    return v < 0 ? NOT_BATCH : w->rank[v];
}

/* Every input other than input 0 is absent or constant. */
static bool others_const(const walk *w)
{
    for (int i = 1; i < w->n->n_in; i++)
        if (w->n->in[i] >= 0 && !is_const(w, w->n->in[i])) return false;
    return true;
}

/* Only output 0 is used (MaxPool's indices and training-mode statistics count the batch). */
static bool single_output(const walk *w)
{
    for (int o = 1; o < w->n->n_out; o++)
        if (w->n->out[o] >= 0) return false;
    return true;
}

/* AXIS normalised against RANK is a real axis other than the batch's. */
static bool off_batch(int64_t axis, int rank)
{
    if (rank < 1) return false;
    if (axis < 0) axis += rank;
    return axis >= 1 && axis < rank;
}

/* Axes from attribute "axes" or, when absent, from constant input 1. False when neither. */
static bool read_axes(const walk *w, int64_t *axes, size_t *count)
{
    size_t n;
    const int64_t *a = eng_attr_ints(w->n, "axes", &n);
    if (a) {
        if (n > MAX_AXES) return false;
        memcpy(axes, a, n * sizeof(*a));
        *count = n;
        return true;
    }
    const eng_tensor *t = const_of(w, 1);
    if (!t) return false;
    ferry_status *st = eng_read_ints(t, axes, MAX_AXES, count);
    if (st) {
        ferry_status_free(st);
        return false;
    }
    return true;
}

static bool all_off_batch(const int64_t *axes, size_t count, int rank)
{
    for (size_t i = 0; i < count; i++)
        if (!off_batch(axes[i], rank)) return false;
    return true;
}

/* Broadcasting: every batch input has the output's rank, so axis 0 lines up with the batch
 * everywhere, and every other input is a constant that does not reach axis 0. */
static int broadcast_rank(const walk *w)
{
    if (eng_attr_has(w->n, "broadcast") || eng_attr_has(w->n, "axis")) return NOT_BATCH;
    int r = RANK_UNSEEN;
    for (int i = 0; i < w->n->n_in; i++) {
        int ri = in_rank(w, i);
        if (ri == RANK_UNSEEN) return NOT_BATCH;
        if (ri >= 0 && ri > r) r = ri;
    }
    for (int i = 0; i < w->n->n_in; i++) {
        int ri = in_rank(w, i);
        if (ri >= 0 && ri != r) return NOT_BATCH;
        if (ri >= 0 || w->n->in[i] < 0) continue;
        const eng_tensor *c = const_of(w, i);
        if (!c || c->rank > r || (c->rank == r && c->dims[0] != 1)) return NOT_BATCH;
    }
    return r;
}

/* The rank of the node's outputs when it computes samples independently and its batch inputs
 * are the ones RANK marks, else NOT_BATCH. */
static int node_rank(const walk *w)
{
    const eng_node *n = w->n;
    const char *op = n->op_type;
    int r = in_rank(w, 0);
    if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx")) return NOT_BATCH;
    if (n->n_implicit) return NOT_BATCH;
    if (listed(op, broadcasting)) return broadcast_rank(w);
    if (r == NOT_BATCH) return NOT_BATCH; /* a batch value in some other position */
    if (n->fused_residual) {
        /* Conv plus a fused Add: the residual is one more sample-wise operand. */
        if (r < 0 || in_rank(w, 3) != r) return NOT_BATCH;
        for (int i = 1; i < 3; i++)
            if (i < n->n_in && n->in[i] >= 0 && !is_const(w, n->in[i])) return NOT_BATCH;
        return r;
    }
    if (listed(op, per_sample)) {
        if (!others_const(w) || eng_attr_int(n, "training_mode", 0)) return NOT_BATCH;
        if (strcmp(op, "Dropout") && !single_output(w)) return NOT_BATCH;
        return r;
    }
    if (r == RANK_UNSEEN) return NOT_BATCH;
    int64_t axes[MAX_AXES];
    size_t count = 0;
    if (!strcmp(op, "Flatten")) {
        /* Axis 1 alone keeps the samples on axis 0; a later axis folds features into it. */
        int64_t axis = eng_attr_int(n, "axis", 1);
        return axis == 1 || axis == 1 - r ? 2 : NOT_BATCH;
    }
    if (!strcmp(op, "Gemm")) {
        const eng_tensor *b = const_of(w, 1), *c = const_of(w, 2);
        if (r != 2 || eng_attr_int(n, "transA", 0) || !b) return NOT_BATCH;
        if (n->n_in > 2 && n->in[2] >= 0 &&
            (!c || c->rank > 2 || (c->rank == 2 && c->dims[0] != 1)))
            return NOT_BATCH;
        return 2;
    }
    if (!strcmp(op, "MatMul")) {
        const eng_tensor *b = const_of(w, 1);
        return r >= 2 && b && b->rank == 2 ? r : NOT_BATCH;
    }
    if (!strcmp(op, "Softmax") || !strcmp(op, "LogSoftmax") || !strcmp(op, "Hardmax"))
        return off_batch(eng_attr_int(n, "axis", n->opset >= 13 ? -1 : 1), r) ? r : NOT_BATCH;
    if (!strcmp(op, "LayerNormalization"))
        return others_const(w) && off_batch(eng_attr_int(n, "axis", -1), r) ? r : NOT_BATCH;
    if (!strcmp(op, "Concat")) {
        for (int i = 0; i < n->n_in; i++)
            if (in_rank(w, i) != r) return NOT_BATCH;
        return off_batch(eng_attr_int(n, "axis", 0), r) ? r : NOT_BATCH;
    }
    if (!strcmp(op, "Split"))
        return others_const(w) && off_batch(eng_attr_int(n, "axis", 0), r) ? r : NOT_BATCH;
    if (!strcmp(op, "Transpose")) {
        const int64_t *perm = eng_attr_ints(n, "perm", &count);
        return perm && count == (size_t)r && perm[0] == 0 ? r : NOT_BATCH;
    }
    if (!strcmp(op, "Reshape")) {
        const eng_tensor *shape = const_of(w, 1);
        if (!shape || eng_attr_int(n, "allowzero", 0)) return NOT_BATCH;
        ferry_status *st = eng_read_ints(shape, axes, MAX_AXES, &count);
        if (st) {
            ferry_status_free(st);
            return NOT_BATCH;
        }
        return count >= 1 && axes[0] == 0 ? (int)count : NOT_BATCH;
    }
    if (!strcmp(op, "Unsqueeze")) {
        if (!read_axes(w, axes, &count)) return NOT_BATCH;
        int out = r + (int)count;
        return all_off_batch(axes, count, out) ? out : NOT_BATCH;
    }
    if (!strcmp(op, "Squeeze")) {
        if (!read_axes(w, axes, &count) || !count) return NOT_BATCH;
        return all_off_batch(axes, count, r) ? r - (int)count : NOT_BATCH;
    }
    if (listed(op, reductions)) {
        if (!read_axes(w, axes, &count) || !count || !all_off_batch(axes, count, r))
            return NOT_BATCH;
        return eng_attr_int(n, "keepdims", 1) ? r : r - (int)count;
    }
    return NOT_BATCH;
}

bool eng_batch_separable(const ferry_model *m)
{
    if (m->n_inputs < 1 || m->n_outputs < 1 || m->parent) return false;
    int *rank = malloc((size_t)m->n_values * sizeof(*rank));
    if (!rank) return false;
    bool ok = true;
    for (int v = 0; v < m->n_values; v++) rank[v] = NOT_BATCH;
    for (int i = 0; ok && i < m->n_inputs; i++) {
        const eng_value *in = &m->values[m->inputs[i]];
        ok = in->declared_rank >= 1 && in->tensor.dims[0] < 0 && !in->keyed && !in->needs_value &&
             core_dtype_is_flat(in->declared_dtype);
        rank[m->inputs[i]] = in->declared_rank;
    }
    for (int k = 0; ok && k < m->n_nodes; k++) {
        const eng_node *n = &m->nodes[k];
        if (n->folded) continue; /* constant, or an activation its producer applies */
        bool batch_in = false;
        for (int i = 0; i < n->n_in; i++) batch_in |= n->in[i] >= 0 && rank[n->in[i]] != NOT_BATCH;
        if (!batch_in) continue;
        walk w = {.m = m, .n = n, .rank = rank};
        int r = node_rank(&w);
        if (r == NOT_BATCH || r < 1) ok = false;
        for (int o = 0; ok && o < n->n_out; o++)
            if (n->out[o] >= 0) rank[n->out[o]] = r;
    }
    for (int i = 0; ok && i < m->n_outputs; i++) ok = rank[m->outputs[i]] != NOT_BATCH;
    free(rank);
    return ok;
}

/* ------------------------------------------------------------------------------------------
 * Running slices
 * ---------------------------------------------------------------------------------------- */

struct eng_split {
    bool decided;
    eng_tensor *sig;            /* the whole batch's inputs: dtype and dims, no data */
    int64_t slice;              /* samples per slice; 0 when the batch runs whole */
    int n_plans;                /* one per thread */
    eng_plan **plans;           /* for a slice's input shapes */
    eng_tensor *views;          /* n_plans x n_inputs: each thread's slice of the inputs */
    eng_node_counter *counters; /* n_plans x n_nodes, while profiling */
    eng_tensor *outs;           /* the whole batch's outputs */
    void *out_data;
    size_t sample_bytes; /* one sample's arena for sig's shapes apart from the batch; 0: unknown */
};

static void reset(eng_split *s)
{
    for (int i = 0; i < s->n_plans; i++) eng_plan_free(s->plans[i]);
    free(s->plans);
    free(s->views);
    free(s->counters);
    free(s->outs);
    free(s->out_data);
    free(s->sig);
    memset(s, 0, sizeof(*s));
}

void eng_split_free(eng_split *s)
{
    if (!s) return;
    reset(s);
    free(s);
}

const eng_tensor *eng_split_output(const eng_split *s, int i)
{
    return &s->outs[i];
}

int64_t eng_split_slice(const eng_split *s)
{
    return s ? s->slice : 0;
}

static bool same_signature(const eng_split *s, const ferry_model *m, const eng_tensor *inputs)
{
    for (int i = 0; i < m->n_inputs; i++) {
        const eng_tensor *a = &s->sig[i], *b = &inputs[i];
        if (a->dtype != b->dtype || a->rank != b->rank ||
            memcmp(a->dims, b->dims, (size_t)a->rank * sizeof(a->dims[0])))
            return false;
    }
    return true;
}

/* INPUTS cut to samples [FIRST, FIRST + COUNT) into VIEWS. */
static void slice_inputs(const ferry_model *m, const eng_tensor *inputs, int64_t first,
                         int64_t count, eng_tensor *views)
{
    for (int i = 0; i < m->n_inputs; i++) {
        views[i] = inputs[i];
        size_t per_sample = eng_nbytes(&inputs[i]) / (size_t)inputs[i].dims[0];
        views[i].dims[0] = count;
        views[i].data = (char *)inputs[i].data + (size_t)first * per_sample;
    }
}

static ferry_status *build(const ferry_model *m, const eng_tensor *inputs, int64_t count,
                           eng_tensor *views, eng_plan **out)
{
    slice_inputs(m, inputs, 0, count, views);
    return eng_plan_build(m, views, false, NULL, out);
}

/* The largest divisor of N not above LIMIT: equal slices need one plan shape. */
static int64_t slice_size(int64_t n, int64_t limit)
{
    for (int64_t s = limit < n ? limit : n; s > 1; s--)
        if (n % s == 0) return s;
    return 1;
}

/* Decides how INPUTS run and prepares the plans and outputs for it. Any failure to plan a
 * slice leaves the batch to run whole, where the same problem gets its proper error. */
/* INPUTS have SIG's dtypes and shapes, except perhaps the batch. */
static bool same_sample_shape(const eng_tensor *sig, const ferry_model *m, const eng_tensor *inputs)
{
    for (int i = 0; i < m->n_inputs; i++) {
        const eng_tensor *a = &sig[i], *b = &inputs[i];
        if (a->dtype != b->dtype || a->rank != b->rank ||
            memcmp(a->dims + 1, b->dims + 1, (size_t)(a->rank - 1) * sizeof(a->dims[0])))
            return false;
    }
    return true;
}

static ferry_status *decide(eng_split *s, const ferry_model *m, const eng_tensor *inputs,
                            core_threadpool *threads)
{
    /* A batcher's changing batch sizes need one sample's plan only once. */
    size_t known = s->sig && same_sample_shape(s->sig, m, inputs) ? s->sample_bytes : 0;
    reset(s);
    s->sample_bytes = known;
    s->sig = calloc((size_t)m->n_inputs, sizeof(*s->sig));
    eng_tensor *views = calloc((size_t)m->n_inputs, sizeof(*views));
    eng_plan *plan = NULL;
    ferry_status *st = NULL;
    if (!s->sig || !views) goto nomem;
    for (int i = 0; i < m->n_inputs; i++) {
        s->sig[i] = inputs[i];
        s->sig[i].data = NULL;
    }
    s->decided = true;
    int64_t batch = inputs[0].dims[0];
    size_t per_sample = known;
    if (!per_sample) {
        if ((st = build(m, inputs, 1, views, &plan))) goto decline;
        per_sample = s->sample_bytes = eng_plan_arena_bytes(plan);
    }
    if (per_sample == 0 || per_sample * (size_t)batch <= m->batch_slice_bytes) goto decline;
    int64_t slice = slice_size(batch, (int64_t)(m->batch_slice_bytes / per_sample));
    if (plan && slice > 1) {
        eng_plan_free(plan);
        plan = NULL;
    }
    if (!plan && (st = build(m, inputs, slice, views, &plan))) goto decline;
    for (int i = 0; i < m->n_outputs; i++) {
        const eng_tensor *t = eng_plan_value(plan, m->outputs[i]);
        if (t->rank < 1 || t->dims[0] != slice || !core_dtype_is_flat(t->dtype)) goto decline;
    }
    int64_t slices = batch / slice;
    int n = core_threadpool_size(threads);
    s->n_plans = slices < n ? (int)slices : n;
    s->plans = calloc((size_t)s->n_plans, sizeof(*s->plans));
    s->views = calloc((size_t)s->n_plans * (size_t)m->n_inputs, sizeof(*s->views));
    s->outs = calloc((size_t)m->n_outputs, sizeof(*s->outs));
    if (!s->plans || !s->views || !s->outs) goto nomem;
    s->plans[0] = plan;
    plan = NULL;
    for (int i = 1; i < s->n_plans; i++)
        if ((st = build(m, inputs, slice, views, &s->plans[i]))) goto fail;
    size_t total = 0;
    for (int i = 0; i < m->n_outputs; i++) {
        s->outs[i] = *eng_plan_value(s->plans[0], m->outputs[i]);
        s->outs[i].dims[0] = batch;
        total += (eng_nbytes(&s->outs[i]) + 63) & ~(size_t)63;
    }
    s->out_data = aligned_alloc(64, total ? total : 64);
    if (!s->out_data) goto nomem;
    total = 0;
    for (int i = 0; i < m->n_outputs; i++) {
        s->outs[i].data = (char *)s->out_data + total;
        total += (eng_nbytes(&s->outs[i]) + 63) & ~(size_t)63;
    }
    s->slice = slice;
    free(views);
    return NULL;

decline:
    ferry_status_free(st);
    eng_plan_free(plan);
    free(views);
    eng_tensor *sig = s->sig;
    size_t sample_bytes = s->sample_bytes;
    s->sig = NULL;
    reset(s);
    s->sig = sig;
    s->sample_bytes = sample_bytes;
    s->decided = true;
    return NULL;
nomem:
    st = core_error(FERRY_ERR_NO_MEMORY, "out of memory planning batch slices");
fail:
    eng_plan_free(plan);
    free(views);
    reset(s);
    return st;
}

typedef struct slice_job {
    eng_split *s;
    const ferry_model *m;
    const eng_tensor *inputs;
    bool profile;
    _Atomic(ferry_status *) error;
} slice_job;

static void run_slice(void *arg, int64_t index, int slot)
{
    slice_job *j = arg;
    eng_split *s = j->s;
    const ferry_model *m = j->m;
    if (atomic_load_explicit(&j->error, memory_order_relaxed)) return;
    eng_tensor *views = s->views + (size_t)slot * (size_t)m->n_inputs;
    slice_inputs(m, j->inputs, index * s->slice, s->slice, views);
    eng_node_counter *counters =
        j->profile ? s->counters + (size_t)slot * (size_t)m->n_nodes : NULL;
    ferry_status *st = eng_plan_run(s->plans[slot], m, views, NULL, counters);
    if (st) {
        ferry_status *none = NULL;
        if (!atomic_compare_exchange_strong(&j->error, &none, st)) ferry_status_free(st);
        return;
    }
    for (int i = 0; i < m->n_outputs; i++) {
        const eng_tensor *t = eng_plan_value(s->plans[slot], m->outputs[i]);
        size_t bytes = eng_nbytes(t);
        memcpy((char *)s->outs[i].data + (size_t)index * bytes, t->data, bytes);
    }
}

ferry_status *eng_split_run(eng_split **split, const ferry_model *m, const eng_tensor *inputs,
                            core_threadpool *threads, eng_node_counter *counters, bool *used)
{
    *used = false;
    if (!m->batch_separable || !m->batch_slice_bytes) return NULL;
    int64_t batch = inputs[0].rank >= 1 ? inputs[0].dims[0] : 0;
    if (batch <= 1) return NULL;
    for (int i = 0; i < m->n_inputs; i++)
        if (inputs[i].rank < 1 || inputs[i].dims[0] != batch) return NULL;
    eng_split *s = *split;
    if (!s) {
        if (!(s = calloc(1, sizeof(*s))))
            return core_error(FERRY_ERR_NO_MEMORY, "out of memory planning batch slices");
        *split = s;
    }
    ferry_status *st;
    if (!s->decided || !same_signature(s, m, inputs))
        if ((st = decide(s, m, inputs, threads))) return st;
    if (!s->slice) return NULL;
    size_t n_counters = (size_t)s->n_plans * (size_t)m->n_nodes;
    if (counters && !s->counters && !(s->counters = calloc(n_counters, sizeof(*s->counters))))
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory for the profile");
    slice_job job = {.s = s, .m = m, .inputs = inputs, .profile = counters != NULL};
    atomic_init(&job.error, NULL);
    kern_parallel(s->n_plans > 1 ? threads : NULL, inputs[0].dims[0] / s->slice, run_slice, &job);
    if (counters) {
        /* A node counts one run per batch, however many slices ran it. */
        for (int k = 0; k < m->n_nodes; k++) {
            uint64_t ns = 0, runs = 0;
            for (int p = 0; p < s->n_plans; p++) {
                eng_node_counter *c = &s->counters[(size_t)p * (size_t)m->n_nodes + (size_t)k];
                ns += c->nanoseconds;
                runs += c->runs;
                c->nanoseconds = c->runs = 0;
            }
            counters[k].nanoseconds += ns;
            counters[k].runs += runs ? 1 : 0;
        }
    }
    st = atomic_load(&job.error);
    if (st) return st;
    *used = true;
    return NULL;
}
