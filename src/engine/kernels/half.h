/* half.h - bulk float16 <-> float32 conversion for operators that compute float16 in float32. */
#ifndef ENGINE_KERNELS_HALF_H
#define ENGINE_KERNELS_HALF_H

#include <stdint.h>

void kern_half_to_float(const uint16_t *src, float *dst, int64_t n);
void kern_float_to_half(const float *src, uint16_t *dst, int64_t n);

#endif
