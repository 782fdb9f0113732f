/* op_util.c - small helpers shared by operator implementations. */
#include "engine/op.h"

#include <stdio.h>
#include <string.h>

int64_t eng_numel(const eng_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->dims[i];
    return n;
}

int64_t ferry_tensor_view_count(const ferry_tensor_view *view)
{
    return eng_numel(view);
}

size_t eng_nbytes(const eng_tensor *t)
{
    return (size_t)eng_numel(t) * ferry_dtype_size(t->dtype);
}

void eng_same_shape(eng_tensor *dst, const eng_tensor *src)
{
    dst->dtype = src->dtype;
    eng_set_shape(dst, src->rank, src->dims);
}

void eng_set_shape(eng_tensor *dst, int rank, const int64_t *dims)
{
    dst->rank = rank;
    for (int i = 0; i < rank; i++) dst->dims[i] = dims[i];
}

const char *eng_shape_str(const eng_tensor *t, char *buf, size_t size)
{
    size_t used = 0;
    int n = snprintf(buf, size, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < t->rank && used < size; i++) {
        n = snprintf(buf + used, size - used, "%s%lld", i ? "," : "", (long long)t->dims[i]);
        if (n > 0) used += (size_t)n;
    }
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

ferry_status *eng_axis(int64_t axis, int rank, int *out)
{
    int64_t r = rank;
    if (axis < -r || axis >= r || (r == 0 && axis != 0))
        return core_error(FERRY_ERR_INVALID_MODEL, "axis %lld is out of range for rank %d",
                          (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + r : axis);
    return NULL;
}

ferry_status *eng_broadcast_shapes(eng_tensor *out, const eng_tensor *const *ins, int n)
{
    int rank = 0;
    for (int i = 0; i < n; i++)
        if (ins[i] && ins[i]->rank > rank) rank = ins[i]->rank;
    int64_t dims[FERRY_MAX_RANK];
    for (int d = 0; d < rank; d++) dims[d] = 1;
    for (int i = 0; i < n; i++) {
        const eng_tensor *t = ins[i];
        if (!t) continue;
        int off = rank - t->rank;
        for (int d = 0; d < t->rank; d++) {
            int64_t a = dims[off + d], b = t->dims[d];
            if (a == b || b == 1) continue;
            if (a == 1) {
                dims[off + d] = b;
                continue;
            }
            char s1[128], s2[128];
            eng_tensor cur = {0};
            cur.rank = rank;
            memcpy(cur.dims, dims, sizeof(dims));
            return core_error(
                FERRY_ERR_INVALID_ARGUMENT, "shapes %s and %s cannot be broadcast together",
                eng_shape_str(&cur, s1, sizeof(s1)), eng_shape_str(t, s2, sizeof(s2)));
        }
    }
    eng_set_shape(out, rank, dims);
    return NULL;
}

ferry_status *eng_read_ints(const eng_tensor *t, int64_t *dst, size_t max, size_t *count)
{
    if (t->dtype != FERRY_DTYPE_INT64 && t->dtype != FERRY_DTYPE_INT32)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "expected an int64 or int32 tensor, got %s",
                          ferry_dtype_name(t->dtype));
    int64_t n = eng_numel(t);
    if (n < 0 || (uint64_t)n > max)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "expected at most %zu values, got %lld", max,
                          (long long)n);
    if (!t->data && n > 0)
        return core_error(FERRY_ERR_INTERNAL, "integer tensor has no data at plan time");
    for (int64_t i = 0; i < n; i++) dst[i] = core_load_i64(t->dtype, t->data, i);
    *count = (size_t)n;
    return NULL;
}

ferry_status *eng_bad_dtype(const char *what, ferry_dtype dt)
{
    return core_error(FERRY_ERR_UNSUPPORTED, "%s of type %s is not supported", what,
                      ferry_dtype_name(dt));
}

static bool is_container(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_SEQUENCE || dt == FERRY_DTYPE_OPTIONAL;
}

ferry_status *eng_copy_value(core_pool *pool, const eng_tensor *src, eng_tensor *dst)
{
    size_t bytes = eng_nbytes(src);
    eng_tensor copy = *src;
    copy.data = core_pool_alloc(pool, bytes ? bytes : 1, 64);
    if (!copy.data) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    if (bytes) memcpy(copy.data, src->data, bytes);
    int64_t n = eng_numel(src);
    if (src->dtype == FERRY_DTYPE_STRING) {
        const char **strs = copy.data;
        for (int64_t i = 0; i < n; i++) {
            const char *s = strs[i] ? strs[i] : "";
            if (!(strs[i] = core_pool_strndup(pool, s, strlen(s))))
                return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        }
    } else if (is_container(src->dtype)) {
        eng_tensor *items = copy.data;
        for (int64_t i = 0; i < n; i++) {
            ferry_status *st = eng_copy_value(pool, &items[i], &items[i]);
            if (st) return st;
        }
    }
    *dst = copy;
    return NULL;
}

bool eng_value_equal(const eng_tensor *a, const eng_tensor *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int d = 0; d < a->rank; d++)
        if (a->dims[d] != b->dims[d]) return false;
    int64_t n = eng_numel(a);
    if (n && (!a->data || !b->data)) return false;
    if (a->dtype == FERRY_DTYPE_STRING) {
        const char *const *x = a->data, *const *y = b->data;
        for (int64_t i = 0; i < n; i++)
            if (strcmp(x[i] ? x[i] : "", y[i] ? y[i] : "")) return false;
        return true;
    }
    if (is_container(a->dtype)) {
        const eng_tensor *x = a->data, *y = b->data;
        for (int64_t i = 0; i < n; i++)
            if (!eng_value_equal(&x[i], &y[i])) return false;
        return true;
    }
    size_t bytes = eng_nbytes(a);
    return !bytes || !memcmp(a->data, b->data, bytes);
}
