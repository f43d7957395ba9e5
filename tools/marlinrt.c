/*
 * The `marlinrt` command-line tool: global options and command dispatch. Each command lives
 * in its own file (tools/cmd_*.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "usage: marlinrt [--db PATH] <command> [options]\n"
    "\n"
    "commands:\n"
    "  info [--json]                 library, NVRTC, driver, GPU and store facts\n"
    "  cache ls [--stale] [--tuning] [--json]\n"
    "                                list the cubins (or tuning winners), stale ones marked\n"
    "  cache verify [--offline] [--json]\n"
    "                                check every checksum; test-load cubins on this GPU\n"
    "  cache export FILE | import FILE [--json]\n"
    "                                merge the store into FILE, or FILE into the store\n"
    "  cache prune [--max-bytes N[K|M|G]] [--unused-days D] [--stale] [--dry-run] [--vacuum]\n"
    "                                drop stale, unused, or least recently used rows\n"
    "  warm [--arch LIST] [--kernel NAME] [--configs default|all|FILE] [--config CFG]\n"
    "       [--jobs N] [--list] [--json]\n"
    "                                compile kernels into the store in N threads; LIST like\n"
    "                                sm_80,sm_90 (default: this machine's GPU, else sm_80,sm_90);\n"
    "                                FILE lines: KERNEL CFG|default|all [ARCHS] (docs/deploying.md)\n"
    "  bench [--shape KxN[,KxN...]] [--m LIST] [--group G] [--config CFG] [--json|--csv]\n"
    "        [--static-weights] [--no-overlap]\n"
    "                                time the GEMM against cuBLAS fp16 and the copy bandwidth\n"
    "                                (the flags: MRT_GEMM_WEIGHTS_STATIC, MRT_GEMM_NO_OVERLAP)\n"
    "  tune [--shape KxN[,KxN...]] [--m LIST] [--group G] [--budget MS] [--batches N]\n"
    "       [--jobs N] [--retime] [--verbose] [--json]\n"
    "                                tune the GEMM (default: bench's shapes and M) and\n"
    "                                record the winners in the store\n"
    "\n"
    "The store is --db PATH, else $MARLINRT_CACHE, else $XDG_CACHE_HOME/marlinrt/cache.db,\n"
    "else ~/.cache/marlinrt/cache.db. MARLINRT_CACHE_READONLY=1 opens it read-only;\n"
    "MARLINRT_CACHE_OVERLAY=PATH adds a writable overlay that takes every write.\n";

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "marlinrt: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", usage_text);
    return 2;
}

void cli_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

int cli_open_context(const char *db, uint32_t flags, mrt_context **ctx)
{
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = db;
    opts.flags = flags;
    mrt_status rc = mrt_context_create(&opts, ctx);
    if (rc != MRT_OK) {
        fprintf(stderr, "marlinrt: cannot open the store: %s: %s\n", mrt_status_str(rc), mrt_thread_errmsg());
        return 1;
    }
    return 0;
}

int cli_parse_archs(const char *list, int *archs, int capacity)
{
    int count = 0;
    const char *p = list;
    while (*p) {
        if (strncmp(p, "sm_", 3) == 0)
            p += 3;
        char *end = NULL;
        long arch = strtol(p, &end, 10);
        if (end == p || arch < 10 || arch > 1000 || count == capacity || (*end && *end != ','))
            return -1;
        archs[count++] = (int)arch;
        p = *end ? end + 1 : end;
    }
    return count;
}

int cli_parse_int_list(const char *list, int64_t *values, int capacity)
{
    int count = 0;
    const char *p = list;
    while (*p) {
        char *end = NULL;
        long long value = strtoll(p, &end, 10);
        if (end == p || value < 1 || count == capacity || (*end && *end != ','))
            return -1;
        values[count++] = value;
        p = *end ? end + 1 : end;
    }
    return count;
}

void cli_format_config(const mrt_config *c, char *buf, size_t size)
{
    snprintf(buf, size, "t%d.m%d.n%d.k%d.s%d.g%d", c->threads, c->thread_m_blocks, c->thread_n_blocks,
             c->thread_k_blocks, c->stages, c->group_blocks);
}

static const struct {
    const char *name;
    cli_command_fn fn;
} commands[] = {
    {"info", cmd_info},
    {"cache", cmd_cache},
    {"warm", cmd_warm},
    {"bench", cmd_bench},
    {"tune", cmd_tune},
};

int main(int argc, char **argv)
{
    const char *db = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            db = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("marlinrt %s\n", mrt_version_string());
            return 0;
        } else
            return cli_usage_error("unknown option \"%s\"", argv[i]);
    }
    if (i >= argc)
        return cli_usage_error("no command given");
    /* A --db after the command is accepted too: take it out before the command parses. */
    int kept = i;
    for (int j = i; j < argc; j++) {
        if (strcmp(argv[j], "--db") == 0 && j + 1 < argc) {
            db = argv[++j];
            continue;
        }
        argv[kept++] = argv[j];
    }
    argc = kept;
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        if (strcmp(argv[i], commands[c].name) == 0)
            return commands[c].fn(db, argc - i, argv + i);
    return cli_usage_error("unknown command \"%s\"", argv[i]);
}
