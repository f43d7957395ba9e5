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
 * user_version, or a database that is not ours, fails with MRT_ERR_STORE_VERSION. */
mrt_status mrt__store_open(const char *path, mrt__err *err, mrt__store **out);
void mrt__store_close(mrt__store *store);

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

#endif /* MRT_CACHE_STORE_H */
