/* test_core.c - unit tests of core/: status values, dtypes, the pool, the protobuf reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/dtype.h"
#include "core/pool.h"
#include "core/status.h"
#include "core/threadpool.h"

#include <time.h>
#include "engine/pb.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void status_carries_code_and_message(void **state)
{
    (void)state;
    ferry_status *st = core_error(FERRY_ERR_INVALID_ARGUMENT, "input '%s': bad %d", "x", 3);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    assert_string_equal(ferry_status_message(st), "input 'x': bad 3");
    st = core_error_wrap(st, "node '%s'", "n1");
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_ARGUMENT);
    assert_string_equal(ferry_status_message(st), "node 'n1': input 'x': bad 3");
    ferry_status_free(st);
    assert_int_equal(ferry_status_code(NULL), FERRY_OK);
    assert_string_equal(ferry_status_message(NULL), "ok");
    assert_null(core_error_wrap(NULL, "nothing"));
    ferry_status_free(NULL);
    assert_string_equal(ferry_code_name(FERRY_ERR_UNSUPPORTED), "unsupported");
    assert_string_equal(ferry_code_name((ferry_code)999), "unknown");
}

static void dtype_sizes_and_names(void **state)
{
    (void)state;
    assert_int_equal(ferry_dtype_size(FERRY_DTYPE_FLOAT), 4);
    assert_int_equal(ferry_dtype_size(FERRY_DTYPE_BOOL), 1);
    assert_int_equal(ferry_dtype_size(FERRY_DTYPE_BFLOAT16), 2);
    assert_int_equal(ferry_dtype_size(FERRY_DTYPE_STRING), sizeof(char *));
    assert_int_equal(ferry_dtype_size(FERRY_DTYPE_UNDEFINED), 0);
    assert_string_equal(ferry_dtype_name(FERRY_DTYPE_INT64), "int64");
    assert_string_equal(ferry_dtype_name((ferry_dtype)77), "undefined");
}

static void half_round_trips(void **state)
{
    (void)state;
    const float exact[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        assert_true(core_half_to_float(core_float_to_half(exact[i])) == exact[i]);
    assert_true(isinf(core_half_to_float(core_float_to_half(1e6f))));
    assert_true(isnan(core_half_to_float(core_float_to_half(NAN))));
    /* 1 + 2^-11 is halfway between two halves: ties go to even (1.0). */
    assert_true(core_half_to_float(core_float_to_half(1.0f + 0.00048828125f)) == 1.0f);
    /* Every half value converts to float and back unchanged. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = core_half_to_float((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(core_float_to_half(f), h);
    }
    assert_true(core_bf16_to_float(core_float_to_bf16(1.5f)) == 1.5f);
    assert_true(isnan(core_bf16_to_float(core_float_to_bf16(NAN))));
}

static void pool_aligns_and_releases(void **state)
{
    (void)state;
    core_pool p = {0};
    for (int i = 0; i < 1000; i++) {
        size_t align = (size_t)1 << (i % 7);
        uint8_t *a = core_pool_alloc(&p, (size_t)(i * 37 % 5000) + 1, align);
        assert_non_null(a);
        assert_int_equal((uintptr_t)a % (align < sizeof(void *) ? sizeof(void *) : align), 0);
        a[0] = 1;
    }
    uint8_t *big = core_pool_alloc(&p, 1 << 20, 64);
    assert_non_null(big);
    memset(big, 7, 1 << 20);
    char *s = core_pool_strndup(&p, "abcdef", 3);
    assert_string_equal(s, "abc");
    core_pool_release(&p);
    assert_null(p.head);
    core_pool_release(&p); /* twice is harmless */
}

static void pb_reads_fields_and_rejects_truncation(void **state)
{
    (void)state;
    /* field 1 varint 300, field 2 "hi", field 5 fixed32 */
    const uint8_t msg[] = {0x08, 0xac, 0x02, 0x12, 0x02, 'h', 'i', 0x2d, 1, 2, 3, 4};
    pb_reader r = pb_init(msg, sizeof(msg));
    pb_field f;
    assert_true(pb_next(&r, &f));
    assert_int_equal(f.number, 1);
    assert_int_equal(f.u, 300);
    assert_true(pb_next(&r, &f));
    assert_int_equal(f.wire, PB_LEN);
    assert_int_equal(f.len, 2);
    assert_memory_equal(f.data, "hi", 2);
    assert_true(pb_next(&r, &f));
    assert_int_equal(f.u, 0x04030201);
    assert_false(pb_next(&r, &f));
    assert_false(r.failed);
    for (size_t cut = 1; cut < sizeof(msg); cut++) {
        if (cut == 3 || cut == 7) continue; /* field boundaries */
        r = pb_init(msg, cut);
        while (pb_next(&r, &f)) {
        }
        assert_true(r.failed);
    }
    /* A length that points past the end, a group wire type, field number 0. */
    const uint8_t bad1[] = {0x12, 0x7f, 'a'};
    const uint8_t bad2[] = {0x0b};
    const uint8_t bad3[] = {0x00, 0x01};
    const uint8_t bad4[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    const uint8_t *bads[] = {bad1, bad2, bad3, bad4};
    size_t lens[] = {sizeof(bad1), sizeof(bad2), sizeof(bad3), sizeof(bad4)};
    for (int i = 0; i < 4; i++) {
        r = pb_init(bads[i], lens[i]);
        while (pb_next(&r, &f)) {
        }
        assert_true(r.failed);
    }
}

typedef struct sum_job {
    const int64_t *values;
    _Atomic int64_t total;
    _Atomic int64_t calls;
} sum_job;

static void add_range(void *arg, int64_t begin, int64_t end)
{
    sum_job *job = arg;
    int64_t s = 0;
    for (int64_t i = begin; i < end; i++) s += job->values[i];
    job->total += s;
    job->calls++;
}

/* Writes each index's slot, the first slowly, so that the caller finishes its chunks while a
 * worker still runs one: the call must still return only once every index is written. */
typedef struct mark_job {
    _Atomic int *slots;
    int64_t slow;
} mark_job;

static void mark_range(void *arg, int64_t begin, int64_t end)
{
    mark_job *job = arg;
    if (begin <= job->slow && job->slow < end) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    for (int64_t i = begin; i < end; i++) job->slots[i]++;
}

static void threadpool_returns_after_slow_chunks_and_late_workers(void **state)
{
    (void)state;
    enum { N = 64 };
    for (int threads = 2; threads <= 4; threads++) {
        core_threadpool *pool;
        assert_null(core_threadpool_create(threads, &pool));
        /* Tiny jobs back to back, each with its own argument on the stack: a worker that wakes
         * late for one must neither take a chunk of the next nor touch the old argument. */
        for (int rep = 0; rep < 20000; rep++) {
            _Atomic int slots[N] = {0};
            int64_t n = 1 + rep % N;
            mark_job job = {slots, rep % 500 == 0 ? rep % n : -1};
            core_parallel_for(pool, mark_range, &job, n, 1);
            for (int64_t i = 0; i < N; i++) assert_int_equal(slots[i], i < n ? 1 : 0);
        }
        core_threadpool_destroy(pool);
    }
}

static void threadpool_covers_every_index_once(void **state)
{
    (void)state;
    enum { N = 100003 };
    int64_t *values = malloc(N * sizeof(int64_t));
    assert_non_null(values);
    for (int64_t i = 0; i < N; i++) values[i] = i;
    const int64_t want = (int64_t)N * (N - 1) / 2;
    for (int threads = 1; threads <= 4; threads++) {
        core_threadpool *pool;
        assert_null(core_threadpool_create(threads, &pool));
        assert_int_equal(core_threadpool_size(pool), threads);
        for (int rep = 0; rep < 300; rep++) {
            sum_job job = {values, 0, 0};
            int64_t n = rep % 7 == 0 ? 5 : N - rep;
            core_parallel_for(pool, add_range, &job, n, 1 + rep % 64);
            assert_int_equal(job.total, n == 5 ? 10 : want - (N - n) * (N + n - 1) / 2);
        }
        core_threadpool_destroy(pool);
    }
    sum_job job = {values, 0, 0};
    core_parallel_for(NULL, add_range, &job, N, 1); /* no pool: inline */
    assert_int_equal(job.total, want);
    assert_int_equal(job.calls, 1);
    free(values);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_carries_code_and_message),
        cmocka_unit_test(dtype_sizes_and_names),
        cmocka_unit_test(half_round_trips),
        cmocka_unit_test(pool_aligns_and_releases),
        cmocka_unit_test(pb_reads_fields_and_rejects_truncation),
        cmocka_unit_test(threadpool_covers_every_index_once),
        cmocka_unit_test(threadpool_returns_after_slow_chunks_and_late_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
