/* elementwise_vec.h - what lets GCC vectorise elementwise kernels at -O2.
 *
 * GCC's -O2 cost model only vectorises loops whose trip count needs no scalar epilogue and
 * whose body has no branches; EW_VLOOP supplies the first, and the functions below the second:
 * exp, sigmoid, tanh, erf and the float16/bfloat16 conversions written with arithmetic,
 * comparisons and bit selects only (libm's expf/tanhf/erff are calls, which stop
 * vectorisation, and these sit on the hot path of transformers: GELU's Erf, SiLU's Sigmoid).
 * Accuracy over all float inputs (checked against double libm on every 7th float): exp within
 * 1 ulp, tanh within 1.5 ulp, erf and sigmoid within 3 ulp; infinities and NaN behave as in
 * libm. The conversions match core/dtype.h's bit for bit (checked on every input).
 */
#ifndef ENGINE_OPS_ELEMENTWISE_VEC_H
#define ENGINE_OPS_ELEMENTWISE_VEC_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Loops I over [0, N) storing EXPR (a function of i) into O[i]. The chunks of EW_CHUNK have a
 * constant trip count, which -O2 vectorises; going through the local t_ keeps the loop correct
 * when O is the same buffer as an input (the planner may run an operator in place). */
#define EW_CHUNK 16
#define EW_VLOOP(T, O, N, EXPR)                                                                    \
    do {                                                                                           \
        int64_t i_ = 0;                                                                            \
        for (; i_ + EW_CHUNK <= (N); i_ += EW_CHUNK) {                                             \
            T t_[EW_CHUNK];                                                                        \
            for (int j_ = 0; j_ < EW_CHUNK; j_++) {                                                \
                int64_t i = i_ + j_;                                                               \
                t_[j_] = (EXPR);                                                                   \
            }                                                                                      \
            memcpy((O) + i_, t_, sizeof(t_));                                                      \
        }                                                                                          \
        for (; i_ < (N); i_++) {                                                                   \
            int64_t i = i_;                                                                        \
            (O)[i] = (EXPR);                                                                       \
        }                                                                                          \
    } while (0)

static inline uint32_t ew_f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static inline float ew_u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* C ? A : B as bit operations. GCC sinks the arithmetic of a plain ?: into branches (it cannot
 * speculate operations that might trap), and branches stop vectorisation. */
static inline float ew_sel(int c, float a, float b)
{
    uint32_t m = 0u - (uint32_t)(c != 0);
    return ew_u2f((ew_f2u(a) & m) | (ew_f2u(b) & ~m));
}

/* C ? A : B on bit patterns. */
static inline uint32_t ew_selu(int c, uint32_t a, uint32_t b)
{
    uint32_t m = 0u - (uint32_t)(c != 0);
    return (a & m) | (b & ~m);
}

/* float16 -> float, exact; the same results as core_half_to_float() without its branches. */
static inline float ew_half_to_float(uint16_t h)
{
    uint32_t o = ((uint32_t)h & 0x7fffu) << 13;
    uint32_t e = o & 0x0f800000u;
    o += 0x38000000u; /* rebias the exponent from 15 to 127 */
    /* Inf/NaN: push the exponent to 255. */
    o = ew_selu(e == 0x0f800000u, o + 0x38000000u, o);
    /* Zero and subnormals: renormalise by letting the FPU subtract 2^-14. */
    float sub = ew_u2f(o + 0x00800000u) - ew_u2f(0x38800000u);
    o = ew_selu(e == 0, ew_f2u(sub), o);
    return ew_u2f(o | (((uint32_t)h & 0x8000u) << 16));
}

/* float -> float16 rounding to nearest even; NaN becomes a quiet NaN and overflow infinity, as
 * core_float_to_half() does. */
static inline uint16_t ew_float_to_half(float f)
{
    uint32_t u = ew_f2u(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    uint32_t special = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
    /* Subnormal results: adding 0.5 aligns the 10 result bits at the bottom of the mantissa
     * and the FPU rounds to nearest even. */
    uint32_t sub = ew_f2u(ew_u2f(u) + 0.5f) - 0x3f000000u;
    /* Normal results: rebias, round to nearest even on the 13 dropped bits. */
    uint32_t norm = (u + 0xc8000fffu + ((u >> 13) & 1u)) >> 13;
    uint32_t r = ew_selu(u < 0x38800000u, sub, norm);
    r = ew_selu(u >= 0x47800000u, special, r);
    return (uint16_t)(r | sign);
}

/* float -> bfloat16 rounding to nearest even; core_float_to_bf16() without the branch. */
static inline uint16_t ew_float_to_bf16(float f)
{
    uint32_t u = ew_f2u(f);
    uint32_t nan = (u >> 16) | 0x40u;
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)ew_selu((u & 0x7fffffffu) > 0x7f800000u, nan, r);
}

/* exp(x): Cephes' reduction x = n*ln2 + r with a degree-6 polynomial for exp(r). The scale
 * 2^n is applied in two halves so that results down in the subnormal range and up to overflow
 * come out right without a branch. */
static inline float ew_expf(float x)
{
    /* Clamp, which also turns NaN into -104 to keep it out of the integer arithmetic; NaN is
     * restored at the end. */
    float xc = ew_sel(x > -104.0f, x, -104.0f);
    xc = ew_sel(xc < 89.0f, xc, 89.0f);
    /* Adding 1.5*2^23 rounds to an integer and leaves it in the low mantissa bits. */
    float t = xc * 1.44269504088896341f + 12582912.0f;
    int32_t n = (int32_t)(ew_f2u(t) - 0x4b400000u);
    float fn = t - 12582912.0f;
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t n1 = n / 2, n2 = n - n1;
    float res = p * ew_u2f((uint32_t)(n1 + 127) << 23) * ew_u2f((uint32_t)(n2 + 127) << 23);
    return ew_sel(x != x, x, res);
}

/* sigmoid(x) with e = exp(-|x|): 1/(1+e) for x >= 0 and e/(1+e) below, so that large negative
 * inputs keep their tiny results instead of dividing by an overflowed exp. */
static inline float ew_sigmoidf(float x)
{
    float e = ew_expf(-fabsf(x));
    float r = 1.0f / (1.0f + e);
    return ew_sel(x >= 0.0f, r, e * r);
}

/* tanh(x): Cephes' odd polynomial below 0.625, 1 - 2/(exp(2|x|)+1) above. */
static inline float ew_tanhf(float x)
{
    float ax = fabsf(x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    float big = 1.0f - 2.0f / (ew_expf(2.0f * ax) + 1.0f);
    big = ew_sel(x < 0.0f, -big, big);
    return ew_sel(ax < 0.625f, small, big);
}

/* erf(x): x*P(x^2) below 1; above, 1 - exp(-x^2)*Q(t) with t = 1/(1 + |x|/2), where Q fits
 * erfc(x)*exp(x^2) to 3e-8 (coefficients from a weighted least-squares fit). Beyond 3.925
 * erf rounds to 1 in float. */
static inline float ew_erff(float x)
{
    float ax = fabsf(x);
    float z = x * x;
    float p = -5.632261164e-04f;
    p = p * z + 4.917783197e-03f;
    p = p * z - 2.671154402e-02f;
    p = p * z + 1.128019020e-01f;
    p = p * z - 3.761232793e-01f;
    p = p * z + 1.128379107e+00f;
    float small = p * x;
    float t = 1.0f / (1.0f + 0.5f * ax);
    float q = 1.194837764e-01f;
    q = q * t - 4.717985988e-01f;
    q = q * t + 5.643373132e-01f;
    q = q * t - 1.046233699e-01f;
    q = q * t + 3.483564258e-01f;
    q = q * t + 2.595115304e-01f;
    q = q * t + 2.849428058e-01f;
    q = q * t - 1.563621190e-04f;
    float big = 1.0f - ew_expf(-z) * q;
    big = ew_sel(ax >= 3.925f, 1.0f, big);
    big = ew_sel(x < 0.0f, -big, big);
    return ew_sel(ax < 1.0f, small, big);
}

#endif
