/*
 * The dlopen loaders when the libraries are missing. The loaders answer once per process, so
 * this file points both at paths that do not exist before anything loads, and fills stores
 * through the CLI in a child process that has NVRTC.
 */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/context.h"

#define MISSING_DRIVER "/nonexistent/marlinrt-test/libcuda.so.1"
#define MISSING_NVRTC "/nonexistent/marlinrt-test/libnvrtc.so.13"

static void test_loader__missing_driver_is_no_driver(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE);
    mrt_device_info info;
    for (int attempt = 0; attempt < 2; attempt++) {
        assert_int_equal(mrt_device_get_info(ctx, &info), MRT_ERR_NO_DRIVER);
        assert_non_null(strstr(mrt_errmsg(ctx), MISSING_DRIVER));
    }
    /* A launch needs the driver: the same status, never a crash. Any 16-byte aligned non-zero
     * value passes argument checks; nothing is dereferenced without a device. */
    assert_int_equal(mrt_dequant_w4(ctx, NULL, 256, 512, 1024, 64, 64, 32), MRT_ERR_NO_DRIVER);
    assert_non_null(strstr(mrt_errmsg(ctx), MISSING_DRIVER));
    mrt_context_destroy(ctx);

    /* With MRT_CTX_REQUIRE_DEVICE the failure comes at create time. */
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.flags = MRT_CTX_NO_STORE | MRT_CTX_REQUIRE_DEVICE;
    ctx = (mrt_context *)&opts; /* must be reset to NULL on failure */
    assert_int_equal(mrt_context_create(&opts, &ctx), MRT_ERR_NO_DRIVER);
    assert_null(ctx);
    assert_non_null(strstr(mrt_thread_errmsg(), MISSING_DRIVER));
}

static void test_loader__missing_nvrtc_is_no_nvrtc(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    int major = -1, minor = -1;
    assert_int_equal(mrt_nvrtc_version(ctx, &major, &minor), MRT_ERR_NO_NVRTC);
    assert_non_null(strstr(mrt_errmsg(ctx), MISSING_NVRTC));
    assert_non_null(strstr(mrt_errmsg(ctx), "MARLINRT_NVRTC_PATH"));

    mrt_config cfg = {.threads = 256, .group_blocks = 8};
    void *blob = NULL;
    size_t size = 0;
    assert_int_equal(mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &cfg, &blob, &size, NULL), MRT_ERR_NO_NVRTC);
    assert_null(blob);
    assert_non_null(strstr(mrt_errmsg(ctx), "marlinrt warm --arch sm_90"));
    mrt_context_destroy(ctx);
}

static void test_loader__preloaded_store_serves_without_nvrtc(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("preload");
    char *path = mrt_test_path(dir, "cache.db");
    char command[4096];
    /* The child has NVRTC (the override is removed from its environment). */
    snprintf(command, sizeof command,
             "env -u MARLINRT_NVRTC_PATH '%s' --db '%s' warm --arch sm_90 --kernel dequant_w4 2>&1", mrt_test_cli_path(),
             path);
    char *output = NULL;
    int status = mrt_test_run(command, &output);
    if (status != 0)
        fail_msg("warm failed (%d):\n%s", status, output);
    assert_non_null(strstr(output, "4 compiled"));
    free(output);

    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    size_t count = 0;
    assert_int_equal(mrt_kernel_default_configs(MRT_KERNEL_DEQUANT_W4, NULL, 0, &count), MRT_OK);
    mrt_config configs[8];
    assert_true(count <= 8);
    assert_int_equal(mrt_kernel_default_configs(MRT_KERNEL_DEQUANT_W4, configs, 8, &count), MRT_OK);
    for (size_t i = 0; i < count; i++) {
        void *blob = NULL;
        size_t size = 0;
        mrt_cubin_origin origin = MRT_CUBIN_COMPILED;
        mrt_status rc = mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &configs[i], &blob, &size, &origin);
        if (rc != MRT_OK)
            fail_msg("config %zu: %s", i, mrt_errmsg(ctx));
        assert_int_equal(origin, MRT_CUBIN_FROM_STORE);
        assert_true(size > 0);
        mrt_free(blob);
    }
    assert_int_equal(mrt__nvrtc_compile_calls(), 0);

    /* An arch the store lacks: a clear error naming it and the command that adds it. */
    void *blob = NULL;
    size_t size = 0;
    assert_int_equal(mrt_get_cubin(ctx, 86, MRT_KERNEL_DEQUANT_W4, &configs[0], &blob, &size, NULL),
                     MRT_ERR_NO_NVRTC);
    assert_non_null(strstr(mrt_errmsg(ctx), "sm_86"));
    assert_non_null(strstr(mrt_errmsg(ctx), "marlinrt warm --arch sm_86"));
    mrt_context_destroy(ctx);
    free(path);
    free(dir);
}

int main(void)
{
    setenv("MARLINRT_CUDA_DRIVER_PATH", MISSING_DRIVER, 1);
    setenv("MARLINRT_NVRTC_PATH", MISSING_NVRTC, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loader__missing_driver_is_no_driver),
        cmocka_unit_test(test_loader__missing_nvrtc_is_no_nvrtc),
        cmocka_unit_test(test_loader__preloaded_store_serves_without_nvrtc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
