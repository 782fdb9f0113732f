/* codec_encode.c - writes KServe v2 inference responses and error bodies.
 *
 * Numbers are written so that they read back to the same value: 9 significant digits for FP32,
 * 17 for FP64, 5 for FP16 and 4 for BF16. JSON has no NaN or infinity; they are written as null
 * (clients that need them ask for binary outputs, which carry the bits unchanged).
 */
#include "serve/codec.h"

#include "core/dtype.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most bytes one element can take as text ("-1.23456789e-308" and a comma). */
#define MAX_ELEMENT_TEXT 32

static char *put_u64(char *o, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *o++ = tmp[--n];
    return o;
}

static char *put_i64(char *o, int64_t v)
{
    if (v < 0) {
        *o++ = '-';
        return put_u64(o, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(o, (uint64_t)v);
}

static char *put_real(char *o, double v, int digits)
{
    if (!isfinite(v)) {
        memcpy(o, "null", 4);
        return o + 4;
    }
    /* Integral values (common: 0, 1, class ids) skip snprintf; ".0" keeps them reals. */
    if (fabs(v) < 1e15 && v == (double)(int64_t)v) {
        if (signbit(v)) *o++ = '-';
        o = put_u64(o, (uint64_t)fabs(v));
        memcpy(o, ".0", 2);
        return o + 2;
    }
    int n;
    if (digits == 17) {
        /* Doubles: 15 digits when they read back exactly (0.1, not 0.10000000000000001). */
        n = snprintf(o, MAX_ELEMENT_TEXT, "%.15g", v);
        if (n > 0 && n < MAX_ELEMENT_TEXT && strtod(o, NULL) == v) return o + n;
    }
    n = snprintf(o, MAX_ELEMENT_TEXT, "%.*g", digits, v);
    return o + (n > 0 ? n : 0);
}

/* Powers of ten for scaling floats to nine digits. */
static const double p10[64] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31,
    1e32, 1e33, 1e34, 1e35, 1e36, 1e37, 1e38, 1e39, 1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47,
    1e48, 1e49, 1e50, 1e51, 1e52, 1e53, 1e54, 1e55, 1e56, 1e57, 1e58, 1e59, 1e60, 1e61, 1e62, 1e63};

/* An FP32 value as printf's "%.9g" writes it (nine significant digits, trailing zeros
 * dropped), without printf: this runs once per output element, and printf's general
 * formatting costs more than the rest of encoding a small response. Nine digits identify
 * every float, and the digits only need to be within 0.5e-9 relative of the value, which
 * double arithmetic gives with a wide margin. */
static char *put_f32(char *o, float f)
{
    double v = f;
    if (!isfinite(v)) {
        memcpy(o, "null", 4);
        return o + 4;
    }
    if (signbit(v)) {
        *o++ = '-';
        v = -v;
    }
    if (v < 1e9 && v == (double)(int64_t)v) {
        o = put_u64(o, (uint64_t)v);
        memcpy(o, ".0", 2);
        return o + 2;
    }
    int e = (int)floor(log10(v));
    uint64_t m = 0;
    for (int tries = 0; tries < 3; tries++) {
        int k = 8 - e;
        double scaled = k >= 0 ? v * p10[k] : v / p10[-k];
        m = (uint64_t)nearbyint(scaled); /* ties to even, as printf */
        if (m >= 1000000000u)
            e++;
        else if (m < 100000000u)
            e--;
        else
            break;
    }
    char digits[10];
    for (int i = 8; i >= 0; i--, m /= 10) digits[i] = (char)('0' + m % 10);
    int nd = 9;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (e >= -4 && e < 9) {
        if (e < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = -1; i > e; i--) *o++ = '0';
            memcpy(o, digits, (size_t)nd);
            return o + nd;
        }
        for (int i = 0; i < nd || i <= e; i++) {
            if (i == e + 1) *o++ = '.';
            *o++ = i < nd ? digits[i] : '0';
        }
        return o;
    }
    *o++ = digits[0];
    if (nd > 1) {
        *o++ = '.';
        memcpy(o, digits + 1, (size_t)nd - 1);
        o += nd - 1;
    }
    *o++ = 'e';
    *o++ = e < 0 ? '-' : '+';
    int ae = e < 0 ? -e : e;
    if (ae < 10) *o++ = '0';
    return put_u64(o, (uint64_t)ae);
}

static void put_data(srv_buf *b, const ferry_tensor_view *v)
{
    int64_t count = ferry_tensor_view_count(v);
    if (count < 0) count = 0;
    if ((uint64_t)count > (SIZE_MAX - 2) / MAX_ELEMENT_TEXT ||
        !srv_buf_reserve(b, (size_t)count * MAX_ELEMENT_TEXT + 2)) {
        b->failed = true;
        return;
    }
    char *o = b->data + b->len;
    const void *d = v->data;
    *o++ = '[';
    for (int64_t i = 0; i < count; i++) {
        if (i) *o++ = ',';
        switch (v->dtype) {
        case FERRY_DTYPE_FLOAT:
            o = put_f32(o, ((const float *)d)[i]);
            break;
        case FERRY_DTYPE_DOUBLE:
            o = put_real(o, ((const double *)d)[i], 17);
            break;
        case FERRY_DTYPE_FLOAT16:
            o = put_real(o, core_half_to_float(((const uint16_t *)d)[i]), 5);
            break;
        case FERRY_DTYPE_BFLOAT16:
            o = put_real(o, core_bf16_to_float(((const uint16_t *)d)[i]), 4);
            break;
        case FERRY_DTYPE_BOOL:
            if (((const uint8_t *)d)[i])
                memcpy(o, "true", 4), o += 4;
            else
                memcpy(o, "false", 5), o += 5;
            break;
        case FERRY_DTYPE_INT8:
            o = put_i64(o, ((const int8_t *)d)[i]);
            break;
        case FERRY_DTYPE_INT16:
            o = put_i64(o, ((const int16_t *)d)[i]);
            break;
        case FERRY_DTYPE_INT32:
            o = put_i64(o, ((const int32_t *)d)[i]);
            break;
        case FERRY_DTYPE_INT64:
            o = put_i64(o, ((const int64_t *)d)[i]);
            break;
        case FERRY_DTYPE_UINT8:
            o = put_u64(o, ((const uint8_t *)d)[i]);
            break;
        case FERRY_DTYPE_UINT16:
            o = put_u64(o, ((const uint16_t *)d)[i]);
            break;
        case FERRY_DTYPE_UINT32:
            o = put_u64(o, ((const uint32_t *)d)[i]);
            break;
        case FERRY_DTYPE_UINT64:
            o = put_u64(o, ((const uint64_t *)d)[i]);
            break;
        default:
            break; /* refused by the caller */
        }
    }
    *o++ = ']';
    b->len = (size_t)(o - b->data);
}

ferry_status *srv_encode_infer(const srv_model_sig *sig, const srv_infer_req *req,
                               const char *model, const char *version,
                               const ferry_tensor_view *outputs, srv_buf *json)
{
    srv_buf_puts(json, "{\"model_name\":");
    srv_buf_json_string(json, model, strlen(model));
    srv_buf_puts(json, ",\"model_version\":");
    srv_buf_json_string(json, version, strlen(version));
    if (req->id) {
        srv_buf_puts(json, ",\"id\":");
        srv_buf_json_string(json, req->id, strlen(req->id));
    }
    srv_buf_puts(json, ",\"outputs\":[");
    for (size_t i = 0; i < req->n_outputs; i++) {
        const ferry_tensor_view *v = &outputs[i];
        const char *name = sig->outputs[req->outputs[i].index].name;
        const char *wire = srv_dtype_wire_name(v->dtype);
        if (!wire || v->dtype == FERRY_DTYPE_STRING)
            return core_error(FERRY_ERR_UNSUPPORTED, "output '%s': datatype %s cannot be sent",
                              name, ferry_dtype_name(v->dtype));
        if (i) srv_buf_putc(json, ',');
        srv_buf_puts(json, "{\"name\":");
        srv_buf_json_string(json, name, strlen(name));
        srv_buf_puts(json, ",\"datatype\":\"");
        srv_buf_puts(json, wire);
        srv_buf_puts(json, "\",\"shape\":[");
        for (int d = 0; d < v->rank; d++) {
            if (d) srv_buf_putc(json, ',');
            srv_buf_i64(json, v->dims[d]);
        }
        srv_buf_putc(json, ']');
        if (req->outputs[i].binary) {
            srv_buf_puts(json, ",\"parameters\":{\"binary_data_size\":");
            srv_buf_u64(json, srv_view_bytes(v));
            srv_buf_puts(json, "}}");
        } else {
            srv_buf_puts(json, ",\"data\":");
            put_data(json, v);
            srv_buf_putc(json, '}');
        }
    }
    srv_buf_puts(json, "]}");
    if (json->failed)
        return core_error(FERRY_ERR_NO_MEMORY, "the response is too large for JSON; ask for "
                                               "binary outputs (binary_data_output)");
    return NULL;
}

void srv_encode_error(srv_buf *json, const char *message)
{
    srv_buf_puts(json, "{\"error\":");
    srv_buf_json_string(json, message, strlen(message));
    srv_buf_putc(json, '}');
}
