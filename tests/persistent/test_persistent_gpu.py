"""The persistent kernels on a real device (pytest -m gpu): against the numpy reference and the
step kernels, bit-identical across runs, the H limit as an error. Skipped, with the reason, where
CuPy or a device is missing."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends.cuda import cuda_unavailable_reason
from tests.skips import GPU, GPU_SIZE, skip
from tests.tolerances import assert_close

pytestmark = pytest.mark.gpu

# (T, B, I, H, activation, lengths?, dtype)
CASES = [
    (64, 8, 64, 1024, "tanh", True, np.float32),
    (33, 3, 16, 257, "relu", True, np.float32),
    (17, 20, 8, 130, "sigmoid", False, np.float64),
    (5, 1, 4, 2000, "identity", True, np.float32),
]


@pytest.fixture(scope="module", params=("v1", "v2"))
def cuda(request):
    """The cuda backend with each persistent kernel version."""
    reason = cuda_unavailable_reason()
    if reason:
        skip(GPU, f"no CUDA device: {reason}")
    from gpu_bptt.backends.cuda import CudaBackend

    return CudaBackend(persist=request.param)


def _problem(T, B, I, H, with_lengths, dtype, seed=0):
    r = np.random.default_rng(seed)
    mk = lambda *s, scale=0.5: (r.standard_normal(s) * scale).astype(dtype)
    lengths = r.integers(1, T + 1, size=B).astype(np.int32) if with_lengths else None
    args = dict(x=mk(T, B, I), W=mk(I, H, scale=1 / np.sqrt(I)), V=mk(H, H, scale=0.9 / np.sqrt(H)),
                b=mk(H), h0=mk(B, H), lengths=lengths)
    return args, mk(T, B, H), mk(B, H)


def _run(backend, algo, args, act, dh, dh_last):
    out = gpu_bptt.elman_forward(**args, activation=act, backend=backend, algo=algo)
    return out, gpu_bptt.elman_backward(dh, out.cache, dh_last=dh_last)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_persistent_matches_numpy_and_step_on_device(cuda, case):
    import cupy

    T, B, I, H, act, with_lengths, dtype = case
    limits = cuda.persistent_limits()
    from gpu_bptt.backends.cuda import persistent

    if H > persistent.max_hidden(limits, B, dtype, cuda.persist):
        skip(GPU_SIZE, f"H={H} does not fit this device's shared memory ({limits})")
    args, dh, dh_last = _problem(T, B, I, H, with_lengths, dtype)
    ref_out, ref_g = _run("numpy", "step", args, act, dh, dh_last)
    out, g = _run(cuda, "persistent", args, act, dh, dh_last)
    step_out, step_g = _run(cuda, "step", args, act, dh, dh_last)
    assert out.cache.algo == "persistent"
    # Long float32 recurrences: rounding grows with T, as for the step kernels.
    tol = dict(atol=1e-4, rtol=1e-3) if dtype == np.float32 and T > 32 else {}
    for name in ("h", "h_last"):
        assert_close(name, cupy.asnumpy(getattr(out, name)), getattr(ref_out, name), dtype, **tol)
        assert_close(name + " vs step", cupy.asnumpy(getattr(out, name)),
                     cupy.asnumpy(getattr(step_out, name)), dtype, **tol)
    for name in ("dx", "dW", "dV", "db", "dh0"):
        assert_close(name, cupy.asnumpy(getattr(g, name)), getattr(ref_g, name), dtype, **tol)
        assert_close(name + " vs step", cupy.asnumpy(getattr(g, name)),
                     cupy.asnumpy(getattr(step_g, name)), dtype, **tol)


def test_bit_identical_gradients_across_runs(cuda):
    import cupy

    args, dh, dh_last = _problem(32, 4, 16, 300, True, np.float32, seed=1)
    g1 = _run(cuda, "persistent", args, "tanh", dh, dh_last)[1]
    g2 = _run(cuda, "persistent", args, "tanh", dh, dh_last)[1]
    for name in ("dx", "dW", "dV", "db", "dh0"):
        assert cupy.array_equal(getattr(g1, name), getattr(g2, name)), name


def test_too_large_h_is_an_error_naming_the_limit(cuda):
    from gpu_bptt.backends.cuda import persistent

    H = persistent.max_hidden(cuda.persistent_limits(), 8, np.float32, cuda.persist) + 1
    args, _, _ = _problem(1, 8, 1, H, False, np.float32)
    with pytest.raises(ValueError, match="V's slice does not fit on chip"):
        gpu_bptt.elman_forward(**args, backend=cuda, algo="persistent")
    assert gpu_bptt.elman_forward(**args, backend=cuda, algo="auto").cache.algo == "step"
