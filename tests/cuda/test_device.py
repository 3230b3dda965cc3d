"""Checks that only a CUDA device can run (pytest -m gpu; skipped with cause GPU elsewhere): its
report, sizes past the grid's limits, lengths already on the device. The checks every executor
runs are in tests/test_elman.py, tests/cuda/test_kernels.py and
tests/persistent/test_persistent.py."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt
from tests.executors import CUDA, elman_problem, forward_args
from tests.tolerances import assert_close

pytestmark = pytest.mark.executors(CUDA)


def test_device_report(executor):
    from gpu_bptt.backends.cuda.backend import device_report

    rep = device_report()
    for key in ("device", "compute_capability", "cupy", "cuda_runtime", "cuda_driver"):
        assert rep.get(key), key


@pytest.mark.backend_options(gemm=["own"])
def test_own_gemm_past_65535_row_tiles(backend):
    """T·B = 4,194,241 rows: more row tiles than grid.y takes; the own GEMM puts them on grid.x.
    (The emulator would run its 4 million rows thread by thread.)"""
    import cupy

    r = np.random.default_rng(5)
    a, b = r.standard_normal((65535 * 64 + 1, 2)).astype(np.float32), r.standard_normal((2, 3))
    out = backend.kernels.gemm(cupy.asarray(a), cupy.asarray(b.astype(np.float32)))
    assert_close("gemm", out.get(), a @ b.astype(np.float32))


def test_lengths_on_the_device_stay_there(backend, monkeypatch):
    """A CuPy lengths array is checked on the device: never copied to the host (to_host)."""
    import cupy
    from gpu_bptt import validate

    p = elman_problem(6, 3, 4, 16, np.float32, seed=9, lengths=True)
    args = forward_args(p)
    ref = gpu_bptt.elman_forward(**args, backend="numpy")
    dev = dict(args, lengths=cupy.asarray(args["lengths"]))

    def no_host_copy(a):
        raise AssertionError("lengths were copied to the host")

    monkeypatch.setattr(validate, "to_host", no_host_copy)
    out = gpu_bptt.elman_forward(**{k: cupy.asarray(v) for k, v in dev.items()}, backend=backend)
    assert_close("h", out.h.get(), ref.h)
    bad = cupy.asarray(np.array([6, 7, 1], dtype=np.int32))
    with pytest.raises(ValueError, match=r"lengths\[1\] = 7"):
        gpu_bptt.elman_forward(**dict(dev, lengths=bad), backend=backend)
