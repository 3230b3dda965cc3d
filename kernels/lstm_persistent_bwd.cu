// kernels/lstm_persistent_bwd.cu — the whole reverse BPTT recurrence of the LSTM in one
//   cooperative launch, for t = steps-1 down to 0 (the conventions and formulas of
//   lstm_bwd_step.cu without a projection, so the two algorithms agree to rounding):
//   dhs = dh[t] + [t == last(b)] dh_last + du[t+1] @ V.T;  tc = tanh(c[t]);
//   dc = dc·f (from step t+1) + [t == last(b)] dc_last + dhs·o·(1 - tc²);
//   du[t] = [dc·g·i(1-i) | dc·c[t-1]·f(1-f) | dc·i·(1-g²) | dhs·tc·o(1-o)];  du[steps] = 0
//   last(b) = lengths[b] - 1; du[t, b, :] = 0 where t >= lengths[b]
// Shapes, row-major: du (steps, B, 4H) output, every entry written; dc (B, H) the carried
//   cell-state gradient, dc0 on exit; dc_last (B, H) or absent (has_dc_last = 0); dh (steps, B, H)
//   or absent (has_dh = 0, any pointer); dh_last (B, H) or absent (has_dh_last = 0); gates
//   (steps, B, 4H) and c (steps, B, H) the forward's; c0 (B, H); V (H, 4H) itself, not V.T: unit
//   j's column of V.T is row j of V, so each block copies contiguous rows; lengths (B,) int32.
// flip = 1 (the backward of a reversed run): step s works on t = step_time<true>(s, lengths[b])
//   for batch row b (step_order.cuh), reads the rows step s+1 wrote for b and takes dh_last,
//   dc_last at s = lengths[b]-1 (t = 0). flip = 0: t = s.
// Launch: cooperative; grid (ceil(H / cols), 1, 1) blocks, all co-resident (one per
//   multiprocessor);
//   block (256, 1, 1); dynamic shared memory (cols + min(B, 8)) * 4H * sizeof(T) bytes, plus
//   8 * 64 * sizeof(T) for v2.
//   Block g owns hidden units g*cols ..: it keeps their rows of V (4H long) on chip for all steps,
//   computes their dhs and writes the 4 gates' du of each; dc of a unit stays with the block that
//   owns it. One grid barrier separates the steps (du[t+1] of every unit is read at step t).
//   status (1,) int32: as in lstm_persistent_fwd.cu.
// Versions: v1 one warp per unit, lanes split k; v2 (default) the block computes 8 units at a
//   time with all threads splitting k (persistent_common.cuh).
// Types: float, double (template T). Names: lstm_persistent_bwd_v1<float>, ..._v2<double>.
// persist_recurrence<VERSION, 1, true> (K = 4H) with the epilogues of lstm_common.cuh.
#include "lstm_common.cuh"
#include "persistent_common.cuh"

// The LSTM backward as a persistent cell (reverse): the product reads du of step s+1 (none at
// s = steps-1) against V's rows; the epilogues are lstm_dhs and lstm_bwd_out (lstm_common.cuh).
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
    int steps, B, H;
    __device__ bool has_prev(int s) const { return s + 1 < steps; }
    __device__ StepState<T, FLIP> prev(int s) const {
        return StepState<T, FLIP>{du, nullptr, lengths, s + 1, B, 4 * H};
    }
    __device__ void operator()(int s, int b, int j, int len, const T (&acc)[1]) const {
        const T dm = lstm_dhs(acc[0], dh, has_dh, dh_last, has_dh_last, step_time<FLIP>(s, len),
                              s, len, B, H, b, j);
        T d[4];
        lstm_bwd_out(du, dc, dc_last, has_dc_last, gates, c, c0, dm, s, FLIP, len, B, H, b, j, d);
    }
};

template <int VERSION, typename T>
__device__ inline void lstm_persist_bwd(T* du, T* dc, const T* dc_last, int has_dc_last,
                                        const T* dh, int has_dh, const T* dh_last,
                                        int has_dh_last, const T* gates, const T* c, const T* c0,
                                        const T* V, const int* lengths, int steps, int B, int H,
                                        int cols, int flip, int* status) {
    if (flip)
        persist_recurrence<VERSION, 1, true>(
            V, false, lengths, steps, B, H, 4 * H, cols, status,
            LstmPersistBwd<T, true>{du, dc, dc_last, has_dc_last, dh, has_dh, dh_last,
                                    has_dh_last, gates, c, c0, lengths, steps, B, H});
    else
        persist_recurrence<VERSION, 1, true>(
            V, false, lengths, steps, B, H, 4 * H, cols, status,
            LstmPersistBwd<T, false>{du, dc, dc_last, has_dc_last, dh, has_dh, dh_last,
                                     has_dh_last, gates, c, c0, lengths, steps, B, H});
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
lstm_persistent_bwd_v1(T* du, T* dc, const T* dc_last, int has_dc_last, const T* dh, int has_dh,
                       const T* dh_last, int has_dh_last, const T* gates, const T* c,
                       const T* c0, const T* V, const int* lengths, int steps, int B, int H,
                       int cols, int flip, int* status) {
    lstm_persist_bwd<1>(du, dc, dc_last, has_dc_last, dh, has_dh, dh_last, has_dh_last, gates, c,
                        c0, V, lengths, steps, B, H, cols, flip, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
lstm_persistent_bwd_v2(T* du, T* dc, const T* dc_last, int has_dc_last, const T* dh, int has_dh,
                       const T* dh_last, int has_dh_last, const T* gates, const T* c,
                       const T* c0, const T* V, const int* lengths, int steps, int B, int H,
                       int cols, int flip, int* status) {
    lstm_persist_bwd<2>(du, dc, dc_last, has_dc_last, dh, has_dh, dh_last, has_dh_last, gates, c,
                        c0, V, lengths, steps, B, H, cols, flip, status);
}
