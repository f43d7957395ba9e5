/*
 * Status codes, context creation, options and the default store location.
 */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/context.h"

static void test_context__status_texts_are_distinct(void **state)
{
    (void)state;
    static const mrt_status all[] = {
#define MRT_TEST_STATUS_(name, value, text) name,
        MRT_STATUS_LIST(MRT_TEST_STATUS_)
#undef MRT_TEST_STATUS_
    };
    size_t n = sizeof all / sizeof all[0];
    assert_true(n >= 14);
    for (size_t i = 0; i < n; i++) {
        /* Values are pinned: they are the list's positions, never renumbered. */
        assert_int_equal((int)all[i], (int)i);
        assert_true(strlen(mrt_status_str(all[i])) > 3);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(mrt_status_str(all[i]), mrt_status_str(all[j]));
    }
    assert_string_equal(mrt_status_str((mrt_status)9999), "unknown status");
    assert_int_equal(MRT_ERR_NO_DRIVER, 3);
    assert_int_equal(MRT_ERR_NO_NVRTC, 5);
}

static void test_context__version_matches_header(void **state)
{
    (void)state;
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", MRT_VERSION_MAJOR, MRT_VERSION_MINOR, MRT_VERSION_PATCH);
    assert_string_equal(mrt_version_string(), expect);
    assert_int_equal(mrt_version_number(), MRT_VERSION_NUMBER);
}

static void test_context__default_store_path_precedence(void **state)
{
    (void)state;
    char *saved_cache = getenv("MARLINRT_CACHE") ? strdup(getenv("MARLINRT_CACHE")) : NULL;
    char buf[512];
    setenv("MARLINRT_CACHE", "/a/b/explicit.db", 1);
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(mrt_default_store_path(buf, sizeof buf), MRT_OK);
    assert_string_equal(buf, "/a/b/explicit.db");
    unsetenv("MARLINRT_CACHE");
    assert_int_equal(mrt_default_store_path(buf, sizeof buf), MRT_OK);
    assert_string_equal(buf, "/xdg/marlinrt/cache.db");
    unsetenv("XDG_CACHE_HOME");
    assert_int_equal(mrt_default_store_path(buf, sizeof buf), MRT_OK);
    assert_string_equal(buf, "/home/u/.cache/marlinrt/cache.db");
    assert_int_equal(mrt_default_store_path(buf, 8), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_default_store_path(NULL, 8), MRT_ERR_INVALID_ARGUMENT);
    unsetenv("HOME");
    assert_int_equal(mrt_default_store_path(buf, sizeof buf), MRT_ERR_NOT_FOUND);
    assert_non_null(strstr(mrt_thread_errmsg(), "MARLINRT_CACHE"));
    if (saved_cache) {
        setenv("MARLINRT_CACHE", saved_cache, 1);
        free(saved_cache);
    }
}

static void test_context__create_makes_store_folders(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("ctx");
    char *path = mrt_test_path(dir, "deep/er/cache.db");
    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    assert_string_equal(mrt_store_path(ctx), path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    mrt_store_summary sum;
    assert_int_equal(mrt_store_summary_get(ctx, &sum), MRT_OK);
    assert_int_equal(sum.schema_version, 1);
    assert_int_equal(sum.cubin_rows, 0);
    assert_string_equal(mrt_errmsg(ctx), "");
    mrt_context_destroy(ctx);
    free(path);
    free(dir);
}

static void test_context__bad_arguments(void **state)
{
    (void)state;
    assert_int_equal(mrt_context_create(NULL, NULL), MRT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(mrt_thread_errmsg(), "out is NULL"));
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.device = -2;
    mrt_context *ctx = NULL;
    assert_int_equal(mrt_context_create(&opts, &ctx), MRT_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
    assert_non_null(strstr(mrt_thread_errmsg(), "-2"));

    /* A store path inside a regular file cannot be created. */
    char *dir = mrt_test_tempdir("ctx-bad");
    char *file = mrt_test_path(dir, "file");
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    char *path = mrt_test_path(file, "cache.db");
    mrt_context_options_init(&opts);
    opts.store_path = path;
    assert_int_equal(mrt_context_create(&opts, &ctx), MRT_ERR_STORE);
    assert_null(ctx);
    assert_non_null(strstr(mrt_thread_errmsg(), file));

    mrt_context_destroy(NULL);
    assert_string_equal(mrt_errmsg(NULL), "no context (NULL)");
    assert_int_equal(mrt_get_stats(NULL, NULL), MRT_ERR_INVALID_ARGUMENT);
    assert_string_equal(mrt_thread_errmsg(), "mrt_get_stats: ctx is NULL");
    assert_int_equal(mrt_device_get_info(NULL, NULL), MRT_ERR_INVALID_ARGUMENT);
    assert_string_equal(mrt_thread_errmsg(), "mrt_device_get_info: ctx is NULL");
    mrt_gemm_args args;
    memset(&args, 0, sizeof args);
    assert_int_equal(mrt_gemm(NULL, NULL, &args, NULL), MRT_ERR_INVALID_ARGUMENT);
    assert_string_equal(mrt_thread_errmsg(), "mrt_gemm: ctx is NULL");
    free(path);
    free(file);
    free(dir);
}

static void test_context__offline_context_refuses_gpu(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    assert_string_equal(mrt_store_path(ctx), ":memory:");
    mrt_device_info info;
    assert_int_equal(mrt_device_get_info(ctx, &info), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_errmsg(ctx), "MRT_CTX_OFFLINE"));
    mrt_context_destroy(ctx);
}

static void test_context__dequant_arguments_checked_before_any_gpu_use(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    /* Offline contexts refuse the GPU, so MRT_ERR_INVALID_ARGUMENT here proves the check came first. */
    const struct {
        uint64_t packed, scales, out;
        int64_t k, n;
        int group;
        const char *needle;
    } cases[] = {
        {0, 256, 512, 64, 64, 32, "non-zero"},
        {256, 0, 512, 64, 64, 32, "non-zero"},
        {256, 512, 0, 64, 64, 32, "non-zero"},
        {258, 512, 1024, 64, 64, 32, "aligned"},
        {256, 512, 1024, 96, 64, 32, "multiples of 64"},
        {256, 512, 1024, 64, 100, 32, "multiples of 64"},
        {256, 512, 1024, 0, 64, 32, "multiples of 64"},
        {256, 512, 1024, -64, 64, 32, "multiples of 64"},
        {256, 512, 1024, 64, 64, 48, "group_size 48"},
        {256, 512, 1024, 64, 64, 0, "group_size 0"},
        {256, 512, 1024, 192, 64, 128, "not a multiple of group_size"},
        {256, 512, 1024, 1 << 20, 1 << 20, 128, "over 2^31"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mrt_status rc = mrt_dequant_w4(ctx, NULL, cases[i].packed, cases[i].scales, cases[i].out, cases[i].k,
                                       cases[i].n, cases[i].group);
        if (rc != MRT_ERR_INVALID_ARGUMENT || !strstr(mrt_errmsg(ctx), cases[i].needle))
            fail_msg("case %zu: %s: %s", i, mrt_status_str(rc), mrt_errmsg(ctx));
    }
    assert_int_equal(mrt_dequant_w4(ctx, NULL, 256, 512, 1024, 64, 64, 32), MRT_ERR_UNSUPPORTED);
    mrt_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context__status_texts_are_distinct),
        cmocka_unit_test(test_context__version_matches_header),
        cmocka_unit_test(test_context__default_store_path_precedence),
        cmocka_unit_test(test_context__create_makes_store_folders),
        cmocka_unit_test(test_context__bad_arguments),
        cmocka_unit_test(test_context__offline_context_refuses_gpu),
        cmocka_unit_test(test_context__dequant_arguments_checked_before_any_gpu_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
