"""Shared pieces of the tests/cuda suite. The executors (numpy, emulator in each thread order,
cuda) and the problem builder are in tests/executors.py."""
from __future__ import annotations

import numpy as np

from tests.skips import require_emulator  # noqa: F401  (shared here)
from tests.tolerances import assert_close  # noqa: F401  (the one tolerance table)


def rng(seed=0):
    return np.random.default_rng(seed)
