// kernels/elman_bwd_step_tc.cu — one reverse step of BPTT through the Elman recurrence on the
//   tensor cores (docs/architecture.md §1, precision modes):
//   du[t] = (dh[t] + [t == last(b)] dh_last + du[t+1] @ V.T) * f'(h[t]), as elman_bwd_step.cu
//   (the same arguments, lengths, flip and padding), in a precision mode:
//   T = __nv_bfloat16 / __half: du, dh, dh_last, h, VT stored in S; the product of the T operands
//       on mma m16n8k16, accumulated in float32; the sum with dh, f' and the product in float32;
//       du[t] rounded once to T on store (round to nearest even).
//   T = float (TF32): du[t+1] and V.T rounded by to_tf32 as they enter the product (m16n8k8).
// Shapes, row-major: du (T, B, H) output (row t per launch, reads row t+1); dh (T, B, H) or absent
//   (has_dh = 0); dh_last (B, H) or absent; h (T, B, H); VT (H, H) = V.T contiguous; lengths (B,).
// Launch (one launch per step, s = T-1 down to 0):
//   tc1: grid (ceil(H/64), ceil(B/32)), block (32, 4); as elman_fwd_step_tc.cu (tc_step.cuh).
// Types: T = __nv_bfloat16, __half, or float (TF32); names: elman_bwd_step_tc1<__nv_bfloat16>, <__half>, <float> (TF32).
#include "elman_common.cuh"
#include "storage16.cuh"
#include "tc_step.cuh"

template <bool FLIP, typename T>
__device__ inline void elman_bwd_step_tc_dir(T* du, const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                                             const T* h, const T* VT, const int* lengths, int s, int steps,
                                             int B, int H, int act, TcChunk<T, 1>& sm) {
    float acc[1][TC_NT][4];
    tc_step_product(acc, StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, H}, VT, B, H, H, s + 1 < steps,
                    sm);
#pragma unroll
    for (int j = 0; j < TC_NT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int b = tc_row(i), n = tc_col(j, i);
            if (b < B && n < H) {
                const int len = lengths[b], t = step_time<FLIP>(s, len);
                store_rounded(du + ((size_t)t * B + b) * H + n,
                              elman_bwd_value(acc[0][j][i], dh, has_dh, dh_last, has_dh_last, h, t, s, len, B, H,
                                              b, n, act));
            }
        }
}

template <typename T>
__global__ void __launch_bounds__(32 * TC_WARPS)
elman_bwd_step_tc1(T* du, const T* dh, int has_dh, const T* dh_last, int has_dh_last, const T* h, const T* VT,
                   const int* lengths, int s, int flip, int steps, int B, int H, int act) {
    __shared__ TcChunk<T, 1> sm;
    if (flip)
        elman_bwd_step_tc_dir<true>(du, dh, has_dh, dh_last, has_dh_last, h, VT, lengths, s, steps, B, H, act,
                                    sm);
    else
        elman_bwd_step_tc_dir<false>(du, dh, has_dh, dh_last, has_dh_last, h, VT, lengths, s, steps, B, H, act,
                                     sm);
}
