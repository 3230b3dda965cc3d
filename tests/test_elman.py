"""elman_forward and elman_backward by behaviour, on each executor (tests/executors.py): the step
kernels and GEMMs against the numpy reference, bit-identical gradients, need_dx, no bias, inputs
left alone. The numpy reference itself is checked against the seed's definition and finite
differences in tests/test_elman_numpy.py."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends import get_backend
from tests.executors import (CPU, CUDA, EMULATORS, GRADS, NUMPY, OUTPUTS, assert_equal_arrays,
                             elman_problem, run)
from tests.skips import require_emulator
from tests.tolerances import assert_close

# (T, B, I, H, activation, lengths?, dh?, dh_last?, dtype, gemm, step)
CASES = [
    (1, 1, 3, 5, "tanh", False, True, True, np.float64, "cublas", "v2"),
    (7, 5, 4, 37, "relu", True, True, False, np.float32, "own", "v2"),
    (33, 3, 6, 20, "sigmoid", True, False, True, np.float64, "own", "v1"),
    (7, 33, 5, 70, "identity", False, True, True, np.float32, "cublas", "v3"),
    (7, 2, 3, 9, "tanh", True, True, True, np.float32, "own", "v3"),
    (1, 4, 2, 6, "relu", True, False, True, np.float32, "own", "auto"),
    (7, 6, 5, 11, "sigmoid", False, True, False, np.float64, "cublas", "auto"),
    (7, 5, 4, 37, "tanh", True, True, True, np.float32, "cublas", "v4"),
    (33, 3, 6, 20, "relu", True, False, True, np.float64, "own", "v4"),
]
# Device-only cases: sizes at which the emulator (one fiber per CUDA thread) takes minutes, and
# the device's own picks of v1/v2 at the shapes above.
GPU_CASES = [
    (7, 5, 4, 37, "relu", True, True, True, np.float32, "own", "v1"),
    (33, 3, 6, 20, "sigmoid", True, True, True, np.float64, "own", "v2"),
    (33, 70, 40, 130, "identity", True, True, True, np.float32, "cublas", "v3"),
    (16, 256, 64, 300, "tanh", True, True, True, np.float32, "own", "auto"),
    (16, 96, 64, 200, "tanh", False, True, True, np.float64, "cublas", "auto"),
    (9, 70, 40, 130, "sigmoid", True, True, True, np.float32, "cublas", "v4"),
    (8, 512, 64, 1024, "tanh", True, True, True, np.float32, "cublas", "auto"),  # auto takes v4
]


def _case_id(c):
    return "T{}-B{}-I{}-H{}-{}-len{:d}-dh{:d}-last{:d}-{}-{}-{}".format(
        *c[:8], np.dtype(c[8]).name, *c[9:])


def _check_matches_numpy(executor, case, seed):
    T, B, I, H, act, with_lengths, with_dh, with_last, dtype, gemm, step = case
    bk = executor.backend(gemm=gemm, step=step)
    p = elman_problem(T, B, I, H, dtype, seed=seed, lengths=with_lengths)
    ref_out, ref_g = run(NUMPY, p, act, dh=with_dh, dh_last=with_last)
    out, g = run(bk, p, act, dh=with_dh, dh_last=with_last)
    assert isinstance(out.h, executor.array_type) and out.h.dtype == dtype
    for name in OUTPUTS:
        assert_close(name, getattr(out, name), getattr(ref_out, name))
    for name in GRADS:
        assert_close(name, getattr(g, name), getattr(ref_g, name))


@pytest.mark.executors(*EMULATORS, CUDA)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_backward_match_numpy(executor, case):
    T, B, H = case[0], case[1], case[3]
    _check_matches_numpy(executor, case, seed=T * 1000 + B * 10 + H)


@pytest.mark.executors(CUDA)
@pytest.mark.parametrize("case", GPU_CASES, ids=_case_id)
def test_forward_backward_match_numpy_at_device_sizes(executor, case):
    T, B, H = case[0], case[1], case[3]
    _check_matches_numpy(executor, case, seed=T + B + H)  # the data these were checked with


@pytest.mark.executors("emulator-random", CUDA)
@pytest.mark.backend_options(gemm=["own"])
def test_no_bias_gives_no_db_and_inputs_are_untouched(backend):
    p = elman_problem(5, 3, 4, 7, np.float32, seed=1, bias=False, lengths=True)
    before = {k: None if v is None else v.copy() for k, v in p.items()}
    ref_out, ref_g = run(NUMPY, p, dh_last=False)
    out, g = run(backend, p, dh_last=False)
    assert g.db is None
    assert_close("h", out.h, ref_out.h)
    assert_close("dW", g.dW, ref_g.dW)
    for k, v in before.items():
        assert v is None or np.array_equal(p[k], v), f"{k} was modified"


@pytest.mark.executors(NUMPY, CPU, "emulator-random", CUDA)
@pytest.mark.backend_options(gemm=["cublas", "own"])
def test_gradients_are_bit_identical_across_runs(backend):
    p = elman_problem(7, 5, 4, 9, np.float32, seed=2, lengths=True)
    g1 = run(backend, p)[1]
    g2 = run(backend, p)[1]
    for name in GRADS:
        assert getattr(g1, name).dtype == np.float32, name
    assert_equal_arrays(GRADS, g1, g2)


@pytest.mark.executors(CUDA)
@pytest.mark.backend_options(gemm=["cublas", "own"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_are_bit_identical_across_runs_at_device_sizes(backend, dtype):
    """Many blocks per reduction, where a float atomic would show (minutes on the emulator)."""
    p = elman_problem(64, 128, 96, 256, dtype, seed=5, lengths=True)
    assert_equal_arrays(GRADS, run(backend, p)[1], run(backend, p)[1])


@pytest.mark.executors(NUMPY, CPU, "emulator-forward", CUDA)
@pytest.mark.backend_options(gemm=["cublas", "own"])
def test_need_dx_false_skips_only_dx(backend):
    p = elman_problem(6, 3, 4, 9, np.float32, seed=3, lengths=True)
    out, full = run(backend, p)
    part = gpu_bptt.elman_backward(p["dh"], out.cache, dh_last=p["dh_last"], need_dx=False)
    assert part.dx is None
    assert_equal_arrays(("dW", "dV", "db", "dh0"), part, full)


@pytest.mark.executors("emulator-forward", CUDA)
def test_compile_report_lists_every_file(backend):
    from gpu_bptt.backends.cuda.backend import compile_report
    from gpu_bptt.backends.cuda.kernel_loader import kernel_files

    assert compile_report(backend) == {f: None for f in kernel_files()}


# The emulator backend's own options (the cuda backend's, through the environment too).
def test_registry_and_options(monkeypatch):
    require_emulator()
    from gpu_bptt.backends.emulator import EmulatorBackend

    assert get_backend("emulator").name == "emulator"
    monkeypatch.setenv("GPU_BPTT_GEMM", "own")
    monkeypatch.setenv("GPU_BPTT_STEP_KERNEL", "v1")
    monkeypatch.setenv("GPU_BPTT_PERSIST_KERNEL", "v1")
    bk = EmulatorBackend()
    assert (bk.gemm, bk.step, bk.persist) == ("own", "v1", "v1")
    assert EmulatorBackend(persist="V2").persist == "v2"
    with pytest.raises(ValueError, match=r"^persist: expected one of \('v2', 'v1'\)"):
        EmulatorBackend(persist="v3")
    monkeypatch.delenv("GPU_BPTT_PERSIST_KERNEL")
    assert EmulatorBackend().persist == "v2"  # the default
    monkeypatch.setenv("GPU_BPTT_GEMM", "magma")
    with pytest.raises(ValueError, match="gemm"):
        EmulatorBackend()
    with pytest.raises(ValueError, match="step"):
        EmulatorBackend(gemm="cublas", step="v7")
    auto = EmulatorBackend(gemm="cublas", step="auto")
    assert auto.step_version(4, 32) == "v2"
    assert auto.step_version(256, 1024) == "v4"  # a large product: cuBLAS + our epilogue
    assert auto.step_version(32, 1024) == "v3"
    with pytest.raises(ValueError, match="algo"):
        gpu_bptt.elman_forward(np.zeros((1, 1, 1)), np.zeros((1, 1)), np.zeros((1, 1)),
                               backend=auto, algo="fast")
    # "persistent" is honoured, and is an error naming the limit where V's slice does not fit.
    with pytest.raises(ValueError, match="algo='persistent' cannot run"):
        gpu_bptt.elman_forward(np.zeros((1, 1, 1)), np.zeros((1, 220)), np.zeros((220, 220)),
                               backend=auto, algo="persistent")
