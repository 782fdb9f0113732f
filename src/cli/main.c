/* main.c - the ferry command: dispatches to subcommands. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void vline(const char *fmt, va_list ap)
{
    char msg[4096];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* One line per error, whatever the message holds, so scripts can rely on it. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "ferry: %s\n", msg);
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
    return CLI_EXIT_FAIL;
}

int cli_fail_status(ferry_status *st)
{
    cli_fail("%s", ferry_status_message(st));
    ferry_status_free(st);
    return CLI_EXIT_FAIL;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ferry: %s (see 'ferry --help')\n", msg);
    return CLI_EXIT_USAGE;
}

void cli_format_dims(const ferry_value_info *info, char *buf, size_t size)
{
    if (info->rank < 0) {
        snprintf(buf, size, "[?]");
        return;
    }
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < info->rank && n < size; i++) {
        const char *sym = info->dim_names ? info->dim_names[i] : NULL;
        if (info->dims[i] >= 0)
            n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "",
                                  (long long)info->dims[i]);
        else
            n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? "," : "", sym ? sym : "?");
    }
    if (n < size) snprintf(buf + n, size - n, "]");
}

static const char usage[] =
    "usage: ferry <command> [options]\n"
    "\n"
    "commands:\n"
    "  run MODEL [INPUT ...] [--input NAME=FILE] [-o DIR]\n"
    "        run an ONNX model on .npy or .pb (TensorProto) inputs; with -o, write each\n"
    "        output to DIR/<output name>.npy, otherwise print a summary of each output\n"
    "  serve --model-repository DIR [--http-port N] [--host ADDR] [options]\n"
    "        serve a Triton-style model repository over HTTP (KServe v2); see 'ferry serve "
    "--help'\n"
    "  inspect MODEL\n"
    "        show inputs, outputs, opsets, operator counts and parameter size\n"
    "  bench MODEL [--batch N] [--threads T] [--seconds S] [--warmup N] [--dim NAME=V] [--json]\n"
    "        [--profile] [--whole-batch]\n"
    "        time one model: load, first run, median/p90/p99 latency, throughput, memory;\n"
    "        random inputs, symbolic dims from --dim (the leading one from --batch); with\n"
    "        --profile, also the time per operator type and the 10 slowest nodes; with\n"
    "        --whole-batch, never run a batch of independent samples as slices\n"
    "  version\n"
    "        print Ferry's version\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run")) return cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cli_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return cli_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cli_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("ferry %s\n", FERRY_VERSION);
        return CLI_EXIT_OK;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    return cli_usage_error("unknown command '%s'", cmd);
}
