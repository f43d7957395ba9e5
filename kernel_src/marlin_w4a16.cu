/*
 * marlin_w4a16.cu: C[M,N] = A[M,K] x dequant(B[K,N]) in the Marlin design.
 *
 *   A  fp16, row-major [M, K]
 *   B  symmetric int4 (value q in 0..15 stands for (q - 8) * scale), Marlin-packed
 *   s  fp16 scales in the Marlin scale order: [K / group, N] or [1, N] per channel
 *   C  fp16, row-major [M, N]; products are accumulated in fp32 and rounded once
 *
 * This file is compiled by NVRTC with no include path, so it includes nothing: the
 * vector types int4 and float4 are NVRTC built-ins, and every fp16 operation is inline
 * PTX on 32-bit registers holding two halves (low half = element 0).
 *
 * Design, in brief:
 *   - The block tile is (16*TMB rows) x (16*TNB columns) of C, swept along K in steps of
 *     16*TKB. Each step ("tile") is copied global -> shared with cp.async into one slot of
 *     a STAGES-deep ring, while older slots feed the tensor cores.
 *   - Warps are laid out WARPS_N along N (64 columns each) by WARPS_K along K: within a
 *     tile, warp (wn, wk) handles the 16-deep rows wk, wk + WARPS_K, ... ("sub-steps").
 *     Their partial sums are added in shared memory at the end (block reduction).
 *   - A fragments come from shared memory through ldmatrix; B words are turned into fp16
 *     with lop3 and the 0x6400 exponent trick, then fed to mma.m16n8k16 (fp32 accumulate).
 *   - Work is striped: the tiles of all (M chunk, N column, K step) triples are numbered
 *     K-step fastest and cut into gridDim.x equal stripes, one per block, so every SM
 *     gets the same amount of weight streaming whatever the shape. A column whose K
 *     range is split between blocks is summed in the workspace: every block that holds
 *     part of it stores its fp32 partial sums in a slot of its own and counts itself in
 *     with an atomic; the last to arrive adds the slots in a fixed order (so results do not
 *     depend on who arrived last) and writes C. (A column of one m-block in two shares
 *     is summed pair of sums by pair of sums instead, one atomic exchange each.) No block
 *     ever waits for another, so the blocks need not be co-resident.
 *
 * Launch contract (runtime/gemm.c builds it; docs/kernel.md repeats it):
 *   grid  (G, 1, 1) with 1 <= G; every block beyond the number of tiles simply exits
 *   block (THREADS, 1, 1)
 *   dynamic shared memory >= marlin_w4a16_smem_bytes<...>() (checked; the kernel traps)
 *   prob_m >= 1 rows, cut into chunks of 16*TMB rows (the last one may be partial)
 *   prob_n % (16*TNB) == 0, prob_k % (16*TKB) == 0, prob_k % (16*GROUP_BLOCKS) == 0
 *   every index prob_m*prob_k/8, prob_m*prob_n/8, prob_k*prob_n/32 and the tile count
 *     fits in a signed 32-bit int
 *   locks     G int32 arrival counters, then from locks + ceil(G / 64) * 64 the exchange
 *             areas of G blocks, 16 * 16*TNB floats each (used by some tiles of TMB == 1),
 *             all zero on entry, zero again on exit
 *   partials  2 * G * 16*TMB * 16*TNB floats (two slots per block), any content on entry
 *   concurrent launches must not share locks or partials
 *   flags     MRT_KERNEL_WEIGHTS_STATIC or 0; a launch may ask for programmatic dependent
 *             launch (sm_90+): nothing but B and s is read, and nothing is written, before
 *             griddepcontrol.wait, and B and s only with MRT_KERNEL_WEIGHTS_STATIC
 */

typedef unsigned int mrt_u32;

/* ------------------------------------------------------------------------------------ */
/* PTX wrappers                                                                          */
/* ------------------------------------------------------------------------------------ */

/* Shared-window address of a pointer into shared memory, as cp.async and ldmatrix take it. */
__device__ __forceinline__ mrt_u32 mrt_smem_addr(const void *ptr)
{
    mrt_u32 addr;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(addr) : "l"(ptr));
    return addr;
}

/* 16-byte asynchronous copy global -> shared that bypasses L1 (.cg). With src_bytes 0
 * nothing is read and the destination is zero-filled; rows past M use that. */
__device__ __forceinline__ void mrt_cp_async16(mrt_u32 dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}

__device__ __forceinline__ void mrt_cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::);
}

/* Wait until at most PENDING committed groups of this thread are still in flight. */
template <int PENDING> __device__ __forceinline__ void mrt_cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}

/* Four 8x8 b16 matrices from shared memory: lane i gives the address of row i % 8 of
 * matrix i / 8 and receives, in register r, its part of matrix r in the mma layout. */
__device__ __forceinline__ void mrt_ldmatrix_x4(mrt_u32 (&frag)[4], mrt_u32 addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(frag[0]), "=r"(frag[1]), "=r"(frag[2]), "=r"(frag[3])
                 : "r"(addr));
}

/* acc += a (16x16, row-major fragment) x b (16x8, column-major fragment), fp32 accumulate. */
__device__ __forceinline__ void mrt_mma_16816(float (&acc)[4], const mrt_u32 (&a)[4], mrt_u32 b0, mrt_u32 b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* d = a x b (no accumulator input): the first product of a scale group. */
__device__ __forceinline__ void mrt_mma_16816_first(float (&d)[4], const mrt_u32 (&a)[4], mrt_u32 b0, mrt_u32 b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.0f));
}

/* (a & b) | c in one LOP3: with a = 0xf0, b = 0xcc, c = 0xaa the table is 0xea. */
__device__ __forceinline__ mrt_u32 mrt_and_or(mrt_u32 a, mrt_u32 b, mrt_u32 c)
{
    mrt_u32 d;
    asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

__device__ __forceinline__ mrt_u32 mrt_hsub2(mrt_u32 a, mrt_u32 b)
{
    mrt_u32 d;
    asm("sub.rn.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

__device__ __forceinline__ mrt_u32 mrt_hfma2(mrt_u32 a, mrt_u32 b, mrt_u32 c)
{
    mrt_u32 d;
    asm("fma.rn.f16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* a times the low (HIGH false) or high half of s in both lanes. Written as a 16-bit move
 * rather than a prmt so that ptxas folds the broadcast into the multiply's operand
 * (HMUL2 ..., R.H0_H0) instead of issuing a separate PRMT per product. */
template <bool HIGH> __device__ __forceinline__ mrt_u32 mrt_hmul2_by_half(mrt_u32 a, mrt_u32 s)
{
    mrt_u32 d;
    if (HIGH)
        asm("{ .reg .b16 l, h; .reg .b32 b; mov.b32 {l, h}, %2; mov.b32 b, {h, h}; mul.rn.f16x2 %0, %1, b; }\n"
            : "=r"(d)
            : "r"(a), "r"(s));
    else
        asm("{ .reg .b16 l, h; .reg .b32 b; mov.b32 {l, h}, %2; mov.b32 b, {l, l}; mul.rn.f16x2 %0, %1, b; }\n"
            : "=r"(d)
            : "r"(a), "r"(s));
    return d;
}

/* Round two floats to fp16 and pack them: lo goes to the low half. */
__device__ __forceinline__ mrt_u32 mrt_pack_half2(float lo, float hi)
{
    mrt_u32 d;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
}

/* Both halves of x as floats (exact). */
__device__ __forceinline__ void mrt_unpack_half2(mrt_u32 x, float &lo, float &hi)
{
    asm("{ .reg .b16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }\n"
        : "=f"(lo), "=f"(hi)
        : "r"(x));
}

/* L2-only accesses to the fp32 partial sums: after the lock hand-over they must not be
 * served from a stale L1 line. */
__device__ __forceinline__ float4 mrt_load_cg(const float4 *ptr)
{
    float4 v;
    asm volatile("ld.global.cg.v4.f32 {%0,%1,%2,%3}, [%4];\n"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "l"(ptr)
                 : "memory");
    return v;
}

__device__ __forceinline__ void mrt_store_cg(float4 *ptr, float4 v)
{
    asm volatile("st.global.cg.v4.f32 [%0], {%1,%2,%3,%4};\n" ::"l"(ptr), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                 : "memory");
}

/* An arrival counter put back (to 0) by the block that summed its slice. */
__device__ __forceinline__ void mrt_store_relaxed(int *counter, int value)
{
    asm volatile("st.relaxed.gpu.global.b32 [%0], %1;\n" ::"l"(counter), "r"(value) : "memory");
}

/* Exchange the 64-bit word at ptr for v (relaxed, gpu scope) and return what it held. */
__device__ __forceinline__ unsigned long long mrt_exchange64(unsigned long long *ptr, unsigned long long v)
{
    unsigned long long old;
    asm volatile("atom.relaxed.gpu.global.exch.b64 %0, [%1], %2;\n" : "=l"(old) : "l"(ptr), "l"(v) : "memory");
    return old;
}

__device__ __forceinline__ void mrt_store_zero64(unsigned long long *ptr)
{
    asm volatile("st.relaxed.gpu.global.b64 [%0], %1;\n" ::"l"(ptr), "l"(0ull) : "memory");
}

/* Block-wide: count this block in on `counter` and return, in every thread, whether it was
 * the last of `participants` to arrive. The first barrier orders every thread's earlier
 * stores before thread 0's atomic, whose release at gpu scope makes them visible to the
 * block that acquires the counter after it (as a grid-wide barrier does: one thread's
 * fence after a block barrier). A fence in every storing thread as well cost 1-5% on
 * launches that share columns (v11, docs/performance.md). The final barrier orders every
 * thread's later loads after the acquire. The last block puts the counter back to 0:
 * nobody else touches it again in this launch. */
__device__ __forceinline__ bool mrt_arrive_last(int *counter, int participants)
{
    __syncthreads();
    int last = 0;
    if (threadIdx.x == 0) {
        int before;
        asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(before) : "l"(counter) : "memory");
        last = before == participants - 1;
        if (last)
            mrt_store_relaxed(counter, 0);
    }
    return __syncthreads_or(last) != 0;
}

/* The count of a slice's arrival counter, read early and relaxed (nothing waits for it until
 * it is used). When it says every other participant has counted in, a fence.acq_rel.gpu by
 * the same thread makes their partial sums (stored before they counted in, released by it)
 * visible to it, and to the block once a barrier follows. */
__device__ __forceinline__ int mrt_load_relaxed(const int *counter)
{
    int v;
    asm volatile("ld.relaxed.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(counter) : "memory");
    return v;
}

/* Programmatic dependent launch (sm_90 and later; no-ops before). launch_dependents lets
 * the next kernel on the stream be scheduled before this one ends (its blocks take SMs as
 * they free up); wait returns once every kernel this one depends on has completed and its
 * memory is visible, and returns at once when the launch did not ask for the overlap. */
__device__ __forceinline__ void mrt_grid_launch_dependents()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void mrt_grid_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

/* Bits of the kernel's `flags` parameter. */
enum {
    /* B and the scales are not written by the kernels this launch depends on: the first
     * segment's weight tiles are fetched before waiting for them. */
    MRT_KERNEL_WEIGHTS_STATIC = 1,
};

__device__ __forceinline__ void mrt_fence_gpu()
{
    asm volatile("fence.acq_rel.gpu;\n" ::: "memory");
}

__device__ __forceinline__ int mrt_imin(int a, int b)
{
    return a < b ? a : b;
}

/* x, as a value the compiler cannot trace back to how it was computed (so it does not
 * reuse, and keep live, results derived from x earlier). */
__device__ __forceinline__ int mrt_opaque(int x)
{
    int y;
    asm volatile("mov.b32 %0, %1;\n" : "=r"(y) : "r"(x));
    return y;
}

__device__ __forceinline__ int mrt_imax(int a, int b)
{
    return a > b ? a : b;
}

/*
 * Dequantize one packed B word into the two 16x8 B fragments it carries.
 *
 * Packed layout (what the host packer produces, see seeds/002 build_marlin_perm): B is cut
 * into 16 (K) x 64 (N) blocks of 1024 nibbles, stored row of blocks after row of blocks:
 * the int4 at index kt * (N/2) + 32 * (n / 64) + lane belongs to K rows 16*kt .. 16*kt+15,
 * columns 64*(n/64) .. +63, and holds exactly what mma lane `lane` needs. Its word j covers
 * the 16 columns 64*(n/64) + 16*j .. +15 as two n8 fragments: with r = 2 * (lane % 4) and
 * c = lane / 4, the nibbles of the word, lowest first, are
 *     (r, c) (r+8, c) (r, c+8) (r+8, c+8) (r+1, c) (r+9, c) (r+1, c+8) (r+9, c+8)
 * as (k row, column) inside the 16x16 sub-tile. The mma B fragment of an n8 block is
 * {k = r, r+1} and {k = r+8, r+9} at column c, so nibbles 0/4 and 1/5 form the first
 * fragment (columns 0..7) and, after a shift by 8, nibbles 2/6 and 3/7 the second.
 *
 * Conversion: OR-ing a nibble v into the mantissa of fp16 1024.0 (0x6400) gives 1024 + v;
 * a nibble sitting 4 bits higher gives 1024 + 16 v. Hence
 *     (1024 + v) - 1032         = v - 8
 *     (1024 + 16 v) / 16 - 72   = v - 8
 * both exact in fp16 (0x6408 = 1032, 0x2c00 = 1/16, 0xd480 = -72).
 */
__device__ __forceinline__ void mrt_dequant(mrt_u32 word, mrt_u32 (&frag)[2])
{
    const mrt_u32 lo = mrt_and_or(word, 0x000f000fu, 0x64006400u);
    const mrt_u32 hi = mrt_and_or(word, 0x00f000f0u, 0x64006400u);
    frag[0] = mrt_hsub2(lo, 0x64086408u);
    frag[1] = mrt_hfma2(hi, 0x2c002c00u, 0xd480d480u);
}

/* ------------------------------------------------------------------------------------ */
/* Shared-memory budget, shared with the host (runtime/gemm.c has the same formula)     */
/* ------------------------------------------------------------------------------------ */

/*
 * Bytes of dynamic shared memory a configuration needs: the largest of
 *   pipeline   STAGES * (A tile + B tile + scale rows)
 *              A tile      16*TMB rows x 2*TKB int4      = 512*TMB*TKB bytes
 *              B tile      TKB rows x 8*TNB int4         = 128*TNB*TKB bytes
 *              scale rows  (TKB/GROUP_BLOCKS or 1) x 2*TNB int4, none per channel
 *   reduction  (THREADS/32 - TNB/4) warps x 8 fragments x 32 lanes x 16 bytes
 *   output     16*TMB rows x (2*TNB + 1) int4 (one int4 of padding per row)
 */
template <int THREADS, int TMB, int TNB, int TKB, int STAGES, int GROUP_BLOCKS>
__device__ constexpr int marlin_w4a16_smem_bytes()
{
    const int scale_rows = GROUP_BLOCKS == -1 ? 0 : (GROUP_BLOCKS < TKB ? TKB / GROUP_BLOCKS : 1);
    const int pipeline = STAGES * (32 * TMB * TKB + 8 * TNB * TKB + scale_rows * 2 * TNB);
    const int reduction = (THREADS / 32 - TNB / 4) * 256;
    const int output = 16 * TMB * (2 * TNB + 1);
    int int4s = pipeline;
    if (reduction > int4s)
        int4s = reduction;
    if (output > int4s)
        int4s = output;
    return 16 * int4s;
}

/* ------------------------------------------------------------------------------------ */
/* The kernel                                                                            */
/* ------------------------------------------------------------------------------------ */

/*
 * Template parameters (the fields of mrt_config):
 *   THREADS           128 or 256
 *   THREAD_M_BLOCKS   16-row blocks of A per chunk (1..4)
 *   THREAD_N_BLOCKS   16-column blocks per block tile (4, 8, 16)
 *   THREAD_K_BLOCKS   16-deep blocks per pipeline stage (4, 8, 16)
 *   STAGES            depth of the cp.async ring (2..8)
 *   GROUP_BLOCKS      16-deep blocks per scale group (2, 4, 8), or -1 for per-channel scales
 * with THREAD_N_BLOCKS * THREAD_K_BLOCKS * 8 a multiple of THREADS.
 *
 * Parameters: A, B, C, s as in the header comment (as int4, 16-byte units); prob_m, prob_n,
 * prob_k the problem shape of this launch; locks and partials the workspace (see the
 * launch contract above).
 */
template <int THREADS, int THREAD_M_BLOCKS, int THREAD_N_BLOCKS, int THREAD_K_BLOCKS, int STAGES, int GROUP_BLOCKS>
__global__ void __launch_bounds__(THREADS, 1)
    marlin_w4a16(const int4 *__restrict__ A, const int4 *__restrict__ B, int4 *__restrict__ C,
                 const int4 *__restrict__ s, int prob_m, int prob_n, int prob_k, int *locks, float4 *partials,
                 int flags)
{
    constexpr int TMB = THREAD_M_BLOCKS;
    constexpr int TNB = THREAD_N_BLOCKS;
    constexpr int TKB = THREAD_K_BLOCKS;
    constexpr bool GROUPED = GROUP_BLOCKS != -1;

    static_assert(THREADS == 128 || THREADS == 256, "THREADS must be 128 or 256");
    static_assert(TMB >= 1 && TMB <= 4, "THREAD_M_BLOCKS must be 1..4");
    static_assert(TNB == 4 || TNB == 8 || TNB == 16, "THREAD_N_BLOCKS must be 4, 8 or 16");
    static_assert(TKB == 4 || TKB == 8 || TKB == 16, "THREAD_K_BLOCKS must be 4, 8 or 16");
    static_assert(STAGES >= 2 && STAGES <= 8, "STAGES must be 2..8");
    static_assert(GROUP_BLOCKS == -1 || GROUP_BLOCKS == 2 || GROUP_BLOCKS == 4 || GROUP_BLOCKS == 8,
                  "GROUP_BLOCKS must be -1, 2, 4 or 8");

    /* Warp layout: WARPS_N warps side by side along N, each owning 64 columns (the width
     * of one packed block, i.e. one int4 of B per lane per 16 K rows); the remaining
     * factor WARPS_K splits the 16-deep rows of a tile. Warp w is (wn, wk) = (w % WARPS_N,
     * w / WARPS_N); SUB_STEPS 16-deep rows per tile fall to each warp. */
    constexpr int WARPS = THREADS / 32;
    constexpr int WARPS_N = TNB / 4;
    constexpr int WARPS_K = WARPS / WARPS_N;
    constexpr int SUB_STEPS = TKB / WARPS_K;
    static_assert(WARPS % WARPS_N == 0 && WARPS_K >= 1 && TKB % WARPS_K == 0 && SUB_STEPS >= 1,
                  "THREAD_N_BLOCKS * THREAD_K_BLOCKS * 8 must be a multiple of THREADS");

    /* Shared A tile: 16*TMB rows x A_ROW int4 (8 halves each) of K. Element (row, col) is
     * stored at row * A_ROW + (col ^ (row % 8)): the XOR spreads the 8 rows that one
     * ldmatrix phase reads (same col, consecutive rows) over the 8 distinct 16-byte bank
     * groups, and keeps the 8 consecutive int4 of one cp.async phase distinct as well. */
    constexpr int A_ROW = 2 * TKB;
    constexpr int A_STAGE = 16 * TMB * A_ROW;
    constexpr int A_ITERS = (A_STAGE + THREADS - 1) / THREADS;
    constexpr int A_ROWS_PER_ITER = THREADS / A_ROW;
    static_assert(THREADS % A_ROW == 0, "A rows must tile the block");

    /* Shared B tile: TKB rows (16 K each) x B_ROW int4, a straight copy of the packed rows
     * kt = TKB*tile .. TKB*tile + TKB-1, columns 16*TNB*col .. +16*TNB-1 (B_ROW = 32 lanes x
     * TNB/4 blocks of 64 columns). With interleaved K-warps, int4 number tid + THREADS*k of
     * the tile is the one thread tid needs in sub-step k: row wk + WARPS_K*k, block wn,
     * lane; on the fp32-scale path (consecutive rows, below) it is row wk*SUB_STEPS + k. */
    constexpr int B_ROW = 8 * TNB;
    constexpr int B_STAGE = TKB * B_ROW;
    constexpr int B_ITERS = B_STAGE / THREADS;
    static_assert(B_ITERS == SUB_STEPS, "B tile and sub-steps disagree");

    /* Shared scale rows of one tile (grouped only): S_GROUPS rows of S_ROW int4, the
     * scale rows of the groups the tile's K range spans (one when a group is at least as
     * deep as a tile). Marlin scale order inside a row: the int4 number 8*(n/64) + i holds
     * the scales of columns 64*(n/64) + i + 8*j, j = 0..7, i.e. word w = (column c + 16 w,
     * column c + 16 w + 8) for mma lane column c = i: the two n8 fragments of sub-tile w. */
    constexpr int S_ROW = 2 * TNB;
    constexpr int S_GROUPS = !GROUPED ? 0 : (GROUP_BLOCKS < TKB ? TKB / GROUP_BLOCKS : 1);
    constexpr int S_STAGE = S_GROUPS * S_ROW;
    constexpr int S_ITERS = (S_STAGE + THREADS - 1) / THREADS;

    /* The register pipeline double-buffers the fragments of consecutive sub-steps; the
     * main loop is unrolled over PERIOD tiles so that both the ring slot and the register
     * buffer of every sub-step are compile-time constants. */
    constexpr int PERIOD = (STAGES * SUB_STEPS) % 2 == 0 ? STAGES : 2 * STAGES;

    /* Group scales in fp32, once per group run. Scaling every dequantized weight costs 4
     * HMUL2 per B word, 2 of the 9 instructions per mma. When a warp's sub-steps are
     * consecutive 16-deep rows and SCALE_RUN = min(SUB_STEPS, GROUP_BLOCKS) of them share
     * a group, the warp can instead multiply unscaled weights into a run accumulator and add
     * run x scale (fp32) to its sums once per run: 2 scale loads, 16 conversions and 32*TMB
     * FFMA instead of 16*SCALE_RUN HMUL2 and SCALE_RUN scale loads. Worth it, and the run
     * accumulator affordable, for one m-block with runs of 4 or more and two with runs of
     * 8. Weights stay exact (q - 8) in fp16 and are scaled in fp32, so this path rounds less
     * than the fp16 scaling. */
    constexpr int SCALE_RUN = !GROUPED ? 1 : (SUB_STEPS < GROUP_BLOCKS ? SUB_STEPS : GROUP_BLOCKS);
    constexpr bool FP32_SCALE = GROUPED && TMB <= 2 && SCALE_RUN >= 4 * TMB;

    constexpr int SMEM_BYTES = marlin_w4a16_smem_bytes<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS>();
    constexpr int CHUNK_ROWS = 16 * TMB;
    /* Fragments of one warp (TMB m-blocks x 4 sub-tiles x 2 n8 halves), as float4. */
    constexpr int FRAGS = TMB * 8;

    extern __shared__ int4 smem[];
    int4 *const sh_a = smem;
    int4 *const sh_b = sh_a + STAGES * A_STAGE;
    int4 *const sh_s = sh_b + STAGES * B_STAGE;

    {
        mrt_u32 dynamic_smem;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < (mrt_u32)SMEM_BYTES || prob_m < 1 || prob_n % (16 * TNB) != 0 ||
            prob_k % (16 * TKB) != 0 || (GROUPED && prob_k % (16 * GROUP_BLOCKS) != 0))
            asm volatile("trap;");
    }

    /* Nothing this kernel writes is read by the next one before that one waits for us. */
    mrt_grid_launch_dependents();
    /* Everything but the weights may come from the previous kernel: wait for it now, or
     * (weights static) once the first weight tiles are on their way. */
    bool waited = !(flags & MRT_KERNEL_WEIGHTS_STATIC);
    if (waited)
        mrt_grid_wait();

    const int tid = threadIdx.x;
    const int lane = tid % 32;
    const int warp = tid / 32;
    const int wn = warp % WARPS_N;
    const int wk = warp / WARPS_N;

    /* Global strides, in int4: a row of A is K halves, a packed row of B (16 K rows) is
     * N*16 nibbles, a row of scales or of C is N halves. */
    const int a_gl_row = prob_k / 8;
    const int b_gl_row = prob_n / 2;
    const int s_gl_row = prob_n / 8;
    const int c_gl_row = prob_n / 8;

    /* Striped partition. Tiles are numbered t = slice * k_tiles + kt with slice = chunk *
     * n_tiles + col; block b owns t in [b * iters, (b+1) * iters). A run of its tiles with
     * one slice is a segment. The blocks that share slice `slice` are first ..= last with
     * first = slice*k_tiles / iters and last = ((slice+1)*k_tiles - 1) / iters; every one of
     * them owns at least one tile of it. */
    const int k_tiles = prob_k / (16 * TKB);
    const int n_tiles = prob_n / (16 * TNB);
    const int chunks = (prob_m + CHUNK_ROWS - 1) / CHUNK_ROWS;
    const int total = k_tiles * n_tiles * chunks;
    const int iters = (total + (int)gridDim.x - 1) / (int)gridDim.x;
    int tile = (int)blockIdx.x * iters;
    const int stripe_end = mrt_imin(tile + iters, total);

    const mrt_u32 sh_a_addr = mrt_smem_addr(sh_a);
    const mrt_u32 sh_b_addr = mrt_smem_addr(sh_b);
    const mrt_u32 sh_s_addr = mrt_smem_addr(sh_s);

    mrt_u32 frag_a[2][TMB][4];
    mrt_u32 frag_b[2][4];
    mrt_u32 frag_s[2][4];
    float acc[TMB][4][2][4];
    float run[FP32_SCALE ? TMB : 1][4][2][4]; /* the current group run (FP32_SCALE only) */

    while (tile < stripe_end) {
        const int slice = tile / k_tiles;
        const int kt_first = tile - slice * k_tiles;
        const int kt_count = mrt_imin(k_tiles - kt_first, stripe_end - tile);
        const int chunk = slice / n_tiles;
        const int col = slice - chunk * n_tiles;
        const int rows = mrt_imin(CHUNK_ROWS, prob_m - chunk * CHUNK_ROWS);
        const int first_block = slice * k_tiles / iters;
        const int last_block = ((slice + 1) * k_tiles - 1) / iters;
        const int slice_blocks = last_block - first_block + 1;
        /* Partial-sum slots of a split slice: block b stores the segment that opens its
         * stripe in slot 2b and the one that starts later (its stripe's last, which runs on
         * into block b+1) in slot 2b+1. Only the first block's segment can start inside a
         * stripe, so the slot of participant b is 2b + (b == first_block && the slice starts
         * after b's stripe does). */
        const int slice_start = slice * k_tiles;
        auto slot_of = [&](int b) { return 2 * b + (b == first_block && slice_start != b * iters ? 1 : 0); };

        const int4 *const a_chunk = A + chunk * CHUNK_ROWS * a_gl_row;
        const int4 *const b_col = B + col * B_ROW;
        const int4 *const s_col = s + col * S_ROW;

        /* Copy the A part of tile kt (K step kt of this slice) into ring slot `slot`. */
        auto fetch_a = [&](int slot, int kt) {
            /* A: thread tid copies (row, c) = (tid / A_ROW + i * A_ROWS_PER_ITER, tid % A_ROW)
             * from A[chunk row `row`, K int4 kt * A_ROW + c]; rows past the chunk's end are
             * zero-filled from a harmless in-bounds address. */
            const mrt_u32 a_dst = sh_a_addr + 16u * (mrt_u32)(slot * A_STAGE);
#pragma unroll
            for (int i = 0; i < A_ITERS; i++) {
                const int row = tid / A_ROW + i * A_ROWS_PER_ITER;
                const int c = tid % A_ROW;
                if (A_STAGE % THREADS == 0 || tid + i * THREADS < A_STAGE) {
                    const bool valid = row < rows;
                    mrt_cp_async16(a_dst + 16u * (mrt_u32)(row * A_ROW + (c ^ (row % 8))),
                                   a_chunk + (valid ? row : 0) * a_gl_row + kt * A_ROW + c, valid ? 16 : 0);
                }
            }
        };

        /* Copy the weight part of tile kt (B and its scale rows) into ring slot `slot`. */
        auto fetch_weights = [&](int slot, int kt) {
            /* B: tile int4 number tid + i*THREADS sits at (row, c) = (tid / B_ROW + i *
             * THREADS / B_ROW, tid % B_ROW), from packed row kt*TKB + row. */
            const mrt_u32 b_dst = sh_b_addr + 16u * (mrt_u32)(slot * B_STAGE + tid);
            const int4 *b_src = b_col + (kt * TKB + tid / B_ROW) * b_gl_row + tid % B_ROW;
#pragma unroll
            for (int i = 0; i < B_ITERS; i++)
                mrt_cp_async16(b_dst + 16u * (mrt_u32)(i * THREADS), b_src + i * (THREADS / B_ROW) * b_gl_row, 16);
            /* Scales: rows g0 .. g0 + S_GROUPS - 1 with g0 the group of the tile's first row. */
            if (GROUPED) {
                const int g0 = kt * TKB / (GROUPED ? GROUP_BLOCKS : 1);
                const mrt_u32 s_dst = sh_s_addr + 16u * (mrt_u32)(slot * S_STAGE);
#pragma unroll
                for (int i = 0; i < S_ITERS; i++) {
                    const int idx = tid + i * THREADS;
                    if (idx < S_STAGE)
                        mrt_cp_async16(s_dst + 16u * (mrt_u32)idx, s_col + (g0 + idx / S_ROW) * s_gl_row + idx % S_ROW,
                                       16);
                }
            }
        };

        auto fetch_tile = [&](int slot, int kt) {
            fetch_a(slot, kt);
            fetch_weights(slot, kt);
        };

        /* Load the fragments of sub-step k of ring slot `slot` into register buffer `buf`.
         * The warp's 16-deep row in the tile is kk = wk + WARPS_K * k. A: ldmatrix lane i
         * addresses row 16*mb + i % 16, K int4 2*kk + i / 16, which yields the mma A
         * fragment of m-block mb (matrices: rows 0-7/8-15 x K 0-7, then x K 8-15). */
        auto load_fragments = [&](int buf, int slot, int k) {
            const int kk = FP32_SCALE ? wk * SUB_STEPS + k : wk + WARPS_K * k;
            const int a_col = (2 * kk + lane / 16) ^ (lane % 8); /* row % 8 == lane % 8 */
#pragma unroll
            for (int mb = 0; mb < TMB; mb++) {
                const int a_idx = slot * A_STAGE + (16 * mb + lane % 16) * A_ROW + a_col;
                mrt_ldmatrix_x4(frag_a[buf][mb], sh_a_addr + 16u * (mrt_u32)a_idx);
            }
            /* Row kk, 64-column block wn, lane: with interleaved rows this is int4 tid +
             * k*THREADS of the tile, the one the thread copied itself. */
            const int4 bq = sh_b[slot * B_STAGE + (FP32_SCALE ? kk * B_ROW + wn * 32 + lane : tid + k * THREADS)];
            frag_b[buf][0] = (mrt_u32)bq.x;
            frag_b[buf][1] = (mrt_u32)bq.y;
            frag_b[buf][2] = (mrt_u32)bq.z;
            frag_b[buf][3] = (mrt_u32)bq.w;
            if (GROUPED && !FP32_SCALE) {
                const int group = GROUP_BLOCKS < TKB ? kk / (GROUPED ? GROUP_BLOCKS : 1) : 0;
                const int4 sv = sh_s[slot * S_STAGE + group * S_ROW + 8 * wn + lane / 4];
                frag_s[buf][0] = (mrt_u32)sv.x;
                frag_s[buf][1] = (mrt_u32)sv.y;
                frag_s[buf][2] = (mrt_u32)sv.z;
                frag_s[buf][3] = (mrt_u32)sv.w;
            }
        };

        /* The scale rows a group run that ends in sub-step k of ring slot `slot` is scaled
         * with (FP32_SCALE only): int4 8*wn + 2*(lane%4) and the next of its group's row. */
        auto load_run_scales = [&](int slot, int k, int4 &s_even, int4 &s_odd) {
            const int kk = wk * SUB_STEPS + k;
            const int group = GROUP_BLOCKS < TKB ? kk / (GROUPED ? GROUP_BLOCKS : 1) : 0;
            const int4 *const srow = sh_s + slot * S_STAGE + group * S_ROW + 8 * wn + 2 * (lane % 4);
            s_even = srow[0];
            s_odd = srow[1];
        };

        /* Multiply register buffer `buf` (sub-step k): sub-tile j's word gives the B
         * fragments of its two n8 halves, scaled per group (per-channel scales are applied
         * once at the end). With FP32_SCALE the unscaled products go to the run
         * accumulator, which the last sub-step of each run scales into acc with the scale
         * rows s_even, s_odd from load_run_scales. */
        auto multiply = [&](int buf, int k, const int4 &s_even, const int4 &s_odd) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                mrt_u32 b_lo[2], b_hi[2];
                mrt_dequant(frag_b[buf][j], b_lo);
                mrt_dequant(frag_b[buf][j] >> 8, b_hi);
                if (GROUPED && !FP32_SCALE) {
                    b_lo[0] = mrt_hmul2_by_half<false>(b_lo[0], frag_s[buf][j]);
                    b_lo[1] = mrt_hmul2_by_half<false>(b_lo[1], frag_s[buf][j]);
                    b_hi[0] = mrt_hmul2_by_half<true>(b_hi[0], frag_s[buf][j]);
                    b_hi[1] = mrt_hmul2_by_half<true>(b_hi[1], frag_s[buf][j]);
                }
#pragma unroll
                for (int mb = 0; mb < TMB; mb++) {
                    if (!FP32_SCALE) {
                        mrt_mma_16816(acc[mb][j][0], frag_a[buf][mb], b_lo[0], b_lo[1]);
                        mrt_mma_16816(acc[mb][j][1], frag_a[buf][mb], b_hi[0], b_hi[1]);
                    } else if (k % SCALE_RUN == 0) {
                        mrt_mma_16816_first(run[mb][j][0], frag_a[buf][mb], b_lo[0], b_lo[1]);
                        mrt_mma_16816_first(run[mb][j][1], frag_a[buf][mb], b_hi[0], b_hi[1]);
                    } else {
                        mrt_mma_16816(run[mb][j][0], frag_a[buf][mb], b_lo[0], b_lo[1]);
                        mrt_mma_16816(run[mb][j][1], frag_a[buf][mb], b_hi[0], b_hi[1]);
                    }
                }
            }
            if (FP32_SCALE && k % SCALE_RUN == SCALE_RUN - 1) {
                /* Accumulator element e of (mb, j, h) is column 16j + 8h + 2*(lane%4) + e%2 of
                 * the warp's 64; in Marlin scale order that column's scale is half 2j + h of
                 * int4 8*wn + 2*(lane%4) + e%2 of the group's row (load_run_scales). */
                const mrt_u32 even[4] = {(mrt_u32)s_even.x, (mrt_u32)s_even.y, (mrt_u32)s_even.z, (mrt_u32)s_even.w};
                const mrt_u32 odd[4] = {(mrt_u32)s_odd.x, (mrt_u32)s_odd.y, (mrt_u32)s_odd.z, (mrt_u32)s_odd.w};
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    float se[2], so[2];
                    mrt_unpack_half2(even[j], se[0], se[1]);
                    mrt_unpack_half2(odd[j], so[0], so[1]);
#pragma unroll
                    for (int h = 0; h < 2; h++)
#pragma unroll
                        for (int mb = 0; mb < TMB; mb++) {
                            acc[mb][j][h][0] += run[mb][j][h][0] * se[h];
                            acc[mb][j][h][1] += run[mb][j][h][1] * so[h];
                            acc[mb][j][h][2] += run[mb][j][h][2] * se[h];
                            acc[mb][j][h][3] += run[mb][j][h][3] * so[h];
                        }
                }
            }
        };

        /* Prologue: tiles 0 .. STAGES-2 of the segment into slots 0 .. STAGES-2, one commit
         * group per tile even when there is no tile, so that group counting stays exact.
         * Before the grid wait only weights are fetched; they join the first group, which
         * completes first, so tile i is in place once group i is. */
        if (!waited) {
#pragma unroll
            for (int i = 0; i < STAGES - 1; i++)
                if (i < kt_count)
                    fetch_weights(i, kt_first + i);
            mrt_grid_wait();
            waited = true;
#pragma unroll
            for (int i = 0; i < STAGES - 1; i++) {
                if (i < kt_count)
                    fetch_a(i, kt_first + i);
                mrt_cp_async_commit();
            }
        } else {
#pragma unroll
            for (int i = 0; i < STAGES - 1; i++) {
                if (i < kt_count)
                    fetch_tile(i, kt_first + i);
                mrt_cp_async_commit();
            }
        }
#pragma unroll
        for (int mb = 0; mb < TMB; mb++)
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int h = 0; h < 2; h++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        acc[mb][j][h][e] = 0.0f;
        mrt_cp_async_wait<STAGES - 2>();
        __syncthreads();
        load_fragments(0, 0, 0);
        /* When this segment is the slice's first K steps at the end of a stripe that began
         * with other segments, the slice's other participants took the rest at the start of
         * theirs and have usually counted in long before this block gets to the end: its
         * counter is looked at now (after the grid wait) and used only at the segment's end,
         * where this block, if they all had, is the last and skips its slot and count-in.
         * (Where all participants run the slice at once, the look would not find them in,
         * so it is not taken.) Compiled into the wide 256-thread tiles only, the
         * ones whose stripes run through several columns on the large layers: in the
         * others the extra code cost up to 4% where the look never applies (v7,
         * docs/performance.md). */
        constexpr bool LOOK_AHEAD = THREADS == 256 && TNB == 16;
        const bool looked = LOOK_AHEAD && slice_blocks > 1 && (int)blockIdx.x == first_block &&
                            tile != (int)blockIdx.x * iters;
        int counted_in = 0;
        if (looked && tid == 0)
            counted_in = mrt_load_relaxed(locks + first_block);

        /* Main loop. Tile `done` lives in slot done % STAGES (p below). In its last
         * sub-step the block refills slot (p - 1) % STAGES with tile done + STAGES - 1:
         * that slot's last readers (load_fragments, load_run_scales) ran before the barrier
         * of the previous tile, so every warp is past them. Then it waits for tile done + 1 (at most
         * STAGES - 2 newer groups pending), syncs, and loads its first sub-step, which
         * overlaps with the multiply of the current last sub-step. */
        int done = 0;
        while (done < kt_count) {
#pragma unroll
            for (int p = 0; p < PERIOD; p++) {
#pragma unroll
                for (int k = 0; k < SUB_STEPS; k++) {
                    const int step = p * SUB_STEPS + k;
                    /* A group run's scales are read before the tile's barrier when the run
                     * ends with the tile: past it, a faster warp may already be refilling
                     * this slot with the tile STAGES ahead (found by racecheck). */
                    int4 s_even = make_int4(0, 0, 0, 0), s_odd = s_even;
                    if (FP32_SCALE && k % SCALE_RUN == SCALE_RUN - 1)
                        load_run_scales(p % STAGES, k, s_even, s_odd);
                    if (k == SUB_STEPS - 1) {
                        if (done + STAGES - 1 < kt_count)
                            fetch_tile((p + STAGES - 1) % STAGES, kt_first + done + STAGES - 1);
                        mrt_cp_async_commit();
                        mrt_cp_async_wait<STAGES - 2>();
                        __syncthreads();
                        load_fragments((step + 1) % 2, (p + 1) % STAGES, 0);
                    } else {
                        load_fragments((step + 1) % 2, p % STAGES, k + 1);
                    }
                    multiply(step % 2, k, s_even, s_odd);
                }
                done++;
                if (done == kt_count)
                    break;
            }
        }

        /* Epilogue. The ring is reused from here on: drain it and let every warp finish
         * its last (speculative) fragment loads. */
        mrt_cp_async_wait<0>();
        __syncthreads();

        /* Block reduction over the WARPS_K warps of each column group: for each m-block,
         * warps wk > 0 park their fragments in shared memory (warp-slot (wk-1)*WARPS_N + wn,
         * fragment f, lane: consecutive lanes, consecutive 16 bytes), warps wk == 0 add them
         * in a fixed order. M-blocks wholly past the chunk's rows are skipped. */
        if (WARPS_K > 1) {
            float4 *const red = reinterpret_cast<float4 *>(smem);
#pragma unroll
            for (int mb = 0; mb < TMB; mb++) {
                if (16 * mb < rows) {
                    if (wk > 0) {
#pragma unroll
                        for (int f = 0; f < 8; f++) {
                            const float *a = acc[mb][f / 2][f % 2];
                            red[((wk - 1) * WARPS_N + wn) * 256 + f * 32 + lane] = make_float4(a[0], a[1], a[2], a[3]);
                        }
                    }
                    __syncthreads();
                    if (wk == 0) {
#pragma unroll
                        for (int w = 1; w < WARPS_K; w++) {
#pragma unroll
                            for (int f = 0; f < 8; f++) {
                                const float4 v = red[((w - 1) * WARPS_N + wn) * 256 + f * 32 + lane];
                                float *a = acc[mb][f / 2][f % 2];
                                a[0] += v.x;
                                a[1] += v.y;
                                a[2] += v.z;
                                a[3] += v.w;
                            }
                        }
                    }
                    __syncthreads();
                }
            }
        }

        /* Global reduction between the blocks of a split slice. Each participant's warps
         * wk == 0 (which hold its sums) store them to its slot, as float4 number ((mb*8 + f)
         * * WARPS_N + wn) * 32 + lane; the counter is the slice's first block's (two split
         * slices never share a first block: the earlier would lie wholly inside that block's
         * stripe and not be split). The last block to arrive sums the slots from first_block
         * to last_block, its own included, and is the one that writes C. A first block that
         * saw all the others counted in (its look at the counter above) is that last block
         * without a slot or count-in of its own. */
        /* Per-channel scales of the warp's columns (loaded only where C is written: the
         * accumulators leave no registers to spare earlier). The Marlin per-channel order
         * puts in int4 number 4*(n/32) + i the scales of columns 32*(n/32) + 2i + 8w + {0, 1},
         * w = 0..3, i.e. word w = the two columns this lane (i = lane % 4) holds in n8 block w
         * of those 32 columns. A warp's 64 columns are int4 8*wn + lane%4 and that + 4. The
         * pair of fragment (j, h) is word 2*(j%2) + h of scale_pc[j/2]. */
        auto load_channel_scales = [&](mrt_u32 (&scale_pc)[2][4]) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int4 sv = s_col[8 * wn + lane % 4 + 4 * h];
                scale_pc[h][0] = (mrt_u32)sv.x;
                scale_pc[h][1] = (mrt_u32)sv.y;
                scale_pc[h][2] = (mrt_u32)sv.z;
                scale_pc[h][3] = (mrt_u32)sv.w;
            }
        };

        /* Two shares of a one-m-block slice: no slots, no count-in. Each pair of sums a
         * thread holds (fragment f, rows lane/4 and lane/4 + 8) is swapped, bitwise
         * inverted, into its word of the slice's exchange area (the first block's, zero
         * outside a launch): who gets 0 back came first and is done with that pair; who
         * gets the other's sums adds them to its own (a + b == b + a, so the bits do not
         * depend on who came second), writes the two columns of C and puts the word back
         * to 0. One round trip to L2 instead of three (stores drained before the
         * count-in, the count-in, the slot read). A sum whose inverse is 0 would be the
         * NaN 0xffffffff twice, which no fp32 arithmetic produces (NaNs come out as
         * 0x7fffffff). Compiled into the 256-thread tiles of one m-block without
         * look-ahead (64 and 128 columns): in the 128-thread ones it moved the main loop's
         * code, which cost more than the exchange saved (v12, docs/performance.md). */
        constexpr bool EXCHANGE = TMB == 1 && THREADS == 256 && !LOOK_AHEAD;
        bool writes_c = true;
        if (EXCHANGE && slice_blocks == 2) {
            writes_c = false;
            if (wk == 0) {
                unsigned long long *const ex = reinterpret_cast<unsigned long long *>(
                                                   locks + ((int)gridDim.x + 63) / 64 * 64) +
                                               first_block * (CHUNK_ROWS * 8 * TNB) + wn * 32 + lane;
                unsigned long long old[8][2];
#pragma unroll
                for (int f = 0; f < 8; f++)
#pragma unroll
                    for (int e2 = 0; e2 < 2; e2++) {
                        const float *a = acc[0][f / 2][f % 2];
                        const unsigned long long mine = (unsigned long long)__float_as_uint(a[2 * e2]) |
                                                        (unsigned long long)__float_as_uint(a[2 * e2 + 1]) << 32;
                        old[f][e2] = lane / 4 + 8 * e2 < rows
                                         ? mrt_exchange64(ex + (2 * f + e2) * WARPS_N * 32, ~mine)
                                         : 0ull;
                    }
                mrt_u32 scale_pc[2][4];
                if (!GROUPED)
                    load_channel_scales(scale_pc);
                mrt_u32 *const c_thread = reinterpret_cast<mrt_u32 *>(C + chunk * CHUNK_ROWS * c_gl_row + col * 2 * TNB) +
                                          (lane / 4) * (prob_n / 2) + 32 * wn + lane % 4;
#pragma unroll
                for (int f = 0; f < 8; f++)
#pragma unroll
                    for (int e2 = 0; e2 < 2; e2++) {
                        if (old[f][e2] != 0ull) {
                            const unsigned long long other = ~old[f][e2];
                            const float *a = acc[0][f / 2][f % 2];
                            float sc_lo = 1.0f, sc_hi = 1.0f;
                            if (!GROUPED)
                                mrt_unpack_half2(scale_pc[f / 4][2 * ((f / 2) % 2) + f % 2], sc_lo, sc_hi);
                            const float lo = a[2 * e2] + __uint_as_float((mrt_u32)other);
                            const float hi = a[2 * e2 + 1] + __uint_as_float((mrt_u32)(other >> 32));
                            mrt_store_zero64(ex + (2 * f + e2) * WARPS_N * 32);
                            c_thread[8 * e2 * (prob_n / 2) + 4 * f] = mrt_pack_half2(lo * sc_lo, hi * sc_hi);
                        }
                    }
            }
        } else if (slice_blocks > 1) {
            constexpr int SLOT = FRAGS * WARPS_N * 32;
            auto store_own = [&]() {
                float4 *const mine = partials + slot_of((int)blockIdx.x) * SLOT + wn * 32 + lane;
#pragma unroll
                for (int mb = 0; mb < TMB; mb++) {
                    if (16 * mb < rows) {
#pragma unroll
                        for (int f = 0; f < 8; f++) {
                            const float *a = acc[mb][f / 2][f % 2];
                            mrt_store_cg(mine + (mb * 8 + f) * WARPS_N * 32, make_float4(a[0], a[1], a[2], a[3]));
                        }
                    }
                }
            };
            /* Known last (thread 0 saw the others counted in, then fenced: an acquire), the
             * counter goes back to 0 (nobody else touches it in this launch), and this block,
             * the slice's first, needs no slot: its sums are the first term already. */
            const bool seen_all = looked && tid == 0 && counted_in == slice_blocks - 1;
            if (seen_all)
                mrt_fence_gpu();
            const bool others_in = looked && __syncthreads_or(seen_all) != 0;
            if (!others_in && wk == 0)
                store_own();
            if (others_in && tid == 0)
                mrt_store_relaxed(locks + first_block, 0);
            writes_c = others_in || mrt_arrive_last(locks + first_block, slice_blocks);
            /* Two participants: the last adds the other's slot to its own sums, one slot
             * read instead of two (a + b == b + a, so the bits are those of slot order).
             * Not compiled into the look-ahead tiles, whose main loops it slowed 1% (v11);
             * the exchange tiles get here with three or more only. */
            const bool pair = !LOOK_AHEAD && slice_blocks == 2;
            if (writes_c && wk == 0) {
                for (int b = others_in ? first_block + 1 : first_block; b <= last_block; b++) {
                    if (pair && b == (int)blockIdx.x)
                        continue;
                    const float4 *const slot = partials + slot_of(b) * SLOT + wn * 32 + lane;
#pragma unroll
                    for (int mb = 0; mb < TMB; mb++) {
                        if (16 * mb < rows) {
#pragma unroll
                            for (int f = 0; f < 8; f++) {
                                const float4 v = mrt_load_cg(slot + (mb * 8 + f) * WARPS_N * 32);
                                float *a = acc[mb][f / 2][f % 2];
                                if (b == first_block && !pair) {
                                    a[0] = v.x;
                                    a[1] = v.y;
                                    a[2] = v.z;
                                    a[3] = v.w;
                                } else {
                                    a[0] += v.x;
                                    a[1] += v.y;
                                    a[2] += v.z;
                                    a[3] += v.w;
                                }
                            }
                        }
                    }
                }
            }
        }

        /* Write C. Fragment element e of (mb, j, h) is row 16*mb + lane/4 + 8*(e/2), column
         * 64*wn + 16*j + 8*h + 2*(lane%4) + e%2. Pairs are rounded to fp16 once and staged
         * in shared memory, rows C_ROW int4 apart (2*TNB + 1: the padding int4 shifts each
         * row by 4 banks, so the 8 rows x 4 lanes of one store hit 32 distinct banks), then
         * copied out as whole int4 per row, rows past the chunk's end dropped. */
        if (writes_c) {
            constexpr int C_ROW = 2 * TNB + 1;
            mrt_u32 *const stage = reinterpret_cast<mrt_u32 *>(smem);
            mrt_u32 scale_pc[2][4];
            if (!GROUPED && wk == 0)
                load_channel_scales(scale_pc);
            if (wk == 0) {
                /* In 32-bit words: this thread's first pair, then compile-time offsets. */
                mrt_u32 *const stage_thread = stage + (lane / 4) * (C_ROW * 4) + 32 * wn + lane % 4;
#pragma unroll
                for (int mb = 0; mb < TMB; mb++) {
#pragma unroll
                    for (int j = 0; j < 4; j++) {
#pragma unroll
                        for (int h = 0; h < 2; h++) {
                            float sc_lo = 1.0f, sc_hi = 1.0f;
                            if (!GROUPED)
                                mrt_unpack_half2(scale_pc[j / 2][2 * (j % 2) + h], sc_lo, sc_hi);
#pragma unroll
                            for (int e2 = 0; e2 < 2; e2++) {
                                const float *a = acc[mb][j][h];
                                stage_thread[(16 * mb + 8 * e2) * (C_ROW * 4) + 8 * j + 4 * h] =
                                    mrt_pack_half2(a[2 * e2] * sc_lo, a[2 * e2 + 1] * sc_hi);
                            }
                        }
                    }
                }
            }
            __syncthreads();
            constexpr int C_TILE = CHUNK_ROWS * 2 * TNB;
            int4 *const c_chunk = C + chunk * CHUNK_ROWS * c_gl_row + col * 2 * TNB;
#pragma unroll
            for (int i = 0; i < (C_TILE + THREADS - 1) / THREADS; i++) {
                const int idx = tid + i * THREADS;
                const int row = idx / (2 * TNB);
                const int c = idx % (2 * TNB);
                if ((C_TILE % THREADS == 0 || idx < C_TILE) && row < rows)
                    c_chunk[row * c_gl_row + c] = smem[row * C_ROW + c];
            }
        }

        /* The next segment's prologue overwrites shared memory. */
        __syncthreads();
        tile += kt_count;
    }
}

/* ==================================================================================== */
/* Large-M kernel for Hopper (sm_90a): wgmma with the weights as the register operand    */
/* ==================================================================================== */

/*
 * marlin_w4a16_wgmma computes the same product, for batches large enough that the tensor
 * cores, not the weight stream, set the pace (M of 128 and more; from 17 rows for the tiles
 * that run narrow chunks, below). mma.sync reaches about
 * two thirds of Hopper's fp16 peak at best; the asynchronous warpgroup MMA (wgmma) reaches
 * it, but only sm_90a has it, so this kernel is compiled for sm_90a and for no other arch.
 *
 * Design, in brief:
 *   - The product is computed transposed, C^T = B^T x A^T: the weights are wgmma's A
 *     operand (64 features x 16 K per instruction, from registers) and the activations its
 *     B operand (16 K x 16*TMB tokens, from shared memory). That puts the dequantization
 *     where it is cheapest (in registers, right before the MMA) and needs no repacking:
 *     the packed word a mma.sync lane uses for its two n8 B fragments (see mrt_dequant) is
 *     exactly that lane's m16 x k16 A fragment of B^T, the four registers being
 *     {lo[0], hi[0], lo[1], hi[1]} (rows r, r+8 at k pair 2*(lane%4), then the same at +8).
 *   - A block has THREADS/128 warpgroups side by side along N; each covers WG_M x 64
 *     features. In m64 tile t of warpgroup g, warp w of the group holds the 16 features of
 *     16-column sub-tile g*4*WG_M + w*WG_M + t of the block: word (w*WG_M + t) % 4 of its
 *     lane's int4 in packed block (g*4*WG_M + w*WG_M + t) / 4.
 *   - A (activations) is copied with cp.async into a 128-byte-swizzled K-major layout, the
 *     one wgmma's shared-memory descriptor reads: token row r of a 64-deep atom at r*128
 *     bytes, its 16-byte chunk c at ((c ^ (r % 8)) * 16). Ring of STAGES slots; the load
 *     for step ks + STAGES - 2 goes out at step ks into the slot step ks - 2 used (every
 *     wgmma of that step is known complete by then: each warpgroup keeps at most one
 *     wgmma group in flight, the one of the step before).
 *   - Each 16-deep sub-step: fence, issue WG_M wgmmas, commit; wait until only that group
 *     is left (the previous one, which read the other register set, is done); dequantize
 *     the next weights into that set while this group runs. Group scales are applied in
 *     fp16 as the weights are dequantized (as in the mma.sync kernel); per-channel scales
 *     once to the fp32 sums.
 *   - One block per (N tile, K share, M tile); M tiles of one N tile and share are
 *     consecutive block indices, so the blocks that share a weight tile run together and
 *     read it from L2. With more than one share per tile (launches with fewer tiles than
 *     SMs), each share stores its fp32 sums in the workspace and the last to arrive adds
 *     them in share order and writes C.
 *   - Narrow chunks (tiles with two m64 tiles per warpgroup only): a chunk of M of at most
 *     a quarter or half of the tile's rows runs wgmmas that narrow on just those rows, with
 *     a deeper ring in the same shared memory (marlin_w4a16_wgmma_tile).
 *   - Launches whose tiles fill their last wave only partly run marlin_w4a16_wgmma_sk
 *     instead: whole tiles for the full waves, the leftover tiles' K steps cut evenly over
 *     one block per SM (mrt_wgmma_segment_of).
 *
 * Launch contract (runtime/gemm.c):
 *   grid   (n_tiles * m_tiles * splits, 1, 1), n_tiles = prob_n / (16*TNB), m_tiles =
 *          ceil(prob_m / (16*TMB)), splits >= 1 K shares per tile (gridDim.x / tiles)
 *   block  (THREADS, 1, 1); dynamic shared memory >= marlin_w4a16_wgmma_smem_bytes<...>()
 *   prob_n % (16*TNB) == 0, prob_k % (16*TKB) == 0, prob_k % (16*GROUP_BLOCKS) == 0
 *   locks  with splits > 1: n_tiles * m_tiles int32, zero on entry, zero again on exit
 *   partials with splits > 1: n_tiles * m_tiles * splits * 16*TMB * 16*TNB floats, any
 *          content; concurrent launches must not share locks or partials
 *   flags  ignored; a launch may ask for programmatic dependent launch: the kernel waits
 *          (griddepcontrol.wait) before it reads or writes anything
 */

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MRT_HAVE_WGMMA 1
#else
#define MRT_HAVE_WGMMA 0
#endif

#if MRT_HAVE_WGMMA
/* d (64 x 32, fp32, the wgmma accumulator layout) += a (64 x 16 fp16 from registers) x
 * the 32-wide K-major tile of shared memory described by desc. */
__device__ __forceinline__ void mrt_wgmma_rs(float (&d)[16], const mrt_u32 (&a)[4], unsigned long long desc)
{
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
        "}, {%16, %17, %18, %19}, %20, 1, 1, 1, 0;\n"
        :
          "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc)
        : "memory");
}

/* d (64 x 64, fp32, the wgmma accumulator layout) += a (64 x 16 fp16 from registers) x
 * the 64-wide K-major tile of shared memory described by desc. */
__device__ __forceinline__ void mrt_wgmma_rs(float (&d)[32], const mrt_u32 (&a)[4], unsigned long long desc)
{
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, {%32, %33, %34, %35}, %36, 1, 1, 1, 0;\n"
        :
          "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc)
        : "memory");
}

/* d (64 x 128, fp32, the wgmma accumulator layout) += a (64 x 16 fp16 from registers) x
 * the 128-wide K-major tile of shared memory described by desc. */
__device__ __forceinline__ void mrt_wgmma_rs(float (&d)[64], const mrt_u32 (&a)[4], unsigned long long desc)
{
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, {%64, %65, %66, %67}, %68, 1, 1, 1, 0;\n"
        :
          "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc)
        : "memory");
}

/* d (64 x 256, fp32, the wgmma accumulator layout) += a (64 x 16 fp16 from registers) x
 * the 256-wide K-major tile of shared memory described by desc. */
__device__ __forceinline__ void mrt_wgmma_rs(float (&d)[128], const mrt_u32 (&a)[4], unsigned long long desc)
{
    asm volatile("wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
        "}, {%128, %129, %130, %131}, %132, 1, 1, 1, 0;\n"
        :
          "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
          "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
          "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
          "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc)
        : "memory");
}

__device__ __forceinline__ void mrt_wgmma_fence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void mrt_wgmma_commit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

/* Wait until at most PENDING committed wgmma groups of this warpgroup are still running. */
template <int PENDING> __device__ __forceinline__ void mrt_wgmma_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(PENDING) : "memory");
}

/* Keep a register operand of an issued wgmma live up to this point. wgmma reads its A
 * registers asynchronously, until the wait that covers it; without a later use the register
 * allocator may hand them to other values while the wgmma still reads them (seen: results
 * that change from run to run). Placed after that wait, this empty asm pins them. */
__device__ __forceinline__ void mrt_keep_alive(const mrt_u32 (&regs)[4])
{
    asm volatile("" ::"r"(regs[0]), "r"(regs[1]), "r"(regs[2]), "r"(regs[3]) : "memory");
}

/* A compiler-only barrier on the accumulators: they stay in their registers, untouched by
 * anything the compiler would otherwise schedule or allocate between the wgmmas that chain
 * on them while one is still in flight (without it, the last accumulator registers came out
 * wrong now and then). No instruction is emitted. */
template <int N> __device__ __forceinline__ void mrt_fence_acc(float (&d)[N])
{
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "+f"(d[i])::"memory");
}

/* Make the shared-memory writes of cp.async (generic proxy) visible to wgmma (async proxy). */
__device__ __forceinline__ void mrt_fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
#endif

/* wgmma shared-memory descriptor of a K-major tile in the 128-byte swizzle: start address
 * (16-byte units, bits 0-13), leading offset (unused by this layout; 1), stride offset
 * between 8-row groups (1024 bytes, bits 32-45), swizzle mode 1 = 128 bytes (bits 62-63).
 * The atom must be 1024-byte aligned; a start inside it (the k16 steps, 32 bytes apart)
 * is fine, the swizzle being a function of the address bits. */
__device__ __forceinline__ unsigned long long mrt_wgmma_desc(mrt_u32 addr)
{
    return (unsigned long long)((addr & 0x3ffffu) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) |
           (1ull << 62);
}

/*
 * Bytes of dynamic shared memory: 1024 for aligning the swizzled tiles, plus the largest of
 *   pipeline  STAGES * (A tile + B tile + scale rows)
 *             A tile      TKB/4 atoms x 16*TMB rows x 128 bytes
 *             B tile      TKB rows x TNB/4 blocks x 512 bytes
 *             scale rows  (TKB/GROUP_BLOCKS or 1) x 16*TNB halves, none per channel
 *   output    16*TMB rows x (16*TNB + 8) halves
 */
template <int THREADS, int TMB, int TNB, int TKB, int STAGES, int GROUP_BLOCKS>
__device__ constexpr int marlin_w4a16_wgmma_smem_bytes()
{
    const int scale_rows = GROUP_BLOCKS == -1 ? 0 : (GROUP_BLOCKS < TKB ? TKB / GROUP_BLOCKS : 1);
    const int pipeline = STAGES * ((TKB / 4) * 16 * TMB * 128 + TKB * (TNB / 4) * 512 + scale_rows * 32 * TNB);
    const int output = 16 * TMB * (16 * TNB + 8) * 2;
    return 1024 + (pipeline > output ? pipeline : output);
}

/* What one block of marlin_w4a16_wgmma_sk sums of one output tile: K steps ks0 .. ks0 +
 * k_steps - 1 (of 16*TKB) of tile `tile` = n_tile * m_tiles + m_tile. A tile summed by
 * parts > 1 blocks is shared: this block is share `part` (shares in K order); each share
 * stores its sums in a slot of the partials (mrt_wgmma_slot) and the last to arrive on
 * counter `lock` adds them up and writes C. */
struct mrt_wgmma_segment {
    int tile, m_tiles;
    int ks0, k_steps;
    int parts, part;
    int lock;
    int slot0, slot_base;
};

/* Slot of share p of a shared tile: the first share's block may have opened its range
 * before the tile (slot0 is then its second slot); every later share's block opened its
 * range inside the tile (its first slot, 2 * block). */
__device__ __forceinline__ int mrt_wgmma_slot(const mrt_wgmma_segment &seg, int p)
{
    return p == 0 ? seg.slot0 : seg.slot_base + 2 * p;
}

/* First K step of tail block b: floor(b * W / blocks), W = q*blocks + r, in 32-bit
 * arithmetic (exact while blocks^2 fits; the kernel checks blocks). A 64-bit division would
 * be a subroutine call, and a call where the accumulators are live spills them. */
__device__ __forceinline__ int mrt_tail_start(int b, int q, int r, int blocks)
{
    return q * b + r * b / blocks;
}

/* The tail block whose steps hold step x: the last b with mrt_tail_start(b) <= x. */
__device__ __forceinline__ int mrt_tail_block(int x, int q, int r, int blocks)
{
    int b = mrt_imin((int)((float)x * (float)blocks / ((float)q * (float)blocks + (float)r)), blocks - 1);
    while (b > 0 && mrt_tail_start(b, q, r, blocks) > x)
        b--;
    while (b + 1 < blocks && mrt_tail_start(b + 1, q, r, blocks) <= x)
        b++;
    return b;
}

/*
 * Segment `index` (0 or 1) of this block of a stream-K launch (marlin_w4a16_wgmma_sk),
 * false when it has none. The first gridDim.x - stream_k blocks take one whole tile each
 * (tile = block), in full waves. The tiles left over, fewer than a wave, are cut into the
 * stream_k remaining blocks by K step: the tail's W = tail tiles x K steps are numbered tile
 * by tile, K fastest, and tail block b takes [b*W/stream_k, (b+1)*W/stream_k), so every SM
 * gets an equal part of the last wave instead of some getting a whole tile and the rest
 * nothing. With fewer tail tiles than blocks a range is shorter than a tile: it lies in one
 * tile, or runs from the end of one into the start of the next (two segments). A block's
 * first shared segment stores to slot 2*b, its second to 2*b + 1; tail tile i's counter is
 * lock i.
 */
template <int TOK, int FEAT, int TKB>
__device__ __forceinline__ bool mrt_wgmma_segment_of(int index, int prob_m, int prob_n, int prob_k, int stream_k,
                                                     mrt_wgmma_segment &seg)
{
    const int m_tiles = (prob_m + TOK - 1) / TOK;
    const int tiles = m_tiles * (prob_n / FEAT);
    const int all_steps = prob_k / (16 * TKB);
    const int block = (int)blockIdx.x;
    const int whole = (int)gridDim.x - stream_k;
    seg.m_tiles = m_tiles;
    if (block < whole) {
        if (index > 0)
            return false;
        seg.tile = block;
        seg.ks0 = 0;
        seg.k_steps = all_steps;
        seg.parts = 1;
        seg.part = seg.lock = seg.slot0 = seg.slot_base = 0;
        return true;
    }
    const int tail_steps = (tiles - whole) * all_steps;
    const int q = tail_steps / stream_k, r = tail_steps % stream_k;
    const int b = block - whole;
    const int x0 = mrt_tail_start(b, q, r, stream_k), x1 = mrt_tail_start(b + 1, q, r, stream_k);
    const int t = x0 / all_steps + index; /* tail tile of this segment */
    const int t_begin = t * all_steps, t_end = t_begin + all_steps;
    if (t_begin >= x1)
        return false;
    const int first = mrt_tail_block(t_begin, q, r, stream_k);
    const int last = mrt_tail_block(t_end - 1, q, r, stream_k);
    seg.tile = whole + t;
    seg.ks0 = mrt_imax(x0, t_begin) - t_begin;
    seg.k_steps = mrt_imin(x1, t_end) - t_begin - seg.ks0;
    seg.parts = last - first + 1;
    seg.part = b - first;
    seg.lock = t;
    seg.slot0 = 2 * first + (mrt_tail_start(first, q, r, stream_k) < t_begin ? 1 : 0);
    seg.slot_base = 2 * first;
    return true;
}

/* The shares whose slots the last of `parts` shares (this block share `part`) reads back
 * into acc, [*first, *end): with two, where `pairs` allows, only the other one, added to the
 * block's own sums (a + b == b + a: the same bits whoever came last); else all of them, in
 * share order, onto zeroed sums. */
template <int WG_M, int N>
__device__ __forceinline__ void mrt_shares_to_read(bool pairs, int part, int parts, float (&acc)[WG_M][N], int &first,
                                                   int &end)
{
    const bool pair = pairs && parts == 2;
    if (!pair)
#pragma unroll
        for (int t = 0; t < WG_M; t++)
#pragma unroll
            for (int i = 0; i < N; i++)
                acc[t][i] = 0.0f;
    first = pair ? 1 - part : 0;
    end = pair ? 2 - part : parts;
}

/* What marlin_w4a16_wgmma_tile is told of its segment in a stream-K launch. */
struct mrt_wgmma_sk_args {
    int stream_k, index;     /* the launch's stream-K blocks; this block's segment index */
    int m0, n0, ks0, k_steps;
    bool shared;             /* more than one block sums the tile */
};

#if MRT_HAVE_WGMMA
/*
 * One block of marlin_w4a16_wgmma (see its template parameters): the first RUN of the tile's
 * TOK = 16*TMB token rows, RUN = TOK, TOK/2 or TOK/4 (wgmma n = RUN). A chunk of M that
 * holds at most half or a quarter of a tile's rows computes only those: the tensor cores
 * spend their time on rows that exist (M = 64 on 128-row tiles runs m64n64 wgmmas, not
 * m64n128 ones half of zeros). Such a chunk's A tiles hold RUN rows, and its ring is as
 * deep as the full tile's ring's shared memory allows (at most 8 slots): the wgmmas being
 * short, what sets the pace is the bytes in flight. m_tiles, splits: the launch's (see
 * the kernel).
 */
template <int THREADS, int TMB, int TNB, int TKB, int CFG_STAGES, int GROUP_BLOCKS, int RUN, bool SK = false>
__device__ __forceinline__ void marlin_w4a16_wgmma_tile(const int4 *__restrict__ A, const int4 *__restrict__ B,
                                                        int4 *__restrict__ C, const int4 *__restrict__ s,
                                                        int prob_m, int prob_n, int prob_k, int *locks,
                                                        float4 *partials, int m_tiles, int splits,
                                                        const mrt_wgmma_sk_args &sk = {})
{
    constexpr int WGS = THREADS / 128;
    constexpr int TOK = 16 * TMB;
    constexpr int FEAT = 16 * TNB;
    constexpr int WG_M = FEAT / (64 * WGS);
    constexpr bool GROUPED = GROUP_BLOCKS != -1;
    static_assert(RUN == TOK || RUN == TOK / 2 || RUN == TOK / 4, "RUN is TOK, TOK/2 or TOK/4");
    constexpr int BLOCKS64 = TNB / 4;                    /* packed 64-column blocks per tile */
    constexpr int ATOMS = TKB / 4;                       /* 64-deep swizzle atoms per stage */
    constexpr int A_STAGE = ATOMS * RUN * 128;           /* bytes, a multiple of 1024 */
    constexpr int B_STAGE = TKB * BLOCKS64 * 512;        /* bytes */
    constexpr int S_ROWS = !GROUPED ? 0 : (GROUP_BLOCKS < TKB ? TKB / GROUP_BLOCKS : 1);
    constexpr int S_STAGE = S_ROWS * FEAT * 2;           /* bytes */
    /* A narrow chunk's smaller A tiles make room for a deeper ring in the same shared
     * memory (the full tile's ring), up to 8 slots: more bytes in flight per SM. */
    constexpr int RING_BYTES = CFG_STAGES * (ATOMS * TOK * 128 + B_STAGE + S_STAGE);
    constexpr int DEEPEST = RING_BYTES / (A_STAGE + B_STAGE + S_STAGE);
    constexpr int STAGES = RUN == TOK ? CFG_STAGES : (DEEPEST < 8 ? DEEPEST : 8);
    static_assert(STAGES >= CFG_STAGES && STAGES * (A_STAGE + B_STAGE + S_STAGE) <= RING_BYTES, "the ring fits");
    constexpr int C_ROW = FEAT + 8;                      /* halves per staged output row */

    const int tid = threadIdx.x;
    const int lane = tid % 32;
    const int warp = (tid / 32) % 4;
    const int group = tid / 128;
    /* Block = (n_tile * splits + split) * m_tiles + m_tile: the M tiles of one weight tile
     * are adjacent, so they run together and share it through L2. A stream-K launch's
     * segment comes from the kernel (sk). */
    int m0, n0, ks0, k_steps, tile = 0, split = 0;
    if constexpr (SK) {
        m0 = sk.m0;
        n0 = sk.n0;
        ks0 = sk.ks0;
        k_steps = sk.k_steps;
    } else {
        const int m_tile = (int)blockIdx.x % m_tiles;
        split = ((int)blockIdx.x / m_tiles) % splits;
        const int n_tile = (int)blockIdx.x / m_tiles / splits;
        tile = n_tile * m_tiles + m_tile;
        m0 = m_tile * TOK;
        n0 = n_tile * FEAT;
        const int all_steps = prob_k / (16 * TKB);
        ks0 = (int)((long long)all_steps * split / splits);
        k_steps = (int)((long long)all_steps * (split + 1) / splits) - ks0;
    }

    extern __shared__ int4 smem_raw[];
    const mrt_u32 raw_addr = mrt_smem_addr(smem_raw);
    const mrt_u32 pad = ((raw_addr + 1023u) & ~1023u) - raw_addr;
    unsigned char *const base = reinterpret_cast<unsigned char *>(smem_raw) + pad;
    const mrt_u32 sh_a_addr = raw_addr + pad;
    const mrt_u32 sh_b_addr = sh_a_addr + STAGES * A_STAGE;
    const mrt_u32 sh_s_addr = sh_b_addr + STAGES * B_STAGE;
    const mrt_u32 *const sh_b = reinterpret_cast<const mrt_u32 *>(base + STAGES * A_STAGE);
    const mrt_u32 *const sh_s = reinterpret_cast<const mrt_u32 *>(base + STAGES * (A_STAGE + B_STAGE));

    /* Global strides in int4: a row of A is K halves, a packed row of B (16 K) N*16 nibbles,
     * a row of scales or of C N halves. */
    const long long a_gl_row = prob_k / 8;
    const long long b_gl_row = prob_n / 2;
    const int s_gl_row = prob_n / 8;
    const int c_gl_row = prob_n / 8;

    /* Copy part `part` (of PARTS) of step ks (K rows 16*TKB*ks ..) into ring slot `slot`;
     * the last part commits the step's copies as one group. The parts let a step's copies be
     * issued a few at a time between the wgmmas of the step before, while those run, rather
     * than all at once at the stage barrier where the tensor cores would wait for them. Part
     * is a compile-time constant wherever this is called (unrolled loops).
     *
     * The addresses are worked out once per thread: A copy i of a step is row a_row + i *
     * A_RPI of the chunk at int4 a_c of the step's K (rows past M are zero-filled, nothing
     * read); B copy i is packed row tid / (BLOCKS64 * 32) + i * B_RPI of the step at int4
     * tid % (BLOCKS64 * 32) of the tile's columns. A step adds its K offset, a copy a multiple of a row stride: a few integer
     * instructions per copy, where working each one out from its index took a dozen, a third
     * of the main loop's instructions (v10, docs/performance.md). Offsets are 32-bit: every
     * int4 index of A and B fits (launch contract). */
    constexpr int PARTS = TKB;
    constexpr int A_CHUNKS = RUN * 2 * TKB;
    constexpr int A_ITERS = (A_CHUNKS + THREADS - 1) / THREADS;
    constexpr int A_RPI = THREADS / (2 * TKB);
    constexpr int B_CHUNKS = TKB * BLOCKS64 * 32;
    constexpr int B_RPI = THREADS / (BLOCKS64 * 32);
    static_assert(THREADS % (2 * TKB) == 0 && THREADS % (BLOCKS64 * 32) == 0, "copy rows tile the block");
    static_assert(A_RPI % 8 == 0 || A_RPI % 8 == 4, "a copy's row swizzle is its first row's, or that xor 4");
    const int a_row = tid / (2 * TKB), a_c = tid % (2 * TKB);
    const int a_rows_left = prob_m - m0 - a_row;
    const int a_istride = A_RPI * (int)a_gl_row;
    const int b_istride = B_RPI * (int)b_gl_row;
    const int4 *const a_src = A + (long long)(m0 + a_row) * a_gl_row + ks0 * 2 * TKB + a_c;
    const int4 *const b_src = B + (long long)(ks0 * TKB + tid / (BLOCKS64 * 32)) * b_gl_row + (n0 / 64) * 32 +
                              tid % (BLOCKS64 * 32);
    /* The 128-byte swizzle: int4 c of row r of an atom sits at 16 * (c ^ (r % 8)). The ring
     * and atoms are 1024-byte aligned, so bits 4-6 of this address are the swizzle alone. */
    const mrt_u32 a_dst = sh_a_addr + (a_c / 8) * (RUN * 128) + a_row * 128 + (((a_c % 8) ^ (a_row % 8)) << 4);
    /* What the parts of one step's copy share, worked out once per step. */
    struct copy_step {
        bool live; /* a step of this block's range */
        int ks, slot;
        const int4 *a, *b;
        mrt_u32 a_dst, b_dst;
    };
    auto step_of = [&](int ks) {
        copy_step st;
        st.live = ks < k_steps;
        st.ks = ks;
        st.slot = ks % STAGES;
        st.a = a_src + ks * 2 * TKB;
        st.b = b_src + ks * TKB * (int)b_gl_row;
        st.a_dst = a_dst + st.slot * A_STAGE;
        st.b_dst = sh_b_addr + st.slot * B_STAGE + tid * 16;
        return st;
    };
    auto fetch = [&](const copy_step &st, int part) {
        if (st.live) {
            const int ks = st.ks, slot = st.slot;
#pragma unroll
            for (int i = 0; i < A_ITERS; i++) {
                if (i % PARTS == part && (A_CHUNKS % THREADS == 0 || tid + i * THREADS < A_CHUNKS)) {
                    const int r = i * A_RPI;
                    mrt_cp_async16((st.a_dst + r * 128) ^ ((r % 8) << 4), st.a + i * a_istride,
                                   r < a_rows_left ? 16 : 0);
                }
            }
#pragma unroll
            for (int i = 0; i < (B_CHUNKS + THREADS - 1) / THREADS; i++) {
                if ((A_ITERS + i) % PARTS == part && (B_CHUNKS % THREADS == 0 || tid + i * THREADS < B_CHUNKS))
                    mrt_cp_async16(st.b_dst + i * THREADS * 16, st.b + i * b_istride, 16);
            }
            if (GROUPED) {
                /* A straight-line copy: a loop here, inside the span where a wgmma is in
                 * flight, makes ptxas serialize the wgmmas (C7515). */
                constexpr int S_CHUNKS = S_ROWS * FEAT / 8;
                static_assert(S_CHUNKS <= THREADS, "one scale chunk per thread at most");
                const int g0 = (ks0 + ks) * TKB / (GROUPED ? GROUP_BLOCKS : 1);
                if (part == PARTS - 1 && tid < S_CHUNKS) {
                    const int r = tid / (FEAT / 8);
                    const int c = tid % (FEAT / 8);
                    const int4 *src = s + (long long)(g0 + r) * s_gl_row + n0 / 8 + c;
                    mrt_cp_async16(sh_s_addr + slot * S_STAGE + tid * 16, src, 16);
                }
            }
        }
        if (part == PARTS - 1)
            mrt_cp_async_commit();
    };

    /* This thread's weight word and scale word of m64 tile t: sub-tile j of the block. */
    int word_off[WG_M], scale_off[WG_M];
#pragma unroll
    for (int t = 0; t < WG_M; t++) {
        const int j = group * 4 * WG_M + warp * WG_M + t;
        word_off[t] = ((j / 4) * 32 + lane) * 4 + j % 4;
        /* Grouped scale order: the word 32*(j/4) + 4*(lane/4) + j%4 of a row holds the
         * scales of the lane's rows r = lane/4 (low half) and r + 8 (high half). */
        scale_off[t] = (j / 4) * 32 + 4 * (lane / 4) + j % 4;
    }

    float acc[WG_M][RUN / 2];
#pragma unroll
    for (int t = 0; t < WG_M; t++)
#pragma unroll
        for (int i = 0; i < RUN / 2; i++)
            acc[t][i] = 0.0f;

#pragma unroll
    for (int i = 0; i < STAGES - 2; i++)
#pragma unroll
        for (int part = 0; part < PARTS; part++)
            fetch(step_of(i), part);

    /* The wgmmas of KG consecutive 16-deep sub-steps form one commit group (a "unit"): a
     * group per sub-step would leave the tensor cores waiting on the group's fixed latency.
     * Full width takes two sub-steps per group (one: 1-4% slower at M = 512, v10); a narrow
     * chunk KG = TOK / RUN, the same tensor work per group as one full-width sub-step (twice
     * that: 7-12% slower at M = 64, v10); at most half a stage. Two register sets: the unit
     * in flight reads one while the next unit is dequantized into the other. */
    constexpr int KG_WANT = RUN == TOK ? 2 : TOK / RUN;
    constexpr int KG = KG_WANT < TKB / 2 ? KG_WANT : TKB / 2;
    constexpr int UNITS = TKB / KG;
    /* The sets alternate by unit parity within a stage; an even count of units per stage
     * keeps them alternating from one stage to the next (an odd one would refill the set
     * the last unit of the stage before may still be reading). */
    static_assert(TKB % KG == 0 && UNITS % 2 == 0, "an even count of whole units per stage");
    mrt_u32 frag[2][KG][WG_M][4] = {};
    for (int ks = 0; ks < k_steps; ks++) {
        const int slot = ks % STAGES;
        const copy_step next = step_of(ks + STAGES - 2); /* copied in parts between this step's units */
        mrt_cp_async_wait<STAGES - 3>();
        mrt_fence_proxy_async();
        __syncthreads();

        const mrt_u32 *const b_words = sh_b + slot * (B_STAGE / 4);
        const mrt_u32 *const s_words = sh_s + slot * (S_STAGE / 4);
        /* The stage's scale words of this thread, one per group row and m64 tile, read once
         * (not once per unit: the same words). */
        mrt_u32 s_stage[S_ROWS > 0 ? S_ROWS : 1][WG_M];
#pragma unroll
        for (int r = 0; r < S_ROWS; r++)
#pragma unroll
            for (int t = 0; t < WG_M; t++)
                s_stage[r][t] = s_words[r * (FEAT / 2) + scale_off[t]];
        /* With two m64 tiles a thread's words of one sub-step are adjacent (sub-tiles j and
         * j + 1, j even: word_off[1] = word_off[0] + 1, 8-byte aligned): one 64-bit load. */
        auto load_words = [&](int kk, mrt_u32 (&w)[WG_M]) {
            const mrt_u32 *const row = b_words + kk * (BLOCKS64 * 128);
            if constexpr (WG_M == 2) {
                const uint2 v = *reinterpret_cast<const uint2 *>(row + word_off[0]);
                w[0] = v.x;
                w[1] = v.y;
            } else {
#pragma unroll
                for (int t = 0; t < WG_M; t++)
                    w[t] = row[word_off[t]];
            }
        };
        /* The stage's A tile as a wgmma descriptor; a k16 sub-step adds its offset to the
         * start address field (which the shared-memory window keeps from carrying over). */
        const unsigned long long desc_stage = mrt_wgmma_desc(sh_a_addr + slot * A_STAGE);
        /* Unit u's packed weight words of this thread (read ahead, so the shared-memory
         * latency hides behind the wgmma issue), then dequantized and scaled (the scale word
         * of the sub-step's group row, from s_stage) into frag[u % 2]. */
        mrt_u32 raw[KG][WG_M];
        auto load_unit = [&](int u) {
#pragma unroll
            for (int q = 0; q < KG; q++)
                load_words(u * KG + q, raw[q]);
        };
        auto dequant_unit = [&](int u) {
#pragma unroll
            for (int q = 0; q < KG; q++)
#pragma unroll
                for (int t = 0; t < WG_M; t++) {
                    mrt_u32 lo[2], hi[2];
                    mrt_dequant(raw[q][t], lo);
                    mrt_dequant(raw[q][t] >> 8, hi);
                    if (GROUPED) {
                        const int kk = u * KG + q;
                        const mrt_u32 sw = s_stage[GROUP_BLOCKS < TKB ? kk / (GROUPED ? GROUP_BLOCKS : 1) : 0][t];
                        lo[0] = mrt_hmul2_by_half<false>(lo[0], sw);
                        lo[1] = mrt_hmul2_by_half<false>(lo[1], sw);
                        hi[0] = mrt_hmul2_by_half<true>(hi[0], sw);
                        hi[1] = mrt_hmul2_by_half<true>(hi[1], sw);
                    }
                    frag[u % 2][q][t][0] = lo[0];
                    frag[u % 2][q][t][1] = hi[0];
                    frag[u % 2][q][t][2] = lo[1];
                    frag[u % 2][q][t][3] = hi[1];
                }
        };
        load_unit(0);
        dequant_unit(0);
#pragma unroll
        for (int u = 0; u < UNITS; u++) {
            if (u + 1 < UNITS)
                load_unit(u + 1);
#pragma unroll
            for (int t = 0; t < WG_M; t++)
                mrt_fence_acc(acc[t]);
            mrt_wgmma_fence();
#pragma unroll
            for (int q = 0; q < KG; q++) {
                const int kk = u * KG + q;
                const unsigned long long desc = desc_stage + (((kk / 4) * (RUN * 128) + (kk % 4) * 32) >> 4);
#pragma unroll
                for (int t = 0; t < WG_M; t++)
                    mrt_wgmma_rs(acc[t], frag[u % 2][q][t], desc);
            }
            mrt_wgmma_commit();
#pragma unroll
            for (int q = 0; q < KG; q++)
                fetch(next, u * KG + q);
            /* One group stays in flight: wait for the previous one (which read the other
             * register set), and only then refill that set with the next unit's weights
             * while this group runs. The previous set is kept alive up to the wait, so no
             * other value is given its registers while a wgmma may still read them. */
            mrt_wgmma_wait<1>();
#pragma unroll
            for (int t = 0; t < WG_M; t++)
                mrt_fence_acc(acc[t]);
#pragma unroll
            for (int q = 0; q < KG; q++)
#pragma unroll
                for (int t = 0; t < WG_M; t++)
                    mrt_keep_alive(frag[(u + 1) % 2][q][t]);
            if (u + 1 < UNITS)
                dequant_unit(u + 1);
        }
    }
    /* The last group, before its accumulators and its register operand are touched. */
    mrt_wgmma_wait<0>();
#pragma unroll
    for (int t = 0; t < WG_M; t++)
        mrt_fence_acc(acc[t]);
#pragma unroll
    for (int q = 0; q < KG; q++)
#pragma unroll
        for (int t = 0; t < WG_M; t++) {
            mrt_keep_alive(frag[0][q][t]);
            mrt_keep_alive(frag[1][q][t]);
        }

    mrt_cp_async_wait<0>();
    __syncthreads();

    /* K split: every share stores its fp32 sums in its own slot of the tile (thread-major
     * float4s, the accumulator order); the last share to arrive adds the slots in share
     * order, its own included (read back: the accumulators need not stay live across the
     * hand-over), so the result does not depend on who came last; of two shares it adds the
     * other's slot to its own sums (a + b == b + a), full-width chunks only
     * (mrt_shares_to_read). A stream-K tile's shares do the same in their blocks' slots, the segment worked out again here (from an index
     * the compiler cannot see through) rather than kept in registers through the main loop,
     * which has none to spare. */
    if constexpr (SK) {
        if (sk.shared) {
            mrt_wgmma_segment seg;
            mrt_wgmma_segment_of<TOK, FEAT, TKB>(mrt_opaque(sk.index), prob_m, prob_n, prob_k, sk.stream_k, seg);
            constexpr int SLOT = WG_M * TOK / 8 * THREADS; /* float4 per slot: TOK rows whatever RUN */
            float4 *const mine = partials + (long long)mrt_wgmma_slot(seg, seg.part) * SLOT + tid;
#pragma unroll
            for (int t = 0; t < WG_M; t++)
#pragma unroll
                for (int i = 0; i < RUN / 8; i++)
                    mrt_store_cg(mine + (t * (RUN / 8) + i) * THREADS,
                                 make_float4(acc[t][4 * i], acc[t][4 * i + 1], acc[t][4 * i + 2], acc[t][4 * i + 3]));
            if (!mrt_arrive_last(locks + seg.lock, seg.parts))
                return;
            int sh0, sh1;
            mrt_shares_to_read(RUN == TOK, seg.part, seg.parts, acc, sh0, sh1);
            for (int sh = sh0; sh < sh1; sh++) {
                const float4 *const slot = partials + (long long)mrt_wgmma_slot(seg, sh) * SLOT + tid;
#pragma unroll
                for (int t = 0; t < WG_M; t++)
#pragma unroll
                    for (int i = 0; i < RUN / 8; i++) {
                        const float4 v = mrt_load_cg(slot + (t * (RUN / 8) + i) * THREADS);
                        acc[t][4 * i] += v.x;
                        acc[t][4 * i + 1] += v.y;
                        acc[t][4 * i + 2] += v.z;
                        acc[t][4 * i + 3] += v.w;
                    }
            }
        }
    } else if (splits > 1) {
        /* A tile's slots are spaced for TOK rows whatever this chunk's RUN: the chunks of one
         * launch may run different widths, and their regions must not overlap. */
        constexpr int SLOT = WG_M * RUN / 8 * THREADS;        /* float4 per share */
        constexpr int TILE_SLOTS = WG_M * TOK / 8 * THREADS;  /* float4 per share of a TOK-row tile */
        float4 *const slots = partials + (long long)tile * splits * TILE_SLOTS + tid;
#pragma unroll
        for (int t = 0; t < WG_M; t++)
#pragma unroll
            for (int i = 0; i < RUN / 8; i++)
                mrt_store_cg(slots + (long long)split * SLOT + (t * (RUN / 8) + i) * THREADS,
                             make_float4(acc[t][4 * i], acc[t][4 * i + 1], acc[t][4 * i + 2], acc[t][4 * i + 3]));
        if (!mrt_arrive_last(locks + tile, splits))
            return;
        /* Share by share, every float4 of the slot at once: the loads of one share are
         * independent, so they overlap in flight instead of paying an L2 round trip each.
         * The sums still run in share order, 0 + s0 + s1 + ..., whoever arrived last (of
         * two shares, own + other: mrt_shares_to_read). */
        int sh0, sh1;
        mrt_shares_to_read(RUN == TOK, split, splits, acc, sh0, sh1);
        for (int sh = sh0; sh < sh1; sh++) {
#pragma unroll
            for (int t = 0; t < WG_M; t++)
#pragma unroll
                for (int i = 0; i < RUN / 8; i++) {
                    const float4 v = mrt_load_cg(slots + (long long)sh * SLOT + (t * (RUN / 8) + i) * THREADS);
                    acc[t][4 * i] += v.x;
                    acc[t][4 * i + 1] += v.y;
                    acc[t][4 * i + 2] += v.z;
                    acc[t][4 * i + 3] += v.w;
                }
        }
    }
    /* Stage C (tokens x features, fp16) in shared memory. Accumulator element 4*i + 2*h + e
     * of m64 tile t is feature 16*j + lane/4 + 8*h of the block (j the tile's sub-tile) and
     * token 8*i + 2*(lane%4) + e. Per-channel scales multiply the fp32 sums here; in the
     * Marlin per-channel order the scale of column n is half 8*(4*(n/32) + (n%8)/2) +
     * 2*((n%32)/8) + n%2 of the row. */
    unsigned short *const stage = reinterpret_cast<unsigned short *>(base);
    const unsigned short *const s_half = reinterpret_cast<const unsigned short *>(s);
#pragma unroll
    for (int t = 0; t < WG_M; t++) {
        const int j = group * 4 * WG_M + warp * WG_M + t;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int f = 16 * j + lane / 4 + 8 * h;
            float scale = 1.0f;
            if (!GROUPED) {
                const int n = n0 + f;
                const unsigned short bits = s_half[8 * (4 * (n / 32) + (n % 8) / 2) + 2 * ((n % 32) / 8) + n % 2];
                asm("{ .reg .b16 x; mov.b16 x, %1; cvt.f32.f16 %0, x; }\n" : "=f"(scale) : "h"(bits));
            }
#pragma unroll
            for (int i = 0; i < RUN / 8; i++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int token = 8 * i + 2 * (lane % 4) + e;
                    unsigned short bits;
                    const float v = acc[t][4 * i + 2 * h + e] * scale;
                    asm("cvt.rn.f16.f32 %0, %1;\n" : "=h"(bits) : "f"(v));
                    stage[token * C_ROW + f] = bits;
                }
        }
    }
    __syncthreads();
    const int rows = mrt_imin(RUN, prob_m - m0);
    constexpr int C_CHUNKS = RUN * FEAT / 8;
    static_assert(C_CHUNKS % THREADS == 0, "whole rounds of output chunks");
    int4 *const c_tile = C + (long long)m0 * c_gl_row + n0 / 8;
    const int4 *const staged = reinterpret_cast<const int4 *>(base);
#pragma unroll
    for (int i = 0; i < C_CHUNKS / THREADS; i++) {
        const int idx = tid + i * THREADS;
        const int row = idx / (FEAT / 8);
        const int c = idx % (FEAT / 8);
        if (row < rows)
            c_tile[(long long)row * c_gl_row + c] = staged[row * (C_ROW / 8) + c];
    }
}
#endif

/* The template parameters both wgmma kernels accept (each check says what fails). */
template <int THREADS, int TMB, int TNB, int TKB, int STAGES, int GROUP_BLOCKS>
__device__ constexpr bool mrt_wgmma_config_ok()
{
    constexpr int WGS = THREADS / 128;
    constexpr int TOK = 16 * TMB;
    constexpr int FEAT = 16 * TNB;
    constexpr int WG_M = FEAT / (64 * WGS);
    static_assert(THREADS == 128 || THREADS == 256, "THREADS must be 128 or 256");
    static_assert(TMB == 8 || TMB == 16, "THREAD_M_BLOCKS must be 8 or 16");
    static_assert(WG_M >= 1 && WG_M * 64 * WGS == FEAT && WG_M * TOK <= 128 * WGS,
                  "each warpgroup takes 64 or 128 features; at most 64 accumulators per thread with 128 "
                  "threads, 128 with 256");
    static_assert(TKB == 4 || TKB == 8, "THREAD_K_BLOCKS must be 4 or 8");
    static_assert(STAGES >= 3 && STAGES <= 8, "STAGES must be 3..8");
    static_assert(GROUP_BLOCKS == -1 || GROUP_BLOCKS == 2 || GROUP_BLOCKS == 4 || GROUP_BLOCKS == 8,
                  "GROUP_BLOCKS must be -1, 2, 4 or 8");
    return true;
}

/*
 * Template parameters (the fields of mrt_config; thread_m_blocks 8 or 16 selects this
 * kernel):
 *   THREADS   128 or 256 (one or two warpgroups)
 *   TMB       16-row blocks of A (tokens) per block tile: 8 or 16 (wgmma n128 or n256)
 *   TNB       16-column blocks of C per block tile: 4*THREADS/32 / ... see WG_M below
 *   TKB       16-deep blocks per stage: 4 or 8
 *   STAGES    3..8
 *   GROUP_BLOCKS as in marlin_w4a16
 */
template <int THREADS, int TMB, int TNB, int TKB, int STAGES, int GROUP_BLOCKS>
__global__ void __launch_bounds__(THREADS, 1)
    marlin_w4a16_wgmma(const int4 *__restrict__ A, const int4 *__restrict__ B, int4 *__restrict__ C,
                       const int4 *__restrict__ s, int prob_m, int prob_n, int prob_k, int *locks,
                       float4 *partials, int flags)
{
    static_assert(mrt_wgmma_config_ok<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS>(), "see the checks above");
#if !MRT_HAVE_WGMMA
    asm volatile("trap;");
#else
    constexpr int WGS = THREADS / 128;
    constexpr int TOK = 16 * TMB;
    constexpr int FEAT = 16 * TNB;
    constexpr int WG_M = FEAT / (64 * WGS);
    constexpr bool GROUPED = GROUP_BLOCKS != -1;
    constexpr int SMEM_BYTES = marlin_w4a16_wgmma_smem_bytes<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS>();

    const int m_tiles = (prob_m + TOK - 1) / TOK;
    const int n_tiles = prob_n / FEAT;
    {
        mrt_u32 dynamic_smem;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < (mrt_u32)SMEM_BYTES || prob_m < 1 || prob_n % FEAT != 0 || prob_k % (16 * TKB) != 0 ||
            (GROUPED && prob_k % (16 * GROUP_BLOCKS) != 0))
            asm volatile("trap;");
    }
    /* The launch has `splits` blocks per output tile (gridDim.x = tiles * splits), each
     * summing one contiguous share of K. */
    const int tiles = m_tiles * n_tiles;
    const int splits = mrt_imax((int)gridDim.x / tiles, 1);
    if ((int)blockIdx.x >= tiles * splits)
        return;
    /* The activations and C belong to the stream's previous kernels. */
    mrt_grid_wait();

    /* The rows of this block's chunk of M pick the wgmma width (see marlin_w4a16_wgmma_tile),
     * in tiles of two m64 tiles per warpgroup. With one, the narrow paths' code alone cost
     * the full-width path 4-5% (H200, t256.m8.n8.k8.s4 at M = 128 and 256; the full-width
     * code is otherwise the same instruction for instruction), and their narrow runs lost
     * to the two-tile ones at M <= 64 anyway: they run every chunk full width. */
    if constexpr (WG_M == 2) {
        const int rows = prob_m - ((int)blockIdx.x % m_tiles) * TOK;
        if (rows <= TOK / 4) {
            marlin_w4a16_wgmma_tile<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS, TOK / 4>(
                A, B, C, s, prob_m, prob_n, prob_k, locks, partials, m_tiles, splits);
            return;
        }
        if (rows <= TOK / 2) {
            marlin_w4a16_wgmma_tile<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS, TOK / 2>(
                A, B, C, s, prob_m, prob_n, prob_k, locks, partials, m_tiles, splits);
            return;
        }
    }
    marlin_w4a16_wgmma_tile<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS, TOK>(
        A, B, C, s, prob_m, prob_n, prob_k, locks, partials, m_tiles, splits);
#endif
}

/*
 * marlin_w4a16_wgmma with a stream-K tail (mrt_wgmma_segment_of): the same product, for
 * launches whose output tiles fill their last wave only partly. A separate entry point, so
 * that the plain kernel's code stays as it is: in this kernel any code compiled in changes
 * how ptxas schedules the rest (docs/performance.md v7 to v9).
 *
 * Launch contract, where it differs from marlin_w4a16_wgmma's:
 *   grid      (whole + stream_k, 1, 1): whole < tiles whole-tile blocks, then the stream-K
 *             blocks, more of them than tail tiles (tiles - whole) and at most 4096, the
 *             tail holding at least one K step per block
 *   locks     tiles - whole int32, zero on entry, zero again on exit
 *   partials  2 * stream_k slots of 16*TMB * 16*TNB floats
 *   stream_k  the last parameter
 */
template <int THREADS, int TMB, int TNB, int TKB, int STAGES, int GROUP_BLOCKS>
__global__ void __launch_bounds__(THREADS, 1)
    marlin_w4a16_wgmma_sk(const int4 *__restrict__ A, const int4 *__restrict__ B, int4 *__restrict__ C,
                          const int4 *__restrict__ s, int prob_m, int prob_n, int prob_k, int *locks,
                          float4 *partials, int stream_k)
{
    static_assert(mrt_wgmma_config_ok<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS>(), "see the checks above");
#if !MRT_HAVE_WGMMA
    asm volatile("trap;");
#else
    constexpr int WGS = THREADS / 128;
    constexpr int TOK = 16 * TMB;
    constexpr int FEAT = 16 * TNB;
    constexpr int WG_M = FEAT / (64 * WGS);
    constexpr bool GROUPED = GROUP_BLOCKS != -1;
    constexpr int SMEM_BYTES = marlin_w4a16_wgmma_smem_bytes<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS>();
    {
        const int tiles = (prob_m + TOK - 1) / TOK * (prob_n / FEAT);
        const int whole = (int)gridDim.x - stream_k;
        mrt_u32 dynamic_smem;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < (mrt_u32)SMEM_BYTES || prob_m < 1 || prob_n % FEAT != 0 || prob_k % (16 * TKB) != 0 ||
            (GROUPED && prob_k % (16 * GROUP_BLOCKS) != 0) || stream_k < 1 || stream_k > 4096 || whole < 0 ||
            tiles - whole < 1 || tiles - whole >= stream_k ||
            (long long)(tiles - whole) * (prob_k / (16 * TKB)) < stream_k)
            asm volatile("trap;");
    }
    /* One segment, or two when the block's range runs from one tail tile into the next.
     * Two calls in a row, not a loop: a loop around the three widths made ptxas spill the
     * accumulators. */
    auto run = [&](int index) {
        mrt_wgmma_segment seg;
        if (!mrt_wgmma_segment_of<TOK, FEAT, TKB>(index, prob_m, prob_n, prob_k, stream_k, seg))
            return false;
        if (index == 0)
            mrt_grid_wait(); /* the activations and C belong to the stream's previous kernels */
        else
            __syncthreads(); /* this segment's ring overwrites the last one's staged output */
        const mrt_wgmma_sk_args sk = {stream_k,
                                      index,
                                      (seg.tile % seg.m_tiles) * TOK,
                                      (seg.tile / seg.m_tiles) * FEAT,
                                      seg.ks0,
                                      seg.k_steps,
                                      seg.parts > 1};
        const int rows = prob_m - sk.m0;
        /* The chunk's rows pick the wgmma width, as in marlin_w4a16_wgmma; all shares of a
         * tile have the same rows, so they store and read slots of the same layout. */
        if constexpr (WG_M == 2) {
            if (rows <= TOK / 4) {
                marlin_w4a16_wgmma_tile<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS, TOK / 4, true>(
                    A, B, C, s, prob_m, prob_n, prob_k, locks, partials, 0, 0, sk);
                return true;
            }
            if (rows <= TOK / 2) {
                marlin_w4a16_wgmma_tile<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS, TOK / 2, true>(
                    A, B, C, s, prob_m, prob_n, prob_k, locks, partials, 0, 0, sk);
                return true;
            }
        }
        (void)rows;
        marlin_w4a16_wgmma_tile<THREADS, TMB, TNB, TKB, STAGES, GROUP_BLOCKS, TOK, true>(
            A, B, C, s, prob_m, prob_n, prob_k, locks, partials, 0, 0, sk);
        return true;
    };
    if (run(0))
        run(1);
#endif
}
