/* ml_linear.c - LinearClassifier, LinearRegressor, SVMClassifier, SVMRegressor and Normalizer
 * (ai.onnx.ml 1).
 *
 * All of them work row by row on a [N, F] (or [F]) input of float, double, int32 or int64, read
 * as doubles, and write float outputs; rows are split across the thread pool. Coefficients stay
 * in the model's attribute arrays; init only validates what it can without knowing F, and infer
 * checks the rest against the input's feature count.
 *
 * Class labels come from classlabels_ints or classlabels_strings (string outputs point at the
 * model's strings). Semantics follow onnxruntime, which converters such as skl2onnx target,
 * except where noted:
 *   - LinearClassifier: scores = X * coefficients^T + intercepts, E rows of coefficients. With
 *     E >= 2 the label is the arg max and Z the transformed scores. With one row and two class
 *     labels, the label is labels[score > 0] and Z is [1 - t, t] with t the score (or its
 *     logistic / probit when post_transform asks; onnxruntime ignores LOGISTIC there).
 *     multi_class does not change the computation (one-vs-rest probabilities are normalised by
 *     a Normalizer node after it, as skl2onnx writes them).
 *   - LinearRegressor: Y = X * coefficients^T + intercepts, then post_transform over the targets
 *     (onnxruntime applies only PROBIT to a single target).
 *   - SVMClassifier: with vectors_per_class, libsvm's one-vs-one machine: kernels against the
 *     support vectors, one decision value per class pair (i, j) (positive votes for i), label =
 *     most votes (first on ties). Without prob_a/prob_b, Z holds the transformed pair decision
 *     values ([-d, d] for two classes; onnxruntime writes [1 - d, d] there when post_transform
 *     is not NONE); with them, Platt-scaled pair probabilities coupled into class
 *     probabilities by libsvm's multiclass_probability (in double, so they match libsvm). Without
 *     support vectors it is a linear machine: one coefficient row per class, plus rho[0], and
 *     the label is the arg max (onnxruntime labels two classes by thresholding the best score).
 *   - SVMRegressor: Y = sum(coefficients * kernel(X, support_vectors)) + rho[0] (or a linear
 *     model without support vectors); one_class turns it into +1 / -1.
 *   - Normalizer: per row, MAX divides by the largest value, L1 by the sum of absolute values,
 *     L2 by the Euclidean norm; a zero divisor leaves the row unchanged.
 */
#include "engine/ops/ml_common.h"

#define GRAIN 32

/* --- shared row helpers ------------------------------------------------------------------- */

static double dot(const double *x, const float *w, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * w[i];
        s1 += x[i + 1] * w[i + 1];
        s2 += x[i + 2] * w[i + 2];
        s3 += x[i + 3] * w[i + 3];
    }
    for (; i < n; i++) s0 += x[i] * w[i];
    return (s0 + s1) + (s2 + s3);
}

static void store_row(float *z, const double *s, int64_t n)
{
    for (int64_t k = 0; k < n; k++) z[k] = (float)s[k];
}

static ferry_status *float_list(const eng_node *node, const char *name, bool required,
                                const float **out, size_t *count)
{
    *out = eng_attr_floats(node, name, count);
    if (!*out && required)
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute %s is missing", name);
    return NULL;
}

/* Sets output I (when requested) to DTYPE with RANK dims. */
static void set_out(eng_op_call *call, int i, ferry_dtype dtype, int rank, int64_t d0, int64_t d1)
{
    if (call->n_out <= i || !call->out[i]) return;
    int64_t dims[2] = {d0, d1};
    call->out[i]->dtype = dtype;
    eng_set_shape(call->out[i], rank, dims);
}

static void *out_data(const eng_op_call *call, int i)
{
    return call->n_out > i && call->out[i] ? call->out[i]->data : NULL;
}

/* --- LinearClassifier and LinearRegressor --------------------------------------------------- */

typedef struct linear {
    bool classifier;
    const float *coef, *intercepts;
    size_t n_coef, n_int;
    ml_labels labels;
    int64_t targets; /* regressor */
    ml_transform transform;
} linear;

static ferry_status *linear_init(const eng_node *node, bool classifier, void **state)
{
    linear *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    ferry_status *st;
    s->classifier = classifier;
    if ((st = float_list(node, "coefficients", classifier, &s->coef, &s->n_coef)) ||
        (st = float_list(node, "intercepts", false, &s->intercepts, &s->n_int)) ||
        (st = ml_parse_transform(node, &s->transform)))
        goto fail;
    if (classifier) {
        if ((st = ml_read_labels(node, "classlabels_ints", "classlabels_strings", &s->labels)))
            goto fail;
        if (s->n_int && s->n_coef % s->n_int) {
            st = core_error(FERRY_ERR_INVALID_MODEL,
                            "coefficients has %zu entries, not a multiple of the %zu intercepts",
                            s->n_coef, s->n_int);
            goto fail;
        }
    } else {
        s->targets = eng_attr_int(node, "targets", 1);
        if (s->targets <= 0) {
            st = core_error(FERRY_ERR_INVALID_MODEL, "targets is %lld; it must be positive",
                            (long long)s->targets);
            goto fail;
        }
        if (s->n_coef % (size_t)s->targets) {
            st = core_error(FERRY_ERR_INVALID_MODEL,
                            "coefficients has %zu entries, not a multiple of targets (%lld)",
                            s->n_coef, (long long)s->targets);
            goto fail;
        }
        if (s->n_int && s->n_int != (size_t)s->targets) {
            st = core_error(FERRY_ERR_INVALID_MODEL, "intercepts has %zu entries for %lld targets",
                            s->n_int, (long long)s->targets);
            goto fail;
        }
    }
    *state = s;
    return NULL;
fail:
    free(s);
    return st;
}

static ferry_status *linear_classifier_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return linear_init(node, true, state);
}

static ferry_status *linear_regressor_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return linear_init(node, false, state);
}

/* Rows of coefficients for F features; error when they do not fit. */
static ferry_status *linear_rows(const linear *s, int64_t f, int64_t *rows)
{
    if (f <= 0 || s->n_coef % (size_t)f)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X has %lld features but coefficients has %zu entries, not a "
                          "multiple of it",
                          (long long)f, s->n_coef);
    int64_t e = (int64_t)s->n_coef / f;
    if (e == 0) return core_error(FERRY_ERR_INVALID_MODEL, "coefficients is empty");
    if (!s->classifier && e != s->targets)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X has %lld features but coefficients hold %lld per target",
                          (long long)f, (long long)(s->n_coef / (size_t)s->targets));
    if (s->classifier && s->n_int && (size_t)e != s->n_int)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X has %lld features, so coefficients hold %lld classes, but "
                          "intercepts has %zu entries",
                          (long long)f, (long long)e, s->n_int);
    if (s->classifier && e >= 2 && (size_t)e != s->labels.n)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X has %lld features, so coefficients hold %lld classes, but "
                          "there are %zu class labels",
                          (long long)f, (long long)e, s->labels.n);
    *rows = e;
    return NULL;
}

static ferry_status *linear_infer(eng_op_call *call)
{
    const linear *s = call->state;
    int64_t n, f, e;
    ferry_status *st = ml_matrix(call->in[0], &n, &f);
    if (st || (st = linear_rows(s, f, &e))) return st;
    if (s->classifier) {
        int64_t cols = e == 1 && s->labels.n == 2 ? 2 : e;
        set_out(call, 0, ml_label_dtype(&s->labels), 1, n, 0);
        set_out(call, 1, FERRY_DTYPE_FLOAT, 2, n, cols);
    } else {
        set_out(call, 0, FERRY_DTYPE_FLOAT, 2, n, e);
    }
    call->workspace_size = ml_rows_workspace(n, GRAIN, (size_t)(f + e + 2) * sizeof(double));
    return NULL;
}

typedef struct linear_job {
    const linear *s;
    const eng_tensor *x;
    int64_t f, e;
    void *y; /* int64 or string labels */
    float *z;
} linear_job;

static void linear_rows_run(const void *arg, int64_t r0, int64_t r1, void *scratch)
{
    const linear_job *j = arg;
    const linear *s = j->s;
    int64_t f = j->f, e = j->e;
    double *x = scratch, *sc = x + f;
    for (int64_t r = r0; r < r1; r++) {
        ml_load_row(j->x->dtype, j->x->data, r * f, f, x);
        for (int64_t k = 0; k < e; k++)
            sc[k] = dot(x, s->coef + k * f, f) + (s->n_int ? s->intercepts[k] : 0.0);
        if (!s->classifier) {
            ml_transform_row(s->transform, sc, e);
            if (j->z) store_row(j->z + r * e, sc, e);
            continue;
        }
        if (e == 1) {
            bool pos = sc[0] > 0;
            if (j->y && s->labels.n == 2)
                ml_store_label(&s->labels, j->y, r, pos ? 1 : 0);
            else if (j->y)
                ml_store_bit(&s->labels, j->y, r, pos);
            if (s->labels.n == 2) {
                double t = sc[0];
                if (s->transform == ML_LOGISTIC)
                    t = ml_logistic(t);
                else if (s->transform == ML_PROBIT)
                    t = ml_probit(t);
                if (j->z) j->z[2 * r] = (float)(1.0 - t), j->z[2 * r + 1] = (float)t;
            } else {
                ml_transform_row(s->transform, sc, 1);
                if (j->z) j->z[r] = (float)sc[0];
            }
            continue;
        }
        int64_t best = 0;
        for (int64_t k = 1; k < e; k++)
            if (sc[k] > sc[best]) best = k;
        if (j->y) ml_store_label(&s->labels, j->y, r, (size_t)best);
        ml_transform_row(s->transform, sc, e);
        if (j->z) store_row(j->z + r * e, sc, e);
    }
}

static ferry_status *linear_run(eng_op_call *call)
{
    const linear *s = call->state;
    int64_t n, f, e;
    ferry_status *st = ml_matrix(call->in[0], &n, &f);
    if (st || (st = linear_rows(s, f, &e))) return st;
    linear_job job = {s, call->in[0], f, e, NULL, NULL};
    if (s->classifier) {
        job.y = out_data(call, 0);
        job.z = out_data(call, 1);
    } else {
        job.z = out_data(call, 0);
    }
    ml_parallel_rows(call, n, GRAIN, (size_t)(f + e + 2) * sizeof(double), linear_rows_run, &job);
    return NULL;
}

/* --- SVMClassifier and SVMRegressor ----------------------------------------------------- */

enum { K_LINEAR = 0, K_POLY, K_RBF, K_SIGMOID };

typedef struct svm {
    bool classifier;
    int kernel;
    double gamma, coef0, degree;
    const float *coef, *sv, *rho, *prob_a, *prob_b;
    size_t n_coef, n_sv, n_rho, n_prob;
    int64_t vectors; /* support vectors; 0: a linear machine on coefficients */
    int64_t features;
    /* classifier */
    int64_t classes;
    int64_t *start; /* first support vector of each class */
    const int64_t *vpc;
    ml_labels labels;
    bool one_class; /* regressor */
    ml_transform transform;
} svm;

static void svm_free(void *p)
{
    svm *s = p;
    if (!s) return;
    free(s->start);
    free(s);
}

static ferry_status *svm_kernel(const eng_node *node, svm *s)
{
    const char *k = eng_attr_string(node, "kernel_type", "LINEAR");
    static const char *const names[] = {"LINEAR", "POLY", "RBF", "SIGMOID"};
    s->kernel = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(k, names[i])) s->kernel = i;
    if (s->kernel < 0)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "kernel_type '%s' is not one of LINEAR, POLY, RBF, SIGMOID", k);
    size_t n;
    const float *p = eng_attr_floats(node, "kernel_params", &n);
    if (p && n != 0 && n < 3)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "kernel_params has %zu entries; it holds gamma, coef0 and degree", n);
    if (p && n >= 3) s->gamma = p[0], s->coef0 = p[1], s->degree = p[2];
    return NULL;
}

static ferry_status *svm_init(const eng_node *node, bool classifier, void **state)
{
    svm *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    ferry_status *st;
    size_t n;
    s->classifier = classifier;
    if ((st = svm_kernel(node, s)) || (st = ml_parse_transform(node, &s->transform)) ||
        (st = float_list(node, "coefficients", true, &s->coef, &s->n_coef)) ||
        (st = float_list(node, "support_vectors", false, &s->sv, &s->n_sv)) ||
        (st = float_list(node, "rho", false, &s->rho, &s->n_rho)))
        goto fail;
    if (!classifier) {
        s->one_class = eng_attr_int(node, "one_class", 0) != 0;
        s->vectors = eng_attr_int(node, "n_supports", 0);
        if (s->vectors < 0) {
            st = core_error(FERRY_ERR_INVALID_MODEL, "n_supports is negative");
            goto fail;
        }
        if (s->vectors > 0) {
            if (s->n_sv % (size_t)s->vectors || s->n_sv == 0) {
                st = core_error(FERRY_ERR_INVALID_MODEL,
                                "support_vectors has %zu entries, not a multiple of n_supports "
                                "(%lld)",
                                s->n_sv, (long long)s->vectors);
                goto fail;
            }
            if (s->n_coef != (size_t)s->vectors) {
                st = core_error(FERRY_ERR_INVALID_MODEL,
                                "coefficients has %zu entries for %lld support vectors", s->n_coef,
                                (long long)s->vectors);
                goto fail;
            }
            s->features = (int64_t)(s->n_sv / (size_t)s->vectors);
        } else {
            s->features = (int64_t)s->n_coef;
        }
        *state = s;
        return NULL;
    }

    if ((st = ml_read_labels(node, "classlabels_ints", "classlabels_strings", &s->labels)))
        goto fail;
    s->vpc = eng_attr_ints(node, "vectors_per_class", &n);
    s->classes = s->labels.n ? (int64_t)s->labels.n : 1;
    const float *pb;
    size_t n_pb;
    s->prob_a = eng_attr_floats(node, "prob_a", &s->n_prob);
    pb = eng_attr_floats(node, "prob_b", &n_pb);
    s->prob_b = pb;
    if (s->n_prob != n_pb) {
        st = core_error(FERRY_ERR_INVALID_MODEL, "prob_a has %zu entries but prob_b has %zu",
                        s->n_prob, n_pb);
        goto fail;
    }
    for (size_t i = 0; s->vpc && i < n; i++) {
        if (s->vpc[i] < 0 || s->vpc[i] > INT32_MAX) {
            st = core_error(FERRY_ERR_INVALID_MODEL, "vectors_per_class[%zu] is %lld", i,
                            (long long)s->vpc[i]);
            goto fail;
        }
        s->vectors += s->vpc[i];
    }
    if (s->vectors == 0) { /* a linear machine: one coefficient row per class */
        if (s->n_coef % (size_t)s->classes) {
            st = core_error(FERRY_ERR_INVALID_MODEL,
                            "coefficients has %zu entries, not a multiple of the %lld classes",
                            s->n_coef, (long long)s->classes);
            goto fail;
        }
        s->features = (int64_t)(s->n_coef / (size_t)s->classes);
        *state = s;
        return NULL;
    }
    int64_t c = s->classes, pairs = c * (c - 1) / 2;
    if (s->labels.n == 0) {
        st = core_error(FERRY_ERR_INVALID_MODEL,
                        "classlabels_ints or classlabels_strings must be given");
        goto fail;
    }
    if (n != (size_t)c || c < 2) {
        st = core_error(FERRY_ERR_INVALID_MODEL,
                        "vectors_per_class has %zu entries but there are %lld class labels", n,
                        (long long)c);
        goto fail;
    }
    if (s->n_sv == 0 || s->n_sv % (size_t)s->vectors) {
        st = core_error(FERRY_ERR_INVALID_MODEL,
                        "support_vectors has %zu entries, not a multiple of the %lld support "
                        "vectors",
                        s->n_sv, (long long)s->vectors);
        goto fail;
    }
    s->features = (int64_t)(s->n_sv / (size_t)s->vectors);
    if (s->n_coef != (size_t)((c - 1) * s->vectors)) {
        st = core_error(FERRY_ERR_INVALID_MODEL,
                        "coefficients has %zu entries; %lld classes and %lld support vectors "
                        "need %lld",
                        s->n_coef, (long long)c, (long long)s->vectors,
                        (long long)((c - 1) * s->vectors));
        goto fail;
    }
    if (s->n_rho != (size_t)pairs) {
        st = core_error(FERRY_ERR_INVALID_MODEL, "rho has %zu entries; %lld classes need %lld",
                        s->n_rho, (long long)c, (long long)pairs);
        goto fail;
    }
    if (s->n_prob && s->n_prob != (size_t)pairs) {
        st = core_error(FERRY_ERR_INVALID_MODEL, "prob_a has %zu entries; %lld classes need %lld",
                        s->n_prob, (long long)c, (long long)pairs);
        goto fail;
    }
    s->start = malloc((size_t)c * sizeof(int64_t));
    if (!s->start) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (int64_t i = 0, at = 0; i < c; i++) {
        s->start[i] = at;
        at += s->vpc[i];
    }
    *state = s;
    return NULL;
fail:
    svm_free(s);
    return st;
}

static ferry_status *svm_classifier_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return svm_init(node, true, state);
}

static ferry_status *svm_regressor_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return svm_init(node, false, state);
}

static double kernel(const svm *s, const double *x, const float *v, int64_t f)
{
    switch (s->kernel) {
    case K_POLY:
        return pow(s->gamma * dot(x, v, f) + s->coef0, s->degree);
    case K_RBF: {
        double sum = 0;
        for (int64_t i = 0; i < f; i++) {
            double d = x[i] - v[i];
            sum += d * d;
        }
        return exp(-s->gamma * sum);
    }
    case K_SIGMOID:
        return tanh(s->gamma * dot(x, v, f) + s->coef0);
    default:
        return dot(x, v, f);
    }
}

/* Z columns of the classifier. */
static int64_t svm_columns(const svm *s)
{
    if (s->vectors == 0 || s->n_prob) return s->classes;
    return s->classes > 2 ? s->classes * (s->classes - 1) / 2 : 2;
}

/* Per-row scratch: the row, kernels, pair scores, votes and the libsvm probability matrices. */
static size_t svm_scratch(const svm *s)
{
    int64_t c = s->classes;
    return (size_t)(s->features + s->vectors + 3 * c * c + 3 * c + 4) * sizeof(double);
}

static ferry_status *svm_check(const svm *s, const eng_tensor *x, int64_t *n)
{
    int64_t f;
    ferry_status *st = ml_matrix(x, n, &f);
    if (st) return st;
    if (f != s->features)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X has %lld features but the model's %s have %lld", (long long)f,
                          s->vectors ? "support vectors" : "coefficients", (long long)s->features);
    return NULL;
}

static ferry_status *svm_infer(eng_op_call *call)
{
    const svm *s = call->state;
    int64_t n;
    ferry_status *st = svm_check(s, call->in[0], &n);
    if (st) return st;
    if (s->classifier) {
        set_out(call, 0, ml_label_dtype(&s->labels), 1, n, 0);
        set_out(call, 1, FERRY_DTYPE_FLOAT, 2, n, svm_columns(s));
    } else {
        set_out(call, 0, FERRY_DTYPE_FLOAT, 2, n, 1);
    }
    call->workspace_size = ml_rows_workspace(n, GRAIN, svm_scratch(s));
    return NULL;
}

/* libsvm's sigmoid_predict: 1 / (1 + exp(A d + B)), written to avoid cancellation. */
static double sigmoid_predict(double d, double a, double b)
{
    double f = d * a + b;
    return f >= 0 ? exp(-f) / (1.0 + exp(-f)) : 1.0 / (1.0 + exp(f));
}

/* libsvm's multiclass_probability (Wu, Lin and Weng's pairwise coupling, method 2): class
 * probabilities P[K] from pairwise ones R[K*K]. Q is K*K scratch, QP K. */
static void multiclass_probability(int64_t k, const double *r, double *p, double *q, double *qp)
{
    int64_t max_iter = k > 100 ? k : 100;
    double eps = 0.005 / (double)k;
    for (int64_t t = 0; t < k; t++) {
        p[t] = 1.0 / (double)k;
        q[t * k + t] = 0;
        for (int64_t j = 0; j < t; j++) {
            q[t * k + t] += r[j * k + t] * r[j * k + t];
            q[t * k + j] = q[j * k + t];
        }
        for (int64_t j = t + 1; j < k; j++) {
            q[t * k + t] += r[j * k + t] * r[j * k + t];
            q[t * k + j] = -r[j * k + t] * r[t * k + j];
        }
    }
    for (int64_t iter = 0; iter < max_iter; iter++) {
        double pqp = 0;
        for (int64_t t = 0; t < k; t++) {
            qp[t] = 0;
            for (int64_t j = 0; j < k; j++) qp[t] += q[t * k + j] * p[j];
            pqp += p[t] * qp[t];
        }
        double max_error = 0;
        for (int64_t t = 0; t < k; t++) {
            double err = fabs(qp[t] - pqp);
            if (err > max_error) max_error = err;
        }
        if (max_error < eps) break;
        for (int64_t t = 0; t < k; t++) {
            double diff = (-qp[t] + pqp) / q[t * k + t];
            p[t] += diff;
            pqp = (pqp + diff * (diff * q[t * k + t] + 2 * qp[t])) / (1 + diff) / (1 + diff);
            for (int64_t j = 0; j < k; j++) {
                qp[j] = (qp[j] + diff * q[t * k + j]) / (1 + diff);
                p[j] /= (1 + diff);
            }
        }
    }
}

typedef struct svm_job {
    const svm *s;
    const eng_tensor *x;
    void *y; /* int64 or string labels */
    float *z;
} svm_job;

static void svm_classify_row(const svm *s, const double *x, double *ker, double *sc, double *votes,
                             double *r, double *q, double *qp, double *prob, void *y, int64_t row,
                             float *z)
{
    int64_t c = s->classes, f = s->features;
    if (s->vectors == 0) {
        for (int64_t k = 0; k < c; k++)
            sc[k] = dot(x, s->coef + k * f, f) + (s->n_rho ? s->rho[0] : 0.0);
        int64_t best = 0;
        for (int64_t k = 1; k < c; k++)
            if (sc[k] > sc[best]) best = k;
        if (y && c == 1 && s->labels.n != 1)
            ml_store_bit(&s->labels, y, row, sc[0] > 0);
        else if (y)
            ml_store_label(&s->labels, y, row, (size_t)best);
        ml_transform_row(s->transform, sc, c);
        if (z) store_row(z, sc, c);
        return;
    }
    for (int64_t v = 0; v < s->vectors; v++) ker[v] = kernel(s, x, s->sv + v * f, f);
    for (int64_t k = 0; k < c; k++) votes[k] = 0;
    int64_t pair = 0;
    for (int64_t i = 0; i < c; i++) {
        for (int64_t j = i + 1; j < c; j++, pair++) {
            /* Class i's vectors use coefficient row j - 1, class j's row i. */
            double d = 0;
            const float *ci = s->coef + (j - 1) * s->vectors, *cj = s->coef + i * s->vectors;
            for (int64_t m = s->start[i]; m < s->start[i] + s->vpc[i]; m++) d += ci[m] * ker[m];
            for (int64_t m = s->start[j]; m < s->start[j] + s->vpc[j]; m++) d += cj[m] * ker[m];
            d += s->rho[pair];
            sc[pair] = d;
            votes[d > 0 ? i : j] += 1;
        }
    }
    int64_t best = 0;
    for (int64_t k = 1; k < c; k++)
        if (votes[k] > votes[best]) best = k;
    if (y) ml_store_label(&s->labels, y, row, (size_t)best);
    if (!z) return;
    if (s->n_prob) {
        const double min_prob = 1e-7;
        pair = 0;
        for (int64_t i = 0; i < c; i++) {
            for (int64_t j = i + 1; j < c; j++, pair++) {
                double p = sigmoid_predict(sc[pair], s->prob_a[pair], s->prob_b[pair]);
                p = p < min_prob ? min_prob : p > 1 - min_prob ? 1 - min_prob : p;
                r[i * c + j] = p;
                r[j * c + i] = 1 - p;
            }
        }
        multiclass_probability(c, r, prob, q, qp);
        ml_transform_row(s->transform, prob, c);
        store_row(z, prob, c);
    } else if (c == 2) {
        double two[2] = {-sc[0], sc[0]};
        ml_transform_row(s->transform, two, 2);
        store_row(z, two, 2);
    } else {
        ml_transform_row(s->transform, sc, pair);
        store_row(z, sc, pair);
    }
}

static void svm_rows_run(const void *arg, int64_t r0, int64_t r1, void *scratch)
{
    const svm_job *j = arg;
    const svm *s = j->s;
    int64_t f = s->features, c = s->classes;
    double *x = scratch, *ker = x + f, *sc = ker + s->vectors, *votes = sc + c * c;
    double *r = votes + c, *q = r + c * c, *qp = q + c * c, *prob = qp + c;
    int64_t cols = s->classifier ? svm_columns(s) : 1;
    for (int64_t row = r0; row < r1; row++) {
        ml_load_row(j->x->dtype, j->x->data, row * f, f, x);
        if (s->classifier) {
            svm_classify_row(s, x, ker, sc, votes, r, q, qp, prob, j->y, row,
                             j->z ? j->z + row * cols : NULL);
            continue;
        }
        double v;
        if (s->vectors) {
            v = s->n_rho ? s->rho[0] : 0.0;
            for (int64_t m = 0; m < s->vectors; m++)
                v += s->coef[m] * kernel(s, x, s->sv + m * f, f);
        } else {
            v = dot(x, s->coef, f) + (s->n_rho ? s->rho[0] : 0.0);
        }
        if (s->one_class) v = v > 0 ? 1.0 : -1.0;
        ml_transform_row(s->transform, &v, 1);
        if (j->z) j->z[row] = (float)v;
    }
}

static ferry_status *svm_run(eng_op_call *call)
{
    const svm *s = call->state;
    int64_t n;
    ferry_status *st = svm_check(s, call->in[0], &n);
    if (st) return st;
    svm_job job = {s, call->in[0], NULL, NULL};
    if (s->classifier) {
        job.y = out_data(call, 0);
        job.z = out_data(call, 1);
    } else {
        job.z = out_data(call, 0);
    }
    ml_parallel_rows(call, n, GRAIN, svm_scratch(s), svm_rows_run, &job);
    return NULL;
}

/* --- Normalizer --------------------------------------------------------------------------- */

enum { NORM_MAX = 0, NORM_L1, NORM_L2 };

static ferry_status *normalizer_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    const char *norm = eng_attr_string(node, "norm", "MAX");
    static const char *const names[] = {"MAX", "L1", "L2"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(norm, names[i])) {
            int *s = malloc(sizeof(int));
            if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            *s = i;
            *state = s;
            return NULL;
        }
    }
    return core_error(FERRY_ERR_INVALID_MODEL, "norm '%s' is not one of MAX, L1, L2", norm);
}

static ferry_status *normalizer_infer(eng_op_call *call)
{
    const eng_tensor *x = call->in[0];
    int64_t n, f;
    ferry_status *st = ml_matrix(x, &n, &f);
    if (st) return st;
    eng_set_shape(call->out[0], x->rank, x->dims);
    call->out[0]->dtype = FERRY_DTYPE_FLOAT;
    call->workspace_size = ml_rows_workspace(n, GRAIN, (size_t)f * sizeof(double));
    return NULL;
}

typedef struct norm_job {
    int norm;
    const eng_tensor *x;
    int64_t f;
    float *y;
} norm_job;

static void normalizer_rows(const void *arg, int64_t r0, int64_t r1, void *scratch)
{
    const norm_job *j = arg;
    int64_t f = j->f;
    double *x = scratch;
    for (int64_t r = r0; r < r1; r++) {
        ml_load_row(j->x->dtype, j->x->data, r * f, f, x);
        double d = 0;
        if (j->norm == NORM_MAX) {
            d = f ? x[0] : 0;
            for (int64_t i = 1; i < f; i++)
                if (x[i] > d) d = x[i];
        } else if (j->norm == NORM_L1) {
            for (int64_t i = 0; i < f; i++) d += fabs(x[i]);
        } else {
            for (int64_t i = 0; i < f; i++) d += x[i] * x[i];
            d = sqrt(d);
        }
        if (d == 0) d = 1;
        for (int64_t i = 0; i < f; i++) j->y[r * f + i] = (float)(x[i] / d);
    }
}

static ferry_status *normalizer_run(eng_op_call *call)
{
    int64_t n, f;
    ferry_status *st = ml_matrix(call->in[0], &n, &f);
    if (st) return st;
    norm_job job = {*(const int *)call->state, call->in[0], f, call->out[0]->data};
    ml_parallel_rows(call, n, GRAIN, (size_t)f * sizeof(double), normalizer_rows, &job);
    return NULL;
}

static const eng_op ops[] = {
    {ML_DOMAIN, "LinearClassifier", 1, 0, linear_classifier_init, free, linear_infer, linear_run},
    {ML_DOMAIN, "LinearRegressor", 1, 0, linear_regressor_init, free, linear_infer, linear_run},
    {ML_DOMAIN, "SVMClassifier", 1, 0, svm_classifier_init, svm_free, svm_infer, svm_run},
    {ML_DOMAIN, "SVMRegressor", 1, 0, svm_regressor_init, svm_free, svm_infer, svm_run},
    {ML_DOMAIN, "Normalizer", 1, 0, normalizer_init, free, normalizer_infer, normalizer_run},
};

const eng_op_table eng_ops_ml2 = {ops, sizeof(ops) / sizeof(ops[0])};
