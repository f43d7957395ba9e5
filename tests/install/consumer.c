/*
 * A program built against an installed marlinrt, as a user's would be: through
 * find_package(marlinrt) or pkg-config. It touches the parts that need the library's
 * dependencies (SQLite through a store, xxHash through a cubin key, threads through packing),
 * so a static link missing one of them fails to link.
 */
#include <stdio.h>
#include <string.h>

#include <marlinrt.h>

int main(void)
{
    if (mrt_version_number() != MRT_VERSION_NUMBER) {
        fprintf(stderr, "header says %d, library says %u\n", MRT_VERSION_NUMBER, mrt_version_number());
        return 1;
    }
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.flags = MRT_CTX_NO_STORE | MRT_CTX_OFFLINE;
    mrt_context *ctx = NULL;
    mrt_status rc = mrt_context_create(&opts, &ctx);
    if (rc != MRT_OK) {
        fprintf(stderr, "mrt_context_create: %s: %s\n", mrt_status_str(rc), mrt_thread_errmsg());
        return 1;
    }
    mrt_store_summary summary;
    rc = mrt_store_summary_get(ctx, &summary);
    if (rc != MRT_OK || summary.cubin_rows != 0) {
        fprintf(stderr, "mrt_store_summary_get: %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
        return 1;
    }
    /* A cubin lookup forms its key (xxHash) before it needs NVRTC. */
    mrt_config bad = {.threads = 3};
    void *cubin = NULL;
    size_t size = 0;
    if (mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &bad, &cubin, &size, NULL) != MRT_ERR_UNSUPPORTED) {
        fprintf(stderr, "a bad configuration was not refused\n");
        return 1;
    }
    mrt_context_destroy(ctx);

    uint8_t q[64 * 64], back[64 * 64];
    int32_t packed[64 * 64 / 8];
    for (int i = 0; i < 64 * 64; i++)
        q[i] = (uint8_t)((i * 7) & 15);
    if (mrt_pack_q4(q, 64, 64, packed, 2) != MRT_OK || mrt_unpack_q4(packed, 64, 64, back, 2) != MRT_OK ||
        memcmp(q, back, sizeof q) != 0) {
        fprintf(stderr, "pack / unpack round trip failed: %s\n", mrt_thread_errmsg());
        return 1;
    }
    printf("consumer ok: marlinrt %s\n", mrt_version_string());
    return 0;
}
