/*
 * Host-side Marlin weight packing, scale reordering, GPTQ repacking, quantization and the CPU
 * reference GEMM.
 *
 * The Marlin layout (IST-DASLab marlin, `Layer.pack`), for B[K, N] with q in 0..15:
 *   1. Tile: B is cut into 16x16 tiles; tile row kt (16 rows of K) becomes one row of the
 *      tiled array, [K/16, N*16], holding its tiles left to right, each tile row-major.
 *   2. Permute: every run of 1024 entries of that row (four tiles side by side, i.e. 16 rows
 *      by 64 columns of B; N % 64 == 0 makes runs never straddle tile rows) is reordered by
 *      the 1024-entry table built in build_nibble_sources().
 *   3. Pack: 8 consecutive entries form one int32, entry j in bits 4j..4j+3.
 * So a 16x64 block of B, at tile row kt and column block b = n / 64, becomes 128 consecutive
 * int32 at word kt * (2N) + b * 128 of the [K/16, 2N] packed array.
 *
 * Every transform here therefore works block by block: a worker gathers one 16x64 block into
 * a 1 KiB buffer on its stack (from q, from fp32/fp16 weights, or from GPTQ words), packs it
 * with the table, and moves on. No O(K*N) scratch is ever allocated, and blocks are
 * independent, so the work splits over threads by (tile row, run of column blocks).
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define TILE 16                                 /* rows and columns of a tile */
#define BLOCK_COLS 64                           /* columns of B in one 1024-nibble block */
#define BLOCK_NIBBLES (TILE * BLOCK_COLS)       /* 1024 */
#define BLOCK_WORDS (BLOCK_NIBBLES / 8)         /* 128 int32 per block */
#define BLOCKS_PER_ITEM 16                      /* column blocks one parallel work item covers */
#define SCALE_PERM_GROUPED 64                   /* _scale_perm length */
#define SCALE_PERM_SINGLE 32                    /* _scale_perm_single length */
#define SCALE_COLS_PER_ITEM 256                 /* columns one scale-finding work item covers */
#define NO_INDEX INT64_MAX

/* ------------------------------------------------------------------------- */
/* The layout tables                                                          */
/* ------------------------------------------------------------------------- */

/*
 * For each of the 1024 nibbles of a packed block (word d / 8, nibble d % 8), the position
 * row * 64 + col in the 16x64 block of B it comes from.
 *
 * The reference builds `perm` so that thread `lane` (0..31) of a warp finds in its words the
 * elements of the m16n8k16 tensor-core B fragment it owns: column lane / 4 (and lane / 4 + 8
 * for the second n8 half of the tile) and rows 2 * (lane % 4) + {0, 1, 8, 9}. For each lane it
 * lists those 8 elements (n8 half 0 then 1, rows in that order) for each of the 4 tiles of the
 * block, then regroups each word's 8 entries by the interleave 0,2,4,6,1,3,5,7 so that
 * nibbles j and j + 4 hold rows r and r + 1 of one column: the kernel turns such a pair into a
 * half2 with one mask-and-or. Entry perm[d] indexes the tiled row, tile * 256 + row * 16 + col;
 * we convert it to the block's row-major position.
 */
static void build_nibble_sources(uint16_t src[BLOCK_NIBBLES])
{
    static const int interleave[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    int perm[BLOCK_NIBBLES];
    int count = 0;
    for (int lane = 0; lane < 32; lane++) {
        int per_lane[8];
        int entries = 0;
        int col = lane / 4;
        for (int half = 0; half < 2; half++) {
            const int rows[4] = {2 * (lane % 4), 2 * (lane % 4) + 1, 2 * (lane % 4 + 4), 2 * (lane % 4 + 4) + 1};
            for (int r = 0; r < 4; r++)
                per_lane[entries++] = 16 * rows[r] + col + 8 * half;
        }
        for (int tile = 0; tile < 4; tile++)
            for (int e = 0; e < 8; e++)
                perm[count++] = per_lane[e] + 256 * tile;
    }
    for (int word = 0; word < BLOCK_WORDS; word++) {
        for (int j = 0; j < 8; j++) {
            int tiled = perm[word * 8 + interleave[j]];
            int tile = tiled / 256, row = (tiled % 256) / 16, col = tiled % 16;
            src[word * 8 + j] = (uint16_t)(row * BLOCK_COLS + tile * TILE + col);
        }
    }
}

/*
 * Scale order. The kernel reads scales with the same thread mapping as the weights; the
 * reference reorders the plain [rows, N] array, flattened, in runs of 64 for grouped scales
 * (_scale_perm: out[8i + j] = in[i + 8j], an 8x8 transpose) and runs of 32 for per-channel
 * scales (_scale_perm_single: out[8i + j] = in[2i + {0,1,8,9,16,17,24,25}[j]]). The choice
 * The reference treats one group spanning all of K as per-channel (its Layer turns
 * groupsize -1 into K and picks the table by groupsize != K), so scale_layout() maps
 * group_size == K to -1 to stay byte-identical; the kernels do the same at launch.
 */
static int scale_layout(int64_t k, int group_size)
{
    return group_size == k ? -1 : group_size;
}

static int scale_perm_length(int group_size)
{
    return group_size == -1 ? SCALE_PERM_SINGLE : SCALE_PERM_GROUPED;
}

static void build_scale_perm(int group_size, int perm[SCALE_PERM_GROUPED])
{
    static const int single_offsets[8] = {0, 1, 8, 9, 16, 17, 24, 25};
    if (group_size == -1) {
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++)
                perm[8 * i + j] = 2 * i + single_offsets[j];
    } else {
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++)
                perm[8 * i + j] = i + 8 * j;
    }
}

/* ------------------------------------------------------------------------- */
/* Argument checks                                                            */
/* ------------------------------------------------------------------------- */

static mrt_status check_shape(const char *fn, int64_t k, int64_t n)
{
    mrt__err *err = mrt__thread_err();
    if (k <= 0 || k % TILE != 0)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "%s: k = %lld is not a positive multiple of 16", fn,
                         (long long)k);
    if (n <= 0 || n % BLOCK_COLS != 0)
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "%s: n = %lld is not a positive multiple of 64", fn,
                         (long long)n);
    /* Every index into B is computed as k * n in int64 and must also fit a size_t. */
    if (k > INT64_MAX / n
#if SIZE_MAX < INT64_MAX
        || k * n > (int64_t)SIZE_MAX
#endif
    )
        return mrt__fail(err, MRT_ERR_INVALID_ARGUMENT, "%s: k * n = %lld * %lld overflows", fn, (long long)k,
                         (long long)n);
    return MRT_OK;
}

static mrt_status check_group(const char *fn, int64_t k, int group_size)
{
    if (group_size == -1)
        return MRT_OK;
    if (group_size <= 0 || group_size % TILE != 0 || k % group_size != 0)
        return mrt__fail(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT,
                         "%s: group_size = %d is neither -1 nor a positive multiple of 16 dividing k = %lld", fn,
                         group_size, (long long)k);
    return MRT_OK;
}

static mrt_status check_threads(const char *fn, int threads)
{
    if (threads < 0)
        return mrt__fail(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT, "%s: threads = %d is negative", fn, threads);
    return MRT_OK;
}

static mrt_status check_pointer(const char *fn, const void *ptr, const char *name)
{
    if (!ptr)
        return mrt__fail(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, name);
    return MRT_OK;
}

static int64_t group_rows_of(int64_t k, int group_size)
{
    return group_size == -1 ? k : group_size;
}

size_t mrt_packed_weight_bytes(int64_t k, int64_t n)
{
    if (k <= 0 || k % TILE != 0 || n <= 0 || n % BLOCK_COLS != 0 || k > INT64_MAX / n)
        return 0;
#if SIZE_MAX < INT64_MAX
    if (k * n / 2 > (int64_t)SIZE_MAX)
        return 0;
#endif
    return (size_t)(k * n / 2);
}

int64_t mrt_scale_rows(int64_t k, int group_size)
{
    if (k <= 0 || k % TILE != 0)
        return 0;
    if (group_size == -1)
        return 1;
    if (group_size <= 0 || group_size % TILE != 0 || k % group_size != 0)
        return 0;
    return k / group_size;
}

/* ------------------------------------------------------------------------- */
/* Block walking                                                              */
/* ------------------------------------------------------------------------- */

/* Work items are (tile row, run of up to BLOCKS_PER_ITEM column blocks), numbered tile row
 * major, so threads stream through neighbouring memory. */
typedef struct block_walk {
    int64_t k, n;
    int64_t blocks_per_row; /* N / 64 */
    int64_t items_per_row;
    int64_t items;
    uint16_t src[BLOCK_NIBBLES]; /* build_nibble_sources() */
} block_walk;

static void walk_init(block_walk *walk, int64_t k, int64_t n)
{
    walk->k = k;
    walk->n = n;
    walk->blocks_per_row = n / BLOCK_COLS;
    walk->items_per_row = (walk->blocks_per_row + BLOCKS_PER_ITEM - 1) / BLOCKS_PER_ITEM;
    walk->items = (k / TILE) * walk->items_per_row;
    build_nibble_sources(walk->src);
}

static void walk_item(const block_walk *walk, int64_t item, int64_t *tile_row, int64_t *block_begin,
                      int64_t *block_end)
{
    *tile_row = item / walk->items_per_row;
    *block_begin = (item % walk->items_per_row) * BLOCKS_PER_ITEM;
    *block_end = *block_begin + BLOCKS_PER_ITEM;
    if (*block_end > walk->blocks_per_row)
        *block_end = walk->blocks_per_row;
}

/* The 128 packed words of block (tile_row, block). */
static int64_t block_word_offset(const block_walk *walk, int64_t tile_row, int64_t block)
{
    return tile_row * (walk->n * TILE / 8) + block * BLOCK_WORDS;
}

static void pack_block(const block_walk *walk, const uint8_t q[BLOCK_NIBBLES], int32_t *words)
{
    const uint16_t *src = walk->src;
    for (int w = 0; w < BLOCK_WORDS; w++, src += 8) {
        uint32_t word = 0;
        for (int j = 0; j < 8; j++)
            word |= (uint32_t)q[src[j]] << (4 * j);
        words[w] = (int32_t)word;
    }
}

static void unpack_block(const block_walk *walk, const int32_t *words, uint8_t q[BLOCK_NIBBLES])
{
    const uint16_t *src = walk->src;
    for (int w = 0; w < BLOCK_WORDS; w++, src += 8) {
        uint32_t word = (uint32_t)words[w];
        for (int j = 0; j < 8; j++)
            q[src[j]] = (uint8_t)((word >> (4 * j)) & 0xfu);
    }
}

/* Lower *slot to index if smaller: records the first offending element in row-major order
 * whatever order the workers reach it in. */
static void record_first(_Atomic int64_t *slot, int64_t index)
{
    int64_t seen = atomic_load(slot);
    while (index < seen && !atomic_compare_exchange_weak(slot, &seen, index)) {
    }
}

/* ------------------------------------------------------------------------- */
/* Pack and unpack                                                            */
/* ------------------------------------------------------------------------- */

typedef struct pack_job {
    block_walk walk;
    const uint8_t *q_in;
    uint8_t *q_out;
    const int32_t *packed_in;
    int32_t *packed_out;
    _Atomic int64_t first_bad; /* first q > 15, row-major index */
} pack_job;

static void pack_item(int64_t item, void *user)
{
    pack_job *job = user;
    const block_walk *walk = &job->walk;
    int64_t tile_row, begin, end;
    walk_item(walk, item, &tile_row, &begin, &end);
    uint8_t block_q[BLOCK_NIBBLES];
    for (int64_t b = begin; b < end; b++) {
        const uint8_t *origin = job->q_in + tile_row * TILE * walk->n + b * BLOCK_COLS;
        uint8_t seen = 0;
        for (int r = 0; r < TILE; r++) {
            memcpy(block_q + r * BLOCK_COLS, origin + r * walk->n, BLOCK_COLS);
            for (int c = 0; c < BLOCK_COLS; c++)
                seen |= block_q[r * BLOCK_COLS + c];
        }
        if (seen & 0xf0u) {
            /* Row-major order in the block is row-major order in q, so the first hit is the
             * block's first offender. */
            int at = 0;
            while (block_q[at] <= 15)
                at++;
            record_first(&job->first_bad,
                         (tile_row * TILE + at / BLOCK_COLS) * walk->n + b * BLOCK_COLS + at % BLOCK_COLS);
            continue;
        }
        pack_block(walk, block_q, job->packed_out + block_word_offset(walk, tile_row, b));
    }
}

mrt_status mrt_pack_q4(const uint8_t *q, int64_t k, int64_t n, int32_t *packed, int threads)
{
    static const char fn[] = "mrt_pack_q4";
    mrt_status rc = MRT_OK;
    pack_job *job = NULL;
    MRT_CHECK(check_pointer(fn, q, "q"));
    MRT_CHECK(check_pointer(fn, packed, "packed"));
    MRT_CHECK(check_shape(fn, k, n));
    MRT_CHECK(check_threads(fn, threads));

    job = malloc(sizeof *job);
    if (!job)
        MRT_FAIL(mrt__thread_err(), MRT_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", fn, sizeof *job);
    walk_init(&job->walk, k, n);
    job->q_in = q;
    job->packed_out = packed;
    atomic_init(&job->first_bad, NO_INDEX);
    mrt__parallel_for(job->walk.items, mrt__worker_count(threads), pack_item, job);

    int64_t bad = atomic_load(&job->first_bad);
    if (bad != NO_INDEX)
        MRT_FAIL(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT,
                 "%s: q[%lld][%lld] = %u is out of range 0..15 (packed is left incomplete)", fn,
                 (long long)(bad / n), (long long)(bad % n), (unsigned)q[bad]);
done:
    free(job);
    return rc;
}

static void unpack_item(int64_t item, void *user)
{
    pack_job *job = user;
    const block_walk *walk = &job->walk;
    int64_t tile_row, begin, end;
    walk_item(walk, item, &tile_row, &begin, &end);
    uint8_t block_q[BLOCK_NIBBLES];
    for (int64_t b = begin; b < end; b++) {
        unpack_block(walk, job->packed_in + block_word_offset(walk, tile_row, b), block_q);
        uint8_t *origin = job->q_out + tile_row * TILE * walk->n + b * BLOCK_COLS;
        for (int r = 0; r < TILE; r++)
            memcpy(origin + r * walk->n, block_q + r * BLOCK_COLS, BLOCK_COLS);
    }
}

mrt_status mrt_unpack_q4(const int32_t *packed, int64_t k, int64_t n, uint8_t *q, int threads)
{
    static const char fn[] = "mrt_unpack_q4";
    mrt_status rc = MRT_OK;
    pack_job *job = NULL;
    MRT_CHECK(check_pointer(fn, packed, "packed"));
    MRT_CHECK(check_pointer(fn, q, "q"));
    MRT_CHECK(check_shape(fn, k, n));
    MRT_CHECK(check_threads(fn, threads));

    job = malloc(sizeof *job);
    if (!job)
        MRT_FAIL(mrt__thread_err(), MRT_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", fn, sizeof *job);
    walk_init(&job->walk, k, n);
    job->packed_in = packed;
    job->q_out = q;
    mrt__parallel_for(job->walk.items, mrt__worker_count(threads), unpack_item, job);
done:
    free(job);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Scales                                                                     */
/* ------------------------------------------------------------------------- */

/* Reorder run by run through a copy of the run, so that in == out is safe. */
static void reorder_scales(const mrt_half *in, int64_t count, int group_size, int inverse, mrt_half *out)
{
    int perm[SCALE_PERM_GROUPED];
    int length = scale_perm_length(group_size);
    build_scale_perm(group_size, perm);
    mrt_half run[SCALE_PERM_GROUPED];
    for (int64_t base = 0; base < count; base += length) {
        memcpy(run, in + base, (size_t)length * sizeof *run);
        for (int d = 0; d < length; d++) {
            if (inverse)
                out[base + perm[d]] = run[d];
            else
                out[base + d] = run[perm[d]];
        }
    }
}

static mrt_status check_scale_args(const char *fn, const mrt_half *in, const char *in_name, int64_t k, int64_t n,
                                   int group_size, const mrt_half *out, const char *out_name)
{
    mrt_status rc = MRT_OK;
    MRT_CHECK(check_pointer(fn, in, in_name));
    MRT_CHECK(check_pointer(fn, out, out_name));
    MRT_CHECK(check_shape(fn, k, n));
    MRT_CHECK(check_group(fn, k, group_size));
done:
    return rc;
}

mrt_status mrt_permute_scales(const mrt_half *scales, int64_t k, int64_t n, int group_size, mrt_half *marlin_scales)
{
    mrt_status rc = MRT_OK;
    MRT_CHECK(check_scale_args("mrt_permute_scales", scales, "scales", k, n, group_size, marlin_scales,
                               "marlin_scales"));
    /* N % 64 == 0, so runs of 32 or 64 never straddle a row. */
    reorder_scales(scales, mrt_scale_rows(k, group_size) * n, scale_layout(k, group_size), 0, marlin_scales);
done:
    return rc;
}

mrt_status mrt_unpermute_scales(const mrt_half *marlin_scales, int64_t k, int64_t n, int group_size, mrt_half *scales)
{
    mrt_status rc = MRT_OK;
    MRT_CHECK(check_scale_args("mrt_unpermute_scales", marlin_scales, "marlin_scales", k, n, group_size, scales,
                               "scales"));
    reorder_scales(marlin_scales, mrt_scale_rows(k, group_size) * n, scale_layout(k, group_size), 1, scales);
done:
    return rc;
}

/* ------------------------------------------------------------------------- */
/* GPTQ repack                                                                */
/* ------------------------------------------------------------------------- */

typedef struct gptq_job {
    block_walk walk;
    const int32_t *qweight; /* [K/8, N], nibble i of row r is B row 8r + i */
    int32_t *packed;
} gptq_job;

static void gptq_item(int64_t item, void *user)
{
    gptq_job *job = user;
    const block_walk *walk = &job->walk;
    int64_t tile_row, begin, end;
    walk_item(walk, item, &tile_row, &begin, &end);
    uint8_t block_q[BLOCK_NIBBLES];
    for (int64_t b = begin; b < end; b++) {
        /* A tile row of 16 B rows is two qweight rows of 8 nibbles each. */
        for (int half = 0; half < 2; half++) {
            const int32_t *row = job->qweight + (tile_row * 2 + half) * walk->n + b * BLOCK_COLS;
            for (int c = 0; c < BLOCK_COLS; c++) {
                uint32_t word = (uint32_t)row[c];
                for (int i = 0; i < 8; i++)
                    block_q[(half * 8 + i) * BLOCK_COLS + c] = (uint8_t)((word >> (4 * i)) & 0xfu);
            }
        }
        pack_block(walk, block_q, job->packed + block_word_offset(walk, tile_row, b));
    }
}

mrt_status mrt_repack_gptq(const int32_t *qweight, const mrt_half *scales, int64_t k, int64_t n, int group_size,
                           int32_t *packed, mrt_half *marlin_scales, int threads)
{
    static const char fn[] = "mrt_repack_gptq";
    mrt_status rc = MRT_OK;
    gptq_job *job = NULL;
    MRT_CHECK(check_pointer(fn, qweight, "qweight"));
    MRT_CHECK(check_pointer(fn, packed, "packed"));
    MRT_CHECK(check_scale_args(fn, scales, "scales", k, n, group_size, marlin_scales, "marlin_scales"));
    MRT_CHECK(check_threads(fn, threads));

    job = malloc(sizeof *job);
    if (!job)
        MRT_FAIL(mrt__thread_err(), MRT_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", fn, sizeof *job);
    walk_init(&job->walk, k, n);
    job->qweight = qweight;
    job->packed = packed;
    mrt__parallel_for(job->walk.items, mrt__worker_count(threads), gptq_item, job);
    reorder_scales(scales, mrt_scale_rows(k, group_size) * n, scale_layout(k, group_size), 0, marlin_scales);
done:
    free(job);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Quantization                                                               */
/* ------------------------------------------------------------------------- */

/*
 * Two passes over w. The first finds each (group, column) scale, rounded to fp16 at once so
 * that the integers are chosen against the scale the kernel will actually multiply by. The
 * second quantizes block by block straight into the packed layout.
 */
typedef struct quant_job {
    block_walk walk;
    const float *w_f32; /* exactly one of w_f32, w_f16 is set */
    const mrt_half *w_f16;
    int64_t group_rows;
    int64_t scale_items_per_group;
    mrt_half *scales;  /* plain [rows, N] */
    int32_t *packed;
    uint8_t *q_out;    /* optional */
    _Atomic int64_t first_non_finite; /* row-major index into w */
    _Atomic int64_t first_overflow;   /* row-major index into scales */
} quant_job;

static float load_weight(const quant_job *job, int64_t index)
{
    return job->w_f32 ? job->w_f32[index] : mrt_half_to_float(job->w_f16[index]);
}

/* Copy count consecutive weights as float, so the loops that follow see plain float arrays
 * whichever the input type. */
static void load_weights(const quant_job *job, int64_t index, int64_t count, float *out)
{
    if (job->w_f32) {
        memcpy(out, job->w_f32 + index, (size_t)count * sizeof *out);
        return;
    }
    for (int64_t i = 0; i < count; i++)
        out[i] = mrt_half_to_float(job->w_f16[index + i]);
}

/*
 * q = clamp(round(x) + 8, 0, 15) with round halves away from zero, exactly as roundf, but
 * written without float comparisons so that the compiler can vectorize it: x - trunc(x) is
 * exact, and doubling it truncates to -1, 0 or 1 exactly when the fraction reached -0.5 or 0.5.
 *
 * The conversions are defined because |x| is small: x = w / scale with scale the fp16 rounding
 * of max|w| / 7, which is at least half of it (subnormal rounding included), so |x| <= 14; a
 * scale that rounded to zero was replaced by 1 for weights below 7 * 2^-25. The final clamp is
 * needed because the fp16 rounding of the scale can push |x| past 7.5.
 */
static uint8_t quantize_level(float x)
{
    int whole = (int)x;
    int half_step = (int)((x - (float)whole) * 2.0f);
    int level = whole + half_step;
    level = level < -8 ? -8 : level;
    level = level > 7 ? 7 : level;
    return (uint8_t)(level + 8);
}

static void scale_item(int64_t item, void *user)
{
    quant_job *job = user;
    int64_t n = job->walk.n;
    int64_t group = item / job->scale_items_per_group;
    int64_t col_begin = (item % job->scale_items_per_group) * SCALE_COLS_PER_ITEM;
    int64_t cols = n - col_begin < SCALE_COLS_PER_ITEM ? n - col_begin : SCALE_COLS_PER_ITEM;
    int64_t row_begin = group * job->group_rows;

    float max_abs[SCALE_COLS_PER_ITEM] = {0};
    float row[SCALE_COLS_PER_ITEM];
    int finite = 1;
    for (int64_t r = row_begin; r < row_begin + job->group_rows; r++) {
        load_weights(job, r * n + col_begin, cols, row);
        for (int64_t c = 0; c < cols; c++) {
            float v = fabsf(row[c]);
            finite &= v <= FLT_MAX; /* false for NaN too */
            max_abs[c] = v > max_abs[c] ? v : max_abs[c];
        }
    }
    if (!finite) {
        for (int64_t r = row_begin; r < row_begin + job->group_rows; r++)
            for (int64_t c = 0; c < cols; c++)
                if (!(fabsf(load_weight(job, r * n + col_begin + c)) <= FLT_MAX)) {
                    record_first(&job->first_non_finite, r * n + col_begin + c);
                    return;
                }
        return;
    }
    for (int64_t c = 0; c < cols; c++) {
        int64_t index = group * n + col_begin + c;
        mrt_half scale = mrt_float_to_half(max_abs[c] / 7.0f);
        /* An all-zero group, or one so small that its scale underflows fp16 to zero, gets
         * scale 1: every q is then 8 and the group dequantizes to exact zeros. */
        if ((scale & 0x7fffu) == 0)
            scale = mrt_float_to_half(1.0f);
        else if ((scale & 0x7fffu) == 0x7c00u)
            record_first(&job->first_overflow, index);
        job->scales[index] = scale;
    }
}

static void quantize_item(int64_t item, void *user)
{
    quant_job *job = user;
    const block_walk *walk = &job->walk;
    int64_t n = walk->n;
    int64_t tile_row, begin, end;
    walk_item(walk, item, &tile_row, &begin, &end);
    /* Groups are whole tiles deep, so one group covers the tile row. */
    int64_t group = tile_row * TILE / job->group_rows;
    uint8_t block_q[BLOCK_NIBBLES];
    float scale[BLOCK_COLS], row[BLOCK_COLS];
    for (int64_t b = begin; b < end; b++) {
        int64_t col_begin = b * BLOCK_COLS;
        for (int c = 0; c < BLOCK_COLS; c++)
            scale[c] = mrt_half_to_float(job->scales[group * n + col_begin + c]);
        for (int r = 0; r < TILE; r++) {
            int64_t row_index = (tile_row * TILE + r) * n + col_begin;
            load_weights(job, row_index, BLOCK_COLS, row);
            /* A true division, not a multiply by the reciprocal, which could move a tie. */
            for (int c = 0; c < BLOCK_COLS; c++)
                block_q[r * BLOCK_COLS + c] = quantize_level(row[c] / scale[c]);
            if (job->q_out)
                memcpy(job->q_out + row_index, block_q + r * BLOCK_COLS, BLOCK_COLS);
        }
        pack_block(walk, block_q, job->packed + block_word_offset(walk, tile_row, b));
    }
}

static mrt_status quantize(const char *fn, const float *w_f32, const mrt_half *w_f16, int64_t k, int64_t n,
                           int group_size, int32_t *packed, mrt_half *marlin_scales, uint8_t *q_out,
                           mrt_half *scales_out, int threads)
{
    mrt_status rc = MRT_OK;
    quant_job *job = NULL;
    mrt_half *plain_scales = NULL;
    MRT_CHECK(check_pointer(fn, w_f32 ? (const void *)w_f32 : (const void *)w_f16, "w"));
    MRT_CHECK(check_pointer(fn, packed, "packed"));
    MRT_CHECK(check_pointer(fn, marlin_scales, "marlin_scales"));
    MRT_CHECK(check_shape(fn, k, n));
    MRT_CHECK(check_group(fn, k, group_size));
    MRT_CHECK(check_threads(fn, threads));

    int64_t rows = mrt_scale_rows(k, group_size);
    if (!scales_out) {
        plain_scales = malloc((size_t)(rows * n) * sizeof *plain_scales);
        if (!plain_scales)
            MRT_FAIL(mrt__thread_err(), MRT_ERR_OUT_OF_MEMORY, "%s: cannot allocate %lld scales", fn,
                     (long long)(rows * n));
    }
    job = malloc(sizeof *job);
    if (!job)
        MRT_FAIL(mrt__thread_err(), MRT_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", fn, sizeof *job);
    walk_init(&job->walk, k, n);
    job->w_f32 = w_f32;
    job->w_f16 = w_f16;
    job->group_rows = group_rows_of(k, group_size);
    job->scale_items_per_group = (n + SCALE_COLS_PER_ITEM - 1) / SCALE_COLS_PER_ITEM;
    job->scales = scales_out ? scales_out : plain_scales;
    job->packed = packed;
    job->q_out = q_out;
    atomic_init(&job->first_non_finite, NO_INDEX);
    atomic_init(&job->first_overflow, NO_INDEX);

    int workers = mrt__worker_count(threads);
    mrt__parallel_for(rows * job->scale_items_per_group, workers, scale_item, job);
    int64_t bad = atomic_load(&job->first_non_finite);
    if (bad != NO_INDEX)
        MRT_FAIL(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT, "%s: w[%lld][%lld] = %g is not finite", fn,
                 (long long)(bad / n), (long long)(bad % n), (double)load_weight(job, bad));
    bad = atomic_load(&job->first_overflow);
    if (bad != NO_INDEX)
        MRT_FAIL(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT,
                 "%s: group %lld, column %lld: max|w| / 7 exceeds the largest fp16 scale 65504", fn,
                 (long long)(bad / n), (long long)(bad % n));

    mrt__parallel_for(job->walk.items, workers, quantize_item, job);
    reorder_scales(job->scales, rows * n, scale_layout(k, group_size), 0, marlin_scales);
done:
    free(job);
    free(plain_scales);
    return rc;
}

mrt_status mrt_quantize_f32(const float *w, int64_t k, int64_t n, int group_size, int32_t *packed,
                            mrt_half *marlin_scales, uint8_t *q_out, mrt_half *scales_out, int threads)
{
    return quantize("mrt_quantize_f32", w, NULL, k, n, group_size, packed, marlin_scales, q_out, scales_out,
                    threads);
}

mrt_status mrt_quantize_f16(const mrt_half *w, int64_t k, int64_t n, int group_size, int32_t *packed,
                            mrt_half *marlin_scales, uint8_t *q_out, mrt_half *scales_out, int threads)
{
    return quantize("mrt_quantize_f16", NULL, w, k, n, group_size, packed, marlin_scales, q_out, scales_out,
                    threads);
}

/* ------------------------------------------------------------------------- */
/* CPU reference GEMM                                                         */
/* ------------------------------------------------------------------------- */

/*
 * Work items are (16 rows of A, one 64-column block of B). Each walks K tile by tile,
 * unpacking and dequantizing one 16x64 block on its stack, and accumulates in float64 in a
 * fixed k order, so the result does not depend on the thread count. Unpacking a block once
 * per 16 rows of A costs 1/16 of the multiply-adds.
 */
#define REF_ROWS 16

typedef struct reference_job {
    block_walk walk;
    const mrt_half *a;
    const mrt_half *scales; /* plain [rows, N] */
    const int32_t *packed;
    float *c;
    int64_t m;
    int64_t group_rows;
} reference_job;

static void reference_item(int64_t item, void *user)
{
    reference_job *job = user;
    const block_walk *walk = &job->walk;
    int64_t k = walk->k, n = walk->n;
    int64_t block = item % walk->blocks_per_row;
    int64_t row_begin = item / walk->blocks_per_row * REF_ROWS;
    int rows = job->m - row_begin < REF_ROWS ? (int)(job->m - row_begin) : REF_ROWS;
    int64_t col_begin = block * BLOCK_COLS;

    double acc[REF_ROWS][BLOCK_COLS];
    memset(acc, 0, sizeof acc);
    uint8_t block_q[BLOCK_NIBBLES];
    double weight[TILE][BLOCK_COLS];
    for (int64_t tile_row = 0; tile_row < k / TILE; tile_row++) {
        const mrt_half *scale_row = job->scales + tile_row * TILE / job->group_rows * n + col_begin;
        double scale[BLOCK_COLS];
        for (int c = 0; c < BLOCK_COLS; c++)
            scale[c] = (double)mrt_half_to_float(scale_row[c]);
        unpack_block(walk, job->packed + block_word_offset(walk, tile_row, block), block_q);
        for (int r = 0; r < TILE; r++)
            for (int c = 0; c < BLOCK_COLS; c++)
                weight[r][c] = (double)((int)block_q[r * BLOCK_COLS + c] - 8) * scale[c];
        for (int i = 0; i < rows; i++) {
            const mrt_half *a_row = job->a + (row_begin + i) * k + tile_row * TILE;
            for (int r = 0; r < TILE; r++) {
                double a = (double)mrt_half_to_float(a_row[r]);
                for (int c = 0; c < BLOCK_COLS; c++)
                    acc[i][c] += a * weight[r][c];
            }
        }
    }
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < BLOCK_COLS; c++)
            job->c[(row_begin + i) * n + col_begin + c] = (float)acc[i][c];
}

mrt_status mrt_reference_gemm(const mrt_half *a, const int32_t *packed, const mrt_half *marlin_scales, int64_t m,
                              int64_t n, int64_t k, int group_size, float *c, int threads)
{
    static const char fn[] = "mrt_reference_gemm";
    mrt_status rc = MRT_OK;
    reference_job *job = NULL;
    mrt_half *plain = NULL;
    MRT_CHECK(check_pointer(fn, a, "a"));
    MRT_CHECK(check_pointer(fn, packed, "packed"));
    MRT_CHECK(check_pointer(fn, marlin_scales, "marlin_scales"));
    MRT_CHECK(check_pointer(fn, c, "c"));
    if (m <= 0)
        MRT_FAIL(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT, "%s: m = %lld is not positive", fn, (long long)m);
    MRT_CHECK(check_shape(fn, k, n));
    MRT_CHECK(check_group(fn, k, group_size));
    MRT_CHECK(check_threads(fn, threads));
    if (m > INT64_MAX / k || m > INT64_MAX / n
#if SIZE_MAX < INT64_MAX
        || m * k > (int64_t)SIZE_MAX || m * n > (int64_t)SIZE_MAX
#endif
    )
        MRT_FAIL(mrt__thread_err(), MRT_ERR_INVALID_ARGUMENT, "%s: m * k or m * n overflows (m = %lld)", fn,
                 (long long)m);

    int64_t rows = mrt_scale_rows(k, group_size);
    plain = malloc((size_t)(rows * n) * sizeof *plain);
    job = malloc(sizeof *job);
    if (!plain || !job)
        MRT_FAIL(mrt__thread_err(), MRT_ERR_OUT_OF_MEMORY, "%s: cannot allocate the scales of %lld x %lld", fn,
                 (long long)rows, (long long)n);
    reorder_scales(marlin_scales, rows * n, scale_layout(k, group_size), 1, plain);

    walk_init(&job->walk, k, n);
    job->a = a;
    job->scales = plain;
    job->packed = packed;
    job->c = c;
    job->m = m;
    job->group_rows = group_rows_of(k, group_size);
    int64_t items = (m + REF_ROWS - 1) / REF_ROWS * job->walk.blocks_per_row;
    mrt__parallel_for(items, mrt__worker_count(threads), reference_item, job);
done:
    free(job);
    free(plain);
    return rc;
}
