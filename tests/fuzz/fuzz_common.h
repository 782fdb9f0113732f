/* fuzz_common.h - what the model-loader fuzz target does with one input, shared by the
 * libFuzzer target and the corpus test that replays broken models under the sanitizers. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include "ferry.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Loads DATA as a model; when it loads and its inputs have small fixed shapes, runs it once on
 * zeros so that operators see hostile attributes too. Returns the load status code. */
static inline ferry_code fuzz_model_once(const uint8_t *data, size_t size)
{
    ferry_model *model = NULL;
    ferry_status *st = ferry_model_open_memory(data, size, NULL, &model);
    ferry_code code = ferry_status_code(st);
    ferry_status_free(st);
    if (!model) return code;
    size_t n = ferry_model_input_count(model);
    ferry_tensor_view *views = calloc(n + 1, sizeof(*views));
    void **bufs = calloc(n + 1, sizeof(*bufs));
    ferry_context *ctx = NULL;
    bool runnable = views && bufs;
    for (size_t i = 0; runnable && i < n; i++) {
        ferry_value_info info;
        if ((st = ferry_model_input_info(model, i, &info))) {
            ferry_status_free(st);
            runnable = false;
            break;
        }
        size_t esize = ferry_dtype_size(info.dtype);
        if (info.rank < 0 || !esize) runnable = false;
        int64_t count = 1;
        for (int d = 0; runnable && d < info.rank; d++) {
            if (info.dims[d] < 0 || info.dims[d] > 4096)
                runnable = false;
            else
                count *= info.dims[d];
            if (count > (1 << 20)) runnable = false;
        }
        if (!runnable) break;
        views[i].dtype = info.dtype;
        views[i].rank = info.rank;
        for (int d = 0; d < info.rank; d++) views[i].dims[d] = info.dims[d];
        bufs[i] = calloc((size_t)count + 1, esize);
        views[i].data = bufs[i];
        if (!bufs[i]) runnable = false;
    }
    if (runnable && !(st = ferry_context_create(model, &ctx))) {
        ferry_status_free(ferry_context_run(ctx, views, n));
        for (size_t o = 0; o < ferry_model_output_count(model); o++) {
            ferry_tensor_view v;
            ferry_status_free(ferry_context_output(ctx, o, &v));
        }
    } else {
        ferry_status_free(st);
    }
    ferry_context_destroy(ctx);
    for (size_t i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
    free(views);
    ferry_model_close(model);
    return code;
}

#endif
