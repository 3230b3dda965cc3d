// mma.cuh: warp-level tensor-core building blocks (docs/architecture.md §3, docs/emulator.md).
//
// Register-level wrappers of mma.sync and ldmatrix. On a GPU each is one inline PTX instruction;
// under the emulator (GPU_BPTT_EMULATOR, which also defines __CUDA_ARCH__) each is a warp
// collective with the documented PTX fragment layout per lane, so a kernel that maps fragments
// wrongly gives wrong results on the CPU too. Every helper must be called by all 32 lanes of the
// warp with the same arguments' meaning (.sync.aligned); the emulator reports a call by part of a
// warp as a divergent warp operation.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with
// g = lane / 4 (groupID) and t = lane % 4 (threadID_in_group); a .b32 register holds two 16-bit
// elements, the lower-indexed one in bits 0..15:
//   A (16x16, row): a[0] = A[g][2t, 2t+1]     a[1] = A[g+8][2t, 2t+1]
//                   a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B (16x8, col):  b[0] = B[2t, 2t+1][g]     b[1] = B[2t+8, 2t+9][g]
//   C, D (16x8 f32): c[0], c[1] = C[g][2t, 2t+1]   c[2], c[3] = C[g+8][2t, 2t+1]
// ("Matrix Fragments for mma.m16n8k8", .tf32: one element per register)
//   A (16x8, row):  a[0] = A[g][t]  a[1] = A[g+8][t]  a[2] = A[g][t+4]  a[3] = A[g+8][t+4]
//   B (8x8, col):   b[0] = B[t][g]  b[1] = B[t+4][g]
//   C, D as above.
// ldmatrix ("Warp-level matrix load instruction: ldmatrix", .m8n8 .b16): matrix i of an .x2/.x4
// load has its 8 row addresses (16 bytes each, 16-byte aligned, in shared memory) given by lanes
// 8i..8i+7; lane l receives in r[i] the elements (l/4, 2(l%4)) and (l/4, 2(l%4)+1) of matrix i,
// with .trans those of its transpose: (2(l%4), l/4) and (2(l%4)+1, l/4). For .x2 only lanes 0..15
// give addresses.
//
// The emulator multiplies exactly (a product of two bf16/f16/tf32 values is a float32) and adds
// the k products in float32 in order k = 0, 1, ... onto c (the hardware's adder order and internal
// width are not documented; tests bound the difference by K·2^-23·Σ|a·b|). .tf32 operands are
// read with their low 13 bits cleared: pass them through to_tf32 (cvt.rna).
#pragma once

#ifndef GPU_BPTT_EMULATOR

__device__ __forceinline__ unsigned to_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

#define GPU_BPTT_MMA_16816(NAME, TYPE)                                                              \
    __device__ __forceinline__ void NAME(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], \
                                         const float (&c)[4]) {                                    \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE ".f32 "                \
                     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};"         \
                     : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                              \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),           \
                       "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));                                \
    }
GPU_BPTT_MMA_16816(mma_bf16_16816, "bf16")
GPU_BPTT_MMA_16816(mma_f16_16816, "f16")
#undef GPU_BPTT_MMA_16816

__device__ __forceinline__ void mma_tf32_1688(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                              const float (&c)[4]) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
                   "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* row) {
    unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* row) {
    unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

__device__ __forceinline__ void ldmatrix_x2(unsigned (&r)[2], const void* row) {
    unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];" : "=r"(r[0]), "=r"(r[1]) : "r"(s));
}

__device__ __forceinline__ void ldmatrix_x2_trans(unsigned (&r)[2], const void* row) {
    unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(s));
}

#else  // the emulator: the same instructions as warp collectives

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace gpu_bptt_mma {

struct MmaOperands { unsigned a[4], b[2]; float c[4], d[4]; };
struct LdmatrixOperands { const void* row; unsigned r[4]; };

inline float tf32_operand(unsigned bits) { return __uint_as_float(bits & 0xffffe000u); }
inline unsigned short half_of(unsigned reg, int i) { return (unsigned short)(i ? reg >> 16 : reg & 0xffffu); }

// D = A·B + C for m16n8k16 (bf16 or f16 operands, decoded by Decode).
template <float (*Decode)(unsigned short)>
std::string mma_m16n8k16(void* const* lanes) {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
        const MmaOperands& o = *(const MmaOperands*)lanes[l];
        int g = l >> 2, t = l & 3;
        for (int i = 0; i < 8; ++i)  // a_i: row g (+8 for a2,a3,a6,a7), col 2t + (i&1) (+8 for i >= 4)
            A[g + 8 * ((i >> 1) & 1)][2 * t + (i & 1) + 8 * (i >> 2)] = Decode(half_of(o.a[i >> 1], i & 1));
        for (int i = 0; i < 4; ++i)  // b_i: row 2t + (i&1) (+8 for i >= 2), col g
            B[2 * t + (i & 1) + 8 * (i >> 1)][g] = Decode(half_of(o.b[i >> 1], i & 1));
        for (int i = 0; i < 4; ++i) C[g + 8 * (i >> 1)][2 * t + (i & 1)] = o.c[i];
    }
    for (int l = 0; l < 32; ++l) {
        MmaOperands& o = *(MmaOperands*)lanes[l];
        int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; ++i) {
            int m = g + 8 * (i >> 1), n = 2 * t + (i & 1);
            float acc = C[m][n];
            for (int k = 0; k < 16; ++k) acc += A[m][k] * B[k][n];  // exact products, float32 sum
            o.d[i] = acc;
        }
    }
    return "";
}

inline std::string mma_m16n8k8_tf32(void* const* lanes) {
    float A[16][8], B[8][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
        const MmaOperands& o = *(const MmaOperands*)lanes[l];
        int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; ++i) A[g + 8 * (i & 1)][t + 4 * (i >> 1)] = tf32_operand(o.a[i]);
        for (int i = 0; i < 2; ++i) B[t + 4 * i][g] = tf32_operand(o.b[i]);
        for (int i = 0; i < 4; ++i) C[g + 8 * (i >> 1)][2 * t + (i & 1)] = o.c[i];
    }
    for (int l = 0; l < 32; ++l) {
        MmaOperands& o = *(MmaOperands*)lanes[l];
        int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; ++i) {
            int m = g + 8 * (i >> 1), n = 2 * t + (i & 1);
            float acc = C[m][n];
            for (int k = 0; k < 8; ++k) acc += A[m][k] * B[k][n];
            o.d[i] = acc;
        }
    }
    return "";
}

template <int N, bool Trans>
std::string ldmatrix(void* const* lanes) {
    unsigned short M[4][8][8];
    for (int i = 0; i < N; ++i) {
        for (int r = 0; r < 8; ++r) {
            int l = 8 * i + r;
            const void* p = ((const LdmatrixOperands*)lanes[l])->row;
            char why[160];
            if ((uintptr_t)p % 16) {
                std::snprintf(why, sizeof why, "lane %d's row address %p is not 16-byte aligned", l, p);
                return why;
            }
            if (!emu::in_shared(p, 16)) {
                std::snprintf(why, sizeof why, "lane %d's row address %p is not in shared memory", l, p);
                return why;
            }
            std::memcpy(M[i][r], p, 16);
        }
    }
    for (int l = 0; l < 32; ++l) {
        LdmatrixOperands& o = *(LdmatrixOperands*)lanes[l];
        int g = l >> 2, t = l & 3;
        for (int i = 0; i < N; ++i) {
            unsigned lo = Trans ? M[i][2 * t][g] : M[i][g][2 * t];
            unsigned hi = Trans ? M[i][2 * t + 1][g] : M[i][g][2 * t + 1];
            o.r[i] = lo | hi << 16;
        }
    }
    return "";
}

inline void mma(emu::Collective fn, const char* what, float (&d)[4], const unsigned (&a)[4],
                const unsigned (&b)[2], const float (&c)[4], const std::source_location& loc) {
    MmaOperands o;
    std::memcpy(o.a, a, sizeof o.a);
    std::memcpy(o.b, b, sizeof o.b);
    std::memcpy(o.c, c, sizeof o.c);
    emu::warp_collective(fn, what, &o, loc);
    std::memcpy(d, o.d, sizeof o.d);
}

template <int N>
inline void load(emu::Collective fn, const char* what, unsigned* r, const void* row, const std::source_location& loc) {
    LdmatrixOperands o{row, {}};
    emu::warp_collective(fn, what, &o, loc);
    std::memcpy(r, o.r, N * sizeof(unsigned));
}

}  // namespace gpu_bptt_mma

// cvt.rna.tf32.f32: round to nearest, ties away from zero, on the 10-bit mantissa (low 13 bits
// cleared); NaN stays NaN, infinities stay, a finite value may round up to infinity.
inline unsigned to_tf32(float x) {
    unsigned u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffffffu;
    if ((u & 0x7f800000u) == 0x7f800000u) return u;
    return (u + 0x1000u) & 0xffffe000u;  // magnitude + half an ulp, truncated: ties away from zero
}

inline void mma_bf16_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], const float (&c)[4],
                           std::source_location loc = std::source_location::current()) {
    gpu_bptt_mma::mma(&gpu_bptt_mma::mma_m16n8k16<emu::bf16_bits_to_f32>,
                      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", d, a, b, c, loc);
}
inline void mma_f16_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], const float (&c)[4],
                          std::source_location loc = std::source_location::current()) {
    gpu_bptt_mma::mma(&gpu_bptt_mma::mma_m16n8k16<emu::f16_bits_to_f32>,
                      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", d, a, b, c, loc);
}
inline void mma_tf32_1688(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], const float (&c)[4],
                          std::source_location loc = std::source_location::current()) {
    gpu_bptt_mma::mma(&gpu_bptt_mma::mma_m16n8k8_tf32, "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32",
                      d, a, b, c, loc);
}
inline void ldmatrix_x4(unsigned (&r)[4], const void* row, std::source_location loc = std::source_location::current()) {
    gpu_bptt_mma::load<4>(&gpu_bptt_mma::ldmatrix<4, false>, "ldmatrix.sync.aligned.m8n8.x4.shared.b16", r, row, loc);
}
inline void ldmatrix_x4_trans(unsigned (&r)[4], const void* row,
                              std::source_location loc = std::source_location::current()) {
    gpu_bptt_mma::load<4>(&gpu_bptt_mma::ldmatrix<4, true>, "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", r,
                          row, loc);
}
inline void ldmatrix_x2(unsigned (&r)[2], const void* row, std::source_location loc = std::source_location::current()) {
    gpu_bptt_mma::load<2>(&gpu_bptt_mma::ldmatrix<2, false>, "ldmatrix.sync.aligned.m8n8.x2.shared.b16", r, row, loc);
}
inline void ldmatrix_x2_trans(unsigned (&r)[2], const void* row,
                              std::source_location loc = std::source_location::current()) {
    gpu_bptt_mma::load<2>(&gpu_bptt_mma::ldmatrix<2, true>, "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16", r,
                          row, loc);
}

#endif
