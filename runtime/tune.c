/*
 * The autotuner: which configurations to try for a problem, timing them, choosing and
 * recording the winner, and the dispatch hook that makes mrt_gemm use it.
 *
 * Candidates. The kernel accepts 2 thread counts x 4 m-block counts x 3 x 3 tile shapes x 7
 * pipeline depths; compiling one costs about a second, timing one a few milliseconds. The
 * space is cut without the GPU by rules that only drop configurations that cannot run, cannot
 * win, or duplicate a cheaper one (mrt__prune explains each), and the heuristic's own pick is
 * always kept and timed first, so a tuned winner is never slower than the untuned default
 * beyond noise.
 *
 * Timing (runtime/timing.c): CUDA events around batches of back-to-back launches over input
 * copies that together exceed twice the L2 size, warm-up first, median and interquartile range
 * of the batches. Compiling happens before a configuration's timing, never inside it.
 *
 * Winners. Configurations within the noise band of the fastest are tied, and the tie goes to
 * the first in a fixed order on the fields, so two processes that time the same problem agree
 * unless their measurements differ by more than the noise. Records are keyed by the device
 * fingerprint and carry the kernel source hash; a lookup asks for both current values, so a
 * new GPU model or a changed kernel is tuned again instead of handed a stale winner.
 *
 * Dispatch. Each context keeps an open-addressing table from (N, K, group size, M bucket) to
 * what the store said (a winner or nothing), so the store is asked once per problem and bucket
 * and the launch path costs one hash probe.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "../cache/tuning.h"
#include "tune.h"

#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

/* Activation type of every tuning record made by this kernel. */
#define TUNE_DTYPE "f16"

/* A candidate must keep at least this fraction of the SMs busy that the best one does. */
#define TUNE_MIN_OCCUPANCY_RATIO 0.5
/* fp32 accumulators per thread above which a configuration spills: the reference kernel's
 * largest tile (4 m-blocks x 256 columns on 256 threads) holds 64. */
#define TUNE_MAX_ACCUMULATORS 64

/* fp32 accumulators per thread: 16 x 16 per (m-block, n-block) pair, spread over the block.
 * The wgmma kernel's own limit is part of its validation (up to 128 with 256 threads). */
static int too_many_accumulators(const mrt_config *cfg)
{
    return !mrt__marlin_is_wgmma(cfg) &&
           256 * cfg->thread_m_blocks * cfg->thread_n_blocks / cfg->threads > TUNE_MAX_ACCUMULATORS;
}

#define TUNE_DEFAULT_WARMUP 3
#define TUNE_DEFAULT_BATCHES 20
#define TUNE_DEFAULT_NOISE 0.02

const int mrt__tune_stages[MRT_TUNE_STAGE_COUNT] = {3, 4, 6, 8};

/* ------------------------------------------------------------------------------------ */
/* Small pure pieces                                                                     */
/* ------------------------------------------------------------------------------------ */

int64_t mrt_gemm_m_bucket(int64_t m)
{
    if (m < 1)
        return 0;
    int64_t bucket = 1;
    while (bucket < m && bucket < MRT_TUNE_M_BUCKET_MAX)
        bucket *= 2;
    return bucket;
}

/* Little-endian bytes of a 32-bit value, so the fingerprint is the same on every host. */
static size_t put_le32(unsigned char *out, int32_t value)
{
    uint32_t bits = (uint32_t)value;
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)(bits >> (8 * i));
    return 4;
}

uint64_t mrt_device_fingerprint(const mrt_device_info *info)
{
    if (!info)
        return 0;
    /* The name up to its NUL (which is included, so no name is a prefix of another's
     * framing), then five fixed-width fields. */
    unsigned char bytes[sizeof info->name + 1 + 5 * 4];
    size_t name_length = strnlen(info->name, sizeof info->name);
    size_t used = 0;
    memcpy(bytes, info->name, name_length);
    used += name_length;
    bytes[used++] = 0;
    used += put_le32(bytes + used, info->cc_major);
    used += put_le32(bytes + used, info->cc_minor);
    used += put_le32(bytes + used, info->sm_count);
    used += put_le32(bytes + used, info->l2_bytes);
    used += put_le32(bytes + used, info->memory_clock_khz);
    return XXH3_64bits(bytes, used);
}

void mrt__tune_fingerprint_hex(uint64_t fingerprint, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)fingerprint);
}

static int compare_int(int a, int b)
{
    return (a > b) - (a < b);
}

int mrt__tune_config_order(const mrt_config *a, const mrt_config *b)
{
    int c;
    if ((c = compare_int(a->stages, b->stages)) != 0)
        return c;
    if ((c = compare_int(a->threads, b->threads)) != 0)
        return c;
    if ((c = compare_int(a->thread_m_blocks, b->thread_m_blocks)) != 0)
        return c;
    if ((c = compare_int(a->thread_n_blocks, b->thread_n_blocks)) != 0)
        return c;
    if ((c = compare_int(a->thread_k_blocks, b->thread_k_blocks)) != 0)
        return c;
    return compare_int(a->group_blocks, b->group_blocks);
}

int mrt__tune_same_config(const mrt_config *a, const mrt_config *b)
{
    return mrt__tune_config_order(a, b) == 0;
}

uint64_t mrt__tune_candidate_set_hash(const mrt_config *configs, size_t count)
{
    /* Chained: each configuration's bytes hashed with the hash so far as the seed. */
    uint64_t hash = count;
    for (size_t i = 0; i < count; i++) {
        unsigned char bytes[6 * 4];
        size_t used = 0;
        used += put_le32(bytes + used, configs[i].threads);
        used += put_le32(bytes + used, configs[i].thread_m_blocks);
        used += put_le32(bytes + used, configs[i].thread_n_blocks);
        used += put_le32(bytes + used, configs[i].thread_k_blocks);
        used += put_le32(bytes + used, configs[i].stages);
        used += put_le32(bytes + used, configs[i].group_blocks);
        hash = XXH3_64bits_withSeed(bytes, used, hash);
    }
    return hash;
}

/* qsort order of results once the winner is out: median, then the fixed order. */
static int compare_results(const void *pa, const void *pb)
{
    const mrt_tune_result *a = pa, *b = pb;
    if (a->median_us != b->median_us)
        return a->median_us < b->median_us ? -1 : 1;
    return mrt__tune_config_order(&a->config, &b->config);
}

void mrt__tune_decide(mrt_tune_result *results, size_t count, double noise)
{
    if (count == 0)
        return;
    /* The fastest, with exact ties in medians also settled by the fixed order. */
    size_t best = 0;
    for (size_t i = 1; i < count; i++)
        if (compare_results(&results[i], &results[best]) < 0)
            best = i;
    /* The best's spread widens the band (a noisy best cannot tell close candidates apart),
     * but to twice the relative band at most: one noisy measurement must not let a clearly
     * slower configuration win (seen on an H200: a best with a 12% spread made a 3-stage
     * configuration 12% slower than the heuristic's pick the winner, docs/performance.md v10). */
    double band = noise * results[best].median_us;
    if (results[best].spread_us > band)
        band = results[best].spread_us < 2 * band ? results[best].spread_us : 2 * band;
    const double limit = results[best].median_us + band;
    size_t winner = best;
    for (size_t i = 0; i < count; i++) {
        results[i].tied = results[i].median_us <= limit;
        if (results[i].tied && mrt__tune_config_order(&results[i].config, &results[winner].config) < 0)
            winner = i;
    }
    mrt_tune_result chosen = results[winner];
    results[winner] = results[0];
    results[0] = chosen;
    qsort(results + 1, count - 1, sizeof *results, compare_results);
}

/* ------------------------------------------------------------------------------------ */
/* Candidates                                                                            */
/* ------------------------------------------------------------------------------------ */

const char *mrt__prune_name(mrt__prune reason)
{
    static const char *const names[MRT_PRUNE_COUNT] = {
        [MRT_PRUNE_KEEP] = "kept",           [MRT_PRUNE_INVALID] = "invalid",   [MRT_PRUNE_ARCH] = "arch",
        [MRT_PRUNE_SHAPE] = "shape",         [MRT_PRUNE_M_BLOCKS] = "m-blocks",
        [MRT_PRUNE_REGISTERS] = "registers", [MRT_PRUNE_SMEM] = "shared memory",
        [MRT_PRUNE_OCCUPANCY] = "occupancy", [MRT_PRUNE_STAGES] = "stages",
    };
    return (unsigned)reason < MRT_PRUNE_COUNT ? names[reason] : "unknown";
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

/* Chunks of 16 * tmb rows that M is cut into. */
static int64_t m_chunks(int64_t m, int tmb)
{
    return ceil_div(m, 16 * (int64_t)tmb);
}

/* Tiles of one launch and the tiles each busy block works through (its stripe). The wgmma
 * kernel's tile is an output tile's K share (all of K unless the launch splits it), one per
 * block; with a stream-K tail, a K step of an output tile, the stripe being the steps of
 * the SM with the most: its whole tiles and its part of the tail. */
static void tile_counts(const mrt_config *cfg, int64_t m, int64_t n, int64_t k, int sms, int64_t *tiles,
                        int64_t *stripe)
{
    const int64_t outputs = (n / (16 * cfg->thread_n_blocks)) * m_chunks(m, cfg->thread_m_blocks);
    const int stream_k = mrt__marlin_is_wgmma(cfg) ? mrt__marlin_wgmma_stream_k(cfg, m, n, k, sms) : 0;
    if (stream_k) {
        const int64_t steps = k / (16 * cfg->thread_k_blocks);
        *tiles = outputs * steps;
        *stripe = outputs / sms * steps + ceil_div(outputs % sms * steps, stream_k);
        return;
    }
    const int64_t k_steps =
        mrt__marlin_is_wgmma(cfg) ? mrt__marlin_wgmma_splits(cfg, m, n, k, sms) : k / (16 * cfg->thread_k_blocks);
    *tiles = k_steps * outputs;
    /* wgmma: one block per tile, in waves of `sms`; mma.sync: the launch's stripes. */
    const int64_t grid = mrt__marlin_is_wgmma(cfg) ? (*tiles < sms ? *tiles : sms) : mrt__marlin_blocks(cfg, m, n, k, sms);
    *stripe = ceil_div(*tiles, grid);
}

/* Fraction of the SMs a configuration keeps busy: the grid has at most SMs blocks, each with
 * a stripe of ceil(tiles / grid) tiles, so tiles / (SMs x stripe) of the SM time works. */
static double occupancy(const mrt_config *cfg, int64_t m, int64_t n, int64_t k, int sms)
{
    int64_t tiles, stripe;
    tile_counts(cfg, m, n, k, sms, &tiles, &stripe);
    return (double)tiles / ((double)sms * (double)stripe);
}

/* The rules that need no other candidate to decide, in the order of mrt__prune. */
static mrt__prune structural_reason(const mrt_config *cfg, int64_t m, int64_t n, int64_t k, int group_size,
                                    const mrt_device_info *dev)
{
    if (mrt__marlin_validate(cfg, NULL) != MRT_OK)
        return MRT_PRUNE_INVALID;
    const int wgmma = mrt__marlin_is_wgmma(cfg);
    if (wgmma && !(dev->cc_major == 9 && dev->cc_minor == 0))
        return MRT_PRUNE_ARCH;
    if (n % (16 * cfg->thread_n_blocks) != 0 || k % (16 * cfg->thread_k_blocks) != 0 ||
        cfg->group_blocks != mrt__marlin_group_blocks(group_size, k))
        return MRT_PRUNE_SHAPE;
    /* The wgmma kernel's token tiles are 128 or 256 rows, worth trying past 64 rows, the
     * 256-row ones past 128. The tiles that run a chunk of at most a half or a quarter of
     * their rows with wgmmas that narrow (mrt__marlin_wgmma_runs_narrow: 32 or 64 tokens on
     * 128-row tiles) are worth trying past 16 rows. */
    if (wgmma)
        return m <= 16 || (m <= 64 && !mrt__marlin_wgmma_runs_narrow(cfg)) ||
                       (cfg->thread_m_blocks == 16 && m <= 128)
                   ? MRT_PRUNE_M_BLOCKS
               : mrt__marlin_smem_bytes(cfg) > dev->max_smem_optin ? MRT_PRUNE_SMEM
                                                                  : MRT_PRUNE_KEEP;
    /* More m-blocks than rows only pads; fewer cut M into more chunks (each reads all of B
     * again, which can still win on a small layer by making more tiles), but of two counts
     * that make as many chunks the smaller pads less for the same tiles. */
    const int64_t max_tmb = m > 64 ? 4 : ceil_div(m, 16);
    if (cfg->thread_m_blocks > max_tmb)
        return MRT_PRUNE_M_BLOCKS;
    for (int smaller = 1; smaller < cfg->thread_m_blocks; smaller++)
        if (m_chunks(m, smaller) == m_chunks(m, cfg->thread_m_blocks))
            return MRT_PRUNE_M_BLOCKS;
    if (too_many_accumulators(cfg))
        return MRT_PRUNE_REGISTERS;
    if (mrt__marlin_smem_bytes(cfg) > dev->max_smem_optin)
        return MRT_PRUNE_SMEM;
    return MRT_PRUNE_KEEP;
}

/* The shallowest depth of the set whose ring holds a whole stripe: a block starts by issuing
 * stages - 1 tile copies, so stages - 1 >= stripe already requests everything at once and a
 * deeper ring only costs shared memory. 0 when no depth of the set is that deep. */
static int covering_stages(const mrt_config *cfg, int64_t m, int64_t n, int64_t k, int sms)
{
    int64_t tiles, stripe;
    tile_counts(cfg, m, n, k, sms, &tiles, &stripe);
    for (int i = 0; i < MRT_TUNE_STAGE_COUNT; i++)
        if (mrt__tune_stages[i] - 1 >= stripe)
            return mrt__tune_stages[i];
    return 0;
}

/* Fields of a that differ from b, for the tuning order. */
static int distance(const mrt_config *a, const mrt_config *b)
{
    return (a->threads != b->threads) + (a->thread_m_blocks != b->thread_m_blocks) +
           (a->thread_n_blocks != b->thread_n_blocks) + (a->thread_k_blocks != b->thread_k_blocks) +
           (a->stages != b->stages);
}

typedef struct ranked_config {
    mrt_config config;
    int distance;
} ranked_config;

static int compare_ranked(const void *pa, const void *pb)
{
    const ranked_config *a = pa, *b = pb;
    if (a->distance != b->distance)
        return a->distance < b->distance ? -1 : 1;
    return mrt__tune_config_order(&a->config, &b->config);
}

/* Every configuration the kernel could be asked for: the mma.sync kernel's 2 x 4 x 3 x 3 x
 * MRT_TUNE_STAGE_COUNT, then the wgmma kernel's (sm_90): threads 128 or 256, 128 or 256
 * tokens, 64, 128 or 256 columns, 64- or 128-deep steps, 4 or 6 stages (3 measured slower,
 * docs/performance.md v5; the invalid combinations fall to validation). */
#define TUNE_MMA_SPACE_SIZE (2 * 4 * 3 * 3 * MRT_TUNE_STAGE_COUNT)
#define TUNE_WGMMA_SPACE_SIZE (2 * 2 * 3 * 2 * 2)
#define TUNE_SPACE_SIZE (TUNE_MMA_SPACE_SIZE + TUNE_WGMMA_SPACE_SIZE)

/* The index-th configuration of that space (0 <= index < TUNE_SPACE_SIZE), stages varying
 * fastest, then thread_k, thread_n, m-blocks, threads; one enumeration for the candidate list
 * and for mrt_gemm_tune_space. */
static void space_config(size_t index, int group_blocks, mrt_config *cfg)
{
    if (index >= TUNE_MMA_SPACE_SIZE) {
        static const int wgmma_stages[] = {4, 6}, wgmma_k[] = {4, 8}, wgmma_n[] = {4, 8, 16}, wgmma_m[] = {8, 16},
                         wgmma_threads[] = {128, 256};
        const size_t i = index - TUNE_MMA_SPACE_SIZE;
        memset(cfg, 0, sizeof *cfg);
        cfg->stages = wgmma_stages[i % 2];
        cfg->thread_k_blocks = wgmma_k[i / 2 % 2];
        cfg->thread_n_blocks = wgmma_n[i / 4 % 3];
        cfg->thread_m_blocks = wgmma_m[i / 12 % 2];
        cfg->threads = wgmma_threads[i / 24];
        cfg->group_blocks = group_blocks;
        return;
    }
    static const int threads[] = {128, 256};
    static const int blocks[] = {4, 8, 16};
    const size_t s = index % MRT_TUNE_STAGE_COUNT, kb = index / MRT_TUNE_STAGE_COUNT % 3,
                 nb = index / (MRT_TUNE_STAGE_COUNT * 3) % 3, tmb = index / (MRT_TUNE_STAGE_COUNT * 9) % 4,
                 t = index / (MRT_TUNE_STAGE_COUNT * 36);
    memset(cfg, 0, sizeof *cfg);
    cfg->threads = threads[t];
    cfg->thread_m_blocks = (int)tmb + 1;
    cfg->thread_n_blocks = blocks[nb];
    cfg->thread_k_blocks = blocks[kb];
    cfg->stages = mrt__tune_stages[s];
    cfg->group_blocks = group_blocks;
}

void mrt__tune_candidates(const mrt_device_info *dev, int64_t m, int64_t n, int64_t k, int group_size,
                          mrt_config *configs, size_t capacity, size_t *count, size_t pruned[MRT_PRUNE_COUNT])
{
    ranked_config space[TUNE_SPACE_SIZE];
    size_t kept = 0, total = 0;
    size_t reasons[MRT_PRUNE_COUNT] = {0};
    const int sms = dev->sm_count > 0 ? dev->sm_count : 1;
    const int group_blocks = mrt__marlin_group_blocks(group_size, k);

    mrt_config heuristic;
    mrt__marlin_heuristic(m, n, k, group_size, dev, &heuristic);
    const int heuristic_fits = mrt__marlin_config_fits(NULL, &heuristic, n, k, group_size, dev) == MRT_OK;

    /* Pass 1: the rules that look at one configuration. */
    double best_occupancy = heuristic_fits ? occupancy(&heuristic, m, n, k, sms) : 0;
    for (size_t index = 0; index < TUNE_SPACE_SIZE; index++) {
        mrt_config cfg;
        space_config(index, group_blocks, &cfg);
        total++;
        if (heuristic_fits && mrt__tune_same_config(&cfg, &heuristic))
            continue; /* placed first below, whatever the rules say */
        mrt__prune reason = structural_reason(&cfg, m, n, k, group_size, dev);
        if (reason != MRT_PRUNE_KEEP) {
            reasons[reason]++;
            continue;
        }
        const double busy = occupancy(&cfg, m, n, k, sms);
        if (busy > best_occupancy)
            best_occupancy = busy;
        space[kept].config = cfg;
        space[kept].distance = distance(&cfg, &heuristic);
        kept++;
    }

    /* Pass 2: the rules that compare with the others. The heuristic's pick is exempt. */
    size_t survivors = 0;
    for (size_t i = 0; i < kept; i++) {
        const mrt_config *cfg = &space[i].config;
        mrt__prune reason = MRT_PRUNE_KEEP;
        if (occupancy(cfg, m, n, k, sms) < TUNE_MIN_OCCUPANCY_RATIO * best_occupancy)
            reason = MRT_PRUNE_OCCUPANCY;
        else if (!mrt__marlin_is_wgmma(cfg)) {
            const int enough = covering_stages(cfg, m, n, k, sms);
            if (enough && cfg->stages > enough)
                reason = MRT_PRUNE_STAGES;
        }
        if (reason != MRT_PRUNE_KEEP) {
            reasons[reason]++;
            continue;
        }
        space[survivors++] = space[i];
    }
    qsort(space, survivors, sizeof *space, compare_ranked);

    size_t written = 0;
    if (heuristic_fits) {
        if (written < capacity)
            configs[written] = heuristic;
        written++;
    }
    for (size_t i = 0; i < survivors; i++, written++)
        if (written < capacity)
            configs[written] = space[i].config;
    *count = written;
    if (pruned) {
        /* The heuristic's pick counts as kept even where a rule would have dropped it. */
        reasons[MRT_PRUNE_KEEP] = total;
        for (int r = 1; r < MRT_PRUNE_COUNT; r++)
            reasons[MRT_PRUNE_KEEP] -= reasons[r];
        memcpy(pruned, reasons, sizeof reasons);
    }
}

/* ------------------------------------------------------------------------------------ */
/* The context's tuner state: winner cache and statistics                                */
/* ------------------------------------------------------------------------------------ */

/* What the store said about one problem and M bucket. */
typedef struct winner_slot {
    int used;
    int group_size;
    int64_t n, k, m_bucket;
    int has_winner;
    int complete;   /* the winner's tune covered the current candidate list */
    int tune_tried; /* a first-use tune ran (or failed) for it in this context */
    int64_t m;      /* the M the winner was measured at */
    mrt_config config;
} winner_slot;

struct mrt__tune_state {
    winner_slot *slots;
    size_t capacity; /* a power of two, or 0 */
    size_t used;
    int tuning;      /* a tune is running: launches inside it must not start another */
    uint32_t autotune_budget_ms;
    mrt_tune_stats stats;
};

void mrt__tune_state_free(struct mrt__tune_state *state)
{
    if (!state)
        return;
    free(state->slots);
    free(state);
}

static mrt_status tune_state(mrt_context *ctx, struct mrt__tune_state **out)
{
    if (!ctx->tune) {
        struct mrt__tune_state *state = calloc(1, sizeof *state);
        if (!state)
            return mrt__fail(&ctx->err, MRT_ERR_OUT_OF_MEMORY, "out of memory for the tuner state");
        long budget = mrt__env_long("MARLINRT_AUTOTUNE_BUDGET_MS", MRT_AUTOTUNE_BUDGET_MS_DEFAULT);
        state->autotune_budget_ms = budget > UINT32_MAX ? UINT32_MAX : (uint32_t)budget;
        ctx->tune = state;
    }
    *out = ctx->tune;
    return MRT_OK;
}

static size_t slot_hash(int64_t n, int64_t k, int group_size, int64_t m_bucket)
{
    const int64_t words[4] = {n, k, group_size, m_bucket};
    return (size_t)XXH3_64bits(words, sizeof words);
}

static winner_slot *slot_find(struct mrt__tune_state *state, int64_t n, int64_t k, int group_size, int64_t m_bucket)
{
    if (!state->capacity)
        return NULL;
    size_t mask = state->capacity - 1;
    for (size_t i = slot_hash(n, k, group_size, m_bucket) & mask;; i = (i + 1) & mask) {
        winner_slot *slot = &state->slots[i];
        if (!slot->used)
            return NULL;
        if (slot->n == n && slot->k == k && slot->group_size == group_size && slot->m_bucket == m_bucket)
            return slot;
    }
}

/* The slot for a key, added empty when missing; the table stays at most half full. */
static mrt_status slot_get(mrt_context *ctx, struct mrt__tune_state *state, int64_t n, int64_t k, int group_size,
                           int64_t m_bucket, winner_slot **out)
{
    winner_slot *slot = slot_find(state, n, k, group_size, m_bucket);
    if (slot) {
        *out = slot;
        return MRT_OK;
    }
    if (2 * (state->used + 1) > state->capacity) {
        size_t capacity = state->capacity ? 2 * state->capacity : 64;
        winner_slot *slots = calloc(capacity, sizeof *slots);
        if (!slots)
            return mrt__fail(&ctx->err, MRT_ERR_OUT_OF_MEMORY, "out of memory for the winner cache");
        for (size_t i = 0; i < state->capacity; i++) {
            if (!state->slots[i].used)
                continue;
            const winner_slot *old = &state->slots[i];
            size_t j = slot_hash(old->n, old->k, old->group_size, old->m_bucket) & (capacity - 1);
            while (slots[j].used)
                j = (j + 1) & (capacity - 1);
            slots[j] = *old;
        }
        free(state->slots);
        state->slots = slots;
        state->capacity = capacity;
    }
    size_t mask = state->capacity - 1;
    size_t i = slot_hash(n, k, group_size, m_bucket) & mask;
    while (state->slots[i].used)
        i = (i + 1) & mask;
    slot = &state->slots[i];
    memset(slot, 0, sizeof *slot);
    slot->used = 1;
    slot->n = n;
    slot->k = k;
    slot->group_size = group_size;
    slot->m_bucket = m_bucket;
    state->used++;
    *out = slot;
    return MRT_OK;
}

/* Keep a failure that the caller absorbs (the heuristic runs instead), so it is never silent:
 * counted, and its message kept for mrt_tune_stats_get. The context's message is cleared, since
 * the call that absorbed it succeeds. */
static void note_failure(mrt_context *ctx, struct mrt__tune_state *state, const char *what)
{
    state->stats.failures++;
    /* A long message is cut to the field's size; its start names the failing call. */
    const int room = (int)sizeof state->stats.last_failure - (int)strlen(what) - 3;
    snprintf(state->stats.last_failure, sizeof state->stats.last_failure, "%s: %.*s", what, room > 0 ? room : 0,
             ctx->errbuf);
    ctx->errbuf[0] = '\0';
}

/* ------------------------------------------------------------------------------------ */
/* Store access                                                                          */
/* ------------------------------------------------------------------------------------ */

/* Tuning records follow the cubins' rule (runtime/overlay.c): read from the base store, then
 * the overlay; written to the overlay when there is one, else to the base store unless it is
 * read-only; with nothing writable they are only counted (records_skipped). */
static int read_stores(mrt_context *ctx, mrt__store *stores[2])
{
    return mrt__ctx_read_stores(ctx, stores);
}

static mrt__store *write_store(mrt_context *ctx)
{
    return mrt__ctx_write_store(ctx);
}

static uint64_t kernel_source_hash(void)
{
    const mrt__kernel *kernel = mrt__kernel_find(MRT_KERNEL_MARLIN_W4A16);
    const mrt__source *source = kernel ? mrt__kernel_source(kernel) : NULL;
    return source ? source->hash : 0;
}

/* The tuning key of a problem on a device; fingerprint is the caller's 17-byte buffer. */
static mrt__tuning_key make_key(const mrt_device_info *dev, int64_t n, int64_t k, int group_size, char fingerprint[17])
{
    mrt__tune_fingerprint_hex(mrt_device_fingerprint(dev), fingerprint);
    mrt__tuning_key key = {fingerprint, MRT_KERNEL_MARLIN_W4A16, TUNE_DTYPE, group_size, n, k};
    return key;
}

/* Whether a winner's tune covered the list of candidates this library would try now. */
static int winner_complete(const mrt__tuning_winner *w, const mrt_device_info *dev, int64_t n, int64_t k,
                           int group_size)
{
    mrt_config list[TUNE_SPACE_SIZE + 1];
    size_t count = 0;
    if (w->tried < w->candidates)
        return 0;
    mrt__tune_candidates(dev, w->m, n, k, group_size, list, COUNT_OF(list), &count, NULL);
    return (int64_t)count == w->candidates && mrt__tune_candidate_set_hash(list, count) == w->candidate_set;
}

/* Fill a fresh slot from the store. A failed lookup is returned (the slot stays without a
 * winner); a winner that does not fit the problem on this device is rejected and counted. */
static mrt_status slot_load(mrt_context *ctx, struct mrt__tune_state *state, winner_slot *slot,
                            const mrt_device_info *dev)
{
    mrt_status rc = MRT_OK;
    char fingerprint[17];
    mrt__tuning_key key = make_key(dev, slot->n, slot->k, slot->group_size, fingerprint);
    mrt__store *stores[2];
    int store_count = read_stores(ctx, stores);
    /* The last store read wins: the overlay, written on this machine, over a shipped image. */
    mrt__tuning_winner w;
    int found = 0;
    state->stats.winner_lookups++;
    for (int i = 0; i < store_count; i++) {
        mrt__tuning_winner here;
        int found_here = 0;
        MRT_CHECK(mrt__tuning_get_winner(stores[i], &key, slot->m_bucket, kernel_source_hash(), &here, &found_here,
                                         &ctx->err));
        if (found_here) {
            w = here;
            found = 1;
        }
    }
    if (!found)
        goto done;
    if (mrt__marlin_validate(&w.config, NULL) != MRT_OK ||
        mrt__marlin_config_fits(NULL, &w.config, slot->n, slot->k, slot->group_size, dev) != MRT_OK) {
        state->stats.winners_rejected++;
        goto done;
    }
    slot->has_winner = 1;
    slot->config = w.config;
    slot->m = w.m;
    slot->complete = winner_complete(&w, dev, slot->n, slot->k, slot->group_size);
done:
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Tuning                                                                                */
/* ------------------------------------------------------------------------------------ */

/* Candidate failures the tune goes on after; anything else stops it. */
static int skippable(mrt_status status)
{
    return status == MRT_ERR_COMPILE || status == MRT_ERR_NO_NVRTC || status == MRT_ERR_UNSUPPORTED;
}

static mrt_status check_options(mrt__err *err, const mrt_tune_options *opts)
{
    const uint32_t known = MRT_TUNE_RETIME | MRT_TUNE_NO_RECORD;
    if (opts->flags & ~known)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_tune: opts->flags = 0x%x: unknown bits 0x%x",
                         opts->flags, opts->flags & ~known);
    if (opts->warmup < 0 || opts->warmup > 1000)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_tune: opts->warmup = %d: must be 0..1000",
                         opts->warmup);
    if (opts->batches < 1 || opts->batches > 1000)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_tune: opts->batches = %d: must be 1..1000",
                         opts->batches);
    if (!(opts->noise >= 0 && opts->noise <= 1))
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_tune: opts->noise = %g: must be 0..1", opts->noise);
    for (size_t i = 0; i < COUNT_OF(opts->reserved); i++)
        if (opts->reserved[i] != 0)
            return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_tune: opts->reserved[%zu] must be 0", i);
    return MRT_OK;
}

void mrt_tune_options_init(mrt_tune_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->warmup = TUNE_DEFAULT_WARMUP;
    opts->batches = TUNE_DEFAULT_BATCHES;
    opts->noise = TUNE_DEFAULT_NOISE;
}

/* Report one candidate; non-zero when the caller wants the tune stopped. */
static int report(const mrt_tune_options *opts, size_t index, size_t total, const mrt_tune_result *result,
                  mrt_status status, const char *message)
{
    if (!opts->progress)
        return 0;
    mrt_tune_event event;
    memset(&event, 0, sizeof event);
    event.index = index;
    event.total = total;
    event.result = *result;
    event.status = status;
    event.message = message ? message : "";
    return opts->progress(&event, opts->progress_user);
}

mrt_status mrt__tune_run(mrt_context *ctx, const mrt_device_info *dev, int64_t m, int64_t n, int64_t k,
                         int group_size, const mrt_config *candidates, size_t candidate_count,
                         const mrt_tune_options *opts_in, const mrt__tune_timer *timer, int autotune,
                         mrt_tune_result *results, size_t capacity, size_t *count)
{
    mrt_status rc = MRT_OK;
    mrt__err *err = &ctx->err;
    struct mrt__tune_state *state = NULL;
    mrt_config *list = NULL;
    mrt_tune_result *timed = NULL;
    mrt__tuning_timing *stored = NULL;
    size_t stored_count = 0, timed_count = 0, tried = 0;
    mrt_status last_skip = MRT_OK, record_status = MRT_OK;
    char last_skip_message[MRT_ERRMSG_SIZE] = "", record_message[MRT_ERRMSG_SIZE] = "";
    int records_blocked = 0, entered = 0;
    double best_us = 0;
    mrt_tune_options opts;

    if (opts_in)
        opts = *opts_in;
    else
        mrt_tune_options_init(&opts);
    const int record = !(opts.flags & MRT_TUNE_NO_RECORD);
    if (count)
        *count = 0;
    MRT_CHECK(tune_state(ctx, &state));

    /* The list: given (tests), or this library's candidates for the problem. */
    size_t total = candidate_count;
    const size_t list_capacity = candidates ? candidate_count : TUNE_SPACE_SIZE + 1;
    list = malloc((list_capacity ? list_capacity : 1) * sizeof *list);
    if (!list)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory for the candidate list");
    if (candidates)
        memcpy(list, candidates, candidate_count * sizeof *list);
    else
        mrt__tune_candidates(dev, m, n, k, group_size, list, TUNE_SPACE_SIZE + 1, &total, NULL);
    if (total == 0)
        MRT_FAIL(err, MRT_ERR_UNSUPPORTED,
                 "mrt_gemm_tune: no configuration fits m = %lld, n = %lld, k = %lld, group_size = %d on %s",
                 (long long)m, (long long)n, (long long)k, group_size, dev->name);
    timed = calloc(total, sizeof *timed);
    if (!timed)
        MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory for %zu tuning results", total);
    mrt_config heuristic;
    mrt__marlin_heuristic(m, n, k, group_size, dev, &heuristic);

    char fingerprint[17];
    const mrt__tuning_key key = make_key(dev, n, k, group_size, fingerprint);
    const uint64_t source_hash = kernel_source_hash();
    if (!(opts.flags & MRT_TUNE_RETIME)) {
        mrt__store *stores[2];
        int store_count = read_stores(ctx, stores);
        for (int s = 0; s < store_count; s++) {
            mrt__tuning_timing *rows = NULL;
            size_t row_count = 0;
            MRT_CHECK(mrt__tuning_get_timings(stores[s], &key, m, source_hash, &rows, &row_count, err));
            if (!row_count)
                continue;
            /* Rows of a later store (the overlay) come after, and so win in the lookup below. */
            mrt__tuning_timing *joined = realloc(stored, (stored_count + row_count) * sizeof *joined);
            if (!joined) {
                free(rows);
                MRT_FAIL(err, MRT_ERR_OUT_OF_MEMORY, "out of memory reading tuning timings");
            }
            stored = joined;
            memcpy(stored + stored_count, rows, row_count * sizeof *rows);
            stored_count += row_count;
            free(rows);
        }
    }

    state->tuning = 1;
    entered = 1;
    const double start = mrt__now_ms();
    mrt__store *target = write_store(ctx);
    for (size_t i = 0; i < total; i++) {
        mrt_tune_result *result = &timed[timed_count];
        memset(result, 0, sizeof *result);
        result->config = list[i];
        result->heuristic = mrt__tune_same_config(&list[i], &heuristic);

        const mrt__tuning_timing *hit = NULL;
        for (size_t s = 0; s < stored_count; s++)
            if (mrt__tune_same_config(&stored[s].config, &list[i]))
                hit = &stored[s];
        if (hit) {
            result->median_us = hit->median_us;
            result->spread_us = hit->spread_us;
            result->reused = 1;
            if (best_us == 0 || result->median_us < best_us)
                best_us = result->median_us;
            timed_count++;
            tried++;
            state->stats.timings_reused++;
            if (report(&opts, i, total, result, MRT_OK, NULL))
                break;
            continue;
        }
        /* The budget stops new measurements once something has a time; reused timings are
         * free and keep being collected. */
        if (opts.budget_ms && timed_count > 0 && mrt__now_ms() - start >= opts.budget_ms)
            continue;

        mrt__timing timing;
        memset(&timing, 0, sizeof timing);
        mrt_status measured = timer->measure(timer->user, &list[i], best_us, &timing);
        if (measured != MRT_OK && !skippable(measured))
            MRT_CHECK(measured);
        tried++;
        if (measured != MRT_OK) {
            state->stats.configs_failed++;
            last_skip = measured;
            snprintf(last_skip_message, sizeof last_skip_message, "%s", ctx->errbuf);
            ctx->errbuf[0] = '\0';
            if (report(&opts, i, total, result, measured, last_skip_message))
                break;
            continue;
        }
        result->median_us = timing.median_us;
        result->spread_us = timing.q3_us - timing.q1_us;
        if (best_us == 0 || result->median_us < best_us)
            best_us = result->median_us;
        timed_count++;
        state->stats.configs_timed++;
        /* Recorded at once, so a tune that is stopped keeps what it measured. After the first
         * row a read-only store refuses, the others are only counted; after a store failure
         * nothing more is written and the call returns that failure at the end. */
        if (record && !records_blocked && record_status == MRT_OK) {
            mrt__tuning_timing row = {m, list[i], source_hash, result->median_us, result->spread_us, timing.batches, 0};
            int written = 0;
            if (target)
                record_status = mrt__tuning_put_timing(target, &key, &row, &written, err);
            if (record_status != MRT_OK)
                snprintf(record_message, sizeof record_message, "%s", ctx->errbuf);
            else if (!written)
                records_blocked = 1;
        }
        if (record && records_blocked)
            state->stats.records_skipped++;
        if (report(&opts, i, total, result, MRT_OK, NULL))
            break;
    }

    if (timed_count == 0) {
        rc = last_skip != MRT_OK ? last_skip : MRT_ERR_UNSUPPORTED;
        MRT_FAIL(err, rc, "mrt_gemm_tune: none of the %zu candidates could be timed%s%s", total,
                 last_skip_message[0] ? "; the last failure: " : "", last_skip_message);
    }
    mrt__tune_decide(timed, timed_count, opts.noise);
    state->stats.tunes++;
    if (autotune)
        state->stats.autotunes++;

    if (record) {
        const int64_t bucket = mrt_gemm_m_bucket(m);
        if (record_status == MRT_OK && !records_blocked && target) {
            mrt__tuning_winner w = {bucket,
                                    m,
                                    timed[0].config,
                                    source_hash,
                                    timed[0].median_us,
                                    timed[0].spread_us,
                                    (int64_t)total,
                                    mrt__tune_candidate_set_hash(list, total),
                                    (int64_t)tried,
                                    0};
            int written = 0;
            record_status = mrt__tuning_put_winner(target, &key, dev, &w, &written, err);
            if (record_status != MRT_OK)
                snprintf(record_message, sizeof record_message, "%s", ctx->errbuf);
            else if (!written)
                state->stats.records_skipped++;
        } else if (record_status == MRT_OK) {
            state->stats.records_skipped++;
        }
        /* This context uses the winner from now on, recorded or not. */
        winner_slot *slot = NULL;
        MRT_CHECK(slot_get(ctx, state, n, k, group_size, bucket, &slot));
        slot->has_winner = 1;
        slot->config = timed[0].config;
        slot->m = m;
        slot->complete = tried == total && !candidates;
    }

    for (size_t i = 0; i < timed_count && i < capacity; i++)
        results[i] = timed[i];
    if (count)
        *count = timed_count;
    /* Timings that could not be stored still come back; the status says they were not kept. */
    if (record_status != MRT_OK)
        MRT_FAIL(err, record_status, "mrt_gemm_tune: the timings were measured but not recorded: %s",
                 record_message);
    ctx->errbuf[0] = '\0';
done:
    if (entered)
        state->tuning = 0;
    free(list);
    free(timed);
    free(stored);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Timing on the GPU                                                                     */
/* ------------------------------------------------------------------------------------ */

typedef struct gpu_timer {
    mrt_context *ctx;
    int64_t m, n, k;
    int group_size;
    int warmup, batches;
    mrt__gemm_problem *problem; /* made at the first configuration that needs timing */
} gpu_timer;

static mrt_status gpu_measure(void *user, const mrt_config *cfg, double best_us, mrt__timing *out)
{
    mrt_status rc = MRT_OK;
    gpu_timer *t = user;
    mrt_context *ctx = t->ctx;
    mrt__function fn;
    /* Compile (or fetch) and load first, so that no timed batch waits for NVRTC. */
    MRT_CHECK(mrt__get_function(ctx, MRT_KERNEL_MARLIN_W4A16, cfg, &fn));
    /* And the stream-K form where the launch runs it; without it (no NVRTC, not in the
     * store) mrt_gemm runs the plain kernel, and so is it timed. */
    if (mrt__marlin_is_wgmma(cfg) && mrt__marlin_wgmma_stream_k(cfg, t->m, t->n, t->k, mrt__device(ctx)->sm_count)) {
        int have = 0;
        MRT_CHECK(mrt__marlin_sk_function(ctx, cfg, &fn, &have));
    }
    if (!t->problem) {
        /* More than twice the L2 size, so that every launch reads its weights from HBM. */
        const size_t rotate = 2 * (size_t)(mrt__device(ctx)->l2_bytes > 0 ? mrt__device(ctx)->l2_bytes : 0) + 1;
        MRT_CHECK(mrt__gemm_problem_create(ctx, t->m, t->n, t->k, t->group_size, rotate, &t->problem));
    }
    if (best_us > 0 && t->batches > 1) {
        MRT_CHECK(mrt__gemm_problem_time(ctx, t->problem, cfg, 1, 1, out));
        if (out->median_us > MRT_TUNE_PROBE_RATIO * best_us)
            goto done;
    }
    MRT_CHECK(mrt__gemm_problem_time(ctx, t->problem, cfg, t->warmup, t->batches, out));
done:
    return rc;
}

/* Tune on the context's (open) device with the GPU timer. */
static mrt_status tune_on_gpu(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                              const mrt_tune_options *opts, int autotune, mrt_tune_result *results, size_t capacity,
                              size_t *count)
{
    gpu_timer t = {ctx, m, n, k, group_size, opts->warmup, opts->batches, NULL};
    mrt__tune_timer timer = {gpu_measure, &t};
    mrt_status rc = mrt__tune_run(ctx, mrt__device(ctx), m, n, k, group_size, NULL, 0, opts, &timer, autotune,
                                  results, capacity, count);
    mrt__gemm_problem_destroy(ctx, t.problem);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Dispatch                                                                              */
/* ------------------------------------------------------------------------------------ */

/* The slot of a problem's bucket, loaded from the store on first sight. A failed lookup is
 * returned with the slot left empty (and not asked again by this context). */
static mrt_status slot_for(mrt_context *ctx, struct mrt__tune_state *state, const mrt_device_info *dev, int64_t m,
                           int64_t n, int64_t k, int group_size, winner_slot **out, mrt_status *lookup)
{
    mrt_status rc = MRT_OK;
    winner_slot *slot = NULL;
    const int64_t bucket = mrt_gemm_m_bucket(m);
    *lookup = MRT_OK;
    slot = slot_find(state, n, k, group_size, bucket);
    if (!slot) {
        MRT_CHECK(slot_get(ctx, state, n, k, group_size, bucket, &slot));
        *lookup = slot_load(ctx, state, slot, dev);
    }
    *out = slot;
done:
    return rc;
}

mrt_status mrt__tune_winner(mrt_context *ctx, const mrt_device_info *dev, int64_t m, int64_t n, int64_t k,
                            int group_size, mrt_config *cfg)
{
    mrt_status rc = MRT_OK, lookup = MRT_OK;
    struct mrt__tune_state *state = NULL;
    winner_slot *slot = NULL;
    MRT_CHECK(tune_state(ctx, &state));
    MRT_CHECK(slot_for(ctx, state, dev, m, n, k, group_size, &slot, &lookup));
    MRT_CHECK(lookup);
    if (!slot->has_winner)
        MRT_FAIL(&ctx->err, MRT_ERR_NOT_FOUND,
                 "no tuning winner for n = %lld, k = %lld, group_size = %d, M bucket %lld on %s", (long long)n,
                 (long long)k, group_size, (long long)mrt_gemm_m_bucket(m), dev->name);
    *cfg = slot->config;
done:
    return rc;
}

mrt_status mrt__tune_select(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size, int launching,
                            mrt_config *cfg)
{
    mrt_status rc = MRT_OK, lookup = MRT_OK;
    struct mrt__tune_state *state = NULL;
    winner_slot *slot = NULL;
    const mrt_device_info *dev = mrt__device(ctx);
    MRT_CHECK(tune_state(ctx, &state));
    MRT_CHECK(slot_for(ctx, state, dev, m, n, k, group_size, &slot, &lookup));
    if (lookup != MRT_OK) {
        if (lookup == MRT_ERR_OUT_OF_MEMORY)
            MRT_CHECK(lookup);
        note_failure(ctx, state, "winner lookup");
    }

    if (launching && (ctx->opts.flags & MRT_CTX_AUTOTUNE) && !state->tuning && !slot->tune_tried &&
        (!slot->has_winner || !slot->complete)) {
        slot->tune_tried = 1;
        /* Tune the bucket's largest M, so the winner suits all of it; an unfinished tune
         * continues at the M its stored timings were measured at. */
        const int64_t bucket = slot->m_bucket;
        const int64_t tune_m = slot->has_winner ? slot->m : m > MRT_TUNE_M_BUCKET_MAX ? m : bucket;
        mrt_tune_options opts;
        mrt_tune_options_init(&opts);
        opts.budget_ms = state->autotune_budget_ms;
        mrt_status tuned = tune_on_gpu(ctx, tune_m, n, k, group_size, &opts, 1, NULL, 0, NULL);
        /* The table may have grown during the tune: find the slot again. */
        slot = slot_find(state, n, k, group_size, bucket);
        if (tuned != MRT_OK) {
            if (tuned == MRT_ERR_OUT_OF_MEMORY || !slot)
                MRT_CHECK(tuned);
            note_failure(ctx, state, "first-use tune");
        }
    }

    if (slot->has_winner) {
        *cfg = slot->config;
        if (launching)
            state->stats.winner_picks++;
    } else {
        mrt__marlin_heuristic(m, n, k, group_size, dev, cfg);
        if (launching)
            state->stats.heuristic_picks++;
    }
done:
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Public API                                                                            */
/* ------------------------------------------------------------------------------------ */

MRT_API mrt_status mrt_gemm_candidates_for(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                           mrt_config *configs, size_t capacity, size_t *count)
{
    mrt_status rc = MRT_OK;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!count)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_candidates_for: count is NULL");
    *count = 0;
    if (!configs && capacity > 0)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_candidates_for: configs is NULL with capacity %zu",
                 capacity);
    MRT_CHECK(mrt__marlin_check_shape(err, "mrt_gemm_candidates_for: ", m, n, k, group_size));
    MRT_CHECK(mrt__device_open(ctx));
    mrt__tune_candidates(mrt__device(ctx), m, n, k, group_size, configs, capacity, count, NULL);
done:
    return rc;
}

MRT_API mrt_status mrt_gemm_tune_space(int group_size, mrt_config *configs, size_t capacity, size_t *count)
{
    mrt__err *err = mrt__thread_err();
    if (!count)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_tune_space: count is NULL");
    *count = 0;
    if (!configs && capacity > 0)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_tune_space: configs is NULL with capacity %zu",
                         capacity);
    if (group_size != -1 && group_size != 32 && group_size != 64 && group_size != 128)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT,
                         "mrt_gemm_tune_space: group_size = %d: must be -1 (per channel), 32, 64 or 128", group_size);
    const int group_blocks[2] = {group_size == -1 ? -1 : group_size / 16, -1};
    size_t total = 0;
    for (int g = 0; g < (group_size == -1 ? 1 : 2); g++)
        for (size_t index = 0; index < TUNE_SPACE_SIZE; index++) {
            mrt_config cfg;
            space_config(index, group_blocks[g], &cfg);
            if (mrt__marlin_validate(&cfg, NULL) != MRT_OK || too_many_accumulators(&cfg))
                continue;
            if (total < capacity)
                configs[total] = cfg;
            total++;
        }
    *count = total;
    return MRT_OK;
}

MRT_API mrt_status mrt_gemm_tune(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                 const mrt_tune_options *opts, mrt_tune_result *results, size_t capacity,
                                 size_t *count)
{
    mrt_status rc = MRT_OK;
    mrt_tune_options defaults;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!count)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_tune: count is NULL");
    *count = 0;
    if (!results && capacity > 0)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_tune: results is NULL with capacity %zu", capacity);
    if (!opts) {
        mrt_tune_options_init(&defaults);
        opts = &defaults;
    }
    MRT_CHECK(check_options(err, opts));
    MRT_CHECK(mrt__marlin_check_shape(err, "mrt_gemm_tune: ", m, n, k, group_size));
    MRT_CHECK(mrt__device_open(ctx));
    MRT_CHECK(tune_on_gpu(ctx, m, n, k, group_size, opts, 0, results, capacity, count));
done:
    return rc;
}

MRT_API mrt_status mrt_gemm_winner(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size,
                                   mrt_config *config)
{
    mrt_status rc = MRT_OK;
    if (!ctx)
        return mrt__null_context(__func__);
    mrt__err *err = mrt__ctx_err(ctx);
    if (!config)
        MRT_FAIL(err, MRT_ERR_INVALID_ARGUMENT, "mrt_gemm_winner: config is NULL");
    MRT_CHECK(mrt__marlin_check_shape(err, "mrt_gemm_winner: ", m, n, k, group_size));
    MRT_CHECK(mrt__device_open(ctx));
    MRT_CHECK(mrt__tune_winner(ctx, mrt__device(ctx), m, n, k, group_size, config));
done:
    return rc;
}

MRT_API mrt_status mrt_tune_stats_get(const mrt_context *ctx, mrt_tune_stats *stats)
{
    if (!ctx)
        return mrt__null_context(__func__);
    if (!stats)
        return mrt__fail(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT, "%s: stats is NULL", __func__);
    if (ctx->tune)
        *stats = ctx->tune->stats;
    else
        memset(stats, 0, sizeof *stats);
    return MRT_OK;
}
