/* resize.c - Resize (opsets 10, 11, 13) and Upsample (7, 9): nearest, linear and cubic
 * interpolation over any number of dims.
 *
 * The output shape comes from the scales (floor(dim * scale)) or the sizes; both are flagged
 * in value_inputs so infer can read them. Each output coordinate of each dim is mapped back to
 * an input coordinate by the coordinate_transformation_mode, exactly as ONNX's reference
 * implementation does (in double, with "output width" = scale * input dim even when that is
 * not an integer), and turned into at most four taps: input indices clamped to the edge and
 * their weights (one tap for nearest, two for linear, four for cubic with the cubic_coeff_a
 * kernel, renormalised without the outside ones when exclude_outside). tf_crop_and_resize
 * coordinates outside the input give extrapolation_value. The taps of every dim are computed
 * into the workspace when the node runs, and each output element is the weighted sum over
 * the product of its taps, accumulated in double. Leading dims that map one to one (batch
 * and channels, usually) are treated as a run of independent planes.
 *
 * Nearest mode moves elements, so it works for every flat dtype. Linear and cubic convert to
 * double and back; integer outputs are rounded to nearest and saturated, since cubic
 * interpolation overshoots.
 *
 * Resize-10 and Upsample have no mode attributes: they map coordinates asymmetrically and
 * round nearest neighbours down when enlarging and up when shrinking, as onnxruntime does.
 */
#include "engine/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define R            FERRY_MAX_RANK
#define MAX_ELEMENTS ((int64_t)1 << 40)

/* The engine passes NULL for inputs and outputs that the model names ""; the required ones
 * must be there. */
static ferry_status *need_io(const eng_op_call *call, int n_in, bool out0)
{
    for (int i = 0; i < n_in; i++)
        if (i >= call->n_in || !call->in[i])
            return core_error(FERRY_ERR_INVALID_MODEL, "missing required input %d", i);
    if (out0 && (call->n_out < 1 || !call->out[0]))
        return core_error(FERRY_ERR_INVALID_MODEL, "missing output 0");
    return NULL;
}

typedef enum resize_mode { MODE_NEAREST, MODE_LINEAR, MODE_CUBIC } resize_mode;

typedef enum coord_mode {
    CT_HALF_PIXEL,
    CT_ASYMMETRIC,
    CT_PYTORCH_HALF_PIXEL,
    CT_TF_HALF_PIXEL_FOR_NN,
    CT_ALIGN_CORNERS,
    CT_TF_CROP_AND_RESIZE,
} coord_mode;

typedef enum nearest_mode {
    NEAREST_ROUND_PREFER_FLOOR,
    NEAREST_ROUND_PREFER_CEIL,
    NEAREST_FLOOR,
    NEAREST_CEIL,
    NEAREST_SIMPLE, /* before Resize-11: floor when enlarging, ceil when shrinking */
} nearest_mode;

typedef struct resize_state {
    int kind; /* 7: Upsample with a scales attribute; 9: scales input 1; 11: roi/scales/sizes */
    resize_mode mode;
    coord_mode coord;
    nearest_mode nearest;
    double cubic_a;
    bool exclude_outside;
    double extrapolation;
    const float *scales; /* Upsample-7's attribute, owned by the model */
    size_t n_scales;
} resize_state;

static int find(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

static ferry_status *resize_init(const eng_node *node, int opset, void **state)
{
    bool upsample = !strcmp(eng_node_op_type(node), "Upsample");
    int kind = upsample ? (opset < 9 ? 7 : 9) : (opset < 11 ? 9 : 11);
    static const char *const modes[] = {"nearest", "linear", "cubic", "bilinear"};
    const char *mode = eng_attr_string(node, "mode", "nearest");
    int m = find(mode, modes, 4);
    if (m == 3) m = MODE_LINEAR; /* Upsample-1's name for it */
    if (m < 0 || (m == MODE_CUBIC && kind < 11))
        return core_error(FERRY_ERR_INVALID_MODEL, "unknown mode '%s'", mode);
    static const char *const coords[] = {"half_pixel",         "asymmetric",
                                         "pytorch_half_pixel", "tf_half_pixel_for_nn",
                                         "align_corners",      "tf_crop_and_resize"};
    const char *coord = kind < 11
                            ? "asymmetric"
                            : eng_attr_string(node, "coordinate_transformation_mode", "half_pixel");
    int c = find(coord, coords, 6);
    /* tf_half_pixel_for_nn was dropped in opset 13. */
    if (c < 0 || (c == CT_TF_HALF_PIXEL_FOR_NN && opset >= 13))
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "coordinate_transformation_mode '%s' is not supported", coord);
    static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                           "ceil"};
    const char *nearest = eng_attr_string(node, "nearest_mode", "round_prefer_floor");
    int n = kind < 11 ? NEAREST_SIMPLE : find(nearest, nearests, 4);
    if (n < 0) return core_error(FERRY_ERR_INVALID_MODEL, "unknown nearest_mode '%s'", nearest);
    /* Resize-18 features that would silently change results if ignored. */
    if (eng_attr_int(node, "antialias", 0) != 0 || eng_attr_has(node, "axes") ||
        strcmp(eng_attr_string(node, "keep_aspect_ratio_policy", "stretch"), "stretch"))
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "antialias, axes and keep_aspect_ratio_policy are not supported");
    const float *scales = NULL;
    size_t n_scales = 0;
    if (kind == 7) {
        scales = eng_attr_floats(node, "scales", &n_scales);
        if (!scales) return core_error(FERRY_ERR_INVALID_MODEL, "missing attribute 'scales'");
    }
    resize_state *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->kind = kind;
    s->mode = (resize_mode)m;
    s->coord = (coord_mode)c;
    s->nearest = (nearest_mode)n;
    s->cubic_a = eng_attr_float(node, "cubic_coeff_a", -0.75f);
    s->exclude_outside = eng_attr_int(node, "exclude_outside", 0) != 0;
    s->extrapolation = eng_attr_float(node, "extrapolation_value", 0.0f);
    s->scales = scales;
    s->n_scales = n_scales;
    *state = s;
    return NULL;
}

/* An optional input that is present and not empty. */
static const eng_tensor *given(const eng_op_call *call, int i)
{
    const eng_tensor *t = call->n_in > i ? call->in[i] : NULL;
    return t && eng_numel(t) > 0 ? t : NULL;
}

/* The scale of every dim and the output dims. */
static ferry_status *resize_shape(const eng_op_call *call, double *scale, int64_t *dims)
{
    const resize_state *s = call->state;
    const eng_tensor *in = call->in[0];
    int rank = in->rank;
    const eng_tensor *scales = given(call, s->kind == 11 ? 2 : 1);
    const eng_tensor *sizes = s->kind == 11 ? given(call, 3) : NULL;
    if (s->kind == 7) {
        if (s->n_scales != (size_t)rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "scales has %zu values for an input of rank %d", s->n_scales, rank);
        for (int d = 0; d < rank; d++) scale[d] = s->scales[d];
    } else if (sizes) {
        if (scales) return core_error(FERRY_ERR_INVALID_ARGUMENT, "give scales or sizes, not both");
        if (sizes->dtype != FERRY_DTYPE_INT64 || eng_numel(sizes) != rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "sizes must be %d int64 values (the input's rank)", rank);
        if (!sizes->data) return core_error(FERRY_ERR_INTERNAL, "sizes is not known");
        for (int d = 0; d < rank; d++) {
            int64_t v = core_load_i64(sizes->dtype, sizes->data, d);
            if (v < 0 || v > MAX_ELEMENTS)
                return core_error(FERRY_ERR_INVALID_ARGUMENT, "size %lld is out of range",
                                  (long long)v);
            dims[d] = v;
            scale[d] = in->dims[d] ? (double)v / (double)in->dims[d] : 1.0;
        }
        return NULL;
    } else {
        if (!scales) return core_error(FERRY_ERR_INVALID_ARGUMENT, "missing scales or sizes");
        if (!core_dtype_is_float(scales->dtype) || eng_numel(scales) != rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "scales must be %d float values (the input's rank)", rank);
        if (!scales->data) return core_error(FERRY_ERR_INTERNAL, "scales is not known");
        for (int d = 0; d < rank; d++) scale[d] = core_load_f64(scales->dtype, scales->data, d);
    }
    for (int d = 0; d < rank; d++) {
        double o = floor(scale[d] * (double)in->dims[d]);
        if (!(scale[d] > 0) || !(o < (double)MAX_ELEMENTS))
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "scale %g is out of range", scale[d]);
        dims[d] = (int64_t)o;
    }
    return NULL;
}

/* Up to four input indices and weights that make one output coordinate of one dim. */
typedef struct tap {
    int64_t idx[4];
    double w[4];
    int32_t n;
    int32_t outside; /* tf_crop_and_resize: the coordinate is off the input */
} tap;

static ferry_status *resize_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, true);
    if (io) return io;
    const resize_state *s = call->state;
    const eng_tensor *in = call->in[0];
    /* Nearest neighbours move any tensor element (strings as pointers). */
    if ((unsigned)in->dtype >= FERRY_DTYPE_COUNT || !ferry_dtype_size(in->dtype))
        return eng_bad_dtype("input", in->dtype);
    if (s->mode != MODE_NEAREST && !core_dtype_is_float(in->dtype) &&
        !core_dtype_is_signed_int(in->dtype) && !core_dtype_is_unsigned_int(in->dtype))
        return eng_bad_dtype("input for interpolation", in->dtype);
    double scale[R];
    int64_t dims[R];
    ferry_status *st = resize_shape(call, scale, dims);
    if (st) return st;
    eng_tensor *out = call->out[0];
    out->dtype = in->dtype;
    eng_set_shape(out, in->rank, dims);
    size_t taps = 0;
    for (int d = 0; d < in->rank; d++) taps += (size_t)dims[d];
    call->workspace_size = taps * sizeof(tap);
    return NULL;
}

/* The input coordinate of output coordinate X along a dim of IN input elements, following
 * ONNX's reference expression by expression so that rounding decisions agree. */
static double source_coord(const resize_state *s, int64_t x, int64_t in, double scale, double roi0,
                           double roi1)
{
    double width = scale * (double)in; /* the reference's output_width */
    switch (s->coord) {
    /* The product is exact in double for any dims a tensor can have, as in int64. */
    case CT_ALIGN_CORNERS:
        return width == 1 ? 0.0 : (double)x * (double)(in - 1) / (width - 1);
    case CT_ASYMMETRIC:
        return (double)x / scale;
    case CT_TF_CROP_AND_RESIZE: {
        double v = width == 1 ? (roi1 - roi0) * (double)(in - 1) / 2
                              : (double)x * (roi1 - roi0) * (double)(in - 1) / (width - 1);
        return v + roi0 * (double)(in - 1);
    }
    case CT_PYTORCH_HALF_PIXEL:
        return width == 1 ? -0.5 : ((double)x + 0.5) / scale - 0.5;
    case CT_TF_HALF_PIXEL_FOR_NN:
        return ((double)x + 0.5) / scale;
    default:
        return ((double)x + 0.5) / scale - 0.5;
    }
}

static void cubic_coeffs(double r, double a, double *c)
{
    double r1 = r + 1, r2 = 1 - r, r3 = 2 - r;
    c[0] = ((a * r1 - 5 * a) * r1 + 8 * a) * r1 - 4 * a;
    c[1] = ((a + 2) * r - (a + 3)) * r * r + 1;
    c[2] = ((a + 2) * r2 - (a + 3)) * r2 * r2 + 1;
    c[3] = ((a * r3 - 5 * a) * r3 + 8 * a) * r3 - 4 * a;
}

/* The taps of output coordinate X of a dim of IN input elements. */
static void make_tap(const resize_state *s, int64_t x, int64_t in, double scale, double roi0,
                     double roi1, tap *t)
{
    double c = source_coord(s, x, in, scale, roi0, roi1);
    t->outside = s->coord == CT_TF_CROP_AND_RESIZE && !(c >= 0 && c <= (double)(in - 1));
    /* Coordinates far off the input (hostile scales or roi) are pulled in before they become
     * integers; their taps land on the edge element either way. */
    if (isnan(c)) c = 0;
    if (c < -8) c = -8;
    if (c > (double)in + 8) c = (double)in + 8;
    double f = floor(c), r = c - f;
    int64_t base = (int64_t)f;
    double w[4];
    int n;
    if (s->mode == MODE_NEAREST) {
        bool up;
        switch (s->nearest) {
        case NEAREST_ROUND_PREFER_CEIL:
            up = r >= 0.5;
            break;
        case NEAREST_FLOOR:
            up = false;
            break;
        case NEAREST_CEIL:
            up = r > 0;
            break;
        case NEAREST_SIMPLE:
            up = scale < 1 && r > 0;
            break;
        default:
            up = r > 0.5;
            break;
        }
        t->idx[0] = base + up;
        w[0] = 1;
        n = 1;
    } else if (s->mode == MODE_LINEAR) {
        t->idx[0] = base;
        t->idx[1] = base + 1;
        w[0] = 1 - r;
        w[1] = r;
        n = 2;
    } else {
        for (int k = 0; k < 4; k++) t->idx[k] = base - 1 + k;
        cubic_coeffs(r, s->cubic_a, w);
        n = 4;
    }
    if (s->exclude_outside && n > 1) {
        double sum = 0;
        for (int k = 0; k < n; k++) {
            if (t->idx[k] < 0 || t->idx[k] >= in) w[k] = 0;
            sum += w[k];
        }
        if (sum != 0)
            for (int k = 0; k < n; k++) w[k] /= sum;
    }
    /* Clamp to the edge and drop zero weights, so one-to-one dims become single taps. */
    t->n = 0;
    for (int k = 0; k < n; k++) {
        if (w[k] == 0 && n > 1) continue;
        int64_t i = t->idx[k] < 0 ? 0 : t->idx[k] >= in ? in - 1 : t->idx[k];
        t->idx[t->n] = i;
        t->w[t->n] = w[k];
        t->n++;
    }
    if (t->n == 0) { /* every weight was zero: keep the weight-0 sum defined */
        t->idx[0] = 0;
        t->w[0] = 0;
        t->n = 1;
    }
}

/* Integer outputs: round to nearest and saturate. */
static void store(ferry_dtype dt, void *data, int64_t i, double v)
{
    if (core_dtype_is_float(dt)) {
        core_store_f64(dt, data, i, v);
        return;
    }
    double lo, hi;
    switch (dt) {
    case FERRY_DTYPE_INT8:
        lo = INT8_MIN, hi = INT8_MAX;
        break;
    case FERRY_DTYPE_UINT8:
        lo = 0, hi = UINT8_MAX;
        break;
    case FERRY_DTYPE_INT16:
        lo = INT16_MIN, hi = INT16_MAX;
        break;
    case FERRY_DTYPE_UINT16:
        lo = 0, hi = UINT16_MAX;
        break;
    case FERRY_DTYPE_INT32:
        lo = INT32_MIN, hi = INT32_MAX;
        break;
    case FERRY_DTYPE_UINT32:
        lo = 0, hi = UINT32_MAX;
        break;
    case FERRY_DTYPE_UINT64:
        lo = 0, hi = 9223372036854775807.0;
        break;
    default:
        lo = -9223372036854775808.0, hi = 9223372036854775807.0;
        break;
    }
    v = nearbyint(v);
    v = v < lo ? lo : v > hi ? hi : v;
    core_store_f64(dt, data, i, v);
}

typedef struct plane_ctx {
    const resize_state *s;
    const eng_tensor *in;
    eng_tensor *out;
    int lead, rank;
    const tap *taps[R];
    int64_t istr[R];
} plane_ctx;

/* The weighted sum over the taps of dims D.. for the output coordinates POS, starting at
 * input element offset OFF. */
static double interp(const plane_ctx *c, int d, const int64_t *pos, int64_t off)
{
    const tap *t = &c->taps[d][pos[d]];
    double sum = 0;
    for (int k = 0; k < t->n; k++) {
        int64_t o = off + t->idx[k] * c->istr[d];
        double v = d == c->rank - 1 ? core_load_f64(c->in->dtype, c->in->data, o)
                                    : interp(c, d + 1, pos, o);
        sum += t->w[k] * v;
    }
    return sum;
}

/* Float fast path of interp(). */
static double interp_f32(const plane_ctx *c, int d, const int64_t *pos, const float *src)
{
    const tap *t = &c->taps[d][pos[d]];
    double sum = 0;
    if (d == c->rank - 1) {
        for (int k = 0; k < t->n; k++) sum += t->w[k] * src[t->idx[k]];
        return sum;
    }
    for (int k = 0; k < t->n; k++)
        sum += t->w[k] * interp_f32(c, d + 1, pos, src + t->idx[k] * c->istr[d]);
    return sum;
}

static ferry_status *resize_run(eng_op_call *call)
{
    const resize_state *s = call->state;
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    int rank = in->rank;
    int64_t total = eng_numel(out);
    if (total == 0) return NULL;
    size_t esz = ferry_dtype_size(in->dtype);
    if (rank == 0) {
        memcpy(out->data, in->data, esz);
        return NULL;
    }
    double scale[R];
    int64_t dims[R];
    ferry_status *st = resize_shape(call, scale, dims);
    if (st) return st;
    const eng_tensor *roi = s->coord == CT_TF_CROP_AND_RESIZE ? given(call, 1) : NULL;
    if (s->coord == CT_TF_CROP_AND_RESIZE &&
        (!roi || !core_dtype_is_float(roi->dtype) || eng_numel(roi) != 2 * rank))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "tf_crop_and_resize needs a roi of %d float values", 2 * rank);

    /* Taps of every dim; dims that map one to one lead the plane split. */
    plane_ctx c = {.s = s, .in = in, .out = out, .rank = rank};
    tap *t = call->workspace;
    bool identity = true;
    c.lead = 0;
    for (int d = 0; d < rank; d++) {
        double r0 = roi ? core_load_f64(roi->dtype, roi->data, d) : 0;
        double r1 = roi ? core_load_f64(roi->dtype, roi->data, d + rank) : 1;
        c.taps[d] = t;
        for (int64_t x = 0; x < out->dims[d]; x++) {
            make_tap(s, x, in->dims[d], scale[d], r0, r1, &t[x]);
            identity &= t[x].n == 1 && t[x].idx[0] == x && !t[x].outside && t[x].w[0] == 1;
        }
        identity &= out->dims[d] == in->dims[d];
        if (identity) c.lead = d + 1;
        t += out->dims[d];
    }
    int64_t stride = 1;
    for (int d = rank - 1; d >= 0; d--) {
        c.istr[d] = stride;
        stride *= in->dims[d];
    }
    /* A fully one-to-one resize is a copy. */
    if (c.lead == rank) {
        memcpy(out->data, in->data, (size_t)total * esz);
        return NULL;
    }
    int64_t planes = 1;
    for (int d = 0; d < c.lead; d++) planes *= in->dims[d];
    int64_t in_plane = c.lead ? c.istr[c.lead - 1] : stride, out_plane = total / planes;
    const char *src = in->data;
    char *dst = out->data;
    for (int64_t p = 0; p < planes; p++) {
        int64_t pos[R] = {0};
        const char *ip = src + (size_t)(p * in_plane) * esz;
        for (int64_t e = 0; e < out_plane; e++) {
            int64_t o = p * out_plane + e;
            bool outside = false;
            for (int d = c.lead; d < rank; d++) outside |= c.taps[d][pos[d]].outside != 0;
            if (outside) {
                store(out->dtype, dst, o, s->extrapolation);
            } else if (s->mode == MODE_NEAREST) {
                int64_t off = 0;
                for (int d = c.lead; d < rank; d++) off += c.taps[d][pos[d]].idx[0] * c.istr[d];
                memcpy(dst + (size_t)o * esz, ip + (size_t)off * esz, esz);
            } else if (in->dtype == FERRY_DTYPE_FLOAT) {
                ((float *)out->data)[o] = (float)interp_f32(&c, c.lead, pos, (const float *)ip);
            } else {
                int64_t base = p * in_plane;
                store(out->dtype, dst, o, interp(&c, c.lead, pos, base));
            }
            for (int d = rank - 1; d >= c.lead; d--) {
                if (++pos[d] < out->dims[d]) break;
                pos[d] = 0;
            }
        }
    }
    return NULL;
}

static const eng_op ops[] = {
    {"", "Upsample", 7, 0, resize_init, free, resize_infer, resize_run},
    {"", "Upsample", 9, 1u << 1, resize_init, free, resize_infer, resize_run},
    {"", "Resize", 10, 1u << 1, resize_init, free, resize_infer, resize_run},
    {"", "Resize", 11, (1u << 2) | (1u << 3), resize_init, free, resize_infer, resize_run},
};

const eng_op_table eng_ops_resize = {ops, sizeof(ops) / sizeof(ops[0])};
