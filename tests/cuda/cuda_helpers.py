"""Shared pieces of the tests/cuda suite: dtypes, thread orders, emulator backends."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.tolerances import assert_close  # noqa: F401  (the one tolerance table)

DTYPES = (np.float32, np.float64)
ORDERS = ("forward", "reverse", "random", "warps")


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
