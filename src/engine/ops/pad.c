/* pad.c - Pad: constant, reflect, edge and wrap padding of any flat dtype.
 *
 * The pads come from an attribute before opset 11 ("paddings" in Pad-1, "pads" in 2-10) and
 * from input 1 afterwards, flagged in value_inputs because they decide the output shape; from
 * opset 18 an optional axes input (also flagged) says which dims they apply to. Negative pads
 * crop. The constant is the "value" attribute before opset 11 and the optional input 2 after.
 *
 * Every output coordinate maps back to an input coordinate per dim (or to "the constant"), the
 * rule depending on the mode; reflect and wrap repeat as often as large pads need, like
 * numpy.pad. The output is written row by row along the last dim: rows whose outer
 * coordinates fall in the padding are filled with the constant, the others are a memcpy of
 * the input row framed by the mapped left and right borders.
 */
#include "engine/op.h"

#include <stdlib.h>
#include <string.h>

#define R FERRY_MAX_RANK
/* Pads beyond this are errors: no tensor could be that large, and sums stay far from
 * overflow. */
#define MAX_PAD ((int64_t)1 << 40)

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

typedef enum pad_mode { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP } pad_mode;

typedef struct pad_state {
    pad_mode mode;
    const int64_t *pads; /* the attribute before opset 11, owned by the model */
    size_t n_pads;
    float value; /* the attribute before opset 11 */
} pad_state;

static ferry_status *pad_init(const eng_node *node, int opset, void **state)
{
    const char *mode = eng_attr_string(node, "mode", "constant");
    pad_mode m;
    if (!strcmp(mode, "constant"))
        m = PAD_CONSTANT;
    else if (!strcmp(mode, "reflect"))
        m = PAD_REFLECT;
    else if (!strcmp(mode, "edge"))
        m = PAD_EDGE;
    else if (!strcmp(mode, "wrap"))
        m = PAD_WRAP;
    else
        return core_error(FERRY_ERR_INVALID_MODEL, "unknown mode '%s'", mode);
    const int64_t *pads = NULL;
    size_t n = 0;
    if (opset < 11) {
        const char *name = opset < 2 ? "paddings" : "pads";
        pads = eng_attr_ints(node, name, &n);
        if (!pads) return core_error(FERRY_ERR_INVALID_MODEL, "missing attribute '%s'", name);
    }
    pad_state *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->mode = m;
    s->pads = pads;
    s->n_pads = n;
    s->value = eng_attr_float(node, "value", 0.0f);
    *state = s;
    return NULL;
}

/* Reads the pads into BEGIN and END (one per dim of the input). */
static ferry_status *read_pads(const eng_op_call *call, int64_t *begin, int64_t *end)
{
    const pad_state *s = call->state;
    const eng_tensor *in = call->in[0];
    int rank = in->rank;
    int64_t pads[2 * R], axes[R];
    size_t n, n_axes = (size_t)rank;
    ferry_status *st;
    for (int d = 0; d < rank; d++) {
        axes[d] = d;
        begin[d] = end[d] = 0;
    }
    if (call->opset < 11) {
        n = s->n_pads;
        if (n != 2 * (size_t)rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "pads has %zu values for an input of rank %d", n, rank);
        memcpy(pads, s->pads, n * sizeof(int64_t));
    } else {
        const eng_tensor *t = call->n_in > 1 ? call->in[1] : NULL;
        if (!t) return core_error(FERRY_ERR_INVALID_MODEL, "missing the pads input");
        const eng_tensor *a = call->opset >= 18 && call->n_in > 3 ? call->in[3] : NULL;
        if (a && (st = eng_read_ints(a, axes, R, &n_axes))) return core_error_wrap(st, "axes");
        if (t->rank > 1 || (size_t)eng_numel(t) != 2 * n_axes)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "pads must be a 1-D tensor of %zu values, got %lld", 2 * n_axes,
                              (long long)eng_numel(t));
        if ((st = eng_read_ints(t, pads, 2 * R, &n))) return core_error_wrap(st, "pads");
    }
    bool seen[R] = {false};
    for (size_t i = 0; i < n_axes; i++) {
        int axis = 0;
        if ((st = eng_axis(axes[i], rank, &axis))) return st;
        if (seen[axis])
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "axis %d is listed twice", axis);
        seen[axis] = true;
        int64_t b = pads[i], e = pads[i + n_axes];
        if (b < -MAX_PAD || b > MAX_PAD || e < -MAX_PAD || e > MAX_PAD)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "pad %lld is out of range",
                              (long long)(b < -MAX_PAD || b > MAX_PAD ? b : e));
        begin[axis] = b;
        end[axis] = e;
    }
    return NULL;
}

static ferry_status *pad_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, true);
    if (io) return io;
    const pad_state *s = call->state;
    const eng_tensor *in = call->in[0];
    /* Tensor element types (strings move as pointers); before opset 11 the constant is a
     * float attribute, so only numbers. */
    bool element = (unsigned)in->dtype < FERRY_DTYPE_COUNT && ferry_dtype_size(in->dtype);
    bool number = core_dtype_is_float(in->dtype) || core_dtype_is_signed_int(in->dtype) ||
                  core_dtype_is_unsigned_int(in->dtype) || in->dtype == FERRY_DTYPE_BOOL;
    if (!element || (call->opset < 11 && !number)) return eng_bad_dtype("input", in->dtype);
    const eng_tensor *cv = call->opset >= 11 && call->n_in > 2 ? call->in[2] : NULL;
    if (cv && (cv->dtype != in->dtype || eng_numel(cv) > 1))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "constant_value must be one %s value, got %s of %lld values",
                          ferry_dtype_name(in->dtype), ferry_dtype_name(cv->dtype),
                          (long long)eng_numel(cv));
    int64_t begin[R], end[R];
    ferry_status *st = read_pads(call, begin, end);
    if (st) return st;
    eng_tensor *out = call->out[0];
    eng_same_shape(out, in);
    for (int d = 0; d < in->rank; d++) {
        int64_t dim = in->dims[d] + begin[d] + end[d];
        if (dim < 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "pads %lld and %lld crop more than the %lld elements of dim %d",
                              (long long)begin[d], (long long)end[d], (long long)in->dims[d], d);
        /* Only the constant mode can make something from nothing. */
        if (s->mode != PAD_CONSTANT && in->dims[d] == 0 && dim > 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "cannot pad the empty dim %d", d);
        out->dims[d] = dim;
    }
    return NULL;
}

/* The input coordinate that output coordinate I (already shifted by the begin pad) reads
 * along a dim of size N, or -1 for the constant. */
static inline int64_t map_index(int64_t i, int64_t n, pad_mode mode)
{
    if (i >= 0 && i < n) return i;
    switch (mode) {
    case PAD_EDGE:
        return i < 0 ? 0 : n - 1;
    case PAD_WRAP: {
        int64_t m = i % n;
        return m < 0 ? m + n : m;
    }
    case PAD_REFLECT: {
        if (n == 1) return 0;
        /* Mirroring without repeating the edge has period 2(n-1). */
        int64_t p = 2 * (n - 1), m = i % p;
        if (m < 0) m += p;
        return m < n ? m : p - m;
    }
    default:
        return -1;
    }
}

/* Fills N elements at DST with the element VALUE. */
static void fill(char *dst, const char *value, size_t esz, int64_t n, bool zero)
{
    if (n <= 0) return;
    if (zero) {
        memset(dst, 0, (size_t)n * esz);
        return;
    }
    int64_t stride = 0;
    eng_copy_strided(dst, value, esz, 1, &n, &stride);
}

static ferry_status *pad_run(eng_op_call *call)
{
    const pad_state *s = call->state;
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    size_t esz = ferry_dtype_size(in->dtype);
    int64_t total = eng_numel(out);
    if (total == 0) return NULL;
    int64_t begin[R], end[R];
    ferry_status *st = read_pads(call, begin, end);
    if (st) return st;

    /* The constant, as one element of the input's type. */
    union {
        char bytes[16];
        double align; /* core_store_f64 writes through a typed pointer */
    } v = {{0}};
    const char *value = v.bytes;
    const eng_tensor *cv = call->opset >= 11 && call->n_in > 2 ? call->in[2] : NULL;
    if (call->opset < 11)
        core_store_f64(in->dtype, v.bytes, 0, s->value);
    else if (cv && eng_numel(cv) == 1)
        memcpy(v.bytes, cv->data, esz);
    bool zero = true;
    for (size_t b = 0; b < esz; b++) zero &= value[b] == 0;

    int rank = in->rank;
    if (rank == 0) {
        memcpy(out->data, in->data, esz);
        return NULL;
    }
    int64_t istr[R], stride = 1;
    for (int d = rank - 1; d >= 0; d--) {
        istr[d] = stride;
        stride *= in->dims[d];
    }
    int64_t len = out->dims[rank - 1], n = in->dims[rank - 1], left = begin[rank - 1];
    /* The part of each output row that copies input elements one to one. */
    int64_t mid0 = left < 0 ? 0 : left > len ? len : left;
    int64_t mid1 = left + n < mid0 ? mid0 : left + n > len ? len : left + n;
    int64_t rows = total / len, pos[R] = {0};
    const char *src = in->data;
    char *dst = out->data;
    for (int64_t r = 0; r < rows; r++, dst += (size_t)len * esz) {
        int64_t off = 0;
        bool constant = false;
        for (int d = 0; d < rank - 1 && !constant; d++) {
            int64_t i = map_index(pos[d] - begin[d], in->dims[d], s->mode);
            if (i < 0) constant = true;
            off += i * istr[d];
        }
        if (constant || n == 0) {
            fill(dst, value, esz, len, zero);
        } else {
            const char *row = src + (size_t)off * esz;
            for (int64_t x = 0; x < mid0; x++) {
                int64_t i = map_index(x - left, n, s->mode);
                if (i < 0)
                    fill(dst + (size_t)x * esz, value, esz, 1, zero);
                else
                    memcpy(dst + (size_t)x * esz, row + (size_t)i * esz, esz);
            }
            if (mid1 > mid0)
                memcpy(dst + (size_t)mid0 * esz, row + (size_t)(mid0 - left) * esz,
                       (size_t)(mid1 - mid0) * esz);
            for (int64_t x = mid1; x < len; x++) {
                int64_t i = map_index(x - left, n, s->mode);
                if (i < 0)
                    fill(dst + (size_t)x * esz, value, esz, 1, zero);
                else
                    memcpy(dst + (size_t)x * esz, row + (size_t)i * esz, esz);
            }
        }
        for (int d = rank - 2; d >= 0; d--) {
            if (++pos[d] < out->dims[d]) break;
            pos[d] = 0;
        }
    }
    return NULL;
}

static const eng_op ops[] = {
    {"", "Pad", 1, 0, pad_init, free, pad_infer, pad_run},
    {"", "Pad", 11, 1u << 1, pad_init, free, pad_infer, pad_run},
    {"", "Pad", 18, (1u << 1) | (1u << 3), pad_init, free, pad_infer, pad_run},
};

const eng_op_table eng_ops_pad = {ops, sizeof(ops) / sizeof(ops[0])};
