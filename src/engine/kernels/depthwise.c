/* depthwise.c - 3x3 depthwise convolution of one plane with AVX-512.
 *
 * Outputs are computed 16 at a time along a row. For stride 1, tap (kh, kw) of outputs
 * [ow, ow + 16) is a masked load of input row oh + kh - ph at column ow + kw - pw: lanes that
 * fall outside the row are masked off and read as zero, so borders need no copy and no
 * branch. For stride 2 the 33 input columns a chunk needs are loaded as two pairs of vectors
 * (the second shifted by two) and split into even and odd lanes with one permute per tap.
 * Input rows outside the image are skipped. Bias and activation are applied in registers.
 */
#include "engine/kernels/depthwise.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_KERNELS 1
#include <immintrin.h>
#endif

static float act1(float x, const kern_epilogue *e)
{
    if (!e) return x;
    switch (e->act) {
    case KERN_ACT_RELU: return x < 0.0f ? 0.0f : x;
    case KERN_ACT_CLIP:
        x = x < e->a ? e->a : x;
        return x > e->b ? e->b : x;
    case KERN_ACT_LEAKY: return x < 0.0f ? e->a * x : x;
    default: return x;
    }
}

void kern_dw3x3_ref(const kern_dw_geom *g, const float *x, const float *w, float bias,
                    const kern_epilogue *act, float *y)
{
    for (int64_t oh = 0; oh < g->oh; oh++)
        for (int64_t ow = 0; ow < g->ow; ow++) {
            double s = bias;
            for (int64_t kh = 0; kh < 3; kh++)
                for (int64_t kw = 0; kw < 3; kw++) {
                    int64_t ih = oh * g->stride + kh - g->ph, iw = ow * g->stride + kw - g->pw;
                    if (ih >= 0 && ih < g->ih && iw >= 0 && iw < g->iw)
                        s += (double)w[kh * 3 + kw] * x[ih * g->iw + iw];
                }
            y[oh * g->ow + ow] = act1((float)s, act);
        }
}

#ifdef HAVE_X86_KERNELS

#define T512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma")))

static inline __attribute__((always_inline)) T512 __m512 act512(__m512 x, const kern_epilogue *e)
{
    if (!e) return x;
    switch (e->act) {
    case KERN_ACT_RELU: return _mm512_max_ps(_mm512_setzero_ps(), x);
    case KERN_ACT_CLIP:
        return _mm512_min_ps(_mm512_set1_ps(e->b), _mm512_max_ps(_mm512_set1_ps(e->a), x));
    case KERN_ACT_LEAKY: {
        __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
        return _mm512_mask_mul_ps(x, neg, x, _mm512_set1_ps(e->a));
    }
    default: return x;
    }
}

/* Lanes j of a 16-lane mask with LO <= start + j < HI. */
static inline __attribute__((always_inline)) __mmask16 range_mask(int64_t start, int64_t lo,
                                                                  int64_t hi)
{
    uint32_t m = 0xffff;
    if (start < lo) m &= lo - start >= 16 ? 0 : 0xffffu << (lo - start);
    if (start + 16 > hi) m &= hi - start <= 0 ? 0 : 0xffffu >> (16 - (hi - start));
    return (__mmask16)m;
}

/* Output rows computed together: four independent chains of nine FMAs hide the FMA latency,
 * and with stride 1 each input row is loaded once for the (up to three) outputs using it. */
#define ROWS 4

static T512 void dw3x3_s1(const kern_dw_geom *g, const float *x, const float *w, float bias,
                          const kern_epilogue *act, float *y)
{
    __m512 wv[9];
    for (int t = 0; t < 9; t++) wv[t] = _mm512_set1_ps(w[t]);
    __m512 vb = _mm512_set1_ps(bias);
    for (int64_t ow0 = 0; ow0 < g->ow; ow0 += 16) {
        __mmask16 out = range_mask(ow0, 0, g->ow);
        /* Input columns ow0 + kw - pw + lane, valid in [0, iw). */
        __mmask16 m0 = range_mask(ow0 - g->pw, 0, g->iw) & out;
        __mmask16 m1 = range_mask(ow0 + 1 - g->pw, 0, g->iw) & out;
        __mmask16 m2 = range_mask(ow0 + 2 - g->pw, 0, g->iw) & out;
        for (int64_t oh = 0; oh < g->oh; oh += ROWS) {
            __m512 acc[ROWS];
#pragma GCC unroll 4
            for (int i = 0; i < ROWS; i++) acc[i] = vb;
            /* Input rows oh - ph + j, j in [0, ROWS + 2): row j feeds output i with kh = j - i. */
#pragma GCC unroll 6
            for (int j = 0; j < ROWS + 2; j++) {
                int64_t ih = oh + j - g->ph;
                if (ih < 0 || ih >= g->ih) continue;
                const float *xr = x + ih * g->iw + ow0 - g->pw;
                __m512 v0 = _mm512_maskz_loadu_ps(m0, xr), v1 = _mm512_maskz_loadu_ps(m1, xr + 1);
                __m512 v2 = _mm512_maskz_loadu_ps(m2, xr + 2);
#pragma GCC unroll 4
                for (int i = 0; i < ROWS; i++) {
                    int kh = j - i;
                    if (kh < 0 || kh > 2) continue;
                    acc[i] = _mm512_fmadd_ps(wv[kh * 3], v0, acc[i]);
                    acc[i] = _mm512_fmadd_ps(wv[kh * 3 + 1], v1, acc[i]);
                    acc[i] = _mm512_fmadd_ps(wv[kh * 3 + 2], v2, acc[i]);
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < ROWS; i++)
                if (oh + i < g->oh)
                    _mm512_mask_storeu_ps(y + (oh + i) * g->ow + ow0, out, act512(acc[i], act));
        }
    }
}

static T512 void dw3x3_s2(const kern_dw_geom *g, const float *x, const float *w, float bias,
                          const kern_epilogue *act, float *y)
{
    __m512 wv[9];
    for (int t = 0; t < 9; t++) wv[t] = _mm512_set1_ps(w[t]);
    __m512 vb = _mm512_set1_ps(bias);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t ow0 = 0; ow0 < g->ow; ow0 += 16) {
        __mmask16 out = range_mask(ow0, 0, g->ow);
        /* Input columns c0 + [0, 34) with c0 = 2 * ow0 - pw, valid in [0, iw); columns past
         * those the chunk's outputs read are masked too, so nothing beyond is touched. */
        int64_t c0 = 2 * ow0 - g->pw;
        int64_t need = 2 * (ow0 + 16 > g->ow ? g->ow - ow0 : 16) + 1; /* columns used */
        int64_t hi = c0 + need < g->iw ? c0 + need : g->iw;
        __mmask16 ma = range_mask(c0, 0, hi), mb = range_mask(c0 + 16, 0, hi);
        __mmask16 mc = range_mask(c0 + 2, 0, hi), md = range_mask(c0 + 18, 0, hi);
        for (int64_t oh = 0; oh < g->oh; oh += ROWS) {
            __m512 acc[ROWS];
#pragma GCC unroll 4
            for (int i = 0; i < ROWS; i++) acc[i] = vb;
            /* Input rows 2 * oh - ph + j: row j feeds output i with kh = j - 2 * i. */
#pragma GCC unroll 9
            for (int j = 0; j < 2 * ROWS + 1; j++) {
                int64_t ih = 2 * oh + j - g->ph;
                if (ih < 0 || ih >= g->ih) continue;
                const float *xr = x + ih * g->iw + c0;
                __m512 a = _mm512_maskz_loadu_ps(ma, xr), b = _mm512_maskz_loadu_ps(mb, xr + 16);
                __m512 c = _mm512_maskz_loadu_ps(mc, xr + 2);
                __m512 d = _mm512_maskz_loadu_ps(md, xr + 18);
                __m512 v0 = _mm512_permutex2var_ps(a, even, b);
                __m512 v1 = _mm512_permutex2var_ps(a, odd, b);
                __m512 v2 = _mm512_permutex2var_ps(c, even, d);
#pragma GCC unroll 4
                for (int i = 0; i < ROWS; i++) {
                    int kh = j - 2 * i;
                    if (kh < 0 || kh > 2) continue;
                    acc[i] = _mm512_fmadd_ps(wv[kh * 3], v0, acc[i]);
                    acc[i] = _mm512_fmadd_ps(wv[kh * 3 + 1], v1, acc[i]);
                    acc[i] = _mm512_fmadd_ps(wv[kh * 3 + 2], v2, acc[i]);
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < ROWS; i++)
                if (oh + i < g->oh)
                    _mm512_mask_storeu_ps(y + (oh + i) * g->ow + ow0, out, act512(acc[i], act));
        }
    }
}

static bool have_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("fma");
}

#endif

bool kern_dw3x3_supported(kern_isa isa, const kern_dw_geom *g)
{
    if (g->stride != 1 && g->stride != 2) return false;
    if (isa == KERN_ISA_AUTO) isa = kern_isa_best();
#ifdef HAVE_X86_KERNELS
    return isa == KERN_ISA_AVX512 && have_avx512();
#else
    return false;
#endif
}

void kern_dw3x3(kern_isa isa, const kern_dw_geom *g, const float *x, const float *w, float bias,
                const kern_epilogue *act, float *y)
{
    (void)isa;
    if (act && act->act == KERN_ACT_NONE) act = NULL;
#ifdef HAVE_X86_KERNELS
    if (g->stride == 1)
        dw3x3_s1(g, x, w, bias, act, y);
    else
        dw3x3_s2(g, x, w, bias, act, y);
#else
    kern_dw3x3_ref(g, x, w, bias, act, y);
#endif
}
