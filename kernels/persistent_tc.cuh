// kernels/persistent_tc.cuh — the persistent recurrence with its product on the tensor cores, for a
//   storage type S: __nv_bfloat16 or __half (mma.m16n8k16 on S operands), or float in TF32 mode
//   (mma.m16n8k8 on operands rounded by to_tf32 as they enter shared memory; docs/persistent.md,
//   "Tensor cores"). The plumbing is persistent_common.cuh's (one cooperative launch, a grid
//   barrier between steps, the status word, StepState for either direction); only the slice's
//   type and layout and the product differ.
// Product per step and batch chunk of up to PTC_BATCH = 16 rows: s[b][j] = sum_k x[b][k] * M(k, j)
//   for the block's units j (M(k, j) = V[k][j] forward, V[j][k] backward), by mma with float32
//   accumulation (mma.cuh), k-steps of PTC_KSTEP = 32 bytes of S; A = the chunk (16 rows, the
//   batch padded), B = an n-tile of 8 of the block's units. One warp owns one (n-tile, part of
//   k); with fewer than 8 n-tiles the 8 warps split k into split = 8 / n-tiles parts, whose
//   16 x 8 float32 tiles meet in red and are added in part order (deterministic); with 8 or more
//   each warp takes whole n-tiles over all of k and writes its outputs from the fragment.
// Dynamic shared memory (persist_smem), row length ld: K elements of S padded to whole k-steps and
//   PTC_PAD bytes (the k-steps' zero padding, then 16 bytes that make the row stride an odd
//   multiple of 16 bytes, so the 8 rows of an ldmatrix hit 8 different bank groups):
//   Ws  [cols][ld]   the block's units' columns of M, k contiguous (B fragments by ldmatrix.x2;
//                    TF32: an 8 x 8 b16 matrix is 8 rows of 4 floats, so the same loads apply)
//   xs  [xrows][ld]  the chunk of the previous state, xrows = min(B, 16) (A by ldmatrix.x4)
//   red [PTC_RED]    float32 partial tiles (8 x 128)
//   bytes = (cols + min(B, 16)) * ld * sizeof(S) + PTC_RED * 4 (TF32: the operands' float32 bits)
//   ldmatrix rows past the allocated ones (the batch rows of a chunk past xrows, the units of the
//   last n-tile past cols) read the last allocated row instead: they only feed outputs that are
//   dropped. Columns k >= K are zero in both operands.
// Epilogue: float32 sums handed to the cell, which computes in float32 and rounds once on store.
#pragma once
#include "persistent_common.cuh"
#include "tc_tile.cuh"

#define PTC_BATCH 16                      // batch rows per chunk: mma's m
#define PTC_KSTEP 32                      // bytes of a k-step (16 bf16/f16, 8 tf32)
#define PTC_PAD 16                        // bytes after each row's k-steps
#define PTC_RED (PERSIST_WARPS * 16 * 8)  // floats of the cross-warp partial tiles

__device__ __forceinline__ float ptc_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ptc_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float ptc_float(float x) { return x; }

// float32 -> S, round to nearest even (the one rounding on store).
template <class S> __device__ __forceinline__ S ptc_round(float x);
template <> __device__ __forceinline__ __nv_bfloat16 ptc_round<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half ptc_round<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ float ptc_round<float>(float x) { return x; }

// An element of S as it enters the product (shared memory): itself, or TF32-rounded (cvt.rna).
__device__ __forceinline__ __nv_bfloat16 ptc_operand(__nv_bfloat16 x) { return x; }
__device__ __forceinline__ __half ptc_operand(__half x) { return x; }
__device__ __forceinline__ float ptc_operand(float x) { return __uint_as_float(to_tf32(x)); }
// The same for 16 bytes of S.
template <class S>
__device__ __forceinline__ uint4 ptc_operand4(uint4 v, const S*) { return v; }
__device__ __forceinline__ uint4 ptc_operand4(uint4 v, const float*) {
    return make_uint4(to_tf32(__uint_as_float(v.x)), to_tf32(__uint_as_float(v.y)),
                      to_tf32(__uint_as_float(v.z)), to_tf32(__uint_as_float(v.w)));
}

__device__ __forceinline__ void ptc_mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                        const float*) {
    mma_tf32_1688(d, a, b, d);
}
template <class S>
__device__ __forceinline__ void ptc_mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                        const S* s) {
    tc_mma16816(d, a, b, d, s);
}

// Elements of S per k-step, and per row of the slice and the chunk.
template <class S>
__device__ __forceinline__ constexpr int ptc_kstep() { return PTC_KSTEP / sizeof(S); }
template <class S>
__device__ __forceinline__ int ptc_ld(int K) {
    return (K + ptc_kstep<S>() - 1) / ptc_kstep<S>() * ptc_kstep<S>() + PTC_PAD / sizeof(S);
}

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
        sl.Ws[jl * sl.ld + k] = ptc_operand(v);
    }
    for (int idx = threadIdx.x; idx < sl.xrows * sl.ld; idx += blockDim.x)
        sl.xs[idx] = ptc_round<S>(0.0f);  // the staging writes k < K only
}

// xs[bb][k] = ptc_operand(x.row(b0 + bb)[k]) for bb < nb, k < K: 16-byte copies where every row
// allows it.
// The rows were written by other blocks before the last grid barrier: plain loads, never __ldg.
template <class S, bool FLIP>
__device__ inline void ptc_stage(const PtcSlice<S>& sl, const StepState<S, FLIP>& x, int b0, int nb,
                                 int K) {
    constexpr int vec = 16 / sizeof(S);
    const size_t bases = reinterpret_cast<size_t>(x.seq) | reinterpret_cast<size_t>(x.init);
    if (K % vec == 0 && (bases & 15) == 0) {
        const int per = K / vec;
        for (int idx = threadIdx.x; idx < nb * per; idx += blockDim.x) {
            const int bb = idx / per, v = idx - bb * per;
            reinterpret_cast<uint4*>(sl.xs + bb * sl.ld)[v] =
                ptc_operand4(reinterpret_cast<const uint4*>(x.row(b0 + bb))[v], sl.xs);
        }
        return;
    }
    for (int idx = threadIdx.x; idx < nb * K; idx += blockDim.x) {
        const int bb = idx / K, k = idx - bb * K;
        sl.xs[bb * sl.ld + k] = ptc_operand(x.row(b0 + bb)[k]);
    }
}

// acc (the C fragment of a 16 x 8 tile) += xs (16 x [kb, ke)) @ Ws[8 nt .. 8 nt + 7][kb, ke)^T.
// Whole warp. Per k-step of KS (16 bf16/f16, 8 tf32) and h = KS / 2: A by one ldmatrix.x4 (matrix
// q = lane / 8: rows 8(q & 1) .. +7, columns h(q >> 1) .. +h-1: a[0..3] of m16n8k16, or of m16n8k8
// where a matrix is 8 rows of 4 floats), B by one ldmatrix.x2 (matrix q & 1: units 8 nt .. +7,
// columns h(q & 1) .. +h-1 of the k-step: b[0], b[1]; lanes 16..31's addresses are not read).
template <class S>
__device__ inline void ptc_tile(float (&acc)[4], const PtcSlice<S>& sl, int cols, int nt, int kb,
                                int ke) {
    const int lane = threadIdx.x & 31, r = lane & 7, q = lane >> 3;
    constexpr int KS = ptc_kstep<S>(), h = KS / 2;
    const S* arow = sl.xs + min(r + 8 * (q & 1), sl.xrows - 1) * sl.ld + h * (q >> 1);
    const S* brow = sl.Ws + min(8 * nt + r, cols - 1) * sl.ld + h * (q & 1);
    for (int k0 = kb; k0 < ke; k0 += KS) {
        unsigned af[4], bf[2];
        ldmatrix_x4(af, arow + k0);
        ldmatrix_x2(bf, brow + k0);
        ptc_mma(acc, af, bf, sl.xs);
    }
}

// The sums of one batch chunk (rows b0 .. b0 + nb - 1, staged in xs) against the block's slice,
// handed to epi(b, j, len, s) for every output of the block's units; has_prev = false gives
// s = 0 without reading xs. Whole block, uniform arguments (holds __syncthreads).
template <class S, typename Epi>
__device__ inline void ptc_chunk(const PtcSlice<S>& sl, int cols, int K, int b0, int nb,
                                 bool has_prev, const int* lengths, Epi epi) {
    constexpr int KS = ptc_kstep<S>();
    const int ntiles = (cols + 7) / 8, kend = (K + KS - 1) / KS * KS;
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
        const int part = warp % split, nt = warp / split, ksteps = kend / KS;
        if (nt < ntiles) {  // uniform over the warp
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            ptc_tile(acc, sl, cols, nt, KS * (part * ksteps / split),
                     KS * ((part + 1) * ksteps / split));
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
    sl.ld = ptc_ld<S>(H);
    sl.xrows = min(B, PTC_BATCH);
    sl.Ws = reinterpret_cast<S*>(persist_smem);
    sl.xs = sl.Ws + (size_t)cols * sl.ld;
    sl.red = reinterpret_cast<float*>(sl.xs + (size_t)sl.xrows * sl.ld);  // rows of 16-byte units
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
