/* quant.c - linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and
 * the integer products MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv.
 *
 * Arithmetic follows the ONNX spec and onnxruntime bit for bit:
 *   quantize    q = saturate(round_half_even(x / scale) + zero_point), the division in float
 *               (in double for int32 inputs, as NumPy promotes them);
 *   dequantize  x = (q - zero_point) * scale;
 *   products    int32 sums of (a - a_zero_point) * (b - b_zero_point), wrapping around on
 *               overflow as the spec allows ("accumulation may overflow iff in 32 bits");
 *   requantize  QLinear* outputs are saturate(round_half_even(acc * m) + y_zero_point) with the
 *               float multiplier m = a_scale * b_scale / y_scale, as onnxruntime computes it.
 * Rounding uses nearbyint() under the default round-to-nearest-even mode.
 *
 * The integer products subtract the zero points while widening both operands to float in the
 * workspace, whatever the mix of int8 and uint8, and multiply them exactly with the float GEMM
 * (see exact_product), which is several times faster than integer loops. Convolutions unroll
 * windows into a column matrix (im2col, a chunk of output positions at a time); padding
 * becomes 0 after the zero point is subtracted, which is what padding with the zero point
 * means.
 */
#include "engine/op.h"

#include "engine/kernels/gemm.h"
#include "engine/kernels/simd.h"
#include "engine/kernels/window.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

KERN_FAST_LOOPS

/* Upper bound for a chunk of the im2col matrix (floats) and its floor in columns. */
#define COL_BUDGET ((int64_t)1 << 19)
#define MIN_CHUNK 256

static size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static const eng_tensor *input(const eng_op_call *call, int i)
{
    return i < call->n_in ? call->in[i] : NULL;
}

static bool is_q8(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_UINT8 || dt == FERRY_DTYPE_INT8;
}

static void q_range(ferry_dtype dt, int32_t *lo, int32_t *hi)
{
    *lo = dt == FERRY_DTYPE_INT8 ? -128 : 0;
    *hi = dt == FERRY_DTYPE_INT8 ? 127 : 255;
}

/* Element I of an int8, uint8 or int32 tensor. */
static inline int32_t int_at(ferry_dtype dt, const void *data, int64_t i)
{
    switch (dt) {
    case FERRY_DTYPE_UINT8: return ((const uint8_t *)data)[i];
    case FERRY_DTYPE_INT8: return ((const int8_t *)data)[i];
    default: return ((const int32_t *)data)[i];
    }
}

static inline void store_q8(ferry_dtype dt, void *data, int64_t i, int32_t v)
{
    if (dt == FERRY_DTYPE_UINT8)
        ((uint8_t *)data)[i] = (uint8_t)v;
    else
        ((int8_t *)data)[i] = (int8_t)v;
}

/* round_half_even(V) + ZP saturated to [LO, HI]; NaN maps to the zero point. */
static inline int32_t saturate(float v, int32_t zp, int32_t lo, int32_t hi)
{
    float q = nearbyintf(v) + (float)zp;
    if (!(q == q)) return zp < lo ? lo : zp > hi ? hi : zp;
    if (q < (float)lo) return lo;
    if (q > (float)hi) return hi;
    return (int32_t)q;
}

static inline int32_t saturate_d(double v, int32_t zp, int32_t lo, int32_t hi)
{
    double q = nearbyint(v) + (double)zp;
    if (!(q == q)) return zp < lo ? lo : zp > hi ? hi : zp;
    if (q < (double)lo) return lo;
    if (q > (double)hi) return hi;
    return (int32_t)q;
}

static ferry_status *need_dtype(const char *what, const eng_tensor *t, ferry_dtype want)
{
    if (t->dtype == want) return NULL;
    return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be %s, got %s", what,
                      ferry_dtype_name(want), ferry_dtype_name(t->dtype));
}

static ferry_status *need_scalar(const char *what, const eng_tensor *t)
{
    char s[128];
    if (eng_numel(t) == 1) return NULL;
    return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must hold one value, got shape %s", what,
                      eng_shape_str(t, s, sizeof(s)));
}

static ferry_status *alloc_state(size_t size, void **state)
{
    *state = calloc(1, size);
    return *state ? NULL : core_error(FERRY_ERR_NO_MEMORY, "out of memory");
}

/* ---------------------------------------------------------------------------------------
 * QuantizeLinear and DequantizeLinear, per tensor or per axis (opset 13)
 * ------------------------------------------------------------------------------------- */

typedef struct axis_attrs {
    int64_t axis;
} axis_attrs;

static ferry_status *axis_init(const eng_node *node, int opset, void **state)
{
    ferry_status *st = alloc_state(sizeof(axis_attrs), state);
    if (st) return st;
    /* Opset 10 had no axis: its scale and zero point are scalars. */
    ((axis_attrs *)*state)->axis = opset >= 13 ? eng_attr_int(node, "axis", 1) : 1;
    return NULL;
}

/* How a scale (and zero point) of one value per tensor or per slice along an axis maps onto
 * X: X is [outer, channels, inner] and the parameters have CHANNELS values (1 per tensor). */
typedef struct axis_plan {
    int64_t outer, channels, inner;
} axis_plan;

static ferry_status *axis_plan_make(const eng_op_call *call, const eng_tensor *x,
                                    const eng_tensor *scale, const eng_tensor *zp,
                                    axis_plan *p)
{
    const axis_attrs *at = call->state;
    char s1[128], s2[128];
    p->outer = p->channels = 1;
    p->inner = eng_numel(x);
    if (zp && eng_numel(zp) != eng_numel(scale))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "the scale %s and the zero point %s must have the same shape",
                          eng_shape_str(scale, s1, sizeof(s1)), eng_shape_str(zp, s2, sizeof(s2)));
    if (eng_numel(scale) == 1) return NULL; /* per tensor, whatever its rank */
    if (call->opset < 13)
        return need_scalar("the scale", scale);
    int axis;
    ferry_status *st = eng_axis(at->axis, x->rank, &axis);
    if (st) return st;
    if (scale->rank != 1 || scale->dims[0] != x->dims[axis])
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "a per-axis scale must be 1-D with one value per slice along axis "
                          "%d of the input %s, got shape %s",
                          axis, eng_shape_str(x, s1, sizeof(s1)),
                          eng_shape_str(scale, s2, sizeof(s2)));
    p->outer = 1;
    for (int d = 0; d < axis; d++) p->outer *= x->dims[d];
    p->channels = x->dims[axis];
    p->inner = 1;
    for (int d = axis + 1; d < x->rank; d++) p->inner *= x->dims[d];
    return NULL;
}

static ferry_status *quantize_check(const eng_op_call *call, axis_plan *p)
{
    const eng_tensor *x = input(call, 0), *scale = input(call, 1), *zp = input(call, 2);
    if (!x || !scale)
        return core_error(FERRY_ERR_INVALID_MODEL, "QuantizeLinear needs inputs x and y_scale");
    if (x->dtype != FERRY_DTYPE_FLOAT && x->dtype != FERRY_DTYPE_INT32)
        return eng_bad_dtype("input x", x->dtype);
    ferry_status *st = need_dtype("input y_scale", scale, FERRY_DTYPE_FLOAT);
    if (st) return st;
    if (zp && !is_q8(zp->dtype)) return eng_bad_dtype("input y_zero_point", zp->dtype);
    return axis_plan_make(call, x, scale, zp, p);
}

static ferry_status *quantize_infer(eng_op_call *call)
{
    axis_plan p;
    ferry_status *st = quantize_check(call, &p);
    if (st) return st;
    const eng_tensor *zp = input(call, 2);
    eng_same_shape(call->out[0], call->in[0]);
    call->out[0]->dtype = zp ? zp->dtype : FERRY_DTYPE_UINT8;
    return NULL;
}

/* saturate() over N floats divided by S, in loops that vectorise: rounding adds and subtracts
 * 1.5 * 2^23, which rounds half to even like nearbyintf for the clamped magnitudes. */
#define DEFINE_QUANTIZE_ROW(name, T, LO, HI)                                                  \
    KERN_CLONES static void name(const float *x, float s, int32_t zp, T *y, int64_t n)        \
    {                                                                                         \
        float lo = LO, hi = HI, z = (float)zp;                                                \
        for (int64_t i = 0; i < n; i++) {                                                     \
            float v = x[i] / s;                                                               \
            v = v == v ? v : 0.0f; /* NaN quantizes to the zero point */                      \
            v = v > -1024.0f ? (v < 1024.0f ? v : 1024.0f) : -1024.0f;                        \
            v = (v + 12582912.0f) - 12582912.0f + z;                                          \
            v = v < lo ? lo : v > hi ? hi : v;                                                \
            y[i] = (T)(int32_t)v;                                                             \
        }                                                                                     \
    }

DEFINE_QUANTIZE_ROW(quantize_row_u8, uint8_t, 0.0f, 255.0f)
DEFINE_QUANTIZE_ROW(quantize_row_i8, int8_t, -128.0f, 127.0f)

/* The requantization of int32 sums (plus BIAS, wrapping) by multiplier M, as saturate() does,
 * in loops that vectorise (see DEFINE_QUANTIZE_ROW). */
#define DEFINE_REQUANT_ROW(name, T, LO, HI)                                                   \
    KERN_CLONES static void name(const int32_t *acc, int32_t bias, float m, int32_t zp, T *y, \
                                 int64_t n)                                                   \
    {                                                                                         \
        float lo = LO, hi = HI, z = (float)zp;                                                \
        for (int64_t i = 0; i < n; i++) {                                                     \
            float v = (float)(int32_t)((uint32_t)acc[i] + (uint32_t)bias) * m;                \
            v = v == v ? v : 0.0f;                                                            \
            v = v > -1024.0f ? (v < 1024.0f ? v : 1024.0f) : -1024.0f;                        \
            v = (v + 12582912.0f) - 12582912.0f + z;                                          \
            v = v < lo ? lo : v > hi ? hi : v;                                                \
            y[i] = (T)(int32_t)v;                                                             \
        }                                                                                     \
    }

DEFINE_REQUANT_ROW(requant_row_u8, uint8_t, 0.0f, 255.0f)
DEFINE_REQUANT_ROW(requant_row_i8, int8_t, -128.0f, 127.0f)

static void requant_row(ferry_dtype dt, const int32_t *acc, int32_t bias, float m, int32_t zp,
                        void *y, int64_t n)
{
    if (dt == FERRY_DTYPE_UINT8)
        requant_row_u8(acc, bias, m, zp, y, n);
    else
        requant_row_i8(acc, bias, m, zp, y, n);
}

static ferry_status *quantize_run(eng_op_call *call)
{
    axis_plan p;
    ferry_status *st = quantize_check(call, &p);
    if (st) return st;
    const eng_tensor *x = call->in[0], *scale = call->in[1], *zp = input(call, 2);
    eng_tensor *y = call->out[0];
    int32_t lo, hi;
    q_range(y->dtype, &lo, &hi);
    const float *sc = scale->data;
    int64_t i = 0;
    for (int64_t o = 0; o < p.outer; o++) {
        for (int64_t c = 0; c < p.channels; c++) {
            float s = sc[c];
            int32_t z = zp ? int_at(zp->dtype, zp->data, c) : 0;
            if (x->dtype == FERRY_DTYPE_FLOAT) {
                const float *xv = (const float *)x->data + i;
                if (y->dtype == FERRY_DTYPE_UINT8)
                    quantize_row_u8(xv, s, z, (uint8_t *)y->data + i, p.inner);
                else
                    quantize_row_i8(xv, s, z, (int8_t *)y->data + i, p.inner);
                i += p.inner;
            } else {
                const int32_t *xv = x->data;
                for (int64_t j = 0; j < p.inner; j++, i++)
                    store_q8(y->dtype, y->data, i,
                             saturate_d((double)xv[i] / (double)s, z, lo, hi));
            }
        }
    }
    return NULL;
}

static ferry_status *dequantize_check(const eng_op_call *call, axis_plan *p)
{
    const eng_tensor *x = input(call, 0), *scale = input(call, 1), *zp = input(call, 2);
    if (!x || !scale)
        return core_error(FERRY_ERR_INVALID_MODEL, "DequantizeLinear needs inputs x and x_scale");
    if (!is_q8(x->dtype) && x->dtype != FERRY_DTYPE_INT32)
        return eng_bad_dtype("input x", x->dtype);
    ferry_status *st = need_dtype("input x_scale", scale, FERRY_DTYPE_FLOAT);
    if (st) return st;
    if (zp && zp->dtype != x->dtype)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input x_zero_point (%s) must have the type of x (%s)",
                          ferry_dtype_name(zp->dtype), ferry_dtype_name(x->dtype));
    return axis_plan_make(call, x, scale, zp, p);
}

static ferry_status *dequantize_infer(eng_op_call *call)
{
    axis_plan p;
    ferry_status *st = dequantize_check(call, &p);
    if (st) return st;
    eng_same_shape(call->out[0], call->in[0]);
    call->out[0]->dtype = FERRY_DTYPE_FLOAT;
    return NULL;
}

/* Per-slice loops, one per input type so that the inner loop vectorises. For 8-bit inputs the
 * float product of two exact values rounds once, like NumPy's double product cast to float;
 * int32 differences need the double. */
#define DEFINE_DEQUANT(name, T, ACC)                                                          \
    static void name(const T *x, const T *zp, const float *sc, const axis_plan *p, float *y)  \
    {                                                                                         \
        int64_t i = 0;                                                                        \
        for (int64_t o = 0; o < p->outer; o++) {                                              \
            for (int64_t c = 0; c < p->channels; c++, i += p->inner) {                        \
                ACC s = sc[c], z = zp ? (ACC)zp[c] : 0;                                       \
                for (int64_t j = 0; j < p->inner; j++)                                        \
                    y[i + j] = (float)(((ACC)x[i + j] - z) * s);                              \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_DEQUANT(dequant_u8, uint8_t, float)
DEFINE_DEQUANT(dequant_i8, int8_t, float)
DEFINE_DEQUANT(dequant_i32, int32_t, double)

static ferry_status *dequantize_run(eng_op_call *call)
{
    axis_plan p;
    ferry_status *st = dequantize_check(call, &p);
    if (st) return st;
    const eng_tensor *x = call->in[0], *scale = call->in[1], *zp = input(call, 2);
    const void *z = zp ? zp->data : NULL;
    float *y = call->out[0]->data;
    switch (x->dtype) {
    case FERRY_DTYPE_UINT8: dequant_u8(x->data, z, scale->data, &p, y); break;
    case FERRY_DTYPE_INT8: dequant_i8(x->data, z, scale->data, &p, y); break;
    default: dequant_i32(x->data, z, scale->data, &p, y); break;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * DynamicQuantizeLinear: uint8 with a scale and zero point covering [min(x, 0), max(x, 0)]
 * ------------------------------------------------------------------------------------- */

static ferry_status *dynq_infer(eng_op_call *call)
{
    const eng_tensor *x = call->in[0];
    if (x->dtype != FERRY_DTYPE_FLOAT) return eng_bad_dtype("input x", x->dtype);
    eng_same_shape(call->out[0], x);
    call->out[0]->dtype = FERRY_DTYPE_UINT8;
    if (call->n_out > 1 && call->out[1]) {
        call->out[1]->dtype = FERRY_DTYPE_FLOAT;
        call->out[1]->rank = 0;
    }
    if (call->n_out > 2 && call->out[2]) {
        call->out[2]->dtype = FERRY_DTYPE_UINT8;
        call->out[2]->rank = 0;
    }
    return NULL;
}

static ferry_status *dynq_run(eng_op_call *call)
{
    const eng_tensor *x = call->in[0];
    const float *xv = x->data;
    int64_t n = eng_numel(x);
    /* The range always includes 0, so that 0 quantizes exactly. */
    float lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        lo = xv[i] < lo ? xv[i] : lo;
        hi = xv[i] > hi ? xv[i] : hi;
    }
    /* An all-zero input would give scale 0 and a zero point of 0/0; onnxruntime uses 1. */
    float scale = hi == lo ? 1.0f : (hi - lo) / 255.0f;
    float zpf = 0.0f - lo / scale;
    zpf = zpf < 0.0f ? 0.0f : zpf > 255.0f ? 255.0f : zpf;
    int32_t zp = (int32_t)nearbyintf(zpf);
    uint8_t *y = call->out[0]->data;
    quantize_row_u8(xv, scale, zp, y, n);
    if (call->n_out > 1 && call->out[1]) *(float *)call->out[1]->data = scale;
    if (call->n_out > 2 && call->out[2]) *(uint8_t *)call->out[2]->data = (uint8_t)zp;
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Exact integer products on the float GEMM
 * ------------------------------------------------------------------------------------- */

/* Integers below 2^24 in magnitude are exact in float, and so is every partial sum of a
 * product whose terms add up to less than that. The operands here are differences of 8-bit
 * values (at most 255 in magnitude), so kern_gemm_run computes their product exactly over
 * slices of K short enough that slice * max|a| * max|b| < 2^24, and the slices' results are
 * summed in int32. With the usual zero points (|a|, |b| <= 128) a slice holds 1024 terms. */
#define EXACT_LIMIT 16777215.0

/* Slice length for operands of at most MAX_A and MAX_B in magnitude. */
static int64_t exact_slice(int64_t k, int32_t max_a, int32_t max_b)
{
    double per = (double)max_a * (double)max_b;
    if (k < 1) return 1;
    if (per <= 0) return k;
    int64_t s = (int64_t)(EXACT_LIMIT / per);
    return s < 1 ? 1 : s > k ? k : s;
}

/* Scratch bytes of exact_product for these sizes on THREADS threads (slices only shorten K,
 * which never needs more). */
static size_t exact_workspace(int64_t m, int64_t n, int64_t k, int threads)
{
    kern_gemm g;
    memset(&g, 0, sizeof(g));
    g.m = m, g.n = n, g.k = k, g.isa = KERN_ISA_AUTO, g.alpha = 1.0f, g.lda = k, g.ldb = n;
    g.ldc = n;
    size_t full = kern_gemm_workspace(&g, threads);
    g.k = min64(k, 258); /* the shortest slice (255 * 255 per term) */
    size_t shortest = kern_gemm_workspace(&g, threads);
    return align64(full > shortest ? full : shortest);
}

/* C[M, N] = A[M, K] * B[K, N] in int32 (wrapping) from float operands holding integers;
 * SLICE from exact_slice, TMP holds M * N floats. */
static void exact_product(core_threadpool *pool, int64_t m, int64_t n, int64_t k,
                          const float *a, int64_t lda, const float *b, int64_t ldb, int32_t *c,
                          int64_t ldc, int64_t slice, float *tmp, void *ws)
{
    if (k < 1) {
        for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(int32_t));
        return;
    }
    for (int64_t k0 = 0; k0 < k; k0 += slice) {
        kern_gemm g;
        memset(&g, 0, sizeof(g));
        g.m = m, g.n = n, g.k = min64(slice, k - k0), g.isa = KERN_ISA_AUTO;
        g.a = a + k0, g.lda = lda, g.alpha = 1.0f;
        g.b = b + k0 * ldb, g.ldb = ldb;
        g.c = tmp, g.ldc = n, g.beta = 0.0f;
        kern_gemm_run(&g, pool, ws);
        for (int64_t i = 0; i < m; i++) {
            int32_t *restrict ci = c + i * ldc;
            const float *restrict ti = tmp + i * n;
            if (k0 == 0)
                for (int64_t j = 0; j < n; j++) ci[j] = (int32_t)ti[j];
            else
                for (int64_t j = 0; j < n; j++)
                    ci[j] = (int32_t)((uint32_t)ci[j] + (uint32_t)(int32_t)ti[j]);
        }
    }
}

/* The largest |X[i] - ZP| over N 8-bit values. */
static int32_t max_abs_diff(ferry_dtype dt, const void *x, int64_t n, int32_t zp)
{
    int32_t lo = 255, hi = -255; /* the range of X */
    if (dt == FERRY_DTYPE_UINT8) {
        const uint8_t *v = x;
        for (int64_t i = 0; i < n; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
    } else {
        const int8_t *v = x;
        for (int64_t i = 0; i < n; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
    }
    if (n == 0) return 0;
    int32_t a = lo - zp, b = hi - zp;
    a = a < 0 ? -a : a;
    b = b < 0 ? -b : b;
    return a > b ? a : b;
}

/* DST[i] = X[i] - ZP for 8-bit X; returns the largest magnitude written. */
static int32_t widen_sub(ferry_dtype dt, const void *x, int32_t zp, float *dst, int64_t n)
{
    int32_t lo = 0, hi = 0;
    if (dt == FERRY_DTYPE_UINT8) {
        const uint8_t *v = x;
        for (int64_t i = 0; i < n; i++) {
            int32_t d = v[i] - zp;
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
            dst[i] = (float)d;
        }
    } else {
        const int8_t *v = x;
        for (int64_t i = 0; i < n; i++) {
            int32_t d = v[i] - zp;
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
            dst[i] = (float)d;
        }
    }
    return -lo > hi ? -lo : hi;
}

/* ---------------------------------------------------------------------------------------
 * MatMulInteger and QLinearMatMul: numpy matmul broadcasting
 * ------------------------------------------------------------------------------------- */

/* How a quantization parameter (zero point or scale) of A varies: per tensor, per row of
 * every matrix, or per row of each batch matrix ([..., M, 1]); of B the same by column. */
typedef enum qparam_kind { QP_TENSOR, QP_VECTOR, QP_BATCHED } qparam_kind;

typedef struct qmm_plan {
    int64_t m, n, k;
    int out_rank;
    int64_t out_dims[FERRY_MAX_RANK];
    int batch_rank;
    int64_t batch[FERRY_MAX_RANK];
    int64_t a_step[FERRY_MAX_RANK], b_step[FERRY_MAX_RANK]; /* 0 where broadcast */
    int64_t batch_count, a_count, b_count;
} qmm_plan;

static ferry_status *qmm_plan_make(const eng_tensor *a, const eng_tensor *b, qmm_plan *p)
{
    char s1[128], s2[128];
    if (a->rank == 0 || b->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "matrix product needs inputs of at least 1 dim, got shapes %s and %s",
                          eng_shape_str(a, s1, sizeof(s1)), eng_shape_str(b, s2, sizeof(s2)));
    int a_batch = a->rank >= 2 ? a->rank - 2 : 0, b_batch = b->rank >= 2 ? b->rank - 2 : 0;
    p->m = a->rank >= 2 ? a->dims[a->rank - 2] : 1;
    p->k = a->dims[a->rank - 1];
    int64_t bk = b->rank >= 2 ? b->dims[b->rank - 2] : b->dims[0];
    p->n = b->rank >= 2 ? b->dims[b->rank - 1] : 1;
    if (bk != p->k)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "inner dimensions do not match: A has shape %s and B has shape %s",
                          eng_shape_str(a, s1, sizeof(s1)), eng_shape_str(b, s2, sizeof(s2)));
    int rank = a_batch > b_batch ? a_batch : b_batch;
    p->batch_rank = rank;
    p->batch_count = 1;
    int64_t ac = 1, bc = 1;
    for (int d = rank - 1; d >= 0; d--) {
        int ad = d - (rank - a_batch), bd = d - (rank - b_batch);
        int64_t x = ad >= 0 ? a->dims[ad] : 1, y = bd >= 0 ? b->dims[bd] : 1;
        if (x != y && x != 1 && y != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "batch dimensions of A %s and B %s cannot be broadcast together",
                              eng_shape_str(a, s1, sizeof(s1)),
                              eng_shape_str(b, s2, sizeof(s2)));
        p->batch[d] = x == 0 || y == 0 ? 0 : (x > y ? x : y);
        p->a_step[d] = x == 1 ? 0 : ac;
        p->b_step[d] = y == 1 ? 0 : bc;
        ac *= x;
        bc *= y;
        p->batch_count *= p->batch[d];
    }
    p->a_count = ac;
    p->b_count = bc;
    p->out_rank = 0;
    for (int d = 0; d < rank; d++) p->out_dims[p->out_rank++] = p->batch[d];
    if (a->rank >= 2) p->out_dims[p->out_rank++] = p->m;
    if (b->rank >= 2) p->out_dims[p->out_rank++] = p->n;
    return NULL;
}

/* Classifies parameter T of operand X (A when ROWS, else B), whose matrices are LEN long
 * along the quantized dim and COUNT in number. */
static ferry_status *qparam_kind_of(const char *what, const eng_tensor *t, const eng_tensor *x,
                                    bool rows, int64_t len, int64_t count, qparam_kind *kind)
{
    char s1[128], s2[128];
    if (!t || eng_numel(t) == 1) {
        *kind = QP_TENSOR;
        return NULL;
    }
    if (t->rank == 1 && t->dims[0] == len) {
        *kind = QP_VECTOR;
        return NULL;
    }
    /* [..., M, 1] for A, [..., 1, N] for B, with the operand's batch dims. */
    bool ok = x->rank >= 2 && t->rank == x->rank;
    for (int d = 0; ok && d < x->rank - 2; d++) ok = t->dims[d] == x->dims[d];
    if (ok)
        ok = rows ? t->dims[t->rank - 2] == len && t->dims[t->rank - 1] == 1
                  : t->dims[t->rank - 2] == 1 && t->dims[t->rank - 1] == len;
    if (ok && eng_numel(t) == len * count) {
        *kind = QP_BATCHED;
        return NULL;
    }
    return core_error(FERRY_ERR_INVALID_ARGUMENT,
                      "%s of shape %s does not fit the input %s: expected one value, or one "
                      "per %s",
                      what, eng_shape_str(t, s1, sizeof(s1)), eng_shape_str(x, s2, sizeof(s2)),
                      rows ? "row" : "column");
}

/* Offset into a parameter of KIND for matrix MATRIX (of the operand's own matrices). */
static inline int64_t qparam_base(qparam_kind kind, int64_t matrix, int64_t len)
{
    return kind == QP_BATCHED ? matrix * len : 0;
}

static inline int64_t qparam_index(qparam_kind kind, int64_t base, int64_t i)
{
    return kind == QP_TENSOR ? 0 : base + i;
}

typedef struct qmm_call {
    qmm_plan p;
    bool qlinear;
    const eng_tensor *a, *b, *azp, *bzp, *asc, *bsc, *ysc, *yzp;
    qparam_kind azp_kind, bzp_kind, asc_kind, bsc_kind;
} qmm_call;

static ferry_status *qmm_check(const eng_op_call *call, bool qlinear, qmm_call *q)
{
    memset(q, 0, sizeof(*q));
    q->qlinear = qlinear;
    ferry_status *st;
    if (qlinear) {
        for (int i = 0; i < 8; i++)
            if (!input(call, i))
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "QLinearMatMul needs all 8 inputs, input %d is missing", i);
        q->a = call->in[0], q->asc = call->in[1], q->azp = call->in[2];
        q->b = call->in[3], q->bsc = call->in[4], q->bzp = call->in[5];
        q->ysc = call->in[6], q->yzp = call->in[7];
        if ((st = need_dtype("input a_scale", q->asc, FERRY_DTYPE_FLOAT)) ||
            (st = need_dtype("input b_scale", q->bsc, FERRY_DTYPE_FLOAT)) ||
            (st = need_dtype("input y_scale", q->ysc, FERRY_DTYPE_FLOAT)))
            return st;
        if (!is_q8(q->yzp->dtype)) return eng_bad_dtype("input y_zero_point", q->yzp->dtype);
        if ((st = need_scalar("input y_scale", q->ysc)) ||
            (st = need_scalar("input y_zero_point", q->yzp)))
            return st;
    } else {
        q->a = input(call, 0), q->b = input(call, 1);
        q->azp = input(call, 2), q->bzp = input(call, 3);
        if (!q->a || !q->b)
            return core_error(FERRY_ERR_INVALID_MODEL, "MatMulInteger needs inputs A and B");
    }
    if (!is_q8(q->a->dtype)) return eng_bad_dtype("input A", q->a->dtype);
    if (!is_q8(q->b->dtype)) return eng_bad_dtype("input B", q->b->dtype);
    if (q->azp && q->azp->dtype != q->a->dtype)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "A's zero point must have A's type");
    if (q->bzp && q->bzp->dtype != q->b->dtype)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "B's zero point must have B's type");
    if ((st = qmm_plan_make(q->a, q->b, &q->p))) return st;
    const qmm_plan *p = &q->p;
    int64_t a_mats = p->a_count, b_mats = p->b_count;
    if ((st = qparam_kind_of("A's zero point", q->azp, q->a, true, p->m, a_mats, &q->azp_kind)) ||
        (st = qparam_kind_of("B's zero point", q->bzp, q->b, false, p->n, b_mats, &q->bzp_kind)))
        return st;
    if (qlinear &&
        ((st = qparam_kind_of("a_scale", q->asc, q->a, true, p->m, a_mats, &q->asc_kind)) ||
         (st = qparam_kind_of("b_scale", q->bsc, q->b, false, p->n, b_mats, &q->bsc_kind))))
        return st;
    return NULL;
}

/* B is one matrix for every batch and A's matrices are all distinct: A's rows then stack
 * into one tall matrix, one product for the whole batch. */
static bool qmm_fold(const qmm_plan *p)
{
    return p->b_count == 1 && p->a_count == p->batch_count;
}

/* Workspace: A' [rows, K] and B' [K, N] as float, the float slice results [rows, N], for
 * QLinearMatMul the int32 sums [rows, N], then the GEMM's scratch. */
typedef struct qmm_ws {
    size_t a, b, tmp, acc, gemm, total;
} qmm_ws;

static void qmm_layout(const qmm_plan *p, bool qlinear, int threads, qmm_ws *l)
{
    int64_t rows = qmm_fold(p) ? p->batch_count * p->m : p->m;
    l->a = 0;
    l->b = l->a + align64((size_t)(rows * p->k) * sizeof(float));
    l->tmp = l->b + align64((size_t)(p->k * p->n) * sizeof(float));
    l->acc = l->tmp + align64((size_t)(rows * p->n) * sizeof(float));
    l->gemm = l->acc + (qlinear ? align64((size_t)(rows * p->n) * sizeof(int32_t)) : 0);
    l->total = l->gemm + exact_workspace(rows, p->n, p->k, threads);
}

static ferry_status *qmm_infer_common(eng_op_call *call, bool qlinear)
{
    qmm_call q;
    ferry_status *st = qmm_check(call, qlinear, &q);
    if (st) return st;
    eng_tensor *y = call->out[0];
    y->dtype = qlinear ? q.yzp->dtype : FERRY_DTYPE_INT32;
    eng_set_shape(y, q.p.out_rank, q.p.out_dims);
    qmm_ws l;
    qmm_layout(&q.p, qlinear, core_threadpool_size(call->threads), &l);
    call->workspace_size = l.total;
    return NULL;
}

static ferry_status *matmul_integer_infer(eng_op_call *call)
{
    return qmm_infer_common(call, false);
}

static ferry_status *qlinear_matmul_infer(eng_op_call *call)
{
    return qmm_infer_common(call, true);
}

/* A' = A - a_zero_point for matrix AI of A (rows may each have their own zero point); returns
 * the largest magnitude. */
static int32_t widen_a(const qmm_call *q, int64_t ai, float *dst)
{
    const qmm_plan *p = &q->p;
    const char *base = (const char *)q->a->data + ai * p->m * p->k;
    int64_t zb = qparam_base(q->azp_kind, ai, p->m);
    int32_t mx = 0;
    for (int64_t i = 0; i < p->m; i++) {
        int32_t zp = q->azp ? int_at(q->azp->dtype, q->azp->data,
                                     qparam_index(q->azp_kind, zb, i)) : 0;
        int32_t v = widen_sub(q->a->dtype, base + i * p->k, zp, dst + i * p->k, p->k);
        mx = v > mx ? v : mx;
    }
    return mx;
}

/* B' = B - b_zero_point for matrix BI of B (columns may each have their own zero point). */
static int32_t widen_b(const qmm_call *q, int64_t bi, float *dst)
{
    const qmm_plan *p = &q->p;
    int64_t n = p->n, k = p->k;
    const char *base = (const char *)q->b->data + bi * k * n;
    if (!q->bzp || q->bzp_kind == QP_TENSOR)
        return widen_sub(q->b->dtype, base, q->bzp ? int_at(q->bzp->dtype, q->bzp->data, 0) : 0,
                         dst, k * n);
    int64_t zb = qparam_base(q->bzp_kind, bi, n);
    int32_t mx = 0;
    for (int64_t r = 0; r < k; r++) {
        for (int64_t j = 0; j < n; j++) {
            int32_t d = int_at(q->b->dtype, base, r * n + j) -
                        int_at(q->bzp->dtype, q->bzp->data, zb + j);
            dst[r * n + j] = (float)d;
            d = d < 0 ? -d : d;
            mx = d > mx ? d : mx;
        }
    }
    return mx;
}

/* Requantizes the int32 sums ACC of output matrix BATCH (from A matrix AI and B matrix BI). */
static void requant_mm(const qmm_call *q, const int32_t *acc, int64_t ai, int64_t bi,
                       void *y, int64_t batch)
{
    const qmm_plan *p = &q->p;
    int32_t lo, hi;
    q_range(q->yzp->dtype, &lo, &hi);
    int32_t yzp = int_at(q->yzp->dtype, q->yzp->data, 0);
    float ys = *(const float *)q->ysc->data;
    const float *as = q->asc->data, *bs = q->bsc->data;
    int64_t ab = qparam_base(q->asc_kind, ai, p->m), bb = qparam_base(q->bsc_kind, bi, p->n);
    int64_t off = batch * p->m * p->n;
    for (int64_t i = 0; i < p->m; i++) {
        float sa = as[qparam_index(q->asc_kind, ab, i)];
        if (q->bsc_kind == QP_TENSOR) {
            requant_row(q->yzp->dtype, acc + i * p->n, 0, sa * bs[0] / ys, yzp,
                        (char *)y + off + i * p->n, p->n);
            continue;
        }
        for (int64_t j = 0; j < p->n; j++) {
            float mult = sa * bs[qparam_index(q->bsc_kind, bb, j)] / ys;
            store_q8(q->yzp->dtype, y, off + i * p->n + j,
                     saturate((float)acc[i * p->n + j] * mult, yzp, lo, hi));
        }
    }
}

static ferry_status *qmm_run_common(eng_op_call *call, bool qlinear)
{
    qmm_call q;
    ferry_status *st = qmm_check(call, qlinear, &q);
    if (st) return st;
    const qmm_plan *p = &q.p;
    qmm_ws l;
    qmm_layout(p, qlinear, core_threadpool_size(call->threads), &l);
    char *ws = call->workspace;
    float *wa = (float *)(ws + l.a), *wb = (float *)(ws + l.b), *tmp = (float *)(ws + l.tmp);
    int32_t *acc = (int32_t *)(ws + l.acc), *y32 = call->out[0]->data;
    int64_t mn = p->m * p->n;
    if (qmm_fold(p)) {
        int32_t max_a = 0;
        for (int64_t b = 0; b < p->batch_count; b++) {
            int32_t v = widen_a(&q, b, wa + b * p->m * p->k);
            max_a = v > max_a ? v : max_a;
        }
        int32_t max_b = widen_b(&q, 0, wb);
        exact_product(call->threads, p->batch_count * p->m, p->n, p->k, wa, p->k, wb, p->n,
                      qlinear ? acc : y32, p->n, exact_slice(p->k, max_a, max_b), tmp,
                      ws + l.gemm);
        if (qlinear)
            for (int64_t b = 0; b < p->batch_count; b++)
                requant_mm(&q, acc + b * mn, b, 0, call->out[0]->data, b);
        return NULL;
    }
    int64_t idx[FERRY_MAX_RANK] = {0}, ai = 0, bi = 0, last_a = -1, last_b = -1;
    int32_t max_a = 0, max_b = 0;
    for (int64_t batch = 0; batch < p->batch_count; batch++) {
        /* Broadcast operands are widened once, not once per output matrix. */
        if (ai != last_a) max_a = widen_a(&q, ai, wa);
        if (bi != last_b) max_b = widen_b(&q, bi, wb);
        last_a = ai, last_b = bi;
        exact_product(call->threads, p->m, p->n, p->k, wa, p->k, wb, p->n,
                      qlinear ? acc : y32 + batch * mn, p->n, exact_slice(p->k, max_a, max_b),
                      tmp, ws + l.gemm);
        if (qlinear) requant_mm(&q, acc, ai, bi, call->out[0]->data, batch);
        for (int d = p->batch_rank - 1; d >= 0; d--) {
            ai += p->a_step[d];
            bi += p->b_step[d];
            if (++idx[d] < p->batch[d]) break;
            ai -= p->a_step[d] * p->batch[d];
            bi -= p->b_step[d] * p->batch[d];
            idx[d] = 0;
        }
    }
    return NULL;
}

static ferry_status *matmul_integer_run(eng_op_call *call)
{
    return qmm_run_common(call, false);
}

static ferry_status *qlinear_matmul_run(eng_op_call *call)
{
    return qmm_run_common(call, true);
}

/* ---------------------------------------------------------------------------------------
 * ConvInteger and QLinearConv
 * ------------------------------------------------------------------------------------- */

typedef struct qconv_attrs {
    kern_window_attrs win;
    int64_t group;
} qconv_attrs;

static ferry_status *qconv_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    qconv_attrs a;
    ferry_status *st = kern_window_read(node, false, false, &a.win);
    if (st) return st;
    a.group = eng_attr_int(node, "group", 1);
    if (a.group < 1 || a.group > ((int64_t)1 << 30))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute group must be positive, got %lld",
                          (long long)a.group);
    if ((st = alloc_state(sizeof(a), state))) return st;
    memcpy(*state, &a, sizeof(a));
    return NULL;
}

typedef struct qconv_call {
    const eng_tensor *x, *w, *xzp, *wzp, *xsc, *wsc, *ysc, *yzp, *bias;
    bool qlinear;
    kern_window win;
    int64_t n, c, m, group, cg, mg, kdim, chunk;
    /* Workspace: W' [M, kdim] and a column chunk [kdim, chunk] as float, the float slice
     * results and (QLinearConv) int32 sums of one group's chunk [mg, chunk], QLinearConv's
     * multipliers [M], then the GEMM's scratch. */
    size_t w_ws, col_ws, tmp_ws, acc_ws, mult_ws, gemm_ws;
} qconv_call;

static ferry_status *qconv_check(const eng_op_call *call, bool qlinear, qconv_call *q)
{
    const qconv_attrs *at = call->state;
    char s1[128], s2[128];
    ferry_status *st;
    memset(q, 0, sizeof(*q));
    q->qlinear = qlinear;
    if (qlinear) {
        for (int i = 0; i < 8; i++)
            if (!input(call, i))
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "QLinearConv needs inputs 0 to 7, input %d is missing", i);
        q->x = call->in[0], q->xsc = call->in[1], q->xzp = call->in[2];
        q->w = call->in[3], q->wsc = call->in[4], q->wzp = call->in[5];
        q->ysc = call->in[6], q->yzp = call->in[7], q->bias = input(call, 8);
        if ((st = need_dtype("input x_scale", q->xsc, FERRY_DTYPE_FLOAT)) ||
            (st = need_dtype("input w_scale", q->wsc, FERRY_DTYPE_FLOAT)) ||
            (st = need_dtype("input y_scale", q->ysc, FERRY_DTYPE_FLOAT)) ||
            (st = need_scalar("input x_scale", q->xsc)) ||
            (st = need_scalar("input y_scale", q->ysc)) ||
            (st = need_scalar("input y_zero_point", q->yzp)))
            return st;
        if (!is_q8(q->yzp->dtype)) return eng_bad_dtype("input y_zero_point", q->yzp->dtype);
        if (q->bias && (st = need_dtype("input B", q->bias, FERRY_DTYPE_INT32))) return st;
    } else {
        q->x = input(call, 0), q->w = input(call, 1);
        q->xzp = input(call, 2), q->wzp = input(call, 3);
        if (!q->x || !q->w)
            return core_error(FERRY_ERR_INVALID_MODEL, "ConvInteger needs inputs x and w");
    }
    const eng_tensor *x = q->x, *w = q->w;
    if (!is_q8(x->dtype)) return eng_bad_dtype("input x", x->dtype);
    if (!is_q8(w->dtype)) return eng_bad_dtype("input w", w->dtype);
    if (q->xzp && q->xzp->dtype != x->dtype)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "x's zero point must have x's type");
    if (q->wzp && q->wzp->dtype != w->dtype)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "w's zero point must have w's type");
    if (q->xzp && (st = need_scalar("x's zero point", q->xzp))) return st;
    if (x->rank < 3)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input x: expected at least 3 dims (batch, channels, spatial...), "
                          "got %d",
                          x->rank);
    if (w->rank != x->rank)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input w: expected %d dims like x, got %d", x->rank, w->rank);
    int nsp = x->rank - 2;
    const int64_t *kernel = w->dims + 2;
    if (at->win.n_kernel) {
        bool same = at->win.n_kernel == nsp;
        for (int i = 0; same && i < nsp; i++) same = at->win.kernel[i] == kernel[i];
        if (!same)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "attribute kernel_shape does not match the spatial dims of w %s",
                              eng_shape_str(w, s1, sizeof(s1)));
    }
    q->n = x->dims[0];
    q->c = x->dims[1];
    q->m = w->dims[0];
    q->group = at->group;
    q->cg = w->dims[1];
    if (q->c != q->cg * q->group || q->m % q->group)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input x %s and w %s do not match with %lld groups",
                          eng_shape_str(x, s1, sizeof(s1)), eng_shape_str(w, s2, sizeof(s2)),
                          (long long)q->group);
    q->mg = q->m / q->group;
    /* Per-output-channel weight parameters: one value, or one per output channel. */
    const eng_tensor *per_m[2] = {q->wzp, q->wsc};
    const char *names[2] = {"w's zero point", "w_scale"};
    for (int i = 0; i < 2; i++) {
        const eng_tensor *t = per_m[i];
        if (t && eng_numel(t) != 1 && (t->rank != 1 || t->dims[0] != q->m))
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "%s of shape %s must hold one value or one per output channel "
                              "(%lld)",
                              names[i], eng_shape_str(t, s1, sizeof(s1)), (long long)q->m);
    }
    if (q->bias && (q->bias->rank != 1 || q->bias->dims[0] != q->m))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input B: expected shape [%lld], got %s", (long long)q->m,
                          eng_shape_str(q->bias, s1, sizeof(s1)));
    if ((st = kern_window_plan(&at->win, nsp, x->dims + 2, kernel, &q->win))) return st;
    if (__builtin_mul_overflow(q->cg, q->win.kernel_size, &q->kdim))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "kernel too large");
    int64_t out = q->win.out_size;
    q->chunk = out;
    if (q->kdim > 0 && out > COL_BUDGET / q->kdim) {
        int64_t c = COL_BUDGET / q->kdim / 16 * 16;
        q->chunk = min64(out, c < MIN_CHUNK ? MIN_CHUNK : c);
    }
    q->w_ws = align64((size_t)(q->m * q->kdim) * sizeof(float));
    q->col_ws = align64((size_t)(q->kdim * q->chunk) * sizeof(float));
    q->tmp_ws = align64((size_t)(q->mg * q->chunk) * sizeof(float));
    q->acc_ws = qlinear ? align64((size_t)(q->mg * q->chunk) * sizeof(int32_t)) : 0;
    q->mult_ws = qlinear ? align64((size_t)q->m * sizeof(float)) : 0;
    q->gemm_ws = exact_workspace(q->mg, q->chunk, q->kdim, core_threadpool_size(call->threads));
    return NULL;
}

static ferry_status *qconv_infer_common(eng_op_call *call, bool qlinear)
{
    qconv_call q;
    ferry_status *st = qconv_check(call, qlinear, &q);
    if (st) return st;
    eng_tensor *y = call->out[0];
    y->dtype = qlinear ? q.yzp->dtype : FERRY_DTYPE_INT32;
    y->rank = q.x->rank;
    y->dims[0] = q.n;
    y->dims[1] = q.m;
    for (int i = 0; i < q.win.nsp; i++) y->dims[2 + i] = q.win.out[i];
    call->workspace_size = q.w_ws + q.col_ws + q.tmp_ws + q.acc_ws + q.mult_ws + q.gemm_ws;
    return NULL;
}

static ferry_status *conv_integer_infer(eng_op_call *call)
{
    return qconv_infer_common(call, false);
}

static ferry_status *qlinear_conv_infer(eng_op_call *call)
{
    return qconv_infer_common(call, true);
}

/* DST[o] = X[o * S] - ZP for N outputs; separate loops per type so that each vectorises. */
KERN_CLONES static void gather_sub(bool u8, const void *x, int64_t s, int32_t zp, float *dst,
                                   int64_t n)
{
    if (u8) {
        const uint8_t *v = x;
        if (s == 1)
            for (int64_t o = 0; o < n; o++) dst[o] = (float)((int32_t)v[o] - zp);
        else
            for (int64_t o = 0; o < n; o++) dst[o] = (float)((int32_t)v[o * s] - zp);
    } else {
        const int8_t *v = x;
        if (s == 1)
            for (int64_t o = 0; o < n; o++) dst[o] = (float)((int32_t)v[o] - zp);
        else
            for (int64_t o = 0; o < n; o++) dst[o] = (float)((int32_t)v[o * s] - zp);
    }
}

/* Columns [J0, J0 + COLS) of the im2col matrix of one group of one image: row (c, taps...)
 * holds x - x_zero_point at the input position each output position sees through that tap,
 * or 0 in the padding. */
static void im2col_q(const qconv_call *q, const void *xg, int32_t xzp, int64_t j0, int64_t cols,
                     float *col)
{
    const kern_window *w = &q->win;
    int nsp = w->nsp;
    bool u8 = q->x->dtype == FERRY_DTYPE_UINT8;
    int64_t row = 0;
    for (int64_t c = 0; c < q->cg; c++) {
        const char *xc = (const char *)xg + c * w->in_size; /* 8-bit elements */
        int64_t kpos[KERN_MAX_SPATIAL] = {0};
        for (int64_t kk = 0; kk < w->kernel_size; kk++, row++) {
            float *dst = col + row * cols;
            int64_t opos[KERN_MAX_SPATIAL];
            int64_t rest = j0;
            for (int d = nsp - 1; d >= 0; d--) {
                opos[d] = rest % w->out[d];
                rest /= w->out[d];
            }
            /* The innermost axis in runs: along one output row the input position moves by
             * the stride, so only its ends need bounds checks. */
            int last = nsp - 1;
            int64_t s = w->stride[last], off = kpos[last] * w->dilation[last] - w->pad_begin[last];
            /* Output positions p of the row reading inside the input: 0 <= p * s + off < in. */
            int64_t in_last = w->in[last];
            int64_t plo = off >= 0 ? 0 : (-off + s - 1) / s;
            int64_t phi = in_last - 1 - off >= 0 ? (in_last - 1 - off) / s + 1 : 0;
            for (int64_t j = 0; j < cols;) {
                int64_t base = 0;
                bool inside = true;
                for (int d = 0; d < last; d++) {
                    int64_t i = opos[d] * w->stride[d] - w->pad_begin[d] +
                                kpos[d] * w->dilation[d];
                    inside = inside && i >= 0 && i < w->in[d];
                    base = base * w->in[d] + i;
                }
                base *= w->in[last];
                int64_t run = min64(w->out[last] - opos[last], cols - j), a = 0, z = 0;
                if (inside) {
                    a = min64(run, plo > opos[last] ? plo - opos[last] : 0);
                    z = min64(run, phi > opos[last] ? phi - opos[last] : 0);
                    z = z < a ? a : z;
                }
                float *d = dst + j;
                for (int64_t o = 0; o < a; o++) d[o] = 0.0f;
                if (z > a)
                    gather_sub(u8, xc + base + (opos[last] + a) * s + off, s, xzp, d + a, z - a);
                for (int64_t o = z; o < run; o++) d[o] = 0.0f;
                j += run;
                opos[last] = 0;
                for (int d = last - 1; d >= 0; d--) {
                    if (++opos[d] < w->out[d]) break;
                    opos[d] = 0;
                }
            }
            for (int d = nsp - 1; d >= 0; d--) {
                if (++kpos[d] < w->kernel[d]) break;
                kpos[d] = 0;
            }
        }
    }
}

/* Requantizes output channels [M0, M0 + MG) for output positions [J0, J0 + COLS). */
static void requant_conv(const qconv_call *q, const int32_t *acc, const float *mult,
                         int64_t m0, int64_t j0, int64_t cols, void *y, int64_t y_off)
{
    int32_t yzp = int_at(q->yzp->dtype, q->yzp->data, 0);
    const int32_t *bias = q->bias ? q->bias->data : NULL;
    int64_t out = q->win.out_size;
    for (int64_t m = 0; m < q->mg; m++) {
        int32_t b = bias ? bias[m0 + m] : 0;
        float s = mult[m0 + m];
        requant_row(q->yzp->dtype, acc + m * cols, b, s, yzp,
                    (char *)y + y_off + m * out + j0, cols);
    }
}

static ferry_status *qconv_run_common(eng_op_call *call, bool qlinear)
{
    qconv_call q;
    ferry_status *st = qconv_check(call, qlinear, &q);
    if (st) return st;
    char *ws = call->workspace;
    float *wq = (float *)ws, *col = (float *)(ws + q.w_ws);
    float *tmp = (float *)(ws + q.w_ws + q.col_ws);
    int32_t *acc = (int32_t *)(ws + q.w_ws + q.col_ws + q.tmp_ws);
    float *mult = (float *)(ws + q.w_ws + q.col_ws + q.tmp_ws + q.acc_ws);
    void *gw = ws + q.w_ws + q.col_ws + q.tmp_ws + q.acc_ws + q.mult_ws;
    int32_t xzp = q.xzp ? int_at(q.xzp->dtype, q.xzp->data, 0) : 0;
    /* W' = w - w_zero_point, row m holding output channel m. */
    bool wzp_per_m = q.wzp && eng_numel(q.wzp) != 1;
    int32_t max_w = 0;
    for (int64_t m = 0; m < q.m; m++) {
        int32_t zp = q.wzp ? int_at(q.wzp->dtype, q.wzp->data, wzp_per_m ? m : 0) : 0;
        int32_t v = widen_sub(q.w->dtype, (const char *)q.w->data + m * q.kdim, zp,
                              wq + m * q.kdim, q.kdim);
        max_w = v > max_w ? v : max_w;
    }
    /* The largest |x - x_zero_point| bounds the columns (padding is 0). */
    int32_t max_x = max_abs_diff(q.x->dtype, q.x->data, eng_numel(q.x), xzp);
    int64_t slice = exact_slice(q.kdim, max_w, max_x);
    if (qlinear) {
        float xs = *(const float *)q.xsc->data, ys = *(const float *)q.ysc->data;
        const float *wsc = q.wsc->data;
        bool per_m = eng_numel(q.wsc) != 1;
        for (int64_t m = 0; m < q.m; m++) mult[m] = xs * wsc[per_m ? m : 0] / ys;
    }
    int64_t in_size = q.win.in_size, out = q.win.out_size;
    for (int64_t n = 0; n < q.n; n++) {
        for (int64_t g = 0; g < q.group; g++) {
            const char *xg = (const char *)q.x->data + (n * q.c + g * q.cg) * in_size;
            const float *wg = wq + g * q.mg * q.kdim;
            int64_t y_off = (n * q.m + g * q.mg) * out;
            for (int64_t j0 = 0; j0 < out; j0 += q.chunk) {
                int64_t cols = min64(q.chunk, out - j0);
                im2col_q(&q, xg, xzp, j0, cols, col);
                if (qlinear) {
                    exact_product(call->threads, q.mg, cols, q.kdim, wg, q.kdim, col, cols, acc,
                                  cols, slice, tmp, gw);
                    requant_conv(&q, acc, mult, g * q.mg, j0, cols, call->out[0]->data, y_off);
                } else {
                    int32_t *y = (int32_t *)call->out[0]->data + y_off + j0;
                    exact_product(call->threads, q.mg, cols, q.kdim, wg, q.kdim, col, cols, y,
                                  out, slice, tmp, gw);
                }
            }
        }
    }
    return NULL;
}

static ferry_status *conv_integer_run(eng_op_call *call)
{
    return qconv_run_common(call, false);
}

static ferry_status *qlinear_conv_run(eng_op_call *call)
{
    return qconv_run_common(call, true);
}

static const eng_op ops[] = {
    {.domain = "", .name = "QuantizeLinear", .since_version = 10, .init = axis_init,
     .fini = free, .infer = quantize_infer, .run = quantize_run},
    {.domain = "", .name = "QuantizeLinear", .since_version = 13, .init = axis_init,
     .fini = free, .infer = quantize_infer, .run = quantize_run},
    {.domain = "", .name = "DequantizeLinear", .since_version = 10, .init = axis_init,
     .fini = free, .infer = dequantize_infer, .run = dequantize_run},
    {.domain = "", .name = "DequantizeLinear", .since_version = 13, .init = axis_init,
     .fini = free, .infer = dequantize_infer, .run = dequantize_run},
    {.domain = "", .name = "DynamicQuantizeLinear", .since_version = 11, .infer = dynq_infer,
     .run = dynq_run},
    {.domain = "", .name = "MatMulInteger", .since_version = 10, .infer = matmul_integer_infer,
     .run = matmul_integer_run},
    {.domain = "", .name = "QLinearMatMul", .since_version = 10, .infer = qlinear_matmul_infer,
     .run = qlinear_matmul_run},
    {.domain = "", .name = "ConvInteger", .since_version = 10, .init = qconv_init, .fini = free,
     .infer = conv_integer_infer, .run = conv_integer_run},
    {.domain = "", .name = "QLinearConv", .since_version = 10, .init = qconv_init, .fini = free,
     .infer = qlinear_conv_infer, .run = qlinear_conv_run},
};

const eng_op_table eng_ops_quant = {ops, sizeof(ops) / sizeof(ops[0])};
