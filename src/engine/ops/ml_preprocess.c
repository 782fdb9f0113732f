/* ml_preprocess.c - the ONNX-ML feature transforms: Scaler, Binarizer, Imputer, OneHotEncoder,
 * LabelEncoder, CategoryMapper, ArrayFeatureExtractor and FeatureVectorizer (ai.onnx.ml).
 *
 *   - Scaler: Y = (X - offset) * scale, offset and scale with one value or one per feature (the
 *     last axis); float output.
 *   - Binarizer: 1 where X > threshold, else 0 (NaN included), in X's type.
 *   - Imputer: elements equal to replaced_value_float (NaN matches NaN) or replaced_value_int64
 *     become imputed_value_floats / imputed_value_int64s (one value or one per feature), in X's
 *     type.
 *   - OneHotEncoder: X (cats_int64s: int64, int32, float or double, truncated to integers;
 *     cats_strings: strings) gains a last axis of one float per category with a 1 at the
 *     category's position; an unknown value gives all zeros (zeros=1) or a run-time error.
 *   - LabelEncoder 2 and 4: maps keys to values, each side int64, float, string or (version 4
 *     tensors) double or int32; floats compare bit-wise, so NaN keys work; a missing key gives
 *     the default. LabelEncoder 1: classes_strings, strings to their positions or back.
 *   - CategoryMapper: cats_strings[i] <-> cats_int64s[i], direction by the input's type.
 *   - ArrayFeatureExtractor: gathers indices Y along X's last axis ([F] becomes [1, K]).
 *   - FeatureVectorizer: concatenates inputs [N, C_i] into [N, sum(inputdimensions)] floats,
 *     truncating or zero-padding each to its inputdimensions entry.
 *
 * String outputs point at the model's own strings (attributes, defaults), which live as long as
 * the model, so run never allocates. Lookups use sorted keys and binary search.
 */
#include "engine/ops/ml_common.h"

/* Element I of a numeric tensor as a double. */
static inline double load_f64(ferry_dtype dt, const void *p, int64_t i)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT:
        return ((const float *)p)[i];
    case FERRY_DTYPE_DOUBLE:
        return ((const double *)p)[i];
    case FERRY_DTYPE_INT32:
        return ((const int32_t *)p)[i];
    default:
        return (double)((const int64_t *)p)[i];
    }
}

static ferry_status *check_numeric(const eng_tensor *x, const char *what)
{
    if (!ml_numeric(x->dtype))
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "%s of type %s is not supported (expected float, double, int32 or "
                          "int64)",
                          what, ferry_dtype_name(x->dtype));
    return NULL;
}

/* Features: the length of the last axis (1 for a scalar). */
static int64_t last_dim(const eng_tensor *x)
{
    return x->rank ? x->dims[x->rank - 1] : 1;
}

/* --- Scaler ------------------------------------------------------------------------------- */

typedef struct scaler {
    const float *offset, *scale;
    size_t n_offset, n_scale;
} scaler;

static ferry_status *scaler_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    scaler *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->offset = eng_attr_floats(node, "offset", &s->n_offset);
    s->scale = eng_attr_floats(node, "scale", &s->n_scale);
    *state = s;
    return NULL;
}

static ferry_status *per_feature(const char *name, size_t n, int64_t f)
{
    if (n > 1 && (int64_t)n != f)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "%s has %zu values but input X has %lld features", name, n, (long long)f);
    return NULL;
}

static ferry_status *scaler_infer(eng_op_call *call)
{
    const scaler *s = call->state;
    const eng_tensor *x = call->in[0];
    ferry_status *st;
    if ((st = check_numeric(x, "input X")) ||
        (st = per_feature("offset", s->n_offset, last_dim(x))) ||
        (st = per_feature("scale", s->n_scale, last_dim(x))))
        return st;
    eng_set_shape(call->out[0], x->rank, x->dims);
    call->out[0]->dtype = FERRY_DTYPE_FLOAT;
    return NULL;
}

static ferry_status *scaler_run(eng_op_call *call)
{
    const scaler *s = call->state;
    const eng_tensor *x = call->in[0];
    float *y = call->out[0]->data;
    int64_t n = eng_numel(x), f = last_dim(x);
    for (int64_t i = 0, j = 0; i < n; i++, j = j + 1 == f ? 0 : j + 1) {
        double off = s->n_offset == 0 ? 0.0 : s->offset[s->n_offset == 1 ? 0 : j];
        double sc = s->n_scale == 0 ? 1.0 : s->scale[s->n_scale == 1 ? 0 : j];
        y[i] = (float)((load_f64(x->dtype, x->data, i) - off) * sc);
    }
    return NULL;
}

/* --- Binarizer ---------------------------------------------------------------------------- */

static ferry_status *binarizer_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    float *t = malloc(sizeof(float));
    if (!t) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *t = eng_attr_float(node, "threshold", 0.0f);
    *state = t;
    return NULL;
}

static ferry_status *same_numeric_infer(eng_op_call *call)
{
    const eng_tensor *x = call->in[0];
    ferry_status *st = check_numeric(x, "input X");
    if (st) return st;
    eng_same_shape(call->out[0], x);
    return NULL;
}

static ferry_status *binarizer_run(eng_op_call *call)
{
    double t = *(const float *)call->state;
    const eng_tensor *x = call->in[0];
    void *y = call->out[0]->data;
    int64_t n = eng_numel(x);
    for (int64_t i = 0; i < n; i++) {
        bool one = load_f64(x->dtype, x->data, i) > t;
        switch (x->dtype) {
        case FERRY_DTYPE_FLOAT:
            ((float *)y)[i] = one;
            break;
        case FERRY_DTYPE_DOUBLE:
            ((double *)y)[i] = one;
            break;
        case FERRY_DTYPE_INT32:
            ((int32_t *)y)[i] = one;
            break;
        default:
            ((int64_t *)y)[i] = one;
            break;
        }
    }
    return NULL;
}

/* --- Imputer ------------------------------------------------------------------------------ */

typedef struct imputer {
    const float *fvals;
    const int64_t *ivals;
    size_t n_f, n_i;
    float freplace;
    int64_t ireplace;
} imputer;

static ferry_status *imputer_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    imputer *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->fvals = eng_attr_floats(node, "imputed_value_floats", &s->n_f);
    s->ivals = eng_attr_ints(node, "imputed_value_int64s", &s->n_i);
    s->freplace = eng_attr_float(node, "replaced_value_float", 0.0f);
    s->ireplace = eng_attr_int(node, "replaced_value_int64", 0);
    if (!s->n_f && !s->n_i) {
        free(s);
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "imputed_value_floats or imputed_value_int64s must be given");
    }
    *state = s;
    return NULL;
}

static ferry_status *imputer_infer(eng_op_call *call)
{
    const imputer *s = call->state;
    const eng_tensor *x = call->in[0];
    ferry_status *st = same_numeric_infer(call);
    if (st) return st;
    bool fl = x->dtype == FERRY_DTYPE_FLOAT || x->dtype == FERRY_DTYPE_DOUBLE;
    const char *name = fl ? "imputed_value_floats" : "imputed_value_int64s";
    size_t n = fl ? s->n_f : s->n_i;
    if (!n)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "%s input needs %s, which the model lacks",
                          ferry_dtype_name(x->dtype), name);
    return per_feature(name, n, last_dim(x));
}

static ferry_status *imputer_run(eng_op_call *call)
{
    const imputer *s = call->state;
    const eng_tensor *x = call->in[0];
    void *y = call->out[0]->data;
    int64_t n = eng_numel(x), f = last_dim(x);
    bool nan = isnan(s->freplace);
    for (int64_t i = 0, j = 0; i < n; i++, j = j + 1 == f ? 0 : j + 1) {
        switch (x->dtype) {
        case FERRY_DTYPE_FLOAT: {
            float v = ((const float *)x->data)[i];
            bool hit = nan ? isnan(v) : v == s->freplace;
            ((float *)y)[i] = hit ? s->fvals[s->n_f == 1 ? 0 : j] : v;
            break;
        }
        case FERRY_DTYPE_DOUBLE: {
            double v = ((const double *)x->data)[i];
            bool hit = nan ? isnan(v) : v == (double)s->freplace;
            ((double *)y)[i] = hit ? s->fvals[s->n_f == 1 ? 0 : j] : v;
            break;
        }
        case FERRY_DTYPE_INT32: {
            int32_t v = ((const int32_t *)x->data)[i];
            ((int32_t *)y)[i] = v == s->ireplace ? (int32_t)s->ivals[s->n_i == 1 ? 0 : j] : v;
            break;
        }
        default: {
            int64_t v = ((const int64_t *)x->data)[i];
            ((int64_t *)y)[i] = v == s->ireplace ? s->ivals[s->n_i == 1 ? 0 : j] : v;
            break;
        }
        }
    }
    return NULL;
}

/* --- sorted key lookup (OneHotEncoder, LabelEncoder, CategoryMapper) ---------------------- */

/* Numeric keys are compared as 64-bit patterns: integers as themselves, floats and doubles by
 * their bits (every NaN made the same NaN), so lookups are exact and NaN can be a key. String
 * keys compare with strcmp. */
typedef struct key_entry {
    uint64_t key;
    const char *str; /* string keys; NULL for numbers */
    int64_t index;   /* position in the attribute; the first of duplicates wins */
} key_entry;

static int key_order(const key_entry *x, const key_entry *y)
{
    if (x->str) return strcmp(x->str, y->str);
    return x->key < y->key ? -1 : x->key > y->key;
}

static int key_cmp(const void *a, const void *b)
{
    const key_entry *x = a, *y = b;
    int c = key_order(x, y);
    if (c) return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static uint64_t float_key(float f)
{
    if (isnan(f)) f = NAN;
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint64_t double_key(double d)
{
    if (isnan(d)) d = NAN;
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

/* Sorts N entries and drops later duplicates; returns the new count. */
static size_t sort_keys(key_entry *k, size_t n)
{
    qsort(k, n, sizeof(*k), key_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || key_order(&k[m - 1], &k[i])) k[m++] = k[i];
    return m;
}

/* The attribute position of KEY, or -1. */
static int64_t find_key(const key_entry *k, size_t n, const key_entry *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_order(&k[mid], key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && !key_order(&k[lo], key) ? k[lo].index : -1;
}

/* Element I of X as a lookup key: X's numeric type picks the bit pattern. */
static key_entry key_at(const eng_tensor *x, int64_t i)
{
    key_entry k = {0, NULL, 0};
    switch (x->dtype) {
    case FERRY_DTYPE_STRING: {
        const char *s = ((const char *const *)x->data)[i];
        k.str = s ? s : "";
        break;
    }
    case FERRY_DTYPE_FLOAT:
        k.key = float_key(((const float *)x->data)[i]);
        break;
    case FERRY_DTYPE_DOUBLE:
        k.key = double_key(((const double *)x->data)[i]);
        break;
    case FERRY_DTYPE_INT32:
        k.key = (uint64_t)(int64_t)((const int32_t *)x->data)[i];
        break;
    default:
        k.key = (uint64_t)((const int64_t *)x->data)[i];
        break;
    }
    return k;
}

/* A sorted index of N integer (INTS) or string (STRS) keys; NULL when out of memory. */
static key_entry *index_keys(const int64_t *ints, const char *const *strs, size_t n, size_t *count)
{
    *count = 0;
    key_entry *k = malloc((n ? n : 1) * sizeof(*k));
    if (!k) return NULL;
    for (size_t i = 0; i < n; i++)
        k[i] = (key_entry){strs ? 0 : (uint64_t)ints[i], strs ? (strs[i] ? strs[i] : "") : NULL,
                           (int64_t)i};
    *count = sort_keys(k, n);
    return k;
}

/* --- OneHotEncoder ------------------------------------------------------------------------ */

typedef struct onehot {
    key_entry *keys;
    size_t n_keys;
    int64_t cats;
    bool strings;
    bool zeros;
} onehot;

static void onehot_free(void *p)
{
    onehot *s = p;
    if (s) free(s->keys);
    free(s);
}

static ferry_status *onehot_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    size_t ni, ns;
    const int64_t *ints = eng_attr_ints(node, "cats_int64s", &ni);
    const char *const *strs = eng_attr_strings(node, "cats_strings", &ns);
    if ((ni == 0) == (ns == 0))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "exactly one of cats_int64s and cats_strings must be given");
    onehot *s = calloc(1, sizeof(*s));
    if (s) s->keys = index_keys(ints, ns ? strs : NULL, ns ? ns : ni, &s->n_keys);
    if (!s || !s->keys) {
        onehot_free(s);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    }
    s->cats = (int64_t)(ns ? ns : ni);
    s->strings = ns != 0;
    s->zeros = eng_attr_int(node, "zeros", 1) != 0;
    *state = s;
    return NULL;
}

static ferry_status *onehot_infer(eng_op_call *call)
{
    const onehot *s = call->state;
    const eng_tensor *x = call->in[0];
    if (s->strings && x->dtype != FERRY_DTYPE_STRING)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X is %s but the categories (cats_strings) are strings",
                          ferry_dtype_name(x->dtype));
    if (!s->strings) {
        ferry_status *st = check_numeric(x, "input X");
        if (st) return st;
    }
    if (x->rank >= FERRY_MAX_RANK)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "the output would have rank %d, over Ferry's "
                          "limit of %d",
                          x->rank + 1, FERRY_MAX_RANK);
    eng_tensor *y = call->out[0];
    eng_set_shape(y, x->rank, x->dims);
    y->dims[y->rank++] = s->cats;
    y->dtype = FERRY_DTYPE_FLOAT;
    return NULL;
}

static ferry_status *onehot_run(eng_op_call *call)
{
    const onehot *s = call->state;
    const eng_tensor *x = call->in[0];
    float *y = call->out[0]->data;
    int64_t n = eng_numel(x);
    memset(y, 0, (size_t)(n * s->cats) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        key_entry key = {0, NULL, 0};
        bool ok = true;
        if (s->strings) {
            key = key_at(x, i);
        } else if (x->dtype == FERRY_DTYPE_INT64 || x->dtype == FERRY_DTYPE_INT32) {
            key = key_at(x, i);
        } else {
            double d = load_f64(x->dtype, x->data, i);
            ok = d > -9.2e18 && d < 9.2e18; /* NaN and out-of-range values are no category */
            key.key = ok ? (uint64_t)(int64_t)d : 0;
        }
        int64_t k = ok ? find_key(s->keys, s->n_keys, &key) : -1;
        if (k >= 0) {
            y[i * s->cats + k] = 1.0f;
        } else if (!s->zeros) {
            if (s->strings)
                return core_error(FERRY_ERR_RUNTIME,
                                  "input value '%.60s' is not in cats_strings (and zeros is 0)",
                                  key.str);
            if (!ok)
                return core_error(FERRY_ERR_RUNTIME, "input value %g is not a category",
                                  load_f64(x->dtype, x->data, i));
            return core_error(FERRY_ERR_RUNTIME,
                              "input value %lld is not in cats_int64s (and zeros is 0)",
                              (long long)(int64_t)key.key);
        }
    }
    return NULL;
}

/* --- LabelEncoder and CategoryMapper ------------------------------------------------------ */

/* A lookup from keys to values, each side int64, int32, float, double or string. */
typedef struct label_map {
    ferry_dtype key_type, value_type;
    key_entry *keys;
    size_t n_keys;
    double *fvalues;            /* value_type float or double */
    int64_t *ivalues;           /* value_type int64 or int32 */
    const char *const *svalues; /* value_type string: the model's strings */
    double fdefault;
    int64_t idefault;
    const char *sdefault;
    bool by_type; /* LabelEncoder 1, CategoryMapper: the input's type picks the direction */
    const char *const *strs; /* by_type: the string side, N entries */
    size_t n;
    const int64_t *ints; /* CategoryMapper's integer side; NULL for LabelEncoder 1, whose
                            integers are positions in strs */
    key_entry *by_int;   /* CategoryMapper: ints sorted */
    size_t n_by_int;
} label_map;

static void label_map_free(void *p)
{
    label_map *s = p;
    if (!s) return;
    free(s->keys);
    free(s->fvalues);
    free(s->ivalues);
    free(s->by_int);
    free(s);
}

/* One side (keys or values) of the mapping: a list attribute or, from version 4, a tensor. */
typedef struct le_list {
    ferry_dtype type; /* UNDEFINED when absent */
    size_t n;
    const int64_t *ints;
    const float *floats;
    const char *const *strs;
    const eng_tensor *tensor;
} le_list;

static ferry_status *le_side(const eng_node *node, const char *side, le_list *l)
{
    char ints[32], floats[32], strings[32], tensor[32];
    snprintf(ints, sizeof(ints), "%s_int64s", side);
    snprintf(floats, sizeof(floats), "%s_floats", side);
    snprintf(strings, sizeof(strings), "%s_strings", side);
    snprintf(tensor, sizeof(tensor), "%s_tensor", side);
    memset(l, 0, sizeof(*l));
    int given = 0;
    size_t n;
    if ((l->ints = eng_attr_ints(node, ints, &n))) l->type = FERRY_DTYPE_INT64, l->n = n, given++;
    if ((l->floats = eng_attr_floats(node, floats, &n)))
        l->type = FERRY_DTYPE_FLOAT, l->n = n, given++;
    if ((l->strs = eng_attr_strings(node, strings, &n)))
        l->type = FERRY_DTYPE_STRING, l->n = n, given++;
    if ((l->tensor = eng_attr_tensor(node, tensor))) {
        ferry_dtype t = l->tensor->dtype;
        if (!ml_numeric(t) && t != FERRY_DTYPE_STRING)
            return core_error(FERRY_ERR_UNSUPPORTED, "%s of type %s is not supported", tensor,
                              ferry_dtype_name(t));
        l->type = t, l->n = (size_t)eng_numel(l->tensor), given++;
        if (t == FERRY_DTYPE_STRING) l->strs = l->tensor->data;
    }
    if (given != 1)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "exactly one of %s, %s, %s, %s must be "
                          "given, not %d",
                          ints, floats, strings, tensor, given);
    return NULL;
}

static double le_f64(const le_list *l, size_t i)
{
    if (l->ints) return (double)l->ints[i];
    if (l->floats) return l->floats[i];
    return load_f64(l->tensor->dtype, l->tensor->data, (int64_t)i);
}

static int64_t le_i64(const le_list *l, size_t i)
{
    if (l->ints) return l->ints[i];
    return core_load_i64(l->tensor->dtype, l->tensor->data, (int64_t)i);
}

static key_entry le_key(const le_list *l, size_t i)
{
    key_entry k = {0, NULL, (int64_t)i};
    if (l->type == FERRY_DTYPE_STRING)
        k.str = l->strs[i] ? l->strs[i] : "";
    else if (l->type == FERRY_DTYPE_FLOAT)
        k.key = float_key((float)le_f64(l, i));
    else if (l->type == FERRY_DTYPE_DOUBLE)
        k.key = double_key(le_f64(l, i));
    else
        k.key = (uint64_t)le_i64(l, i);
    return k;
}

/* LabelEncoder 1: classes_strings with default_int64 / default_string; the input's type picks
 * the direction (strings to positions, positions to strings). */
static ferry_status *label_encoder_v1(const eng_node *node, label_map *s)
{
    s->strs = eng_attr_strings(node, "classes_strings", &s->n);
    s->by_type = true;
    s->idefault = eng_attr_int(node, "default_int64", -1);
    s->sdefault = eng_attr_string(node, "default_string", "_Unused");
    s->keys = index_keys(NULL, s->strs, s->n, &s->n_keys);
    return s->keys ? NULL : core_error(FERRY_ERR_NO_MEMORY, "out of memory");
}

static ferry_status *label_encoder_init(const eng_node *node, int opset, void **state)
{
    label_map *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    ferry_status *st = NULL;
    if (opset < 2) {
        if ((st = label_encoder_v1(node, s))) goto fail;
        *state = s;
        return NULL;
    }
    le_list k, v;
    if ((st = le_side(node, "keys", &k)) || (st = le_side(node, "values", &v))) goto fail;
    if (k.n != v.n) {
        st = core_error(FERRY_ERR_INVALID_MODEL, "keys have %zu entries but values have %zu", k.n,
                        v.n);
        goto fail;
    }
    s->key_type = k.type;
    s->value_type = v.type;
    s->keys = malloc((k.n ? k.n : 1) * sizeof(key_entry));
    if (v.type == FERRY_DTYPE_FLOAT || v.type == FERRY_DTYPE_DOUBLE)
        s->fvalues = malloc((v.n ? v.n : 1) * sizeof(double));
    else if (v.type != FERRY_DTYPE_STRING)
        s->ivalues = malloc((v.n ? v.n : 1) * sizeof(int64_t));
    if (!s->keys || (v.type != FERRY_DTYPE_STRING && !s->fvalues && !s->ivalues)) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < k.n; i++) {
        s->keys[i] = le_key(&k, i);
        if (s->fvalues) s->fvalues[i] = le_f64(&v, i);
        if (s->ivalues) s->ivalues[i] = le_i64(&v, i);
    }
    s->svalues = v.strs;
    s->n_keys = sort_keys(s->keys, k.n);
    /* default_tensor (version 4), else default_float / default_int64 / default_string. */
    s->fdefault = eng_attr_float(node, "default_float", -0.0f);
    s->idefault = eng_attr_int(node, "default_int64", -1);
    s->sdefault = eng_attr_string(node, "default_string", "_Unused");
    const eng_tensor *d = eng_attr_tensor(node, "default_tensor");
    if (d) {
        if (eng_numel(d) != 1 || d->dtype != v.type) {
            st = core_error(FERRY_ERR_INVALID_MODEL,
                            "default_tensor must hold one value of the values' type (%s)",
                            ferry_dtype_name(v.type));
            goto fail;
        }
        if (d->dtype == FERRY_DTYPE_STRING) {
            const char *ds = ((const char *const *)d->data)[0];
            s->sdefault = ds ? ds : "";
        } else {
            s->fdefault = core_load_f64(d->dtype, d->data, 0);
            s->idefault = core_load_i64(d->dtype, d->data, 0);
        }
    }
    *state = s;
    return NULL;
fail:
    label_map_free(s);
    return st;
}

/* CategoryMapper: cats_strings[i] <-> cats_int64s[i]; strings in give int64 out (default_int64
 * when unknown), int64 in gives strings out (default_string). */
static ferry_status *category_mapper_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    size_t ns, ni;
    const char *const *strs = eng_attr_strings(node, "cats_strings", &ns);
    const int64_t *ints = eng_attr_ints(node, "cats_int64s", &ni);
    if (ns != ni)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "cats_strings has %zu entries but cats_int64s has %zu", ns, ni);
    label_map *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    s->by_type = true;
    s->strs = strs;
    s->ints = ints;
    s->n = ns;
    s->idefault = eng_attr_int(node, "default_int64", -1);
    s->sdefault = eng_attr_string(node, "default_string", "_Unused");
    s->keys = index_keys(NULL, strs, ns, &s->n_keys);
    s->by_int = index_keys(ints, NULL, ni, &s->n_by_int);
    if (!s->keys || !s->by_int) {
        label_map_free(s);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    }
    *state = s;
    return NULL;
}

static ferry_status *label_map_infer(eng_op_call *call)
{
    const label_map *s = call->state;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    if (s->by_type) {
        if (x->dtype != FERRY_DTYPE_STRING && x->dtype != FERRY_DTYPE_INT64)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "input X must be string or int64, got %s",
                              ferry_dtype_name(x->dtype));
        eng_set_shape(y, x->rank, x->dims);
        y->dtype = x->dtype == FERRY_DTYPE_STRING ? FERRY_DTYPE_INT64 : FERRY_DTYPE_STRING;
        return NULL;
    }
    if (x->dtype != s->key_type)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X is %s but the keys are %s; they must match",
                          ferry_dtype_name(x->dtype), ferry_dtype_name(s->key_type));
    eng_set_shape(y, x->rank, x->dims);
    y->dtype = s->value_type;
    return NULL;
}

/* LabelEncoder 1 and CategoryMapper: the direction follows X's type. */
static void map_by_type(const label_map *s, const eng_tensor *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (x->dtype == FERRY_DTYPE_STRING) {
            key_entry key = key_at(x, i);
            int64_t k = find_key(s->keys, s->n_keys, &key);
            ((int64_t *)y)[i] = k < 0 ? s->idefault : s->ints ? s->ints[k] : k;
            continue;
        }
        int64_t v = ((const int64_t *)x->data)[i], k = -1;
        if (s->ints) {
            key_entry key = {(uint64_t)v, NULL, 0};
            k = find_key(s->by_int, s->n_by_int, &key);
        } else if (v >= 0 && (uint64_t)v < s->n) {
            k = v;
        }
        ((const char **)y)[i] = k < 0 ? s->sdefault : s->strs[k] ? s->strs[k] : "";
    }
}

static ferry_status *label_map_run(eng_op_call *call)
{
    const label_map *s = call->state;
    const eng_tensor *x = call->in[0];
    void *y = call->out[0]->data;
    int64_t n = eng_numel(x);
    if (s->by_type) {
        map_by_type(s, x, y, n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        key_entry key = key_at(x, i);
        int64_t k = find_key(s->keys, s->n_keys, &key);
        switch (s->value_type) {
        case FERRY_DTYPE_FLOAT:
            ((float *)y)[i] = (float)(k >= 0 ? s->fvalues[k] : s->fdefault);
            break;
        case FERRY_DTYPE_DOUBLE:
            ((double *)y)[i] = k >= 0 ? s->fvalues[k] : s->fdefault;
            break;
        case FERRY_DTYPE_INT32:
            ((int32_t *)y)[i] = (int32_t)(k >= 0 ? s->ivalues[k] : s->idefault);
            break;
        case FERRY_DTYPE_STRING:
            ((const char **)y)[i] = k >= 0 && s->svalues[k] ? s->svalues[k]
                                    : k >= 0                ? ""
                                                            : s->sdefault;
            break;
        default:
            ((int64_t *)y)[i] = k >= 0 ? s->ivalues[k] : s->idefault;
            break;
        }
    }
    return NULL;
}

/* --- ArrayFeatureExtractor --------------------------------------------------------------- */

static ferry_status *afe_infer(eng_op_call *call)
{
    const eng_tensor *x = call->in[0], *idx = call->in[1];
    ferry_status *st = x->dtype == FERRY_DTYPE_STRING ? NULL : check_numeric(x, "input X");
    if (st) return st;
    if (idx->dtype != FERRY_DTYPE_INT64 && idx->dtype != FERRY_DTYPE_INT32)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "indices Y must be int64, got %s",
                          ferry_dtype_name(idx->dtype));
    if (x->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input X must have at least one axis");
    eng_tensor *z = call->out[0];
    z->dtype = x->dtype;
    if (x->rank == 1) {
        int64_t dims[2] = {1, eng_numel(idx)};
        eng_set_shape(z, 2, dims);
    } else {
        eng_set_shape(z, x->rank, x->dims);
        z->dims[z->rank - 1] = eng_numel(idx);
    }
    return NULL;
}

static ferry_status *afe_run(eng_op_call *call)
{
    const eng_tensor *x = call->in[0], *idx = call->in[1];
    int64_t f = last_dim(x), k = eng_numel(idx), rows = f ? eng_numel(x) / f : 0;
    if (x->rank > 1) {
        rows = 1;
        for (int d = 0; d < x->rank - 1; d++) rows *= x->dims[d];
    }
    for (int64_t j = 0; j < k; j++) {
        int64_t i = core_load_i64(idx->dtype, idx->data, j);
        if (i < 0 || i >= f)
            return core_error(FERRY_ERR_RUNTIME,
                              "index %lld is out of range for the last axis of X (size %lld)",
                              (long long)i, (long long)f);
    }
    size_t esz = ferry_dtype_size(x->dtype);
    const char *src = x->data;
    char *dst = call->out[0]->data;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < k; j++) {
            int64_t i = core_load_i64(idx->dtype, idx->data, j);
            memcpy(dst + (size_t)(r * k + j) * esz, src + (size_t)(r * f + i) * esz, esz);
        }
    }
    return NULL;
}

/* --- FeatureVectorizer ------------------------------------------------------------------- */

static ferry_status *fv_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    (void)state;
    size_t n;
    const int64_t *dims = eng_attr_ints(node, "inputdimensions", &n);
    for (size_t i = 0; i < n; i++)
        if (dims[i] < 0)
            return core_error(FERRY_ERR_INVALID_MODEL, "inputdimensions[%zu] is negative (%lld)", i,
                              (long long)dims[i]);
    return NULL;
}

/* Rows and values per row of input X: [C] is one row, [N, ...] N rows. */
static void fv_shape(const eng_tensor *x, int64_t *rows, int64_t *cols)
{
    if (x->rank <= 1) {
        *rows = 1;
        *cols = x->rank ? x->dims[0] : 1;
    } else {
        *rows = x->dims[0];
        *cols = 1;
        for (int d = 1; d < x->rank; d++) *cols *= x->dims[d];
    }
}

static ferry_status *fv_infer(eng_op_call *call)
{
    size_t n;
    const int64_t *dims = eng_attr_ints(call->node, "inputdimensions", &n);
    if (n != (size_t)call->n_in)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "inputdimensions has %zu entries but the "
                          "node has %d inputs",
                          n, call->n_in);
    int64_t rows = -1, total = 0;
    for (int i = 0; i < call->n_in; i++) {
        const eng_tensor *x = call->in[i];
        if (!x) return core_error(FERRY_ERR_INVALID_MODEL, "input %d is missing", i);
        char what[32];
        snprintf(what, sizeof(what), "input %d", i);
        ferry_status *st = check_numeric(x, what);
        if (st) return st;
        int64_t r, c;
        fv_shape(x, &r, &c);
        if (rows >= 0 && r != rows)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input %d has %lld rows but input 0 has %lld", i, (long long)r,
                              (long long)rows);
        rows = r;
        total += dims[i];
    }
    int64_t out[2] = {rows < 0 ? 0 : rows, total};
    eng_set_shape(call->out[0], 2, out);
    call->out[0]->dtype = FERRY_DTYPE_FLOAT;
    return NULL;
}

static ferry_status *fv_run(eng_op_call *call)
{
    size_t n;
    const int64_t *dims = eng_attr_ints(call->node, "inputdimensions", &n);
    float *y = call->out[0]->data;
    int64_t total = call->out[0]->dims[1], rows = call->out[0]->dims[0], at = 0;
    for (int i = 0; i < call->n_in; i++) {
        const eng_tensor *x = call->in[i];
        int64_t r, c, d = dims[i];
        fv_shape(x, &r, &c);
        int64_t copy = c < d ? c : d;
        for (int64_t row = 0; row < rows; row++) {
            float *dst = y + row * total + at;
            for (int64_t j = 0; j < copy; j++)
                dst[j] = (float)load_f64(x->dtype, x->data, row * c + j);
            for (int64_t j = copy; j < d; j++) dst[j] = 0.0f;
        }
        at += d;
    }
    return NULL;
}

static const eng_op ops[] = {
    {ML_DOMAIN, "Scaler", 1, 0, scaler_init, free, scaler_infer, scaler_run},
    {ML_DOMAIN, "Binarizer", 1, 0, binarizer_init, free, same_numeric_infer, binarizer_run},
    {ML_DOMAIN, "Imputer", 1, 0, imputer_init, free, imputer_infer, imputer_run},
    {ML_DOMAIN, "OneHotEncoder", 1, 0, onehot_init, onehot_free, onehot_infer, onehot_run},
    {ML_DOMAIN, "LabelEncoder", 1, 0, label_encoder_init, label_map_free, label_map_infer,
     label_map_run},
    {ML_DOMAIN, "ArrayFeatureExtractor", 1, 0, NULL, NULL, afe_infer, afe_run},
    {ML_DOMAIN, "FeatureVectorizer", 1, 0, fv_init, NULL, fv_infer, fv_run},
    {ML_DOMAIN, "CategoryMapper", 1, 0, category_mapper_init, label_map_free, label_map_infer,
     label_map_run},
};

const eng_op_table eng_ops_ml3 = {ops, sizeof(ops) / sizeof(ops[0])};
