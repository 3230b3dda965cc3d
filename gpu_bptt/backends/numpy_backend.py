"""The NumPy backend: the reference every kernel is checked against.

A plain time loop with only the recurrence inside it (docs/architecture.md §4): the loop, shared by
every cell, is time_loop.py; a cell adds its steps here. `elman_fwd_step` and `elman_bwd_step` are
the NumPy twins of the CUDA step kernels of the same names.

Speed notes (it is also the CPU backend users run): each step writes into buffers allocated once
per call (`out=`), because a fresh multi-megabyte temporary costs more in page faults than the
arithmetic on it; f'(u) for all T is computed once, before the loop, into the array that then
receives du, so the backward holds one (T, B, H) work array and never copies dh.
"""
from __future__ import annotations

import zlib

import numpy as np

from .. import activations
from .base import Backend
from .time_loop import (flipped_forward_steps, flipped_reverse_steps, forward_steps,
                        reverse_steps, valid_steps)


def elman_fwd_step(p_t, h_prev, V, activation, out=None, acc=None):
    """h[t] = f(p[t] + h[t-1] @ V).  p_t, h_prev: (B, H); V: (H, H). Returns (B, H).

    `out` may alias `p_t` (the sequence driver writes h over p in place); `acc` is an optional
    (B, H) scratch buffer that must alias neither."""
    acc = np.dot(h_prev, V, out=acc)
    acc += p_t
    return activations.apply(np, activation, acc, out=out)


def elman_bwd_step(dh_t, du_next, VT, fprime_t, out=None, acc=None):
    """du[t] = (dh[t] + du[t+1] @ V.T) * f'(u[t]).  All (B, H) but VT (H, H); dh_t and du_next may
    be None (zeros). `out` may alias `fprime_t`; `acc` is an optional (B, H) scratch buffer."""
    if du_next is None:
        if dh_t is None:
            return np.multiply(fprime_t, 0, out=out)
        return np.multiply(dh_t, fprime_t, out=out)
    acc = np.dot(du_next, VT, out=acc)
    if dh_t is not None:
        acc += dh_t
    return np.multiply(acc, fprime_t, out=out)


class NumpyBackend(Backend):
    name = "numpy"
    algos = ("auto", "step")
    takes_strided = True  # BLAS takes transposed operands as they are: no copy of weight views

    def __init__(self):
        super().__init__(np)

    def asarray(self, a, dtype=None):
        return np.asarray(self.to_numpy(a), dtype=dtype)

    def digest(self, a):
        """CRC-32 of a's bytes (row by row where `a` is a strided view): on the CPU about twice
        as fast as the generic sum; it misses a change with a chance of about 2^-32."""
        if a.flags.c_contiguous:
            return zlib.crc32(a)
        crc = 0
        for row in a:
            crc = zlib.crc32(np.ascontiguousarray(row), crc)
        return crc

    def elman_fwd_seq(self, p, V, h0, activation, lengths, plan):
        T, B, H = p.shape
        h = p  # h[t] overwrites p[t] once it is consumed
        acc = np.empty((B, H), dtype=p.dtype)
        h_prev = h0
        if plan.reverse:
            for at, pad in flipped_forward_steps(T, lengths):
                p_s = p[at]  # a gather (a copy) with lengths, else a view
                h_prev = elman_fwd_step(p_s, h_prev, V, activation, out=p_s, acc=acc)
                if pad is not None:
                    h_prev[pad] = 0
                h[at] = h_prev
            return h
        for t in forward_steps(T, lengths, h):
            h_prev = elman_fwd_step(p[t], h_prev, V, activation, out=h[t], acc=acc)
        return h

    def elman_bwd_seq(self, dh, dh_last, h, V, activation, lengths, plan):
        T, B, H = h.shape
        # du starts as f'(u) (zero at padded steps); step t overwrites du[t] with its gradient.
        du = activations.derivative_from_output(np, activation, h, out=np.empty_like(h))
        valid = valid_steps(np, lengths, T)
        if valid is not None:
            du *= valid[:, :, None]  # f'(u) is finite there: h is exactly 0 at padded steps
        VT = np.ascontiguousarray(V.T)
        acc = np.empty((B, H), dtype=h.dtype)
        if plan.reverse:
            for at, at_next, g in flipped_reverse_steps(T, lengths, dh, dh_last):
                du_s = du[at]
                du[at] = elman_bwd_step(g, None if at_next is None else du[at_next], VT, du_s,
                                        out=du_s, acc=acc)
            return du
        for t, g in reverse_steps(T, lengths, (dh, dh_last)):
            elman_bwd_step(g, du[t + 1] if t + 1 < T else None, VT, du[t], out=du[t], acc=acc)
        return du
