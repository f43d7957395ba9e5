/*
 * The autotuner: candidate lists and their pruning, M buckets, the tie-break, the tuning
 * records in the store and the winner cache (everywhere, with fake devices and a fake timer);
 * tuning, first-use tuning and dispatch on a GPU.
 */
#include "helpers.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "cache/tuning.h"
#include "runtime/context.h"
#include "runtime/tune.h"

#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

/* ------------------------------------------------------------------------- */
/* Fakes                                                                      */
/* ------------------------------------------------------------------------- */

/* Devices as the driver describes them (shared memory is the opt-in limit per block). */
static mrt_device_info fake_device(const char *name, int cc_major, int cc_minor, int sms, int smem, int l2_mb)
{
    mrt_device_info info;
    memset(&info, 0, sizeof info);
    snprintf(info.name, sizeof info.name, "%s", name);
    info.cc_major = cc_major;
    info.cc_minor = cc_minor;
    info.sm_count = sms;
    info.max_smem_optin = smem;
    info.l2_bytes = l2_mb << 20;
    info.memory_clock_khz = 2619000;
    info.driver_version = 13000;
    return info;
}

static mrt_device_info h200(void)
{
    return fake_device("NVIDIA H200", 9, 0, 132, 232448, 60);
}

static mrt_device_info a100(void)
{
    return fake_device("NVIDIA A100-SXM4-80GB", 8, 0, 108, 166912, 40);
}

static mrt_device_info rtx3090(void)
{
    return fake_device("NVIDIA GeForce RTX 3090", 8, 6, 82, 101376, 6);
}

static mrt_device_info l4(void)
{
    return fake_device("NVIDIA L4", 8, 9, 58, 101376, 48);
}

/* A context whose device is already "open" with the given facts: every call that only needs
 * the device's description (selection, winners, candidates, tuning with a fake timer) works
 * without a GPU. Nothing may launch on it: it has no driver. */
static mrt_context *fake_device_context(const char *store_path, const mrt_device_info *dev, uint32_t flags)
{
    mrt_context *ctx = mrt_test_context(store_path, flags);
    ctx->device_tried = 1;
    ctx->device_status = MRT_OK;
    ctx->info = *dev;
    return ctx;
}

/* A timer that makes up a repeatable time per configuration and counts its calls. */
typedef struct fake_timer {
    int calls;
    mrt_config fastest; /* gets 1 us; the others 10 us plus a spread by their fields */
    int have_fastest;
    int sleep_ms;       /* wall time each measurement takes, for budget tests */
} fake_timer;

static double fake_time(const fake_timer *t, const mrt_config *cfg)
{
    if (t->have_fastest && mrt__tune_config_order(cfg, &t->fastest) == 0)
        return 1.0;
    return 10.0 + cfg->threads / 128.0 + cfg->thread_m_blocks * 0.7 + cfg->thread_n_blocks * 0.3 +
           cfg->thread_k_blocks * 0.11 + cfg->stages * 0.05;
}

static mrt_status fake_measure(void *user, const mrt_config *cfg, double best_us, mrt__timing *out)
{
    (void)best_us;
    fake_timer *t = user;
    t->calls++;
    if (t->sleep_ms) {
        struct timespec ts = {0, (long)t->sleep_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    memset(out, 0, sizeof *out);
    out->median_us = fake_time(t, cfg);
    out->q1_us = out->median_us - 0.001;
    out->q3_us = out->median_us + 0.001;
    out->min_us = out->q1_us;
    out->batches = 7;
    return MRT_OK;
}

static mrt_config config_of(int threads, int tmb, int tnb, int tkb, int stages, int group_blocks)
{
    mrt_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = threads;
    cfg.thread_m_blocks = tmb;
    cfg.thread_n_blocks = tnb;
    cfg.thread_k_blocks = tkb;
    cfg.stages = stages;
    cfg.group_blocks = group_blocks;
    return cfg;
}

static void format_config(const mrt_config *cfg, char *buf, size_t size)
{
    snprintf(buf, size, "t%d.m%d.n%d.k%d.s%d.g%d", cfg->threads, cfg->thread_m_blocks, cfg->thread_n_blocks,
             cfg->thread_k_blocks, cfg->stages, cfg->group_blocks);
}

/* The candidate list, malloc'd. */
static mrt_config *candidates_of(const mrt_device_info *dev, int64_t m, int64_t n, int64_t k, int group,
                                 size_t *count, size_t pruned[MRT_PRUNE_COUNT])
{
    size_t total = 0;
    mrt__tune_candidates(dev, m, n, k, group, NULL, 0, &total, NULL);
    mrt_config *list = calloc(total ? total : 1, sizeof *list);
    assert_non_null(list);
    size_t again = 0;
    mrt__tune_candidates(dev, m, n, k, group, list, total, &again, pruned);
    assert_int_equal(again, total);
    *count = total;
    return list;
}

static int contains(const mrt_config *list, size_t count, const mrt_config *cfg)
{
    for (size_t i = 0; i < count; i++)
        if (mrt__tune_config_order(&list[i], cfg) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Pure pieces                                                                */
/* ------------------------------------------------------------------------- */

static void test_tune__m_bucket(void **state)
{
    (void)state;
    const int64_t cases[][2] = {
        {-5, 0},  {0, 0},     {1, 1},     {2, 2},       {3, 4},       {4, 4},        {5, 8},
        {8, 8},   {9, 16},    {16, 16},   {17, 32},     {33, 64},     {64, 64},      {65, 128},
        {100, 128}, {129, 256}, {512, 512}, {513, 1024}, {2048, 2048}, {2049, 4096}, {4096, 4096},
        {4097, 4096}, {1 << 20, 4096}, {INT64_MAX, 4096},
    };
    for (size_t i = 0; i < COUNT_OF(cases); i++)
        if (mrt_gemm_m_bucket(cases[i][0]) != cases[i][1])
            fail_msg("bucket of %lld: %lld, expected %lld", (long long)cases[i][0],
                     (long long)mrt_gemm_m_bucket(cases[i][0]), (long long)cases[i][1]);
    /* Every M lies in its bucket's range: above half the bucket, at most the bucket. */
    for (int64_t m = 1; m <= MRT_TUNE_M_BUCKET_MAX; m++) {
        int64_t b = mrt_gemm_m_bucket(m);
        assert_true(m <= b && (b == 1 || m > b / 2));
    }
}

static void test_tune__fingerprint_covers_each_field(void **state)
{
    (void)state;
    mrt_device_info base = h200();
    const uint64_t fp = mrt_device_fingerprint(&base);
    assert_int_not_equal(fp, 0);
    mrt_device_info same = base;
    /* Facts outside the fingerprint, and bytes after the name's NUL, do not change it. */
    same.max_smem_optin = 1;
    same.driver_version = 12000;
    same.ordinal = 3;
    same.name[sizeof same.name - 1] = 'x';
    assert_true(mrt_device_fingerprint(&same) == fp);

    mrt_device_info other[6];
    for (size_t i = 0; i < COUNT_OF(other); i++)
        other[i] = base;
    snprintf(other[0].name, sizeof other[0].name, "NVIDIA H100 80GB HBM3");
    other[1].cc_minor = 1;
    other[2].cc_major = 10;
    other[3].sm_count = 114;
    other[4].l2_bytes = 50 << 20;
    other[5].memory_clock_khz = 2619001;
    for (size_t i = 0; i < COUNT_OF(other); i++) {
        if (mrt_device_fingerprint(&other[i]) == fp)
            fail_msg("changing field %zu kept the fingerprint", i);
        for (size_t j = 0; j < i; j++)
            assert_true(mrt_device_fingerprint(&other[i]) != mrt_device_fingerprint(&other[j]));
    }
    assert_true(mrt_device_fingerprint(NULL) == 0);
    char hex[17];
    mrt__tune_fingerprint_hex(UINT64_C(0x00ab), hex);
    assert_string_equal(hex, "00000000000000ab");
}

/* Every candidate list, on several devices, shapes, M and group sizes, holds only
 * configurations the kernel accepts that fit the shape and the device, once each, with the
 * heuristic's pick first. */
static void test_tune__candidates_fit_shape_and_device(void **state)
{
    (void)state;
    const mrt_device_info devices[] = {h200(), a100(), rtx3090(), l4()};
    const int64_t shapes[][2] = {{64, 64},     {128, 192},   {4096, 4096},  {1344, 704},
                                 {2880, 960},  {192, 4160},  {8192, 57344}, {28672, 8192}};
    const int64_t ms[] = {1, 3, 16, 17, 33, 48, 64, 65, 96, 128, 256, 512, 4097};
    const int groups[] = {-1, 32, 64, 128};
    size_t lists = 0, largest = 0, wgmma_seen = 0;
    /* Every candidate is in the tuning space `warm` compiles. */
    mrt_config *space[4] = {NULL};
    size_t space_count[4] = {0};
    for (size_t g = 0; g < COUNT_OF(groups); g++) {
        assert_int_equal(mrt_gemm_tune_space(groups[g], NULL, 0, &space_count[g]), MRT_OK);
        space[g] = calloc(space_count[g], sizeof *space[g]);
        assert_int_equal(mrt_gemm_tune_space(groups[g], space[g], space_count[g], &space_count[g]), MRT_OK);
    }
    /* 248 mma.sync configurations and 16 wgmma ones per group_blocks value. */
    assert_int_equal(space_count[0], 248 + 16);
    assert_int_equal(space_count[3], 2 * (248 + 16));
    size_t bad_count = 0;
    assert_int_equal(mrt_gemm_tune_space(48, NULL, 0, &bad_count), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_tune_space(128, NULL, 1, &bad_count), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_tune_space(128, NULL, 0, NULL), MRT_ERR_INVALID_ARGUMENT);
    for (size_t d = 0; d < COUNT_OF(devices); d++)
        for (size_t s = 0; s < COUNT_OF(shapes); s++)
            for (size_t g = 0; g < COUNT_OF(groups); g++) {
                const int64_t k = shapes[s][0], n = shapes[s][1];
                const int group = groups[g];
                if (group > 0 && k % group != 0)
                    continue;
                for (size_t mi = 0; mi < COUNT_OF(ms); mi++) {
                    const int64_t m = ms[mi];
                    const mrt_device_info *dev = &devices[d];
                    size_t count = 0, pruned[MRT_PRUNE_COUNT];
                    mrt_config *list = candidates_of(dev, m, n, k, group, &count, pruned);
                    char where[1600];
                    snprintf(where, sizeof where, "%s k=%lld n=%lld m=%lld g=%d", dev->name, (long long)k,
                             (long long)n, (long long)m, group);
                    if (count == 0)
                        fail_msg("%s: no candidate", where);
                    size_t sum = 0;
                    for (int r = 0; r < MRT_PRUNE_COUNT; r++)
                        sum += pruned[r];
                    assert_int_equal(sum, 2 * 4 * 3 * 3 * MRT_TUNE_STAGE_COUNT + 2 * 2 * 3 * 2 * 2);
                    assert_true(pruned[MRT_PRUNE_KEEP] == count);

                    mrt_config heuristic;
                    mrt__marlin_heuristic(m, n, k, group, dev, &heuristic);
                    if (mrt__marlin_config_fits(NULL, &heuristic, n, k, group, dev) == MRT_OK &&
                        mrt__tune_config_order(&list[0], &heuristic) != 0)
                        fail_msg("%s: the heuristic's pick is not first", where);
                    const int max_tmb = m > 64 ? 4 : (int)((m + 15) / 16);
                    for (size_t i = 0; i < count; i++) {
                        char name[64];
                        format_config(&list[i], name, sizeof name);
                        if (!contains(space[g], space_count[g], &list[i]))
                            fail_msg("%s: %s is not in mrt_gemm_tune_space", where, name);
                        if (mrt__marlin_validate(&list[i], NULL) != MRT_OK)
                            fail_msg("%s: %s is not a valid configuration", where, name);
                        if (mrt__marlin_config_fits(NULL, &list[i], n, k, group, dev) != MRT_OK)
                            fail_msg("%s: %s does not fit the shape or the device", where, name);
                        if (n % (16 * list[i].thread_n_blocks) || k % (16 * list[i].thread_k_blocks) ||
                            mrt__marlin_smem_bytes(&list[i]) > dev->max_smem_optin)
                            fail_msg("%s: %s does not divide the shape or exceeds shared memory", where, name);
                        for (size_t j = 0; j < i; j++)
                            if (mrt__tune_config_order(&list[i], &list[j]) == 0)
                                fail_msg("%s: %s listed twice", where, name);
                        if (i == 0 && mrt__tune_config_order(&list[0], &heuristic) == 0)
                            continue; /* the rules do not apply to the heuristic's pick */
                        int in_set = 0;
                        for (int st = 0; st < MRT_TUNE_STAGE_COUNT; st++)
                            in_set |= list[i].stages == mrt__tune_stages[st];
                        if (!in_set)
                            fail_msg("%s: %s has stages outside the set", where, name);
                        if (list[i].thread_m_blocks >= 8) {
                            /* The wgmma kernel: sm_90 only, past 64 rows (past 16 for the
                             * tiles that run narrow chunks), 256 tokens past 128. */
                            if (!(dev->cc_major == 9 && dev->cc_minor == 0))
                                fail_msg("%s: %s is the wgmma kernel on sm_%d%d", where, name, dev->cc_major,
                                         dev->cc_minor);
                            const int narrow = list[i].threads == 256 && list[i].thread_n_blocks == 16 &&
                                               list[i].thread_m_blocks == 8;
                            if (m <= 16 || (m <= 64 && !narrow) || (list[i].thread_m_blocks == 16 && m <= 128))
                                fail_msg("%s: %s has more tokens per tile than M needs", where, name);
                            wgmma_seen++;
                            continue;
                        }
                        if (list[i].thread_m_blocks > max_tmb)
                            fail_msg("%s: %s has more m-blocks than M needs", where, name);
                        if (256 * list[i].thread_m_blocks * list[i].thread_n_blocks / list[i].threads > 64)
                            fail_msg("%s: %s holds more than 64 accumulators per thread", where, name);
                    }
                    lists++;
                    if (count > largest)
                        largest = count;
                    free(list);
                }
            }
    for (size_t g = 0; g < COUNT_OF(groups); g++)
        free(space[g]);
    /* The H200's lists past 64 rows do offer the wgmma kernel. */
    assert_true(wgmma_seen > 0);
    fprintf(stderr, "[tune] %zu candidate lists checked, the largest %zu long, %zu wgmma candidates\n", lists,
            largest, wgmma_seen);
}

/* Each pruning rule, on a case where it must act, and the configurations the v0 exploration on
 * an H200 found fastest (docs/performance.md) all survive it. */
static void test_tune__pruning_rules(void **state)
{
    (void)state;
    const mrt_device_info dev = h200();
    size_t count = 0;
    mrt_config *list;

    /* M-blocks: M = 1 needs one; M = 64 keeps 1, 2 and 4 (3 cuts it into as many chunks as 2);
     * M = 96 keeps 1, 2, 3 (4 makes as many chunks as 3), plus the heuristic's pick first (the
     * wgmma kernel's 128 x 128 tile there since docs/performance.md v16, 4 m-blocks before). Past
     * 16 rows the wgmma kernel's 8 too (one 128-token tile, run 32 or 64 wide up to 64 rows;
     * K-split, its 4096 x 4096 tiles fill the SMs), never its 16 up to 128 rows. M = 128
     * keeps 1..4 (8, 4, 3, 2 chunks) and 8; M = 129 drops 4 (3 chunks, as 3 makes) and adds
     * 16. */
    const struct {
        int64_t m;
        int wanted; /* bit tmb set for each m-block count expected */
    } mblock_cases[] = {{1, 1 << 1},
                        {16, 1 << 1},
                        {17, (1 << 1) | (1 << 2) | (1 << 8)},
                        {64, (1 << 1) | (1 << 2) | (1 << 4) | (1 << 8)},
                        {96, (1 << 1) | (1 << 2) | (1 << 3) | (1 << 8)},
                        {128, (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 8)},
                        {129, (1 << 1) | (1 << 2) | (1 << 3) | (1 << 8) | (1 << 16)}};
    for (size_t c = 0; c < COUNT_OF(mblock_cases); c++) {
        list = candidates_of(&dev, mblock_cases[c].m, 4096, 4096, 128, &count, NULL);
        int seen = 0;
        for (size_t i = 1; i < count; i++)
            seen |= 1 << list[i].thread_m_blocks;
        if (seen != mblock_cases[c].wanted)
            fail_msg("m = %lld: m-block counts 0x%x, expected 0x%x", (long long)mblock_cases[c].m, seen,
                     mblock_cases[c].wanted);
        free(list);
    }
    list = candidates_of(&dev, 96, 4096, 4096, 128, &count, NULL);
    assert_int_equal(list[0].thread_m_blocks, 8);
    assert_int_equal(list[0].thread_n_blocks, 8);
    free(list);

    /* Registers: 128 threads never carry 3 or 4 m-blocks of 256 columns. */
    size_t pruned[MRT_PRUNE_COUNT];
    list = candidates_of(&dev, 256, 8192, 8192, 128, &count, pruned);
    assert_true(pruned[MRT_PRUNE_REGISTERS] > 0);
    for (size_t i = 0; i < count; i++)
        assert_false(list[i].threads == 128 && list[i].thread_m_blocks >= 3 && list[i].thread_n_blocks == 16);
    free(list);

    /* Shared memory: on a 99 KiB device the 4-block 256 x 256 tile fits at no depth. */
    const mrt_device_info small = rtx3090();
    list = candidates_of(&small, 512, 8192, 8192, 128, &count, pruned);
    assert_true(pruned[MRT_PRUNE_SMEM] > 0);
    assert_false(contains(list, count, &(mrt_config){256, 4, 16, 16, 3, 8, {0, 0}}));
    free(list);

    /* Occupancy: a 1024 x 1024 layer in 256 x 256 tiles makes 16 tiles for 132 SMs, while
     * 64 x 64 tiles make 256: the large tiles go, the small stay. */
    list = candidates_of(&dev, 1, 1024, 1024, 128, &count, pruned);
    assert_true(pruned[MRT_PRUNE_OCCUPANCY] > 0);
    for (size_t i = 1; i < count; i++)
        assert_false(list[i].thread_n_blocks == 16 && list[i].thread_k_blocks == 16);
    assert_true(contains(list, count, &(mrt_config){128, 1, 4, 4, 3, 8, {0, 0}}));

    /* Stages: those 256 tiles give each of 132 blocks a stripe of 2, which a 3-deep ring holds
     * whole; deeper rings of that tile are left out. */
    assert_true(pruned[MRT_PRUNE_STAGES] > 0);
    assert_false(contains(list, count, &(mrt_config){128, 1, 4, 4, 4, 8, {0, 0}}));
    assert_false(contains(list, count, &(mrt_config){128, 1, 4, 4, 8, 8, {0, 0}}));
    free(list);

    /* The exploration's winners (and runners-up) are all candidates. */
    const struct {
        int64_t k, n, m;
        mrt_config cfg;
    } winners[] = {
        {4096, 4096, 1, {128, 1, 4, 8, 8, 8, {0, 0}}},    {4096, 4096, 16, {128, 1, 4, 16, 6, 8, {0, 0}}},
        {4096, 4096, 32, {256, 1, 8, 8, 4, 8, {0, 0}}},   {4096, 4096, 64, {256, 1, 8, 8, 4, 8, {0, 0}}},
        {8192, 8192, 1, {128, 1, 4, 16, 6, 8, {0, 0}}},   {8192, 8192, 32, {256, 2, 8, 8, 4, 8, {0, 0}}},
        {8192, 8192, 64, {256, 4, 8, 8, 4, 8, {0, 0}}},   {8192, 8192, 64, {128, 4, 8, 8, 4, 8, {0, 0}}},
        {8192, 57344, 1, {256, 1, 16, 8, 4, 8, {0, 0}}},  {8192, 57344, 1, {256, 1, 16, 16, 3, 8, {0, 0}}},
        {8192, 57344, 64, {256, 4, 16, 8, 3, 8, {0, 0}}},
    };
    for (size_t i = 0; i < COUNT_OF(winners); i++) {
        list = candidates_of(&dev, winners[i].m, winners[i].n, winners[i].k, 128, &count, NULL);
        if (!contains(list, count, &winners[i].cfg)) {
            char name[64];
            format_config(&winners[i].cfg, name, sizeof name);
            fail_msg("k=%lld n=%lld m=%lld: %s was pruned", (long long)winners[i].k, (long long)winners[i].n,
                     (long long)winners[i].m, name);
        }
        free(list);
    }

    /* Order: after the heuristic's pick, the others by how many fields differ from it. */
    list = candidates_of(&dev, 1, 4096, 4096, 128, &count, NULL);
    int last = 0;
    for (size_t i = 1; i < count; i++) {
        int d = (list[i].threads != list[0].threads) + (list[i].thread_m_blocks != list[0].thread_m_blocks) +
                (list[i].thread_n_blocks != list[0].thread_n_blocks) +
                (list[i].thread_k_blocks != list[0].thread_k_blocks) + (list[i].stages != list[0].stages);
        assert_true(d >= 1 && d >= last);
        last = d;
    }
    free(list);
}

static void shuffle(mrt_tune_result *r, size_t count)
{
    for (size_t i = count; i > 1; i--) {
        size_t j = (size_t)(mrt_test_rand() % i);
        mrt_tune_result t = r[i - 1];
        r[i - 1] = r[j];
        r[j] = t;
    }
}

static void test_tune__tie_break_is_order_independent(void **state)
{
    (void)state;
    /* Clear winner: the fastest by more than the band wins whatever the order. */
    mrt_tune_result base[12];
    memset(base, 0, sizeof base);
    for (size_t i = 0; i < COUNT_OF(base); i++) {
        base[i].config = config_of(i % 2 ? 128 : 256, 1 + (int)(i % 3), 4 << (i % 3), 8, 3 + (int)(i / 3), 8);
        base[i].median_us = 20.0 + (double)i;
        base[i].spread_us = 0.05;
    }
    base[7].median_us = 10.0;
    const mrt_config clear = base[7].config;
    /* Near-ties: within 2% of 9.0 (and its spread), the fixed order (fewest stages first) decides. */
    mrt_tune_result ties[5];
    memset(ties, 0, sizeof ties);
    ties[0].config = config_of(256, 1, 8, 8, 6, 8), ties[0].median_us = 9.00;
    ties[1].config = config_of(256, 1, 8, 8, 4, 8), ties[1].median_us = 9.15;
    ties[2].config = config_of(128, 1, 4, 8, 4, 8), ties[2].median_us = 9.10; /* fewer threads at 4 stages: wins */
    ties[3].config = config_of(128, 1, 4, 8, 3, 8), ties[3].median_us = 9.30; /* outside the band */
    ties[4].config = config_of(256, 1, 16, 8, 8, 8), ties[4].median_us = 9.05;
    for (size_t i = 0; i < COUNT_OF(ties); i++)
        ties[i].spread_us = 0.01;

    for (int round = 0; round < 50; round++) {
        mrt_tune_result r[COUNT_OF(base)];
        memcpy(r, base, sizeof r);
        shuffle(r, COUNT_OF(r));
        mrt__tune_decide(r, COUNT_OF(r), 0.02);
        assert_int_equal(mrt__tune_config_order(&r[0].config, &clear), 0);
        assert_int_equal(r[0].tied, 1);
        for (size_t i = 1; i < COUNT_OF(r); i++) {
            assert_int_equal(r[i].tied, 0);
            if (i > 1)
                assert_true(r[i - 1].median_us <= r[i].median_us);
        }

        mrt_tune_result t[COUNT_OF(ties)];
        memcpy(t, ties, sizeof t);
        shuffle(t, COUNT_OF(t));
        mrt__tune_decide(t, COUNT_OF(t), 0.02);
        if (mrt__tune_config_order(&t[0].config, &ties[2].config) != 0) {
            char name[64];
            format_config(&t[0].config, name, sizeof name);
            fail_msg("round %d: winner %s, expected t128.m1.n4.k8.s4.g8", round, name);
        }
        size_t tied = 0;
        for (size_t i = 0; i < COUNT_OF(t); i++)
            tied += t[i].tied != 0;
        assert_int_equal(tied, 4);
    }
    /* A wide spread of the best widens the band past the relative noise (10.3 is within the
     * best's spread of 0.35, not within 2% of 10.0)... */
    mrt_tune_result wide[2];
    memset(wide, 0, sizeof wide);
    wide[0].config = config_of(256, 1, 8, 8, 6, 8), wide[0].median_us = 10.0, wide[0].spread_us = 0.35;
    wide[1].config = config_of(256, 1, 8, 8, 3, 8), wide[1].median_us = 10.3;
    mrt__tune_decide(wide, 2, 0.02);
    assert_int_equal(wide[0].config.stages, 3);
    assert_true(wide[1].tied);
    /* ...but to twice the relative band at most: a spread of 20% does not make a configuration
     * 5% or 15% slower a winner (3.5% slower still ties). */
    mrt_tune_result noisy[3];
    memset(noisy, 0, sizeof noisy);
    noisy[0].config = config_of(256, 1, 8, 8, 6, 8), noisy[0].median_us = 10.0, noisy[0].spread_us = 2.0;
    noisy[1].config = config_of(256, 1, 8, 8, 3, 8), noisy[1].median_us = 11.5;
    noisy[2].config = config_of(256, 1, 8, 8, 4, 8), noisy[2].median_us = 10.5;
    mrt__tune_decide(noisy, 3, 0.02);
    assert_int_equal(noisy[0].config.stages, 6);
    assert_false(noisy[1].tied);
    assert_false(noisy[2].tied);
    noisy[0].config = config_of(256, 1, 8, 8, 6, 8), noisy[0].median_us = 10.0, noisy[0].spread_us = 2.0;
    noisy[1].config = config_of(256, 1, 8, 8, 3, 8), noisy[1].median_us = 10.35, noisy[1].spread_us = 0;
    noisy[2].config = config_of(256, 1, 8, 8, 4, 8), noisy[2].median_us = 12.0, noisy[2].spread_us = 0;
    mrt__tune_decide(noisy, 3, 0.02);
    assert_int_equal(noisy[0].config.stages, 3);
    mrt__tune_decide(wide, 0, 0.02); /* nothing to do, no crash */
}

static void test_tune__options_and_arguments_checked(void **state)
{
    (void)state;
    mrt_tune_options opts;
    mrt_tune_options_init(&opts);
    assert_int_equal(opts.warmup, 3);
    assert_int_equal(opts.batches, 20);
    assert_true(fabs(opts.noise - 0.02) < 1e-12);
    assert_int_equal(opts.budget_ms, 0);
    assert_int_equal(opts.flags, 0);
    mrt_tune_options_init(NULL);

    /* Offline: every check must come before the device, which an offline context refuses. */
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    mrt_tune_result results[4];
    size_t count = 99;
    mrt_config cfg;
    assert_int_equal(mrt_gemm_tune(NULL, 1, 256, 256, 128, NULL, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 128, NULL, results, 4, NULL), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 128, NULL, NULL, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_tune(ctx, 0, 256, 256, 128, NULL, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(mrt_errmsg(ctx), "m = 0"));
    assert_int_equal(mrt_gemm_tune(ctx, 1, 100, 256, 128, NULL, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 48, NULL, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    mrt_tune_options o = opts;
    o.batches = 0;
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 128, &o, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(mrt_errmsg(ctx), "batches"));
    o = opts;
    o.warmup = -1;
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 128, &o, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    o = opts;
    o.noise = 2;
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 128, &o, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    o.noise = NAN;
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 128, &o, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    o = opts;
    o.flags = 1u << 7;
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 128, &o, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    o = opts;
    o.reserved[2] = 1;
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 128, &o, results, 4, &count), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(count, 0);
    /* Valid arguments: the offline context is what stops it. */
    assert_int_equal(mrt_gemm_tune(ctx, 1, 256, 256, 128, &opts, results, 4, &count), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_errmsg(ctx), "MRT_CTX_OFFLINE"));

    assert_int_equal(mrt_gemm_winner(ctx, 1, 256, 256, 128, NULL), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_winner(ctx, 1, 256, 192, 128, &cfg), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_winner(ctx, 1, 256, 256, 128, &cfg), MRT_ERR_UNSUPPORTED);
    assert_int_equal(mrt_gemm_candidates_for(ctx, 1, 256, 256, 128, NULL, 0, NULL), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_candidates_for(ctx, 1, 256, 256, 128, NULL, 3, &count), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_candidates_for(ctx, 1, 256, 256, 128, NULL, 0, &count), MRT_ERR_UNSUPPORTED);
    mrt_tune_stats stats;
    assert_int_equal(mrt_tune_stats_get(NULL, &stats), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_tune_stats_get(ctx, NULL), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_tune_stats_get(ctx, &stats), MRT_OK);
    assert_int_equal(stats.tunes, 0);
    mrt_context_destroy(ctx);

    /* Through a fake device the public calls work without a GPU. */
    const mrt_device_info dev = h200();
    ctx = fake_device_context(NULL, &dev, MRT_CTX_NO_STORE);
    size_t total = 0, again = 0;
    assert_int_equal(mrt_gemm_candidates_for(ctx, 1, 4096, 4096, 128, NULL, 0, &total), MRT_OK);
    assert_true(total > 10);
    mrt_config *list = calloc(total, sizeof *list);
    assert_int_equal(mrt_gemm_candidates_for(ctx, 1, 4096, 4096, 128, list, total, &again), MRT_OK);
    assert_int_equal(again, total);
    assert_int_equal(mrt_gemm_select(ctx, 1, 4096, 4096, 128, &cfg), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&cfg, &list[0]), 0);
    free(list);
    assert_int_equal(mrt_gemm_winner(ctx, 1, 4096, 4096, 128, &cfg), MRT_ERR_NOT_FOUND);
    mrt_context_destroy(ctx);
}

static void test_tune__env_sets_autotune_flag(void **state)
{
    (void)state;
    const char *old = getenv("MARLINRT_AUTOTUNE");
    char *saved = old ? strdup(old) : NULL;
    setenv("MARLINRT_AUTOTUNE", "1", 1);
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE);
    assert_true(ctx->opts.flags & MRT_CTX_AUTOTUNE);
    mrt_context_destroy(ctx);
    setenv("MARLINRT_AUTOTUNE", "0", 1);
    ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE);
    assert_false(ctx->opts.flags & MRT_CTX_AUTOTUNE);
    mrt_context_destroy(ctx);
    /* The caller's flag stands without the variable. */
    unsetenv("MARLINRT_AUTOTUNE");
    ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_AUTOTUNE);
    assert_true(ctx->opts.flags & MRT_CTX_AUTOTUNE);
    mrt_context_destroy(ctx);
    if (saved) {
        setenv("MARLINRT_AUTOTUNE", saved, 1);
        free(saved);
    }
}

/* ------------------------------------------------------------------------- */
/* Records in the store                                                       */
/* ------------------------------------------------------------------------- */

static char *temp_store(const char *tag)
{
    char *dir = mrt_test_tempdir(tag);
    char *path = mrt_test_path(dir, "cache.db");
    free(dir);
    return path;
}

static mrt__tuning_key key_for(const mrt_device_info *dev, int64_t n, int64_t k, int group, char fingerprint[17])
{
    mrt__tune_fingerprint_hex(mrt_device_fingerprint(dev), fingerprint);
    mrt__tuning_key key = {fingerprint, MRT_KERNEL_MARLIN_W4A16, "f16", group, n, k};
    return key;
}

static uint64_t marlin_source_hash(void)
{
    return mrt__kernel_source(mrt__kernel_find(MRT_KERNEL_MARLIN_W4A16))->hash;
}

static void test_tune__store_round_trip(void **state)
{
    (void)state;
    char *path = temp_store("tune-roundtrip");
    const mrt_device_info dev = h200();
    mrt_context *ctx = mrt_test_context(path, 0);
    mrt__err *err = &ctx->err;
    char fp[17];
    const mrt__tuning_key key = key_for(&dev, 4096, 8192, 128, fp);
    const uint64_t source = UINT64_C(0xfedcba9876543210); /* above INT64_MAX: the bits must survive */

    mrt__tuning_timing rows[3];
    for (int i = 0; i < 3; i++) {
        memset(&rows[i], 0, sizeof rows[i]);
        rows[i].m = 16;
        rows[i].config = config_of(256, 1, 8, 4 << i, 4, 8);
        rows[i].source_hash = source;
        rows[i].median_us = 10.0 + i + 0.125;
        rows[i].spread_us = 0.25 * (i + 1);
        rows[i].samples = 20 + i;
        rows[i].measured_at = 1700000000 + i;
        int written = 0;
        assert_int_equal(mrt__tuning_put_timing(ctx->store, &key, &rows[i], &written, err), MRT_OK);
        assert_int_equal(written, 1);
    }
    /* The same configuration again replaces its row. */
    rows[1].median_us = 7.5;
    assert_int_equal(mrt__tuning_put_timing(ctx->store, &key, &rows[1], NULL, err), MRT_OK);
    /* Another M, another source: separate rows, not returned below. */
    mrt__tuning_timing other = rows[0];
    other.m = 32;
    assert_int_equal(mrt__tuning_put_timing(ctx->store, &key, &other, NULL, err), MRT_OK);
    other = rows[2];
    other.source_hash = 1;
    other.config.stages = 6;
    assert_int_equal(mrt__tuning_put_timing(ctx->store, &key, &other, NULL, err), MRT_OK);

    mrt__tuning_timing *got = NULL;
    size_t count = 0;
    assert_int_equal(mrt__tuning_get_timings(ctx->store, &key, 16, source, &got, &count, err), MRT_OK);
    assert_int_equal(count, 3);
    for (size_t i = 0; i < count; i++) {
        const mrt__tuning_timing *want = NULL;
        for (int j = 0; j < 3; j++)
            if (mrt__tune_config_order(&rows[j].config, &got[i].config) == 0)
                want = &rows[j];
        assert_non_null(want);
        assert_true(got[i].median_us == want->median_us);
        assert_true(got[i].spread_us == want->spread_us);
        assert_int_equal(got[i].samples, want->samples);
        assert_int_equal(got[i].measured_at, want->measured_at);
        assert_true(got[i].source_hash == source);
        assert_int_equal(got[i].m, 16);
    }
    free(got);
    int64_t total = 0;
    assert_int_equal(mrt__tuning_count_timings(ctx->store, &key, &total, err), MRT_OK);
    assert_int_equal(total, 5);

    mrt__tuning_winner w;
    memset(&w, 0, sizeof w);
    w.m_bucket = 16;
    w.m = 13;
    w.config = rows[1].config;
    w.source_hash = source;
    w.median_us = 7.5;
    w.spread_us = 0.5;
    w.candidates = 40;
    w.candidate_set = UINT64_C(0x8000000000000001);
    w.tried = 39;
    w.decided_at = 1700000100;
    int written = 0;
    assert_int_equal(mrt__tuning_put_winner(ctx->store, &key, &dev, &w, &written, err), MRT_OK);
    assert_int_equal(written, 1);
    mrt_context_destroy(ctx);

    /* Read back through a new connection. */
    ctx = mrt_test_context(path, 0);
    err = &ctx->err;
    mrt__tuning_winner back;
    int found = 0;
    assert_int_equal(mrt__tuning_get_winner(ctx->store, &key, 16, source, &back, &found, err), MRT_OK);
    assert_int_equal(found, 1);
    assert_int_equal(mrt__tune_config_order(&back.config, &w.config), 0);
    assert_int_equal(back.m_bucket, 16);
    assert_int_equal(back.m, 13);
    assert_true(back.source_hash == source);
    assert_true(back.median_us == 7.5 && back.spread_us == 0.5);
    assert_int_equal(back.candidates, 40);
    assert_true(back.candidate_set == w.candidate_set);
    assert_int_equal(back.tried, 39);
    assert_int_equal(back.decided_at, 1700000100);
    /* Another bucket, another source: nothing. */
    assert_int_equal(mrt__tuning_get_winner(ctx->store, &key, 32, source, &back, &found, err), MRT_OK);
    assert_int_equal(found, 0);
    assert_int_equal(mrt__tuning_get_winner(ctx->store, &key, 16, source + 1, &back, &found, err), MRT_OK);
    assert_int_equal(found, 0);
    /* The device's facts are kept beside the winner. */
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(sqlite3_prepare_v2(mrt__store_db(ctx->store),
                                        "SELECT name, sm_count, l2_bytes FROM tuning_device WHERE fingerprint = ?1",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(stmt, 1, fp, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(stmt, 0), dev.name);
    assert_int_equal(sqlite3_column_int(stmt, 1), 132);
    assert_int_equal(sqlite3_column_int(stmt, 2), 60 << 20);
    sqlite3_finalize(stmt);
    mrt_context_destroy(ctx);
    free(path);
}

/* A winner recorded on one GPU is not used on another: the lookup keys on the fingerprint, so
 * the other GPU finds nothing, runs the heuristic, and a tune there measures everything. */
static void test_tune__fingerprint_change_forces_retune(void **state)
{
    (void)state;
    char *path = temp_store("tune-fingerprint");
    const mrt_device_info dev_a = h200();
    mrt_device_info dev_b = h200();
    dev_b.sm_count = 114; /* same name, fewer SMs: e.g. a partitioned or different SKU */
    const int64_t m = 8, n = 2048, k = 4096;

    mrt_context *a = fake_device_context(path, &dev_a, 0);
    size_t count = 0;
    mrt_config *list = candidates_of(&dev_a, m, n, k, 128, &count, NULL);
    fake_timer timer = {0};
    timer.fastest = list[count - 1]; /* not the heuristic's pick */
    timer.have_fastest = 1;
    mrt__tune_timer t = {fake_measure, &timer};
    mrt_tune_result results[512];
    size_t got = 0;
    assert_int_equal(mrt__tune_run(a, &dev_a, m, n, k, 128, NULL, 0, NULL, &t, 0, results, 512, &got), MRT_OK);
    assert_int_equal(got, count);
    assert_int_equal(timer.calls, (int)count);
    assert_int_equal(mrt__tune_config_order(&results[0].config, &timer.fastest), 0);
    mrt_config cfg;
    assert_int_equal(mrt_gemm_winner(a, m, n, k, 128, &cfg), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&cfg, &timer.fastest), 0);
    mrt_context_destroy(a);

    /* Same GPU, new context: the winner is found, and every M of the bucket gets it. */
    a = fake_device_context(path, &dev_a, 0);
    for (int64_t mm = 5; mm <= 8; mm++) {
        assert_int_equal(mrt_gemm_select(a, mm, n, k, 128, &cfg), MRT_OK);
        assert_int_equal(mrt__tune_config_order(&cfg, &timer.fastest), 0);
    }
    assert_int_equal(mrt_gemm_select(a, 9, n, k, 128, &cfg), MRT_OK); /* bucket 16: none */
    assert_int_not_equal(mrt__tune_config_order(&cfg, &timer.fastest), 0);
    mrt_context_destroy(a);

    /* The other GPU: no winner, the heuristic's pick, and nothing to reuse. */
    mrt_context *b = fake_device_context(path, &dev_b, 0);
    assert_int_equal(mrt_gemm_winner(b, m, n, k, 128, &cfg), MRT_ERR_NOT_FOUND);
    mrt_config heuristic;
    mrt__marlin_heuristic(m, n, k, 128, &dev_b, &heuristic);
    assert_int_equal(mrt_gemm_select(b, m, n, k, 128, &cfg), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&cfg, &heuristic), 0);
    size_t count_b = 0;
    mrt_config *list_b = candidates_of(&dev_b, m, n, k, 128, &count_b, NULL);
    fake_timer timer_b = {0};
    mrt__tune_timer tb = {fake_measure, &timer_b};
    assert_int_equal(mrt__tune_run(b, &dev_b, m, n, k, 128, NULL, 0, NULL, &tb, 0, results, 512, &got), MRT_OK);
    assert_int_equal(timer_b.calls, (int)count_b);
    for (size_t i = 0; i < got; i++)
        assert_int_equal(results[i].reused, 0);
    mrt_tune_stats stats;
    assert_int_equal(mrt_tune_stats_get(b, &stats), MRT_OK);
    assert_int_equal(stats.timings_reused, 0);
    assert_int_equal(stats.configs_timed, count_b);
    free(list_b);
    mrt_context_destroy(b);
    free(list);
    free(path);
}

/* A winner measured on another kernel source is not used either. */
static void test_tune__source_change_hides_winner(void **state)
{
    (void)state;
    char *path = temp_store("tune-source");
    const mrt_device_info dev = a100();
    mrt_context *ctx = fake_device_context(path, &dev, 0);
    char fp[17];
    const mrt__tuning_key key = key_for(&dev, 1024, 1024, 128, fp);
    mrt__tuning_winner w;
    memset(&w, 0, sizeof w);
    w.m_bucket = 1;
    w.m = 1;
    w.config = config_of(128, 1, 4, 4, 3, 8);
    w.source_hash = marlin_source_hash() ^ 1;
    w.median_us = 3;
    assert_int_equal(mrt__tuning_put_winner(ctx->store, &key, &dev, &w, NULL, &ctx->err), MRT_OK);
    mrt_config cfg;
    assert_int_equal(mrt_gemm_winner(ctx, 1, 1024, 1024, 128, &cfg), MRT_ERR_NOT_FOUND);
    mrt_context_destroy(ctx);

    /* The same row with the current source is found; a row naming a configuration that cannot
     * run on the shape is rejected and counted. */
    ctx = fake_device_context(path, &dev, 0);
    w.source_hash = marlin_source_hash();
    assert_int_equal(mrt__tuning_put_winner(ctx->store, &key, &dev, &w, NULL, &ctx->err), MRT_OK);
    w.m_bucket = 2;
    w.config = config_of(256, 1, 16, 16, 3, 8); /* fits 1024 x 1024, valid */
    assert_int_equal(mrt__tuning_put_winner(ctx->store, &key, &dev, &w, NULL, &ctx->err), MRT_OK);
    w.m_bucket = 4;
    w.config = config_of(256, 1, 4, 4, 3, 8); /* 256 threads with a 64 x 64 tile: invalid */
    assert_int_equal(mrt__tuning_put_winner(ctx->store, &key, &dev, &w, NULL, &ctx->err), MRT_OK);
    assert_int_equal(mrt_gemm_winner(ctx, 1, 1024, 1024, 128, &cfg), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&cfg, &(mrt_config){128, 1, 4, 4, 3, 8, {0, 0}}), 0);
    assert_int_equal(mrt_gemm_winner(ctx, 2, 1024, 1024, 128, &cfg), MRT_OK);
    assert_int_equal(mrt_gemm_winner(ctx, 4, 1024, 1024, 128, &cfg), MRT_ERR_NOT_FOUND);
    mrt_tune_stats stats;
    assert_int_equal(mrt_tune_stats_get(ctx, &stats), MRT_OK);
    assert_int_equal(stats.winners_rejected, 1);
    mrt_context_destroy(ctx);
    free(path);
}

/* Adding a configuration later keeps the earlier timings, and a re-tune only times the new one. */
static void test_tune__added_candidate_keeps_earlier_timings(void **state)
{
    (void)state;
    char *path = temp_store("tune-added");
    const mrt_device_info dev = h200();
    const int64_t m = 16, n = 4096, k = 4096;
    mrt_context *ctx = fake_device_context(path, &dev, 0);
    mrt_config list[4] = {
        config_of(256, 1, 8, 8, 4, 8),
        config_of(256, 1, 8, 8, 3, 8),
        config_of(128, 1, 4, 8, 8, 8),
        config_of(128, 1, 4, 16, 6, 8), /* added later, and fastest */
    };
    fake_timer timer = {0};
    timer.fastest = list[3];
    timer.have_fastest = 1;
    mrt__tune_timer t = {fake_measure, &timer};
    mrt_tune_result results[8];
    size_t got = 0;
    assert_int_equal(mrt__tune_run(ctx, &dev, m, n, k, 128, list, 3, NULL, &t, 0, results, 8, &got), MRT_OK);
    assert_int_equal(got, 3);
    assert_int_equal(timer.calls, 3);
    const mrt_config first_winner = results[0].config;
    char fp[17];
    const mrt__tuning_key key = key_for(&dev, n, k, 128, fp);
    int64_t rows = 0;
    assert_int_equal(mrt__tuning_count_timings(ctx->store, &key, &rows, &ctx->err), MRT_OK);
    assert_int_equal(rows, 3);
    mrt_context_destroy(ctx);

    /* Another process adds a candidate: only it is timed, and it wins over the stored ones. */
    ctx = fake_device_context(path, &dev, 0);
    timer.calls = 0;
    assert_int_equal(mrt__tune_run(ctx, &dev, m, n, k, 128, list, 4, NULL, &t, 0, results, 8, &got), MRT_OK);
    assert_int_equal(got, 4);
    assert_int_equal(timer.calls, 1);
    assert_int_equal(mrt__tune_config_order(&results[0].config, &list[3]), 0);
    assert_int_equal(results[0].reused, 0);
    size_t reused = 0;
    for (size_t i = 0; i < got; i++)
        reused += results[i].reused != 0;
    assert_int_equal(reused, 3);
    assert_int_equal(mrt__tuning_count_timings(ctx->store, &key, &rows, &ctx->err), MRT_OK);
    assert_int_equal(rows, 4);
    /* The earlier order is kept among the old ones (their times did not change). */
    for (size_t i = 1; i < got; i++)
        if (mrt__tune_config_order(&results[i].config, &first_winner) == 0)
            assert_int_equal(i, 1);

    /* MRT_TUNE_RETIME times everything again; MRT_TUNE_NO_RECORD leaves the store alone. */
    mrt_tune_options opts;
    mrt_tune_options_init(&opts);
    opts.flags = MRT_TUNE_RETIME | MRT_TUNE_NO_RECORD;
    timer.calls = 0;
    timer.fastest = list[0];
    assert_int_equal(mrt__tune_run(ctx, &dev, m, n, k, 128, list, 4, &opts, &t, 0, results, 8, &got), MRT_OK);
    assert_int_equal(timer.calls, 4);
    assert_int_equal(mrt__tune_config_order(&results[0].config, &list[0]), 0);
    mrt_config cfg;
    assert_int_equal(mrt_gemm_winner(ctx, m, n, k, 128, &cfg), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&cfg, &list[3]), 0); /* unchanged */
    mrt_context_destroy(ctx);
    free(path);
}

/* A tune cut short by its budget still times the heuristic's pick first and records a winner
 * marked unfinished; the next tune times only what is missing. */
static void test_tune__budget_cut_then_resume(void **state)
{
    (void)state;
    char *path = temp_store("tune-budget");
    const mrt_device_info dev = h200();
    const int64_t m = 1, n = 2048, k = 2048;
    size_t count = 0;
    mrt_config *list = candidates_of(&dev, m, n, k, 128, &count, NULL);
    assert_true(count > 8);

    mrt_context *ctx = fake_device_context(path, &dev, 0);
    fake_timer timer = {0};
    timer.sleep_ms = 4;
    mrt__tune_timer t = {fake_measure, &timer};
    mrt_tune_options opts;
    mrt_tune_options_init(&opts);
    opts.budget_ms = 10;
    mrt_tune_result *results = calloc(count, sizeof *results);
    size_t got = 0;
    assert_int_equal(mrt__tune_run(ctx, &dev, m, n, k, 128, NULL, 0, &opts, &t, 0, results, count, &got), MRT_OK);
    assert_true(got >= 1 && got < count);
    assert_int_equal(timer.calls, (int)got);
    int saw_heuristic = 0;
    for (size_t i = 0; i < got; i++)
        saw_heuristic |= results[i].heuristic;
    assert_true(saw_heuristic);

    char fp[17];
    const mrt__tuning_key key = key_for(&dev, n, k, 128, fp);
    mrt__tuning_winner w;
    int found = 0;
    assert_int_equal(mrt__tuning_get_winner(ctx->store, &key, 1, marlin_source_hash(), &w, &found, &ctx->err), MRT_OK);
    assert_int_equal(found, 1);
    assert_int_equal(w.candidates, (int64_t)count);
    assert_int_equal(w.tried, (int64_t)got);
    assert_true(w.candidate_set == mrt__tune_candidate_set_hash(list, count));
    mrt_context_destroy(ctx);

    /* Resumed without a budget: the rest is timed, the first part reused. */
    ctx = fake_device_context(path, &dev, 0);
    const size_t first_part = got;
    timer.calls = 0;
    timer.sleep_ms = 0;
    assert_int_equal(mrt__tune_run(ctx, &dev, m, n, k, 128, NULL, 0, NULL, &t, 0, results, count, &got), MRT_OK);
    assert_int_equal(got, count);
    assert_int_equal(timer.calls, (int)(count - first_part));
    assert_int_equal(mrt__tuning_get_winner(ctx->store, &key, 1, marlin_source_hash(), &w, &found, &ctx->err), MRT_OK);
    assert_int_equal(w.tried, (int64_t)count);
    mrt_context_destroy(ctx);
    free(results);
    free(list);
    free(path);
}

/* The store is asked once per problem and bucket; later selections come from memory. */
static void test_tune__winner_cache_avoids_sql(void **state)
{
    (void)state;
    const mrt_device_info dev = l4();
    mrt_context *ctx = fake_device_context(NULL, &dev, MRT_CTX_NO_STORE);
    mrt_config cfg;
    for (int i = 0; i < 100; i++)
        assert_int_equal(mrt_gemm_select(ctx, 1 + i % 8, 4096, 4096, 128, &cfg), MRT_OK);
    mrt_tune_stats stats;
    assert_int_equal(mrt_tune_stats_get(ctx, &stats), MRT_OK);
    assert_int_equal(stats.winner_lookups, 4); /* buckets 1, 2, 4, 8 */
    /* Many problems: the table grows and keeps every entry. */
    for (int64_t n = 64; n <= 64 * 200; n += 64)
        assert_int_equal(mrt_gemm_select(ctx, 1, n, 4096, 128, &cfg), MRT_OK);
    for (int64_t n = 64; n <= 64 * 200; n += 64)
        assert_int_equal(mrt_gemm_select(ctx, 1, n, 4096, 128, &cfg), MRT_OK);
    assert_int_equal(mrt_tune_stats_get(ctx, &stats), MRT_OK);
    assert_int_equal(stats.winner_lookups, 4 + 200 - 1);
    assert_int_equal(stats.failures, 0);
    mrt_context_destroy(ctx);
}

/* A store that refuses writes keeps nothing, says so in the statistics, and the context still
 * uses what it measured. */
static void test_tune__read_only_store_keeps_winner_in_memory(void **state)
{
    (void)state;
    char *path = temp_store("tune-readonly");
    const mrt_device_info dev = h200();
    mrt_context *ctx = fake_device_context(path, &dev, 0);
    assert_int_equal(sqlite3_exec(mrt__store_db(ctx->store), "PRAGMA query_only = 1", NULL, NULL, NULL), SQLITE_OK);
    mrt_config list[2] = {config_of(256, 1, 8, 8, 4, 8), config_of(256, 1, 8, 8, 3, 8)};
    fake_timer timer = {0};
    timer.fastest = list[0];
    timer.have_fastest = 1;
    mrt__tune_timer t = {fake_measure, &timer};
    mrt_tune_result results[2];
    size_t got = 0;
    assert_int_equal(mrt__tune_run(ctx, &dev, 16, 4096, 4096, 128, list, 2, NULL, &t, 0, results, 2, &got), MRT_OK);
    assert_string_equal(mrt_errmsg(ctx), "");
    mrt_tune_stats stats;
    assert_int_equal(mrt_tune_stats_get(ctx, &stats), MRT_OK);
    assert_int_equal(stats.records_skipped, 3); /* two timings and the winner */
    mrt_config cfg;
    assert_int_equal(mrt_gemm_select(ctx, 16, 4096, 4096, 128, &cfg), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&cfg, &list[0]), 0);
    mrt_context_destroy(ctx);

    ctx = fake_device_context(path, &dev, 0);
    assert_int_equal(mrt_gemm_winner(ctx, 16, 4096, 4096, 128, &cfg), MRT_ERR_NOT_FOUND);
    mrt_context_destroy(ctx);
    free(path);
}

/* A context with options and a fake device. */
static mrt_context *fake_device_context_opts(const mrt_context_options *opts, const mrt_device_info *dev)
{
    mrt_context *ctx = NULL;
    mrt_status rc = mrt_context_create(opts, &ctx);
    if (rc != MRT_OK)
        fail_msg("mrt_context_create: %s: %s", mrt_status_str(rc), mrt_thread_errmsg());
    ctx->device_tried = 1;
    ctx->device_status = MRT_OK;
    ctx->info = *dev;
    return ctx;
}

/* A shipped read-only store with an overlay: winners are read from both (the overlay's win),
 * and everything new goes to the overlay, never to the base. Without the overlay, nothing is
 * written and that is counted. */
static void test_tune__overlay_takes_records_of_a_read_only_store(void **state)
{
    (void)state;
    char *dir = mrt_test_tempdir("tune-overlay");
    char *base = mrt_test_path(dir, "base.db"), *overlay = mrt_test_path(dir, "overlay.db");
    const mrt_device_info dev = h200();
    const int64_t n = 4096, k = 4096;
    mrt_config list[2] = {config_of(256, 1, 8, 8, 4, 8), config_of(128, 1, 4, 8, 8, 8)};
    fake_timer timer = {0};
    timer.fastest = list[1];
    timer.have_fastest = 1;
    mrt__tune_timer t = {fake_measure, &timer};
    mrt_tune_result results[2];
    size_t got = 0;

    /* The image: a winner for bucket 1. */
    mrt_context *ctx = fake_device_context(base, &dev, 0);
    assert_int_equal(mrt__tune_run(ctx, &dev, 1, n, k, 128, list, 2, NULL, &t, 0, results, 2, &got), MRT_OK);
    mrt_context_destroy(ctx);

    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = base;
    opts.overlay_path = overlay;
    opts.flags = MRT_CTX_STORE_READONLY;
    ctx = fake_device_context_opts(&opts, &dev);
    mrt_config cfg;
    assert_int_equal(mrt_gemm_winner(ctx, 1, n, k, 128, &cfg), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&cfg, &list[1]), 0);
    /* Bucket 16 is tuned here: the base's bucket-1 timings are not reused (another M). */
    timer.calls = 0;
    timer.fastest = list[0];
    assert_int_equal(mrt__tune_run(ctx, &dev, 16, n, k, 128, list, 2, NULL, &t, 0, results, 2, &got), MRT_OK);
    assert_int_equal(timer.calls, 2);
    mrt_tune_stats stats;
    assert_int_equal(mrt_tune_stats_get(ctx, &stats), MRT_OK);
    assert_int_equal(stats.records_skipped, 0);
    /* Bucket 1 again, timed anew with another winner: the overlay's row is read after the
     * base's, so it is the one used. */
    mrt_tune_options retime;
    mrt_tune_options_init(&retime);
    retime.flags = MRT_TUNE_RETIME;
    assert_int_equal(mrt__tune_run(ctx, &dev, 1, n, k, 128, list, 2, &retime, &t, 0, results, 2, &got), MRT_OK);
    mrt_context_destroy(ctx);

    ctx = fake_device_context_opts(&opts, &dev);
    assert_int_equal(mrt_gemm_winner(ctx, 1, n, k, 128, &cfg), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&cfg, &list[0]), 0); /* the overlay's */
    assert_int_equal(mrt_gemm_winner(ctx, 16, n, k, 128, &cfg), MRT_OK);
    mrt_context_destroy(ctx);
    /* The base alone still has only its own winner. */
    ctx = fake_device_context(base, &dev, 0);
    assert_int_equal(mrt_gemm_winner(ctx, 1, n, k, 128, &cfg), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&cfg, &list[1]), 0);
    assert_int_equal(mrt_gemm_winner(ctx, 16, n, k, 128, &cfg), MRT_ERR_NOT_FOUND);
    mrt_context_destroy(ctx);

    /* Read-only without an overlay: tuned, used, not recorded, counted. */
    opts.overlay_path = NULL;
    ctx = fake_device_context_opts(&opts, &dev);
    assert_int_equal(mrt__tune_run(ctx, &dev, 32, n, k, 128, list, 2, NULL, &t, 0, results, 2, &got), MRT_OK);
    assert_int_equal(mrt_tune_stats_get(ctx, &stats), MRT_OK);
    assert_int_equal(stats.records_skipped, 3);
    assert_int_equal(mrt_gemm_winner(ctx, 32, n, k, 128, &cfg), MRT_OK);
    mrt_context_destroy(ctx);
    free(base);
    free(overlay);
    free(dir);
}

/* Candidates that fail are left out and reported; the tune goes on. */
typedef struct failing_timer {
    fake_timer base;
    int fail_every;
    mrt_context *ctx;
    int reported_failures;
} failing_timer;

static mrt_status failing_measure(void *user, const mrt_config *cfg, double best_us, mrt__timing *out)
{
    failing_timer *t = user;
    if (++t->base.calls % t->fail_every == 0)
        return mrt__fail(&t->ctx->err, MRT_ERR_COMPILE, "fake NVRTC error for stages %d", cfg->stages);
    t->base.calls--;
    return fake_measure(&t->base, cfg, best_us, out);
}

static int count_failures(const mrt_tune_event *event, void *user)
{
    failing_timer *t = user;
    if (event->status != MRT_OK) {
        assert_int_equal(event->status, MRT_ERR_COMPILE);
        assert_non_null(strstr(event->message, "fake NVRTC error"));
        t->reported_failures++;
    }
    assert_true(event->index < event->total);
    return 0;
}

static void test_tune__failing_candidates_are_left_out(void **state)
{
    (void)state;
    const mrt_device_info dev = h200();
    mrt_context *ctx = fake_device_context(NULL, &dev, MRT_CTX_NO_STORE);
    mrt_config list[6];
    for (int i = 0; i < 6; i++)
        list[i] = config_of(256, 1, 8, 8, 3 + i % 2, 8), list[i].thread_k_blocks = 4 << (i / 2);
    failing_timer ft = {{0}, 2, ctx, 0};
    mrt__tune_timer t = {failing_measure, &ft};
    mrt_tune_options opts;
    mrt_tune_options_init(&opts);
    opts.progress = count_failures;
    opts.progress_user = &ft;
    mrt_tune_result results[6];
    size_t got = 0;
    assert_int_equal(mrt__tune_run(ctx, &dev, 16, 4096, 4096, 128, list, 6, &opts, &t, 0, results, 6, &got), MRT_OK);
    assert_true(got > 0 && got < 6);
    assert_int_equal(ft.reported_failures, (int)(6 - got));
    mrt_tune_stats stats;
    assert_int_equal(mrt_tune_stats_get(ctx, &stats), MRT_OK);
    assert_int_equal(stats.configs_failed, 6 - got);
    assert_string_equal(mrt_errmsg(ctx), "");

    /* All failing (timed again, not reused from the in-memory store): the tune fails with
     * their status and says why. */
    ft.fail_every = 1;
    ft.base.calls = 0;
    opts.flags = MRT_TUNE_RETIME;
    assert_int_equal(mrt__tune_run(ctx, &dev, 16, 4096, 4096, 128, list, 6, &opts, &t, 0, results, 6, &got),
                     MRT_ERR_COMPILE);
    assert_non_null(strstr(mrt_errmsg(ctx), "none of the 6 candidates"));
    assert_non_null(strstr(mrt_errmsg(ctx), "fake NVRTC error"));
    mrt_context_destroy(ctx);
}

/* Run the CLI on a store; returns its exit status and output (malloc'd). */
static void test_tune__cli_usage_errors(void **state)
{
    (void)state;
    char *db = temp_store("tune-cli");
    const struct {
        const char *args;
        const char *needle;
    } cases[] = {
        {"tune --shape 4096", "bad --shape"},     {"tune --shape 4096x", "bad --shape"},
        {"tune --m 0", "bad --m"},                {"tune --m 1,x", "bad --m"},
        {"tune --group 48", "--group 48"},        {"tune --budget -1", "--budget -1"},
        {"tune --batches 2", "--batches 2"},      {"tune --jobs 999", "--jobs 999"},
        {"tune --frobnicate", "unknown argument"},
    };
    for (size_t i = 0; i < COUNT_OF(cases); i++) {
        char *out = NULL;
        int status = mrt_test_cli("", db, cases[i].args, &out);
        if (status != 2 || !strstr(out, cases[i].needle))
            fail_msg("marlinrt %s: exit %d, output:\n%s", cases[i].args, status, out);
        free(out);
    }
    char *out = NULL;
    assert_int_equal(mrt_test_cli("", db, "--help", &out), 0);
    assert_non_null(strstr(out, "tune [--shape"));
    free(out);
    free(db);
}

/* ------------------------------------------------------------------------- */
/* The GPU-side flow with the stand-in driver (tests/fake_cuda.c)             */
/* ------------------------------------------------------------------------- */

/* The path of this program, for the child processes that load the fake driver. */
static char self_path[4096];

#define CHILD_CHECK(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("line %d: %s: ", __LINE__, #cond);                                              \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static mrt_status child_gemm(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group)
{
    size_t workspace = 0;
    mrt_status rc = mrt_gemm_workspace_size(ctx, n, &workspace);
    if (rc != MRT_OK)
        return rc;
    /* The fake launches nothing, so any aligned addresses do. */
    mrt_gemm_args args;
    memset(&args, 0, sizeof args);
    args.a = 0x10000;
    args.b = 0x20000;
    args.scales = 0x30000;
    args.c = 0x40000;
    args.workspace = 0x50000;
    args.workspace_bytes = workspace;
    args.m = m;
    args.n = n;
    args.k = k;
    args.group_size = group;
    return mrt_gemm(ctx, NULL, &args, NULL);
}

/* Runs in a child whose driver is the fake (real NVRTC compiles, fake launches, every batch
 * timed alike): first-use tuning cut by its budget, resumed by the next context, used without
 * tuning by a context without the flag; then mrt_gemm_tune to the end on a tiny problem. */
static int child_autotune(const char *store)
{
    const int64_t m = 8, n = 256, k = 256;
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = store;
    opts.flags = MRT_CTX_AUTOTUNE;
    mrt_context *a = NULL, *b = NULL, *c = NULL;
    mrt_tune_stats stats;
    mrt_config winner, selected;
    CHILD_CHECK(mrt_context_create(&opts, &a) == MRT_OK, "%s", mrt_thread_errmsg());
    size_t candidates = 0;
    CHILD_CHECK(mrt_gemm_candidates_for(a, m, n, k, 128, NULL, 0, &candidates) == MRT_OK, "%s", mrt_errmsg(a));
    CHILD_CHECK(candidates > 2, "%zu candidates", candidates);

    /* Budget 1 ms (MARLINRT_AUTOTUNE_BUDGET_MS from the parent): only the first is timed. */
    CHILD_CHECK(child_gemm(a, m, n, k, 128) == MRT_OK, "%s", mrt_errmsg(a));
    CHILD_CHECK(mrt_tune_stats_get(a, &stats) == MRT_OK, "stats");
    CHILD_CHECK(stats.failures == 0, "%s", stats.last_failure);
    CHILD_CHECK(stats.autotunes == 1 && stats.configs_timed == 1 && stats.winner_picks == 1,
                "autotunes %llu timed %llu winner picks %llu", (unsigned long long)stats.autotunes,
                (unsigned long long)stats.configs_timed, (unsigned long long)stats.winner_picks);
    CHILD_CHECK(mrt_gemm_winner(a, m, n, k, 128, &winner) == MRT_OK, "%s", mrt_errmsg(a));
    mrt_config heuristic;
    mrt__marlin_heuristic(m, n, k, 128, mrt__device(a), &heuristic);
    CHILD_CHECK(mrt__tune_config_order(&winner, &heuristic) == 0, "the first candidate timed is the heuristic's");
    /* Once per context: the second call does not tune again. */
    CHILD_CHECK(child_gemm(a, 5, n, k, 128) == MRT_OK, "%s", mrt_errmsg(a));
    CHILD_CHECK(mrt_tune_stats_get(a, &stats) == MRT_OK && stats.tunes == 1 && stats.winner_picks == 2, "second call");
    mrt_stats launches;
    CHILD_CHECK(mrt_get_stats(a, &launches) == MRT_OK && launches.launches > 2, "the tuner launched");

    /* The next context finds the winner unfinished and goes on, reusing the stored timing. */
    CHILD_CHECK(mrt_context_create(&opts, &b) == MRT_OK, "%s", mrt_thread_errmsg());
    CHILD_CHECK(child_gemm(b, m, n, k, 128) == MRT_OK, "%s", mrt_errmsg(b));
    CHILD_CHECK(mrt_tune_stats_get(b, &stats) == MRT_OK, "stats");
    CHILD_CHECK(stats.failures == 0, "%s", stats.last_failure);
    CHILD_CHECK(stats.autotunes == 1 && stats.timings_reused == 1 && stats.configs_timed == 1,
                "autotunes %llu reused %llu timed %llu", (unsigned long long)stats.autotunes,
                (unsigned long long)stats.timings_reused, (unsigned long long)stats.configs_timed);

    /* Without the flag: the recorded winner, no tuning, one lookup for two calls. */
    opts.flags = 0;
    CHILD_CHECK(mrt_context_create(&opts, &c) == MRT_OK, "%s", mrt_thread_errmsg());
    CHILD_CHECK(child_gemm(c, m, n, k, 128) == MRT_OK && child_gemm(c, 7, n, k, 128) == MRT_OK, "%s", mrt_errmsg(c));
    CHILD_CHECK(mrt_tune_stats_get(c, &stats) == MRT_OK, "stats");
    CHILD_CHECK(stats.tunes == 0 && stats.winner_picks == 2 && stats.winner_lookups == 1,
                "tunes %llu winner picks %llu lookups %llu", (unsigned long long)stats.tunes,
                (unsigned long long)stats.winner_picks, (unsigned long long)stats.winner_lookups);
    CHILD_CHECK(mrt_gemm_winner(b, m, n, k, 128, &winner) == MRT_OK, "%s", mrt_errmsg(b));
    CHILD_CHECK(mrt_gemm_select(c, m, n, k, 128, &selected) == MRT_OK, "%s", mrt_errmsg(c));
    CHILD_CHECK(mrt__tune_config_order(&selected, &winner) == 0, "c selects b's winner");

    /* A whole tune on a tiny problem: every batch takes the same fake time, so every candidate
     * ties and the fixed order decides (fewest stages first). */
    size_t total = 0, got = 0;
    CHILD_CHECK(mrt_gemm_candidates_for(c, 1, 64, 64, -1, NULL, 0, &total) == MRT_OK && total >= 2, "%zu", total);
    mrt_tune_result results[16];
    mrt_tune_options tune;
    mrt_tune_options_init(&tune);
    tune.batches = 3;
    CHILD_CHECK(mrt_gemm_tune(c, 1, 64, 64, -1, &tune, results, 16, &got) == MRT_OK, "%s", mrt_errmsg(c));
    CHILD_CHECK(got == total, "%zu of %zu", got, total);
    for (size_t i = 0; i < got; i++)
        CHILD_CHECK(results[i].tied && !results[i].reused && results[i].median_us > 0, "result %zu", i);
    for (size_t i = 1; i < got; i++)
        CHILD_CHECK(mrt__tune_config_order(&results[0].config, &results[i].config) < 0, "tie-break %zu", i);
    CHILD_CHECK(mrt_gemm_winner(c, 1, 64, 64, -1, &winner) == MRT_OK &&
                    mrt__tune_config_order(&winner, &results[0].config) == 0,
                "winner recorded");
    mrt_context_destroy(a);
    mrt_context_destroy(b);
    mrt_context_destroy(c);
    printf("child-autotune ok\n");
    return 0;
}

static void test_tune__first_use_flow_with_fake_driver(void **state)
{
    (void)state;
    char *store = temp_store("tune-fake");
    mrt_context *probe = mrt_test_context(NULL, MRT_CTX_NO_STORE);
    int major = 0, minor = 0;
    mrt_status rc = mrt_nvrtc_version(probe, &major, &minor);
    mrt_context_destroy(probe);
    if (rc != MRT_OK) {
        /* CI has the CUDA toolkit; a developer machine without NVRTC cannot compile. */
        fprintf(stderr, "[SKIPPED] no NVRTC for the fake-driver flow\n");
        free(store);
        mrt_test_note_skip();
        skip();
    }
    char command[8192];
    snprintf(command, sizeof command,
             "MARLINRT_CUDA_DRIVER_PATH='%s' MARLINRT_AUTOTUNE_BUDGET_MS=1 MARLINRT_AUTOTUNE=0 '%s' child-autotune "
             "'%s' 2>&1",
             MRT_FAKE_CUDA_PATH, self_path, store);
    char *out = NULL;
    int status = mrt_test_run(command, &out);
    if (status != 0 || !strstr(out, "child-autotune ok"))
        fail_msg("child exit %d:\n%s", status, out);
    free(out);
    free(store);
}

/* ------------------------------------------------------------------------- */
/* On the GPU                                                                 */
/* ------------------------------------------------------------------------- */

/* The GPU tests share one store, so a cubin compiled for one test is a store hit in the next
 * (the configurations are the same across shapes); each test uses problems of its own. */
static char *gpu_store;

static int gpu_group_setup(void **state)
{
    (void)state;
    gpu_store = temp_store("tune-gpu");
    return 0;
}

static int gpu_group_teardown(void **state)
{
    (void)state;
    free(gpu_store);
    gpu_store = NULL;
    return 0;
}

/* MRT_TEST_QUICK=1 keeps a representative subset, for runs under compute-sanitizer. */
static int quick(void)
{
    const char *env = getenv("MRT_TEST_QUICK");
    return env && *env && *env != '0';
}

/* Median of the medians of `rounds` timings, alternating two configurations on the same
 * problem so that clock drift affects both alike. */
static void time_pair(mrt_context *ctx, mrt__gemm_problem *p, const mrt_config *a, const mrt_config *b, int rounds,
                      double *a_us, double *b_us, double *spread_us)
{
    double ta[8], tb[8];
    *spread_us = 0;
    for (int r = 0; r < rounds; r++) {
        mrt__timing t;
        if (mrt__gemm_problem_time(ctx, p, a, 3, 20, &t) != MRT_OK)
            fail_msg("timing: %s", mrt_errmsg(ctx));
        ta[r] = t.median_us;
        if (t.q3_us - t.q1_us > *spread_us)
            *spread_us = t.q3_us - t.q1_us;
        if (mrt__gemm_problem_time(ctx, p, b, 3, 20, &t) != MRT_OK)
            fail_msg("timing: %s", mrt_errmsg(ctx));
        tb[r] = t.median_us;
        if (t.q3_us - t.q1_us > *spread_us)
            *spread_us = t.q3_us - t.q1_us;
    }
    /* rounds is odd: sort and take the middle. */
    for (int i = 0; i < rounds; i++)
        for (int j = i + 1; j < rounds; j++) {
            if (ta[j] < ta[i]) {
                double x = ta[i];
                ta[i] = ta[j];
                ta[j] = x;
            }
            if (tb[j] < tb[i]) {
                double x = tb[i];
                tb[i] = tb[j];
                tb[j] = x;
            }
        }
    *a_us = ta[rounds / 2];
    *b_us = tb[rounds / 2];
}

static void test_tune__winner_not_slower_than_heuristic(void **state)
{
    (void)state;
    mrt_context *ctx = mrt_test_context(gpu_store, 0);
    mrt_test_require_gpu(ctx);
    const mrt_device_info *dev = mrt__device(ctx);
    const struct {
        int64_t k, n, m;
    } problems[] = {{4096, 4096, 1}, {8192, 8192, 64}, {14336, 4096, 16}};
    for (size_t i = 0; i < COUNT_OF(problems); i++) {
        if (quick() && i > 0)
            break;
        const int64_t k = problems[i].k, n = problems[i].n, m = problems[i].m;
        size_t total = 0, got = 0;
        assert_int_equal(mrt_gemm_candidates_for(ctx, m, n, k, 128, NULL, 0, &total), MRT_OK);
        mrt_tune_result *results = calloc(total, sizeof *results);
        mrt_tune_options opts;
        mrt_tune_options_init(&opts);
        opts.budget_ms = quick() ? 10000 : 30000; /* cold compiles dominate; the rule holds for any cut */
        mrt_status rc = mrt_gemm_tune(ctx, m, n, k, 128, &opts, results, total, &got);
        if (rc != MRT_OK)
            fail_msg("tune k=%lld n=%lld m=%lld: %s: %s", (long long)k, (long long)n, (long long)m,
                     mrt_status_str(rc), mrt_errmsg(ctx));
        assert_true(got >= 1);
        /* Results come back best first, the rest by median, with the heuristic's pick among them. */
        const mrt_tune_result *heuristic = NULL;
        for (size_t r = 0; r < got; r++) {
            assert_true(results[r].median_us > 0 && isfinite(results[r].median_us));
            if (r > 1)
                assert_true(results[r - 1].median_us <= results[r].median_us);
            if (results[r].heuristic)
                heuristic = &results[r];
        }
        assert_non_null(heuristic);
        assert_int_equal(results[0].tied, 1);
        mrt_config winner, selected, expected_heuristic;
        assert_int_equal(mrt_gemm_winner(ctx, m, n, k, 128, &winner), MRT_OK);
        assert_int_equal(mrt__tune_config_order(&winner, &results[0].config), 0);
        assert_int_equal(mrt_gemm_select(ctx, m, n, k, 128, &selected), MRT_OK);
        assert_int_equal(mrt__tune_config_order(&selected, &winner), 0);
        mrt__marlin_heuristic(m, n, k, 128, mrt__device(ctx), &expected_heuristic);
        assert_int_equal(mrt__tune_config_order(&heuristic->config, &expected_heuristic), 0);

        /* Time both again, on fresh buffers. */
        mrt__gemm_problem *p = NULL;
        assert_int_equal(mrt__gemm_problem_create(ctx, m, n, k, 128, 2 * (size_t)dev->l2_bytes + 1, &p), MRT_OK);
        double win_us, heur_us, spread;
        time_pair(ctx, p, &winner, &heuristic->config, quick() ? 1 : 3, &win_us, &heur_us, &spread);
        mrt__gemm_problem_destroy(ctx, p);
        char wname[64], hname[64];
        format_config(&winner, wname, sizeof wname);
        format_config(&heuristic->config, hname, sizeof hname);
        fprintf(stderr, "[tune] k=%lld n=%lld m=%lld: winner %s %.2f us (tuned %.2f), heuristic %s %.2f us (tuned %.2f), "
                        "%zu of %zu timed\n",
                (long long)k, (long long)n, (long long)m, wname, win_us, results[0].median_us, hname, heur_us,
                heuristic->median_us, got, total);
        const double band = fmax(0.03 * heur_us, 2 * spread);
        if (win_us > heur_us + band)
            fail_msg("k=%lld n=%lld m=%lld: winner %s %.2f us is slower than the heuristic's %s %.2f us beyond "
                     "the noise band %.2f us",
                     (long long)k, (long long)n, (long long)m, wname, win_us, hname, heur_us, band);
        free(results);
    }
    mrt_context_destroy(ctx);
}

/* Random weights and activations on the device, and the CPU reference for a few rows. */
typedef struct gemm_case {
    int64_t m, n, k;
    int group;
    int32_t *packed;
    mrt_half *scales, *a;
    CUdeviceptr d_packed, d_scales, d_a, d_c, d_workspace;
    size_t workspace_bytes;
} gemm_case;

static CUdeviceptr gpu_alloc(mrt_context *ctx, size_t bytes)
{
    CUdeviceptr p = 0;
    if (mrt__dev_alloc(ctx, bytes, &p) != MRT_OK)
        fail_msg("cuMemAlloc(%zu): %s", bytes, mrt_errmsg(ctx));
    return p;
}

static void gemm_case_make(mrt_context *ctx, gemm_case *c, int64_t m, int64_t n, int64_t k, int group)
{
    memset(c, 0, sizeof *c);
    c->m = m, c->n = n, c->k = k, c->group = group;
    float *w = malloc((size_t)(k * n) * sizeof *w);
    c->packed = malloc((size_t)(k * n / 8) * sizeof *c->packed);
    c->scales = malloc((size_t)(mrt_scale_rows(k, group) * n) * sizeof *c->scales);
    c->a = malloc((size_t)(m * k) * sizeof *c->a);
    assert_true(w && c->packed && c->scales && c->a);
    for (int64_t i = 0; i < k * n; i++)
        w[i] = mrt_test_uniform(-1, 1);
    for (int64_t i = 0; i < m * k; i++)
        c->a[i] = mrt_float_to_half(mrt_test_uniform(-1, 1));
    assert_int_equal(mrt_quantize_f32(w, k, n, group, c->packed, c->scales, NULL, NULL, 0), MRT_OK);
    free(w);
    const size_t scale_bytes = (size_t)(mrt_scale_rows(k, group) * n) * 2;
    c->d_packed = gpu_alloc(ctx, (size_t)(k * n / 2));
    c->d_scales = gpu_alloc(ctx, scale_bytes);
    c->d_a = gpu_alloc(ctx, (size_t)(m * k) * 2);
    c->d_c = gpu_alloc(ctx, (size_t)(m * n) * 2);
    assert_int_equal(mrt__dev_upload(ctx, c->d_packed, c->packed, (size_t)(k * n / 2)), MRT_OK);
    assert_int_equal(mrt__dev_upload(ctx, c->d_scales, c->scales, scale_bytes), MRT_OK);
    assert_int_equal(mrt__dev_upload(ctx, c->d_a, c->a, (size_t)(m * k) * 2), MRT_OK);
    assert_int_equal(mrt_gemm_workspace_size(ctx, n, &c->workspace_bytes), MRT_OK);
    c->d_workspace = gpu_alloc(ctx, c->workspace_bytes);
    assert_int_equal(mrt__dev_memset(ctx, c->d_workspace, 0, c->workspace_bytes), MRT_OK);
}

static void gemm_case_free(mrt_context *ctx, gemm_case *c)
{
    mrt__dev_free(ctx, c->d_packed);
    mrt__dev_free(ctx, c->d_scales);
    mrt__dev_free(ctx, c->d_a);
    mrt__dev_free(ctx, c->d_c);
    mrt__dev_free(ctx, c->d_workspace);
    free(c->packed);
    free(c->scales);
    free(c->a);
}

/* mrt_gemm with no configuration, output poisoned first and checked against the reference. */
static void gemm_case_run(mrt_context *ctx, gemm_case *c)
{
    mrt_gemm_args args;
    memset(&args, 0, sizeof args);
    args.a = c->d_a;
    args.b = c->d_packed;
    args.scales = c->d_scales;
    args.c = c->d_c;
    args.workspace = c->d_workspace;
    args.workspace_bytes = c->workspace_bytes;
    args.m = c->m;
    args.n = c->n;
    args.k = c->k;
    args.group_size = c->group;
    assert_int_equal(mrt__dev_memset(ctx, c->d_c, 0xff, (size_t)(c->m * c->n) * 2), MRT_OK);
    mrt_status rc = mrt_gemm(ctx, NULL, &args, NULL);
    if (rc != MRT_OK)
        fail_msg("mrt_gemm: %s: %s", mrt_status_str(rc), mrt_errmsg(ctx));
    assert_string_equal(mrt_errmsg(ctx), "");
    assert_int_equal(mrt__dev_sync(ctx), MRT_OK);
    mrt_half *out = malloc((size_t)(c->m * c->n) * 2);
    float *ref = malloc((size_t)(c->m * c->n) * sizeof *ref);
    assert_true(out && ref);
    assert_int_equal(mrt__ctx_push(ctx), MRT_OK);
    assert_int_equal(ctx->driver->memcpy_dtoh(out, c->d_c, (size_t)(c->m * c->n) * 2), CUDA_SUCCESS);
    mrt__ctx_pop(ctx);
    assert_int_equal(mrt_reference_gemm(c->a, c->packed, c->scales, c->m, c->n, c->k, c->group, ref, 0), MRT_OK);
    /* Bound as in test_gemm: fp16 weight rounding as a random walk over K, plus the result's
     * own rounding; inputs in (-1, 1) give weights of rms about 1/sqrt(3). */
    const double walk = ldexp(1.0, -11) * sqrt((double)c->k) * 0.58 * 0.58;
    for (int64_t i = 0; i < c->m * c->n; i++) {
        const double got = mrt_half_to_float(out[i]), want = ref[i];
        if (!(fabs(got - want) <= 8 * walk + ldexp(fabs(want), -10)))
            fail_msg("C[%lld][%lld] = %g, reference %g", (long long)(i / c->n), (long long)(i % c->n), got, want);
    }
    free(out);
    free(ref);
}

static void test_tune__autotune_on_first_use_then_reused(void **state)
{
    (void)state;
    const char *path = gpu_store;
    mrt_context *a = mrt_test_context(path, MRT_CTX_AUTOTUNE);
    mrt_test_require_gpu(a);
    /* Read when the context first tunes: let it finish, since the second context must not tune. */
    const char *old_budget = getenv("MARLINRT_AUTOTUNE_BUDGET_MS");
    char *saved = old_budget ? strdup(old_budget) : NULL;
    setenv("MARLINRT_AUTOTUNE_BUDGET_MS", "300000", 1);
    const int64_t m = 8, n = 1024, k = 1024;
    gemm_case c;
    gemm_case_make(a, &c, m, n, k, 128);

    gemm_case_run(a, &c);
    mrt_tune_stats stats;
    assert_int_equal(mrt_tune_stats_get(a, &stats), MRT_OK);
    if (stats.failures)
        fail_msg("first-use tune failed: %s", stats.last_failure);
    assert_int_equal(stats.autotunes, 1);
    assert_int_equal(stats.tunes, 1);
    assert_int_equal(stats.winner_picks, 1);
    assert_int_equal(stats.heuristic_picks, 0);
    assert_true(stats.configs_timed >= 1);
    mrt_config winner;
    assert_int_equal(mrt_gemm_winner(a, m, n, k, 128, &winner), MRT_OK);
    /* A second call: no tune, no lookup. */
    gemm_case_run(a, &c);
    assert_int_equal(mrt_tune_stats_get(a, &stats), MRT_OK);
    assert_int_equal(stats.tunes, 1);
    assert_int_equal(stats.winner_lookups, 1);
    assert_int_equal(stats.winner_picks, 2);

    /* A second context on the same store uses the winner without tuning. */
    mrt_context *b = mrt_test_context(path, MRT_CTX_AUTOTUNE);
    gemm_case cb;
    gemm_case_make(b, &cb, m, n, k, 128);
    gemm_case_run(b, &cb);
    assert_int_equal(mrt_tune_stats_get(b, &stats), MRT_OK);
    assert_int_equal(stats.tunes, 0);
    assert_int_equal(stats.configs_timed, 0);
    assert_int_equal(stats.winner_lookups, 1);
    assert_int_equal(stats.winner_picks, 1);
    mrt_config selected;
    assert_int_equal(mrt_gemm_select(b, m, n, k, 128, &selected), MRT_OK);
    assert_int_equal(mrt__tune_config_order(&selected, &winner), 0);
    gemm_case_free(b, &cb);
    mrt_context_destroy(b);

    gemm_case_free(a, &c);
    mrt_context_destroy(a);
    if (saved) {
        setenv("MARLINRT_AUTOTUNE_BUDGET_MS", saved, 1);
        free(saved);
    } else {
        unsetenv("MARLINRT_AUTOTUNE_BUDGET_MS");
    }
}

/* `marlinrt tune` on a small problem records a winner that a context then selects. */
static void test_tune__cli_tunes_and_records(void **state)
{
    (void)state;
    const char *db = gpu_store;
    mrt_context *ctx = mrt_test_context(db, 0);
    mrt_test_require_gpu(ctx);
    mrt_context_destroy(ctx);
    char *out = NULL;
    int status = mrt_test_cli("", db, "tune --shape 1024x2048 --m 16 --json --batches 5", &out);
    if (status != 0 || !strstr(out, "\"winner\": \"t") || !strstr(out, "\"heuristic_us\": ") ||
        !strstr(out, "\"recorded\": true"))
        fail_msg("marlinrt tune: exit %d, output:\n%s", status, out);
    free(out);
    ctx = mrt_test_context(db, 0);
    mrt_config winner;
    assert_int_equal(mrt_gemm_winner(ctx, 9, 2048, 1024, 128, &winner), MRT_OK); /* same bucket as 16 */
    mrt_context_destroy(ctx);
    /* Again: every timing comes from the store. */
    status = mrt_test_cli("", db, "tune --shape 1024x2048 --m 16 --json --batches 5", &out);
    if (status != 0 || !strstr(out, "\"timed\": 0,"))
        fail_msg("marlinrt tune again: exit %d, output:\n%s", status, out);
    free(out);
}

/* argv[1] "cpu" or "gpu" runs one group; no argument runs both. */
int main(int argc, char **argv)
{
    if (!realpath(argv[0], self_path))
        snprintf(self_path, sizeof self_path, "%s", argv[0]);
    if (argc == 3 && strcmp(argv[1], "child-autotune") == 0)
        return child_autotune(argv[2]);
    const char *only = argc > 1 ? argv[1] : "";
    const struct CMUnitTest cpu_tests[] = {
        cmocka_unit_test(test_tune__m_bucket),
        cmocka_unit_test(test_tune__fingerprint_covers_each_field),
        cmocka_unit_test(test_tune__candidates_fit_shape_and_device),
        cmocka_unit_test(test_tune__pruning_rules),
        cmocka_unit_test(test_tune__tie_break_is_order_independent),
        cmocka_unit_test(test_tune__options_and_arguments_checked),
        cmocka_unit_test(test_tune__env_sets_autotune_flag),
        cmocka_unit_test(test_tune__store_round_trip),
        cmocka_unit_test(test_tune__fingerprint_change_forces_retune),
        cmocka_unit_test(test_tune__source_change_hides_winner),
        cmocka_unit_test(test_tune__added_candidate_keeps_earlier_timings),
        cmocka_unit_test(test_tune__budget_cut_then_resume),
        cmocka_unit_test(test_tune__winner_cache_avoids_sql),
        cmocka_unit_test(test_tune__read_only_store_keeps_winner_in_memory),
        cmocka_unit_test(test_tune__overlay_takes_records_of_a_read_only_store),
        cmocka_unit_test(test_tune__failing_candidates_are_left_out),
        cmocka_unit_test(test_tune__cli_usage_errors),
        cmocka_unit_test(test_tune__first_use_flow_with_fake_driver),
    };
    /* The CLI test first: it compiles its candidates on every core, which the others reuse. */
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_tune__cli_tunes_and_records),
        cmocka_unit_test(test_tune__winner_not_slower_than_heuristic),
        cmocka_unit_test(test_tune__autotune_on_first_use_then_reused),
    };
    int failures = 0;
    if (strcmp(only, "gpu") != 0)
        failures += cmocka_run_group_tests(cpu_tests, NULL, NULL);
    if (strcmp(only, "cpu") != 0)
        failures += cmocka_run_group_tests(gpu_tests, gpu_group_setup, gpu_group_teardown);
    return mrt_test_exit_status(failures);
}
