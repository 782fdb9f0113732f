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

/* y = MatMul(Relu(MatMul(x, W)), Transpose(V)): Transpose folds at load (its input is an
 * initializer), Relu fuses into the MatMul before it, and the last MatMul has no name. */
static pbw profiled_model(void)
{
    pbw g = {0};
    const float w[6] = {1, 2, 3, 4, 5, 6}, v[4] = {1, 0, 0, 1};
    const int64_t vd[] = {2, 2};
    const char *t_in[] = {"V", NULL}, *t_out[] = {"Vt", NULL};
    const char *mm_in[] = {"x", "W", NULL}, *mm_out[] = {"h", NULL};
    const char *r_in[] = {"h", NULL}, *r_out[] = {"r", NULL};
    const char *mm2_in[] = {"r", "Vt", NULL}, *mm2_out[] = {"y", NULL};
    pbw_node(&g, "Transpose", t_in, t_out, "fold");
    pbw_node(&g, "MatMul", mm_in, mm_out, "mm");
    pbw_node(&g, "Relu", r_in, r_out, "relu");
    pbw_node(&g, "MatMul", mm2_in, mm2_out, NULL);
    pbw_str(&g, 2, "g");
    pbw_float_init(&g, "W", 2, dims32, w);
    pbw_float_init(&g, "V", 2, vd, v);
    const int64_t xd[] = {-1, 3}, yd[] = {-1, 2};
    pbw_value_info(&g, 11, "x", 1, 2, xd);
    pbw_value_info(&g, 12, "y", 1, 2, yd);
    return pbw_model(&g, 13);
}

static void expect_profile_error(const ferry_context *ctx, size_t index, ferry_code code)
{
    ferry_node_profile p;
    ferry_status *st = ferry_context_node_profile(ctx, index, &p);
    assert_non_null(st);
    assert_int_equal(ferry_status_code(st), code);
    ferry_status_free(st);
}

/* Checks every node's profile: nodes that run as steps count RUNS runs, folded or fused ones
 * none. Returns the nanoseconds summed over nodes. */
static uint64_t check_profile(const ferry_model *model, const ferry_context *ctx, uint64_t runs)
{
    uint64_t total = 0;
    size_t steps = 0;
    for (size_t k = 0; k < ferry_model_node_count(model); k++) {
        ferry_node_profile p;
        assert_null(ferry_context_node_profile(ctx, k, &p));
        assert_string_equal(p.op, ferry_model_node_op(model, k));
        bool runs_as_step = !strcmp(p.name, "mm") || !strcmp(p.name, "");
        if (!runs_as_step) {
            assert_true(!strcmp(p.name, "fold") || !strcmp(p.name, "relu"));
            assert_int_equal(p.runs, 0);
            assert_int_equal(p.nanoseconds, 0);
            continue;
        }
        assert_string_equal(p.op, "MatMul");
        assert_int_equal(p.runs, runs);
        if (!runs) assert_int_equal(p.nanoseconds, 0);
        total += p.nanoseconds;
        steps++;
    }
    assert_int_equal(steps, 2);
    return total;
}

static void profiles_nodes_in_execution_order(void **state)
{
    (void)state;
    pbw m = profiled_model();
    ferry_model *model;
    assert_null(open_pbw(&m, &model));
    assert_int_equal(ferry_model_node_count(model), 4);
    ferry_context *ctx;
    assert_null(ferry_context_create(model, &ctx));
    float x[12] = {1, -1, 0, 0, 1, 0, -1, 0, 1, 1, 1, 1};
    ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {4, 3}, x};

    /* Off by default: queries fail, reset is a no-op, runs are not counted. */
    expect_profile_error(ctx, 0, FERRY_ERR_INVALID_ARGUMENT);
    ferry_context_reset_profile(ctx);
    assert_null(ferry_context_run(ctx, &in, 1));

    assert_null(ferry_context_set_profiling(ctx, true));
    assert_int_equal(check_profile(model, ctx, 0), 0);
    for (int i = 0; i < 5; i++) assert_null(ferry_context_run(ctx, &in, 1));
    /* A new shape builds a new plan; the counters carry on. */
    ferry_tensor_view in2 = {FERRY_DTYPE_FLOAT, 2, {2, 3}, x};
    assert_null(ferry_context_run(ctx, &in2, 1));
    assert_true(check_profile(model, ctx, 6) > 0);
    ferry_tensor_view out;
    assert_null(ferry_context_output(ctx, 0, &out));
    const float want[4] = {0, 0, 3, 4}; /* Relu([-2,-2]) and Relu([3,4]) */
    assert_memory_equal(out.data, want, sizeof(want));

    expect_profile_error(ctx, ferry_model_node_count(model), FERRY_ERR_NOT_FOUND);
    expect_profile_error(ctx, (size_t)-1, FERRY_ERR_NOT_FOUND);

    ferry_context_reset_profile(ctx);
    assert_int_equal(check_profile(model, ctx, 0), 0);
    assert_null(ferry_context_run(ctx, &in, 1));
    check_profile(model, ctx, 1);
    /* Enabling again keeps the counts. */
    assert_null(ferry_context_set_profiling(ctx, true));
    check_profile(model, ctx, 1);

    /* Disabling frees the counters; enabling again starts from zero. */
    assert_null(ferry_context_set_profiling(ctx, false));
    expect_profile_error(ctx, 0, FERRY_ERR_INVALID_ARGUMENT);
    assert_null(ferry_context_run(ctx, &in, 1));
    assert_null(ferry_context_set_profiling(ctx, false));
    assert_null(ferry_context_set_profiling(ctx, true));
    assert_int_equal(check_profile(model, ctx, 0), 0);
    assert_null(ferry_context_run(ctx, &in, 1));
    check_profile(model, ctx, 1);
    ferry_context_destroy(ctx); /* frees the counters */
    ferry_model_close(model);
    free(m.d);
}

typedef struct worker {
    const ferry_model *model;
    int rows;
    int failures;
} worker;

/* Runs profiled_model on X (BATCH rows) with OPTS and THREADS, copying y into OUT. */
static void run_batch(const ferry_model_options *opts, int64_t batch, const float *x, float *out,
                      bool profile)
{
    pbw m = profiled_model();
    ferry_model *model;
    assert_null(ferry_model_open_memory(m.d, m.n, opts, &model));
    assert_true(ferry_model_batch_separable(model));
    ferry_context *ctx;
    assert_null(ferry_context_create(model, &ctx));
    if (profile) assert_null(ferry_context_set_profiling(ctx, true));
    ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {batch, 3}, (void *)x};
    for (int rep = 0; rep < 2; rep++) {
        assert_null(ferry_context_run(ctx, &in, 1));
        ferry_tensor_view y;
        assert_null(ferry_context_output(ctx, 0, &y));
        assert_int_equal(y.rank, 2);
        assert_int_equal(y.dims[0], batch);
        assert_int_equal(y.dims[1], 2);
        memcpy(out, y.data, (size_t)batch * 2 * sizeof(float));
    }
    if (profile) {
        /* Each run counts once per node, however many slices it ran as. */
        ferry_node_profile p;
        uint64_t ran = 0;
        for (size_t k = 0; k < ferry_model_node_count(model); k++) {
            assert_null(ferry_context_node_profile(ctx, k, &p));
            assert_true(p.runs == 0 || p.runs == 2);
            ran += p.runs;
        }
        assert_int_equal(ran, 4); /* the two MatMuls */
    }
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    free(m.d);
}

static void slices_batches_without_changing_results(void **state)
{
    (void)state;
    float x[3 * 9];
    for (int i = 0; i < 3 * 9; i++) x[i] = (float)((i * 7) % 11) - 5.0f;
    for (int64_t batch = 2; batch <= 9; batch++) {
        float whole[2 * 9], sliced[2 * 9];
        ferry_model_options off = {.disable_batch_slicing = true};
        run_batch(&off, batch, x, whole, false);
        /* Budgets of one byte (one sample per slice) and of a few samples' activations (slices
         * of the largest divisor that fits), on one thread and on three. */
        const size_t budgets[] = {1, 200};
        for (int b = 0; b < 2; b++)
            for (int threads = 1; threads <= 3; threads += 2) {
                ferry_model_options opts = {.intra_op_threads = threads,
                                            .batch_slice_bytes = budgets[b]};
                memset(sliced, 0, sizeof(sliced));
                run_batch(&opts, batch, x, sliced, batch == 7);
                for (int64_t i = 0; i < batch * 2; i++) assert_float_equal(sliced[i], whole[i], 0);
            }
    }
    /* One context through changing batch sizes, as a dynamic batcher drives it: the decision
     * for each size must be its own, whatever the sizes before it. */
    pbw m = profiled_model();
    ferry_model_options opts3 = {.intra_op_threads = 3, .batch_slice_bytes = 200};
    ferry_model *model;
    assert_null(ferry_model_open_memory(m.d, m.n, &opts3, &model));
    ferry_context *ctx;
    assert_null(ferry_context_create(model, &ctx));
    const int64_t sizes[] = {6, 3, 7, 6, 2, 9, 1, 8};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {sizes[k], 3}, x}, out;
        assert_null(ferry_context_run(ctx, &in, 1));
        assert_null(ferry_context_output(ctx, 0, &out));
        assert_int_equal(out.dims[0], sizes[k]);
        const float *got = out.data;
        for (int64_t r = 0; r < sizes[k]; r++)
            for (int j = 0; j < 2; j++) {
                const float w[6] = {1, 2, 3, 4, 5, 6};
                float h = 0;
                for (int q = 0; q < 3; q++) h += x[r * 3 + q] * w[q * 2 + j];
                assert_float_equal(got[r * 2 + j], h < 0 ? 0 : h, 0);
            }
    }
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    free(m.d);

    /* Reference values: y = relu(x W) V^T with V the identity. */
    float y[2 * 9];
    ferry_model_options opts = {.batch_slice_bytes = 1};
    run_batch(&opts, 9, x, y, false);
    for (int64_t r = 0; r < 9; r++)
        for (int j = 0; j < 2; j++) {
            const float w[6] = {1, 2, 3, 4, 5, 6};
            float h = 0;
            for (int p = 0; p < 3; p++) h += x[r * 3 + p] * w[p * 2 + j];
            assert_float_equal(y[r * 2 + j], h < 0 ? 0 : h, 0);
        }
}

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
        cmocka_unit_test(profiles_nodes_in_execution_order),
        cmocka_unit_test(slices_batches_without_changing_results),
        cmocka_unit_test(contexts_share_one_model_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
