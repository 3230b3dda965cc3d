// kernels/elman_persistent_fwd.cu — the whole forward Elman recurrence in one cooperative launch
//   h[t] = f(p[t] + h[t-1] @ V) for t = 0..steps-1,  h[-1] = h0,  p = x @ W + b precomputed for
//   all t by one GEMM;  h[t, b, :] = 0 where t >= lengths[b] (padding)
// Shapes, row-major: h (steps, B, H) holds p on entry and h on exit (row t is overwritten once
//   row t-1 is final, as in elman_fwd_step.cu); h0 (B, H); V (H, H);
//   lengths (B,) int32, every entry in 1..steps (the backend passes steps when none is given).
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
// Types: float, double (template T). Names: elman_persistent_fwd_v1<float>, ..._v2<double>.
#include "elman_common.cuh"
#include "persistent_common.cuh"

// One output of step t: h[t][b][j] = f(p[t][b][j] + s) (ht holds p[t] there), 0 from the example's
// length on.
template <typename T>
__device__ inline void persist_fwd_out(T* ht, const int* lengths, int t, int b, int j, int H,
                                       int act, T s) {
    T* out = ht + (size_t)b * H + j;
    *out = t < lengths[b] ? act_apply(act, *out + s) : T(0);
}

// Both versions: the same steps, chunks and barriers; VERSION picks the products (see
// persistent_common.cuh).
template <int VERSION, typename T>
__device__ inline void persist_fwd(T* h, const T* h0, const T* V, const int* lengths, int steps,
                                   int B, int H, int cols, int act, int* status) {
    if (!persist_grid_covers(status, H, cols)) return;
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    const PersistSlice<T> slice = persist_slice(V, B, H, cols, true);
    const int j0 = slice.j0, ncols = slice.ncols;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int o = threadIdx.x, bo = o / PERSIST_GROUP, co = o % PERSIST_GROUP;  // v2's output

    for (int t = 0; t < steps; ++t) {
        T* ht = h + (size_t)t * B * H;
        const T* hp = t == 0 ? h0 : ht - (size_t)B * H;
        for (int b0 = 0; b0 < B; b0 += PERSIST_BATCH) {
            const int nb = min(PERSIST_BATCH, B - b0);
            __syncthreads();  // the slice is loaded and the previous chunk's reads of xs are done
            persist_stage(slice.xs, hp, b0, nb, H);
            __syncthreads();
            if constexpr (VERSION == 1) {
                for (int jl = warp; jl < ncols; jl += PERSIST_WARPS) {
                    T acc[PERSIST_BATCH];
                    persist_dot(acc, slice.xs, slice.Ws + (size_t)jl * H, nb, H);
                    // Lane bb writes batch row b0 + bb: at most 8 scattered words per column.
#pragma unroll
                    for (int bb = 0; bb < PERSIST_BATCH; ++bb)
                        if (bb < nb && lane == bb)
                            persist_fwd_out(ht, lengths, t, b0 + bb, j0 + jl, H, act, acc[bb]);
                }
            } else {
                for (int g0 = 0; g0 < ncols; g0 += PERSIST_GROUP) {
                    const int ng = min(PERSIST_GROUP, ncols - g0);
                    const T s = persist_group_dot(slice.xs, slice.Ws, slice.red, g0, ng, nb, H);
                    if (o < PERSIST_OUTS && bo < nb && co < ng)
                        persist_fwd_out(ht, lengths, t, b0 + bo, j0 + g0 + co, H, act, s);
                }
            }
        }
        if (t + 1 < steps) grid.sync();  // h[t] complete everywhere before any block reads it
    }
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_fwd_v1(T* h, const T* h0, const T* V, const int* lengths, int steps, int B, int H,
                        int cols, int act, int* status) {
    persist_fwd<1>(h, h0, V, lengths, steps, B, H, cols, act, status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_fwd_v2(T* h, const T* h0, const T* V, const int* lengths, int steps, int B, int H,
                        int cols, int act, int* status) {
    persist_fwd<2>(h, h0, V, lengths, steps, B, H, cols, act, status);
}
