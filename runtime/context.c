/*
 * Context lifetime, options, messages and the store-facing public calls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "context.h"
#include "tune.h"

void mrt_context_options_init(mrt_context_options *opts)
{
    if (opts)
        memset(opts, 0, sizeof *opts);
}

mrt_status mrt_default_store_path(char *buf, size_t size)
{
    mrt__err *err = mrt__thread_err();
    if (!buf || size == 0)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_default_store_path: buf is NULL or size is 0");
    const char *explicit_path = getenv("MARLINRT_CACHE");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (explicit_path && *explicit_path)
        n = snprintf(buf, size, "%s", explicit_path);
    else if (xdg && *xdg)
        n = snprintf(buf, size, "%s/marlinrt/cache.db", xdg);
    else if (home && *home)
        n = snprintf(buf, size, "%s/.cache/marlinrt/cache.db", home);
    else
        return mrt__fail(err, MRT_ERR_NOT_FOUND,
                         "no store path: none of MARLINRT_CACHE, XDG_CACHE_HOME, HOME is set");
    if (n < 0 || (size_t)n >= size)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_default_store_path: buffer of %zu bytes is too small",
                         size);
    return MRT_OK;
}

/* MARLINRT_CACHE_READONLY: "1" forces the base store read-only, "0" or unset leaves the choice
 * to the file's permissions; anything else is refused rather than guessed at. */
static mrt_status env_read_only(mrt__err *err, int *read_only)
{
    const char *value = getenv("MARLINRT_CACHE_READONLY");
    *read_only = 0;
    if (!value || !*value || strcmp(value, "0") == 0)
        return MRT_OK;
    if (strcmp(value, "1") == 0) {
        *read_only = 1;
        return MRT_OK;
    }
    return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "MARLINRT_CACHE_READONLY=\"%s\": must be 0 or 1", value);
}

/* Open the base store and the overlay as the options and environment say. */
static mrt_status open_stores(mrt_context *ctx, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    int read_only = 0;

    MRT_CHECK(env_read_only(err, &read_only));
    if (ctx->opts.flags & MRT_CTX_STORE_READONLY)
        read_only = 1;
    if (ctx->opts.flags & MRT_CTX_NO_STORE)
        read_only = 0; /* a private in-memory store is always writable */
    MRT_CHECK(mrt__store_open_mode(ctx->store_path, read_only ? MRT_STORE_OPEN_READONLY : 0, err, &ctx->store));

    const char *overlay = ctx->opts.overlay_path;
    if (!overlay)
        overlay = getenv("MARLINRT_CACHE_OVERLAY");
    if ((ctx->opts.flags & MRT_CTX_NO_STORE) || !overlay || !*overlay)
        goto done;
    if (strlen(overlay) >= sizeof ctx->overlay_path)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_context_create: overlay path is longer than %zu bytes",
                 sizeof ctx->overlay_path - 1);
    if (strcmp(overlay, ctx->store_path) == 0)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_context_create: the overlay %s is the store itself", overlay);
    snprintf(ctx->overlay_path, sizeof ctx->overlay_path, "%s", overlay);
    MRT_CHECK(mrt__store_open_mode(ctx->overlay_path, MRT_STORE_OPEN_WRITABLE, err, &ctx->overlay));
done:
    ctx->opts.overlay_path = NULL; /* never keep the caller's pointer */
    return rc;
}

mrt_status mrt_context_create(const mrt_context_options *opts, mrt_context **out)
{
    mrt__err *err = mrt__thread_err();
    mrt_status rc = MRT_OK;
    mrt_context *ctx = NULL;
    err->buf[0] = '\0';

    if (!out)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_context_create: out is NULL");
    *out = NULL;
    ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "mrt_context_create: out of memory");
    if (opts)
        ctx->opts = *opts;
    /* MARLINRT_AUTOTUNE=1 turns first-use tuning on for every context of the process; 0 or
     * unset leaves the flag as the caller set it. */
    if (mrt__env_long("MARLINRT_AUTOTUNE", 0) != 0)
        ctx->opts.flags |= MRT_CTX_AUTOTUNE;
    ctx->err.buf = ctx->errbuf;
    ctx->err.size = sizeof ctx->errbuf;
    if (ctx->opts.device < 0)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_context_create: device ordinal %d is negative",
                 ctx->opts.device);

    if (ctx->opts.flags & MRT_CTX_NO_STORE) {
        snprintf(ctx->store_path, sizeof ctx->store_path, ":memory:");
    } else if (ctx->opts.store_path) {
        if (strlen(ctx->opts.store_path) >= sizeof ctx->store_path)
            MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_context_create: store path is longer than %zu bytes",
                     sizeof ctx->store_path - 1);
        snprintf(ctx->store_path, sizeof ctx->store_path, "%s", ctx->opts.store_path);
    } else {
        MRT_CHECK(mrt_default_store_path(ctx->store_path, sizeof ctx->store_path));
    }
    ctx->opts.store_path = NULL; /* never keep the caller's pointer */
    MRT_CHECK(open_stores(ctx, err));

    if (ctx->opts.flags & MRT_CTX_REQUIRE_DEVICE) {
        rc = mrt__device_open(ctx);
        if (rc != MRT_OK) {
            mrt__fail(err, rc, "%s", ctx->errbuf);
            goto done;
        }
    }
    *out = ctx;
    ctx = NULL;
done:
    mrt_context_destroy(ctx);
    return rc;
}

void mrt_context_destroy(mrt_context *ctx)
{
    if (!ctx)
        return;
    if (ctx->cu_context && ctx->driver)
        ctx->driver->primary_ctx_release(ctx->cu_device);
    mrt__tune_state_free(ctx->tune);
    mrt__store_close(ctx->store);
    mrt__store_close(ctx->overlay);
    free(ctx);
}

const char *mrt_errmsg(const mrt_context *ctx)
{
    return ctx ? ctx->errbuf : "no context (NULL)";
}

mrt__err *mrt__ctx_err(mrt_context *ctx)
{
    ctx->errbuf[0] = '\0';
    return &ctx->err;
}

const char *mrt_store_path(const mrt_context *ctx)
{
    return ctx ? ctx->store_path : NULL;
}

mrt_status mrt_get_stats(const mrt_context *ctx, mrt_stats *stats)
{
    if (!ctx)
        return mrt__null_context(__func__);
    if (!stats)
        return mrt__fail(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT, "mrt_get_stats: stats is NULL");
    *stats = ctx->stats;
    return MRT_OK;
}

mrt_status mrt_nvrtc_version(mrt_context *ctx, int *major, int *minor)
{
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!major || !minor)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_nvrtc_version: major or minor is NULL");
    const mrt__nvrtc_api *nvrtc = NULL;
    mrt_status rc = mrt__nvrtc_load(err, &nvrtc);
    if (rc != MRT_OK)
        return rc;
    *major = nvrtc->major;
    *minor = nvrtc->minor;
    return MRT_OK;
}

mrt_status mrt_config_validate(mrt_context *ctx, const char *kernel, const mrt_config *cfg)
{
    mrt__err *err = ctx ? mrt__ctx_err(ctx) : mrt__thread_err();
    if (!kernel || !cfg)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_config_validate: kernel or cfg is NULL");
    const mrt__kernel *k = mrt__kernel_find(kernel);
    if (!k)
        return mrt__fail(err, MRT_ERR_NOT_FOUND, "unknown kernel \"%s\"", kernel);
    return k->validate(cfg, err);
}

double mrt__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
