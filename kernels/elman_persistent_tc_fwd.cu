// kernels/elman_persistent_tc_fwd.cu — the whole Elman forward recurrence in one cooperative
//   launch, its product on the tensor cores, for 16-bit storage or TF32 (docs/persistent.md,
//   "Tensor cores")
//   h[t] = f(p[t] + h[t-1] @ V) for t = 0..steps-1,  h[-1] = h0,  p = x @ W + b precomputed (in S);
//   h[t, b, :] = 0 where t >= lengths[b] (padding). The sum h[t-1] @ V is accumulated in float32 by
//   mma.m16n8k16 on S operands, p + s and f in float32, rounded once to S on store (the numpy
//   reference's rounding points: precision.py).
// Shapes, row-major, as elman_persistent_fwd.cu: h (steps, B, H) holds p on entry and h on exit;
//   h0 (B, H); V (H, H); lengths (B,) int32 in 1..steps; flip = 1 for a reversed run (step_order.cuh).
// Launch: cooperative; grid (ceil(H / cols), 1, 1), all co-resident (one block per multiprocessor);
//   block (256, 1, 1); dynamic shared memory (cols + min(B, 16)) * ld * sizeof(T) + PTC_RED * 4
//   bytes, ld = H padded to whole 32-byte k-steps and 16 bytes more, in elements of T
//   (persistent_tc.cuh has the layout and the warps' tiles).
//   Block g keeps columns g*cols .. of V (as S) on chip for all steps and writes those columns of
//   h[t]; batch chunks of 16 rows (B > 16: several per step). status (1,) int32 as
//   persist_grid_covers (persistent_common.cuh).
// Versions: v1 (the only one) mma (m16n8k16, TF32 m16n8k8) by ldmatrix from the slice in shared
//   memory.
// Types: __nv_bfloat16, __half (template T), and float in TF32 mode (m16n8k8 on operands rounded
//   by to_tf32 as they enter shared memory; the outputs float32). Names:
//   elman_persistent_tc_fwd_v1<__nv_bfloat16>, ..._v1<__half>, ..._v1<float>.
#include "elman_common.cuh"
#include "persistent_tc.cuh"

// The Elman forward as a tensor-core persistent cell (ptc_recurrence): the product reads the state
// of step s-1 (h0 at s = 0); the epilogue is elman_fwd_out's, in float32, rounded once to T.
template <typename T, bool FLIP>
struct ElmanPtcFwd {
    T* h;
    const T* h0;
    const int* lengths;
    int B, H, act;
    __device__ bool has_prev(int) const { return true; }
    __device__ StepState<T, FLIP> prev(int s) const {
        return StepState<T, FLIP>{h, h0, lengths, s - 1, B, H};
    }
    __device__ void operator()(int s, int b, int j, int len, float acc) const {
        T* out = h + ((size_t)step_time<FLIP>(s, len) * B + b) * H + j;
        *out = ptc_round<T>(s < len ? act_apply(act, ptc_float(*out) + acc) : 0.0f);
    }
};

template <bool FLIP, typename T>
__device__ inline void ptc_fwd_dir(T* h, const T* h0, const T* V, const int* lengths, int steps,
                                   int B, int H, int cols, int act, int* status) {
    ptc_recurrence<false>(V, true, lengths, steps, B, H, cols, status,
                          ElmanPtcFwd<T, FLIP>{h, h0, lengths, B, H, act});
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_tc_fwd_v1(T* h, const T* h0, const T* V, const int* lengths, int steps, int B,
                           int H, int cols, int act, int flip, int* status) {
    if (flip)
        ptc_fwd_dir<true>(h, h0, V, lengths, steps, B, H, cols, act, status);
    else
        ptc_fwd_dir<false>(h, h0, V, lengths, steps, B, H, cols, act, status);
}
