/* test_kernels.c - differential tests of the fast math against plain reference loops.
 *
 * Kernels: the GEMM driver with every kind of operand (strided, prepacked, packed by a
 * callback, read through an indirection), epilogue and thread count, for every instruction
 * set the machine runs (portable C, AVX2, AVX-512); the one-call kern_sgemm; the depthwise 3x3
 * kernel. Outputs sit between guard values that must come back untouched, and a beta of 0 must
 * ignore the NaNs C starts with.
 * Operators: Conv (groups, strides, padding, dilation, 1-D to 3-D, fused activations, packed
 * and unpacked weights), Gemm (transposes, alpha, beta, every shape of C) and MatMul
 * (broadcast batches, constant B), built as one-node models and run through the public API on
 * one and on three threads, each instruction set forced in turn, against naive loops in
 * double precision. Shapes are random (fixed seed), odd sizes and tile edges on purpose.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/threadpool.h"
#include "engine/kernels/depthwise.h"
#include "engine/kernels/transpose.h"
#include "engine/kernels/gemm.h"
#include "ferry.h"
#include "pbw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 19 /* floats of guard before and after every output */

static const kern_isa isas[] = {KERN_ISA_PORTABLE, KERN_ISA_AVX2, KERN_ISA_AVX512};

/* ------------------------------------------------------------------------------------------
 * Random numbers and comparisons
 * ---------------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Uniform in [LO, HI]. */
static int irand(int lo, int hi)
{
    return lo + (int)(rnd() % (uint32_t)(hi - lo + 1));
}

static float frand(void)
{
    return (float)(rnd() % 20001) / 10000.0f - 1.0f;
}

static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = frand();
}

static float guard_value(size_t i)
{
    return 1e30f + (float)i;
}

/* A buffer of N floats with GUARD guard values on each side; returns the usable part. */
static float *guarded(size_t n)
{
    float *b = malloc((n + 2 * GUARD) * sizeof(float));
    assert_non_null(b);
    for (size_t i = 0; i < GUARD; i++) b[i] = b[GUARD + n + i] = guard_value(i);
    return b + GUARD;
}

static void check_guards(const float *x, size_t n, const char *what)
{
    for (size_t i = 0; i < GUARD; i++) {
        if (x[-(ptrdiff_t)GUARD + (ptrdiff_t)i] != guard_value(i) || x[n + i] != guard_value(i))
            fail_msg("%s: guard value %zu overwritten", what, i);
    }
}

static void free_guarded(float *x)
{
    free(x - GUARD);
}

static double act_ref(double x, const kern_epilogue *e)
{
    switch (e->act) {
    case KERN_ACT_RELU:
        return x < 0 ? 0 : x;
    case KERN_ACT_CLIP:
        return x < e->a ? e->a : x > e->b ? e->b : x;
    case KERN_ACT_LEAKY:
        return x < 0 ? e->a * x : x;
    default:
        return x;
    }
}

/* |GOT - WANT| within a tolerance scaled by MAG, the sum of magnitudes that made WANT. */
static void check_close(float got, double want, double mag, const char *what, size_t at)
{
    double tol = 1e-5 * (mag + 1.0);
    if (!(fabs((double)got - want) <= tol))
        fail_msg("%s: element %zu is %.7g, expected %.7g (tolerance %.3g)", what, at, got, want,
                 tol);
}

/* ------------------------------------------------------------------------------------------
 * GEMM driver
 * ---------------------------------------------------------------------------------------- */

enum { A_STRIDED, A_PACKED, A_CALLBACK, A_INDIRECT, A_KINDS };
enum { B_STRIDED, B_PACKED, B_CALLBACK, B_KINDS };

typedef struct mat {
    const float *d;
    int64_t ld;
    bool trans;
} mat;

static float mat_at(const mat *x, int64_t r, int64_t c)
{
    return x->trans ? x->d[c * x->ld + r] : x->d[r * x->ld + c];
}

static void pack_a_cb(const void *ctx, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int mr,
                      float *dst)
{
    const mat *a = ctx;
    int64_t rows = (mc + mr - 1) / mr * mr;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t p = 0; p < kc; p++)
            dst[i / mr * kc * mr + p * mr + i % mr] = i < mc ? mat_at(a, i0 + i, p0 + p) : 0.0f;
}

static void pack_b_cb(const void *ctx, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t ldd,
                      float *dst)
{
    const mat *b = ctx;
    for (int64_t p = 0; p < kc; p++)
        for (int64_t j = 0; j < ldd; j++)
            dst[p * ldd + j] = j < nc ? mat_at(b, p0 + p, j0 + j) : 0.0f;
}

typedef struct gemm_case {
    kern_isa isa;
    int64_t m, n, k;
    bool ta, tb;
    float alpha, beta;
    int akind, bkind, epi;
    core_threadpool *pool;
} gemm_case;

static void run_gemm_case(const gemm_case *t)
{
    char what[200];
    snprintf(what, sizeof(what),
             "%s m=%lld n=%lld k=%lld ta=%d tb=%d alpha=%g beta=%g A%d B%d epi%d threads=%d",
             kern_isa_name(t->isa), (long long)t->m, (long long)t->n, (long long)t->k, t->ta, t->tb,
             t->alpha, t->beta, t->akind, t->bkind, t->epi, core_threadpool_size(t->pool));
    int64_t m = t->m, n = t->n, k = t->k;
    int64_t lda = (t->ta ? m : k) + irand(0, 3), ldb = (t->tb ? k : n) + irand(0, 3);
    int64_t ldc = n + irand(0, 5);
    size_t asz = (size_t)((t->ta ? k : m) * lda) + 1, bsz = (size_t)((t->tb ? n : k) * ldb) + 1;
    size_t csz = (size_t)(m * ldc);
    float *a = malloc(asz * sizeof(float)), *b = malloc(bsz * sizeof(float));
    float *c = guarded(csz), *c0 = malloc((csz + 1) * sizeof(float));
    float *rb = malloc((size_t)(m + 1) * sizeof(float));
    float *cb = malloc((size_t)(n + 1) * sizeof(float));
    int64_t ldr = n + irand(0, 3);
    float *res = malloc((size_t)(m * ldr + 1) * sizeof(float));
    assert_true(a && b && c0 && rb && cb && res);
    fill(res, (size_t)(m * ldr) + 1);
    fill(a, asz);
    fill(b, bsz);
    fill(rb, (size_t)m + 1);
    fill(cb, (size_t)n + 1);
    for (size_t i = 0; i < csz; i++) {
        /* Padding between rows keeps a guard value: the kernel must not touch it. */
        bool pad = (int64_t)(i % (size_t)ldc) >= n;
        c0[i] = pad ? guard_value(i) : t->beta == 0.0f ? NAN : frand();
        c[i] = c0[i];
    }
    mat am = {a, lda, t->ta}, bm = {b, ldb, t->tb};

    kern_gemm g = {.m = m,
                   .n = n,
                   .k = k,
                   .isa = t->isa,
                   .alpha = t->alpha,
                   .c = c,
                   .ldc = ldc,
                   .beta = t->beta};
    kern_packed *pa = NULL, *pb = NULL;
    const float **rows = NULL;
    int64_t *off = NULL;
    switch (t->akind) {
    case A_STRIDED:
        g.a = a;
        g.lda = lda;
        g.trans_a = t->ta;
        break;
    case A_PACKED:
        pa = kern_pack_a(t->isa, t->ta, m, k, t->alpha, a, lda);
        assert_non_null(pa);
        g.pa = pa;
        break;
    case A_CALLBACK:
        g.pack_a = pack_a_cb;
        g.pack_a_ctx = &am;
        break;
    case A_INDIRECT: {
        int mr, nr;
        kern_gemm_tile(t->isa, &mr, &nr);
        int64_t padded = (m + mr - 1) / mr * mr;
        rows = malloc((size_t)padded * sizeof(*rows));
        off = malloc((size_t)(k + 1) * sizeof(*off));
        assert_true(rows && off);
        for (int64_t i = 0; i < padded; i++) {
            int64_t r = i < m ? i : m - 1;
            rows[i] = t->ta ? a + r : a + r * lda;
        }
        for (int64_t p = 0; p < k; p++) off[p] = t->ta ? p * lda : p;
        g.a_rows = rows;
        g.a_off = off;
        break;
    }
    }
    switch (t->bkind) {
    case B_STRIDED:
        g.b = b;
        g.ldb = ldb;
        g.trans_b = t->tb;
        break;
    case B_PACKED:
        pb = kern_pack_b(t->isa, t->tb, k, n, b, ldb);
        assert_non_null(pb);
        g.pb = pb;
        break;
    case B_CALLBACK:
        g.pack_b = pack_b_cb;
        g.pack_b_ctx = &bm;
        break;
    }
    static const kern_epilogue epis[] = {
        {.act = KERN_ACT_NONE},
        {.act = KERN_ACT_RELU},
        {.act = KERN_ACT_CLIP, .a = -0.3f, .b = 0.4f},
        {.act = KERN_ACT_LEAKY, .a = 0.1f},
    };
    g.epi = epis[t->epi % 4];
    if (t->epi & 4) g.epi.row_bias = rb;
    if (t->epi & 8) g.epi.col_bias = cb;
    if (t->epi & 16) {
        g.epi.residual = res;
        g.epi.ldr = ldr;
    }

    size_t wsz = kern_gemm_workspace(&g, core_threadpool_size(t->pool));
    void *ws = aligned_alloc(64, (wsz + 64) / 64 * 64);
    assert_non_null(ws);
    kern_gemm_run(&g, t->pool, ws);

    check_guards(c, csz, what);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < ldc; j++) {
            size_t at = (size_t)(i * ldc + j);
            if (j >= n) {
                if (memcmp(&c[at], &c0[at], sizeof(float)))
                    fail_msg("%s: padding at row %lld col %lld overwritten", what, (long long)i,
                             (long long)j);
                continue;
            }
            double s = 0, mag = 0;
            for (int64_t p = 0; p < k; p++) {
                double x = (double)mat_at(&am, i, p) * mat_at(&bm, p, j);
                s += x;
                mag += fabs(x);
            }
            double want = (double)t->alpha * s, wmag = fabs(t->alpha) * mag;
            if (t->beta != 0.0f) {
                want += (double)t->beta * c0[at];
                wmag += fabs((double)t->beta * c0[at]);
            }
            if (g.epi.row_bias) want += rb[i];
            if (g.epi.col_bias) want += cb[j];
            if (g.epi.residual) want += res[i * ldr + j];
            want = act_ref(want, &g.epi);
            check_close(c[at], want, wmag + 2, what, at);
        }
    }
    free(ws);
    kern_packed_free(pa);
    kern_packed_free(pb);
    free(rows);
    free(off);
    free(a);
    free(b);
    free(c0);
    free(rb);
    free(cb);
    free(res);
    free_guarded(c);
}

static int64_t pick_dim(int hi)
{
    /* Tile edges (multiples of 6, 8, 16, 32, plus or minus one) half of the time. */
    static const int edges[] = {1, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65};
    if (rnd() % 2) {
        int e = edges[rnd() % (sizeof(edges) / sizeof(edges[0]))];
        if (e <= hi) return e;
    }
    return irand(1, hi);
}

static void gemm_driver_matches_reference(void **state)
{
    (void)state;
    core_threadpool *pool3;
    assert_null(core_threadpool_create(3, &pool3));
    for (size_t s = 0; s < sizeof(isas) / sizeof(isas[0]); s++) {
        if (!kern_isa_supported(isas[s])) {
            printf("  (skipping %s: not supported here)\n", kern_isa_name(isas[s]));
            continue;
        }
        for (int iter = 0; iter < 160; iter++) {
            static const float alphas[] = {1.0f, 0.5f, -1.25f};
            static const float betas[] = {0.0f, 1.0f, 0.75f, -2.0f};
            gemm_case t = {.isa = isas[s],
                           .m = pick_dim(70),
                           .n = pick_dim(90),
                           .k = iter % 5 == 0 ? irand(250, 600) : pick_dim(80),
                           .ta = rnd() % 2,
                           .tb = rnd() % 2,
                           .akind = iter % A_KINDS,
                           .bkind = (iter / A_KINDS) % B_KINDS,
                           .epi = irand(0, 31),
                           .pool = iter % 3 == 0 ? pool3 : NULL};
            t.alpha = t.akind == A_STRIDED || t.akind == A_PACKED ? alphas[rnd() % 3] : 1.0f;
            t.beta = betas[rnd() % 4];
            /* Large products so that threads split rows and columns too. */
            if (iter % 17 == 0) {
                t.m = irand(100, 300);
                t.n = irand(100, 700);
                t.k = irand(30, 300);
            }
            run_gemm_case(&t);
        }
        /* K = 0: C = beta * C, then the epilogue. */
        gemm_case z = {
            .isa = isas[s], .m = 5, .n = 7, .k = 0, .alpha = 1, .beta = 0.5f, .epi = 4 | 8 | 1};
        run_gemm_case(&z);
    }
    core_threadpool_destroy(pool3);
}

static void sgemm_matches_reference(void **state)
{
    (void)state;
    for (int iter = 0; iter < 120; iter++) {
        int64_t m = pick_dim(40), n = pick_dim(50), k = pick_dim(70);
        bool ta = rnd() % 2, tb = rnd() % 2;
        float alpha = iter % 2 ? 1.0f : -0.5f, beta = (float)(iter % 3) * 0.5f;
        int64_t lda = ta ? m : k, ldb = tb ? k : n;
        float *a = malloc((size_t)(m * k) * sizeof(float));
        float *b = malloc((size_t)(k * n) * sizeof(float));
        float *c = guarded((size_t)(m * n)), *r = malloc((size_t)(m * n) * sizeof(float));
        assert_true(a && b && r);
        fill(a, (size_t)(m * k));
        fill(b, (size_t)(k * n));
        fill(c, (size_t)(m * n));
        memcpy(r, c, (size_t)(m * n) * sizeof(float));
        void *ws = aligned_alloc(64, (kern_sgemm_workspace(m, n, k) + 64) / 64 * 64);
        kern_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, n, ws);
        kern_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, r, n);
        check_guards(c, (size_t)(m * n), "kern_sgemm");
        for (int64_t i = 0; i < m * n; i++)
            check_close(c[i], r[i], (double)k + 2, "kern_sgemm", (size_t)i);
        free(ws);
        free(a);
        free(b);
        free(r);
        free_guarded(c);
    }
}

/* ------------------------------------------------------------------------------------------
 * Depthwise 3x3
 * ---------------------------------------------------------------------------------------- */

static void depthwise_matches_reference(void **state)
{
    (void)state;
    int tested = 0;
    for (int iter = 0; iter < 400; iter++) {
        kern_dw_geom g = {.stride = irand(1, 2), .ph = irand(0, 2), .pw = irand(0, 2)};
        g.ih = irand(1, 40);
        g.iw = irand(1, 40);
        int64_t pe_h = irand(0, 2), pe_w = irand(0, 2);
        g.oh = (g.ih + g.ph + pe_h - 3) / g.stride + 1;
        g.ow = (g.iw + g.pw + pe_w - 3) / g.stride + 1;
        if (g.ih + g.ph + pe_h < 3 || g.iw + g.pw + pe_w < 3) continue;
        if (!kern_dw3x3_supported(KERN_ISA_AUTO, &g)) continue;
        float *x = malloc((size_t)(g.ih * g.iw) * sizeof(float)), w[9];
        size_t ny = (size_t)(g.oh * g.ow);
        float *y = guarded(ny), *r = malloc(ny * sizeof(float));
        assert_true(x && r);
        fill(x, (size_t)(g.ih * g.iw));
        fill(w, 9);
        kern_epilogue act = {.act = (kern_act)(iter % 4), .a = -0.2f, .b = 0.3f};
        if (act.act == KERN_ACT_LEAKY) act.a = 0.1f;
        float bias = frand();
        kern_dw3x3(KERN_ISA_AUTO, &g, x, w, bias, &act, y);
        kern_dw3x3_ref(&g, x, w, bias, &act, r);
        check_guards(y, ny, "depthwise");
        for (size_t i = 0; i < ny; i++) check_close(y[i], r[i], 10, "depthwise", i);
        free(x);
        free(r);
        free_guarded(y);
        tested++;
    }
    if (!tested) printf("  (no depthwise kernel for this CPU: nothing to compare)\n");
}

static void transpose_matches_reference(void **state)
{
    (void)state;
    const kern_isa isas[] = {KERN_ISA_PORTABLE, KERN_ISA_AVX2, KERN_ISA_AVX512};
    for (int s = 0; s < 3; s++) {
        if (!kern_isa_supported(isas[s])) continue;
        for (int iter = 0; iter < 200; iter++) {
            int64_t rows = pick_dim(70), cols = pick_dim(70);
            int64_t ldx = cols + irand(0, 5), ldy = rows + irand(0, 5);
            size_t nx = (size_t)(rows * ldx), ny = (size_t)(cols * ldy);
            float *x = malloc(nx * sizeof(float)), *y = guarded(ny);
            assert_non_null(x);
            fill(x, nx);
            for (size_t i = 0; i < ny; i++) y[i] = guard_value(i);
            kern_transpose(isas[s], x, ldx, y, ldy, rows, cols);
            check_guards(y, ny, "transpose");
            for (int64_t j = 0; j < cols; j++)
                for (int64_t i = 0; i < ldy; i++) {
                    float want = i < rows ? x[i * ldx + j] : guard_value((size_t)(j * ldy + i));
                    if (memcmp(&y[j * ldy + i], &want, sizeof(float)))
                        fail_msg("transpose %s %lldx%lld: y[%lld][%lld] wrong",
                                 kern_isa_name(isas[s]), (long long)rows, (long long)cols,
                                 (long long)j, (long long)i);
                }
            free(x);
            free_guarded(y);
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * One-node models
 * ---------------------------------------------------------------------------------------- */

static void attr_int(pbw *node, const char *name, int64_t v)
{
    pbw a = {0};
    pbw_str(&a, 1, name);
    pbw_int(&a, 3, v);
    pbw_int(&a, 20, 2);
    pbw_msg(node, 5, &a);
}

static void attr_ints(pbw *node, const char *name, const int64_t *v, int n)
{
    pbw a = {0};
    pbw_str(&a, 1, name);
    for (int i = 0; i < n; i++) pbw_int(&a, 8, v[i]);
    pbw_int(&a, 20, 7);
    pbw_msg(node, 5, &a);
}

static void attr_float(pbw *node, const char *name, float v)
{
    pbw a = {0};
    pbw_str(&a, 1, name);
    pbw_key(&a, 2, 5);
    pbw_bytes(&a, &v, 4);
    pbw_int(&a, 20, 1);
    pbw_msg(node, 5, &a);
}

/* Starts a NodeProto: inputs and outputs (NULL-terminated), then attributes, then finish. */
static pbw node_begin(const char *op, const char *const *ins, const char *const *outs)
{
    pbw n = {0};
    for (int i = 0; ins[i]; i++) pbw_str(&n, 1, ins[i]);
    for (int i = 0; outs[i]; i++) pbw_str(&n, 2, outs[i]);
    pbw_str(&n, 4, op);
    return n;
}

/* A fused-activation node after the tested one, from T (0: none). */
static void add_activation(pbw *g, int t, const char *in, const char *out)
{
    const char *ins[] = {in, NULL}, *outs[] = {out, NULL};
    pbw n;
    switch (t) {
    case 1:
        n = node_begin("Relu", ins, outs);
        break;
    case 2:
        n = node_begin("LeakyRelu", ins, outs);
        attr_float(&n, "alpha", 0.2f);
        break;
    default: {
        const char *cins[] = {in, "lo", "hi", NULL};
        n = node_begin("Clip", cins, outs);
        const float lo = -0.25f, hi = 0.5f;
        pbw_float_init(g, "lo", 0, NULL, &lo);
        pbw_float_init(g, "hi", 0, NULL, &hi);
        break;
    }
    }
    pbw_msg(g, 1, &n);
}

static double act_model(double x, int t)
{
    switch (t) {
    case 1:
        return x < 0 ? 0 : x;
    case 2:
        return x < 0 ? 0.2 * x : x;
    case 3:
        return x < -0.25 ? -0.25 : x > 0.5 ? 0.5 : x;
    default:
        return x;
    }
}

/* Runs the model with inputs X (and extra inputs) on THREADS threads; returns output 0, which
 * the caller frees. */
static float *run_model(pbw *m, int threads, int n_in, const ferry_tensor_view *ins, int64_t *numel)
{
    ferry_model_options o = {.intra_op_threads = threads};
    ferry_model *model;
    ferry_status *st = ferry_model_open_memory(m->d, m->n, &o, &model);
    if (st) fail_msg("load: %s", ferry_status_message(st));
    ferry_context *ctx;
    assert_null(ferry_context_create(model, &ctx));
    st = ferry_context_run(ctx, ins, (size_t)n_in);
    if (st) fail_msg("run: %s", ferry_status_message(st));
    ferry_tensor_view y;
    assert_null(ferry_context_output(ctx, 0, &y));
    *numel = ferry_tensor_view_count(&y);
    float *out = malloc((size_t)*numel * sizeof(float) + 1);
    assert_non_null(out);
    memcpy(out, y.data, (size_t)*numel * sizeof(float));
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    return out;
}

static ferry_tensor_view view(float *d, int rank, const int64_t *dims)
{
    ferry_tensor_view v = {.dtype = FERRY_DTYPE_FLOAT, .rank = rank, .data = d};
    for (int i = 0; i < rank; i++) v.dims[i] = dims[i];
    return v;
}

/* ------------------------------------------------------------------------------------------
 * Conv
 * ---------------------------------------------------------------------------------------- */

typedef struct conv_case {
    int nsp;
    int64_t n, c, m, group;
    int64_t in[3], k[3], s[3], d[3], pb[3], pe[3];
    bool const_w, bias;
    int act;
} conv_case;

static int64_t conv_out(const conv_case *t, int i)
{
    return (t->in[i] + t->pb[i] + t->pe[i] - (t->k[i] - 1) * t->d[i] - 1) / t->s[i] + 1;
}

static void run_conv_case(const conv_case *t, int threads)
{
    int nsp = t->nsp, rank = nsp + 2;
    int64_t cg = t->c / t->group, mg = t->m / t->group;
    int64_t xd[5] = {t->n, t->c}, wd[5] = {t->m, cg}, yd[5] = {t->n, t->m};
    int64_t ksz = 1, insz = 1, outsz = 1;
    for (int i = 0; i < nsp; i++) {
        xd[2 + i] = t->in[i];
        wd[2 + i] = t->k[i];
        yd[2 + i] = conv_out(t, i);
        ksz *= t->k[i];
        insz *= t->in[i];
        outsz *= yd[2 + i];
    }
    size_t nx = (size_t)(t->n * t->c * insz), nw = (size_t)(t->m * cg * ksz);
    float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float));
    float *b = malloc((size_t)t->m * sizeof(float));
    assert_true(x && w && b);
    fill(x, nx);
    fill(w, nw);
    fill(b, (size_t)t->m);

    pbw g = {0};
    const char *ins[] = {"x", "w", t->bias ? "b" : NULL, NULL};
    const char *outs[] = {t->act ? "c" : "y", NULL};
    pbw node = node_begin("Conv", ins, outs);
    int64_t pads[6];
    for (int i = 0; i < nsp; i++) {
        pads[i] = t->pb[i];
        pads[nsp + i] = t->pe[i];
    }
    attr_ints(&node, "kernel_shape", t->k, nsp);
    attr_ints(&node, "strides", t->s, nsp);
    attr_ints(&node, "dilations", t->d, nsp);
    attr_ints(&node, "pads", pads, 2 * nsp);
    attr_int(&node, "group", t->group);
    pbw_msg(&g, 1, &node);
    if (t->act) add_activation(&g, t->act, "c", "y");
    pbw_str(&g, 2, "g");
    if (t->const_w) pbw_float_init(&g, "w", rank, wd, w);
    if (t->bias) pbw_float_init(&g, "b", 1, &t->m, b);
    pbw_value_info(&g, 11, "x", 1, rank, xd);
    if (!t->const_w) pbw_value_info(&g, 11, "w", 1, rank, wd);
    pbw_value_info(&g, 12, "y", 1, -1, NULL);
    pbw m = pbw_model(&g, 17);
    ferry_tensor_view v[2] = {view(x, rank, xd), view(w, rank, wd)};
    int64_t ny;
    float *y = run_model(&m, threads, t->const_w ? 1 : 2, v, &ny);
    free(m.d);

    char what[160];
    snprintf(what, sizeof(what),
             "Conv %dD n=%lld c=%lld m=%lld group=%lld k=%lld s=%lld d=%lld "
             "in=%lld const_w=%d act=%d threads=%d isa=%s",
             nsp, (long long)t->n, (long long)t->c, (long long)t->m, (long long)t->group,
             (long long)t->k[nsp - 1], (long long)t->s[nsp - 1], (long long)t->d[nsp - 1],
             (long long)t->in[nsp - 1], t->const_w, t->act, threads, kern_isa_name(KERN_ISA_AUTO));
    assert_int_equal(ny, t->n * t->m * outsz);
    for (int64_t n = 0; n < t->n; n++) {
        for (int64_t oc = 0; oc < t->m; oc++) {
            int64_t gi = oc / mg;
            for (int64_t o = 0; o < outsz; o++) {
                int64_t opos[3], rest = o;
                for (int i = nsp - 1; i >= 0; i--) {
                    opos[i] = rest % yd[2 + i];
                    rest /= yd[2 + i];
                }
                double s = t->bias ? b[oc] : 0.0, mag = fabs(s);
                for (int64_t ic = 0; ic < cg; ic++) {
                    for (int64_t kk = 0; kk < ksz; kk++) {
                        int64_t kpos[3], r = kk, idx = 0;
                        bool inside = true;
                        for (int i = nsp - 1; i >= 0; i--) {
                            kpos[i] = r % t->k[i];
                            r /= t->k[i];
                        }
                        for (int i = 0; i < nsp; i++) {
                            int64_t p = opos[i] * t->s[i] - t->pb[i] + kpos[i] * t->d[i];
                            inside = inside && p >= 0 && p < t->in[i];
                            idx = idx * t->in[i] + p;
                        }
                        if (!inside) continue;
                        double v2 = (double)x[(n * t->c + gi * cg + ic) * insz + idx] *
                                    w[(oc * cg + ic) * ksz + kk];
                        s += v2;
                        mag += fabs(v2);
                    }
                }
                size_t at = (size_t)((n * t->m + oc) * outsz + o);
                check_close(y[at], act_model(s, t->act), mag + 1, what, at);
            }
        }
    }
    free(y);
    free(x);
    free(w);
    free(b);
}

static conv_case random_conv(int iter)
{
    conv_case t = {.nsp = 2,
                   .n = irand(1, 3),
                   .const_w = rnd() % 4 != 0,
                   .bias = rnd() % 3,
                   .act = irand(0, 3)};
    if (iter % 9 == 0) t.nsp = 1;
    if (iter % 23 == 0) t.nsp = 3;
    int shape = iter % 6;
    t.group = 1;
    int64_t cg = irand(1, 6), mg = pick_dim(40);
    if (shape == 1) { /* grouped */
        t.group = irand(2, 3);
    } else if (shape == 2) { /* depthwise */
        t.group = irand(2, 20);
        cg = 1;
        mg = irand(1, 2);
    } else if (shape == 3) { /* deep and small: the transposed, indirect product */
        cg = irand(4, 40);
        mg = 32 * irand(1, 2) + irand(-1, 1);
    }
    t.c = cg * t.group;
    t.m = mg * t.group;
    for (int i = 0; i < t.nsp; i++) {
        t.k[i] = shape == 4 ? 1 : t.nsp == 3 ? irand(1, 3) : irand(1, 4);
        if (shape == 2 || iter % 4 == 1) t.k[i] = 3;
        t.s[i] = shape == 4 ? 1 : irand(1, 3);
        t.d[i] = shape == 4 ? 1 : rnd() % 4 == 0 ? 2 : 1;
        t.pb[i] = shape == 4 ? 0 : irand(0, 2);
        t.pe[i] = shape == 4 ? 0 : irand(0, 2);
        int64_t extent = (t.k[i] - 1) * t.d[i] + 1;
        int64_t lo = extent - t.pb[i] - t.pe[i];
        if (lo < 1) lo = 1;
        t.in[i] = irand((int)lo, t.nsp == 3 ? 7 : shape == 3 ? 9 : 20);
    }
    return t;
}

static void conv_matches_reference(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof(isas) / sizeof(isas[0]); s++) {
        if (!kern_isa_supported(isas[s])) continue;
        kern_isa_override(isas[s]);
        for (int iter = 0; iter < 90; iter++) {
            conv_case t = random_conv(iter);
            run_conv_case(&t, iter % 2 ? 3 : 1);
        }
        /* The shapes the end-to-end models use, at reduced width. */
        conv_case dw = {.nsp = 2,
                        .n = 2,
                        .c = 24,
                        .m = 24,
                        .group = 24,
                        .in = {14, 14},
                        .k = {3, 3},
                        .s = {2, 2},
                        .d = {1, 1},
                        .pb = {1, 1},
                        .pe = {1, 1},
                        .const_w = true,
                        .bias = true,
                        .act = 3};
        run_conv_case(&dw, 3);
        conv_case c3 = {.nsp = 2,
                        .n = 1,
                        .c = 32,
                        .m = 64,
                        .group = 1,
                        .in = {7, 7},
                        .k = {3, 3},
                        .s = {1, 1},
                        .d = {1, 1},
                        .pb = {1, 1},
                        .pe = {1, 1},
                        .const_w = true,
                        .bias = true,
                        .act = 1};
        run_conv_case(&c3, 1);
        run_conv_case(&c3, 3);
        conv_case pw = {.nsp = 2,
                        .n = 3,
                        .c = 40,
                        .m = 72,
                        .group = 1,
                        .in = {9, 11},
                        .k = {1, 1},
                        .s = {1, 1},
                        .d = {1, 1},
                        .const_w = true,
                        .act = 2};
        run_conv_case(&pw, 3);
    }
    kern_isa_override(KERN_ISA_AUTO);
}

/* ------------------------------------------------------------------------------------------
 * Gemm and MatMul
 * ---------------------------------------------------------------------------------------- */

static void gemm_op_case(int iter, int threads)
{
    int64_t m = pick_dim(50), n = pick_dim(70), k = pick_dim(90);
    bool ta = rnd() % 2, tb = rnd() % 2, const_b = rnd() % 3 != 0;
    float alpha = iter % 3 ? 1.0f : 0.5f, beta = iter % 4 == 1 ? 0.5f : 1.0f;
    int cshape = irand(0, 5), act = irand(0, 3);
    int64_t ad[2] = {ta ? k : m, ta ? m : k}, bd[2] = {tb ? n : k, tb ? k : n};
    /* C: a scalar, [n], [1, n], [m, 1], [m, n], or absent (5). */
    const int64_t cdims[5][2] = {{1, 1}, {n, 1}, {1, n}, {m, 1}, {m, n}};
    const int crank[5] = {0, 1, 2, 2, 2};
    float *a = malloc((size_t)(m * k) * sizeof(float));
    float *b = malloc((size_t)(k * n) * sizeof(float));
    float *c = malloc((size_t)(m * n) * sizeof(float));
    assert_true(a && b && c);
    fill(a, (size_t)(m * k));
    fill(b, (size_t)(k * n));
    fill(c, (size_t)(m * n));
    pbw g = {0};
    const char *ins[] = {"a", "b", cshape < 5 ? "cc" : NULL, NULL};
    const char *outs[] = {act ? "t" : "y", NULL};
    pbw node = node_begin("Gemm", ins, outs);
    attr_int(&node, "transA", ta);
    attr_int(&node, "transB", tb);
    attr_float(&node, "alpha", alpha);
    attr_float(&node, "beta", beta);
    pbw_msg(&g, 1, &node);
    if (act) add_activation(&g, act, "t", "y");
    pbw_str(&g, 2, "g");
    if (const_b) pbw_float_init(&g, "b", 2, bd, b);
    if (cshape < 5) pbw_float_init(&g, "cc", crank[cshape], cdims[cshape], c);
    pbw_value_info(&g, 11, "a", 1, 2, ad);
    if (!const_b) pbw_value_info(&g, 11, "b", 1, 2, bd);
    pbw_value_info(&g, 12, "y", 1, -1, NULL);
    pbw mdl = pbw_model(&g, 13);
    ferry_tensor_view v[2] = {view(a, 2, ad), view(b, 2, bd)};
    int64_t ny;
    float *y = run_model(&mdl, threads, const_b ? 1 : 2, v, &ny);
    free(mdl.d);
    assert_int_equal(ny, m * n);
    char what[120];
    snprintf(what, sizeof(what), "Gemm m=%lld n=%lld k=%lld ta=%d tb=%d C%d act=%d isa=%s",
             (long long)m, (long long)n, (long long)k, ta, tb, cshape, act,
             kern_isa_name(KERN_ISA_AUTO));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int64_t p = 0; p < k; p++) {
                double v2 =
                    (double)(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
                s += v2;
                mag += fabs(v2);
            }
            s *= alpha;
            if (cshape < 5) {
                double cv = cshape == 0                  ? c[0]
                            : cshape == 1 || cshape == 2 ? c[j]
                            : cshape == 3                ? c[i]
                                                         : c[i * n + j];
                s += beta * cv;
            }
            check_close(y[i * n + j], act_model(s, act), mag + 2, what, (size_t)(i * n + j));
        }
    free(y);
    free(a);
    free(b);
    free(c);
}

static void matmul_op_case(int threads)
{
    int64_t m = pick_dim(40), n = pick_dim(60), k = pick_dim(70);
    int64_t b1 = irand(1, 3), b2 = irand(1, 4);
    /* B: one constant matrix, or batched [b2, k, n] (broadcast over b1), given as an input. */
    bool const_b = rnd() % 2, with_bias = rnd() % 3 == 0;
    int act = irand(0, 1);
    int64_t ad[4] = {b1, b2, m, k}, bd[3] = {b2, k, n};
    int brank = const_b ? 2 : 3;
    const int64_t *bdims = const_b ? bd + 1 : bd;
    size_t na = (size_t)(b1 * b2 * m * k), nb = (size_t)((const_b ? 1 : b2) * k * n);
    float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float));
    assert_true(a && b);
    fill(a, na);
    fill(b, nb);
    pbw g = {0};
    /* A third input is the bias of a fused MatMul + Add (a Ferry extension). */
    const char *ins[] = {"a", "b", with_bias ? "bias" : NULL, NULL};
    const char *outs[] = {act ? "t" : "y", NULL};
    float *bias = malloc((size_t)n * sizeof(float));
    assert_non_null(bias);
    fill(bias, (size_t)n);
    pbw node = node_begin("MatMul", ins, outs);
    pbw_msg(&g, 1, &node);
    if (act) add_activation(&g, act, "t", "y");
    pbw_str(&g, 2, "g");
    if (const_b) pbw_float_init(&g, "b", brank, bdims, b);
    if (with_bias) pbw_float_init(&g, "bias", 1, &n, bias);
    pbw_value_info(&g, 11, "a", 1, 4, ad);
    if (!const_b) pbw_value_info(&g, 11, "b", 1, brank, bdims);
    pbw_value_info(&g, 12, "y", 1, -1, NULL);
    pbw mdl = pbw_model(&g, 13);
    ferry_tensor_view v[2] = {view(a, 4, ad), view(b, brank, bdims)};
    int64_t ny;
    float *y = run_model(&mdl, threads, const_b ? 1 : 2, v, &ny);
    free(mdl.d);
    assert_int_equal(ny, b1 * b2 * m * n);
    char what[120];
    snprintf(what, sizeof(what), "MatMul [%lld,%lld,%lld,%lld] x B%s n=%lld isa=%s", (long long)b1,
             (long long)b2, (long long)m, (long long)k, const_b ? "[k,n]" : "[b2,k,n]",
             (long long)n, kern_isa_name(KERN_ISA_AUTO));
    for (int64_t z = 0; z < b1 * b2; z++) {
        const float *az = a + z * m * k, *bz = b + (const_b ? 0 : (z % b2) * k * n);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = with_bias ? bias[j] : 0.0, mag = fabs(s);
                for (int64_t p = 0; p < k; p++) {
                    double v2 = (double)az[i * k + p] * bz[p * n + j];
                    s += v2;
                    mag += fabs(v2);
                }
                size_t at = (size_t)((z * m + i) * n + j);
                check_close(y[at], act_model(s, act), mag + 1, what, at);
            }
    }
    free(y);
    free(a);
    free(b);
    free(bias);
}

static void gemm_and_matmul_match_reference(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof(isas) / sizeof(isas[0]); s++) {
        if (!kern_isa_supported(isas[s])) continue;
        kern_isa_override(isas[s]);
        for (int iter = 0; iter < 40; iter++) gemm_op_case(iter, iter % 2 ? 3 : 1);
        for (int iter = 0; iter < 30; iter++) matmul_op_case(iter % 2 ? 3 : 1);
    }
    kern_isa_override(KERN_ISA_AUTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gemm_driver_matches_reference),
        cmocka_unit_test(sgemm_matches_reference),
        cmocka_unit_test(depthwise_matches_reference),
        cmocka_unit_test(transpose_matches_reference),
        cmocka_unit_test(conv_matches_reference),
        cmocka_unit_test(gemm_and_matmul_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
