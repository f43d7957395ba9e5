/*
 * The CUDA driver and NVRTC, opened with dlopen (runtime/loader.c). Private.
 *
 * Each library is opened at most once per process (pthread_once); every symbol is resolved
 * up front so a missing one is reported at load time, not at first use. The function tables
 * are immutable after loading, so any thread may call through them.
 */
#ifndef MRT_RUNTIME_LOADER_H
#define MRT_RUNTIME_LOADER_H

#include <cuda.h>
#include <nvrtc.h>

#include "runtime.h"

typedef struct mrt__driver_api {
    CUresult (*init)(unsigned int flags);
    CUresult (*driver_get_version)(int *version);
    CUresult (*get_error_name)(CUresult error, const char **name);
    CUresult (*get_error_string)(CUresult error, const char **text);
    CUresult (*device_get_count)(int *count);
    CUresult (*device_get)(CUdevice *device, int ordinal);
    CUresult (*device_get_name)(char *name, int len, CUdevice device);
    CUresult (*device_get_attribute)(int *value, CUdevice_attribute attrib, CUdevice device);
    CUresult (*primary_ctx_retain)(CUcontext *pctx, CUdevice device);
    CUresult (*primary_ctx_release)(CUdevice device);
    CUresult (*ctx_push_current)(CUcontext ctx);
    CUresult (*ctx_pop_current)(CUcontext *pctx);
    CUresult (*ctx_synchronize)(void);
    CUresult (*module_load_data)(CUmodule *module, const void *image);
    CUresult (*module_unload)(CUmodule module);
    CUresult (*module_get_function)(CUfunction *fn, CUmodule module, const char *name);
    CUresult (*func_get_attribute)(int *value, CUfunction_attribute attrib, CUfunction fn);
    CUresult (*func_set_attribute)(CUfunction fn, CUfunction_attribute attrib, int value);
    CUresult (*launch_kernel)(CUfunction f, unsigned int grid_x, unsigned int grid_y, unsigned int grid_z,
                              unsigned int block_x, unsigned int block_y, unsigned int block_z,
                              unsigned int shared_bytes, CUstream stream, void **params, void **extra);
    CUresult (*stream_synchronize)(CUstream stream);
    CUresult (*event_create)(CUevent *event, unsigned int flags);
    CUresult (*event_record)(CUevent event, CUstream stream);
    CUresult (*event_synchronize)(CUevent event);
    CUresult (*event_elapsed_time)(float *ms, CUevent start, CUevent end);
    CUresult (*event_destroy)(CUevent event);
    CUresult (*mem_alloc)(CUdeviceptr *ptr, size_t bytes);
    CUresult (*mem_free)(CUdeviceptr ptr);
    CUresult (*memcpy_htod)(CUdeviceptr dst, const void *src, size_t bytes);
    CUresult (*memcpy_dtoh)(void *dst, CUdeviceptr src, size_t bytes);
    CUresult (*memcpy_dtod)(CUdeviceptr dst, CUdeviceptr src, size_t bytes);
    CUresult (*memset_d8)(CUdeviceptr dst, unsigned char value, size_t count);
    CUresult (*memset_d32)(CUdeviceptr dst, unsigned int value, size_t count);
    /* Optional (CUDA 12.0+ drivers), NULL when absent: a context's process-unique id, and
     * launches with attributes (programmatic dependent launch). */
    CUresult (*ctx_get_id)(CUcontext ctx, unsigned long long *id);
    CUresult (*launch_kernel_ex)(const CUlaunchConfig *config, CUfunction f, void **params, void **extra);
} mrt__driver_api;

typedef struct mrt__nvrtc_api {
    int major, minor; /* nvrtcVersion, read once at load */
    const char *library; /* path or soname that was opened */
    const char *(*get_error_string)(nvrtcResult result);
    nvrtcResult (*version)(int *major, int *minor);
    nvrtcResult (*get_num_supported_archs)(int *count);
    nvrtcResult (*get_supported_archs)(int *archs);
    nvrtcResult (*create_program)(nvrtcProgram *prog, const char *src, const char *name, int num_headers,
                                  const char *const *headers, const char *const *include_names);
    nvrtcResult (*destroy_program)(nvrtcProgram *prog);
    nvrtcResult (*compile_program)(nvrtcProgram prog, int num_options, const char *const *options);
    nvrtcResult (*get_program_log_size)(nvrtcProgram prog, size_t *size);
    nvrtcResult (*get_program_log)(nvrtcProgram prog, char *log);
    nvrtcResult (*get_cubin_size)(nvrtcProgram prog, size_t *size);
    nvrtcResult (*get_cubin)(nvrtcProgram prog, char *cubin);
    nvrtcResult (*add_name_expression)(nvrtcProgram prog, const char *name_expression);
    nvrtcResult (*get_lowered_name)(nvrtcProgram prog, const char *name_expression, const char **lowered);
} mrt__nvrtc_api;

/* Open libcuda.so.1 (or $MARLINRT_CUDA_DRIVER_PATH) and run cuInit. MRT_ERR_NO_DRIVER when the
 * library is missing, lacks a symbol, is the toolkit's stub, or cuInit fails;
 * MRT_ERR_NO_DEVICE when cuInit reports no device. The same answer for the whole process. */
mrt_status mrt__driver_load(mrt__err *err, const mrt__driver_api **api);

/* Open NVRTC: $MARLINRT_NVRTC_PATH alone when set, else libnvrtc.so.13, .so.12, .so, then the
 * same names under $CUDA_HOME/lib64, $CUDA_PATH/lib64 and /usr/local/cuda/lib64. */
mrt_status mrt__nvrtc_load(mrt__err *err, const mrt__nvrtc_api **api);

/* Format a failed driver call: "<call>: CUDA_ERROR_X (text)". */
mrt_status mrt__cuda_fail(mrt__err *err, mrt_status status, const char *call, CUresult result);

/* Number of nvrtcCompileProgram calls made by this process (for tests and `info`). */
uint64_t mrt__nvrtc_compile_calls(void);
void mrt__nvrtc_count_compile(void);

#endif /* MRT_RUNTIME_LOADER_H */
