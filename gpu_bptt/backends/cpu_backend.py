"""The cpu backend: the numpy backend with its time loops compiled (docs/architecture.md §2).

Everything but the recurrence is the numpy backend's (arrays, digests, the input projection and
the weight gradients by NumPy's BLAS); each cell's `*_fwd_seq` / `*_bwd_seq` is one call into
compiled/loops.py, which runs every step, product and elementwise work alike, with no Python in
between. The numpy backend stays the plain reference the tests compare this one with.

It runs float32 and float64 only (`dtypes`; no TF32): another storage mode asked of it is a
TypeError naming the backend, never a silent change of mode.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import activations
from .compiled import unavailable_reason
from .numpy_backend import NumpyBackend

__all__ = ["CpuBackend", "cpu_unavailable_reason"]


def cpu_unavailable_reason():
    """None when the compiled loops can run here (the `cpu` extra), else why not."""
    return unavailable_reason()


def _c(a):
    """a as a C-contiguous array (no copy when it is one): the loops compile for that layout."""
    return np.ascontiguousarray(a)


def _optional(a, ndim, dtype):
    """(array, given) for an optional argument: an empty array of the call's dtype for None."""
    if a is None:
        return np.empty((0,) * ndim, dtype=dtype), False
    return _c(a), True


def _transposed(V, B):
    """V.T for the backward's product: a view (the BLAS transposes as it reads), or a copy for
    one row (B = 1), which NumPy's gemv, as the reference calls it, reads contiguous."""
    return np.ascontiguousarray(V.T) if B == 1 else _c(V).T


def _lengths(lengths, B, T):
    """lengths as int64, or T for every row when there are none."""
    if lengths is None:
        return np.full(B, T, dtype=np.int64)
    return np.asarray(lengths, dtype=np.int64)


class CpuBackend(NumpyBackend):
    name = "cpu"
    algos = ("auto", "step")
    dtypes = ("float32", "float64")  # the storage dtypes the compiled loops run
    tf32 = False

    def __init__(self):
        super().__init__()
        from .compiled import loops  # imports Numba; each loop compiles on its first call

        self.loops = loops

    def resolve_algo(self, algo, T, B, H, dtype, reverse=False, cell="elman", P=0, tf32=False):
        name = np.dtype(dtype).name
        if name not in self.dtypes:
            raise TypeError(f"dtype: the cpu backend runs {' and '.join(self.dtypes)}, not {name}; "
                            f"use backend='numpy' for it")
        if tf32:
            raise TypeError("allow_tf32: the cpu backend has no TF32 mode; use backend='numpy'")
        plan = super().resolve_algo(algo, T, B, H, dtype, reverse=reverse, cell=cell, P=P)
        return dataclasses.replace(plan, reason="the cpu backend runs the time loop compiled "
                                                "(Numba; the step's product by NumPy's BLAS)")

    def digest(self, a):
        """Backend.digest's weighted word sum, compiled: the forward and backward each take the
        digests of x and h, which by CRC-32 cost ~10% of a forward+backward at I=H=512."""
        return int(self.loops.weighted_sum(_c(a).reshape(-1).view(np.uint32)))

    def elman_fwd_seq(self, p, V, h0, activation, lengths, plan):
        T, B, _ = p.shape
        code = activations.ACTIVATION_CODES[activation]
        return self.loops.elman_fwd(_c(p), _c(V), _c(h0), code, _lengths(lengths, B, T),
                                    plan.reverse)

    def elman_bwd_seq(self, dh, dh_last, h, V, activation, lengths, plan):
        T, B, _ = h.shape
        dh, has_dh = _optional(dh, 3, h.dtype)
        dh_last, has_last = _optional(dh_last, 2, h.dtype)
        code = activations.ACTIVATION_CODES[activation]
        return self.loops.elman_bwd(dh, has_dh, dh_last, has_last, _c(h), _transposed(V, B),
                                    code, _lengths(lengths, B, T), plan.reverse)

    def lstm_fwd_seq(self, p, V, h0, c0, lengths, plan, R=None):
        T, B, _ = p.shape
        R, has_R = _optional(R, 2, p.dtype)
        return self.loops.lstm_fwd(_c(p), _c(V), _c(h0), _c(c0), R, has_R,
                                   _lengths(lengths, B, T), plan.reverse)

    def lstm_bwd_seq(self, dh, dh_last, dc_last, h, c, gates, c0, V, lengths, plan, R=None):
        T, B, _ = c.shape
        dt = c.dtype
        dh, has_dh = _optional(dh, 3, dt)
        dh_last, has_last = _optional(dh_last, 2, dt)
        dc_last, has_dcl = _optional(dc_last, 2, dt)
        R, has_R = _optional(R, 2, dt)
        du, dc0, dhs = self.loops.lstm_bwd(dh, has_dh, dh_last, has_last, dc_last, has_dcl,
                                           _c(h), _c(c), _c(gates), _c(c0), _transposed(V, B),
                                           _c(R.T), has_R, _lengths(lengths, B, T), plan.reverse)
        return du, dc0, dhs if has_R else None

    def gru_fwd_seq(self, p, V, b_h, h0, lengths, plan):
        T, B, _ = p.shape
        b_h, has_bh = _optional(b_h, 1, p.dtype)
        return self.loops.gru_fwd(_c(p), _c(V), b_h, has_bh, _c(h0), _lengths(lengths, B, T),
                                  plan.reverse)

    def gru_bwd_seq(self, dh, dh_last, h, h0, gates, V, lengths, plan):
        T, B, _ = h.shape
        dh, has_dh = _optional(dh, 3, h.dtype)
        dh_last, has_last = _optional(dh_last, 2, h.dtype)
        return self.loops.gru_bwd(dh, has_dh, dh_last, has_last, _c(h), _c(h0), _c(gates),
                                  _transposed(V, B), _lengths(lengths, B, T), plan.reverse)
