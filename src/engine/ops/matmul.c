/* matmul.c - MatMul (numpy matmul semantics) and Gemm.
 *
 * float32 goes through the GEMM driver (kernels/gemm.h). A constant B (the weights of a
 * Linear layer) is packed into GEMM panels once, at load, for every context to share. Gemm's
 * bias, when it is a vector over the output columns, and a fused activation (Relu, Clip,
 * LeakyRelu moved here by the graph pass) are applied while each tile of the output is still
 * in registers. MatMul takes the same kind of bias as an optional third input, which ONNX's
 * MatMul does not have: it is there for a graph pass fusing MatMul + Add of a constant
 * vector. Threads split one large product, or take whole matrices of a batched MatMul
 * (attention) when there are enough of them. float16 is widened to float32 in the workspace,
 * multiplied and narrowed back; float64 uses kern_dgemm; MatMul's integer types use plain
 * loops with wrap-around arithmetic, as numpy does.
 */
#include "engine/op.h"

#include "engine/kernels/gemm.h"
#include "engine/kernels/half.h"
#include "engine/kernels/parallel.h"
#include "engine/kernels/simd.h"

#include <stdlib.h>
#include <string.h>

KERN_FAST_LOOPS

static const eng_tensor *input(const eng_op_call *call, int i)
{
    return i < call->n_in ? call->in[i] : NULL;
}

static size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

/* A constant B packed at load (both operators). */
typedef struct mm_packed {
    kern_packed *b;
    int64_t k, n;
} mm_packed;

static void mm_unpack(void *packed)
{
    mm_packed *mp = packed;
    if (!mp) return;
    kern_packed_free(mp->b);
    free(mp);
}

/* Maps the fused activation of NODE onto the GEMM epilogue's. */
static kern_epilogue node_epilogue(const eng_node *node)
{
    const eng_fused_activation *fa = eng_node_activation(node);
    kern_epilogue e = {.act = KERN_ACT_NONE, .a = fa->a, .b = fa->b};
    switch (fa->kind) {
    case ENG_ACT_RELU: e.act = KERN_ACT_RELU; break;
    case ENG_ACT_CLIP: e.act = KERN_ACT_CLIP; break;
    case ENG_ACT_LEAKY_RELU: e.act = KERN_ACT_LEAKY; break;
    default: break;
    }
    return e;
}

/* The fused activation for the types the GEMM epilogue does not see. Integer tensors only
 * ever get Relu fused (Clip's bounds must be float constants, LeakyRelu is float only), and
 * Relu has no unsigned types. */
#define DEFINE_ACTIVATE(name, T)                                                              \
    static void name(T *y, int64_t n, const eng_fused_activation *fa)                        \
    {                                                                                         \
        if (fa->kind == ENG_ACT_NONE) return;                                                 \
        for (int64_t i = 0; i < n; i++) {                                                     \
            T v = y[i];                                                                       \
            if (fa->kind == ENG_ACT_RELU) {                                                   \
                v = v < 0 ? 0 : v;                                                            \
            } else if (fa->kind == ENG_ACT_CLIP) {                                            \
                v = v < fa->a ? (T)fa->a : v;                                                 \
                v = v > fa->b ? (T)fa->b : v;                                                 \
            } else if (fa->kind == ENG_ACT_LEAKY_RELU) {                                      \
                v = v < 0 ? (T)(fa->a * v) : v;                                               \
            }                                                                                 \
            y[i] = v;                                                                         \
        }                                                                                     \
    }

DEFINE_ACTIVATE(activate_f64, double)
DEFINE_ACTIVATE(activate_i32, int32_t)
DEFINE_ACTIVATE(activate_i64, int64_t)

/* ---------------------------------------------------------------------------------------
 * MatMul
 * ------------------------------------------------------------------------------------- */

/* How a MatMul maps onto a sequence of 2-D products. */
typedef struct mm_plan {
    int64_t m, n, k;
    int out_rank;
    int64_t out_dims[FERRY_MAX_RANK];
    int batch_rank;
    int64_t batch[FERRY_MAX_RANK];   /* broadcast batch dims */
    int64_t a_step[FERRY_MAX_RANK];  /* matrices to skip in A per batch index; 0: broadcast */
    int64_t b_step[FERRY_MAX_RANK];
    int64_t batch_count;
    bool fold; /* B is one matrix shared by every batch: run A as one (batch * m) x k matrix */
} mm_plan;

static ferry_status *mm_make_plan(const eng_tensor *a, const eng_tensor *b, mm_plan *p)
{
    char s1[128], s2[128];
    if (a->rank == 0 || b->rank == 0)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "MatMul needs inputs of at least 1 dim, got shapes %s and %s",
                          eng_shape_str(a, s1, sizeof(s1)), eng_shape_str(b, s2, sizeof(s2)));
    /* A 1-D A is a row vector [1, K], a 1-D B a column vector [K, 1]; the unit dim is dropped
     * from the output. */
    int a_batch = a->rank >= 2 ? a->rank - 2 : 0;
    int b_batch = b->rank >= 2 ? b->rank - 2 : 0;
    p->m = a->rank >= 2 ? a->dims[a->rank - 2] : 1;
    p->k = a->dims[a->rank - 1];
    int64_t bk = b->rank >= 2 ? b->dims[b->rank - 2] : b->dims[0];
    p->n = b->rank >= 2 ? b->dims[b->rank - 1] : 1;
    if (bk != p->k)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "inner dimensions do not match: A has shape %s and B has shape %s",
                          eng_shape_str(a, s1, sizeof(s1)), eng_shape_str(b, s2, sizeof(s2)));

    int rank = a_batch > b_batch ? a_batch : b_batch;
    p->batch_rank = rank;
    p->batch_count = 1;
    int64_t a_count = 1, b_count = 1; /* matrices spanned by the dims to the right */
    for (int d = rank - 1; d >= 0; d--) {
        int ad = d - (rank - a_batch), bd = d - (rank - b_batch);
        int64_t x = ad >= 0 ? a->dims[ad] : 1;
        int64_t y = bd >= 0 ? b->dims[bd] : 1;
        if (x != y && x != 1 && y != 1)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "batch dimensions of A %s and B %s cannot be broadcast together",
                              eng_shape_str(a, s1, sizeof(s1)),
                              eng_shape_str(b, s2, sizeof(s2)));
        p->batch[d] = x > y ? x : y;
        if (x == 0 || y == 0) p->batch[d] = 0;
        p->a_step[d] = x == 1 ? 0 : a_count;
        p->b_step[d] = y == 1 ? 0 : b_count;
        a_count *= x;
        b_count *= y;
        p->batch_count *= p->batch[d];
    }
    p->fold = b_count == 1 && a_count == p->batch_count;

    p->out_rank = 0;
    for (int d = 0; d < rank; d++) p->out_dims[p->out_rank++] = p->batch[d];
    if (a->rank >= 2) p->out_dims[p->out_rank++] = p->m;
    if (b->rank >= 2) p->out_dims[p->out_rank++] = p->n;
    return NULL;
}

/* Runs the statements for every output matrix with `batch`, `a_index` and `b_index` naming
 * the output, A and B matrices (counted in matrices, broadcast dims repeating). */
#define MM_FOR_EACH_BATCH(p, ...)                                                             \
    do {                                                                                      \
        int64_t idx_[FERRY_MAX_RANK] = {0};                                                   \
        int64_t ai_ = 0, bi_ = 0;                                                             \
        for (int64_t bt_ = 0; bt_ < (p)->batch_count; bt_++) {                                \
            int64_t batch = bt_, a_index = ai_, b_index = bi_;                                \
            __VA_ARGS__;                                                                      \
            for (int d_ = (p)->batch_rank - 1; d_ >= 0; d_--) {                               \
                ai_ += (p)->a_step[d_];                                                       \
                bi_ += (p)->b_step[d_];                                                       \
                if (++idx_[d_] < (p)->batch[d_]) break;                                       \
                ai_ -= (p)->a_step[d_] * (p)->batch[d_];                                      \
                bi_ -= (p)->b_step[d_] * (p)->batch[d_];                                      \
                idx_[d_] = 0;                                                                 \
            }                                                                                 \
            (void)batch;                                                                      \
        }                                                                                     \
    } while (0)

static bool mm_dtype_ok(ferry_dtype dt)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT:
    case FERRY_DTYPE_FLOAT16:
    case FERRY_DTYPE_DOUBLE:
    case FERRY_DTYPE_INT32:
    case FERRY_DTYPE_INT64:
    case FERRY_DTYPE_UINT32:
    case FERRY_DTYPE_UINT64: return true;
    default: return false;
    }
}

/* The (first) 2-D product of a float MatMul; data pointers are filled in per matrix. */
static kern_gemm mm_gemm(const mm_plan *p, const mm_packed *packed)
{
    int64_t m = p->fold ? p->m * p->batch_count : p->m;
    kern_gemm g = {.m = m, .n = p->n, .k = p->k, .alpha = 1.0f, .lda = p->k, .ldb = p->n,
                   .ldc = p->n};
    if (packed && packed->k == p->k && packed->n == p->n && p->fold) g.pb = packed->b;
    return g;
}

/* Batched products that do not fold into one run whole matrices per thread. */
static bool mm_by_matrix(const mm_plan *p, int slots)
{
    return !p->fold && slots > 1 && p->batch_count >= slots;
}

static size_t mm_sgemm_workspace(const mm_plan *p, const mm_packed *packed, int slots)
{
    kern_gemm g = mm_gemm(p, packed);
    if (mm_by_matrix(p, slots)) return (size_t)slots * align64(kern_gemm_workspace(&g, 1));
    return align64(kern_gemm_workspace(&g, slots));
}

static ferry_status *matmul_infer(eng_op_call *call)
{
    const eng_tensor *a = input(call, 0), *b = input(call, 1);
    if (!a || !b) return core_error(FERRY_ERR_INVALID_MODEL, "MatMul needs inputs A and B");
    if (a->dtype != b->dtype)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "inputs A (%s) and B (%s) differ in type",
                          ferry_dtype_name(a->dtype), ferry_dtype_name(b->dtype));
    if (!mm_dtype_ok(a->dtype)) return eng_bad_dtype("input A", a->dtype);
    mm_plan p;
    ferry_status *st = mm_make_plan(a, b, &p);
    if (st) return st;
    const eng_tensor *bias = input(call, 2);
    if (bias && (bias->rank < 1 || a->dtype != FERRY_DTYPE_FLOAT ||
                 bias->dtype != FERRY_DTYPE_FLOAT || eng_numel(bias) != p.n ||
                 p.n != bias->dims[bias->rank - 1]))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "a fused MatMul bias must be float32 with one value per column");
    eng_tensor *y = call->out[0];
    y->dtype = a->dtype;
    eng_set_shape(y, p.out_rank, p.out_dims);
    int slots = kern_slots(call->threads);
    if (a->dtype == FERRY_DTYPE_FLOAT) {
        call->workspace_size = mm_sgemm_workspace(&p, call->packed, slots);
    } else if (a->dtype == FERRY_DTYPE_FLOAT16) {
        call->workspace_size = mm_sgemm_workspace(&p, NULL, slots) +
                               align64((size_t)eng_numel(a) * sizeof(float)) +
                               align64((size_t)eng_numel(b) * sizeof(float)) +
                               align64((size_t)eng_numel(y) * sizeof(float));
    }
    return NULL;
}

/* Offsets, in matrices, of A and B for output matrix BT of a batched product. */
static void mm_batch_index(const mm_plan *p, int64_t bt, int64_t *ai, int64_t *bi)
{
    *ai = *bi = 0;
    for (int d = p->batch_rank - 1; d >= 0; d--) {
        int64_t i = bt % p->batch[d];
        bt /= p->batch[d];
        *ai += i * p->a_step[d];
        *bi += i * p->b_step[d];
    }
}

typedef struct mm_ctx {
    const mm_plan *p;
    const mm_packed *packed;
    const float *a, *b;
    float *y;
    char *ws;
    size_t slot_ws;
    kern_epilogue epi;
    core_threadpool *pool;
} mm_ctx;

static void mm_matrix(void *arg, int64_t bt, int slot)
{
    const mm_ctx *c = arg;
    const mm_plan *p = c->p;
    int64_t ai, bi;
    mm_batch_index(p, bt, &ai, &bi);
    kern_gemm g = mm_gemm(p, c->packed);
    g.a = c->a + ai * p->m * p->k;
    g.b = c->b + bi * p->k * p->n;
    g.c = c->y + bt * p->m * p->n;
    g.epi = c->epi;
    kern_gemm_run(&g, c->pool, c->ws + (size_t)slot * c->slot_ws);
}

static void mm_float(const eng_op_call *call, const mm_plan *p, const mm_packed *packed,
                     const float *a, const float *b, float *y, void *ws)
{
    mm_ctx c = {.p = p, .packed = packed, .a = a, .b = b, .y = y, .ws = ws,
                .epi = node_epilogue(call->node)};
    const eng_tensor *bias = input(call, 2);
    if (bias) c.epi.col_bias = bias->data;
    int slots = kern_slots(call->threads);
    if (p->fold) {
        c.pool = call->threads;
        mm_matrix(&c, 0, 0);
        return;
    }
    if (mm_by_matrix(p, slots)) {
        kern_gemm g = mm_gemm(p, packed);
        c.slot_ws = align64(kern_gemm_workspace(&g, 1));
        kern_parallel(call->threads, p->batch_count, mm_matrix, &c);
        return;
    }
    c.pool = call->threads;
    for (int64_t bt = 0; bt < p->batch_count; bt++) mm_matrix(&c, bt, 0);
}

static void mm_double(const mm_plan *p, const double *a, const double *b, double *y)
{
    int64_t m = p->m, n = p->n, k = p->k;
    MM_FOR_EACH_BATCH(p, kern_dgemm(false, false, m, n, k, 1.0, a + a_index * m * k, k,
                                    b + b_index * k * n, n, 0.0, y + batch * m * n, n));
}

/* Integer products wrap around like numpy's; unsigned arithmetic keeps that defined. */
#define DEFINE_MM_INT(name, T, U)                                                             \
    static void name(const mm_plan *p, const T *a, const T *b, T *y)                          \
    {                                                                                         \
        int64_t m = p->m, n = p->n, k = p->k;                                                 \
        MM_FOR_EACH_BATCH(p, {                                                                \
            const T *am = a + a_index * m * k;                                                \
            const T *bm = b + b_index * k * n;                                                \
            T *ym = y + batch * m * n;                                                        \
            for (int64_t i = 0; i < m; i++) {                                                 \
                U *restrict row = (U *)(ym + i * n);                                          \
                for (int64_t j = 0; j < n; j++) row[j] = 0;                                   \
                for (int64_t q = 0; q < k; q++) {                                             \
                    U s = (U)am[i * k + q];                                                   \
                    const T *restrict brow = bm + q * n;                                      \
                    for (int64_t j = 0; j < n; j++) row[j] += s * (U)brow[j];                 \
                }                                                                             \
            }                                                                                 \
        });                                                                                   \
    }

DEFINE_MM_INT(mm_i32, int32_t, uint32_t)
DEFINE_MM_INT(mm_i64, int64_t, uint64_t)
DEFINE_MM_INT(mm_u32, uint32_t, uint32_t)
DEFINE_MM_INT(mm_u64, uint64_t, uint64_t)

static ferry_status *matmul_run(eng_op_call *call)
{
    const eng_tensor *a = call->in[0], *b = call->in[1];
    eng_tensor *y = call->out[0];
    mm_plan p;
    ferry_status *st = mm_make_plan(a, b, &p);
    if (st) return st;
    const eng_fused_activation *fa = eng_node_activation(call->node);
    int64_t ny = eng_numel(y);
    switch (a->dtype) {
    case FERRY_DTYPE_FLOAT:
        mm_float(call, &p, call->packed, a->data, b->data, y->data, call->workspace);
        break;
    case FERRY_DTYPE_FLOAT16: {
        char *ws = call->workspace;
        size_t gemm_ws = mm_sgemm_workspace(&p, NULL, kern_slots(call->threads));
        float *fa32 = (float *)(ws + gemm_ws);
        float *fb = (float *)((char *)fa32 + align64((size_t)eng_numel(a) * sizeof(float)));
        float *fy = (float *)((char *)fb + align64((size_t)eng_numel(b) * sizeof(float)));
        kern_half_to_float(a->data, fa32, eng_numel(a));
        kern_half_to_float(b->data, fb, eng_numel(b));
        mm_float(call, &p, NULL, fa32, fb, fy, ws);
        kern_float_to_half(fy, y->data, ny);
        break;
    }
    case FERRY_DTYPE_DOUBLE:
        mm_double(&p, a->data, b->data, y->data);
        activate_f64(y->data, ny, fa);
        break;
    case FERRY_DTYPE_INT32:
        mm_i32(&p, a->data, b->data, y->data);
        activate_i32(y->data, ny, fa);
        break;
    case FERRY_DTYPE_INT64:
        mm_i64(&p, a->data, b->data, y->data);
        activate_i64(y->data, ny, fa);
        break;
    case FERRY_DTYPE_UINT32:
        mm_u32(&p, a->data, b->data, y->data);
        break;
    case FERRY_DTYPE_UINT64:
        mm_u64(&p, a->data, b->data, y->data);
        break;
    default: return eng_bad_dtype("input A", a->dtype);
    }
    return NULL;
}

/* Packs a constant float32 B that is one matrix (any leading dims of 1) at load. */
static ferry_status *matmul_pack(const eng_node *node, const eng_tensor *const *inputs,
                                 const void *state, void **packed)
{
    (void)node, (void)state;
    const eng_tensor *b = inputs[1];
    *packed = NULL;
    if (!b || b->dtype != FERRY_DTYPE_FLOAT || b->rank < 2 || !b->data) return NULL;
    int64_t k = b->dims[b->rank - 2], n = b->dims[b->rank - 1];
    if (k <= 0 || n <= 0 || eng_numel(b) != k * n) return NULL;
    mm_packed *mp = calloc(1, sizeof(*mp));
    if (!mp) return core_error(FERRY_ERR_NO_MEMORY, "out of memory packing weights");
    mp->k = k;
    mp->n = n;
    mp->b = kern_pack_b(KERN_ISA_AUTO, false, k, n, b->data, n);
    if (!mp->b) {
        mm_unpack(mp);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory packing weights");
    }
    *packed = mp;
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Gemm: Y = alpha * op(A) * op(B) + beta * C
 * ------------------------------------------------------------------------------------- */

typedef struct gemm_attrs {
    bool trans_a, trans_b;
    float alpha, beta;
} gemm_attrs;

static ferry_status *gemm_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    int64_t ta = eng_attr_int(node, "transA", 0), tb = eng_attr_int(node, "transB", 0);
    if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attributes transA and transB must be 0 or 1, got %lld and %lld",
                          (long long)ta, (long long)tb);
    gemm_attrs *g = malloc(sizeof(*g));
    if (!g) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    g->trans_a = ta;
    g->trans_b = tb;
    g->alpha = eng_attr_float(node, "alpha", 1.0f);
    g->beta = eng_attr_float(node, "beta", 1.0f);
    *state = g;
    return NULL;
}

static void gemm_fini(void *state)
{
    free(state);
}

/* The sizes of a Gemm call. */
typedef struct gemm_dims {
    int64_t m, n, k;
} gemm_dims;

static ferry_status *gemm_check(const eng_op_call *call, gemm_dims *g)
{
    const gemm_attrs *at = call->state;
    const eng_tensor *a = input(call, 0), *b = input(call, 1), *c = input(call, 2);
    if (!a || !b) return core_error(FERRY_ERR_INVALID_MODEL, "Gemm needs inputs A and B");
    if (!c && call->opset < 11)
        return core_error(FERRY_ERR_INVALID_MODEL, "input C is required before opset 11");
    if (a->dtype != b->dtype || (c && c->dtype != a->dtype))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "inputs A, B and C must share one type");
    if (a->dtype != FERRY_DTYPE_FLOAT && a->dtype != FERRY_DTYPE_FLOAT16 &&
        a->dtype != FERRY_DTYPE_DOUBLE)
        return eng_bad_dtype("input A", a->dtype);
    if (a->rank != 2) return core_error(FERRY_ERR_INVALID_ARGUMENT,
                                        "input A: expected 2 dims, got %d", a->rank);
    if (b->rank != 2) return core_error(FERRY_ERR_INVALID_ARGUMENT,
                                        "input B: expected 2 dims, got %d", b->rank);
    g->m = at->trans_a ? a->dims[1] : a->dims[0];
    g->k = at->trans_a ? a->dims[0] : a->dims[1];
    int64_t bk = at->trans_b ? b->dims[1] : b->dims[0];
    g->n = at->trans_b ? b->dims[0] : b->dims[1];
    char s1[128], s2[128];
    if (bk != g->k)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "inner dimensions do not match: A%s is %s and B%s is %s",
                          at->trans_a ? " (transposed)" : "", eng_shape_str(a, s1, sizeof(s1)),
                          at->trans_b ? " (transposed)" : "", eng_shape_str(b, s2, sizeof(s2)));
    if (c) {
        /* C broadcasts one way, to [M, N]. */
        bool ok = c->rank <= 2;
        for (int d = 0; ok && d < c->rank; d++) {
            int64_t want = d == c->rank - 1 ? g->n : g->m;
            ok = c->dims[d] == 1 || c->dims[d] == want;
        }
        if (!ok)
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input C of shape %s cannot be broadcast to the output [%lld,%lld]",
                              eng_shape_str(c, s1, sizeof(s1)), (long long)g->m,
                              (long long)g->n);
    }
    return NULL;
}

/* The GEMM of a Gemm call; data pointers are filled in by the caller. */
static kern_gemm gemm_desc(const gemm_attrs *at, const gemm_dims *g, const mm_packed *packed)
{
    kern_gemm d = {.m = g->m, .n = g->n, .k = g->k, .alpha = at->alpha,
                   .trans_a = at->trans_a, .lda = at->trans_a ? g->m : g->k,
                   .trans_b = at->trans_b, .ldb = at->trans_b ? g->k : g->n, .ldc = g->n};
    if (packed && packed->b && packed->k == g->k && packed->n == g->n) d.pb = packed->b;
    return d;
}

static ferry_status *gemm_infer(eng_op_call *call)
{
    gemm_dims g;
    ferry_status *st = gemm_check(call, &g);
    if (st) return st;
    eng_tensor *y = call->out[0];
    y->dtype = call->in[0]->dtype;
    int64_t dims[2] = {g.m, g.n};
    eng_set_shape(y, 2, dims);
    if (y->dtype == FERRY_DTYPE_DOUBLE) return NULL;
    const mm_packed *packed = y->dtype == FERRY_DTYPE_FLOAT ? call->packed : NULL;
    kern_gemm d = gemm_desc(call->state, &g, packed);
    call->workspace_size = align64(kern_gemm_workspace(&d, kern_slots(call->threads)));
    if (y->dtype == FERRY_DTYPE_FLOAT16) {
        const eng_tensor *c = input(call, 2);
        call->workspace_size += align64((size_t)eng_numel(call->in[0]) * sizeof(float)) +
                                align64((size_t)eng_numel(call->in[1]) * sizeof(float)) +
                                align64((size_t)(g.m * g.n) * sizeof(float)) +
                                (c ? align64((size_t)eng_numel(c) * sizeof(float)) : 0);
    }
    return NULL;
}

/* Y[M, N] = broadcast C, element by element from whichever of C's dims are 1. */
#define DEFINE_FILL_BIAS(name, T)                                                             \
    static void name(T *y, const T *c, const eng_tensor *ct, int64_t m, int64_t n)           \
    {                                                                                         \
        int64_t cm = ct->rank == 2 ? ct->dims[0] : 1;                                         \
        int64_t cn = ct->rank >= 1 ? ct->dims[ct->rank - 1] : 1;                              \
        for (int64_t i = 0; i < m; i++) {                                                     \
            const T *crow = c + (cm == 1 ? 0 : i * cn);                                       \
            T *yrow = y + i * n;                                                              \
            if (cn == 1)                                                                      \
                for (int64_t j = 0; j < n; j++) yrow[j] = crow[0];                            \
            else                                                                              \
                memcpy(yrow, crow, (size_t)n * sizeof(T));                                    \
        }                                                                                     \
    }

DEFINE_FILL_BIAS(fill_bias_f32, float)
DEFINE_FILL_BIAS(fill_bias_f64, double)

/* Whether C is one value per output column (shape [N] or [1, N]): the epilogue adds it. */
static bool c_is_row(const eng_tensor *c, int64_t n)
{
    return (c->rank == 1 && c->dims[0] == n) ||
           (c->rank == 2 && c->dims[0] == 1 && c->dims[1] == n);
}

static ferry_status *gemm_run(eng_op_call *call)
{
    const gemm_attrs *at = call->state;
    gemm_dims g;
    ferry_status *st = gemm_check(call, &g);
    if (st) return st;
    const eng_tensor *a = call->in[0], *b = call->in[1], *c = input(call, 2);
    eng_tensor *y = call->out[0];
    bool use_c = c && at->beta != 0.0f;
    int64_t lda = at->trans_a ? g.m : g.k, ldb = at->trans_b ? g.k : g.n;
    if (y->dtype == FERRY_DTYPE_DOUBLE) {
        if (use_c) fill_bias_f64(y->data, c->data, c, g.m, g.n);
        kern_dgemm(at->trans_a, at->trans_b, g.m, g.n, g.k, at->alpha, a->data, lda, b->data,
                   ldb, use_c ? at->beta : 0.0, y->data, g.n);
        activate_f64(y->data, g.m * g.n, eng_node_activation(call->node));
        return NULL;
    }
    const mm_packed *packed = y->dtype == FERRY_DTYPE_FLOAT ? call->packed : NULL;
    kern_gemm d = gemm_desc(at, &g, packed);
    char *ws = call->workspace;
    const float *fa = a->data, *fb = b->data, *fc = c ? c->data : NULL;
    float *fy = y->data;
    if (y->dtype == FERRY_DTYPE_FLOAT16) {
        char *p = ws + align64(kern_gemm_workspace(&d, kern_slots(call->threads)));
        float *wa = (float *)p;
        p += align64((size_t)eng_numel(a) * sizeof(float));
        float *wb = (float *)p;
        p += align64((size_t)eng_numel(b) * sizeof(float));
        fy = (float *)p;
        p += align64((size_t)(g.m * g.n) * sizeof(float));
        kern_half_to_float(a->data, wa, eng_numel(a));
        kern_half_to_float(b->data, wb, eng_numel(b));
        if (c) {
            float *wc = (float *)p;
            kern_half_to_float(c->data, wc, eng_numel(c));
            fc = wc;
        }
        fa = wa;
        fb = wb;
    }
    d.a = fa;
    d.b = fb;
    d.c = fy;
    d.epi = node_epilogue(call->node);
    if (use_c && at->beta == 1.0f && c_is_row(c, g.n)) {
        d.epi.col_bias = fc;
    } else if (use_c) {
        fill_bias_f32(fy, fc, c, g.m, g.n);
        d.beta = at->beta;
    }
    kern_gemm_run(&d, call->threads, ws);
    if (y->dtype == FERRY_DTYPE_FLOAT16) kern_float_to_half(fy, y->data, g.m * g.n);
    return NULL;
}

/* Packs a constant float32 B at load. (C is left alone: the hook cannot tell whether the
 * node has a third input, and the common bias, a vector with beta 1, needs no preparing.) */
static ferry_status *gemm_pack(const eng_node *node, const eng_tensor *const *inputs,
                               const void *state, void **packed)
{
    (void)node;
    const gemm_attrs *at = state;
    const eng_tensor *b = inputs[1];
    *packed = NULL;
    if (!b || b->dtype != FERRY_DTYPE_FLOAT || b->rank != 2 || !b->data) return NULL;
    int64_t k = at->trans_b ? b->dims[1] : b->dims[0], n = at->trans_b ? b->dims[0] : b->dims[1];
    if (k <= 0 || n <= 0) return NULL;
    mm_packed *mp = calloc(1, sizeof(*mp));
    if (!mp) return core_error(FERRY_ERR_NO_MEMORY, "out of memory packing weights");
    mp->k = k;
    mp->n = n;
    mp->b = kern_pack_b(KERN_ISA_AUTO, at->trans_b, k, n, b->data, at->trans_b ? k : n);
    if (!mp->b) {
        mm_unpack(mp);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory packing weights");
    }
    *packed = mp;
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "", .name = "MatMul", .since_version = 1, .infer = matmul_infer,
     .run = matmul_run, .pack = matmul_pack, .unpack = mm_unpack,
     .flags = ENG_OP_FUSES_ACTIVATION},
    {.domain = "", .name = "Gemm", .since_version = 1, .init = gemm_init, .fini = gemm_fini,
     .infer = gemm_infer, .run = gemm_run, .pack = gemm_pack, .unpack = mm_unpack,
     .flags = ENG_OP_FUSES_ACTIVATION},
};

const eng_op_table eng_ops_linalg = {ops, sizeof(ops) / sizeof(ops[0])};
