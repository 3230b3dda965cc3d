// kernels/elman_bwd_step.cu — one reverse step of BPTT through the Elman recurrence (docs/architecture.md §1)
//   du[t] = (dh[t] + [t == last(b)] dh_last + du[t+1] @ V.T) * f'(h[t]),  du[T] = 0
//   last(b) = lengths[b] - 1; du[t, b, :] = 0 where t >= lengths[b] (padding passes no gradient)
// Shapes, row-major: du (T, B, H) output, written row t per launch (reads row t+1); dh (T, B, H)
//   or absent (has_dh = 0, any pointer); dh_last (B, H) or absent (has_dh_last = 0); h (T, B, H)
//   the forward outputs (f' is computed from them); VT (H, H) = V.T, contiguous;
//   lengths (B,) int32 in 1..T (the backend passes T everywhere when none is given).
// flip = 1 (the backward of a reversed run): launch s works on t = step_time<true>(s, lengths[b])
//   for batch row b (step_order.cuh), reads the row the launch s+1 wrote for b (du[t-1]) and
//   takes dh_last at s = lengths[b]-1 (t = 0). flip = 0: t = s. Each kernel branches once on flip
//   into a FLIP body, so the forward direction's body carries no per-row addressing.
// Launch (one launch per step, s = T-1 down to 0):
//   v1: grid (ceil(H/64), ceil(B/4)), block (64, 4); thread -> output (b, j), one dot product.
//   v2: grid (ceil(H/32), ceil(B/32)), block (16, 16); 32x32 tile, 2x2 per thread (tile_gemm.cuh).
//   v3: grid (ceil(H/64), ceil(B/64)), block (16, 16); 64x64 tile, 4x4 per thread.
//   v4: acc = du[t+1] @ V.T by cuBLAS (the backend; has_acc = 0 at t = T-1), then this kernel's
//       fused epilogue: grid (ceil(B*H/256)), block (256); thread -> (b, j). acc (B, H). flip = 1
//       also writes the step's du rows to state (B, H), which the next launch's product reads.
// Types: float, double (template T). Names: elman_bwd_step_v1<float>, ..._v4<double>.
// Every version ends in the cell's epilogue elman_bwd_value (elman_common.cuh); v2 and v3 take the
//   shared product step_tile_product<1> (tile_gemm.cuh).
#include "elman_common.cuh"
#include "tile_gemm.cuh"

template <bool FLIP, typename T>
__device__ inline void elman_bwd_step_one(T* du, const T* dh, int has_dh, const T* dh_last,
                                          int has_dh_last, const T* h, const T* VT,
                                          const int* lengths, int s, int steps, int B, int H,
                                          int act) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int b = blockIdx.y * blockDim.y + threadIdx.y;
    if (b >= B || j >= H) return;
    const int len = lengths[b], t = step_time<FLIP>(s, len);
    T acc = T(0);
    if (s + 1 < steps) {
        const T* dn = StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, H, steps}.row(b);
        for (int k = 0; k < H; ++k) acc += dn[k] * VT[(size_t)k * H + j];
    }
    du[((size_t)t * B + b) * H + j] =
        elman_bwd_value(acc, dh, has_dh, dh_last, has_dh_last, h, t, s, len, B, H, b, j, act);
}

template <typename T>
__global__ void elman_bwd_step_v1(T* du, const T* dh, int has_dh, const T* dh_last,
                                  int has_dh_last, const T* h, const T* VT, const int* lengths,
                                  int s, int flip, int steps, int B, int H, int act) {
    if (flip)
        elman_bwd_step_one<true>(du, dh, has_dh, dh_last, has_dh_last, h, VT, lengths, s, steps,
                                 B, H, act);
    else
        elman_bwd_step_one<false>(du, dh, has_dh, dh_last, has_dh_last, h, VT, lengths, s, steps,
                                  B, H, act);
}

// The shared recurrent product (G = 1, du[t+1] @ V.T) and the Elman epilogue, in one direction.
template <bool FLIP, typename T, int BM, int BN, int TM, int TN>
__device__ inline void elman_bwd_step_dir(T* du, const T* dh, int has_dh, const T* dh_last,
                                            int has_dh_last, const T* h, const T* VT,
                                            const int* lengths, int s, int steps, int B, int H,
                                            int act, T* As, T* Bs) {
    T acc[1][TM][TN];
    constexpr int BK = 16;  // tile depth, as in TileSmem<.., .., 16> of the kernels below
    step_tile_product<1, T, BM, BN, BK, TM, TN>(
        StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, H, steps}, VT, B, H, s + 1 < steps, acc, As,
        Bs);
    step_tile_outputs<BM, BN, TM, TN>(lengths, B, H, [&](int i, int j, int b, int n, int len) {
        const int t = step_time<FLIP>(s, len);
        du[((size_t)t * B + b) * H + n] = elman_bwd_value(acc[0][i][j], dh, has_dh, dh_last,
                                                          has_dh_last, h, t, s, len, B, H, b, n,
                                                          act);
    });
}

// The tiled kernels' body: one branch on the (launch-uniform) direction.
template <typename T, int BM, int BN, int TM, int TN>
__device__ inline void elman_bwd_step_tiled(T* du, const T* dh, int has_dh, const T* dh_last,
                                            int has_dh_last, const T* h, const T* VT,
                                            const int* lengths, int s, int flip, int steps,
                                            int B, int H, int act, T* As, T* Bs) {
    if (flip)
        elman_bwd_step_dir<true, T, BM, BN, TM, TN>(du, dh, has_dh, dh_last, has_dh_last, h, VT,
                                                    lengths, s, steps, B, H, act, As, Bs);
    else
        elman_bwd_step_dir<false, T, BM, BN, TM, TN>(du, dh, has_dh, dh_last, has_dh_last, h, VT,
                                                     lengths, s, steps, B, H, act, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
elman_bwd_step_v2(T* du, const T* dh, int has_dh, const T* dh_last, int has_dh_last, const T* h,
                  const T* VT, const int* lengths, int s, int flip, int steps, int B, int H,
                  int act) {
    __shared__ T As[TileSmem<32, 32, 16>::A_ELEMS];
    __shared__ T Bs[TileSmem<32, 32, 16>::B_ELEMS];
    elman_bwd_step_tiled<T, 32, 32, 2, 2>(du, dh, has_dh, dh_last, has_dh_last, h, VT, lengths, s,
                                          flip, steps, B, H, act, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256, 2)
elman_bwd_step_v3(T* du, const T* dh, int has_dh, const T* dh_last, int has_dh_last, const T* h,
                  const T* VT, const int* lengths, int s, int flip, int steps, int B, int H,
                  int act) {
    __shared__ T As[TileSmem<64, 64, 16>::A_ELEMS];
    __shared__ T Bs[TileSmem<64, 64, 16>::B_ELEMS];
    elman_bwd_step_tiled<T, 64, 64, 4, 4>(du, dh, has_dh, dh_last, has_dh_last, h, VT, lengths, s,
                                          flip, steps, B, H, act, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
elman_bwd_step_v4(T* du, const T* acc, int has_acc, T* state, const T* dh, int has_dh,
                  const T* dh_last, int has_dh_last, const T* h, const int* lengths, int s,
                  int flip, int B, int H, int act) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * H) return;
    const int b = (int)(i / H), n = (int)(i % H), len = lengths[b], t = step_time(s, len, flip);
    const T v = elman_bwd_value(has_acc ? acc[i] : T(0), dh, has_dh, dh_last, has_dh_last, h, t,
                                s, len, B, H, b, n, act);
    du[(size_t)t * B * H + i] = v;
    if (flip && s < len) state[i] = v;  // a padded step leaves the carry (or zeros)
}
