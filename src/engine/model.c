/* model.c - the public model and context API of include/ferry.h. */
#include "engine/batch_split.h"
#include "engine/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

#define DEFAULT_MAX_WEIGHTS ((uint64_t)16 << 30)

struct ferry_context {
    const ferry_model *model;
    eng_plan *plan;
    eng_split *split;   /* batches run in slices */
    bool split_outputs; /* the last run's outputs are the split's */
    core_threadpool *threads;
    bool has_outputs;
    eng_node_counter *profile; /* one per model node while profiling is on, else NULL */
};

void ferry_model_close(ferry_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_subgraphs; i++) ferry_model_close(m->subgraphs[i]);
    free(m->subgraphs);
    for (int k = 0; k < m->n_nodes; k++)
        if (m->nodes[k].op && m->nodes[k].op->unpack && m->nodes[k].packed)
            m->nodes[k].op->unpack(m->nodes[k].packed);
    for (int k = 0; k < m->n_nodes; k++)
        if (m->nodes[k].op && m->nodes[k].op->fini && m->nodes[k].state)
            m->nodes[k].op->fini(m->nodes[k].state);
    for (size_t i = 0; i < m->n_externals; i++)
        if (m->externals[i].addr) munmap(m->externals[i].addr, m->externals[i].size);
    free(m->externals);
    if (m->file.addr) munmap(m->file.addr, m->file.size);
    free(m->dir);
    core_pool_release(&m->pool);
    free(m);
}

/* Checks the whole graph once at load when the inputs have fixed shapes, so that shape and
 * type errors surface when the model is opened rather than on the first request. */
static ferry_status *check_static(const ferry_model *m)
{
    eng_tensor *ins = calloc((size_t)m->n_inputs + 1, sizeof(eng_tensor));
    if (!ins) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    ferry_status *st = NULL;
    for (int i = 0; i < m->n_inputs; i++) {
        const eng_value *v = &m->values[m->inputs[i]];
        if (v->keyed || v->declared_rank < 0 || v->declared_dtype == FERRY_DTYPE_UNDEFINED)
            goto out;
        ins[i] = v->tensor;
        ins[i].rank = v->declared_rank;
        for (int d = 0; d < ins[i].rank; d++)
            if (ins[i].dims[d] < 0) goto out;
        ins[i].data = NULL;
    }
    eng_plan *p;
    st = eng_plan_build(m, ins, true, NULL, &p);
    eng_plan_free(st ? NULL : p);
out:
    free(ins);
    return st;
}

static ferry_status *open_common(ferry_model *m, const void *data, size_t size,
                                 const ferry_model_options *options)
{
    m->max_weight_bytes =
        options && options->max_weight_bytes ? options->max_weight_bytes : DEFAULT_MAX_WEIGHTS;
    m->intra_op_threads = options && options->intra_op_threads > 0 ? options->intra_op_threads : 1;
    ferry_status *st = eng_load_model(m, data, size);
    if (!st) st = check_static(m);
    if (!st) m->batch_separable = eng_batch_separable(m);
    if (!options || !options->disable_batch_slicing)
        m->batch_slice_bytes = options && options->batch_slice_bytes ? options->batch_slice_bytes
                                                                     : DEFAULT_SLICE_BYTES;
    return st;
}

ferry_status *ferry_model_open_file(const char *path, const ferry_model_options *options,
                                    ferry_model **out)
{
    ferry_status *st = NULL;
    int fd = -1;
    *out = NULL;
    if (!path) return core_error(FERRY_ERR_INVALID_ARGUMENT, "model path is NULL");
    ferry_model *m = calloc(1, sizeof(*m));
    if (!m) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        st = core_error(errno == ENOENT ? FERRY_ERR_NOT_FOUND : FERRY_ERR_IO,
                        "cannot open model '%s': %s", path, strerror(errno));
        goto fail;
    }
    fd = open(real, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = core_error(FERRY_ERR_IO, "cannot open model '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = core_error(FERRY_ERR_INVALID_ARGUMENT, "model '%s' is not a regular file", path);
        goto fail;
    }
    if (sb.st_size == 0) {
        st = core_error(FERRY_ERR_INVALID_MODEL, "model '%s' is empty", path);
        goto fail;
    }
    m->file.size = (size_t)sb.st_size;
    m->file.addr = mmap(NULL, m->file.size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m->file.addr == MAP_FAILED) {
        m->file.addr = NULL;
        st = core_error(FERRY_ERR_IO, "cannot map model '%s': %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    char *slash = strrchr(real, '/');
    if (slash) *slash = 0;
    m->dir = strdup(slash ? (*real ? real : "/") : ".");
    if (!m->dir) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    if ((st = open_common(m, m->file.addr, m->file.size, options))) {
        st = core_error_wrap(st, "%s", path);
        goto fail;
    }
    *out = m;
    return NULL;
fail:
    if (fd >= 0) close(fd);
    ferry_model_close(m);
    return st;
}

ferry_status *ferry_model_open_memory(const void *data, size_t size,
                                      const ferry_model_options *options, ferry_model **out)
{
    *out = NULL;
    if (!data && size) return core_error(FERRY_ERR_INVALID_ARGUMENT, "model buffer is NULL");
    ferry_model *m = calloc(1, sizeof(*m));
    if (!m) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    ferry_status *st = open_common(m, data, size, options);
    if (st) {
        ferry_model_close(m);
        return st;
    }
    *out = m;
    return NULL;
}

size_t ferry_model_input_count(const ferry_model *m)
{
    return (size_t)m->n_inputs;
}

size_t ferry_model_output_count(const ferry_model *m)
{
    return (size_t)m->n_outputs;
}

static void fill_info(const ferry_model *m, int v, ferry_value_info *out)
{
    const eng_value *val = &m->values[v];
    out->name = val->name;
    out->dtype = val->declared_dtype;
    out->rank = val->declared_rank;
    out->dims = val->tensor.dims;
    out->dim_names = val->dim_names;
    if (val->kind == ENG_VALUE_CONST) {
        out->dtype = val->tensor.dtype;
        out->rank = val->tensor.rank;
        out->dim_names = NULL;
    }
}

ferry_status *ferry_model_input_info(const ferry_model *m, size_t index, ferry_value_info *out)
{
    if (index >= (size_t)m->n_inputs)
        return core_error(FERRY_ERR_NOT_FOUND, "input %zu does not exist (the model has %d)", index,
                          m->n_inputs);
    fill_info(m, m->inputs[index], out);
    return NULL;
}

ferry_status *ferry_model_output_info(const ferry_model *m, size_t index, ferry_value_info *out)
{
    if (index >= (size_t)m->n_outputs)
        return core_error(FERRY_ERR_NOT_FOUND, "output %zu does not exist (the model has %d)",
                          index, m->n_outputs);
    fill_info(m, m->outputs[index], out);
    return NULL;
}

int ferry_model_input_index(const ferry_model *m, const char *name)
{
    for (int i = 0; i < m->n_inputs; i++)
        if (!strcmp(m->values[m->inputs[i]].name, name)) return i;
    return -1;
}

int ferry_model_output_index(const ferry_model *m, const char *name)
{
    for (int i = 0; i < m->n_outputs; i++)
        if (!strcmp(m->values[m->outputs[i]].name, name)) return i;
    return -1;
}

size_t ferry_model_opset_count(const ferry_model *m)
{
    return m->n_opsets;
}

ferry_status *ferry_model_opset(const ferry_model *m, size_t index, const char **domain,
                                int64_t *version)
{
    if (index >= m->n_opsets) return core_error(FERRY_ERR_NOT_FOUND, "no opset %zu", index);
    *domain = m->opsets[index].domain;
    *version = m->opsets[index].version;
    return NULL;
}

void ferry_model_get_metadata(const ferry_model *m, ferry_model_metadata *out)
{
    out->ir_version = m->ir_version;
    out->producer_name = m->producer_name;
    out->producer_version = m->producer_version;
    out->domain = m->domain;
    out->model_version = m->model_version;
    out->doc_string = m->doc_string;
    out->graph_name = m->graph_name ? m->graph_name : "";
    out->property_count = m->n_props;
}

ferry_status *ferry_model_property(const ferry_model *m, size_t index, const char **key,
                                   const char **value)
{
    if (index >= m->n_props) return core_error(FERRY_ERR_NOT_FOUND, "no property %zu", index);
    *key = m->prop_keys[index];
    *value = m->prop_values[index];
    return NULL;
}

size_t ferry_model_node_count(const ferry_model *m)
{
    return (size_t)m->n_nodes;
}

const char *ferry_model_node_op(const ferry_model *m, size_t index)
{
    return index < (size_t)m->n_nodes ? m->node_ops[index] : NULL;
}

bool ferry_model_batch_separable(const ferry_model *m)
{
    return m->batch_separable;
}

void ferry_model_parameter_stats(const ferry_model *m, uint64_t *count, uint64_t *bytes)
{
    *count = m->param_count;
    *bytes = m->param_bytes;
}

/* ------------------------------------------------------------------------------------------
 * Contexts
 * ---------------------------------------------------------------------------------------- */

ferry_status *ferry_context_create(const ferry_model *model, ferry_context **out)
{
    *out = NULL;
    if (!model) return core_error(FERRY_ERR_INVALID_ARGUMENT, "model is NULL");
    ferry_context *c = calloc(1, sizeof(*c));
    if (!c) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    c->model = model;
    ferry_status *st = core_threadpool_create(model->intra_op_threads, &c->threads);
    if (st) {
        free(c);
        return st;
    }
    *out = c;
    return NULL;
}

void ferry_context_destroy(ferry_context *c)
{
    if (!c) return;
    eng_plan_free(c->plan);
    eng_split_free(c->split);
    core_threadpool_destroy(c->threads);
    free(c->profile);
    free(c);
}

ferry_status *ferry_context_run(ferry_context *c, const ferry_tensor_view *inputs, size_t n)
{
    const ferry_model *m = c->model;
    c->has_outputs = false;
    if (n != (size_t)m->n_inputs) {
        char names[512] = "";
        size_t used = 0;
        for (int i = 0; i < m->n_inputs && used + 4 < sizeof(names); i++) {
            int w = snprintf(names + used, sizeof(names) - used, "%s'%s'", i ? ", " : "",
                             m->values[m->inputs[i]].name);
            if (w > 0) used += (size_t)w;
        }
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the model takes %d input%s (%s), got %zu",
                          m->n_inputs, m->n_inputs == 1 ? "" : "s", names, n);
    }
    if (n && !inputs) return core_error(FERRY_ERR_INVALID_ARGUMENT, "inputs is NULL");
    ferry_status *st;
    for (size_t i = 0; i < n; i++)
        if ((st = eng_check_input(m, (int)i, &inputs[i], true))) return st;
    bool sliced;
    if ((st = eng_split_run(&c->split, m, inputs, c->threads, c->profile, &sliced))) return st;
    c->split_outputs = sliced;
    if (sliced) {
        c->has_outputs = true;
        return NULL;
    }
    if (!c->plan || !eng_plan_matches(c->plan, m, inputs)) {
        eng_plan_free(c->plan);
        c->plan = NULL;
        if ((st = eng_plan_build(m, inputs, false, c->threads, &c->plan))) return st;
    }
    if ((st = eng_plan_run(c->plan, m, inputs, c->threads, c->profile))) return st;
    c->has_outputs = true;
    return NULL;
}

ferry_status *ferry_context_output(const ferry_context *c, size_t index, ferry_tensor_view *out)
{
    if (!c->has_outputs)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "the context has no outputs: run it first");
    if (index >= (size_t)c->model->n_outputs)
        return core_error(FERRY_ERR_NOT_FOUND, "output %zu does not exist (the model has %d)",
                          index, c->model->n_outputs);
    *out = c->split_outputs ? *eng_split_output(c->split, (int)index)
                            : *eng_plan_value(c->plan, c->model->outputs[index]);
    return NULL;
}

int64_t ferry_context_slice_size(const ferry_context *c)
{
    return c->has_outputs && c->split_outputs ? eng_split_slice(c->split) : 0;
}

ferry_status *ferry_context_set_profiling(ferry_context *c, bool enabled)
{
    if (!enabled) {
        free(c->profile);
        c->profile = NULL;
        return NULL;
    }
    if (c->profile) return NULL;
    c->profile = calloc((size_t)c->model->n_nodes + 1, sizeof(*c->profile));
    if (!c->profile) return core_error(FERRY_ERR_NO_MEMORY, "out of memory for the profile");
    return NULL;
}

ferry_status *ferry_context_node_profile(const ferry_context *c, size_t index,
                                         ferry_node_profile *out)
{
    const ferry_model *m = c->model;
    if (!c->profile)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "profiling is off for this context: call ferry_context_set_profiling");
    if (index >= (size_t)m->n_nodes)
        return core_error(FERRY_ERR_NOT_FOUND, "node %zu does not exist (the model has %d)", index,
                          m->n_nodes);
    out->name = m->nodes[index].name;
    out->op = m->node_ops[index];
    out->runs = c->profile[index].runs;
    out->nanoseconds = c->profile[index].nanoseconds;
    return NULL;
}

void ferry_context_reset_profile(ferry_context *c)
{
    if (c->profile) memset(c->profile, 0, (size_t)c->model->n_nodes * sizeof(*c->profile));
}
