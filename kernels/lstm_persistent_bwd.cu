// kernels/lstm_persistent_bwd.cu — the whole reverse BPTT recurrence of the LSTM in one
//   cooperative launch, for t = steps-1 down to 0 (the conventions and formulas of
//   lstm_bwd_step.cu, so the two algorithms agree to rounding):
//   dhs = dh[t] + [t == last(b)] dh_last + du[t+1] @ V.T;  dm = dhs (with a projection:
//   dhs @ R.T);  tc = tanh(c[t]);  dc = dc·f (from step t+1) + [t == last(b)] dc_last
//   + dm·o·(1 - tc²);  du[t] = [dc·g·i(1-i) | dc·c[t-1]·f(1-f) | dc·i·(1-g²) | dm·tc·o(1-o)];
//   du[steps] = 0
//   last(b) = lengths[b] - 1; du[t, b, :] = 0 where t >= lengths[b]
// Shapes, row-major: du (steps, B, 4H) output, every entry written; dc (B, H) the carried
//   cell-state gradient, dc0 on exit; dc_last (B, H) or absent (has_dc_last = 0); dh (steps, B, K)
//   or absent (has_dh = 0, any pointer); dh_last (B, K) or absent (has_dh_last = 0); gates
//   (steps, B, 4H) and c (steps, B, H) the forward's; c0 (B, H); V (K, 4H) itself, not V.T: unit
//   j's column of V.T is row j of V, so each block copies contiguous rows; lengths (B,) int32.
//   K = H, or P with a projection (PROJ = true): R (H, P); dhs (steps, B, P) written.
// flip = 1 (the backward of a reversed run): step s works on t = step_time<true>(s, lengths[b])
//   for batch row b (step_order.cuh), reads the rows step s+1 wrote for b and takes dh_last,
//   dc_last at s = lengths[b]-1 (t = 0). flip = 0: t = s.
// Launch: cooperative; grid (ceil(H / cols), 1, 1) blocks, all co-resident (one per
//   multiprocessor);
//   block (256, 1, 1); dynamic shared memory (cols + min(B, 8)) * 4H * sizeof(T) bytes, plus
//   8 * 64 * sizeof(T) for v2. With a projection, (pcols * 4H + cols * P + min(B, 8) *
//   max(4H, P)) * sizeof(T) (+ v2's), pcols = the block's columns of dhs (P over the grid).
//   Block g owns hidden units g*cols ..: it keeps their rows of V (4H long) on chip for all steps,
//   computes their dhs and writes the 4 gates' du of each; dc of a unit stays with the block that
//   owns it. One grid barrier separates the steps (du[t+1] of every unit is read at step t).
//   With a projection a step has two phases: block g first writes columns g*pcols .. of dhs[t]
//   (from those rows of V), then, after a second barrier, its units' du from dm = dhs[t] @ R.T
//   (their rows of R on chip).
//   status (1,) int32: as in lstm_persistent_fwd.cu.
// Versions: v1 one warp per unit, lanes split k; v2 (default) the block computes 8 units at a
//   time with all threads splitting k (persistent_common.cuh).
// Types: float, double (template T); PROJ false, true (without, with a projection).
//   Names: lstm_persistent_bwd_v1<float, false>, ..._v2<double, true>.
// persist_recurrence<VERSION, 1, true> (K = 4H) with the epilogues of lstm_common.cuh.
#include "lstm_common.cuh"
#include "persistent_common.cuh"

// The LSTM backward as a persistent cell (reverse): the product reads du of step s+1 (none at
// s = steps-1, but with a carry) against V's rows; the epilogues are lstm_dhs and lstm_bwd_out
// (lstm_common.cuh). carry = 1: du, dh, gates, c (and dhs) have steps + 1 rows, du's last holding
// a later segment's carry, which each row's first step reads as the next step's du (StepState's
// `after`, step_order.cuh), as the step kernels do; its dc enters through dc_last.
template <typename T, bool FLIP>
struct LstmPersistBwd {
    T* du;
    T* dc;
    const T* dc_last;
    int has_dc_last;
    const T* dh;
    int has_dh;
    const T* dh_last;
    int has_dh_last;
    const T* gates;
    const T* c;
    const T* c0;
    const int* lengths;
    int steps, B, H, carry;
    __device__ bool has_prev(int s) const { return s + 1 < steps + carry; }
    __device__ StepState<T, FLIP> prev(int s) const {
        return StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, 4 * H, steps + carry};
    }
    __device__ void operator()(int s, int b, int j, int len, const T (&acc)[1]) const {
        const T dm = lstm_dhs(acc[0], dh, has_dh, dh_last, has_dh_last, step_time<FLIP>(s, len),
                              s, len, B, H, b, j);
        T d[4];
        lstm_bwd_out(du, dc, dc_last, has_dc_last, gates, c, c0, dm, s, FLIP, len, B, H, b, j, d);
    }
};

// With a projection (P > 0) a step has two phases, each ending in a grid barrier: the block's
// columns of dhs (pcols of them, from V's rows (P, 4H) in shared memory) write dhs[t] = dh[t]
// (+ dh_last) + du[t+1] @ V.T; then its units (cols, from R's rows (H, P) in shared memory) take
// dm = dhs[t] @ R.T and write the gates' du. Shared memory: V's rows [pcols][4H], R's [cols][P],
// a chunk of max(4H, P).
template <int VERSION, bool FLIP, typename T>
__device__ inline void lstm_persist_bwd_proj(T* du, T* dc, const T* dc_last, int has_dc_last,
                                             T* dhs, const T* dh, int has_dh, const T* dh_last,
                                             int has_dh_last, const T* gates, const T* c,
                                             const T* c0, const T* V, const T* R,
                                             const int* lengths, int steps, int B, int H, int P,
                                             int cols, int pcols, int carry, int* status) {
    if (!persist_grid_covers(status, H, cols)) return;
    if ((long long)gridDim.x * pcols < P) {  // uniform: every block returns
        if (blockIdx.x == 0 && threadIdx.x == 0) *status = (int)gridDim.x;
        return;
    }
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    T* const Wv = reinterpret_cast<T*>(persist_smem);
    T* const Wr = Wv + (size_t)pcols * 4 * H;
    T* const xs = Wr + (size_t)cols * P;
    T* const red = xs + (size_t)min(B, PERSIST_BATCH) * max(4 * H, P);
    const PersistSlice<T> cols_h = persist_slice_in<1>(Wv, xs, red, V, P, 4 * H, pcols, false);
    const PersistSlice<T> units = persist_slice_in<1>(Wr, xs, red, R, H, P, cols, false);
    for (int s = steps - 1; s >= 0; --s) {
        const bool has_prev = s + 1 < steps + carry;
        for (int b0 = 0; b0 < B; b0 += PERSIST_BATCH) {
            const int nb = min(PERSIST_BATCH, B - b0);
            __syncthreads();  // the slices are loaded and the previous chunk's reads of xs done
            if (has_prev)
                persist_stage(xs, StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, 4 * H,
                                                     steps + carry}, b0, nb, 4 * H);
            __syncthreads();
            persist_chunk<VERSION, 1>(cols_h, pcols, 4 * H, b0, nb, has_prev, lengths,
                                      [&](int b, int k, int len, const T (&acc)[1]) {
                                          const int t = step_time<FLIP>(s, len);
                                          dhs[((size_t)t * B + b) * P + k] =
                                              lstm_dhs(acc[0], dh, has_dh, dh_last, has_dh_last,
                                                       t, s, len, B, P, b, k);
                                      });
        }
        grid.sync();  // dhs[t] of every column
        for (int b0 = 0; b0 < B; b0 += PERSIST_BATCH) {
            const int nb = min(PERSIST_BATCH, B - b0);
            __syncthreads();
            persist_stage(xs, StepState<T, FLIP>{dhs, nullptr, lengths, s, B, P}, b0, nb, P);
            __syncthreads();
            persist_chunk<VERSION, 1>(units, cols, P, b0, nb, true, lengths,
                                      [&](int b, int j, int len, const T (&acc)[1]) {
                                          T d[4];
                                          lstm_bwd_out(du, dc, dc_last, has_dc_last, gates, c,
                                                       c0, acc[0], s, FLIP, len, B, H, b, j, d);
                                      });
        }
        if (s > 0) grid.sync();  // du[t] complete before the next step reads it
    }
}

// PROJ (P > 0): with the projection R, dhs, P, pcols (unused without: an instance per case, so
// that each has the registers of its own path).
template <int VERSION, bool PROJ, typename T>
__device__ inline void lstm_persist_bwd(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs,
                                        const T* dh, int has_dh, const T* dh_last,
                                        int has_dh_last, const T* gates, const T* c, const T* c0,
                                        const T* V, const T* R, const int* lengths, int steps,
                                        int B, int H, int P, int cols, int pcols, int flip,
                                        int carry, int* status) {
    if constexpr (PROJ) {
        if (flip)
            lstm_persist_bwd_proj<VERSION, true>(du, dc, dc_last, has_dc_last, dhs, dh, has_dh,
                                                 dh_last, has_dh_last, gates, c, c0, V, R,
                                                 lengths, steps, B, H, P, cols, pcols, carry,
                                                 status);
        else
            lstm_persist_bwd_proj<VERSION, false>(du, dc, dc_last, has_dc_last, dhs, dh, has_dh,
                                                  dh_last, has_dh_last, gates, c, c0, V, R,
                                                  lengths, steps, B, H, P, cols, pcols, carry,
                                                 status);
    } else if (flip) {
        persist_recurrence<VERSION, 1, true>(
            V, false, lengths, steps, B, H, 4 * H, cols, status,
            LstmPersistBwd<T, true>{du, dc, dc_last, has_dc_last, dh, has_dh, dh_last,
                                    has_dh_last, gates, c, c0, lengths, steps, B, H, carry});
    } else {
        persist_recurrence<VERSION, 1, true>(
            V, false, lengths, steps, B, H, 4 * H, cols, status,
            LstmPersistBwd<T, false>{du, dc, dc_last, has_dc_last, dh, has_dh, dh_last,
                                     has_dh_last, gates, c, c0, lengths, steps, B, H, carry});
    }
}

template <typename T, bool PROJ>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
lstm_persistent_bwd_v1(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs, const T* dh,
                       int has_dh, const T* dh_last, int has_dh_last, const T* gates, const T* c,
                       const T* c0, const T* V, const T* R, const int* lengths, int steps, int B,
                       int H, int P, int cols, int pcols, int flip, int carry, int* status) {
    lstm_persist_bwd<1, PROJ>(du, dc, dc_last, has_dc_last, dhs, dh, has_dh, dh_last, has_dh_last,
                        gates, c, c0, V, R, lengths, steps, B, H, P, cols, pcols, flip, carry,
                        status);
}

template <typename T, bool PROJ>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
lstm_persistent_bwd_v2(T* du, T* dc, const T* dc_last, int has_dc_last, T* dhs, const T* dh,
                       int has_dh, const T* dh_last, int has_dh_last, const T* gates, const T* c,
                       const T* c0, const T* V, const T* R, const int* lengths, int steps, int B,
                       int H, int P, int cols, int pcols, int flip, int carry, int* status) {
    lstm_persist_bwd<2, PROJ>(du, dc, dc_last, has_dc_last, dhs, dh, has_dh, dh_last, has_dh_last,
                        gates, c, c0, V, R, lengths, steps, B, H, P, cols, pcols, flip, carry,
                        status);
}
