/*
 * marlinrt bench: the W4A16 GEMM against cuBLAS fp16 on the same shapes, and the device's
 * copy bandwidth, all measured in one run.
 *
 * Method (../shared/ANCHORS.md): CUDA events around batches of back-to-back launches after
 * warm-up; every input rotated through copies that together exceed max(512 MB, 4 x L2), so
 * weights come from HBM; the median over batches. "GB/s" counts int4 weights, fp16 scales, A
 * and C once; "of copy" divides it by the device-to-device copy bandwidth (bytes read plus
 * written) measured at the start of the same run.
 *
 * cuBLAS is opened with dlopen here, in the tool only; the library never depends on it.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "runtime/timing.h"

/* The few cuBLAS names used, with their values from cublas_api.h / library_types.h. */
typedef void *cublas_handle;
enum { CUBLAS_OP_N = 0, CUDA_R_16F = 2, CUBLAS_COMPUTE_32F = 68, CUBLAS_GEMM_DEFAULT = -1 };

typedef struct cublas_api {
    void *library;
    char why[512];
    int (*create)(cublas_handle *handle);
    int (*destroy)(cublas_handle handle);
    int (*gemm_ex)(cublas_handle handle, int transa, int transb, int m, int n, int k, const void *alpha,
                   const void *a, int a_type, int lda, const void *b, int b_type, int ldb, const void *beta, void *c,
                   int c_type, int ldc, int compute_type, int algo);
    cublas_handle handle;
} cublas_api;

static int cublas_open(cublas_api *api)
{
    static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                        "/usr/local/cuda/lib64/libcublas.so.13",
                                        "/usr/local/cuda/lib64/libcublas.so.12"};
    size_t used = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !api->library; i++) {
        api->library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!api->library) {
            const char *why = dlerror();
            used += (size_t)snprintf(api->why + used, used < sizeof api->why ? sizeof api->why - used : 0, "%s%s",
                                     used ? "; " : "", why ? why : names[i]);
            if (used >= sizeof api->why)
                used = sizeof api->why - 1;
        }
    }
    if (!api->library)
        return -1;
    *(void **)&api->create = dlsym(api->library, "cublasCreate_v2");
    *(void **)&api->destroy = dlsym(api->library, "cublasDestroy_v2");
    *(void **)&api->gemm_ex = dlsym(api->library, "cublasGemmEx");
    if (!api->create || !api->destroy || !api->gemm_ex) {
        snprintf(api->why, sizeof api->why, "the cuBLAS library found lacks cublasCreate_v2/cublasGemmEx");
        return -1;
    }
    return 0;
}

/* Dense fp16 copies of the weights for cuBLAS, made from the packed ones by the library's
 * dequantize kernel, plus A and C copies. */
typedef struct dense_problem {
    mrt_context *ctx;
    cublas_api *cublas;
    int64_t m, n, k;
    int sets;
    CUdeviceptr *w, *a, *c;
} dense_problem;

static void dense_destroy(dense_problem *d)
{
    for (int s = 0; s < d->sets; s++) {
        if (d->w)
            mrt__dev_free(d->ctx, d->w[s]);
        if (d->a)
            mrt__dev_free(d->ctx, d->a[s]);
        if (d->c)
            mrt__dev_free(d->ctx, d->c[s]);
    }
    free(d->w);
    free(d->a);
    free(d->c);
}

static mrt_status dense_create(dense_problem *d, mrt__gemm_problem *p, size_t rotate_bytes)
{
    mrt_status rc = MRT_OK;
    mrt_context *ctx = d->ctx;
    const size_t w_bytes = (size_t)(p->k * p->n * 2), a_bytes = (size_t)(p->m * p->k * 2),
                 c_bytes = (size_t)(p->m * p->n * 2);
    size_t sets = (rotate_bytes + w_bytes + a_bytes + c_bytes - 1) / (w_bytes + a_bytes + c_bytes);
    d->sets = (int)(sets < 1 ? 1 : sets);
    d->m = p->m;
    d->n = p->n;
    d->k = p->k;
    d->w = calloc((size_t)d->sets, sizeof *d->w);
    d->a = calloc((size_t)d->sets, sizeof *d->a);
    d->c = calloc((size_t)d->sets, sizeof *d->c);
    if (!d->w || !d->a || !d->c)
        return mrt__fail(mrt__ctx_err(ctx), MRT_ERR_OUT_OF_MEMORY, "bench: out of memory for %d copies", d->sets);
    for (int s = 0; s < d->sets; s++) {
        MRT_CHECK(mrt__dev_alloc(ctx, w_bytes, &d->w[s]));
        MRT_CHECK(mrt__dev_alloc(ctx, a_bytes, &d->a[s]));
        MRT_CHECK(mrt__dev_alloc(ctx, c_bytes, &d->c[s]));
        MRT_CHECK(mrt_dequant_w4(ctx, NULL, p->b[0], p->scales[0], d->w[s], p->k, p->n, p->group_size));
        MRT_CHECK(mrt__dev_copy(ctx, d->a[s], p->a[0], a_bytes));
    }
    MRT_CHECK(mrt__dev_sync(ctx));
done:
    return rc;
}

/* Row-major C[M,N] = A[M,K] W[K,N] is column-major C^T = W^T A^T: cuBLAS sees an N x K
 * matrix W^T with leading dimension N times a K x M matrix A^T with leading dimension K. */
static mrt_status run_cublas(void *user, int set)
{
    dense_problem *d = user;
    mrt_status rc = MRT_OK;
    const float alpha = 1.0f, beta = 0.0f;
    MRT_CHECK(mrt__ctx_push(d->ctx));
    int status = d->cublas->gemm_ex(d->cublas->handle, CUBLAS_OP_N, CUBLAS_OP_N, (int)d->n, (int)d->m, (int)d->k,
                                    &alpha, (const void *)d->w[set], CUDA_R_16F, (int)d->n,
                                    (const void *)d->a[set], CUDA_R_16F, (int)d->k, &beta, (void *)d->c[set],
                                    CUDA_R_16F, (int)d->n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    mrt__ctx_pop(d->ctx);
    if (status != 0)
        rc = mrt__fail(mrt__ctx_err(d->ctx), MRT_ERR_CUDA, "cublasGemmEx failed with status %d", status);
done:
    return rc;
}

static const char *const default_shapes = "4096x4096,4096x28672,14336x4096,8192x8192,8192x57344,28672x8192";
static const char *const default_ms = "1,2,4,8,16,32,64,128,256,512";

typedef struct bench_row {
    int64_t k, n, m;
    mrt_config config;
    mrt__timing ours, theirs;
    int have_cublas;
    double bytes;
} bench_row;

static void print_row(const bench_row *r, int format, double copy_gbps, int first)
{
    char cfg[64];
    cli_format_config(&r->config, cfg, sizeof cfg);
    const double gbps = r->bytes / (r->ours.median_us * 1e3);
    const double spread = r->ours.q3_us - r->ours.q1_us;
    if (format == 1) {
        printf("%s{\"k\": %lld, \"n\": %lld, \"m\": %lld, \"config\": \"%s\", \"us\": %.2f, \"spread_us\": %.2f, "
               "\"gbps\": %.1f, \"of_copy\": %.3f",
               first ? "" : ",\n ", (long long)r->k, (long long)r->n, (long long)r->m, cfg, r->ours.median_us, spread,
               gbps, gbps / copy_gbps);
        if (r->have_cublas)
            printf(", \"cublas_us\": %.2f, \"speedup\": %.3f", r->theirs.median_us,
                   r->theirs.median_us / r->ours.median_us);
        printf("}");
    } else if (format == 2) {
        printf("%lld,%lld,%lld,%s,%.2f,%.2f,%.1f,%.3f,", (long long)r->k, (long long)r->n, (long long)r->m, cfg,
               r->ours.median_us, spread, gbps, gbps / copy_gbps);
        if (r->have_cublas)
            printf("%.2f,%.3f\n", r->theirs.median_us, r->theirs.median_us / r->ours.median_us);
        else
            printf(",\n");
    } else {
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)r->k, (long long)r->n);
        printf("| %-11s | %4lld | %-20s | %9.2f | %7.2f | %7.0f | %5.1f%% |", shape, (long long)r->m, cfg,
               r->ours.median_us, spread, gbps, 100 * gbps / copy_gbps);
        if (r->have_cublas)
            printf(" %9.2f | %6.2fx |\n", r->theirs.median_us, r->theirs.median_us / r->ours.median_us);
        else
            printf("       n/a |    n/a |\n");
    }
    fflush(stdout);
}

int cmd_bench(const char *db, int argc, char **argv)
{
    const char *shape_list = default_shapes, *m_list = default_ms;
    int format = 0, group = 128, batches = 21, rc_exit = 1, force = 0;
    uint32_t gemm_flags = 0;
    mrt_config forced;
    memset(&forced, 0, sizeof forced);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            format = 1;
        else if (strcmp(argv[i], "--csv") == 0)
            format = 2;
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc)
            shape_list = argv[++i];
        else if (strcmp(argv[i], "--m") == 0 && i + 1 < argc)
            m_list = argv[++i];
        else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc)
            group = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc)
            batches = atoi(argv[++i]);
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            const char *text = argv[++i];
            if (sscanf(text, "t%d.m%d.n%d.k%d.s%d.g%d", &forced.threads, &forced.thread_m_blocks,
                       &forced.thread_n_blocks, &forced.thread_k_blocks, &forced.stages, &forced.group_blocks) != 6)
                return cli_usage_error("bench: bad --config \"%s\" (expected e.g. t256.m1.n8.k8.s4.g8)", text);
            force = 1;
        }
        else if (strcmp(argv[i], "--static-weights") == 0)
            gemm_flags |= MRT_GEMM_WEIGHTS_STATIC;
        else if (strcmp(argv[i], "--no-overlap") == 0)
            gemm_flags |= MRT_GEMM_NO_OVERLAP;
        else
            return cli_usage_error("bench: unknown argument \"%s\"", argv[i]);
    }
    int64_t ms[64], shapes[32][2];
    int m_count = cli_parse_int_list(m_list, ms, 64);
    if (m_count <= 0)
        return cli_usage_error("bench: bad --m list \"%s\"", m_list);
    int shape_count = 0;
    for (const char *p = shape_list; *p && shape_count < 32;) {
        char *end = NULL;
        long long k = strtoll(p, &end, 10);
        if (end == p || *end != 'x')
            return cli_usage_error("bench: bad --shape \"%s\" (expected KxN[,KxN...])", shape_list);
        p = end + 1;
        long long n = strtoll(p, &end, 10);
        if (end == p || (*end && *end != ',') || k < 1 || n < 1)
            return cli_usage_error("bench: bad --shape \"%s\" (expected KxN[,KxN...])", shape_list);
        shapes[shape_count][0] = k;
        shapes[shape_count][1] = n;
        shape_count++;
        p = *end ? end + 1 : end;
    }
    if (batches < 3 || batches > 1000)
        return cli_usage_error("bench: --batches %d: use 3..1000", batches);

    mrt_context *ctx = NULL;
    if (cli_open_context(db, 0, &ctx))
        return 1;
    mrt_device_info dev;
    mrt_status rc = mrt_device_get_info(ctx, &dev);
    if (rc != MRT_OK) {
        fprintf(stderr, "marlinrt: bench needs a GPU: %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
        mrt_context_destroy(ctx);
        return 1;
    }
    cublas_api cublas;
    memset(&cublas, 0, sizeof cublas);
    int have_cublas = cublas_open(&cublas) == 0;
    if (have_cublas) {
        if (mrt__ctx_push(ctx) != MRT_OK || cublas.create(&cublas.handle) != 0) {
            snprintf(cublas.why, sizeof cublas.why, "cublasCreate failed");
            have_cublas = 0;
        }
        mrt__ctx_pop(ctx);
    }
    if (!have_cublas)
        fprintf(stderr, "marlinrt: cuBLAS not available, its columns are left empty: %s\n", cublas.why);

    const size_t rotate = (size_t)dev.l2_bytes * 4 > ((size_t)512 << 20) ? (size_t)dev.l2_bytes * 4
                                                                           : ((size_t)512 << 20);
    double copy_gbps = 0;
    rc = mrt__copy_bandwidth(ctx, (size_t)1 << 30, batches, &copy_gbps);
    if (rc != MRT_OK) {
        fprintf(stderr, "marlinrt: bench: copy bandwidth: %s\n", mrt_errmsg(ctx));
        goto done;
    }
    if (format == 1) {
        printf("{\"gpu\": ");
        cli_json_string(dev.name);
        printf(", \"sm_count\": %d, \"l2_bytes\": %d, \"copy_gbps\": %.1f, \"group_size\": %d, \"batches\": %d, "
               "\"rotate_bytes\": %zu, \"cublas\": %s, \"weights_static\": %s, \"overlap\": %s, \"rows\": [",
               dev.sm_count, dev.l2_bytes, copy_gbps, group, batches, rotate, have_cublas ? "true" : "false",
               (gemm_flags & MRT_GEMM_WEIGHTS_STATIC) ? "true" : "false",
               (gemm_flags & MRT_GEMM_NO_OVERLAP) ? "false" : "true");
    } else if (format == 2) {
        printf("k,n,m,config,us,spread_us,gbps,of_copy,cublas_us,speedup\n");
    } else {
        printf("GPU: %s, %d SMs, %d MiB L2; device-to-device copy %.0f GB/s (read + write); group size %d;\n"
               "inputs rotated over >= %zu MiB; median of %d batches after warm-up; launches %s%s\n\n",
               dev.name, dev.sm_count, dev.l2_bytes >> 20, copy_gbps, group, rotate >> 20, batches,
               (gemm_flags & MRT_GEMM_NO_OVERLAP) ? "plain" : "overlapped (sm_90+)",
               (gemm_flags & MRT_GEMM_WEIGHTS_STATIC) ? ", weights static" : "");
        printf("| K x N       |    M | config               |   ours us |  spread |    GB/s | of copy | cuBLAS us | "
               "speedup |\n");
        printf("|---|---|---|---|---|---|---|---|---|\n");
    }
    int first = 1;
    for (int s = 0; s < shape_count; s++) {
        for (int mi = 0; mi < m_count; mi++) {
            bench_row row;
            memset(&row, 0, sizeof row);
            row.k = shapes[s][0];
            row.n = shapes[s][1];
            row.m = ms[mi];
            row.bytes = mrt__gemm_bytes(row.m, row.n, row.k, group);
            mrt__gemm_problem *p = NULL;
            dense_problem dense = {.ctx = ctx, .cublas = &cublas};
            if (force)
                row.config = forced;
            else
                rc = mrt_gemm_select(ctx, row.m, row.n, row.k, group, &row.config);
            if (rc == MRT_OK)
                rc = mrt__gemm_problem_create(ctx, row.m, row.n, row.k, group, rotate, &p);
            if (rc == MRT_OK) {
                p->flags = gemm_flags;
                rc = mrt__gemm_problem_time(ctx, p, &row.config, 3, batches, &row.ours);
            }
            if (rc == MRT_OK && have_cublas) {
                rc = dense_create(&dense, p, rotate);
                if (rc == MRT_OK)
                    rc = mrt__time_launches(ctx, dense.sets, 3, batches, run_cublas, &dense, &row.theirs);
                row.have_cublas = rc == MRT_OK;
            }
            dense_destroy(&dense);
            mrt__gemm_problem_destroy(ctx, p);
            if (rc != MRT_OK) {
                fprintf(stderr, "marlinrt: bench %lldx%lld m=%lld: %s: %s\n", (long long)row.k, (long long)row.n,
                        (long long)row.m, mrt_status_str(rc), mrt_errmsg(ctx));
                goto done;
            }
            print_row(&row, format, copy_gbps, first);
            first = 0;
        }
    }
    if (format == 1)
        printf("]}\n");
    rc_exit = 0;
done:
    if (cublas.handle && mrt__ctx_push(ctx) == MRT_OK) {
        cublas.destroy(cublas.handle);
        mrt__ctx_pop(ctx);
    }
    if (cublas.library)
        dlclose(cublas.library);
    mrt_context_destroy(ctx);
    return rc_exit;
}
