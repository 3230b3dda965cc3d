// kernels/gru_bwd_step_tc.cu — one reverse step of BPTT through the GRU recurrence on the tensor
//   cores (docs/architecture.md §1, precision modes): as gru_bwd_step.cu (the same arguments,
//   shapes, lengths, flip and padding; the formulas: gru_common.cuh, gru_bwd_out), in a precision
//   mode:
//   T = __nv_bfloat16 / __half: dg, gn, zd, dh, dh_last, h, h0, gates, VT stored in T; the product
//       dgh[t+1] @ V.T (K = 3H) of the stored values on mma m16n8k16, accumulated in float32; the
//       gate derivatives in float32, each stored value rounded once to T (dgh's n block from the
//       stored gn, as the numpy reference rounds it).
//   T = float (TF32): dgh[t+1] and V.T rounded by to_tf32 as they enter the product (m16n8k8).
// Shapes: as gru_bwd_step.cu's, in T.
// Launch (one launch per step, s = T-1 down to 0):
//   tc1: grid (ceil(H/64), ceil(B/32)), block (32, 4); as gru_fwd_step_tc.cu, G = 1 (tc_step.cuh).
// Types: T = __nv_bfloat16, __half, or float (TF32); names: gru_bwd_step_tc1<__nv_bfloat16>, <__half>, <float> (TF32).
#include "gru_common.cuh"
#include "storage16.cuh"
#include "tc_step.cuh"

template <bool FLIP, typename T>
__device__ inline void gru_bwd_step_tc_dir(T* dg, T* gn, T* zd, const T* dh, int has_dh, const T* dh_last,
                                           int has_dh_last, const T* h, const T* h0, const T* gates, const T* VT,
                                           const int* lengths, int s, int steps, int B, int H,
                                           TcChunk<T, 1>& sm) {
    float acc[1][TC_NT][4];
    tc_step_product(acc, StepState<T, FLIP>{dg, nullptr, lengths, s + 1, B, 3 * H}, VT, B, 3 * H, H,
                    s + 1 < steps, sm);
    const StepState<T, FLIP> prev{h, h0, lengths, s - 1, B, H};
#pragma unroll
    for (int j = 0; j < TC_NT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int b = tc_row(i), n = tc_col(j, i);
            if (b < B && n < H) {
                const int len = lengths[b];
                gru_bwd_out(dg, gn, zd, acc[0][j][i], dh, has_dh, dh_last, has_dh_last, gates, prev.row(b),
                            step_time<FLIP>(s, len), s, len, B, H, b, n);
            }
        }
}

template <typename T>
__global__ void __launch_bounds__(32 * TC_WARPS)
gru_bwd_step_tc1(T* dg, T* gn, T* zd, const T* dh, int has_dh, const T* dh_last, int has_dh_last, const T* h,
                 const T* h0, const T* gates, const T* VT, const int* lengths, int s, int flip, int steps, int B,
                 int H) {
    __shared__ TcChunk<T, 1> sm;
    if (flip)
        gru_bwd_step_tc_dir<true>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0, gates, VT, lengths, s,
                                  steps, B, H, sm);
    else
        gru_bwd_step_tc_dir<false>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0, gates, VT, lengths, s,
                                   steps, B, H, sm);
}
