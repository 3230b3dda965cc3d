// kernels/elman_common.cuh — activation functions shared by the Elman step kernels (docs/architecture.md §1)
//   act_apply(code, u)            h = f(u)
//   act_grad_from_output(code, h) f'(u) written in terms of h = f(u), so backward needs only h
// Codes must equal gpu_bptt.activations.ACTIVATION_CODES (a test parses this file to check).
// Types: float, double (overloads / templates).
#pragma once

#define ACT_TANH 0
#define ACT_RELU 1
#define ACT_SIGMOID 2
#define ACT_IDENTITY 3

__device__ inline float act_tanh(float u) { return tanhf(u); }
__device__ inline double act_tanh(double u) { return tanh(u); }
__device__ inline float act_exp(float u) { return expf(u); }
__device__ inline double act_exp(double u) { return exp(u); }

// The code is uniform across the launch, so the switch does not diverge.
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
