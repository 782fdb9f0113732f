/* status.c - heap-allocated error values with a code and a message. */
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ferry_status {
    ferry_code code;
    char message[];
};

/* Returned when the error itself cannot be allocated; never freed. */
static struct {
    ferry_code code;
    char message[32];
} oom_status = {FERRY_ERR_NO_MEMORY, "out of memory"};

#define OOM ((ferry_status *)&oom_status)

ferry_status *core_verror(ferry_code code, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) n = 0;
    ferry_status *st = malloc(sizeof(*st) + (size_t)n + 1);
    if (!st) return OOM;
    st->code = code;
    vsnprintf(st->message, (size_t)n + 1, fmt, ap);
    return st;
}

ferry_status *core_error(ferry_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ferry_status *st = core_verror(code, fmt, ap);
    va_end(ap);
    return st;
}

ferry_status *core_error_wrap(ferry_status *st, const char *fmt, ...)
{
    if (!st) return NULL;
    if (st == OOM) return st;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    ferry_status *out = core_error(st->code, "%s: %s", prefix, st->message);
    if (out == OOM) return st;
    free(st);
    return out;
}

ferry_code ferry_status_code(const ferry_status *st)
{
    return st ? st->code : FERRY_OK;
}

const char *ferry_status_message(const ferry_status *st)
{
    return st ? st->message : "ok";
}

const char *ferry_code_name(ferry_code code)
{
    static const char *const names[] = {
        [FERRY_OK] = "ok",
        [FERRY_ERR_INVALID_ARGUMENT] = "invalid_argument",
        [FERRY_ERR_INVALID_MODEL] = "invalid_model",
        [FERRY_ERR_UNSUPPORTED] = "unsupported",
        [FERRY_ERR_NOT_FOUND] = "not_found",
        [FERRY_ERR_IO] = "io_error",
        [FERRY_ERR_NO_MEMORY] = "no_memory",
        [FERRY_ERR_RUNTIME] = "runtime_error",
        [FERRY_ERR_INTERNAL] = "internal_error",
        [FERRY_ERR_UNAVAILABLE] = "unavailable",
        [FERRY_ERR_TIMEOUT] = "timeout",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) == FERRY_CODE_COUNT, "code names");
    if ((unsigned)code >= FERRY_CODE_COUNT) return "unknown";
    return names[code];
}

void ferry_status_free(ferry_status *st)
{
    if (st && st != OOM) free(st);
}
