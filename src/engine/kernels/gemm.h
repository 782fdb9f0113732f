/* gemm.h - dense matrix multiplication kernels used by MatMul, Gemm and Conv.
 *
 * All matrices are row-major with explicit leading dimensions. Every routine computes
 *
 *     C = alpha * op(A) * op(B) + beta * C
 *
 * where op(A) is M x K (A, or A transposed when trans_a), op(B) is K x N and C is M x N. When
 * beta is 0, C is only written, never read, so it may hold garbage (NaN) on entry.
 *
 * Two interfaces:
 *   kern_sgemm     one call, one thread, operands as plain strided matrices;
 *   kern_gemm_run  the full driver: operands may be packed ahead of time (weights, once at
 *                  load, see kern_pack_a / kern_pack_b), B may be produced by a callback that
 *                  writes packed panels directly (Conv's im2col), the result may get a bias and
 *                  an activation while it is still in registers, and the work is spread over
 *                  a thread pool.
 * Both pick at run time the micro-kernel for the best instruction set the CPU has (AVX-512,
 * AVX2+FMA, or portable C); a packed operand remembers the one it was packed for.
 */
#ifndef ENGINE_KERNELS_GEMM_H
#define ENGINE_KERNELS_GEMM_H

#include "core/threadpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of 64-byte aligned scratch memory kern_sgemm needs for these sizes. */
size_t kern_sgemm_workspace(int64_t m, int64_t n, int64_t k);

/* The fast single-precision kernel on one thread. WORKSPACE holds kern_sgemm_workspace(m, n,
 * k) bytes, 64-byte aligned. */
void kern_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                int64_t ldc, void *workspace);

/* The obvious triple loop with double accumulation: the reference the fast kernels are tested
 * against. */
void kern_sgemm_ref(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                    int64_t ldc);

/* Double precision, straightforward loops (no workspace); for the rare float64 models. */
void kern_dgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                const double *a, int64_t lda, const double *b, int64_t ldb, double beta, double *c,
                int64_t ldc);

/* --- instruction sets ------------------------------------------------------------------- */

typedef enum kern_isa {
    KERN_ISA_AUTO = 0, /* the best the CPU supports */
    KERN_ISA_PORTABLE, /* C with GCC vector extensions: any target */
    KERN_ISA_AVX2,     /* x86-64 AVX2 + FMA */
    KERN_ISA_AVX512,   /* x86-64 AVX-512 F/VL */
} kern_isa;

/* True when this build has ISA and the CPU runs it (AUTO and PORTABLE always). */
bool kern_isa_supported(kern_isa isa);
/* The instruction set AUTO stands for on this machine. */
kern_isa kern_isa_best(void);
/* For tests: makes AUTO stand for ISA (which must be supported; AUTO restores the detected
 * best) so that Conv, Gemm and MatMul run every path on one machine. Affects operands packed
 * afterwards; not for use while other threads compute. */
void kern_isa_override(kern_isa isa);
/* "avx512", "avx2", "portable". */
const char *kern_isa_name(kern_isa isa);
/* The register tile of ISA's micro-kernel: MR rows of A by NR columns of B. */
void kern_gemm_tile(kern_isa isa, int *mr, int *nr);

/* --- activations applied in the GEMM epilogue ------------------------------------------- */

typedef enum kern_act {
    KERN_ACT_NONE = 0,
    KERN_ACT_RELU,  /* max(x, 0) */
    KERN_ACT_CLIP,  /* min(max(x, lo), hi) */
    KERN_ACT_LEAKY, /* x < 0 ? alpha * x : x */
} kern_act;

/* What happens to each element of C once the product is complete: C += row_bias[i] +
 * col_bias[j] + residual[i * ldr + j], then the activation. NaN inputs stay NaN, as in the
 * reference operators. The residual must not overlap C. */
typedef struct kern_epilogue {
    const float *row_bias; /* M values or NULL (Conv: one bias per output channel) */
    const float *col_bias; /* N values or NULL (Gemm / MatMul: one bias per output column) */
    const float *residual; /* M x N values or NULL (Conv: the skip connection added after it) */
    int64_t ldr;           /* the residual's row stride */
    kern_act act;
    float a, b; /* CLIP: lo and hi; LEAKY: alpha in a */
} kern_epilogue;

/* Applies EPI's activation alone to N floats (for paths that compute outside the GEMM). */
void kern_activate(float *x, int64_t n, const kern_epilogue *epi);

/* --- packed operands -------------------------------------------------------------------- */

/* An operand rearranged into the panels the micro-kernel reads: A in MR-row panels, B in
 * NR-column panels, both blocked along K. Immutable once made; share it freely. */
typedef struct kern_packed kern_packed;

/* Packs op(A) (M x K, times ALPHA) or op(B) (K x N) for instruction set ISA. NULL when out of
 * memory. Free with kern_packed_free (accepts NULL). */
kern_packed *kern_pack_a(kern_isa isa, bool trans, int64_t m, int64_t k, float alpha,
                         const float *a, int64_t lda);
kern_packed *kern_pack_b(kern_isa isa, bool trans, int64_t k, int64_t n, const float *b,
                         int64_t ldb);
void kern_packed_free(kern_packed *p);
/* Tells the kernel that the N bytes at P will probably not be read again (source weights once
 * packed): clean pages of a file mapping leave the resident set and come back from the page
 * cache if they are read after all. Never changes what the memory holds. */
void kern_release_pages(const void *p, size_t n);
/* Bytes the packed panels occupy (for memory accounting). */
size_t kern_packed_bytes(const kern_packed *p);

/* --- the driver ------------------------------------------------------------------------- */

/* Writes rows [P0, P0+KC) x columns [J0, J0+NC) of B into DST as a row-major block: element
 * (p, j) at DST[(p - P0) * LDD + (j - J0)], and zeros in columns [NC, LDD) of each row. CTX is
 * kern_gemm.pack_b_ctx. */
typedef void (*kern_pack_b_fn)(const void *ctx, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                               int64_t ldd, float *dst);

/* Writes rows [I0, I0+MC) x columns [P0, P0+KC) of A as MR-row panels: element (i, p) at
 * DST[(i - I0) / MR * KC * MR + (p - P0) * MR + (i - I0) % MR], and zeros in the rows past
 * I0+MC up to the last panel's end. CTX is kern_gemm.pack_a_ctx. */
typedef void (*kern_pack_a_fn)(const void *ctx, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                               int mr, float *dst);

typedef struct kern_gemm {
    int64_t m, n, k;
    kern_isa isa; /* AUTO, or the one the packed operands were made for */
    /* A: prepacked (pa), a packing callback (pack_a), indirect (a_rows, a_off: element (i, p)
     * at a_rows[i][a_off[p]], a_rows padded with valid pointers to a whole number of MR-row
     * panels, see kern_gemm_tile; Conv reads its input in place this way), or strided (a,
     * lda, trans_a; times alpha while packing). */
    const kern_packed *pa;
    kern_pack_a_fn pack_a;
    const void *pack_a_ctx;
    const float *const *a_rows;
    const int64_t *a_off;
    const float *a;
    int64_t lda;
    bool trans_a;
    float alpha; /* strided A only: the other kinds carry their own scale */
    /* B: prepacked (pb), a packing callback (pack_b), or strided (b, ldb, trans_b). */
    const kern_packed *pb;
    kern_pack_b_fn pack_b;
    const void *pack_b_ctx;
    const float *b;
    int64_t ldb;
    bool trans_b;
    /* C */
    float *c;
    int64_t ldc;
    float beta;
    kern_epilogue epi;
} kern_gemm;

/* Scratch bytes kern_gemm_run needs for G's sizes and operand kinds when run with THREADS
 * threads (64-byte aligned, a multiple of 64). */
size_t kern_gemm_workspace(const kern_gemm *g, int threads);

/* Computes G on POOL (NULL: the calling thread alone). WS holds kern_gemm_workspace(g,
 * core_threadpool_size(pool)) bytes. Never allocates. Must not be called from inside a
 * core_parallel_for on the same pool. */
void kern_gemm_run(const kern_gemm *g, core_threadpool *pool, void *ws);

#endif
