/* pbtxt.c - a reader for the protobuf text format, the subset config.pbtxt files use.
 *
 * The text becomes a schema-free tree of fields (name, line, scalar text or children); the
 * config reader (config.c) then checks it against Triton's ModelConfig schema. Lists are
 * flattened as protobuf does: "dims: [1, 2]" yields two "dims" fields, "input [ {..}, {..} ]"
 * two "input" messages. Everything is bounded: input size by the caller, nesting depth and the
 * number of fields here.
 */
#include "runtime/rt_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

typedef enum tok_kind { T_EOF, T_IDENT, T_NUMBER, T_STRING, T_PUNCT } tok_kind;

typedef struct token {
    tok_kind kind;
    const char *start;
    size_t len;
    int line;
} token;

typedef struct parser {
    const char *p, *end;
    int line;
    const char *file;
    core_pool *pool;
    size_t nodes;
    token tok; /* the current (peeked) token */
    ferry_status *err;
} parser;

static void fail(parser *ps, int line, const char *field, const char *fmt, const char *arg)
{
    if (ps->err) return;
    char what[256];
    snprintf(what, sizeof(what), fmt, arg ? arg : "");
    if (field && *field)
        ps->err = core_error(FERRY_ERR_INVALID_MODEL, "%s:%d: field '%s': %s", ps->file, line,
                             field, what);
    else
        ps->err = core_error(FERRY_ERR_INVALID_MODEL, "%s:%d: %s", ps->file, line, what);
}

/* Describes the current token for an error message, bounded. */
static const char *tok_text(const token *t, char *buf, size_t size)
{
    if (t->kind == T_EOF) return "end of file";
    size_t n = t->len < size - 1 ? t->len : size - 1;
    for (size_t i = 0; i < n; i++) buf[i] = isprint((unsigned char)t->start[i]) ? t->start[i] : '?';
    buf[n] = 0;
    return buf;
}

static void skip_space(parser *ps)
{
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == '\n') {
            ps->line++;
            ps->p++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
            ps->p++;
        } else if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n') ps->p++;
        } else {
            break;
        }
    }
}

static bool is_ident_start(char c)
{
    return isalpha((unsigned char)c) || c == '_';
}
static bool is_ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Reads the next token into ps->tok. Strings are only delimited here; decoding happens when the
 * parser takes the value. */
static void advance(parser *ps)
{
    skip_space(ps);
    token *t = &ps->tok;
    t->start = ps->p;
    t->line = ps->line;
    t->len = 0;
    if (ps->p >= ps->end) {
        t->kind = T_EOF;
        return;
    }
    char c = *ps->p;
    if (is_ident_start(c)) {
        while (ps->p < ps->end && is_ident_char(*ps->p)) ps->p++;
        t->kind = T_IDENT;
    } else if (isdigit((unsigned char)c) ||
               (c == '.' && ps->p + 1 < ps->end && isdigit((unsigned char)ps->p[1]))) {
        /* Greedy: a number running into letters ("1abc", "1e") becomes one token that fails
         * validation, which is what the format asks for. */
        bool hex = c == '0' && ps->p + 1 < ps->end && (ps->p[1] == 'x' || ps->p[1] == 'X');
        ps->p++;
        while (ps->p < ps->end) {
            char d = *ps->p;
            if (is_ident_char(d) || d == '.') {
                ps->p++;
            } else if ((d == '+' || d == '-') && !hex && (ps->p[-1] == 'e' || ps->p[-1] == 'E')) {
                ps->p++;
            } else {
                break;
            }
        }
        t->kind = T_NUMBER;
    } else if (c == '"' || c == '\'') {
        ps->p++;
        while (ps->p < ps->end && *ps->p != c && *ps->p != '\n') {
            if (*ps->p == '\\' && ps->p + 1 < ps->end && ps->p[1] != '\n') ps->p++;
            ps->p++;
        }
        if (ps->p >= ps->end || *ps->p != c) {
            fail(ps, t->line, NULL, "unterminated string%s", "");
            t->kind = T_EOF;
            return;
        }
        ps->p++;
        t->kind = T_STRING;
    } else if (strchr(":{}<>[],;-", c)) {
        ps->p++;
        t->kind = T_PUNCT;
    } else {
        char s[8];
        snprintf(s, sizeof(s), isprint((unsigned char)c) ? "%c" : "\\x%02x", (unsigned char)c);
        fail(ps, t->line, NULL, "unexpected character '%s'", s);
        t->kind = T_EOF;
        return;
    }
    t->len = (size_t)(ps->p - t->start);
}

static bool is_punct(const parser *ps, char c)
{
    return ps->tok.kind == T_PUNCT && ps->tok.start[0] == c;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the string token T (quotes included) onto the end of OUT (which has room for the
 * token's length, escapes never grow). Returns the new length or (size_t)-1 after an error. */
static size_t decode_string(parser *ps, const char *field, const token *t, char *out, size_t n)
{
    const char *s = t->start + 1, *e = t->start + t->len - 1;
    while (s < e) {
        if (*s != '\\') {
            out[n++] = *s++;
            continue;
        }
        s++;
        char c = *s++;
        uint32_t v = 0;
        switch (c) {
        case 'a':
            out[n++] = '\a';
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'v':
            out[n++] = '\v';
            break;
        case '\\':
        case '\'':
        case '"':
        case '?':
            out[n++] = c;
            break;
        case 'x':
        case 'X': {
            int k = 0;
            while (k < 2 && s < e && hexval(*s) >= 0) v = v * 16 + (uint32_t)hexval(*s++), k++;
            if (!k) goto bad;
            out[n++] = (char)v;
            break;
        }
        case 'u':
        case 'U': {
            int want = c == 'u' ? 4 : 8;
            for (int k = 0; k < want; k++) {
                if (s >= e || hexval(*s) < 0) goto bad;
                v = v * 16 + (uint32_t)hexval(*s++);
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto bad;
            /* A \u escape is at most 6 bytes of text and at most 4 of UTF-8: no overflow. */
            n += put_utf8(out + n, v);
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                v = (uint32_t)(c - '0');
                for (int k = 0; k < 2 && s < e && *s >= '0' && *s <= '7'; k++)
                    v = v * 8 + (uint32_t)(*s++ - '0');
                if (v > 255) goto bad;
                out[n++] = (char)v;
                break;
            }
            goto bad;
        }
        if (n && out[n - 1] == 0 && c != 'u' && c != 'U') {
            fail(ps, t->line, field, "strings may not contain NUL characters%s", "");
            return (size_t)-1;
        }
        if (v == 0 && (c == 'u' || c == 'U')) {
            fail(ps, t->line, field, "strings may not contain NUL characters%s", "");
            return (size_t)-1;
        }
    }
    return n;
bad:
    fail(ps, t->line, field, "invalid escape sequence in string%s", "");
    return (size_t)-1;
}

static rt_pbtxt_node *new_node(parser *ps, const char *name, int line)
{
    if (++ps->nodes > RT_PBTXT_MAX_NODES) {
        fail(ps, line, NULL, "too many fields (the limit is %s)", "65536");
        return NULL;
    }
    rt_pbtxt_node *n = core_pool_alloc(ps->pool, sizeof(*n), 0);
    if (!n) {
        if (!ps->err) ps->err = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    n->name = name;
    n->line = line;
    return n;
}

/* Appends node N to the list whose last element pointer is *TAIL. */
static void append(rt_pbtxt_node ***tail, rt_pbtxt_node *n)
{
    **tail = n;
    *tail = &n->next;
}

static void parse_fields(parser *ps, rt_pbtxt_node *msg, char close, int depth);

/* Parses "{ fields }" or "< fields >" into a new message node named NAME. */
static rt_pbtxt_node *parse_message(parser *ps, const char *name, int depth)
{
    int line = ps->tok.line;
    char close = is_punct(ps, '{') ? '}' : '>';
    if (depth >= RT_PBTXT_MAX_DEPTH) {
        fail(ps, line, name, "messages nested too deeply (the limit is %s)", "32");
        return NULL;
    }
    rt_pbtxt_node *n = new_node(ps, name, line);
    if (!n) return NULL;
    n->kind = RT_PBTXT_MESSAGE;
    advance(ps);
    parse_fields(ps, n, close, depth + 1);
    if (ps->err) return NULL;
    advance(ps); /* the closing brace, checked by parse_fields */
    return n;
}

/* Parses one scalar value (with an optional '-', adjacent strings joined). */
static rt_pbtxt_node *parse_scalar(parser *ps, const char *name)
{
    char buf[48];
    int line = ps->tok.line;
    bool neg = false;
    if (is_punct(ps, '-')) {
        neg = true;
        advance(ps);
        if (ps->tok.kind != T_NUMBER && ps->tok.kind != T_IDENT) {
            fail(ps, ps->tok.line, name, "expected a number after '-', got '%s'",
                 tok_text(&ps->tok, buf, sizeof(buf)));
            return NULL;
        }
    }
    rt_pbtxt_node *n = new_node(ps, name, line);
    if (!n) return NULL;
    if (ps->tok.kind == T_STRING) {
        /* Adjacent strings concatenate: measure them first, then decode into one buffer. */
        parser save = *ps;
        size_t total = 0;
        while (ps->tok.kind == T_STRING) {
            total += ps->tok.len;
            advance(ps);
        }
        if (ps->err) return NULL;
        *ps = save;
        char *out = core_pool_alloc(ps->pool, total + 1, 1);
        if (!out) {
            ps->err = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            return NULL;
        }
        size_t len = 0;
        while (ps->tok.kind == T_STRING) {
            len = decode_string(ps, name, &ps->tok, out, len);
            if (len == (size_t)-1) return NULL;
            advance(ps);
        }
        out[len] = 0;
        n->kind = RT_PBTXT_STRING;
        n->text = out;
        return n;
    }
    if (ps->tok.kind != T_NUMBER && ps->tok.kind != T_IDENT) {
        fail(ps, ps->tok.line, name, "expected a value, got '%s'",
             tok_text(&ps->tok, buf, sizeof(buf)));
        return NULL;
    }
    char *text = core_pool_alloc(ps->pool, ps->tok.len + 2, 1);
    if (!text) {
        ps->err = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    size_t k = 0;
    if (neg) text[k++] = '-';
    memcpy(text + k, ps->tok.start, ps->tok.len);
    text[k + ps->tok.len] = 0;
    n->kind = ps->tok.kind == T_NUMBER ? RT_PBTXT_NUMBER : RT_PBTXT_IDENT;
    n->text = text;
    advance(ps);
    return n;
}

/* Parses one field "name: value", "name { }", "name: [ ... ]" or "name [ {..} ]", appending its
 * node(s) to *TAIL. */
static void parse_field(parser *ps, rt_pbtxt_node ***tail, int depth)
{
    char buf[48];
    if (ps->tok.kind != T_IDENT) {
        if (is_punct(ps, '['))
            fail(ps, ps->tok.line, NULL, "extension and Any fields ('[...]') are not supported%s",
                 "");
        else
            fail(ps, ps->tok.line, NULL, "expected a field name, got '%s'",
                 tok_text(&ps->tok, buf, sizeof(buf)));
        return;
    }
    char *name = core_pool_strndup(ps->pool, ps->tok.start, ps->tok.len);
    if (!name) {
        ps->err = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        return;
    }
    int line = ps->tok.line;
    advance(ps);
    bool colon = false;
    if (is_punct(ps, ':')) {
        colon = true;
        advance(ps);
    }
    if (is_punct(ps, '{') || is_punct(ps, '<')) {
        rt_pbtxt_node *n = parse_message(ps, name, depth);
        if (n) append(tail, n);
    } else if (is_punct(ps, '[')) {
        advance(ps);
        int kind = -1; /* 0 scalars, 1 messages */
        while (!ps->err && !is_punct(ps, ']')) {
            bool msg = is_punct(ps, '{') || is_punct(ps, '<');
            if (kind >= 0 && kind != (int)msg) {
                fail(ps, ps->tok.line, name, "a list mixes messages and values%s", "");
                return;
            }
            kind = msg;
            if (!msg && !colon) {
                fail(ps, line, name, "expected ':' before a list of values%s", "");
                return;
            }
            rt_pbtxt_node *n = msg ? parse_message(ps, name, depth) : parse_scalar(ps, name);
            if (!n) return;
            append(tail, n);
            if (is_punct(ps, ',')) {
                advance(ps);
                if (is_punct(ps, ']')) {
                    fail(ps, ps->tok.line, name, "a list may not end with ','%s", "");
                    return;
                }
            } else if (!is_punct(ps, ']')) {
                fail(ps, ps->tok.line, name, "expected ',' or ']' in a list, got '%s'",
                     tok_text(&ps->tok, buf, sizeof(buf)));
                return;
            }
        }
        if (ps->err) return;
        advance(ps);
    } else if (colon) {
        rt_pbtxt_node *n = parse_scalar(ps, name);
        if (n) append(tail, n);
    } else {
        fail(ps, ps->tok.line, name, "expected ':' or '{' after the field name, got '%s'",
             tok_text(&ps->tok, buf, sizeof(buf)));
        return;
    }
    if (ps->err) return;
    if (is_punct(ps, ';') || is_punct(ps, ',')) advance(ps);
}

/* Parses fields until CLOSE (0: end of file) into MSG's children; leaves CLOSE current. */
static void parse_fields(parser *ps, rt_pbtxt_node *msg, char close, int depth)
{
    rt_pbtxt_node **tail = &msg->child;
    char buf[48];
    for (;;) {
        if (ps->err) return;
        if (close ? is_punct(ps, close) : ps->tok.kind == T_EOF) return;
        if (ps->tok.kind == T_EOF) {
            fail(ps, ps->tok.line, msg->name, "missing '%s' at the end of the message",
                 close == '}' ? "}" : ">");
            return;
        }
        if (ps->tok.kind == T_PUNCT && strchr("}>]", ps->tok.start[0])) {
            fail(ps, ps->tok.line, msg->name, "unexpected '%s'",
                 tok_text(&ps->tok, buf, sizeof(buf)));
            return;
        }
        parse_field(ps, &tail, depth);
    }
}

ferry_status *rt_pbtxt_parse(const char *text, size_t len, const char *file, core_pool *pool,
                             rt_pbtxt_node **root)
{
    *root = NULL;
    if (len > RT_MAX_CONFIG_BYTES)
        return core_error(FERRY_ERR_INVALID_MODEL, "%s: larger than %u bytes", file,
                          (unsigned)RT_MAX_CONFIG_BYTES);
    if (memchr(text, 0, len))
        return core_error(FERRY_ERR_INVALID_MODEL, "%s: contains a NUL byte", file);
    parser ps = {.p = text, .end = text + len, .line = 1, .file = file, .pool = pool};
    rt_pbtxt_node *r = new_node(&ps, "", 1);
    if (!r) return ps.err;
    r->kind = RT_PBTXT_MESSAGE;
    advance(&ps);
    parse_fields(&ps, r, 0, 0);
    if (ps.err) return ps.err;
    *root = r;
    return NULL;
}
