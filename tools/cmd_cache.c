/*
 * marlinrt cache: inspect and maintain the store (and its overlay).
 *
 *   ls [--json] [--stale] [--tuning]   the cubins (or the tuning winners), stale ones marked
 *   verify [--json] [--offline]        checksums, and test loads on this machine's GPU
 *   export FILE [--json]               copy every row into FILE (created, or merged into)
 *   import FILE [--json]               copy every row of FILE into the writable store
 *   prune [--max-bytes N] [--unused-days D] [--stale] [--dry-run] [--vacuum] [--json]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void format_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm))
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(buf, size, "%lld", (long long)t);
}

/* "nvrtc,source" for the stale bits, "" for none. */
static void format_stale(int stale, char *buf, size_t size)
{
    static const struct {
        int bit;
        const char *name;
    } reasons[] = {
        {MRT_STALE_NVRTC, "nvrtc"},
        {MRT_STALE_SOURCE, "source"},
        {MRT_STALE_FORMAT, "format"},
        {MRT_STALE_KERNEL, "kernel"},
    };
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if ((stale & reasons[i].bit) && used < size)
            used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? "," : "", reasons[i].name);
}

static void json_stale(int stale)
{
    char text[64];
    format_stale(stale, text, sizeof text);
    printf("[");
    for (char *p = text, *comma; *p; p = comma ? comma + 1 : p + strlen(p)) {
        comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        printf("%s\"%s\"", p == text ? "" : ", ", p);
    }
    printf("]");
}

typedef struct ls_state {
    int json;
    int only_stale;
    int count;
    int stale;
} ls_state;

static int ls_row(const mrt_cubin_row *row, void *user)
{
    ls_state *st = user;
    const mrt_config *c = &row->config;
    if (st->only_stale && !row->stale)
        return 0;
    char created[32], used[32], stale[64];
    format_time(row->created_at, created, sizeof created);
    format_time(row->last_used_at, used, sizeof used);
    format_stale(row->stale, stale, sizeof stale);
    if (st->json) {
        printf("%s{\"key\": \"%s\", \"kernel\": ", st->count ? ",\n " : "", row->key_hex);
        cli_json_string(row->kernel);
        printf(", \"arch\": \"sm_%d\", \"config\": {\"threads\": %d, \"thread_m_blocks\": %d, "
               "\"thread_n_blocks\": %d, \"thread_k_blocks\": %d, \"stages\": %d, \"group_blocks\": %d}, "
               "\"nvrtc\": \"%d.%d\", \"source_hash\": \"%016llx\", \"format_version\": %d, \"bytes\": %llu, "
               "\"created\": \"%s\", \"last_used\": \"%s\", \"hits\": %lld, \"compile_ms\": %.1f, \"store\": \"%s\", "
               "\"stale\": ",
               row->arch, c->threads, c->thread_m_blocks, c->thread_n_blocks, c->thread_k_blocks, c->stages,
               c->group_blocks, row->nvrtc_major, row->nvrtc_minor, (unsigned long long)row->source_hash,
               row->format_version, (unsigned long long)row->size, created, used, (long long)row->hit_count,
               row->compile_ms, row->in_overlay ? "overlay" : "base");
        json_stale(row->stale);
        printf("}");
    } else {
        if (st->count == 0)
            printf("%-14s %-6s %-7s %-4s %-4s %-4s %-6s %-5s %-6s %9s %6s %-20s %-20s %-12s %s\n", "kernel", "arch",
                   "threads", "m", "n", "k", "stages", "group", "nvrtc", "bytes", "hits", "created", "last used",
                   "key", "state");
        printf("%-14s sm_%-3d %-7d %-4d %-4d %-4d %-6d %-5d %2d.%-3d %9llu %6lld %-20s %-20s %.12s %s%s%s\n",
               row->kernel, row->arch, c->threads, c->thread_m_blocks, c->thread_n_blocks, c->thread_k_blocks,
               c->stages, c->group_blocks, row->nvrtc_major, row->nvrtc_minor, (unsigned long long)row->size,
               (long long)row->hit_count, created, used, row->key_hex, row->stale ? "stale:" : "ok", stale,
               row->in_overlay ? " (overlay)" : "");
    }
    st->count++;
    if (row->stale)
        st->stale++;
    return 0;
}

static int ls_winner(const mrt_tuning_winner_row *row, void *user)
{
    ls_state *st = user;
    if (st->only_stale && !row->stale)
        return 0;
    char config_text[96], decided[32], stale[64];
    cli_format_config(&row->config, config_text, sizeof config_text);
    format_time(row->decided_at, decided, sizeof decided);
    format_stale(row->stale, stale, sizeof stale);
    if (st->json) {
        printf("%s{\"fingerprint\": ", st->count ? ",\n " : "");
        cli_json_string(row->fingerprint);
        printf(", \"device\": ");
        cli_json_string(row->device_name);
        printf(", \"kernel\": ");
        cli_json_string(row->kernel);
        printf(", \"dtype\": ");
        cli_json_string(row->dtype);
        printf(", \"group_size\": %d, \"n\": %lld, \"k\": %lld, \"m_bucket\": %lld, \"config\": \"%s\", "
               "\"median_us\": %.3f, \"decided\": \"%s\", \"store\": \"%s\", \"stale\": ",
               row->group_size, (long long)row->n, (long long)row->k, (long long)row->m_bucket, config_text,
               row->median_us, decided, row->in_overlay ? "overlay" : "base");
        json_stale(row->stale);
        printf("}");
    } else {
        if (st->count == 0)
            printf("%-16s %-24s %-14s %-5s %-5s %-7s %-7s %-6s %-24s %10s %-20s %s\n", "device", "name", "kernel",
                   "dtype", "group", "n", "k", "m", "config", "median us", "decided", "state");
        printf("%-16.16s %-24.24s %-14s %-5s %-5d %-7lld %-7lld %-6lld %-24s %10.3f %-20s %s%s%s\n", row->fingerprint,
               row->device_name, row->kernel, row->dtype, row->group_size, (long long)row->n, (long long)row->k,
               (long long)row->m_bucket, config_text, row->median_us, decided, row->stale ? "stale:" : "ok", stale,
               row->in_overlay ? " (overlay)" : "");
    }
    st->count++;
    if (row->stale)
        st->stale++;
    return 0;
}

static void print_store_line(mrt_context *ctx)
{
    if (mrt_store_read_only(ctx))
        printf("store %s is read-only: %s\n", mrt_store_path(ctx), mrt_store_read_only_reason(ctx));
    if (mrt_store_overlay_path(ctx))
        printf("overlay %s\n", mrt_store_overlay_path(ctx));
}

static int cache_ls(mrt_context *ctx, int json, int only_stale, int tuning)
{
    ls_state st = {.json = json, .only_stale = only_stale};
    if (json)
        printf("[");
    mrt_status rc = tuning ? mrt_store_foreach_tuning_winner(ctx, ls_winner, &st)
                           : mrt_store_foreach_cubin(ctx, ls_row, &st);
    if (json) {
        printf("]\n");
    } else if (rc == MRT_OK) {
        mrt_store_summary sum;
        if (tuning)
            printf("%d tuning winner%s (%d stale) in %s\n", st.count, st.count == 1 ? "" : "s", st.stale,
                   mrt_store_path(ctx));
        else
            printf("%d cubin%s in %s (%d stale)\n", st.count, st.count == 1 ? "" : "s", mrt_store_path(ctx),
                   st.stale);
        if (!tuning && (rc = mrt_store_summary_get(ctx, &sum)) == MRT_OK)
            printf("tuning records in the store: %llu devices, %llu timings, %llu winners (cache ls --tuning)\n",
                   (unsigned long long)sum.tuning_device_rows, (unsigned long long)sum.tuning_timing_rows,
                   (unsigned long long)sum.tuning_winner_rows);
        print_store_line(ctx);
    }
    if (rc != MRT_OK) {
        fprintf(stderr, "marlinrt: cache ls: %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
        return 1;
    }
    return 0;
}

typedef struct verify_state {
    int json;
    int count;
} verify_state;

static const char *outcome_name(mrt_verify_outcome outcome)
{
    switch (outcome) {
    case MRT_VERIFY_CHECKED:
        return "checked";
    case MRT_VERIFY_LOADED:
        return "loaded";
    case MRT_VERIFY_BAD_CHECKSUM:
        return "bad-checksum";
    case MRT_VERIFY_LOAD_FAILED:
        return "load-failed";
    }
    return "?";
}

static int verify_row(const mrt_cubin_row *row, mrt_verify_outcome outcome, const char *detail, void *user)
{
    verify_state *st = user;
    char config_text[96];
    cli_format_config(&row->config, config_text, sizeof config_text);
    if (st->json) {
        printf("%s{\"key\": \"%s\", \"kernel\": ", st->count ? ",\n " : "", row->key_hex);
        cli_json_string(row->kernel);
        printf(", \"arch\": \"sm_%d\", \"config\": \"%s\", \"store\": \"%s\", \"result\": \"%s\", \"detail\": ",
               row->arch, config_text, row->in_overlay ? "overlay" : "base", outcome_name(outcome));
        cli_json_string(detail);
        printf("}");
    } else if (outcome == MRT_VERIFY_BAD_CHECKSUM || outcome == MRT_VERIFY_LOAD_FAILED) {
        printf("  %-12s %-14s sm_%-3d %-24s %.12s%s: %s\n", outcome_name(outcome), row->kernel, row->arch,
               config_text, row->key_hex, row->in_overlay ? " (overlay)" : "", detail);
    }
    st->count++;
    return 0;
}

static int cache_verify(mrt_context *ctx, int json)
{
    verify_state st = {.json = json};
    mrt_store_verify_report report;
    if (json)
        printf("{\"rows\": [");
    mrt_status rc = mrt_store_verify(ctx, verify_row, &st, &report);
    if (rc != MRT_OK) {
        if (json)
            printf("]}\n");
        fprintf(stderr, "marlinrt: cache verify: %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
        return 1;
    }
    int bad = report.bad_checksum || report.load_failed || report.bad_tuning_rows;
    if (json) {
        printf("], \"cubins\": %llu, \"bad_checksum\": %llu, \"loaded\": %llu, \"load_failed\": %llu, "
               "\"not_loaded\": %llu, \"tuning_winners\": %llu, \"bad_tuning_rows\": %llu, \"gpu_arch\": ",
               (unsigned long long)report.cubin_rows, (unsigned long long)report.bad_checksum,
               (unsigned long long)report.loaded, (unsigned long long)report.load_failed,
               (unsigned long long)report.not_loaded, (unsigned long long)report.tuning_winner_rows,
               (unsigned long long)report.bad_tuning_rows);
        if (report.gpu_arch)
            printf("\"sm_%d\"", report.gpu_arch);
        else
            printf("null");
        printf(", \"ok\": %s}\n", bad ? "false" : "true");
    } else {
        char gpu[64] = "no GPU: nothing test-loaded";
        if (report.gpu_arch)
            snprintf(gpu, sizeof gpu, "test-loaded on sm_%d", report.gpu_arch);
        printf("verify: %llu cubins, %llu bad checksums, %llu loaded, %llu load failures, %llu not loaded (%s); "
               "%llu tuning winners, %llu bad; %s\n",
               (unsigned long long)report.cubin_rows, (unsigned long long)report.bad_checksum,
               (unsigned long long)report.loaded, (unsigned long long)report.load_failed,
               (unsigned long long)report.not_loaded, gpu, (unsigned long long)report.tuning_winner_rows,
               (unsigned long long)report.bad_tuning_rows, bad ? "PROBLEMS FOUND" : "ok");
        print_store_line(ctx);
    }
    return bad ? 1 : 0;
}

static int cache_merge(mrt_context *ctx, const char *file, int import, int json)
{
    mrt_store_merge_report report;
    mrt_status rc = import ? mrt_store_import(ctx, file, &report) : mrt_store_export(ctx, file, &report);
    const char *verb = import ? "import" : "export";
    if (rc != MRT_OK) {
        fprintf(stderr, "marlinrt: cache %s: %s: %s\n", verb, mrt_status_str(rc), mrt_errmsg(ctx));
        return 1;
    }
    const char *target = import ? (mrt_store_overlay_path(ctx) ? mrt_store_overlay_path(ctx) : mrt_store_path(ctx))
                                : file;
    if (json) {
        printf("{\"%s\": ", verb);
        cli_json_string(file);
        printf(", \"into\": ");
        cli_json_string(target);
        printf(", \"cubins_copied\": %llu, \"cubins_present\": %llu, \"cubins_replaced\": %llu, "
               "\"cubins_corrupt\": %llu, \"tuning_written\": %llu, \"tuning_kept\": %llu}\n",
               (unsigned long long)report.cubins_copied, (unsigned long long)report.cubins_present,
               (unsigned long long)report.cubins_replaced, (unsigned long long)report.cubins_corrupt,
               (unsigned long long)report.tuning_written, (unsigned long long)report.tuning_kept);
    } else {
        printf("%s: %llu cubins copied, %llu already present, %llu replaced, %llu corrupt skipped; %llu tuning rows "
               "written, %llu kept; into %s\n",
               verb, (unsigned long long)report.cubins_copied, (unsigned long long)report.cubins_present,
               (unsigned long long)report.cubins_replaced, (unsigned long long)report.cubins_corrupt,
               (unsigned long long)report.tuning_written, (unsigned long long)report.tuning_kept, target);
    }
    return report.cubins_corrupt ? 1 : 0;
}

/* A byte count with an optional K, M or G suffix (powers of 1024). */
static int parse_bytes(const char *text, int64_t *bytes)
{
    char *end = NULL;
    long long value = strtoll(text, &end, 10);
    if (end == text || value < 0)
        return -1;
    int shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10, end++;
    else if (*end == 'M' || *end == 'm')
        shift = 20, end++;
    else if (*end == 'G' || *end == 'g')
        shift = 30, end++;
    if (*end || value > (INT64_MAX >> shift))
        return -1;
    *bytes = (int64_t)value << shift;
    return 0;
}

static int cache_prune(mrt_context *ctx, const mrt_prune_options *opts, int json)
{
    mrt_prune_report report;
    mrt_status rc = mrt_store_prune(ctx, opts, &report);
    if (rc != MRT_OK) {
        fprintf(stderr, "marlinrt: cache prune: %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
        return 1;
    }
    const char *target = mrt_store_overlay_path(ctx) ? mrt_store_overlay_path(ctx) : mrt_store_path(ctx);
    int dry_run = (opts->flags & MRT_PRUNE_DRY_RUN) != 0;
    if (json) {
        printf("{\"store\": ");
        cli_json_string(target);
        printf(", \"dry_run\": %s, \"cubins_removed\": %llu, \"bytes_removed\": %llu, \"cubins_kept\": %llu, "
               "\"bytes_kept\": %llu, \"tuning_removed\": %llu}\n",
               dry_run ? "true" : "false", (unsigned long long)report.cubins_removed,
               (unsigned long long)report.bytes_removed, (unsigned long long)report.cubins_kept,
               (unsigned long long)report.bytes_kept, (unsigned long long)report.tuning_removed);
    } else {
        printf("prune%s: %llu cubins (%llu bytes) %s, %llu cubins (%llu bytes) kept, %llu tuning rows %s; store %s\n",
               dry_run ? " (dry run)" : "", (unsigned long long)report.cubins_removed,
               (unsigned long long)report.bytes_removed, dry_run ? "would go" : "removed",
               (unsigned long long)report.cubins_kept, (unsigned long long)report.bytes_kept,
               (unsigned long long)report.tuning_removed, dry_run ? "would go" : "removed", target);
    }
    return 0;
}

int cmd_cache(const char *db, int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("cache needs a subcommand: ls, verify, export, import or prune");
    const char *sub = argv[1];
    int json = 0, only_stale = 0, tuning = 0, offline = 0;
    const char *file = NULL;
    mrt_prune_options prune;
    mrt_prune_options_init(&prune);
    int is_ls = strcmp(sub, "ls") == 0, is_verify = strcmp(sub, "verify") == 0;
    int is_export = strcmp(sub, "export") == 0, is_import = strcmp(sub, "import") == 0;
    int is_prune = strcmp(sub, "prune") == 0;
    if (!is_ls && !is_verify && !is_export && !is_import && !is_prune)
        return cli_usage_error("unknown cache subcommand \"%s\"", sub);

    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--json") == 0) {
            json = 1;
        } else if (strcmp(arg, "--stale") == 0 && (is_ls || is_prune)) {
            only_stale = 1;
            prune.flags |= MRT_PRUNE_STALE;
        } else if (strcmp(arg, "--tuning") == 0 && is_ls) {
            tuning = 1;
        } else if (strcmp(arg, "--offline") == 0 && is_verify) {
            offline = 1;
        } else if (strcmp(arg, "--dry-run") == 0 && is_prune) {
            prune.flags |= MRT_PRUNE_DRY_RUN;
        } else if (strcmp(arg, "--vacuum") == 0 && is_prune) {
            prune.flags |= MRT_PRUNE_VACUUM;
        } else if (strcmp(arg, "--max-bytes") == 0 && is_prune && i + 1 < argc) {
            if (parse_bytes(argv[++i], &prune.max_bytes) != 0)
                return cli_usage_error("cache prune: --max-bytes \"%s\": expected bytes, e.g. 500000000 or 500M",
                                       argv[i]);
        } else if (strcmp(arg, "--unused-days") == 0 && is_prune && i + 1 < argc) {
            char *end = NULL;
            double days = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(days >= 0) || days > 1e6)
                return cli_usage_error("cache prune: --unused-days \"%s\": expected a number of days >= 0", argv[i]);
            prune.unused_seconds = (int64_t)(days * 86400.0);
        } else if ((is_export || is_import) && !file && arg[0] != '-') {
            file = arg;
        } else {
            return cli_usage_error("cache %s: unknown argument \"%s\"", sub, arg);
        }
    }
    if ((is_export || is_import) && !file)
        return cli_usage_error("cache %s needs a FILE", sub);
    if (is_prune && prune.max_bytes < 0 && prune.unused_seconds < 0 && !(prune.flags & MRT_PRUNE_STALE))
        return cli_usage_error("cache prune needs --max-bytes, --unused-days or --stale");

    /* verify may use the GPU for test loads; the rest never touch it. */
    mrt_context *ctx = NULL;
    if (cli_open_context(db, is_verify && !offline ? 0 : MRT_CTX_OFFLINE, &ctx))
        return 1;
    int status;
    if (is_ls)
        status = cache_ls(ctx, json, only_stale, tuning);
    else if (is_verify)
        status = cache_verify(ctx, json);
    else if (is_prune)
        status = cache_prune(ctx, &prune, json);
    else
        status = cache_merge(ctx, file, is_import, json);
    mrt_context_destroy(ctx);
    return status;
}
