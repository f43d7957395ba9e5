/*
 * The `marlinrt` command-line tool.
 *
 *   marlinrt [--db PATH] info [--json]
 *   marlinrt [--db PATH] cache ls [--json]
 *   marlinrt [--db PATH] warm [--arch sm_80,sm_90] [--kernel NAME] [--json]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "marlinrt.h"

static const char usage_text[] =
    "usage: marlinrt [--db PATH] <command> [options]\n"
    "\n"
    "commands:\n"
    "  info [--json]                 library, NVRTC, driver, GPU and store facts\n"
    "  cache ls [--json]             list the cubins in the store\n"
    "  warm [--arch LIST] [--kernel NAME] [--json]\n"
    "                                compile kernels into the store; LIST like sm_80,sm_90\n"
    "                                (default: this machine's GPU, else sm_80,sm_90)\n"
    "\n"
    "The store is --db PATH, else $MARLINRT_CACHE, else $XDG_CACHE_HOME/marlinrt/cache.db,\n"
    "else ~/.cache/marlinrt/cache.db.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "marlinrt: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage_text);
    return 2;
}

/* Print s as a JSON string literal. */
static void json_string(const char *s)
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

static int open_context(const char *db, uint32_t flags, mrt_context **ctx)
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

/* ------------------------------------------------------------------------- */

static int cmd_info(const char *db, int json)
{
    mrt_context *ctx = NULL;
    if (open_context(db, 0, &ctx))
        return 1;
    char nvrtc_why[4096] = "", driver_why[4096] = "", store_why[4096] = "";
    int nv_major = 0, nv_minor = 0;
    mrt_status nvrtc_rc = mrt_nvrtc_version(ctx, &nv_major, &nv_minor);
    if (nvrtc_rc != MRT_OK)
        snprintf(nvrtc_why, sizeof nvrtc_why, "%s: %s", mrt_status_str(nvrtc_rc), mrt_errmsg(ctx));
    mrt_device_info dev;
    mrt_status dev_rc = mrt_device_get_info(ctx, &dev);
    if (dev_rc != MRT_OK)
        snprintf(driver_why, sizeof driver_why, "%s: %s", mrt_status_str(dev_rc), mrt_errmsg(ctx));
    mrt_store_summary sum;
    mrt_status store_rc = mrt_store_summary_get(ctx, &sum);
    if (store_rc != MRT_OK)
        snprintf(store_why, sizeof store_why, "%s: %s", mrt_status_str(store_rc), mrt_errmsg(ctx));

    if (json) {
        printf("{\"version\": ");
        json_string(mrt_version_string());
        printf(", \"nvrtc\": {\"found\": %s", nvrtc_rc == MRT_OK ? "true" : "false");
        if (nvrtc_rc == MRT_OK)
            printf(", \"version\": \"%d.%d\"", nv_major, nv_minor);
        else
            printf(", \"why\": "), json_string(nvrtc_why);
        printf("}, \"gpu\": {\"found\": %s", dev_rc == MRT_OK ? "true" : "false");
        if (dev_rc == MRT_OK) {
            printf(", \"name\": ");
            json_string(dev.name);
            printf(", \"compute_capability\": \"%d.%d\", \"sm_count\": %d, \"l2_bytes\": %d, "
                   "\"max_smem_optin\": %d, \"memory_clock_khz\": %d, \"driver_version\": %d",
                   dev.cc_major, dev.cc_minor, dev.sm_count, dev.l2_bytes, dev.max_smem_optin, dev.memory_clock_khz,
                   dev.driver_version);
        } else {
            printf(", \"why\": ");
            json_string(driver_why);
        }
        printf("}, \"store\": {\"path\": ");
        json_string(mrt_store_path(ctx));
        if (store_rc == MRT_OK)
            printf(", \"schema_version\": %d, \"cubin_rows\": %llu, \"cubin_bytes\": %llu}}\n", sum.schema_version,
                   (unsigned long long)sum.cubin_rows, (unsigned long long)sum.cubin_bytes);
        else
            printf(", \"why\": "), json_string(store_why), printf("}}\n");
    } else {
        printf("marlinrt %s\n", mrt_version_string());
        if (nvrtc_rc == MRT_OK)
            printf("NVRTC:   %d.%d\n", nv_major, nv_minor);
        else
            printf("NVRTC:   not available: %s\n", nvrtc_why);
        if (dev_rc == MRT_OK)
            printf("GPU:     %s (sm_%d%d, %d SMs, %d KiB L2, %d KiB opt-in shared memory), driver %d.%d\n", dev.name,
                   dev.cc_major, dev.cc_minor, dev.sm_count, dev.l2_bytes / 1024, dev.max_smem_optin / 1024,
                   dev.driver_version / 1000, dev.driver_version % 1000 / 10);
        else
            printf("GPU:     none: %s\n", driver_why);
        printf("store:   %s\n", mrt_store_path(ctx));
        if (store_rc == MRT_OK)
            printf("         schema %d, %llu cubins, %llu bytes\n", sum.schema_version,
                   (unsigned long long)sum.cubin_rows, (unsigned long long)sum.cubin_bytes);
        else
            printf("         unreadable: %s\n", store_why);
    }
    mrt_context_destroy(ctx);
    return store_rc == MRT_OK ? 0 : 1;
}

/* ------------------------------------------------------------------------- */

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
        json_string(row->kernel);
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

static int cmd_cache_ls(const char *db, int json)
{
    mrt_context *ctx = NULL;
    if (open_context(db, MRT_CTX_OFFLINE, &ctx))
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

/* ------------------------------------------------------------------------- */

/* Parse "sm_80,sm_90" (or "80,90") into archs; returns the count or -1. */
static int parse_archs(const char *list, int *archs, int capacity)
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

static int cmd_warm(const char *db, const char *arch_list, const char *only_kernel, int json)
{
    int archs[16], arch_count = 0;
    mrt_context *ctx = NULL;
    if (arch_list && (arch_count = parse_archs(arch_list, archs, 16)) <= 0)
        return usage_error("bad --arch list \"%s\" (expected e.g. sm_80,sm_90)", arch_list);
    if (open_context(db, 0, &ctx))
        return 1;
    if (!arch_list) {
        mrt_device_info dev;
        if (mrt_device_get_info(ctx, &dev) == MRT_OK) {
            archs[0] = dev.cc_major * 10 + dev.cc_minor;
            arch_count = 1;
            if (!json)
                printf("warm: compiling for this machine's GPU, %s (sm_%d)\n", dev.name, archs[0]);
        } else {
            archs[0] = 80;
            archs[1] = 90;
            arch_count = 2;
            if (!json)
                printf("warm: no GPU (%s); compiling for sm_80 and sm_90\n", mrt_errmsg(ctx));
        }
    }

    int compiled = 0, present = 0, failed = 0;
    uint64_t bytes = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (json)
        printf("{\"results\": [");
    int first = 1;
    for (int ki = 0; mrt_kernel_name(ki); ki++) {
        const char *kernel = mrt_kernel_name(ki);
        if (only_kernel && strcmp(only_kernel, kernel) != 0)
            continue;
        size_t count = 0;
        if (mrt_kernel_default_configs(kernel, NULL, 0, &count) != MRT_OK)
            continue;
        mrt_config *configs = calloc(count ? count : 1, sizeof *configs);
        if (!configs || mrt_kernel_default_configs(kernel, configs, count, &count) != MRT_OK) {
            fprintf(stderr, "marlinrt: warm: out of memory\n");
            free(configs);
            mrt_context_destroy(ctx);
            return 1;
        }
        for (int a = 0; a < arch_count; a++) {
            for (size_t i = 0; i < count; i++) {
                void *cubin = NULL;
                size_t size = 0;
                mrt_cubin_origin origin = MRT_CUBIN_FROM_STORE;
                mrt_status rc = mrt_get_cubin(ctx, archs[a], kernel, &configs[i], &cubin, &size, &origin);
                const mrt_config *c = &configs[i];
                char cfg_text[96];
                snprintf(cfg_text, sizeof cfg_text, "t%d.m%d.n%d.k%d.s%d.g%d", c->threads, c->thread_m_blocks,
                         c->thread_n_blocks, c->thread_k_blocks, c->stages, c->group_blocks);
                const char *what = rc != MRT_OK ? "failed" : origin == MRT_CUBIN_FROM_STORE ? "present" : "compiled";
                if (rc != MRT_OK)
                    failed++;
                else if (origin == MRT_CUBIN_FROM_STORE)
                    present++;
                else
                    compiled++, bytes += size;
                if (json) {
                    printf("%s{\"kernel\": \"%s\", \"arch\": \"sm_%d\", \"config\": \"%s\", \"result\": \"%s\", "
                           "\"bytes\": %zu",
                           first ? "" : ",\n ", kernel, archs[a], cfg_text, what, size);
                    if (rc != MRT_OK)
                        printf(", \"error\": "), json_string(mrt_errmsg(ctx));
                    printf("}");
                    first = 0;
                } else {
                    printf("  %-9s %-14s sm_%-3d %-24s %8zu bytes\n", what, kernel, archs[a], cfg_text, size);
                    if (rc != MRT_OK)
                        printf("    %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
                }
                fflush(stdout);
                mrt_free(cubin);
            }
        }
        free(configs);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (json)
        printf("], \"compiled\": %d, \"present\": %d, \"failed\": %d, \"bytes\": %llu, \"seconds\": %.2f, "
               "\"store\": ",
               compiled, present, failed, (unsigned long long)bytes, seconds),
            json_string(mrt_store_path(ctx)), printf("}\n");
    else
        printf("warm: %d compiled, %d already present, %d failed, %llu bytes, %.2f s, store %s\n", compiled, present,
               failed, (unsigned long long)bytes, seconds, mrt_store_path(ctx));
    mrt_context_destroy(ctx);
    return failed ? 1 : 0;
}

/* ------------------------------------------------------------------------- */

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
            return usage_error("unknown option \"%s\"", argv[i]);
    }
    if (i >= argc)
        return usage_error("%s", "no command given");
    const char *command = argv[i++];

    int json = 0;
    const char *arch_list = NULL, *kernel = NULL, *sub = NULL;
    if (strcmp(command, "cache") == 0) {
        if (i >= argc)
            return usage_error("%s", "cache needs a subcommand: ls");
        sub = argv[i++];
    }
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--arch") == 0 && i + 1 < argc && strcmp(command, "warm") == 0)
            arch_list = argv[++i];
        else if (strcmp(argv[i], "--kernel") == 0 && i + 1 < argc && strcmp(command, "warm") == 0)
            kernel = argv[++i];
        else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            db = argv[++i];
        else
            return usage_error("unknown argument \"%s\"", argv[i]);
    }

    if (strcmp(command, "info") == 0)
        return cmd_info(db, json);
    if (strcmp(command, "cache") == 0) {
        if (strcmp(sub, "ls") == 0)
            return cmd_cache_ls(db, json);
        return usage_error("unknown cache subcommand \"%s\"", sub);
    }
    if (strcmp(command, "warm") == 0) {
        if (kernel && mrt_kernel_default_configs(kernel, NULL, 0, &(size_t){0}) != MRT_OK)
            return usage_error("unknown kernel \"%s\"", kernel);
        return cmd_warm(db, arch_list, kernel, json);
    }
    return usage_error("unknown command \"%s\"", command);
}
