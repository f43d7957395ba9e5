/*
 * marlinrt warm: compile kernels into the store ahead of time, with or without a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static int warm(const char *db, const char *arch_list, const char *only_kernel, int json)
{
    int archs[16], arch_count = 0;
    mrt_context *ctx = NULL;
    if (arch_list && (arch_count = cli_parse_archs(arch_list, archs, 16)) <= 0)
        return cli_usage_error("bad --arch list \"%s\" (expected e.g. sm_80,sm_90)", arch_list);
    if (cli_open_context(db, 0, &ctx))
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
                cli_format_config(c, cfg_text, sizeof cfg_text);
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
                        printf(", \"error\": "), cli_json_string(mrt_errmsg(ctx));
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
            cli_json_string(mrt_store_path(ctx)), printf("}\n");
    else
        printf("warm: %d compiled, %d already present, %d failed, %llu bytes, %.2f s, store %s\n", compiled, present,
               failed, (unsigned long long)bytes, seconds, mrt_store_path(ctx));
    mrt_context_destroy(ctx);
    return failed ? 1 : 0;
}


int cmd_warm(const char *db, int argc, char **argv)
{
    int json = 0;
    const char *arch_list = NULL, *kernel = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--arch") == 0 && i + 1 < argc)
            arch_list = argv[++i];
        else if (strcmp(argv[i], "--kernel") == 0 && i + 1 < argc)
            kernel = argv[++i];
        else
            return cli_usage_error("warm: unknown argument \"%s\"", argv[i]);
    }
    if (kernel && mrt_kernel_default_configs(kernel, NULL, 0, &(size_t){0}) != MRT_OK)
        return cli_usage_error("unknown kernel \"%s\"", kernel);
    return warm(db, arch_list, kernel, json);
}
