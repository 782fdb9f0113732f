/* thread_check.c - runs a model single-threaded and with several intra-op threads and checks
 * that every output is the same, bit for bit (the ML operators split rows across the pool, and
 * a row's result must not depend on the split).
 *
 *   thread_check MODEL INPUT.npy... [--threads N] [--repeat R]
 *
 * Inputs are given in the model's input order. Exit status 0 when all outputs match, 1 on a
 * mismatch or any error.
 */
#include "ferry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IO 16

/* One run's outputs, copied out of the context (string elements duplicated). */
typedef struct outputs {
    size_t n;
    ferry_tensor_view views[MAX_IO];
} outputs;

static void outputs_free(outputs *o)
{
    for (size_t i = 0; i < o->n; i++) {
        if (o->views[i].dtype == FERRY_DTYPE_STRING && o->views[i].data) {
            char **strs = o->views[i].data;
            for (int64_t k = 0; k < ferry_tensor_view_count(&o->views[i]); k++) free(strs[k]);
        }
        free(o->views[i].data);
    }
    o->n = 0;
}

static int fail_status(ferry_status *st)
{
    fprintf(stderr, "thread_check: %s\n", ferry_status_message(st));
    ferry_status_free(st);
    return 1;
}

/* Copies VIEW's data into DST (a view with its own memory); string elements as text. */
static int copy_view(const ferry_tensor_view *view, ferry_tensor_view *dst)
{
    int64_t n = ferry_tensor_view_count(view);
    size_t bytes = (size_t)n * ferry_dtype_size(view->dtype);
    *dst = *view;
    dst->data = calloc(1, bytes ? bytes : 1);
    if (!dst->data) return 1;
    if (view->dtype != FERRY_DTYPE_STRING) {
        memcpy(dst->data, view->data, bytes);
        return 0;
    }
    const char *const *src = view->data;
    char **strs = dst->data;
    for (int64_t k = 0; k < n; k++)
        if (!(strs[k] = strdup(src[k] ? src[k] : ""))) return 1;
    return 0;
}

static int same_output(const ferry_tensor_view *a, const ferry_tensor_view *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank ||
        memcmp(a->dims, b->dims, sizeof(a->dims[0]) * (size_t)a->rank))
        return 0;
    int64_t n = ferry_tensor_view_count(a);
    if (a->dtype == FERRY_DTYPE_STRING) {
        char *const *x = a->data, *const *y = b->data;
        for (int64_t i = 0; i < n; i++)
            if (strcmp(x[i], y[i])) return 0;
        return 1;
    }
    return !memcmp(a->data, b->data, (size_t)n * ferry_dtype_size(a->dtype));
}

/* Runs MODEL_PATH REPEAT times with THREADS threads on INPUTS; OUT receives the last outputs. */
static int run(const char *model_path, int threads, const ferry_tensor_view *inputs, size_t n_in,
               int repeat, outputs *out)
{
    ferry_model_options opts = {.intra_op_threads = threads};
    ferry_model *model = NULL;
    ferry_context *ctx = NULL;
    ferry_status *st;
    int rc = 1;
    if ((st = ferry_model_open_file(model_path, &opts, &model))) return fail_status(st);
    if (ferry_model_input_count(model) != n_in) {
        fprintf(stderr, "thread_check: the model takes %zu inputs, got %zu\n",
                ferry_model_input_count(model), n_in);
        goto done;
    }
    if (ferry_model_output_count(model) > MAX_IO) {
        fprintf(stderr, "thread_check: too many outputs\n");
        goto done;
    }
    if ((st = ferry_context_create(model, &ctx))) {
        rc = fail_status(st);
        goto done;
    }
    for (int r = 0; r < repeat; r++) {
        if ((st = ferry_context_run(ctx, inputs, n_in))) {
            rc = fail_status(st);
            goto done;
        }
    }
    for (size_t o = 0; o < ferry_model_output_count(model); o++) {
        ferry_tensor_view v;
        if ((st = ferry_context_output(ctx, o, &v))) {
            rc = fail_status(st);
            goto done;
        }
        out->n = o + 1;
        if (copy_view(&v, &out->views[o])) {
            fprintf(stderr, "thread_check: out of memory\n");
            goto done;
        }
    }
    rc = 0;
done:
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    return rc;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *files[MAX_IO];
    size_t n_in = 0;
    int threads = 4, repeat = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
            repeat = atoi(argv[++i]);
        } else if (!model) {
            model = argv[i];
        } else if (n_in < MAX_IO) {
            files[n_in++] = argv[i];
        } else {
            fprintf(stderr, "thread_check: too many inputs\n");
            return 1;
        }
    }
    if (!model || threads < 2 || repeat < 1) {
        fprintf(stderr, "usage: thread_check MODEL INPUT.npy... [--threads N>=2] [--repeat R]\n");
        return 1;
    }
    ferry_tensor *tensors[MAX_IO] = {0};
    ferry_tensor_view inputs[MAX_IO];
    outputs one = {0}, many = {0};
    int rc = 1;
    for (size_t i = 0; i < n_in; i++) {
        ferry_status *st = ferry_tensor_read_file(files[i], &tensors[i]);
        if (st) {
            rc = fail_status(st);
            goto done;
        }
        inputs[i] = *ferry_tensor_get_view(tensors[i]);
    }
    if (run(model, 1, inputs, n_in, 1, &one) || run(model, threads, inputs, n_in, repeat, &many))
        goto done;
    for (size_t o = 0; o < one.n; o++) {
        if (o >= many.n || !same_output(&one.views[o], &many.views[o])) {
            fprintf(stderr, "thread_check: output %zu differs between 1 and %d threads\n", o,
                    threads);
            goto done;
        }
    }
    rc = 0;
done:
    for (size_t i = 0; i < n_in; i++) ferry_tensor_free(tensors[i]);
    outputs_free(&one);
    outputs_free(&many);
    return rc;
}
