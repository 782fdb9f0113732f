/* cli.h - the subcommands of the ferry command line. */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include "ferry.h"

/* Exit codes: 0 success, 1 the work failed (bad model, bad input), 2 usage error. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

int cli_run(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_serve(int argc, char **argv);

/* Prints "ferry: MESSAGE" on one line of stderr; returns CLI_EXIT_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the status's message as one line, frees it, returns CLI_EXIT_FAIL. */
int cli_fail_status(ferry_status *st);
/* Prints "ferry: MESSAGE" and a hint to use --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Formats a declared shape, symbolic dims by name: "[batch,3,224,224]". */
void cli_format_dims(const ferry_value_info *info, char *buf, size_t size);

#endif
