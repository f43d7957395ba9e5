// Dequantize Marlin-packed int4 weights into a dense fp16 matrix B[K, N] (row-major).
//
// A utility kernel: it lets a user check a repack on the GPU or feed a dense GEMM, and it
// proves the run-time compilation path with a kernel whose every output can be checked.
// Compiled by NVRTC with no include path, so it uses no toolkit header: fp16 values are
// handled as their 16 bits and converted with PTX.
//
// The Marlin packed layout, read backwards. The packer
//   1. tiles B[K, N] into 16x16 tiles, stored tile after tile along N, so a "tiled" index is
//        t = (k / 16) * (16 * N) + (n / 16) * 256 + (k % 16) * 16 + (n % 16);
//   2. reorders every run of 1024 tiled entries (four tiles along N) with a fixed
//      permutation matching the m16n8k16 tensor-core B fragment, dst -> src = perm(dst);
//   3. packs 8 consecutive permuted entries into one 32-bit word, entry e in bits 4e..4e+3.
// So packed word w, nibble e, holds the entry at permuted position p = 8 w + e, which came from
// tiled position (p / 1024) * 1024 + perm(p % 1024).
//
// perm(dst): write dst = 8 g + x. The permutation groups its 1024 sources in 128 groups of 8,
// and within a group stores them in the order 0, 2, 4, 6, 1, 3, 5, 7, so the source slot is
// s = interleave(x). The group g = 4 i + j, where i (0..31) names the thread of the warp whose
// fragment this is and j (0..3) the tile along N. Slot s = 4 b + r: b picks the 8-column half
// of the tile (the two n8 halves), r the fragment row among 2 (i % 4), 2 (i % 4) + 1,
// 2 (i % 4) + 8, 2 (i % 4) + 9. The source is then tile j, row (k % 16) = that row, column
// (n % 16) = i / 4 + 8 b.
//
// Scales come permuted too: fp16 [groups, N] flattened, in blocks of 64 (grouped) or 32
// (per-channel); see scale_position below.

__device__ __forceinline__ float mrt_half_bits_to_float(unsigned short h)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short mrt_float_to_half_bits(float f)
{
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Where the scale of plain index o = group * N + n sits in the Marlin scale order.
// Grouped: out[64 c + 8 i + j] = plain[64 c + i + 8 j], so plain offset w = o % 64 lives at
// 8 (w % 8) + w / 8. Per-channel: out[32 c + 8 i + q] = plain[32 c + 2 i + J(q)] with
// J = 0, 1, 8, 9, 16, 17, 24, 25, i.e. J(q) = 8 (q / 2) + q % 2, so w = o % 32 lives at
// 8 ((w % 8) / 2) + 2 (w / 8) + w % 2.
template <int GROUP_BLOCKS>
__device__ __forceinline__ long long scale_position(long long o)
{
    if (GROUP_BLOCKS == -1) {
        int w = (int)(o % 32);
        return o - w + 8 * ((w % 8) / 2) + 2 * (w / 8) + w % 2;
    } else {
        int w = (int)(o % 64);
        return o - w + 8 * (w % 8) + w / 8;
    }
}

template <int THREADS, int GROUP_BLOCKS>
__global__ void __launch_bounds__(THREADS)
dequant_w4(const unsigned int *__restrict__ packed, const unsigned short *__restrict__ scales,
           unsigned short *__restrict__ out, int k, int n)
{
    const long long words = (long long)k * n / 8;
    const long long tiled_row = 16LL * n; // tiled entries per 16-row band of B
    for (long long w = (long long)blockIdx.x * THREADS + threadIdx.x; w < words;
         w += (long long)gridDim.x * THREADS) {
        const unsigned int word = packed[w];
        const long long block_base = (8 * w) / 1024 * 1024;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int dst = (int)((8 * w + e) % 1024);
            const int g = dst / 8, x = dst % 8;
            const int slot = x < 4 ? 2 * x : 2 * (x - 4) + 1; // interleave 0,2,4,6,1,3,5,7
            const int i = g / 4, j = g % 4;
            const int b = slot / 4, r = slot % 4;
            const int row = 2 * (i % 4) + (r & 1) + 8 * (r >> 1);
            const int col = i / 4 + 8 * b;
            const long long t = block_base + 256 * j + 16 * row + col;
            const long long kk = t / tiled_row * 16 + row;
            const long long nn = (t % tiled_row) / 256 * 16 + col;
            const long long group = GROUP_BLOCKS == -1 ? 0 : kk / (16 * GROUP_BLOCKS);
            const float scale = mrt_half_bits_to_float(scales[scale_position<GROUP_BLOCKS>(group * n + nn)]);
            const int q = (int)((word >> (4 * e)) & 0xFu) - 8;
            out[kk * n + nn] = mrt_float_to_half_bits((float)q * scale);
        }
    }
}
