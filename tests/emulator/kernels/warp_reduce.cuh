// Warp-level helpers shared by warp_reduce.cu (tests the "x.cuh" include next to the .cu).
#pragma once

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}
