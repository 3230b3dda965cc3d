// kernels/gru_bwd_step.cu — one reverse step of BPTT through the GRU recurrence
//   (docs/architecture.md §1; the formulas: gru_common.cuh, gru_bwd_out)
//   dhs[t] = dh[t] + [t == last(b)] dh_last + dgh[t+1] @ V.T + dhs[t+1]·z[t+1],
//   dgh[t] = [gr | gz | gn·r] from dhs[t] and the saved gates; dgh[T] = 0, last(b) = lengths[b]-1;
//   everything 0 where t >= lengths[b] (padding passes no gradient)
// One launch fuses the product by V.T (G = 1, K = 3H: all 3 gates' gradients of the step before)
// with the gate derivatives and the z·dhs carry of the hidden units its block owns.
// Shapes, row-major: dg (T, B, 3H) output, row t = dgh[t] written per launch (row t+1 read);
//   gn (T, B, H) output, row t = gn (the n block of the gradient on p; the backend moves it into
//   dg after the loop); zd (B, H) the carry dhs·z, zeros before the first launch, read and
//   rewritten by each; dh (T, B, H) or absent (has_dh = 0, any pointer); dh_last (B, H) or absent
//   (has_dh_last = 0); h (T, B, H), h0 (B, H) and gates (T, B, 4H) from the forward;
//   VT (3H, H) = V.T, contiguous; lengths (B,) int32 in 1..T.
// flip = 1 (the backward of a reversed run): launch s works on t = step_time<true>(s, lengths[b])
//   for batch row b (step_order.cuh), reads the row the launch s+1 wrote for b (dgh[t-1]) and the
//   forward state h[t+1] (h0 at s = 0), and takes dh_last at s = lengths[b]-1 (t = 0).
//   flip = 0: t = s. Each kernel branches once on flip into a FLIP body.
// Launch (one launch per step, s = T-1 down to 0):
//   v1: grid (ceil(H/64), ceil(B/4)), block (64, 4); thread -> unit (b, j), one dot product of
//       length 3H.
//   v2: grid (ceil(H/32), ceil(B/32)), block (16, 16); 32x32 tile, 2x2 per thread (tile_gemm.cuh).
//   v3: grid (ceil(H/64), ceil(B/64)), block (16, 16); 64x64 tile, 4x4 per thread.
//   v4: acc = dgh[t+1] @ V.T by cuBLAS (the backend; has_acc = 0 at s = T-1), then this kernel's
//       fused epilogue: grid (ceil(B*H/256)), block (256); thread -> (b, j). acc (B, H). flip = 1
//       also writes the step's dgh rows to state (B, 3H), which the next launch's product reads.
// Types: float, double (template T). Names: gru_bwd_step_v1<float>, ..._v4<double>.
// Every version ends in the cell's epilogue gru_bwd_out (gru_common.cuh); v2 and v3 take the
//   shared product step_tile_product<1> (tile_gemm.cuh).
#include "gru_common.cuh"
#include "tile_gemm.cuh"

template <bool FLIP, typename T>
__device__ inline void gru_bwd_step_one(T* dg, T* gn, T* zd, const T* dh, int has_dh,
                                        const T* dh_last, int has_dh_last, const T* h,
                                        const T* h0, const T* gates, const T* VT,
                                        const int* lengths, int s, int steps, int B, int H) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int b = blockIdx.y * blockDim.y + threadIdx.y;
    if (b >= B || j >= H) return;
    const int len = lengths[b], t = step_time<FLIP>(s, len);
    T acc = T(0);
    if (s + 1 < steps) {
        const T* dn = StepState<T, FLIP>{dg, nullptr, lengths, s + 1, B, 3 * H, steps}.row(b);
        for (int k = 0; k < 3 * H; ++k) acc += dn[k] * VT[(size_t)k * H + j];
    }
    const T* hp = StepState<T, FLIP>{h, h0, lengths, s - 1, B, H}.row(b);
    gru_bwd_out(dg, gn, zd, acc, dh, has_dh, dh_last, has_dh_last, gates, hp, t, s, len, B, H, b,
                j);
}

template <typename T>
__global__ void gru_bwd_step_v1(T* dg, T* gn, T* zd, const T* dh, int has_dh, const T* dh_last,
                                int has_dh_last, const T* h, const T* h0, const T* gates,
                                const T* VT, const int* lengths, int s, int flip, int steps, int B,
                                int H) {
    if (flip)
        gru_bwd_step_one<true>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0, gates, VT,
                               lengths, s, steps, B, H);
    else
        gru_bwd_step_one<false>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0, gates, VT,
                                lengths, s, steps, B, H);
}

// The shared recurrent product (G = 1, K = 3H: dgh[t+1] @ V.T) and the GRU epilogue, in one
// direction.
template <bool FLIP, typename T, int BM, int BN, int TM, int TN>
__device__ inline void gru_bwd_step_dir(T* dg, T* gn, T* zd, const T* dh, int has_dh,
                                        const T* dh_last, int has_dh_last, const T* h,
                                        const T* h0, const T* gates, const T* VT,
                                        const int* lengths, int s, int steps, int B, int H, T* As,
                                        T* Bs) {
    T acc[1][TM][TN];
    constexpr int BK = 16;  // tile depth, as in TileSmem<.., .., 16> of the kernels below
    step_tile_product<1, T, BM, BN, BK, TM, TN>(
        StepState<T, FLIP>{dg, nullptr, lengths, s + 1, B, 3 * H, steps}, VT, B, H,
        s + 1 < steps, acc, As, Bs);
    const StepState<T, FLIP> prev{h, h0, lengths, s - 1, B, H};
    step_tile_outputs<BM, BN, TM, TN>(lengths, B, H, [&](int i, int j, int b, int n, int len) {
        gru_bwd_out(dg, gn, zd, acc[0][i][j], dh, has_dh, dh_last, has_dh_last, gates,
                    prev.row(b), step_time<FLIP>(s, len), s, len, B, H, b, n);
    });
}

// The tiled kernels' body: one branch on the (launch-uniform) direction.
template <typename T, int BM, int BN, int TM, int TN>
__device__ inline void gru_bwd_step_tiled(T* dg, T* gn, T* zd, const T* dh, int has_dh,
                                          const T* dh_last, int has_dh_last, const T* h,
                                          const T* h0, const T* gates, const T* VT,
                                          const int* lengths, int s, int flip, int steps, int B,
                                          int H, T* As, T* Bs) {
    if (flip)
        gru_bwd_step_dir<true, T, BM, BN, TM, TN>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last,
                                                  h, h0, gates, VT, lengths, s, steps, B, H, As,
                                                  Bs);
    else
        gru_bwd_step_dir<false, T, BM, BN, TM, TN>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last,
                                                   h, h0, gates, VT, lengths, s, steps, B, H, As,
                                                   Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
gru_bwd_step_v2(T* dg, T* gn, T* zd, const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                const T* h, const T* h0, const T* gates, const T* VT, const int* lengths, int s,
                int flip, int steps, int B, int H) {
    __shared__ T As[TileSmem<32, 32, 16>::A_ELEMS];
    __shared__ T Bs[TileSmem<32, 32, 16>::B_ELEMS];
    gru_bwd_step_tiled<T, 32, 32, 2, 2>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0,
                                        gates, VT, lengths, s, flip, steps, B, H, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256, 2)
gru_bwd_step_v3(T* dg, T* gn, T* zd, const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                const T* h, const T* h0, const T* gates, const T* VT, const int* lengths, int s,
                int flip, int steps, int B, int H) {
    __shared__ T As[TileSmem<64, 64, 16>::A_ELEMS];
    __shared__ T Bs[TileSmem<64, 64, 16>::B_ELEMS];
    gru_bwd_step_tiled<T, 64, 64, 4, 4>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0,
                                        gates, VT, lengths, s, flip, steps, B, H, As, Bs);
}

template <typename T>
__global__ void __launch_bounds__(256)
gru_bwd_step_v4(T* dg, T* gn, T* zd, const T* acc, int has_acc, T* state, const T* dh, int has_dh,
                const T* dh_last, int has_dh_last, const T* h, const T* h0, const T* gates,
                const int* lengths, int s, int flip, int B, int H) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * H) return;
    const int b = (int)(i / H), n = (int)(i % H), len = lengths[b], t = step_time(s, len, flip);
    const T* hp = flip ? StepState<T, true>{h, h0, lengths, s - 1, B, H}.row(b)
                       : StepState<T, false>{h, h0, lengths, s - 1, B, H}.row(b);
    gru_bwd_out(dg, gn, zd, has_acc ? acc[i] : T(0), dh, has_dh, dh_last, has_dh_last, gates, hp,
                t, s, len, B, H, b, n);
    if (flip && s < len) {  // a padded step leaves the carry (or zeros) in state
        const T* d = dg + ((size_t)t * B + b) * 3 * H + n;
        T* st = state + (size_t)b * 3 * H + n;
        st[0] = d[0];
        st[H] = d[H];
        st[2 * H] = d[2 * H];
    }
}
