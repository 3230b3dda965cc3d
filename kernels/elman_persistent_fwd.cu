// kernels/elman_persistent_fwd.cu — the whole forward Elman recurrence in one cooperative launch
//   h[t] = f(p[t] + h[t-1] @ V) for t = 0..steps-1,  h[-1] = h0,  p = x @ W + b precomputed for
//   all t by one GEMM;  h[t, b, :] = 0 where t >= lengths[b] (padding)
// Shapes, row-major: h (steps, B, H) holds p on entry and h on exit (row t is overwritten once
//   row t-1 is final, as in elman_fwd_step.cu); h0 (B, H); V (H, H);
//   lengths (B,) int32, every entry in 1..steps (the backend passes steps when none is given).
// flip = 1 (a reversed run): step s works on t = step_time<true>(s, lengths[b]) for batch row b
//   (step_order.cuh) and reads the row step s-1 wrote for b (h[t+1]; h0 at s = 0). flip = 0: t = s.
//   Each kernel branches once on flip into a FLIP body (the forward one: no per-row addressing).
// Launch: cooperative; grid (ceil(H / cols), 1, 1) blocks, all co-resident (one per multiprocessor);
//   block (256, 1, 1); dynamic shared memory (cols + min(B, 8)) * H * sizeof(T) bytes, plus
//   8 * 64 * sizeof(T) for v2.
//   Block g keeps columns g*cols .. of V on chip for all steps and writes those columns of h[t];
//   warp w of a block handles its columns w, w + 8, ... (persistent_common.cuh has the mapping).
//   Steps are separated by cooperative_groups::this_grid().sync().
//   status (1,) int32: 0 on exit, or the blocks that ran when they do not cover H (nothing else
//   written; persistent_common.cuh, persist_grid_covers).
// Versions: v1 V slice in shared memory, one warp per column, lanes split k;
//   v2 (default) the same slice, the block computes 8 columns at a time with all threads
//   splitting k (fewer shared-memory reads per multiply-add; persistent_common.cuh).
// Pair (both directions of a bidirectional layer at once): elman_persistent_fwd_pair_v1/_v2 take
//   the forward direction's h, h0, V, then the reversed one's, one cooperative launch of grid
//   (ceil(H / cols), 2, 1): blockIdx.y = 0 runs the forward direction, 1 the reversed one, each
//   as its own launch would; status (2,) int32, one word per direction.
// Types: float, double (template T). Names: elman_persistent_fwd_v1<float>, ..._v2<double>,
//   elman_persistent_fwd_pair_v1<float>, ....
// persist_recurrence (persistent_common.cuh) with the Elman epilogue of elman_common.cuh.
#include "elman_common.cuh"
#include "persistent_common.cuh"

// The Elman forward as a persistent cell (persist_recurrence in persistent_common.cuh): the
// product reads the state of step s-1 (h0 at s = 0); the epilogue is elman_fwd_out
// (elman_common.cuh).
template <typename T, bool FLIP>
struct ElmanPersistFwd {
    T* h;
    const T* h0;
    const int* lengths;
    int B, H, act;
    __device__ bool has_prev(int) const { return true; }
    __device__ StepState<T, FLIP> prev(int s) const {
        return StepState<T, FLIP>{h, h0, lengths, s - 1, B, H};
    }
    __device__ void operator()(int s, int b, int j, int len, const T (&acc)[1]) const {
        elman_fwd_out(h + ((size_t)step_time<FLIP>(s, len) * B + b) * H + j, acc[0], s < len, act);
    }
};

// One direction's whole forward (FLIP: the reversed one), as persist_recurrence runs it.
template <int VERSION, bool FLIP, typename T>
__device__ inline void persist_fwd_dir(T* h, const T* h0, const T* V, const int* lengths,
                                       int steps, int B, int H, int cols, int act, int* status) {
    persist_recurrence<VERSION, 1, false>(V, true, lengths, steps, B, H, H, cols, status,
                                          ElmanPersistFwd<T, FLIP>{h, h0, lengths, B, H, act});
}

template <int VERSION, typename T>
__device__ inline void persist_fwd(T* h, const T* h0, const T* V, const int* lengths, int steps,
                                   int B, int H, int cols, int act, int flip, int* status) {
    if (flip)
        persist_fwd_dir<VERSION, true>(h, h0, V, lengths, steps, B, H, cols, act, status);
    else
        persist_fwd_dir<VERSION, false>(h, h0, V, lengths, steps, B, H, cols, act, status);
}

// Both directions of a bidirectional layer in one launch (grid (g, 2, 1)): blockIdx.y = 0 runs
// the forward direction on (h_f, h0_f, V_f), blockIdx.y = 1 the reversed one on (h_r, h0_r, V_r),
// each exactly as its own launch would (same body, same columns per block), with status[0] and
// status[1] its grid checks. Both halves reach one grid barrier per step, so they share the grid's.
template <int VERSION, typename T>
__device__ inline void persist_fwd_pair(T* h_f, const T* h0_f, const T* V_f, T* h_r,
                                        const T* h0_r, const T* V_r, const int* lengths,
                                        int steps, int B, int H, int cols, int act, int* status) {
    if (blockIdx.y == 0)
        persist_fwd_dir<VERSION, false>(h_f, h0_f, V_f, lengths, steps, B, H, cols, act, status);
    else
        persist_fwd_dir<VERSION, true>(h_r, h0_r, V_r, lengths, steps, B, H, cols, act,
                                       status + 1);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_fwd_v1(T* h, const T* h0, const T* V, const int* lengths, int steps, int B, int H,
                        int cols, int act, int flip, int* status) {
    persist_fwd<1>(h, h0, V, lengths, steps, B, H, cols, act, flip, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_fwd_v2(T* h, const T* h0, const T* V, const int* lengths, int steps, int B, int H,
                        int cols, int act, int flip, int* status) {
    persist_fwd<2>(h, h0, V, lengths, steps, B, H, cols, act, flip, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_fwd_pair_v1(T* h_f, const T* h0_f, const T* V_f, T* h_r, const T* h0_r,
                             const T* V_r, const int* lengths, int steps, int B, int H, int cols,
                             int act, int* status) {
    persist_fwd_pair<1>(h_f, h0_f, V_f, h_r, h0_r, V_r, lengths, steps, B, H, cols, act, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_fwd_pair_v2(T* h_f, const T* h0_f, const T* V_f, T* h_r, const T* h0_r,
                             const T* V_r, const int* lengths, int steps, int B, int H, int cols,
                             int act, int* status) {
    persist_fwd_pair<2>(h_f, h0_f, V_f, h_r, h0_r, V_r, lengths, steps, B, H, cols, act, status);
}
