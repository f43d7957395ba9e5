/*
 * Whole-store maintenance: transactions, SQLite's consistency check, walks over every blob,
 * merging one store into another (export / import), and the deletes that pruning needs.
 *
 * These run rarely (a tool, a deployment step), so their statements are prepared per call
 * instead of kept open on the store like the lookup path's.
 *
 * Merging copies rows column by column with the column list read from the destination's own
 * schema (PRAGMA table_info): both stores passed the same schema version check at open, so
 * their tables match, and a column added by a later schema needs no change here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sqlite3.h>
#include <xxhash.h>

#include "store.h"

#define MAINTAIN_SQL_FAIL(store, code, call)                                                       \
    do {                                                                                           \
        rc = mrt__store_sql_failure((store), err, (code), (call));                                 \
        goto done;                                                                                 \
    } while (0)

/* SQLite keeps integers as int64; hashes are uint64 bits (see cache/store.c). */
static uint64_t int64_as_u64(sqlite3_int64 bits)
{
    uint64_t value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static sqlite3_int64 u64_as_int64(uint64_t value)
{
    sqlite3_int64 bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* Prepare sql on store's connection, naming the statement in the failure. */
static mrt_status prepare(mrt__store *store, const char *sql, sqlite3_stmt **stmt, mrt__err *err)
{
    int code = sqlite3_prepare_v2(mrt__store_db(store), sql, -1, stmt, NULL);
    if (code != SQLITE_OK) {
        *stmt = NULL;
        char call[256];
        snprintf(call, sizeof call, "sqlite3_prepare_v2(%.200s)", sql);
        return mrt__store_sql_failure(store, err, code, call);
    }
    return MRT_OK;
}

static mrt_status require_writable(mrt__store *store, const char *what, mrt__err *err)
{
    if (mrt__store_read_only(store))
        return mrt__fail(err, MRT_ERR_STORE, "cubin store %s is read-only (%s): cannot %s", mrt__store_path(store),
                         mrt__store_read_only_reason(store), what);
    return MRT_OK;
}

mrt_status mrt__store_begin(mrt__store *store, mrt__err *err)
{
    mrt_status rc = require_writable(store, "write", err);
    if (rc != MRT_OK)
        return rc;
    int code = sqlite3_exec(mrt__store_db(store), "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (code != SQLITE_OK)
        return mrt__store_sql_failure(store, err, code, "sqlite3_exec(BEGIN IMMEDIATE)");
    return MRT_OK;
}

mrt_status mrt__store_commit(mrt__store *store, mrt__err *err)
{
    int code = sqlite3_exec(mrt__store_db(store), "COMMIT", NULL, NULL, NULL);
    if (code != SQLITE_OK)
        return mrt__store_sql_failure(store, err, code, "sqlite3_exec(COMMIT)");
    return MRT_OK;
}

void mrt__store_rollback(mrt__store *store, mrt__err *err)
{
    sqlite3 *db = mrt__store_db(store);
    /* SQLite rolls some failures back by itself (a full disk, an I/O error). */
    if (sqlite3_get_autocommit(db))
        return;
    if (sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK && err && err->buf) {
        size_t used = strnlen(err->buf, err->size);
        if (used + 1 < err->size)
            snprintf(err->buf + used, err->size - used, "; sqlite3_exec(ROLLBACK) also failed: %s",
                     sqlite3_errmsg(db));
    }
}

mrt_status mrt__store_quick_check(mrt__store *store, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    MRT_CHECK(prepare(store, "PRAGMA quick_check", &stmt, err));
    int code = sqlite3_step(stmt);
    if (code != SQLITE_ROW)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_step(PRAGMA quick_check)");
    /* One row "ok" when the file is sound, else one row per problem; the first says enough. */
    const unsigned char *verdict = sqlite3_column_text(stmt, 0);
    if (!verdict || strcmp((const char *)verdict, "ok") != 0)
        MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s is damaged: PRAGMA quick_check: %s", mrt__store_path(store),
                 verdict ? (const char *)verdict : "(no text)");

done:
    (void)sqlite3_finalize(stmt); /* repeats the step's result, already handled */
    return rc;
}

/* Columns of the blob walk, in order. */
enum blob_column {
    BLOB_KEY,
    BLOB_KERNEL,
    BLOB_ARCH,
    BLOB_THREADS,
    BLOB_THREAD_M_BLOCKS,
    BLOB_THREAD_N_BLOCKS,
    BLOB_THREAD_K_BLOCKS,
    BLOB_STAGES,
    BLOB_GROUP_BLOCKS,
    BLOB_NVRTC_MAJOR,
    BLOB_NVRTC_MINOR,
    BLOB_SOURCE_HASH,
    BLOB_FORMAT_VERSION,
    BLOB_SIZE,
    BLOB_CREATED_AT,
    BLOB_LAST_USED_AT,
    BLOB_HIT_COUNT,
    BLOB_COMPILE_MS,
    BLOB_BLOB,
    BLOB_XXH64,
    BLOB_ENTRY,
};

mrt_status mrt__store_foreach_blob(mrt__store *store, mrt__blob_row_fn fn, void *user, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    if (!store || !fn)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_foreach_blob: store and fn must not be NULL");
    MRT_CHECK(prepare(store,
                      "SELECT key, kernel, arch, threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, stages,"
                      " group_blocks, nvrtc_major, nvrtc_minor, source_hash, format_version, blob_size, created_at,"
                      " last_used_at, hit_count, compile_ms, blob, blob_xxh64, entry FROM cubin"
                      " ORDER BY kernel, arch, threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, stages,"
                      " group_blocks, nvrtc_major, nvrtc_minor, key",
                      &stmt, err));
    int code;
    while ((code = sqlite3_step(stmt)) == SQLITE_ROW) {
        const void *key = sqlite3_column_blob(stmt, BLOB_KEY);
        const unsigned char *kernel = sqlite3_column_text(stmt, BLOB_KERNEL);
        if (!key || sqlite3_column_bytes(stmt, BLOB_KEY) != 16)
            MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s holds a row whose key is not 16 bytes", mrt__store_path(store));
        if (!kernel)
            MAINTAIN_SQL_FAIL(store, SQLITE_NOMEM, "sqlite3_column_text(kernel)");
        const void *blob = sqlite3_column_blob(stmt, BLOB_BLOB);
        int length = sqlite3_column_bytes(stmt, BLOB_BLOB);
        if (!blob && length > 0)
            MAINTAIN_SQL_FAIL(store, SQLITE_NOMEM, "sqlite3_column_blob(blob)");
        const unsigned char *entry = sqlite3_column_text(stmt, BLOB_ENTRY);

        char key_hex[33];
        mrt__key_hex(key, key_hex);
        mrt__blob_row r;
        memset(&r, 0, sizeof r);
        r.row.key_hex = key_hex;
        r.row.kernel = (const char *)kernel;
        r.row.arch = sqlite3_column_int(stmt, BLOB_ARCH);
        r.row.config.threads = sqlite3_column_int(stmt, BLOB_THREADS);
        r.row.config.thread_m_blocks = sqlite3_column_int(stmt, BLOB_THREAD_M_BLOCKS);
        r.row.config.thread_n_blocks = sqlite3_column_int(stmt, BLOB_THREAD_N_BLOCKS);
        r.row.config.thread_k_blocks = sqlite3_column_int(stmt, BLOB_THREAD_K_BLOCKS);
        r.row.config.stages = sqlite3_column_int(stmt, BLOB_STAGES);
        r.row.config.group_blocks = sqlite3_column_int(stmt, BLOB_GROUP_BLOCKS);
        r.row.nvrtc_major = sqlite3_column_int(stmt, BLOB_NVRTC_MAJOR);
        r.row.nvrtc_minor = sqlite3_column_int(stmt, BLOB_NVRTC_MINOR);
        r.row.source_hash = int64_as_u64(sqlite3_column_int64(stmt, BLOB_SOURCE_HASH));
        r.row.format_version = sqlite3_column_int(stmt, BLOB_FORMAT_VERSION);
        r.row.size = (uint64_t)sqlite3_column_int64(stmt, BLOB_SIZE);
        r.row.created_at = sqlite3_column_int64(stmt, BLOB_CREATED_AT);
        r.row.last_used_at = sqlite3_column_int64(stmt, BLOB_LAST_USED_AT);
        r.row.hit_count = sqlite3_column_int64(stmt, BLOB_HIT_COUNT);
        r.row.compile_ms = sqlite3_column_double(stmt, BLOB_COMPILE_MS);
        r.blob = blob;
        r.size = (size_t)(length > 0 ? length : 0);
        r.entry = entry ? (const char *)entry : "";
        /* The same rule as the lookup path: a cubin is never empty, has an entry symbol, and
         * matches the length and XXH64 stored beside it. */
        r.checksum_ok = length > 0 && (sqlite3_int64)r.row.size == (sqlite3_int64)length && entry && *entry &&
                        XXH64(blob, (size_t)length, 0) == int64_as_u64(sqlite3_column_int64(stmt, BLOB_XXH64));
        if (fn(&r, user) != 0)
            goto done;
    }
    if (code != SQLITE_DONE)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_step(SELECT blob FROM cubin)");

done:
    (void)sqlite3_finalize(stmt);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Merging                                                                    */
/* ------------------------------------------------------------------------- */

#define MERGE_MAX_COLUMNS 64

/* A table's columns as the destination defines them. */
typedef struct table_columns {
    int count;
    char *names[MERGE_MAX_COLUMNS];
    int primary_key[MERGE_MAX_COLUMNS]; /* position in the primary key from 1, 0 if not in it */
} table_columns;

static void table_columns_free(table_columns *columns)
{
    for (int i = 0; i < columns->count; i++)
        sqlite3_free(columns->names[i]);
    columns->count = 0;
}

static int column_index(const table_columns *columns, const char *name)
{
    for (int i = 0; i < columns->count; i++)
        if (strcmp(columns->names[i], name) == 0)
            return i;
    return -1;
}

static mrt_status read_columns(mrt__store *store, const char *table, table_columns *columns, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    memset(columns, 0, sizeof *columns);

    MRT_CHECK(prepare(store, "SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid", &stmt, err));
    int code = sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
    if (code != SQLITE_OK)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_bind_text(pragma_table_info)");
    while ((code = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(stmt, 0);
        if (!name)
            MAINTAIN_SQL_FAIL(store, SQLITE_NOMEM, "sqlite3_column_text(pragma_table_info.name)");
        if (columns->count == MERGE_MAX_COLUMNS)
            MRT_FAIL(err, MRT_ERR_INTERNAL, "table %s has more than %d columns", table, MERGE_MAX_COLUMNS);
        columns->names[columns->count] = sqlite3_mprintf("%s", (const char *)name);
        if (!columns->names[columns->count])
            MAINTAIN_SQL_FAIL(store, SQLITE_NOMEM, "sqlite3_mprintf(column name)");
        columns->primary_key[columns->count] = sqlite3_column_int(stmt, 1);
        columns->count++;
    }
    if (code != SQLITE_DONE)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_step(pragma_table_info)");
    if (columns->count == 0)
        MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s has no table %s", mrt__store_path(store), table);

done:
    (void)sqlite3_finalize(stmt);
    if (rc != MRT_OK)
        table_columns_free(columns);
    return rc;
}

/* Build "<prefix>"c1", "c2", ...<suffix>" or, with placeholders, "?1, ?2, ...". */
static char *column_list_sql(sqlite3 *db, const char *prefix, const table_columns *columns, int placeholders,
                             const char *suffix)
{
    sqlite3_str *text = sqlite3_str_new(db);
    sqlite3_str_appendall(text, prefix);
    for (int i = 0; i < columns->count; i++) {
        if (placeholders)
            sqlite3_str_appendf(text, "%s?%d", i ? ", " : "", i + 1);
        else
            sqlite3_str_appendf(text, "%s\"%w\"", i ? ", " : "", columns->names[i]);
    }
    sqlite3_str_appendall(text, suffix);
    return sqlite3_str_finish(text); /* NULL when out of memory */
}

/* Bind every column of the source row to the same-numbered parameters of stmt. */
static int bind_row(sqlite3_stmt *stmt, sqlite3_stmt *row, int count)
{
    for (int i = 0; i < count; i++) {
        int code = sqlite3_bind_value(stmt, i + 1, sqlite3_column_value(row, i));
        if (code != SQLITE_OK)
            return code;
    }
    return SQLITE_OK;
}

/* Prepare "SELECT <columns> FROM table" on src and "INSERT OR IGNORE INTO table (<columns>)
 * VALUES (...)" on dst. */
static mrt_status prepare_copy(mrt__store *src, mrt__store *dst, const char *table, const table_columns *columns,
                               sqlite3_stmt **select, sqlite3_stmt **insert, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    char *select_sql = NULL, *insert_sql = NULL, *tail = NULL, *head = NULL;
    tail = sqlite3_mprintf(" FROM \"%w\"", table);
    head = sqlite3_mprintf("INSERT OR IGNORE INTO \"%w\" (", table);
    if (!tail || !head)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory building the copy of table %s", table);
    select_sql = column_list_sql(mrt__store_db(src), "SELECT ", columns, 0, tail);
    char *names = column_list_sql(mrt__store_db(dst), head, columns, 0, ") VALUES (");
    if (names) {
        insert_sql = column_list_sql(mrt__store_db(dst), names, columns, 1, ")");
        sqlite3_free(names);
    }
    if (!select_sql || !insert_sql)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory building the copy of table %s", table);
    MRT_CHECK(prepare(src, select_sql, select, err));
    MRT_CHECK(prepare(dst, insert_sql, insert, err));
done:
    sqlite3_free(select_sql);
    sqlite3_free(insert_sql);
    sqlite3_free(tail);
    sqlite3_free(head);
    return rc;
}

static mrt_status merge_cubins(mrt__store *src, mrt__store *dst, mrt_store_merge_report *report, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    table_columns columns = {0};
    sqlite3_stmt *select = NULL, *insert = NULL, *replace = NULL;

    MRT_CHECK(read_columns(dst, "cubin", &columns, err));
    const int key = column_index(&columns, "key"), blob = column_index(&columns, "blob");
    const int blob_size = column_index(&columns, "blob_size"), blob_xxh64 = column_index(&columns, "blob_xxh64");
    const int entry = column_index(&columns, "entry");
    if (key < 0 || blob < 0 || blob_size < 0 || blob_xxh64 < 0 || entry < 0)
        MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s: table cubin lacks key, blob, blob_size, blob_xxh64 or entry",
                 mrt__store_path(dst));
    MRT_CHECK(prepare_copy(src, dst, "cubin", &columns, &select, &insert, err));
    /* A row already there is kept when its blob is the same; a different blob (damaged in
     * place, or another compile of the same key) gives way to the source's checked one. */
    MRT_CHECK(prepare(dst,
                      "UPDATE cubin SET blob = ?2, blob_size = ?3, blob_xxh64 = ?4, entry = ?5 WHERE key = ?1 AND"
                      " (blob IS NOT ?2 OR blob_size IS NOT ?3 OR blob_xxh64 IS NOT ?4 OR entry IS NOT ?5)",
                      &replace, err));

    sqlite3 *db = mrt__store_db(dst);
    int code;
    while ((code = sqlite3_step(select)) == SQLITE_ROW) {
        const void *bytes = sqlite3_column_blob(select, blob);
        int length = sqlite3_column_bytes(select, blob);
        const unsigned char *entry_text = sqlite3_column_text(select, entry);
        int good = bytes && length > 0 && sqlite3_column_int64(select, blob_size) == length && entry_text &&
                   *entry_text &&
                   XXH64(bytes, (size_t)length, 0) == int64_as_u64(sqlite3_column_int64(select, blob_xxh64));
        if (!good) {
            report->cubins_corrupt++;
            continue;
        }
        code = bind_row(insert, select, columns.count);
        if (code != SQLITE_OK)
            MAINTAIN_SQL_FAIL(dst, code, "sqlite3_bind_value(INSERT INTO cubin)");
        code = sqlite3_step(insert);
        (void)sqlite3_reset(insert); /* repeats the step's result, checked next */
        if (code != SQLITE_DONE)
            MAINTAIN_SQL_FAIL(dst, code, "sqlite3_step(INSERT OR IGNORE INTO cubin)");
        if (sqlite3_changes(db) == 1) {
            report->cubins_copied++;
            continue;
        }
        const int parameters[5] = {key, blob, blob_size, blob_xxh64, entry};
        for (int i = 0; i < 5; i++) {
            code = sqlite3_bind_value(replace, i + 1, sqlite3_column_value(select, parameters[i]));
            if (code != SQLITE_OK)
                MAINTAIN_SQL_FAIL(dst, code, "sqlite3_bind_value(UPDATE cubin SET blob)");
        }
        code = sqlite3_step(replace);
        (void)sqlite3_reset(replace);
        if (code != SQLITE_DONE)
            MAINTAIN_SQL_FAIL(dst, code, "sqlite3_step(UPDATE cubin SET blob)");
        if (sqlite3_changes(db) == 1)
            report->cubins_replaced++;
        else
            report->cubins_present++;
    }
    if (code != SQLITE_DONE)
        MAINTAIN_SQL_FAIL(src, code, "sqlite3_step(SELECT FROM cubin)");

done:
    (void)sqlite3_finalize(select);
    (void)sqlite3_finalize(insert);
    (void)sqlite3_finalize(replace);
    table_columns_free(&columns);
    return rc;
}

/* A tuning table: rows are inserted; a row whose primary key is taken replaces the existing
 * one only if it is newer by the table's timestamp column (the one named *_at), so merging a
 * target machine's fresh measurements back over an image's keeps the fresh ones. */
static mrt_status merge_table(mrt__store *src, mrt__store *dst, const char *table, mrt_store_merge_report *report,
                              mrt__err *err)
{
    mrt_status rc = MRT_OK;
    table_columns columns = {0};
    sqlite3_stmt *select = NULL, *insert = NULL, *update = NULL;
    sqlite3_str *text = NULL;

    MRT_CHECK(read_columns(dst, table, &columns, err));
    MRT_CHECK(prepare_copy(src, dst, table, &columns, &select, &insert, err));

    int timestamp = -1, key_columns = 0;
    for (int i = 0; i < columns.count; i++) {
        size_t length = strlen(columns.names[i]);
        if (timestamp < 0 && length > 3 && strcmp(columns.names[i] + length - 3, "_at") == 0)
            timestamp = i;
        if (columns.primary_key[i])
            key_columns++;
    }
    if (timestamp >= 0 && key_columns > 0 && key_columns < columns.count) {
        /* UPDATE t SET c = ?i (non-key columns) WHERE k = ?j (key columns) AND ts < ?ts */
        text = sqlite3_str_new(mrt__store_db(dst));
        sqlite3_str_appendf(text, "UPDATE \"%w\" SET ", table);
        int first = 1;
        for (int i = 0; i < columns.count; i++) {
            if (columns.primary_key[i])
                continue;
            sqlite3_str_appendf(text, "%s\"%w\" = ?%d", first ? "" : ", ", columns.names[i], i + 1);
            first = 0;
        }
        sqlite3_str_appendall(text, " WHERE");
        for (int i = 0; i < columns.count; i++)
            if (columns.primary_key[i])
                sqlite3_str_appendf(text, " \"%w\" = ?%d AND", columns.names[i], i + 1);
        sqlite3_str_appendf(text, " \"%w\" < ?%d", columns.names[timestamp], timestamp + 1);
        char *sql = sqlite3_str_finish(text);
        text = NULL;
        if (!sql)
            MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory building the update of table %s", table);
        rc = prepare(dst, sql, &update, err);
        sqlite3_free(sql);
        if (rc != MRT_OK)
            goto done;
    }

    sqlite3 *db = mrt__store_db(dst);
    int code;
    while ((code = sqlite3_step(select)) == SQLITE_ROW) {
        code = bind_row(insert, select, columns.count);
        if (code != SQLITE_OK)
            MAINTAIN_SQL_FAIL(dst, code, "sqlite3_bind_value(INSERT INTO tuning table)");
        code = sqlite3_step(insert);
        (void)sqlite3_reset(insert);
        if (code != SQLITE_DONE)
            MAINTAIN_SQL_FAIL(dst, code, "sqlite3_step(INSERT OR IGNORE INTO tuning table)");
        if (sqlite3_changes(db) == 1) {
            report->tuning_written++;
            continue;
        }
        if (!update) {
            report->tuning_kept++;
            continue;
        }
        code = bind_row(update, select, columns.count);
        if (code != SQLITE_OK)
            MAINTAIN_SQL_FAIL(dst, code, "sqlite3_bind_value(UPDATE tuning table)");
        code = sqlite3_step(update);
        (void)sqlite3_reset(update);
        if (code != SQLITE_DONE)
            MAINTAIN_SQL_FAIL(dst, code, "sqlite3_step(UPDATE tuning table)");
        if (sqlite3_changes(db) == 1)
            report->tuning_written++;
        else
            report->tuning_kept++;
    }
    if (code != SQLITE_DONE)
        MAINTAIN_SQL_FAIL(src, code, "sqlite3_step(SELECT FROM tuning table)");

done:
    if (text)
        sqlite3_free(sqlite3_str_finish(text));
    (void)sqlite3_finalize(select);
    (void)sqlite3_finalize(insert);
    (void)sqlite3_finalize(update);
    table_columns_free(&columns);
    return rc;
}

/* The tuning tables of the destination's schema, in a fixed order. */
#define MERGE_MAX_TABLES 16

mrt_status mrt__store_merge(mrt__store *src, mrt__store *dst, mrt_store_merge_report *report, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    char *tables[MERGE_MAX_TABLES] = {NULL};
    int table_count = 0, in_transaction = 0;

    if (!src || !dst || !report)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_merge: src, dst and report must not be NULL");
    MRT_CHECK(prepare(dst, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'tuning\\_%' ESCAPE '\\'"
                           " ORDER BY name",
                      &stmt, err));
    int code;
    while ((code = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(stmt, 0);
        if (!name)
            MAINTAIN_SQL_FAIL(dst, SQLITE_NOMEM, "sqlite3_column_text(sqlite_master.name)");
        if (table_count == MERGE_MAX_TABLES)
            MRT_FAIL(err, MRT_ERR_INTERNAL, "more than %d tuning tables", MERGE_MAX_TABLES);
        if (!(tables[table_count++] = sqlite3_mprintf("%s", (const char *)name)))
            MAINTAIN_SQL_FAIL(dst, SQLITE_NOMEM, "sqlite3_mprintf(table name)");
    }
    if (code != SQLITE_DONE)
        MAINTAIN_SQL_FAIL(dst, code, "sqlite3_step(SELECT FROM sqlite_master)");
    (void)sqlite3_finalize(stmt);
    stmt = NULL;

    /* One transaction: a merge that fails half-way leaves the destination as it was. */
    MRT_CHECK(mrt__store_begin(dst, err));
    in_transaction = 1;
    MRT_CHECK(merge_cubins(src, dst, report, err));
    for (int i = 0; i < table_count; i++)
        MRT_CHECK(merge_table(src, dst, tables[i], report, err));
    MRT_CHECK(mrt__store_commit(dst, err));
    in_transaction = 0;

done:
    (void)sqlite3_finalize(stmt);
    if (in_transaction)
        mrt__store_rollback(dst, err);
    for (int i = 0; i < table_count; i++)
        sqlite3_free(tables[i]);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Tuning rows                                                                */
/* ------------------------------------------------------------------------- */

/* The tuning tables whose rows carry the kernel source hash they were measured with. */
static int is_tuning_table_with_source(const char *table)
{
    return strcmp(table, "tuning_timing") == 0 || strcmp(table, "tuning_winner") == 0;
}

mrt_status mrt__store_foreach_tuning_group(mrt__store *store, mrt__tuning_group_fn fn, void *user, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    MRT_CHECK(prepare(store,
                      "SELECT 'tuning_timing', kernel, source_hash, COUNT(*) FROM tuning_timing"
                      " GROUP BY kernel, source_hash"
                      " UNION ALL SELECT 'tuning_winner', kernel, source_hash, COUNT(*) FROM tuning_winner"
                      " GROUP BY kernel, source_hash",
                      &stmt, err));
    int code;
    while ((code = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *table = sqlite3_column_text(stmt, 0);
        const unsigned char *kernel = sqlite3_column_text(stmt, 1);
        if (!table || !kernel)
            MAINTAIN_SQL_FAIL(store, SQLITE_NOMEM, "sqlite3_column_text(tuning group)");
        if (fn((const char *)table, (const char *)kernel, int64_as_u64(sqlite3_column_int64(stmt, 2)),
               (uint64_t)sqlite3_column_int64(stmt, 3), user) != 0)
            goto done;
    }
    if (code != SQLITE_DONE)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_step(SELECT kernel, source_hash FROM tuning tables)");

done:
    (void)sqlite3_finalize(stmt);
    return rc;
}

mrt_status mrt__store_delete_tuning_group(mrt__store *store, const char *table, const char *kernel,
                                          uint64_t source_hash, uint64_t *deleted, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    char *sql = NULL;

    if (!table || !is_tuning_table_with_source(table) || !kernel)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_delete_tuning_group: bad table or kernel");
    MRT_CHECK(require_writable(store, "delete tuning rows", err));
    sql = sqlite3_mprintf("DELETE FROM \"%w\" WHERE kernel = ?1 AND source_hash = ?2", table);
    if (!sql)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory");
    MRT_CHECK(prepare(store, sql, &stmt, err));
    int code = sqlite3_bind_text(stmt, 1, kernel, -1, SQLITE_STATIC);
    if (code == SQLITE_OK)
        code = sqlite3_bind_int64(stmt, 2, u64_as_int64(source_hash));
    if (code != SQLITE_OK)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_bind(DELETE FROM tuning table)");
    code = sqlite3_step(stmt);
    if (code != SQLITE_DONE)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_step(DELETE FROM tuning table)");
    if (deleted)
        *deleted = (uint64_t)sqlite3_changes(mrt__store_db(store));

done:
    (void)sqlite3_finalize(stmt);
    sqlite3_free(sql);
    return rc;
}

mrt_status mrt__store_foreach_winner(mrt__store *store, mrt_tuning_winner_row_fn fn, void *user, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    MRT_CHECK(prepare(store,
                      "SELECT w.fingerprint, COALESCE(d.name, ''), w.kernel, w.dtype, w.group_size, w.n, w.k,"
                      " w.m_bucket, w.threads, w.thread_m_blocks, w.thread_n_blocks, w.thread_k_blocks, w.stages,"
                      " w.group_blocks, w.source_hash, w.median_us, w.decided_at"
                      " FROM tuning_winner AS w LEFT JOIN tuning_device AS d ON d.fingerprint = w.fingerprint"
                      " ORDER BY w.fingerprint, w.kernel, w.dtype, w.group_size, w.n, w.k, w.m_bucket",
                      &stmt, err));
    int code;
    while ((code = sqlite3_step(stmt)) == SQLITE_ROW) {
        mrt_tuning_winner_row row;
        memset(&row, 0, sizeof row);
        row.fingerprint = (const char *)sqlite3_column_text(stmt, 0);
        row.device_name = (const char *)sqlite3_column_text(stmt, 1);
        row.kernel = (const char *)sqlite3_column_text(stmt, 2);
        row.dtype = (const char *)sqlite3_column_text(stmt, 3);
        if (!row.fingerprint || !row.device_name || !row.kernel || !row.dtype)
            MAINTAIN_SQL_FAIL(store, SQLITE_NOMEM, "sqlite3_column_text(tuning_winner)");
        row.group_size = sqlite3_column_int(stmt, 4);
        row.n = sqlite3_column_int64(stmt, 5);
        row.k = sqlite3_column_int64(stmt, 6);
        row.m_bucket = sqlite3_column_int64(stmt, 7);
        row.config.threads = sqlite3_column_int(stmt, 8);
        row.config.thread_m_blocks = sqlite3_column_int(stmt, 9);
        row.config.thread_n_blocks = sqlite3_column_int(stmt, 10);
        row.config.thread_k_blocks = sqlite3_column_int(stmt, 11);
        row.config.stages = sqlite3_column_int(stmt, 12);
        row.config.group_blocks = sqlite3_column_int(stmt, 13);
        row.source_hash = int64_as_u64(sqlite3_column_int64(stmt, 14));
        row.median_us = sqlite3_column_double(stmt, 15);
        row.decided_at = sqlite3_column_int64(stmt, 16);
        if (fn(&row, user) != 0)
            goto done;
    }
    if (code != SQLITE_DONE)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_step(SELECT FROM tuning_winner)");

done:
    (void)sqlite3_finalize(stmt);
    return rc;
}

mrt_status mrt__store_tuning_counts(mrt__store *store, uint64_t *devices, uint64_t *timings, uint64_t *winners,
                                    mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    MRT_CHECK(prepare(store,
                      "SELECT (SELECT COUNT(*) FROM tuning_device), (SELECT COUNT(*) FROM tuning_timing),"
                      " (SELECT COUNT(*) FROM tuning_winner)",
                      &stmt, err));
    int code = sqlite3_step(stmt);
    if (code != SQLITE_ROW)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_step(SELECT COUNT(*) FROM tuning tables)");
    *devices = (uint64_t)sqlite3_column_int64(stmt, 0);
    *timings = (uint64_t)sqlite3_column_int64(stmt, 1);
    *winners = (uint64_t)sqlite3_column_int64(stmt, 2);

done:
    (void)sqlite3_finalize(stmt);
    return rc;
}

mrt_status mrt__store_vacuum(mrt__store *store, mrt__err *err)
{
    mrt_status rc = require_writable(store, "vacuum", err);
    if (rc != MRT_OK)
        return rc;
    int code = sqlite3_exec(mrt__store_db(store), "VACUUM", NULL, NULL, NULL);
    if (code != SQLITE_OK)
        return mrt__store_sql_failure(store, err, code, "sqlite3_exec(VACUUM)");
    return MRT_OK;
}

mrt_status mrt__store_set_journal_delete(mrt__store *store, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    MRT_CHECK(require_writable(store, "change its journal mode", err));
    MRT_CHECK(prepare(store, "PRAGMA journal_mode = DELETE", &stmt, err));
    int code = sqlite3_step(stmt);
    if (code != SQLITE_ROW)
        MAINTAIN_SQL_FAIL(store, code, "sqlite3_step(PRAGMA journal_mode = DELETE)");
    /* SQLite answers with the mode in force; it stays WAL while another connection has the
     * file open, and then readers of the shipped file would need the -shm file. */
    const unsigned char *mode = sqlite3_column_text(stmt, 0);
    if (!mode || strcasecmp((const char *)mode, "delete") != 0)
        MRT_FAIL(err, MRT_ERR_STORE,
                 "cubin store %s: PRAGMA journal_mode = DELETE left the journal mode at '%s' (is another process "
                 "using the file?)",
                 mrt__store_path(store), mode ? (const char *)mode : "?");

done:
    (void)sqlite3_finalize(stmt);
    return rc;
}
