/* runner.c - runs one ONNX backend test case (model.onnx + test_data_set_N/) through Ferry's
 * public API and compares every output with the expected one, as ONNX's own runner does:
 * |actual - expected| <= atol + rtol * |expected|, rtol 1e-3, atol 1e-7, NaN equal to NaN.
 *
 * usage: ferry-conformance [--json] CASE_DIR
 * exit:  0 pass, 77 unsupported by Ferry (reported as skipped by CTest), 1 fail.
 */
#include "ferry.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXIT_UNSUPPORTED 77
#define EXIT_BAD_DATA    78 /* reported as skipped, with its own status word */
#define EXIT_RANDOM      79 /* passes, with its own status word: only type and shape compared */
#define RTOL             1e-3
#define ATOL             1e-7

static bool json;
static bool random_ops; /* the model draws random numbers: outputs are checked for shape */
static const char *case_dir;

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static int report(int code, const char *ops, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int report(int code, const char *ops, const char *fmt, ...)
{
    char msg[2048] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *word = code == 0 ? "pass" : code == EXIT_UNSUPPORTED ? "unsupported" : "fail";
    if (code == EXIT_BAD_DATA) {
        word = "invalid-data";
        code = EXIT_UNSUPPORTED;
    } else if (code == EXIT_RANDOM) {
        word = "random";
        code = 0;
    }
    if (json) {
        printf("{\"case\": ");
        json_str(case_dir);
        printf(", \"status\": \"%s\", \"ops\": ", word);
        json_str(ops);
        printf(", \"reason\": ");
        json_str(msg);
        printf("}\n");
    } else {
        printf("%s %s%s%s\n", word, case_dir, *msg ? ": " : "", msg);
    }
    return code == EXIT_BAD_DATA ? EXIT_UNSUPPORTED : code == EXIT_RANDOM ? 0 : code;
}

static double value_at(const ferry_tensor_view *v, int64_t i)
{
    switch (v->dtype) {
    case FERRY_DTYPE_FLOAT:
        return ((const float *)v->data)[i];
    case FERRY_DTYPE_DOUBLE:
        return ((const double *)v->data)[i];
    case FERRY_DTYPE_BOOL:
    case FERRY_DTYPE_UINT8:
        return ((const uint8_t *)v->data)[i];
    case FERRY_DTYPE_INT8:
        return ((const int8_t *)v->data)[i];
    case FERRY_DTYPE_UINT16:
        return ((const uint16_t *)v->data)[i];
    case FERRY_DTYPE_INT16:
        return ((const int16_t *)v->data)[i];
    case FERRY_DTYPE_INT32:
        return ((const int32_t *)v->data)[i];
    case FERRY_DTYPE_UINT32:
        return ((const uint32_t *)v->data)[i];
    case FERRY_DTYPE_INT64:
        return (double)((const int64_t *)v->data)[i];
    case FERRY_DTYPE_UINT64:
        return (double)((const uint64_t *)v->data)[i];
    case FERRY_DTYPE_FLOAT16:
    case FERRY_DTYPE_BFLOAT16: {
        uint16_t h = ((const uint16_t *)v->data)[i];
        if (v->dtype == FERRY_DTYPE_BFLOAT16) {
            uint32_t u = (uint32_t)h << 16;
            float f;
            memcpy(&f, &u, 4);
            return f;
        }
        int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        double s = (h >> 15) ? -1 : 1;
        if (e == 0) return s * ldexp(m, -24);
        if (e == 31) return m ? NAN : s * INFINITY;
        return s * ldexp(m + 1024, e - 25);
    }
    default:
        return NAN;
    }
}

static bool exact_type(ferry_dtype dt)
{
    return dt != FERRY_DTYPE_FLOAT && dt != FERRY_DTYPE_DOUBLE && dt != FERRY_DTYPE_FLOAT16 &&
           dt != FERRY_DTYPE_BFLOAT16;
}

/* Compares one output; writes the first mismatch into WHY. */
static bool compare(const char *name, const ferry_tensor_view *got, const ferry_tensor_view *want,
                    char *why, size_t size)
{
    if (got->dtype != want->dtype) {
        snprintf(why, size, "output '%s': dtype %s, expected %s", name,
                 ferry_dtype_name(got->dtype), ferry_dtype_name(want->dtype));
        return false;
    }
    bool same = got->rank == want->rank;
    for (int d = 0; same && d < got->rank; d++) same = got->dims[d] == want->dims[d];
    if (!same) {
        char a[256] = "[", b[256] = "[";
        for (int d = 0; d < got->rank; d++)
            snprintf(a + strlen(a), sizeof(a) - strlen(a), "%s%lld", d ? "," : "",
                     (long long)got->dims[d]);
        for (int d = 0; d < want->rank; d++)
            snprintf(b + strlen(b), sizeof(b) - strlen(b), "%s%lld", d ? "," : "",
                     (long long)want->dims[d]);
        snprintf(why, size, "output '%s': shape %s], expected %s]", name, a, b);
        return false;
    }
    int64_t n = ferry_tensor_view_count(want);
    if (want->dtype == FERRY_DTYPE_SEQUENCE || want->dtype == FERRY_DTYPE_OPTIONAL) {
        const ferry_tensor_view *a = got->data, *b = want->data;
        for (int64_t i = 0; i < n; i++) {
            char inner[512];
            if (!compare(name, &a[i], &b[i], inner, sizeof(inner))) {
                snprintf(why, size, "element %lld: %s", (long long)i, inner);
                return false;
            }
        }
        return true;
    }
    if (want->dtype == FERRY_DTYPE_STRING) {
        const char *const *a = got->data, *const *b = want->data;
        for (int64_t i = 0; i < n; i++)
            if (strcmp(a[i] ? a[i] : "", b[i] ? b[i] : "")) {
                snprintf(why, size, "output '%s': element %lld is '%.60s', expected '%.60s'", name,
                         (long long)i, a[i] ? a[i] : "", b[i]);
                return false;
            }
        return true;
    }
    for (int64_t i = 0; i < n; i++) {
        double x = value_at(got, i), y = value_at(want, i);
        bool ok;
        if (exact_type(want->dtype) && want->dtype != FERRY_DTYPE_INT64 &&
            want->dtype != FERRY_DTYPE_UINT64)
            ok = x == y;
        else if (want->dtype == FERRY_DTYPE_INT64 || want->dtype == FERRY_DTYPE_UINT64)
            ok = !memcmp((const char *)got->data + i * 8, (const char *)want->data + i * 8, 8);
        else if (isnan(y))
            ok = isnan(x);
        else if (isinf(y))
            ok = x == y;
        else
            ok = fabs(x - y) <= ATOL + RTOL * fabs(y);
        if (!ok) {
            snprintf(why, size, "output '%s': element %lld is %.9g, expected %.9g", name,
                     (long long)i, x, y);
            return false;
        }
    }
    return true;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int run_set(ferry_model *model, ferry_context *ctx, const char *set, const char *ops)
{
    size_t n_in = ferry_model_input_count(model);
    ferry_tensor *files[256] = {0};
    ferry_tensor_view views[256];
    int rc = 0;
    char path[4096], why[1024];
    size_t n_files = 0;
    while (n_files < 256) {
        snprintf(path, sizeof(path), "%s/input_%zu.pb", set, n_files);
        if (!exists(path)) break;
        n_files++;
    }
    if (n_files != n_in) {
        rc = report(EXIT_UNSUPPORTED, ops,
                    "%s has %zu input files for a model with %zu inputs (optional inputs left "
                    "out)",
                    set, n_files, n_in);
        goto out;
    }
    for (size_t i = 0; i < n_files; i++) {
        snprintf(path, sizeof(path), "%s/input_%zu.pb", set, i);
        ferry_tensor *t;
        ferry_value_info in_info = {0};
        ferry_status_free(ferry_model_input_info(model, i, &in_info));
        ferry_status *st = ferry_value_read_pb(path, in_info.dtype, &t);
        if (st) {
            rc = report(ferry_status_code(st) == FERRY_ERR_UNSUPPORTED ? EXIT_UNSUPPORTED : 1, ops,
                        "%s", ferry_status_message(st));
            ferry_status_free(st);
            goto out;
        }
        /* Bind by name when the file names a model input, else by position. */
        int idx = ferry_model_input_index(model, ferry_tensor_name(t));
        if (idx < 0) idx = (int)i;
        if (files[idx]) idx = (int)i;
        ferry_tensor_free(files[idx]);
        files[idx] = t;
    }
    for (size_t i = 0; i < n_in; i++) {
        if (!files[i]) {
            rc = report(1, ops, "no data for input %zu", i);
            goto out;
        }
        views[i] = *ferry_tensor_get_view(files[i]);
        /* ONNX's test data stores bfloat16 tensors as uint16 (NumPy has no bfloat16): the
         * bits are the same, so read them as the type the model declares. */
        ferry_value_info info;
        if (!ferry_model_input_info(model, i, &info) && info.dtype == FERRY_DTYPE_BFLOAT16 &&
            views[i].dtype == FERRY_DTYPE_UINT16)
            views[i].dtype = FERRY_DTYPE_BFLOAT16;
        if (info.dtype == FERRY_DTYPE_SEQUENCE || info.dtype == FERRY_DTYPE_OPTIONAL) continue;
        /* A few cases ship data that contradicts the model's own declared input shape; any
         * engine that checks inputs (ONNX Runtime does) rejects them. Report, don't hide. */
        bool fits = info.rank < 0 || info.rank == views[i].rank;
        for (int d = 0; fits && info.rank > 0 && d < info.rank; d++)
            if (info.dims[d] >= 0 && info.dims[d] != views[i].dims[d]) fits = false;
        if (!fits) {
            rc = report(EXIT_BAD_DATA, ops,
                        "the test data for input '%s' has %d dims that contradict the model's "
                        "declared shape",
                        info.name, views[i].rank);
            goto out;
        }
    }
    ferry_status *st = ferry_context_run(ctx, views, n_in);
    if (st) {
        rc = report(ferry_status_code(st) == FERRY_ERR_UNSUPPORTED ? EXIT_UNSUPPORTED : 1, ops,
                    "%s", ferry_status_message(st));
        ferry_status_free(st);
        goto out;
    }
    for (size_t o = 0; o < ferry_model_output_count(model); o++) {
        snprintf(path, sizeof(path), "%s/output_%zu.pb", set, o);
        ferry_tensor *want;
        ferry_tensor_view got;
        ferry_value_info info;
        ferry_model_output_info(model, o, &info);
        if ((st = ferry_value_read_pb(path, info.dtype, &want))) {
            rc = report(ferry_status_code(st) == FERRY_ERR_UNSUPPORTED ? EXIT_UNSUPPORTED : 1, ops,
                        "%s", ferry_status_message(st));
            ferry_status_free(st);
            goto out;
        }
        if ((st = ferry_context_output(ctx, o, &got))) {
            rc = report(1, ops, "%s", ferry_status_message(st));
            ferry_status_free(st);
            ferry_tensor_free(want);
            goto out;
        }
        ferry_tensor_view expected = *ferry_tensor_get_view(want);
        if (got.dtype == FERRY_DTYPE_BFLOAT16 && expected.dtype == FERRY_DTYPE_UINT16)
            expected.dtype = FERRY_DTYPE_BFLOAT16; /* same quirk as for inputs */
        bool ok;
        if (random_ops) {
            /* Values drawn from a random generator cannot match another implementation's
             * stream: check what is deterministic, the type and the shape. */
            ok = got.dtype == expected.dtype && got.rank == expected.rank &&
                 !memcmp(got.dims, expected.dims, sizeof(int64_t) * (size_t)got.rank);
            if (!ok) snprintf(why, sizeof(why), "output '%s': type or shape differs", info.name);
        } else {
            ok = compare(info.name, &got, &expected, why, sizeof(why));
        }
        ferry_tensor_free(want);
        if (!ok) {
            rc = report(1, ops, "%s: %s", set, why);
            goto out;
        }
    }
out:
    for (size_t i = 0; i < 256; i++) ferry_tensor_free(files[i]);
    return rc;
}

int main(int argc, char **argv)
{
    int a = 1;
    if (a < argc && !strcmp(argv[a], "--json")) {
        json = true;
        a++;
    }
    if (a + 1 != argc) {
        fprintf(stderr, "usage: ferry-conformance [--json] CASE_DIR\n");
        return 2;
    }
    case_dir = argv[a];
    char path[4096];
    snprintf(path, sizeof(path), "%s/model.onnx", case_dir);
    ferry_model *model;
    ferry_status *st = ferry_model_open_file(path, NULL, &model);
    if (st) {
        int code = ferry_status_code(st) == FERRY_ERR_UNSUPPORTED ? EXIT_UNSUPPORTED : 1;
        report(code, "", "%s", ferry_status_message(st));
        ferry_status_free(st);
        return code;
    }
    char ops[1024] = "";
    for (size_t k = 0; k < ferry_model_node_count(model); k++) {
        const char *op = ferry_model_node_op(model, k);
        char pat[160];
        snprintf(pat, sizeof(pat), " %s ", op);
        char padded[1040];
        snprintf(padded, sizeof(padded), " %s ", ops);
        if (!strstr(padded, pat) && strlen(ops) + strlen(op) + 2 < sizeof(ops))
            snprintf(ops + strlen(ops), sizeof(ops) - strlen(ops), "%s%s", *ops ? " " : "", op);
    }
    static const char *const random_names[] = {"RandomUniform",     "RandomNormal",
                                               "RandomUniformLike", "RandomNormalLike",
                                               "Bernoulli",         "Multinomial"};
    for (size_t k = 0; k < ferry_model_node_count(model); k++)
        for (size_t r = 0; r < sizeof(random_names) / sizeof(random_names[0]); r++)
            if (!strcmp(ferry_model_node_op(model, k), random_names[r])) random_ops = true;
    ferry_context *ctx;
    if ((st = ferry_context_create(model, &ctx))) {
        report(1, ops, "%s", ferry_status_message(st));
        ferry_status_free(st);
        ferry_model_close(model);
        return 1;
    }
    int rc = 0, sets = 0;
    DIR *d = opendir(case_dir);
    struct dirent *e;
    char names[64][256];
    int n_names = 0;
    while (d && (e = readdir(d)) && n_names < 64)
        if (!strncmp(e->d_name, "test_data_set_", 14))
            snprintf(names[n_names++], sizeof(names[0]), "%s", e->d_name);
    if (d) closedir(d);
    for (int i = 0; i < n_names && rc == 0; i++) {
        char set[4096];
        snprintf(set, sizeof(set), "%s/%s", case_dir, names[i]);
        rc = run_set(model, ctx, set, ops);
        sets++;
    }
    if (rc == 0) {
        if (sets == 0)
            rc = report(1, ops, "no test_data_set_* folders");
        else if (random_ops)
            report(EXIT_RANDOM, ops, "random values: type and shape checked in %d data set%s", sets,
                   sets == 1 ? "" : "s");
        else
            report(0, ops, "%d data set%s", sets, sets == 1 ? "" : "s");
    }
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    return rc;
}
