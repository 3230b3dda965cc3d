// kernels/elman_common.cuh — the Elman cell (G = 1 gate): its activations and its two epilogues,
//   the one home of the cell's formulas for every Elman kernel (step v1..v4, persistent v1, v2;
//   docs/architecture.md §1). The recurrent product s that the epilogues take comes from the
//   cell-independent headers (tile_gemm.cuh, persistent_common.cuh) or, for v4, from cuBLAS.
//   act_apply(code, u)            h = f(u)
//   act_grad_from_output(code, h) f'(u) written in terms of h = f(u), so backward needs only h
//   elman_fwd_out                 h[t, b, n] = f(p[t, b, n] + s), s = (h[t-1] @ V)[b, n]
//   elman_bwd_value               du[t, b, n] = (s + dh[t, b, n] + [t = len-1] dh_last[b, n]) * f'
//                                 s = (du[t+1] @ V.T)[b, n]
//   Both are 0 from the example's length on (t >= len: padding). In a reversed run (flip) row b's
//   step s works on t = step_time<true>(s, len) (step_order.cuh), the previous state is h[t+1]
//   (du[t-1] backward), and dh_last enters at the run's last step s = len-1 (t = 0).
// Codes must equal gpu_bptt.activations.ACTIVATION_CODES (a test parses this file to check).
// A new cell (G gates: LSTM 4, GRU 3) plugs in beside this one, naming nothing in the shared
// headers: <cell>_common.cuh holds its formulas as epilogues of one output (b, n) taking the G
// sums s[g] = (h[t-1] @ V)[b, g*H + n] forward (V (H, G*H)), and the one sum
// (dgates[t+1] @ V.T)[b, n] backward (K = G*H); <cell>_fwd_step.cu and <cell>_bwd_step.cu are
// step_tile_product<G> + step_tile_outputs with that epilogue (tile_gemm.cuh; G = 1 backward);
// <cell>_persistent_{fwd,bwd}.cu are persist_recurrence<VERSION, G, REVERSE> with a small cell
// struct (has_prev, prev, the epilogue; persistent_common.cuh), as the elman_* files here.
// Types: float, double (overloads / templates); __nv_bfloat16, __half stored, float work
//   (storage16.cuh, the tensor-core step kernels).
#pragma once
#include "storage.cuh"

#define ACT_TANH 0
#define ACT_RELU 1
#define ACT_SIGMOID 2
#define ACT_IDENTITY 3

__device__ inline float act_tanh(float u) { return tanhf(u); }
__device__ inline double act_tanh(double u) { return tanh(u); }
__device__ inline float act_exp(float u) { return expf(u); }
__device__ inline double act_exp(double u) { return exp(u); }

// The code is uniform across the launch, so the switch does not diverge; passed as a constant
// (a template parameter of the caller), it folds away.
template <typename T>
__device__ inline T act_apply(int code, T u) {
    switch (code) {
    case ACT_TANH: return act_tanh(u);
    case ACT_RELU: return u > T(0) ? u : T(0);
    case ACT_SIGMOID: return T(1) / (T(1) + act_exp(-u));
    default: return u;
    }
}

template <typename T>
__device__ inline T act_grad_from_output(int code, T h) {
    switch (code) {
    case ACT_TANH: return T(1) - h * h;
    case ACT_RELU: return h > T(0) ? T(1) : T(0);
    case ACT_SIGMOID: return h * (T(1) - h);
    default: return T(1);
    }
}

// Forward, one output: *out holds p[t, b, n] on entry and h[t, b, n] on exit; valid = t < len.
// s, the product, in the work type W (storage.cuh: W(*out) and W rounded to T on store).
template <typename T, typename W>
__device__ inline void elman_fwd_out(T* out, W s, bool valid, int act) {
    store_rounded(out, valid ? act_apply(act, work_of(*out) + s) : W(0));
}

// Backward, one output: the value of du[t, b, n] at step `step` of the run (= t forward). dh
// (T, B, H) when has_dh; dh_last (B, H) when has_dh_last, entering at the last step; h (T, B, H)
// the forward outputs; len = lengths[b]. s and the value in the work type W (store_rounded).
template <typename T, typename W>
__device__ inline W elman_bwd_value(W s, const T* dh, int has_dh, const T* dh_last,
                                    int has_dh_last, const T* h, int t, int step, int len, int B,
                                    int H, int b, int n, int act) {
    if (t >= len) return W(0);
    const size_t i = ((size_t)t * B + b) * H + n;
    W g = has_dh ? work_of(dh[i]) : W(0);
    if (has_dh_last && step == len - 1) g += work_of(dh_last[(size_t)b * H + n]);
    return (s + g) * act_grad_from_output(act, work_of(h[i]));
}
