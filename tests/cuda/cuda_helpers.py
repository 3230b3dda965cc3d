"""Shared pieces of the tests/cuda suite: dtypes, thread orders, emulator backends."""
from __future__ import annotations

import functools

import numpy as np

from tests.skips import require_emulator, require_sanitizer  # noqa: F401  (shared here)
from tests.tolerances import assert_close  # noqa: F401  (the one tolerance table)

DTYPES = (np.float32, np.float64)
ORDERS = ("forward", "reverse", "random", "warps")
#: The kernel tests' runs: each kernel in every thread order, and the "reverse" run in the
#: bounds-checking build, so every kernel also runs under the sanitizer (at non-tile-multiple
#: shapes) without a fifth run; that build is slower to compile and to run, so not all four.
KERNEL_RUNS = ("forward", "reverse+sanitize", "random", "warps")


@functools.lru_cache(maxsize=None)
def emulator(order, gemm="cublas", step="v2"):
    """An EmulatorBackend (cached per options; compiled modules are shared by the loader).
    `order` is a thread order, or one followed by "+sanitize" (see KERNEL_RUNS)."""
    require_emulator()
    from gpu_bptt.backends.emulator import EmulatorBackend

    order, _, sanitize = order.partition("+")
    if sanitize:
        require_sanitizer()
    return EmulatorBackend(gemm=gemm, step=step, order=order, sanitize=bool(sanitize) or None)


def rng(seed=0):
    return np.random.default_rng(seed)
