/* unary.c - pointwise math and activations, and a few operators along axes.
 *
 * Pointwise: the trigonometric and hyperbolic functions, Ceil Floor Round Sign Reciprocal
 * IsNaN IsInf, the activations Softplus Softsign Elu Selu Celu ThresholdedRelu HardSigmoid
 * HardSwish Shrink (and Mish, which is opset 18), and PRelu, whose slope broadcasts to the
 * input's shape. Kernels are generated per dtype by the macros of unary_common.h; float16 and
 * bfloat16 compute in float. Round, Floor and Ceil on float use the 2^23 trick rather than
 * rintf/floorf, which are calls on baseline x86-64 and would stop GCC vectorising the loop;
 * the transcendental functions call libm, and the exp-based activations use expm1 for its
 * accuracy near 0.
 *
 * Along axes: Hardmax, LpNormalization, MeanVarianceNormalization, GlobalLpPool and Det read
 * and write elements through core_load_f64/core_store_f64 and compute in double; they are
 * rare and never on a model's hot path. Einsum lives in unary_einsum.h.
 */
#include "engine/ops/elementwise_common.h"

#include "engine/kernels/gemm.h"

#include <math.h>

/* Attributes of the parameterised pointwise operators, passed to their kernels. */
typedef struct act_params {
    float a, b;     /* alpha/beta, lambd/bias ... */
    bool neg, pos;  /* IsInf's detect_negative / detect_positive */
    ferry_dtype dt; /* run: the input's dtype, for the generic integer kernels */
} act_params;

/* ---------------------------------------------------------------------------------------
 * Scalar helpers
 * ------------------------------------------------------------------------------------- */

#define LIBM(NAME, FN)                                                                             \
    static inline float NAME##_f(float x)                                                          \
    {                                                                                              \
        return FN##f(x);                                                                           \
    }                                                                                              \
    static inline double NAME##_d(double x)                                                        \
    {                                                                                              \
        return FN(x);                                                                              \
    }
LIBM(acos, acos)
LIBM(acosh, acosh)
LIBM(asin, asin)
LIBM(asinh, asinh)
LIBM(atan, atan)
LIBM(atanh, atanh)
LIBM(cos, cos)
LIBM(cosh, cosh)
LIBM(sin, sin)
LIBM(sinh, sinh)
LIBM(tan, tan)

/* Round half to even: adding and subtracting 2^23 leaves the FPU's round-to-nearest-even
 * result for |x| < 2^23; larger floats are integers already, and NaN passes through. */
static inline float round_f(float x)
{
    float ax = fabsf(x);
    float r = copysignf((ax + 8388608.0f) - 8388608.0f, x);
    return ew_sel(ax < 8388608.0f, r, x);
}
static inline float floor_f(float x)
{
    float r = round_f(x);
    return ew_sel(r > x, r - 1.0f, r);
}
static inline float ceil_f(float x)
{
    float r = round_f(x);
    return ew_sel(r < x, r + 1.0f, r);
}
static inline double round_d(double x)
{
    return nearbyint(x);
}
static inline double floor_d(double x)
{
    return floor(x);
}
static inline double ceil_d(double x)
{
    return ceil(x);
}

/* Float helpers written once for float and double. Sign keeps zeros and NaN as they are. */
#define FLOAT_HELPERS(CS, T, SFX)                                                                  \
    static inline T recip_##CS(T x)                                                                \
    {                                                                                              \
        return (T)1 / x;                                                                           \
    }                                                                                              \
    static inline T sign_##CS(T x)                                                                 \
    {                                                                                              \
        return x > 0 ? (T)1 : x < 0 ? (T)-1 : x;                                                   \
    }                                                                                              \
    static inline uint8_t isnan_##CS(T x)                                                          \
    {                                                                                              \
        return x != x;                                                                             \
    }                                                                                              \
    static inline uint8_t isinf_##CS(T x, bool neg, bool pos)                                      \
    {                                                                                              \
        return (neg && x == -(T)INFINITY) || (pos && x == (T)INFINITY);                            \
    }                                                                                              \
    static inline T softsign_##CS(T x)                                                             \
    {                                                                                              \
        return x / ((T)1 + fabs##SFX(x));                                                          \
    }                                                                                              \
    /* log(1 + exp(x)) without overflowing exp for large x. */                                     \
    static inline T softplus_##CS(T x)                                                             \
    {                                                                                              \
        return (x > 0 ? x : 0) + log1p##SFX(exp##SFX(-fabs##SFX(x)));                              \
    }                                                                                              \
    static inline T elu_##CS(T x, T a, T b)                                                        \
    {                                                                                              \
        (void)b;                                                                                   \
        return x < 0 ? a * expm1##SFX(x) : x;                                                      \
    }                                                                                              \
    /* A is alpha, B gamma. */                                                                     \
    static inline T selu_##CS(T x, T a, T b)                                                       \
    {                                                                                              \
        return x > 0 ? b * x : b * a * expm1##SFX(x);                                              \
    }                                                                                              \
    static inline T celu_##CS(T x, T a, T b)                                                       \
    {                                                                                              \
        (void)b;                                                                                   \
        return x > 0 ? x : a * expm1##SFX(x / a);                                                  \
    }                                                                                              \
    static inline T threlu_##CS(T x, T a, T b)                                                     \
    {                                                                                              \
        (void)b;                                                                                   \
        return x > a ? x : 0;                                                                      \
    }                                                                                              \
    /* Clamped with comparisons rather than fmin/fmax so that NaN propagates. */                   \
    static inline T hsig_##CS(T x, T a, T b)                                                       \
    {                                                                                              \
        T v = a * x + b;                                                                           \
        v = v > 1 ? (T)1 : v;                                                                      \
        return v < 0 ? (T)0 : v;                                                                   \
    }                                                                                              \
    static inline T hswish_##CS(T x)                                                               \
    {                                                                                              \
        return x * hsig_##CS(x, (T)1 / 6, (T)0.5);                                                 \
    }                                                                                              \
    static inline T mish_##CS(T x)                                                                 \
    {                                                                                              \
        return x * tanh##SFX(softplus_##CS(x));                                                    \
    }                                                                                              \
    /* A is lambd, B bias. */                                                                      \
    static inline T shrink_##CS(T x, T a, T b)                                                     \
    {                                                                                              \
        return x < -a ? x + b : x > a ? x - b : (T)0;                                              \
    }                                                                                              \
    static inline T prelu_##CS(T x, T s)                                                           \
    {                                                                                              \
        return x < 0 ? x * s : x;                                                                  \
    }
FLOAT_HELPERS(f, float, f)
FLOAT_HELPERS(d, double, )

/* Integer Sign and PRelu; multiplication wraps through the unsigned type U. */
#define SINT_HELPERS(CS, T, U)                                                                     \
    static inline T sign_##CS(T x)                                                                 \
    {                                                                                              \
        return (T)((x > 0) - (x < 0));                                                             \
    }                                                                                              \
    static inline T prelu_##CS(T x, T s)                                                           \
    {                                                                                              \
        return x < 0 ? (T)((U)x * (U)s) : x;                                                       \
    }
#define UINT_HELPERS(CS, T)                                                                        \
    static inline T sign_##CS(T x)                                                                 \
    {                                                                                              \
        return x > 0;                                                                              \
    }                                                                                              \
    static inline T prelu_##CS(T x, T s)                                                           \
    {                                                                                              \
        (void)s;                                                                                   \
        return x;                                                                                  \
    }
SINT_HELPERS(i8, int8_t, uint32_t)
SINT_HELPERS(i16, int16_t, uint32_t)
SINT_HELPERS(i32, int32_t, uint32_t)
SINT_HELPERS(i64, int64_t, uint64_t)
UINT_HELPERS(u8, uint8_t)
UINT_HELPERS(u16, uint16_t)
UINT_HELPERS(u32, uint32_t)
UINT_HELPERS(u64, uint64_t)

/* ---------------------------------------------------------------------------------------
 * Kernel tables
 * ------------------------------------------------------------------------------------- */

/* Map with the two float parameters of act_params. */
#define DEF_PMAP(OP, DT, T, SFX, CS, LD, ST)                                                       \
    static void map_##OP##_##SFX(void *o_, const void *a_, int64_t n, const void *p)               \
    {                                                                                              \
        const act_params *ap = p;                                                                  \
        CT_##CS pa = (CT_##CS)ap->a, pb = (CT_##CS)ap->b;                                          \
        T *o = o_;                                                                                 \
        const T *x = a_;                                                                           \
        EW_VLOOP(T, o, n, ST(OP##_##CS(LD(x[i]), pa, pb)));                                        \
    }

#define DEF_ISINF(OP, DT, T, SFX, CS, LD, ST)                                                      \
    static void map_##OP##_##SFX(void *o_, const void *a_, int64_t n, const void *p)               \
    {                                                                                              \
        const act_params *ap = p;                                                                  \
        bool neg = ap->neg, pos = ap->pos;                                                         \
        uint8_t *o = o_;                                                                           \
        const T *x = a_;                                                                           \
        EW_VLOOP(uint8_t, o, n, isinf_##CS(LD(x[i]), neg, pos));                                   \
    }

/* Shrink on integers: compared and shifted in double, as the float attributes require, and
 * stored back saturated (core_store_f64) so that nothing overflows. */
static void map_shrink_int(void *o, const void *x, int64_t n, const void *p)
{
    const act_params *ap = p;
    double lambd = ap->a, bias = ap->b;
    for (int64_t i = 0; i < n; i++) {
        double v = core_load_f64(ap->dt, x, i);
        core_store_f64(ap->dt, o, i, v < -lambd ? v + bias : v > lambd ? v - bias : 0.0);
    }
}
#define SHRINK_INT_ENTRY(OP, DT, T, SFX, CS, LD, ST) [FERRY_DTYPE_##DT] = map_shrink_int,

FLOAT_TYPES(DEF_MAP, acos)
FLOAT_TYPES(DEF_MAP, acosh)
FLOAT_TYPES(DEF_MAP, asin)
FLOAT_TYPES(DEF_MAP, asinh)
FLOAT_TYPES(DEF_MAP, atan)
FLOAT_TYPES(DEF_MAP, atanh)
FLOAT_TYPES(DEF_MAP, cos)
FLOAT_TYPES(DEF_MAP, cosh)
FLOAT_TYPES(DEF_MAP, sin)
FLOAT_TYPES(DEF_MAP, sinh)
FLOAT_TYPES(DEF_MAP, tan)
FLOAT_TYPES(DEF_MAP, ceil)
FLOAT_TYPES(DEF_MAP, floor)
FLOAT_TYPES(DEF_MAP, round)
FLOAT_TYPES(DEF_MAP, recip)
FLOAT_TYPES(DEF_MAP, softsign)
FLOAT_TYPES(DEF_MAP, softplus)
FLOAT_TYPES(DEF_MAP, hswish)
FLOAT_TYPES(DEF_MAP, mish)
NUM_TYPES(DEF_MAP, sign)
FLOAT_TYPES(DEF_PRED, isnan)
FLOAT_TYPES(DEF_ISINF, isinf)
FLOAT_TYPES(DEF_PMAP, elu)
FLOAT_TYPES(DEF_PMAP, selu)
FLOAT_TYPES(DEF_PMAP, celu)
FLOAT_TYPES(DEF_PMAP, threlu)
FLOAT_TYPES(DEF_PMAP, hsig)
FLOAT_TYPES(DEF_PMAP, shrink)
NUM_TYPES(DEF_BIN, prelu)

static const map_fn acos_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, acos)};
static const map_fn acosh_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, acosh)};
static const map_fn asin_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, asin)};
static const map_fn asinh_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, asinh)};
static const map_fn atan_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, atan)};
static const map_fn atanh_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, atanh)};
static const map_fn cos_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, cos)};
static const map_fn cosh_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, cosh)};
static const map_fn sin_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, sin)};
static const map_fn sinh_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, sinh)};
static const map_fn tan_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, tan)};
static const map_fn ceil_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, ceil)};
static const map_fn floor_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, floor)};
static const map_fn round_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, round)};
static const map_fn recip_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, recip)};
static const map_fn softsign_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, softsign)};
static const map_fn softplus_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, softplus)};
static const map_fn hswish_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, hswish)};
static const map_fn mish_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, mish)};
static const map_fn sign_maps[FERRY_DTYPE_COUNT] = {NUM_TYPES(MAP_ENTRY, sign)};
static const map_fn isnan_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, isnan)};
static const map_fn isinf_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, isinf)};
static const map_fn elu_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, elu)};
static const map_fn selu_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, selu)};
static const map_fn celu_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, celu)};
static const map_fn threlu_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, threlu)};
static const map_fn hsig_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, hsig)};
static const map_fn shrink_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, shrink)
                                                          INT_TYPES(SHRINK_INT_ENTRY, 0)};
static const row_fn prelu_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, prelu)};

/* ---------------------------------------------------------------------------------------
 * Pointwise operators
 * ------------------------------------------------------------------------------------- */

/* Everything a pointwise operator's infer and run need: its kernels, whether the output is
 * bool (the predicates), and the work grain. The state, when init stores one, is act_params. */
typedef struct pointwise {
    const map_fn *maps;
    bool bool_out;
    int64_t grain;
} pointwise;

static ferry_status *pointwise_infer(eng_op_call *c, const pointwise *pw)
{
    ferry_status *st = check_io(c, 1, 1);
    if (st) return st;
    const eng_tensor *x = c->in[0];
    if (!dt_valid(x->dtype) || !pw->maps[x->dtype]) return eng_bad_dtype("input", x->dtype);
    eng_same_shape(c->out[0], x);
    if (pw->bool_out) c->out[0]->dtype = FERRY_DTYPE_BOOL;
    return NULL;
}

static ferry_status *pointwise_run(eng_op_call *c, const pointwise *pw)
{
    const eng_tensor *x = c->in[0];
    act_params ap = {0};
    if (c->state) ap = *(const act_params *)c->state;
    ap.dt = x->dtype;
    map_apply(c, c->out[0], x, pw->maps[x->dtype], &ap, pw->grain);
    return NULL;
}

#define POINTWISE(NAME, BOOL_OUT, GRAIN)                                                           \
    static const pointwise NAME##_pw = {NAME##_maps, BOOL_OUT, GRAIN};                             \
    static ferry_status *NAME##_infer(eng_op_call *c)                                              \
    {                                                                                              \
        return pointwise_infer(c, &NAME##_pw);                                                     \
    }                                                                                              \
    static ferry_status *NAME##_run(eng_op_call *c)                                                \
    {                                                                                              \
        return pointwise_run(c, &NAME##_pw);                                                       \
    }
POINTWISE(acos, false, GRAIN_MATH)
POINTWISE(acosh, false, GRAIN_MATH)
POINTWISE(asin, false, GRAIN_MATH)
POINTWISE(asinh, false, GRAIN_MATH)
POINTWISE(atan, false, GRAIN_MATH)
POINTWISE(atanh, false, GRAIN_MATH)
POINTWISE(cos, false, GRAIN_MATH)
POINTWISE(cosh, false, GRAIN_MATH)
POINTWISE(sin, false, GRAIN_MATH)
POINTWISE(sinh, false, GRAIN_MATH)
POINTWISE(tan, false, GRAIN_MATH)
POINTWISE(ceil, false, GRAIN_CHEAP)
POINTWISE(floor, false, GRAIN_CHEAP)
POINTWISE(round, false, GRAIN_CHEAP)
POINTWISE(recip, false, GRAIN_CHEAP)
POINTWISE(softsign, false, GRAIN_CHEAP)
POINTWISE(softplus, false, GRAIN_MATH)
POINTWISE(hswish, false, GRAIN_CHEAP)
POINTWISE(mish, false, GRAIN_MATH)
POINTWISE(sign, false, GRAIN_CHEAP)
POINTWISE(isnan, true, GRAIN_CHEAP)
POINTWISE(isinf, true, GRAIN_CHEAP)
POINTWISE(elu, false, GRAIN_MATH)
POINTWISE(selu, false, GRAIN_MATH)
POINTWISE(celu, false, GRAIN_MATH)
POINTWISE(threlu, false, GRAIN_CHEAP)
POINTWISE(hsig, false, GRAIN_CHEAP)
POINTWISE(shrink, false, GRAIN_CHEAP)

/* Reads a float attribute into *OUT (DFLT when absent), rejecting NaN and infinities. */
static ferry_status *finite_attr(const eng_node *node, const char *name, float dflt, float *out)
{
    *out = eng_attr_float(node, name, dflt);
    if (!isfinite(*out))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute %s must be a finite number", name);
    return NULL;
}

/* Inits storing act_params {a, b} from two float attributes. */
static ferry_status *two_attrs(const eng_node *node, const char *na, float da, const char *nb,
                               float db, void **state)
{
    act_params ap = {0};
    ferry_status *st = finite_attr(node, na, da, &ap.a);
    if (!st && nb) st = finite_attr(node, nb, db, &ap.b);
    if (st) return st;
    return save_state(&ap, sizeof(ap), state);
}

static ferry_status *elu_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return two_attrs(node, "alpha", 1.0f, NULL, 0, state);
}

static ferry_status *selu_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return two_attrs(node, "alpha", 1.67326319217681884765625f, "gamma", 1.05070102214813232421875f,
                     state);
}

static ferry_status *celu_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    ferry_status *st = two_attrs(node, "alpha", 1.0f, NULL, 0, state);
    if (!st && ((act_params *)*state)->a == 0) {
        free(*state);
        *state = NULL;
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute alpha must not be 0");
    }
    return st;
}

static ferry_status *threlu_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return two_attrs(node, "alpha", 1.0f, NULL, 0, state);
}

static ferry_status *hsig_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return two_attrs(node, "alpha", 0.2f, "beta", 0.5f, state);
}

static ferry_status *shrink_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return two_attrs(node, "lambd", 0.5f, "bias", 0.0f, state);
}

static ferry_status *isinf_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    act_params ap = {0};
    ap.neg = eng_attr_int(node, "detect_negative", 1) != 0;
    ap.pos = eng_attr_int(node, "detect_positive", 1) != 0;
    return save_state(&ap, sizeof(ap), state);
}

/* ---------------------------------------------------------------------------------------
 * PRelu: slope broadcasts to X's shape (unidirectionally). Before opset 7 a 1-D slope of X's
 * channel count applies along axis 1, as the old "one value per channel" wording meant.
 * ------------------------------------------------------------------------------------- */

static ferry_status *prelu_slope(const eng_op_call *c, eng_tensor *view)
{
    const eng_tensor *x = c->in[0], *s = c->in[1];
    *view = *s;
    if (c->opset < 7 && s->rank == 1 && x->rank >= 2 && s->dims[0] != 1 &&
        s->dims[0] == x->dims[1]) {
        view->rank = x->rank;
        for (int d = 0; d < x->rank; d++) view->dims[d] = d == 1 ? s->dims[0] : 1;
    }
    eng_tensor shape = {0};
    const eng_tensor *ins[2] = {x, view};
    ferry_status *st = eng_broadcast_shapes(&shape, ins, 2);
    bool same = !st && shape.rank == x->rank;
    for (int d = 0; same && d < x->rank; d++) same = shape.dims[d] == x->dims[d];
    ferry_status_free(st);
    if (!same) {
        char s1[128], s2[128];
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input slope: shape %s does not broadcast to input X's %s",
                          eng_shape_str(s, s1, sizeof(s1)), eng_shape_str(x, s2, sizeof(s2)));
    }
    return NULL;
}

static ferry_status *prelu_infer(eng_op_call *c)
{
    ferry_status *st = check_io(c, 2, 2);
    if (st) return st;
    const eng_tensor *x = c->in[0], *s = c->in[1];
    if (!dt_valid(x->dtype) || !prelu_rows[x->dtype]) return eng_bad_dtype("input X", x->dtype);
    if (s->dtype != x->dtype) return dtype_mismatch("input slope", s->dtype, "input X", x->dtype);
    eng_tensor view;
    st = prelu_slope(c, &view);
    if (st) return st;
    eng_same_shape(c->out[0], x);
    return NULL;
}

static ferry_status *prelu_run(eng_op_call *c)
{
    eng_tensor view;
    ferry_status *st = prelu_slope(c, &view);
    if (st) return st;
    const eng_tensor *ins[2] = {c->in[0], &view};
    broadcast_apply(c, c->out[0], ins, 2, prelu_rows[c->in[0]->dtype], NULL, GRAIN_CHEAP);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Operators along an axis. The tensor is viewed as [outer, n, inner] and each of the
 * outer * inner columns of n elements (stride inner) is handled on its own; a column is read
 * in full before it is written, so running in place is safe.
 * ------------------------------------------------------------------------------------- */

static bool is_real(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_FLOAT16 ||
           dt == FERRY_DTYPE_BFLOAT16;
}

static ferry_status *real_input(const eng_op_call *c)
{
    ferry_status *st = check_io(c, 1, 1);
    if (st) return st;
    if (!is_real(c->in[0]->dtype)) return eng_bad_dtype("input", c->in[0]->dtype);
    return NULL;
}

typedef struct axis_attrs {
    int64_t axis;
    int64_t p; /* LpNormalization */
} axis_attrs;

typedef struct columns {
    int64_t outer, n, inner;
} columns;

static ferry_status *hardmax_init(const eng_node *node, int opset, void **state)
{
    axis_attrs a = {eng_attr_int(node, "axis", opset < 13 ? 1 : -1), 0};
    return save_state(&a, sizeof(a), state);
}

/* Before opset 13 the input is coerced to 2-D at the axis ([outer, everything after]); from
 * 13 the operation runs along the axis alone. */
static ferry_status *hardmax_columns(const eng_op_call *c, columns *col)
{
    const axis_attrs *a = c->state;
    const eng_tensor *x = c->in[0];
    int axis;
    if (c->opset < 13 && a->axis == x->rank) {
        axis = x->rank; /* coerced to [numel, 1] */
    } else {
        ferry_status *st = eng_axis(a->axis, x->rank, &axis);
        if (st) return st;
    }
    col->outer = dims_prod(x->dims, 0, axis);
    if (c->opset < 13) {
        col->n = dims_prod(x->dims, axis, x->rank);
        col->inner = 1;
    } else {
        col->n = x->dims[axis];
        col->inner = dims_prod(x->dims, axis + 1, x->rank);
    }
    return NULL;
}

static ferry_status *hardmax_infer(eng_op_call *c)
{
    ferry_status *st = real_input(c);
    if (st) return st;
    columns col;
    st = hardmax_columns(c, &col);
    if (st) return st;
    eng_same_shape(c->out[0], c->in[0]);
    return NULL;
}

static ferry_status *hardmax_run(eng_op_call *c)
{
    columns col;
    ferry_status *st = hardmax_columns(c, &col);
    if (st) return st;
    ferry_dtype dt = c->in[0]->dtype;
    const void *x = c->in[0]->data;
    void *y = c->out[0]->data;
    for (int64_t o = 0; o < col.outer; o++) {
        for (int64_t i = 0; i < col.inner; i++) {
            int64_t base = o * col.n * col.inner + i, best = 0;
            if (col.n == 0) continue;
            /* The first maximum wins; NaN counts as the largest value, as in numpy.argmax. */
            double bv = core_load_f64(dt, x, base);
            for (int64_t j = 1; j < col.n && bv == bv; j++) {
                double v = core_load_f64(dt, x, base + j * col.inner);
                if (v > bv || v != v) {
                    bv = v;
                    best = j;
                }
            }
            for (int64_t j = 0; j < col.n; j++)
                core_store_f64(dt, y, base + j * col.inner, j == best ? 1.0 : 0.0);
        }
    }
    return NULL;
}

/* LpNormalization: x / ||column||_p with p 1 or 2; an all-zero column stays zero. */
static ferry_status *lpnorm_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    axis_attrs a = {eng_attr_int(node, "axis", -1), eng_attr_int(node, "p", 2)};
    if (a.p != 1 && a.p != 2)
        return core_error(FERRY_ERR_UNSUPPORTED, "attribute p must be 1 or 2, got %lld",
                          (long long)a.p);
    return save_state(&a, sizeof(a), state);
}

static ferry_status *lpnorm_columns(const eng_op_call *c, columns *col)
{
    const axis_attrs *a = c->state;
    const eng_tensor *x = c->in[0];
    int axis;
    ferry_status *st = eng_axis(a->axis, x->rank, &axis);
    if (st) return st;
    col->outer = dims_prod(x->dims, 0, axis);
    col->n = x->rank ? x->dims[axis] : 1;
    col->inner = dims_prod(x->dims, axis + 1, x->rank);
    return NULL;
}

static ferry_status *lpnorm_infer(eng_op_call *c)
{
    ferry_status *st = real_input(c);
    if (st) return st;
    columns col;
    st = lpnorm_columns(c, &col);
    if (st) return st;
    eng_same_shape(c->out[0], c->in[0]);
    return NULL;
}

static ferry_status *lpnorm_run(eng_op_call *c)
{
    const axis_attrs *a = c->state;
    columns col;
    ferry_status *st = lpnorm_columns(c, &col);
    if (st) return st;
    ferry_dtype dt = c->in[0]->dtype;
    const void *x = c->in[0]->data;
    void *y = c->out[0]->data;
    for (int64_t o = 0; o < col.outer; o++) {
        for (int64_t i = 0; i < col.inner; i++) {
            int64_t base = o * col.n * col.inner + i;
            double norm = 0;
            for (int64_t j = 0; j < col.n; j++) {
                double v = core_load_f64(dt, x, base + j * col.inner);
                norm += a->p == 1 ? fabs(v) : v * v;
            }
            if (a->p == 2) norm = sqrt(norm);
            double scale = norm > 0 ? 1.0 / norm : 0.0;
            for (int64_t j = 0; j < col.n; j++) {
                int64_t at = base + j * col.inner;
                core_store_f64(dt, y, at, core_load_f64(dt, x, at) * scale);
            }
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * GlobalLpPool: y[n, c] = (sum over the spatial positions of |x|^p)^(1/p). Opset 1 has a
 * float p, opset 2 an int.
 * ------------------------------------------------------------------------------------- */

typedef struct lppool_attrs {
    double p;
} lppool_attrs;

static ferry_status *lppool_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    lppool_attrs a = {2.0};
    eng_attr_type kind = eng_attr_kind(node, "p");
    if (kind == ENG_ATTR_FLOAT)
        a.p = eng_attr_float(node, "p", 2.0f);
    else if (kind == ENG_ATTR_INT)
        a.p = (double)eng_attr_int(node, "p", 2);
    else if (kind != ENG_ATTR_UNDEFINED)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute p must be a number");
    if (!(a.p > 0) || !isfinite(a.p))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute p must be positive, got %g", a.p);
    return save_state(&a, sizeof(a), state);
}

static ferry_status *lppool_infer(eng_op_call *c)
{
    ferry_status *st = real_input(c);
    if (st) return st;
    const eng_tensor *x = c->in[0];
    if (x->rank < 2) {
        char s[128];
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X: expected [N, C, spatial...], got shape %s",
                          eng_shape_str(x, s, sizeof(s)));
    }
    eng_same_shape(c->out[0], x);
    for (int d = 2; d < x->rank; d++) c->out[0]->dims[d] = 1;
    return NULL;
}

static ferry_status *lppool_run(eng_op_call *c)
{
    double p = ((const lppool_attrs *)c->state)->p;
    const eng_tensor *x = c->in[0];
    int64_t planes = x->dims[0] * x->dims[1], size = dims_prod(x->dims, 2, x->rank);
    for (int64_t k = 0; k < planes; k++) {
        double s = 0;
        for (int64_t j = 0; j < size; j++) {
            double v = fabs(core_load_f64(x->dtype, x->data, k * size + j));
            s += p == 1 ? v : p == 2 ? v * v : pow(v, p);
        }
        s = p == 1 ? s : p == 2 ? sqrt(s) : pow(s, 1.0 / p);
        core_store_f64(x->dtype, c->out[0]->data, k, s);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * MeanVarianceNormalization: (x - mean) / (std + 1e-9) with mean and std over `axes` (by
 * default [0, 2, 3]: per channel), the ONNX function's formula. The statistics of each kept
 * position live in the workspace as doubles.
 * ------------------------------------------------------------------------------------- */

typedef struct mvn_attrs {
    int n_axes;
    int64_t axes[FERRY_MAX_RANK];
} mvn_attrs;

static ferry_status *mvn_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    mvn_attrs a = {3, {0, 2, 3}};
    size_t n;
    const int64_t *axes = eng_attr_ints(node, "axes", &n);
    if (axes) {
        if (n > FERRY_MAX_RANK)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute axes has %zu entries; Ferry "
                              "supports tensors of rank %d at most",
                              n, FERRY_MAX_RANK);
        a.n_axes = (int)n;
        memcpy(a.axes, axes, n * sizeof(*axes));
    }
    return save_state(&a, sizeof(a), state);
}

/* REDUCED[d] is true for the dimensions the statistics run over; *KEPT is the number of
 * statistics (the product of the other dimensions). */
static ferry_status *mvn_reduced(const eng_op_call *c, bool *reduced, int64_t *kept)
{
    const mvn_attrs *a = c->state;
    const eng_tensor *x = c->in[0];
    for (int d = 0; d < x->rank; d++) reduced[d] = false;
    for (int i = 0; i < a->n_axes; i++) {
        int axis;
        ferry_status *st = eng_axis(a->axes[i], x->rank, &axis);
        if (st) return core_error_wrap(st, "attribute axes");
        if (reduced[axis])
            return core_error(FERRY_ERR_INVALID_MODEL, "attribute axes lists axis %d twice", axis);
        reduced[axis] = true;
    }
    *kept = 1;
    for (int d = 0; d < x->rank; d++)
        if (!reduced[d]) *kept *= x->dims[d];
    return NULL;
}

static ferry_status *mvn_infer(eng_op_call *c)
{
    ferry_status *st = real_input(c);
    if (st) return st;
    bool reduced[FERRY_MAX_RANK];
    int64_t kept;
    st = mvn_reduced(c, reduced, &kept);
    if (st) return st;
    eng_same_shape(c->out[0], c->in[0]);
    c->workspace_size = (size_t)kept * 2 * sizeof(double);
    return NULL;
}

/* Walks every element of a tensor in order, tracking the flat index of its statistic. */
typedef struct stat_walk {
    int rank;
    int64_t dims[FERRY_MAX_RANK], kstride[FERRY_MAX_RANK], idx[FERRY_MAX_RANK];
    int64_t key;
} stat_walk;

static void walk_start(stat_walk *w, const eng_tensor *x, const bool *reduced)
{
    w->rank = x->rank;
    int64_t s = 1;
    for (int d = x->rank - 1; d >= 0; d--) {
        w->dims[d] = x->dims[d];
        w->kstride[d] = reduced[d] ? 0 : s;
        if (!reduced[d]) s *= x->dims[d];
        w->idx[d] = 0;
    }
    w->key = 0;
}

static void walk_next(stat_walk *w)
{
    for (int d = w->rank - 1; d >= 0; d--) {
        w->key += w->kstride[d];
        if (++w->idx[d] < w->dims[d]) return;
        w->key -= w->kstride[d] * w->idx[d];
        w->idx[d] = 0;
    }
}

static ferry_status *mvn_run(eng_op_call *c)
{
    const eng_tensor *x = c->in[0];
    bool reduced[FERRY_MAX_RANK];
    int64_t kept, n = eng_numel(x);
    ferry_status *st = mvn_reduced(c, reduced, &kept);
    if (st) return st;
    if (n == 0) return NULL;
    double *mean = c->workspace, *var = mean + kept;
    double count = (double)(n / kept);
    for (int64_t k = 0; k < kept; k++) mean[k] = var[k] = 0;
    stat_walk w;
    walk_start(&w, x, reduced);
    for (int64_t i = 0; i < n; i++, walk_next(&w))
        mean[w.key] += core_load_f64(x->dtype, x->data, i);
    for (int64_t k = 0; k < kept; k++) mean[k] /= count;
    walk_start(&w, x, reduced);
    for (int64_t i = 0; i < n; i++, walk_next(&w)) {
        double v = core_load_f64(x->dtype, x->data, i) - mean[w.key];
        var[w.key] += v * v;
    }
    for (int64_t k = 0; k < kept; k++) var[k] = 1.0 / (sqrt(var[k] / count) + 1e-9);
    walk_start(&w, x, reduced);
    for (int64_t i = 0; i < n; i++, walk_next(&w)) {
        double v = core_load_f64(x->dtype, x->data, i);
        core_store_f64(x->dtype, c->out[0]->data, i, (v - mean[w.key]) * var[w.key]);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Det: determinants of the [..., M, M] matrices by LU decomposition with partial pivoting,
 * in double, one matrix at a time in the workspace.
 * ------------------------------------------------------------------------------------- */

static ferry_status *det_infer(eng_op_call *c)
{
    ferry_status *st = real_input(c);
    if (st) return st;
    const eng_tensor *x = c->in[0];
    int r = x->rank;
    if (r < 2 || x->dims[r - 1] != x->dims[r - 2]) {
        char s[128];
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X: expected square matrices [..., M, M], got shape %s",
                          eng_shape_str(x, s, sizeof(s)));
    }
    c->out[0]->dtype = x->dtype;
    eng_set_shape(c->out[0], r - 2, x->dims);
    c->workspace_size = (size_t)(x->dims[r - 1] * x->dims[r - 1]) * sizeof(double);
    return NULL;
}

static double det_lu(double *a, int64_t m)
{
    double det = 1;
    for (int64_t col = 0; col < m; col++) {
        int64_t piv = col;
        for (int64_t r = col + 1; r < m; r++)
            if (fabs(a[r * m + col]) > fabs(a[piv * m + col])) piv = r;
        if (a[piv * m + col] == 0) return 0;
        if (piv != col) {
            for (int64_t j = 0; j < m; j++) {
                double t = a[col * m + j];
                a[col * m + j] = a[piv * m + j];
                a[piv * m + j] = t;
            }
            det = -det;
        }
        double d = a[col * m + col];
        det *= d;
        for (int64_t r = col + 1; r < m; r++) {
            double f = a[r * m + col] / d;
            for (int64_t j = col + 1; j < m; j++) a[r * m + j] -= f * a[col * m + j];
        }
    }
    return det;
}

static ferry_status *det_run(eng_op_call *c)
{
    const eng_tensor *x = c->in[0];
    int64_t m = x->dims[x->rank - 1], mm = m * m;
    int64_t batch = dims_prod(x->dims, 0, x->rank - 2);
    double *a = c->workspace;
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t i = 0; i < mm; i++) a[i] = core_load_f64(x->dtype, x->data, b * mm + i);
        core_store_f64(x->dtype, c->out[0]->data, b, det_lu(a, m));
    }
    return NULL;
}

#include "engine/ops/unary_einsum.h"

/* ---------------------------------------------------------------------------------------
 * Table
 * ------------------------------------------------------------------------------------- */

#define OP(NAME, SINCE, INIT, FINI, INFER, RUN)                                                    \
    {                                                                                              \
        .domain = "", .name = NAME, .since_version = SINCE, .init = INIT, .fini = FINI,            \
        .infer = INFER, .run = RUN                                                                 \
    }
#define PLAIN(NAME, SINCE, OPN)     OP(NAME, SINCE, NULL, NULL, OPN##_infer, OPN##_run)
#define WITH(NAME, SINCE, OPN, INI) OP(NAME, SINCE, INI, free, OPN##_infer, OPN##_run)

static const eng_op ops[] = {
    PLAIN("Acos", 7, acos),
    PLAIN("Acosh", 9, acosh),
    PLAIN("Asin", 7, asin),
    PLAIN("Asinh", 9, asinh),
    PLAIN("Atan", 7, atan),
    PLAIN("Atanh", 9, atanh),
    PLAIN("Cos", 7, cos),
    PLAIN("Cosh", 9, cosh),
    PLAIN("Sin", 7, sin),
    PLAIN("Sinh", 9, sinh),
    PLAIN("Tan", 7, tan),
    PLAIN("Ceil", 1, ceil),
    PLAIN("Floor", 1, floor),
    PLAIN("Round", 11, round),
    PLAIN("Reciprocal", 1, recip),
    PLAIN("Softsign", 1, softsign),
    PLAIN("Softplus", 1, softplus),
    PLAIN("HardSwish", 14, hswish),
    PLAIN("Mish", 18, mish),
    PLAIN("Sign", 9, sign),
    PLAIN("IsNaN", 9, isnan),
    WITH("IsInf", 10, isinf, isinf_init),
    WITH("Elu", 1, elu, elu_init),
    WITH("Selu", 1, selu, selu_init),
    WITH("Celu", 12, celu, celu_init),
    WITH("ThresholdedRelu", 10, threlu, threlu_init),
    WITH("HardSigmoid", 1, hsig, hsig_init),
    WITH("Shrink", 9, shrink, shrink_init),
    PLAIN("PRelu", 1, prelu),
    WITH("Hardmax", 1, hardmax, hardmax_init),
    WITH("LpNormalization", 1, lpnorm, lpnorm_init),
    WITH("GlobalLpPool", 1, lppool, lppool_init),
    WITH("MeanVarianceNormalization", 9, mvn, mvn_init),
    PLAIN("Det", 11, det),
    WITH("Einsum", 12, einsum, einsum_init),
};

const eng_op_table eng_ops_unary = {ops, sizeof(ops) / sizeof(ops[0])};
