/* ml_common.h - helpers shared by the ONNX-ML (ai.onnx.ml) operator families: ml_tree.c,
 * ml_linear.c and ml_preprocess.c.
 *
 * ONNX-ML operators take float, double, int32 or int64 features and compute in floating point;
 * Ferry reads every feature as a double (exact for all of those but int64 beyond 2^53) and
 * accumulates in double, then writes float outputs as the spec says. The post transforms and
 * the probit approximation follow onnxruntime and ONNX's reference implementation, which is what
 * converters such as skl2onnx target.
 *
 * Row-parallel work: run() must not allocate, and core_parallel_for does not say which thread
 * runs a chunk, so scratch memory is split into at most ML_MAX_TASKS slots, one per task; task
 * t handles one contiguous range of rows with slot t. infer sizes the workspace with
 * ml_rows_workspace and run calls ml_parallel_rows with the same rows, grain and scratch.
 */
#ifndef ENGINE_OPS_ML_COMMON_H
#define ENGINE_OPS_ML_COMMON_H

#include "engine/op.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ML_DOMAIN         "ai.onnx.ml"
#define ML_MAX_TASKS      64
#define ML_SCRATCH_BUDGET ((size_t)64 << 20) /* fewer tasks when each needs a lot of scratch */

/* --- post transforms --------------------------------------------------------------------- */

typedef enum ml_transform {
    ML_NONE = 0,
    ML_LOGISTIC,
    ML_SOFTMAX,
    ML_SOFTMAX_ZERO,
    ML_PROBIT,
} ml_transform;

static inline ferry_status *ml_parse_transform(const eng_node *node, ml_transform *out)
{
    const char *s = eng_attr_string(node, "post_transform", "NONE");
    static const char *const names[] = {"NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"};
    for (int i = 0; i < 5; i++) {
        if (!strcmp(s, names[i])) {
            *out = (ml_transform)i;
            return NULL;
        }
    }
    return core_error(FERRY_ERR_INVALID_MODEL,
                      "post_transform '%s' is not one of NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, "
                      "PROBIT",
                      s);
}

static inline double ml_logistic(double x)
{
    /* exp of a non-positive argument only, so large |x| neither overflows nor loses 1 - v. */
    double v = 1.0 / (1.0 + exp(-fabs(x)));
    return x < 0 ? 1.0 - v : v;
}

/* sqrt(2) * erfinv(2p - 1) with Winitzki's closed-form erfinv (a = 0.147), the approximation
 * onnxruntime and ONNX's reference use, so PROBIT scores match theirs rather than the exact
 * quantile (they differ by up to ~1e-3). */
static inline double ml_probit(double p)
{
    double x = 2.0 * p - 1.0;
    double sgn = x < 0 ? -1.0 : 1.0;
    double l = log((1.0 - x) * (1.0 + x));
    double v = 2.0 / (3.14159265358979323846 * 0.147) + 0.5 * l;
    double v2 = l / 0.147;
    return 1.41421356237309504880 * sgn * sqrt(sqrt(v * v - v2) - v);
}

/* Applies T to the N scores of one row in place. SOFTMAX_ZERO keeps (near) zero scores out of
 * the sum, so a class nothing voted for keeps probability 0, as onnxruntime does. */
static inline void ml_transform_row(ml_transform t, double *v, int64_t n)
{
    switch (t) {
    case ML_NONE:
        break;
    case ML_LOGISTIC:
        for (int64_t i = 0; i < n; i++) v[i] = ml_logistic(v[i]);
        break;
    case ML_PROBIT:
        for (int64_t i = 0; i < n; i++) v[i] = ml_probit(v[i]);
        break;
    case ML_SOFTMAX:
    case ML_SOFTMAX_ZERO: {
        if (n <= 0) break;
        double mx = v[0], sum = 0;
        for (int64_t i = 1; i < n; i++)
            if (v[i] > mx) mx = v[i];
        for (int64_t i = 0; i < n; i++) {
            if (t == ML_SOFTMAX_ZERO && fabs(v[i]) <= 1e-7) {
                v[i] *= exp(-mx);
                continue;
            }
            v[i] = exp(v[i] - mx);
            sum += v[i];
        }
        if (sum > 0)
            for (int64_t i = 0; i < n; i++) v[i] /= sum;
        break;
    }
    }
}

/* --- inputs ------------------------------------------------------------------------------- */

static inline bool ml_numeric(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_INT32 ||
           dt == FERRY_DTYPE_INT64;
}

/* Checks that X is a float, double, int32 or int64 matrix [N, F] or vector [F] (one row) and
 * returns N and F. */
static inline ferry_status *ml_matrix(const eng_tensor *x, int64_t *n, int64_t *f)
{
    *n = *f = 0;
    if (!ml_numeric(x->dtype))
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "input X of type %s is not supported (expected float, double, int32 "
                          "or int64)",
                          ferry_dtype_name(x->dtype));
    if (x->rank == 1) {
        *n = 1;
        *f = x->dims[0];
    } else if (x->rank == 2) {
        *n = x->dims[0];
        *f = x->dims[1];
    } else {
        char s[128];
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X must be a matrix [N, features] or a vector, got shape %s",
                          eng_shape_str(x, s, sizeof(s)));
    }
    return NULL;
}

/* Converts N elements of X (a numeric dtype) starting at element OFF to doubles. */
static inline void ml_load_row(ferry_dtype dt, const void *x, int64_t off, int64_t n, double *dst)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT: {
        const float *p = (const float *)x + off;
        for (int64_t i = 0; i < n; i++) dst[i] = p[i];
        break;
    }
    case FERRY_DTYPE_DOUBLE:
        memcpy(dst, (const double *)x + off, (size_t)n * sizeof(double));
        break;
    case FERRY_DTYPE_INT32: {
        const int32_t *p = (const int32_t *)x + off;
        for (int64_t i = 0; i < n; i++) dst[i] = p[i];
        break;
    }
    case FERRY_DTYPE_INT64: {
        const int64_t *p = (const int64_t *)x + off;
        for (int64_t i = 0; i < n; i++) dst[i] = (double)p[i];
        break;
    }
    default:
        break;
    }
}

/* --- attributes --------------------------------------------------------------------------- */

/* Class labels: integers (classlabels_int64s / classlabels_ints) or strings
 * (classlabels_strings), whose output elements point at the model's own copies. */
typedef struct ml_labels {
    const int64_t *ints;
    const char *const *strs;
    size_t n;
} ml_labels;

/* Reads the labels from INTS_NAME or STRINGS_NAME (at most one may be given); n is 0 when
 * neither is. */
static inline ferry_status *ml_read_labels(const eng_node *node, const char *ints_name,
                                           const char *strings_name, ml_labels *l)
{
    size_t ni = 0, ns = 0;
    memset(l, 0, sizeof(*l));
    const int64_t *ints = eng_attr_ints(node, ints_name, &ni);
    const char *const *strs = eng_attr_strings(node, strings_name, &ns);
    if (ni && ns)
        return core_error(FERRY_ERR_INVALID_MODEL, "%s and %s are both given; use one", ints_name,
                          strings_name);
    if (ns)
        l->strs = strs, l->n = ns;
    else
        l->ints = ints, l->n = ni;
    return NULL;
}

static inline ferry_dtype ml_label_dtype(const ml_labels *l)
{
    return l->strs ? FERRY_DTYPE_STRING : FERRY_DTYPE_INT64;
}

/* Writes label K (< l->n) as element ROW of Y (int64 or string). */
static inline void ml_store_label(const ml_labels *l, void *y, int64_t row, size_t k)
{
    if (l->strs)
        ((const char **)y)[row] = l->strs[k];
    else
        ((int64_t *)y)[row] = l->ints[k];
}

/* Writes onnxruntime's fallback label for a one-score model without two labels: 1 or 0, as
 * "1" / "0" for string labels. */
static inline void ml_store_bit(const ml_labels *l, void *y, int64_t row, bool one)
{
    if (l->strs)
        ((const char **)y)[row] = one ? "1" : "0";
    else
        ((int64_t *)y)[row] = one;
}

/* Reads a float list attribute NAME, or its double-precision form NAME_as_tensor, into a new
 * array of doubles (free it). *out is NULL and *count 0 when neither is present. */
static inline ferry_status *ml_doubles(const eng_node *node, const char *name, double **out,
                                       size_t *count)
{
    char tname[96];
    snprintf(tname, sizeof(tname), "%s_as_tensor", name);
    size_t n = 0;
    const float *f = eng_attr_floats(node, name, &n);
    const eng_tensor *t = eng_attr_tensor(node, tname);
    *out = NULL;
    *count = 0;
    if (f && t)
        return core_error(FERRY_ERR_INVALID_MODEL, "%s and %s are both given; use one", name,
                          tname);
    if (t) {
        if (t->dtype != FERRY_DTYPE_DOUBLE && t->dtype != FERRY_DTYPE_FLOAT)
            return core_error(FERRY_ERR_INVALID_MODEL, "%s must be a double tensor, got %s", tname,
                              ferry_dtype_name(t->dtype));
        n = (size_t)eng_numel(t);
    }
    if (!f && !t) return NULL;
    double *d = malloc((n ? n : 1) * sizeof(double));
    if (!d) return core_error(FERRY_ERR_NO_MEMORY, "out of memory reading %s", name);
    for (size_t i = 0; i < n; i++)
        d[i] = f ? (double)f[i] : core_load_f64(t->dtype, t->data, (int64_t)i);
    *out = d;
    *count = n;
    return NULL;
}

/* --- row-parallel loops ------------------------------------------------------------------- */

typedef void (*ml_rows_fn)(const void *arg, int64_t begin, int64_t end, void *scratch);

static inline size_t ml_align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* Tasks for ROWS rows with at least GRAIN rows each (GRAIN >= 1), each with SCRATCH bytes:
 * at most ML_MAX_TASKS, and fewer when their scratch would pass ML_SCRATCH_BUDGET. */
static inline int64_t ml_tasks(int64_t rows, int64_t grain, size_t scratch)
{
    if (rows <= 0) return 0;
    int64_t t = (rows + grain - 1) / grain;
    if (t > ML_MAX_TASKS) t = ML_MAX_TASKS;
    if (scratch && (size_t)t * ml_align64(scratch) > ML_SCRATCH_BUDGET) {
        t = (int64_t)(ML_SCRATCH_BUDGET / ml_align64(scratch));
        if (t < 1) t = 1;
    }
    return t;
}

/* Workspace bytes for ml_parallel_rows with SCRATCH bytes per task. */
static inline size_t ml_rows_workspace(int64_t rows, int64_t grain, size_t scratch)
{
    return scratch ? (size_t)ml_tasks(rows, grain, scratch) * ml_align64(scratch) : 0;
}

typedef struct ml_rows_job {
    ml_rows_fn fn;
    const void *arg;
    int64_t rows, tasks;
    char *workspace;
    size_t scratch;
} ml_rows_job;

static inline void ml_rows_task(void *p, int64_t begin, int64_t end)
{
    const ml_rows_job *job = p;
    for (int64_t t = begin; t < end; t++) {
        int64_t r0 = t * job->rows / job->tasks, r1 = (t + 1) * job->rows / job->tasks;
        void *scratch = job->scratch ? job->workspace + (size_t)t * job->scratch : NULL;
        if (r1 > r0) job->fn(job->arg, r0, r1, scratch);
    }
}

/* Runs FN over [0, ROWS) in up to ML_MAX_TASKS contiguous ranges across CALL's thread pool,
 * each with its own SCRATCH bytes of CALL's workspace. */
static inline void ml_parallel_rows(const eng_op_call *call, int64_t rows, int64_t grain,
                                    size_t scratch, ml_rows_fn fn, const void *arg)
{
    ml_rows_job job = {fn,
                       arg,
                       rows,
                       ml_tasks(rows, grain, scratch),
                       call->workspace,
                       scratch ? ml_align64(scratch) : 0};
    if (job.tasks == 0) return;
    if (job.tasks == 1) {
        ml_rows_task(&job, 0, 1);
        return;
    }
    core_parallel_for(call->threads, ml_rows_task, &job, job.tasks, 1);
}

#endif
