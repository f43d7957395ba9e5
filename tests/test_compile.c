/*
 * NVRTC compilation of the embedded kernels and the store in front of it. NVRTC must be
 * present where these run (CI has the CUDA toolkit): a missing NVRTC fails, it never skips.
 */
#include "helpers.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/context.h"

static const int all_archs[] = {80, 86, 89, 90};

/* A cubin is an ELF64 object for the CUDA machine (EM_CUDA = 190). */
static int is_cubin(const void *blob, size_t size)
{
    const unsigned char *b = blob;
    return size > 64 && memcmp(b, "\x7f" "ELF", 4) == 0 && b[4] == 2 /* ELFCLASS64 */ && (b[18] | b[19] << 8) == 190;
}

static void require_nvrtc(mrt_context *ctx)
{
    int major = 0, minor = 0;
    mrt_status rc = mrt_nvrtc_version(ctx, &major, &minor);
    if (rc != MRT_OK)
        fail_msg("NVRTC is required for this test and was not found: %s", mrt_errmsg(ctx));
    assert_true(major >= 12);
}

static void test_compile__sources_need_no_include(void **state)
{
    (void)state;
    assert_true(mrt__source_count >= 1);
    for (size_t i = 0; i < mrt__source_count; i++) {
        const mrt__source *s = &mrt__sources[i];
        assert_int_equal(strlen(s->text), s->length);
        /* The machines we ship to have no CUDA headers; an #include would fail there. */
        assert_null(strstr(s->text, "#include"));
    }
    for (int k = 0; mrt_kernel_name(k); k++)
        assert_non_null(mrt__kernel_source(mrt__kernel_find(mrt_kernel_name(k))));
}

/* One compile job of the sweep below; each worker thread has its own context. */
typedef struct compile_job {
    const char *kernel;
    int arch;
    mrt_config config;
    mrt_status rc;
    mrt_cubin_origin origin;
    int cubin_ok;
    char why[512];
} compile_job;

typedef struct compile_sweep {
    compile_job *jobs;
} compile_sweep;

static void compile_one(int64_t i, void *user)
{
    compile_sweep *sweep = user;
    compile_job *job = &sweep->jobs[i];
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.flags = MRT_CTX_NO_STORE | MRT_CTX_OFFLINE;
    mrt_context *ctx = NULL;
    job->rc = mrt_context_create(&opts, &ctx);
    if (job->rc != MRT_OK) {
        snprintf(job->why, sizeof job->why, "%s", mrt_thread_errmsg());
        return;
    }
    void *blob = NULL;
    size_t size = 0;
    job->rc = mrt_get_cubin(ctx, job->arch, job->kernel, &job->config, &blob, &size, &job->origin);
    if (job->rc != MRT_OK) {
        snprintf(job->why, sizeof job->why, "%s", mrt_errmsg(ctx));
    } else {
        job->cubin_ok = is_cubin(blob, size);
    }
    mrt_free(blob);
    mrt_context_destroy(ctx);
}

/* Every configuration the library can pick, for every arch CI must cover, compiled by NVRTC
 * (in parallel: NVRTC is thread-safe across programs, and there are a few hundred). */
static void test_compile__every_default_config_for_every_arch(void **state)
{
    (void)state;
    mrt_context *probe = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    require_nvrtc(probe);
    mrt_context_destroy(probe);
    /* MRT_TEST_COMPILE_ARCHS (e.g. "90") narrows the sweep; .ci/run sets it for the second,
     * sanitizer pass, where only the host code differs from the first. */
    int archs[4], arch_count = 0;
    const char *only = getenv("MRT_TEST_COMPILE_ARCHS");
    for (size_t a = 0; a < sizeof all_archs / sizeof all_archs[0]; a++) {
        char text[8];
        snprintf(text, sizeof text, "%d", all_archs[a]);
        if (!only || strstr(only, text))
            archs[arch_count++] = all_archs[a];
    }
    assert_true(arch_count > 0);
    size_t total = 0;
    for (int k = 0; mrt_kernel_name(k); k++) {
        size_t count = 0;
        assert_int_equal(mrt_kernel_default_configs(mrt_kernel_name(k), NULL, 0, &count), MRT_OK);
        assert_true(count > 0);
        total += count * (size_t)arch_count;
    }
    compile_sweep sweep = {calloc(total, sizeof(compile_job))};
    assert_non_null(sweep.jobs);
    size_t at = 0;
    for (int k = 0; mrt_kernel_name(k); k++) {
        const char *kernel = mrt_kernel_name(k);
        size_t count = 0;
        assert_int_equal(mrt_kernel_default_configs(kernel, NULL, 0, &count), MRT_OK);
        mrt_config *configs = calloc(count, sizeof *configs);
        assert_non_null(configs);
        assert_int_equal(mrt_kernel_default_configs(kernel, configs, count, &count), MRT_OK);
        for (int a = 0; a < arch_count; a++)
            for (size_t i = 0; i < count; i++) {
                /* The wgmma configurations (of both GEMM entry points) exist for sm_90 only:
                 * elsewhere they must be refused, without a compile. */
                const int gemm = strcmp(kernel, MRT_KERNEL_MARLIN_W4A16) == 0 ||
                                 strcmp(kernel, MRT_KERNEL_MARLIN_W4A16_SK) == 0;
                if (gemm && configs[i].thread_m_blocks >= 8 && archs[a] != 90) {
                    assert_int_equal(mrt_config_supports_arch(kernel, &configs[i], archs[a]), MRT_ERR_UNSUPPORTED);
                    assert_non_null(strstr(mrt_thread_errmsg(), "sm_90 only"));
                    total--;
                    continue;
                }
                assert_int_equal(mrt_config_supports_arch(kernel, &configs[i], archs[a]), MRT_OK);
                sweep.jobs[at++] = (compile_job){.kernel = kernel, .arch = archs[a], .config = configs[i]};
            }
        free(configs);
    }
    assert_int_equal(at, total);
    uint64_t calls_before = mrt__nvrtc_compile_calls();
    mrt__parallel_for((int64_t)total, mrt__worker_count(0), compile_one, &sweep);
    for (size_t i = 0; i < total; i++) {
        const compile_job *job = &sweep.jobs[i];
        if (job->rc != MRT_OK || job->origin != MRT_CUBIN_COMPILED || !job->cubin_ok)
            fail_msg("%s sm_%d t%d.m%d.n%d.k%d.s%d.g%d: %s (origin %d, cubin %s): %s", job->kernel, job->arch,
                     job->config.threads, job->config.thread_m_blocks, job->config.thread_n_blocks,
                     job->config.thread_k_blocks, job->config.stages, job->config.group_blocks,
                     mrt_status_str(job->rc), (int)job->origin, job->cubin_ok ? "ok" : "bad", job->why);
    }
    assert_int_equal(mrt__nvrtc_compile_calls() - calls_before, total);
    fprintf(stderr, "[compile] %zu cubins for %d arch(s)%s\n", total, arch_count,
            only ? " (narrowed by MRT_TEST_COMPILE_ARCHS)" : "");
    free(sweep.jobs);
}

static void test_compile__archs_give_different_cubins(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    require_nvrtc(ctx);
    mrt_config cfg = {.threads = 256, .group_blocks = 8};
    void *a = NULL, *b = NULL;
    size_t sa = 0, sb = 0;
    assert_int_equal(mrt_get_cubin(ctx, 80, MRT_KERNEL_DEQUANT_W4, &cfg, &a, &sa, NULL), MRT_OK);
    assert_int_equal(mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &cfg, &b, &sb, NULL), MRT_OK);
    assert_true(sa != sb || memcmp(a, b, sa) != 0);
    mrt_free(a);
    mrt_free(b);
    mrt_context_destroy(ctx);
}

static void test_compile__second_fetch_hits_store_without_nvrtc_call(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("hit");
    char *path = mrt_test_path(dir, "cache.db");
    mrt_config cfg = {.threads = 128, .group_blocks = 4};

    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    require_nvrtc(ctx);
    void *first = NULL, *second = NULL;
    size_t first_size = 0, second_size = 0;
    mrt_cubin_origin origin;
    assert_int_equal(mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &cfg, &first, &first_size, &origin), MRT_OK);
    assert_int_equal(origin, MRT_CUBIN_COMPILED);
    mrt_context_destroy(ctx);

    /* A new context (as a new process would) on the same file: no NVRTC compile happens. */
    uint64_t calls_before = mrt__nvrtc_compile_calls();
    ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    assert_int_equal(mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &cfg, &second, &second_size, &origin), MRT_OK);
    assert_int_equal(origin, MRT_CUBIN_FROM_STORE);
    assert_int_equal(mrt__nvrtc_compile_calls(), calls_before);
    assert_int_equal(second_size, first_size);
    assert_memory_equal(first, second, first_size);
    mrt_stats stats;
    assert_int_equal(mrt_get_stats(ctx, &stats), MRT_OK);
    assert_int_equal(stats.nvrtc_compiles, 0);
    assert_int_equal(stats.store_hits, 1);
    assert_int_equal(stats.store_misses, 0);
    mrt_context_destroy(ctx);
    mrt_free(first);
    mrt_free(second);
    free(path);
    free(dir);
}

static void corrupt_all_blobs(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    /* Flip the blob's bytes in place (same length) so only the checksum can notice. */
    char *errmsg = NULL;
    int rc = sqlite3_exec(db, "UPDATE cubin SET blob = zeroblob(length(blob))", NULL, NULL, &errmsg);
    if (rc != SQLITE_OK)
        fail_msg("corrupting the store: %s", errmsg);
    assert_true(sqlite3_changes(db) >= 1);
    sqlite3_close(db);
}

static void test_compile__corrupt_blob_is_recompiled(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("corrupt");
    char *path = mrt_test_path(dir, "cache.db");
    mrt_config cfg = {.threads = 256, .group_blocks = -1};
    void *good = NULL, *again = NULL;
    size_t good_size = 0, again_size = 0;
    mrt_cubin_origin origin;

    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    require_nvrtc(ctx);
    assert_int_equal(mrt_get_cubin(ctx, 86, MRT_KERNEL_DEQUANT_W4, &cfg, &good, &good_size, &origin), MRT_OK);
    assert_int_equal(origin, MRT_CUBIN_COMPILED);
    corrupt_all_blobs(path);

    assert_int_equal(mrt_get_cubin(ctx, 86, MRT_KERNEL_DEQUANT_W4, &cfg, &again, &again_size, &origin), MRT_OK);
    assert_int_equal(origin, MRT_CUBIN_RECOMPILED);
    assert_int_equal(again_size, good_size);
    assert_memory_equal(again, good, good_size);
    mrt_stats stats;
    assert_int_equal(mrt_get_stats(ctx, &stats), MRT_OK);
    assert_int_equal(stats.corrupt_recompiled, 1);
    assert_int_equal(stats.nvrtc_compiles, 2);
    mrt_free(again);

    /* The replaced row is good again. */
    assert_int_equal(mrt_get_cubin(ctx, 86, MRT_KERNEL_DEQUANT_W4, &cfg, &again, &again_size, &origin), MRT_OK);
    assert_int_equal(origin, MRT_CUBIN_FROM_STORE);
    mrt_store_summary sum;
    assert_int_equal(mrt_store_summary_get(ctx, &sum), MRT_OK);
    assert_int_equal(sum.cubin_rows, 1);
    mrt_context_destroy(ctx);
    mrt_free(good);
    mrt_free(again);
    free(path);
    free(dir);
}

/* A kernel entry whose name expression does not compile, to see the NVRTC log come back. */
static int broken_expression(const mrt_config *cfg, char *buf, size_t size)
{
    (void)cfg;
    return snprintf(buf, size, "dequant_w4<256, undefined_symbol_xyz>");
}

static mrt_status accept_all(const mrt_config *cfg, mrt__err *err)
{
    (void)cfg;
    (void)err;
    return MRT_OK;
}

static void test_compile__failure_carries_nvrtc_log(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    require_nvrtc(ctx);
    const mrt__kernel broken = {"broken", "dequant_w4.cu", broken_expression, accept_all, NULL, NULL};
    mrt_config cfg = {.threads = 256, .group_blocks = 8};
    void *blob = NULL;
    size_t size = 0;
    char *entry = NULL;
    mrt_status rc = mrt__cubin_fetch(ctx, 90, &broken, &cfg, &blob, &size, &entry, NULL);
    assert_int_equal(rc, MRT_ERR_COMPILE);
    assert_null(blob);
    assert_null(entry);
    assert_non_null(strstr(mrt_errmsg(ctx), "undefined_symbol_xyz"));
    assert_non_null(strstr(mrt_errmsg(ctx), "nvrtcCompileProgram"));
    mrt_store_summary sum;
    assert_int_equal(mrt_store_summary_get(ctx, &sum), MRT_OK);
    assert_int_equal(sum.cubin_rows, 0);
    mrt_context_destroy(ctx);
}

static void test_compile__bad_requests_are_refused(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    require_nvrtc(ctx);
    void *blob = (void *)1;
    size_t size = 1;
    mrt_config cfg = {.threads = 100, .group_blocks = 8};
    assert_int_equal(mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &cfg, &blob, &size, NULL), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_errmsg(ctx), "threads = 100"));
    assert_null(blob);

    cfg = (mrt_config){.threads = 256, .group_blocks = 3};
    assert_int_equal(mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &cfg, &blob, &size, NULL), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_errmsg(ctx), "group_blocks"));

    cfg = (mrt_config){.threads = 256, .group_blocks = 8, .reserved = {1, 0}};
    assert_int_equal(mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &cfg, &blob, &size, NULL), MRT_ERR_UNSUPPORTED);

    cfg = (mrt_config){.threads = 256, .group_blocks = 8};
    assert_int_equal(mrt_get_cubin(ctx, 90, "no_such_kernel", &cfg, &blob, &size, NULL), MRT_ERR_NOT_FOUND);
    assert_non_null(strstr(mrt_errmsg(ctx), "no_such_kernel"));
    assert_int_equal(mrt_get_cubin(ctx, 35, MRT_KERNEL_DEQUANT_W4, &cfg, &blob, &size, NULL), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_errmsg(ctx), "sm_35"));
    assert_int_equal(mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, NULL, &blob, &size, NULL),
                     MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_get_cubin(ctx, 90, MRT_KERNEL_DEQUANT_W4, &cfg, NULL, &size, NULL),
                     MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_get_cubin(NULL, 90, MRT_KERNEL_DEQUANT_W4, &cfg, &blob, &size, NULL),
                     MRT_ERR_INVALID_ARGUMENT);
    mrt_stats stats;
    assert_int_equal(mrt_get_stats(ctx, &stats), MRT_OK);
    assert_int_equal(stats.nvrtc_compiles, 0);
    mrt_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile__sources_need_no_include),
        cmocka_unit_test(test_compile__every_default_config_for_every_arch),
        cmocka_unit_test(test_compile__archs_give_different_cubins),
        cmocka_unit_test(test_compile__second_fetch_hits_store_without_nvrtc_call),
        cmocka_unit_test(test_compile__corrupt_blob_is_recompiled),
        cmocka_unit_test(test_compile__failure_carries_nvrtc_log),
        cmocka_unit_test(test_compile__bad_requests_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
