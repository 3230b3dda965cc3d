"""The numpy backend's time loop, shared by every cell (docs/architecture.md §4): the order of the
steps, the padded steps of variable-length batches, and where the gradients from above enter. The
cell writes a plain `for` loop over these iterators with only its step inside.

Padded steps are t >= lengths[b], a suffix of each example: its state there is 0 and it receives
no gradient. They are set to 0, never multiplied by 0 (NaN·0 and inf·0 are NaN). Which rows are
padded at each step is worked out once, before the loop: the loop itself does no mask arithmetic
at steps without padding (the small-batch CPU presets spend a few µs per step in all).

A reversed run (flipped_*) takes example b through t = lengths[b]-1 down to 0 and then its padded
steps: at step s every row reads and writes its own time index (one gather and one scatter per
step with lengths, views without), with no flipped copy of the sequence.
"""
from __future__ import annotations

import itertools

import numpy as np


def valid_steps(xp, lengths, T):
    """(T, B) bool, True where t < lengths[b]; None when lengths is None."""
    if lengths is None:
        return None
    return xp.arange(T)[:, None] < lengths[None, :]


def forward_steps(T, lengths, *states):
    """Yields t = 0..T-1. When the loop body for t is done (the cell has written step t of its
    `states`, (T, B, ...) arrays: h, and c for a cell that has one), the padded rows of each state
    at t are set to 0, so step t+1 reads 0 there."""
    valid = valid_steps(np, lengths, T)
    if valid is None or valid.all():
        return range(T)  # nothing to zero: the plain loop, no generator to resume at each step
    return _zeroing_padded(_padded_rows(T, valid), states)


def _zeroing_padded(pads, states):
    for t, rows in enumerate(pads):
        yield t
        if rows is not None:
            for s in states:
                s[t][rows] = 0


def reverse_steps(T, lengths, *incoming):
    """Iterates (t, g, ...) for t = T-1..0, one g per (seq, last) pair in `incoming`: (dh, dh_last),
    and (None, dc_last) for a cell state. g (B, H) is the gradient from above on that state of step
    t: seq[t] with its padded rows 0 (whatever seq holds there), plus `last` on the examples whose
    last valid step is t; None when both are absent (zeros). seq (T, B, H) and last (B, H) may be
    None and are never written; g may be scratch that the next step overwrites."""
    valid = valid_steps(np, lengths, T)
    pads = _padded_rows(T, valid)
    return zip(range(T - 1, -1, -1), *(_feed(T, lengths, valid, pads, seq, last)
                                       for seq, last in incoming))


def _feed(T, lengths, valid, pads, seq, last):
    """The g of reverse_steps for one (seq, last) pair, for t = T-1..0: seq's own rows where
    nothing is to be replaced or added (no generator to resume at each step), else _from_above."""
    if last is None and (seq is None or all(p is None for p in pads)):
        return itertools.repeat(None, T) if seq is None else iter(seq[::-1])
    return _from_above(T, lengths, valid, pads, seq, last)


def _padded_rows(T, valid) -> list:
    """[t] -> the examples padded at step t (an index array), or None where there are none."""
    pads = [None] * T
    if valid is not None:
        for t in np.flatnonzero(~valid.all(axis=1)):
            pads[t] = np.flatnonzero(~valid[t])
    return pads


def _from_above(T, lengths, valid, pads, seq, last):
    """The g of reverse_steps for one (seq, last) pair, for t = T-1..0."""
    ends = _ends_by_step(last, lengths, T)
    buf = None
    for t in range(T - 1, -1, -1):
        g = None if seq is None else seq[t]
        if g is not None and pads[t] is not None:
            if buf is None:
                buf = np.empty(g.shape, dtype=g.dtype)
            buf.fill(0)
            np.copyto(buf, g, where=valid[t][:, None])
            g = buf
        if t in ends:
            g = _plus_last(g, last, ends[t])
        yield g


def _ends_by_step(last, lengths, T) -> dict:
    """{t: examples whose last valid step is t (None: every example)}; empty without `last`."""
    if last is None:
        return {}
    if lengths is None:
        return {T - 1: None}
    end = np.asarray(lengths) - 1
    return {int(t): np.flatnonzero(end == t) for t in np.unique(end)}


def _plus_last(g, last, rows):
    """g + last on `rows` (None: all), as a new array; g may be None (zeros)."""
    out = np.zeros(last.shape, dtype=last.dtype) if g is None else g.copy()
    if rows is None:
        out += last
    else:
        out[rows] += last[rows]
    return out


def flipped_times(T, lengths):
    """The rows of step s of a reversed run, for s = 0..T-1: the time index t = T-1-s (a view)
    without lengths, else (times, arange(B)) with times[b] = lengths[b]-1-s while s < lengths[b]
    and then s (its padded steps, in order), so that each example visits every t once. Index a
    (T, B, ...) array with it to gather (or set) the (B, ...) rows of step s."""
    if lengths is None:
        return [T - 1 - s for s in range(T)]
    lengths = np.asarray(lengths)
    s = np.arange(T)[:, None]
    times = np.where(s < lengths, lengths - 1 - s, s)
    rows = np.arange(len(lengths))
    return [(times[s], rows) for s in range(T)]


def flipped_forward_steps(T, lengths):
    """Yields (at, pad) for the steps s = 0..T-1 of a reversed run: `at` indexes the rows of step
    s (flipped_times), `pad` the examples padded at step s (s >= lengths[b], None where none),
    whose state the cell sets to 0 before writing it."""
    return zip(flipped_times(T, lengths), _padded_rows(T, valid_steps(np, lengths, T)))


def flipped_reverse_steps(T, lengths, seq, last):
    """Yields (at, at_next, g) for s = T-1..0, the backward of a reversed run: `at` the rows of
    step s, `at_next` those of step s+1 (None at s = T-1), g (B, H) the gradient from above on
    step s: seq[at] with its padded rows 0, plus `last` on the examples whose last step is s
    (where t = 0); None when both are absent. seq (T, B, H) and last (B, H) are never written."""
    ats = flipped_times(T, lengths)
    pads = _padded_rows(T, valid_steps(np, lengths, T))
    ends = _ends_by_step(last, lengths, T)
    for s in range(T - 1, -1, -1):
        g = None if seq is None else seq[ats[s]]
        if g is not None and pads[s] is not None:
            g[pads[s]] = 0  # a gather (a copy): pads exist only with lengths
        if s in ends:
            g = _plus_last(g, last, ends[s])
        yield ats[s], ats[s + 1] if s + 1 < T else None, g


def flipped_entries(T, lengths) -> dict:
    """{s: examples whose first step in the backward of a reversed run is s (their t = 0, at
    s = lengths[b]-1), None: every example (at s = T-1 without lengths)}. A carry from the steps
    after the sequence (a later segment of a longer run, cells/recompute.py) enters there; an
    example of length 0 (none of its steps in this segment) takes none."""
    if lengths is None:
        return {T - 1: None}
    return {t: rows for t, rows in _ends_by_step(True, lengths, T).items() if t >= 0}


def entering(nxt, carry, rows):
    """The next step's value `nxt` (B, N) (None: zeros) with `carry`'s rows (None: all) in
    place of its own: what a reversed run's step takes where a carry enters (flipped_entries)."""
    if rows is None:
        return carry
    out = np.zeros_like(carry) if nxt is None else nxt  # with lengths nxt is a gather (a copy)
    out[rows] = carry[rows]
    return out


def previous_states(s, s0, lengths, reverse):
    """The state before each step, in the run's direction, as a new (T, B, H) array: s[t-1]
    (s0 at t = 0), or reversed s[t+1] (s0 at each example's last valid step lengths[b]-1)."""
    prev = np.empty_like(s)
    if reverse:
        prev[:-1] = s[1:]
        prev[-1] = s0
        if lengths is not None:
            rows = np.arange(s.shape[1])
            prev[lengths - 1, rows] = s0[rows]
    else:
        prev[0] = s0
        prev[1:] = s[:-1]
    return prev
