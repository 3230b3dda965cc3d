// Planted bugs for the emulator tests: each kernel does something a GPU would hang on, fail on or
// silently get wrong. They are valid CUDA (the tests compile them with NVRTC too).
#include <cooperative_groups.h>

// Half the block skips the barrier.
extern "C" __global__ void divergent_sync(float* x) {
    if (threadIdx.x < 16) {
        x[threadIdx.x] += 1.0f;
        __syncthreads();
    }
}

// Lanes 0-15 wait in a full-warp shuffle for lanes 16-31, which wait at the block barrier.
extern "C" __global__ void deadlock(float* x) {
    float v = x[threadIdx.x];
    if ((threadIdx.x & 31) < 16) v = __shfl_sync(0xffffffffu, v, 0);
    __syncthreads();
    x[threadIdx.x] = v;
}

// Thread 31 reads one element past the static shared array.
extern "C" __global__ void static_smem_oob(const float* x, float* y) {
    __shared__ float s[32];
    s[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    y[threadIdx.x] = s[threadIdx.x + 1];
}

// Reads one element past the dynamic shared memory the launch asked for (blockDim.x floats).
extern "C" __global__ void dynamic_smem_oob(const float* x, float* y) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    y[threadIdx.x] = dyn[threadIdx.x + 1];
}

// A grid barrier; fine in a cooperative launch, an error in a plain one.
extern "C" __global__ void needs_grid_sync(int* x) {
    atomicAdd(x, 1);
    cooperative_groups::this_grid().sync();
}

// Types for the argument checks: x[i] = a * x[i] + b for i < n.
extern "C" __global__ void axpb(float* x, int n, float a, double b) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = a * x[i] + (float)b;
}

// Thread 0 waits on a flag that the last thread sets: works with GPU independent thread scheduling,
// and in the emulator because atomics let other threads run. With wait_forever it never ends.
extern "C" __global__ void spin_flag(int* flag, int* out, int wait_forever) {
    if (threadIdx.x == 0) {
        while (atomicAdd(flag, 0) == 0) {
        }
        out[0] = 1;
    }
    if (threadIdx.x == blockDim.x - 1 && !wait_forever) atomicExch(flag, 1);
}

// __trap() in one thread fails the launch.
extern "C" __global__ void traps(int* x) {
    if (threadIdx.x == 3) __trap();
    x[threadIdx.x] = 1;
}

// Each warp sums its lanes with shuffles and writes part[warp]; thread 0 adds the parts. The two
// passes reuse `part`, and the barrier that should keep pass 2's writes after pass 1's reads is
// missing: a warp that runs far ahead of warp 0 overwrites its part before thread 0 reads it.
extern "C" __global__ void cross_warp_missing_sync(const float* x, float* out) {
    __shared__ float part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int pass = 0; pass < 2; ++pass) {
        float v = x[pass * blockDim.x + threadIdx.x];
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == 0) part[warp] = v;
        __syncthreads();
        if (threadIdx.x == 0) {
            float s = 0.0f;
            for (int w = 0; w < (int)(blockDim.x / 32); ++w) s += part[w];
            out[pass] = s;
        }
    }
}
