/* tfidf.c - TfIdfVectorizer: counts pooled n-grams (with skips) of integer or string tokens.
 *
 * The pool's n-grams are sorted per length at load, so each candidate n-gram in the input is a
 * binary search rather than a scan of the pool.
 */
#include "engine/op.h"

#include <stdlib.h>
#include <string.h>

typedef enum tfidf_mode { MODE_TF, MODE_IDF, MODE_TFIDF } tfidf_mode;

typedef struct tfidf {
    int64_t min_n, max_n, max_skip;
    tfidf_mode mode;
    bool strings;
    const int64_t *pool_ints;
    const char *const *pool_strs;
    size_t pool_len;
    const int64_t *counts; /* start of the n-grams of length i + 1 in the pool */
    size_t n_counts;
    const int64_t *indexes; /* output column of the i-th pooled n-gram */
    size_t n_ngrams;
    const float *weights;
    int64_t width; /* output columns: max(indexes) + 1 */
    /* per length n (1-based): ngram ids sorted by content */
    int64_t *sorted[16];
    size_t n_sorted[16];
} tfidf;

/* Sorting context: qsort has none, so lengths and pools travel in a static per call. */
typedef struct key_ctx {
    const tfidf *t;
    int64_t n;
    const int64_t *first; /* pool start of each n-gram id */
} key_ctx;

static _Thread_local const key_ctx *sort_ctx;

static int cmp_tokens(const tfidf *t, int64_t n, int64_t pool_a, const void *tokens_b,
                      const int64_t *pos_b, bool b_in_pool)
{
    for (int64_t k = 0; k < n; k++) {
        if (t->strings) {
            const char *a = t->pool_strs[pool_a + k];
            const char *b =
                b_in_pool ? t->pool_strs[pos_b[0] + k] : ((const char *const *)tokens_b)[pos_b[k]];
            int c = strcmp(a, b ? b : "");
            if (c) return c;
        } else {
            int64_t a = t->pool_ints[pool_a + k];
            int64_t b =
                b_in_pool ? t->pool_ints[pos_b[0] + k] : ((const int64_t *)tokens_b)[pos_b[k]];
            if (a != b) return a < b ? -1 : 1;
        }
    }
    return 0;
}

static int cmp_ids(const void *x, const void *y)
{
    const key_ctx *c = sort_ctx;
    int64_t a = c->first[*(const int64_t *)x], b = c->first[*(const int64_t *)y];
    return cmp_tokens(c->t, c->n, a, NULL, &b, true);
}

static void tfidf_free(void *p)
{
    tfidf *t = p;
    if (!t) return;
    for (int i = 0; i < 16; i++) free(t->sorted[i]);
    free(t);
}

static ferry_status *tfidf_init(const eng_node *n, int opset, void **state)
{
    (void)opset;
    ferry_status *st = NULL;
    int64_t *first = NULL;
    tfidf *t = calloc(1, sizeof(*t));
    if (!t) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    t->min_n = eng_attr_int(n, "min_gram_length", 0);
    t->max_n = eng_attr_int(n, "max_gram_length", 0);
    t->max_skip = eng_attr_int(n, "max_skip_count", 0);
    const char *mode = eng_attr_string(n, "mode", "");
    if (!strcmp(mode, "TF"))
        t->mode = MODE_TF;
    else if (!strcmp(mode, "IDF"))
        t->mode = MODE_IDF;
    else if (!strcmp(mode, "TFIDF"))
        t->mode = MODE_TFIDF;
    else {
        st = core_error(FERRY_ERR_INVALID_MODEL, "attribute mode: '%s' is not TF, IDF or TFIDF",
                        mode);
        goto fail;
    }
    if (t->min_n < 1 || t->max_n < t->min_n || t->max_n > 16 || t->max_skip < 0 ||
        t->max_skip > 1 << 20) {
        st = core_error(FERRY_ERR_INVALID_MODEL,
                        "gram lengths must satisfy 1 <= min <= max <= 16 and skips >= 0");
        goto fail;
    }
    t->pool_ints = eng_attr_ints(n, "pool_int64s", &t->pool_len);
    if (!t->pool_ints) {
        t->pool_strs = eng_attr_strings(n, "pool_strings", &t->pool_len);
        t->strings = true;
    }
    t->counts = eng_attr_ints(n, "ngram_counts", &t->n_counts);
    t->indexes = eng_attr_ints(n, "ngram_indexes", &t->n_ngrams);
    size_t n_weights;
    t->weights = eng_attr_floats(n, "weights", &n_weights);
    if ((!t->pool_ints && !t->pool_strs) || !t->counts || !t->indexes) {
        st = core_error(FERRY_ERR_INVALID_MODEL,
                        "needs pool_int64s or pool_strings, ngram_counts and ngram_indexes");
        goto fail;
    }
    if (t->weights && n_weights != t->n_ngrams) {
        st = core_error(FERRY_ERR_INVALID_MODEL, "weights has %zu values for %zu n-grams",
                        n_weights, t->n_ngrams);
        goto fail;
    }
    /* Walk the pool: n-grams of length i + 1 start at counts[i]. */
    first = malloc((t->n_ngrams + 1) * sizeof(int64_t));
    if (!first) goto nomem;
    size_t id = 0;
    for (size_t i = 0; i < t->n_counts && i < 16; i++) {
        int64_t len = (int64_t)i + 1;
        int64_t start = t->counts[i];
        int64_t end = i + 1 < t->n_counts ? t->counts[i + 1] : (int64_t)t->pool_len;
        if (start < 0 || end < start || end > (int64_t)t->pool_len || (end - start) % len) {
            st = core_error(FERRY_ERR_INVALID_MODEL,
                            "ngram_counts[%zu] = %lld does not fit the "
                            "pool",
                            i, (long long)start);
            goto fail;
        }
        size_t count = (size_t)((end - start) / len);
        if (id + count > t->n_ngrams) {
            st = core_error(FERRY_ERR_INVALID_MODEL, "the pool holds more n-grams than "
                                                     "ngram_indexes lists");
            goto fail;
        }
        t->sorted[i] = malloc((count + 1) * sizeof(int64_t));
        if (!t->sorted[i]) goto nomem;
        for (size_t k = 0; k < count; k++) {
            first[id + k] = start + (int64_t)k * len;
            t->sorted[i][k] = (int64_t)(id + k);
        }
        t->n_sorted[i] = count;
        key_ctx ctx = {t, len, first};
        sort_ctx = &ctx;
        qsort(t->sorted[i], count, sizeof(int64_t), cmp_ids);
        sort_ctx = NULL;
        id += count;
    }
    /* From here on the sorted ids refer to pool positions. */
    for (int i = 0; i < 16; i++)
        for (size_t k = 0; k < t->n_sorted[i]; k++)
            t->sorted[i][k] = t->sorted[i][k] << 32 | first[t->sorted[i][k]];
    t->width = 0;
    for (size_t i = 0; i < t->n_ngrams; i++) {
        if (t->indexes[i] < 0 || t->indexes[i] > 1 << 24) {
            st = core_error(FERRY_ERR_INVALID_MODEL, "ngram_indexes[%zu] is out of range", i);
            goto fail;
        }
        if (t->indexes[i] + 1 > t->width) t->width = t->indexes[i] + 1;
    }
    free(first);
    *state = t;
    return NULL;
nomem:
    st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
fail:
    free(first);
    tfidf_free(t);
    return st;
}

static ferry_status *tfidf_infer(eng_op_call *c)
{
    const tfidf *t = c->state;
    const eng_tensor *x = c->in[0];
    bool ok = t->strings ? x->dtype == FERRY_DTYPE_STRING
                         : (x->dtype == FERRY_DTYPE_INT64 || x->dtype == FERRY_DTYPE_INT32);
    if (!ok) return eng_bad_dtype("input X", x->dtype);
    if (x->rank != 1 && x->rank != 2)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "input X must be 1-D or 2-D");
    eng_tensor *y = c->out[0];
    y->dtype = FERRY_DTYPE_FLOAT;
    y->rank = x->rank;
    if (x->rank == 2) y->dims[0] = x->dims[0];
    y->dims[x->rank - 1] = t->width;
    /* int32 tokens are widened once per row into the workspace */
    c->workspace_size = (size_t)(x->dims[x->rank - 1] + 1) * sizeof(int64_t);
    return NULL;
}

/* Finds the n-gram of length N at token positions POS; its id or -1. */
static int64_t lookup(const tfidf *t, int64_t n, const void *tokens, const int64_t *pos)
{
    const int64_t *ids = t->sorted[n - 1];
    size_t lo = 0, hi = t->n_sorted[n - 1];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = cmp_tokens(t, n, ids[mid] & 0xffffffff, tokens, pos, false);
        if (c == 0) return ids[mid] >> 32;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static ferry_status *tfidf_run(eng_op_call *c)
{
    const tfidf *t = c->state;
    const eng_tensor *x = c->in[0];
    float *y = c->out[0]->data;
    int64_t rows = x->rank == 2 ? x->dims[0] : 1, len = x->dims[x->rank - 1];
    int64_t *row_ints = c->workspace;
    memset(y, 0, (size_t)(rows * t->width) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        const void *tokens;
        if (t->strings) {
            tokens = (const char *const *)x->data + r * len;
        } else {
            for (int64_t i = 0; i < len; i++)
                row_ints[i] = core_load_i64(x->dtype, x->data, r * len + i);
            tokens = row_ints;
        }
        float *out = y + r * t->width;
        int64_t pos[16];
        for (int64_t n = t->min_n; n <= t->max_n; n++) {
            if (n > (int64_t)t->n_counts || !t->n_sorted[n - 1]) continue;
            /* Unigrams are the same whatever the skip: count them once. */
            int64_t skips = n == 1 ? 0 : t->max_skip;
            for (int64_t s = 0; s <= skips; s++) {
                for (int64_t start = 0; start + (n - 1) * (s + 1) < len; start++) {
                    for (int64_t k = 0; k < n; k++) pos[k] = start + k * (s + 1);
                    int64_t id = lookup(t, n, tokens, pos);
                    if (id >= 0) out[t->indexes[id]] += 1;
                }
            }
        }
        if (t->mode == MODE_TF) continue;
        for (size_t i = 0; i < t->n_ngrams; i++) {
            float *v = &out[t->indexes[i]];
            if (t->mode == MODE_IDF && *v > 0) *v = 1;
            if (t->weights) *v *= t->weights[i];
        }
    }
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "",
     .name = "TfIdfVectorizer",
     .since_version = 9,
     .init = tfidf_init,
     .fini = tfidf_free,
     .infer = tfidf_infer,
     .run = tfidf_run},
};

const eng_op_table eng_ops_tfidf = {ops, sizeof(ops) / sizeof(ops[0])};
