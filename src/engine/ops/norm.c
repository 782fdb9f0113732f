/* norm.c - BatchNormalization, LayerNormalization, Softmax and LogSoftmax.
 *
 * Each has a float32 fast path; float64, float16 and bfloat16 go through a generic path that
 * reads and writes elements with core_load_f64/core_store_f64 and computes in double. The
 * statistics (means, variances, normalisation coefficients) are always accumulated in double:
 * they are few and this keeps long reductions accurate. Large float32 LayerNormalization and
 * last-axis Softmax calls split their rows across the context's threads.
 */
#include "engine/op.h"

#include "engine/kernels/parallel.h"
#include "engine/kernels/simd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

KERN_FAST_LOOPS

/* Rows are split across threads only when there are at least this many elements: below,
 * waking the pool costs more than it saves. */
#define PARALLEL_MIN_ELEMS 32768

/* Rows per task: a few tasks per thread, so that uneven progress balances. */
static int64_t rows_per_task(int64_t rows, core_threadpool *pool)
{
    int64_t tasks = 4 * (int64_t)kern_slots(pool);
    return (rows + tasks - 1) / tasks;
}

static const eng_tensor *input(const eng_op_call *call, int i)
{
    return i < call->n_in ? call->in[i] : NULL;
}

static eng_tensor *output(const eng_op_call *call, int i)
{
    return i < call->n_out ? call->out[i] : NULL;
}

static bool is_real(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_FLOAT16 ||
           dt == FERRY_DTYPE_BFLOAT16;
}

static int64_t prod(const int64_t *dims, int from, int to)
{
    int64_t n = 1;
    for (int i = from; i < to; i++) n *= dims[i];
    return n;
}

static void *alloc_state(const void *src, size_t size)
{
    void *p = malloc(size);
    if (p) memcpy(p, src, size);
    return p;
}

static void free_state(void *state)
{
    free(state);
}

/* ---------------------------------------------------------------------------------------
 * BatchNormalization
 *
 * X is viewed as [N, P, inner]: P = C and inner = the spatial size normally; with spatial = 0
 * (opsets 1 to 8) every (channel, position) has its own statistics, so P = C * spatial size
 * and inner = 1. Inference uses the given mean and variance; training mode (opset 14's
 * training_mode = 1, or the extra outputs of older opsets) normalises with the batch's own
 * statistics and outputs running averages updated with momentum.
 * ------------------------------------------------------------------------------------- */

typedef struct bn_attrs {
    double epsilon, momentum;
    bool spatial;
    bool training_attr; /* opset >= 14: training_mode; earlier: is_test == 0 */
    int opset;
} bn_attrs;

static ferry_status *bn_init(const eng_node *node, int opset, void **state)
{
    bn_attrs a = {0};
    a.opset = opset;
    a.epsilon = eng_attr_float(node, "epsilon", 1e-5f);
    a.momentum = eng_attr_float(node, "momentum", 0.9f);
    if (!(a.epsilon >= 0))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute epsilon must not be negative");
    int64_t spatial = opset < 9 ? eng_attr_int(node, "spatial", 1) : 1;
    if (spatial != 0 && spatial != 1)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute spatial must be 0 or 1, got %lld",
                          (long long)spatial);
    a.spatial = spatial == 1;
    if (opset >= 14) {
        int64_t t = eng_attr_int(node, "training_mode", 0);
        if (t != 0 && t != 1)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute training_mode must be 0 or 1, got %lld", (long long)t);
        a.training_attr = t == 1;
    } else if (opset < 7) {
        a.training_attr = eng_attr_int(node, "is_test", 0) == 0;
    }
    void *s = alloc_state(&a, sizeof(a));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *state = s;
    return NULL;
}

static bool bn_extra_outputs(const eng_op_call *call)
{
    for (int i = 1; i < call->n_out; i++)
        if (call->out[i]) return true;
    return false;
}

/* Whether this call normalises with batch statistics. Before opset 14 only a node asking for
 * the statistics outputs trains: models exported for inference often leave is_test at its
 * default 0 while wanting inference. */
static bool bn_training(const eng_op_call *call)
{
    const bn_attrs *a = call->state;
    if (a->opset >= 14) return a->training_attr;
    if (a->opset < 7 && !a->training_attr) return false;
    return bn_extra_outputs(call);
}

typedef struct bn_geom {
    int64_t n, p, inner;
} bn_geom;

static ferry_status *bn_check(const eng_op_call *call, bn_geom *g)
{
    const bn_attrs *a = call->state;
    const eng_tensor *x = input(call, 0);
    static const char *const names[] = {"X", "scale", "B", "input_mean", "input_var"};
    for (int i = 0; i < 5; i++) {
        const eng_tensor *t = input(call, i);
        if (!t)
            return core_error(FERRY_ERR_INVALID_MODEL, "input %s is required", names[i]);
        if (!is_real(t->dtype)) {
            char what[32];
            snprintf(what, sizeof(what), "input %s", names[i]);
            return eng_bad_dtype(what, t->dtype);
        }
    }
    if (x->rank < 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X: expected at least 2 dims (batch, channels, ...), got %d",
                          x->rank);
    g->n = x->dims[0];
    int64_t spatial_size = prod(x->dims, 2, x->rank);
    g->p = a->spatial ? x->dims[1] : x->dims[1] * spatial_size;
    g->inner = a->spatial ? spatial_size : 1;
    for (int i = 1; i < 5; i++) {
        const eng_tensor *t = input(call, i);
        if (eng_numel(t) != g->p || (a->spatial && t->rank != 1)) {
            char s1[128];
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input %s: expected %lld values (one per %s), got shape %s",
                              names[i], (long long)g->p,
                              a->spatial ? "channel" : "channel and position",
                              eng_shape_str(t, s1, sizeof(s1)));
        }
    }
    return NULL;
}

static ferry_status *bn_infer(eng_op_call *call)
{
    bn_geom g;
    ferry_status *st = bn_check(call, &g);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    eng_same_shape(call->out[0], x);
    for (int i = 1; i < call->n_out && i < 5; i++) {
        eng_tensor *o = call->out[i];
        if (!o) continue;
        eng_same_shape(o, input(call, i % 2 ? 3 : 4)); /* means, then variances */
    }
    /* Coefficients a, b and batch mean and variance, in double. */
    call->workspace_size = (size_t)g.p * 4 * sizeof(double);
    return NULL;
}

/* Batch mean and (population) variance per P, accumulated in double. */
static void bn_batch_stats(const eng_tensor *x, const bn_geom *g, double *mean, double *var)
{
    double count = (double)(g->n * g->inner);
    for (int64_t p = 0; p < g->p; p++) {
        double s = 0.0;
        for (int64_t n = 0; n < g->n; n++) {
            int64_t base = (n * g->p + p) * g->inner;
            if (x->dtype == FERRY_DTYPE_FLOAT) {
                const float *xs = (const float *)x->data + base;
                for (int64_t i = 0; i < g->inner; i++) s += xs[i];
            } else {
                for (int64_t i = 0; i < g->inner; i++)
                    s += core_load_f64(x->dtype, x->data, base + i);
            }
        }
        double mu = count > 0 ? s / count : 0.0, v = 0.0;
        for (int64_t n = 0; n < g->n; n++) {
            int64_t base = (n * g->p + p) * g->inner;
            for (int64_t i = 0; i < g->inner; i++) {
                double d = core_load_f64(x->dtype, x->data, base + i) - mu;
                v += d * d;
            }
        }
        mean[p] = mu;
        var[p] = count > 0 ? v / count : 0.0;
    }
}

/* Y = X * a[p] + b[p] over [N, P, inner]. */
KERN_CLONES static void bn_apply_f32(const float *restrict xs, float *restrict ys, const bn_geom *g,
                                     const double *ca, const double *cb)
{
    for (int64_t n = 0; n < g->n; n++) {
        for (int64_t p = 0; p < g->p; p++) {
            int64_t base = (n * g->p + p) * g->inner;
            float fa = (float)ca[p], fb = (float)cb[p];
            for (int64_t i = 0; i < g->inner; i++) ys[base + i] = xs[base + i] * fa + fb;
        }
    }
}

static ferry_status *bn_run(eng_op_call *call)
{
    const bn_attrs *a = call->state;
    bn_geom g;
    ferry_status *st = bn_check(call, &g);
    if (st) return st;
    const eng_tensor *x = call->in[0], *scale = call->in[1], *bias = call->in[2];
    const eng_tensor *in_mean = call->in[3], *in_var = call->in[4];
    eng_tensor *y = call->out[0];
    double *ca = call->workspace, *cb = ca + g.p, *mean = cb + g.p, *var = mean + g.p;
    bool training = bn_training(call);
    if (training) {
        bn_batch_stats(x, &g, mean, var);
    } else {
        for (int64_t p = 0; p < g.p; p++) {
            mean[p] = core_load_f64(in_mean->dtype, in_mean->data, p);
            var[p] = core_load_f64(in_var->dtype, in_var->data, p);
        }
    }
    for (int64_t p = 0; p < g.p; p++) {
        ca[p] = core_load_f64(scale->dtype, scale->data, p) / sqrt(var[p] + a->epsilon);
        cb[p] = core_load_f64(bias->dtype, bias->data, p) - mean[p] * ca[p];
    }
    if (x->dtype == FERRY_DTYPE_FLOAT) {
        bn_apply_f32(x->data, y->data, &g, ca, cb);
    } else {
        for (int64_t n = 0; n < g.n; n++) {
            for (int64_t p = 0; p < g.p; p++) {
                int64_t base = (n * g.p + p) * g.inner;
                for (int64_t i = 0; i < g.inner; i++)
                    core_store_f64(y->dtype, y->data, base + i,
                                   core_load_f64(x->dtype, x->data, base + i) * ca[p] + cb[p]);
            }
        }
    }
    /* Optional statistics outputs: running mean and variance (opset 14: outputs 1, 2; older:
     * 1, 2 and the batch's own saved_mean, saved_var as 3, 4). */
    for (int i = 1; i < call->n_out && i < 5; i++) {
        eng_tensor *o = call->out[i];
        if (!o) continue;
        const eng_tensor *running = i == 1 || i == 3 ? in_mean : in_var;
        const double *batch = i == 1 || i == 3 ? mean : var;
        for (int64_t p = 0; p < g.p; p++) {
            double r = core_load_f64(running->dtype, running->data, p), v;
            if (!training)
                v = r;
            else if (i <= 2)
                v = r * a->momentum + batch[p] * (1.0 - a->momentum);
            else
                v = batch[p];
            core_store_f64(o->dtype, o->data, p, v);
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * LayerNormalization (opset 17): normalise over the axes from `axis` to the last.
 * ------------------------------------------------------------------------------------- */

typedef struct ln_attrs {
    int64_t axis;
    double epsilon;
    ferry_dtype stash;
} ln_attrs;

static ferry_status *ln_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    ln_attrs a;
    a.axis = eng_attr_int(node, "axis", -1);
    a.epsilon = eng_attr_float(node, "epsilon", 1e-5f);
    int64_t stash = eng_attr_int(node, "stash_type", FERRY_DTYPE_FLOAT);
    if (stash != FERRY_DTYPE_FLOAT && stash != FERRY_DTYPE_DOUBLE)
        return core_error(FERRY_ERR_UNSUPPORTED, "attribute stash_type %lld is not supported",
                          (long long)stash);
    a.stash = (ferry_dtype)stash;
    void *s = alloc_state(&a, sizeof(a));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *state = s;
    return NULL;
}

typedef struct ln_geom {
    int axis;
    int64_t outer, inner;
} ln_geom;

/* Scale and B must broadcast to X while varying only over the normalised axes. */
static ferry_status *ln_check_param(const eng_tensor *t, const char *name, const eng_tensor *x,
                                    int axis)
{
    bool ok = t->rank <= x->rank;
    for (int d = 0; ok && d < t->rank; d++) {
        int xd = x->rank - t->rank + d;
        ok = t->dims[d] == 1 || (t->dims[d] == x->dims[xd] && xd >= axis);
    }
    if (ok) return NULL;
    char s1[128], s2[128];
    return core_error(FERRY_ERR_INVALID_ARGUMENT,
                      "input %s of shape %s does not broadcast to the normalised axes of X %s "
                      "from axis %d",
                      name, eng_shape_str(t, s1, sizeof(s1)), eng_shape_str(x, s2, sizeof(s2)),
                      axis);
}

static ferry_status *ln_check(const eng_op_call *call, ln_geom *g)
{
    const ln_attrs *a = call->state;
    const eng_tensor *x = input(call, 0), *scale = input(call, 1), *b = input(call, 2);
    if (!x || !scale)
        return core_error(FERRY_ERR_INVALID_MODEL, "inputs X and Scale are required");
    if (!is_real(x->dtype)) return eng_bad_dtype("input X", x->dtype);
    if (scale->dtype != x->dtype || (b && b->dtype != x->dtype))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "inputs X, Scale and B must share one type");
    if (x->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input X must have at least 1 dim");
    ferry_status *st = eng_axis(a->axis, x->rank, &g->axis);
    if (st) return st;
    g->outer = prod(x->dims, 0, g->axis);
    g->inner = prod(x->dims, g->axis, x->rank);
    if ((st = ln_check_param(scale, "Scale", x, g->axis))) return st;
    if (b && (st = ln_check_param(b, "B", x, g->axis))) return st;
    return NULL;
}

static size_t ln_param_ws(const eng_tensor *t, const ln_geom *g)
{
    return t && eng_numel(t) != g->inner ? (size_t)g->inner * sizeof(double) : 0;
}

static ferry_status *ln_infer(eng_op_call *call)
{
    const ln_attrs *a = call->state;
    ln_geom g;
    ferry_status *st = ln_check(call, &g);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    eng_same_shape(call->out[0], x);
    for (int i = 1; i < 3; i++) {
        eng_tensor *o = output(call, i);
        if (!o) continue;
        eng_same_shape(o, x);
        for (int d = g.axis; d < o->rank; d++) o->dims[d] = 1;
        o->dtype = a->stash;
    }
    call->workspace_size = ln_param_ws(input(call, 1), &g) + ln_param_ws(input(call, 2), &g);
    return NULL;
}

/* Scale or B as INNER doubles: broadcast copies of the parameter's elements. */
static void ln_expand(const eng_tensor *t, const eng_tensor *x, int axis, double *dst)
{
    int n = x->rank - axis;
    int64_t idx[FERRY_MAX_RANK] = {0};
    int64_t inner = prod(x->dims, axis, x->rank);
    for (int64_t i = 0; i < inner; i++) {
        int64_t off = 0;
        for (int d = 0; d < t->rank; d++) {
            int xd = n - t->rank + d; /* position among the normalised axes */
            int64_t c = xd >= 0 && t->dims[d] != 1 ? idx[xd] : 0;
            off = off * t->dims[d] + c;
        }
        dst[i] = core_load_f64(t->dtype, t->data, off);
        for (int d = n - 1; d >= 0; d--) {
            if (++idx[d] < x->dims[axis + d]) break;
            idx[d] = 0;
        }
    }
}

/* One float32 row: mean and variance in double (eight partial sums, so they vectorise), then
 * Y = (X - mean) * inv * scale + B. */
KERN_CLONES static void ln_row_f32(const float *restrict xr, float *restrict yr,
                                   const float *restrict sc, const float *restrict bs,
                                   int64_t n, double eps, double *mean_out, double *inv_out)
{
    double part[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int q = 0; q < 8; q++) part[q] += xr[i + q];
    for (; i < n; i++) part[0] += xr[i];
    double s = 0.0;
    for (int q = 0; q < 8; q++) s += part[q];
    double mean = n ? s / (double)n : 0.0;
    float fm = (float)mean;
    for (int q = 0; q < 8; q++) part[q] = 0.0;
    for (i = 0; i + 8 <= n; i += 8) {
        for (int q = 0; q < 8; q++) {
            double d = xr[i + q] - fm;
            part[q] += d * d;
        }
    }
    for (; i < n; i++) {
        double d = xr[i] - fm;
        part[0] += d * d;
    }
    double v = 0.0;
    for (int q = 0; q < 8; q++) v += part[q];
    double inv = 1.0 / sqrt((n ? v / (double)n : 0.0) + eps);
    float fi = (float)inv;
    if (bs)
        for (i = 0; i < n; i++) yr[i] = (xr[i] - fm) * fi * sc[i] + bs[i];
    else
        for (i = 0; i < n; i++) yr[i] = (xr[i] - fm) * fi * sc[i];
    *mean_out = mean;
    *inv_out = inv;
}

/* What the row tasks of a float32 LayerNormalization share. */
typedef struct ln_ctx {
    const ln_geom *g;
    const float *x, *scale, *b;
    float *y;
    eng_tensor *mean, *inv; /* optional outputs */
    double eps;
    int64_t rows; /* rows per task */
} ln_ctx;

static void ln_rows(void *arg, int64_t task, int slot)
{
    (void)slot;
    const ln_ctx *c = arg;
    int64_t inner = c->g->inner, end = task * c->rows + c->rows;
    if (end > c->g->outer) end = c->g->outer;
    for (int64_t o = task * c->rows; o < end; o++) {
        double mean, inv;
        ln_row_f32(c->x + o * inner, c->y + o * inner, c->scale, c->b, inner, c->eps, &mean,
                   &inv);
        if (c->mean) core_store_f64(c->mean->dtype, c->mean->data, o, mean);
        if (c->inv) core_store_f64(c->inv->dtype, c->inv->data, o, inv);
    }
}

static ferry_status *ln_run(eng_op_call *call)
{
    const ln_attrs *a = call->state;
    ln_geom g;
    ferry_status *st = ln_check(call, &g);
    if (st) return st;
    const eng_tensor *x = call->in[0], *scale = call->in[1], *b = input(call, 2);
    eng_tensor *y = call->out[0], *mean_out = output(call, 1), *inv_out = output(call, 2);
    /* Parameters that are not already one value per normalised element are expanded. */
    double *ws = call->workspace;
    double *sx = NULL, *bx = NULL;
    if (ln_param_ws(scale, &g)) {
        sx = ws;
        ws += g.inner;
        ln_expand(scale, x, g.axis, sx);
    }
    if (ln_param_ws(b, &g)) {
        bx = ws;
        ln_expand(b, x, g.axis, bx);
    }
    bool fast = x->dtype == FERRY_DTYPE_FLOAT && !sx && !bx;
    if (fast && g.outer > 1 && g.outer * g.inner >= PARALLEL_MIN_ELEMS) {
        ln_ctx c = {.g = &g, .x = x->data, .y = y->data, .scale = scale->data,
                    .b = b ? b->data : NULL, .mean = mean_out, .inv = inv_out,
                    .eps = a->epsilon, .rows = rows_per_task(g.outer, call->threads)};
        kern_parallel(call->threads, (g.outer + c.rows - 1) / c.rows, ln_rows, &c);
        return NULL;
    }
    for (int64_t o = 0; o < g.outer; o++) {
        int64_t base = o * g.inner;
        double mean, inv;
        if (fast) {
            ln_row_f32((const float *)x->data + base, (float *)y->data + base, scale->data,
                       b ? b->data : NULL, g.inner, a->epsilon, &mean, &inv);
        } else {
            double s = 0.0, v = 0.0;
            for (int64_t i = 0; i < g.inner; i++) s += core_load_f64(x->dtype, x->data, base + i);
            mean = g.inner ? s / (double)g.inner : 0.0;
            for (int64_t i = 0; i < g.inner; i++) {
                double d = core_load_f64(x->dtype, x->data, base + i) - mean;
                v += d * d;
            }
            inv = 1.0 / sqrt((g.inner ? v / (double)g.inner : 0.0) + a->epsilon);
            for (int64_t i = 0; i < g.inner; i++) {
                double sv = sx ? sx[i] : core_load_f64(scale->dtype, scale->data, i);
                double bv = bx ? bx[i] : b ? core_load_f64(b->dtype, b->data, i) : 0.0;
                double xv = core_load_f64(x->dtype, x->data, base + i);
                core_store_f64(y->dtype, y->data, base + i, (xv - mean) * inv * sv + bv);
            }
        }
        if (mean_out) core_store_f64(mean_out->dtype, mean_out->data, o, mean);
        if (inv_out) core_store_f64(inv_out->dtype, inv_out->data, o, inv);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Softmax and LogSoftmax. Opsets before 13 flatten the input to 2-D at `axis` (default 1) and
 * normalise each row; opset 13 normalises along the single axis `axis` (default -1).
 * X is viewed as [outer, n, inner] with the normalisation along n.
 * ------------------------------------------------------------------------------------- */

typedef struct sm_attrs {
    int64_t axis;
    bool flatten; /* opset < 13 */
    bool log;
} sm_attrs;

static ferry_status *sm_init_common(const eng_node *node, int opset, bool log, void **state)
{
    sm_attrs a;
    a.flatten = opset < 13;
    a.axis = eng_attr_int(node, "axis", a.flatten ? 1 : -1);
    a.log = log;
    void *s = alloc_state(&a, sizeof(a));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *state = s;
    return NULL;
}

static ferry_status *softmax_init(const eng_node *node, int opset, void **state)
{
    return sm_init_common(node, opset, false, state);
}

static ferry_status *logsoftmax_init(const eng_node *node, int opset, void **state)
{
    return sm_init_common(node, opset, true, state);
}

typedef struct sm_geom {
    int64_t outer, n, inner;
} sm_geom;

static ferry_status *sm_check(const eng_op_call *call, sm_geom *g)
{
    const sm_attrs *a = call->state;
    const eng_tensor *x = input(call, 0);
    if (!x) return core_error(FERRY_ERR_INVALID_MODEL, "input is required");
    if (!is_real(x->dtype)) return eng_bad_dtype("input", x->dtype);
    if (x->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the input must have at least 1 dim");
    int axis;
    ferry_status *st = eng_axis(a->axis, x->rank, &axis);
    if (st) return st;
    g->outer = prod(x->dims, 0, axis);
    if (a->flatten) {
        g->n = prod(x->dims, axis, x->rank);
        g->inner = 1;
    } else {
        g->n = x->dims[axis];
        g->inner = prod(x->dims, axis + 1, x->rank);
    }
    return NULL;
}

static ferry_status *sm_infer(eng_op_call *call)
{
    sm_geom g = {0};
    ferry_status *st = sm_check(call, &g);
    if (st) return st;
    eng_same_shape(call->out[0], call->in[0]);
    /* Running maxima and sums across the inner positions. */
    if (g.inner > 1) call->workspace_size = (size_t)g.inner * 2 * sizeof(float);
    return NULL;
}

/* e^x in float32 without a library call, so that loops over it vectorise: x = n ln2 + r with
 * |r| <= ln2 / 2, e^r from Cephes' degree-6 polynomial (about 1 ulp), 2^n built in the
 * exponent bits. Underflows to 0 below -87.3 and keeps NaN. */
static KERN_INLINE float exp_f32(float x)
{
    float xc = x < -87.3f ? -87.3f : x > 88.7f ? 88.7f : x;
    /* Round to nearest with the 1.5 * 2^23 trick: a vectorisable rint. */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    float e = p * scale;
    e = x < -87.3f ? 0.0f : e;
    return x != x ? x : e;
}

/* Max and sum of a row with eight partial results, which vectorise. */
static KERN_INLINE float row_max_f32(const float *restrict x, int64_t n)
{
    float part[8];
    for (int q = 0; q < 8; q++) part[q] = -INFINITY;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int q = 0; q < 8; q++) part[q] = x[j + q] > part[q] ? x[j + q] : part[q];
    for (; j < n; j++) part[0] = x[j] > part[0] ? x[j] : part[0];
    float m = part[0];
    for (int q = 1; q < 8; q++) m = part[q] > m ? part[q] : m;
    return m;
}

static KERN_INLINE float row_sum_f32(const float *restrict x, int64_t n)
{
    float part[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int q = 0; q < 8; q++) part[q] += x[j + q];
    for (; j < n; j++) part[0] += x[j];
    return ((part[0] + part[1]) + (part[2] + part[3])) +
           ((part[4] + part[5]) + (part[6] + part[7]));
}

/* One contiguous row of float32 (the usual last-axis softmax). */
KERN_CLONES static void softmax_row_f32(const float *restrict x, float *restrict y, int64_t n,
                                        bool take_log)
{
    float mx = row_max_f32(x, n);
    for (int64_t j = 0; j < n; j++) y[j] = exp_f32(x[j] - mx);
    float sum = row_sum_f32(y, n);
    if (take_log) {
        float shift = mx + logf(sum);
        for (int64_t j = 0; j < n; j++) y[j] = x[j] - shift;
    } else {
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < n; j++) y[j] *= inv;
    }
}

/* [n, inner] of float32, normalised along n for every inner position at once; MX and SUM
 * hold INNER floats each. */
KERN_CLONES static void softmax_strided_f32(const float *restrict x, float *restrict y,
                                            int64_t n, int64_t inner, bool take_log,
                                            float *restrict mx, float *restrict sum)
{
    for (int64_t i = 0; i < inner; i++) {
        mx[i] = n ? x[i] : 0.0f;
        sum[i] = 0.0f;
    }
    for (int64_t j = 1; j < n; j++)
        for (int64_t i = 0; i < inner; i++)
            mx[i] = x[j * inner + i] > mx[i] ? x[j * inner + i] : mx[i];
    for (int64_t j = 0; j < n; j++) {
        for (int64_t i = 0; i < inner; i++) {
            float e = exp_f32(x[j * inner + i] - mx[i]);
            y[j * inner + i] = e;
            sum[i] += e;
        }
    }
    if (take_log) {
        for (int64_t i = 0; i < inner; i++) sum[i] = mx[i] + logf(sum[i]);
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < inner; i++) y[j * inner + i] = x[j * inner + i] - sum[i];
    } else {
        for (int64_t i = 0; i < inner; i++) sum[i] = 1.0f / sum[i];
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < inner; i++) y[j * inner + i] *= sum[i];
    }
}

/* Any real type, in double. */
static void softmax_generic(const eng_tensor *xt, eng_tensor *yt, int64_t base, int64_t n,
                            int64_t inner, bool take_log)
{
    ferry_dtype dt = xt->dtype;
    for (int64_t i = 0; i < inner; i++) {
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < n; j++) {
            double v = core_load_f64(dt, xt->data, base + j * inner + i);
            mx = v > mx ? v : mx;
        }
        for (int64_t j = 0; j < n; j++)
            sum += exp(core_load_f64(dt, xt->data, base + j * inner + i) - mx);
        for (int64_t j = 0; j < n; j++) {
            int64_t k = base + j * inner + i;
            double v = core_load_f64(dt, xt->data, k) - mx;
            core_store_f64(dt, yt->data, k, take_log ? v - log(sum) : exp(v) / sum);
        }
    }
}

/* What the row tasks of a last-axis float32 Softmax share. */
typedef struct sm_ctx {
    const float *x;
    float *y;
    int64_t n, outer, rows;
    bool log;
} sm_ctx;

static void sm_rows(void *arg, int64_t task, int slot)
{
    (void)slot;
    const sm_ctx *c = arg;
    int64_t end = task * c->rows + c->rows;
    if (end > c->outer) end = c->outer;
    for (int64_t o = task * c->rows; o < end; o++)
        softmax_row_f32(c->x + o * c->n, c->y + o * c->n, c->n, c->log);
}

static ferry_status *sm_run(eng_op_call *call)
{
    const sm_attrs *a = call->state;
    sm_geom g = {0};
    ferry_status *st = sm_check(call, &g);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    float *mx = call->workspace, *sum = mx ? mx + g.inner : NULL;
    if (x->dtype == FERRY_DTYPE_FLOAT && g.inner == 1 && g.outer > 1 &&
        g.outer * g.n >= PARALLEL_MIN_ELEMS) {
        sm_ctx c = {.x = x->data, .y = y->data, .n = g.n, .outer = g.outer, .log = a->log,
                    .rows = rows_per_task(g.outer, call->threads)};
        kern_parallel(call->threads, (g.outer + c.rows - 1) / c.rows, sm_rows, &c);
        return NULL;
    }
    for (int64_t o = 0; o < g.outer; o++) {
        int64_t base = o * g.n * g.inner;
        if (x->dtype != FERRY_DTYPE_FLOAT)
            softmax_generic(x, y, base, g.n, g.inner, a->log);
        else if (g.inner == 1)
            softmax_row_f32((const float *)x->data + base, (float *)y->data + base, g.n, a->log);
        else
            softmax_strided_f32((const float *)x->data + base, (float *)y->data + base, g.n,
                                g.inner, a->log, mx, sum);
    }
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "", .name = "BatchNormalization", .since_version = 1, .init = bn_init,
     .fini = free_state, .infer = bn_infer, .run = bn_run},
    {.domain = "", .name = "LayerNormalization", .since_version = 17, .init = ln_init,
     .fini = free_state, .infer = ln_infer, .run = ln_run},
    {.domain = "", .name = "Softmax", .since_version = 1, .init = softmax_init, .fini = free_state,
     .infer = sm_infer, .run = sm_run},
    {.domain = "", .name = "LogSoftmax", .since_version = 1, .init = logsoftmax_init,
     .fini = free_state, .infer = sm_infer, .run = sm_run},
};

const eng_op_table eng_ops_norm = {ops, sizeof(ops) / sizeof(ops[0])};
