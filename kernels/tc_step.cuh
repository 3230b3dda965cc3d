// kernels/tc_step.cuh — one step's recurrent product on the tensor cores, for any cell: the block's
//   TC_BM x TC_BN tile of acc[g] = A (B x K) @ M[:, g·N .. g·N + N) in float32 for each of G gate
//   blocks, A's rows a StepState (the previous state, each batch row at its own time index;
//   step_order.cuh), M (K x G·N) row-major in global memory (V forward; V.T backward, G = 1).
//   docs/architecture.md §1 (precision modes).
// Storage S: __nv_bfloat16 or __half (mma m16n8k16, operands as stored), or float with TF32
//   operands (m16n8k8; each operand rounded by to_tf32 as it enters shared memory). Products
//   exact, accumulated in float32 (tc_tile.cuh): within K·2^-23·Σ|a·b| of the exact product.
// Block (32, 4): warp w = threadIdx.y owns rows 16·(w & 1) .. +15 and columns 32·(w >> 1) .. +31
//   of the tile (TC_NT = 4 column tiles of 8); grid (ceil(N / TC_BN), ceil(B / TC_BM)).
//   K is walked in chunks of TC_BK, staged in shared memory with zeros past B, K and N, so any
//   B, K, N work; 16-bit operands by 16-byte loads where their rows allow (K, N multiples of 8).
//   acc[g][j][i] is row tc_row(i), column tc_col(j, i) of gate g's tile.
#pragma once
#include "step_order.cuh"
#include "tc_tile.cuh"

constexpr int TC_BM = 32, TC_BN = 64, TC_BK = 32, TC_NT = 4, TC_WARPS = 4;

// Shared memory of one chunk: A (TC_BM x TC_BK) and M's chunk; rows padded by 16 bytes, so that
// every ldmatrix row address stays 16-byte aligned and rows fall on other banks.
template <class S, int G>
struct TcChunk {  // 16-bit: each gate's chunk of M as it is, TC_BK x TC_BN
    static constexpr int LDA = TC_BK + 8, LDM = TC_BN + 8;
    __align__(16) S a[TC_BM * LDA];
    __align__(16) S m[G][TC_BK * LDM];
};
template <int G>
struct TcChunk<float, G> {  // TF32: M's chunks transposed, TC_BN x TC_BK (tc_tile_16x8n_tf32)
    static constexpr int LDA = TC_BK + 4, LDM = TC_BK + 4;
    __align__(16) float a[TC_BM * LDA];
    __align__(16) float m[G][TC_BN * LDM];
};

// A TF32 operand as it enters shared memory (16-bit ones go in as stored).
__device__ __forceinline__ float tc_operand(float v) { return __uint_as_float(to_tf32(v)); }

// 8 consecutive 16-bit elements of a row into shared memory (dst 16-byte aligned): the first
// `valid` of src, zeros after them; one 16-byte load where all 8 are there and src is aligned
// (rows of a multiple of 8 elements), else one element at a time.
template <class S>
__device__ __forceinline__ void tc_copy8(S* dst, const S* src, int valid) {
    if (valid >= 8 && ((size_t)src & 15) == 0) {
        *(uint4*)dst = *(const uint4*)src;
        return;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) dst[e] = e < valid ? src[e] : S(0.0f);
}

// The chunk k0 .. k0 + TC_BK of a gate's tile of M (its columns at M, rows ldm apart) into
// shared memory m (zeros outside K x N), 8 columns per copy.
template <class S>
__device__ __forceinline__ void tc_stage_m(S* m, const S* M, int ldm, int K, int N, int k0, int n0, int tid) {
    constexpr int LDM = TC_BN + 8;  // TcChunk<S, G>::LDM
#pragma unroll
    for (int e = 0; e < TC_BK * TC_BN / 8 / (32 * TC_WARPS); ++e) {
        const int i = tid + 32 * TC_WARPS * e, k = i / (TC_BN / 8), n = 8 * (i % (TC_BN / 8));
        const int valid = k0 + k < K ? N - (n0 + n) : 0;
        tc_copy8(m + k * LDM + n, M + (size_t)(k0 + k) * ldm + n0 + n, valid);
    }
}
__device__ __forceinline__ void tc_stage_m(float* m, const float* M, int ldm, int K, int N, int k0, int n0,
                                           int tid) {
    constexpr int LDM = TC_BK + 4;  // TcChunk<float, G>::LDM
#pragma unroll
    for (int e = 0; e < TC_BK * TC_BN / (32 * TC_WARPS); ++e) {
        const int i = tid + 32 * TC_WARPS * e, k = i / TC_BN, n = i % TC_BN;
        const bool in = k0 + k < K && n0 + n < N;
        m[n * LDM + k] = in ? tc_operand(M[(size_t)(k0 + k) * ldm + n0 + n]) : 0.0f;
    }
}

// One chunk's products of the warp's 16 x 32 tile, every gate.
template <class S, int G>
__device__ __forceinline__ void tc_chunk_product(float (&acc)[G][TC_NT][4], const TcChunk<S, G>& sm, int wr,
                                                 int wc) {
    using C = TcChunk<S, G>;
#pragma unroll
    for (int g = 0; g < G; ++g)
        tc_tile_16x8n<TC_NT>(acc[g], sm.a + 16 * wr * C::LDA, C::LDA, sm.m[g] + 32 * wc, C::LDM, TC_BK);
}
template <int G>
__device__ __forceinline__ void tc_chunk_product(float (&acc)[G][TC_NT][4], const TcChunk<float, G>& sm, int wr,
                                                 int wc) {
    using C = TcChunk<float, G>;
#pragma unroll
    for (int g = 0; g < G; ++g)
        tc_tile_16x8n_tf32<TC_NT>(acc[g], sm.a + 16 * wr * C::LDA, C::LDA, sm.m[g] + 32 * wc * C::LDM, C::LDM,
                                  TC_BK);
}

// The chunk k0 .. k0 + TC_BK of A's rows b0 .. b0 + TC_BM into shared memory (zeros past B, K):
// 16-bit, 8 elements per copy; TF32, one at a time through to_tf32.
template <class S, int G, bool FLIP>
__device__ __forceinline__ void tc_stage_a(TcChunk<S, G>& sm, StepState<S, FLIP> A, int B, int K, int b0,
                                           int k0, int tid) {
    static_assert(TC_BM * TC_BK == 8 * 32 * TC_WARPS, "one copy of 8 per thread");
    const int r = tid / (TC_BK / 8), k = 8 * (tid % (TC_BK / 8)), b = b0 + r;
    tc_copy8(sm.a + r * TcChunk<S, G>::LDA + k, b < B ? A.row(b) + k0 + k : A.init, b < B ? K - (k0 + k) : 0);
}
template <int G, bool FLIP>
__device__ __forceinline__ void tc_stage_a(TcChunk<float, G>& sm, StepState<float, FLIP> A, int B, int K,
                                           int b0, int k0, int tid) {
#pragma unroll
    for (int e = 0; e < TC_BM * TC_BK / (32 * TC_WARPS); ++e) {  // a fixed count: unrolled
        const int i = tid + 32 * TC_WARPS * e, r = i / TC_BK, k = i % TC_BK, b = b0 + r;
        const bool in = b < B && k0 + k < K;
        sm.a[r * TcChunk<float, G>::LDA + k] = in ? tc_operand(A.row(b)[k0 + k]) : 0.0f;
    }
}

// acc = the warp's part of the block's tile of A @ M, or zeros where !active (no previous state:
// uniform across the launch, so every thread reaches the same barriers).
// M's gate g is its columns g·N .. g·N + N - 1 (a row of M is G·N long).
template <int G, class S, bool FLIP>
__device__ inline void tc_step_product(float (&acc)[G][TC_NT][4], StepState<S, FLIP> A, const S* M, int B,
                                       int K, int N, bool active, TcChunk<S, G>& sm) {
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
        for (int j = 0; j < TC_NT; ++j)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[g][j][i] = 0.0f;
    if (!active) return;
    const int tid = threadIdx.x + 32 * threadIdx.y, wr = threadIdx.y & 1, wc = threadIdx.y >> 1;
    const int b0 = blockIdx.y * TC_BM, n0 = blockIdx.x * TC_BN;
    for (int k0 = 0; k0 < K; k0 += TC_BK) {
        __syncthreads();  // the previous chunk's products are done with shared memory
        tc_stage_a(sm, A, B, K, b0, k0, tid);
#pragma unroll 1  // one gate's loads in flight at a time: TF32's three, unrolled, spilled
        for (int g = 0; g < G; ++g) tc_stage_m(sm.m[g], M + (size_t)g * N, G * N, K, N, k0, n0, tid);
        __syncthreads();
        tc_chunk_product(acc, sm, wr, wc);
    }
}

// The batch row and the column of acc[j][i] in the whole output (tc_tile.cuh's layout).
__device__ __forceinline__ int tc_row(int i) {
    return blockIdx.y * TC_BM + 16 * (threadIdx.y & 1) + tc_acc_row(threadIdx.x, i);
}
__device__ __forceinline__ int tc_col(int j, int i) {
    return blockIdx.x * TC_BN + 32 * (threadIdx.y >> 1) + tc_acc_col(threadIdx.x, j, i);
}
