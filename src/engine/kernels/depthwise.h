/* depthwise.h - one channel of a 3x3 depthwise convolution, vectorised along output rows.
 *
 * MobileNet-style depthwise layers do nine multiply-adds per output over planes as small as
 * 7 x 7: a loop per output row spends more time entering and leaving vector loops than
 * computing. With AVX-512 masks every row of up to 16 outputs is a handful of instructions,
 * borders included, and the input is read in place (no padded copy).
 */
#ifndef ENGINE_KERNELS_DEPTHWISE_H
#define ENGINE_KERNELS_DEPTHWISE_H

#include "engine/kernels/gemm.h"

#include <stdbool.h>
#include <stdint.h>

/* The geometry of one plane: input IH x IW, output OH x OW, stride S (1 or 2) in both axes,
 * dilation 1, zero padding PH rows above and PW columns left (any padding below and right is
 * implied by the output size). */
typedef struct kern_dw_geom {
    int64_t ih, iw, oh, ow;
    int64_t stride, ph, pw;
} kern_dw_geom;

/* True when ISA (AUTO: the best the CPU has) has a kernel for G. */
bool kern_dw3x3_supported(kern_isa isa, const kern_dw_geom *g);

/* Y[oh][ow] = act(BIAS + sum over kh, kw of W[kh * 3 + kw] * X[oh * s + kh - ph][ow * s + kw -
 * pw]), reading zeros outside X. ACT may be NULL. Only call when kern_dw3x3_supported. */
void kern_dw3x3(kern_isa isa, const kern_dw_geom *g, const float *x, const float *w, float bias,
                const kern_epilogue *act, float *y);

/* The plain loops the fast kernel is tested against. */
void kern_dw3x3_ref(const kern_dw_geom *g, const float *x, const float *w, float bias,
                    const kern_epilogue *act, float *y);

#endif
