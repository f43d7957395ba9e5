/*
 * marlinrt cache: inspect and maintain the cubin store.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

typedef struct ls_state {
    int json;
    int count;
} ls_state;

static void format_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm))
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(buf, size, "%lld", (long long)t);
}

static int ls_row(const mrt_cubin_row *row, void *user)
{
    ls_state *st = user;
    const mrt_config *c = &row->config;
    char created[32], used[32];
    format_time(row->created_at, created, sizeof created);
    format_time(row->last_used_at, used, sizeof used);
    if (st->json) {
        printf("%s{\"key\": \"%s\", \"kernel\": ", st->count ? ",\n " : "", row->key_hex);
        cli_json_string(row->kernel);
        printf(", \"arch\": \"sm_%d\", \"config\": {\"threads\": %d, \"thread_m_blocks\": %d, "
               "\"thread_n_blocks\": %d, \"thread_k_blocks\": %d, \"stages\": %d, \"group_blocks\": %d}, "
               "\"nvrtc\": \"%d.%d\", \"source_hash\": \"%016llx\", \"format_version\": %d, \"bytes\": %llu, "
               "\"created\": \"%s\", \"last_used\": \"%s\", \"hits\": %lld, \"compile_ms\": %.1f}",
               row->arch, c->threads, c->thread_m_blocks, c->thread_n_blocks, c->thread_k_blocks, c->stages,
               c->group_blocks, row->nvrtc_major, row->nvrtc_minor, (unsigned long long)row->source_hash,
               row->format_version, (unsigned long long)row->size, created, used, (long long)row->hit_count,
               row->compile_ms);
    } else {
        if (st->count == 0)
            printf("%-14s %-6s %-7s %-4s %-4s %-4s %-6s %-5s %-6s %9s %6s %-20s %-20s %s\n", "kernel", "arch",
                   "threads", "m", "n", "k", "stages", "group", "nvrtc", "bytes", "hits", "created", "last used",
                   "key");
        printf("%-14s sm_%-3d %-7d %-4d %-4d %-4d %-6d %-5d %2d.%-3d %9llu %6lld %-20s %-20s %.12s\n", row->kernel,
               row->arch, c->threads, c->thread_m_blocks, c->thread_n_blocks, c->thread_k_blocks, c->stages,
               c->group_blocks, row->nvrtc_major, row->nvrtc_minor, (unsigned long long)row->size,
               (long long)row->hit_count, created, used, row->key_hex);
    }
    st->count++;
    return 0;
}

static int cache_ls(const char *db, int json)
{
    mrt_context *ctx = NULL;
    if (cli_open_context(db, MRT_CTX_OFFLINE, &ctx))
        return 1;
    ls_state st = {.json = json};
    if (json)
        printf("[");
    mrt_status rc = mrt_store_foreach_cubin(ctx, ls_row, &st);
    if (json)
        printf("]\n");
    else if (rc == MRT_OK)
        printf("%d cubin%s in %s\n", st.count, st.count == 1 ? "" : "s", mrt_store_path(ctx));
    if (rc != MRT_OK)
        fprintf(stderr, "marlinrt: cache ls: %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
    mrt_context_destroy(ctx);
    return rc == MRT_OK ? 0 : 1;
}


int cmd_cache(const char *db, int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("cache needs a subcommand: ls");
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            return cli_usage_error("cache %s: unknown argument \"%s\"", argv[1], argv[i]);
    }
    if (strcmp(argv[1], "ls") == 0)
        return cache_ls(db, json);
    return cli_usage_error("unknown cache subcommand \"%s\"", argv[1]);
}
