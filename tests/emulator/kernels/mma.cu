// Tensor-core test kernels (tests/emulator/test_mma.py, tests/cuda/test_mma_sass.py): small
// products through kernels/mma.cuh, and planted bugs that the emulator must catch.
// Matrices are row-major: A is M x K, B is K x N, C and D are M x N.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "mma.cuh"

__device__ __forceinline__ unsigned short bits_of(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
__device__ __forceinline__ unsigned short bits_of(__half v) { return __half_as_ushort(v); }
template <class T> __device__ __forceinline__ unsigned pack(T lo, T hi) {
    return (unsigned)bits_of(lo) | (unsigned)bits_of(hi) << 16;
}
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                         const float (&c)[4], __nv_bfloat16) {
    mma_bf16_16816(d, a, b, c);
}
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                         const float (&c)[4], __half) {
    mma_f16_16816(d, a, b, c);
}

// C fragment (g = lane / 4, t = lane % 4): rows g and g + 8, columns 2t and 2t + 1 of a 16x8 tile.
__device__ __forceinline__ void load_c(float (&c)[4], const float* C, int ldc, int lane) {
    int g = lane >> 2, t = lane & 3;
    c[0] = C[g * ldc + 2 * t];
    c[1] = C[g * ldc + 2 * t + 1];
    c[2] = C[(g + 8) * ldc + 2 * t];
    c[3] = C[(g + 8) * ldc + 2 * t + 1];
}
__device__ __forceinline__ void store_d(float* D, int ldd, const float (&d)[4], int lane) {
    int g = lane >> 2, t = lane & 3;
    D[g * ldd + 2 * t] = d[0];
    D[g * ldd + 2 * t + 1] = d[1];
    D[(g + 8) * ldd + 2 * t] = d[2];
    D[(g + 8) * ldd + 2 * t + 1] = d[3];
}

// D = A (16x16) · B (16x8) + C with the fragments read straight from global memory by their
// documented layout. Bug 1: a[1] and a[2] swapped (a wrong fragment layout).
template <class T, int Bug>
__global__ void __launch_bounds__(32) mma16816_direct(const T* A, const T* B, const float* C, float* D) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    unsigned a[4], b[2];
    a[0] = pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]);
    a[1] = pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]);
    a[2] = pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]);
    a[3] = pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9]);
    if (Bug == 1) {
        unsigned s = a[1];
        a[1] = a[2];
        a[2] = s;
    }
    b[0] = pack(B[2 * t * 8 + g], B[(2 * t + 1) * 8 + g]);
    b[1] = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    float c[4], d[4];
    load_c(c, C, 8, lane);
    mma16816(d, a, b, c, T());
    store_d(D, 8, d, lane);
}

// The same product with A given in float32 and converted to bf16 in registers
// (__floats2bfloat162_rn). Bug 1: the conversion is missing, the float bits go in as they are.
template <int Bug>
__global__ void __launch_bounds__(32) mma16816_from_float(const float* A, const __nv_bfloat16* B, const float* C,
                                                          float* D) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    unsigned a[4], b[2];
    for (int i = 0; i < 4; ++i) {
        const float* p = A + (g + 8 * (i & 1)) * 16 + 2 * t + 8 * (i >> 1);
        __nv_bfloat162 v = __floats2bfloat162_rn(p[0], p[1]);
        a[i] = Bug == 1 ? __float_as_uint(p[0]) : pack(v.x, v.y);
    }
    b[0] = pack(B[2 * t * 8 + g], B[(2 * t + 1) * 8 + g]);
    b[1] = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    float c[4], d[4];
    load_c(c, C, 8, lane);
    mma_bf16_16816(d, a, b, c);
    store_d(D, 8, d, lane);
}

// D = A (16x8) · B (8x8) + C in TF32, operands rounded with to_tf32 (cvt.rna).
__global__ void __launch_bounds__(32) mma1688_tf32_direct(const float* A, const float* B, const float* C, float* D) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    unsigned a[4], b[2];
    a[0] = to_tf32(A[g * 8 + t]);
    a[1] = to_tf32(A[(g + 8) * 8 + t]);
    a[2] = to_tf32(A[g * 8 + t + 4]);
    a[3] = to_tf32(A[(g + 8) * 8 + t + 4]);
    b[0] = to_tf32(B[t * 8 + g]);
    b[1] = to_tf32(B[(t + 4) * 8 + g]);
    float c[4], d[4];
    load_c(c, C, 8, lane);
    mma_tf32_1688(d, a, b, c);
    store_d(D, 8, d, lane);
}

constexpr int TILE = 64;  // the tiled kernels: one block of 4 warps, C (64x64) = A (64x64) · B (64x64)
constexpr int PAD16 = 8;  // 16 bytes of padding per shared row keeps rows 16-byte aligned

// Warp w computes rows 16w..16w+15 of C: per k-step of 16, A's fragment by one ldmatrix.x4 and
// B's fragments (8 column tiles) by ldmatrix.x2.trans of B's rows as stored.
// Bug 1: the ldmatrix row address is off by one element (misaligned).
// Bug 2: only lanes 0..15 load A's fragment (a fragment loaded by half a warp).
// Bug 3: A's fragment is loaded from global memory instead of shared memory.
template <class T, int Bug>
__global__ void __launch_bounds__(128) mma_tiled64(const T* A, const T* B, float* C) {
    __shared__ __align__(16) T As[TILE][TILE + PAD16];
    __shared__ __align__(16) T Bs[TILE][TILE + PAD16];
    for (int i = threadIdx.x; i < TILE * TILE; i += blockDim.x) {
        As[i / TILE][i % TILE] = A[i];
        Bs[i / TILE][i % TILE] = B[i];
    }
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, m0 = 16 * warp;
    float acc[8][4] = {};
    for (int k0 = 0; k0 < TILE; k0 += 16) {
        // x4: matrix q = lane / 8 is rows m0 + 8(q & 1) .. +7, columns k0 + 8(q >> 1) .. +7,
        // which are A-fragment registers a[0..3] in order.
        int q = lane >> 3, r = lane & 7;
        const T* row = &As[m0 + r + 8 * (q & 1)][k0 + 8 * (q >> 1)];
        if (Bug == 1) row += 1;
        if (Bug == 3) row = A + (m0 + r + 8 * (q & 1)) * TILE + k0 + 8 * (q >> 1);
        unsigned a[4] = {};
        if (Bug != 2 || lane < 16) ldmatrix_x4(a, row);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            // x2.trans: lanes 0..15 give rows k0 .. k0+15 of B's columns 8j .. 8j+7; transposed,
            // they are B-fragment registers b[0], b[1].
            unsigned b[2];
            ldmatrix_x2_trans(b, &Bs[k0 + (lane & 15)][8 * j]);
            mma16816(acc[j], a, b, acc[j], T());
        }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) store_d(C + m0 * TILE + 8 * j, TILE, acc[j], lane);
}

constexpr int PAD32 = 4;  // 16 bytes for float rows

// The TF32 version: A as stored, B transposed into shared memory (Bt[n][k]), both rounded by
// to_tf32 on the way in. An 8x8 b16 matrix of ldmatrix is 8 rows of 4 floats here, and lane l
// receives float (l / 4, l % 4) of it: ldmatrix.x4 on A gives a[0..3] of m16n8k8, ldmatrix.x2 on
// Bt gives b[0], b[1].
__global__ void __launch_bounds__(128) mma_tiled64_tf32(const float* A, const float* B, float* C) {
    __shared__ __align__(16) float As[TILE][TILE + PAD32];
    __shared__ __align__(16) float Bt[TILE][TILE + PAD32];
    for (int i = threadIdx.x; i < TILE * TILE; i += blockDim.x) {
        As[i / TILE][i % TILE] = __uint_as_float(to_tf32(A[i]));
        Bt[i % TILE][i / TILE] = __uint_as_float(to_tf32(B[i]));
    }
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, m0 = 16 * warp;
    int q = lane >> 3, r = lane & 7;
    float acc[8][4] = {};
    for (int k0 = 0; k0 < TILE; k0 += 8) {
        unsigned a[4];
        ldmatrix_x4(a, &As[m0 + r + 8 * (q & 1)][k0 + 4 * (q >> 1)]);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            unsigned b[2];
            ldmatrix_x2(b, &Bt[8 * j + r][k0 + 4 * (q & 1)]);
            mma_tf32_1688(acc[j], a, b, acc[j]);
        }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) store_d(C + m0 * TILE + 8 * j, TILE, acc[j], lane);
}

// Planted: lanes 16..31 leave before the mma (the instruction is executed by half a warp).
__global__ void mma_half_warp_exits(float* D) {
    if ((threadIdx.x & 31) >= 16) return;
    unsigned a[4] = {}, b[2] = {};
    float c[4] = {}, d[4];
    mma_bf16_16816(d, a, b, c);
    store_d(D, 8, d, threadIdx.x & 31);
}
