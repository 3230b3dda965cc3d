"""The cuda backend: CuPy arrays, raw CUDA kernels from kernels/ (DESIGN §2).

Availability is probed without compiling anything; CuPy is imported only here.
"""
from __future__ import annotations


def cuda_unavailable_reason():
    """None when CuPy imports and sees a usable device, else a sentence saying what is missing."""
    try:
        import cupy
    except ImportError as e:
        return (f"CuPy is not installed ({e}); install gpu_bptt[cuda12] or gpu_bptt[cuda13]")
    except Exception as e:  # a broken CuPy install (e.g. missing CUDA libraries)
        return f"CuPy failed to import: {type(e).__name__}: {e}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, or a driver too old for this CuPy build
        return f"CuPy cannot talk to the CUDA driver: {type(e).__name__}: {e}"
    if n == 0:
        return "CuPy sees no CUDA device"
    return None


class CudaBackend:  # replaced by the kernel-backed implementation (issue 4)
    def __init__(self):
        raise NotImplementedError("the cuda backend's kernels are not built yet")
