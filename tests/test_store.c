/*
 * The cubin store (cache/store.c) and its key (cache/key.c): no GPU needed.
 */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>
#include <xxhash.h>

#include "cache/store.h"

static char errbuf[MRT_ERRMSG_SIZE];
static mrt__err test_err = {errbuf, sizeof errbuf};

/* A fresh message buffer, so a test never reads the message of an earlier call. */
static mrt__err *fresh_err(void)
{
    errbuf[0] = '\0';
    return &test_err;
}

#define ASSERT_OK(call)                                                                            \
    do {                                                                                           \
        mrt_status status_ = (call);                                                               \
        if (status_ != MRT_OK)                                                                     \
            fail_msg("%s: %s: %s", #call, mrt_status_str(status_), errbuf);                        \
    } while (0)

/* Key inputs with random values; the strings live in the caller's buffers. */
typedef struct test_inputs {
    mrt__key_inputs in;
    char kernel[64];
    char options[128];
} test_inputs;

static int random_int(int lo, int hi)
{
    return lo + (int)(mrt_test_rand() % (uint64_t)(hi - lo + 1));
}

static void random_inputs(test_inputs *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->kernel, sizeof t->kernel, "kernel_%04x", (unsigned)(mrt_test_rand() & 0xffff));
    snprintf(t->options, sizeof t->options, "--gpu-architecture=sm_%d -O3 -DSEED=%u", random_int(70, 99),
             (unsigned)(mrt_test_rand() & 0xffffff));
    t->in.source_hash = mrt_test_rand() | (UINT64_C(1) << 63); /* high bit set: int64 storage must keep it */
    t->in.kernel = t->kernel;
    t->in.arch = random_int(70, 99);
    t->in.config.threads = 128 * random_int(1, 2);
    t->in.config.thread_m_blocks = random_int(1, 4);
    t->in.config.thread_n_blocks = random_int(1, 16);
    t->in.config.thread_k_blocks = random_int(1, 16);
    t->in.config.stages = random_int(2, 6);
    t->in.config.group_blocks = random_int(-1, 8);
    t->in.nvrtc_major = random_int(11, 13);
    t->in.nvrtc_minor = random_int(0, 9);
    t->in.options = t->options;
    t->in.format_version = MRT_CUBIN_FORMAT_VERSION;
}

static uint8_t *random_blob(size_t size)
{
    uint8_t *blob = malloc(size);
    assert_non_null(blob);
    for (size_t i = 0; i < size; i++)
        blob[i] = (uint8_t)mrt_test_rand();
    return blob;
}

static mrt__store *open_store(const char *path)
{
    mrt__store *store = NULL;
    ASSERT_OK(mrt__store_open(path, fresh_err(), &store));
    assert_non_null(store);
    return store;
}

/* The entry symbol stored with a row; made from its key so every row's differs. */
static void entry_for(const uint8_t key[16], char entry[40])
{
    char hex[33];
    mrt__key_hex(key, hex);
    snprintf(entry, 40, "_Z3mrt%s", hex);
}

static void put_row(mrt__store *store, const mrt__key_inputs *in, const void *blob, size_t size, uint8_t key[16],
                    uint8_t variant[16])
{
    char entry[40];
    mrt__cubin_key(in, key, variant);
    entry_for(key, entry);
    ASSERT_OK(mrt__store_put(store, key, variant, in, entry, 12.5, blob, size, fresh_err()));
}

/* What a lookup handed back. */
typedef struct lookup {
    mrt__lookup result;
    void *blob;
    size_t size;
    char *entry;
} lookup;

/* Look up by key (or by variant), with the outputs poisoned first: anything but a hit must
 * leave them empty. */
static lookup look_up(mrt__store *store, const uint8_t key[16], int by_variant)
{
    lookup found = {(mrt__lookup)77, (void *)0x1, 12345, (char *)0x1};
    if (by_variant)
        ASSERT_OK(mrt__store_get_variant(store, key, &found.blob, &found.size, &found.entry, &found.result,
                                         fresh_err()));
    else
        ASSERT_OK(mrt__store_get(store, key, &found.blob, &found.size, &found.entry, &found.result, fresh_err()));
    assert_true(found.result == MRT_LOOKUP_HIT || found.result == MRT_LOOKUP_MISS ||
                found.result == MRT_LOOKUP_CORRUPT);
    if (found.result != MRT_LOOKUP_HIT) {
        assert_null(found.blob);
        assert_int_equal(found.size, 0);
        assert_null(found.entry);
    }
    return found;
}

/* Expect a hit on the row of row_key whose bytes equal expected; frees what was handed back. */
static void assert_hit(lookup found, const void *expected, size_t expected_size, const uint8_t row_key[16])
{
    assert_int_equal(found.result, MRT_LOOKUP_HIT);
    assert_non_null(found.blob);
    assert_int_equal(found.size, expected_size);
    assert_memory_equal(found.blob, expected, expected_size);
    char entry[40];
    entry_for(row_key, entry);
    assert_non_null(found.entry);
    assert_string_equal(found.entry, entry);
    free(found.blob);
    free(found.entry);
}

/* Run one statement on the store file through SQLite directly, as another program would,
 * binding key as ?1 and bytes (if any) as ?2; returns the number of rows changed. */
static int raw_sql(const char *path, const char *sql, const uint8_t *key, const void *bytes, int size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(db, 10000), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        fail_msg("prepare %s: %s", sql, sqlite3_errmsg(db));
    if (key)
        assert_int_equal(sqlite3_bind_blob(stmt, 1, key, 16, SQLITE_TRANSIENT), SQLITE_OK);
    if (bytes)
        assert_int_equal(sqlite3_bind_blob(stmt, 2, bytes, size, SQLITE_TRANSIENT), SQLITE_OK);
    int code = sqlite3_step(stmt);
    if (code != SQLITE_DONE && code != SQLITE_ROW)
        fail_msg("step %s: %s", sql, sqlite3_errmsg(db));
    int changed = sqlite3_changes(db);
    assert_int_equal(sqlite3_finalize(stmt), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return changed;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK)
        fail_msg("exec %s: %s", sql, message ? message : "?");
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Flip one byte of the stored blob, keeping its length, so only the XXH64 check can see it. */
static void flip_stored_byte(const char *path, const uint8_t key[16], const uint8_t *blob, size_t size)
{
    uint8_t *damaged = malloc(size);
    assert_non_null(damaged);
    memcpy(damaged, blob, size);
    damaged[mrt_test_rand() % size] ^= (uint8_t)(1u << (mrt_test_rand() % 8));
    assert_int_equal(raw_sql(path, "UPDATE cubin SET blob = ?2 WHERE key = ?1", key, damaged, (int)size), 1);
    free(damaged);
}

/* The fields of one row as foreach reports them, found by key. */
typedef struct row_search {
    char key_hex[33];
    int found;
    mrt_cubin_row row;
    char kernel[64];
} row_search;

static int find_row_fn(const mrt_cubin_row *row, void *user)
{
    row_search *search = user;
    if (strcmp(row->key_hex, search->key_hex) != 0)
        return 0;
    search->found++;
    search->row = *row;
    snprintf(search->kernel, sizeof search->kernel, "%s", row->kernel);
    search->row.kernel = search->kernel;
    search->row.key_hex = search->key_hex;
    return 0;
}

static mrt_cubin_row find_row(mrt__store *store, const uint8_t key[16])
{
    row_search search;
    memset(&search, 0, sizeof search);
    mrt__key_hex(key, search.key_hex);
    ASSERT_OK(mrt__store_foreach(store, find_row_fn, &search, fresh_err()));
    assert_int_equal(search.found, 1);
    return search.row;
}

static void test_store__round_trip(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-round-trip");
    char *path = mrt_test_path(dir, "cache.db");
    const char *paths[] = {":memory:", path};

    for (int p = 0; p < 2; p++) {
        mrt__store *store = open_store(paths[p]);
        uint64_t total = 0;
        for (int i = 0; i < 5; i++) {
            test_inputs t;
            random_inputs(&t);
            size_t size = (size_t)random_int(1, 200000);
            uint8_t *blob = random_blob(size);
            uint8_t key[16], variant[16];
            put_row(store, &t.in, blob, size, key, variant);
            total += size;

            assert_hit(look_up(store, key, 0), blob, size, key);

            mrt_cubin_row row = find_row(store, key);
            assert_string_equal(row.kernel, t.kernel);
            assert_int_equal(row.arch, t.in.arch);
            assert_memory_equal(&row.config, &t.in.config, sizeof row.config);
            assert_int_equal(row.nvrtc_major, t.in.nvrtc_major);
            assert_int_equal(row.nvrtc_minor, t.in.nvrtc_minor);
            assert_true(row.source_hash == t.in.source_hash);
            assert_int_equal(row.format_version, t.in.format_version);
            assert_int_equal(row.size, size);
            assert_true(row.compile_ms == 12.5);
            free(blob);
        }

        /* A key never put is a miss, with nothing returned. */
        uint8_t unknown[16];
        for (int i = 0; i < 16; i++)
            unknown[i] = (uint8_t)mrt_test_rand();
        assert_int_equal(look_up(store, unknown, 0).result, MRT_LOOKUP_MISS);
        assert_int_equal(look_up(store, unknown, 1).result, MRT_LOOKUP_MISS);

        mrt_store_summary summary;
        ASSERT_OK(mrt__store_summary(store, &summary, fresh_err()));
        assert_int_equal(summary.schema_version, MRT_STORE_SCHEMA_VERSION);
        assert_int_equal(summary.cubin_rows, 5);
        assert_int_equal(summary.cubin_bytes, total);
        mrt__store_close(store);
    }
    free(path);
    free(dir);
}

/* The fields of mrt__key_inputs, one by one. */
enum key_field {
    FIELD_SOURCE_HASH,
    FIELD_KERNEL,
    FIELD_ARCH,
    FIELD_THREADS,
    FIELD_THREAD_M_BLOCKS,
    FIELD_THREAD_N_BLOCKS,
    FIELD_THREAD_K_BLOCKS,
    FIELD_STAGES,
    FIELD_GROUP_BLOCKS,
    FIELD_RESERVED_0,
    FIELD_RESERVED_1,
    FIELD_NVRTC_MAJOR,
    FIELD_NVRTC_MINOR,
    FIELD_OPTIONS,
    FIELD_FORMAT_VERSION,
    FIELD_COUNT
};

static int32_t flip_bit(int32_t value)
{
    return (int32_t)((uint32_t)value ^ (1u << (mrt_test_rand() % 31)));
}

/* Change exactly one field of t. */
static void change_field(test_inputs *t, enum key_field field)
{
    switch (field) {
    case FIELD_SOURCE_HASH: t->in.source_hash ^= UINT64_C(1) << (mrt_test_rand() % 64); break;
    case FIELD_KERNEL: strcat(t->kernel, "x"); break;
    case FIELD_ARCH: t->in.arch = flip_bit(t->in.arch); break;
    case FIELD_THREADS: t->in.config.threads = flip_bit(t->in.config.threads); break;
    case FIELD_THREAD_M_BLOCKS: t->in.config.thread_m_blocks = flip_bit(t->in.config.thread_m_blocks); break;
    case FIELD_THREAD_N_BLOCKS: t->in.config.thread_n_blocks = flip_bit(t->in.config.thread_n_blocks); break;
    case FIELD_THREAD_K_BLOCKS: t->in.config.thread_k_blocks = flip_bit(t->in.config.thread_k_blocks); break;
    case FIELD_STAGES: t->in.config.stages = flip_bit(t->in.config.stages); break;
    case FIELD_GROUP_BLOCKS: t->in.config.group_blocks = flip_bit(t->in.config.group_blocks); break;
    case FIELD_RESERVED_0: t->in.config.reserved[0] = flip_bit(t->in.config.reserved[0]); break;
    case FIELD_RESERVED_1: t->in.config.reserved[1] = flip_bit(t->in.config.reserved[1]); break;
    case FIELD_NVRTC_MAJOR: t->in.nvrtc_major = flip_bit(t->in.nvrtc_major); break;
    case FIELD_NVRTC_MINOR: t->in.nvrtc_minor = flip_bit(t->in.nvrtc_minor); break;
    case FIELD_OPTIONS: t->options[mrt_test_rand() % strlen(t->options)] ^= 0x01; break;
    case FIELD_FORMAT_VERSION: t->in.format_version = flip_bit(t->in.format_version); break;
    case FIELD_COUNT: fail_msg("no such field"); break;
    }
}

static void test_store__key_changes_with_every_input(void **state)
{
    (void)state;
    /* The test lists each config field by name; a new one must be added here too. */
    assert_int_equal(sizeof(mrt_config), 8 * sizeof(int32_t));

    test_inputs base;
    random_inputs(&base);
    uint8_t base_key[16], base_variant[16];
    mrt__cubin_key(&base.in, base_key, base_variant);

    /* The same inputs, in other buffers, give the same key. */
    test_inputs same = base;
    same.in.kernel = same.kernel;
    same.in.options = same.options;
    uint8_t key[16], variant[16];
    mrt__cubin_key(&same.in, key, variant);
    assert_memory_equal(key, base_key, 16);
    assert_memory_equal(variant, base_variant, 16);
    assert_memory_not_equal(base_key, base_variant, 16);

    uint8_t keys[FIELD_COUNT][16];
    for (int field = 0; field < FIELD_COUNT; field++) {
        test_inputs changed = base;
        changed.in.kernel = changed.kernel;
        changed.in.options = changed.options;
        change_field(&changed, (enum key_field)field);
        mrt__cubin_key(&changed.in, keys[field], variant);
        if (memcmp(keys[field], base_key, 16) == 0)
            fail_msg("changing field %d left the key unchanged", field);
        int nvrtc_field = field == FIELD_NVRTC_MAJOR || field == FIELD_NVRTC_MINOR;
        if (nvrtc_field && memcmp(variant, base_variant, 16) != 0)
            fail_msg("changing NVRTC version field %d changed the variant", field);
        if (!nvrtc_field && memcmp(variant, base_variant, 16) == 0)
            fail_msg("changing field %d left the variant unchanged", field);
    }
    for (int a = 0; a < FIELD_COUNT; a++)
        for (int b = a + 1; b < FIELD_COUNT; b++)
            if (memcmp(keys[a], keys[b], 16) == 0)
                fail_msg("changing field %d and field %d gave the same key", a, b);
}

static void test_store__key_frames_strings(void **state)
{
    (void)state;
    test_inputs t;
    random_inputs(&t);
    uint8_t key_ab_c[16], variant_ab_c[16], key_a_bc[16], variant_a_bc[16];

    strcpy(t.kernel, "ab");
    strcpy(t.options, "c");
    mrt__cubin_key(&t.in, key_ab_c, variant_ab_c);
    strcpy(t.kernel, "a");
    strcpy(t.options, "bc");
    mrt__cubin_key(&t.in, key_a_bc, variant_a_bc);
    assert_memory_not_equal(key_ab_c, key_a_bc, 16);
    assert_memory_not_equal(variant_ab_c, variant_a_bc, 16);

    /* Moving the whole text from one string to the other changes the key too. */
    uint8_t key_empty_kernel[16], key_empty_options[16];
    strcpy(t.kernel, "");
    strcpy(t.options, "abc");
    mrt__cubin_key(&t.in, key_empty_kernel, NULL);
    strcpy(t.kernel, "abc");
    strcpy(t.options, "");
    mrt__cubin_key(&t.in, key_empty_options, NULL);
    assert_memory_not_equal(key_empty_kernel, key_empty_options, 16);

    /* NULL options are not the same as empty options. */
    uint8_t key_null_options[16];
    t.in.options = NULL;
    mrt__cubin_key(&t.in, key_null_options, NULL);
    assert_memory_not_equal(key_null_options, key_empty_options, 16);
}

/* Append one frame (tag, 8-byte little-endian length, bytes) as key.c's header documents it. */
static size_t frame(uint8_t *out, size_t at, uint8_t tag, const void *bytes, uint64_t length)
{
    out[at++] = tag;
    for (int i = 0; i < 8; i++)
        out[at++] = (uint8_t)(length >> (8 * i));
    memcpy(out + at, bytes, (size_t)length);
    return at + (size_t)length;
}

static size_t frame_int(uint8_t *out, size_t at, uint8_t tag, int64_t value)
{
    uint8_t bytes[8];
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)((uint64_t)value >> (8 * i));
    return frame(out, at, tag, bytes, 8);
}

/* The key of fixed inputs is pinned: a change to the serialisation would orphan every row of
 * every shipped store, so it must be deliberate. The bytes are spelled out here, by hand, in
 * little-endian order, so the test also fails on a host where the key came out otherwise. */
static void test_store__key_serialisation_is_pinned(void **state)
{
    (void)state;
    mrt__key_inputs in;
    memset(&in, 0, sizeof in);
    in.source_hash = UINT64_C(0x0123456789abcdef);
    in.kernel = "marlin_w4a16";
    in.arch = 89;
    in.config = (mrt_config){256, 1, 8, 8, 4, 8, {0, 0}};
    in.nvrtc_major = 12;
    in.nvrtc_minor = 4;
    in.options = "--gpu-architecture=sm_89 -O3";
    in.format_version = 1;

    uint8_t bytes[512];
    size_t n = 0;
    n = frame_int(bytes, n, 1, (int64_t)in.source_hash);
    n = frame(bytes, n, 2, in.kernel, strlen(in.kernel));
    n = frame_int(bytes, n, 3, 89);
    n = frame_int(bytes, n, 4, 256);
    n = frame_int(bytes, n, 5, 1);
    n = frame_int(bytes, n, 6, 8);
    n = frame_int(bytes, n, 7, 8);
    n = frame_int(bytes, n, 8, 4);
    n = frame_int(bytes, n, 9, 8);
    static const uint8_t reserved[16] = {0};
    n = frame(bytes, n, 10, reserved, sizeof reserved);
    size_t before_nvrtc = n;
    n = frame_int(bytes, n, 11, 12);
    n = frame_int(bytes, n, 12, 4);
    size_t after_nvrtc = n;
    n = frame(bytes, n, 13, in.options, strlen(in.options));
    n = frame_int(bytes, n, 14, 1);

    XXH128_canonical_t expected;
    XXH128_canonicalFromHash(&expected, XXH3_128bits(bytes, n));
    uint8_t key[16], variant[16];
    mrt__cubin_key(&in, key, variant);
    assert_memory_equal(key, expected.digest, 16);

    /* The variant is the same stream with the two NVRTC frames left out. */
    memmove(bytes + before_nvrtc, bytes + after_nvrtc, n - after_nvrtc);
    XXH128_canonicalFromHash(&expected, XXH3_128bits(bytes, n - (after_nvrtc - before_nvrtc)));
    assert_memory_equal(variant, expected.digest, 16);

    char hex[33];
    mrt__key_hex(key, hex);
    assert_string_equal(hex, "617375c880f8c9cbd0d7b4b41dfc3675");
}

static void test_store__key_hex_is_lower_case(void **state)
{
    (void)state;
    uint8_t key[16];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)(i * 17 + 0x0a);
    char hex[33];
    memset(hex, 'Z', sizeof hex);
    mrt__key_hex(key, hex);
    assert_string_equal(hex, "0a1b2c3d4e5f708192a3b4c5d6e7f809");
}

static void test_store__corrupt_blob_is_reported_then_replaced(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-corrupt");
    char *path = mrt_test_path(dir, "cache.db");
    mrt__store *store = open_store(path);

    test_inputs t;
    random_inputs(&t);
    size_t size = (size_t)random_int(64, 50000);
    uint8_t *blob = random_blob(size);
    uint8_t key[16], variant[16];
    put_row(store, &t.in, blob, size, key, variant);

    /* Damage of the same length: only the XXH64 catches it. Then a cut blob, and a good blob
     * whose recorded size is wrong: only the size check catches that one. */
    for (int damage = 0; damage < 3; damage++) {
        if (damage == 0)
            flip_stored_byte(path, key, blob, size);
        else if (damage == 1)
            assert_int_equal(
                raw_sql(path, "UPDATE cubin SET blob = substr(blob, 1, length(blob) - 1) WHERE key = ?1", key, NULL, 0),
                1);
        else
            assert_int_equal(raw_sql(path, "UPDATE cubin SET blob_size = blob_size + 1 WHERE key = ?1", key, NULL, 0),
                             1);

        assert_int_equal(look_up(store, key, 0).result, MRT_LOOKUP_CORRUPT);
        assert_int_equal(look_up(store, variant, 1).result, MRT_LOOKUP_CORRUPT);

        /* Putting the cubin again replaces the damaged row. */
        put_row(store, &t.in, blob, size, key, variant);
        assert_hit(look_up(store, key, 0), blob, size, key);
    }

    mrt_store_summary summary;
    ASSERT_OK(mrt__store_summary(store, &summary, fresh_err()));
    assert_int_equal(summary.cubin_rows, 1);
    mrt__store_close(store);
    free(blob);
    free(path);
    free(dir);
}

static void test_store__hits_update_hit_count_and_last_used(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-hits");
    char *path = mrt_test_path(dir, "cache.db");
    mrt__store *store = open_store(path);

    test_inputs t;
    random_inputs(&t);
    size_t size = (size_t)random_int(1, 4096);
    uint8_t *blob = random_blob(size);
    uint8_t key[16], variant[16];
    int64_t before_put = (int64_t)time(NULL);
    put_row(store, &t.in, blob, size, key, variant);

    mrt_cubin_row row = find_row(store, key);
    assert_int_equal(row.hit_count, 0);
    assert_true(row.created_at >= before_put && row.created_at <= (int64_t)time(NULL));
    assert_int_equal(row.last_used_at, row.created_at);

    /* Age the row, so a fresh last_used_at is told apart from the one put wrote. */
    assert_int_equal(raw_sql(path, "UPDATE cubin SET created_at = 1000, last_used_at = 1000 WHERE key = ?1", key,
                             NULL, 0),
                     1);
    int hits = random_int(1, 5);
    int64_t before_get = (int64_t)time(NULL);
    for (int i = 0; i < hits; i++)
        assert_hit(look_up(store, key, 0), blob, size, key);
    row = find_row(store, key);
    assert_int_equal(row.hit_count, hits);
    assert_int_equal(row.created_at, 1000);
    assert_true(row.last_used_at >= before_get && row.last_used_at <= (int64_t)time(NULL));

    /* A miss counts nothing. */
    uint8_t other[16];
    memcpy(other, key, 16);
    other[0] ^= 0xff;
    assert_int_equal(look_up(store, other, 0).result, MRT_LOOKUP_MISS);
    assert_int_equal(find_row(store, key).hit_count, hits);

    mrt__store_close(store);
    free(blob);
    free(path);
    free(dir);
}

static void test_store__get_variant_prefers_newest_nvrtc(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-variant");
    char *path = mrt_test_path(dir, "cache.db");
    mrt__store *store = open_store(path);

    test_inputs t;
    random_inputs(&t);
    /* Put in an order that is neither oldest nor newest first. */
    static const int versions[3][2] = {{12, 1}, {11, 8}, {12, 4}};
    uint8_t *blobs[3];
    size_t sizes[3];
    uint8_t keys[3][16], variants[3][16];
    for (int i = 0; i < 3; i++) {
        t.in.nvrtc_major = versions[i][0];
        t.in.nvrtc_minor = versions[i][1];
        sizes[i] = (size_t)random_int(16, 8192);
        blobs[i] = random_blob(sizes[i]);
        put_row(store, &t.in, blobs[i], sizes[i], keys[i], variants[i]);
    }
    assert_memory_equal(variants[0], variants[1], 16);
    assert_memory_equal(variants[0], variants[2], 16);

    /* A newer NVRTC's row for other options is another variant and must not be picked. */
    test_inputs other = t;
    other.in.kernel = other.kernel;
    other.in.options = other.options;
    strcat(other.options, " -lineinfo");
    other.in.nvrtc_major = 13;
    other.in.nvrtc_minor = 0;
    uint8_t *other_blob = random_blob(100);
    uint8_t other_key[16], other_variant[16];
    put_row(store, &other.in, other_blob, 100, other_key, other_variant);

    assert_hit(look_up(store, variants[0], 1), blobs[2], sizes[2], keys[2]); /* 12.4 */
    assert_int_equal(find_row(store, keys[2]).hit_count, 1);
    assert_int_equal(find_row(store, keys[0]).hit_count, 0);

    /* A damaged newest row is skipped for the next newest. */
    flip_stored_byte(path, keys[2], blobs[2], sizes[2]);
    assert_hit(look_up(store, variants[0], 1), blobs[0], sizes[0], keys[0]); /* 12.1 */

    /* Only damaged rows: reported as such, nothing returned. */
    flip_stored_byte(path, keys[0], blobs[0], sizes[0]);
    flip_stored_byte(path, keys[1], blobs[1], sizes[1]);
    assert_int_equal(look_up(store, variants[0], 1).result, MRT_LOOKUP_CORRUPT);

    /* The other variant is still found, and only it. */
    assert_hit(look_up(store, other_variant, 1), other_blob, 100, other_key);

    mrt__store_close(store);
    for (int i = 0; i < 3; i++)
        free(blobs[i]);
    free(other_blob);
    free(path);
    free(dir);
}

static void test_store__reopen_keeps_rows(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-reopen");
    char *path = mrt_test_path(dir, "cache.db");
    enum { ROWS = 6 };
    uint8_t *blobs[ROWS];
    size_t sizes[ROWS];
    uint8_t keys[ROWS][16], variant[16];
    uint64_t total = 0;

    mrt__store *store = open_store(path);
    for (int i = 0; i < ROWS; i++) {
        test_inputs t;
        random_inputs(&t);
        sizes[i] = (size_t)random_int(1, 30000);
        blobs[i] = random_blob(sizes[i]);
        put_row(store, &t.in, blobs[i], sizes[i], keys[i], variant);
        total += sizes[i];
    }
    mrt__store_close(store);

    store = open_store(path);
    for (int i = 0; i < ROWS; i++) {
        assert_hit(look_up(store, keys[i], 0), blobs[i], sizes[i], keys[i]);
        free(blobs[i]);
    }
    mrt_store_summary summary;
    ASSERT_OK(mrt__store_summary(store, &summary, fresh_err()));
    assert_int_equal(summary.schema_version, 1);
    assert_int_equal(summary.cubin_rows, ROWS);
    assert_int_equal(summary.cubin_bytes, total);
    mrt__store_close(store);
    free(path);
    free(dir);
}

static void test_store__unknown_schema_version_is_refused(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-version");
    char *path = mrt_test_path(dir, "cache.db");
    raw_exec(path, "CREATE TABLE cubin (key BLOB PRIMARY KEY); PRAGMA user_version = 99;");

    mrt__store *store = (mrt__store *)0x1;
    mrt_status rc = mrt__store_open(path, fresh_err(), &store);
    assert_int_equal(rc, MRT_ERR_STORE_VERSION);
    assert_null(store);
    if (!strstr(errbuf, "99") || !strstr(errbuf, path))
        fail_msg("message does not name the version and the file: %s", errbuf);
    free(path);
    free(dir);
}

static void test_store__non_database_file_is_refused(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-notadb");
    char *path = mrt_test_path(dir, "cache.db");
    enum { SIZE = 8192 };
    uint8_t *noise = random_blob(SIZE);
    noise[0] = 'X'; /* never the "SQLite format 3" magic */
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(noise, 1, SIZE, file), SIZE);
    assert_int_equal(fclose(file), 0);

    mrt__store *store = (mrt__store *)0x1;
    mrt_status rc = mrt__store_open(path, fresh_err(), &store);
    assert_int_equal(rc, MRT_ERR_STORE);
    assert_null(store);
    if (!strstr(errbuf, path) || !strstr(errbuf, "not a SQLite database"))
        fail_msg("unclear message: %s", errbuf);

    /* The file is left exactly as it was. */
    uint8_t *after = malloc(SIZE + 1);
    assert_non_null(after);
    file = fopen(path, "rb");
    assert_non_null(file);
    assert_int_equal(fread(after, 1, SIZE + 1, file), SIZE);
    assert_int_equal(fclose(file), 0);
    assert_memory_equal(after, noise, SIZE);
    free(after);
    free(noise);
    free(path);
    free(dir);
}

static int read_int_column(const char *path, const char *sql, char *text, size_t text_size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    int value = sqlite3_column_int(stmt, 0);
    if (text)
        snprintf(text, text_size, "%s", (const char *)sqlite3_column_text(stmt, 0));
    assert_int_equal(sqlite3_finalize(stmt), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return value;
}

static void test_store__foreign_database_is_refused(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-foreign");
    char *path = mrt_test_path(dir, "cache.db");
    raw_exec(path, "CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada');");

    mrt__store *store = (mrt__store *)0x1;
    mrt_status rc = mrt__store_open(path, fresh_err(), &store);
    assert_int_equal(rc, MRT_ERR_STORE_VERSION);
    assert_null(store);
    if (!strstr(errbuf, "not a marlinrt store") || !strstr(errbuf, path))
        fail_msg("unclear message: %s", errbuf);

    /* The other program's database is untouched: no table added, no version set, not switched to WAL. */
    assert_int_equal(read_int_column(path, "SELECT count(*) FROM sqlite_master", NULL, 0), 1);
    assert_int_equal(read_int_column(path, "SELECT count(*) FROM people WHERE name = 'ada'", NULL, 0), 1);
    assert_int_equal(read_int_column(path, "PRAGMA user_version", NULL, 0), 0);
    char mode[32];
    read_int_column(path, "PRAGMA journal_mode", mode, sizeof mode);
    assert_string_equal(mode, "delete");
    free(path);
    free(dir);
}

static void test_store__open_creates_parent_folders(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-mkdir");
    char *nested = mrt_test_path(dir, "a/b/c");
    char *path = mrt_test_path(nested, "cache.db");
    struct stat info;
    assert_int_not_equal(stat(nested, &info), 0);

    mrt__store *store = open_store(path);
    assert_int_equal(stat(nested, &info), 0);
    assert_true(S_ISDIR(info.st_mode));
    test_inputs t;
    random_inputs(&t);
    uint8_t *blob = random_blob(333);
    uint8_t key[16], variant[16];
    put_row(store, &t.in, blob, 333, key, variant);
    mrt__store_close(store);
    assert_int_equal(stat(path, &info), 0);
    assert_true(S_ISREG(info.st_mode));

    /* A file where a folder must go cannot be made into one. */
    char *file_path = mrt_test_path(dir, "plain-file");
    FILE *file = fopen(file_path, "w");
    assert_non_null(file);
    assert_int_equal(fclose(file), 0);
    char *blocked = mrt_test_path(file_path, "x/cache.db");
    mrt__store *none = (mrt__store *)0x1;
    assert_int_equal(mrt__store_open(blocked, fresh_err(), &none), MRT_ERR_STORE);
    assert_null(none);
    if (!strstr(errbuf, blocked))
        fail_msg("message does not name the store: %s", errbuf);

    free(blocked);
    free(file_path);
    free(blob);
    free(path);
    free(nested);
    free(dir);
}

static void test_store__two_connections_see_each_others_rows(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("store-two");
    char *path = mrt_test_path(dir, "cache.db");
    mrt__store *stores[2] = {open_store(path), open_store(path)};

    enum { ROWS = 12 };
    for (int i = 0; i < ROWS; i++) {
        int writer = (int)(mrt_test_rand() % 2);
        test_inputs t;
        random_inputs(&t);
        size_t size = (size_t)random_int(1, 10000);
        uint8_t *blob = random_blob(size);
        uint8_t key[16], variant[16];
        put_row(stores[writer], &t.in, blob, size, key, variant);

        assert_hit(look_up(stores[1 - writer], key, 0), blob, size, key);
        free(blob);
    }
    for (int s = 0; s < 2; s++) {
        mrt_store_summary summary;
        ASSERT_OK(mrt__store_summary(stores[s], &summary, fresh_err()));
        assert_int_equal(summary.cubin_rows, ROWS);
    }
    mrt__store_close(stores[0]);
    mrt__store_close(stores[1]);
    free(path);
    free(dir);
}

/* Rows seen by foreach, in order; stop_after > 0 stops after that many. */
typedef struct row_list {
    int count;
    int stop_after;
    char kernel[16][16];
    int arch[16];
    mrt_config config[16];
} row_list;

static int list_rows_fn(const mrt_cubin_row *row, void *user)
{
    row_list *list = user;
    assert_true(list->count < 16);
    snprintf(list->kernel[list->count], sizeof list->kernel[0], "%s", row->kernel);
    list->arch[list->count] = row->arch;
    list->config[list->count] = row->config;
    list->count++;
    return list->stop_after > 0 && list->count >= list->stop_after;
}

static void test_store__foreach_orders_rows_and_stops(void **state)
{
    (void)state;
    mrt__store *store = open_store(":memory:");
    enum { ROWS = 12 };
    for (int i = 0; i < ROWS; i++) {
        test_inputs t;
        random_inputs(&t);
        snprintf(t.kernel, sizeof t.kernel, "%s", (mrt_test_rand() & 1) ? "marlin_w4a16" : "dequant_w4");
        t.in.arch = (mrt_test_rand() & 1) ? 80 : 90;
        t.in.config.threads = (mrt_test_rand() & 1) ? 128 : 256;
        uint8_t blob[8] = {1, 2, 3, 4, 5, 6, 7, (uint8_t)i};
        uint8_t key[16], variant[16];
        put_row(store, &t.in, blob, sizeof blob, key, variant);
    }

    row_list list;
    memset(&list, 0, sizeof list);
    ASSERT_OK(mrt__store_foreach(store, list_rows_fn, &list, fresh_err()));
    assert_int_equal(list.count, ROWS);
    for (int i = 1; i < ROWS; i++) {
        int order = strcmp(list.kernel[i - 1], list.kernel[i]);
        if (order == 0)
            order = list.arch[i - 1] - list.arch[i];
        if (order == 0)
            order = list.config[i - 1].threads - list.config[i].threads;
        if (order == 0)
            order = list.config[i - 1].thread_m_blocks - list.config[i].thread_m_blocks;
        if (order > 0)
            fail_msg("row %d (%s sm_%d) comes before row %d (%s sm_%d)", i - 1, list.kernel[i - 1],
                     list.arch[i - 1], i, list.kernel[i], list.arch[i]);
    }

    memset(&list, 0, sizeof list);
    list.stop_after = random_int(1, ROWS - 1);
    ASSERT_OK(mrt__store_foreach(store, list_rows_fn, &list, fresh_err()));
    assert_int_equal(list.count, list.stop_after);

    /* The statement was left ready: a full listing still sees every row. */
    memset(&list, 0, sizeof list);
    ASSERT_OK(mrt__store_foreach(store, list_rows_fn, &list, fresh_err()));
    assert_int_equal(list.count, ROWS);
    mrt__store_close(store);
}

static void test_store__bad_arguments_are_refused(void **state)
{
    (void)state;
    mrt__store *store = (mrt__store *)0x1;
    assert_int_equal(mrt__store_open(NULL, fresh_err(), &store), MRT_ERR_INVALID_ARGUMENT);
    assert_null(store);
    assert_int_equal(mrt__store_open(":memory:", fresh_err(), NULL), MRT_ERR_INVALID_ARGUMENT);

    store = open_store(":memory:");
    test_inputs t;
    random_inputs(&t);
    uint8_t key[16], variant[16];
    mrt__cubin_key(&t.in, key, variant);
    uint8_t blob[4] = {1, 2, 3, 4};
    assert_int_equal(mrt__store_put(store, key, variant, &t.in, "f", 1.0, NULL, 4, fresh_err()),
                     MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt__store_put(store, key, variant, &t.in, "f", 1.0, blob, 0, fresh_err()),
                     MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt__store_put(store, key, variant, &t.in, NULL, 1.0, blob, 4, fresh_err()),
                     MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt__store_put(store, key, variant, &t.in, "", 1.0, blob, 4, fresh_err()),
                     MRT_ERR_INVALID_ARGUMENT);
    t.in.kernel = NULL;
    assert_int_equal(mrt__store_put(store, key, variant, &t.in, "f", 1.0, blob, 4, fresh_err()),
                     MRT_ERR_INVALID_ARGUMENT);
    void *got = NULL;
    size_t size = 0;
    char *entry = NULL;
    assert_int_equal(mrt__store_get(store, key, &got, &size, &entry, NULL, fresh_err()), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt__store_get_variant(store, variant, NULL, &size, &entry, NULL, fresh_err()),
                     MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt__store_foreach(store, NULL, NULL, fresh_err()), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt__store_summary(store, NULL, fresh_err()), MRT_ERR_INVALID_ARGUMENT);

    /* Nothing was written by the refused calls. */
    mrt_store_summary summary;
    ASSERT_OK(mrt__store_summary(store, &summary, fresh_err()));
    assert_int_equal(summary.cubin_rows, 0);
    mrt__store_close(store);
    mrt__store_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store__round_trip),
        cmocka_unit_test(test_store__key_changes_with_every_input),
        cmocka_unit_test(test_store__key_frames_strings),
        cmocka_unit_test(test_store__key_serialisation_is_pinned),
        cmocka_unit_test(test_store__key_hex_is_lower_case),
        cmocka_unit_test(test_store__corrupt_blob_is_reported_then_replaced),
        cmocka_unit_test(test_store__hits_update_hit_count_and_last_used),
        cmocka_unit_test(test_store__get_variant_prefers_newest_nvrtc),
        cmocka_unit_test(test_store__reopen_keeps_rows),
        cmocka_unit_test(test_store__unknown_schema_version_is_refused),
        cmocka_unit_test(test_store__non_database_file_is_refused),
        cmocka_unit_test(test_store__foreign_database_is_refused),
        cmocka_unit_test(test_store__open_creates_parent_folders),
        cmocka_unit_test(test_store__two_connections_see_each_others_rows),
        cmocka_unit_test(test_store__foreach_orders_rows_and_stops),
        cmocka_unit_test(test_store__bad_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
