// kernels/elman_fwd_step.cu — one forward step of the Elman recurrence (docs/architecture.md §1)
//   h[t] = f(p[t] + h[t-1] @ V),  h[-1] = h0,  p = x @ W + b precomputed for all t by one GEMM
//   h[t, b, :] = 0 where t >= lengths[b] (padding)
// Shapes, row-major: h (T, B, H) holds p[t'] for t' >= t on entry and h[t'] for t' < t; step t
//   overwrites row t in place (it reads row t-1, or h0 at t = 0). h0 (B, H); V (H, H);
//   lengths (B,) int32, every entry in 1..T (the backend passes T everywhere when none is given).
// flip = 1 (a reversed run): launch s works on t = step_time<true>(s, lengths[b]) for batch row b
//   (step_order.cuh): lengths[b]-1-s while s < lengths[b], then the padded t = s; it reads the row
//   the launch s-1 wrote for b (h[t+1]), h0 at s = 0. flip = 0: t = s. Each kernel branches once
//   on flip into a FLIP body, so the forward body carries no per-row addressing.
// Launch (one launch per step s = 0..T-1, in order):
//   v1: grid (ceil(H/64), ceil(B/4)), block (64, 4); thread -> output (b, j), one dot product,
//       V read straight from global memory (coalesced along j). For tiny batches.
//   v2: grid (ceil(H/32), ceil(B/32)), block (16, 16); 32x32 output tile, 2x2 per thread,
//       h[t-1] and V tiles staged in shared memory (tile_gemm.cuh).
//   v3: grid (ceil(H/64), ceil(B/64)), block (16, 16); 64x64 output tile, 4x4 per thread.
//   v4: the product acc = h[t-1] @ V by cuBLAS (the backend), then this kernel's fused epilogue
//       h[t] = f(p[t] + acc) with the mask: grid (ceil(B*H/256)), block (256); thread -> (b, j).
//       For large batches, where a tuned GEMM beats our tiles; acc (B, H) contiguous. flip = 1
//       also writes the step's state to state (B, H), which the next step's product reads.
// The activation runs in the epilogue; the activation code is gpu_bptt.activations.ACTIVATION_CODES.
// Types: float, double (template T). Names: elman_fwd_step_v1<float>, ..._v4<double>.
// Every version ends in the cell's epilogue elman_fwd_out (elman_common.cuh); v2 and v3 take the
//   shared product step_tile_product<1> (tile_gemm.cuh).
#include "elman_common.cuh"
#include "tile_gemm.cuh"

template <bool FLIP, typename T>
__device__ inline void elman_fwd_step_one(T* h, const T* h0, const T* V, const int* lengths, int s,
                                          int B, int H, int act) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int b = blockIdx.y * blockDim.y + threadIdx.y;
    if (b >= B || j >= H) return;
    const int len = lengths[b];
    const T* hp = StepState<T, FLIP>{h, h0, lengths, s - 1, B, H}.row(b);
    T* out = h + ((size_t)step_time<FLIP>(s, len) * B + b) * H + j;
    if (s < len) {  // a padded step needs no product
        T acc = T(0);
        for (int k = 0; k < H; ++k) acc += hp[k] * V[(size_t)k * H + j];
        elman_fwd_out(out, acc, true, act);
    } else {
        elman_fwd_out(out, T(0), false, act);
    }
}

template <typename T>
__global__ void elman_fwd_step_v1(T* h, const T* h0, const T* V, const int* lengths, int s,
                                  int flip, int B, int H, int act) {
    if (flip) elman_fwd_step_one<true>(h, h0, V, lengths, s, B, H, act);
    else elman_fwd_step_one<false>(h, h0, V, lengths, s, B, H, act);
}

// The epilogue over the thread's tile of outputs, for one activation.
template <int ACT, bool FLIP, typename T, int BM, int BN, int TM, int TN>
__device__ inline void elman_fwd_tile_out(T* h, const T (&acc)[1][TM][TN], const int* lengths,
                                          int s, int B, int H) {
    step_tile_outputs<BM, BN, TM, TN>(lengths, B, H, [&](int i, int j, int b, int n, int len) {
        elman_fwd_out(h + ((size_t)step_time<FLIP>(s, len) * B + b) * H + n, acc[0][i][j],
                      s < len, ACT);
    });
}

// The shared recurrent product (G = 1) and the Elman epilogue, in one direction.
template <bool FLIP, typename T, int BM, int BN, int TM, int TN>
__device__ inline void elman_fwd_step_dir(T* h, const T* h0, const T* V, const int* lengths,
                                            int s, int B, int H, int act, T* As, T* Bs) {
    T acc[1][TM][TN];
    constexpr int BK = 16;  // tile depth, as in TileSmem<.., .., 16> of the kernels below
    step_tile_product<1, T, BM, BN, BK, TM, TN>(StepState<T, FLIP>{h, h0, lengths, s - 1, B, H},
                                                V, B, H, true, acc, As, Bs);
    // One branch on the (launch-uniform) activation around the whole epilogue keeps the unrolled
    // loop free of switches; with a switch per element ptxas spilled at sm_80.
    switch (act) {
    case ACT_TANH: elman_fwd_tile_out<ACT_TANH, FLIP, T, BM, BN, TM, TN>(h, acc, lengths, s, B, H); break;
    case ACT_RELU: elman_fwd_tile_out<ACT_RELU, FLIP, T, BM, BN, TM, TN>(h, acc, lengths, s, B, H); break;
    case ACT_SIGMOID: elman_fwd_tile_out<ACT_SIGMOID, FLIP, T, BM, BN, TM, TN>(h, acc, lengths, s, B, H); break;
    default: elman_fwd_tile_out<ACT_IDENTITY, FLIP, T, BM, BN, TM, TN>(h, acc, lengths, s, B, H); break;
    }
}

// The tiled kernels' body: one branch on the (launch-uniform) direction.
template <typename T, int BM, int BN, int TM, int TN>
__device__ inline void elman_fwd_step_tiled(T* h, const T* h0, const T* V, const int* lengths,
                                            int s, int flip, int B, int H, int act, T* As,
                                            T* Bs) {
    if (flip) elman_fwd_step_dir<true, T, BM, BN, TM, TN>(h, h0, V, lengths, s, B, H, act, As, Bs);
    else elman_fwd_step_dir<false, T, BM, BN, TM, TN>(h, h0, V, lengths, s, B, H, act, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
elman_fwd_step_v2(T* h, const T* h0, const T* V, const int* lengths, int s, int flip, int B, int H,
                  int act) {
    __shared__ T As[TileSmem<32, 32, 16>::A_ELEMS];
    __shared__ T Bs[TileSmem<32, 32, 16>::B_ELEMS];
    elman_fwd_step_tiled<T, 32, 32, 2, 2>(h, h0, V, lengths, s, flip, B, H, act, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256, 2)
elman_fwd_step_v3(T* h, const T* h0, const T* V, const int* lengths, int s, int flip, int B, int H,
                  int act) {
    __shared__ T As[TileSmem<64, 64, 16>::A_ELEMS];
    __shared__ T Bs[TileSmem<64, 64, 16>::B_ELEMS];
    elman_fwd_step_tiled<T, 64, 64, 4, 4>(h, h0, V, lengths, s, flip, B, H, act, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
elman_fwd_step_v4(T* h, const T* acc, T* state, const int* lengths, int s, int flip, int B, int H,
                  int act) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * H) return;
    const int b = (int)(i / H), len = lengths[b];
    T* out = h + (size_t)step_time(s, len, flip) * B * H + i;
    elman_fwd_out(out, acc[i], s < len, act);
    if (flip) state[i] = *out;
}
