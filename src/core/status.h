/* status.h - building ferry_status errors inside the library. */
#ifndef CORE_STATUS_H
#define CORE_STATUS_H

#include "ferry.h"

#include <stdarg.h>

/* Creates an error with a printf-style message. Never returns NULL: when memory runs out it
 * returns a shared, static out-of-memory status that ferry_status_free() ignores. */
ferry_status *core_error(ferry_code code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ferry_status *core_verror(ferry_code code, const char *fmt, va_list ap);

/* Returns ST with "PREFIX: " put in front of its message (the code is kept). Takes ownership of
 * ST; returns NULL for NULL. Used to add context as an error travels up ("node 'conv1': ..."). */
ferry_status *core_error_wrap(ferry_status *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
