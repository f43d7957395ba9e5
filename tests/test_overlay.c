/*
 * The context's stores (runtime/overlay.c, cache/store.c): read-only base stores, asked for
 * or detected from the file's permissions, the overlay that takes every write, and cubins the
 * driver refuses. The driver is tests/fake_cuda.c, so the GPU-side paths run on any machine;
 * scenarios that must hide NVRTC run in a fresh process (this program, re-executed).
 */
#include "helpers.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>
#include <xxhash.h>

static const mrt_config dequant_g8 = {.threads = 256, .group_blocks = 8};
static const mrt_config dequant_g4 = {.threads = 256, .group_blocks = 4};
static const mrt_config dequant_g2 = {.threads = 256, .group_blocks = 2};

static char self_path[4096];

static int64_t cubin_rows(const char *path)
{
    return mrt_test_sql_int(path, "SELECT COUNT(*) FROM cubin");
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *message = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK)
        fail_msg("%s: %s", sql, message);
    sqlite3_close(db);
}

/* Fetch one cubin through ctx and check where it came from. */
static void fetch(mrt_context *ctx, int arch, const mrt_config *cfg, mrt_cubin_origin expected)
{
    void *cubin = NULL;
    size_t size = 0;
    mrt_cubin_origin origin = (mrt_cubin_origin)77;
    mrt_status rc = mrt_get_cubin(ctx, arch, MRT_KERNEL_DEQUANT_W4, cfg, &cubin, &size, &origin);
    if (rc != MRT_OK)
        fail_msg("mrt_get_cubin: %s: %s", mrt_status_str(rc), mrt_errmsg(ctx));
    assert_int_equal(origin, expected);
    assert_true(size > 64);
    mrt_free(cubin);
}

/* A store at dir/name holding dequant_w4 g8 for sm_80. */
static char *warmed_store(const char *dir, const char *name)
{
    char *path = mrt_test_path(dir, name);
    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    fetch(ctx, 80, &dequant_g8, MRT_CUBIN_COMPILED);
    mrt_context_destroy(ctx);
    return path;
}

static mrt_context *context_with(const char *path, const char *overlay, uint32_t flags, mrt_status expected)
{
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = path;
    opts.overlay_path = overlay;
    opts.flags = flags;
    mrt_context *ctx = NULL;
    mrt_status rc = mrt_context_create(&opts, &ctx);
    if (rc != expected)
        fail_msg("mrt_context_create gave %s, expected %s: %s", mrt_status_str(rc), mrt_status_str(expected),
                 mrt_thread_errmsg());
    return ctx;
}

static void test_overlay__read_only_flag_serves_hits_and_keeps_compiles_in_memory(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("ro-flag");
    char *path = warmed_store(dir, "cache.db");

    mrt_context *ctx = context_with(path, NULL, MRT_CTX_OFFLINE | MRT_CTX_STORE_READONLY, MRT_OK);
    assert_int_equal(mrt_store_read_only(ctx), 1);
    assert_non_null(strstr(mrt_store_read_only_reason(ctx), "asked"));
    assert_null(mrt_store_overlay_path(ctx));
    fetch(ctx, 80, &dequant_g8, MRT_CUBIN_FROM_STORE);
    /* A miss is compiled and served, but there is nowhere to keep it: counted, not failed. */
    fetch(ctx, 80, &dequant_g4, MRT_CUBIN_COMPILED);
    fetch(ctx, 80, &dequant_g4, MRT_CUBIN_COMPILED);
    mrt_stats stats;
    assert_int_equal(mrt_get_stats(ctx, &stats), MRT_OK);
    assert_int_equal(stats.store_writes_skipped, 2);
    assert_int_equal(stats.store_hits, 1);
    assert_int_equal(stats.nvrtc_compiles, 2);
    mrt_context_destroy(ctx);

    /* Nothing was written: not the compiled rows, not even the hit's bookkeeping. */
    assert_int_equal(cubin_rows(path), 1);
    assert_int_equal(mrt_test_sql_int(path, "SELECT hit_count FROM cubin"), 0);
    free(path);
    free(dir);
}

static void test_overlay__read_only_environment_variable(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("ro-env");
    char *path = warmed_store(dir, "cache.db");

    setenv("MARLINRT_CACHE_READONLY", "1", 1);
    mrt_context *ctx = context_with(path, NULL, MRT_CTX_OFFLINE, MRT_OK);
    assert_int_equal(mrt_store_read_only(ctx), 1);
    mrt_context_destroy(ctx);

    setenv("MARLINRT_CACHE_READONLY", "0", 1);
    ctx = context_with(path, NULL, MRT_CTX_OFFLINE, MRT_OK);
    assert_int_equal(mrt_store_read_only(ctx), 0);
    mrt_context_destroy(ctx);

    /* Anything else is refused, not guessed at. */
    setenv("MARLINRT_CACHE_READONLY", "yes", 1);
    assert_null(context_with(path, NULL, MRT_CTX_OFFLINE, MRT_ERR_INVALID_ARGUMENT));
    assert_non_null(strstr(mrt_thread_errmsg(), "MARLINRT_CACHE_READONLY"));
    unsetenv("MARLINRT_CACHE_READONLY");

    /* A read-only store must exist and be a store: there is nothing to create. */
    char *missing = mrt_test_path(dir, "missing.db");
    assert_null(context_with(missing, NULL, MRT_CTX_OFFLINE | MRT_CTX_STORE_READONLY, MRT_ERR_STORE));
    assert_non_null(strstr(mrt_thread_errmsg(), missing));
    free(missing);
    free(path);
    free(dir);
}

static void test_overlay__overlay_takes_every_write_and_is_read_after_the_base(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("overlay");
    char *base = warmed_store(dir, "base.db");
    char *overlay = mrt_test_path(dir, "writable/overlay.db"); /* its folder is created */

    mrt_context *ctx = context_with(base, overlay, MRT_CTX_OFFLINE | MRT_CTX_STORE_READONLY, MRT_OK);
    assert_string_equal(mrt_store_overlay_path(ctx), overlay);
    fetch(ctx, 80, &dequant_g8, MRT_CUBIN_FROM_STORE);
    fetch(ctx, 80, &dequant_g4, MRT_CUBIN_COMPILED);
    mrt_stats stats;
    assert_int_equal(mrt_get_stats(ctx, &stats), MRT_OK);
    assert_int_equal(stats.store_writes_skipped, 0);
    mrt_context_destroy(ctx);
    assert_int_equal(cubin_rows(base), 1);
    assert_int_equal(cubin_rows(overlay), 1);

    /* The next process finds both, each in its own store, and compiles nothing. */
    ctx = context_with(base, overlay, MRT_CTX_OFFLINE | MRT_CTX_STORE_READONLY, MRT_OK);
    fetch(ctx, 80, &dequant_g4, MRT_CUBIN_FROM_STORE);
    fetch(ctx, 80, &dequant_g8, MRT_CUBIN_FROM_STORE);
    assert_int_equal(mrt_get_stats(ctx, &stats), MRT_OK);
    assert_int_equal(stats.nvrtc_compiles, 0);
    mrt_context_destroy(ctx);

    /* With a writable base the overlay still takes the writes: the base is never changed. */
    ctx = context_with(base, overlay, MRT_CTX_OFFLINE, MRT_OK);
    fetch(ctx, 80, &dequant_g2, MRT_CUBIN_COMPILED);
    mrt_context_destroy(ctx);
    assert_int_equal(cubin_rows(base), 1);
    assert_int_equal(cubin_rows(overlay), 2);

    /* The same row in both: the base answers (its hit is recorded there). */
    char sql[8192];
    snprintf(sql, sizeof sql, "ATTACH '%s' AS base; INSERT INTO cubin SELECT * FROM base.cubin;", base);
    exec_sql(overlay, sql);
    ctx = context_with(base, overlay, MRT_CTX_OFFLINE, MRT_OK);
    fetch(ctx, 80, &dequant_g8, MRT_CUBIN_FROM_STORE);
    mrt_context_destroy(ctx);
    assert_int_equal(mrt_test_sql_int(base, "SELECT hit_count FROM cubin"), 1);
    assert_int_equal(mrt_test_sql_int(overlay, "SELECT SUM(hit_count) FROM cubin"), 1);

    /* MARLINRT_CACHE_OVERLAY when the option is NULL; the store itself is refused. */
    setenv("MARLINRT_CACHE_OVERLAY", overlay, 1);
    ctx = context_with(base, NULL, MRT_CTX_OFFLINE, MRT_OK);
    assert_string_equal(mrt_store_overlay_path(ctx), overlay);
    mrt_context_destroy(ctx);
    unsetenv("MARLINRT_CACHE_OVERLAY");
    assert_null(context_with(base, base, MRT_CTX_OFFLINE, MRT_ERR_INVALID_ARGUMENT));
    /* No overlay for a private in-memory store. */
    ctx = context_with(NULL, overlay, MRT_CTX_OFFLINE | MRT_CTX_NO_STORE, MRT_OK);
    assert_null(mrt_store_overlay_path(ctx));
    mrt_context_destroy(ctx);

    free(overlay);
    free(base);
    free(dir);
}

/* Whether dir holds a file whose name ends with suffix. */
static int has_file_ending(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int found = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name), m = strlen(suffix);
        if (n >= m && strcmp(e->d_name + n - m, suffix) == 0)
            found = 1;
    }
    closedir(d);
    return found;
}

/* In a child, as the user "nobody" when this runs as root (root may write anything), open
 * path with no read-only option and check it was detected. Exit codes name the failed check. */
static int open_unwritable_as_other_user(const char *dir, const char *path, int expect_immutable)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(90);
        if (access(path, R_OK) != 0)
            _exit(91); /* the build tree is not readable by that user: cannot check here */
        mrt_context_options opts;
        mrt_context_options_init(&opts);
        opts.store_path = path;
        opts.flags = MRT_CTX_OFFLINE;
        mrt_context *ctx = NULL;
        if (mrt_context_create(&opts, &ctx) != MRT_OK) {
            fprintf(stderr, "child: %s\n", mrt_thread_errmsg());
            _exit(1);
        }
        if (!mrt_store_read_only(ctx) || !strstr(mrt_store_read_only_reason(ctx), "may not write"))
            _exit(2);
        if (!!strstr(mrt_store_read_only_reason(ctx), "immutable") != expect_immutable)
            _exit(3);
        void *cubin = NULL;
        size_t size = 0;
        mrt_cubin_origin origin;
        if (mrt_get_cubin(ctx, 80, MRT_KERNEL_DEQUANT_W4, &dequant_g8, &cubin, &size, &origin) != MRT_OK ||
            origin != MRT_CUBIN_FROM_STORE)
            _exit(4);
        mrt_free(cubin);
        if (mrt_get_cubin(ctx, 80, MRT_KERNEL_DEQUANT_W4, &dequant_g4, &cubin, &size, &origin) != MRT_OK ||
            origin != MRT_CUBIN_COMPILED)
            _exit(5);
        mrt_free(cubin);
        mrt_stats stats;
        if (mrt_get_stats(ctx, &stats) != MRT_OK || stats.store_writes_skipped != 1)
            _exit(6);
        mrt_context_destroy(ctx);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    (void)dir;
    return WEXITSTATUS(status);
}

static void test_overlay__unwritable_store_is_opened_read_only(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("ro-detect");
    /* The child may be another user: let it reach the folder. */
    assert_int_equal(chmod(dir, 0755), 0);
    char *path = warmed_store(dir, "cache.db");
    assert_int_equal(chmod(path, 0444), 0);

    /* A folder it may write: plain SQLITE_OPEN_READONLY. */
    assert_int_equal(chmod(dir, 0777), 0);
    int code = open_unwritable_as_other_user(dir, path, 0);
    if (code == 91) {
        fprintf(stderr, "[note] the build tree is not readable by uid 65534; read-only detection not checked\n");
    } else {
        assert_int_equal(code, 0);
        /* A folder it may not write: immutable, so no -wal or -shm is needed or made. */
        assert_int_equal(chmod(dir, 0555), 0);
        char *side = mrt_test_path(dir, "cache.db-shm");
        unlink(side);
        free(side);
        side = mrt_test_path(dir, "cache.db-wal");
        unlink(side);
        free(side);
        assert_int_equal(open_unwritable_as_other_user(dir, path, 1), 0);
        assert_false(has_file_ending(dir, "-shm"));
        assert_false(has_file_ending(dir, "-wal"));
    }
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(cubin_rows(path), 1);

    /* An unwritable overlay is an error, not a silent read-only overlay. */
    if (code == 0) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
                _exit(90);
            mrt_context_options opts;
            mrt_context_options_init(&opts);
            opts.store_path = ":memory:";
            opts.overlay_path = path;
            mrt_context *ctx = NULL;
            mrt_status rc = mrt_context_create(&opts, &ctx);
            _exit(rc == MRT_ERR_STORE && strstr(mrt_thread_errmsg(), "must be writable") ? 0 : 1);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    free(path);
    free(dir);
}

/* ------------------------------------------------------------------------- */
/* Cubins the driver refuses (fake driver, fresh processes)                   */
/* ------------------------------------------------------------------------- */

/* Child: with the fake driver refusing the next `refusals` loads with `code`, run the
 * dequantize utility (group 128, so dequant_w4 g8 on sm_80) and print what happened. */
static int child_dequant(const char *path, int refusals, int code)
{
    void *fake = dlopen(MRT_FAKE_CUDA_PATH, RTLD_NOW);
    if (!fake) {
        printf("dlopen failed: %s\n", dlerror());
        return 1;
    }
    void (*refuse)(int, int) = (void (*)(int, int))dlsym(fake, "mrt_fake_cuda_refuse");
    int (*loads)(void) = (int (*)(void))dlsym(fake, "mrt_fake_cuda_module_loads");
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = path;
    mrt_context *ctx = NULL;
    if (!refuse || !loads || mrt_context_create(&opts, &ctx) != MRT_OK) {
        printf("setup failed: %s\n", mrt_thread_errmsg());
        return 1;
    }
    refuse(refusals, code);
    /* The fake launches nothing, so any aligned addresses do. */
    mrt_status rc = mrt_dequant_w4(ctx, NULL, 0x10000, 0x20000, 0x30000, 256, 64, 128);
    mrt_stats stats;
    mrt_get_stats(ctx, &stats);
    printf("rc=%d refusals=%llu compiles=%llu hits=%llu loaded=%llu loads=%d\nmessage=%s\n", (int)rc,
           (unsigned long long)stats.driver_refusals, (unsigned long long)stats.nvrtc_compiles,
           (unsigned long long)stats.store_hits, (unsigned long long)stats.modules_loaded, loads(), mrt_errmsg(ctx));
    mrt_context_destroy(ctx);
    return 0;
}

typedef struct child_result {
    int rc;
    unsigned long long refusals, compiles, hits, loaded;
    int loads;
    char *output;
} child_result;

static child_result run_child(const char *env, const char *path, int refusals, int code)
{
    char command[8192];
    snprintf(command, sizeof command, "%s '%s' child-dequant '%s' %d %d 2>&1", env, self_path, path, refusals, code);
    child_result r;
    memset(&r, 0, sizeof r);
    int status = mrt_test_run(command, &r.output);
    if (status != 0 || sscanf(r.output, "rc=%d refusals=%llu compiles=%llu hits=%llu loaded=%llu loads=%d", &r.rc,
                              &r.refusals, &r.compiles, &r.hits, &r.loaded, &r.loads) != 6)
        fail_msg("child failed (%d):\n%s", status, r.output);
    return r;
}

static const char *no_nvrtc = "MARLINRT_NVRTC_PATH=/nonexistent/libnvrtc.so";

static void test_overlay__refused_cubin_is_evicted_and_recompiled(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("refused");
    char *path = warmed_store(dir, "cache.db");

    child_result r = run_child("", path, 1, 209 /* CUDA_ERROR_NO_BINARY_FOR_GPU */);
    assert_int_equal(r.rc, MRT_OK);
    assert_int_equal(r.refusals, 1);
    assert_int_equal(r.hits, 1);     /* the stored cubin, refused */
    assert_int_equal(r.compiles, 1); /* its replacement */
    assert_int_equal(r.loads, 2);
    assert_int_equal(r.loaded, 1);
    free(r.output);
    assert_int_equal(cubin_rows(path), 1);

    /* A failure that says nothing about the image (out of memory) evicts nothing. */
    r = run_child("", path, 1, 2 /* CUDA_ERROR_OUT_OF_MEMORY */);
    assert_int_equal(r.rc, MRT_ERR_CUDA);
    assert_int_equal(r.refusals, 0);
    assert_int_equal(r.compiles, 0);
    assert_non_null(strstr(r.output, "CUDA_ERROR_OUT_OF_MEMORY"));
    free(r.output);
    assert_int_equal(cubin_rows(path), 1);

    /* Refused again straight from NVRTC: the driver is older than the compiler. */
    r = run_child("", path, 2, 222 /* CUDA_ERROR_UNSUPPORTED_PTX_VERSION */);
    assert_int_equal(r.rc, MRT_ERR_CUDA);
    assert_int_equal(r.refusals, 2);
    assert_non_null(strstr(r.output, "just compiled"));
    assert_non_null(strstr(r.output, "older than NVRTC"));
    assert_non_null(strstr(r.output, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"));
    free(r.output);
    free(path);
    free(dir);
}

/* Add a copy of the store's one row as if a newer NVRTC (99.0) had made it, with a blob one
 * byte longer (so its XXH64 differs), consistently checksummed. */
static void add_newer_nvrtc_row(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT blob FROM cubin", -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    size_t size = (size_t)sqlite3_column_bytes(stmt, 0);
    unsigned char *longer = calloc(size + 1, 1);
    assert_non_null(longer);
    memcpy(longer, sqlite3_column_blob(stmt, 0), size);
    sqlite3_finalize(stmt);
    uint64_t hash = XXH64(longer, size + 1, 0);
    int64_t bits;
    memcpy(&bits, &hash, sizeof bits);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO cubin (key, variant, kernel, entry, arch, threads, thread_m_blocks,"
                                        " thread_n_blocks, thread_k_blocks, stages, group_blocks, nvrtc_major,"
                                        " nvrtc_minor, source_hash, options, format_version, blob, blob_size,"
                                        " blob_xxh64, compile_ms, created_at, last_used_at, hit_count)"
                                        " SELECT randomblob(16), variant, kernel, entry, arch, threads,"
                                        " thread_m_blocks, thread_n_blocks, thread_k_blocks, stages, group_blocks, 99,"
                                        " 0, source_hash, options, format_version, ?1, ?2, ?3, compile_ms, created_at,"
                                        " last_used_at, 0 FROM cubin",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(stmt, 1, longer, (int)size + 1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)size + 1);
    sqlite3_bind_int64(stmt, 3, bits);
    assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    free(longer);
}

static void test_overlay__without_nvrtc_an_older_row_replaces_a_refused_one(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("refused-older");
    char *path = warmed_store(dir, "cache.db");
    add_newer_nvrtc_row(path);
    assert_int_equal(cubin_rows(path), 2);

    /* Read-only: the refused row is passed over (it stays); the older one loads. */
    char env[256];
    snprintf(env, sizeof env, "%s MARLINRT_CACHE_READONLY=1", no_nvrtc);
    child_result r = run_child(env, path, 1, 209);
    assert_int_equal(r.rc, MRT_OK);
    assert_int_equal(r.refusals, 1);
    assert_int_equal(r.compiles, 0);
    assert_int_equal(r.hits, 2);
    free(r.output);
    assert_int_equal(cubin_rows(path), 2);

    /* Writable but without NVRTC: passed over, and kept, since nothing could replace it. */
    r = run_child(no_nvrtc, path, 1, 209);
    assert_int_equal(r.rc, MRT_OK);
    assert_int_equal(r.refusals, 1);
    assert_int_equal(r.compiles, 0);
    free(r.output);
    assert_int_equal(cubin_rows(path), 2);

    /* With NVRTC the refused row is evicted: the exact-key row of this NVRTC is the other one,
     * so refuse that one once and watch it be replaced, the 99.0 row being no candidate. */
    r = run_child("", path, 1, 209);
    assert_int_equal(r.rc, MRT_OK);
    assert_int_equal(r.compiles, 1);
    free(r.output);
    assert_int_equal(cubin_rows(path), 2);

    /* The only row refused, and no NVRTC: an error that says what to install or warm. */
    exec_sql(path, "DELETE FROM cubin WHERE nvrtc_major = 99");
    r = run_child(no_nvrtc, path, 1, 209);
    assert_int_equal(r.rc, MRT_ERR_CUDA);
    assert_non_null(strstr(r.output, "refused the stored cubin of dequant_w4 t256.m0.n0.k0.s0.g8 for sm_80"));
    assert_non_null(strstr(r.output, "CUDA_ERROR_NO_BINARY_FOR_GPU"));
    assert_non_null(strstr(r.output, "NVRTC is not available"));
    assert_non_null(strstr(r.output, "install a driver that supports CUDA"));
    assert_non_null(strstr(r.output, "CUDA 12.8"));
    free(r.output);
    free(path);
    free(dir);
}

int main(int argc, char **argv)
{
    /* Every process of this program, children included, uses the fake driver. */
    setenv("MARLINRT_CUDA_DRIVER_PATH", MRT_FAKE_CUDA_PATH, 1);
    if (!realpath(argv[0], self_path))
        snprintf(self_path, sizeof self_path, "%s", argv[0]);
    if (argc == 5 && strcmp(argv[1], "child-dequant") == 0)
        return child_dequant(argv[2], atoi(argv[3]), atoi(argv[4]));

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overlay__read_only_flag_serves_hits_and_keeps_compiles_in_memory),
        cmocka_unit_test(test_overlay__read_only_environment_variable),
        cmocka_unit_test(test_overlay__overlay_takes_every_write_and_is_read_after_the_base),
        cmocka_unit_test(test_overlay__unwritable_store_is_opened_read_only),
        cmocka_unit_test(test_overlay__refused_cubin_is_evicted_and_recompiled),
        cmocka_unit_test(test_overlay__without_nvrtc_an_older_row_replaces_a_refused_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
