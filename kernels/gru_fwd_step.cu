// kernels/gru_fwd_step.cu — one forward step of the GRU recurrence (docs/architecture.md §1)
//   [hr|hz|hn] = h[t-1] @ V + b_h,  r = σ(p_r + hr),  z = σ(p_z + hz),  n = tanh(p_n + r·hn),
//   h[t] = (1 - z)·n + z·h[t-1],  h[-1] = h0,  p = x @ W + b_x precomputed for all t by one GEMM;
//   h[t, b, :] = 0 and gates[t, b, :] = 0 where t >= lengths[b] (padding)
// Shapes, row-major: h (T, B, H) output, row t written per launch (row t-1 read, or h0 at t = 0);
//   gates (T, B, 4H) output, row t = [r|z|n|hn] (gru_common.cuh); p (T, B, 3H); h0 (B, H);
//   V (H, 3H); bh (3H,) or absent (has_bh = 0, any pointer); lengths (B,) int32 in 1..T.
// flip = 1 (a reversed run): launch s works on t = step_time<true>(s, lengths[b]) for batch row b
//   (step_order.cuh) and reads the row the launch s-1 wrote for b (h[t+1]), h0 at s = 0.
//   flip = 0: t = s. Each kernel branches once on flip into a FLIP body.
// One launch computes, for the hidden units its block owns, the recurrent product of all 3 gates
// and the whole cell update: thread -> unit (b, j), its 3 sums in its own registers.
// Launch (one launch per step s = 0..T-1, in order):
//   v1: grid (ceil(H/64), ceil(B/4)), block (64, 4); thread -> unit (b, j), three dot products,
//       V read straight from global memory (coalesced along j). For tiny batches.
//   v2: grid (ceil(H/32), ceil(B/32)), block (16, 16); 32x32 tile of units, 2x2 per thread,
//       h[t-1] and the tile's 3 gate columns of V staged in shared memory (tile_gemm.cuh).
//   v3: grid (ceil(H/64), ceil(B/64)), block (16, 16); 64x64 tile of units, 4x4 per thread.
//   v4: the product acc = h[t-1] @ V by cuBLAS (the backend), then this kernel's fused epilogue
//       (b_h, gates, h, the mask): grid (ceil(B*H/256)), block (256); thread -> (b, j).
//       For large batches; acc (B, 3H) contiguous. flip = 1 also writes the step's state to
//       state (B, H), which the next step's product reads.
// Types: float, double (template T). Names: gru_fwd_step_v1<float>, ..._v4<double>.
// Every version ends in the cell's epilogue gru_fwd_out (gru_common.cuh); v2 and v3 take the
//   shared product step_tile_product<3> (tile_gemm.cuh).
#include "gru_common.cuh"
#include "tile_gemm.cuh"

template <bool FLIP, typename T>
__device__ inline void gru_fwd_step_one(T* h, T* gates, const T* p, const T* h0, const T* V,
                                        const T* bh, int has_bh, const int* lengths, int s, int B,
                                        int H) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int b = blockIdx.y * blockDim.y + threadIdx.y;
    if (b >= B || j >= H) return;
    const int len = lengths[b];
    const T* hp = StepState<T, FLIP>{h, h0, lengths, s - 1, B, H}.row(b);
    T acc[3] = {T(0), T(0), T(0)};
    if (s < len) {  // a padded step needs no product
        for (int k = 0; k < H; ++k) {
            const T x = hp[k];
            const T* v = V + (size_t)k * 3 * H + j;
            acc[0] += x * v[0];
            acc[1] += x * v[H];
            acc[2] += x * v[2 * H];
        }
    }
    gru_fwd_out(h, gates, p, bh, has_bh, hp, acc, step_time<FLIP>(s, len), s < len, B, H, b, j);
}

template <typename T>
__global__ void gru_fwd_step_v1(T* h, T* gates, const T* p, const T* h0, const T* V, const T* bh,
                                int has_bh, const int* lengths, int s, int flip, int B, int H) {
    if (flip) gru_fwd_step_one<true>(h, gates, p, h0, V, bh, has_bh, lengths, s, B, H);
    else gru_fwd_step_one<false>(h, gates, p, h0, V, bh, has_bh, lengths, s, B, H);
}

// The shared recurrent product over the 3 gates and the GRU epilogue, in one direction.
template <bool FLIP, typename T, int BM, int BN, int TM, int TN>
__device__ inline void gru_fwd_step_dir(T* h, T* gates, const T* p, const T* h0, const T* V,
                                        const T* bh, int has_bh, const int* lengths, int s, int B,
                                        int H, T* As, T* Bs) {
    T acc[3][TM][TN];
    constexpr int BK = 16;  // tile depth, as in TileSmem<.., .., 16, 3> of the kernels below
    const StepState<T, FLIP> prev{h, h0, lengths, s - 1, B, H};
    step_tile_product<3, T, BM, BN, BK, TM, TN>(prev, V, B, H, true, acc, As, Bs);
    step_tile_outputs<BM, BN, TM, TN>(lengths, B, H, [&](int i, int j, int b, int n, int len) {
        const T sums[3] = {acc[0][i][j], acc[1][i][j], acc[2][i][j]};
        gru_fwd_out(h, gates, p, bh, has_bh, prev.row(b), sums, step_time<FLIP>(s, len), s < len,
                    B, H, b, n);
    });
}

// The tiled kernels' body: one branch on the (launch-uniform) direction.
template <typename T, int BM, int BN, int TM, int TN>
__device__ inline void gru_fwd_step_tiled(T* h, T* gates, const T* p, const T* h0, const T* V,
                                          const T* bh, int has_bh, const int* lengths, int s,
                                          int flip, int B, int H, T* As, T* Bs) {
    if (flip)
        gru_fwd_step_dir<true, T, BM, BN, TM, TN>(h, gates, p, h0, V, bh, has_bh, lengths, s, B,
                                                  H, As, Bs);
    else
        gru_fwd_step_dir<false, T, BM, BN, TM, TN>(h, gates, p, h0, V, bh, has_bh, lengths, s, B,
                                                   H, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
gru_fwd_step_v2(T* h, T* gates, const T* p, const T* h0, const T* V, const T* bh, int has_bh,
                const int* lengths, int s, int flip, int B, int H) {
    __shared__ T As[TileSmem<32, 32, 16, 3>::A_ELEMS];
    __shared__ T Bs[TileSmem<32, 32, 16, 3>::B_ELEMS];
    gru_fwd_step_tiled<T, 32, 32, 2, 2>(h, gates, p, h0, V, bh, has_bh, lengths, s, flip, B, H,
                                        As, Bs);
}

// 3 x 16 accumulators a thread: float64 spills at 2 blocks per multiprocessor, so one.
template <typename T>
__global__ void __launch_bounds__(256, 1)
gru_fwd_step_v3(T* h, T* gates, const T* p, const T* h0, const T* V, const T* bh, int has_bh,
                const int* lengths, int s, int flip, int B, int H) {
    __shared__ T As[TileSmem<64, 64, 16, 3>::A_ELEMS];
    __shared__ T Bs[TileSmem<64, 64, 16, 3>::B_ELEMS];
    gru_fwd_step_tiled<T, 64, 64, 4, 4>(h, gates, p, h0, V, bh, has_bh, lengths, s, flip, B, H,
                                        As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
gru_fwd_step_v4(T* h, T* gates, const T* p, const T* h0, const T* acc, T* state, const T* bh,
                int has_bh, const int* lengths, int s, int flip, int B, int H) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * H) return;
    const int b = (int)(i / H), n = (int)(i % H), len = lengths[b];
    const T* a = acc + (size_t)b * 3 * H + n;
    const T sums[3] = {a[0], a[H], a[2 * H]};
    const T* hp = flip ? StepState<T, true>{h, h0, lengths, s - 1, B, H}.row(b)
                       : StepState<T, false>{h, h0, lengths, s - 1, B, H}.row(b);
    const int t = step_time(s, len, flip);
    gru_fwd_out(h, gates, p, bh, has_bh, hp, sums, t, s < len, B, H, b, n);
    if (flip) state[i] = h[(size_t)t * B * H + i];
}
