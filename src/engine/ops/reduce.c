/* reduce.c - ReduceSum and ReduceMean.
 *
 * The axes come from the "axes" attribute (ReduceSum before opset 13, ReduceMean through 17) or
 * from input 1 (ReduceSum 13+, ReduceMean 18+), which is flagged in value_inputs; an empty or
 * absent list reduces every axis unless noop_with_empty_axes makes the node a copy.
 *
 * The kernel walks the input once in memory order and adds each element into an accumulator
 * array (the workspace, one 8-byte slot per output element): double for the float types,
 * wrapping 64-bit integers for the integer types. The dims are first merged into alternating
 * runs of kept and reduced axes so the innermost loop is either a long sum of a contiguous
 * run or a vector add into contiguous accumulators. A final pass divides (for the mean) and
 * converts to the output type.
 */
#include "engine/op.h"

#include <stdlib.h>
#include <string.h>

#define R FERRY_MAX_RANK

typedef struct reduce_state {
    bool mean;
    bool keepdims;
    bool noop_with_empty_axes;
    bool axes_from_input;
    const int64_t *axes; /* the attribute, owned by the model; NULL when absent */
    size_t n_axes;
} reduce_state;

static ferry_status *reduce_init(const eng_node *node, bool mean, bool axes_from_input,
                                 void **state)
{
    reduce_state *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->mean = mean;
    s->keepdims = eng_attr_int(node, "keepdims", 1) != 0;
    s->axes_from_input = axes_from_input;
    if (axes_from_input)
        s->noop_with_empty_axes = eng_attr_int(node, "noop_with_empty_axes", 0) != 0;
    else
        s->axes = eng_attr_ints(node, "axes", &s->n_axes);
    *state = s;
    return NULL;
}

static ferry_status *reduce_sum_init(const eng_node *node, int opset, void **state)
{
    return reduce_init(node, false, opset >= 13, state);
}

static ferry_status *reduce_mean_init(const eng_node *node, int opset, void **state)
{
    return reduce_init(node, true, opset >= 18, state);
}

static bool supported(ferry_dtype dt)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT:
    case FERRY_DTYPE_DOUBLE:
    case FERRY_DTYPE_FLOAT16:
    case FERRY_DTYPE_BFLOAT16:
    case FERRY_DTYPE_INT32:
    case FERRY_DTYPE_INT64:
    case FERRY_DTYPE_UINT32:
    case FERRY_DTYPE_UINT64: return true;
    default: return false;
    }
}

/* Which dims of the input are reduced (bit d of *mask); *copy when the node is a no-op. */
static ferry_status *reduced_dims(const eng_op_call *call, uint32_t *mask, bool *copy)
{
    const reduce_state *s = call->state;
    const eng_tensor *in = call->in[0];
    int64_t axes[R];
    size_t n = 0;
    ferry_status *st;
    *mask = 0;
    *copy = false;
    if (s->axes_from_input) {
        const eng_tensor *t = call->n_in > 1 ? call->in[1] : NULL;
        if (t) {
            if (t->dtype != FERRY_DTYPE_INT64 && t->dtype != FERRY_DTYPE_INT32)
                return core_error(FERRY_ERR_INVALID_ARGUMENT, "axes must be int64, got %s",
                                  ferry_dtype_name(t->dtype));
            if (eng_numel(t) > in->rank)
                return core_error(FERRY_ERR_INVALID_ARGUMENT,
                                  "axes has %lld entries but the input has rank %d",
                                  (long long)eng_numel(t), in->rank);
            if ((st = eng_read_ints(t, axes, R, &n))) return st;
        }
    } else if (s->axes) {
        if (s->n_axes > (size_t)in->rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "axes has %zu entries but the input has rank %d", s->n_axes,
                              in->rank);
        n = s->n_axes;
        memcpy(axes, s->axes, n * sizeof(int64_t));
    }
    if (n == 0) {
        if (s->noop_with_empty_axes)
            *copy = true;
        else
            *mask = (uint32_t)((1u << in->rank) - 1);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        int axis;
        if ((st = eng_axis(axes[i], in->rank, &axis))) return st;
        if (*mask & (1u << axis))
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "axis %d is listed twice", axis);
        *mask |= 1u << axis;
    }
    return NULL;
}

static ferry_status *reduce_infer(eng_op_call *call)
{
    const reduce_state *s = call->state;
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    if (!supported(in->dtype)) return eng_bad_dtype("input", in->dtype);
    uint32_t mask;
    bool copy;
    ferry_status *st = reduced_dims(call, &mask, &copy);
    if (st) return st;
    out->dtype = in->dtype;
    if (copy) {
        eng_same_shape(out, in);
        return NULL;
    }
    out->rank = 0;
    for (int d = 0; d < in->rank; d++) {
        if (!(mask & (1u << d)))
            out->dims[out->rank++] = in->dims[d];
        else if (s->keepdims)
            out->dims[out->rank++] = 1;
    }
    call->workspace_size = (size_t)eng_numel(out) * 8;
    return NULL;
}

/* Adds the N contiguous elements at SRC into the accumulator(s) at ACC: all into ACC[0] when
 * SUM_RUN, else element j into ACC[j]. Four partial sums break the add dependency chain. */
#define ACCUMULATE(T, A, LOAD)                                                                 \
    do {                                                                                       \
        const T *restrict p = (const T *)src;                                                  \
        A *restrict a = acc;                                                                   \
        if (sum_run) {                                                                         \
            A s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                                  \
            int64_t j = 0;                                                                     \
            for (; j + 4 <= n; j += 4) {                                                       \
                s0 += (A)LOAD(p[j]);                                                           \
                s1 += (A)LOAD(p[j + 1]);                                                       \
                s2 += (A)LOAD(p[j + 2]);                                                       \
                s3 += (A)LOAD(p[j + 3]);                                                       \
            }                                                                                  \
            for (; j < n; j++) s0 += (A)LOAD(p[j]);                                            \
            a[0] += (s0 + s1) + (s2 + s3);                                                     \
        } else {                                                                               \
            for (int64_t j = 0; j < n; j++) a[j] += (A)LOAD(p[j]);                             \
        }                                                                                      \
    } while (0)

#define SAME(x) (x)
/* Signed values go through int64 so they sign-extend before the wrapping unsigned sum. */
#define SIGNED(x) ((int64_t)(x))

static void accumulate(ferry_dtype dt, const void *src, int64_t n, bool sum_run, void *acc)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT: ACCUMULATE(float, double, SAME); break;
    case FERRY_DTYPE_DOUBLE: ACCUMULATE(double, double, SAME); break;
    case FERRY_DTYPE_FLOAT16: ACCUMULATE(uint16_t, double, core_half_to_float); break;
    case FERRY_DTYPE_BFLOAT16: ACCUMULATE(uint16_t, double, core_bf16_to_float); break;
    case FERRY_DTYPE_INT32: ACCUMULATE(int32_t, uint64_t, SIGNED); break;
    case FERRY_DTYPE_INT64: ACCUMULATE(int64_t, uint64_t, SIGNED); break;
    case FERRY_DTYPE_UINT32: ACCUMULATE(uint32_t, uint64_t, SAME); break;
    case FERRY_DTYPE_UINT64: ACCUMULATE(uint64_t, uint64_t, SAME); break;
    default: break;
    }
}

/* Writes the N accumulators to DST in type DT, divided by COUNT for the mean. */
#define FINISH(T, A, DIV, STORE)                                                               \
    do {                                                                                       \
        const A *a = acc;                                                                      \
        T *o = dst;                                                                            \
        for (int64_t i = 0; i < n; i++) o[i] = STORE(a[i] / DIV);                              \
    } while (0)

#define TO_F32(x) ((float)(x))
#define TO_F16(x) core_float_to_half((float)(x))
#define TO_BF16(x) core_float_to_bf16((float)(x))
#define TO_I32(x) ((int32_t)(x))
#define TO_U32(x) ((uint32_t)(x))

static void finish(ferry_dtype dt, const void *acc, int64_t n, bool mean, int64_t count,
                   void *dst)
{
    /* A mean over no elements is NaN for floats (as numpy's) and 0 for integers. The signed
     * sums were kept as wrapping unsigned values; reading them back as int64 restores them. */
    double fdiv = mean ? (double)count : 1.0;
    uint64_t udiv = mean && count > 0 ? (uint64_t)count : 1;
    int64_t sdiv = (int64_t)udiv;
    switch (dt) {
    case FERRY_DTYPE_FLOAT: FINISH(float, double, fdiv, TO_F32); break;
    case FERRY_DTYPE_DOUBLE: FINISH(double, double, fdiv, SAME); break;
    case FERRY_DTYPE_FLOAT16: FINISH(uint16_t, double, fdiv, TO_F16); break;
    case FERRY_DTYPE_BFLOAT16: FINISH(uint16_t, double, fdiv, TO_BF16); break;
    case FERRY_DTYPE_INT32: FINISH(int32_t, int64_t, sdiv, TO_I32); break;
    case FERRY_DTYPE_INT64: FINISH(int64_t, int64_t, sdiv, SAME); break;
    case FERRY_DTYPE_UINT32: FINISH(uint32_t, uint64_t, udiv, TO_U32); break;
    case FERRY_DTYPE_UINT64: FINISH(uint64_t, uint64_t, udiv, SAME); break;
    default: break;
    }
}

static ferry_status *reduce_run(eng_op_call *call)
{
    const reduce_state *s = call->state;
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    uint32_t mask;
    bool copy;
    ferry_status *st = reduced_dims(call, &mask, &copy);
    if (st) return st;
    if (copy) {
        size_t bytes = eng_nbytes(in);
        if (bytes && out->data != in->data) memcpy(out->data, in->data, bytes);
        return NULL;
    }
    int64_t n_out = eng_numel(out);
    if (n_out == 0) return NULL;
    memset(call->workspace, 0, (size_t)n_out * 8);

    /* Merge the dims into alternating runs of kept and reduced axes, dropping size-1 dims. */
    int64_t d[R], count = 1;
    bool red[R];
    int n = 0;
    bool empty = false;
    for (int i = 0; i < in->rank; i++) {
        bool r = (mask >> i) & 1u;
        if (r) count *= in->dims[i];
        if (in->dims[i] == 0) empty = true;
        if (in->dims[i] == 1) continue;
        if (n > 0 && red[n - 1] == r) {
            d[n - 1] *= in->dims[i];
        } else {
            d[n] = in->dims[i];
            red[n] = r;
            n++;
        }
    }
    if (!empty) {
        if (n == 0) { /* one element */
            d[0] = 1;
            red[0] = false;
            n = 1;
        }
        /* Element strides in the input and accumulator strides (0 along reduced runs). */
        int64_t is[R], as[R], si = 1, sa = 1;
        for (int i = n - 1; i >= 0; i--) {
            is[i] = si;
            si *= d[i];
            as[i] = red[i] ? 0 : sa;
            if (!red[i]) sa *= d[i];
        }
        size_t esz = ferry_dtype_size(in->dtype);
        const char *src = in->data;
        char *acc = call->workspace;
        int64_t idx[R] = {0}, ioff = 0, aoff = 0, inner = d[n - 1];
        for (;;) {
            accumulate(in->dtype, src + ioff * (int64_t)esz, inner, red[n - 1], acc + aoff * 8);
            int i = n - 2;
            for (; i >= 0; i--) {
                if (++idx[i] < d[i]) {
                    ioff += is[i];
                    aoff += as[i];
                    break;
                }
                idx[i] = 0;
                ioff -= is[i] * (d[i] - 1);
                aoff -= as[i] * (d[i] - 1);
            }
            if (i < 0) break;
        }
    }
    finish(in->dtype, call->workspace, n_out, s->mean, count, out->data);
    return NULL;
}

static const eng_op ops[] = {
    {"", "ReduceSum", 1, 0, reduce_sum_init, free, reduce_infer, reduce_run},
    {"", "ReduceSum", 13, 1u << 1, reduce_sum_init, free, reduce_infer, reduce_run},
    {"", "ReduceMean", 1, 0, reduce_mean_init, free, reduce_infer, reduce_run},
    {"", "ReduceMean", 18, 1u << 1, reduce_mean_init, free, reduce_infer, reduce_run},
};

const eng_op_table eng_ops_reduce = {ops, sizeof(ops) / sizeof(ops[0])};
