"""The CPU BLAS: limit it to n threads for a while, and say which one it is.

An RNN's per-step products (B×H by H×H) are small: a threaded BLAS spends more on waking and
synchronizing its threads than it saves, and when the cores are busy with other work each step
can take 10-20x longer (measured on a shared 2-core machine: 35 ms against 1.8 ms per step).
Uses threadpoolctl when it is installed, else OpenBLAS's own setter through ctypes; where neither
works it does nothing.
"""
from __future__ import annotations

import ctypes
from contextlib import contextmanager

# (getter, setter) pairs exported by the OpenBLAS builds NumPy ships with
_OPENBLAS_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


def _openblas_controls():
    """(get, set) functions of every OpenBLAS loaded in this process (Linux only)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()
                            and line.split()[-1].startswith("/")})
    except OSError:
        return []
    out = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in _OPENBLAS_SYMBOLS:
            if hasattr(lib, get) and hasattr(lib, set_):
                out.append((getattr(lib, get), getattr(lib, set_)))
                break
    return out


@contextmanager
def blas_threads(n):
    """Within the block the BLAS uses at most n threads (n None or 0: leave it alone)."""
    if not n:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
        return
    import numpy  # noqa: F401  (loads NumPy's BLAS, so it can be found)

    controls = _openblas_controls()
    before = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(int(n))
    try:
        yield
    finally:
        for (_, set_), k in zip(controls, before):
            set_(int(k))


def blas_summary() -> str:
    """The BLAS NumPy was built with and, with threadpoolctl, the ones loaded and their threads
    (for `gpu-bptt info` and the benchmark's record of the machine)."""
    import numpy as np

    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        text = "unknown (NumPy too old to report it)"
    try:
        from threadpoolctl import threadpool_info

        pools = [f"{p.get('internal_api')} ({p.get('num_threads')} threads)" for p in threadpool_info()
                 if p.get("user_api") == "blas"]
        if pools:
            text += "; runtime: " + ", ".join(pools)
    except ImportError:
        pass
    return text
