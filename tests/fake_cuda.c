/*
 * A stand-in for the CUDA driver (libcuda.so.1), for tests that need the library's GPU-side
 * control flow on machines without a GPU: MARLINRT_CUDA_DRIVER_PATH points the library here.
 *
 * It reports one device (compute capability from MRT_FAKE_CUDA_CC, default 80), keeps
 * "device memory" in host memory, accepts launches without running anything, and loads a
 * module only if the image is an ELF file: cuModuleGetFunction finds a name only if the image
 * contains it. A test can make the next N module loads fail with a chosen CUresult
 * (mrt_fake_cuda_refuse), as a driver older than the NVRTC that made a cubin does. The last
 * launch is recorded (mrt_fake_cuda_last_launch): which entry point, whether it asked for
 * programmatic dependent launch, its dynamic shared memory, and marlin_w4a16's flags argument;
 * mrt_fake_cuda_last_grid gives its grid width.
 *
 * The CUDA headers are not included: their macros rename most entry points to the _v2 names,
 * which are defined here directly with the same parameter types.
 */
#define _POSIX_C_SOURCE 200809L /* posix_memalign */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_API __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef void *CUevent;
typedef unsigned long long CUdeviceptr;

enum {
    FAKE_SUCCESS = 0,
    FAKE_ERROR_INVALID_VALUE = 1,
    FAKE_ERROR_OUT_OF_MEMORY = 2,
    FAKE_ERROR_INVALID_IMAGE = 200,
    FAKE_ERROR_NO_BINARY_FOR_GPU = 209,
    FAKE_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    FAKE_ERROR_NOT_FOUND = 500,
};

/* CUdevice_attribute values the library asks for. */
enum {
    FAKE_ATTR_MAX_SHARED_MEMORY_PER_BLOCK = 8,
    FAKE_ATTR_MEMORY_CLOCK_RATE = 36,
    FAKE_ATTR_MULTIPROCESSOR_COUNT = 16,
    FAKE_ATTR_L2_CACHE_SIZE = 38,
    FAKE_ATTR_COMPUTE_CAPABILITY_MAJOR = 75,
    FAKE_ATTR_COMPUTE_CAPABILITY_MINOR = 76,
    FAKE_ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
};

/* CUfunction_attribute values. */
enum {
    FAKE_FUNC_MAX_THREADS_PER_BLOCK = 0,
};

static int refusals_left;
static CUresult refusal_code = FAKE_ERROR_NO_BINARY_FOR_GPU;
static int module_loads;

/* Test controls, found with dlsym. */
FAKE_API void mrt_fake_cuda_refuse(int count, int code)
{
    refusals_left = count;
    refusal_code = code;
}

FAKE_API int mrt_fake_cuda_module_loads(void)
{
    return module_loads;
}

static int compute_capability(void)
{
    const char *env = getenv("MRT_FAKE_CUDA_CC");
    int cc = env ? atoi(env) : 80;
    return cc >= 10 ? cc : 80;
}

FAKE_API CUresult cuInit(unsigned flags)
{
    (void)flags;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuDriverGetVersion(int *version)
{
    *version = 12080;
    return FAKE_SUCCESS;
}

static const struct {
    CUresult code;
    const char *name;
} error_names[] = {
    {FAKE_SUCCESS, "CUDA_SUCCESS"},
    {FAKE_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE"},
    {FAKE_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY"},
    {FAKE_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE"},
    {FAKE_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU"},
    {FAKE_ERROR_UNSUPPORTED_PTX_VERSION, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"},
    {FAKE_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND"},
};

FAKE_API CUresult cuGetErrorName(CUresult error, const char **name)
{
    for (size_t i = 0; i < sizeof error_names / sizeof error_names[0]; i++)
        if (error_names[i].code == error) {
            *name = error_names[i].name;
            return FAKE_SUCCESS;
        }
    *name = NULL;
    return FAKE_ERROR_INVALID_VALUE;
}

FAKE_API CUresult cuGetErrorString(CUresult error, const char **text)
{
    CUresult res = cuGetErrorName(error, text);
    if (res == FAKE_SUCCESS)
        *text = "reported by the fake driver";
    return res;
}

FAKE_API CUresult cuDeviceGetCount(int *count)
{
    *count = 1;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    if (ordinal != 0)
        return FAKE_ERROR_INVALID_VALUE;
    *device = 0;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuDeviceGetName(char *name, int length, CUdevice device)
{
    (void)device;
    strncpy(name, "marlinrt fake GPU", (size_t)length);
    name[length - 1] = '\0';
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice device)
{
    (void)device;
    switch (attribute) {
    case FAKE_ATTR_COMPUTE_CAPABILITY_MAJOR:
        *value = compute_capability() / 10;
        break;
    case FAKE_ATTR_COMPUTE_CAPABILITY_MINOR:
        *value = compute_capability() % 10;
        break;
    case FAKE_ATTR_MULTIPROCESSOR_COUNT:
        *value = 8;
        break;
    case FAKE_ATTR_MAX_SHARED_MEMORY_PER_BLOCK:
        *value = 48 * 1024;
        break;
    case FAKE_ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
        *value = 163 * 1024;
        break;
    case FAKE_ATTR_L2_CACHE_SIZE:
        *value = 4 << 20;
        break;
    case FAKE_ATTR_MEMORY_CLOCK_RATE:
        *value = 1000000;
        break;
    default:
        *value = 0;
    }
    return FAKE_SUCCESS;
}

static int primary_context;

FAKE_API CUresult cuDevicePrimaryCtxRetain(CUcontext *context, CUdevice device)
{
    (void)device;
    *context = &primary_context;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device)
{
    (void)device;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuCtxPushCurrent_v2(CUcontext context)
{
    (void)context;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuCtxPopCurrent_v2(CUcontext *context)
{
    if (context)
        *context = &primary_context;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuCtxGetCurrent(CUcontext *context)
{
    *context = &primary_context;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuCtxSetCurrent(CUcontext context)
{
    (void)context;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuCtxSynchronize(void)
{
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuCtxGetId(CUcontext context, unsigned long long *id)
{
    (void)context;
    *id = 1;
    return FAKE_SUCCESS;
}

/* A loaded module: a copy of the image, searched for function names. */
typedef struct fake_module {
    unsigned char *image;
    size_t size;
} fake_module;

/* The bytes of an ELF64 file: its section header table is the last thing in it. */
static size_t elf_size(const unsigned char *image)
{
    uint64_t shoff;
    uint16_t shentsize, shnum;
    memcpy(&shoff, image + 0x28, sizeof shoff);
    memcpy(&shentsize, image + 0x3a, sizeof shentsize);
    memcpy(&shnum, image + 0x3c, sizeof shnum);
    return (size_t)(shoff + (uint64_t)shentsize * shnum);
}

FAKE_API CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    const unsigned char *bytes = image;
    module_loads++;
    *module = NULL;
    if (refusals_left > 0) {
        refusals_left--;
        return refusal_code;
    }
    if (!bytes || memcmp(bytes, "\x7f" "ELF", 4) != 0 || bytes[4] != 2)
        return FAKE_ERROR_INVALID_IMAGE;
    size_t size = elf_size(bytes);
    if (size < 64 || size > (256u << 20))
        return FAKE_ERROR_INVALID_IMAGE;
    fake_module *m = malloc(sizeof *m);
    if (!m || !(m->image = malloc(size))) {
        free(m);
        return FAKE_ERROR_OUT_OF_MEMORY;
    }
    memcpy(m->image, bytes, size);
    m->size = size;
    *module = m;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuModuleUnload(CUmodule module)
{
    fake_module *m = module;
    if (!m)
        return FAKE_ERROR_INVALID_VALUE;
    free(m->image);
    free(m);
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuModuleGetFunction(CUfunction *function, CUmodule module, const char *name)
{
    fake_module *m = module;
    size_t length = strlen(name);
    *function = NULL;
    if (!m || length == 0)
        return FAKE_ERROR_INVALID_VALUE;
    for (size_t i = 0; i + length <= m->size; i++)
        if (memcmp(m->image + i, name, length + 1 <= m->size - i ? length + 1 : length) == 0) {
            *function = m->image + i;
            return FAKE_SUCCESS;
        }
    return FAKE_ERROR_NOT_FOUND;
}

FAKE_API CUresult cuFuncGetAttribute(int *value, int attribute, CUfunction function)
{
    (void)function;
    *value = attribute == FAKE_FUNC_MAX_THREADS_PER_BLOCK ? 1024 : 0;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuFuncSetAttribute(CUfunction function, int attribute, int value)
{
    (void)function, (void)attribute, (void)value;
    return FAKE_SUCCESS;
}

/* The launch records. The function handle points at the kernel's name inside the image
 * (cuModuleGetFunction above), so marlin_w4a16 launches are recognised by name; their 10th
 * parameter is the int `flags`. */
static struct {
    int with_attributes; /* cuLaunchKernelEx rather than cuLaunchKernel */
    int overlap;         /* programmatic stream serialization asked for */
    unsigned shared;
    int marlin_flags; /* -1 when the launch was not marlin_w4a16 */
    unsigned grid_x;
} last_launch = {0, 0, 0, -1, 0};

static void record_launch(CUfunction f, unsigned grid_x, unsigned shared, void **params, int with_attributes,
                          int overlap)
{
    last_launch.grid_x = grid_x;
    last_launch.with_attributes = with_attributes;
    last_launch.overlap = overlap;
    last_launch.shared = shared;
    last_launch.marlin_flags = f && params && strstr((const char *)f, "marlin_w4a16") ? *(int *)params[9] : -1;
}

FAKE_API void mrt_fake_cuda_last_launch(int *with_attributes, int *overlap, unsigned *shared, int *marlin_flags)
{
    *with_attributes = last_launch.with_attributes;
    *overlap = last_launch.overlap;
    *shared = last_launch.shared;
    *marlin_flags = last_launch.marlin_flags;
}

FAKE_API unsigned mrt_fake_cuda_last_grid(void)
{
    return last_launch.grid_x;
}

FAKE_API CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                 unsigned bz, unsigned shared, CUstream stream, void **params, void **extra)
{
    (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)stream, (void)extra;
    record_launch(f, gx, shared, params, 0, 0);
    return FAKE_SUCCESS;
}

/* CUlaunchAttribute and CUlaunchConfig, laid out as cuda.h has them. */
typedef struct {
    int id;
    char pad[4];
    union {
        char bytes[64];
        int programmatic_stream_serialization;
    } value;
} fake_launch_attribute;

typedef struct {
    unsigned grid_x, grid_y, grid_z, block_x, block_y, block_z, shared;
    CUstream stream;
    fake_launch_attribute *attrs;
    unsigned count;
} fake_launch_config;

#define FAKE_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION 6

FAKE_API CUresult cuLaunchKernelEx(const fake_launch_config *config, CUfunction f, void **params, void **extra)
{
    (void)extra;
    if (!config || (config->count && !config->attrs))
        return FAKE_ERROR_INVALID_VALUE;
    int overlap = 0;
    for (unsigned i = 0; i < config->count; i++)
        if (config->attrs[i].id == FAKE_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION)
            overlap = config->attrs[i].value.programmatic_stream_serialization != 0;
    record_launch(f, config->grid_x, config->shared, params, 1, overlap);
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuStreamCreate(CUstream *stream, unsigned flags)
{
    (void)flags;
    *stream = &primary_context;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuStreamDestroy_v2(CUstream stream)
{
    (void)stream;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuStreamSynchronize(CUstream stream)
{
    (void)stream;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuEventCreate(CUevent *event, unsigned flags)
{
    (void)flags;
    *event = malloc(1);
    return *event ? FAKE_SUCCESS : FAKE_ERROR_OUT_OF_MEMORY;
}

FAKE_API CUresult cuEventRecord(CUevent event, CUstream stream)
{
    (void)event, (void)stream;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuEventSynchronize(CUevent event)
{
    (void)event;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuEventElapsedTime(float *ms, CUevent start, CUevent end)
{
    (void)start, (void)end;
    *ms = 0.001f;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuEventElapsedTime_v2(float *ms, CUevent start, CUevent end)
{
    return cuEventElapsedTime(ms, start, end);
}

FAKE_API CUresult cuEventDestroy_v2(CUevent event)
{
    free(event);
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes)
{
    /* 256-byte aligned like the real allocator, so alignment checks pass. */
    void *memory = NULL;
    if (posix_memalign(&memory, 256, bytes ? bytes : 1) != 0)
        return FAKE_ERROR_OUT_OF_MEMORY;
    *ptr = (CUdeviceptr)(uintptr_t)memory;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuMemFree_v2(CUdeviceptr ptr)
{
    free((void *)(uintptr_t)ptr);
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = (size_t)1 << 30;
    *total_bytes = (size_t)2 << 30;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes)
{
    memcpy((void *)(uintptr_t)dst, src, bytes);
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes)
{
    memcpy(dst, (const void *)(uintptr_t)src, bytes);
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes)
{
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes, CUstream stream)
{
    (void)stream;
    return cuMemcpyHtoD_v2(dst, src, bytes);
}

FAKE_API CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes, CUstream stream)
{
    (void)stream;
    return cuMemcpyDtoH_v2(dst, src, bytes);
}

FAKE_API CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t count)
{
    memset((void *)(uintptr_t)dst, value, count);
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned value, size_t count)
{
    uint32_t *words = (uint32_t *)(uintptr_t)dst;
    for (size_t i = 0; i < count; i++)
        words[i] = value;
    return FAKE_SUCCESS;
}

FAKE_API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t count, CUstream stream)
{
    (void)stream;
    return cuMemsetD8_v2(dst, value, count);
}

FAKE_API CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned value, size_t count, CUstream stream)
{
    (void)stream;
    return cuMemsetD32_v2(dst, value, count);
}
