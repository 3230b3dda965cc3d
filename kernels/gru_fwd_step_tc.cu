// kernels/gru_fwd_step_tc.cu — one forward step of the GRU recurrence on the tensor cores
//   (docs/architecture.md §1, precision modes): as gru_fwd_step.cu (the same arguments, shapes,
//   lengths, flip and padding; the formulas: gru_common.cuh, gru_fwd_out), in a precision mode:
//   T = __nv_bfloat16 / __half: h, gates, p, h0, V, bh stored in T; the 3 gates' products of the
//       stored values on mma m16n8k16, accumulated in float32; the cell update in float32; h[t] and
//       gates[t] = [r|z|n|hn] each rounded once to T on store.
//   T = float (TF32): h[t-1] and V rounded by to_tf32 as they enter the product (m16n8k8).
// Shapes: as gru_fwd_step.cu's, in T.
// Launch (one launch per step s = 0..T-1, in order):
//   tc1: grid (ceil(H/64), ceil(B/32)), block (32, 4); a 32 x 64 tile of units, the product of its
//        3 gate column blocks of V (tc_step.cuh, G = 3), each warp 16 x 32 units.
// Types: T = __nv_bfloat16, __half, or float (TF32); names: gru_fwd_step_tc1<__nv_bfloat16>, <__half>, <float> (TF32).
#include "gru_common.cuh"
#include "storage16.cuh"
#include "tc_step.cuh"

template <bool FLIP, typename T>
__device__ inline void gru_fwd_step_tc_dir(T* h, T* gates, const T* p, const T* h0, const T* V, const T* bh,
                                           int has_bh, const int* lengths, int s, int B, int H,
                                           TcChunk<T, 3>& sm) {
    float acc[3][TC_NT][4];
    const StepState<T, FLIP> prev{h, h0, lengths, s - 1, B, H};
    tc_step_product(acc, prev, V, B, H, H, true, sm);
#pragma unroll
    for (int j = 0; j < TC_NT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int b = tc_row(i), n = tc_col(j, i);
            if (b < B && n < H) {
                const int len = lengths[b];
                const float sums[3] = {acc[0][j][i], acc[1][j][i], acc[2][j][i]};
                gru_fwd_out(h, gates, p, bh, has_bh, prev.row(b), sums, step_time<FLIP>(s, len), s < len, B, H,
                            b, n);
            }
        }
}

template <typename T>
__global__ void __launch_bounds__(32 * TC_WARPS)
gru_fwd_step_tc1(T* h, T* gates, const T* p, const T* h0, const T* V, const T* bh, int has_bh,
                 const int* lengths, int s, int flip, int B, int H) {
    __shared__ TcChunk<T, 3> sm;
    if (flip) gru_fwd_step_tc_dir<true>(h, gates, p, h0, V, bh, has_bh, lengths, s, B, H, sm);
    else gru_fwd_step_tc_dir<false>(h, gates, p, h0, V, bh, has_bh, lengths, s, B, H, sm);
}
