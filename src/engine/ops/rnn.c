/* rnn.c - the recurrent layers RNN, GRU and LSTM (opsets 1, 3 for GRU, 7 and 14).
 *
 * One direction at a time: the input projection of every time step is one GEMM,
 * X[seq * batch, input] * W^T, into a workspace matrix that starts out holding the biases;
 * then each step multiplies the previous hidden state of the whole batch by R^T (a small
 * GEMM) and applies the cell's gate equations row by row. When W and R are constants, pack()
 * prepares them once as kern_gemm's packed B operands, so the per-step products neither
 * repack nor transpose R; all float products go through kern_gemm_run on the context's
 * threads.
 *
 * A batch entry whose sequence_lens ends early stops updating; in reverse it starts at its own
 * last step. Its outputs past its length are zeros, and an entry of length 0 reports zero
 * final states, as onnxruntime does.
 *
 * Activations follow the spec's list (case-insensitive names); activation_alpha and
 * activation_beta are consumed in order by the activations that take them, the others using
 * onnxruntime's defaults. clip bounds the input of every activation.
 *
 * The typed half of the computation is written once at the end of this file and compiled
 * twice, for float (also used for float16, widened in the workspace) and for double: this file
 * includes itself with RNN_TYPED defined, and `real`, TYPED(), M() and MUL naming the type,
 * the function suffix, the math function variant and the product routine.
 */
#ifndef RNN_TYPED

#include "engine/op.h"

#include "engine/kernels/gemm.h"
#include "engine/kernels/half.h"
#include "engine/kernels/simd.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

KERN_FAST_LOOPS

static size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

static const eng_tensor *input(const eng_op_call *call, int i)
{
    return i < call->n_in ? call->in[i] : NULL;
}

static eng_tensor *output(const eng_op_call *call, int i)
{
    return i < call->n_out ? call->out[i] : NULL;
}

typedef enum act_kind {
    ACT_SIGMOID,
    ACT_TANH,
    ACT_RELU,
    ACT_AFFINE,
    ACT_LEAKY_RELU,
    ACT_THRESHOLDED_RELU,
    ACT_SCALED_TANH,
    ACT_HARD_SIGMOID,
    ACT_ELU,
    ACT_SOFTSIGN,
    ACT_SOFTPLUS,
} act_kind;

typedef struct rnn_act {
    act_kind kind;
    float alpha, beta;
} rnn_act;

/* Names, which parameters each takes, and their defaults (onnxruntime's). */
static const struct {
    const char *name;
    act_kind kind;
    bool alpha, beta;
    float alpha_dflt, beta_dflt;
} act_table[] = {
    {"sigmoid", ACT_SIGMOID, false, false, 0.0f, 0.0f},
    {"tanh", ACT_TANH, false, false, 0.0f, 0.0f},
    {"relu", ACT_RELU, false, false, 0.0f, 0.0f},
    {"affine", ACT_AFFINE, true, true, 1.0f, 0.0f},
    {"leakyrelu", ACT_LEAKY_RELU, true, false, 0.01f, 0.0f},
    {"thresholdedrelu", ACT_THRESHOLDED_RELU, true, false, 1.0f, 0.0f},
    {"scaledtanh", ACT_SCALED_TANH, true, true, 1.0f, 1.0f},
    {"hardsigmoid", ACT_HARD_SIGMOID, true, true, 0.2f, 0.5f},
    {"elu", ACT_ELU, true, false, 1.0f, 0.0f},
    {"softsign", ACT_SOFTSIGN, false, false, 0.0f, 0.0f},
    {"softplus", ACT_SOFTPLUS, false, false, 0.0f, 0.0f},
};

typedef enum cell_kind { CELL_RNN, CELL_GRU, CELL_LSTM } cell_kind;

typedef struct rnn_attrs {
    cell_kind cell;
    int gates;      /* weight blocks per direction: 1, 3 or 4 */
    int n_act;      /* activations per direction: 1, 2 or 3 */
    int dirs;       /* 1, or 2 when bidirectional */
    bool reverse;   /* direction "reverse" */
    int64_t hidden; /* hidden_size, or 0 when absent (taken from R) */
    float clip;     /* 0: no clipping */
    bool input_forget;
    bool linear_before_reset;
    bool batch_major; /* layout 1 */
    rnn_act act[2][3]; /* per direction: f, g, h */
} rnn_attrs;

static bool same_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

static ferry_status *read_activations(const eng_node *node, rnn_attrs *a)
{
    static const char *const defaults[3][3] = {
        {"Tanh", NULL, NULL}, {"Sigmoid", "Tanh", NULL}, {"Sigmoid", "Tanh", "Tanh"}};
    size_t n = 0, n_alpha = 0, n_beta = 0;
    const char *const *names = eng_attr_strings(node, "activations", &n);
    const float *alphas = eng_attr_floats(node, "activation_alpha", &n_alpha);
    const float *betas = eng_attr_floats(node, "activation_beta", &n_beta);
    const char *list[6];
    size_t want = (size_t)(a->n_act * a->dirs);
    if (!names || n == 0) {
        for (int d = 0; d < a->dirs; d++)
            for (int i = 0; i < a->n_act; i++) list[d * a->n_act + i] = defaults[a->cell][i];
    } else if (n == want || (n == (size_t)a->n_act && a->dirs == 2) ||
               (a->cell == CELL_RNN && n == 2 && a->dirs == 1)) {
        /* One list for both directions is shared; RNN's schema default [Tanh, Tanh] names
         * two although a one-way RNN takes one. */
        for (size_t i = 0; i < want; i++) list[i] = names[i < n ? i : i % (size_t)a->n_act];
    } else {
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute activations: expected %zu names (%d per direction), got "
                          "%zu",
                          want, a->n_act, n);
    }
    size_t ia = 0, ib = 0;
    for (size_t i = 0; i < want; i++) {
        size_t k = 0, kinds = sizeof(act_table) / sizeof(act_table[0]);
        while (k < kinds && !same_name(act_table[k].name, list[i])) k++;
        if (k == kinds)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute activations: unknown activation '%s'", list[i]);
        rnn_act *act = &a->act[i / (size_t)a->n_act][i % (size_t)a->n_act];
        act->kind = act_table[k].kind;
        act->alpha = act_table[k].alpha_dflt;
        act->beta = act_table[k].beta_dflt;
        if (act_table[k].alpha && ia < n_alpha) act->alpha = alphas[ia++];
        if (act_table[k].beta && ib < n_beta) act->beta = betas[ib++];
    }
    return NULL;
}

static ferry_status *read_flag(const eng_node *node, const char *name, bool *out)
{
    int64_t v = eng_attr_int(node, name, 0);
    if (v != 0 && v != 1)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute %s must be 0 or 1, got %lld", name,
                          (long long)v);
    *out = v == 1;
    return NULL;
}

static ferry_status *rnn_init_common(const eng_node *node, int opset, cell_kind cell,
                                     void **state)
{
    rnn_attrs a;
    memset(&a, 0, sizeof(a));
    a.cell = cell;
    a.gates = cell == CELL_LSTM ? 4 : cell == CELL_GRU ? 3 : 1;
    a.n_act = cell == CELL_LSTM ? 3 : cell == CELL_GRU ? 2 : 1;
    const char *dir = eng_attr_string(node, "direction", "forward");
    if (!strcmp(dir, "forward")) {
        a.dirs = 1;
    } else if (!strcmp(dir, "reverse")) {
        a.dirs = 1;
        a.reverse = true;
    } else if (!strcmp(dir, "bidirectional")) {
        a.dirs = 2;
    } else {
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute direction: unknown value '%s' (expected forward, reverse or "
                          "bidirectional)",
                          dir);
    }
    if (eng_attr_has(node, "hidden_size")) {
        a.hidden = eng_attr_int(node, "hidden_size", 0);
        if (a.hidden < 1 || a.hidden > ((int64_t)1 << 30))
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute hidden_size must be positive, got %lld",
                              (long long)a.hidden);
    }
    if (eng_attr_has(node, "clip")) {
        a.clip = eng_attr_float(node, "clip", 0.0f);
        if (!(a.clip > 0.0f))
            return core_error(FERRY_ERR_INVALID_MODEL, "attribute clip must be positive, got %g",
                              (double)a.clip);
    }
    ferry_status *st;
    if (cell == CELL_LSTM && (st = read_flag(node, "input_forget", &a.input_forget))) return st;
    if (cell == CELL_GRU && opset >= 3 &&
        (st = read_flag(node, "linear_before_reset", &a.linear_before_reset)))
        return st;
    if (opset >= 14 && (st = read_flag(node, "layout", &a.batch_major))) return st;
    if ((st = read_activations(node, &a))) return st;
    rnn_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *s = a;
    *state = s;
    return NULL;
}

static ferry_status *rnn_init(const eng_node *node, int opset, void **state)
{
    return rnn_init_common(node, opset, CELL_RNN, state);
}

static ferry_status *gru_init(const eng_node *node, int opset, void **state)
{
    return rnn_init_common(node, opset, CELL_GRU, state);
}

static ferry_status *lstm_init(const eng_node *node, int opset, void **state)
{
    return rnn_init_common(node, opset, CELL_LSTM, state);
}

/* --- shapes, products and workspace ------------------------------------------------------ */

typedef struct rnn_dims {
    int64_t seq, batch, input, hidden, gh; /* gh: gates * hidden */
    int dirs;
} rnn_dims;

/* The inputs, by position. */
enum { IN_X, IN_W, IN_R, IN_B, IN_SEQ, IN_H0, IN_C0, IN_P };

static ferry_status *check_shape(const char *what, const eng_tensor *t, int rank,
                                 const int64_t *dims)
{
    bool ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++) ok = t->dims[i] == dims[i];
    if (ok) return NULL;
    char s1[128], s2[128];
    eng_tensor want = {0};
    eng_set_shape(&want, rank, dims);
    return core_error(FERRY_ERR_INVALID_ARGUMENT, "input %s: expected shape %s, got %s", what,
                      eng_shape_str(&want, s1, sizeof(s1)), eng_shape_str(t, s2, sizeof(s2)));
}

static ferry_status *rnn_check(const eng_op_call *call, rnn_dims *d)
{
    const rnn_attrs *a = call->state;
    const eng_tensor *x = input(call, IN_X), *w = input(call, IN_W), *r = input(call, IN_R);
    char s1[128];
    ferry_status *st;
    if (!x || !w || !r)
        return core_error(FERRY_ERR_INVALID_MODEL, "inputs X, W and R are required");
    if (x->dtype != FERRY_DTYPE_FLOAT && x->dtype != FERRY_DTYPE_DOUBLE &&
        x->dtype != FERRY_DTYPE_FLOAT16)
        return eng_bad_dtype("input X", x->dtype);
    static const char *const names[] = {"X", "W", "R", "B", "sequence_lens", "initial_h",
                                        "initial_c", "P"};
    int n_in = a->cell == CELL_LSTM ? 8 : 6;
    if (call->n_in > n_in)
        return core_error(FERRY_ERR_INVALID_MODEL, "expected at most %d inputs, got %d", n_in,
                          call->n_in);
    for (int i = 1; i < call->n_in; i++) {
        const eng_tensor *t = call->in[i];
        if (!t || i == IN_SEQ || t->dtype == x->dtype) continue;
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input %s (%s) must have the type of X (%s)",
                          names[i], ferry_dtype_name(t->dtype), ferry_dtype_name(x->dtype));
    }
    if (x->rank != 3)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X: expected 3 dims (%s), got %s",
                          a->batch_major ? "batch, seq, input" : "seq, batch, input",
                          eng_shape_str(x, s1, sizeof(s1)));
    d->seq = x->dims[a->batch_major ? 1 : 0];
    d->batch = x->dims[a->batch_major ? 0 : 1];
    d->input = x->dims[2];
    d->dirs = a->dirs;
    if (r->rank != 3)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input R: expected 3 dims, got %s",
                          eng_shape_str(r, s1, sizeof(s1)));
    d->hidden = a->hidden ? a->hidden : r->dims[2];
    d->gh = a->gates * d->hidden;
    /* The workspace holds the input projection of every step: keep its size meaningful even
     * for shapes with an empty input dimension. */
    int64_t rows, cells;
    if (__builtin_mul_overflow(d->seq, d->batch, &rows) ||
        __builtin_mul_overflow(rows, d->gh, &cells) || cells > ((int64_t)1 << 36))
        return core_error(FERRY_ERR_NO_MEMORY,
                          "the input projection of %lld steps of %lld entries is too large",
                          (long long)d->seq, (long long)d->batch);
    int64_t dw[3] = {d->dirs, d->gh, d->input}, dr[3] = {d->dirs, d->gh, d->hidden};
    if ((st = check_shape("W", w, 3, dw)) || (st = check_shape("R", r, 3, dr))) return st;
    const eng_tensor *b = input(call, IN_B), *seq = input(call, IN_SEQ);
    int64_t db[2] = {d->dirs, 2 * d->gh};
    if (b && (st = check_shape("B", b, 2, db))) return st;
    if (seq) {
        if (seq->dtype != FERRY_DTYPE_INT32 && seq->dtype != FERRY_DTYPE_INT64)
            return eng_bad_dtype("input sequence_lens", seq->dtype);
        if ((st = check_shape("sequence_lens", seq, 1, &d->batch))) return st;
    }
    int64_t ds[3] = {d->dirs, d->batch, d->hidden};
    if (a->batch_major) ds[0] = d->batch, ds[1] = d->dirs;
    const eng_tensor *h0 = input(call, IN_H0), *c0 = input(call, IN_C0), *p = input(call, IN_P);
    if (h0 && (st = check_shape("initial_h", h0, 3, ds))) return st;
    if (c0 && (st = check_shape("initial_c", c0, 3, ds))) return st;
    int64_t dp[2] = {d->dirs, 3 * d->hidden};
    if (p && (st = check_shape("P", p, 2, dp))) return st;
    return NULL;
}

/* The products of one direction: the input projection X * W^T; the recurrent product
 * h * R^T (for GRU without linear_before_reset, only the update and reset gates' rows of R,
 * since the third product needs the reset gate first); and that third product,
 * (r . h) * Rh^T. */
enum { MUL_X, MUL_H, MUL_RH, MUL_COUNT };

/* The rows [*R0, *R0 + *N) of W (MUL_X) or R that product WHICH multiplies by, transposed, and
 * its inner size *K. */
static void mul_shape(const rnn_attrs *a, int which, int64_t input, int64_t hidden, int64_t *r0,
                      int64_t *n, int64_t *k)
{
    int64_t gh = a->gates * hidden;
    bool split = a->cell == CELL_GRU && !a->linear_before_reset;
    *r0 = which == MUL_RH ? 2 * hidden : 0;
    *n = which == MUL_X ? gh : which == MUL_RH ? hidden : split ? 2 * hidden : gh;
    *k = which == MUL_X ? input : hidden;
}

/* B operands packed once from constant float (or float16) W and R: [direction][MUL_*], NULL
 * where not prepared. */
typedef struct rnn_packed {
    kern_packed *p[2][MUL_COUNT];
} rnn_packed;

static void rnn_unpack(void *packed)
{
    rnn_packed *pk = packed;
    if (!pk) return;
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < MUL_COUNT; i++) kern_packed_free(pk->p[d][i]);
    free(pk);
}

/* Packs constant W and R for kern_gemm_run. Inputs whose shapes do not fit are left alone:
 * infer reports them. */
static ferry_status *rnn_pack(const eng_node *node, const eng_tensor *const *inputs,
                              const void *state, void **packed)
{
    (void)node;
    const rnn_attrs *a = state;
    const eng_tensor *w = inputs[IN_W], *r = inputs[IN_R];
    *packed = NULL;
    if (!w && !r) return NULL;
    int64_t hidden = a->hidden ? a->hidden : r && r->rank == 3 ? r->dims[2] : 0;
    if (!hidden && w && w->rank == 3) hidden = w->dims[1] / a->gates;
    int64_t gh = a->gates * hidden;
    rnn_packed *pk = calloc(1, sizeof(*pk));
    if (!pk) return core_error(FERRY_ERR_NO_MEMORY, "out of memory preparing the weights");
    bool any = false;
    for (int which = 0; which < MUL_COUNT; which++) {
        const eng_tensor *t = which == MUL_X ? w : r;
        if (which == MUL_RH && !(a->cell == CELL_GRU && !a->linear_before_reset)) continue;
        if (!t || !t->data || t->rank != 3 || t->dims[0] != a->dirs || t->dims[1] != gh ||
            hidden < 1 || (which != MUL_X && t->dims[2] != hidden))
            continue;
        if (t->dtype != FERRY_DTYPE_FLOAT && t->dtype != FERRY_DTYPE_FLOAT16) continue;
        int64_t cols = t->dims[2], r0, n, k;
        mul_shape(a, which, cols, hidden, &r0, &n, &k);
        const float *f = t->data;
        float *wide = NULL;
        if (t->dtype == FERRY_DTYPE_FLOAT16) {
            wide = malloc((size_t)eng_numel(t) * sizeof(float) + 1);
            if (!wide) goto nomem;
            kern_half_to_float(t->data, wide, eng_numel(t));
            f = wide;
        }
        for (int d = 0; d < a->dirs; d++) {
            pk->p[d][which] = kern_pack_b(KERN_ISA_AUTO, true, k, n, f + (d * gh + r0) * cols,
                                          cols);
            if (!pk->p[d][which] && k > 0 && n > 0) {
                free(wide);
                goto nomem;
            }
            any = any || pk->p[d][which];
        }
        free(wide);
    }
    if (!any) {
        rnn_unpack(pk);
        return NULL;
    }
    *packed = pk;
    return NULL;
nomem:
    rnn_unpack(pk);
    return core_error(FERRY_ERR_NO_MEMORY, "out of memory preparing the weights");
}

/* What the typed code needs to multiply by W and R. */
typedef struct rnn_mul {
    const rnn_attrs *a;
    const rnn_dims *d;
    const void *w, *r; /* for products pack() did not prepare (float copies for float16) */
    const rnn_packed *pk;
    core_threadpool *pool;
    void *ws;
} rnn_mul;

/* C[M, n] = A[M, k] * rows^T + BETA * C for product WHICH of direction DIR (float). */
static kern_gemm mul_gemm(const rnn_mul *mu, int which, int dir, int64_t m, const float *a,
                          float beta, float *c, int64_t ldc)
{
    int64_t r0, n, k;
    mul_shape(mu->a, which, mu->d->input, mu->d->hidden, &r0, &n, &k);
    kern_gemm g;
    memset(&g, 0, sizeof(g));
    g.m = m, g.n = n, g.k = k;
    g.isa = KERN_ISA_AUTO;
    g.a = a, g.lda = k, g.alpha = 1.0f;
    g.pb = mu->pk ? mu->pk->p[dir][which] : NULL;
    if (!g.pb) {
        const float *src = which == MUL_X ? mu->w : mu->r;
        g.b = src ? src + (dir * mu->d->gh + r0) * k : NULL;
        g.ldb = k;
        g.trans_b = true;
    }
    g.c = c, g.ldc = ldc, g.beta = beta;
    return g;
}

static void mul_f32(const rnn_mul *mu, int which, int dir, int64_t m, const float *a,
                    float beta, float *c, int64_t ldc)
{
    kern_gemm g = mul_gemm(mu, which, dir, m, a, beta, c, ldc);
    kern_gemm_run(&g, mu->pool, mu->ws);
}

static void mul_f64(const rnn_mul *mu, int which, int dir, int64_t m, const double *a,
                    double beta, double *c, int64_t ldc)
{
    int64_t r0, n, k;
    mul_shape(mu->a, which, mu->d->input, mu->d->hidden, &r0, &n, &k);
    const double *src = which == MUL_X ? mu->w : mu->r;
    if (m <= 0 || n <= 0) return;
    kern_dgemm(false, true, m, n, k, 1.0, a, k, src + (dir * mu->d->gh + r0) * k, k, beta, c,
               ldc);
}

/* Workspace offsets; float16 adds float copies of the inputs and outputs. */
typedef struct rnn_ws {
    size_t gemm, xw, gates, h, c, hr, bx, bh, lens;
    size_t f16[11]; /* X, W, R, B, -, initial_h, initial_c, P, then Y, Y_h, Y_c */
    size_t total;
} rnn_ws;

static void rnn_layout(const eng_op_call *call, const rnn_dims *d, rnn_ws *l)
{
    const rnn_attrs *a = call->state;
    const rnn_packed *pk = call->packed;
    ferry_dtype dt = call->in[IN_X]->dtype;
    size_t esz = dt == FERRY_DTYPE_DOUBLE ? 8 : 4;
    int64_t sb = d->seq * d->batch, bh = d->batch * d->hidden;
    size_t off = 0;
    memset(l, 0, sizeof(*l));
#define PLACE(field, bytes)                                                                   \
    do {                                                                                      \
        l->field = off;                                                                       \
        off += align64(bytes);                                                                \
    } while (0)
    if (dt != FERRY_DTYPE_DOUBLE) {
        rnn_mul mu = {a, d, NULL, NULL, pk, NULL, NULL};
        int threads = core_threadpool_size(call->threads);
        size_t g = 0;
        bool split = a->cell == CELL_GRU && !a->linear_before_reset;
        for (int which = 0; which < (split ? MUL_COUNT : MUL_RH); which++) {
            kern_gemm k = mul_gemm(&mu, which, 0, which == MUL_X ? sb : d->batch, NULL, 0.0f,
                                   NULL, d->gh);
            size_t s = kern_gemm_workspace(&k, threads);
            g = s > g ? s : g;
        }
        PLACE(gemm, g);
    }
    PLACE(xw, (size_t)(sb * d->gh) * esz);
    PLACE(gates, (size_t)(d->batch * d->gh) * esz);
    PLACE(h, (size_t)bh * esz);
    PLACE(c, a->cell == CELL_LSTM ? (size_t)bh * esz : 0);
    PLACE(hr, a->cell == CELL_GRU ? (size_t)bh * esz : 0);
    PLACE(bx, (size_t)d->gh * esz);
    PLACE(bh, (size_t)d->hidden * esz);
    PLACE(lens, (size_t)d->batch * sizeof(int64_t));
    if (dt == FERRY_DTYPE_FLOAT16) {
        for (int i = 0; i < call->n_in && i < 8; i++)
            if (call->in[i] && i != IN_SEQ)
                PLACE(f16[i], (size_t)eng_numel(call->in[i]) * sizeof(float));
        for (int o = 0; o < call->n_out && o < 3; o++)
            if (call->out[o]) PLACE(f16[8 + o], (size_t)eng_numel(call->out[o]) * sizeof(float));
    }
#undef PLACE
    l->total = off;
}

static ferry_status *rnn_infer(eng_op_call *call)
{
    const rnn_attrs *a = call->state;
    rnn_dims d;
    ferry_status *st = rnn_check(call, &d);
    if (st) return st;
    int max_out = a->cell == CELL_LSTM ? 3 : 2;
    if (call->n_out > max_out)
        return core_error(FERRY_ERR_INVALID_MODEL, "expected at most %d outputs, got %d",
                          max_out, call->n_out);
    ferry_dtype dt = call->in[IN_X]->dtype;
    eng_tensor *y = output(call, 0);
    if (y) {
        int64_t dims[4] = {d.seq, d.dirs, d.batch, d.hidden};
        if (a->batch_major) dims[0] = d.batch, dims[1] = d.seq, dims[2] = d.dirs;
        y->dtype = dt;
        eng_set_shape(y, 4, dims);
    }
    for (int o = 1; o < max_out; o++) {
        eng_tensor *t = output(call, o);
        if (!t) continue;
        int64_t dims[3] = {d.dirs, d.batch, d.hidden};
        if (a->batch_major) dims[0] = d.batch, dims[1] = d.dirs;
        t->dtype = dt;
        eng_set_shape(t, 3, dims);
    }
    rnn_ws l;
    rnn_layout(call, &d, &l);
    call->workspace_size = l.total;
    return NULL;
}

/* Offsets of the state (initial_h, Y_h ...) row of batch entry B in direction DIR, and of the
 * rows of X and Y at time T. */
static inline int64_t state_off(const rnn_attrs *a, const rnn_dims *d, int dir, int64_t b)
{
    return (a->batch_major ? b * d->dirs + dir : dir * d->batch + b) * d->hidden;
}

static inline int64_t x_row(const rnn_attrs *a, const rnn_dims *d, int64_t t, int64_t b)
{
    return a->batch_major ? b * d->seq + t : t * d->batch + b;
}

static inline int64_t y_off(const rnn_attrs *a, const rnn_dims *d, int dir, int64_t t,
                            int64_t b)
{
    return (a->batch_major ? (b * d->seq + t) * d->dirs + dir
                           : (t * d->dirs + dir) * d->batch + b) *
           d->hidden;
}

/* --- sigmoid and tanh -------------------------------------------------------------------- */

/* The gates' sigmoids and tanhs cost as much as the recurrent products when computed with
 * libm, one call per element, so float ones use branch-free approximations that vectorise
 * (within 3 ulp for sigmoid, 5 for tanh). NaN stays NaN; clamped inputs keep the float to int
 * conversion defined. */

/* e^x by Cephes' expf polynomial after reducing by multiples of ln 2 (x in [-87.3, 88.3]). */
static KERN_INLINE float exp_approx(float x)
{
    x = x > -87.3f ? (x < 88.3f ? x : 88.3f) : -87.3f;
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* round(x / ln 2) */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) * (1 << 23); /* 2^n */
    float scale;
    memcpy(&scale, &e, sizeof(scale));
    return p * scale;
}

/* The odd rational approximation Eigen and onnxruntime use, exact to float beyond |x| = 9. */
static KERN_INLINE float tanh_approx(float x)
{
    x = x > -9.0f ? (x < 9.0f ? x : 9.0f) : -9.0f;
    float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * p / q;
}

KERN_CLONES static void sigmoid_v_f32(float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = v[i], y = 1.0f / (1.0f + exp_approx(-x));
        v[i] = x == x ? y : x;
    }
}

KERN_CLONES static void tanh_v_f32(float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = v[i], y = tanh_approx(x);
        v[i] = x == x ? y : x;
    }
}

static void sigmoid_v_f64(double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) v[i] = 1.0 / (1.0 + exp(-v[i]));
}

static void tanh_v_f64(double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) v[i] = tanh(v[i]);
}

/* The tensors of one call, as the typed code sees them (float copies for float16). */
typedef struct rnn_io {
    const void *x, *b, *h0, *c0, *p;
    void *y, *yh, *yc;
} rnn_io;

/* The typed kernels, once per element type. */
#define RNN_TYPED
#define real float
#define TYPED(name) name##_f32
#define M(fn) fn##f
#define MUL mul_f32
#include "rnn.c" /* this file: its typed half, below */
#undef real
#undef TYPED
#undef M
#undef MUL
#define real double
#define TYPED(name) name##_f64
#define M(fn) fn
#define MUL mul_f64
#include "rnn.c" /* this file: its typed half, below */
#undef real
#undef TYPED
#undef M
#undef MUL
#undef RNN_TYPED

static ferry_status *rnn_run(eng_op_call *call)
{
    const rnn_attrs *a = call->state;
    rnn_dims d;
    ferry_status *st = rnn_check(call, &d);
    if (st) return st;
    rnn_ws l;
    rnn_layout(call, &d, &l);
    char *ws = call->workspace;
    int64_t *lens = (int64_t *)(ws + l.lens);
    const eng_tensor *seq = input(call, IN_SEQ);
    for (int64_t b = 0; b < d.batch; b++) {
        lens[b] = seq ? core_load_i64(seq->dtype, seq->data, b) : d.seq;
        if (lens[b] < 0 || lens[b] > d.seq)
            return core_error(FERRY_ERR_RUNTIME,
                              "sequence_lens[%lld] = %lld is outside [0, %lld]", (long long)b,
                              (long long)lens[b], (long long)d.seq);
    }
    const void *in[8] = {0};
    void *out[3] = {0};
    for (int i = 0; i < call->n_in && i < 8; i++) in[i] = call->in[i] ? call->in[i]->data : NULL;
    for (int o = 0; o < call->n_out && o < 3; o++)
        out[o] = call->out[o] ? call->out[o]->data : NULL;
    ferry_dtype dt = call->in[IN_X]->dtype;
    if (dt == FERRY_DTYPE_FLOAT16) {
        for (int i = 0; i < call->n_in && i < 8; i++) {
            if (!in[i] || i == IN_SEQ) continue;
            float *f = (float *)(ws + l.f16[i]);
            kern_half_to_float(in[i], f, eng_numel(call->in[i]));
            in[i] = f;
        }
        for (int o = 0; o < 3; o++)
            if (out[o]) out[o] = ws + l.f16[8 + o];
    }
    rnn_io io = {in[IN_X], in[IN_B], in[IN_H0], in[IN_C0], in[IN_P], out[0], out[1], out[2]};
    rnn_mul mu = {a, &d, in[IN_W], in[IN_R], call->packed, call->threads, ws + l.gemm};
    if (dt == FERRY_DTYPE_DOUBLE)
        rnn_compute_f64(a, &d, &io, &mu, lens, ws, &l);
    else
        rnn_compute_f32(a, &d, &io, &mu, lens, ws, &l);
    if (dt == FERRY_DTYPE_FLOAT16)
        for (int o = 0; o < 3; o++)
            if (out[o])
                kern_float_to_half(out[o], call->out[o]->data, eng_numel(call->out[o]));
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "", .name = "RNN", .since_version = 1, .init = rnn_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
    {.domain = "", .name = "RNN", .since_version = 7, .init = rnn_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
    {.domain = "", .name = "RNN", .since_version = 14, .init = rnn_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
    {.domain = "", .name = "GRU", .since_version = 1, .init = gru_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
    {.domain = "", .name = "GRU", .since_version = 3, .init = gru_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
    {.domain = "", .name = "GRU", .since_version = 7, .init = gru_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
    {.domain = "", .name = "GRU", .since_version = 14, .init = gru_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
    {.domain = "", .name = "LSTM", .since_version = 1, .init = lstm_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
    {.domain = "", .name = "LSTM", .since_version = 7, .init = lstm_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
    {.domain = "", .name = "LSTM", .since_version = 14, .init = lstm_init, .fini = free,
     .infer = rnn_infer, .run = rnn_run, .pack = rnn_pack, .unpack = rnn_unpack},
};

const eng_op_table eng_ops_rnn = {ops, sizeof(ops) / sizeof(ops[0])};

#else /* RNN_TYPED: the kernels for one element type, `real` */

/* Applies activation ACT in place to N values, clipped to [-CLIP, CLIP] first when CLIP > 0. */
static void TYPED(activate)(const rnn_act *act, real *v, int64_t n, real clip)
{
    if (clip > 0)
        for (int64_t i = 0; i < n; i++) v[i] = v[i] < -clip ? -clip : v[i] > clip ? clip : v[i];
    real al = (real)act->alpha, be = (real)act->beta;
    switch (act->kind) {
    case ACT_SIGMOID: TYPED(sigmoid_v)(v, n); break;
    case ACT_TANH: TYPED(tanh_v)(v, n); break;
    case ACT_RELU:
        for (int64_t i = 0; i < n; i++) v[i] = v[i] > 0 ? v[i] : 0;
        break;
    case ACT_AFFINE:
        for (int64_t i = 0; i < n; i++) v[i] = al * v[i] + be;
        break;
    case ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) v[i] = v[i] >= 0 ? v[i] : al * v[i];
        break;
    case ACT_THRESHOLDED_RELU:
        /* As the ThresholdedRelu operator and onnxruntime: strictly above alpha. */
        for (int64_t i = 0; i < n; i++) v[i] = v[i] > al ? v[i] : 0;
        break;
    case ACT_SCALED_TANH:
        for (int64_t i = 0; i < n; i++) v[i] = al * M(tanh)(be * v[i]);
        break;
    case ACT_HARD_SIGMOID:
        for (int64_t i = 0; i < n; i++) {
            real t = al * v[i] + be;
            v[i] = t < 0 ? 0 : t > 1 ? 1 : t;
        }
        break;
    case ACT_ELU:
        for (int64_t i = 0; i < n; i++) v[i] = v[i] >= 0 ? v[i] : al * (M(exp)(v[i]) - 1);
        break;
    case ACT_SOFTSIGN:
        for (int64_t i = 0; i < n; i++) v[i] = v[i] / (1 + M(fabs)(v[i]));
        break;
    case ACT_SOFTPLUS:
        /* log(1 + e^x) without overflow for large x. */
        for (int64_t i = 0; i < n; i++)
            v[i] = v[i] > 0 ? v[i] + M(log1p)(M(exp)(-v[i])) : M(log1p)(M(exp)(v[i]));
        break;
    }
}

/* One LSTM step for one batch entry. G holds the recurrent pre-activations of the gates
 * [i, o, f, c] and receives the input projection XW; H and C are updated in place. */
static void TYPED(lstm_cell)(const rnn_attrs *a, const rnn_act *act, int64_t hs, real *g,
                             const real *xw, const real *p, real *h, real *c)
{
    real clip = (real)a->clip;
    real *gi = g, *go = g + hs, *gf = g + 2 * hs, *gc = g + 3 * hs;
    for (int64_t k = 0; k < 4 * hs; k++) g[k] += xw[k];
    if (p)
        for (int64_t k = 0; k < hs; k++) {
            gi[k] += p[k] * c[k];
            gf[k] += p[2 * hs + k] * c[k];
        }
    TYPED(activate)(&act[0], gi, hs, clip);
    if (a->input_forget)
        for (int64_t k = 0; k < hs; k++) gf[k] = 1 - gi[k];
    else
        TYPED(activate)(&act[0], gf, hs, clip);
    TYPED(activate)(&act[1], gc, hs, clip);
    for (int64_t k = 0; k < hs; k++) c[k] = gf[k] * c[k] + gi[k] * gc[k];
    if (p)
        for (int64_t k = 0; k < hs; k++) go[k] += p[hs + k] * c[k];
    TYPED(activate)(&act[0], go, hs, clip);
    /* h(C) goes through the cell gate's slot, which is no longer needed. */
    for (int64_t k = 0; k < hs; k++) gc[k] = c[k];
    TYPED(activate)(&act[2], gc, hs, clip);
    for (int64_t k = 0; k < hs; k++) h[k] = go[k] * gc[k];
}

static void TYPED(rnn_compute)(const rnn_attrs *a, const rnn_dims *d, const rnn_io *io,
                               const rnn_mul *mu, const int64_t *lens, char *ws, const rnn_ws *l)
{
    const real *x = io->x, *bias = io->b;
    const real *h0 = io->h0, *c0 = io->c0, *peep = io->p;
    real *y = io->y, *yh = io->yh, *yc = io->yc;
    int64_t S = d->seq, B = d->batch, I = d->input, H = d->hidden, GH = d->gh;
    real *xw = (real *)(ws + l->xw), *gates = (real *)(ws + l->gates);
    real *hs = (real *)(ws + l->h), *cs = (real *)(ws + l->c), *hr = (real *)(ws + l->hr);
    real *bx = (real *)(ws + l->bx), *bh = (real *)(ws + l->bh);
    bool gru_lbr = a->cell == CELL_GRU && a->linear_before_reset;
    int64_t max_len = 0;
    bool short_seq = false;
    for (int64_t b = 0; b < B; b++) {
        max_len = lens[b] > max_len ? lens[b] : max_len;
        short_seq = short_seq || lens[b] < S;
    }
    /* Steps past an entry's length output zeros. */
    if (y && short_seq) memset(y, 0, (size_t)(S * d->dirs * B * H) * sizeof(real));
    for (int dir = 0; dir < d->dirs; dir++) {
        bool rev = dir == 1 || a->reverse;
        const real *bd = bias ? bias + dir * 2 * GH : NULL;
        const real *pd = peep ? peep + dir * 3 * H : NULL;
        const rnn_act *act = a->act[dir];
        /* Wb + Rb go into the input projection, except GRU's Rbh with linear_before_reset,
         * which the reset gate scales. */
        for (int64_t j = 0; j < GH; j++) bx[j] = bd ? bd[j] + bd[GH + j] : 0;
        if (gru_lbr)
            for (int64_t k = 0; k < H; k++) {
                bx[2 * H + k] = bd ? bd[2 * H + k] : 0;
                bh[k] = bd ? bd[GH + 2 * H + k] : 0;
            }
        for (int64_t row = 0; row < S * B; row++)
            memcpy(xw + row * GH, bx, (size_t)GH * sizeof(real));
        if (I > 0) MUL(mu, MUL_X, dir, S * B, x, 1, xw, GH);
        for (int64_t b = 0; b < B; b++) {
            real *hb = hs + b * H;
            if (h0)
                memcpy(hb, h0 + state_off(a, d, dir, b), (size_t)H * sizeof(real));
            else
                memset(hb, 0, (size_t)H * sizeof(real));
            if (a->cell != CELL_LSTM) continue;
            real *cb = cs + b * H;
            if (c0)
                memcpy(cb, c0 + state_off(a, d, dir, b), (size_t)H * sizeof(real));
            else
                memset(cb, 0, (size_t)H * sizeof(real));
        }
        for (int64_t s = 0; s < max_len; s++) {
            /* The recurrent products of the whole batch; entries already finished are computed
             * and ignored. GRU without linear_before_reset needs the reset gate before its
             * third product. */
            MUL(mu, MUL_H, dir, B, hs, 0, gates, GH);
            if (a->cell == CELL_GRU) {
                for (int64_t b = 0; b < B; b++) {
                    if (s >= lens[b]) continue;
                    int64_t t = rev ? lens[b] - 1 - s : s;
                    real *g = gates + b * GH;
                    const real *xr = xw + x_row(a, d, t, b) * GH;
                    for (int64_t k = 0; k < 2 * H; k++) g[k] += xr[k];
                    TYPED(activate)(&act[0], g, 2 * H, (real)a->clip);
                    if (!gru_lbr)
                        for (int64_t k = 0; k < H; k++) hr[b * H + k] = g[H + k] * hs[b * H + k];
                }
                if (!gru_lbr) {
                    /* Finished entries' rows of hr are stale but finite: harmless. */
                    for (int64_t b = 0; b < B; b++)
                        if (s >= lens[b]) memset(hr + b * H, 0, (size_t)H * sizeof(real));
                    MUL(mu, MUL_RH, dir, B, hr, 0, gates + 2 * H, GH);
                }
            }
            for (int64_t b = 0; b < B; b++) {
                if (s >= lens[b]) continue;
                int64_t t = rev ? lens[b] - 1 - s : s;
                real *g = gates + b * GH, *hb = hs + b * H;
                const real *xr = xw + x_row(a, d, t, b) * GH;
                switch (a->cell) {
                case CELL_RNN:
                    for (int64_t k = 0; k < H; k++) g[k] += xr[k];
                    TYPED(activate)(&act[0], g, H, (real)a->clip);
                    memcpy(hb, g, (size_t)H * sizeof(real));
                    break;
                case CELL_GRU: {
                    real *z = g, *rg = g + H, *hh = g + 2 * H;
                    if (gru_lbr)
                        for (int64_t k = 0; k < H; k++)
                            hh[k] = xr[2 * H + k] + rg[k] * (hh[k] + bh[k]);
                    else
                        for (int64_t k = 0; k < H; k++) hh[k] += xr[2 * H + k];
                    TYPED(activate)(&act[1], hh, H, (real)a->clip);
                    for (int64_t k = 0; k < H; k++) hb[k] = (1 - z[k]) * hh[k] + z[k] * hb[k];
                    break;
                }
                case CELL_LSTM:
                    TYPED(lstm_cell)(a, act, H, g, xr, pd, hb, cs + b * H);
                    break;
                }
                if (y) memcpy(y + y_off(a, d, dir, t, b), hb, (size_t)H * sizeof(real));
            }
        }
        for (int64_t b = 0; b < B; b++) {
            /* An empty sequence has no last state: zeros, as onnxruntime reports. */
            bool empty = lens[b] == 0;
            if (yh) {
                real *dst = yh + state_off(a, d, dir, b);
                if (empty)
                    memset(dst, 0, (size_t)H * sizeof(real));
                else
                    memcpy(dst, hs + b * H, (size_t)H * sizeof(real));
            }
            if (yc && a->cell == CELL_LSTM) {
                real *dst = yc + state_off(a, d, dir, b);
                if (empty)
                    memset(dst, 0, (size_t)H * sizeof(real));
                else
                    memcpy(dst, cs + b * H, (size_t)H * sizeof(real));
            }
        }
    }
}

#endif /* RNN_TYPED */
