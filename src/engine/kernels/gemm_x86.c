/* gemm_x86.c - SGEMM micro-kernels for x86-64 with AVX2+FMA and with AVX-512.
 *
 * Each kernel holds a tile of C in registers, and per step of K broadcasts one element of the
 * A panel per row and multiplies it with vectors loaded from the B panel:
 *   AVX-512  8 x 32 tile: 16 zmm accumulators, 2 B loads and 8 broadcasts per 16 FMAs;
 *   AVX2     6 x 16 tile: 12 ymm accumulators, 2 B loads and 6 broadcasts per 12 FMAs.
 * Both keep more independent accumulators than the FMA latency times the FMA ports needs, and
 * both reach the FMA peak of the core they run on (measured on Zen 4: 116 GFLOP/s single
 * thread either way, since Zen 4 splits a 512-bit FMA in two). AVX-512 still pays: column
 * masks make ragged tile edges free, and the 8-row tile matches channel counts better.
 * Thin products (one to four rows of A: a batch of one) get kernels that compute only those
 * rows, and every kernel has a twin reading A through row pointers and per-step offsets
 * (indirect A: Conv's input read in place). Functions are compiled for their instruction set with target attributes, so the file
 * builds with the baseline flags; gemm.c calls them only after checking the CPU.
 */
#include "engine/kernels/gemm_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_KERNELS 1
#include <immintrin.h>
#endif

#ifdef HAVE_X86_KERNELS

#define T512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma,avx2")))
#define T256 __attribute__((target("avx2,fma")))
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ------------------------------------------------------------------------------------------
 * AVX-512: MR 8, NR 32
 * ---------------------------------------------------------------------------------------- */

#define MR512 8
#define NR512 32

static ALWAYS_INLINE T512 __m512 act512(__m512 x, const kern_epilogue *e)
{
    /* max(bound, x) returns x when x is NaN: NaN stays NaN, as in the Relu and Clip ops. */
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

/* Writes accumulator rows C0[i], C1[i] (columns 0-15 and 16-31) of a tile. */
static ALWAYS_INLINE T512 void store512(int rows, __m512 *c0, __m512 *c1, float *c, int64_t ldc,
                                        int mr_, int nr_, float beta, const kern_epilogue *epi,
                                        int64_t i0, int64_t j0)
{
    __mmask16 m0 = nr_ >= 16 ? 0xffff : (__mmask16)((1u << nr_) - 1);
    __mmask16 m1 = nr_ >= 32 ? 0xffff : nr_ > 16 ? (__mmask16)((1u << (nr_ - 16)) - 1) : 0;
    __m512 cb0 = _mm512_setzero_ps(), cb1 = _mm512_setzero_ps();
    if (epi && epi->col_bias) {
        cb0 = _mm512_maskz_loadu_ps(m0, epi->col_bias + j0);
        cb1 = _mm512_maskz_loadu_ps(m1, epi->col_bias + j0 + 16);
    }
    __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) {
        if (i >= mr_) break;
        float *cr = c + i * ldc;
        __m512 x0 = c0[i], x1 = c1[i];
        if (beta != 0.0f) {
            __m512 y0 = _mm512_maskz_loadu_ps(m0, cr), y1 = _mm512_maskz_loadu_ps(m1, cr + 16);
            if (beta == 1.0f) {
                x0 = _mm512_add_ps(x0, y0);
                x1 = _mm512_add_ps(x1, y1);
            } else {
                x0 = _mm512_fmadd_ps(vb, y0, x0);
                x1 = _mm512_fmadd_ps(vb, y1, x1);
            }
        }
        if (epi) {
            if (epi->row_bias) {
                __m512 rb = _mm512_set1_ps(epi->row_bias[i0 + i]);
                x0 = _mm512_add_ps(x0, rb);
                x1 = _mm512_add_ps(x1, rb);
            }
            x0 = _mm512_add_ps(x0, cb0);
            x1 = _mm512_add_ps(x1, cb1);
            if (epi->residual) {
                const float *rr = epi->residual + (i0 + i) * epi->ldr + j0;
                x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(m0, rr));
                x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(m1, rr + 16));
            }
            x0 = act512(x0, epi);
            x1 = act512(x1, epi);
        }
        _mm512_mask_storeu_ps(cr, m0, x0);
        _mm512_mask_storeu_ps(cr + 16, m1, x1);
    }
}

/* A kernel computing R rows of the tile (R <= MR512); the A panel keeps its MR512 stride. */
#define MICRO512(NAME, R)                                                                     \
    static T512 void NAME(int64_t kc, const float *pa, const float *pb, int64_t ldb,          \
                          float *c, int64_t ldc, int mr_, int nr_, float beta,                \
                          const kern_epilogue *epi, int64_t i0, int64_t j0)                   \
    {                                                                                         \
        __m512 c0[R], c1[R];                                                                  \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) c0[i] = c1[i] =                   \
            _mm512_setzero_ps();                                                              \
        for (int64_t p = 0; p < kc; p++) {                                                    \
            __m512 b0 = _mm512_loadu_ps(pb), b1 = _mm512_loadu_ps(pb + 16);                   \
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)                               \
            {                                                                                 \
                __m512 a = _mm512_set1_ps(pa[i]);                                             \
                c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);                                        \
                c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);                                        \
            }                                                                                 \
            pa += MR512;                                                                      \
            pb += ldb;                                                                        \
        }                                                                                     \
        store512(R, c0, c1, c, ldc, mr_, nr_, beta, epi, i0, j0);                             \
    }

MICRO512(micro512_8, 8)
MICRO512(micro512_4, 4)
MICRO512(micro512_2, 2)

/* One row: two accumulator pairs over alternate steps, so that four FMA chains hide the
 * latency instead of two. */
static T512 void micro512_1(int64_t kc, const float *pa, const float *pb, int64_t ldb, float *c,
                            int64_t ldc, int mr_, int nr_, float beta, const kern_epilogue *epi,
                            int64_t i0, int64_t j0)
{
    __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps();
    __m512 d0 = _mm512_setzero_ps(), d1 = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 2 <= kc; p += 2) {
        __m512 a = _mm512_set1_ps(pa[0]), e = _mm512_set1_ps(pa[MR512]);
        c0 = _mm512_fmadd_ps(a, _mm512_loadu_ps(pb), c0);
        c1 = _mm512_fmadd_ps(a, _mm512_loadu_ps(pb + 16), c1);
        d0 = _mm512_fmadd_ps(e, _mm512_loadu_ps(pb + ldb), d0);
        d1 = _mm512_fmadd_ps(e, _mm512_loadu_ps(pb + ldb + 16), d1);
        pa += 2 * MR512;
        pb += 2 * ldb;
    }
    if (p < kc) {
        __m512 a = _mm512_set1_ps(pa[0]);
        c0 = _mm512_fmadd_ps(a, _mm512_loadu_ps(pb), c0);
        c1 = _mm512_fmadd_ps(a, _mm512_loadu_ps(pb + 16), c1);
    }
    c0 = _mm512_add_ps(c0, d0);
    c1 = _mm512_add_ps(c1, d1);
    store512(1, &c0, &c1, c, ldc, mr_, nr_, beta, epi, i0, j0);
}

/* Indirect A: each row of the tile reads its own row pointer at the step's offset, so a
 * convolution's input is read in place, with no im2col copy. R rows (the last, ragged panel of
 * positions takes a kernel with fewer rows rather than computing padding). */
#define MICRO512_IND(NAME, R)                                                                 \
    static T512 void NAME(int64_t kc, const float *const *rows, const int64_t *off,          \
                          const float *pb, int64_t ldb, float *c, int64_t ldc, int mr_,       \
                          int nr_, float beta, const kern_epilogue *epi, int64_t i0,          \
                          int64_t j0)                                                         \
    {                                                                                         \
        const float *r[R];                                                                    \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) r[i] = rows[i];                   \
        __m512 c0[R], c1[R];                                                                  \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) c0[i] = c1[i] =                   \
            _mm512_setzero_ps();                                                              \
        for (int64_t p = 0; p < kc; p++) {                                                    \
            int64_t o = off[p];                                                               \
            __m512 b0 = _mm512_loadu_ps(pb), b1 = _mm512_loadu_ps(pb + 16);                   \
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)                               \
            {                                                                                 \
                __m512 a = _mm512_set1_ps(r[i][o]);                                           \
                c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);                                        \
                c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);                                        \
            }                                                                                 \
            pb += ldb;                                                                        \
        }                                                                                     \
        store512(R, c0, c1, c, ldc, mr_, nr_, beta, epi, i0, j0);                             \
    }

MICRO512_IND(micro512_ind, 8)
MICRO512_IND(micro512_ind4, 4)
MICRO512_IND(micro512_ind2, 2)
MICRO512_IND(micro512_ind1, 1)

/* ------------------------------------------------------------------------------------------
 * AVX2: MR 6, NR 16
 * ---------------------------------------------------------------------------------------- */

#define MR256 6
#define NR256 16

static ALWAYS_INLINE T256 __m256 act256(__m256 x, const kern_epilogue *e)
{
    switch (e->act) {
    case KERN_ACT_RELU: return _mm256_max_ps(_mm256_setzero_ps(), x);
    case KERN_ACT_CLIP:
        return _mm256_min_ps(_mm256_set1_ps(e->b), _mm256_max_ps(_mm256_set1_ps(e->a), x));
    case KERN_ACT_LEAKY: {
        __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
        return _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(e->a)), neg);
    }
    default: return x;
    }
}

/* Lanes [0, n) of a 256-bit mask set (n clamped to [0, 8]). */
static ALWAYS_INLINE T256 __m256i mask256(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static ALWAYS_INLINE T256 void store256(int rows, __m256 *c0, __m256 *c1, float *c, int64_t ldc,
                                        int mr_, int nr_, float beta, const kern_epilogue *epi,
                                        int64_t i0, int64_t j0)
{
    bool full = nr_ >= 16;
    __m256i m0 = mask256(nr_), m1 = mask256(nr_ - 8);
    __m256 cb0 = _mm256_setzero_ps(), cb1 = _mm256_setzero_ps();
    if (epi && epi->col_bias) {
        cb0 = _mm256_maskload_ps(epi->col_bias + j0, m0);
        cb1 = _mm256_maskload_ps(epi->col_bias + j0 + 8, m1);
    }
    __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) {
        if (i >= mr_) break;
        float *cr = c + i * ldc;
        __m256 x0 = c0[i], x1 = c1[i];
        if (beta != 0.0f) {
            __m256 y0 = full ? _mm256_loadu_ps(cr) : _mm256_maskload_ps(cr, m0);
            __m256 y1 = full ? _mm256_loadu_ps(cr + 8) : _mm256_maskload_ps(cr + 8, m1);
            if (beta == 1.0f) {
                x0 = _mm256_add_ps(x0, y0);
                x1 = _mm256_add_ps(x1, y1);
            } else {
                x0 = _mm256_fmadd_ps(vb, y0, x0);
                x1 = _mm256_fmadd_ps(vb, y1, x1);
            }
        }
        if (epi) {
            if (epi->row_bias) {
                __m256 rb = _mm256_set1_ps(epi->row_bias[i0 + i]);
                x0 = _mm256_add_ps(x0, rb);
                x1 = _mm256_add_ps(x1, rb);
            }
            x0 = _mm256_add_ps(x0, cb0);
            x1 = _mm256_add_ps(x1, cb1);
            if (epi->residual) {
                const float *rr = epi->residual + (i0 + i) * epi->ldr + j0;
                x0 = _mm256_add_ps(x0, _mm256_maskload_ps(rr, m0));
                x1 = _mm256_add_ps(x1, _mm256_maskload_ps(rr + 8, m1));
            }
            x0 = act256(x0, epi);
            x1 = act256(x1, epi);
        }
        if (full) {
            _mm256_storeu_ps(cr, x0);
            _mm256_storeu_ps(cr + 8, x1);
        } else {
            _mm256_maskstore_ps(cr, m0, x0);
            _mm256_maskstore_ps(cr + 8, m1, x1);
        }
    }
}

#define MICRO256(NAME, R)                                                                     \
    static T256 void NAME(int64_t kc, const float *pa, const float *pb, int64_t ldb,          \
                          float *c, int64_t ldc, int mr_, int nr_, float beta,                \
                          const kern_epilogue *epi, int64_t i0, int64_t j0)                   \
    {                                                                                         \
        __m256 c0[R], c1[R];                                                                  \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) c0[i] = c1[i] =                   \
            _mm256_setzero_ps();                                                              \
        for (int64_t p = 0; p < kc; p++) {                                                    \
            __m256 b0 = _mm256_loadu_ps(pb), b1 = _mm256_loadu_ps(pb + 8);                    \
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)                               \
            {                                                                                 \
                __m256 a = _mm256_broadcast_ss(pa + i);                                       \
                c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);                                        \
                c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);                                        \
            }                                                                                 \
            pa += MR256;                                                                      \
            pb += ldb;                                                                        \
        }                                                                                     \
        store256(R, c0, c1, c, ldc, mr_, nr_, beta, epi, i0, j0);                             \
    }

MICRO256(micro256_6, 6)
MICRO256(micro256_4, 4)
MICRO256(micro256_2, 2)

static T256 void micro256_1(int64_t kc, const float *pa, const float *pb, int64_t ldb, float *c,
                            int64_t ldc, int mr_, int nr_, float beta, const kern_epilogue *epi,
                            int64_t i0, int64_t j0)
{
    __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
    __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 2 <= kc; p += 2) {
        __m256 a = _mm256_broadcast_ss(pa), e = _mm256_broadcast_ss(pa + MR256);
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(pb), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(pb + 8), c1);
        d0 = _mm256_fmadd_ps(e, _mm256_loadu_ps(pb + ldb), d0);
        d1 = _mm256_fmadd_ps(e, _mm256_loadu_ps(pb + ldb + 8), d1);
        pa += 2 * MR256;
        pb += 2 * ldb;
    }
    if (p < kc) {
        __m256 a = _mm256_broadcast_ss(pa);
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(pb), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(pb + 8), c1);
    }
    c0 = _mm256_add_ps(c0, d0);
    c1 = _mm256_add_ps(c1, d1);
    store256(1, &c0, &c1, c, ldc, mr_, nr_, beta, epi, i0, j0);
}

static T256 void micro256_ind(int64_t kc, const float *const *rows, const int64_t *off,
                              const float *pb, int64_t ldb, float *c, int64_t ldc, int mr_,
                              int nr_, float beta, const kern_epilogue *epi, int64_t i0,
                              int64_t j0)
{
    const float *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
    const float *r3 = rows[3], *r4 = rows[4], *r5 = rows[5];
    __m256 c0[MR256], c1[MR256];
#pragma GCC unroll 8
    for (int i = 0; i < MR256; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        int64_t o = off[p];
        __m256 b0 = _mm256_loadu_ps(pb), b1 = _mm256_loadu_ps(pb + 8);
        float av[MR256] = {r0[o], r1[o], r2[o], r3[o], r4[o], r5[o]};
#pragma GCC unroll 8
        for (int i = 0; i < MR256; i++) {
            __m256 a = _mm256_set1_ps(av[i]);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
        pb += ldb;
    }
    store256(MR256, c0, c1, c, ldc, mr_, nr_, beta, epi, i0, j0);
}

/* ------------------------------------------------------------------------------------------
 * Descriptors
 * ---------------------------------------------------------------------------------------- */

static const kern_gemm_isa isa512 = {
    .id = KERN_ISA_AVX512, .mr = MR512, .nr = NR512, .kc = 256, .nc = 256, .mc = 128,
    .micro = micro512_8, .micro_small = {micro512_1, micro512_2, micro512_4, NULL},
    .micro_ind = micro512_ind,
    .micro_ind_small = {micro512_ind1, micro512_ind2, micro512_ind4, NULL},
};

static const kern_gemm_isa isa256 = {
    .id = KERN_ISA_AVX2, .mr = MR256, .nr = NR256, .kc = 256, .nc = 256, .mc = 120,
    .micro = micro256_6, .micro_small = {micro256_1, micro256_2, micro256_4, NULL},
    .micro_ind = micro256_ind,
};

const kern_gemm_isa *kern_gemm_isa_avx512(void)
{
    __builtin_cpu_init();
    bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
              __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("fma");
    return ok ? &isa512 : NULL;
}

const kern_gemm_isa *kern_gemm_isa_avx2(void)
{
    __builtin_cpu_init();
    bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return ok ? &isa256 : NULL;
}

#else

const kern_gemm_isa *kern_gemm_isa_avx512(void)
{
    return NULL;
}

const kern_gemm_isa *kern_gemm_isa_avx2(void)
{
    return NULL;
}

#endif
