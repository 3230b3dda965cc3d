// kernels/tc_tile.cuh: one warp's tile of a product on the tensor cores, the building block of the
// recurrent product h_prev (B x K) @ V (K x N) in S = bfloat16, float16 or TF32 (float32 storage).
//   acc[j] (16 x 8 tile j, float32) += A (16 x K) @ B[:, 8j .. 8j + 7], j < NT,
// both operands in shared memory, row-major. The batch rows of h_prev are padded to 16 with zero
// rows by the caller (the tile covers B <= 16 rows; larger batches take more warps or tiles).
// acc[j][i] holds row tc_acc_row(lane, i), column tc_acc_col(lane, j, i) of the tile (the C/D
// fragment of mma.m16n8k*, see mma.cuh); the caller zeroes acc (or seeds it) and runs the epilogue.
// Every lane of the warp must call it (the mma and ldmatrix are .sync.aligned). No barrier inside:
// the caller fills shared memory and syncs before the call.
// Order of the float32 sum: over k in steps of 16 (8 for TF32), each step's products added by the
// tensor core (the emulator: k = 0, 1, ...): within K·2^-23·Σ|a·b| of the exact product.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "mma.cuh"

__device__ __forceinline__ void tc_mma16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                            const float (&c)[4], const __nv_bfloat16*) {
    mma_bf16_16816(d, a, b, c);
}
__device__ __forceinline__ void tc_mma16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                            const float (&c)[4], const __half*) {
    mma_f16_16816(d, a, b, c);
}

// S = __nv_bfloat16 or __half; NT even. a: 16 rows, row r at a + r·lda; b: K rows, row k at
// b + k·ldb, columns 0 .. 8·NT - 1. a and b 16-byte aligned, lda and ldb multiples of 8, K a
// multiple of 16. Per k-step of 16: A's fragment by one ldmatrix.x4 (matrix q = lane / 8 is rows
// 8(q & 1) .. +7, columns 8(q >> 1) .. +7: a[0..3] in order), the B fragments of two column tiles
// by one ldmatrix.x4.trans (matrix q: rows k0 + 8(q & 1) .. +7, columns 8(j + (q >> 1)) .. +7:
// b[0], b[1] of tile j, then of tile j + 1).
template <int NT, class S>
__device__ __forceinline__ void tc_tile_16x8n(float (&acc)[NT][4], const S* a, int lda, const S* b, int ldb, int K) {
    static_assert(NT % 2 == 0, "tc_tile_16x8n loads B two column tiles at a time");
    int lane = threadIdx.x & 31, q = lane >> 3, r = lane & 7;
    const S* arow = a + (r + 8 * (q & 1)) * lda + 8 * (q >> 1);
    const S* brow = b + (r + 8 * (q & 1)) * ldb + 8 * (q >> 1);
    for (int k0 = 0; k0 < K; k0 += 16) {
        unsigned af[4];
        ldmatrix_x4(af, arow + k0);
#pragma unroll
        for (int j = 0; j < NT; j += 2) {
            unsigned bf[4];
            ldmatrix_x4_trans(bf, brow + k0 * ldb + 8 * j);
            tc_mma16816(acc[j], af, {bf[0], bf[1]}, acc[j], a);
            tc_mma16816(acc[j + 1], af, {bf[2], bf[3]}, acc[j + 1], a);
        }
    }
}

// TF32: a as above (float32, already rounded with to_tf32), B given transposed: bt row n (n < 8·NT)
// is column n of B, at bt + n·ldbt (rounded too). lda, ldbt multiples of 4, K a multiple of 8,
// NT even. An ldmatrix 8x8 b16 matrix is 8 rows of 4 floats here, lane l receiving float
// (l / 4, l % 4): x4 on A gives a[0..3] of m16n8k8; x4 on bt (matrix q: rows 8(j + (q >> 1)) .. +7,
// columns k0 + 4(q & 1) .. +3) gives b[0], b[1] of tile j, then of tile j + 1.
template <int NT>
__device__ __forceinline__ void tc_tile_16x8n_tf32(float (&acc)[NT][4], const float* a, int lda, const float* bt,
                                                   int ldbt, int K) {
    static_assert(NT % 2 == 0, "tc_tile_16x8n_tf32 loads B two column tiles at a time");
    int lane = threadIdx.x & 31, q = lane >> 3, r = lane & 7;
    const float* arow = a + (r + 8 * (q & 1)) * lda + 4 * (q >> 1);
    const float* brow = bt + (r + 8 * (q >> 1)) * ldbt + 4 * (q & 1);
    for (int k0 = 0; k0 < K; k0 += 8) {
        unsigned af[4];
        ldmatrix_x4(af, arow + k0);
#pragma unroll
        for (int j = 0; j < NT; j += 2) {
            unsigned bf[4];
            ldmatrix_x4(bf, brow + 8 * j * ldbt + k0);
            mma_tf32_1688(acc[j], af, {bf[0], bf[1]}, acc[j]);
            mma_tf32_1688(acc[j + 1], af, {bf[2], bf[3]}, acc[j + 1]);
        }
    }
}

__device__ __forceinline__ int tc_acc_row(int lane, int i) { return (lane >> 2) + 8 * (i >> 1); }
__device__ __forceinline__ int tc_acc_col(int lane, int j, int i) { return 8 * j + 2 * (lane & 3) + (i & 1); }
