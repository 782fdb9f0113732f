/* cmd_run.c - `ferry run`: one inference on tensors read from files. */
#include "cli/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_ARGS 4096

typedef struct run_args {
    const char *model;
    const char *out_dir;
    const char *positional[MAX_ARGS];
    int n_positional;
    const char *named[MAX_ARGS]; /* "NAME=FILE" */
    int n_named;
} run_args;

static int parse_args(int argc, char **argv, run_args *a)
{
    memset(a, 0, sizeof(*a));
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!only_positional && !strcmp(s, "--")) {
            only_positional = true;
        } else if (!only_positional && (!strcmp(s, "-o") || !strcmp(s, "--output-dir"))) {
            if (++i >= argc) return cli_usage_error("%s needs a directory", s);
            a->out_dir = argv[i];
        } else if (!only_positional && !strncmp(s, "--output-dir=", 13)) {
            a->out_dir = s + 13;
        } else if (!only_positional && !strcmp(s, "--input")) {
            if (++i >= argc) return cli_usage_error("--input needs NAME=FILE");
            if (a->n_named >= MAX_ARGS) return cli_usage_error("too many inputs");
            a->named[a->n_named++] = argv[i];
        } else if (!only_positional && !strncmp(s, "--input=", 8)) {
            if (a->n_named >= MAX_ARGS) return cli_usage_error("too many inputs");
            a->named[a->n_named++] = s + 8;
        } else if (!only_positional && s[0] == '-' && s[1]) {
            return cli_usage_error("unknown option '%s' for run", s);
        } else if (!a->model) {
            a->model = s;
        } else {
            if (a->n_positional >= MAX_ARGS) return cli_usage_error("too many inputs");
            a->positional[a->n_positional++] = s;
        }
    }
    if (!a->model) return cli_usage_error("run needs a MODEL path");
    return CLI_EXIT_OK;
}

/* Output file name: the output's name with anything outside [A-Za-z0-9._-] replaced, so a
 * hostile name can neither leave DIR nor hide a file. */
static void safe_name(const char *name, char *buf, size_t size)
{
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < size; p++) {
        char c = *p;
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        buf[n++] = ok ? c : '_';
    }
    buf[n] = 0;
    if (n == 0 || !strcmp(buf, ".") || !strcmp(buf, "..")) snprintf(buf, size, "_%s", name);
    for (char *p = buf; *p; p++)
        if (*p == '/') *p = '_';
}

static void print_value(ferry_dtype dt, const void *data, int64_t i)
{
    switch (dt) {
    case FERRY_DTYPE_FLOAT:
        printf("%.6g", ((const float *)data)[i]);
        break;
    case FERRY_DTYPE_DOUBLE:
        printf("%.8g", ((const double *)data)[i]);
        break;
    case FERRY_DTYPE_BOOL:
        printf("%s", ((const uint8_t *)data)[i] ? "true" : "false");
        break;
    case FERRY_DTYPE_INT8:
        printf("%d", ((const int8_t *)data)[i]);
        break;
    case FERRY_DTYPE_UINT8:
        printf("%u", ((const uint8_t *)data)[i]);
        break;
    case FERRY_DTYPE_INT16:
        printf("%d", ((const int16_t *)data)[i]);
        break;
    case FERRY_DTYPE_UINT16:
        printf("%u", ((const uint16_t *)data)[i]);
        break;
    case FERRY_DTYPE_INT32:
        printf("%" PRId32, ((const int32_t *)data)[i]);
        break;
    case FERRY_DTYPE_UINT32:
        printf("%" PRIu32, ((const uint32_t *)data)[i]);
        break;
    case FERRY_DTYPE_INT64:
        printf("%" PRId64, ((const int64_t *)data)[i]);
        break;
    case FERRY_DTYPE_UINT64:
        printf("%" PRIu64, ((const uint64_t *)data)[i]);
        break;
    default:
        printf("?");
        break;
    }
}

static void print_summary(const char *name, const ferry_tensor_view *v)
{
    int64_t count = ferry_tensor_view_count(v);
    printf("%s: %s [", name, ferry_dtype_name(v->dtype));
    for (int d = 0; d < v->rank; d++) printf("%s%lld", d ? ", " : "", (long long)v->dims[d]);
    printf("]\n  [");
    int64_t show = count < 10 ? count : 10;
    for (int64_t i = 0; i < show; i++) {
        if (i) printf(", ");
        print_value(v->dtype, v->data, i);
    }
    if (count > show) printf(", ... (%lld values)", (long long)count);
    printf("]\n");
}

static int make_dir(const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) return cli_fail("output path '%s' is not a directory", dir);
        return CLI_EXIT_OK;
    }
    if (mkdir(dir, 0777) != 0)
        return cli_fail("cannot create output directory '%s': %s", dir, strerror(errno));
    return CLI_EXIT_OK;
}

int cli_run(int argc, char **argv)
{
    run_args *a = malloc(sizeof(*a));
    if (!a) return cli_fail("out of memory");
    int rc = parse_args(argc, argv, a);
    ferry_model *model = NULL;
    ferry_context *ctx = NULL;
    ferry_tensor **files = NULL;
    ferry_tensor_view *views = NULL;
    ferry_status *st;
    size_t n_in = 0;
    if (rc) goto out;
    if ((st = ferry_model_open_file(a->model, NULL, &model))) {
        rc = cli_fail_status(st);
        goto out;
    }
    n_in = ferry_model_input_count(model);
    files = calloc(n_in + 1, sizeof(*files));
    views = calloc(n_in + 1, sizeof(*views));
    if (!files || !views) {
        rc = cli_fail("out of memory");
        goto out;
    }
    for (int i = 0; i < a->n_named; i++) {
        const char *eq = strchr(a->named[i], '=');
        if (!eq || eq == a->named[i]) {
            rc = cli_usage_error("--input expects NAME=FILE, got '%s'", a->named[i]);
            goto out;
        }
        char name[1024];
        size_t len = (size_t)(eq - a->named[i]);
        if (len >= sizeof(name)) len = sizeof(name) - 1;
        memcpy(name, a->named[i], len);
        name[len] = 0;
        int idx = ferry_model_input_index(model, name);
        if (idx < 0) {
            rc = cli_fail("the model has no input named '%s'", name);
            goto out;
        }
        if (files[idx]) {
            rc = cli_fail("input '%s' is given twice", name);
            goto out;
        }
        if ((st = ferry_tensor_read_file(eq + 1, &files[idx]))) {
            rc = cli_fail_status(st);
            goto out;
        }
    }
    size_t next = 0;
    for (int i = 0; i < a->n_positional; i++) {
        while (next < n_in && files[next]) next++;
        if (next >= n_in) {
            rc = cli_fail("too many inputs: the model takes %zu, got %d", n_in,
                          a->n_positional + a->n_named);
            goto out;
        }
        if ((st = ferry_tensor_read_file(a->positional[i], &files[next]))) {
            rc = cli_fail_status(st);
            goto out;
        }
    }
    for (size_t i = 0; i < n_in; i++) {
        if (!files[i]) {
            ferry_value_info info;
            ferry_model_input_info(model, i, &info);
            rc = cli_fail("missing input '%s': the model takes %zu input%s, got %d", info.name,
                          n_in, n_in == 1 ? "" : "s", a->n_positional + a->n_named);
            goto out;
        }
        views[i] = *ferry_tensor_get_view(files[i]);
    }
    if ((st = ferry_context_create(model, &ctx)) || (st = ferry_context_run(ctx, views, n_in))) {
        rc = cli_fail_status(st);
        goto out;
    }
    if (a->out_dir && (rc = make_dir(a->out_dir))) goto out;
    for (size_t o = 0; o < ferry_model_output_count(model); o++) {
        ferry_value_info info;
        ferry_tensor_view v;
        ferry_model_output_info(model, o, &info);
        if ((st = ferry_context_output(ctx, o, &v))) {
            rc = cli_fail_status(st);
            goto out;
        }
        if (!a->out_dir) {
            print_summary(info.name, &v);
            continue;
        }
        char fname[512], path[PATH_MAX];
        safe_name(info.name, fname, sizeof(fname));
        snprintf(path, sizeof(path), "%s/%s.npy", a->out_dir, fname);
        if ((st = ferry_tensor_write_npy(&v, path))) {
            rc = cli_fail_status(st);
            goto out;
        }
    }
out:
    for (size_t i = 0; files && i < n_in; i++) ferry_tensor_free(files[i]);
    free(files);
    free(views);
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    free(a);
    return rc;
}
