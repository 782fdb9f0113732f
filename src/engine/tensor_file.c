/* tensor_file.c - tensors from and to files: NumPy .npy and ONNX TensorProto .pb. */
#include "engine/graph.h"
#include "engine/pb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Files larger than this are refused before reading (an input tensor, not a dataset). */
#define MAX_TENSOR_FILE ((uint64_t)8 << 30)
#define MAX_NPY_HEADER  65536

struct ferry_tensor {
    ferry_tensor_view view;
    const char *name;
    core_pool pool;
    void *file; /* the .pb bytes the view may point into */
};

const ferry_tensor_view *ferry_tensor_get_view(const ferry_tensor *t)
{
    return &t->view;
}

const char *ferry_tensor_name(const ferry_tensor *t)
{
    return t->name ? t->name : "";
}

void ferry_tensor_free(ferry_tensor *t)
{
    if (!t) return;
    core_pool_release(&t->pool);
    free(t->file);
    free(t);
}

static ferry_status *read_all(const char *path, uint8_t **data, size_t *size)
{
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return core_error(errno == ENOENT ? FERRY_ERR_NOT_FOUND : FERRY_ERR_IO,
                          "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return core_error(FERRY_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)sb.st_size > MAX_TENSOR_FILE) {
        fclose(f);
        return core_error(FERRY_ERR_NO_MEMORY, "'%s' is larger than the 8 GiB limit", path);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory reading '%s'", path);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return core_error(FERRY_ERR_IO, "cannot read '%s'", path);
    }
    fclose(f);
    *data = buf;
    *size = n;
    return NULL;
}

/* --- .npy --- */

static const struct {
    const char *descr;
    ferry_dtype dtype;
} npy_types[] = {
    {"<f4", FERRY_DTYPE_FLOAT},  {"<f8", FERRY_DTYPE_DOUBLE}, {"<f2", FERRY_DTYPE_FLOAT16},
    {"|b1", FERRY_DTYPE_BOOL},   {"|u1", FERRY_DTYPE_UINT8},  {"|i1", FERRY_DTYPE_INT8},
    {"<i2", FERRY_DTYPE_INT16},  {"<u2", FERRY_DTYPE_UINT16}, {"<i4", FERRY_DTYPE_INT32},
    {"<u4", FERRY_DTYPE_UINT32}, {"<i8", FERRY_DTYPE_INT64},  {"<u8", FERRY_DTYPE_UINT64},
    {"|u1", FERRY_DTYPE_UINT8},  {"<b1", FERRY_DTYPE_BOOL},   {"|i2", FERRY_DTYPE_INT16},
};

/* Finds KEY's value in the header dict: a pointer just after "'key':" and spaces. */
static const char *dict_value(const char *hdr, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof(pat), "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

/* Appends code point C as UTF-8 to OUT (at most 4 bytes); invalid ones become U+FFFD. */
static size_t put_utf8(uint32_t c, char *out)
{
    if (c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) c = 0xfffd;
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 0x3f));
    out[2] = (char)(0x80 | (c >> 6 & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* NumPy string arrays: fixed-width, NUL-padded elements of bytes ('S') or UTF-32 ('U'),
 * turned into NUL-terminated UTF-8 strings. */
static ferry_status *npy_strings(ferry_tensor *t, const uint8_t *data, size_t width, bool utf32)
{
    int64_t n = eng_numel(&t->view);
    const char **strs = core_pool_alloc(&t->pool, ((size_t)n + 1) * sizeof(char *), 64);
    if (!strs) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        char *s = core_pool_alloc(&t->pool, width * 4 + 1, 1);
        if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        size_t len = 0;
        for (size_t k = 0; k < width; k++) {
            if (utf32) {
                const uint8_t *p = data + ((size_t)i * width + k) * 4;
                uint32_t c =
                    p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
                if (!c) break;
                len += put_utf8(c, s + len);
            } else {
                char c = (char)data[(size_t)i * width + k];
                if (!c) break;
                s[len++] = c;
            }
        }
        s[len] = 0;
        strs[i] = s;
    }
    t->view.data = (void *)strs;
    return NULL;
}

/* Decodes one UTF-8 sequence at *P (advancing it); malformed bytes give U+FFFD. */
static uint32_t get_utf8(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t c = s[0];
    int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (extra < 0) {
        (*p)++;
        return 0xfffd;
    }
    c &= extra ? (0x3fu >> extra) : 0x7fu;
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *p += i;
            return 0xfffd;
        }
        c = c << 6 | (s[i] & 0x3f);
    }
    *p += extra + 1;
    return c;
}

/* Writes the elements of a string tensor as NumPy '<U' data, WIDTH code points each. */
static void write_npy_strings(const ferry_tensor_view *view, FILE *f, size_t width, bool *ok)
{
    int64_t n = eng_numel(view);
    const char *const *strs = view->data;
    for (int64_t i = 0; *ok && i < n; i++) {
        const unsigned char *p = (const unsigned char *)(strs[i] ? strs[i] : "");
        for (size_t k = 0; *ok && k < width; k++) {
            uint32_t c = *p ? get_utf8(&p) : 0;
            uint8_t b[4] = {(uint8_t)c, (uint8_t)(c >> 8), (uint8_t)(c >> 16), (uint8_t)(c >> 24)};
            *ok = fwrite(b, 1, 4, f) == 4;
        }
    }
}

/* Code points in the longest element: the width of the NumPy '<U' array. */
static size_t string_width(const ferry_tensor_view *view)
{
    int64_t n = eng_numel(view);
    const char *const *strs = view->data;
    size_t width = 1;
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)(strs[i] ? strs[i] : "");
        size_t chars = 0;
        while (*p) {
            get_utf8(&p);
            chars++;
        }
        if (chars > width) width = chars;
    }
    return width;
}

static ferry_status *parse_npy(const char *path, uint8_t *buf, size_t size, ferry_tensor *t)
{
#define NPY_BAD(...)                                                                               \
    core_error_wrap(core_error(FERRY_ERR_INVALID_ARGUMENT, __VA_ARGS__),                           \
                    "'%s' is not a valid .npy file", path)
    if (size < 10 || memcmp(buf, "\x93NUMPY", 6)) return NPY_BAD("bad magic");
    int major = buf[6];
    size_t hlen, off;
    if (major == 1) {
        hlen = buf[8] | (size_t)buf[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12) return NPY_BAD("truncated header");
        hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        off = 12;
    } else {
        return NPY_BAD("unknown format version %d", major);
    }
    if (hlen > MAX_NPY_HEADER || off + hlen > size) return NPY_BAD("truncated header");
    char hdr[MAX_NPY_HEADER + 1];
    memcpy(hdr, buf + off, hlen);
    hdr[hlen] = 0;
    const char *d = dict_value(hdr, "descr");
    if (!d || *d != '\'') return NPY_BAD("no descr");
    char descr[16] = "";
    const char *e = strchr(d + 1, '\'');
    if (!e || e - d - 1 >= (long)sizeof(descr)) return NPY_BAD("bad descr");
    memcpy(descr, d + 1, (size_t)(e - d - 1));
    t->view.dtype = FERRY_DTYPE_UNDEFINED;
    for (size_t i = 0; i < sizeof(npy_types) / sizeof(npy_types[0]); i++)
        if (!strcmp(descr, npy_types[i].descr)) t->view.dtype = npy_types[i].dtype;
    size_t str_width = 0; /* characters per element of a NumPy string array */
    bool utf32 = false;
    if ((descr[0] == '<' || descr[0] == '|') && (descr[1] == 'U' || descr[1] == 'S')) {
        char *end;
        unsigned long w = strtoul(descr + 2, &end, 10);
        if (*end || w == 0 || w > 1 << 20) return NPY_BAD("bad string width in '%s'", descr);
        str_width = w;
        utf32 = descr[1] == 'U';
        t->view.dtype = FERRY_DTYPE_STRING;
    }
    if (descr[0] == '>' && strcmp(descr + 1, "i1") && strcmp(descr + 1, "u1"))
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "'%s': big-endian arrays (%s) are not "
                          "supported; save with a little-endian dtype",
                          path, descr);
    if (t->view.dtype == FERRY_DTYPE_UNDEFINED)
        return core_error(FERRY_ERR_UNSUPPORTED, "'%s': NumPy dtype '%s' is not supported", path,
                          descr);
    const char *fo = dict_value(hdr, "fortran_order");
    if (!fo) return NPY_BAD("no fortran_order");
    if (!strncmp(fo, "True", 4))
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "'%s': Fortran-ordered arrays are not "
                          "supported; save np.ascontiguousarray(a)",
                          path);
    const char *sh = dict_value(hdr, "shape");
    if (!sh || *sh != '(') return NPY_BAD("no shape");
    sh++;
    t->view.rank = 0;
    for (;;) {
        while (*sh == ' ' || *sh == ',') sh++;
        if (*sh == ')') break;
        if (*sh < '0' || *sh > '9') return NPY_BAD("bad shape");
        if (t->view.rank >= FERRY_MAX_RANK)
            return core_error(FERRY_ERR_UNSUPPORTED, "'%s': rank exceeds %d", path, FERRY_MAX_RANK);
        char *end;
        errno = 0;
        long long v = strtoll(sh, &end, 10);
        if (errno || v < 0) return NPY_BAD("bad dimension");
        t->view.dims[t->view.rank++] = v;
        sh = end;
        while (*sh == 'L') sh++;
    }
    ferry_status *st = eng_check_tensor_shape(&t->view);
    if (st) return core_error_wrap(st, "'%s'", path);
    size_t need = eng_nbytes(&t->view), have = size - off - hlen;
    if (str_width) {
        need = (size_t)eng_numel(&t->view) * str_width * (utf32 ? 4 : 1);
        if (have != need)
            return NPY_BAD("the data has %zu bytes but shape and dtype need %zu", have, need);
        return npy_strings(t, buf + off + hlen, str_width, utf32);
    }
    if (have != need)
        return NPY_BAD("the data has %zu bytes but shape and dtype need %zu", have, need);
    t->view.data = core_pool_alloc(&t->pool, need ? need : 1, 64);
    if (!t->view.data) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    if (need) memcpy(t->view.data, buf + off + hlen, need);
    return NULL;
#undef NPY_BAD
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

ferry_status *ferry_tensor_read_file(const char *path, ferry_tensor **out)
{
    *out = NULL;
    bool npy = ends_with(path, ".npy"), pb = ends_with(path, ".pb");
    if (!npy && !pb)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "'%s': unknown tensor file type (use .npy or .pb)", path);
    ferry_tensor *t = calloc(1, sizeof(*t));
    if (!t) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    uint8_t *buf;
    size_t size = 0;
    ferry_status *st = read_all(path, &buf, &size);
    if (st) goto fail;
    if (npy) {
        st = parse_npy(path, buf, size, t);
        free(buf);
    } else {
        t->file = buf;
        st = eng_parse_tensor(NULL, &t->pool, buf, size, &t->view, &t->name);
        if (st) st = core_error_wrap(st, "'%s' is not a valid TensorProto", path);
    }
    if (st) goto fail;
    *out = t;
    return NULL;
fail:
    ferry_tensor_free(t);
    return st;
}

/* Decodes a SequenceProto (SEQ) or OptionalProto of tensors and nested sequences into OUT,
 * every element allocated from POOL. */
static ferry_status *parse_container(core_pool *pool, const uint8_t *buf, size_t len, bool seq,
                                     int depth, eng_tensor *out, const char **name)
{
    if (depth > 16) return core_error(FERRY_ERR_INVALID_ARGUMENT, "values nest too deep");
    pb_reader r = pb_init(buf, len);
    pb_field f;
    size_t n = 0;
    while (pb_next(&r, &f))
        if (f.wire == PB_LEN && (f.number == 3 || f.number == 5 || f.number == 7))
            n++;
        else if (f.wire == PB_LEN && (f.number == 4 || f.number == 6))
            return core_error(FERRY_ERR_UNSUPPORTED, "sparse tensors and maps are not supported");
    if (r.failed)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "malformed %s",
                          seq ? "SequenceProto" : "OptionalProto");
    if (!seq && n > 1)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "an optional holds more than one value");
    if (n > (1u << 24)) return core_error(FERRY_ERR_NO_MEMORY, "too many sequence elements");
    memset(out, 0, sizeof(*out));
    out->dtype = seq ? FERRY_DTYPE_SEQUENCE : FERRY_DTYPE_OPTIONAL;
    out->rank = 1;
    out->dims[0] = (int64_t)n;
    eng_tensor *items = core_pool_alloc(pool, (n + 1) * sizeof(eng_tensor), 64);
    if (!items) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    out->data = items;
    if (name) *name = "";
    r = pb_init(buf, len);
    size_t i = 0;
    while (pb_next(&r, &f)) {
        if (f.wire != PB_LEN) continue;
        ferry_status *st = NULL;
        if (f.number == 1 && name) {
            *name = core_pool_strndup(pool, (const char *)f.data, f.len);
            if (!*name) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        } else if (f.number == 3) {
            st = eng_parse_tensor(NULL, pool, f.data, f.len, &items[i++], NULL);
        } else if (f.number == 5) {
            st = parse_container(pool, f.data, f.len, true, depth + 1, &items[i++], NULL);
        } else if (f.number == 7) {
            st = parse_container(pool, f.data, f.len, false, depth + 1, &items[i++], NULL);
        }
        if (st) return st;
    }
    return NULL;
}

ferry_status *ferry_value_read_pb(const char *path, ferry_dtype kind, ferry_tensor **out)
{
    if (kind != FERRY_DTYPE_SEQUENCE && kind != FERRY_DTYPE_OPTIONAL)
        return ferry_tensor_read_file(path, out);
    *out = NULL;
    ferry_tensor *t = calloc(1, sizeof(*t));
    if (!t) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    uint8_t *buf;
    size_t size = 0;
    ferry_status *st = read_all(path, &buf, &size);
    if (st) goto fail;
    t->file = buf;
    st = parse_container(&t->pool, buf, size, kind == FERRY_DTYPE_SEQUENCE, 0, &t->view, &t->name);
    if (st) {
        st = core_error_wrap(st, "'%s'", path);
        goto fail;
    }
    *out = t;
    return NULL;
fail:
    ferry_tensor_free(t);
    return st;
}

static const char *npy_descr(ferry_dtype dt)
{
    for (size_t i = 0; i < sizeof(npy_types) / sizeof(npy_types[0]); i++)
        if (npy_types[i].dtype == dt) return npy_types[i].descr;
    return NULL;
}

ferry_status *ferry_tensor_write_npy(const ferry_tensor_view *view, const char *path)
{
    const char *descr = npy_descr(view->dtype);
    bool widen = view->dtype == FERRY_DTYPE_BFLOAT16; /* NumPy has no bfloat16: write float32 */
    if (widen) descr = "<f4";
    char str_descr[32];
    size_t str_width = 0;
    if (view->dtype == FERRY_DTYPE_STRING) {
        str_width = string_width(view);
        snprintf(str_descr, sizeof(str_descr), "<U%zu", str_width);
        descr = str_descr;
    }
    if (!descr)
        return core_error(FERRY_ERR_UNSUPPORTED, "cannot write %s tensors as .npy",
                          ferry_dtype_name(view->dtype));
    char shape[FERRY_MAX_RANK * 24 + 8];
    int sn = snprintf(shape, sizeof(shape), "(");
    for (int i = 0; i < view->rank; i++)
        sn += snprintf(shape + sn, sizeof(shape) - (size_t)sn, "%s%lld", i ? ", " : "",
                       (long long)view->dims[i]);
    snprintf(shape + sn, sizeof(shape) - (size_t)sn, view->rank == 1 ? ",)" : ")");
    char hdr[512];
    int n = snprintf(hdr, sizeof(hdr), "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
    /* Pad so that the data starts on a 64-byte boundary, ending the header with '\n'. */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return core_error(FERRY_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    uint16_t hlen = (uint16_t)((size_t)n + pad + 1);
    uint8_t pre[10] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xff), (uint8_t)(hlen >> 8)};
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    int64_t count = eng_numel(view);
    if (ok && view->dtype == FERRY_DTYPE_STRING) {
        write_npy_strings(view, f, str_width, &ok);
    } else if (ok && widen) {
        for (int64_t i = 0; ok && i < count; i++) {
            float v = core_bf16_to_float(((const uint16_t *)view->data)[i]);
            ok = fwrite(&v, 4, 1, f) == 1;
        }
    } else if (ok) {
        size_t bytes = eng_nbytes(view);
        ok = !bytes || fwrite(view->data, 1, bytes, f) == bytes;
    }
    if (fclose(f) != 0) ok = false;
    if (!ok) return core_error(FERRY_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return NULL;
}
