"""The emulator backend: the cuda backend's own code with NumPy arrays and the kernels executed on
the CPU by gpu_bptt.emulator (docs/architecture.md §3). Slow; it exists to verify the cuda path without a GPU.

Results are NumPy arrays. Options besides the cuda backend's:
  order: "forward", "reverse", "random", "warps", or None for the emulator's default
      ($GPU_BPTT_EMU_ORDER): the order in which the threads of a block are scheduled.
  sanitize: run every launch in the bounds-checking build (AddressSanitizer + UBSan; about a
      second a launch), or None for $GPU_BPTT_EMU_SANITIZE.
  smem_per_block: the per-block opt-in limit of dynamic shared memory the emulated device reports:
      48 KB by default (small grids, the fit limit at small H), or up to an H100's 227 KB
      (SMEM_H100), so that the persistent launches above 48 KB, which need the kernel attribute
      raised as on a GPU, run too.
"""
from __future__ import annotations

import functools

import numpy as np

from .cuda import CudaBackend, persistent
from .cuda.kernel_loader import KernelLoader

#: what the emulator backend reports as its multiprocessor count (the "auto" step rule and the
#: persistent grid use it)
EMULATED_MULTIPROCESSORS = 4
#: an H100's opt-in limit of dynamic shared memory per block (also the emulator's own ceiling)
SMEM_H100 = persistent.KNOWN_DEVICES["sm_90"].smem_per_block


def emulator_unavailable_reason():
    """None when the CPU kernel executor can run here, else a sentence saying why not."""
    try:
        from ..emulator import unavailable_reason
    except ImportError as e:
        return f"the kernel emulator cannot be imported: {e}"
    return unavailable_reason()


class EmulatorBackend(CudaBackend):
    name = "emulator"

    def __init__(self, gemm=None, step=None, order=None, persist=None, sanitize=None,
                 smem_per_block=persistent.DEFAULT_SMEM):
        from ..emulator import RawModule
        from ..emulator.module import env_flag

        if isinstance(smem_per_block, bool) or not isinstance(smem_per_block, int):
            raise TypeError(f"smem_per_block: expected an int, got {type(smem_per_block).__name__}")
        if not persistent.DEFAULT_SMEM <= smem_per_block <= SMEM_H100:
            raise ValueError(f"smem_per_block: expected {persistent.DEFAULT_SMEM} to {SMEM_H100} "
                             f"bytes, got {smem_per_block}")
        self.sanitize = env_flag(sanitize, "GPU_BPTT_EMU_SANITIZE")
        self.smem_per_block = smem_per_block
        raw = functools.partial(RawModule, order=order, sanitize=self.sanitize)
        kind = f"emulator:{order or 'default'}{':sanitize' * self.sanitize}"
        loader = KernelLoader(raw, device=lambda: "cpu", kind=kind)
        self.order = order
        self._setup(np, loader, gemm, step, persist)

    def persistent_limits(self):
        """The emulated device: EMULATED_MULTIPROCESSORS blocks and `smem_per_block` bytes of
        dynamic shared memory per block (48 KB by default, so tests exercise small grids and the
        fit limit)."""
        return persistent.DeviceLimits(EMULATED_MULTIPROCESSORS, self.smem_per_block,
                                       name="emulator")

    def persistent_blocks_per_sm(self, fn, smem):
        # every block of a cooperative launch runs at once (up to the emulator's cap of 1024);
        # two, as a float32 persistent kernel on an A100 or H100 (at most 128 registers a
        # thread): a bidirectional layer's pair of grids fits one launch
        return 2

    def asarray(self, a, dtype=None):
        return np.asarray(self.to_numpy(a), dtype=dtype)
