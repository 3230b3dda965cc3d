// kernels/step_order.cuh — the order in which a recurrence visits its time steps, for any cell
//   and algorithm (step kernels through tile_gemm.cuh, persistent kernels through
//   persistent_common.cuh; docs/architecture.md §1). Forward, step s is time s for every batch
//   row.
//   Flipped (the reversed direction of a bidirectional layer), each batch row runs from its own
//   last valid step down: row b's step s is t = lengths[b]-1-s while s < lengths[b], then its
//   padded steps t = s in order, so that every (t, b) is visited once and nothing is copied.
// Types: float, double (template T).
#pragma once

// The direction is a compile-time choice (FLIP): a kernel takes flip at run time and branches once
// at entry into a FLIP body, so that the forward body has no per-row addressing at all.

// The time index batch row b works on at step s of a recurrence: s forward; flipped (a reversed
// run), each example from its last valid step down, len-1-s while s < len, then s (its padded
// steps, in order), so that every t is visited once.
template <bool FLIP>
__device__ inline int step_time(int s, int len) {
    return FLIP && s < len ? len - 1 - s : s;
}

// The same with the direction known only at run time (flip = 0 or 1): v4's epilogues.
__device__ inline int step_time(int s, int len, int flip) {
    return flip ? step_time<true>(s, len) : s;
}

// The state after step s of a recurrence as a (B, K) operand: row b is seq[step_time<FLIP>(s,
// len_b), b] of seq (steps, B, K) row-major, or init[b] of init (B, K) for s < 0. Forward
// (FLIP = false) it is seq[s] itself and lengths is not read; flipped, each row reads its own
// time index.
// after (a backward's operand, the gradient of the step after s: the number of rows of seq, or 0
// elsewhere): flipped, the step after a row's last one (s = len) reads seq's last row, where the
// backend puts the carry of a later segment (docs/architecture.md §1, memory), or a padded (zero)
// row of a whole run.
template <typename T, bool FLIP>
struct StepState {
    const T* seq;
    const T* init;
    const int* lengths;
    int s, B, K;
    int after;
    __device__ const T* row(int b) const {
        if (s < 0) return init + (size_t)b * K;
        if (!FLIP) return seq + ((size_t)s * B + b) * K;
        const int len = lengths[b];
        const int t = after && s == len ? after - 1 : step_time<true>(s, len);
        return seq + ((size_t)t * B + b) * K;
    }
    __device__ T operator()(int b, int k) const { return row(b)[k]; }
};
