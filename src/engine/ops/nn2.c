/* nn2.c - less common neural-network operators: ConvTranspose, InstanceNormalization, LRN,
 * LpPool, MaxUnpool, RoiAlign and NonMaxSuppression.
 *
 * float16 inputs are widened to float32 in the workspace, computed in float32 and narrowed
 * back; float64 is computed in float64 by the same kernels, instantiated per type with the
 * DEFINE_* macros (ConvTranspose's float64 path is a direct loop instead of GEMM + col2im).
 *
 * ConvTranspose multiplies each group's weights (transposed) by the input, which gives for
 * every input position the contribution of each kernel tap to each output channel (a column
 * matrix, computed a chunk of input positions at a time so it stays in cache), then adds those
 * contributions into the output (col2im, split by output channel across the context's
 * threads). Constant weights are packed once at load for kern_gemm_run.
 *
 * NonMaxSuppression's output size depends on its inputs' values, so they are all flagged in
 * value_inputs: the engine evaluates the node while planning, and run recomputes the same
 * selection into the planned output.
 */
#include "engine/op.h"

#include "engine/kernels/gemm.h"
#include "engine/kernels/half.h"
#include "engine/kernels/simd.h"
#include "engine/kernels/window.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

KERN_FAST_LOOPS

#define MAX_SP KERN_MAX_SPATIAL

/* Upper bound for a chunk of ConvTranspose's column matrix (floats), and its floor in input
 * positions. */
#define COL_BUDGET ((int64_t)1 << 19)
#define MIN_CHUNK 64

static size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static const eng_tensor *input(const eng_op_call *call, int i)
{
    return i < call->n_in ? call->in[i] : NULL;
}

static bool is_float_type(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_FLOAT16;
}

static ferry_status *alloc_state(size_t size, void **state)
{
    *state = calloc(1, size);
    return *state ? NULL : core_error(FERRY_ERR_NO_MEMORY, "out of memory");
}

static ferry_status *same_type(const char *what, const eng_tensor *t, const eng_tensor *x)
{
    if (!t || t->dtype == x->dtype) return NULL;
    return core_error(FERRY_ERR_INVALID_ARGUMENT, "input %s (%s) must have the type of X (%s)",
                      what, ferry_dtype_name(t->dtype), ferry_dtype_name(x->dtype));
}

/* float16 tensors are computed in float32: workspace bytes for a float copy of T. */
static size_t f32_copy_size(const eng_tensor *t)
{
    return t ? align64((size_t)eng_numel(t) * sizeof(float)) : 0;
}

/* Widens T into the workspace at *WS (advancing it); returns the copy. */
static float *widen(const eng_tensor *t, char **ws)
{
    if (!t) return NULL;
    float *f = (float *)*ws;
    kern_half_to_float(t->data, f, eng_numel(t));
    *ws += f32_copy_size(t);
    return f;
}

/* The input positions I (any integer) whose output position I * STRIDE + OFF lies in
 * [0, OUT), as the half-open range [*LO, *HI). */
static void valid_span(int64_t out, int64_t stride, int64_t off, int64_t *lo, int64_t *hi)
{
    *lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    *hi = out - 1 - off >= 0 ? (out - 1 - off) / stride + 1 : 0;
    if (*hi < *lo) *hi = *lo;
}

/* ---------------------------------------------------------------------------------------
 * ConvTranspose
 * ------------------------------------------------------------------------------------- */

typedef struct convt_attrs {
    kern_window_attrs win;
    int64_t group;
    int n_out_pad, n_out_shape;
    int64_t out_pad[MAX_SP];
    int64_t out_shape[MAX_SP + 2];
} convt_attrs;

typedef struct convt_plan {
    int nsp;
    int64_t n, c, m, group, cg, mg;
    int64_t in[MAX_SP], out[MAX_SP], k[MAX_SP], s[MAX_SP], d[MAX_SP], pb[MAX_SP];
    int64_t in_size, out_size, ks;
    int64_t rows;  /* mg * ks: rows of the column matrix */
    int64_t chunk; /* input positions per chunk of the column matrix */
    size_t gemm_ws, col_ws;
} convt_plan;

static ferry_status *convt_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    convt_attrs a;
    memset(&a, 0, sizeof(a));
    ferry_status *st = kern_window_read(node, false, false, &a.win);
    if (st) return st;
    a.group = eng_attr_int(node, "group", 1);
    if (a.group < 1 || a.group > ((int64_t)1 << 30))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute group must be positive, got %lld",
                          (long long)a.group);
    size_t n = 0;
    const int64_t *v = eng_attr_ints(node, "output_padding", &n);
    if (n > MAX_SP)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute output_padding has %zu values, "
                          "more than %d spatial dims", n, MAX_SP);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] > ((int64_t)1 << 30))
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute output_padding: value %lld is out of range",
                              (long long)v[i]);
        a.out_pad[i] = v[i];
    }
    a.n_out_pad = (int)n;
    v = eng_attr_ints(node, "output_shape", &n);
    if (n > MAX_SP + 2)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute output_shape has %zu values, "
                          "more than rank %d allows", n, FERRY_MAX_RANK);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] > ((int64_t)1 << 40))
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute output_shape: value %lld is out of range",
                              (long long)v[i]);
        a.out_shape[i] = v[i];
    }
    a.n_out_shape = (int)n;
    if ((st = alloc_state(sizeof(a), state))) return st;
    memcpy(*state, &a, sizeof(a));
    return NULL;
}

/* Each group's W^T [mg * ks, cg], packed for kern_gemm_run when W is a float constant. */
typedef struct convt_packed {
    int64_t group;
    kern_packed *a[];
} convt_packed;

static void convt_unpack(void *packed)
{
    convt_packed *pk = packed;
    if (!pk) return;
    for (int64_t g = 0; g < pk->group; g++) kern_packed_free(pk->a[g]);
    free(pk);
}

/* Packs constant weights once for every context; shapes that do not fit are left to infer. */
static ferry_status *convt_pack(const eng_node *node, const eng_tensor *const *inputs,
                                const void *state, void **packed)
{
    (void)node;
    const convt_attrs *at = state;
    const eng_tensor *w = inputs[1];
    *packed = NULL;
    if (!w || !w->data || w->rank < 3 || w->rank - 2 > MAX_SP) return NULL;
    if (w->dtype != FERRY_DTYPE_FLOAT && w->dtype != FERRY_DTYPE_FLOAT16) return NULL;
    int64_t c = w->dims[0], rows = w->dims[1];
    for (int i = 2; i < w->rank; i++) rows *= w->dims[i];
    if (c % at->group || rows < 1 || c < at->group) return NULL;
    int64_t cg = c / at->group;
    const float *f = w->data;
    float *wide = NULL;
    if (w->dtype == FERRY_DTYPE_FLOAT16) {
        wide = malloc((size_t)eng_numel(w) * sizeof(float));
        if (!wide) return core_error(FERRY_ERR_NO_MEMORY, "out of memory packing W");
        kern_half_to_float(w->data, wide, eng_numel(w));
        f = wide;
    }
    convt_packed *pk = calloc(1, sizeof(*pk) + (size_t)at->group * sizeof(kern_packed *));
    if (!pk) {
        free(wide);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory packing W");
    }
    pk->group = at->group;
    for (int64_t g = 0; g < at->group; g++) {
        pk->a[g] = kern_pack_a(KERN_ISA_AUTO, true, rows, cg, 1.0f, f + g * cg * rows, rows);
        if (!pk->a[g]) {
            free(wide);
            convt_unpack(pk);
            return core_error(FERRY_ERR_NO_MEMORY, "out of memory packing W");
        }
    }
    free(wide);
    *packed = pk;
    return NULL;
}

/* The product of one chunk of group G: COL[rows, cols] = W_g^T * X_g[:, chunk]. */
static kern_gemm convt_gemm(const convt_plan *p, const convt_packed *pk, int64_t g,
                            const float *wg, const float *xg, int64_t cols, float *col)
{
    kern_gemm k;
    memset(&k, 0, sizeof(k));
    k.m = p->rows, k.n = cols, k.k = p->cg, k.isa = KERN_ISA_AUTO;
    k.pa = pk && pk->group == p->group ? pk->a[g] : NULL;
    if (!k.pa) k.a = wg, k.lda = p->rows, k.trans_a = true;
    k.alpha = 1.0f;
    k.b = xg, k.ldb = p->in_size;
    k.c = col, k.ldc = cols, k.beta = 0.0f;
    return k;
}

static ferry_status *convt_plan_make(const eng_op_call *call, convt_plan *p)
{
    const convt_attrs *at = call->state;
    const kern_window_attrs *wa = &at->win;
    const eng_tensor *x = input(call, 0), *w = input(call, 1), *b = input(call, 2);
    char s1[128], s2[128];
    ferry_status *st;
    memset(p, 0, sizeof(*p));
    if (!x || !w) return core_error(FERRY_ERR_INVALID_MODEL, "ConvTranspose needs inputs X and W");
    if (!is_float_type(x->dtype)) return eng_bad_dtype("input X", x->dtype);
    if ((st = same_type("W", w, x)) || (st = same_type("B", b, x))) return st;
    if (x->rank < 3 || x->rank - 2 > MAX_SP)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X: expected 3 to %d dims (batch, channels, spatial...), got %d",
                          MAX_SP + 2, x->rank);
    int nsp = x->rank - 2;
    if (w->rank != x->rank)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input W: expected %d dims like X, got %d", x->rank, w->rank);
    p->nsp = nsp;
    p->n = x->dims[0];
    p->c = x->dims[1];
    p->group = at->group;
    if (w->dims[0] != p->c || p->c % p->group)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "W %s must have one row per input channel of X %s, split into %lld "
                          "groups",
                          eng_shape_str(w, s1, sizeof(s1)), eng_shape_str(x, s2, sizeof(s2)),
                          (long long)p->group);
    p->cg = p->c / p->group;
    p->mg = w->dims[1];
    p->m = p->mg * p->group;
    if (b && (b->rank != 1 || b->dims[0] != p->m))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input B: expected shape [%lld] (one bias per output channel), got %s",
                          (long long)p->m, eng_shape_str(b, s1, sizeof(s1)));
    if (wa->n_kernel && wa->n_kernel != nsp)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "attribute kernel_shape has %d values for %d spatial dims",
                          wa->n_kernel, nsp);
    for (int i = 0; wa->n_kernel && i < nsp; i++)
        if (wa->kernel[i] != w->dims[2 + i])
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "attribute kernel_shape does not match the spatial dims of W %s",
                              eng_shape_str(w, s1, sizeof(s1)));
    struct { const char *name; int n, want; } counts[] = {
        {"strides", wa->n_strides, nsp},     {"dilations", wa->n_dilations, nsp},
        {"pads", wa->n_pads, 2 * nsp},        {"output_padding", at->n_out_pad, nsp},
    };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        if (counts[i].n && counts[i].n != counts[i].want)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "attribute %s: expected %d values, got %d", counts[i].name,
                              counts[i].want, counts[i].n);
    if (at->n_out_shape && at->n_out_shape != nsp && at->n_out_shape != nsp + 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "attribute output_shape: expected %d (or %d) values, got %d", nsp,
                          nsp + 2, at->n_out_shape);
    p->in_size = p->out_size = p->ks = 1;
    for (int i = 0; i < nsp; i++) {
        int64_t in = x->dims[2 + i], k = w->dims[2 + i];
        int64_t s = wa->n_strides ? wa->strides[i] : 1;
        int64_t d = wa->n_dilations ? wa->dilations[i] : 1;
        int64_t op = at->n_out_pad ? at->out_pad[i] : 0;
        if (k < 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "W has an empty kernel (%s)",
                              eng_shape_str(w, s1, sizeof(s1)));
        /* The size the output would have without padding. */
        int64_t ext, full, out, pb;
        if (__builtin_mul_overflow(k - 1, d, &ext) || __builtin_mul_overflow(s, in - 1, &full) ||
            __builtin_add_overflow(full, op + ext + 1, &full) ||
            __builtin_mul_overflow(in, s, &out))
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "ConvTranspose sizes overflow");
        if (at->n_out_shape) {
            /* Explicit output shape: the padding follows from it. A larger output than the
             * input reaches only gets zeros (bias) at the end, as in onnxruntime. */
            out = at->out_shape[at->n_out_shape == nsp ? i : i + 2];
            int64_t total = max64(full - out, 0);
            pb = wa->auto_pad == KERN_PAD_SAME_LOWER ? total - total / 2 : total / 2;
        } else if (wa->auto_pad == KERN_PAD_SAME_UPPER || wa->auto_pad == KERN_PAD_SAME_LOWER) {
            /* The spec's SAME: the output is the input times the stride, SAME_UPPER puts the
             * extra padding at the end. */
            out = in * s;
            int64_t total = max64(full - out, 0);
            pb = wa->auto_pad == KERN_PAD_SAME_UPPER ? total / 2 : total - total / 2;
        } else {
            pb = 0;
            int64_t pe = 0;
            if (wa->auto_pad == KERN_PAD_NOTSET && wa->n_pads) {
                pb = wa->pads[i];
                pe = wa->pads[nsp + i];
            }
            out = full - pb - pe;
        }
        if (out < 0 || in < 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "spatial dim %d: the padding exceeds the output (size %lld)", i,
                              (long long)out);
        p->in[i] = in, p->out[i] = out, p->k[i] = k, p->s[i] = s, p->d[i] = d, p->pb[i] = pb;
        if (__builtin_mul_overflow(p->in_size, in, &p->in_size) ||
            __builtin_mul_overflow(p->out_size, out, &p->out_size) ||
            __builtin_mul_overflow(p->ks, k, &p->ks))
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "ConvTranspose sizes overflow");
    }
    if (__builtin_mul_overflow(p->mg, p->ks, &p->rows))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "kernel too large");
    p->chunk = p->in_size;
    if (p->rows > 0 && p->in_size > COL_BUDGET / p->rows) {
        int64_t c = COL_BUDGET / p->rows / 16 * 16;
        p->chunk = min64(p->in_size, c < MIN_CHUNK ? MIN_CHUNK : c);
    }
    if (x->dtype != FERRY_DTYPE_DOUBLE) {
        kern_gemm g = convt_gemm(p, call->packed, 0, NULL, NULL, p->chunk, NULL);
        p->gemm_ws = align64(kern_gemm_workspace(&g, core_threadpool_size(call->threads)));
        p->col_ws = align64((size_t)(p->rows * p->chunk) * sizeof(float));
    }
    return NULL;
}

static ferry_status *convt_infer(eng_op_call *call)
{
    convt_plan p;
    ferry_status *st = convt_plan_make(call, &p);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    y->dtype = x->dtype;
    y->rank = x->rank;
    y->dims[0] = p.n;
    y->dims[1] = p.m;
    for (int i = 0; i < p.nsp; i++) y->dims[2 + i] = p.out[i];
    size_t ws = p.gemm_ws + p.col_ws;
    if (x->dtype == FERRY_DTYPE_FLOAT16)
        ws += f32_copy_size(x) + f32_copy_size(call->in[1]) + f32_copy_size(input(call, 2)) +
              f32_copy_size(y);
    call->workspace_size = ws;
    return NULL;
}

/* Adds input positions [J0, J0 + COLS) of the column matrix into one group's output: row
 * (m, tap) of COL holds, per input position, what it contributes to output channel m through
 * that kernel tap. The innermost spatial axis goes in runs, clipped to the output once. */
static void col2im_f32(const convt_plan *p, const float *col, int64_t j0, int64_t cols,
                       float *y, int64_t m0, int64_t m1)
{
    int last = p->nsp - 1;
    for (int64_t m = m0; m < m1; m++) {
        float *ym = y + m * p->out_size;
        int64_t kpos[MAX_SP] = {0};
        for (int64_t kk = 0; kk < p->ks; kk++) {
            const float *src = col + (m * p->ks + kk) * cols;
            int64_t ipos[MAX_SP], rest = j0;
            for (int d = last; d >= 0; d--) {
                ipos[d] = rest % p->in[d];
                rest /= p->in[d];
            }
            int64_t off = kpos[last] * p->d[last] - p->pb[last], lo, hi;
            valid_span(p->out[last], p->s[last], off, &lo, &hi);
            for (int64_t j = 0; j < cols;) {
                int64_t base = 0;
                bool inside = true;
                for (int d = 0; d < last; d++) {
                    int64_t o = ipos[d] * p->s[d] - p->pb[d] + kpos[d] * p->d[d];
                    inside = inside && o >= 0 && o < p->out[d];
                    base = base * p->out[d] + o;
                }
                base *= p->out[last];
                int64_t run = min64(p->in[last] - ipos[last], cols - j);
                if (inside) {
                    /* Input position i reads src[i + sd] and adds to ym[i * st + od]. */
                    int64_t a = max64(lo, ipos[last]), z = min64(hi, ipos[last] + run);
                    int64_t sd = j - ipos[last], od = base + off, st = p->s[last];
                    if (st == 1)
                        for (int64_t i = a; i < z; i++) ym[i + od] += src[i + sd];
                    else
                        for (int64_t i = a; i < z; i++) ym[i * st + od] += src[i + sd];
                }
                j += run;
                ipos[last] = 0;
                for (int d = last - 1; d >= 0; d--) {
                    if (++ipos[d] < p->in[d]) break;
                    ipos[d] = 0;
                }
            }
            for (int d = last; d >= 0; d--) {
                if (++kpos[d] < p->k[d]) break;
                kpos[d] = 0;
            }
        }
    }
}

/* col2im split by output channel, which own disjoint output planes. */
typedef struct col2im_job {
    const convt_plan *p;
    const float *col;
    int64_t j0, cols;
    float *y;
} col2im_job;

static void col2im_task(void *arg, int64_t begin, int64_t end)
{
    const col2im_job *j = arg;
    col2im_f32(j->p, j->col, j->j0, j->cols, j->y, begin, end);
}

static void convt_float(const convt_plan *p, const convt_packed *pk, const float *x,
                        const float *w, const float *bias, float *y, char *ws,
                        core_threadpool *pool)
{
    float *col = (float *)(ws + p->gemm_ws);
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t g = 0; g < p->group; g++) {
            const float *xg = x + (n * p->c + g * p->cg) * p->in_size;
            const float *wg = w + g * p->cg * p->rows; /* [cg, mg * ks] */
            float *yg = y + (n * p->m + g * p->mg) * p->out_size;
            for (int64_t m = 0; m < p->mg; m++) {
                float b = bias ? bias[g * p->mg + m] : 0.0f;
                float *ym = yg + m * p->out_size;
                for (int64_t i = 0; i < p->out_size; i++) ym[i] = b;
            }
            for (int64_t j0 = 0; j0 < p->in_size; j0 += p->chunk) {
                int64_t cols = min64(p->chunk, p->in_size - j0);
                kern_gemm k = convt_gemm(p, pk, g, wg, xg + j0, cols, col);
                kern_gemm_run(&k, pool, ws);
                col2im_job job = {p, col, j0, cols, yg};
                core_parallel_for(pool, col2im_task, &job, p->mg, 1);
            }
        }
    }
}

/* float64: every input element scattered through every kernel tap. */
static void convt_double(const convt_plan *p, const double *x, const double *w,
                         const double *bias, double *y)
{
    int nsp = p->nsp;
    for (int64_t n = 0; n < p->n; n++)
        for (int64_t m = 0; m < p->m; m++)
            for (int64_t i = 0; i < p->out_size; i++)
                y[(n * p->m + m) * p->out_size + i] = bias ? bias[m] : 0.0;
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t c = 0; c < p->c; c++) {
            int64_t g = c / p->cg;
            const double *xc = x + (n * p->c + c) * p->in_size;
            int64_t ipos[MAX_SP] = {0};
            for (int64_t j = 0; j < p->in_size; j++) {
                int64_t kpos[MAX_SP] = {0};
                for (int64_t kk = 0; kk < p->ks; kk++) {
                    int64_t o = 0;
                    bool inside = true;
                    for (int d = 0; d < nsp; d++) {
                        int64_t v = ipos[d] * p->s[d] - p->pb[d] + kpos[d] * p->d[d];
                        inside = inside && v >= 0 && v < p->out[d];
                        o = o * p->out[d] + v;
                    }
                    if (inside)
                        for (int64_t m = 0; m < p->mg; m++)
                            y[(n * p->m + g * p->mg + m) * p->out_size + o] +=
                                xc[j] * w[(c * p->mg + m) * p->ks + kk];
                    for (int d = nsp - 1; d >= 0; d--) {
                        if (++kpos[d] < p->k[d]) break;
                        kpos[d] = 0;
                    }
                }
                for (int d = nsp - 1; d >= 0; d--) {
                    if (++ipos[d] < p->in[d]) break;
                    ipos[d] = 0;
                }
            }
        }
    }
}

static ferry_status *convt_run(eng_op_call *call)
{
    convt_plan p;
    ferry_status *st = convt_plan_make(call, &p);
    if (st) return st;
    const eng_tensor *x = call->in[0], *w = call->in[1], *b = input(call, 2);
    eng_tensor *y = call->out[0];
    switch (x->dtype) {
    case FERRY_DTYPE_FLOAT:
        convt_float(&p, call->packed, x->data, w->data, b ? b->data : NULL, y->data,
                    call->workspace, call->threads);
        break;
    case FERRY_DTYPE_DOUBLE: convt_double(&p, x->data, w->data, b ? b->data : NULL, y->data); break;
    default: {
        char *ws = call->workspace, *q = ws + p.gemm_ws + p.col_ws;
        float *fx = widen(x, &q), *fw = call->packed ? NULL : widen(w, &q), *fb = widen(b, &q);
        if (!fw) q += f32_copy_size(w);
        float *fy = (float *)q;
        convt_float(&p, call->packed, fx, fw, fb, fy, ws, call->threads);
        kern_float_to_half(fy, y->data, eng_numel(y));
        break;
    }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * InstanceNormalization: per (image, channel) normalisation over the spatial dims
 * ------------------------------------------------------------------------------------- */

typedef struct eps_attrs {
    float epsilon;
} eps_attrs;

static ferry_status *instnorm_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    float eps = eng_attr_float(node, "epsilon", 1e-5f);
    if (!(eps >= 0.0f))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute epsilon must not be negative");
    ferry_status *st = alloc_state(sizeof(eps_attrs), state);
    if (st) return st;
    ((eps_attrs *)*state)->epsilon = eps;
    return NULL;
}

static ferry_status *instnorm_infer(eng_op_call *call)
{
    const eng_tensor *x = call->in[0], *sc = input(call, 1), *b = input(call, 2);
    char s1[128];
    ferry_status *st;
    if (!sc || !b)
        return core_error(FERRY_ERR_INVALID_MODEL, "InstanceNormalization needs inputs scale "
                          "and B");
    if (!is_float_type(x->dtype)) return eng_bad_dtype("input", x->dtype);
    if ((st = same_type("scale", sc, x)) || (st = same_type("B", b, x))) return st;
    if (x->rank < 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input: expected at least 2 dims (batch, channels, ...), got %d",
                          x->rank);
    for (int i = 0; i < 2; i++) {
        const eng_tensor *t = i ? b : sc;
        if (t->rank != 1 || t->dims[0] != x->dims[1])
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input %s: expected shape [%lld] (one value per channel), got %s",
                              i ? "B" : "scale", (long long)x->dims[1],
                              eng_shape_str(t, s1, sizeof(s1)));
    }
    eng_same_shape(call->out[0], x);
    if (x->dtype == FERRY_DTYPE_FLOAT16)
        call->workspace_size = 2 * f32_copy_size(x) + f32_copy_size(sc) + f32_copy_size(b);
    return NULL;
}

/* Mean and variance in double (two passes, so large means do not eat the variance). */
#define DEFINE_INSTNORM(name, T)                                                              \
    static void name(const T *x, const T *scale, const T *bias, T *y, int64_t p0, int64_t p1, \
                     int64_t channels, int64_t size, double eps)                              \
    {                                                                                         \
        for (int64_t p = p0; p < p1; p++) {                                                   \
            const T *xp = x + p * size;                                                       \
            T *yp = y + p * size;                                                             \
            double sum = 0.0, sq = 0.0;                                                       \
            for (int64_t i = 0; i < size; i++) sum += xp[i];                                  \
            double mean = size ? sum / (double)size : 0.0;                                    \
            for (int64_t i = 0; i < size; i++) {                                              \
                double d = (double)xp[i] - mean;                                              \
                sq += d * d;                                                                  \
            }                                                                                 \
            double var = size ? sq / (double)size : 0.0;                                      \
            double a = (double)scale[p % channels] / sqrt(var + eps);                         \
            double b = (double)bias[p % channels] - mean * a;                                 \
            /* In double: outputs near zero come from cancelling terms. */                    \
            for (int64_t i = 0; i < size; i++) yp[i] = (T)((double)xp[i] * a + b);            \
        }                                                                                     \
    }

DEFINE_INSTNORM(instnorm_f32, float)
DEFINE_INSTNORM(instnorm_f64, double)

/* Planes are independent: they split across the context's threads. */
typedef struct instnorm_job {
    bool f64;
    const void *x, *scale, *bias;
    void *y;
    int64_t channels, size;
    double eps;
} instnorm_job;

static void instnorm_task(void *arg, int64_t begin, int64_t end)
{
    const instnorm_job *j = arg;
    if (j->f64)
        instnorm_f64(j->x, j->scale, j->bias, j->y, begin, end, j->channels, j->size, j->eps);
    else
        instnorm_f32(j->x, j->scale, j->bias, j->y, begin, end, j->channels, j->size, j->eps);
}

static ferry_status *instnorm_run(eng_op_call *call)
{
    const eps_attrs *at = call->state;
    const eng_tensor *x = call->in[0], *sc = call->in[1], *b = call->in[2];
    eng_tensor *y = call->out[0];
    int64_t planes = x->dims[0] * x->dims[1], c = x->dims[1];
    int64_t size = planes ? eng_numel(x) / planes : 0;
    instnorm_job j = {x->dtype == FERRY_DTYPE_DOUBLE, x->data, sc->data, b->data, y->data, c,
                      size, at->epsilon};
    float *fy = NULL;
    if (x->dtype == FERRY_DTYPE_FLOAT16) {
        char *q = call->workspace;
        j.x = widen(x, &q), j.scale = widen(sc, &q), j.bias = widen(b, &q);
        j.y = fy = (float *)q;
    }
    /* At least about 64K elements per task, so small tensors stay on one thread. */
    int64_t grain = size > 0 ? ((int64_t)1 << 16) / size + 1 : planes + 1;
    core_parallel_for(call->threads, instnorm_task, &j, planes, grain);
    if (fy) kern_float_to_half(fy, y->data, eng_numel(y));
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * LRN: local response normalisation across channels
 * ------------------------------------------------------------------------------------- */

typedef struct lrn_attrs {
    double alpha, beta, bias;
    int64_t size;
} lrn_attrs;

static ferry_status *lrn_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    lrn_attrs a;
    a.alpha = eng_attr_float(node, "alpha", 1e-4f);
    a.beta = eng_attr_float(node, "beta", 0.75f);
    a.bias = eng_attr_float(node, "bias", 1.0f);
    a.size = eng_attr_int(node, "size", 0);
    if (!eng_attr_has(node, "size"))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute size is required");
    if (a.size < 1 || a.size > ((int64_t)1 << 30))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute size must be positive, got %lld",
                          (long long)a.size);
    ferry_status *st = alloc_state(sizeof(a), state);
    if (st) return st;
    memcpy(*state, &a, sizeof(a));
    return NULL;
}

static ferry_status *lrn_infer(eng_op_call *call)
{
    const eng_tensor *x = call->in[0];
    /* bfloat16 came with opset 13. */
    if (!is_float_type(x->dtype) && !(x->dtype == FERRY_DTYPE_BFLOAT16 && call->opset >= 13))
        return eng_bad_dtype("input", x->dtype);
    if (x->rank < 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input: expected at least 2 dims (batch, channels, ...), got %d",
                          x->rank);
    eng_same_shape(call->out[0], x);
    int64_t planes = x->dims[0] * x->dims[1];
    int64_t size = planes ? eng_numel(x) / planes : 0;
    size_t acc = align64((size_t)size * (x->dtype == FERRY_DTYPE_DOUBLE ? 8 : 4));
    bool half = x->dtype == FERRY_DTYPE_FLOAT16 || x->dtype == FERRY_DTYPE_BFLOAT16;
    call->workspace_size = acc + (half ? 2 * f32_copy_size(x) : 0);
    return NULL;
}

/* The window of channel c is [c - floor((size-1)/2), c + ceil((size-1)/2)], clipped. */
#define DEFINE_LRN(name, T)                                                                   \
    static void name(const T *x, T *y, int64_t batch, int64_t channels, int64_t size,         \
                     const lrn_attrs *a, T *acc)                                              \
    {                                                                                         \
        int64_t before = (a->size - 1) / 2, after = a->size - 1 - before;                     \
        T k = (T)(a->alpha / (double)a->size), bias = (T)a->bias, nb = (T)-a->beta;           \
        for (int64_t n = 0; n < batch; n++) {                                                 \
            for (int64_t c = 0; c < channels; c++) {                                          \
                int64_t lo = max64(0, c - before), hi = min64(channels - 1, c + after);       \
                for (int64_t i = 0; i < size; i++) acc[i] = 0;                                \
                for (int64_t q = lo; q <= hi; q++) {                                          \
                    const T *xq = x + (n * channels + q) * size;                              \
                    for (int64_t i = 0; i < size; i++) acc[i] += xq[i] * xq[i];               \
                }                                                                             \
                const T *xc = x + (n * channels + c) * size;                                  \
                T *yc = y + (n * channels + c) * size;                                        \
                for (int64_t i = 0; i < size; i++)                                            \
                    yc[i] = xc[i] * POW_##T(bias + k * acc[i], nb);                           \
            }                                                                                 \
        }                                                                                     \
    }

#define POW_float powf
#define POW_double pow
DEFINE_LRN(lrn_f32, float)
DEFINE_LRN(lrn_f64, double)

static ferry_status *lrn_run(eng_op_call *call)
{
    const lrn_attrs *at = call->state;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    int64_t batch = x->dims[0], c = x->dims[1];
    int64_t size = batch * c > 0 ? eng_numel(x) / (batch * c) : 0;
    char *ws = call->workspace;
    size_t acc = align64((size_t)size * (x->dtype == FERRY_DTYPE_DOUBLE ? 8 : 4));
    switch (x->dtype) {
    case FERRY_DTYPE_FLOAT: lrn_f32(x->data, y->data, batch, c, size, at, (float *)ws); break;
    case FERRY_DTYPE_DOUBLE: lrn_f64(x->data, y->data, batch, c, size, at, (double *)ws); break;
    case FERRY_DTYPE_FLOAT16: {
        char *q = ws + acc;
        float *fx = widen(x, &q), *fy = (float *)q;
        lrn_f32(fx, fy, batch, c, size, at, (float *)ws);
        kern_float_to_half(fy, y->data, eng_numel(y));
        break;
    }
    default: { /* bfloat16 */
        int64_t n = eng_numel(x);
        float *fx = (float *)(ws + acc), *fy = (float *)((char *)fx + f32_copy_size(x));
        const uint16_t *xv = x->data;
        uint16_t *yv = y->data;
        for (int64_t i = 0; i < n; i++) fx[i] = core_bf16_to_float(xv[i]);
        lrn_f32(fx, fy, batch, c, size, at, (float *)ws);
        for (int64_t i = 0; i < n; i++) yv[i] = core_float_to_bf16(fy[i]);
        break;
    }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * LpPool: the p-norm of each window (taps in the padding count as zeros)
 * ------------------------------------------------------------------------------------- */

typedef struct lppool_attrs {
    kern_window_attrs win;
    double p;
} lppool_attrs;

static ferry_status *lppool_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    lppool_attrs a;
    ferry_status *st = kern_window_read(node, true, false, &a.win);
    if (st) return st;
    if (a.win.n_dilations)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute dilations is not part of LpPool before opset 18");
    /* p is a float in opset 1 and an int from opset 2; accept what the model has. */
    if (eng_attr_kind(node, "p") == ENG_ATTR_FLOAT)
        a.p = eng_attr_float(node, "p", 2.0f);
    else
        a.p = (double)eng_attr_int(node, "p", 2);
    if (!(a.p > 0.0) || isinf(a.p))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute p must be positive, got %g", a.p);
    if ((st = alloc_state(sizeof(a), state))) return st;
    memcpy(*state, &a, sizeof(a));
    return NULL;
}

static ferry_status *lppool_plan(const eng_op_call *call, kern_window *w)
{
    const lppool_attrs *at = call->state;
    const eng_tensor *x = call->in[0];
    if (!is_float_type(x->dtype)) return eng_bad_dtype("input", x->dtype);
    if (x->rank < 3)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input: expected at least 3 dims (batch, channels, spatial...), got %d",
                          x->rank);
    int nsp = x->rank - 2;
    if (at->win.n_kernel != nsp)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "attribute kernel_shape has %d values for %d spatial dims",
                          at->win.n_kernel, nsp);
    return kern_window_plan(&at->win, nsp, x->dims + 2, at->win.kernel, w);
}

static ferry_status *lppool_infer(eng_op_call *call)
{
    kern_window w;
    ferry_status *st = lppool_plan(call, &w);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    y->dtype = x->dtype;
    y->rank = x->rank;
    y->dims[0] = x->dims[0];
    y->dims[1] = x->dims[1];
    for (int i = 0; i < w.nsp; i++) y->dims[2 + i] = w.out[i];
    if (x->dtype == FERRY_DTYPE_FLOAT16)
        call->workspace_size = f32_copy_size(x) + f32_copy_size(y);
    return NULL;
}

#define DEFINE_LPPOOL(name, T)                                                                \
    static void name(const T *x, T *y, int64_t planes, const kern_window *w, double p)        \
    {                                                                                         \
        int nsp = w->nsp;                                                                     \
        for (int64_t pl = 0; pl < planes; pl++) {                                             \
            const T *xp = x + pl * w->in_size;                                                \
            int64_t opos[MAX_SP] = {0};                                                       \
            for (int64_t o = 0; o < w->out_size; o++) {                                       \
                double sum = 0.0;                                                             \
                int64_t kpos[MAX_SP] = {0};                                                   \
                for (int64_t kk = 0; kk < w->kernel_size; kk++) {                             \
                    int64_t idx = 0;                                                          \
                    bool inside = true;                                                       \
                    for (int d = 0; d < nsp; d++) {                                           \
                        int64_t i = opos[d] * w->stride[d] - w->pad_begin[d] + kpos[d];       \
                        inside = inside && i >= 0 && i < w->in[d];                            \
                        idx = idx * w->in[d] + i;                                             \
                    }                                                                         \
                    if (inside) {                                                             \
                        double v = fabs((double)xp[idx]);                                     \
                        sum += p == 1.0 ? v : p == 2.0 ? v * v : pow(v, p);                   \
                    }                                                                         \
                    for (int d = nsp - 1; d >= 0; d--) {                                      \
                        if (++kpos[d] < w->kernel[d]) break;                                  \
                        kpos[d] = 0;                                                          \
                    }                                                                         \
                }                                                                             \
                y[pl * w->out_size + o] =                                                     \
                    (T)(p == 1.0 ? sum : p == 2.0 ? sqrt(sum) : pow(sum, 1.0 / p));           \
                for (int d = nsp - 1; d >= 0; d--) {                                          \
                    if (++opos[d] < w->out[d]) break;                                         \
                    opos[d] = 0;                                                              \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_LPPOOL(lppool_f32, float)
DEFINE_LPPOOL(lppool_f64, double)

static ferry_status *lppool_run(eng_op_call *call)
{
    const lppool_attrs *at = call->state;
    kern_window w;
    ferry_status *st = lppool_plan(call, &w);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    int64_t planes = x->dims[0] * x->dims[1];
    switch (x->dtype) {
    case FERRY_DTYPE_FLOAT: lppool_f32(x->data, y->data, planes, &w, at->p); break;
    case FERRY_DTYPE_DOUBLE: lppool_f64(x->data, y->data, planes, &w, at->p); break;
    default: {
        char *q = call->workspace;
        float *fx = widen(x, &q), *fy = (float *)q;
        lppool_f32(fx, fy, planes, &w, at->p);
        kern_float_to_half(fy, y->data, eng_numel(y));
        break;
    }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * MaxUnpool: values put back at MaxPool's indices, zeros elsewhere
 * ------------------------------------------------------------------------------------- */

typedef struct unpool_attrs {
    kern_window_attrs win;
} unpool_attrs;

static ferry_status *unpool_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    unpool_attrs a;
    ferry_status *st = kern_window_read(node, true, false, &a.win);
    if (st) return st;
    if (a.win.auto_pad != KERN_PAD_NOTSET)
        return core_error(FERRY_ERR_INVALID_MODEL, "MaxUnpool has no attribute auto_pad");
    if ((st = alloc_state(sizeof(a), state))) return st;
    memcpy(*state, &a, sizeof(a));
    return NULL;
}

/* The shape MaxPool's input had: the space the indices count in. */
static ferry_status *unpool_shapes(const eng_op_call *call, int64_t *inferred, int64_t *out)
{
    const unpool_attrs *at = call->state;
    const kern_window_attrs *a = &at->win;
    const eng_tensor *x = call->in[0], *ind = input(call, 1), *shape = input(call, 2);
    char s1[128], s2[128];
    if (!ind) return core_error(FERRY_ERR_INVALID_MODEL, "MaxUnpool needs input I");
    if (!is_float_type(x->dtype)) return eng_bad_dtype("input X", x->dtype);
    if (ind->dtype != FERRY_DTYPE_INT64) return eng_bad_dtype("input I", ind->dtype);
    bool same = ind->rank == x->rank;
    for (int d = 0; same && d < x->rank; d++) same = ind->dims[d] == x->dims[d];
    if (!same)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input I %s must have the shape of X %s",
                          eng_shape_str(ind, s1, sizeof(s1)), eng_shape_str(x, s2, sizeof(s2)));
    int nsp = x->rank - 2;
    if (nsp < 1 || a->n_kernel != nsp || (a->n_strides && a->n_strides != nsp) ||
        (a->n_pads && a->n_pads != 2 * nsp))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "attributes kernel_shape, strides and pads do not fit an input of "
                          "shape %s",
                          eng_shape_str(x, s1, sizeof(s1)));
    inferred[0] = out[0] = x->dims[0];
    inferred[1] = out[1] = x->dims[1];
    for (int i = 0; i < nsp; i++) {
        int64_t s = a->n_strides ? a->strides[i] : 1;
        int64_t pads = a->n_pads ? a->pads[i] + a->pads[nsp + i] : 0;
        inferred[2 + i] = out[2 + i] = (x->dims[2 + i] - 1) * s - pads + a->kernel[i];
        if (inferred[2 + i] < 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "spatial dim %d: the padding exceeds the output", i);
    }
    if (shape) {
        int64_t v[FERRY_MAX_RANK];
        size_t n;
        ferry_status *st = eng_read_ints(shape, v, FERRY_MAX_RANK, &n);
        if (st) return st;
        if ((int)n != x->rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input output_shape: expected %d values, got %zu", x->rank, n);
        for (int d = 0; d < x->rank; d++) {
            /* The unpooled tensor goes in the output's leading corner, so the output can only
             * be larger. */
            if (v[d] < inferred[d] || (d < 2 && v[d] != inferred[d]))
                return core_error(FERRY_ERR_INVALID_ARGUMENT,
                                  "input output_shape: dim %d is %lld, but the unpooled tensor "
                                  "needs %lld",
                                  d, (long long)v[d], (long long)inferred[d]);
            out[d] = v[d];
        }
    }
    return NULL;
}

static ferry_status *unpool_infer(eng_op_call *call)
{
    int64_t inferred[FERRY_MAX_RANK], out[FERRY_MAX_RANK];
    ferry_status *st = unpool_shapes(call, inferred, out);
    if (st) return st;
    eng_tensor *y = call->out[0];
    y->dtype = call->in[0]->dtype;
    eng_set_shape(y, call->in[0]->rank, out);
    return NULL;
}

static ferry_status *unpool_run(eng_op_call *call)
{
    int64_t inferred[FERRY_MAX_RANK], out[FERRY_MAX_RANK];
    ferry_status *st = unpool_shapes(call, inferred, out);
    if (st) return st;
    const eng_tensor *x = call->in[0], *ind = call->in[1];
    eng_tensor *y = call->out[0];
    int rank = x->rank;
    size_t esz = ferry_dtype_size(x->dtype);
    memset(y->data, 0, eng_nbytes(y));
    int64_t total = 1;
    for (int d = 0; d < rank; d++) total *= inferred[d];
    const int64_t *iv = ind->data;
    int64_t n = eng_numel(x);
    for (int64_t i = 0; i < n; i++) {
        int64_t idx = iv[i];
        if (idx < 0 || idx >= total)
            return core_error(FERRY_ERR_RUNTIME,
                              "index %lld at position %lld of I is out of range [0, %lld)",
                              (long long)idx, (long long)i, (long long)total);
        /* A flat index into the unpooled shape, re-addressed in the (larger) output. */
        int64_t o = 0, mul = 1;
        for (int d = rank - 1; d >= 0; d--) {
            o += (idx % inferred[d]) * mul;
            idx /= inferred[d];
            mul *= out[d];
        }
        memcpy((char *)y->data + o * (int64_t)esz, (const char *)x->data + i * (int64_t)esz,
               esz);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * RoiAlign (opset 10 and 16), following onnxruntime's sampling and its "max" mode, which
 * takes the maximum of the bilinear terms rather than of the interpolated values
 * ------------------------------------------------------------------------------------- */

/* Sampling points per bin and axis that an adaptive grid may take. */
#define ROI_MAX_GRID 65536.0

typedef struct roi_attrs {
    bool max;
    bool half_pixel; /* opset 16 coordinate_transformation_mode: half_pixel shifts by -0.5 */
    int64_t out_h, out_w, sampling_ratio;
    float spatial_scale;
} roi_attrs;

static ferry_status *roi_init(const eng_node *node, int opset, void **state)
{
    roi_attrs a;
    const char *mode = eng_attr_string(node, "mode", "avg");
    if (strcmp(mode, "avg") && strcmp(mode, "max"))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute mode: unknown value '%s' (expected avg or max)", mode);
    a.max = !strcmp(mode, "max");
    const char *ctm = eng_attr_string(node, "coordinate_transformation_mode",
                                      opset >= 16 ? "half_pixel" : "output_half_pixel");
    if (opset < 16) ctm = "output_half_pixel"; /* the attribute came with opset 16 */
    if (strcmp(ctm, "half_pixel") && strcmp(ctm, "output_half_pixel"))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute coordinate_transformation_mode: unknown value '%s' "
                          "(expected half_pixel or output_half_pixel)",
                          ctm);
    a.half_pixel = !strcmp(ctm, "half_pixel");
    a.out_h = eng_attr_int(node, "output_height", 1);
    a.out_w = eng_attr_int(node, "output_width", 1);
    a.sampling_ratio = eng_attr_int(node, "sampling_ratio", 0);
    a.spatial_scale = eng_attr_float(node, "spatial_scale", 1.0f);
    if (a.out_h < 1 || a.out_w < 1 || a.out_h > ((int64_t)1 << 20) ||
        a.out_w > ((int64_t)1 << 20))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attributes output_height and output_width must be positive, got "
                          "%lld and %lld",
                          (long long)a.out_h, (long long)a.out_w);
    if (a.sampling_ratio < 0 || a.sampling_ratio > ((int64_t)1 << 20))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute sampling_ratio must not be negative, got %lld",
                          (long long)a.sampling_ratio);
    ferry_status *st = alloc_state(sizeof(a), state);
    if (st) return st;
    memcpy(*state, &a, sizeof(a));
    return NULL;
}

static ferry_status *roi_infer(eng_op_call *call)
{
    const roi_attrs *at = call->state;
    const eng_tensor *x = call->in[0], *rois = input(call, 1), *bi = input(call, 2);
    char s1[128];
    ferry_status *st;
    if (!rois || !bi)
        return core_error(FERRY_ERR_INVALID_MODEL, "RoiAlign needs inputs rois and "
                          "batch_indices");
    if (!is_float_type(x->dtype)) return eng_bad_dtype("input X", x->dtype);
    if ((st = same_type("rois", rois, x))) return st;
    if (bi->dtype != FERRY_DTYPE_INT64) return eng_bad_dtype("input batch_indices", bi->dtype);
    if (x->rank != 4)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input X: expected 4 dims (N, C, H, W), "
                          "got %d", x->rank);
    if (rois->rank != 2 || rois->dims[1] != 4)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input rois: expected shape [num_rois, 4], got %s",
                          eng_shape_str(rois, s1, sizeof(s1)));
    if (bi->rank != 1 || bi->dims[0] != rois->dims[0])
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input batch_indices: expected shape [%lld], got %s",
                          (long long)rois->dims[0], eng_shape_str(bi, s1, sizeof(s1)));
    eng_tensor *y = call->out[0];
    int64_t dims[4] = {rois->dims[0], x->dims[1], at->out_h, at->out_w};
    y->dtype = x->dtype;
    eng_set_shape(y, 4, dims);
    if (x->dtype == FERRY_DTYPE_FLOAT16)
        call->workspace_size = f32_copy_size(x) + f32_copy_size(rois) + f32_copy_size(y);
    return NULL;
}

/* One sampling point: the four neighbours' offsets in a plane and their weights. */
typedef struct roi_sample {
    int64_t pos[4];
    double w[4];
} roi_sample;

/* Bilinear sampling at (Y, X) of an H x W plane, as onnxruntime (and Detectron) do it:
 * points more than one pixel outside contribute nothing; others clamp to the border. */
static roi_sample roi_sample_at(double y, double x, int64_t h, int64_t w)
{
    roi_sample s = {{0, 0, 0, 0}, {0.0, 0.0, 0.0, 0.0}};
    if (y < -1.0 || y > (double)h || x < -1.0 || x > (double)w) return s;
    if (y <= 0) y = 0;
    if (x <= 0) x = 0;
    int64_t y0 = (int64_t)y, x0 = (int64_t)x, y1, x1;
    if (y0 >= h - 1) {
        y1 = y0 = h - 1;
        y = (double)y0;
    } else {
        y1 = y0 + 1;
    }
    if (x0 >= w - 1) {
        x1 = x0 = w - 1;
        x = (double)x0;
    } else {
        x1 = x0 + 1;
    }
    double ly = y - (double)y0, lx = x - (double)x0, hy = 1.0 - ly, hx = 1.0 - lx;
    s.pos[0] = y0 * w + x0, s.pos[1] = y0 * w + x1;
    s.pos[2] = y1 * w + x0, s.pos[3] = y1 * w + x1;
    s.w[0] = hy * hx, s.w[1] = hy * lx, s.w[2] = ly * hx, s.w[3] = ly * lx;
    return s;
}

/* Per RoI and output bin, every sampling point is computed once and applied to all channels
 * (Y's bins for one RoI are strided by the plane size). */
#define DEFINE_ROI_ALIGN(name, T)                                                             \
    static void name(const roi_attrs *a, const T *x, const T *rois, const int64_t *bi,        \
                     int64_t nroi, int64_t c, int64_t h, int64_t w, T *y)                     \
    {                                                                                         \
        int64_t oh = a->out_h, ow = a->out_w, plane = oh * ow;                                \
        double off = a->half_pixel ? 0.5 : 0.0;                                               \
        for (int64_t r = 0; r < nroi; r++) {                                                  \
            const T *roi = rois + r * 4;                                                      \
            const T *xb = x + bi[r] * c * h * w;                                              \
            T *yr = y + r * c * plane;                                                        \
            double sx = (double)roi[0] * a->spatial_scale - off;                              \
            double sy = (double)roi[1] * a->spatial_scale - off;                              \
            double rw = (double)roi[2] * a->spatial_scale - off - sx;                         \
            double rh = (double)roi[3] * a->spatial_scale - off - sy;                         \
            if (!a->half_pixel) { /* legacy: malformed RoIs become 1x1 */                     \
                rw = rw > 1.0 ? rw : 1.0;                                                     \
                rh = rh > 1.0 ? rh : 1.0;                                                     \
            }                                                                                 \
            double bh = rh / (double)oh, bw = rw / (double)ow;                                \
            int64_t sr = a->sampling_ratio;                                                   \
            int64_t gh = sr ? sr : (int64_t)ceil(rh / (double)oh);                            \
            int64_t gw = sr ? sr : (int64_t)ceil(rw / (double)ow);                            \
            gh = gh > 0 ? gh : 0;                                                             \
            gw = gw > 0 ? gw : 0;                                                             \
            double count = gh * gw > 1 ? (double)(gh * gw) : 1.0;                             \
            for (int64_t ph = 0; ph < oh; ph++) {                                             \
                for (int64_t pw = 0; pw < ow; pw++) {                                         \
                    T *yb = yr + ph * ow + pw;                                                \
                    for (int64_t ch = 0; ch < c; ch++)                                        \
                        yb[ch * plane] = (a->max && gh * gw > 0) ? (T)-INFINITY : (T)0;       \
                    for (int64_t iy = 0; iy < gh; iy++) {                                     \
                        double py = sy + (double)ph * bh +                                    \
                                    ((double)iy + 0.5) * bh / (double)gh;                     \
                        for (int64_t ix = 0; ix < gw; ix++) {                                 \
                            double px = sx + (double)pw * bw +                                \
                                        ((double)ix + 0.5) * bw / (double)gw;                 \
                            roi_sample s = roi_sample_at(py, px, h, w);                       \
                            T w0 = (T)s.w[0], w1 = (T)s.w[1], w2 = (T)s.w[2], w3 = (T)s.w[3]; \
                            for (int64_t ch = 0; ch < c; ch++) {                              \
                                const T *xc = xb + ch * h * w;                                \
                                T v0 = w0 * xc[s.pos[0]], v1 = w1 * xc[s.pos[1]];             \
                                T v2 = w2 * xc[s.pos[2]], v3 = w3 * xc[s.pos[3]];             \
                                T *o = yb + ch * plane;                                       \
                                if (a->max) {                                                 \
                                    T m01 = v0 > v1 ? v0 : v1, m23 = v2 > v3 ? v2 : v3;       \
                                    T m = m01 > m23 ? m01 : m23;                              \
                                    *o = m > *o ? m : *o;                                     \
                                } else {                                                      \
                                    *o += v0 + v1 + v2 + v3;                                  \
                                }                                                             \
                            }                                                                 \
                        }                                                                     \
                    }                                                                         \
                    if (!a->max)                                                              \
                        for (int64_t ch = 0; ch < c; ch++) yb[ch * plane] /= (T)count;        \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_ROI_ALIGN(roi_align_f32, float)
DEFINE_ROI_ALIGN(roi_align_f64, double)

static ferry_status *roi_run(eng_op_call *call)
{
    const roi_attrs *at = call->state;
    const eng_tensor *x = call->in[0], *rois = call->in[1], *bi = call->in[2];
    eng_tensor *y = call->out[0];
    int64_t nroi = rois->dims[0], n = x->dims[0], c = x->dims[1];
    int64_t h = x->dims[2], w = x->dims[3];
    const int64_t *bv = bi->data;
    for (int64_t r = 0; r < nroi; r++)
        if (bv[r] < 0 || bv[r] >= n)
            return core_error(FERRY_ERR_RUNTIME,
                              "batch_indices[%lld] = %lld is out of range for %lld images",
                              (long long)r, (long long)bv[r], (long long)n);
    /* Sampling positions must be finite, and an adaptive grid (ceil(RoI size / bins) points
     * per bin and axis) must stay countable. */
    for (int64_t r = 0; r < nroi; r++) {
        double v[4];
        for (int i = 0; i < 4; i++) v[i] = core_load_f64(rois->dtype, rois->data, r * 4 + i);
        double rw = (v[2] - v[0]) * at->spatial_scale, rh = (v[3] - v[1]) * at->spatial_scale;
        bool ok = isfinite(v[0] * at->spatial_scale) && isfinite(v[1] * at->spatial_scale) &&
                  isfinite(rw) && isfinite(rh);
        if (ok && !at->sampling_ratio)
            ok = rh / (double)at->out_h <= ROI_MAX_GRID && rw / (double)at->out_w <= ROI_MAX_GRID;
        if (!ok)
            return core_error(FERRY_ERR_RUNTIME,
                              "RoI %lld (%g, %g, %g, %g) is not finite or too large to sample",
                              (long long)r, v[0], v[1], v[2], v[3]);
    }
    if (h == 0 || w == 0) {
        /* No pixels to sample: every bin is empty. */
        memset(y->data, 0, eng_nbytes(y));
        return NULL;
    }
    switch (x->dtype) {
    case FERRY_DTYPE_FLOAT:
        roi_align_f32(at, x->data, rois->data, bv, nroi, c, h, w, y->data);
        break;
    case FERRY_DTYPE_DOUBLE:
        roi_align_f64(at, x->data, rois->data, bv, nroi, c, h, w, y->data);
        break;
    default: {
        char *q = call->workspace;
        float *fx = widen(x, &q), *fr = widen(rois, &q), *fy = (float *)q;
        roi_align_f32(at, fx, fr, bv, nroi, c, h, w, fy);
        kern_float_to_half(fy, y->data, eng_numel(y));
        break;
    }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * NonMaxSuppression (opset 10 and 11), with onnxruntime's conventions: candidates score
 * strictly above score_threshold (when given), ties in score go to the lower box index, a box
 * is suppressed when its IoU with a kept box exceeds iou_threshold, and degenerate boxes
 * (zero area) never suppress or get suppressed.
 * ------------------------------------------------------------------------------------- */

typedef struct nms_attrs {
    bool center;
} nms_attrs;

static ferry_status *nms_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    int64_t c = eng_attr_int(node, "center_point_box", 0);
    if (c != 0 && c != 1)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute center_point_box must be 0 or 1, got %lld", (long long)c);
    ferry_status *st = alloc_state(sizeof(nms_attrs), state);
    if (st) return st;
    ((nms_attrs *)*state)->center = c == 1;
    return NULL;
}

typedef struct nms_params {
    int64_t batches, classes, boxes;
    int64_t max_out;
    float iou, score;
    bool has_score;
} nms_params;

static ferry_status *nms_check(const eng_op_call *call, nms_params *p)
{
    const eng_tensor *boxes = call->in[0], *scores = input(call, 1);
    const eng_tensor *mo = input(call, 2), *iou = input(call, 3), *sc = input(call, 4);
    char s1[128], s2[128];
    if (!scores) return core_error(FERRY_ERR_INVALID_MODEL, "NonMaxSuppression needs scores");
    if (boxes->dtype != FERRY_DTYPE_FLOAT) return eng_bad_dtype("input boxes", boxes->dtype);
    if (scores->dtype != FERRY_DTYPE_FLOAT) return eng_bad_dtype("input scores", scores->dtype);
    if (boxes->rank != 3 || boxes->dims[2] != 4)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input boxes: expected shape [batches, boxes, 4], got %s",
                          eng_shape_str(boxes, s1, sizeof(s1)));
    if (scores->rank != 3 || scores->dims[0] != boxes->dims[0] ||
        scores->dims[2] != boxes->dims[1])
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input scores %s does not fit boxes %s: expected [batches, classes, "
                          "boxes]",
                          eng_shape_str(scores, s1, sizeof(s1)),
                          eng_shape_str(boxes, s2, sizeof(s2)));
    p->batches = boxes->dims[0];
    p->boxes = boxes->dims[1];
    p->classes = scores->dims[1];
    p->max_out = 0;
    p->iou = 0.0f;
    p->score = 0.0f;
    p->has_score = false;
    if (mo && eng_numel(mo) > 0) {
        if (mo->dtype != FERRY_DTYPE_INT64 && mo->dtype != FERRY_DTYPE_INT32)
            return eng_bad_dtype("input max_output_boxes_per_class", mo->dtype);
        if (eng_numel(mo) != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input max_output_boxes_per_class must hold one value");
        p->max_out = core_load_i64(mo->dtype, mo->data, 0);
        if (p->max_out < 0) p->max_out = 0;
    }
    if (iou && eng_numel(iou) > 0) {
        if (iou->dtype != FERRY_DTYPE_FLOAT || eng_numel(iou) != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input iou_threshold must be one float");
        p->iou = *(const float *)iou->data;
        if (!(p->iou >= 0.0f && p->iou <= 1.0f))
            return core_error(FERRY_ERR_RUNTIME, "iou_threshold must be in [0, 1], got %g",
                              (double)p->iou);
    }
    if (sc && eng_numel(sc) > 0) {
        if (sc->dtype != FERRY_DTYPE_FLOAT || eng_numel(sc) != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input score_threshold must be one float");
        p->score = *(const float *)sc->data;
        p->has_score = true;
    }
    return NULL;
}

/* A candidate box and its score. */
typedef struct nms_cand {
    float score;
    int64_t index;
} nms_cand;

static inline bool cand_before(const nms_cand *a, const nms_cand *b)
{
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

static void heap_down(nms_cand *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < n && cand_before(&h[l], &h[best])) best = l;
        if (r < n && cand_before(&h[r], &h[best])) best = r;
        if (best == i) return;
        nms_cand t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

/* The box's corners as (x_min, y_min, x_max, y_max), whatever corner order it came in. */
static void box_corners(const float *b, bool center, float *c)
{
    if (center) {
        float hw = b[2] / 2.0f, hh = b[3] / 2.0f;
        c[0] = b[0] - hw, c[2] = b[0] + hw;
        c[1] = b[1] - hh, c[3] = b[1] + hh;
    } else {
        /* [y1, x1, y2, x2] with either corner first. */
        c[0] = fminf(b[1], b[3]), c[2] = fmaxf(b[1], b[3]);
        c[1] = fminf(b[0], b[2]), c[3] = fmaxf(b[0], b[2]);
    }
}

static bool suppresses(const float *a, const float *b, bool center, float threshold)
{
    float ca[4], cb[4];
    box_corners(a, center, ca);
    box_corners(b, center, cb);
    float ix0 = fmaxf(ca[0], cb[0]), ix1 = fminf(ca[2], cb[2]);
    if (ix1 <= ix0) return false;
    float iy0 = fmaxf(ca[1], cb[1]), iy1 = fminf(ca[3], cb[3]);
    if (iy1 <= iy0) return false;
    float inter = (ix1 - ix0) * (iy1 - iy0);
    if (inter <= 0.0f) return false;
    float area_a = (ca[2] - ca[0]) * (ca[3] - ca[1]);
    float area_b = (cb[2] - cb[0]) * (cb[3] - cb[1]);
    float uni = area_a + area_b - inter;
    if (area_a <= 0.0f || area_b <= 0.0f || uni <= 0.0f) return false;
    return inter / uni > threshold;
}

/* Runs the selection; writes [batch, class, box] triples to OUT when not NULL and returns
 * their count. HEAP and KEPT hold p->boxes entries each. */
static int64_t nms_select(const eng_op_call *call, const nms_params *p, nms_cand *heap,
                          int64_t *kept, int64_t *out)
{
    const nms_attrs *at = call->state;
    const float *boxes = call->in[0]->data, *scores = call->in[1]->data;
    int64_t total = 0;
    for (int64_t b = 0; b < p->batches; b++) {
        const float *bb = boxes + b * p->boxes * 4;
        for (int64_t c = 0; c < p->classes; c++) {
            if (p->max_out == 0) continue;
            const float *sc = scores + (b * p->classes + c) * p->boxes;
            int64_t n = 0;
            for (int64_t i = 0; i < p->boxes; i++)
                if (!p->has_score || sc[i] > p->score) heap[n++] = (nms_cand){sc[i], i};
            for (int64_t i = n / 2 - 1; i >= 0; i--) heap_down(heap, n, i);
            int64_t nk = 0;
            while (n > 0 && nk < p->max_out) {
                nms_cand top = heap[0];
                heap[0] = heap[--n];
                heap_down(heap, n, 0);
                bool keep = true;
                for (int64_t k = 0; keep && k < nk; k++)
                    keep = !suppresses(bb + top.index * 4, bb + kept[k] * 4, at->center, p->iou);
                if (!keep) continue;
                kept[nk++] = top.index;
                if (out) {
                    out[total * 3] = b;
                    out[total * 3 + 1] = c;
                    out[total * 3 + 2] = top.index;
                }
                total++;
            }
        }
    }
    return total;
}

static size_t nms_workspace(const nms_params *p)
{
    return align64((size_t)p->boxes * sizeof(nms_cand)) +
           align64((size_t)p->boxes * sizeof(int64_t));
}

static ferry_status *nms_infer(eng_op_call *call)
{
    nms_params p;
    ferry_status *st = nms_check(call, &p);
    if (st) return st;
    if (!call->in[0]->data || !call->in[1]->data)
        return core_error(FERRY_ERR_INTERNAL, "boxes and scores are not known at plan time");
    /* The output's length is the selection's: run it now (infer may allocate). */
    char *ws = malloc(nms_workspace(&p) + 64);
    if (!ws) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    nms_cand *heap = (nms_cand *)ws;
    int64_t *kept = (int64_t *)(ws + align64((size_t)p.boxes * sizeof(nms_cand)));
    int64_t count = nms_select(call, &p, heap, kept, NULL);
    free(ws);
    eng_tensor *y = call->out[0];
    int64_t dims[2] = {count, 3};
    y->dtype = FERRY_DTYPE_INT64;
    eng_set_shape(y, 2, dims);
    call->workspace_size = nms_workspace(&p);
    return NULL;
}

static ferry_status *nms_run(eng_op_call *call)
{
    nms_params p;
    ferry_status *st = nms_check(call, &p);
    if (st) return st;
    char *ws = call->workspace;
    nms_cand *heap = (nms_cand *)ws;
    int64_t *kept = (int64_t *)(ws + align64((size_t)p.boxes * sizeof(nms_cand)));
    eng_tensor *y = call->out[0];
    /* The inputs are those the plan was built from; check the count all the same, since
     * writing more rows than planned would overrun the output. */
    if (nms_select(call, &p, heap, kept, NULL) != y->dims[0])
        return core_error(FERRY_ERR_INTERNAL, "the inputs changed after planning");
    nms_select(call, &p, heap, kept, y->data);
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "", .name = "ConvTranspose", .since_version = 1, .init = convt_init,
     .fini = free, .infer = convt_infer, .run = convt_run, .pack = convt_pack,
     .unpack = convt_unpack},
    {.domain = "", .name = "ConvTranspose", .since_version = 11, .init = convt_init,
     .fini = free, .infer = convt_infer, .run = convt_run, .pack = convt_pack,
     .unpack = convt_unpack},
    {.domain = "", .name = "InstanceNormalization", .since_version = 1, .init = instnorm_init,
     .fini = free, .infer = instnorm_infer, .run = instnorm_run},
    {.domain = "", .name = "InstanceNormalization", .since_version = 6, .init = instnorm_init,
     .fini = free, .infer = instnorm_infer, .run = instnorm_run},
    {.domain = "", .name = "LRN", .since_version = 1, .init = lrn_init, .fini = free,
     .infer = lrn_infer, .run = lrn_run},
    {.domain = "", .name = "LRN", .since_version = 13, .init = lrn_init, .fini = free,
     .infer = lrn_infer, .run = lrn_run},
    {.domain = "", .name = "LpPool", .since_version = 1, .init = lppool_init, .fini = free,
     .infer = lppool_infer, .run = lppool_run},
    {.domain = "", .name = "LpPool", .since_version = 2, .init = lppool_init, .fini = free,
     .infer = lppool_infer, .run = lppool_run},
    {.domain = "", .name = "LpPool", .since_version = 11, .init = lppool_init, .fini = free,
     .infer = lppool_infer, .run = lppool_run},
    {.domain = "", .name = "MaxUnpool", .since_version = 9, .value_inputs = 1u << 2,
     .init = unpool_init, .fini = free, .infer = unpool_infer, .run = unpool_run},
    {.domain = "", .name = "MaxUnpool", .since_version = 11, .value_inputs = 1u << 2,
     .init = unpool_init, .fini = free, .infer = unpool_infer, .run = unpool_run},
    {.domain = "", .name = "RoiAlign", .since_version = 10, .init = roi_init, .fini = free,
     .infer = roi_infer, .run = roi_run},
    {.domain = "", .name = "RoiAlign", .since_version = 16, .init = roi_init, .fini = free,
     .infer = roi_infer, .run = roi_run},
    {.domain = "", .name = "NonMaxSuppression", .since_version = 10, .value_inputs = 0x1f,
     .init = nms_init, .fini = free, .infer = nms_infer, .run = nms_run},
    {.domain = "", .name = "NonMaxSuppression", .since_version = 11, .value_inputs = 0x1f,
     .init = nms_init, .fini = free, .infer = nms_infer, .run = nms_run},
};

const eng_op_table eng_ops_nn2 = {ops, sizeof(ops) / sizeof(ops[0])};
