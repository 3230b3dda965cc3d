// kernels/persistent_tc.cuh — the persistent recurrence with its product on the tensor cores, for a
//   16-bit storage type S (__nv_bfloat16, __half; docs/persistent.md, "Tensor cores"). The plumbing
//   is persistent_common.cuh's (one cooperative launch, a grid barrier between steps, the status
//   word, StepState for either direction); only the slice's type and layout and the product differ.
// Product per step and batch chunk of up to PTC_BATCH = 16 rows: s[b][j] = sum_k x[b][k] * M(k, j)
//   for the block's units j (M(k, j) = V[k][j] forward, V[j][k] backward), by mma.m16n8k16 with
//   S operands and float32 accumulation (mma.cuh); A = the chunk (16 rows, the batch padded),
//   B = an n-tile of 8 of the block's units. One warp owns one (n-tile, part of k); with fewer
//   than 8 n-tiles the 8 warps split k into split = 8 / n-tiles parts, whose 16 x 8 float32 tiles
//   meet in red and are added in part order (deterministic); with 8 or more each warp takes whole
//   n-tiles over all of k and writes its outputs from the fragment.
// Dynamic shared memory (persist_smem), row length ld = ceil(K / 16) * 16 + PTC_PAD elements of S
//   (the k-steps' zero padding, then 16 bytes that make the row stride an odd multiple of 16
//   bytes, so the 8 rows of an ldmatrix hit 8 different bank groups):
//   Ws  [cols][ld]   the block's units' columns of M, k contiguous (B fragments by ldmatrix.x2)
//   xs  [xrows][ld]  the chunk of the previous state, xrows = min(B, 16) (A by ldmatrix.x4)
//   red [PTC_RED]    float32 partial tiles (8 x 128)
//   bytes = (cols + min(B, 16)) * ld * sizeof(S) + PTC_RED * 4
//   ldmatrix rows past the allocated ones (the batch rows of a chunk past xrows, the units of the
//   last n-tile past cols) read the last allocated row instead: they only feed outputs that are
//   dropped. Columns k >= K are zero in both operands.
// Epilogue: float32 sums handed to the cell, which computes in float32 and rounds once on store.
#pragma once
#include "persistent_common.cuh"
#include "tc_tile.cuh"

#define PTC_BATCH 16                      // batch rows per chunk: mma's m
#define PTC_PAD 8                         // elements of S after each row's k-steps (16 bytes)
#define PTC_RED (PERSIST_WARPS * 16 * 8)  // floats of the cross-warp partial tiles

__device__ __forceinline__ float ptc_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ptc_float(__half x) { return __half2float(x); }

// float32 -> S, round to nearest even (the one rounding on store).
template <class S> __device__ __forceinline__ S ptc_round(float x);
template <> __device__ __forceinline__ __nv_bfloat16 ptc_round<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half ptc_round<__half>(float x) { return __float2half_rn(x); }

__device__ __forceinline__ int ptc_ld(int K) { return (K + 15) / 16 * 16 + PTC_PAD; }

template <class S>
struct PtcSlice {
    S* Ws;
    S* xs;
    float* red;
    int j0, ncols, ld, xrows;
};

// Ws[jl][k] = M(k, j0 + jl) for jl < ncols, k < K; 0 elsewhere in the cols x ld slice.
//   by_column: M(k, j) = M[k][j] (forward: columns of V); else M[j][k] (backward: rows of V).
// Consecutive threads read consecutive global words in both cases (once per launch).
template <class S>
__device__ inline void ptc_load_slice(const PtcSlice<S>& sl, const S* M, int K, int cols,
                                      bool by_column) {
    const int n = cols * sl.ld;
    for (int idx = threadIdx.x; idx < n; idx += blockDim.x) {
        int jl, k;
        if (by_column) {
            k = idx / cols;
            jl = idx - k * cols;
        } else {
            jl = idx / sl.ld;
            k = idx - jl * sl.ld;
        }
        S v = ptc_round<S>(0.0f);
        if (jl < sl.ncols && k < K)
            v = by_column ? M[(size_t)k * K + sl.j0 + jl] : M[(size_t)(sl.j0 + jl) * K + k];
        sl.Ws[jl * sl.ld + k] = v;
    }
    for (int idx = threadIdx.x; idx < sl.xrows * sl.ld; idx += blockDim.x)
        sl.xs[idx] = ptc_round<S>(0.0f);  // the staging writes k < K only
}

// xs[bb][k] = x.row(b0 + bb)[k] for bb < nb, k < K: 16-byte copies where every row allows it.
// The rows were written by other blocks before the last grid barrier: plain loads, never __ldg.
template <class S, bool FLIP>
__device__ inline void ptc_stage(const PtcSlice<S>& sl, const StepState<S, FLIP>& x, int b0, int nb,
                                 int K) {
    if (K % 8 == 0 && ((reinterpret_cast<size_t>(x.seq) | reinterpret_cast<size_t>(x.init)) & 15) == 0) {
        const int per = K / 8;
        for (int idx = threadIdx.x; idx < nb * per; idx += blockDim.x) {
            const int bb = idx / per, v = idx - bb * per;
            reinterpret_cast<uint4*>(sl.xs + bb * sl.ld)[v] =
                reinterpret_cast<const uint4*>(x.row(b0 + bb))[v];
        }
        return;
    }
    for (int idx = threadIdx.x; idx < nb * K; idx += blockDim.x) {
        const int bb = idx / K, k = idx - bb * K;
        sl.xs[bb * sl.ld + k] = x.row(b0 + bb)[k];
    }
}

// acc (the C fragment of a 16 x 8 tile) += xs (16 x [kb, ke)) @ Ws[8 nt .. 8 nt + 7][kb, ke)^T.
// Whole warp. Per k-step: A by one ldmatrix.x4 (matrix q = lane / 8: rows 8(q & 1) .. +7, columns
// 8(q >> 1) .. +7: a[0..3]), B by one ldmatrix.x2 (matrix q & 1: units 8 nt .. +7, columns
// 8(q & 1) .. +7 of the k-step: b[0], b[1]; lanes 16..31's addresses are not read).
template <class S>
__device__ inline void ptc_tile(float (&acc)[4], const PtcSlice<S>& sl, int cols, int nt, int kb,
                                int ke) {
    const int lane = threadIdx.x & 31, r = lane & 7, q = lane >> 3;
    const S* arow = sl.xs + min(r + 8 * (q & 1), sl.xrows - 1) * sl.ld + 8 * (q >> 1);
    const S* brow = sl.Ws + min(8 * nt + r, cols - 1) * sl.ld + 8 * (q & 1);
    for (int k0 = kb; k0 < ke; k0 += 16) {
        unsigned af[4], bf[2];
        ldmatrix_x4(af, arow + k0);
        ldmatrix_x2(bf, brow + k0);
        tc_mma16816(acc, af, bf, acc, sl.xs);
    }
}

// The sums of one batch chunk (rows b0 .. b0 + nb - 1, staged in xs) against the block's slice,
// handed to epi(b, j, len, s) for every output of the block's units; has_prev = false gives
// s = 0 without reading xs. Whole block, uniform arguments (holds __syncthreads).
template <class S, typename Epi>
__device__ inline void ptc_chunk(const PtcSlice<S>& sl, int cols, int K, int b0, int nb,
                                 bool has_prev, const int* lengths, Epi epi) {
    const int ntiles = (cols + 7) / 8, kend = (K + 15) / 16 * 16;
    const int split = ntiles >= PERSIST_WARPS ? 1 : PERSIST_WARPS / ntiles;  // k parts per n-tile
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    if (has_prev && split == 1) {
        for (int nt = warp; nt < ntiles; nt += PERSIST_WARPS) {
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            ptc_tile(acc, sl, cols, nt, 0, kend);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int r = tc_acc_row(lane, i), c = 8 * nt + tc_acc_col(lane, 0, i);
                if (r < nb && c < sl.ncols) epi(b0 + r, sl.j0 + c, lengths[b0 + r], acc[i]);
            }
        }
        return;
    }
    if (has_prev) {
        const int part = warp % split, nt = warp / split, ksteps = kend / 16;
        if (nt < ntiles) {  // uniform over the warp
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            ptc_tile(acc, sl, cols, nt, 16 * (part * ksteps / split),
                     16 * ((part + 1) * ksteps / split));
#pragma unroll
            for (int i = 0; i < 4; ++i)
                sl.red[(part * ntiles + nt) * 128 + tc_acc_row(lane, i) * 8 + tc_acc_col(lane, 0, i)] =
                    acc[i];
        }
        __syncthreads();
    }
    for (int o = tid; o < ntiles * 128; o += PERSIST_THREADS) {
        const int r = (o >> 3) & 15, c = 8 * (o >> 7) + (o & 7);
        if (r >= nb || c >= sl.ncols) continue;
        float s = 0.0f;
        if (has_prev)
            for (int p = 0; p < split; ++p) s += sl.red[p * ntiles * 128 + o];
        epi(b0 + r, sl.j0 + c, lengths[b0 + r], s);
    }
}

// The whole recurrence (persist_recurrence's contract, persistent_common.cuh, with S storage and
// G = 1): the cell provides has_prev(t), prev(t) (a StepState<S, FLIP> of K-long rows) and the
// epilogue operator()(t, b, j, len, float s).
template <bool REVERSE, class S, typename Cell>
__device__ inline void ptc_recurrence(const S* M, bool by_column, const int* lengths, int steps,
                                      int B, int H, int cols, int* status, const Cell& cell) {
    if (!persist_grid_covers(status, H, cols)) return;
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    PtcSlice<S> sl;
    sl.ld = ptc_ld(H);
    sl.xrows = min(B, PTC_BATCH);
    sl.Ws = reinterpret_cast<S*>(persist_smem);
    sl.xs = sl.Ws + (size_t)cols * sl.ld;
    sl.red = reinterpret_cast<float*>(sl.xs + (size_t)sl.xrows * sl.ld);  // ld * 2 bytes: 16-byte rows
    sl.j0 = blockIdx.x * cols;
    sl.ncols = sl.j0 < H ? min(cols, H - sl.j0) : 0;
    ptc_load_slice(sl, M, H, cols, by_column);

    for (int t = REVERSE ? steps - 1 : 0; REVERSE ? t >= 0 : t < steps; t += REVERSE ? -1 : 1) {
        const bool has_prev = cell.has_prev(t);
        for (int b0 = 0; b0 < B; b0 += PTC_BATCH) {
            const int nb = min(PTC_BATCH, B - b0);
            __syncthreads();  // the slice is loaded and the previous chunk's reads of xs and red are done
            if (has_prev) ptc_stage(sl, cell.prev(t), b0, nb, H);
            __syncthreads();
            ptc_chunk(sl, cols, H, b0, nb, has_prev, lengths,
                      [&](int b, int j, int len, float s) { cell(t, b, j, len, s); });
        }
        if (REVERSE ? t > 0 : t + 1 < steps) grid.sync();  // step t complete before anyone reads it
    }
}
