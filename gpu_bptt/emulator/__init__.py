"""The emulator: CUDA kernels from our unchanged .cu sources, run on the CPU (docs/architecture.md §3).

`RawModule` mirrors `cupy.RawModule`: kernels are fetched with `get_function(name)` and launched
as `kernel(grid, block, args, shared_mem=...)` with NumPy arrays (as pointers) and NumPy scalars.
Nothing compiles at import; the first `get_function` builds (or finds in the cache) a shared
library with g++. See docs/emulator.md for what it checks and what it cannot.
"""
from __future__ import annotations

import platform
import sys

from .build import CompileError, cache_dir, check_compiler, compiler
from .module import RawKernel, RawModule
from .native import EmulatorError, KernelFault, LaunchError


def unavailable_reason():
    """None when the emulator can run here (Linux, g++ with C++20), else a sentence saying why."""
    if not sys.platform.startswith("linux"):
        return f"the emulator needs Linux (fibers, ELF thread-locals), not {sys.platform}"
    if platform.machine() not in ("x86_64", "AMD64", "aarch64", "arm64"):
        return f"the emulator is untested on {platform.machine()}"
    reason = check_compiler(compiler())
    if reason:
        return f"the emulator needs g++ with C++20: {reason}"
    return None


def sanitizer_unavailable_reason():
    """None when the bounds-checking build (sanitize=True) can run here, else why not."""
    reason = unavailable_reason()
    if reason:
        return reason
    from .sanitized import asan_runtime

    try:
        asan_runtime()
    except RuntimeError as e:
        return str(e)
    return None


__all__ = ["RawModule", "RawKernel", "unavailable_reason", "sanitizer_unavailable_reason",
           "EmulatorError", "CompileError", "KernelFault", "LaunchError", "cache_dir"]
