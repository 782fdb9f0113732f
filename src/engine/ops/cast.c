/* cast.c - Cast, CastLike, Identity and Dropout (as inference runs it: a copy).
 *
 * Cast converts between every numeric type, bool, float16 and bfloat16 with one generated loop
 * per (source, target) pair. Each element is widened without loss (float sources to float or
 * double, integers to int64 or uint64), then narrowed once, so every conversion rounds a single
 * time: float to int truncates toward zero, to float16/bfloat16 rounds to nearest even, to bool
 * tests != 0. Float values outside int64 saturate and NaN becomes 0 before narrowing to smaller
 * integers wraps (C leaves these undefined). Strings are not supported.
 */
#include "engine/op.h"
#include "engine/ops/elementwise_vec.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*cast_fn)(void *out, const void *in, int64_t n);

/* --- widening loads: exact for every source value --- */

static inline float ld_f32(float v)
{
    return v;
}
static inline double ld_f64(double v)
{
    return v;
}
static inline float ld_f16(uint16_t v)
{
    return ew_half_to_float(v);
}
static inline float ld_bf16(uint16_t v)
{
    return core_bf16_to_float(v);
}
static inline int64_t ld_i8(int8_t v)
{
    return v;
}
static inline int64_t ld_i16(int16_t v)
{
    return v;
}
static inline int64_t ld_i32(int32_t v)
{
    return v;
}
static inline int64_t ld_i64(int64_t v)
{
    return v;
}
static inline uint64_t ld_u8(uint8_t v)
{
    return v;
}
static inline uint64_t ld_u16(uint16_t v)
{
    return v;
}
static inline uint64_t ld_u32(uint32_t v)
{
    return v;
}
static inline uint64_t ld_u64(uint64_t v)
{
    return v;
}
static inline int64_t ld_b(uint8_t v)
{
    return v != 0;
}

/* --- narrowing helpers --- */

/* Truncation toward zero; NaN gives 0 and values beyond int64 saturate. */
static inline int64_t f2i64(double d)
{
    if (d != d) return 0;
    if (d >= 9223372036854775808.0) return INT64_MAX;
    if (d <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)d;
}

static inline uint64_t f2u64(double d)
{
    if (d >= 18446744073709551616.0) return UINT64_MAX;
    if (d >= 9223372036854775808.0) return (uint64_t)d;
    return (uint64_t)f2i64(d);
}

static inline int64_t i2i64(int64_t v)
{
    return v;
}
static inline uint64_t i2u64(uint64_t v)
{
    return v;
}

/* D rounded to float with round-to-odd: rounding that to a narrower format (float16, bfloat16)
 * then gives the correctly rounded result, which rounding twice to nearest would not. */
static inline float d2f_odd(double d)
{
    float f = (float)d;
    if ((double)f == d || d != d || isinf(f)) return f;
    if (fabs((double)f) > fabs(d)) f = nextafterf(f, 0.0f);
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    u |= 1;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static inline uint16_t d2h(double d)
{
    return core_float_to_half(d2f_odd(d));
}
static inline uint16_t d2bf(double d)
{
    return core_float_to_bf16(d2f_odd(d));
}
static inline uint16_t i2h(int64_t v)
{
    return core_float_to_half((float)v);
}
static inline uint16_t u2h(uint64_t v)
{
    return core_float_to_half((float)v);
}
static inline uint16_t i2bf(int64_t v)
{
    return core_float_to_bf16(d2f_odd((double)v));
}
static inline uint16_t u2bf(uint64_t v)
{
    return core_float_to_bf16(d2f_odd((double)v));
}

/* Cast from float to bfloat16 keeps the upper 16 bits, as ONNX's reference implementation and
 * its conformance data do at these opsets (the spec leaves the rounding open); NaN stays a
 * quiet NaN. Other conversions to bfloat16 round to nearest even. */
static inline uint16_t f2bf_trunc(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)(u >> 16);
}

/* st_SFX(v) narrows a widened value (float, double, int64_t or uint64_t) to the target. */
#define st_f32(v) ((float)(v))
#define st_f64(v) ((double)(v))
#define st_f16(v)                                                                                  \
    _Generic((v), float : ew_float_to_half, double : d2h, int64_t : i2h, uint64_t : u2h)(v)
#define st_bf16(v)                                                                                 \
    _Generic((v), float : f2bf_trunc, double : d2bf, int64_t : i2bf, uint64_t : u2bf)(v)
#define TO_I64(v) _Generic((v), float : f2i64, double : f2i64, int64_t : i2i64, uint64_t : i2i64)(v)
#define TO_U64(v) _Generic((v), float : f2u64, double : f2u64, int64_t : i2u64, uint64_t : i2u64)(v)
#define st_i8(v)  ((int8_t)TO_I64(v))
#define st_i16(v) ((int16_t)TO_I64(v))
#define st_i32(v) ((int32_t)TO_I64(v))
#define st_i64(v) ((int64_t)TO_I64(v))
#define st_u8(v)  ((uint8_t)TO_I64(v))
#define st_u16(v) ((uint16_t)TO_I64(v))
#define st_u32(v) ((uint32_t)TO_I64(v))
#define st_u64(v) ((uint64_t)TO_U64(v))
#define st_b(v)   ((uint8_t)((v) != 0))

#define T_f32  float
#define T_f64  double
#define T_f16  uint16_t
#define T_bf16 uint16_t
#define T_i8   int8_t
#define T_i16  int16_t
#define T_i32  int32_t
#define T_i64  int64_t
#define T_u8   uint8_t
#define T_u16  uint16_t
#define T_u32  uint32_t
#define T_u64  uint64_t
#define T_b    uint8_t

#define DT_f32  FERRY_DTYPE_FLOAT
#define DT_f64  FERRY_DTYPE_DOUBLE
#define DT_f16  FERRY_DTYPE_FLOAT16
#define DT_bf16 FERRY_DTYPE_BFLOAT16
#define DT_i8   FERRY_DTYPE_INT8
#define DT_i16  FERRY_DTYPE_INT16
#define DT_i32  FERRY_DTYPE_INT32
#define DT_i64  FERRY_DTYPE_INT64
#define DT_u8   FERRY_DTYPE_UINT8
#define DT_u16  FERRY_DTYPE_UINT16
#define DT_u32  FERRY_DTYPE_UINT32
#define DT_u64  FERRY_DTYPE_UINT64
#define DT_b    FERRY_DTYPE_BOOL

/* Two copies of the type list, so that one can expand inside the other. */
/* clang-format off */
#define TYPES_OUTER(X, A)                                                                          \
    X(A, f32) X(A, f64) X(A, f16) X(A, bf16)                                                       \
    X(A, i8) X(A, i16) X(A, i32) X(A, i64)                                                         \
    X(A, u8) X(A, u16) X(A, u32) X(A, u64)                                                         \
    X(A, b)
#define TYPES_INNER(X, A)                                                                          \
    X(A, f32) X(A, f64) X(A, f16) X(A, bf16)                                                       \
    X(A, i8) X(A, i16) X(A, i32) X(A, i64)                                                         \
    X(A, u8) X(A, u16) X(A, u32) X(A, u64)                                                         \
    X(A, b)
/* clang-format on */

#define DEF_CAST(S, D)                                                                             \
    static void cast_##S##_##D(void *o_, const void *a_, int64_t n)                                \
    {                                                                                              \
        T_##D *o = o_;                                                                             \
        const T_##S *a = a_;                                                                       \
        EW_VLOOP(T_##D, o, n, st_##D(ld_##S(a[i])));                                               \
    }
#define DEF_CASTS_FROM(_, S) TYPES_INNER(DEF_CAST, S)
TYPES_OUTER(DEF_CASTS_FROM, _)

#define CAST_ENTRY(S, D) [DT_##D] = cast_##S##_##D,
#define CAST_ROW(_, S)   [DT_##S] = {TYPES_INNER(CAST_ENTRY, S)},
static const cast_fn cast_table[FERRY_DTYPE_COUNT][FERRY_DTYPE_COUNT] = {TYPES_OUTER(CAST_ROW, _)};

static cast_fn find_cast(ferry_dtype from, ferry_dtype to)
{
    if ((unsigned)from >= FERRY_DTYPE_COUNT || (unsigned)to >= FERRY_DTYPE_COUNT) return NULL;
    return cast_table[from][to];
}

static bool castable(ferry_dtype dt)
{
    return (unsigned)dt < FERRY_DTYPE_COUNT && cast_table[dt][dt] != NULL;
}

/* --- shared checks --- */

static ferry_status *check_io(const eng_op_call *c, int need, int max)
{
    if (c->n_in < need || c->n_in > max) {
        if (need == max)
            return core_error(FERRY_ERR_INVALID_MODEL, "expected %d input%s, got %d", need,
                              need == 1 ? "" : "s", c->n_in);
        return core_error(FERRY_ERR_INVALID_MODEL, "expected %d to %d inputs, got %d", need, max,
                          c->n_in);
    }
    for (int i = 0; i < need; i++)
        if (!c->in[i]) return core_error(FERRY_ERR_INVALID_MODEL, "input %d is missing", i);
    if (c->n_out < 1 || !c->out[0])
        return core_error(FERRY_ERR_INVALID_MODEL, "the output is missing");
    return NULL;
}

static void copy_tensor(eng_tensor *out, const eng_tensor *in)
{
    size_t n = eng_nbytes(in);
    if (n && out->data != in->data) memmove(out->data, in->data, n);
}

/* ---------------------------------------------------------------------------------------
 * Cast and CastLike
 * ------------------------------------------------------------------------------------- */

static bool same_nocase(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

/* Opset 1 names the target type as a string: TensorProto's enum name ("FLOAT"), which is
 * ferry_dtype_name() in capitals. */
static ferry_dtype dtype_from_name(const char *name)
{
    for (int dt = 1; dt < FERRY_DTYPE_COUNT; dt++)
        if (same_nocase(ferry_dtype_name((ferry_dtype)dt), name)) return (ferry_dtype)dt;
    return FERRY_DTYPE_UNDEFINED;
}

static ferry_status *cast_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    ferry_dtype to;
    if (eng_attr_kind(node, "to") == ENG_ATTR_STRING) {
        const char *name = eng_attr_string(node, "to", "");
        to = dtype_from_name(name);
        if (to == FERRY_DTYPE_UNDEFINED)
            return core_error(FERRY_ERR_INVALID_MODEL, "attribute 'to': unknown type '%s'", name);
    } else if (eng_attr_kind(node, "to") == ENG_ATTR_INT) {
        int64_t v = eng_attr_int(node, "to", 0);
        if (v <= 0 || v >= FERRY_DTYPE_COUNT)
            return core_error(FERRY_ERR_INVALID_MODEL, "attribute 'to': unknown type %lld",
                              (long long)v);
        to = (ferry_dtype)v;
    } else {
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute 'to' is missing");
    }
    if (!castable(to) && to != FERRY_DTYPE_STRING) return eng_bad_dtype("target", to);
    ferry_dtype *st = malloc(sizeof(*st));
    if (!st) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *st = to;
    *state = st;
    return NULL;
}

static ferry_status *cast_to_infer(eng_op_call *c, ferry_dtype to)
{
    const eng_tensor *x = c->in[0];
    bool strings = x->dtype == FERRY_DTYPE_STRING || to == FERRY_DTYPE_STRING;
    if (!castable(x->dtype) && !(strings && x->dtype == FERRY_DTYPE_STRING))
        return eng_bad_dtype("input", x->dtype);
    if (!castable(to) && !(strings && to == FERRY_DTYPE_STRING)) return eng_bad_dtype("target", to);
    eng_same_shape(c->out[0], x);
    c->out[0]->dtype = to;
    return NULL;
}

typedef struct cast_job {
    cast_fn fn;
    char *out;
    const char *in;
    int64_t osz, isz;
} cast_job;

static void cast_range(void *arg, int64_t begin, int64_t end)
{
    const cast_job *j = arg;
    j->fn(j->out + begin * j->osz, j->in + begin * j->isz, end - begin);
}

/* Formats element I of X the way ONNX's reference does (NumPy's str): the shortest text that
 * reads back to the same value; "NaN", "INF", "-INF" for the special values. */
static const char *format_number(const eng_tensor *x, int64_t i, char *buf, size_t size)
{
    double v = core_load_f64(x->dtype, x->data, i);
    if (core_dtype_is_float(x->dtype)) {
        if (v != v) return "NaN";
        if (v > 1.7976931348623157e308) return "INF";
        if (v < -1.7976931348623157e308) return "-INF";
        bool single = x->dtype != FERRY_DTYPE_DOUBLE;
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, size, "%.*g", prec, v);
            if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
        }
        return buf;
    }
    if (x->dtype == FERRY_DTYPE_BOOL) return v != 0 ? "True" : "False";
    if (x->dtype == FERRY_DTYPE_UINT64)
        snprintf(buf, size, "%llu", (unsigned long long)((const uint64_t *)x->data)[i]);
    else
        snprintf(buf, size, "%lld", (long long)core_load_i64(x->dtype, x->data, i));
    return buf;
}

/* Casts to or from strings: text is parsed with strtod ("INF", "NaN" in any case included);
 * numbers are formatted by format_number. New strings live in the run's string pool. */
static ferry_status *cast_strings(eng_op_call *c)
{
    const eng_tensor *x = c->in[0];
    eng_tensor *y = c->out[0];
    int64_t n = eng_numel(x);
    if (y->dtype == FERRY_DTYPE_STRING) {
        const char **out = y->data;
        char buf[64];
        for (int64_t i = 0; i < n; i++) {
            const char *text = format_number(x, i, buf, sizeof(buf));
            if (!(out[i] = core_pool_strndup(c->strings, text, strlen(text))))
                return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        }
        return NULL;
    }
    const char *const *in = x->data;
    for (int64_t i = 0; i < n; i++) {
        const char *text = in[i] ? in[i] : "";
        char *end;
        double v = strtod(text, &end);
        if (end == text)
            return core_error(FERRY_ERR_RUNTIME, "cannot cast '%.40s' to %s", text,
                              ferry_dtype_name(y->dtype));
        if (core_dtype_is_float(y->dtype) || v != v)
            core_store_f64(y->dtype, y->data, i, v);
        else
            core_store_i64(y->dtype, y->data, i, strtoll(text, NULL, 10));
    }
    return NULL;
}

static ferry_status *cast_run(eng_op_call *c)
{
    const eng_tensor *x = c->in[0];
    eng_tensor *y = c->out[0];
    if (x->dtype == y->dtype) {
        copy_tensor(y, x);
        return NULL;
    }
    if (x->dtype == FERRY_DTYPE_STRING || y->dtype == FERRY_DTYPE_STRING) return cast_strings(c);
    /* Large casts are split across the pool; 32768 elements per piece amortise the hand-off. */
    cast_job j = {find_cast(x->dtype, y->dtype), y->data, x->data,
                  (int64_t)ferry_dtype_size(y->dtype), (int64_t)ferry_dtype_size(x->dtype)};
    core_parallel_for(c->threads, cast_range, &j, eng_numel(x), 32768);
    return NULL;
}

static ferry_status *cast_infer(eng_op_call *c)
{
    ferry_status *st = check_io(c, 1, 1);
    if (st) return st;
    return cast_to_infer(c, *(const ferry_dtype *)c->state);
}

static ferry_status *castlike_infer(eng_op_call *c)
{
    ferry_status *st = check_io(c, 2, 2);
    if (st) return st;
    return cast_to_infer(c, c->in[1]->dtype);
}

/* ---------------------------------------------------------------------------------------
 * Identity
 * ------------------------------------------------------------------------------------- */

static ferry_status *identity_infer(eng_op_call *c)
{
    ferry_status *st = check_io(c, 1, 1);
    if (st) return st;
    if (!core_dtype_is_flat(c->in[0]->dtype)) return eng_bad_dtype("input", c->in[0]->dtype);
    eng_same_shape(c->out[0], c->in[0]);
    return NULL;
}

static ferry_status *identity_run(eng_op_call *c)
{
    copy_tensor(c->out[0], c->in[0]);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Dropout: at inference the output is the input and the mask is all ones. Opset 12 turned
 * ratio into an optional input and added training_mode; a model that sets training_mode with a
 * nonzero ratio asks for random dropout, which Ferry does not do.
 * ------------------------------------------------------------------------------------- */

static ferry_status *check_scalar(const eng_tensor *t, const char *what, bool want_bool)
{
    bool ok = want_bool ? t->dtype == FERRY_DTYPE_BOOL : core_dtype_is_float(t->dtype);
    if (!ok)
        return core_error(FERRY_ERR_INVALID_MODEL, "input %s: expected %s, got %s", what,
                          want_bool ? "bool" : "a floating-point type", ferry_dtype_name(t->dtype));
    if (eng_numel(t) != 1) {
        char s[128];
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input %s: expected a scalar, got shape %s",
                          what, eng_shape_str(t, s, sizeof(s)));
    }
    return NULL;
}

static ferry_status *dropout_infer(eng_op_call *c)
{
    ferry_status *st = check_io(c, 1, c->opset >= 12 ? 3 : 1);
    if (st) return st;
    const eng_tensor *x = c->in[0];
    if (!core_dtype_is_flat(x->dtype)) return eng_bad_dtype("input", x->dtype);
    if (c->n_in > 1 && c->in[1] && (st = check_scalar(c->in[1], "ratio", false))) return st;
    if (c->n_in > 2 && c->in[2] && (st = check_scalar(c->in[2], "training_mode", true))) return st;
    eng_same_shape(c->out[0], x);
    if (c->n_out > 1 && c->out[1]) {
        eng_same_shape(c->out[1], x);
        /* The mask has the data's type before opset 10. */
        if (c->opset >= 10) c->out[1]->dtype = FERRY_DTYPE_BOOL;
    }
    return NULL;
}

static ferry_status *dropout_run(eng_op_call *c)
{
    const eng_tensor *x = c->in[0];
    if (c->n_in > 2 && c->in[2] && *(const uint8_t *)c->in[2]->data) {
        double ratio = 0.5;
        if (c->in[1]) ratio = core_load_f64(c->in[1]->dtype, c->in[1]->data, 0);
        if (ratio != 0)
            return core_error(FERRY_ERR_UNSUPPORTED,
                              "training_mode is true with ratio %g: random dropout is not "
                              "supported",
                              ratio);
    }
    copy_tensor(c->out[0], x);
    if (c->n_out > 1 && c->out[1]) {
        eng_tensor *mask = c->out[1];
        int64_t n = eng_numel(mask);
        if (mask->dtype == FERRY_DTYPE_BOOL) {
            if (n) memset(mask->data, 1, (size_t)n);
        } else {
            for (int64_t i = 0; i < n; i++) core_store_f64(mask->dtype, mask->data, i, 1.0);
        }
    }
    return NULL;
}

/* Designated initialisers leave the optional hooks (pack...) NULL. */
#define OP(NAME, SINCE, INIT, FINI, INFER, RUN)                                                    \
    {                                                                                              \
        .domain = "", .name = NAME, .since_version = SINCE, .init = INIT, .fini = FINI,            \
        .infer = INFER, .run = RUN                                                                 \
    }

static const eng_op ops[] = {
    OP("Cast", 1, cast_init, free, cast_infer, cast_run),
    OP("CastLike", 15, NULL, NULL, castlike_infer, cast_run),
    OP("Identity", 1, NULL, NULL, identity_infer, identity_run),
    OP("Dropout", 1, NULL, NULL, dropout_infer, dropout_run),
};

const eng_op_table eng_ops_cast = {ops, sizeof(ops) / sizeof(ops[0])};
