// kernels/step_order.cuh — the order in which a recurrence visits its time steps, for any cell
//   and algorithm (step kernels through tile_gemm.cuh, persistent kernels through
//   persistent_common.cuh; docs/architecture.md §1). Forward, step s is time s for every batch
//   row.
//   Flipped (the reversed direction of a bidirectional layer), each batch row runs from its own
//   last valid step down: row b's step s is t = lengths[b]-1-s while s < lengths[b], then its
//   padded steps t = s in order, so that every (t, b) is visited once and nothing is copied.
// Types: float, double (template T).
#pragma once

// The time index batch row b works on at step s of a recurrence: s forward; flipped (a reversed
// run), each example from its last valid step down, len-1-s while s < len, then s (its padded
// steps, in order), so that every t is visited once.
__device__ inline int step_time(int s, int len, int flip) {
    return flip && s < len ? len - 1 - s : s;
}

// The state after step s of a recurrence as a (B, K) operand: row b is seq[step_time(s, len_b,
// flip), b] of seq (steps, B, K) row-major, or init[b] of init (B, K) for s < 0. Forward
// (flip = 0) it is seq[s] itself; flipped, each row reads its own time index.
template <typename T>
struct StepState {
    const T* seq;
    const T* init;
    const int* lengths;
    int s, B, K, flip;
    __device__ const T* row(int b) const {
        if (s < 0) return init + (size_t)b * K;
        return seq + ((size_t)step_time(s, flip ? lengths[b] : 0, flip) * B + b) * K;
    }
    __device__ T operator()(int b, int k) const { return row(b)[k]; }
};
