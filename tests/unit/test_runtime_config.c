/* test_runtime_config.c - config.pbtxt reading (Triton's text format and schema), configs
 * derived from models and checked against them, and the name and version checks that guard
 * the repository. */
#include "../runtime/rt_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static ferry_model *open_model(const char *file)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", tu_models_dir(), file);
    ferry_model *m = NULL;
    ferry_status *st = ferry_model_open_file(path, NULL, &m);
    if (st) fprintf(stderr, "%s: %s\n", path, ferry_status_message(st));
    assert_null(st);
    return m;
}

static rt_model_config parse_ok(const char *text)
{
    rt_model_config cfg;
    ferry_status *st = rt_config_parse(text, strlen(text), "m/config.pbtxt", &cfg);
    if (st) fprintf(stderr, "unexpected: %s\n", ferry_status_message(st));
    assert_null(st);
    return cfg;
}

/* The example from PROTOCOL.md §3.4 (minus what Ferry refuses), as Triton users write it. */
static const char *const triton_example =
    "# <repo>/densenet_onnx/config.pbtxt\n"
    "name: \"densenet_onnx\"\n"
    "backend: \"onnxruntime\"            # or: platform: \"onnxruntime_onnx\"\n"
    "max_batch_size: 8                 # request shape = [batch<=8, 3, 224, 224]\n"
    "version_policy: { latest: { num_versions: 2 } }\n"
    "\n"
    "input [\n"
    "  {\n"
    "    name: \"data_0\"\n"
    "    data_type: TYPE_FP32\n"
    "    format: FORMAT_NCHW\n"
    "    dims: [ 3, 224, 224 ]\n"
    "  },\n"
    "  {\n"
    "    name: \"mask\"\n"
    "    data_type: TYPE_BOOL\n"
    "    dims: [ -1 ]\n"
    "  }\n"
    "]\n"
    "output [\n"
    "  {\n"
    "    name: \"fc6_1\"\n"
    "    data_type: TYPE_FP32\n"
    "    dims: [ 1000 ]\n"
    "    label_filename: \"densenet_labels.txt\"\n"
    "  }\n"
    "]\n"
    "\n"
    "instance_group [ { count: 2, kind: KIND_CPU } ]\n"
    "\n"
    "dynamic_batching {\n"
    "  preferred_batch_size: [ 4, 8 ]\n"
    "  max_queue_delay_microseconds: 100\n"
    "  priority_levels: 2\n"
    "  default_priority_level: 2\n"
    "  default_queue_policy { timeout_action: REJECT  max_queue_size: 64  "
    "allow_timeout_override: true }\n"
    "  priority_queue_policy { key: 1  value: { max_queue_size: 16 } }\n"
    "}\n"
    "\n"
    "parameters { key: \"intra_op_thread_count\" value: { string_value: \"1\" } }\n"
    "\n"
    "model_warmup [\n"
    "  {\n"
    "    name: \"zeros\"\n"
    "    batch_size: 1\n"
    "    inputs { key: \"data_0\" value: { data_type: TYPE_FP32  dims: [ 3, 224, 224 ]  "
    "zero_data: true } }\n"
    "  }\n"
    "]\n"
    "\n"
    "response_cache { enable: true }\n"
    "optimization { graph { level: 1 } }\n";

static void test_triton_example(void **state)
{
    (void)state;
    rt_model_config c = parse_ok(triton_example);
    assert_string_equal(c.name, "densenet_onnx");
    assert_string_equal(c.backend, "onnxruntime");
    assert_int_equal(c.max_batch_size, 8);
    assert_int_equal(c.version_policy.kind, RT_POLICY_LATEST);
    assert_int_equal(c.version_policy.num_versions, 2);
    assert_int_equal(c.input_count, 2);
    assert_string_equal(c.inputs[0].name, "data_0");
    assert_int_equal(c.inputs[0].dtype, FERRY_DTYPE_FLOAT);
    assert_int_equal(c.inputs[0].format, RT_FORMAT_NCHW);
    assert_int_equal(c.inputs[0].rank, 3);
    assert_int_equal(c.inputs[0].dims[2], 224);
    assert_int_equal(c.inputs[1].dtype, FERRY_DTYPE_BOOL);
    assert_int_equal(c.inputs[1].dims[0], -1);
    assert_int_equal(c.output_count, 1);
    assert_string_equal(c.outputs[0].label_filename, "densenet_labels.txt");
    assert_int_equal(c.instance_group_count, 1);
    assert_int_equal(c.instance_groups[0].count, 2);
    assert_int_equal(c.instance_groups[0].kind, RT_KIND_CPU);
    assert_true(c.has_dynamic_batching);
    assert_int_equal(c.dynamic_batching.preferred_count, 2);
    assert_int_equal(c.dynamic_batching.preferred_batch_sizes[1], 8);
    assert_int_equal(c.dynamic_batching.max_queue_delay_us, 100);
    assert_int_equal(c.dynamic_batching.max_queue_size, 64);
    assert_true(c.dynamic_batching.allow_timeout_override);
    assert_int_equal(c.parameter_count, 1);
    assert_string_equal(rt_config_parameter(&c, "intra_op_thread_count"), "1");
    assert_null(rt_config_parameter(&c, "nope"));
    assert_string_equal(c.default_model_filename, "model.onnx");
    assert_int_equal(rt_config_input_index(&c, "mask"), 1);
    assert_int_equal(rt_config_output_index(&c, "fc6_1"), 0);
    assert_int_equal(rt_config_output_index(&c, "x"), -1);
    rt_config_free(&c);
    rt_config_free(&c); /* zeroed: a second free is harmless */
}

/* The text format's variations: both repeated forms, <> messages, separators, comments in odd
 * places, number bases, adjacent and escaped strings. */
static void test_syntax_forms(void **state)
{
    (void)state;
    const char *text =
        "name: 'm'  # single quotes\n"
        "platform: \"onnx\" \"runtime_onnx\";\n" /* adjacent strings concatenate */
        "max_batch_size: 0x10,\n"
        "version_policy < specific < versions: 1 versions: [3, 05] > >\n"
        "input { name: \"a\" data_type: TYPE_FP32 dims: 2 dims: - # comment\n"
        "  1 }\n"
        "input: { name: \"b\", data_type: 11, dims: [2, 3], reshape: { shape: [ ] } }\n"
        "output [ ]\n"
        "output { name: \"y\\x41\\101\\u00e9\" data_type: TYPE_INT64 dims: [1] }\n"
        "instance_group { count: 3 } instance_group { kind: KIND_AUTO }\n"
        "dynamic_batching { }\n"
        "parameters [ { key: \"k\" value { string_value: \"1\" } },\n"
        "             { key: \"k\" value { string_value: \"2\" } } ]\n"
        "parameters { key: \"ferry.queue_capacity\" value { string_value: \"7\" } }\n"
        "parameters { key: \"ferry.timeout_microseconds\" value { string_value: \"2500\" } }\n"
        "model_transaction_policy { decoupled: False }\n";
    rt_model_config c = parse_ok(text);
    assert_string_equal(c.name, "m");
    assert_string_equal(c.platform, "onnxruntime_onnx");
    assert_int_equal(c.max_batch_size, 16);
    assert_int_equal(c.version_policy.kind, RT_POLICY_SPECIFIC);
    assert_int_equal(c.version_policy.version_count, 3);
    assert_int_equal(c.version_policy.versions[2], 5); /* octal 05 */
    assert_int_equal(c.input_count, 2);
    assert_int_equal(c.inputs[0].rank, 2);
    assert_int_equal(c.inputs[0].dims[0], 2);
    assert_int_equal(c.inputs[0].dims[1], -1);
    assert_int_equal(c.inputs[1].dtype, FERRY_DTYPE_FLOAT); /* enum by number */
    assert_true(c.inputs[1].has_reshape);
    assert_int_equal(c.inputs[1].reshape_rank, 0);
    assert_int_equal(c.output_count, 1);
    assert_string_equal(c.outputs[0].name, "yAA\xc3\xa9");
    assert_int_equal(c.outputs[0].dtype, FERRY_DTYPE_INT64);
    assert_int_equal(c.instance_group_count, 2);
    assert_int_equal(c.instance_groups[0].count, 3);
    assert_true(c.has_dynamic_batching);
    assert_int_equal(c.parameter_count, 3);
    assert_string_equal(rt_config_parameter(&c, "k"), "2"); /* the last one wins */
    assert_int_equal(c.queue_capacity, 7);
    assert_int_equal(c.timeout_us, 2500);
    rt_config_free(&c);

    /* An empty file is a valid (all defaults) config. */
    c = parse_ok("# nothing but a comment");
    assert_int_equal(c.version_policy.kind, RT_POLICY_LATEST);
    assert_int_equal(c.version_policy.num_versions, 1);
    rt_config_free(&c);
    c = parse_ok("version_policy: { all { } }");
    assert_int_equal(c.version_policy.kind, RT_POLICY_ALL);
    rt_config_free(&c);
}

typedef struct bad_case {
    const char *text;
    ferry_code code;
    const char *message; /* a substring of the error */
} bad_case;

static void test_errors(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"name: \"m\"\nfoo: 1\n", FERRY_ERR_INVALID_MODEL,
         "m/config.pbtxt:2: field 'foo': unknown field of ModelConfig"},
        {"input {\n name: \"x\"\n colour: 1 }", FERRY_ERR_INVALID_MODEL,
         ":3: field 'colour': unknown field of input"},
        {"max_batch_size: 1\n\nmax_batch_size: 2", FERRY_ERR_INVALID_MODEL,
         ":3: field 'max_batch_size': given more than once (first at line 1)"},
        {"input { name: \"x\"\n data_type: TYPE_FP33 dims: [1] }", FERRY_ERR_INVALID_MODEL,
         ":2: field 'data_type': unknown value 'TYPE_FP33'"},
        {"input { name: \"x\" data_type: TYPE_FP32\n dims: [1, abc] }", FERRY_ERR_INVALID_MODEL,
         ":2: field 'dims': expected an integer, got 'abc'"},
        {"input { name: \"x\" data_type: TYPE_FP32 dims: [1, 2.5] }", FERRY_ERR_INVALID_MODEL,
         "field 'dims': expected an integer, got '2.5'"},
        {"version_policy {\n latest { num_versions: 1 }\n all { } }", FERRY_ERR_INVALID_MODEL,
         ":3: field 'all': conflicts with 'latest' at line 2"},
        {"max_batch_size: -1", FERRY_ERR_INVALID_MODEL,
         "field 'max_batch_size': must be between 0 and"},
        {"max_batch_size: 99999999999", FERRY_ERR_INVALID_MODEL,
         "field 'max_batch_size': integer out of range"},
        {"max_batch_size: 1e", FERRY_ERR_INVALID_MODEL, "expected an integer, got '1e'"},
        {"max_batch_size: true", FERRY_ERR_INVALID_MODEL, "expected an integer, got 'true'"},
        {"name: 5", FERRY_ERR_INVALID_MODEL, "field 'name': expected a quoted string"},
        {"name: \"abc\n\"", FERRY_ERR_INVALID_MODEL, ":1: unterminated string"},
        {"name: \"a\\qb\"", FERRY_ERR_INVALID_MODEL, "invalid escape sequence"},
        {"name: \"a\\000b\"", FERRY_ERR_INVALID_MODEL, "may not contain NUL"},
        {"input {\n name: \"x\"\n", FERRY_ERR_INVALID_MODEL, ":3: field 'input': missing '}'"},
        {"input { dims: [1, 2\n", FERRY_ERR_INVALID_MODEL, "field 'dims': expected ',' or ']'"},
        {"input { dims [1, 2] }", FERRY_ERR_INVALID_MODEL,
         "field 'dims': expected ':' before a list of values"},
        {"name \"m\"", FERRY_ERR_INVALID_MODEL, "field 'name': expected ':' or '{'"},
        {"}", FERRY_ERR_INVALID_MODEL, ":1: unexpected '}'"},
        {"name: \"m\" @", FERRY_ERR_INVALID_MODEL, ":1: unexpected character '@'"},
        {"[ext]: 1", FERRY_ERR_INVALID_MODEL, "extension and Any fields"},
        {"input: 3", FERRY_ERR_INVALID_MODEL, "field 'input': expected a message"},
        {"name { }", FERRY_ERR_INVALID_MODEL, "field 'name': expected a value, got a message"},
        {"input { name: \"x\" dims: [1] }", FERRY_ERR_INVALID_MODEL,
         "field 'input': input 'x' needs a 'data_type'"},
        {"input { name: \"x\" data_type: TYPE_FP32 }", FERRY_ERR_INVALID_MODEL,
         "'dims' is required"},
        {"input { data_type: TYPE_FP32 dims: 1 }", FERRY_ERR_INVALID_MODEL,
         "every input needs a 'name'"},
        {"input { name: \"x\" data_type: TYPE_FP32 dims: [0] }", FERRY_ERR_INVALID_MODEL,
         "field 'dims': dimension 0 is invalid"},
        {"input { name: \"x\" data_type: TYPE_FP32 dims: [1,1,1,1,1,1,1,1,1] }",
         FERRY_ERR_INVALID_MODEL, "more than 8 dimensions"},
        {"input { name: \"x\" data_type: TYPE_FP32 dims: 1 }\n"
         "input { name: \"x\" data_type: TYPE_FP32 dims: 1 }",
         FERRY_ERR_INVALID_MODEL, ":2: field 'input': input 'x' is listed twice"},
        {"input { name: \"s\" data_type: TYPE_STRING dims: 1 }", FERRY_ERR_UNSUPPORTED,
         "TYPE_STRING"},
        {"input { name: \"s\" data_type: TYPE_FP32 dims: 1 optional: true }", FERRY_ERR_UNSUPPORTED,
         "optional inputs"},
        {"sequence_batching { }", FERRY_ERR_UNSUPPORTED, "field 'sequence_batching'"},
        {"dynamic_batching { }\nsequence_batching { }", FERRY_ERR_UNSUPPORTED, "sequence batching"},
        {"instance_group [ { count: 1 kind: KIND_GPU } ]", FERRY_ERR_UNSUPPORTED,
         "field 'kind': KIND_GPU is not supported"},
        {"instance_group [ { count: 0 } ]", FERRY_ERR_INVALID_MODEL, "count must be between 1"},
        {"instance_group { gpus: [0] }", FERRY_ERR_UNSUPPORTED, "field 'gpus'"},
        {"platform: \"tensorrt_plan\"", FERRY_ERR_UNSUPPORTED,
         "platform 'tensorrt_plan' is not supported"},
        {"backend: \"python\"", FERRY_ERR_UNSUPPORTED, "backend 'python'"},
        {"ensemble_scheduling { step [ ] }", FERRY_ERR_UNSUPPORTED, "ensembles"},
        {"model_transaction_policy { decoupled: true }", FERRY_ERR_UNSUPPORTED, "decoupled"},
        {"model_operations { op_library_filename: \"x.so\" }", FERRY_ERR_UNSUPPORTED,
         "custom operator libraries"},
        {"max_batch_size: 4\ndynamic_batching { preferred_batch_size: [2, 8] }",
         FERRY_ERR_INVALID_MODEL, "preferred_batch_size 8 is above max_batch_size 4"},
        {"dynamic_batching { default_queue_policy { timeout_action: DELAY } }",
         FERRY_ERR_UNSUPPORTED, "DELAY"},
        {"version_policy { latest { num_versions: 0 } }", FERRY_ERR_INVALID_MODEL,
         "num_versions must be between 1"},
        {"version_policy { specific { } }", FERRY_ERR_INVALID_MODEL, "lists no versions"},
        {"default_model_filename: \"../../etc/passwd\"", FERRY_ERR_INVALID_MODEL,
         "is not a plain file name"},
        {"parameters { key: \"ferry.queue_capacity\" value { string_value: \"lots\" } }",
         FERRY_ERR_INVALID_MODEL, "ferry.queue_capacity must be an integer"},
        {"parameters { key: \"ferry.colour\" value { string_value: \"1\" } }",
         FERRY_ERR_INVALID_MODEL, "unknown Ferry parameter 'ferry.colour'"},
        {"parameters { value { string_value: \"1\" } }", FERRY_ERR_INVALID_MODEL,
         "an entry without a 'key'"},
        {"max_batch_size: - x", FERRY_ERR_INVALID_MODEL, "expected an integer, got '-x'"},
        {"a { a { a { a { a { a { a { a { a { a { a { a { a { a { a { a { a { a { a { a { a { "
         "a { a { a { a { a { a { a { a { a { a { a { a { a {",
         FERRY_ERR_INVALID_MODEL, "nested too deeply"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rt_model_config c;
        ferry_status *st =
            rt_config_parse(cases[i].text, strlen(cases[i].text), "m/config.pbtxt", &c);
        const char *msg = ferry_status_message(st);
        if (!st || ferry_status_code(st) != cases[i].code || !strstr(msg, cases[i].message) ||
            strncmp(msg, "m/config.pbtxt:", 15))
            fail_msg("case %zu (%s): got [%s] %s, want [%s] ...%s...", i, cases[i].text,
                     ferry_code_name(ferry_status_code(st)), msg, ferry_code_name(cases[i].code),
                     cases[i].message);
        assert_null(c.mem_);
        ferry_status_free(st);
    }
}

/* Limits on what the parser accepts: size, NUL bytes. */
static void test_limits(void **state)
{
    (void)state;
    size_t big = RT_MAX_CONFIG_BYTES + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, ' ', big);
    rt_model_config c;
    ferry_status *st = rt_config_parse(text, big, "big.pbtxt", &c);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_MODEL);
    assert_non_null(strstr(ferry_status_message(st), "larger than"));
    ferry_status_free(st);
    /* Many repeated fields are fine up to the field limit. */
    size_t n = 0;
    n += (size_t)snprintf(text + n, big - n, "input { name: \"x\" data_type: TYPE_FP32 ");
    for (int i = 0; i < 70000 && n + 16 < big; i++)
        n += (size_t)snprintf(text + n, big - n, "dims: 1 ");
    n += (size_t)snprintf(text + n, big - n, "}");
    st = rt_config_parse(text, n, "many.pbtxt", &c);
    assert_non_null(st);
    assert_non_null(strstr(ferry_status_message(st), "too many fields"));
    ferry_status_free(st);
    st = rt_config_parse("name: \"a\"\0x", 11, "nul.pbtxt", &c);
    assert_non_null(strstr(ferry_status_message(st), "NUL"));
    ferry_status_free(st);
    free(text);
}

static void test_derive(void **state)
{
    (void)state;
    ferry_model *m = open_model("scale2.onnx");
    rt_model_config c;
    assert_null(rt_config_derive(m, "scale", 4, &c));
    assert_true(c.derived);
    assert_string_equal(c.name, "scale");
    assert_string_equal(c.platform, "onnxruntime_onnx");
    assert_int_equal(c.max_batch_size, 4);
    assert_true(c.has_dynamic_batching);
    assert_int_equal(c.input_count, 1);
    assert_string_equal(c.inputs[0].name, "x");
    assert_int_equal(c.inputs[0].rank, 1);
    assert_int_equal(c.inputs[0].dims[0], 4);
    assert_int_equal(c.outputs[0].dims[0], 4);
    assert_null(rt_config_bind(&c, m, 2, 16));
    assert_int_equal(c.instance_count, 2);
    assert_int_equal(c.queue_capacity, 16);
    rt_config_free(&c);
    /* Batching turned off by the runtime option. */
    assert_null(rt_config_derive(m, "scale", -1, &c));
    assert_int_equal(c.max_batch_size, 0);
    assert_int_equal(c.inputs[0].rank, 2);
    assert_int_equal(c.inputs[0].dims[0], -1);
    rt_config_free(&c);
    ferry_model_close(m);

    m = open_model("fixed.onnx");
    assert_null(rt_config_derive(m, "fixed", 4, &c));
    assert_int_equal(c.max_batch_size, 0); /* no symbolic leading dimension */
    assert_false(c.has_dynamic_batching);
    assert_int_equal(c.inputs[0].rank, 2);
    assert_int_equal(c.inputs[0].dims[0], 1);
    rt_config_free(&c);
    ferry_model_close(m);
}

static ferry_status *bind_text(const char *model_file, const char *text, rt_model_config *c)
{
    ferry_model *m = open_model(model_file);
    *c = parse_ok(text);
    ferry_status *st = rt_config_bind(c, m, 1, 8);
    ferry_model_close(m);
    return st;
}

static void expect_bind_error(const char *model_file, const char *text, const char *message)
{
    rt_model_config c;
    ferry_status *st = bind_text(model_file, text, &c);
    if (!st || !strstr(ferry_status_message(st), message))
        fail_msg("bind %s: got '%s', want ...%s...", text, ferry_status_message(st), message);
    assert_int_equal(ferry_status_code(st), FERRY_ERR_INVALID_MODEL);
    ferry_status_free(st);
    rt_config_free(&c);
}

static void test_bind(void **state)
{
    (void)state;
    rt_model_config c;
    /* Inputs come back in the model's order whatever the file's order; outputs may be a
     * subset. */
    assert_null(bind_text("two_io.onnx",
                          "max_batch_size: 8\n"
                          "input [ { name: \"b\" data_type: TYPE_FP32 dims: [3] },\n"
                          "        { name: \"a\" data_type: TYPE_FP32 dims: [-1] } ]\n"
                          "output { name: \"diff\" data_type: TYPE_FP32 dims: [3] }\n"
                          "instance_group [ { count: 2 }, { count: 3 } ]\n"
                          "dynamic_batching { default_queue_policy { max_queue_size: 5 "
                          "default_timeout_microseconds: 70 } }",
                          &c));
    assert_string_equal(c.inputs[0].name, "a");
    assert_int_equal(c.inputs[0].engine_index, 0);
    assert_string_equal(c.inputs[1].name, "b");
    assert_int_equal(c.output_count, 1);
    assert_int_equal(c.outputs[0].engine_index, 1);
    assert_int_equal(c.instance_count, 5);
    assert_int_equal(c.queue_capacity, 5);
    assert_int_equal(c.timeout_us, 70);
    rt_config_free(&c);

    /* Auto-complete: a config with only batching settings gets its tensors from the model. */
    assert_null(bind_text("scale2.onnx", "max_batch_size: 2 dynamic_batching { }", &c));
    assert_int_equal(c.input_count, 1);
    assert_int_equal(c.inputs[0].rank, 1);
    assert_int_equal(c.inputs[0].dims[0], 4);
    assert_int_equal(c.output_count, 1);
    rt_config_free(&c);

    /* A reshape that holds the same elements. */
    assert_null(bind_text("scale2.onnx",
                          "max_batch_size: 2\n"
                          "input { name: \"x\" data_type: TYPE_FP32 dims: [2, 2] "
                          "reshape { shape: [4] } }\n"
                          "output { name: \"y\" data_type: TYPE_FP32 dims: [4, 1] "
                          "reshape { shape: [4] } }",
                          &c));
    rt_config_free(&c);

    expect_bind_error("scale2.onnx",
                      "max_batch_size: 2 input { name: \"x\" data_type: TYPE_INT64 dims: [4] }",
                      "input 'x': config data_type TYPE_INT64 does not match the model's "
                      "TYPE_FP32");
    expect_bind_error("scale2.onnx",
                      "max_batch_size: 2 input { name: \"x\" data_type: TYPE_FP32 dims: [5] }",
                      "input 'x': the config gives the model shape [-1,5], the model has [-1,4]");
    expect_bind_error("scale2.onnx", "input { name: \"x\" data_type: TYPE_FP32 dims: [4] }",
                      "the config gives the model shape [4], the model has [-1,4]");
    expect_bind_error("scale2.onnx",
                      "max_batch_size: 2 input { name: \"z\" data_type: TYPE_FP32 dims: [4] }",
                      "config input 'z' is not an input of the model (it has 'x')");
    expect_bind_error("scale2.onnx",
                      "max_batch_size: 2 output { name: \"q\" data_type: TYPE_FP32 dims: [4] }",
                      "config output 'q' is not an output of the model");
    expect_bind_error("two_io.onnx",
                      "max_batch_size: 2 input { name: \"a\" data_type: TYPE_FP32 dims: [3] }",
                      "model input 'b' is missing from the config");
    expect_bind_error("fixed.onnx", "max_batch_size: 4",
                      "max_batch_size 4 needs a variable first dimension");
    expect_bind_error("fixed.onnx",
                      "max_batch_size: 4 input { name: \"x\" data_type: TYPE_FP32 dims: [4] }",
                      "input 'x': max_batch_size 4 needs a variable first dimension");
    expect_bind_error("scale2.onnx",
                      "max_batch_size: 2 input { name: \"x\" data_type: TYPE_FP32 dims: [3] "
                      "reshape { shape: [4] } }",
                      "reshape [4] holds 4 elements, dims [3] hold 3");
}

static void test_dtype_names(void **state)
{
    (void)state;
    assert_string_equal(rt_dtype_config_name(FERRY_DTYPE_FLOAT), "TYPE_FP32");
    assert_string_equal(rt_dtype_config_name(FERRY_DTYPE_BOOL), "TYPE_BOOL");
    assert_string_equal(rt_dtype_config_name(FERRY_DTYPE_COMPLEX64), "TYPE_INVALID");
    assert_string_equal(rt_dtype_wire_name(FERRY_DTYPE_FLOAT), "FP32");
    assert_string_equal(rt_dtype_wire_name(FERRY_DTYPE_DOUBLE), "FP64");
    assert_string_equal(rt_dtype_wire_name(FERRY_DTYPE_BFLOAT16), "BF16");
    assert_string_equal(rt_dtype_wire_name(FERRY_DTYPE_STRING), "BYTES");
    assert_null(rt_dtype_wire_name(FERRY_DTYPE_COMPLEX128));
    assert_int_equal(rt_dtype_from_wire_name("INT64"), FERRY_DTYPE_INT64);
    assert_int_equal(rt_dtype_from_wire_name("BYTES"), FERRY_DTYPE_STRING);
    assert_int_equal(rt_dtype_from_wire_name("STRING"), FERRY_DTYPE_UNDEFINED);
    assert_int_equal(rt_dtype_from_wire_name("fp32"), FERRY_DTYPE_UNDEFINED);
    assert_int_equal(rt_dtype_from_wire_name(NULL), FERRY_DTYPE_UNDEFINED);
    for (int d = 1; d < FERRY_DTYPE_COUNT; d++) {
        const char *w = rt_dtype_wire_name((ferry_dtype)d);
        if (w) assert_int_equal(rt_dtype_from_wire_name(w), d);
    }
}

static void test_names_and_versions(void **state)
{
    (void)state;
    static const char *const good[] = {"a", "resnet50", "my-model_v2.onnx", "A.B-C_D", "0"};
    static const char *const bad[] = {"",    ".",      "..",  ".hidden", "../x",
                                      "a/b", "a\\b",   "a b", "x\ny",    "caf\xc3\xa9",
                                      "a:b", "%2e%2e", "/abs"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) assert_true(rt_name_valid(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (rt_name_valid(bad[i])) fail_msg("'%s' accepted", bad[i]);
    assert_false(rt_name_valid(NULL));
    char longname[RT_MAX_NAME + 2];
    memset(longname, 'a', sizeof(longname));
    longname[RT_MAX_NAME] = 0;
    assert_true(rt_name_valid(longname));
    longname[RT_MAX_NAME] = 'a';
    longname[RT_MAX_NAME + 1] = 0;
    assert_false(rt_name_valid(longname));

    int64_t v = 0;
    assert_true(rt_version_parse("1", &v));
    assert_int_equal(v, 1);
    assert_true(rt_version_parse("123456789012345678", &v));
    assert_int_equal(v, 123456789012345678LL);
    static const char *const badv[] = {
        "", "0", "01", "-1", "+1", "1a", " 1", "1 ", "1234567890123456789", "../1", "0x1"};
    for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++)
        if (rt_version_parse(badv[i], &v)) fail_msg("version '%s' accepted", badv[i]);
    assert_false(rt_version_parse(NULL, &v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_triton_example), cmocka_unit_test(test_syntax_forms),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_limits),
        cmocka_unit_test(test_derive),         cmocka_unit_test(test_bind),
        cmocka_unit_test(test_dtype_names),    cmocka_unit_test(test_names_and_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
