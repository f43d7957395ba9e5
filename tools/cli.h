/*
 * Shared by the marlinrt tool's command files (tools/cmd_*.c). Each command gets the store path
 * chosen by the global --db option (NULL for the default) and its own arguments.
 */
#ifndef MRT_TOOLS_CLI_H
#define MRT_TOOLS_CLI_H

#include <stdint.h>

#include "marlinrt.h"

/* A subcommand: argv[0] is the command's name; returns the process exit status
 * (0 success, 1 failure, 2 bad usage). */
typedef int (*cli_command_fn)(const char *db, int argc, char **argv);

int cmd_info(const char *db, int argc, char **argv);
int cmd_cache(const char *db, int argc, char **argv);
int cmd_warm(const char *db, int argc, char **argv);
int cmd_bench(const char *db, int argc, char **argv);
int cmd_tune(const char *db, int argc, char **argv);

/* Print "marlinrt: <message>" and the usage text to stderr; returns 2. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print s as a JSON string literal to stdout. */
void cli_json_string(const char *s);

/* Open a context on db with flags; prints why on failure and returns 1, else 0. */
int cli_open_context(const char *db, uint32_t flags, mrt_context **ctx);

/* Parse "sm_80,sm_90" (or "80,90") into archs; returns the count, or -1 if malformed. */
int cli_parse_archs(const char *list, int *archs, int capacity);

/* Parse a comma-separated list of positive integers (e.g. "1,2,4"); returns the count or -1. */
int cli_parse_int_list(const char *list, int64_t *values, int capacity);

/* "t256.m1.n8.k8.s4.g8" */
void cli_format_config(const mrt_config *c, char *buf, size_t size);

#endif
