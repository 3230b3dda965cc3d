"""NumPy's own BLAS, callable from the compiled loops: `matmul(a, b, out)` as `np.dot` does it.

The loops call the very OpenBLAS NumPy ships (its exported `cblas_?gemm`/`cblas_?gemv`), not
Numba's `np.dot` (SciPy's BLAS, another build with its own thread pool): the step's product is
then bit for bit NumPy's (the numpy backend's), 15-25% faster here than SciPy's at the preset
sizes, and held by the same thread limit (gpu_bptt.blas_threads). The symbols are registered
with LLVM by name before any loop is compiled or loaded, so the loops stay cacheable.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

#: (symbol prefix, suffix, integer type) of the CBLAS builds NumPy's wheels ship, most likely first
_FLAVOURS = (("scipy_cblas_", "64_", ctypes.c_int64), ("scipy_cblas_", "", ctypes.c_int32),
             ("cblas_", "64_", ctypes.c_int64), ("cblas_", "", ctypes.c_int32))
#: CBLAS enums
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _libraries():
    """The BLAS libraries shipped inside NumPy's wheel (numpy.libs, numpy/.dylibs)."""
    root = Path(np.__file__).resolve().parent
    found = []
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if "blas" in p.name.lower())
    return found


def find():
    """(library path, prefix, suffix, 64-bit ints) of NumPy's CBLAS, or a str saying why none."""
    for path in _libraries():
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        for prefix, suffix, integer in _FLAVOURS:
            if all(hasattr(lib, f"{prefix}{k}{suffix}") for k in ("sgemm", "dgemm", "sgemv",
                                                                    "dgemv")):
                return lib, prefix, suffix, integer is ctypes.c_int64
    return ("NumPy's BLAS exports no CBLAS gemm the compiled loops can call (NumPy "
            f"{np.__version__} wheels on Linux and Windows ship OpenBLAS with it)")


def register():
    """Give LLVM the names gpu_bptt_{s,d}{gemm,gemv} for NumPy's functions; returns whether its
    integers are 64-bit. Call before compiling or loading a loop."""
    import llvmlite.binding as llvm

    lib, prefix, suffix, ilp64 = find()
    for k in ("sgemm", "dgemm", "sgemv", "dgemv"):
        fn = getattr(lib, f"{prefix}{k}{suffix}")
        llvm.add_symbol(f"gpu_bptt_{k}", ctypes.cast(fn, ctypes.c_void_p).value)
    return ilp64
