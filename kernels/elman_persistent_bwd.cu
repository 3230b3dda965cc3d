// kernels/elman_persistent_bwd.cu — the whole reverse BPTT recurrence in one cooperative launch
//   du[t] = (dh[t] + [t == last(b)] dh_last + du[t+1] @ V.T) * f'(h[t]),  du[steps] = 0,
//   for t = steps-1 down to 0; last(b) = lengths[b] - 1; du[t, b, :] = 0 where t >= lengths[b]
//   (the conventions of elman_bwd_step.cu, so the two algorithms agree to rounding)
// Shapes, row-major: du (steps, B, H) output, every entry written; dh (steps, B, H) or absent
//   (has_dh = 0, any pointer); dh_last (B, H) or absent (has_dh_last = 0); h (steps, B, H) the
//   forward outputs (f' is computed from them); V (H, H) itself, not V.T: column j of V.T is row
//   j of V, so each block copies contiguous rows; lengths (B,) int32 in 1..steps.
// flip = 1 (the backward of a reversed run): step s works on t = step_time<true>(s, lengths[b])
//   for batch row b (step_order.cuh), reads the row step s+1 wrote for b (du[t-1]) and takes
//   dh_last at s = lengths[b]-1 (t = 0). flip = 0: t = s. Each kernel branches once on flip into
//   a FLIP body (the forward direction's has no per-row addressing).
// Launch: cooperative; grid (ceil(H / cols), 1, 1) blocks, all co-resident (one per multiprocessor);
//   block (256, 1, 1); dynamic shared memory (cols + min(B, 8)) * H * sizeof(T) bytes, plus
//   8 * 64 * sizeof(T) for v2.
//   Block g keeps rows g*cols .. of V on chip for all steps and writes those columns of du[t];
//   warp w handles its columns w, w + 8, ... (persistent_common.cuh has the mapping).
//   Steps are separated by cooperative_groups::this_grid().sync().
//   status (1,) int32: 0 on exit, or the blocks that ran when they do not cover H (nothing else
//   written; persistent_common.cuh, persist_grid_covers).
// Versions: v1 V slice in shared memory, one warp per column, lanes split k;
//   v2 (default) the same slice, the block computes 8 columns at a time with all threads
//   splitting k (fewer shared-memory reads per multiply-add; persistent_common.cuh).
// Pair: elman_persistent_bwd_pair_v1/_v2 take the forward direction's du, dh, has_dh, dh_last,
//   has_dh_last, h, V, then the reversed run's, in one cooperative launch of grid
//   (ceil(H / cols), 2, 1), as elman_persistent_fwd.cu's pair; status (2,) int32.
// Types: float, double (template T). Names: elman_persistent_bwd_v1<float>, ..._v2<double>,
//   elman_persistent_bwd_pair_v1<float>, ....
// persist_recurrence (persistent_common.cuh) with the Elman epilogue of elman_common.cuh.
#include "elman_common.cuh"
#include "persistent_common.cuh"

// The Elman backward as a persistent cell (persist_recurrence in persistent_common.cuh, reverse):
// the product reads du of step s+1 (none at s = steps-1: du[steps] = 0, but with a carry) against
// V's rows; the epilogue is elman_bwd_value (elman_common.cuh), the step kernels' own.
// carry = 1: du, dh and h have steps + 1 rows, du's last holding a later segment's carry, which
// each row's first step reads as the next step's du (StepState's `after`, step_order.cuh), as the
// step kernels do.
template <typename T, bool FLIP>
struct ElmanPersistBwd {
    T* du;
    const T* dh;
    int has_dh;
    const T* dh_last;
    int has_dh_last;
    const T* h;
    const int* lengths;
    int steps, B, H, act, carry;
    __device__ bool has_prev(int s) const { return s + 1 < steps + carry; }
    __device__ StepState<T, FLIP> prev(int s) const {
        return StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, H, steps + carry};
    }
    __device__ void operator()(int s, int b, int j, int len, const T (&acc)[1]) const {
        const int t = step_time<FLIP>(s, len);
        du[((size_t)t * B + b) * H + j] =
            elman_bwd_value(acc[0], dh, has_dh, dh_last, has_dh_last, h, t, s, len, B, H, b, j,
                            act);
    }
};

// One direction's whole backward (FLIP: that of the reversed run), as persist_recurrence runs it.
template <int VERSION, bool FLIP, typename T>
__device__ inline void persist_bwd_dir(T* du, const T* dh, int has_dh, const T* dh_last,
                                       int has_dh_last, const T* h, const T* V,
                                       const int* lengths, int steps, int B, int H, int cols,
                                       int act, int carry, int* status) {
    persist_recurrence<VERSION, 1, true>(
        V, false, lengths, steps, B, H, H, cols, status,
        ElmanPersistBwd<T, FLIP>{du, dh, has_dh, dh_last, has_dh_last, h, lengths, steps, B, H,
                                 act, carry});
}

template <int VERSION, typename T>
__device__ inline void persist_bwd(T* du, const T* dh, int has_dh, const T* dh_last,
                                   int has_dh_last, const T* h, const T* V, const int* lengths,
                                   int steps, int B, int H, int cols, int act, int flip,
                                   int carry, int* status) {
    if (flip)
        persist_bwd_dir<VERSION, true>(du, dh, has_dh, dh_last, has_dh_last, h, V, lengths, steps,
                                       B, H, cols, act, carry, status);
    else
        persist_bwd_dir<VERSION, false>(du, dh, has_dh, dh_last, has_dh_last, h, V, lengths,
                                        steps, B, H, cols, act, carry, status);
}

// Both directions' backward in one launch (grid (g, 2, 1)), as persist_fwd_pair in
// elman_persistent_fwd.cu: blockIdx.y = 0 the forward direction's, 1 the reversed run's.
template <int VERSION, typename T>
__device__ inline void persist_bwd_pair(T* du_f, const T* dh_f, int has_dh_f, const T* dh_last_f,
                                        int has_dh_last_f, const T* h_f, const T* V_f, T* du_r,
                                        const T* dh_r, int has_dh_r, const T* dh_last_r,
                                        int has_dh_last_r, const T* h_r, const T* V_r,
                                        const int* lengths, int steps, int B, int H, int cols,
                                        int act, int* status) {
    if (blockIdx.y == 0)
        persist_bwd_dir<VERSION, false>(du_f, dh_f, has_dh_f, dh_last_f, has_dh_last_f, h_f, V_f,
                                        lengths, steps, B, H, cols, act, 0, status);
    else
        persist_bwd_dir<VERSION, true>(du_r, dh_r, has_dh_r, dh_last_r, has_dh_last_r, h_r, V_r,
                                       lengths, steps, B, H, cols, act, 0, status + 1);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_bwd_v1(T* du, const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                        const T* h, const T* V, const int* lengths, int steps, int B, int H,
                        int cols, int act, int flip, int carry, int* status) {
    persist_bwd<1>(du, dh, has_dh, dh_last, has_dh_last, h, V, lengths, steps, B, H, cols, act,
                     flip, carry, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_bwd_v2(T* du, const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                        const T* h, const T* V, const int* lengths, int steps, int B, int H,
                        int cols, int act, int flip, int carry, int* status) {
    persist_bwd<2>(du, dh, has_dh, dh_last, has_dh_last, h, V, lengths, steps, B, H, cols, act,
                     flip, carry, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_bwd_pair_v1(T* du_f, const T* dh_f, int has_dh_f, const T* dh_last_f,
                             int has_dh_last_f, const T* h_f, const T* V_f, T* du_r,
                             const T* dh_r, int has_dh_r, const T* dh_last_r, int has_dh_last_r,
                             const T* h_r, const T* V_r, const int* lengths, int steps, int B,
                             int H, int cols, int act, int* status) {
    persist_bwd_pair<1>(du_f, dh_f, has_dh_f, dh_last_f, has_dh_last_f, h_f, V_f, du_r, dh_r,
                        has_dh_r, dh_last_r, has_dh_last_r, h_r, V_r, lengths, steps, B, H, cols,
                        act, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_bwd_pair_v2(T* du_f, const T* dh_f, int has_dh_f, const T* dh_last_f,
                             int has_dh_last_f, const T* h_f, const T* V_f, T* du_r,
                             const T* dh_r, int has_dh_r, const T* dh_last_r, int has_dh_last_r,
                             const T* h_r, const T* V_r, const int* lengths, int steps, int B,
                             int H, int cols, int act, int* status) {
    persist_bwd_pair<2>(du_f, dh_f, has_dh_f, dh_last_f, has_dh_last_f, h_f, V_f, du_r, dh_r,
                        has_dh_r, dh_last_r, has_dh_last_r, h_r, V_r, lengths, steps, B, H, cols,
                        act, status);
}
