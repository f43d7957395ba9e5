/*
 * Tuning records in the store (cache/tuning.c): the tables tuning_device, tuning_timing and
 * tuning_winner of the schema in cache/store.c. Private.
 *
 * A statement is prepared for each call rather than kept: these run once per shape and M
 * bucket per context (a winner lookup) or once per configuration timed, never per launch.
 */
#ifndef MRT_CACHE_TUNING_H
#define MRT_CACHE_TUNING_H

#include <stdint.h>

#include "store.h"

/* What every tuning row of one problem shares. */
typedef struct mrt__tuning_key {
    const char *fingerprint; /* device fingerprint, 16 hex digits */
    const char *kernel;      /* e.g. "marlin_w4a16" */
    const char *dtype;       /* activation type, "f16" */
    int group_size;          /* as the caller gave it: -1, 32, 64, 128 */
    int64_t n, k;
} mrt__tuning_key;

/* One configuration timed at one M (a tuning_timing row). */
typedef struct mrt__tuning_timing {
    int64_t m;
    mrt_config config;
    uint64_t source_hash; /* XXH3-64 of the kernel source timed */
    double median_us;
    double spread_us;     /* interquartile range */
    int samples;          /* timed batches */
    int64_t measured_at;  /* Unix seconds; 0 when writing means now */
} mrt__tuning_timing;

/* The winner of one M bucket (a tuning_winner row). */
typedef struct mrt__tuning_winner {
    int64_t m_bucket;
    int64_t m;               /* the M it was measured at */
    mrt_config config;
    uint64_t source_hash;
    double median_us, spread_us;
    int64_t candidates;      /* size of the candidate list the tune worked through */
    uint64_t candidate_set;  /* mrt__tune_candidate_set_hash of that list */
    int64_t tried;           /* candidates timed or found unusable */
    int64_t decided_at;      /* Unix seconds; 0 when writing means now */
} mrt__tuning_winner;

/* Insert or replace the timing row of (key, m, config). A store opened read-only writes nothing:
 * MRT_OK with *written = 0 (written may be NULL). */
mrt_status mrt__tuning_put_timing(mrt__store *store, const mrt__tuning_key *key, const mrt__tuning_timing *timing,
                                  int *written, mrt__err *err);

/* Every timing row of (key, m) measured with source_hash, in a malloc'd array (*rows NULL when
 * there is none); the caller frees it. */
mrt_status mrt__tuning_get_timings(mrt__store *store, const mrt__tuning_key *key, int64_t m, uint64_t source_hash,
                                   mrt__tuning_timing **rows, size_t *count, mrt__err *err);

/* Record the device's facts (tuning_device) and the winner in one transaction, replacing the
 * bucket's previous winner. Read-only: MRT_OK with *written = 0. */
mrt_status mrt__tuning_put_winner(mrt__store *store, const mrt__tuning_key *key, const mrt_device_info *device,
                                  const mrt__tuning_winner *winner, int *written, mrt__err *err);

/* The winner of (key, m_bucket) recorded with source_hash: *found 1 and *winner filled, or
 * *found 0. A winner of another kernel source is not found: it was measured on other code. */
mrt_status mrt__tuning_get_winner(mrt__store *store, const mrt__tuning_key *key, int64_t m_bucket,
                                  uint64_t source_hash, mrt__tuning_winner *winner, int *found, mrt__err *err);

/* Number of timing rows of key at any M and source (tests and tools). */
mrt_status mrt__tuning_count_timings(mrt__store *store, const mrt__tuning_key *key, int64_t *count, mrt__err *err);

#endif /* MRT_CACHE_TUNING_H */
