// cuda_emu.h: runs CUDA C++ kernels on the CPU (docs/architecture.md §3).
//
// Force-included (g++ -include) in front of an unchanged .cu file. Each CUDA block runs on one OS
// thread, each CUDA thread is a fiber on that thread, so `__shared__` is `thread_local` and
// `threadIdx` is a thread-local the scheduler sets before each switch. Barriers and warp operations
// are where fibers give way; they check that every thread takes the same path and report divergence
// and deadlock with the source line instead of hanging.
#pragma once

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <link.h>
#include <math.h>
#include <memory>
#include <mutex>
#include <source_location>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>
#include <sys/mman.h>
#include <unistd.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// ---------------------------------------------------------------- CUDA keywords
#define GPU_BPTT_EMULATOR 1
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 900
#endif
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __grid_constant__
#define __shared__ thread_local
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))  // also between decl-specifiers, as nvcc takes it
#define EMU_API extern "C" __attribute__((visibility("default")))

// ---------------------------------------------------------------- vector types
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
#define EMU_VEC2(T, N) struct alignas(2 * sizeof(T)) N##2 { T x, y; }; \
    inline N##2 make_##N##2(T x, T y) { return {x, y}; }
#define EMU_VEC3(T, N) struct N##3 { T x, y, z; }; \
    inline N##3 make_##N##3(T x, T y, T z) { return {x, y, z}; }
#define EMU_VEC4(T, N) struct alignas(4 * sizeof(T) > 16 ? 16 : 4 * sizeof(T)) N##4 { T x, y, z, w; }; \
    inline N##4 make_##N##4(T x, T y, T z, T w) { return {x, y, z, w}; }
EMU_VEC2(float, float) EMU_VEC3(float, float) EMU_VEC4(float, float)
EMU_VEC2(double, double) EMU_VEC3(double, double) EMU_VEC4(double, double)
EMU_VEC2(int, int) EMU_VEC3(int, int) EMU_VEC4(int, int)
EMU_VEC2(unsigned, uint) EMU_VEC4(unsigned, uint)
EMU_VEC2(long long, longlong) EMU_VEC2(unsigned short, ushort) EMU_VEC2(short, short)
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }
#undef EMU_VEC2
#undef EMU_VEC3
#undef EMU_VEC4

constexpr int warpSize = 32;
// Set per OS thread (blockIdx, blockDim, gridDim) and per fiber switch (threadIdx).
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
constinit inline thread_local dim3 blockDim{1, 1, 1};
constinit inline thread_local dim3 gridDim{1, 1, 1};

// ---------------------------------------------------------------- math and bit intrinsics
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float exp10f(float x) { return powf(10.0f, x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float v) { int i; std::memcpy(&i, &v, 4); return i; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float v) { unsigned i; std::memcpy(&i, &v, 4); return i; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double v) { long long i; std::memcpy(&i, &v, 8); return i; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
inline int __mul24(int a, int b) { return a * b; }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }

// CUDA's min/max accept mixed arithmetic types (int with unsigned, float with int, ...).
template <class A, class B,
          class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B,
          class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    return C(a) < C(b) ? C(b) : C(a);
}

// ---------------------------------------------------------------- the executor
namespace emu {

using u64 = unsigned long long;
enum State : unsigned char { RUN, WAIT_BAR, WAIT_WARP, DONE };
enum WarpKind : unsigned char { W_SYNC, W_SHFL, W_BALLOT, W_ANY, W_ALL, W_ADD, W_MIN, W_MAX, W_UMIN, W_UMAX, W_COLL };
// Error kinds returned to Python (gpu_bptt/emulator/module.py maps them to exceptions).
enum Fault { FAULT_OK = 0, FAULT_DIVERGENT = 1, FAULT_DEADLOCK = 2, FAULT_GRID = 3, FAULT_TIMEOUT = 4, FAULT_TRAP = 5, FAULT_INTERNAL = 6, FAULT_ADDRESS = 7 };

struct Launch;

struct Fiber {
    void* sp = nullptr;
    char* stack_lo = nullptr;
    size_t stack_size = 0;
    uint3 tid{};
    int lin = 0;
    State state = RUN;
    unsigned char wkind = 0;
    unsigned wmask = 0;
    int wsrc = -1;
    u64 wval = 0;
    void* wfn = nullptr;  // W_COLL: the collective's function
    u64 result = 0;
    unsigned polls = 0;
    const char* what = "";
    const char* file = "";
    unsigned line = 0;
#if defined(__SANITIZE_ADDRESS__)
    void* fake_stack = nullptr;
#endif
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
};

struct Block {
    Launch* L = nullptr;
    Fiber* f = nullptr;
    int n = 0, live = 0, cur = -1;
    uint3 bid{};
    void* sched_sp = nullptr;
#if !defined(__x86_64__)
    ucontext_t sched_uc;
#endif
#if defined(__SANITIZE_ADDRESS__)
    const void* sched_bottom = nullptr;
    size_t sched_size = 0;
#endif
    int bar_count = 0, bar_pred = 0;
    bool bar_grid = false;
    const char* bar_what = "";
    const char* bar_file = "";
    unsigned bar_line = 0;
    bool restart = false, aborted = false;
    bool polled = false;  // the last fiber gave way in poll(), not at a barrier or warp operation
    int fault = FAULT_OK;
    std::string error;
    std::vector<unsigned> warp_arrived, warp_live;
};

inline thread_local Block* tl_block = nullptr;

// A kernel as the generated entry table describes it: how to call it and its parameter types.
struct Param {
    char kind;        // 'p' pointer, 'v' value
    char base;        // 'f' float, 'i' signed, 'u' unsigned, 'b' bool, 'v' void, 's' struct
    short is_const;   // pointee is const
    int size;         // sizeof the value or the pointee (0 for void)
    const char* cname;
};
struct Entry {
    const char* name;
    void (*invoke)(void**);
    int nparams;
    const Param* params;
};

template <class T> constexpr const char* c_name() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_same_v<U, float>) return "float";
    else if constexpr (std::is_same_v<U, double>) return "double";
    else if constexpr (std::is_same_v<U, int>) return "int";
    else if constexpr (std::is_same_v<U, unsigned>) return "unsigned int";
    else if constexpr (std::is_same_v<U, long>) return "long";
    else if constexpr (std::is_same_v<U, unsigned long>) return "unsigned long";
    else if constexpr (std::is_same_v<U, long long>) return "long long";
    else if constexpr (std::is_same_v<U, unsigned long long>) return "unsigned long long";
    else if constexpr (std::is_same_v<U, short>) return "short";
    else if constexpr (std::is_same_v<U, unsigned short>) return "unsigned short";
    else if constexpr (std::is_same_v<U, char>) return "char";
    else if constexpr (std::is_same_v<U, signed char>) return "signed char";
    else if constexpr (std::is_same_v<U, unsigned char>) return "unsigned char";
    else if constexpr (std::is_same_v<U, bool>) return "bool";
    else if constexpr (std::is_same_v<U, void>) return "void";
    else if constexpr (std::is_same_v<U, float2>) return "float2";
    else if constexpr (std::is_same_v<U, float4>) return "float4";
    else if constexpr (std::is_same_v<U, double2>) return "double2";
    else if constexpr (requires { U::emu_type_name; }) return U::emu_type_name;  // __half, ...
    else return "struct";
}
template <class T> constexpr char base_code() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_void_v<U>) return 'v';
    else if constexpr (std::is_same_v<U, bool>) return 'b';
    else if constexpr (std::is_floating_point_v<U>) return 'f';
    else if constexpr (std::is_integral_v<U> && std::is_signed_v<U>) return 'i';
    else if constexpr (std::is_integral_v<U>) return 'u';
    else return 's';
}
template <class T> constexpr int size_of() {
    if constexpr (std::is_void_v<T>) return 0; else return (int)sizeof(T);
}
template <class A> constexpr Param param_info() {
    using T = std::remove_cv_t<A>;
    if constexpr (std::is_pointer_v<T>) {
        using P = std::remove_pointer_t<T>;
        return Param{'p', base_code<P>(), (short)std::is_const_v<P>, size_of<P>(), c_name<P>()};
    } else {
        return Param{'v', base_code<T>(), 0, size_of<T>(), c_name<T>()};
    }
}
template <class... A> struct Signature {
    static constexpr Param params[sizeof...(A) + 1] = {param_info<A>()..., Param{0, 0, 0, 0, ""}};
};
template <auto F, class... A, size_t... I>
inline void call_with(void** args, std::index_sequence<I...>) {
    F(*static_cast<std::remove_cv_t<A>*>(args[I])...);  // each thread gets its own copies
}
template <auto F, class... A> constexpr Entry entry_of(void (*)(A...), const char* name) {
    return Entry{name, [](void** a) { call_with<F, A...>(a, std::index_sequence_for<A...>{}); },
                 (int)sizeof...(A), Signature<A...>::params};
}
template <auto F> constexpr Entry make_entry(const char* name) { return entry_of<F>(F, name); }

// ---------------------------------------------------------------- fibers
#if defined(__x86_64__)
extern "C" void emu_ctx_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .globl emu_ctx_switch
    .hidden emu_ctx_switch
    .type emu_ctx_switch,@function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
    .p2align 4
    .globl emu_ctx_start
    .hidden emu_ctx_start
    .type emu_ctx_start,@function
emu_ctx_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size emu_ctx_start, .-emu_ctx_start
)");
extern "C" void emu_ctx_start();
#endif

struct Launch {
    const Entry* entry = nullptr;
    void** args = nullptr;
    dim3 grid, block;
    size_t dyn = 0;
    bool coop = false;
    int order = 0;  // 0 forward, 1 reverse, 2 random
    u64 seed = 0;
    unsigned nblocks = 0, nthreads = 0;
    std::vector<unsigned> block_order;
    std::atomic<unsigned> next{0};
    std::atomic<bool> abort{false};
    std::mutex m;
    std::condition_variable cv;
    int workers_left = 0;
    int fault = FAULT_OK;
    std::string error;
    // grid barrier
    std::mutex gm;
    std::condition_variable gcv;
    unsigned g_arrived = 0, g_gen = 0, g_finished = 0;
    const char* g_file = "";
    unsigned g_line = 0;

    void fail(int kind, const std::string& msg) {
        {
            std::lock_guard<std::mutex> lk(m);
            if (fault == FAULT_OK) { fault = kind; error = msg; }
        }
        abort.store(true);
        std::lock_guard<std::mutex> lk(gm);
        gcv.notify_all();
    }
};

inline std::string fmt_tid(uint3 t) {
    char b[64];
    std::snprintf(b, sizeof b, "(%u,%u,%u)", t.x, t.y, t.z);
    return b;
}
inline std::string where(const char* file, unsigned line) { return std::string(file) + ":" + std::to_string(line); }
inline std::string block_name(const Block& B) { return "block " + fmt_tid(B.bid); }

inline void switch_into(Block& B, Fiber& f) {
    B.cur = f.lin;
    threadIdx = f.tid;
#if defined(__SANITIZE_ADDRESS__)
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f.stack_lo, f.stack_size);
#endif
#if defined(__x86_64__)
    emu_ctx_switch(&B.sched_sp, f.sp);
#else
    swapcontext(&B.sched_uc, &f.uc);
#endif
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    B.cur = -1;
}

// Give the OS thread back to the block's scheduler; returns when the scheduler resumes this fiber.
inline void yield(Block& B, Fiber& f, bool dying = false) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(dying ? nullptr : &f.fake_stack, B.sched_bottom, B.sched_size);
#else
    (void)dying;
#endif
#if defined(__x86_64__)
    emu_ctx_switch(&f.sp, B.sched_sp);
#else
    swapcontext(&f.uc, &B.sched_uc);
#endif
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(f.fake_stack, &B.sched_bottom, &B.sched_size);
#endif
}

// Stop the block: record the error and never resume this fiber (its stack is simply dropped).
[[noreturn]] inline void fiber_fault(Block& B, int kind, const std::string& msg) {
    if (B.fault == FAULT_OK && kind != FAULT_OK) { B.fault = kind; B.error = msg; }
    B.aborted = true;
    Fiber& f = B.f[B.cur];
    yield(B, f, true);
    __builtin_trap();
}

inline Fiber& current(Block*& B) {
    B = tl_block;
    if (!B || B->cur < 0) {
        std::fprintf(stderr, "gpu_bptt emulator: a CUDA intrinsic was called outside a kernel launch\n");
        std::abort();
    }
    return B->f[B->cur];
}

// Atomics and fences let other fibers run now and then, so spin-waits on a flag set by another
// thread of the same block make progress, and notice an aborted launch.
inline void poll() {
    Block* B;
    Fiber& f = current(B);
    if (B->L->abort.load(std::memory_order_relaxed)) fiber_fault(*B, FAULT_OK, "");
    if ((++f.polls & 255u) == 0) {
        B->polled = true;
        yield(*B, f);
    }
}

// ---------------------------------------------------------------- block and grid barriers
inline void grid_wait(Block& B, const std::source_location& loc) {
    Launch& L = *B.L;
    std::string err;
    {
        std::unique_lock<std::mutex> lk(L.gm);
        if (L.g_finished > 0) {
            err = "deadlock: this_grid().sync() at " + where(loc.file_name(), loc.line()) + " in " +
                  block_name(B) + " waits for blocks that have already finished";
        } else {
            if (L.g_arrived == 0) { L.g_file = loc.file_name(); L.g_line = loc.line(); }
            unsigned gen = L.g_gen;
            if (++L.g_arrived == L.nblocks) {
                L.g_arrived = 0;
                ++L.g_gen;
                L.gcv.notify_all();
            } else {
                while (gen == L.g_gen && !L.abort.load()) L.gcv.wait(lk);
                if (gen == L.g_gen) err = "";  // aborted by another block
            }
            if (err.empty() && gen == L.g_gen) {
                lk.unlock();
                fiber_fault(B, FAULT_OK, "");
            }
        }
    }
    if (!err.empty()) fiber_fault(B, FAULT_DEADLOCK, err);
}

// mode: 0 plain, 1 count, 2 and, 3 or (the __syncthreads_* variants)
inline int block_barrier(bool grid, const char* what, int pred, int mode, const std::source_location& loc) {
    Block* Bp;
    Fiber& f = current(Bp);
    Block& B = *Bp;
    const char* file = loc.file_name();
    unsigned line = loc.line();
    if (grid && !B.L->coop)
        fiber_fault(B, FAULT_GRID, std::string(what) + " at " + where(file, line) +
                    " needs a cooperative launch (RawModule(..., enable_cooperative_groups=True))");
    if (B.bar_count == 0) {
        B.bar_file = file; B.bar_line = line; B.bar_grid = grid; B.bar_what = what; B.bar_pred = 0;
    } else if (B.bar_line != line || B.bar_grid != grid || std::strcmp(B.bar_file, file) != 0) {
        Fiber* other = nullptr;
        for (int i = 0; i < B.n; ++i) if (B.f[i].state == WAIT_BAR) { other = &B.f[i]; break; }
        fiber_fault(B, FAULT_DIVERGENT,
                    "divergent barrier in " + block_name(B) + ": thread " + fmt_tid(f.tid) + " reached " +
                    what + " at " + where(file, line) + " while thread " + fmt_tid(other ? other->tid : uint3{}) +
                    " waits at " + B.bar_what + " at " + where(B.bar_file, B.bar_line));
    }
    if (B.live < B.n) {
        Fiber* gone = nullptr;
        for (int i = 0; i < B.n; ++i) if (B.f[i].state == DONE) { gone = &B.f[i]; break; }
        fiber_fault(B, FAULT_DIVERGENT,
                    "divergent barrier in " + block_name(B) + ": " + what + " at " + where(file, line) +
                    " is reached by thread " + fmt_tid(f.tid) + " but thread " + fmt_tid(gone->tid) +
                    " has already finished without reaching it (every thread of the block must reach each barrier)");
    }
    f.state = WAIT_BAR; f.what = what; f.file = file; f.line = line;
    ++B.bar_count;
    B.bar_pred += pred != 0;
    if (B.bar_count == B.live) {
        if (grid) grid_wait(B, loc);
        u64 r = mode == 1 ? (u64)B.bar_pred : mode == 2 ? (u64)(B.bar_pred == B.bar_count)
                                             : (u64)(B.bar_pred != 0);
        for (int i = 0; i < B.n; ++i)
            if (B.f[i].state == WAIT_BAR) { B.f[i].state = RUN; B.f[i].result = r; }
        B.bar_count = 0;
        B.restart = true;  // the next phase starts again in the chosen thread order
    }
    yield(B, f);
    return (int)f.result;
}

// ---------------------------------------------------------------- warp operations
inline void warp_fault_mismatch(Block& B, Fiber& a, Fiber& b) {
    fiber_fault(B, FAULT_DIVERGENT,
                "divergent warp operation in " + block_name(B) + ": thread " + fmt_tid(a.tid) + " is in " +
                a.what + " at " + where(a.file, a.line) + " while thread " + fmt_tid(b.tid) +
                " (same mask) is in " + b.what + " at " + where(b.file, b.line));
}

// A warp-collective instruction (mma.sync, ldmatrix): each lane hands a pointer to its operands and
// the last lane to arrive runs the function over all 32 of them; it returns "" or what went wrong.
using Collective = std::string (*)(void* const* lanes);

inline void complete_collective(Block& B, int w, unsigned need, Fiber& first) {
    Fiber* lanes = B.f + w * 32;
    std::string at = std::string(first.what) + " at " + where(first.file, first.line) + " in " + block_name(B) +
                     ", warp " + std::to_string(w);
    // .sync.aligned: every lane of the warp executes the same instruction (none may have exited).
    if (need != 0xffffffffu) {
        char b[160];
        std::snprintf(b, sizeof b, ": executed by lanes 0x%08x only; all 32 lanes of the warp must execute "
                      "it (.sync.aligned)", need);
        fiber_fault(B, FAULT_DIVERGENT, "divergent warp operation: " + at + b);
    }
    void* data[32];
    for (int l = 0; l < 32; ++l) {
        if (lanes[l].wfn != first.wfn) warp_fault_mismatch(B, lanes[l], first);
        data[l] = (void*)lanes[l].wval;
    }
    std::string err = ((Collective)first.wfn)(data);
    if (!err.empty()) fiber_fault(B, FAULT_ADDRESS, at + ": " + err);
    for (int l = 0; l < 32; ++l) lanes[l].state = RUN;
    B.warp_arrived[w] = 0;
}

// Complete the group of lanes of warp w that called a warp operation with `mask`, if every
// non-exited lane in the mask has arrived. Results are computed for all lanes before any resumes.
inline void try_complete(Block& B, int w, unsigned mask) {
    unsigned need = mask & B.warp_live[w];
    if (need == 0) return;
    Fiber* lanes = B.f + w * 32;
    for (unsigned m = need; m; m &= m - 1) {
        Fiber& g = lanes[__builtin_ctz(m)];
        if (g.state != WAIT_WARP || g.wmask != mask) return;
    }
    Fiber& first = lanes[__builtin_ctz(need)];
    for (unsigned m = need; m; m &= m - 1) {
        Fiber& g = lanes[__builtin_ctz(m)];
        if (g.wkind != first.wkind || g.line != first.line) warp_fault_mismatch(B, g, first);
    }
    if (first.wkind == W_COLL) {
        complete_collective(B, w, need, first);
        return;
    }
    u64 acc = 0;
    switch (first.wkind) {
        case W_BALLOT: case W_ANY: case W_ALL:
            for (unsigned m = need; m; m &= m - 1) {
                int l = __builtin_ctz(m);
                if (lanes[l].wval) acc |= 1ull << l;
            }
            if (first.wkind == W_ANY) acc = acc != 0;
            if (first.wkind == W_ALL) acc = acc == need;
            break;
        case W_ADD: case W_MIN: case W_MAX: case W_UMIN: case W_UMAX: {
            bool init = false;
            for (unsigned m = need; m; m &= m - 1) {
                u64 v = lanes[__builtin_ctz(m)].wval;
                int sv = (int)(unsigned)v, sa = (int)(unsigned)acc;
                unsigned uv = (unsigned)v, ua = (unsigned)acc;
                if (!init) { acc = (unsigned)v; init = true; continue; }
                if (first.wkind == W_ADD) acc = (unsigned)(ua + uv);
                else if (first.wkind == W_MIN) acc = (unsigned)(sv < sa ? sv : sa);
                else if (first.wkind == W_MAX) acc = (unsigned)(sv > sa ? sv : sa);
                else if (first.wkind == W_UMIN) acc = uv < ua ? uv : ua;
                else acc = uv > ua ? uv : ua;
            }
            break;
        }
        default: break;
    }
    for (unsigned m = need; m; m &= m - 1) {
        Fiber& g = lanes[__builtin_ctz(m)];
        if (g.wkind == W_SHFL) {
            int s = g.wsrc;
            g.result = (s >= 0 && (need >> s & 1u)) ? lanes[s].wval : g.wval;
        } else {
            g.result = acc;
        }
        g.state = RUN;
    }
    B.warp_arrived[w] &= ~need;
}

inline u64 warp_op(unsigned char kind, const char* what, unsigned mask, u64 val, int src,
                   const std::source_location& loc, Collective fn = nullptr) {
    Block* Bp;
    Fiber& f = current(Bp);
    Block& B = *Bp;
    int w = f.lin >> 5, lane = f.lin & 31;
    if (!(mask >> lane & 1u))
        fiber_fault(B, FAULT_DIVERGENT, std::string(what) + " at " + where(loc.file_name(), loc.line()) +
                    ": thread " + fmt_tid(f.tid) + " (lane " + std::to_string(lane) +
                    ") calls it with a mask that does not include itself");
    f.state = WAIT_WARP; f.wkind = kind; f.wmask = mask; f.wval = val; f.wsrc = src; f.wfn = (void*)fn;
    f.what = what; f.file = loc.file_name(); f.line = loc.line();
    B.warp_arrived[w] |= 1u << lane;
    try_complete(B, w, mask);
    yield(B, f);
    return f.result;
}

template <class T> inline u64 to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
    u64 b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> inline T from_bits(u64 b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}
inline int lane_of() { Block* B; return current(B).lin & 31; }

// Run `fn` once all 32 lanes of the calling warp have called this with their `operands`.
inline void warp_collective(Collective fn, const char* what, void* operands, const std::source_location& loc) {
    warp_op(W_COLL, what, 0xffffffffu, (u64)operands, -1, loc, fn);
}

// Dynamic (`extern __shared__`) memory: the build defines every such symbol as one thread-local
// array and this function returning its address (see gpu_bptt/emulator/build.py).
extern "C" void* emu_dyn_smem_base(void);
extern "C" size_t emu_dyn_smem_capacity(void);

// Is [p, p + n) shared memory of the running block? Static `__shared__` variables are thread-locals
// of the kernel's library, so they lie in its TLS block; dynamic shared memory is the part of that
// block's dynamic store the launch asked for.
struct TlsBlock { const char* lo = nullptr; size_t size = 0; };
inline TlsBlock find_tls_block() {
    struct Query { const void* code; TlsBlock out; } q{(const void*)&emu_dyn_smem_base, {}};
    dl_iterate_phdr([](dl_phdr_info* info, size_t, void* data) -> int {
        auto* q = (Query*)data;
        bool mine = false;
        const ElfW(Phdr)* tls = nullptr;
        for (int k = 0; k < info->dlpi_phnum; ++k) {
            const ElfW(Phdr)& ph = info->dlpi_phdr[k];
            uintptr_t lo = info->dlpi_addr + ph.p_vaddr, c = (uintptr_t)q->code;
            if (ph.p_type == PT_LOAD && lo <= c && c < lo + ph.p_memsz) mine = true;
            if (ph.p_type == PT_TLS) tls = &ph;
        }
        if (!mine || !tls) return 0;
        q->out = TlsBlock{(const char*)info->dlpi_tls_data, (size_t)tls->p_memsz};
        return 1;
    }, &q);
    return q.out;
}
inline bool in_shared(const void* p, size_t n) {
    static thread_local TlsBlock tls;
    if (!tls.lo) tls = find_tls_block();
    const char* c = (const char*)p;
    const char* dyn = (const char*)emu_dyn_smem_base();
    Block* B = tl_block;
    if (c >= dyn && c < dyn + emu_dyn_smem_capacity()) return B && c + n <= dyn + B->L->dyn;
    return tls.lo && c >= tls.lo && c + n <= tls.lo + tls.size;
}

}  // namespace emu

using emu_loc = std::source_location;
#define EMU_HERE std::source_location loc = std::source_location::current()

inline void __syncthreads(EMU_HERE) { emu::block_barrier(false, "__syncthreads()", 1, 0, loc); }
inline int __syncthreads_count(int p, EMU_HERE) { return emu::block_barrier(false, "__syncthreads_count()", p, 1, loc); }
inline int __syncthreads_and(int p, EMU_HERE) { return emu::block_barrier(false, "__syncthreads_and()", p, 2, loc); }
inline int __syncthreads_or(int p, EMU_HERE) { return emu::block_barrier(false, "__syncthreads_or()", p, 3, loc); }
inline void __syncwarp(unsigned mask = 0xffffffffu, EMU_HERE) { emu::warp_op(emu::W_SYNC, "__syncwarp()", mask, 0, -1, loc); }
inline unsigned __ballot_sync(unsigned mask, int p, EMU_HERE) {
    return (unsigned)emu::warp_op(emu::W_BALLOT, "__ballot_sync()", mask, p != 0, -1, loc);
}
inline int __any_sync(unsigned mask, int p, EMU_HERE) { return (int)emu::warp_op(emu::W_ANY, "__any_sync()", mask, p != 0, -1, loc); }
inline int __all_sync(unsigned mask, int p, EMU_HERE) { return (int)emu::warp_op(emu::W_ALL, "__all_sync()", mask, p != 0, -1, loc); }
inline unsigned __activemask() {
    emu::Block* B;
    emu::Fiber& f = emu::current(B);
    return B->warp_live[f.lin >> 5];
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v, EMU_HERE) { return (unsigned)emu::warp_op(emu::W_ADD, "__reduce_add_sync()", mask, v, -1, loc); }
inline int __reduce_add_sync(unsigned mask, int v, EMU_HERE) { return (int)emu::warp_op(emu::W_ADD, "__reduce_add_sync()", mask, (unsigned)v, -1, loc); }
inline int __reduce_min_sync(unsigned mask, int v, EMU_HERE) { return (int)emu::warp_op(emu::W_MIN, "__reduce_min_sync()", mask, (unsigned)v, -1, loc); }
inline int __reduce_max_sync(unsigned mask, int v, EMU_HERE) { return (int)emu::warp_op(emu::W_MAX, "__reduce_max_sync()", mask, (unsigned)v, -1, loc); }
inline unsigned __reduce_min_sync(unsigned mask, unsigned v, EMU_HERE) { return (unsigned)emu::warp_op(emu::W_UMIN, "__reduce_min_sync()", mask, v, -1, loc); }
inline unsigned __reduce_max_sync(unsigned mask, unsigned v, EMU_HERE) { return (unsigned)emu::warp_op(emu::W_UMAX, "__reduce_max_sync()", mask, v, -1, loc); }

// Shuffles: each lane names its source lane; a lane outside its width segment (or one that is not
// part of the exchange) gets its own value back, as CUDA documents for the up/down/xor forms.
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = warpSize, EMU_HERE) {
    int lane = emu::lane_of(), base = lane & ~(width - 1);
    int s = base + (src & (width - 1));
    return emu::from_bits<T>(emu::warp_op(emu::W_SHFL, "__shfl_sync()", mask, emu::to_bits(v), s, loc));
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = warpSize, EMU_HERE) {
    int lane = emu::lane_of();
    int s = (lane & (width - 1)) >= (int)d ? lane - (int)d : -1;
    return emu::from_bits<T>(emu::warp_op(emu::W_SHFL, "__shfl_up_sync()", mask, emu::to_bits(v), s, loc));
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = warpSize, EMU_HERE) {
    int lane = emu::lane_of();
    int s = (lane & (width - 1)) + (int)d < width ? lane + (int)d : -1;
    return emu::from_bits<T>(emu::warp_op(emu::W_SHFL, "__shfl_down_sync()", mask, emu::to_bits(v), s, loc));
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = warpSize, EMU_HERE) {
    int lane = emu::lane_of(), base = lane & ~(width - 1);
    int s = lane ^ m;
    if (s >= base + width || s > 31) s = -1;
    return emu::from_bits<T>(emu::warp_op(emu::W_SHFL, "__shfl_xor_sync()", mask, emu::to_bits(v), s, loc));
}
#undef EMU_HERE

// ---------------------------------------------------------------- atomics and fences
#define EMU_ATOMIC(R, NAME, T, BODY) inline R NAME(T* p, T v) { emu::poll(); std::atomic_ref<T> a(*p); BODY; }
#define EMU_ATOMIC_ALL_INT(NAME, BODY) EMU_ATOMIC(int, NAME, int, BODY) \
    EMU_ATOMIC(unsigned, NAME, unsigned, BODY) EMU_ATOMIC(unsigned long long, NAME, unsigned long long, BODY)
EMU_ATOMIC_ALL_INT(atomicAdd, return a.fetch_add(v))
EMU_ATOMIC(float, atomicAdd, float, return a.fetch_add(v))
EMU_ATOMIC(double, atomicAdd, double, return a.fetch_add(v))
EMU_ATOMIC(int, atomicSub, int, return a.fetch_sub(v))
EMU_ATOMIC(unsigned, atomicSub, unsigned, return a.fetch_sub(v))
EMU_ATOMIC_ALL_INT(atomicExch, return a.exchange(v))
EMU_ATOMIC(float, atomicExch, float, return a.exchange(v))
EMU_ATOMIC_ALL_INT(atomicAnd, return a.fetch_and(v))
EMU_ATOMIC_ALL_INT(atomicOr, return a.fetch_or(v))
EMU_ATOMIC_ALL_INT(atomicXor, return a.fetch_xor(v))
#define EMU_MINMAX(T) \
    EMU_ATOMIC(T, atomicMax, T, T o = a.load(); while (o < v && !a.compare_exchange_weak(o, v)) {} return o) \
    EMU_ATOMIC(T, atomicMin, T, T o = a.load(); while (v < o && !a.compare_exchange_weak(o, v)) {} return o)
EMU_MINMAX(int) EMU_MINMAX(unsigned) EMU_MINMAX(long long) EMU_MINMAX(unsigned long long)
#undef EMU_MINMAX
#undef EMU_ATOMIC_ALL_INT
#undef EMU_ATOMIC
template <class T> inline T atomicCAS(T* p, T cmp, T v) {
    emu::poll();
    std::atomic_ref<T>(*p).compare_exchange_strong(cmp, v);
    return cmp;
}
inline void __threadfence() { emu::poll(); std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { __threadfence(); }
inline void __nanosleep(unsigned) { emu::poll(); }
inline long long clock64() { return (long long)std::chrono::steady_clock::now().time_since_epoch().count(); }


[[noreturn]] inline void __trap() {
    emu::Block* B;
    emu::Fiber& f = emu::current(B);
    emu::fiber_fault(*B, emu::FAULT_TRAP, "__trap() called by thread " + emu::fmt_tid(f.tid) + " of " + emu::block_name(*B));
}
inline void __brkpt() { __trap(); }

// assert() in a kernel fails the launch instead of aborting the process.
extern "C" [[noreturn]] inline __attribute__((visibility("hidden"))) void
__assert_fail(const char* expr, const char* file, unsigned line, const char*) noexcept {
    emu::Block* B = emu::tl_block;
    if (!B || B->cur < 0) { std::fprintf(stderr, "%s:%u: assertion `%s' failed\n", file, line, expr); std::abort(); }
    emu::Fiber& f = B->f[B->cur];
    emu::fiber_fault(*B, emu::FAULT_TRAP, std::string("assertion `") + expr + "' failed at " + emu::where(file, line) +
                     " in thread " + emu::fmt_tid(f.tid) + " of " + emu::block_name(*B));
}

#include "cuda_emu_runtime.h"
