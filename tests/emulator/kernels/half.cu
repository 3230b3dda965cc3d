// The 16-bit conversions of cuda_bf16.h / cuda_fp16.h (and mma.cuh's to_tf32), for the tests
// against ml_dtypes in tests/emulator/test_half.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "mma.cuh"

// float32 bit patterns start .. start + gridDim.x * per_block - 1, per_block of them per block.
__global__ void convert_range(unsigned start, unsigned per_block, unsigned short* bf, unsigned short* hf) {
    if (threadIdx.x != 0) return;
    unsigned first = blockIdx.x * per_block;
    for (unsigned i = first; i < first + per_block; ++i) {
        float x = __uint_as_float(start + i);
        bf[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x));
        hf[i] = __half_as_ushort(__float2half_rn(x));
    }
}

// out[k][i] for each float x[i]: the bits of __float2bfloat16_rn, __float2bfloat16, the low and
// high halves of __floats2bfloat162_rn (pairs x[i & ~1], x[i | 1]) and the same four for half.
__global__ void convert_sample(const float* x, int n, unsigned short* out, unsigned* tf32) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        int j = i & ~1;
        float lo = x[j], hi = j + 1 < n ? x[j + 1] : 0.0f;
        __nv_bfloat162 b2 = __floats2bfloat162_rn(lo, hi);
        __half2 h2 = __floats2half2_rn(lo, hi);
        out[0 * n + i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
        out[1 * n + i] = __bfloat16_as_ushort(__float2bfloat16(x[i]));
        out[2 * n + i] = __bfloat16_as_ushort(i & 1 ? __high2bfloat16(b2) : __low2bfloat16(b2));
        out[3 * n + i] = __half_as_ushort(__float2half_rn(x[i]));
        out[4 * n + i] = __half_as_ushort(__float2half(x[i]));
        out[5 * n + i] = __half_as_ushort(i & 1 ? __high2half(h2) : __low2half(h2));
        tf32[i] = to_tf32(x[i]);
    }
}

// widened[k][i] for each 16-bit pattern bits[i]: __bfloat162float, __half2float, and the
// __low2float / __high2float of the pairs (bits[i & ~1], bits[i | 1]) of each type.
__global__ void widen(const unsigned short* bits, int n, float* widened) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        int j = i & ~1;
        unsigned short lo = bits[j], hi = j + 1 < n ? bits[j + 1] : 0;
        __nv_bfloat162 b2 = __halves2bfloat162(__ushort_as_bfloat16(lo), __ushort_as_bfloat16(hi));
        __half2 h2 = __halves2half2(__ushort_as_half(lo), __ushort_as_half(hi));
        widened[0 * n + i] = __bfloat162float(__ushort_as_bfloat16(bits[i]));
        widened[1 * n + i] = __half2float(__ushort_as_half(bits[i]));
        widened[2 * n + i] = i & 1 ? __high2float(b2) : __low2float(b2);
        widened[3 * n + i] = i & 1 ? __high2float(h2) : __low2float(h2);
    }
}
