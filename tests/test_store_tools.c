/*
 * The store tools (runtime/store_tools.c, cache/maintain.c) and `marlinrt cache`: stale rows,
 * verify, export / import, prune; tuning rows carried along. The driver is tests/fake_cuda.c
 * (an sm_80 device), so verify's test loads run on any machine.
 */
#include "helpers.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cache/store.h"

static const mrt_config dequant_configs[] = {
    {.threads = 256, .group_blocks = 8},
    {.threads = 256, .group_blocks = 4},
    {.threads = 256, .group_blocks = 2},
    {.threads = 256, .group_blocks = -1},
};

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *message = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK)
        fail_msg("%s: %s", sql, message);
    sqlite3_close(db);
}

/* Warm `count` dequant configurations for sm_80 (the fake GPU's arch) and sm_90. */
static void warm(const char *path, size_t count)
{
    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    for (size_t i = 0; i < count; i++)
        for (int arch = 80; arch <= 90; arch += 10) {
            void *cubin = NULL;
            size_t size = 0;
            mrt_status rc = mrt_get_cubin(ctx, arch, MRT_KERNEL_DEQUANT_W4, &dequant_configs[i], &cubin, &size, NULL);
            if (rc != MRT_OK)
                fail_msg("mrt_get_cubin: %s: %s", mrt_status_str(rc), mrt_errmsg(ctx));
            mrt_free(cubin);
        }
    mrt_context_destroy(ctx);
}

/* Insert one row into a tuning table, whatever columns the schema gives it: the named ones get
 * the values below, the rest a type-appropriate 1. */
static void insert_tuning(const char *path, const char *table, const char *fingerprint, const char *kernel,
                          uint64_t source_hash, int64_t n, int64_t at)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *columns = NULL, *insert = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT name, type FROM pragma_table_info(?1) ORDER BY cid", -1, &columns,
                                        NULL),
                     SQLITE_OK);
    sqlite3_bind_text(columns, 1, table, -1, SQLITE_STATIC);
    char names[8192] = "", values[2048] = "";
    char column_names[64][64], column_types[64][16];
    int count = 0;
    while (sqlite3_step(columns) == SQLITE_ROW && count < 64) {
        snprintf(column_names[count], 64, "%s", (const char *)sqlite3_column_text(columns, 0));
        snprintf(column_types[count], 16, "%s", (const char *)sqlite3_column_text(columns, 1));
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", count ? ", " : "", column_names[count]);
        snprintf(values + strlen(values), sizeof values - strlen(values), "%s?%d", count ? ", " : "", count + 1);
        count++;
    }
    sqlite3_finalize(columns);
    assert_true(count > 3);
    char sql[10400];
    snprintf(sql, sizeof sql, "INSERT INTO %s (%s) VALUES (%s)", table, names, values);
    if (sqlite3_prepare_v2(db, sql, -1, &insert, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int64_t hash_bits;
    memcpy(&hash_bits, &source_hash, sizeof hash_bits);
    for (int i = 0; i < count; i++) {
        const char *name = column_names[i];
        size_t length = strlen(name);
        int p = i + 1;
        if (strcmp(name, "fingerprint") == 0)
            sqlite3_bind_text(insert, p, fingerprint, -1, SQLITE_STATIC);
        else if (strcmp(name, "kernel") == 0)
            sqlite3_bind_text(insert, p, kernel, -1, SQLITE_STATIC);
        else if (strcmp(name, "source_hash") == 0)
            sqlite3_bind_int64(insert, p, hash_bits);
        else if (strcmp(name, "n") == 0)
            sqlite3_bind_int64(insert, p, n);
        else if (length > 3 && strcmp(name + length - 3, "_at") == 0)
            sqlite3_bind_int64(insert, p, at);
        else if (strcmp(name, "threads") == 0)
            sqlite3_bind_int64(insert, p, 256);
        else if (strcmp(name, "thread_n_blocks") == 0 || strcmp(name, "thread_k_blocks") == 0 ||
                 strcmp(name, "group_blocks") == 0)
            sqlite3_bind_int64(insert, p, 8);
        else if (strcmp(name, "stages") == 0)
            sqlite3_bind_int64(insert, p, 4);
        else if (strcasecmp(column_types[i], "TEXT") == 0)
            sqlite3_bind_text(insert, p, "f16", -1, SQLITE_STATIC);
        else if (strcasecmp(column_types[i], "REAL") == 0)
            sqlite3_bind_double(insert, p, 1.0);
        else
            sqlite3_bind_int64(insert, p, 1);
    }
    if (sqlite3_step(insert) != SQLITE_DONE)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_finalize(insert);
    sqlite3_close(db);
}

static uint64_t dequant_source_hash(void)
{
    const mrt__kernel *kernel = mrt__kernel_find(MRT_KERNEL_DEQUANT_W4);
    assert_non_null(kernel);
    return mrt__kernel_source(kernel)->hash;
}

/* Put a row whose inputs differ from what this library would make: stale for `why`. */
static void put_stale_row(const char *path, int why, int arch)
{
    mrt__store *store = NULL;
    char errbuf[1024] = "";
    mrt__err err = {errbuf, sizeof errbuf};
    if (mrt__store_open(path, &err, &store) != MRT_OK)
        fail_msg("%s", errbuf);
    int major = 0, minor = 0;
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    assert_int_equal(mrt_nvrtc_version(ctx, &major, &minor), MRT_OK);
    mrt_context_destroy(ctx);
    mrt__key_inputs in = {
        .source_hash = why == MRT_STALE_SOURCE ? 12345 : dequant_source_hash(),
        .kernel = why == MRT_STALE_KERNEL ? "retired_kernel" : MRT_KERNEL_DEQUANT_W4,
        .arch = arch,
        .config = {.threads = 128, .group_blocks = 8},
        .nvrtc_major = why == MRT_STALE_NVRTC ? major - 1 : major,
        .nvrtc_minor = minor,
        .options = "--gpu-architecture=sm_75 -std=c++17",
        .format_version = why == MRT_STALE_FORMAT ? 999 : 1,
    };
    uint8_t key[16], variant[16];
    mrt__cubin_key(&in, key, variant);
    unsigned char blob[256];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (unsigned char)mrt_test_rand();
    assert_int_equal(mrt__store_put(store, key, variant, &in, "_Z5stale", 1.0, blob, sizeof blob, &err), MRT_OK);
    mrt__store_close(store);
}

typedef struct stale_seen {
    int rows;
    int by_reason[16];
} stale_seen;

static int note_stale(const mrt_cubin_row *row, void *user)
{
    stale_seen *seen = user;
    seen->rows++;
    seen->by_reason[row->stale & 15]++;
    return 0;
}

static void test_store_tools__stale_rows_are_marked_listed_and_pruned(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("stale");
    char *path = mrt_test_path(dir, "cache.db");
    warm(path, 1);
    const int reasons[] = {MRT_STALE_NVRTC, MRT_STALE_SOURCE, MRT_STALE_FORMAT, MRT_STALE_KERNEL};
    for (size_t i = 0; i < 4; i++)
        put_stale_row(path, reasons[i], 75);
    /* Tuning rows: one current, one measured on another kernel source. */
    insert_tuning(path, "tuning_winner", "fp-a", MRT_KERNEL_MARLIN_W4A16,
                  mrt__kernel_source(mrt__kernel_find(MRT_KERNEL_MARLIN_W4A16))->hash, 4096, 100);
    insert_tuning(path, "tuning_winner", "fp-a", MRT_KERNEL_MARLIN_W4A16, 777, 8192, 100);
    insert_tuning(path, "tuning_timing", "fp-a", MRT_KERNEL_MARLIN_W4A16, 777, 8192, 100);

    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    stale_seen seen;
    memset(&seen, 0, sizeof seen);
    assert_int_equal(mrt_store_foreach_cubin(ctx, note_stale, &seen), MRT_OK);
    assert_int_equal(seen.rows, 6);
    assert_int_equal(seen.by_reason[0], 2);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(seen.by_reason[reasons[i]], 1);
    mrt_store_summary summary;
    assert_int_equal(mrt_store_summary_get(ctx, &summary), MRT_OK);
    assert_int_equal(summary.stale_cubin_rows, 4);
    assert_int_equal(summary.tuning_winner_rows, 2);
    assert_int_equal(summary.tuning_timing_rows, 1);
    mrt_context_destroy(ctx);

    char *out = NULL;
    assert_int_equal(mrt_test_cli("", path, "cache ls", &out), 0);
    assert_non_null(strstr(out, "stale:nvrtc"));
    assert_non_null(strstr(out, "stale:source"));
    assert_non_null(strstr(out, "stale:format"));
    assert_non_null(strstr(out, "stale:kernel"));
    assert_non_null(strstr(out, "6 cubins in"));
    assert_non_null(strstr(out, "(4 stale)"));
    free(out);
    assert_int_equal(mrt_test_cli("", path, "cache ls --stale --json", &out), 0);
    assert_null(strstr(out, "\"stale\": []"));
    assert_non_null(strstr(out, "\"stale\": [\"source\"]"));
    free(out);
    assert_int_equal(mrt_test_cli("", path, "cache ls --tuning", &out), 0);
    assert_non_null(strstr(out, "2 tuning winners (1 stale)"));
    free(out);

    assert_int_equal(mrt_test_cli("", path, "cache prune --stale --dry-run", &out), 0);
    assert_non_null(strstr(out, "4 cubins"));
    assert_non_null(strstr(out, "2 tuning rows would go"));
    free(out);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM cubin"), 6);
    assert_int_equal(mrt_test_cli("", path, "cache prune --stale --vacuum", &out), 0);
    assert_non_null(strstr(out, "4 cubins"));
    free(out);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM cubin"), 2);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM tuning_winner"), 1);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM tuning_timing"), 0);
    free(path);
    free(dir);
}

static void test_store_tools__prune_by_age_then_size_least_recently_used_first(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("prune");
    char *path = mrt_test_path(dir, "cache.db");
    warm(path, 4); /* 8 rows */
    int64_t now = (int64_t)time(NULL);
    char sql[512];
    /* sm_90 rows unused for 40 days; sm_80 rows used at distinct recent times. */
    snprintf(sql, sizeof sql,
             "UPDATE cubin SET last_used_at = %lld WHERE arch = 90;"
             "UPDATE cubin SET last_used_at = %lld + group_blocks WHERE arch = 80;",
             (long long)(now - 40 * 86400), (long long)(now - 100));
    exec_sql(path, sql);
    int64_t total = mrt_test_sql_int(path, "SELECT SUM(blob_size) FROM cubin");
    int64_t largest80 = mrt_test_sql_int(path, "SELECT MAX(blob_size) FROM cubin WHERE arch = 80");

    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    mrt_prune_options opts;
    mrt_prune_options_init(&opts);
    mrt_prune_report report;
    /* Nothing asked, nothing removed. */
    assert_int_equal(mrt_store_prune(ctx, &opts, &report), MRT_OK);
    assert_int_equal(report.cubins_removed, 0);
    assert_int_equal(report.bytes_kept, total);

    opts.unused_seconds = 30 * 86400;
    opts.flags = MRT_PRUNE_DRY_RUN;
    assert_int_equal(mrt_store_prune(ctx, &opts, &report), MRT_OK);
    assert_int_equal(report.cubins_removed, 4);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM cubin"), 8);
    opts.flags = 0;
    assert_int_equal(mrt_store_prune(ctx, &opts, &report), MRT_OK);
    assert_int_equal(report.cubins_removed, 4);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM cubin WHERE arch = 90"), 0);

    /* A cap of one cubin keeps the most recently used: group_blocks 8 was used last. */
    mrt_prune_options_init(&opts);
    opts.max_bytes = largest80;
    assert_int_equal(mrt_store_prune(ctx, &opts, &report), MRT_OK);
    assert_int_equal(report.cubins_kept, 1);
    assert_int_equal(report.cubins_removed, 3);
    assert_true(report.bytes_kept <= (uint64_t)largest80);
    assert_int_equal(mrt_test_sql_int(path, "SELECT group_blocks FROM cubin"), 8);
    opts.max_bytes = -2;
    assert_int_equal(mrt_store_prune(ctx, &opts, &report), MRT_ERR_INVALID_ARGUMENT);
    mrt_context_destroy(ctx);

    char *out = NULL;
    assert_int_equal(mrt_test_cli("", path, "cache prune", &out), 2);
    assert_non_null(strstr(out, "needs --max-bytes"));
    free(out);
    assert_int_equal(mrt_test_cli("", path, "cache prune --max-bytes 12Q", &out), 2);
    free(out);
    assert_int_equal(mrt_test_cli("", path, "cache prune --max-bytes 0 --json", &out), 0);
    assert_non_null(strstr(out, "\"cubins_removed\": 1"));
    free(out);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM cubin"), 0);
    free(path);
    free(dir);
}

static void test_store_tools__export_and_import_merge_cubins_and_tuning_rows(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("merge");
    char *source = mrt_test_path(dir, "build.db");
    char *image = mrt_test_path(dir, "image/cache.db");
    warm(source, 2); /* 4 cubins */
    insert_tuning(source, "tuning_device", "fp-a", "", 0, 0, 0);
    insert_tuning(source, "tuning_winner", "fp-a", MRT_KERNEL_MARLIN_W4A16, 1, 4096, 100);
    insert_tuning(source, "tuning_timing", "fp-a", MRT_KERNEL_MARLIN_W4A16, 1, 4096, 100);

    mrt_context *ctx = mrt_test_context(source, MRT_CTX_OFFLINE);
    mrt_store_merge_report report;
    assert_int_equal(mrt_store_export(ctx, image, &report), MRT_OK);
    assert_int_equal(report.cubins_copied, 4);
    assert_int_equal(report.tuning_written, 3);
    /* A new export is one self-contained file: rollback journal, nothing beside it. */
    char *wal = mrt_test_path(dir, "image/cache.db-wal");
    assert_int_not_equal(access(wal, F_OK), 0);
    free(wal);
    assert_int_equal(mrt_store_export(ctx, image, &report), MRT_OK);
    assert_int_equal(report.cubins_copied, 0);
    assert_int_equal(report.cubins_present, 4);
    assert_int_equal(report.tuning_kept, 3);
    /* Into itself: refused. */
    assert_int_equal(mrt_store_export(ctx, source, &report), MRT_ERR_INVALID_ARGUMENT);
    mrt_context_destroy(ctx);
    assert_int_equal(mrt_test_sql_int(image, "SELECT COUNT(*) FROM cubin"), 4);

    /* A damaged blob in the image is replaced by the good one on the next export; a damaged
     * blob in the source is never copied. */
    exec_sql(image, "UPDATE cubin SET blob = zeroblob(length(blob)) WHERE group_blocks = 8 AND arch = 80");
    exec_sql(source, "UPDATE cubin SET blob = zeroblob(length(blob)) WHERE group_blocks = 4 AND arch = 90");
    char *fresh = mrt_test_path(dir, "fresh.db");
    ctx = mrt_test_context(source, MRT_CTX_OFFLINE);
    assert_int_equal(mrt_store_export(ctx, image, &report), MRT_OK);
    assert_int_equal(report.cubins_replaced, 1);
    assert_int_equal(report.cubins_corrupt, 1);
    assert_int_equal(report.cubins_present, 2);
    assert_int_equal(mrt_store_export(ctx, fresh, &report), MRT_OK);
    assert_int_equal(report.cubins_copied, 3);
    mrt_context_destroy(ctx);

    /* Import: a newer tuning row wins, an older one is kept out. */
    char *target = mrt_test_path(dir, "target.db");
    warm(target, 1);
    insert_tuning(target, "tuning_winner", "fp-a", MRT_KERNEL_MARLIN_W4A16, 1, 4096, 50);  /* older */
    insert_tuning(target, "tuning_timing", "fp-a", MRT_KERNEL_MARLIN_W4A16, 1, 4096, 500); /* newer */
    ctx = mrt_test_context(target, MRT_CTX_OFFLINE);
    assert_int_equal(mrt_store_import(ctx, image, &report), MRT_OK);
    assert_int_equal(report.cubins_copied, 2);
    assert_int_equal(report.cubins_present, 2);
    assert_int_equal(report.tuning_written, 2); /* the device, the newer winner */
    assert_int_equal(report.tuning_kept, 1);    /* the target's own newer timing */
    mrt_context_destroy(ctx);
    assert_int_equal(mrt_test_sql_int(target, "SELECT decided_at FROM tuning_winner"), 100);
    assert_int_equal(mrt_test_sql_int(target, "SELECT measured_at FROM tuning_timing"), 500);

    /* The CLI: export text, import of something that is not a store. */
    char *out = NULL;
    char args[4200];
    char *cli_copy = mrt_test_path(dir, "cli.db");
    snprintf(args, sizeof args, "cache export '%s'", cli_copy);
    assert_int_equal(mrt_test_cli("", target, args, &out), 0);
    assert_non_null(strstr(out, "export: 4 cubins copied"));
    free(out);
    snprintf(args, sizeof args, "cache import '%s'", "/nonexistent/store.db");
    assert_int_equal(mrt_test_cli("", target, args, &out), 1);
    assert_non_null(strstr(out, "/nonexistent/store.db"));
    free(out);
    free(cli_copy);
    free(target);
    free(fresh);
    free(image);
    free(source);
    free(dir);
}

typedef struct verify_seen {
    int loaded, checked, bad, failed;
} verify_seen;

static int note_verify(const mrt_cubin_row *row, mrt_verify_outcome outcome, const char *detail, void *user)
{
    verify_seen *seen = user;
    (void)detail;
    switch (outcome) {
    case MRT_VERIFY_LOADED:
        assert_int_equal(row->arch, 80);
        seen->loaded++;
        break;
    case MRT_VERIFY_CHECKED:
        seen->checked++;
        break;
    case MRT_VERIFY_BAD_CHECKSUM:
        seen->bad++;
        break;
    case MRT_VERIFY_LOAD_FAILED:
        assert_non_null(strstr(detail, "CUDA_ERROR_NO_BINARY_FOR_GPU"));
        seen->failed++;
        break;
    }
    return 0;
}

static void test_store_tools__verify_checks_checksums_and_test_loads(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("verify");
    char *path = mrt_test_path(dir, "cache.db");
    warm(path, 3); /* 3 for sm_80, 3 for sm_90 */

    /* Offline: checksums only. */
    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    mrt_store_verify_report report;
    verify_seen seen = {0};
    assert_int_equal(mrt_store_verify(ctx, note_verify, &seen, &report), MRT_OK);
    assert_int_equal(report.cubin_rows, 6);
    assert_int_equal(report.not_loaded, 6);
    assert_int_equal(report.gpu_arch, 0);
    assert_int_equal(seen.checked, 6);
    mrt_context_destroy(ctx);

    /* With the (fake, sm_80) GPU: the sm_80 cubins are loaded and their entries found. */
    ctx = mrt_test_context(path, 0);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(mrt_store_verify(ctx, note_verify, &seen, &report), MRT_OK);
    assert_int_equal(report.gpu_arch, 80);
    assert_int_equal(report.loaded, 3);
    assert_int_equal(report.not_loaded, 3);
    assert_int_equal(seen.loaded, 3);

    /* A refused load and a damaged blob are both reported; verify itself succeeds. */
    void *fake = dlopen(MRT_FAKE_CUDA_PATH, RTLD_NOW);
    assert_non_null(fake);
    void (*refuse)(int, int) = (void (*)(int, int))dlsym(fake, "mrt_fake_cuda_refuse");
    assert_non_null(refuse);
    refuse(1, 209);
    exec_sql(path, "UPDATE cubin SET blob = zeroblob(length(blob)) WHERE arch = 90 AND group_blocks = 4");
    memset(&seen, 0, sizeof seen);
    assert_int_equal(mrt_store_verify(ctx, note_verify, &seen, &report), MRT_OK);
    assert_int_equal(report.load_failed, 1);
    assert_int_equal(report.loaded, 2);
    assert_int_equal(report.bad_checksum, 1);
    assert_int_equal(seen.failed, 1);
    assert_int_equal(seen.bad, 1);
    mrt_context_destroy(ctx);
    dlclose(fake);

    /* A tuning winner whose configuration its kernel rejects is counted. */
    insert_tuning(path, "tuning_winner", "fp-a", "no_such_kernel", 1, 4096, 100);
    char *out = NULL;
    assert_int_equal(mrt_test_cli("", path, "cache verify --offline", &out), 1);
    assert_non_null(strstr(out, "bad-checksum"));
    assert_non_null(strstr(out, "1 bad checksums"));
    assert_non_null(strstr(out, "1 tuning winners, 1 bad"));
    assert_non_null(strstr(out, "PROBLEMS FOUND"));
    free(out);
    assert_int_equal(mrt_test_cli("", path, "cache verify --offline --json", &out), 1);
    assert_non_null(strstr(out, "\"ok\": false"));
    free(out);

    /* Without the damaged rows, verify passes again. */
    exec_sql(path, "DELETE FROM cubin WHERE arch = 90 AND group_blocks = 4; DELETE FROM tuning_winner;");
    assert_int_equal(mrt_test_cli("", path, "cache verify --offline", &out), 0);
    assert_non_null(strstr(out, "ok"));
    free(out);
    free(path);
    free(dir);
}

static void test_store_tools__read_only_store_is_neither_pruned_nor_imported_into(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("ro-tools");
    char *path = mrt_test_path(dir, "cache.db");
    char *other = mrt_test_path(dir, "other.db");
    char *overlay = mrt_test_path(dir, "overlay.db");
    warm(path, 1);
    warm(other, 2);

    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE | MRT_CTX_STORE_READONLY);
    mrt_prune_options opts;
    mrt_prune_options_init(&opts);
    opts.max_bytes = 0;
    mrt_prune_report prune;
    assert_int_equal(mrt_store_prune(ctx, &opts, &prune), MRT_ERR_STORE);
    assert_non_null(strstr(mrt_errmsg(ctx), "read-only"));
    mrt_store_merge_report report;
    assert_int_equal(mrt_store_import(ctx, other, &report), MRT_ERR_STORE);
    assert_non_null(strstr(mrt_errmsg(ctx), "MARLINRT_CACHE_OVERLAY"));
    /* Export only reads the store: fine. */
    char *copy = mrt_test_path(dir, "copy.db");
    assert_int_equal(mrt_store_export(ctx, copy, &report), MRT_OK);
    assert_int_equal(report.cubins_copied, 2);
    mrt_context_destroy(ctx);

    /* With an overlay, import and prune work on the overlay and leave the base alone. */
    mrt_context_options o;
    mrt_context_options_init(&o);
    o.store_path = path;
    o.overlay_path = overlay;
    o.flags = MRT_CTX_OFFLINE | MRT_CTX_STORE_READONLY;
    assert_int_equal(mrt_context_create(&o, &ctx), MRT_OK);
    assert_int_equal(mrt_store_import(ctx, other, &report), MRT_OK);
    assert_int_equal(report.cubins_copied, 4);
    assert_int_equal(mrt_test_sql_int(overlay, "SELECT COUNT(*) FROM cubin"), 4);
    assert_int_equal(mrt_store_prune(ctx, &opts, &prune), MRT_OK);
    assert_int_equal(prune.cubins_removed, 4);
    mrt_context_destroy(ctx);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM cubin"), 2);
    assert_int_equal(mrt_test_sql_int(overlay, "SELECT COUNT(*) FROM cubin"), 0);
    free(copy);
    free(overlay);
    free(other);
    free(path);
    free(dir);
}

int main(void)
{
    setenv("MARLINRT_CUDA_DRIVER_PATH", MRT_FAKE_CUDA_PATH, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_tools__stale_rows_are_marked_listed_and_pruned),
        cmocka_unit_test(test_store_tools__prune_by_age_then_size_least_recently_used_first),
        cmocka_unit_test(test_store_tools__export_and_import_merge_cubins_and_tuning_rows),
        cmocka_unit_test(test_store_tools__verify_checks_checksums_and_test_loads),
        cmocka_unit_test(test_store_tools__read_only_store_is_neither_pruned_nor_imported_into),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
