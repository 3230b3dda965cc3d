// kernels/tc_step.cuh — one step's recurrent product on the tensor cores, for any cell: the block's
//   TC_BM x TC_BN tile of acc = A (B x K) @ M (K x N) in float32, A's rows a StepState (the
//   previous state, each batch row at its own time index; step_order.cuh), M (K x N) row-major in
//   global memory (V forward, V.T backward). docs/architecture.md §1 (precision modes).
// Storage S: __nv_bfloat16 or __half (mma m16n8k16, operands as stored), or float with TF32
//   operands (m16n8k8; each operand rounded by to_tf32 as it enters shared memory). Products
//   exact, accumulated in float32 (tc_tile.cuh): within K·2^-23·Σ|a·b| of the exact product.
// Block (32, 4): warp w = threadIdx.y owns rows 16·(w & 1) .. +15 and columns 32·(w >> 1) .. +31
//   of the tile (TC_NT = 4 column tiles of 8); grid (ceil(N / TC_BN), ceil(B / TC_BM)).
//   K is walked in chunks of TC_BK, staged in shared memory with zeros past B, K and N, so any
//   B, K, N work. acc[j][i] is row tc_row(i), column tc_col(j, i) of the tile.
#pragma once
#include "step_order.cuh"
#include "tc_tile.cuh"

constexpr int TC_BM = 32, TC_BN = 64, TC_BK = 32, TC_NT = 4, TC_WARPS = 4;

// Shared memory of one chunk: A (TC_BM x TC_BK) and M's chunk; rows padded by 16 bytes, so that
// every ldmatrix row address stays 16-byte aligned and rows fall on other banks.
template <class S>
struct TcChunk {  // 16-bit: M's chunk as it is, TC_BK x TC_BN
    static constexpr int LDA = TC_BK + 8, LDM = TC_BN + 8;
    __align__(16) S a[TC_BM * LDA];
    __align__(16) S m[TC_BK * LDM];
};
template <>
struct TcChunk<float> {  // TF32: M's chunk transposed, TC_BN x TC_BK (tc_tile_16x8n_tf32)
    static constexpr int LDA = TC_BK + 4, LDM = TC_BK + 4;
    __align__(16) float a[TC_BM * LDA];
    __align__(16) float m[TC_BN * LDM];
};

__device__ __forceinline__ __nv_bfloat16 tc_operand(__nv_bfloat16 v) { return v; }
__device__ __forceinline__ __half tc_operand(__half v) { return v; }
__device__ __forceinline__ float tc_operand(float v) { return __uint_as_float(to_tf32(v)); }

// The chunk k0 .. k0 + TC_BK of M's tile into shared memory (zeros outside K x N).
template <class S>
__device__ __forceinline__ void tc_stage_m(TcChunk<S>& sm, const S* M, int K, int N, int k0, int n0,
                                           int tid) {
#pragma unroll
    for (int e = 0; e < TC_BK * TC_BN / (32 * TC_WARPS); ++e) {
        const int i = tid + 32 * TC_WARPS * e, k = i / TC_BN, n = i % TC_BN;  // n fastest: coalesced
        const bool in = k0 + k < K && n0 + n < N;
        sm.m[k * TcChunk<S>::LDM + n] = in ? M[(size_t)(k0 + k) * N + n0 + n] : S(0.0f);
    }
}
__device__ __forceinline__ void tc_stage_m(TcChunk<float>& sm, const float* M, int K, int N, int k0,
                                           int n0, int tid) {
#pragma unroll
    for (int e = 0; e < TC_BK * TC_BN / (32 * TC_WARPS); ++e) {
        const int i = tid + 32 * TC_WARPS * e, k = i / TC_BN, n = i % TC_BN;
        const bool in = k0 + k < K && n0 + n < N;
        sm.m[n * TcChunk<float>::LDM + k] = in ? tc_operand(M[(size_t)(k0 + k) * N + n0 + n]) : 0.0f;
    }
}

// One chunk's products of the warp's 16 x 32 tile.
template <class S>
__device__ __forceinline__ void tc_chunk_product(float (&acc)[TC_NT][4], const TcChunk<S>& sm, int wr, int wc) {
    tc_tile_16x8n<TC_NT>(acc, sm.a + 16 * wr * TcChunk<S>::LDA, TcChunk<S>::LDA, sm.m + 32 * wc,
                         TcChunk<S>::LDM, TC_BK);
}
__device__ __forceinline__ void tc_chunk_product(float (&acc)[TC_NT][4], const TcChunk<float>& sm, int wr,
                                                 int wc) {
    tc_tile_16x8n_tf32<TC_NT>(acc, sm.a + 16 * wr * TcChunk<float>::LDA, TcChunk<float>::LDA,
                              sm.m + 32 * wc * TcChunk<float>::LDM, TcChunk<float>::LDM, TC_BK);
}

// acc = the warp's part of the block's tile of A @ M, or zeros where !active (no previous state:
// uniform across the launch, so every thread reaches the same barriers).
template <class S, bool FLIP>
__device__ inline void tc_step_product(float (&acc)[TC_NT][4], StepState<S, FLIP> A, const S* M, int B,
                                       int K, int N, bool active, TcChunk<S>& sm) {
#pragma unroll
    for (int j = 0; j < TC_NT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[j][i] = 0.0f;
    if (!active) return;
    const int tid = threadIdx.x + 32 * threadIdx.y, wr = threadIdx.y & 1, wc = threadIdx.y >> 1;
    const int b0 = blockIdx.y * TC_BM, n0 = blockIdx.x * TC_BN;
    for (int k0 = 0; k0 < K; k0 += TC_BK) {
        __syncthreads();  // the previous chunk's products are done with shared memory
#pragma unroll
        for (int e = 0; e < TC_BM * TC_BK / (32 * TC_WARPS); ++e) {  // a fixed count: unrolled
            const int i = tid + 32 * TC_WARPS * e, r = i / TC_BK, k = i % TC_BK, b = b0 + r;
            const bool in = b < B && k0 + k < K;
            sm.a[r * TcChunk<S>::LDA + k] = in ? tc_operand(A.row(b)[k0 + k]) : S(0.0f);
        }
        tc_stage_m(sm, M, K, N, k0, n0, tid);
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
