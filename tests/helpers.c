#include "helpers.h"

#include "runtime/timing.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char *mrt_test_tempdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
#ifdef MRT_TEST_BINARY_DIR
    if (!base)
        base = MRT_TEST_BINARY_DIR;
#endif
    if (!base)
        base = "/tmp";
    size_t len = strlen(base) + strlen(tag) + 32;
    char *dir = malloc(len);
    assert_non_null(dir);
    snprintf(dir, len, "%s/mrt-%s-XXXXXX", base, tag);
    assert_non_null(mkdtemp(dir));
    return dir;
}

char *mrt_test_path(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = malloc(len);
    assert_non_null(path);
    snprintf(path, len, "%s/%s", dir, name);
    return path;
}

static uint64_t rng_state;

uint64_t mrt_test_rand(void)
{
    if (rng_state == 0) {
        const char *env = getenv("MRT_TEST_SEED");
        rng_state = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        if (rng_state == 0)
            rng_state = 1;
        fprintf(stderr, "[seed] MRT_TEST_SEED=%llu\n", (unsigned long long)rng_state);
    }
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

float mrt_test_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((mrt_test_rand() >> 40) / (double)(1u << 24));
}

mrt_context *mrt_test_context(const char *store_path, uint32_t flags)
{
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = store_path;
    opts.flags = flags;
    mrt_context *ctx = NULL;
    mrt_status rc = mrt_context_create(&opts, &ctx);
    if (rc != MRT_OK)
        fail_msg("mrt_context_create: %s: %s", mrt_status_str(rc), mrt_thread_errmsg());
    return ctx;
}

static int tests_skipped;

void mrt_test_note_skip(void)
{
    tests_skipped++;
}

int mrt_test_exit_status(int failures)
{
    return failures ? failures : tests_skipped ? MRT_TEST_SKIPPED : 0;
}

void mrt_test_require_gpu(mrt_context *ctx)
{
    mrt_device_info info;
    mrt_status rc = mrt_device_get_info(ctx, &info);
    if (rc != MRT_OK) {
        tests_skipped++;
        fprintf(stderr, "[SKIPPED] no GPU: %s: %s\n", mrt_status_str(rc), mrt_errmsg(ctx));
        mrt_context_destroy(ctx);
        skip();
    }
}

int mrt_test_run(const char *command, char **output)
{
    FILE *pipe = popen(command, "r");
    assert_non_null(pipe);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, pipe)) > 0) {
        len += got;
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    int status = pclose(pipe);
    if (output)
        *output = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *mrt_test_cli_path(void)
{
    const char *env = getenv("MRT_TEST_CLI");
    return env && *env ? env : MRT_CLI_PATH;
}

#define DEVICE_CHECK(ctx, expr)                                                                    \
    do {                                                                                           \
        mrt_status rc_ = (expr);                                                                   \
        if (rc_ != MRT_OK)                                                                         \
            fail_msg("%s: %s: %s", #expr, mrt_status_str(rc_), mrt_errmsg(ctx));                  \
    } while (0)

uint64_t mrt_test_dev_alloc(mrt_context *ctx, size_t bytes)
{
    CUdeviceptr ptr = 0;
    DEVICE_CHECK(ctx, mrt__dev_alloc(ctx, bytes, &ptr));
    return ptr;
}

void mrt_test_dev_free(mrt_context *ctx, uint64_t ptr)
{
    mrt__dev_free(ctx, ptr);
}

void mrt_test_upload(mrt_context *ctx, uint64_t dst, const void *src, size_t bytes)
{
    DEVICE_CHECK(ctx, mrt__dev_upload(ctx, dst, src, bytes));
}

void mrt_test_download(mrt_context *ctx, void *dst, uint64_t src, size_t bytes)
{
    DEVICE_CHECK(ctx, mrt__dev_sync(ctx));
    DEVICE_CHECK(ctx, mrt__dev_download(ctx, dst, src, bytes));
}

void mrt_test_memset(mrt_context *ctx, uint64_t dst, unsigned char value, size_t bytes)
{
    DEVICE_CHECK(ctx, mrt__dev_memset(ctx, dst, value, bytes));
}

int mrt_test_cli(const char *env, const char *db, const char *args, char **output)
{
    size_t size = strlen(env) + strlen(mrt_test_cli_path()) + strlen(db) + strlen(args) + 32;
    char *command = malloc(size);
    assert_non_null(command);
    snprintf(command, size, "%s '%s' --db '%s' %s 2>&1", env, mrt_test_cli_path(), db, args);
    int status = mrt_test_run(command, output);
    free(command);
    return status;
}

int64_t mrt_test_sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    int64_t value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
}
