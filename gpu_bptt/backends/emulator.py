"""The emulator backend: the cuda backend's own code with NumPy arrays and the kernels executed on
the CPU by gpu_bptt.emulator (docs/architecture.md §3). Slow; it exists to verify the cuda path without a GPU.

Results are NumPy arrays. `order` ("forward", "reverse", "random", or None for the emulator's
default / $GPU_BPTT_EMU_ORDER) is the order in which the threads of a block are scheduled.
"""
from __future__ import annotations

import functools

import numpy as np

from .cuda import CudaBackend
from .kernel_loader import KernelLoader

#: what the emulator backend reports as its multiprocessor count (the "auto" step rule and the
#: persistent grid use it)
EMULATED_MULTIPROCESSORS = 4


def emulator_unavailable_reason():
    """None when the CPU kernel executor can run here, else a sentence saying why not."""
    try:
        from ..emulator import unavailable_reason
    except ImportError as e:
        return f"the kernel emulator cannot be imported: {e}"
    return unavailable_reason()


class EmulatorBackend(CudaBackend):
    name = "emulator"

    def __init__(self, gemm=None, step=None, order=None, persist=None):
        from ..emulator import RawModule

        raw = functools.partial(RawModule, order=order) if order else RawModule
        loader = KernelLoader(raw, device=lambda: "cpu", kind=f"emulator:{order or 'default'}")
        self.order = order
        self._setup(np, loader, gemm, step, persist)

    def persistent_limits(self):
        """The emulated device: EMULATED_MULTIPROCESSORS blocks and the default 48 KB of dynamic
        shared memory per block, so tests exercise small grids and the fit limit."""
        from . import persistent

        return persistent.DeviceLimits(EMULATED_MULTIPROCESSORS, persistent.DEFAULT_SMEM,
                                       name="emulator")

    def persistent_blocks_per_sm(self, fn, smem):
        # every block of a cooperative launch runs at once (up to the emulator's cap of 1024), so
        # the persistent grid's one block per multiprocessor is always co-resident
        return 1

    def asarray(self, a, dtype=None):
        return np.asarray(self.to_numpy(a), dtype=dtype)
