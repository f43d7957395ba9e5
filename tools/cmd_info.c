/*
 * marlinrt info: what the library finds on this machine.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_info(const char *db, int argc, char **argv)
{
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            return cli_usage_error("info: unknown argument \"%s\"", argv[i]);
    }
    mrt_context *ctx = NULL;
    if (cli_open_context(db, 0, &ctx))
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
        cli_json_string(mrt_version_string());
        printf(", \"nvrtc\": {\"found\": %s", nvrtc_rc == MRT_OK ? "true" : "false");
        if (nvrtc_rc == MRT_OK)
            printf(", \"version\": \"%d.%d\"", nv_major, nv_minor);
        else
            printf(", \"why\": "), cli_json_string(nvrtc_why);
        printf("}, \"gpu\": {\"found\": %s", dev_rc == MRT_OK ? "true" : "false");
        if (dev_rc == MRT_OK) {
            printf(", \"name\": ");
            cli_json_string(dev.name);
            printf(", \"compute_capability\": \"%d.%d\", \"sm_count\": %d, \"l2_bytes\": %d, "
                   "\"max_smem_optin\": %d, \"memory_clock_khz\": %d, \"driver_version\": %d",
                   dev.cc_major, dev.cc_minor, dev.sm_count, dev.l2_bytes, dev.max_smem_optin, dev.memory_clock_khz,
                   dev.driver_version);
        } else {
            printf(", \"why\": ");
            cli_json_string(driver_why);
        }
        printf("}, \"store\": {\"path\": ");
        cli_json_string(mrt_store_path(ctx));
        printf(", \"read_only\": %s", mrt_store_read_only(ctx) ? "true" : "false");
        if (mrt_store_read_only(ctx))
            printf(", \"read_only_reason\": "), cli_json_string(mrt_store_read_only_reason(ctx));
        if (mrt_store_overlay_path(ctx))
            printf(", \"overlay\": "), cli_json_string(mrt_store_overlay_path(ctx));
        if (store_rc == MRT_OK)
            printf(", \"schema_version\": %d, \"cubin_rows\": %llu, \"cubin_bytes\": %llu}}\n", sum.schema_version,
                   (unsigned long long)sum.cubin_rows, (unsigned long long)sum.cubin_bytes);
        else
            printf(", \"why\": "), cli_json_string(store_why), printf("}}\n");
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
        printf("store:   %s%s%s%s\n", mrt_store_path(ctx), mrt_store_read_only(ctx) ? " (read-only: " : "",
               mrt_store_read_only(ctx) ? mrt_store_read_only_reason(ctx) : "", mrt_store_read_only(ctx) ? ")" : "");
        if (mrt_store_overlay_path(ctx))
            printf("overlay: %s\n", mrt_store_overlay_path(ctx));
        if (store_rc == MRT_OK)
            printf("         schema %d, %llu cubins, %llu bytes\n", sum.schema_version,
                   (unsigned long long)sum.cubin_rows, (unsigned long long)sum.cubin_bytes);
        else
            printf("         unreadable: %s\n", store_why);
    }
    mrt_context_destroy(ctx);
    return store_rc == MRT_OK ? 0 : 1;
}
