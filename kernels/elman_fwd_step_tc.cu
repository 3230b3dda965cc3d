// kernels/elman_fwd_step_tc.cu — one forward step of the Elman recurrence on the tensor cores
//   (docs/architecture.md §1, precision modes): h[t] = f(p[t] + h[t-1] @ V), as elman_fwd_step.cu
//   (the same arguments, in-place rows, lengths, flip and padding), in a precision mode:
//   T = __nv_bfloat16 / __half: h, h0, V, p stored in S; the product of the T operands on
//       mma m16n8k16, accumulated in float32; p + product and f in float32; h[t] rounded once to S
//       on store (round to nearest even).
//   T = float (TF32): the product's operands h[t-1] and V rounded by to_tf32 (cvt.rna), mma
//       m16n8k8, accumulated in float32; the rest as the float32 kernels.
// Shapes, row-major: h (T, B, H) holds p[t'] for t' >= t on entry and h[t'] for t' < t; h0 (B, H);
//   V (H, H); lengths (B,) int32 in 1..T.
// Launch (one launch per step s = 0..T-1, in order):
//   tc1: grid (ceil(H/64), ceil(B/32)), block (32, 4); a 32 x 64 output tile, each warp 16 x 32
//        (tc_step.cuh), K = H in chunks of 32 staged in shared memory.
// Types: T = __nv_bfloat16, __half, or float (TF32); names: elman_fwd_step_tc1<__nv_bfloat16>, <__half>, <float> (TF32).
#include "elman_common.cuh"
#include "storage16.cuh"
#include "tc_step.cuh"

template <int ACT, bool FLIP, typename T>
__device__ inline void elman_fwd_tc_out(T* h, const float (&acc)[1][TC_NT][4], const int* lengths, int s, int B,
                                        int H) {
#pragma unroll
    for (int j = 0; j < TC_NT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int b = tc_row(i), n = tc_col(j, i);
            if (b < B && n < H) {
                const int len = lengths[b];
                elman_fwd_out(h + ((size_t)step_time<FLIP>(s, len) * B + b) * H + n, acc[0][j][i], s < len, ACT);
            }
        }
}

template <bool FLIP, typename T>
__device__ inline void elman_fwd_step_tc_dir(T* h, const T* h0, const T* V, const int* lengths, int s, int B,
                                             int H, int act, TcChunk<T, 1>& sm) {
    float acc[1][TC_NT][4];
    tc_step_product(acc, StepState<T, FLIP>{h, h0, lengths, s - 1, B, H}, V, B, H, H, true, sm);
    switch (act) {  // launch-uniform: one branch around the whole epilogue
    case ACT_TANH: elman_fwd_tc_out<ACT_TANH, FLIP>(h, acc, lengths, s, B, H); break;
    case ACT_RELU: elman_fwd_tc_out<ACT_RELU, FLIP>(h, acc, lengths, s, B, H); break;
    case ACT_SIGMOID: elman_fwd_tc_out<ACT_SIGMOID, FLIP>(h, acc, lengths, s, B, H); break;
    default: elman_fwd_tc_out<ACT_IDENTITY, FLIP>(h, acc, lengths, s, B, H); break;
    }
}

template <typename T>
__global__ void __launch_bounds__(32 * TC_WARPS)
elman_fwd_step_tc1(T* h, const T* h0, const T* V, const int* lengths, int s, int flip, int B, int H, int act) {
    __shared__ TcChunk<T, 1> sm;
    if (flip) elman_fwd_step_tc_dir<true>(h, h0, V, lengths, s, B, H, act, sm);
    else elman_fwd_step_tc_dir<false>(h, h0, V, lengths, s, B, H, act, sm);
}
