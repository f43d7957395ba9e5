/*
 * The deployment recipe of docs/deploying.md, run as written: its build-stage and runtime-stage
 * shell blocks are read from the document and executed in a temporary folder. The build stage
 * warms a store for four architectures with no GPU and exports it; the image is made read-only;
 * the runtime stage runs with NVRTC hidden (and as another user when this runs as root, so the
 * read-only store is detected from the file system too) and must find every cubin with zero
 * compilations. With a GPU, a GEMM then runs from the read-only store, again with zero
 * compilations, checked against the CPU reference.
 *
 * The test puts a `marlinrt` first on PATH that adds to every `warm` what this test needs (only
 * dequant_w4, or the GPU's GEMM configuration): all default configurations for four archs take
 * minutes, too long for CI.
 */
#include "helpers.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/context.h"

static char self_path[4096];

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    return text;
}

/* The body of the first fenced block that follows `after` (a marker or a fence opener). */
static char *fenced_block(const char *doc, const char *after)
{
    const char *start = strstr(doc, after);
    if (!start)
        fail_msg("docs/deploying.md has no \"%s\"", after);
    start = strstr(start, "```");
    assert_non_null(start);
    start = strchr(start, '\n') + 1;
    const char *end = strstr(start, "```");
    assert_non_null(end);
    char *block = malloc((size_t)(end - start) + 1);
    assert_non_null(block);
    memcpy(block, start, (size_t)(end - start));
    block[end - start] = '\0';
    return block;
}

typedef struct deploy {
    char *root, *build, *image, *runtime, *bin;
    char *build_block, *runtime_block;
} deploy;

/* The folders, the document's blocks, and the `marlinrt` shim adding warm_extra to warm. */
static void deploy_setup(deploy *d, const char *tag, const char *warm_extra)
{
    memset(d, 0, sizeof *d);
    char *doc = read_text(MRT_SOURCE_DIR "/docs/deploying.md");
    d->build_block = fenced_block(doc, "<!-- deploy-test: build -->");
    d->runtime_block = fenced_block(doc, "<!-- deploy-test: runtime -->");
    char *dockerfile = fenced_block(doc, "```dockerfile");
    /* What the test runs is what the Dockerfile says, line for line. */
    char *lines = strdup(d->build_block);
    assert_non_null(lines);
    for (char *line = strtok(lines, "\n"); line; line = strtok(NULL, "\n")) {
        char run[1024];
        snprintf(run, sizeof run, "RUN %s\n", line);
        if (!strstr(dockerfile, run))
            fail_msg("the Dockerfile in docs/deploying.md lacks the build-stage line \"%s\"", run);
    }
    free(lines);
    assert_non_null(strstr(dockerfile, "MARLINRT_CACHE_READONLY=1"));
    assert_non_null(strstr(dockerfile, "MARLINRT_CACHE_OVERLAY="));
    assert_null(strchr(d->build_block, '\''));
    assert_null(strchr(d->runtime_block, '\''));
    free(dockerfile);
    free(doc);

    d->root = mrt_test_tempdir(tag);
    /* The runtime stage may run as another user: it must reach the folders. */
    assert_int_equal(chmod(d->root, 0755), 0);
    d->build = mrt_test_path(d->root, "build");
    d->image = mrt_test_path(d->root, "image");
    d->runtime = mrt_test_path(d->root, "runtime");
    d->bin = mrt_test_path(d->root, "bin");
    assert_int_equal(mkdir(d->build, 0755), 0);
    assert_int_equal(mkdir(d->image, 0755), 0);
    assert_int_equal(mkdir(d->runtime, 0777), 0);
    assert_int_equal(chmod(d->runtime, 0777), 0);
    assert_int_equal(mkdir(d->bin, 0755), 0);
    char *shim = mrt_test_path(d->bin, "marlinrt");
    FILE *f = fopen(shim, "w");
    assert_non_null(f);
    fprintf(f,
            "#!/bin/sh\n"
            "# marlinrt of this build; `warm` also gets what tests/test_deploy.c needs.\n"
            "case \" $* \" in\n"
            "  *\" warm \"*) exec '%s' \"$@\" %s ;;\n"
            "esac\n"
            "exec '%s' \"$@\"\n",
            mrt_test_cli_path(), warm_extra, mrt_test_cli_path());
    fclose(f);
    assert_int_equal(chmod(shim, 0755), 0);
    free(shim);
}

static void deploy_teardown(deploy *d)
{
    char command[8192];
    snprintf(command, sizeof command, "chmod -R u+w '%s'", d->root);
    assert_int_equal(system(command), 0);
    free(d->build_block);
    free(d->runtime_block);
    free(d->root);
    free(d->build);
    free(d->image);
    free(d->runtime);
    free(d->bin);
}

/* Whether the runtime stage can run as uid 65534 (this runs as root, and setpriv exists). */
static int other_user_available(void)
{
    return geteuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0;
}

/* Run a stage's block with sh -eu; env is extra NAME=value assignments. */
static int run_block(const deploy *d, const char *block, const char *env, int as_other_user, char **output)
{
    char *command = malloc(65536);
    assert_non_null(command);
    snprintf(command, 65536,
             "cd '%s' && env BUILD='%s' IMAGE='%s' RUNTIME='%s' PATH='%s':\"$PATH\" %s %s sh -eu -c '%s' 2>&1", d->root,
             d->build, d->image, d->runtime, d->bin, env,
             as_other_user ? "setpriv --reuid=65534 --regid=65534 --clear-groups" : "", block);
    int status = mrt_test_run(command, output);
    free(command);
    return status;
}

static int has_side_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int found = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strstr(e->d_name, "-wal") || strstr(e->d_name, "-shm") || strstr(e->d_name, "-journal"))
            found = 1;
    closedir(d);
    return found;
}

static const char *hide_nvrtc = "MARLINRT_NVRTC_PATH=/nonexistent/libnvrtc.so";
static const char *hide_driver = "MARLINRT_CUDA_DRIVER_PATH=/nonexistent/libcuda.so.1";

/* The build stage, then the image made read-only. expected_cubins: what warm must compile. */
static void build_stage(deploy *d, int expected_cubins)
{
    char *out = NULL;
    int status = run_block(d, d->build_block, hide_driver, 0, &out);
    if (status != 0)
        fail_msg("build stage failed (%d):\n%s", status, out);
    char expect[128];
    snprintf(expect, sizeof expect, "warm: %d compiled, 0 already present, 0 failed", expected_cubins);
    if (!strstr(out, expect))
        fail_msg("expected \"%s\" in:\n%s", expect, out);
    snprintf(expect, sizeof expect, "verify: %d cubins, 0 bad checksums", expected_cubins);
    assert_non_null(strstr(out, expect));
    snprintf(expect, sizeof expect, "export: %d cubins copied", expected_cubins);
    assert_non_null(strstr(out, expect));
    free(out);

    char command[8192];
    snprintf(command, sizeof command, "chmod -R a-w '%s'", d->image);
    assert_int_equal(system(command), 0);
}

static void test_deploy__build_stage_then_driver_only_runtime_stage(void **state)
{
    (void)state;
    deploy d;
    deploy_setup(&d, "deploy", "--kernel dequant_w4");
    build_stage(&d, 16); /* 4 dequant_w4 configurations x 4 archs */

    int as_other = other_user_available();
    if (!as_other)
        fprintf(stderr, "[note] the runtime stage runs as this user (read-only store set by the environment)\n");
    char env[512];
    snprintf(env, sizeof env, "%s %s", hide_nvrtc, hide_driver);
    char *out = NULL;
    int status = run_block(&d, d.runtime_block, env, as_other, &out);
    if (status != 0)
        fail_msg("runtime stage failed (%d):\n%s", status, out);
    assert_non_null(strstr(out, "NVRTC:   not available"));
    assert_non_null(strstr(out, "verify: 16 cubins, 0 bad checksums"));
    assert_non_null(strstr(out, "is read-only"));
    /* Every warmed cubin found, none compiled (there is no NVRTC to compile with). */
    assert_non_null(strstr(out, "warm: 0 compiled, 16 already present, 0 failed"));
    free(out);
    char *store_dir = mrt_test_path(d.image, "opt/marlinrt");
    assert_false(has_side_files(store_dir));
    free(store_dir);

    /* A configuration the image lacks: the error names it, its arch, and the warm command.
     * Same environment as the runtime stage (its export lines), another warm. */
    char block[1024];
    const char *info = strstr(d.runtime_block, "marlinrt info");
    assert_non_null(info);
    snprintf(block, sizeof block, "%.*smarlinrt warm --arch sm_80 --config t128.m0.n0.k0.s0.g4\n",
             (int)(info - d.runtime_block), d.runtime_block);
    status = run_block(&d, block, env, as_other, &out);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(out, "dequant_w4 t128.m0.n0.k0.s0.g4 for sm_80 is not in the store"));
    assert_non_null(strstr(out, "marlinrt warm --arch sm_80 --kernel dequant_w4 --config t128.m0.n0.k0.s0.g4"));
    assert_non_null(strstr(out, "0 compiled, 0 already present, 1 failed"));
    free(out);
    deploy_teardown(&d);
}

/* ------------------------------------------------------------------------- */
/* GPU: a GEMM from the read-only store                                       */
/* ------------------------------------------------------------------------- */

#define GEMM_M 16
#define GEMM_N 512
#define GEMM_K 1024
#define GEMM_GROUP 128

/* Child process: NVRTC hidden, the store read-only (from the environment). Runs one GEMM with
 * the configuration mrt_gemm picks, checks it against the CPU reference, and prints the
 * compile counters. */
static int gemm_child(void)
{
    const int64_t m = GEMM_M, n = GEMM_N, k = GEMM_K;
    mrt_context *ctx = NULL;
    if (mrt_context_create(NULL, &ctx) != MRT_OK) {
        printf("mrt_context_create: %s\n", mrt_thread_errmsg());
        return 1;
    }
    if (!mrt_store_read_only(ctx) || mrt__device_open(ctx) != MRT_OK) {
        printf("store read-only: %d; device: %s\n", mrt_store_read_only(ctx), mrt_errmsg(ctx));
        return 1;
    }
    mrt_half *a = malloc((size_t)(m * k) * sizeof *a), *c = malloc((size_t)(m * n) * sizeof *c);
    float *w = malloc((size_t)(k * n) * sizeof *w), *ref = malloc((size_t)(m * n) * sizeof *ref);
    int32_t *packed = malloc(mrt_packed_weight_bytes(k, n));
    mrt_half *scales = malloc((size_t)(k / GEMM_GROUP * n) * sizeof *scales);
    if (!a || !c || !w || !ref || !packed || !scales)
        return 1;
    double a_sum = 0, w_sum = 0;
    for (int64_t i = 0; i < m * k; i++) {
        a[i] = mrt_float_to_half(mrt_test_uniform(-1, 1));
        a_sum += (double)mrt_half_to_float(a[i]) * mrt_half_to_float(a[i]);
    }
    for (int64_t i = 0; i < k * n; i++) {
        w[i] = mrt_test_uniform(-1, 1);
        w_sum += (double)w[i] * w[i];
    }
    if (mrt_quantize_f32(w, k, n, GEMM_GROUP, packed, scales, NULL, NULL, 0) != MRT_OK ||
        mrt_reference_gemm(a, packed, scales, m, n, k, GEMM_GROUP, ref, 0) != MRT_OK) {
        printf("host side: %s\n", mrt_thread_errmsg());
        return 1;
    }
    size_t workspace = 0;
    if (mrt_gemm_workspace_size(ctx, n, &workspace) != MRT_OK)
        return 1;

    const mrt__driver_api *drv = ctx->driver;
    CUdeviceptr da = 0, db = 0, ds = 0, dc = 0, dw = 0;
    if (mrt__ctx_push(ctx) != MRT_OK)
        return 1;
    int ok = drv->mem_alloc(&da, (size_t)(m * k) * 2) == CUDA_SUCCESS &&
             drv->mem_alloc(&db, mrt_packed_weight_bytes(k, n)) == CUDA_SUCCESS &&
             drv->mem_alloc(&ds, (size_t)(k / GEMM_GROUP * n) * 2) == CUDA_SUCCESS &&
             drv->mem_alloc(&dc, (size_t)(m * n) * 2) == CUDA_SUCCESS &&
             drv->mem_alloc(&dw, workspace) == CUDA_SUCCESS &&
             drv->memcpy_htod(da, a, (size_t)(m * k) * 2) == CUDA_SUCCESS &&
             drv->memcpy_htod(db, packed, mrt_packed_weight_bytes(k, n)) == CUDA_SUCCESS &&
             drv->memcpy_htod(ds, scales, (size_t)(k / GEMM_GROUP * n) * 2) == CUDA_SUCCESS &&
             drv->memset_d8(dc, 0xFF, (size_t)(m * n) * 2) == CUDA_SUCCESS && /* poison: fp16 NaN */
             drv->memset_d8(dw, 0, workspace) == CUDA_SUCCESS;
    mrt__ctx_pop(ctx);
    if (!ok) {
        printf("device memory setup failed\n");
        return 1;
    }
    mrt_gemm_args args = {.a = da, .b = db, .scales = ds, .c = dc, .workspace = dw, .workspace_bytes = workspace,
                          .m = m, .n = n, .k = k, .group_size = GEMM_GROUP};
    mrt_status rc = mrt_gemm(ctx, NULL, &args, NULL);
    if (rc != MRT_OK) {
        printf("mrt_gemm: %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
        return 1;
    }
    if (mrt__ctx_push(ctx) != MRT_OK)
        return 1;
    ok = drv->ctx_synchronize() == CUDA_SUCCESS && drv->memcpy_dtoh(c, dc, (size_t)(m * n) * 2) == CUDA_SUCCESS;
    drv->mem_free(da), drv->mem_free(db), drv->mem_free(ds), drv->mem_free(dc), drv->mem_free(dw);
    mrt__ctx_pop(ctx);
    if (!ok)
        return 1;

    /* The bound of tests/test_gemm.c: fp16 weight rounding as a random walk over K, 8x, plus
     * one fp16 rounding of the result. */
    const double walk = ldexp(1.0, -11) * sqrt((double)k) * sqrt(a_sum / (double)(m * k)) *
                        sqrt(w_sum / (double)(k * n));
    double worst = 0;
    for (int64_t i = 0; i < m * n; i++) {
        const double got = mrt_half_to_float(c[i]), want = ref[i];
        const double err = fabs(got - want), bound = 8 * walk + ldexp(fabs(want), -10);
        if (!(err <= bound)) {
            printf("C[%lld] = %g, reference %g (bound %g)\n", (long long)i, got, want, bound);
            return 1;
        }
        if (err / bound > worst)
            worst = err / bound;
    }
    mrt_stats stats;
    mrt_get_stats(ctx, &stats);
    printf("gemm ok: compiles=%llu nvrtc_calls=%llu hits=%llu launches=%llu worst=%.2f\n",
           (unsigned long long)stats.nvrtc_compiles, (unsigned long long)mrt__nvrtc_compile_calls(),
           (unsigned long long)stats.store_hits, (unsigned long long)stats.launches, worst);
    mrt_context_destroy(ctx);
    free(a), free(c), free(w), free(ref), free(packed), free(scales);
    return 0;
}

static void test_deploy__gemm_from_read_only_store_with_zero_compiles(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE);
    mrt_test_require_gpu(ctx);
    mrt_device_info info;
    assert_int_equal(mrt_device_get_info(ctx, &info), MRT_OK);
    const int arch = info.cc_major * 10 + info.cc_minor;
    mrt_config cfg;
    assert_int_equal(mrt_gemm_select(ctx, GEMM_M, GEMM_N, GEMM_K, GEMM_GROUP, &cfg), MRT_OK);
    mrt_context_destroy(ctx);
    char cfg_text[96];
    snprintf(cfg_text, sizeof cfg_text, "t%d.m%d.n%d.k%d.s%d.g%d", cfg.threads, cfg.thread_m_blocks,
             cfg.thread_n_blocks, cfg.thread_k_blocks, cfg.stages, cfg.group_blocks);

    /* The warm list: the launch utility everywhere, and the GEMM mrt_gemm will pick here. */
    char *list_dir = mrt_test_tempdir("deploy-list");
    assert_int_equal(chmod(list_dir, 0755), 0);
    char *list = mrt_test_path(list_dir, "configs.txt");
    FILE *f = fopen(list, "w");
    assert_non_null(f);
    fprintf(f, "dequant_w4 default\nmarlin_w4a16 %s sm_%d\n", cfg_text, arch);
    fclose(f);
    char extra[4200];
    snprintf(extra, sizeof extra, "--configs '%s'", list);
    deploy d;
    deploy_setup(&d, "deploy-gpu", extra);
    build_stage(&d, 17);

    /* The runtime stage with the real driver: verify test-loads this GPU's cubins. */
    char *out = NULL;
    int status = run_block(&d, d.runtime_block, hide_nvrtc, 0, &out);
    if (status != 0)
        fail_msg("runtime stage failed (%d):\n%s", status, out);
    assert_non_null(strstr(out, "warm: 0 compiled, 17 already present, 0 failed"));
    char expect[64];
    snprintf(expect, sizeof expect, "test-loaded on sm_%d", arch);
    assert_non_null(strstr(out, expect));
    assert_non_null(strstr(out, "0 load failures"));
    free(out);

    /* The GEMM, from the read-only image store, NVRTC hidden. */
    char command[8192];
    snprintf(command, sizeof command,
             "%s MARLINRT_CACHE='%s/opt/marlinrt/cache.db' MARLINRT_CACHE_READONLY=1 '%s' gemm-child 2>&1", hide_nvrtc,
             d.image, self_path);
    status = mrt_test_run(command, &out);
    if (status != 0 || !strstr(out, "gemm ok: compiles=0 nvrtc_calls=0 hits=1"))
        fail_msg("GEMM from the read-only store failed (%d):\n%s", status, out);
    fprintf(stderr, "[deploy] sm_%d %s: %s", arch, cfg_text, out);
    free(out);
    deploy_teardown(&d);
    free(list);
    free(list_dir);
}

/* argv[1] "cpu" or "gpu" runs one group; no argument runs both; "gemm-child" is the GEMM
 * process of the GPU test. */
int main(int argc, char **argv)
{
    if (!realpath(argv[0], self_path))
        snprintf(self_path, sizeof self_path, "%s", argv[0]);
    if (argc > 1 && strcmp(argv[1], "gemm-child") == 0)
        return gemm_child();
    const char *only = argc > 1 ? argv[1] : "";
    const struct CMUnitTest cpu_tests[] = {
        cmocka_unit_test(test_deploy__build_stage_then_driver_only_runtime_stage),
    };
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_deploy__gemm_from_read_only_store_with_zero_compiles),
    };
    int failures = 0;
    if (strcmp(only, "gpu") != 0)
        failures += cmocka_run_group_tests(cpu_tests, NULL, NULL);
    if (strcmp(only, "cpu") != 0)
        failures += cmocka_run_group_tests(gpu_tests, NULL, NULL);
    return mrt_test_exit_status(failures);
}
