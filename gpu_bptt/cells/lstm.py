"""The LSTM cell, functionally: forward and BPTT backward (docs/architecture.md §1), on any backend.
PyTorch's and cuDNN's gate order and formulas (G = 4 gates i, f, g, o, in column blocks):

    u[t] = x[t] @ W + h[t-1] @ V + b,   [i|f|g|o] = [σ|σ|tanh|σ](u[t])
    c[t] = f·c[t-1] + i·g,   m[t] = o·tanh(c[t]),   h[t] = m[t] (@ R with a projection)

torch.nn.LSTM's weights map as W = weight_ih.T, V = weight_hh.T, b = bias_ih + bias_hh,
R = weight_hr.T. With a projection (R (H, P)) the fed-back state h has P columns, so V is (P, 4H).
The forward saves h, c and the activated gates for backward (6H per example and step, or 5H + P).
Lengths and reverse as for Elman (cells/elman.py): padded steps have h = c = 0, and the last states
are those of each example's last valid step in the run's direction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..backends import Backend, LaunchPlan, get_backend
from ..precision import work_dtype
from ..validate import check_array, check_lengths, common_float_dtype
from . import segments
from .memory_plan import check_memory
from .recompute import Segmented
from .sequence import (CacheArrays, cache_plan, check_algo, check_cache_algo,
                       check_grads_from_above, check_input, check_reverse, check_state,
                       check_unchanged, direction_call, forward_calls, gate_columns, last_state,
                       missing_arrays, pair_backend, run_pair, take_digests, two)

G = 4


@dataclass(frozen=True)
class LSTMCache(CacheArrays):
    """What lstm_backward needs. `arrays()` lists the arrays; `LSTMCache.from_arrays(arrays,
    **meta)` rebuilds the cache from them. As ElmanCache: W, V, R, h0, c0 are copies; x and h
    (the caller holds them) are guarded by digests; c and gates are the forward's own."""

    x: Any        # (T, B, I)
    W: Any        # (I, 4H)
    V: Any        # (Hs, 4H), Hs = P with a projection, else H
    R: Any        # (H, P) or None
    h0: Any       # (B, Hs)
    c0: Any       # (B, H)
    h: Any        # (T, B, Hs), zero at padded steps
    c: Any        # (T, B, H), zero at padded steps; float32 for a 16-bit storage dtype
    gates: Any    # (T, B, 4H): the activated [i|f|g|o], zero at padded steps
    lengths: Any  # (B,) int32 or None
    has_bias: bool
    plan: LaunchPlan
    backend: Backend
    digests: Optional[dict] = None  # {"x": .., "h": ..}; None: not checked

    ARRAY_NAMES = ("x", "W", "V", "R", "h0", "c0", "h", "c", "gates", "lengths")

    def meta(self) -> dict:
        return {"has_bias": self.has_bias, "algo": self.algo, "backend": self.backend.name,
                "reverse": self.reverse}

    @classmethod
    def from_arrays(cls, arrays: dict, *, has_bias, algo="step", backend=None, reverse=False):
        """algo: the algorithm the forward ran, by name (meta()'s), or its LaunchPlan; reverse:
        the direction it ran."""
        missing_arrays(cls.ARRAY_NAMES, arrays)
        bk = get_backend(backend)
        if not isinstance(algo, LaunchPlan):
            algo = check_cache_algo(bk, algo)
        dtype = common_float_dtype(**{k: arrays[k] for k in cls.ARRAY_NAMES
                                      if k not in ("lengths", "c")})
        # c is kept in the work dtype (float32 for a 16-bit storage dtype)
        c = check_array(bk, "c", arrays["c"], ndim=3, dtype=work_dtype(dtype), dims="(T, B, H)")
        T, B, H = c.shape
        R = arrays["R"]
        if R is not None:
            R = check_array(bk, "R", R, shape=(H, None), dtype=dtype, dims="(H, P)")
        P = 0 if R is None else R.shape[1]
        Hs, s = (P, "P") if P else (H, "H")
        x = check_array(bk, "x", arrays["x"], shape=(T, B, None), dtype=dtype, dims="(T, B, I)")
        return cls(x=x,
                   W=check_array(bk, "W", arrays["W"], shape=(x.shape[2], G * H), dtype=dtype,
                                 dims="(I, 4H)"),
                   V=check_array(bk, "V", arrays["V"], shape=(Hs, G * H), dtype=dtype,
                                 dims=f"({s}, 4H)"),
                   R=R,
                   h0=check_array(bk, "h0", arrays["h0"], shape=(B, Hs), dtype=dtype,
                                  dims=f"(B, {s})"),
                   c0=check_array(bk, "c0", arrays["c0"], shape=(B, H), dtype=dtype, dims="(B, H)"),
                   h=check_array(bk, "h", arrays["h"], shape=(T, B, Hs), dtype=dtype,
                                 dims=f"(T, B, {s})"),
                   c=c,
                   gates=check_array(bk, "gates", arrays["gates"], shape=(T, B, G * H),
                                     dtype=dtype, dims="(T, B, 4H)"),
                   lengths=check_lengths(bk, arrays["lengths"], T, B), has_bias=bool(has_bias),
                   plan=cache_plan(bk, algo, T, B, H, dtype, check_reverse(reverse), "lstm", P),
                   backend=bk)


@dataclass(frozen=True)
class LSTMOutput:
    h: Any        # (T, B, Hs)
    h_last: Any   # (B, Hs)
    c_last: Any   # (B, H)
    cache: Optional[LSTMCache]  # None when lstm_forward was told need_cache=False


@dataclass(frozen=True)
class LSTMGrads:
    dx: Any       # (T, B, I), or None when lstm_backward was told need_dx=False
    dW: Any       # (I, 4H)
    dV: Any       # (Hs, 4H)
    db: Optional[Any]  # (4H,) or None when the forward had no bias
    dR: Optional[Any]  # (H, P) or None without a projection
    dh0: Any      # (B, Hs)
    dc0: Any      # (B, H)


def lstm_forward(x, W, V, b=None, h0=None, c0=None, *, R=None, lengths=None, backend=None,
                 algo="auto", need_cache=True, reverse=False, allow_tf32=False, memory="full",
                 checkpoint_every=None) -> LSTMOutput:
    """Run an LSTM level over a whole sequence (module docstring for the math).

    x: (T, B, I); W: (I, 4H); V: (Hs, 4H); b: (4H,) or None; h0: (B, Hs) or None (zeros);
    c0: (B, H) or None (zeros); R: (H, P) projection or None (Hs = P with it, else H);
    lengths: (B,) integers in 1..T or None. One storage dtype for all, as elman_forward's (the
    cell state is computed in float32 for a 16-bit one; c_last is rounded to it). None of the
    arguments is modified. backend, algo, need_cache, reverse, allow_tf32, memory,
    checkpoint_every: as elman_forward's (recompute keeps h and c every checkpoint_every steps).
    Returns LSTMOutput(h (T, B, Hs), h_last (B, Hs), c_last (B, H), cache)."""
    bk, args, finish = _forward_call(x, W, V, b, h0, c0, R, lengths, backend, algo, need_cache,
                                     allow_tf32, memory, checkpoint_every, reverse)
    return finish(None if callable(args) else bk.lstm_fwd_seq(*args))


def lstm_forward_pair(x, forward, reverse, *, lengths=None, backend=None, algo="auto",
                      need_cache=True, allow_tf32=False, memory="full",
                      checkpoint_every=None) -> tuple:
    """Both directions of a bidirectional LSTM level over x, run together where the backend can
    (Backend.seq_pair; docs/architecture.md §1, both directions together). forward, reverse:
    each direction's (W, V, b, h0, c0, R) as lstm_forward takes them; the rest shared. Returns
    (forward's LSTMOutput, reverse's), bit for bit those of two lstm_forward calls (memory=
    "recompute": the two run in turn)."""
    calls = forward_calls(forward, reverse, ("W", "V", "b", "h0", "c0", "R"), _forward_call, x,
                          lengths, backend, algo, need_cache, allow_tf32, memory,
                          checkpoint_every)
    if callable(calls[0][1]):
        return tuple(finish(None) for _, _, finish in calls)
    return run_pair(calls[0][0], "lstm_fwd_seq", calls)  # one get_backend(backend) for both


def _forward_call(x, W, V, b, h0, c0, R, lengths, backend, algo, need_cache, allow_tf32, memory,
                  checkpoint_every, reverse):
    """lstm_forward's checks and input projection: (backend, lstm_fwd_seq's arguments, the
    function making the LSTMOutput from lstm_fwd_seq's result). memory="recompute": (backend,
    the segmented forward, the function making the LSTMOutput from None)."""
    bk = get_backend(backend)
    check_algo(algo)
    dtype = common_float_dtype(x=x, W=W, V=V, b=b, h0=h0, c0=c0, R=R)
    x = check_input(bk, x, dtype)
    T, B, I = x.shape
    W = check_array(bk, "W", W, shape=(I, None), dtype=dtype, dims="(I, 4H)")
    H = gate_columns("W", W, G, "LSTM")
    P = 0
    if R is not None:
        R = check_array(bk, "R", R, shape=(H, None), dtype=dtype, dims="(H, P)")
        P = R.shape[1]
        if P == 0:
            raise ValueError("R: P (its second dimension) must be >= 1; pass R=None for no "
                             "projection")
    Hs, s = (P, "P") if P else (H, "H")
    V = check_array(bk, "V", V, shape=(Hs, G * H), dtype=dtype, dims=f"({s}, 4H)")
    if b is not None:
        b = check_array(bk, "b", b, shape=(G * H,), dtype=dtype, dims="(4H,)")
    h0 = check_state(bk, "h0", h0, B, Hs, dtype, s)
    c0 = check_state(bk, "c0", c0, B, H, dtype)
    lengths = check_lengths(bk, lengths, T, B)
    reverse = check_reverse(reverse)
    plan = bk.resolve_algo(algo, T, B, H, dtype, reverse=reverse, cell="lstm", P=P,
                           tf32=allow_tf32)
    k = check_memory(bk, memory, checkpoint_every, T, B, need_cache,
                     dict(cell="lstm", B=B, I=I, H=H, dtype=dtype, P=P), plan)
    if k is not None:
        def segmented(_):
            h, c_last, states = segments.lstm_forward(bk, x, W, V, b, h0, c0, R, lengths, plan, k)
            weights = {n: None if a is None else a.copy()
                       for n, a in (("W", W), ("V", V), ("b", b), ("R", R))}
            cache = Segmented(cell="lstm", x=x, weights=weights, initial=(h0, c0), states=states,
                              lengths=lengths, plan=plan, backend=bk, k=k, shape=h.shape,
                              flags={"has_bias": b is not None}, digests=take_digests(bk, x=x))
            return LSTMOutput(h=h, h_last=last_state(bk.xp, h, lengths, reverse), c_last=c_last,
                              cache=cache)
        return bk, segmented, segmented

    p = bk.input_projection(x, W, b, plan.tf32)

    def finish(result):
        h, c, gates = result
        h_last = last_state(bk.xp, h, lengths, reverse)
        c_last = last_state(bk.xp, c, lengths, reverse).astype(dtype, copy=False)
        if not need_cache:
            return LSTMOutput(h=h, h_last=h_last, c_last=c_last, cache=None)
        cache = LSTMCache(x=x, W=W.copy(), V=V.copy(), R=None if R is None else R.copy(),
                          h0=h0, c0=c0, h=h, c=c, gates=gates, lengths=lengths,
                          has_bias=b is not None, plan=plan, backend=bk,
                          digests=take_digests(bk, x=x, h=h))
        return LSTMOutput(h=h, h_last=h_last, c_last=c_last, cache=cache)
    return bk, (p, V, h0, c0, lengths, plan, R), finish


def lstm_backward(dh, cache: LSTMCache, *, dh_last=None, dc_last=None,
                  need_dx=True) -> LSTMGrads:
    """BPTT through the LSTM level whose forward produced `cache`.

    dh: (T, B, Hs) gradient on h, or None; dh_last: (B, Hs) on h_last; dc_last: (B, H) on c_last
    (at least one given; none modified; values of dh at padded steps are ignored). need_dx=False
    skips dx. Returns LSTMGrads(dx, dW, dV, db, dR, dh0, dc0) on the cache's backend."""
    bk, args, finish = _backward_call(dh, cache, dh_last, dc_last, need_dx)
    return finish(None if args is None else bk.lstm_bwd_seq(*args))


def lstm_backward_pair(dh, caches, *, dh_last=None, dc_last=None, need_dx=True) -> tuple:
    """BPTT through both directions of a bidirectional LSTM level, run together as
    lstm_forward_pair runs them: caches, dh, dh_last, dc_last are pairs (forward direction's,
    reverse's) of what lstm_backward takes (each pair may be None: None for both). Returns
    (forward's LSTMGrads, reverse's), bit for bit those of two lstm_backward calls."""
    parts = [two(n, a) for n, a in (("dh", dh), ("caches", caches), ("dh_last", dh_last),
                                     ("dc_last", dc_last))]
    calls = [direction_call(name, _backward_call, *(p[i] for p in parts), need_dx)
             for i, name in enumerate(("forward", "reverse"))]
    if any(args is None for _, args, _ in calls):  # recomputed: in turn
        return tuple(finish(None if args is None else bk.lstm_bwd_seq(*args))
                     for bk, args, finish in calls)
    return run_pair(pair_backend(calls), "lstm_bwd_seq", calls)


def _backward_call(dh, cache, dh_last, dc_last, need_dx):
    """lstm_backward's checks: (backend, lstm_bwd_seq's arguments, the function making the
    LSTMGrads from lstm_bwd_seq's result); for a recomputed cache, arguments None."""
    recomputed = isinstance(cache, Segmented) and cache.cell == "lstm"
    if not (recomputed or isinstance(cache, LSTMCache)):
        raise TypeError(f"cache: expected the LSTMCache of lstm_forward, got "
                        f"{type(cache).__name__}")
    bk = cache.backend
    T, B, Hs = cache.shape if recomputed else cache.h.shape
    R = cache.weights["R"] if recomputed else cache.R
    H = (cache.initial[1] if recomputed else cache.c0).shape[1]
    dh, dh_last, dc_last = check_grads_from_above(
        bk, T, B, Hs, cache.x.dtype, dh, letter="P" if R is not None else "H",
        sizes={"dc_last": (H, "H")}, dh_last=dh_last, dc_last=dc_last)
    check_unchanged(cache, "lstm_forward")

    def finish(result):
        return LSTMGrads(*segments.lstm_grads(cache, dh, dh_last, dc_last, bool(need_dx),
                                              result))
    if recomputed:
        return bk, None, finish
    return bk, (dh, dh_last, dc_last, cache.h, cache.c, cache.gates, cache.c0, cache.V,
                cache.lengths, cache.plan, cache.R), finish
