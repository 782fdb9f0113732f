/* strings.c - operators on string tensors: StringNormalizer.
 *
 * String tensors hold const char * elements (NUL-terminated UTF-8). Operators that make new
 * strings allocate them from call->strings, which lives until the next run.
 */
#include "engine/op.h"

#include <stdlib.h>
#include <string.h>

typedef enum case_action { CASE_NONE, CASE_LOWER, CASE_UPPER } case_action;

typedef struct normalizer {
    case_action action;
    bool case_sensitive;
    const char *const *stopwords;
    size_t n_stopwords;
} normalizer;

/* Maps one code point's case: ASCII and the Latin-1 letters (U+00C0-U+00DE <-> U+00E0-U+00FE,
 * except the multiplication and division signs). Other scripts are left unchanged. */
static uint32_t map_case(uint32_t c, case_action action)
{
    if (action == CASE_LOWER) {
        if ((c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7)) return c + 32;
    } else if (action == CASE_UPPER) {
        if ((c >= 'a' && c <= 'z') || (c >= 0xe0 && c <= 0xfe && c != 0xf7)) return c - 32;
    }
    return c;
}

/* Rewrites S with its case mapped into OUT (same byte length: the mapped letters keep their
 * UTF-8 length). */
static void convert_case(const char *s, char *out, case_action action)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (*p) {
        if (p[0] < 0x80) {
            out[n++] = (char)map_case(p[0], action);
            p++;
        } else if ((p[0] & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
            uint32_t c = map_case((uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f), action);
            out[n++] = (char)(0xc0 | c >> 6);
            out[n++] = (char)(0x80 | (c & 0x3f));
            p += 2;
        } else {
            out[n++] = (char)*p++;
        }
    }
    out[n] = 0;
}

static bool same_text(const char *a, const char *b, bool case_sensitive)
{
    if (case_sensitive) return !strcmp(a, b);
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) return false;
    char *x = malloc(la + 1), *y = malloc(lb + 1);
    bool same = false;
    if (x && y) {
        convert_case(a, x, CASE_LOWER);
        convert_case(b, y, CASE_LOWER);
        same = !strcmp(x, y);
    }
    free(x);
    free(y);
    return same;
}

static ferry_status *normalizer_init(const eng_node *n, int opset, void **state)
{
    (void)opset;
    normalizer *s = calloc(1, sizeof(*s));
    if (!s) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    const char *action = eng_attr_string(n, "case_change_action", "NONE");
    if (!strcmp(action, "NONE"))
        s->action = CASE_NONE;
    else if (!strcmp(action, "LOWER"))
        s->action = CASE_LOWER;
    else if (!strcmp(action, "UPPER"))
        s->action = CASE_UPPER;
    else {
        free(s);
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "attribute case_change_action: '%s' is not NONE, LOWER or UPPER", action);
    }
    s->case_sensitive = eng_attr_int(n, "is_case_sensitive", 0) != 0;
    s->stopwords = eng_attr_strings(n, "stopwords", &s->n_stopwords);
    *state = s;
    return NULL;
}

static bool is_stopword(const normalizer *s, const char *w)
{
    for (size_t i = 0; i < s->n_stopwords; i++)
        if (same_text(w, s->stopwords[i], s->case_sensitive)) return true;
    return false;
}

static ferry_status *normalizer_infer(eng_op_call *c)
{
    const normalizer *s = c->state;
    const eng_tensor *x = c->in[0];
    if (c->n_in != 1 || !x || c->n_out != 1 || !c->out[0])
        return core_error(FERRY_ERR_INVALID_MODEL, "StringNormalizer takes one input and output");
    if (x->dtype != FERRY_DTYPE_STRING) return eng_bad_dtype("input X", x->dtype);
    bool two_d = x->rank == 2 && x->dims[0] == 1;
    if (x->rank != 1 && !two_d) {
        char buf[128];
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "input X must have shape [C] or [1, C], got %s",
                          eng_shape_str(x, buf, sizeof(buf)));
    }
    /* The output keeps what survives the stopwords: its length depends on the data, which the
     * engine provides here (input 0 is a value input). */
    int64_t kept = 0;
    const char *const *in = x->data;
    for (int64_t i = 0; i < eng_numel(x); i++) kept += !is_stopword(s, in[i] ? in[i] : "");
    if (kept == 0) kept = 1; /* all dropped: one empty string */
    eng_tensor *y = c->out[0];
    y->dtype = FERRY_DTYPE_STRING;
    y->rank = x->rank;
    if (two_d) y->dims[0] = 1;
    y->dims[x->rank - 1] = kept;
    return NULL;
}

static ferry_status *normalizer_run(eng_op_call *c)
{
    const normalizer *s = c->state;
    const eng_tensor *x = c->in[0];
    const char *const *in = x->data;
    const char **out = c->out[0]->data;
    int64_t kept = 0, capacity = eng_numel(c->out[0]);
    for (int64_t i = 0; i < eng_numel(x); i++) {
        const char *w = in[i] ? in[i] : "";
        if (is_stopword(s, w)) continue;
        if (kept >= capacity)
            return core_error(FERRY_ERR_INTERNAL, "input changed between planning and running");
        size_t len = strlen(w);
        char *copy = core_pool_alloc(c->strings, len + 1, 1);
        if (!copy) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        convert_case(w, copy, s->action);
        out[kept++] = copy;
    }
    if (kept == 0) out[kept++] = "";
    return NULL;
}

static const eng_op ops[] = {
    {.domain = "",
     .name = "StringNormalizer",
     .since_version = 10,
     .value_inputs = 1u,
     .init = normalizer_init,
     .fini = free,
     .infer = normalizer_infer,
     .run = normalizer_run},
};

const eng_op_table eng_ops_strings = {ops, sizeof(ops) / sizeof(ops[0])};
