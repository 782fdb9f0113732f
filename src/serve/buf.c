/* buf.c - per-request arenas and bounded growable buffers. */
#include "serve/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_arena_block {
    srv_arena_block *next;
    size_t size;
    _Alignas(64) char data[];
};

/* Small enough that a typical request fits the inline block plus at most one of these. */
#define BLOCK_MIN (16 * 1024)

void srv_arena_init(srv_arena *a, void *inline_buf, size_t size, size_t limit)
{
    a->cur = inline_buf;
    a->end = inline_buf ? (char *)inline_buf + size : NULL;
    a->blocks = NULL;
    a->used = 0;
    a->limit = limit;
}

static char *align_up(char *p, size_t align)
{
    uintptr_t u = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
    return (char *)u;
}

void *srv_arena_alloc(srv_arena *a, size_t size, size_t align)
{
    if (align == 0) align = 1;
    if (a->cur) {
        char *p = align_up(a->cur, align);
        if (p <= a->end && (size_t)(a->end - p) >= size) {
            a->cur = p + size;
            return p;
        }
    }
    if (size > SIZE_MAX / 2) return NULL;
    size_t want = size + align > BLOCK_MIN ? size + align : BLOCK_MIN;
    if (a->limit && (want > a->limit || a->used > a->limit - want)) return NULL;
    srv_arena_block *b = malloc(sizeof(*b) + want);
    if (!b) return NULL;
    b->next = a->blocks;
    b->size = want;
    a->blocks = b;
    a->used += want;
    char *p = align_up(b->data, align);
    /* A big allocation gets a block of its own; keep bump-allocating in the old space when it
     * has more room left than the new block. */
    char *rest = p + size, *rest_end = b->data + want;
    if (!a->cur || rest_end - rest > a->end - a->cur) {
        a->cur = rest;
        a->end = rest_end;
    }
    return p;
}

char *srv_arena_strndup(srv_arena *a, const char *s, size_t len)
{
    char *d = srv_arena_alloc(a, len + 1, 1);
    if (!d) return NULL;
    if (len) memcpy(d, s, len);
    d[len] = 0;
    return d;
}

void srv_arena_release(srv_arena *a)
{
    srv_arena_block *b = a->blocks;
    while (b) {
        srv_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->blocks = NULL;
    a->cur = a->end = NULL;
    a->used = 0;
}

bool srv_buf_reserve(srv_buf *b, size_t extra)
{
    if (b->failed) return false;
    if (b->cap - b->len >= extra) return true;
    if (extra > SIZE_MAX / 4 - b->len) goto fail;
    size_t need = b->len + extra;
    if (b->max && need > b->max) goto fail;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < need) cap *= 2;
    if (b->max && cap > b->max) cap = b->max;
    char *d = realloc(b->data, cap);
    if (!d) goto fail;
    b->data = d;
    b->cap = cap;
    return true;
fail:
    b->failed = true;
    return false;
}

void srv_buf_append(srv_buf *b, const void *data, size_t len)
{
    if (!srv_buf_reserve(b, len)) return;
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
}

void srv_buf_puts(srv_buf *b, const char *s)
{
    srv_buf_append(b, s, strlen(s));
}

void srv_buf_printf(srv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof(small)) {
        srv_buf_append(b, small, (size_t)n);
        return;
    }
    if (!srv_buf_reserve(b, (size_t)n + 1)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at S (at most N bytes), or 0 when it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8. */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void srv_buf_json_string(srv_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case is 6 bytes per input byte (\u00XX); reserving it up front keeps the loop free
     * of checks. */
    if (len > (SIZE_MAX - 2) / 6 || !srv_buf_reserve(b, len * 6 + 2)) {
        b->failed = true;
        return;
    }
    char *o = b->data + b->len;
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    *o++ = '"';
    while (p < end) {
        unsigned c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            p++;
        } else if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
            p++;
        } else if (c < 0x20) {
            *o++ = '\\';
            switch (c) {
            case '\n':
                *o++ = 'n';
                break;
            case '\r':
                *o++ = 'r';
                break;
            case '\t':
                *o++ = 't';
                break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
            p++;
        } else {
            size_t n = utf8_len(p, (size_t)(end - p));
            if (n) {
                memcpy(o, p, n);
                o += n;
                p += n;
            } else {
                memcpy(o, "\\ufffd", 6);
                o += 6;
                p++;
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
}

void srv_buf_u64(srv_buf *b, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (!srv_buf_reserve(b, (size_t)n)) return;
    while (n) b->data[b->len++] = tmp[--n];
}

void srv_buf_i64(srv_buf *b, int64_t v)
{
    if (v < 0) {
        srv_buf_putc(b, '-');
        srv_buf_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        srv_buf_u64(b, (uint64_t)v);
    }
}

void srv_buf_free(srv_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

char *srv_buf_steal(srv_buf *b, size_t *len)
{
    char *d = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
    return d;
}
