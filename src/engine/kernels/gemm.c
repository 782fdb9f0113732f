/* gemm.c - the SGEMM driver: blocking, packing, threading and instruction-set dispatch, plus
 * the portable micro-kernel, the reference kernel and double precision.
 *
 * kern_gemm_run follows the GotoBLAS/BLIS structure. C is cut into column blocks of NC (a
 * multiple of the micro-kernel's NR); K into slices of about KC (slice_k); for each slice the
 * block's part of B is made readable as NR-column panels or as a row-major block (it stays in
 * L2), A's as MR-row panels, and the micro-kernel multiplies one A panel by one B panel into an
 * MR x NR tile of C held in registers, the A panel staying in L1 while the B panels stream
 * past it (or the other way round when a few rows meet large prepacked weights).
 *
 * Operands come in several kinds, so that nothing is copied that need not be: weights packed
 * at load are used in place; a row-major B is read in place (only a ragged last panel is
 * padded); B may be written block by block by a callback (Conv's im2col, which never exists
 * whole); A may be packed by a callback, or read in place through row pointers and per-step
 * offsets (Conv's input, through a padded copy). Bias and activation are applied to a tile
 * when the last slice of K has been added, while it is still in registers.
 *
 * Threads take (column block, row group) tasks from a queue. Column blocks alone give enough
 * tasks for large products; when there are few, rows are split as well, each task packing its
 * own copy of the B block (cheap next to the multiplications it feeds).
 */
#include "engine/kernels/gemm.h"
#include "core/memory.h"

#include "engine/kernels/gemm_internal.h"
#include "engine/kernels/parallel.h"
#include "engine/kernels/simd.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

KERN_FAST_LOOPS

/* Below this many rows packing costs more than it saves: rows go straight through. */
#define DIRECT_MAX_M 4

/* Products smaller than this many multiply-adds run on the calling thread: waking the pool
 * costs more than it saves. */
#define PARALLEL_MIN_MACS ((int64_t)1 << 18)

typedef float vf8 __attribute__((vector_size(32)));

static inline int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static inline int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static inline int64_t round_up(int64_t x, int64_t m)
{
    return (x + m - 1) / m * m;
}

static inline size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

/* The depth of K slices for a product of depth K: as few slices of at most ISA's KC as
 * possible, all of about the same depth, so that no slice is so thin that writing the C tile
 * back costs more than it computes (576 = 3 x 192, not 256 + 256 + 64). */
static int64_t slice_k(int isa_kc, int64_t k)
{
    int64_t n = (k + isa_kc - 1) / isa_kc;
    return n ? (k + n - 1) / n : 1;
}

/* ------------------------------------------------------------------------------------------
 * Portable micro-kernel: 6 x 16 with GCC vector extensions
 * ---------------------------------------------------------------------------------------- */

#define MRP 6
#define NRP 16

static KERN_INLINE float act1(float x, const kern_epilogue *e)
{
    switch (e->act) {
    case KERN_ACT_RELU:
        return x < 0.0f ? 0.0f : x;
    case KERN_ACT_CLIP:
        x = x < e->a ? e->a : x;
        return x > e->b ? e->b : x;
    case KERN_ACT_LEAKY:
        return x < 0.0f ? e->a * x : x;
    default:
        return x;
    }
}

/* Writes the MR_ x NR_ corner of a finished tile: C = tile + beta * C, then the epilogue. */
static KERN_INLINE void store_tile(vf8 acc[MRP][2], float *restrict c, int64_t ldc, int mr_,
                                   int nr_, float beta, const kern_epilogue *epi, int64_t i0,
                                   int64_t j0)
{
    float tile[MRP][NRP];
    memcpy(tile, acc, sizeof(tile));
    for (int i = 0; i < mr_; i++) {
        float *row = c + i * ldc;
        float rb = epi && epi->row_bias ? epi->row_bias[i0 + i] : 0.0f;
        for (int j = 0; j < nr_; j++) {
            float x = tile[i][j];
            if (beta != 0.0f) x += beta == 1.0f ? row[j] : beta * row[j];
            if (epi) {
                x += rb;
                if (epi->col_bias) x += epi->col_bias[j0 + j];
                if (epi->residual) x += epi->residual[(i0 + i) * epi->ldr + j0 + j];
                x = act1(x, epi);
            }
            row[j] = x;
        }
    }
}

/* The accumulators are named variables so that GCC keeps all twelve in registers. */
KERN_CLONES static void micro_portable(int64_t kc, const float *restrict pa,
                                       const float *restrict pb, int64_t ldb, float *restrict c,
                                       int64_t ldc, int mr_, int nr_, float beta,
                                       const kern_epilogue *epi, int64_t i0, int64_t j0)
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
        pa += MRP;
        pb += ldb;
    }
    vf8 acc[MRP][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    store_tile(acc, c, ldc, mr_, nr_, beta, epi, i0, j0);
}

/* The same with A read in place through row pointers and per-step offsets (indirect A). */
KERN_CLONES static void micro_portable_ind(int64_t kc, const float *const *rows, const int64_t *off,
                                           const float *restrict pb, int64_t ldb, float *restrict c,
                                           int64_t ldc, int mr_, int nr_, float beta,
                                           const kern_epilogue *epi, int64_t i0, int64_t j0)
{
    const float *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
    const float *r3 = rows[3], *r4 = rows[4], *r5 = rows[5];
    vf8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    vf8 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (int64_t p = 0; p < kc; p++) {
        int64_t o = off[p];
        vf8 b0, b1;
        memcpy(&b0, pb, sizeof(b0));
        memcpy(&b1, pb + 8, sizeof(b1));
        float a0 = r0[o], a1 = r1[o], a2 = r2[o], a3 = r3[o], a4 = r4[o], a5 = r5[o];
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
        pb += ldb;
    }
    vf8 acc[MRP][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    store_tile(acc, c, ldc, mr_, nr_, beta, epi, i0, j0);
}

static const kern_gemm_isa isa_portable = {
    .id = KERN_ISA_PORTABLE,
    .mr = MRP,
    .nr = NRP,
    .kc = 256,
    .nc = 256,
    .mc = 120,
    .micro = micro_portable,
    .micro_ind = micro_portable_ind,
};

const kern_gemm_isa *kern_gemm_isa_portable(void)
{
    return &isa_portable;
}

/* ------------------------------------------------------------------------------------------
 * Instruction-set dispatch
 * ---------------------------------------------------------------------------------------- */

static _Atomic(const kern_gemm_isa *) best_isa;     /* detected once */
static _Atomic(const kern_gemm_isa *) override_isa; /* kern_isa_override, for tests */

static const kern_gemm_isa *isa_lookup(kern_isa id)
{
    switch (id) {
    case KERN_ISA_PORTABLE:
        return kern_gemm_isa_portable();
    case KERN_ISA_AVX2:
        return kern_gemm_isa_avx2();
    case KERN_ISA_AVX512:
        return kern_gemm_isa_avx512();
    default:
        break;
    }
    const kern_gemm_isa *o = atomic_load_explicit(&override_isa, memory_order_relaxed);
    if (o) return o;
    /* Every thread computes the same answer, so a race here is benign. */
    const kern_gemm_isa *b = atomic_load_explicit(&best_isa, memory_order_relaxed);
    if (!b) {
        b = kern_gemm_isa_avx512();
        if (!b) b = kern_gemm_isa_avx2();
        if (!b) b = kern_gemm_isa_portable();
        atomic_store_explicit(&best_isa, b, memory_order_relaxed);
    }
    return b;
}

void kern_isa_override(kern_isa isa)
{
    const kern_gemm_isa *d = isa == KERN_ISA_AUTO ? NULL : isa_lookup(isa);
    atomic_store_explicit(&override_isa, d, memory_order_relaxed);
}

bool kern_isa_supported(kern_isa isa)
{
    return isa == KERN_ISA_AUTO || isa_lookup(isa) != NULL;
}

kern_isa kern_isa_best(void)
{
    return isa_lookup(KERN_ISA_AUTO)->id;
}

const char *kern_isa_name(kern_isa isa)
{
    switch (isa) {
    case KERN_ISA_PORTABLE:
        return "portable";
    case KERN_ISA_AVX2:
        return "avx2";
    case KERN_ISA_AVX512:
        return "avx512";
    default:
        return kern_isa_name(kern_isa_best());
    }
}

void kern_gemm_tile(kern_isa isa, int *mr, int *nr)
{
    const kern_gemm_isa *d = isa_lookup(isa);
    if (!d) d = isa_lookup(KERN_ISA_AUTO);
    *mr = d->mr;
    *nr = d->nr;
}

/* ------------------------------------------------------------------------------------------
 * Packing
 * ---------------------------------------------------------------------------------------- */

/* Packs rows [I0, I0+MC) x columns [P0, P0+KC) of op(A), times ALPHA, into MR-row panels:
 * panel r holds element (i, p) at p * MR + i; rows past the end are zero. */
KERN_CLONES static void pack_a_block(int mr, bool trans, const float *a, int64_t lda, int64_t i0,
                                     int64_t mc, int64_t p0, int64_t kc, float alpha,
                                     float *restrict pa)
{
    for (int64_t ir = 0; ir < mc; ir += mr) {
        int64_t rows = min64(mr, mc - ir);
        if (!trans) {
            for (int64_t i = 0; i < rows; i++) {
                const float *restrict src = a + (i0 + ir + i) * lda + p0;
                for (int64_t p = 0; p < kc; p++) pa[p * mr + i] = alpha * src[p];
            }
        } else {
            for (int64_t p = 0; p < kc; p++) {
                const float *restrict src = a + (p0 + p) * lda + i0 + ir;
                for (int64_t i = 0; i < rows; i++) pa[p * mr + i] = alpha * src[i];
            }
        }
        for (int64_t i = rows; i < mr; i++)
            for (int64_t p = 0; p < kc; p++) pa[p * mr + i] = 0.0f;
        pa += kc * mr;
    }
}

/* Copies row P of a row-major B block, columns [0, NC), into the panels: NR is a constant at
 * each call site so the copies become a few vector moves. Reading B a row at a time keeps the
 * reads sequential, which matters when B is large and its rows far apart. */
static KERN_INLINE void pack_b_row(int nr, const float *restrict src, int64_t nc, int64_t kc,
                                   float *restrict dst)
{
    int64_t j = 0;
    for (; j + nr <= nc; j += nr, dst += kc * nr)
        for (int q = 0; q < nr; q++) dst[q] = src[j + q];
    if (j < nc) {
        int64_t rest = nc - j;
        for (int64_t q = 0; q < rest; q++) dst[q] = src[j + q];
        for (int64_t q = rest; q < nr; q++) dst[q] = 0.0f;
    }
}

/* Packs rows [P0, P0+KC) x columns [J0, J0+NC) of op(B) into NR-column panels: a panel holds
 * element (p, j) at p * NR + j; columns past the end are zero. */
KERN_CLONES static void pack_b_block(int nr, bool trans, const float *b, int64_t ldb, int64_t p0,
                                     int64_t kc, int64_t j0, int64_t nc, float *restrict pb)
{
    if (!trans) {
        for (int64_t p = 0; p < kc; p++) {
            const float *src = b + (p0 + p) * ldb + j0;
            if (nr == 32)
                pack_b_row(32, src, nc, kc, pb + p * 32);
            else if (nr == 16)
                pack_b_row(16, src, nc, kc, pb + p * 16);
            else
                pack_b_row(nr, src, nc, kc, pb + p * nr);
        }
        return;
    }
    /* Transposing: 16 steps of K at a time, so that each source row gives one cache line
     * and the panel rows being written stay in L1. */
    for (int64_t jr = 0; jr < nc; jr += nr) {
        int64_t cols = min64(nr, nc - jr);
        for (int64_t q = 0; q < kc; q += 16) {
            int64_t qe = min64(kc, q + 16);
            for (int64_t j = 0; j < cols; j++) {
                const float *restrict src = b + (j0 + jr + j) * ldb + p0;
                for (int64_t p = q; p < qe; p++) pb[p * nr + j] = src[p];
            }
            for (int64_t j = cols; j < nr; j++)
                for (int64_t p = q; p < qe; p++) pb[p * nr + j] = 0.0f;
        }
        pb += kc * nr;
    }
}

enum { SIDE_A, SIDE_B };

struct kern_packed {
    const kern_gemm_isa *isa;
    int side;
    int64_t dim; /* M for A, N for B */
    int64_t k;
    int64_t pad; /* dim rounded up to the panel width */
    size_t bytes;
    float *data; /* k-slice starting at pc at data + pc * pad; panel r of it at + r * kc */
};

static kern_packed *packed_new(const kern_gemm_isa *isa, int side, int64_t dim, int64_t k)
{
    if (!isa || dim <= 0 || k <= 0) return NULL;
    kern_packed *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->isa = isa;
    p->side = side;
    p->dim = dim;
    p->k = k;
    p->pad = round_up(dim, side == SIDE_A ? isa->mr : isa->nr);
    p->bytes = align64((size_t)(p->pad * k) * sizeof(float));
    p->data = core_alloc_large(p->bytes);
    if (!p->data) {
        free(p);
        return NULL;
    }
    return p;
}

kern_packed *kern_pack_a(kern_isa isa, bool trans, int64_t m, int64_t k, float alpha,
                         const float *a, int64_t lda)
{
    const kern_gemm_isa *d = isa_lookup(isa);
    kern_packed *p = packed_new(d, SIDE_A, m, k);
    if (!p) return NULL;
    int64_t kc = slice_k(d->kc, k);
    for (int64_t pc = 0; pc < k; pc += kc)
        pack_a_block(d->mr, trans, a, lda, 0, m, pc, min64(kc, k - pc), alpha,
                     p->data + pc * p->pad);
    return p;
}

kern_packed *kern_pack_b(kern_isa isa, bool trans, int64_t k, int64_t n, const float *b,
                         int64_t ldb)
{
    const kern_gemm_isa *d = isa_lookup(isa);
    kern_packed *p = packed_new(d, SIDE_B, n, k);
    if (!p) return NULL;
    int64_t kc = slice_k(d->kc, k);
    for (int64_t pc = 0; pc < k; pc += kc)
        pack_b_block(d->nr, trans, b, ldb, pc, min64(kc, k - pc), 0, n, p->data + pc * p->pad);
    return p;
}

void kern_packed_free(kern_packed *p)
{
    if (!p) return;
    free(p->data);
    free(p);
}

size_t kern_packed_bytes(const kern_packed *p)
{
    return p ? p->bytes : 0;
}

void kern_release_pages(const void *p, size_t n)
{
#if defined(__linux__) && defined(MADV_PAGEOUT)
    /* Only whole pages inside the range: a neighbour sharing a page may still be in use. */
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || n < (size_t)page) return;
    uintptr_t lo = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_PAGEOUT);
#else
    (void)p, (void)n;
#endif
}

/* ------------------------------------------------------------------------------------------
 * Epilogue helpers
 * ---------------------------------------------------------------------------------------- */

static bool epi_active(const kern_epilogue *e)
{
    return e->row_bias || e->col_bias || e->residual || e->act != KERN_ACT_NONE;
}

KERN_CLONES void kern_activate(float *x, int64_t n, const kern_epilogue *e)
{
    switch (e->act) {
    case KERN_ACT_RELU:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] < 0.0f ? 0.0f : x[i];
        break;
    case KERN_ACT_CLIP: {
        float lo = e->a, hi = e->b;
        for (int64_t i = 0; i < n; i++) {
            float v = x[i] < lo ? lo : x[i];
            x[i] = v > hi ? hi : v;
        }
        break;
    }
    case KERN_ACT_LEAKY: {
        float s = e->a;
        for (int64_t i = 0; i < n; i++) x[i] = x[i] < 0.0f ? s * x[i] : x[i];
        break;
    }
    default:
        break;
    }
}

/* C = beta * C (writing zeros when beta is 0, so garbage never leaks through), then the
 * epilogue: for products with K = 0 or alpha = 0, and after the direct path. */
KERN_CLONES static void scale_c(float *c, int64_t m, int64_t n, int64_t ldc, float beta)
{
    for (int64_t i = 0; i < m; i++) {
        float *row = c + i * ldc;
        if (beta == 0.0f)
            memset(row, 0, (size_t)n * sizeof(float));
        else if (beta != 1.0f)
            for (int64_t j = 0; j < n; j++) row[j] *= beta;
    }
}

KERN_CLONES static void apply_epilogue(float *c, int64_t m, int64_t n, int64_t ldc,
                                       const kern_epilogue *e)
{
    for (int64_t i = 0; i < m; i++) {
        float *row = c + i * ldc;
        float rb = e->row_bias ? e->row_bias[i] : 0.0f;
        if (e->row_bias)
            for (int64_t j = 0; j < n; j++) row[j] += rb;
        if (e->col_bias)
            for (int64_t j = 0; j < n; j++) row[j] += e->col_bias[j];
        if (e->residual)
            for (int64_t j = 0; j < n; j++) row[j] += e->residual[i * e->ldr + j];
        kern_activate(row, n, e);
    }
}

/* ------------------------------------------------------------------------------------------
 * Direct path: thin products without packing
 * ---------------------------------------------------------------------------------------- */

/* Small M (a batch of one, gemv), N == 1 or K == 1: loops without packing. */
KERN_CLONES static void sgemm_direct(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                     float alpha, const float *a, int64_t lda, const float *b,
                                     int64_t ldb, float beta, float *c, int64_t ldc)
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

static bool use_direct(const kern_gemm *g)
{
    if (g->pa || g->pb || g->pack_a || g->pack_b || g->a_rows) return false;
    return g->m < DIRECT_MAX_M || g->n == 1 || g->k == 1;
}

/* ------------------------------------------------------------------------------------------
 * The blocked driver
 * ---------------------------------------------------------------------------------------- */

typedef struct layout {
    const kern_gemm_isa *isa;
    int64_t nc;     /* columns per column block (multiple of NR) */
    int64_t n_jc;   /* column blocks */
    int64_t rows;   /* rows per row group (multiple of MR) */
    int64_t n_ig;   /* row groups */
    size_t b_bytes; /* per-slot B block: packed, written by pack_b, or one ragged panel */
    size_t a_bytes; /* per-slot packed A block, 0 with a prepacked A */
} layout;

static const kern_gemm_isa *gemm_isa(const kern_gemm *g)
{
    if (g->pa) return g->pa->isa;
    if (g->pb) return g->pb->isa;
    return isa_lookup(g->isa);
}

static layout make_layout(const kern_gemm *g, int threads)
{
    layout l;
    const kern_gemm_isa *isa = gemm_isa(g);
    l.isa = isa;
    int64_t kc = slice_k(isa->kc, g->k);
    int64_t m_panels = (g->m + isa->mr - 1) / isa->mr;
    int64_t n_panels = (g->n + isa->nr - 1) / isa->nr;
    if ((double)g->m * (double)g->n * (double)g->k < (double)PARALLEL_MIN_MACS) threads = 1;
    /* A prepacked B costs nothing to re-address, but an A packed per call is packed again for
     * every column block: then wide blocks (a KC x 512 block of B still sits in L2). */
    l.nc = min64(g->pb ? 2 * isa->nc : isa->nc, n_panels * isa->nr);
    /* With several threads, a few tasks per thread let the queue even out uneven progress.
     * Narrower column blocks come first (they cost nothing but shorter runs of panels), then
     * row groups (each packs its own copy of the B block, unless B needs no packing). */
    int64_t want = 4 * (int64_t)threads;
    if (threads > 1 && (n_panels * isa->nr + l.nc - 1) / l.nc < want)
        l.nc = max64(min64(2, n_panels), n_panels / want) * isa->nr;
    l.n_jc = (g->n + l.nc - 1) / l.nc;
    l.n_ig = 1;
    if (threads > 1 && l.n_jc < want) l.n_ig = min64(m_panels, (want + l.n_jc - 1) / l.n_jc);
    l.rows = round_up((g->m + l.n_ig - 1) / l.n_ig, isa->mr);
    l.n_ig = (g->m + l.rows - 1) / l.rows;
    if (g->pb)
        l.b_bytes = 0;
    else if (g->pack_b || g->trans_b)
        l.b_bytes = align64((size_t)(kc * l.nc) * sizeof(float));
    else
        l.b_bytes = align64((size_t)(kc * isa->nr) * sizeof(float));
    int64_t mc = round_up(min64(isa->mc, g->m), isa->mr);
    l.a_bytes = g->pa || g->a_rows ? 0 : align64((size_t)(kc * mc) * sizeof(float));
    return l;
}

typedef struct run_ctx {
    const kern_gemm *g;
    layout l;
    char *ws;
    size_t slot_bytes;
    const kern_epilogue *epi; /* NULL when there is nothing to apply */
} run_ctx;

/* Copies the last, ragged panel of an in-place B (columns [J, N)) into PAD, zero-filled to
 * NR columns, so that the micro-kernel can read whole rows. */
static void pad_panel(const kern_gemm *g, int nr, int64_t p0, int64_t kc, int64_t j, float *pad)
{
    int64_t cols = g->n - j;
    for (int64_t p = 0; p < kc; p++) {
        const float *src = g->b + (p0 + p) * g->ldb + j;
        float *dst = pad + p * nr;
        for (int64_t q = 0; q < cols; q++) dst[q] = src[q];
        for (int64_t q = cols; q < nr; q++) dst[q] = 0.0f;
    }
}

/* What one (row block, column block, K slice) of a task hands each micro-kernel call. */
typedef struct tile_args {
    const kern_gemm *g;
    const kern_gemm_isa *isa;
    const float *ablk, *bblk, *ragged;
    int64_t bld;
    bool panels;
    int64_t kc, pc, ic, j0;
    float beta;
    const kern_epilogue *epi;
} tile_args;

/* Multiplies row panel IR (ROWS rows) of the A block by column panel JR (COLS columns) of
 * the B block into C. */
static inline void tile(const tile_args *t, int64_t ir, int rows, int64_t jr, int cols)
{
    const kern_gemm *g = t->g;
    const kern_gemm_isa *isa = t->isa;
    const float *bp = t->panels ? t->bblk + jr * t->kc : t->bblk + jr;
    int64_t ld = t->bld;
    if (t->ragged && cols < isa->nr) {
        bp = t->ragged;
        ld = isa->nr;
    }
    float *c = g->c + (t->ic + ir) * g->ldc + t->j0 + jr;
    if (g->a_rows) {
        kern_micro_ind_fn ind = isa->micro_ind;
        if (rows <= 4 && rows < isa->mr) {
            int s = rows <= 1 ? 0 : rows <= 2 ? 1 : 2;
            if (isa->micro_ind_small[s]) ind = isa->micro_ind_small[s];
        }
        ind(t->kc, g->a_rows + t->ic + ir, g->a_off + t->pc, bp, ld, c, g->ldc, rows, cols, t->beta,
            t->epi, t->ic + ir, t->j0 + jr);
        return;
    }
    kern_micro_fn micro = isa->micro;
    if (rows <= 4 && rows < isa->mr) {
        int s = rows <= 1 ? 0 : rows <= 2 ? 1 : 2;
        if (isa->micro_small[s]) micro = isa->micro_small[s];
    }
    micro(t->kc, t->ablk + ir * t->kc, bp, ld, c, g->ldc, rows, cols, t->beta, t->epi, t->ic + ir,
          t->j0 + jr);
}

static void run_task(void *arg, int64_t t, int slot)
{
    const run_ctx *r = arg;
    const kern_gemm *g = r->g;
    const kern_gemm_isa *isa = r->l.isa;
    const int mr = isa->mr, nr = isa->nr;
    int64_t jc = t / r->l.n_ig, ig = t % r->l.n_ig;
    int64_t j0 = jc * r->l.nc, ncols = min64(r->l.nc, g->n - j0);
    int64_t ncols_pad = round_up(ncols, nr);
    int64_t r0 = ig * r->l.rows, r1 = min64(g->m, r0 + r->l.rows);
    float *bbuf = (float *)(r->ws + (size_t)slot * r->slot_bytes);
    float *abuf = (float *)((char *)bbuf + r->l.b_bytes);
    int64_t mc_max = g->pa || g->a_rows ? r1 - r0 : isa->mc;
    int64_t kc_max = slice_k(isa->kc, g->k);
    for (int64_t pc = 0; pc < g->k; pc += kc_max) {
        int64_t kc = min64(kc_max, g->k - pc);
        /* B's block as panels (panel jr at bblk + jr * kc, row stride NR) or row-major (panel
         * jr at bblk + jr, row stride bld). */
        const float *bblk, *ragged = NULL;
        int64_t bld = nr;
        bool panels = true;
        if (g->pb) {
            bblk = g->pb->data + pc * g->pb->pad + j0 * kc;
        } else if (g->pack_b) {
            g->pack_b(g->pack_b_ctx, pc, kc, j0, ncols, ncols_pad, bbuf);
            bblk = bbuf;
            bld = ncols_pad;
            panels = false;
        } else if (g->trans_b) {
            pack_b_block(nr, true, g->b, g->ldb, pc, kc, j0, ncols, bbuf);
            bblk = bbuf;
        } else {
            bblk = g->b + pc * g->ldb + j0;
            bld = g->ldb;
            panels = false;
            if (ncols < ncols_pad) {
                pad_panel(g, nr, pc, kc, j0 + ncols_pad - nr, bbuf);
                ragged = bbuf;
            }
        }
        float beta = pc == 0 ? g->beta : 1.0f;
        const kern_epilogue *epi = pc + kc >= g->k ? r->epi : NULL;
        for (int64_t ic = r0; ic < r1; ic += mc_max) {
            int64_t mc = min64(mc_max, r1 - ic);
            const float *ablk = NULL;
            if (g->a_rows) {
                /* read in place: nothing to pack */
            } else if (g->pa) {
                ablk = g->pa->data + pc * g->pa->pad + ic * kc;
            } else if (g->pack_a) {
                g->pack_a(g->pack_a_ctx, ic, mc, pc, kc, mr, abuf);
                ablk = abuf;
            } else {
                pack_a_block(mr, g->trans_a, g->a, g->lda, ic, mc, pc, kc, g->alpha, abuf);
                ablk = abuf;
            }
            tile_args ta = {.g = g,
                            .isa = isa,
                            .ablk = ablk,
                            .bblk = bblk,
                            .ragged = ragged,
                            .bld = bld,
                            .panels = panels,
                            .kc = kc,
                            .pc = pc,
                            .ic = ic,
                            .j0 = j0,
                            .beta = beta,
                            .epi = epi};
            if (g->pb && mc <= 8 * mr) {
                /* Few rows against a large prepacked B (weights): each B panel is read from
                 * memory once and serves every row panel while it is in L1. */
                for (int64_t jr = 0; jr < ncols; jr += nr)
                    for (int64_t ir = 0; ir < mc; ir += mr)
                        tile(&ta, ir, (int)min64(mr, mc - ir), jr, (int)min64(nr, ncols - jr));
            } else {
                /* The A panel stays in L1 while the block's B panels stream past it. */
                for (int64_t ir = 0; ir < mc; ir += mr)
                    for (int64_t jr = 0; jr < ncols; jr += nr)
                        tile(&ta, ir, (int)min64(mr, mc - ir), jr, (int)min64(nr, ncols - jr));
            }
        }
    }
}

size_t kern_gemm_workspace(const kern_gemm *g, int threads)
{
    if (g->m <= 0 || g->n <= 0 || g->k <= 0 || use_direct(g)) return 0;
    layout l = make_layout(g, threads);
    int slots = l.n_jc * l.n_ig > 1 ? (threads < 1 ? 1 : threads) : 1;
    return (size_t)slots * (l.b_bytes + l.a_bytes);
}

void kern_gemm_run(const kern_gemm *g, core_threadpool *pool, void *ws)
{
    if (g->m <= 0 || g->n <= 0) return;
    bool epi = epi_active(&g->epi);
    if (g->k <= 0 || (!g->pa && !g->pack_a && !g->a_rows && g->alpha == 0.0f)) {
        scale_c(g->c, g->m, g->n, g->ldc, g->beta);
        if (epi) apply_epilogue(g->c, g->m, g->n, g->ldc, &g->epi);
        return;
    }
    if (use_direct(g)) {
        sgemm_direct(g->trans_a, g->trans_b, g->m, g->n, g->k, g->alpha, g->a, g->lda, g->b, g->ldb,
                     g->beta, g->c, g->ldc);
        if (epi) apply_epilogue(g->c, g->m, g->n, g->ldc, &g->epi);
        return;
    }
    int threads = core_threadpool_size(pool);
    run_ctx r = {.g = g, .l = make_layout(g, threads), .ws = ws, .epi = epi ? &g->epi : NULL};
    r.slot_bytes = r.l.b_bytes + r.l.a_bytes;
    int64_t ntasks = r.l.n_jc * r.l.n_ig;
    if (ntasks <= 1 || (double)g->m * (double)g->n * (double)g->k < (double)PARALLEL_MIN_MACS)
        pool = NULL;
    kern_parallel(pool, ntasks, run_task, &r);
}

/* ------------------------------------------------------------------------------------------
 * The one-call interface
 * ---------------------------------------------------------------------------------------- */

static kern_gemm plain(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc)
{
    return (kern_gemm){.m = m,
                       .n = n,
                       .k = k,
                       .a = a,
                       .lda = lda,
                       .trans_a = trans_a,
                       .alpha = alpha,
                       .b = b,
                       .ldb = ldb,
                       .trans_b = trans_b,
                       .c = c,
                       .ldc = ldc,
                       .beta = beta};
}

size_t kern_sgemm_workspace(int64_t m, int64_t n, int64_t k)
{
    /* The caller does not say whether B is transposed: a transposed B needs the larger
     * workspace (a packed block rather than one padded panel), so size for that. */
    kern_gemm g = plain(false, true, m, n, k, 1.0f, NULL, k, NULL, k, 0.0f, NULL, n);
    return kern_gemm_workspace(&g, 1);
}

void kern_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                int64_t ldc, void *workspace)
{
    kern_gemm g = plain(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    kern_gemm_run(&g, NULL, workspace);
}

void kern_sgemm_ref(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                    int64_t ldc)
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
                const double *a, int64_t lda, const double *b, int64_t ldb, double beta, double *c,
                int64_t ldc)
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
