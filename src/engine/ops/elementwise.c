/* elementwise.c - pointwise arithmetic, math and comparison operators.
 *
 * Add Sub Mul Div Pow Min Max Equal Where broadcast their inputs numpy-style (before opset 7,
 * Add Sub Mul Div Pow Equal use the legacy `broadcast`/`axis` attributes instead). Sqrt Exp Log
 * Neg Erf Abs Relu LeakyRelu Sigmoid Tanh Clip map a tensor to one of the same shape.
 *
 * broadcast_apply() merges the output's dimensions into as few runs as the input layouts
 * allow, then calls a typed row function per innermost run; within a row every input either
 * advances with the output or stays on one element. Same-shape and scalar operands therefore
 * become a single row. Row and map functions are generated per operator and dtype by macros
 * from the scalar helpers below; their loops go through EW_VLOOP (elementwise_vec.h), which
 * GCC vectorises at -O2. float16 and bfloat16 compute in float.
 */
#include "engine/ops/elementwise_common.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * Scalar helpers
 * ------------------------------------------------------------------------------------- */

/* Min and Max propagate NaN, as numpy's minimum/maximum do. */
#define FLOAT_HELPERS(CS, T, SFX)                                                                  \
    static inline T add_##CS(T x, T y)                                                             \
    {                                                                                              \
        return x + y;                                                                              \
    }                                                                                              \
    static inline T sub_##CS(T x, T y)                                                             \
    {                                                                                              \
        return x - y;                                                                              \
    }                                                                                              \
    static inline T mul_##CS(T x, T y)                                                             \
    {                                                                                              \
        return x * y;                                                                              \
    }                                                                                              \
    static inline T div_##CS(T x, T y)                                                             \
    {                                                                                              \
        return x / y;                                                                              \
    }                                                                                              \
    static inline T min_##CS(T x, T y)                                                             \
    {                                                                                              \
        return (x < y || x != x) ? x : y;                                                          \
    }                                                                                              \
    static inline T max_##CS(T x, T y)                                                             \
    {                                                                                              \
        return (x > y || x != x) ? x : y;                                                          \
    }                                                                                              \
    static inline uint8_t eq_##CS(T x, T y)                                                        \
    {                                                                                              \
        return x == y;                                                                             \
    }                                                                                              \
    static inline T neg_##CS(T x)                                                                  \
    {                                                                                              \
        return -x;                                                                                 \
    }                                                                                              \
    static inline T abs_##CS(T x)                                                                  \
    {                                                                                              \
        return fabs##SFX(x);                                                                       \
    }                                                                                              \
    static inline T relu_##CS(T x)                                                                 \
    {                                                                                              \
        return x < 0 ? 0 : x;                                                                      \
    }                                                                                              \
    static inline T sqrt_##CS(T x)                                                                 \
    {                                                                                              \
        return sqrt##SFX(x);                                                                       \
    }                                                                                              \
    static inline T log_##CS(T x)                                                                  \
    {                                                                                              \
        return log##SFX(x);                                                                        \
    }                                                                                              \
    static inline T clip_##CS(T x, T lo, T hi)                                                     \
    {                                                                                              \
        x = x < lo ? lo : x;                                                                       \
        return x > hi ? hi : x;                                                                    \
    }
FLOAT_HELPERS(f, float, f)
FLOAT_HELPERS(d, double, )

static inline float exp_f(float x)
{
    return ew_expf(x);
}
static inline float sigmoid_f(float x)
{
    return ew_sigmoidf(x);
}
static inline float tanh_f(float x)
{
    return ew_tanhf(x);
}
static inline float erf_f(float x)
{
    return ew_erff(x);
}
static inline float leaky_f(float x, float alpha)
{
    return ew_sel(x < 0.0f, x * alpha, x);
}
static inline double exp_d(double x)
{
    return exp(x);
}
static inline double tanh_d(double x)
{
    return tanh(x);
}
static inline double erf_d(double x)
{
    return erf(x);
}
static inline double leaky_d(double x, double alpha)
{
    return x < 0 ? x * alpha : x;
}
static inline double sigmoid_d(double x)
{
    double e = exp(-fabs(x));
    double r = 1.0 / (1.0 + e);
    return x >= 0 ? r : e * r;
}

/* Integer arithmetic wraps around like the hardware does; it goes through the unsigned type U
 * because signed overflow is undefined in C. */
#define INT_HELPERS(CS, T, U)                                                                      \
    static inline T add_##CS(T x, T y)                                                             \
    {                                                                                              \
        return (T)((U)x + (U)y);                                                                   \
    }                                                                                              \
    static inline T sub_##CS(T x, T y)                                                             \
    {                                                                                              \
        return (T)((U)x - (U)y);                                                                   \
    }                                                                                              \
    static inline T mul_##CS(T x, T y)                                                             \
    {                                                                                              \
        return (T)((U)x * (U)y);                                                                   \
    }                                                                                              \
    static inline T min_##CS(T x, T y)                                                             \
    {                                                                                              \
        return x < y ? x : y;                                                                      \
    }                                                                                              \
    static inline T max_##CS(T x, T y)                                                             \
    {                                                                                              \
        return x > y ? x : y;                                                                      \
    }                                                                                              \
    static inline uint8_t eq_##CS(T x, T y)                                                        \
    {                                                                                              \
        return x == y;                                                                             \
    }                                                                                              \
    static inline T erf_##CS(T x)                                                                  \
    {                                                                                              \
        return (T)erf((double)x);                                                                  \
    }                                                                                              \
    static inline T clip_##CS(T x, T lo, T hi)                                                     \
    {                                                                                              \
        x = x < lo ? lo : x;                                                                       \
        return x > hi ? hi : x;                                                                    \
    }

/* Division truncates toward zero. x/0 gives 0 and MIN/-1 wraps to MIN instead of trapping. */
#define SINT_HELPERS(CS, T, U)                                                                     \
    INT_HELPERS(CS, T, U)                                                                          \
    static inline T div_##CS(T x, T y)                                                             \
    {                                                                                              \
        return y == 0 ? 0 : y == -1 ? (T)(0u - (U)x) : (T)(x / y);                                 \
    }                                                                                              \
    static inline T neg_##CS(T x)                                                                  \
    {                                                                                              \
        return (T)(0u - (U)x);                                                                     \
    }                                                                                              \
    static inline T abs_##CS(T x)                                                                  \
    {                                                                                              \
        return x < 0 ? (T)(0u - (U)x) : x;                                                         \
    }                                                                                              \
    static inline T relu_##CS(T x)                                                                 \
    {                                                                                              \
        return x < 0 ? 0 : x;                                                                      \
    }
#define UINT_HELPERS(CS, T, U)                                                                     \
    INT_HELPERS(CS, T, U)                                                                          \
    static inline T div_##CS(T x, T y)                                                             \
    {                                                                                              \
        return y == 0 ? 0 : (T)(x / y);                                                            \
    }                                                                                              \
    static inline T abs_##CS(T x)                                                                  \
    {                                                                                              \
        return x;                                                                                  \
    }

SINT_HELPERS(i8, int8_t, uint32_t)
SINT_HELPERS(i16, int16_t, uint32_t)
SINT_HELPERS(i32, int32_t, uint32_t)
SINT_HELPERS(i64, int64_t, uint64_t)
UINT_HELPERS(u8, uint8_t, uint32_t)
UINT_HELPERS(u16, uint16_t, uint32_t)
UINT_HELPERS(u32, uint32_t, uint32_t)
UINT_HELPERS(u64, uint64_t, uint64_t)

static inline uint8_t eq_b(uint8_t x, uint8_t y)
{
    return (x != 0) == (y != 0);
}

/* ---------------------------------------------------------------------------------------
 * Kernel generators
 * ------------------------------------------------------------------------------------- */

/* LeakyRelu: P points to alpha as a float. */
#define DEF_LEAKY(OP, DT, T, SFX, CS, LD, ST)                                                      \
    static void map_##OP##_##SFX(void *o_, const void *a_, int64_t n, const void *p)               \
    {                                                                                              \
        CT_##CS alpha = (CT_##CS) * (const float *)p;                                              \
        T *o = o_;                                                                                 \
        const T *a = a_;                                                                           \
        EW_VLOOP(T, o, n, ST(leaky_##CS(LD(a[i]), alpha)));                                        \
    }

/* Clip: P points to clip_bounds holding min and max in the tensor's own type. */
typedef struct clip_bounds {
    unsigned char lo[8], hi[8];
} clip_bounds;

#define DEF_CLIP(OP, DT, T, SFX, CS, LD, ST)                                                       \
    static void map_##OP##_##SFX(void *o_, const void *a_, int64_t n, const void *p)               \
    {                                                                                              \
        const clip_bounds *cb = p;                                                                 \
        T lo_, hi_;                                                                                \
        memcpy(&lo_, cb->lo, sizeof(T));                                                           \
        memcpy(&hi_, cb->hi, sizeof(T));                                                           \
        CT_##CS lo = LD(lo_), hi = LD(hi_);                                                        \
        T *o = o_;                                                                                 \
        const T *a = a_;                                                                           \
        EW_VLOOP(T, o, n, ST(clip_##CS(LD(a[i]), lo, hi)));                                        \
    }

NUM_TYPES(DEF_BIN, add)
NUM_TYPES(DEF_BIN, sub)
NUM_TYPES(DEF_BIN, mul)
NUM_TYPES(DEF_BIN, div)
NUM_TYPES(DEF_BIN, min)
NUM_TYPES(DEF_BIN, max)
NUM_TYPES(DEF_CMP, eq)
BOOL_TYPE(DEF_CMP, eq)

static const row_fn add_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, add)};
static const row_fn sub_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, sub)};
static const row_fn mul_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, mul)};
static const row_fn div_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, div)};
static const row_fn min_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, min)};
static const row_fn max_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, max)};
static const row_fn eq_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, eq)
                                                      BOOL_TYPE(ROW_ENTRY, eq)};

FLOAT_TYPES(DEF_MAP, sqrt)
FLOAT_TYPES(DEF_MAP, exp)
FLOAT_TYPES(DEF_MAP, log)
FLOAT_TYPES(DEF_MAP, sigmoid)
FLOAT_TYPES(DEF_MAP, tanh)
NUM_TYPES(DEF_MAP, erf)
SIGNED_TYPES(DEF_MAP, neg)
NUM_TYPES(DEF_MAP, abs)
SIGNED_TYPES(DEF_MAP, relu)
FLOAT_TYPES(DEF_LEAKY, leaky)
NUM_TYPES(DEF_CLIP, clip)

static const map_fn sqrt_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, sqrt)};
static const map_fn exp_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, exp)};
static const map_fn log_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, log)};
static const map_fn sigmoid_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, sigmoid)};
static const map_fn tanh_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, tanh)};
static const map_fn erf_maps[FERRY_DTYPE_COUNT] = {NUM_TYPES(MAP_ENTRY, erf)};
static const map_fn neg_maps[FERRY_DTYPE_COUNT] = {SIGNED_TYPES(MAP_ENTRY, neg)};
static const map_fn abs_maps[FERRY_DTYPE_COUNT] = {NUM_TYPES(MAP_ENTRY, abs)};
static const map_fn relu_maps[FERRY_DTYPE_COUNT] = {SIGNED_TYPES(MAP_ENTRY, relu)};
static const map_fn leaky_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, leaky)};
static const map_fn clip_maps[FERRY_DTYPE_COUNT] = {NUM_TYPES(MAP_ENTRY, clip)};

/* Where selects by element size: the dtype does not matter. */
typedef struct {
    uint64_t lo, hi;
} u128;

#define DEF_WHERE(T)                                                                               \
    static inline T pick_##T(uint8_t c, T x, T y)                                                  \
    {                                                                                              \
        return c ? x : y;                                                                          \
    }                                                                                              \
    static void row_where_##T(void *o_, const void *const *in, const int *s, int64_t n,            \
                              const void *p)                                                       \
    {                                                                                              \
        (void)p;                                                                                   \
        T *o = o_;                                                                                 \
        const uint8_t *c = in[0];                                                                  \
        const T *x = in[1], *y = in[2];                                                            \
        if (s[0] && s[1] && s[2]) {                                                                \
            EW_VLOOP(T, o, n, pick_##T(c[i], x[i], y[i]));                                         \
        } else if (s[0] && !s[1] && s[2]) { /* masked fill: Where(mask, scalar, x) */              \
            T xv = x[0];                                                                           \
            EW_VLOOP(T, o, n, pick_##T(c[i], xv, y[i]));                                           \
        } else if (s[0] && s[1] && !s[2]) {                                                        \
            T yv = y[0];                                                                           \
            EW_VLOOP(T, o, n, pick_##T(c[i], x[i], yv));                                           \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) o[i] = c[i * s[0]] ? x[i * s[1]] : y[i * s[2]];        \
        }                                                                                          \
    }
DEF_WHERE(uint8_t)
DEF_WHERE(uint16_t)
DEF_WHERE(uint32_t)
DEF_WHERE(uint64_t)
DEF_WHERE(u128)

/* ---------------------------------------------------------------------------------------
 * Pow
 * ------------------------------------------------------------------------------------- */

typedef struct pow_types {
    ferry_dtype base, exp;
} pow_types;

/* pow(x, 0.5) without a call to pow; sqrt differs from pow at -0 and -inf. */
static inline float pow_half(float x)
{
    return x == -INFINITY ? INFINITY : sqrtf(x) + 0.0f;
}

/* float ^ float, with the common constant exponents of normalisation layers done inline. */
static void row_pow_f32(void *o_, const void *const *in, const int *s, int64_t n, const void *p)
{
    (void)p;
    float *o = o_;
    const float *a = in[0], *b = in[1];
    if (s[0] && !s[1]) {
        float y = b[0];
        if (y == 2.0f) {
            EW_VLOOP(float, o, n, a[i] * a[i]);
        } else if (y == 1.0f) {
            EW_VLOOP(float, o, n, a[i]);
        } else if (y == 0.5f) {
            for (int64_t i = 0; i < n; i++) o[i] = pow_half(a[i]);
        } else {
            for (int64_t i = 0; i < n; i++) o[i] = powf(a[i], y);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) o[i] = powf(a[i * s[0]], b[i * s[1]]);
}

/* Integer power by squaring, wrapping on overflow. Negative exponents truncate 1/x^-e. */
static int64_t ipow(int64_t x, int64_t e)
{
    if (e < 0) return x == 1 ? 1 : x == -1 ? ((e & 1) ? -1 : 1) : 0;
    uint64_t r = 1, b = (uint64_t)x;
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

/* Any base and exponent types (opset 12 lets them differ). Not a hot path: elements go through
 * the generic loaders. */
static void row_pow_any(void *o, const void *const *in, const int *s, int64_t n, const void *p)
{
    const pow_types *t = p;
    bool int_base = !core_dtype_is_float(t->base), int_exp = !core_dtype_is_float(t->exp);
    for (int64_t i = 0; i < n; i++) {
        int64_t ia = i * s[0], ib = i * s[1];
        if (int_base && int_exp) {
            int64_t e = core_load_i64(t->exp, in[1], ib);
            core_store_i64(t->base, o, i, ipow(core_load_i64(t->base, in[0], ia), e));
        } else {
            double x = core_load_f64(t->base, in[0], ia), y = core_load_f64(t->exp, in[1], ib);
            core_store_f64(t->base, o, i, pow(x, y));
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Binary operators: Add Sub Mul Div Equal
 * ------------------------------------------------------------------------------------- */

static ferry_status *binary_infer(eng_op_call *c, const row_fn *rows, bool bool_out)
{
    ferry_status *st = check_io(c, 2, 2);
    if (st) return st;
    const eng_tensor *a = c->in[0], *b = c->in[1];
    if (!dt_valid(a->dtype) || !rows[a->dtype]) return eng_bad_dtype("input A", a->dtype);
    if (b->dtype != a->dtype) return dtype_mismatch("input B", b->dtype, "input A", a->dtype);
    eng_tensor bv;
    st = legacy_view(c->state, a, b, &bv);
    if (st) return st;
    const eng_tensor *ins[2] = {a, &bv};
    st = eng_broadcast_shapes(c->out[0], ins, 2);
    if (st) return st;
    c->out[0]->dtype = bool_out ? FERRY_DTYPE_BOOL : a->dtype;
    return NULL;
}

static ferry_status *binary_run(eng_op_call *c, const row_fn *rows)
{
    eng_tensor *out = c->out[0];
    if (eng_numel(out) == 0) return NULL;
    eng_tensor bv;
    ferry_status *st = legacy_view(c->state, c->in[0], c->in[1], &bv);
    if (st) return st;
    const eng_tensor *ins[2] = {c->in[0], &bv};
    broadcast_apply(c, out, ins, 2, rows[c->in[0]->dtype], NULL, GRAIN_CHEAP);
    return NULL;
}

#define BINARY_OP(NAME, BOOL_OUT)                                                                  \
    static ferry_status *NAME##_infer(eng_op_call *c)                                              \
    {                                                                                              \
        return binary_infer(c, NAME##_rows, BOOL_OUT);                                             \
    }                                                                                              \
    static ferry_status *NAME##_run(eng_op_call *c)                                                \
    {                                                                                              \
        return binary_run(c, NAME##_rows);                                                         \
    }
BINARY_OP(add, false)
BINARY_OP(sub, false)
BINARY_OP(mul, false)
BINARY_OP(div, false)
BINARY_OP(eq, true)

/* ---------------------------------------------------------------------------------------
 * Pow
 * ------------------------------------------------------------------------------------- */

static bool pow_base_ok(ferry_dtype dt)
{
    return core_dtype_is_float(dt) || core_dtype_is_signed_int(dt) ||
           core_dtype_is_unsigned_int(dt);
}

static ferry_status *pow_infer(eng_op_call *c)
{
    ferry_status *st = check_io(c, 2, 2);
    if (st) return st;
    const eng_tensor *x = c->in[0], *y = c->in[1];
    if (!pow_base_ok(x->dtype)) return eng_bad_dtype("input X", x->dtype);
    if (!pow_base_ok(y->dtype)) return eng_bad_dtype("input Y", y->dtype);
    if (c->opset < 12 && y->dtype != x->dtype)
        return dtype_mismatch("input Y", y->dtype, "input X", x->dtype);
    eng_tensor yv;
    st = legacy_view(c->state, x, y, &yv);
    if (st) return st;
    const eng_tensor *ins[2] = {x, &yv};
    st = eng_broadcast_shapes(c->out[0], ins, 2);
    if (st) return st;
    c->out[0]->dtype = x->dtype;
    return NULL;
}

static ferry_status *pow_run(eng_op_call *c)
{
    eng_tensor *out = c->out[0];
    if (eng_numel(out) == 0) return NULL;
    eng_tensor yv;
    ferry_status *st = legacy_view(c->state, c->in[0], c->in[1], &yv);
    if (st) return st;
    const eng_tensor *ins[2] = {c->in[0], &yv};
    pow_types t = {c->in[0]->dtype, yv.dtype};
    bool f32 = t.base == FERRY_DTYPE_FLOAT && t.exp == FERRY_DTYPE_FLOAT;
    broadcast_apply(c, out, ins, 2, f32 ? row_pow_f32 : row_pow_any, &t, GRAIN_MATH);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Min and Max: one or more inputs, broadcast together
 * ------------------------------------------------------------------------------------- */

static ferry_status *minmax_infer(eng_op_call *c, const row_fn *rows)
{
    if (c->n_in < 1) return core_error(FERRY_ERR_INVALID_MODEL, "expected at least one input");
    ferry_status *st = check_io(c, c->n_in, c->n_in);
    if (st) return st;
    ferry_dtype dt = c->in[0]->dtype;
    if (!dt_valid(dt) || !rows[dt]) return eng_bad_dtype("input 0", dt);
    for (int i = 1; i < c->n_in; i++) {
        if (c->in[i]->dtype != dt) {
            char what[32];
            snprintf(what, sizeof(what), "input %d", i);
            return dtype_mismatch(what, c->in[i]->dtype, "input 0", dt);
        }
    }
    st = eng_broadcast_shapes(c->out[0], (const eng_tensor *const *)c->in, c->n_in);
    if (st) return st;
    c->out[0]->dtype = dt;
    return NULL;
}

static ferry_status *minmax_run(eng_op_call *c, const row_fn *rows)
{
    eng_tensor *out = c->out[0];
    if (eng_numel(out) == 0) return NULL;
    if (c->n_in == 1) {
        copy_tensor(out, c->in[0]);
        return NULL;
    }
    row_fn fn = rows[out->dtype];
    /* Folds out = op(out, in[k]) after the first pair. An input sharing the output's buffer
     * must be read before anything overwrites it, so it goes into the first pair; Min and Max
     * are commutative. */
    int first = 0;
    for (int k = 2; k < c->n_in; k++)
        if (c->in[k]->data == out->data) first = k;
    int second = first == 0 ? 1 : 0;
    const eng_tensor *pair[2] = {c->in[first], c->in[second]};
    broadcast_apply(c, out, pair, 2, fn, NULL, GRAIN_CHEAP);
    eng_tensor acc = *out;
    for (int k = 1; k < c->n_in; k++) {
        if (k == first || k == second) continue;
        const eng_tensor *ins[2] = {&acc, c->in[k]};
        broadcast_apply(c, out, ins, 2, fn, NULL, GRAIN_CHEAP);
    }
    return NULL;
}

static ferry_status *min_infer(eng_op_call *c)
{
    return minmax_infer(c, min_rows);
}
static ferry_status *min_run(eng_op_call *c)
{
    return minmax_run(c, min_rows);
}
static ferry_status *max_infer(eng_op_call *c)
{
    return minmax_infer(c, max_rows);
}
static ferry_status *max_run(eng_op_call *c)
{
    return minmax_run(c, max_rows);
}

/* ---------------------------------------------------------------------------------------
 * Where
 * ------------------------------------------------------------------------------------- */

static row_fn where_row(size_t size)
{
    switch (size) {
    case 1:
        return row_where_uint8_t;
    case 2:
        return row_where_uint16_t;
    case 4:
        return row_where_uint32_t;
    case 8:
        return row_where_uint64_t;
    case 16:
        return row_where_u128;
    default:
        return NULL;
    }
}

static ferry_status *where_infer(eng_op_call *c)
{
    ferry_status *st = check_io(c, 3, 3);
    if (st) return st;
    const eng_tensor *cond = c->in[0], *x = c->in[1], *y = c->in[2];
    if (cond->dtype != FERRY_DTYPE_BOOL)
        return core_error(FERRY_ERR_INVALID_MODEL, "input condition: expected bool, got %s",
                          ferry_dtype_name(cond->dtype));
    if (!where_row(ferry_dtype_size(x->dtype))) return eng_bad_dtype("input X", x->dtype);
    if (y->dtype != x->dtype) return dtype_mismatch("input Y", y->dtype, "input X", x->dtype);
    const eng_tensor *ins[3] = {cond, x, y};
    st = eng_broadcast_shapes(c->out[0], ins, 3);
    if (st) return st;
    c->out[0]->dtype = x->dtype;
    return NULL;
}

static ferry_status *where_run(eng_op_call *c)
{
    eng_tensor *out = c->out[0];
    if (eng_numel(out) == 0) return NULL;
    const eng_tensor *ins[3] = {c->in[0], c->in[1], c->in[2]};
    broadcast_apply(c, out, ins, 3, where_row(ferry_dtype_size(out->dtype)), NULL, GRAIN_CHEAP);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Unary operators
 * ------------------------------------------------------------------------------------- */

static ferry_status *unary_infer(eng_op_call *c, const map_fn *maps, int max_in)
{
    ferry_status *st = check_io(c, 1, max_in);
    if (st) return st;
    const eng_tensor *x = c->in[0];
    if (!dt_valid(x->dtype) || !maps[x->dtype]) return eng_bad_dtype("input", x->dtype);
    eng_same_shape(c->out[0], x);
    return NULL;
}

static ferry_status *unary_run(eng_op_call *c, const map_fn *maps, const void *p, int64_t grain)
{
    const eng_tensor *x = c->in[0];
    map_apply(c, c->out[0], x, maps[x->dtype], p, grain);
    return NULL;
}

#define UNARY_OP(NAME, GRAIN)                                                                      \
    static ferry_status *NAME##_infer(eng_op_call *c)                                              \
    {                                                                                              \
        return unary_infer(c, NAME##_maps, 1);                                                     \
    }                                                                                              \
    static ferry_status *NAME##_run(eng_op_call *c)                                                \
    {                                                                                              \
        return unary_run(c, NAME##_maps, NULL, GRAIN);                                             \
    }
UNARY_OP(sqrt, GRAIN_MATH)
UNARY_OP(exp, GRAIN_MATH)
UNARY_OP(log, GRAIN_MATH)
UNARY_OP(sigmoid, GRAIN_MATH)
UNARY_OP(tanh, GRAIN_MATH)
UNARY_OP(erf, GRAIN_MATH)
UNARY_OP(neg, GRAIN_CHEAP)
UNARY_OP(abs, GRAIN_CHEAP)
UNARY_OP(relu, GRAIN_CHEAP)

/* LeakyRelu: the state is alpha. */
static ferry_status *leaky_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    float *alpha = malloc(sizeof(*alpha));
    if (!alpha) return no_memory();
    *alpha = eng_attr_float(node, "alpha", 0.01f);
    *state = alpha;
    return NULL;
}

static ferry_status *leaky_infer(eng_op_call *c)
{
    return unary_infer(c, leaky_maps, 1);
}
static ferry_status *leaky_run(eng_op_call *c)
{
    return unary_run(c, leaky_maps, c->state, GRAIN_CHEAP);
}

/* ---------------------------------------------------------------------------------------
 * Clip: min and max are attributes before opset 11 (the state), optional scalar inputs after.
 * ------------------------------------------------------------------------------------- */

typedef struct clip_attrs {
    float lo, hi;
} clip_attrs;

static ferry_status *clip_attr_init(const eng_node *node, int opset, void **state)
{
    clip_attrs *ca = malloc(sizeof(*ca));
    if (!ca) return no_memory();
    /* Opset 1 leaves a missing bound unclipped; opset 6 defaults to the float range. */
    float big = opset < 6 ? INFINITY : FLT_MAX;
    ca->lo = eng_attr_float(node, "min", -big);
    ca->hi = eng_attr_float(node, "max", big);
    *state = ca;
    return NULL;
}

static ferry_status *clip_attr_infer(eng_op_call *c)
{
    ferry_status *st = unary_infer(c, clip_maps, 1);
    if (!st && !core_dtype_is_float(c->in[0]->dtype)) st = eng_bad_dtype("input", c->in[0]->dtype);
    return st;
}

static ferry_status *clip_attr_run(eng_op_call *c)
{
    const clip_attrs *ca = c->state;
    clip_bounds cb;
    ferry_dtype dt = c->in[0]->dtype;
    core_store_f64(dt, cb.lo, 0, ca->lo);
    core_store_f64(dt, cb.hi, 0, ca->hi);
    return unary_run(c, clip_maps, &cb, GRAIN_CHEAP);
}

static ferry_status *clip_infer(eng_op_call *c)
{
    ferry_status *st = unary_infer(c, clip_maps, 3);
    if (st) return st;
    for (int i = 1; i < c->n_in; i++) {
        const eng_tensor *b = c->in[i];
        if (!b) continue;
        char what[32];
        snprintf(what, sizeof(what), "input %s", i == 1 ? "min" : "max");
        if (b->dtype != c->in[0]->dtype)
            return dtype_mismatch(what, b->dtype, "input", c->in[0]->dtype);
        if (eng_numel(b) != 1) {
            char s[128];
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s: expected a scalar, got shape %s",
                              what, eng_shape_str(b, s, sizeof(s)));
        }
    }
    return NULL;
}

/* The full range of DT: what a missing bound means. */
static void type_limits(ferry_dtype dt, void *lo, void *hi)
{
    if (core_dtype_is_float(dt)) {
        core_store_f64(dt, lo, 0, -INFINITY);
        core_store_f64(dt, hi, 0, INFINITY);
    } else if (core_dtype_is_unsigned_int(dt)) {
        core_store_i64(dt, lo, 0, 0);
        core_store_i64(dt, hi, 0, -1); /* all ones */
    } else {
        int bits = (int)ferry_dtype_size(dt) * 8;
        int64_t mx = bits >= 64 ? INT64_MAX : (int64_t)(((uint64_t)1 << (bits - 1)) - 1);
        core_store_i64(dt, lo, 0, -mx - 1);
        core_store_i64(dt, hi, 0, mx);
    }
}

static ferry_status *clip_run(eng_op_call *c)
{
    ferry_dtype dt = c->in[0]->dtype;
    size_t size = ferry_dtype_size(dt);
    clip_bounds cb;
    type_limits(dt, cb.lo, cb.hi);
    if (c->n_in > 1 && c->in[1]) memcpy(cb.lo, c->in[1]->data, size);
    if (c->n_in > 2 && c->in[2]) memcpy(cb.hi, c->in[2]->data, size);
    return unary_run(c, clip_maps, &cb, GRAIN_CHEAP);
}

/* ---------------------------------------------------------------------------------------
 * Table
 * ------------------------------------------------------------------------------------- */

/* Designated initialisers leave the optional hooks (pack...) NULL. */
#define OP(NAME, SINCE, INIT, FINI, INFER, RUN)                                                    \
    {                                                                                              \
        .domain = "", .name = NAME, .since_version = SINCE, .init = INIT, .fini = FINI,            \
        .infer = INFER, .run = RUN                                                                 \
    }

static const eng_op ops[] = {
    OP("Add", 1, legacy_init, free, add_infer, add_run),
    OP("Add", 7, NULL, NULL, add_infer, add_run),
    OP("Sub", 1, legacy_init, free, sub_infer, sub_run),
    OP("Sub", 7, NULL, NULL, sub_infer, sub_run),
    OP("Mul", 1, legacy_init, free, mul_infer, mul_run),
    OP("Mul", 7, NULL, NULL, mul_infer, mul_run),
    OP("Div", 1, legacy_init, free, div_infer, div_run),
    OP("Div", 7, NULL, NULL, div_infer, div_run),
    OP("Pow", 1, legacy_init, free, pow_infer, pow_run),
    OP("Pow", 7, NULL, NULL, pow_infer, pow_run),
    OP("Equal", 1, legacy_init, free, eq_infer, eq_run),
    OP("Equal", 7, NULL, NULL, eq_infer, eq_run),
    OP("Min", 1, NULL, NULL, min_infer, min_run),
    OP("Max", 1, NULL, NULL, max_infer, max_run),
    OP("Where", 9, NULL, NULL, where_infer, where_run),
    OP("Sqrt", 1, NULL, NULL, sqrt_infer, sqrt_run),
    OP("Exp", 1, NULL, NULL, exp_infer, exp_run),
    OP("Log", 1, NULL, NULL, log_infer, log_run),
    OP("Neg", 1, NULL, NULL, neg_infer, neg_run),
    OP("Erf", 9, NULL, NULL, erf_infer, erf_run),
    OP("Abs", 1, NULL, NULL, abs_infer, abs_run),
    OP("Relu", 1, NULL, NULL, relu_infer, relu_run),
    OP("LeakyRelu", 1, leaky_init, free, leaky_infer, leaky_run),
    OP("Sigmoid", 1, NULL, NULL, sigmoid_infer, sigmoid_run),
    OP("Tanh", 1, NULL, NULL, tanh_infer, tanh_run),
    OP("Clip", 1, clip_attr_init, free, clip_attr_infer, clip_attr_run),
    OP("Clip", 11, NULL, NULL, clip_infer, clip_run),
};

const eng_op_table eng_ops_elementwise = {ops, sizeof(ops) / sizeof(ops[0])};
