/* gemm.c - matrix multiplication in portable C.
 *
 * kern_sgemm follows the usual GotoBLAS/BLIS structure: C is computed in NC-wide column blocks;
 * each KC-deep slice of op(B) is packed into NR-wide panels (kept in L2/L3), each MC x KC block
 * of op(A) into MR-tall panels (kept in L2), and a micro-kernel multiplies one A panel by one
 * B panel into an MR x NR tile of C held in registers. The micro-kernel uses GCC vector
 * extensions (not intrinsics) so it compiles everywhere; on x86-64 a copy built for AVX2+FMA
 * is picked at load time when the CPU has them (KERN_CLONES).
 */
#include "engine/kernels/gemm.h"

#include "engine/kernels/simd.h"

#include <string.h>

KERN_FAST_LOOPS

#define MR 6    /* rows of the register tile: 6 x 2 vectors = 12 accumulators */
#define NR 16   /* columns of the register tile: two 8-float vectors */
#define MC 144  /* rows of a packed A block: MC x KC floats stay in L2 */
#define KC 256  /* depth of packed panels: one KC x NR B panel stays in L1 */
#define NC 2048 /* columns of a packed B block: KC x NC floats stay in L2/L3 */

/* Below this many rows packing costs more than it saves: rows go straight through. */
#define DIRECT_MAX_M 4

typedef float vf8 __attribute__((vector_size(32)));

static inline int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static inline int64_t round_up(int64_t x, int64_t m)
{
    return (x + m - 1) / m * m;
}

static bool use_direct(int64_t m, int64_t n, int64_t k)
{
    return m < DIRECT_MAX_M || n == 1 || k == 1;
}

size_t kern_sgemm_workspace(int64_t m, int64_t n, int64_t k)
{
    if (m <= 0 || n <= 0 || k <= 0 || use_direct(m, n, k)) return 0;
    int64_t kc = min64(KC, k);
    int64_t mc = min64(MC, round_up(m, MR));
    int64_t nc = min64(NC, round_up(n, NR));
    return (size_t)(kc * mc + kc * nc) * sizeof(float) + 64;
}

/* C *= BETA, writing zeros when BETA is 0 so that garbage in C never leaks through. */
static KERN_INLINE void scale_c(float *c, int64_t m, int64_t n, int64_t ldc, float beta)
{
    for (int64_t i = 0; i < m; i++) {
        float *row = c + i * ldc;
        if (beta == 0.0f)
            memset(row, 0, (size_t)n * sizeof(float));
        else if (beta != 1.0f)
            for (int64_t j = 0; j < n; j++) row[j] *= beta;
    }
}

/* Small M (a batch of one, gemv), N == 1 or K == 1: loops without packing. */
KERN_CLONES static void sgemm_direct(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                         float beta, float *c, int64_t ldc)
{
    scale_c(c, m, n, ldc, beta);
    for (int64_t i = 0; i < m; i++) {
        float *restrict crow = c + i * ldc;
        if (!trans_b) {
            /* c_i += sum_p a_ip * b_p: contiguous rows of B, vectorises as axpy. */
            for (int64_t p = 0; p < k; p++) {
                float s = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
                const float *restrict brow = b + p * ldb;
                for (int64_t j = 0; j < n; j++) crow[j] += s * brow[j];
            }
        } else {
            /* c_ij += a_i . b_j with eight partial sums so the dot product vectorises. */
            for (int64_t j = 0; j < n; j++) {
                const float *restrict bcol = b + j * ldb;
                float part[8] = {0};
                int64_t p = 0;
                if (!trans_a) {
                    const float *restrict arow = a + i * lda;
                    for (; p + 8 <= k; p += 8)
                        for (int q = 0; q < 8; q++) part[q] += arow[p + q] * bcol[p + q];
                    for (; p < k; p++) part[0] += arow[p] * bcol[p];
                } else {
                    for (; p < k; p++) part[p & 7] += a[p * lda + i] * bcol[p];
                }
                float s = ((part[0] + part[1]) + (part[2] + part[3])) +
                          ((part[4] + part[5]) + (part[6] + part[7]));
                crow[j] += alpha * s;
            }
        }
    }
}

/* Packs rows [I0, I0+MC) x columns [P0, P0+KC) of op(A), times ALPHA, into MR-row panels:
 * panel r holds element (i, p) at p * MR + i; rows past M are zero. */
static KERN_INLINE void pack_a(bool trans, const float *a, int64_t lda, int64_t i0,
                                 int64_t mc, int64_t p0, int64_t kc, float alpha,
                                 float *restrict pa)
{
    for (int64_t ir = 0; ir < mc; ir += MR) {
        int64_t mr = min64(MR, mc - ir);
        if (!trans) {
            for (int64_t i = 0; i < mr; i++) {
                const float *src = a + (i0 + ir + i) * lda + p0;
                for (int64_t p = 0; p < kc; p++) pa[p * MR + i] = alpha * src[p];
            }
        } else {
            for (int64_t p = 0; p < kc; p++) {
                const float *src = a + (p0 + p) * lda + i0 + ir;
                for (int64_t i = 0; i < mr; i++) pa[p * MR + i] = alpha * src[i];
            }
        }
        for (int64_t i = mr; i < MR; i++)
            for (int64_t p = 0; p < kc; p++) pa[p * MR + i] = 0.0f;
        pa += kc * MR;
    }
}

/* Packs rows [P0, P0+KC) x columns [J0, J0+NC) of op(B) into NR-column panels: panel holds
 * element (p, j) at p * NR + j; columns past N are zero. */
static KERN_INLINE void pack_b(bool trans, const float *b, int64_t ldb, int64_t p0,
                                 int64_t kc, int64_t j0, int64_t nc, float *restrict pb)
{
    for (int64_t jr = 0; jr < nc; jr += NR) {
        int64_t nr = min64(NR, nc - jr);
        if (!trans) {
            for (int64_t p = 0; p < kc; p++) {
                const float *src = b + (p0 + p) * ldb + j0 + jr;
                float *dst = pb + p * NR;
                if (nr == NR) {
                    memcpy(dst, src, NR * sizeof(float));
                } else {
                    for (int64_t j = 0; j < nr; j++) dst[j] = src[j];
                    for (int64_t j = nr; j < NR; j++) dst[j] = 0.0f;
                }
            }
        } else {
            for (int64_t j = 0; j < nr; j++) {
                const float *src = b + (j0 + jr + j) * ldb + p0;
                for (int64_t p = 0; p < kc; p++) pb[p * NR + j] = src[p];
            }
            for (int64_t j = nr; j < NR; j++)
                for (int64_t p = 0; p < kc; p++) pb[p * NR + j] = 0.0f;
        }
        pb += kc * NR;
    }
}

static KERN_INLINE void store_row(float *restrict c, const vf8 *acc, float beta)
{
    vf8 lo = acc[0], hi = acc[1];
    if (beta != 0.0f) {
        vf8 c0, c1;
        memcpy(&c0, c, sizeof(c0));
        memcpy(&c1, c + 8, sizeof(c1));
        if (beta == 1.0f) {
            lo += c0;
            hi += c1;
        } else {
            lo += beta * c0;
            hi += beta * c1;
        }
    }
    memcpy(c, &lo, sizeof(lo));
    memcpy(c + 8, &hi, sizeof(hi));
}

/* C[0:MR_, 0:NR_] = A panel x B panel + beta * C. The accumulators are named variables so that
 * GCC keeps all twelve in registers. */
static KERN_INLINE void micro_kernel(int64_t kc, const float *restrict pa,
                                       const float *restrict pb, float *restrict c, int64_t ldc,
                                       float beta, int64_t mr, int64_t nr)
{
    vf8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    vf8 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (int64_t p = 0; p < kc; p++) {
        vf8 b0, b1;
        memcpy(&b0, pb, sizeof(b0));
        memcpy(&b1, pb + 8, sizeof(b1));
        float a0 = pa[0], a1 = pa[1], a2 = pa[2], a3 = pa[3], a4 = pa[4], a5 = pa[5];
        c00 += a0 * b0;
        c01 += a0 * b1;
        c10 += a1 * b0;
        c11 += a1 * b1;
        c20 += a2 * b0;
        c21 += a2 * b1;
        c30 += a3 * b0;
        c31 += a3 * b1;
        c40 += a4 * b0;
        c41 += a4 * b1;
        c50 += a5 * b0;
        c51 += a5 * b1;
        pa += MR;
        pb += NR;
    }
    vf8 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++) store_row(c + i * ldc, acc[i], beta);
        return;
    }
    float tile[MR][NR];
    memcpy(tile, acc, sizeof(tile));
    for (int64_t i = 0; i < mr; i++) {
        float *row = c + i * ldc;
        for (int64_t j = 0; j < nr; j++)
            row[j] = beta == 0.0f ? tile[i][j] : tile[i][j] + beta * row[j];
    }
}

static KERN_INLINE void sgemm_blocked(bool trans_a, bool trans_b, int64_t m, int64_t n,
                                        int64_t k, float alpha, const float *a, int64_t lda,
                                        const float *b, int64_t ldb, float beta, float *c,
                                        int64_t ldc, float *ws)
{
    int64_t kc_max = min64(KC, k);
    float *pa = ws;
    float *pb = ws + kc_max * min64(MC, round_up(m, MR));
    for (int64_t jc = 0; jc < n; jc += NC) {
        int64_t nc = min64(NC, n - jc);
        for (int64_t pc = 0; pc < k; pc += KC) {
            int64_t kc = min64(KC, k - pc);
            float beta_k = pc == 0 ? beta : 1.0f;
            pack_b(trans_b, b, ldb, pc, kc, jc, nc, pb);
            for (int64_t ic = 0; ic < m; ic += MC) {
                int64_t mc = min64(MC, m - ic);
                pack_a(trans_a, a, lda, ic, mc, pc, kc, alpha, pa);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int64_t nr = min64(NR, nc - jr);
                    for (int64_t ir = 0; ir < mc; ir += MR)
                        micro_kernel(kc, pa + ir * kc, pb + jr * kc,
                                     c + (ic + ir) * ldc + jc + jr, ldc, beta_k,
                                     min64(MR, mc - ir), nr);
                }
            }
        }
    }
}

KERN_CLONES static void sgemm_packed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                     float alpha, const float *a, int64_t lda, const float *b,
                                     int64_t ldb, float beta, float *c, int64_t ldc, float *ws)
{
    sgemm_blocked(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws);
}

void kern_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                int64_t ldc, void *workspace)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(c, m, n, ldc, beta);
        return;
    }
    if (use_direct(m, n, k)) {
        sgemm_direct(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    sgemm_packed(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, workspace);
}

void kern_sgemm_ref(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                    float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t p = 0; p < k; p++) {
                double x = trans_a ? a[p * lda + i] : a[i * lda + p];
                double y = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                s += x * y;
            }
            float *out = &c[i * ldc + j];
            *out = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *out));
        }
    }
}

void kern_dgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                const double *a, int64_t lda, const double *b, int64_t ldb, double beta,
                double *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) {
        double *restrict crow = c + i * ldc;
        for (int64_t j = 0; j < n; j++) crow[j] = beta == 0.0 ? 0.0 : beta * crow[j];
        if (!trans_b) {
            for (int64_t p = 0; p < k; p++) {
                double s = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
                const double *restrict brow = b + p * ldb;
                for (int64_t j = 0; j < n; j++) crow[j] += s * brow[j];
            }
        } else {
            for (int64_t j = 0; j < n; j++) {
                double s = 0.0;
                for (int64_t p = 0; p < k; p++)
                    s += (trans_a ? a[p * lda + i] : a[i * lda + p]) * b[j * ldb + p];
                crow[j] += alpha * s;
            }
        }
    }
}
