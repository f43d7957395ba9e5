/*
 * The GPU side: opening the device, the process-wide module table, launching.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"

/* ------------------------------------------------------------------------- */
/* Device                                                                     */
/* ------------------------------------------------------------------------- */

static mrt_status device_open_once(mrt_context *ctx, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    const mrt__driver_api *d = NULL;
    CUresult res;
    mrt_device_info *info = &ctx->info;
    int count = 0;

    MRT_CHECK(mrt__driver_load(err, &d));
    ctx->driver = d;
    if ((res = d->device_get_count(&count)) != CUDA_SUCCESS)
        return mrt__cuda_fail(err, MRT_ERR_CUDA, "cuDeviceGetCount", res);
    if (count == 0)
        MRT_FAIL(err, MRT_ERR_NO_DEVICE, "the CUDA driver reports no device");
    if (ctx->opts.device >= count)
        MRT_FAIL(err, MRT_ERR_NO_DEVICE, "device ordinal %d requested but only %d device(s) present",
                 ctx->opts.device, count);
    if ((res = d->device_get(&ctx->cu_device, ctx->opts.device)) != CUDA_SUCCESS)
        return mrt__cuda_fail(err, MRT_ERR_CUDA, "cuDeviceGet", res);

    memset(info, 0, sizeof *info);
    info->ordinal = ctx->opts.device;
    if ((res = d->device_get_name(info->name, (int)sizeof info->name, ctx->cu_device)) != CUDA_SUCCESS)
        return mrt__cuda_fail(err, MRT_ERR_CUDA, "cuDeviceGetName", res);
    const struct {
        CUdevice_attribute attribute;
        int *value;
        const char *what;
    } attributes[] = {
        {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &info->cc_major, "compute capability major"},
        {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &info->cc_minor, "compute capability minor"},
        {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, &info->sm_count, "multiprocessor count"},
        {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, &info->max_smem_optin, "opt-in shared memory"},
        {CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, &info->l2_bytes, "L2 size"},
        {CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, &info->memory_clock_khz, "memory clock"},
    };
    for (size_t i = 0; i < sizeof attributes / sizeof attributes[0]; i++) {
        res = d->device_get_attribute(attributes[i].value, attributes[i].attribute, ctx->cu_device);
        if (res != CUDA_SUCCESS) {
            char call[96];
            snprintf(call, sizeof call, "cuDeviceGetAttribute(%s)", attributes[i].what);
            return mrt__cuda_fail(err, MRT_ERR_CUDA, call, res);
        }
    }
    if ((res = d->driver_get_version(&info->driver_version)) != CUDA_SUCCESS)
        return mrt__cuda_fail(err, MRT_ERR_CUDA, "cuDriverGetVersion", res);
    if (info->cc_major < 8)
        MRT_FAIL(err, MRT_ERR_NO_DEVICE, "%s has compute capability %d.%d; marlinrt needs 8.0 or newer", info->name,
                 info->cc_major, info->cc_minor);
    if ((res = d->primary_ctx_retain(&ctx->cu_context, ctx->cu_device)) != CUDA_SUCCESS)
        return mrt__cuda_fail(err, MRT_ERR_CUDA, "cuDevicePrimaryCtxRetain", res);
    ctx->cu_context_id = (unsigned long long)(uintptr_t)ctx->cu_context;
    if (d->ctx_get_id && (res = d->ctx_get_id(ctx->cu_context, &ctx->cu_context_id)) != CUDA_SUCCESS)
        return mrt__cuda_fail(err, MRT_ERR_CUDA, "cuCtxGetId", res);
done:
    return rc;
}

mrt_status mrt__device_open(mrt_context *ctx)
{
    mrt__err *err = &ctx->err;
    if (ctx->opts.flags & MRT_CTX_OFFLINE)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "this context was created with MRT_CTX_OFFLINE: no GPU use");
    if (!ctx->device_tried) {
        ctx->device_tried = 1;
        ctx->device_status = device_open_once(ctx, err);
        if (ctx->device_status != MRT_OK)
            snprintf(ctx->device_errmsg, sizeof ctx->device_errmsg, "%s", ctx->errbuf);
    }
    if (ctx->device_status != MRT_OK)
        return mrt__fail(err, ctx->device_status, "%s", ctx->device_errmsg);
    return MRT_OK;
}

const mrt_device_info *mrt__device(const mrt_context *ctx)
{
    return &ctx->info;
}

mrt_status mrt_device_get_info(mrt_context *ctx, mrt_device_info *info)
{
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!info)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_device_get_info: info is NULL");
    mrt_status rc = mrt__device_open(ctx);
    if (rc == MRT_OK)
        *info = ctx->info;
    return rc;
}

mrt_status mrt__ctx_push(mrt_context *ctx)
{
    mrt_status rc = mrt__device_open(ctx);
    if (rc != MRT_OK)
        return rc;
    CUresult res = ctx->driver->ctx_push_current(ctx->cu_context);
    if (res != CUDA_SUCCESS)
        return mrt__cuda_fail(&ctx->err, MRT_ERR_CUDA, "cuCtxPushCurrent", res);
    return MRT_OK;
}

void mrt__ctx_pop(mrt_context *ctx)
{
    CUcontext popped;
    ctx->driver->ctx_pop_current(&popped);
}

/* ------------------------------------------------------------------------- */
/* Module table                                                               */
/* ------------------------------------------------------------------------- */

/* One loaded kernel instance per (CUDA context, kernel, configuration). Entries live until the
 * process ends (a few hundred bytes each); those of a CUDA context that was destroyed are never
 * matched again because context ids are not reused. */
typedef struct module_entry {
    struct module_entry *next;
    unsigned long long context_id;
    const mrt__kernel *kernel;
    mrt_config config;
    CUmodule module;
    mrt__function function;
} module_entry;

static pthread_mutex_t module_lock = PTHREAD_MUTEX_INITIALIZER;
static module_entry *modules;

static module_entry *module_find(unsigned long long context_id, const mrt__kernel *kernel, const mrt_config *cfg)
{
    for (module_entry *e = modules; e; e = e->next)
        if (e->context_id == context_id && e->kernel == kernel && memcmp(&e->config, cfg, sizeof *cfg) == 0)
            return e;
    return NULL;
}

static mrt_status module_load(mrt_context *ctx, const mrt__kernel *kernel, const mrt_config *cfg,
                              module_entry **out)
{
    mrt__err *err = &ctx->err;
    const mrt__driver_api *d = ctx->driver;
    mrt_status rc = MRT_OK;
    void *blob = NULL;
    size_t size = 0;
    char *entry_name = NULL;
    module_entry *e = NULL;
    CUresult res;
    int arch = ctx->info.cc_major * 10 + ctx->info.cc_minor;

    MRT_CHECK(mrt__cubin_fetch(ctx, arch, kernel, cfg, &blob, &size, &entry_name, NULL));
    e = calloc(1, sizeof *e);
    if (!e)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory for a module entry");
    e->context_id = ctx->cu_context_id;
    e->kernel = kernel;
    e->config = *cfg;
    /* A cubin the driver refuses is evicted and fetched again (runtime/overlay.c). */
    MRT_CHECK(mrt__module_load_checked(ctx, arch, kernel, cfg, &blob, &size, &entry_name, &e->module));
    ctx->stats.modules_loaded++;
    CUfunction fn = NULL;
    if ((res = d->module_get_function(&fn, e->module, entry_name)) != CUDA_SUCCESS)
        MRT_CHECK(mrt__cuda_fail(err, MRT_ERR_CUDA, "cuModuleGetFunction", res));
    e->function.handle = fn;
    if ((res = d->func_get_attribute(&e->function.max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn)) !=
            CUDA_SUCCESS ||
        (res = d->func_get_attribute(&e->function.static_smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, fn)) !=
            CUDA_SUCCESS)
        MRT_CHECK(mrt__cuda_fail(err, MRT_ERR_CUDA, "cuFuncGetAttribute", res));
    /* Allow the function all the dynamic shared memory the device offers, once at load, so
     * the launch path never has to change function attributes. */
    int dynamic_limit = 48 * 1024 - e->function.static_smem;
    if (ctx->info.max_smem_optin - e->function.static_smem > dynamic_limit) {
        dynamic_limit = ctx->info.max_smem_optin - e->function.static_smem;
        res = d->func_set_attribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, dynamic_limit);
        if (res != CUDA_SUCCESS)
            MRT_CHECK(mrt__cuda_fail(err, MRT_ERR_CUDA, "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)", res));
    }
    e->function.dynamic_smem_set = dynamic_limit;
    *out = e;
    e = NULL;
done:
    if (e) {
        if (e->module)
            d->module_unload(e->module);
        free(e);
    }
    free(blob);
    free(entry_name);
    return rc;
}

mrt_status mrt__get_function(mrt_context *ctx, const char *kernel_name, const mrt_config *cfg, mrt__function *out)
{
    mrt_status rc = MRT_OK;
    const mrt__kernel *kernel = mrt__kernel_find(kernel_name);
    if (!kernel)
        return mrt__fail(&ctx->err, MRT_ERR_NOT_FOUND, "unknown kernel \"%s\"", kernel_name ? kernel_name : "(null)");
    MRT_CHECK(mrt__device_open(ctx));

    pthread_mutex_lock(&module_lock);
    module_entry *e = module_find(ctx->cu_context_id, kernel, cfg);
    pthread_mutex_unlock(&module_lock);
    if (!e) {
        /* Compile and load outside the lock: a compile can take seconds and other threads may
         * want modules that are already loaded. If two threads race, the first insert wins. */
        module_entry *loaded = NULL;
        MRT_CHECK(mrt__ctx_push(ctx));
        rc = module_load(ctx, kernel, cfg, &loaded);
        mrt__ctx_pop(ctx);
        if (rc != MRT_OK)
            goto done;
        pthread_mutex_lock(&module_lock);
        e = module_find(ctx->cu_context_id, kernel, cfg);
        if (!e) {
            loaded->next = modules;
            modules = loaded;
            e = loaded;
            loaded = NULL;
        }
        pthread_mutex_unlock(&module_lock);
        if (loaded) {
            ctx->driver->module_unload(loaded->module);
            free(loaded);
        }
    }
    *out = e->function;
done:
    return rc;
}

int mrt__launch_can_overlap(const mrt_context *ctx)
{
    return ctx->driver && ctx->driver->launch_kernel_ex && ctx->info.cc_major >= 9;
}

static mrt_status launch(mrt_context *ctx, mrt__function *fn, const unsigned grid[3], const unsigned block[3],
                         unsigned dynamic_smem, void *stream, void **params, int overlap)
{
    mrt__err *err = &ctx->err;
    if ((int)dynamic_smem > fn->dynamic_smem_set)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "launch needs %u bytes of dynamic shared memory; the device allows %d for this kernel",
                         dynamic_smem, fn->dynamic_smem_set);
    if ((long long)block[0] * block[1] * block[2] > fn->max_threads)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "launch asks %u x %u x %u threads; the kernel allows %d",
                         block[0], block[1], block[2], fn->max_threads);
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0)
        return mrt__fail(err, MRT_ERR_INTERNAL, "launch with an empty grid");
    if (overlap && !mrt__launch_can_overlap(ctx))
        return mrt__fail(err, MRT_ERR_INTERNAL,
                         "overlapped launch asked of a device or driver without programmatic dependent launch");
    mrt_status rc = mrt__ctx_push(ctx);
    if (rc != MRT_OK)
        return rc;
    CUresult res;
    if (overlap) {
        CUlaunchAttribute attr;
        memset(&attr, 0, sizeof attr);
        attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        CUlaunchConfig config;
        memset(&config, 0, sizeof config);
        config.gridDimX = grid[0];
        config.gridDimY = grid[1];
        config.gridDimZ = grid[2];
        config.blockDimX = block[0];
        config.blockDimY = block[1];
        config.blockDimZ = block[2];
        config.sharedMemBytes = dynamic_smem;
        config.hStream = (CUstream)stream;
        config.attrs = &attr;
        config.numAttrs = 1;
        res = ctx->driver->launch_kernel_ex(&config, (CUfunction)fn->handle, params, NULL);
    } else {
        res = ctx->driver->launch_kernel((CUfunction)fn->handle, grid[0], grid[1], grid[2], block[0], block[1],
                                         block[2], dynamic_smem, (CUstream)stream, params, NULL);
    }
    mrt__ctx_pop(ctx);
    if (res != CUDA_SUCCESS)
        return mrt__cuda_fail(err, MRT_ERR_CUDA, overlap ? "cuLaunchKernelEx" : "cuLaunchKernel", res);
    ctx->stats.launches++;
    ctx->stats.overlapped_launches += (uint64_t)overlap;
    return MRT_OK;
}

mrt_status mrt__launch(mrt_context *ctx, mrt__function *fn, const unsigned grid[3], const unsigned block[3],
                       unsigned dynamic_smem, void *stream, void **params)
{
    return launch(ctx, fn, grid, block, dynamic_smem, stream, params, 0);
}

mrt_status mrt__launch_overlapped(mrt_context *ctx, mrt__function *fn, const unsigned grid[3],
                                  const unsigned block[3], unsigned dynamic_smem, void *stream, void **params)
{
    return launch(ctx, fn, grid, block, dynamic_smem, stream, params, 1);
}

/* ------------------------------------------------------------------------- */
/* Dequantize utility                                                         */
/* ------------------------------------------------------------------------- */

mrt_status mrt_dequant_w4(mrt_context *ctx, void *stream, uint64_t packed, uint64_t scales, uint64_t out, int64_t k,
                          int64_t n, int group_size)
{
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!packed || !scales || !out)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_dequant_w4: packed, scales and out must be non-zero");
    if (packed % 16 || scales % 16 || out % 16)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_dequant_w4: pointers must be 16-byte aligned");
    if (k <= 0 || n <= 0 || k % 64 || n % 64)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT,
                         "mrt_dequant_w4: k = %lld and n = %lld must be positive multiples of 64", (long long)k,
                         (long long)n);
    if (k * n > (int64_t)INT32_MAX || k > INT32_MAX || n > INT32_MAX)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_dequant_w4: k * n = %lld is over 2^31 - 1",
                         (long long)(k * n));
    if (group_size != -1 && group_size != 32 && group_size != 64 && group_size != 128)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_dequant_w4: group_size %d; must be -1, 32, 64 or 128",
                         group_size);
    if (group_size > 0 && k % group_size)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_dequant_w4: k = %lld is not a multiple of group_size %d",
                         (long long)k, group_size);

    /* One group spanning all of K is per-channel in the Marlin scale order (see runtime/pack.c). */
    mrt_config cfg = {.threads = 256, .group_blocks = group_size == -1 || group_size == k ? -1 : group_size / 16};
    mrt__function fn;
    mrt_status rc = mrt__get_function(ctx, MRT_KERNEL_DEQUANT_W4, &cfg, &fn);
    if (rc != MRT_OK)
        return rc;
    int64_t words = k * n / 8;
    int64_t blocks = (words + cfg.threads - 1) / cfg.threads;
    int64_t max_blocks = (int64_t)ctx->info.sm_count * 16;
    unsigned grid[3] = {(unsigned)(blocks < max_blocks ? blocks : max_blocks), 1, 1};
    unsigned block[3] = {(unsigned)cfg.threads, 1, 1};
    int k32 = (int)k, n32 = (int)n;
    void *params[] = {&packed, &scales, &out, &k32, &n32};
    return mrt__launch(ctx, &fn, grid, block, 0, stream, params);
}
