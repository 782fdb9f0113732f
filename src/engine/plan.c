/* plan.c - shape inference, plan-time evaluation, arena layout and execution of a plan. */
#include "engine/plan.h"
#include "core/memory.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALIGN  64
#define MAX_IO 4096

typedef struct eng_step {
    eng_op_call call;
    const eng_node *node;
    size_t ws_offset;
} eng_step;

typedef struct buffer {
    int value; /* value index, or -1 for a workspace */
    int step;  /* the workspace's step */
    int first, last;
    size_t size;
    size_t offset;
} buffer;

struct eng_plan {
    core_pool pool;
    core_pool strings; /* strings created by operators during the last run */
    eng_tensor *vals;  /* one per model value */
    eng_step *steps;
    int n_steps;
    void *arena;
    size_t arena_size;
    eng_tensor *key; /* one per model input: dtype, dims, and data for keyed inputs */
    int *out_copies; /* outputs that are inputs: copied into the arena after a run */
    eng_tensor *copies;
    int n_out_copies;
};

static size_t align_up(size_t n)
{
    return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

static ferry_status *node_error(ferry_status *st, const eng_node *n)
{
    if (*n->name) return core_error_wrap(st, "node '%s' (%s)", n->name, n->op_type);
    return core_error_wrap(st, "node %s", n->op_type);
}

/* Runs the operator's shape inference and checks what it produced. */
static ferry_status *infer_node(const eng_node *n, eng_op_call *c)
{
    for (int o = 0; o < c->n_out; o++)
        if (c->out[o]) memset(c->out[o], 0, sizeof(eng_tensor));
    c->workspace_size = 0;
    for (int i = 0; i < c->n_in; i++) {
        const eng_tensor *t = c->in[i];
        if (t && !core_dtype_is_flat(t->dtype))
            return node_error(core_error(FERRY_ERR_UNSUPPORTED, "input %d has type %s", i,
                                         ferry_dtype_name(t->dtype)),
                              n);
    }
    ferry_status *st = n->op->infer(c);
    if (st) return node_error(st, n);
    for (int o = 0; o < c->n_out; o++) {
        eng_tensor *t = c->out[o];
        if (!t) continue;
        if (!core_dtype_is_flat(t->dtype))
            return node_error(core_error(FERRY_ERR_INTERNAL, "output %d has no type", o), n);
        if ((st = eng_check_tensor_shape(t)))
            return node_error(core_error_wrap(st, "output %d", o), n);
    }
    if (c->workspace_size > ((size_t)1 << 40))
        return node_error(
            core_error(FERRY_ERR_NO_MEMORY, "needs %zu bytes of scratch memory", c->workspace_size),
            n);
    return NULL;
}

ferry_status *eng_eval_node(const eng_node *n, eng_tensor **ins, eng_tensor *outs, core_pool *pool)
{
    eng_tensor *out_ptrs[MAX_IO];
    if (n->n_out > MAX_IO)
        return node_error(core_error(FERRY_ERR_UNSUPPORTED, "too many outputs"), n);
    for (int o = 0; o < n->n_out; o++) out_ptrs[o] = n->out[o] >= 0 ? &outs[o] : NULL;
    if (n->op->eval) {
        for (int o = 0; o < n->n_out; o++)
            if (out_ptrs[o]) memset(out_ptrs[o], 0, sizeof(eng_tensor));
        ferry_status *st = n->op->eval(n, ins, n->n_in, out_ptrs, pool);
        for (int o = 0; !st && o < n->n_out; o++)
            if (out_ptrs[o] && (st = eng_check_tensor_shape(out_ptrs[o])))
                st = core_error_wrap(st, "output %d", o);
        return st ? node_error(st, n) : NULL;
    }
    eng_op_call c = {.node = n,
                     .opset = n->opset,
                     .n_in = n->n_in - n->n_implicit,
                     .n_out = n->n_out,
                     .in = ins,
                     .out = out_ptrs,
                     .state = n->state,
                     .packed = n->packed,
                     .strings = pool};
    ferry_status *st = infer_node(n, &c);
    if (st) return st;
    for (int o = 0; o < n->n_out; o++) {
        if (!out_ptrs[o]) continue;
        size_t bytes = eng_nbytes(out_ptrs[o]);
        out_ptrs[o]->data = core_pool_alloc(pool, bytes ? bytes : 1, ALIGN);
        if (!out_ptrs[o]->data) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    }
    void *ws = NULL;
    if (c.workspace_size) {
        ws = aligned_alloc(ALIGN, align_up(c.workspace_size));
        if (!ws) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    }
    c.workspace = ws;
    st = n->op->run(&c);
    free(ws);
    return st ? node_error(st, n) : NULL;
}

ferry_status *eng_check_input(const ferry_model *m, int i, const eng_tensor *in, bool need_data)
{
    const eng_value *v = &m->values[m->inputs[i]];
    char got[160], want[160];
    /* An optional input also takes the plain value it would hold (ONNX wraps implicitly). */
    bool optional_ok = v->declared_dtype == FERRY_DTYPE_OPTIONAL;
    if (v->declared_dtype != FERRY_DTYPE_UNDEFINED && in->dtype != v->declared_dtype &&
        !optional_ok)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input '%s': expected dtype %s, got %s",
                          v->name, ferry_dtype_name(v->declared_dtype),
                          ferry_dtype_name(in->dtype));
    if (!core_dtype_is_flat(in->dtype))
        return core_error(FERRY_ERR_UNSUPPORTED, "input '%s': dtype %s is not supported", v->name,
                          ferry_dtype_name(in->dtype));
    ferry_status *st = eng_check_tensor_shape(in);
    if (st) return core_error_wrap(st, "input '%s'", v->name);
    bool ok = v->declared_rank < 0 || v->declared_rank == in->rank;
    for (int d = 0; ok && v->declared_rank >= 0 && d < in->rank; d++)
        if (v->tensor.dims[d] >= 0 && v->tensor.dims[d] != in->dims[d]) ok = false;
    if (!ok) {
        /* Show symbolic dimensions as -1, the way users write them in configs. */
        eng_tensor decl = v->tensor;
        decl.rank = v->declared_rank;
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input '%s': expected shape %s, got %s",
                          v->name, eng_shape_str(&decl, want, sizeof(want)),
                          eng_shape_str(in, got, sizeof(got)));
    }
    if (need_data && in->data == NULL && eng_numel(in) > 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input '%s': data pointer is NULL", v->name);
    return NULL;
}

/* Operators whose output 0 is input 0's bytes unchanged; their run skips the copy when both
 * share memory. */
static bool is_view_op(const eng_node *n)
{
    static const char *const names[] = {"Reshape",   "Flatten",  "Squeeze",
                                        "Unsqueeze", "Identity", "Dropout"};
    if (*n->domain) return false;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(n->op_type, names[i])) return true;
    return false;
}

static int cmp_size_desc(const void *a, const void *b)
{
    const buffer *x = *(buffer *const *)a, *y = *(buffer *const *)b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->first - y->first;
}

static int cmp_offset(const void *a, const void *b)
{
    const buffer *x = *(buffer *const *)a, *y = *(buffer *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Greedy by size: largest buffers first, each at the lowest offset that does not overlap a
 * placed buffer whose lifetime intersects its own. */
static ferry_status *layout(buffer *bufs, int n, size_t *total)
{
    *total = 0;
    if (!n) return NULL;
    buffer **order = malloc((size_t)n * sizeof(*order));
    buffer **live = malloc((size_t)n * sizeof(*live));
    if (!order || !live) {
        free(order);
        free(live);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory while planning");
    }
    for (int i = 0; i < n; i++) order[i] = &bufs[i];
    qsort(order, (size_t)n, sizeof(*order), cmp_size_desc);
    for (int i = 0; i < n; i++) {
        buffer *b = order[i];
        int nl = 0;
        for (int j = 0; j < i; j++) {
            buffer *o = order[j];
            if (o->first <= b->last && b->first <= o->last) live[nl++] = o;
        }
        qsort(live, (size_t)nl, sizeof(*live), cmp_offset);
        size_t off = 0;
        for (int j = 0; j < nl; j++) {
            if (live[j]->offset >= off + b->size) break;
            size_t end = live[j]->offset + live[j]->size;
            if (end > off) off = end;
        }
        b->offset = off;
        if (off + b->size > *total) *total = off + b->size;
    }
    free(order);
    free(live);
    return NULL;
}

void eng_plan_free(eng_plan *p)
{
    if (!p) return;
    free(p->arena);
    core_pool_release(&p->strings);
    core_pool_release(&p->pool);
    free(p);
}

size_t eng_plan_arena_bytes(const eng_plan *p)
{
    return p->arena_size;
}

const eng_tensor *eng_plan_value(const eng_plan *p, int v)
{
    for (int i = 0; i < p->n_out_copies; i++)
        if (p->out_copies[i] == v) return &p->copies[i];
    return &p->vals[v];
}

ferry_status *eng_plan_build(const ferry_model *m, const eng_tensor *inputs, bool dry,
                             core_threadpool *threads, eng_plan **out)
{
    ferry_status *st = NULL;
    buffer *bufs = NULL;
    int *first_def = NULL, *last_use = NULL, *root = NULL;
    *out = NULL;
    eng_plan *p = calloc(1, sizeof(*p));
    if (!p) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    core_pool *pool = &p->pool;
    p->vals = core_pool_alloc(pool, ((size_t)m->n_values + 1) * sizeof(eng_tensor), ALIGN);
    p->steps = core_pool_alloc(pool, ((size_t)m->n_nodes + 1) * sizeof(eng_step), ALIGN);
    p->key = core_pool_alloc(pool, ((size_t)m->n_inputs + 1) * sizeof(eng_tensor), ALIGN);
    p->out_copies = core_pool_alloc(pool, ((size_t)m->n_outputs + 1) * sizeof(int), 8);
    p->copies = core_pool_alloc(pool, ((size_t)m->n_outputs + 1) * sizeof(eng_tensor), 8);
    first_def = malloc(((size_t)m->n_values + 1) * sizeof(int));
    last_use = malloc(((size_t)m->n_values + 1) * sizeof(int));
    if (!p->vals || !p->steps || !p->key || !p->out_copies || !p->copies || !first_def || !last_use)
        goto nomem;
    for (int v = 0; v < m->n_values; v++) {
        first_def[v] = last_use[v] = -1;
        if (m->values[v].kind == ENG_VALUE_CONST) p->vals[v] = m->values[v].tensor;
    }
    for (int i = 0; i < m->n_inputs; i++) {
        if ((st = eng_check_input(m, i, &inputs[i], !dry))) goto out;
        int v = m->inputs[i];
        p->vals[v] = inputs[i];
        p->key[i] = inputs[i];
        p->key[i].data = NULL;
        if (m->values[v].keyed) {
            if (!inputs[i].data) {
                st = core_error(FERRY_ERR_INVALID_ARGUMENT,
                                "input '%s' decides output shapes, so its data is needed to plan",
                                m->values[v].name);
                goto out;
            }
            /* The key keeps the value itself (text, elements), not the caller's pointers. */
            eng_tensor copy;
            if ((st = eng_copy_value(pool, &inputs[i], &copy))) goto out;
            p->key[i].data = copy.data;
            p->vals[v].data = copy.data;
        } else if (dry) {
            p->vals[v].data = NULL;
        }
    }

    for (int k = 0; k < m->n_nodes; k++) {
        const eng_node *n = &m->nodes[k];
        if (n->folded) continue;
        eng_tensor **ins = core_pool_alloc(pool, ((size_t)n->n_in + 1) * sizeof(void *), 8);
        eng_tensor **outs = core_pool_alloc(pool, ((size_t)n->n_out + 1) * sizeof(void *), 8);
        if (!ins || !outs) goto nomem;
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            ins[i] = v >= 0 ? &p->vals[v] : NULL;
            if (i < 32 && (n->op->value_inputs >> i & 1) && v >= 0 && !p->vals[v].data &&
                eng_numel(&p->vals[v]) > 0) {
                st = node_error(core_error(FERRY_ERR_INTERNAL,
                                           "input '%s' decides the output shape but its value "
                                           "is unknown while planning",
                                           m->values[v].name),
                                n);
                goto out;
            }
        }
        for (int o = 0; o < n->n_out; o++) outs[o] = n->out[o] >= 0 ? &p->vals[n->out[o]] : NULL;
        if (n->plan_time) {
            eng_tensor tmp[MAX_IO];
            if (n->n_out > MAX_IO) {
                st = node_error(core_error(FERRY_ERR_UNSUPPORTED, "too many outputs"), n);
                goto out;
            }
            if ((st = eng_eval_node(n, ins, tmp, pool))) goto out;
            for (int o = 0; o < n->n_out; o++)
                if (outs[o]) *outs[o] = tmp[o];
            continue;
        }
        eng_step *s = &p->steps[p->n_steps];
        s->node = n;
        s->call = (eng_op_call){.node = n,
                                .opset = n->opset,
                                .n_in = n->n_in - n->n_implicit,
                                .n_out = n->n_out,
                                .in = ins,
                                .out = outs,
                                .state = n->state,
                                .packed = n->packed,
                                .threads = threads,
                                .strings = &p->strings};
        if ((st = infer_node(n, &s->call))) goto out;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0) last_use[n->in[i]] = p->n_steps;
        for (int o = 0; o < n->n_out; o++)
            if (n->out[o] >= 0) first_def[n->out[o]] = last_use[n->out[o]] = p->n_steps;
        p->n_steps++;
    }

    /* Outputs: check declared types, keep them alive to the end, copy inputs echoed back. */
    for (int i = 0; i < m->n_outputs; i++) {
        int v = m->outputs[i];
        const eng_value *val = &m->values[v];
        if (val->declared_dtype != FERRY_DTYPE_UNDEFINED &&
            p->vals[v].dtype != val->declared_dtype && val->kind == ENG_VALUE_NODE) {
            st = core_error(FERRY_ERR_INVALID_MODEL,
                            "output '%s' is declared as %s but the graph computes %s", val->name,
                            ferry_dtype_name(val->declared_dtype),
                            ferry_dtype_name(p->vals[v].dtype));
            goto out;
        }
        if (first_def[v] >= 0) last_use[v] = p->n_steps;
        bool seen = false;
        for (int j = 0; j < p->n_out_copies; j++) seen |= p->out_copies[j] == v;
        if (val->kind == ENG_VALUE_INPUT && !seen) p->out_copies[p->n_out_copies++] = v;
    }
    if (dry) goto done;

    /* View operators (Reshape and friends) write the same bytes they read: their output shares
     * the input's buffer, and the shared buffer lives as long as either value. */
    root = malloc(((size_t)m->n_values + 1) * sizeof(int));
    if (!root) goto nomem;
    for (int v = 0; v < m->n_values; v++) root[v] = v;
    for (int s = 0; s < p->n_steps; s++) {
        const eng_node *n = p->steps[s].node;
        if (!is_view_op(n) || n->n_in < 1 || n->n_out < 1 || n->in[0] < 0 || n->out[0] < 0)
            continue;
        int src = root[n->in[0]], dst = n->out[0];
        if (first_def[src] < 0 || eng_nbytes(&p->vals[src]) != eng_nbytes(&p->vals[dst])) continue;
        root[dst] = src;
        if (last_use[dst] > last_use[src]) last_use[src] = last_use[dst];
    }
    /* Arena layout. */
    int nb = 0;
    bufs = calloc((size_t)m->n_values + (size_t)p->n_steps + 1, sizeof(buffer));
    if (!bufs) goto nomem;
    for (int v = 0; v < m->n_values; v++) {
        if (first_def[v] < 0 || root[v] != v) continue;
        bufs[nb++] = (buffer){.value = v,
                              .first = first_def[v],
                              .last = last_use[v],
                              .size = align_up(eng_nbytes(&p->vals[v]))};
    }
    for (int s = 0; s < p->n_steps; s++)
        if (p->steps[s].call.workspace_size)
            bufs[nb++] = (buffer){.value = -1,
                                  .step = s,
                                  .first = s,
                                  .last = s,
                                  .size = align_up(p->steps[s].call.workspace_size)};
    size_t copy_off = 0;
    if ((st = layout(bufs, nb, &p->arena_size))) goto out;
    copy_off = p->arena_size;
    for (int i = 0; i < p->n_out_copies; i++)
        p->arena_size += align_up(eng_nbytes(&p->vals[p->out_copies[i]]));
    p->arena = core_alloc_large(p->arena_size ? p->arena_size : ALIGN);
    if (!p->arena) goto nomem;
    for (int b = 0; b < nb; b++) {
        void *addr = (uint8_t *)p->arena + bufs[b].offset;
        if (bufs[b].value >= 0) {
            p->vals[bufs[b].value].data = addr;
        } else {
            p->steps[bufs[b].step].call.workspace = addr;
            p->steps[bufs[b].step].ws_offset = bufs[b].offset;
        }
    }
    for (int v = 0; v < m->n_values; v++)
        if (first_def[v] >= 0 && root[v] != v) p->vals[v].data = p->vals[root[v]].data;
    free(root);
    root = NULL;
    for (int i = 0; i < p->n_out_copies; i++) {
        /* An input returned as an output gets its own slot: the caller's buffer is only
         * borrowed for the call, the output must outlive it. */
        p->copies[i] = p->vals[p->out_copies[i]];
        p->copies[i].data = (uint8_t *)p->arena + copy_off;
        copy_off += align_up(eng_nbytes(&p->copies[i]));
    }
done:
    *out = p;
    p = NULL;
    goto out;
nomem:
    st = core_error(FERRY_ERR_NO_MEMORY, "out of memory while planning the model");
out:
    free(root);
    free(bufs);
    free(first_def);
    free(last_use);
    eng_plan_free(p);
    return st;
}

/* String outputs in the arena may point at the caller's input strings, which are only borrowed
 * for the run: give them copies that live until the next run. */
static ferry_status *own_output_strings(eng_plan *p, const ferry_model *m)
{
    const uint8_t *lo = p->arena, *hi = lo + p->arena_size;
    for (int i = 0; i < m->n_outputs; i++) {
        const eng_tensor *t = eng_plan_value(p, m->outputs[i]);
        const uint8_t *d = t->data;
        if (t->dtype != FERRY_DTYPE_STRING || !d || d < lo || d >= hi) continue;
        const char **strs = t->data;
        for (int64_t k = 0; k < eng_numel(t); k++) {
            const char *s = strs[k] ? strs[k] : "";
            char *copy = core_pool_strndup(&p->strings, s, strlen(s));
            if (!copy) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            strs[k] = copy;
        }
    }
    return NULL;
}

bool eng_plan_matches(const eng_plan *p, const ferry_model *m, const eng_tensor *inputs)
{
    for (int i = 0; i < m->n_inputs; i++) {
        const eng_tensor *k = &p->key[i], *in = &inputs[i];
        if (k->dtype != in->dtype || k->rank != in->rank) return false;
        for (int d = 0; d < k->rank; d++)
            if (k->dims[d] != in->dims[d]) return false;
        if (k->data && !eng_value_equal(k, in)) return false;
    }
    return true;
}

/* Adds the time since T0 and one run to C. */
static void count_step(eng_node_counter *c, const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t ns = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000000 + (t1.tv_nsec - t0->tv_nsec);
    c->runs++;
    c->nanoseconds += ns > 0 ? (uint64_t)ns : 0;
}

ferry_status *eng_plan_run(eng_plan *p, const ferry_model *m, const eng_tensor *inputs,
                           core_threadpool *threads, eng_node_counter *counters)
{
    for (int i = 0; i < m->n_inputs; i++) {
        int v = m->inputs[i];
        if (!p->key[i].data) p->vals[v].data = inputs[i].data;
    }
    core_pool_release(&p->strings);
    for (int s = 0; s < p->n_steps; s++) {
        eng_step *step = &p->steps[s];
        step->call.threads = threads;
        struct timespec t0 = {0};
        if (counters) clock_gettime(CLOCK_MONOTONIC, &t0);
        ferry_status *st = step->node->op->run(&step->call);
        if (st) return node_error(st, step->node);
        /* Steps point into m->nodes (the plan was built from M), so the difference is the node's
         * execution-order index, the numbering of ferry_model_node_op(). */
        if (counters) count_step(&counters[step->node - m->nodes], &t0);
    }
    for (int i = 0; i < p->n_out_copies; i++) {
        const eng_tensor *src = &p->vals[p->out_copies[i]];
        size_t bytes = eng_nbytes(src);
        if (bytes) memcpy(p->copies[i].data, src->data, bytes);
    }
    return own_output_strings(p, m);
}
