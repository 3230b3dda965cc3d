// kernels/elman_persistent_tc_bwd.cu — the whole reverse BPTT recurrence of the Elman cell in one
//   cooperative launch, its product on the tensor cores, for 16-bit storage (docs/persistent.md,
//   "Tensor cores")
//   du[t] = (dh[t] + [t == last(b)] dh_last + du[t+1] @ V.T) * f'(h[t]),  du[steps] = 0,
//   for t = steps-1 down to 0; du[t, b, :] = 0 where t >= lengths[b]. du[t+1] @ V.T accumulated in
//   float32 by mma.m16n8k16 on S operands; the sum with dh and dh_last, f'(h) and the product in
//   float32, rounded once to S on store (the numpy reference's rounding points: precision.py).
// Shapes, row-major, as elman_persistent_bwd.cu: du (steps, B, H) output; dh (steps, B, H) or
//   absent (has_dh = 0); dh_last (B, H) or absent (has_dh_last = 0); h (steps, B, H); V (H, H)
//   itself (block g copies rows g*cols .. of V: columns of V.T); lengths (B,) int32 in 1..steps;
//   flip = 1 for the backward of a reversed run.
// Launch: as elman_persistent_tc_fwd.cu (same grid, block and dynamic shared memory).
// Versions: v1 (the only one) mma (m16n8k16, TF32 m16n8k8) by ldmatrix from the slice in shared
//   memory.
// Types: __nv_bfloat16, __half (template T), and float in TF32 mode (m16n8k8 on operands rounded
//   by to_tf32 as they enter shared memory; the outputs float32). Names:
//   elman_persistent_tc_bwd_v1<__nv_bfloat16>, ..._v1<__half>, ..._v1<float>.
#include "elman_common.cuh"
#include "persistent_tc.cuh"

// The Elman backward as a tensor-core persistent cell (ptc_recurrence, reverse): the product reads
// du of step s+1 (none at s = steps-1) against V's rows; the epilogue is elman_bwd_value's, in
// float32, rounded once to T.
template <typename T, bool FLIP>
struct ElmanPtcBwd {
    T* du;
    const T* dh;
    int has_dh;
    const T* dh_last;
    int has_dh_last;
    const T* h;
    const int* lengths;
    int steps, B, H, act;
    __device__ bool has_prev(int s) const { return s + 1 < steps; }
    __device__ StepState<T, FLIP> prev(int s) const {
        return StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, H};
    }
    __device__ void operator()(int s, int b, int j, int len, float acc) const {
        const int t = step_time<FLIP>(s, len);
        const size_t i = ((size_t)t * B + b) * H + j;
        float v = 0.0f;
        if (t < len) {
            float g = has_dh ? ptc_float(dh[i]) : 0.0f;
            if (has_dh_last && s == len - 1) g += ptc_float(dh_last[(size_t)b * H + j]);
            v = (acc + g) * act_grad_from_output(act, ptc_float(h[i]));
        }
        du[i] = ptc_round<T>(v);
    }
};

template <bool FLIP, typename T>
__device__ inline void ptc_bwd_dir(T* du, const T* dh, int has_dh, const T* dh_last,
                                   int has_dh_last, const T* h, const T* V, const int* lengths,
                                   int steps, int B, int H, int cols, int act, int* status) {
    ptc_recurrence<true>(V, false, lengths, steps, B, H, cols, status,
                         ElmanPtcBwd<T, FLIP>{du, dh, has_dh, dh_last, has_dh_last, h, lengths,
                                              steps, B, H, act});
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_tc_bwd_v1(T* du, const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                           const T* h, const T* V, const int* lengths, int steps, int B, int H,
                           int cols, int act, int flip, int* status) {
    if (flip)
        ptc_bwd_dir<true>(du, dh, has_dh, dh_last, has_dh_last, h, V, lengths, steps, B, H, cols,
                          act, status);
    else
        ptc_bwd_dir<false>(du, dh, has_dh, dh_last, has_dh_last, h, V, lengths, steps, B, H, cols,
                           act, status);
}
