/* logic.c - boolean, comparison, integer and variadic arithmetic operators.
 *
 * Not, And, Or, Xor work on bool tensors; Greater, Less, GreaterOrEqual, LessOrEqual compare
 * any numeric type into bool; Mod and BitShift are binary arithmetic; Sum and Mean fold any
 * number of inputs. Binary operators broadcast numpy-style (before opset 7, And Or Xor Greater
 * Less use the legacy `broadcast`/`axis` attributes instead) through unary_common.h, which
 * also generates the typed row kernels; float16 and bfloat16 compute in float.
 *
 * Integer operations never trap: x % 0 gives 0, MIN % -1 gives 0, and shifts by the type's
 * width or more give 0.
 */
#include "engine/ops/elementwise_common.h"

#include <math.h>

/* ---------------------------------------------------------------------------------------
 * Scalar helpers
 * ------------------------------------------------------------------------------------- */

#define CMP_HELPERS(CS, T)                                                                         \
    static inline uint8_t gt_##CS(T x, T y)                                                        \
    {                                                                                              \
        return x > y;                                                                              \
    }                                                                                              \
    static inline uint8_t lt_##CS(T x, T y)                                                        \
    {                                                                                              \
        return x < y;                                                                              \
    }                                                                                              \
    static inline uint8_t ge_##CS(T x, T y)                                                        \
    {                                                                                              \
        return x >= y;                                                                             \
    }                                                                                              \
    static inline uint8_t le_##CS(T x, T y)                                                        \
    {                                                                                              \
        return x <= y;                                                                             \
    }
CMP_HELPERS(f, float)
CMP_HELPERS(d, double)
CMP_HELPERS(i8, int8_t)
CMP_HELPERS(i16, int16_t)
CMP_HELPERS(i32, int32_t)
CMP_HELPERS(i64, int64_t)
CMP_HELPERS(u8, uint8_t)
CMP_HELPERS(u16, uint16_t)
CMP_HELPERS(u32, uint32_t)
CMP_HELPERS(u64, uint64_t)

/* Mod: fmod keeps the dividend's sign (C's fmod and %); mod takes the divisor's (Python's %),
 * which is the truncated remainder moved by one divisor when the signs differ. Floats with
 * fmod=0, which the spec rules out, get numpy.mod's answer rather than an error. */
static inline float fmod_f(float x, float y)
{
    return fmodf(x, y);
}
static inline double fmod_d(double x, double y)
{
    return fmod(x, y);
}
static inline float mod_f(float x, float y)
{
    float r = fmodf(x, y);
    return r != 0 && (r < 0) != (y < 0) ? r + y : r;
}
static inline double mod_d(double x, double y)
{
    double r = fmod(x, y);
    return r != 0 && (r < 0) != (y < 0) ? r + y : r;
}

/* Signed remainders; y == -1 is answered without dividing because MIN % -1 overflows. */
#define SINT_MOD(CS, T)                                                                            \
    static inline T fmod_##CS(T x, T y)                                                            \
    {                                                                                              \
        return y == 0 || y == -1 ? 0 : (T)(x % y);                                                 \
    }                                                                                              \
    static inline T mod_##CS(T x, T y)                                                             \
    {                                                                                              \
        T r = fmod_##CS(x, y);                                                                     \
        return r != 0 && (r < 0) != (y < 0) ? (T)(r + y) : r;                                      \
    }
SINT_MOD(i8, int8_t)
SINT_MOD(i16, int16_t)
SINT_MOD(i32, int32_t)
SINT_MOD(i64, int64_t)

/* Unsigned remainders are the same either way; the shifts go through a type at least as wide
 * as int so that uint8/uint16 never shift a promoted signed int into its sign bit. */
#define UINT_HELPERS(CS, T, W)                                                                     \
    static inline T fmod_##CS(T x, T y)                                                            \
    {                                                                                              \
        return y == 0 ? 0 : (T)(x % y);                                                            \
    }                                                                                              \
    static inline T mod_##CS(T x, T y)                                                             \
    {                                                                                              \
        return fmod_##CS(x, y);                                                                    \
    }                                                                                              \
    static inline T shl_##CS(T x, T y)                                                             \
    {                                                                                              \
        return y >= sizeof(T) * 8 ? 0 : (T)((W)x << y);                                            \
    }                                                                                              \
    static inline T shr_##CS(T x, T y)                                                             \
    {                                                                                              \
        return y >= sizeof(T) * 8 ? 0 : (T)(x >> y);                                               \
    }
UINT_HELPERS(u8, uint8_t, uint32_t)
UINT_HELPERS(u16, uint16_t, uint32_t)
UINT_HELPERS(u32, uint32_t, uint32_t)
UINT_HELPERS(u64, uint64_t, uint64_t)

/* bool holds 0 or 1, but a stray nonzero byte still counts as true. */
static inline uint8_t and_b(uint8_t x, uint8_t y)
{
    return (x != 0) & (y != 0);
}
static inline uint8_t or_b(uint8_t x, uint8_t y)
{
    return (x != 0) | (y != 0);
}
static inline uint8_t xor_b(uint8_t x, uint8_t y)
{
    return (x != 0) ^ (y != 0);
}
static inline uint8_t lnot_b(uint8_t x)
{
    return x == 0;
}

static inline float add_f(float x, float y)
{
    return x + y;
}
static inline double add_d(double x, double y)
{
    return x + y;
}

/* ---------------------------------------------------------------------------------------
 * Kernel tables
 * ------------------------------------------------------------------------------------- */

NUM_TYPES(DEF_CMP, gt)
NUM_TYPES(DEF_CMP, lt)
NUM_TYPES(DEF_CMP, ge)
NUM_TYPES(DEF_CMP, le)
NUM_TYPES(DEF_BIN, mod)
NUM_TYPES(DEF_BIN, fmod)
UINT_TYPES(DEF_BIN, shl)
UINT_TYPES(DEF_BIN, shr)
BOOL_TYPE(DEF_BIN, and)
BOOL_TYPE(DEF_BIN, or)
BOOL_TYPE(DEF_BIN, xor)
BOOL_TYPE(DEF_MAP, lnot)
FLOAT_TYPES(DEF_BIN, add)

static const row_fn gt_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, gt)};
static const row_fn lt_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, lt)};
static const row_fn ge_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, ge)};
static const row_fn le_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, le)};
static const row_fn mod_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, mod)};
static const row_fn fmod_rows[FERRY_DTYPE_COUNT] = {NUM_TYPES(ROW_ENTRY, fmod)};
static const row_fn shl_rows[FERRY_DTYPE_COUNT] = {UINT_TYPES(ROW_ENTRY, shl)};
static const row_fn shr_rows[FERRY_DTYPE_COUNT] = {UINT_TYPES(ROW_ENTRY, shr)};
static const row_fn and_rows[FERRY_DTYPE_COUNT] = {BOOL_TYPE(ROW_ENTRY, and)};
static const row_fn or_rows[FERRY_DTYPE_COUNT] = {BOOL_TYPE(ROW_ENTRY, or)};
static const row_fn xor_rows[FERRY_DTYPE_COUNT] = {BOOL_TYPE(ROW_ENTRY, xor)};
static const map_fn lnot_maps[FERRY_DTYPE_COUNT] = {BOOL_TYPE(MAP_ENTRY, lnot)};
static const row_fn add_rows[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(ROW_ENTRY, add)};

/* Mean's final division: P points to 1/n as a double. */
#define DEF_SCALE(OP, DT, T, SFX, CS, LD, ST)                                                      \
    static void map_##OP##_##SFX(void *o_, const void *a_, int64_t n, const void *p)               \
    {                                                                                              \
        CT_##CS k = (CT_##CS) * (const double *)p;                                                 \
        T *o = o_;                                                                                 \
        const T *a = a_;                                                                           \
        EW_VLOOP(T, o, n, ST(LD(a[i]) * k));                                                       \
    }
FLOAT_TYPES(DEF_SCALE, scale)
static const map_fn scale_maps[FERRY_DTYPE_COUNT] = {FLOAT_TYPES(MAP_ENTRY, scale)};

/* ---------------------------------------------------------------------------------------
 * Binary operators
 * ------------------------------------------------------------------------------------- */

/* The operand view of input B (legacy broadcasting before opset 7) and the output shape. */
static ferry_status *binary_shapes(eng_op_call *c, eng_tensor *bv)
{
    const eng_tensor *a = c->in[0], *b = c->in[1];
    ferry_status *st = legacy_view(c->state, a, b, bv);
    if (st) return st;
    const eng_tensor *ins[2] = {a, bv};
    return eng_broadcast_shapes(c->out[0], ins, 2);
}

static ferry_status *binary_infer(eng_op_call *c, const row_fn *rows, bool bool_out)
{
    ferry_status *st = check_io(c, 2, 2);
    if (st) return st;
    const eng_tensor *a = c->in[0], *b = c->in[1];
    if (!dt_valid(a->dtype) || !rows[a->dtype]) return eng_bad_dtype("input A", a->dtype);
    if (b->dtype != a->dtype) return dtype_mismatch("input B", b->dtype, "input A", a->dtype);
    eng_tensor bv;
    st = binary_shapes(c, &bv);
    if (st) return st;
    c->out[0]->dtype = bool_out ? FERRY_DTYPE_BOOL : a->dtype;
    return NULL;
}

static ferry_status *binary_run(eng_op_call *c, const row_fn *rows)
{
    eng_tensor bv;
    ferry_status *st = binary_shapes(c, &bv);
    if (st) return st;
    const eng_tensor *ins[2] = {c->in[0], &bv};
    broadcast_apply(c, c->out[0], ins, 2, rows[c->in[0]->dtype], NULL, GRAIN_CHEAP);
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
BINARY_OP(gt, true)
BINARY_OP(lt, true)
BINARY_OP(ge, true)
BINARY_OP(le, true)
BINARY_OP(and, true)
BINARY_OP(or, true)
BINARY_OP(xor, true)

/* Mod and BitShift keep the kernel table their attribute selects as state. */
typedef struct table_state {
    const row_fn *rows;
} table_state;

static ferry_status *mod_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    int64_t f = eng_attr_int(node, "fmod", 0);
    if (f != 0 && f != 1)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute fmod must be 0 or 1, got %lld",
                          (long long)f);
    table_state ts = {f ? fmod_rows : mod_rows};
    return save_state(&ts, sizeof(ts), state);
}

static ferry_status *shift_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    const char *dir = eng_attr_string(node, "direction", NULL);
    if (!dir) return core_error(FERRY_ERR_INVALID_MODEL, "attribute direction is missing");
    table_state ts;
    if (!strcmp(dir, "LEFT"))
        ts.rows = shl_rows;
    else if (!strcmp(dir, "RIGHT"))
        ts.rows = shr_rows;
    else
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute direction must be \"LEFT\" or \"RIGHT\", got \"%s\"", dir);
    return save_state(&ts, sizeof(ts), state);
}

/* The state is the kernel table rather than legacy broadcasting, which neither operator has. */
static ferry_status *table_infer(eng_op_call *c)
{
    const table_state *ts = c->state;
    ferry_status *st = check_io(c, 2, 2);
    if (st) return st;
    const eng_tensor *a = c->in[0], *b = c->in[1];
    if (!dt_valid(a->dtype) || !ts->rows[a->dtype]) return eng_bad_dtype("input A", a->dtype);
    if (b->dtype != a->dtype) return dtype_mismatch("input B", b->dtype, "input A", a->dtype);
    const eng_tensor *ins[2] = {a, b};
    st = eng_broadcast_shapes(c->out[0], ins, 2);
    if (st) return st;
    c->out[0]->dtype = a->dtype;
    return NULL;
}

static ferry_status *table_run(eng_op_call *c)
{
    const table_state *ts = c->state;
    const eng_tensor *ins[2] = {c->in[0], c->in[1]};
    broadcast_apply(c, c->out[0], ins, 2, ts->rows[c->in[0]->dtype], NULL, GRAIN_CHEAP);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Not
 * ------------------------------------------------------------------------------------- */

static ferry_status *not_infer(eng_op_call *c)
{
    ferry_status *st = check_io(c, 1, 1);
    if (st) return st;
    if (c->in[0]->dtype != FERRY_DTYPE_BOOL) return eng_bad_dtype("input", c->in[0]->dtype);
    eng_same_shape(c->out[0], c->in[0]);
    return NULL;
}

static ferry_status *not_run(eng_op_call *c)
{
    map_apply(c, c->out[0], c->in[0], lnot_maps[FERRY_DTYPE_BOOL], NULL, GRAIN_CHEAP);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Sum and Mean: one or more inputs, broadcast together from opset 8, of one shape before
 * ------------------------------------------------------------------------------------- */

static ferry_status *variadic_infer(eng_op_call *c)
{
    if (c->n_in < 1) return core_error(FERRY_ERR_INVALID_MODEL, "expected at least one input");
    ferry_status *st = check_io(c, c->n_in, c->n_in);
    if (st) return st;
    const eng_tensor *first = c->in[0];
    ferry_dtype dt = first->dtype;
    if (!dt_valid(dt) || !add_rows[dt]) return eng_bad_dtype("input 0", dt);
    for (int i = 1; i < c->n_in; i++) {
        const eng_tensor *t = c->in[i];
        char what[32];
        snprintf(what, sizeof(what), "input %d", i);
        if (t->dtype != dt) return dtype_mismatch(what, t->dtype, "input 0", dt);
        if (c->opset >= 8) continue;
        bool same = t->rank == first->rank;
        for (int d = 0; same && d < t->rank; d++) same = t->dims[d] == first->dims[d];
        if (!same) {
            char s1[128], s2[128];
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "%s: shape %s differs from input 0's %s (opset %d does not "
                              "broadcast)",
                              what, eng_shape_str(t, s1, sizeof(s1)),
                              eng_shape_str(first, s2, sizeof(s2)), c->opset);
        }
    }
    st = eng_broadcast_shapes(c->out[0], (const eng_tensor *const *)c->in, c->n_in);
    if (st) return st;
    c->out[0]->dtype = dt;
    return NULL;
}

static void sum_into_out(eng_op_call *c)
{
    eng_tensor *out = c->out[0];
    if (c->n_in == 1) {
        copy_tensor(out, c->in[0]);
        return;
    }
    row_fn fn = add_rows[out->dtype];
    /* Folds out = out + in[k] after the first pair. An input sharing the output's buffer must
     * be read before anything overwrites it, so it goes into the first pair. */
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
}

static ferry_status *sum_run(eng_op_call *c)
{
    if (eng_numel(c->out[0]) == 0) return NULL;
    sum_into_out(c);
    return NULL;
}

static ferry_status *mean_run(eng_op_call *c)
{
    eng_tensor *out = c->out[0];
    if (eng_numel(out) == 0) return NULL;
    sum_into_out(c);
    if (c->n_in > 1) {
        double k = 1.0 / c->n_in;
        map_apply(c, out, out, scale_maps[out->dtype], &k, GRAIN_CHEAP);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Table
 * ------------------------------------------------------------------------------------- */

#define OP(NAME, SINCE, INIT, FINI, INFER, RUN)                                                    \
    {                                                                                              \
        .domain = "", .name = NAME, .since_version = SINCE, .init = INIT, .fini = FINI,            \
        .infer = INFER, .run = RUN                                                                 \
    }

static const eng_op ops[] = {
    OP("Not", 1, NULL, NULL, not_infer, not_run),
    OP("And", 1, legacy_init, free, and_infer, and_run),
    OP("And", 7, NULL, NULL, and_infer, and_run),
    OP("Or", 1, legacy_init, free, or_infer, or_run),
    OP("Or", 7, NULL, NULL, or_infer, or_run),
    OP("Xor", 1, legacy_init, free, xor_infer, xor_run),
    OP("Xor", 7, NULL, NULL, xor_infer, xor_run),
    OP("Greater", 1, legacy_init, free, gt_infer, gt_run),
    OP("Greater", 7, NULL, NULL, gt_infer, gt_run),
    OP("Less", 1, legacy_init, free, lt_infer, lt_run),
    OP("Less", 7, NULL, NULL, lt_infer, lt_run),
    OP("GreaterOrEqual", 12, NULL, NULL, ge_infer, ge_run),
    OP("LessOrEqual", 12, NULL, NULL, le_infer, le_run),
    OP("Mod", 10, mod_init, free, table_infer, table_run),
    OP("BitShift", 11, shift_init, free, table_infer, table_run),
    OP("Sum", 1, NULL, NULL, variadic_infer, sum_run),
    OP("Mean", 1, NULL, NULL, variadic_infer, mean_run),
};

const eng_op_table eng_ops_logic = {ops, sizeof(ops) / sizeof(ops[0])};
