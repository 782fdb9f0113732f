/* layout_copy.c - the strided gather behind Transpose, Slice and Expand.
 *
 * eng_copy_strided() writes a dense row-major tensor whose element (i0, i1, ...) is read from
 * SRC at element offset i0*s0 + i1*s1 + ...; strides may be zero (broadcast) or negative
 * (reversed slices). The dims are first simplified: size-1 dims are dropped and neighbours that
 * are contiguous in the source are merged, so most slices, expands and many transposes become a
 * few long memcpy runs. What remains goes to one of three inner kernels: a fill (stride 0), a
 * blocked 2-D transpose when the source-contiguous dim is not the innermost one, or a plain
 * strided gather. Elements are moved with fixed-size memcpy, which compiles to single loads and
 * stores and stays correct for buffers that are not aligned to the element size.
 */
#include "engine/op.h"

#include <string.h>

/* Tile edge of the blocked transpose, in elements. Tiles walk down the source-contiguous
 * direction in the inner loop so each source row streams; 8x8 tiles measured best for 4- and
 * 8-byte elements, 16x16 for narrower ones (a tile row then spans more of a cache line). */
#define TILE(SZ) ((SZ) >= 4 ? 8 : 16)

/* Advances the odometer IDX over DIMS, keeping the two offsets in step. False once every
 * index has been visited. */
static bool next_index(int n, const int64_t *dims, const int64_t *sstr, const int64_t *dstr,
                       int64_t *idx, int64_t *soff, int64_t *doff)
{
    for (int i = n - 1; i >= 0; i--) {
        if (++idx[i] < dims[i]) {
            *soff += sstr[i];
            *doff += dstr[i];
            return true;
        }
        idx[i] = 0;
        *soff -= sstr[i] * (dims[i] - 1);
        *doff -= dstr[i] * (dims[i] - 1);
    }
    return false;
}

/* The kernels are written once per element size so that each memcpy has a constant size. */
#define DEFINE_KERNELS(SZ)                                                                         \
    static void fill_##SZ(char *d, const char *s, int64_t n)                                       \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++) memcpy(d + i * SZ, s, SZ);                                 \
    }                                                                                              \
    static void gather_##SZ(char *d, const char *s, int64_t n, int64_t st)                         \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++) memcpy(d + i * SZ, s + i * st * SZ, SZ);                   \
    }                                                                                              \
    static void tile_##SZ(char *d, const char *s, int64_t rows, int64_t cols, int64_t dst_row,     \
                          int64_t src_col)                                                         \
    {                                                                                              \
        for (int64_t c0 = 0; c0 < cols; c0 += TILE(SZ)) {                                          \
            int64_t c1 = c0 + TILE(SZ) < cols ? c0 + TILE(SZ) : cols;                              \
            for (int64_t r0 = 0; r0 < rows; r0 += TILE(SZ)) {                                      \
                int64_t r1 = r0 + TILE(SZ) < rows ? r0 + TILE(SZ) : rows;                          \
                for (int64_t r = r0; r < r1; r++) {                                                \
                    char *dp = d + (r * dst_row + c0) * SZ;                                        \
                    const char *sp = s + (r + c0 * src_col) * SZ;                                  \
                    for (int64_t c = c0; c < c1; c++, dp += SZ, sp += src_col * SZ)                \
                        memcpy(dp, sp, SZ);                                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_KERNELS(1)
DEFINE_KERNELS(2)
DEFINE_KERNELS(4)
DEFINE_KERNELS(8)
DEFINE_KERNELS(16)

/* Element sizes without a specialised kernel (none today) fall back to byte loops. */
static void fill_any(char *d, const char *s, int64_t n, size_t esz)
{
    for (int64_t i = 0; i < n; i++) memcpy(d + (size_t)i * esz, s, esz);
}

static void gather_any(char *d, const char *s, int64_t n, int64_t st, size_t esz)
{
    for (int64_t i = 0; i < n; i++) memcpy(d + (size_t)i * esz, s + i * st * (int64_t)esz, esz);
}

static void tile_any(char *d, const char *s, int64_t rows, int64_t cols, int64_t dst_row,
                     int64_t src_col, size_t esz)
{
    int64_t e = (int64_t)esz;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            memcpy(d + (r * dst_row + c) * e, s + (r + c * src_col) * e, esz);
}

static void fill(char *d, const char *s, int64_t n, size_t esz)
{
    switch (esz) {
    case 1:
        fill_1(d, s, n);
        break;
    case 2:
        fill_2(d, s, n);
        break;
    case 4:
        fill_4(d, s, n);
        break;
    case 8:
        fill_8(d, s, n);
        break;
    case 16:
        fill_16(d, s, n);
        break;
    default:
        fill_any(d, s, n, esz);
        break;
    }
}

static void gather(char *d, const char *s, int64_t n, int64_t st, size_t esz)
{
    switch (esz) {
    case 1:
        gather_1(d, s, n, st);
        break;
    case 2:
        gather_2(d, s, n, st);
        break;
    case 4:
        gather_4(d, s, n, st);
        break;
    case 8:
        gather_8(d, s, n, st);
        break;
    case 16:
        gather_16(d, s, n, st);
        break;
    default:
        gather_any(d, s, n, st, esz);
        break;
    }
}

static void tile(char *d, const char *s, int64_t rows, int64_t cols, int64_t dst_row,
                 int64_t src_col, size_t esz)
{
    switch (esz) {
    case 1:
        tile_1(d, s, rows, cols, dst_row, src_col);
        break;
    case 2:
        tile_2(d, s, rows, cols, dst_row, src_col);
        break;
    case 4:
        tile_4(d, s, rows, cols, dst_row, src_col);
        break;
    case 8:
        tile_8(d, s, rows, cols, dst_row, src_col);
        break;
    case 16:
        tile_16(d, s, rows, cols, dst_row, src_col);
        break;
    default:
        tile_any(d, s, rows, cols, dst_row, src_col, esz);
        break;
    }
}

enum inner_kind { INNER_RUN, INNER_FILL, INNER_TILE, INNER_GATHER };

void eng_copy_strided(void *dst, const void *src, size_t esz, int rank, const int64_t *dims,
                      const int64_t *strides)
{
    /* Simplify: drop size-1 dims, merge a dim into its outer neighbour when the pair is
     * contiguous in the source (this also merges runs of broadcast dims, stride 0). */
    int64_t d[FERRY_MAX_RANK], s[FERRY_MAX_RANK];
    int n = 0;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0) return;
        if (dims[i] == 1) continue;
        if (n > 0 && s[n - 1] == strides[i] * dims[i]) {
            d[n - 1] *= dims[i];
            s[n - 1] = strides[i];
            continue;
        }
        d[n] = dims[i];
        s[n] = strides[i];
        n++;
    }
    char *out = dst;
    const char *in = src;
    if (n == 0) {
        memcpy(out, in, esz);
        return;
    }
    int64_t ds[FERRY_MAX_RANK];
    ds[n - 1] = 1;
    for (int i = n - 2; i >= 0; i--) ds[i] = ds[i + 1] * d[i + 1];

    enum inner_kind kind = INNER_GATHER;
    int k = -1; /* the source-contiguous dim the tiled kernel pairs with the innermost one */
    if (s[n - 1] == 1) {
        kind = INNER_RUN;
    } else if (s[n - 1] == 0) {
        kind = INNER_FILL;
    } else {
        for (int i = n - 2; i >= 0; i--) {
            if (s[i] == 1) {
                k = i;
                kind = INNER_TILE;
                break;
            }
        }
    }

    /* The dims the odometer walks: all but the innermost, and but K for the tiled kernel. */
    int64_t od[FERRY_MAX_RANK], os[FERRY_MAX_RANK], ods[FERRY_MAX_RANK], idx[FERRY_MAX_RANK];
    int on = 0;
    for (int i = 0; i < n - 1; i++) {
        if (i == k) continue;
        od[on] = d[i];
        os[on] = s[i];
        ods[on] = ds[i];
        idx[on] = 0;
        on++;
    }
    int64_t inner = d[n - 1], e = (int64_t)esz;
    int64_t soff = 0, doff = 0;
    do {
        char *dp = out + doff * e;
        const char *sp = in + soff * e;
        switch (kind) {
        case INNER_RUN:
            memcpy(dp, sp, (size_t)(inner * e));
            break;
        case INNER_FILL:
            fill(dp, sp, inner, esz);
            break;
        case INNER_TILE:
            tile(dp, sp, d[k], inner, ds[k], s[n - 1], esz);
            break;
        case INNER_GATHER:
            gather(dp, sp, inner, s[n - 1], esz);
            break;
        }
    } while (next_index(on, od, os, ods, idx, &soff, &doff));
}
