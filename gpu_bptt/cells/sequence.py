"""What every cell's forward and backward share (docs/architecture.md §1): the checks of the
sequence input, the initial states, lengths and algorithm, the last states of variable-length
batches, the gradients from above, and the cache guard that detects arrays changed in place
between forward and backward. A cell module (elman.py) adds only its weights, its math and its
cache's fields.

Direction: arrays are always in time order. A reversed run (the second half of a bidirectional
layer) runs each example from its last valid step lengths[b]-1 down to 0, reading and writing its
own time rows (no flipped copy); its last state is the state at t = 0 (last_state with
reverse=True). The plan carries the direction (LaunchPlan.reverse); the backends run it.
"""
from __future__ import annotations

import numpy as np

from ..backends import last_step_rows as last_state  # noqa: F401  (the cells' name for it)
from ..validate import check_array

#: the values of `algo` a cell takes; "auto" lets the backend choose
ALGOS = ("auto", "step", "persistent")


class CacheArrays:
    """What every cell's cache shares: its arrays by name (the class's ARRAY_NAMES), and the
    algorithm and direction of the plan the forward ran (its `plan` field)."""

    ARRAY_NAMES: tuple = ()

    @property
    def algo(self) -> str:
        """The concrete algorithm the forward ran ("step" or "persistent")."""
        return self.plan.algo

    @property
    def reverse(self) -> bool:
        """The direction the forward ran (the plan's)."""
        return self.plan.reverse

    def arrays(self) -> dict:
        return {k: getattr(self, k) for k in self.ARRAY_NAMES}


def check_algo(algo):
    """ValueError unless `algo` is one of ALGOS (whether a backend honours it is its own check)."""
    if not isinstance(algo, str) or algo not in ALGOS:
        raise ValueError(f"algo: expected one of {ALGOS}, got {algo!r}")
    return algo


def check_reverse(reverse) -> bool:
    """TypeError unless `reverse` is a bool (a string such as "False" would read as true)."""
    if not isinstance(reverse, (bool, np.bool_)):
        raise TypeError(f"reverse: expected a bool, got {type(reverse).__name__}")
    return bool(reverse)


def check_cache_algo(bk, algo):
    """The algorithm a cache records: one the forward can have run on backend `bk`."""
    ran = tuple(a for a in ALGOS if a != "auto")
    if not isinstance(algo, str) or algo not in ran:
        raise ValueError(f"algo: expected the algorithm the forward ran, one of {ran}, got {algo!r}")
    bk.check_algo(algo)
    return algo


def check_input(bk, x, dtype):
    """x (T, B, I) with T, B, I >= 1, on backend `bk`, in `dtype`."""
    x = check_array(bk, "x", x, ndim=3, dtype=dtype, dims="(T, B, I)")
    if 0 in x.shape:
        raise ValueError(f"x: expected (T, B, I) with T, B, I >= 1, got shape {x.shape}")
    return x


def check_state(bk, name, a, B, H, dtype, letter="H"):
    """An initial state (B, H) (h0, c0): zeros when None, else a checked copy (B·H, small), so the
    cache never sees the caller's later in-place changes. letter: H's name in messages ("P" for
    a projected LSTM's h0)."""
    if a is None:
        return bk.xp.zeros((B, H), dtype=dtype)
    return check_array(bk, name, a, shape=(B, H), dtype=dtype, dims=f"(B, {letter})").copy()


def check_grads_from_above(bk, T, B, H, dtype, dh, *, letter="H", sizes=None, **last):
    """dh (T, B, H), then the gradients on the last states (B, H) given by keyword (dh_last=, and
    dc_last= for a cell with a cell state), each checked or None; at least one must be given.
    letter: H's name in messages; sizes: {name: (size, letter)} for a last state of another size
    (a projected LSTM's dc_last). Returns them as a tuple in that order."""
    if dh is None and all(g is None for g in last.values()):
        raise ValueError(f"{', '.join(('dh',) + tuple(last))}: at least one gradient must be given")
    if dh is not None:
        dh = check_array(bk, "dh", dh, shape=(T, B, H), dtype=dtype, dims=f"(T, B, {letter})")
    sizes = sizes or {}
    checked = []
    for name, g in last.items():
        n, l = sizes.get(name, (H, letter))
        checked.append(None if g is None else
                       check_array(bk, name, g, shape=(B, n), dtype=dtype, dims=f"(B, {l})"))
    return (dh, *checked)


def gate_columns(name, a, G, cell):
    """H from a weight `a` (., G·H): ValueError naming it unless its second dimension is a
    positive multiple of G (the gate blocks of `cell`)."""
    n = a.shape[1]
    if n == 0 or n % G:
        raise ValueError(f"{name}: expected shape (I, {G}H) for the {cell}'s {G} gate blocks; its "
                         f"second dimension {n} is not a positive multiple of {G}")
    return n // G


def cache_plan(bk, algo, T, B, H, dtype, reverse, cell="elman", P=0):
    """The plan of a rebuilt cache: the one given, checked against the arrays, the direction and
    the cell, or the backend's plan for the named algorithm."""
    from ..backends import LaunchPlan

    if isinstance(algo, LaunchPlan):
        bk.check_algo(algo.algo)
        algo.check_problem(B, H, dtype.name, cell, P)
        algo.check_direction(reverse)
        return algo
    cell_kw = {} if cell == "elman" else dict(cell=cell, P=P)  # Elman's call is unchanged
    return bk.resolve_algo(algo, T, B, H, dtype, reverse=reverse, **cell_kw)


def take_digests(bk, **arrays) -> dict:
    """{name: digest} of the arrays a cache refers to rather than copies: the input x and the
    outputs returned to the caller (large, and the caller holds them). Small arrays (weights,
    initial states) are copied by the forward instead."""
    return {name: bk.digest(a) for name, a in arrays.items()}


def check_unchanged(cache, forward: str):
    """ValueError naming the first array of `cache` changed in place since `forward` (the public
    function that made it) took its digests, as PyTorch does for tensors saved for backward. A
    cache without digests (rebuilt from arrays a framework guards) is not checked."""
    bk = cache.backend
    for name, digest in (cache.digests or {}).items():
        if bool(bk.digest(getattr(cache, name)) != digest):
            raise ValueError(f"cache: {name} was changed in place after {forward}; backward needs "
                             f"the values the forward saw (keep {name} unchanged until then, or "
                             f"change a copy)")


def missing_arrays(names, arrays: dict):
    """ValueError unless `arrays` (a rebuilt cache's) holds every name in `names`."""
    missing = [k for k in names if k not in arrays]
    if missing:
        raise ValueError(f"arrays: missing {missing}")


def two(name, a):
    """(a0, a1) from a pair (forward direction's, reverse direction's), or (None, None) from
    None: the arguments of the *_pair functions."""
    if a is None:
        return None, None
    if not isinstance(a, (tuple, list)) or len(a) != 2:
        raise TypeError(f"{name}: expected a pair (forward direction's, reverse direction's), "
                        f"got {type(a).__name__}")
    return tuple(a)


def direction_call(name, call, *args):
    """call(*args) for one direction of a *_pair function, its errors prefixed with the
    direction's name."""
    try:
        return call(*args)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name}: {e}") from None


def pair_backend(calls):
    """The one backend of both directions' (backend, arguments, finish) calls."""
    if calls[0][0] is not calls[1][0]:
        raise ValueError("caches: the two directions' caches are on different backends")
    return calls[0][0]


def forward_calls(forward, reverse, fields, call, x, *shared):
    """Both directions' (backend, arguments, finish) of a gated cell's *_forward_pair: each of
    forward, reverse a tuple of `fields` (the direction's weights and states), checked, then
    call(x, *fields, *shared, reverse) with its errors prefixed with the direction's name."""
    calls = []
    for name, d, r in (("forward", forward, False), ("reverse", reverse, True)):
        if not isinstance(d, (tuple, list)) or len(d) != len(fields):
            raise TypeError(f"{name}: expected the direction's ({', '.join(fields)}) (all but W "
                            f"and V may be None), got {type(d).__name__}")
        calls.append(direction_call(name, call, x, *d, *shared, r))
    return calls


def run_pair(bk, seq, calls):
    """Both directions' (backend, arguments, finish) calls run together by bk.seq_pair on the
    backend's `seq` method; each direction's result made by its finish."""
    results = bk.seq_pair(seq, calls[0][1], calls[1][1])
    return tuple(finish(r) for (_, _, finish), r in zip(calls, results))
