/* unary_einsum.h - Einsum, included by unary.c.
 *
 * init parses the equation into terms of labels: letters ('A'-'Z' then 'a'-'z', so that label
 * order is ASCII order, which the implicit output follows) and at most one "..." per term.
 * Each time shapes are known, einsum_prepare() gives every dimension a label (those under an
 * ellipsis get labels of their own, right-aligned and broadcast numpy-style across inputs),
 * checks sizes, and derives the output's labels: the explicit ones, or the ellipsis followed
 * by the letters used exactly once.
 *
 * Labels repeated within one input (diagonals) get the sum of their dimensions' strides, and
 * size-1 dimensions stride 0 (broadcast), so each input becomes a strided view indexed by
 * label. Two inputs (the common case: batched matmuls, bilinear forms) become one batched GEMM:
 * each operand is gathered into a dense [batch, m, k] / [batch, k, n] buffer (summing labels
 * only it carries), multiplied with kern_sgemm (float, float16, bfloat16), kern_dgemm (double)
 * or an int64 loop that wraps, and the [batch, m, n] result scattered into the output's label
 * order; operands and results already in that layout are used in place. One input, or three
 * and more, go through the generic loop: every output element sums, over the labels not in the
 * output, the product of the inputs' elements.
 */
#ifndef ENGINE_OPS_UNARY_EINSUM_H
#define ENGINE_OPS_UNARY_EINSUM_H

#define EIN_LETTERS    52
#define EIN_MAX_LABELS (EIN_LETTERS + FERRY_MAX_RANK)
#define EIN_MAX_INPUTS 16

typedef struct ein_term {
    int n;                        /* letters */
    int8_t label[FERRY_MAX_RANK]; /* letter labels in order, the ellipsis left out */
    int ell;                      /* letters before the "...", -1 when there is none */
} ein_term;

typedef struct ein_state {
    int n_in;
    ein_term in[EIN_MAX_INPUTS];
    bool explicit_out;
    ein_term out;
} ein_state;

static int ein_letter(char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return 26 + ch - 'a';
    return -1;
}

static char ein_char(int label)
{
    return (char)(label < 26 ? 'A' + label : 'a' + label - 26);
}

/* Parses one term from *P up to ',', "->" or the end. */
static ferry_status *ein_parse_term(const char **p, ein_term *t)
{
    t->n = 0;
    t->ell = -1;
    for (const char *s = *p;; s++) {
        char ch = *s;
        if (ch == ' ' || ch == '\t') continue;
        if (ch == '\0' || ch == ',' || (ch == '-' && s[1] == '>')) {
            *p = s;
            return NULL;
        }
        if (ch == '.') {
            if (s[1] != '.' || s[2] != '.')
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "attribute equation: '.' must come as \"...\"");
            if (t->ell >= 0)
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "attribute equation: a term has more than one \"...\"");
            t->ell = t->n;
            s += 2;
            continue;
        }
        int label = ein_letter(ch);
        if (label < 0)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute equation: unexpected character '%c'", ch);
        if (t->n == FERRY_MAX_RANK)
            return core_error(FERRY_ERR_UNSUPPORTED,
                              "attribute equation: a term has more than %d subscripts; Ferry "
                              "supports tensors of rank %d at most",
                              FERRY_MAX_RANK, FERRY_MAX_RANK);
        t->label[t->n++] = (int8_t)label;
    }
}

static ferry_status *einsum_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    const char *eq = eng_attr_string(node, "equation", NULL);
    if (!eq) return core_error(FERRY_ERR_INVALID_MODEL, "attribute equation is missing");
    ein_state es = {0};
    const char *p = eq;
    for (;;) {
        if (es.n_in == EIN_MAX_INPUTS)
            return core_error(FERRY_ERR_UNSUPPORTED,
                              "attribute equation: more than %d inputs are not supported",
                              EIN_MAX_INPUTS);
        ferry_status *st = ein_parse_term(&p, &es.in[es.n_in++]);
        if (st) return st;
        if (*p != ',') break;
        p++;
    }
    if (*p == '-') {
        p += 2;
        es.explicit_out = true;
        ferry_status *st = ein_parse_term(&p, &es.out);
        if (st) return st;
        if (*p != '\0')
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "attribute equation: unexpected '%c' in the output term", *p);
        bool seen[EIN_LETTERS] = {false};
        for (int i = 0; i < es.out.n; i++) {
            int l = es.out.label[i];
            if (seen[l])
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "attribute equation: output subscript '%c' appears twice",
                                  ein_char(l));
            seen[l] = true;
            bool found = false;
            for (int k = 0; k < es.n_in && !found; k++)
                for (int j = 0; j < es.in[k].n && !found; j++) found = es.in[k].label[j] == l;
            if (!found)
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "attribute equation: output subscript '%c' is in no input",
                                  ein_char(l));
        }
    }
    return save_state(&es, sizeof(es), state);
}

/* Labels of every dimension, sizes, and the output for one set of input shapes. */
typedef struct ein_plan {
    int n_in;
    int64_t size[EIN_MAX_LABELS];     /* -1 for labels no input uses */
    uint32_t in_mask[EIN_MAX_LABELS]; /* bit k: input k has the label */
    int count[EIN_MAX_LABELS];        /* occurrences over all inputs */
    bool in_out[EIN_MAX_LABELS];
    int in_lab[EIN_MAX_INPUTS][FERRY_MAX_RANK];
    int out_rank;
    int out_lab[EIN_MAX_LABELS];
    int64_t stride[EIN_MAX_INPUTS][EIN_MAX_LABELS]; /* element strides by label */
} ein_plan;

static bool ein_dtype_ok(ferry_dtype dt)
{
    return core_dtype_is_float(dt) || core_dtype_is_signed_int(dt) ||
           core_dtype_is_unsigned_int(dt);
}

static ferry_status *ein_size_error(int label, int k, int64_t a, int64_t b)
{
    if (label >= EIN_LETTERS)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input %d: the dimensions under \"...\" do not broadcast (%lld vs %lld)",
                          k, (long long)a, (long long)b);
    return core_error(FERRY_ERR_INVALID_ARGUMENT,
                      "input %d: subscript '%c' has size %lld here and %lld elsewhere", k,
                      ein_char(label), (long long)b, (long long)a);
}

static ferry_status *einsum_prepare(const eng_op_call *c, ein_plan *pl)
{
    const ein_state *es = c->state;
    if (c->n_in != es->n_in)
        return core_error(FERRY_ERR_INVALID_MODEL, "the equation has %d inputs, the node %d",
                          es->n_in, c->n_in);
    ferry_status *st = check_io(c, es->n_in, es->n_in);
    if (st) return st;
    ferry_dtype dt = c->in[0]->dtype;
    if (!ein_dtype_ok(dt)) return eng_bad_dtype("input 0", dt);
    memset(pl, 0, sizeof(*pl));
    pl->n_in = es->n_in;
    int ell_rank = 0;
    for (int k = 0; k < es->n_in; k++) {
        const eng_tensor *t = c->in[k];
        const ein_term *tm = &es->in[k];
        if (t->dtype != dt) {
            char what[32];
            snprintf(what, sizeof(what), "input %d", k);
            return dtype_mismatch(what, t->dtype, "input 0", dt);
        }
        if (t->rank < tm->n || (tm->ell < 0 && t->rank != tm->n))
            return core_error(FERRY_ERR_INVALID_ARGUMENT,
                              "input %d has rank %d but the equation gives it %d subscripts%s", k,
                              t->rank, tm->n, tm->ell < 0 ? "" : " and \"...\"");
        if (t->rank - tm->n > ell_rank) ell_rank = t->rank - tm->n;
    }
    for (int l = 0; l < EIN_MAX_LABELS; l++) pl->size[l] = -1;
    for (int k = 0; k < es->n_in; k++) {
        const eng_tensor *t = c->in[k];
        const ein_term *tm = &es->in[k];
        int e = t->rank - tm->n, before = tm->ell < 0 ? tm->n : tm->ell;
        for (int d = 0; d < t->rank; d++) {
            int l;
            if (d < before)
                l = tm->label[d];
            else if (d < before + e)
                l = EIN_LETTERS + ell_rank - e + (d - before);
            else
                l = tm->label[d - e];
            pl->in_lab[k][d] = l;
            int64_t len = t->dims[d];
            if (pl->size[l] < 0 || pl->size[l] == 1)
                pl->size[l] = len;
            else if (len != 1 && len != pl->size[l])
                return ein_size_error(l, k, pl->size[l], len);
            pl->count[l]++;
            pl->in_mask[l] |= 1u << k;
        }
        int64_t es_ = 1;
        for (int d = t->rank - 1; d >= 0; d--) {
            if (t->dims[d] != 1) pl->stride[k][pl->in_lab[k][d]] += es_;
            es_ *= t->dims[d];
        }
    }
    /* The output's labels. */
    int n = 0;
    if (es->explicit_out) {
        const ein_term *o = &es->out;
        int before = o->ell < 0 ? o->n : o->ell;
        for (int i = 0; i < before; i++) pl->out_lab[n++] = o->label[i];
        if (o->ell >= 0)
            for (int i = 0; i < ell_rank; i++) pl->out_lab[n++] = EIN_LETTERS + i;
        for (int i = before; i < o->n; i++) pl->out_lab[n++] = o->label[i];
    } else {
        for (int i = 0; i < ell_rank; i++) pl->out_lab[n++] = EIN_LETTERS + i;
        for (int l = 0; l < EIN_LETTERS; l++)
            if (pl->count[l] == 1) pl->out_lab[n++] = l;
    }
    if (n > FERRY_MAX_RANK)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "the output would have rank %d; Ferry supports rank %d at most", n,
                          FERRY_MAX_RANK);
    pl->out_rank = n;
    for (int i = 0; i < n; i++) pl->in_out[pl->out_lab[i]] = true;
    return NULL;
}

/* The generic loop: DST[o] = sum over the NS summed labels of the product of the N sources,
 * O running over the NO output labels in row-major order. Labels are renumbered 0..no+ns-1
 * here, output ones first. Floating types accumulate in double, integers in uint64 (wrapping);
 * elements go through core_load/core_store so any source and destination dtypes mix. */
typedef struct ein_loop {
    int n, no, ns;
    int64_t size[EIN_MAX_LABELS];
    int64_t stride[EIN_MAX_INPUTS][EIN_MAX_LABELS];
    const void *src[EIN_MAX_INPUTS];
    ferry_dtype sdt[EIN_MAX_INPUTS];
    void *dst;
    ferry_dtype ddt;
} ein_loop;

/* Advances the odometer IDX over labels [FROM, TO) by one, moving the N offsets OFF. */
static void ein_step(const ein_loop *L, int64_t *idx, int from, int to, int64_t *off)
{
    for (int d = to - 1; d >= from; d--) {
        if (++idx[d] < L->size[d]) {
            for (int k = 0; k < L->n; k++) off[k] += L->stride[k][d];
            return;
        }
        idx[d] = 0;
        for (int k = 0; k < L->n; k++) off[k] -= L->stride[k][d] * (L->size[d] - 1);
    }
}

static void ein_loop_run(const ein_loop *L)
{
    int end = L->no + L->ns;
    int64_t n_out = 1, n_sum = 1;
    for (int d = 0; d < L->no; d++) n_out *= L->size[d];
    for (int d = L->no; d < end; d++) n_sum *= L->size[d];
    /* A pure permutation (packing an operand, scattering the result) is a strided copy. */
    if (L->n == 1 && n_sum == 1 && L->sdt[0] == L->ddt && L->no <= FERRY_MAX_RANK) {
        eng_copy_strided(L->dst, L->src[0], ferry_dtype_size(L->ddt), L->no, L->size, L->stride[0]);
        return;
    }
    bool integer = !core_dtype_is_float(L->ddt);
    int64_t idx[EIN_MAX_LABELS] = {0}, off[EIN_MAX_INPUTS] = {0};
    for (int64_t o = 0; o < n_out; o++) {
        int64_t soff[EIN_MAX_INPUTS];
        memcpy(soff, off, sizeof(soff));
        double acc = 0;
        uint64_t iacc = 0;
        for (int64_t s = 0; s < n_sum; s++) {
            if (integer) {
                uint64_t prod = 1;
                for (int k = 0; k < L->n; k++)
                    prod *= (uint64_t)core_load_i64(L->sdt[k], L->src[k], soff[k]);
                iacc += prod;
            } else {
                double prod = 1;
                for (int k = 0; k < L->n; k++) prod *= core_load_f64(L->sdt[k], L->src[k], soff[k]);
                acc += prod;
            }
            ein_step(L, idx, L->no, end, soff);
        }
        if (integer)
            core_store_i64(L->ddt, L->dst, o, (int64_t)iacc);
        else
            core_store_f64(L->ddt, L->dst, o, acc);
        ein_step(L, idx, 0, L->no, off);
    }
}

/* Sets up L to sum the inputs of PL (SRC[k] with dtype DT) into DST (DDT) with the output
 * labels OUT[0..NO) and summing SUM[0..NS). */
static void ein_loop_init(ein_loop *L, const ein_plan *pl, int n, const void *const *src,
                          const int64_t (*stride)[EIN_MAX_LABELS], ferry_dtype dt, const int *out,
                          int no, const int *sum, int ns, void *dst, ferry_dtype ddt)
{
    L->n = n;
    L->no = no;
    L->ns = ns;
    for (int d = 0; d < no + ns; d++) {
        int l = d < no ? out[d] : sum[d - no];
        L->size[d] = pl->size[l];
        for (int k = 0; k < n; k++) L->stride[k][d] = stride[k][l];
    }
    for (int k = 0; k < n; k++) {
        L->src[k] = src[k];
        L->sdt[k] = dt;
    }
    L->dst = dst;
    L->ddt = ddt;
}

/* The two-input case as a batched GEMM. */
typedef struct ein_gemm {
    int nb, nm, nn, nk, nsa, nsb;
    int b[EIN_MAX_LABELS], m[EIN_MAX_LABELS], n[EIN_MAX_LABELS], k[EIN_MAX_LABELS];
    int sa[EIN_MAX_LABELS], sb[EIN_MAX_LABELS];
    int64_t B, M, N, K;
    ferry_dtype ct;                           /* compute type: float, double or int64 */
    bool a_direct, b_direct, c_direct;        /* operand or result usable in place */
    size_t a_off, b_off, c_off, g_off, total; /* workspace layout */
} ein_gemm;

static size_t ein_align(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* True when the labels L[0..N) walk the view with STRIDE as a dense row-major array. */
static bool ein_dense(const ein_plan *pl, const int64_t *stride, const int *l1, int n1,
                      const int *l2, int n2, const int *l3, int n3)
{
    const int *lists[3] = {l1, l2, l3};
    int counts[3] = {n1, n2, n3};
    int64_t expect = 1;
    for (int g = 2; g >= 0; g--) {
        for (int i = counts[g] - 1; i >= 0; i--) {
            int l = lists[g][i];
            if (pl->size[l] != 1 && stride[l] != expect) return false;
            expect *= pl->size[l];
        }
    }
    return true;
}

static void ein_gemm_plan(const ein_plan *pl, ferry_dtype dt, ein_gemm *g)
{
    memset(g, 0, sizeof(*g));
    /* Output labels keep the output's order within each group, so that the common layouts
     * need no scatter at the end. */
    for (int i = 0; i < pl->out_rank; i++) {
        int l = pl->out_lab[i];
        uint32_t m = pl->in_mask[l];
        if (m == 3u)
            g->b[g->nb++] = l;
        else if (m == 1u)
            g->m[g->nm++] = l;
        else
            g->n[g->nn++] = l;
    }
    for (int l = 0; l < EIN_MAX_LABELS; l++) {
        if (pl->size[l] < 0 || pl->in_out[l]) continue;
        uint32_t m = pl->in_mask[l];
        if (m == 3u)
            g->k[g->nk++] = l;
        else if (m == 1u)
            g->sa[g->nsa++] = l;
        else
            g->sb[g->nsb++] = l;
    }
    g->B = g->M = g->N = g->K = 1;
    for (int i = 0; i < g->nb; i++) g->B *= pl->size[g->b[i]];
    for (int i = 0; i < g->nm; i++) g->M *= pl->size[g->m[i]];
    for (int i = 0; i < g->nn; i++) g->N *= pl->size[g->n[i]];
    for (int i = 0; i < g->nk; i++) g->K *= pl->size[g->k[i]];
    g->ct = dt == FERRY_DTYPE_DOUBLE  ? FERRY_DTYPE_DOUBLE
            : core_dtype_is_float(dt) ? FERRY_DTYPE_FLOAT
                                      : FERRY_DTYPE_INT64;
    bool same = g->ct == dt;
    bool no_sa = true, no_sb = true;
    for (int i = 0; i < g->nsa; i++) no_sa &= pl->size[g->sa[i]] == 1;
    for (int i = 0; i < g->nsb; i++) no_sb &= pl->size[g->sb[i]] == 1;
    g->a_direct =
        same && no_sa && ein_dense(pl, pl->stride[0], g->b, g->nb, g->m, g->nm, g->k, g->nk);
    g->b_direct =
        same && no_sb && ein_dense(pl, pl->stride[1], g->b, g->nb, g->k, g->nk, g->n, g->nn);
    bool ordered = true;
    int pos = 0;
    for (int i = 0; i < g->nb; i++) ordered &= pl->out_lab[pos++] == g->b[i];
    for (int i = 0; i < g->nm; i++) ordered &= pl->out_lab[pos++] == g->m[i];
    for (int i = 0; i < g->nn; i++) ordered &= pl->out_lab[pos++] == g->n[i];
    g->c_direct = same && ordered;
    size_t csz = ferry_dtype_size(g->ct);
    size_t off = 0;
    g->a_off = off;
    if (!g->a_direct) off += ein_align((size_t)(g->B * g->M * g->K) * csz);
    g->b_off = off;
    if (!g->b_direct) off += ein_align((size_t)(g->B * g->K * g->N) * csz);
    g->c_off = off;
    if (!g->c_direct) off += ein_align((size_t)(g->B * g->M * g->N) * csz);
    g->g_off = off;
    if (g->ct == FERRY_DTYPE_FLOAT) off += ein_align(kern_sgemm_workspace(g->M, g->N, g->K));
    g->total = off;
}

static ferry_status *einsum_infer(eng_op_call *c)
{
    ein_plan pl;
    ferry_status *st = einsum_prepare(c, &pl);
    if (st) return st;
    eng_tensor *y = c->out[0];
    y->dtype = c->in[0]->dtype;
    y->rank = pl.out_rank;
    for (int i = 0; i < pl.out_rank; i++) y->dims[i] = pl.size[pl.out_lab[i]];
    if (pl.n_in == 2 && eng_numel(y) > 0) {
        ein_gemm g;
        ein_gemm_plan(&pl, y->dtype, &g);
        c->workspace_size = g.total;
    }
    return NULL;
}

/* C[b] = A[b] x B[b] for the B batches of int64 matrices, wrapping on overflow. */
static void ein_igemm(const ein_gemm *g, const int64_t *a, const int64_t *b, int64_t *cm)
{
    for (int64_t t = 0; t < g->B; t++) {
        const int64_t *at = a + t * g->M * g->K, *bt = b + t * g->K * g->N;
        int64_t *ct = cm + t * g->M * g->N;
        for (int64_t i = 0; i < g->M; i++) {
            uint64_t *row = (uint64_t *)(ct + i * g->N);
            for (int64_t j = 0; j < g->N; j++) row[j] = 0;
            for (int64_t kk = 0; kk < g->K; kk++) {
                uint64_t av = (uint64_t)at[i * g->K + kk];
                const int64_t *brow = bt + kk * g->N;
                for (int64_t j = 0; j < g->N; j++) row[j] += av * (uint64_t)brow[j];
            }
        }
    }
}

static void einsum_two(eng_op_call *c, const ein_plan *pl)
{
    eng_tensor *y = c->out[0];
    ferry_dtype dt = y->dtype;
    ein_gemm g;
    ein_gemm_plan(pl, dt, &g);
    char *ws = c->workspace;
    const void *a = c->in[0]->data, *b = c->in[1]->data;
    const void *ap = g.a_direct ? a : ws + g.a_off;
    const void *bp = g.b_direct ? b : ws + g.b_off;
    void *cp = g.c_direct ? y->data : ws + g.c_off;
    ein_loop L;
    if (!g.a_direct) {
        int lab[EIN_MAX_LABELS], n = 0;
        for (int i = 0; i < g.nb; i++) lab[n++] = g.b[i];
        for (int i = 0; i < g.nm; i++) lab[n++] = g.m[i];
        for (int i = 0; i < g.nk; i++) lab[n++] = g.k[i];
        ein_loop_init(&L, pl, 1, &a, pl->stride, dt, lab, n, g.sa, g.nsa, ws + g.a_off, g.ct);
        ein_loop_run(&L);
    }
    if (!g.b_direct) {
        int lab[EIN_MAX_LABELS], n = 0;
        for (int i = 0; i < g.nb; i++) lab[n++] = g.b[i];
        for (int i = 0; i < g.nk; i++) lab[n++] = g.k[i];
        for (int i = 0; i < g.nn; i++) lab[n++] = g.n[i];
        ein_loop_init(&L, pl, 1, &b, pl->stride + 1, dt, lab, n, g.sb, g.nsb, ws + g.b_off, g.ct);
        ein_loop_run(&L);
    }
    size_t csz = ferry_dtype_size(g.ct);
    if (g.K == 0) {
        memset(cp, 0, (size_t)(g.B * g.M * g.N) * csz);
    } else if (g.ct == FERRY_DTYPE_FLOAT) {
        for (int64_t t = 0; t < g.B; t++)
            kern_sgemm(false, false, g.M, g.N, g.K, 1.0f, (const float *)ap + t * g.M * g.K, g.K,
                       (const float *)bp + t * g.K * g.N, g.N, 0.0f, (float *)cp + t * g.M * g.N,
                       g.N, ws + g.g_off);
    } else if (g.ct == FERRY_DTYPE_DOUBLE) {
        for (int64_t t = 0; t < g.B; t++)
            kern_dgemm(false, false, g.M, g.N, g.K, 1.0, (const double *)ap + t * g.M * g.K, g.K,
                       (const double *)bp + t * g.K * g.N, g.N, 0.0, (double *)cp + t * g.M * g.N,
                       g.N);
    } else {
        ein_igemm(&g, ap, bp, cp);
    }
    if (g.c_direct) return;
    /* Scatter C, laid out [b..., m..., n...], into the output's label order. */
    int64_t cstride[1][EIN_MAX_LABELS] = {{0}};
    int64_t s = 1;
    for (int i = g.nn - 1; i >= 0; i--) {
        cstride[0][g.n[i]] = s;
        s *= pl->size[g.n[i]];
    }
    for (int i = g.nm - 1; i >= 0; i--) {
        cstride[0][g.m[i]] = s;
        s *= pl->size[g.m[i]];
    }
    for (int i = g.nb - 1; i >= 0; i--) {
        cstride[0][g.b[i]] = s;
        s *= pl->size[g.b[i]];
    }
    const void *csrc = cp;
    ein_loop_init(&L, pl, 1, &csrc, (const int64_t(*)[EIN_MAX_LABELS])cstride, g.ct, pl->out_lab,
                  pl->out_rank, NULL, 0, y->data, dt);
    ein_loop_run(&L);
}

static ferry_status *einsum_run(eng_op_call *c)
{
    ein_plan pl;
    ferry_status *st = einsum_prepare(c, &pl);
    if (st) return st;
    eng_tensor *y = c->out[0];
    if (eng_numel(y) == 0) return NULL;
    if (pl.n_in == 2) {
        einsum_two(c, &pl);
        return NULL;
    }
    int sum[EIN_MAX_LABELS], ns = 0;
    for (int l = 0; l < EIN_MAX_LABELS; l++)
        if (pl.size[l] >= 0 && !pl.in_out[l]) sum[ns++] = l;
    const void *src[EIN_MAX_INPUTS];
    for (int k = 0; k < pl.n_in; k++) src[k] = c->in[k]->data;
    ein_loop L;
    ein_loop_init(&L, &pl, pl.n_in, src, (const int64_t(*)[EIN_MAX_LABELS])pl.stride, y->dtype,
                  pl.out_lab, pl.out_rank, sum, ns, y->data, y->dtype);
    ein_loop_run(&L);
    return NULL;
}

#endif
