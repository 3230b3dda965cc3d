// kernels/persistent_common.cuh — the persistent plumbing, for any cell: one cooperative launch
//   runs every step of a recurrence; each block keeps a slice of the recurrent matrix in shared
//   memory for the whole sequence. Names no cell: a cell's kernel (elman_persistent_fwd.cu,
//   elman_persistent_bwd.cu) is persist_recurrence with the cell's epilogue (see there); a kernel
//   with two products per step (an LSTM's projection) calls persist_chunk itself.
// Products over G gates: block g owns hidden units j0 = g * cols .. j0 + ncols - 1 (the last block
//   may own fewer, or none) and computes, per step, output (b, j) and gate q < G, the sums
//   s[q] = sum_k x[b][k] * M[k][q * H + j]  (by_column: forward, x = h[t-1], K = H)
//   s[q] = sum_k x[b][k] * M[q * H + j][k]  (by rows: backward, M = V, so the sums are x @ M.T,
//                                            K = the length of M's rows)
//   Elman: G = 1, K = H. A gated cell's forward has G gates (M (H, G*H)); its backward G = 1 with
//   K = G*H (du[t+1] of all gates @ V.T).
// Block: PERSIST_THREADS = 256 threads (8 warps), one block per multiprocessor.
// Dynamic shared memory (one extern array per file; see docs/architecture.md §3), in elements of T:
//   Ws [G][cols][K]  the block's slice, row (q, jl) = output (gate q, unit j0 + jl), so the lanes
//                 of a warp read consecutive k from consecutive words: no bank conflicts
//   xs [bc][K]    one batch chunk of the previous state (h[t-1] or du[t+1]), bc = min(B, 8)
//   red [8][64]   v2 only: each warp's partial sums of one group's 64 outputs
//   bytes = (G * cols + bc) * K * sizeof(T)  (+ 8 * 64 * sizeof(T) for v2)
// Per step and batch chunk the block stages xs from global memory, then per gate
//   v1: warp w computes the units jl = w, w + 8, ...: its lanes split k (k = lane + 32 i), each
//       lane keeps one accumulator per batch row of the chunk, and a butterfly of shuffles sums
//       over the warp. Each lane reads 8 xs values and one V value per 8 multiply-adds.
//   v2: the block computes 8 units at a time (a group): all 256 threads split k
//       (k = tid + 256 i), each keeps 64 accumulators (8 batch rows x 8 units), so it reads
//       8 xs and 8 V values per 64 multiply-adds; a reduce-scatter of shuffles leaves lane l the
//       warp's sums of outputs 2l and 2l + 1, and threads 0..63 add the 8 warps' sums from red.
//       With G gates the group's product runs once per gate (same registers, xs read G times).
// Types: float, double (template T).
#pragma once
#include <cooperative_groups.h>

#include "step_order.cuh"

#define PERSIST_WARPS 8
#define PERSIST_THREADS (PERSIST_WARPS * 32)
#define PERSIST_BATCH 8  // batch rows per chunk: accumulators per lane
#define PERSIST_GROUP 8  // v2: columns per group
#define PERSIST_OUTS (PERSIST_BATCH * PERSIST_GROUP)  // v2: outputs per group and chunk

// Declared double so that the array is 8-byte aligned for both element types.
extern __shared__ double persist_smem[];

// Whether the grid covers every output column (gridDim.x * cols >= H). Block 0 writes 0 to
// *status when it does, else the number of blocks that ran; a short grid (a runtime that shrank
// the launch) then returns from every block before the first grid barrier, and the launcher
// raises instead of returning columns nobody wrote.
__device__ inline bool persist_grid_covers(int* status, int H, int cols) {
    const bool ok = (long long)gridDim.x * cols >= H;
    if (blockIdx.x == 0 && threadIdx.x == 0) *status = ok ? 0 : (int)gridDim.x;
    return ok;
}

// Copy the block's slice of the recurrent matrix M into Ws, G gates of ncols rows of length K.
//   by_column = true:  Ws[q][jl][k] = M[k][q * H + j0 + jl]  (M (K, G * H): forward, columns of V)
//   by_column = false: Ws[q][jl][k] = M[q * H + j0 + jl][k]  (M (G * H, K): backward, rows of V,
//                                                            i.e. columns of V.T)
// Consecutive threads read consecutive global words in both cases; the transposing stores of the
// first case conflict on banks, but they happen once per launch.
template <int G, typename T>
__device__ inline void persist_load_slice(T* Ws, const T* M, int H, int K, int j0, int ncols,
                                          int cols, bool by_column) {
    const int n = ncols * K;
#pragma unroll
    for (int q = 0; q < G; ++q) {
        T* Wq = Ws + (size_t)q * cols * K;
        if (by_column) {
            for (int idx = threadIdx.x; idx < n; idx += blockDim.x) {
                const int k = idx / ncols, jl = idx - k * ncols;
                Wq[jl * K + k] = M[(size_t)k * G * H + q * H + j0 + jl];
            }
        } else {
            const T* rows = M + ((size_t)q * H + j0) * K;
            for (int idx = threadIdx.x; idx < n; idx += blockDim.x) Wq[idx] = rows[idx];
        }
    }
}

// This block's place in the launch: its slice Ws of M (loaded here), the staging area xs after it
// (min(B, PERSIST_BATCH) rows of K), v2's sums red after that, and its hidden units
// j0 .. j0 + ncols - 1 (none for a block past H).
template <typename T>
struct PersistSlice {
    T* Ws;
    T* xs;
    T* red;
    int j0;
    int ncols;
};

// The same with the areas placed by the caller (a kernel with two slices: an LSTM's projection).
template <int G, typename T>
__device__ inline PersistSlice<T> persist_slice_in(T* Ws, T* xs, T* red, const T* M, int H,
                                                   int K, int cols, bool by_column) {
    PersistSlice<T> s;
    s.Ws = Ws;
    s.xs = xs;
    s.red = red;
    s.j0 = blockIdx.x * cols;
    s.ncols = s.j0 < H ? min(cols, H - s.j0) : 0;
    persist_load_slice<G>(s.Ws, M, H, K, s.j0, s.ncols, cols, by_column);
    return s;
}

template <int G, typename T>
__device__ inline PersistSlice<T> persist_slice(const T* M, int B, int H, int K, int cols,
                                                bool by_column) {
    T* Ws = reinterpret_cast<T*>(persist_smem);
    T* xs = Ws + (size_t)G * cols * K;
    return persist_slice_in<G>(Ws, xs, xs + (size_t)min(B, PERSIST_BATCH) * K, M, H, K, cols,
                               by_column);
}

// The 16-byte vector of 4 floats or 2 doubles.
template <int Bytes> struct PersistVec;
template <> struct PersistVec<4> { using type = float4; };
template <> struct PersistVec<8> { using type = double2; };

// dst[i] = s[i] for i < n, by the whole block. s was written by other blocks before the last grid
// barrier, so these are plain coherent loads (never __ldg, whose cache may hold stale lines).
// Where both ends are 16-byte aligned and n is whole vectors, 16-byte loads: a quarter of the
// instructions, and more bytes in flight per thread for a copy that waits on L2.
template <typename T>
__device__ inline void persist_copy(T* dst, const T* s, int n) {
    using Vec = typename PersistVec<sizeof(T)>::type;
    constexpr int per = sizeof(Vec) / sizeof(T);
    if (n % per == 0 && ((reinterpret_cast<size_t>(s) | reinterpret_cast<size_t>(dst)) & 15) == 0) {
        const Vec* sv = reinterpret_cast<const Vec*>(s);
        Vec* xv = reinterpret_cast<Vec*>(dst);
#pragma unroll 4
        for (int idx = threadIdx.x; idx < n / per; idx += blockDim.x) xv[idx] = sv[idx];
        return;
    }
    for (int idx = threadIdx.x; idx < n; idx += blockDim.x) dst[idx] = s[idx];
}

// xs[bb][k] = x.row(b0 + bb)[k] for bb < nb: one copy where the rows are contiguous (forward, or
// the initial state), else row by row (flipped: each row at its own time index).
template <typename T, bool FLIP>
__device__ inline void persist_stage(T* xs, const StepState<T, FLIP>& x, int b0, int nb, int K) {
    if (!FLIP || x.s < 0) {
        persist_copy(xs, x.row(b0), nb * K);
        return;
    }
    for (int bb = 0; bb < nb; ++bb) persist_copy(xs + (size_t)bb * K, x.row(b0 + bb), K);
}

// acc[bb] = sum_k xs[bb][k] * w[k] for bb < nb, on every lane of the calling warp (whole warp).
template <typename T>
__device__ inline void persist_dot(T (&acc)[PERSIST_BATCH], const T* xs, const T* w, int nb,
                                   int K) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int bb = 0; bb < PERSIST_BATCH; ++bb) acc[bb] = T(0);
    for (int k = lane; k < K; k += 32) {
        const T v = w[k];
#pragma unroll
        for (int bb = 0; bb < PERSIST_BATCH; ++bb)
            if (bb < nb) acc[bb] += xs[bb * K + k] * v;
    }
    // nb is uniform over the warp, so every lane takes part in each shuffle it reaches.
#pragma unroll
    for (int bb = 0; bb < PERSIST_BATCH; ++bb) {
        if (bb < nb) {
#pragma unroll
            for (int off = 16; off > 0; off >>= 1)
                acc[bb] += __shfl_xor_sync(0xffffffffu, acc[bb], off);
        }
    }
}

// v2, one stage of the warp's reduce-scatter over the first N values of v: a lane keeps one half
// (the upper one where its lane bit N / 4 is set), adds the partner's copy of that half and sends
// the other. The stages N = 64, 32, .., 4 leave lane l the warp's sums of outputs 2l and 2l + 1 in
// v[0] and v[1]. A template per stage so that every index is a constant (v stays in registers).
template <int N, typename T>
__device__ inline void persist_reduce_stage(T (&v)[PERSIST_OUTS], int lane) {
    constexpr int n = N / 2, off = N / 4;
    const bool upper = (lane & off) != 0;
#pragma unroll
    for (int i = 0; i < n; ++i) {
        const T send = upper ? v[i] : v[i + n];
        const T keep = upper ? v[i + n] : v[i];
        v[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
    }
}

// v2: the sums s[o] = sum_k xs[bb][k] * Ws[g0 + c][k], o = bb * PERSIST_GROUP + c, for the
// column group g0 .. g0 + ng - 1 and batch rows bb < nb (others are 0), with the whole block
// taking part. Returns s[threadIdx.x] on threads 0 .. PERSIST_OUTS - 1 (0 elsewhere). red holds
// PERSIST_WARPS * PERSIST_OUTS elements. Contains __syncthreads(): call with uniform arguments.
template <typename T>
__device__ inline T persist_group_dot(const T* xs, const T* Ws, T* red, int g0, int ng, int nb,
                                      int K) {
    static_assert(PERSIST_OUTS == 64, "the reduce-scatter stages below assume 64 outputs");
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    T v[PERSIST_OUTS];
#pragma unroll
    for (int o = 0; o < PERSIST_OUTS; ++o) v[o] = T(0);
    for (int k = tid; k < K; k += PERSIST_THREADS) {
        T x[PERSIST_BATCH], w[PERSIST_GROUP];
#pragma unroll
        for (int bb = 0; bb < PERSIST_BATCH; ++bb) x[bb] = bb < nb ? xs[bb * K + k] : T(0);
#pragma unroll
        for (int c = 0; c < PERSIST_GROUP; ++c)
            w[c] = c < ng ? Ws[(size_t)(g0 + c) * K + k] : T(0);
#pragma unroll
        for (int bb = 0; bb < PERSIST_BATCH; ++bb) {
#pragma unroll
            for (int c = 0; c < PERSIST_GROUP; ++c) v[bb * PERSIST_GROUP + c] += x[bb] * w[c];
        }
    }
    persist_reduce_stage<64>(v, lane);
    persist_reduce_stage<32>(v, lane);
    persist_reduce_stage<16>(v, lane);
    persist_reduce_stage<8>(v, lane);
    persist_reduce_stage<4>(v, lane);
    red[warp * PERSIST_OUTS + 2 * lane] = v[0];
    red[warp * PERSIST_OUTS + 2 * lane + 1] = v[1];
    __syncthreads();
    T sum = T(0);
    if (tid < PERSIST_OUTS) {
#pragma unroll
        for (int w = 0; w < PERSIST_WARPS; ++w) sum += red[w * PERSIST_OUTS + tid];
    }
    __syncthreads();  // red may be written again
    return sum;
}

// The products of one batch chunk (rows b0 .. b0 + nb - 1, staged in slice.xs) against the
// block's slice, G sums per output (b, j) of the block's units, handed to
// epi(b, j, len, s[G]) (len = lengths[b]); has_prev = false gives s = 0 without reading xs.
// VERSION 1 or 2 (above). Whole block, uniform arguments (v2 holds __syncthreads).
template <int VERSION, int G, typename T, typename Epi>
__device__ inline void persist_chunk(const PersistSlice<T>& slice, int cols, int K, int b0,
                                     int nb, bool has_prev, const int* lengths, Epi epi) {
    const int j0 = slice.j0, ncols = slice.ncols;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int o = threadIdx.x, bo = o / PERSIST_GROUP, co = o % PERSIST_GROUP;  // v2's output
    if constexpr (VERSION == 1) {
        for (int jl = warp; jl < ncols; jl += PERSIST_WARPS) {
            T acc[G][PERSIST_BATCH];
#pragma unroll
            for (int q = 0; q < G; ++q) {
                if (has_prev) {
                    persist_dot(acc[q], slice.xs, slice.Ws + ((size_t)q * cols + jl) * K, nb, K);
                } else {
#pragma unroll
                    for (int bb = 0; bb < PERSIST_BATCH; ++bb) acc[q][bb] = T(0);
                }
            }
            // Lane bb writes batch row b0 + bb: at most 8 scattered words per unit.
#pragma unroll
            for (int bb = 0; bb < PERSIST_BATCH; ++bb) {
                if (bb < nb && lane == bb) {
                    T s[G];
#pragma unroll
                    for (int q = 0; q < G; ++q) s[q] = acc[q][bb];
                    epi(b0 + bb, j0 + jl, lengths[b0 + bb], s);
                }
            }
        }
    } else {
        for (int g0 = 0; g0 < ncols; g0 += PERSIST_GROUP) {
            const int ng = min(PERSIST_GROUP, ncols - g0);
            T s[G];
#pragma unroll
            for (int q = 0; q < G; ++q)
                s[q] = has_prev ? persist_group_dot(slice.xs, slice.Ws + (size_t)q * cols * K,
                                                    slice.red, g0, ng, nb, K)
                                : T(0);
            if (o < PERSIST_OUTS && bo < nb && co < ng)
                epi(b0 + bo, j0 + g0 + co, lengths[b0 + bo], s);
        }
    }
}

// The whole recurrence of a cell in one cooperative launch: for each step t (0 .. steps-1, or
// steps-1 .. 0 when REVERSE: the backward's order of steps, not the direction of the run, which
// the cell's FLIP gives through step_order.cuh) and each batch chunk, stage the chunk of the
// previous state, compute the G sums of every output (b, j) of the block's units (persist_chunk)
// and hand them to the cell's epilogue; a grid barrier separates the steps. Rows of the previous
// state written by other blocks are read only after that barrier.
// M, by_column, K: the recurrent matrix as persist_load_slice takes it. lengths (B,): passed to the
// epilogue as len = lengths[b]. status: see persist_grid_covers. The cell object provides
//   bool has_prev(int t)      whether step t has a product (else s = 0 and nothing is staged);
//                             uniform over the launch
//   StepState<T, FLIP> prev(int t)   the previous state the product reads at step t, (B, K)
//                             rows, in the cell's direction FLIP (step_order.cuh)
//   void operator()(int t, int b, int j, int len, const T (&s)[G])   the epilogue of output (b, j)
//                             at step t (its time index is step_time<FLIP>(t, len))
template <int VERSION, int G, bool REVERSE, typename T, typename Cell>
__device__ inline void persist_recurrence(const T* M, bool by_column, const int* lengths,
                                          int steps, int B, int H, int K, int cols, int* status,
                                          const Cell& cell) {
    if (!persist_grid_covers(status, H, cols)) return;
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    const PersistSlice<T> slice = persist_slice<G>(M, B, H, K, cols, by_column);

    for (int t = REVERSE ? steps - 1 : 0; REVERSE ? t >= 0 : t < steps; t += REVERSE ? -1 : 1) {
        const bool has_prev = cell.has_prev(t);
        for (int b0 = 0; b0 < B; b0 += PERSIST_BATCH) {
            const int nb = min(PERSIST_BATCH, B - b0);
            __syncthreads();  // the slice is loaded and the previous chunk's reads of xs are done
            if (has_prev) persist_stage(slice.xs, cell.prev(t), b0, nb, K);
            __syncthreads();
            persist_chunk<VERSION, G>(slice, cols, K, b0, nb, has_prev, lengths,
                                      [&](int b, int j, int len, const T (&s)[G]) {
                                          cell(t, b, j, len, s);
                                      });
        }
        // step t complete everywhere before any block reads it
        if (REVERSE ? t > 0 : t + 1 < steps) grid.sync();
    }
}
