/*
 * The SQLite cubin store.
 *
 * One row per cubin, keyed by the XXH3-128 of everything that affects its bytes (cache/key.c).
 * A row also carries the variant key (the same without the NVRTC version), so that a process
 * with no NVRTC at all, on a machine that only has the driver, still finds a cubin that any
 * NVRTC made for the same source, options and configuration.
 *
 * Several processes may share one store file: WAL mode lets readers run beside a writer, the
 * busy timeout makes a writer wait for another instead of failing at once, and every write
 * that must be seen whole is one transaction. A store handle itself is used by one thread at
 * a time (its prepared statements are shared state), which is why the connection is opened
 * without SQLite's own mutex.
 *
 * Every blob is stored with its length and XXH64, and checked on every read: a damaged row
 * is reported as MRT_LOOKUP_CORRUPT, never handed to the driver.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <xxhash.h>

#include "store.h"

/* A writer waits this long for another process's transaction before giving up: compiling a
 * cubin takes seconds, so a store held for a few seconds is normal, not an error. */
#define STORE_BUSY_TIMEOUT_MS 10000

#define STORE_STR2_(x) #x
#define STORE_STR_(x) STORE_STR2_(x)

/* The tables of schema version 1. A later version adds a migration from 1 instead of editing
 * this text, which is why it is pinned to version 1. */
_Static_assert(MRT_STORE_SCHEMA_VERSION == 1, "the schema below is version 1: add a migration");
static const char schema_v1_sql[] =
    "CREATE TABLE cubin ("
    " key BLOB NOT NULL PRIMARY KEY CHECK (length(key) = 16),"
    " variant BLOB NOT NULL CHECK (length(variant) = 16),"
    " kernel TEXT NOT NULL,"
    " entry TEXT NOT NULL," /* lowered entry symbol: a process without NVRTC cannot lower it */
    " arch INTEGER NOT NULL,"
    " threads INTEGER NOT NULL,"
    " thread_m_blocks INTEGER NOT NULL,"
    " thread_n_blocks INTEGER NOT NULL,"
    " thread_k_blocks INTEGER NOT NULL,"
    " stages INTEGER NOT NULL,"
    " group_blocks INTEGER NOT NULL,"
    " nvrtc_major INTEGER NOT NULL,"
    " nvrtc_minor INTEGER NOT NULL,"
    " source_hash INTEGER NOT NULL," /* the uint64 bits, read back as int64 */
    " options TEXT NOT NULL,"
    " format_version INTEGER NOT NULL,"
    " blob BLOB NOT NULL,"
    " blob_size INTEGER NOT NULL,"
    " blob_xxh64 INTEGER NOT NULL," /* XXH64 seed 0 of blob, the uint64 bits as int64 */
    " compile_ms REAL NOT NULL,"
    " created_at INTEGER NOT NULL," /* Unix seconds */
    " last_used_at INTEGER NOT NULL,"
    " hit_count INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX cubin_variant ON cubin (variant);"
    /* Autotuner records (cache/tuning.c). A device fingerprint is an XXH3-64 (hex) over the
     * GPU name, compute capability, SM count, L2 size and memory clock; tuning_device keeps
     * the facts behind each one. One timing row per configuration measured, so adding
     * candidates later keeps earlier timings; one winner per shape and M bucket. Both keep
     * the kernel source hash they were measured with: a changed kernel means re-tuning. */
    "CREATE TABLE tuning_device ("
    " fingerprint TEXT NOT NULL PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " cc_major INTEGER NOT NULL,"
    " cc_minor INTEGER NOT NULL,"
    " sm_count INTEGER NOT NULL,"
    " l2_bytes INTEGER NOT NULL,"
    " memory_clock_khz INTEGER NOT NULL"
    ");"
    "CREATE TABLE tuning_timing ("
    " fingerprint TEXT NOT NULL,"
    " kernel TEXT NOT NULL,"
    " dtype TEXT NOT NULL,"
    " group_size INTEGER NOT NULL,"
    " n INTEGER NOT NULL,"
    " k INTEGER NOT NULL,"
    " m INTEGER NOT NULL,"
    " threads INTEGER NOT NULL,"
    " thread_m_blocks INTEGER NOT NULL,"
    " thread_n_blocks INTEGER NOT NULL,"
    " thread_k_blocks INTEGER NOT NULL,"
    " stages INTEGER NOT NULL,"
    " group_blocks INTEGER NOT NULL,"
    " source_hash INTEGER NOT NULL,"
    " median_us REAL NOT NULL,"
    " spread_us REAL NOT NULL," /* interquartile range of the samples */
    " samples INTEGER NOT NULL,"
    " measured_at INTEGER NOT NULL,"
    " PRIMARY KEY (fingerprint, kernel, dtype, group_size, n, k, m, threads, thread_m_blocks,"
    "  thread_n_blocks, thread_k_blocks, stages, group_blocks)"
    ");"
    "CREATE TABLE tuning_winner ("
    " fingerprint TEXT NOT NULL,"
    " kernel TEXT NOT NULL,"
    " dtype TEXT NOT NULL,"
    " group_size INTEGER NOT NULL,"
    " n INTEGER NOT NULL,"
    " k INTEGER NOT NULL,"
    " m_bucket INTEGER NOT NULL,"
    " threads INTEGER NOT NULL,"
    " thread_m_blocks INTEGER NOT NULL,"
    " thread_n_blocks INTEGER NOT NULL,"
    " thread_k_blocks INTEGER NOT NULL,"
    " stages INTEGER NOT NULL,"
    " group_blocks INTEGER NOT NULL,"
    " source_hash INTEGER NOT NULL,"
    " median_us REAL NOT NULL,"
    " spread_us REAL NOT NULL,"
    " m INTEGER NOT NULL," /* the M it was measured at, inside the bucket */
    /* How complete the tune was: candidates in the list it worked through (and an XXH3-64 of
     * that list, the uint64 bits as int64), and how many of them it settled (timed, or found
     * unusable). A winner with tried < candidates, or another list, is finished by the next
     * first-use tune, which reuses the timings already stored. */
    " candidates INTEGER NOT NULL,"
    " candidate_set INTEGER NOT NULL,"
    " tried INTEGER NOT NULL,"
    " decided_at INTEGER NOT NULL,"
    " PRIMARY KEY (fingerprint, kernel, dtype, group_size, n, k, m_bucket)"
    ");"
    "PRAGMA user_version = " STORE_STR_(MRT_STORE_SCHEMA_VERSION) ";";

/* The statements prepared once at open. */
enum store_statement {
    STMT_BEGIN,
    STMT_COMMIT,
    STMT_GET,
    STMT_GET_VARIANT,
    STMT_TOUCH,
    STMT_PUT,
    STMT_FOREACH,
    STMT_SUMMARY,
    STMT_DELETE,
    STMT_COUNT
};

static const char *const statement_sql[STMT_COUNT] = {
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    /* Both lookups give the same columns (see copy_checked_row and mrt__store_lookup). */
    [STMT_GET] = "SELECT blob, blob_size, blob_xxh64, entry, key, nvrtc_major, nvrtc_minor FROM cubin"
                 " WHERE key = ?1",
    /* Newest NVRTC first: a newer compiler's cubin is at least as good, and the driver that
     * loads it is what decides; among equal versions the latest compile wins. */
    [STMT_GET_VARIANT] = "SELECT blob, blob_size, blob_xxh64, entry, key, nvrtc_major, nvrtc_minor FROM cubin"
                         " WHERE variant = ?1 ORDER BY nvrtc_major DESC, nvrtc_minor DESC, created_at DESC",
    [STMT_TOUCH] = "UPDATE cubin SET last_used_at = ?2, hit_count = hit_count + 1 WHERE key = ?1",
    [STMT_PUT] = "INSERT OR REPLACE INTO cubin (key, variant, kernel, entry, arch,"
                 " threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, stages, group_blocks,"
                 " nvrtc_major, nvrtc_minor, source_hash, options, format_version,"
                 " blob, blob_size, blob_xxh64, compile_ms, created_at, last_used_at, hit_count)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
                 " ?17, ?18, ?19, ?20, ?21, ?21, 0)",
    [STMT_FOREACH] = "SELECT key, kernel, arch,"
                     " threads, thread_m_blocks, thread_n_blocks, thread_k_blocks, stages, group_blocks,"
                     " nvrtc_major, nvrtc_minor, source_hash, format_version,"
                     " blob_size, created_at, last_used_at, hit_count, compile_ms FROM cubin"
                     " ORDER BY kernel, arch, threads, thread_m_blocks, thread_n_blocks, thread_k_blocks,"
                     " stages, group_blocks, nvrtc_major, nvrtc_minor, key",
    [STMT_SUMMARY] = "SELECT COUNT(*), COALESCE(SUM(blob_size), 0) FROM cubin",
    [STMT_DELETE] = "DELETE FROM cubin WHERE key = ?1",
};

/* Result columns of STMT_FOREACH, in its order. */
enum foreach_column {
    ROW_KEY,
    ROW_KERNEL,
    ROW_ARCH,
    ROW_THREADS,
    ROW_THREAD_M_BLOCKS,
    ROW_THREAD_N_BLOCKS,
    ROW_THREAD_K_BLOCKS,
    ROW_STAGES,
    ROW_GROUP_BLOCKS,
    ROW_NVRTC_MAJOR,
    ROW_NVRTC_MINOR,
    ROW_SOURCE_HASH,
    ROW_FORMAT_VERSION,
    ROW_BLOB_SIZE,
    ROW_CREATED_AT,
    ROW_LAST_USED_AT,
    ROW_HIT_COUNT,
    ROW_COMPILE_MS,
};

struct mrt__store {
    sqlite3 *db;
    char *path;
    int schema_version;
    /* Opened with SQLITE_OPEN_READONLY: nothing is ever written, not even a hit. */
    int read_only;
    char read_only_reason[512];
    /* Hits whose last_used_at and hit_count could not be written because the store is
     * read-only: the lookup still succeeds, and the skipped bookkeeping is counted here. */
    uint64_t touches_skipped;
    sqlite3_stmt *statements[STMT_COUNT];
};

sqlite3 *mrt__store_db(mrt__store *store)
{
    return store->db;
}

int mrt__store_read_only(const mrt__store *store)
{
    return store->read_only;
}

const char *mrt__store_read_only_reason(const mrt__store *store)
{
    return store->read_only_reason;
}

const char *mrt__store_path(const mrt__store *store)
{
    return store->path;
}

uint64_t mrt__store_touches_skipped(const mrt__store *store)
{
    return store->touches_skipped;
}

/* SQLite stores integers as int64; a uint64 hash keeps its bits. memcpy avoids relying on
 * the implementation-defined conversion of values above INT64_MAX. */
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

static int64_t now_unix_seconds(void)
{
    return (int64_t)time(NULL);
}

static char *copy_text(const char *text)
{
    size_t size = strlen(text) + 1;
    char *copy = malloc(size);
    if (copy)
        memcpy(copy, text, size);
    return copy;
}

/* Add to a message already written, so a failed ROLLBACK does not hide the failure that
 * made it necessary. */
__attribute__((format(printf, 2, 3))) static void append_message(mrt__err *err, const char *fmt, ...)
{
    if (!err || !err->buf || !err->size)
        return;
    size_t used = strnlen(err->buf, err->size);
    if (used + 1 >= err->size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->buf + used, err->size - used, fmt, ap);
    va_end(ap);
}

/* The message for a failed SQLite call on the store, naming the call and the file. A file
 * that is not a database, or a damaged one, gets its own wording: those are what a user can
 * act on (delete the file, or point MARLINRT_CACHE elsewhere). */
static mrt_status sql_failure(const mrt__store *store, mrt__err *err, int code, const char *call)
{
    const char *detail = store->db ? sqlite3_errmsg(store->db) : sqlite3_errstr(code);
    switch (code & 0xff) {
    case SQLITE_NOTADB:
        return mrt__fail(err, MRT_ERR_STORE, "cubin store %s is not a SQLite database (%s: %s)", store->path, call,
                         detail);
    case SQLITE_CORRUPT:
        return mrt__fail(err, MRT_ERR_STORE, "cubin store %s is damaged (%s: %s)", store->path, call, detail);
    case SQLITE_NOMEM:
        return mrt__fail(err, MRT_ERR_OUT_OF_MEMORY, "cubin store %s: %s: %s", store->path, call, detail);
    default:
        return mrt__fail(err, MRT_ERR_STORE, "cubin store %s: %s failed: %s (SQLite code %d)", store->path, call,
                         detail, code);
    }
}

mrt_status mrt__store_sql_failure(const mrt__store *store, mrt__err *err, int code, const char *call)
{
    return sql_failure(store, err, code, call);
}

#define STORE_SQL_FAIL(code, call)                                                                 \
    do {                                                                                           \
        rc = sql_failure(store, err, (code), (call));                                              \
        goto done;                                                                                 \
    } while (0)

/* Make a prepared statement ready for its next use. sqlite3_reset only repeats the error of
 * the last step, which its caller has already handled, so its result carries nothing new. */
static void statement_finish(sqlite3_stmt *stmt)
{
    (void)sqlite3_reset(stmt);
    (void)sqlite3_clear_bindings(stmt);
}

/* Undo the transaction left open by a failure. SQLite rolls some failures back by itself (a
 * full disk, an I/O error), and then there is nothing left to undo. */
static void rollback_after_failure(mrt__store *store, mrt__err *err)
{
    if (sqlite3_get_autocommit(store->db))
        return;
    int code = sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
    if (code != SQLITE_OK)
        append_message(err, "; sqlite3_exec(ROLLBACK) also failed: %s", sqlite3_errmsg(store->db));
}

/* Binds parameters 1, 2, 3 ... in order and keeps the first failure, so a statement with
 * twenty parameters reads as twenty lines and one check. */
typedef struct binder {
    sqlite3_stmt *stmt;
    int index;
    int code;
    int failed_index;
} binder;

static void bind_result(binder *b, int code)
{
    if (code != SQLITE_OK && b->code == SQLITE_OK) {
        b->code = code;
        b->failed_index = b->index;
    }
}

static void bind_int64(binder *b, sqlite3_int64 value)
{
    b->index++;
    bind_result(b, sqlite3_bind_int64(b->stmt, b->index, value));
}

static void bind_double(binder *b, double value)
{
    b->index++;
    bind_result(b, sqlite3_bind_double(b->stmt, b->index, value));
}

static void bind_text(binder *b, const char *text)
{
    b->index++;
    bind_result(b, sqlite3_bind_text(b->stmt, b->index, text, -1, SQLITE_STATIC));
}

static void bind_blob(binder *b, const void *bytes, size_t size)
{
    b->index++;
    bind_result(b, sqlite3_bind_blob64(b->stmt, b->index, bytes, (sqlite3_uint64)size, SQLITE_STATIC));
}

/* mkdir -p of the folder that holds path. */
static mrt_status make_parent_folders(const char *path, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    char *folder = copy_text(path);
    if (!folder)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "cubin store %s: out of memory", path);

    char *last_slash = strrchr(folder, '/');
    /* A store in the current folder, or directly under /, has nothing to create. */
    if (!last_slash || last_slash == folder)
        goto done;
    *last_slash = '\0';

    for (char *p = folder + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char separator = *p;
        *p = '\0';
        struct stat info;
        /* Existing folders are skipped without mkdir, which could fail with EACCES on a
         * read-only parent even though there is nothing to create. */
        if (stat(folder, &info) != 0 || !S_ISDIR(info.st_mode)) {
            if (mkdir(folder, 0777) != 0 && errno != EEXIST) {
                int error = errno;
                MRT_FAIL(err, MRT_ERR_STORE, "cannot create folder %s for cubin store %s: mkdir: %s", folder, path,
                         strerror(error));
            }
        }
        *p = separator;
        if (separator == '\0')
            break;
    }

    struct stat info;
    if (stat(folder, &info) != 0) {
        int error = errno;
        MRT_FAIL(err, MRT_ERR_STORE, "cannot create folder %s for cubin store %s: stat: %s", folder, path,
                 strerror(error));
    }
    if (!S_ISDIR(info.st_mode))
        MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s: %s exists and is not a folder", path, folder);

done:
    free(folder);
    return rc;
}

/* Check that the database is a marlinrt store of the schema this library knows, creating the
 * schema in a new, empty database. All of it runs in one write transaction, so two processes
 * opening a new store at once create the schema exactly once. A read-only store is only
 * read: there an empty database is an error, since nothing could ever be stored in it. */
static mrt_status check_schema(mrt__store *store, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    int in_transaction = 0;
    int code;

    if (!store->read_only) {
        code = sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (code != SQLITE_OK)
            STORE_SQL_FAIL(code, "sqlite3_exec(BEGIN IMMEDIATE)");
        in_transaction = 1;
    }

    code = sqlite3_prepare_v2(store->db, "PRAGMA user_version", -1, &stmt, NULL);
    if (code != SQLITE_OK)
        STORE_SQL_FAIL(code, "sqlite3_prepare_v2(PRAGMA user_version)");
    code = sqlite3_step(stmt);
    if (code != SQLITE_ROW)
        STORE_SQL_FAIL(code, "sqlite3_step(PRAGMA user_version)");
    sqlite3_int64 version = sqlite3_column_int64(stmt, 0);
    (void)sqlite3_finalize(stmt); /* its result repeats the step's, which succeeded */
    stmt = NULL;

    if (version != 0 && version != MRT_STORE_SCHEMA_VERSION)
        MRT_FAIL(err, MRT_ERR_STORE_VERSION,
                 "cubin store %s has schema version %lld; this library (marlinrt %s) knows version %d only",
                 store->path, (long long)version, mrt_version_string(), MRT_STORE_SCHEMA_VERSION);
    if (version == 0 && store->read_only)
        MRT_FAIL(err, MRT_ERR_STORE_VERSION,
                 "%s is not a marlinrt store (schema version 0: empty, or another program's database) and it is "
                 "opened read-only (%s)",
                 store->path, store->read_only_reason);

    /* Version 0 is a new database only if it is empty: any table, index or view in it belongs
     * to some other program, whose file must not be touched. A version-1 database must have
     * our table, or the same number was set by someone else. */
    const char *probe_sql = version == 0 ? "SELECT name FROM sqlite_master LIMIT 1"
                                         : "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'cubin'";
    code = sqlite3_prepare_v2(store->db, probe_sql, -1, &stmt, NULL);
    if (code != SQLITE_OK)
        STORE_SQL_FAIL(code, "sqlite3_prepare_v2(SELECT FROM sqlite_master)");
    code = sqlite3_step(stmt);
    if (code != SQLITE_ROW && code != SQLITE_DONE)
        STORE_SQL_FAIL(code, "sqlite3_step(SELECT FROM sqlite_master)");
    if (version == 0 && code == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(stmt, 0);
        MRT_FAIL(err, MRT_ERR_STORE_VERSION,
                 "%s is not a marlinrt store: schema version 0 but it already holds '%s' (another program's "
                 "database?)",
                 store->path, name ? (const char *)name : "?");
    }
    if (version == MRT_STORE_SCHEMA_VERSION && code == SQLITE_DONE)
        MRT_FAIL(err, MRT_ERR_STORE_VERSION, "%s is not a marlinrt store: schema version %d but no cubin table",
                 store->path, MRT_STORE_SCHEMA_VERSION);
    (void)sqlite3_finalize(stmt);
    stmt = NULL;

    if (version == 0) {
        code = sqlite3_exec(store->db, schema_v1_sql, NULL, NULL, NULL);
        if (code != SQLITE_OK)
            STORE_SQL_FAIL(code, "sqlite3_exec(CREATE TABLE cubin)");
    }

    if (in_transaction) {
        code = sqlite3_exec(store->db, "COMMIT", NULL, NULL, NULL);
        if (code != SQLITE_OK)
            STORE_SQL_FAIL(code, "sqlite3_exec(COMMIT)");
        in_transaction = 0;
    }
    store->schema_version = MRT_STORE_SCHEMA_VERSION;

done:
    (void)sqlite3_finalize(stmt); /* NULL is a no-op; a failure was reported by its step */
    if (in_transaction)
        rollback_after_failure(store, err);
    return rc;
}

/* WAL lets processes read the store while another writes to it. It is switched on only after
 * the schema check, so a database that turns out not to be ours is left as it was. */
static mrt_status enable_wal(mrt__store *store, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    int code = sqlite3_prepare_v2(store->db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL);
    if (code != SQLITE_OK)
        STORE_SQL_FAIL(code, "sqlite3_prepare_v2(PRAGMA journal_mode = WAL)");
    code = sqlite3_step(stmt);
    if (code != SQLITE_ROW)
        STORE_SQL_FAIL(code, "sqlite3_step(PRAGMA journal_mode = WAL)");
    /* SQLite answers with the mode now in force; it keeps the old one where WAL cannot work
     * (a file system without shared memory), and readers would then block on writers. */
    const unsigned char *mode = sqlite3_column_text(stmt, 0);
    if (!mode || strcasecmp((const char *)mode, "wal") != 0)
        MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s: PRAGMA journal_mode = WAL left the journal mode at '%s'",
                 store->path, mode ? (const char *)mode : "?");

done:
    (void)sqlite3_finalize(stmt);
    return rc;
}

/* The folder that holds path ("." for a bare file name), malloc'd. */
static char *parent_folder(const char *path)
{
    const char *last_slash = strrchr(path, '/');
    if (!last_slash)
        return copy_text(".");
    if (last_slash == path)
        return copy_text("/");
    size_t length = (size_t)(last_slash - path);
    char *folder = malloc(length + 1);
    if (folder) {
        memcpy(folder, path, length);
        folder[length] = '\0';
    }
    return folder;
}

/* "file:" URI of path with a query, for the read-only modes SQLite only takes as URI
 * parameters. Every byte outside the unreserved set is percent-encoded, so a '?', '#' or '%'
 * in a file name is taken literally. */
static char *file_uri(const char *path, const char *query)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t length = strlen(path);
    char *uri = malloc(sizeof "file:" + 3 * length + 1 + strlen(query) + 1);
    if (!uri)
        return NULL;
    char *out = uri + sprintf(uri, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '-' ||
            c == '_' || c == '.' || c == '~') {
            *out++ = (char)c;
        } else {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 0x0f];
        }
    }
    sprintf(out, "?%s", query);
    return uri;
}

/* Decide whether an existing store must be opened read-only and say why. A file that cannot
 * be written (another user's, or on a read-only file system) can still serve every lookup. */
static void detect_read_only(mrt__store *store, uint32_t flags)
{
    if (flags & MRT_STORE_OPEN_READONLY) {
        store->read_only = 1;
        snprintf(store->read_only_reason, sizeof store->read_only_reason, "read-only was asked for");
        return;
    }
    if (access(store->path, F_OK) != 0)
        return; /* a new store: created below, writable or failing with its own message */
    if (access(store->path, W_OK) != 0) {
        int error = errno;
        store->read_only = 1;
        snprintf(store->read_only_reason, sizeof store->read_only_reason, "this process may not write it: %s",
                 strerror(error));
    }
}

/* Open the connection of a read-only store. SQLITE_OPEN_READONLY alone still needs the -shm
 * file of a WAL database, which SQLite creates beside the store; where the folder cannot take
 * it, the file is opened immutable (no locking, no -wal, no -shm), which is right for a
 * shipped store that nothing changes while it is in use. */
static mrt_status open_read_only(mrt__store *store, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    char *folder = NULL, *uri = NULL;

    if (access(store->path, F_OK) != 0) {
        int error = errno;
        MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s cannot be opened read-only (%s): %s", store->path,
                 store->read_only_reason, strerror(error));
    }
    folder = parent_folder(store->path);
    if (!folder)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "cubin store %s: out of memory", store->path);
    int immutable = access(folder, W_OK) != 0;
    uri = file_uri(store->path, immutable ? "mode=ro&immutable=1" : "mode=ro");
    if (!uri)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "cubin store %s: out of memory", store->path);
    if (immutable) {
        size_t used = strlen(store->read_only_reason);
        snprintf(store->read_only_reason + used, sizeof store->read_only_reason - used,
                 "; immutable, its folder %s is not writable", folder);
    }
    int code = sqlite3_open_v2(uri, &store->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL);
    if (code != SQLITE_OK)
        STORE_SQL_FAIL(code, "sqlite3_open_v2(SQLITE_OPEN_READONLY)");

done:
    free(folder);
    free(uri);
    return rc;
}

mrt_status mrt__store_open(const char *path, mrt__err *err, mrt__store **out)
{
    return mrt__store_open_mode(path, 0, err, out);
}

mrt_status mrt__store_open_mode(const char *path, uint32_t flags, mrt__err *err, mrt__store **out)
{
    mrt_status rc = MRT_OK;
    mrt__store *store = NULL;

    if (out)
        *out = NULL;
    if (!path || !*path || !out)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_open: path (%s) and out (%s) must be given",
                 path && *path ? "given" : "missing", out ? "given" : "NULL");
    if ((flags & MRT_STORE_OPEN_READONLY) && (flags & MRT_STORE_OPEN_WRITABLE))
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_open: %s cannot be both read-only and writable", path);

    int in_memory = strcmp(path, ":memory:") == 0;
    store = calloc(1, sizeof *store);
    if (!store || !(store->path = copy_text(path)))
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "cubin store %s: out of memory", path);

    if (!in_memory)
        detect_read_only(store, flags);
    if (store->read_only && (flags & MRT_STORE_OPEN_WRITABLE))
        MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s must be writable, but %s", path, store->read_only_reason);

    int code;
    if (store->read_only) {
        MRT_CHECK(open_read_only(store, err));
    } else {
        if (!in_memory)
            MRT_CHECK(make_parent_folders(path, err));
        code = sqlite3_open_v2(path, &store->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                               NULL);
        if (code != SQLITE_OK)
            STORE_SQL_FAIL(code, "sqlite3_open_v2");
        /* SQLite quietly opens a file it may not write read-only even when asked for
         * read-write (access() can say yes where the file system says no). Such a store is
         * treated as read-only from here on, like one detected up front. */
        if (!in_memory && sqlite3_db_readonly(store->db, "main") == 1) {
            if (flags & MRT_STORE_OPEN_WRITABLE)
                MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s must be writable, but SQLite can only read it", path);
            (void)sqlite3_close_v2(store->db); /* no statement exists yet: closes now */
            store->db = NULL;
            store->read_only = 1;
            snprintf(store->read_only_reason, sizeof store->read_only_reason,
                     "SQLite could open it for reading only");
            MRT_CHECK(open_read_only(store, err));
        }
    }

    code = sqlite3_busy_timeout(store->db, STORE_BUSY_TIMEOUT_MS);
    if (code != SQLITE_OK)
        STORE_SQL_FAIL(code, "sqlite3_busy_timeout");

    MRT_CHECK(check_schema(store, err));
    if (!store->read_only) {
        if (!in_memory)
            MRT_CHECK(enable_wal(store, err));
        /* In WAL mode NORMAL can lose the last transactions on power loss but never corrupts
         * the file; a lost cubin is only compiled again. */
        code = sqlite3_exec(store->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
        if (code != SQLITE_OK)
            STORE_SQL_FAIL(code, "sqlite3_exec(PRAGMA synchronous = NORMAL)");
    }

    /* Statements that write are prepared on a read-only store too: preparing does not write,
     * and the code that would step them checks read_only first. */
    for (int i = 0; i < STMT_COUNT; i++) {
        code = sqlite3_prepare_v2(store->db, statement_sql[i], -1, &store->statements[i], NULL);
        if (code != SQLITE_OK)
            STORE_SQL_FAIL(code, statement_sql[i]);
    }

    *out = store;
    store = NULL;

done:
    mrt__store_close(store);
    return rc;
}

void mrt__store_close(mrt__store *store)
{
    if (!store)
        return;
    for (int i = 0; i < STMT_COUNT; i++)
        (void)sqlite3_finalize(store->statements[i]); /* reports the last step, not a failure */
    /* close_v2 cannot fail on a valid handle: with every statement finalized it closes now. */
    (void)sqlite3_close_v2(store->db);
    free(store->path);
    free(store);
}

/* A cubin read from a row, owned by the caller until handed out. */
typedef struct found_cubin {
    void *blob;
    size_t size;
    char *entry;
} found_cubin;

static void found_cubin_free(found_cubin *found)
{
    free(found->blob);
    free(found->entry);
    memset(found, 0, sizeof *found);
}

/* Copy the blob and entry of the current row if the blob's length and XXH64 match what was
 * stored beside it. Columns from 0: blob, blob_size, blob_xxh64, entry. A damaged row leaves
 * *found empty. */
static mrt_status copy_checked_row(mrt__store *store, sqlite3_stmt *stmt, found_cubin *found, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    memset(found, 0, sizeof *found);

    const void *bytes = sqlite3_column_blob(stmt, 0);
    int length = sqlite3_column_bytes(stmt, 0);
    if (!bytes && length > 0)
        STORE_SQL_FAIL(SQLITE_NOMEM, "sqlite3_column_blob(blob)");
    sqlite3_int64 stored_size = sqlite3_column_int64(stmt, 1);
    uint64_t stored_hash = int64_as_u64(sqlite3_column_int64(stmt, 2));
    const unsigned char *entry = sqlite3_column_text(stmt, 3);
    if (!entry && sqlite3_column_type(stmt, 3) != SQLITE_NULL)
        STORE_SQL_FAIL(SQLITE_NOMEM, "sqlite3_column_text(entry)");

    /* A cubin is never empty and always has an entry symbol: anything else is damage,
     * however its size and hash read. */
    if (length <= 0 || stored_size != (sqlite3_int64)length || !entry || !*entry)
        goto done;
    if (XXH64(bytes, (size_t)length, 0) != stored_hash)
        goto done;

    found->blob = malloc((size_t)length);
    found->entry = copy_text((const char *)entry);
    if (!found->blob || !found->entry) {
        found_cubin_free(found);
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "cubin store %s: out of memory for a cubin of %d bytes", store->path,
                 length);
    }
    memcpy(found->blob, bytes, (size_t)length);
    found->size = (size_t)length;

done:
    return rc;
}

/* Record a hit. A read-only store (a shipped image) cannot record it; the cubin is still
 * good, so that is counted rather than failed. */
static mrt_status touch(mrt__store *store, const uint8_t key[16], mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = store->statements[STMT_TOUCH];

    if (store->read_only) {
        store->touches_skipped++;
        return MRT_OK;
    }
    binder b = {stmt, 0, SQLITE_OK, 0};
    bind_blob(&b, key, 16);
    bind_int64(&b, now_unix_seconds());
    if (b.code != SQLITE_OK)
        STORE_SQL_FAIL(b.code, "sqlite3_bind(UPDATE cubin SET last_used_at)");

    int code = sqlite3_step(stmt);
    if ((code & 0xff) == SQLITE_READONLY)
        store->touches_skipped++;
    else if (code != SQLITE_DONE)
        STORE_SQL_FAIL(code, "sqlite3_step(UPDATE cubin SET last_used_at)");

done:
    statement_finish(stmt);
    return rc;
}

/* Empty the outputs first, so that a caller never frees or uses stale pointers after a miss
 * or a failure. entry may be NULL for a caller that does not need the symbol. */
static mrt_status check_lookup_arguments(const mrt__store *store, const uint8_t key[16], void **blob, size_t *size,
                                         char **entry, mrt__lookup *result, const char *function, mrt__err *err)
{
    if (blob)
        *blob = NULL;
    if (size)
        *size = 0;
    if (entry)
        *entry = NULL;
    if (result)
        *result = MRT_LOOKUP_MISS;
    if (!store || !key || !blob || !size || !result)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "%s: store, key, blob, size and result must not be NULL",
                         function);
    return MRT_OK;
}

/* Hand a good row's cubin to the caller. */
static void hand_out(found_cubin *found, void **blob, size_t *size, char **entry, mrt__lookup *result)
{
    *blob = found->blob;
    *size = found->size;
    found->blob = NULL;
    if (entry) {
        *entry = found->entry;
        found->entry = NULL;
    }
    *result = MRT_LOOKUP_HIT;
}

/* Whether a good row's blob is one the caller asked to pass over. */
static int in_skip_list(uint64_t blob_xxh64, const uint64_t *skip, size_t skip_count)
{
    for (size_t i = 0; i < skip_count; i++)
        if (skip[i] == blob_xxh64)
            return 1;
    return 0;
}

/* Rows a lookup evicts at most: one per NVRTC version kept for a variant is far fewer. */
#define STORE_MAX_EVICTIONS 8

mrt_status mrt__store_lookup(mrt__store *store, const uint8_t id[16], int by_variant, const uint64_t *skip,
                             size_t skip_count, void **blob, size_t *size, char **entry, mrt__lookup *result,
                             mrt__row_meta *meta, uint64_t *evicted, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    found_cubin found = {NULL, 0, NULL};
    mrt__row_meta row_meta;
    uint8_t doomed[STORE_MAX_EVICTIONS][16];
    size_t doomed_count = 0;
    int saw_corrupt = 0;
    const char *what = by_variant ? "SELECT FROM cubin WHERE variant" : "SELECT FROM cubin WHERE key";

    if (evicted)
        *evicted = 0;
    MRT_CHECK(check_lookup_arguments(store, id, blob, size, entry, result, "mrt__store_lookup", err));
    if (skip_count && !skip)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_lookup: skip is NULL with skip_count %zu", skip_count);
    stmt = store->statements[by_variant ? STMT_GET_VARIANT : STMT_GET];

    int code = sqlite3_bind_blob(stmt, 1, id, 16, SQLITE_STATIC);
    if (code != SQLITE_OK) {
        char call[96];
        snprintf(call, sizeof call, "sqlite3_bind_blob(%s)", what);
        STORE_SQL_FAIL(code, call);
    }

    /* Columns: blob, blob_size, blob_xxh64, entry, key, nvrtc_major, nvrtc_minor. */
    while ((code = sqlite3_step(stmt)) == SQLITE_ROW) {
        MRT_CHECK(copy_checked_row(store, stmt, &found, err));
        const void *row_key = sqlite3_column_blob(stmt, 4);
        if (!found.blob || !row_key || sqlite3_column_bytes(stmt, 4) != 16) {
            found_cubin_free(&found);
            saw_corrupt = 1;
            continue;
        }
        memset(&row_meta, 0, sizeof row_meta);
        memcpy(row_meta.key, row_key, 16);
        row_meta.blob_xxh64 = int64_as_u64(sqlite3_column_int64(stmt, 2));
        row_meta.nvrtc_major = sqlite3_column_int(stmt, 5);
        row_meta.nvrtc_minor = sqlite3_column_int(stmt, 6);
        if (in_skip_list(row_meta.blob_xxh64, skip, skip_count)) {
            if (doomed_count < STORE_MAX_EVICTIONS)
                memcpy(doomed[doomed_count++], row_meta.key, 16);
            found_cubin_free(&found);
            continue;
        }
        break;
    }
    if (code != SQLITE_ROW && code != SQLITE_DONE) {
        char call[96];
        snprintf(call, sizeof call, "sqlite3_step(%s)", what);
        STORE_SQL_FAIL(code, call);
    }
    /* Release the read before writing (the hit, or the evictions). */
    statement_finish(stmt);
    stmt = NULL;

    /* An evicted row is gone for every later process too, where the store can be written; in
     * a read-only store it stays, and each process passes over it again. */
    for (size_t i = 0; i < doomed_count && evicted && !store->read_only; i++) {
        MRT_CHECK(mrt__store_delete_cubin(store, doomed[i], err));
        (*evicted)++;
    }

    if (!found.blob) {
        *result = saw_corrupt ? MRT_LOOKUP_CORRUPT : MRT_LOOKUP_MISS;
        goto done;
    }

    MRT_CHECK(touch(store, row_meta.key, err));
    if (meta)
        *meta = row_meta;
    hand_out(&found, blob, size, entry, result);

done:
    if (stmt)
        statement_finish(stmt);
    found_cubin_free(&found);
    return rc;
}

mrt_status mrt__store_get(mrt__store *store, const uint8_t key[16], void **blob, size_t *size, char **entry,
                          mrt__lookup *result, mrt__err *err)
{
    return mrt__store_lookup(store, key, 0, NULL, 0, blob, size, entry, result, NULL, NULL, err);
}

mrt_status mrt__store_get_variant(mrt__store *store, const uint8_t variant[16], void **blob, size_t *size,
                                  char **entry, mrt__lookup *result, mrt__err *err)
{
    return mrt__store_lookup(store, variant, 1, NULL, 0, blob, size, entry, result, NULL, NULL, err);
}

mrt_status mrt__store_delete_cubin(mrt__store *store, const uint8_t key[16], mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    if (!store || !key)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_delete_cubin: store and key must not be NULL");
    if (store->read_only)
        MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s is read-only (%s): cannot delete a row", store->path,
                 store->read_only_reason);
    stmt = store->statements[STMT_DELETE];
    int code = sqlite3_bind_blob(stmt, 1, key, 16, SQLITE_STATIC);
    if (code != SQLITE_OK)
        STORE_SQL_FAIL(code, "sqlite3_bind_blob(DELETE FROM cubin WHERE key)");
    code = sqlite3_step(stmt);
    if (code != SQLITE_DONE)
        STORE_SQL_FAIL(code, "sqlite3_step(DELETE FROM cubin WHERE key)");

done:
    if (stmt)
        statement_finish(stmt);
    return rc;
}

mrt_status mrt__store_put(mrt__store *store, const uint8_t key[16], const uint8_t variant[16],
                          const mrt__key_inputs *in, const char *entry, double compile_ms, const void *blob,
                          size_t size, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;
    int in_transaction = 0;

    if (!store || !key || !variant || !in || !in->kernel || !in->options || !entry || !blob)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT,
                 "mrt__store_put: store, key, variant, inputs, kernel, options, entry and blob must not be NULL");
    if (size == 0 || !*entry)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_put: empty %s for kernel %s", size == 0 ? "cubin" : "entry",
                 in->kernel);
    if (isnan(compile_ms))
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_put: compile_ms is not a number");
    if (store->read_only)
        MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s is read-only (%s): cannot insert a cubin", store->path,
                 store->read_only_reason);

    stmt = store->statements[STMT_BEGIN];
    int code = sqlite3_step(stmt);
    if (code != SQLITE_DONE)
        STORE_SQL_FAIL(code, "sqlite3_step(BEGIN IMMEDIATE)");
    statement_finish(stmt);
    in_transaction = 1;

    int64_t now = now_unix_seconds();
    stmt = store->statements[STMT_PUT];
    binder b = {stmt, 0, SQLITE_OK, 0};
    bind_blob(&b, key, 16);
    bind_blob(&b, variant, 16);
    bind_text(&b, in->kernel);
    bind_text(&b, entry);
    bind_int64(&b, in->arch);
    bind_int64(&b, in->config.threads);
    bind_int64(&b, in->config.thread_m_blocks);
    bind_int64(&b, in->config.thread_n_blocks);
    bind_int64(&b, in->config.thread_k_blocks);
    bind_int64(&b, in->config.stages);
    bind_int64(&b, in->config.group_blocks);
    bind_int64(&b, in->nvrtc_major);
    bind_int64(&b, in->nvrtc_minor);
    bind_int64(&b, u64_as_int64(in->source_hash));
    bind_text(&b, in->options);
    bind_int64(&b, in->format_version);
    bind_blob(&b, blob, size);
    bind_int64(&b, (sqlite3_int64)size);
    bind_int64(&b, u64_as_int64(XXH64(blob, size, 0)));
    bind_double(&b, compile_ms);
    bind_int64(&b, now);
    if (b.code != SQLITE_OK) {
        char call[96];
        snprintf(call, sizeof call, "sqlite3_bind of parameter %d of INSERT INTO cubin", b.failed_index);
        STORE_SQL_FAIL(b.code, call);
    }

    code = sqlite3_step(stmt);
    if (code != SQLITE_DONE)
        STORE_SQL_FAIL(code, "sqlite3_step(INSERT OR REPLACE INTO cubin)");
    statement_finish(stmt);

    stmt = store->statements[STMT_COMMIT];
    code = sqlite3_step(stmt);
    if (code != SQLITE_DONE)
        STORE_SQL_FAIL(code, "sqlite3_step(COMMIT)");
    in_transaction = 0;

done:
    if (stmt)
        statement_finish(stmt);
    if (in_transaction)
        rollback_after_failure(store, err);
    return rc;
}

mrt_status mrt__store_foreach(mrt__store *store, mrt_cubin_row_fn fn, void *user, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    if (!store || !fn)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_foreach: store and fn must not be NULL");
    stmt = store->statements[STMT_FOREACH];

    int code;
    while ((code = sqlite3_step(stmt)) == SQLITE_ROW) {
        const void *key = sqlite3_column_blob(stmt, ROW_KEY);
        if (!key || sqlite3_column_bytes(stmt, ROW_KEY) != 16)
            MRT_FAIL(err, MRT_ERR_STORE, "cubin store %s holds a row whose key is not 16 bytes", store->path);
        const unsigned char *kernel = sqlite3_column_text(stmt, ROW_KERNEL);
        if (!kernel)
            STORE_SQL_FAIL(SQLITE_NOMEM, "sqlite3_column_text(kernel)");

        char key_hex[33];
        mrt__key_hex(key, key_hex);
        mrt_cubin_row row;
        memset(&row, 0, sizeof row);
        row.key_hex = key_hex;
        row.kernel = (const char *)kernel;
        row.arch = sqlite3_column_int(stmt, ROW_ARCH);
        row.config.threads = sqlite3_column_int(stmt, ROW_THREADS);
        row.config.thread_m_blocks = sqlite3_column_int(stmt, ROW_THREAD_M_BLOCKS);
        row.config.thread_n_blocks = sqlite3_column_int(stmt, ROW_THREAD_N_BLOCKS);
        row.config.thread_k_blocks = sqlite3_column_int(stmt, ROW_THREAD_K_BLOCKS);
        row.config.stages = sqlite3_column_int(stmt, ROW_STAGES);
        row.config.group_blocks = sqlite3_column_int(stmt, ROW_GROUP_BLOCKS);
        row.nvrtc_major = sqlite3_column_int(stmt, ROW_NVRTC_MAJOR);
        row.nvrtc_minor = sqlite3_column_int(stmt, ROW_NVRTC_MINOR);
        row.source_hash = int64_as_u64(sqlite3_column_int64(stmt, ROW_SOURCE_HASH));
        row.format_version = sqlite3_column_int(stmt, ROW_FORMAT_VERSION);
        row.size = (uint64_t)sqlite3_column_int64(stmt, ROW_BLOB_SIZE);
        row.created_at = sqlite3_column_int64(stmt, ROW_CREATED_AT);
        row.last_used_at = sqlite3_column_int64(stmt, ROW_LAST_USED_AT);
        row.hit_count = sqlite3_column_int64(stmt, ROW_HIT_COUNT);
        row.compile_ms = sqlite3_column_double(stmt, ROW_COMPILE_MS);
        if (fn(&row, user) != 0)
            goto done;
    }
    if (code != SQLITE_DONE)
        STORE_SQL_FAIL(code, "sqlite3_step(SELECT FROM cubin ORDER BY kernel)");

done:
    if (stmt)
        statement_finish(stmt);
    return rc;
}

mrt_status mrt__store_summary(mrt__store *store, mrt_store_summary *summary, mrt__err *err)
{
    mrt_status rc = MRT_OK;
    sqlite3_stmt *stmt = NULL;

    if (!store || !summary)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt__store_summary: store and summary must not be NULL");
    memset(summary, 0, sizeof *summary);
    stmt = store->statements[STMT_SUMMARY];

    int code = sqlite3_step(stmt);
    if (code != SQLITE_ROW)
        STORE_SQL_FAIL(code, "sqlite3_step(SELECT COUNT(*) FROM cubin)");
    summary->schema_version = store->schema_version;
    summary->cubin_rows = (uint64_t)sqlite3_column_int64(stmt, 0);
    summary->cubin_bytes = (uint64_t)sqlite3_column_int64(stmt, 1);

done:
    if (stmt)
        statement_finish(stmt);
    return rc;
}
