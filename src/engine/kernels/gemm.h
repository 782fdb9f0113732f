/* gemm.h - dense matrix multiplication kernels used by MatMul, Gemm and Conv.
 *
 * All matrices are row-major with explicit leading dimensions. Every routine computes
 *
 *     C = alpha * op(A) * op(B) + beta * C
 *
 * where op(A) is M x K (A, or A transposed when trans_a), op(B) is K x N and C is M x N. When
 * beta is 0, C is only written, never read, so it may hold garbage (NaN) on entry.
 */
#ifndef ENGINE_KERNELS_GEMM_H
#define ENGINE_KERNELS_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of 64-byte aligned scratch memory kern_sgemm needs for these sizes. */
size_t kern_sgemm_workspace(int64_t m, int64_t n, int64_t k);

/* The fast single-precision kernel: cache blocking with packed panels and a register-tiled
 * micro-kernel. WORKSPACE holds kern_sgemm_workspace(m, n, k) bytes, 64-byte aligned. */
void kern_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                int64_t ldc, void *workspace);

/* The obvious triple loop with double accumulation: the reference kern_sgemm is tested
 * against. */
void kern_sgemm_ref(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                    float *c, int64_t ldc);

/* Double precision, straightforward loops (no workspace); for the rare float64 models. */
void kern_dgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                const double *a, int64_t lda, const double *b, int64_t ldb, double beta,
                double *c, int64_t ldc);

#endif
