// kernels/gemm.cu — tiled GEMM with transposed-operand variants and a fused bias epilogue
//   C = op(A) @ op(B) [+ bias[n]] [+ C]   (the own alternative to cuBLAS for the products
//   outside the time loop: p = x @ W + b, dW = x.T @ du, dV = h[t-1].T @ du, dx = du @ W.T)
// Shapes, row-major: C (M, N) with row stride ldc; op(A) (M, K), op(B) (K, N):
//   TA = false: A (M, K), lda >= K; TA = true: A (K, M), lda >= M
//   TB = false: B (K, N), ldb >= N; TB = true: B (N, K), ldb >= K
//   bias (N,) when has_bias, else any pointer; accumulate != 0 adds the old C (a second product
//   into the same output, as for dV).
// Launch: grid (ceil(M/64), ceil(N/64)), block (16, 16): M (T·B for p and dx) on grid.x, whose
//   limit is 2^31 - 1 blocks (grid.y's is 65535); 64x64 output tile per block, 4x4 per thread,
//   A and B tiles in shared memory (tile_gemm.cuh). Each output is one thread's sum in a fixed
//   order: deterministic, no atomics.
// Versions: v1 (this one). Types: float, double. Names: gemm_v1<float, false, true>, ... for
//   (TA, TB) in NN, TN, NT.
#include "tile_gemm.cuh"

template <typename T, bool TA, bool TB>
__global__ void __launch_bounds__(256, 2)
gemm_v1(const T* A, const T* B, T* C, const T* bias, int has_bias, int accumulate, int M, int N,
        int K, int lda, int ldb, int ldc) {
    constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
    __shared__ T As[TileSmem<BM, BN, BK>::A_ELEMS];
    __shared__ T Bs[TileSmem<BM, BN, BK>::B_ELEMS];
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    T acc[1][TM][TN];  // one gate: a plain GEMM tile
    zero_tile(acc);
    tile_gemm<T, BM, BN, BK, TM, TN, TA, TB>(DenseOperand<T, TA>{A, lda}, B, ldb, M, N, K, m0, n0,
                                             acc, As, Bs);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + threadIdx.y + i * (BM / TM);
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = n0 + threadIdx.x + j * (BN / TN);
            if (n >= N) continue;
            T v = acc[0][i][j];
            if (has_bias) v += bias[n];
            T* c = C + (size_t)m * ldc + n;
            *c = accumulate ? *c + v : v;
        }
    }
}
