"""Shared helpers of the emulator tests."""
import os

from gpu_bptt.emulator import RawModule
from tests.executors import ORDERS  # noqa: F401  (the emulator's own table, shared here)

KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
#: the project's kernels/ (for test kernels that include its headers, e.g. mma.cuh)
KERNELS_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "kernels")
SEED = 1234


def kernel_path(name):
    return os.path.join(KERNELS, name)


_modules = {}


def module(name, **kw):
    """One RawModule per (file, options) for the whole session (the .so is cached on disk too)."""
    key = (name, tuple(sorted(kw.items())))
    if key not in _modules:
        _modules[key] = RawModule(path=kernel_path(name), **kw)
    return _modules[key]
