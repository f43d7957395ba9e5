/*
 * marlinrt bench: placeholder replaced below.
 */
#include "cli.h"

int cmd_bench(const char *db, int argc, char **argv)
{
    (void)db;
    (void)argc;
    (void)argv;
    return cli_usage_error("bench: not built yet");
}
