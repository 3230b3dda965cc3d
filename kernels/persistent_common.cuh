// kernels/persistent_common.cuh — the pieces shared by the persistent Elman kernels
//   (elman_persistent_fwd.cu, elman_persistent_bwd.cu): one cooperative launch runs every step;
//   each block keeps a slice of the recurrent matrix in shared memory for the whole sequence.
// Block: PERSIST_THREADS = 256 threads (8 warps), one block per multiprocessor. Block g owns the
//   output columns j0 = g * cols .. j0 + ncols - 1 (the last block may own fewer, or none).
// Dynamic shared memory (one extern array per file; see docs/architecture.md §3), in elements of T:
//   Ws [cols][H]  the block's slice, row jl = output column j0 + jl, so the lanes of a warp read
//                 consecutive k from consecutive words: no bank conflicts
//   xs [bc][H]    one batch chunk of the previous state (h[t-1] or du[t+1]), bc = min(B, 8)
//   red [8][64]   v2 only: each warp's partial sums of one group's 64 outputs
//   bytes = (cols + bc) * H * sizeof(T)  (+ 8 * 64 * sizeof(T) for v2)
// Per step and batch chunk the block stages xs from global memory, then
//   v1: warp w computes the columns jl = w, w + 8, ...: its lanes split k (k = lane + 32 i), each
//       lane keeps one accumulator per batch row of the chunk, and a butterfly of shuffles sums
//       over the warp. Each lane reads 8 xs values and one V value per 8 multiply-adds.
//   v2: the block computes 8 columns at a time (a group): all 256 threads split k
//       (k = tid + 256 i), each keeps 64 accumulators (8 batch rows x 8 columns), so it reads
//       8 xs and 8 V values per 64 multiply-adds; a reduce-scatter of shuffles leaves lane l the
//       warp's sums of outputs 2l and 2l + 1, and threads 0..63 add the 8 warps' sums from red.
// Types: float, double (template T).
#pragma once
#include <cooperative_groups.h>

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

// Copy the block's slice of the recurrent matrix M (H, H) into Ws.
//   by_column = true:  Ws[jl][k] = M[k][j0 + jl]  (forward: columns of V)
//   by_column = false: Ws[jl][k] = M[j0 + jl][k]  (backward: rows of V, i.e. columns of V.T)
// Consecutive threads read consecutive global words in both cases; the transposing stores of the
// first case conflict on banks, but they happen once per launch.
template <typename T>
__device__ inline void persist_load_slice(T* Ws, const T* M, int H, int j0, int ncols,
                                          bool by_column) {
    const int n = ncols * H;
    if (by_column) {
        for (int idx = threadIdx.x; idx < n; idx += blockDim.x) {
            const int k = idx / ncols, jl = idx - k * ncols;
            Ws[jl * H + k] = M[(size_t)k * H + j0 + jl];
        }
    } else {
        const T* rows = M + (size_t)j0 * H;
        for (int idx = threadIdx.x; idx < n; idx += blockDim.x) Ws[idx] = rows[idx];
    }
}

// This block's place in the launch: its slice Ws of M (loaded here), the staging area xs after it
// (min(B, PERSIST_BATCH) rows), v2's sums red after that, and its output columns
// j0 .. j0 + ncols - 1 (none for a block past H).
template <typename T>
struct PersistSlice {
    T* Ws;
    T* xs;
    T* red;
    int j0;
    int ncols;
};

template <typename T>
__device__ inline PersistSlice<T> persist_slice(const T* M, int B, int H, int cols,
                                                bool by_column) {
    PersistSlice<T> s;
    s.Ws = reinterpret_cast<T*>(persist_smem);
    s.xs = s.Ws + (size_t)cols * H;
    s.red = s.xs + (size_t)min(B, PERSIST_BATCH) * H;
    s.j0 = blockIdx.x * cols;
    s.ncols = s.j0 < H ? min(cols, H - s.j0) : 0;
    persist_load_slice(s.Ws, M, H, s.j0, s.ncols, by_column);
    return s;
}

// The 16-byte vector of 4 floats or 2 doubles.
template <int Bytes> struct PersistVec;
template <> struct PersistVec<4> { using type = float4; };
template <> struct PersistVec<8> { using type = double2; };

// xs[bb][k] = src[b0 + bb][k] for bb < nb. src was written by other blocks before the last grid
// barrier, so these are plain coherent loads (never __ldg, whose cache may hold stale lines).
// Where both ends are 16-byte aligned and the chunk is whole vectors, 16-byte loads: a quarter of
// the instructions, and more bytes in flight per thread for a copy that waits on L2.
template <typename T>
__device__ inline void persist_stage(T* xs, const T* src, int b0, int nb, int H) {
    using Vec = typename PersistVec<sizeof(T)>::type;
    constexpr int per = sizeof(Vec) / sizeof(T);
    const T* s = src + (size_t)b0 * H;
    const int n = nb * H;
    if (n % per == 0 && ((reinterpret_cast<size_t>(s) | reinterpret_cast<size_t>(xs)) & 15) == 0) {
        const Vec* sv = reinterpret_cast<const Vec*>(s);
        Vec* xv = reinterpret_cast<Vec*>(xs);
#pragma unroll 4
        for (int idx = threadIdx.x; idx < n / per; idx += blockDim.x) xv[idx] = sv[idx];
        return;
    }
    for (int idx = threadIdx.x; idx < n; idx += blockDim.x) xs[idx] = s[idx];
}

// acc[bb] = sum_k xs[bb][k] * w[k] for bb < nb, on every lane of the calling warp (whole warp).
template <typename T>
__device__ inline void persist_dot(T (&acc)[PERSIST_BATCH], const T* xs, const T* w, int nb,
                                   int H) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int bb = 0; bb < PERSIST_BATCH; ++bb) acc[bb] = T(0);
    for (int k = lane; k < H; k += 32) {
        const T v = w[k];
#pragma unroll
        for (int bb = 0; bb < PERSIST_BATCH; ++bb)
            if (bb < nb) acc[bb] += xs[bb * H + k] * v;
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
                                      int H) {
    static_assert(PERSIST_OUTS == 64, "the reduce-scatter stages below assume 64 outputs");
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    T v[PERSIST_OUTS];
#pragma unroll
    for (int o = 0; o < PERSIST_OUTS; ++o) v[o] = T(0);
    for (int k = tid; k < H; k += PERSIST_THREADS) {
        T x[PERSIST_BATCH], w[PERSIST_GROUP];
#pragma unroll
        for (int bb = 0; bb < PERSIST_BATCH; ++bb) x[bb] = bb < nb ? xs[bb * H + k] : T(0);
#pragma unroll
        for (int c = 0; c < PERSIST_GROUP; ++c)
            w[c] = c < ng ? Ws[(size_t)(g0 + c) * H + k] : T(0);
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
