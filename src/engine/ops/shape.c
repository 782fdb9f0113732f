/* shape.c - operators about shapes: Flatten, Reshape, Squeeze, Unsqueeze, Shape,
 * ConstantOfShape and Expand.
 *
 * Flatten, Reshape, Squeeze and Unsqueeze only relabel the dims; their run is a plain copy of
 * the bytes, which the engine may skip by aliasing the output to the input (run then sees the
 * same pointer twice and does nothing). Reshape's and Expand's target shape, ConstantOfShape's
 * input and the axes inputs of opset 13 are flagged in value_inputs: their values are known when
 * infer runs. Shapes built from such values are checked for negative dims and for element
 * counts that overflow, so a bad value is an error and never a huge allocation.
 */
#include "engine/op.h"

#include <stdlib.h>
#include <string.h>

#define R FERRY_MAX_RANK

static ferry_status *need_flat(const char *what, const eng_tensor *t)
{
    return ferry_dtype_size(t->dtype) ? NULL : eng_bad_dtype(what, t->dtype);
}

/* Formats a list of ints as "[2,-1,0]" into BUF. */
static const char *ints_str(const int64_t *v, size_t n, char *buf, size_t size)
{
    eng_tensor t = {0};
    t.rank = n > R ? R : (int)n;
    for (int i = 0; i < t.rank; i++) t.dims[i] = v[i];
    return eng_shape_str(&t, buf, size);
}

/* Errors unless T's dims are all non-negative and its byte size fits in int64. */
static ferry_status *check_size(const eng_tensor *t)
{
    int64_t n = (int64_t)ferry_dtype_size(t->dtype);
    if (n == 0) n = 1;
    char buf[160];
    for (int i = 0; i < t->rank; i++) {
        int64_t d = t->dims[i];
        if (d < 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "shape %s has a negative dim",
                              eng_shape_str(t, buf, sizeof(buf)));
        if (d && n > INT64_MAX / d)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "shape %s has too many elements",
                              eng_shape_str(t, buf, sizeof(buf)));
        n *= d;
    }
    return NULL;
}

/* Reads the 1-D integer input T (WHAT names it) of at most MAX values. */
static ferry_status *read_list(const char *what, const eng_tensor *t, int64_t *dst, size_t max,
                               size_t *count)
{
    if (t->dtype != FERRY_DTYPE_INT64 && t->dtype != FERRY_DTYPE_INT32)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be int64, got %s", what,
                          ferry_dtype_name(t->dtype));
    if (t->rank > 1) {
        char buf[128];
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be a 1-D tensor, got shape %s", what,
                          eng_shape_str(t, buf, sizeof(buf)));
    }
    int64_t n = eng_numel(t);
    if ((uint64_t)n > max)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "%s has %lld entries; Ferry supports tensors of rank up to %d", what,
                          (long long)n, R);
    return eng_read_ints(t, dst, max, count);
}

/* Output = input bytes: Flatten, Reshape, Squeeze, Unsqueeze. */
static ferry_status *copy_run(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    size_t n = eng_nbytes(in);
    if (n && out->data != in->data) memcpy(out->data, in->data, n);
    return NULL;
}

/* --- Flatten -------------------------------------------------------------------------------- */

static ferry_status *flatten_infer(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("Flatten input", in);
    if (st) return st;
    int64_t axis = eng_attr_int(call->node, "axis", 1), rank = in->rank;
    /* axis may equal the rank (everything in the first dim). Negative axes are official from
     * opset 11, but exporters wrote them earlier too, so every opset takes them. */
    if (axis < -rank || axis > rank)
        return core_error(FERRY_ERR_INVALID_MODEL, "axis %lld is out of range for rank %d",
                          (long long)axis, in->rank);
    if (axis < 0) axis += rank;
    int64_t dims[2] = {1, 1};
    for (int i = 0; i < in->rank; i++) dims[i < axis ? 0 : 1] *= in->dims[i];
    call->out[0]->dtype = in->dtype;
    eng_set_shape(call->out[0], 2, dims);
    return NULL;
}

/* --- Reshape -------------------------------------------------------------------------------- */

static ferry_status *reshape_infer(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("Reshape input", in);
    if (st) return st;
    int64_t shape[R];
    size_t n;
    if (call->opset < 5) {
        const int64_t *attr = eng_attr_ints(call->node, "shape", &n);
        if (!attr) return core_error(FERRY_ERR_INVALID_MODEL, "missing attribute 'shape'");
        if (n > R)
            return core_error(FERRY_ERR_UNSUPPORTED,
                              "shape has %zu entries; Ferry supports rank up to %d", n, R);
        memcpy(shape, attr, n * sizeof(int64_t));
    } else {
        if (call->n_in < 2 || !call->in[1])
            return core_error(FERRY_ERR_INVALID_MODEL, "missing the shape input");
        if ((st = read_list("shape", call->in[1], shape, R, &n))) return st;
    }
    bool allowzero = call->opset >= 14 && eng_attr_int(call->node, "allowzero", 0) != 0;

    int64_t dims[R], known = 1, total = eng_numel(in);
    int unknown = -1;
    char b1[160], b2[160];
    for (size_t i = 0; i < n; i++) {
        int64_t v = shape[i];
        if (v == 0 && !allowzero) {
            if ((int)i >= in->rank)
                return core_error(FERRY_ERR_INVALID_ARGUMENT,
                                  "shape %s copies dim %zu (0) of %s, which has no such dim",
                                  ints_str(shape, n, b1, sizeof(b1)), i,
                                  eng_shape_str(in, b2, sizeof(b2)));
            v = in->dims[i];
        }
        if (v == -1) {
            if (unknown >= 0)
                return core_error(FERRY_ERR_INVALID_ARGUMENT, "shape %s has more than one -1",
                                  ints_str(shape, n, b1, sizeof(b1)));
            unknown = (int)i;
            dims[i] = 1;
            continue;
        }
        if (v < 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "shape %s has a negative dim",
                              ints_str(shape, n, b1, sizeof(b1)));
        dims[i] = v;
        if (v == 0 || known == 0)
            known = 0;
        else if (known < 0 || known > INT64_MAX / v)
            known = -1; /* overflow: cannot match the total unless a later dim is 0 */
        else
            known *= v;
    }
    if (unknown >= 0 && known > 0 && total % known == 0) {
        dims[unknown] = total / known;
    } else if (unknown >= 0 || known != total) {
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "cannot reshape %s (%lld elements) to %s",
                          eng_shape_str(in, b1, sizeof(b1)), (long long)total,
                          ints_str(shape, n, b2, sizeof(b2)));
    }
    call->out[0]->dtype = in->dtype;
    eng_set_shape(call->out[0], (int)n, dims);
    return NULL;
}

/* --- Squeeze and Unsqueeze ------------------------------------------------------------------ */

/* Reads the axes of Squeeze/Unsqueeze: the attribute before opset 13, input 1 from 13.
 * *present is false when there are none. */
static ferry_status *read_axes(const eng_op_call *call, int64_t *axes, size_t *n, bool *present)
{
    *n = 0;
    *present = false;
    if (call->opset < 13) {
        const int64_t *attr = eng_attr_ints(call->node, "axes", n);
        if (!attr) return NULL;
        if (*n > R)
            return core_error(FERRY_ERR_UNSUPPORTED,
                              "axes has %zu entries; Ferry supports rank up to %d", *n, R);
        memcpy(axes, attr, *n * sizeof(int64_t));
        *present = true;
        return NULL;
    }
    if (call->n_in < 2 || !call->in[1]) return NULL;
    *present = true;
    return read_list("axes", call->in[1], axes, R, n);
}

static ferry_status *squeeze_infer(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("Squeeze input", in);
    if (st) return st;
    int64_t axes[R];
    size_t n;
    bool present;
    if ((st = read_axes(call, axes, &n, &present))) return st;
    bool drop[R] = {false};
    char buf[160];
    if (!present) {
        for (int d = 0; d < in->rank; d++) drop[d] = in->dims[d] == 1;
    }
    for (size_t i = 0; i < n; i++) {
        int axis;
        if ((st = eng_axis(axes[i], in->rank, &axis))) return st;
        if (drop[axis]) return core_error(FERRY_ERR_INVALID_MODEL, "axis %d is listed twice", axis);
        if (in->dims[axis] != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "cannot squeeze axis %d of %s: its size is not 1", axis,
                              eng_shape_str(in, buf, sizeof(buf)));
        drop[axis] = true;
    }
    eng_tensor *out = call->out[0];
    out->dtype = in->dtype;
    out->rank = 0;
    for (int d = 0; d < in->rank; d++)
        if (!drop[d]) out->dims[out->rank++] = in->dims[d];
    return NULL;
}

static ferry_status *unsqueeze_infer(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("Unsqueeze input", in);
    if (st) return st;
    int64_t axes[R];
    size_t n;
    bool present;
    if ((st = read_axes(call, axes, &n, &present))) return st;
    if (!present) return core_error(FERRY_ERR_INVALID_MODEL, "missing axes");
    int rank = in->rank + (int)n;
    if (rank > R)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "the output would have rank %d; Ferry supports up to %d", rank, R);
    /* Axes count in the output's rank. */
    bool added[R] = {false};
    for (size_t i = 0; i < n; i++) {
        int axis;
        if ((st = eng_axis(axes[i], rank, &axis))) return st;
        if (added[axis])
            return core_error(FERRY_ERR_INVALID_MODEL, "axis %d is listed twice", axis);
        added[axis] = true;
    }
    eng_tensor *out = call->out[0];
    out->dtype = in->dtype;
    out->rank = rank;
    for (int d = 0, k = 0; d < rank; d++) out->dims[d] = added[d] ? 1 : in->dims[k++];
    return NULL;
}

/* --- Shape ---------------------------------------------------------------------------------- */

/* The [start, end) range of dims Shape reports for an input of RANK (opset 15 attributes,
 * clamped into [0, rank]). */
static void shape_range(const eng_op_call *call, int rank, int *start, int *end)
{
    int64_t b = 0, e = rank;
    if (call->opset >= 15) {
        b = eng_attr_int(call->node, "start", 0);
        e = eng_attr_int(call->node, "end", rank);
    }
    if (b < 0) b += rank;
    if (e < 0) e += rank;
    b = b < 0 ? 0 : b > rank ? rank : b;
    e = e < 0 ? 0 : e > rank ? rank : e;
    *start = (int)b;
    *end = (int)(e > b ? e : b);
}

static ferry_status *shape_infer(eng_op_call *call)
{
    int b, e;
    shape_range(call, call->in[0]->rank, &b, &e);
    int64_t dim = e - b;
    call->out[0]->dtype = FERRY_DTYPE_INT64;
    eng_set_shape(call->out[0], 1, &dim);
    return NULL;
}

static ferry_status *shape_run(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    int b, e;
    shape_range(call, in->rank, &b, &e);
    char *dst = call->out[0]->data;
    for (int i = b; i < e; i++) memcpy(dst + (size_t)(i - b) * 8, &in->dims[i], 8);
    return NULL;
}

/* --- ConstantOfShape ------------------------------------------------------------------------ */

typedef struct fill_state {
    ferry_dtype dtype;
    unsigned char value[16]; /* one element; large enough for every flat dtype */
} fill_state;

static ferry_status *constant_of_shape_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    const eng_tensor *v = eng_attr_tensor(node, "value");
    if (v) {
        if (!ferry_dtype_size(v->dtype) || ferry_dtype_size(v->dtype) > 16)
            return eng_bad_dtype("value", v->dtype);
        if (eng_numel(v) != 1)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "value must hold exactly one element, not %lld",
                              (long long)eng_numel(v));
    }
    fill_state *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    /* The default is a float 0, which calloc already wrote. */
    s->dtype = FERRY_DTYPE_FLOAT;
    if (v) {
        s->dtype = v->dtype;
        memcpy(s->value, v->data, ferry_dtype_size(v->dtype));
    }
    *state = s;
    return NULL;
}

static ferry_status *constant_of_shape_infer(eng_op_call *call)
{
    const fill_state *s = call->state;
    int64_t dims[R];
    size_t n;
    ferry_status *st = read_list("shape", call->in[0], dims, R, &n);
    if (st) return st;
    eng_tensor *out = call->out[0];
    out->dtype = s->dtype;
    eng_set_shape(out, (int)n, dims);
    return check_size(out);
}

static ferry_status *constant_of_shape_run(eng_op_call *call)
{
    const fill_state *s = call->state;
    eng_tensor *out = call->out[0];
    int64_t n = eng_numel(out);
    if (n == 0) return NULL;
    /* A stride-0 copy of the value is the fill kernel. */
    int64_t zero = 0;
    eng_copy_strided(out->data, s->value, ferry_dtype_size(s->dtype), 1, &n, &zero);
    return NULL;
}

/* --- Expand --------------------------------------------------------------------------------- */

static ferry_status *expand_infer(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("Expand input", in);
    if (st) return st;
    eng_tensor shape = {0};
    size_t n;
    if ((st = read_list("shape", call->in[1], shape.dims, R, &n))) return st;
    shape.rank = (int)n;
    char buf[160];
    for (size_t i = 0; i < n; i++)
        if (shape.dims[i] < 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "shape %s has a negative dim",
                              eng_shape_str(&shape, buf, sizeof(buf)));
    const eng_tensor *both[2] = {in, &shape};
    eng_tensor *out = call->out[0];
    if ((st = eng_broadcast_shapes(out, both, 2))) return st;
    out->dtype = in->dtype;
    return check_size(out);
}

static ferry_status *expand_run(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    if (eng_numel(out) == 0) return NULL;
    /* Source strides over the output's dims: 0 where the input is broadcast. */
    int64_t st[R], s = 1;
    int off = out->rank - in->rank;
    for (int i = out->rank - 1; i >= 0; i--) {
        int j = i - off;
        if (j < 0) {
            st[i] = 0;
            continue;
        }
        st[i] = in->dims[j] == 1 ? 0 : s;
        s *= in->dims[j];
    }
    eng_copy_strided(out->data, in->data, ferry_dtype_size(in->dtype), out->rank, out->dims, st);
    return NULL;
}

static const eng_op ops[] = {
    {"", "Flatten", 1, 0, NULL, NULL, flatten_infer, copy_run},
    {"", "Reshape", 1, 0, NULL, NULL, reshape_infer, copy_run},
    {"", "Reshape", 5, 1u << 1, NULL, NULL, reshape_infer, copy_run},
    {"", "Squeeze", 1, 0, NULL, NULL, squeeze_infer, copy_run},
    {"", "Squeeze", 13, 1u << 1, NULL, NULL, squeeze_infer, copy_run},
    {"", "Unsqueeze", 1, 0, NULL, NULL, unsqueeze_infer, copy_run},
    {"", "Unsqueeze", 13, 1u << 1, NULL, NULL, unsqueeze_infer, copy_run},
    {"", "Shape", 1, 0, NULL, NULL, shape_infer, shape_run},
    {"", "ConstantOfShape", 9, 1u << 0, constant_of_shape_init, free, constant_of_shape_infer,
     constant_of_shape_run},
    {"", "Expand", 8, 1u << 1, NULL, NULL, expand_infer, expand_run},
};

const eng_op_table eng_ops_shape = {ops, sizeof(ops) / sizeof(ops[0])};
