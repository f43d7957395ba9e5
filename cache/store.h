/*
 * The SQLite cubin store (cache/store.c) and the store key (cache/key.c). Private.
 */
#ifndef MRT_CACHE_STORE_H
#define MRT_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/runtime.h"

/* Schema version this library writes and reads (PRAGMA user_version). */
#define MRT_STORE_SCHEMA_VERSION 1

/* Everything that affects a cubin's bytes. */
typedef struct mrt__key_inputs {
    uint64_t source_hash; /* XXH3-64 of the kernel source text */
    const char *kernel;   /* kernel name */
    int arch;             /* 80, 86, 89, 90 ... */
    mrt_config config;
    int nvrtc_major, nvrtc_minor;
    const char *options;  /* the NVRTC options, joined with single spaces */
    int format_version;   /* MRT_CUBIN_FORMAT_VERSION */
} mrt__key_inputs;

/* key: XXH3-128 over every input. variant: the same without the NVRTC version, so that a
 * process without NVRTC can still find a row made by any NVRTC for the same source,
 * options and configuration. Each field is framed (tag, length, bytes; integers little
 * endian) so no two different input sets serialise to the same bytes. */
void mrt__cubin_key(const mrt__key_inputs *in, uint8_t key[16], uint8_t variant[16]);

/* 32 lower-case hex digits and a NUL. */
void mrt__key_hex(const uint8_t key[16], char out[33]);

typedef struct mrt__store mrt__store;

/* Open or create the store at path (":memory:" for a private in-memory store). Creates the
 * parent folder when missing. WAL mode, busy timeout, schema checked: an unknown
 * user_version, or a database that is not ours, fails with MRT_ERR_STORE_VERSION.
 * An existing file this process may not write (another user's, or on a read-only file
 * system) is opened read-only, as with MRT_STORE_OPEN_READONLY. */
mrt_status mrt__store_open(const char *path, mrt__err *err, mrt__store **out);
void mrt__store_close(mrt__store *store);

/* How mrt__store_open_mode opens a store (bitwise or). */
enum mrt__store_open_flag {
    /* Never write: the file must exist and hold a store. Opened with SQLITE_OPEN_READONLY;
     * with `immutable=1` as well when its folder is not writable either, because a WAL
     * database can then create neither its -wal nor its -shm file. Lookups still work; hits
     * are not recorded (counted in mrt__store_touches_skipped); puts fail. */
    MRT_STORE_OPEN_READONLY = 1u << 0,
    /* The store must be writable (an overlay, an export target): a file that can only be
     * read is an error instead of a read-only store. */
    MRT_STORE_OPEN_WRITABLE = 1u << 1,
};

mrt_status mrt__store_open_mode(const char *path, uint32_t flags, mrt__err *err, mrt__store **out);

/* Whether the store was opened read-only, and why ("" when it was not). */
int mrt__store_read_only(const mrt__store *store);
const char *mrt__store_read_only_reason(const mrt__store *store);
const char *mrt__store_path(const mrt__store *store);
/* Hits on a read-only store whose last_used_at / hit_count could not be recorded. */
uint64_t mrt__store_touches_skipped(const mrt__store *store);


typedef enum mrt__lookup {
    MRT_LOOKUP_MISS = 0,
    MRT_LOOKUP_HIT = 1,
    MRT_LOOKUP_CORRUPT = 2, /* a row exists but its blob fails the XXH64 check (or its size) */
} mrt__lookup;

/* Look a cubin up by exact key. On a hit *blob and *entry (the kernel's lowered entry symbol,
 * NUL-terminated) are malloc'd (caller frees both) and the row's last_used_at and hit_count
 * are updated. The entry name is stored because a process without NVRTC cannot lower a
 * template name expression itself. Column: entry TEXT NOT NULL. */
mrt_status mrt__store_get(mrt__store *store, const uint8_t key[16], void **blob, size_t *size, char **entry,
                          mrt__lookup *result, mrt__err *err);

/* Look a cubin up by variant (any NVRTC version), newest NVRTC version first, skipping
 * corrupt rows (reported in *result only if no good row exists). */
mrt_status mrt__store_get_variant(mrt__store *store, const uint8_t variant[16], void **blob, size_t *size,
                                  char **entry, mrt__lookup *result, mrt__err *err);

/* What a lookup knows about the row it handed out: enough to evict it or explain it. */
typedef struct mrt__row_meta {
    uint8_t key[16];
    int nvrtc_major, nvrtc_minor;
    uint64_t blob_xxh64;
} mrt__row_meta;

/* The general lookup behind mrt__store_get (by_variant 0: id is the exact key) and
 * mrt__store_get_variant (by_variant 1). Rows whose blob XXH64 is in skip[0..skip_count)
 * (cubins the driver refused in this process) are passed over as if absent; when evicted is
 * not NULL they are also deleted where the store is writable, and *evicted counts them.
 * meta may be NULL. */
mrt_status mrt__store_lookup(mrt__store *store, const uint8_t id[16], int by_variant, const uint64_t *skip,
                             size_t skip_count, void **blob, size_t *size, char **entry, mrt__lookup *result,
                             mrt__row_meta *meta, uint64_t *evicted, mrt__err *err);

/* Insert or replace the row for key, in one transaction. */
mrt_status mrt__store_put(mrt__store *store, const uint8_t key[16], const uint8_t variant[16],
                          const mrt__key_inputs *in, const char *entry, double compile_ms, const void *blob,
                          size_t size, mrt__err *err);

/* The store's connection, for the tuning records (cache/tuning.c), which keep their own
 * prepared statements on it. Same threading rule as the store. */
struct sqlite3;
struct sqlite3 *mrt__store_db(mrt__store *store);

mrt_status mrt__store_foreach(mrt__store *store, mrt_cubin_row_fn fn, void *user, mrt__err *err);
mrt_status mrt__store_summary(mrt__store *store, mrt_store_summary *summary, mrt__err *err);

/* Format the failure of a SQLite call on the store (naming the call and the file) into err;
 * for the maintenance code in cache/maintain.c, which runs its own statements. */
mrt_status mrt__store_sql_failure(const mrt__store *store, mrt__err *err, int code, const char *call);

/* ------------------------------------------------------------------------- */
/* Maintenance (cache/maintain.c): whole-store walks, merging, pruning        */
/* ------------------------------------------------------------------------- */

/* A write transaction (BEGIN IMMEDIATE, waiting out other writers up to the busy timeout). */
mrt_status mrt__store_begin(mrt__store *store, mrt__err *err);
mrt_status mrt__store_commit(mrt__store *store, mrt__err *err);
/* Roll back whatever is open; safe to call when nothing is (failures append to err). */
void mrt__store_rollback(mrt__store *store, mrt__err *err);

/* SQLite's own consistency check (PRAGMA quick_check): MRT_ERR_STORE with its first
 * complaint when the file is damaged. */
mrt_status mrt__store_quick_check(mrt__store *store, mrt__err *err);

/* One cubin row with its blob, for verification. blob and entry are valid only during the
 * callback; checksum_ok says whether the blob matches its stored length and XXH64. */
typedef struct mrt__blob_row {
    mrt_cubin_row row;
    const void *blob;
    size_t size;
    const char *entry;
    int checksum_ok;
} mrt__blob_row;

typedef int (*mrt__blob_row_fn)(const mrt__blob_row *row, void *user);
mrt_status mrt__store_foreach_blob(mrt__store *store, mrt__blob_row_fn fn, void *user, mrt__err *err);

/* Copy every cubin and tuning row of src into dst in one transaction of dst. Cubins whose
 * blob fails its checksum are not copied (counted); a cubin already in dst is kept unless its
 * blob differs from the good one in src (then replaced, counted). Tuning rows are inserted, or
 * replace the row with the same primary key when theirs is newer (the `*_at` column). */
mrt_status mrt__store_merge(mrt__store *src, mrt__store *dst, mrt_store_merge_report *report, mrt__err *err);

/* Delete the cubin rows with these keys (inside the caller's transaction). */
mrt_status mrt__store_delete_cubin(mrt__store *store, const uint8_t key[16], mrt__err *err);

/* One (table, kernel, source hash) group of tuning rows with its row count. */
typedef int (*mrt__tuning_group_fn)(const char *table, const char *kernel, uint64_t source_hash, uint64_t rows,
                                    void *user);
mrt_status mrt__store_foreach_tuning_group(mrt__store *store, mrt__tuning_group_fn fn, void *user, mrt__err *err);
/* Delete one such group; *deleted gets the row count. */
mrt_status mrt__store_delete_tuning_group(mrt__store *store, const char *table, const char *kernel,
                                          uint64_t source_hash, uint64_t *deleted, mrt__err *err);

/* Every tuning winner, ordered by fingerprint, kernel, shape. Strings valid during the call. */
mrt_status mrt__store_foreach_winner(mrt__store *store, mrt_tuning_winner_row_fn fn, void *user, mrt__err *err);

/* Row counts of the tuning tables. */
mrt_status mrt__store_tuning_counts(mrt__store *store, uint64_t *devices, uint64_t *timings, uint64_t *winners,
                                    mrt__err *err);

/* Give the space of deleted rows back to the file system. */
mrt_status mrt__store_vacuum(mrt__store *store, mrt__err *err);

/* Make the file a self-contained rollback-journal database (no -wal / -shm needed by its
 * readers), for a store about to be shipped read-only. Needs no other connection open. */
mrt_status mrt__store_set_journal_delete(mrt__store *store, mrt__err *err);

#endif /* MRT_CACHE_STORE_H */
