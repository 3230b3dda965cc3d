// Tiled shared-memory matmul C = A @ B (row-major; A (M, K), B (K, N), C (M, N)), for the emulator
// tests. Launch: grid (ceil(N/TILE), ceil(M/TILE)), block (TILE, TILE); one thread per C element.
// matmul_missing_sync is the same kernel without the barrier after the tile loads (a planted bug).
#define TILE 16

template <bool SYNC_AFTER_LOAD>
__device__ __forceinline__ void tiled_matmul(const float* __restrict__ A, const float* __restrict__ B,
                                             float* __restrict__ C, int M, int N, int K) {
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.0f;
        Bs[ty][tx] = (k0 + ty < K && col < N) ? __ldg(&B[(k0 + ty) * N + col]) : 0.0f;
        if (SYNC_AFTER_LOAD) __syncthreads();
#pragma unroll
        for (int k = 0; k < TILE; ++k) acc = fmaf(As[ty][k], Bs[k][tx], acc);
        __syncthreads();
    }
    if (row < M && col < N) C[row * N + col] = acc;
}

extern "C" __global__ void __launch_bounds__(TILE * TILE)
matmul(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K) {
    tiled_matmul<true>(A, B, C, M, N, K);
}

extern "C" __global__ void matmul_missing_sync(const float* A, const float* B, float* C, int M, int N, int K) {
    tiled_matmul<false>(A, B, C, M, N, K);
}
