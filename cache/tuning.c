/*
 * Tuning records in the store: one timing row per configuration measured, one winner per
 * shape and M bucket, the facts of each device fingerprint.
 *
 * Rows carry the kernel source hash they were measured with, and every read asks for the
 * current one: timings of other code are neither reused nor trusted. The primary keys leave the
 * source hash out on purpose, so a row of the current source replaces the stale row of the same
 * configuration instead of piling up next to it.
 *
 * A timing row is written on its own as soon as it is measured (a tune that is stopped keeps
 * what it measured); the winner and its device row are written together in one transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "tuning.h"

static sqlite3_int64 u64_as_int64(uint64_t value)
{
    sqlite3_int64 bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static uint64_t int64_as_u64(sqlite3_int64 bits)
{
    uint64_t value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* The message for a failed SQLite call on the tuning tables, naming the call and the file. */
static mrt_status sql_failure(sqlite3 *db, mrt__err *err, int code, const char *call)
{
    const char *file = sqlite3_db_filename(db, "main");
    mrt_status status = (code & 0xff) == SQLITE_NOMEM ? MRT_ERR_OUT_OF_MEMORY : MRT_ERR_STORE;
    return mrt__fail(err, status, "tuning records in store %s: %s failed: %s (SQLite code %d)",
                     file && *file ? file : ":memory:", call, sqlite3_errmsg(db), code);
}

#define TUNING_SQL_FAIL(code, call)                                                                \
    do {                                                                                           \
        rc = sql_failure(db, err, (code), (call));                                                 \
        goto done;                                                                                 \
    } while (0)

/* A store this process may not write: opened read-only (a shipped image), or on a file SQLite
 * could only open for reading. */
static int store_read_only(sqlite3 *db)
{
    return sqlite3_db_readonly(db, "main") == 1;
}

/* Binds parameters 1, 2, 3 ... in order and keeps the first failure. */
typedef struct binder {
    sqlite3_stmt *stmt;
    int index;
    int code;
} binder;

static void bind_code(binder *b, int code)
{
    if (code != SQLITE_OK && b->code == SQLITE_OK)
        b->code = code;
}

static void bind_int64(binder *b, sqlite3_int64 value)
{
    bind_code(b, sqlite3_bind_int64(b->stmt, ++b->index, value));
}

static void bind_double(binder *b, double value)
{
    bind_code(b, sqlite3_bind_double(b->stmt, ++b->index, value));
}

static void bind_text(binder *b, const char *text)
{
    bind_code(b, sqlite3_bind_text(b->stmt, ++b->index, text, -1, SQLITE_STATIC));
}

/* The shape columns every statement starts with: fingerprint, kernel, dtype, group_size, n, k. */
static void bind_key(binder *b, const mrt__tuning_key *key)
{
    bind_text(b, key->fingerprint);
    bind_text(b, key->kernel);
    bind_text(b, key->dtype);
    bind_int64(b, key->group_size);
    bind_int64(b, key->n);
    bind_int64(b, key->k);
}

static void bind_config(binder *b, const mrt_config *cfg)
{
    bind_int64(b, cfg->threads);
    bind_int64(b, cfg->thread_m_blocks);
    bind_int64(b, cfg->thread_n_blocks);
    bind_int64(b, cfg->thread_k_blocks);
    bind_int64(b, cfg->stages);
    bind_int64(b, cfg->group_blocks);
}

/* Six configuration columns starting at column `first`. */
static void read_config(sqlite3_stmt *stmt, int first, mrt_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->threads = sqlite3_column_int(stmt, first);
    cfg->thread_m_blocks = sqlite3_column_int(stmt, first + 1);
    cfg->thread_n_blocks = sqlite3_column_int(stmt, first + 2);
    cfg->thread_k_blocks = sqlite3_column_int(stmt, first + 3);
    cfg->stages = sqlite3_column_int(stmt, first + 4);
    cfg->group_blocks = sqlite3_column_int(stmt, first + 5);
}

static mrt_status check_key(const mrt__store *store, const mrt__tuning_key *key, const char *function, mrt__err *err)
{
    if (!store || !key || !key->fingerprint || !key->kernel || !key->dtype)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "%s: store, key and its strings must not be NULL", function);
    return MRT_OK;
}

/* Prepare, bind with `bind`, step once; SQLITE_DONE expected. Read-only outcomes are reported
 * through *read_only instead of failing. */
static mrt_status exec_write(sqlite3 *db, const char *sql, void (*bind)(binder *, const void *), const void *user,
                             int *read_only, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    int code = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (code != SQLITE_OK)
        TUNING_SQL_FAIL(code, sql);
    binder b = {stmt, 0, SQLITE_OK};
    bind(&b, user);
    if (b.code != SQLITE_OK)
        TUNING_SQL_FAIL(b.code, "sqlite3_bind");
    code = sqlite3_step(stmt);
    if ((code & 0xff) == SQLITE_READONLY)
        *read_only = 1;
    else if (code != SQLITE_DONE)
        TUNING_SQL_FAIL(code, sql);
done:
    (void)sqlite3_finalize(stmt); /* repeats the step's outcome, already handled */
    return rc;
}

static int64_t now_or(int64_t stamp)
{
    return stamp ? stamp : (int64_t)time(NULL);
}

typedef struct timing_write {
    const mrt__tuning_key *key;
    const mrt__tuning_timing *timing;
} timing_write;

static void bind_timing(binder *b, const void *user)
{
    const timing_write *w = user;
    bind_key(b, w->key);
    bind_int64(b, w->timing->m);
    bind_config(b, &w->timing->config);
    bind_int64(b, u64_as_int64(w->timing->source_hash));
    bind_double(b, w->timing->median_us);
    bind_double(b, w->timing->spread_us);
    bind_int64(b, w->timing->samples);
    bind_int64(b, now_or(w->timing->measured_at));
}

mrt_status mrt__tuning_put_timing(mrt__store *store, const mrt__tuning_key *key, const mrt__tuning_timing *timing,
                                  int *written, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    int read_only = 0;
    if (written)
        *written = 0;
    MRT_CHECK(check_key(store, key, "mrt__tuning_put_timing", err));
    if (!timing)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__tuning_put_timing: timing is NULL");
    sqlite3 *db = mrt__store_db(store);
    if (store_read_only(db))
        goto done;
    timing_write w = {key, timing};
    MRT_CHECK(exec_write(db,
                         "INSERT OR REPLACE INTO tuning_timing (fingerprint, kernel, dtype, group_size, n, k, m,"
                         " threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, stages, group_blocks,"
                         " source_hash, median_us, spread_us, samples, measured_at)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                         bind_timing, &w, &read_only, err));
    if (written)
        *written = !read_only;
done:
    return rc;
}

mrt_status mrt__tuning_get_timings(mrt__store *store, const mrt__tuning_key *key, int64_t m, uint64_t source_hash,
                                   mrt__tuning_timing **rows, size_t *count, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    mrt__tuning_timing *found = NULL;
    size_t used = 0, capacity = 0;
    if (rows)
        *rows = NULL;
    if (count)
        *count = 0;
    MRT_CHECK(check_key(store, key, "mrt__tuning_get_timings", err));
    if (!rows || !count)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__tuning_get_timings: rows and count must not be NULL");
    sqlite3 *db = mrt__store_db(store);
    static const char sql[] = "SELECT threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, stages, group_blocks,"
                              " median_us, spread_us, samples, measured_at FROM tuning_timing"
                              " WHERE fingerprint = ?1 AND kernel = ?2 AND dtype = ?3 AND group_size = ?4 AND n = ?5"
                              " AND k = ?6 AND m = ?7 AND source_hash = ?8"
                              " ORDER BY threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, stages,"
                              " group_blocks";
    int code = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (code != SQLITE_OK)
        TUNING_SQL_FAIL(code, "sqlite3_prepare_v2(SELECT FROM tuning_timing)");
    binder b = {stmt, 0, SQLITE_OK};
    bind_key(&b, key);
    bind_int64(&b, m);
    bind_int64(&b, u64_as_int64(source_hash));
    if (b.code != SQLITE_OK)
        TUNING_SQL_FAIL(b.code, "sqlite3_bind(SELECT FROM tuning_timing)");
    while ((code = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (used == capacity) {
            size_t grown = capacity ? 2 * capacity : 32;
            mrt__tuning_timing *bigger = realloc(found, grown * sizeof *bigger);
            if (!bigger)
                MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory reading tuning timings");
            found = bigger;
            capacity = grown;
        }
        mrt__tuning_timing *t = &found[used++];
        memset(t, 0, sizeof *t);
        t->m = m;
        read_config(stmt, 0, &t->config);
        t->source_hash = source_hash;
        t->median_us = sqlite3_column_double(stmt, 6);
        t->spread_us = sqlite3_column_double(stmt, 7);
        t->samples = sqlite3_column_int(stmt, 8);
        t->measured_at = sqlite3_column_int64(stmt, 9);
    }
    if (code != SQLITE_DONE)
        TUNING_SQL_FAIL(code, "sqlite3_step(SELECT FROM tuning_timing)");
    *rows = found;
    *count = used;
    found = NULL;
done:
    (void)sqlite3_finalize(stmt);
    free(found);
    return rc;
}

typedef struct device_write {
    const char *fingerprint;
    const mrt_device_info *device;
} device_write;

static void bind_device(binder *b, const void *user)
{
    const device_write *w = user;
    bind_text(b, w->fingerprint);
    bind_text(b, w->device->name);
    bind_int64(b, w->device->cc_major);
    bind_int64(b, w->device->cc_minor);
    bind_int64(b, w->device->sm_count);
    bind_int64(b, w->device->l2_bytes);
    bind_int64(b, w->device->memory_clock_khz);
}

typedef struct winner_write {
    const mrt__tuning_key *key;
    const mrt__tuning_winner *winner;
} winner_write;

static void bind_winner(binder *b, const void *user)
{
    const winner_write *w = user;
    bind_key(b, w->key);
    bind_int64(b, w->winner->m_bucket);
    bind_config(b, &w->winner->config);
    bind_int64(b, u64_as_int64(w->winner->source_hash));
    bind_double(b, w->winner->median_us);
    bind_double(b, w->winner->spread_us);
    bind_int64(b, w->winner->m);
    bind_int64(b, w->winner->candidates);
    bind_int64(b, u64_as_int64(w->winner->candidate_set));
    bind_int64(b, w->winner->tried);
    bind_int64(b, now_or(w->winner->decided_at));
}

static void bind_nothing(binder *b, const void *user)
{
    (void)b;
    (void)user;
}

mrt_status mrt__tuning_put_winner(mrt__store *store, const mrt__tuning_key *key, const mrt_device_info *device,
                                  const mrt__tuning_winner *winner, int *written, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    int read_only = 0, in_transaction = 0;
    sqlite3 *db = NULL;
    if (written)
        *written = 0;
    MRT_CHECK(check_key(store, key, "mrt__tuning_put_winner", err));
    if (!device || !winner)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__tuning_put_winner: device and winner must not be NULL");
    db = mrt__store_db(store);
    if (store_read_only(db))
        goto done;

    MRT_CHECK(exec_write(db, "BEGIN IMMEDIATE", bind_nothing, NULL, &read_only, err));
    if (read_only)
        goto done;
    in_transaction = 1;
    device_write dw = {key->fingerprint, device};
    MRT_CHECK(exec_write(db,
                         "INSERT OR REPLACE INTO tuning_device (fingerprint, name, cc_major, cc_minor, sm_count,"
                         " l2_bytes, memory_clock_khz) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                         bind_device, &dw, &read_only, err));
    winner_write ww = {key, winner};
    if (!read_only)
        MRT_CHECK(exec_write(db,
                             "INSERT OR REPLACE INTO tuning_winner (fingerprint, kernel, dtype, group_size, n, k,"
                             " m_bucket, threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, stages,"
                             " group_blocks, source_hash, median_us, spread_us, m, candidates, candidate_set, tried,"
                             " decided_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
                             " ?16, ?17, ?18, ?19, ?20, ?21)",
                             bind_winner, &ww, &read_only, err));
    if (read_only)
        goto done;
    MRT_CHECK(exec_write(db, "COMMIT", bind_nothing, NULL, &read_only, err));
    in_transaction = 0;
    if (written)
        *written = !read_only;
done:
    /* SQLite rolls some failures back by itself; then there is nothing left to undo. */
    if (in_transaction && !sqlite3_get_autocommit(db))
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

mrt_status mrt__tuning_get_winner(mrt__store *store, const mrt__tuning_key *key, int64_t m_bucket,
                                  uint64_t source_hash, mrt__tuning_winner *winner, int *found, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    if (found)
        *found = 0;
    MRT_CHECK(check_key(store, key, "mrt__tuning_get_winner", err));
    if (!winner || !found)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__tuning_get_winner: winner and found must not be NULL");
    sqlite3 *db = mrt__store_db(store);
    static const char sql[] = "SELECT threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, stages, group_blocks,"
                              " median_us, spread_us, m, candidates, candidate_set, tried, decided_at"
                              " FROM tuning_winner WHERE fingerprint = ?1 AND kernel = ?2 AND dtype = ?3"
                              " AND group_size = ?4 AND n = ?5 AND k = ?6 AND m_bucket = ?7 AND source_hash = ?8";
    int code = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (code != SQLITE_OK)
        TUNING_SQL_FAIL(code, "sqlite3_prepare_v2(SELECT FROM tuning_winner)");
    binder b = {stmt, 0, SQLITE_OK};
    bind_key(&b, key);
    bind_int64(&b, m_bucket);
    bind_int64(&b, u64_as_int64(source_hash));
    if (b.code != SQLITE_OK)
        TUNING_SQL_FAIL(b.code, "sqlite3_bind(SELECT FROM tuning_winner)");
    code = sqlite3_step(stmt);
    if (code == SQLITE_DONE)
        goto done;
    if (code != SQLITE_ROW)
        TUNING_SQL_FAIL(code, "sqlite3_step(SELECT FROM tuning_winner)");
    memset(winner, 0, sizeof *winner);
    winner->m_bucket = m_bucket;
    read_config(stmt, 0, &winner->config);
    winner->source_hash = source_hash;
    winner->median_us = sqlite3_column_double(stmt, 6);
    winner->spread_us = sqlite3_column_double(stmt, 7);
    winner->m = sqlite3_column_int64(stmt, 8);
    winner->candidates = sqlite3_column_int64(stmt, 9);
    winner->candidate_set = int64_as_u64(sqlite3_column_int64(stmt, 10));
    winner->tried = sqlite3_column_int64(stmt, 11);
    winner->decided_at = sqlite3_column_int64(stmt, 12);
    *found = 1;
done:
    (void)sqlite3_finalize(stmt);
    return rc;
}

mrt_status mrt__tuning_count_timings(mrt__store *store, const mrt__tuning_key *key, int64_t *count, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    MRT_CHECK(check_key(store, key, "mrt__tuning_count_timings", err));
    if (!count)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__tuning_count_timings: count is NULL");
    *count = 0;
    sqlite3 *db = mrt__store_db(store);
    int code = sqlite3_prepare_v2(db,
                                  "SELECT COUNT(*) FROM tuning_timing WHERE fingerprint = ?1 AND kernel = ?2"
                                  " AND dtype = ?3 AND group_size = ?4 AND n = ?5 AND k = ?6",
                                  -1, &stmt, NULL);
    if (code != SQLITE_OK)
        TUNING_SQL_FAIL(code, "sqlite3_prepare_v2(SELECT COUNT(*) FROM tuning_timing)");
    binder b = {stmt, 0, SQLITE_OK};
    bind_key(&b, key);
    if (b.code != SQLITE_OK)
        TUNING_SQL_FAIL(b.code, "sqlite3_bind(SELECT COUNT(*) FROM tuning_timing)");
    code = sqlite3_step(stmt);
    if (code != SQLITE_ROW)
        TUNING_SQL_FAIL(code, "sqlite3_step(SELECT COUNT(*) FROM tuning_timing)");
    *count = sqlite3_column_int64(stmt, 0);
done:
    (void)sqlite3_finalize(stmt);
    return rc;
}
