/*
 * The context's two stores and the cubins the driver refuses.
 *
 * A context has a base store (store_path / MARLINRT_CACHE), possibly read-only, and an
 * optional writable overlay (overlay_path / MARLINRT_CACHE_OVERLAY). Lookups read the base
 * first: a shipped store is the reference, and a row the overlay holds for the same key is
 * only ever a copy made where the base could not be written. Every write goes to the overlay
 * when there is one, so a base store is never changed behind its owner's back.
 *
 * A cubin can pass its checksum and still be refused by the driver, typically because it was
 * made by an NVRTC newer than the driver. Such a row is passed over and the cubin fetched
 * again: another stored row made by an older NVRTC, or a compile by the local NVRTC, in which
 * case the refused row is also deleted where its store can be written (evicted). Without
 * NVRTC and without another row the error says what to install or warm.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "context.h"

int mrt__ctx_read_stores(mrt_context *ctx, mrt__store *stores[2])
{
    int count = 0;
    if (ctx->store)
        stores[count++] = ctx->store;
    if (ctx->overlay)
        stores[count++] = ctx->overlay;
    return count;
}

mrt__store *mrt__ctx_write_store(mrt_context *ctx)
{
    if (ctx->overlay)
        return ctx->overlay;
    if (ctx->store && !mrt__store_read_only(ctx->store))
        return ctx->store;
    return NULL;
}

mrt_status mrt__ctx_store_get(mrt_context *ctx, const uint8_t id[16], int by_variant, void **blob, size_t *size,
                              char **entry, mrt__lookup *result, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    mrt__store *stores[2];
    int count = mrt__ctx_read_stores(ctx, stores);
    int saw_corrupt = 0;
    /* A refused cubin is deleted only where NVRTC can make its replacement: without NVRTC the
     * row is passed over but kept, since a machine with a newer driver sharing the store may
     * still use it, and deleting it would leave nothing at all. */
    const mrt__nvrtc_api *nvrtc = NULL;
    int may_evict = ctx->refused_count > 0 && mrt__nvrtc_load(NULL, &nvrtc) == MRT_OK;

    *result = MRT_LOOKUP_MISS;
    for (int i = 0; i < count; i++) {
        uint64_t evicted = 0;
        mrt__lookup found = MRT_LOOKUP_MISS;
        MRT_CHECK(mrt__store_lookup(stores[i], id, by_variant, ctx->refused, ctx->refused_count, blob, size, entry,
                                    &found, &ctx->last_hit, may_evict ? &evicted : NULL, err));
        if (found == MRT_LOOKUP_HIT) {
            *result = MRT_LOOKUP_HIT;
            goto done;
        }
        if (found == MRT_LOOKUP_CORRUPT)
            saw_corrupt = 1;
    }
    *result = saw_corrupt ? MRT_LOOKUP_CORRUPT : MRT_LOOKUP_MISS;
done:
    return rc;
}

mrt_status mrt__ctx_store_put(mrt_context *ctx, const uint8_t key[16], const uint8_t variant[16],
                              const mrt__key_inputs *in, const char *entry, double compile_ms, const void *blob,
                              size_t size, mrt__err *err)
{
    mrt__store *target = mrt__ctx_write_store(ctx);
    if (!target) {
        /* A read-only store with no overlay: the cubin serves this process from memory. */
        ctx->stats.store_writes_skipped++;
        return MRT_OK;
    }
    return mrt__store_put(target, key, variant, in, entry, compile_ms, blob, size, err);
}

/* Driver answers that mean "this image cannot run here", as opposed to a failing driver or a
 * full device: only these make a cubin worth evicting. */
static int driver_refuses_image(CUresult res)
{
    return res == CUDA_ERROR_INVALID_IMAGE || res == CUDA_ERROR_NO_BINARY_FOR_GPU ||
           res == CUDA_ERROR_UNSUPPORTED_PTX_VERSION || res == CUDA_ERROR_INVALID_PTX;
}

static const char *cuda_error_name(const mrt__driver_api *d, CUresult res)
{
    const char *name = NULL;
    if (d->get_error_name(res, &name) != CUDA_SUCCESS || !name)
        name = "unknown CUresult";
    return name;
}

/* Another fetch after a refusal finds at most this many other rows for one variant. */
#define MAX_REFUSALS ((int)(sizeof((mrt_context *)0)->refused / sizeof(uint64_t)))

mrt_status mrt__module_load_checked(mrt_context *ctx, int arch, const mrt__kernel *kernel, const mrt_config *cfg,
                                    void **blob, size_t *size, char **entry, CUmodule *module)
{
    mrt__err *err = &ctx->err;
    const mrt__driver_api *d = ctx->driver;
    mrt_status rc = MRT_OK;
    char config_text[128], fetch_message[MRT_ERRMSG_SIZE];
    const int driver_major = ctx->info.driver_version / 1000, driver_minor = ctx->info.driver_version % 1000 / 10;
    mrt__config_format(cfg, config_text, sizeof config_text);

    *module = NULL;
    CUresult res = d->module_load_data(module, *blob);
    for (int attempt = 0; res != CUDA_SUCCESS && driver_refuses_image(res); attempt++) {
        *module = NULL;
        ctx->stats.driver_refusals++;
        const mrt__row_meta refused_row = ctx->last_hit;
        if (attempt == MAX_REFUSALS)
            MRT_FAIL(err, MRT_ERR_CUDA,
                     "the driver (CUDA %d.%d) refused %d cubins of %s %s for sm_%d in a row (last: %s); install a "
                     "driver that supports the CUDA version of the NVRTC that made them",
                     driver_major, driver_minor, attempt, kernel->name, config_text, arch, cuda_error_name(d, res));
        ctx->refused[ctx->refused_count++] = XXH64(*blob, *size, 0);
        free(*blob);
        free(*entry);
        *blob = NULL;
        *entry = NULL;

        mrt_cubin_origin origin = MRT_CUBIN_FROM_STORE;
        rc = mrt__cubin_fetch(ctx, arch, kernel, cfg, blob, size, entry, &origin);
        if (rc != MRT_OK) {
            snprintf(fetch_message, sizeof fetch_message, "%s", ctx->errbuf);
            if (rc == MRT_ERR_NO_NVRTC)
                MRT_FAIL(err, MRT_ERR_CUDA,
                         "the driver (CUDA %d.%d) refused the stored cubin of %s %s for sm_%d, made by NVRTC %d.%d "
                         "(%s), and NVRTC is not available to compile a replacement: install a driver that supports "
                         "CUDA %d.%d, or warm the store with an NVRTC no newer than CUDA %d.%d. (%s)",
                         driver_major, driver_minor, kernel->name, config_text, arch, refused_row.nvrtc_major,
                         refused_row.nvrtc_minor, cuda_error_name(d, res), refused_row.nvrtc_major,
                         refused_row.nvrtc_minor, driver_major, driver_minor, fetch_message);
            MRT_FAIL(err, rc, "after the driver (CUDA %d.%d) refused the cubin of %s %s for sm_%d (%s): %s",
                     driver_major, driver_minor, kernel->name, config_text, arch, cuda_error_name(d, res),
                     fetch_message);
        }
        res = d->module_load_data(module, *blob);
        if (res != CUDA_SUCCESS && driver_refuses_image(res) && origin != MRT_CUBIN_FROM_STORE) {
            /* Refused straight from NVRTC: the driver is older than the compiler. */
            *module = NULL;
            ctx->stats.driver_refusals++;
            const mrt__nvrtc_api *nvrtc = NULL;
            int nvrtc_major = 0, nvrtc_minor = 0;
            if (mrt__nvrtc_load(NULL, &nvrtc) == MRT_OK)
                nvrtc_major = nvrtc->major, nvrtc_minor = nvrtc->minor;
            MRT_FAIL(err, MRT_ERR_CUDA,
                     "the driver (CUDA %d.%d) refused the cubin of %s %s for sm_%d that NVRTC %d.%d just compiled "
                     "(%s): the driver is older than NVRTC; install a driver for CUDA %d.%d or newer, or set "
                     "MARLINRT_NVRTC_PATH to an NVRTC no newer than CUDA %d.%d",
                     driver_major, driver_minor, kernel->name, config_text, arch, nvrtc_major, nvrtc_minor,
                     cuda_error_name(d, res), nvrtc_major, nvrtc_minor, driver_major, driver_minor);
        }
    }
    if (res != CUDA_SUCCESS) {
        *module = NULL;
        char call[160];
        snprintf(call, sizeof call, "cuModuleLoadData(%s %s sm_%d)", kernel->name, config_text, arch);
        MRT_CHECK(mrt__cuda_fail(err, MRT_ERR_CUDA, call, res));
    }
done:
    ctx->refused_count = 0;
    return rc;
}
