"""Why a test skips, as a cause code that tests/conftest.py reads (not the message's wording):
skip(cause, reason) marks the message "[skip: <cause>] <reason>".

In CI ($GPU_BPTT_STRICT_SKIPS=1) a skip passes only with a cause in HARDWARE_CAUSES: the tests
that need a GPU, or a machine without one, or a larger one. Any other skip there is a broken
install and fails; a skip without a cause (plain pytest.skip, importorskip, skipif) too.
Elsewhere every skip is counted by cause in a warning block at the end of the run.
"""
from __future__ import annotations

import importlib
import re

import pytest

GPU = "gpu"                # no usable CUDA device (no GPU, driver or CuPy)
GPU_PRESENT = "gpu-present"  # a CUDA device is present (a missing-GPU path cannot be provoked)
GPU_SIZE = "gpu-size"      # this GPU is too small for the case
EMULATOR = "emulator"      # the kernel emulator cannot run (Linux and g++ with C++20)
SANITIZER = "sanitizer"    # the emulator's bounds-checking build cannot run (libasan)
NVRTC = "nvrtc"            # NVRTC or the CUDA headers are missing
TORCH = "torch"            # PyTorch, or a feature of it, is missing

HARDWARE_CAUSES = (GPU, GPU_PRESENT, GPU_SIZE)
#: what each cause means for the end-of-run summary
CAUSES = {
    GPU: "no usable CUDA device (expected on a machine without a GPU)",
    GPU_PRESENT: "a CUDA device is present (a missing-GPU check cannot run)",
    GPU_SIZE: "the CUDA device is too small for the case",
    EMULATOR: "the kernel emulator cannot run (needs Linux and g++ with C++20): the CUDA kernels "
              "were NOT tested",
    SANITIZER: "the emulator's bounds-checking build cannot run (needs libasan for g++): the "
               "kernels were NOT checked for out-of-bounds accesses",
    NVRTC: "NVRTC or the CUDA headers are missing (pip install \".[test]\"): the kernels were "
           "NOT compiled for a GPU",
    TORCH: "PyTorch (or a feature of it) is missing (pip install \"gpu_bptt[torch]\"): the "
           "PyTorch integration was NOT tested",
}

_CODE = re.compile(r"\[skip: ([a-z-]+)\] ")  # how skip() marks its message with the cause


def skip(cause, reason, allow_module_level=False):
    """Skip the running test (or module) for `cause` (a code above), saying why in `reason`."""
    __tracebackhide__ = True  # pytest reports the caller's line
    if cause not in CAUSES:
        raise ValueError(f"cause: expected one of {tuple(CAUSES)}, got {cause!r}")
    pytest.skip(f"[skip: {cause}] {reason}", allow_module_level=allow_module_level)


def import_or_skip(module, cause, reason):
    """The imported module, else a skip of the test (or of the importing module) for `cause`."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(module)
    except ImportError as e:
        skip(cause, f"{reason} ({e})", allow_module_level=True)


def require_emulator():
    """Skip (cause EMULATOR) where the kernel emulator cannot run."""
    __tracebackhide__ = True
    from gpu_bptt.backends.emulator import emulator_unavailable_reason

    reason = emulator_unavailable_reason()
    if reason:
        skip(EMULATOR, f"the kernel emulator cannot run here: {reason}")


def require_sanitizer():
    """Skip (cause EMULATOR or SANITIZER) where the emulator's bounds-checking build cannot run."""
    __tracebackhide__ = True
    require_emulator()
    from gpu_bptt.emulator import sanitizer_unavailable_reason

    reason = sanitizer_unavailable_reason()
    if reason:
        skip(SANITIZER, f"the emulator's bounds-checking build cannot run here: {reason}")


def message_of(report):
    """The reason a skipped report gives."""
    longrepr = report.longrepr
    message = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return message.removeprefix("Skipped: ")


def cause_of(report):
    """The cause code of a skipped report, or None for a skip raised without one."""
    m = _CODE.match(message_of(report))
    return m.group(1) if m and m.group(1) in CAUSES else None
