"""The GRU cell, functionally: forward and BPTT backward (docs/architecture.md §1), on any backend.
PyTorch's and cuDNN's gate order and formulas (G = 3 gates r, z, n, in column blocks):

    [xr|xz|xn] = x[t] @ W + b_x,   [hr|hz|hn] = h[t-1] @ V + b_h
    r = σ(xr + hr),  z = σ(xz + hz),  n = tanh(xn + r·hn),  h[t] = (1 - z)·n + z·h[t-1]

torch.nn.GRU's weights map as W = weight_ih.T, V = weight_hh.T, b_x = bias_ih, b_h = bias_hh (the
recurrent bias stays separate: it sits inside r·(…)). The forward saves h and [r|z|n|hn] for
backward (5H per example and step). Lengths and reverse as for Elman (cells/elman.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..backends import Backend, LaunchPlan, get_backend
from ..validate import check_array, check_lengths, common_float_dtype
from . import segments
from .memory_plan import check_memory
from .recompute import Segmented
from .sequence import (CacheArrays, cache_plan, check_algo, check_cache_algo,
                       check_grads_from_above, check_input, check_reverse, check_state,
                       check_unchanged, direction_call, forward_calls, gate_columns, last_state,
                       missing_arrays, pair_backend, run_pair, take_digests, two)

G = 3


@dataclass(frozen=True)
class GRUCache(CacheArrays):
    """What gru_backward needs. `arrays()` lists the arrays; `GRUCache.from_arrays(arrays,
    **meta)` rebuilds the cache from them. As ElmanCache: W, V, h0 are copies; x and h (the
    caller holds them) are guarded by digests; gates are the forward's own."""

    x: Any        # (T, B, I)
    W: Any        # (I, 3H)
    V: Any        # (H, 3H)
    h0: Any       # (B, H)
    h: Any        # (T, B, H), zero at padded steps
    gates: Any    # (T, B, 4H): [r|z|n|hn], zero at padded steps
    lengths: Any  # (B,) int32 or None
    has_b_x: bool
    has_b_h: bool
    plan: LaunchPlan
    backend: Backend
    digests: Optional[dict] = None  # {"x": .., "h": ..}; None: not checked

    ARRAY_NAMES = ("x", "W", "V", "h0", "h", "gates", "lengths")

    def meta(self) -> dict:
        return {"has_b_x": self.has_b_x, "has_b_h": self.has_b_h, "algo": self.algo,
                "backend": self.backend.name, "reverse": self.reverse}

    @classmethod
    def from_arrays(cls, arrays: dict, *, has_b_x, has_b_h, algo="step", backend=None,
                    reverse=False):
        """algo: the algorithm the forward ran, by name (meta()'s), or its LaunchPlan; reverse:
        the direction it ran."""
        missing_arrays(cls.ARRAY_NAMES, arrays)
        bk = get_backend(backend)
        if not isinstance(algo, LaunchPlan):
            algo = check_cache_algo(bk, algo)
        dtype = common_float_dtype(**{k: arrays[k] for k in cls.ARRAY_NAMES if k != "lengths"})
        h = check_array(bk, "h", arrays["h"], ndim=3, dtype=dtype, dims="(T, B, H)")
        T, B, H = h.shape
        x = check_array(bk, "x", arrays["x"], shape=(T, B, None), dtype=dtype, dims="(T, B, I)")
        return cls(x=x,
                   W=check_array(bk, "W", arrays["W"], shape=(x.shape[2], G * H), dtype=dtype,
                                 dims="(I, 3H)"),
                   V=check_array(bk, "V", arrays["V"], shape=(H, G * H), dtype=dtype,
                                 dims="(H, 3H)"),
                   h0=check_array(bk, "h0", arrays["h0"], shape=(B, H), dtype=dtype, dims="(B, H)"),
                   h=h,
                   gates=check_array(bk, "gates", arrays["gates"], shape=(T, B, 4 * H),
                                     dtype=dtype, dims="(T, B, 4H)"),
                   lengths=check_lengths(bk, arrays["lengths"], T, B),
                   has_b_x=bool(has_b_x), has_b_h=bool(has_b_h),
                   plan=cache_plan(bk, algo, T, B, H, dtype, check_reverse(reverse), "gru"),
                   backend=bk)


@dataclass(frozen=True)
class GRUOutput:
    h: Any        # (T, B, H)
    h_last: Any   # (B, H)
    cache: Optional[GRUCache]  # None when gru_forward was told need_cache=False


@dataclass(frozen=True)
class GRUGrads:
    dx: Any       # (T, B, I), or None when gru_backward was told need_dx=False
    dW: Any       # (I, 3H)
    dV: Any       # (H, 3H)
    db_x: Optional[Any]  # (3H,) or None when the forward had no b_x
    db_h: Optional[Any]  # (3H,) or None when the forward had no b_h
    dh0: Any      # (B, H)


def gru_forward(x, W, V, b_x=None, b_h=None, h0=None, *, lengths=None, backend=None, algo="auto",
                need_cache=True, reverse=False, allow_tf32=False, memory="full",
                checkpoint_every=None) -> GRUOutput:
    """Run a GRU level over a whole sequence (module docstring for the math).

    x: (T, B, I); W: (I, 3H); V: (H, 3H); b_x, b_h: (3H,) or None; h0: (B, H) or None (zeros);
    lengths: (B,) integers in 1..T or None. One storage dtype for all, as elman_forward's. None
    of the arguments is modified. backend, algo, need_cache, reverse, allow_tf32, memory,
    checkpoint_every: as elman_forward's.
    Returns GRUOutput(h (T, B, H), h_last (B, H), cache)."""
    bk, args, finish = _forward_call(x, W, V, b_x, b_h, h0, lengths, backend, algo, need_cache,
                                     allow_tf32, memory, checkpoint_every, reverse)
    return finish(None if callable(args) else bk.gru_fwd_seq(*args))


def gru_forward_pair(x, forward, reverse, *, lengths=None, backend=None, algo="auto",
                     need_cache=True, allow_tf32=False, memory="full",
                     checkpoint_every=None) -> tuple:
    """Both directions of a bidirectional GRU level over x, run together where the backend can
    (Backend.seq_pair; docs/architecture.md §1, both directions together). forward, reverse:
    each direction's (W, V, b_x, b_h, h0) as gru_forward takes them; the rest shared. Returns
    (forward's GRUOutput, reverse's), bit for bit those of two gru_forward calls (memory=
    "recompute": the two run in turn)."""
    calls = forward_calls(forward, reverse, ("W", "V", "b_x", "b_h", "h0"), _forward_call, x,
                          lengths, backend, algo, need_cache, allow_tf32, memory,
                          checkpoint_every)
    if callable(calls[0][1]):
        return tuple(finish(None) for _, _, finish in calls)
    return run_pair(calls[0][0], "gru_fwd_seq", calls)  # one get_backend(backend) for both


def _forward_call(x, W, V, b_x, b_h, h0, lengths, backend, algo, need_cache, allow_tf32,
                  memory, checkpoint_every, reverse):
    """gru_forward's checks and input projection: (backend, gru_fwd_seq's arguments, the
    function making the GRUOutput from gru_fwd_seq's result)."""
    bk = get_backend(backend)
    check_algo(algo)
    dtype = common_float_dtype(x=x, W=W, V=V, b_x=b_x, b_h=b_h, h0=h0)
    x = check_input(bk, x, dtype)
    T, B, I = x.shape
    W = check_array(bk, "W", W, shape=(I, None), dtype=dtype, dims="(I, 3H)")
    H = gate_columns("W", W, G, "GRU")
    V = check_array(bk, "V", V, shape=(H, G * H), dtype=dtype, dims="(H, 3H)")
    if b_x is not None:
        b_x = check_array(bk, "b_x", b_x, shape=(G * H,), dtype=dtype, dims="(3H,)")
    if b_h is not None:
        b_h = check_array(bk, "b_h", b_h, shape=(G * H,), dtype=dtype, dims="(3H,)")
    h0 = check_state(bk, "h0", h0, B, H, dtype)
    lengths = check_lengths(bk, lengths, T, B)
    reverse = check_reverse(reverse)
    plan = bk.resolve_algo(algo, T, B, H, dtype, reverse=reverse, cell="gru", tf32=allow_tf32)
    k = check_memory(bk, memory, checkpoint_every, T, B, need_cache,
                     dict(cell="gru", B=B, I=I, H=H, dtype=dtype), plan)
    if k is not None:
        def segmented(_):
            h, states = segments.gru_forward(bk, x, W, V, b_x, b_h, h0, lengths, plan, k)
            weights = {n: None if a is None else a.copy()
                       for n, a in (("W", W), ("V", V), ("b_x", b_x), ("b_h", b_h))}
            cache = Segmented(cell="gru", x=x, weights=weights, initial=(h0,), states=states,
                              lengths=lengths, plan=plan, backend=bk, k=k, shape=h.shape,
                              flags={"has_b_x": b_x is not None, "has_b_h": b_h is not None},
                              digests=take_digests(bk, x=x))
            return GRUOutput(h=h, h_last=last_state(bk.xp, h, lengths, reverse), cache=cache)
        return bk, segmented, segmented

    p = bk.input_projection(x, W, b_x, plan.tf32)

    def finish(result):
        h, gates = result
        h_last = last_state(bk.xp, h, lengths, reverse)
        if not need_cache:
            return GRUOutput(h=h, h_last=h_last, cache=None)
        cache = GRUCache(x=x, W=W.copy(), V=V.copy(), h0=h0, h=h, gates=gates, lengths=lengths,
                         has_b_x=b_x is not None, has_b_h=b_h is not None, plan=plan,
                         backend=bk, digests=take_digests(bk, x=x, h=h))
        return GRUOutput(h=h, h_last=h_last, cache=cache)
    return bk, (p, V, b_h, h0, lengths, plan), finish


def gru_backward(dh, cache: GRUCache, *, dh_last=None, need_dx=True) -> GRUGrads:
    """BPTT through the GRU level whose forward produced `cache`.

    dh: (T, B, H) gradient on h, or None; dh_last: (B, H) on h_last (at least one given; neither
    modified; values of dh at padded steps are ignored). need_dx=False skips dx.
    Returns GRUGrads(dx, dW, dV, db_x, db_h, dh0) on the cache's backend."""
    bk, args, finish = _backward_call(dh, cache, dh_last, need_dx)
    return finish(None if args is None else bk.gru_bwd_seq(*args))


def gru_backward_pair(dh, caches, *, dh_last=None, need_dx=True) -> tuple:
    """BPTT through both directions of a bidirectional GRU level, run together as
    gru_forward_pair runs them: dh, caches, dh_last are pairs (forward direction's, reverse's)
    of what gru_backward takes (dh, dh_last may be None: None for both). Returns (forward's
    GRUGrads, reverse's), bit for bit those of two gru_backward calls."""
    parts = [two(n, a) for n, a in (("dh", dh), ("caches", caches), ("dh_last", dh_last))]
    calls = [direction_call(name, _backward_call, *(p[i] for p in parts), need_dx)
             for i, name in enumerate(("forward", "reverse"))]
    if any(args is None for _, args, _ in calls):  # recomputed: in turn
        return tuple(finish(None if args is None else bk.gru_bwd_seq(*args))
                     for bk, args, finish in calls)
    return run_pair(pair_backend(calls), "gru_bwd_seq", calls)


def _backward_call(dh, cache, dh_last, need_dx):
    """gru_backward's checks: (backend, gru_bwd_seq's arguments, the function making the
    GRUGrads from gru_bwd_seq's result); for a recomputed cache, arguments None."""
    recomputed = isinstance(cache, Segmented) and cache.cell == "gru"
    if not (recomputed or isinstance(cache, GRUCache)):
        raise TypeError(f"cache: expected the GRUCache of gru_forward, got {type(cache).__name__}")
    bk = cache.backend
    T, B, H = cache.shape if recomputed else cache.h.shape
    dh, dh_last = check_grads_from_above(bk, T, B, H, cache.x.dtype, dh, dh_last=dh_last)
    check_unchanged(cache, "gru_forward")

    def finish(result):
        return GRUGrads(*segments.gru_grads(cache, dh, dh_last, bool(need_dx), result))
    if recomputed:
        return bk, None, finish
    return bk, (dh, dh_last, cache.h, cache.h0, cache.gates, cache.V, cache.lengths,
                cache.plan), finish
