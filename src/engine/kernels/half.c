/* half.c - bulk float16 <-> float32 conversion, element by element through core/dtype.h's
 * exact (round-to-nearest-even) conversions. */
#include "engine/kernels/half.h"

#include "core/dtype.h"

void kern_half_to_float(const uint16_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = core_half_to_float(src[i]);
}

void kern_float_to_half(const float *src, uint16_t *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = core_float_to_half(src[i]);
}
