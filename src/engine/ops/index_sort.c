/* index_sort.c - operators that order elements: ArgMax, ArgMin, TopK and Unique.
 *
 * All of them compare elements through a sort key: each value maps to a uint64 whose unsigned
 * order is the value order (IEEE bits with the sign folded for floats, the sign bit flipped
 * for signed integers). One comparison then serves every dtype, int64 and uint64 stay exact,
 * and the float special cases are settled once: -0.0 equals 0.0 and every NaN is one value,
 * greater than +inf (numpy's sort order) or, for ArgMin, smaller than -inf so that the first
 * NaN wins as in numpy's argmin.
 *
 * Ties go to the lower index (ArgMax without select_last_index, TopK, Unique's first
 * occurrence), as ONNX specifies. TopK keeps the best k of each lane in a binary heap;
 * Unique sorts slice positions with a stable merge sort. Unique's output shape depends on its
 * input's values, so that input is flagged in value_inputs and infer computes the whole
 * result once to learn the count; run computes it again in the workspace.
 */
#include "engine/op.h"

#include <math.h>
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

static ferry_status *alloc_state(size_t size, void **state)
{
    *state = calloc(1, size);
    return *state ? NULL : core_error(FERRY_ERR_NO_MEMORY, "out of memory");
}

static int64_t prod(const int64_t *dims, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= dims[i];
    return p;
}

static bool orderable(ferry_dtype dt)
{
    return core_dtype_is_float(dt) || core_dtype_is_signed_int(dt) ||
           core_dtype_is_unsigned_int(dt) || dt == FERRY_DTYPE_BOOL;
}

/* --- sort keys ------------------------------------------------------------------------------ */

static inline uint64_t float_key(double f, bool nan_high)
{
    if (isnan(f)) return nan_high ? UINT64_MAX : 0;
    if (f == 0.0) f = 0.0; /* -0.0 sorts with 0.0 */
    uint64_t u;
    memcpy(&u, &f, sizeof(u));
    /* Negative floats order backwards in their bits: invert them; lift positives above. */
    return (u >> 63) ? ~u : u | ((uint64_t)1 << 63);
}

#define SIGN_BIT ((uint64_t)1 << 63)
#define LOAD(T)                                                                                    \
    T v;                                                                                           \
    memcpy(&v, (const char *)p + i * (int64_t)sizeof(T), sizeof(T))

/* Key of element I of the flat buffer P of type DT. */
static inline uint64_t key_at(ferry_dtype dt, const void *p, int64_t i, bool nan_high)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT: {
        LOAD(float);
        return float_key(v, nan_high);
    }
    case FERRY_DTYPE_DOUBLE: {
        LOAD(double);
        return float_key(v, nan_high);
    }
    case FERRY_DTYPE_FLOAT16: {
        LOAD(uint16_t);
        return float_key(core_half_to_float(v), nan_high);
    }
    case FERRY_DTYPE_BFLOAT16: {
        LOAD(uint16_t);
        return float_key(core_bf16_to_float(v), nan_high);
    }
    case FERRY_DTYPE_INT8: {
        LOAD(int8_t);
        return (uint64_t)(int64_t)v ^ SIGN_BIT;
    }
    case FERRY_DTYPE_INT16: {
        LOAD(int16_t);
        return (uint64_t)(int64_t)v ^ SIGN_BIT;
    }
    case FERRY_DTYPE_INT32: {
        LOAD(int32_t);
        return (uint64_t)(int64_t)v ^ SIGN_BIT;
    }
    case FERRY_DTYPE_INT64: {
        LOAD(int64_t);
        return (uint64_t)v ^ SIGN_BIT;
    }
    case FERRY_DTYPE_UINT16: {
        LOAD(uint16_t);
        return v;
    }
    case FERRY_DTYPE_UINT32: {
        LOAD(uint32_t);
        return v;
    }
    case FERRY_DTYPE_UINT64: {
        LOAD(uint64_t);
        return v;
    }
    default: { /* uint8, bool */
        LOAD(uint8_t);
        return v;
    }
    }
}

/* --- ArgMax and ArgMin ---------------------------------------------------------------------- */

typedef struct arg_state {
    bool max;
    bool keepdims;
    bool last; /* select_last_index */
    int64_t axis;
} arg_state;

static ferry_status *arg_init(const eng_node *node, int opset, void **state)
{
    ferry_status *st = alloc_state(sizeof(arg_state), state);
    if (st) return st;
    arg_state *s = *state;
    s->max = !strcmp(eng_node_op_type(node), "ArgMax");
    s->keepdims = eng_attr_int(node, "keepdims", 1) != 0;
    s->last = opset >= 12 && eng_attr_int(node, "select_last_index", 0) != 0;
    s->axis = eng_attr_int(node, "axis", 0);
    return NULL;
}

static ferry_status *arg_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, true);
    if (io) return io;
    const arg_state *s = call->state;
    const eng_tensor *in = call->in[0];
    if (!orderable(in->dtype) || in->dtype == FERRY_DTYPE_BOOL)
        return eng_bad_dtype("input", in->dtype);
    if (in->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the input must have rank 1 or more");
    int axis = 0;
    ferry_status *st = eng_axis(s->axis, in->rank, &axis);
    if (st) return st;
    if (in->dims[axis] == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "cannot take the %s of an empty axis",
                          s->max ? "argmax" : "argmin");
    eng_tensor *out = call->out[0];
    out->dtype = FERRY_DTYPE_INT64;
    out->rank = 0;
    for (int d = 0; d < in->rank; d++) {
        if (d != axis)
            out->dims[out->rank++] = in->dims[d];
        else if (s->keepdims)
            out->dims[out->rank++] = 1;
    }
    return NULL;
}

/* One lane loop per dtype so that the key conversion is not a switch per element. Keys are
 * flipped for ArgMin so that both look for the greatest. */
#define DEFINE_ARG(NAME, DT)                                                                       \
    static void NAME(const void *src, int64_t outer, int64_t n, int64_t inner, uint64_t flip,      \
                     bool last, bool nan_high, int64_t *dst)                                       \
    {                                                                                              \
        for (int64_t o = 0; o < outer; o++) {                                                      \
            for (int64_t j = 0; j < inner; j++) {                                                  \
                int64_t base = o * n * inner + j, bi = 0;                                          \
                uint64_t best = key_at(DT, src, base, nan_high) ^ flip;                            \
                for (int64_t i = 1; i < n; i++) {                                                  \
                    uint64_t k = key_at(DT, src, base + i * inner, nan_high) ^ flip;               \
                    if (k > best || (last && k == best)) {                                         \
                        best = k;                                                                  \
                        bi = i;                                                                    \
                    }                                                                              \
                }                                                                                  \
                dst[o * inner + j] = bi;                                                           \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_ARG(arg_f32, FERRY_DTYPE_FLOAT)
DEFINE_ARG(arg_f64, FERRY_DTYPE_DOUBLE)
DEFINE_ARG(arg_f16, FERRY_DTYPE_FLOAT16)
DEFINE_ARG(arg_bf16, FERRY_DTYPE_BFLOAT16)
DEFINE_ARG(arg_i8, FERRY_DTYPE_INT8)
DEFINE_ARG(arg_i16, FERRY_DTYPE_INT16)
DEFINE_ARG(arg_i32, FERRY_DTYPE_INT32)
DEFINE_ARG(arg_i64, FERRY_DTYPE_INT64)
DEFINE_ARG(arg_u8, FERRY_DTYPE_UINT8)
DEFINE_ARG(arg_u16, FERRY_DTYPE_UINT16)
DEFINE_ARG(arg_u32, FERRY_DTYPE_UINT32)
DEFINE_ARG(arg_u64, FERRY_DTYPE_UINT64)

static ferry_status *arg_run(eng_op_call *call)
{
    const arg_state *s = call->state;
    const eng_tensor *in = call->in[0];
    int axis = (int)(s->axis < 0 ? s->axis + in->rank : s->axis);
    int64_t outer = prod(in->dims, 0, axis), n = in->dims[axis];
    int64_t inner = prod(in->dims, axis + 1, in->rank);
    uint64_t flip = s->max ? 0 : UINT64_MAX;
    /* numpy's argmax and argmin both return the first NaN: NaN is the greatest key for the
     * one and, flipped, for the other. */
    bool nan_high = s->max;
    void (*fn)(const void *, int64_t, int64_t, int64_t, uint64_t, bool, bool, int64_t *);
    switch (in->dtype) {
    case FERRY_DTYPE_FLOAT:
        fn = arg_f32;
        break;
    case FERRY_DTYPE_DOUBLE:
        fn = arg_f64;
        break;
    case FERRY_DTYPE_FLOAT16:
        fn = arg_f16;
        break;
    case FERRY_DTYPE_BFLOAT16:
        fn = arg_bf16;
        break;
    case FERRY_DTYPE_INT8:
        fn = arg_i8;
        break;
    case FERRY_DTYPE_INT16:
        fn = arg_i16;
        break;
    case FERRY_DTYPE_INT32:
        fn = arg_i32;
        break;
    case FERRY_DTYPE_INT64:
        fn = arg_i64;
        break;
    case FERRY_DTYPE_UINT8:
        fn = arg_u8;
        break;
    case FERRY_DTYPE_UINT16:
        fn = arg_u16;
        break;
    case FERRY_DTYPE_UINT32:
        fn = arg_u32;
        break;
    default:
        fn = arg_u64;
        break;
    }
    fn(in->data, outer, n, inner, flip, s->last, nan_high, call->out[0]->data);
    return NULL;
}

/* --- TopK ----------------------------------------------------------------------------------- */

typedef struct topk_state {
    int64_t axis;
    bool largest;
    int64_t k_attr; /* opset 1 */
} topk_state;

static ferry_status *topk_init(const eng_node *node, int opset, void **state)
{
    if (opset < 10 && !eng_attr_has(node, "k"))
        return core_error(FERRY_ERR_INVALID_MODEL, "missing required attribute 'k'");
    ferry_status *st = alloc_state(sizeof(topk_state), state);
    if (st) return st;
    topk_state *s = *state;
    s->axis = eng_attr_int(node, "axis", -1);
    s->largest = opset < 11 || eng_attr_int(node, "largest", 1) != 0;
    s->k_attr = eng_attr_int(node, "k", 0);
    /* sorted=0 leaves the order to the implementation; sorted output satisfies it. */
    return NULL;
}

static ferry_status *topk_plan(const eng_op_call *call, int *axis, int64_t *k)
{
    const topk_state *s = call->state;
    const eng_tensor *in = call->in[0];
    if (!orderable(in->dtype) || in->dtype == FERRY_DTYPE_BOOL)
        return eng_bad_dtype("input", in->dtype);
    if (in->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the input must have rank 1 or more");
    ferry_status *st = eng_axis(s->axis, in->rank, axis);
    if (st) return st;
    if (call->opset < 10) {
        *k = s->k_attr;
    } else {
        const eng_tensor *kt = call->n_in > 1 ? call->in[1] : NULL;
        if (!kt) return core_error(FERRY_ERR_INVALID_MODEL, "missing the K input");
        int64_t v[1];
        size_t n = 0;
        if (eng_numel(kt) != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "K must hold one value, not %lld",
                              (long long)eng_numel(kt));
        if ((st = eng_read_ints(kt, v, 1, &n))) return st;
        *k = v[0];
    }
    if (*k < 0 || *k > in->dims[*axis])
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "k = %lld is out of range for a dim of %lld along axis %d", (long long)*k,
                          (long long)in->dims[*axis], *axis);
    return NULL;
}

typedef struct entry {
    uint64_t key;
    int64_t idx;
} entry;

/* A ranks above B: greater key, or the same key at a lower index. */
static inline bool above(const entry *a, const entry *b)
{
    return a->key > b->key || (a->key == b->key && a->idx < b->idx);
}

/* Restores the heap property (lowest rank on top) below position I of H[0..n). */
static void sift_down(entry *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, m = i;
        if (l < n && above(&h[m], &h[l])) m = l;
        if (l + 1 < n && above(&h[m], &h[l + 1])) m = l + 1;
        if (m == i) return;
        entry t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static ferry_status *topk_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, false);
    if (io) return io;
    const eng_tensor *in = call->in[0];
    int axis = 0;
    int64_t k = 0;
    ferry_status *st = topk_plan(call, &axis, &k);
    if (st) return st;
    for (int o = 0; o < 2 && o < call->n_out; o++) {
        eng_tensor *t = call->out[o];
        if (!t) continue;
        eng_same_shape(t, in);
        t->dims[axis] = k;
        if (o == 1) t->dtype = FERRY_DTYPE_INT64;
    }
    call->workspace_size = (size_t)k * sizeof(entry);
    return NULL;
}

static ferry_status *topk_run(eng_op_call *call)
{
    const topk_state *s = call->state;
    const eng_tensor *in = call->in[0];
    eng_tensor *values = call->out[0], *indices = call->n_out > 1 ? call->out[1] : NULL;
    int axis = 0;
    int64_t k = 0;
    ferry_status *st = topk_plan(call, &axis, &k);
    if (st) return st;
    if (k == 0) return NULL;
    int64_t outer = prod(in->dims, 0, axis), n = in->dims[axis];
    int64_t inner = prod(in->dims, axis + 1, in->rank);
    size_t esz = ferry_dtype_size(in->dtype);
    /* Smallest-k is largest-k of the inverted keys; NaN then ranks last either way. */
    uint64_t flip = s->largest ? 0 : UINT64_MAX;
    entry *h = call->workspace;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t j = 0; j < inner; j++) {
            int64_t base = o * n * inner + j;
            for (int64_t i = 0; i < k; i++)
                h[i] = (entry){key_at(in->dtype, in->data, base + i * inner, true) ^ flip, i};
            for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(h, k, i);
            for (int64_t i = k; i < n; i++) {
                entry e = {key_at(in->dtype, in->data, base + i * inner, true) ^ flip, i};
                if (above(&e, &h[0])) {
                    h[0] = e;
                    sift_down(h, k, 0);
                }
            }
            /* Heap sort: moving the lowest to the end leaves h in descending rank. */
            for (int64_t end = k - 1; end > 0; end--) {
                entry t = h[0];
                h[0] = h[end];
                h[end] = t;
                sift_down(h, end, 0);
            }
            int64_t obase = o * k * inner + j;
            for (int64_t i = 0; i < k; i++) {
                int64_t dst = obase + i * inner;
                if (values)
                    memcpy((char *)values->data + (size_t)dst * esz,
                           (const char *)in->data + (size_t)(base + h[i].idx * inner) * esz, esz);
                if (indices) ((int64_t *)indices->data)[dst] = h[i].idx;
            }
        }
    }
    return NULL;
}

/* --- Unique --------------------------------------------------------------------------------- */

typedef struct unique_state {
    bool has_axis;
    int64_t axis;
    bool sorted;
} unique_state;

static ferry_status *unique_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    ferry_status *st = alloc_state(sizeof(unique_state), state);
    if (st) return st;
    unique_state *s = *state;
    s->has_axis = eng_attr_has(node, "axis");
    s->axis = eng_attr_int(node, "axis", 0);
    s->sorted = eng_attr_int(node, "sorted", 1) != 0;
    return NULL;
}

/* The input as [outer, n, inner]: N slices of OUTER*INNER elements along the axis (N single
 * elements of the flattened input without one). */
typedef struct unique_shape {
    int axis; /* -1: flattened */
    int64_t outer, n, inner;
} unique_shape;

static ferry_status *unique_shape_of(const eng_op_call *call, unique_shape *u)
{
    const unique_state *s = call->state;
    const eng_tensor *in = call->in[0];
    if (!orderable(in->dtype)) return eng_bad_dtype("input", in->dtype);
    u->axis = -1;
    u->outer = u->inner = 1;
    u->n = eng_numel(in);
    if (s->has_axis) {
        ferry_status *st = eng_axis(s->axis, in->rank, &u->axis);
        if (st) return st;
        if (in->rank == 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "a scalar has no axis to unique on");
        u->outer = prod(in->dims, 0, u->axis);
        u->n = in->dims[u->axis];
        u->inner = prod(in->dims, u->axis + 1, in->rank);
    }
    return NULL;
}

/* Scratch bytes: the keys of every element plus six arrays of N int64. */
static size_t unique_scratch(const eng_tensor *in, const unique_shape *u)
{
    return (size_t)eng_numel(in) * 8 + (size_t)u->n * 8 * 6;
}

/* Lexicographic order of slices A and B, each L keys. */
static inline int cmp_slices(const uint64_t *keys, int64_t l, int64_t a, int64_t b)
{
    const uint64_t *x = keys + a * l, *y = keys + b * l;
    for (int64_t i = 0; i < l; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

/* Stable bottom-up merge sort of the N slice numbers in A (TMP: N more). */
static void merge_sort(int64_t *a, int64_t *tmp, int64_t n, const uint64_t *keys, int64_t l)
{
    int64_t *src = a, *dst = tmp;
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                dst[o++] = cmp_slices(keys, l, src[j], src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid) dst[o++] = src[i++];
            while (j < hi) dst[o++] = src[j++];
        }
        int64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * sizeof(int64_t));
}

/* The scratch arrays of Unique: keys of every element, then six arrays of N int64. */
typedef struct unique_work {
    uint64_t *keys;
    int64_t *perm, *tmp;  /* slice numbers in sorted order, and merge space */
    int64_t *gid;         /* per slice: its group in sorted order */
    int64_t *first, *cnt; /* per group: first occurrence and size */
    int64_t *pos;         /* per group: its place in the output */
} unique_work;

/* Groups the equal slices of the input using SCRATCH (unique_scratch() bytes); returns the
 * number of groups. */
static int64_t unique_group(const eng_op_call *call, const unique_shape *u, void *scratch,
                            unique_work *w)
{
    const eng_tensor *in = call->in[0];
    int64_t n = u->n, l = u->outer * u->inner;
    w->keys = scratch;
    w->perm = (int64_t *)(w->keys + n * l);
    w->tmp = w->perm + n;
    w->gid = w->tmp + n;
    w->first = w->gid + n;
    w->cnt = w->first + n;
    w->pos = w->cnt + n;
    /* Keys slice by slice, each slice in the row-major order of its elements. */
    for (int64_t o = 0; o < u->outer; o++)
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < u->inner; i++)
                w->keys[j * l + o * u->inner + i] =
                    key_at(in->dtype, in->data, (o * n + j) * u->inner + i, true);
    for (int64_t j = 0; j < n; j++) w->perm[j] = j;
    merge_sort(w->perm, w->tmp, n, w->keys, l);
    /* Groups in sorted order; stability makes each group's first entry its first occurrence. */
    int64_t g = -1;
    for (int64_t t = 0; t < n; t++) {
        if (t == 0 || cmp_slices(w->keys, l, w->perm[t - 1], w->perm[t]) != 0) {
            g++;
            w->first[g] = w->perm[t];
            w->cnt[g] = 0;
        }
        w->gid[w->perm[t]] = g;
        w->cnt[g]++;
    }
    return g + 1;
}

/* Fills the requested outputs from the GROUPS groups found by unique_group(). */
static void unique_write(const eng_op_call *call, const unique_shape *u, const unique_work *w,
                         int64_t groups)
{
    const unique_state *s = call->state;
    const eng_tensor *in = call->in[0];
    int64_t n = u->n, *pos = w->pos;
    if (s->sorted) {
        for (int64_t g = 0; g < groups; g++) pos[g] = g;
    } else { /* in order of first occurrence */
        int64_t next = 0;
        for (int64_t j = 0; j < n; j++)
            if (w->first[w->gid[j]] == j) pos[w->gid[j]] = next++;
    }
    size_t esz = ferry_dtype_size(in->dtype), chunk = (size_t)u->inner * esz;
    eng_tensor *y = call->out[0];
    eng_tensor *idx = call->n_out > 1 ? call->out[1] : NULL;
    eng_tensor *inv = call->n_out > 2 ? call->out[2] : NULL;
    eng_tensor *counts = call->n_out > 3 ? call->out[3] : NULL;
    for (int64_t g = 0; g < groups; g++) {
        if (y && chunk)
            for (int64_t o = 0; o < u->outer; o++)
                memcpy((char *)y->data + (size_t)(o * groups + pos[g]) * chunk,
                       (const char *)in->data + (size_t)(o * n + w->first[g]) * chunk, chunk);
        if (idx) ((int64_t *)idx->data)[pos[g]] = w->first[g];
        if (counts) ((int64_t *)counts->data)[pos[g]] = w->cnt[g];
    }
    if (inv)
        for (int64_t j = 0; j < n; j++) ((int64_t *)inv->data)[j] = pos[w->gid[j]];
}

static ferry_status *unique_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, false);
    if (io) return io;
    const eng_tensor *in = call->in[0];
    unique_shape u;
    ferry_status *st = unique_shape_of(call, &u);
    if (st) return st;
    if (u.n > 0 && !in->data)
        return core_error(FERRY_ERR_INTERNAL, "the input is not known at plan time");
    size_t bytes = unique_scratch(in, &u);
    void *scratch = malloc(bytes ? bytes : 1);
    if (!scratch) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    unique_work w;
    int64_t count = unique_group(call, &u, scratch, &w);
    free(scratch);
    for (int o = 0; o < call->n_out && o < 4; o++) {
        eng_tensor *t = call->out[o];
        if (!t) continue;
        t->dtype = FERRY_DTYPE_INT64;
        t->rank = 1;
        t->dims[0] = o == 2 ? u.n : count;
    }
    eng_tensor *y = call->out[0];
    if (y) {
        y->dtype = in->dtype;
        if (u.axis >= 0) {
            eng_same_shape(y, in);
            y->dims[u.axis] = count;
        }
    }
    call->workspace_size = bytes;
    return NULL;
}

static ferry_status *unique_run(eng_op_call *call)
{
    unique_shape u;
    ferry_status *st = unique_shape_of(call, &u);
    if (st) return st;
    unique_work w;
    int64_t count = unique_group(call, &u, call->workspace, &w);
    /* The input is the one the plan was built from; guard the count all the same. */
    for (int o = 0; o < call->n_out && o < 4; o++) {
        const eng_tensor *t = call->out[o];
        if (!t || o == 2) continue;
        int64_t planned = o == 0 && u.axis >= 0 ? t->dims[u.axis] : t->dims[0];
        if (planned != count)
            return core_error(FERRY_ERR_INTERNAL, "the input changed after planning");
    }
    unique_write(call, &u, &w, count);
    return NULL;
}

static const eng_op ops[] = {
    {"", "ArgMax", 1, 0, arg_init, free, arg_infer, arg_run},
    {"", "ArgMin", 1, 0, arg_init, free, arg_infer, arg_run},
    {"", "TopK", 1, 0, topk_init, free, topk_infer, topk_run},
    {"", "TopK", 10, 1u << 1, topk_init, free, topk_infer, topk_run},
    {"", "Unique", 11, 1u << 0, unique_init, free, unique_infer, unique_run},
};

const eng_op_table eng_ops_index_sort = {ops, sizeof(ops) / sizeof(ops[0])};
