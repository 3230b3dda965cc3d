// Warp-shuffle kernels for the emulator tests.
//   block_sum<T>: out[blockIdx.x] = sum of x[blockIdx.x*blockDim.x ...] (n elements in all);
//     blockDim.x a multiple of 32, at most 1024; dynamic shared memory: (blockDim.x/32) * sizeof(T).
//   warp_scan: inclusive prefix sum within each warp (__shfl_up_sync), one warp per 32 elements.
//   count_positive: atomicAdd of __popc(__ballot_sync(...)) per warp.
//   max_xor: the warp's maximum, every lane (__shfl_xor_sync butterfly).
#include "warp_reduce.cuh"

template <typename T>
__global__ void block_sum(const T* __restrict__ x, T* __restrict__ out, int n) {
    extern __shared__ unsigned char smem_raw[];
    T* partial = reinterpret_cast<T*>(smem_raw);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    T v = i < n ? x[i] : T(0);
    v = warp_sum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const int nwarps = blockDim.x >> 5;
        T p = lane < nwarps ? partial[lane] : T(0);
        for (int m = 16; m > 0; m >>= 1) p += __shfl_xor_sync(0xffffffffu, p, m);
        if (lane == 0) out[blockIdx.x] = p;
    }
}

extern "C" __global__ void warp_scan(const int* x, int* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31;
    int v = i < n ? x[i] : 0;
    for (int d = 1; d < 32; d <<= 1) {
        int u = __shfl_up_sync(0xffffffffu, v, d);
        if (lane >= d) v += u;
    }
    if (i < n) y[i] = v;
}

extern "C" __global__ void count_positive(const float* x, int* count, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned bits = __ballot_sync(0xffffffffu, i < n && x[i] > 0.0f);
    if ((threadIdx.x & 31) == 0) atomicAdd(count, __popc(bits));
}

extern "C" __global__ void max_xor(const float* x, float* y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = x[i];
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    y[i] = v;
}
