/*
 * Timing on the GPU, shared by the autotuner (runtime/tune.c) and `marlinrt bench`.
 *
 * The method (../shared/ANCHORS.md): CUDA events around batches of back-to-back launches,
 * warm-up first, inputs rotated through several copies so that together they exceed the L2
 * cache and every launch reads its weights from HBM, the median over batches reported with
 * its spread. Private.
 */
#ifndef MRT_RUNTIME_TIMING_H
#define MRT_RUNTIME_TIMING_H

#include "context.h"

/* Enqueue one run on the default stream using input copy `set` (0..sets-1). */
typedef mrt_status (*mrt__timed_fn)(void *user, int set);

typedef struct mrt__timing {
    double median_us; /* per launch: median over batches of (batch time / launches in it) */
    double q1_us, q3_us; /* quartiles of the same; spread = q3 - q1 */
    double min_us;
    int batches;
} mrt__timing;

/* Time fn: `warmup` untimed batches, then `batches` timed ones; a batch runs fn once per set.
 * The device's primary context must not be pushed by the caller. */
mrt_status mrt__time_launches(mrt_context *ctx, int sets, int warmup, int batches, mrt__timed_fn fn, void *user,
                              mrt__timing *out);

/* Device memory on the context's device (pushes its primary context around each call). */
mrt_status mrt__dev_alloc(mrt_context *ctx, size_t bytes, CUdeviceptr *ptr);
void mrt__dev_free(mrt_context *ctx, CUdeviceptr ptr);
mrt_status mrt__dev_upload(mrt_context *ctx, CUdeviceptr dst, const void *src, size_t bytes);
mrt_status mrt__dev_download(mrt_context *ctx, void *dst, CUdeviceptr src, size_t bytes);
mrt_status mrt__dev_copy(mrt_context *ctx, CUdeviceptr dst, CUdeviceptr src, size_t bytes);
mrt_status mrt__dev_memset(mrt_context *ctx, CUdeviceptr dst, unsigned char value, size_t bytes);
mrt_status mrt__dev_sync(mrt_context *ctx);

/* One W4A16 problem on the device, with `sets` copies of A, B, scales and C so the rotation
 * covers at least the requested bytes. Inputs are random (never zeros); B, scales and A are
 * the same in every copy, which is all the rotation needs. */
typedef struct mrt__gemm_problem {
    int64_t m, n, k;
    int group_size;
    int sets;
    CUdeviceptr *a, *b, *scales, *c; /* sets entries each */
    CUdeviceptr workspace;
    size_t workspace_bytes;
    uint32_t flags; /* mrt_gemm_args.flags of every timed call (0 after create) */
} mrt__gemm_problem;

/* Bytes the GEMM moves at least once: int4 weights, fp16 scales, A and C. */
double mrt__gemm_bytes(int64_t m, int64_t n, int64_t k, int group_size);

mrt_status mrt__gemm_problem_create(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                    size_t rotate_bytes, mrt__gemm_problem **out);
void mrt__gemm_problem_destroy(mrt_context *ctx, mrt__gemm_problem *p);

/* Time the GEMM with cfg (NULL: automatic) over the problem's copies. */
mrt_status mrt__gemm_problem_time(mrt_context *ctx, mrt__gemm_problem *p, const mrt_config *cfg, int warmup,
                                  int batches, mrt__timing *out);

/* Device-to-device copy bandwidth in GB/s (bytes read + written), median of `batches`
 * copies of `bytes`. */
mrt_status mrt__copy_bandwidth(mrt_context *ctx, size_t bytes, int batches, double *gbps);

#endif /* MRT_RUNTIME_TIMING_H */
