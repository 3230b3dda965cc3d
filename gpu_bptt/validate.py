"""Input checks for public entry points: errors name the argument and say what was expected."""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype_of(a):
    dt = getattr(a, "dtype", None)
    if dt is None:
        raise TypeError(f"expected an array, got {type(a).__name__}")
    return np.dtype(dt)


def common_float_dtype(**arrays):
    """The one float dtype all given (non-None) arrays share; TypeError naming the odd one out."""
    dtype, first = None, None
    for name, a in arrays.items():
        if a is None:
            continue
        try:
            dt = _dtype_of(a)
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None
        if dt not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected float32 or float64, got {dt}")
        if dtype is None:
            dtype, first = dt, name
        elif dt != dtype:
            raise TypeError(f"{name}: dtype {dt} differs from {first}'s {dtype}; all arrays must share one dtype")
    return dtype


def check_array(bk, name, a, *, ndim=None, shape=None, dtype=None, dims=None):
    """Validate and return `a` as an array of backend `bk`, C-contiguous unless the backend takes
    strided views (backends only read inputs: the caller's buffer is never written). `shape` may
    hold None for free dimensions; `dims` names them for messages, e.g. "(I, H)"."""
    if a is None:
        raise TypeError(f"{name}: expected an array, got None")
    try:
        dt = _dtype_of(a)
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None
    if dtype is not None and dt != dtype:
        if dt not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected {np.dtype(dtype)}, got {dt}")
        raise TypeError(f"{name}: dtype {dt} differs from the other arrays' {np.dtype(dtype)}")
    if shape is not None:
        ndim = len(shape)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension{'' if ndim == 1 else 's'}{' ' + dims if dims else ''}, "
                         f"got shape {_fmt(a.shape)}")
    if shape is not None and any(w is not None and w != g for w, g in zip(shape, a.shape)):
        # Free dimensions are shown by their letter in `dims`: "(I, H) = (4, H)".
        letters = dims.strip("()").replace(" ", "").split(",") if dims else ["*"] * ndim
        want = _fmt([letters[i] if w is None else w for i, w in enumerate(shape)])
        raise ValueError(f"{name}: expected shape {dims + ' = ' if dims else ''}{want}, got {_fmt(a.shape)}")
    out = bk.asarray(a)
    if not out.flags.c_contiguous and not bk.takes_strided:
        out = bk.xp.ascontiguousarray(out)
    return out


def _fmt(entries):
    """A shape as Python writes a tuple, with letters unquoted: (4, H), (6,)."""
    entries = [str(e) for e in entries]
    return f"({', '.join(entries)}{',' if len(entries) == 1 else ''})"


def to_host(a):
    """A NumPy view or copy of `a` (CuPy arrays are copied to the host)."""
    if not isinstance(a, np.ndarray) and hasattr(a, "__cuda_array_interface__"):
        return a.get()
    return np.asarray(a)


def check_lengths(bk, lengths, T, B):
    """lengths: None or (B,) integers in 1..T -> backend int32 array (or None)."""
    if lengths is None:
        return None
    host = to_host(lengths)
    if host.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {host.dtype}")
    if host.shape != (B,):
        raise ValueError(f"lengths: expected shape (B,) = ({B},), got {host.shape}")
    bad = (host < 1) | (host > T)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"lengths: every entry must be in 1..T = 1..{T}; lengths[{i}] = {host[i]}")
    return bk.asarray(host.astype(np.int32))
