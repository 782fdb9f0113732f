/* onnx_load.c - decodes ONNX ModelProto / GraphProto / TensorProto into a ferry_model.
 *
 * Field numbers are those of onnx.proto (IR versions 3 to 8). Unknown fields are skipped, as
 * protobuf requires, so newer files with extra fields still load. Weights stored as raw_data
 * or packed floats are used in place when their alignment allows; anything else is decoded
 * once into the model's pool.
 */
#include "engine/graph.h"
#include "engine/pb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "Ferry reads ONNX tensors in place and needs a little-endian host"
#endif

#define BAD(...) core_error(FERRY_ERR_INVALID_MODEL, __VA_ARGS__)
#define NOMEM()  core_error(FERRY_ERR_NO_MEMORY, "out of memory while loading the model")

/* Upper bound on counts read from the file before allocating for them. */
#define MAX_LIST 100000000
/* Misaligned initializers from this size up wait in the file until the graph says who reads
 * them: weights only a packing operator reads are never copied (graph.c, align_constants). */
#define MIN_DEFERRED_COPY 4096

static const char *pstr(core_pool *pool, const pb_field *f)
{
    return core_pool_strndup(pool, (const char *)f->data, f->len);
}

/* Collects the entries of a repeated scalar field that may be packed (PB_LEN) or not. proto2
 * writes attribute lists unpacked, one field per value, so the array grows geometrically: a
 * tree ensemble's lists hold tens of thousands of values. */
typedef struct num_list {
    size_t count, cap;
    int64_t *ints;
    float *floats;
} num_list;

/* Capacity for COUNT + ADD entries: at least double the current one. */
static size_t grown(size_t cap, size_t count, size_t add)
{
    size_t want = count + add, c = cap ? cap * 2 : 16;
    return c > want ? c : want;
}

static ferry_status *append_varints(core_pool *pool, num_list *l, const pb_field *f)
{
    size_t add = 0;
    if (f->wire == PB_VARINT) {
        add = 1;
    } else if (f->wire == PB_LEN) {
        for (size_t i = 0; i < f->len; i++) add += !(f->data[i] & 0x80);
    } else {
        return BAD("integer list has wire type %u", f->wire);
    }
    if (l->count + add > MAX_LIST) return BAD("integer list is too long");
    int64_t *n = l->ints;
    if (l->count + add > l->cap) {
        size_t cap = grown(l->cap, l->count, add);
        n = core_pool_alloc(pool, cap * sizeof(int64_t) + 8, 8);
        if (!n) return NOMEM();
        if (l->count) memcpy(n, l->ints, l->count * sizeof(int64_t));
        l->cap = cap;
    }
    if (f->wire == PB_VARINT) {
        n[l->count++] = (int64_t)f->u;
    } else {
        pb_reader r = pb_init(f->data, f->len);
        uint64_t v;
        while (r.p < r.end && pb_read_varint(&r, &v)) n[l->count++] = (int64_t)v;
        if (r.failed) return BAD("truncated packed integer list");
    }
    l->ints = n;
    return NULL;
}

static ferry_status *append_floats(core_pool *pool, num_list *l, const pb_field *f)
{
    size_t add;
    if (f->wire == PB_FIXED32)
        add = 1;
    else if (f->wire == PB_LEN && f->len % 4 == 0)
        add = f->len / 4;
    else
        return BAD("float list is malformed");
    if (l->count + add > MAX_LIST) return BAD("float list is too long");
    float *n = l->floats;
    if (l->count + add > l->cap) {
        size_t cap = grown(l->cap, l->count, add);
        n = core_pool_alloc(pool, cap * sizeof(float) + 4, 8);
        if (!n) return NOMEM();
        if (l->count) memcpy(n, l->floats, l->count * sizeof(float));
        l->cap = cap;
    }
    if (f->wire == PB_FIXED32) {
        uint32_t u = (uint32_t)f->u;
        memcpy(&n[l->count], &u, 4);
    } else {
        memcpy(&n[l->count], f->data, f->len);
    }
    l->count += add;
    l->floats = n;
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * External data
 * ---------------------------------------------------------------------------------------- */

static bool safe_relative_path(const char *loc)
{
    if (!*loc || loc[0] == '/' || strchr(loc, '\\')) return false;
    const char *p = loc;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        if (!slash) break;
        p = slash + 1;
    }
    return true;
}

static ferry_status *map_external(ferry_model *m, const char *loc, eng_mapping *out)
{
    if (!m || !m->dir)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "tensor data is stored in external file '%s', which needs the model to "
                          "be opened from a file path",
                          loc);
    if (!safe_relative_path(loc))
        return BAD("external data location '%s' must be a relative path inside the model's "
                   "folder",
                   loc);
    char path[PATH_MAX], real[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", m->dir, loc) >= (int)sizeof(path))
        return BAD("external data path '%s' is too long", loc);
    if (!realpath(path, real))
        return core_error(FERRY_ERR_NOT_FOUND, "external data file '%s': %s", path,
                          strerror(errno));
    size_t dl = strlen(m->dir);
    if (strncmp(real, m->dir, dl) != 0 || real[dl] != '/')
        return BAD("external data file '%s' resolves outside the model's folder", loc);
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return core_error(FERRY_ERR_IO, "external data file '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return BAD("external data '%s' is not a regular file", loc);
    }
    void *addr = NULL;
    if (st.st_size > 0) {
        addr = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr == MAP_FAILED) {
            close(fd);
            return core_error(FERRY_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
        }
    }
    close(fd);
    eng_mapping *n = realloc(m->externals, (m->n_externals + 1) * sizeof(*n));
    if (!n) {
        if (addr) munmap(addr, (size_t)st.st_size);
        return NOMEM();
    }
    m->externals = n;
    m->externals[m->n_externals++] = (eng_mapping){addr, (size_t)st.st_size};
    *out = m->externals[m->n_externals - 1];
    return NULL;
}

static ferry_status *external_bytes(ferry_model *m, const pb_field *entries, size_t n_entries,
                                    const uint8_t **data, size_t *len)
{
    char loc[PATH_MAX] = "";
    uint64_t offset = 0, length = UINT64_MAX;
    for (size_t i = 0; i < n_entries; i++) {
        pb_reader r = pb_init(entries[i].data, entries[i].len);
        pb_field f;
        const uint8_t *k = NULL, *v = NULL;
        size_t kl = 0, vl = 0;
        while (pb_next(&r, &f)) {
            if (f.wire != PB_LEN) continue;
            if (f.number == 1) k = f.data, kl = f.len;
            if (f.number == 2) v = f.data, vl = f.len;
        }
        if (r.failed || !k) return BAD("malformed external_data entry");
        char val[PATH_MAX];
        if (vl >= sizeof(val)) return BAD("external_data value is too long");
        memcpy(val, v ? (const char *)v : "", vl);
        val[vl] = 0;
        if (kl == 8 && !memcmp(k, "location", 8)) {
            memcpy(loc, val, vl + 1);
        } else if (kl == 6 && !memcmp(k, "offset", 6)) {
            char *end;
            offset = strtoull(val, &end, 10);
            if (*end || !*val) return BAD("external_data offset '%s' is not a number", val);
        } else if (kl == 6 && !memcmp(k, "length", 6)) {
            char *end;
            length = strtoull(val, &end, 10);
            if (*end || !*val) return BAD("external_data length '%s' is not a number", val);
        }
    }
    if (!*loc) return BAD("external_data has no location");
    eng_mapping map = {0};
    ferry_status *st = map_external(m, loc, &map);
    if (st) return st;
    if (offset > map.size)
        return BAD("external data offset %llu is past the end of '%s'", (unsigned long long)offset,
                   loc);
    if (length == UINT64_MAX) length = map.size - offset;
    if (length > map.size - offset)
        return BAD("external data '%s' is shorter than the %llu bytes the tensor declares", loc,
                   (unsigned long long)length);
    *data = (const uint8_t *)map.addr + offset;
    *len = (size_t)length;
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * TensorProto
 * ---------------------------------------------------------------------------------------- */

ferry_status *eng_check_tensor_shape(const eng_tensor *t)
{
    if (t->rank < 0 || t->rank > FERRY_MAX_RANK)
        return core_error(FERRY_ERR_UNSUPPORTED, "rank %d exceeds Ferry's limit of %d", t->rank,
                          FERRY_MAX_RANK);
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0)
            return core_error(FERRY_ERR_INVALID_ARGUMENT, "dimension %d is negative (%lld)", i,
                              (long long)t->dims[i]);
        if (t->dims[i] > 0 && n > ENG_MAX_ELEMENTS / t->dims[i])
            return core_error(FERRY_ERR_NO_MEMORY, "tensor has more than 2^40 elements");
        n *= t->dims[i];
    }
    return NULL;
}

/* A string tensor: string_data entries become NUL-terminated copies in POOL, and the tensor's
 * data the array of pointers to them. */
static ferry_status *string_tensor(core_pool *pool, const uint8_t *buf, size_t len,
                                   size_t n_strings, eng_tensor *t)
{
    int64_t count = eng_numel(t);
    if ((int64_t)n_strings != count)
        return BAD("string tensor holds %zu values but its shape needs %lld", n_strings,
                   (long long)count);
    const char **strs = core_pool_alloc(pool, (n_strings + 1) * sizeof(char *), 64);
    if (!strs) return NOMEM();
    pb_reader r = pb_init(buf, len);
    pb_field f;
    size_t i = 0;
    while (pb_next(&r, &f)) {
        if (f.number != 6) continue;
        if (f.wire != PB_LEN) return BAD("string_data is malformed");
        if (!(strs[i++] = pstr(pool, &f))) return NOMEM();
    }
    t->data = (void *)strs;
    return NULL;
}

/* As eng_parse_tensor; with MISALIGNED non-NULL, data in the file that is not aligned to its
 * element is left in place rather than copied, and *MISALIGNED says so (the caller copies it
 * once it knows who reads it). */
static ferry_status *parse_tensor(ferry_model *model, core_pool *pool, const uint8_t *buf,
                                  size_t len, eng_tensor *t, const char **name, bool *misaligned)
{
    pb_reader r = pb_init(buf, len);
    pb_field f;
    num_list dims = {0}, ints = {0}, floats = {0};
    const uint8_t *raw = NULL, *f64 = NULL;
    size_t raw_len = 0, f64_len = 0, n_ext = 0, n_strings = 0;
    bool has_raw = false, external = false;
    int64_t dtype = 0;
    pb_field ext[16];
    ferry_status *st = NULL;
    memset(t, 0, sizeof(*t));
    if (name) *name = "";
    while (pb_next(&r, &f)) {
        switch (f.number) {
        case 1:
            st = append_varints(pool, &dims, &f);
            break;
        case 2:
            dtype = (int64_t)f.u;
            break;
        case 3:
            return core_error(FERRY_ERR_UNSUPPORTED, "segmented tensors are not supported");
        case 4:
            if (f.wire == PB_LEN && f.len % 4 == 0 && floats.count == 0 && !floats.floats) {
                /* packed float_data: keep in place like raw_data */
                raw = f.data, raw_len = f.len, has_raw = true;
                floats.floats = (float *)1; /* mark as seen */
            } else {
                if (floats.floats == (float *)1) {
                    floats.floats = NULL;
                    /* a second run of float_data after a packed one: decode both */
                    pb_field prev = {.number = 4, .wire = PB_LEN, .data = raw, .len = raw_len};
                    has_raw = false;
                    st = append_floats(pool, &floats, &prev);
                }
                if (!st) st = append_floats(pool, &floats, &f);
            }
            break;
        case 5:  /* int32_data */
        case 7:  /* int64_data */
        case 11: /* uint64_data */
            st = append_varints(pool, &ints, &f);
            break;
        case 6:
            n_strings++;
            break;
        case 8:
            if (name && f.wire == PB_LEN) {
                *name = pstr(pool, &f);
                if (!*name) return NOMEM();
            }
            break;
        case 9:
            if (f.wire != PB_LEN) return BAD("raw_data has the wrong wire type");
            raw = f.data, raw_len = f.len, has_raw = true;
            break;
        case 10:
            if (f.wire == PB_LEN)
                f64 = f.data, f64_len = f.len;
            else
                return BAD("double_data must be packed");
            break;
        case 13:
            if (n_ext >= 16) return BAD("too many external_data entries");
            ext[n_ext++] = f;
            break;
        case 14:
            external = f.u == 1;
            break;
        default:
            break;
        }
        if (st) return st;
    }
    if (r.failed) return BAD("truncated or malformed TensorProto");
    if (floats.floats == (float *)1) floats.floats = NULL;
    if (dtype <= 0 || dtype >= FERRY_DTYPE_COUNT)
        return BAD("tensor has unknown data type %lld", (long long)dtype);
    t->dtype = (ferry_dtype)dtype;
    if (dims.count > FERRY_MAX_RANK)
        return core_error(FERRY_ERR_UNSUPPORTED, "tensor of rank %zu exceeds the limit of %d",
                          dims.count, FERRY_MAX_RANK);
    t->rank = (int)dims.count;
    for (size_t i = 0; i < dims.count; i++) t->dims[i] = dims.ints[i];
    if ((st = eng_check_tensor_shape(t))) return st;
    if (t->dtype == FERRY_DTYPE_STRING) return string_tensor(pool, buf, len, n_strings, t);
    if (n_strings) return BAD("string_data given for a %s tensor", ferry_dtype_name(t->dtype));
    size_t esize = ferry_dtype_size(t->dtype);
    if (!esize || t->dtype == FERRY_DTYPE_COMPLEX64 || t->dtype == FERRY_DTYPE_COMPLEX128)
        return core_error(FERRY_ERR_UNSUPPORTED, "tensors of type %s are not supported",
                          ferry_dtype_name(t->dtype));
    int64_t count = eng_numel(t);
    size_t nbytes = (size_t)count * esize;

    if (external) {
        if ((st = external_bytes(model, ext, n_ext, &raw, &raw_len))) return st;
        has_raw = true;
    }
    if (model && model->max_weight_bytes) {
        model->weight_bytes += nbytes;
        if (model->weight_bytes > model->max_weight_bytes)
            return core_error(FERRY_ERR_NO_MEMORY,
                              "the model's weights exceed the limit of %llu bytes",
                              (unsigned long long)model->max_weight_bytes);
    }
    if (has_raw) {
        if (raw_len != nbytes)
            return BAD("tensor data has %zu bytes, but its %s shape needs %zu", raw_len,
                       ferry_dtype_name(t->dtype), nbytes);
        if (nbytes == 0) {
            t->data = core_pool_alloc(pool, 1, 64);
            return t->data ? NULL : NOMEM();
        }
        /* In place: the mapping outlives the model's use of it. */
        if ((uintptr_t)raw % esize == 0 || (misaligned && nbytes >= MIN_DEFERRED_COPY)) {
            t->data = (void *)raw;
            if (misaligned) *misaligned = (uintptr_t)raw % esize != 0;
            return NULL;
        }
        void *copy = core_pool_alloc(pool, nbytes, 64);
        if (!copy) return NOMEM();
        memcpy(copy, raw, nbytes);
        t->data = copy;
        return NULL;
    }
    void *data = core_pool_alloc(pool, nbytes ? nbytes : 1, 64);
    if (!data) return NOMEM();
    t->data = data;
    size_t have;
    if (floats.count) {
        if (t->dtype != FERRY_DTYPE_FLOAT)
            return BAD("float_data given for a %s tensor", ferry_dtype_name(t->dtype));
        have = floats.count;
        if ((int64_t)have == count) memcpy(data, floats.floats, nbytes);
    } else if (f64) {
        if (t->dtype != FERRY_DTYPE_DOUBLE && t->dtype != FERRY_DTYPE_COMPLEX128)
            return BAD("double_data given for a %s tensor", ferry_dtype_name(t->dtype));
        have = f64_len / 8;
        if ((int64_t)have == count && f64_len == nbytes) memcpy(data, f64, nbytes);
    } else {
        have = ints.count;
        if ((int64_t)have == count) {
            for (int64_t i = 0; i < count; i++) {
                int64_t v = ints.ints[i];
                switch (t->dtype) {
                case FERRY_DTYPE_FLOAT16:
                case FERRY_DTYPE_BFLOAT16:
                    ((uint16_t *)data)[i] = (uint16_t)v;
                    break;
                case FERRY_DTYPE_FLOAT:
                case FERRY_DTYPE_DOUBLE:
                    return BAD("%s tensor given as integers", ferry_dtype_name(t->dtype));
                default:
                    core_store_i64(t->dtype, data, i, v);
                    break;
                }
            }
        }
    }
    if ((int64_t)have != count)
        return BAD("tensor holds %zu values but its shape needs %lld", have, (long long)count);
    return NULL;
}

ferry_status *eng_parse_tensor(ferry_model *model, core_pool *pool, const uint8_t *buf, size_t len,
                               eng_tensor *t, const char **name)
{
    return parse_tensor(model, pool, buf, len, t, name, NULL);
}

/* ------------------------------------------------------------------------------------------
 * ValueInfoProto / TypeProto
 * ---------------------------------------------------------------------------------------- */

typedef struct value_type {
    ferry_dtype dtype;
    int rank; /* -1: no shape */
    int64_t dims[FERRY_MAX_RANK];
    const char *dim_names[FERRY_MAX_RANK];
    bool not_tensor;
} value_type;

static ferry_status *parse_shape(core_pool *pool, const pb_field *sf, value_type *vt)
{
    pb_reader r = pb_init(sf->data, sf->len);
    pb_field f;
    vt->rank = 0;
    while (pb_next(&r, &f)) {
        if (f.number != 1 || f.wire != PB_LEN) continue;
        if (vt->rank >= FERRY_MAX_RANK)
            return core_error(FERRY_ERR_UNSUPPORTED, "rank exceeds Ferry's limit of %d",
                              FERRY_MAX_RANK);
        int d = vt->rank++;
        vt->dims[d] = -1;
        vt->dim_names[d] = NULL;
        pb_reader dr = pb_init(f.data, f.len);
        pb_field df;
        while (pb_next(&dr, &df)) {
            if (df.number == 1 && df.wire == PB_VARINT) {
                vt->dims[d] = (int64_t)df.u < 0 ? -1 : (int64_t)df.u;
            } else if (df.number == 2 && df.wire == PB_LEN) {
                vt->dim_names[d] = pstr(pool, &df);
                if (!vt->dim_names[d]) return NOMEM();
            }
        }
        if (dr.failed) return BAD("malformed tensor shape");
    }
    if (r.failed) return BAD("malformed tensor shape");
    return NULL;
}

static ferry_status *parse_value_info(core_pool *pool, const pb_field *vf, const char **name,
                                      value_type *vt)
{
    pb_reader r = pb_init(vf->data, vf->len);
    pb_field f;
    ferry_status *st;
    memset(vt, 0, sizeof(*vt));
    vt->rank = -1;
    *name = NULL;
    while (pb_next(&r, &f)) {
        if (f.number == 1 && f.wire == PB_LEN) {
            if (!(*name = pstr(pool, &f))) return NOMEM();
        } else if (f.number == 2 && f.wire == PB_LEN) {
            pb_reader tr = pb_init(f.data, f.len);
            pb_field tf;
            bool tensor = false;
            while (pb_next(&tr, &tf)) {
                if (tf.number == 1 && tf.wire == PB_LEN) { /* tensor_type */
                    tensor = true;
                    pb_reader er = pb_init(tf.data, tf.len);
                    pb_field ef;
                    while (pb_next(&er, &ef)) {
                        if (ef.number == 1 && ef.wire == PB_VARINT) {
                            if (ef.u >= FERRY_DTYPE_COUNT)
                                return BAD("unknown element type %llu", (unsigned long long)ef.u);
                            vt->dtype = (ferry_dtype)ef.u;
                        } else if (ef.number == 2 && ef.wire == PB_LEN) {
                            if ((st = parse_shape(pool, &ef, vt))) return st;
                        }
                    }
                    if (er.failed) return BAD("malformed tensor type");
                } else if (tf.number == 4 || tf.number == 9) {
                    /* sequence or optional: a value holding tensors, typed by its kind */
                    vt->dtype = tf.number == 4 ? FERRY_DTYPE_SEQUENCE : FERRY_DTYPE_OPTIONAL;
                    vt->rank = -1;
                } else if (tf.number == 5 || tf.number == 8) {
                    vt->not_tensor = true; /* map, sparse tensor */
                }
            }
            if (tr.failed) return BAD("malformed type");
            (void)tensor;
        }
    }
    if (r.failed) return BAD("malformed ValueInfoProto");
    if (!*name) *name = "";
    return NULL;
}

static void apply_type(eng_value *v, const value_type *vt, core_pool *pool)
{
    v->declared_dtype = vt->dtype;
    v->declared_rank = vt->rank;
    if (vt->rank > 0) {
        v->dim_names = core_pool_alloc(pool, sizeof(char *) * (size_t)vt->rank, 8);
        if (v->dim_names)
            for (int i = 0; i < vt->rank; i++) v->dim_names[i] = vt->dim_names[i];
    }
    if (v->kind == ENG_VALUE_INPUT) {
        v->tensor.dtype = vt->dtype;
        v->tensor.rank = vt->rank < 0 ? 0 : vt->rank;
        for (int i = 0; i < vt->rank; i++) v->tensor.dims[i] = vt->dims[i];
    } else if (v->kind == ENG_VALUE_NODE) {
        v->tensor.rank = vt->rank < 0 ? 0 : vt->rank;
        for (int i = 0; i < vt->rank; i++) v->tensor.dims[i] = vt->dims[i];
    }
}

/* ------------------------------------------------------------------------------------------
 * NodeProto / AttributeProto
 * ---------------------------------------------------------------------------------------- */

static ferry_status *parse_attr(ferry_model *m, const pb_field *af, eng_attr *a)
{
    core_pool *pool = &m->pool;
    pb_reader r = pb_init(af->data, af->len);
    pb_field f;
    num_list ints = {0}, floats = {0};
    ferry_status *st = NULL;
    size_t n_strings = 0, cap_strings = 0, n_tensors = 0, n_graphs = 0;
    const char **strings = NULL;
    bool has_i = false, has_f = false, has_s = false, has_t = false;
    memset(a, 0, sizeof(*a));
    while (pb_next(&r, &f)) {
        switch (f.number) {
        case 1:
            if (f.wire == PB_LEN && !(a->name = pstr(pool, &f))) return NOMEM();
            break;
        case 2:
            if (f.wire == PB_FIXED32) {
                uint32_t u = (uint32_t)f.u;
                memcpy(&a->f, &u, 4);
                has_f = true;
            }
            break;
        case 3:
            a->i = (int64_t)f.u;
            has_i = true;
            break;
        case 4:
            if (f.wire == PB_LEN) {
                if (!(a->s = pstr(pool, &f))) return NOMEM();
                has_s = true;
            }
            break;
        case 5:
            if (f.wire != PB_LEN) return BAD("attribute tensor is malformed");
            a->t = core_pool_alloc(pool, sizeof(eng_tensor), 8);
            if (!a->t) return NOMEM();
            if ((st = eng_parse_tensor(m, pool, f.data, f.len, a->t, NULL))) return st;
            has_t = true;
            break;
        case 6:
            if (f.wire != PB_LEN) return BAD("attribute graph is malformed");
            a->graph_data = f.data;
            a->graph_len = f.len;
            n_graphs++;
            break;
        case 7:
            st = append_floats(pool, &floats, &f);
            break;
        case 8:
            st = append_varints(pool, &ints, &f);
            break;
        case 9:
            if (f.wire != PB_LEN) return BAD("attribute string list is malformed");
            if (n_strings >= MAX_LIST) return BAD("string list is too long");
            if (n_strings == cap_strings) {
                size_t cap = grown(cap_strings, n_strings, 1);
                const char **n = core_pool_alloc(pool, cap * sizeof(*n), 8);
                if (!n) return NOMEM();
                if (n_strings) memcpy(n, strings, n_strings * sizeof(*n));
                strings = n, cap_strings = cap;
            }
            if (!(strings[n_strings++] = pstr(pool, &f))) return NOMEM();
            break;
        case 10:
            n_tensors++;
            break;
        case 11:
            n_graphs++;
            break;
        case 20:
            a->type = (eng_attr_type)f.u;
            break;
        case 21:
            return core_error(FERRY_ERR_UNSUPPORTED,
                              "attribute references (ref_attr_name) "
                              "are only valid inside functions, which Ferry does not run");
        default:
            break;
        }
        if (st) return st;
    }
    if (r.failed) return BAD("malformed AttributeProto");
    if (!a->name) return BAD("attribute without a name");
    if (a->type == ENG_ATTR_UNDEFINED) { /* IR < 3 files may omit the type */
        if (has_t)
            a->type = ENG_ATTR_TENSOR;
        else if (has_s)
            a->type = ENG_ATTR_STRING;
        else if (has_f)
            a->type = ENG_ATTR_FLOAT;
        else if (has_i)
            a->type = ENG_ATTR_INT;
        else if (floats.count)
            a->type = ENG_ATTR_FLOATS;
        else if (ints.count)
            a->type = ENG_ATTR_INTS;
        else if (n_strings)
            a->type = ENG_ATTR_STRINGS;
    }
    if (a->type == ENG_ATTR_INTS) a->ints = ints.ints, a->count = ints.count;
    if (a->type == ENG_ATTR_FLOATS) a->floats = floats.floats, a->count = floats.count;
    if (a->type == ENG_ATTR_STRINGS) a->strings = strings, a->count = n_strings;
    if (a->type == ENG_ATTR_TENSOR && !a->t) return BAD("attribute '%s' has no tensor", a->name);
    if (a->type == ENG_ATTR_GRAPH && !a->graph_data)
        return BAD("attribute '%s' has no graph", a->name);
    if (a->type == ENG_ATTR_GRAPHS)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "attribute '%s': lists of graphs are not "
                          "supported",
                          a->name);
    (void)n_tensors;
    return NULL;
}

/* Turns a Constant node into a constant value (ONNX allows value, value_float(s),
 * value_int(s)). */
static ferry_status *constant_value(ferry_model *m, const eng_attr *attrs, int n, eng_tensor *t)
{
    if (n != 1) return BAD("Constant needs exactly one value attribute, got %d", n);
    const eng_attr *a = &attrs[0];
    memset(t, 0, sizeof(*t));
    if (!strcmp(a->name, "value") && a->type == ENG_ATTR_TENSOR) {
        *t = *a->t;
        return NULL;
    }
    if (!strcmp(a->name, "value_float") || !strcmp(a->name, "value_int")) {
        bool fl = a->name[6] == 'f';
        t->dtype = fl ? FERRY_DTYPE_FLOAT : FERRY_DTYPE_INT64;
        t->data = core_pool_alloc(&m->pool, 8, 64);
        if (!t->data) return NOMEM();
        if (fl)
            *(float *)t->data = a->f;
        else
            *(int64_t *)t->data = a->i;
        return NULL;
    }
    if (!strcmp(a->name, "value_floats") || !strcmp(a->name, "value_ints")) {
        bool fl = a->name[6] == 'f';
        t->dtype = fl ? FERRY_DTYPE_FLOAT : FERRY_DTYPE_INT64;
        t->rank = 1;
        t->dims[0] = (int64_t)a->count;
        size_t bytes = a->count * 8 + 8;
        t->data = core_pool_alloc(&m->pool, bytes, 64);
        if (!t->data) return NOMEM();
        if (a->count)
            memcpy(t->data, fl ? (void *)a->floats : (void *)a->ints, a->count * (fl ? 4 : 8));
        return NULL;
    }
    return core_error(FERRY_ERR_UNSUPPORTED, "Constant with attribute '%s' is not supported",
                      a->name);
}

typedef struct raw_node {
    const uint8_t *data;
    size_t len;
} raw_node;

static ferry_status *parse_node(ferry_model *m, const raw_node *rn, eng_node *n, bool *is_constant,
                                eng_tensor *constant)
{
    core_pool *pool = &m->pool;
    pb_reader r = pb_init(rn->data, rn->len);
    pb_field f;
    size_t n_in = 0, n_out = 0, n_attr = 0;
    ferry_status *st;
    memset(n, 0, sizeof(*n));
    n->name = n->domain = "";
    /* First pass: counts, so arrays are allocated once. */
    while (pb_next(&r, &f)) {
        if (f.wire != PB_LEN) continue;
        if (f.number == 1)
            n_in++;
        else if (f.number == 2)
            n_out++;
        else if (f.number == 5)
            n_attr++;
    }
    if (r.failed) return BAD("malformed NodeProto");
    if (n_in > 65536 || n_out > 65536 || n_attr > 65536) return BAD("node has too many fields");
    const char **in_names = core_pool_alloc(pool, (n_in + 1) * sizeof(char *), 8);
    const char **out_names = core_pool_alloc(pool, (n_out + 1) * sizeof(char *), 8);
    n->attrs = core_pool_alloc(pool, (n_attr + 1) * sizeof(eng_attr), 8);
    n->in = core_pool_alloc(pool, (n_in + 1) * sizeof(int), 8);
    n->out = core_pool_alloc(pool, (n_out + 1) * sizeof(int), 8);
    if (!in_names || !out_names || !n->attrs || !n->in || !n->out) return NOMEM();
    r = pb_init(rn->data, rn->len);
    while (pb_next(&r, &f)) {
        if (f.wire != PB_LEN) continue;
        switch (f.number) {
        case 1:
            if (!(in_names[n->n_in++] = pstr(pool, &f))) return NOMEM();
            break;
        case 2:
            if (!(out_names[n->n_out++] = pstr(pool, &f))) return NOMEM();
            break;
        case 3:
            if (!(n->name = pstr(pool, &f))) return NOMEM();
            break;
        case 4:
            if (!(n->op_type = pstr(pool, &f))) return NOMEM();
            break;
        case 7:
            if (!(n->domain = pstr(pool, &f))) return NOMEM();
            break;
        case 5:
            if ((st = parse_attr(m, &f, &n->attrs[n->n_attrs])))
                return core_error_wrap(st, "node '%s'", n->name);
            n->n_attrs++;
            break;
        default:
            break;
        }
    }
    if (!n->op_type || !*n->op_type) return BAD("node '%s' has no op_type", n->name);
    if (!strcmp(n->domain, "ai.onnx")) n->domain = "";
    *is_constant = !strcmp(n->op_type, "Constant") && !*n->domain;
    if (*is_constant) {
        if ((st = constant_value(m, n->attrs, n->n_attrs, constant)))
            return core_error_wrap(st, "node '%s' (Constant)", n->name);
        if (n->n_out != 1) return BAD("Constant node '%s' must have one output", n->name);
    }
    /* Inputs are resolved later, once every producer is known; keep the names in the index
     * slots through a side table. */
    n->in = (int *)in_names;
    n->out = (int *)out_names;
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * GraphProto and ModelProto
 * ---------------------------------------------------------------------------------------- */

static ferry_status *add_named_value(ferry_model *m, const char *name, int *idx)
{
    if (eng_value_find(m, name) >= 0) return BAD("value '%s' is defined more than once", name);
    *idx = eng_value_add(m, name);
    return *idx < 0 ? NOMEM() : NULL;
}

static ferry_status *load_graph(ferry_model *m, const uint8_t *data, size_t size);

/* Makes NAME, read by subgraph M but defined in an enclosing graph, an input of M (a capture).
 * Errors when no enclosing graph defines it. */
static ferry_status *capture(ferry_model *m, const char *name, int *idx)
{
    bool found = false;
    for (const ferry_model *g = m->parent; g && !found; g = g->parent)
        found = eng_value_find(g, name) >= 0;
    if (!found) {
        *idx = -1;
        return NULL; /* the caller reports the missing value */
    }
    if (m->n_captures == m->cap_captures) {
        int cap = m->cap_captures ? m->cap_captures * 2 : 8;
        const char **names = core_pool_alloc(&m->pool, (size_t)cap * sizeof(char *), 8);
        if (!names) return NOMEM();
        if (m->n_captures) memcpy(names, m->capture_names, (size_t)m->n_captures * sizeof(char *));
        m->capture_names = names;
        m->cap_captures = cap;
    }
    *idx = eng_value_add(m, name);
    if (*idx < 0) return NOMEM();
    m->values[*idx].kind = ENG_VALUE_INPUT;
    m->capture_names[m->n_captures++] = name;
    return NULL;
}

static ferry_model *root_of(ferry_model *m)
{
    while (m->parent) m = m->parent;
    return m;
}

/* Loads the graph attributes of node N as subgraphs and gives N the values they capture from
 * M's scope as implicit inputs. */
static ferry_status *load_subgraphs(ferry_model *m, eng_node *n)
{
    ferry_status *st;
    int depth = 0;
    for (ferry_model *g = m; g; g = g->parent) depth++;
    for (int a = 0; a < n->n_attrs; a++) {
        eng_attr *attr = &n->attrs[a];
        if (attr->type != ENG_ATTR_GRAPH) continue;
        if (depth > 32) return BAD("node '%s': subgraphs nest more than 32 deep", n->name);
        ferry_model *root = root_of(m);
        if (root->n_subgraphs == root->cap_subgraphs) {
            size_t cap = root->cap_subgraphs ? root->cap_subgraphs * 2 : 8;
            ferry_model **list = realloc(root->subgraphs, cap * sizeof(*list));
            if (!list) return NOMEM();
            root->subgraphs = list;
            root->cap_subgraphs = cap;
        }
        ferry_model *sub = calloc(1, sizeof(*sub));
        if (!sub) return NOMEM();
        root->subgraphs[root->n_subgraphs++] = sub;
        sub->parent = m;
        sub->opsets = root->opsets;
        sub->n_opsets = root->n_opsets;
        sub->ir_version = root->ir_version;
        sub->max_weight_bytes = root->max_weight_bytes;
        sub->intra_op_threads = 1;
        sub->producer_name = sub->producer_version = sub->domain = sub->doc_string = "";
        if ((st = load_graph(sub, attr->graph_data, attr->graph_len)) ||
            (st = eng_graph_finish(sub)))
            return core_error_wrap(st, "node '%s' (%s), attribute '%s'", n->name, n->op_type,
                                   attr->name);
        attr->graph = sub;
        /* Captures become the subgraph's trailing inputs and the node's implicit inputs. */
        int *ins = core_pool_alloc(
            &m->pool, ((size_t)n->n_in + (size_t)sub->n_captures + 1) * sizeof(int), 8);
        int *sub_ins = core_pool_alloc(
            &sub->pool, ((size_t)sub->n_inputs + (size_t)sub->n_captures + 1) * sizeof(int), 8);
        if (!ins || !sub_ins) return NOMEM();
        memcpy(ins, n->in, (size_t)n->n_in * sizeof(int));
        memcpy(sub_ins, sub->inputs, (size_t)sub->n_inputs * sizeof(int));
        sub->n_formal_inputs = sub->n_inputs;
        for (int c = 0; c < sub->n_captures; c++) {
            const char *name = sub->capture_names[c];
            int v = eng_value_find(m, name);
            if (v < 0 && m->parent && (st = capture(m, name, &v))) return st;
            if (v < 0)
                return BAD("node '%s': subgraph reads '%s', which is not defined", n->name, name);
            ins[n->n_in++] = v;
            n->n_implicit++;
            sub_ins[sub->n_inputs++] = eng_value_find(sub, name);
        }
        n->in = ins;
        sub->inputs = sub_ins;
    }
    return NULL;
}

static ferry_status *load_graph(ferry_model *m, const uint8_t *data, size_t size)
{
    core_pool *pool = &m->pool;
    pb_reader r = pb_init(data, size);
    pb_field f;
    ferry_status *st = NULL;
    size_t n_nodes = 0, n_inputs = 0, n_outputs = 0;
    while (pb_next(&r, &f)) {
        if (f.wire != PB_LEN) continue;
        if (f.number == 1)
            n_nodes++;
        else if (f.number == 11)
            n_inputs++;
        else if (f.number == 12)
            n_outputs++;
        else if (f.number == 15)
            return core_error(FERRY_ERR_UNSUPPORTED, "sparse initializers are not supported");
    }
    if (r.failed) return BAD("truncated or malformed graph");
    if (n_nodes > 10000000) return BAD("graph has too many nodes");
    m->nodes = core_pool_alloc(pool, (n_nodes + 1) * sizeof(eng_node), 8);
    m->inputs = core_pool_alloc(pool, (n_inputs + 1) * sizeof(int), 8);
    m->outputs = core_pool_alloc(pool, (n_outputs + 1) * sizeof(int), 8);
    if (!m->nodes || !m->inputs || !m->outputs) return NOMEM();

    /* Initializers first: they decide which graph inputs are constants. */
    r = pb_init(data, size);
    while (pb_next(&r, &f)) {
        if (f.wire != PB_LEN) continue;
        if (f.number == 2) {
            if (!(m->graph_name = pstr(pool, &f))) return NOMEM();
        } else if (f.number == 10) {
            if (!(m->doc_string = *m->doc_string ? m->doc_string : pstr(pool, &f))) return NOMEM();
        } else if (f.number == 5) {
            eng_tensor t;
            const char *name;
            bool misaligned = false;
            if ((st = parse_tensor(m, pool, f.data, f.len, &t, &name, &misaligned)))
                return core_error_wrap(st, "initializer");
            if (!*name) return BAD("an initializer has no name");
            int idx;
            if ((st = add_named_value(m, name, &idx))) return st;
            m->values[idx].kind = ENG_VALUE_CONST;
            m->values[idx].tensor = t;
            m->values[idx].misaligned = misaligned;
            m->values[idx].declared_dtype = t.dtype;
            m->values[idx].declared_rank = t.rank;
            m->param_count += (uint64_t)eng_numel(&t);
            m->param_bytes += eng_nbytes(&t);
        }
    }
    r = pb_init(data, size);
    while (pb_next(&r, &f)) {
        if (f.wire != PB_LEN || (f.number != 11 && f.number != 12 && f.number != 13)) continue;
        const char *name;
        value_type vt;
        if ((st = parse_value_info(pool, &f, &name, &vt))) return st;
        if (!*name) return BAD("a graph input or output has no name");
        if (f.number == 11) {
            int idx = eng_value_find(m, name);
            if (idx >= 0 && m->values[idx].kind == ENG_VALUE_CONST) continue; /* IR < 4 style */
            if (idx >= 0) return BAD("graph input '%s' is listed twice", name);
            if (vt.not_tensor)
                return core_error(FERRY_ERR_UNSUPPORTED,
                                  "input '%s' is a map or sparse tensor, which Ferry does not "
                                  "support",
                                  name);
            if ((st = add_named_value(m, name, &idx))) return st;
            m->values[idx].kind = ENG_VALUE_INPUT;
            apply_type(&m->values[idx], &vt, pool);
            m->inputs[m->n_inputs++] = idx;
        } else if (f.number == 12 && vt.not_tensor) {
            return core_error(FERRY_ERR_UNSUPPORTED,
                              "output '%s' is a map or sparse tensor, which Ferry does not "
                              "support",
                              name);
        }
    }
    /* Nodes: outputs define values; inputs are resolved once all are defined. */
    r = pb_init(data, size);
    while (pb_next(&r, &f)) {
        if (f.wire != PB_LEN || f.number != 1) continue;
        eng_node *n = &m->nodes[m->n_nodes];
        bool is_const = false;
        eng_tensor constant;
        raw_node rn = {f.data, f.len};
        if ((st = parse_node(m, &rn, n, &is_const, &constant))) return st;
        const char **out_names = (const char **)n->out;
        if (is_const) {
            int idx;
            if ((st = add_named_value(m, out_names[0], &idx))) return st;
            m->values[idx].kind = ENG_VALUE_CONST;
            m->values[idx].tensor = constant;
            m->values[idx].declared_dtype = constant.dtype;
            continue;
        }
        int *outs = core_pool_alloc(pool, ((size_t)n->n_out + 1) * sizeof(int), 8);
        if (!outs) return NOMEM();
        for (int i = 0; i < n->n_out; i++) {
            if (!*out_names[i]) {
                outs[i] = -1;
                continue;
            }
            if ((st = add_named_value(m, out_names[i], &outs[i])))
                return core_error_wrap(st, "node '%s' (%s)", n->name, n->op_type);
            m->values[outs[i]].kind = ENG_VALUE_NODE;
            m->values[outs[i]].producer = m->n_nodes;
        }
        n->out = outs;
        m->n_nodes++;
    }
    for (int k = 0; k < m->n_nodes; k++) {
        eng_node *n = &m->nodes[k];
        const char **in_names = (const char **)n->in;
        int *ins = core_pool_alloc(pool, ((size_t)n->n_in + 1) * sizeof(int), 8);
        if (!ins) return NOMEM();
        for (int i = 0; i < n->n_in; i++) {
            if (!*in_names[i]) {
                ins[i] = -1;
                continue;
            }
            ins[i] = eng_value_find(m, in_names[i]);
            if (ins[i] < 0 && m->parent && (st = capture(m, in_names[i], &ins[i]))) return st;
            if (ins[i] < 0)
                return BAD("node '%s' (%s): input '%s' is not produced by any node, initializer "
                           "or graph input",
                           n->name, n->op_type, in_names[i]);
        }
        n->in = ins;
    }
    for (int k = 0; k < m->n_nodes; k++)
        if ((st = load_subgraphs(m, &m->nodes[k]))) return st;
    /* Declared types of intermediate values and outputs, for checks and `inspect`. */
    r = pb_init(data, size);
    while (pb_next(&r, &f)) {
        if (f.wire != PB_LEN || (f.number != 12 && f.number != 13)) continue;
        const char *name;
        value_type vt;
        if ((st = parse_value_info(pool, &f, &name, &vt))) return st;
        int idx = eng_value_find(m, name);
        if (f.number == 12) {
            if (idx < 0)
                return BAD("graph output '%s' is not produced by any node, initializer or input",
                           name);
            m->outputs[m->n_outputs++] = idx;
        }
        if (idx >= 0 && m->values[idx].kind == ENG_VALUE_NODE)
            apply_type(&m->values[idx], &vt, pool);
    }
    if (m->n_outputs == 0) return BAD("the graph has no outputs");
    return NULL;
}

ferry_status *eng_load_model(ferry_model *m, const uint8_t *data, size_t size)
{
    core_pool *pool = &m->pool;
    pb_reader r = pb_init(data, size);
    pb_field f;
    const uint8_t *graph = NULL;
    size_t graph_len = 0, n_opsets = 0, n_props = 0;
    ferry_status *st;
    m->producer_name = m->producer_version = m->domain = m->doc_string = m->graph_name = "";
    while (pb_next(&r, &f)) {
        switch (f.number) {
        case 1:
            m->ir_version = (int64_t)f.u;
            break;
        case 5:
            m->model_version = (int64_t)f.u;
            break;
        case 7:
            if (f.wire != PB_LEN) return BAD("ModelProto.graph is malformed");
            graph = f.data, graph_len = f.len;
            break;
        case 8:
            n_opsets++;
            break;
        case 14:
            n_props++;
            break;
        default:
            break;
        }
    }
    if (r.failed || size == 0)
        return BAD("not an ONNX model: the file is empty, truncated or not a protobuf "
                   "ModelProto");
    if (!graph) return BAD("not an ONNX model: it has no graph");
    if (m->ir_version < 3 || m->ir_version > 10)
        return core_error(m->ir_version <= 0 ? FERRY_ERR_INVALID_MODEL : FERRY_ERR_UNSUPPORTED,
                          "ONNX IR version %lld is not supported (Ferry reads versions 3 to 8, "
                          "and newer files whose features it knows)",
                          (long long)m->ir_version);
    if (n_opsets > 1024 || n_props > 100000) return BAD("too many opset imports or properties");
    m->opsets = core_pool_alloc(pool, (n_opsets + 1) * sizeof(eng_opset), 8);
    m->prop_keys = core_pool_alloc(pool, (n_props + 1) * sizeof(char *), 8);
    m->prop_values = core_pool_alloc(pool, (n_props + 1) * sizeof(char *), 8);
    if (!m->opsets || !m->prop_keys || !m->prop_values) return NOMEM();
    r = pb_init(data, size);
    while (pb_next(&r, &f)) {
        if (f.wire != PB_LEN) continue;
        const char **dst = NULL;
        switch (f.number) {
        case 2:
            dst = &m->producer_name;
            break;
        case 3:
            dst = &m->producer_version;
            break;
        case 4:
            dst = &m->domain;
            break;
        case 6:
            dst = &m->doc_string;
            break;
        case 8: {
            eng_opset os = {"", 1};
            pb_reader or = pb_init(f.data, f.len);
            pb_field of;
            while (pb_next(& or, &of)) {
                if (of.number == 1 && of.wire == PB_LEN) {
                    if (!(os.domain = pstr(pool, &of))) return NOMEM();
                } else if (of.number == 2 && of.wire == PB_VARINT) {
                    os.version = (int64_t)of.u;
                }
            }
            if (or.failed) return BAD("malformed opset_import");
            if (!strcmp(os.domain, "ai.onnx")) os.domain = "";
            m->opsets[m->n_opsets++] = os;
            break;
        }
        case 14: {
            pb_reader pr = pb_init(f.data, f.len);
            pb_field pf;
            const char *k = "", *v = "";
            while (pb_next(&pr, &pf)) {
                if (pf.wire != PB_LEN) continue;
                if (pf.number == 1 && !(k = pstr(pool, &pf))) return NOMEM();
                if (pf.number == 2 && !(v = pstr(pool, &pf))) return NOMEM();
            }
            if (pr.failed) return BAD("malformed metadata_props");
            m->prop_keys[m->n_props] = k;
            m->prop_values[m->n_props++] = v;
            break;
        }
        default:
            break;
        }
        if (dst && !(*dst = pstr(pool, &f))) return NOMEM();
    }
    if (m->n_opsets == 0) {
        /* IR 3 files written before opset_import was required mean ai.onnx version 1. */
        m->opsets[0] = (eng_opset){"", 1};
        m->n_opsets = 1;
    }
    if ((st = load_graph(m, graph, graph_len))) return st;
    return eng_graph_finish(m);
}
