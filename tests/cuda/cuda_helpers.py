"""Shared pieces of the tests/cuda suite. The executors (numpy, emulator in each thread order,
cuda) and the problem builder are in tests/executors.py."""
from __future__ import annotations

import numpy as np

from tests.skips import require_emulator  # noqa: F401  (shared here)
from tests.tolerances import assert_close  # noqa: F401  (the one tolerance table)


def rng(seed=0):
    return np.random.default_rng(seed)


class Recorder:
    """A kernel loader whose kernels record (name, grid, block) of each launch and run nothing:
    the launch geometry without a device or the emulator."""

    def __init__(self):
        self.launches = []

    def device(self):
        return "cpu"

    def function(self, file, name):
        return lambda grid, block, args, **kw: self.launches.append((name, grid, block))
