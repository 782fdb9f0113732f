/* log.c - the runtime's structured events (one JSON object per line) and its clocks.
 *
 * Events are built in a fixed buffer on the stack: logging never allocates, and a value too long
 * for the buffer is cut rather than growing it (model errors can quote hostile file content).
 */
#include "runtime/rt_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t rt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rt_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Room kept free for what closes a cut value ("...\"") and the object ("}"). */
#define RESERVE 8

/* Appends N bytes when they fit before the reserve; otherwise marks the line full. */
static bool put(rt_jlog *j, const char *s, size_t n)
{
    if (j->full || j->len + n + RESERVE > sizeof(j->buf)) {
        j->full = true;
        return false;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    return true;
}

/* Appends ,"KEY": atomically; false when the line is full (then nothing more is added). */
static bool put_key(rt_jlog *j, const char *key)
{
    size_t k = strlen(key);
    if (j->full || j->len + k + 4 + RESERVE > sizeof(j->buf)) {
        j->full = true;
        return false;
    }
    put(j, ",\"", 2);
    put(j, key, k);
    put(j, "\":", 2);
    return true;
}

void rt_jlog_begin(rt_jlog *j, rt_log_level level, const char *event)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    j->len = 0;
    j->full = false;
    j->level = level;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char head[96];
    int n = snprintf(head, sizeof(head),
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level & 3]);
    put(j, head, (size_t)n);
    rt_jlog_str(j, "component", "runtime");
    rt_jlog_str(j, "event", event);
}

/* Appends VALUE as a JSON string: quotes, backslashes and control bytes escaped, bytes >= 0x80
 * passed through. A value that does not fit is cut and ends in "..."; the line stays valid. */
void rt_jlog_str(rt_jlog *j, const char *key, const char *value)
{
    if (!put_key(j, key) || !put(j, "\"", 1)) return;
    for (const char *s = value ? value : ""; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        bool ok;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            ok = put(j, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            ok = put(j, esc, 6);
        } else {
            ok = put(j, (const char *)&c, 1);
        }
        if (!ok) {
            /* The reserve holds this and the final brace. */
            memcpy(j->buf + j->len, "...\"", 4);
            j->len += 4;
            return;
        }
    }
    if (!put(j, "\"", 1)) {
        j->buf[j->len++] = '"';
    }
}

void rt_jlog_int(rt_jlog *j, const char *key, int64_t value)
{
    char s[32];
    int n = snprintf(s, sizeof(s), "%lld", (long long)value);
    if (!put_key(j, key)) return;
    if (!put(j, s, (size_t)n)) j->buf[j->len++] = '0';
}

void rt_jlog_num(rt_jlog *j, const char *key, double value)
{
    char s[48];
    int n = snprintf(s, sizeof(s), "%.3f", value);
    if (!put_key(j, key)) return;
    if (!put(j, s, (size_t)n)) j->buf[j->len++] = '0';
}
