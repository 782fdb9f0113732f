/* pb.h - a zero-copy reader of the protobuf wire format.
 *
 * ONNX models are protobuf messages; Ferry decodes them straight from the mapped file so that
 * weights stay where they are. Every read is bounds-checked: a truncated or hostile buffer
 * makes the reader fail, never read past its end.
 */
#ifndef ENGINE_PB_H
#define ENGINE_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_FIXED32 = 5 };

typedef struct pb_reader {
    const uint8_t *p, *end;
    bool failed;
} pb_reader;

typedef struct pb_field {
    uint32_t number;
    uint32_t wire;
    uint64_t u;          /* PB_VARINT, PB_FIXED32, PB_FIXED64 */
    const uint8_t *data; /* PB_LEN */
    size_t len;          /* PB_LEN */
} pb_field;

static inline pb_reader pb_init(const void *data, size_t len)
{
    pb_reader r = {(const uint8_t *)data, (const uint8_t *)data + len, false};
    return r;
}

/* Reads the next field into *F. Returns true when a field was read; false at the end of the
 * buffer or on malformed input (then r->failed is set). Groups are rejected as malformed. */
bool pb_next(pb_reader *r, pb_field *f);

/* Reads one varint from a packed run; false at the end or on error (sets failed). */
bool pb_read_varint(pb_reader *r, uint64_t *v);

#endif
