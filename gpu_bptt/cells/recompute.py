"""BPTT in bounded memory by recomputation (docs/architecture.md §1, memory): the forward keeps the
state only at the start of every segment of k steps; the backward replays each segment's forward
from its checkpoint and runs its BPTT, the last segment first (a reversed run: the first first),
handing the gradient that crosses the segment boundary to the next segment's backward as the
backend's carry (`du_next` / `dc_next` / `dh_next` of the `*_bwd_seq` methods), which enters its
first step exactly where a whole run's next step would: gradients bit for bit those of
memory="full" on the same backend and algorithm.

Why the weight gradients match bit for bit: both modes reduce them block by block, in blocks of
block_steps(T, B) steps aligned at t = 0, in the order the backward visits them (the sums of a
block are one reduction of the backend over that block's rows; the blocks' sums are added in
that order). A segment is a whole number of blocks, so both modes make the same calls on the
same values. A segment (or block) [a, e) runs as a problem of its own: x[a:e], lengths clipped
to 0..e-a (0: all padded there) and, as initial state, the state before its first step (for a
reversed run h[e] where the example continues past e, else h0).

Memory: the checkpoints (T/k states), one segment's arrays and one block's reduction
temporaries, instead of every step's state: O((T/k + k)·B·H), least at k = √T (the default,
but for small batches: block_steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from ..precision import is_half
from ..validate import check_size

#: the values of `memory` the forward functions take
MEMORY = ("full", "recompute", "auto")


#: the fewest rows (steps times examples) of a reduction block: fewer would make the backward's
#: many small products slower than its one large one where a batch is small
BLOCK_ROWS = 512


def block_steps(T: int, B: int) -> int:
    """The steps per block of the weight-gradient reductions for T steps of B examples: ⌈√T⌉,
    but at least ⌈BLOCK_ROWS / B⌉ (and at most T). It is also the default `checkpoint_every`,
    which must be a multiple of it."""
    root = math.isqrt(T - 1) + 1 if T > 1 else 1
    return min(T, max(root, -(-BLOCK_ROWS // B)))


def check_checkpoint_every(k, T, B) -> int:
    """k, checked: a positive multiple of block_steps(T, B) (None: that block)."""
    b = block_steps(T, B)
    if k is None:
        return b
    k = check_size("checkpoint_every", k)
    if k % b:
        raise ValueError(f"checkpoint_every: expected a multiple of {b} (the reduction block "
                         f"for T = {T}, B = {B}: ⌈√T⌉, at least {BLOCK_ROWS}/B), got {k}")
    return k


def check_memory_option(memory, checkpoint_every):
    """(memory, checkpoint_every) as a layer's constructor takes them, before T is known: memory
    one of MEMORY, checkpoint_every None or a positive int (whether it fits T: at the forward)."""
    if not isinstance(memory, str) or memory not in MEMORY:
        raise ValueError(f"memory: expected one of {MEMORY}, got {memory!r}")
    return memory, None if checkpoint_every is None else check_size("checkpoint_every",
                                                                     checkpoint_every)


def spans(T, k, reverse) -> list:
    """The segments [a, e) of k steps (the last may be shorter), in the order the backward visits
    them: the last first, or for a reversed run the first first."""
    out = [(a, min(a + k, T)) for a in range(0, T, k)]
    return out if reverse else out[::-1]


def sub_lengths(xp, lengths, a, e):
    """The lengths of the steps [a, e) as a problem of their own: 0..e-a (None: all e-a)."""
    if lengths is None:
        return None
    return xp.clip(lengths - a, 0, e - a).astype(lengths.dtype)


def _rows(xp, mask, a, b):
    """a's rows where mask (B,) holds, else b's (a where mask is None: every example)."""
    return a if mask is None else xp.where(mask[:, None], a, b)


def _after(lengths, t):
    """(B,) True for the examples whose steps go on past t-1 (lengths > t); None: all."""
    return None if lengths is None else lengths > t


def ending(lengths, a, e, T, reverse):
    """(B,) True for the examples whose last step in the run's direction is in [a, e) (None:
    all, False: none)."""
    if reverse:
        return None if a == 0 else False
    if lengths is None:
        return None if e == T else False
    return (lengths > a) & (lengths <= e)


def _starting(lengths, a, e, T, reverse):
    """(B,) True for the examples whose first step in the run's direction is in [a, e)."""
    return ending(lengths, a, e, T, not reverse)


def entering_last(xp, last, mask):
    """A gradient on the last states for a segment: `last` on the examples that end there
    (mask), 0 elsewhere; None where none does."""
    if last is None or mask is False:
        return None
    return last if mask is None else xp.where(mask[:, None], last, 0)


def state_before(xp, seg_h, lo, hi, start, lengths, reverse, h0, a):
    """The state before the steps [lo, hi) of a segment that starts at a (local rows of seg_h
    (n, B, .)); `start`: the segment's own initial state; h0: the run's."""
    n = seg_h.shape[0]
    if not reverse:
        return start if lo == 0 else seg_h[lo - 1]
    if hi == n:
        return start
    return _rows(xp, _after(lengths, a + hi), seg_h[hi], h0)


@dataclass(frozen=True)
class Segmented:
    """A recompute run's cache: what the backward replays each segment from. `cell` names the
    cell; `states[i]` the state tuple before segment i in time order ((h,) or (h, c)); the rest
    as the cell's full cache (weights copied, x guarded by a digest)."""

    cell: str
    x: Any
    weights: dict
    initial: tuple      # the run's (h0,) or (h0, c0)
    states: list
    lengths: Any
    plan: Any
    backend: Any
    k: int
    shape: tuple        # (T, B, Hs) of h
    flags: dict         # has_bias, activation, ... as the cell's cache holds them
    digests: Optional[dict] = None

    @property
    def algo(self) -> str:
        return self.plan.algo

    @property
    def reverse(self) -> bool:
        return self.plan.reverse

    @property
    def memory(self) -> str:
        return "recompute"


def next_state(xp, seg_states, lengths, a, reverse, initial):
    """The state after a segment run from `seg_states` ((n, B, .) arrays of its steps) for the
    next segment of the forward: its last step's (forward) or, reversed, its first step's where
    the example goes on before a (lengths > a), else the run's initial state."""
    if not reverse:
        return tuple(s[-1].copy() for s in seg_states)  # copies: a view would keep the segment
    keep = _after(lengths, a)
    return tuple(s[0].copy() if keep is None else _rows(xp, keep, s[0], s0)
                 for s, s0 in zip(seg_states, initial))


def backward(bk, cell, T, k, lengths, reverse, need_dx, dx_shape, dtype):
    """The driver of both modes' backward (memory="full" is one segment of T steps).
    cell.segment(a, e, carry) -> (seg, carry_out, starts): the segment's arrays after its BPTT,
    the carry for the next segment (a tuple, or None) and the gradients on the initial states
    the segment found (a tuple, for the examples starting in it, or None); cell.block(seg, lo,
    hi, a) -> (dx, sums, dh0): the reduction of the block [a+lo, a+hi). Returns (dx, sums, dh0,
    starts): dh0 from each example's first block, starts from its first segment."""
    xp = bk.xp
    # a 16-bit run sums over the whole sequence in float32 and rounds once (recompute refuses it)
    b = T if is_half(dtype) else block_steps(T, dx_shape[1])
    dx = xp.empty(dx_shape, dtype=dtype) if need_dx else None
    sums, dh0, starts, carry = None, None, None, None
    for a, e in spans(T, k, reverse):
        seg, carry, seg_starts = cell.segment(a, e, carry)
        starts = _take(xp, starts, seg_starts, _starting(lengths, a, e, T, reverse))
        for lo, hi in spans(e - a, b, reverse):  # its blocks (a is a multiple of b)
            dx_blk, blk_sums, blk_dh0 = cell.block(seg, lo, hi, a)
            if dx is not None:
                dx[a + lo:a + hi] = dx_blk
            sums = _accumulate(sums, blk_sums)
            if blk_dh0 is not None:
                dh0 = _take(xp, dh0, (blk_dh0,), _starting(lengths, a + lo, a + hi, T, reverse))
            del dx_blk, blk_sums, blk_dh0  # freed before the next block's are made
        seg = None  # freed before the next segment's arrays are made
    return dx, sums, None if dh0 is None else dh0[0], starts


def _take(xp, have, new, mask):
    """`have` (a tuple of (B, .) arrays, or None: zeros) with `new`'s rows where mask holds
    (None: all; False: none)."""
    if new is None or mask is False:
        return have
    if mask is None:
        return tuple(new)
    have = tuple(xp.zeros_like(n) for n in new) if have is None else have
    return tuple(xp.where(mask[:, None], n, h) for n, h in zip(new, have))


def _accumulate(sums, parts):
    """sums + parts, element by element (None stays None); the first block's parts as they are."""
    if sums is None:
        return list(parts)
    for s, p in zip(sums, parts):
        if s is not None:
            s += p
    return sums
