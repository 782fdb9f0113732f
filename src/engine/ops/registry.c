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
/* Families that an edge build may leave out are weak: a missing one is simply absent. */
extern const eng_op_table eng_ops_unary __attribute__((weak));   /* ops/unary.c */
extern const eng_op_table eng_ops_logic __attribute__((weak));   /* ops/logic.c */
extern const eng_op_table eng_ops_index __attribute__((weak));   /* ops/index.c */
extern const eng_op_table eng_ops_resize __attribute__((weak));  /* ops/resize.c */
extern const eng_op_table eng_ops_pad __attribute__((weak));     /* ops/pad.c */
extern const eng_op_table eng_ops_nn2 __attribute__((weak));     /* ops/nn2.c */
extern const eng_op_table eng_ops_rnn __attribute__((weak));     /* ops/rnn.c */
extern const eng_op_table eng_ops_quant __attribute__((weak));   /* ops/quant.c */
extern const eng_op_table eng_ops_random __attribute__((weak));  /* ops/random.c */
extern const eng_op_table eng_ops_control __attribute__((weak)); /* ops/control.c */
extern const eng_op_table eng_ops_ml __attribute__((weak));      /* ops/ml_*.c */
extern const eng_op_table eng_ops_ml2 __attribute__((weak));     /* ops/ml_*.c */

static const eng_op_table *const families[] = {
    &eng_ops_elementwise, &eng_ops_cast,  &eng_ops_linalg, &eng_ops_conv,   &eng_ops_pool,
    &eng_ops_norm,        &eng_ops_shape, &eng_ops_layout, &eng_ops_reduce, &eng_ops_unary,
    &eng_ops_logic,       &eng_ops_index, &eng_ops_resize, &eng_ops_pad,    &eng_ops_nn2,
    &eng_ops_rnn,         &eng_ops_quant, &eng_ops_random, &eng_ops_control, &eng_ops_ml,
    &eng_ops_ml2,
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
        if (!t) continue; /* a weak family that is not linked in */
        for (size_t i = 0; i < t->count; i++) {
            const eng_op *op = &t->ops[i];
            if (strcmp(op->name, name) || !same_domain(op->domain, domain)) continue;
            if (op->since_version > opset) continue;
            if (!best || op->since_version > best->since_version) best = op;
        }
    }
    return best;
}
