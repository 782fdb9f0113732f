/* plan.h - memory plans: shapes, kernels and arena offsets for one set of input shapes.
 *
 * A plan is built by an execution context the first time it sees an input signature (dtypes,
 * shapes, and the data of the few inputs that decide shapes). Building runs shape inference
 * node by node, computes values that shape inference needs, then lays every intermediate
 * tensor out in one arena by lifetime. Running a plan only calls the resolved kernels.
 */
#ifndef ENGINE_PLAN_H
#define ENGINE_PLAN_H

#include "engine/graph.h"

typedef struct eng_plan eng_plan;

/* Builds a plan for INPUTS (one per model input, in order) to run on THREADS (NULL: one
 * thread; operators size per-thread scratch from it in infer). With DRY set, input data may be
 * NULL and no arena is allocated: the plan only checks the graph (used at load). */
ferry_status *eng_plan_build(const ferry_model *m, const eng_tensor *inputs, bool dry,
                             core_threadpool *threads, eng_plan **out);

/* True when INPUTS have the signature the plan was built for. */
bool eng_plan_matches(const eng_plan *p, const ferry_model *m, const eng_tensor *inputs);

/* A node's profile: how many runs executed it and their total wall time. */
typedef struct eng_node_counter {
    uint64_t runs;
    uint64_t nanoseconds;
} eng_node_counter;

/* Runs the plan on INPUTS (same signature), operators splitting work over THREADS (may be
 * NULL). With COUNTERS (one per node of M, indexed like m->nodes) each step is timed and added
 * to its node's counter; NULL costs nothing. */
ferry_status *eng_plan_run(eng_plan *p, const ferry_model *m, const eng_tensor *inputs,
                           core_threadpool *threads, eng_node_counter *counters);

/* Bytes of the plan's arena: every intermediate tensor and operator workspace of one run. */
size_t eng_plan_arena_bytes(const eng_plan *p);

/* The tensor of value V after a run. */
const eng_tensor *eng_plan_value(const eng_plan *p, int v);

void eng_plan_free(eng_plan *p);

/* Checks INPUT against model input number I (dtype and declared dims, and with NEED_DATA a
 * data pointer). */
ferry_status *eng_check_input(const ferry_model *m, int i, const eng_tensor *input, bool need_data);

/* Infers and runs node N once on INS, allocating its outputs OUTS in POOL. Used for constant
 * folding at load and for values that shape inference needs while planning. */
ferry_status *eng_eval_node(const eng_node *n, eng_tensor **ins, eng_tensor *outs, core_pool *pool);

#endif
