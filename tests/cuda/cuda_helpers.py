"""Shared pieces of the tests/cuda suite: tolerances, the closeness check, emulator backends."""
from __future__ import annotations

import functools

import numpy as np
import pytest

# One tolerance table per dtype (DESIGN §4): |x - ref| <= atol + rtol * |ref|.
TOL = {
    np.dtype(np.float32): dict(atol=2e-5, rtol=2e-4),
    np.dtype(np.float64): dict(atol=1e-12, rtol=1e-10),
}
DTYPES = (np.float32, np.float64)
ORDERS = ("forward", "reverse", "random")


def assert_close(name, x, ref, dtype=None):
    """Fail, printing the max abs/rel error, unless x matches ref within the dtype's tolerance."""
    x = np.asarray(x)
    ref = np.asarray(ref)
    assert x.shape == ref.shape, f"{name}: shape {x.shape} != reference {ref.shape}"
    tol = TOL[np.dtype(dtype or ref.dtype)]
    err = np.abs(x.astype(np.float64) - ref.astype(np.float64))
    bound = tol["atol"] + tol["rtol"] * np.abs(ref.astype(np.float64))
    if not np.all(err <= bound):  # NaN in x fails here too
        rel = err / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
        worst = np.unravel_index(np.nanargmax(err - bound), err.shape)
        raise AssertionError(
            f"{name}: {np.sum(~(err <= bound))} of {err.size} entries out of tolerance {tol}; "
            f"max abs error {np.nanmax(err):.3e}, max rel error {np.nanmax(rel):.3e}; "
            f"worst at {worst}: got {x[worst]!r}, expected {ref[worst]!r}")


def require_emulator():
    from gpu_bptt.backends.emulator import emulator_unavailable_reason

    reason = emulator_unavailable_reason()
    if reason:
        pytest.skip(f"the kernel emulator cannot run here: {reason}")


@functools.lru_cache(maxsize=None)
def emulator(order, gemm="cublas", step="v2"):
    """An EmulatorBackend (cached per options; compiled modules are shared by the loader)."""
    require_emulator()
    from gpu_bptt.backends.emulator import EmulatorBackend

    return EmulatorBackend(gemm=gemm, step=step, order=order)


def rng(seed=0):
    return np.random.default_rng(seed)
