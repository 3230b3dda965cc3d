"""Input checks for public entry points: errors name the argument and say what was expected."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .precision import STORAGE

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: what the functional API's arrays may hold (precision.py; a backend runs those it declares)
STORAGE_NAMES = ", ".join(d.name for d in STORAGE[:-1]) + f" or {STORAGE[-1].name}"


def check_size(name, v) -> int:
    """A size: an int >= 1 (NumPy integers too). A bool, float or string is refused: 2.7 or "4"
    is a mistake to report, not a size to round."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__} {v!r}")
    if v < 1:
        raise ValueError(f"{name}: must be >= 1, got {v}")
    return int(v)


def check_real(name, v, *, low=0.0, high=math.inf, low_closed=False) -> float:
    """A real number in (low, high), or [low, high) with low_closed, as a float. NaN and the
    infinities are refused (no range here includes them)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__} {v!r}")
    v = float(v)
    if not ((low <= v if low_closed else low < v) and v < high):
        where = (f"a finite number {'>=' if low_closed else '>'} {low:g}" if high == math.inf
                 else f"in {'[' if low_closed else '('}{low:g}, {high:g})")
        raise ValueError(f"{name}: must be {where}, got {v}")
    return v


def check_float_dtype(dtype):
    """np.dtype(dtype) if it is float32 or float64; TypeError naming `dtype` otherwise."""
    try:
        dt = np.dtype(dtype) if dtype is not None else None  # np.dtype(None) would be float64
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype if dt is None else dt}")
    return dt


def _dtype_of(a):
    dt = getattr(a, "dtype", None)
    if dt is None:
        raise TypeError(f"expected an array, got {type(a).__name__}")
    return np.dtype(dt)


def common_float_dtype(**arrays):
    """The one storage dtype (precision.STORAGE) all given (non-None) arrays share; TypeError
    naming the odd one out."""
    dtype, first = None, None
    for name, a in arrays.items():
        if a is None:
            continue
        try:
            dt = _dtype_of(a)
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None
        if dt not in STORAGE:
            raise TypeError(f"{name}: expected {STORAGE_NAMES}, got {dt}")
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
        if dt not in STORAGE:
            raise TypeError(f"{name}: expected {np.dtype(dtype)}, got {dt}")
        raise TypeError(f"{name}: dtype {dt} differs from the other arrays' {np.dtype(dtype)}")
    if shape is not None:
        ndim = len(shape)
    got = format_shape(a.shape)
    if ndim is not None and a.ndim != ndim:
        want = f"{ndim} dimension{'' if ndim == 1 else 's'}{' ' + dims if dims else ''}"
        raise ValueError(f"{name}: expected {want}, got shape {got}")
    if shape is not None and any(w is not None and w != g for w, g in zip(shape, a.shape)):
        # Free dimensions are shown by their letter in `dims`: "(I, H) = (4, H)".
        letters = dims.strip("()").replace(" ", "").split(",") if dims else ["*"] * ndim
        want = format_shape([letters[i] if w is None else w for i, w in enumerate(shape)])
        raise ValueError(f"{name}: expected shape {dims + ' = ' if dims else ''}{want}, got {got}")
    out = bk.asarray(a)
    if not out.flags.c_contiguous and not bk.takes_strided:
        out = bk.xp.ascontiguousarray(out)
    return out


def format_shape(entries):
    """A shape as Python writes a tuple, with letters unquoted: (4, H), (6,)."""
    entries = [str(e) for e in entries]
    return f"({', '.join(entries)}{',' if len(entries) == 1 else ''})"


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
