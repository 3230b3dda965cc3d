"""Each kernel against its NumPy twin at shapes that are not multiples of the tiles, on each kernel
executor (tests/executors.py): the emulator in all four thread orders, one of them in the
bounds-checking build, and a CUDA device."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_bptt import activations
from gpu_bptt.backends.cuda import registry
from gpu_bptt.backends.numpy_backend import elman_bwd_step, elman_fwd_step
from gpu_bptt.validate import to_host
from tests.executors import CUDA, KERNEL_RUNS
from tests.tolerances import assert_close

pytestmark = pytest.mark.executors(*KERNEL_RUNS, CUDA)
DTYPES = (np.float32, np.float64)

ACTS = activations.ACTIVATIONS
# (B, H): one example; H not a multiple of any tile; several tiles in both dimensions for v3
STEP_SHAPES = [(1, 37), (5, 37), (70, 67)]


def _case(B, H, T, dtype, seed):
    r = np.random.default_rng(seed)
    lengths = r.integers(1, T + 1, size=B).astype(np.int32)
    lengths[0] = T
    mk = lambda *s: (r.standard_normal(s) * 0.5).astype(dtype)
    return r, lengths, mk


@pytest.mark.parametrize("version", tuple(registry.STEP))  # a new version is tested as it lands
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,H", STEP_SHAPES)
def test_fwd_step(executor, backend, version, dtype, B, H):
    T = 3
    dev = executor.asarray
    _, lengths, mk = _case(B, H, T, dtype, seed=B * H)
    p, h0, V = mk(T, B, H), mk(B, H), mk(H, H) / float(np.sqrt(H))
    for t, act in ((0, ACTS[0]), (T - 1, ACTS[B % 4]), (1, ACTS[(B + 1) % 4])):
        h = p.copy()
        h[:t] = mk(t, B, H)  # earlier rows hold h[t' < t]
        prev = h0 if t == 0 else h[t - 1]
        ref = elman_fwd_step(p[t], prev, V, act) * (t < lengths)[:, None]
        before = h.copy()
        h_dev = dev(h)
        backend.kernels.elman_fwd_step(h_dev, dev(h0), dev(V), dev(lengths), t, act, version)
        h = to_host(h_dev)
        assert_close(f"h[{t}] ({act})", h[t], ref)
        assert np.array_equal(np.delete(h, t, 0), np.delete(before, t, 0)), "other rows changed"


@pytest.mark.parametrize("version", tuple(registry.STEP))  # a new version is tested as it lands
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,H", STEP_SHAPES)
def test_bwd_step(executor, backend, version, dtype, B, H):
    T = 3
    dev = executor.asarray
    _, lengths, mk = _case(B, H, T, dtype, seed=7 + B * H)
    V = mk(H, H) / float(np.sqrt(H))
    VT = np.ascontiguousarray(V.T)
    h = np.tanh(mk(T, B, H)) * (np.arange(T)[:, None] < lengths)[:, :, None]
    dh, dh_last = mk(T, B, H), mk(B, H)
    cases = [(T - 1, True, True), (1, True, False), (0, False, True)]
    for i, (t, with_dh, with_last) in enumerate(cases):
        act = ACTS[(i + B) % 4]
        if act == "sigmoid":
            h = 1 / (1 + np.exp(-h))
        du = np.full((T, B, H), np.nan, dtype=dtype)
        du[t + 1:] = mk(T - t - 1, B, H) * (np.arange(t + 1, T)[:, None] < lengths)[:, :, None]
        g = dh[t].copy() if with_dh else np.zeros((B, H), dtype)
        if with_last:
            g[lengths - 1 == t] += dh_last[lengths - 1 == t]
        valid = (t < lengths)[:, None]
        fprime = activations.derivative_from_output(np, act, h[t]) * valid
        ref = elman_bwd_step(g, du[t + 1] if t + 1 < T else None, VT, fprime)
        du_dev = dev(du)
        backend.kernels.elman_bwd_step(du_dev, dev(dh) if with_dh else None,
                                       dev(dh_last) if with_last else None,
                                       dev(h), dev(VT), dev(lengths), t, act, version)
        du = to_host(du_dev)
        assert_close(f"du[{t}] ({act}, dh={with_dh}, dh_last={with_last})", du[t], ref)
        assert np.isnan(du[:t]).all(), "rows before t must not be written"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
def test_gemm(executor, backend, dtype, ta, tb):
    dev = executor.asarray
    r = np.random.default_rng(3)
    M, N, K = 70, 67, 33
    A = r.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = r.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    bias = r.standard_normal(N).astype(dtype)
    ref = (A.T if ta else A) @ (B.T if tb else B)
    A, B = dev(A), dev(B)
    out = backend.kernels.gemm(A, B, trans_a=ta, trans_b=tb)
    assert_close("gemm", out, ref)
    out = backend.kernels.gemm(A, B, trans_a=ta, trans_b=tb, bias=dev(bias))
    assert_close("gemm + bias", out, ref + bias)
    backend.kernels.gemm(A, B, trans_a=ta, trans_b=tb, out=out, accumulate=True)
    assert_close("gemm accumulate", out, 2 * ref + bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("R,N,chunk", [(1, 37, None), (7, 70, None), (300, 33, 64), (33, 5, 4)])
def test_column_sum(executor, backend, dtype, R, N, chunk):
    x = np.random.default_rng(R).standard_normal((R, N)).astype(dtype)
    got = backend.kernels.column_sum(executor.asarray(x), rows_per_chunk=chunk)
    assert_close("column sum", got, x.astype(np.float64).sum(axis=0).astype(dtype), dtype)
    again = backend.kernels.column_sum(executor.asarray(x), rows_per_chunk=chunk)
    assert np.array_equal(to_host(got), to_host(again)), \
        "column sum is not bit-identical across runs"


@pytest.mark.executors("emulator-forward")
def test_launchers_name_the_bad_argument(backend):
    k = backend.kernels
    T, B, H = 2, 3, 4
    h = np.zeros((T, B, H), np.float32)
    h0 = np.zeros((B, H), np.float32)
    V = np.zeros((H, H), np.float32)
    lengths = np.full(B, T, np.int32)
    with pytest.raises(TypeError, match="V: expected dtype float32"):
        k.elman_fwd_step(h, h0, V.astype(np.float64), lengths, 0, "tanh")
    with pytest.raises(ValueError, match=r"h0: expected shape \(3, 4\)"):
        k.elman_fwd_step(h, h0[:2], V, lengths, 0, "tanh")
    with pytest.raises(ValueError, match="V: must be C-contiguous"):
        k.elman_fwd_step(h, h0, np.asfortranarray(V + np.eye(H, dtype=np.float32)), lengths, 0, "tanh")
    with pytest.raises(TypeError, match="lengths: expected dtype int32"):
        k.elman_fwd_step(h, h0, V, lengths.astype(np.int64), 0, "tanh")
    with pytest.raises(ValueError, match="t: expected"):
        k.elman_fwd_step(h, h0, V, lengths, 2, "tanh")
    with pytest.raises(ValueError, match="version"):
        k.elman_fwd_step(h, h0, V, lengths, 0, "tanh", "v9")
    with pytest.raises(ValueError, match="dh_last: expected shape"):
        k.elman_bwd_step(h.copy(), None, h0[:1], h, V, lengths, 0, "tanh")
    with pytest.raises(ValueError, match="b: inner dimension"):
        k.gemm(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="trans_a, trans_b"):
        k.gemm(np.zeros((3, 3), np.float32), np.zeros((3, 3), np.float32), trans_a=True, trans_b=True)
    with pytest.raises(TypeError, match="dtype"):
        k.column_sum(np.zeros((3, 3), np.float16))


@pytest.mark.executors(CUDA)
def test_gemm_and_column_sum_at_device_sizes(executor, backend):
    """N = 129 columns and 5000 rows to sum (the emulator covers the tile edges above)."""
    dev = executor.asarray
    r = np.random.default_rng(9)
    for dtype in DTYPES:
        M, N, K = 70, 129, 33
        for ta, tb in [(False, False), (True, False), (False, True)]:
            a = r.standard_normal((K, M) if ta else (M, K)).astype(dtype)
            b = r.standard_normal((N, K) if tb else (K, N)).astype(dtype)
            ref = (a.T if ta else a) @ (b.T if tb else b)
            got = backend.kernels.gemm(dev(a), dev(b), trans_a=ta, trans_b=tb)
            assert_close(f"gemm ta={ta} tb={tb}", got, ref)
        x = r.standard_normal((5000, 37)).astype(dtype)
        assert_close("column sum", backend.kernels.column_sum(dev(x)), x.sum(0))
