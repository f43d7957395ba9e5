/*
 * The GPU path end to end: driver, device facts, module load, launch. Skips (and says so)
 * without a GPU; proven on the GPU machine by tools/gpu-suite.sh.
 */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/context.h"

static void test_device__reports_facts(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE);
    mrt_test_require_gpu(ctx);
    mrt_device_info info;
    assert_int_equal(mrt_device_get_info(ctx, &info), MRT_OK);
    fprintf(stderr, "[device] %s sm_%d%d, %d SMs, L2 %d, opt-in smem %d, driver %d\n", info.name, info.cc_major,
            info.cc_minor, info.sm_count, info.l2_bytes, info.max_smem_optin, info.driver_version);
    assert_true(info.cc_major >= 8);
    assert_true(info.sm_count > 0);
    assert_true(info.l2_bytes > 0);
    assert_true(info.max_smem_optin >= 48 * 1024);
    assert_true(strlen(info.name) > 0);
    mrt_context_destroy(ctx);
}

/* Dequantize random packed weights on the GPU and compare every element, bit for bit, with
 * the CPU unpack: (q - 8) * scale rounded once to fp16. */
static void check_dequant(mrt_context *ctx, int64_t k, int64_t n, int group)
{
    int64_t rows = mrt_scale_rows(k, group);
    size_t words = (size_t)(k * n / 8), out_count = (size_t)(k * n), scale_count = (size_t)(rows * n);
    int32_t *packed = malloc(words * sizeof *packed);
    mrt_half *scales = malloc(scale_count * sizeof *scales);
    mrt_half *marlin_scales = malloc(scale_count * sizeof *marlin_scales);
    uint8_t *q = malloc(out_count);
    mrt_half *got = malloc(out_count * sizeof *got);
    assert_true(packed && scales && marlin_scales && q && got);
    for (size_t i = 0; i < words; i++)
        packed[i] = (int32_t)(uint32_t)mrt_test_rand();
    for (size_t i = 0; i < scale_count; i++)
        scales[i] = mrt_float_to_half(mrt_test_uniform(0.001f, 0.05f));
    assert_int_equal(mrt_permute_scales(scales, k, n, group, marlin_scales), MRT_OK);
    assert_int_equal(mrt_unpack_q4(packed, k, n, q, 0), MRT_OK);

    uint64_t d_packed = mrt_test_dev_alloc(ctx, words * 4), d_scales = mrt_test_dev_alloc(ctx, scale_count * 2),
                d_out = mrt_test_dev_alloc(ctx, out_count * 2);
    mrt_test_upload(ctx, d_packed, packed, words * 4);
    mrt_test_upload(ctx, d_scales, marlin_scales, scale_count * 2);
    mrt_test_memset(ctx, d_out, 0xFF, out_count * 2);
    mrt_status rc = mrt_dequant_w4(ctx, NULL, d_packed, d_scales, d_out, k, n, group);
    if (rc != MRT_OK)
        fail_msg("mrt_dequant_w4: %s: %s", mrt_status_str(rc), mrt_errmsg(ctx));
    mrt_test_download(ctx, got, d_out, out_count * 2);

    size_t bad = 0;
    for (int64_t kk = 0; kk < k; kk++) {
        for (int64_t nn = 0; nn < n; nn++) {
            int64_t g = group == -1 ? 0 : kk / group;
            float scale = mrt_half_to_float(scales[g * n + nn]);
            mrt_half want = mrt_float_to_half((float)((int)q[kk * n + nn] - 8) * scale);
            if (got[kk * n + nn] != want && bad++ < 5)
                fprintf(stderr, "k=%lld n=%lld got %04x want %04x\n", (long long)kk, (long long)nn,
                        got[kk * n + nn], want);
        }
    }
    if (bad)
        fail_msg("dequant %lldx%lld group %d: %zu of %zu elements wrong", (long long)k, (long long)n, group, bad,
                 out_count);
    mrt_test_dev_free(ctx, d_packed);
    mrt_test_dev_free(ctx, d_scales);
    mrt_test_dev_free(ctx, d_out);
    free(packed);
    free(scales);
    free(marlin_scales);
    free(q);
    free(got);
}

static void test_device__dequant_matches_cpu_unpack(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE);
    mrt_test_require_gpu(ctx);
    const int groups[] = {-1, 32, 64, 128};
    const int64_t shapes[][2] = {{64, 64}, {128, 192}, {384, 320}, {4096, 4096}, {1152, 2880}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
            if (groups[g] == -1 || shapes[s][0] % groups[g] == 0)
                check_dequant(ctx, shapes[s][0], shapes[s][1], groups[g]);
    mrt_context_destroy(ctx);
}

static void test_device__module_loaded_once_per_context(void **state)
{
    (void)state;
    mrt_context *probe = mrt_test_context(NULL, MRT_CTX_NO_STORE);
    mrt_test_require_gpu(probe);
    char *dir = mrt_test_tempdir("modules");
    char *path = mrt_test_path(dir, "cache.db");
    mrt_context *ctx = mrt_test_context(path, 0);
    mrt_context_destroy(probe);
    check_dequant(ctx, 128, 128, 64);
    check_dequant(ctx, 256, 64, 64);
    mrt_stats stats;
    assert_int_equal(mrt_get_stats(ctx, &stats), MRT_OK);
    assert_int_equal(stats.modules_loaded, 1);
    assert_int_equal(stats.launches, 2);
    assert_int_equal(stats.nvrtc_compiles + stats.store_hits, 1);

    /* A second library context on the same device shares the loaded module. */
    mrt_context *other = mrt_test_context(path, 0);
    check_dequant(other, 128, 128, 64);
    assert_int_equal(mrt_get_stats(other, &stats), MRT_OK);
    assert_int_equal(stats.modules_loaded, 0);
    assert_int_equal(stats.nvrtc_compiles, 0);
    assert_int_equal(stats.launches, 1);
    mrt_context_destroy(other);
    mrt_context_destroy(ctx);
    free(path);
    free(dir);
}

static void test_device__works_after_primary_context_recreated(void **state)
{
    (void)state;
    /* Destroying the only context releases the device's primary context, which unloads every
     * module; a new context must load again rather than launch a stale handle. */
    for (int round = 0; round < 2; round++) {
        mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE);
        mrt_test_require_gpu(ctx);
        check_dequant(ctx, 64, 128, 32);
        mrt_stats stats;
        assert_int_equal(mrt_get_stats(ctx, &stats), MRT_OK);
        assert_int_equal(stats.modules_loaded, 1);
        mrt_context_destroy(ctx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device__reports_facts),
        cmocka_unit_test(test_device__dequant_matches_cpu_unpack),
        cmocka_unit_test(test_device__module_loaded_once_per_context),
        cmocka_unit_test(test_device__works_after_primary_context_recreated),
    };
    return mrt_test_exit_status(cmocka_run_group_tests(tests, NULL, NULL));
}
