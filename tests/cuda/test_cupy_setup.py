"""What the cuda backend checks and adds around CuPy, without a GPU: the reasons it gives when
CuPy lacks a device, NVRTC or cuBLAS (a fake `cupy` stands in), and the include folder it hands
CuPy's NVRTC for <cooperative_groups.h> where CuPy finds none itself (CUDA 12's pip wheels)."""
from __future__ import annotations

import sys
import types
import warnings

import pytest

from gpu_bptt import backends, get_backend, nvrtc
from gpu_bptt.backends import notices
from gpu_bptt.backends.cuda import backend as cuda
from gpu_bptt.backends.cpu_backend import cpu_unavailable_reason
from gpu_bptt.backends.cuda.backend import cuda_unavailable_reason, include_options


class CUDARuntimeError(RuntimeError):
    """CuPy's (cupy_backends.cuda.api.runtime): the message and the runtime's status code."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


#: what auto picks where cuda cannot run: the compiled cpu backend where it is installed
CPU_CHOICE = "numpy" if cpu_unavailable_reason() else "cpu"

# What CuPy 14 (cupy-cuda12x) raises from getDeviceCount() on a machine without any NVIDIA driver,
# and with a driver but no GPU
NO_DRIVER = CUDARuntimeError(35, "cudaErrorInsufficientDriver: CUDA driver version is "
                                 "insufficient for CUDA runtime version")
NO_DEVICE = CUDARuntimeError(100, "cudaErrorNoDevice: no CUDA-capable device is detected")


def _fake_cupy(monkeypatch, devices=1, nvrtc_error=None, cublas=True):
    cupy = types.ModuleType("cupy")
    cuda = types.ModuleType("cupy.cuda")

    def device_count():
        if isinstance(devices, Exception):
            raise devices
        return devices

    runtime = types.SimpleNamespace(getDeviceCount=device_count)
    monkeypatch.setattr(notices, "_warned", set())  # each test hears its own warnings
    nv = types.ModuleType("cupy.cuda.nvrtc")

    def get_version():
        if nvrtc_error:
            raise nvrtc_error
        return (12, 9)

    nv.getVersion = get_version
    cuda.runtime, cuda.nvrtc, cupy.cuda = runtime, nv, cuda
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nvrtc", nv)

    def lazy(name):  # CuPy 14 loads its library modules in cupy.cuda's module __getattr__
        if name == "cublas":
            if cublas:
                return types.ModuleType("cupy.cuda.cublas")
            raise ImportError('Failure finding "libcublasLt.so.12"')
        raise AttributeError(name)

    cuda.__getattr__ = lazy


def test_reason_none_when_device_and_libraries_load(monkeypatch):
    _fake_cupy(monkeypatch)
    assert cuda_unavailable_reason() is None


def test_reason_no_device(monkeypatch):
    _fake_cupy(monkeypatch, devices=0)
    assert cuda_unavailable_reason() == "CuPy sees no CUDA device"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no GPU: numpy is the expected choice, nothing to warn of
        assert get_backend("auto").name == CPU_CHOICE


def test_reason_without_any_driver_says_so(monkeypatch):
    """No NVIDIA driver at all: CuPy's runtime says the driver is "insufficient", which would send
    a user to upgrade a driver that is not there."""
    _fake_cupy(monkeypatch, devices=NO_DRIVER)
    monkeypatch.setattr(cuda, "driver_loadable", lambda: False)
    reason = cuda_unavailable_reason()
    assert reason.startswith("no NVIDIA driver found (libcuda.so.1 cannot be loaded)"), reason
    assert "insufficient" not in reason
    with pytest.raises(backends.BackendUnavailable, match="'cuda' is unavailable: no NVIDIA driver"):
        get_backend("cuda")


def test_reason_keeps_the_runtime_message_where_a_driver_is_present(monkeypatch):
    _fake_cupy(monkeypatch, devices=NO_DRIVER)
    monkeypatch.setattr(cuda, "driver_loadable", lambda: True)  # a driver too old for this CuPy
    assert cuda_unavailable_reason() == (
        "CuPy cannot talk to the CUDA driver: CUDARuntimeError: cudaErrorInsufficientDriver: CUDA "
        "driver version is insufficient for CUDA runtime version")


def test_reason_driver_without_device(monkeypatch):
    _fake_cupy(monkeypatch, devices=NO_DEVICE)
    monkeypatch.setattr(cuda, "driver_loadable", lambda: True)
    reason = cuda_unavailable_reason()
    assert reason.startswith("no CUDA device found (the NVIDIA driver sees no GPU: "), reason


def test_reason_names_missing_nvrtc(monkeypatch):
    _fake_cupy(monkeypatch, nvrtc_error=OSError('Failure finding "libnvrtc.so.12"'))
    reason = cuda_unavailable_reason()
    assert "NVRTC" in reason and "libnvrtc.so.12" in reason and "gpu_bptt[cuda12]" in reason


def test_reason_names_missing_cublas(monkeypatch):
    _fake_cupy(monkeypatch, cublas=False)
    reason = cuda_unavailable_reason()
    assert "cuBLAS" in reason and "gpu_bptt[cuda12]" in reason


def test_auto_warns_when_a_device_is_seen_but_unusable(monkeypatch):
    _fake_cupy(monkeypatch, cublas=False)
    with pytest.warns(RuntimeWarning, match=f"backend 'auto' uses {CPU_CHOICE}: .*cuBLAS"):
        assert get_backend("auto").name == CPU_CHOICE
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per cause: a training loop is not flooded
        assert get_backend("auto").name == CPU_CHOICE


def _headers(root, version):
    root.mkdir(parents=True)
    (root / "cooperative_groups.h").write_text("// fake\n")
    (root / "cuda_runtime_api.h").write_text(f"#define CUDART_VERSION  {version}\n")
    return str(root)


@pytest.fixture
def wheels(tmp_path, monkeypatch):
    """A fake site-packages/nvidia with CUDA 12's runtime wheel and CUDA 13's unified one."""
    nv = tmp_path / "nvidia"
    inc12 = _headers(nv / "cuda_runtime" / "include", 12090)
    inc13 = _headers(nv / "cu13" / "include", 13050)
    monkeypatch.setattr(nvrtc, "_nvidia_roots", lambda: [str(nv)])
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    return {12: inc12, 13: inc13}


def test_include_options_match_nvrtc_major(wheels):
    assert include_options(None, 12) == (f"-I{wheels[12]}",)
    assert include_options(None, 13) == (f"-I{wheels[13]}",)
    assert include_options(None, 11) == ()  # no headers of that version: CuPy's error will say so


def test_include_options_empty_when_cupy_has_the_headers(wheels, tmp_path):
    toolkit = tmp_path / "cuda"
    _headers(toolkit / "include", 12090)
    assert include_options(str(toolkit), 12) == ()
    # a CUDA path without the header does not count
    assert include_options(str(tmp_path / "nowhere"), 12) == (f"-I{wheels[12]}",)


def test_header_major_reads_cudart_version(wheels, tmp_path):
    assert nvrtc.header_major(wheels[12]) == 12
    assert nvrtc.header_major(wheels[13]) == 13
    assert nvrtc.header_major(str(tmp_path)) is None
