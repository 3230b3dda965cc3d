"""Bad input raises ValueError/TypeError naming the argument."""
import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends import BackendUnavailable

from .executors import elman_problem as random_problem
from .skips import GPU_PRESENT, skip


def fwd(p, **kw):
    args = dict(x=p["x"], W=p["W"], V=p["V"], b=p["b"], h0=p["h0"])
    args.update(kw)
    lengths = args.pop("lengths", p["lengths"])
    x, W, V, b, h0 = (args.pop(k) for k in ("x", "W", "V", "b", "h0"))
    return gpu_bptt.elman_forward(x, W, V, b, h0, lengths=lengths, **args)


@pytest.fixture
def p():
    return random_problem(5, 3, 4, 6, dtype=np.float32)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(x=np.zeros((5, 3), np.float32)), ValueError, r"^x: expected 3 dimensions \(T, B, I\), got shape \(5, 3\)$"),
    (dict(x=np.zeros((0, 3, 4), np.float32)), ValueError, r"^x: .*T, B, I >= 1"),
    (dict(x=np.zeros((5, 0, 4), np.float32)), ValueError, r"^x: .*T, B, I >= 1"),
    (dict(W=np.zeros((3, 6), np.float32)), ValueError, r"^W: expected shape \(I, H\) = \(4, H\), got \(3, 6\)$"),
    (dict(W=np.zeros(4, np.float32)), ValueError, r"^W: expected 2 dimensions \(I, H\), got shape \(4,\)$"),
    (dict(V=np.zeros((6, 5), np.float32)), ValueError, r"^V: expected shape \(H, H\) = \(6, 6\), got \(6, 5\)$"),
    (dict(b=np.zeros(5, np.float32)), ValueError, r"^b: expected shape \(H,\) = \(6,\), got \(5,\)$"),
    (dict(h0=np.zeros((2, 6), np.float32)), ValueError, r"^h0: expected shape \(B, H\)"),
    (dict(x=np.zeros((5, 3, 4), np.int64)), TypeError, r"^x: expected float32, float64, bfloat16 or float16, got int64"),
    (dict(V=np.zeros((6, 6), np.float64)), TypeError, r"^V: dtype float64 differs from x's float32"),
    (dict(b=np.zeros(6, np.float16)), TypeError, r"^b: dtype float16 differs from x's float32"),
    (dict(W=[[1.0]]), TypeError, r"^W: expected an array"),
    (dict(lengths=np.array([1, 2])), ValueError, r"^lengths: expected shape \(B,\)"),
    (dict(lengths=np.array([1, 0, 3])), ValueError, r"^lengths: every entry must be in 1..T = 1..5; lengths\[1\] = 0"),
    (dict(lengths=np.array([1, 6, 3])), ValueError, r"^lengths: .*lengths\[1\] = 6"),
    (dict(lengths=np.array([1.0, 2.0, 3.0])), TypeError, r"^lengths: expected integers"),
    (dict(activation="softplus"), ValueError, r"^activation: expected one of"),
    (dict(algo="fast"), ValueError, r"^algo: expected one of"),
    (dict(algo="persistent"), ValueError, r"^algo: 'persistent' is not supported by the (numpy|cpu) backend"),
    (dict(backend="tpu"), ValueError, r"^backend: unknown 'tpu'"),
])
def test_forward_rejects(p, kw, exc, match):
    with pytest.raises(exc, match=match):
        fwd(p, **kw)


def test_backward_rejects(p):
    out = fwd(p)
    with pytest.raises(ValueError, match=r"^dh: expected shape \(T, B, H\)"):
        gpu_bptt.elman_backward(p["dh"][:, :2], out.cache)
    with pytest.raises(TypeError, match=r"^dh: dtype float64 differs"):
        gpu_bptt.elman_backward(p["dh"].astype(np.float64), out.cache)
    with pytest.raises(ValueError, match=r"^dh_last: expected shape \(B, H\)"):
        gpu_bptt.elman_backward(None, out.cache, dh_last=p["dh_last"][:1])
    with pytest.raises(ValueError, match=r"^dh, dh_last: at least one"):
        gpu_bptt.elman_backward(None, out.cache)
    with pytest.raises(TypeError, match=r"^cache: expected the ElmanCache"):
        gpu_bptt.elman_backward(p["dh"], {"h": out.h})


@pytest.mark.parametrize("change, exc, match", [
    (dict(algo="bogus"), ValueError, r"^algo: expected the algorithm the forward ran, one of \('step', 'persistent'\), got 'bogus'$"),
    (dict(algo="auto"), ValueError, r"^algo: expected the algorithm the forward ran"),
    (dict(algo="persistent"), ValueError, r"^algo: 'persistent' is not supported by the (numpy|cpu) backend"),
    (dict(activation="softplus"), ValueError, r"^activation: expected one of"),
    (dict(h=np.zeros((5, 3), np.float32)), ValueError, r"^h: expected 3 dimensions \(T, B, H\), got shape \(5, 3\)$"),
    (dict(W=np.zeros((3, 6), np.float32)), ValueError, r"^W: expected shape \(I, H\) = \(4, 6\), got \(3, 6\)$"),
])
def test_cache_from_arrays_rejects(p, change, exc, match):
    cache = fwd(p).cache
    arrays, meta = dict(cache.arrays()), cache.meta()
    for k, v in change.items():
        (arrays if k in arrays else meta)[k] = v
    with pytest.raises(exc, match=match):
        gpu_bptt.ElmanCache.from_arrays(arrays, **meta)


def test_unavailable_backend_says_why(monkeypatch):
    reasons = gpu_bptt.available_backends()
    assert reasons["numpy"] is None
    if reasons["cuda"] is None:
        skip(GPU_PRESENT, "a CUDA device is present: the missing-GPU error cannot be provoked here")
    with pytest.raises(BackendUnavailable, match=r"backend 'cuda' is unavailable: .*(CuPy|device|driver)"):
        gpu_bptt.get_backend("cuda")


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv("GPU_BPTT_BACKEND", "numpy")
    assert gpu_bptt.get_backend().name == "numpy"
    monkeypatch.setenv("GPU_BPTT_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="backend: unknown 'nonsense'"):
        gpu_bptt.get_backend()


def test_auto_picks_cuda_only_when_usable():
    usable = gpu_bptt.available_backends()
    expected = "cuda" if usable["cuda"] is None else "cpu" if usable["cpu"] is None else "numpy"
    assert gpu_bptt.get_backend("auto").name == expected


def test_import_does_not_import_cupy():
    import subprocess
    import sys

    code = "import sys, gpu_bptt, gpu_bptt.nn; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
