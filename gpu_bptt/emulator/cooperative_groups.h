// cooperative_groups.h for the emulator: the part of CUDA's cooperative groups our kernels use.
// grid.sync() is a grid-wide barrier and needs a cooperative launch; tiles of a block map onto
// the warp intrinsics with the mask of the tile.
#pragma once
#include <source_location>

namespace cooperative_groups {

struct thread_block {
    void sync(std::source_location loc = std::source_location::current()) const {
        emu::block_barrier(false, "this_thread_block().sync()", 1, 0, loc);
    }
    unsigned long long thread_rank() const {
        return threadIdx.x + (unsigned long long)blockDim.x * (threadIdx.y + (unsigned long long)blockDim.y * threadIdx.z);
    }
    unsigned long long size() const { return (unsigned long long)blockDim.x * blockDim.y * blockDim.z; }
    unsigned long long num_threads() const { return size(); }
    dim3 group_index() const { return dim3(blockIdx); }
    dim3 thread_index() const { return dim3(threadIdx); }
    dim3 group_dim() const { return blockDim; }
    dim3 dim_threads() const { return blockDim; }
};

struct grid_group {
    void sync(std::source_location loc = std::source_location::current()) const {
        emu::block_barrier(true, "this_grid().sync()", 1, 0, loc);
    }
    bool is_valid() const {
        emu::Block* B;
        emu::current(B);
        return B->L->coop;
    }
    unsigned long long num_blocks() const { return (unsigned long long)gridDim.x * gridDim.y * gridDim.z; }
    unsigned long long block_rank() const {
        return blockIdx.x + (unsigned long long)gridDim.x * (blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z);
    }
    unsigned long long size() const { return num_blocks() * thread_block().size(); }
    unsigned long long num_threads() const { return size(); }
    unsigned long long thread_rank() const { return block_rank() * thread_block().size() + thread_block().thread_rank(); }
    dim3 group_dim() const { return gridDim; }
    dim3 dim_blocks() const { return gridDim; }
    dim3 block_index() const { return dim3(blockIdx); }
};

inline thread_block this_thread_block() { return {}; }
inline grid_group this_grid() { return {}; }

template <unsigned N> struct thread_block_tile {
    static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "tile size must be a power of two <= 32");
    unsigned mask() const {
        unsigned lane = emu::lane_of();
        unsigned bits = N == 32 ? 0xffffffffu : ((1u << N) - 1u);
        return bits << (lane & ~(N - 1));
    }
    void sync(std::source_location loc = std::source_location::current()) const {
        emu::warp_op(emu::W_SYNC, "thread_block_tile::sync()", mask(), 0, -1, loc);
    }
    unsigned long long thread_rank() const { return (unsigned)emu::lane_of() & (N - 1); }
    unsigned long long size() const { return N; }
    unsigned long long num_threads() const { return N; }
    unsigned long long meta_group_rank() const { return thread_block().thread_rank() / N; }
    unsigned long long meta_group_size() const { return (thread_block().size() + N - 1) / N; }
    template <class T> T shfl(T v, int src, std::source_location loc = std::source_location::current()) const {
        return __shfl_sync(mask(), v, src, (int)N, loc);
    }
    template <class T> T shfl_down(T v, unsigned d, std::source_location loc = std::source_location::current()) const {
        return __shfl_down_sync(mask(), v, d, (int)N, loc);
    }
    template <class T> T shfl_up(T v, unsigned d, std::source_location loc = std::source_location::current()) const {
        return __shfl_up_sync(mask(), v, d, (int)N, loc);
    }
    template <class T> T shfl_xor(T v, int m, std::source_location loc = std::source_location::current()) const {
        return __shfl_xor_sync(mask(), v, m, (int)N, loc);
    }
    unsigned ballot(int p, std::source_location loc = std::source_location::current()) const {
        return __ballot_sync(mask(), p, loc) >> (emu::lane_of() & ~(N - 1));
    }
    bool any(int p, std::source_location loc = std::source_location::current()) const { return __any_sync(mask(), p, loc); }
    bool all(int p, std::source_location loc = std::source_location::current()) const { return __all_sync(mask(), p, loc); }
};

template <unsigned N> inline thread_block_tile<N> tiled_partition(const thread_block&) { return {}; }

template <class G> inline void sync(const G& g, std::source_location loc = std::source_location::current()) { g.sync(loc); }

}  // namespace cooperative_groups
