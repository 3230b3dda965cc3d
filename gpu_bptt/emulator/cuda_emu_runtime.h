// cuda_emu_runtime.h: the block scheduler, worker threads and the launch entry point of the
// emulator (included once at the end of cuda_emu.h; see that file for the model).
#pragma once

namespace emu {

inline size_t stack_bytes() {
    size_t kb = 0;
    if (const char* s = std::getenv("GPU_BPTT_EMU_STACK_KB")) kb = std::strtoul(s, nullptr, 10);
#if defined(__SANITIZE_ADDRESS__)
    if (kb == 0) kb = 512;
#else
    if (kb == 0) kb = 64;
#endif
    return kb * 1024;
}

// Fiber stacks of one worker: one mapping with one guard page under it, reused across launches.
// A guard page under every stack would split the mapping into two per fiber, and a process that
// loads many kernel modules (a test session) would run out of mappings (vm.max_map_count); each
// stack's low CANARY bytes hold a pattern instead, checked after every block (overflowed()).
struct Stacks {
    static constexpr size_t CANARY = 256;
    static constexpr unsigned char MARK = 0xA5;
    char* base = nullptr;
    size_t count = 0, size = 0, asked = 0, page = 0;
    std::vector<Fiber> fibers;

    void ensure(size_t n) {
        size_t want = stack_bytes();
        if (n <= count && want == asked) return;
        if (base) munmap(base, count * size + page);
        page = (size_t)sysconf(_SC_PAGESIZE);
        asked = want;
        size = (want + CANARY + page - 1) / page * page;
        count = std::max(n, count);
        void* p = mmap(nullptr, count * size + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) { base = nullptr; count = 0; return; }
        base = (char*)p;
        mprotect(base, page, PROT_NONE);
        fibers.assign(count, Fiber{});
        for (size_t i = 0; i < count; ++i) {
            char* lo = base + page + i * size;
            std::memset(lo, MARK, CANARY);
            fibers[i].stack_lo = lo + CANARY;
            fibers[i].stack_size = size - CANARY;
        }
    }

    // The first of the n stacks whose canary was written (an overflow), re-armed; -1 if none.
    long overflowed(size_t n) {
        for (size_t i = 0; i < n && i < count; ++i) {
            char* lo = base + page + i * size;
            for (size_t k = 0; k < CANARY; ++k) {
                if ((unsigned char)lo[k] != MARK) {
                    std::memset(lo, MARK, CANARY);
                    return (long)i;
                }
            }
        }
        return -1;
    }
};

extern "C" inline void fiber_main(Fiber* f) {
    Block& B = *tl_block;
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(nullptr, &B.sched_bottom, &B.sched_size);
#endif
    B.L->entry->invoke(B.L->args);
    // The thread has finished: barriers and warp operations must not wait for it any more.
    f->state = DONE;
    --B.live;
    int w = f->lin >> 5;
    B.warp_live[w] &= ~(1u << (f->lin & 31));
    if (B.bar_count > 0) {
        Fiber* other = nullptr;
        for (int i = 0; i < B.n; ++i) if (B.f[i].state == WAIT_BAR) { other = &B.f[i]; break; }
        fiber_fault(B, FAULT_DIVERGENT,
                    "divergent barrier in " + block_name(B) + ": thread " + fmt_tid(f->tid) +
                    " finished without reaching " + B.bar_what + " at " + where(B.bar_file, B.bar_line) +
                    ", where thread " + fmt_tid(other->tid) + " waits (every thread of the block must reach each barrier)");
    }
    for (unsigned m = B.warp_arrived[w]; m; m &= m - 1) try_complete(B, w, B.f[w * 32 + __builtin_ctz(m)].wmask);
    yield(B, *f, true);
    __builtin_trap();
}

inline void init_fiber(Block& B, Fiber& f) {
    f.state = RUN;
    f.polls = 0;
#if defined(__x86_64__)
    // Stack image that emu_ctx_switch pops: r15 r14 r13(entry) r12(arg) rbx rbp, then the return
    // address emu_ctx_start, which calls entry(arg) with a 16-byte aligned stack.
    void** sp = (void**)(((uintptr_t)(f.stack_lo + f.stack_size)) & ~(uintptr_t)15);
    *--sp = (void*)&emu_ctx_start;
    *--sp = nullptr;                 // rbp
    *--sp = nullptr;                 // rbx
    *--sp = (void*)&f;               // r12
    *--sp = (void*)&fiber_main;      // r13
    *--sp = nullptr;                 // r14
    *--sp = nullptr;                 // r15
    f.sp = sp;
    (void)B;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = f.stack_lo;
    f.uc.uc_stack.ss_size = f.stack_size;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, (void (*)())fiber_main, 1, &f);
    (void)B;
#endif
}

struct Rng {
    u64 s;
    u64 next() {  // splitmix64
        u64 z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
};

// mode: 0 forward, 1 reverse, 2 random permutation, 3 ("warps") random as well: in that mode the
// permutation orders warps (or blocks), not threads.
inline void make_order(std::vector<int>& order, int mode, Rng& rng) {
    int n = (int)order.size();
    for (int i = 0; i < n; ++i) order[i] = mode == 1 ? n - 1 - i : i;
    if (mode >= 2)
        for (int i = n - 1; i > 0; --i) std::swap(order[i], order[(int)(rng.next() % (u64)(i + 1))]);
}

// Mode 3: run warp w (lanes in order) until none of its threads can continue (all wait at a block
// barrier or have finished). Returns whether any thread ran; stops early when a block barrier
// completes (B.restart) so that the next round draws a new warp order, and when a thread gave way
// in an atomic or fence (it may spin on a flag another warp sets: the other warps get their turn).
inline bool run_warp_greedily(Block& B, int w) {
    bool ran = false;
    for (bool progress = true; progress;) {
        progress = false;
        for (int k = w * 32; k < B.n && k < w * 32 + 32; ++k) {
            Fiber& f = B.f[k];
            if (f.state != RUN) continue;
            ran = progress = true;
            B.polled = false;
            switch_into(B, f);
            if (B.aborted || B.restart || B.polled) return true;
        }
    }
    return ran;
}

inline std::string deadlock_report(Block& B) {
    std::string s = "deadlock in " + block_name(B) + ": no thread can continue;";
    std::vector<bool> seen(B.n, false);
    for (int i = 0; i < B.n; ++i) {
        Fiber& f = B.f[i];
        if (seen[i] || f.state == DONE) continue;
        int count = 0;
        for (int j = i; j < B.n; ++j) {
            Fiber& g = B.f[j];
            if (!seen[j] && g.state == f.state && g.line == f.line && std::strcmp(g.what, f.what) == 0) {
                seen[j] = true;
                ++count;
            }
        }
        s += " " + std::to_string(count) + " thread(s) from " + fmt_tid(f.tid) + " wait in " + f.what + " at " +
             where(f.file, f.line);
        if (f.state == WAIT_WARP) {
            char b[32];
            std::snprintf(b, sizeof b, " (mask 0x%08x)", f.wmask);
            s += b;
        }
        s += ";";
    }
    if (B.live < B.n) s += " " + std::to_string(B.n - B.live) + " thread(s) have finished";
    return s;
}

inline void run_block(Launch& L, Stacks& st, unsigned blin) {
    Block B;
    B.L = &L;
    B.n = (int)L.nthreads;
    B.live = B.n;
    B.f = st.fibers.data();
    B.bid = uint3{blin % L.grid.x, (blin / L.grid.x) % L.grid.y, blin / (L.grid.x * L.grid.y)};
    int nw = (B.n + 31) / 32;
    B.warp_arrived.assign(nw, 0u);
    B.warp_live.assign(nw, 0u);
    for (int i = 0; i < B.n; ++i) B.warp_live[i >> 5] |= 1u << (i & 31);
    blockIdx = B.bid;
    blockDim = L.block;
    gridDim = L.grid;
    for (int i = 0; i < B.n; ++i) {
        Fiber& f = B.f[i];
        f.lin = i;
        f.tid = uint3{i % L.block.x, (i / L.block.x) % L.block.y, i / (L.block.x * L.block.y)};
        init_fiber(B, f);
    }
#if defined(__SANITIZE_ADDRESS__)
    // Bytes past the requested dynamic shared memory are poisoned: reading them is reported.
    char* dyn = (char*)emu_dyn_smem_base();
    size_t cap = emu_dyn_smem_capacity();
    ASAN_UNPOISON_MEMORY_REGION(dyn, cap);
    if (L.dyn < cap) ASAN_POISON_MEMORY_REGION(dyn + L.dyn, cap - L.dyn);
#endif
    tl_block = &B;
    Rng rng{L.seed * 0x2545f4914f6cdd1dull + blin + 1};
    // Mode 3 runs one warp as far as it can before the next: the most skew between warps, which
    // exposes a missing __syncthreads() between a warp's write and another warp's read.
    std::vector<int> order(L.order == 3 ? nw : B.n);
    while (B.live > 0) {
        if (L.abort.load(std::memory_order_relaxed)) break;
        make_order(order, L.order, rng);
        bool ran = false;
        B.restart = false;
        for (int k : order) {
            if (L.order == 3) {
                ran = run_warp_greedily(B, k) || ran;
            } else {
                Fiber& f = B.f[k];
                if (f.state != RUN) continue;
                ran = true;
                switch_into(B, f);
            }
            if (B.aborted || B.restart) break;
        }
        if (B.aborted) break;
        if (!ran && B.live > 0) {
            B.fault = FAULT_DEADLOCK;
            B.error = deadlock_report(B);
            break;
        }
    }
    tl_block = nullptr;
    if (B.fault != FAULT_OK) L.fail(B.fault, B.error);
    if (L.coop) {
        std::string err;
        {
            std::lock_guard<std::mutex> lk(L.gm);
            ++L.g_finished;
            if (L.g_arrived > 0 && !L.abort.load())
                err = "deadlock: " + block_name(B) + " finished while other blocks wait in this_grid().sync() at " +
                      where(L.g_file, L.g_line);
        }
        if (!err.empty()) L.fail(FAULT_DEADLOCK, err);
    }
}

// ---------------------------------------------------------------- worker threads
struct Worker {
    std::thread t;
    std::mutex m;
    std::condition_variable cv;
    std::shared_ptr<Launch> job;
    int fixed_block = -1;  // cooperative launches: exactly this block
    Stacks stacks;
};

struct Pool {
    std::mutex m;
    std::vector<Worker*> idle;
};
// Never destroyed: worker threads outlive static destruction at interpreter exit.
inline Pool& pool() {
    static Pool* p = new Pool;
    return *p;
}

inline void worker_loop(Worker* w) {
    for (;;) {
        std::shared_ptr<Launch> L;
        int fixed;
        {
            std::unique_lock<std::mutex> lk(w->m);
            w->cv.wait(lk, [&] { return w->job != nullptr; });
            L = w->job;
            fixed = w->fixed_block;
        }
        w->stacks.ensure(L->nthreads);
        if (!w->stacks.base) {
            L->fail(FAULT_INTERNAL, "cannot map fiber stacks (" + std::to_string(L->nthreads) + " threads)");
        } else if (fixed >= 0) {
            run_block(*L, w->stacks, (unsigned)fixed);
        } else {
            for (;;) {
                if (L->abort.load()) break;
                unsigned i = L->next.fetch_add(1);
                if (i >= L->nblocks) break;
                run_block(*L, w->stacks, L->block_order[i]);
            }
        }
        if (w->stacks.base) {
            long bad = w->stacks.overflowed(L->nthreads);
            if (bad >= 0)
                L->fail(FAULT_INTERNAL, "fiber stack overflow (thread " + std::to_string(bad) +
                        " of a block): its stack is " + std::to_string(w->stacks.size - Stacks::CANARY) +
                        " bytes; raise GPU_BPTT_EMU_STACK_KB");
        }
        {
            std::lock_guard<std::mutex> lk(w->m);
            w->job.reset();
        }
        {
            std::lock_guard<std::mutex> lk(pool().m);
            pool().idle.push_back(w);
        }
        {
            std::lock_guard<std::mutex> lk(L->m);
            --L->workers_left;
        }
        L->cv.notify_all();
    }
}

inline Worker* take_worker() {
    {
        std::lock_guard<std::mutex> lk(pool().m);
        if (!pool().idle.empty()) {
            Worker* w = pool().idle.back();
            pool().idle.pop_back();
            return w;
        }
    }
    Worker* w = new Worker;
    w->t = std::thread(worker_loop, w);
    w->t.detach();
    return w;
}

inline unsigned worker_count(unsigned nblocks) {
    unsigned n = 0;
    if (const char* s = std::getenv("GPU_BPTT_EMU_THREADS")) n = (unsigned)std::strtoul(s, nullptr, 10);
    if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
    return std::min(n, nblocks);
}

}  // namespace emu

// Launch `e` on grid x block. Returns 0, or a Fault code with the message in err.
EMU_API int emu_launch(const emu::Entry* e, const unsigned* grid, const unsigned* block, unsigned long long dyn,
                       void** args, int coop, int order, unsigned long long seed, double timeout_s,
                       char* err, size_t errlen) {
    using namespace emu;
    auto L = std::make_shared<Launch>();
    L->entry = e;
    L->args = args;
    L->grid = dim3(grid[0], grid[1], grid[2]);
    L->block = dim3(block[0], block[1], block[2]);
    L->dyn = dyn;
    L->coop = coop != 0;
    L->order = order;
    L->seed = seed;
    L->nblocks = grid[0] * grid[1] * grid[2];
    L->nthreads = block[0] * block[1] * block[2];
    if (L->nblocks == 0 || L->nthreads == 0) return 0;
    L->block_order.resize(L->nblocks);
    Rng rng{seed ^ 0x5bd1e995ull};
    std::vector<int> ord(L->nblocks);
    make_order(ord, order, rng);
    for (unsigned i = 0; i < L->nblocks; ++i) L->block_order[i] = (unsigned)ord[i];

    unsigned nw = L->coop ? L->nblocks : worker_count(L->nblocks);
    L->workers_left = (int)nw;
    for (unsigned i = 0; i < nw; ++i) {
        Worker* w = take_worker();
        std::lock_guard<std::mutex> lk(w->m);
        w->fixed_block = L->coop ? (int)L->block_order[i] : -1;
        w->job = L;
        w->cv.notify_one();
    }
    std::unique_lock<std::mutex> lk(L->m);
    auto done = [&] { return L->workers_left == 0; };
    if (timeout_s > 0) {
        if (!L->cv.wait_for(lk, std::chrono::duration<double>(timeout_s), done)) {
            lk.unlock();
            L->fail(FAULT_TIMEOUT, "the launch did not finish within " + std::to_string((int)timeout_s) +
                    " s (GPU_BPTT_EMU_TIMEOUT); a thread may spin on a value no other thread will write");
            lk.lock();
            L->cv.wait_for(lk, std::chrono::seconds(2), done);
        }
    } else {
        L->cv.wait(lk, done);
    }
    int fault = L->fault;
    if (fault != FAULT_OK && err && errlen) std::snprintf(err, errlen, "%s", L->error.c_str());
    return fault;
}

EMU_API int emu_abi_version(void) { return 1; }
