/* cmd_inspect.c - `ferry inspect`: what a model takes, returns and contains. */
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct op_count {
    const char *op;
    size_t count;
} op_count;

static int by_count(const void *a, const void *b)
{
    const op_count *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->op, y->op);
}

static void print_values(const ferry_model *m, bool inputs)
{
    size_t n = inputs ? ferry_model_input_count(m) : ferry_model_output_count(m);
    printf("%s (%zu):\n", inputs ? "inputs" : "outputs", n);
    for (size_t i = 0; i < n; i++) {
        ferry_value_info info;
        ferry_status *st =
            inputs ? ferry_model_input_info(m, i, &info) : ferry_model_output_info(m, i, &info);
        if (st) {
            ferry_status_free(st);
            continue;
        }
        char dims[512];
        cli_format_dims(&info, dims, sizeof(dims));
        printf("  %-24s %-8s %s\n", info.name, ferry_dtype_name(info.dtype), dims);
    }
}

int cli_inspect(int argc, char **argv)
{
    if (argc != 2) return cli_usage_error("inspect takes exactly one MODEL path");
    ferry_model *m;
    ferry_status *st = ferry_model_open_file(argv[1], NULL, &m);
    if (st) return cli_fail_status(st);
    ferry_model_metadata md;
    ferry_model_get_metadata(m, &md);
    printf("model: %s\n", argv[1]);
    printf("ir_version: %lld\n", (long long)md.ir_version);
    if (*md.producer_name) printf("producer: %s %s\n", md.producer_name, md.producer_version);
    if (*md.graph_name) printf("graph: %s\n", md.graph_name);
    if (md.model_version) printf("model_version: %lld\n", (long long)md.model_version);
    printf("opsets:");
    for (size_t i = 0; i < ferry_model_opset_count(m); i++) {
        const char *dom;
        int64_t ver;
        if (!ferry_model_opset(m, i, &dom, &ver))
            printf(" %s %lld%s", *dom ? dom : "ai.onnx", (long long)ver,
                   i + 1 < ferry_model_opset_count(m) ? "," : "");
    }
    printf("\n");
    for (size_t i = 0; i < md.property_count; i++) {
        const char *k, *v;
        if (!ferry_model_property(m, i, &k, &v)) printf("metadata: %s = %s\n", k, v);
    }
    print_values(m, true);
    print_values(m, false);
    size_t nodes = ferry_model_node_count(m);
    op_count *counts = calloc(nodes + 1, sizeof(*counts));
    size_t n_ops = 0;
    for (size_t k = 0; counts && k < nodes; k++) {
        const char *op = ferry_model_node_op(m, k);
        size_t j = 0;
        while (j < n_ops && strcmp(counts[j].op, op)) j++;
        if (j == n_ops) counts[n_ops++] = (op_count){op, 0};
        counts[j].count++;
    }
    if (counts) qsort(counts, n_ops, sizeof(*counts), by_count);
    printf("operators (%zu nodes):\n", nodes);
    for (size_t j = 0; j < n_ops; j++) printf("  %-24s %zu\n", counts[j].op, counts[j].count);
    free(counts);
    uint64_t params, bytes;
    ferry_model_parameter_stats(m, &params, &bytes);
    const char *unit = "bytes";
    double size = (double)bytes;
    if (bytes >= (1u << 30))
        size /= 1024.0 * 1024.0 * 1024.0, unit = "GiB";
    else if (bytes >= (1u << 20))
        size /= 1024.0 * 1024.0, unit = "MiB";
    else if (bytes >= 1024)
        size /= 1024.0, unit = "KiB";
    printf("parameters: %llu (%.*f %s)\n", (unsigned long long)params, bytes < 1024 ? 0 : 2, size,
           unit);
    printf("samples independent: %s\n",
           ferry_model_batch_separable(m) ? "yes (large batches run in slices)" : "no");
    ferry_model_close(m);
    return CLI_EXIT_OK;
}
