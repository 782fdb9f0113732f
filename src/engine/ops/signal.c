/* signal.c - DFT, STFT, the HannWindow, HammingWindow and BlackmanWindow generators and
 * MelWeightMatrix.
 *
 * Signals are real ([..., 1]) or complex ([..., 2], real then imaginary) in float, double,
 * float16 or bfloat16; transforms run in double on one line (a 1-D signal) at a time:
 *
 *   power-of-two lengths  iterative radix-2 FFT, O(n log n);
 *   other lengths <= 64   the direct O(n^2) sum, which is as fast there and exact in its roots;
 *   other lengths         Bluestein's algorithm: the DFT as a convolution with a chirp, done
 *                         with power-of-two FFTs of length >= 2n - 1, O(n log n).
 *
 * Twiddles and the chirp's spectrum are computed once per run into the shared part of the
 * workspace; after it come one scratch slot per worker, and lines are divided among the slots.
 * onesided keeps the first n/2 + 1 bins of the full transform (for real signals the rest are
 * their conjugate mirror), which is what the ONNX reference does for any input.
 */
#include "engine/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Lines of one transform go to at most this many scratch slots. */
#define MAX_SLOTS 64
/* Non-power-of-two lengths up to this use the direct sum. */
#define DIRECT_MAX 64

static const eng_tensor *input(const eng_op_call *call, int i)
{
    return i < call->n_in ? call->in[i] : NULL;
}

static bool is_real(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_FLOAT16 ||
           dt == FERRY_DTYPE_BFLOAT16;
}

static bool is_int(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_INT64 || dt == FERRY_DTYPE_INT32;
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

/* A scalar (or one-element) integer input: its value, read at plan time or run time. */
static ferry_status *read_scalar(const eng_tensor *t, const char *name, int64_t *v)
{
    if (!is_int(t->dtype)) return eng_bad_dtype(name, t->dtype);
    if (eng_numel(t) != 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be a scalar, got %lld values", name,
                          (long long)eng_numel(t));
    if (!t->data) return core_error(FERRY_ERR_INTERNAL, "%s has no data at plan time", name);
    *v = core_load_i64(t->dtype, t->data, 0);
    return NULL;
}

/* Output types that the window and mel generators may produce (output_datatype). */
static bool is_numeric_out(int64_t dt)
{
    switch (dt) {
    case FERRY_DTYPE_UINT8:
    case FERRY_DTYPE_UINT16:
    case FERRY_DTYPE_UINT32:
    case FERRY_DTYPE_UINT64:
    case FERRY_DTYPE_INT8:
    case FERRY_DTYPE_INT16:
    case FERRY_DTYPE_INT32:
    case FERRY_DTYPE_INT64:
    case FERRY_DTYPE_FLOAT16:
    case FERRY_DTYPE_FLOAT:
    case FERRY_DTYPE_DOUBLE:
    case FERRY_DTYPE_BFLOAT16:
        return true;
    default:
        return false;
    }
}

/* ---------------------------------------------------------------------------------------
 * The transform of one line
 * ------------------------------------------------------------------------------------- */

typedef struct cplx {
    double re, im;
} cplx;

enum fft_kind { FFT_POW2, FFT_DIRECT, FFT_BLUESTEIN };

typedef struct fft_plan {
    int64_t n; /* transform length */
    int64_t m; /* POW2: n; BLUESTEIN: the power-of-two convolution length; DIRECT: 0 */
    enum fft_kind kind;
    bool inverse;
    cplx *tw;    /* POW2, BLUESTEIN: m/2 roots exp(-2 pi i k / m); DIRECT: n roots of n */
    cplx *chirp; /* BLUESTEIN: exp(s pi i k^2 / n), s = -1 forward, +1 inverse */
    cplx *bspec; /* BLUESTEIN: spectrum of the conjugate chirp, length m */
} fft_plan;

static bool is_pow2(int64_t n)
{
    return n > 0 && (n & (n - 1)) == 0;
}

/* Shapes the plan for length N and returns the complex values it shares and needs per slot. */
static void plan_size(fft_plan *p, int64_t n, size_t *shared, size_t *slot)
{
    memset(p, 0, sizeof(*p));
    p->n = n;
    if (is_pow2(n)) {
        p->kind = FFT_POW2;
        p->m = n;
        *shared = (size_t)(n / 2 + 1);
        *slot = (size_t)n;
    } else if (n <= DIRECT_MAX) {
        p->kind = FFT_DIRECT;
        *shared = (size_t)(n > 0 ? n : 1);
        *slot = (size_t)(2 * (n > 0 ? n : 1));
    } else {
        p->kind = FFT_BLUESTEIN;
        int64_t m = 1;
        while (m < 2 * n - 1) m <<= 1;
        p->m = m;
        *shared = (size_t)(m / 2 + n + m);
        *slot = (size_t)m;
    }
}

/* In-place radix-2 FFT of A (length M, a power of two); TW holds exp(-2 pi i k / M) for
 * k < M/2, conjugated on the fly for the inverse direction. No scaling. */
static void fft_pow2(cplx *a, int64_t m, const cplx *tw, bool inverse)
{
    for (int64_t i = 1, j = 0; i < m; i++) {
        int64_t bit = m >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            cplx t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
    }
    double sign = inverse ? -1.0 : 1.0;
    for (int64_t len = 2; len <= m; len <<= 1) {
        int64_t half = len / 2, step = m / len;
        for (int64_t i = 0; i < m; i += len) {
            for (int64_t k = 0; k < half; k++) {
                cplx w = tw[k * step];
                cplx *u = &a[i + k], *v = &a[i + k + half];
                double vr = v->re * w.re - sign * v->im * w.im;
                double vi = v->re * sign * w.im + v->im * w.re;
                v->re = u->re - vr;
                v->im = u->im - vi;
                u->re += vr;
                u->im += vi;
            }
        }
    }
}

static void fill_roots(cplx *tw, int64_t count, int64_t m)
{
    for (int64_t k = 0; k < count; k++) {
        double t = -2.0 * M_PI * (double)k / (double)m;
        tw[k].re = cos(t);
        tw[k].im = sin(t);
    }
}

/* Fills the plan's shared tables at SHARED. */
static void plan_prepare(fft_plan *p, cplx *shared, bool inverse)
{
    p->inverse = inverse;
    int64_t n = p->n;
    if (p->kind == FFT_POW2) {
        p->tw = shared;
        fill_roots(p->tw, p->m / 2, p->m);
    } else if (p->kind == FFT_DIRECT) {
        p->tw = shared;
        fill_roots(p->tw, n, n);
    } else {
        int64_t m = p->m;
        p->tw = shared;
        p->chirp = shared + m / 2;
        p->bspec = p->chirp + n;
        fill_roots(p->tw, m / 2, m);
        double s = inverse ? 1.0 : -1.0;
        /* k^2 mod 2n, kept incrementally ((k+1)^2 = k^2 + 2k + 1), holds the angle small and
         * exact for long signals. */
        for (int64_t k = 0, q = 0; k < n; k++) {
            double t = s * M_PI * (double)q / (double)n;
            p->chirp[k].re = cos(t);
            p->chirp[k].im = sin(t);
            q = (q + 2 * k + 1) % (2 * n);
        }
        cplx *b = p->bspec;
        memset(b, 0, (size_t)m * sizeof(cplx));
        for (int64_t k = 0; k < n; k++) {
            cplx c = {p->chirp[k].re, -p->chirp[k].im};
            b[k] = c;
            if (k) b[m - k] = c;
        }
        fft_pow2(b, m, p->tw, false);
    }
}

/* Transforms BUF (n values, in the slot's scratch) in place; no 1/n scaling. */
static void transform(const fft_plan *p, cplx *buf)
{
    int64_t n = p->n;
    if (p->kind == FFT_POW2) {
        fft_pow2(buf, n, p->tw, p->inverse);
    } else if (p->kind == FFT_DIRECT) {
        cplx *out = buf + n;
        double sign = p->inverse ? -1.0 : 1.0;
        for (int64_t j = 0; j < n; j++) {
            double re = 0.0, im = 0.0;
            int64_t idx = 0; /* j * k mod n */
            for (int64_t k = 0; k < n; k++) {
                cplx w = p->tw[idx];
                w.im *= sign;
                re += buf[k].re * w.re - buf[k].im * w.im;
                im += buf[k].re * w.im + buf[k].im * w.re;
                idx += j;
                if (idx >= n) idx -= n;
            }
            out[j].re = re;
            out[j].im = im;
        }
        memcpy(buf, out, (size_t)n * sizeof(cplx));
    } else {
        int64_t m = p->m;
        for (int64_t k = 0; k < n; k++) {
            cplx x = buf[k], c = p->chirp[k];
            buf[k].re = x.re * c.re - x.im * c.im;
            buf[k].im = x.re * c.im + x.im * c.re;
        }
        memset(buf + n, 0, (size_t)(m - n) * sizeof(cplx));
        fft_pow2(buf, m, p->tw, false);
        for (int64_t k = 0; k < m; k++) {
            cplx x = buf[k], b = p->bspec[k];
            buf[k].re = x.re * b.re - x.im * b.im;
            buf[k].im = x.re * b.im + x.im * b.re;
        }
        fft_pow2(buf, m, p->tw, true);
        double scale = 1.0 / (double)m;
        for (int64_t k = 0; k < n; k++) {
            cplx x = buf[k], c = p->chirp[k];
            buf[k].re = (x.re * c.re - x.im * c.im) * scale;
            buf[k].im = (x.re * c.im + x.im * c.re) * scale;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Shared driver for DFT and STFT: a set of lines, each gathered from the input into a slot,
 * transformed and written out.
 * ------------------------------------------------------------------------------------- */

typedef struct line_job {
    fft_plan plan;
    const eng_tensor *x, *window;
    eng_tensor *y;
    int comps; /* 1 real, 2 complex */
    int64_t lines;
    int64_t inner;      /* DFT: elements between consecutive samples of a line (in complex) */
    int64_t len;        /* DFT: samples along the axis; STFT: window size */
    int64_t nout;       /* bins written per line */
    int64_t step;       /* STFT: frame step; 0 for DFT */
    int64_t frames;     /* STFT: frames per batch entry */
    int64_t signal_len; /* STFT */
    cplx *slots;
    size_t slot_size;
    int64_t n_slots;
} line_job;

static void gather(const line_job *j, int64_t line, cplx *buf)
{
    int64_t n = j->plan.n, take = j->len < n ? j->len : n;
    const eng_tensor *x = j->x;
    int64_t base, stride;
    if (j->step) {
        int64_t b = line / j->frames, f = line % j->frames;
        base = b * j->signal_len + f * j->step;
        stride = 1;
    } else {
        int64_t o = line / j->inner, i = line % j->inner;
        base = o * j->len * j->inner + i;
        stride = j->inner;
    }
    for (int64_t k = 0; k < take; k++) {
        int64_t e = (base + k * stride) * j->comps;
        buf[k].re = ld(x->dtype, x->data, e);
        buf[k].im = j->comps == 2 ? ld(x->dtype, x->data, e + 1) : 0.0;
        if (j->window) {
            double w = ld(j->window->dtype, j->window->data, k);
            buf[k].re *= w;
            buf[k].im *= w;
        }
    }
    for (int64_t k = take; k < n; k++) buf[k].re = buf[k].im = 0.0;
}

static void scatter(const line_job *j, int64_t line, const cplx *buf)
{
    eng_tensor *y = j->y;
    double scale = j->plan.inverse ? 1.0 / (double)j->plan.n : 1.0;
    int64_t base, stride;
    if (j->step) {
        base = line * j->nout;
        stride = 1;
    } else {
        int64_t o = line / j->inner, i = line % j->inner;
        base = o * j->nout * j->inner + i;
        stride = j->inner;
    }
    for (int64_t k = 0; k < j->nout; k++) {
        int64_t e = (base + k * stride) * 2;
        st(y->dtype, y->data, e, buf[k].re * scale);
        st(y->dtype, y->data, e + 1, buf[k].im * scale);
    }
}

static void slot_fn(void *arg, int64_t begin, int64_t end)
{
    const line_job *j = arg;
    for (int64_t s = begin; s < end; s++) {
        cplx *buf = j->slots + (size_t)s * j->slot_size;
        int64_t l0 = j->lines * s / j->n_slots, l1 = j->lines * (s + 1) / j->n_slots;
        for (int64_t l = l0; l < l1; l++) {
            gather(j, l, buf);
            transform(&j->plan, buf);
            scatter(j, l, buf);
        }
    }
}

/* Workspace for LINES lines of length N: shared tables and up to one slot per thread. */
static size_t lines_workspace(const eng_op_call *call, int64_t n, int64_t lines)
{
    if (n <= 0 || lines <= 0) return 0;
    fft_plan p;
    size_t shared, slot;
    plan_size(&p, n, &shared, &slot);
    int64_t slots = core_threadpool_size(call->threads);
    if (slots < 1) slots = 1;
    if (slots > MAX_SLOTS) slots = MAX_SLOTS;
    if (slots > lines) slots = lines;
    return (shared + slot * (size_t)slots) * sizeof(cplx);
}

static void run_lines(eng_op_call *call, line_job *j, bool inverse)
{
    if (j->plan.n <= 0 || j->lines <= 0 || j->nout <= 0) return;
    size_t shared, slot;
    plan_size(&j->plan, j->plan.n, &shared, &slot);
    cplx *ws = call->workspace;
    plan_prepare(&j->plan, ws, inverse);
    /* As many slots as infer made room for, whatever the pool is now. */
    size_t total = call->workspace_size / sizeof(cplx);
    int64_t slots = (int64_t)((total - shared) / slot);
    if (slots > j->lines) slots = j->lines;
    j->slots = ws + shared;
    j->slot_size = slot;
    j->n_slots = slots;
    core_parallel_for(call->threads, slot_fn, j, slots, 1);
}

/* ---------------------------------------------------------------------------------------
 * DFT (opset 17: axis attribute; opset 20: axis input, default -2)
 * ------------------------------------------------------------------------------------- */

typedef struct dft_attrs {
    int opset;
    int64_t axis; /* opset < 20 */
    bool inverse, onesided;
} dft_attrs;

static ferry_status *dft_init(const eng_node *node, int opset, void **state)
{
    dft_attrs a = {.opset = opset};
    a.axis = eng_attr_int(node, "axis", 1);
    int64_t inv = eng_attr_int(node, "inverse", 0), one = eng_attr_int(node, "onesided", 0);
    if ((inv != 0 && inv != 1) || (one != 0 && one != 1))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attributes inverse and onesided must be 0 or 1");
    a.inverse = inv == 1;
    a.onesided = one == 1;
    dft_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *s = a;
    *state = s;
    return NULL;
}

typedef struct dft_geom {
    int axis;
    int64_t n, nout, outer, inner, len;
} dft_geom;

static ferry_status *dft_check(const eng_op_call *call, dft_geom *g)
{
    const dft_attrs *a = call->state;
    const eng_tensor *x = input(call, 0), *len_t = input(call, 1);
    if (!x) return core_error(FERRY_ERR_INVALID_MODEL, "input is required");
    if (!is_real(x->dtype)) return eng_bad_dtype("input", x->dtype);
    char s1[128];
    if (x->rank < 2 || (x->dims[x->rank - 1] != 1 && x->dims[x->rank - 1] != 2))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input must have shape [batch, signal dims..., 1 or 2], got %s",
                          eng_shape_str(x, s1, sizeof(s1)));
    int64_t axis = a->axis;
    ferry_status *err;
    if (a->opset >= 20) {
        axis = -2;
        const eng_tensor *axis_t = input(call, 2);
        if (axis_t && (err = read_scalar(axis_t, "axis", &axis))) return err;
    }
    int r = x->rank;
    int64_t norm = axis < 0 ? axis + r : axis;
    if (norm < 0 || norm > r - 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "axis %lld is out of range for input of shape %s (the last dim holds "
                          "the components)",
                          (long long)axis, eng_shape_str(x, s1, sizeof(s1)));
    g->axis = (int)norm;
    g->len = x->dims[norm];
    g->n = g->len;
    if (len_t) {
        if ((err = read_scalar(len_t, "dft_length", &g->n))) return err;
        if (g->n < 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "dft_length must be positive, got %lld",
                              (long long)g->n);
    }
    g->nout = a->onesided ? g->n / 2 + 1 : g->n;
    g->outer = 1;
    for (int i = 0; i < g->axis; i++) g->outer *= x->dims[i];
    g->inner = 1;
    for (int i = g->axis + 1; i < r - 1; i++) g->inner *= x->dims[i];
    return NULL;
}

static ferry_status *dft_infer(eng_op_call *call)
{
    dft_geom g;
    ferry_status *err = dft_check(call, &g);
    if (err) return err;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    eng_same_shape(y, x);
    y->dims[g.axis] = g.nout;
    y->dims[x->rank - 1] = 2;
    call->workspace_size = lines_workspace(call, g.n, g.outer * g.inner);
    return NULL;
}

static ferry_status *dft_run(eng_op_call *call)
{
    const dft_attrs *a = call->state;
    dft_geom g;
    ferry_status *err = dft_check(call, &g);
    if (err) return err;
    const eng_tensor *x = call->in[0];
    line_job j = {.x = x,
                  .y = call->out[0],
                  .comps = (int)x->dims[x->rank - 1],
                  .lines = g.outer * g.inner,
                  .inner = g.inner,
                  .len = g.len,
                  .nout = g.nout};
    j.plan.n = g.n;
    run_lines(call, &j, a->inverse);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * STFT (opset 17): frames of the signal, each windowed and transformed.
 * ------------------------------------------------------------------------------------- */

typedef struct stft_attrs {
    bool onesided;
} stft_attrs;

static ferry_status *stft_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    int64_t one = eng_attr_int(node, "onesided", 1);
    if (one != 0 && one != 1)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute onesided must be 0 or 1");
    stft_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->onesided = one == 1;
    *state = s;
    return NULL;
}

typedef struct stft_geom {
    int64_t batch, len, comps, step, wsize, n, frames, nout;
} stft_geom;

static ferry_status *stft_check(const eng_op_call *call, stft_geom *g)
{
    const stft_attrs *a = call->state;
    const eng_tensor *x = input(call, 0), *step_t = input(call, 1), *win = input(call, 2);
    const eng_tensor *fl_t = input(call, 3);
    if (!x || !step_t)
        return core_error(FERRY_ERR_INVALID_MODEL, "inputs signal and frame_step are required");
    if (!is_real(x->dtype)) return eng_bad_dtype("signal", x->dtype);
    char s1[128];
    if (x->rank != 3 || (x->dims[2] != 1 && x->dims[2] != 2))
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "signal must have shape [batch, length, 1 or 2], got %s",
                          eng_shape_str(x, s1, sizeof(s1)));
    g->batch = x->dims[0];
    g->len = x->dims[1];
    g->comps = x->dims[2];
    ferry_status *err = read_scalar(step_t, "frame_step", &g->step);
    if (err) return err;
    if (g->step < 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "frame_step must be positive, got %lld",
                          (long long)g->step);
    int64_t fl = 0;
    if (fl_t) {
        if ((err = read_scalar(fl_t, "frame_length", &fl))) return err;
        if (fl < 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "frame_length must be positive, got %lld",
                              (long long)fl);
    }
    if (win) {
        if (win->dtype != x->dtype)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "window of type %s differs from signal of type %s",
                              ferry_dtype_name(win->dtype), ferry_dtype_name(x->dtype));
        if (win->rank != 1 || win->dims[0] < 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "window must be a non-empty 1-D tensor, got %s",
                              eng_shape_str(win, s1, sizeof(s1)));
    } else if (!fl_t) {
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "one of window and frame_length is required");
    }
    /* The window sets the frame's extent; frame_length, when given, the DFT's (the frame is
     * zero-padded or cut to it). */
    g->wsize = win ? win->dims[0] : fl;
    g->n = fl_t ? fl : g->wsize;
    if (g->wsize > g->len)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "the frame (%lld samples) is longer than the signal (%lld)",
                          (long long)g->wsize, (long long)g->len);
    g->frames = (g->len - g->wsize) / g->step + 1;
    g->nout = a->onesided ? g->n / 2 + 1 : g->n;
    return NULL;
}

static ferry_status *stft_infer(eng_op_call *call)
{
    stft_geom g;
    ferry_status *err = stft_check(call, &g);
    if (err) return err;
    eng_tensor *y = call->out[0];
    y->dtype = call->in[0]->dtype;
    int64_t dims[4] = {g.batch, g.frames, g.nout, 2};
    eng_set_shape(y, 4, dims);
    call->workspace_size = lines_workspace(call, g.n, g.batch * g.frames);
    return NULL;
}

static ferry_status *stft_run(eng_op_call *call)
{
    stft_geom g;
    ferry_status *err = stft_check(call, &g);
    if (err) return err;
    line_job j = {.x = call->in[0],
                  .window = input(call, 2),
                  .y = call->out[0],
                  .comps = (int)g.comps,
                  .lines = g.batch * g.frames,
                  .len = g.wsize,
                  .nout = g.nout,
                  .step = g.step,
                  .frames = g.frames,
                  .signal_len = g.len};
    j.plan.n = g.n;
    run_lines(call, &j, false);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * HannWindow, HammingWindow, BlackmanWindow (opset 17): generalised cosine windows
 * a0 - a1 cos(2 pi k / N) + a2 cos(4 pi k / N), N = size (periodic) or size - 1.
 * ------------------------------------------------------------------------------------- */

typedef struct window_attrs {
    double a0, a1, a2;
    bool periodic;
    ferry_dtype out;
} window_attrs;

static ferry_status *window_init(const eng_node *node, double a0, double a1, double a2,
                                 void **state)
{
    window_attrs a = {a0, a1, a2, true, FERRY_DTYPE_FLOAT};
    int64_t periodic = eng_attr_int(node, "periodic", 1);
    if (periodic != 0 && periodic != 1)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute periodic must be 0 or 1, got %lld",
                          (long long)periodic);
    a.periodic = periodic == 1;
    int64_t dt = eng_attr_int(node, "output_datatype", FERRY_DTYPE_FLOAT);
    if (!is_numeric_out(dt))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute output_datatype %lld is not a numeric type", (long long)dt);
    a.out = (ferry_dtype)dt;
    window_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *s = a;
    *state = s;
    return NULL;
}

static ferry_status *hann_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return window_init(node, 0.5, 0.5, 0.0, state);
}

static ferry_status *hamming_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return window_init(node, 25.0 / 46.0, 1.0 - 25.0 / 46.0, 0.0, state);
}

static ferry_status *blackman_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return window_init(node, 0.42, 0.5, 0.08, state);
}

static ferry_status *window_size(const eng_op_call *call, int64_t *size)
{
    const eng_tensor *t = input(call, 0);
    if (!t) return core_error(FERRY_ERR_INVALID_MODEL, "input size is required");
    ferry_status *err = read_scalar(t, "size", size);
    if (err) return err;
    if (*size < 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "size must not be negative, got %lld",
                          (long long)*size);
    return NULL;
}

static ferry_status *window_infer(eng_op_call *call)
{
    const window_attrs *a = call->state;
    int64_t size;
    ferry_status *err = window_size(call, &size);
    if (err) return err;
    call->out[0]->dtype = a->out;
    eng_set_shape(call->out[0], 1, &size);
    return NULL;
}

static ferry_status *window_run(eng_op_call *call)
{
    const window_attrs *a = call->state;
    int64_t size;
    ferry_status *err = window_size(call, &size);
    if (err) return err;
    eng_tensor *y = call->out[0];
    int64_t n = a->periodic ? size : size - 1;
    for (int64_t k = 0; k < size; k++) {
        /* A symmetric window of one sample is its peak, 1 (numpy's hanning(1) too). */
        double t = n > 0 ? 2.0 * M_PI * (double)k / (double)n : 0.0;
        double v = n > 0 ? a->a0 - a->a1 * cos(t) + a->a2 * cos(2.0 * t) : 1.0;
        st(y->dtype, y->data, k, v);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * MelWeightMatrix (opset 17): triangular filters, equally spaced on the mel scale, over the
 * dft_length / 2 + 1 bins of a onesided spectrum. Follows the ONNX reference exactly: the
 * num_mel_bins + 2 edges are spaced by (high - low) / (num_mel_bins + 2) mel and mapped to bin
 * floor((dft_length + 1) * hz / sample_rate).
 * ------------------------------------------------------------------------------------- */

typedef struct mel_attrs {
    ferry_dtype out;
} mel_attrs;

static ferry_status *mel_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    int64_t dt = eng_attr_int(node, "output_datatype", FERRY_DTYPE_FLOAT);
    if (!is_numeric_out(dt))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute output_datatype %lld is not a numeric type", (long long)dt);
    mel_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->out = (ferry_dtype)dt;
    *state = s;
    return NULL;
}

static ferry_status *mel_shape(const eng_op_call *call, int64_t *bins, int64_t *mels)
{
    static const char *const names[] = {"num_mel_bins", "dft_length", "sample_rate",
                                        "lower_edge_hertz", "upper_edge_hertz"};
    for (int i = 0; i < 5; i++) {
        const eng_tensor *t = input(call, i);
        if (!t) return core_error(FERRY_ERR_INVALID_MODEL, "input %s is required", names[i]);
        if (i < 3 ? !is_int(t->dtype) : !is_real(t->dtype))
            return eng_bad_dtype(names[i], t->dtype);
        if (eng_numel(t) != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s must be a scalar", names[i]);
    }
    int64_t dft_length;
    ferry_status *err = read_scalar(call->in[0], names[0], mels);
    if (err || (err = read_scalar(call->in[1], names[1], &dft_length))) return err;
    if (*mels < 1 || dft_length < 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "num_mel_bins and dft_length must be positive, got %lld and %lld",
                          (long long)*mels, (long long)dft_length);
    *bins = dft_length / 2 + 1;
    return NULL;
}

static ferry_status *mel_infer(eng_op_call *call)
{
    const mel_attrs *a = call->state;
    int64_t bins, mels;
    ferry_status *err = mel_shape(call, &bins, &mels);
    if (err) return err;
    int64_t dims[2] = {bins, mels};
    call->out[0]->dtype = a->out;
    eng_set_shape(call->out[0], 2, dims);
    call->workspace_size = (size_t)(mels + 2) * sizeof(double);
    return NULL;
}

static double hz_to_mel(double hz)
{
    return 2595.0 * log10(1.0 + hz / 700.0);
}

static double mel_to_hz(double mel)
{
    return 700.0 * (pow(10.0, mel / 2595.0) - 1.0);
}

/* A loop bound on rows [0, LAST], held within [-1, LAST + 1] so that it converts safely. */
static int64_t row(double v, double last)
{
    return (int64_t)fmin(fmax(v, -1.0), last + 1.0);
}

static ferry_status *mel_run(eng_op_call *call)
{
    int64_t bins, mels;
    ferry_status *err = mel_shape(call, &bins, &mels);
    if (err) return err;
    int64_t dft_length = core_load_i64(call->in[1]->dtype, call->in[1]->data, 0);
    int64_t rate = core_load_i64(call->in[2]->dtype, call->in[2]->data, 0);
    double lower = core_load_f64(call->in[3]->dtype, call->in[3]->data, 0);
    double upper = core_load_f64(call->in[4]->dtype, call->in[4]->data, 0);
    if (rate < 1)
        return core_error(FERRY_ERR_RUNTIME, "sample_rate must be positive, got %lld",
                          (long long)rate);
    double low_mel = hz_to_mel(lower), high_mel = hz_to_mel(upper);
    double step = (high_mel - low_mel) / (double)(mels + 2);
    /* Edges are whole bin numbers kept in double: wild inputs (NaN, huge hertz) must not
     * overflow a conversion, and what falls outside the spectrum is clipped away anyway. */
    double *edge = call->workspace;
    for (int64_t i = 0; i < mels + 2; i++) {
        double hz = mel_to_hz(low_mel + step * (double)i);
        edge[i] = floor((double)(dft_length + 1) * hz / (double)rate);
    }
    eng_tensor *y = call->out[0];
    for (int64_t i = 0; i < bins * mels; i++) st(y->dtype, y->data, i, 0.0);
    double last = (double)(bins - 1);
    for (int64_t i = 0; i < mels; i++) {
        double lo = edge[i], center = edge[i + 1], hi = edge[i + 2];
        if (!isfinite(lo) || !isfinite(center) || !isfinite(hi)) continue;
        double rise = center - lo, fall = hi - center;
        /* Rising side lo..center, then the falling side center..hi - 1 (the centre gets 1
         * either way), each limited to the rows [0, bins). */
        if (rise == 0) {
            if (center >= 0 && center <= last)
                st(y->dtype, y->data, (int64_t)center * mels + i, 1.0);
        } else {
            int64_t k0 = row(fmax(lo, 0.0), last), k1 = row(fmin(center, last), last);
            for (int64_t k = k0; k <= k1; k++)
                st(y->dtype, y->data, k * mels + i, ((double)k - lo) / rise);
        }
        if (fall > 0) {
            int64_t k0 = row(fmax(center, 0.0), last), k1 = row(fmin(hi - 1, last), last);
            for (int64_t k = k0; k <= k1; k++)
                st(y->dtype, y->data, k * mels + i, (hi - (double)k) / fall);
        }
    }
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "",
     .name = "DFT",
     .since_version = 17,
     .value_inputs = 1u << 1,
     .init = dft_init,
     .fini = free,
     .infer = dft_infer,
     .run = dft_run},
    {.domain = "",
     .name = "DFT",
     .since_version = 20,
     .value_inputs = 1u << 1 | 1u << 2,
     .init = dft_init,
     .fini = free,
     .infer = dft_infer,
     .run = dft_run},
    {.domain = "",
     .name = "STFT",
     .since_version = 17,
     .value_inputs = 1u << 1 | 1u << 3,
     .init = stft_init,
     .fini = free,
     .infer = stft_infer,
     .run = stft_run},
    {.domain = "",
     .name = "HannWindow",
     .since_version = 17,
     .value_inputs = 1u,
     .init = hann_init,
     .fini = free,
     .infer = window_infer,
     .run = window_run},
    {.domain = "",
     .name = "HammingWindow",
     .since_version = 17,
     .value_inputs = 1u,
     .init = hamming_init,
     .fini = free,
     .infer = window_infer,
     .run = window_run},
    {.domain = "",
     .name = "BlackmanWindow",
     .since_version = 17,
     .value_inputs = 1u,
     .init = blackman_init,
     .fini = free,
     .infer = window_infer,
     .run = window_run},
    {.domain = "",
     .name = "MelWeightMatrix",
     .since_version = 17,
     .value_inputs = 1u | 1u << 1,
     .init = mel_init,
     .fini = free,
     .infer = mel_infer,
     .run = mel_run},
};

const eng_op_table eng_ops_signal = {ops, sizeof(ops) / sizeof(ops[0])};
