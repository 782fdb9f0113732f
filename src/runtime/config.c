/* config.c - Triton's ModelConfig: read from config.pbtxt, derived from a model, checked
 * against a model.
 *
 * Reading happens in two passes over the text tree of pbtxt.c. The first checks every field
 * against a schema table (Triton's field names, kinds, which are repeated, oneofs), so that any
 * unknown, repeated or mistyped field is reported with its file and line before anything is
 * interpreted. The second pass fills rt_model_config and checks values (ranges, settings Ferry
 * does not implement). All of a config's memory comes from one pool owned by the config.
 */
#include "runtime/rt_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * Data type names
 * ------------------------------------------------------------------------------------- */

/* Triton's DataType enum, by its numbers (TYPE_INVALID = 0 ... TYPE_BF16 = 14). */
static const char *const triton_types[] = {
    "TYPE_INVALID", "TYPE_BOOL",   "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64",
    "TYPE_INT8",    "TYPE_INT16",  "TYPE_INT32", "TYPE_INT64",  "TYPE_FP16",   "TYPE_FP32",
    "TYPE_FP64",    "TYPE_STRING", "TYPE_BF16",  NULL,
};
static const ferry_dtype triton_to_ferry[] = {
    FERRY_DTYPE_UNDEFINED, FERRY_DTYPE_BOOL,   FERRY_DTYPE_UINT8,    FERRY_DTYPE_UINT16,
    FERRY_DTYPE_UINT32,    FERRY_DTYPE_UINT64, FERRY_DTYPE_INT8,     FERRY_DTYPE_INT16,
    FERRY_DTYPE_INT32,     FERRY_DTYPE_INT64,  FERRY_DTYPE_FLOAT16,  FERRY_DTYPE_FLOAT,
    FERRY_DTYPE_DOUBLE,    FERRY_DTYPE_STRING, FERRY_DTYPE_BFLOAT16,
};
_Static_assert(sizeof(triton_to_ferry) / sizeof(triton_to_ferry[0]) ==
                   sizeof(triton_types) / sizeof(triton_types[0]) - 1,
               "the Triton type tables must stay in step");

static int triton_index(ferry_dtype dtype)
{
    for (int i = 1; i < (int)(sizeof(triton_to_ferry) / sizeof(triton_to_ferry[0])); i++)
        if (triton_to_ferry[i] == dtype) return i;
    return 0;
}

const char *rt_dtype_config_name(ferry_dtype dtype)
{
    return triton_types[triton_index(dtype)];
}

const char *rt_dtype_wire_name(ferry_dtype dtype)
{
    int i = triton_index(dtype);
    if (!i) return NULL;
    if (dtype == FERRY_DTYPE_STRING) return "BYTES";
    return triton_types[i] + 5; /* past "TYPE_" */
}

ferry_dtype rt_dtype_from_wire_name(const char *name)
{
    if (!name) return FERRY_DTYPE_UNDEFINED;
    if (!strcmp(name, "BYTES")) return FERRY_DTYPE_STRING;
    for (int i = 1; triton_types[i]; i++)
        if (i != 13 && !strcmp(triton_types[i] + 5, name)) return triton_to_ferry[i];
    return FERRY_DTYPE_UNDEFINED;
}

const char *rt_dims_str(char *buf, size_t size, const int64_t *dims, int rank)
{
    size_t n = 0;
    buf[0] = 0;
    n += (size_t)snprintf(buf + n, size - n, "[");
    for (int i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}

/* ---------------------------------------------------------------------------------------
 * The schema: Triton's ModelConfig fields. Fields marked IGNORED are Triton settings that
 * change nothing for a CPU server; they are checked to be well-formed as far as their kind,
 * then skipped. Fields marked with a reason are refused as unsupported.
 * ------------------------------------------------------------------------------------- */

typedef enum stype {
    S_INT32,
    S_UINT32,
    S_INT64,
    S_UINT64,
    S_BOOL,
    S_STRING,
    S_ENUM,
    S_MSG,
    S_ANY, /* any message (contents unchecked: ignored settings) */
} stype;

typedef struct smsg smsg;
typedef struct sfield {
    const char *name;
    stype type;
    bool repeated;
    const smsg *msg;          /* S_MSG */
    const char *const *enums; /* S_ENUM: names by value, NULL-terminated */
    int oneof;                /* 0 or a group number within the message */
    const char *unsupported;  /* present: refused with this reason */
} sfield;

struct smsg {
    const char *name;
    const sfield *fields;
};

/* The tables read best one field per line, as in model_config.proto. */
/* clang-format off */
#define F(n, t)         {n, t, false, NULL, NULL, 0, NULL}
#define FR(n, t)        {n, t, true, NULL, NULL, 0, NULL}
#define FM(n, m)        {n, S_MSG, false, &m, NULL, 0, NULL}
#define FMR(n, m)       {n, S_MSG, true, &m, NULL, 0, NULL}
#define FE(n, e)        {n, S_ENUM, false, NULL, e, 0, NULL}
#define FO(n, m, g)     {n, S_MSG, false, &m, NULL, g, NULL}
#define IGNORED(n)      {n, S_ANY, true, NULL, NULL, 0, NULL}
#define REFUSED(n, why) {n, S_ANY, true, NULL, NULL, 0, why}
#define END             {NULL, 0, false, NULL, NULL, 0, NULL}

static const char *const formats[] = {"FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW", NULL};
static const char *const kinds[] = {"KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL", NULL};
static const char *const timeout_actions[] = {"REJECT", "DELAY", NULL};

static const sfield f_empty[] = {END};
static const smsg m_empty = {"message", f_empty};

static const sfield f_latest[] = {F("num_versions", S_UINT32), END};
static const smsg m_latest = {"latest", f_latest};
static const sfield f_specific[] = {FR("versions", S_INT64), END};
static const smsg m_specific = {"specific", f_specific};
static const sfield f_policy[] = {
    FO("latest", m_latest, 1),
    FO("all", m_empty, 1),
    FO("specific", m_specific, 1),
    END};
static const smsg m_policy = {"version_policy", f_policy};

static const sfield f_reshape[] = {FR("shape", S_INT64), END};
static const smsg m_reshape = {"reshape", f_reshape};

static const sfield f_input[] = {
    F("name", S_STRING),
    {"data_type", S_ENUM, false, NULL, triton_types, 0, NULL},
    FE("format", formats),
    FR("dims", S_INT64),
    FM("reshape", m_reshape),
    F("is_shape_tensor", S_BOOL),
    F("allow_ragged_batch", S_BOOL),
    F("optional", S_BOOL),
    F("is_non_linear_format_io", S_BOOL),
    END};
static const smsg m_input = {"input", f_input};

static const sfield f_output[] = {
    F("name", S_STRING),
    {"data_type", S_ENUM, false, NULL, triton_types, 0, NULL},
    FR("dims", S_INT64),
    FM("reshape", m_reshape),
    F("label_filename", S_STRING),
    F("is_shape_tensor", S_BOOL),
    F("is_non_linear_format_io", S_BOOL),
    END};
static const smsg m_output = {"output", f_output};

static const sfield f_queue_policy[] = {
    FE("timeout_action", timeout_actions),
    F("default_timeout_microseconds", S_UINT64),
    F("allow_timeout_override", S_BOOL),
    F("max_queue_size", S_UINT32),
    END};
static const smsg m_queue_policy = {"default_queue_policy", f_queue_policy};

static const sfield f_batching[] = {
    FR("preferred_batch_size", S_INT32),
    F("max_queue_delay_microseconds", S_UINT64),
    F("preserve_ordering", S_BOOL),
    F("priority_levels", S_UINT32),
    F("default_priority_level", S_UINT32),
    FM("default_queue_policy", m_queue_policy),
    IGNORED("priority_queue_policy"),
    END};
static const smsg m_batching = {"dynamic_batching", f_batching};

static const sfield f_instance[] = {
    F("name", S_STRING),
    F("count", S_INT32),
    FE("kind", kinds),
    {"gpus", S_INT32, true, NULL, NULL, 0, "GPU instances (Ferry runs on the CPU)"},
    FR("profile", S_STRING),
    F("passive", S_BOOL),
    F("host_policy", S_STRING),
    IGNORED("rate_limiter"),
    IGNORED("secondary_devices"),
    END};
static const smsg m_instance = {"instance_group", f_instance};

static const sfield f_param_value[] = {F("string_value", S_STRING), END};
static const smsg m_param_value = {"value", f_param_value};
static const sfield f_param[] = {F("key", S_STRING), FM("value", m_param_value), END};
static const smsg m_param = {"parameters", f_param};

static const sfield f_transaction[] = {F("decoupled", S_BOOL), END};
static const smsg m_transaction = {"model_transaction_policy", f_transaction};

static const sfield f_config[] = {
    F("name", S_STRING),
    F("platform", S_STRING),
    F("backend", S_STRING),
    F("runtime", S_STRING),
    FM("version_policy", m_policy),
    F("max_batch_size", S_INT32),
    FMR("input", m_input),
    FMR("output", m_output),
    FO("dynamic_batching", m_batching, 1),
    {"sequence_batching", S_ANY, false, NULL, NULL, 1, "sequence batching"},
    {"ensemble_scheduling", S_ANY, false, NULL, NULL, 1, "ensembles"},
    FMR("instance_group", m_instance),
    F("default_model_filename", S_STRING),
    FMR("parameters", m_param),
    FM("model_transaction_policy", m_transaction),
    REFUSED("batch_input", "ragged batching (batch_input)"),
    REFUSED("batch_output", "ragged batching (batch_output)"),
    REFUSED("model_operations", "custom operator libraries (model_operations)"),
    IGNORED("optimization"),
    IGNORED("model_warmup"),
    IGNORED("response_cache"),
    IGNORED("metric_tags"),
    IGNORED("cc_model_filenames"),
    IGNORED("model_repository_agents"),
    IGNORED("model_metrics"),
    END};
static const smsg m_config = {"ModelConfig", f_config};
/* clang-format on */

#define MAX_FIELDS 32

/* ---------------------------------------------------------------------------------------
 * Scalars
 * ------------------------------------------------------------------------------------- */

/* Parses an integer literal (decimal, 0x hex, 0 octal, optional '-') into *V. */
static bool parse_int(const char *s, bool *neg, uint64_t *v)
{
    *neg = *s == '-';
    if (*neg) s++;
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    } else if (s[0] == '0' && s[1]) {
        base = 8;
        s++;
    }
    if (!*s) return false;
    uint64_t x = 0;
    for (; *s; s++) {
        int d;
        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (*s >= 'a' && *s <= 'f')
            d = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F')
            d = *s - 'A' + 10;
        else
            return false;
        if (d >= base) return false;
        if (x > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return false;
        x = x * (uint64_t)base + (uint64_t)d;
    }
    *v = x;
    return true;
}

/* The value of an integer node of type T, range-checked; false with *WHY set otherwise. */
static bool int_value(const rt_pbtxt_node *n, stype t, int64_t *out, const char **why)
{
    bool neg;
    uint64_t v;
    if (n->kind != RT_PBTXT_NUMBER || !parse_int(n->text, &neg, &v)) {
        *why = "expected an integer";
        return false;
    }
    bool is_unsigned = t == S_UINT32 || t == S_UINT64;
    uint64_t max = t == S_INT32    ? INT32_MAX
                   : t == S_UINT32 ? UINT32_MAX
                   : t == S_INT64  ? INT64_MAX
                                   : UINT64_MAX;
    if (neg && is_unsigned && v) {
        *why = "expected a non-negative integer";
        return false;
    }
    if ((!neg && v > max) || (neg && v > max + 1)) {
        *why = "integer out of range";
        return false;
    }
    /* uint64 values above INT64_MAX do not fit *OUT; Ferry's uint64 fields are durations in
     * microseconds, where such values mean "forever" anyway. */
    if (!neg && v > INT64_MAX) v = INT64_MAX;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool bool_value(const rt_pbtxt_node *n, bool *out)
{
    static const char *const yes[] = {"true", "True", "t", "1"};
    static const char *const no[] = {"false", "False", "f", "0"};
    if (n->kind != RT_PBTXT_IDENT && n->kind != RT_PBTXT_NUMBER) return false;
    for (int i = 0; i < 4; i++) {
        if (!strcmp(n->text, yes[i])) return *out = true, true;
        if (!strcmp(n->text, no[i])) return *out = false, true;
    }
    return false;
}

static int enum_value(const rt_pbtxt_node *n, const char *const *names)
{
    int count = 0;
    while (names[count]) count++;
    if (n->kind == RT_PBTXT_IDENT) {
        for (int i = 0; i < count; i++)
            if (!strcmp(n->text, names[i])) return i;
        return -1;
    }
    bool neg;
    uint64_t v;
    if (n->kind == RT_PBTXT_NUMBER && parse_int(n->text, &neg, &v) && !neg && v < (uint64_t)count)
        return (int)v;
    return -1;
}

/* ---------------------------------------------------------------------------------------
 * Pass 1: the schema check
 * ------------------------------------------------------------------------------------- */

typedef struct reader {
    const char *file;
    core_pool *pool;
    ferry_status *err;
} reader;

static ferry_status *field_error(reader *r, ferry_code code, const rt_pbtxt_node *n,
                                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static ferry_status *field_error(reader *r, ferry_code code, const rt_pbtxt_node *n,
                                 const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (!r->err)
        r->err = core_error(code, "%s:%d: field '%s': %s", r->file, n->line, n->name, what);
    return r->err;
}

static const char *kind_word(const rt_pbtxt_node *n)
{
    switch (n->kind) {
    case RT_PBTXT_MESSAGE:
        return "a message";
    case RT_PBTXT_STRING:
        return "a string";
    case RT_PBTXT_NUMBER:
        return "a number";
    default:
        return "a name";
    }
}

/* Shows a scalar in an error message, cut to a readable length. */
static const char *shown(const rt_pbtxt_node *n, char *buf, size_t size)
{
    snprintf(buf, size, "%s", n->kind == RT_PBTXT_MESSAGE ? "{...}" : n->text);
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
    return buf;
}

static ferry_status *check_scalar(reader *r, const sfield *f, const rt_pbtxt_node *n)
{
    char buf[64];
    if (n->kind == RT_PBTXT_MESSAGE)
        return field_error(r, FERRY_ERR_INVALID_MODEL, n, "expected a value, got a message");
    switch (f->type) {
    case S_STRING:
        if (n->kind != RT_PBTXT_STRING)
            return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                               "expected a quoted string, got %s '%s'", kind_word(n),
                               shown(n, buf, sizeof(buf)));
        return NULL;
    case S_BOOL: {
        bool b;
        if (!bool_value(n, &b))
            return field_error(r, FERRY_ERR_INVALID_MODEL, n, "expected true or false, got '%s'",
                               shown(n, buf, sizeof(buf)));
        return NULL;
    }
    case S_ENUM:
        if (enum_value(n, f->enums) < 0) {
            char names[256] = "";
            size_t k = 0;
            for (int i = 0; f->enums[i] && k < sizeof(names); i++)
                k += (size_t)snprintf(names + k, sizeof(names) - k, "%s%s", i ? ", " : "",
                                      f->enums[i]);
            return field_error(r, FERRY_ERR_INVALID_MODEL, n, "unknown value '%s' (expected %s)",
                               shown(n, buf, sizeof(buf)), names);
        }
        return NULL;
    default: {
        int64_t v;
        const char *why;
        if (!int_value(n, f->type, &v, &why))
            return field_error(r, FERRY_ERR_INVALID_MODEL, n, "%s, got '%s'", why,
                               shown(n, buf, sizeof(buf)));
        return NULL;
    }
    }
}

static ferry_status *check_message(reader *r, const rt_pbtxt_node *msg, const smsg *schema)
{
    int seen[MAX_FIELDS] = {0}; /* line of the first occurrence, per field */
    int oneof_line[8] = {0};
    const char *oneof_name[8] = {0};
    for (const rt_pbtxt_node *n = msg->child; n; n = n->next) {
        int fi = -1;
        for (int i = 0; schema->fields[i].name; i++)
            if (!strcmp(schema->fields[i].name, n->name)) fi = i;
        if (fi < 0)
            return field_error(r, FERRY_ERR_INVALID_MODEL, n, "unknown field of %s", schema->name);
        const sfield *f = &schema->fields[fi];
        if (f->unsupported)
            return field_error(r, FERRY_ERR_UNSUPPORTED, n, "not supported by Ferry: %s",
                               f->unsupported);
        if (!f->repeated && seen[fi])
            return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                               "given more than once (first at line %d)", seen[fi]);
        if (!seen[fi]) seen[fi] = n->line;
        if (f->oneof) {
            int g = f->oneof;
            if (oneof_name[g] && strcmp(oneof_name[g], n->name))
                return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                                   "conflicts with '%s' at line %d (only one may be set)",
                                   oneof_name[g], oneof_line[g]);
            oneof_name[g] = n->name;
            oneof_line[g] = n->line;
        }
        if (f->type == S_ANY) continue;
        if (f->type == S_MSG) {
            if (n->kind != RT_PBTXT_MESSAGE)
                return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                                   "expected a message ('{ ... }'), got %s", kind_word(n));
            if (check_message(r, n, f->msg)) return r->err;
            continue;
        }
        if (check_scalar(r, f, n)) return r->err;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Pass 2: filling the config
 * ------------------------------------------------------------------------------------- */

static size_t count_named(const rt_pbtxt_node *msg, const char *name)
{
    size_t k = 0;
    for (const rt_pbtxt_node *n = msg->child; n; n = n->next) k += !strcmp(n->name, name);
    return k;
}

static int64_t ival(const rt_pbtxt_node *n)
{
    int64_t v = 0;
    const char *why;
    int_value(n, S_INT64, &v, &why);
    /* Checked in pass 1 against the field's own type; S_UINT64 values were capped there. */
    if (n->text[0] != '-') {
        bool neg;
        uint64_t u;
        if (parse_int(n->text, &neg, &u) && u > INT64_MAX) v = INT64_MAX;
    }
    return v;
}

static bool bval(const rt_pbtxt_node *n)
{
    bool b = false;
    bool_value(n, &b);
    return b;
}

static void *palloc(reader *r, size_t count, size_t size)
{
    if (!count) return NULL;
    void *p = core_pool_alloc(r->pool, count * size, 16);
    if (!p && !r->err) r->err = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    return p;
}

static const char *pstr(reader *r, const char *s)
{
    char *p = core_pool_strndup(r->pool, s, strlen(s));
    if (!p && !r->err) r->err = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    return p ? p : "";
}

/* Reads "dims" or "shape" fields of MSG into DIMS; checks rank and values. */
static ferry_status *read_dims(reader *r, const rt_pbtxt_node *msg, const char *field,
                               bool allow_empty, int64_t *dims, int *rank)
{
    int k = 0;
    for (const rt_pbtxt_node *n = msg->child; n; n = n->next) {
        if (strcmp(n->name, field)) continue;
        if (k == FERRY_MAX_RANK)
            return field_error(r, FERRY_ERR_INVALID_MODEL, n, "more than %d dimensions",
                               FERRY_MAX_RANK);
        int64_t v = ival(n);
        if (v < -1 || v == 0)
            return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                               "dimension %lld is invalid (a size >= 1, or -1 for variable)",
                               (long long)v);
        dims[k++] = v;
    }
    if (!k && !allow_empty)
        return field_error(r, FERRY_ERR_INVALID_MODEL, msg,
                           "'%s' is required and needs at least one dimension", field);
    *rank = k;
    return NULL;
}

static ferry_status *read_tensor(reader *r, const rt_pbtxt_node *msg, bool input,
                                 rt_tensor_config *t)
{
    t->name = "";
    t->label_filename = "";
    t->engine_index = -1;
    const rt_pbtxt_node *dtype_node = NULL;
    for (const rt_pbtxt_node *n = msg->child; n; n = n->next) {
        if (!strcmp(n->name, "name")) {
            if (!n->text[0])
                return field_error(r, FERRY_ERR_INVALID_MODEL, n, "the name may not be empty");
            t->name = pstr(r, n->text);
        } else if (!strcmp(n->name, "data_type")) {
            dtype_node = n;
            int v = enum_value(n, triton_types);
            t->dtype = triton_to_ferry[v];
            if (v == 0)
                return field_error(r, FERRY_ERR_INVALID_MODEL, n, "TYPE_INVALID is not a type");
            if (t->dtype == FERRY_DTYPE_STRING)
                return field_error(r, FERRY_ERR_UNSUPPORTED, n,
                                   "TYPE_STRING tensors are not supported by Ferry yet");
        } else if (!strcmp(n->name, "format")) {
            t->format = (rt_tensor_format)enum_value(n, formats);
        } else if (!strcmp(n->name, "reshape")) {
            t->has_reshape = true;
            if (read_dims(r, n, "shape", true, t->reshape, &t->reshape_rank)) return r->err;
        } else if (!strcmp(n->name, "label_filename")) {
            t->label_filename = pstr(r, n->text);
        } else if (!strcmp(n->name, "optional")) {
            t->optional = bval(n);
            if (t->optional)
                return field_error(r, FERRY_ERR_UNSUPPORTED, n,
                                   "optional inputs are not supported (the model needs them all)");
        } else if (!strcmp(n->name, "is_shape_tensor")) {
            t->is_shape_tensor = bval(n);
            if (t->is_shape_tensor)
                return field_error(r, FERRY_ERR_UNSUPPORTED, n, "shape tensors are not supported");
        } else if (!strcmp(n->name, "allow_ragged_batch")) {
            t->allow_ragged_batch = bval(n);
            if (t->allow_ragged_batch)
                return field_error(r, FERRY_ERR_UNSUPPORTED, n, "ragged batching is not supported");
        }
    }
    const char *what = input ? "input" : "output";
    if (!t->name[0])
        return field_error(r, FERRY_ERR_INVALID_MODEL, msg, "every %s needs a 'name'", what);
    if (!dtype_node)
        return field_error(r, FERRY_ERR_INVALID_MODEL, msg, "%s '%s' needs a 'data_type'", what,
                           t->name);
    if (read_dims(r, msg, "dims", false, t->dims, &t->rank)) return r->err;
    return r->err;
}

static ferry_status *read_policy(reader *r, const rt_pbtxt_node *msg, rt_version_policy *p)
{
    p->kind = RT_POLICY_LATEST;
    p->num_versions = 1;
    for (const rt_pbtxt_node *n = msg->child; n; n = n->next) {
        if (!strcmp(n->name, "all")) {
            p->kind = RT_POLICY_ALL;
        } else if (!strcmp(n->name, "latest")) {
            p->kind = RT_POLICY_LATEST;
            for (const rt_pbtxt_node *c = n->child; c; c = c->next) {
                int64_t v = ival(c);
                if (v < 1 || v > RT_MAX_VERSIONS)
                    return field_error(r, FERRY_ERR_INVALID_MODEL, c,
                                       "num_versions must be between 1 and %d", RT_MAX_VERSIONS);
                p->num_versions = (uint32_t)v;
            }
        } else if (!strcmp(n->name, "specific")) {
            p->kind = RT_POLICY_SPECIFIC;
            size_t k = count_named(n, "versions");
            if (!k) return field_error(r, FERRY_ERR_INVALID_MODEL, n, "lists no versions");
            if (k > RT_MAX_VERSIONS)
                return field_error(r, FERRY_ERR_INVALID_MODEL, n, "lists more than %d versions",
                                   RT_MAX_VERSIONS);
            p->versions = palloc(r, k, sizeof(int64_t));
            if (r->err) return r->err;
            for (const rt_pbtxt_node *c = n->child; c; c = c->next) {
                int64_t v = ival(c);
                if (v < 1 || v > RT_MAX_VERSION)
                    return field_error(r, FERRY_ERR_INVALID_MODEL, c,
                                       "version %lld is not a valid version number", (long long)v);
                p->versions[p->version_count++] = v;
            }
        }
    }
    return NULL;
}

static ferry_status *read_batching(reader *r, const rt_pbtxt_node *msg, rt_dynamic_batching *b)
{
    size_t k = count_named(msg, "preferred_batch_size");
    b->preferred_batch_sizes = palloc(r, k, sizeof(int32_t));
    if (r->err) return r->err;
    for (const rt_pbtxt_node *n = msg->child; n; n = n->next) {
        if (!strcmp(n->name, "preferred_batch_size")) {
            int64_t v = ival(n);
            if (v < 1)
                return field_error(r, FERRY_ERR_INVALID_MODEL, n, "must be at least 1, got %lld",
                                   (long long)v);
            b->preferred_batch_sizes[b->preferred_count++] = (int32_t)v;
        } else if (!strcmp(n->name, "max_queue_delay_microseconds")) {
            b->max_queue_delay_us = (uint64_t)ival(n);
            /* A batcher that holds requests for more than a minute is a typo, not a setting. */
            if (b->max_queue_delay_us > 60000000u)
                return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                                   "%llu microseconds is more than the 60 s Ferry allows",
                                   (unsigned long long)b->max_queue_delay_us);
        } else if (!strcmp(n->name, "preserve_ordering")) {
            b->preserve_ordering = bval(n);
        } else if (!strcmp(n->name, "priority_levels")) {
            b->priority_levels = (uint32_t)ival(n);
        } else if (!strcmp(n->name, "default_priority_level")) {
            b->default_priority_level = (uint32_t)ival(n);
        } else if (!strcmp(n->name, "default_queue_policy")) {
            for (const rt_pbtxt_node *c = n->child; c; c = c->next) {
                if (!strcmp(c->name, "timeout_action")) {
                    if (enum_value(c, timeout_actions) == 1)
                        return field_error(r, FERRY_ERR_UNSUPPORTED, c,
                                           "DELAY is not supported (expired requests are "
                                           "rejected)");
                } else if (!strcmp(c->name, "default_timeout_microseconds")) {
                    b->default_timeout_us = (uint64_t)ival(c);
                } else if (!strcmp(c->name, "allow_timeout_override")) {
                    b->allow_timeout_override = bval(c);
                } else if (!strcmp(c->name, "max_queue_size")) {
                    int64_t v = ival(c);
                    if (v > RT_MAX_QUEUE)
                        return field_error(r, FERRY_ERR_INVALID_MODEL, c,
                                           "%lld is more than the %d Ferry allows", (long long)v,
                                           RT_MAX_QUEUE);
                    b->max_queue_size = (uint32_t)v;
                }
            }
        }
    }
    if (b->default_priority_level > b->priority_levels)
        return field_error(r, FERRY_ERR_INVALID_MODEL, msg,
                           "default_priority_level %u is above priority_levels %u",
                           b->default_priority_level, b->priority_levels);
    return NULL;
}

static ferry_status *read_instance(reader *r, const rt_pbtxt_node *msg, rt_instance_group *g)
{
    g->name = "";
    g->count = 0;
    for (const rt_pbtxt_node *n = msg->child; n; n = n->next) {
        if (!strcmp(n->name, "name")) {
            g->name = pstr(r, n->text);
        } else if (!strcmp(n->name, "count")) {
            int64_t v = ival(n);
            if (v < 1 || v > RT_MAX_INSTANCES)
                return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                                   "count must be between 1 and %d, got %lld", RT_MAX_INSTANCES,
                                   (long long)v);
            g->count = (int32_t)v;
        } else if (!strcmp(n->name, "kind")) {
            g->kind = (rt_instance_kind)enum_value(n, kinds);
            if (g->kind == RT_KIND_GPU || g->kind == RT_KIND_MODEL)
                return field_error(r, FERRY_ERR_UNSUPPORTED, n,
                                   "%s is not supported (use KIND_CPU or KIND_AUTO)",
                                   kinds[g->kind]);
        }
    }
    return NULL;
}

/* Parses a "ferry." parameter value as an unsigned decimal no larger than MAX. */
static bool param_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (!*s || strlen(s) > 19) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
}

static ferry_status *read_parameters(reader *r, const rt_pbtxt_node *root, rt_model_config *cfg)
{
    size_t k = count_named(root, "parameters");
    cfg->parameters = palloc(r, k, sizeof(rt_parameter));
    if (r->err) return r->err;
    for (const rt_pbtxt_node *n = root->child; n; n = n->next) {
        if (strcmp(n->name, "parameters")) continue;
        const char *key = NULL, *value = "";
        for (const rt_pbtxt_node *c = n->child; c; c = c->next) {
            if (!strcmp(c->name, "key")) key = c->text;
            if (!strcmp(c->name, "value"))
                for (const rt_pbtxt_node *v = c->child; v; v = v->next) value = v->text;
        }
        if (!key) return field_error(r, FERRY_ERR_INVALID_MODEL, n, "an entry without a 'key'");
        if (!strncmp(key, "ferry.", 6)) {
            uint64_t v;
            if (!strcmp(key, "ferry.queue_capacity")) {
                if (!param_uint(value, RT_MAX_QUEUE, &v) || !v)
                    return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                                       "ferry.queue_capacity must be an integer in 1..%d, got "
                                       "'%.40s'",
                                       RT_MAX_QUEUE, value);
                cfg->queue_capacity = (uint32_t)v;
            } else if (!strcmp(key, "ferry.timeout_microseconds")) {
                if (!param_uint(value, UINT64_MAX / 2, &v))
                    return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                                       "ferry.timeout_microseconds must be an integer, got "
                                       "'%.40s'",
                                       value);
                cfg->timeout_us = v;
            } else {
                return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                                   "unknown Ferry parameter '%.64s' (known: "
                                   "ferry.queue_capacity, ferry.timeout_microseconds)",
                                   key);
            }
        }
        size_t i = 0;
        while (i < cfg->parameter_count && strcmp(cfg->parameters[i].key, key)) i++;
        if (i == cfg->parameter_count) {
            cfg->parameters[i].key = pstr(r, key);
            cfg->parameter_count++;
        }
        cfg->parameters[i].value = pstr(r, value);
    }
    return r->err;
}

static ferry_status *check_names_unique(reader *r, const rt_pbtxt_node *root, const char *field,
                                        const rt_tensor_config *t, size_t count)
{
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t[i].name, t[j].name)) {
                const rt_pbtxt_node *n = root->child;
                size_t seen = 0;
                for (; n; n = n->next)
                    if (!strcmp(n->name, field) && seen++ == i) break;
                return field_error(r, FERRY_ERR_INVALID_MODEL, n ? n : root,
                                   "%s '%s' is listed twice", field, t[i].name);
            }
    return NULL;
}

static ferry_status *read_config(reader *r, const rt_pbtxt_node *root, rt_model_config *cfg)
{
    cfg->name = "";
    cfg->platform = "";
    cfg->backend = "";
    cfg->default_model_filename = "model.onnx";
    cfg->version_policy.kind = RT_POLICY_LATEST;
    cfg->version_policy.num_versions = 1;
    size_t ni = count_named(root, "input"), no = count_named(root, "output");
    size_t ng = count_named(root, "instance_group");
    if (ni > RT_MAX_IO || no > RT_MAX_IO)
        return core_error(FERRY_ERR_INVALID_MODEL, "%s: more than %d inputs or outputs", r->file,
                          RT_MAX_IO);
    if (ng > RT_MAX_INSTANCES)
        return core_error(FERRY_ERR_INVALID_MODEL, "%s: more than %d instance groups", r->file,
                          RT_MAX_INSTANCES);
    cfg->inputs = palloc(r, ni, sizeof(rt_tensor_config));
    cfg->outputs = palloc(r, no, sizeof(rt_tensor_config));
    cfg->instance_groups = palloc(r, ng, sizeof(rt_instance_group));
    if (r->err) return r->err;
    const rt_pbtxt_node *mbs_node = NULL, *batching_node = NULL;
    for (const rt_pbtxt_node *n = root->child; n; n = n->next) {
        if (!strcmp(n->name, "name")) {
            cfg->name = pstr(r, n->text);
        } else if (!strcmp(n->name, "platform")) {
            if (n->text[0] && strcmp(n->text, "onnxruntime_onnx") && strcmp(n->text, "ferry"))
                return field_error(r, FERRY_ERR_UNSUPPORTED, n,
                                   "platform '%.64s' is not supported (Ferry serves ONNX: "
                                   "\"onnxruntime_onnx\")",
                                   n->text);
            cfg->platform = pstr(r, n->text);
        } else if (!strcmp(n->name, "backend")) {
            if (n->text[0] && strcmp(n->text, "onnxruntime") && strcmp(n->text, "ferry"))
                return field_error(r, FERRY_ERR_UNSUPPORTED, n,
                                   "backend '%.64s' is not supported (Ferry serves ONNX: "
                                   "\"onnxruntime\" or \"ferry\")",
                                   n->text);
            cfg->backend = pstr(r, n->text);
        } else if (!strcmp(n->name, "max_batch_size")) {
            int64_t v = ival(n);
            if (v < 0 || v > RT_MAX_BATCH)
                return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                                   "must be between 0 and %d, got %lld", RT_MAX_BATCH,
                                   (long long)v);
            cfg->max_batch_size = (int32_t)v;
            mbs_node = n;
        } else if (!strcmp(n->name, "version_policy")) {
            if (read_policy(r, n, &cfg->version_policy)) return r->err;
        } else if (!strcmp(n->name, "input")) {
            if (read_tensor(r, n, true, &cfg->inputs[cfg->input_count++])) return r->err;
        } else if (!strcmp(n->name, "output")) {
            if (read_tensor(r, n, false, &cfg->outputs[cfg->output_count++])) return r->err;
        } else if (!strcmp(n->name, "dynamic_batching")) {
            cfg->has_dynamic_batching = true;
            batching_node = n;
            if (read_batching(r, n, &cfg->dynamic_batching)) return r->err;
        } else if (!strcmp(n->name, "instance_group")) {
            rt_instance_group *g = &cfg->instance_groups[cfg->instance_group_count++];
            if (read_instance(r, n, g)) return r->err;
        } else if (!strcmp(n->name, "default_model_filename")) {
            if (!rt_name_valid(n->text))
                return field_error(r, FERRY_ERR_INVALID_MODEL, n,
                                   "'%.64s' is not a plain file name", n->text);
            cfg->default_model_filename = pstr(r, n->text);
        } else if (!strcmp(n->name, "model_transaction_policy")) {
            for (const rt_pbtxt_node *c = n->child; c; c = c->next)
                if (bval(c))
                    return field_error(r, FERRY_ERR_UNSUPPORTED, c,
                                       "decoupled models are not supported");
        }
        if (r->err) return r->err;
    }
    if (read_parameters(r, root, cfg)) return r->err;
    if (check_names_unique(r, root, "input", cfg->inputs, cfg->input_count)) return r->err;
    if (check_names_unique(r, root, "output", cfg->outputs, cfg->output_count)) return r->err;
    const rt_dynamic_batching *b = &cfg->dynamic_batching;
    for (size_t i = 0; batching_node && i < b->preferred_count; i++)
        if (b->preferred_batch_sizes[i] > cfg->max_batch_size)
            return field_error(r, FERRY_ERR_INVALID_MODEL, batching_node,
                               "preferred_batch_size %d is above max_batch_size %d%s",
                               b->preferred_batch_sizes[i], cfg->max_batch_size,
                               mbs_node ? "" : " (not set: 0)");
    return NULL;
}

ferry_status *rt_config_parse(const char *text, size_t len, const char *file, rt_model_config *out)
{
    memset(out, 0, sizeof(*out));
    ferry_status *st = NULL;
    core_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    reader r = {.file = file ? file : "config.pbtxt", .pool = pool};
    rt_pbtxt_node *root;
    if ((st = rt_pbtxt_parse(text, len, r.file, pool, &root))) goto out;
    if ((st = check_message(&r, root, &m_config))) goto out;
    out->mem_ = pool;
    if ((st = read_config(&r, root, out))) goto out;
    /* The tree is garbage now but shares the pool; it is small next to the model. */
out:
    if (st) {
        memset(out, 0, sizeof(*out));
        core_pool_release(pool);
        free(pool);
    }
    return st;
}

void rt_config_free(rt_model_config *cfg)
{
    if (!cfg) return;
    if (cfg->mem_) {
        core_pool_release(cfg->mem_);
        free(cfg->mem_);
    }
    memset(cfg, 0, sizeof(*cfg));
}

int rt_config_input_index(const rt_model_config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->input_count; i++)
        if (!strcmp(cfg->inputs[i].name, name)) return (int)i;
    return -1;
}

int rt_config_output_index(const rt_model_config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->output_count; i++)
        if (!strcmp(cfg->outputs[i].name, name)) return (int)i;
    return -1;
}

const char *rt_config_parameter(const rt_model_config *cfg, const char *key)
{
    for (size_t i = 0; key && i < cfg->parameter_count; i++)
        if (!strcmp(cfg->parameters[i].key, key)) return cfg->parameters[i].value;
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Deriving from a model, and checking against one
 * ------------------------------------------------------------------------------------- */

/* Describes model tensor INFO as a config entry; the batch dimension is dropped when BATCHED. */
static ferry_status *tensor_from_model(core_pool *pool, const ferry_value_info *info, bool input,
                                       bool batched, int engine_index, rt_tensor_config *t)
{
    const char *what = input ? "input" : "output";
    memset(t, 0, sizeof(*t));
    t->name = core_pool_strndup(pool, info->name, strlen(info->name));
    t->label_filename = "";
    if (!t->name) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    t->dtype = info->dtype;
    t->engine_index = engine_index;
    if (info->dtype == FERRY_DTYPE_UNDEFINED || !triton_index(info->dtype))
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "%s '%s': the model's type %s cannot be served; write a config.pbtxt "
                          "or change the model",
                          what, info->name, ferry_dtype_name(info->dtype));
    if (info->dtype == FERRY_DTYPE_STRING)
        return core_error(FERRY_ERR_UNSUPPORTED, "%s '%s': string tensors are not supported yet",
                          what, info->name);
    if (info->rank < 0)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "%s '%s': the model declares no shape; write a config.pbtxt with its "
                          "dims",
                          what, info->name);
    int skip = batched ? 1 : 0;
    if (info->rank - skip == 0) {
        /* Triton's spelling of a scalar: dims [1] reshaped to []. */
        t->rank = 1;
        t->dims[0] = 1;
        t->has_reshape = true;
        t->reshape_rank = 0;
        return NULL;
    }
    t->rank = info->rank - skip;
    for (int d = 0; d < t->rank; d++)
        t->dims[d] = info->dims[d + skip] < 0 ? -1 : info->dims[d + skip];
    return NULL;
}

static bool batchable(const ferry_value_info *info)
{
    return info->rank >= 1 && info->dims[0] < 0;
}

ferry_status *rt_config_derive(const ferry_model *model, const char *name,
                               int32_t default_max_batch, rt_model_config *out)
{
    memset(out, 0, sizeof(*out));
    ferry_status *st = NULL;
    core_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    out->mem_ = pool;
    size_t ni = ferry_model_input_count(model), no = ferry_model_output_count(model);
    if (ni > RT_MAX_IO || no > RT_MAX_IO) {
        st = core_error(FERRY_ERR_UNSUPPORTED, "the model has more than %d inputs or outputs",
                        RT_MAX_IO);
        goto out;
    }
    bool batched = default_max_batch > 0 && ni > 0;
    ferry_value_info info;
    for (size_t i = 0; i < ni + no && batched; i++) {
        st = i < ni ? ferry_model_input_info(model, i, &info)
                    : ferry_model_output_info(model, i - ni, &info);
        if (st) goto out;
        batched = batchable(&info);
    }
    out->name = core_pool_strndup(pool, name, strlen(name));
    out->platform = "onnxruntime_onnx";
    out->backend = "onnxruntime";
    out->default_model_filename = "model.onnx";
    out->version_policy.kind = RT_POLICY_LATEST;
    out->version_policy.num_versions = 1;
    out->max_batch_size = batched ? default_max_batch : 0;
    /* Triton's auto-complete turns the batcher on for batching models; with no delay it only
     * joins requests that are already waiting, which costs nothing. */
    out->has_dynamic_batching = batched;
    out->derived = true;
    out->inputs = core_pool_alloc(pool, (ni ? ni : 1) * sizeof(rt_tensor_config), 16);
    out->outputs = core_pool_alloc(pool, (no ? no : 1) * sizeof(rt_tensor_config), 16);
    if (!out->name || !out->inputs || !out->outputs) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ni; i++) {
        if ((st = ferry_model_input_info(model, i, &info))) goto out;
        if ((st = tensor_from_model(pool, &info, true, batched, (int)i, &out->inputs[i]))) goto out;
    }
    out->input_count = ni;
    for (size_t i = 0; i < no; i++) {
        if ((st = ferry_model_output_info(model, i, &info))) goto out;
        if ((st = tensor_from_model(pool, &info, false, batched, (int)i, &out->outputs[i])))
            goto out;
    }
    out->output_count = no;
out:
    if (st) rt_config_free(out);
    return st;
}

static int64_t elements(const int64_t *dims, int rank, bool *variable)
{
    int64_t n = 1;
    *variable = false;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            *variable = true;
        else if (n <= INT64_MAX / (dims[i] ? dims[i] : 1))
            n *= dims[i];
    }
    return n;
}

/* Checks one config tensor against the model's INFO. */
static ferry_status *check_tensor(const rt_model_config *cfg, const rt_tensor_config *t,
                                  const ferry_value_info *info, bool input)
{
    const char *what = input ? "input" : "output";
    char a[160], b[160];
    if (info->dtype != FERRY_DTYPE_UNDEFINED && info->dtype != t->dtype)
        return core_error(
            FERRY_ERR_INVALID_MODEL, "%s '%s': config data_type %s does not match the model's %s",
            what, t->name, rt_dtype_config_name(t->dtype), rt_dtype_config_name(info->dtype));
    /* The shape the model sees: the batch dimension, then reshape or dims. */
    int64_t full[FERRY_MAX_RANK + 1];
    int rank = 0;
    if (cfg->max_batch_size > 0) full[rank++] = -1;
    const int64_t *inner = t->has_reshape ? t->reshape : t->dims;
    int inner_rank = t->has_reshape ? t->reshape_rank : t->rank;
    for (int i = 0; i < inner_rank; i++) full[rank++] = inner[i];
    if (t->has_reshape) {
        bool va, vb;
        int64_t na = elements(t->dims, t->rank, &va);
        int64_t nb = elements(t->reshape, t->reshape_rank, &vb);
        if (!va && !vb && na != nb)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "%s '%s': reshape %s holds %lld elements, dims %s hold %lld", what,
                              t->name, rt_dims_str(a, sizeof(a), t->reshape, t->reshape_rank),
                              (long long)nb, rt_dims_str(b, sizeof(b), t->dims, t->rank),
                              (long long)na);
    }
    if (info->rank < 0) return NULL;
    if (rank > FERRY_MAX_RANK || rank != info->rank)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "%s '%s': the config gives the model shape %s%s, the model has %s", what,
                          t->name, rt_dims_str(a, sizeof(a), full, rank),
                          cfg->max_batch_size > 0 ? " (max_batch_size adds the leading -1)" : "",
                          rt_dims_str(b, sizeof(b), info->dims, info->rank));
    for (int d = 0; d < rank; d++) {
        if (d == 0 && cfg->max_batch_size > 0) {
            if (info->dims[0] >= 0)
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "%s '%s': max_batch_size %d needs a variable first dimension, "
                                  "the model has %s (set max_batch_size: 0 and give the full "
                                  "dims)",
                                  what, t->name, cfg->max_batch_size,
                                  rt_dims_str(b, sizeof(b), info->dims, info->rank));
            continue;
        }
        if (full[d] >= 0 && info->dims[d] >= 0 && full[d] != info->dims[d])
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "%s '%s': the config gives the model shape %s, the model has %s "
                              "(dimension %d differs)",
                              what, t->name, rt_dims_str(a, sizeof(a), full, rank),
                              rt_dims_str(b, sizeof(b), info->dims, info->rank), d);
    }
    return NULL;
}

/* Fills an empty input or output list from the model (Triton's auto-complete). */
static ferry_status *complete_list(rt_model_config *cfg, const ferry_model *model, bool input)
{
    core_pool *pool = cfg->mem_;
    size_t n = input ? ferry_model_input_count(model) : ferry_model_output_count(model);
    if (n > RT_MAX_IO)
        return core_error(FERRY_ERR_UNSUPPORTED, "the model has more than %d %ss", RT_MAX_IO,
                          input ? "input" : "output");
    rt_tensor_config *list = core_pool_alloc(pool, (n ? n : 1) * sizeof(*list), 16);
    if (!list) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        ferry_value_info info;
        ferry_status *st = input ? ferry_model_input_info(model, i, &info)
                                 : ferry_model_output_info(model, i, &info);
        if (st) return st;
        if (cfg->max_batch_size > 0 && !batchable(&info)) {
            char b[160];
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "%s '%s': max_batch_size %d needs a variable first dimension, the "
                              "model has %s",
                              input ? "input" : "output", info.name, cfg->max_batch_size,
                              rt_dims_str(b, sizeof(b), info.dims, info.rank < 0 ? 0 : info.rank));
        }
        st = tensor_from_model(pool, &info, input, cfg->max_batch_size > 0, (int)i, &list[i]);
        if (st) return st;
    }
    if (input) {
        cfg->inputs = list;
        cfg->input_count = n;
    } else {
        cfg->outputs = list;
        cfg->output_count = n;
    }
    return NULL;
}

ferry_status *rt_config_bind(rt_model_config *cfg, const ferry_model *model, int default_instances,
                             uint32_t default_queue)
{
    ferry_status *st;
    if (!cfg->mem_) return core_error(FERRY_ERR_INVALID_ARGUMENT, "the config is empty");
    size_t ni = ferry_model_input_count(model);
    for (int pass = 0; pass < 2; pass++) {
        bool input = pass == 0;
        /* Lists the config leaves out come from the model (Triton's auto-complete); the ones
         * it gives are checked first, so their errors are the ones reported. */
        if (!(input ? cfg->input_count : cfg->output_count) &&
            (st = complete_list(cfg, model, input)))
            return st;
        size_t count = input ? cfg->input_count : cfg->output_count;
        rt_tensor_config *list = input ? cfg->inputs : cfg->outputs;
        for (size_t i = 0; i < count; i++) {
            rt_tensor_config *t = &list[i];
            int idx = input ? ferry_model_input_index(model, t->name)
                            : ferry_model_output_index(model, t->name);
            if (idx < 0) {
                char names[256] = "";
                size_t k = 0, n = input ? ni : ferry_model_output_count(model);
                for (size_t j = 0; j < n && k < sizeof(names); j++) {
                    ferry_value_info info;
                    st = input ? ferry_model_input_info(model, j, &info)
                               : ferry_model_output_info(model, j, &info);
                    if (st) return st;
                    k += (size_t)snprintf(names + k, sizeof(names) - k, "%s'%s'", j ? ", " : "",
                                          info.name);
                }
                return core_error(
                    FERRY_ERR_INVALID_MODEL, "config %s '%s' is not an %s of the model (it has %s)",
                    input ? "input" : "output", t->name, input ? "input" : "output", names);
            }
            ferry_value_info info;
            st = input ? ferry_model_input_info(model, (size_t)idx, &info)
                       : ferry_model_output_info(model, (size_t)idx, &info);
            if (st) return st;
            if ((st = check_tensor(cfg, t, &info, input))) return st;
            t->engine_index = idx;
        }
    }
    /* The engine needs every input: the config must name them all (names are unique, so equal
     * counts mean a permutation). */
    if (cfg->input_count != ni) {
        for (size_t j = 0; j < ni; j++) {
            ferry_value_info info;
            if ((st = ferry_model_input_info(model, j, &info))) return st;
            if (rt_config_input_index(cfg, info.name) < 0)
                return core_error(FERRY_ERR_INVALID_MODEL,
                                  "model input '%s' is missing from the config", info.name);
        }
        return core_error(FERRY_ERR_INVALID_MODEL, "the config lists %zu inputs, the model has %zu",
                          cfg->input_count, ni);
    }
    /* Inputs in the model's order, so that config index == engine index for inputs. */
    for (size_t i = 0; i < cfg->input_count; i++) {
        while (cfg->inputs[i].engine_index != (int)i) {
            size_t j = (size_t)cfg->inputs[i].engine_index;
            rt_tensor_config tmp = cfg->inputs[j];
            cfg->inputs[j] = cfg->inputs[i];
            cfg->inputs[i] = tmp;
        }
    }
    int instances = 0, fallback = default_instances > 0 ? default_instances : 1;
    for (size_t i = 0; i < cfg->instance_group_count; i++)
        instances += cfg->instance_groups[i].count > 0 ? cfg->instance_groups[i].count : fallback;
    if (!instances) instances = fallback;
    if (instances > RT_MAX_INSTANCES)
        return core_error(FERRY_ERR_INVALID_MODEL, "%d instances in all, more than the %d allowed",
                          instances, RT_MAX_INSTANCES);
    cfg->instance_count = instances;
    if (cfg->dynamic_batching.max_queue_size)
        cfg->queue_capacity = cfg->dynamic_batching.max_queue_size;
    if (!cfg->queue_capacity) cfg->queue_capacity = default_queue ? default_queue : 1024;
    if (cfg->queue_capacity > RT_MAX_QUEUE) cfg->queue_capacity = RT_MAX_QUEUE;
    if (cfg->dynamic_batching.default_timeout_us)
        cfg->timeout_us = cfg->dynamic_batching.default_timeout_us;
    return NULL;
}
