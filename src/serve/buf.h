/* buf.h - the serving layer's memory by lifetime: a per-request arena and bounded buffers.
 *
 * Every request owns one srv_arena. Decoded tensors, strings and small tables come from it and
 * are released together when the response has been sent, so the hot path makes no malloc per
 * tensor. The first block lives inside the request object; only large requests reach malloc.
 * Both the arena and srv_buf carry a limit, because what they hold grows from client input.
 */
#ifndef SERVE_BUF_H
#define SERVE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_arena_block srv_arena_block;

typedef struct srv_arena {
    char *cur, *end;         /* free space of the current block */
    srv_arena_block *blocks; /* malloc'd blocks, newest first; the inline block is not here */
    size_t used;             /* bytes taken from malloc'd blocks, checked against limit */
    size_t limit;            /* most bytes the arena may take from malloc (0: unlimited) */
} srv_arena;

/* Starts an arena on INLINE_BUF (SIZE bytes, may be NULL/0) that may take up to LIMIT more bytes
 * from malloc. */
void srv_arena_init(srv_arena *a, void *inline_buf, size_t size, size_t limit);

/* SIZE bytes aligned to ALIGN (a power of two up to 64), not zeroed. NULL when the limit would
 * be passed or memory runs out; the arena stays usable. */
void *srv_arena_alloc(srv_arena *a, size_t size, size_t align);

/* A NUL-terminated copy of LEN bytes of S, or NULL. */
char *srv_arena_strndup(srv_arena *a, const char *s, size_t len);

/* Frees every malloc'd block; the arena is empty afterwards (inline block forgotten). */
void srv_arena_release(srv_arena *a);

/* A growable byte buffer with a maximum size. */
typedef struct srv_buf {
    char *data;
    size_t len, cap;
    size_t max;  /* srv_buf_reserve fails past this many bytes (0: unlimited) */
    bool failed; /* set when an append did not fit; later appends are ignored */
} srv_buf;

/* Makes room for EXTRA more bytes. False (and failed set) when the maximum or memory runs out. */
bool srv_buf_reserve(srv_buf *b, size_t extra);
void srv_buf_append(srv_buf *b, const void *data, size_t len);
void srv_buf_puts(srv_buf *b, const char *s);
void srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void srv_buf_putc(srv_buf *b, char c)
{
    if (b->len < b->cap)
        b->data[b->len++] = c;
    else
        srv_buf_append(b, &c, 1);
}
/* Appends S (LEN bytes) as a JSON string literal, quotes included. Control characters are
 * escaped, invalid UTF-8 bytes become U+FFFD so the output is always valid JSON. */
void srv_buf_json_string(srv_buf *b, const char *s, size_t len);
/* Appends a decimal integer. */
void srv_buf_i64(srv_buf *b, int64_t v);
void srv_buf_u64(srv_buf *b, uint64_t v);
/* Frees the data; the buffer is empty and reusable. */
void srv_buf_free(srv_buf *b);
/* Hands the data over to the caller (who frees it with free()); the buffer is empty. */
char *srv_buf_steal(srv_buf *b, size_t *len);

#endif
