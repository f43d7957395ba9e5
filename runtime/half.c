/*
 * IEEE 754 binary16 <-> binary32 conversions, bit exact and without any hardware or compiler
 * fp16 support, so the host packing code and the CPU reference give the same bits everywhere.
 *
 * binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
 * binary32: 1 sign bit, 8 exponent bits (bias 127), 23 mantissa bits.
 */
#include <string.h>

#include "runtime.h"

static uint32_t float_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static float bits_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float mrt_half_to_float(mrt_half h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;

    if (exponent == 0x1f) /* Inf, or NaN with its payload kept in the top mantissa bits. */
        return bits_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent != 0) /* Normal: only the exponent bias changes (127 - 15 = 112). */
        return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
    if (mantissa == 0)
        return bits_float(sign);
    /* Subnormal half (mantissa * 2^-24) is a normal float: shift the leading one up to the
     * implicit bit position and lower the exponent by as many steps. */
    uint32_t float_exponent = 113; /* 2^-14, the exponent of the smallest normal half */
    while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        float_exponent--;
    }
    return bits_float(sign | (float_exponent << 23) | ((mantissa & 0x3ffu) << 13));
}

/* Shift `value` right by `shift` bits (1..24), rounding to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t value, unsigned shift)
{
    uint32_t kept = value >> shift;
    uint32_t rest = value & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (kept & 1u)))
        kept++;
    return kept;
}

mrt_half mrt_float_to_half(float f)
{
    uint32_t bits = float_bits(f);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t magnitude = bits & 0x7fffffffu;

    if (magnitude > 0x7f800000u) {
        /* NaN: keep the top 10 payload bits so every half NaN survives a round trip through
         * float unchanged; a payload that lived only in the low bits becomes the quiet NaN. */
        uint16_t payload = (uint16_t)((magnitude >> 13) & 0x3ffu);
        return (mrt_half)(sign | 0x7c00u | (payload ? payload : 0x200u));
    }
    /* 65520 is the midpoint between 65504 (the largest half, odd mantissa) and 65536: ties go
     * to the even side, which is infinity. Float infinity lands here too. */
    if (magnitude >= 0x477ff000u)
        return (mrt_half)(sign | 0x7c00u);
    if (magnitude >= 0x38800000u) {
        /* Normal half: rebias the exponent and round the mantissa from 23 to 10 bits. A carry
         * out of the mantissa correctly steps the exponent up. */
        uint32_t rebased = magnitude - ((uint32_t)(127 - 15) << 23);
        return (mrt_half)(sign | shift_round_even(rebased, 13));
    }
    /* 2^-25 is the midpoint between 0 and the smallest subnormal 2^-24; the tie goes to 0. */
    if (magnitude <= 0x33000000u)
        return (mrt_half)sign;
    /* Subnormal half: the result counts units of 2^-24. The float is m * 2^(e - 150) with the
     * implicit bit in m, so the count is m * 2^(e - 126), a right shift by 126 - e (14..24).
     * Rounding up from 0x3ff gives 0x400, the smallest normal, which is right. */
    uint32_t float_exponent = magnitude >> 23;
    uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
    return (mrt_half)(sign | shift_round_even(mantissa, 126 - float_exponent));
}
