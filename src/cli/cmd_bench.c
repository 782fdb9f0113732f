/* cmd_bench.c - `ferry bench`: load time and per-run latency of one model, the figures
 * onnxruntime_perf_test and TFLite's benchmark_model give their users. */
#include "cli/cli.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_DIMS    64
#define MAX_SAMPLES 1000000

typedef struct dim_value {
    const char *name;
    int64_t value;
} dim_value;

typedef struct bench_args {
    const char *model;
    int64_t batch;
    int threads;
    double seconds;
    int warmup;
    bool json;
    dim_value dims[MAX_DIMS];
    int n_dims;
} bench_args;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_int(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return cli_usage_error("%s expects an integer in [%lld, %lld], got '%s'", flag,
                               (long long)lo, (long long)hi, s);
    *out = v;
    return CLI_EXIT_OK;
}

static int parse_args(int argc, char **argv, bench_args *a)
{
    memset(a, 0, sizeof(*a));
    a->batch = 1;
    a->threads = 1;
    a->seconds = 5;
    a->warmup = 10;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int64_t v;
        int rc;
        bool has_value = i + 1 < argc;
        if (!strcmp(s, "--json")) {
            a->json = true;
        } else if (!strcmp(s, "--batch") || !strcmp(s, "--threads") || !strcmp(s, "--warmup")) {
            if (!has_value) return cli_usage_error("%s needs a value", s);
            int64_t hi = !strcmp(s, "--batch") ? 1 << 20 : !strcmp(s, "--threads") ? 256 : 100000;
            if ((rc = parse_int(s, argv[++i], s[2] == 'w' ? 0 : 1, hi, &v))) return rc;
            if (s[2] == 'b')
                a->batch = v;
            else if (s[2] == 't')
                a->threads = (int)v;
            else
                a->warmup = (int)v;
        } else if (!strcmp(s, "--seconds")) {
            if (!has_value) return cli_usage_error("--seconds needs a value");
            char *end;
            a->seconds = strtod(argv[++i], &end);
            if (*end || !(a->seconds > 0) || a->seconds > 3600)
                return cli_usage_error("--seconds expects a number in (0, 3600]");
        } else if (!strcmp(s, "--dim")) {
            if (!has_value) return cli_usage_error("--dim needs NAME=VALUE");
            const char *d = argv[++i];
            const char *eq = strchr(d, '=');
            if (!eq || eq == d) return cli_usage_error("--dim expects NAME=VALUE, got '%s'", d);
            if (a->n_dims >= MAX_DIMS) return cli_usage_error("too many --dim flags");
            if ((rc = parse_int("--dim", eq + 1, 0, 1 << 24, &v))) return rc;
            char *name = strndup(d, (size_t)(eq - d));
            if (!name) return cli_fail("out of memory");
            a->dims[a->n_dims++] = (dim_value){name, v};
        } else if (s[0] == '-' && s[1]) {
            return cli_usage_error("unknown option '%s' for bench", s);
        } else if (!a->model) {
            a->model = s;
        } else {
            return cli_usage_error("bench takes one MODEL, got '%s' too", s);
        }
    }
    if (!a->model) return cli_usage_error("bench needs a MODEL path");
    return CLI_EXIT_OK;
}

/* Resolves a symbolic dimension: a --dim by name wins; the leading dimension is the batch. */
static int64_t symbolic_dim(const bench_args *a, const ferry_value_info *info, int d)
{
    const char *name = info->dim_names ? info->dim_names[d] : NULL;
    for (int i = 0; name && i < a->n_dims; i++)
        if (!strcmp(a->dims[i].name, name)) return a->dims[i].value;
    return d == 0 ? a->batch : 1;
}

static uint64_t rng = 0x853c49e6748fea9bull;

static double next_uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

/* Random values of the input's type: floats in [-1, 1), integers in [0, 10) so that indices
 * (token ids, gather positions) stay valid for typical models. */
static void fill_random(ferry_tensor_view *v)
{
    int64_t n = ferry_tensor_view_count(v);
    for (int64_t i = 0; i < n; i++) {
        double u = next_uniform();
        switch (v->dtype) {
        case FERRY_DTYPE_FLOAT:
            ((float *)v->data)[i] = (float)(u * 2 - 1);
            break;
        case FERRY_DTYPE_DOUBLE:
            ((double *)v->data)[i] = u * 2 - 1;
            break;
        case FERRY_DTYPE_BOOL:
            ((uint8_t *)v->data)[i] = u < 0.5;
            break;
        case FERRY_DTYPE_INT64:
            ((int64_t *)v->data)[i] = (int64_t)(u * 10);
            break;
        case FERRY_DTYPE_INT32:
            ((int32_t *)v->data)[i] = (int32_t)(u * 10);
            break;
        case FERRY_DTYPE_UINT8:
        case FERRY_DTYPE_INT8:
            ((uint8_t *)v->data)[i] = (uint8_t)(u * 10);
            break;
        default:
            memset((char *)v->data + (size_t)i * ferry_dtype_size(v->dtype), 0,
                   ferry_dtype_size(v->dtype));
        }
    }
}

/* Peak resident memory of this process in MiB. VmHWM belongs to the process's own address
 * space; getrusage's ru_maxrss survives execve, so a bench started from a large parent (a
 * Python harness) would report the parent's peak instead. */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof(line), f)) {
        long long kb;
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1) {
            fclose(f);
            return (double)kb / 1024.0;
        }
    }
    if (f) fclose(f);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double percentile(const double *sorted, size_t n, double p)
{
    if (!n) return 0;
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    if (i > 0) i--;
    if (i >= n) i = n - 1;
    return sorted[i];
}

int cli_bench(int argc, char **argv)
{
    bench_args a;
    int rc = parse_args(argc, argv, &a);
    ferry_model *model = NULL;
    ferry_context *ctx = NULL;
    ferry_tensor_view *views = NULL;
    double *samples = NULL;
    ferry_status *st;
    size_t n_in = 0;
    if (rc) goto out;
    ferry_model_options opts = {.intra_op_threads = a.threads};
    double t0 = now_s();
    if ((st = ferry_model_open_file(a.model, &opts, &model))) {
        rc = cli_fail_status(st);
        goto out;
    }
    double load_s = now_s() - t0;
    n_in = ferry_model_input_count(model);
    views = calloc(n_in + 1, sizeof(*views));
    samples = malloc(MAX_SAMPLES * sizeof(double));
    if (!views || !samples) {
        rc = cli_fail("out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_in; i++) {
        ferry_value_info info;
        if ((st = ferry_model_input_info(model, i, &info))) {
            rc = cli_fail_status(st);
            goto out;
        }
        if (info.rank < 0 || !ferry_dtype_size(info.dtype)) {
            rc = cli_fail("input '%s' has no declared shape or type to generate data for",
                          info.name);
            goto out;
        }
        views[i].dtype = info.dtype;
        views[i].rank = info.rank;
        for (int d = 0; d < info.rank; d++)
            views[i].dims[d] = info.dims[d] >= 0 ? info.dims[d] : symbolic_dim(&a, &info, d);
        size_t bytes = (size_t)ferry_tensor_view_count(&views[i]) * ferry_dtype_size(info.dtype);
        views[i].data = malloc(bytes ? bytes : 1);
        if (!views[i].data) {
            rc = cli_fail("out of memory for input '%s' (%zu bytes)", info.name, bytes);
            goto out;
        }
        fill_random(&views[i]);
    }
    if ((st = ferry_context_create(model, &ctx))) {
        rc = cli_fail_status(st);
        goto out;
    }
    t0 = now_s();
    if ((st = ferry_context_run(ctx, views, n_in))) {
        rc = cli_fail_status(st);
        goto out;
    }
    double first_s = now_s() - t0;
    for (int i = 0; i < a.warmup; i++)
        if ((st = ferry_context_run(ctx, views, n_in))) {
            rc = cli_fail_status(st);
            goto out;
        }
    size_t n = 0;
    double start = now_s(), end = start + a.seconds;
    while (n < MAX_SAMPLES) {
        double s = now_s();
        if ((st = ferry_context_run(ctx, views, n_in))) {
            rc = cli_fail_status(st);
            goto out;
        }
        double e = now_s();
        samples[n++] = e - s;
        if (e >= end && n >= 5) break;
    }
    double total = now_s() - start;
    qsort(samples, n, sizeof(double), cmp_double);
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += samples[i];
    mean /= (double)n;
    double peak = peak_rss_mib();
    double p50 = percentile(samples, n, 50), p90 = percentile(samples, n, 90),
           p99 = percentile(samples, n, 99);
    if (a.json) {
        printf("{\"model\": \"%s\", \"batch\": %lld, \"threads\": %d, \"runs\": %zu, "
               "\"load_ms\": %.3f, \"first_run_ms\": %.3f, \"median_ms\": %.4f, "
               "\"p90_ms\": %.4f, \"p99_ms\": %.4f, \"mean_ms\": %.4f, \"min_ms\": %.4f, "
               "\"runs_per_s\": %.2f, \"samples_per_s\": %.2f, \"peak_rss_mib\": %.1f}\n",
               a.model, (long long)a.batch, a.threads, n, load_s * 1e3, first_s * 1e3, p50 * 1e3,
               p90 * 1e3, p99 * 1e3, mean * 1e3, samples[0] * 1e3, (double)n / total,
               (double)n * (double)a.batch / total, peak);
    } else {
        printf("model:        %s\n", a.model);
        printf("batch:        %lld   threads: %d   runs: %zu in %.2f s\n", (long long)a.batch,
               a.threads, n, total);
        printf("load:         %.3f ms   first run (plan): %.3f ms\n", load_s * 1e3, first_s * 1e3);
        printf("latency:      median %.4f ms   p90 %.4f ms   p99 %.4f ms   mean %.4f ms   min "
               "%.4f ms\n",
               p50 * 1e3, p90 * 1e3, p99 * 1e3, mean * 1e3, samples[0] * 1e3);
        printf("throughput:   %.2f runs/s   %.2f samples/s\n", (double)n / total,
               (double)n * (double)a.batch / total);
        printf("peak memory:  %.1f MiB\n", peak);
    }
out:
    for (size_t i = 0; views && i < n_in; i++) free(views[i].data);
    free(views);
    free(samples);
    for (int i = 0; i < a.n_dims; i++) free((char *)a.dims[i].name);
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    return rc;
}
