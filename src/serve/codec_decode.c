/* codec_decode.c - reads KServe v2 inference requests (JSON and binary tensors) into views.
 *
 * A small hand-written JSON reader instead of a DOM library, for two reasons: a DOM of a large
 * "data" array costs tens of bytes per element before its size can even be checked, and the
 * numbers are best converted once, straight into the tensor's buffer, after the shape and
 * datatype have been checked against the model. The reader follows RFC 8259 strictly (no
 * comments, no trailing commas, no NaN) and bounds nesting depth.
 */
#include "serve/codec.h"

#include "core/dtype.h"
#include "core/status.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nesting deeper than this is refused; "data" itself is bounded by the tensor's rank. */
#define MAX_JSON_DEPTH 32
/* Longest number literal accepted; longer ones carry no extra precision, only work. */
#define MAX_NUMBER_LEN 400
/* Elements of one tensor: a bound independent of the body size, so a product of dims that
 * overflows is refused before any arithmetic on bytes. */
#define MAX_ELEMENTS ((int64_t)1 << 40)

typedef struct cur {
    const char *p, *end, *base;
} cur;

typedef struct span {
    const char *s;
    size_t len;
} span;

static const struct {
    const char *name;
    ferry_dtype dtype;
} wire_names[] = {
    {"BOOL", FERRY_DTYPE_BOOL},     {"UINT8", FERRY_DTYPE_UINT8},   {"UINT16", FERRY_DTYPE_UINT16},
    {"UINT32", FERRY_DTYPE_UINT32}, {"UINT64", FERRY_DTYPE_UINT64}, {"INT8", FERRY_DTYPE_INT8},
    {"INT16", FERRY_DTYPE_INT16},   {"INT32", FERRY_DTYPE_INT32},   {"INT64", FERRY_DTYPE_INT64},
    {"FP16", FERRY_DTYPE_FLOAT16},  {"FP32", FERRY_DTYPE_FLOAT},    {"FP64", FERRY_DTYPE_DOUBLE},
    {"BF16", FERRY_DTYPE_BFLOAT16}, {"BYTES", FERRY_DTYPE_STRING},
};

const char *srv_dtype_wire_name(ferry_dtype dt)
{
    for (size_t i = 0; i < sizeof(wire_names) / sizeof(wire_names[0]); i++)
        if (wire_names[i].dtype == dt) return wire_names[i].name;
    return NULL;
}

ferry_dtype srv_dtype_from_wire(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(wire_names) / sizeof(wire_names[0]); i++)
        if (strlen(wire_names[i].name) == len && !memcmp(wire_names[i].name, name, len))
            return wire_names[i].dtype;
    return FERRY_DTYPE_UNDEFINED;
}

size_t srv_view_bytes(const ferry_tensor_view *v)
{
    return (size_t)ferry_tensor_view_count(v) * ferry_dtype_size(v->dtype);
}

static ferry_status *bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static ferry_status *bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ferry_status *st = core_verror(FERRY_ERR_INVALID_ARGUMENT, fmt, ap);
    va_end(ap);
    return st;
}

static ferry_status *malformed(const cur *c, const char *what)
{
    if (c->p >= c->end)
        return bad("malformed JSON: %s, but the JSON ends at byte %zu", what,
                   (size_t)(c->end - c->base));
    return bad("malformed JSON at byte %zu: %s", (size_t)(c->p - c->base), what);
}

static void ws(cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

/* Skips white space, then consumes CH when it comes next. */
static bool eat(cur *c, char ch)
{
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool eat_word(cur *c, const char *w, size_t n)
{
    if ((size_t)(c->end - c->p) >= n && !memcmp(c->p, w, n)) {
        c->p += n;
        return true;
    }
    return false;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static bool read_hex4(const char *p, const char *end, uint32_t *out)
{
    if (end - p < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return false;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return true;
}

static char *put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

/* Reads a string at the cursor (after white space). Without escapes the span points into the
 * body; with them it is decoded into ARENA (NULL: only validate and skip). */
static ferry_status *read_string(cur *c, srv_arena *arena, span *out)
{
    ws(c);
    if (c->p >= c->end || *c->p != '"') return malformed(c, "expected a string");
    const char *s = ++c->p;
    bool escaped = false;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p;
        if (ch < 0x20) return malformed(c, "control character in a string");
        if (ch == '\\') {
            escaped = true;
            c->p++;
            if (c->p >= c->end) break;
        }
        c->p++;
    }
    if (c->p >= c->end) return malformed(c, "unterminated string");
    const char *e = c->p++;
    if (!escaped) {
        if (out) *out = (span){s, (size_t)(e - s)};
        return NULL;
    }
    /* Escapes only shrink the text (\uXXXX is 6 bytes for at most 3 of UTF-8; a surrogate pair
     * is 12 for 4), so the decoded string fits in the raw length. */
    char *o = NULL, *start = NULL;
    if (arena && out) {
        start = o = srv_arena_alloc(arena, (size_t)(e - s) + 1, 1);
        if (!o) return core_error(FERRY_ERR_NO_MEMORY, "out of memory decoding a string");
    }
    for (const char *p = s; p < e; p++) {
        if (*p != '\\') {
            if (o) *o++ = *p;
            continue;
        }
        p++;
        char ch = *p, lit;
        switch (ch) {
        case '"':
            lit = '"';
            break;
        case '\\':
            lit = '\\';
            break;
        case '/':
            lit = '/';
            break;
        case 'b':
            lit = '\b';
            break;
        case 'f':
            lit = '\f';
            break;
        case 'n':
            lit = '\n';
            break;
        case 'r':
            lit = '\r';
            break;
        case 't':
            lit = '\t';
            break;
        case 'u': {
            uint32_t cp, lo;
            if (!read_hex4(p + 1, e, &cp)) return bad("malformed JSON: bad \\u escape");
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && e - p >= 7 && p[1] == '\\' && p[2] == 'u' &&
                read_hex4(p + 3, e, &lo) && lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            } else if (cp >= 0xd800 && cp <= 0xdfff) {
                cp = 0xfffd; /* a lone surrogate cannot be written as UTF-8 */
            }
            if (o) o = put_utf8(o, cp);
            continue;
        }
        default:
            return bad("malformed JSON: bad escape '\\%c' in a string", ch);
        }
        if (o) *o++ = lit;
    }
    if (o) {
        *o = 0;
        *out = (span){start, (size_t)(o - start)};
    } else if (out) {
        *out = (span){s, (size_t)(e - s)};
    }
    return NULL;
}

static bool span_is(span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && !memcmp(s.s, lit, n);
}

/* A JSON number token, validated against the grammar. */
typedef struct num {
    const char *s;
    size_t len;
    bool neg;
    bool integer; /* no fraction and no exponent */
} num;

static inline bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool scan_number(cur *c, num *n)
{
    const char *p = c->p, *e = c->end;
    n->s = p;
    n->neg = false;
    n->integer = true;
    if (p < e && *p == '-') {
        n->neg = true;
        p++;
    }
    if (p >= e) return false;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && is_digit(*p)) p++;
    } else {
        return false;
    }
    if (p < e && *p == '.') {
        n->integer = false;
        p++;
        if (p >= e || !is_digit(*p)) return false;
        while (p < e && is_digit(*p)) p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        n->integer = false;
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !is_digit(*p)) return false;
        while (p < e && is_digit(*p)) p++;
    }
    n->len = (size_t)(p - n->s);
    c->p = p;
    return true;
}

/* Exact powers of ten a double holds without rounding. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The number's value, correctly rounded. Most literals have few digits: then mantissa and power
 * of ten are both exact doubles and one multiplication or division rounds correctly (Clinger's
 * fast path); the rest go through strtod. False when the literal is too long. */
static bool num_to_double(const num *n, double *out)
{
    const char *p = n->s, *e = n->s + n->len;
    if (*p == '-') p++;
    uint64_t m = 0;
    int sig = 0, exp10 = 0;
    bool slow = false;
    for (; p < e && is_digit(*p); p++) {
        if (m || *p != '0') {
            if (sig < 19)
                m = m * 10 + (uint64_t)(*p - '0'), sig++;
            else
                exp10++, slow = true;
        }
    }
    if (p < e && *p == '.') {
        for (p++; p < e && is_digit(*p); p++) {
            if (m || *p != '0') {
                if (sig < 19)
                    m = m * 10 + (uint64_t)(*p - '0'), sig++, exp10--;
                else
                    slow = true;
            } else {
                exp10--;
            }
        }
    }
    if (p < e) { /* exponent */
        p++;
        bool eneg = false;
        if (*p == '+' || *p == '-') eneg = *p++ == '-';
        int ev = 0;
        for (; p < e && is_digit(*p); p++) {
            if (ev < 100000) ev = ev * 10 + (*p - '0');
        }
        exp10 += eneg ? -ev : ev;
    }
    if (!slow && m <= ((uint64_t)1 << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)m;
        v = exp10 < 0 ? v / pow10_exact[-exp10] : v * pow10_exact[exp10];
        *out = n->neg ? -v : v;
        return true;
    }
    if (m == 0 && !slow) {
        *out = n->neg ? -0.0 : 0.0;
        return true;
    }
    if (n->len > MAX_NUMBER_LEN) return false;
    char tmp[MAX_NUMBER_LEN + 1];
    memcpy(tmp, n->s, n->len);
    tmp[n->len] = 0;
    *out = strtod(tmp, NULL); /* the grammar was checked; the C locale is never changed */
    return true;
}

/* Integer value of an integral literal. RANGE: 0 fits int64, 1 fits uint64 only, -1 overflows. */
static int num_to_int(const num *n, int64_t *i, uint64_t *u)
{
    const char *p = n->s, *e = n->s + n->len;
    if (*p == '-') p++;
    uint64_t v = 0;
    for (; p < e; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *u = v;
    if (n->neg) {
        if (v > (uint64_t)INT64_MAX + 1) return -1;
        *i = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        return 0;
    }
    if (v > (uint64_t)INT64_MAX) return 1;
    *i = (int64_t)v;
    return 0;
}

/* Skips one JSON value of any kind, checking its syntax. */
static ferry_status *skip_value(cur *c, int depth)
{
    if (depth > MAX_JSON_DEPTH) return malformed(c, "nested too deeply");
    ws(c);
    if (c->p >= c->end) return malformed(c, "expected a value");
    char ch = *c->p;
    if (ch == '"') return read_string(c, NULL, NULL);
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        c->p++;
        if (eat(c, close)) return NULL;
        for (;;) {
            ferry_status *st;
            if (ch == '{') {
                if ((st = read_string(c, NULL, NULL))) return st;
                if (!eat(c, ':')) return malformed(c, "expected ':'");
            }
            if ((st = skip_value(c, depth + 1))) return st;
            if (eat(c, ',')) continue;
            if (eat(c, close)) return NULL;
            return malformed(c, ch == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (eat_word(c, "true", 4) || eat_word(c, "false", 5) || eat_word(c, "null", 4)) return NULL;
    num n;
    if (scan_number(c, &n)) return NULL;
    return malformed(c, "expected a value");
}

/* Calls FN for every member of an object at the cursor. */
typedef ferry_status *(*member_fn)(void *ctx, span key, cur *c);

static ferry_status *read_object(cur *c, srv_arena *arena, void *ctx, member_fn fn)
{
    if (!eat(c, '{')) return malformed(c, "expected an object");
    if (eat(c, '}')) return NULL;
    for (;;) {
        span key;
        ferry_status *st = read_string(c, arena, &key);
        if (st) return st;
        if (!eat(c, ':')) return malformed(c, "expected ':'");
        if ((st = fn(ctx, key, c))) return st;
        if (eat(c, ',')) continue;
        if (eat(c, '}')) return NULL;
        return malformed(c, "expected ',' or '}'");
    }
}

static void format_dims(char *buf, size_t size, int rank, const int64_t *dims)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%" PRId64, i ? "," : "", dims[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

/* ---------------------------------------------------------------------------------------
 * Tensor data
 * ------------------------------------------------------------------------------------- */

static ferry_status *leaf_error(const char *name, int64_t i, const char *what)
{
    return bad("input '%s': element %" PRId64 " %s", name, i, what);
}

/* Reads one element at the cursor into element I of DST. */
static ferry_status *read_leaf(cur *c, const char *name, ferry_dtype dt, void *dst, int64_t i)
{
    if (dt == FERRY_DTYPE_BOOL) {
        if (eat_word(c, "true", 4))
            ((uint8_t *)dst)[i] = 1;
        else if (eat_word(c, "false", 5))
            ((uint8_t *)dst)[i] = 0;
        else
            return leaf_error(name, i, "is not true or false (BOOL data)");
        return NULL;
    }
    num n;
    if (!scan_number(c, &n)) return leaf_error(name, i, "is not a number");
    if (core_dtype_is_float(dt)) {
        double v;
        if (!num_to_double(&n, &v)) return leaf_error(name, i, "has too many digits");
        if (isinf(v)) return leaf_error(name, i, "is out of range");
        switch (dt) {
        case FERRY_DTYPE_FLOAT: {
            float f = (float)v;
            if (isinf(f)) return leaf_error(name, i, "is out of range for FP32");
            ((float *)dst)[i] = f;
            break;
        }
        case FERRY_DTYPE_DOUBLE:
            ((double *)dst)[i] = v;
            break;
        case FERRY_DTYPE_FLOAT16: {
            uint16_t h = core_float_to_half((float)v);
            if ((h & 0x7fff) == 0x7c00) return leaf_error(name, i, "is out of range for FP16");
            ((uint16_t *)dst)[i] = h;
            break;
        }
        default: { /* bfloat16 */
            uint16_t h = core_float_to_bf16((float)v);
            if ((h & 0x7fff) == 0x7f80) return leaf_error(name, i, "is out of range for BF16");
            ((uint16_t *)dst)[i] = h;
            break;
        }
        }
        return NULL;
    }
    if (!n.integer) return leaf_error(name, i, "is not an integer");
    int64_t v = 0;
    uint64_t u = 0;
    int r = num_to_int(&n, &v, &u);
    bool ok;
    switch (dt) {
    case FERRY_DTYPE_INT8:
        ok = !r && v >= INT8_MIN && v <= INT8_MAX;
        break;
    case FERRY_DTYPE_INT16:
        ok = !r && v >= INT16_MIN && v <= INT16_MAX;
        break;
    case FERRY_DTYPE_INT32:
        ok = !r && v >= INT32_MIN && v <= INT32_MAX;
        break;
    case FERRY_DTYPE_INT64:
        ok = !r;
        break;
    case FERRY_DTYPE_UINT8:
        ok = r >= 0 && !n.neg && u <= UINT8_MAX;
        break;
    case FERRY_DTYPE_UINT16:
        ok = r >= 0 && !n.neg && u <= UINT16_MAX;
        break;
    case FERRY_DTYPE_UINT32:
        ok = r >= 0 && !n.neg && u <= UINT32_MAX;
        break;
    case FERRY_DTYPE_UINT64:
        ok = r >= 0 && (!n.neg || u == 0);
        break;
    default:
        return bad("input '%s': datatype cannot be sent as JSON", name);
    }
    if (!ok) return leaf_error(name, i, "is out of range for its datatype");
    switch (dt) {
    case FERRY_DTYPE_INT8:
        ((int8_t *)dst)[i] = (int8_t)v;
        break;
    case FERRY_DTYPE_INT16:
        ((int16_t *)dst)[i] = (int16_t)v;
        break;
    case FERRY_DTYPE_INT32:
        ((int32_t *)dst)[i] = (int32_t)v;
        break;
    case FERRY_DTYPE_INT64:
        ((int64_t *)dst)[i] = v;
        break;
    case FERRY_DTYPE_UINT8:
        ((uint8_t *)dst)[i] = (uint8_t)u;
        break;
    case FERRY_DTYPE_UINT16:
        ((uint16_t *)dst)[i] = (uint16_t)u;
        break;
    case FERRY_DTYPE_UINT32:
        ((uint32_t *)dst)[i] = (uint32_t)u;
        break;
    default:
        ((uint64_t *)dst)[i] = u;
        break;
    }
    return NULL;
}

/* Reads "data" for a tensor of shape DIMS (RANK dims, COUNT elements) into DST. The array is
 * either flat (COUNT elements) or nested exactly like the shape; a nested array's length is
 * checked as it is read, so nothing is written past COUNT elements whatever the input. */
static ferry_status *read_data(cur *c, const char *name, ferry_dtype dt, int rank,
                               const int64_t *dims, int64_t count, void *dst)
{
    char shape[160];
    if (!eat(c, '[')) return bad("input '%s': 'data' must be an array", name);
    ws(c);
    bool nested = c->p < c->end && *c->p == '[';
    ferry_status *st;
    if (!nested) {
        int64_t i = 0;
        if (!eat(c, ']')) {
            for (;;) {
                ws(c);
                if (i >= count) {
                    if (c->p < c->end && *c->p == ']') return malformed(c, "expected a value");
                    goto too_many;
                }
                if ((st = read_leaf(c, name, dt, dst, i))) return st;
                i++;
                if (eat(c, ',')) continue;
                if (eat(c, ']')) break;
                return malformed(c, "expected ',' or ']' in 'data'");
            }
        }
        if (i != count) {
            format_dims(shape, sizeof(shape), rank, dims);
            return bad("input '%s': 'data' has %" PRId64 " elements but shape %s needs %" PRId64,
                       name, i, shape, count);
        }
        return NULL;
    }
    if (rank < 2) {
        format_dims(shape, sizeof(shape), rank, dims);
        return bad("input '%s': 'data' is nested deeper than shape %s", name, shape);
    }
    int64_t len[FERRY_MAX_RANK];
    int depth = 1;
    int64_t i = 0;
    bool may_close = true;
    len[0] = 0;
    for (;;) {
        ws(c);
        if (c->p >= c->end) return malformed(c, "unterminated 'data'");
        if (*c->p == ']' && may_close) {
            if (len[depth - 1] != dims[depth - 1]) goto wrong_nesting;
            c->p++;
            if (--depth == 0) break;
        } else {
            if (len[depth - 1] >= dims[depth - 1]) goto wrong_nesting;
            len[depth - 1]++;
            if (*c->p == '[') {
                if (depth >= rank) goto wrong_nesting;
                c->p++;
                len[depth++] = 0;
                may_close = true;
                continue;
            }
            if (depth != rank) goto wrong_nesting;
            if (i >= count) goto too_many; /* cannot happen: the lengths multiply to COUNT */
            if ((st = read_leaf(c, name, dt, dst, i))) return st;
            i++;
        }
        if (eat(c, ',')) {
            may_close = false;
        } else {
            ws(c);
            if (c->p >= c->end || *c->p != ']')
                return malformed(c, "expected ',' or ']' in 'data'");
            may_close = true;
        }
    }
    return NULL;
wrong_nesting:
    format_dims(shape, sizeof(shape), rank, dims);
    return bad("input '%s': nested 'data' does not match shape %s (send it flat or nested "
               "exactly like the shape)",
               name, shape);
too_many:
    format_dims(shape, sizeof(shape), rank, dims);
    return bad("input '%s': 'data' has more than the %" PRId64 " elements of shape %s", name, count,
               shape);
}

/* ---------------------------------------------------------------------------------------
 * The request
 * ------------------------------------------------------------------------------------- */

typedef struct decoder {
    const srv_model_sig *sig;
    srv_arena *arena;
    srv_infer_req *req;
    const char *bin; /* binary part after the JSON */
    size_t bin_len, bin_off;
    bool has_header_len;
    int binary_output; /* request parameters.binary_data_output: -1 unset, 0, 1 */
    bool seen_inputs, seen_outputs;
    size_t n_outputs;
    int *out_binary; /* per requested output: -1 unset, 0, 1 */
    bool *out_seen;  /* per signature output: already requested */
    int64_t batch;   /* -1 until the first batching input sets it */
    size_t n_input_objects;
} decoder;

typedef struct input_obj {
    decoder *d;
    span name, datatype;
    bool has_name, has_shape, has_datatype, has_data, has_binary;
    int rank;
    int64_t dims[FERRY_MAX_RANK];
    int64_t binary_size;
    const char *data_at; /* where "data" starts when it had to wait for the other fields */
    bool data_done;
    /* set by check_input */
    const srv_tensor_spec *spec;
    size_t index;
    int64_t count;
} input_obj;

static ferry_status *read_bool(cur *c, const char *what, bool *out)
{
    ws(c);
    if (eat_word(c, "true", 4))
        *out = true;
    else if (eat_word(c, "false", 5))
        *out = false;
    else
        return bad("%s must be true or false", what);
    return NULL;
}

static ferry_status *read_int(cur *c, const char *what, int64_t *out)
{
    ws(c);
    num n;
    int64_t v;
    uint64_t u;
    if (!scan_number(c, &n) || !n.integer || num_to_int(&n, &v, &u) != 0)
        return bad("%s must be an integer", what);
    *out = v;
    return NULL;
}

/* A parameter value must be a string, number or boolean ($parameters in the protocol). */
static ferry_status *skip_scalar(cur *c, span key)
{
    ws(c);
    if (c->p < c->end && (*c->p == '{' || *c->p == '[' || *c->p == 'n'))
        return bad("parameter '%.*s' must be a string, number or boolean",
                   (int)(key.len > 64 ? 64 : key.len), key.s);
    return skip_value(c, 1);
}

static ferry_status *input_param(void *ctx, span key, cur *c)
{
    input_obj *in = ctx;
    if (span_is(key, "binary_data_size")) {
        ferry_status *st = read_int(c, "parameter 'binary_data_size'", &in->binary_size);
        if (st) return st;
        if (in->binary_size < 0) return bad("parameter 'binary_data_size' must not be negative");
        in->has_binary = true;
        return NULL;
    }
    if (span_is(key, "shared_memory_region") || span_is(key, "shared_memory_byte_size") ||
        span_is(key, "shared_memory_offset"))
        return core_error(FERRY_ERR_UNSUPPORTED, "shared memory inputs are not supported");
    return skip_scalar(c, key);
}

static const char *input_label(const input_obj *in, char *buf, size_t size)
{
    if (in->has_name) {
        snprintf(buf, size, "%.*s", (int)(in->name.len > 200 ? 200 : in->name.len), in->name.s);
    } else {
        snprintf(buf, size, "#%zu", in->d->n_input_objects);
    }
    return buf;
}

/* Checks name, datatype and shape against the signature; sets spec, index and count. */
static ferry_status *check_input(input_obj *in)
{
    decoder *d = in->d;
    char label[208], want[160], got[160];
    input_label(in, label, sizeof(label));
    if (!in->has_name) return bad("input %s: missing 'name'", label);
    if (!in->has_datatype) return bad("input '%s': missing 'datatype'", label);
    if (!in->has_shape) return bad("input '%s': missing 'shape'", label);
    const srv_tensor_spec *spec = NULL;
    size_t index = 0;
    for (size_t i = 0; i < d->sig->n_inputs; i++) {
        const char *n = d->sig->inputs[i].name;
        if (strlen(n) == in->name.len && !memcmp(n, in->name.s, in->name.len)) {
            spec = &d->sig->inputs[i];
            index = i;
            break;
        }
    }
    if (!spec) return bad("unknown input '%s'", label);
    if (d->req->given[index]) return bad("input '%s' is given twice", label);
    ferry_dtype dt = srv_dtype_from_wire(in->datatype.s, in->datatype.len);
    if (dt == FERRY_DTYPE_UNDEFINED)
        return bad("input '%s': unknown datatype '%.*s'", label,
                   (int)(in->datatype.len > 32 ? 32 : in->datatype.len), in->datatype.s);
    if (dt == FERRY_DTYPE_STRING)
        return core_error(FERRY_ERR_UNSUPPORTED, "input '%s': BYTES tensors are not supported",
                          label);
    if (dt != spec->dtype)
        return bad("input '%s': expected datatype %s, got %s", label,
                   srv_dtype_wire_name(spec->dtype) ? srv_dtype_wire_name(spec->dtype) : "?",
                   srv_dtype_wire_name(dt));
    bool ok = in->rank == spec->rank;
    for (int i = 0; ok && i < spec->rank; i++)
        if (spec->dims[i] >= 0 && spec->dims[i] != in->dims[i]) ok = false;
    if (!ok) {
        format_dims(want, sizeof(want), spec->rank, spec->dims);
        format_dims(got, sizeof(got), in->rank, in->dims);
        return bad("input '%s': expected shape %s, got %s", label, want, got);
    }
    if (d->sig->max_batch_size > 0 && in->rank > 0) {
        int64_t b = in->dims[0];
        if (b < 1) return bad("input '%s': batch size must be at least 1", label);
        if (b > d->sig->max_batch_size)
            return bad("input '%s': batch size %" PRId64 " is more than the model's "
                       "max_batch_size %" PRId64,
                       label, b, d->sig->max_batch_size);
        if (d->batch >= 0 && d->batch != b)
            return bad("input '%s': batch size %" PRId64 " differs from the other inputs' %" PRId64,
                       label, b, d->batch);
        d->batch = b;
    }
    int64_t count = 1;
    for (int i = 0; i < in->rank; i++) {
        if (in->dims[i] && count > MAX_ELEMENTS / in->dims[i]) {
            format_dims(got, sizeof(got), in->rank, in->dims);
            return bad("input '%s': shape %s has too many elements", label, got);
        }
        count *= in->dims[i];
    }
    in->spec = spec;
    in->index = index;
    in->count = count;
    return NULL;
}

/* Decodes the data of IN (validated by check_input) from the cursor into a new buffer. */
static ferry_status *decode_json_data(input_obj *in, cur *c)
{
    decoder *d = in->d;
    size_t esize = ferry_dtype_size(in->spec->dtype);
    /* Each element takes at least one character and a separator: a count the rest of the JSON
     * cannot hold is refused before memory is taken for it. */
    ws(c);
    if (c->p >= c->end || *c->p != '[')
        return bad("input '%s': 'data' must be an array", in->spec->name);
    size_t left = (size_t)(c->end - c->p);
    if (in->count > 0 && (uint64_t)in->count > left / 2 + 1)
        return bad("input '%s': 'data' is shorter than the %" PRId64 " elements of its shape",
                   in->spec->name, in->count);
    size_t bytes = (size_t)in->count * esize;
    void *dst = srv_arena_alloc(d->arena, bytes ? bytes : 1, 64);
    if (!dst)
        return core_error(FERRY_ERR_NO_MEMORY, "input '%s': out of memory for %zu bytes",
                          in->spec->name, bytes);
    ferry_status *st =
        read_data(c, in->spec->name, in->spec->dtype, in->rank, in->dims, in->count, dst);
    if (st) return st;
    ferry_tensor_view *v = &d->req->inputs[in->index];
    v->data = dst;
    in->data_done = true;
    return NULL;
}

static ferry_status *input_member(void *ctx, span key, cur *c)
{
    input_obj *in = ctx;
    decoder *d = in->d;
    ferry_status *st;
    if (span_is(key, "name")) {
        if (in->has_name) return bad("input: 'name' is given twice");
        if ((st = read_string(c, d->arena, &in->name))) return st;
        in->has_name = true;
    } else if (span_is(key, "datatype")) {
        if (in->has_datatype) return bad("input: 'datatype' is given twice");
        if ((st = read_string(c, d->arena, &in->datatype))) return st;
        in->has_datatype = true;
    } else if (span_is(key, "shape")) {
        if (in->has_shape) return bad("input: 'shape' is given twice");
        in->has_shape = true;
        in->rank = 0;
        if (!eat(c, '[')) return bad("input: 'shape' must be an array of integers");
        if (eat(c, ']')) return NULL;
        for (;;) {
            int64_t v;
            if ((st = read_int(c, "input: each 'shape' entry", &v))) return st;
            if (v < 0) return bad("input: 'shape' entries must not be negative");
            if (in->rank >= FERRY_MAX_RANK)
                return bad("input: 'shape' has more than %d dimensions", FERRY_MAX_RANK);
            in->dims[in->rank++] = v;
            if (eat(c, ',')) continue;
            if (eat(c, ']')) break;
            return malformed(c, "expected ',' or ']' in 'shape'");
        }
    } else if (span_is(key, "parameters")) {
        return read_object(c, d->arena, in, input_param);
    } else if (span_is(key, "data")) {
        if (in->has_data) return bad("input: 'data' is given twice");
        in->has_data = true;
        if (in->has_name && in->has_datatype && in->has_shape) {
            if ((st = check_input(in))) return st;
            return decode_json_data(in, c);
        }
        ws(c);
        in->data_at = c->p;
        return skip_value(c, 1);
    } else {
        return skip_value(c, 1);
    }
    return NULL;
}

static ferry_status *read_input(decoder *d, cur *c)
{
    input_obj in = {.d = d};
    d->n_input_objects++;
    ferry_status *st = read_object(c, d->arena, &in, input_member);
    if (st) return st;
    if (!in.spec && (st = check_input(&in))) return st;
    char label[208];
    input_label(&in, label, sizeof(label));
    if (in.has_data == in.has_binary)
        return bad("input '%s': give exactly one of 'data' and parameter 'binary_data_size'",
                   label);
    ferry_tensor_view *v = &d->req->inputs[in.index];
    v->dtype = in.spec->dtype;
    v->rank = in.rank;
    memcpy(v->dims, in.dims, sizeof(v->dims));
    if (in.has_data && !in.data_done) {
        cur dc = {in.data_at, c->end, c->base};
        if ((st = decode_json_data(&in, &dc))) return st;
    }
    if (in.has_binary) {
        if (!d->has_header_len)
            return bad("input '%s': 'binary_data_size' needs the Inference-Header-Content-Length "
                       "header",
                       label);
        size_t esize = ferry_dtype_size(in.spec->dtype);
        uint64_t need = (uint64_t)in.count * esize;
        if ((uint64_t)in.binary_size != need)
            return bad("input '%s': binary_data_size is %" PRId64 " bytes but shape and datatype "
                       "need %" PRIu64,
                       label, in.binary_size, need);
        if (need > d->bin_len - d->bin_off)
            return bad("input '%s': binary data is truncated: %" PRIu64 " bytes needed, %zu left "
                       "in the body",
                       label, need, d->bin_len - d->bin_off);
        const char *src = d->bin + d->bin_off;
        d->bin_off += (size_t)need;
        if ((uintptr_t)src % esize == 0) {
            v->data = (void *)(uintptr_t)src; /* in place: the body outlives the request */
        } else {
            /* The JSON's length decides the blob's alignment; a misaligned tensor is copied
             * once rather than read through misaligned pointers. */
            void *dst = srv_arena_alloc(d->arena, need ? (size_t)need : 1, 64);
            if (!dst) return core_error(FERRY_ERR_NO_MEMORY, "input '%s': out of memory", label);
            if (need) memcpy(dst, src, (size_t)need);
            v->data = dst;
        }
    }
    d->req->given[in.index] = true;
    return NULL;
}

typedef struct output_obj {
    decoder *d;
    span name;
    bool has_name;
    int binary;
} output_obj;

static ferry_status *output_param(void *ctx, span key, cur *c)
{
    output_obj *o = ctx;
    if (span_is(key, "binary_data")) {
        bool b = false;
        ferry_status *st = read_bool(c, "parameter 'binary_data'", &b);
        if (!st) o->binary = b;
        return st;
    }
    if (span_is(key, "classification"))
        return core_error(FERRY_ERR_UNSUPPORTED, "the classification extension is not supported");
    if (span_is(key, "shared_memory_region") || span_is(key, "shared_memory_byte_size") ||
        span_is(key, "shared_memory_offset"))
        return core_error(FERRY_ERR_UNSUPPORTED, "shared memory outputs are not supported");
    return skip_scalar(c, key);
}

static ferry_status *output_member(void *ctx, span key, cur *c)
{
    output_obj *o = ctx;
    if (span_is(key, "name")) {
        if (o->has_name) return bad("output: 'name' is given twice");
        o->has_name = true;
        return read_string(c, o->d->arena, &o->name);
    }
    if (span_is(key, "parameters")) return read_object(c, o->d->arena, o, output_param);
    return skip_value(c, 1);
}

static ferry_status *read_output(decoder *d, cur *c)
{
    output_obj o = {.d = d, .binary = -1};
    ferry_status *st = read_object(c, d->arena, &o, output_member);
    if (st) return st;
    if (!o.has_name) return bad("output #%zu: missing 'name'", d->n_outputs + 1);
    int len = (int)(o.name.len > 200 ? 200 : o.name.len);
    const srv_model_sig *sig = d->sig;
    size_t index = sig->n_outputs;
    for (size_t i = 0; i < sig->n_outputs; i++) {
        if (strlen(sig->outputs[i].name) == o.name.len &&
            !memcmp(sig->outputs[i].name, o.name.s, o.name.len)) {
            index = i;
            break;
        }
    }
    if (index == sig->n_outputs) return bad("unknown output '%.*s'", len, o.name.s);
    if (d->out_seen[index]) return bad("output '%.*s' is requested twice", len, o.name.s);
    if (d->n_outputs >= SRV_MAX_TENSORS) return bad("too many outputs requested");
    d->out_seen[index] = true;
    d->req->outputs[d->n_outputs].index = index;
    d->out_binary[d->n_outputs] = o.binary;
    d->n_outputs++;
    return NULL;
}

static ferry_status *request_param(void *ctx, span key, cur *c)
{
    decoder *d = ctx;
    ferry_status *st;
    if (span_is(key, "binary_data_output")) {
        bool b = false;
        if ((st = read_bool(c, "parameter 'binary_data_output'", &b))) return st;
        d->binary_output = b;
        return NULL;
    }
    if (span_is(key, "timeout")) {
        if ((st = read_int(c, "parameter 'timeout'", &d->req->timeout_us))) return st;
        if (d->req->timeout_us < 0) return bad("parameter 'timeout' must not be negative");
        return NULL;
    }
    if (span_is(key, "priority")) {
        if ((st = read_int(c, "parameter 'priority'", &d->req->priority))) return st;
        if (d->req->priority < 0) return bad("parameter 'priority' must not be negative");
        return NULL;
    }
    return skip_scalar(c, key);
}

static ferry_status *request_member(void *ctx, span key, cur *c)
{
    decoder *d = ctx;
    ferry_status *st;
    if (span_is(key, "id")) {
        span id;
        ws(c);
        if (c->p >= c->end || *c->p != '"') return bad("'id' must be a string");
        if ((st = read_string(c, d->arena, &id))) return st;
        d->req->id = srv_arena_strndup(d->arena, id.s, id.len);
        if (!d->req->id) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    if (span_is(key, "parameters")) return read_object(c, d->arena, d, request_param);
    if (span_is(key, "inputs") || span_is(key, "outputs")) {
        bool inputs = key.s[0] == 'i';
        bool *seen = inputs ? &d->seen_inputs : &d->seen_outputs;
        if (*seen) return bad("'%s' is given twice", inputs ? "inputs" : "outputs");
        *seen = true;
        if (!eat(c, '[')) return bad("'%s' must be an array", inputs ? "inputs" : "outputs");
        if (eat(c, ']')) return NULL;
        for (;;) {
            if ((st = inputs ? read_input(d, c) : read_output(d, c))) return st;
            if (eat(c, ',')) continue;
            if (eat(c, ']')) return NULL;
            return malformed(c, "expected ',' or ']'");
        }
    }
    return skip_value(c, 1);
}

/* The whole body is the raw bytes of the model's only input (Inference-Header-Content-Length:
 * 0). The shape comes from the model: batch 1 when it batches, and at most one other dimension
 * left open, deduced from the byte count. */
static ferry_status *decode_raw(decoder *d, const char *body, size_t len)
{
    const srv_model_sig *sig = d->sig;
    if (sig->n_inputs != 1)
        return bad("a raw binary body (Inference-Header-Content-Length: 0) needs a model with "
                   "exactly one input; this one has %zu",
                   sig->n_inputs);
    const srv_tensor_spec *spec = &sig->inputs[0];
    size_t esize = ferry_dtype_size(spec->dtype);
    if (!esize || spec->dtype == FERRY_DTYPE_STRING)
        return core_error(FERRY_ERR_UNSUPPORTED, "input '%s': datatype not supported raw",
                          spec->name);
    ferry_tensor_view *v = &d->req->inputs[0];
    v->dtype = spec->dtype;
    v->rank = spec->rank;
    int open = -1;
    int64_t known = 1;
    for (int i = 0; i < spec->rank; i++) {
        int64_t dim = spec->dims[i];
        if (i == 0 && sig->max_batch_size > 0) dim = 1;
        if (dim < 0) {
            if (open >= 0)
                return bad("input '%s': a raw binary body needs a shape with at most one "
                           "variable dimension",
                           spec->name);
            open = i;
            dim = 1;
        }
        if (dim && known > MAX_ELEMENTS / dim)
            return bad("input '%s': shape too large", spec->name);
        known *= dim;
        v->dims[i] = dim;
    }
    uint64_t unit = (uint64_t)known * esize;
    if (open >= 0) {
        if (unit == 0 || len % unit)
            return bad("input '%s': %zu raw bytes do not make a whole tensor", spec->name, len);
        v->dims[open] = (int64_t)(len / unit);
    } else if (len != unit) {
        return bad("input '%s': raw body has %zu bytes, the shape needs %" PRIu64, spec->name, len,
                   unit);
    }
    if ((uintptr_t)body % esize == 0) {
        v->data = (void *)(uintptr_t)body;
    } else {
        void *dst = srv_arena_alloc(d->arena, len ? len : 1, 64);
        if (!dst) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        if (len) memcpy(dst, body, len);
        v->data = dst;
    }
    d->req->given[0] = true;
    d->req->batch = 1;
    return NULL;
}

ferry_status *srv_decode_infer(const srv_model_sig *sig, const char *body, size_t body_len,
                               int64_t header_len, srv_arena *arena, srv_infer_req *out)
{
    memset(out, 0, sizeof(*out));
    decoder d = {.sig = sig, .arena = arena, .req = out, .binary_output = -1, .batch = -1};
    size_t n_in = sig->n_inputs, n_out = sig->n_outputs;
    out->n_inputs = n_in;
    out->inputs = srv_arena_alloc(arena, (n_in ? n_in : 1) * sizeof(*out->inputs), 16);
    out->given = srv_arena_alloc(arena, n_in ? n_in : 1, 1);
    size_t max_out = n_out < SRV_MAX_TENSORS ? n_out : SRV_MAX_TENSORS;
    out->outputs = srv_arena_alloc(arena, (n_out ? n_out : 1) * sizeof(*out->outputs), 16);
    d.out_binary = srv_arena_alloc(arena, (max_out ? max_out : 1) * sizeof(int), 16);
    d.out_seen = srv_arena_alloc(arena, n_out ? n_out : 1, 1);
    if (!out->inputs || !out->given || !out->outputs || !d.out_binary || !d.out_seen)
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory decoding the request");
    memset(out->inputs, 0, n_in * sizeof(*out->inputs));
    memset(out->given, 0, n_in ? n_in : 1);
    memset(d.out_seen, 0, n_out ? n_out : 1);

    ferry_status *st;
    if (header_len == 0) {
        if ((st = decode_raw(&d, body, body_len))) return st;
        for (size_t i = 0; i < max_out; i++) out->outputs[i] = (srv_output_req){i, true};
        out->n_outputs = max_out;
        out->any_binary_output = max_out > 0;
        return NULL;
    }
    size_t json_len = body_len;
    if (header_len > 0) {
        if ((uint64_t)header_len > body_len)
            return bad("Inference-Header-Content-Length is %" PRId64 " but the body has only "
                       "%zu bytes",
                       header_len, body_len);
        json_len = (size_t)header_len;
        d.has_header_len = true;
        d.bin = body + json_len;
        d.bin_len = body_len - json_len;
    }
    cur c = {body, body + json_len, body};
    if ((st = read_object(&c, arena, &d, request_member))) return st;
    ws(&c);
    if (c.p != c.end) return malformed(&c, "unexpected data after the JSON object");
    if (!d.seen_inputs) return bad("the request has no 'inputs'");
    for (size_t i = 0; i < n_in; i++) {
        if (!out->given[i] && !sig->inputs[i].optional)
            return bad("missing input '%s'", sig->inputs[i].name);
    }
    if (d.bin_off != d.bin_len)
        return bad("%zu bytes of binary data after the JSON belong to no input",
                   d.bin_len - d.bin_off);
    out->batch = d.batch >= 0 ? d.batch : 1;
    bool dflt = d.binary_output == 1;
    if (!d.seen_outputs || d.n_outputs == 0) {
        /* No "outputs": every output, in the model's order. */
        for (size_t i = 0; i < max_out; i++) out->outputs[i] = (srv_output_req){i, dflt};
        out->n_outputs = max_out;
        out->any_binary_output = dflt && max_out > 0;
    } else {
        out->n_outputs = d.n_outputs;
        for (size_t i = 0; i < d.n_outputs; i++) {
            bool b = d.out_binary[i] < 0 ? dflt : d.out_binary[i] == 1;
            out->outputs[i].binary = b;
            if (b) out->any_binary_output = true;
        }
    }
    return NULL;
}
