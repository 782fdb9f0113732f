/* batch_split.h - running a batch as independent slices.
 *
 * Most vision models compute every sample of a batch on its own: convolutions, pooling and
 * per-channel arithmetic never mix samples. A batch of 32 images then holds 32 times the
 * activations of one, and once they outgrow the caches every operator streams them from
 * memory. Running such a batch one small slice at a time keeps a slice's activations in cache;
 * with several threads, each thread runs whole slices from the first operator to the last, so
 * the threads never wait for each other inside the model.
 *
 * Whether a model is sample-wise is decided once at load, conservatively, from its operators
 * and their attributes (eng_batch_analyse). Whether slicing pays is decided per input shape
 * from the memory plan of one sample.
 */
#ifndef ENGINE_BATCH_SPLIT_H
#define ENGINE_BATCH_SPLIT_H

#include "engine/graph.h"
#include "engine/plan.h"

/* Activations one slice may hold unless the caller says otherwise: a share of a server's
 * last-level cache. A sample whose activations fit many times over runs with its whole batch. */
#define DEFAULT_SLICE_BYTES ((size_t)8 << 20)

/* True when every input and output of M carries the batch on axis 0 and every operator
 * between them treats the samples independently. One pass over the nodes; the loader stores
 * the answer in m->batch_separable. */
bool eng_batch_separable(const ferry_model *m);

/* Slices a batch runs as: the plans of each thread for one slice shape, and the whole
 * batch's outputs. Owned by an execution context. */
typedef struct eng_split eng_split;

/* Runs INPUTS as slices when M is separable (m->batch_separable), the batch
 * is larger than one and one sample's activations are large enough that slicing keeps them in
 * cache. *SPLIT caches the decision and the plans for the input signature (created on first
 * use; free with eng_split_free). Sets *USED to whether it ran the model; when false, nothing
 * ran and the caller runs the whole batch. COUNTERS as for eng_plan_run. */
ferry_status *eng_split_run(eng_split **split, const ferry_model *m, const eng_tensor *inputs,
                            core_threadpool *threads, eng_node_counter *counters, bool *used);

/* Output I of the last run that used slices. */
const eng_tensor *eng_split_output(const eng_split *split, int i);

/* Samples per slice of the last decision (0: the batch ran whole); for tests and tools. */
int64_t eng_split_slice(const eng_split *split);

void eng_split_free(eng_split *split);

#endif
