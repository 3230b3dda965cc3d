// kernels/tile_gemm.cuh — one block's tile of C = op(A) @ op(B), accumulated in registers, over G
//   column blocks of B (the gates of a recurrent cell; G = 1 is a plain GEMM tile). Names no cell.
//   C_g (M, N) = op(A) (M, K) @ op(B)[:, g * gate_stride + (0 .. N-1)] for g < G;
//   row-major storage with leading dimensions lda, ldb:
//   op(A)[m, k] = TA ? A[k * lda + m] : A[m * lda + k]
//   op(B)[k, c] = TB ? B[c * ldb + k] : B[k * ldb + c]
// Block: (BN / TN, BM / TM) threads; thread (tx, ty) owns rows m0 + ty + i * (BM / TM) and columns
// n0 + tx + j * (BN / TN) for i < TM, j < TN, of every gate: acc[g][i][j]. So the G values a cell's
// epilogue combines for one output (b, n) (an LSTM's i, f, g, o: G = 4, gate_stride = H) are in the
// registers of one thread. Strided ownership keeps the shared-memory reads of a warp on distinct
// banks (or broadcasts) and the epilogue's global writes coalesced.
// A is an operand object: a(m, k) returns op(A)[m, k] (DenseOperand: a row-major array; StepState
// of step_order.cuh: the rows of one step of a recurrence, each batch row at its own time index).
// Shared memory: A and B tiles of BK rows (B: one per gate), stored k-major with one pad column
// against bank conflicts on the transposing stores; passed in by the kernel (static __shared__).
// Every thread of the block must call tile_gemm (it holds __syncthreads).
// The recurrent step of a cell: step_tile_product (the product) then step_tile_outputs (visits the
// thread's outputs for the cell's epilogue); see elman_fwd_step.cu.
// Types: float, double (template T).
#pragma once
#include "step_order.cuh"

template <int BM, int BN, int BK, int G = 1>
struct TileSmem {
    static constexpr int A_ELEMS = BK * (BM + 1);
    static constexpr int B_ELEMS = G * BK * (BN + 1);
};

// op(A) of a row-major array with leading dimension lda: A (M, K), or A (K, M) when TA.
template <typename T, bool TA>
struct DenseOperand {
    const T* A;
    int lda;
    __device__ T operator()(int m, int k) const {
        return TA ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
    }
};

template <typename T, int G, int TM, int TN>
__device__ inline void zero_tile(T (&acc)[G][TM][TN]) {
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[g][i][j] = T(0);
}

template <typename T, int BM, int BN, int BK, int TM, int TN, bool TA, bool TB, int G,
          typename AOp>
__device__ inline void tile_gemm(const AOp& A, const T* B, int ldb, int M, int N, int K, int m0,
                                 int n0, T (&acc)[G][TM][TN], T* As, T* Bs, int gate_stride = 0) {
    constexpr int NTX = BN / TN;
    constexpr int NTY = BM / TM;
    constexpr int NT = NTX * NTY;
    constexpr int A_LOADS = (BM * BK + NT - 1) / NT;
    constexpr int B_LOADS = (BK * BN + NT - 1) / NT;
    constexpr int B_GATE = BK * (BN + 1);  // one gate's B tile in Bs
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
                if (gm < M && gk < K) v = A(gm, gk);
                As[k * (BM + 1) + m] = v;
            }
        }
#pragma unroll
        for (int g = 0; g < G; ++g) {
#pragma unroll
            for (int r = 0; r < B_LOADS; ++r) {
                const int idx = tid + r * NT;
                if (idx < BK * BN) {
                    const int n = TB ? idx / BK : idx % BN;
                    const int k = TB ? idx % BK : idx / BN;
                    const int gn = n0 + n, gk = k0 + k;
                    const int c = g * gate_stride + gn;
                    T v = T(0);
                    if (gn < N && gk < K)
                        v = TB ? B[(size_t)c * ldb + gk] : B[(size_t)gk * ldb + c];
                    Bs[g * B_GATE + k * (BN + 1) + n] = v;
                }
            }
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            T a[TM], b[G][TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = As[k * (BM + 1) + ty + i * NTY];
#pragma unroll
            for (int g = 0; g < G; ++g)
#pragma unroll
                for (int j = 0; j < TN; ++j) b[g][j] = Bs[g * B_GATE + k * (BN + 1) + tx + j * NTX];
#pragma unroll
            for (int g = 0; g < G; ++g)
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TN; ++j) acc[g][i][j] += a[i] * b[g][j];
        }
        __syncthreads();  // the tiles are overwritten by the next k0
    }
}

// The recurrent product of one step for a cell with G gates: acc[g][i][j] = (X @ M)[b, g*N + n]
// for the thread's outputs (b, n) of the block's BM x BN tile (blockIdx.y: rows b, blockIdx.x:
// columns n). X (B, K) the previous state's term as a StepState (h of the step before forward;
// du of the step after backward, K = G*N for a gated cell), M (K, G*N) row-major. has_x = 0
// (uniform over the launch) leaves acc = 0 and reads nothing (the first backward step). Whole
// block; shared tiles of TileSmem<BM, BN, BK, G>.
template <int G, typename T, int BM, int BN, int BK, int TM, int TN, bool FLIP>
__device__ inline void step_tile_product(const StepState<T, FLIP>& X, const T* M, int B, int N,
                                         bool has_x, T (&acc)[G][TM][TN], T* As, T* Bs) {
    zero_tile(acc);
    if (!has_x) return;  // uniform over the launch, so the barriers inside are reached by all
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    // Forward, the step's rows are one dense (B, K) array: the plain operand keeps per-row
    // addressing (and a select between seq and init per element) out of the loads.
    if constexpr (FLIP)
        tile_gemm<T, BM, BN, BK, TM, TN, false, false>(X, M, G * N, B, N, X.K, m0, n0, acc, As,
                                                       Bs, N);
    else
        tile_gemm<T, BM, BN, BK, TM, TN, false, false>(DenseOperand<T, false>{X.row(0), X.K}, M,
                                                       G * N, B, N, X.K, m0, n0, acc, As, Bs, N);
}

// Calls epi(i, j, b, n, len) for each output (b, n) < (B, N) the thread owns in its block's tile,
// where acc[.][i][j] holds its sums and len = lengths[b] (read once per row): the cell's epilogue.
template <int BM, int BN, int TM, int TN, typename Epi>
__device__ inline void step_tile_outputs(const int* lengths, int B, int N, Epi epi) {
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int b = m0 + threadIdx.y + i * (BM / TM);
        if (b >= B) continue;
        const int len = lengths[b];
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = n0 + threadIdx.x + j * (BN / TN);
            if (n >= N) continue;
            epi(i, j, b, n, len);
        }
    }
}
