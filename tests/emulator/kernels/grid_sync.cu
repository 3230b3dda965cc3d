// Persistent Elman forward for the emulator tests (cooperative launch, one grid barrier a step):
//   h[t] = tanh(p[t] + h[t-1] @ V), h[-1] = h0.  p, h: (T, H); V: (H, H); h0: (H,), row-major.
// Launch: any grid x block with gridDim.x*blockDim.x >= H; thread j owns column j of h.
#include <cooperative_groups.h>
namespace cg = cooperative_groups;

extern "C" __global__ void elman_persistent(const float* __restrict__ p, const float* __restrict__ V,
                                            const float* __restrict__ h0, float* __restrict__ h, int T, int H) {
    cg::grid_group grid = cg::this_grid();
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    for (int t = 0; t < T; ++t) {
        const float* prev = t == 0 ? h0 : h + (t - 1) * H;
        if (j < H) {
            float u = p[t * H + j];
            for (int k = 0; k < H; ++k) u = fmaf(prev[k], V[k * H + j], u);
            h[t * H + j] = tanhf(u);
        }
        grid.sync();  // step t is complete everywhere before any thread reads it
    }
}

// Sum of x (n elements) into *total with one grid barrier: block partials, then block 0 adds them.
// partial: gridDim.x floats of scratch. Also checks this_thread_block().sync().
extern "C" __global__ void grid_total(const double* x, double* partial, double* total, int n) {
    cg::thread_block block = cg::this_thread_block();
    __shared__ double s[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = i < n ? x[i] : 0.0;
    block.sync();
    if (threadIdx.x == 0) {
        double acc = 0.0;
        for (int k = 0; k < (int)blockDim.x; ++k) acc += s[k];
        partial[blockIdx.x] = acc;
    }
    cg::this_grid().sync();
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        double acc = 0.0;
        for (int b = 0; b < (int)gridDim.x; ++b) acc += partial[b];
        *total = acc;
    }
}
