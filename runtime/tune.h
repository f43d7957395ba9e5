/*
 * The autotuner (runtime/tune.c): candidate lists, timing, winners and the dispatch hook that
 * mrt_gemm uses when it is given no configuration. Private.
 *
 * The store side (SQL) is in cache/tuning.c; the GPU timing method in runtime/timing.c.
 */
#ifndef MRT_RUNTIME_TUNE_H
#define MRT_RUNTIME_TUNE_H

#include "context.h"
#include "timing.h"

/* ------------------------------------------------------------------------- */
/* Hooks into runtime/gemm.c: the rules a configuration must follow            */
/* ------------------------------------------------------------------------- */

/* Shape and group-size rules of every GEMM entry point; `field` prefixes the argument names
 * in the message (e.g. "mrt_gemm_tune: "). */
mrt_status mrt__marlin_check_shape(mrt__err *err, const char *field, int64_t m, int64_t n, int64_t k, int group_size);
/* The built-in heuristic's configuration for a shape already checked (it may still not fit the
 * device: check with mrt__marlin_config_fits). */
/* The heuristic's pick for this shape on dev (NULL: 132 SMs, no shared-memory limit). */
void mrt__marlin_heuristic(int64_t m, int64_t n, int64_t k, int group_size, const mrt_device_info *dev,
                           mrt_config *cfg);
/* A configuration, valid on its own, against a shape and a device (divisibility, group blocks,
 * shared memory). */
mrt_status mrt__marlin_config_fits(mrt__err *err, const mrt_config *cfg, int64_t n, int64_t k, int group_size,
                                   const mrt_device_info *dev);
/* Dynamic shared memory a configuration launches with. */
int64_t mrt__marlin_smem_bytes(const mrt_config *cfg);
/* K shares per output tile the launch gives a wgmma configuration on `sms` SMs (1: none). */
int mrt__marlin_wgmma_splits(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms);
/* Stream-K blocks the launch gives a wgmma configuration's tail on `sms` SMs (0: none). */
int mrt__marlin_wgmma_stream_k(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms);
/* The stream-K function of a wgmma configuration, loaded (*have 1); or *have 0 and MRT_OK
 * where its cubin is neither in the store nor compilable here (MRT_ERR_NO_NVRTC absorbed, its
 * message cleared): a launch with a tail then runs the plain kernel, the same result without
 * the tail's speed-up. The context remembers such a miss for a while (runtime/gemm.c). Any
 * other failure is returned with its message. */
mrt_status mrt__marlin_sk_function(mrt_context *ctx, const mrt_config *cfg, mrt__function *out, int *have);
/* Bytes at the start of the GEMM workspace that are zero between launches (arrival counters
 * and exchange areas) on `sms` SMs; the partial sums follow. */
size_t mrt__marlin_zeroed_bytes(int sms);
/* Blocks a launch over `rows` rows of a configuration gets on `sms` SMs. */
int64_t mrt__marlin_blocks(const mrt_config *cfg, int64_t rows, int64_t n, int64_t k, int sms);
/* group_blocks for a group size and K (-1 for per channel, and for one group as deep as K). */
int mrt__marlin_group_blocks(int group_size, int64_t k);

/* ------------------------------------------------------------------------- */
/* Candidates                                                                 */
/* ------------------------------------------------------------------------- */

/* Pipeline depths the tuner tries. Each configuration is its own NVRTC compile (about a second
 * the first time, then a store hit), so the set is small: 3 is the shallowest ring that keeps a
 * copy in flight while a tile is consumed (2 waits for every tile), 4 is the reference's, and 6
 * and 8 give narrow tiles enough bytes in flight to cover HBM latency (64-wide tiles won at 6
 * and 8 stages in the v0 exploration, docs/performance.md). */
#define MRT_TUNE_STAGE_COUNT 4
extern const int mrt__tune_stages[MRT_TUNE_STAGE_COUNT];

/* Why a configuration is not a candidate (MRT_PRUNE_KEEP: it is). In the order checked. */
typedef enum mrt__prune {
    MRT_PRUNE_KEEP = 0,
    MRT_PRUNE_INVALID,   /* the kernel rejects it (mrt__marlin_validate) */
    MRT_PRUNE_ARCH,      /* the wgmma kernel on a device other than sm_90 */
    MRT_PRUNE_SHAPE,     /* thread_n does not divide N, thread_k does not divide K, or group_blocks
                          * is not the group size's */
    MRT_PRUNE_M_BLOCKS,  /* more m-blocks than ceil(M/16) (past 64 rows, than 4), or a smaller
                          * m-block count gives the same number of 16*tmb-row chunks; the wgmma
                          * kernel at M <= 64, its 256-token tile at M <= 128 */
    MRT_PRUNE_REGISTERS, /* more than 64 fp32 accumulators per thread: spills */
    MRT_PRUNE_SMEM,      /* needs more shared memory than the device lets a block opt in to */
    MRT_PRUNE_OCCUPANCY, /* keeps less than half as many SMs busy as the best candidate */
    MRT_PRUNE_STAGES,    /* a shallower ring of the set already holds a whole stripe */
    MRT_PRUNE_COUNT
} mrt__prune;

/* Name of a reason, e.g. "shape" (static text). */
const char *mrt__prune_name(mrt__prune reason);

/* The tuning candidates for a shape (already checked) on dev, in tuning order: the heuristic's
 * pick first whenever it fits the device (no rule prunes it, so a tune never ends slower than
 * the heuristic beyond noise), then the others nearest to it first (fewest fields differing),
 * ties in mrt__tune_config_order. Writes up to capacity configurations and the total to *count.
 * pruned (may be NULL) gets how many configurations of the whole space each rule removed. */
void mrt__tune_candidates(const mrt_device_info *dev, int64_t m, int64_t n, int64_t k, int group_size,
                          mrt_config *configs, size_t capacity, size_t *count, size_t pruned[MRT_PRUNE_COUNT]);

/* XXH3-64 of a candidate list in order: a stored winner says which list its tune covered. */
uint64_t mrt__tune_candidate_set_hash(const mrt_config *configs, size_t count);

/* The fixed total order that breaks ties: fewer stages, then fewer threads, fewer m-blocks,
 * narrower thread_n, shallower thread_k, then group_blocks. <0, 0, >0 like strcmp. */
int mrt__tune_config_order(const mrt_config *a, const mrt_config *b);
/* Whether a and b are the same configuration in that order's fields. */
int mrt__tune_same_config(const mrt_config *a, const mrt_config *b);

/* Pick the winner among results (any order) and sort them: results[0] the winner, the rest by
 * median then mrt__tune_config_order; `tied` set on every result within the noise band of the
 * fastest: median <= best + noise * best, the band widened to the best's spread where that is
 * larger, up to 2 * noise * best. The winner is the tied result first
 * in mrt__tune_config_order, so the same timings in any order give the same winner. */
void mrt__tune_decide(mrt_tune_result *results, size_t count, double noise);

/* Hex text of a device fingerprint (16 digits and a NUL). */
void mrt__tune_fingerprint_hex(uint64_t fingerprint, char out[17]);

/* ------------------------------------------------------------------------- */
/* Tuning                                                                     */
/* ------------------------------------------------------------------------- */

/* How a configuration is timed: on the GPU for the real tuner, by a fake in the CPU tests.
 * best_us is the best median so far (0 before the first): a timer may stop after a short
 * probe that is clearly slower (out->batches then says how few batches were timed). measure
 * returns MRT_OK with *out filled; MRT_ERR_COMPILE, MRT_ERR_NO_NVRTC or MRT_ERR_UNSUPPORTED to
 * leave this candidate out (message on the context); any other status stops the tune. */
typedef struct mrt__tune_timer {
    mrt_status (*measure)(void *user, const mrt_config *cfg, double best_us, mrt__timing *out);
    void *user;
} mrt__tune_timer;

/* A candidate whose probe (one warm-up and one timed batch) takes more than this many times
 * the best median so far is recorded from the probe and not timed further: it can neither win
 * nor tie. Saves most of the timing at large M, where poor tiles run many times slower. */
#define MRT_TUNE_PROBE_RATIO 1.5

/* The tuner behind mrt_gemm_tune and first-use tuning. Shape already checked, opts already
 * checked (NULL for defaults). candidates NULL means the list of mrt__tune_candidates for dev;
 * otherwise exactly those (tests). Timings stored for this device, shape, M and kernel source
 * are reused unless MRT_TUNE_RETIME; each timing is recorded as soon as it is measured, the
 * winner at the end, and the context's in-memory winner is updated. autotune says whether
 * this is a first-use tune (statistics only). results/capacity/count as mrt_gemm_tune. */
mrt_status mrt__tune_run(mrt_context *ctx, const mrt_device_info *dev, int64_t m, int64_t n, int64_t k,
                         int group_size, const mrt_config *candidates, size_t candidate_count,
                         const mrt_tune_options *opts, const mrt__tune_timer *timer, int autotune,
                         mrt_tune_result *results, size_t capacity, size_t *count);

/* ------------------------------------------------------------------------- */
/* Dispatch                                                                   */
/* ------------------------------------------------------------------------- */

/* The configuration for a shape (already checked) on the context's open device when the caller
 * gave none: the recorded winner of the M bucket, else the heuristic's pick. The store is asked
 * once per shape and bucket per context; the answer is kept in memory. With launching = 1 (from
 * mrt_gemm) the pick is counted, and with MRT_CTX_AUTOTUNE a shape without a complete winner is
 * tuned first (once per context); a failed lookup or tune is counted and the heuristic runs.
 * Fails only for lack of memory. */
mrt_status mrt__tune_select(mrt_context *ctx, int64_t m, int64_t n, int64_t k, int group_size, int launching,
                            mrt_config *cfg);

/* Whether the store has a winner for the shape's M bucket on dev (through the in-memory cache):
 * MRT_OK with *cfg, MRT_ERR_NOT_FOUND, or a store failure. */
mrt_status mrt__tune_winner(mrt_context *ctx, const mrt_device_info *dev, int64_t m, int64_t n, int64_t k,
                            int group_size, mrt_config *cfg);

/* The context's tuner state (winner cache, statistics); NULL until first needed. */
struct mrt__tune_state;
void mrt__tune_state_free(struct mrt__tune_state *state);

/* Default time budget of a first-use tune, in milliseconds (MARLINRT_AUTOTUNE_BUDGET_MS). */
#define MRT_AUTOTUNE_BUDGET_MS_DEFAULT 5000

#endif /* MRT_RUNTIME_TUNE_H */
