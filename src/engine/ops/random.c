/* random.c - RandomNormal, RandomUniform, RandomNormalLike, RandomUniformLike, Multinomial and
 * Bernoulli.
 *
 * Every output is a pure function of the node's seed and its inputs: element i of an output
 * takes its random bits from a counter-based generator (SplitMix64's mixing function applied
 * to key + i * golden ratio), so results do not depend on threads, runs or contexts, and the
 * state init keeps is read only, as the engine requires. A model that gives no `seed` gets one
 * hashed from the node's name and operator, which keeps unseeded nodes reproducible while
 * differing from one another. ONNX leaves the generator to the implementation; values will
 * not match other runtimes' draws, only their distributions.
 *
 * Normal values use the Box-Muller transform on pairs of uniform draws (elements 2p and
 * 2p + 1 share pair p). Multinomial samples from softmax(input) by inverting the cumulative
 * distribution of each row, which it keeps in the workspace.
 */
#include "engine/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN 0x9e3779b97f4a7c15ull

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The random 64 bits of draw I of stream KEY. */
static inline uint64_t draw(uint64_t key, uint64_t i)
{
    return mix64(key + (i + 1) * GOLDEN);
}

/* A double uniform in [0, 1) from the top 53 bits. */
static inline double unit(uint64_t key, uint64_t i)
{
    return (double)(draw(key, i) >> 11) * 0x1.0p-53;
}

/* A standard normal value for element I (Box-Muller on draws 2p and 2p + 1, p = I / 2). */
static inline double normal(uint64_t key, uint64_t i)
{
    uint64_t p = i / 2;
    double u1 = 1.0 - unit(key, 2 * p); /* (0, 1]: log stays finite */
    double u2 = unit(key, 2 * p + 1);
    double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
    return i % 2 ? r * sin(a) : r * cos(a);
}

typedef enum rand_kind {
    RAND_NORMAL,
    RAND_UNIFORM,
    RAND_MULTINOMIAL,
    RAND_BERNOULLI,
} rand_kind;

typedef struct rand_attrs {
    rand_kind kind;
    uint64_t key;
    ferry_dtype dtype; /* output type; UNDEFINED: the input's */
    double a, b;       /* mean and scale, or low and high */
    int64_t sample_size;
    int rank; /* RandomNormal and RandomUniform: the shape attribute */
    int64_t dims[FERRY_MAX_RANK];
} rand_attrs;

static bool is_float_type(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_FLOAT16;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static uint64_t seed_key(const eng_node *node)
{
    if (eng_attr_has(node, "seed")) {
        /* Seeds are floats; equal seeds give equal streams, whatever their bits' origin. */
        double s = eng_attr_float(node, "seed", 0.0f);
        if (s == 0.0) s = 0.0; /* -0.0 and 0.0 are the same seed */
        uint64_t bits;
        memcpy(&bits, &s, sizeof(bits));
        return mix64(bits ^ 0x5eedull);
    }
    uint64_t h = hash_str(0xcbf29ce484222325ull, eng_node_op_type(node));
    return mix64(hash_str(h ^ 0xff, eng_node_name(node)));
}

/* Reads the dtype attribute; ALLOWED says which types are valid outputs. */
static ferry_status *read_dtype(const eng_node *node, bool (*allowed)(ferry_dtype),
                                ferry_dtype dflt, ferry_dtype *out)
{
    if (!eng_attr_has(node, "dtype")) {
        *out = dflt;
        return NULL;
    }
    int64_t v = eng_attr_int(node, "dtype", 0);
    if (v <= 0 || v >= FERRY_DTYPE_COUNT || !allowed((ferry_dtype)v))
        return core_error(FERRY_ERR_INVALID_MODEL, "attribute dtype: type %lld (%s) is not a "
                          "valid output type for this operator",
                          (long long)v,
                          v > 0 && v < FERRY_DTYPE_COUNT ? ferry_dtype_name((ferry_dtype)v)
                                                         : "unknown");
    *out = (ferry_dtype)v;
    return NULL;
}

static bool is_index_type(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_INT32 || dt == FERRY_DTYPE_INT64;
}

/* Bernoulli writes 0 and 1 in any numeric type or bool. */
static bool is_bernoulli_type(ferry_dtype dt)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT16:
    case FERRY_DTYPE_FLOAT:
    case FERRY_DTYPE_DOUBLE:
    case FERRY_DTYPE_BFLOAT16:
    case FERRY_DTYPE_UINT8:
    case FERRY_DTYPE_UINT16:
    case FERRY_DTYPE_UINT32:
    case FERRY_DTYPE_UINT64:
    case FERRY_DTYPE_INT8:
    case FERRY_DTYPE_INT16:
    case FERRY_DTYPE_INT32:
    case FERRY_DTYPE_INT64:
    case FERRY_DTYPE_BOOL: return true;
    default: return false;
    }
}

static ferry_status *rand_init_common(const eng_node *node, rand_kind kind, bool like,
                                      void **state)
{
    rand_attrs a;
    memset(&a, 0, sizeof(a));
    a.kind = kind;
    a.key = seed_key(node);
    ferry_status *st = NULL;
    switch (kind) {
    case RAND_NORMAL:
        a.a = eng_attr_float(node, "mean", 0.0f);
        a.b = eng_attr_float(node, "scale", 1.0f);
        break;
    case RAND_UNIFORM:
        a.a = eng_attr_float(node, "low", 0.0f);
        a.b = eng_attr_float(node, "high", 1.0f);
        if (!(a.a <= a.b))
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute low (%g) must not exceed high (%g)", a.a, a.b);
        break;
    case RAND_MULTINOMIAL:
        a.sample_size = eng_attr_int(node, "sample_size", 1);
        if (a.sample_size < 1 || a.sample_size > ((int64_t)1 << 40))
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute sample_size must be positive, got %lld",
                              (long long)a.sample_size);
        st = read_dtype(node, is_index_type, FERRY_DTYPE_INT32, &a.dtype);
        break;
    case RAND_BERNOULLI:
        st = read_dtype(node, is_bernoulli_type, FERRY_DTYPE_UNDEFINED, &a.dtype);
        break;
    }
    if (st) return st;
    if (kind == RAND_NORMAL || kind == RAND_UNIFORM) {
        st = read_dtype(node, is_float_type, like ? FERRY_DTYPE_UNDEFINED : FERRY_DTYPE_FLOAT,
                        &a.dtype);
        if (st) return st;
        if (!like) {
            size_t n = 0;
            const int64_t *dims = eng_attr_ints(node, "shape", &n);
            if (!dims)
                return core_error(FERRY_ERR_INVALID_MODEL, "attribute shape is required");
            if (n > FERRY_MAX_RANK)
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "attribute shape: rank %zu exceeds the maximum of %d", n,
                                  FERRY_MAX_RANK);
            for (size_t i = 0; i < n; i++) {
                if (dims[i] < 0)
                    return core_error(FERRY_ERR_INVALID_MODEL,
                                      "attribute shape: dim %zu is negative (%lld)", i,
                                      (long long)dims[i]);
                a.dims[i] = dims[i];
            }
            a.rank = (int)n;
        }
    }
    rand_attrs *s = malloc(sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    *s = a;
    *state = s;
    return NULL;
}

static ferry_status *normal_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return rand_init_common(node, RAND_NORMAL, false, state);
}

static ferry_status *uniform_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return rand_init_common(node, RAND_UNIFORM, false, state);
}

static ferry_status *normal_like_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return rand_init_common(node, RAND_NORMAL, true, state);
}

static ferry_status *uniform_like_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return rand_init_common(node, RAND_UNIFORM, true, state);
}

static ferry_status *multinomial_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return rand_init_common(node, RAND_MULTINOMIAL, false, state);
}

static ferry_status *bernoulli_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return rand_init_common(node, RAND_BERNOULLI, false, state);
}

/* --- RandomNormal, RandomUniform and their -Like forms --------------------------------- */

static ferry_status *generate_infer(eng_op_call *call)
{
    const rand_attrs *a = call->state;
    eng_tensor *y = call->out[0];
    if (call->n_in >= 1 && call->in[0]) { /* the -Like forms */
        const eng_tensor *x = call->in[0];
        ferry_dtype dt = a->dtype;
        if (dt == FERRY_DTYPE_UNDEFINED) {
            if (!is_float_type(x->dtype))
                return core_error(FERRY_ERR_INVALID_ARGUMENT,
                                  "the input is %s, which is no output type: give attribute "
                                  "dtype (float16, float or double)",
                                  ferry_dtype_name(x->dtype));
            dt = x->dtype;
        }
        eng_set_shape(y, x->rank, x->dims);
        y->dtype = dt;
        return NULL;
    }
    y->dtype = a->dtype;
    eng_set_shape(y, a->rank, a->dims);
    return NULL;
}

/* Stores in element I of Y the greatest value of Y's type below HIGH. */
static void store_below(eng_tensor *y, int64_t i, double high)
{
    switch (y->dtype) {
    case FERRY_DTYPE_DOUBLE: ((double *)y->data)[i] = nextafter(high, -INFINITY); break;
    case FERRY_DTYPE_FLOAT: ((float *)y->data)[i] = nextafterf((float)high, -INFINITY); break;
    default: {
        /* float16: one step down in the bit pattern (up in magnitude when negative). */
        uint16_t h = core_float_to_half((float)high);
        h = (h & 0x7fff) == 0 ? 0x8001 : (h & 0x8000) ? (uint16_t)(h + 1) : (uint16_t)(h - 1);
        ((uint16_t *)y->data)[i] = h;
    }
    }
}

static ferry_status *generate_run(eng_op_call *call)
{
    const rand_attrs *a = call->state;
    eng_tensor *y = call->out[0];
    int64_t n = eng_numel(y);
    bool is_normal = a->kind == RAND_NORMAL;
    double lo = a->a, span = a->b - a->a;
    for (int64_t i = 0; i < n; i++) {
        double v = is_normal ? a->a + a->b * normal(a->key, (uint64_t)i)
                             : lo + span * unit(a->key, (uint64_t)i);
        core_store_f64(y->dtype, y->data, i, v);
        /* Rounding to the output type can reach high itself; uniform draws stay below it. */
        if (!is_normal && span > 0 && core_load_f64(y->dtype, y->data, i) >= a->b)
            store_below(y, i, a->b);
    }
    return NULL;
}

/* --- Multinomial ---------------------------------------------------------------------------- */

static ferry_status *multinomial_check(const eng_op_call *call)
{
    const eng_tensor *x = call->in[0];
    char s[128];
    if (!is_float_type(x->dtype)) return eng_bad_dtype("input", x->dtype);
    if (x->rank != 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input: expected shape [batch_size, class_size], got %s",
                          eng_shape_str(x, s, sizeof(s)));
    if (x->dims[1] < 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input: class_size must be at least 1");
    return NULL;
}

static ferry_status *multinomial_infer(eng_op_call *call)
{
    const rand_attrs *a = call->state;
    ferry_status *st = multinomial_check(call);
    if (st) return st;
    const eng_tensor *x = call->in[0];
    int64_t dims[2] = {x->dims[0], a->sample_size};
    eng_set_shape(call->out[0], 2, dims);
    call->out[0]->dtype = a->dtype;
    call->workspace_size = (size_t)x->dims[1] * sizeof(double);
    return NULL;
}

static ferry_status *multinomial_run(eng_op_call *call)
{
    const rand_attrs *a = call->state;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    int64_t batch = x->dims[0], classes = x->dims[1];
    double *cdf = call->workspace;
    for (int64_t b = 0; b < batch; b++) {
        /* The inputs are unnormalised log-probabilities: exponentiate relative to the row's
         * maximum so that nothing overflows. */
        double mx = -INFINITY;
        for (int64_t c = 0; c < classes; c++) {
            double v = core_load_f64(x->dtype, x->data, b * classes + c);
            mx = v > mx ? v : mx;
        }
        double total = 0.0;
        for (int64_t c = 0; c < classes; c++) {
            double v = core_load_f64(x->dtype, x->data, b * classes + c);
            total += mx == -INFINITY ? 0.0 : exp(v - mx);
            cdf[c] = total;
        }
        for (int64_t s = 0; s < a->sample_size; s++) {
            int64_t i = b * a->sample_size + s;
            /* Without any probability mass (all -inf or NaN) every sample is the last class,
             * as onnxruntime's sampler returns. */
            int64_t pick = classes - 1;
            if (total > 0.0 && total == total) {
                double u = unit(a->key, (uint64_t)i) * total;
                int64_t lo = 0, hi = classes - 1; /* first c with cdf[c] > u */
                while (lo < hi) {
                    int64_t mid = lo + (hi - lo) / 2;
                    if (cdf[mid] > u)
                        hi = mid;
                    else
                        lo = mid + 1;
                }
                pick = lo;
            }
            core_store_i64(y->dtype, y->data, i, pick);
        }
    }
    return NULL;
}

/* --- Bernoulli ------------------------------------------------------------------------------ */

static ferry_status *bernoulli_infer(eng_op_call *call)
{
    const rand_attrs *a = call->state;
    const eng_tensor *x = call->in[0];
    if (!is_float_type(x->dtype)) return eng_bad_dtype("input", x->dtype);
    eng_same_shape(call->out[0], x);
    call->out[0]->dtype = a->dtype == FERRY_DTYPE_UNDEFINED ? x->dtype : a->dtype;
    return NULL;
}

static ferry_status *bernoulli_run(eng_op_call *call)
{
    const rand_attrs *a = call->state;
    const eng_tensor *x = call->in[0];
    eng_tensor *y = call->out[0];
    int64_t n = eng_numel(x);
    for (int64_t i = 0; i < n; i++) {
        double p = core_load_f64(x->dtype, x->data, i);
        /* u in [0, 1): p = 0 never fires, p = 1 always does. */
        core_store_i64(y->dtype, y->data, i, unit(a->key, (uint64_t)i) < p ? 1 : 0);
    }
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "", .name = "RandomNormal", .since_version = 1, .init = normal_init,
     .fini = free, .infer = generate_infer, .run = generate_run},
    {.domain = "", .name = "RandomUniform", .since_version = 1, .init = uniform_init,
     .fini = free, .infer = generate_infer, .run = generate_run},
    {.domain = "", .name = "RandomNormalLike", .since_version = 1, .init = normal_like_init,
     .fini = free, .infer = generate_infer, .run = generate_run},
    {.domain = "", .name = "RandomUniformLike", .since_version = 1, .init = uniform_like_init,
     .fini = free, .infer = generate_infer, .run = generate_run},
    {.domain = "", .name = "Multinomial", .since_version = 7, .init = multinomial_init,
     .fini = free, .infer = multinomial_infer, .run = multinomial_run},
    {.domain = "", .name = "Bernoulli", .since_version = 15, .init = bernoulli_init,
     .fini = free, .infer = bernoulli_infer, .run = bernoulli_run},
};

const eng_op_table eng_ops_random = {ops, sizeof(ops) / sizeof(ops[0])};
