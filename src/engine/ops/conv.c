/* conv.c - Conv for any number of spatial dims, with groups, padding, strides and dilations.
 *
 * float32 is a GEMM per (image, group), Y_g[mg, out] = W_g[mg, kdim] x cols[kdim, out], except
 * for depthwise convolutions (one input channel per group, 2-D), which a GEMM with one input
 * channel would only slow down: kern_dw3x3 (3x3, stride 1 or 2) or a direct loop over a
 * zero-padded copy of each plane. The GEMM runs one of two ways (use_transposed):
 *   normal      W_g is A (MR-row panels), cols is B: the input itself for 1x1 kernels with
 *               unit strides and no padding, else an im2col block that a callback writes
 *               straight into the GEMM's workspace, one cache-sized block at a time;
 *   transposed  Y_g^T = cols^T x W_g^T: output positions are the rows, which fill the register
 *               tile far better than the columns do when images are small (14 x 14, 7 x 7);
 *               2-D windows read the input in place through a padded copy, row pointers and
 *               tap offsets (indirect A, no im2col at all), and Y^T is transposed at the end.
 * Constant weights are packed into GEMM panels once, in the layout the first plan asks for,
 * and shared by every context (conv_packed). Bias and a fused activation (Relu, Clip,
 * LeakyRelu moved here by the graph pass) are applied while each tile of the output is still
 * in registers. Threads split one GEMM when there is one image, or take whole images (and
 * groups) when the batch is large enough; depthwise planes are tasks of their own.
 * 1-D convolutions run as 2-D ones with a height of 1. float16 is computed in float32 through
 * the workspace; float64 uses a plain direct loop.
 */
#include "engine/op.h"
#include "engine/ops/elementwise_common.h"

#include "engine/kernels/depthwise.h"
#include "engine/kernels/gemm.h"
#include "engine/kernels/half.h"
#include "engine/kernels/parallel.h"
#include "engine/kernels/transpose.h"
#include "engine/kernels/simd.h"
#include "engine/kernels/window.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

KERN_FAST_LOOPS

typedef struct conv_attrs {
    kern_window_attrs win;
    int64_t group;
} conv_attrs;

typedef enum conv_kind { CONV_IM2COL, CONV_POINTWISE, CONV_DEPTHWISE } conv_kind;

typedef struct conv_plan {
    kern_window w; /* 1-D convolutions are described as 2-D ones with height 1 */
    int64_t n, c, m, group, cg, mg;
    int64_t kdim; /* cg * kernel size: rows of the column matrix, columns of W per group */
    conv_kind kind;
    bool trans;           /* GEMM computes Y^T = cols^T x W^T (see use_transposed) */
    bool indirect;        /* trans reads the input in place through a padded copy (2-D windows) */
    int64_t pad_h, pad_w; /* indirect: the padded input plane the outputs read */
    bool dw_fast;         /* depthwise with kern_dw3x3 (3x3, stride 1 or 2, no dilation) */
    int slots;            /* threads of the context's pool */
    bool by_image;        /* threads take whole (image, group) GEMMs rather than splitting one */
    size_t gemm_ws;       /* GEMM scratch: per slot when by_image, else for the whole call */
    size_t ct_ws;         /* transposed: the Y^T of one (image, group), per slot when by_image */
    size_t ind_ws;        /* indirect: padded input, row pointers and tap offsets, same */
    size_t slot_ws;       /* bytes per slot (by_image or depthwise) */
    size_t total_ws;      /* float32 scratch of the whole call, a multiple of 64 */
    /* A residual input R (input 3, fused from a following Add): added before the activation.
     * When its shape is not the output's, the sum broadcasts after the convolution, which
     * then writes to scratch (residual_ws bytes after total_ws). */
    bool residual_broadcast;
    size_t residual_ws;
} conv_plan;

/* Constant weights, packed into GEMM panels on first use in either layout (see
 * use_transposed) and shared by every context. Each slot is written once, by compare and
 * swap, so contexts planning at the same time may race to pack but never leak or tear. */
typedef struct conv_packed {
    int64_t group, mg, kdim;
    const void *w; /* the model's weights (outlive the packs); may be misaligned in the file */
    size_t w_bytes;
    _Atomic(kern_packed *) slot[]; /* [g]: W_g as A panels; [group + g]: W_g^T as B panels */
} conv_packed;

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

/* The geometry of one depthwise plane for kern_dw3x3. */
static kern_dw_geom dw_geom(const kern_window *w)
{
    return (kern_dw_geom){.ih = w->in[0],
                          .iw = w->in[1],
                          .oh = w->out[0],
                          .ow = w->out[1],
                          .stride = w->stride[0],
                          .ph = w->pad_begin[0],
                          .pw = w->pad_begin[1]};
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

/* What the im2col packers read: the input channels of one group of one image. */
typedef struct cols_ctx {
    const conv_plan *p;
    const float *x;
} cols_ctx;

/* The output positions [LO, HI) along one axis whose input position o * S + OFF lies in
 * [0, IN), clipped to [0, OUT). */
static KERN_INLINE void valid_range(int64_t in, int64_t out, int64_t s, int64_t off, int64_t *lo,
                                    int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = in - 1 - off >= 0 ? (in - 1 - off) / s + 1 : 0;
    *lo = min64(l, out);
    *hi = h < *lo ? *lo : min64(h, out);
}

/* Writes output positions [OW, OW + RUN) of one row of the column matrix: input row XR
 * (NULL: the row lies in the padding) read at o * SW + OFF, zero outside [LO, HI). */
static KERN_INLINE void cols_run(float *restrict d, const float *xr, int64_t ow, int64_t run,
                                 int64_t sw, int64_t off, int64_t lo, int64_t hi)
{
    if (!xr) {
        for (int64_t o = 0; o < run; o++) d[o] = 0.0f;
        return;
    }
    int64_t end = ow + run;
    int64_t a = ow < lo ? lo : ow, z = end > hi ? hi : end;
    if (a > z) a = z;
    for (int64_t o = ow; o < a; o++) d[o - ow] = 0.0f;
    if (sw == 1) {
        const float *restrict s = xr + off;
        for (int64_t o = a; o < z; o++) d[o - ow] = s[o];
    } else if (sw == 2) {
        /* A constant stride lets the compiler de-interleave with vector shuffles. */
        const float *restrict s = xr + off;
        for (int64_t o = a; o < z; o++) d[o - ow] = s[2 * o];
    } else {
        for (int64_t o = a; o < z; o++) d[o - ow] = xr[o * sw + off];
    }
    for (int64_t o = z; o < end; o++) d[o - ow] = 0.0f;
}

/* kern_pack_b_fn for 2-D windows: rows [P0, P0+KC) of the column matrix are the kernel taps
 * (c, kh, kw), columns [J0, J0+NC) the output positions. Only this block is ever written: the
 * whole matrix never exists. */
KERN_CLONES KERN_NO_LIBCALLS static void pack_cols_2d(const void *ctx, int64_t p0, int64_t kc,
                                                      int64_t j0, int64_t nc, int64_t ldd,
                                                      float *dst)
{
    const cols_ctx *cc = ctx;
    const conv_plan *p = cc->p;
    const kern_window *w = &p->w;
    int64_t ih_n = w->in[0], iw_n = w->in[1], ow_n = w->out[1], kw_n = w->kernel[1];
    int64_t sh = w->stride[0], sw = w->stride[1], dh = w->dilation[0], dw = w->dilation[1];
    int64_t ph = w->pad_begin[0], pw = w->pad_begin[1];
    for (int64_t q = p0; q < p0 + kc; q++) {
        int64_t c = q / w->kernel_size, t = q % w->kernel_size;
        int64_t kh = t / kw_n, kw = t % kw_n;
        const float *xc = cc->x + c * ih_n * iw_n;
        float *drow = dst + (q - p0) * ldd;
        int64_t off = kw * dw - pw, lo, hi;
        valid_range(iw_n, ow_n, sw, off, &lo, &hi);
        int64_t oh = j0 / ow_n, ow = j0 % ow_n;
        for (int64_t j = 0; j < nc; oh++, ow = 0) {
            int64_t run = min64(ow_n - ow, nc - j);
            int64_t ih = oh * sh - ph + kh * dh;
            const float *xr = ih >= 0 && ih < ih_n ? xc + ih * iw_n : NULL;
            cols_run(drow + j, xr, ow, run, sw, off, lo, hi);
            j += run;
        }
        for (int64_t j = nc; j < ldd; j++) drow[j] = 0.0f;
    }
}

/* The same for any number of spatial dims, element by element with odometers. */
static void pack_cols_nd(const void *ctx, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                         int64_t ldd, float *dst)
{
    const cols_ctx *cc = ctx;
    const conv_plan *p = cc->p;
    const kern_window *w = &p->w;
    int nsp = w->nsp;
    for (int64_t q = p0; q < p0 + kc; q++) {
        int64_t c = q / w->kernel_size, t = q % w->kernel_size;
        int64_t kpos[KERN_MAX_SPATIAL], opos[KERN_MAX_SPATIAL];
        for (int d = nsp - 1; d >= 0; d--) {
            kpos[d] = t % w->kernel[d];
            t /= w->kernel[d];
        }
        int64_t rest = j0;
        for (int d = nsp - 1; d >= 0; d--) {
            opos[d] = rest % w->out[d];
            rest /= w->out[d];
        }
        const float *xc = cc->x + c * w->in_size;
        float *drow = dst + (q - p0) * ldd;
        for (int64_t j = 0; j < nc; j++) {
            int64_t idx = 0;
            bool inside = true;
            for (int d = 0; d < nsp; d++) {
                int64_t i = opos[d] * w->stride[d] - w->pad_begin[d] + kpos[d] * w->dilation[d];
                inside = inside && i >= 0 && i < w->in[d];
                idx = idx * w->in[d] + i;
            }
            drow[j] = inside ? xc[idx] : 0.0f;
            for (int d = nsp - 1; d >= 0; d--) {
                if (++opos[d] < w->out[d]) break;
                opos[d] = 0;
            }
        }
        for (int64_t j = nc; j < ldd; j++) drow[j] = 0.0f;
    }
}

/* kern_pack_a_fn for the transposed GEMM when the input is not read in place (3-D windows, or
 * padding too large for a padded copy): rows [I0, I0+MC) of cols^T are output positions,
 * columns [P0, P0+KC) kernel taps. */
static void pack_cols_t(const void *ctx, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int mr,
                        float *dst)
{
    /* Rows of cols^T are columns of cols: write each tap as a row-major run of MC, then
     * interleave it into the panels. */
    float run[256];
    int64_t panel = kc * mr, mcp = (mc + mr - 1) / mr * mr;
    for (int64_t i = 0; i < mc; i += 256) {
        int64_t n = min64(256, mc - i);
        for (int64_t q = p0; q < p0 + kc; q++) {
            pack_cols_nd(ctx, q, 1, i0 + i, n, n, run);
            for (int64_t j = 0; j < n; j++) {
                int64_t r = i + j;
                dst[r / mr * panel + (q - p0) * mr + r % mr] = run[j];
            }
        }
    }
    for (int64_t q = p0; q < p0 + kc; q++)
        for (int64_t r = mc; r < mcp; r++) dst[r / mr * panel + (q - p0) * mr + r % mr] = 0.0f;
}

/* Whether the transposed product Y^T[out, mg] = cols^T x W^T costs less than Y[mg, out] =
 * W x cols, counted in cycles of the register tile. The tile is MR x NR (8 x 32 with
 * AVX-512): small images (14 x 14 = 196 positions, 7 x 7 = 49) leave much of the last NR-wide
 * column panel empty, and as rows they fill MR-high panels far better; windows other than 1x1
 * are read in place by the transposed product but must be unrolled (im2col) by the other. The
 * price is one transposition of the output. */
static bool use_transposed(const conv_plan *p)
{
    int mr, nr;
    kern_gemm_tile(KERN_ISA_AUTO, &mr, &nr);
    int64_t mg = p->mg, out = p->w.out_size;
    if (out < mr || mg < nr / 2) return false;
    double k = (double)p->kdim / 16.0; /* FMA cycles per tile element */
    double normal = (double)((mg + mr - 1) / mr * mr) * (double)((out + nr - 1) / nr * nr) * k;
    double trans = (double)((out + mr - 1) / mr * mr) * (double)((mg + nr - 1) / nr * nr) * k;
    if (p->kind != CONV_POINTWISE) normal += 0.5 * (double)(p->kdim * out);
    trans += 1.5 * (double)(mg * out);
    return trans < normal;
}

/* The current packs of the weights (NULL before packing or without constant weights). */
static kern_packed *loaded_weights(const conv_packed *cp, bool trans, int64_t g)
{
    if (!cp) return NULL;
    return atomic_load_explicit(&((conv_packed *)cp)->slot[(trans ? cp->group : 0) + g],
                                memory_order_acquire);
}

/* The GEMM of one (image, group): Y_g[mg, out] = W_g[mg, kdim] x cols[kdim, out], or its
 * transpose. Data pointers are filled in by the caller; with packed weights, pa or pb is any
 * group's pack (they share a layout). */
static void gemm_shape(const conv_plan *p, const conv_packed *packed, kern_gemm *g)
{
    kern_packed *pw = loaded_weights(packed, p->trans, 0);
    if (!p->trans) {
        *g = (kern_gemm){.m = p->mg,
                         .n = p->w.out_size,
                         .k = p->kdim,
                         .alpha = 1.0f,
                         .pa = pw,
                         .lda = p->kdim,
                         .ldc = p->w.out_size};
        if (p->kind == CONV_POINTWISE)
            g->ldb = p->w.in_size;
        else
            g->pack_b = p->w.nsp == 2 ? pack_cols_2d : pack_cols_nd;
        return;
    }
    *g = (kern_gemm){.m = p->w.out_size,
                     .n = p->mg,
                     .k = p->kdim,
                     .alpha = 1.0f,
                     .pb = pw,
                     .ldb = p->kdim,
                     .trans_b = true,
                     .ldc = p->mg};
    if (p->kind == CONV_POINTWISE) {
        g->lda = p->w.in_size;
        g->trans_a = true;
    } else if (p->indirect) {
        /* Any valid pointer: kern_gemm_workspace only looks at which kind A is. */
        static const float *const dummy[1];
        g->a_rows = dummy;
    } else {
        g->pack_a = pack_cols_t;
    }
}

/* Packs every group's weights in the layout TRANS names, unless another plan already did.
 * Once a layout is complete the source weights are not read again (unless a later plan wants
 * the other layout), so their pages are handed back: a model's weights then stay resident
 * once, as panels. */
static ferry_status *pack_weights(const void *packed, bool trans)
{
    conv_packed *cp = (conv_packed *)packed;
    bool fresh = false;
    /* Weights left misaligned in the file are read through an aligned copy of one group. */
    bool aligned = (uintptr_t)cp->w % sizeof(float) == 0;
    size_t group_bytes = (size_t)(cp->mg * cp->kdim) * sizeof(float);
    for (int64_t g = 0; g < cp->group; g++) {
        _Atomic(kern_packed *) *slot = &cp->slot[(trans ? cp->group : 0) + g];
        if (atomic_load_explicit(slot, memory_order_acquire)) continue;
        const char *src = (const char *)cp->w + (size_t)g * group_bytes;
        float *tmp = aligned ? NULL : malloc(group_bytes ? group_bytes : 1);
        if (!aligned && !tmp)
            return core_error(FERRY_ERR_NO_MEMORY, "out of memory packing weights");
        if (tmp) memcpy(tmp, src, group_bytes);
        const float *wg = tmp ? tmp : (const float *)src;
        kern_packed *k =
            trans ? kern_pack_b(KERN_ISA_AUTO, true, cp->kdim, cp->mg, wg, cp->kdim)
                  : kern_pack_a(KERN_ISA_AUTO, false, cp->mg, cp->kdim, 1.0f, wg, cp->kdim);
        free(tmp);
        if (!k) return core_error(FERRY_ERR_NO_MEMORY, "out of memory packing weights");
        kern_packed *none = NULL;
        if (!atomic_compare_exchange_strong_explicit(slot, &none, k, memory_order_acq_rel,
                                                     memory_order_acquire))
            kern_packed_free(k); /* another plan packed it first */
        fresh = true;
    }
    if (fresh) kern_release_pages(cp->w, cp->w_bytes);
    return NULL;
}

/* Checks the inputs against the attributes and works out shapes, path and workspace. With
 * PACK (infer), packs constant weights in the layout the path needs first, since the GEMM's
 * workspace depends on whether its weights are packed; run finds them packed. */
static ferry_status *conv_plan_make(const eng_op_call *call, bool pack, conv_plan *p)
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
                          "input W: expected %d dims for a %d-D convolution, got %d", x->rank, nsp,
                          w->rank);
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

    p->slots = kern_slots(call->threads);
    p->by_image = p->trans = p->dw_fast = false;
    p->gemm_ws = p->ct_ws = p->slot_ws = p->total_ws = 0;
    if (x->dtype == FERRY_DTYPE_DOUBLE) return NULL;
    int64_t jobs = p->n * p->group;
    if (p->kind == CONV_DEPTHWISE) {
        int64_t ph, pw;
        dw_padded_dims(&p->w, &ph, &pw);
        const kern_window *w = &p->w;
        kern_dw_geom g = dw_geom(w);
        p->dw_fast = w->kernel[0] == 3 && w->kernel[1] == 3 && w->dilation[0] == 1 &&
                     w->dilation[1] == 1 && w->stride[0] == w->stride[1] &&
                     kern_dw3x3_supported(KERN_ISA_AUTO, &g);
        p->slot_ws = p->dw_fast ? 0 : align64((size_t)(ph * pw) * sizeof(float));
        p->total_ws = (size_t)p->slots * p->slot_ws;
        return NULL;
    }
    p->trans = use_transposed(p);
    p->indirect = false;
    p->ind_ws = 0;
    if (p->trans) p->ct_ws = align64((size_t)(p->w.out_size * p->mg) * sizeof(float));
    if (p->trans && p->kind == CONV_IM2COL && p->w.nsp == 2) {
        int64_t size;
        dw_padded_dims(&p->w, &p->pad_h, &p->pad_w);
        if (!__builtin_mul_overflow(p->pad_h * p->pad_w, p->cg, &size) &&
            size <= 4 * p->cg * (p->w.in_size + p->w.out_size) + 4096) {
            int mr, nr;
            kern_gemm_tile(KERN_ISA_AUTO, &mr, &nr);
            int64_t rows = (p->w.out_size + mr - 1) / mr * mr;
            p->indirect = true;
            p->ind_ws = align64((size_t)size * sizeof(float)) +
                        align64((size_t)rows * sizeof(float *)) +
                        align64((size_t)p->kdim * sizeof(int64_t));
        }
    }
    /* Whole images per thread when they divide evenly or are plenty: no GEMM is split, so
     * nothing is packed twice and every thread streams its own data. */
    p->by_image =
        p->slots > 1 && jobs >= p->slots && (jobs % p->slots == 0 || jobs >= 4 * p->slots);
    if (pack && call->packed) {
        ferry_status *st = pack_weights(call->packed, p->trans);
        if (st) return st;
    }
    kern_gemm g;
    gemm_shape(p, call->packed, &g);
    if (p->by_image) {
        p->gemm_ws = align64(kern_gemm_workspace(&g, 1));
        p->slot_ws = p->gemm_ws + p->ct_ws + p->ind_ws;
        p->total_ws = (size_t)p->slots * p->slot_ws;
    } else {
        p->gemm_ws = align64(kern_gemm_workspace(&g, p->slots));
        p->total_ws = p->gemm_ws + p->ct_ws + p->ind_ws;
    }
    return NULL;
}

/* What every depthwise task shares. */
typedef struct dw_ctx {
    const conv_plan *p;
    const float *x, *w, *bias;
    float *y;
    char *ws;
    const kern_epilogue *act; /* NULL: none */
} dw_ctx;

/* A 3x3 depthwise output row: all nine taps in one pass. R0..R2 are the padded input rows of
 * the three kernel rows. */
#define DW3X3_LOOP(S)                                                                              \
    for (int64_t o = 0; o < n; o++)                                                                \
    yr[o] = b + w_[0] * r0[o * S] + w_[1] * r0[o * S + d] + w_[2] * r0[o * S + 2 * d] +            \
            w_[3] * r1[o * S] + w_[4] * r1[o * S + d] + w_[5] * r1[o * S + 2 * d] +                \
            w_[6] * r2[o * S] + w_[7] * r2[o * S + d] + w_[8] * r2[o * S + 2 * d]

static KERN_INLINE void dw3x3_row(float *restrict yr, const float *restrict r0,
                                  const float *restrict r1, const float *restrict r2,
                                  const float *w_, float b, int64_t n, int64_t s, int64_t d)
{
    /* Constant strides let the compiler use plain or de-interleaving vector loads. */
    if (s == 1 && d == 1) {
        const int64_t d = 1;
        DW3X3_LOOP(1);
    } else if (s == 1) {
        DW3X3_LOOP(1);
    } else if (s == 2) {
        DW3X3_LOOP(2);
    } else {
        DW3X3_LOOP(s);
    }
}

/* One output plane (image n, channel m): the input plane is copied into the slot's padded
 * plane, so that every tap of every output is in bounds and rows need no border handling;
 * 3x3 kernels then take all taps in one pass, others one tap at a time. The activation is
 * applied to each row while it is in L1. */
KERN_CLONES static void dw_plane(void *arg, int64_t task, int slot)
{
    const dw_ctx *c = arg;
    const conv_plan *p = c->p;
    const kern_window *w = &p->w;
    int64_t n = task / p->m, m = task % p->m;
    if (p->dw_fast) {
        kern_dw_geom g = dw_geom(w);
        kern_dw3x3(KERN_ISA_AUTO, &g, c->x + (n * p->c + m / p->mg) * w->in_size, c->w + m * 9,
                   c->bias ? c->bias[m] : 0.0f, c->act, c->y + (n * p->m + m) * w->out_size);
        return;
    }
    int64_t ih_n = w->in[0], iw_n = w->in[1], oh_n = w->out[0], ow_n = w->out[1];
    int64_t kh_n = w->kernel[0], kw_n = w->kernel[1];
    int64_t sh = w->stride[0], sw = w->stride[1], dh = w->dilation[0], dw = w->dilation[1];
    int64_t ph = w->pad_begin[0], pw = w->pad_begin[1], rows, cols;
    dw_padded_dims(w, &rows, &cols);
    float *pad = (float *)(c->ws + (size_t)slot * p->slot_ws);
    /* Rows [r_lo, r_hi) and columns [pw, pw + copy_cols) hold input; zero the rest. */
    int64_t r_lo = ph < 0 ? 0 : ph, r_hi = min64(rows, ph + ih_n);
    int64_t copy_cols = min64(iw_n, cols - pw);
    if (r_hi < r_lo) r_hi = r_lo;
    if (copy_cols < 0) copy_cols = 0;
    const float *xc = c->x + (n * p->c + m / p->mg) * ih_n * iw_n;
    memset(pad, 0, (size_t)(r_lo * cols) * sizeof(float));
    for (int64_t r = r_lo; r < r_hi; r++) {
        float *pr = pad + r * cols;
        for (int64_t j = 0; j < pw; j++) pr[j] = 0.0f;
        memcpy(pr + pw, xc + (r - ph) * iw_n, (size_t)copy_cols * sizeof(float));
        for (int64_t j = pw + copy_cols; j < cols; j++) pr[j] = 0.0f;
    }
    memset(pad + r_hi * cols, 0, (size_t)((rows - r_hi) * cols) * sizeof(float));

    const float *wk = c->w + m * w->kernel_size;
    float *yc = c->y + (n * p->m + m) * oh_n * ow_n;
    float b = c->bias ? c->bias[m] : 0.0f;
    for (int64_t oh = 0; oh < oh_n; oh++) {
        float *restrict yr = yc + oh * ow_n;
        const float *r0 = pad + oh * sh * cols;
        if (kh_n == 3 && kw_n == 3) {
            dw3x3_row(yr, r0, r0 + dh * cols, r0 + 2 * dh * cols, wk, b, ow_n, sw, dw);
        } else {
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
        if (c->act) kern_activate(yr, ow_n, c->act);
    }
}

/* Maps the fused activation of NODE onto the GEMM epilogue's. */
static kern_epilogue node_epilogue(const eng_node *node)
{
    const eng_fused_activation *fa = eng_node_activation(node);
    kern_epilogue e = {.act = KERN_ACT_NONE};
    switch (fa->kind) {
    case ENG_ACT_RELU:
        e.act = KERN_ACT_RELU;
        break;
    case ENG_ACT_CLIP:
        e.act = KERN_ACT_CLIP;
        break;
    case ENG_ACT_LEAKY_RELU:
        e.act = KERN_ACT_LEAKY;
        break;
    default:
        break;
    }
    e.a = fa->a;
    e.b = fa->b;
    return e;
}

/* What every (image, group) GEMM task shares. */
typedef struct gemm_ctx {
    const conv_plan *p;
    const conv_packed *packed;
    const float *x, *w, *bias;
    const float *residual; /* shaped like Y, or NULL */
    float *y;
    char *ws;
    kern_epilogue act;
    core_threadpool *pool; /* for the GEMM itself: NULL when threads take whole images */
} gemm_ctx;

/* What the padded-copy and transposition tasks of one (image, group) share. */
typedef struct copy_ctx {
    const conv_plan *p;
    const float *src;
    float *dst;
    const float *residual;    /* transposition: added to the output, or NULL */
    const kern_epilogue *act; /* transposition with a residual: applied after it, or NULL */
} copy_ctx;

#define COPY_CHANNELS 8 /* channels per padded-copy task */

/* Copies input channels [8 TASK, 8 TASK + 8) of one (image, group) into zero-padded planes. */
KERN_CLONES static void pad_channels(void *arg, int64_t task, int slot)
{
    (void)slot;
    const copy_ctx *cc = arg;
    const conv_plan *p = cc->p;
    const kern_window *w = &p->w;
    int64_t ih_n = w->in[0], iw_n = w->in[1];
    int64_t rows = p->pad_h, cols = p->pad_w, plane = rows * cols;
    int64_t ph = w->pad_begin[0], pw = w->pad_begin[1];
    int64_t r_lo = ph < 0 ? 0 : ph, r_hi = min64(rows, ph + ih_n);
    int64_t c_lo = pw < 0 ? 0 : pw, c_hi = min64(cols, pw + iw_n);
    if (r_hi < r_lo) r_hi = r_lo;
    if (c_hi < c_lo) c_hi = c_lo;
    int64_t c1 = min64(p->cg, (task + 1) * COPY_CHANNELS);
    for (int64_t c = task * COPY_CHANNELS; c < c1; c++) {
        const float *xc = cc->src + c * ih_n * iw_n;
        float *pc = cc->dst + c * plane;
        for (int64_t r = 0; r < r_lo; r++)
            for (int64_t j = 0; j < cols; j++) pc[r * cols + j] = 0.0f;
        for (int64_t r = r_lo; r < r_hi; r++) {
            float *pr = pc + r * cols;
            const float *xr = xc + (r - ph) * iw_n - pw;
            for (int64_t j = 0; j < c_lo; j++) pr[j] = 0.0f;
            for (int64_t j = c_lo; j < c_hi; j++) pr[j] = xr[j];
            for (int64_t j = c_hi; j < cols; j++) pr[j] = 0.0f;
        }
        for (int64_t r = r_hi; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) pc[r * cols + j] = 0.0f;
    }
}

/* Copies the input channels XG of one (image, group) into a zero-padded plane per channel at
 * WS (on POOL), and points the GEMM's A at it: row i (output position (oh, ow)) starts at the
 * window's top-left corner, and tap (c, kh, kw) is a fixed offset from there, so every element
 * of cols^T is read in place and the window never needs bounds checks. */
static void setup_indirect(const conv_plan *p, const float *xg, char *ws, core_threadpool *pool,
                           kern_gemm *gm)
{
    const kern_window *w = &p->w;
    int64_t oh_n = w->out[0], ow_n = w->out[1];
    int64_t cols = p->pad_w, plane = p->pad_h * cols;
    float *pad = (float *)ws;
    copy_ctx cc = {.p = p, .src = xg, .dst = pad};
    kern_parallel(pool, (p->cg + COPY_CHANNELS - 1) / COPY_CHANNELS, pad_channels, &cc);
    int mr, nr;
    kern_gemm_tile(KERN_ISA_AUTO, &mr, &nr);
    int64_t n_rows = (p->w.out_size + mr - 1) / mr * mr;
    const float **rp = (const float **)(ws + align64((size_t)(p->cg * plane) * sizeof(float)));
    int64_t *off = (int64_t *)((char *)rp + align64((size_t)n_rows * sizeof(float *)));
    int64_t i = 0;
    for (int64_t oh = 0; oh < oh_n; oh++)
        for (int64_t ow = 0; ow < ow_n; ow++, i++)
            rp[i] = pad + oh * w->stride[0] * cols + ow * w->stride[1];
    for (; i < n_rows; i++) rp[i] = rp[p->w.out_size - 1];
    int64_t kh_n = w->kernel[0], kw_n = w->kernel[1], q = 0;
    for (int64_t c = 0; c < p->cg; c++)
        for (int64_t kh = 0; kh < kh_n; kh++)
            for (int64_t kw = 0; kw < kw_n; kw++, q++)
                off[q] = c * plane + kh * w->dilation[0] * cols + kw * w->dilation[1];
    gm->a_rows = rp;
    gm->a_off = off;
}

/* Y[m, i] = CT[i, m] for channels [32 TASK, 32 TASK + 32) of one (image, group), in
 * cache-sized blocks. */
KERN_CLONES static void transpose_out(void *arg, int64_t task, int slot)
{
    (void)slot;
    const copy_ctx *cc = arg;
    int64_t n = cc->p->w.out_size, mg = cc->p->mg;
    const float *ct = cc->src;
    float *y = cc->dst;
    int64_t m0 = task * 32, m1 = min64(mg, m0 + 32);
    const float *r = cc->residual;
    bool relu = cc->act && cc->act->act == KERN_ACT_RELU;
    for (int64_t i0 = 0; i0 < n; i0 += 32) {
        int64_t i1 = min64(n, i0 + 32);
        kern_transpose(KERN_ISA_AUTO, ct + i0 * mg + m0, mg, y + m0 * n + i0, n, i1 - i0, m1 - m0);
        if (!r) continue;
        /* The block is still in L1: add the residual, then activate. */
        for (int64_t m = m0; m < m1; m++) {
            float *restrict row = y + m * n;
            const float *restrict rr = r + m * n;
            if (relu) {
                /* The usual case (ResNet's Add + Relu), inline; NaN stays NaN. */
                for (int64_t i = i0; i < i1; i++) {
                    float v = row[i] + rr[i];
                    row[i] = v < 0.0f ? 0.0f : v;
                }
                continue;
            }
            for (int64_t i = i0; i < i1; i++) row[i] += rr[i];
            if (cc->act) kern_activate(row + i0, i1 - i0, cc->act);
        }
    }
}

static void conv_gemm(void *arg, int64_t task, int slot)
{
    const gemm_ctx *c = arg;
    const conv_plan *p = c->p;
    int64_t n = task / p->group, g = task % p->group;
    const float *xg = c->x + (n * p->c + g * p->cg) * p->w.in_size;
    const float *wg = c->w ? c->w + g * p->mg * p->kdim : NULL; /* NULL: read packed */
    float *yg = c->y + (n * p->m + g * p->mg) * p->w.out_size;
    const float *rg = c->residual ? c->residual + (n * p->m + g * p->mg) * p->w.out_size : NULL;
    char *ws = c->ws + (size_t)slot * p->slot_ws;
    kern_packed *pw = loaded_weights(c->packed, p->trans, g);
    kern_gemm gm;
    gemm_shape(p, c->packed, &gm);
    cols_ctx cc = {.p = p, .x = xg};
    gm.epi = c->act;
    if (!p->trans) {
        gm.pa = pw;
        gm.a = wg;
        if (p->kind == CONV_POINTWISE)
            gm.b = xg;
        else
            gm.pack_b_ctx = &cc;
        gm.c = yg;
        gm.epi.row_bias = c->bias ? c->bias + g * p->mg : NULL;
        gm.epi.residual = rg;
        gm.epi.ldr = p->w.out_size;
        kern_gemm_run(&gm, c->pool, ws);
        return;
    }
    gm.pb = pw;
    gm.b = wg;
    if (p->kind == CONV_POINTWISE)
        gm.a = xg;
    else if (p->indirect)
        setup_indirect(p, xg, ws + p->gemm_ws + p->ct_ws, c->pool, &gm);
    else
        gm.pack_a_ctx = &cc;
    float *ct = (float *)(ws + p->gemm_ws);
    gm.c = ct;
    gm.epi.col_bias = c->bias ? c->bias + g * p->mg : NULL;
    /* The residual is in Y's layout: the transposition adds it, then activates. */
    if (rg) gm.epi.act = KERN_ACT_NONE;
    kern_gemm_run(&gm, c->pool, ws);
    copy_ctx tc = {.p = p,
                   .src = ct,
                   .dst = yg,
                   .residual = rg,
                   .act = rg && c->act.act != KERN_ACT_NONE ? &c->act : NULL};
    kern_parallel(c->pool, (p->mg + 31) / 32, transpose_out, &tc);
}

/* Y = act(conv(X) + RESIDUAL); with ACTIVATE false the caller activates. */
static void conv_float(const eng_op_call *call, const conv_plan *p, const float *x, const float *wt,
                       const float *bias, const float *residual, bool activate, float *y, char *ws)
{
    kern_epilogue act = node_epilogue(call->node);
    if (!activate) act.act = KERN_ACT_NONE;
    if (p->kind == CONV_DEPTHWISE) {
        dw_ctx c = {.p = p,
                    .x = x,
                    .w = wt,
                    .bias = bias,
                    .y = y,
                    .ws = ws,
                    .act = act.act != KERN_ACT_NONE ? &act : NULL};
        kern_parallel(call->threads, p->n * p->m, dw_plane, &c);
        return;
    }
    gemm_ctx c = {.p = p,
                  .packed = call->packed,
                  .x = x,
                  .w = wt,
                  .bias = bias,
                  .residual = residual,
                  .y = y,
                  .ws = ws,
                  .act = act};
    int64_t jobs = p->n * p->group;
    if (p->by_image) {
        kern_parallel(call->threads, jobs, conv_gemm, &c);
        return;
    }
    c.pool = call->threads;
    for (int64_t t = 0; t < jobs; t++) conv_gemm(&c, t, 0);
}

/* Applies the fused activation on the float64 path. */
static void activate_double(double *y, int64_t n, const eng_fused_activation *fa)
{
    for (int64_t i = 0; i < n; i++) {
        double v = y[i];
        switch (fa->kind) {
        case ENG_ACT_RELU:
            v = v < 0 ? 0 : v;
            break;
        case ENG_ACT_CLIP:
            v = v < fa->a ? fa->a : v;
            v = v > fa->b ? fa->b : v;
            break;
        case ENG_ACT_LEAKY_RELU:
            v = v < 0 ? fa->a * v : v;
            break;
        default:
            break;
        }
        y[i] = v;
    }
}

/* float64: a direct loop over every output and every tap. */
static void conv_double(const conv_plan *p, const double *x, const double *wt, const double *bias,
                        double *y)
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
                        int64_t i =
                            opos[d] * w->stride[d] - w->pad_begin[d] + kpos[d] * w->dilation[d];
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

/* The residual a graph pass fused into this Conv (see fuse_conv_residual), or NULL. */
static const eng_tensor *residual(const eng_op_call *call)
{
    return eng_node_fused_residual(call->node) ? input(call, 3) : NULL;
}

static bool same_dims(const eng_tensor *a, const eng_tensor *b)
{
    return a->rank == b->rank && !memcmp(a->dims, b->dims, (size_t)a->rank * sizeof(a->dims[0]));
}

/* One run of the broadcast sum (see broadcast_apply): S[k] is 1 where input k advances. */
static void add_rows_f32(void *out, const void *const *in, const int *s, int64_t n, const void *p)
{
    (void)p;
    float *o = out;
    const float *a = in[0], *b = in[1];
    for (int64_t i = 0; i < n; i++) o[i] = a[i * s[0]] + b[i * s[1]];
}

static ferry_status *conv_infer(eng_op_call *call)
{
    conv_plan p;
    if (call->n_in > 3 && !eng_node_fused_residual(call->node))
        return core_error(FERRY_ERR_INVALID_MODEL, "Conv takes at most 3 inputs, got %d",
                          call->n_in);
    ferry_status *st = conv_plan_make(call, true, &p);
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
    size_t ws = p.total_ws;
    if (x->dtype == FERRY_DTYPE_FLOAT16) {
        const eng_tensor *b = input(call, 2);
        ws += align64((size_t)eng_numel(x) * sizeof(float)) +
              align64((size_t)eng_numel(call->in[1]) * sizeof(float)) +
              (b ? align64((size_t)eng_numel(b) * sizeof(float)) : 0) +
              align64((size_t)eng_numel(y) * sizeof(float));
    }
    const eng_tensor *r = residual(call);
    if (r) {
        if (x->dtype != FERRY_DTYPE_FLOAT || r->dtype != FERRY_DTYPE_FLOAT)
            return eng_bad_dtype("the Add fused into this Conv", r->dtype);
        if (!same_dims(r, y) || p.kind == CONV_DEPTHWISE) {
            /* The sum broadcasts (or the kernel adds nothing): convolve into scratch first. */
            ws += align64((size_t)eng_numel(y) * sizeof(float));
            eng_tensor conv = *y;
            const eng_tensor *pair[2] = {&conv, r};
            if ((st = eng_broadcast_shapes(y, pair, 2)))
                return core_error_wrap(st, "the Add fused into this Conv");
        }
    }
    call->workspace_size = ws;
    return NULL;
}

static ferry_status *conv_run(eng_op_call *call)
{
    conv_plan p;
    ferry_status *st = conv_plan_make(call, false, &p);
    if (st) return st;
    const eng_tensor *x = call->in[0], *w = call->in[1], *b = input(call, 2);
    eng_tensor *y = call->out[0];
    switch (x->dtype) {
    case FERRY_DTYPE_FLOAT: {
        /* Weights still misaligned in the file are only ever read packed. */
        const float *wt = (uintptr_t)w->data % sizeof(float) ? NULL : (const float *)w->data;
        const eng_tensor *r = residual(call);
        eng_tensor conv = *y;
        conv.rank = x->rank;
        conv.dims[0] = p.n;
        conv.dims[1] = p.m;
        for (int i = 2; i < x->rank; i++) conv.dims[i] = x->rank == 3 ? p.w.out[1] : p.w.out[i - 2];
        if (r && (!same_dims(r, &conv) || !same_dims(y, &conv) || p.kind == CONV_DEPTHWISE)) {
            float *tmp = (float *)((char *)call->workspace + p.total_ws);
            conv_float(call, &p, x->data, wt, b ? b->data : NULL, NULL, false, tmp,
                       call->workspace);
            conv.data = tmp;
            const eng_tensor *sum[2] = {&conv, r};
            broadcast_apply(call, y, sum, 2, add_rows_f32, NULL, GRAIN_CHEAP);
            kern_epilogue act = node_epilogue(call->node);
            kern_activate(y->data, eng_numel(y), &act);
            break;
        }
        conv_float(call, &p, x->data, wt, b ? b->data : NULL, r ? r->data : NULL, true, y->data,
                   call->workspace);
        break;
    }
    case FERRY_DTYPE_DOUBLE:
        conv_double(&p, x->data, w->data, b ? b->data : NULL, y->data);
        activate_double(y->data, eng_numel(y), eng_node_activation(call->node));
        break;
    case FERRY_DTYPE_FLOAT16: {
        char *ws = call->workspace;
        char *q = ws + p.total_ws;
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
        conv_float(call, &p, fx, fw, fb, NULL, true, fy, ws);
        kern_float_to_half(fy, y->data, eng_numel(y));
        break;
    }
    default:
        return eng_bad_dtype("input X", x->dtype);
    }
    return NULL;
}

static void conv_unpack(void *packed)
{
    conv_packed *cp = packed;
    if (!cp) return;
    for (int64_t i = 0; i < 2 * cp->group; i++)
        kern_packed_free(atomic_load_explicit(&cp->slot[i], memory_order_relaxed));
    free(cp);
}

/* Records a constant float32 W for packing. The layout depends on the input's size (see
 * use_transposed), which is known only when a plan is made, so conv_infer packs. Depthwise
 * weights (one input channel per group) are read directly by their kernel. */
static ferry_status *conv_pack(const eng_node *node, const eng_tensor *const *inputs,
                               const void *state, void **packed)
{
    (void)node;
    const conv_attrs *at = state;
    const eng_tensor *w = inputs[1];
    *packed = NULL;
    if (!w || w->dtype != FERRY_DTYPE_FLOAT || w->rank < 3 || !w->data) return NULL;
    int64_t m = w->dims[0], cg = w->dims[1], group = at->group;
    if (m <= 0 || eng_numel(w) <= 0 || m % group || cg == 1) return NULL;
    int64_t kdim = eng_numel(w) / m;
    conv_packed *cp = calloc(1, sizeof(*cp) + 2 * (size_t)group * sizeof(cp->slot[0]));
    if (!cp) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    cp->group = group;
    cp->mg = m / group;
    cp->kdim = kdim;
    cp->w = w->data;
    cp->w_bytes = eng_nbytes(w);
    for (int64_t i = 0; i < 2 * group; i++) atomic_init(&cp->slot[i], NULL);
    *packed = cp;
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "",
     .name = "Conv",
     .since_version = 1,
     .init = conv_init,
     .fini = conv_fini,
     .infer = conv_infer,
     .run = conv_run,
     .pack = conv_pack,
     .unpack = conv_unpack,
     .flags = ENG_OP_FUSES_ACTIVATION},
};

const eng_op_table eng_ops_conv = {ops, sizeof(ops) / sizeof(ops[0])};
