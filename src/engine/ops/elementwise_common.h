/* elementwise_common.h - machinery shared by elementwise.c, unary.c and logic.c.
 *
 * broadcast_apply() merges the output's dimensions into as few runs as the input layouts
 * allow and calls a typed row function per run, split across the call's thread pool;
 * map_apply() runs a map function over a contiguous tensor. Also the dtype lists that generate
 * kernels per type, the legacy (opset < 7) `broadcast`/`axis` attributes, and small checks.
 *
 * Everything here is static inline, so that a file using only part of it compiles cleanly.
 */
#ifndef ENGINE_OPS_ELEMENTWISE_COMMON_H
#define ENGINE_OPS_ELEMENTWISE_COMMON_H

#include "engine/op.h"
#include "engine/ops/elementwise_vec.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* N output elements from rows of the inputs; S[k] is 1 where input k advances along the row
 * and 0 where it is broadcast. P carries operator parameters. */
typedef void (*row_fn)(void *out, const void *const *in, const int *s, int64_t n, const void *p);
/* N contiguous elements of one input. */
typedef void (*map_fn)(void *out, const void *in, int64_t n, const void *p);

#define MAX_IN 3 /* Where */

/* Elements per parallel work item: enough to hide the pool's hand-off for cheap operations,
 * smaller where each element costs tens of instructions (libm calls). */
#define GRAIN_CHEAP 32768
#define GRAIN_MATH  4096

/* ---------------------------------------------------------------------------------------
 * Type lists. X(A, DTYPE, T, SFX, CS, LD, ST): storage type T, kernel-name suffix SFX, compute
 * suffix CS naming the scalar helpers and their type CT_##CS, LD/ST converting T <-> CT.
 * ------------------------------------------------------------------------------------- */

#define ID(v) (v)

#define FLOAT_TYPES(X, A)                                                                          \
    X(A, FLOAT, float, f32, f, ID, ID)                                                             \
    X(A, DOUBLE, double, f64, d, ID, ID)                                                           \
    X(A, FLOAT16, uint16_t, f16, f, ew_half_to_float, ew_float_to_half)                            \
    X(A, BFLOAT16, uint16_t, bf16, f, core_bf16_to_float, ew_float_to_bf16)
#define SINT_TYPES(X, A)                                                                           \
    X(A, INT8, int8_t, i8, i8, ID, ID)                                                             \
    X(A, INT16, int16_t, i16, i16, ID, ID)                                                         \
    X(A, INT32, int32_t, i32, i32, ID, ID)                                                         \
    X(A, INT64, int64_t, i64, i64, ID, ID)
#define UINT_TYPES(X, A)                                                                           \
    X(A, UINT8, uint8_t, u8, u8, ID, ID)                                                           \
    X(A, UINT16, uint16_t, u16, u16, ID, ID)                                                       \
    X(A, UINT32, uint32_t, u32, u32, ID, ID)                                                       \
    X(A, UINT64, uint64_t, u64, u64, ID, ID)
#define BOOL_TYPE(X, A)    X(A, BOOL, uint8_t, b, b, ID, ID)
#define INT_TYPES(X, A)    SINT_TYPES(X, A) UINT_TYPES(X, A)
#define NUM_TYPES(X, A)    FLOAT_TYPES(X, A) INT_TYPES(X, A)
#define SIGNED_TYPES(X, A) FLOAT_TYPES(X, A) SINT_TYPES(X, A)

#define CT_f   float
#define CT_d   double
#define CT_i8  int8_t
#define CT_i16 int16_t
#define CT_i32 int32_t
#define CT_i64 int64_t
#define CT_u8  uint8_t
#define CT_u16 uint16_t
#define CT_u32 uint32_t
#define CT_u64 uint64_t
#define CT_b   uint8_t

/* ---------------------------------------------------------------------------------------
 * Kernel generators
 * ------------------------------------------------------------------------------------- */

/* Binary row OP_SFX: out = OP_CS(a, b), output type TO. */
#define DEF_ROW(OP, TO, STO, T, SFX, CS, LD)                                                       \
    static void row_##OP##_##SFX(void *o_, const void *const *in, const int *s, int64_t n,         \
                                 const void *p)                                                    \
    {                                                                                              \
        (void)p;                                                                                   \
        TO *o = o_;                                                                                \
        const T *a = in[0], *b = in[1];                                                            \
        if (s[0] && s[1]) {                                                                        \
            EW_VLOOP(TO, o, n, STO(OP##_##CS(LD(a[i]), LD(b[i]))));                                \
        } else if (s[0]) {                                                                         \
            CT_##CS y = LD(b[0]);                                                                  \
            EW_VLOOP(TO, o, n, STO(OP##_##CS(LD(a[i]), y)));                                       \
        } else if (s[1]) {                                                                         \
            CT_##CS x = LD(a[0]);                                                                  \
            EW_VLOOP(TO, o, n, STO(OP##_##CS(x, LD(b[i]))));                                       \
        } else {                                                                                   \
            TO v = STO(OP##_##CS(LD(a[0]), LD(b[0])));                                             \
            for (int64_t i = 0; i < n; i++) o[i] = v;                                              \
        }                                                                                          \
    }
#define DEF_BIN(OP, DT, T, SFX, CS, LD, ST)   DEF_ROW(OP, T, ST, T, SFX, CS, LD)
#define DEF_CMP(OP, DT, T, SFX, CS, LD, ST)   DEF_ROW(OP, uint8_t, ID, T, SFX, CS, LD)
#define ROW_ENTRY(OP, DT, T, SFX, CS, LD, ST) [FERRY_DTYPE_##DT] = row_##OP##_##SFX,

/* Unary map OP_SFX: out = OP_CS(a), output type TO. */
#define DEF_MAP_TO(OP, TO, STO, T, SFX, CS, LD)                                                    \
    static void map_##OP##_##SFX(void *o_, const void *a_, int64_t n, const void *p)               \
    {                                                                                              \
        (void)p;                                                                                   \
        TO *o = o_;                                                                                \
        const T *a = a_;                                                                           \
        EW_VLOOP(TO, o, n, STO(OP##_##CS(LD(a[i]))));                                              \
    }
#define DEF_MAP(OP, DT, T, SFX, CS, LD, ST)   DEF_MAP_TO(OP, T, ST, T, SFX, CS, LD)
#define DEF_PRED(OP, DT, T, SFX, CS, LD, ST)  DEF_MAP_TO(OP, uint8_t, ID, T, SFX, CS, LD)
#define MAP_ENTRY(OP, DT, T, SFX, CS, LD, ST) [FERRY_DTYPE_##DT] = map_##OP##_##SFX,

/* ---------------------------------------------------------------------------------------
 * Shared checks
 * ------------------------------------------------------------------------------------- */

/* Inputs 0..NEED-1 present, at most MAX inputs, output 0 requested. */
static inline ferry_status *check_io(const eng_op_call *c, int need, int max)
{
    if (c->n_in < need || c->n_in > max) {
        if (need == max)
            return core_error(FERRY_ERR_INVALID_MODEL, "expected %d input%s, got %d", need,
                              need == 1 ? "" : "s", c->n_in);
        return core_error(FERRY_ERR_INVALID_MODEL, "expected %d to %d inputs, got %d", need, max,
                          c->n_in);
    }
    for (int i = 0; i < need; i++)
        if (!c->in[i]) return core_error(FERRY_ERR_INVALID_MODEL, "input %d is missing", i);
    if (c->n_out < 1 || !c->out[0])
        return core_error(FERRY_ERR_INVALID_MODEL, "the output is missing");
    return NULL;
}

/* True when DT can index the kernel tables. */
static inline bool dt_valid(ferry_dtype dt)
{
    return (unsigned)dt < FERRY_DTYPE_COUNT;
}

static inline ferry_status *dtype_mismatch(const char *what, ferry_dtype got, const char *ref,
                                           ferry_dtype want)
{
    return core_error(FERRY_ERR_INVALID_MODEL, "%s: dtype %s does not match %s's %s", what,
                      ferry_dtype_name(got), ref, ferry_dtype_name(want));
}

static inline ferry_status *no_memory(void)
{
    return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
}

/* A heap copy of SIZE bytes at SRC for an operator's state. */
static inline ferry_status *save_state(const void *src, size_t size, void **state)
{
    void *p = malloc(size);
    if (!p) return no_memory();
    memcpy(p, src, size);
    *state = p;
    return NULL;
}

/* Copies IN to OUT (same size) unless they are the same buffer. */
static inline void copy_tensor(eng_tensor *out, const eng_tensor *in)
{
    size_t n = eng_nbytes(in);
    if (n && out->data != in->data) memmove(out->data, in->data, n);
}

/* Product of DIMS[FROM..TO). */
static inline int64_t dims_prod(const int64_t *dims, int from, int to)
{
    int64_t n = 1;
    for (int i = from; i < to; i++) n *= dims[i];
    return n;
}

/* ---------------------------------------------------------------------------------------
 * Broadcasting
 * ------------------------------------------------------------------------------------- */

/* OUT computed from inputs broadcast to its shape, as a list of rows. */
typedef struct bcast_plan {
    int nin, nd;
    int64_t dims[FERRY_MAX_RANK];        /* merged dimensions; the last is the row */
    int64_t str[MAX_IN][FERRY_MAX_RANK]; /* element strides of each input along them */
    const char *base[MAX_IN];
    int64_t esz[MAX_IN];
    int s[MAX_IN]; /* 1 where an input advances along the row, 0 where it is broadcast */
    char *out;
    int64_t osz;
    row_fn fn;
    const void *p;
} bcast_plan;

static inline void bcast_prepare(bcast_plan *pl, eng_tensor *out, const eng_tensor *const *ins,
                                 int nin, row_fn fn, const void *p)
{
    int rank = out->rank;
    int64_t full[MAX_IN][FERRY_MAX_RANK];
    for (int k = 0; k < nin; k++) {
        const eng_tensor *t = ins[k];
        int off = rank - t->rank;
        int64_t stride = 1;
        for (int d = rank - 1; d >= 0; d--) {
            int64_t len = d >= off ? t->dims[d - off] : 1;
            full[k][d] = len == 1 ? 0 : stride;
            stride *= len;
        }
    }

    /* Drop size-1 dimensions and merge neighbours that every input walks contiguously (or
     * broadcasts over both); a same-shape or scalar operation ends up as one row. */
    int nd = 0;
    for (int d = 0; d < rank; d++) {
        int64_t len = out->dims[d];
        if (len == 1) continue;
        bool merge = nd > 0;
        for (int k = 0; k < nin && merge; k++) merge = pl->str[k][nd - 1] == full[k][d] * len;
        if (merge) {
            pl->dims[nd - 1] *= len;
            for (int k = 0; k < nin; k++) pl->str[k][nd - 1] = full[k][d];
        } else {
            pl->dims[nd] = len;
            for (int k = 0; k < nin; k++) pl->str[k][nd] = full[k][d];
            nd++;
        }
    }
    if (nd == 0) {
        pl->dims[0] = 1;
        for (int k = 0; k < nin; k++) pl->str[k][0] = 0;
        nd = 1;
    }
    pl->nin = nin;
    pl->nd = nd;
    for (int k = 0; k < nin; k++) {
        pl->base[k] = ins[k]->data;
        pl->esz[k] = (int64_t)ferry_dtype_size(ins[k]->dtype);
        /* The innermost stride is 1 or 0: nothing but size-1 dimensions follows it. */
        pl->s[k] = pl->str[k][nd - 1] != 0;
    }
    pl->out = out->data;
    pl->osz = (int64_t)ferry_dtype_size(out->dtype);
    pl->fn = fn;
    pl->p = p;
}

/* Output elements [BEGIN, END): locates the first row once, then walks rows with an odometer
 * so that no division happens per row. */
static inline void bcast_range(void *arg, int64_t begin, int64_t end)
{
    const bcast_plan *pl = arg;
    int nd = pl->nd, nin = pl->nin;
    int64_t inner = pl->dims[nd - 1];
    int64_t row = begin / inner, off = begin % inner;
    int64_t idx[FERRY_MAX_RANK];
    const char *ptr[MAX_IN];
    for (int k = 0; k < nin; k++) ptr[k] = pl->base[k];
    for (int d = nd - 2; d >= 0; d--) {
        idx[d] = row % pl->dims[d];
        row /= pl->dims[d];
        for (int k = 0; k < nin; k++) ptr[k] += idx[d] * pl->str[k][d] * pl->esz[k];
    }
    char *o = pl->out + begin * pl->osz;
    int64_t left = end - begin;
    for (;;) {
        int64_t len = inner - off < left ? inner - off : left;
        const void *rp[MAX_IN];
        for (int k = 0; k < nin; k++) rp[k] = ptr[k] + off * pl->s[k] * pl->esz[k];
        pl->fn(o, rp, pl->s, len, pl->p);
        o += len * pl->osz;
        left -= len;
        if (left <= 0) break;
        off = 0;
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < pl->dims[d]) {
                for (int k = 0; k < nin; k++) ptr[k] += pl->str[k][d] * pl->esz[k];
                break;
            }
            idx[d] = 0;
            for (int k = 0; k < nin; k++) ptr[k] -= pl->str[k][d] * (pl->dims[d] - 1) * pl->esz[k];
        }
    }
}

/* Computes OUT from NIN inputs whose shapes broadcast to OUT's, split across the call's thread
 * pool in runs of at least GRAIN elements. Nothing happens for an empty OUT. */
static inline void broadcast_apply(const eng_op_call *c, eng_tensor *out,
                                   const eng_tensor *const *ins, int nin, row_fn fn, const void *p,
                                   int64_t grain)
{
    int64_t n = eng_numel(out);
    if (n == 0) return;
    bcast_plan pl;
    bcast_prepare(&pl, out, ins, nin, fn, p);
    core_parallel_for(c->threads, bcast_range, &pl, n, grain);
}

typedef struct map_job {
    map_fn fn;
    char *out;
    const char *in;
    int64_t isz, osz;
    const void *p;
} map_job;

static inline void map_range(void *arg, int64_t begin, int64_t end)
{
    const map_job *j = arg;
    j->fn(j->out + begin * j->osz, j->in + begin * j->isz, end - begin, j->p);
}

/* OUT = FN(IN) elementwise over N elements, split across the call's thread pool. */
static inline void map_apply(const eng_op_call *c, eng_tensor *out, const eng_tensor *in, map_fn fn,
                             const void *p, int64_t grain)
{
    map_job j = {.fn = fn, .out = out->data, .in = in->data, .p = p};
    j.isz = (int64_t)ferry_dtype_size(in->dtype);
    j.osz = (int64_t)ferry_dtype_size(out->dtype);
    core_parallel_for(c->threads, map_range, &j, eng_numel(in), grain);
}

/* ---------------------------------------------------------------------------------------
 * Legacy broadcasting (opset < 7): with broadcast=1, B's shape lines up with a contiguous run
 * of A's dimensions starting at `axis` (by default its trailing ones).
 * ------------------------------------------------------------------------------------- */

typedef struct legacy_bcast {
    bool has_axis;
    int64_t axis;
} legacy_bcast;

/* Without broadcast=1 the state stays NULL and the shapes go through numpy broadcasting, a
 * superset of the exact match that the old opsets required. */
static inline ferry_status *legacy_init(const eng_node *node, int opset, void **state)
{
    *state = NULL;
    if (opset >= 7 || !eng_attr_int(node, "broadcast", 0)) return NULL;
    legacy_bcast lb = {eng_attr_has(node, "axis"), eng_attr_int(node, "axis", 0)};
    return save_state(&lb, sizeof(lb), state);
}

/* B as the numpy-broadcastable view that legacy broadcasting means: B's dims placed at AXIS
 * within A's rank, 1 elsewhere. Without state, B is used as is. */
static inline ferry_status *legacy_view(const legacy_bcast *lb, const eng_tensor *a,
                                        const eng_tensor *b, eng_tensor *view)
{
    *view = *b;
    if (!lb) return NULL;
    char s1[128], s2[128];
    int ra = a->rank, rb = b->rank;
    int64_t axis = lb->has_axis ? lb->axis : ra - rb;
    if (axis < 0) axis += ra;
    if (rb > ra)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input B: shape %s has more dimensions than input A's %s",
                          eng_shape_str(b, s1, sizeof(s1)), eng_shape_str(a, s2, sizeof(s2)));
    if (axis < 0 || axis > ra - rb)
        return core_error(
            FERRY_ERR_INVALID_ARGUMENT, "input B: shape %s does not fit input A's %s at axis %lld",
            eng_shape_str(b, s1, sizeof(s1)), eng_shape_str(a, s2, sizeof(s2)), (long long)axis);
    view->rank = ra;
    for (int d = 0; d < ra; d++) {
        int64_t len = d >= axis && d < axis + rb ? b->dims[d - axis] : 1;
        if (len != 1 && len != a->dims[d])
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input B: shape %s does not match input A's %s at axis %lld",
                              eng_shape_str(b, s1, sizeof(s1)), eng_shape_str(a, s2, sizeof(s2)),
                              (long long)axis);
        view->dims[d] = len;
    }
    return NULL;
}

#endif
