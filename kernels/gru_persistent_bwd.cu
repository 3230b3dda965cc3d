// kernels/gru_persistent_bwd.cu — the whole reverse BPTT recurrence of the GRU in one cooperative
//   launch (the math and conventions of gru_bwd_step.cu, for s = steps-1 down to 0, so the two
//   algorithms agree to rounding; formulas in gru_common.cuh, gru_bwd_out)
//   dhs[t] = dh[t] + [t == last(b)] dh_last + dgh[t+1] @ V.T + dhs[t+1]·z[t+1],
//   dgh[t] = [gr | gz | gn·r];  everything 0 where t >= lengths[b]
// Shapes, row-major: dg (steps, B, 3H) output (dgh), every entry written; gn (steps, B, H) output;
//   zd (B, H) the carry dhs·z, zeros on entry, the first step's on exit; dh (steps, B, H) or absent
//   (has_dh = 0, any pointer); dh_last (B, H) or absent (has_dh_last = 0); h (steps, B, H),
//   h0 (B, H), gates (steps, B, 4H) from the forward; V (H, 3H) itself, not V.T: unit j's column
//   of V.T is row j of V, so each block copies contiguous rows (K = 3H); lengths (B,) int32.
// flip = 1 (the backward of a reversed run): step s works on t = step_time<true>(s, lengths[b])
//   for batch row b (step_order.cuh), reads the row step s+1 wrote for b (dgh[t-1]) and takes
//   dh_last at s = lengths[b]-1 (t = 0). flip = 0: t = s. Each kernel branches once on flip.
// Launch: cooperative; grid (ceil(H / cols), 1, 1) blocks, all co-resident (one per multiprocessor);
//   block (256, 1, 1); dynamic shared memory (cols + min(B, 8)) * 3 * H * sizeof(T) bytes, plus
//   8 * 64 * sizeof(T) for v2.
//   Block g owns hidden units g*cols .., keeps their rows of V (all 3 gates, length 3H) on chip
//   for all steps and writes those units' 3 gate columns of dg[t], gn[t] and zd.
//   Steps are separated by cooperative_groups::this_grid().sync().
//   status (1,) int32: 0 on exit, or the blocks that ran when they do not cover H (nothing else
//   written; persistent_common.cuh, persist_grid_covers).
// Versions: v1 one warp per unit, lanes split k; v2 (default) the block computes 8 units at a
//   time with all threads splitting k (persistent_common.cuh).
// Types: float, double (template T). Names: gru_persistent_bwd_v1<float>, ..._v2<double>.
#include "gru_common.cuh"
#include "persistent_common.cuh"

// The GRU backward as a persistent cell (persist_recurrence in persistent_common.cuh, reverse):
// the product reads dgh of step s+1 (none at s = steps-1, but with a carry) against V's rows; the
// epilogue is gru_bwd_out (gru_common.cuh), the step kernels' own. carry = 1: dg, gn, dh, h and
// gates have steps + 1 rows, dg's last holding a later segment's dgh, which each row's first step
// reads as the next step's (StepState's `after`, step_order.cuh), and zd that segment's dhs·z.
template <typename T, bool FLIP>
struct GruPersistBwd {
    T* dg;
    T* gn;
    T* zd;
    const T* dh;
    int has_dh;
    const T* dh_last;
    int has_dh_last;
    const T* h;
    const T* h0;
    const T* gates;
    const int* lengths;
    int steps, B, H, carry;
    __device__ bool has_prev(int s) const { return s + 1 < steps + carry; }
    __device__ StepState<T, FLIP> prev(int s) const {
        return StepState<T, FLIP>{dg, nullptr, lengths, s + 1, B, 3 * H, steps + carry};
    }
    __device__ void operator()(int s, int b, int j, int len, const T (&acc)[1]) const {
        const T* hp = StepState<T, FLIP>{h, h0, lengths, s - 1, B, H}.row(b);
        gru_bwd_out(dg, gn, zd, acc[0], dh, has_dh, dh_last, has_dh_last, gates, hp,
                    step_time<FLIP>(s, len), s, len, B, H, b, j);
    }
};

template <int VERSION, typename T>
__device__ inline void persist_gru_bwd(T* dg, T* gn, T* zd, const T* dh, int has_dh,
                                       const T* dh_last, int has_dh_last, const T* h, const T* h0,
                                       const T* gates, const T* V, const int* lengths, int steps,
                                       int B, int H, int cols, int flip, int carry,
                                       int* status) {
    if (flip)
        persist_recurrence<VERSION, 1, true>(
            V, false, lengths, steps, B, H, 3 * H, cols, status,
            GruPersistBwd<T, true>{dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0, gates,
                                   lengths, steps, B, H, carry});
    else
        persist_recurrence<VERSION, 1, true>(
            V, false, lengths, steps, B, H, 3 * H, cols, status,
            GruPersistBwd<T, false>{dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0, gates,
                                    lengths, steps, B, H, carry});
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
gru_persistent_bwd_v1(T* dg, T* gn, T* zd, const T* dh, int has_dh, const T* dh_last,
                      int has_dh_last, const T* h, const T* h0, const T* gates, const T* V,
                      const int* lengths, int steps, int B, int H, int cols, int flip,
                      int carry, int* status) {
    persist_gru_bwd<1>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0, gates, V, lengths,
                       steps, B, H, cols, flip, carry, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
gru_persistent_bwd_v2(T* dg, T* gn, T* zd, const T* dh, int has_dh, const T* dh_last,
                      int has_dh_last, const T* h, const T* h0, const T* gates, const T* V,
                      const int* lengths, int steps, int B, int H, int cols, int flip,
                      int carry, int* status) {
    persist_gru_bwd<2>(dg, gn, zd, dh, has_dh, dh_last, has_dh_last, h, h0, gates, V, lengths,
                       steps, B, H, cols, flip, carry, status);
}
