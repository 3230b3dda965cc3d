// kernels/lstm_persistent_fwd.cu — the whole forward LSTM recurrence in one cooperative launch
//   u = p[t] + h[t-1] @ V,  [i|f|g|o] = [σ|σ|tanh|σ](u),  c[t] = f·c[t-1] + i·g,
//   m[t] = o·tanh(c[t]),  h[t] = m[t] (with a projection: h[t] = m[t] @ R)  for t = 0..steps-1;
//   h[-1] = h0, c[-1] = c0;  p = x @ W + b for all t by one GEMM;  gates, c, h = 0 where
//   t >= lengths[b] (padding)
// Shapes, row-major: gates (steps, B, 4H) holds p on entry and the activated gates on exit;
//   c (steps, B, H), h (steps, B, K) written, K = H, or P with a projection (PROJ = true:
//   R (H, P), m (B, H) scratch); h0 (B, K), c0 (B, H); V (K, 4H), gate blocks in column order;
//   lengths (B,) int32, every entry in 1..steps.
// flip = 1 (a reversed run): step s works on t = step_time<true>(s, lengths[b]) for batch row b
//   (step_order.cuh) and reads the rows step s-1 wrote for b (h0, c0 at s = 0). flip = 0: t = s.
//   Each kernel branches once on flip into a FLIP body.
// Launch: cooperative; grid (ceil(H / cols), 1, 1) blocks, all co-resident (one per
//   multiprocessor);
//   block (256, 1, 1); dynamic shared memory (4 * cols + min(B, 8)) * H * sizeof(T) bytes, plus
//   8 * 64 * sizeof(T) for v2 (the backend passes the larger backward need). With a projection,
//   (4 * cols * P + pcols * H + min(B, 8) * max(P, H)) * sizeof(T) (+ v2's), pcols = the
//   block's columns of h (P over the grid).
//   Block g owns hidden units g*cols .. and keeps all 4 gate columns of V for them on chip for
//   all steps, so the cell update of a unit needs nothing from another block: c[t-1] of a unit is
//   read back from c by the block that wrote it, and one grid barrier separates the steps. With
//   a projection a step has a second phase after a second barrier: block g computes columns
//   g*pcols .. of h[t] = m @ R, keeping those columns of R on chip.
//   status (1,) int32: 0 on exit, or the blocks that ran when they do not cover H (nothing else
//   written; persistent_common.cuh, persist_grid_covers).
// Versions: v1 one warp per unit, lanes split k; v2 (default) the block computes 8 units at a
//   time with all threads splitting k, once per gate (persistent_common.cuh).
// Types: float, double (template T); PROJ false, true (without, with a projection).
//   Names: lstm_persistent_fwd_v1<float, false>, ..._v2<double, true>.
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

// With a projection (P > 0) a step has two phases, each ending in a grid barrier: the block's
// units (cols of them, from V (P, 4H) in shared memory) write the gates, c and m = o·tanh(c) to
// m (B, H); then its columns of h (pcols of them, from R (H, P) in shared memory) compute
// h[t] = m @ R. Shared memory: V's slice [4][cols][P], R's [pcols][H], a chunk of max(P, H).
template <int VERSION, bool FLIP, typename T>
__device__ inline void lstm_persist_fwd_proj(T* gates, T* c, T* h, T* m, const T* h0,
                                             const T* c0, const T* V, const T* R,
                                             const int* lengths, int steps, int B, int H, int P,
                                             int cols, int pcols, int* status) {
    if (!persist_grid_covers(status, H, cols)) return;
    if ((long long)gridDim.x * pcols < P) {  // uniform: every block returns
        if (blockIdx.x == 0 && threadIdx.x == 0) *status = (int)gridDim.x;
        return;
    }
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    T* const Wv = reinterpret_cast<T*>(persist_smem);
    T* const Wr = Wv + (size_t)4 * cols * P;
    T* const xs = Wr + (size_t)pcols * H;
    T* const red = xs + (size_t)min(B, PERSIST_BATCH) * max(P, H);
    const PersistSlice<T> units = persist_slice_in<4>(Wv, xs, red, V, H, P, cols, true);
    const PersistSlice<T> outs = persist_slice_in<1>(Wr, xs, red, R, P, H, pcols, true);
    for (int s = 0; s < steps; ++s) {
        for (int b0 = 0; b0 < B; b0 += PERSIST_BATCH) {
            const int nb = min(PERSIST_BATCH, B - b0);
            __syncthreads();  // the slices are loaded and the previous chunk's reads of xs done
            persist_stage(xs, StepState<T, FLIP>{h, h0, lengths, s - 1, B, P}, b0, nb, P);
            __syncthreads();
            persist_chunk<VERSION, 4>(units, cols, P, b0, nb, true, lengths,
                                      [&](int b, int j, int len, const T (&acc)[4]) {
                                          m[(size_t)b * H + j] = lstm_fwd_out(
                                              gates, c, c0, acc, s, FLIP, len, B, H, b, j);
                                      });
        }
        grid.sync();  // m of every unit
        for (int b0 = 0; b0 < B; b0 += PERSIST_BATCH) {
            const int nb = min(PERSIST_BATCH, B - b0);
            __syncthreads();
            persist_stage(xs, StepState<T, false>{m, m, lengths, 0, B, H}, b0, nb, H);
            __syncthreads();
            persist_chunk<VERSION, 1>(outs, pcols, H, b0, nb, true, lengths,
                                      [&](int b, int k, int len, const T (&acc)[1]) {
                                          h[((size_t)step_time<FLIP>(s, len) * B + b) * P + k] =
                                              s < len ? acc[0] : T(0);
                                      });
        }
        if (s + 1 < steps) grid.sync();  // h[t] complete before the next step reads it
    }
}

// PROJ (P > 0): with the projection R, m, P, pcols (unused without: an instance per case, so
// that each has the registers of its own path).
template <int VERSION, bool PROJ, typename T>
__device__ inline void lstm_persist_fwd(T* gates, T* c, T* h, T* m, const T* h0, const T* c0,
                                        const T* V, const T* R, const int* lengths, int steps,
                                        int B, int H, int P, int cols, int pcols, int flip,
                                        int* status) {
    if constexpr (PROJ) {
        if (flip)
            lstm_persist_fwd_proj<VERSION, true>(gates, c, h, m, h0, c0, V, R, lengths, steps, B,
                                                 H, P, cols, pcols, status);
        else
            lstm_persist_fwd_proj<VERSION, false>(gates, c, h, m, h0, c0, V, R, lengths, steps,
                                                  B, H, P, cols, pcols, status);
    } else if (flip) {
        persist_recurrence<VERSION, 4, false>(
            V, true, lengths, steps, B, H, H, cols, status,
            LstmPersistFwd<T, true>{gates, c, h, h0, c0, lengths, B, H});
    } else {
        persist_recurrence<VERSION, 4, false>(
            V, true, lengths, steps, B, H, H, cols, status,
            LstmPersistFwd<T, false>{gates, c, h, h0, c0, lengths, B, H});
    }
}

template <typename T, bool PROJ>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
lstm_persistent_fwd_v1(T* gates, T* c, T* h, T* m, const T* h0, const T* c0, const T* V,
                       const T* R, const int* lengths, int steps, int B, int H, int P, int cols,
                       int pcols, int flip, int* status) {
    lstm_persist_fwd<1, PROJ>(gates, c, h, m, h0, c0, V, R, lengths, steps, B, H, P, cols,
                              pcols, flip, status);
}

template <typename T, bool PROJ>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
lstm_persistent_fwd_v2(T* gates, T* c, T* h, T* m, const T* h0, const T* c0, const T* V,
                       const T* R, const int* lengths, int steps, int B, int H, int P, int cols,
                       int pcols, int flip, int* status) {
    lstm_persist_fwd<2, PROJ>(gates, c, h, m, h0, c0, V, R, lengths, steps, B, H, P, cols,
                              pcols, flip, status);
}
