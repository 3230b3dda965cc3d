"""The Elman cell, functionally: forward and BPTT backward (docs/architecture.md §1), on any backend.

    u[t] = x[t] @ W + h[t-1] @ V + b,   h[t] = f(u[t]),   h[-1] = h0
    du[t] = (dh[t] + du[t+1] @ V.T) * f'(u[t])
    dW = Σ_t x[t].T @ du[t],  dV = Σ_t h[t-1].T @ du[t],  db = Σ_t Σ_b du[t, b]
    dx[t] = du[t] @ W.T,      dh0 = du[0] @ V.T

reverse=True runs each example b the other way, from t = lengths[b]-1 (h0 before it) down to 0:
t-1 becomes t+1 above, du[t+1] becomes du[t-1], dh0 takes du[lengths[b]-1, b], and the last state
is h[0]. Outputs stay time-aligned with the inputs (as nn.RNN's backward direction).

Only the recurrence runs inside the time loop; the input projection is one GEMM before it and the
weight gradients are one reduction over T·B after it. What every cell shares (checks of x, h0,
lengths and algo, last states, the cache guard) is in sequence.py; this module holds Elman's
weights, activation and cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .. import activations
from ..backends import Backend, LaunchPlan, PairPlan, get_backend
from ..validate import check_array, check_lengths, common_float_dtype
from . import segments
from .memory_plan import check_memory
from .recompute import Segmented
from .sequence import (CacheArrays, cache_plan, check_algo, check_cache_algo,
                       check_grads_from_above, check_input, check_reverse, check_state,
                       check_unchanged, direction_call, last_state, missing_arrays, take_digests)


@dataclass(frozen=True)
class ElmanCache(CacheArrays):
    """What backward needs, no more. `arrays()` lists the arrays (a framework can keep them as its
    own tensors); `ElmanCache.from_arrays(arrays, **meta)` rebuilds the cache from them.

    In-place changes between forward and backward: elman_forward keeps copies of W, V and h0
    (small), so backward uses the values the forward saw even when the caller updates its weights
    in place. x and h (the output the caller received) are large, so the cache refers to them and
    keeps a digest of each; elman_backward raises ValueError if either changed, as PyTorch does for
    tensors saved for backward. A cache rebuilt by from_arrays has no digests: the framework that
    holds the arrays guards them (PyTorch's saved tensors do)."""

    x: Any        # (T, B, I)
    W: Any        # (I, H)
    V: Any        # (H, H)
    h0: Any       # (B, H)
    h: Any        # (T, B, H), zero at padded steps
    lengths: Any  # (B,) int32 or None
    activation: str
    has_bias: bool
    plan: LaunchPlan  # how the forward ran (resolve_algo's); the backward runs it too
    backend: Backend
    digests: Optional[dict] = None  # {"x": .., "h": ..} taken by the forward; None: not checked

    ARRAY_NAMES = ("x", "W", "V", "h0", "h", "lengths")

    def meta(self) -> dict:
        return {"activation": self.activation, "has_bias": self.has_bias, "algo": self.algo,
                "backend": self.backend.name, "reverse": self.reverse}

    @classmethod
    def from_arrays(cls, arrays: dict, *, activation, has_bias, algo="step", backend=None,
                    reverse=False):
        """algo: the algorithm the forward ran, by name (meta()'s), or its LaunchPlan; reverse:
        the direction it ran (a LaunchPlan must have been made for it)."""
        missing_arrays(cls.ARRAY_NAMES, arrays)
        bk = get_backend(backend)
        if not isinstance(algo, LaunchPlan):
            algo = check_cache_algo(bk, algo)
        dtype = common_float_dtype(**{k: arrays[k] for k in ("x", "W", "V", "h0", "h")})
        h = check_array(bk, "h", arrays["h"], ndim=3, dtype=dtype, dims="(T, B, H)")
        T, B, H = h.shape
        x = check_array(bk, "x", arrays["x"], shape=(T, B, None), dtype=dtype, dims="(T, B, I)")
        # Checked as elman_forward checks its inputs: views (a framework's transposed weights, say)
        # are made contiguous for backends whose kernels index dense row-major buffers.
        return cls(x=x,
                   W=check_array(bk, "W", arrays["W"], shape=(x.shape[2], H), dtype=dtype, dims="(I, H)"),
                   V=check_array(bk, "V", arrays["V"], shape=(H, H), dtype=dtype, dims="(H, H)"),
                   h0=check_array(bk, "h0", arrays["h0"], shape=(B, H), dtype=dtype, dims="(B, H)"),
                   h=h,
                   lengths=check_lengths(bk, arrays["lengths"], T, B),
                   activation=activations.check_activation(activation), has_bias=bool(has_bias),
                   plan=cache_plan(bk, algo, T, B, H, dtype, check_reverse(reverse)),
                   backend=bk)


@dataclass(frozen=True)
class ElmanOutput:
    h: Any        # (T, B, H)
    h_last: Any   # (B, H)
    cache: Optional[ElmanCache]  # None when elman_forward was told need_cache=False


@dataclass(frozen=True)
class ElmanGrads:
    dx: Any       # (T, B, I), or None when elman_backward was told need_dx=False
    dW: Any       # (I, H)
    dV: Any       # (H, H)
    db: Optional[Any]  # (H,) or None when the forward had no bias
    dh0: Any      # (B, H)


def elman_forward(x, W, V, b=None, h0=None, *, activation="tanh", lengths=None, backend=None,
                  algo="auto", need_cache=True, reverse=False, allow_tf32=False, memory="full",
                  checkpoint_every=None) -> ElmanOutput:
    """Run the recurrent level over a whole sequence.

    x: (T, B, I) input X^{r-1}; W: (I, H); V: (H, H); b: (H,) or None; h0: (B, H) or None (zeros);
    lengths: (B,) integers in 1..T or None (all T). All float arrays share one storage dtype,
    float32, float64, bfloat16 (ml_dtypes) or float16, which the outputs and gradients keep
    (docs/architecture.md §1, precision modes); allow_tf32=True runs float32 products on TF32
    operands (the backward follows the cache). The caller owns every argument; none is modified. The cache
    keeps copies of W, V, h0 and refers to x and the returned h: change those two in place before
    elman_backward and it raises ValueError (see ElmanCache).
    backend: name, Backend or None (docs/architecture.md §2). algo: "auto", "step" or "persistent".
    need_cache=False: no backward will follow (inference, or a framework that keeps the arrays
    itself), so the cache, its copies and digests are skipped and `cache` is None.
    reverse=True: each example b runs from its last valid step lengths[b]-1 (from h0) down to 0,
    h[t] = f(x[t] @ W + h[t+1] @ V + b); h stays time-aligned with x, 0 at padded steps, and
    h_last is h[0] (what nn.RNN's reverse direction returns in h_n). The cache records the
    direction and elman_backward follows it.
    memory: "full" (the cache refers to h), "recompute" (it keeps the state every
    checkpoint_every steps, by default and in multiples of ⌈√T⌉ (at least 512/B steps:
    recompute.block_steps), and elman_backward replays the rest: the
    same gradients bit for bit, about one more forward of time) or "auto" (recompute where full
    would not fit: gpu_bptt.memory_estimate). docs/architecture.md §1, memory.
    Returns ElmanOutput(h (T, B, H), h_last (B, H), cache)."""
    bk = get_backend(backend)
    x, W, V, b, h0, lengths, activation = _checked(bk, x, W, V, b, h0, activation, lengths, algo)
    T, B, I = x.shape  # resolved here: an "auto" fallback's warning names this call's caller
    H = W.shape[1]
    plan = bk.resolve_algo(algo, T, B, H, x.dtype, reverse=check_reverse(reverse),
                           tf32=allow_tf32)
    k = check_memory(bk, memory, checkpoint_every, T, B, need_cache,
                     dict(cell="elman", B=B, I=I, H=H, dtype=x.dtype), plan)
    h = bk.elman_fwd_seq(bk.input_projection(x, W, b, plan.tf32), V, h0, activation, lengths,
                         plan)
    return _output(bk, x, W, V, b, h0, h, lengths, activation, plan, need_cache, k)


def _checked(bk, x, W, V, b, h0, activation, lengths, algo):
    """elman_forward's arguments, checked (h0 a copy, or zeros)."""
    activation = activations.check_activation(activation)
    check_algo(algo)
    dtype = common_float_dtype(x=x, W=W, V=V, b=b, h0=h0)
    x = check_input(bk, x, dtype)
    T, B, I = x.shape
    W = check_array(bk, "W", W, shape=(I, None), dtype=dtype, dims="(I, H)")
    H = W.shape[1]
    if H == 0:
        raise ValueError("W: H (its second dimension) must be >= 1")
    V = check_array(bk, "V", V, shape=(H, H), dtype=dtype, dims="(H, H)")
    if b is not None:
        b = check_array(bk, "b", b, shape=(H,), dtype=dtype, dims="(H,)")
    h0 = check_state(bk, "h0", h0, B, H, dtype)  # a copy, like W and V in _output
    return x, W, V, b, h0, check_lengths(bk, lengths, T, B), activation


def _output(bk, x, W, V, b, h0, h, lengths, activation, plan, need_cache, k=None) -> ElmanOutput:
    """The ElmanOutput of a run that produced h, with its cache unless need_cache is False (k:
    the segment length of a recompute run, whose cache keeps only checkpoints)."""
    h_last = last_state(bk.xp, h, lengths, plan.reverse)
    if not need_cache:
        return ElmanOutput(h=h, h_last=h_last, cache=None)
    if k is not None:
        weights = {"W": W.copy(), "V": V.copy(), "b": None if b is None else b.copy()}
        states = segments.elman_states(bk.xp, h, h0, lengths, plan.reverse, k)
        return ElmanOutput(h=h, h_last=h_last, cache=Segmented(
            cell="elman", x=x, weights=weights, initial=(h0,), states=states, lengths=lengths,
            plan=plan, backend=bk, k=k, shape=h.shape,
            flags={"activation": activation, "has_bias": b is not None},
            digests=take_digests(bk, x=x)))
    # W, V are small: copied, so the caller may update them in place before backward.
    cache = ElmanCache(x=x, W=W.copy(), V=V.copy(), h0=h0, h=h, lengths=lengths,
                       activation=activation, has_bias=b is not None, plan=plan, backend=bk,
                       digests=take_digests(bk, x=x, h=h))
    return ElmanOutput(h=h, h_last=h_last, cache=cache)


def elman_backward(dh, cache: ElmanCache, *, dh_last=None, need_dx=True) -> ElmanGrads:
    """BPTT through the level whose forward produced `cache`.

    dh: (T, B, H) ∂e/∂h[t] from the level above, or None; dh_last: (B, H) gradient on h_last, or
    None (at least one is given; for a reversed forward dh_last is the gradient on h[0]). Values
    at padded steps of dh are ignored. Neither is modified.
    need_dx=False skips dx (None then): the bottom level of a network needs no input gradient.
    Returns ElmanGrads(dx, dW, dV, db, dh0), on the cache's backend, in its dtype."""
    recomputed = isinstance(cache, Segmented) and cache.cell == "elman"
    if not (recomputed or isinstance(cache, ElmanCache)):
        raise TypeError(f"cache: expected the ElmanCache of elman_forward, got {type(cache).__name__}")
    bk = cache.backend
    T, B, H = cache.shape if recomputed else cache.h.shape
    dh, dh_last = check_grads_from_above(bk, T, B, H, cache.x.dtype, dh, dh_last=dh_last)
    check_unchanged(cache, "elman_forward")
    if recomputed:
        return ElmanGrads(*segments.elman_grads(cache, dh, dh_last, bool(need_dx)))
    du = bk.elman_bwd_seq(dh, dh_last, cache.h, cache.V, cache.activation, cache.lengths, cache.plan)
    return ElmanGrads(*segments.elman_grads(cache, dh, dh_last, bool(need_dx), du))


# -- both directions of a bidirectional layer together ---------------------------------------------
@dataclass(frozen=True)
class ElmanPairOutput:
    forward: ElmanOutput  # the forward direction's, as elman_forward(..., reverse=False) gives it
    reverse: ElmanOutput  # the reversed direction's (reverse=True)
    plan: PairPlan        # how the two ran together (plan.label, plan.reason)


def elman_forward_pair(x, forward, reverse, *, activation="tanh", lengths=None, backend=None,
                       algo="auto", need_cache=True, allow_tf32=False, memory="full",
                       checkpoint_every=None) -> ElmanPairOutput:
    """Both directions of a bidirectional layer over x, run together: side by side on the GPU (one
    cooperative launch for the persistent algorithm where both directions' blocks fit at once,
    else each direction on a CUDA stream of its own), one after the other elsewhere; plan says
    which (docs/architecture.md §1, both directions together).

    x: (T, B, I); forward, reverse: each direction's (W, V, b, h0) as elman_forward takes them (b
    and h0 may be None); lengths, activation, backend, algo, need_cache, memory,
    checkpoint_every: as elman_forward, shared (recomputed caches: the backward runs in turn).
    The results are bit for bit those of elman_forward(x, *forward, ...) and elman_forward(x,
    *reverse, ..., reverse=True), caches included: elman_backward takes either cache alone, and
    elman_backward_pair both. Returns ElmanPairOutput(forward, reverse, plan)."""
    bk = get_backend(backend)
    xf, Wf, Vf, bf, h0f, lengths, activation = _direction(bk, "forward", x, forward, activation,
                                                          lengths, algo)
    xr, Wr, Vr, br, h0r, _, _ = _direction(bk, "reverse", x, reverse, activation, lengths, algo)
    if Wr.shape != Wf.shape or xr.dtype != xf.dtype:
        raise ValueError(f"reverse: W is {Wr.shape} {Wr.dtype}, the forward direction's "
                         f"{Wf.shape} {Wf.dtype}: both directions need one shape and dtype")
    T, B, I = xf.shape
    H = Wf.shape[1]
    pair = bk.resolve_pair(bk.resolve_algo(algo, T, B, H, xf.dtype, reverse=False,
                                           tf32=allow_tf32),
                           bk.resolve_algo(algo, T, B, H, xf.dtype, reverse=True,
                                           tf32=allow_tf32))
    ks = [check_memory(bk, memory, checkpoint_every, T, B, need_cache,
                       dict(cell="elman", B=2 * B, I=I, H=H, dtype=xf.dtype), p)  # both, together
          for p in (pair.forward, pair.reverse)]
    k = ks[0] if ks[0] == ks[1] else None  # auto where one direction cannot recompute: full
    tf32 = pair.forward.tf32
    hf, hr = bk.elman_fwd_pair((bk.input_projection(xf, Wf, bf, tf32), Vf, h0f),
                               (bk.input_projection(xr, Wr, br, tf32), Vr, h0r), activation,
                               lengths, pair)
    return ElmanPairOutput(
        _output(bk, xf, Wf, Vf, bf, h0f, hf, lengths, activation, pair.forward, need_cache, k),
        _output(bk, xr, Wr, Vr, br, h0r, hr, lengths, activation, pair.reverse, need_cache, k),
        pair)


def _direction(bk, name, x, d, activation, lengths, algo):
    """_checked for one direction's (W, V, b, h0), its errors prefixed with the direction's name."""
    if not isinstance(d, (tuple, list)) or len(d) != 4:
        raise TypeError(f"{name}: expected the direction's (W, V, b, h0) (b, h0 may be None), "
                        f"got {type(d).__name__}")
    try:
        return _checked(bk, x, *d, activation, lengths, algo)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name}: {e}") from None


def elman_backward_pair(dh, caches, *, dh_last=None, need_dx=True) -> tuple:
    """BPTT through both directions of a bidirectional layer, run together as
    elman_forward_pair ran them.

    dh: (dh_forward, dh_reverse), each (T, B, H) or None, or None; caches: (forward cache, reverse
    cache) of elman_forward_pair (or of two elman_forward calls over one x and lengths);
    dh_last: (forward's, reverse's), each (B, H) or None, or None; need_dx: as elman_backward.
    Returns (ElmanGrads of the forward direction, of the reversed one), bit for bit those of two
    elman_backward calls (dx of each direction apart: the layer's input gradient is their sum)."""
    dh = _two("dh", dh)
    dh_last = _two("dh_last", dh_last)
    cf, cr = _two("caches", caches)
    if isinstance(cf, Segmented) or isinstance(cr, Segmented):  # recomputed: in turn
        def one(d, c, dl):
            return elman_backward(d, c, dh_last=dl, need_dx=need_dx)
        return tuple(direction_call(name, one, d, c, dl)
                     for name, d, c, dl in zip(("forward", "reverse"), dh, (cf, cr), dh_last))
    for name, c in (("caches[0]", cf), ("caches[1]", cr)):
        if not isinstance(c, ElmanCache):
            raise TypeError(f"{name}: expected the ElmanCache of elman_forward, got "
                            f"{type(c).__name__}")
    if cf.reverse or not cr.reverse:
        raise ValueError("caches: expected the forward direction's cache, then the reversed "
                         f"one's; got reverse={cf.reverse}, then reverse={cr.reverse}")
    bk = cf.backend
    if cr.backend is not bk or cr.h.shape != cf.h.shape or cr.activation != cf.activation \
            or not _same_lengths(bk, cf.lengths, cr.lengths):
        raise ValueError("caches: not the two directions of one layer (the backend, h's shape, "
                         "the activation or the lengths differ)")
    pair = bk.resolve_pair(cf.plan, cr.plan)
    T, B, H = cf.h.shape
    ups = [check_grads_from_above(bk, T, B, H, cf.h.dtype, d, dh_last=dl)
           for d, dl in zip(dh, dh_last)]
    for c in (cf, cr):
        check_unchanged(c, "elman_forward")
    dus = bk.elman_bwd_pair(ups[0] + (cf.h, cf.V), ups[1] + (cr.h, cr.V), cf.activation,
                            cf.lengths, pair)
    return tuple(ElmanGrads(*segments.elman_grads(c, None, None, bool(need_dx), du))
                 for c, du in zip((cf, cr), dus))


def _two(name, a):
    """(a0, a1) from a pair, or (None, None) from None."""
    if a is None:
        return None, None
    if not isinstance(a, (tuple, list)) or len(a) != 2:
        raise TypeError(f"{name}: expected a pair (forward direction's, reverse direction's), "
                        f"got {type(a).__name__}")
    return tuple(a)


def _same_lengths(bk, a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a is b or bool((a == b).all())
