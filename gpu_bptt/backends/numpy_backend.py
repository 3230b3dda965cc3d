"""The NumPy backend: the reference every kernel is checked against.

A plain time loop with only the recurrence inside it (DESIGN §4). `elman_fwd_step` and
`elman_bwd_step` are the NumPy twins of the CUDA step kernels of the same names.
"""
from __future__ import annotations

import numpy as np

from .. import activations
from .base import Backend, activation_derivative, step_mask


def elman_fwd_step(p_t, h_prev, V, activation, out=None):
    """h[t] = f(p[t] + h[t-1] @ V).  p_t, h_prev: (B, H); V: (H, H). Returns (B, H).

    `out` may alias `p_t` (the sequence driver writes h over p in place)."""
    acc = np.matmul(h_prev, V)
    acc += p_t
    return activations.apply(np, activation, acc, out=out)


def elman_bwd_step(dh_t, du_next, VT, fprime_t, out=None):
    """du[t] = (dh[t] + du[t+1] @ V.T) * f'(u[t]).  All (B, H) but VT (H, H); du_next may be None."""
    if du_next is None:
        acc = dh_t.copy()
    else:
        acc = np.matmul(du_next, VT)
        acc += dh_t
    return np.multiply(acc, fprime_t, out=out)


class NumpyBackend(Backend):
    name = "numpy"
    algos = ("auto", "step")

    def __init__(self):
        super().__init__(np)

    def asarray(self, a, dtype=None):
        return np.asarray(self.to_numpy(a), dtype=dtype)

    def elman_fwd_seq(self, p, V, h0, activation, lengths, algo):
        T = p.shape[0]
        mask = step_mask(np, lengths, T, p.dtype)
        h = p  # h[t] overwrites p[t] once it is consumed
        h_prev = h0
        for t in range(T):
            elman_fwd_step(p[t], h_prev, V, activation, out=h[t])
            if mask is not None:
                h[t] *= mask[t]
            h_prev = h[t]
        return h

    def elman_bwd_seq(self, dh, dh_last, h, V, activation, lengths, algo):
        T, B, H = h.shape
        mask = step_mask(np, lengths, T, h.dtype)
        fprime = activation_derivative(np, activation, h, mask)  # all T at once, outside the loop
        du = np.zeros_like(h) if dh is None else dh.copy()
        if dh_last is not None:
            last = (lengths - 1) if lengths is not None else np.full(B, T - 1)
            du[last, np.arange(B)] += dh_last
        VT = np.ascontiguousarray(V.T)
        du_next = None
        for t in range(T - 1, -1, -1):
            elman_bwd_step(du[t], du_next, VT, fprime[t], out=du[t])
            du_next = du[t]
        return du
