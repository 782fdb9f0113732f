/* test_tensor_file.c - unit tests of the .npy and .pb tensor readers and the .npy writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ferry.h"
#include "pbw.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/ferry-tensor-XXXXXX";

static void write_file(const char *name, const void *data, size_t n)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static ferry_status *read_named(const char *name, ferry_tensor **t)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return ferry_tensor_read_file(path, t);
}

static void npy_round_trip_every_dtype(void **state)
{
    (void)state;
    const ferry_dtype types[] = {FERRY_DTYPE_FLOAT, FERRY_DTYPE_DOUBLE,  FERRY_DTYPE_INT64,
                                 FERRY_DTYPE_INT32, FERRY_DTYPE_UINT8,   FERRY_DTYPE_INT8,
                                 FERRY_DTYPE_BOOL,  FERRY_DTYPE_FLOAT16, FERRY_DTYPE_UINT16};
    uint8_t data[64 * 8];
    for (size_t i = 0; i < sizeof(data); i++) data[i] = (uint8_t)(i * 7 % 2);
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        for (int rank = 0; rank <= 3; rank++) {
            ferry_tensor_view v = {types[k], rank, {2, 3, 4}, data};
            char path[256];
            snprintf(path, sizeof(path), "%s/t.npy", dir);
            assert_null(ferry_tensor_write_npy(&v, path));
            ferry_tensor *t;
            assert_null(ferry_tensor_read_file(path, &t));
            const ferry_tensor_view *r = ferry_tensor_get_view(t);
            assert_int_equal(r->dtype, types[k]);
            assert_int_equal(r->rank, rank);
            for (int d = 0; d < rank; d++) assert_int_equal(r->dims[d], v.dims[d]);
            assert_memory_equal(r->data, data,
                                (size_t)ferry_tensor_view_count(&v) * ferry_dtype_size(types[k]));
            ferry_tensor_free(t);
        }
    }
}

/* Builds a version 1.0 .npy header for DICT into BUF; returns its length. */
static size_t npy_header(uint8_t *buf, const char *dict)
{
    size_t n = strlen(dict);
    size_t total = 10 + n + 1;
    size_t pad = (64 - total % 64) % 64;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)((n + pad + 1) & 0xff);
    buf[9] = (uint8_t)((n + pad + 1) >> 8);
    memcpy(buf + 10, dict, n);
    memset(buf + 10 + n, ' ', pad);
    buf[10 + n + pad] = '\n';
    return total + pad;
}

static void npy_rejects_malformed_files(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t h = npy_header(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }");
    memset(buf + h, 0, 8);
    write_file("ok.npy", buf, h + 8);
    ferry_tensor *t;
    ferry_status *st = read_named("ok.npy", &t);
    assert_null(st);
    assert_int_equal(ferry_tensor_get_view(t)->dims[0], 2);
    ferry_tensor_free(t);
    write_file("short.npy", buf, h + 4);
    st = read_named("short.npy", &t);
    assert_non_null(st);
    assert_non_null(strstr(ferry_status_message(st), "need 8"));
    ferry_status_free(st);
    write_file("hdr.npy", buf, 20);
    st = read_named("hdr.npy", &t);
    assert_non_null(strstr(ferry_status_message(st), "not a valid .npy"));
    ferry_status_free(st);
    write_file("magic.npy", "hello", 5);
    st = read_named("magic.npy", &t);
    assert_non_null(st);
    ferry_status_free(st);
    h = npy_header(buf, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }");
    write_file("f.npy", buf, h + 8);
    st = read_named("f.npy", &t);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_UNSUPPORTED);
    ferry_status_free(st);
    h = npy_header(buf, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }");
    write_file("be.npy", buf, h + 8);
    st = read_named("be.npy", &t);
    assert_non_null(strstr(ferry_status_message(st), "big-endian"));
    ferry_status_free(st);
    h = npy_header(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }");
    write_file("neg.npy", buf, h);
    st = read_named("neg.npy", &t);
    assert_non_null(st);
    ferry_status_free(st);
    st = read_named("missing.npy", &t);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_NOT_FOUND);
    ferry_status_free(st);
    st = read_named("x.txt", &t);
    assert_non_null(strstr(ferry_status_message(st), "use .npy or .pb"));
    ferry_status_free(st);
}

static void pb_tensor_reads_raw_and_typed_fields(void **state)
{
    (void)state;
    pbw t = {0};
    pbw_int(&t, 1, 3);
    pbw_int(&t, 2, 7); /* int64 */
    pbw_str(&t, 8, "idx");
    pbw p = {0};
    pbw_varint(&p, 5);
    pbw_varint(&p, (uint64_t)-1);
    pbw_varint(&p, 1ull << 40);
    pbw_len(&t, 7, p.d, p.n);
    free(p.d);
    write_file("t.pb", t.d, t.n);
    ferry_tensor *tensor;
    assert_null(read_named("t.pb", &tensor));
    assert_string_equal(ferry_tensor_name(tensor), "idx");
    const ferry_tensor_view *v = ferry_tensor_get_view(tensor);
    assert_int_equal(v->dtype, FERRY_DTYPE_INT64);
    const int64_t want[3] = {5, -1, (int64_t)1 << 40};
    assert_memory_equal(v->data, want, sizeof(want));
    ferry_tensor_free(tensor);
    /* Cut anywhere inside: an error, never a crash. */
    for (size_t cut = 1; cut < t.n; cut++) {
        write_file("cut.pb", t.d, cut);
        ferry_status *st = read_named("cut.pb", &tensor);
        if (!st) ferry_tensor_free(tensor);
        ferry_status_free(st);
    }
    free(t.d);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *names[] = {"t.npy", "ok.npy", "short.npy", "hdr.npy", "magic.npy",
                           "f.npy", "be.npy", "neg.npy",   "t.pb",    "cut.pb"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(npy_round_trip_every_dtype),
        cmocka_unit_test(npy_rejects_malformed_files),
        cmocka_unit_test(pb_tensor_reads_raw_and_typed_fields),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
