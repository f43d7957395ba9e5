/*
 * Private internals shared by runtime/, cache/ and the tests. Not installed.
 */
#ifndef MRT_RUNTIME_H
#define MRT_RUNTIME_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "marlinrt.h"

/* Version of the contract between the library and its cubins (kernel parameter lists,
 * launch geometry). Bump it when that contract changes: it is part of every store key. */
#define MRT_CUBIN_FORMAT_VERSION 1

#define MRT_ERRMSG_SIZE 4096

/* ------------------------------------------------------------------------- */
/* Errors                                                                     */
/* ------------------------------------------------------------------------- */

/* Where a failing call writes its message: a context's buffer, or the thread's. */
typedef struct mrt__err {
    char *buf;
    size_t size;
} mrt__err;

/* Format msg into err and return status; err may be NULL (message dropped). */
mrt_status mrt__fail(mrt__err *err, mrt_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
mrt_status mrt__vfail(mrt__err *err, mrt_status status, const char *fmt, va_list ap);

/* For a public call given a NULL context: the message goes to the thread's sink
 * ("<fn>: ctx is NULL") and the status is MRT_ERR_INVALID_ARGUMENT. */
mrt_status mrt__null_context(const char *fn);

/* The calling thread's error sink, read by mrt_thread_errmsg(). */
mrt__err *mrt__thread_err(void);

/* Set rc, format the message, jump to the function's cleanup label `done`. */
#define MRT_FAIL(err, status, ...)                                                                 \
    do {                                                                                           \
        rc = mrt__fail((err), (status), __VA_ARGS__);                                              \
        goto done;                                                                                 \
    } while (0)

/* Forward a failure whose message is already written. */
#define MRT_CHECK(expr)                                                                            \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (rc != MRT_OK)                                                                          \
            goto done;                                                                             \
    } while (0)

/* Parse a non-negative integer from an environment variable; fallback if unset or bad. */
long mrt__env_long(const char *name, long fallback);

/* Number of worker threads for `threads` as the public API takes it (0 = online CPUs). */
int mrt__worker_count(int threads);

/* Run fn(i, user) for every i in [0, count) over up to `workers` threads (the caller is one of
 * them); blocks until all are done. Always completes every index: if threads cannot be
 * started the remaining ones run on fewer. Returns the number of extra threads started. */
int mrt__parallel_for(int64_t count, int workers, void (*fn)(int64_t i, void *user), void *user);

/* ------------------------------------------------------------------------- */
/* Kernel registry (runtime/kernels.c)                                         */
/* ------------------------------------------------------------------------- */

/* One embedded kernel source file (generated at build time from kernel_src/). */
typedef struct mrt__source {
    const char *file_name; /* e.g. "dequant_w4.cu" */
    const char *text;      /* NUL-terminated */
    size_t length;         /* bytes, without the NUL */
    uint64_t hash;         /* XXH3-64 of text */
} mrt__source;

extern const mrt__source mrt__sources[];
extern const size_t mrt__source_count;

/* A kernel the library can compile: which source holds it, how a configuration becomes the
 * template instance to compile, and which configurations are legal. */
typedef struct mrt__kernel {
    const char *name;        /* public name, e.g. "dequant_w4" */
    const char *source_file; /* mrt__source.file_name */
    /* Write the C++ name expression of the instance (e.g. "dequant_w4<256>") into buf. */
    int (*name_expression)(const mrt_config *cfg, char *buf, size_t size);
    /* MRT_OK or MRT_ERR_UNSUPPORTED with a message naming the field and its bounds. */
    mrt_status (*validate)(const mrt_config *cfg, mrt__err *err);
    /* The configurations compiled by default (`marlinrt warm`): same contract as
     * mrt_kernel_default_configs. */
    mrt_status (*default_configs)(mrt_config *configs, size_t capacity, size_t *count);
    /* NULL when every configuration compiles for every arch. Else MRT_OK when cfg (valid)
     * can be compiled for sm_<arch>, with *arch_specific set when it needs the arch-specific
     * target (sm_90a rather than sm_90), or MRT_ERR_UNSUPPORTED with a message. */
    mrt_status (*arch_check)(const mrt_config *cfg, int arch, int *arch_specific, mrt__err *err);
} mrt__kernel;

/* The marlin_w4a16 kernel's hooks (runtime/gemm.c). */
int mrt__marlin_name_expression(const mrt_config *cfg, char *buf, size_t size);
int mrt__marlin_sk_name_expression(const mrt_config *cfg, char *buf, size_t size);
mrt_status mrt__marlin_sk_validate(const mrt_config *cfg, mrt__err *err);
mrt_status mrt__marlin_sk_default_configs(mrt_config *configs, size_t capacity, size_t *count);
mrt_status mrt__marlin_validate(const mrt_config *cfg, mrt__err *err);
mrt_status mrt__marlin_arch_check(const mrt_config *cfg, int arch, int *arch_specific, mrt__err *err);
/* Whether cfg selects the sm_90 wgmma kernel (thread_m_blocks 8 or 16) rather than the
 * mma.sync kernel. */
int mrt__marlin_is_wgmma(const mrt_config *cfg);
/* Whether the wgmma configuration runs chunks of M of at most a half or a quarter of its
 * token rows with wgmmas that narrow (the kernel compiles those paths only for them). */
int mrt__marlin_wgmma_runs_narrow(const mrt_config *cfg);

/* The kernel with this name, or NULL. */
const mrt__kernel *mrt__kernel_find(const char *name);
/* The source a kernel is compiled from (never NULL for a registered kernel). */
const mrt__source *mrt__kernel_source(const mrt__kernel *kernel);
/* kernel->arch_check, or MRT_OK with *arch_specific 0 when the kernel has none. */
mrt_status mrt__kernel_arch_check(const mrt__kernel *kernel, const mrt_config *cfg, int arch, int *arch_specific,
                                  mrt__err *err);
/* Canonical text of a configuration, e.g. "t256.m1.n16.k4.s4.g8"; used in keys and listings. */
void mrt__config_format(const mrt_config *cfg, char *buf, size_t size);

/* ------------------------------------------------------------------------- */
/* GPU side (runtime/device.c): used by launch code such as runtime/gemm.c     */
/* ------------------------------------------------------------------------- */

/* A kernel loaded into the context's device, ready to launch. */
typedef struct mrt__function {
    void *handle;          /* CUfunction */
    int max_threads;       /* CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK */
    int static_smem;       /* CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES */
    int dynamic_smem_set;  /* dynamic shared memory the function is currently allowed */
} mrt__function;

/* CLOCK_MONOTONIC, in milliseconds. */
double mrt__now_ms(void);

/* Open the driver and the device (retaining its primary context) if not yet done. */
mrt_status mrt__device_open(mrt_context *ctx);

/* Device facts, valid after mrt__device_open succeeded. */
const mrt_device_info *mrt__device(const mrt_context *ctx);

/* Load (once per CUDA context and process) the cubin of kernel+cfg for the device's arch,
 * fetching it from the store or compiling it, and return the function. The function is set
 * up at load to accept all the dynamic shared memory the device allows (dynamic_smem_set). */
mrt_status mrt__get_function(mrt_context *ctx, const char *kernel, const mrt_config *cfg, mrt__function *out);

/* Launch fn with kernel parameters `params` (an array of pointers to each argument, as
 * cuLaunchKernel takes them) on stream (NULL: default stream). dynamic_smem above 48 KiB
 * raises the function's limit first; above the device's opt-in limit is refused. */
mrt_status mrt__launch(mrt_context *ctx, mrt__function *fn, const unsigned grid[3], const unsigned block[3],
                       unsigned dynamic_smem, void *stream, void **params);

/* Whether the opened device (sm_90+) and the driver (cuLaunchKernelEx) allow programmatic
 * dependent launch. */
int mrt__launch_can_overlap(const mrt_context *ctx);

/* mrt__launch with programmatic dependent launch allowed: the kernel may start before the
 * previous kernel on the stream ends, and must griddepcontrol.wait before it uses that
 * kernel's results. Only where mrt__launch_can_overlap (else MRT_ERR_INTERNAL). */
mrt_status mrt__launch_overlapped(mrt_context *ctx, mrt__function *fn, const unsigned grid[3],
                                  const unsigned block[3], unsigned dynamic_smem, void *stream, void **params);

/* The context's error sink (its message buffer). */
mrt__err *mrt__ctx_err(mrt_context *ctx);

#endif /* MRT_RUNTIME_H */
