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
    hold None for free dimensions."""
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
        want = dims or f"{ndim} dimensions"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(a.shape)}")
    if shape is not None:
        for want, got in zip(shape, a.shape):
            if want is not None and want != got:
                expect = tuple("*" if s is None else s for s in shape)
                raise ValueError(f"{name}: expected shape {dims or ''} = {expect}, got {tuple(a.shape)}".replace("  ", " "))
    out = bk.asarray(a)
    if not out.flags.c_contiguous and not bk.takes_strided:
        out = bk.xp.ascontiguousarray(out)
    return out


def to_host(a):
    """A NumPy view or copy of `a` (CuPy arrays are copied to the host)."""
    if not isinstance(a, np.ndarray) and hasattr(a, "__cuda_array_interface__"):
        return a.get()
    return np.asarray(a)


def check_lengths(bk, lengths, T, B):
    """lengths: None or (B,) integers in 1..T -> backend int32 array (or None). An array already
    on the backend's device is checked there (one boolean read), not copied to the host and back."""
    if lengths is None:
        return None
    on_device = bk.xp is not np and isinstance(lengths, bk.xp.ndarray)
    a = lengths if on_device else to_host(lengths)
    if np.dtype(a.dtype).kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"lengths: expected shape (B,) = ({B},), got {a.shape}")
    bad = (a < 1) | (a > T)
    if bad.any():
        i = int(bad.argmax())
        raise ValueError(f"lengths: every entry must be in 1..T = 1..{T}; "
                         f"lengths[{i}] = {int(a[i])}")
    return a.astype(np.int32) if on_device else bk.asarray(a.astype(np.int32))
