/*
 * W4A16 GEMM: argument checking, configuration choice, workspace layout and launch of the
 * marlin_w4a16 kernel (kernel_src/marlin_w4a16.cu; docs/kernel.md describes the design).
 *
 * Launch contract, mirrored from the kernel source:
 *   grid      (G, 1, 1), G = marlin_blocks() <= min(SM count, tiles), tiles = (k / thread_k) *
 *             (n / thread_n) * ceil(rows / (16 * thread_m_blocks)); each launch covers at
 *             most rows_per_launch() rows of M, so every index fits in 32 bits
 *   block     (threads, 1, 1)
 *   smem      marlin_smem_bytes(cfg), the same formula as marlin_w4a16_smem_bytes<>()
 *   params    A, B, C, s (device pointers), prob_m, prob_n, prob_k (int), locks, partials,
 *             flags (int: 1 = weights static, from MRT_GEMM_WEIGHTS_STATIC); the wgmma
 *             kernel ignores its last parameter, and its stream-K form (marlin_w4a16_sk,
 *             launched where wgmma_stream_k is not 0) takes the stream-K block count there
 *   launch    with programmatic dependent launch where mrt__launch_can_overlap, unless
 *             MRT_GEMM_NO_OVERLAP
 *   workspace [counters: SM count int32, padded to 256 bytes][exchange: SM count areas of
 *             16 x 256 fp32][partials: 2 x SM count slots of 128 x min(n, 256) fp32];
 *             counters and exchange are zero on entry and left zero on exit, the partials
 *             need no particular content. The kernel finds the exchange areas
 *             at the counters + ceil(G / 64) * 256 bytes (G <= SM count), locks = the
 *             workspace, partials after both.
 */
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "runtime/runtime.h"
#include "runtime/tune.h"

/* Largest value any 32-bit index inside the kernel may reach; half of INT32_MAX leaves room
 * for the sums the kernel forms next to them (stripe ends, next-slice starts). */
#define MARLIN_INDEX_LIMIT ((int64_t)1 << 30)
/* Largest K or N accepted, so that one launch always covers at least one 64-row chunk. */
#define MARLIN_DIM_LIMIT ((int64_t)1 << 24)
/* From this M on, sm_90 devices run the wgmma kernel (thread_m_blocks 8) wherever N allows:
 * 128 x 128 tiles where the 128 x 256 ones would not fill the SMs (wgmma_config). */
#define WGMMA_MIN_M 128
/* From this M up to WGMMA_MIN_M, they run its 128 x 256 tiles where those fill the SMs
 * (wgmma_config): a chunk of at most 32 or 64 rows runs 32- or 64-token wgmmas, one of
 * 65..127 the full 128 with the rows past M zero. Measured on an H200 (the heuristic's
 * mma.sync pick against t256.m8.n16.k8.s4 on five or six layers): the wgmma tile 1.12-1.44x
 * faster at M = 33 and 48, 1.46-1.93x at 80..112 (docs/performance.md v10), 1.04-1.19x at
 * 17, 24 and 32 where it fills the SMs, but 8192 x 57344 (0.98x; v11). */
#define WGMMA_NARROW_MIN_M 17
/* Up to 64 rows, "fill the SMs" means this percentage of them over the waves (WGMMA_WIDE_
 * FILL_PERCENT from 65 rows on). Measured on an H200 (docs/performance.md v14, every
 * candidate of `marlinrt tune` at M = 17, 24, 32, 48, 64): K-split 128 x 256 tiles that keep
 * 73-76% of the SMs busy were 1.13-1.64x faster than the mma.sync pick on 5120 x 5120,
 * 4096 x 6144 and 4096 x 12288 (within 1.08x of the best candidate), and 1.05-1.08x off
 * the best on 6144 x 4096 (the mma.sync pick was 1.01-1.16x off there; end to end 0.94-0.96x
 * at M <= 48, 1.10x at 64). */
#define WGMMA_NARROW_FILL_PERCENT 70
/* At M = 65..127, where the 128 x 256 tiles do not fill the SMs, layers of more than this
 * many weights (K x N) run the 128 x 128 tiles (one chunk of 128 rows, the rows past M
 * zero) instead of the mma.sync kernel. Measured on an H200 (docs/performance.md v16, fresh
 * stores, the heuristic's picks at M = 65, 96 and 127): 1.24-1.75x faster on the eight
 * layers of more than 8 Mi weights timed (3072 x 3072 ... 5120 x 5120, 4096 x 12288,
 * 8192 x 2048); at exactly 8 Mi 0.93-0.95x on 2048 x 4096 but 1.03-1.55x on 4096 x 2048,
 * 1024 x 8192 and 8192 x 1024; below, 0.86-0.90x on 1024 x 4096 and 2048 x 2048. */
#define WGMMA_MID_MIN_WEIGHTS ((int64_t)1 << 23)
/* Fewest K steps (of thread_k) a share of a K-split wgmma tile gets: shorter shares spend
 * more of their time filling the ring and handing over partial sums than computing. */
#define WGMMA_MIN_SHARE_STEPS 8
/* A stream-K tail costs its blocks about this much K depth (a second segment's pipeline
 * fill, the hand-over of fp32 slots): measured on an H200 (docs/performance.md v9,
 * t256.m8.n16.k8.s4), tails that saved 1200-1800 of K lost 1-3%, tails that saved 2400 or
 * more gained 4-10%. */
#define WGMMA_SK_MIN_SAVED_K 2048
/* How long a context goes by its note that a configuration's stream-K cubin is neither in the
 * store nor compilable here (no NVRTC): meanwhile its tail launches run the plain kernel
 * without asking the store again (an SQLite query and the key's hashing on every launch
 * otherwise, where a loaded kernel costs none); after it, one launch asks again, so a store
 * warmed meanwhile by another process is taken up. */
#define SK_ABSENT_RECHECK_MS 10000.0
/* The heuristic's wgmma pick uses 128 x 256 tiles where, K-split as the launch would, they
 * keep at least this fraction of the SMs busy over the waves they need (in percent)... */
#define WGMMA_WIDE_FILL_PERCENT 80
/* ...and, when split, each share still runs at least this deep in K where the last chunk of
 * M runs narrow (64 rows or fewer: the 128 x 128 tiles run it full width) past
 * WGMMA_NARROW_LAST_MAX_M rows (below: WGMMA_NARROW_LAST_MIN_SHARE_K)... */
#define WGMMA_WIDE_MIN_SHARE_K 2048
/* ...and this deep where every chunk runs full width. Measured on an H200, the two tiles
 * against each other (docs/performance.md v16): shares of 2048 lost to the 128 x 128 tiles
 * (split less or not at all) by 3-9% (4096 x 4096 at M = 512 31.68 against 29.15 us, 8192 x
 * 8192 at M = 128 33.90 against 32.78; 4096 x 1024, 4096 x 2048, 4096 x 8192, 4096 x 14336,
 * 8192 x 2048, 8192 x 4096), shares of 2304 and 2560 by 1-3.4% (13824 x 5120, 5120 x 13824,
 * 5120 x 5120); shares of 2752-3584 won by 1.4-3.5% (11008, 12288 and 14336 x 4096 at
 * M = 256), 3072 lost by 1% (6144 x 4096 at M = 512, kept wide); earlier, shares of 1792
 * lost by 7% (v5: 14336 x 4096 at M = 128, 38.7 against 36.3 us). */
#define WGMMA_WIDE_FULL_MIN_SHARE_K 2688
/* Up to this M, where the last chunk of M has 64 rows or fewer (M = 129..192, 257..320),
 * the 128 x 256 tiles, which run that chunk narrow (the 128 x 128 ones run it full width),
 * need only fill this percentage of the SMs and, when split, shares this deep. Measured on
 * an H200 (docs/performance.md v16, the two tiles against each other on 12 layers at
 * M = 160, 192 and 320): the 128 x 256 tiles won by 2-23% wherever they filled 55% or more
 * of the SMs unsplit or split into shares of 1638 or more (5120 x 5120, 4096 x 12288,
 * 4096 x 14336, 8192 x 8192, 14336 x 4096; 4096 x 6144 at M = 160 and 192; 8192 x 2048,
 * 6144 x 4096, 2048 x 8192 and 4096 x 4096 at M = 320) but one (4096 x 6144 at M = 320, 55%
 * unsplit: lost by 3%), and lost by 1-41% with shares of 1536 or less (2048 x 4096;
 * 2048 x 8192, 3072 x 3072, 4096 x 4096, 6144 x 4096, 8192 x 2048 at M = 160 and 192) but
 * one (3072 x 3072 at M = 320, shares of 1024: won by 10%). Beyond it the rules above (one
 * narrow chunk among three or more full ones: not measured). */
#define WGMMA_NARROW_LAST_MAX_M 320
#define WGMMA_NARROW_LAST_FILL_PERCENT 50
#define WGMMA_NARROW_LAST_MIN_SHARE_K 1600

/* The mma.sync kernel's grid (marlin_blocks): a stripe that does not hold whole columns
 * shares its first and last columns with its neighbours, and their fp32 sums then make a
 * round trip through L2 at the end of the launch. Measured on an H200 (docs/performance.md
 * v6, t256.m1.n16.k16.s4, M = 1): 4096 x 30720 in stripes of 15 steps (columns of 16, all
 * shared) 26.1 us, 4096 x 32768 in whole columns of 16 on 128 SMs 21.6 us, for 7% more
 * weights: the hand-over costs about 4 to 6 us, the time to stream some 128 KiB of weights
 * per SM. So fewer blocks with whole columns, or with exact fractions of one (one hand-over
 * per block instead of two: v7, 12288 x 3840 on 64-wide columns in halves of 24 steps on
 * 120 blocks instead of stripes of 22 on 132, +18%), are taken when they keep at least
 * this percentage of the SMs busy... */
#define MARLIN_WHOLE_MIN_SM_PERCENT 80
/* ...and add at most this much work per block, counted as weight bytes times m-blocks
 * (the M = 16 to 64 tiles take longer per weight byte than M = 1). */
#define MARLIN_WHOLE_MAX_EXTRA_BYTES (128 * 1024)

/* Pipeline depth of every configuration the library picks itself. */
#define MARLIN_DEFAULT_STAGES 4

/* The heuristic's repertoire: tile widths (thread_n) and depths (thread_k) in 16-column or
 * 16-deep blocks, widest and deepest first. */
static const int heuristic_blocks[] = {16, 8, 4};
#define HEURISTIC_BLOCK_COUNT 3

/* Work items the heuristic aims for per SM: with fewer, the striped partition leaves SMs
 * waiting on reductions; with more, the tiles are narrower than they need to be. Measured
 * on an H200 (docs/performance.md v11): the tuned winners of the ANCHORS layers at M <= 16
 * are the widest tile with at least 12 per SM, on the deepest K step, on every one of them
 * (7.8 to 54 per SM; v1's 24 picked 128-wide tiles for 4096 x 28672, 20% slower than the
 * 256-wide winner, whose 112 whole columns need no hand-over, and 64-wide ones for 8192 x
 * 8192 and 14336 x 4096). */
#define HEURISTIC_TILES_PER_SM 12

#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

/* Group size -> kernel group_blocks. A single scale row (per channel, or one group as deep
 * as K) is stored in the 32-entry per-channel order by the Marlin packing
 * (seeds/002 repack_scales_to_marlin chooses the order by the number of groups), so it
 * runs the per-channel kernel, which applies the scale once to the fp32 sums. */
static int marlin_group_blocks(int group_size, int64_t k)
{
    return (group_size == -1 || group_size == k) ? -1 : group_size / 16;
}

/* Same formula as marlin_w4a16_smem_bytes<>() in the kernel source: the largest of the
 * cp.async ring, the block reduction area and the output staging tile. */
static int64_t wgmma_smem_bytes(const mrt_config *cfg);

static int64_t marlin_smem_bytes(const mrt_config *cfg)
{
    if (mrt__marlin_is_wgmma(cfg))
        return wgmma_smem_bytes(cfg);
    const int64_t tmb = cfg->thread_m_blocks, tnb = cfg->thread_n_blocks, tkb = cfg->thread_k_blocks;
    const int64_t gb = cfg->group_blocks;
    const int64_t scale_rows = gb == -1 ? 0 : (gb < tkb ? tkb / gb : 1);
    const int64_t pipeline = cfg->stages * (32 * tmb * tkb + 8 * tnb * tkb + scale_rows * 2 * tnb);
    const int64_t reduction = (cfg->threads / 32 - tnb / 4) * 256;
    const int64_t output = 16 * tmb * (2 * tnb + 1);
    int64_t int4s = pipeline;
    if (reduction > int4s)
        int4s = reduction;
    if (output > int4s)
        int4s = output;
    return 16 * int4s;
}

/* Same formula as marlin_w4a16_wgmma_smem_bytes<>(): 1024 bytes to align the swizzled
 * tiles, plus the larger of the cp.async ring and the output staging tile. */
static int64_t wgmma_smem_bytes(const mrt_config *cfg)
{
    const int64_t tmb = cfg->thread_m_blocks, tnb = cfg->thread_n_blocks, tkb = cfg->thread_k_blocks;
    const int64_t gb = cfg->group_blocks;
    const int64_t scale_rows = gb == -1 ? 0 : (gb < tkb ? tkb / gb : 1);
    const int64_t pipeline = cfg->stages * ((tkb / 4) * 16 * tmb * 128 + tkb * (tnb / 4) * 512 + scale_rows * 32 * tnb);
    const int64_t output = 16 * tmb * (16 * tnb + 8) * 2;
    return 1024 + (pipeline > output ? pipeline : output);
}

int mrt__marlin_is_wgmma(const mrt_config *cfg)
{
    return cfg->thread_m_blocks >= 8;
}

/* Mirrors the kernel's dispatch: tiles with two m64 tiles per warpgroup run a chunk of at
 * most a quarter or a half of their rows with wgmmas that narrow. */
int mrt__marlin_wgmma_runs_narrow(const mrt_config *cfg)
{
    const int warpgroups = cfg->threads / 128;
    return mrt__marlin_is_wgmma(cfg) && warpgroups > 0 && 16 * cfg->thread_n_blocks == 2 * 64 * warpgroups;
}

/* Workspace pieces for a device with `sms` multiprocessors (the grid never exceeds it): the
 * part that is zero between launches, arrival counters then the exchange areas of two-share
 * slices (one per block, 16 rows x the widest tile of fp32). Its size does not depend on n:
 * one workspace serves launches of any n up to the one it was sized for, and a narrow
 * launch's partial sums must not land where a wider one expects zeros. */
size_t mrt__marlin_zeroed_bytes(int sms)
{
    const size_t counters = ((size_t)sms * sizeof(int32_t) + 255) / 256 * 256;
    return counters + (size_t)sms * 16 * 256 * sizeof(float);
}

/* Partial sums: two slots per block (a block shares at most two K-split columns: the one its
 * stripe opens with and the one it ends with), each as large as the largest tile of C: 64 x
 * min(n, 256) for the mma.sync kernel, twice that for the wgmma kernel's 128-row tiles. */
static int64_t marlin_partial_floats(int sms, int64_t n)
{
    return 2 * (int64_t)sms * 128 * (n < 256 ? n : 256);
}

static size_t marlin_workspace_bytes(int sms, int64_t n)
{
    return mrt__marlin_zeroed_bytes(sms) + (size_t)marlin_partial_floats(sms, n) * sizeof(float);
}

/* Output tiles of a wgmma launch over `rows` rows (each one block, unless split). */
static int64_t wgmma_tiles(const mrt_config *cfg, int64_t rows, int64_t n)
{
    const int64_t tokens = 16 * (int64_t)cfg->thread_m_blocks;
    return (n / (16 * (int64_t)cfg->thread_n_blocks)) * ((rows + tokens - 1) / tokens);
}

/* K shares per output tile of the wgmma kernel: as many as make at most one block per SM
 * (so a launch with fewer tiles than SMs still uses them all), as long as each share keeps
 * WGMMA_MIN_SHARE_STEPS steps of K and the shares' fp32 sums fit the workspace's partials.
 * 1 = no split. The counters (one per tile) fit: a split launch has fewer tiles than SMs. */
static int wgmma_splits(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms)
{
    const int64_t tokens = 16 * (int64_t)cfg->thread_m_blocks, features = 16 * (int64_t)cfg->thread_n_blocks;
    const int64_t tiles = wgmma_tiles(cfg, rows, n);
    const int64_t steps = k / (16 * (int64_t)cfg->thread_k_blocks);
    int64_t splits = tiles >= sms ? 1 : sms / tiles;
    while (splits > 1 && (steps / splits < WGMMA_MIN_SHARE_STEPS ||
                          tiles * splits * tokens * features > marlin_partial_floats(sms, n)))
        splits--;
    return (int)splits;
}

int mrt__marlin_wgmma_splits(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms)
{
    return wgmma_splits(cfg, rows, n, k, sms);
}

/* Stream-K blocks of a wgmma launch (marlin_w4a16_sk's stream_k; 0: none). With more tiles
 * than SMs and a last wave only partly filled, the tail = tiles % SMs leftover tiles would
 * run on `tail` SMs while the rest wait; instead their K steps are cut evenly over as many
 * blocks as keep WGMMA_MIN_SHARE_STEPS steps each, one per SM at most, two partial-sum slots
 * each within the workspace: where that is more blocks than tail tiles, and the last wave
 * gets at least WGMMA_SK_MIN_SAVED_K shorter. */
static int wgmma_stream_k(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms)
{
    const int64_t tokens = 16 * (int64_t)cfg->thread_m_blocks, features = 16 * (int64_t)cfg->thread_n_blocks;
    const int64_t tiles = wgmma_tiles(cfg, rows, n);
    const int64_t steps = k / (16 * (int64_t)cfg->thread_k_blocks);
    if (tiles <= sms || tiles % sms == 0)
        return 0;
    const int64_t tail = tiles % sms;
    int64_t blocks = tail * steps / WGMMA_MIN_SHARE_STEPS;
    if (blocks > sms)
        blocks = sms;
    const int64_t slot_pairs = marlin_partial_floats(sms, n) / (2 * tokens * features);
    if (blocks > slot_pairs)
        blocks = slot_pairs;
    if (blocks <= tail)
        return 0;
    const int64_t share = (tail * steps + blocks - 1) / blocks;
    return (steps - share) * 16 * cfg->thread_k_blocks >= WGMMA_SK_MIN_SAVED_K ? (int)blocks : 0;
}

int mrt__marlin_wgmma_stream_k(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms)
{
    return wgmma_stream_k(cfg, rows, n, k, sms);
}

/* Blocks of an mma.sync launch over `rows` rows: the kernel stripes the tiles (K steps
 * fastest) over them, ceil(tiles / blocks) each. At most one per SM; all of them, unless
 * fewer blocks whose stripes are aligned to the columns keep MARLIN_WHOLE_MIN_SM_PERCENT of
 * the SMs busy for at most MARLIN_WHOLE_MAX_EXTRA_BYTES more work each. Aligned: whole
 * columns (a multiple of the column's K steps: no shared column) or an exact fraction of one
 * (a divisor of its K steps: each block shares one column, with the blocks of that column
 * only, and hands over once instead of at both ends). */
static int64_t marlin_blocks(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms)
{
    const int64_t k_steps = k / (16 * (int64_t)cfg->thread_k_blocks);
    const int64_t chunks = (rows + 16 * cfg->thread_m_blocks - 1) / (16 * cfg->thread_m_blocks);
    const int64_t tiles = k_steps * (n / (16 * (int64_t)cfg->thread_n_blocks)) * chunks;
    const int64_t blocks = tiles < sms ? tiles : sms;
    const int64_t stripe = (tiles + blocks - 1) / blocks;
    if (stripe % k_steps == 0 || k_steps % stripe == 0)
        return blocks;
    /* The shortest aligned stripe at least as long, searched only as far as the extra work
     * allowed (a few dozen steps at most, so the launch path stays cheap). */
    const int64_t tile_bytes = 128 * (int64_t)cfg->thread_n_blocks * cfg->thread_k_blocks * cfg->thread_m_blocks;
    const int64_t longest = stripe + MARLIN_WHOLE_MAX_EXTRA_BYTES / tile_bytes;
    int64_t aligned = (stripe + k_steps - 1) / k_steps * k_steps;
    if (stripe < k_steps)
        for (aligned = stripe + 1; aligned <= longest && k_steps % aligned != 0; aligned++)
            ;
    if (aligned > longest)
        return blocks;
    const int64_t aligned_blocks = (tiles + aligned - 1) / aligned;
    if ((tiles + aligned_blocks - 1) / aligned_blocks == aligned &&
        100 * aligned_blocks >= MARLIN_WHOLE_MIN_SM_PERCENT * sms)
        return aligned_blocks;
    return blocks;
}

/* Blocks of a wgmma launch: whole tiles then `stream_k` stream-K blocks, or (stream_k 0)
 * one block per tile and K share. */
static int64_t wgmma_blocks(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms, int stream_k)
{
    const int64_t tiles = wgmma_tiles(cfg, rows, n);
    return stream_k ? tiles - tiles % sms + stream_k : tiles * wgmma_splits(cfg, rows, n, k, sms);
}

int64_t mrt__marlin_blocks(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms)
{
    return mrt__marlin_is_wgmma(cfg) ? wgmma_blocks(cfg, rows, n, k, sms, wgmma_stream_k(cfg, rows, n, k, sms))
                                     : marlin_blocks(cfg, rows, n, k, sms);
}

/* Rows of M one launch may cover: a multiple of the chunk height small enough that the
 * kernel's int indices (rows*K/8, rows*N/8, tile count) stay below MARLIN_INDEX_LIMIT. */
static int64_t rows_per_launch(const mrt_config *cfg, int64_t n, int64_t k)
{
    const int64_t chunk = 16 * (int64_t)cfg->thread_m_blocks;
    const int64_t widest = n > k ? n : k;
    const int64_t tiles_per_chunk = (k / (16 * cfg->thread_k_blocks)) * (n / (16 * cfg->thread_n_blocks));
    int64_t rows = MARLIN_INDEX_LIMIT / (widest / 8);
    const int64_t by_tiles = MARLIN_INDEX_LIMIT / tiles_per_chunk * chunk;
    if (by_tiles < rows)
        rows = by_tiles;
    rows = rows / chunk * chunk;
    return rows < chunk ? chunk : rows;
}

/* Shape and group-size rules shared by every entry point. `field` prefixes each value's
 * name in the message (e.g. "mrt_gemm: args->"), so the message names the argument. */
static mrt_status check_shape(mrt__err *err, const char *field, int64_t m, int64_t n, int64_t k, int group_size)
{
    if (m < 1)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "%sm = %lld: must be at least 1", field, (long long)m);
    if (n <= 0 || n % 64 != 0)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "%sn = %lld: must be a positive multiple of 64", field,
                         (long long)n);
    if (k <= 0 || k % 64 != 0)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "%sk = %lld: must be a positive multiple of 64", field,
                         (long long)k);
    if (group_size != -1 && group_size != 32 && group_size != 64 && group_size != 128)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT,
                         "%sgroup_size = %d: must be -1 (per channel), 32, 64 or 128", field, group_size);
    if (group_size > 0 && k % group_size != 0)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "%sgroup_size = %d does not divide k = %lld", field,
                         group_size, (long long)k);
    if (n > MARLIN_DIM_LIMIT || k > MARLIN_DIM_LIMIT || k * n > 32 * MARLIN_INDEX_LIMIT)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "%sk = %lld, n = %lld: too large (each at most %lld, k * n at most %lld)", field,
                         (long long)k, (long long)n, (long long)MARLIN_DIM_LIMIT,
                         (long long)(32 * MARLIN_INDEX_LIMIT));
    return MRT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Kernel registry hooks (the mrt__kernel entry lives in runtime/kernels.c)              */
/* ------------------------------------------------------------------------------------ */

/* snprintf's contract: the length of the full expression, >= size when it did not fit. */
int mrt__marlin_name_expression(const mrt_config *cfg, char *buf, size_t size)
{
    return snprintf(buf, size, "%s<%d,%d,%d,%d,%d,%d>", mrt__marlin_is_wgmma(cfg) ? "marlin_w4a16_wgmma" : "marlin_w4a16",
                    cfg->threads, cfg->thread_m_blocks, cfg->thread_n_blocks, cfg->thread_k_blocks, cfg->stages,
                    cfg->group_blocks);
}

/* marlin_w4a16_sk: the wgmma kernel's stream-K entry point, same configurations. */
int mrt__marlin_sk_name_expression(const mrt_config *cfg, char *buf, size_t size)
{
    return snprintf(buf, size, "marlin_w4a16_wgmma_sk<%d,%d,%d,%d,%d,%d>", cfg->threads, cfg->thread_m_blocks,
                    cfg->thread_n_blocks, cfg->thread_k_blocks, cfg->stages, cfg->group_blocks);
}

/* The Hopper kernel's rules (thread_m_blocks 8 or 16); mirrors its static_asserts. */
static mrt_status wgmma_validate(const mrt_config *cfg, mrt__err *err)
{
    if (cfg->threads != 128 && cfg->threads != 256)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "marlin_w4a16 (wgmma): threads = %d: must be 128 or 256",
                         cfg->threads);
    if (cfg->thread_m_blocks != 8 && cfg->thread_m_blocks != 16)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "marlin_w4a16: thread_m_blocks = %d: must be 1..4, or 8 or 16 (the sm_90 wgmma kernel)",
                         cfg->thread_m_blocks);
    /* Each warpgroup (128 threads) covers one or two 64-feature wgmma tiles, 16*tmb tokens
     * wide: 8*tmb fp32 accumulators per thread and tile, at most 128 with 256 threads and 64
     * with 128 (one block of 128 threads holding 128 would spill). */
    const int groups = cfg->threads / 128;
    const int per_group = 16 * cfg->thread_n_blocks / groups;
    if (cfg->thread_n_blocks <= 0 || per_group % 64 != 0 || per_group / 64 < 1 || per_group / 64 > 2 ||
        (per_group / 64) * 8 * cfg->thread_m_blocks > 64 * groups)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "marlin_w4a16 (wgmma): thread_n_blocks = %d with threads = %d and thread_m_blocks = %d: each "
                         "warpgroup of 128 threads takes 64 or 128 columns, and its threads at most %d accumulators "
                         "(8 x thread_m_blocks per 64 columns)",
                         cfg->thread_n_blocks, cfg->threads, cfg->thread_m_blocks, 64 * groups);
    if (cfg->thread_k_blocks != 4 && cfg->thread_k_blocks != 8)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "marlin_w4a16 (wgmma): thread_k_blocks = %d: must be 4 or 8",
                         cfg->thread_k_blocks);
    if (cfg->stages < 3 || cfg->stages > 8)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "marlin_w4a16 (wgmma): stages = %d: must be 3..8", cfg->stages);
    return MRT_OK;
}

mrt_status mrt__marlin_validate(const mrt_config *cfg, mrt__err *err)
{
    if (!cfg)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "marlin_w4a16: config is NULL");
    if (cfg->group_blocks != -1 && cfg->group_blocks != 2 && cfg->group_blocks != 4 && cfg->group_blocks != 8)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "marlin_w4a16: group_blocks = %d: must be -1 (per channel), 2, 4 or 8 (group size 32, 64, 128)",
                         cfg->group_blocks);
    for (size_t i = 0; i < COUNT_OF(cfg->reserved); i++)
        if (cfg->reserved[i] != 0)
            return mrt__fail(err, MRT_ERR_UNSUPPORTED, "marlin_w4a16: reserved[%zu] = %d: must be 0", i,
                             cfg->reserved[i]);
    if (mrt__marlin_is_wgmma(cfg))
        return wgmma_validate(cfg, err);
    if (cfg->threads != 128 && cfg->threads != 256)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "marlin_w4a16: threads = %d: must be 128 or 256", cfg->threads);
    if (cfg->thread_m_blocks < 1 || cfg->thread_m_blocks > 4)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "marlin_w4a16: thread_m_blocks = %d: must be 1..4, or 8 or 16 (the sm_90 wgmma kernel)",
                         cfg->thread_m_blocks);
    if (cfg->thread_n_blocks != 4 && cfg->thread_n_blocks != 8 && cfg->thread_n_blocks != 16)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "marlin_w4a16: thread_n_blocks = %d: must be 4, 8 or 16",
                         cfg->thread_n_blocks);
    if (cfg->thread_k_blocks != 4 && cfg->thread_k_blocks != 8 && cfg->thread_k_blocks != 16)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "marlin_w4a16: thread_k_blocks = %d: must be 4, 8 or 16",
                         cfg->thread_k_blocks);
    /* Each warp covers 64 columns and whole 16-deep rows of a tile, and every thread copies
     * the same number of B int4 per tile: the tile's 8 * n_blocks * k_blocks int4 of B must
     * be a multiple of the thread count. Excludes only 256 threads with a 64 x 64 tile. */
    if ((cfg->thread_n_blocks * cfg->thread_k_blocks * 8) % cfg->threads != 0)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "marlin_w4a16: thread_n_blocks * thread_k_blocks = %d with threads = %d: the product must be "
                         "a multiple of threads / 8 = %d",
                         cfg->thread_n_blocks * cfg->thread_k_blocks, cfg->threads, cfg->threads / 8);
    if (cfg->stages < 2 || cfg->stages > 8)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "marlin_w4a16: stages = %d: must be 2..8", cfg->stages);
    return MRT_OK;
}

/* The wgmma kernel exists for sm_90 only, compiled for the arch-specific target sm_90a
 * (wgmma is not part of sm_90's forward-compatible feature set). */
mrt_status mrt__marlin_arch_check(const mrt_config *cfg, int arch, int *arch_specific, mrt__err *err)
{
    *arch_specific = 0;
    if (!mrt__marlin_is_wgmma(cfg))
        return MRT_OK;
    if (arch != 90) {
        char name[64];
        mrt__config_format(cfg, name, sizeof name);
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "marlin_w4a16 %s: thread_m_blocks %d is the wgmma kernel, made for sm_90 only (asked for sm_%d)",
                         name, cfg->thread_m_blocks, arch);
    }
    *arch_specific = 1;
    return MRT_OK;
}

/* marlin_w4a16_sk takes the wgmma kernel's configurations only (thread_m_blocks 8 or 16). */
mrt_status mrt__marlin_sk_validate(const mrt_config *cfg, mrt__err *err)
{
    mrt_status rc = mrt__marlin_validate(cfg, err);
    if (rc != MRT_OK)
        return rc;
    if (!mrt__marlin_is_wgmma(cfg))
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "marlin_w4a16_sk: thread_m_blocks = %d: the stream-K form exists for the wgmma kernel "
                         "only (8 or 16)",
                         cfg->thread_m_blocks);
    return MRT_OK;
}

/* marlin_w4a16_sk's default list: the wgmma configurations of marlin_w4a16's. */
mrt_status mrt__marlin_sk_default_configs(mrt_config *configs, size_t capacity, size_t *count)
{
    size_t all = 0;
    mrt_status rc = mrt_kernel_default_configs(MRT_KERNEL_MARLIN_W4A16, NULL, 0, &all);
    if (rc != MRT_OK)
        return rc;
    mrt_config *list = calloc(all ? all : 1, sizeof *list);
    if (!list)
        return mrt__fail(mrt__thread_err(), MRT_ERR_OUT_OF_MEMORY, "out of memory listing configurations");
    rc = mrt_kernel_default_configs(MRT_KERNEL_MARLIN_W4A16, list, all, &all);
    size_t total = 0;
    for (size_t i = 0; rc == MRT_OK && i < all; i++)
        if (mrt__marlin_is_wgmma(&list[i])) {
            if (total < capacity)
                configs[total] = list[i];
            total++;
        }
    free(list);
    if (rc == MRT_OK)
        *count = total;
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Configuration choice                                                                  */
/* ------------------------------------------------------------------------------------ */

/* A configuration of the heuristic's repertoire: 256 threads, except 128 for a 64 x 64 tile
 * (each thread must own whole int4 of a B tile) and for the 64 x 256-deep tile of one
 * m-block (faster on an H200 at M = 1, 4 stages: 4096 x 4096 7.68 -> 7.43 us, 8192 x 8192
 * 14.88 -> 14.61, 2048 x 8192 6.20 -> 5.71; docs/performance.md v11); 4 stages, 3 with 4
 * m-blocks (their larger A tiles make each stage bigger). */
static void heuristic_config(mrt_config *cfg, int thread_m_blocks, int n_blocks, int k_blocks, int group_blocks)
{
    memset(cfg, 0, sizeof *cfg);
    const int narrow_deep = thread_m_blocks == 1 && n_blocks == 4 && k_blocks == 16;
    cfg->threads = n_blocks * k_blocks * 8 % 256 == 0 && !narrow_deep ? 256 : 128;
    cfg->thread_m_blocks = thread_m_blocks;
    cfg->thread_n_blocks = n_blocks;
    cfg->thread_k_blocks = k_blocks;
    cfg->stages = thread_m_blocks == 4 ? 3 : MARLIN_DEFAULT_STAGES;
    cfg->group_blocks = group_blocks;
}

/* The wgmma kernel's pick (sm_90, M >= WGMMA_MIN_M): 128 tokens by 256 features per block
 * where those blocks (K-split by the launch if the tiles are fewer than the SMs,
 * wgmma_splits) keep WGMMA_WIDE_FILL_PERCENT of the SMs busy over their waves, with shares
 * at least WGMMA_WIDE_FULL_MIN_SHARE_K deep when split (WGMMA_WIDE_MIN_SHARE_K where the
 * last chunk of M has 64 rows or fewer; up to WGMMA_NARROW_LAST_MAX_M rows with such a chunk,
 * WGMMA_NARROW_LAST_FILL_PERCENT of the SMs and shares of WGMMA_NARROW_LAST_MIN_SHARE_K);
 * else 128 x 128 (split as needed);
 * 128-deep steps where K allows, 4 stages. Measured on an H200, docs/performance.md v5.
 * Below WGMMA_MIN_M (M in WGMMA_NARROW_MIN_M..127) the 128 x 256 tiles where they fill the
 * SMs so (WGMMA_NARROW_FILL_PERCENT of them up to 64 rows; shares of any depth: measured,
 * v8), else at M = 65..127 the 128 x 128 ones on layers of more than WGMMA_MID_MIN_WEIGHTS,
 * else none.
 * Returns 0 when the wgmma kernel is not the pick (N not a multiple of 128, or as above). */
static int wgmma_config(mrt_config *cfg, int64_t m, int64_t n, int64_t k, int group_size, int sms)
{
    if (n % 128 != 0)
        return 0;
    memset(cfg, 0, sizeof *cfg);
    cfg->threads = 256;
    cfg->thread_m_blocks = 8;
    cfg->thread_n_blocks = 16;
    cfg->thread_k_blocks = k % 128 == 0 ? 8 : 4;
    cfg->stages = 4;
    cfg->group_blocks = marlin_group_blocks(group_size, k);
    int fills = 0, deep = 0;
    if (n % 256 == 0) {
        const int64_t splits = wgmma_splits(cfg, m, n, k, sms);
        const int64_t blocks = wgmma_tiles(cfg, m, n) * splits;
        const int64_t waves = (blocks + sms - 1) / sms;
        /* Whether the last chunk of M runs narrow: the kernel's own rule (at most half the
         * tile's rows, in tiles that have narrow paths). */
        const int64_t tokens = 16 * (int64_t)cfg->thread_m_blocks;
        const int64_t last_rows = m - (m - 1) / tokens * tokens;
        const int last_narrow = mrt__marlin_wgmma_runs_narrow(cfg) && 2 * last_rows <= tokens;
        const int narrow_last = m >= WGMMA_MIN_M && m <= WGMMA_NARROW_LAST_MAX_M && last_narrow;
        const int64_t percent = m <= 64      ? WGMMA_NARROW_FILL_PERCENT
                                : narrow_last ? WGMMA_NARROW_LAST_FILL_PERCENT
                                              : WGMMA_WIDE_FILL_PERCENT;
        fills = 100 * blocks >= percent * waves * sms;
        const int64_t min_share = !last_narrow ? WGMMA_WIDE_FULL_MIN_SHARE_K
                                  : narrow_last ? WGMMA_NARROW_LAST_MIN_SHARE_K
                                                : WGMMA_WIDE_MIN_SHARE_K;
        deep = splits == 1 || k / splits >= min_share;
    }
    if (m < WGMMA_MIN_M) {
        if (fills)
            return 1;
        if (m <= 64 || k * n <= WGMMA_MID_MIN_WEIGHTS)
            return 0;
        cfg->thread_n_blocks = 8;
        return 1;
    }
    if (!(fills && deep))
        cfg->thread_n_blocks = 8;
    return 1;
}

/* M-blocks of the mma.sync kernel for M rows: one chunk of ceil(M/16) blocks, which reads
 * the weights once; past 64 rows, chunks of 64. Where the weights take at most
 * 1/MARLIN_CHUNK_L2_FRACTION of the device's L2, chunks of 32 rows instead (ceil(M/32)
 * blocks): every chunk reads the weights again, from L2, and the extra tiles keep more SMs
 * busy. Measured on an H200 (docs/performance.md v14, every candidate of `marlinrt tune` on
 * 13 layers of 1024 x 4096 to 6144 x 4096 at M = 17..64): the one-chunk pick was 1.01-2.69x
 * slower than the best candidate, the 32-row chunks 1.00-1.50x. Timed end to end
 * (`marlinrt bench`, fresh store, old against new heuristic, one call): 1.13-1.97x faster on
 * N = 1024 to 4096, but 0.74-0.87x on 1024 x 8192 and 2048 x 8192, so only up to
 * MARLIN_CHUNK_MAX_N columns. dev NULL or no L2 size: one chunk. */
#define MARLIN_CHUNK_L2_FRACTION 2
#define MARLIN_CHUNK_MAX_N 4096
static int mma_m_blocks(int64_t m, int64_t n, int64_t k, const mrt_device_info *dev)
{
    if (m > 64)
        return 4;
    const int reread = dev && dev->l2_bytes > 0 && n <= MARLIN_CHUNK_MAX_N &&
                       mrt_packed_weight_bytes(k, n) <= (size_t)dev->l2_bytes / MARLIN_CHUNK_L2_FRACTION;
    return (int)(reread ? (m + 31) / 32 : (m + 15) / 16);
}

/* The heuristic: m-blocks from M (mma_m_blocks); the deepest K step that divides K (long
 * contiguous runs of weights per block); then the widest tile that divides N and still gives
 * HEURISTIC_TILES_PER_SM tiles per SM, else the narrowest that divides N. If the device's
 * shared memory cannot hold that, the K step and then the width are halved. dev NULL: 132
 * SMs and no shared-memory limit. Shape already checked. */
static void pick_config(int64_t m, int64_t n, int64_t k, int group_size, const mrt_device_info *dev,
                        mrt_config *cfg)
{
    const int sms = dev && dev->sm_count > 0 ? dev->sm_count : 132;
    const int thread_m_blocks = mma_m_blocks(m, n, k, dev);
    const int64_t chunks = (m + 16 * thread_m_blocks - 1) / (16 * thread_m_blocks);
    /* The last entry (4 blocks, 64) divides every legal K and N. */
    int k_blocks = 4, n_blocks = 0;
    for (int i = HEURISTIC_BLOCK_COUNT - 1; i >= 0; i--)
        if (k % (16 * heuristic_blocks[i]) == 0)
            k_blocks = heuristic_blocks[i];
    const int64_t target = (int64_t)HEURISTIC_TILES_PER_SM * sms;
    for (int i = 0; i < HEURISTIC_BLOCK_COUNT && !n_blocks; i++) {
        const int64_t width = 16 * heuristic_blocks[i];
        if (n % width == 0 && chunks * (k / (16 * k_blocks)) * (n / width) >= target)
            n_blocks = heuristic_blocks[i];
    }
    if (!n_blocks)
        n_blocks = 4;
    const int wgmma_m = m >= WGMMA_NARROW_MIN_M;
    if (dev && dev->cc_major == 9 && dev->cc_minor == 0 && wgmma_m && wgmma_config(cfg, m, n, k, group_size, sms) &&
        marlin_smem_bytes(cfg) <= dev->max_smem_optin)
        return;
    heuristic_config(cfg, thread_m_blocks, n_blocks, k_blocks, marlin_group_blocks(group_size, k));
    /* Halving keeps dividing K and N (the blocks are powers of two); 64 x 64 fits anywhere. */
    while (dev && marlin_smem_bytes(cfg) > dev->max_smem_optin && (k_blocks > 4 || n_blocks > 4)) {
        if (k_blocks > 4)
            k_blocks /= 2;
        else
            n_blocks /= 2;
        heuristic_config(cfg, thread_m_blocks, n_blocks, k_blocks, cfg->group_blocks);
    }
}

/* A configuration (already valid on its own) checked against a shape and the device. */
static mrt_status check_config_fits(mrt__err *err, const mrt_config *cfg, int64_t n, int64_t k, int group_size,
                                    const mrt_device_info *dev)
{
    char name[64];
    mrt__config_format(cfg, name, sizeof name);
    if (n % (16 * cfg->thread_n_blocks) != 0)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "config %s: thread_n = %d does not divide n = %lld", name,
                         16 * cfg->thread_n_blocks, (long long)n);
    if (k % (16 * cfg->thread_k_blocks) != 0)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "config %s: thread_k = %d does not divide k = %lld", name,
                         16 * cfg->thread_k_blocks, (long long)k);
    const int group_blocks = marlin_group_blocks(group_size, k);
    if (cfg->group_blocks != group_blocks)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "config %s: group_blocks = %d, but group_size = %d with k = %lld needs group_blocks = %d", name,
                         cfg->group_blocks, group_size, (long long)k, group_blocks);
    if (mrt__marlin_is_wgmma(cfg) && !(dev->cc_major == 9 && dev->cc_minor == 0))
        return mrt__fail(err, MRT_ERR_UNSUPPORTED, "config %s: the wgmma kernel runs on sm_90 only; device %s is sm_%d%d",
                         name, dev->name, dev->cc_major, dev->cc_minor);
    const int64_t smem = marlin_smem_bytes(cfg);
    if (smem > dev->max_smem_optin)
        return mrt__fail(err, MRT_ERR_UNSUPPORTED,
                         "config %s: needs %lld bytes of shared memory, device %s allows %d per block", name,
                         (long long)smem, dev->name, dev->max_smem_optin);
    return MRT_OK;
}

/* The rules above, for the autotuner (runtime/tune.c, declared in runtime/tune.h). */
mrt_status mrt__marlin_check_shape(mrt__err *err, const char *field, int64_t m, int64_t n, int64_t k, int group_size)
{
    return check_shape(err, field, m, n, k, group_size);
}

void mrt__marlin_heuristic(int64_t m, int64_t n, int64_t k, int group_size, const mrt_device_info *dev,
                           mrt_config *cfg)
{
    pick_config(m, n, k, group_size, dev, cfg);
}

mrt_status mrt__marlin_config_fits(mrt__err *err, const mrt_config *cfg, int64_t n, int64_t k, int group_size,
                                   const mrt_device_info *dev)
{
    return check_config_fits(err, cfg, n, k, group_size, dev);
}

int64_t mrt__marlin_smem_bytes(const mrt_config *cfg)
{
    return marlin_smem_bytes(cfg);
}

int mrt__marlin_group_blocks(int group_size, int64_t k)
{
    return marlin_group_blocks(group_size, k);
}

/* ------------------------------------------------------------------------------------ */
/* Public API                                                                            */
/* ------------------------------------------------------------------------------------ */

MRT_API mrt_status mrt_gemm_workspace_size(mrt_context *ctx, int64_t n, size_t *bytes)
{
    mrt_status rc = MRT_OK;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!bytes)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_workspace_size: bytes is NULL");
    *bytes = 0;
    if (n <= 0 || n % 64 != 0)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_workspace_size: n = %lld: must be a positive multiple of 64",
                 (long long)n);
    if (n > MARLIN_DIM_LIMIT)
        MRT_FAIL(err, MRT_ERR_UNSUPPORTED, "mrt_gemm_workspace_size: n = %lld: at most %lld", (long long)n,
                 (long long)MARLIN_DIM_LIMIT);
    MRT_CHECK(mrt__device_open(ctx));
    *bytes = marlin_workspace_bytes(mrt__device(ctx)->sm_count, n);
done:
    return rc;
}

MRT_API mrt_status mrt_gemm_select(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                   mrt_config *config)
{
    mrt_status rc = MRT_OK;
    mrt_config chosen;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!config)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_select: config is NULL");
    MRT_CHECK(check_shape(err, "mrt_gemm_select: ", m, n, k, group_size));
    MRT_CHECK(mrt__device_open(ctx));
    /* The recorded winner of the M bucket, else the heuristic's pick. */
    MRT_CHECK(mrt__tune_select(ctx, m, n, k, group_size, 0, &chosen));
    MRT_CHECK(check_config_fits(err, &chosen, n, k, group_size, mrt__device(ctx)));
    *config = chosen;
done:
    return rc;
}

/* Append every configuration pick_config() can return with this group_blocks (every m-block
 * count, tile width and depth), writing while there is capacity and counting all. */
static void append_candidates(int group_blocks, mrt_config *configs, size_t capacity, size_t *total)
{
    /* wgmma_config's picks: 128 x 256 and 128 x 128 tiles, 128 or 64 deep. */
    for (int n_blocks = 16; n_blocks >= 8; n_blocks /= 2)
        for (int k_blocks = 8; k_blocks >= 4; k_blocks /= 2) {
            if (*total < capacity)
                configs[*total] = (mrt_config){.threads = 256,
                                               .thread_m_blocks = 8,
                                               .thread_n_blocks = n_blocks,
                                               .thread_k_blocks = k_blocks,
                                               .stages = 4,
                                               .group_blocks = group_blocks};
            (*total)++;
        }
    for (int tmb = 1; tmb <= 4; tmb++) {
        for (int ki = 0; ki < HEURISTIC_BLOCK_COUNT; ki++) {
            for (int ni = 0; ni < HEURISTIC_BLOCK_COUNT; ni++) {
                if (*total < capacity)
                    heuristic_config(&configs[*total], tmb, heuristic_blocks[ni], heuristic_blocks[ki], group_blocks);
                (*total)++;
            }
        }
    }
}

MRT_API mrt_status mrt_gemm_candidates(int group_size, mrt_config *configs, size_t capacity, size_t *count)
{
    mrt_status rc = MRT_OK;
    mrt__err *err = mrt__thread_err();
    if (!count)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_candidates: count is NULL");
    if (!configs && capacity > 0)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_candidates: configs is NULL with capacity %zu", capacity);
    if (group_size != -1 && group_size != 32 && group_size != 64 && group_size != 128)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT,
                 "mrt_gemm_candidates: group_size = %d: must be -1 (per channel), 32, 64 or 128", group_size);
    size_t total = 0;
    if (group_size != -1)
        append_candidates(group_size / 16, configs, capacity, &total);
    /* Also for a grouped size: a group as deep as K runs the per-channel kernel. */
    append_candidates(-1, configs, capacity, &total);
    *count = total;
done:
    return rc;
}

/* Whether ctx noted, less than SK_ABSENT_RECHECK_MS ago, that cfg's stream-K cubin cannot
 * be had (sk_note_absent). */
static int sk_known_absent(const mrt_context *ctx, const mrt_config *cfg)
{
    for (int i = 0; i < ctx->sk_absent_count; i++)
        if (mrt__tune_same_config(&ctx->sk_absent[i].config, cfg))
            return mrt__now_ms() - ctx->sk_absent[i].since_ms < SK_ABSENT_RECHECK_MS;
    return 0;
}

/* Note (or renew) that cfg's stream-K cubin cannot be had; a full table drops its oldest. */
static void sk_note_absent(mrt_context *ctx, const mrt_config *cfg)
{
    const int capacity = (int)(sizeof ctx->sk_absent / sizeof ctx->sk_absent[0]);
    int slot = -1;
    for (int i = 0; i < ctx->sk_absent_count && slot < 0; i++)
        if (mrt__tune_same_config(&ctx->sk_absent[i].config, cfg))
            slot = i;
    if (slot < 0 && ctx->sk_absent_count < capacity)
        slot = ctx->sk_absent_count++;
    if (slot < 0) {
        slot = 0;
        for (int i = 1; i < capacity; i++)
            if (ctx->sk_absent[i].since_ms < ctx->sk_absent[slot].since_ms)
                slot = i;
    }
    ctx->sk_absent[slot].config = *cfg;
    ctx->sk_absent[slot].since_ms = mrt__now_ms();
}

mrt_status mrt__marlin_sk_function(mrt_context *ctx, const mrt_config *cfg, mrt__function *out, int *have)
{
    *have = 0;
    if (sk_known_absent(ctx, cfg))
        return MRT_OK;
    const mrt_status rc = mrt__get_function(ctx, MRT_KERNEL_MARLIN_W4A16_SK, cfg, out);
    if (rc == MRT_ERR_NO_NVRTC) {
        /* Absorbed: the caller's call succeeds, so the message goes ("" after a success). */
        sk_note_absent(ctx, cfg);
        ctx->errbuf[0] = '\0';
        return MRT_OK;
    }
    *have = rc == MRT_OK;
    return rc;
}

MRT_API mrt_status mrt_gemm(mrt_context *ctx, void *stream, const mrt_gemm_args *args, const mrt_config *config)
{
    mrt_status rc = MRT_OK;
    mrt_config cfg;
    mrt__function fn, sk_fn = {0};
    int sk_missing = 0;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!args)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm: args is NULL");

    /* Arguments that need no device. */
    const struct {
        const char *name;
        uint64_t ptr;
    } pointers[] = {
        {"a", args->a}, {"b", args->b}, {"scales", args->scales}, {"c", args->c}, {"workspace", args->workspace},
    };
    for (size_t i = 0; i < COUNT_OF(pointers); i++) {
        if (pointers[i].ptr == 0)
            MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm: args->%s is NULL", pointers[i].name);
        if (pointers[i].ptr % 16 != 0)
            MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm: args->%s = 0x%llx: must be 16-byte aligned",
                     pointers[i].name, (unsigned long long)pointers[i].ptr);
    }
    const uint32_t known_flags = MRT_GEMM_WEIGHTS_STATIC | MRT_GEMM_NO_OVERLAP;
    if (args->flags & ~known_flags)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm: args->flags = 0x%x: unknown bits 0x%x",
                 (unsigned)args->flags, (unsigned)(args->flags & ~known_flags));
    for (size_t i = 0; i < COUNT_OF(args->reserved_i32); i++)
        if (args->reserved_i32[i] != 0)
            MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm: args->reserved_i32[%zu] = %d: must be 0", i,
                     (int)args->reserved_i32[i]);
    for (size_t i = 0; i < COUNT_OF(args->reserved); i++)
        if (args->reserved[i] != 0)
            MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm: args->reserved[%zu] = %llu: must be 0", i,
                     (unsigned long long)args->reserved[i]);
    MRT_CHECK(check_shape(err, "mrt_gemm: args->", args->m, args->n, args->k, args->group_size));
    if (config)
        MRT_CHECK(mrt__marlin_validate(config, err));

    /* Arguments that depend on the device. */
    MRT_CHECK(mrt__device_open(ctx));
    const mrt_device_info *dev = mrt__device(ctx);
    if (dev->sm_count < 1)
        MRT_FAIL(err, MRT_ERR_INTERNAL, "mrt_gemm: device reports %d multiprocessors", dev->sm_count);
    const size_t needed = marlin_workspace_bytes(dev->sm_count, args->n);
    if (args->workspace_bytes < needed)
        MRT_FAIL(err, MRT_ERR_WORKSPACE, "mrt_gemm: args->workspace_bytes = %llu: n = %lld on %d SMs needs %zu",
                 (unsigned long long)args->workspace_bytes, (long long)args->n, dev->sm_count, needed);
    if (config)
        cfg = *config;
    else
        MRT_CHECK(mrt__tune_select(ctx, args->m, args->n, args->k, args->group_size, 1, &cfg));
    MRT_CHECK(check_config_fits(err, &cfg, args->n, args->k, args->group_size, dev));

    MRT_CHECK(mrt__get_function(ctx, MRT_KERNEL_MARLIN_W4A16, &cfg, &fn));
    if (fn.max_threads < cfg.threads) {
        char name[64];
        mrt__config_format(&cfg, name, sizeof name);
        MRT_FAIL(err, MRT_ERR_UNSUPPORTED, "mrt_gemm: config %s: the compiled kernel allows only %d threads per block",
                 name, fn.max_threads);
    }

    /* One launch per rows_per_launch() rows of M; the kernel cuts each into chunks of
     * 16 * thread_m_blocks rows itself, the last chunk possibly partial. */
    const int64_t n = args->n, k = args->k;
    const int64_t launch_rows = rows_per_launch(&cfg, n, k);
    const int wgmma = mrt__marlin_is_wgmma(&cfg);
    unsigned smem = (unsigned)marlin_smem_bytes(&cfg);
    /* With overlapped launches the next GEMM's blocks are placed while this one runs. If two
     * blocks fitted on one SM, the block scheduler could stack them two to an SM on half the
     * SMs, halving that kernel's bandwidth (measured: 16 -> 21 us on 8192 x 8192, M = 1, H200).
     * Asking for over half of the opt-in shared memory keeps it at one block per SM. The
     * wgmma kernel has one block per output tile and no split sums: the more of them per SM
     * the better, so it keeps its own size. */
    const int overlap = !(args->flags & MRT_GEMM_NO_OVERLAP) && mrt__launch_can_overlap(ctx);
    const unsigned solo_smem = (unsigned)(dev->max_smem_optin / 2 + 1024);
    if (overlap && !wgmma && smem < solo_smem && (int)solo_smem <= dev->max_smem_optin)
        smem = solo_smem;
    const unsigned block[3] = {(unsigned)cfg.threads, 1, 1};
    uint64_t locks = args->workspace;
    uint64_t partials = args->workspace + mrt__marlin_zeroed_bytes(dev->sm_count);
    uint64_t scales = args->scales;
    uint64_t b = args->b;
    int prob_n = (int)n, prob_k = (int)k;
    /* The kernel's MRT_KERNEL_WEIGHTS_STATIC bit (kernel_src/marlin_w4a16.cu). */
    int kernel_flags = (args->flags & MRT_GEMM_WEIGHTS_STATIC) ? 1 : 0;
    for (int64_t row = 0; row < args->m; row += launch_rows) {
        const int64_t rows = args->m - row < launch_rows ? args->m - row : launch_rows;
        /* A wgmma launch with a stream-K tail runs the kernel's stream-K entry point
         * (marlin_w4a16_sk, loaded at its first such launch), whose last parameter is its
         * stream-K block count; the plain wgmma kernel ignores that parameter. A store
         * without that cubin, where NVRTC cannot compile it, gets the plain kernel's launch
         * (the same result, without the tail's speed-up) rather than an error
         * (mrt__marlin_sk_function). */
        int stream_k = wgmma && !sk_missing ? wgmma_stream_k(&cfg, rows, n, k, dev->sm_count) : 0;
        if (stream_k && !sk_fn.handle) {
            int have = 0;
            MRT_CHECK(mrt__marlin_sk_function(ctx, &cfg, &sk_fn, &have));
            if (!have)
                sk_missing = 1, stream_k = 0;
        }
        /* wgmma: one block per (column tile, chunk, K share), or whole tiles then the
         * stream-K blocks; mma.sync: striped over the SMs (marlin_blocks). */
        const int64_t blocks = wgmma ? wgmma_blocks(&cfg, rows, n, k, dev->sm_count, stream_k)
                                     : marlin_blocks(&cfg, rows, n, k, dev->sm_count);
        const unsigned grid[3] = {(unsigned)blocks, 1, 1};
        uint64_t a = args->a + (uint64_t)(row * k * 2);
        uint64_t c = args->c + (uint64_t)(row * n * 2);
        int prob_m = (int)rows;
        int last = wgmma ? stream_k : kernel_flags;
        mrt__function *launched = stream_k ? &sk_fn : &fn;
        void *params[] = {&a, &b, &c, &scales, &prob_m, &prob_n, &prob_k, &locks, &partials, &last};
        MRT_CHECK(overlap ? mrt__launch_overlapped(ctx, launched, grid, block, smem, stream, params)
                          : mrt__launch(ctx, launched, grid, block, smem, stream, params));
    }
done:
    return rc;
}
