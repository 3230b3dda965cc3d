"""The same comparisons on a real device (pytest -m gpu), plus bit-identical gradients across two
runs. Skipped, with the reason, where CuPy or a device is missing."""
from __future__ import annotations

import numpy as np
import pytest

from cuda_helpers import DTYPES, assert_close, rng
import gpu_bptt
from gpu_bptt.backends.cuda import cuda_unavailable_reason
from tests.skips import GPU, skip

pytestmark = pytest.mark.gpu

# (T, B, I, H, activation, lengths?, dtype, gemm, step)
CASES = [
    (1, 1, 3, 5, "tanh", False, np.float64, "cublas", "v2"),
    (7, 5, 4, 37, "relu", True, np.float32, "own", "v1"),
    (33, 3, 6, 20, "sigmoid", True, np.float64, "own", "v2"),
    (33, 70, 40, 130, "identity", True, np.float32, "cublas", "v3"),
    (16, 256, 64, 300, "tanh", True, np.float32, "own", "auto"),
    (16, 96, 64, 200, "tanh", False, np.float64, "cublas", "auto"),
    (9, 70, 40, 130, "sigmoid", True, np.float32, "cublas", "v4"),
    (8, 512, 64, 1024, "tanh", True, np.float32, "cublas", "auto"),  # auto takes v4 here
]


@pytest.fixture(scope="module")
def cuda():
    reason = cuda_unavailable_reason()
    if reason:
        skip(GPU, f"no CUDA device: {reason}")
    from gpu_bptt.backends.cuda import CudaBackend

    return CudaBackend


def _inputs(T, B, I, H, with_lengths, dtype, seed):
    r = rng(seed)
    mk = lambda *s, scale=0.5: (r.standard_normal(s) * scale).astype(dtype)
    lengths = r.integers(1, T + 1, size=B).astype(np.int32) if with_lengths else None
    return (dict(x=mk(T, B, I), W=mk(I, H, scale=1 / np.sqrt(I)), V=mk(H, H, scale=0.9 / np.sqrt(H)),
                 b=mk(H), h0=mk(B, H), lengths=lengths), mk(T, B, H), mk(B, H))


def _run(backend, args, act, dh, dh_last):
    out = gpu_bptt.elman_forward(**args, activation=act, backend=backend)
    return out, gpu_bptt.elman_backward(dh, out.cache, dh_last=dh_last)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_backward_match_numpy_on_device(cuda, case):
    import cupy

    T, B, I, H, act, with_lengths, dtype, gemm, step = case
    bk = cuda(gemm=gemm, step=step)
    args, dh, dh_last = _inputs(T, B, I, H, with_lengths, dtype, seed=T + B + H)
    ref_out, ref_g = _run("numpy", args, act, dh, dh_last)
    out, g = _run(bk, args, act, dh, dh_last)
    assert isinstance(out.h, cupy.ndarray)
    assert_close("h", out.h.get(), ref_out.h)
    for name in ("dx", "dW", "dV", "db", "dh0"):
        assert_close(name, getattr(g, name).get(), getattr(ref_g, name))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gemm", ["cublas", "own"])
def test_gradients_bit_identical_across_runs(cuda, dtype, gemm):
    bk = cuda(gemm=gemm)
    args, dh, dh_last = _inputs(64, 128, 96, 256, True, dtype, seed=5)
    g1 = _run(bk, args, "tanh", dh, dh_last)[1]
    g2 = _run(bk, args, "tanh", dh, dh_last)[1]
    for name in ("dx", "dW", "dV", "db", "dh0"):
        assert np.array_equal(getattr(g1, name).get(), getattr(g2, name).get()), name


def test_kernels_on_device_match_twins(cuda):
    import cupy

    bk = cuda()
    r = rng(9)
    for dtype in DTYPES:
        M, N, K = 70, 129, 33
        for ta, tb in [(False, False), (True, False), (False, True)]:
            a = r.standard_normal((K, M) if ta else (M, K)).astype(dtype)
            b = r.standard_normal((N, K) if tb else (K, N)).astype(dtype)
            ref = (a.T if ta else a) @ (b.T if tb else b)
            got = bk.kernels.gemm(cupy.asarray(a), cupy.asarray(b), trans_a=ta, trans_b=tb)
            assert_close(f"gemm ta={ta} tb={tb}", got.get(), ref)
        x = r.standard_normal((5000, 37)).astype(dtype)
        assert_close("column sum", bk.kernels.column_sum(cupy.asarray(x)).get(), x.sum(0))


def test_device_and_compile_reports(cuda):
    from gpu_bptt.backends.cuda.backend import compile_report, device_report
    from gpu_bptt.backends.cuda.kernel_loader import kernel_files

    rep = device_report()
    for key in ("device", "compute_capability", "cupy", "cuda_runtime", "cuda_driver"):
        assert rep.get(key), key
    assert compile_report(cuda()) == {f: None for f in kernel_files()}


def test_own_gemm_past_65535_row_tiles(cuda):
    """T·B = 4,194,241 rows: more row tiles than grid.y takes; the own GEMM puts them on grid.x."""
    import cupy

    k = cuda(gemm="own").kernels
    r = rng(5)
    a, b = r.standard_normal((65535 * 64 + 1, 2)).astype(np.float32), r.standard_normal((2, 3))
    out = k.gemm(cupy.asarray(a), cupy.asarray(b.astype(np.float32)))
    assert_close("gemm", out.get(), a @ b.astype(np.float32))


def test_lengths_on_the_device_stay_there(cuda, monkeypatch):
    """A CuPy lengths array is checked on the device: never copied to the host (to_host)."""
    import cupy
    from gpu_bptt import validate

    args, dh, _ = _inputs(6, 3, 4, 16, True, np.float32, seed=9)
    ref = gpu_bptt.elman_forward(**args, backend="numpy")
    dev = dict(args, lengths=cupy.asarray(args["lengths"]))

    def no_host_copy(a):
        raise AssertionError("lengths were copied to the host")

    monkeypatch.setattr(validate, "to_host", no_host_copy)
    out = gpu_bptt.elman_forward(**{k: cupy.asarray(v) for k, v in dev.items()}, backend=cuda())
    assert_close("h", out.h.get(), ref.h)
    bad = cupy.asarray(np.array([6, 7, 1], dtype=np.int32))
    with pytest.raises(ValueError, match=r"lengths\[1\] = 7"):
        gpu_bptt.elman_forward(**dict(dev, lengths=bad), backend=cuda())
