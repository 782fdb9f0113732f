/* reduce.c - the Reduce* family: ReduceSum, ReduceMean, ReduceSumSquare, ReduceL1, ReduceL2,
 * ReduceLogSum, ReduceLogSumExp, ReduceProd, ReduceMax and ReduceMin.
 *
 * The axes come from the "axes" attribute (ReduceSum before opset 13, the others before 18) or
 * from input 1 (ReduceSum 13+, the others 18+), which is flagged in value_inputs; an empty or
 * absent list reduces every axis unless noop_with_empty_axes makes the node a copy.
 *
 * The kernel walks the input once in memory order and folds each element into an accumulator
 * array (the workspace, one 8-byte slot per output element). Accumulators are double for the
 * float types and for the reductions whose result is not an integer (L2, LogSum, LogSumExp);
 * the integer types otherwise keep exact 64-bit integers, wrapping on overflow like the
 * narrower output would. The dims are first merged into alternating runs of kept and reduced
 * axes so the innermost loop is either a long fold of a contiguous run or a vector step into
 * contiguous accumulators. A final pass turns the accumulators into results (mean, sqrt, log)
 * of the output type. LogSumExp takes two passes, the first finding each output's maximum
 * (kept in a second workspace array) so that exp() cannot overflow.
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

typedef enum reduce_kind {
    K_SUM,
    K_MEAN,
    K_SUM_SQUARE,
    K_L1,
    K_L2,
    K_LOG_SUM,
    K_LOG_SUM_EXP,
    K_PROD,
    K_MAX,
    K_MIN,
} reduce_kind;

/* What one pass does with each element x and its accumulator a. */
typedef enum pass_op {
    OP_ADD,        /* a += x */
    OP_ADD_SQUARE, /* a += x * x */
    OP_ADD_ABS,    /* a += |x| */
    OP_ADD_EXP,    /* a += exp(x - m), m being the output's maximum */
    OP_MUL,        /* a *= x */
    OP_MAX,        /* a = max(a, x), NaN winning */
    OP_MIN,        /* a = min(a, x), NaN winning */
} pass_op;

/* How accumulators hold their values. */
typedef enum acc_class {
    ACC_F64, /* double */
    ACC_S64, /* int64 values; sums and products wrap through uint64 to stay defined */
    ACC_U64, /* uint64 */
} acc_class;

typedef struct reduce_state {
    reduce_kind kind;
    bool keepdims;
    bool noop_with_empty_axes;
    bool axes_from_input;
    const int64_t *axes; /* the attribute, owned by the model; NULL when absent */
    size_t n_axes;
} reduce_state;

static ferry_status *reduce_init(const eng_node *node, reduce_kind kind, bool axes_from_input,
                                 void **state)
{
    reduce_state *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->kind = kind;
    s->keepdims = eng_attr_int(node, "keepdims", 1) != 0;
    s->axes_from_input = axes_from_input;
    if (axes_from_input)
        s->noop_with_empty_axes = eng_attr_int(node, "noop_with_empty_axes", 0) != 0;
    else
        s->axes = eng_attr_ints(node, "axes", &s->n_axes);
    *state = s;
    return NULL;
}

/* ReduceSum took its axes as an input from opset 13, every other reduction from 18. */
#define INIT(NAME, KIND, INPUT_OPSET)                                                              \
    static ferry_status *NAME(const eng_node *node, int opset, void **state)                       \
    {                                                                                              \
        return reduce_init(node, KIND, opset >= INPUT_OPSET, state);                               \
    }
INIT(sum_init, K_SUM, 13)
INIT(mean_init, K_MEAN, 18)
INIT(sum_square_init, K_SUM_SQUARE, 18)
INIT(l1_init, K_L1, 18)
INIT(l2_init, K_L2, 18)
INIT(log_sum_init, K_LOG_SUM, 18)
INIT(log_sum_exp_init, K_LOG_SUM_EXP, 18)
INIT(prod_init, K_PROD, 18)
INIT(max_init, K_MAX, 18)
INIT(min_init, K_MIN, 18)

static bool supported(ferry_dtype dt)
{
    return core_dtype_is_float(dt) || core_dtype_is_signed_int(dt) ||
           core_dtype_is_unsigned_int(dt);
}

static acc_class class_of(ferry_dtype dt, reduce_kind kind)
{
    if (core_dtype_is_float(dt) || kind == K_L2 || kind == K_LOG_SUM || kind == K_LOG_SUM_EXP)
        return ACC_F64;
    return core_dtype_is_signed_int(dt) ? ACC_S64 : ACC_U64;
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
        int axis = 0;
        if ((st = eng_axis(axes[i], in->rank, &axis))) return st;
        if (*mask & (1u << axis))
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "axis %d is listed twice", axis);
        *mask |= 1u << axis;
    }
    return NULL;
}

static ferry_status *reduce_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, true);
    if (io) return io;
    const reduce_state *s = call->state;
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    if (!supported(in->dtype)) return eng_bad_dtype("input", in->dtype);
    uint32_t mask = 0;
    bool copy = false;
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
    /* LogSumExp keeps each output's maximum beside its sum. */
    size_t slots = s->kind == K_LOG_SUM_EXP ? 2 : 1;
    call->workspace_size = (size_t)eng_numel(out) * 8 * slots;
    return NULL;
}

/* --- accumulation kernels ------------------------------------------------------------------- */

/* Element transforms XF(x, m) and folds COMB(a, v); M is the output's maximum (OP_ADD_EXP). */
#define XF_ID(x, m)     (x)
#define XF_SQUARE(x, m) ((x) * (x))
#define XF_FABS(x, m)   fabs(x)
/* |x| of an int64 held in a uint64: negating the unsigned value stays defined for INT64_MIN. */
#define XF_SABS(x, m) ((int64_t)(x) < 0 ? 0 - (x) : (x))
#define XF_EXP(x, m)  exp((x) - (m))
#define C_ADD(a, v)   ((a) += (v))
#define C_MUL(a, v)   ((a) *= (v))
#define C_MAX(a, v)                                                                                \
    do {                                                                                           \
        __typeof__(a) v_ = (v);                                                                    \
        if (v_ > (a)) (a) = v_;                                                                    \
    } while (0)
#define C_MIN(a, v)                                                                                \
    do {                                                                                           \
        __typeof__(a) v_ = (v);                                                                    \
        if (v_ < (a)) (a) = v_;                                                                    \
    } while (0)
/* numpy's max and min propagate NaN; once the accumulator is NaN no comparison replaces it. */
#define C_FMAX(a, v)                                                                               \
    do {                                                                                           \
        double v_ = (v);                                                                           \
        (a) = v_ > (a) || v_ != v_ ? v_ : (a);                                                     \
    } while (0)
#define C_FMIN(a, v)                                                                               \
    do {                                                                                           \
        double v_ = (v);                                                                           \
        (a) = v_ < (a) || v_ != v_ ? v_ : (a);                                                     \
    } while (0)
/* Starting values of the three extra partial folds of a contiguous run. */
#define ID_ZERO(s) 0
#define ID_ONE(s)  1
#define ID_SELF(s) (s)

/* Folds the N contiguous elements at SRC into the accumulator(s) at ACC: all into ACC[0] when
 * SUM_RUN, else element j into ACC[j]. Four partial folds break the dependency chain of a
 * long run. */
#define LOOP(T, A, LOAD, XF, COMB, IDENT)                                                          \
    do {                                                                                           \
        const T *restrict p = (const T *)src;                                                      \
        A *restrict a = (A *)acc;                                                                  \
        if (sum_run) {                                                                             \
            A s0 = a[0], s1 = IDENT(s0), s2 = s1, s3 = s1;                                         \
            int64_t j = 0;                                                                         \
            for (; j + 4 <= n; j += 4) {                                                           \
                COMB(s0, XF((A)LOAD(p[j]), m[0]));                                                 \
                COMB(s1, XF((A)LOAD(p[j + 1]), m[0]));                                             \
                COMB(s2, XF((A)LOAD(p[j + 2]), m[0]));                                             \
                COMB(s3, XF((A)LOAD(p[j + 3]), m[0]));                                             \
            }                                                                                      \
            for (; j < n; j++) COMB(s0, XF((A)LOAD(p[j]), m[0]));                                  \
            COMB(s0, s1);                                                                          \
            COMB(s2, s3);                                                                          \
            COMB(s0, s2);                                                                          \
            a[0] = s0;                                                                             \
        } else {                                                                                   \
            for (int64_t j = 0; j < n; j++) COMB(a[j], XF((A)LOAD(p[j]), m[j]));                   \
        }                                                                                          \
    } while (0)

#define DISPATCH_F64(T, LOAD)                                                                      \
    switch (op) {                                                                                  \
    case OP_ADD:                                                                                   \
        LOOP(T, double, LOAD, XF_ID, C_ADD, ID_ZERO);                                              \
        break;                                                                                     \
    case OP_ADD_SQUARE:                                                                            \
        LOOP(T, double, LOAD, XF_SQUARE, C_ADD, ID_ZERO);                                          \
        break;                                                                                     \
    case OP_ADD_ABS:                                                                               \
        LOOP(T, double, LOAD, XF_FABS, C_ADD, ID_ZERO);                                            \
        break;                                                                                     \
    case OP_ADD_EXP:                                                                               \
        LOOP(T, double, LOAD, XF_EXP, C_ADD, ID_ZERO);                                             \
        break;                                                                                     \
    case OP_MUL:                                                                                   \
        LOOP(T, double, LOAD, XF_ID, C_MUL, ID_ONE);                                               \
        break;                                                                                     \
    case OP_MAX:                                                                                   \
        LOOP(T, double, LOAD, XF_ID, C_FMAX, ID_SELF);                                             \
        break;                                                                                     \
    case OP_MIN:                                                                                   \
        LOOP(T, double, LOAD, XF_ID, C_FMIN, ID_SELF);                                             \
        break;                                                                                     \
    }

/* Signed values sign-extend to int64 and then wrap as uint64 for sums and products. */
#define SIGNED(x) ((int64_t)(x))
#define DISPATCH_S64(T)                                                                            \
    switch (op) {                                                                                  \
    case OP_ADD:                                                                                   \
        LOOP(T, uint64_t, SIGNED, XF_ID, C_ADD, ID_ZERO);                                          \
        break;                                                                                     \
    case OP_ADD_SQUARE:                                                                            \
        LOOP(T, uint64_t, SIGNED, XF_SQUARE, C_ADD, ID_ZERO);                                      \
        break;                                                                                     \
    case OP_ADD_ABS:                                                                               \
        LOOP(T, uint64_t, SIGNED, XF_SABS, C_ADD, ID_ZERO);                                        \
        break;                                                                                     \
    case OP_MUL:                                                                                   \
        LOOP(T, uint64_t, SIGNED, XF_ID, C_MUL, ID_ONE);                                           \
        break;                                                                                     \
    case OP_MAX:                                                                                   \
        LOOP(T, int64_t, SIGNED, XF_ID, C_MAX, ID_SELF);                                           \
        break;                                                                                     \
    case OP_MIN:                                                                                   \
        LOOP(T, int64_t, SIGNED, XF_ID, C_MIN, ID_SELF);                                           \
        break;                                                                                     \
    case OP_ADD_EXP:                                                                               \
        break; /* integer LogSumExp accumulates in double */                                       \
    }

#define SAME(x) (x)
#define DISPATCH_U64(T)                                                                            \
    switch (op) {                                                                                  \
    case OP_ADD:                                                                                   \
    case OP_ADD_ABS:                                                                               \
        LOOP(T, uint64_t, SAME, XF_ID, C_ADD, ID_ZERO);                                            \
        break;                                                                                     \
    case OP_ADD_SQUARE:                                                                            \
        LOOP(T, uint64_t, SAME, XF_SQUARE, C_ADD, ID_ZERO);                                        \
        break;                                                                                     \
    case OP_MUL:                                                                                   \
        LOOP(T, uint64_t, SAME, XF_ID, C_MUL, ID_ONE);                                             \
        break;                                                                                     \
    case OP_MAX:                                                                                   \
        LOOP(T, uint64_t, SAME, XF_ID, C_MAX, ID_SELF);                                            \
        break;                                                                                     \
    case OP_MIN:                                                                                   \
        LOOP(T, uint64_t, SAME, XF_ID, C_MIN, ID_SELF);                                            \
        break;                                                                                     \
    case OP_ADD_EXP:                                                                               \
        break;                                                                                     \
    }

#define HALF(x) core_half_to_float(x)
#define BF16(x) core_bf16_to_float(x)

/* One function per input type keeps the switch on the operation outside the loops. */
#define DEFINE_FLOAT(NAME, T, LOAD)                                                                \
    static void NAME(pass_op op, acc_class cls, const void *src, int64_t n, bool sum_run,          \
                     void *acc, const double *m)                                                   \
    {                                                                                              \
        (void)cls;                                                                                 \
        DISPATCH_F64(T, LOAD)                                                                      \
    }
#define DEFINE_INT(NAME, T, DISPATCH)                                                              \
    static void NAME(pass_op op, acc_class cls, const void *src, int64_t n, bool sum_run,          \
                     void *acc, const double *m)                                                   \
    {                                                                                              \
        if (cls == ACC_F64) {                                                                      \
            DISPATCH_F64(T, SAME)                                                                  \
        } else {                                                                                   \
            DISPATCH(T)                                                                            \
        }                                                                                          \
    }

/* Max and min of float input, the common case (softmax, quantisation ranges): compared in
 * the input's precision with select expressions that compile to max/min instructions, and
 * NaN noted on the side instead of branching per element, several times faster than the
 * generic double loop. A NaN seen makes the result NaN, as numpy's. */
#define EXTREME_F32(BETTER)                                                                        \
    do {                                                                                           \
        unsigned nan = 0;                                                                          \
        if (sum_run) {                                                                             \
            if (isnan(a[0])) return;                                                               \
            float m[8], r = (float)a[0];                                                           \
            for (int k = 0; k < 8; k++) m[k] = r;                                                  \
            int64_t j = 0;                                                                         \
            for (; j + 8 <= n; j += 8) {                                                           \
                for (int k = 0; k < 8; k++) {                                                      \
                    float v = p[j + k];                                                            \
                    m[k] = BETTER(v, m[k]) ? v : m[k];                                             \
                    nan |= v != v;                                                                 \
                }                                                                                  \
            }                                                                                      \
            for (; j < n; j++) {                                                                   \
                float v = p[j];                                                                    \
                r = BETTER(v, r) ? v : r;                                                          \
                nan |= v != v;                                                                     \
            }                                                                                      \
            for (int k = 0; k < 8; k++) r = BETTER(m[k], r) ? m[k] : r;                            \
            a[0] = nan ? NAN : r;                                                                  \
            return;                                                                                \
        }                                                                                          \
        for (int64_t j = 0; j < n; j++) {                                                          \
            double v = p[j];                                                                       \
            a[j] = BETTER(v, a[j]) ? v : a[j];                                                     \
            nan |= v != v;                                                                         \
        }                                                                                          \
        if (nan)                                                                                   \
            for (int64_t j = 0; j < n; j++)                                                        \
                if (isnan(p[j])) a[j] = NAN;                                                       \
    } while (0)

#define GREATER(x, y) ((x) > (y))
#define LESS(x, y)    ((x) < (y))

static void max_f32(const float *restrict p, int64_t n, bool sum_run, double *restrict a)
{
    EXTREME_F32(GREATER);
}

static void min_f32(const float *restrict p, int64_t n, bool sum_run, double *restrict a)
{
    EXTREME_F32(LESS);
}

static void acc_f32(pass_op op, acc_class cls, const void *src, int64_t n, bool sum_run, void *acc,
                    const double *m)
{
    (void)cls;
    if (op == OP_MAX)
        max_f32(src, n, sum_run, acc);
    else if (op == OP_MIN)
        min_f32(src, n, sum_run, acc);
    else
        DISPATCH_F64(float, SAME)
}

DEFINE_FLOAT(acc_f64, double, SAME)
DEFINE_FLOAT(acc_f16, uint16_t, HALF)
DEFINE_FLOAT(acc_bf16, uint16_t, BF16)
DEFINE_INT(acc_i8, int8_t, DISPATCH_S64)
DEFINE_INT(acc_i16, int16_t, DISPATCH_S64)
DEFINE_INT(acc_i32, int32_t, DISPATCH_S64)
DEFINE_INT(acc_i64, int64_t, DISPATCH_S64)
DEFINE_INT(acc_u8, uint8_t, DISPATCH_U64)
DEFINE_INT(acc_u16, uint16_t, DISPATCH_U64)
DEFINE_INT(acc_u32, uint32_t, DISPATCH_U64)
DEFINE_INT(acc_u64, uint64_t, DISPATCH_U64)

typedef void (*acc_fn)(pass_op op, acc_class cls, const void *src, int64_t n, bool sum_run,
                       void *acc, const double *m);

static acc_fn kernel_for(ferry_dtype dt)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT:
        return acc_f32;
    case FERRY_DTYPE_DOUBLE:
        return acc_f64;
    case FERRY_DTYPE_FLOAT16:
        return acc_f16;
    case FERRY_DTYPE_BFLOAT16:
        return acc_bf16;
    case FERRY_DTYPE_INT8:
        return acc_i8;
    case FERRY_DTYPE_INT16:
        return acc_i16;
    case FERRY_DTYPE_INT32:
        return acc_i32;
    case FERRY_DTYPE_INT64:
        return acc_i64;
    case FERRY_DTYPE_UINT8:
        return acc_u8;
    case FERRY_DTYPE_UINT16:
        return acc_u16;
    case FERRY_DTYPE_UINT32:
        return acc_u32;
    case FERRY_DTYPE_UINT64:
        return acc_u64;
    default:
        return NULL;
    }
}

/* The input's dims merged into alternating runs of kept and reduced axes. */
typedef struct runs {
    int n;
    int64_t d[R];
    bool red[R];
    int64_t count; /* elements folded into each output */
    bool empty;    /* the input has no elements */
} runs;

static void merge_runs(const eng_tensor *in, uint32_t mask, runs *r)
{
    r->n = 0;
    r->count = 1;
    r->empty = false;
    for (int i = 0; i < in->rank; i++) {
        bool red = (mask >> i) & 1u;
        if (red) r->count *= in->dims[i];
        if (in->dims[i] == 0) r->empty = true;
        if (in->dims[i] == 1) continue;
        if (r->n > 0 && r->red[r->n - 1] == red) {
            r->d[r->n - 1] *= in->dims[i];
        } else {
            r->d[r->n] = in->dims[i];
            r->red[r->n] = red;
            r->n++;
        }
    }
    if (r->n == 0) { /* one element */
        r->d[0] = 1;
        r->red[0] = false;
        r->n = 1;
    }
}

/* One pass of OP over the input IN, folding into the accumulators ACC (M: the maxima). */
static void walk(const eng_tensor *in, const runs *r, pass_op op, acc_class cls, void *acc,
                 const double *m)
{
    acc_fn fn = kernel_for(in->dtype);
    int n = r->n;
    /* Element strides in the input and accumulator strides (0 along reduced runs). */
    int64_t is[R], as[R], si = 1, sa = 1;
    for (int i = n - 1; i >= 0; i--) {
        is[i] = si;
        si *= r->d[i];
        as[i] = r->red[i] ? 0 : sa;
        if (!r->red[i]) sa *= r->d[i];
    }
    size_t esz = ferry_dtype_size(in->dtype);
    const char *src = in->data;
    int64_t idx[R] = {0}, ioff = 0, aoff = 0, inner = r->d[n - 1];
    for (;;) {
        fn(op, cls, src + ioff * (int64_t)esz, inner, r->red[n - 1], (char *)acc + aoff * 8,
           m ? m + aoff : NULL);
        int i = n - 2;
        for (; i >= 0; i--) {
            if (++idx[i] < r->d[i]) {
                ioff += is[i];
                aoff += as[i];
                break;
            }
            idx[i] = 0;
            ioff -= is[i] * (r->d[i] - 1);
            aoff -= as[i] * (r->d[i] - 1);
        }
        if (i < 0) break;
    }
}

/* The smallest and largest values of the integer type DT, as the starting points of Max and
 * Min (an empty reduction yields them, as ONNX specifies). */
static void int_limits(ferry_dtype dt, int64_t *lo, uint64_t *hi)
{
    switch (dt) {
    case FERRY_DTYPE_INT8:
        *lo = INT8_MIN, *hi = INT8_MAX;
        break;
    case FERRY_DTYPE_INT16:
        *lo = INT16_MIN, *hi = INT16_MAX;
        break;
    case FERRY_DTYPE_INT32:
        *lo = INT32_MIN, *hi = INT32_MAX;
        break;
    case FERRY_DTYPE_INT64:
        *lo = INT64_MIN, *hi = INT64_MAX;
        break;
    case FERRY_DTYPE_UINT8:
        *lo = 0, *hi = UINT8_MAX;
        break;
    case FERRY_DTYPE_UINT16:
        *lo = 0, *hi = UINT16_MAX;
        break;
    case FERRY_DTYPE_UINT32:
        *lo = 0, *hi = UINT32_MAX;
        break;
    default:
        *lo = 0, *hi = UINT64_MAX;
        break;
    }
}

/* Sets the N accumulators at ACC to the starting value of OP. */
static void fill_start(void *acc, int64_t n, pass_op op, acc_class cls, ferry_dtype dt)
{
    int64_t lo;
    uint64_t hi;
    int_limits(dt, &lo, &hi);
    if (cls == ACC_F64) {
        double v = op == OP_MUL ? 1.0 : op == OP_MAX ? -INFINITY : op == OP_MIN ? INFINITY : 0.0;
        double *a = acc;
        for (int64_t i = 0; i < n; i++) a[i] = v;
        return;
    }
    uint64_t v = op == OP_MUL ? 1 : op == OP_MAX ? (uint64_t)lo : op == OP_MIN ? hi : 0;
    uint64_t *a = acc;
    for (int64_t i = 0; i < n; i++) a[i] = v;
}

/* The result of one output from its double accumulator A (and maximum M for LogSumExp). */
static inline double result_f64(reduce_kind kind, double a, double m, int64_t count)
{
    switch (kind) {
    case K_MEAN:
        return a / (double)count; /* NaN over no elements, as numpy's mean */
    case K_L2:
        return sqrt(a);
    case K_LOG_SUM:
        return log(a);
    /* An infinite maximum decides the result; subtracting it would give NaN. */
    case K_LOG_SUM_EXP:
        return isinf(m) ? m : m + log(a);
    default:
        return a;
    }
}

#define FINISH_FLOAT(T, STORE)                                                                     \
    do {                                                                                           \
        T *o = dst;                                                                                \
        for (int64_t i = 0; i < n; i++)                                                            \
            o[i] = STORE(result_f64(kind, a[i], m ? m[i] : 0.0, count));                           \
    } while (0)

#define TO_F32(x)  ((float)(x))
#define TO_F16(x)  core_float_to_half((float)(x))
#define TO_BF16(x) core_float_to_bf16((float)(x))

/* Writes the N results to DST in type DT. */
static void finish(ferry_dtype dt, reduce_kind kind, acc_class cls, const void *acc,
                   const double *m, int64_t n, int64_t count, void *dst)
{
    if (cls == ACC_F64) {
        const double *a = acc;
        switch (dt) {
        case FERRY_DTYPE_FLOAT:
            FINISH_FLOAT(float, TO_F32);
            break;
        case FERRY_DTYPE_DOUBLE:
            FINISH_FLOAT(double, SAME);
            break;
        case FERRY_DTYPE_FLOAT16:
            FINISH_FLOAT(uint16_t, TO_F16);
            break;
        case FERRY_DTYPE_BFLOAT16:
            FINISH_FLOAT(uint16_t, TO_BF16);
            break;
        default: /* integer L2, LogSum and LogSumExp: truncated like numpy's astype */
            for (int64_t i = 0; i < n; i++)
                core_store_f64(dt, dst, i, result_f64(kind, a[i], m ? m[i] : 0.0, count));
            break;
        }
        return;
    }
    /* Integer means divide the exact sum; a mean over no elements is 0. */
    const uint64_t *a = acc;
    bool mean = kind == K_MEAN && count > 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t v = a[i];
        if (mean && cls == ACC_S64)
            v = (uint64_t)((int64_t)v / count);
        else if (mean)
            v /= (uint64_t)count;
        core_store_i64(dt, dst, i, (int64_t)v);
    }
}

static ferry_status *reduce_run(eng_op_call *call)
{
    const reduce_state *s = call->state;
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    uint32_t mask = 0;
    bool copy = false;
    ferry_status *st = reduced_dims(call, &mask, &copy);
    if (st) return st;
    if (copy) {
        size_t bytes = eng_nbytes(in);
        if (bytes && out->data != in->data) memcpy(out->data, in->data, bytes);
        return NULL;
    }
    int64_t n_out = eng_numel(out);
    if (n_out == 0) return NULL;
    runs r;
    merge_runs(in, mask, &r);
    acc_class cls = class_of(in->dtype, s->kind);
    void *acc = call->workspace;
    double *maxima = NULL;
    if (s->kind == K_LOG_SUM_EXP) {
        maxima = (double *)call->workspace + n_out;
        fill_start(maxima, n_out, OP_MAX, ACC_F64, in->dtype);
        if (!r.empty) walk(in, &r, OP_MAX, ACC_F64, maxima, NULL);
    }
    pass_op op;
    switch (s->kind) {
    case K_SUM_SQUARE:
    case K_L2:
        op = OP_ADD_SQUARE;
        break;
    case K_L1:
        op = OP_ADD_ABS;
        break;
    case K_LOG_SUM_EXP:
        op = OP_ADD_EXP;
        break;
    case K_PROD:
        op = OP_MUL;
        break;
    case K_MAX:
        op = OP_MAX;
        break;
    case K_MIN:
        op = OP_MIN;
        break;
    default:
        op = OP_ADD;
        break;
    }
    fill_start(acc, n_out, op, cls, in->dtype);
    if (!r.empty) walk(in, &r, op, cls, acc, maxima);
    finish(in->dtype, s->kind, cls, acc, maxima, n_out, r.count, out->data);
    return NULL;
}

/* Each reduction has an attribute entry and, from INPUT_OPSET, an axes-input entry. */
#define REDUCE(NAME, INIT, INPUT_OPSET)                                                            \
    {"", NAME, 1, 0, INIT, free, reduce_infer, reduce_run},                                        \
    {                                                                                              \
        "", NAME, INPUT_OPSET, 1u << 1, INIT, free, reduce_infer, reduce_run                       \
    }

static const eng_op ops[] = {
    REDUCE("ReduceSum", sum_init, 13),
    REDUCE("ReduceMean", mean_init, 18),
    REDUCE("ReduceSumSquare", sum_square_init, 18),
    REDUCE("ReduceL1", l1_init, 18),
    REDUCE("ReduceL2", l2_init, 18),
    REDUCE("ReduceLogSum", log_sum_init, 18),
    REDUCE("ReduceLogSumExp", log_sum_exp_init, 18),
    REDUCE("ReduceProd", prod_init, 18),
    REDUCE("ReduceMax", max_init, 18),
    REDUCE("ReduceMin", min_init, 18),
};

const eng_op_table eng_ops_reduce = {ops, sizeof(ops) / sizeof(ops[0])};
