// kernels/tc_tile.cuh on a recurrent-product shape: out (rows x N) = h (rows x K) @ V (K x N), rows
// <= 16 padded with zero rows in shared memory, two warps of 8·NT columns each
// (tests/emulator/test_mma.py, tests/cuda/test_mma_sass.py).
#include "tc_tile.cuh"

constexpr int NT = 4, WARPS = 2, N = 8 * NT * WARPS, KMAX = 64;

template <class S>
__global__ void __launch_bounds__(32 * WARPS) tile_product(const S* h, const S* V, float* out, int rows, int K) {
    constexpr int LDA = KMAX + 8, LDB = N + 8;  // 16-byte padding: rows stay 16-byte aligned
    __shared__ __align__(16) S hs[16 * LDA];
    __shared__ __align__(16) S vs[KMAX * LDB];
    for (int i = threadIdx.x; i < 16 * K; i += blockDim.x) {
        int r = i / K, k = i % K;
        hs[r * LDA + k] = r < rows ? h[r * K + k] : S(0.0f);
    }
    for (int i = threadIdx.x; i < K * N; i += blockDim.x) vs[(i / N) * LDB + i % N] = V[i];
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n0 = 8 * NT * warp;
    float acc[NT][4] = {};
    tc_tile_16x8n<NT>(acc, hs, LDA, vs + n0, LDB, K);
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int r = tc_acc_row(lane, i);
            if (r < rows) out[r * N + n0 + tc_acc_col(lane, j, i)] = acc[j][i];
        }
}

__global__ void __launch_bounds__(32 * WARPS) tile_product_tf32(const float* h, const float* V, float* out, int rows,
                                                                int K) {
    constexpr int LDA = KMAX + 4, LDBT = KMAX + 4;
    __shared__ __align__(16) float hs[16 * LDA];
    __shared__ __align__(16) float vt[N * LDBT];  // V transposed: vt[n][k]
    for (int i = threadIdx.x; i < 16 * K; i += blockDim.x) {
        int r = i / K, k = i % K;
        hs[r * LDA + k] = r < rows ? __uint_as_float(to_tf32(h[r * K + k])) : 0.0f;
    }
    for (int i = threadIdx.x; i < K * N; i += blockDim.x) vt[(i % N) * LDBT + i / N] = __uint_as_float(to_tf32(V[i]));
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n0 = 8 * NT * warp;
    float acc[NT][4] = {};
    tc_tile_16x8n_tf32<NT>(acc, hs, LDA, vt + n0 * LDBT, LDBT, K);
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int r = tc_acc_row(lane, i);
            if (r < rows) out[r * N + n0 + tc_acc_col(lane, j, i)] = acc[j][i];
        }
}
