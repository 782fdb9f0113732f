/* test_model.c - unit tests of the loader, graph checks, planner and contexts, on models built
 * byte by byte so that every malformation is deliberate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ferry.h"
#include "pbw.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const int64_t dims23[] = {2, 3};
static const int64_t dims32[] = {3, 2};

/* y = MatMul(x, W) with W an initializer [3,2]; x is [N,3] with N symbolic. */
static pbw matmul_model(void)
{
    pbw g = {0};
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const char *ins[] = {"x", "W", NULL}, *outs[] = {"y", NULL};
    pbw_node(&g, "MatMul", ins, outs, "mm");
    pbw_str(&g, 2, "g");
    pbw_float_init(&g, "W", 2, dims32, w);
    const int64_t xd[] = {-1, 3}, yd[] = {-1, 2};
    pbw_value_info(&g, 11, "x", 1, 2, xd);
    pbw_value_info(&g, 12, "y", 1, 2, yd);
    return pbw_model(&g, 13);
}

static ferry_status *open_pbw(pbw *m, ferry_model **model)
{
    return ferry_model_open_memory(m->d, m->n, NULL, model);
}

static void loads_and_describes_a_model(void **state)
{
    (void)state;
    pbw m = matmul_model();
    ferry_model *model;
    ferry_status *st = open_pbw(&m, &model);
    assert_null(st);
    assert_int_equal(ferry_model_input_count(model), 1);
    assert_int_equal(ferry_model_output_count(model), 1);
    ferry_value_info info;
    assert_null(ferry_model_input_info(model, 0, &info));
    assert_string_equal(info.name, "x");
    assert_int_equal(info.dtype, FERRY_DTYPE_FLOAT);
    assert_int_equal(info.rank, 2);
    assert_int_equal(info.dims[0], -1);
    assert_string_equal(info.dim_names[0], "N");
    assert_int_equal(info.dims[1], 3);
    st = ferry_model_input_info(model, 1, &info);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_NOT_FOUND);
    ferry_status_free(st);
    assert_int_equal(ferry_model_input_index(model, "x"), 0);
    assert_int_equal(ferry_model_input_index(model, "W"), -1);
    assert_int_equal(ferry_model_output_index(model, "y"), 0);
    ferry_model_metadata md;
    ferry_model_get_metadata(model, &md);
    assert_int_equal(md.ir_version, 8);
    assert_string_equal(md.producer_name, "ferry-tests");
    assert_string_equal(md.graph_name, "g");
    const char *dom;
    int64_t ver;
    assert_null(ferry_model_opset(model, 0, &dom, &ver));
    assert_string_equal(dom, "");
    assert_int_equal(ver, 13);
    uint64_t params, bytes;
    ferry_model_parameter_stats(model, &params, &bytes);
    assert_int_equal(params, 6);
    assert_int_equal(bytes, 24);
    assert_int_equal(ferry_model_node_count(model), 1);
    assert_string_equal(ferry_model_node_op(model, 0), "MatMul");
    ferry_model_close(model);
    free(m.d);
}

static void runs_and_replans_on_new_shapes(void **state)
{
    (void)state;
    pbw m = matmul_model();
    ferry_model *model;
    assert_null(open_pbw(&m, &model));
    ferry_context *ctx;
    assert_null(ferry_context_create(model, &ctx));
    float x[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1};
    for (int rows = 1; rows <= 4; rows++) {
        ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {rows, 3}, x};
        assert_null(ferry_context_run(ctx, &in, 1));
        ferry_tensor_view out;
        assert_null(ferry_context_output(ctx, 0, &out));
        assert_int_equal(out.rank, 2);
        assert_int_equal(out.dims[0], rows);
        assert_int_equal(out.dims[1], 2);
        const float want[8] = {1, 2, 3, 4, 5, 6, 9, 12};
        assert_memory_equal(out.data, want, sizeof(float) * 2 * (size_t)rows);
    }
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    free(m.d);
}

static void rejects_wrong_inputs_with_clear_messages(void **state)
{
    (void)state;
    pbw m = matmul_model();
    ferry_model *model;
    assert_null(open_pbw(&m, &model));
    ferry_context *ctx;
    assert_null(ferry_context_create(model, &ctx));
    float x[12] = {0};
    int64_t xi[12] = {0};
    ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {2, 4}, x};
    ferry_status *st = ferry_context_run(ctx, &in, 1);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    assert_string_equal(ferry_status_message(st), "input 'x': expected shape [-1,3], got [2,4]");
    ferry_status_free(st);
    ferry_tensor_view wrong_type = {FERRY_DTYPE_INT64, 2, {2, 3}, xi};
    st = ferry_context_run(ctx, &wrong_type, 1);
    assert_string_equal(ferry_status_message(st), "input 'x': expected dtype float, got int64");
    ferry_status_free(st);
    st = ferry_context_run(ctx, NULL, 0);
    assert_string_equal(ferry_status_message(st), "the model takes 1 input ('x'), got 0");
    ferry_status_free(st);
    ferry_tensor_view out;
    st = ferry_context_output(ctx, 0, &out);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    ferry_status_free(st);
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    free(m.d);
}

static void expect_load_error(pbw *m, ferry_code code, const char *needle)
{
    ferry_model *model = (ferry_model *)1;
    ferry_status *st = open_pbw(m, &model);
    assert_non_null(st);
    assert_null(model);
    if (ferry_status_code(st) != code || !strstr(ferry_status_message(st), needle))
        fail_msg("got %s: %s", ferry_code_name(ferry_status_code(st)), ferry_status_message(st));
    ferry_status_free(st);
    free(m->d);
}

static void rejects_unknown_operator(void **state)
{
    (void)state;
    pbw g = {0};
    const char *ins[] = {"x", NULL}, *outs[] = {"y", NULL};
    pbw_node(&g, "FancyOp", ins, outs, "n1");
    pbw_value_info(&g, 11, "x", 1, 2, dims23);
    pbw_value_info(&g, 12, "y", 1, 2, dims23);
    pbw m = pbw_model(&g, 13);
    expect_load_error(&m, FERRY_ERR_UNSUPPORTED,
                      "unsupported operator 'FancyOp' (domain 'ai.onnx', opset 13) in node 'n1'");
}

static void rejects_cycles_and_missing_values(void **state)
{
    (void)state;
    pbw g = {0};
    const char *a_in[] = {"b", NULL}, *a_out[] = {"a", NULL};
    const char *b_in[] = {"a", NULL}, *b_out[] = {"b", NULL};
    pbw_node(&g, "Transpose", a_in, a_out, "t1");
    pbw_node(&g, "Transpose", b_in, b_out, "t2");
    pbw_value_info(&g, 12, "b", 1, 2, dims23);
    pbw m = pbw_model(&g, 13);
    expect_load_error(&m, FERRY_ERR_INVALID_MODEL, "cycle");

    pbw g2 = {0};
    const char *ins[] = {"nowhere", NULL}, *outs[] = {"y", NULL};
    pbw_node(&g2, "Transpose", ins, outs, "t");
    pbw_value_info(&g2, 12, "y", 1, 2, dims23);
    m = pbw_model(&g2, 13);
    expect_load_error(&m, FERRY_ERR_INVALID_MODEL, "input 'nowhere' is not produced");

    pbw g3 = {0};
    const char *ins3[] = {"x", NULL}, *outs3[] = {"y", NULL};
    pbw_node(&g3, "Transpose", ins3, outs3, "t");
    pbw_value_info(&g3, 11, "x", 1, 2, dims23);
    pbw_value_info(&g3, 12, "z", 1, 2, dims23);
    m = pbw_model(&g3, 13);
    expect_load_error(&m, FERRY_ERR_INVALID_MODEL, "graph output 'z' is not produced");
}

static void rejects_shape_mismatch_at_load(void **state)
{
    (void)state;
    /* x [2,3] @ W [2,3]: inner dimensions differ; found by shape inference at load. */
    pbw g = {0};
    const float w[6] = {0};
    const char *ins[] = {"x", "W", NULL}, *outs[] = {"y", NULL};
    pbw_node(&g, "MatMul", ins, outs, "mm");
    pbw_float_init(&g, "W", 2, dims23, w);
    pbw_value_info(&g, 11, "x", 1, 2, dims23);
    pbw_value_info(&g, 12, "y", 1, -1, NULL);
    pbw m = pbw_model(&g, 13);
    expect_load_error(&m, FERRY_ERR_INVALID_ARGUMENT, "node 'mm' (MatMul)");
}

static void rejects_bad_initializer_sizes(void **state)
{
    (void)state;
    pbw g = {0}, t = {0};
    pbw_int(&t, 1, 4);
    pbw_int(&t, 2, 1);
    pbw_str(&t, 8, "W");
    pbw_len(&t, 9, "\0\0\0\0\0\0\0\0", 8); /* 2 floats for 4 */
    pbw_msg(&g, 5, &t);
    const char *ins[] = {"W", NULL}, *outs[] = {"y", NULL};
    pbw_node(&g, "Transpose", ins, outs, "t");
    pbw_value_info(&g, 12, "y", 1, -1, NULL);
    pbw m = pbw_model(&g, 13);
    expect_load_error(&m, FERRY_ERR_INVALID_MODEL, "tensor data has 8 bytes");

    pbw g2 = {0}, t2 = {0};
    pbw_int(&t2, 1, (int64_t)1 << 30);
    pbw_int(&t2, 1, (int64_t)1 << 30);
    pbw_int(&t2, 2, 1);
    pbw_str(&t2, 8, "W");
    pbw_msg(&g2, 5, &t2);
    pbw_node(&g2, "Transpose", ins, outs, "t");
    pbw_value_info(&g2, 12, "y", 1, -1, NULL);
    m = pbw_model(&g2, 13);
    expect_load_error(&m, FERRY_ERR_NO_MEMORY, "2^40");
}

static void rejects_external_data_outside_folder(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *locations[] = {"../secret.bin", "/etc/passwd", "a/../../x"};
    for (int i = 0; i < 3; i++) {
        pbw g = {0}, t = {0}, e = {0};
        pbw_int(&t, 1, 2);
        pbw_int(&t, 2, 1);
        pbw_str(&t, 8, "W");
        pbw_str(&e, 1, "location");
        pbw_str(&e, 2, locations[i]);
        pbw_msg(&t, 13, &e);
        pbw_int(&t, 14, 1);
        pbw_msg(&g, 5, &t);
        const char *ins[] = {"W", NULL}, *outs[] = {"y", NULL};
        pbw_node(&g, "Transpose", ins, outs, "t");
        pbw_value_info(&g, 12, "y", 1, -1, NULL);
        pbw m = pbw_model(&g, 13);
        char path[256];
        snprintf(path, sizeof(path), "%s/model.onnx", dir);
        FILE *f = fopen(path, "wb");
        fwrite(m.d, 1, m.n, f);
        fclose(f);
        ferry_model *model;
        ferry_status *st = ferry_model_open_file(path, NULL, &model);
        assert_non_null(st);
        assert_non_null(strstr(ferry_status_message(st), "inside the model's folder"));
        ferry_status_free(st);
        unlink(path);
        free(m.d);
    }
    /* A well-formed external file next to the model loads. */
    {
        char path[256];
        snprintf(path, sizeof(path), "%s/weights.bin", dir);
        FILE *f = fopen(path, "wb");
        const float w[4] = {1, 2, 3, 4};
        fwrite(w, 1, sizeof(w), f);
        fclose(f);
        pbw g = {0}, t = {0}, e = {0}, o = {0};
        pbw_int(&t, 1, 2);
        pbw_int(&t, 2, 1);
        pbw_str(&t, 8, "W");
        pbw_str(&e, 1, "location");
        pbw_str(&e, 2, "weights.bin");
        pbw_msg(&t, 13, &e);
        pbw_str(&o, 1, "offset");
        pbw_str(&o, 2, "8");
        pbw_msg(&t, 13, &o);
        pbw_int(&t, 14, 1);
        pbw_msg(&g, 5, &t);
        const char *ins[] = {"W", "W", NULL}, *outs[] = {"y", NULL};
        const int64_t wd[] = {2};
        pbw_node(&g, "MatMul", ins, outs, "t");
        pbw_value_info(&g, 12, "y", 1, 0, wd);
        pbw m = pbw_model(&g, 13);
        snprintf(path, sizeof(path), "%s/model.onnx", dir);
        f = fopen(path, "wb");
        fwrite(m.d, 1, m.n, f);
        fclose(f);
        ferry_model *model;
        ferry_status *st = ferry_model_open_file(path, NULL, &model);
        assert_null(st);
        ferry_context *ctx;
        assert_null(ferry_context_create(model, &ctx));
        assert_null(ferry_context_run(ctx, NULL, 0));
        ferry_tensor_view out;
        assert_null(ferry_context_output(ctx, 0, &out));
        assert_int_equal(out.rank, 0);
        assert_true(*(float *)out.data == 3 * 3 + 4 * 4);
        ferry_context_destroy(ctx);
        ferry_model_close(model);
        unlink(path);
        snprintf(path, sizeof(path), "%s/weights.bin", dir);
        unlink(path);
        free(m.d);
    }
    rmdir(dir);
}

static void rejects_garbage_and_empty_buffers(void **state)
{
    (void)state;
    ferry_model *model;
    ferry_status *st = ferry_model_open_memory("", 0, NULL, &model);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_MODEL);
    ferry_status_free(st);
    st = ferry_model_open_memory("hello world, not a model", 24, NULL, &model);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_MODEL);
    ferry_status_free(st);
    st = ferry_model_open_file("/nonexistent/model.onnx", NULL, &model);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_NOT_FOUND);
    assert_non_null(strstr(ferry_status_message(st), "/nonexistent/model.onnx"));
    ferry_status_free(st);
}

static void input_echoed_as_output_outlives_the_call(void **state)
{
    (void)state;
    pbw g = {0};
    const char *ins[] = {"x", NULL}, *outs[] = {"t", NULL};
    pbw_node(&g, "Transpose", ins, outs, "tr");
    pbw_value_info(&g, 11, "x", 1, 2, dims23);
    pbw_value_info(&g, 12, "x", 1, 2, dims23);
    pbw_value_info(&g, 12, "t", 1, 2, dims32);
    pbw m = pbw_model(&g, 13);
    ferry_model *model;
    assert_null(open_pbw(&m, &model));
    ferry_context *ctx;
    assert_null(ferry_context_create(model, &ctx));
    float x[6] = {1, 2, 3, 4, 5, 6};
    ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {2, 3}, x};
    assert_null(ferry_context_run(ctx, &in, 1));
    memset(x, 0, sizeof(x)); /* the caller reuses its buffer */
    ferry_tensor_view out;
    assert_null(ferry_context_output(ctx, 0, &out));
    const float want[6] = {1, 2, 3, 4, 5, 6};
    assert_memory_equal(out.data, want, sizeof(want));
    assert_null(ferry_context_output(ctx, 1, &out));
    const float want_t[6] = {1, 4, 2, 5, 3, 6};
    assert_memory_equal(out.data, want_t, sizeof(want_t));
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    free(m.d);
}

typedef struct worker {
    const ferry_model *model;
    int rows;
    int failures;
} worker;

static void *run_worker(void *arg)
{
    worker *w = arg;
    ferry_context *ctx;
    if (ferry_context_create(w->model, &ctx)) {
        w->failures++;
        return NULL;
    }
    float x[3 * 8];
    for (int i = 0; i < 3 * 8; i++) x[i] = (float)(i % 5);
    for (int it = 0; it < 300; it++) {
        int rows = 1 + (w->rows + it) % 8; /* shapes change, so plans are rebuilt too */
        ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {rows, 3}, x};
        ferry_status *st = ferry_context_run(ctx, &in, 1);
        ferry_tensor_view out;
        if (st || ferry_context_output(ctx, 0, &out) || out.dims[0] != rows) {
            ferry_status_free(st);
            w->failures++;
            continue;
        }
        const float *y = out.data;
        for (int r = 0; r < rows; r++) {
            const float *xr = &x[r * 3];
            float y0 = xr[0] * 1 + xr[1] * 3 + xr[2] * 5, y1 = xr[0] * 2 + xr[1] * 4 + xr[2] * 6;
            if (y[r * 2] != y0 || y[r * 2 + 1] != y1) w->failures++;
        }
    }
    ferry_context_destroy(ctx);
    return NULL;
}

static void contexts_share_one_model_across_threads(void **state)
{
    (void)state;
    pbw m = matmul_model();
    ferry_model *model;
    assert_null(open_pbw(&m, &model));
    pthread_t threads[6];
    worker workers[6];
    for (int i = 0; i < 6; i++) {
        workers[i] = (worker){model, i, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, run_worker, &workers[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(workers[i].failures, 0);
    }
    ferry_model_close(model);
    free(m.d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_and_describes_a_model),
        cmocka_unit_test(runs_and_replans_on_new_shapes),
        cmocka_unit_test(rejects_wrong_inputs_with_clear_messages),
        cmocka_unit_test(rejects_unknown_operator),
        cmocka_unit_test(rejects_cycles_and_missing_values),
        cmocka_unit_test(rejects_shape_mismatch_at_load),
        cmocka_unit_test(rejects_bad_initializer_sizes),
        cmocka_unit_test(rejects_external_data_outside_folder),
        cmocka_unit_test(rejects_garbage_and_empty_buffers),
        cmocka_unit_test(input_echoed_as_output_outlives_the_call),
        cmocka_unit_test(contexts_share_one_model_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
