/* pb.c - protobuf wire-format decoding, bounds-checked. */
#include "engine/pb.h"

#include <string.h>

bool pb_read_varint(pb_reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->failed = true;
            return false;
        }
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    r->failed = true;
    return false;
}

bool pb_next(pb_reader *r, pb_field *f)
{
    if (r->failed || r->p >= r->end) return false;
    uint64_t key;
    if (!pb_read_varint(r, &key)) return false;
    f->number = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    if (f->number == 0 || key >> 32) goto bad;
    switch (f->wire) {
    case PB_VARINT:
        if (!pb_read_varint(r, &f->u)) return false;
        return true;
    case PB_FIXED64:
        if (r->end - r->p < 8) goto bad;
        memcpy(&f->u, r->p, 8);
        r->p += 8;
        return true;
    case PB_FIXED32: {
        if (r->end - r->p < 4) goto bad;
        uint32_t u32;
        memcpy(&u32, r->p, 4);
        f->u = u32;
        r->p += 4;
        return true;
    }
    case PB_LEN: {
        uint64_t len;
        if (!pb_read_varint(r, &len)) return false;
        if (len > (uint64_t)(r->end - r->p)) goto bad;
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return true;
    }
    default:
        goto bad;
    }
bad:
    r->failed = true;
    return false;
}
