/* index_arrange.c - operators that build or rearrange tensors by position: Range, EyeLike,
 * Size, Trilu, CumSum, Tile, DepthToSpace, SpaceToDepth and ReverseSequence.
 *
 * Range's start/limit/delta and Tile's repeats decide output shapes and are flagged in
 * value_inputs; sizes built from them are bounded before they become dims, so a hostile value
 * is an error and never an overflow or a huge allocation. Trilu's k and CumSum's axis only
 * steer the computation and are read when the node runs. DepthToSpace and SpaceToDepth are
 * 6-D transposes handed to eng_copy_strided(); Tile copies the input once and then doubles
 * blocks with memcpy.
 */
#include "engine/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define R FERRY_MAX_RANK
/* The engine refuses tensors over 2^40 elements; sizes computed from data stop there first. */
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

/* Tensor element types, strings (moved as pointers) included; sequences and optionals, which
 * the engine numbers past FERRY_DTYPE_COUNT, are values of another kind. */
static ferry_status *need_flat(const char *what, const eng_tensor *t)
{
    bool element = (unsigned)t->dtype < FERRY_DTYPE_COUNT && ferry_dtype_size(t->dtype) != 0;
    return element ? NULL : eng_bad_dtype(what, t->dtype);
}

static ferry_status *alloc_state(size_t size, void **state)
{
    *state = calloc(1, size);
    return *state ? NULL : core_error(FERRY_ERR_NO_MEMORY, "out of memory");
}

static int64_t prod(const int64_t *dims, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= dims[i];
    return p;
}

/* Reads a one-element integer input (a scalar or a [1] tensor) named WHAT. */
static ferry_status *read_scalar_int(const char *what, const eng_tensor *t, int64_t *v)
{
    if (t->dtype != FERRY_DTYPE_INT64 && t->dtype != FERRY_DTYPE_INT32)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be int64 or int32, got %s", what,
                          ferry_dtype_name(t->dtype));
    if (eng_numel(t) != 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must hold one value, not %lld", what,
                          (long long)eng_numel(t));
    if (!t->data) return core_error(FERRY_ERR_INTERNAL, "%s is not known", what);
    *v = core_load_i64(t->dtype, t->data, 0);
    return NULL;
}

/* --- Range ---------------------------------------------------------------------------------- */

static bool range_type(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_INT16 ||
           dt == FERRY_DTYPE_INT32 || dt == FERRY_DTYPE_INT64;
}

/* The number of elements, max(ceil((limit - start) / delta), 0): in double for the float
 * types, as numpy's arange (ONNX's reference) and PyTorch's arange compute it, and exactly for
 * the integer types. */
static ferry_status *range_count(const eng_op_call *call, int64_t *count)
{
    const eng_tensor *t[3] = {call->in[0], call->in[1], call->in[2]};
    const char *names[3] = {"start", "limit", "delta"};
    ferry_dtype dt = t[0]->dtype;
    for (int i = 0; i < 3; i++) {
        if (!range_type(t[i]->dtype) || t[i]->dtype != dt)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "start, limit and delta must share one of float, double, int16, "
                              "int32 or int64; %s is %s",
                              names[i], ferry_dtype_name(t[i]->dtype));
        if (eng_numel(t[i]) != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be a scalar", names[i]);
        if (!t[i]->data) return core_error(FERRY_ERR_INTERNAL, "%s is not known", names[i]);
    }
    if (core_dtype_is_float(dt)) {
        double s = core_load_f64(dt, t[0]->data, 0), l = core_load_f64(dt, t[1]->data, 0);
        double d = core_load_f64(dt, t[2]->data, 0), n = ceil((l - s) / d);
        if (d == 0 || isnan(n) || n >= (double)MAX_ELEMENTS)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "range from %g to %g by %g has too many elements", s, l, d);
        *count = n > 0 ? (int64_t)n : 0;
        return NULL;
    }
    int64_t s = core_load_i64(dt, t[0]->data, 0), l = core_load_i64(dt, t[1]->data, 0);
    int64_t d = core_load_i64(dt, t[2]->data, 0);
    if (d == 0) return core_error(FERRY_ERR_INVALID_ARGUMENT, "delta cannot be 0");
    if ((d > 0 && l <= s) || (d < 0 && l >= s)) {
        *count = 0;
        return NULL;
    }
    /* The distance and |delta| in uint64 are exact even where int64 arithmetic would
     * overflow (limit - start across the whole range, -INT64_MIN). */
    uint64_t span = d > 0 ? (uint64_t)l - (uint64_t)s : (uint64_t)s - (uint64_t)l;
    uint64_t step = d > 0 ? (uint64_t)d : 0 - (uint64_t)d;
    uint64_t q = span / step + (span % step != 0);
    if (q >= (uint64_t)MAX_ELEMENTS)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "range from %lld to %lld by %lld has too many elements", (long long)s,
                          (long long)l, (long long)d);
    *count = (int64_t)q;
    return NULL;
}

static ferry_status *range_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 3, true);
    if (io) return io;
    int64_t n = 0;
    ferry_status *st = range_count(call, &n);
    if (st) return st;
    call->out[0]->dtype = call->in[0]->dtype;
    eng_set_shape(call->out[0], 1, &n);
    return NULL;
}

static ferry_status *range_run(eng_op_call *call)
{
    eng_tensor *out = call->out[0];
    ferry_dtype dt = out->dtype;
    int64_t n = out->dims[0];
    const void *s = call->in[0]->data, *d = call->in[2]->data;
    if (core_dtype_is_float(dt)) {
        double start = core_load_f64(dt, s, 0), delta = core_load_f64(dt, d, 0);
        if (dt == FERRY_DTYPE_FLOAT) {
            float *o = out->data;
            for (int64_t i = 0; i < n; i++) o[i] = (float)(start + (double)i * delta);
        } else {
            double *o = out->data;
            for (int64_t i = 0; i < n; i++) o[i] = start + (double)i * delta;
        }
        return NULL;
    }
    /* Every value lies between start and limit, so it fits the type; step unsigned so the
     * products of a large count stay defined. */
    uint64_t start = (uint64_t)core_load_i64(dt, s, 0), delta = (uint64_t)core_load_i64(dt, d, 0);
    for (int64_t i = 0; i < n; i++)
        core_store_i64(dt, out->data, i, (int64_t)(start + (uint64_t)i * delta));
    return NULL;
}

/* --- EyeLike -------------------------------------------------------------------------------- */

static bool eye_type(ferry_dtype dt)
{
    return core_dtype_is_float(dt) || core_dtype_is_signed_int(dt) ||
           core_dtype_is_unsigned_int(dt) || dt == FERRY_DTYPE_BOOL;
}

static ferry_status *eye_like_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    (void)state;
    if (eng_attr_has(node, "dtype")) {
        int64_t dt = eng_attr_int(node, "dtype", 0);
        if (dt <= 0 || dt >= FERRY_DTYPE_COUNT || !eye_type((ferry_dtype)dt))
            return core_error(FERRY_ERR_UNSUPPORTED, "dtype %lld is not supported", (long long)dt);
    }
    return NULL;
}

static ferry_status *eye_like_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, true);
    if (io) return io;
    const eng_tensor *in = call->in[0];
    if (in->rank != 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the input must be 2-D, not rank %d",
                          in->rank);
    ferry_dtype dt = (ferry_dtype)eng_attr_int(call->node, "dtype", in->dtype);
    if (!eye_type(dt)) return eng_bad_dtype("output", dt);
    eng_same_shape(call->out[0], in);
    call->out[0]->dtype = dt;
    return NULL;
}

static ferry_status *eye_like_run(eng_op_call *call)
{
    eng_tensor *out = call->out[0];
    int64_t rows = out->dims[0], cols = out->dims[1];
    int64_t k = eng_attr_int(call->node, "k", 0);
    memset(out->data, 0, eng_nbytes(out));
    /* Rows whose diagonal entry (i, i + k) lies inside the matrix; k is clamped first so the
     * sums cannot overflow. */
    if (k > cols) k = cols;
    if (k < -rows) k = -rows;
    int64_t first = k < 0 ? -k : 0, last = cols - k < rows ? cols - k : rows;
    for (int64_t i = first; i < last; i++)
        core_store_f64(out->dtype, out->data, i * cols + i + k, 1.0);
    return NULL;
}

/* --- Size ----------------------------------------------------------------------------------- */

static ferry_status *size_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, true);
    if (io) return io;
    call->out[0]->dtype = FERRY_DTYPE_INT64;
    call->out[0]->rank = 0;
    return NULL;
}

static ferry_status *size_run(eng_op_call *call)
{
    int64_t n = eng_numel(call->in[0]);
    memcpy(call->out[0]->data, &n, sizeof(n));
    return NULL;
}

/* --- Trilu ---------------------------------------------------------------------------------- */

static ferry_status *trilu_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, true);
    if (io) return io;
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("input", in);
    if (st) return st;
    if (in->rank < 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the input must have rank 2 or more");
    const eng_tensor *k = call->n_in > 1 ? call->in[1] : NULL;
    if (k &&
        ((k->dtype != FERRY_DTYPE_INT64 && k->dtype != FERRY_DTYPE_INT32) || eng_numel(k) != 1))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "k must be a single int64 value");
    eng_same_shape(call->out[0], in);
    return NULL;
}

static ferry_status *trilu_run(eng_op_call *call)
{
    const eng_tensor *in = call->in[0], *kt = call->n_in > 1 ? call->in[1] : NULL;
    eng_tensor *out = call->out[0];
    bool upper = eng_attr_int(call->node, "upper", 1) != 0;
    int64_t k = 0;
    if (kt) {
        ferry_status *st = read_scalar_int("k", kt, &k);
        if (st) return st;
    }
    int64_t rows = in->dims[in->rank - 2], cols = in->dims[in->rank - 1];
    int64_t mats = prod(in->dims, 0, in->rank - 2);
    /* Beyond these bounds k changes nothing; clamping keeps i + k from overflowing. */
    if (k > cols) k = cols + 1;
    if (k < -rows) k = -rows - 1;
    size_t esz = ferry_dtype_size(in->dtype), row = (size_t)cols * esz;
    const char *src = in->data;
    char *dst = out->data;
    for (int64_t m = 0; m < mats; m++) {
        for (int64_t i = 0; i < rows; i++, src += row, dst += row) {
            /* Upper keeps columns j >= i + k; lower keeps j <= i + k. */
            int64_t b = upper ? i + k : 0, e = upper ? cols : i + k + 1;
            b = b < 0 ? 0 : b > cols ? cols : b;
            e = e < b ? b : e > cols ? cols : e;
            size_t bb = (size_t)b * esz, eb = (size_t)e * esz;
            if (bb) memset(dst, 0, bb);
            if (eb > bb) memcpy(dst + bb, src + bb, eb - bb);
            if (row > eb) memset(dst + eb, 0, row - eb);
        }
    }
    return NULL;
}

/* --- CumSum --------------------------------------------------------------------------------- */

static bool cumsum_type(ferry_dtype dt)
{
    return core_dtype_is_float(dt) || dt == FERRY_DTYPE_INT32 || dt == FERRY_DTYPE_INT64 ||
           dt == FERRY_DTYPE_UINT32 || dt == FERRY_DTYPE_UINT64;
}

static ferry_status *cumsum_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 2, true);
    if (io) return io;
    const eng_tensor *in = call->in[0], *axis = call->in[1];
    if (!cumsum_type(in->dtype)) return eng_bad_dtype("input", in->dtype);
    if ((axis->dtype != FERRY_DTYPE_INT64 && axis->dtype != FERRY_DTYPE_INT32) ||
        eng_numel(axis) != 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "axis must be a single int64 value");
    if (in->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the input must have rank 1 or more");
    eng_same_shape(call->out[0], in);
    return NULL;
}

/* The output is its own accumulator: each row adds the input to the previous output row
 * (inclusive) or the previous output and input rows (exclusive), in the element type as numpy
 * does. Integers add as unsigned so that overflow wraps instead of being undefined. */
#define CUMSUM(T, A, LOAD, STORE)                                                                  \
    do {                                                                                           \
        const T *x = in->data;                                                                     \
        T *y = out->data;                                                                          \
        for (int64_t o = 0; o < outer; o++) {                                                      \
            for (int64_t t = 0; t < n; t++) {                                                      \
                int64_t i = reverse ? n - 1 - t : t, p = reverse ? i + 1 : i - 1;                  \
                T *yr = y + (o * n + i) * inner;                                                   \
                const T *xr = x + (o * n + i) * inner;                                             \
                const T *yp = y + (o * n + p) * inner, *xp = x + (o * n + p) * inner;              \
                if (t == 0 && exclusive) {                                                         \
                    for (int64_t j = 0; j < inner; j++) yr[j] = STORE((A)0);                       \
                } else if (t == 0) {                                                               \
                    for (int64_t j = 0; j < inner; j++) yr[j] = xr[j];                             \
                } else if (exclusive) {                                                            \
                    for (int64_t j = 0; j < inner; j++)                                            \
                        yr[j] = STORE((A)LOAD(yp[j]) + (A)LOAD(xp[j]));                            \
                } else {                                                                           \
                    for (int64_t j = 0; j < inner; j++)                                            \
                        yr[j] = STORE((A)LOAD(yp[j]) + (A)LOAD(xr[j]));                            \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define SAME(x)    (x)
#define HALF(x)    core_half_to_float(x)
#define TO_HALF(x) core_float_to_half(x)
#define BF16(x)    core_bf16_to_float(x)
#define TO_BF16(x) core_float_to_bf16(x)
#define TO_I32(x)  ((int32_t)(x))
#define TO_I64(x)  ((int64_t)(x))
#define TO_U32(x)  ((uint32_t)(x))
#define SIGNED(x)  ((int64_t)(x))

static ferry_status *cumsum_run(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    int64_t a = 0;
    ferry_status *st = read_scalar_int("axis", call->in[1], &a);
    if (st) return st;
    int axis = 0;
    if ((st = eng_axis(a, in->rank, &axis))) return st;
    bool exclusive = eng_attr_int(call->node, "exclusive", 0) != 0;
    bool reverse = eng_attr_int(call->node, "reverse", 0) != 0;
    int64_t outer = prod(in->dims, 0, axis), n = in->dims[axis];
    int64_t inner = prod(in->dims, axis + 1, in->rank);
    switch (in->dtype) {
    case FERRY_DTYPE_FLOAT:
        CUMSUM(float, float, SAME, SAME);
        break;
    case FERRY_DTYPE_DOUBLE:
        CUMSUM(double, double, SAME, SAME);
        break;
    case FERRY_DTYPE_FLOAT16:
        CUMSUM(uint16_t, float, HALF, TO_HALF);
        break;
    case FERRY_DTYPE_BFLOAT16:
        CUMSUM(uint16_t, float, BF16, TO_BF16);
        break;
    case FERRY_DTYPE_INT32:
        CUMSUM(int32_t, uint64_t, SIGNED, TO_I32);
        break;
    case FERRY_DTYPE_INT64:
        CUMSUM(int64_t, uint64_t, SAME, TO_I64);
        break;
    case FERRY_DTYPE_UINT32:
        CUMSUM(uint32_t, uint64_t, SAME, TO_U32);
        break;
    case FERRY_DTYPE_UINT64:
        CUMSUM(uint64_t, uint64_t, SAME, SAME);
        break;
    default:
        break;
    }
    return NULL;
}

/* --- Tile ----------------------------------------------------------------------------------- */

/* The repeat count of every dim: input 1 (a list, or Tile-1's single count with input 2
 * naming its axis). */
static ferry_status *tile_repeats(const eng_op_call *call, int64_t *reps)
{
    const eng_tensor *in = call->in[0];
    ferry_status *st;
    for (int d = 0; d < in->rank; d++) reps[d] = 1;
    if (call->opset < 6) {
        if (call->n_in < 3 || !call->in[1] || !call->in[2])
            return core_error(FERRY_ERR_INVALID_MODEL, "Tile-1 needs tiles and axis inputs");
        int64_t tiles = 0, a = 0;
        int axis = 0;
        if ((st = read_scalar_int("tiles", call->in[1], &tiles))) return st;
        if ((st = read_scalar_int("axis", call->in[2], &a))) return st;
        if ((st = eng_axis(a, in->rank, &axis))) return st;
        reps[axis] = tiles;
    } else {
        const eng_tensor *t = call->in[1];
        size_t n = 0;
        if (t->rank != 1 || t->dims[0] != in->rank)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "repeats must be a 1-D tensor of %d values (the input's rank)",
                              in->rank);
        if ((st = eng_read_ints(t, reps, R, &n))) return st;
    }
    for (int d = 0; d < in->rank; d++) {
        if (reps[d] < 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "repeat count %lld is negative",
                              (long long)reps[d]);
        if (in->dims[d] && reps[d] > MAX_ELEMENTS / in->dims[d])
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "repeating dim %d %lld times makes too many elements", d,
                              (long long)reps[d]);
    }
    return NULL;
}

static ferry_status *tile_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 2, true);
    if (io) return io;
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("input", in);
    if (st) return st;
    int64_t reps[R];
    if ((st = tile_repeats(call, reps))) return st;
    eng_tensor *out = call->out[0];
    eng_same_shape(out, in);
    for (int d = 0; d < in->rank; d++) out->dims[d] = in->dims[d] * reps[d];
    return NULL;
}

typedef struct tile_ctx {
    int rank;
    const int64_t *dims, *reps;
    size_t in_stride[R], out_stride[R]; /* bytes per step of each dim */
} tile_ctx;

/* Writes the output block of dim D whose first element is DST, from the input block at SRC:
 * first its first repetition (recursively), then copies of that. */
static void tile_block(const tile_ctx *c, int d, char *dst, const char *src)
{
    size_t block = (size_t)c->dims[d] * c->out_stride[d];
    if (d == c->rank - 1) {
        memcpy(dst, src, block);
    } else {
        for (int64_t i = 0; i < c->dims[d]; i++)
            tile_block(c, d + 1, dst + (size_t)i * c->out_stride[d],
                       src + (size_t)i * c->in_stride[d]);
    }
    /* Doubling the copied span halves the number of memcpy calls. */
    size_t total = block * (size_t)c->reps[d], done = block;
    while (done < total) {
        size_t n = done < total - done ? done : total - done;
        memcpy(dst + done, dst, n);
        done += n;
    }
}

static ferry_status *tile_run(eng_op_call *call)
{
    const eng_tensor *in = call->in[0];
    eng_tensor *out = call->out[0];
    size_t esz = ferry_dtype_size(in->dtype);
    if (eng_numel(out) == 0) return NULL;
    if (in->rank == 0) {
        memcpy(out->data, in->data, esz);
        return NULL;
    }
    int64_t reps[R];
    ferry_status *st = tile_repeats(call, reps);
    if (st) return st;
    tile_ctx c = {.rank = in->rank, .dims = in->dims, .reps = reps};
    size_t si = esz, so = esz;
    for (int d = in->rank - 1; d >= 0; d--) {
        c.in_stride[d] = si;
        c.out_stride[d] = so;
        si *= (size_t)in->dims[d];
        so *= (size_t)out->dims[d];
    }
    tile_block(&c, 0, out->data, in->data);
    return NULL;
}

/* --- DepthToSpace and SpaceToDepth ---------------------------------------------------------- */

typedef struct block_state {
    int64_t blocksize;
    bool crd;   /* DepthToSpace mode CRD (else DCR) */
    bool depth; /* DepthToSpace (else SpaceToDepth) */
} block_state;

static ferry_status *block_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    if (!eng_attr_has(node, "blocksize"))
        return core_error(FERRY_ERR_INVALID_MODEL, "missing required attribute 'blocksize'");
    int64_t b = eng_attr_int(node, "blocksize", 0);
    if (b < 1 || b > ((int64_t)1 << 20))
        return core_error(FERRY_ERR_INVALID_MODEL, "blocksize %lld is out of range", (long long)b);
    const char *mode = eng_attr_string(node, "mode", "DCR");
    if (strcmp(mode, "DCR") && strcmp(mode, "CRD"))
        return core_error(FERRY_ERR_INVALID_MODEL, "unknown mode '%s'", mode);
    ferry_status *st = alloc_state(sizeof(block_state), state);
    if (st) return st;
    block_state *s = *state;
    s->blocksize = b;
    s->crd = !strcmp(mode, "CRD");
    s->depth = !strcmp(eng_node_op_type(node), "DepthToSpace");
    return NULL;
}

/* The input seen as a 6-D tensor (VIEW dims) and the order in which the output walks it. */
static void block_view(const block_state *s, const eng_tensor *in, int64_t *view, const int **perm)
{
    static const int dcr[6] = {0, 3, 4, 1, 5, 2}, crd[6] = {0, 1, 4, 2, 5, 3};
    static const int s2d[6] = {0, 3, 5, 1, 2, 4};
    int64_t b = s->blocksize, n = in->dims[0], c = in->dims[1], h = in->dims[2], w = in->dims[3];
    if (!s->depth) { /* [N, C, H/b, b, W/b, b] -> [N, b, b, C, H/b, W/b] */
        int64_t v[6] = {n, c, h / b, b, w / b, b};
        memcpy(view, v, sizeof(v));
        *perm = s2d;
    } else if (s->crd) { /* [N, C/b², b, b, H, W] -> [N, C/b², H, b, W, b] */
        int64_t v[6] = {n, c / (b * b), b, b, h, w};
        memcpy(view, v, sizeof(v));
        *perm = crd;
    } else { /* [N, b, b, C/b², H, W] -> [N, C/b², H, b, W, b] */
        int64_t v[6] = {n, b, b, c / (b * b), h, w};
        memcpy(view, v, sizeof(v));
        *perm = dcr;
    }
}

static ferry_status *block_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 1, true);
    if (io) return io;
    const block_state *s = call->state;
    const eng_tensor *in = call->in[0];
    ferry_status *st = need_flat("input", in);
    if (st) return st;
    char buf[160];
    int64_t b = s->blocksize;
    if (in->rank != 4)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the input must be 4-D, got %s",
                          eng_shape_str(in, buf, sizeof(buf)));
    eng_tensor *out = call->out[0];
    eng_same_shape(out, in);
    if (s->depth) {
        if (in->dims[1] % (b * b))
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "the channels of %s are not a multiple of blocksize² (%lld)",
                              eng_shape_str(in, buf, sizeof(buf)), (long long)(b * b));
        out->dims[1] = in->dims[1] / (b * b);
        out->dims[2] = in->dims[2] * b;
        out->dims[3] = in->dims[3] * b;
    } else {
        if (in->dims[2] % b || in->dims[3] % b)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "height and width of %s are not multiples of blocksize %lld",
                              eng_shape_str(in, buf, sizeof(buf)), (long long)b);
        out->dims[1] = in->dims[1] * b * b;
        out->dims[2] = in->dims[2] / b;
        out->dims[3] = in->dims[3] / b;
    }
    return NULL;
}

static ferry_status *block_run(eng_op_call *call)
{
    const block_state *s = call->state;
    const eng_tensor *in = call->in[0];
    if (eng_numel(in) == 0) return NULL;
    int64_t view[6], vstr[6], dims[6], st[6], stride = 1;
    const int *perm;
    block_view(s, in, view, &perm);
    for (int i = 5; i >= 0; i--) {
        vstr[i] = stride;
        stride *= view[i];
    }
    for (int i = 0; i < 6; i++) {
        dims[i] = view[perm[i]];
        st[i] = vstr[perm[i]];
    }
    eng_copy_strided(call->out[0]->data, in->data, ferry_dtype_size(in->dtype), 6, dims, st);
    return NULL;
}

/* --- ReverseSequence ------------------------------------------------------------------------ */

typedef struct reverse_state {
    int batch_axis, time_axis;
} reverse_state;

static ferry_status *reverse_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    int64_t b = eng_attr_int(node, "batch_axis", 1), t = eng_attr_int(node, "time_axis", 0);
    if ((b != 0 && b != 1) || (t != 0 && t != 1) || b == t)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "batch_axis (%lld) and time_axis (%lld) must be 0 and 1 in some order",
                          (long long)b, (long long)t);
    ferry_status *st = alloc_state(sizeof(reverse_state), state);
    if (st) return st;
    reverse_state *s = *state;
    s->batch_axis = (int)b;
    s->time_axis = (int)t;
    return NULL;
}

static ferry_status *reverse_infer(eng_op_call *call)
{
    ferry_status *io = need_io(call, 2, true);
    if (io) return io;
    const reverse_state *s = call->state;
    const eng_tensor *in = call->in[0], *lens = call->in[1];
    ferry_status *st = need_flat("input", in);
    if (st) return st;
    if (in->rank < 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the input must have rank 2 or more");
    if ((lens->dtype != FERRY_DTYPE_INT64 && lens->dtype != FERRY_DTYPE_INT32) || lens->rank != 1 ||
        lens->dims[0] != in->dims[s->batch_axis])
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "sequence_lens must be an int64 vector of the batch size %lld",
                          (long long)in->dims[s->batch_axis]);
    eng_same_shape(call->out[0], in);
    return NULL;
}

static ferry_status *reverse_run(eng_op_call *call)
{
    const reverse_state *s = call->state;
    const eng_tensor *in = call->in[0], *lens = call->in[1];
    int64_t batch = in->dims[s->batch_axis], steps = in->dims[s->time_axis];
    size_t esz = ferry_dtype_size(in->dtype);
    size_t chunk = (size_t)prod(in->dims, 2, in->rank) * esz;
    /* Chunk offsets of (time t, batch b) for either axis order. */
    int64_t ts = s->time_axis == 0 ? batch : 1, bs = s->time_axis == 0 ? 1 : steps;
    const char *src = in->data;
    char *dst = call->out[0]->data;
    for (int64_t b = 0; b < batch; b++) {
        int64_t len = core_load_i64(lens->dtype, lens->data, b);
        if (len < 0 || len > steps)
            return core_error(FERRY_ERR_RUNTIME,
                              "sequence length %lld is out of range for %lld time steps",
                              (long long)len, (long long)steps);
        if (!chunk) continue;
        for (int64_t t = 0; t < steps; t++) {
            int64_t from = t < len ? len - 1 - t : t;
            memcpy(dst + (size_t)(t * ts + b * bs) * chunk,
                   src + (size_t)(from * ts + b * bs) * chunk, chunk);
        }
    }
    return NULL;
}

static const eng_op ops[] = {
    {"", "Range", 11, 7u, NULL, NULL, range_infer, range_run},
    {"", "EyeLike", 9, 0, eye_like_init, NULL, eye_like_infer, eye_like_run},
    {"", "Size", 1, 0, NULL, NULL, size_infer, size_run},
    {"", "Trilu", 14, 0, NULL, NULL, trilu_infer, trilu_run},
    {"", "CumSum", 11, 0, NULL, NULL, cumsum_infer, cumsum_run},
    {"", "Tile", 1, (1u << 1) | (1u << 2), NULL, NULL, tile_infer, tile_run},
    {"", "Tile", 6, 1u << 1, NULL, NULL, tile_infer, tile_run},
    {"", "DepthToSpace", 1, 0, block_init, free, block_infer, block_run},
    {"", "SpaceToDepth", 1, 0, block_init, free, block_infer, block_run},
    {"", "ReverseSequence", 10, 0, reverse_init, free, reverse_infer, reverse_run},
};

const eng_op_table eng_ops_index_arrange = {ops, sizeof(ops) / sizeof(ops[0])};
