"""The cuda backend's own glue to CuPy, which the emulator backend does not run: CudaBackend's
constructor, the device report, the persistent limits from the device properties and the
occupancy query, and `gpu-bptt info`. A stand-in `cupy` module gives NumPy arrays, the
emulator's RawModule (CuPy's interface) and the property names CuPy's runtime returns, so the
whole forward and backward runs through CudaBackend itself, against the numpy backend."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from cuda_helpers import assert_close, require_emulator, rng
import gpu_bptt

PROPS = {"name": b"Stand-in GPU", "multiProcessorCount": 4, "sharedMemPerBlock": 48 * 1024,
         "sharedMemPerBlockOptin": 64 * 1024, "cooperativeLaunch": 1}


@pytest.fixture
def fake_cupy(monkeypatch):
    require_emulator()
    from gpu_bptt.emulator import RawModule

    occupancy = []

    class Module(RawModule):
        def get_function(self, name):
            fn = super().get_function(name)
            fn.kernel = types.SimpleNamespace(ptr=id(fn))  # what CuPy's RawKernel.kernel gives
            return fn

    def occupancy_query(ptr, threads, smem):
        occupancy.append((threads, smem))
        return 1

    cupy = types.ModuleType("cupy")
    for name in dir(np):
        if not name.startswith("_"):
            setattr(cupy, name, getattr(np, name))
    cupy.__version__ = "stand-in"
    cupy.RawModule = Module
    cuda = types.ModuleType("cupy.cuda")
    # two devices: the second has twice the multiprocessors; cupy.cuda.Device() is the current one
    props = [dict(PROPS), dict(PROPS, name=b"Second GPU", multiProcessorCount=8)]
    current = [0]
    cuda.runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 2, getDeviceProperties=lambda i: dict(props[i]),
        runtimeGetVersion=lambda: 12090, driverGetVersion=lambda: 12080)
    cuda.Device = lambda *a: types.SimpleNamespace(id=current[0], compute_capability="90")
    cupy.current_device = current  # for the tests: which device is current
    cuda.get_cuda_path = lambda: None
    cuda.nvrtc = types.SimpleNamespace(getVersion=lambda: (12, 9))
    cuda.driver = types.SimpleNamespace(occupancyMaxActiveBlocksPerMultiprocessor=occupancy_query)
    cuda.__getattr__ = lambda name: types.ModuleType(f"cupy.cuda.{name}")  # cublas loads
    cupy.cuda = cuda
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    import gpu_bptt.backends as backends
    from gpu_bptt.backends import kernel_loader

    # fresh caches of backends and modules, put back afterwards: the stand-in's modules must never
    # serve a real CuPy later in the same process
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.setattr(kernel_loader, "_MODULES", {})
    return occupancy


def test_device_report_and_limits_from_the_properties(fake_cupy):
    from gpu_bptt.backends.cuda import CudaBackend, device_report

    rep = device_report()
    assert rep["device"] == "Stand-in GPU" and rep["multiprocessors"] == 4
    assert (rep["compute_capability"], rep["cuda_runtime"], rep["cuda_driver"], rep["nvrtc"]) == (
        "9.0", "12.9", "12.8", "12.9")
    bk = CudaBackend()
    limits = bk.persistent_limits()
    assert (limits.multiprocessors, limits.smem_per_block, limits.cooperative) == (
        4, 64 * 1024, True)
    assert limits.name == "Stand-in GPU"


def test_limits_follow_the_current_device(fake_cupy):
    """One backend serves every device: the limits and the step rule read the current one."""
    from gpu_bptt.backends.cuda import CudaBackend

    bk = CudaBackend(step="auto")
    assert bk.multiprocessors == 4 and bk.step_version(192, 256) == "v3"  # 12 tiles >= 2 x 4
    sys.modules["cupy"].current_device[0] = 1
    assert bk.persistent_limits().name == "Second GPU" and bk.multiprocessors == 8
    assert bk.step_version(192, 256) == "v2"  # 12 tiles < 2 x 8


@pytest.mark.parametrize("algo", ["step", "persistent"])
def test_forward_backward_through_cuda_backend_itself(fake_cupy, algo):
    from gpu_bptt.backends.cuda import CudaBackend

    bk = CudaBackend(step="auto")
    assert bk.name == "cuda" and bk.loader.kind == "cupy"
    r = rng(4)
    T, B, I, H = 5, 3, 4, 24
    x, W = r.standard_normal((T, B, I)), r.standard_normal((I, H)) / 2
    V, b, h0 = r.standard_normal((H, H)) / 5, r.standard_normal(H), r.standard_normal((B, H))
    dh, lengths = r.standard_normal((T, B, H)), np.array([5, 2, 4], dtype=np.int32)
    outs = {}
    for name, backend, how in (("numpy", "numpy", "step"), ("cuda", bk, algo)):
        out = gpu_bptt.elman_forward(x, W, V, b, h0, lengths=lengths, backend=backend, algo=how)
        outs[name] = out, gpu_bptt.elman_backward(dh, out.cache)
    assert outs["cuda"][0].cache.algo == algo
    assert_close("h", outs["cuda"][0].h, outs["numpy"][0].h)
    for g in ("dx", "dW", "dV", "db", "dh0"):
        assert_close(g, getattr(outs["cuda"][1], g), getattr(outs["numpy"][1], g))
    if algo == "persistent":  # co-residency asked of the driver, for both directions
        assert len(fake_cupy) >= 2 and {t for t, _ in fake_cupy} == {256}


def test_info_prints_device_kernels_and_persistent_limits(fake_cupy, capsys):
    from gpu_bptt.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "default backend: cuda" in out and "Stand-in GPU" in out
    assert "every kernel compiles" in out
    assert "persistent (v2): largest H" in out
