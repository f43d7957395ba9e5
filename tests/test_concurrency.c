/*
 * Eight processes warming and tuning into one store at once (cache/store.c's WAL mode, busy
 * timeout and transactions): every process must succeed (no SQLITE_BUSY reaches anyone) and
 * the store must end with exactly the rows written, none lost, none doubled.
 *
 * Warming goes through the library (mrt_get_cubin), all processes racing for the same eight
 * cubins of a store none of them has created yet. Tuning rows are written the way the tuner
 * writes them, in transactions on the store's own connection, with the column list read from
 * the schema so the test follows its changes.
 */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "runtime/context.h"

#define PROCESSES 8
#define ROUNDS 8
#define TIMINGS_PER_ROUND 16

static const mrt_config dequant_configs[] = {
    {.threads = 256, .group_blocks = 8},
    {.threads = 256, .group_blocks = 4},
    {.threads = 256, .group_blocks = 2},
    {.threads = 256, .group_blocks = -1},
};

/* An INSERT of every column of a tuning table, prepared on one connection. */
typedef struct tuning_insert {
    sqlite3_stmt *stmt;
    int count;
    char names[64][64];
    char types[64][16];
} tuning_insert;

static int prepare_insert(sqlite3 *db, const char *verb, const char *table, tuning_insert *ins)
{
    sqlite3_stmt *columns = NULL;
    memset(ins, 0, sizeof *ins);
    if (sqlite3_prepare_v2(db, "SELECT name, type FROM pragma_table_info(?1) ORDER BY cid", -1, &columns, NULL) !=
        SQLITE_OK)
        return -1;
    sqlite3_bind_text(columns, 1, table, -1, SQLITE_STATIC);
    char names[8192] = "", values[1024] = "";
    while (sqlite3_step(columns) == SQLITE_ROW && ins->count < 64) {
        snprintf(ins->names[ins->count], 64, "%s", (const char *)sqlite3_column_text(columns, 0));
        snprintf(ins->types[ins->count], 16, "%s", (const char *)sqlite3_column_text(columns, 1));
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", ins->count ? ", " : "", ins->names[ins->count]);
        used = strlen(values);
        snprintf(values + used, sizeof values - used, "%s?%d", ins->count ? ", " : "", ins->count + 1);
        ins->count++;
    }
    sqlite3_finalize(columns);
    char sql[10000];
    snprintf(sql, sizeof sql, "%s INTO %s (%s) VALUES (%s)", verb, table, names, values);
    return sqlite3_prepare_v2(db, sql, -1, &ins->stmt, NULL) == SQLITE_OK && ins->count > 3 ? 0 : -1;
}

/* Bind a row: the fingerprint, n and m (or m_bucket) make the primary key; the rest is filler
 * of the column's type. Returns the step's result. */
static int insert_row(tuning_insert *ins, const char *fingerprint, int64_t n, int64_t m)
{
    for (int i = 0; i < ins->count; i++) {
        const char *name = ins->names[i];
        int p = i + 1;
        if (strcmp(name, "fingerprint") == 0)
            sqlite3_bind_text(ins->stmt, p, fingerprint, -1, SQLITE_TRANSIENT);
        else if (strcmp(name, "kernel") == 0)
            sqlite3_bind_text(ins->stmt, p, MRT_KERNEL_MARLIN_W4A16, -1, SQLITE_STATIC);
        else if (strcmp(name, "n") == 0)
            sqlite3_bind_int64(ins->stmt, p, n);
        else if (strcmp(name, "m") == 0 || strcmp(name, "m_bucket") == 0)
            sqlite3_bind_int64(ins->stmt, p, m);
        else if (strcasecmp(ins->types[i], "TEXT") == 0)
            sqlite3_bind_text(ins->stmt, p, "f16", -1, SQLITE_STATIC);
        else if (strcasecmp(ins->types[i], "REAL") == 0)
            sqlite3_bind_double(ins->stmt, p, 1.5);
        else
            sqlite3_bind_int64(ins->stmt, p, 1);
    }
    int code = sqlite3_step(ins->stmt);
    sqlite3_reset(ins->stmt);
    return code;
}

/* One process: wait for the start, then warm and tune in turns. Exit codes name the step. */
static int child(const char *path, int index, int start_fd)
{
    char go;
    if (read(start_fd, &go, 1) < 0)
        return 10;
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = path;
    opts.flags = MRT_CTX_OFFLINE;
    mrt_context *ctx = NULL;
    if (mrt_context_create(&opts, &ctx) != MRT_OK) {
        fprintf(stderr, "process %d: mrt_context_create: %s\n", index, mrt_thread_errmsg());
        return 11;
    }
    sqlite3 *db = mrt__store_db(mrt__ctx_write_store(ctx));
    tuning_insert timing, winner, shared_winner, device;
    if (prepare_insert(db, "INSERT", "tuning_timing", &timing) != 0 ||
        prepare_insert(db, "INSERT", "tuning_winner", &winner) != 0 ||
        prepare_insert(db, "INSERT OR REPLACE", "tuning_winner", &shared_winner) != 0 ||
        prepare_insert(db, "INSERT OR IGNORE", "tuning_device", &device) != 0) {
        fprintf(stderr, "process %d: prepare: %s\n", index, sqlite3_errmsg(db));
        return 12;
    }
    char fingerprint[32];
    snprintf(fingerprint, sizeof fingerprint, "process-%d", index);
    int rc = 0;
    for (int round = 0; round < ROUNDS && rc == 0; round++) {
        /* Every process wants the same eight cubins, each starting at another one. */
        int item = (index + round) % 8;
        void *cubin = NULL;
        size_t size = 0;
        mrt_status status = mrt_get_cubin(ctx, item < 4 ? 80 : 90, MRT_KERNEL_DEQUANT_W4, &dequant_configs[item % 4],
                                          &cubin, &size, NULL);
        mrt_free(cubin);
        if (status != MRT_OK) {
            fprintf(stderr, "process %d: mrt_get_cubin: %s: %s\n", index, mrt_status_str(status), mrt_errmsg(ctx));
            rc = 13;
            break;
        }
        /* A tuning round: its timings, its winner, and the shared winner everyone rewrites. */
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
            fprintf(stderr, "process %d: BEGIN IMMEDIATE: %s\n", index, sqlite3_errmsg(db));
            rc = 14;
            break;
        }
        int code = SQLITE_DONE;
        for (int t = 0; t < TIMINGS_PER_ROUND && code == SQLITE_DONE; t++)
            code = insert_row(&timing, fingerprint, 4096 + round, t + 1);
        if (code == SQLITE_DONE)
            code = insert_row(&winner, fingerprint, 4096 + round, 1);
        if (code == SQLITE_DONE)
            code = insert_row(&shared_winner, "shared", 4096, 1);
        if (code == SQLITE_DONE)
            code = insert_row(&device, "shared", 0, 0);
        if (code != SQLITE_DONE || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            fprintf(stderr, "process %d: tuning round %d: %s\n", index, round, sqlite3_errmsg(db));
            rc = 15;
        }
    }
    sqlite3_finalize(timing.stmt);
    sqlite3_finalize(winner.stmt);
    sqlite3_finalize(shared_winner.stmt);
    sqlite3_finalize(device.stmt);
    mrt_context_destroy(ctx);
    return rc;
}

static void test_concurrency__eight_processes_warm_and_tune_one_store(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("concurrency");
    char *path = mrt_test_path(dir, "shared/cache.db"); /* created by the race itself */
    int start[2];
    assert_int_equal(pipe(start), 0);
    pid_t pids[PROCESSES];
    for (int i = 0; i < PROCESSES; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(start[1]);
            _exit(child(path, i, start[0]));
        }
    }
    /* Closing the write end releases every child's read at once. */
    close(start[0]);
    close(start[1]);
    for (int i = 0; i < PROCESSES; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("process %d ended with status 0x%x (see its message above)", i, status);
    }

    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM cubin"), 8);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(DISTINCT variant) FROM cubin"), 8);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM tuning_timing"), PROCESSES * ROUNDS * TIMINGS_PER_ROUND);
    for (int i = 0; i < PROCESSES; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM tuning_timing WHERE fingerprint = 'process-%d'", i);
        assert_int_equal(mrt_test_sql_int(path, sql), ROUNDS * TIMINGS_PER_ROUND);
    }
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM tuning_winner"), PROCESSES * ROUNDS + 1);
    assert_int_equal(mrt_test_sql_int(path, "SELECT COUNT(*) FROM tuning_device"), 1);

    /* Every cubin is whole, and the file is sound. */
    mrt_context *ctx = mrt_test_context(path, MRT_CTX_OFFLINE);
    mrt_store_verify_report report;
    assert_int_equal(mrt_store_verify(ctx, NULL, NULL, &report), MRT_OK);
    assert_int_equal(report.cubin_rows, 8);
    assert_int_equal(report.bad_checksum, 0);
    mrt_context_destroy(ctx);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrency__eight_processes_warm_and_tune_one_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
