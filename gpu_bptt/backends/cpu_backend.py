"""The cpu backend: the numpy backend with its time loops compiled (docs/architecture.md §2).

Everything but the recurrence and the caches' digests is the numpy backend's (arrays, the input
projection and the weight gradients by NumPy's BLAS); each cell's `*_fwd_seq` / `*_bwd_seq` is one call into
compiled/loops.py, which runs every step, product and elementwise work alike, with no Python in
between. The numpy backend stays the plain reference the tests compare this one with.

The batch's rows are independent through the whole recurrence, so the loops run in chunks of
rows, one per thread (`threads`, default one per core), each with its own state and its own
per-step products, with no synchronization between steps; the BLAS is held to one thread
meanwhile. A chunk has at least two rows, so its products are gemm calls as the whole batch's
(tests/test_cpu_backend.py sees the same bits whatever the chunks).

The loops run float32 and float64. The other precision modes (precision.py: bfloat16, float16,
float32 with TF32) run on the numpy reference's loops, the NumpyBackend methods, so the backend
runs every mode numpy does (`dtypes`, `tf32`), and the plan's reason says which loop runs.

The backward methods take the carry of a later segment (du_next, dc_next, dh_next; what
memory="recompute" needs): the loops put it where the whole run's previous step would have
left the state, so recomputation gives the bits of memory="full" here too.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import activations
from ..blas_threads import blas_threads
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


def _lengths(lengths, B, T):
    """lengths as int64, or T for every row when there are none."""
    if lengths is None:
        return np.full(B, T, dtype=np.int64)
    return np.asarray(lengths, dtype=np.int64)


class CpuBackend(NumpyBackend):
    name = "cpu"
    algos = ("auto", "step")
    #: the storage dtypes the compiled loops run (without TF32); the rest run NumPy's loops
    compiled_dtypes = ("float32", "float64")

    def __init__(self, threads=None):
        """threads: how many threads run a time loop's chunks of rows (None: one per core)."""
        super().__init__()
        if threads is None:
            threads = os.cpu_count() or 1
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads: expected a positive integer, got {threads!r}")
        from .compiled import loops  # imports Numba; each loop compiles on its first call

        self.loops, self.threads = loops, threads
        self.pool = ThreadPoolExecutor(threads - 1) if threads > 1 else None

    def resolve_algo(self, algo, T, B, H, dtype, reverse=False, cell="elman", P=0, tf32=False):
        plan = super().resolve_algo(algo, T, B, H, dtype, reverse=reverse, cell=cell, P=P,
                                    tf32=tf32)
        if not self._compiled(plan):
            mode = "float32 with TF32" if plan.tf32 else plan.dtype
            return dataclasses.replace(plan, reason=(
                f"{mode}: the numpy reference loop; the compiled loops run "
                f"{' and '.join(self.compiled_dtypes)} without TF32"))
        chunks = self._chunks(B)
        return dataclasses.replace(plan, reason=(
            f"the cpu backend runs the time loop compiled (Numba; the step's product by NumPy's "
            f"BLAS), the batch in {chunks} chunk{'s' if chunks > 1 else ''} of rows on "
            f"{chunks} thread{'s' if chunks > 1 else ''}"))

    def _compiled(self, plan):
        """Whether the compiled loops run `plan`'s mode (else NumPy's do)."""
        return plan.dtype in self.compiled_dtypes and not plan.tf32

    def digest(self, a):
        """Backend.digest's weighted word sum, compiled: the forward and backward each take the
        digests of x and h, which by CRC-32 cost ~10% of a forward+backward at I=H=512. A 16-bit
        array (maybe an odd number of elements: no 32-bit words) takes numpy's CRC-32."""
        if a.dtype.itemsize == 2:
            return super().digest(a)
        return int(self.loops.weighted_sum(_c(a).reshape(-1).view(np.uint32)))

    def _chunks(self, B):
        """How many chunks of rows: one per thread, at least two rows each (a one-row product
        would be NumPy's gemv, not its gemm)."""
        return max(1, min(self.threads, B // 2))

    def _rows(self, loop, B, *args):
        """loop(*args, b0, b1) for chunks of the batch's rows covering 0..B-1, one per thread."""
        n = self._chunks(B)
        if n == 1:
            loop(*args, 0, B)
            return
        bounds = [B * i // n for i in range(n + 1)]
        with blas_threads(1):  # the chunks are the parallelism: one BLAS thread each
            rest = [self.pool.submit(loop, *args, b0, b1)
                    for b0, b1 in zip(bounds[1:-1], bounds[2:])]
            loop(*args, 0, bounds[1])
            for f in rest:
                f.result()

    def elman_fwd_seq(self, p, V, h0, activation, lengths, plan):
        if not self._compiled(plan):
            return super().elman_fwd_seq(p, V, h0, activation, lengths, plan)
        T, B, _ = p.shape
        h = _c(p)  # written in place
        self._rows(self.loops.elman_fwd, B, h, _c(V), _c(h0),
                   activations.ACTIVATION_CODES[activation], _lengths(lengths, B, T),
                   plan.reverse)
        return h

    def elman_bwd_seq(self, dh, dh_last, h, V, activation, lengths, plan, du_next=None):
        if not self._compiled(plan):
            return super().elman_bwd_seq(dh, dh_last, h, V, activation, lengths, plan,
                                         du_next=du_next)
        T, B, _ = h.shape
        dh, has_dh = _optional(dh, 3, h.dtype)
        dh_last, has_last = _optional(dh_last, 2, h.dtype)
        du_next, has_carry = _optional(du_next, 2, h.dtype)
        du = np.empty_like(h)
        self._rows(self.loops.elman_bwd, B, dh, has_dh, dh_last, has_last, _c(h), _c(V.T),
                   activations.ACTIVATION_CODES[activation], _lengths(lengths, B, T),
                   plan.reverse, du_next, has_carry, du)
        return du

    def lstm_fwd_seq(self, p, V, h0, c0, lengths, plan, R=None):
        if not self._compiled(plan):
            return super().lstm_fwd_seq(p, V, h0, c0, lengths, plan, R)
        T, B, G = p.shape
        gates = _c(p)  # written in place
        R, has_R = _optional(R, 2, p.dtype)
        h = np.empty((T, B, h0.shape[1]), dtype=p.dtype)
        c = np.empty((T, B, G // 4), dtype=p.dtype)
        self._rows(self.loops.lstm_fwd, B, gates, _c(V), _c(h0), _c(c0), R, has_R,
                   _lengths(lengths, B, T), plan.reverse, h, c)
        return h, c, gates

    def lstm_bwd_seq(self, dh, dh_last, dc_last, h, c, gates, c0, V, lengths, plan, R=None,
                     du_next=None, dc_next=None):
        if not self._compiled(plan):
            return super().lstm_bwd_seq(dh, dh_last, dc_last, h, c, gates, c0, V, lengths, plan,
                                        R, du_next=du_next, dc_next=dc_next)
        if (du_next is None) != (dc_next is None):
            raise ValueError("du_next, dc_next: the LSTM's carry is both or neither")
        T, B, H = c.shape
        dt = c.dtype
        dh, has_dh = _optional(dh, 3, dt)
        dh_last, has_last = _optional(dh_last, 2, dt)
        dc_last, has_dcl = _optional(dc_last, 2, dt)
        R, has_R = _optional(R, 2, dt)
        du_next, has_carry = _optional(du_next, 2, dt)
        dc_next, _ = _optional(dc_next, 2, dt)
        du = np.empty((T, B, 4 * H), dtype=dt)
        dc = np.zeros((B, H), dtype=dt)
        dhs = np.empty((T if has_R else 0, B, h.shape[2]), dtype=dt)
        self._rows(self.loops.lstm_bwd, B, dh, has_dh, dh_last, has_last, dc_last, has_dcl,
                   _c(h), _c(c), _c(gates), _c(c0), _c(V.T), _c(R.T), has_R,
                   _lengths(lengths, B, T), plan.reverse, du_next, dc_next, has_carry, du, dc,
                   dhs)
        return du, dc, dhs if has_R else None

    def gru_fwd_seq(self, p, V, b_h, h0, lengths, plan):
        if not self._compiled(plan):
            return super().gru_fwd_seq(p, V, b_h, h0, lengths, plan)
        T, B, G = p.shape
        b_h, has_bh = _optional(b_h, 1, p.dtype)
        h = np.empty((T, B, G // 3), dtype=p.dtype)
        gates = np.empty((T, B, 4 * (G // 3)), dtype=p.dtype)
        self._rows(self.loops.gru_fwd, B, _c(p), _c(V), b_h, has_bh, _c(h0),
                   _lengths(lengths, B, T), plan.reverse, h, gates)
        return h, gates

    def gru_bwd_seq(self, dh, dh_last, h, h0, gates, V, lengths, plan, dh_next=None):
        if not self._compiled(plan):
            return super().gru_bwd_seq(dh, dh_last, h, h0, gates, V, lengths, plan,
                                       dh_next=dh_next)
        T, B, H = h.shape
        dh, has_dh = _optional(dh, 3, h.dtype)
        dh_last, has_last = _optional(dh_last, 2, h.dtype)
        dh_next, has_carry = _optional(dh_next, 2, h.dtype)
        dgx = np.empty((T, B, 3 * H), dtype=h.dtype)
        dh0 = np.empty((B, H), dtype=h.dtype)
        self._rows(self.loops.gru_bwd, B, dh, has_dh, dh_last, has_last, _c(h), _c(h0),
                   _c(gates), _c(V.T), _lengths(lengths, B, T), plan.reverse, dh_next, has_carry,
                   dgx, dh0)
        return dgx, dh0
