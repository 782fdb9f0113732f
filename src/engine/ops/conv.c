/* conv.c - Conv for any number of spatial dims, with groups, padding, strides and dilations.
 *
 * float32 picks one of three paths per node and input shape:
 *   pointwise  1x1 kernels with unit strides and no padding: each group is one GEMM straight
 *              on the input, no copies;
 *   depthwise  one input channel per group (2-D): a direct kernel over a zero-padded copy of
 *              each input plane, since a GEMM with one input channel is all overhead;
 *   im2col     everything else: windows are unrolled into a column matrix in the workspace,
 *              a chunk of output columns at a time so it stays in cache, then multiplied
 *              with kern_sgemm.
 * 1-D convolutions run as 2-D ones with a height of 1. float16 is computed in float32 through
 * the workspace; float64 uses a plain direct loop.
 */
#include "engine/op.h"

#include "engine/kernels/gemm.h"
#include "engine/kernels/half.h"
#include "engine/kernels/simd.h"
#include "engine/kernels/window.h"

#include <stdlib.h>
#include <string.h>

KERN_FAST_LOOPS

/* Upper bound for a chunk of the im2col matrix (floats): 2 MiB fits in L2/L3 next to the
 * packed panels. Chunks are never narrower than MIN_CHUNK columns, which keeps the cost of
 * repacking the weights for every chunk small. */
#define COL_BUDGET ((int64_t)1 << 19)
#define MIN_CHUNK 256

typedef struct conv_attrs {
    kern_window_attrs win;
    int64_t group;
} conv_attrs;

typedef enum conv_kind { CONV_IM2COL, CONV_POINTWISE, CONV_DEPTHWISE } conv_kind;

typedef struct conv_plan {
    kern_window w; /* 1-D convolutions are described as 2-D ones with height 1 */
    int64_t n, c, m, group, cg, mg;
    int64_t kdim;  /* cg * kernel size: rows of the column matrix, columns of W per group */
    conv_kind kind;
    int64_t chunk; /* output columns per im2col chunk */
    size_t gemm_ws, col_ws; /* workspace bytes, each a multiple of 64; col_ws holds the im2col
                             * chunk, or the padded input plane of a depthwise convolution */
} conv_plan;

static size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static ferry_status *conv_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    conv_attrs a;
    ferry_status *st = kern_window_read(node, false, false, &a.win);
    if (st) return st;
    a.group = eng_attr_int(node, "group", 1);
    if (a.group < 1 || a.group > ((int64_t)1 << 30))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute group must be positive, got %lld",
                          (long long)a.group);
    conv_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *s = a;
    *state = s;
    return NULL;
}

static void conv_fini(void *state)
{
    free(state);
}

static const eng_tensor *input(const eng_op_call *call, int i)
{
    return i < call->n_in ? call->in[i] : NULL;
}

/* The rows and columns of padded input that a depthwise convolution's outputs read. */
static void dw_padded_dims(const kern_window *w, int64_t *rows, int64_t *cols)
{
    *rows = (w->out[0] - 1) * w->stride[0] + (w->kernel[0] - 1) * w->dilation[0] + 1;
    *cols = (w->out[1] - 1) * w->stride[1] + (w->kernel[1] - 1) * w->dilation[1] + 1;
}

/* Whether the padded plane stays near the size of the input and output planes; huge pads or
 * dilations (legal, if odd) go through im2col, whose workspace is bounded. */
static bool dw_padded_fits(const kern_window *w)
{
    int64_t rows, cols, size;
    dw_padded_dims(w, &rows, &cols);
    return !__builtin_mul_overflow(rows, cols, &size) &&
           size <= 4 * (w->in_size + w->out_size) + 4096;
}

/* Checks the inputs against the attributes and works out shapes, path and workspace. */
static ferry_status *conv_plan_make(const eng_op_call *call, conv_plan *p)
{
    const conv_attrs *at = call->state;
    const eng_tensor *x = input(call, 0), *w = input(call, 1), *b = input(call, 2);
    char s1[128], s2[128];
    if (!x || !w) return core_error(FERRY_ERR_INVALID_MODEL, "Conv needs inputs X and W");
    if (x->dtype != FERRY_DTYPE_FLOAT && x->dtype != FERRY_DTYPE_FLOAT16 &&
        x->dtype != FERRY_DTYPE_DOUBLE)
        return eng_bad_dtype("input X", x->dtype);
    if (w->dtype != x->dtype || (b && b->dtype != x->dtype))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "inputs X, W and B must share one type");
    if (x->rank < 3)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X: expected at least 3 dims (batch, channels, spatial...), "
                          "got %d",
                          x->rank);
    int nsp = x->rank - 2;
    if (w->rank != x->rank)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input W: expected %d dims for a %d-D convolution, got %d", x->rank,
                          nsp, w->rank);
    const int64_t *kernel = w->dims + 2;
    if (at->win.n_kernel) {
        bool same = at->win.n_kernel == nsp;
        for (int i = 0; same && i < nsp; i++) same = at->win.kernel[i] == kernel[i];
        if (!same)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "attribute kernel_shape does not match the spatial dims of W %s",
                              eng_shape_str(w, s1, sizeof(s1)));
    }
    p->n = x->dims[0];
    p->c = x->dims[1];
    p->m = w->dims[0];
    p->group = at->group;
    p->cg = w->dims[1];
    if (p->c != p->cg * p->group)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X has %lld channels, but W %s expects %lld per group with "
                          "%lld groups",
                          (long long)p->c, eng_shape_str(w, s1, sizeof(s1)), (long long)p->cg,
                          (long long)p->group);
    if (p->m % p->group)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "W has %lld output channels, which group %lld does not divide",
                          (long long)p->m, (long long)p->group);
    p->mg = p->m / p->group;
    if (b && (b->rank != 1 || b->dims[0] != p->m))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input B: expected shape [%lld] (one bias per output channel), got %s",
                          (long long)p->m, eng_shape_str(b, s2, sizeof(s2)));
    ferry_status *st = kern_window_plan(&at->win, nsp, x->dims + 2, kernel, &p->w);
    if (st) return st;
    if (nsp == 1) {
        /* Run as 2-D with a unit height. */
        kern_window *v = &p->w;
        v->nsp = 2;
        v->in[1] = v->in[0], v->in[0] = 1;
        v->out[1] = v->out[0], v->out[0] = 1;
        v->kernel[1] = v->kernel[0], v->kernel[0] = 1;
        v->stride[1] = v->stride[0], v->stride[0] = 1;
        v->dilation[1] = v->dilation[0], v->dilation[0] = 1;
        v->pad_begin[1] = v->pad_begin[0], v->pad_begin[0] = 0;
        v->pad_end[1] = v->pad_end[0], v->pad_end[0] = 0;
    }
    if (__builtin_mul_overflow(p->cg, p->w.kernel_size, &p->kdim))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "kernel too large");

    bool unit = p->w.kernel_size == 1;
    for (int i = 0; i < p->w.nsp; i++)
        unit = unit && p->w.stride[i] == 1 && p->w.pad_begin[i] == 0 && p->w.pad_end[i] == 0;
    if (unit)
        p->kind = CONV_POINTWISE;
    else if (p->cg == 1 && p->w.nsp == 2 && dw_padded_fits(&p->w))
        p->kind = CONV_DEPTHWISE;
    else
        p->kind = CONV_IM2COL;

    p->gemm_ws = p->col_ws = 0;
    p->chunk = p->w.out_size;
    if (x->dtype == FERRY_DTYPE_DOUBLE) return NULL;
    if (p->kind == CONV_POINTWISE) {
        p->gemm_ws = align64(kern_sgemm_workspace(p->mg, p->w.out_size, p->kdim));
    } else if (p->kind == CONV_DEPTHWISE) {
        int64_t ph, pw;
        dw_padded_dims(&p->w, &ph, &pw);
        p->col_ws = align64((size_t)(ph * pw) * sizeof(float));
    } else if (p->kind == CONV_IM2COL) {
        if (p->kdim > 0 && p->w.out_size > COL_BUDGET / p->kdim) {
            int64_t c = COL_BUDGET / p->kdim / 16 * 16;
            p->chunk = min64(p->w.out_size, c < MIN_CHUNK ? MIN_CHUNK : c);
        }
        p->col_ws = align64((size_t)(p->kdim * p->chunk) * sizeof(float));
        p->gemm_ws = align64(kern_sgemm_workspace(p->mg, p->chunk, p->kdim));
    }
    return NULL;
}

static ferry_status *conv_infer(eng_op_call *call)
{
    conv_plan p;
    ferry_status *st = conv_plan_make(call, &p);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    y->dtype = x->dtype;
    y->rank = x->rank;
    y->dims[0] = p.n;
    y->dims[1] = p.m;
    if (x->rank == 3)
        y->dims[2] = p.w.out[1];
    else
        for (int i = 0; i < p.w.nsp; i++) y->dims[2 + i] = p.w.out[i];
    size_t ws = p.gemm_ws + p.col_ws;
    if (x->dtype == FERRY_DTYPE_FLOAT16) {
        const eng_tensor *b = input(call, 2);
        ws += align64((size_t)eng_numel(x) * sizeof(float)) +
              align64((size_t)eng_numel(call->in[1]) * sizeof(float)) +
              (b ? align64((size_t)eng_numel(b) * sizeof(float)) : 0) +
              align64((size_t)eng_numel(y) * sizeof(float));
    }
    call->workspace_size = ws;
    return NULL;
}

/* Fills the rows of output channels [0, MG) of one image with their bias. */
KERN_CLONES static void fill_bias(float *y, const float *bias, int64_t mg, int64_t size)
{
    for (int64_t m = 0; m < mg; m++)
        for (int64_t j = 0; j < size; j++) y[m * size + j] = bias[m];
}

/* The output positions [LO, HI) along one axis whose input position o * S + OFF lies in
 * [0, IN), clipped to [0, OUT). */
static KERN_INLINE void valid_range(int64_t in, int64_t out, int64_t s, int64_t off,
                                    int64_t *lo, int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = in - 1 - off >= 0 ? (in - 1 - off) / s + 1 : 0;
    *lo = min64(l, out);
    *hi = h < *lo ? *lo : min64(h, out);
}

/* Columns [J0, J0 + COLS) of the im2col matrix of one group of one image (2-D): row
 * (c, kh, kw) holds the input pixel each output position sees through that kernel tap. */
KERN_CLONES static void im2col_2d(const float *x, const conv_plan *p, int64_t j0, int64_t cols,
                                  float *col)
{
    const kern_window *w = &p->w;
    int64_t ih_n = w->in[0], iw_n = w->in[1], ow_n = w->out[1];
    int64_t kh_n = w->kernel[0], kw_n = w->kernel[1];
    int64_t sh = w->stride[0], sw = w->stride[1], dh = w->dilation[0], dw = w->dilation[1];
    int64_t ph = w->pad_begin[0], pw = w->pad_begin[1];
    for (int64_t c = 0; c < p->cg; c++) {
        const float *xc = x + c * ih_n * iw_n;
        for (int64_t kh = 0; kh < kh_n; kh++) {
            for (int64_t kw = 0; kw < kw_n; kw++) {
                float *dst = col + ((c * kh_n + kh) * kw_n + kw) * cols;
                int64_t off = kw * dw - pw, lo, hi;
                valid_range(iw_n, ow_n, sw, off, &lo, &hi);
                int64_t oh = j0 / ow_n, ow = j0 % ow_n;
                for (int64_t j = 0; j < cols; oh++, ow = 0) {
                    int64_t run = min64(ow_n - ow, cols - j);
                    int64_t ih = oh * sh - ph + kh * dh;
                    float *d = dst + j; /* d[o - ow] is output position o */
                    if (ih < 0 || ih >= ih_n) {
                        memset(d, 0, (size_t)run * sizeof(float));
                    } else {
                        const float *xr = xc + ih * iw_n;
                        int64_t end = ow + run;
                        int64_t a = ow < lo ? lo : ow, z = end > hi ? hi : end;
                        if (a > z) a = z;
                        for (int64_t o = ow; o < a; o++) d[o - ow] = 0.0f;
                        if (sw == 1)
                            memcpy(d + (a - ow), xr + a + off, (size_t)(z - a) * sizeof(float));
                        else
                            for (int64_t o = a; o < z; o++) d[o - ow] = xr[o * sw + off];
                        for (int64_t o = z; o < end; o++) d[o - ow] = 0.0f;
                    }
                    j += run;
                }
            }
        }
    }
}

/* The same for any number of spatial dims, with an odometer over output positions. */
static void im2col_nd(const float *x, const conv_plan *p, int64_t j0, int64_t cols, float *col)
{
    const kern_window *w = &p->w;
    int nsp = w->nsp;
    int64_t row = 0;
    for (int64_t c = 0; c < p->cg; c++) {
        const float *xc = x + c * w->in_size;
        int64_t kpos[KERN_MAX_SPATIAL] = {0};
        for (int64_t kk = 0; kk < w->kernel_size; kk++, row++) {
            float *dst = col + row * cols;
            int64_t opos[KERN_MAX_SPATIAL];
            int64_t rest = j0;
            for (int d = nsp - 1; d >= 0; d--) {
                opos[d] = rest % w->out[d];
                rest /= w->out[d];
            }
            for (int64_t j = 0; j < cols; j++) {
                int64_t idx = 0;
                bool inside = true;
                for (int d = 0; d < nsp; d++) {
                    int64_t i = opos[d] * w->stride[d] - w->pad_begin[d] +
                                kpos[d] * w->dilation[d];
                    inside = inside && i >= 0 && i < w->in[d];
                    idx = idx * w->in[d] + i;
                }
                dst[j] = inside ? xc[idx] : 0.0f;
                for (int d = nsp - 1; d >= 0; d--) {
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

/* A 3x3 depthwise output row: all nine taps in one pass. R0..R2 are the padded input rows of
 * the three kernel rows. */
#define DW3X3_LOOP(S)                                                                         \
    for (int64_t o = 0; o < n; o++)                                                           \
        yr[o] = b + w_[0] * r0[o * S] + w_[1] * r0[o * S + d] + w_[2] * r0[o * S + 2 * d] +   \
                w_[3] * r1[o * S] + w_[4] * r1[o * S + d] + w_[5] * r1[o * S + 2 * d] +       \
                w_[6] * r2[o * S] + w_[7] * r2[o * S + d] + w_[8] * r2[o * S + 2 * d]

static KERN_INLINE void dw3x3_row(float *restrict yr, const float *restrict r0,
                                  const float *restrict r1, const float *restrict r2,
                                  const float *w_, float b, int64_t n, int64_t s, int64_t d)
{
    /* Constant strides let the compiler use plain or de-interleaving vector loads. */
    if (s == 1)
        DW3X3_LOOP(1);
    else if (s == 2)
        DW3X3_LOOP(2);
    else
        DW3X3_LOOP(s);
}

/* One input channel per group (MobileNet's depthwise convolutions): a GEMM per channel would
 * be all overhead, so outputs are computed directly. Each input plane is first copied into a
 * zero-padded plane PAD, so that every tap of every output is in bounds and rows need no
 * border handling; 3x3 kernels then take all taps in one pass, others one tap at a time. */
KERN_CLONES static void depthwise_2d(const conv_plan *p, const float *x, const float *wt,
                                     const float *bias, float *y, float *pad)
{
    const kern_window *w = &p->w;
    int64_t ih_n = w->in[0], iw_n = w->in[1], oh_n = w->out[0], ow_n = w->out[1];
    int64_t kh_n = w->kernel[0], kw_n = w->kernel[1];
    int64_t sh = w->stride[0], sw = w->stride[1], dh = w->dilation[0], dw = w->dilation[1];
    int64_t ph = w->pad_begin[0], pw = w->pad_begin[1], rows, cols;
    dw_padded_dims(w, &rows, &cols);
    /* Only the interior is rewritten per channel: the zero border stays. */
    memset(pad, 0, (size_t)(rows * cols) * sizeof(float));
    int64_t copy_cols = min64(iw_n, cols - pw);
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t m = 0; m < p->m; m++) {
            if (m % p->mg == 0 && copy_cols > 0) {
                const float *xc = x + (n * p->c + m / p->mg) * ih_n * iw_n;
                for (int64_t r = ph < 0 ? 0 : ph; r < rows && r - ph < ih_n; r++)
                    memcpy(pad + r * cols + pw, xc + (r - ph) * iw_n,
                           (size_t)copy_cols * sizeof(float));
            }
            const float *wk = wt + m * w->kernel_size;
            float *yc = y + (n * p->m + m) * oh_n * ow_n;
            float b = bias ? bias[m] : 0.0f;
            for (int64_t oh = 0; oh < oh_n; oh++) {
                float *restrict yr = yc + oh * ow_n;
                const float *r0 = pad + oh * sh * cols;
                if (kh_n == 3 && kw_n == 3) {
                    dw3x3_row(yr, r0, r0 + dh * cols, r0 + 2 * dh * cols, wk, b, ow_n, sw, dw);
                    continue;
                }
                for (int64_t o = 0; o < ow_n; o++) yr[o] = b;
                for (int64_t kh = 0; kh < kh_n; kh++) {
                    const float *restrict xr = r0 + kh * dh * cols;
                    for (int64_t kw = 0; kw < kw_n; kw++) {
                        float wv = wk[kh * kw_n + kw];
                        const float *restrict xt = xr + kw * dw;
                        if (sw == 1)
                            for (int64_t o = 0; o < ow_n; o++) yr[o] += wv * xt[o];
                        else
                            for (int64_t o = 0; o < ow_n; o++) yr[o] += wv * xt[o * sw];
                    }
                }
            }
        }
    }
}

static void conv_float(const conv_plan *p, const float *x, const float *wt, const float *bias,
                       float *y, char *ws)
{
    if (p->kind == CONV_DEPTHWISE) {
        depthwise_2d(p, x, wt, bias, y, (float *)(ws + p->gemm_ws));
        return;
    }
    int64_t in_size = p->w.in_size, out_size = p->w.out_size;
    float *col = (float *)(ws + p->gemm_ws);
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t g = 0; g < p->group; g++) {
            const float *xg = x + (n * p->c + g * p->cg) * in_size;
            const float *wg = wt + g * p->mg * p->kdim;
            float *yg = y + (n * p->m + g * p->mg) * out_size;
            float beta = 0.0f;
            if (bias) {
                fill_bias(yg, bias + g * p->mg, p->mg, out_size);
                beta = 1.0f;
            }
            if (p->kind == CONV_POINTWISE) {
                kern_sgemm(false, false, p->mg, out_size, p->kdim, 1.0f, wg, p->kdim, xg,
                           in_size, beta, yg, out_size, ws);
                continue;
            }
            for (int64_t j0 = 0; j0 < out_size; j0 += p->chunk) {
                int64_t cols = min64(p->chunk, out_size - j0);
                if (p->w.nsp == 2)
                    im2col_2d(xg, p, j0, cols, col);
                else
                    im2col_nd(xg, p, j0, cols, col);
                kern_sgemm(false, false, p->mg, cols, p->kdim, 1.0f, wg, p->kdim, col, cols,
                           beta, yg + j0, out_size, ws);
            }
        }
    }
}

/* float64: a direct loop over every output and every tap. */
static void conv_double(const conv_plan *p, const double *x, const double *wt,
                        const double *bias, double *y)
{
    const kern_window *w = &p->w;
    int nsp = w->nsp;
    for (int64_t n = 0; n < p->n; n++) {
        for (int64_t m = 0; m < p->m; m++) {
            int64_t g = m / p->mg;
            const double *xg = x + (n * p->c + g * p->cg) * w->in_size;
            const double *wm = wt + m * p->kdim;
            double *ym = y + (n * p->m + m) * w->out_size;
            int64_t opos[KERN_MAX_SPATIAL] = {0};
            for (int64_t j = 0; j < w->out_size; j++) {
                double s = bias ? bias[m] : 0.0;
                int64_t kpos[KERN_MAX_SPATIAL] = {0};
                for (int64_t kk = 0; kk < w->kernel_size; kk++) {
                    int64_t idx = 0;
                    bool inside = true;
                    for (int d = 0; d < nsp; d++) {
                        int64_t i = opos[d] * w->stride[d] - w->pad_begin[d] +
                                    kpos[d] * w->dilation[d];
                        inside = inside && i >= 0 && i < w->in[d];
                        idx = idx * w->in[d] + i;
                    }
                    if (inside)
                        for (int64_t c = 0; c < p->cg; c++)
                            s += xg[c * w->in_size + idx] * wm[c * w->kernel_size + kk];
                    for (int d = nsp - 1; d >= 0; d--) {
                        if (++kpos[d] < w->kernel[d]) break;
                        kpos[d] = 0;
                    }
                }
                ym[j] = s;
                for (int d = nsp - 1; d >= 0; d--) {
                    if (++opos[d] < w->out[d]) break;
                    opos[d] = 0;
                }
            }
        }
    }
}

static ferry_status *conv_run(eng_op_call *call)
{
    conv_plan p;
    ferry_status *st = conv_plan_make(call, &p);
    if (st) return st;
    const eng_tensor *x = call->in[0], *w = call->in[1], *b = input(call, 2);
    eng_tensor *y = call->out[0];
    switch (x->dtype) {
    case FERRY_DTYPE_FLOAT:
        conv_float(&p, x->data, w->data, b ? b->data : NULL, y->data, call->workspace);
        break;
    case FERRY_DTYPE_DOUBLE:
        conv_double(&p, x->data, w->data, b ? b->data : NULL, y->data);
        break;
    case FERRY_DTYPE_FLOAT16: {
        char *ws = call->workspace;
        char *q = ws + p.gemm_ws + p.col_ws;
        float *fx = (float *)q;
        q += align64((size_t)eng_numel(x) * sizeof(float));
        float *fw = (float *)q;
        q += align64((size_t)eng_numel(w) * sizeof(float));
        float *fb = NULL;
        if (b) {
            fb = (float *)q;
            q += align64((size_t)eng_numel(b) * sizeof(float));
            kern_half_to_float(b->data, fb, eng_numel(b));
        }
        float *fy = (float *)q;
        kern_half_to_float(x->data, fx, eng_numel(x));
        kern_half_to_float(w->data, fw, eng_numel(w));
        conv_float(&p, fx, fw, fb, fy, ws);
        kern_float_to_half(fy, y->data, eng_numel(y));
        break;
    }
    default: return eng_bad_dtype("input X", x->dtype);
    }
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "", .name = "Conv", .since_version = 1, .init = conv_init, .fini = conv_fini,
     .infer = conv_infer, .run = conv_run},
};

const eng_op_table eng_ops_conv = {ops, sizeof(ops) / sizeof(ops[0])};
