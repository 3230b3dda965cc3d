"""The compiled time loops of the cpu backend (loops.py), and whether they can run here.

Nothing here compiles: `unavailable_reason` imports Numba and looks for NumPy's BLAS (blas.py);
`loops` is imported by the cpu backend when it is built.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

#: what the `cpu` extra installs (pyproject.toml)
REQUIRES = ("numba",)
#: the compiled loops: each cell's forward and backward
LOOPS = ("elman_fwd", "elman_bwd", "lstm_fwd", "lstm_bwd", "gru_fwd", "gru_bwd")


@functools.cache
def unavailable_reason():
    """None when Numba imports and NumPy's BLAS can be called, else why not."""
    missing = [m for m in REQUIRES if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed; pip install gpu_bptt[cpu]"
    try:
        import numba  # noqa: F401
    except Exception as e:  # a broken install: say so rather than fail later
        return f"numba cannot be imported: {e}"
    from . import blas

    found = blas.find()
    return found if isinstance(found, str) else None


def describe() -> str:
    """One line for `gpu-bptt info`: Numba's version and how many compiled loops are cached."""
    import numba

    from . import loops

    # Numba's cache: beside loops.py where that is writable, else the user's cache folder
    cache = Path(loops.elman_fwd._cache._cache_path)
    cached = sum(1 for n in LOOPS if any(cache.glob(f"loops.{n}-*.nbi")))
    return (f"Numba {numba.__version__}; loops compiled and cached: {cached} of {len(LOOPS)} "
            f"(in {cache}; one not cached compiles on its first call)")
