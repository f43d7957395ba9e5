/*
 * The W4A16 GEMM: argument checks (everywhere) and numerics against the CPU reference (on a
 * GPU). Inputs are random (never zeros), outputs poisoned with NaN before every run.
 */
#include "helpers.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/context.h"
#include "runtime/tune.h"

/* ------------------------------------------------------------------------- */
/* Argument checks: no GPU needed, because they must come before any GPU use.  */
/* ------------------------------------------------------------------------- */

static mrt_gemm_args valid_args(void)
{
    mrt_gemm_args args;
    memset(&args, 0, sizeof args);
    args.a = 0x1000;
    args.b = 0x2000;
    args.scales = 0x3000;
    args.c = 0x4000;
    args.workspace = 0x5000;
    args.workspace_bytes = 1 << 30;
    args.m = 16;
    args.n = 256;
    args.k = 256;
    args.group_size = 128;
    return args;
}

static void test_gemm__arguments_checked_before_gpu_use(void **state)
{
    (void)state;
    /* An offline context refuses the GPU: getting MRT_ERR_INVALID_ARGUMENT proves the check ran
     * first, so nothing was launched. */
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    struct {
        const char *needle;
        mrt_gemm_args args;
    } cases[24];
    size_t count = 0;
#define CASE(text, field, value)                                                                   \
    do {                                                                                           \
        cases[count].needle = text;                                                                \
        cases[count].args = valid_args();                                                          \
        cases[count].args.field = value;                                                           \
        count++;                                                                                   \
    } while (0)
    CASE("args->a is NULL", a, 0);
    CASE("args->b is NULL", b, 0);
    CASE("args->scales is NULL", scales, 0);
    CASE("args->c is NULL", c, 0);
    CASE("args->workspace is NULL", workspace, 0);
    CASE("args->a = 0x1008", a, 0x1008);
    CASE("args->c = 0x4002", c, 0x4002);
    CASE("args->m = 0", m, 0);
    CASE("args->m = -3", m, -3);
    CASE("args->n = 100", n, 100);
    CASE("args->n = 0", n, 0);
    CASE("args->k = 96", k, 96);
    CASE("args->k = -64", k, -64);
    CASE("group_size = 48", group_size, 48);
    CASE("group_size = 0", group_size, 0);
    CASE("group_size = 256", group_size, 256);
    CASE("group_size = 128 does not divide k = 192", k, 192);
    CASE("args->flags = 0x8: unknown bits 0x8", flags, 8);
    CASE("reserved_i32[1]", reserved_i32[1], 5);
    CASE("reserved[2]", reserved[2], 1);
#undef CASE
    for (size_t i = 0; i < count; i++) {
        mrt_status rc = mrt_gemm(ctx, NULL, &cases[i].args, NULL);
        if (rc != MRT_ERR_INVALID_ARGUMENT || !strstr(mrt_errmsg(ctx), cases[i].needle))
            fail_msg("case %zu (%s): %s: %s", i, cases[i].needle, mrt_status_str(rc), mrt_errmsg(ctx));
    }
    mrt_gemm_args args = valid_args();
    assert_int_equal(mrt_gemm(ctx, NULL, NULL, NULL), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm(NULL, NULL, &args, NULL), MRT_ERR_INVALID_ARGUMENT);

    /* A configuration that is invalid on its own is refused before the device too. */
    mrt_config bad = {.threads = 96, .thread_m_blocks = 1, .thread_n_blocks = 8, .thread_k_blocks = 8, .stages = 4,
                      .group_blocks = 8};
    assert_int_equal(mrt_gemm(ctx, NULL, &args, &bad), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_errmsg(ctx), "threads = 96"));

    /* With valid arguments the offline context is what stops it. */
    assert_int_equal(mrt_gemm(ctx, NULL, &args, NULL), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_errmsg(ctx), "MRT_CTX_OFFLINE"));
    mrt_stats stats;
    assert_int_equal(mrt_get_stats(ctx, &stats), MRT_OK);
    assert_int_equal(stats.launches, 0);
    mrt_context_destroy(ctx);
}

static void test_gemm__candidates_are_valid_and_cover_every_group(void **state)
{
    (void)state;
    const int groups[] = {-1, 32, 64, 128};
    mrt_context *ctx = mrt_test_context(NULL, MRT_CTX_NO_STORE | MRT_CTX_OFFLINE);
    for (size_t g = 0; g < 4; g++) {
        size_t count = 0;
        assert_int_equal(mrt_gemm_candidates(groups[g], NULL, 0, &count), MRT_OK);
        assert_true(count > 0);
        mrt_config *configs = calloc(count, sizeof *configs);
        assert_non_null(configs);
        assert_int_equal(mrt_gemm_candidates(groups[g], configs, count, &count), MRT_OK);
        int has_tail_tile = 0;
        for (size_t i = 0; i < count; i++) {
            if (mrt_config_validate(ctx, MRT_KERNEL_MARLIN_W4A16, &configs[i]) != MRT_OK)
                fail_msg("candidate %zu for group %d invalid: %s", i, groups[g], mrt_errmsg(ctx));
            int want = groups[g] == -1 ? -1 : groups[g] / 16;
            assert_true(configs[i].group_blocks == want || configs[i].group_blocks == -1);
            /* Shapes with N or K only a multiple of 64 need a 64-wide tile for every M block. */
            if (configs[i].thread_n_blocks == 4 && configs[i].thread_k_blocks == 4)
                has_tail_tile |= 1 << configs[i].thread_m_blocks;
        }
        assert_int_equal(has_tail_tile, 2 | 4 | 8 | 16);
        free(configs);
    }
    size_t count = 0;
    assert_int_equal(mrt_gemm_candidates(48, NULL, 0, &count), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_gemm_candidates(128, NULL, 3, &count), MRT_ERR_INVALID_ARGUMENT);
    mrt_context_destroy(ctx);
}

static void test_gemm__heuristic_fits_shape_and_device(void **state)
{
    (void)state;
    /* An H200-like and an sm_86-like device (99 KiB of opt-in shared memory, 84 SMs). */
    mrt_device_info devices[2];
    memset(devices, 0, sizeof devices);
    snprintf(devices[0].name, sizeof devices[0].name, "big");
    devices[0].cc_major = 9; /* sm_90: the wgmma kernel's picks are checked too */
    devices[0].sm_count = 132;
    devices[0].max_smem_optin = 227 * 1024;
    snprintf(devices[1].name, sizeof devices[1].name, "small");
    devices[1].sm_count = 84;
    devices[1].max_smem_optin = 99 * 1024;
    const int groups[] = {-1, 32, 64, 128};
    const int64_t dims[] = {64, 128, 192, 256, 704, 1344, 4096, 4160, 8192, 10944, 28672, 57344};
    const int64_t ms[] = {1, 16, 17, 64, 65, 512, 4097};
    size_t count = 0;
    mrt_config all[512];
    for (size_t d = 0; d < 2; d++)
        for (size_t g = 0; g < 4; g++)
            for (size_t ki = 0; ki < sizeof dims / sizeof dims[0]; ki++)
                for (size_t ni = 0; ni < sizeof dims / sizeof dims[0]; ni++)
                    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
                        const int64_t k = dims[ki], n = dims[ni];
                        if (groups[g] > 0 && k % groups[g])
                            continue;
                        mrt_config cfg;
                        mrt__marlin_heuristic(ms[mi], n, k, groups[g], &devices[d], &cfg);
                        char why[256] = "";
                        mrt__err err = {why, sizeof why};
                        if (mrt__marlin_config_fits(&err, &cfg, n, k, groups[g], &devices[d]) != MRT_OK ||
                            mrt__marlin_validate(&cfg, &err) != MRT_OK)
                            fail_msg("%s k=%lld n=%lld m=%lld g=%d: %s", devices[d].name, (long long)k, (long long)n,
                                     (long long)ms[mi], groups[g], why);
                        /* Every pick is among the configurations `warm` compiles. */
                        assert_int_equal(mrt_gemm_candidates(groups[g], all, 512, &count), MRT_OK);
                        size_t i = 0;
                        while (i < count && memcmp(&all[i], &cfg, sizeof cfg) != 0)
                            i++;
                        if (i == count)
                            fail_msg("k=%lld n=%lld m=%lld g=%d: pick not among mrt_gemm_candidates", (long long)k,
                                     (long long)n, (long long)ms[mi], groups[g]);
                    }
}

/* The mma.sync grid on 132 SMs: one block per SM, striped; fewer blocks where that gives
 * every stripe whole columns for little more work (at most 128 KiB of weights times
 * m-blocks per block, at least 80% of the SMs). */
static void test_gemm__grid_prefers_aligned_stripes(void **state)
{
    (void)state;
    const struct {
        int tmb, tnb, tkb;
        int64_t m, n, k, blocks;
    } cases[] = {
        {1, 16, 16, 1, 28672, 4096, 112},   /* stripes of 14 steps in columns of 16: 16 instead */
        {1, 16, 16, 16, 28672, 4096, 112},  /* same tiles (one chunk) */
        {2, 16, 16, 32, 28672, 4096, 112},  /* 2 more steps x 32 KiB x 2 m-blocks = 128 KiB */
        {4, 16, 16, 64, 28672, 4096, 132},  /* x 4 m-blocks: 256 KiB, too much */
        {1, 16, 16, 1, 57344, 8192, 132},   /* 55 -> 64 steps: 9 x 32 KiB more, too much */
        {1, 4, 16, 1, 4096, 4096, 132},     /* whole columns would leave half the SMs idle */
        {1, 16, 16, 1, 33792, 8192, 132},   /* stripes are whole columns already */
        {1, 16, 16, 1, 32768, 4096, 132},   /* 16 = one column each, on 128 of the blocks */
        {1, 4, 4, 1, 64, 64, 1},            /* one tile */
        /* Exact fractions of a column: every column cut into equal stripes. */
        {1, 8, 16, 1, 8192, 28672, 128},    /* stripes of 55 over columns of 112: halves, 56 */
        {4, 8, 16, 64, 8192, 28672, 128},   /* the same x 4 m-blocks: 64 KiB more */
        {1, 4, 16, 1, 3840, 12288, 120},    /* 22 over 48: halves of 24 on 120 blocks */
        {1, 4, 16, 1, 3072, 6144, 132},     /* 9 over 24: 12 would leave 96 blocks */
        {1, 4, 16, 1, 2560, 6144, 132},     /* 8 divides 24 already */
        {1, 16, 16, 1, 42240, 4096, 132},   /* 20 over 16: 32 would leave 83 blocks */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const mrt_config cfg = {.threads = 256, .thread_m_blocks = cases[i].tmb, .thread_n_blocks = cases[i].tnb,
                                .thread_k_blocks = cases[i].tkb, .stages = 4, .group_blocks = 8};
        const int64_t blocks = mrt__marlin_blocks(&cfg, cases[i].m, cases[i].n, cases[i].k, 132);
        if (blocks != cases[i].blocks)
            fail_msg("case %zu: m=%lld n=%lld k=%lld m%d.n%d.k%d: %lld blocks, expected %lld", i, (long long)cases[i].m,
                     (long long)cases[i].n, (long long)cases[i].k, cases[i].tmb, cases[i].tnb, cases[i].tkb,
                     (long long)blocks, (long long)cases[i].blocks);
    }
    /* The wgmma kernel: one block per output tile and K share, or whole tiles in full waves
     * and a stream-K tail (the leftover tiles' steps cut over as many blocks as keep 8 steps
     * each, at most one per SM, if that is more blocks than leftover tiles and the last wave
     * gets at least 2048 of K, 16 steps of 128, shorter). */
    const mrt_config wide = {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 16, .thread_k_blocks = 8,
                             .stages = 4, .group_blocks = 8};
    const mrt_config tall = {.threads = 256, .thread_m_blocks = 16, .thread_n_blocks = 8, .thread_k_blocks = 8,
                             .stages = 4, .group_blocks = 8};
    const struct {
        const mrt_config *cfg;
        int64_t m, n, k;
        int stream_k;
        int64_t blocks;
    } wgmma_cases[] = {
        /* 448 = 3 x 132 + 52 tiles; 52 x 64 steps / 8 > 132 blocks: shares of 26 steps
         * instead of 64 whole: 396 whole-tile blocks + 132 */
        {&wide, 256, 57344, 8192, 132, 528},
        {&wide, 64, 57344, 8192, 132, 264},  /* 224 = 132 + 92: shares of 45, 19 steps saved */
        {&wide, 256, 17920, 4992, 39, 171},  /* 140 = 132 + 8; 8 x 39 steps / 8 = 39 blocks */
        {&wide, 256, 28672, 1024, 0, 224},   /* 224 = 132 + 92, 92 x 8 / 8 = 92: not more */
        /* 896 = 6 x 132 + 104: shares of 51 steps, 13 (1664 of K) saved: not enough */
        {&wide, 512, 57344, 8192, 0, 896},
        {&wide, 256, 28672, 4096, 0, 224},   /* 224 = 132 + 92: shares of 23 of 32, 9 saved */
        {&wide, 128, 33792, 8192, 0, 132},   /* 132 tiles: a full wave */
        {&wide, 512, 8192, 28672, 0, 128},   /* 128 tiles, fewer than the SMs: no split (1) */
        /* 256-row tiles, N = 128: a block's two slots of 256 x 128 floats; the workspace
         * (2 x 132 slots of 128 x 128) holds 66 blocks' worth. 152 = 132 + 20 tiles: shares
         * of 20 steps of 64. */
        {&tall, 38912, 128, 8192, 66, 198},
    };
    for (size_t i = 0; i < sizeof wgmma_cases / sizeof wgmma_cases[0]; i++) {
        const mrt_config *cfg = wgmma_cases[i].cfg;
        const int stream_k = mrt__marlin_wgmma_stream_k(cfg, wgmma_cases[i].m, wgmma_cases[i].n, wgmma_cases[i].k, 132);
        const int64_t blocks = mrt__marlin_blocks(cfg, wgmma_cases[i].m, wgmma_cases[i].n, wgmma_cases[i].k, 132);
        if (stream_k != wgmma_cases[i].stream_k || blocks != wgmma_cases[i].blocks)
            fail_msg("wgmma case %zu: m=%lld n=%lld k=%lld: stream_k %d, %lld blocks; expected %d, %lld", i,
                     (long long)wgmma_cases[i].m, (long long)wgmma_cases[i].n, (long long)wgmma_cases[i].k, stream_k,
                     (long long)blocks, wgmma_cases[i].stream_k, (long long)wgmma_cases[i].blocks);
    }
    assert_int_equal(mrt__marlin_blocks(&wide, 128, 8192, 8192, 132), 32 * mrt__marlin_wgmma_splits(&wide, 128, 8192, 8192, 132));
}

/* The device the heuristic tests describe: an H200's compute capability, SM count and
 * opt-in shared memory; L2 size unknown (0) unless a test sets it. */
static mrt_device_info h200_like(void)
{
    mrt_device_info dev;
    memset(&dev, 0, sizeof dev);
    snprintf(dev.name, sizeof dev.name, "h200-like");
    dev.cc_major = 9;
    dev.sm_count = 132;
    dev.max_smem_optin = 227 * 1024;
    return dev;
}

/* An A100's: the heuristic tests' device without the wgmma kernel. */
static mrt_device_info a100_like(void)
{
    mrt_device_info dev = h200_like();
    snprintf(dev.name, sizeof dev.name, "a100-like");
    dev.cc_major = 8;
    dev.sm_count = 108;
    dev.max_smem_optin = 163 * 1024;
    return dev;
}

/* The heuristic's picks at M <= 16 on an H200-like device are the tuned winners of the
 * ANCHORS layers (`marlinrt tune` on an H200, docs/performance.md v10 and v11): the widest
 * tile that leaves at least 12 tiles per SM, on 256-deep steps; 64-wide tiles of one m-block
 * with 128 threads. */
static void test_gemm__heuristic_small_m_picks_the_tuned_winners(void **state)
{
    (void)state;
    mrt_device_info h200 = h200_like();
    const struct {
        int64_t n, k;
        const char *winner;
    } cases[] = {
        {4096, 4096, "t128.m1.n4.k16.s4.g8"},    /* 1024 tiles: 7.8 per SM even 64 wide */
        {28672, 4096, "t256.m1.n16.k16.s4.g8"},  /* 1792 tiles: 13.6 per SM */
        {4096, 14336, "t256.m1.n8.k16.s4.g8"},   /* 256 wide: 6.8 per SM; 128 wide: 13.6 */
        {8192, 8192, "t256.m1.n8.k16.s4.g8"},    /* 256 wide: 7.8 per SM; 128 wide: 15.5 */
        {57344, 8192, "t256.m1.n16.k16.s4.g8"},  /* 7168 tiles: 54 per SM */
        {8192, 28672, "t256.m1.n16.k16.s4.g8"},  /* 3584 tiles: 27 per SM */
    };
    const int64_t ms[] = {1, 8, 16};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (size_t j = 0; j < sizeof ms / sizeof ms[0]; j++) {
            mrt_config cfg;
            mrt__marlin_heuristic(ms[j], cases[i].n, cases[i].k, 128, &h200, &cfg);
            char name[64];
            mrt__config_format(&cfg, name, sizeof name);
            if (strcmp(name, cases[i].winner) != 0)
                fail_msg("k=%lld n=%lld m=%lld: picked %s, the tuned winner is %s", (long long)cases[i].k,
                         (long long)cases[i].n, (long long)ms[j], name, cases[i].winner);
        }
}

/* M = 17..64 on layers whose weights fit in L2 and N <= 4096: the heuristic picks what `marlinrt tune`
 * measured fastest on an H200 (every candidate timed, docs/performance.md v14), where the
 * old one-chunk rule (ceil(M/16) m-blocks) and the 80% fill rule for the wgmma tiles picked
 * configurations 1.1-2.7x slower. Stages and, for the wgmma tiles, the step depth are the
 * heuristic's fixed ones and are not compared where the winner differs only in them (marked
 * 0). Then the guard: without an L2 size, or with weights larger than half of it, M rows
 * stay one chunk (the weights read once). */
static void test_gemm__heuristic_mid_m_picks_the_tuned_winners(void **state)
{
    (void)state;
    mrt_device_info h200 = h200_like();
    h200.l2_bytes = 60 * 1024 * 1024;
    const struct {
        int64_t k, n, m;
        const char *winner;
        int exact; /* 0: threads, m-, n- and (mma.sync) k-blocks only */
    } cases[] = {
        {4096, 4096, 17, "t128.m1.n4.k16.s4.g8", 1},  /* old pick t256.m2.n4.k16.s4: 1.13x slower */
        {4096, 4096, 32, "t128.m1.n4.k16.s4.g8", 1},  /* 1.11x */
        {4096, 4096, 64, "t256.m2.n4.k16.s6.g8", 0},  /* old t256.m4.n4.k16.s3: 1.24x */
        {4096, 1024, 24, "t128.m1.n4.k16.s4.g8", 1},  /* 1.74x */
        {8192, 1024, 32, "t128.m1.n4.k16.s4.g8", 1},  /* 1.55x */
        {8192, 1024, 48, "t256.m2.n4.k16.s4.g8", 1},  /* old t256.m3: 1.44x */
        {8192, 2048, 48, "t256.m2.n4.k16.s8.g8", 0},  /* 1.13x */
        {4096, 12288, 17, "t256.m8.n16.k8.s4.g8", 1}, /* 73% fill; old mma.sync pick 1.14x */
        {4096, 12288, 64, "t256.m8.n16.k8.s4.g8", 1}, /* 1.38x */
        {5120, 5120, 32, "t256.m8.n16.k4.s4.g8", 0},  /* 76% fill; 1.36x */
        {4096, 6144, 64, "t256.m8.n16.k4.s6.g8", 0},  /* 73% fill; 1.49x */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mrt_config cfg, want;
        mrt__marlin_heuristic(cases[i].m, cases[i].n, cases[i].k, 128, &h200, &cfg);
        assert_int_equal(sscanf(cases[i].winner, "t%d.m%d.n%d.k%d.s%d.g%d", &want.threads, &want.thread_m_blocks,
                                &want.thread_n_blocks, &want.thread_k_blocks, &want.stages, &want.group_blocks),
                         6);
        char name[64];
        mrt__config_format(&cfg, name, sizeof name);
        const int wgmma = want.thread_m_blocks >= 8;
        const int same = cases[i].exact ? strcmp(name, cases[i].winner) == 0
                                        : cfg.threads == want.threads && cfg.thread_m_blocks == want.thread_m_blocks &&
                                              cfg.thread_n_blocks == want.thread_n_blocks &&
                                              (wgmma || cfg.thread_k_blocks == want.thread_k_blocks);
        if (!same)
            fail_msg("k=%lld n=%lld m=%lld: picked %s, the tuned winner is %s", (long long)cases[i].k,
                     (long long)cases[i].n, (long long)cases[i].m, name, cases[i].winner);
    }

    /* No L2 size known, or weights beyond half of it (8192 x 57344 on an A100-like part, where
     * the mma.sync kernel takes every M <= 64): one chunk of ceil(M/16) m-blocks. */
    mrt_device_info unknown = h200;
    unknown.l2_bytes = 0;
    mrt_device_info a100 = a100_like();
    a100.l2_bytes = 40 * 1024 * 1024;
    const struct {
        const mrt_device_info *dev;
        int64_t k, n, m;
        int m_blocks;
    } guard[] = {
        {&unknown, 4096, 4096, 32, 2}, {&unknown, 4096, 4096, 64, 4}, {&a100, 8192, 57344, 32, 2},
        {&a100, 8192, 57344, 17, 2},   {&a100, 4096, 4096, 32, 1},    {&a100, 4096, 4096, 64, 2},
        /* N = 8192 stays one chunk: 32-row chunks measured 0.74-0.87x on 1024 x 8192 and
         * 2048 x 8192 (end to end, old against new heuristic) */
        {&h200, 1024, 8192, 32, 2},    {&h200, 2048, 8192, 64, 4},
    };
    for (size_t i = 0; i < sizeof guard / sizeof guard[0]; i++) {
        mrt_config cfg;
        mrt__marlin_heuristic(guard[i].m, guard[i].n, guard[i].k, 128, guard[i].dev, &cfg);
        if (cfg.thread_m_blocks != guard[i].m_blocks)
            fail_msg("%s, l2 %d: k=%lld n=%lld m=%lld: %d m-blocks, expected %d", guard[i].dev->name,
                     guard[i].dev->l2_bytes, (long long)guard[i].k, (long long)guard[i].n, (long long)guard[i].m,
                     cfg.thread_m_blocks, guard[i].m_blocks);
    }
}

/* Where the heuristic runs the wgmma kernel: sm_90, M >= 128, N a multiple of 128; 128 x 256
 * tiles where they (K-split by the launch when fewer than the SMs, into shares >= 2688 deep,
 * >= 2048 where the last chunk of M has 64 rows or fewer) fill 80% of the SMs' waves, or,
 * at M <= 320 with a last chunk of 64 rows or fewer, 50% with shares >= 1600; else 128 x 128
 * (the rules measured on an H200, docs/performance.md v5 and v16).
 * At M 17..127, the 128 x 256 tiles (a chunk of up to 32 or 64 rows run with 32- or 64-token
 * wgmmas) where they fill the SMs, shares of any depth; else at 65..127 rows the 128 x 128
 * tiles on layers of more than 8 Mi weights (v16); else the mma.sync kernel; nowhere else.
 * Configurations of that kernel are valid only within its register and warpgroup limits,
 * and for sm_90 only. */
static void test_gemm__heuristic_uses_wgmma_where_it_pays(void **state)
{
    (void)state;
    mrt_device_info h200 = h200_like(), a100 = a100_like();
    const struct {
        int64_t m, n, k;
        int n_blocks; /* the wgmma tile width in 16s, 0 for the mma.sync kernel */
    } cases[] = {
        {512, 57344, 8192, 16}, /* 224 x 4 tiles of 128 x 256 */
        {128, 57344, 8192, 16}, /* 224: 85% of two waves */
        {256, 8192, 8192, 16},  /* 32 x 2 = 64 wide tiles, split in 2: shares of 4096 */
        {128, 8192, 8192, 8},   /* 32 wide tiles in 4 shares of 2048: 64 narrow ones in 2 */
        {192, 4096, 8192, 16},  /* the same shares, last chunk of 64 rows (narrow in wide tiles) */
        {512, 4096, 4096, 8},   /* 64 wide tiles in 2 shares of 2048: 128 narrow ones, unsplit */
        {192, 8192, 4096, 16},  /* 64 wide tiles in 2 shares of 2048, last chunk of 64 rows */
        {192, 5120, 5120, 16},  /* last chunk narrow: 40 wide tiles in 3 shares of 1706 */
        {160, 12288, 4096, 16}, /* last chunk narrow: 96 wide tiles unsplit, 73% of the SMs */
        {320, 8192, 8192, 16},  /* last chunk narrow: 48 wide tiles in 2 shares, 73% */
        {160, 8192, 2048, 8},   /* last chunk narrow: 64 wide tiles in 2 shares of 1024 */
        {192, 4096, 4096, 8},   /* last chunk narrow: 32 wide tiles in 4 shares of 1024 */
        {448, 6144, 4096, 8},   /* past 320 rows the 80% rule: 96 wide tiles unsplit, 73% */
        {128, 14336, 4096, 8},  /* 56 wide tiles in 2 shares of 2048: 112 narrow ones, unsplit */
        {384, 5120, 5120, 8},   /* 60 wide tiles in 2 shares of 2560: 120 narrow ones, unsplit */
        {128, 5120, 13824, 8},  /* 20 wide tiles in 6 shares of 2304: 40 narrow ones in 3 */
        {256, 4096, 11008, 16}, /* 32 wide tiles in 4 shares of 2752 */
        {256, 4096, 14336, 16}, /* 32 wide tiles in 4 shares of 3584 */
        {512, 4096, 6144, 16},  /* 64 wide tiles in 2 shares of 3072 */
        {256, 8192, 28672, 16}, /* 64 wide tiles split in 2: shares of 14336 */
        {128, 8192, 28672, 16}, /* 32 wide tiles split in 4: shares of 7168 */
        {128, 4096, 14336, 8},  /* 16 wide tiles would need 8 shares of 1792: 32 narrow ones, 4 shares */
        {512, 192, 4096, 0},    /* N not a multiple of 128 */
        {128, 4096, 4096, 8},   /* 16 wide tiles: 4 shares (8 steps each) leave half the SMs idle */
        {127, 57344, 8192, 16}, /* below 128 rows: 224 wide tiles, 85% of two waves */
        {100, 4096, 4096, 8},   /* 65..127 rows: 16 wide tiles in 4 shares, half the SMs: 128 x 128 */
        {96, 3072, 3072, 8},    /* 65..127 rows, 9 Mi weights: 128 x 128 */
        {127, 5120, 5120, 8},   /* 20 wide tiles in 6 shares: 128 x 128 */
        {65, 4096, 2048, 0},    /* 65..127 rows, 8 Mi weights: the mma.sync kernel */
        {96, 8192, 1024, 0},    /* the same */
        {80, 2048, 2048, 0},    /* 4 Mi weights: the mma.sync kernel */
        {64, 28672, 4096, 16},  /* 112 wide tiles, one wave */
        {64, 8192, 8192, 16},   /* 32 wide tiles in 4 shares */
        {64, 4096, 14336, 16},  /* 16 wide tiles in 8 shares of 1792: deep enough at 64 rows */
        {33, 57344, 8192, 16},  /* 224 wide tiles: 85% of two waves */
        {32, 57344, 8192, 16},  /* 224 wide tiles: 85% of two waves */
        {17, 28672, 4096, 16},  /* 112 wide tiles, one wave */
        {17, 4096, 14336, 16},  /* 16 wide tiles in 8 shares of 1792 */
        {32, 4096, 4096, 0},    /* 16 wide tiles in 4 shares: half the SMs */
        {16, 57344, 8192, 0},   /* below 17 rows */
        {64, 4096, 4096, 0},    /* 16 wide tiles in 4 shares: half the SMs */
        {64, 3968, 4096, 0},    /* N not a multiple of 256 */
        {4097, 4096, 1344, 16}, /* K not a multiple of 128: 64-deep steps */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mrt_config cfg;
        mrt__marlin_heuristic(cases[i].m, cases[i].n, cases[i].k, 128 <= cases[i].k && cases[i].k % 128 == 0 ? 128 : 64,
                              &h200, &cfg);
        const int wgmma = cfg.thread_m_blocks >= 8;
        if (wgmma != (cases[i].n_blocks != 0) || (wgmma && cfg.thread_n_blocks != cases[i].n_blocks))
            fail_msg("m=%lld n=%lld k=%lld: picked t%d.m%d.n%d.k%d, expected %s%d", (long long)cases[i].m,
                     (long long)cases[i].n, (long long)cases[i].k, cfg.threads, cfg.thread_m_blocks,
                     cfg.thread_n_blocks, cfg.thread_k_blocks, cases[i].n_blocks ? "wgmma n" : "mma.sync",
                     cases[i].n_blocks);
        if (wgmma)
            assert_int_equal(cfg.thread_k_blocks, cases[i].k % 128 == 0 ? 8 : 4);
        /* Never on another arch. */
        mrt__marlin_heuristic(cases[i].m, cases[i].n, cases[i].k, 64, &a100, &cfg);
        assert_true(cfg.thread_m_blocks <= 4);
    }

    const mrt_config good = {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 16, .thread_k_blocks = 8,
                             .stages = 4, .group_blocks = 8};
    assert_int_equal(mrt_config_supports_arch(MRT_KERNEL_MARLIN_W4A16, &good, 90), MRT_OK);
    assert_int_equal(mrt_config_supports_arch(MRT_KERNEL_MARLIN_W4A16, &good, 80), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_thread_errmsg(), "sm_90 only"));
    assert_int_equal(mrt_config_supports_arch(MRT_KERNEL_MARLIN_W4A16, &good, 89), MRT_ERR_UNSUPPORTED);
    assert_int_equal(mrt_config_supports_arch(MRT_KERNEL_MARLIN_W4A16, NULL, 90), MRT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mrt_config_supports_arch("nope", &good, 90), MRT_ERR_NOT_FOUND);
    /* The mma.sync kernel and the dequantizer compile everywhere. */
    const mrt_config mma = {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 8, .thread_k_blocks = 8,
                            .stages = 4, .group_blocks = 8};
    assert_int_equal(mrt_config_supports_arch(MRT_KERNEL_MARLIN_W4A16, &mma, 80), MRT_OK);
    const mrt_config dq = {.threads = 256, .group_blocks = 8};
    assert_int_equal(mrt_config_supports_arch(MRT_KERNEL_DEQUANT_W4, &dq, 80), MRT_OK);
    /* Limits: at most 64 accumulators per thread with 128 threads, 128 with 256; a warpgroup
     * takes 64 or 128 columns; 64- or 128-deep steps; 3..8 stages; 8 or 16 m-blocks. */
    const mrt_config bad[] = {
        {.threads = 128, .thread_m_blocks = 8, .thread_n_blocks = 8, .thread_k_blocks = 4, .stages = 4, .group_blocks = 8},
        {.threads = 256, .thread_m_blocks = 16, .thread_n_blocks = 16, .thread_k_blocks = 4, .stages = 4, .group_blocks = 8},
        {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 4, .thread_k_blocks = 4, .stages = 4, .group_blocks = 8},
        {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 8, .thread_k_blocks = 16, .stages = 4, .group_blocks = 8},
        {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 8, .thread_k_blocks = 4, .stages = 2, .group_blocks = 8},
        {.threads = 256, .thread_m_blocks = 12, .thread_n_blocks = 8, .thread_k_blocks = 4, .stages = 4, .group_blocks = 8},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (mrt_config_supports_arch(MRT_KERNEL_MARLIN_W4A16, &bad[i], 90) != MRT_ERR_UNSUPPORTED)
            fail_msg("bad wgmma configuration %zu accepted", i);
    /* A wgmma configuration on a device that is not sm_90 is refused before any launch. */
    char why[256] = "";
    mrt__err err = {why, sizeof why};
    assert_int_equal(mrt__marlin_config_fits(&err, &good, 8192, 8192, 128, &a100), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(why, "sm_90 only"));
    assert_int_equal(mrt__marlin_config_fits(NULL, &good, 8192, 8192, 128, &h200), MRT_OK);
}

/* ------------------------------------------------------------------------- */
/* The launch path, with the stand-in driver (tests/fake_cuda.c)              */
/* ------------------------------------------------------------------------- */

/* The path of this program, for the child processes that load the fake driver. */
static char self_path[4096];

/* One wgmma GEMM (t256.m8.n8.k8.s4, group 128) through the fake driver: prints its grid, the
 * kernel's last parameter (the stream-K block count) and the context's message (which must be
 * empty after a success, a fallback included), or the status. */
static void print_wgmma_launch(mrt_context *ctx, void *fake, int64_t m, int64_t n, int64_t k)
{
    void (*last)(int *, int *, unsigned *, int *) =
        (void (*)(int *, int *, unsigned *, int *))dlsym(fake, "mrt_fake_cuda_last_launch");
    unsigned (*grid)(void) = (unsigned (*)(void))dlsym(fake, "mrt_fake_cuda_last_grid");
    const mrt_config wide = {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 8, .thread_k_blocks = 8,
                             .stages = 4, .group_blocks = 8};
    mrt_gemm_args args = valid_args();
    args.m = m;
    args.n = n;
    args.k = k;
    mrt_status rc = mrt_gemm_workspace_size(ctx, args.n, &args.workspace_bytes);
    if (rc == MRT_OK)
        rc = mrt_gemm(ctx, NULL, &args, &wide);
    if (rc == MRT_OK) {
        int with_attributes = -1, overlap = -1, stream_k = -2;
        unsigned shared = 0;
        last(&with_attributes, &overlap, &shared, &stream_k);
        printf("wgmma m=%lld n=%lld k=%lld grid=%u stream_k=%d message=\"%s\"\n", (long long)args.m,
               (long long)args.n, (long long)args.k, grid ? grid() : 0, stream_k, mrt_errmsg(ctx));
    } else
        printf("wgmma: %s\n", mrt_status_str(rc));
}

/* Child (fake driver, compute capability from MRT_FAKE_CUDA_CC): one small GEMM with each
 * flag setting; prints for each what the driver was asked for. */
static int child_launch(const char *store)
{
    void *fake = dlopen(MRT_FAKE_CUDA_PATH, RTLD_NOW);
    void (*last)(int *, int *, unsigned *, int *) =
        fake ? (void (*)(int *, int *, unsigned *, int *))dlsym(fake, "mrt_fake_cuda_last_launch") : NULL;
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = store;
    mrt_context *ctx = NULL;
    if (!last || mrt_context_create(&opts, &ctx) != MRT_OK) {
        printf("setup failed: %s %s\n", fake ? "" : dlerror(), mrt_thread_errmsg());
        return 1;
    }
    const mrt_config cfg = {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 4, .thread_k_blocks = 16,
                            .stages = 4, .group_blocks = 8};
    const uint32_t settings[] = {0, MRT_GEMM_WEIGHTS_STATIC, MRT_GEMM_NO_OVERLAP};
    for (size_t i = 0; i < 3; i++) {
        mrt_gemm_args args = valid_args();
        args.m = 8;
        args.n = 256;
        args.k = 256;
        args.flags = settings[i];
        if (mrt_gemm_workspace_size(ctx, args.n, &args.workspace_bytes) != MRT_OK ||
            mrt_gemm(ctx, NULL, &args, &cfg) != MRT_OK) {
            printf("mrt_gemm: %s\n", mrt_errmsg(ctx));
            return 1;
        }
        int with_attributes = -1, overlap = -1, kernel_flags = -2;
        unsigned shared = 0;
        last(&with_attributes, &overlap, &shared, &kernel_flags);
        mrt_stats stats;
        mrt_get_stats(ctx, &stats);
        printf("flags=%u ex=%d overlap=%d shared=%u kernel_flags=%d overlapped=%llu\n", (unsigned)settings[i],
               with_attributes, overlap, shared, kernel_flags, (unsigned long long)stats.overlapped_launches);
    }
    /* The wgmma kernel (sm_90 only): 128 x 128 tiles of a 128 x 256 output are 2 tiles for
     * the fake's 8 SMs, so the launch splits K into 4 shares (32 steps of 128, 8 each). With
     * K = 2048 a share would get 4 steps: fewer than 8, so 2 shares of 8. With N = 1024 there
     * are 8 tiles: no split. With N = 1280, 10 tiles: 8 whole, and the 2 left over (64
     * steps) cut over 8 stream-K blocks, whose count is the kernel's last parameter. */
    const int64_t shapes[][3] = {
        {128, 256, 4096}, {128, 256, 2048}, {129, 256, 4096}, {128, 1024, 4096}, {128, 1280, 4096}};
    for (size_t i = 0; i < 5; i++)
        print_wgmma_launch(ctx, fake, shapes[i][0], shapes[i][1], shapes[i][2]);
    mrt_context_destroy(ctx);
    return 0;
}

/* Store lookups (hits and misses) ctx has made so far. */
static unsigned long long store_lookups(const mrt_context *ctx)
{
    mrt_stats stats;
    mrt_get_stats(ctx, &stats);
    return (unsigned long long)(stats.store_hits + stats.store_misses);
}

/* Child (fake driver, sm_90): a wgmma launch of M = 128, K = 4096 and the given N, then the
 * same launch again and the store lookups it made; then again with the context's notes of
 * missing stream-K cubins made a minute old (past their recheck time), and its lookups. */
static int child_wgmma(const char *store, int64_t n)
{
    void *fake = dlopen(MRT_FAKE_CUDA_PATH, RTLD_NOW);
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    opts.store_path = store;
    mrt_context *ctx = NULL;
    if (!fake || mrt_context_create(&opts, &ctx) != MRT_OK) {
        printf("setup failed: %s %s\n", fake ? "" : dlerror(), mrt_thread_errmsg());
        return 1;
    }
    print_wgmma_launch(ctx, fake, 128, n, 4096);
    unsigned long long before = store_lookups(ctx);
    print_wgmma_launch(ctx, fake, 128, n, 4096);
    printf("again: %llu store lookups\n", store_lookups(ctx) - before);
    for (int i = 0; i < ctx->sk_absent_count; i++)
        ctx->sk_absent[i].since_ms -= 60e3;
    before = store_lookups(ctx);
    print_wgmma_launch(ctx, fake, 128, n, 4096);
    printf("a minute later: %llu store lookups\n", store_lookups(ctx) - before);
    mrt_context_destroy(ctx);
    return 0;
}

/* What mrt_gemm asks the driver for. t256.m1.n4.k16.s4 with group 128 needs 4 stages x (512
 * A + 512 B + 16 scale int4) = 66560 bytes of shared memory. On sm_90 a launch is overlapped
 * (cuLaunchKernelEx with programmatic stream serialization) and asks for over half the
 * opt-in shared memory, 163 KiB / 2 + 1 KiB = 84480 bytes on the fake device, so no two
 * blocks share an SM; MRT_GEMM_WEIGHTS_STATIC reaches the kernel as flags = 1;
 * MRT_GEMM_NO_OVERLAP and sm_80 launch plainly with the kernel's own size. */
static void test_gemm__launch_path_with_fake_driver(void **state)
{
    (void)state;
    mrt_context *probe = mrt_test_context(NULL, MRT_CTX_NO_STORE);
    int major = 0, minor = 0;
    mrt_status rc = mrt_nvrtc_version(probe, &major, &minor);
    mrt_context_destroy(probe);
    if (rc != MRT_OK) {
        fprintf(stderr, "[SKIPPED] no NVRTC to compile the kernel for the fake driver\n");
        mrt_test_note_skip();
        skip();
    }
    char *dir = mrt_test_tempdir("gemm-launch");
    char *store = mrt_test_path(dir, "cache.db");
    const struct {
        int cc;
        const char *expected;
    } cases[] = {
        {90, "flags=0 ex=1 overlap=1 shared=84480 kernel_flags=0 overlapped=1\n"
             "flags=1 ex=1 overlap=1 shared=84480 kernel_flags=1 overlapped=2\n"
             "flags=2 ex=0 overlap=0 shared=66560 kernel_flags=0 overlapped=2\n"
             "wgmma m=128 n=256 k=4096 grid=8 stream_k=0 message=\"\"\n"
             "wgmma m=128 n=256 k=2048 grid=4 stream_k=0 message=\"\"\n"
             "wgmma m=129 n=256 k=4096 grid=8 stream_k=0 message=\"\"\n"
             "wgmma m=128 n=1024 k=4096 grid=8 stream_k=0 message=\"\"\n"
             "wgmma m=128 n=1280 k=4096 grid=16 stream_k=8 message=\"\"\n"},
        {80, "flags=0 ex=0 overlap=0 shared=66560 kernel_flags=0 overlapped=0\n"
             "flags=1 ex=0 overlap=0 shared=66560 kernel_flags=1 overlapped=0\n"
             "flags=2 ex=0 overlap=0 shared=66560 kernel_flags=0 overlapped=0\n"
             "wgmma: unsupported shape, configuration or architecture\n"
             "wgmma: unsupported shape, configuration or architecture\n"
             "wgmma: unsupported shape, configuration or architecture\n"
             "wgmma: unsupported shape, configuration or architecture\n"
             "wgmma: unsupported shape, configuration or architecture\n"},
    };
    for (size_t i = 0; i < 2; i++) {
        char command[8192];
        snprintf(command, sizeof command,
                 "MARLINRT_CUDA_DRIVER_PATH='%s' MRT_FAKE_CUDA_CC=%d '%s' child-launch '%s' 2>&1", MRT_FAKE_CUDA_PATH,
                 cases[i].cc, self_path, store);
        char *out = NULL;
        int status = mrt_test_run(command, &out);
        if (status != 0 || strcmp(out, cases[i].expected) != 0)
            fail_msg("sm_%d: child exit %d, output:\n%s\nexpected:\n%s", cases[i].cc, status, out,
                     cases[i].expected);
        free(out);
    }

    /* A store that has the plain wgmma cubin but not its stream-K form, where NVRTC is
     * unavailable: the launch with a tail runs the plain kernel's grid (10 tiles, no split)
     * instead of failing, and the context remembers the cubin is missing (the same launch
     * again asks the store nothing) until the note is older than its recheck time (then it
     * asks once: one miss). Once the stream-K cubin is in the store, it runs that, NVRTC or
     * not. */
    char *plain_store = mrt_test_path(dir, "plain.db");
    const struct {
        int hide_nvrtc;
        int n;
        const char *expected;
    } steps[] = {
        {0, 1024,
         "wgmma m=128 n=1024 k=4096 grid=8 stream_k=0 message=\"\"\n"
         "wgmma m=128 n=1024 k=4096 grid=8 stream_k=0 message=\"\"\nagain: 0 store lookups\n"
         "wgmma m=128 n=1024 k=4096 grid=8 stream_k=0 message=\"\"\na minute later: 0 store lookups\n"},
        {1, 1280,
         "wgmma m=128 n=1280 k=4096 grid=10 stream_k=0 message=\"\"\n"
         "wgmma m=128 n=1280 k=4096 grid=10 stream_k=0 message=\"\"\nagain: 0 store lookups\n"
         "wgmma m=128 n=1280 k=4096 grid=10 stream_k=0 message=\"\"\na minute later: 1 store lookups\n"},
        {0, 1280,
         "wgmma m=128 n=1280 k=4096 grid=16 stream_k=8 message=\"\"\n"
         "wgmma m=128 n=1280 k=4096 grid=16 stream_k=8 message=\"\"\nagain: 0 store lookups\n"
         "wgmma m=128 n=1280 k=4096 grid=16 stream_k=8 message=\"\"\na minute later: 0 store lookups\n"},
        {1, 1280,
         "wgmma m=128 n=1280 k=4096 grid=16 stream_k=8 message=\"\"\n"
         "wgmma m=128 n=1280 k=4096 grid=16 stream_k=8 message=\"\"\nagain: 0 store lookups\n"
         "wgmma m=128 n=1280 k=4096 grid=16 stream_k=8 message=\"\"\na minute later: 0 store lookups\n"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char command[8192];
        snprintf(command, sizeof command,
                 "%s MARLINRT_CUDA_DRIVER_PATH='%s' MRT_FAKE_CUDA_CC=90 '%s' child-wgmma '%s' %d 2>&1",
                 steps[i].hide_nvrtc ? "MARLINRT_NVRTC_PATH=/nonexistent/libnvrtc.so" : "", MRT_FAKE_CUDA_PATH,
                 self_path, plain_store, steps[i].n);
        char *out = NULL;
        int status = mrt_test_run(command, &out);
        if (status != 0 || strcmp(out, steps[i].expected) != 0)
            fail_msg("stream-K fallback step %zu: child exit %d, output:\n%s\nexpected:\n%s", i, status, out,
                     steps[i].expected);
        free(out);
    }
    free(plain_store);
    free(store);
    free(dir);
}

/* ------------------------------------------------------------------------- */
/* Numerics on the GPU                                                        */
/* ------------------------------------------------------------------------- */

typedef struct gpu {
    mrt_context *ctx;
    uint64_t workspace;
    size_t workspace_bytes;
} gpu;

/* One weight matrix on the host and the device. */
typedef struct weights {
    int64_t k, n;
    int group;
    int32_t *packed;
    mrt_half *scales;
    uint64_t d_packed, d_scales;
    double w_rms; /* rms of the dequantized weights, for the error bound */
} weights;

static void weights_make(gpu *g, weights *w, int64_t k, int64_t n, int group)
{
    w->k = k;
    w->n = n;
    w->group = group;
    float *dense = malloc((size_t)(k * n) * sizeof *dense);
    int64_t rows = mrt_scale_rows(k, group);
    w->packed = malloc((size_t)(k * n / 8) * sizeof *w->packed);
    w->scales = malloc((size_t)(rows * n) * sizeof *w->scales);
    assert_true(dense && w->packed && w->scales);
    double sum = 0;
    for (int64_t i = 0; i < k * n; i++) {
        dense[i] = mrt_test_uniform(-1.0f, 1.0f);
        sum += (double)dense[i] * dense[i];
    }
    assert_int_equal(mrt_quantize_f32(dense, k, n, group, w->packed, w->scales, NULL, NULL, 0), MRT_OK);
    w->w_rms = sqrt(sum / (double)(k * n));
    free(dense);
    w->d_packed = mrt_test_dev_alloc(g->ctx, (size_t)(k * n / 2));
    w->d_scales = mrt_test_dev_alloc(g->ctx, (size_t)(rows * n) * 2);
    mrt_test_upload(g->ctx, w->d_packed, w->packed, (size_t)(k * n / 2));
    mrt_test_upload(g->ctx, w->d_scales, w->scales, (size_t)(rows * n) * 2);
}

static void weights_free(gpu *g, weights *w)
{
    mrt_test_dev_free(g->ctx, w->d_packed);
    mrt_test_dev_free(g->ctx, w->d_scales);
    free(w->packed);
    free(w->scales);
}

/* Rows of C checked against the reference: all of them for small problems, else a sample
 * that always includes the first and last row and the edges of each 64-row chunk. */
static int64_t pick_rows(int64_t m, int64_t k, int64_t n, int64_t *rows, int64_t capacity)
{
    if (m * k * n <= (int64_t)1 << 28 && m <= capacity) {
        for (int64_t i = 0; i < m; i++)
            rows[i] = i;
        return m;
    }
    int64_t count = 0;
    const int64_t fixed[] = {0, 1, 15, 16, 63, 64, m / 2, m - 2, m - 1};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && count < capacity; i++)
        if (fixed[i] >= 0 && fixed[i] < m)
            rows[count++] = fixed[i];
    while (count < 16 && count < capacity)
        rows[count++] = (int64_t)(mrt_test_rand() % (uint64_t)m);
    return count;
}

/* Run C = A x W with cfg (NULL: automatic) and check sampled rows against the CPU reference;
 * run again and require bitwise equal output. */
static void check_gemm(gpu *g, weights *w, int64_t m, const mrt_config *cfg)
{
    const int64_t k = w->k, n = w->n;
    mrt_half *a = malloc((size_t)(m * k) * sizeof *a);
    mrt_half *c = malloc((size_t)(m * n) * sizeof *c);
    mrt_half *c2 = malloc((size_t)(m * n) * sizeof *c2);
    assert_true(a && c && c2);
    double a_sum = 0;
    for (int64_t i = 0; i < m * k; i++) {
        a[i] = mrt_float_to_half(mrt_test_uniform(-1.0f, 1.0f));
        double v = mrt_half_to_float(a[i]);
        a_sum += v * v;
    }
    uint64_t d_a = mrt_test_dev_alloc(g->ctx, (size_t)(m * k) * 2), d_c = mrt_test_dev_alloc(g->ctx, (size_t)(m * n) * 2);
    mrt_test_upload(g->ctx, d_a, a, (size_t)(m * k) * 2);

    mrt_gemm_args args;
    memset(&args, 0, sizeof args);
    args.a = d_a;
    args.b = w->d_packed;
    args.scales = w->d_scales;
    args.c = d_c;
    args.workspace = g->workspace;
    args.workspace_bytes = g->workspace_bytes;
    args.m = m;
    args.n = n;
    args.k = k;
    args.group_size = w->group;
    char cfg_text[64] = "auto";
    if (cfg)
        snprintf(cfg_text, sizeof cfg_text, "t%d.m%d.n%d.k%d.s%d.g%d", cfg->threads, cfg->thread_m_blocks,
                 cfg->thread_n_blocks, cfg->thread_k_blocks, cfg->stages, cfg->group_blocks);
    for (int run = 0; run < 2; run++) {
        mrt_test_memset(g->ctx, d_c, 0xFF, (size_t)(m * n) * 2);
        mrt_status rc = mrt_gemm(g->ctx, NULL, &args, cfg);
        if (rc != MRT_OK)
            fail_msg("mrt_gemm m=%lld n=%lld k=%lld g=%d %s: %s: %s", (long long)m, (long long)n, (long long)k,
                     w->group, cfg_text, mrt_status_str(rc), mrt_errmsg(g->ctx));
        mrt_test_download(g->ctx, run == 0 ? c : c2, d_c, (size_t)(m * n) * 2);
    }
    if (memcmp(c, c2, (size_t)(m * n) * 2) != 0) {
        int64_t first = -1, differ = 0;
        for (int64_t i = 0; i < m * n; i++)
            if (c[i] != c2[i]) {
                differ++;
                if (first < 0)
                    first = i;
            }
        fail_msg("m=%lld n=%lld k=%lld g=%d %s: two runs differ in %lld elements, first C[%lld][%lld]: 0x%04x then "
                 "0x%04x",
                 (long long)m, (long long)n, (long long)k, w->group, cfg_text, (long long)differ,
                 (long long)(first / n), (long long)(first % n), c[first], c2[first]);
    }

    /* Every element was written (no NaN left from the poison: the inputs make no NaN). */
    for (int64_t i = 0; i < m * n; i++)
        if ((c[i] & 0x7c00) == 0x7c00)
            fail_msg("m=%lld n=%lld k=%lld g=%d %s: C[%lld][%lld] = 0x%04x not written or not finite", (long long)m,
                     (long long)n, (long long)k, w->group, cfg_text, (long long)(i / n), (long long)(i % n), c[i]);

    int64_t rows[64];
    int64_t count = pick_rows(m, k, n, rows, 64);
    mrt_half *a_rows = malloc((size_t)(count * k) * sizeof *a_rows);
    float *ref = malloc((size_t)(count * n) * sizeof *ref);
    assert_true(a_rows && ref);
    for (int64_t r = 0; r < count; r++)
        memcpy(a_rows + r * k, a + rows[r] * k, (size_t)k * sizeof *a);
    assert_int_equal(mrt_reference_gemm(a_rows, w->packed, w->scales, count, n, k, w->group, ref, 0), MRT_OK);

    /* Error bound. The kernel rounds each dequantized weight to fp16 (relative 2^-11), sums
     * exact fp16 products in fp32, and rounds the result to fp16. The weight rounding adds up
     * like a random walk: about 2^-11 * sqrt(K) * rms(a) * rms(w); allow 8x that, plus one
     * fp16 rounding of the result. */
    const double a_rms = sqrt(a_sum / (double)(m * k));
    const double walk = ldexp(1.0, -11) * sqrt((double)k) * a_rms * w->w_rms;
    double worst = 0;
    for (int64_t r = 0; r < count; r++) {
        for (int64_t j = 0; j < n; j++) {
            const double want = ref[r * n + j], got = mrt_half_to_float(c[rows[r] * n + j]);
            const double err = fabs(got - want), bound = 8 * walk + ldexp(fabs(want), -10);
            if (err > bound)
                fail_msg("m=%lld n=%lld k=%lld g=%d %s: C[%lld][%lld] = %g, reference %g (error %g > bound %g)",
                         (long long)m, (long long)n, (long long)k, w->group, cfg_text, (long long)rows[r],
                         (long long)j, got, want, err, bound);
            if (err / bound > worst)
                worst = err / bound;
        }
    }
    if (worst > 0.5)
        fprintf(stderr, "[gemm] m=%lld n=%lld k=%lld g=%d %s: worst error %.2f of the bound\n", (long long)m,
                (long long)n, (long long)k, w->group, cfg_text, worst);
    mrt_test_dev_free(g->ctx, d_a);
    mrt_test_dev_free(g->ctx, d_c);
    free(a);
    free(c);
    free(c2);
    free(a_rows);
    free(ref);
}

static int gpu_setup(void **state)
{
    gpu *g = calloc(1, sizeof *g);
    assert_non_null(g);
    mrt_context_options opts;
    mrt_context_options_init(&opts);
    if (mrt_context_create(&opts, &g->ctx) != MRT_OK) {
        free(g);
        return -1;
    }
    mrt_device_info info;
    if (mrt_device_get_info(g->ctx, &info) == MRT_OK) {
        assert_int_equal(mrt_gemm_workspace_size(g->ctx, 1 << 16, &g->workspace_bytes), MRT_OK);
        g->workspace = mrt_test_dev_alloc(g->ctx, g->workspace_bytes);
        /* The contract: arrival counters and exchange areas zero, partial sums anything.
         * Poison the partials with NaN so that a slot read before it was written shows up
         * in C. */
        const size_t zeroed = mrt__marlin_zeroed_bytes(info.sm_count);
        mrt_test_memset(g->ctx, g->workspace, 0, zeroed);
        mrt_test_memset(g->ctx, g->workspace + zeroed, 0xFF, g->workspace_bytes - zeroed);
    }
    *state = g;
    return 0;
}

static int gpu_teardown(void **state)
{
    gpu *g = *state;
    if (g->workspace) {
        /* The kernels must leave the counters and exchange areas zero. */
        const size_t words = mrt__marlin_zeroed_bytes(mrt__device(g->ctx)->sm_count) / 4;
        int32_t *zeroed = malloc(words * 4);
        assert_non_null(zeroed);
        mrt_test_download(g->ctx, zeroed, g->workspace, words * 4);
        for (size_t i = 0; i < words; i++)
            if (zeroed[i] != 0)
                fail_msg("workspace word %zu (%s) left at 0x%08x", i,
                         i < (size_t)mrt__device(g->ctx)->sm_count ? "arrival counter" : "exchange area",
                         (unsigned)zeroed[i]);
        free(zeroed);
        mrt_test_dev_free(g->ctx, g->workspace);
    }
    mrt_context_destroy(g->ctx);
    free(g);
    return 0;
}

static void require_gpu(gpu *g)
{
    if (!g->workspace) {
        mrt_device_info info;
        mrt_status rc = mrt_device_get_info(g->ctx, &info);
        fprintf(stderr, "[SKIPPED] no GPU: %s: %s\n", mrt_status_str(rc), mrt_errmsg(g->ctx));
        mrt_test_note_skip();
        skip();
    }
}

/* MRT_TEST_QUICK=1 keeps a representative subset, for runs under compute-sanitizer. */
static int quick(void)
{
    const char *env = getenv("MRT_TEST_QUICK");
    return env && *env && *env != '0';
}

static const int64_t all_m[] = {1,  2,  3,  4,  5,   6,   7,   8,   9,   10,  11,  12,   13,  14,
                                15, 16, 17, 31, 32,  33,  63,  64,  65,  127, 128, 129, 255, 256,
                                511, 1024, 4097};

static void test_gemm__every_m_on_several_shapes(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    /* (K, N): the smallest legal, powers of two, and multiples of 64 that are not. */
    const int64_t shapes[][2] = {{64, 64}, {4096, 4096}, {1344, 704}, {2880, 960}, {192, 4160}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        if (quick() && s != 0 && s != 2)
            continue;
        weights w;
        weights_make(g, &w, shapes[s][0], shapes[s][1], 128 <= shapes[s][0] && shapes[s][0] % 128 == 0 ? 128 : -1);
        for (size_t i = 0; i < sizeof all_m / sizeof all_m[0]; i++)
            if (!quick() || all_m[i] == 1 || all_m[i] == 17 || all_m[i] == 65 || all_m[i] == 129)
                check_gemm(g, &w, all_m[i], NULL);
        weights_free(g, &w);
    }
}

static void test_gemm__large_square(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    if (quick()) {
        fprintf(stderr, "[quick] large square left out\n");
        return;
    }
    weights w;
    weights_make(g, &w, 8192, 8192, 128);
    const int64_t ms[] = {1, 16, 64, 65, 256, 1024};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        check_gemm(g, &w, ms[i], NULL);
    weights_free(g, &w);
}

/* A weight shape and group size, a configuration, and the M to check it at (0 ends the
 * list; MRT_TEST_QUICK=1 keeps every other one). */
typedef struct {
    int64_t k, n;
    int group;
    mrt_config cfg;
    int64_t ms[5];
} config_case;

static void check_config_cases(gpu *g, const config_case *cases, size_t count)
{
    for (size_t c = 0; c < count; c++) {
        weights w;
        weights_make(g, &w, cases[c].k, cases[c].n, cases[c].group);
        for (size_t i = 0; i < 5 && cases[c].ms[i]; i++)
            if (!quick() || i % 2 == 0)
                check_gemm(g, &w, cases[c].ms[i], &cases[c].cfg);
        weights_free(g, &w);
    }
}

/* Columns whose K range is cut into many stripes: K = 16384 on one or two 64-wide columns
 * with a 256-deep K step gives 64 or 128 tiles, so up to 64 blocks share each column (one
 * tile each) and the last to arrive sums up to 64 partial slots; 6 or 7 rows of 16 make
 * several M chunks, and K = 4992 (39 steps of 128) with M > 16 gives stripes that end inside a
 * column and open the next. */
static void test_gemm__columns_split_across_many_blocks(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const config_case cases[] = {
        {16384, 64, 128, {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 4, .thread_k_blocks = 16,
                          .stages = 4, .group_blocks = 8}, {1, 16, 17, 64, 100}},
        {16384, 128, 128, {.threads = 256, .thread_m_blocks = 2, .thread_n_blocks = 4, .thread_k_blocks = 16,
                           .stages = 3, .group_blocks = 8}, {1, 16, 17, 64, 100}},
        {4992, 384, 128, {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 8, .thread_k_blocks = 8,
                          .stages = 4, .group_blocks = 8}, {1, 16, 17, 64, 100}},
    };
    check_config_cases(g, cases, sizeof cases / sizeof cases[0]);
}

/* Launches that take fewer blocks than SMs so that every stripe is aligned to the columns
 * (see test_gemm__grid_prefers_aligned_stripes): 4096 x 28672 at M = 1, 16 and 32 runs 112
 * blocks of one column each on 132 SMs, no column shared; 12288 x 3840 on 64-wide columns
 * runs 120 blocks, every column cut into two halves of 24 steps. */
static void test_gemm__aligned_stripe_grid(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const int sms = mrt__device(g->ctx)->sm_count;
    weights w;
    weights_make(g, &w, 4096, 28672, 128);
    const mrt_config one = {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 16, .thread_k_blocks = 16,
                            .stages = 4, .group_blocks = 8};
    const mrt_config two = {.threads = 256, .thread_m_blocks = 2, .thread_n_blocks = 16, .thread_k_blocks = 16,
                            .stages = 4, .group_blocks = 8};
    if (sms == 132)
        assert_int_equal(mrt__marlin_blocks(&one, 1, 28672, 4096, sms), 112);
    else
        fprintf(stderr, "[gemm] %d SMs: the whole-column grid is %lld blocks here\n", sms,
                (long long)mrt__marlin_blocks(&one, 1, 28672, 4096, sms));
    check_gemm(g, &w, 1, &one);
    if (!quick()) {
        check_gemm(g, &w, 16, &one);
        check_gemm(g, &w, 32, &two);
    }
    weights_free(g, &w);

    const mrt_config narrow = {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 4, .thread_k_blocks = 16,
                               .stages = 4, .group_blocks = 8};
    if (sms == 132)
        assert_int_equal(mrt__marlin_blocks(&narrow, 1, 3840, 12288, sms), 120);
    weights_make(g, &w, 12288, 3840, 128);
    check_gemm(g, &w, 1, &narrow);
    check_gemm(g, &w, 16, &narrow);
    weights_free(g, &w);
}

/* Columns of one m-block cut into exactly two shares, which the 256-thread tiles sum through
 * the workspace's exchange areas (a 64-bit exchange per pair of sums, the second to arrive
 * writes C): 4096 x 4096 on 64-wide, 256-deep tiles is 1024 tiles, stripes of 8 steps
 * (halves) on 132 SMs; 4096 x 8192 on 128-wide tiles the same. M = 1, 7 and 16 (rows of
 * the fragments past M take no part), group scales and per channel (scaled as C is
 * written). check_gemm runs each twice and wants the same bits; gpu_teardown wants every
 * exchange word back at 0. Before them, a launch of n = 64 leaves its partial sums (where
 * a layout that moved with n would have put the wider launches' exchange areas). */
static void test_gemm__two_shares_exchange_sums(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const int sms = mrt__device(g->ctx)->sm_count;
    const struct {
        int64_t k, n;
        int group;
        mrt_config cfg;
    } cases[] = {
        {4096, 4096, 128, {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 4, .thread_k_blocks = 16,
                           .stages = 4, .group_blocks = 8}},
        {4096, 4096, -1, {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 4, .thread_k_blocks = 16,
                          .stages = 4, .group_blocks = -1}},
        {4096, 8192, 128, {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 8, .thread_k_blocks = 16,
                           .stages = 4, .group_blocks = 8}},
    };
    const int64_t ms[] = {1, 7, 16};
    weights w;
    weights_make(g, &w, 4096, 64, 128);
    const mrt_config one_column = {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 4,
                                   .thread_k_blocks = 16, .stages = 4, .group_blocks = 8};
    check_gemm(g, &w, 16, &one_column);
    weights_free(g, &w);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const mrt_config *cfg = &cases[c].cfg;
        const int64_t blocks = mrt__marlin_blocks(cfg, 1, cases[c].n, cases[c].k, sms);
        const int64_t steps = cases[c].k / (16 * cfg->thread_k_blocks);
        const int64_t tiles = steps * (cases[c].n / (16 * cfg->thread_n_blocks));
        const int64_t stripe = (tiles + blocks - 1) / blocks;
        if (sms >= 120 && sms <= 136 && 2 * stripe != steps)
            fail_msg("k=%lld n=%lld on %d SMs: stripes of %lld steps, expected %lld", (long long)cases[c].k,
                     (long long)cases[c].n, sms, (long long)stripe, (long long)(steps / 2));
        else if (2 * stripe != steps)
            fprintf(stderr, "[gemm] %d SMs: k=%lld n=%lld runs stripes of %lld steps, not two per column\n", sms,
                    (long long)cases[c].k, (long long)cases[c].n, (long long)stripe);
        weights_make(g, &w, cases[c].k, cases[c].n, cases[c].group);
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
            if (!quick() || i != 1)
                check_gemm(g, &w, ms[i], cfg);
        weights_free(g, &w);
    }
}

/* Stripes that run through several columns, each column a segment with its own pipeline
 * fill and epilogue. On 132 SMs: K = 512 in 256-deep steps (2 per column), M = 100 (7
 * chunks of 16 rows, so the chunk changes inside stripes) on 116 blocks, stripes of 4 whole
 * columns; M = 1 one tile per block (every column shared by two); K = 384 in 128-deep steps
 * with one sub-step per warp (register buffers alternate tile by tile), M = 33: stripes of 5
 * over columns of 3 (a shared column at each end, whole ones between); per-channel scales
 * with 2 m-blocks in stripes of 5 over columns of 2; an 8-stage ring longer than the
 * stripes. Last, 256-wide columns (the tiles with the look-ahead hand-over) of 16 steps in
 * stripes of 20 on 132 SMs, 4096 x 42240: 99 of the 132 blocks end their stripe with the
 * first steps of a column whose rest the next block finished at its start, so they find
 * it counted in and skip their own slot (a slot read by mistake would be NaN poison), at
 * M = 1 and 16 (fp32 scales) and M = 32 (2 m-blocks). */
static void test_gemm__stripes_through_many_columns(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const config_case cases[] = {
        {512, 4224, 128, {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 4, .thread_k_blocks = 16,
                          .stages = 4, .group_blocks = 8}, {1, 17, 100}},
        {384, 4224, 128, {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 4, .thread_k_blocks = 8,
                          .stages = 4, .group_blocks = 8}, {33, 100}},
        {512, 4480, -1, {.threads = 256, .thread_m_blocks = 2, .thread_n_blocks = 4, .thread_k_blocks = 16,
                         .stages = 3, .group_blocks = -1}, {100}},
        {512, 4224, 128, {.threads = 128, .thread_m_blocks = 1, .thread_n_blocks = 4, .thread_k_blocks = 16,
                          .stages = 8, .group_blocks = 8}, {1, 100}},
        {4096, 42240, 128, {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 16, .thread_k_blocks = 16,
                            .stages = 4, .group_blocks = 8}, {1, 16}},
        {4096, 42240, 128, {.threads = 256, .thread_m_blocks = 2, .thread_n_blocks = 16, .thread_k_blocks = 16,
                            .stages = 4, .group_blocks = 8}, {32}},
    };
    check_config_cases(g, cases, sizeof cases / sizeof cases[0]);
}

/* Back-to-back GEMMs where each reads the previous one's output, launched with programmatic
 * dependent launch on sm_90 (and the weights-static prefetch): if a kernel touched A, C or
 * the shared workspace before its grid wait, the chain would read poison or half-written
 * sums. The same chain with plain launches and a sync between steps is the reference; the
 * two must agree bitwise. K = N = 1024 with 256-deep steps on 64-wide tiles splits every
 * column over 4 blocks, so the workspace counters are reused from launch to launch. */
static void test_gemm__chained_launches_wait_for_their_inputs(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const int64_t m = 16, kn = 1024, steps = 3;
    const mrt_config cfg = {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 4, .thread_k_blocks = 16,
                            .stages = 4, .group_blocks = 8};
    weights w;
    weights_make(g, &w, kn, kn, 128);
    const size_t bytes = (size_t)(m * kn) * 2;
    mrt_half *a = malloc(bytes), *chained = malloc(bytes), *stepped = malloc(bytes);
    assert_true(a && chained && stepped);
    /* Small inputs keep the chain finite: each step multiplies the size by about 18. */
    for (int64_t i = 0; i < m * kn; i++)
        a[i] = mrt_float_to_half(mrt_test_uniform(-1.0f, 1.0f) / 64.0f);
    uint64_t buf[7];
    for (int i = 0; i <= steps; i++) {
        buf[i] = mrt_test_dev_alloc(g->ctx, bytes);
        mrt_test_memset(g->ctx, buf[i], 0xFF, bytes);
    }
    mrt_test_upload(g->ctx, buf[0], a, bytes);

    mrt_stats before, after;
    assert_int_equal(mrt_get_stats(g->ctx, &before), MRT_OK);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i <= steps; i++)
            mrt_test_memset(g->ctx, buf[i], 0xFF, bytes);
        for (int i = 1; i <= steps; i++) {
            mrt_gemm_args args;
            memset(&args, 0, sizeof args);
            args.a = buf[i - 1];
            args.b = w.d_packed;
            args.scales = w.d_scales;
            args.c = buf[i];
            args.workspace = g->workspace;
            args.workspace_bytes = g->workspace_bytes;
            args.m = m;
            args.n = kn;
            args.k = kn;
            args.group_size = 128;
            args.flags = pass == 0 ? MRT_GEMM_WEIGHTS_STATIC : MRT_GEMM_NO_OVERLAP;
            assert_int_equal(mrt_gemm(g->ctx, NULL, &args, &cfg), MRT_OK);
            if (pass == 1)
                mrt_test_download(g->ctx, stepped, buf[i], bytes); /* a full sync between steps */
        }
        mrt_test_download(g->ctx, pass == 0 ? chained : stepped, buf[steps], bytes);
        if (pass == 0)
            assert_int_equal(mrt_get_stats(g->ctx, &after), MRT_OK);
    }
    for (int64_t i = 0; i < m * kn; i++)
        if ((stepped[i] & 0x7c00) == 0x7c00)
            fail_msg("reference chain element %lld is not finite (0x%04x)", (long long)i, stepped[i]);
    if (memcmp(chained, stepped, bytes) != 0)
        fail_msg("GEMMs chained on one stream differ from the same GEMMs run one at a time");
    /* Overlapped launches are the default on sm_90 and later, never before. */
    const mrt_device_info *dev = mrt__device(g->ctx);
    const uint64_t overlapped = after.overlapped_launches - before.overlapped_launches;
    if (dev->cc_major >= 9)
        assert_int_equal(overlapped, (uint64_t)steps);
    else
        assert_int_equal(overlapped, 0);
    mrt_stats end;
    assert_int_equal(mrt_get_stats(g->ctx, &end), MRT_OK);
    assert_int_equal(end.overlapped_launches, after.overlapped_launches);
    for (int i = 0; i <= steps; i++)
        mrt_test_dev_free(g->ctx, buf[i]);
    free(a);
    free(chained);
    free(stepped);
    weights_free(g, &w);
}

static void test_gemm__every_group_size(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const int groups[] = {-1, 32, 64, 128};
    const int64_t ms[] = {1, 7, 16, 33, 64, 100, 257};
    for (size_t gi = 0; gi < 4; gi++) {
        weights w;
        weights_make(g, &w, 1536, 1280, groups[gi]);
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
            if (!quick() || i % 3 == 0)
                check_gemm(g, &w, ms[i], NULL);
        weights_free(g, &w);
    }
    /* One group as deep as K runs as per-channel. */
    weights w;
    weights_make(g, &w, 128, 512, 128);
    check_gemm(g, &w, 5, NULL);
    weights_free(g, &w);
}

static void test_gemm__every_configuration(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const int groups[] = {-1, 32, 64, 128};
    const int64_t ms[] = {1, 16, 33, 64, 65, 200};
    for (size_t gi = 0; gi < 4; gi++) {
        weights w;
        weights_make(g, &w, 1024, 768, groups[gi]);
        size_t count = 0;
        assert_int_equal(mrt_gemm_candidates(groups[gi], NULL, 0, &count), MRT_OK);
        mrt_config *configs = calloc(count, sizeof *configs);
        assert_int_equal(mrt_gemm_candidates(groups[gi], configs, count, &count), MRT_OK);
        for (size_t c = 0; c < count; c++) {
            int want_group = groups[gi] == -1 ? -1 : groups[gi] / 16;
            if (configs[c].group_blocks != want_group || 768 % (16 * configs[c].thread_n_blocks))
                continue;
            /* The repertoire is device-independent; the heuristic shrinks what does not fit. */
            if (mrt__marlin_config_fits(NULL, &configs[c], 768, 1024, groups[gi], mrt__device(g->ctx)) != MRT_OK)
                continue;
            for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
                if (!quick() || i == 0 || i == 4)
                    check_gemm(g, &w, ms[i], &configs[c]);
        }
        free(configs);
        weights_free(g, &w);
    }
}

/* Skips the calling test, and says so, on a device without the wgmma kernel. */
static void skip_unless_sm90(const mrt_device_info *dev)
{
    if (dev->cc_major == 9 && dev->cc_minor == 0)
        return;
    fprintf(stderr, "[SKIPPED] the wgmma kernel needs sm_90; device %s is sm_%d%d\n", dev->name, dev->cc_major,
            dev->cc_minor);
    mrt_test_note_skip();
    skip();
}

/* The sm_90 wgmma kernel (thread_m_blocks 8 or 16) over its tile shapes, K depths, pipeline
 * depths and every group size, at M that leave the last token tile nearly empty (1, 129),
 * half full (200, 320) or full (256, 512), and at M whose one chunk runs the narrower
 * wgmmas (a quarter or half of the tile's rows: 32 at the quarter's edge, 33 and 64 on
 * 128-row tiles, 100 on 256-row ones; 1, 129 and 320 end with such a chunk too). On another
 * GPU it is refused, and the test says it skipped. */
static void test_gemm__wgmma_kernel(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const mrt_device_info *dev = mrt__device(g->ctx);
    if (!(dev->cc_major == 9 && dev->cc_minor == 0)) {
        weights w;
        weights_make(g, &w, 256, 256, 128);
        mrt_config cfg = {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 8, .thread_k_blocks = 4,
                          .stages = 4, .group_blocks = 8};
        mrt_gemm_args args = valid_args();
        args.a = args.c = w.d_packed; /* never launched: only the config check runs */
        args.b = w.d_packed;
        args.scales = w.d_scales;
        args.workspace = g->workspace;
        args.workspace_bytes = g->workspace_bytes;
        args.m = 128;
        args.n = args.k = 256;
        assert_int_equal(mrt_gemm(g->ctx, NULL, &args, &cfg), MRT_ERR_UNSUPPORTED);
        weights_free(g, &w);
        skip_unless_sm90(dev);
    }
    /* {threads, m-blocks, n-blocks, k-blocks, stages} */
    const int tiles[][5] = {{256, 8, 8, 4, 4},  {256, 8, 16, 4, 4}, {256, 16, 8, 4, 3}, {128, 8, 4, 4, 4},
                            {256, 8, 8, 8, 3},  {256, 8, 16, 8, 4}, {128, 8, 4, 4, 6},  {256, 16, 8, 8, 3}};
    const int groups[] = {128, -1, 32, 64};
    const int64_t ms[] = {129, 1, 64, 256, 200, 512, 320, 32, 33, 100};
    for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
        if (quick() && gi > 1)
            continue;
        weights w;
        weights_make(g, &w, 1536, 768, groups[gi]);
        for (size_t t = 0; t < sizeof tiles / sizeof tiles[0]; t++) {
            if (gi > 0 && t % 2 != gi % 2)
                continue; /* every tile shape with group 128, half of them with each other group */
            const mrt_config cfg = {.threads = tiles[t][0],
                                    .thread_m_blocks = tiles[t][1],
                                    .thread_n_blocks = tiles[t][2],
                                    .thread_k_blocks = tiles[t][3],
                                    .stages = tiles[t][4],
                                    .group_blocks = groups[gi] == -1 ? -1 : groups[gi] / 16};
            assert_int_equal(mrt_config_validate(g->ctx, MRT_KERNEL_MARLIN_W4A16, &cfg), MRT_OK);
            if (768 % (16 * cfg.thread_n_blocks) != 0)
                continue;
            for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
                if (!quick() || i < 3)
                    check_gemm(g, &w, ms[i], &cfg);
        }
        weights_free(g, &w);
    }
}

/* The wgmma kernel's K split (launches with fewer output tiles than SMs): K = 16384 on one
 * 128 x 128 tile is cut into 16 shares of 8 steps (the last to arrive sums 16 slots); three
 * token tiles (M = 300) make three tiles of 16 shares; K = 4992 (39 steps of 128) gives
 * shares of unequal length (9 and 10 steps), at M = 129 and M = 1; M = 64 and 20 split the
 * same way on the 64- and 32-wide wgmmas of a chunk that small; 48 tiles (N = 6144) split
 * in two, where the last to arrive adds the other share's slot to its own sums. Then one
 * wide GEMM (64 tiles in two shares each) run 12 times must give the same bits every time: the pipeline keeps a wgmma in flight across the dequantization and
 * the stage barriers, and a register or shared-memory hazard there shows up as run-to-run
 * differences. Skipped (and said so) off sm_90. */
static void test_gemm__wgmma_k_split_and_repeatability(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const mrt_device_info *dev = mrt__device(g->ctx);
    skip_unless_sm90(dev);
    const mrt_config narrow = {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 8, .thread_k_blocks = 8,
                               .stages = 4, .group_blocks = 8};
    const struct {
        int64_t k, n, m;
        int splits;
    } cases[] = {{16384, 128, 128, 16}, {16384, 128, 300, 16}, {4992, 256, 129, 4},
                 {4992, 256, 1, 4},     {16384, 128, 64, 16},  {4992, 256, 20, 4},
                 {4096, 6144, 128, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (quick() && i == 1)
            continue;
        const int splits = mrt__marlin_wgmma_splits(&narrow, cases[i].m, cases[i].n, cases[i].k, dev->sm_count);
        if (dev->sm_count >= 128 && splits != cases[i].splits)
            fail_msg("k=%lld n=%lld m=%lld: %d K shares, expected %d", (long long)cases[i].k, (long long)cases[i].n,
                     (long long)cases[i].m, splits, cases[i].splits);
        weights w;
        weights_make(g, &w, cases[i].k, cases[i].n, 128);
        check_gemm(g, &w, cases[i].m, &narrow);
        weights_free(g, &w);
    }

    const mrt_config wide = {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 16, .thread_k_blocks = 8,
                             .stages = 4, .group_blocks = 8};
    const int64_t m = 512, k = 4096, n = 4096;
    weights w;
    weights_make(g, &w, k, n, 128);
    const size_t a_bytes = (size_t)(m * k) * 2, c_bytes = (size_t)(m * n) * 2;
    mrt_half *a = malloc(a_bytes), *first = malloc(c_bytes), *again = malloc(c_bytes);
    assert_true(a && first && again);
    for (int64_t i = 0; i < m * k; i++)
        a[i] = mrt_float_to_half(mrt_test_uniform(-1.0f, 1.0f));
    const uint64_t d_a = mrt_test_dev_alloc(g->ctx, a_bytes), d_c = mrt_test_dev_alloc(g->ctx, c_bytes);
    mrt_test_upload(g->ctx, d_a, a, a_bytes);
    mrt_gemm_args args;
    memset(&args, 0, sizeof args);
    args.a = d_a;
    args.b = w.d_packed;
    args.scales = w.d_scales;
    args.c = d_c;
    args.workspace = g->workspace;
    args.workspace_bytes = g->workspace_bytes;
    args.m = m;
    args.n = n;
    args.k = k;
    args.group_size = 128;
    const int runs = quick() ? 3 : 12;
    for (int run = 0; run < runs; run++) {
        mrt_test_memset(g->ctx, d_c, 0xFF, c_bytes);
        assert_int_equal(mrt_gemm(g->ctx, NULL, &args, &wide), MRT_OK);
        mrt_test_download(g->ctx, run == 0 ? first : again, d_c, c_bytes);
        if (run > 0 && memcmp(first, again, c_bytes) != 0) {
            int64_t differ = 0, at = -1;
            for (int64_t i = 0; i < m * n; i++)
                if (first[i] != again[i] && (differ++, at < 0))
                    at = i;
            fail_msg("run %d differs from run 0 in %lld elements, first C[%lld][%lld]", run, (long long)differ,
                     (long long)(at / n), (long long)(at % n));
        }
    }
    mrt_test_dev_free(g->ctx, d_a);
    mrt_test_dev_free(g->ctx, d_c);
    free(a);
    free(first);
    free(again);
    /* And the result is right (this also runs it twice more). */
    check_gemm(g, &w, m, &wide);
    weights_free(g, &w);
}

/* The wgmma kernel's stream-K tail, on shapes made for the device's SM count: sms + 8 output
 * tiles, so 8 are left over after a full wave and their K steps are cut over 8*steps/8 =
 * steps blocks (39 for K = 4992, 32 for K = 4096). K = 4992 puts block boundaries inside
 * tiles (a block sums the end of one tile and the start of the next, two segments, the
 * second tile's first share its last one); K = 4096 splits each tile exactly in 4. M = 256
 * runs full width, M = 192 mixes full and 64-row chunks in the tail (a block's two
 * segments then differ in width), M = 64 and 20 run the narrow wgmmas. Last, 1.5 x sms tiles
 * at K = 4096: the sms / 2 tail tiles' 32 steps are cut over sms blocks, every tile in two
 * halves (an even SM count), the last half to arrive adding the other's slot to its own
 * sums. */
static void test_gemm__wgmma_stream_k_tail(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    const mrt_device_info *dev = mrt__device(g->ctx);
    skip_unless_sm90(dev);
    const mrt_config wide = {.threads = 256, .thread_m_blocks = 8, .thread_n_blocks = 16, .thread_k_blocks = 8,
                             .stages = 4, .group_blocks = 8};
    const int64_t sms = dev->sm_count;
    const struct {
        int64_t m, n, k;
        int stream_k;
    } cases[] = {{256, 256 * (sms + 8) / 2, 4992, 39},
                 {64, 256 * (sms + 8), 4096, 32},
                 {192, 256 * (sms + 8) / 2, 4992, 39},
                 {20, 256 * (sms + 8), 4992, 39},
                 {128, 256 * (sms + sms / 2), 4096, (int)sms}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (quick() && i >= 2)
            continue;
        if (sms % 2 != 0 && cases[i].m > 128) {
            /* sms + 8 tiles of two chunks need an even SM count; 64 and 20 still run */
            fprintf(stderr, "[SKIPPED] m=%lld: %lld SMs is odd\n", (long long)cases[i].m, (long long)sms);
            continue;
        }
        const int stream_k = mrt__marlin_wgmma_stream_k(&wide, cases[i].m, cases[i].n, cases[i].k, dev->sm_count);
        if (stream_k != (sms < cases[i].stream_k ? sms : cases[i].stream_k))
            fail_msg("m=%lld n=%lld k=%lld: %d stream-K blocks, expected %d", (long long)cases[i].m,
                     (long long)cases[i].n, (long long)cases[i].k, stream_k, cases[i].stream_k);
        weights w;
        weights_make(g, &w, cases[i].k, cases[i].n, 128);
        check_gemm(g, &w, cases[i].m, &wide);
        weights_free(g, &w);
    }
}

static void test_gemm__too_small_workspace_is_refused(void **state)
{
    gpu *g = *state;
    require_gpu(g);
    size_t need = 0;
    assert_int_equal(mrt_gemm_workspace_size(g->ctx, 4096, &need), MRT_OK);
    mrt_gemm_args args = valid_args();
    args.n = 4096;
    args.k = 4096;
    args.workspace_bytes = need - 1;
    mrt_stats before, after;
    assert_int_equal(mrt_get_stats(g->ctx, &before), MRT_OK);
    assert_int_equal(mrt_gemm(g->ctx, NULL, &args, NULL), MRT_ERR_WORKSPACE);
    assert_non_null(strstr(mrt_errmsg(g->ctx), "workspace_bytes"));
    /* A tile that does not divide the shape, and a group that does not match. */
    args.workspace_bytes = need;
    args.n = 192;
    mrt_config cfg = {.threads = 256, .thread_m_blocks = 1, .thread_n_blocks = 8, .thread_k_blocks = 8, .stages = 4,
                      .group_blocks = 8};
    assert_int_equal(mrt_gemm(g->ctx, NULL, &args, &cfg), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_errmsg(g->ctx), "does not divide n = 192"));
    args.n = 4096;
    cfg.group_blocks = 4;
    assert_int_equal(mrt_gemm(g->ctx, NULL, &args, &cfg), MRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(mrt_errmsg(g->ctx), "group_blocks"));
    assert_int_equal(mrt_get_stats(g->ctx, &after), MRT_OK);
    assert_int_equal(after.launches, before.launches);
}

/* argv[1] "cpu" or "gpu" runs one group; no argument runs both. argv[2], if given, keeps the
 * tests whose names match it (cmocka's filter: * and ? wildcards). */
int main(int argc, char **argv)
{
    if (!realpath(argv[0], self_path))
        snprintf(self_path, sizeof self_path, "%s", argv[0]);
    if (argc == 3 && strcmp(argv[1], "child-launch") == 0)
        return child_launch(argv[2]);
    if (argc == 4 && strcmp(argv[1], "child-wgmma") == 0)
        return child_wgmma(argv[2], atoll(argv[3]));
    const char *only = argc > 1 ? argv[1] : "";
    if (argc > 2)
        cmocka_set_test_filter(argv[2]);
    const struct CMUnitTest cpu_tests[] = {
        cmocka_unit_test(test_gemm__arguments_checked_before_gpu_use),
        cmocka_unit_test(test_gemm__candidates_are_valid_and_cover_every_group),
        cmocka_unit_test(test_gemm__heuristic_fits_shape_and_device),
        cmocka_unit_test(test_gemm__heuristic_small_m_picks_the_tuned_winners),
        cmocka_unit_test(test_gemm__heuristic_mid_m_picks_the_tuned_winners),
        cmocka_unit_test(test_gemm__heuristic_uses_wgmma_where_it_pays),
        cmocka_unit_test(test_gemm__grid_prefers_aligned_stripes),
        cmocka_unit_test(test_gemm__launch_path_with_fake_driver),
    };
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_gemm__too_small_workspace_is_refused),
        cmocka_unit_test(test_gemm__columns_split_across_many_blocks),
        cmocka_unit_test(test_gemm__aligned_stripe_grid),
        cmocka_unit_test(test_gemm__two_shares_exchange_sums),
        cmocka_unit_test(test_gemm__stripes_through_many_columns),
        cmocka_unit_test(test_gemm__chained_launches_wait_for_their_inputs),
        cmocka_unit_test(test_gemm__every_m_on_several_shapes),
        cmocka_unit_test(test_gemm__every_group_size),
        cmocka_unit_test(test_gemm__every_configuration),
        cmocka_unit_test(test_gemm__wgmma_kernel),
        cmocka_unit_test(test_gemm__wgmma_k_split_and_repeatability),
        cmocka_unit_test(test_gemm__wgmma_stream_k_tail),
        cmocka_unit_test(test_gemm__large_square),
    };
    int failures = 0;
    if (strcmp(only, "gpu") != 0)
        failures += cmocka_run_group_tests(cpu_tests, NULL, NULL);
    if (strcmp(only, "cpu") != 0)
        failures += cmocka_run_group_tests(gpu_tests, gpu_setup, gpu_teardown);
    return mrt_test_exit_status(failures);
}
