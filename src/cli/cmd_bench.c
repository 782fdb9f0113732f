/* cmd_bench.c - `ferry bench`: load time and per-run latency of one model, the figures
 * onnxruntime_perf_test and TFLite's benchmark_model give their users, and with --profile
 * where the time goes: per operator type and the slowest nodes. */
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
#define TOP_NODES   10

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
    bool profile;
    bool whole_batch;
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
        } else if (!strcmp(s, "--profile")) {
            a->profile = true;
        } else if (!strcmp(s, "--whole-batch")) {
            a->whole_batch = true;
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

/* Writes S as a JSON string literal. */
static void put_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* One operator type's share of the profiled runs. */
typedef struct op_time {
    const char *op;
    size_t nodes; /* nodes of this type that ran */
    uint64_t ns;
} op_time;

/* One node that ran, with its execution-order index. */
typedef struct node_time {
    size_t index;
    ferry_node_profile p;
} node_time;

/* The per-node counters of the timed runs, grouped by operator type. */
typedef struct profile_report {
    op_time *ops;
    size_t n_ops;
    node_time *nodes; /* the nodes that ran, slowest first */
    size_t n_ran, n_nodes;
    uint64_t total_ns; /* summed over nodes */
} profile_report;

static int cmp_op_time(const void *x, const void *y)
{
    const op_time *a = x, *b = y;
    if (a->ns != b->ns) return a->ns < b->ns ? 1 : -1;
    return strcmp(a->op, b->op);
}

static int cmp_node_time(const void *x, const void *y)
{
    const node_time *a = x, *b = y;
    if (a->p.nanoseconds != b->p.nanoseconds) return a->p.nanoseconds < b->p.nanoseconds ? 1 : -1;
    return a->index < b->index ? -1 : a->index > b->index;
}

static void profile_report_free(profile_report *r)
{
    free(r->ops);
    free(r->nodes);
}

/* Reads CTX's node counters into R (owned by the caller: profile_report_free). */
static int collect_profile(const ferry_context *ctx, const ferry_model *model, profile_report *r)
{
    memset(r, 0, sizeof(*r));
    r->n_nodes = ferry_model_node_count(model);
    r->ops = calloc(r->n_nodes + 1, sizeof(*r->ops));
    r->nodes = calloc(r->n_nodes + 1, sizeof(*r->nodes));
    if (!r->ops || !r->nodes) return cli_fail("out of memory for the profile");
    for (size_t k = 0; k < r->n_nodes; k++) {
        ferry_node_profile p;
        ferry_status *st = ferry_context_node_profile(ctx, k, &p);
        if (st) return cli_fail_status(st);
        if (!p.runs) continue; /* folded, fused or evaluated while planning */
        r->nodes[r->n_ran++] = (node_time){k, p};
        r->total_ns += p.nanoseconds;
        size_t o = 0;
        while (o < r->n_ops && strcmp(r->ops[o].op, p.op)) o++;
        if (o == r->n_ops) r->ops[r->n_ops++] = (op_time){p.op, 0, 0};
        r->ops[o].nodes++;
        r->ops[o].ns += p.nanoseconds;
    }
    qsort(r->ops, r->n_ops, sizeof(*r->ops), cmp_op_time);
    qsort(r->nodes, r->n_ran, sizeof(*r->nodes), cmp_node_time);
    return CLI_EXIT_OK;
}

static double share(uint64_t ns, uint64_t total)
{
    return total ? 100.0 * (double)ns / (double)total : 0;
}

/* The "profile" member of --json output: RUNS timed runs. */
static void print_profile_json(const profile_report *r, size_t runs)
{
    printf(", \"profile\": {\"ops\": [");
    for (size_t o = 0; o < r->n_ops; o++) {
        printf("%s{\"op\": ", o ? ", " : "");
        put_json_string(r->ops[o].op);
        printf(", \"nodes\": %zu, \"ms_per_run\": %.6f, \"percent\": %.2f}", r->ops[o].nodes,
               (double)r->ops[o].ns * 1e-6 / (double)runs, share(r->ops[o].ns, r->total_ns));
    }
    printf("], \"nodes\": [");
    for (size_t k = 0; k < r->n_ran && k < TOP_NODES; k++) {
        const node_time *n = &r->nodes[k];
        printf("%s{\"name\": ", k ? ", " : "");
        put_json_string(n->p.name);
        printf(", \"index\": %zu, \"op\": ", n->index);
        put_json_string(n->p.op);
        printf(", \"ms_per_run\": %.6f, \"percent\": %.2f}",
               (double)n->p.nanoseconds * 1e-6 / (double)runs,
               share(n->p.nanoseconds, r->total_ns));
    }
    printf("]}");
}

/* The --profile tables after the text report: time per operator type, then the slowest
 * nodes, both per timed run (RUNS of them). */
static void print_profile_text(const profile_report *r, size_t runs)
{
    int w = 8; /* the op column: at least as wide as "op" and "(total)" */
    for (size_t o = 0; o < r->n_ops; o++)
        if ((int)strlen(r->ops[o].op) > w) w = (int)strlen(r->ops[o].op);
    printf("\nprofile:      %zu of %zu nodes ran", r->n_ran, r->n_nodes);
    if (r->n_ran < r->n_nodes)
        printf(" (%zu folded or fused at load, or run while planning)", r->n_nodes - r->n_ran);
    printf("\n");
    printf("  %-*s %7s %10s %8s\n", w, "op", "nodes", "ms/run", "%");
    for (size_t o = 0; o < r->n_ops; o++)
        printf("  %-*s %7zu %10.4f %8.2f\n", w, r->ops[o].op, r->ops[o].nodes,
               (double)r->ops[o].ns * 1e-6 / (double)runs, share(r->ops[o].ns, r->total_ns));
    printf("  %-*s %7zu %10.4f %8.2f\n", w, "(total)", r->n_ran,
           (double)r->total_ns * 1e-6 / (double)runs, r->total_ns ? 100.0 : 0.0);
    if (!r->n_ran) return;
    printf("\nslowest nodes:\n");
    printf("  %10s %8s  %-*s  %s\n", "ms/run", "%", w, "op", "name");
    for (size_t k = 0; k < r->n_ran && k < TOP_NODES; k++) {
        const node_time *n = &r->nodes[k];
        char unnamed[32];
        snprintf(unnamed, sizeof(unnamed), "(node %zu)", n->index);
        printf("  %10.4f %8.2f  %-*s  %s\n", (double)n->p.nanoseconds * 1e-6 / (double)runs,
               share(n->p.nanoseconds, r->total_ns), w, n->p.op, *n->p.name ? n->p.name : unnamed);
    }
}

int cli_bench(int argc, char **argv)
{
    bench_args a;
    int rc = parse_args(argc, argv, &a);
    ferry_model *model = NULL;
    ferry_context *ctx = NULL;
    ferry_tensor_view *views = NULL;
    double *samples = NULL;
    profile_report prof = {0};
    ferry_status *st;
    size_t n_in = 0;
    if (rc) goto out;
    ferry_model_options opts = {.intra_op_threads = a.threads,
                                .disable_batch_slicing = a.whole_batch};
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
    /* On from the start so that warm-up runs the same timed path; reset after warm-up so that
     * only the timed runs count. */
    if (a.profile && (st = ferry_context_set_profiling(ctx, true))) {
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
    ferry_context_reset_profile(ctx);
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
    if (a.profile && (rc = collect_profile(ctx, model, &prof))) goto out;
    qsort(samples, n, sizeof(double), cmp_double);
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += samples[i];
    mean /= (double)n;
    double peak = peak_rss_mib();
    int64_t slice = ferry_context_slice_size(ctx);
    double p50 = percentile(samples, n, 50), p90 = percentile(samples, n, 90),
           p99 = percentile(samples, n, 99);
    if (a.json) {
        printf("{\"model\": ");
        put_json_string(a.model);
        printf(", \"batch\": %lld, \"threads\": %d, \"runs\": %zu, "
               "\"load_ms\": %.3f, \"first_run_ms\": %.3f, \"median_ms\": %.4f, "
               "\"p90_ms\": %.4f, \"p99_ms\": %.4f, \"mean_ms\": %.4f, \"min_ms\": %.4f, "
               "\"runs_per_s\": %.2f, \"samples_per_s\": %.2f, \"peak_rss_mib\": %.1f",
               (long long)a.batch, a.threads, n, load_s * 1e3, first_s * 1e3, p50 * 1e3, p90 * 1e3,
               p99 * 1e3, mean * 1e3, samples[0] * 1e3, (double)n / total,
               (double)n * (double)a.batch / total, peak);
        printf(", \"slice\": %lld", (long long)slice);
        if (a.profile) print_profile_json(&prof, n);
        printf("}\n");
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
        if (slice)
            printf("batch slices: %lld of %lld samples (--whole-batch to run it at once)\n",
                   (long long)(views[0].dims[0] / slice), (long long)slice);
        if (a.profile) print_profile_text(&prof, n);
    }
out:
    profile_report_free(&prof);
    for (size_t i = 0; views && i < n_in; i++) free(views[i].data);
    free(views);
    free(samples);
    for (int i = 0; i < a.n_dims; i++) free((char *)a.dims[i].name);
    ferry_context_destroy(ctx);
    ferry_model_close(model);
    return rc;
}
