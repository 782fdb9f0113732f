/* transpose.h - float32 matrix transposition.
 *
 * Conv's transposed GEMM leaves its result with positions as rows; the output wants channels
 * as rows. Element by element, every read of that transposition is a strided gather; in 8 x 8
 * register blocks it is eight loads, 24 shuffles and eight stores.
 */
#ifndef ENGINE_KERNELS_TRANSPOSE_H
#define ENGINE_KERNELS_TRANSPOSE_H

#include "engine/kernels/gemm.h"

#include <stdint.h>

/* Y[j * ldy + i] = X[i * ldx + j] for i < ROWS, j < COLS, with ISA's kernel (AUTO: the best
 * the CPU has). X and Y must not overlap. */
void kern_transpose(kern_isa isa, const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                    int64_t cols);

#endif
