/* log.c - JSON log lines for the access log and server events. */
#include "serve/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t srv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t srv_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void srv_log_begin(srv_buf *b, const char *level, const char *event)
{
    /* The date and time to the second are formatted once per second per thread: gmtime and
     * printf for every access log line would cost more than the line's other fields. */
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = ts.tv_sec;
    }
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
    char frac[5] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z',
                    0};
    b->len = 0;
    b->failed = false;
    srv_buf_puts(b, "{\"ts\":\"");
    srv_buf_puts(b, cached);
    srv_buf_puts(b, frac);
    srv_buf_puts(b, "\",\"level\":\"");
    srv_buf_puts(b, level);
    srv_buf_puts(b, "\",\"component\":\"http\",\"event\":\"");
    srv_buf_puts(b, event);
    srv_buf_putc(b, '"');
}

void srv_log_strn(srv_buf *b, const char *key, const char *value, size_t len)
{
    srv_buf_puts(b, ",\"");
    srv_buf_puts(b, key);
    srv_buf_puts(b, "\":");
    srv_buf_json_string(b, value, len);
}

void srv_log_str(srv_buf *b, const char *key, const char *value)
{
    if (value) srv_log_strn(b, key, value, strlen(value));
}

void srv_log_int(srv_buf *b, const char *key, int64_t value)
{
    srv_buf_puts(b, ",\"");
    srv_buf_puts(b, key);
    srv_buf_puts(b, "\":");
    srv_buf_i64(b, value);
}

void srv_log_ms(srv_buf *b, const char *key, uint64_t ns)
{
    srv_buf_puts(b, ",\"");
    srv_buf_puts(b, key);
    srv_buf_puts(b, "\":");
    srv_buf_u64(b, ns / 1000000u);
    unsigned us = (unsigned)(ns / 1000u % 1000u);
    char frac[5] = {'.', (char)('0' + us / 100), (char)('0' + us / 10 % 10), (char)('0' + us % 10),
                    0};
    srv_buf_puts(b, frac);
}

/* Buffered mode: lines wait in PENDING until the flusher takes them. */
#define FLUSH_INTERVAL_MS 20
#define FLUSH_AT          (64 * 1024)
#define PENDING_MAX       (4 * 1024 * 1024)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static srv_buf pending = {.max = PENDING_MAX};
static bool buffered, stopping;
static pthread_t flusher;

static void write_raw(const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(STDERR_FILENO, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; /* a closed or full stderr must not stop the server */
        p += n;
        len -= (size_t)n;
    }
}

/* Writes whole lines, at most PIPE_BUF bytes per write(2) where lines allow, so that on a pipe
 * no other writer's line (the runtime's) lands inside one of ours. */
static void write_lines(const char *p, size_t len)
{
    pthread_mutex_lock(&write_lock);
    while (len) {
        size_t n = len;
        if (n > PIPE_BUF) {
            n = PIPE_BUF;
            while (n > 0 && p[n - 1] != '\n') n--;
            if (n == 0) { /* one line longer than PIPE_BUF: it goes out alone */
                const char *nl = memchr(p, '\n', len);
                n = nl ? (size_t)(nl - p) + 1 : len;
            }
        }
        write_raw(p, n);
        p += n;
        len -= n;
    }
    pthread_mutex_unlock(&write_lock);
}

static void *flush_main(void *arg)
{
    (void)arg;
    srv_buf out = {0};
    pthread_mutex_lock(&lock);
    for (;;) {
        bool last = stopping;
        if (!last && pending.len < FLUSH_AT) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += FLUSH_INTERVAL_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&wake, &lock, &ts);
        }
        srv_buf t = pending; /* swap: appenders keep going while we write */
        pending = out;
        pending.max = PENDING_MAX;
        out = t;
        pthread_mutex_unlock(&lock);
        if (out.len) write_lines(out.data, out.len);
        out.len = 0;
        out.failed = false;
        pthread_mutex_lock(&lock);
        if (last && pending.len == 0) break;
    }
    pthread_mutex_unlock(&lock);
    srv_buf_free(&out);
    return NULL;
}

void srv_log_buffered_start(void)
{
    pthread_mutex_lock(&lock);
    bool start = !buffered;
    buffered = true;
    stopping = false;
    pthread_mutex_unlock(&lock);
    if (start && pthread_create(&flusher, NULL, flush_main, NULL) != 0) {
        pthread_mutex_lock(&lock);
        buffered = false; /* no thread: stay with direct writes */
        pthread_mutex_unlock(&lock);
    }
}

void srv_log_buffered_stop(void)
{
    pthread_mutex_lock(&lock);
    bool was = buffered;
    stopping = true;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    if (!was) return;
    pthread_join(flusher, NULL);
    pthread_mutex_lock(&lock);
    buffered = false;
    srv_buf_free(&pending);
    pending.max = PENDING_MAX;
    pthread_mutex_unlock(&lock);
}

void srv_log_end(srv_buf *b)
{
    srv_buf_puts(b, "}\n");
    if (b->failed) return; /* a line cut short would not parse; drop it */
    pthread_mutex_lock(&lock);
    if (buffered && !stopping) {
        srv_buf_append(&pending, b->data, b->len);
        bool ok = !pending.failed;
        pending.failed = false;
        if (pending.len >= FLUSH_AT) pthread_cond_signal(&wake);
        pthread_mutex_unlock(&lock);
        if (!ok) write_lines(b->data, b->len); /* the flusher is behind: write it ourselves */
    } else {
        pthread_mutex_unlock(&lock);
        write_lines(b->data, b->len);
    }
    b->len = 0;
}

void srv_log_event(const char *level, const char *event, const char *message)
{
    srv_buf b = {.max = 64 * 1024};
    srv_log_begin(&b, level, event);
    srv_log_str(&b, "message", message);
    srv_log_end(&b);
    srv_buf_free(&b);
}
