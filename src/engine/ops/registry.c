/* registry.c - the one table of every operator family Ferry implements. */
#include "engine/op.h"

#include <string.h>

extern const eng_op_table eng_ops_elementwise; /* ops/elementwise.c */
extern const eng_op_table eng_ops_cast;        /* ops/cast.c */
extern const eng_op_table eng_ops_linalg;      /* ops/matmul.c */
extern const eng_op_table eng_ops_conv;        /* ops/conv.c */
extern const eng_op_table eng_ops_pool;        /* ops/pool.c */
extern const eng_op_table eng_ops_norm;        /* ops/norm.c */
extern const eng_op_table eng_ops_shape;       /* ops/shape.c */
extern const eng_op_table eng_ops_layout;      /* ops/layout.c */
extern const eng_op_table eng_ops_reduce;      /* ops/reduce.c */

static const eng_op_table *const families[] = {
    &eng_ops_elementwise, &eng_ops_cast, &eng_ops_linalg, &eng_ops_conv,  &eng_ops_pool,
    &eng_ops_norm,        &eng_ops_shape, &eng_ops_layout, &eng_ops_reduce,
};

static bool same_domain(const char *a, const char *b)
{
    /* "ai.onnx" and "" name the same default domain. */
    if (!strcmp(a, "ai.onnx")) a = "";
    if (!strcmp(b, "ai.onnx")) b = "";
    return !strcmp(a, b);
}

const eng_op *eng_op_find(const char *domain, const char *name, int opset)
{
    const eng_op *best = NULL;
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        const eng_op_table *t = families[f];
        for (size_t i = 0; i < t->count; i++) {
            const eng_op *op = &t->ops[i];
            if (strcmp(op->name, name) || !same_domain(op->domain, domain)) continue;
            if (op->since_version > opset) continue;
            if (!best || op->since_version > best->since_version) best = op;
        }
    }
    return best;
}
