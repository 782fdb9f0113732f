/* loss.c - NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
 *
 * Both take scores of shape [N, C, d1, ..., dk] and integer labels of shape [N, d1, ..., dk],
 * viewed as [N, C, D] and [N, D] with D the product of the trailing dims. Each of the N * D
 * positions gets a loss -weight[label] * logp[n, label, d] (zero, with zero weight, where the
 * label equals ignore_index); the reductions sum these, and "mean" divides by the sum of the
 * applied weights, as ONNX and PyTorch define it.
 *
 * SoftmaxCrossEntropyLoss first takes the log-softmax over C. Everything is computed in double:
 * the positions' losses and weights go to the workspace, so that the parallel part writes
 * disjoint slots and the final sums, done in order by one thread, do not depend on how the
 * work was split.
 */
#include "engine/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum reduction { RED_NONE, RED_SUM, RED_MEAN };

typedef struct loss_attrs {
    enum reduction reduction;
    bool has_ignore;
    int64_t ignore_index;
    bool softmax; /* SoftmaxCrossEntropyLoss: take the log-softmax of the scores first */
} loss_attrs;

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

/* Element I of a real tensor; float and double inline, the half types through dtype.c. */
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

static inline int64_t ld_label(ferry_dtype dt, const void *p, int64_t i)
{
    return dt == FERRY_DTYPE_INT64 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
}

static ferry_status *init_common(const eng_node *node, bool softmax, void **state)
{
    loss_attrs a = {0};
    a.softmax = softmax;
    const char *r = eng_attr_string(node, "reduction", "mean");
    if (!strcmp(r, "none"))
        a.reduction = RED_NONE;
    else if (!strcmp(r, "sum"))
        a.reduction = RED_SUM;
    else if (!strcmp(r, "mean"))
        a.reduction = RED_MEAN;
    else
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute reduction must be none, sum or mean, got '%s'", r);
    a.has_ignore = eng_attr_has(node, "ignore_index");
    a.ignore_index = eng_attr_int(node, "ignore_index", 0);
    loss_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *s = a;
    *state = s;
    return NULL;
}

static ferry_status *nll_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return init_common(node, false, state);
}

static ferry_status *sce_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return init_common(node, true, state);
}

/* The [N, C, D] view of the scores. */
typedef struct loss_geom {
    int64_t n, c, d;
} loss_geom;

static ferry_status *check(const eng_op_call *call, loss_geom *g)
{
    const eng_tensor *x = input(call, 0), *t = input(call, 1), *w = input(call, 2);
    if (!x || !t) return core_error(FERRY_ERR_INVALID_MODEL, "inputs 0 and 1 are required");
    if (!is_real(x->dtype)) return eng_bad_dtype("scores", x->dtype);
    if (t->dtype != FERRY_DTYPE_INT64 && t->dtype != FERRY_DTYPE_INT32)
        return eng_bad_dtype("labels", t->dtype);
    char s1[128], s2[128];
    if (x->rank < 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "scores must have shape [N, C, ...], got %s",
                          eng_shape_str(x, s1, sizeof(s1)));
    bool ok = t->rank == x->rank - 1 && t->dims[0] == x->dims[0];
    for (int i = 1; ok && i < t->rank; i++) ok = t->dims[i] == x->dims[i + 1];
    if (!ok)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "labels of shape %s do not match scores of shape %s (expected the "
                          "scores' shape without dim 1)",
                          eng_shape_str(t, s1, sizeof(s1)), eng_shape_str(x, s2, sizeof(s2)));
    g->n = x->dims[0];
    g->c = x->dims[1];
    g->d = 1;
    for (int i = 2; i < x->rank; i++) g->d *= x->dims[i];
    if (w) {
        if (w->dtype != x->dtype)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "weights of type %s differ from scores of type %s",
                              ferry_dtype_name(w->dtype), ferry_dtype_name(x->dtype));
        if (w->rank != 1 || w->dims[0] != g->c)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "weights must have shape [%lld] (one per class), got %s",
                              (long long)g->c, eng_shape_str(w, s1, sizeof(s1)));
    }
    return NULL;
}

static ferry_status *loss_infer(eng_op_call *call)
{
    const loss_attrs *a = call->state;
    loss_geom g;
    ferry_status *err = check(call, &g);
    if (err) return err;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    y->dtype = x->dtype;
    if (a->reduction == RED_NONE)
        eng_set_shape(y, call->in[1]->rank, call->in[1]->dims);
    else
        eng_set_shape(y, 0, NULL);
    eng_tensor *lp = output(call, 1);
    if (lp) {
        if (!a->softmax) return core_error(FERRY_ERR_INVALID_MODEL, "the operator has one output");
        eng_same_shape(lp, x);
    }
    /* Per position: loss and applied weight; with softmax also the log-sum-exp and the
     * running maximum it starts from. */
    size_t per = a->softmax ? 4 : 2;
    call->workspace_size = (size_t)(g.n * g.d) * per * sizeof(double);
    return NULL;
}

typedef struct loss_job {
    const loss_attrs *a;
    const eng_tensor *x, *t, *w;
    eng_tensor *log_prob;
    loss_geom g;
    double *loss, *wsum, *lse, *mx;
} loss_job;

/* Positions [begin, end) of the flattened [N, D]: their log-sum-exp over C, walked class by
 * class so that reads stay contiguous along D. */
static void job_lse(const loss_job *j, int64_t begin, int64_t end)
{
    const eng_tensor *x = j->x;
    int64_t c_n = j->g.c, d_n = j->g.d;
    for (int64_t p = begin; p < end;) {
        int64_t n = p / d_n, d0 = p % d_n;
        int64_t d1 = d_n < d0 + (end - p) ? d_n : d0 + (end - p);
        const int64_t base = n * c_n * d_n, q = p - d0; /* q: position of (n, 0) */
        for (int64_t d = d0; d < d1; d++) j->mx[q + d] = -INFINITY;
        for (int64_t c = 0; c < c_n; c++)
            for (int64_t d = d0; d < d1; d++) {
                double v = ld(x->dtype, x->data, base + c * d_n + d);
                if (v > j->mx[q + d]) j->mx[q + d] = v;
            }
        for (int64_t d = d0; d < d1; d++) j->lse[q + d] = 0.0;
        for (int64_t c = 0; c < c_n; c++)
            for (int64_t d = d0; d < d1; d++)
                j->lse[q + d] += exp(ld(x->dtype, x->data, base + c * d_n + d) - j->mx[q + d]);
        for (int64_t d = d0; d < d1; d++) j->lse[q + d] = j->mx[q + d] + log(j->lse[q + d]);
        if (j->log_prob)
            for (int64_t c = 0; c < c_n; c++)
                for (int64_t d = d0; d < d1; d++) {
                    int64_t i = base + c * d_n + d;
                    st(j->log_prob->dtype, j->log_prob->data, i,
                       ld(x->dtype, x->data, i) - j->lse[q + d]);
                }
        p += d1 - d0;
    }
}

static void job_fn(void *arg, int64_t begin, int64_t end)
{
    const loss_job *j = arg;
    if (j->a->softmax) job_lse(j, begin, end);
    const eng_tensor *x = j->x, *t = j->t, *w = j->w;
    int64_t c_n = j->g.c, d_n = j->g.d;
    for (int64_t p = begin; p < end; p++) {
        int64_t label = ld_label(t->dtype, t->data, p);
        if (j->a->has_ignore && label == j->a->ignore_index) {
            j->loss[p] = 0.0;
            j->wsum[p] = 0.0;
            continue;
        }
        int64_t n = p / d_n, d = p % d_n;
        double v = ld(x->dtype, x->data, (n * c_n + label) * d_n + d);
        if (j->a->softmax) v -= j->lse[p];
        double wt = w ? ld(w->dtype, w->data, label) : 1.0;
        j->loss[p] = -v * wt;
        j->wsum[p] = wt;
    }
}

static ferry_status *loss_run(eng_op_call *call)
{
    const loss_attrs *a = call->state;
    loss_geom g;
    ferry_status *err = check(call, &g);
    if (err) return err;
    const eng_tensor *t = call->in[1];
    int64_t m = g.n * g.d;
    /* Labels index the scores: check them all before any thread reads through them. */
    for (int64_t p = 0; p < m; p++) {
        int64_t label = ld_label(t->dtype, t->data, p);
        if (a->has_ignore && label == a->ignore_index) continue;
        if (label < 0 || label >= g.c)
            return core_error(FERRY_ERR_RUNTIME,
                              "label %lld at position %lld is out of range for %lld classes",
                              (long long)label, (long long)p, (long long)g.c);
    }
    double *ws = call->workspace;
    loss_job j = {.a = a,
                  .x = call->in[0],
                  .t = t,
                  .w = input(call, 2),
                  .log_prob = output(call, 1),
                  .g = g,
                  .loss = ws,
                  .wsum = ws + m};
    if (a->softmax) {
        j.lse = ws + 2 * m;
        j.mx = ws + 3 * m;
    }
    /* Each position costs about C reads with softmax, one without. */
    int64_t cost = a->softmax ? 4 * (g.c > 0 ? g.c : 1) : 1;
    int64_t grain = 16384 / cost > 0 ? 16384 / cost : 1;
    if (m > 0) core_parallel_for(call->threads, job_fn, &j, m, grain);

    eng_tensor *y = call->out[0];
    if (a->reduction == RED_NONE) {
        for (int64_t p = 0; p < m; p++) st(y->dtype, y->data, p, j.loss[p]);
        return NULL;
    }
    double sum = 0.0, wsum = 0.0;
    for (int64_t p = 0; p < m; p++) {
        sum += j.loss[p];
        wsum += j.wsum[p];
    }
    /* Mean over no counted position is 0 / 0: NaN, as in the reference and PyTorch. */
    st(y->dtype, y->data, 0, a->reduction == RED_MEAN ? sum / wsum : sum);
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "",
     .name = "NegativeLogLikelihoodLoss",
     .since_version = 12,
     .init = nll_init,
     .fini = free,
     .infer = loss_infer,
     .run = loss_run},
    {.domain = "",
     .name = "SoftmaxCrossEntropyLoss",
     .since_version = 12,
     .init = sce_init,
     .fini = free,
     .infer = loss_infer,
     .run = loss_run},
};

const eng_op_table eng_ops_loss = {ops, sizeof(ops) / sizeof(ops[0])};
