/* dtype.h - element type helpers and float16/bfloat16 conversions. */
#ifndef CORE_DTYPE_H
#define CORE_DTYPE_H

#include "ferry.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* True for the types Ferry stores as flat little-endian buffers. */
bool core_dtype_is_flat(ferry_dtype dt);
bool core_dtype_is_float(ferry_dtype dt); /* float, double, float16, bfloat16 */
bool core_dtype_is_signed_int(ferry_dtype dt);
bool core_dtype_is_unsigned_int(ferry_dtype dt);

float core_half_to_float(uint16_t h);
uint16_t core_float_to_half(float f);

static inline float core_bf16_to_float(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* Round to nearest even, as ONNX's reference does; NaN stays NaN. */
static inline uint16_t core_float_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Reads element I of a flat buffer of type DT as double / int64; used by generic slow paths
 * (shape arithmetic, casts, printing), never by hot kernels. */
double core_load_f64(ferry_dtype dt, const void *data, int64_t i);
int64_t core_load_i64(ferry_dtype dt, const void *data, int64_t i);
void core_store_f64(ferry_dtype dt, void *data, int64_t i, double v);
void core_store_i64(ferry_dtype dt, void *data, int64_t i, int64_t v);

#endif
