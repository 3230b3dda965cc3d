"""Planted bugs are caught: each raises an exception naming the kernel and the problem."""
import numpy as np
import pytest

from emulator_helpers import ORDERS, SEED, module
from gpu_bptt.emulator import KernelFault, LaunchError, RawModule


def test_missing_syncthreads_gives_a_wrong_result_in_some_order():
    rng = np.random.default_rng(5)
    M, N, K = 33, 47, 29
    A = rng.standard_normal((M, K), dtype=np.float32)
    B = rng.standard_normal((K, N), dtype=np.float32)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    k = module("matmul.cu").get_function("matmul_missing_sync")
    wrong = []
    for order in ORDERS:
        C = np.zeros((M, N), np.float32)
        k(((N + 15) // 16, (M + 15) // 16), (16, 16), (A, B, C, np.int32(M), np.int32(N), np.int32(K)),
          order=order, seed=SEED)
        if not np.allclose(C, ref, rtol=1e-5, atol=1e-4):
            wrong.append(order)
    assert wrong, "the missing barrier went unnoticed in every thread order"


def test_warps_order_exposes_a_missing_barrier_between_warps():
    """A race between warps separated by several shuffles: the thread-by-thread orders interleave
    the warps finely and hide it; "warps" runs one warp far ahead and shows it."""
    x = np.random.default_rng(6).integers(-4, 5, size=512).astype(np.float32)
    ref = x.reshape(2, 256).sum(axis=1)
    k = module("faults.cu").get_function("cross_warp_missing_sync")
    wrong = set()
    for order in ORDERS:
        for seed in (SEED, SEED + 1, SEED + 2):
            out = np.zeros(2, np.float32)
            k(1, 256, (x, out), order=order, seed=seed)
            if not np.array_equal(out, ref):
                wrong.add(order)
    assert wrong == {"warps"}, wrong


def test_divergent_syncthreads_raises(order):
    k = module("faults.cu").get_function("divergent_sync")
    with pytest.raises(KernelFault, match=r"'divergent_sync'.*divergent barrier.*faults\.cu:9") as e:
        k(1, 32, (np.zeros(32, np.float32),), order=order, seed=SEED)
    assert e.value.kind == "divergent_barrier"


def test_deadlock_raises(order):
    k = module("faults.cu").get_function("deadlock")
    with pytest.raises(KernelFault, match=r"'deadlock'.*deadlock.*__shfl_sync\(\) at .*faults\.cu:16"
                                          r".*__syncthreads\(\) at .*faults\.cu:17") as e:
        k(1, 32, (np.zeros(32, np.float32),), order=order, seed=SEED)
    assert e.value.kind == "deadlock"


def test_grid_sync_without_cooperative_launch_raises():
    k = module("faults.cu").get_function("needs_grid_sync")
    with pytest.raises(KernelFault, match=r"'needs_grid_sync'.*this_grid\(\)\.sync\(\).*cooperative") as e:
        k(2, 32, (np.zeros(1, np.int32),))
    assert e.value.kind == "grid_sync"
    # the same kernel in a cooperative launch (CuPy sets this on the module)
    x = np.zeros(1, np.int32)
    module("faults.cu", enable_cooperative_groups=True).get_function("needs_grid_sync")(3, 32, (x,))
    assert x[0] == 96


@pytest.mark.parametrize("args, pattern", [
    ((np.zeros(8, np.float64), np.int32(8), np.float32(1), np.float64(0)),
     r"'axpb', parameter 0 \(x: float\*\).*float64"),
    ((np.zeros(8, np.float32), 8, np.float32(1), np.float64(0)),
     r"'axpb', parameter 1 \(n: int\).*np\.int32.*got int"),
    ((np.zeros(8, np.float32), np.int64(8), np.float32(1), np.float64(0)),
     r"'axpb', parameter 1 \(n: int\).*int64"),
    ((np.zeros(8, np.float32), np.int32(8), 1.0, np.float64(0)),
     r"'axpb', parameter 2 \(a: float\).*got float"),
    ((np.zeros(8, np.float32), np.int32(8), np.float32(1), np.float32(0)),
     r"'axpb', parameter 3 \(b: double\).*float32"),
    ((np.zeros(8, np.float32), np.int32(8), np.float32(1)), r"'axpb' takes 4 arguments, got 3"),
    ((np.zeros((4, 4), np.float32)[:, 0], np.int32(8), np.float32(1), np.float64(0)),
     r"'axpb', parameter 0 .*not C-contiguous"),
])
def test_wrong_argument_types_raise(args, pattern):
    k = module("faults.cu").get_function("axpb")
    with pytest.raises((TypeError, ValueError), match=pattern):
        k(1, 32, args)


def test_launch_limits():
    k = module("faults.cu").get_function("axpb")
    args = (np.zeros(8, np.float32), np.int32(8), np.float32(1), np.float64(0))
    with pytest.raises(LaunchError, match=r"'axpb'.*1056 threads.*at most 1024"):
        k(1, (33, 32), args)
    with pytest.raises(LaunchError, match=r"'axpb'.*shared_mem = 49153 .*49152"):
        k(1, 32, args, shared_mem=48 * 1024 + 1)
    k.max_dynamic_shared_size_bytes = 100 * 1024  # the opt-in a real launch needs
    k(1, 32, args, shared_mem=64 * 1024)
    k.max_dynamic_shared_size_bytes = 48 * 1024


def test_spin_wait_that_never_ends_times_out():
    flag, out = np.zeros(1, np.int32), np.zeros(1, np.int32)
    k = module("faults.cu").get_function("spin_flag")
    with pytest.raises(KernelFault, match=r"'spin_flag'.*did not finish within") as e:
        k(1, 64, (flag, out, np.int32(1)), timeout=0.5)
    assert e.value.kind == "timeout"
    k(1, 64, (flag, out, np.int32(0)))  # the worker threads are free again
    assert out[0] == 1


def test_spin_wait_on_another_warp_finishes_in_every_order():
    """A spin in warp 0 on a flag warp 1 sets: an atomic gives way, also in the "warps" order,
    which would otherwise run warp 0 alone for ever (seed 0 puts warp 0 first)."""
    k = module("faults.cu").get_function("spin_flag")
    for order in ORDERS:
        for seed in range(4):
            flag, out = np.zeros(1, np.int32), np.zeros(1, np.int32)
            k(1, 64, (flag, out, np.int32(0)), order=order, seed=seed, timeout=20)
            assert out[0] == 1, (order, seed)


def test_trap_raises():
    with pytest.raises(KernelFault, match=r"'traps'.*__trap\(\).*\(3,0,0\)"):
        module("faults.cu").get_function("traps")(1, 32, (np.zeros(32, np.int32),))


def test_unknown_kernel_and_template_hint():
    with pytest.raises(LookupError, match="name_expressions"):
        module("warp_reduce.cu", name_expressions=("block_sum<float>", "block_sum<double>")) \
            .get_function("block_sum")
    with pytest.raises(LookupError, match="no kernel named 'nope'"):
        module("faults.cu").get_function("nope")


def test_shuffle_mask_must_include_caller():
    src = r'''extern "C" __global__ void k(int* x) {
        x[threadIdx.x] = __shfl_sync(0x1u, x[threadIdx.x], 0); }'''
    with pytest.raises(KernelFault, match=r"'k'.*mask that does not include itself"):
        RawModule(code=src).get_function("k")(1, 32, (np.zeros(32, np.int32),))


def test_assert_and_grid_deadlock():
    src = r'''#include <cassert>
#include <cooperative_groups.h>
extern "C" __global__ void checks(int* x) { assert(threadIdx.x < 5); x[threadIdx.x] = 1; }
extern "C" __global__ void early_exit(int* x) {
    if (blockIdx.x == 1) return;
    cooperative_groups::this_grid().sync();
}'''
    mod = RawModule(code=src, enable_cooperative_groups=True)
    with pytest.raises(KernelFault, match=r"'checks'.*assertion `threadIdx.x < 5' failed at kernel.cu:3"):
        mod.get_function("checks")(1, 32, (np.zeros(32, np.int32),))
    with pytest.raises(KernelFault, match=r"'early_exit'.*deadlock.*this_grid\(\)\.sync\(\) at kernel.cu:6") as e:
        mod.get_function("early_exit")(3, 32, (np.zeros(32, np.int32),))
    assert e.value.kind == "deadlock"


def test_order_from_environment(monkeypatch):
    """$GPU_BPTT_EMU_ORDER picks the order when no keyword does; a bad name is an error."""
    k = module("warp_reduce.cu", name_expressions=("block_sum<float>", "block_sum<double>")) \
        .get_function("warp_scan")
    x = np.arange(32, dtype=np.int32)
    for name in ("reverse", "random"):
        monkeypatch.setenv("GPU_BPTT_EMU_ORDER", name)
        y = np.zeros(32, np.int32)
        k(1, 32, (x, y, np.int32(32)))
        np.testing.assert_array_equal(y, np.cumsum(x))
    monkeypatch.setenv("GPU_BPTT_EMU_ORDER", "sideways")
    with pytest.raises(ValueError, match="sideways"):
        k(1, 32, (x, np.zeros(32, np.int32), np.int32(32)))
