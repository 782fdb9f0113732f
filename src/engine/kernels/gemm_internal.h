/* gemm_internal.h - what the SGEMM driver (gemm.c) needs from each instruction set's
 * micro-kernels (gemm.c for portable C, gemm_x86.c for AVX2 and AVX-512). Not for operators.
 */
#ifndef ENGINE_KERNELS_GEMM_INTERNAL_H
#define ENGINE_KERNELS_GEMM_INTERNAL_H

#include "engine/kernels/gemm.h"

/* Computes the MR x NR tile  T = A panel x B panel  over KC steps, where the A panel holds
 * element (i, p) at PA[p * MR + i] and the B panel (p, j) at PB[p * LDB + j] (LDB is NR for a
 * packed panel, the row stride for a row-major block; all NR columns must be readable), then
 * writes rows
 * [0, MR_) and columns [0, NR_) of C (row stride LDC) as
 *     C = T + beta * C     (beta 0: C is not read)
 * and, when EPI is not NULL, adds EPI's biases (row_bias[I0 + i], col_bias[J0 + j]) and
 * applies its activation. */
typedef void (*kern_micro_fn)(int64_t kc, const float *pa, const float *pb, int64_t ldb,
                              float *c, int64_t ldc, int mr_, int nr_, float beta,
                              const kern_epilogue *epi, int64_t i0, int64_t j0);

/* The same with A read in place through an indirection (kern_gemm.a_rows): element (i, p) at
 * ROWS[i][OFF[p]] for i < MR (the caller pads ROWS to MR entries). */
typedef void (*kern_micro_ind_fn)(int64_t kc, const float *const *rows, const int64_t *off,
                                  const float *pb, int64_t ldb, float *c, int64_t ldc, int mr_,
                                  int nr_, float beta, const kern_epilogue *epi, int64_t i0,
                                  int64_t j0);

typedef struct kern_gemm_isa {
    kern_isa id;
    int mr, nr; /* register tile */
    int kc;     /* depth of packed blocks: an MR x KC A panel stays in L1 */
    int nc;     /* columns of B packed per task: a KC x NC block stays in L2 */
    int mc;     /* rows of A packed per block when A is not prepacked */
    /* micro[r] serves tiles of at most r rows: index 0 is the full MR tile; small_rows lists
     * cheaper kernels for the few-row tiles of thin products (a batch of one). */
    kern_micro_fn micro;
    kern_micro_fn micro_small[4]; /* 1, 2, 4 rows (NULL: use micro) and unused */
    kern_micro_ind_fn micro_ind;
    kern_micro_ind_fn micro_ind_small[4]; /* as micro_small */
} kern_gemm_isa;

/* The descriptors; NULL when the build or the CPU lacks the instruction set. */
const kern_gemm_isa *kern_gemm_isa_portable(void);
const kern_gemm_isa *kern_gemm_isa_avx2(void);
const kern_gemm_isa *kern_gemm_isa_avx512(void);

#endif
