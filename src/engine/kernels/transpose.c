/* transpose.c - float32 transposition in 8 x 8 register blocks (AVX2), or element by element. */
#include "engine/kernels/transpose.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_TRANSPOSE 1
#include <immintrin.h>
#endif

static void transpose_plain(const float *restrict x, int64_t ldx, float *restrict y, int64_t ldy,
                            int64_t rows, int64_t cols)
{
    for (int64_t j = 0; j < cols; j++)
        for (int64_t i = 0; i < rows; i++) y[j * ldy + i] = x[i * ldx + j];
}

#ifdef HAVE_X86_TRANSPOSE
#define T256 __attribute__((target("avx2,fma")))

/* Rows I..I+7 of X (columns J..J+7) become rows J..J+7 of Y. */
static inline T256 void block8(const float *x, int64_t ldx, float *y, int64_t ldy)
{
    __m256 r0 = _mm256_loadu_ps(x), r1 = _mm256_loadu_ps(x + ldx);
    __m256 r2 = _mm256_loadu_ps(x + 2 * ldx), r3 = _mm256_loadu_ps(x + 3 * ldx);
    __m256 r4 = _mm256_loadu_ps(x + 4 * ldx), r5 = _mm256_loadu_ps(x + 5 * ldx);
    __m256 r6 = _mm256_loadu_ps(x + 6 * ldx), r7 = _mm256_loadu_ps(x + 7 * ldx);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    _mm256_storeu_ps(y, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(y + ldy, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(y + 2 * ldy, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(y + 3 * ldy, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(y + 4 * ldy, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(y + 5 * ldy, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(y + 6 * ldy, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(y + 7 * ldy, _mm256_permute2f128_ps(u3, u7, 0x31));
}

static T256 void transpose_avx2(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                                int64_t cols)
{
    int64_t r8 = rows & ~(int64_t)7, c8 = cols & ~(int64_t)7;
    for (int64_t i = 0; i < r8; i += 8)
        for (int64_t j = 0; j < c8; j += 8) block8(x + i * ldx + j, ldx, y + j * ldy + i, ldy);
    /* The ragged edges: the last columns of every row, then the last rows. */
    if (c8 < cols) transpose_plain(x + c8, ldx, y + c8 * ldy, ldy, rows, cols - c8);
    if (r8 < rows) transpose_plain(x + r8 * ldx, ldx, y + r8, ldy, rows - r8, c8);
}
#endif

void kern_transpose(kern_isa isa, const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                    int64_t cols)
{
    if (isa == KERN_ISA_AUTO) isa = kern_isa_best();
#ifdef HAVE_X86_TRANSPOSE
    if (isa == KERN_ISA_AVX2 || isa == KERN_ISA_AVX512) {
        transpose_avx2(x, ldx, y, ldy, rows, cols);
        return;
    }
#endif
    transpose_plain(x, ldx, y, ldy, rows, cols);
}
