/*
 * Host-side packing: the Marlin layout, scale order, GPTQ repack, quantization, the CPU
 * reference GEMM, fp16 conversions and every argument check.
 */
#include "helpers.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POISON_BYTE 0xa5

typedef struct shape {
    int64_t k, n;
} shape;

static const shape shapes[] = {{16, 64}, {32, 128}, {192, 320}, {64, 1024}, {1024, 64}, {272, 576}};

static void *xmalloc(size_t size)
{
    void *ptr = malloc(size);
    assert_non_null(ptr);
    memset(ptr, POISON_BYTE, size);
    return ptr;
}

static uint8_t *random_q(int64_t k, int64_t n)
{
    uint8_t *q = xmalloc((size_t)(k * n));
    for (int64_t i = 0; i < k * n; i++)
        q[i] = (uint8_t)(mrt_test_rand() & 0xfu);
    return q;
}

static float *random_weights(int64_t k, int64_t n)
{
    float *w = xmalloc((size_t)(k * n) * sizeof *w);
    for (int64_t i = 0; i < k * n; i++)
        w[i] = mrt_test_uniform(-2.0f, 2.0f);
    return w;
}

static mrt_half *random_scales(int64_t count)
{
    mrt_half *s = xmalloc((size_t)count * sizeof *s);
    for (int64_t i = 0; i < count; i++)
        s[i] = mrt_float_to_half(mrt_test_uniform(0.001f, 0.1f));
    return s;
}

#define assert_ok(expr)                                                                            \
    do {                                                                                           \
        mrt_status st_ = (expr);                                                                   \
        if (st_ != MRT_OK)                                                                         \
            fail_msg("%s: %s: %s", #expr, mrt_status_str(st_), mrt_thread_errmsg());               \
    } while (0)

/* ------------------------------------------------------------------------- */
/* The packed layout                                                          */
/* ------------------------------------------------------------------------- */

/*
 * Where B[k][n] lives in the packed array, derived from what the kernel needs rather than
 * from the reference's perm table (which runtime/pack.c transcribes):
 *
 * - Each tile row (16 rows of K) is 2N int32; each 64-column block inside it is 128 int32,
 *   in column-block order.
 * - Inside a block, word 4 * lane + tile belongs to warp thread `lane` (0..31) and 16-column
 *   tile `tile` (0..3): a thread loads its four tiles' words as one 16-byte vector.
 * - The m16n8k16 B fragment gives thread `lane` column lane / 4 of each n8 half and rows
 *   2 * (lane % 4) + {0, 1} (registers b0, b1) and the same + 8 (b2, b3). So element (r, c)
 *   of a 16x16 tile belongs to lane 4 * (c % 8) + (r % 8) / 2.
 * - Its 8 nibbles: the kernel extracts nibbles j and j + 4 together into one half2, which must
 *   be (row r, row r + 1) of one column, so r % 2 picks the upper four nibbles. The lower four
 *   run over (first/second half of K: r / 8) fastest, then (n8 half: c / 8):
 *       nibble = 4 * (r % 2) + 2 * (c / 8) + (r / 8).
 */
static void fragment_position(int64_t k, int64_t n, int64_t cols, int64_t *word, int *nibble)
{
    int64_t tile_row = k / 16, block = n / 64;
    int r = (int)(k % 16), c = (int)(n % 16), tile = (int)(n % 64) / 16;
    int lane = 4 * (c % 8) + (r % 8) / 2;
    *word = tile_row * (2 * cols) + block * 128 + 4 * lane + tile;
    *nibble = 4 * (r % 2) + 2 * (c / 8) + r / 8;
}

static void test_pack__hand_derived_words(void **state)
{
    (void)state;
    int64_t k = 16, n = 64;
    uint8_t q[16 * 64];
    int32_t packed[16 * 64 / 8];

    /* Thread 0, tile 0 (word 0) owns column 0 and column 8, rows 0, 1, 8, 9. By the nibble rule
     * its nibbles 0..7 hold (k, n) = (0,0) (8,0) (0,8) (8,8) (1,0) (9,0) (1,8) (9,8). */
    memset(q, 0, sizeof q);
    q[0 * 64 + 0] = 1;
    q[8 * 64 + 0] = 2;
    q[0 * 64 + 8] = 3;
    q[8 * 64 + 8] = 4;
    q[1 * 64 + 0] = 5;
    q[9 * 64 + 0] = 6;
    q[1 * 64 + 8] = 7;
    q[9 * 64 + 8] = 8;
    assert_ok(mrt_pack_q4(q, k, n, packed, 1));
    assert_int_equal((uint32_t)packed[0], 0x87654321u);
    for (int w = 1; w < 128; w++)
        assert_int_equal(packed[w], 0);

    memset(q, 0, sizeof q);
    /* (9, 17): tile 1, column 1 in the tile; lane = 4 * 1 + (9 % 8) / 2 = 4; word = 4 * 4 + 1
     * = 17; nibble = 4 * 1 + 2 * 0 + 1 = 5, bits 20..23. */
    q[9 * 64 + 17] = 5;
    /* (15, 63): tile 3, column 15; lane = 4 * 7 + 7 / 2 = 31; word = 4 * 31 + 3 = 127;
     * nibble = 4 + 2 + 1 = 7, the top nibble. */
    q[15 * 64 + 63] = 0xf;
    /* (6, 10): tile 0, column 10; lane = 4 * 2 + 6 / 2 = 11; word = 44; nibble = 0 + 2 + 0 = 2,
     * bits 8..11. */
    q[6 * 64 + 10] = 9;
    assert_ok(mrt_pack_q4(q, k, n, packed, 1));
    for (int w = 0; w < 128; w++) {
        uint32_t expected = w == 17 ? 0x00500000u : w == 127 ? 0xf0000000u : w == 44 ? 0x00000900u : 0u;
        assert_int_equal((uint32_t)packed[w], expected);
    }

    /* K = 32, N = 128, element (18, 67): tile row 1 starts at word 2N = 256, column block 1 at
     * +128; inside, row 2, tile 0, column 3: lane = 4 * 3 + 2 / 2 = 13, word 52, nibble 0. So
     * word 256 + 128 + 52 = 436 is exactly 7. */
    uint8_t q2[32 * 128];
    int32_t packed2[32 * 128 / 8];
    memset(q2, 0, sizeof q2);
    q2[18 * 128 + 67] = 7;
    assert_ok(mrt_pack_q4(q2, 32, 128, packed2, 1));
    for (int w = 0; w < 32 * 128 / 8; w++)
        assert_int_equal((uint32_t)packed2[w], w == 436 ? 7u : 0u);
}

static void test_pack__layout_matches_fragment_formula(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t k = shapes[s].k, n = shapes[s].n;
        uint8_t *q = random_q(k, n);
        int32_t *packed = xmalloc(mrt_packed_weight_bytes(k, n));
        assert_ok(mrt_pack_q4(q, k, n, packed, 0));
        uint32_t *expected = calloc((size_t)(k * n / 8), sizeof *expected);
        assert_non_null(expected);
        for (int64_t row = 0; row < k; row++)
            for (int64_t col = 0; col < n; col++) {
                int64_t word;
                int nibble;
                fragment_position(row, col, n, &word, &nibble);
                expected[word] |= (uint32_t)q[row * n + col] << (4 * nibble);
            }
        assert_memory_equal(packed, expected, (size_t)(k * n / 2));
        free(expected);
        free(packed);
        free(q);
    }
}

static void test_pack__pack_unpack_round_trip(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t k = shapes[s].k, n = shapes[s].n;
        uint8_t *q = random_q(k, n);
        int32_t *packed = xmalloc(mrt_packed_weight_bytes(k, n));
        uint8_t *back = xmalloc((size_t)(k * n));
        assert_int_equal(mrt_packed_weight_bytes(k, n), (size_t)(k * n / 2));
        assert_ok(mrt_pack_q4(q, k, n, packed, 0));
        assert_ok(mrt_unpack_q4(packed, k, n, back, 0));
        assert_memory_equal(q, back, (size_t)(k * n));
        free(back);
        free(packed);
        free(q);
    }
}

/* ------------------------------------------------------------------------- */
/* Scales                                                                     */
/* ------------------------------------------------------------------------- */

static void test_pack__scale_permutation_round_trip(void **state)
{
    (void)state;
    const int groups[] = {-1, 32, 64, 128};
    int64_t k = 256, n = 192;
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        int64_t rows = mrt_scale_rows(k, groups[g]);
        assert_int_equal(rows, groups[g] == -1 ? 1 : k / groups[g]);
        mrt_half *plain = random_scales(rows * n);
        mrt_half *marlin = xmalloc((size_t)(rows * n) * sizeof *marlin);
        mrt_half *back = xmalloc((size_t)(rows * n) * sizeof *back);
        assert_ok(mrt_permute_scales(plain, k, n, groups[g], marlin));
        assert_ok(mrt_unpermute_scales(marlin, k, n, groups[g], back));
        assert_memory_equal(plain, back, (size_t)(rows * n) * sizeof *back);

        if (groups[g] == -1) {
            /* _scale_perm_single: out[8i + j] = in[2i + {0,1,8,9,16,17,24,25}[j]], runs of 32. */
            assert_int_equal(marlin[0], plain[0]);
            assert_int_equal(marlin[2], plain[8]);
            assert_int_equal(marlin[4], plain[16]);
            assert_int_equal(marlin[8], plain[2]);
            assert_int_equal(marlin[15], plain[27]);
            assert_int_equal(marlin[31], plain[31]);
            assert_int_equal(marlin[32 + 3], plain[32 + 9]);
        } else {
            /* _scale_perm: out[8i + j] = in[i + 8j], an 8x8 transpose per run of 64. */
            assert_int_equal(marlin[1], plain[8]);
            assert_int_equal(marlin[8], plain[1]);
            assert_int_equal(marlin[9], plain[9]);
            assert_int_equal(marlin[63], plain[63]);
            assert_int_equal(marlin[64 + 23], plain[64 + 58]);
            /* Row 1 starts a fresh run: n = 192 is three runs. */
            assert_int_equal(marlin[192 + 1], plain[192 + 8]);
        }

        /* In place is allowed. */
        assert_ok(mrt_permute_scales(back, k, n, groups[g], back));
        assert_memory_equal(back, marlin, (size_t)(rows * n) * sizeof *back);
        free(back);
        free(marlin);
        free(plain);
    }
}

/* ------------------------------------------------------------------------- */
/* Quantization and GPTQ                                                      */
/* ------------------------------------------------------------------------- */

static void test_pack__quantize_follows_the_rule(void **state)
{
    (void)state;
    const int groups[] = {-1, 16, 64, 128};
    int64_t k = 256, n = 128;
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        int group = groups[g];
        int64_t group_rows = group == -1 ? k : group;
        int64_t rows = mrt_scale_rows(k, group);
        float *w = random_weights(k, n);
        /* Column 5 of the first group is all zero: its scale must be 1 and every q 8. Column 6
         * has subnormal fp16 scales, column 7 scales that underflow fp16 (treated as zero),
         * column 8 large ones. */
        for (int64_t r = 0; r < k; r++) {
            if (r < group_rows)
                w[r * n + 5] = 0.0f;
            w[r * n + 6] *= 1e-6f;
            w[r * n + 7] *= 1e-8f;
            w[r * n + 8] *= 3000.0f;
        }
        int32_t *packed = xmalloc(mrt_packed_weight_bytes(k, n));
        int32_t *repacked = xmalloc(mrt_packed_weight_bytes(k, n));
        mrt_half *marlin = xmalloc((size_t)(rows * n) * sizeof *marlin);
        mrt_half *marlin2 = xmalloc((size_t)(rows * n) * sizeof *marlin2);
        mrt_half *plain = xmalloc((size_t)(rows * n) * sizeof *plain);
        uint8_t *q = xmalloc((size_t)(k * n));
        assert_ok(mrt_quantize_f32(w, k, n, group, packed, marlin, q, plain, 2));

        for (int64_t grp = 0; grp < rows; grp++)
            for (int64_t col = 0; col < n; col++) {
                float max_abs = 0.0f;
                for (int64_t r = grp * group_rows; r < (grp + 1) * group_rows; r++)
                    max_abs = fmaxf(max_abs, fabsf(w[r * n + col]));
                mrt_half expected = mrt_float_to_half(max_abs / 7.0f);
                if (mrt_half_to_float(expected) == 0.0f)
                    expected = mrt_float_to_half(1.0f);
                assert_int_equal(plain[grp * n + col], expected);
                float scale = mrt_half_to_float(expected);
                for (int64_t r = grp * group_rows; r < (grp + 1) * group_rows; r++) {
                    float level = roundf(w[r * n + col] / scale);
                    int want = (int)fminf(fmaxf(level, -8.0f), 7.0f) + 8;
                    assert_int_equal(q[r * n + col], want);
                    /* Dequantization error is at most half a step (plus the clamp at -8..7). */
                    float err = fabsf(((float)q[r * n + col] - 8.0f) * scale - w[r * n + col]);
                    if (col == 7)
                        assert_true(err < ldexpf(7.0f, -25));
                    else if (col != 6) /* subnormal scales are coarser than half a step */
                        assert_true(err <= 0.5f * scale * 1.01f);
                }
            }
        assert_int_equal(plain[5], mrt_float_to_half(1.0f));
        /* Ties round away from zero: column 9 of group 0 has max 1.75, so scale 0.25 exactly. */
        {
            const float values[7] = {1.75f, 0.625f, -0.625f, 0.125f, -0.125f, 0.375f, -1.75f};
            const uint8_t levels[7] = {15, 11, 5, 9, 7, 10, 1};
            for (int64_t r = 0; r < group_rows; r++)
                w[r * n + 9] = r < 7 ? values[r] : 0.0f;
            assert_ok(mrt_quantize_f32(w, k, n, group, packed, marlin, q, plain, 1));
            assert_int_equal(plain[9], mrt_float_to_half(0.25f));
            for (int r = 0; r < 7; r++)
                assert_int_equal(q[r * n + 9], levels[r]);
        }
        for (int64_t r = 0; r < group_rows; r++)
            assert_int_equal(q[r * n + 5], 8);

        /* The packed weights and Marlin scales are exactly pack(q) and permute(plain). */
        assert_ok(mrt_pack_q4(q, k, n, repacked, 1));
        assert_memory_equal(packed, repacked, mrt_packed_weight_bytes(k, n));
        assert_ok(mrt_permute_scales(plain, k, n, group, marlin2));
        assert_memory_equal(marlin, marlin2, (size_t)(rows * n) * sizeof *marlin);

        /* fp16 weights: quantizing the fp16 copy equals quantizing its exact float values. */
        mrt_half *w16 = xmalloc((size_t)(k * n) * sizeof *w16);
        for (int64_t i = 0; i < k * n; i++) {
            w16[i] = mrt_float_to_half(w[i]);
            w[i] = mrt_half_to_float(w16[i]);
        }
        assert_ok(mrt_quantize_f32(w, k, n, group, packed, marlin, NULL, NULL, 0));
        assert_ok(mrt_quantize_f16(w16, k, n, group, repacked, marlin2, NULL, NULL, 0));
        assert_memory_equal(packed, repacked, mrt_packed_weight_bytes(k, n));
        assert_memory_equal(marlin, marlin2, (size_t)(rows * n) * sizeof *marlin);

        free(w16);
        free(q);
        free(plain);
        free(marlin2);
        free(marlin);
        free(repacked);
        free(packed);
        free(w);
    }
}

static void test_pack__gptq_repack_equals_quantize_then_pack(void **state)
{
    (void)state;
    const int groups[] = {-1, 32, 128};
    int64_t k = 384, n = 320;
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        int group = groups[g];
        int64_t rows = mrt_scale_rows(k, group);
        float *w = random_weights(k, n);
        int32_t *packed = xmalloc(mrt_packed_weight_bytes(k, n));
        int32_t *repacked = xmalloc(mrt_packed_weight_bytes(k, n));
        mrt_half *marlin = xmalloc((size_t)(rows * n) * sizeof *marlin);
        mrt_half *marlin2 = xmalloc((size_t)(rows * n) * sizeof *marlin2);
        mrt_half *plain = xmalloc((size_t)(rows * n) * sizeof *plain);
        uint8_t *q = xmalloc((size_t)(k * n));
        assert_ok(mrt_quantize_f32(w, k, n, group, packed, marlin, q, plain, 0));

        /* GPTQ: qweight[r][col] holds q[8r + i][col] in bits 4i..4i+3. */
        int32_t *qweight = xmalloc((size_t)(k / 8 * n) * sizeof *qweight);
        for (int64_t r = 0; r < k / 8; r++)
            for (int64_t col = 0; col < n; col++) {
                uint32_t word = 0;
                for (int i = 0; i < 8; i++)
                    word |= (uint32_t)q[(8 * r + i) * n + col] << (4 * i);
                qweight[r * n + col] = (int32_t)word;
            }
        assert_ok(mrt_repack_gptq(qweight, plain, k, n, group, repacked, marlin2, 0));
        assert_memory_equal(packed, repacked, mrt_packed_weight_bytes(k, n));
        assert_memory_equal(marlin, marlin2, (size_t)(rows * n) * sizeof *marlin);

        free(qweight);
        free(q);
        free(plain);
        free(marlin2);
        free(marlin);
        free(repacked);
        free(packed);
        free(w);
    }
}

/* ------------------------------------------------------------------------- */
/* CPU reference                                                              */
/* ------------------------------------------------------------------------- */

static void test_pack__reference_matches_naive_dequant_matmul(void **state)
{
    (void)state;
    const struct {
        int64_t m, k, n;
        int group;
    } cases[] = {{1, 128, 64, -1}, {5, 256, 128, 64}, {33, 192, 320, 32}, {17, 512, 256, 128}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t m = cases[t].m, k = cases[t].k, n = cases[t].n;
        int group = cases[t].group;
        int64_t group_rows = group == -1 ? k : group;
        int64_t rows = mrt_scale_rows(k, group);
        float *w = random_weights(k, n);
        int32_t *packed = xmalloc(mrt_packed_weight_bytes(k, n));
        mrt_half *marlin = xmalloc((size_t)(rows * n) * sizeof *marlin);
        mrt_half *plain = xmalloc((size_t)(rows * n) * sizeof *plain);
        uint8_t *q = xmalloc((size_t)(k * n));
        assert_ok(mrt_quantize_f32(w, k, n, group, packed, marlin, q, plain, 0));

        mrt_half *a = xmalloc((size_t)(m * k) * sizeof *a);
        for (int64_t i = 0; i < m * k; i++)
            a[i] = mrt_float_to_half(mrt_test_uniform(-1.0f, 1.0f));
        float *c = xmalloc((size_t)(m * n) * sizeof *c);
        assert_ok(mrt_reference_gemm(a, packed, marlin, m, n, k, group, c, 0));

        for (int64_t i = 0; i < m; i++)
            for (int64_t col = 0; col < n; col++) {
                double sum = 0.0, magnitude = 0.0;
                for (int64_t r = 0; r < k; r++) {
                    double b = ((double)q[r * n + col] - 8.0) *
                               (double)mrt_half_to_float(plain[r / group_rows * n + col]);
                    double term = (double)mrt_half_to_float(a[i * k + r]) * b;
                    sum += term;
                    magnitude += fabs(term);
                }
                double got = c[i * n + col];
                if (fabs(got - sum) > 1e-6 * magnitude + 1e-30)
                    fail_msg("case %zu: c[%lld][%lld] = %.9g, expected %.9g", t, (long long)i, (long long)col,
                             got, sum);
            }
        free(c);
        free(a);
        free(q);
        free(plain);
        free(marlin);
        free(packed);
        free(w);
    }
}

static void test_pack__threads_give_identical_bits(void **state)
{
    (void)state;
    int64_t k = 512, n = 1024, m = 40;
    int group = 128;
    int64_t rows = mrt_scale_rows(k, group);
    size_t packed_bytes = mrt_packed_weight_bytes(k, n);
    float *w = random_weights(k, n);
    mrt_half *a = xmalloc((size_t)(m * k) * sizeof *a);
    for (int64_t i = 0; i < m * k; i++)
        a[i] = mrt_float_to_half(mrt_test_uniform(-1.0f, 1.0f));

    const int thread_counts[] = {1, 2, 7, 0};
    int32_t *packed[4];
    mrt_half *marlin[4];
    uint8_t *q[4], *unpacked[4];
    float *c[4];
    for (int t = 0; t < 4; t++) {
        packed[t] = xmalloc(packed_bytes);
        marlin[t] = xmalloc((size_t)(rows * n) * sizeof *marlin[t]);
        q[t] = xmalloc((size_t)(k * n));
        unpacked[t] = xmalloc((size_t)(k * n));
        c[t] = xmalloc((size_t)(m * n) * sizeof *c[t]);
        assert_ok(mrt_quantize_f32(w, k, n, group, packed[t], marlin[t], q[t], NULL, thread_counts[t]));
        assert_ok(mrt_unpack_q4(packed[t], k, n, unpacked[t], thread_counts[t]));
        assert_ok(mrt_reference_gemm(a, packed[t], marlin[t], m, n, k, group, c[t], thread_counts[t]));
    }
    for (int t = 1; t < 4; t++) {
        assert_memory_equal(packed[0], packed[t], packed_bytes);
        assert_memory_equal(marlin[0], marlin[t], (size_t)(rows * n) * sizeof *marlin[t]);
        assert_memory_equal(q[0], q[t], (size_t)(k * n));
        assert_memory_equal(unpacked[0], unpacked[t], (size_t)(k * n));
        assert_memory_equal(c[0], c[t], (size_t)(m * n) * sizeof *c[t]);
    }
    assert_memory_equal(q[0], unpacked[0], (size_t)(k * n));
    for (int t = 0; t < 4; t++) {
        free(c[t]);
        free(unpacked[t]);
        free(q[t]);
        free(marlin[t]);
        free(packed[t]);
    }
    free(a);
    free(w);
}

/* ------------------------------------------------------------------------- */
/* Errors                                                                     */
/* ------------------------------------------------------------------------- */

/* The call failed with status and left a message naming `needle`. */
static void expect_failure(mrt_status got, mrt_status status, const char *needle)
{
    if (got != status)
        fail_msg("expected %s, got %s (%s)", mrt_status_str(status), mrt_status_str(got), mrt_thread_errmsg());
    const char *msg = mrt_thread_errmsg();
    assert_non_null(msg);
    assert_true(msg[0] != '\0');
    if (!strstr(msg, needle))
        fail_msg("message \"%s\" does not mention \"%s\"", msg, needle);
}

static void test_pack__bad_arguments_fail_with_a_message(void **state)
{
    (void)state;
    const mrt_status bad = MRT_ERR_INVALID_ARGUMENT;
    int64_t k = 128, n = 128;
    uint8_t *q = xmalloc((size_t)(k * n));
    memset(q, 3, (size_t)(k * n));
    int32_t *packed = xmalloc(mrt_packed_weight_bytes(k, n));
    float *w = random_weights(k, n);
    mrt_half *scales = random_scales(n * 8);
    mrt_half *marlin = xmalloc((size_t)(n * 8) * sizeof *marlin);
    float c[64];
    mrt_half a[128];
    memset(a, 0, sizeof a);

    expect_failure(mrt_pack_q4(NULL, k, n, packed, 1), bad, "q is NULL");
    expect_failure(mrt_pack_q4(q, k, n, NULL, 1), bad, "packed is NULL");
    expect_failure(mrt_pack_q4(q, k, 100, packed, 1), bad, "n = 100");
    expect_failure(mrt_pack_q4(q, 24, 64, packed, 1), bad, "k = 24");
    expect_failure(mrt_pack_q4(q, 0, 64, packed, 1), bad, "k = 0");
    expect_failure(mrt_pack_q4(q, k, n, packed, -1), bad, "threads = -1");
    expect_failure(mrt_pack_q4(q, INT64_C(1) << 40, INT64_C(1) << 40, packed, 1), bad, "overflows");
    expect_failure(mrt_unpack_q4(packed, k, 96, q, 1), bad, "n = 96");
    expect_failure(mrt_unpack_q4(packed, k, n, NULL, 1), bad, "q is NULL");

    q[37 * n + 101] = 16;
    q[90 * n + 3] = 200;
    expect_failure(mrt_pack_q4(q, k, n, packed, 2), bad, "q[37][101] = 16");
    q[37 * n + 101] = 3;
    q[90 * n + 3] = 3;

    expect_failure(mrt_quantize_f32(w, k, n, 48, packed, marlin, NULL, NULL, 1), bad, "group_size = 48");
    expect_failure(mrt_quantize_f32(w, k, n, 8, packed, marlin, NULL, NULL, 1), bad, "group_size = 8");
    expect_failure(mrt_quantize_f32(w, k, n, 0, packed, marlin, NULL, NULL, 1), bad, "group_size = 0");
    expect_failure(mrt_quantize_f32(w, k, n, -2, packed, marlin, NULL, NULL, 1), bad, "group_size = -2");
    expect_failure(mrt_quantize_f32(NULL, k, n, 64, packed, marlin, NULL, NULL, 1), bad, "w is NULL");
    expect_failure(mrt_quantize_f16(NULL, k, n, 64, packed, marlin, NULL, NULL, 1), bad, "w is NULL");
    expect_failure(mrt_quantize_f32(w, k, n, 64, packed, NULL, NULL, NULL, 1), bad, "marlin_scales is NULL");
    w[70 * n + 9] = NAN;
    expect_failure(mrt_quantize_f32(w, k, n, 64, packed, marlin, NULL, NULL, 2), bad, "w[70][9]");
    w[70 * n + 9] = INFINITY;
    expect_failure(mrt_quantize_f32(w, k, n, 64, packed, marlin, NULL, NULL, 2), bad, "w[70][9]");
    w[70 * n + 9] = 1e6f; /* 1e6 / 7 is beyond fp16 */
    expect_failure(mrt_quantize_f32(w, k, n, 64, packed, marlin, NULL, NULL, 2), bad, "group 1, column 9");
    w[70 * n + 9] = 0.5f;

    expect_failure(mrt_permute_scales(scales, k, n, 48, marlin), bad, "group_size = 48");
    expect_failure(mrt_permute_scales(NULL, k, n, 64, marlin), bad, "scales is NULL");
    expect_failure(mrt_unpermute_scales(scales, k, n, 64, NULL), bad, "scales is NULL");
    expect_failure(mrt_repack_gptq(NULL, scales, k, n, 64, packed, marlin, 1), bad, "qweight is NULL");
    expect_failure(mrt_repack_gptq(packed, scales, 24, n, 64, packed, marlin, 1), bad, "k = 24");
    expect_failure(mrt_repack_gptq(packed, scales, k, n, 48, packed, marlin, 1), bad, "group_size = 48");

    expect_failure(mrt_reference_gemm(a, packed, scales, 0, 64, 16, -1, c, 1), bad, "m = 0");
    expect_failure(mrt_reference_gemm(NULL, packed, scales, 1, 64, 16, -1, c, 1), bad, "a is NULL");
    expect_failure(mrt_reference_gemm(a, packed, scales, 1, 64, 16, -1, NULL, 1), bad, "c is NULL");
    expect_failure(mrt_reference_gemm(a, packed, scales, 1, 100, 16, -1, c, 1), bad, "n = 100");
    expect_failure(mrt_reference_gemm(a, packed, scales, INT64_C(1) << 60, 64, 16, -1, c, 1), bad, "overflows");

    assert_int_equal(mrt_packed_weight_bytes(24, 64), 0);
    assert_int_equal(mrt_packed_weight_bytes(16, 100), 0);
    assert_int_equal(mrt_packed_weight_bytes(INT64_C(1) << 40, INT64_C(1) << 40), 0);
    assert_int_equal(mrt_packed_weight_bytes(4096, 11008), 4096 * 11008 / 2);
    assert_int_equal(mrt_scale_rows(128, 48), 0);
    assert_int_equal(mrt_scale_rows(24, -1), 0);
    assert_int_equal(mrt_scale_rows(128, -1), 1);
    assert_int_equal(mrt_scale_rows(4096, 128), 32);

    free(marlin);
    free(scales);
    free(w);
    free(packed);
    free(q);
}

/* ------------------------------------------------------------------------- */
/* fp16                                                                       */
/* ------------------------------------------------------------------------- */

static void test_pack__half_to_float_is_exact_for_all_halves(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mrt_half_to_float((mrt_half)h);
        int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
        if (exponent == 31) {
            assert_true(mantissa ? isnan(f) : isinf(f));
            assert_int_equal(!!signbit(f), sign);
            /* Every NaN, payload included, and every other value comes back bit for bit. */
            assert_int_equal(mrt_float_to_half(f), h);
            continue;
        }
        /* The definition: (-1)^s * 2^(e-15) * (1 + m/1024), or 2^-14 * m/1024 for e = 0. */
        double expected = exponent ? ldexp(1.0 + mantissa / 1024.0, exponent - 15) : ldexp(mantissa / 1024.0, -14);
        if (sign)
            expected = -expected;
        assert_true((double)f == expected);
        assert_int_equal(!!signbit(f), sign);
        assert_int_equal(mrt_float_to_half(f), h);
    }
    assert_true(mrt_half_to_float(0x3c00) == 1.0f);
    assert_true(mrt_half_to_float(0x7bff) == 65504.0f);
    assert_true(mrt_half_to_float(0x0001) == ldexpf(1.0f, -24));
    assert_true(mrt_half_to_float(0xc000) == -2.0f);
}

static void test_pack__float_to_half_rounds_ties_to_even(void **state)
{
    (void)state;
    /* Every midpoint between neighbouring positive finite halves (exact in float) goes to the
     * even neighbour; a float ulp either side goes to the nearer one. Negative values mirror. */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        float lo = mrt_half_to_float((mrt_half)h), hi = mrt_half_to_float((mrt_half)(h + 1));
        float mid = (float)(((double)lo + (double)hi) / 2.0);
        assert_true((double)mid == ((double)lo + (double)hi) / 2.0);
        mrt_half even = (mrt_half)((h & 1) ? h + 1 : h);
        assert_int_equal(mrt_float_to_half(mid), even);
        assert_int_equal(mrt_float_to_half(-mid), even | 0x8000);
        assert_int_equal(mrt_float_to_half(nextafterf(mid, 0.0f)), h);
        assert_int_equal(mrt_float_to_half(nextafterf(mid, INFINITY)), h + 1);
    }
    /* The top: 65520 is the tie between 65504 (odd mantissa) and 65536, so it overflows. */
    assert_int_equal(mrt_float_to_half(65520.0f), 0x7c00);
    assert_int_equal(mrt_float_to_half(nextafterf(65520.0f, 0.0f)), 0x7bff);
    assert_int_equal(mrt_float_to_half(-1e10f), 0xfc00);
    assert_int_equal(mrt_float_to_half(INFINITY), 0x7c00);
    assert_int_equal(mrt_float_to_half(-INFINITY), 0xfc00);
    /* The bottom: 2^-25 ties between 0 and the smallest subnormal and goes to 0. */
    assert_int_equal(mrt_float_to_half(ldexpf(1.0f, -25)), 0x0000);
    assert_int_equal(mrt_float_to_half(nextafterf(ldexpf(1.0f, -25), 1.0f)), 0x0001);
    assert_int_equal(mrt_float_to_half(ldexpf(1.0f, -30)), 0x0000);
    assert_int_equal(mrt_float_to_half(-ldexpf(1.0f, -30)), 0x8000);
    assert_int_equal(mrt_float_to_half(FLT_MIN), 0x0000);
    assert_int_equal(mrt_float_to_half(-0.0f), 0x8000);
    assert_true(isnan(mrt_half_to_float(mrt_float_to_half(NAN))));
    /* A float NaN whose payload lives only in bits that fp16 drops must stay a NaN. */
    float low_nan;
    uint32_t low_nan_bits = 0x7f800001u;
    memcpy(&low_nan, &low_nan_bits, sizeof low_nan);
    assert_true(isnan(mrt_half_to_float(mrt_float_to_half(low_nan))));

#if defined(__FLT16_MANT_DIG__)
    /* Where the compiler has _Float16, its conversion agrees on random bit patterns. */
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = (uint32_t)mrt_test_rand();
        /* Half the draws land in and around the fp16 range, where the rounding happens. */
        if (i % 2)
            bits = (bits & 0x807fffffu) | ((uint32_t)(96 + (bits >> 8) % 50) << 23);
        float f;
        memcpy(&f, &bits, sizeof f);
        if (isnan(f))
            continue;
        _Float16 ref = (_Float16)f;
        uint16_t ref_bits;
        memcpy(&ref_bits, &ref, sizeof ref_bits);
        if (mrt_float_to_half(f) != ref_bits)
            fail_msg("float bits 0x%08x: got 0x%04x, _Float16 gives 0x%04x", bits, mrt_float_to_half(f), ref_bits);
    }
#endif
}

static void test_pack__group_of_all_k_uses_per_channel_scale_order(void **state)
{
    (void)state;
    /* The reference Marlin packer picks the per-channel table whenever the group is all of K. */
    const int64_t k = 128, n = 128;
    mrt_half plain[128], as_group[128], as_channel[128];
    for (int i = 0; i < 128; i++)
        plain[i] = (mrt_half)(0x3c00 + i);
    assert_int_equal(mrt_permute_scales(plain, k, n, 128, as_group), MRT_OK);
    assert_int_equal(mrt_permute_scales(plain, k, n, -1, as_channel), MRT_OK);
    assert_memory_equal(as_group, as_channel, sizeof as_group);
    /* Per-channel order by hand: out[8] = in[2*1 + 0] and out[2] = in[8]. */
    assert_int_equal(as_channel[8], plain[2]);
    assert_int_equal(as_channel[2], plain[8]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack__group_of_all_k_uses_per_channel_scale_order),
        cmocka_unit_test(test_pack__hand_derived_words),
        cmocka_unit_test(test_pack__layout_matches_fragment_formula),
        cmocka_unit_test(test_pack__pack_unpack_round_trip),
        cmocka_unit_test(test_pack__scale_permutation_round_trip),
        cmocka_unit_test(test_pack__quantize_follows_the_rule),
        cmocka_unit_test(test_pack__gptq_repack_equals_quantize_then_pack),
        cmocka_unit_test(test_pack__reference_matches_naive_dequant_matmul),
        cmocka_unit_test(test_pack__threads_give_identical_bits),
        cmocka_unit_test(test_pack__bad_arguments_fail_with_a_message),
        cmocka_unit_test(test_pack__half_to_float_is_exact_for_all_halves),
        cmocka_unit_test(test_pack__float_to_half_rounds_ties_to_even),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
