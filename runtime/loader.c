/*
 * dlopen loaders for the CUDA driver and NVRTC.
 *
 * Neither library is linked: the library must load, and its CPU parts work, on machines with
 * no GPU and no CUDA. A failed load is remembered with its message so every later caller gets
 * the same status and the same explanation.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

/* One library's load outcome, written once under pthread_once and then only read. */
typedef struct load_state {
    pthread_once_t once;
    mrt_status status;
    char message[MRT_ERRMSG_SIZE];
    void *handle;
} load_state;

static load_state driver_state = {.once = PTHREAD_ONCE_INIT};
static load_state nvrtc_state = {.once = PTHREAD_ONCE_INIT};
static mrt__driver_api driver_api;
static mrt__nvrtc_api nvrtc_api;
static char nvrtc_path[1024];
static _Atomic uint64_t nvrtc_compiles;

/* A symbol table entry: where to store the pointer and the names to try in order (the
 * versioned ABI first; some entry points only exist unversioned on older drivers). */
typedef struct symbol {
    void **slot;
    const char *names[3];
} symbol;

static int resolve(void *handle, const symbol *symbols, size_t count, char *message, size_t size,
                   const char *library)
{
    for (size_t i = 0; i < count; i++) {
        void *fn = NULL;
        for (int n = 0; n < 3 && symbols[i].names[n] && !fn; n++)
            fn = dlsym(handle, symbols[i].names[n]);
        if (!fn) {
            snprintf(message, size, "%s lacks the symbol %s (too old or not the real library)", library,
                     symbols[i].names[0]);
            return -1;
        }
        *symbols[i].slot = fn;
    }
    return 0;
}

#define SYM(field, ...) {(void **)&driver_api.field, {__VA_ARGS__}}

static void driver_load_once(void)
{
    const symbol symbols[] = {
        SYM(init, "cuInit"),
        SYM(driver_get_version, "cuDriverGetVersion"),
        SYM(get_error_name, "cuGetErrorName"),
        SYM(get_error_string, "cuGetErrorString"),
        SYM(device_get_count, "cuDeviceGetCount"),
        SYM(device_get, "cuDeviceGet"),
        SYM(device_get_name, "cuDeviceGetName"),
        SYM(device_get_attribute, "cuDeviceGetAttribute"),
        SYM(primary_ctx_retain, "cuDevicePrimaryCtxRetain"),
        SYM(primary_ctx_release, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"),
        SYM(ctx_push_current, "cuCtxPushCurrent_v2", "cuCtxPushCurrent"),
        SYM(ctx_pop_current, "cuCtxPopCurrent_v2", "cuCtxPopCurrent"),
        SYM(ctx_synchronize, "cuCtxSynchronize"),
        SYM(module_load_data, "cuModuleLoadData"),
        SYM(module_unload, "cuModuleUnload"),
        SYM(module_get_function, "cuModuleGetFunction"),
        SYM(func_get_attribute, "cuFuncGetAttribute"),
        SYM(func_set_attribute, "cuFuncSetAttribute"),
        SYM(launch_kernel, "cuLaunchKernel"),
        SYM(stream_synchronize, "cuStreamSynchronize"),
        SYM(event_create, "cuEventCreate"),
        SYM(event_record, "cuEventRecord"),
        SYM(event_synchronize, "cuEventSynchronize"),
        SYM(event_elapsed_time, "cuEventElapsedTime_v2", "cuEventElapsedTime"),
        SYM(event_destroy, "cuEventDestroy_v2", "cuEventDestroy"),
        SYM(mem_alloc, "cuMemAlloc_v2"),
        SYM(mem_free, "cuMemFree_v2"),
        SYM(memcpy_htod, "cuMemcpyHtoD_v2"),
        SYM(memcpy_dtoh, "cuMemcpyDtoH_v2"),
        SYM(memcpy_dtod, "cuMemcpyDtoD_v2"),
        SYM(memset_d8, "cuMemsetD8_v2"),
        SYM(memset_d32, "cuMemsetD32_v2"),
    };
    load_state *st = &driver_state;
    const char *override = getenv("MARLINRT_CUDA_DRIVER_PATH");
    const char *library = override && *override ? override : "libcuda.so.1";

    st->handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!st->handle) {
        const char *why = dlerror();
        snprintf(st->message, sizeof st->message,
                 "CUDA driver not found: dlopen(\"%s\") failed: %s%s", library, why ? why : "unknown error",
                 override ? " (set by MARLINRT_CUDA_DRIVER_PATH)" : "; is the NVIDIA driver installed?");
        st->status = MRT_ERR_NO_DRIVER;
        return;
    }
    if (resolve(st->handle, symbols, sizeof symbols / sizeof symbols[0], st->message, sizeof st->message,
                library) != 0) {
        st->status = MRT_ERR_NO_DRIVER;
        return;
    }
    *(void **)&driver_api.ctx_get_id = dlsym(st->handle, "cuCtxGetId");
    *(void **)&driver_api.launch_kernel_ex = dlsym(st->handle, "cuLaunchKernelEx");
    CUresult res = driver_api.init(0);
    if (res != CUDA_SUCCESS) {
        const char *name = NULL;
        if (driver_api.get_error_name(res, &name) != CUDA_SUCCESS)
            name = NULL;
        if (res == CUDA_ERROR_NO_DEVICE) {
            st->status = MRT_ERR_NO_DEVICE;
            snprintf(st->message, sizeof st->message, "cuInit: CUDA_ERROR_NO_DEVICE: the driver (%s) sees no GPU",
                     library);
        } else if (res == CUDA_ERROR_STUB_LIBRARY) {
            st->status = MRT_ERR_NO_DRIVER;
            snprintf(st->message, sizeof st->message,
                     "cuInit: CUDA_ERROR_STUB_LIBRARY: %s is the toolkit's stub, not a real driver", library);
        } else {
            st->status = MRT_ERR_NO_DRIVER;
            snprintf(st->message, sizeof st->message, "cuInit failed: %s (%d) from %s", name ? name : "error",
                     (int)res, library);
        }
        return;
    }
    st->status = MRT_OK;
}
#undef SYM

mrt_status mrt__driver_load(mrt__err *err, const mrt__driver_api **api)
{
    pthread_once(&driver_state.once, driver_load_once);
    if (driver_state.status != MRT_OK)
        return mrt__fail(err, driver_state.status, "%s", driver_state.message);
    *api = &driver_api;
    return MRT_OK;
}

mrt_status mrt__cuda_fail(mrt__err *err, mrt_status status, const char *call, CUresult result)
{
    const char *name = NULL, *text = NULL;
    if (driver_api.get_error_name && driver_api.get_error_name(result, &name) != CUDA_SUCCESS)
        name = NULL;
    if (driver_api.get_error_string && driver_api.get_error_string(result, &text) != CUDA_SUCCESS)
        text = NULL;
    return mrt__fail(err, status, "%s failed: %s (%d): %s", call, name ? name : "unknown CUresult", (int)result,
                     text ? text : "no description");
}

#define SYM(field, name) {(void **)&nvrtc_api.field, {name}}

static int nvrtc_try(const char *path, char *tried, size_t size)
{
    const symbol symbols[] = {
        SYM(get_error_string, "nvrtcGetErrorString"),
        SYM(version, "nvrtcVersion"),
        SYM(get_num_supported_archs, "nvrtcGetNumSupportedArchs"),
        SYM(get_supported_archs, "nvrtcGetSupportedArchs"),
        SYM(create_program, "nvrtcCreateProgram"),
        SYM(destroy_program, "nvrtcDestroyProgram"),
        SYM(compile_program, "nvrtcCompileProgram"),
        SYM(get_program_log_size, "nvrtcGetProgramLogSize"),
        SYM(get_program_log, "nvrtcGetProgramLog"),
        SYM(get_cubin_size, "nvrtcGetCUBINSize"),
        SYM(get_cubin, "nvrtcGetCUBIN"),
        SYM(add_name_expression, "nvrtcAddNameExpression"),
        SYM(get_lowered_name, "nvrtcGetLoweredName"),
    };
    size_t used = strlen(tried);
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        snprintf(tried + used, size - used, "\n  %s: %s", path, why ? why : "dlopen failed");
        return -1;
    }
    char why[512];
    if (resolve(handle, symbols, sizeof symbols / sizeof symbols[0], why, sizeof why, path) != 0) {
        snprintf(tried + used, size - used, "\n  %s: %s", path, why);
        dlclose(handle);
        return -1;
    }
    nvrtcResult res = nvrtc_api.version(&nvrtc_api.major, &nvrtc_api.minor);
    if (res != NVRTC_SUCCESS) {
        snprintf(tried + used, size - used, "\n  %s: nvrtcVersion failed (%d)", path, (int)res);
        dlclose(handle);
        return -1;
    }
    nvrtc_state.handle = handle;
    snprintf(nvrtc_path, sizeof nvrtc_path, "%s", path);
    nvrtc_api.library = nvrtc_path;
    return 0;
}
#undef SYM

static void nvrtc_load_once(void)
{
    static const char *const names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
    load_state *st = &nvrtc_state;
    char tried[MRT_ERRMSG_SIZE - 256] = "";
    const char *override = getenv("MARLINRT_NVRTC_PATH");

    if (override && *override) {
        if (nvrtc_try(override, tried, sizeof tried) == 0)
            return;
        st->status = MRT_ERR_NO_NVRTC;
        snprintf(st->message, sizeof st->message, "NVRTC not found at MARLINRT_NVRTC_PATH:%s", tried);
        return;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (nvrtc_try(names[i], tried, sizeof tried) == 0)
            return;
    const char *roots[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    for (size_t r = 0; r < sizeof roots / sizeof roots[0]; r++) {
        if (!roots[r] || !*roots[r])
            continue;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/lib64/%s", roots[r], names[i]);
            if (nvrtc_try(path, tried, sizeof tried) == 0)
                return;
        }
    }
    st->status = MRT_ERR_NO_NVRTC;
    snprintf(st->message, sizeof st->message,
             "NVRTC not found (install the CUDA toolkit's NVRTC or set MARLINRT_NVRTC_PATH); tried:%s", tried);
}

mrt_status mrt__nvrtc_load(mrt__err *err, const mrt__nvrtc_api **api)
{
    pthread_once(&nvrtc_state.once, nvrtc_load_once);
    if (nvrtc_state.status != MRT_OK)
        return mrt__fail(err, nvrtc_state.status, "%s", nvrtc_state.message);
    *api = &nvrtc_api;
    return MRT_OK;
}

uint64_t mrt__nvrtc_compile_calls(void)
{
    return atomic_load(&nvrtc_compiles);
}

void mrt__nvrtc_count_compile(void)
{
    atomic_fetch_add(&nvrtc_compiles, 1);
}
