/*
 * The marlinrt tool, run as a user would: info, warm, cache ls, errors.
 */
#include "helpers.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_cli__info_names_nvrtc_and_why_no_gpu(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("cli-info");
    char *db = mrt_test_path(dir, "cache.db");
    char *out = NULL;
    /* Hide the driver so the reason is known on any machine, GPU or not. */
    int status = mrt_test_cli("MARLINRT_CUDA_DRIVER_PATH=/nonexistent/libcuda.so.1", db, "info", &out);
    if (status != 0)
        fail_msg("info failed (%d):\n%s", status, out);

    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    int major = 0, minor = 0;
    assert_int_equal(mrt_nvrtc_version(ctx, &major, &minor), MRT_OK);
    mrt_context_destroy(ctx);
    char expect[64];
    snprintf(expect, sizeof expect, "NVRTC:   %d.%d", major, minor);
    assert_non_null(strstr(out, expect));
    assert_non_null(strstr(out, "GPU:     none: CUDA driver library not found"));
    assert_non_null(strstr(out, "/nonexistent/libcuda.so.1"));
    assert_non_null(strstr(out, db));
    assert_non_null(strstr(out, "0 cubins"));
    free(out);

    status = mrt_test_cli("MARLINRT_CUDA_DRIVER_PATH=/nonexistent/libcuda.so.1", db, "info --json", &out);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "\"nvrtc\": {\"found\": true"));
    assert_non_null(strstr(out, "\"gpu\": {\"found\": false, \"why\": \""));
    assert_non_null(strstr(out, "\"cubin_rows\": 0"));
    free(out);
    free(db);
    free(dir);
}

static void test_cli__info_shows_read_only_store_and_overlay(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("cli-ro");
    char *db = mrt_test_path(dir, "cache.db");
    char *overlay = mrt_test_path(dir, "overlay.db");
    char *out = NULL;
    assert_int_equal(mrt_test_cli("", db, "info", &out), 0); /* creates the store */
    assert_null(strstr(out, "read-only"));
    free(out);
    char env[1024];
    snprintf(env, sizeof env, "MARLINRT_CACHE_READONLY=1 MARLINRT_CACHE_OVERLAY='%s'", overlay);
    assert_int_equal(mrt_test_cli(env, db, "info", &out), 0);
    assert_non_null(strstr(out, "(read-only: "));
    char expect[1100];
    snprintf(expect, sizeof expect, "overlay: %s", overlay);
    assert_non_null(strstr(out, expect));
    free(out);
    assert_int_equal(mrt_test_cli(env, db, "info --json", &out), 0);
    assert_non_null(strstr(out, "\"read_only\": true"));
    assert_non_null(strstr(out, "\"overlay\": \""));
    free(out);
    free(overlay);
    free(db);
    free(dir);
}

static void test_cli__info_reports_missing_nvrtc(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("cli-nonvrtc");
    char *db = mrt_test_path(dir, "cache.db");
    char *out = NULL;
    int status = mrt_test_cli("MARLINRT_NVRTC_PATH=/nonexistent/libnvrtc.so", db, "info", &out);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "NVRTC:   not available"));
    assert_non_null(strstr(out, "/nonexistent/libnvrtc.so"));
    free(out);
    free(db);
    free(dir);
}

static int count_lines_with(const char *text, const char *needle)
{
    int count = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        count++;
    return count;
}

static void test_cli__warm_twice_then_cache_ls(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("cli-warm");
    char *db = mrt_test_path(dir, "cache.db");
    char *out = NULL;
    int status = mrt_test_cli("", db, "warm --arch sm_80,sm_90 --kernel dequant_w4", &out);
    if (status != 0)
        fail_msg("warm failed (%d):\n%s", status, out);
    assert_non_null(strstr(out, "8 compiled, 0 already present, 0 failed"));
    free(out);

    status = mrt_test_cli("", db, "warm --arch sm_80,sm_90 --kernel dequant_w4", &out);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "0 compiled, 8 already present, 0 failed"));
    free(out);

    status = mrt_test_cli("", db, "cache ls", &out);
    assert_int_equal(status, 0);
    assert_int_equal(count_lines_with(out, "\ndequant_w4"), 8);
    assert_int_equal(count_lines_with(out, " sm_80 "), 4);
    assert_int_equal(count_lines_with(out, " sm_90 "), 4);
    assert_non_null(strstr(out, "8 cubins in"));
    free(out);

    status = mrt_test_cli("", db, "cache ls --json", &out);
    assert_int_equal(status, 0);
    assert_int_equal(count_lines_with(out, "\"kernel\": \"dequant_w4\""), 8);
    assert_int_equal(count_lines_with(out, "\"hits\": 1"), 8); /* the second warm hit each once */
    free(out);
    free(db);
    free(dir);
}

static void test_cli__bad_usage_and_bad_store(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("cli-bad");
    char *db = mrt_test_path(dir, "cache.db");
    char *out = NULL;
    assert_int_equal(mrt_test_cli("", db, "frobnicate", &out), 2);
    assert_non_null(strstr(out, "unknown command \"frobnicate\""));
    assert_non_null(strstr(out, "usage:"));
    free(out);
    assert_int_equal(mrt_test_cli("", db, "warm --arch sm_x", &out), 2);
    assert_non_null(strstr(out, "bad --arch"));
    free(out);
    assert_int_equal(mrt_test_cli("", db, "warm --kernel nope", &out), 2);
    assert_non_null(strstr(out, "unknown kernel"));
    free(out);
    assert_int_equal(mrt_test_cli("", db, "bench --static-weight", &out), 2);
    assert_non_null(strstr(out, "unknown argument \"--static-weight\""));
    free(out);
    assert_int_equal(mrt_test_cli("", db, "bench --config t256.m1.n8", &out), 2);
    assert_non_null(strstr(out, "bad --config"));
    free(out);

    /* Bad usage never created the store. */
    FILE *f = fopen(db, "r");
    assert_null(f);

    /* The launch flags are bench options: accepted, and without a GPU the bench says so. */
    assert_int_equal(mrt_test_cli("MARLINRT_CUDA_DRIVER_PATH=/nonexistent/libcuda.so.1", db,
                                  "bench --static-weights --no-overlap --m 1 --shape 64x64", &out),
                     1);
    assert_non_null(strstr(out, "bench needs a GPU"));
    free(out);
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s%s", db, suffixes[i]);
        remove(path);
    }

    /* A store written by a future schema is refused with its version in the message. */
    sqlite3 *handle = NULL;
    assert_int_equal(sqlite3_open(db, &handle), SQLITE_OK);
    assert_int_equal(sqlite3_exec(handle, "CREATE TABLE cubin(x); PRAGMA user_version = 7;", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(handle);
    assert_int_equal(mrt_test_cli("", db, "info", &out), 1);
    assert_non_null(strstr(out, "cannot open the store"));
    assert_non_null(strstr(out, "version 7"));
    free(out);
    free(db);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli__info_names_nvrtc_and_why_no_gpu),
        cmocka_unit_test(test_cli__info_reports_missing_nvrtc),
        cmocka_unit_test(test_cli__info_shows_read_only_store_and_overlay),
        cmocka_unit_test(test_cli__warm_twice_then_cache_ls),
        cmocka_unit_test(test_cli__bad_usage_and_bad_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
