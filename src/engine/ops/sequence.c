/* sequence.c - sequence and optional values: SequenceEmpty, SequenceConstruct, SequenceInsert,
 * SequenceAt, SequenceErase, SequenceLength, SplitToSequence, ConcatFromSequence, Optional,
 * OptionalHasElement, OptionalGetElement.
 *
 * A sequence is a value of type FERRY_DTYPE_SEQUENCE whose data is an array of tensor views
 * (see ferry.h); an optional holds zero or one view. Their lengths depend on data, so these
 * operators use the eval hook and run while a plan is built: their inputs are then known, and
 * views may point at them for the plan's lifetime.
 */
#include "engine/op.h"

#include <string.h>

static ferry_status *nomem(void)
{
    return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
}

/* A container of N views, zero-filled, in POOL. */
static ferry_status *new_container(core_pool *pool, ferry_dtype kind, int64_t n, eng_tensor *out)
{
    if (n < 0 || n > (1 << 24))
        return core_error(FERRY_ERR_RUNTIME, "a sequence of %lld elements is too long",
                          (long long)n);
    memset(out, 0, sizeof(*out));
    out->dtype = kind;
    out->rank = 1;
    out->dims[0] = n;
    out->data = core_pool_alloc(pool, ((size_t)n + 1) * sizeof(eng_tensor), 64);
    return out->data ? NULL : nomem();
}

static ferry_status *need_kind(const eng_tensor *t, ferry_dtype kind, const char *what)
{
    if (!t || t->dtype != kind)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be a %s, got %s", what,
                          ferry_dtype_name(kind), t ? ferry_dtype_name(t->dtype) : "nothing");
    return NULL;
}

static const eng_tensor *items(const eng_tensor *seq)
{
    return seq->data;
}

/* Reads a position input: a scalar integer in [-n, n - 1] (or [-n, n] when INSERT), made
 * non-negative. */
static ferry_status *position(const eng_tensor *t, int64_t n, bool insert, int64_t *out)
{
    if (t->dtype != FERRY_DTYPE_INT64 && t->dtype != FERRY_DTYPE_INT32)
        return eng_bad_dtype("position", t->dtype);
    if (eng_numel(t) != 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "position must be a scalar");
    int64_t p = core_load_i64(t->dtype, t->data, 0);
    int64_t hi = insert ? n : n - 1;
    if (p < -n || p > hi)
        return core_error(FERRY_ERR_RUNTIME, "position %lld is out of range for a sequence of %lld",
                          (long long)p, (long long)n);
    *out = p < 0 ? p + n : p;
    return NULL;
}

static ferry_status *seq_empty(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                               core_pool *pool)
{
    (void)n;
    (void)ins;
    (void)n_ins;
    return new_container(pool, FERRY_DTYPE_SEQUENCE, 0, outs[0]);
}

static ferry_status *seq_construct(const eng_node *n, eng_tensor **ins, int n_ins,
                                   eng_tensor **outs, core_pool *pool)
{
    (void)n;
    if (n_ins < 1) return core_error(FERRY_ERR_INVALID_MODEL, "needs at least one input");
    ferry_status *st = new_container(pool, FERRY_DTYPE_SEQUENCE, n_ins, outs[0]);
    if (st) return st;
    eng_tensor *dst = outs[0]->data;
    for (int i = 0; i < n_ins; i++) {
        if (!ins[i] || ins[i]->dtype != ins[0]->dtype)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "every input must be a tensor of the same type");
        dst[i] = *ins[i];
    }
    return NULL;
}

static ferry_status *seq_insert(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                                core_pool *pool)
{
    (void)n;
    ferry_status *st = need_kind(ins[0], FERRY_DTYPE_SEQUENCE, "input_sequence");
    if (st) return st;
    if (n_ins < 2 || !ins[1]) return core_error(FERRY_ERR_INVALID_MODEL, "tensor is missing");
    int64_t len = ins[0]->dims[0], at = len;
    if (len > 0 && items(ins[0])[0].dtype != ins[1]->dtype)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "tensor of type %s in a sequence of %s",
                          ferry_dtype_name(ins[1]->dtype),
                          ferry_dtype_name(items(ins[0])[0].dtype));
    if (n_ins > 2 && ins[2] && (st = position(ins[2], len, true, &at))) return st;
    if ((st = new_container(pool, FERRY_DTYPE_SEQUENCE, len + 1, outs[0]))) return st;
    eng_tensor *dst = outs[0]->data;
    const eng_tensor *src = items(ins[0]);
    for (int64_t i = 0, j = 0; i <= len; i++) dst[i] = i == at ? *ins[1] : src[j++];
    return NULL;
}

static ferry_status *seq_at(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                            core_pool *pool)
{
    (void)n;
    (void)pool;
    ferry_status *st = need_kind(ins[0], FERRY_DTYPE_SEQUENCE, "input_sequence");
    if (st) return st;
    int64_t at;
    if (n_ins < 2 || !ins[1]) return core_error(FERRY_ERR_INVALID_MODEL, "position is missing");
    if ((st = position(ins[1], ins[0]->dims[0], false, &at))) return st;
    *outs[0] = items(ins[0])[at];
    return NULL;
}

static ferry_status *seq_erase(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                               core_pool *pool)
{
    (void)n;
    ferry_status *st = need_kind(ins[0], FERRY_DTYPE_SEQUENCE, "input_sequence");
    if (st) return st;
    int64_t len = ins[0]->dims[0], at = len - 1;
    if (len == 0) return core_error(FERRY_ERR_RUNTIME, "cannot erase from an empty sequence");
    if (n_ins > 1 && ins[1] && (st = position(ins[1], len, false, &at))) return st;
    if ((st = new_container(pool, FERRY_DTYPE_SEQUENCE, len - 1, outs[0]))) return st;
    eng_tensor *dst = outs[0]->data;
    const eng_tensor *src = items(ins[0]);
    for (int64_t i = 0, j = 0; i < len; i++)
        if (i != at) dst[j++] = src[i];
    return NULL;
}

static ferry_status *scalar_out(core_pool *pool, ferry_dtype dt, int64_t v, eng_tensor *out)
{
    memset(out, 0, sizeof(*out));
    out->dtype = dt;
    out->data = core_pool_alloc(pool, 8, 64);
    if (!out->data) return nomem();
    core_store_i64(dt, out->data, 0, v);
    return NULL;
}

static ferry_status *seq_length(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                                core_pool *pool)
{
    (void)n;
    (void)n_ins;
    ferry_status *st = need_kind(ins[0], FERRY_DTYPE_SEQUENCE, "input_sequence");
    return st ? st : scalar_out(pool, FERRY_DTYPE_INT64, ins[0]->dims[0], outs[0]);
}

/* Copies the slab [start, start + len) along AXIS of X into a new tensor in POOL. */
static ferry_status *slab(core_pool *pool, const eng_tensor *x, int axis, int64_t start,
                          int64_t len, bool keep_axis, eng_tensor *out)
{
    int64_t strides[FERRY_MAX_RANK], acc = 1;
    for (int d = x->rank - 1; d >= 0; d--) {
        strides[d] = acc;
        acc *= x->dims[d];
    }
    eng_tensor t = *x;
    t.dims[axis] = len;
    size_t esz = ferry_dtype_size(x->dtype);
    size_t bytes = eng_nbytes(&t);
    t.data = core_pool_alloc(pool, bytes ? bytes : 1, 64);
    if (!t.data) return nomem();
    if (bytes)
        eng_copy_strided(t.data, (const char *)x->data + (size_t)(start * strides[axis]) * esz, esz,
                         t.rank, t.dims, strides);
    if (!keep_axis) {
        for (int d = axis; d + 1 < t.rank; d++) t.dims[d] = t.dims[d + 1];
        t.rank--;
    }
    *out = t;
    return NULL;
}

static ferry_status *split_to_seq(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                                  core_pool *pool)
{
    const eng_tensor *x = ins[0];
    int axis;
    ferry_status *st = eng_axis(eng_attr_int(n, "axis", 0), x->rank, &axis);
    if (st) return st;
    int64_t dim = x->dims[axis];
    int64_t lens[4096];
    int64_t count = 0;
    bool keep = true;
    const eng_tensor *split = n_ins > 1 ? ins[1] : NULL;
    if (!split) {
        /* No split: one element per index, the axis dropped unless keepdims. */
        keep = eng_attr_int(n, "keepdims", 1) != 0;
        if (dim > 4096) return core_error(FERRY_ERR_UNSUPPORTED, "more than 4096 pieces");
        for (int64_t i = 0; i < dim; i++) lens[count++] = 1;
    } else if (split->rank == 0) {
        int64_t size = core_load_i64(split->dtype, split->data, 0);
        if (size <= 0) return core_error(FERRY_ERR_INVALID_ARGUMENT, "split must be positive");
        for (int64_t off = 0; off < dim; off += size) {
            if (count >= 4096) return core_error(FERRY_ERR_UNSUPPORTED, "more than 4096 pieces");
            lens[count++] = off + size <= dim ? size : dim - off;
        }
    } else {
        size_t got;
        if ((st = eng_read_ints(split, lens, 4096, &got))) return st;
        count = (int64_t)got;
        int64_t sum = 0;
        for (int64_t i = 0; i < count; i++) {
            if (lens[i] < 0) return core_error(FERRY_ERR_INVALID_ARGUMENT, "negative split");
            sum += lens[i];
        }
        if (sum != dim)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "split sums to %lld but the axis has %lld", (long long)sum,
                              (long long)dim);
    }
    if ((st = new_container(pool, FERRY_DTYPE_SEQUENCE, count, outs[0]))) return st;
    eng_tensor *dst = outs[0]->data;
    for (int64_t i = 0, off = 0; i < count; off += lens[i], i++)
        if ((st = slab(pool, x, axis, off, lens[i], keep, &dst[i]))) return st;
    return NULL;
}

static ferry_status *concat_from_seq(const eng_node *n, eng_tensor **ins, int n_ins,
                                     eng_tensor **outs, core_pool *pool)
{
    (void)n_ins;
    ferry_status *st = need_kind(ins[0], FERRY_DTYPE_SEQUENCE, "input_sequence");
    if (st) return st;
    int64_t len = ins[0]->dims[0];
    const eng_tensor *e = items(ins[0]);
    if (len == 0) return core_error(FERRY_ERR_RUNTIME, "cannot concatenate an empty sequence");
    bool new_axis = eng_attr_int(n, "new_axis", 0) != 0;
    int rank = e[0].rank + (new_axis ? 1 : 0), axis;
    if (rank > FERRY_MAX_RANK) return core_error(FERRY_ERR_UNSUPPORTED, "rank too large");
    if ((st = eng_axis(eng_attr_int(n, "axis", 0), rank, &axis))) return st;
    eng_tensor *out = outs[0];
    memset(out, 0, sizeof(*out));
    out->dtype = e[0].dtype;
    out->rank = rank;
    /* Each element, viewed with the new axis inserted, is [outer, piece, inner]. */
    for (int d = 0, s = 0; d < rank; d++) out->dims[d] = new_axis && d == axis ? 1 : e[0].dims[s++];
    out->dims[axis] = 0;
    for (int64_t i = 0; i < len; i++) {
        if (e[i].dtype != e[0].dtype || e[i].rank != e[0].rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "sequence elements differ in type or rank");
        for (int d = 0, s = 0; d < rank; d++) {
            int64_t v = new_axis && d == axis ? 1 : e[i].dims[s++];
            if (d == axis)
                out->dims[d] += v;
            else if (v != out->dims[d])
                return core_error(FERRY_ERR_INVALID_ARGUMENT,
                                  "sequence elements differ outside the concatenation axis");
        }
    }
    int64_t total = 1;
    for (int d = 0; d < rank; d++) {
        if (out->dims[d] && total > ((int64_t)1 << 40) / out->dims[d])
            return core_error(FERRY_ERR_NO_MEMORY, "the concatenation is too large");
        total *= out->dims[d];
    }
    size_t esz = ferry_dtype_size(out->dtype), bytes = eng_nbytes(out);
    out->data = core_pool_alloc(pool, bytes ? bytes : 1, 64);
    if (!out->data) return nomem();
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++) outer *= out->dims[d];
    for (int d = axis + 1; d < rank; d++) inner *= out->dims[d];
    size_t row = (size_t)(out->dims[axis] * inner) * esz, off = 0;
    for (int64_t i = 0; i < len; i++) {
        int64_t piece = new_axis ? 1 : e[i].dims[axis];
        size_t chunk = (size_t)(piece * inner) * esz;
        for (int64_t o = 0; o < outer && chunk; o++)
            memcpy((char *)out->data + (size_t)o * row + off,
                   (const char *)e[i].data + (size_t)o * chunk, chunk);
        off += chunk;
    }
    return NULL;
}

static ferry_status *optional_make(const eng_node *n, eng_tensor **ins, int n_ins,
                                   eng_tensor **outs, core_pool *pool)
{
    (void)n;
    bool has = n_ins > 0 && ins[0];
    ferry_status *st = new_container(pool, FERRY_DTYPE_OPTIONAL, has ? 1 : 0, outs[0]);
    if (!st && has) ((eng_tensor *)outs[0]->data)[0] = *ins[0];
    return st;
}

static ferry_status *optional_has(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                                  core_pool *pool)
{
    (void)n;
    bool has = n_ins > 0 && ins[0];
    if (has && ins[0]->dtype == FERRY_DTYPE_OPTIONAL) has = ins[0]->dims[0] > 0;
    return scalar_out(pool, FERRY_DTYPE_BOOL, has, outs[0]);
}

static ferry_status *optional_get(const eng_node *n, eng_tensor **ins, int n_ins, eng_tensor **outs,
                                  core_pool *pool)
{
    (void)n;
    (void)pool;
    if (n_ins < 1 || !ins[0]) return core_error(FERRY_ERR_INVALID_MODEL, "input is missing");
    if (ins[0]->dtype != FERRY_DTYPE_OPTIONAL) {
        *outs[0] = *ins[0]; /* opset 18 accepts a plain tensor or sequence */
        return NULL;
    }
    if (ins[0]->dims[0] == 0)
        return core_error(FERRY_ERR_RUNTIME, "the optional input holds no value");
    *outs[0] = items(ins[0])[0];
    return NULL;
}

static ferry_status *no_call(eng_op_call *call)
{
    (void)call;
    return core_error(FERRY_ERR_INTERNAL, "sequence operators run through eval");
}

#define SEQ_OP(NAME, SINCE, FN)                                                                    \
    {                                                                                              \
        .domain = "", .name = NAME, .since_version = SINCE, .infer = no_call, .run = no_call,      \
        .eval = FN                                                                                 \
    }

static const eng_op ops[] = {
    SEQ_OP("SequenceEmpty", 11, seq_empty),
    SEQ_OP("SequenceConstruct", 11, seq_construct),
    SEQ_OP("SequenceInsert", 11, seq_insert),
    SEQ_OP("SequenceAt", 11, seq_at),
    SEQ_OP("SequenceErase", 11, seq_erase),
    SEQ_OP("SequenceLength", 11, seq_length),
    SEQ_OP("SplitToSequence", 11, split_to_seq),
    SEQ_OP("ConcatFromSequence", 11, concat_from_seq),
    SEQ_OP("Optional", 15, optional_make),
    SEQ_OP("OptionalHasElement", 15, optional_has),
    SEQ_OP("OptionalGetElement", 15, optional_get),
};

const eng_op_table eng_ops_sequence = {ops, sizeof(ops) / sizeof(ops[0])};
