/* pbw.h - a tiny protobuf writer for building ONNX models byte by byte in unit tests. */
#ifndef TEST_PBW_H
#define TEST_PBW_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct pbw {
    uint8_t *d;
    size_t n, cap;
} pbw;

static inline void pbw_bytes(pbw *w, const void *p, size_t n)
{
    if (!n) return;
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->d = realloc(w->d, w->cap);
    }
    memcpy(w->d + w->n, p, n);
    w->n += n;
}

static inline void pbw_varint(pbw *w, uint64_t v)
{
    uint8_t b[10];
    int n = 0;
    do {
        b[n] = v & 0x7f;
        v >>= 7;
        if (v) b[n] |= 0x80;
        n++;
    } while (v);
    pbw_bytes(w, b, (size_t)n);
}

static inline void pbw_key(pbw *w, unsigned field, unsigned wire)
{
    pbw_varint(w, (uint64_t)field << 3 | wire);
}

static inline void pbw_int(pbw *w, unsigned field, int64_t v)
{
    pbw_key(w, field, 0);
    pbw_varint(w, (uint64_t)v);
}

static inline void pbw_len(pbw *w, unsigned field, const void *p, size_t n)
{
    pbw_key(w, field, 2);
    pbw_varint(w, n);
    pbw_bytes(w, p, n);
}

static inline void pbw_str(pbw *w, unsigned field, const char *s)
{
    pbw_len(w, field, s, strlen(s));
}

/* Appends SUB as a length-delimited field and frees it. */
static inline void pbw_msg(pbw *w, unsigned field, pbw *sub)
{
    pbw_len(w, field, sub->d, sub->n);
    free(sub->d);
    memset(sub, 0, sizeof(*sub));
}

/* ValueInfoProto with a tensor type; dims < 0 become the symbol "N". */
static inline void pbw_value_info(pbw *w, unsigned field, const char *name, int dtype, int rank,
                                  const int64_t *dims)
{
    pbw shape = {0}, tt = {0}, type = {0}, vi = {0};
    for (int i = 0; i < rank; i++) {
        pbw dim = {0};
        if (dims[i] >= 0)
            pbw_int(&dim, 1, dims[i]);
        else
            pbw_str(&dim, 2, "N");
        pbw_msg(&shape, 1, &dim);
    }
    pbw_int(&tt, 1, dtype);
    if (rank >= 0)
        pbw_msg(&tt, 2, &shape);
    else
        free(shape.d);
    pbw_msg(&type, 1, &tt);
    pbw_str(&vi, 1, name);
    pbw_msg(&vi, 2, &type);
    pbw_msg(w, field, &vi);
}

/* NodeProto with up to 4 inputs and 2 outputs (NULL-terminated lists). */
static inline void pbw_node(pbw *w, const char *op, const char *const *ins, const char *const *outs,
                            const char *name)
{
    pbw n = {0};
    for (int i = 0; ins && ins[i]; i++) pbw_str(&n, 1, ins[i]);
    for (int i = 0; outs && outs[i]; i++) pbw_str(&n, 2, outs[i]);
    if (name) pbw_str(&n, 3, name);
    pbw_str(&n, 4, op);
    pbw_msg(w, 1, &n);
}

/* A float TensorProto initializer with raw_data. */
static inline void pbw_float_init(pbw *w, const char *name, int rank, const int64_t *dims,
                                  const float *data)
{
    pbw t = {0};
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        pbw_int(&t, 1, dims[i]);
        count *= (size_t)dims[i];
    }
    pbw_int(&t, 2, 1);
    pbw_str(&t, 8, name);
    pbw_len(&t, 9, data, count * sizeof(float));
    pbw_msg(w, 5, &t);
}

/* Wraps GRAPH into a ModelProto importing ai.onnx at OPSET. */
static inline pbw pbw_model(pbw *graph, int opset)
{
    pbw m = {0}, os = {0};
    pbw_int(&m, 1, 8);
    pbw_str(&m, 2, "ferry-tests");
    pbw_msg(&m, 7, graph);
    pbw_str(&os, 1, "");
    pbw_int(&os, 2, opset);
    pbw_msg(&m, 8, &os);
    return m;
}

#endif
