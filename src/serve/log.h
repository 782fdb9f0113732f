/* log.h - the server's JSON log lines on stderr: access log and server events.
 *
 * One JSON object per line, in the runtime's shape ("ts", "level", "component", "event" first),
 * so one parser reads every line Ferry writes. Each line is built in memory and reaches stderr
 * whole, in a write(2) of whole lines, so lines from concurrent threads never interleave.
 */
#ifndef SERVE_LOG_H
#define SERVE_LOG_H

#include "serve/buf.h"

#include <stdint.h>

/* Starts a line in B (which the caller frees): {"ts":..,"level":LEVEL,"component":"http",
 * "event":EVENT. */
void srv_log_begin(srv_buf *b, const char *level, const char *event);
void srv_log_str(srv_buf *b, const char *key, const char *value);
void srv_log_strn(srv_buf *b, const char *key, const char *value, size_t len);
void srv_log_int(srv_buf *b, const char *key, int64_t value);
/* A duration in milliseconds with microsecond resolution. */
void srv_log_ms(srv_buf *b, const char *key, uint64_t ns);
/* Closes the object and writes the line to stderr. B is emptied, not freed. */
void srv_log_end(srv_buf *b);

/* Buffered mode, for the access log under load: lines are collected in memory and written by a
 * background thread every few milliseconds (or when a buffer's worth is waiting), in chunks of
 * whole lines that stay atomic on a pipe. Without it every line is one write(2). stop flushes
 * everything and returns to direct writes. Both are for the server's start and end only. */
void srv_log_buffered_start(void);
void srv_log_buffered_stop(void);

/* A one-field event line: {"ts":..,"level":..,"component":"http","event":EVENT,"message":MSG}. */
void srv_log_event(const char *level, const char *event, const char *message);

/* Monotonic nanoseconds (durations) and wall-clock milliseconds since the epoch. */
uint64_t srv_now_ns(void);
uint64_t srv_wall_ms(void);

#endif
