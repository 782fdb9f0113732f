/* grid.c - GridSample (opset 16; opset 20's "linear" and "cubic" spellings on 4-D inputs).
 *
 * Y[n, c, oy, ox] samples X[n, c] at the point grid[n, oy, ox] = (x, y), normalised to
 * [-1, 1] across the input's width and height. The sampling follows the ONNX reference and
 * onnxruntime, which match PyTorch's grid_sample:
 *
 *   the point is mapped to pixel coordinates (align_corners: -1 and 1 are the corner pixels'
 *   centres; otherwise their outer edges), rounded half to even for nearest;
 *   a point outside the image is clamped (border) or reflected (reflection) into it;
 *   bilinear mixes the 2x2 pixels around it, bicubic the 4x4 (Keys, a = -0.75), and each tap
 *   outside the image reads 0 (zeros), the clamped pixel (border) or the reflected one.
 *
 * The taps and weights of a point are worked out once and applied to every channel. Math is
 * in double; X and the grid may be float, double, float16 or bfloat16.
 */
#include "engine/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum gs_mode { GS_BILINEAR, GS_NEAREST, GS_BICUBIC };
enum gs_pad { GS_ZEROS, GS_BORDER, GS_REFLECTION };

typedef struct gs_attrs {
    enum gs_mode mode;
    enum gs_pad pad;
    bool align_corners;
} gs_attrs;

static bool is_real(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_FLOAT16 ||
           dt == FERRY_DTYPE_BFLOAT16;
}

static inline double ld(ferry_dtype dt, const void *p, int64_t i)
{
    if (dt == FERRY_DTYPE_FLOAT) return ((const float *)p)[i];
    if (dt == FERRY_DTYPE_DOUBLE) return ((const double *)p)[i];
    return core_load_f64(dt, p, i);
}

static inline void st(ferry_dtype dt, void *p, int64_t i, double v)
{
    if (dt == FERRY_DTYPE_FLOAT)
        ((float *)p)[i] = (float)v;
    else if (dt == FERRY_DTYPE_DOUBLE)
        ((double *)p)[i] = v;
    else
        core_store_f64(dt, p, i, v);
}

static ferry_status *gs_init(const eng_node *node, int opset, void **state)
{
    gs_attrs a = {0};
    /* Opset 20 renamed bilinear and bicubic to linear and cubic. */
    const char *mode = eng_attr_string(node, "mode", opset >= 20 ? "linear" : "bilinear");
    const char *linear = opset >= 20 ? "linear" : "bilinear";
    const char *cubic = opset >= 20 ? "cubic" : "bicubic";
    if (!strcmp(mode, linear))
        a.mode = GS_BILINEAR;
    else if (!strcmp(mode, "nearest"))
        a.mode = GS_NEAREST;
    else if (!strcmp(mode, cubic))
        a.mode = GS_BICUBIC;
    else
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute mode must be %s, nearest or %s, "
                          "got '%s'",
                          linear, cubic, mode);
    const char *pad = eng_attr_string(node, "padding_mode", "zeros");
    if (!strcmp(pad, "zeros"))
        a.pad = GS_ZEROS;
    else if (!strcmp(pad, "border"))
        a.pad = GS_BORDER;
    else if (!strcmp(pad, "reflection"))
        a.pad = GS_REFLECTION;
    else
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute padding_mode must be zeros, border or reflection, got '%s'",
                          pad);
    int64_t ac = eng_attr_int(node, "align_corners", 0);
    if (ac != 0 && ac != 1)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute align_corners must be 0 or 1, got %lld", (long long)ac);
    a.align_corners = ac == 1;
    gs_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *s = a;
    *state = s;
    return NULL;
}

static ferry_status *gs_check(const eng_op_call *call)
{
    const eng_tensor *x = call->n_in > 0 ? call->in[0] : NULL;
    const eng_tensor *grid = call->n_in > 1 ? call->in[1] : NULL;
    if (!x || !grid) return core_error(FERRY_ERR_INVALID_MODEL, "inputs X and grid are required");
    if (!is_real(x->dtype)) return eng_bad_dtype("input X", x->dtype);
    if (!is_real(grid->dtype)) return eng_bad_dtype("input grid", grid->dtype);
    char s1[128], s2[128];
    if (x->rank != 4)
        return core_error(FERRY_ERR_UNSUPPORTED, "only 4-D X [N, C, H, W] is supported, got %s",
                          eng_shape_str(x, s1, sizeof(s1)));
    if (grid->rank != 4 || grid->dims[0] != x->dims[0] || grid->dims[3] != 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "grid must have shape [N, H_out, W_out, 2] with X's N, got %s for X %s",
                          eng_shape_str(grid, s1, sizeof(s1)), eng_shape_str(x, s2, sizeof(s2)));
    return NULL;
}

static ferry_status *gs_infer(eng_op_call *call)
{
    ferry_status *err = gs_check(call);
    if (err) return err;
    const eng_tensor *x = call->in[0], *grid = call->in[1];
    int64_t dims[4] = {x->dims[0], x->dims[1], grid->dims[1], grid->dims[2]};
    call->out[0]->dtype = x->dtype;
    eng_set_shape(call->out[0], 4, dims);
    return NULL;
}

/* Reflects X into [lo, hi] as a mirror folding the line back and forth (the reference's
 * GsReflect); a zero-width range (one pixel with align_corners) is that pixel. */
static double reflect(double x, double lo, double hi)
{
    double range = hi - lo;
    if (range <= 0) return lo;
    if (x < lo) {
        double d = lo - x;
        double k = floor(d / range), r = d - k * range;
        return fmod(k, 2.0) == 0 ? lo + r : hi - r;
    }
    if (x > hi) {
        double d = x - hi;
        double k = floor(d / range), r = d - k * range;
        return fmod(k, 2.0) == 0 ? hi - r : lo + r;
    }
    return x;
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* One axis of the image: its size and the bounds that reflection folds into. */
typedef struct gs_axis {
    int64_t size;
    double lo, hi;
} gs_axis;

/* The pixel index that tap I reads along an axis, or -1 for zero padding's outside. */
static int64_t tap_index(int64_t i, const gs_axis *ax, enum gs_pad pad)
{
    if (i >= 0 && i < ax->size) return i;
    if (pad == GS_ZEROS) return -1;
    if (pad == GS_BORDER) return i < 0 ? 0 : ax->size - 1;
    double r = reflect((double)i, ax->lo, ax->hi);
    int64_t j = (int64_t)r;
    /* Folding about half-pixel bounds lands on whole pixels; clamp guards the rounding. */
    return j < 0 ? 0 : j >= ax->size ? ax->size - 1 : j;
}

/* Keys cubic convolution weights for the 4 taps around fraction T, a = -0.75 (PyTorch's). */
static void cubic_coeffs(double t, double w[4])
{
    const double a = -0.75;
    double x = t + 1.0;
    w[0] = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    x = t;
    w[1] = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    x = 1.0 - t;
    w[2] = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    x = 2.0 - t;
    w[3] = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
}

typedef struct gs_job {
    const gs_attrs *a;
    const eng_tensor *x, *grid;
    eng_tensor *y;
    int64_t c, h, w, ho, wo;
    gs_axis ax_x, ax_y;
} gs_job;

/* Rows [begin, end) of the flattened [N, H_out]. */
static void gs_rows(void *arg, int64_t begin, int64_t end)
{
    const gs_job *j = arg;
    const gs_attrs *a = j->a;
    const eng_tensor *x = j->x, *grid = j->grid;
    eng_tensor *y = j->y;
    int64_t plane = j->h * j->w, oplane = j->ho * j->wo;
    for (int64_t row = begin; row < end; row++) {
        int64_t n = row / j->ho, oy = row % j->ho;
        for (int64_t ox = 0; ox < j->wo; ox++) {
            int64_t g = (row * j->wo + ox) * 2;
            double gx = ld(grid->dtype, grid->data, g), gy = ld(grid->dtype, grid->data, g + 1);
            double fx, fy;
            if (a->align_corners) {
                fx = (gx + 1.0) / 2.0 * (double)(j->w - 1);
                fy = (gy + 1.0) / 2.0 * (double)(j->h - 1);
            } else {
                fx = ((gx + 1.0) * (double)j->w - 1.0) / 2.0;
                fy = ((gy + 1.0) * (double)j->h - 1.0) / 2.0;
            }
            if (a->mode == GS_NEAREST) {
                fx = nearbyint(fx);
                fy = nearbyint(fy);
            }
            /* Like the reference, a point outside [lo, hi] on either axis is moved on both:
             * bicubic's taps then differ from clamping each tap alone. */
            bool out = fx < j->ax_x.lo || fx > j->ax_x.hi || fy < j->ax_y.lo || fy > j->ax_y.hi;
            if (out && a->pad == GS_BORDER) {
                fx = clampd(fx, 0.0, (double)(j->w - 1));
                fy = clampd(fy, 0.0, (double)(j->h - 1));
            } else if (out && a->pad == GS_REFLECTION) {
                fx = reflect(fx, j->ax_x.lo, j->ax_x.hi);
                fy = reflect(fy, j->ax_y.lo, j->ax_y.hi);
            }
            /* NaN grid points (and infinities left by zero padding) read nothing. */
            if (!isfinite(fx) || !isfinite(fy) || fabs(fx) > 1e15 || fabs(fy) > 1e15) {
                for (int64_t c = 0; c < j->c; c++)
                    st(y->dtype, y->data, (n * j->c + c) * oplane + oy * j->wo + ox,
                       a->pad == GS_ZEROS && !isnan(fx) && !isnan(fy) ? 0.0 : NAN);
                continue;
            }
            /* Up to 4 x 4 taps: row and column indices (-1: zero) and weights. */
            int64_t ix[4], iy[4];
            double wx[4], wy[4];
            int nt;
            if (a->mode == GS_NEAREST) {
                nt = 1;
                ix[0] = tap_index((int64_t)fx, &j->ax_x, a->pad);
                iy[0] = tap_index((int64_t)fy, &j->ax_y, a->pad);
                wx[0] = wy[0] = 1.0;
            } else if (a->mode == GS_BILINEAR) {
                nt = 2;
                double x0 = floor(fx), y0 = floor(fy);
                for (int t = 0; t < 2; t++) {
                    ix[t] = tap_index((int64_t)x0 + t, &j->ax_x, a->pad);
                    iy[t] = tap_index((int64_t)y0 + t, &j->ax_y, a->pad);
                }
                wx[1] = fx - x0;
                wx[0] = 1.0 - wx[1];
                wy[1] = fy - y0;
                wy[0] = 1.0 - wy[1];
            } else {
                nt = 4;
                double x0 = floor(fx), y0 = floor(fy);
                for (int t = 0; t < 4; t++) {
                    ix[t] = tap_index((int64_t)x0 - 1 + t, &j->ax_x, a->pad);
                    iy[t] = tap_index((int64_t)y0 - 1 + t, &j->ax_y, a->pad);
                }
                cubic_coeffs(fx - x0, wx);
                cubic_coeffs(fy - y0, wy);
            }
            for (int64_t c = 0; c < j->c; c++) {
                int64_t base = (n * j->c + c) * plane;
                double v = 0.0;
                for (int r = 0; r < nt; r++) {
                    if (iy[r] < 0) continue;
                    double acc = 0.0;
                    for (int t = 0; t < nt; t++)
                        if (ix[t] >= 0)
                            acc += wx[t] * ld(x->dtype, x->data, base + iy[r] * j->w + ix[t]);
                    v += wy[r] * acc;
                }
                st(y->dtype, y->data, (n * j->c + c) * oplane + oy * j->wo + ox, v);
            }
        }
    }
}

static ferry_status *gs_run(eng_op_call *call)
{
    ferry_status *err = gs_check(call);
    if (err) return err;
    const gs_attrs *a = call->state;
    const eng_tensor *x = call->in[0], *grid = call->in[1];
    gs_job j = {.a = a,
                .x = x,
                .grid = grid,
                .y = call->out[0],
                .c = x->dims[1],
                .h = x->dims[2],
                .w = x->dims[3],
                .ho = grid->dims[1],
                .wo = grid->dims[2]};
    int64_t rows = x->dims[0] * j.ho;
    if (rows == 0 || j.wo == 0 || j.c == 0) return NULL;
    if (j.h == 0 || j.w == 0) {
        /* Nothing to sample: every point is outside. */
        for (int64_t i = 0; i < rows * j.wo * j.c; i++) st(j.y->dtype, j.y->data, i, 0.0);
        return NULL;
    }
    /* The image spans the first to the last pixel centre with align_corners, the outer
     * edges of the corner pixels without; reflection folds about these bounds. */
    double edge = a->align_corners ? 0.0 : 0.5;
    j.ax_x = (gs_axis){j.w, -edge, (double)(j.w - 1) + edge};
    j.ax_y = (gs_axis){j.h, -edge, (double)(j.h - 1) + edge};
    int64_t per_row = j.wo * j.c * (a->mode == GS_BICUBIC ? 16 : 4);
    int64_t grain = per_row > 0 && 32768 / per_row > 0 ? 32768 / per_row : 1;
    core_parallel_for(call->threads, gs_rows, &j, rows, grain);
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "",
     .name = "GridSample",
     .since_version = 16,
     .init = gs_init,
     .fini = free,
     .infer = gs_infer,
     .run = gs_run},
};

const eng_op_table eng_ops_grid = {ops, sizeof(ops) / sizeof(ops[0])};
