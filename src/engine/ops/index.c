/* index.c - operators that read or write elements at positions taken from data: GatherElements,
 * GatherND, ScatterElements (and its deprecated name Scatter), ScatterND, OneHot, Compress and
 * NonZero.
 *
 * Element moves work on any flat dtype by copying ferry_dtype_size() bytes; only the scatter
 * reductions (add, mul, max, min) look at values. Every index read from a tensor is checked
 * against the dim it addresses before it is used, and a bad one is a FERRY_ERR_RUNTIME error:
 * a model's indices are data, so they are never trusted.
 *
 * Output shapes that depend on values: OneHot's depth and Compress's condition are flagged in
 * value_inputs, and so is NonZero's only input, which makes the engine compute it while
 * planning (its callers' inputs become part of the plan key). Run recomputes everything from
 * the inputs rather than keeping anything from infer, since state is shared by every context.
 */
#include "engine/op.h"

#include <stdlib.h>
#include <string.h>

#define R FERRY_MAX_RANK

/* The engine passes NULL for inputs and outputs that the model names ""; the required ones
 * must be there. */
static ferry_status *need_io(const eng_op_call *call, int n_in, bool out0)
{
    for (int i = 0; i < n_in; i++)
        if (i >= call->n_in || !call->in[i])
            return core_error(FERRY_ERR_INVALID_MODEL, "missing required input %d", i);
    if (out0 && (call->n_out < 1 || !call->out[0]))
        return core_error(FERRY_ERR_INVALID_MODEL, "missing output 0");
    return NULL;
}

/* Tensor element types, strings (moved as pointers) included; sequences and optionals, which
 * the engine numbers past FERRY_DTYPE_COUNT, are values of another kind. */
static ferry_status *need_flat(const char *what, const eng_tensor *t)
{
    bool element = (unsigned)t->dtype < FERRY_DTYPE_COUNT && ferry_dtype_size(t->dtype) != 0;
    return element ? NULL : eng_bad_dtype(what, t->dtype);
}

static ferry_status *need_index_type(const char *what, const eng_tensor *t)
{
    if (t->dtype == FERRY_DTYPE_INT64 || t->dtype == FERRY_DTYPE_INT32) return NULL;
    return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be int32 or int64, got %s", what,
                      ferry_dtype_name(t->dtype));
}

static ferry_status *alloc_state(size_t size, void **state)
{
    *state = calloc(1, size);
    return *state ? NULL : core_error(FERRY_ERR_NO_MEMORY, "out of memory");
}

static void strides_of(const eng_tensor *t, int64_t *st)
{
    int64_t s = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
        st[i] = s;
        s *= t->dims[i];
    }
}

static int64_t prod(const int64_t *dims, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= dims[i];
    return p;
}

static inline int64_t load_index(const eng_tensor *idx, int64_t j)
{
    if (idx->dtype == FERRY_DTYPE_INT64) {
        int64_t v;
        memcpy(&v, (const char *)idx->data + j * 8, 8);
        return v;
    }
    int32_t v;
    memcpy(&v, (const char *)idx->data + j * 4, 4);
    return v;
}

/* Constant sizes let the compiler turn single-element moves into one load and store. */
static inline void copy_elem(void *dst, const void *src, size_t esz)
{
    switch (esz) {
    case 1:
        memcpy(dst, src, 1);
        break;
    case 2:
        memcpy(dst, src, 2);
        break;
    case 4:
        memcpy(dst, src, 4);
        break;
    case 8:
        memcpy(dst, src, 8);
        break;
    default:
        memcpy(dst, src, esz);
        break;
    }
}

static ferry_status *bad_index(int64_t i, int64_t dim, int axis)
{
    return core_error(FERRY_ERR_RUNTIME,
                      "index %lld is out of range for a dim of %lld along axis %d", (long long)i,
                      (long long)dim, axis);
}

/* Copies the input to the output unless the engine gave both the same memory. */
static void copy_input(const eng_tensor *in, eng_tensor *out)
{
    size_t n = eng_nbytes(in);
    if (n && out->data != in->data) memcpy(out->data, in->data, n);
}

/* --- scatter reductions ------------------------------------------------------------------- */

typedef enum reduction { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN } reduction;

static ferry_status *parse_reduction(const eng_node *node, reduction *out)
{
    const char *s = eng_attr_string(node, "reduction", "none");
    if (!strcmp(s, "none"))
        *out = RED_NONE;
    else if (!strcmp(s, "add"))
        *out = RED_ADD;
    else if (!strcmp(s, "mul"))
        *out = RED_MUL;
    else if (!strcmp(s, "max"))
        *out = RED_MAX;
    else if (!strcmp(s, "min"))
        *out = RED_MIN;
    else
        return core_error(FERRY_ERR_INVALID_MODEL, "unknown reduction '%s'", s);
    return NULL;
}

/* Integer sums and products wrap like the narrow type would, computed unsigned so that signed
 * overflow stays defined. */
#define COMBINE_INT(T, U)                                                                          \
    do {                                                                                           \
        T a, b;                                                                                    \
        memcpy(&a, dst, sizeof(T));                                                                \
        memcpy(&b, src, sizeof(T));                                                                \
        switch (r) {                                                                               \
        case RED_ADD:                                                                              \
            a = (T)((U)a + (U)b);                                                                  \
            break;                                                                                 \
        case RED_MUL:                                                                              \
            a = (T)((U)a * (U)b);                                                                  \
            break;                                                                                 \
        case RED_MAX:                                                                              \
            a = b > a ? b : a;                                                                     \
            break;                                                                                 \
        case RED_MIN:                                                                              \
            a = b < a ? b : a;                                                                     \
            break;                                                                                 \
        case RED_NONE:                                                                             \
            a = b;                                                                                 \
            break;                                                                                 \
        }                                                                                          \
        memcpy(dst, &a, sizeof(T));                                                                \
    } while (0)

#define COMBINE_FLOAT(T, LOAD, STORE)                                                              \
    do {                                                                                           \
        T ra, rb;                                                                                  \
        memcpy(&ra, dst, sizeof(T));                                                               \
        memcpy(&rb, src, sizeof(T));                                                               \
        double a = LOAD(ra), b = LOAD(rb);                                                         \
        switch (r) {                                                                               \
        case RED_ADD:                                                                              \
            a = a + b;                                                                             \
            break;                                                                                 \
        case RED_MUL:                                                                              \
            a = a * b;                                                                             \
            break;                                                                                 \
        case RED_MAX:                                                                              \
            a = b > a ? b : a;                                                                     \
            break;                                                                                 \
        case RED_MIN:                                                                              \
            a = b < a ? b : a;                                                                     \
            break;                                                                                 \
        case RED_NONE:                                                                             \
            a = b;                                                                                 \
            break;                                                                                 \
        }                                                                                          \
        ra = STORE(a);                                                                             \
        memcpy(dst, &ra, sizeof(T));                                                               \
    } while (0)

#define SAME(x)    (x)
#define TO_F32(x)  ((float)(x))
#define HALF(x)    core_half_to_float(x)
#define TO_HALF(x) core_float_to_half((float)(x))
#define BF16(x)    core_bf16_to_float(x)
#define TO_BF16(x) core_float_to_bf16((float)(x))

static bool reducible(ferry_dtype dt)
{
    return core_dtype_is_float(dt) || core_dtype_is_signed_int(dt) ||
           core_dtype_is_unsigned_int(dt) || dt == FERRY_DTYPE_BOOL;
}

/* *DST = *DST (op R) *SRC for one element of type DT. */
static void combine(ferry_dtype dt, void *dst, const void *src, reduction r)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT:
        COMBINE_FLOAT(float, SAME, TO_F32);
        break;
    case FERRY_DTYPE_DOUBLE:
        COMBINE_FLOAT(double, SAME, SAME);
        break;
    case FERRY_DTYPE_FLOAT16:
        COMBINE_FLOAT(uint16_t, HALF, TO_HALF);
        break;
    case FERRY_DTYPE_BFLOAT16:
        COMBINE_FLOAT(uint16_t, BF16, TO_BF16);
        break;
    case FERRY_DTYPE_INT8:
        COMBINE_INT(int8_t, uint8_t);
        break;
    case FERRY_DTYPE_INT16:
        COMBINE_INT(int16_t, uint16_t);
        break;
    case FERRY_DTYPE_INT32:
        COMBINE_INT(int32_t, uint32_t);
        break;
    case FERRY_DTYPE_INT64:
        COMBINE_INT(int64_t, uint64_t);
        break;
    case FERRY_DTYPE_UINT8:
        COMBINE_INT(uint8_t, uint8_t);
        break;
    case FERRY_DTYPE_UINT16:
        COMBINE_INT(uint16_t, uint32_t);
        break;
    case FERRY_DTYPE_UINT32:
        COMBINE_INT(uint32_t, uint32_t);
        break;
    case FERRY_DTYPE_UINT64:
        COMBINE_INT(uint64_t, uint64_t);
        break;
    case FERRY_DTYPE_BOOL: { /* numpy: add is or, mul is and */
        uint8_t a, b;
        memcpy(&a, dst, 1);
        memcpy(&b, src, 1);
        a = r == RED_ADD || r == RED_MAX ? (a || b) : r == RED_NONE ? b : (a && b);
        memcpy(dst, &a, 1);
        break;
    }
    default:
        break;
    }
}

static inline void apply(ferry_dtype dt, size_t esz, void *dst, const void *src, reduction r)
{
    if (r == RED_NONE)
        copy_elem(dst, src, esz);
    else
        combine(dt, dst, src, r);
}

/* --- GatherElements and ScatterElements ----------------------------------------------------- */

typedef struct elements_state {
    int64_t axis;
    reduction red;
} elements_state;

static ferry_status *elements_init(const eng_node *node, int opset, void **state)
{
    reduction red = RED_NONE;
    if (opset >= 16 && !strcmp(eng_node_op_type(node), "ScatterElements")) {
        ferry_status *st = parse_reduction(node, &red);
        if (st) return st;
    }
    ferry_status *st = alloc_state(sizeof(elements_state), state);
    if (st) return st;
    elements_state *s = *state;
    s->axis = eng_attr_int(node, "axis", 0);
    s->red = red;
    return NULL;
}

/* Checks DATA against INDICES (same rank, indices no larger off the axis) and returns the
 * normalised axis. */
static ferry_status *check_elements(const eng_op_call *call, const eng_tensor *data,
                                    const eng_tensor *idx, int *axis)
{
    const elements_state *s = call->state;
    ferry_status *st = need_flat("data", data);
    if (st) return st;
    if ((st = need_index_type("indices", idx))) return st;
    if (data->rank < 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "data must have rank 1 or more");
    if ((st = eng_axis(s->axis, data->rank, axis))) return st;
    char b1[160], b2[160];
    bool ok = idx->rank == data->rank;
    for (int d = 0; ok && d < idx->rank; d++) ok = d == *axis || idx->dims[d] <= data->dims[d];
    if (!ok)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "indices of shape %s do not fit data of shape %s along axis %d",
                          eng_shape_str(idx, b1, sizeof(b1)), eng_shape_str(data, b2, sizeof(b2)),
                          *axis);
    return NULL;
}

static ferry_status *gather_elements_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 2, true);
    if (io) return io;
    const eng_tensor *data = call->in[0], *idx = call->in[1];
    int axis = 0;
    ferry_status *st = check_elements(call, data, idx, &axis);
    if (st) return st;
    eng_tensor *out = call->out[0];
    out->dtype = data->dtype;
    eng_set_shape(out, idx->rank, idx->dims);
    return NULL;
}

/* Visits every position of INDICES: calls VISIT with the element offset of the position in
 * DATA with the axis coordinate left out (added by the caller from the index). */
#define FOR_EACH_ELEMENT(idx, dstr, axis, BODY)                                                    \
    do {                                                                                           \
        int rank_ = (idx)->rank;                                                                   \
        int64_t pos_[R] = {0}, base = 0, j = 0, n_ = eng_numel(idx);                               \
        for (; j < n_; j++) {                                                                      \
            BODY;                                                                                  \
            for (int d_ = rank_ - 1; d_ >= 0; d_--) {                                              \
                int64_t step_ = d_ == (axis) ? 0 : (dstr)[d_];                                     \
                if (++pos_[d_] < (idx)->dims[d_]) {                                                \
                    base += step_;                                                                 \
                    break;                                                                         \
                }                                                                                  \
                base -= step_ * (pos_[d_] - 1);                                                    \
                pos_[d_] = 0;                                                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static ferry_status *gather_elements_run(eng_op_call *call)
{
    const eng_tensor *data = call->in[0], *idx = call->in[1];
    eng_tensor *out = call->out[0];
    const elements_state *s = call->state;
    int axis = (int)(s->axis < 0 ? s->axis + data->rank : s->axis);
    int64_t dstr[R];
    strides_of(data, dstr);
    size_t esz = ferry_dtype_size(data->dtype);
    int64_t dim = data->dims[axis], astride = dstr[axis];
    const char *src = data->data;
    char *dst = out->data;
    FOR_EACH_ELEMENT(idx, dstr, axis, {
        int64_t i = load_index(idx, j);
        if (i < -dim || i >= dim) return bad_index(i, dim, axis);
        if (i < 0) i += dim;
        copy_elem(dst + (size_t)j * esz, src + (size_t)(base + i * astride) * esz, esz);
    });
    return NULL;
}

static ferry_status *scatter_elements_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 3, true);
    if (io) return io;
    const elements_state *s = call->state;
    const eng_tensor *data = call->in[0], *idx = call->in[1], *upd = call->in[2];
    int axis = 0;
    ferry_status *st = check_elements(call, data, idx, &axis);
    if (st) return st;
    char b1[160], b2[160];
    bool same = upd->rank == idx->rank && upd->dtype == data->dtype;
    for (int d = 0; same && d < idx->rank; d++) same = upd->dims[d] == idx->dims[d];
    if (!same)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "updates (%s %s) must match the indices' shape %s and the data's type "
                          "%s",
                          ferry_dtype_name(upd->dtype), eng_shape_str(upd, b1, sizeof(b1)),
                          eng_shape_str(idx, b2, sizeof(b2)), ferry_dtype_name(data->dtype));
    if (s->red != RED_NONE && !reducible(data->dtype))
        return eng_bad_dtype("data for a scatter reduction", data->dtype);
    eng_same_shape(call->out[0], data);
    return NULL;
}

static ferry_status *scatter_elements_run(eng_op_call *call)
{
    const elements_state *s = call->state;
    const eng_tensor *data = call->in[0], *idx = call->in[1], *upd = call->in[2];
    eng_tensor *out = call->out[0];
    int axis = (int)(s->axis < 0 ? s->axis + data->rank : s->axis);
    copy_input(data, out);
    int64_t dstr[R];
    strides_of(data, dstr);
    size_t esz = ferry_dtype_size(data->dtype);
    int64_t dim = data->dims[axis], astride = dstr[axis];
    const char *src = upd->data;
    char *dst = out->data;
    FOR_EACH_ELEMENT(idx, dstr, axis, {
        int64_t i = load_index(idx, j);
        if (i < -dim || i >= dim) return bad_index(i, dim, axis);
        if (i < 0) i += dim;
        apply(data->dtype, esz, dst + (size_t)(base + i * astride) * esz, src + (size_t)j * esz,
              s->red);
    });
    return NULL;
}

/* --- GatherND and ScatterND ----------------------------------------------------------------- */

typedef struct nd_state {
    int64_t batch_dims;
    reduction red;
} nd_state;

static ferry_status *gather_nd_init(const eng_node *node, int opset, void **state)
{
    ferry_status *st = alloc_state(sizeof(nd_state), state);
    if (st) return st;
    nd_state *s = *state;
    s->batch_dims = opset >= 12 ? eng_attr_int(node, "batch_dims", 0) : 0;
    if (s->batch_dims < 0 || s->batch_dims >= R) {
        free(*state);
        *state = NULL;
        return core_error(FERRY_ERR_INVALID_MODEL, "batch_dims %lld is out of range",
                          (long long)s->batch_dims);
    }
    return NULL;
}

static ferry_status *scatter_nd_init(const eng_node *node, int opset, void **state)
{
    reduction red = RED_NONE;
    if (opset >= 16) {
        ferry_status *st = parse_reduction(node, &red);
        if (st) return st;
    }
    ferry_status *st = alloc_state(sizeof(nd_state), state);
    if (st) return st;
    ((nd_state *)*state)->red = red;
    return NULL;
}

/* The layout shared by GatherND and ScatterND: INDICES is [batch..., tuples..., k] and
 * addresses DATA [batch..., k indexed dims..., slice dims...]. */
typedef struct nd_plan {
    int b, k;
    int64_t batches;    /* product of the batch dims */
    int64_t tuples;     /* index tuples per batch */
    int64_t slice;      /* elements per addressed slice */
    int64_t batch_step; /* elements of data per batch */
} nd_plan;

static ferry_status *plan_nd(const eng_tensor *data, const eng_tensor *idx, int64_t batch_dims,
                             nd_plan *p)
{
    ferry_status *st = need_flat("data", data);
    if (st) return st;
    if ((st = need_index_type("indices", idx))) return st;
    int q = idx->rank, r = data->rank, b = (int)batch_dims;
    if (q < 1 || r < 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "data and indices must have rank 1 or more");
    if (b >= q || b >= r)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "batch_dims %d must be less than the ranks of data (%d) and indices "
                          "(%d)",
                          b, r, q);
    int64_t k = idx->dims[q - 1];
    if (k < 1 || k > r - b)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "the last dim of indices (%lld) must be between 1 and %d", (long long)k,
                          r - b);
    for (int d = 0; d < b; d++)
        if (idx->dims[d] != data->dims[d])
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "batch dim %d differs between data (%lld) and indices (%lld)", d,
                              (long long)data->dims[d], (long long)idx->dims[d]);
    p->b = b;
    p->k = (int)k;
    p->batches = prod(data->dims, 0, b);
    p->tuples = prod(idx->dims, b, q - 1);
    p->slice = prod(data->dims, b + (int)k, r);
    p->batch_step = prod(data->dims, b, r);
    return NULL;
}

/* Element offset in DATA of index tuple T of batch BI, or an error for a bad index. */
static ferry_status *nd_offset(const eng_tensor *data, const eng_tensor *idx, const nd_plan *p,
                               const int64_t *dstr, int64_t bi, int64_t t, int64_t *off)
{
    int64_t o = bi * p->batch_step;
    int64_t first = (bi * p->tuples + t) * p->k;
    for (int j = 0; j < p->k; j++) {
        int axis = p->b + j;
        int64_t dim = data->dims[axis], i = load_index(idx, first + j);
        if (i < -dim || i >= dim) return bad_index(i, dim, axis);
        if (i < 0) i += dim;
        o += i * dstr[axis];
    }
    *off = o;
    return NULL;
}

static ferry_status *gather_nd_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 2, true);
    if (io) return io;
    const nd_state *s = call->state;
    const eng_tensor *data = call->in[0], *idx = call->in[1];
    nd_plan p;
    ferry_status *st = plan_nd(data, idx, s->batch_dims, &p);
    if (st) return st;
    int rank = idx->rank - 1 + data->rank - p.b - p.k;
    if (rank > R)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "the output would have rank %d; Ferry supports up to %d", rank, R);
    eng_tensor *out = call->out[0];
    out->dtype = data->dtype;
    out->rank = 0;
    for (int d = 0; d < idx->rank - 1; d++) out->dims[out->rank++] = idx->dims[d];
    for (int d = p.b + p.k; d < data->rank; d++) out->dims[out->rank++] = data->dims[d];
    return NULL;
}

static ferry_status *gather_nd_run(eng_op_call *call)
{
    const nd_state *s = call->state;
    const eng_tensor *data = call->in[0], *idx = call->in[1];
    nd_plan p;
    ferry_status *st = plan_nd(data, idx, s->batch_dims, &p);
    if (st) return st;
    int64_t dstr[R];
    strides_of(data, dstr);
    size_t esz = ferry_dtype_size(data->dtype), bytes = (size_t)p.slice * esz;
    char *dst = call->out[0]->data;
    const char *src = data->data;
    for (int64_t bi = 0; bi < p.batches; bi++) {
        for (int64_t t = 0; t < p.tuples; t++) {
            int64_t off = 0;
            if ((st = nd_offset(data, idx, &p, dstr, bi, t, &off))) return st;
            if (bytes) memcpy(dst, src + (size_t)off * esz, bytes);
            dst += bytes;
        }
    }
    return NULL;
}

static ferry_status *scatter_nd_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 3, true);
    if (io) return io;
    const nd_state *s = call->state;
    const eng_tensor *data = call->in[0], *idx = call->in[1], *upd = call->in[2];
    nd_plan p;
    ferry_status *st = plan_nd(data, idx, 0, &p);
    if (st) return st;
    /* updates must be indices.shape[:-1] + data.shape[k:]. */
    bool ok = upd->dtype == data->dtype && upd->rank == idx->rank - 1 + data->rank - p.k;
    for (int d = 0; ok && d < idx->rank - 1; d++) ok = upd->dims[d] == idx->dims[d];
    for (int d = p.k; ok && d < data->rank; d++)
        ok = upd->dims[idx->rank - 1 + d - p.k] == data->dims[d];
    if (!ok) {
        char b1[160], b2[160], b3[160];
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "updates (%s %s) do not match data (%s %s) and indices %s",
                          ferry_dtype_name(upd->dtype), eng_shape_str(upd, b1, sizeof(b1)),
                          ferry_dtype_name(data->dtype), eng_shape_str(data, b2, sizeof(b2)),
                          eng_shape_str(idx, b3, sizeof(b3)));
    }
    if (s->red != RED_NONE && !reducible(data->dtype))
        return eng_bad_dtype("data for a scatter reduction", data->dtype);
    eng_same_shape(call->out[0], data);
    return NULL;
}

static ferry_status *scatter_nd_run(eng_op_call *call)
{
    const nd_state *s = call->state;
    const eng_tensor *data = call->in[0], *idx = call->in[1], *upd = call->in[2];
    eng_tensor *out = call->out[0];
    nd_plan p;
    ferry_status *st = plan_nd(data, idx, 0, &p);
    if (st) return st;
    copy_input(data, out);
    int64_t dstr[R];
    strides_of(data, dstr);
    size_t esz = ferry_dtype_size(data->dtype), bytes = (size_t)p.slice * esz;
    char *dst = out->data;
    const char *src = upd->data;
    for (int64_t t = 0; t < p.tuples; t++, src += bytes) {
        int64_t off = 0;
        if ((st = nd_offset(data, idx, &p, dstr, 0, t, &off))) return st;
        char *d = dst + (size_t)off * esz;
        if (s->red == RED_NONE) {
            if (bytes) memcpy(d, src, bytes);
            continue;
        }
        for (int64_t e = 0; e < p.slice; e++)
            combine(data->dtype, d + (size_t)e * esz, src + (size_t)e * esz, s->red);
    }
    return NULL;
}

/* --- OneHot --------------------------------------------------------------------------------- */

static bool numeric(ferry_dtype dt)
{
    return core_dtype_is_float(dt) || core_dtype_is_signed_int(dt) ||
           core_dtype_is_unsigned_int(dt);
}

/* The depth input: a scalar or one-element tensor of any numeric type, at least 1. */
static ferry_status *read_depth(const eng_tensor *t, int64_t *depth)
{
    if (!numeric(t->dtype)) return eng_bad_dtype("depth", t->dtype);
    if (eng_numel(t) != 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "depth must hold one value, not %lld",
                          (long long)eng_numel(t));
    if (!t->data) return core_error(FERRY_ERR_INTERNAL, "depth is not known at plan time");
    *depth = core_load_i64(t->dtype, t->data, 0);
    return NULL;
}

static ferry_status *one_hot_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 3, true);
    if (io) return io;
    const eng_tensor *idx = call->in[0], *depth_t = call->in[1], *values = call->in[2];
    if (!numeric(idx->dtype)) return eng_bad_dtype("indices", idx->dtype);
    if (!numeric(values->dtype)) return eng_bad_dtype("values", values->dtype);
    if (eng_numel(values) != 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "values must hold two elements (off, on), not %lld",
                          (long long)eng_numel(values));
    int64_t depth = 0;
    ferry_status *st = read_depth(depth_t, &depth);
    if (st) return st;
    int64_t n = eng_numel(idx);
    /* The engine refuses tensors over 2^40 elements; stop far-off depths before multiplying. */
    if (depth < 1 || depth > ((int64_t)1 << 40) / (n ? n : 1))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "depth %lld is out of range",
                          (long long)depth);
    if (idx->rank + 1 > R)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "the output would have rank %d; Ferry supports up to %d", idx->rank + 1,
                          R);
    int axis = 0;
    if ((st = eng_axis(eng_attr_int(call->node, "axis", -1), idx->rank + 1, &axis))) return st;
    eng_tensor *out = call->out[0];
    out->dtype = values->dtype;
    out->rank = idx->rank + 1;
    for (int d = 0, k = 0; d < out->rank; d++) out->dims[d] = d == axis ? depth : idx->dims[k++];
    return NULL;
}

static ferry_status *one_hot_run(eng_op_call *call)
{
    const eng_tensor *idx = call->in[0], *values = call->in[2];
    eng_tensor *out = call->out[0];
    int axis = 0;
    ferry_status *st = eng_axis(eng_attr_int(call->node, "axis", -1), out->rank, &axis);
    if (st) return st;
    int64_t n = eng_numel(out);
    if (n == 0) return NULL;
    size_t esz = ferry_dtype_size(values->dtype);
    const char *off = values->data, *on = off + esz;
    int64_t zero = 0, depth = out->dims[axis];
    eng_copy_strided(out->data, off, esz, 1, &n, &zero);
    /* out is [outer, depth, inner] with the indices [outer, inner]. */
    int64_t outer = prod(out->dims, 0, axis), inner = prod(out->dims, axis + 1, out->rank);
    char *dst = out->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            /* Values outside [-depth, depth) give a row of off values, as ONNX specifies. */
            int64_t v = core_load_i64(idx->dtype, idx->data, o * inner + i);
            if (v < 0) v += depth;
            if (v < 0 || v >= depth) continue;
            copy_elem(dst + (size_t)((o * depth + v) * inner + i) * esz, on, esz);
        }
    }
    return NULL;
}

/* --- Compress ------------------------------------------------------------------------------- */

typedef struct compress_state {
    bool has_axis;
    int64_t axis;
} compress_state;

static ferry_status *compress_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    ferry_status *st = alloc_state(sizeof(compress_state), state);
    if (st) return st;
    compress_state *s = *state;
    s->has_axis = eng_attr_has(node, "axis");
    s->axis = eng_attr_int(node, "axis", 0);
    return NULL;
}

/* The input as [outer, dim, inner] around the compressed axis (the flattened input when the
 * node has no axis), and how many of the first DIM condition entries are true. */
static ferry_status *compress_plan(const eng_op_call *call, int *axis, int64_t *outer, int64_t *dim,
                                   int64_t *inner, int64_t *kept)
{
    const compress_state *s = call->state;
    const eng_tensor *in = call->in[0], *cond = call->in[1];
    ferry_status *st = need_flat("input", in);
    if (st) return st;
    if (cond->dtype != FERRY_DTYPE_BOOL)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "condition must be bool, got %s",
                          ferry_dtype_name(cond->dtype));
    if (cond->rank != 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "condition must be a 1-D tensor");
    *axis = -1;
    if (s->has_axis) {
        if ((st = eng_axis(s->axis, in->rank, axis))) return st;
        if (in->rank == 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "cannot compress a scalar on an axis");
        *outer = prod(in->dims, 0, *axis);
        *dim = in->dims[*axis];
        *inner = prod(in->dims, *axis + 1, in->rank);
    } else {
        *outer = *inner = 1;
        *dim = eng_numel(in);
    }
    /* A shorter condition drops the rest of the axis; entries past the axis must be false. */
    int64_t len = cond->dims[0];
    if (len > 0 && !cond->data)
        return core_error(FERRY_ERR_INTERNAL, "condition is not known at plan time");
    const uint8_t *c = cond->data;
    *kept = 0;
    for (int64_t i = 0; i < len; i++) {
        if (!c[i]) continue;
        if (i >= *dim)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "condition selects entry %lld of a dim of %lld", (long long)i,
                              (long long)*dim);
        ++*kept;
    }
    return NULL;
}

static ferry_status *compress_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 2, true);
    if (io) return io;
    const eng_tensor *in = call->in[0];
    int axis = 0;
    int64_t outer = 0, dim = 0, inner = 0, kept = 0;
    ferry_status *st = compress_plan(call, &axis, &outer, &dim, &inner, &kept);
    if (st) return st;
    eng_tensor *out = call->out[0];
    out->dtype = in->dtype;
    if (axis < 0) {
        eng_set_shape(out, 1, &kept);
    } else {
        eng_same_shape(out, in);
        out->dims[axis] = kept;
    }
    return NULL;
}

static ferry_status *compress_run(eng_op_call *call)
{
    const eng_tensor *in = call->in[0], *cond = call->in[1];
    int axis = 0;
    int64_t outer = 0, dim = 0, inner = 0, kept = 0;
    ferry_status *st = compress_plan(call, &axis, &outer, &dim, &inner, &kept);
    if (st) return st;
    size_t esz = ferry_dtype_size(in->dtype), chunk = (size_t)inner * esz;
    int64_t len = cond->dims[0] < dim ? cond->dims[0] : dim;
    const uint8_t *c = cond->data;
    const char *src = in->data;
    char *dst = call->out[0]->data;
    if (!chunk) return NULL;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < len; i++) {
            if (!c[i]) continue;
            memcpy(dst, src + (size_t)(o * dim + i) * chunk, chunk);
            dst += chunk;
        }
    }
    return NULL;
}

/* --- NonZero -------------------------------------------------------------------------------- */

/* True when element I is not zero; -0.0 is zero and NaN is not, as for numpy. */
static inline bool nonzero_at(ferry_dtype dt, const void *data, int64_t i)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT: {
        float f;
        memcpy(&f, (const char *)data + i * 4, 4);
        return f != 0.0f;
    }
    case FERRY_DTYPE_DOUBLE: {
        double f;
        memcpy(&f, (const char *)data + i * 8, 8);
        return f != 0.0;
    }
    case FERRY_DTYPE_FLOAT16:
    case FERRY_DTYPE_BFLOAT16: {
        uint16_t h;
        memcpy(&h, (const char *)data + i * 2, 2);
        return (h & 0x7fff) != 0;
    }
    case FERRY_DTYPE_STRING: { /* numpy: a non-empty string */
        const char *str;
        memcpy(&str, (const char *)data + i * (int64_t)sizeof(str), sizeof(str));
        return str && *str;
    }
    case FERRY_DTYPE_COMPLEX64: { /* nonzero when either part is */
        float f[2];
        memcpy(f, (const char *)data + i * 8, 8);
        return f[0] != 0.0f || f[1] != 0.0f;
    }
    case FERRY_DTYPE_COMPLEX128: {
        double f[2];
        memcpy(f, (const char *)data + i * 16, 16);
        return f[0] != 0.0 || f[1] != 0.0;
    }
    default: {
        size_t esz = ferry_dtype_size(dt);
        const unsigned char *p = (const unsigned char *)data + (size_t)i * esz;
        for (size_t b = 0; b < esz; b++)
            if (p[b]) return true;
        return false;
    }
    }
}

static ferry_status *nonzero_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, true);
    if (io) return io;
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("input", in);
    if (st) return st;
    int64_t n = eng_numel(in), count = 0;
    if (n > 0 && !in->data)
        return core_error(FERRY_ERR_INTERNAL, "the input is not known at plan time");
    for (int64_t i = 0; i < n; i++) count += nonzero_at(in->dtype, in->data, i);
    /* A scalar reports one coordinate (always 0) per nonzero element, as onnxruntime does. */
    int64_t dims[2] = {in->rank ? in->rank : 1, count};
    call->out[0]->dtype = FERRY_DTYPE_INT64;
    eng_set_shape(call->out[0], 2, dims);
    return NULL;
}

static ferry_status *nonzero_run(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    int64_t n = eng_numel(in), count = out->dims[1], k = 0;
    int rows = (int)out->dims[0];
    int64_t *dst = out->data, pos[R] = {0};
    for (int64_t i = 0; i < n; i++) {
        if (nonzero_at(in->dtype, in->data, i)) {
            /* The input is the one the plan was built from; guard the count all the same. */
            if (k == count)
                return core_error(FERRY_ERR_INTERNAL, "the input changed after planning");
            for (int r = 0; r < rows; r++) dst[r * count + k] = in->rank ? pos[r] : 0;
            k++;
        }
        for (int d = in->rank - 1; d >= 0; d--) {
            if (++pos[d] < in->dims[d]) break;
            pos[d] = 0;
        }
    }
    if (k != count) return core_error(FERRY_ERR_INTERNAL, "the input changed after planning");
    return NULL;
}

static const eng_op ops[] = {
    {"", "GatherElements", 11, 0, elements_init, free, gather_elements_infer, gather_elements_run},
    {"", "ScatterElements", 11, 0, elements_init, free, scatter_elements_infer,
     scatter_elements_run},
    {"", "Scatter", 9, 0, elements_init, free, scatter_elements_infer, scatter_elements_run},
    {"", "GatherND", 11, 0, gather_nd_init, free, gather_nd_infer, gather_nd_run},
    {"", "ScatterND", 11, 0, scatter_nd_init, free, scatter_nd_infer, scatter_nd_run},
    {"", "OneHot", 9, 1u << 1, NULL, NULL, one_hot_infer, one_hot_run},
    {"", "Compress", 9, 1u << 1, compress_init, free, compress_infer, compress_run},
    {"", "NonZero", 9, 1u << 0, NULL, NULL, nonzero_infer, nonzero_run},
};

const eng_op_table eng_ops_index = {ops, sizeof(ops) / sizeof(ops[0])};
