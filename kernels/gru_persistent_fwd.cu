// kernels/gru_persistent_fwd.cu — the whole forward GRU recurrence in one cooperative launch
//   (the math of gru_fwd_step.cu, for t = 0..steps-1; formulas in gru_common.cuh, gru_fwd_out)
//   h[t] = (1 - z)·n + z·h[t-1],  h[-1] = h0,  p = x @ W + b_x precomputed for all t by one GEMM;
//   h[t, b, :] = 0 and gates[t, b, :] = 0 where t >= lengths[b] (padding)
// Shapes, row-major: h (steps, B, H) output; gates (steps, B, 4H) output = [r|z|n|hn];
//   p (steps, B, 3H); h0 (B, H); V (H, 3H); bh (3H,) or absent (has_bh = 0, any pointer);
//   lengths (B,) int32, every entry in 1..steps.
// flip = 1 (a reversed run): step s works on t = step_time<true>(s, lengths[b]) for batch row b
//   (step_order.cuh) and reads the row step s-1 wrote for b (h[t+1]; h0 at s = 0). flip = 0: t = s.
//   Each kernel branches once on flip into a FLIP body.
// Launch: cooperative; grid (ceil(H / cols), 1, 1) blocks, all co-resident (one per multiprocessor);
//   block (256, 1, 1); dynamic shared memory (3 * cols + min(B, 8)) * H * sizeof(T) bytes, plus
//   8 * 64 * sizeof(T) for v2.
//   Block g owns hidden units g*cols .. and keeps all 3 gate columns of V for them on chip for all
//   steps (persist_recurrence with G = 3), so the cell update of its units is local: one grid
//   barrier per step, as Elman's. Steps are separated by cooperative_groups::this_grid().sync().
//   status (1,) int32: 0 on exit, or the blocks that ran when they do not cover H (nothing else
//   written; persistent_common.cuh, persist_grid_covers).
// Versions: v1 one warp per unit and gate, lanes split k; v2 (default) the block computes 8 units
//   at a time per gate with all threads splitting k (persistent_common.cuh).
// Types: float, double (template T). Names: gru_persistent_fwd_v1<float>, ..._v2<double>.
#include "gru_common.cuh"
#include "persistent_common.cuh"

// The GRU forward as a persistent cell (persist_recurrence in persistent_common.cuh): the product
// reads the state of step s-1 (h0 at s = 0) against the 3 gate columns of V; the epilogue is
// gru_fwd_out (gru_common.cuh).
template <typename T, bool FLIP>
struct GruPersistFwd {
    T* h;
    T* gates;
    const T* p;
    const T* h0;
    const T* bh;
    int has_bh;
    const int* lengths;
    int B, H;
    __device__ bool has_prev(int) const { return true; }
    __device__ StepState<T, FLIP> prev(int s) const {
        return StepState<T, FLIP>{h, h0, lengths, s - 1, B, H};
    }
    __device__ void operator()(int s, int b, int j, int len, const T (&acc)[3]) const {
        gru_fwd_out(h, gates, p, bh, has_bh, prev(s).row(b), acc, step_time<FLIP>(s, len),
                    s < len, B, H, b, j);
    }
};

template <int VERSION, typename T>
__device__ inline void persist_gru_fwd(T* h, T* gates, const T* p, const T* h0, const T* V,
                                       const T* bh, int has_bh, const int* lengths, int steps,
                                       int B, int H, int cols, int flip, int* status) {
    if (flip)
        persist_recurrence<VERSION, 3, false>(
            V, true, lengths, steps, B, H, H, cols, status,
            GruPersistFwd<T, true>{h, gates, p, h0, bh, has_bh, lengths, B, H});
    else
        persist_recurrence<VERSION, 3, false>(
            V, true, lengths, steps, B, H, H, cols, status,
            GruPersistFwd<T, false>{h, gates, p, h0, bh, has_bh, lengths, B, H});
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
gru_persistent_fwd_v1(T* h, T* gates, const T* p, const T* h0, const T* V, const T* bh,
                      int has_bh, const int* lengths, int steps, int B, int H, int cols, int flip,
                      int* status) {
    persist_gru_fwd<1>(h, gates, p, h0, V, bh, has_bh, lengths, steps, B, H, cols, flip, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
gru_persistent_fwd_v2(T* h, T* gates, const T* p, const T* h0, const T* V, const T* bh,
                      int has_bh, const int* lengths, int steps, int B, int H, int cols, int flip,
                      int* status) {
    persist_gru_fwd<2>(h, gates, p, h0, V, bh, has_bh, lengths, steps, B, H, cols, flip, status);
}
