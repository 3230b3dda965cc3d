// kernels/lstm_bwd_step.cu — one reverse step of BPTT through the LSTM (docs/architecture.md §1)
//   dhs[t] = dh[t] + [t == last(b)] dh_last + du[t+1] @ V.T     (the total gradient on h[t])
//   dm = dhs (with a projection: dm = dhs @ R.T, by cuBLAS between two launches, below)
//   tc = tanh(c[t]);  dc = dc[t+1]·f[t+1] + [t == last(b)] dc_last + dm·o·(1 - tc²)
//   du[t] = [dc·g·i(1-i) | dc·c[t-1]·f(1-f) | dc·i·(1-g²) | dm·tc·o(1-o)],  du[T] = 0
//   last(b) = lengths[b] - 1; du[t, b, :] = 0 where t >= lengths[b] (padding passes no gradient)
// Shapes, row-major: du (T, B, 4H) output, written row t per launch (the product reads row t+1);
//   dc (B, H) the carried cell-state gradient (lstm_common.cuh), dc0 after step 0; dc_last (B, H)
//   or absent (has_dc_last = 0); dhs (T, B, N) written by mode LSTM_BWD_DHS; dh (T, B, N) or
//   absent (has_dh = 0, any pointer); dh_last (B, N) or absent (has_dh_last = 0); gates (T, B, 4H)
//   and c (T, B, H) the forward's; c0 (B, H); VT (4H, N) = V.T, contiguous; N = H, or the
//   projection's P; lengths (B,) int32 in 1..T.
// mode: LSTM_BWD_FULL (no projection: the product, dhs and the gates' gradients in one launch);
//   LSTM_BWD_DHS (a projection's first launch: the product and dhs only, written to dhs);
//   LSTM_BWD_FROM_DM (v4 only, a projection's second launch: the gates' gradients from
//   dm = acc (B, H), which the backend computed as dhs[t] @ R.T; every version uses it).
// flip = 1 (the backward of a reversed run): launch s works on t = step_time<true>(s, lengths[b])
//   for batch row b (step_order.cuh), reads the row launch s+1 wrote for b and takes dh_last and
//   dc_last at s = lengths[b]-1 (t = 0). flip = 0: t = s.
// Launch (one launch per step, s = T-1 down to 0); thread -> column n < N of row b:
//   v1: grid (ceil(N/64), ceil(B/4)), block (64, 4); one dot product of length 4H.
//   v2: grid (ceil(N/32), ceil(B/32)), block (16, 16); 32x32 tile, 2x2 per thread (tile_gemm.cuh).
//   v3: grid (ceil(N/64), ceil(B/64)), block (16, 16); 64x64 tile, 4x4 per thread (one sum
//       per output, as Elman's; the forward's 4 gates take 64x32).
//   v4: acc = du[t+1] @ V.T (B, N) by cuBLAS (the backend; has_acc = 0 at s = T-1), then this
//       kernel's fused epilogue: grid (ceil(B*N/256)), block (256); thread -> (b, n). flip = 1
//       also writes the step's du rows to state (B, 4H), which the next launch's product reads.
// Types: float, double (template T). Names: lstm_bwd_step_v1<float>, ..._v4<double>.
// Every version ends in the cell's epilogues lstm_dhs and lstm_bwd_out (lstm_common.cuh).
#include "lstm_common.cuh"
#include "tile_gemm.cuh"

#define LSTM_BWD_FULL 0
#define LSTM_BWD_DHS 1
#define LSTM_BWD_FROM_DM 2

// Column n of row b at step s from the product's sum: dhs to dhs (LSTM_BWD_DHS), or on through
// the gates into du and dc (LSTM_BWD_FULL). Returns the 4 gates' du (0 for LSTM_BWD_DHS).
template <typename T>
__device__ inline void lstm_bwd_column(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs,
                                       const T* dh, int has_dh, const T* dh_last,
                                       int has_dh_last, const T* gates, const T* c, const T* c0,
                                       T sum, int s, int flip, int len, int B, int H, int N,
                                       int b, int n, int mode, T (&d)[4]) {
    const int t = step_time(s, len, flip);
    const T g = lstm_dhs(sum, dh, has_dh, dh_last, has_dh_last, t, s, len, B, N, b, n);
    if (mode == LSTM_BWD_DHS) {
        dhs[((size_t)t * B + b) * N + n] = g;
        d[0] = d[1] = d[2] = d[3] = T(0);
    } else {
        lstm_bwd_out(du, dc, dc_last, has_dc_last, gates, c, c0, g, s, flip, len, B, H, b, n, d);
    }
}

template <bool FLIP, typename T>
__device__ inline void lstm_bwd_step_one(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs,
                                         const T* dh, int has_dh, const T* dh_last,
                                         int has_dh_last, const T* gates, const T* c,
                                         const T* c0, const T* VT, const int* lengths, int s,
                                         int steps, int B, int H, int N, int mode) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    const int b = blockIdx.y * blockDim.y + threadIdx.y;
    if (b >= B || n >= N) return;
    const int len = lengths[b];
    T acc = T(0);
    if (s + 1 < steps) {
        const T* dn = StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, 4 * H, steps}.row(b);
        for (int k = 0; k < 4 * H; ++k) acc += dn[k] * VT[(size_t)k * N + n];
    }
    T d[4];
    lstm_bwd_column(du, dc, dc_last, has_dc_last, dhs, dh, has_dh, dh_last, has_dh_last, gates, c,
                    c0, acc, s, FLIP, len, B, H, N, b, n, mode, d);
}

template <typename T>
__global__ void lstm_bwd_step_v1(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs,
                                 const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                                 const T* gates, const T* c, const T* c0, const T* VT,
                                 const int* lengths, int s, int flip, int steps, int B, int H,
                                 int N, int mode) {
    if (flip)
        lstm_bwd_step_one<true>(du, dc, dc_last, has_dc_last, dhs, dh, has_dh, dh_last,
                                has_dh_last, gates, c, c0, VT, lengths, s, steps, B, H, N, mode);
    else
        lstm_bwd_step_one<false>(du, dc, dc_last, has_dc_last, dhs, dh, has_dh, dh_last,
                                 has_dh_last, gates, c, c0, VT, lengths, s, steps, B, H, N, mode);
}

// The shared recurrent product (G = 1, K = 4H: du[t+1] @ V.T) and the epilogue, in one direction.
template <bool FLIP, typename T, int BM, int BN, int TM, int TN>
__device__ inline void lstm_bwd_step_dir(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs,
                                         const T* dh, int has_dh, const T* dh_last,
                                         int has_dh_last, const T* gates, const T* c,
                                         const T* c0, const T* VT, const int* lengths, int s,
                                         int steps, int B, int H, int N, int mode, T* As, T* Bs) {
    T acc[1][TM][TN];
    constexpr int BK = 16;  // tile depth, as in TileSmem<.., .., 16> of the kernels below
    step_tile_product<1, T, BM, BN, BK, TM, TN>(
        StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, 4 * H, steps}, VT, B, N,
        s + 1 < steps, acc, As, Bs);
    step_tile_outputs<BM, BN, TM, TN>(lengths, B, N, [&](int i, int j, int b, int n, int len) {
        T d[4];
        lstm_bwd_column(du, dc, dc_last, has_dc_last, dhs, dh, has_dh, dh_last, has_dh_last,
                        gates, c, c0, acc[0][i][j], s, FLIP, len, B, H, N, b, n, mode, d);
    });
}

template <typename T, int BM, int BN, int TM, int TN>
__device__ inline void lstm_bwd_step_tiled(T* du, T* dc, const T* dc_last, int has_dc_last,
                                           T* dhs, const T* dh, int has_dh, const T* dh_last,
                                           int has_dh_last, const T* gates, const T* c,
                                           const T* c0, const T* VT, const int* lengths, int s,
                                           int flip, int steps, int B, int H, int N, int mode,
                                           T* As, T* Bs) {
    if (flip)
        lstm_bwd_step_dir<true, T, BM, BN, TM, TN>(du, dc, dc_last, has_dc_last, dhs, dh, has_dh,
                                                   dh_last, has_dh_last, gates, c, c0, VT,
                                                   lengths, s, steps, B, H, N, mode, As, Bs);
    else
        lstm_bwd_step_dir<false, T, BM, BN, TM, TN>(du, dc, dc_last, has_dc_last, dhs, dh,
                                                    has_dh, dh_last, has_dh_last, gates, c, c0,
                                                    VT, lengths, s, steps, B, H, N, mode, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
lstm_bwd_step_v2(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs, const T* dh,
                 int has_dh, const T* dh_last, int has_dh_last, const T* gates, const T* c,
                 const T* c0, const T* VT, const int* lengths, int s, int flip, int steps, int B,
                 int H, int N, int mode) {
    __shared__ T As[TileSmem<32, 32, 16>::A_ELEMS];
    __shared__ T Bs[TileSmem<32, 32, 16>::B_ELEMS];
    lstm_bwd_step_tiled<T, 32, 32, 2, 2>(du, dc, dc_last, has_dc_last, dhs, dh, has_dh, dh_last,
                                         has_dh_last, gates, c, c0, VT, lengths, s, flip, steps,
                                         B, H, N, mode, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256, 2)
lstm_bwd_step_v3(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs, const T* dh,
                 int has_dh, const T* dh_last, int has_dh_last, const T* gates, const T* c,
                 const T* c0, const T* VT, const int* lengths, int s, int flip, int steps, int B,
                 int H, int N, int mode) {
    __shared__ T As[TileSmem<64, 64, 16>::A_ELEMS];
    __shared__ T Bs[TileSmem<64, 64, 16>::B_ELEMS];
    lstm_bwd_step_tiled<T, 64, 64, 4, 4>(du, dc, dc_last, has_dc_last, dhs, dh, has_dh, dh_last,
                                         has_dh_last, gates, c, c0, VT, lengths, s, flip, steps,
                                         B, H, N, mode, As, Bs);
}

// acc (B, N): the product (LSTM_BWD_FULL, LSTM_BWD_DHS; absent at s = T-1: has_acc = 0) or dm
// (LSTM_BWD_FROM_DM, N = H).
template <typename T>
__global__ void __launch_bounds__(256)
lstm_bwd_step_v4(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs, const T* dh,
                 int has_dh, const T* dh_last, int has_dh_last, const T* gates, const T* c,
                 const T* c0, const T* acc, int has_acc, T* state, const int* lengths, int s,
                 int flip, int B, int H, int N, int mode) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * N) return;
    const int b = (int)(i / N), n = (int)(i % N), len = lengths[b];
    const T sum = has_acc ? acc[i] : T(0);
    T d[4];
    if (mode == LSTM_BWD_FROM_DM)
        lstm_bwd_out(du, dc, dc_last, has_dc_last, gates, c, c0, sum, s, flip, len, B, H, b, n, d);
    else
        lstm_bwd_column(du, dc, dc_last, has_dc_last, dhs, dh, has_dh, dh_last, has_dh_last,
                        gates, c, c0, sum, s, flip, len, B, H, N, b, n, mode, d);
    if (flip && s < len && mode != LSTM_BWD_DHS) {  // padded: the carry (or zeros) stays
        T* row = state + (size_t)b * 4 * H + n;
        row[0] = d[0];
        row[H] = d[1];
        row[2 * H] = d[2];
        row[3 * H] = d[3];
    }
}
