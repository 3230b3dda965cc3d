// kernels/tile_gemm.cuh — one block's tile of C = op(A) @ op(B), accumulated in registers
//   C (M, N), op(A) (M, K), op(B) (K, N); row-major storage with leading dimensions lda, ldb:
//   op(A)[m, k] = TA ? A[k * lda + m] : A[m * lda + k]
//   op(B)[k, n] = TB ? B[n * ldb + k] : B[k * ldb + n]
// Block: (BN / TN, BM / TM) threads; thread (tx, ty) owns rows m0 + ty + i * (BM / TM) and columns
// n0 + tx + j * (BN / TN) for i < TM, j < TN. Strided ownership keeps the shared-memory reads of a
// warp on distinct banks (or broadcasts) and the epilogue's global writes coalesced.
// Shared memory: A and B tiles of BK rows, stored k-major with one pad column against bank
// conflicts on the transposing stores; passed in by the kernel (static __shared__ arrays).
// Every thread of the block must call tile_gemm (it holds __syncthreads).
// Types: float, double (template T).
#pragma once

template <int BM, int BN, int BK>
struct TileSmem {
    static constexpr int A_ELEMS = BK * (BM + 1);
    static constexpr int B_ELEMS = BK * (BN + 1);
};

template <typename T, int TM, int TN>
__device__ inline void zero_tile(T (&acc)[TM][TN]) {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
}

template <typename T, int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
__device__ inline void tile_gemm(const T* A, int lda, const T* B, int ldb, int M, int N, int K,
                                 int m0, int n0, T (&acc)[TM][TN], T* As, T* Bs) {
    constexpr int NTX = BN / TN;
    constexpr int NTY = BM / TM;
    constexpr int NT = NTX * NTY;
    constexpr int A_LOADS = (BM * BK + NT - 1) / NT;
    constexpr int B_LOADS = (BK * BN + NT - 1) / NT;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * NTX + tx;

    for (int k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
        for (int r = 0; r < A_LOADS; ++r) {
            const int idx = tid + r * NT;
            if (idx < BM * BK) {
                // Consecutive threads walk the contiguous dimension of A in global memory.
                const int m = TA ? idx % BM : idx / BK;
                const int k = TA ? idx / BM : idx % BK;
                const int gm = m0 + m, gk = k0 + k;
                T v = T(0);
                if (gm < M && gk < K)
                    v = TA ? A[(size_t)gk * lda + gm] : A[(size_t)gm * lda + gk];
                As[k * (BM + 1) + m] = v;
            }
        }
#pragma unroll
        for (int r = 0; r < B_LOADS; ++r) {
            const int idx = tid + r * NT;
            if (idx < BK * BN) {
                const int n = TB ? idx / BK : idx % BN;
                const int k = TB ? idx % BK : idx / BN;
                const int gn = n0 + n, gk = k0 + k;
                T v = T(0);
                if (gn < N && gk < K)
                    v = TB ? B[(size_t)gn * ldb + gk] : B[(size_t)gk * ldb + gn];
                Bs[k * (BN + 1) + n] = v;
            }
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            T a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = As[k * (BM + 1) + ty + i * NTY];
#pragma unroll
            for (int j = 0; j < TN; ++j) b[j] = Bs[k * (BN + 1) + tx + j * NTX];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();  // the tiles are overwritten by the next k0
    }
}
