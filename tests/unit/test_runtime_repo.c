/* test_runtime_repo.c - the model repository: scanning Triton's layout, version policies, the
 * index, explicit load and unload, hot reload (a broken new version leaves the old one serving;
 * a good one takes over without losing a request under load), and hostile names and symbolic
 * links that try to leave the repository. */
#include "../runtime/rt_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

typedef struct fixture {
    char *repo;
    char *outside; /* a directory next to the repository, for escape attempts */
    rt_runtime *rt;
    tu_log log;
    tu_waiter w;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->log.lock, NULL);
    tu_waiter_init(&f->w);
    f->repo = tu_tmpdir("repo");
    f->outside = tu_tmpdir("outside");
    if (!f->repo || !f->outside) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_set_hold(&f->w, false);
    rt_runtime_destroy(f->rt);
    tu_rmrf(f->repo);
    tu_rmrf(f->outside);
    free(f->repo);
    free(f->outside);
    tu_waiter_destroy(&f->w);
    pthread_mutex_destroy(&f->log.lock);
    free(f);
    return 0;
}

static void start_mode(fixture *f, rt_control_mode mode, const char *const *start, size_t n)
{
    rt_options o = {.repository = f->repo,
                    .control_mode = mode,
                    .start_models = start,
                    .start_model_count = n,
                    .poll_interval_ms = 3600000,
                    .log = tu_log_fn,
                    .log_user = &f->log,
                    .log_level = RT_LOG_DEBUG};
    ferry_status *st = rt_runtime_create(&o, &f->rt);
    if (st) fail_msg("%s", ferry_status_message(st));
}

static void path(char *buf, size_t size, const char *a, const char *b)
{
    snprintf(buf, size, "%s/%s", a, b);
}

/* Runs one request of x = [1, 2, 3, 4] ([1,4]) through NAME (default version) and returns the
 * scale its answer implies (y = scale * x + 1), or -1 on an error. */
static float probe(fixture *f, const char *name, int64_t *version)
{
    rt_model *m;
    ferry_status *st = rt_model_acquire(f->rt, name, NULL, &m);
    if (st) {
        ferry_status_free(st);
        return -1;
    }
    if (version) *version = rt_model_version(m);
    float x[4] = {1, 2, 3, 4};
    ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {1, 4}, x};
    rt_request *r;
    assert_null(rt_request_create(m, &r));
    assert_null(rt_request_set_input(r, 0, &in));
    rt_request_set_callback(r, tu_waiter_cb, &f->w);
    int before = f->w.done;
    assert_null(rt_submit(r));
    assert_int_equal(tu_wait_done(&f->w, before + 1), before + 1);
    float scale = -1;
    ferry_tensor_view out;
    if (!rt_request_status(r) && !rt_request_output(r, 0, NULL, &out))
        scale = (((float *)out.data)[1] - 1) / 2;
    rt_request_free(r);
    rt_model_release(m);
    return scale;
}

static const rt_index_entry *find_row(const rt_index_entry *rows, size_t n, const char *name,
                                      int64_t version)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].name, name) && rows[i].version == version) return &rows[i];
    return NULL;
}

static void dump_index(fixture *f)
{
    rt_index_entry *rows;
    size_t n;
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "  %s %lld %s %s\n", rows[i].name, (long long)rows[i].version,
                rt_model_state_name(rows[i].state), rows[i].reason);
    free(rows);
}

static void expect_acquire(fixture *f, const char *name, const char *version, ferry_code code,
                           const char *message)
{
    rt_model *m = NULL;
    ferry_status *st = rt_model_acquire(f->rt, name, version, &m);
    if (ferry_status_code(st) != code || (message && !strstr(ferry_status_message(st), message))) {
        dump_index(f);
        fail_msg("acquire(%.40s, %s): got [%s] %s, want [%s] ...%s...", name ? name : "NULL",
                 version ? version : "NULL", ferry_code_name(ferry_status_code(st)),
                 ferry_status_message(st), ferry_code_name(code), message ? message : "");
    }
    ferry_status_free(st);
    rt_model_release(m);
}

static void test_scan_and_policy(void **state)
{
    fixture *f = *state;
    char p[4096];
    for (int v = 1; v <= 3; v++) {
        assert_int_equal(tu_add_version(f->repo, "latest1", v, "scale2.onnx"), 0);
        assert_int_equal(tu_add_version(f->repo, "all", v, "scale2.onnx"), 0);
        assert_int_equal(tu_add_version(f->repo, "specific", v, "scale2.onnx"), 0);
        assert_int_equal(tu_add_version(f->repo, "latest2", v, "scale2.onnx"), 0);
    }
    assert_int_equal(tu_add_version(f->repo, "specific", 5, "scale2.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "all", "version_policy: { all { } }"), 0);
    assert_int_equal(tu_write_config(f->repo, "specific",
                                     "name: \"specific\"\n"
                                     "version_policy { specific { versions: [1, 3, 4] } }"),
                     0);
    assert_int_equal(
        tu_write_config(f->repo, "latest2", "version_policy { latest { num_versions: 2 } }"), 0);
    path(p, sizeof(p), f->repo, "empty");
    assert_int_equal(tu_mkdirs(p), 0);
    /* Directories that are not versions are ignored: leading zero, not a number. */
    assert_int_equal(tu_add_version(f->repo, "odd", 7, "scale2.onnx"), 0);
    path(p, sizeof(p), f->repo, "odd/01");
    assert_int_equal(tu_mkdirs(p), 0);
    path(p, sizeof(p), f->repo, "odd/x");
    assert_int_equal(tu_mkdirs(p), 0);
    path(p, sizeof(p), f->repo, "odd/8");
    assert_int_equal(tu_write_str(p, "a file, not a directory"), 0);
    assert_int_equal(tu_add_version(f->repo, ".hidden", 1, "scale2.onnx"), 0);
    assert_int_equal(tu_add_version(f->repo, "badcfg", 1, "scale2.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "badcfg", "name: \"badcfg\"\nfoo: 1\n"), 0);
    assert_int_equal(tu_add_version(f->repo, "misnamed", 1, "scale2.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "misnamed", "name: \"other\""), 0);
    path(p, sizeof(p), f->repo, "README.md");
    assert_int_equal(tu_write_str(p, "not a model"), 0);

    start_mode(f, RT_CONTROL_NONE, NULL, 0);
    int64_t vs[8];
    assert_int_equal(rt_model_ready_versions(f->rt, "latest1", vs, 8), 1);
    assert_int_equal(vs[0], 3);
    assert_int_equal(rt_model_ready_versions(f->rt, "all", vs, 8), 3);
    assert_int_equal(vs[0], 3);
    assert_int_equal(vs[2], 1);
    assert_int_equal(rt_model_ready_versions(f->rt, "specific", vs, 8), 2);
    assert_int_equal(vs[0], 3);
    assert_int_equal(vs[1], 1);
    assert_int_equal(rt_model_ready_versions(f->rt, "latest2", vs, 8), 2);
    assert_int_equal(vs[1], 2);
    assert_int_equal(rt_model_ready_versions(f->rt, "odd", vs, 8), 1);
    assert_int_equal(vs[0], 7);
    assert_int_equal(rt_model_ready_versions(f->rt, "nope", vs, 8), 0);
    assert_int_equal(rt_model_ready_versions(f->rt, "../x", vs, 8), 0);

    int64_t v;
    assert_true(probe(f, "latest1", &v) == 2);
    assert_int_equal(v, 3);
    rt_model *m;
    assert_null(rt_model_acquire(f->rt, "all", "2", &m));
    assert_int_equal(rt_model_version(m), 2);
    rt_model_release(m);
    assert_null(rt_model_acquire(f->rt, "all", "", &m));
    assert_int_equal(rt_model_version(m), 3);
    rt_model_release(m);
    expect_acquire(f, "latest1", "2", FERRY_ERR_NOT_FOUND, "has no version 2");
    expect_acquire(f, "specific", "5", FERRY_ERR_NOT_FOUND, NULL);
    expect_acquire(f, "empty", NULL, FERRY_ERR_UNAVAILABLE, "no version directory");
    expect_acquire(f, "badcfg", NULL, FERRY_ERR_UNAVAILABLE,
                   "badcfg/config.pbtxt:2: field 'foo': unknown field of ModelConfig");
    expect_acquire(f, "misnamed", NULL, FERRY_ERR_UNAVAILABLE,
                   "name 'other' does not match the model directory 'misnamed'");
    expect_acquire(f, ".hidden", NULL, FERRY_ERR_INVALID_ARGUMENT, "not a valid model name");
    expect_acquire(f, "README.md", NULL, FERRY_ERR_NOT_FOUND, "unknown model");

    rt_index_entry *rows;
    size_t n;
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    /* all x3, latest1, latest2 x2, specific x2, odd, empty, badcfg, misnamed. */
    assert_int_equal(n, 12);
    for (size_t i = 1; i < n; i++) {
        int c = strcmp(rows[i - 1].name, rows[i].name);
        assert_true(c < 0 || (c == 0 && rows[i - 1].version < rows[i].version));
    }
    const rt_index_entry *r = find_row(rows, n, "all", 1);
    assert_non_null(r);
    assert_int_equal(r->state, RT_STATE_READY);
    assert_string_equal(rt_model_state_name(r->state), "READY");
    r = find_row(rows, n, "empty", -1);
    assert_non_null(r);
    assert_int_equal(r->state, RT_STATE_UNAVAILABLE);
    assert_non_null(strstr(r->reason, "no version directory"));
    r = find_row(rows, n, "badcfg", -1);
    assert_non_null(r);
    assert_non_null(strstr(r->reason, "badcfg/config.pbtxt:2: field 'foo'"));
    free(rows);
    assert_null(rt_runtime_index(f->rt, true, &rows, &n));
    assert_int_equal(n, 9);
    free(rows);
    assert_true(tu_log_has(&f->log, "\"event\":\"model_load_failed\",\"model\":\"badcfg\""));
    assert_true(tu_log_has(&f->log, "\"event\":\"model_ready\",\"model\":\"all\",\"version\":2"));

    rt_model **list;
    assert_null(rt_model_list(f->rt, NULL, &list, &n));
    assert_int_equal(n, 9);
    assert_string_equal(rt_model_name(list[0]), "all");
    assert_int_equal(rt_model_version(list[0]), 1);
    rt_model_list_free(list, n);
    assert_null(rt_model_list(f->rt, "latest2", &list, &n));
    assert_int_equal(n, 2);
    rt_model_list_free(list, n);

    /* Outside poll mode a rescan refreshes the index but loads nothing. */
    assert_int_equal(tu_add_version(f->repo, "later", 1, "scale2.onnx"), 0);
    assert_null(rt_runtime_rescan(f->rt));
    expect_acquire(f, "later", NULL, FERRY_ERR_UNAVAILABLE, NULL);
    ferry_status *st = rt_runtime_load(f->rt, "later");
    assert_int_equal(ferry_status_code(st), FERRY_ERR_UNSUPPORTED);
    assert_non_null(strstr(ferry_status_message(st), "model control mode is 'none'"));
    ferry_status_free(st);
}

static void test_load_failure_keeps_old(void **state)
{
    fixture *f = *state;
    char p[4096];
    assert_int_equal(tu_add_version(f->repo, "m", 1, "scale2.onnx"), 0);
    start_mode(f, RT_CONTROL_POLL, NULL, 0);
    int64_t v;
    assert_true(probe(f, "m", &v) == 2);
    assert_int_equal(v, 1);

    /* Version 2 appears, broken: version 1 keeps serving and the index says why. */
    path(p, sizeof(p), f->repo, "m/2");
    assert_int_equal(tu_mkdirs(p), 0);
    path(p, sizeof(p), f->repo, "m/2/model.onnx");
    assert_int_equal(tu_write_str(p, "this is not a protobuf"), 0);
    assert_null(rt_runtime_rescan(f->rt));
    assert_true(probe(f, "m", &v) == 2);
    assert_int_equal(v, 1);
    rt_index_entry *rows;
    size_t n;
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].version, 1);
    assert_int_equal(rows[0].state, RT_STATE_READY);
    assert_int_equal(rows[1].version, 2);
    assert_int_equal(rows[1].state, RT_STATE_UNAVAILABLE);
    assert_non_null(strstr(rows[1].reason, "load failed: model 'm' version 2"));
    free(rows);
    assert_true(tu_log_has(&f->log, "\"event\":\"model_load_failed\",\"model\":\"m\","
                                    "\"version\":2"));
    expect_acquire(f, "m", "2", FERRY_ERR_UNAVAILABLE, "version 2 is not ready (UNAVAILABLE");

    /* Version 2 is fixed: it takes over, version 1 drains and is freed. */
    path(p, sizeof(p), f->repo, "m/2/model.onnx");
    char from[4096];
    path(from, sizeof(from), tu_models_dir(), "scale3.onnx");
    assert_int_equal(tu_copy(from, p), 0);
    assert_null(rt_runtime_rescan(f->rt));
    assert_true(probe(f, "m", &v) == 3);
    assert_int_equal(v, 2);
    expect_acquire(f, "m", "1", FERRY_ERR_NOT_FOUND, NULL);
    for (int i = 0; i < 2000 && !tu_log_has(&f->log, "\"event\":\"model_freed\",\"model\":\"m\","
                                                     "\"version\":1");
         i++)
        tu_sleep_ms(5);
    assert_true(tu_log_has(&f->log, "\"event\":\"model_freed\",\"model\":\"m\",\"version\":1"));

    /* Version 2's file is replaced by a broken one: its previous files keep serving, the index
     * says so, and polling does not retry the same broken file again and again. */
    path(p, sizeof(p), f->repo, "m/2/model.onnx");
    assert_int_equal(tu_write_str(p, "broken again"), 0);
    for (int i = 0; i < 3; i++) {
        assert_null(rt_runtime_rescan(f->rt));
        assert_true(probe(f, "m", &v) == 3);
        assert_int_equal(v, 2);
        assert_null(rt_runtime_index(f->rt, false, &rows, &n));
        assert_int_equal(n, 1);
        assert_int_equal(rows[0].state, RT_STATE_READY);
        assert_non_null(strstr(rows[0].reason, "serving the previous files; load failed: "));
        free(rows);
    }
    assert_int_equal(tu_log_count(&f->log, "\"event\":\"model_load_failed\",\"model\":\"m\","
                                           "\"version\":2"),
                     2);
    assert_int_equal(tu_copy(from, p), 0);
    assert_null(rt_runtime_rescan(f->rt));
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].reason, "");
    free(rows);

    /* A broken config.pbtxt: version 2 keeps serving with the old one. */
    assert_int_equal(tu_write_config(f->repo, "m", "max_batch_size: 4\nbogus { }\n"), 0);
    assert_null(rt_runtime_rescan(f->rt));
    assert_true(probe(f, "m", &v) == 3);
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].state, RT_STATE_READY);
    assert_non_null(strstr(rows[0].reason, "m/config.pbtxt:2: field 'bogus'"));
    free(rows);

    /* A config the model contradicts fails the same way and names the mismatch. */
    assert_int_equal(tu_write_config(f->repo, "m",
                                     "max_batch_size: 4\n"
                                     "input { name: \"x\" data_type: TYPE_FP32 dims: [5] }"),
                     0);
    assert_null(rt_runtime_rescan(f->rt));
    assert_true(probe(f, "m", &v) == 3);
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    assert_int_equal(n, 1);
    assert_non_null(strstr(rows[0].reason, "the model has [-1,4]"));
    free(rows);

    /* The model directory disappears: the model is unloaded and leaves the index. */
    path(p, sizeof(p), f->repo, "m");
    tu_rmrf(p);
    assert_null(rt_runtime_rescan(f->rt));
    expect_acquire(f, "m", NULL, FERRY_ERR_NOT_FOUND, "unknown model 'm'");
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    assert_int_equal(n, 0);
    free(rows);
}

typedef struct client {
    fixture *f;
    volatile bool *stop;
    int sent, ok, wrong, failed;
    int saw_new;
} client;

static void *client_main(void *p)
{
    client *c = p;
    tu_waiter w;
    tu_waiter_init(&w);
    int queued = 0;
    while (!__atomic_load_n(c->stop, __ATOMIC_SEQ_CST)) {
        rt_model *m;
        ferry_status *st = rt_model_acquire(c->f->rt, "m", NULL, &m);
        if (st) {
            c->failed++;
            ferry_status_free(st);
            continue;
        }
        float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {2, 4}, x};
        rt_request *r;
        rt_request_create(m, &r);
        rt_request_set_input(r, 0, &in);
        rt_request_set_callback(r, tu_waiter_cb, &w);
        c->sent++;
        st = rt_submit(r);
        if (!st) queued++;
        if (st) {
            c->failed++;
            ferry_status_free(st);
        } else if (tu_wait_done(&w, queued) == queued && !rt_request_status(r)) {
            ferry_tensor_view out;
            rt_request_output(r, 0, NULL, &out);
            float scale = (((float *)out.data)[1] - 1) / 2;
            if (scale == 2)
                c->ok++;
            else if (scale == 3)
                c->ok++, c->saw_new++;
            else
                c->wrong++;
        } else {
            c->failed++;
        }
        rt_request_free(r);
        rt_model_release(m);
        if (c->sent % 8 == 0) {
            /* What /metrics and the index API do, racing with the reloads. */
            rt_index_entry *rows;
            size_t n;
            rt_model **list;
            if (!rt_runtime_index(c->f->rt, false, &rows, &n)) free(rows);
            if (!rt_model_list(c->f->rt, NULL, &list, &n)) {
                for (size_t i = 0; i < n; i++) {
                    rt_model_stats s;
                    rt_model_get_stats(list[i], &s);
                    if (s.requests[RT_OUTCOME_ERROR]) c->wrong++;
                }
                rt_model_list_free(list, n);
            }
        }
    }
    tu_waiter_destroy(&w);
    return NULL;
}

/* Hot reload under load: clients submit all the time while a new version appears and both the
 * poll thread and explicit rescans pick it up. Not one request may fail. */
static void test_reload_under_load(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "m", 1, "scale2.onnx"), 0);
    assert_int_equal(tu_write_config(f->repo, "m",
                                     "max_batch_size: 8\n"
                                     "dynamic_batching { max_queue_delay_microseconds: 100 }\n"
                                     "instance_group [ { count: 2 } ]\n"),
                     0);
    rt_options o = {.repository = f->repo,
                    .control_mode = RT_CONTROL_POLL,
                    .poll_interval_ms = 20,
                    .log = tu_log_fn,
                    .log_user = &f->log,
                    .log_level = RT_LOG_DEBUG};
    assert_null(rt_runtime_create(&o, &f->rt));
    enum { CLIENTS = 4 };
    volatile bool stop = false;
    client c[CLIENTS];
    pthread_t t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        c[i] = (client){f, &stop, 0, 0, 0, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
    }
    tu_sleep_ms(100);
    assert_int_equal(tu_add_version(f->repo, "m", 2, "scale3.onnx"), 0);
    for (int i = 0; i < 3; i++) {
        assert_null(rt_runtime_rescan(f->rt));
        tu_sleep_ms(30);
    }
    /* And back: version 2 removed, version 1 serves again. */
    char p[4096];
    path(p, sizeof(p), f->repo, "m/2");
    tu_rmrf(p);
    tu_sleep_ms(100);
    __atomic_store_n(&stop, true, __ATOMIC_SEQ_CST);
    int ok = 0, sent = 0, saw_new = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].failed, 0);
        assert_int_equal(c[i].wrong, 0);
        ok += c[i].ok;
        sent += c[i].sent;
        saw_new += c[i].saw_new;
    }
    assert_int_equal(ok, sent);
    assert_true(sent > 0);
    assert_true(saw_new > 0);
    assert_null(rt_runtime_rescan(f->rt));
    int64_t v;
    assert_true(probe(f, "m", &v) == 2);
    assert_int_equal(v, 1);
    assert_true(tu_log_has(&f->log, "\"event\":\"model_retired\",\"model\":\"m\",\"version\":1"));
    assert_true(tu_log_has(&f->log, "\"event\":\"model_retired\",\"model\":\"m\",\"version\":2"));
}

static void test_explicit_mode(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "a", 1, "scale2.onnx"), 0);
    assert_int_equal(tu_add_version(f->repo, "b", 1, "scale3.onnx"), 0);
    assert_int_equal(tu_add_version(f->repo, "c", 1, "scale2.onnx"), 0);
    static const char *const start[] = {"a", "../etc", "ghost"};
    start_mode(f, RT_CONTROL_EXPLICIT, start, 3);
    assert_true(probe(f, "a", NULL) == 2);
    expect_acquire(f, "b", NULL, FERRY_ERR_UNAVAILABLE, "not ready");
    rt_index_entry *rows;
    size_t n;
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    assert_int_equal(n, 3);
    assert_int_equal(rows[1].state, RT_STATE_UNAVAILABLE);
    free(rows);
    assert_true(tu_log_has(&f->log, "'../etc' is not a valid model name"));
    assert_true(tu_log_has(&f->log, "model 'ghost' is not in the repository"));

    assert_null(rt_runtime_load(f->rt, "b"));
    assert_true(probe(f, "b", NULL) == 3);
    assert_null(rt_runtime_load(f->rt, "b")); /* a reload of unchanged files is a no-op */
    assert_true(probe(f, "b", NULL) == 3);

    ferry_status *st = rt_runtime_load(f->rt, "nope");
    assert_int_equal(ferry_status_code(st), FERRY_ERR_NOT_FOUND);
    ferry_status_free(st);
    st = rt_runtime_load(f->rt, "../a");
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    ferry_status_free(st);
    st = rt_runtime_unload(f->rt, "nope");
    assert_int_equal(ferry_status_code(st), FERRY_ERR_NOT_FOUND);
    ferry_status_free(st);

    /* Unload with a request running and one reference still held: the running request
     * finishes, the holder's next submission is refused, new acquires fail. */
    rt_model *m;
    assert_null(rt_model_acquire(f->rt, "a", NULL, &m));
    float x[4] = {1, 2, 3, 4};
    ferry_tensor_view in = {FERRY_DTYPE_FLOAT, 2, {1, 4}, x};
    rt_request *r1, *r2;
    assert_null(rt_request_create(m, &r1));
    assert_null(rt_request_set_input(r1, 0, &in));
    rt_request_set_callback(r1, tu_waiter_cb, &f->w);
    assert_null(rt_request_create(m, &r2));
    assert_null(rt_request_set_input(r2, 0, &in));
    rt_request_set_callback(r2, tu_waiter_cb, &f->w);
    int before = f->w.done;
    tu_set_hold(&f->w, true);
    assert_null(rt_submit(r1));
    tu_wait_holding(&f->w, 1);
    assert_null(rt_runtime_unload(f->rt, "a"));
    assert_int_equal(rt_model_get_state(m), RT_STATE_UNLOADING);
    st = rt_submit(r2);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_UNAVAILABLE);
    assert_non_null(strstr(ferry_status_message(st), "unloading"));
    ferry_status_free(st);
    expect_acquire(f, "a", NULL, FERRY_ERR_UNAVAILABLE, "unloaded");
    tu_set_hold(&f->w, false);
    assert_int_equal(tu_wait_done(&f->w, before + 1), before + 1);
    assert_null(rt_request_status(r1));
    rt_request_free(r1);
    rt_request_free(r2);
    rt_model_release(m);
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    const rt_index_entry *row = find_row(rows, n, "a", 1);
    assert_non_null(row);
    assert_int_equal(row->state, RT_STATE_UNAVAILABLE);
    assert_string_equal(row->reason, "unloaded");
    free(rows);
    /* And back. */
    assert_null(rt_runtime_load(f->rt, "a"));
    assert_true(probe(f, "a", NULL) == 2);
}

static void test_explicit_all(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_add_version(f->repo, "a", 1, "scale2.onnx"), 0);
    assert_int_equal(tu_add_version(f->repo, "b", 1, "scale3.onnx"), 0);
    static const char *const start[] = {"*"};
    start_mode(f, RT_CONTROL_EXPLICIT, start, 1);
    assert_true(probe(f, "a", NULL) == 2);
    assert_true(probe(f, "b", NULL) == 3);
    ferry_status *st = rt_runtime_load(f->rt, "a");
    assert_null(st);
}

static void test_hostile_names(void **state)
{
    fixture *f = *state;
    char p[4096], q[4096];
    assert_int_equal(tu_add_version(f->repo, "good", 1, "scale2.onnx"), 0);
    /* A model directory that is a symbolic link out of the repository. */
    assert_int_equal(tu_add_version(f->outside, "evil", 1, "scale2.onnx"), 0);
    path(p, sizeof(p), f->outside, "evil");
    path(q, sizeof(q), f->repo, "evil");
    assert_int_equal(symlink(p, q), 0);
    /* A version directory that leaves. */
    path(q, sizeof(q), f->repo, "ver");
    assert_int_equal(tu_mkdirs(q), 0);
    path(p, sizeof(p), f->outside, "evil/1");
    path(q, sizeof(q), f->repo, "ver/1");
    assert_int_equal(symlink(p, q), 0);
    /* A model file that leaves. */
    path(q, sizeof(q), f->repo, "file/1");
    assert_int_equal(tu_mkdirs(q), 0);
    path(p, sizeof(p), f->outside, "evil/1/model.onnx");
    path(q, sizeof(q), f->repo, "file/1/model.onnx");
    assert_int_equal(symlink(p, q), 0);
    /* A config file that leaves. */
    assert_int_equal(tu_add_version(f->repo, "cfg", 1, "scale2.onnx"), 0);
    path(p, sizeof(p), f->outside, "config.pbtxt");
    assert_int_equal(tu_write_str(p, "max_batch_size: 2"), 0);
    path(q, sizeof(q), f->repo, "cfg/config.pbtxt");
    assert_int_equal(symlink(p, q), 0);
    /* A link that stays inside is fine. */
    path(q, sizeof(q), f->repo, "alias");
    assert_int_equal(symlink("good", q), 0);

    start_mode(f, RT_CONTROL_POLL, NULL, 0);
    assert_true(probe(f, "good", NULL) == 2);
    assert_true(probe(f, "alias", NULL) == 2);
    expect_acquire(f, "evil", NULL, FERRY_ERR_UNAVAILABLE, "resolves outside the model repository");
    expect_acquire(f, "ver", NULL, FERRY_ERR_UNAVAILABLE, "no version directory");
    expect_acquire(f, "file", NULL, FERRY_ERR_UNAVAILABLE, "resolves outside the model repository");
    expect_acquire(f, "cfg", NULL, FERRY_ERR_UNAVAILABLE, "resolves outside the model repository");
    assert_true(tu_log_has(&f->log, "\"event\":\"version_skipped\",\"model\":\"ver\""));

    static const char *const bad_names[] = {
        "../good", "good/../good", "a/b",    ".hidden",           "..",          ".", "",
        "good\n",  "/etc/passwd",  "%2e%2e", "good/1/model.onnx", "evil/../../x"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        expect_acquire(f, bad_names[i], NULL, FERRY_ERR_INVALID_ARGUMENT, "not a valid model name");
    expect_acquire(f, NULL, NULL, FERRY_ERR_INVALID_ARGUMENT, NULL);
    char longname[1024];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    expect_acquire(f, longname, NULL, FERRY_ERR_INVALID_ARGUMENT, "aaaa...");
    static const char *const bad_versions[] = {"../1", "0",  "01", "-1",
                                               "1/..", "1 ", "x",  "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_versions) / sizeof(bad_versions[0]); i++)
        expect_acquire(f, "good", bad_versions[i], FERRY_ERR_INVALID_ARGUMENT,
                       "not a valid model version");
    expect_acquire(f, "good", "2", FERRY_ERR_NOT_FOUND, NULL);
    expect_acquire(f, "unknown", NULL, FERRY_ERR_NOT_FOUND, "unknown model 'unknown'");

    /* The repository API is refused in poll mode, hostile or not. */
    ferry_status *st = rt_runtime_load(f->rt, "../good");
    assert_int_equal(ferry_status_code(st), FERRY_ERR_UNSUPPORTED);
    ferry_status_free(st);
}

static void test_explicit_hostile(void **state)
{
    fixture *f = *state;
    char p[4096], q[4096];
    assert_int_equal(tu_add_version(f->outside, "evil", 1, "scale2.onnx"), 0);
    path(p, sizeof(p), f->outside, "evil");
    path(q, sizeof(q), f->repo, "evil");
    assert_int_equal(symlink(p, q), 0);
    start_mode(f, RT_CONTROL_EXPLICIT, NULL, 0);
    ferry_status *st = rt_runtime_load(f->rt, "evil");
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_MODEL);
    assert_non_null(strstr(ferry_status_message(st), "outside the model repository"));
    ferry_status_free(st);
    static const char *const names[] = {"../outside", "..", ".", "a/b", "/tmp"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        st = rt_runtime_load(f->rt, names[i]);
        assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
        ferry_status_free(st);
        st = rt_runtime_unload(f->rt, names[i]);
        assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
        ferry_status_free(st);
    }
    /* Names that do not exist do not grow the table. */
    for (int i = 0; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof(name), "ghost%d", i);
        st = rt_runtime_load(f->rt, name);
        assert_int_equal(ferry_status_code(st), FERRY_ERR_NOT_FOUND);
        ferry_status_free(st);
    }
    rt_index_entry *rows;
    size_t n;
    assert_null(rt_runtime_index(f->rt, false, &rows, &n));
    assert_int_equal(n, 1);
    free(rows);
}

static void test_create_errors(void **state)
{
    fixture *f = *state;
    rt_runtime *rt = NULL;
    rt_options o = {.repository = "/nonexistent/ferry/repo"};
    ferry_status *st = rt_runtime_create(&o, &rt);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_NOT_FOUND);
    assert_null(rt);
    ferry_status_free(st);
    char p[4096];
    path(p, sizeof(p), f->repo, "file");
    assert_int_equal(tu_write_str(p, "x"), 0);
    o.repository = p;
    st = rt_runtime_create(&o, &rt);
    assert_non_null(strstr(ferry_status_message(st), "not a directory"));
    ferry_status_free(st);
    o.repository = NULL;
    st = rt_runtime_create(&o, &rt);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    ferry_status_free(st);
    o.repository = f->repo;
    o.default_instances = 1000;
    st = rt_runtime_create(&o, &rt);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    ferry_status_free(st);
    rt_runtime_destroy(NULL);
    rt_runtime_shutdown(NULL);
    assert_false(rt_runtime_live(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scan_and_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_failure_keeps_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
