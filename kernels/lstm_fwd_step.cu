// kernels/lstm_fwd_step.cu — one forward step of the LSTM recurrence (docs/architecture.md §1)
//   u = p[t] + h[t-1] @ V,  [i|f|g|o] = [σ|σ|tanh|σ](u),  c[t] = f·c[t-1] + i·g,
//   m[t] = o·tanh(c[t]),  h[t] = m[t] (with a projection: h[t] = m[t] @ R, by cuBLAS after this
//   launch);  h[-1] = h0, c[-1] = c0;  p = x @ W + b precomputed for all t by one GEMM
//   gates, c, h = 0 where t >= lengths[b] (padding)
// Shapes, row-major: gates (T, B, 4H) holds p[t'] for t' >= t on entry and the activated gates
//   for t' < t; step t overwrites row t in place. c (T, B, H), written row t (reads row t-1, or c0
//   (B, H) at t = 0). h (T, B, K), K = H, or the projection's P: the product reads row t-1 (h0
//   (B, K) at t = 0); without a projection (proj = 0) m[t] is written to h row t, with one
//   (proj = 1) to m (B, H), dense, for the backend's m @ R. V (K, 4H), gate blocks in column order.
//   lengths (B,) int32, every entry in 1..T (the backend passes T everywhere when none is given).
// flip = 1 (a reversed run): launch s works on t = step_time<true>(s, lengths[b]) for batch row b
//   (step_order.cuh) and reads what launch s-1 wrote for b; flip = 0: t = s. The tiled kernels
//   branch once on flip into a FLIP body.
// Launch (one launch per step s = 0..T-1, in order); thread -> the 4 gates of unit (b, n):
//   v1: grid (ceil(H/64), ceil(B/4)), block (64, 4); one dot product per gate, V from global
//       memory.
//   v2: grid (ceil(H/32), ceil(B/32)), block (16, 16); 32x32 units a block, 2x2 per thread, the 4
//       gate columns of V staged in shared memory (step_tile_product<4>, tile_gemm.cuh).
//   v3: grid (ceil(H/32), ceil(B/64)), block (16, 16); 64x32 units, 4x2 per thread (4 gates x 8
//       accumulators: a 64x64 tile would spill in double).
//   v4: acc = h[t-1] @ V (B, 4H) by cuBLAS (the backend), then this kernel's fused epilogue:
//       grid (ceil(B*H/256)), block (256); thread -> unit (b, n). flip = 1 without a projection
//       also writes m[t] to state (B, H), which the next step's product reads.
// Types: float, double (template T). Names: lstm_fwd_step_v1<float>, ..._v4<double>.
// Every version ends in the cell's epilogue lstm_fwd_out (lstm_common.cuh).
#include "lstm_common.cuh"
#include "tile_gemm.cuh"

// m[t, b, n] where it goes: h row t (proj = 0), or the projection's input m (B, H).
template <typename T>
__device__ inline void lstm_fwd_store(T* h, T* m, T v, int s, int flip, int len, int B, int H,
                                      int b, int n, int proj) {
    if (proj) m[(size_t)b * H + n] = v;
    else h[((size_t)step_time(s, len, flip) * B + b) * H + n] = v;
}

template <bool FLIP, typename T>
__device__ inline void lstm_fwd_step_one(T* gates, T* c, T* h, T* m, const T* h0, const T* c0,
                                         const T* V, const int* lengths, int s, int B, int H,
                                         int K, int proj) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    const int b = blockIdx.y * blockDim.y + threadIdx.y;
    if (b >= B || n >= H) return;
    const int len = lengths[b];
    T acc[4] = {T(0), T(0), T(0), T(0)};
    if (s < len) {  // a padded step needs no product
        const T* hp = StepState<T, FLIP>{h, h0, lengths, s - 1, B, K}.row(b);
        for (int k = 0; k < K; ++k) {
            const T x = hp[k];
            const T* v = V + (size_t)k * 4 * H + n;
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[q] += x * v[q * H];
        }
    }
    const T out = lstm_fwd_out(gates, c, c0, acc, s, FLIP, len, B, H, b, n);
    lstm_fwd_store(h, m, out, s, FLIP, len, B, H, b, n, proj);
}

template <typename T>
__global__ void lstm_fwd_step_v1(T* gates, T* c, T* h, T* m, const T* h0, const T* c0,
                                 const T* V, const int* lengths, int s, int flip, int B, int H,
                                 int K, int proj) {
    if (flip) lstm_fwd_step_one<true>(gates, c, h, m, h0, c0, V, lengths, s, B, H, K, proj);
    else lstm_fwd_step_one<false>(gates, c, h, m, h0, c0, V, lengths, s, B, H, K, proj);
}

// The shared recurrent product over the 4 gates and the LSTM epilogue, in one direction.
template <bool FLIP, typename T, int BM, int BN, int TM, int TN>
__device__ inline void lstm_fwd_step_dir(T* gates, T* c, T* h, T* m, const T* h0, const T* c0,
                                         const T* V, const int* lengths, int s, int B, int H,
                                         int K, int proj, T* As, T* Bs) {
    T acc[4][TM][TN];
    constexpr int BK = 16;  // tile depth, as in TileSmem<.., .., 16, 4> of the kernels below
    step_tile_product<4, T, BM, BN, BK, TM, TN>(StepState<T, FLIP>{h, h0, lengths, s - 1, B, K},
                                                V, B, H, true, acc, As, Bs);
    step_tile_outputs<BM, BN, TM, TN>(lengths, B, H, [&](int i, int j, int b, int n, int len) {
        const T sum[4] = {acc[0][i][j], acc[1][i][j], acc[2][i][j], acc[3][i][j]};
        const T out = lstm_fwd_out(gates, c, c0, sum, s, FLIP, len, B, H, b, n);
        lstm_fwd_store(h, m, out, s, FLIP, len, B, H, b, n, proj);
    });
}

template <typename T, int BM, int BN, int TM, int TN>
__device__ inline void lstm_fwd_step_tiled(T* gates, T* c, T* h, T* m, const T* h0, const T* c0,
                                           const T* V, const int* lengths, int s, int flip,
                                           int B, int H, int K, int proj, T* As, T* Bs) {
    if (flip)
        lstm_fwd_step_dir<true, T, BM, BN, TM, TN>(gates, c, h, m, h0, c0, V, lengths, s, B, H,
                                                   K, proj, As, Bs);
    else
        lstm_fwd_step_dir<false, T, BM, BN, TM, TN>(gates, c, h, m, h0, c0, V, lengths, s, B, H,
                                                    K, proj, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
lstm_fwd_step_v2(T* gates, T* c, T* h, T* m, const T* h0, const T* c0, const T* V,
                 const int* lengths, int s, int flip, int B, int H, int K, int proj) {
    __shared__ T As[TileSmem<32, 32, 16, 4>::A_ELEMS];
    __shared__ T Bs[TileSmem<32, 32, 16, 4>::B_ELEMS];
    lstm_fwd_step_tiled<T, 32, 32, 2, 2>(gates, c, h, m, h0, c0, V, lengths, s, flip, B, H, K,
                                         proj, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256, 2)
lstm_fwd_step_v3(T* gates, T* c, T* h, T* m, const T* h0, const T* c0, const T* V,
                 const int* lengths, int s, int flip, int B, int H, int K, int proj) {
    __shared__ T As[TileSmem<64, 32, 16, 4>::A_ELEMS];
    __shared__ T Bs[TileSmem<64, 32, 16, 4>::B_ELEMS];
    lstm_fwd_step_tiled<T, 64, 32, 4, 2>(gates, c, h, m, h0, c0, V, lengths, s, flip, B, H, K,
                                         proj, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
lstm_fwd_step_v4(T* gates, T* c, T* h, T* m, const T* acc, T* state, const T* c0,
                 const int* lengths, int s, int flip, int B, int H, int proj) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * H) return;
    const int b = (int)(i / H), n = (int)(i % H), len = lengths[b];
    const T* a = acc + (size_t)b * 4 * H + n;
    const T sum[4] = {a[0], a[H], a[2 * H], a[3 * H]};
    const T out = lstm_fwd_out(gates, c, c0, sum, s, flip, len, B, H, b, n);
    lstm_fwd_store(h, m, out, s, flip, len, B, H, b, n, proj);
    if (flip && !proj) state[i] = out;
}
