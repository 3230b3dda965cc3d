"""The numpy backend's time loop, shared by every cell (docs/architecture.md §4): the order of the
steps, the padded steps of variable-length batches, and where the gradients from above enter. The
cell supplies only its step; the loop stays plain, with nothing but the recurrence inside it.

Padded steps are t >= lengths[b], a suffix of each example: its state there is 0 and it receives
no gradient. They are set to 0, never multiplied by 0 (NaN·0 and inf·0 are NaN).
"""
from __future__ import annotations

import numpy as np


def valid_steps(xp, lengths, T):
    """(T, B) bool, True where t < lengths[b]; None when lengths is None."""
    if lengths is None:
        return None
    return xp.arange(T)[:, None] < lengths[None, :]


def run_forward(T, lengths, step, *states):
    """step(t) for t = 0..T-1; after each, the padded rows of every (T, B, ...) array in `states`
    (h, and c for a cell that has it) are set to 0 at t, so the next step reads 0 there."""
    valid = valid_steps(np, lengths, T)
    for t in range(T):
        step(t)
        if valid is not None:
            for s in states:
                s[t][~valid[t]] = 0


def run_reverse(T, lengths, step, *incoming):
    """step(t, g, ...) for t = T-1..0, one g per (seq, last) pair in `incoming`: (dh, dh_last),
    and (None, dc_last) for a cell state. g (B, H) is the gradient from above on that state of step
    t: seq[t] with its padded rows 0 (whatever seq holds there), plus `last` on the examples whose
    last valid step is t; None when both are absent (zeros). seq (T, B, H) and last (B, H) may be
    None and are never written; g may be scratch that the next call overwrites."""
    valid = valid_steps(np, lengths, T)
    feeds = [_from_above(T, lengths, valid, seq, last) for seq, last in incoming]
    for t, *g in zip(range(T - 1, -1, -1), *feeds):
        step(t, *g)


def _from_above(T, lengths, valid, seq, last):
    """The g of run_reverse for one (seq, last) pair, for t = T-1..0."""
    ends = _ends_by_step(last, lengths, T)
    buf = None
    for t in range(T - 1, -1, -1):
        g = None if seq is None else seq[t]
        if g is not None and valid is not None and not valid[t].all():
            if buf is None:
                buf = np.empty(g.shape, dtype=g.dtype)
            buf.fill(0)
            np.copyto(buf, g, where=valid[t][:, None])
            g = buf
        if t in ends:
            g = _plus_last(g, last, ends[t])
        yield g


def _ends_by_step(dh_last, lengths, T) -> dict:
    """{t: examples whose last valid step is t (None: every example)}; empty without dh_last."""
    if dh_last is None:
        return {}
    if lengths is None:
        return {T - 1: None}
    last = np.asarray(lengths) - 1
    return {int(t): np.flatnonzero(last == t) for t in np.unique(last)}


def _plus_last(g, dh_last, rows):
    """g + dh_last on `rows` (None: all), as a new array; g may be None (zeros)."""
    out = np.zeros(dh_last.shape, dtype=dh_last.dtype) if g is None else g.copy()
    if rows is None:
        out += dh_last
    else:
        out[rows] += dh_last[rows]
    return out
