/* pool.c - MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool.
 *
 * Windowed pooling handles 1 to 3 spatial dims by viewing every input as 3-D (missing leading
 * spatial dims have size 1), so one loop nest serves all. float32 without Indices takes a
 * fast path over a padded copy of each plane (pool_padded_f32); Indices, the other types and
 * degenerate geometries use direct loops that skip taps falling in padding. AveragePool's
 * count_include_pad only changes the divisor. float16 is pooled in float32 through the
 * workspace (exact for max, rounded once for average).
 */
#include "engine/op.h"

#include "engine/kernels/half.h"
#include "engine/kernels/parallel.h"
#include "engine/kernels/simd.h"
#include "engine/kernels/window.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

KERN_FAST_LOOPS

#define SP 3 /* spatial dims of the canonical view */

static size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

typedef struct pool_attrs {
    kern_window_attrs win;
    bool max;              /* MaxPool, else AveragePool */
    bool count_include_pad;
    bool column_major;     /* MaxPool storage_order = 1: Indices count down columns first */
} pool_attrs;

/* One pooling call in canonical 3-D form. */
typedef struct pool_plan {
    int64_t planes; /* N * C */
    int64_t in[SP], out[SP], k[SP], s[SP], d[SP], pb[SP], pe[SP];
    int64_t padded[SP]; /* the padded input the outputs read: see pool_padded_f32() */
    int64_t in_size, out_size, padded_size;
    kern_window w; /* as the model sees it, for the output shape */
} pool_plan;

static ferry_status *pool_init_common(const eng_node *node, bool max, void **state)
{
    pool_attrs a;
    memset(&a, 0, sizeof(a));
    ferry_status *st = kern_window_read(node, true, true, &a.win);
    if (st) return st;
    a.max = max;
    if (max) {
        int64_t so = eng_attr_int(node, "storage_order", 0);
        if (so != 0 && so != 1)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute storage_order must be 0 or 1, got %lld", (long long)so);
        a.column_major = so == 1;
    } else {
        int64_t cip = eng_attr_int(node, "count_include_pad", 0);
        if (cip != 0 && cip != 1)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute count_include_pad must be 0 or 1, got %lld",
                              (long long)cip);
        a.count_include_pad = cip == 1;
        if (a.win.n_dilations)
            for (int i = 0; i < a.win.n_dilations; i++)
                if (a.win.dilations[i] != 1)
                    return core_error(FERRY_ERR_UNSUPPORTED,
                                      "AveragePool with dilations is not supported");
    }
    pool_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *s = a;
    *state = s;
    return NULL;
}

static ferry_status *maxpool_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return pool_init_common(node, true, state);
}

static ferry_status *avgpool_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return pool_init_common(node, false, state);
}

static void pool_fini(void *state)
{
    free(state);
}

static bool pool_dtype_ok(bool max, ferry_dtype dt)
{
    if (dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_FLOAT16)
        return true;
    return max && (dt == FERRY_DTYPE_INT8 || dt == FERRY_DTYPE_UINT8);
}

static ferry_status *pool_plan_make(const eng_op_call *call, pool_plan *p)
{
    const pool_attrs *at = call->state;
    const eng_tensor *x = call->n_in > 0 ? call->in[0] : NULL;
    if (!x) return core_error(FERRY_ERR_INVALID_MODEL, "input X is required");
    if (!pool_dtype_ok(at->max, x->dtype)) return eng_bad_dtype("input X", x->dtype);
    if (x->rank < 3)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X: expected at least 3 dims (batch, channels, spatial...), "
                          "got %d",
                          x->rank);
    int nsp = x->rank - 2;
    if (nsp > SP)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "pooling over %d spatial dims is not supported (at most %d)", nsp, SP);
    if (at->win.n_kernel != nsp)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "attribute kernel_shape has %d values, but input X has %d spatial dims",
                          at->win.n_kernel, nsp);
    ferry_status *st = kern_window_plan(&at->win, nsp, x->dims + 2, at->win.kernel, &p->w);
    if (st) return st;
    p->planes = x->dims[0] * x->dims[1];
    for (int i = 0; i < SP; i++) {
        int j = i - (SP - nsp);
        bool real = j >= 0;
        p->in[i] = real ? p->w.in[j] : 1;
        p->out[i] = real ? p->w.out[j] : 1;
        p->k[i] = real ? p->w.kernel[j] : 1;
        p->s[i] = real ? p->w.stride[j] : 1;
        p->d[i] = real ? p->w.dilation[j] : 1;
        p->pb[i] = real ? p->w.pad_begin[j] : 0;
        p->pe[i] = real ? p->w.pad_end[j] : 0;
    }
    p->in_size = p->w.in_size;
    p->out_size = p->w.out_size;
    /* The padded plane of the fast path; huge pads or dilations (legal, if odd) would make it
     * far bigger than the input, and go through the direct kernels instead. */
    p->padded_size = 1;
    bool overflow = false;
    for (int i = 0; i < SP; i++) {
        p->padded[i] = (p->out[i] - 1) * p->s[i] + (p->k[i] - 1) * p->d[i] + 1;
        overflow = overflow || __builtin_mul_overflow(p->padded_size, p->padded[i],
                                                      &p->padded_size);
    }
    if (overflow || p->padded_size > 4 * (p->in_size + p->out_size) + 4096) p->padded_size = 0;
    return NULL;
}

/* Workspace of the float32 path: per-axis window counts, then one padded plane per thread. */
static size_t pool_padded_ws(const pool_plan *p, int slots)
{
    if (!p->padded_size) return 0;
    return align64((size_t)(p->out[0] + p->out[1] + p->out[2]) * sizeof(float)) +
           (size_t)slots * align64((size_t)p->padded_size * sizeof(float));
}

static ferry_status *pool_infer(eng_op_call *call)
{
    const pool_attrs *at = call->state;
    pool_plan p;
    ferry_status *st = pool_plan_make(call, &p);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    y->dtype = x->dtype;
    y->rank = x->rank;
    y->dims[0] = x->dims[0];
    y->dims[1] = x->dims[1];
    for (int i = 0; i < p.w.nsp; i++) y->dims[2 + i] = p.w.out[i];
    if (call->n_out > 1 && call->out[1]) {
        if (!at->max)
            return core_error(FERRY_ERR_INVALID_MODEL, "AveragePool has a single output");
        eng_same_shape(call->out[1], y);
        call->out[1]->dtype = FERRY_DTYPE_INT64;
    }
    if (x->dtype == FERRY_DTYPE_FLOAT16)
        call->workspace_size = align64((size_t)eng_numel(x) * sizeof(float)) +
                               align64((size_t)eng_numel(y) * sizeof(float));
    if (x->dtype == FERRY_DTYPE_FLOAT || x->dtype == FERRY_DTYPE_FLOAT16)
        call->workspace_size += pool_padded_ws(&p, kern_slots(call->threads));
    return NULL;
}

/* The taps [LO, HI) of a window starting at input position START whose positions
 * START + t * D fall inside [BEGIN, END). */
static inline void taps(int64_t start, int64_t k, int64_t d, int64_t begin, int64_t end,
                        int64_t *lo, int64_t *hi)
{
    int64_t l = start >= begin ? 0 : (begin - start + d - 1) / d;
    int64_t h = end - 1 - start >= 0 ? (end - 1 - start) / d + 1 : 0;
    h = min64(h, k);
    *lo = l;
    *hi = h < l ? l : h;
}

/* MaxPool for one element type; INDICES may be NULL. */
#define DEFINE_MAXPOOL(name, T, LOWEST)                                                       \
    static void name(const pool_plan *p, bool colmajor, const T *x, T *y, int64_t *indices)   \
    {                                                                                         \
        for (int64_t pl = 0; pl < p->planes; pl++) {                                          \
            const T *xp = x + pl * p->in_size;                                                \
            int64_t base = pl * p->in_size;                                                   \
            for (int64_t o0 = 0; o0 < p->out[0]; o0++) {                                      \
                int64_t s0 = o0 * p->s[0] - p->pb[0], l0, h0;                                 \
                taps(s0, p->k[0], p->d[0], 0, p->in[0], &l0, &h0);                            \
                for (int64_t o1 = 0; o1 < p->out[1]; o1++) {                                  \
                    int64_t s1 = o1 * p->s[1] - p->pb[1], l1, h1;                             \
                    taps(s1, p->k[1], p->d[1], 0, p->in[1], &l1, &h1);                        \
                    for (int64_t o2 = 0; o2 < p->out[2]; o2++) {                              \
                        int64_t s2 = o2 * p->s[2] - p->pb[2], l2, h2;                         \
                        taps(s2, p->k[2], p->d[2], 0, p->in[2], &l2, &h2);                    \
                        T best = LOWEST;                                                      \
                        int64_t arg = -1;                                                     \
                        for (int64_t t0 = l0; t0 < h0; t0++) {                                \
                            int64_t i0 = s0 + t0 * p->d[0];                                   \
                            for (int64_t t1 = l1; t1 < h1; t1++) {                            \
                                int64_t i1 = s1 + t1 * p->d[1];                               \
                                const T *row = xp + (i0 * p->in[1] + i1) * p->in[2];          \
                                for (int64_t t2 = l2; t2 < h2; t2++) {                        \
                                    int64_t i2 = s2 + t2 * p->d[2];                           \
                                    if (row[i2] > best || arg < 0) {                          \
                                        best = row[i2];                                       \
                                        arg = (i0 * p->in[1] + i1) * p->in[2] + i2;           \
                                    }                                                         \
                                }                                                             \
                            }                                                                 \
                        }                                                                     \
                        *y++ = best;                                                          \
                        if (indices) {                                                        \
                            if (arg >= 0 && colmajor) {                                       \
                                int64_t i2 = arg % p->in[2], r = arg / p->in[2];              \
                                int64_t i1 = r % p->in[1], i0 = r / p->in[1];                 \
                                arg = i0 + p->in[0] * (i1 + p->in[1] * i2);                   \
                            }                                                                 \
                            *indices++ = arg < 0 ? -1 : base + arg;                           \
                        }                                                                     \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_MAXPOOL(maxpool_f32, float, -FLT_MAX)
DEFINE_MAXPOOL(maxpool_f64, double, -DBL_MAX)
DEFINE_MAXPOOL(maxpool_i8, int8_t, INT8_MIN)
DEFINE_MAXPOOL(maxpool_u8, uint8_t, 0)

/* AveragePool: the sum over taps inside the input, divided by their count, or with
 * count_include_pad by the taps inside the padded input. */
#define DEFINE_AVGPOOL(name, T)                                                               \
    static void name(const pool_plan *p, bool include_pad, const T *x, T *y)                 \
    {                                                                                         \
        for (int64_t pl = 0; pl < p->planes; pl++) {                                          \
            const T *xp = x + pl * p->in_size;                                                \
            for (int64_t o0 = 0; o0 < p->out[0]; o0++) {                                      \
                int64_t s0 = o0 * p->s[0] - p->pb[0], l0, h0, c0a, c0b;                       \
                taps(s0, p->k[0], p->d[0], 0, p->in[0], &l0, &h0);                            \
                taps(s0, p->k[0], p->d[0], -p->pb[0], p->in[0] + p->pe[0], &c0a, &c0b);       \
                for (int64_t o1 = 0; o1 < p->out[1]; o1++) {                                  \
                    int64_t s1 = o1 * p->s[1] - p->pb[1], l1, h1, c1a, c1b;                   \
                    taps(s1, p->k[1], p->d[1], 0, p->in[1], &l1, &h1);                        \
                    taps(s1, p->k[1], p->d[1], -p->pb[1], p->in[1] + p->pe[1], &c1a, &c1b);   \
                    for (int64_t o2 = 0; o2 < p->out[2]; o2++) {                              \
                        int64_t s2 = o2 * p->s[2] - p->pb[2], l2, h2, c2a, c2b;               \
                        taps(s2, p->k[2], p->d[2], 0, p->in[2], &l2, &h2);                    \
                        taps(s2, p->k[2], p->d[2], -p->pb[2], p->in[2] + p->pe[2], &c2a,      \
                             &c2b);                                                           \
                        T sum = 0;                                                            \
                        for (int64_t t0 = l0; t0 < h0; t0++) {                                \
                            int64_t i0 = s0 + t0 * p->d[0];                                   \
                            for (int64_t t1 = l1; t1 < h1; t1++) {                            \
                                int64_t i1 = s1 + t1 * p->d[1];                               \
                                const T *row = xp + (i0 * p->in[1] + i1) * p->in[2];          \
                                for (int64_t t2 = l2; t2 < h2; t2++)                          \
                                    sum += row[s2 + t2 * p->d[2]];                            \
                            }                                                                 \
                        }                                                                     \
                        int64_t count = include_pad                                           \
                                            ? (c0b - c0a) * (c1b - c1a) * (c2b - c2a)         \
                                            : (h0 - l0) * (h1 - l1) * (h2 - l2);              \
                        *y++ = count > 0 ? sum / (T)count : (T)0;                             \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_AVGPOOL(avgpool_f32, float)
DEFINE_AVGPOOL(avgpool_f64, double)

/* What the tasks of one padded float32 pooling share. */
typedef struct padded_ctx {
    const pool_plan *p;
    bool max;
    const float *x;
    float *y;
    const float *cnt[SP]; /* average: taps inside the window, per axis and output position */
    char *pads;           /* one padded plane per slot */
    int64_t per_task;     /* planes per task */
} padded_ctx;

/* float32 pooling without Indices, planes [TASK * per_task, ...). Each plane is copied into a
 * padded plane (-FLT_MAX or 0 around it) covering every position a window reads, so rows need
 * no bounds checks: an output row is the max or sum of shifted input rows, one tap at a time,
 * which vectorises. Average divisors are products of per-axis tap counts. */
KERN_CLONES static void pool_padded_planes(void *arg, int64_t task, int slot)
{
    const padded_ctx *c = arg;
    const pool_plan *p = c->p;
    bool max = c->max;
    size_t pad_bytes = align64((size_t)p->padded_size * sizeof(float));
    float *pad = (float *)(c->pads + (size_t)slot * pad_bytes);
    float fill = max ? -FLT_MAX : 0.0f;
    /* Only the interior is rewritten per plane: the border keeps its fill. */
    for (int64_t i = 0; i < p->padded_size; i++) pad[i] = fill;
    int64_t p1 = p->padded[1], p2 = p->padded[2];
    int64_t copy = min64(p->in[2], p2 - p->pb[2]);
    int64_t pl_end = min64(p->planes, (task + 1) * c->per_task);
    for (int64_t pl = task * c->per_task; pl < pl_end; pl++) {
        const float *xp = c->x + pl * p->in_size;
        float *yp = c->y + pl * p->out_size;
        for (int64_t i0 = 0; i0 < p->in[0] && i0 + p->pb[0] < p->padded[0]; i0++)
            for (int64_t i1 = 0; i1 < p->in[1] && i1 + p->pb[1] < p1; i1++)
                if (copy > 0)
                    memcpy(pad + ((i0 + p->pb[0]) * p1 + i1 + p->pb[1]) * p2 + p->pb[2],
                           xp + (i0 * p->in[1] + i1) * p->in[2], (size_t)copy * sizeof(float));
        int64_t n = p->out[2], s2 = p->s[2];
        for (int64_t o0 = 0; o0 < p->out[0]; o0++) {
            for (int64_t o1 = 0; o1 < p->out[1]; o1++) {
                float *restrict yr = yp + (o0 * p->out[1] + o1) * n;
                for (int64_t o = 0; o < n; o++) yr[o] = fill;
                for (int64_t t0 = 0; t0 < p->k[0]; t0++) {
                    for (int64_t t1 = 0; t1 < p->k[1]; t1++) {
                        const float *row = pad + ((o0 * p->s[0] + t0 * p->d[0]) * p1 +
                                                  o1 * p->s[1] + t1 * p->d[1]) * p2;
                        for (int64_t t2 = 0; t2 < p->k[2]; t2++) {
                            const float *restrict xt = row + t2 * p->d[2];
                            if (max && s2 == 1)
                                for (int64_t o = 0; o < n; o++)
                                    yr[o] = xt[o] > yr[o] ? xt[o] : yr[o];
                            else if (max && s2 == 2)
                                for (int64_t o = 0; o < n; o++)
                                    yr[o] = xt[2 * o] > yr[o] ? xt[2 * o] : yr[o];
                            else if (max)
                                for (int64_t o = 0; o < n; o++)
                                    yr[o] = xt[o * s2] > yr[o] ? xt[o * s2] : yr[o];
                            else if (s2 == 1)
                                for (int64_t o = 0; o < n; o++) yr[o] += xt[o];
                            else
                                for (int64_t o = 0; o < n; o++) yr[o] += xt[o * s2];
                        }
                    }
                }
                if (!max) {
                    float c01 = c->cnt[0][o0] * c->cnt[1][o1];
                    for (int64_t o = 0; o < n; o++) {
                        float cn = c01 * c->cnt[2][o];
                        yr[o] = cn > 0 ? yr[o] / cn : 0.0f;
                    }
                }
            }
        }
    }
}

/* The padded path over every plane, planes split across POOL. */
static void pool_padded_f32(const pool_plan *p, bool max, bool include_pad, const float *x,
                            float *y, char *ws, core_threadpool *pool)
{
    float *cnt = (float *)ws;
    padded_ctx c = {.p = p, .max = max, .x = x, .y = y,
                    .pads = ws + align64((size_t)(p->out[0] + p->out[1] + p->out[2]) *
                                         sizeof(float))};
    c.cnt[0] = cnt;
    c.cnt[1] = cnt + p->out[0];
    c.cnt[2] = cnt + p->out[0] + p->out[1];
    if (!max) {
        for (int a = 0; a < SP; a++) {
            int64_t begin = include_pad ? -p->pb[a] : 0;
            int64_t end = include_pad ? p->in[a] + p->pe[a] : p->in[a];
            for (int64_t o = 0; o < p->out[a]; o++) {
                int64_t lo, hi;
                taps(o * p->s[a] - p->pb[a], p->k[a], p->d[a], begin, end, &lo, &hi);
                cnt[(a > 0 ? p->out[0] : 0) + (a > 1 ? p->out[1] : 0) + o] = (float)(hi - lo);
            }
        }
    }
    /* A few tasks per thread, each filling its padded plane's border once. */
    int64_t tasks = (int64_t)kern_slots(pool) * 4;
    if (p->in_size * p->planes < 65536) tasks = 1;
    c.per_task = (p->planes + tasks - 1) / tasks;
    if (c.per_task < 1) c.per_task = 1;
    kern_parallel(pool, (p->planes + c.per_task - 1) / c.per_task, pool_padded_planes, &c);
}

static void pool_f32(const pool_plan *p, const pool_attrs *at, const float *x, float *y,
                     int64_t *indices, char *ws, core_threadpool *pool)
{
    if (indices || (!p->padded_size && at->max))
        maxpool_f32(p, at->column_major, x, y, indices);
    else if (!p->padded_size)
        avgpool_f32(p, at->count_include_pad, x, y);
    else
        pool_padded_f32(p, at->max, at->count_include_pad, x, y, ws, pool);
}

static ferry_status *pool_run(eng_op_call *call)
{
    const pool_attrs *at = call->state;
    pool_plan p;
    ferry_status *st = pool_plan_make(call, &p);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    int64_t *ind = call->n_out > 1 && call->out[1] ? call->out[1]->data : NULL;
    bool cm = at->column_major;
    switch (x->dtype) {
    case FERRY_DTYPE_FLOAT:
        pool_f32(&p, at, x->data, y->data, ind, call->workspace, call->threads);
        break;
    case FERRY_DTYPE_DOUBLE:
        if (at->max)
            maxpool_f64(&p, cm, x->data, y->data, ind);
        else
            avgpool_f64(&p, at->count_include_pad, x->data, y->data);
        break;
    case FERRY_DTYPE_INT8: maxpool_i8(&p, cm, x->data, y->data, ind); break;
    case FERRY_DTYPE_UINT8: maxpool_u8(&p, cm, x->data, y->data, ind); break;
    case FERRY_DTYPE_FLOAT16: {
        float *fx = call->workspace;
        float *fy = (float *)((char *)fx + align64((size_t)eng_numel(x) * sizeof(float)));
        char *rest = (char *)fy + align64((size_t)eng_numel(y) * sizeof(float));
        kern_half_to_float(x->data, fx, eng_numel(x));
        pool_f32(&p, at, fx, fy, ind, rest, call->threads);
        kern_float_to_half(fy, y->data, eng_numel(y));
        break;
    }
    default: return eng_bad_dtype("input X", x->dtype);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Global pooling: one value per (batch, channel) over all spatial positions.
 * ------------------------------------------------------------------------------------- */

static ferry_status *global_infer(eng_op_call *call)
{
    const eng_tensor *x = call->n_in > 0 ? call->in[0] : NULL;
    if (!x) return core_error(FERRY_ERR_INVALID_MODEL, "input X is required");
    if (x->dtype != FERRY_DTYPE_FLOAT && x->dtype != FERRY_DTYPE_DOUBLE &&
        x->dtype != FERRY_DTYPE_FLOAT16)
        return eng_bad_dtype("input X", x->dtype);
    if (x->rank < 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X: expected at least 2 dims (batch, channels, spatial...), "
                          "got %d",
                          x->rank);
    eng_tensor *y = call->out[0];
    eng_same_shape(y, x);
    for (int i = 2; i < y->rank; i++) y->dims[i] = 1;
    return NULL;
}

static double plane_reduce_f64(const eng_tensor *x, int64_t pl, int64_t size, bool max)
{
    double acc = max ? -DBL_MAX : 0.0;
    for (int64_t i = 0; i < size; i++) {
        double v;
        if (x->dtype == FERRY_DTYPE_DOUBLE)
            v = ((const double *)x->data)[pl * size + i];
        else
            v = core_half_to_float(((const uint16_t *)x->data)[pl * size + i]);
        acc = max ? (v > acc ? v : acc) : acc + v;
    }
    return max || size == 0 ? acc : acc / (double)size;
}

/* Eight partial results vectorise, and round better than one running sum. */
KERN_CLONES static float plane_reduce_f32(const float *xp, int64_t size, bool max)
{
    float part[8];
    for (int q = 0; q < 8; q++) part[q] = max ? -FLT_MAX : 0.0f;
    int64_t i = 0;
    for (; i + 8 <= size; i += 8)
        for (int q = 0; q < 8; q++)
            part[q] = max ? (xp[i + q] > part[q] ? xp[i + q] : part[q]) : part[q] + xp[i + q];
    for (; i < size; i++) part[0] = max ? (xp[i] > part[0] ? xp[i] : part[0]) : part[0] + xp[i];
    float acc = part[0];
    for (int q = 1; q < 8; q++) acc = max ? (part[q] > acc ? part[q] : acc) : acc + part[q];
    return max || size == 0 ? acc : acc / (float)size;
}

static ferry_status *global_run_common(eng_op_call *call, bool max)
{
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    int64_t planes = x->dims[0] * x->dims[1];
    int64_t size = planes ? eng_numel(x) / planes : 0;
    for (int64_t pl = 0; pl < planes; pl++) {
        if (x->dtype == FERRY_DTYPE_FLOAT) {
            ((float *)y->data)[pl] = plane_reduce_f32((const float *)x->data + pl * size, size,
                                                      max);
        } else {
            double v = plane_reduce_f64(x, pl, size, max);
            if (x->dtype == FERRY_DTYPE_DOUBLE)
                ((double *)y->data)[pl] = v;
            else
                ((uint16_t *)y->data)[pl] = core_float_to_half((float)v);
        }
    }
    return NULL;
}

static ferry_status *global_avg_run(eng_op_call *call)
{
    return global_run_common(call, false);
}

static ferry_status *global_max_run(eng_op_call *call)
{
    return global_run_common(call, true);
}

static const eng_op ops[] = {
    {.domain = "", .name = "MaxPool", .since_version = 1, .init = maxpool_init, .fini = pool_fini,
     .infer = pool_infer, .run = pool_run},
    {.domain = "", .name = "AveragePool", .since_version = 1, .init = avgpool_init,
     .fini = pool_fini, .infer = pool_infer, .run = pool_run},
    {.domain = "", .name = "GlobalAveragePool", .since_version = 1, .infer = global_infer,
     .run = global_avg_run},
    {.domain = "", .name = "GlobalMaxPool", .since_version = 1, .infer = global_infer,
     .run = global_max_run},
};

const eng_op_table eng_ops_pool = {ops, sizeof(ops) / sizeof(ops[0])};
