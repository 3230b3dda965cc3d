"""The persistent kernels (algo="persistent") on each kernel executor (tests/executors.py): the
emulator in all four thread orders, one of them in the bounds-checking build, with 4 emulated
multiprocessors, and a CUDA device. Forward and backward equal the numpy reference and the step
kernels within the dtype's tolerance; gradients are bit-identical across runs."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends.cuda import registry
from tests.executors import (CUDA, GRADS, KERNEL_RUNS, NUMPY, OUTPUTS, Executor,
                             assert_equal_arrays, elman_problem, forward_args, run)
from tests.skips import GPU_SIZE, skip
from tests.tolerances import assert_close

ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
VERSIONS = tuple(registry.PERSIST)  # a new version is tested as it lands


def check(executor, bk, p, act, with_dh=True, with_last=True, **tol):
    dtype = p["x"].dtype
    ref_out, ref_g = run(NUMPY, p, act, algo="step", dh=with_dh, dh_last=with_last)
    out, g = run(bk, p, act, algo="persistent", dh=with_dh, dh_last=with_last)
    assert out.cache.algo == "persistent"
    # the step kernels of the same executor, outside the (slow) bounds-checking build
    plain = Executor(executor.name.removesuffix("+sanitize")).backend(persist=bk.persist)
    step_out, step_g = run(plain, p, act, algo="step", dh=with_dh, dh_last=with_last)
    assert step_out.cache.algo == "step"
    for name in OUTPUTS:
        assert_close(name, getattr(out, name), getattr(ref_out, name), dtype, **tol)
        assert_close(f"{name} vs step", getattr(out, name), getattr(step_out, name), dtype, **tol)
    for name in GRADS:
        assert_close(name, getattr(g, name), getattr(ref_g, name), dtype, **tol)
        assert_close(f"{name} vs step", getattr(g, name), getattr(step_g, name), dtype, **tol)


@pytest.mark.executors(*KERNEL_RUNS, CUDA)
@pytest.mark.backend_options(persist=VERSIONS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_each_activation_with_lengths_and_dh_last(executor, backend, act):
    # H = 13 over 4 blocks on the emulator: 4, 4, 4 and 1 columns; B = 3 < one chunk.
    p = elman_problem(7, 3, 4, 13, np.float32, seed=ACTIVATIONS.index(act), lengths=True)
    check(executor, backend, p, act)


# (T, B, I, H, dtype, lengths, dh, dh_last): batch chunks, more columns than warps, T = 1, only
# dh or only dh_last, float64 (block counts as on the emulator's 4 multiprocessors).
CASES = [
    (5, 11, 3, 9, np.float32, True, True, True),     # B = 11: two chunks (8 + 3)
    (3, 2, 5, 40, np.float32, False, True, False),   # 10 columns per block: warps 0-1 take two
    (1, 4, 2, 6, np.float64, True, False, True),     # T = 1, grid of 3 blocks
    (6, 1, 3, 5, np.float64, False, True, True),     # B = 1, H < multiprocessors * warps
]


@pytest.mark.executors(*KERNEL_RUNS, CUDA)
@pytest.mark.backend_options(persist=VERSIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}-B{}-I{}-H{}-{}-len{:d}-dh{:d}-last{:d}".format(
    *c[:4], np.dtype(c[4]).name, *c[5:]))
def test_shapes(executor, backend, case):
    T, B, I, H, dtype, lengths, dh, dh_last = case
    p = elman_problem(T, B, I, H, dtype, seed=T * 100 + B * 10 + H, lengths=lengths)
    check(executor, backend, p, "tanh", with_dh=dh, with_last=dh_last)


# Device sizes: H up to 2000 and T = 64 (the emulator would take minutes a case).
# (T, B, I, H, activation, lengths?, dtype)
DEVICE_CASES = [
    (64, 8, 64, 1024, "tanh", True, np.float32),
    (33, 3, 16, 257, "relu", True, np.float32),
    (17, 20, 8, 130, "sigmoid", False, np.float64),
    (5, 1, 4, 2000, "identity", True, np.float32),
]


@pytest.mark.executors(CUDA)
@pytest.mark.backend_options(persist=VERSIONS)
@pytest.mark.parametrize("case", DEVICE_CASES, ids=str)
def test_device_sizes(executor, backend, case):
    from gpu_bptt.backends.cuda import persistent

    T, B, I, H, act, with_lengths, dtype = case
    limits = backend.persistent_limits()
    if H > persistent.max_hidden(limits, B, dtype, backend.persist):
        skip(GPU_SIZE, f"H={H} does not fit this device's shared memory ({limits})")
    p = elman_problem(T, B, I, H, dtype, lengths=with_lengths)
    # Long float32 recurrences: rounding grows with T, as for the step kernels.
    tol = dict(atol=1e-4, rtol=1e-3) if dtype == np.float32 and T > 32 else {}
    check(executor, backend, p, act, **tol)


@pytest.mark.executors("emulator-random")
@pytest.mark.parametrize("version", VERSIONS)
def test_hidden_size_past_one_pass_of_the_block(executor, version):
    """H = 300 > 256 threads: v2's threads take two k each, v1's lanes ten. It needs a grid of
    more than the 4 emulated multiprocessors to fit 48 KB, so this backend reports 16."""
    from gpu_bptt.backends.cuda import persistent as P
    from gpu_bptt.backends.emulator import EmulatorBackend

    class Wider(EmulatorBackend):
        def persistent_limits(self):
            return P.DeviceLimits(16, P.DEFAULT_SMEM, name="emulator, 16 blocks")

    bk = Wider(order="random", persist=version)
    p = elman_problem(3, 9, 2, 300, np.float32, seed=11, lengths=True)
    assert P.plan(bk.persistent_limits(), 9, 300, np.float32, version).grid == 16
    check(executor, bk, p, "tanh")


# H = 300 > 256 threads, so v2's threads take two k each (v1's lanes ten), on an emulated device
# with an H100's opt-in limit of 227 KB per block: over 4 multiprocessors V's slice needs about
# 100 KB (float32) or 190 KB (float64), so each launch needs the kernel attribute raised above the
# default 48 KB, as on a GPU. B = 9: two batch chunks. (A GPU runs such sizes in test_device_sizes.)
@pytest.mark.executors(*KERNEL_RUNS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("B,dtype", [(9, np.float32), (3, np.float64)], ids=["B9-float32", "B3-float64"])
def test_beyond_one_pass_above_48_kb(executor, version, B, dtype):
    from gpu_bptt.backends.cuda import persistent as P
    from gpu_bptt.backends.emulator import SMEM_H100

    bk = executor.backend(persist=version, smem_per_block=SMEM_H100)
    assert P.plan(bk.persistent_limits(), B, 300, dtype, version).smem > P.DEFAULT_SMEM
    p = elman_problem(3, B, 2, 300, dtype, seed=B, lengths=True)
    check(executor, bk, p, "tanh")


@pytest.mark.executors("emulator-forward")
def test_smem_per_block_is_checked(executor):
    from gpu_bptt.backends.emulator import SMEM_H100, EmulatorBackend

    with pytest.raises(ValueError, match=r"smem_per_block: expected 49152 to 232448 bytes, got 1024"):
        EmulatorBackend(smem_per_block=1024)
    with pytest.raises(ValueError, match="smem_per_block"):
        EmulatorBackend(smem_per_block=SMEM_H100 + 1)
    with pytest.raises(TypeError, match="smem_per_block: expected an int, got float"):
        EmulatorBackend(smem_per_block=64e3)


@pytest.mark.executors("emulator-random")
def test_auto_takes_persistent_for_small_batches_and_warns_of_fallbacks(backend, monkeypatch):
    """On the emulator's fixed 48 KB per block, so the messages are known to the byte (a
    device's own limit: test_too_large_h_is_an_error_naming_the_limit)."""
    from gpu_bptt.backends import notices

    monkeypatch.setattr(notices, "_warned", set())
    args = forward_args(elman_problem(3, 2, 3, 7, np.float32, seed=5, lengths=True))
    assert gpu_bptt.elman_forward(**args, backend=backend).cache.algo == "persistent"
    # H = 220 needs (55 + 2) * 220 * 4 bytes per block, above the emulated 48 KB.
    big = forward_args(elman_problem(1, 2, 1, 220, np.float32, seed=6, lengths=True))
    with pytest.warns(RuntimeWarning, match=r"algo='auto' runs the step kernels: .*V's slice does "
                                            r"not fit on chip: H=220"):
        assert gpu_bptt.elman_forward(**big, backend=backend, algo="auto").cache.algo == "step"
    with pytest.raises(ValueError, match=r"algo='persistent' cannot run: V's slice does not fit on "
                                         r"chip: H=220 .* 49152 bytes per block"):
        gpu_bptt.elman_forward(**big, backend=backend, algo="persistent")


@pytest.mark.executors(CUDA)
@pytest.mark.backend_options(persist=VERSIONS)
def test_too_large_h_is_an_error_naming_the_limit(backend):
    """The device's own limit, whatever it is (the emulator's: the test above)."""
    from gpu_bptt.backends.cuda import persistent

    H = persistent.max_hidden(backend.persistent_limits(), 8, np.float32, backend.persist) + 1
    args = forward_args(elman_problem(1, 8, 1, H, np.float32))
    with pytest.raises(ValueError, match="V's slice does not fit on chip"):
        gpu_bptt.elman_forward(**args, backend=backend, algo="persistent")
    assert gpu_bptt.elman_forward(**args, backend=backend, algo="auto").cache.algo == "step"


@pytest.mark.executors("emulator-random", CUDA)
def test_gradients_are_bit_identical_across_runs(backend):
    p = elman_problem(4, 3, 3, 10, np.float32, seed=7, lengths=True)
    g1 = run(backend, p, algo="persistent")[1]
    g2 = run(backend, p, algo="persistent")[1]
    assert_equal_arrays(GRADS, g1, g2)


@pytest.mark.executors(CUDA)
@pytest.mark.backend_options(persist=VERSIONS)
def test_gradients_are_bit_identical_across_runs_at_device_sizes(backend):
    """H = 300 over a device's many blocks (a grid the emulator would take minutes over)."""
    p = elman_problem(32, 4, 16, 300, np.float32, seed=1, lengths=True)
    assert_equal_arrays(GRADS, run(backend, p, algo="persistent")[1],
                        run(backend, p, algo="persistent")[1])
