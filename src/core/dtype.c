/* dtype.c - element type sizes, names and conversions. */
#include "core/dtype.h"

#include <math.h>

size_t ferry_dtype_size(ferry_dtype dt)
{
    switch (dt) {
    case FERRY_DTYPE_BOOL:
    case FERRY_DTYPE_UINT8:
    case FERRY_DTYPE_INT8:
        return 1;
    case FERRY_DTYPE_UINT16:
    case FERRY_DTYPE_INT16:
    case FERRY_DTYPE_FLOAT16:
    case FERRY_DTYPE_BFLOAT16:
        return 2;
    case FERRY_DTYPE_FLOAT:
    case FERRY_DTYPE_INT32:
    case FERRY_DTYPE_UINT32:
        return 4;
    case FERRY_DTYPE_INT64:
    case FERRY_DTYPE_UINT64:
    case FERRY_DTYPE_DOUBLE:
    case FERRY_DTYPE_COMPLEX64:
        return 8;
    case FERRY_DTYPE_STRING:
        return sizeof(char *);
    case FERRY_DTYPE_SEQUENCE:
    case FERRY_DTYPE_OPTIONAL:
        return sizeof(ferry_tensor_view);
    case FERRY_DTYPE_COMPLEX128:
        return 16;
    default:
        return 0;
    }
}

const char *ferry_dtype_name(ferry_dtype dt)
{
    static const char *const names[] = {
        [FERRY_DTYPE_UNDEFINED] = "undefined", [FERRY_DTYPE_FLOAT] = "float",
        [FERRY_DTYPE_UINT8] = "uint8",         [FERRY_DTYPE_INT8] = "int8",
        [FERRY_DTYPE_UINT16] = "uint16",       [FERRY_DTYPE_INT16] = "int16",
        [FERRY_DTYPE_INT32] = "int32",         [FERRY_DTYPE_INT64] = "int64",
        [FERRY_DTYPE_STRING] = "string",       [FERRY_DTYPE_BOOL] = "bool",
        [FERRY_DTYPE_FLOAT16] = "float16",     [FERRY_DTYPE_DOUBLE] = "double",
        [FERRY_DTYPE_UINT32] = "uint32",       [FERRY_DTYPE_UINT64] = "uint64",
        [FERRY_DTYPE_COMPLEX64] = "complex64", [FERRY_DTYPE_COMPLEX128] = "complex128",
        [FERRY_DTYPE_BFLOAT16] = "bfloat16",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) == FERRY_DTYPE_COUNT, "dtype names");
    if (dt == FERRY_DTYPE_SEQUENCE) return "sequence";
    if (dt == FERRY_DTYPE_OPTIONAL) return "optional";
    if ((unsigned)dt >= FERRY_DTYPE_COUNT) return "undefined";
    return names[dt];
}

bool core_dtype_is_flat(ferry_dtype dt)
{
    return ferry_dtype_size(dt) != 0;
}

bool core_dtype_is_float(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_FLOAT || dt == FERRY_DTYPE_DOUBLE || dt == FERRY_DTYPE_FLOAT16 ||
           dt == FERRY_DTYPE_BFLOAT16;
}

bool core_dtype_is_signed_int(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_INT8 || dt == FERRY_DTYPE_INT16 || dt == FERRY_DTYPE_INT32 ||
           dt == FERRY_DTYPE_INT64;
}

bool core_dtype_is_unsigned_int(ferry_dtype dt)
{
    return dt == FERRY_DTYPE_UINT8 || dt == FERRY_DTYPE_UINT16 || dt == FERRY_DTYPE_UINT32 ||
           dt == FERRY_DTYPE_UINT64;
}

float core_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

uint16_t core_float_to_half(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00);  /* NaN */
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow to inf */
    if (absu < 0x38800000u) {                                  /* subnormal or zero */
        float a;
        memcpy(&a, &absu, sizeof(a));
        /* Scale so that the subnormal unit is 1 and round to nearest even. */
        float scaled = a * 16777216.0f; /* 2^24 */
        uint32_t m = (uint32_t)nearbyintf(scaled);
        return (uint16_t)(sign | m);
    }
    uint32_t exp = (absu >> 23) - 127 + 15;
    uint32_t man = absu & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

double core_load_f64(ferry_dtype dt, const void *data, int64_t i)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT:
        return ((const float *)data)[i];
    case FERRY_DTYPE_DOUBLE:
        return ((const double *)data)[i];
    case FERRY_DTYPE_FLOAT16:
        return core_half_to_float(((const uint16_t *)data)[i]);
    case FERRY_DTYPE_BFLOAT16:
        return core_bf16_to_float(((const uint16_t *)data)[i]);
    case FERRY_DTYPE_UINT64:
        return (double)((const uint64_t *)data)[i];
    default:
        return (double)core_load_i64(dt, data, i);
    }
}

int64_t core_load_i64(ferry_dtype dt, const void *data, int64_t i)
{
    switch (dt) {
    case FERRY_DTYPE_BOOL:
        return ((const uint8_t *)data)[i] != 0;
    case FERRY_DTYPE_UINT8:
        return ((const uint8_t *)data)[i];
    case FERRY_DTYPE_INT8:
        return ((const int8_t *)data)[i];
    case FERRY_DTYPE_UINT16:
        return ((const uint16_t *)data)[i];
    case FERRY_DTYPE_INT16:
        return ((const int16_t *)data)[i];
    case FERRY_DTYPE_INT32:
        return ((const int32_t *)data)[i];
    case FERRY_DTYPE_UINT32:
        return ((const uint32_t *)data)[i];
    case FERRY_DTYPE_INT64:
        return ((const int64_t *)data)[i];
    case FERRY_DTYPE_UINT64:
        return (int64_t)((const uint64_t *)data)[i];
    default: {
        double d = core_load_f64(dt, data, i);
        if (d != d) return 0;
        if (d >= 9.2233720368547758e18) return INT64_MAX;
        if (d <= -9.2233720368547758e18) return INT64_MIN;
        return (int64_t)d;
    }
    }
}

void core_store_f64(ferry_dtype dt, void *data, int64_t i, double v)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT:
        ((float *)data)[i] = (float)v;
        break;
    case FERRY_DTYPE_DOUBLE:
        ((double *)data)[i] = v;
        break;
    case FERRY_DTYPE_FLOAT16:
        ((uint16_t *)data)[i] = core_float_to_half((float)v);
        break;
    case FERRY_DTYPE_BFLOAT16:
        ((uint16_t *)data)[i] = core_float_to_bf16((float)v);
        break;
    case FERRY_DTYPE_BOOL:
        ((uint8_t *)data)[i] = v != 0;
        break;
    default: {
        int64_t x;
        if (v != v)
            x = 0;
        else if (v >= 9.2233720368547758e18)
            x = INT64_MAX;
        else if (v <= -9.2233720368547758e18)
            x = INT64_MIN;
        else
            x = (int64_t)v;
        core_store_i64(dt, data, i, x);
    }
    }
}

void core_store_i64(ferry_dtype dt, void *data, int64_t i, int64_t v)
{
    switch (dt) {
    case FERRY_DTYPE_BOOL:
        ((uint8_t *)data)[i] = v != 0;
        break;
    case FERRY_DTYPE_UINT8:
        ((uint8_t *)data)[i] = (uint8_t)v;
        break;
    case FERRY_DTYPE_INT8:
        ((int8_t *)data)[i] = (int8_t)v;
        break;
    case FERRY_DTYPE_UINT16:
        ((uint16_t *)data)[i] = (uint16_t)v;
        break;
    case FERRY_DTYPE_INT16:
        ((int16_t *)data)[i] = (int16_t)v;
        break;
    case FERRY_DTYPE_INT32:
        ((int32_t *)data)[i] = (int32_t)v;
        break;
    case FERRY_DTYPE_UINT32:
        ((uint32_t *)data)[i] = (uint32_t)v;
        break;
    case FERRY_DTYPE_INT64:
        ((int64_t *)data)[i] = v;
        break;
    case FERRY_DTYPE_UINT64:
        ((uint64_t *)data)[i] = (uint64_t)v;
        break;
    default:
        core_store_f64(dt, data, i, (double)v);
        break;
    }
}
