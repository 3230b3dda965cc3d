"""NVRTC and the headers it reads come from one CUDA major: the cuda12 extra beside the test
extra's CUDA 13 installs libnvrtc 12 and 13 and two sets of headers. Fake wheel trees of both
majors, in both install orders, and a fake libnvrtc record which library is loaded and which
include folders a compile passes."""
import ctypes

import pytest

from gpu_bptt import nvrtc


def _file(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _cuda12(root, cccl=False):
    _file(root / "cuda_nvrtc" / "lib" / "libnvrtc.so.12")
    _file(root / "cuda_nvrtc" / "lib" / "libnvrtc.alt.so.12")
    _file(root / "cuda_nvrtc" / "lib" / "libnvrtc-builtins.so.12.9")
    inc = root / "cuda_runtime" / "include"
    _file(inc / "cooperative_groups.h")
    _file(inc / "cuda_runtime_api.h", "#define CUDART_VERSION  12090\n")
    if cccl:  # the nvidia-cuda-cccl-cu12 wheel: CCCL 2.x in a folder of its own
        ci = root / "cuda_cccl" / "include"
        _file(ci / "nv" / "target")
        _file(ci / "cuda" / "std" / "__cccl" / "version.h", "#define CCCL_VERSION 2008002\n")
    return str(inc)


def _cuda13(root, headers=True):
    _file(root / "cu13" / "lib" / "libnvrtc.so.13")
    _file(root / "cu13" / "lib" / "libnvrtc-builtins.so.13.5")
    inc = root / "cu13" / "include"
    if headers:
        _file(inc / "cooperative_groups.h")
        _file(inc / "cuda_runtime_api.h", "#define CUDART_VERSION  13050\n")
        _file(inc / "cccl" / "nv" / "target")
    return str(inc)


class _FakeLib:
    """Enough of libnvrtc for nvrtc.compile_source: every call succeeds; the options of
    nvrtcCompileProgram are recorded."""

    def __init__(self, path):
        self.path, self.options = path, None

    def __getattr__(self, name):
        def call(*args):
            if name == "nvrtcCompileProgram":
                self.options = [args[2][i].decode() for i in range(args[1])]
            if name == "nvrtcVersion":
                major = int(self.path.rsplit(".", 1)[-1])
                args[0]._obj.value, args[1]._obj.value = major, 0
            return 0
        fn = type("Fn", (), {"__call__": staticmethod(call)})()
        setattr(self, name, fn)
        return fn


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Returns load(roots) -> (library path loaded, include folders passed to a compile)."""
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)

    def load(roots):
        monkeypatch.setattr(nvrtc, "_nvidia_roots", lambda: [str(r) for r in roots])
        monkeypatch.setattr(nvrtc, "_lib", None)
        monkeypatch.setattr(nvrtc, "_lib_error", None)
        monkeypatch.setattr(nvrtc, "_includes", [], raising=False)
        loaded = []

        def cdll(path):
            if not path.startswith(str(tmp_path)):
                raise OSError(f"{path}: not in the fake tree")
            loaded.append(_FakeLib(path))
            return loaded[-1]
        monkeypatch.setattr(ctypes, "CDLL", cdll)
        nvrtc.compile_source("__global__ void k() {}")
        lib = loaded[-1]
        return lib.path, [o.split("=", 1)[1] for o in lib.options if o.startswith("--include-path")]
    return load


@pytest.mark.parametrize("order", ["12 then 13", "13 then 12", "one folder"])
def test_newest_complete_pair_wins(fake, tmp_path, order):
    """CUDA 12's wheels bring no CCCL (<nv/target>), CUDA 13's do: NVRTC 13 with its headers."""
    r12, r13 = tmp_path / "a", tmp_path / "b"
    if order == "one folder":
        r13 = r12
    roots = [r12, r13] if order == "12 then 13" else [r13, r12]
    _cuda12(r12)
    inc13 = _cuda13(r13)
    path, incs = fake(sorted(set(roots), key=roots.index))
    assert path.endswith("cu13/lib/libnvrtc.so.13")
    assert incs and all(i.startswith(inc13) for i in incs)


@pytest.mark.parametrize("order", ["12 then 13", "13 then 12"])
def test_older_major_when_the_newer_lacks_headers(fake, tmp_path, order):
    r12, r13 = tmp_path / "a", tmp_path / "b"
    inc12 = _cuda12(r12, cccl=True)
    _cuda13(r13, headers=False)
    path, incs = fake([r12, r13] if order == "12 then 13" else [r13, r12])
    assert path.endswith("cuda_nvrtc/lib/libnvrtc.so.12")
    assert incs == [inc12, str(r12 / "cuda_cccl" / "include")]


def test_both_complete_takes_the_newest(fake, tmp_path):
    _cuda12(tmp_path, cccl=True)
    inc13 = _cuda13(tmp_path)
    path, incs = fake([tmp_path])
    assert path.endswith("libnvrtc.so.13") and incs[0] == inc13


def test_cccl_of_another_major_is_not_paired(fake, tmp_path):
    """A CCCL 3 folder (CUDA 13's) does not complete CUDA 12's headers."""
    _cuda12(tmp_path)
    ci = tmp_path / "cuda_cccl" / "include"
    _file(ci / "nv" / "target")
    _file(ci / "cuda" / "std" / "__cccl" / "version.h", "#define CCCL_VERSION 3005000\n")
    path, incs = fake([tmp_path])
    assert path.endswith("libnvrtc.so.12") and incs == []
    assert "CUDA 12" in nvrtc.headers_unavailable_reason()
