/* layout.c - operators that rearrange elements without computing on them: Transpose, Concat,
 * Split, Slice and Gather.
 *
 * All of them work on any flat dtype by moving elements of ferry_dtype_size() bytes. Concat,
 * Split and Gather move contiguous runs with memcpy; Transpose and Slice describe their source
 * as strides over the input and hand the copy to eng_copy_strided() (layout_copy.c), which
 * merges contiguous dims and tiles true transposes.
 *
 * Shape-determining inputs (Slice's starts/ends/axes/steps from opset 10, Split's sizes) are
 * flagged in value_inputs so infer can read them; run reads them again rather than keeping
 * anything from infer, since state is shared by every context.
 */
#include "engine/op.h"

#include <stdlib.h>
#include <string.h>

#define R FERRY_MAX_RANK

static ferry_status *need_flat(const char *what, const eng_tensor *t)
{
    return ferry_dtype_size(t->dtype) ? NULL : eng_bad_dtype(what, t->dtype);
}

/* Row-major element strides of T. */
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

static ferry_status *alloc_state(size_t size, void **state)
{
    *state = calloc(1, size);
    return *state ? NULL : core_error(FERRY_ERR_NO_MEMORY, "out of memory");
}

/* Reads the integer input T of a shape-determining role WHAT into DST (at most MAX values). */
static ferry_status *read_list(const char *what, const eng_tensor *t, int64_t *dst, size_t max,
                               size_t *count)
{
    if (t->dtype != FERRY_DTYPE_INT64 && t->dtype != FERRY_DTYPE_INT32)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be int64 or int32, got %s", what,
                          ferry_dtype_name(t->dtype));
    if (t->rank > 1) {
        char buf[128];
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be a 1-D tensor, got shape %s", what,
                          eng_shape_str(t, buf, sizeof(buf)));
    }
    int64_t n = eng_numel(t);
    if ((uint64_t)n > max)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "%s has %lld entries, more than the input's rank %zu", what, (long long)n,
                          max);
    return eng_read_ints(t, dst, max, count);
}

/* --- Transpose ------------------------------------------------------------------------------ */

typedef struct transpose_state {
    int n_perm; /* -1: reverse the dims (no perm attribute) */
    int64_t perm[R];
} transpose_state;

static ferry_status *transpose_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    size_t n = 0;
    const int64_t *perm = eng_attr_ints(node, "perm", &n);
    if (perm && n > R)
        return core_error(FERRY_ERR_UNSUPPORTED, "perm has %zu entries; Ferry supports rank %d", n,
                          R);
    ferry_status *st = alloc_state(sizeof(transpose_state), state);
    if (st) return st;
    transpose_state *s = *state;
    s->n_perm = perm ? (int)n : -1;
    for (size_t i = 0; i < n; i++) s->perm[i] = perm[i];
    return NULL;
}

static ferry_status *transpose_infer(eng_op_call *call)
{
    const transpose_state *s = call->state;
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    ferry_status *st = need_flat("Transpose input", in);
    if (st) return st;
    int rank = in->rank;
    if (s->n_perm >= 0) {
        if (s->n_perm != rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "perm has %d entries but the input has rank %d", s->n_perm, rank);
        bool seen[R] = {false};
        for (int i = 0; i < rank; i++) {
            int64_t p = s->perm[i];
            if (p < 0 || p >= rank || seen[p])
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "perm is not a permutation of 0..%d (entry %d is %lld)", rank - 1,
                                  i, (long long)p);
            seen[p] = true;
        }
    }
    out->dtype = in->dtype;
    out->rank = rank;
    for (int i = 0; i < rank; i++)
        out->dims[i] = in->dims[s->n_perm >= 0 ? s->perm[i] : rank - 1 - i];
    return NULL;
}

static ferry_status *transpose_run(eng_op_call *call)
{
    const transpose_state *s = call->state;
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    int64_t ist[R], st[R];
    strides_of(in, ist);
    for (int i = 0; i < in->rank; i++) st[i] = ist[s->n_perm >= 0 ? s->perm[i] : in->rank - 1 - i];
    if (eng_numel(out) > 0)
        eng_copy_strided(out->data, in->data, ferry_dtype_size(in->dtype), out->rank, out->dims,
                         st);
    return NULL;
}

/* --- Concat --------------------------------------------------------------------------------- */

typedef struct axis_state {
    int64_t axis;
} axis_state;

static ferry_status *concat_init(const eng_node *node, int opset, void **state)
{
    /* Concat-1 defaulted axis to 1; from opset 4 it is required. */
    if (opset >= 4 && !eng_attr_has(node, "axis"))
        return core_error(FERRY_ERR_INVALID_MODEL, "missing required attribute 'axis'");
    ferry_status *st = alloc_state(sizeof(axis_state), state);
    if (st) return st;
    axis_state *s = *state;
    s->axis = eng_attr_int(node, "axis", 1);
    return NULL;
}

static ferry_status *concat_infer(eng_op_call *call)
{
    const axis_state *s = call->state;
    if (call->n_in < 1 || !call->in[0])
        return core_error(FERRY_ERR_INVALID_MODEL, "Concat needs at least one input");
    const eng_tensor *first = call->in[0];
    ferry_status *st = need_flat("Concat input", first);
    if (st) return st;
    int axis;
    st = eng_axis(s->axis, first->rank, &axis);
    if (st) return st;
    if (first->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "cannot concatenate scalars");
    eng_tensor *out = call->out[0];
    eng_same_shape(out, first);
    out->dims[axis] = 0;
    for (int i = 0; i < call->n_in; i++) {
        const eng_tensor *t = call->in[i];
        if (!t) return core_error(FERRY_ERR_INVALID_MODEL, "input %d is missing", i);
        char b1[128], b2[128];
        if (t->dtype != first->dtype)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input %d has type %s but input 0 has type %s", i,
                              ferry_dtype_name(t->dtype), ferry_dtype_name(first->dtype));
        bool ok = t->rank == first->rank;
        for (int d = 0; ok && d < t->rank; d++) ok = d == axis || t->dims[d] == first->dims[d];
        if (!ok)
            return core_error(
                FERRY_ERR_INVALID_ARGUMENT, "cannot concatenate %s and %s along axis %d",
                eng_shape_str(first, b1, sizeof(b1)), eng_shape_str(t, b2, sizeof(b2)), axis);
        out->dims[axis] += t->dims[axis];
    }
    return NULL;
}

static ferry_status *concat_run(eng_op_call *call)
{
    const axis_state *s = call->state;
    eng_tensor *out = call->out[0];
    int axis = (int)(s->axis < 0 ? s->axis + out->rank : s->axis);
    size_t esz = ferry_dtype_size(out->dtype);
    int64_t outer = prod(out->dims, 0, axis);
    size_t inner = (size_t)prod(out->dims, axis + 1, out->rank) * esz;
    char *dst = out->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int i = 0; i < call->n_in; i++) {
            const eng_tensor *t = call->in[i];
            size_t chunk = (size_t)t->dims[axis] * inner;
            if (!chunk) continue;
            memcpy(dst, (const char *)t->data + (size_t)o * chunk, chunk);
            dst += chunk;
        }
    }
    return NULL;
}

/* --- Split ---------------------------------------------------------------------------------- */

typedef struct split_state {
    int64_t axis;
    const int64_t *split; /* the attribute (opset < 13), owned by the model; NULL when absent */
    size_t n_split;
    int64_t num_outputs; /* opset 18; 0 when absent */
} split_state;

static ferry_status *split_init(const eng_node *node, int opset, void **state)
{
    ferry_status *st = alloc_state(sizeof(split_state), state);
    if (st) return st;
    split_state *s = *state;
    s->axis = eng_attr_int(node, "axis", 0);
    if (opset < 13) s->split = eng_attr_ints(node, "split", &s->n_split);
    if (opset >= 18) s->num_outputs = eng_attr_int(node, "num_outputs", 0);
    if (s->num_outputs < 0) {
        free(*state);
        *state = NULL;
        return core_error(FERRY_ERR_INVALID_MODEL, "num_outputs cannot be negative");
    }
    return NULL;
}

/* Size of output I along the split dim DIM: from the input (opset 1 optionally, 13+), the
 * attribute (< 13), ceil-sized chunks (num_outputs, 18) or equal parts. Infer has checked the
 * sizes; run calls this again rather than keeping them anywhere. */
static int64_t split_size(const eng_op_call *call, int64_t dim, int i)
{
    const split_state *s = call->state;
    const eng_tensor *sizes = call->n_in > 1 ? call->in[1] : NULL;
    int64_t n = call->n_out;
    if (sizes) return core_load_i64(sizes->dtype, sizes->data, i);
    if (s->split) return s->split[i];
    if (s->num_outputs) {
        int64_t chunk = dim / n + (dim % n != 0);
        return i < n - 1 ? chunk : dim - chunk * (n - 1);
    }
    return dim / n;
}

static ferry_status *split_infer(eng_op_call *call)
{
    const split_state *s = call->state;
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("Split input", in);
    if (st) return st;
    if (in->rank == 0) return core_error(FERRY_ERR_INVALID_ARGUMENT, "cannot split a scalar");
    int axis;
    if ((st = eng_axis(s->axis, in->rank, &axis))) return st;
    int n = call->n_out;
    int64_t dim = in->dims[axis];
    if (n < 1) return core_error(FERRY_ERR_INVALID_MODEL, "Split has no outputs");

    const eng_tensor *sizes = call->n_in > 1 ? call->in[1] : NULL;
    if (sizes) {
        if (sizes->dtype != FERRY_DTYPE_INT64 && sizes->dtype != FERRY_DTYPE_INT32)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "split must be int64, got %s",
                              ferry_dtype_name(sizes->dtype));
        if (eng_numel(sizes) != n)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "split has %lld sizes for %d outputs",
                              (long long)eng_numel(sizes), n);
        if (!sizes->data)
            return core_error(FERRY_ERR_INTERNAL, "split sizes are not known at plan time");
    } else if (s->split) {
        if ((int64_t)s->n_split != n)
            return core_error(FERRY_ERR_INVALID_MODEL, "split has %zu sizes for %d outputs",
                              s->n_split, n);
    } else if (s->num_outputs) {
        if (s->num_outputs != n)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "num_outputs is %lld but the node has %d outputs",
                              (long long)s->num_outputs, n);
    } else if (dim % n) {
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "cannot split a dim of %lld into %d equal parts", (long long)dim, n);
    }

    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        int64_t size = split_size(call, dim, i);
        if (size < 0 || size > dim - total) {
            total = -1;
            break;
        }
        total += size;
        if (call->out[i]) {
            eng_same_shape(call->out[i], in);
            call->out[i]->dims[axis] = size;
        }
    }
    if (total != dim)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "split sizes do not add up to the dim of %lld along axis %d",
                          (long long)dim, axis);
    return NULL;
}

static ferry_status *split_run(eng_op_call *call)
{
    const split_state *s = call->state;
    const eng_tensor *in = call->in[0];
    int axis = (int)(s->axis < 0 ? s->axis + in->rank : s->axis);
    size_t esz = ferry_dtype_size(in->dtype);
    int64_t outer = prod(in->dims, 0, axis), dim = in->dims[axis];
    size_t inner = (size_t)prod(in->dims, axis + 1, in->rank) * esz;
    size_t in_chunk = (size_t)dim * inner;
    size_t offset = 0;
    for (int i = 0; i < call->n_out; i++) {
        size_t chunk = (size_t)split_size(call, dim, i) * inner;
        eng_tensor *t = call->out[i];
        if (t && chunk) {
            char *dst = t->data;
            const char *src = (const char *)in->data + offset;
            for (int64_t o = 0; o < outer; o++)
                memcpy(dst + (size_t)o * chunk, src + (size_t)o * in_chunk, chunk);
        }
        offset += chunk;
    }
    return NULL;
}

/* --- Slice ---------------------------------------------------------------------------------- */

typedef struct slice_state {
    /* Slice-1 attributes, owned by the model. */
    const int64_t *starts, *ends, *axes;
    size_t n_starts, n_ends, n_axes;
} slice_state;

static ferry_status *slice_init(const eng_node *node, int opset, void **state)
{
    if (opset >= 10) return NULL;
    ferry_status *st = alloc_state(sizeof(slice_state), state);
    if (st) return st;
    slice_state *s = *state;
    s->starts = eng_attr_ints(node, "starts", &s->n_starts);
    s->ends = eng_attr_ints(node, "ends", &s->n_ends);
    s->axes = eng_attr_ints(node, "axes", &s->n_axes);
    if (!s->starts || !s->ends) {
        free(*state);
        *state = NULL;
        return core_error(FERRY_ERR_INVALID_MODEL, "missing required attribute 'starts' or "
                                                   "'ends'");
    }
    return NULL;
}

/* Effective start and step of every dim of IN, with the output dims in OUT_DIMS, following
 * the clamping rules of the ONNX specification. */
static ferry_status *slice_plan(const eng_op_call *call, int64_t *start, int64_t *step,
                                int64_t *out_dims)
{
    const eng_tensor *in = call->in[0];
    int rank = in->rank;
    int64_t starts[R], ends[R], axes[R], steps[R];
    size_t ns, ne, na = 0, nst = 0;
    bool has_axes = false, has_steps = false;
    ferry_status *st;
    if (call->opset < 10) {
        const slice_state *s = call->state;
        ns = s->n_starts;
        ne = s->n_ends;
        na = s->n_axes;
        has_axes = s->axes != NULL;
        if (ns > (size_t)rank || ne > (size_t)rank || na > (size_t)rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "starts, ends and axes must have at most %d entries (the rank)",
                              rank);
        memcpy(starts, s->starts, ns * sizeof(int64_t));
        memcpy(ends, s->ends, ne * sizeof(int64_t));
        if (has_axes) memcpy(axes, s->axes, na * sizeof(int64_t));
    } else {
        if (call->n_in < 3 || !call->in[1] || !call->in[2])
            return core_error(FERRY_ERR_INVALID_MODEL, "Slice needs starts and ends inputs");
        if ((st = read_list("starts", call->in[1], starts, (size_t)rank, &ns))) return st;
        if ((st = read_list("ends", call->in[2], ends, (size_t)rank, &ne))) return st;
        if (call->n_in > 3 && call->in[3]) {
            if ((st = read_list("axes", call->in[3], axes, (size_t)rank, &na))) return st;
            has_axes = true;
        }
        if (call->n_in > 4 && call->in[4]) {
            if ((st = read_list("steps", call->in[4], steps, (size_t)rank, &nst))) return st;
            has_steps = true;
        }
    }
    if (ne != ns || (has_axes && na != ns) || (has_steps && nst != ns))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "starts, ends, axes and steps must have the same length");

    for (int d = 0; d < rank; d++) {
        start[d] = 0;
        step[d] = 1;
        out_dims[d] = in->dims[d];
    }
    bool seen[R] = {false};
    for (size_t i = 0; i < ns; i++) {
        int axis;
        if ((st = eng_axis(has_axes ? axes[i] : (int64_t)i, rank, &axis))) return st;
        if (seen[axis])
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "axis %d is sliced twice", axis);
        seen[axis] = true;
        int64_t dim = in->dims[axis];
        int64_t stp = has_steps ? steps[i] : 1;
        if (stp == 0) return core_error(FERRY_ERR_INVALID_ARGUMENT, "slice step cannot be 0");
        int64_t b = starts[i], e = ends[i], count;
        if (b < 0) b += dim;
        if (e < 0) e += dim;
        if (stp > 0) {
            b = b < 0 ? 0 : b > dim ? dim : b;
            e = e < 0 ? 0 : e > dim ? dim : e;
            /* (e - b + stp - 1) could overflow for a huge step; divide first. */
            count = e > b ? (e - b - 1) / stp + 1 : 0;
        } else if (dim == 0) {
            count = 0; /* the clamp range [0, dim-1] below is empty */
        } else {
            b = b < 0 ? 0 : b > dim - 1 ? dim - 1 : b;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            /* -stp overflows for INT64_MIN; any step beyond -dim takes one element. */
            uint64_t mag = (uint64_t)(-(stp + 1)) + 1;
            count = b > e ? (int64_t)((uint64_t)(b - e - 1) / mag) + 1 : 0;
        }
        start[axis] = count > 0 ? b : 0;
        step[axis] = stp;
        out_dims[axis] = count;
    }
    return NULL;
}

static ferry_status *slice_infer(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("Slice input", in);
    if (st) return st;
    int64_t start[R], step[R], dims[R];
    if ((st = slice_plan(call, start, step, dims))) return st;
    call->out[0]->dtype = in->dtype;
    eng_set_shape(call->out[0], in->rank, dims);
    return NULL;
}

static ferry_status *slice_run(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    int64_t start[R], step[R], dims[R], ist[R];
    ferry_status *st = slice_plan(call, start, step, dims);
    if (st) return st;
    if (eng_numel(out) == 0) return NULL;
    strides_of(in, ist);
    size_t esz = ferry_dtype_size(in->dtype);
    int64_t offset = 0;
    for (int d = 0; d < in->rank; d++) {
        offset += start[d] * ist[d];
        /* A dim that yields one element never steps; its step may be huge, so skip it. */
        ist[d] = out->dims[d] > 1 ? ist[d] * step[d] : 0;
    }
    eng_copy_strided(out->data, (const char *)in->data + offset * (int64_t)esz, esz, out->rank,
                     out->dims, ist);
    return NULL;
}

/* --- Gather --------------------------------------------------------------------------------- */

static ferry_status *gather_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    ferry_status *st = alloc_state(sizeof(axis_state), state);
    if (st) return st;
    axis_state *s = *state;
    s->axis = eng_attr_int(node, "axis", 0);
    return NULL;
}

static ferry_status *gather_infer(eng_op_call *call)
{
    const axis_state *s = call->state;
    const eng_tensor *data = call->in[0], *idx = call->in[1];
    ferry_status *st = need_flat("Gather data", data);
    if (st) return st;
    if (idx->dtype != FERRY_DTYPE_INT64 && idx->dtype != FERRY_DTYPE_INT32)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "indices must be int32 or int64, got %s",
                          ferry_dtype_name(idx->dtype));
    if (data->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "cannot gather from a scalar");
    int axis;
    if ((st = eng_axis(s->axis, data->rank, &axis))) return st;
    int rank = data->rank + idx->rank - 1;
    if (rank > R)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "the output would have rank %d; Ferry "
                          "supports up to %d",
                          rank, R);
    eng_tensor *out = call->out[0];
    out->dtype = data->dtype;
    out->rank = rank;
    int k = 0;
    for (int d = 0; d < axis; d++) out->dims[k++] = data->dims[d];
    for (int d = 0; d < idx->rank; d++) out->dims[k++] = idx->dims[d];
    for (int d = axis + 1; d < data->rank; d++) out->dims[k++] = data->dims[d];
    return NULL;
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

static ferry_status *gather_run(eng_op_call *call)
{
    const axis_state *s = call->state;
    const eng_tensor *data = call->in[0], *idx = call->in[1];
    eng_tensor *out = call->out[0];
    int axis = (int)(s->axis < 0 ? s->axis + data->rank : s->axis);
    size_t esz = ferry_dtype_size(data->dtype);
    int64_t outer = prod(data->dims, 0, axis), n = data->dims[axis];
    size_t inner = (size_t)prod(data->dims, axis + 1, data->rank) * esz;
    int64_t count = eng_numel(idx);
    if (count == 0 || outer == 0) return NULL;
    /* Check every index before writing, so a bad one leaves no half-written output. */
    for (int64_t j = 0; j < count; j++) {
        int64_t i = load_index(idx, j);
        if (i < -n || i >= n)
            return core_error(FERRY_ERR_RUNTIME,
                              "index %lld is out of range for a dim of %lld along axis %d",
                              (long long)i, (long long)n, axis);
    }
    if (inner == 0) return NULL;
    char *dst = out->data;
    const char *src = data->data;
    for (int64_t o = 0; o < outer; o++) {
        const char *base = src + (size_t)(o * n) * inner;
        for (int64_t j = 0; j < count; j++) {
            int64_t i = load_index(idx, j);
            if (i < 0) i += n;
            const char *p = base + (size_t)i * inner;
            /* Constant sizes let the compiler turn single-element gathers into one move. */
            switch (inner) {
            case 4:
                memcpy(dst, p, 4);
                break;
            case 8:
                memcpy(dst, p, 8);
                break;
            default:
                memcpy(dst, p, inner);
                break;
            }
            dst += inner;
        }
    }
    return NULL;
}

static const eng_op ops[] = {
    {"", "Transpose", 1, 0, transpose_init, free, transpose_infer, transpose_run},
    {"", "Concat", 1, 0, concat_init, free, concat_infer, concat_run},
    {"", "Split", 1, 1u << 1, split_init, free, split_infer, split_run},
    {"", "Split", 2, 0, split_init, free, split_infer, split_run},
    {"", "Split", 13, 1u << 1, split_init, free, split_infer, split_run},
    {"", "Slice", 1, 0, slice_init, free, slice_infer, slice_run},
    {"", "Slice", 10, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4), slice_init, free, slice_infer,
     slice_run},
    {"", "Gather", 1, 0, gather_init, free, gather_infer, gather_run},
};

const eng_op_table eng_ops_layout = {ops, sizeof(ops) / sizeof(ops[0])};
