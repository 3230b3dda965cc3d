// kernels/lstm_persistent_fwd.cu — the whole forward LSTM recurrence in one cooperative launch
//   u = p[t] + h[t-1] @ V,  [i|f|g|o] = [σ|σ|tanh|σ](u),  c[t] = f·c[t-1] + i·g,
//   h[t] = o·tanh(c[t])  for t = 0..steps-1;  h[-1] = h0, c[-1] = c0;  p = x @ W + b for all t
//   by one GEMM;  gates, c, h = 0 where t >= lengths[b] (padding). No projection (proj_size):
//   the backend refuses a persistent plan with one.
// Shapes, row-major: gates (steps, B, 4H) holds p on entry and the activated gates on exit; c,
//   h (steps, B, H) written; h0, c0 (B, H); V (H, 4H), gate blocks in column order;
//   lengths (B,) int32, every entry in 1..steps.
// flip = 1 (a reversed run): step s works on t = step_time<true>(s, lengths[b]) for batch row b
//   (step_order.cuh) and reads the rows step s-1 wrote for b (h0, c0 at s = 0). flip = 0: t = s.
//   Each kernel branches once on flip into a FLIP body.
// Launch: cooperative; grid (ceil(H / cols), 1, 1) blocks, all co-resident (one per
//   multiprocessor);
//   block (256, 1, 1); dynamic shared memory (4 * cols + min(B, 8)) * H * sizeof(T) bytes, plus
//   8 * 64 * sizeof(T) for v2 (the backend passes the larger backward need).
//   Block g owns hidden units g*cols .. and keeps all 4 gate columns of V for them on chip for
//   all steps, so the cell update of a unit needs nothing from another block: c[t-1] of a unit is
//   read back from c by the block that wrote it, and one grid barrier separates the steps.
//   status (1,) int32: 0 on exit, or the blocks that ran when they do not cover H (nothing else
//   written; persistent_common.cuh, persist_grid_covers).
// Versions: v1 one warp per unit, lanes split k; v2 (default) the block computes 8 units at a
//   time with all threads splitting k, once per gate (persistent_common.cuh).
// Types: float, double (template T). Names: lstm_persistent_fwd_v1<float>, ..._v2<double>.
// persist_recurrence<VERSION, 4, false> (persistent_common.cuh) with the epilogue of
// lstm_common.cuh.
#include "lstm_common.cuh"
#include "persistent_common.cuh"

// The LSTM forward as a persistent cell: the product reads h of step s-1 (h0 at s = 0); the
// epilogue is lstm_fwd_out (lstm_common.cuh), the step kernels' own.
template <typename T, bool FLIP>
struct LstmPersistFwd {
    T* gates;
    T* c;
    T* h;
    const T* h0;
    const T* c0;
    const int* lengths;
    int B, H;
    __device__ bool has_prev(int) const { return true; }
    __device__ StepState<T, FLIP> prev(int s) const {
        return StepState<T, FLIP>{h, h0, lengths, s - 1, B, H};
    }
    __device__ void operator()(int s, int b, int j, int len, const T (&acc)[4]) const {
        h[((size_t)step_time<FLIP>(s, len) * B + b) * H + j] =
            lstm_fwd_out(gates, c, c0, acc, s, FLIP, len, B, H, b, j);
    }
};

template <int VERSION, typename T>
__device__ inline void lstm_persist_fwd(T* gates, T* c, T* h, const T* h0, const T* c0,
                                        const T* V, const int* lengths, int steps, int B, int H,
                                        int cols, int flip, int* status) {
    if (flip)
        persist_recurrence<VERSION, 4, false>(
            V, true, lengths, steps, B, H, H, cols, status,
            LstmPersistFwd<T, true>{gates, c, h, h0, c0, lengths, B, H});
    else
        persist_recurrence<VERSION, 4, false>(
            V, true, lengths, steps, B, H, H, cols, status,
            LstmPersistFwd<T, false>{gates, c, h, h0, c0, lengths, B, H});
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
lstm_persistent_fwd_v1(T* gates, T* c, T* h, const T* h0, const T* c0, const T* V,
                       const int* lengths, int steps, int B, int H, int cols, int flip,
                       int* status) {
    lstm_persist_fwd<1>(gates, c, h, h0, c0, V, lengths, steps, B, H, cols, flip, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
lstm_persistent_fwd_v2(T* gates, T* c, T* h, const T* h0, const T* c0, const T* V,
                       const int* lengths, int steps, int B, int H, int cols, int flip,
                       int* status) {
    lstm_persist_fwd<2>(gates, c, h, h0, c0, V, lengths, steps, B, H, cols, flip, status);
}
