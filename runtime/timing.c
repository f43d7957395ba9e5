/*
 * GPU timing shared by the autotuner and the bench (see timing.h for the method).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

/* Run one driver call inside the device's primary context. */
#define DRIVER_CALL(ctx, name, call)                                                               \
    do {                                                                                           \
        MRT_CHECK(mrt__ctx_push(ctx));                                                             \
        CUresult res_ = (call);                                                                    \
        mrt__ctx_pop(ctx);                                                                         \
        if (res_ != CUDA_SUCCESS)                                                                  \
            MRT_CHECK(mrt__cuda_fail(&(ctx)->err, MRT_ERR_CUDA, name, res_));                      \
    } while (0)

mrt_status mrt__dev_alloc(mrt_context *ctx, size_t bytes, CUdeviceptr *ptr)
{
    mrt_status rc = MRT_OK;
    *ptr = 0;
    DRIVER_CALL(ctx, "cuMemAlloc", ctx->driver->mem_alloc(ptr, bytes));
done:
    return rc;
}

void mrt__dev_free(mrt_context *ctx, CUdeviceptr ptr)
{
    if (!ptr || mrt__ctx_push(ctx) != MRT_OK)
        return;
    ctx->driver->mem_free(ptr);
    mrt__ctx_pop(ctx);
}

mrt_status mrt__dev_upload(mrt_context *ctx, CUdeviceptr dst, const void *src, size_t bytes)
{
    mrt_status rc = MRT_OK;
    DRIVER_CALL(ctx, "cuMemcpyHtoD", ctx->driver->memcpy_htod(dst, src, bytes));
done:
    return rc;
}

mrt_status mrt__dev_download(mrt_context *ctx, void *dst, CUdeviceptr src, size_t bytes)
{
    mrt_status rc = MRT_OK;
    DRIVER_CALL(ctx, "cuMemcpyDtoH", ctx->driver->memcpy_dtoh(dst, src, bytes));
done:
    return rc;
}

mrt_status mrt__dev_copy(mrt_context *ctx, CUdeviceptr dst, CUdeviceptr src, size_t bytes)
{
    mrt_status rc = MRT_OK;
    DRIVER_CALL(ctx, "cuMemcpyDtoD", ctx->driver->memcpy_dtod(dst, src, bytes));
done:
    return rc;
}

mrt_status mrt__dev_memset(mrt_context *ctx, CUdeviceptr dst, unsigned char value, size_t bytes)
{
    mrt_status rc = MRT_OK;
    DRIVER_CALL(ctx, "cuMemsetD8", ctx->driver->memset_d8(dst, value, bytes));
done:
    return rc;
}

mrt_status mrt__dev_sync(mrt_context *ctx)
{
    mrt_status rc = MRT_OK;
    DRIVER_CALL(ctx, "cuCtxSynchronize", ctx->driver->ctx_synchronize());
done:
    return rc;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear-interpolated quantile of sorted values. */
static double quantile(const double *sorted, int count, double q)
{
    double pos = q * (count - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < count ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

mrt_status mrt__time_launches(mrt_context *ctx, int sets, int warmup, int batches, mrt__timed_fn fn, void *user,
                              mrt__timing *out)
{
    mrt_status rc = MRT_OK;
    CUevent start = NULL, stop = NULL;
    double *samples = NULL;
    mrt__err *err = &ctx->err;
    if (sets < 1 || batches < 1 || warmup < 0)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "timing: sets %d, batches %d, warm-up %d", sets, batches, warmup);
    samples = calloc((size_t)batches, sizeof *samples);
    if (!samples)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "timing: out of memory");
    DRIVER_CALL(ctx, "cuEventCreate", ctx->driver->event_create(&start, CU_EVENT_DEFAULT));
    DRIVER_CALL(ctx, "cuEventCreate", ctx->driver->event_create(&stop, CU_EVENT_DEFAULT));

    for (int batch = -warmup; batch < batches; batch++) {
        DRIVER_CALL(ctx, "cuEventRecord", ctx->driver->event_record(start, NULL));
        for (int set = 0; set < sets; set++)
            MRT_CHECK(fn(user, set));
        DRIVER_CALL(ctx, "cuEventRecord", ctx->driver->event_record(stop, NULL));
        DRIVER_CALL(ctx, "cuEventSynchronize", ctx->driver->event_synchronize(stop));
        float ms = 0;
        DRIVER_CALL(ctx, "cuEventElapsedTime", ctx->driver->event_elapsed_time(&ms, start, stop));
        if (batch >= 0)
            samples[batch] = (double)ms * 1000.0 / sets;
    }
    qsort(samples, (size_t)batches, sizeof *samples, compare_double);
    out->median_us = quantile(samples, batches, 0.5);
    out->q1_us = quantile(samples, batches, 0.25);
    out->q3_us = quantile(samples, batches, 0.75);
    out->min_us = samples[0];
    out->batches = batches;
done:
    if (start || stop) {
        if (mrt__ctx_push(ctx) == MRT_OK) {
            if (start)
                ctx->driver->event_destroy(start);
            if (stop)
                ctx->driver->event_destroy(stop);
            mrt__ctx_pop(ctx);
        }
    }
    free(samples);
    return rc;
}

double mrt__gemm_bytes(int64_t m, int64_t n, int64_t k, int group_size)
{
    int64_t scale_rows = group_size > 0 ? k / group_size : 1;
    return (double)k * n / 2 + (double)scale_rows * n * 2 + (double)m * k * 2 + (double)m * n * 2;
}

/* Cheap deterministic fill: the data only has to be non-zero and varied. */
static uint64_t mix(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * UINT64_C(2685821657736338717);
}

mrt_status mrt__gemm_problem_create(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                    size_t rotate_bytes, mrt__gemm_problem **out)
{
    mrt_status rc = MRT_OK;
    mrt__err *err = &ctx->err;
    mrt__gemm_problem *p = NULL;
    void *host = NULL;
    *out = NULL;
    MRT_CHECK(mrt__device_open(ctx));
    p = calloc(1, sizeof *p);
    if (!p)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory");
    p->m = m;
    p->n = n;
    p->k = k;
    p->group_size = group_size;
    const int64_t scale_rows = group_size > 0 ? k / group_size : 1;
    const size_t a_bytes = (size_t)(m * k * 2), b_bytes = (size_t)(k * n / 2), s_bytes = (size_t)(scale_rows * n * 2),
                 c_bytes = (size_t)(m * n * 2);
    const size_t set_bytes = a_bytes + b_bytes + s_bytes + c_bytes;
    size_t sets = (rotate_bytes + set_bytes - 1) / set_bytes;
    p->sets = (int)(sets < 1 ? 1 : sets > 4096 ? 4096 : sets);
    p->a = calloc((size_t)p->sets, sizeof *p->a);
    p->b = calloc((size_t)p->sets, sizeof *p->b);
    p->scales = calloc((size_t)p->sets, sizeof *p->scales);
    p->c = calloc((size_t)p->sets, sizeof *p->c);
    size_t host_bytes = a_bytes > b_bytes ? a_bytes : b_bytes;
    host = malloc(host_bytes > s_bytes ? host_bytes : s_bytes);
    if (!p->a || !p->b || !p->scales || !p->c || !host)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory for %d input copies", p->sets);

    /* The first copy from the host, the others copied on the device. */
    uint64_t state = UINT64_C(0x9e3779b97f4a7c15);
    MRT_CHECK(mrt__dev_alloc(ctx, b_bytes, &p->b[0]));
    for (size_t i = 0; i < b_bytes / 8; i++)
        ((uint64_t *)host)[i] = mix(&state);
    MRT_CHECK(mrt__dev_upload(ctx, p->b[0], host, b_bytes));
    /* Scales in [2^-8, 2^-6): small enough that no sum overflows fp16. */
    MRT_CHECK(mrt__dev_alloc(ctx, s_bytes, &p->scales[0]));
    for (size_t i = 0; i < s_bytes / 2; i++)
        ((uint16_t *)host)[i] = (uint16_t)(0x1c00 + (mix(&state) & 0x7ff));
    MRT_CHECK(mrt__dev_upload(ctx, p->scales[0], host, s_bytes));
    /* A in (-1, 1). */
    MRT_CHECK(mrt__dev_alloc(ctx, a_bytes, &p->a[0]));
    for (size_t i = 0; i < a_bytes / 2; i++) {
        uint64_t r = mix(&state);
        ((uint16_t *)host)[i] = (uint16_t)(((r >> 20) & 0x8000) | (0x3000 + (r & 0x7ff)));
    }
    MRT_CHECK(mrt__dev_upload(ctx, p->a[0], host, a_bytes));
    MRT_CHECK(mrt__dev_alloc(ctx, c_bytes, &p->c[0]));
    for (int s = 1; s < p->sets; s++) {
        MRT_CHECK(mrt__dev_alloc(ctx, a_bytes, &p->a[s]));
        MRT_CHECK(mrt__dev_alloc(ctx, b_bytes, &p->b[s]));
        MRT_CHECK(mrt__dev_alloc(ctx, s_bytes, &p->scales[s]));
        MRT_CHECK(mrt__dev_alloc(ctx, c_bytes, &p->c[s]));
        MRT_CHECK(mrt__dev_copy(ctx, p->a[s], p->a[0], a_bytes));
        MRT_CHECK(mrt__dev_copy(ctx, p->b[s], p->b[0], b_bytes));
        MRT_CHECK(mrt__dev_copy(ctx, p->scales[s], p->scales[0], s_bytes));
    }
    MRT_CHECK(mrt_gemm_workspace_size(ctx, n, &p->workspace_bytes));
    MRT_CHECK(mrt__dev_alloc(ctx, p->workspace_bytes, &p->workspace));
    MRT_CHECK(mrt__dev_memset(ctx, p->workspace, 0, p->workspace_bytes));
    MRT_CHECK(mrt__dev_sync(ctx));
    *out = p;
    p = NULL;
done:
    mrt__gemm_problem_destroy(ctx, p);
    free(host);
    return rc;
}

void mrt__gemm_problem_destroy(mrt_context *ctx, mrt__gemm_problem *p)
{
    if (!p)
        return;
    for (int s = 0; s < p->sets; s++) {
        if (p->a)
            mrt__dev_free(ctx, p->a[s]);
        if (p->b)
            mrt__dev_free(ctx, p->b[s]);
        if (p->scales)
            mrt__dev_free(ctx, p->scales[s]);
        if (p->c)
            mrt__dev_free(ctx, p->c[s]);
    }
    mrt__dev_free(ctx, p->workspace);
    free(p->a);
    free(p->b);
    free(p->scales);
    free(p->c);
    free(p);
}

typedef struct gemm_run {
    mrt_context *ctx;
    mrt__gemm_problem *p;
    const mrt_config *cfg;
} gemm_run;

static mrt_status run_gemm(void *user, int set)
{
    gemm_run *run = user;
    mrt__gemm_problem *p = run->p;
    mrt_gemm_args args;
    memset(&args, 0, sizeof args);
    args.a = p->a[set];
    args.b = p->b[set];
    args.scales = p->scales[set];
    args.c = p->c[set];
    args.workspace = p->workspace;
    args.workspace_bytes = p->workspace_bytes;
    args.m = p->m;
    args.n = p->n;
    args.k = p->k;
    args.group_size = p->group_size;
    args.flags = p->flags;
    return mrt_gemm(run->ctx, NULL, &args, run->cfg);
}

mrt_status mrt__gemm_problem_time(mrt_context *ctx, mrt__gemm_problem *p, const mrt_config *cfg, int warmup,
                                  int batches, mrt__timing *out)
{
    gemm_run run = {ctx, p, cfg};
    return mrt__time_launches(ctx, p->sets, warmup, batches, run_gemm, &run, out);
}

typedef struct copy_run {
    mrt_context *ctx;
    CUdeviceptr src, dst;
    size_t bytes;
} copy_run;

static mrt_status run_copy(void *user, int set)
{
    (void)set;
    copy_run *run = user;
    mrt_status rc = MRT_OK;
    mrt_context *ctx = run->ctx;
    MRT_CHECK(mrt__ctx_push(ctx));
    /* Asynchronous with respect to the host for device-to-device copies. */
    CUresult res = ctx->driver->memcpy_dtod(run->dst, run->src, run->bytes);
    mrt__ctx_pop(ctx);
    if (res != CUDA_SUCCESS)
        rc = mrt__cuda_fail(&ctx->err, MRT_ERR_CUDA, "cuMemcpyDtoD", res);
done:
    return rc;
}

mrt_status mrt__copy_bandwidth(mrt_context *ctx, size_t bytes, int batches, double *gbps)
{
    mrt_status rc = MRT_OK;
    copy_run run = {ctx, 0, 0, bytes};
    mrt__timing t;
    MRT_CHECK(mrt__dev_alloc(ctx, bytes, &run.src));
    MRT_CHECK(mrt__dev_alloc(ctx, bytes, &run.dst));
    MRT_CHECK(mrt__dev_memset(ctx, run.src, 0x5a, bytes));
    MRT_CHECK(mrt__time_launches(ctx, 1, 2, batches, run_copy, &run, &t));
    *gbps = 2.0 * (double)bytes / (t.median_us * 1e3);
done:
    mrt__dev_free(ctx, run.src);
    mrt__dev_free(ctx, run.dst);
    return rc;
}
