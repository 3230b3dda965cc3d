// kernels/elman_persistent_bwd.cu — the whole reverse BPTT recurrence in one cooperative launch
//   du[t] = (dh[t] + [t == last(b)] dh_last + du[t+1] @ V.T) * f'(h[t]),  du[steps] = 0,
//   for t = steps-1 down to 0; last(b) = lengths[b] - 1; du[t, b, :] = 0 where t >= lengths[b]
//   (the conventions of elman_bwd_step.cu, so the two algorithms agree to rounding)
// Shapes, row-major: du (steps, B, H) output, every entry written; dh (steps, B, H) or absent
//   (has_dh = 0, any pointer); dh_last (B, H) or absent (has_dh_last = 0); h (steps, B, H) the
//   forward outputs (f' is computed from them); V (H, H) itself, not V.T: column j of V.T is row
//   j of V, so each block copies contiguous rows; lengths (B,) int32 in 1..steps.
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
// Types: float, double (template T). Names: elman_persistent_bwd_v1<float>, ..._v2<double>.
#include "elman_common.cuh"
#include "persistent_common.cuh"

// One output of step t: du[t][b][j] = (s + dh[t][b][j] + [t = last] dh_last[b][j]) * f'(h),
// 0 from the example's length on.
template <typename T>
__device__ inline void persist_bwd_out(T* du, const T* dh, int has_dh, const T* dh_last,
                                       int has_dh_last, const T* h, const int* lengths, int t,
                                       int b, int j, int B, int H, int act, T s) {
    const int len = lengths[b];
    const size_t i = ((size_t)t * B + b) * H + j;
    T out = T(0);
    if (t < len) {
        T g = has_dh ? dh[i] : T(0);
        if (has_dh_last && t == len - 1) g += dh_last[(size_t)b * H + j];
        out = (s + g) * act_grad_from_output(act, h[i]);
    }
    du[i] = out;
}

// Both versions: the same steps, chunks and barriers; VERSION picks the products (see
// persistent_common.cuh).
template <int VERSION, typename T>
__device__ inline void persist_bwd(T* du, const T* dh, int has_dh, const T* dh_last,
                                   int has_dh_last, const T* h, const T* V, const int* lengths,
                                   int steps, int B, int H, int cols, int act, int* status) {
    if (!persist_grid_covers(status, H, cols)) return;
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    const PersistSlice<T> slice = persist_slice(V, B, H, cols, false);
    const int j0 = slice.j0, ncols = slice.ncols;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int o = threadIdx.x, bo = o / PERSIST_GROUP, co = o % PERSIST_GROUP;  // v2's output

    for (int t = steps - 1; t >= 0; --t) {
        const bool has_next = t + 1 < steps;  // uniform: du[steps] = 0 needs no product
        const T* dn = du + (size_t)(t + 1) * B * H;
        for (int b0 = 0; b0 < B; b0 += PERSIST_BATCH) {
            const int nb = min(PERSIST_BATCH, B - b0);
            __syncthreads();  // the slice is loaded and the previous chunk's reads of xs are done
            if (has_next) persist_stage(slice.xs, dn, b0, nb, H);
            __syncthreads();
            if constexpr (VERSION == 1) {
                for (int jl = warp; jl < ncols; jl += PERSIST_WARPS) {
                    T acc[PERSIST_BATCH];
                    if (has_next) {
                        persist_dot(acc, slice.xs, slice.Ws + (size_t)jl * H, nb, H);
                    } else {
#pragma unroll
                        for (int bb = 0; bb < PERSIST_BATCH; ++bb) acc[bb] = T(0);
                    }
#pragma unroll
                    for (int bb = 0; bb < PERSIST_BATCH; ++bb)
                        if (bb < nb && lane == bb)
                            persist_bwd_out(du, dh, has_dh, dh_last, has_dh_last, h, lengths, t,
                                            b0 + bb, j0 + jl, B, H, act, acc[bb]);
                }
            } else {
                for (int g0 = 0; g0 < ncols; g0 += PERSIST_GROUP) {
                    const int ng = min(PERSIST_GROUP, ncols - g0);
                    const T s = has_next ? persist_group_dot(slice.xs, slice.Ws, slice.red, g0,
                                                             ng, nb, H)
                                         : T(0);
                    if (o < PERSIST_OUTS && bo < nb && co < ng)
                        persist_bwd_out(du, dh, has_dh, dh_last, has_dh_last, h, lengths, t,
                                        b0 + bo, j0 + g0 + co, B, H, act, s);
                }
            }
        }
        if (t > 0) grid.sync();  // du[t] complete everywhere before any block reads it
    }
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_bwd_v1(T* du, const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                        const T* h, const T* V, const int* lengths, int steps, int B, int H,
                        int cols, int act, int* status) {
    persist_bwd<1>(du, dh, has_dh, dh_last, has_dh_last, h, V, lengths, steps, B, H, cols, act,
                     status);
}

template <typename T>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
elman_persistent_bwd_v2(T* du, const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                        const T* h, const T* V, const int* lengths, int steps, int B, int H,
                        int cols, int act, int* status) {
    persist_bwd<2>(du, dh, has_dh, dh_last, has_dh_last, h, V, lengths, steps, B, H, cols, act,
                     status);
}
