// kernels/column_sum.cu — deterministic column sums: out[c, n] = Σ_{r in chunk c} in[r, n]
//   (db = Σ_t Σ_b du[t, b] over the R = T·B rows of du, without float atomics)
// Shapes, row-major: in (R, N); out (ceil(R / rows_per_chunk), N).
// Launch: grid (ceil(N/32), ceil(R/rows_per_chunk)), block (32, 8). Thread (x, y) sums rows
//   chunk_start + y, + 8, ... of column blockIdx.x * 32 + x; the 8 partial sums are combined by a
//   fixed shared-memory tree. Two passes (rows -> chunk partials -> one row) give a sum whose order
//   depends only on R and N, so the same inputs give bit-identical results.
// Versions: v1 (this one). Types: float, double. Names: column_sum_v1<float>, column_sum_v1<double>.

#define COLSUM_COLS 32  // columns per block (blockDim.x)
#define COLSUM_ROWS 8   // threads per column (blockDim.y), a power of two (the tree below)

template <typename T>
__global__ void __launch_bounds__(COLSUM_COLS * COLSUM_ROWS)
column_sum_v1(const T* in, T* out, int R, int N, int rows_per_chunk) {
    __shared__ T part[COLSUM_ROWS][COLSUM_COLS + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int n = blockIdx.x * COLSUM_COLS + tx;
    const int r0 = blockIdx.y * rows_per_chunk;
    const int r1 = min(R, r0 + rows_per_chunk);
    T s = T(0);
    if (n < N)
        for (int r = r0 + ty; r < r1; r += COLSUM_ROWS) s += in[(size_t)r * N + n];
    part[ty][tx] = s;
    __syncthreads();
#pragma unroll
    for (int w = COLSUM_ROWS / 2; w > 0; w >>= 1) {
        if (ty < w) part[ty][tx] += part[ty + w][tx];
        __syncthreads();
    }
    if (ty == 0 && n < N) out[(size_t)blockIdx.y * N + n] = part[0][tx];
}
