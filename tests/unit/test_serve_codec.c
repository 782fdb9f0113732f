/* test_serve_codec.c - unit tests of src/serve's codecs: JSON and binary request decoding,
 * response encoding, the arena and buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/dtype.h"
#include "serve/buf.h"
#include "serve/codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A model with one batching FP32 input [-1,4] and two outputs. */
static const srv_tensor_spec mlp_in[] = {{"x", FERRY_DTYPE_FLOAT, 2, {-1, 4}, false}};
static const srv_tensor_spec mlp_out[] = {{"y", FERRY_DTYPE_FLOAT, 2, {-1, 2}, false},
                                          {"z", FERRY_DTYPE_INT64, 1, {-1}, false}};
static const srv_model_sig mlp = {mlp_in, 1, mlp_out, 2, 8};

typedef struct fixture {
    srv_arena arena;
    char inline_buf[512];
    srv_infer_req req;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    srv_arena_init(&f->arena, f->inline_buf, sizeof(f->inline_buf), 1 << 26);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    srv_arena_release(&f->arena);
    free(f);
    return 0;
}

static ferry_status *decode(fixture *f, const srv_model_sig *sig, const char *json)
{
    return srv_decode_infer(sig, json, strlen(json), -1, &f->arena, &f->req);
}

/* Decodes JSON, expecting failure with CODE and NEEDLE in the message. */
static void expect_error(fixture *f, const srv_model_sig *sig, const char *json, ferry_code code,
                         const char *needle)
{
    ferry_status *st = decode(f, sig, json);
    if (!st) fail_msg("decoded but should have failed: %s", json);
    if (ferry_status_code(st) != code || !strstr(ferry_status_message(st), needle))
        fail_msg("for %s\nexpected %s containing '%s', got %s: %s", json, ferry_code_name(code),
                 needle, ferry_code_name(ferry_status_code(st)), ferry_status_message(st));
    ferry_status_free(st);
}

static void decodes_flat_json(void **state)
{
    fixture *f = *state;
    ferry_status *st =
        decode(f, &mlp,
               "{\"id\":\"r1\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],\"datatype\":\"FP32\","
               "\"data\":[1,2.5,-3e2,0.125, 5,6,7,8]}]}");
    assert_null(st);
    assert_string_equal(f->req.id, "r1");
    assert_int_equal(f->req.n_inputs, 1);
    assert_true(f->req.given[0]);
    const ferry_tensor_view *v = &f->req.inputs[0];
    assert_int_equal(v->dtype, FERRY_DTYPE_FLOAT);
    assert_int_equal(v->rank, 2);
    assert_int_equal(v->dims[0], 2);
    assert_int_equal(v->dims[1], 4);
    const float *d = v->data;
    assert_true(d[0] == 1.0f && d[1] == 2.5f && d[2] == -300.0f && d[3] == 0.125f && d[7] == 8);
    assert_int_equal(f->req.batch, 2);
    /* No "outputs": every output, as JSON. */
    assert_int_equal(f->req.n_outputs, 2);
    assert_int_equal(f->req.outputs[0].index, 0);
    assert_int_equal(f->req.outputs[1].index, 1);
    assert_false(f->req.outputs[0].binary);
    assert_false(f->req.any_binary_output);
}

static void decodes_nested_json_and_any_field_order(void **state)
{
    fixture *f = *state;
    /* data before shape and datatype: decoded once the shape is known. */
    ferry_status *st = decode(
        f, &mlp,
        "{ \"inputs\" : [ { \"data\" : [ [1, 2, 3, 4], [5, 6, 7, 8] ], \"datatype\":\"FP32\","
        " \"shape\": [2, 4], \"name\": \"x\", \"extra\": {\"a\": [null, true]} } ],"
        " \"unknown\": 1 }");
    assert_null(st);
    const float *d = f->req.inputs[0].data;
    for (int i = 0; i < 8; i++) assert_true(d[i] == (float)(i + 1));
}

static void refuses_wrong_nesting_and_counts(void **state)
{
    fixture *f = *state;
    const char *pre =
        "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],\"datatype\":\"FP32\",\"data\":";
    char json[512];
    const char *cases[][2] = {
        {"[1,2,3]}],\"parameters\":{\"pad\":\"............\"}}",
         "has 3 elements but shape [2,4] needs 8"},
        {"[1,2,3]}]}", "shorter than the 8 elements"},
        {"[1,2,3,4,5,6,7,8,9]}]}", "more than the 8 elements"},
        {"[[1,2,3,4],[5,6,7]]}]}", "does not match shape [2,4]"},
        {"[[1,2,3,4],[5,6,7,8],[9,9,9,9]]}]}", "does not match shape"},
        {"[[[1],2,3,4],[5,6,7,8]]}]}", "does not match shape"},
        {"[[1,2,3,4],5,6,7,8]}]}", "does not match shape"},
        {"[1,2,3,4,5,6,7,\"8\"]}]}", "element 7 is not a number"},
        {"[1,2,3,4,5,6,7,NaN]}]}", "element 7 is not a number"},
        {"[1,2,3,4,5,6,7,8,]}]}", "expected a value"},
        {"[1,2,3,4,5,6,7,]}]}", "element 7 is not a number"},
        {"[1,2,3,4,5,6,7,1e39]}]}", "out of range for FP32"},
        {"[1,2,3,4,5,6,7,1e400]}]}", "out of range"},
        {"[1,2,3,4,5,6,7,08]}]}", "expected ',' or ']'"},
        {"[1,2,3,4,5,6,7,.5]}]}", "not a number"},
        {"{}}]}", "'data' must be an array"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(json, sizeof(json), "%s%s", pre, cases[i][0]);
        expect_error(f, &mlp, json, FERRY_ERR_INVALID_ARGUMENT, cases[i][1]);
    }
}

static void refuses_bad_requests_with_clear_messages(void **state)
{
    fixture *f = *state;
    struct {
        const char *json;
        ferry_code code;
        const char *needle;
    } cases[] = {
        {"", FERRY_ERR_INVALID_ARGUMENT, "malformed JSON"},
        {"{", FERRY_ERR_INVALID_ARGUMENT, "malformed JSON"},
        {"[]", FERRY_ERR_INVALID_ARGUMENT, "expected an object"},
        {"{\"inputs\":[]} x", FERRY_ERR_INVALID_ARGUMENT, "unexpected data after"},
        {"{\"inputs\":[],}", FERRY_ERR_INVALID_ARGUMENT, "malformed JSON"},
        {"{}", FERRY_ERR_INVALID_ARGUMENT, "no 'inputs'"},
        {"{\"inputs\":[]}", FERRY_ERR_INVALID_ARGUMENT, "missing input 'x'"},
        {"{\"inputs\":{}}", FERRY_ERR_INVALID_ARGUMENT, "'inputs' must be an array"},
        {"{\"id\":5,\"inputs\":[]}", FERRY_ERR_INVALID_ARGUMENT, "'id' must be a string"},
        {"{\"inputs\":[{\"name\":\"q\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "unknown input 'q'"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"INT64\","
         "\"data\":[1,2,3,4]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "input 'x': expected datatype FP32, got INT64"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,5],\"datatype\":\"FP32\","
         "\"data\":[1,2,3,4,5]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "input 'x': expected shape [-1,4], got [1,5]"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "expected shape [-1,4], got [4]"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[9,4],\"datatype\":\"FP32\",\"data\":[]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "max_batch_size 8"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[0,4],\"datatype\":\"FP32\",\"data\":[]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "batch size must be at least 1"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"BYTES\",\"data\":[\"a\"]}]}",
         FERRY_ERR_UNSUPPORTED, "BYTES tensors are not supported"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP33\",\"data\":[1]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "unknown datatype 'FP33'"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,-4],\"datatype\":\"FP32\",\"data\":[1]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "must not be negative"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,1,1,1,1,1,1],\"datatype\":\"FP32\"}]}",
         FERRY_ERR_INVALID_ARGUMENT, "more than 8 dimensions"},
        {"{\"inputs\":[{\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "input #1: missing 'name'"},
        {"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "input 'x': missing 'shape'"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\"}]}",
         FERRY_ERR_INVALID_ARGUMENT, "exactly one of 'data' and parameter 'binary_data_size'"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]},"
         "{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}",
         FERRY_ERR_INVALID_ARGUMENT, "input 'x' is given twice"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":16}}]}",
         FERRY_ERR_INVALID_ARGUMENT, "needs the Inference-Header-Content-Length header"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
         "\"parameters\":{\"shared_memory_region\":\"r\"}}]}",
         FERRY_ERR_UNSUPPORTED, "shared memory"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}],"
         "\"outputs\":[{\"name\":\"nope\"}]}",
         FERRY_ERR_INVALID_ARGUMENT, "unknown output 'nope'"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}],"
         "\"outputs\":[{\"name\":\"y\"},{\"name\":\"y\"}]}",
         FERRY_ERR_INVALID_ARGUMENT, "requested twice"},
        {"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}],"
         "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"classification\":2}}]}",
         FERRY_ERR_UNSUPPORTED, "classification"},
        {"{\"parameters\":{\"binary_data_output\":1},\"inputs\":[]}", FERRY_ERR_INVALID_ARGUMENT,
         "must be true or false"},
        {"{\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":1}}],\"inputs\":[]}",
         FERRY_ERR_INVALID_ARGUMENT, "parameter 'binary_data' must be true or false"},
        {"{\"parameters\":{\"k\":{\"a\":1}},\"inputs\":[]}", FERRY_ERR_INVALID_ARGUMENT,
         "parameter 'k' must be a string, number or boolean"},
        {"{\"parameters\":{\"timeout\":-1},\"inputs\":[]}", FERRY_ERR_INVALID_ARGUMENT,
         "must not be negative"},
        {"{\"id\":\"a\\qb\",\"inputs\":[]}", FERRY_ERR_INVALID_ARGUMENT, "bad escape"},
        {"{\"id\":\"a\\u12\",\"inputs\":[]}", FERRY_ERR_INVALID_ARGUMENT, "bad \\u escape"},
        {"{\"id\":\"a\nb\",\"inputs\":[]}", FERRY_ERR_INVALID_ARGUMENT, "control character"},
        {"{\"id\":\"abc", FERRY_ERR_INVALID_ARGUMENT, "unterminated string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(f, &mlp, cases[i].json, cases[i].code, cases[i].needle);
}

static void bounds_nesting_depth(void **state)
{
    fixture *f = *state;
    size_t n = 100000;
    char *json = malloc(2 * n + 64);
    size_t k = (size_t)sprintf(json, "{\"x\":");
    for (size_t i = 0; i < n; i++) json[k++] = '[';
    for (size_t i = 0; i < n; i++) json[k++] = ']';
    strcpy(json + k, ",\"inputs\":[]}");
    expect_error(f, &mlp, json, FERRY_ERR_INVALID_ARGUMENT, "nested too deeply");
    free(json);
}

static void refuses_huge_shapes_before_allocating(void **state)
{
    fixture *f = *state;
    static const srv_tensor_spec in[] = {{"x", FERRY_DTYPE_DOUBLE, 3, {-1, -1, -1}, false}};
    static const srv_model_sig sig = {in, 1, NULL, 0, 0};
    expect_error(f, &sig,
                 "{\"inputs\":[{\"name\":\"x\",\"shape\":[100000,100000,100000],"
                 "\"datatype\":\"FP64\",\"data\":[1]}]}",
                 FERRY_ERR_INVALID_ARGUMENT, "too many elements");
    expect_error(f, &sig,
                 "{\"inputs\":[{\"name\":\"x\",\"shape\":[1000,1000,100],"
                 "\"datatype\":\"FP64\",\"data\":[1,2,3]}]}",
                 FERRY_ERR_INVALID_ARGUMENT, "shorter than the 100000000 elements");
    /* Deferred data (before the shape) is bounded the same way. */
    expect_error(f, &sig,
                 "{\"inputs\":[{\"name\":\"x\",\"data\":[1,2,3],\"shape\":[1000,1000,100],"
                 "\"datatype\":\"FP64\"}]}",
                 FERRY_ERR_INVALID_ARGUMENT, "shorter than");
    assert_true(f->arena.used < 1 << 20);
}

/* One signature per datatype: input "x" [-1] of that type. */
static void check_dtype(fixture *f, ferry_dtype dt, const char *wire, const char *data,
                        int64_t count, const void *expect, const char *bad_data,
                        const char *bad_needle)
{
    srv_tensor_spec in = {"x", dt, 1, {-1}, false};
    srv_model_sig sig = {&in, 1, NULL, 0, 0};
    char json[512];
    snprintf(json, sizeof(json),
             "{\"inputs\":[{\"name\":\"x\",\"shape\":[%lld],\"datatype\":\"%s\",\"data\":%s}]}",
             (long long)count, wire, data);
    ferry_status *st = decode(f, &sig, json);
    if (st) fail_msg("%s: %s", wire, ferry_status_message(st));
    assert_int_equal(f->req.inputs[0].dtype, dt);
    assert_memory_equal(f->req.inputs[0].data, expect, (size_t)count * ferry_dtype_size(dt));
    if (bad_data) {
        snprintf(json, sizeof(json),
                 "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"%s\",\"data\":%s}]}",
                 wire, bad_data);
        expect_error(f, &sig, json, FERRY_ERR_INVALID_ARGUMENT, bad_needle);
    }
}

static void decodes_every_json_datatype(void **state)
{
    fixture *f = *state;
    const uint8_t b[] = {1, 0, 1};
    check_dtype(f, FERRY_DTYPE_BOOL, "BOOL", "[true,false,true]", 3, b, "[1]", "true or false");
    const int8_t i8[] = {-128, 0, 127};
    check_dtype(f, FERRY_DTYPE_INT8, "INT8", "[-128,0,127]", 3, i8, "[128]", "out of range");
    const int16_t i16[] = {-32768, 32767};
    check_dtype(f, FERRY_DTYPE_INT16, "INT16", "[-32768,32767]", 2, i16, "[-32769]",
                "out of range");
    const int32_t i32[] = {INT32_MIN, INT32_MAX};
    check_dtype(f, FERRY_DTYPE_INT32, "INT32", "[-2147483648,2147483647]", 2, i32, "[1.5]",
                "not an integer");
    const int64_t i64[] = {INT64_MIN, INT64_MAX, 0};
    check_dtype(f, FERRY_DTYPE_INT64, "INT64", "[-9223372036854775808,9223372036854775807,0]", 3,
                i64, "[9223372036854775808]", "out of range");
    const uint8_t u8[] = {0, 255};
    check_dtype(f, FERRY_DTYPE_UINT8, "UINT8", "[0,255]", 2, u8, "[-1]", "out of range");
    const uint16_t u16[] = {65535};
    check_dtype(f, FERRY_DTYPE_UINT16, "UINT16", "[65535]", 1, u16, "[65536]", "out of range");
    const uint32_t u32[] = {4294967295u};
    check_dtype(f, FERRY_DTYPE_UINT32, "UINT32", "[4294967295]", 1, u32, "[1e3]", "not an integer");
    const uint64_t u64[] = {UINT64_MAX, 0};
    check_dtype(f, FERRY_DTYPE_UINT64, "UINT64", "[18446744073709551615,-0]", 2, u64,
                "[18446744073709551616]", "out of range");
    const float f32[] = {0.1f, -2.5e-3f, 3.4028234e38f, 1e-45f};
    check_dtype(f, FERRY_DTYPE_FLOAT, "FP32", "[0.1,-2.5e-3,3.4028234e38,1e-45]", 4, f32, "[true]",
                "not a number");
    const double f64[] = {0.1, 1.7976931348623157e308, 4.9e-324, -0.0};
    check_dtype(f, FERRY_DTYPE_DOUBLE, "FP64", "[0.1,1.7976931348623157e308,4.9e-324,-0.0]", 4, f64,
                "[1e309]", "out of range");
    const uint16_t f16[] = {core_float_to_half(1.5f), core_float_to_half(-0.1f),
                            core_float_to_half(65504.0f)};
    check_dtype(f, FERRY_DTYPE_FLOAT16, "FP16", "[1.5,-0.1,65504]", 3, f16, "[70000]",
                "out of range for FP16");
    const uint16_t bf[] = {core_float_to_bf16(1.5f), core_float_to_bf16(-3.0f)};
    check_dtype(f, FERRY_DTYPE_BFLOAT16, "BF16", "[1.5,-3]", 2, bf, NULL, NULL);
}

static void numbers_round_trip_exactly(void **state)
{
    fixture *f = *state;
    srv_tensor_spec in[] = {{"f", FERRY_DTYPE_FLOAT, 1, {-1}, false},
                            {"d", FERRY_DTYPE_DOUBLE, 1, {-1}, false}};
    srv_model_sig sig = {in, 2, NULL, 0, 0};
    enum { N = 200 };
    float fv[N];
    double dv[N];
    srv_buf json = {0};
    srv_buf_printf(&json,
                   "{\"inputs\":[{\"name\":\"f\",\"shape\":[%d],\"datatype\":\"FP32\","
                   "\"data\":[",
                   N);
    srand(7);
    for (int i = 0; i < N; i++) {
        double mag = pow(10.0, (rand() % 60) - 30);
        fv[i] = (float)(((double)rand() / RAND_MAX - 0.5) * mag);
        dv[i] = ((double)rand() / RAND_MAX - 0.5) * pow(10.0, (rand() % 600) - 300);
        srv_buf_printf(&json, "%s%.9g", i ? "," : "", fv[i]);
    }
    srv_buf_printf(&json, "]},{\"name\":\"d\",\"shape\":[%d],\"datatype\":\"FP64\",\"data\":[", N);
    for (int i = 0; i < N; i++) srv_buf_printf(&json, "%s%.17g", i ? "," : "", dv[i]);
    srv_buf_puts(&json, "]}]}");
    srv_buf_putc(&json, 0);
    ferry_status *st = decode(f, &sig, json.data);
    if (st) fail_msg("%s", ferry_status_message(st));
    assert_memory_equal(f->req.inputs[0].data, fv, sizeof(fv));
    assert_memory_equal(f->req.inputs[1].data, dv, sizeof(dv));
    srv_buf_free(&json);
}

static void decodes_binary_tensors_in_place(void **state)
{
    fixture *f = *state;
    /* The JSON is padded to 16 bytes so the floats that follow are aligned in the buffer. */
    char hdr[256];
    int hl = snprintf(hdr, sizeof(hdr),
                      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
                      "\"parameters\":{\"binary_data_size\":16}}],\"outputs\":[{\"name\":\"z\","
                      "\"parameters\":{\"binary_data\":true}},{\"name\":\"y\"}]}");
    while (hl % 16) hdr[hl++] = ' ';
    _Alignas(16) char body[512];
    memcpy(body, hdr, (size_t)hl);
    float x[4] = {1, 2, 3, 4};
    memcpy(body + hl, x, sizeof(x));
    ferry_status *st = srv_decode_infer(&mlp, body, (size_t)hl + 16, hl, &f->arena, &f->req);
    if (st) fail_msg("%s", ferry_status_message(st));
    assert_ptr_equal(f->req.inputs[0].data, body + hl); /* no copy */
    assert_int_equal(f->req.n_outputs, 2);
    assert_int_equal(f->req.outputs[0].index, 1);
    assert_true(f->req.outputs[0].binary);
    assert_int_equal(f->req.outputs[1].index, 0);
    assert_false(f->req.outputs[1].binary);
    assert_true(f->req.any_binary_output);

    /* Misaligned: copied, same values. */
    body[0] = ' ';
    memcpy(body + 1, hdr, (size_t)hl);
    memcpy(body + 1 + hl, x, sizeof(x));
    st = srv_decode_infer(&mlp, body, (size_t)hl + 17, hl + 1, &f->arena, &f->req);
    if (st) fail_msg("%s", ferry_status_message(st));
    assert_ptr_not_equal(f->req.inputs[0].data, body + hl + 1);
    assert_memory_equal(f->req.inputs[0].data, x, sizeof(x));

    /* Truncated and left-over bytes. */
    st = srv_decode_infer(&mlp, body, (size_t)hl + 10, hl + 1, &f->arena, &f->req);
    assert_non_null(st);
    assert_non_null(strstr(ferry_status_message(st), "truncated"));
    ferry_status_free(st);
    char extra[512];
    memcpy(extra, body, (size_t)hl + 17);
    memset(extra + hl + 17, 0, 8);
    st = srv_decode_infer(&mlp, extra, (size_t)hl + 25, hl + 1, &f->arena, &f->req);
    assert_non_null(st);
    assert_non_null(strstr(ferry_status_message(st), "8 bytes of binary data"));
    ferry_status_free(st);
    st = srv_decode_infer(&mlp, body, 20, 100, &f->arena, &f->req);
    assert_non_null(st);
    assert_non_null(strstr(ferry_status_message(st), "Inference-Header-Content-Length is 100"));
    ferry_status_free(st);
}

static void binary_output_defaults_follow_request_parameter(void **state)
{
    fixture *f = *state;
    ferry_status *st = decode(
        f, &mlp,
        "{\"outputs\":[{\"name\":\"y\"},{\"name\":\"z\",\"parameters\":{\"binary_data\":false}}],"
        "\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}],"
        "\"parameters\":{\"binary_data_output\":true,\"timeout\":5000,\"custom\":\"v\"}}");
    if (st) fail_msg("%s", ferry_status_message(st));
    assert_true(f->req.outputs[0].binary);
    assert_false(f->req.outputs[1].binary);
    assert_int_equal(f->req.timeout_us, 5000);
}

static void decodes_raw_binary_body(void **state)
{
    fixture *f = *state;
    _Alignas(16) float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const srv_tensor_spec in[] = {{"x", FERRY_DTYPE_FLOAT, 2, {-1, -1}, false}};
    static const srv_model_sig nobatch = {in, 1, mlp_out, 2, 0};
    /* Batching model [-1,4]: batch 1, so 16 bytes exactly. */
    ferry_status *st = srv_decode_infer(&mlp, (char *)x, 16, 0, &f->arena, &f->req);
    if (st) fail_msg("%s", ferry_status_message(st));
    assert_int_equal(f->req.inputs[0].dims[0], 1);
    assert_int_equal(f->req.inputs[0].dims[1], 4);
    assert_true(f->req.outputs[0].binary && f->req.outputs[1].binary);
    st = srv_decode_infer(&mlp, (char *)x, 32, 0, &f->arena, &f->req);
    assert_non_null(st);
    ferry_status_free(st);
    /* Two open dims: cannot deduce. */
    st = srv_decode_infer(&nobatch, (char *)x, 32, 0, &f->arena, &f->req);
    assert_non_null(st);
    assert_non_null(strstr(ferry_status_message(st), "at most one variable dimension"));
    ferry_status_free(st);
}

static void decodes_escaped_strings(void **state)
{
    fixture *f = *state;
    ferry_status *st = decode(
        f, &mlp,
        "{\"id\":\"a\\\"b\\\\c\\/\\u00e9\\ud83d\\ude00\\ud800\",\"inputs\":[{\"name\":\"\\u0078\","
        "\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}");
    if (st) fail_msg("%s", ferry_status_message(st));
    assert_string_equal(f->req.id, "a\"b\\c/\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbd");
}

static void encodes_responses(void **state)
{
    fixture *f = *state;
    ferry_status *st =
        decode(f, &mlp,
               "{\"id\":\"q\\\"1\",\"outputs\":[{\"name\":\"y\"},{\"name\":\"z\",\"parameters\":"
               "{\"binary_data\":true}}],\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],"
               "\"datatype\":\"FP32\","
               "\"data\":[1,2,3,4]}]}");
    assert_null(st);
    float y[2] = {0.1f, NAN};
    int64_t z[1] = {-7};
    ferry_tensor_view outs[2] = {{FERRY_DTYPE_FLOAT, 2, {1, 2}, y}, {FERRY_DTYPE_INT64, 1, {1}, z}};
    srv_buf json = {0};
    st = srv_encode_infer(&mlp, &f->req, "mlp", "3", outs, &json);
    assert_null(st);
    srv_buf_putc(&json, 0);
    assert_string_equal(
        json.data,
        "{\"model_name\":\"mlp\",\"model_version\":\"3\",\"id\":\"q\\\"1\",\"outputs\":["
        "{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[1,2],\"data\":[0.100000001,null]},"
        "{\"name\":\"z\",\"datatype\":\"INT64\",\"shape\":[1],\"parameters\":"
        "{\"binary_data_size\":8}}]}");
    srv_buf_free(&json);

    srv_encode_error(&json, "bad \"x\"\n\xff");
    srv_buf_putc(&json, 0);
    assert_string_equal(json.data, "{\"error\":\"bad \\\"x\\\"\\n\\ufffd\"}");
    srv_buf_free(&json);
}

static void encodes_every_datatype(void **state)
{
    (void)state;
    srv_tensor_spec outs_spec[] = {{"o", FERRY_DTYPE_UNDEFINED, 1, {-1}, false}};
    srv_model_sig sig = {NULL, 0, outs_spec, 1, 0};
    srv_output_req oreq = {0, false};
    srv_infer_req req = {.outputs = &oreq, .n_outputs = 1};
    struct {
        ferry_dtype dt;
        const void *data;
        int64_t n;
        const char *want;
    } cases[] = {
        {FERRY_DTYPE_BOOL, (const uint8_t[]){1, 0}, 2, "[true,false]"},
        {FERRY_DTYPE_INT8, (const int8_t[]){-128, 127}, 2, "[-128,127]"},
        {FERRY_DTYPE_UINT16, (const uint16_t[]){65535}, 1, "[65535]"},
        {FERRY_DTYPE_INT64, (const int64_t[]){INT64_MIN}, 1, "[-9223372036854775808]"},
        {FERRY_DTYPE_UINT64, (const uint64_t[]){UINT64_MAX}, 1, "[18446744073709551615]"},
        {FERRY_DTYPE_FLOAT, (const float[]){3.0f, -0.5f, INFINITY}, 3, "[3.0,-0.5,null]"},
        {FERRY_DTYPE_DOUBLE, (const double[]){0.1, 1e300}, 2, "[0.1,1e+300]"},
        {FERRY_DTYPE_FLOAT16, (const uint16_t[]){0x3e00, 0x2e66}, 2, "[1.5,0.099976]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ferry_tensor_view v = {cases[i].dt, 1, {cases[i].n}, (void *)cases[i].data};
        srv_buf json = {0};
        ferry_status *st = srv_encode_infer(&sig, &req, "m", "1", &v, &json);
        assert_null(st);
        srv_buf_putc(&json, 0);
        char *data = strstr(json.data, "\"data\":");
        assert_non_null(data);
        data += 7;
        char *end = strchr(data, ']');
        end[1] = 0;
        if (strcmp(data, cases[i].want)) fail_msg("%s: got %s", cases[i].want, data);
        srv_buf_free(&json);
    }
}

/* FP32 output text reads back to the same float, and matches printf's "%.9g". */
static void fp32_text_round_trips(void **state)
{
    (void)state;
    enum { N = 20000 };
    float *vals = malloc(N * sizeof(float));
    uint32_t u = 12345;
    for (int i = 0; i < N; i++) {
        do {
            u = u * 1664525u + 1013904223u;
            memcpy(&vals[i], &u, 4);
        } while (!isfinite(vals[i]));
    }
    vals[0] = 1e-45f;
    vals[1] = 3.4028235e38f;
    vals[2] = 0.1f;
    vals[3] = 113638.8125f; /* a tie: printf rounds half to even */
    srv_tensor_spec spec = {"o", FERRY_DTYPE_FLOAT, 1, {-1}, false};
    srv_model_sig sig = {NULL, 0, &spec, 1, 0};
    srv_output_req oreq = {0, false};
    srv_infer_req req = {.outputs = &oreq, .n_outputs = 1};
    ferry_tensor_view v = {FERRY_DTYPE_FLOAT, 1, {N}, vals};
    srv_buf json = {0};
    assert_null(srv_encode_infer(&sig, &req, "m", "1", &v, &json));
    srv_buf_putc(&json, 0);
    char *p = strstr(json.data, "\"data\":[") + 8;
    for (int i = 0; i < N; i++) {
        char *end;
        float got = strtof(p, &end);
        char want[32];
        snprintf(want, sizeof(want), "%.9g", vals[i]);
        if (got != vals[i]) fail_msg("%s does not read back as %s", p, want);
        if (strchr(want, '.') || strchr(want, 'e')) {
            if ((size_t)(end - p) != strlen(want) || memcmp(p, want, strlen(want)))
                fail_msg("wrote %.*s, printf writes %s", (int)(end - p), p, want);
        }
        p = end + 1;
    }
    srv_buf_free(&json);
    free(vals);
}

static void arena_and_buffer_limits(void **state)
{
    (void)state;
    char small[64];
    srv_arena a;
    srv_arena_init(&a, small, sizeof(small), 100000);
    void *p = srv_arena_alloc(&a, 16, 16);
    assert_non_null(p);
    assert_true((uintptr_t)p % 16 == 0);
    assert_non_null(srv_arena_alloc(&a, 50000, 64));
    assert_null(srv_arena_alloc(&a, 60000, 8));   /* over the limit */
    assert_non_null(srv_arena_alloc(&a, 100, 8)); /* still usable */
    srv_arena_release(&a);

    srv_buf b = {.max = 10};
    srv_buf_puts(&b, "12345");
    srv_buf_puts(&b, "67890");
    assert_false(b.failed);
    srv_buf_putc(&b, 'x');
    assert_true(b.failed);
    assert_int_equal(b.len, 10);
    srv_buf_free(&b);
    b.max = 0;
    srv_buf_i64(&b, INT64_MIN);
    srv_buf_putc(&b, 0);
    assert_string_equal(b.data, "-9223372036854775808");
    srv_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(decodes_flat_json, setup, teardown),
        cmocka_unit_test_setup_teardown(decodes_nested_json_and_any_field_order, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_wrong_nesting_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_bad_requests_with_clear_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(bounds_nesting_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_huge_shapes_before_allocating, setup, teardown),
        cmocka_unit_test_setup_teardown(decodes_every_json_datatype, setup, teardown),
        cmocka_unit_test_setup_teardown(numbers_round_trip_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(decodes_binary_tensors_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(binary_output_defaults_follow_request_parameter, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(decodes_raw_binary_body, setup, teardown),
        cmocka_unit_test_setup_teardown(decodes_escaped_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(encodes_responses, setup, teardown),
        cmocka_unit_test(encodes_every_datatype),
        cmocka_unit_test(fp32_text_round_trips),
        cmocka_unit_test(arena_and_buffer_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
