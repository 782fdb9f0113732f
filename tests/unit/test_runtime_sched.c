/* test_runtime_sched.c - requests through the scheduler: results, input checks, the bounded
 * queue, dynamic batching, timeouts, output subsets, reshape, statistics and graceful shutdown.
 *
 * Determinism without sleeps: a completion callback can be told to block ("hold"), which keeps
 * the model's single instance busy, so that the test decides exactly what is queued when the
 * instance next looks at the queue. */
#include "../runtime/rt_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

typedef struct fixture {
    char *repo;
    rt_runtime *rt;
    tu_log log;
    tu_waiter w; /* in the fixture so a failed test cannot leave it holding */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->log.lock, NULL);
    tu_waiter_init(&f->w);
    f->repo = tu_tmpdir("sched");
    if (!f->repo) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_set_hold(&f->w, false);
    rt_runtime_destroy(f->rt);
    tu_waiter_destroy(&f->w);
    tu_rmrf(f->repo);
    free(f->repo);
    pthread_mutex_destroy(&f->log.lock);
    free(f);
    return 0;
}

static void start(fixture *f)
{
    rt_options o = {.repository = f->repo, .log = tu_log_fn, .log_user = &f->log};
    ferry_status *st = rt_runtime_create(&o, &f->rt);
    if (st) fail_msg("%s", ferry_status_message(st));
}

static rt_model *acquire(fixture *f, const char *name)
{
    rt_model *m = NULL;
    ferry_status *st = rt_model_acquire(f->rt, name, NULL, &m);
    if (st) fail_msg("acquire %s: %s\nlog:\n%s", name, ferry_status_message(st), f->log.text);
    return m;
}

static ferry_tensor_view fview(float *data, int rank, int64_t d0, int64_t d1, int64_t d2)
{
    ferry_tensor_view v = {FERRY_DTYPE_FLOAT, rank, {d0, d1, d2}, data};
    return v;
}

/* Creates a request with input 0 set and the waiter's callback. */
static rt_request *request(rt_model *m, tu_waiter *w, const ferry_tensor_view *in)
{
    rt_request *r;
    assert_null(rt_request_create(m, &r));
    assert_null(rt_request_set_input(r, 0, in));
    rt_request_set_callback(r, tu_waiter_cb, w);
    return r;
}

static void submit_ok(rt_request *r)
{
    ferry_status *st = rt_submit(r);
    if (st) fail_msg("submit: %s", ferry_status_message(st));
}

/* Checks that output 0 of R is y = SCALE * x + 1 over the N floats of X. */
static void check_affine(const rt_request *r, const float *x, int64_t n, float scale)
{
    ferry_tensor_view out;
    assert_null(rt_request_status(r));
    assert_null(rt_request_output(r, 0, NULL, &out));
    assert_int_equal(ferry_tensor_view_count(&out), n);
    const float *y = out.data;
    for (int64_t i = 0; i < n; i++)
        if (y[i] != x[i] * scale + 1)
            fail_msg("y[%lld] = %g, want %g", (long long)i, y[i], x[i] * scale + 1);
}

static void test_basic(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "scale", 1, "scale2.onnx"), 0);
    start(f);
    rt_model *m = acquire(f, "scale");
    assert_string_equal(rt_model_name(m), "scale");
    assert_int_equal(rt_model_version(m), 1);
    assert_string_equal(rt_model_platform(m), "onnxruntime_onnx");
    assert_int_equal(rt_model_get_state(m), RT_STATE_READY);
    assert_int_equal(ferry_model_input_count(rt_model_engine(m)), 1);
    const rt_model_config *cfg = rt_model_get_config(m);
    assert_int_equal(cfg->max_batch_size, 4);
    tu_waiter *w = &f->w;
    float x[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    ferry_tensor_view in = fview(x, 2, 2, 4, 0);
    rt_request *r = request(m, w, &in);
    submit_ok(r);
    assert_int_equal(tu_wait_done(w, 1), 1);
    check_affine(r, x, 8, 2);
    size_t idx = 9;
    ferry_tensor_view out;
    assert_null(rt_request_output(r, 0, &idx, &out));
    assert_int_equal(idx, 0);
    assert_int_equal(out.rank, 2);
    assert_int_equal(out.dims[0], 2);
    assert_int_equal(out.dims[1], 4);
    assert_int_equal(rt_request_output_count(r), 1);
    ferry_status *st = rt_request_output(r, 1, NULL, &out);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_NOT_FOUND);
    ferry_status_free(st);
    rt_request_timing t;
    rt_request_get_timing(r, &t);
    assert_int_equal(t.batch_size, 2);
    assert_true(t.total_ns >= t.queue_ns);
    assert_true(t.compute_ns > 0);
    assert_ptr_equal(rt_request_model(r), m);
    rt_request_free(r);
    /* A resubmitted request is refused. */
    r = request(m, w, &in);
    submit_ok(r);
    assert_int_equal(tu_wait_done(w, 2), 2);
    st = rt_submit(r);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    ferry_status_free(st);
    rt_request_free(r);

    rt_model_stats s;
    /* The gauge drops once the callback has returned, just after the waiter saw it. */
    for (int i = 0; i < 2000; i++) {
        rt_model_get_stats(m, &s);
        if (!s.in_flight) break;
        tu_sleep_ms(1);
    }
    assert_int_equal(s.requests[RT_OUTCOME_SUCCESS], 2);
    assert_int_equal(s.inference_count, 4);
    assert_int_equal(s.execution_count, 2);
    assert_int_equal(s.success.count, 2);
    assert_int_equal(s.queue.count, 2);
    assert_int_equal(s.request_latency.count, 2);
    assert_int_equal(s.request_latency.buckets[RT_LATENCY_BUCKETS], 2);
    for (int b = 1; b <= RT_LATENCY_BUCKETS; b++)
        assert_true(s.request_latency.buckets[b] >= s.request_latency.buckets[b - 1]);
    assert_int_equal(s.batch_size.count, 2);
    assert_int_equal(s.batch_size.sum, 4);
    assert_int_equal(s.batch_size.buckets[0], 0); /* le=1 */
    assert_int_equal(s.batch_size.buckets[1], 2); /* le=2 */
    assert_int_equal(s.queue_depth, 0);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(s.state, RT_STATE_READY);
    assert_true(s.loaded_at_ms > 0);
    assert_true(s.last_inference_ms >= s.loaded_at_ms);
    assert_int_equal(s.instance_count, 1);
    assert_int_equal(s.queue_capacity, 1024);
    assert_string_equal(rt_outcome_name(RT_OUTCOME_REJECTED), "rejected");
    assert_true(rt_latency_bounds_s[0] < rt_latency_bounds_s[RT_LATENCY_BUCKETS - 1]);
    rt_model_release(m);
}

static void expect_submit_error(rt_request *r, ferry_code code, const char *message)
{
    ferry_status *st = rt_submit(r);
    if (!st || ferry_status_code(st) != code || !strstr(ferry_status_message(st), message))
        fail_msg("got '%s', want ...%s...", ferry_status_message(st), message);
    ferry_status_free(st);
}

static void test_input_errors(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "scale", 1, "scale2.onnx"), 0);
    start(f);
    rt_model *m = acquire(f, "scale");
    tu_waiter *w = &f->w;
    float x[40] = {0};
    int64_t xi[8] = {0};

    rt_request *r;
    assert_null(rt_request_create(m, &r));
    rt_request_set_callback(r, tu_waiter_cb, w);
    expect_submit_error(r, FERRY_ERR_INVALID_ARGUMENT, "input 'x' is missing");
    ferry_tensor_view v = {FERRY_DTYPE_INT64, 2, {2, 4}, xi};
    assert_null(rt_request_set_input(r, 0, &v));
    expect_submit_error(r, FERRY_ERR_INVALID_ARGUMENT,
                        "model 'scale' version 1: input 'x': expected data type FP32, got INT64");
    v = fview(x, 2, 2, 5, 0);
    assert_null(rt_request_set_input(r, 0, &v));
    expect_submit_error(r, FERRY_ERR_INVALID_ARGUMENT,
                        "input 'x': expected shape [-1,4], got [2,5]");
    v = fview(x, 1, 4, 0, 0);
    assert_null(rt_request_set_input(r, 0, &v));
    expect_submit_error(r, FERRY_ERR_INVALID_ARGUMENT, "expected shape [-1,4], got [4]");
    v = fview(x, 2, 5, 4, 0);
    assert_null(rt_request_set_input(r, 0, &v));
    expect_submit_error(r, FERRY_ERR_INVALID_ARGUMENT,
                        "input 'x': batch size 5 is above the model's max_batch_size 4");
    v = fview(x, 2, 0, 4, 0);
    assert_null(rt_request_set_input(r, 0, &v));
    expect_submit_error(r, FERRY_ERR_INVALID_ARGUMENT, "got [0,4]");
    v = fview(NULL, 2, 1, 4, 0);
    assert_null(rt_request_set_input(r, 0, &v));
    expect_submit_error(r, FERRY_ERR_INVALID_ARGUMENT, "input 'x': no data");
    ferry_status *st = rt_request_set_input(r, 1, &v);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    ferry_status_free(st);
    v.rank = 99;
    st = rt_request_set_input(r, 0, &v);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    ferry_status_free(st);
    rt_request_set_callback(r, NULL, NULL);
    v = fview(x, 2, 1, 4, 0);
    assert_null(rt_request_set_input(r, 0, &v));
    expect_submit_error(r, FERRY_ERR_INVALID_ARGUMENT, "no completion callback");
    rt_request_free(r);

    rt_model_stats s;
    rt_model_get_stats(m, &s);
    assert_int_equal(s.requests[RT_OUTCOME_INVALID], 7);
    assert_int_equal(s.execution_count, 0);
    assert_int_equal(w->done, 0);
    rt_model_release(m);
}

static void test_queue_full(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "fixed", 1, "fixed.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "fixed",
                                     "parameters { key: \"ferry.queue_capacity\" "
                                     "value { string_value: \"2\" } }"),
                     0);
    start(f);
    rt_model *m = acquire(f, "fixed");
    tu_waiter *w = &f->w;
    float x[4] = {1, 2, 3, 4};
    ferry_tensor_view in = fview(x, 2, 1, 4, 0);
    rt_request *r[4];
    for (int i = 0; i < 4; i++) r[i] = request(m, w, &in);
    tu_set_hold(w, true);
    submit_ok(r[0]);
    tu_wait_holding(w, 1); /* the only instance is busy in r[0]'s callback */
    submit_ok(r[1]);
    submit_ok(r[2]);
    rt_model_stats s;
    rt_model_get_stats(m, &s);
    assert_int_equal(s.queue_depth, 2);
    assert_int_equal(s.in_flight, 3);
    expect_submit_error(r[3], FERRY_ERR_UNAVAILABLE,
                        "model 'fixed' version 1: the queue is full (2 requests waiting)");
    tu_set_hold(w, false);
    assert_int_equal(tu_wait_done(w, 3), 3);
    assert_int_equal(w->ok, 3);
    /* The rejected request can be submitted again once there is room. */
    submit_ok(r[3]);
    assert_int_equal(tu_wait_done(w, 4), 4);
    for (int i = 0; i < 4; i++) {
        check_affine(r[i], x, 4, 2);
        rt_request_free(r[i]);
    }
    rt_model_get_stats(m, &s);
    assert_int_equal(s.requests[RT_OUTCOME_REJECTED], 1);
    assert_int_equal(s.requests[RT_OUTCOME_SUCCESS], 4);
    assert_int_equal(s.queue_capacity, 2);
    rt_model_release(m);
}

static void test_batching(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "scale", 1, "scale2.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "scale",
                                     "max_batch_size: 8\n"
                                     "dynamic_batching { max_queue_delay_microseconds: 100000 }\n"
                                     "instance_group [ { count: 1 kind: KIND_CPU } ]\n"),
                     0);
    start(f);
    rt_model *m = acquire(f, "scale");
    tu_waiter *w = &f->w;
    /* Request k has rows[k] rows of distinct values. */
    static const int rows[7] = {1, 1, 2, 1, 3, 1, 2};
    float data[7][3 * 4];
    ferry_tensor_view in[7];
    rt_request *r[7];
    for (int k = 0; k < 7; k++) {
        for (int i = 0; i < rows[k] * 4; i++) data[k][i] = (float)(k * 100 + i);
        in[k] = fview(data[k], 2, rows[k], 4, 0);
        r[k] = request(m, w, &in[k]);
    }
    tu_set_hold(w, true);
    submit_ok(r[0]);
    tu_wait_holding(w, 1);
    for (int k = 1; k < 7; k++) submit_ok(r[k]); /* 1+2+1+3+1 = 8 rows: one full batch */
    tu_set_hold(w, false);
    assert_int_equal(tu_wait_done(w, 7), 7);
    for (int k = 0; k < 7; k++) {
        check_affine(r[k], data[k], rows[k] * 4, 2);
        ferry_tensor_view out;
        assert_null(rt_request_output(r[k], 0, NULL, &out));
        assert_int_equal(out.dims[0], rows[k]);
        rt_request_timing t;
        rt_request_get_timing(r[k], &t);
        assert_int_equal(t.batch_size, k == 0 ? 1 : k == 6 ? 2 : 8);
    }
    rt_model_stats s;
    rt_model_get_stats(m, &s);
    /* r0 alone, r1..r5 joined (8 rows), r6 (no room left) alone. */
    assert_int_equal(s.requests[RT_OUTCOME_SUCCESS], 7);
    assert_int_equal(s.execution_count, 3);
    assert_int_equal(s.inference_count, 11);
    assert_int_equal(s.batch_size.buckets[RT_BATCH_BUCKETS], 3);
    assert_int_equal(s.batch_size.buckets[3] - s.batch_size.buckets[2], 1); /* one batch of 8 */
    for (int k = 0; k < 7; k++) rt_request_free(r[k]);
    rt_model_release(m);
}

/* Requests with different non-batch shapes are not joined; preferred sizes end the wait. */
static void test_batching_shapes(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "vlen", 1, "vlen.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "vlen",
                                     "max_batch_size: 8\n"
                                     "dynamic_batching { preferred_batch_size: [2] "
                                     "max_queue_delay_microseconds: 300000 }\n"),
                     0);
    start(f);
    rt_model *m = acquire(f, "vlen");
    const rt_model_config *cfg = rt_model_get_config(m);
    assert_int_equal(cfg->inputs[0].dims[0], -1);
    tu_waiter *w = &f->w;
    float data[5][5];
    int len[5] = {3, 4, 5, 4, 5};
    ferry_tensor_view in[5];
    rt_request *r[5];
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < len[k]; i++) data[k][i] = (float)(k * 10 + i);
        in[k] = fview(data[k], 2, 1, len[k], 0);
        r[k] = request(m, w, &in[k]);
    }
    tu_set_hold(w, true);
    submit_ok(r[0]);
    tu_wait_holding(w, 1);
    for (int k = 1; k < 5; k++) submit_ok(r[k]);
    tu_set_hold(w, false);
    /* r0 ran alone after the 300 ms delay; each pair after it reached the preferred size. */
    assert_int_equal(tu_wait_done(w, 5), 5);
    for (int k = 0; k < 5; k++) {
        check_affine(r[k], data[k], len[k], 2);
        rt_request_timing t;
        rt_request_get_timing(r[k], &t);
        assert_int_equal(t.batch_size, k == 0 ? 1 : 2);
        rt_request_free(r[k]);
    }
    rt_model_stats s;
    rt_model_get_stats(m, &s);
    assert_int_equal(s.execution_count, 3);
    rt_model_release(m);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "fixed", 1, "fixed.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "fixed",
                                     "parameters { key: \"ferry.timeout_microseconds\" "
                                     "value { string_value: \"20000\" } }"),
                     0);
    start(f);
    rt_model *m = acquire(f, "fixed");
    assert_int_equal(rt_model_get_config(m)->timeout_us, 20000);
    tu_waiter *w = &f->w;
    float x[4] = {1, 2, 3, 4};
    ferry_tensor_view in = fview(x, 2, 1, 4, 0);
    rt_request *r[4];
    for (int i = 0; i < 4; i++) r[i] = request(m, w, &in);
    rt_request_set_timeout_us(r[1], 1000);     /* shorter than the config's: honoured */
    rt_request_set_timeout_us(r[3], 60000000); /* longer than the config's: capped */
    tu_set_hold(w, true);
    submit_ok(r[0]);
    tu_wait_holding(w, 1);
    submit_ok(r[1]);
    submit_ok(r[2]);
    submit_ok(r[3]);
    tu_sleep_ms(60);
    tu_set_hold(w, false);
    assert_int_equal(tu_wait_done(w, 4), 4);
    assert_null(rt_request_status(r[0]));
    for (int i = 1; i < 4; i++) {
        const ferry_status *st = rt_request_status(r[i]);
        assert_int_equal(ferry_status_code(st), FERRY_ERR_TIMEOUT);
        assert_non_null(strstr(ferry_status_message(st), "timed out"));
        assert_int_equal(rt_request_output_count(r[i]), 0);
        rt_request_timing t;
        rt_request_get_timing(r[i], &t);
        assert_int_equal(t.batch_size, 0);
    }
    rt_model_stats s;
    rt_model_get_stats(m, &s);
    assert_int_equal(s.requests[RT_OUTCOME_TIMEOUT], 3);
    assert_int_equal(s.execution_count, 1);
    assert_int_equal(s.fail.count, 3);
    for (int i = 0; i < 4; i++) rt_request_free(r[i]);
    rt_model_release(m);
}

static void test_outputs_and_reshape(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "two", 1, "two_io.onnx"), 0);
    assert_int_equal(tu_add_version(f->repo, "shaped", 1, "scale2.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "shaped",
                                     "max_batch_size: 2\n"
                                     "input { name: \"x\" data_type: TYPE_FP32 dims: [2, 2] "
                                     "reshape { shape: [4] } }\n"
                                     "output { name: \"y\" data_type: TYPE_FP32 dims: [-1, 1] "
                                     "reshape { shape: [4] } }\n"),
                     0);
    start(f);
    tu_waiter *w = &f->w;

    rt_model *m = acquire(f, "two");
    const rt_model_config *cfg = rt_model_get_config(m);
    int ia = rt_config_input_index(cfg, "a"), ib = rt_config_input_index(cfg, "b");
    int idiff = rt_config_output_index(cfg, "diff");
    assert_true(ia >= 0 && ib >= 0 && idiff >= 0);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {6, 5, 4, 3, 2, 1};
    ferry_tensor_view va = fview(a, 2, 2, 3, 0), vb = fview(b, 2, 2, 3, 0);
    rt_request *r;
    assert_null(rt_request_create(m, &r));
    assert_null(rt_request_set_input(r, (size_t)ia, &va));
    assert_null(rt_request_set_input(r, (size_t)ib, &vb));
    assert_null(rt_request_add_output(r, (size_t)idiff));
    ferry_status *st = rt_request_add_output(r, (size_t)idiff);
    assert_non_null(strstr(ferry_status_message(st), "output 'diff' is requested twice"));
    ferry_status_free(st);
    st = rt_request_add_output(r, 7);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    ferry_status_free(st);
    rt_request_set_callback(r, tu_waiter_cb, w);
    submit_ok(r);
    assert_int_equal(tu_wait_done(w, 1), 1);
    assert_int_equal(rt_request_output_count(r), 1);
    size_t ci;
    ferry_tensor_view out;
    assert_null(rt_request_output(r, 0, &ci, &out));
    assert_int_equal(ci, (size_t)idiff);
    for (int i = 0; i < 6; i++) assert_true(((float *)out.data)[i] == a[i] - b[i]);
    rt_request_free(r);
    rt_model_release(m);

    m = acquire(f, "shaped");
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ferry_tensor_view vx = {FERRY_DTYPE_FLOAT, 3, {2, 2, 2}, x};
    r = request(m, w, &vx);
    submit_ok(r);
    assert_int_equal(tu_wait_done(w, 2), 2);
    check_affine(r, x, 8, 2);
    assert_null(rt_request_output(r, 0, NULL, &out));
    assert_int_equal(out.rank, 3); /* [2] + the config's dims [-1, 1] with -1 = 4 */
    assert_int_equal(out.dims[0], 2);
    assert_int_equal(out.dims[1], 4);
    assert_int_equal(out.dims[2], 1);
    rt_request_free(r);
    rt_model_release(m);
}

typedef struct shutdown_arg {
    rt_runtime *rt;
    bool finished;
} shutdown_arg;

static void *do_shutdown(void *p)
{
    shutdown_arg *a = p;
    rt_runtime_shutdown(a->rt);
    __atomic_store_n(&a->finished, true, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Shutdown refuses new work at once, completes what was queued, then returns. */
static void test_shutdown_drains(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "fixed", 1, "fixed.onnx"), 0);
    start(f);
    assert_true(rt_runtime_live(f->rt));
    rt_model *m = acquire(f, "fixed");
    tu_waiter *w = &f->w;
    float x[4] = {1, 2, 3, 4};
    ferry_tensor_view in = fview(x, 2, 1, 4, 0);
    rt_request *r[5];
    for (int i = 0; i < 5; i++) r[i] = request(m, w, &in);
    tu_set_hold(w, true);
    submit_ok(r[0]);
    tu_wait_holding(w, 1);
    for (int i = 1; i < 4; i++) submit_ok(r[i]);
    shutdown_arg a = {f->rt, false};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, do_shutdown, &a), 0);
    while (rt_runtime_live(f->rt)) tu_sleep_ms(1);
    tu_sleep_ms(20);
    assert_false(__atomic_load_n(&a.finished, __ATOMIC_SEQ_CST)); /* still draining */
    expect_submit_error(r[4], FERRY_ERR_UNAVAILABLE, "shutting down");
    tu_set_hold(w, false);
    pthread_join(t, NULL);
    assert_int_equal(w->done, 4); /* every accepted request completed before shutdown returned */
    assert_int_equal(w->ok, 4);
    rt_runtime_shutdown(f->rt); /* idempotent */
    for (int i = 0; i < 5; i++) rt_request_free(r[i]);
    rt_model_release(m);
}

/* Many threads, several instances, batching on: every request gets its own correct answer. */
typedef struct load_arg {
    fixture *f;
    int id;
    int ok;
} load_arg;

static void *load_thread(void *p)
{
    load_arg *a = p;
    tu_waiter w;
    tu_waiter_init(&w);
    for (int i = 0; i < 100; i++) {
        rt_model *m = NULL;
        if (rt_model_acquire(a->f->rt, "scale", NULL, &m)) break;
        float x[8];
        int rows = 1 + (i + a->id) % 2;
        for (int k = 0; k < 8; k++) x[k] = (float)(a->id * 1000 + i * 10 + k);
        ferry_tensor_view in = fview(x, 2, rows, 4, 0);
        rt_request *r = NULL;
        rt_request_create(m, &r);
        rt_request_set_input(r, 0, &in);
        rt_request_set_callback(r, tu_waiter_cb, &w);
        ferry_status *st = rt_submit(r);
        if (!st && tu_wait_done(&w, i + 1) == i + 1 && !rt_request_status(r)) {
            ferry_tensor_view out;
            rt_request_output(r, 0, NULL, &out);
            bool good = ferry_tensor_view_count(&out) == rows * 4;
            for (int k = 0; good && k < rows * 4; k++)
                good = ((float *)out.data)[k] == x[k] * 2 + 1;
            a->ok += good;
        }
        ferry_status_free(st);
        rt_request_free(r);
        rt_model_release(m);
    }
    tu_waiter_destroy(&w);
    return NULL;
}

static void test_concurrent(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "scale", 1, "scale2.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "scale",
                                     "max_batch_size: 8\n"
                                     "dynamic_batching { max_queue_delay_microseconds: 200 }\n"
                                     "instance_group [ { count: 3 } ]\n"),
                     0);
    start(f);
    enum { THREADS = 6 };
    pthread_t t[THREADS];
    load_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (load_arg){f, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, load_thread, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].ok, 100);
    }
    rt_model **list;
    size_t n;
    assert_null(rt_model_list(f->rt, NULL, &list, &n));
    assert_int_equal(n, 1);
    rt_model_stats s;
    rt_model_get_stats(list[0], &s);
    assert_int_equal(s.requests[RT_OUTCOME_SUCCESS], THREADS * 100);
    assert_true(s.execution_count <= THREADS * 100);
    assert_int_equal(s.instance_count, 3);
    rt_model_list_free(list, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batching_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outputs_and_reshape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
