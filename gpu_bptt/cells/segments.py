"""Each cell's part of the blocked backward and of recomputation (recompute.py has the scheme): how
a segment's forward is replayed from its checkpoint, how its BPTT takes the carry, and the
reduction of one block. memory="full" runs the same blocks over the arrays its cache holds.
"""
from __future__ import annotations

from .recompute import (Segmented, ending, backward, entering_last, next_state, spans,
                        state_before, sub_lengths)
from .sequence import last_state


class _Cell:
    """What the driver (recompute.backward) calls, for one run: segment(a, e, carry) and
    block(seg, lo, hi, a). `src` is the full cache or the Segmented one."""

    def __init__(self, src, dh, lasts, need_dx, full=None):
        self.src, self.dh, self.lasts, self.need_dx, self.full = src, dh, lasts, need_dx, full
        self.bk = src.backend
        self.xp = self.bk.xp

    def span(self, a, e):
        """(dh, the gradients on the last states, lengths) of the steps [a, e)."""
        s = self.src
        T = s.x.shape[0]
        ends = ending(s.lengths, a, e, T, s.reverse)
        return (None if self.dh is None else self.dh[a:e],
                tuple(entering_last(self.xp, g, ends) for g in self.lasts),
                sub_lengths(self.xp, s.lengths, a, e))

    def block_args(self, seg, lo, hi, a):
        """x, the state before, and the lengths of the block [a+lo, a+hi)."""
        s = self.src
        h0 = s.initial[0] if isinstance(s, Segmented) else s.h0
        return (s.x[a + lo:a + hi],
                state_before(self.xp, seg["h"], lo, hi, seg["start"][0], s.lengths, s.reverse,
                             h0, a),
                sub_lengths(self.xp, s.lengths, a + lo, a + hi))

    def run(self):
        s = self.src
        T, B, _ = s.x.shape
        k = s.k if isinstance(s, Segmented) else T
        I = s.x.shape[2]
        return backward(self.bk, self, T, k, s.lengths, s.reverse, self.need_dx, (T, B, I),
                        s.x.dtype)


# -- Elman -----------------------------------------------------------------------------------------
class _Elman(_Cell):
    def segment(self, a, e, carry):
        s = self.src
        if self.full is not None:
            return {"h": s.h, "du": self.full, "start": (s.h0,)}, None, None
        dh, (dl,), L = self.span(a, e)
        w = s.weights
        state = s.states[a // s.k]
        p = self.bk.input_projection(s.x[a:e], w["W"], w["b"], s.plan.tf32)
        h = self.bk.elman_fwd_seq(p, w["V"], state[0], s.flags["activation"], L, s.plan)
        du = self.bk.elman_bwd_seq(dh, dl, h, w["V"], s.flags["activation"], L, s.plan,
                                   du_next=None if carry is None else carry[0])
        edge = (du[-1] if s.reverse else du[0]).copy()
        return {"h": h, "du": du, "start": state}, (edge,), None

    def block(self, seg, lo, hi, a):
        s = self.src
        W, V = (s.W, s.V) if self.full is not None else (s.weights["W"], s.weights["V"])
        has_bias = s.has_bias if self.full is not None else s.flags["has_bias"]
        x, h0, L = self.block_args(seg, lo, hi, a)
        dx, dW, dV, db, dh0 = self.bk.gradients(x, W, V, h0, seg["h"][lo:hi], seg["du"][lo:hi],
                                                has_bias, self.need_dx, lengths=L,
                                                reverse=s.reverse, tf32=s.plan.tf32)
        return dx, (dW, dV, db), dh0


def elman_grads(cache, dh, dh_last, need_dx, du=None):
    """(dx, dW, dV, db, dh0) of an Elman run: its ElmanCache and du (elman_bwd_seq's), or its
    Segmented cache (recomputed)."""
    dx, (dW, dV, db), dh0, _ = _Elman(cache, dh, (dh_last,), need_dx, du).run()
    return dx, dW, dV, db, dh0


def elman_states(xp, h, h0, lengths, reverse, k):
    """The checkpoints of a run whose h (T, B, H) is at hand: the state before each segment."""
    T = h.shape[0]
    out = []
    for a, e in spans(T, k, True):  # time order
        if not reverse:
            out.append((h0,) if a == 0 else (h[a - 1].copy(),))
        else:
            out.append((h0,) if e == T else
                       (h[e].copy() if lengths is None
                        else xp.where((lengths > e)[:, None], h[e], h0),))
    return out


# -- LSTM ------------------------------------------------------------------------------------------
class _LSTM(_Cell):
    def segment(self, a, e, carry):
        s = self.src
        if self.full is not None:
            du, dc0, dhs = self.full
            return ({"h": s.h, "c": s.c, "gates": s.gates, "du": du, "dhs": dhs,
                     "start": (s.h0, s.c0)}, None, (dc0,))
        dh, (dl, dcl), L = self.span(a, e)
        w = s.weights
        state = s.states[a // s.k]
        p = self.bk.input_projection(s.x[a:e], w["W"], w["b"], s.plan.tf32)
        h, c, g = self.bk.lstm_fwd_seq(p, w["V"], state[0], state[1], L, s.plan, w["R"])
        du_n, dc_n = (None, None) if carry is None else carry
        du, dc0, dhs = self.bk.lstm_bwd_seq(dh, dl, dcl, h, c, g, state[1], w["V"], L, s.plan,
                                            w["R"], du_next=du_n, dc_next=dc_n)
        edge = (du[-1] if s.reverse else du[0]).copy()
        return ({"h": h, "c": c, "gates": g, "du": du, "dhs": dhs, "start": state},
                (edge, dc0), (dc0,))

    def block(self, seg, lo, hi, a):
        s = self.src
        if self.full is not None:
            W, V, has_bias = s.W, s.V, s.has_bias
        else:
            W, V, has_bias = s.weights["W"], s.weights["V"], s.flags["has_bias"]
        x, h0, L = self.block_args(seg, lo, hi, a)
        dhs = None if seg["dhs"] is None else seg["dhs"][lo:hi]
        dx, dW, dV, db, dh0, dR = self.bk.lstm_gradients(
            x, W, V, h0, seg["h"][lo:hi], seg["c"][lo:hi], seg["gates"][lo:hi], seg["du"][lo:hi],
            dhs, has_bias, self.need_dx, lengths=L, reverse=s.reverse, tf32=s.plan.tf32)
        return dx, (dW, dV, db, dR), dh0


def lstm_grads(cache, dh, dh_last, dc_last, need_dx, result=None):
    """(dx, dW, dV, db, dR, dh0, dc0) of an LSTM run: its LSTMCache and lstm_bwd_seq's result,
    or its Segmented cache."""
    dx, (dW, dV, db, dR), dh0, (dc0,) = _LSTM(cache, dh, (dh_last, dc_last), need_dx,
                                             result).run()
    return dx, dW, dV, db, dR, dh0, dc0


def lstm_forward(bk, x, W, V, b, h0, c0, R, lengths, plan, k):
    """The forward of a recompute run, segment by segment (no array of T steps but h): returns
    (h, c_last, the checkpoints)."""
    xp = bk.xp
    T, B, _ = x.shape
    h = xp.empty((T, B, h0.shape[1]), dtype=x.dtype)
    c_last = xp.zeros_like(c0)

    def run(a, e, state):
        nonlocal c_last
        L = sub_lengths(xp, lengths, a, e)
        hs, cs, _ = bk.lstm_fwd_seq(bk.input_projection(x[a:e], W, b, plan.tf32), V, state[0], state[1],
                                    L, plan, R)
        h[a:e] = hs
        c_last = _merge(xp, c_last, last_state(xp, cs, L, plan.reverse),
                        ending(lengths, a, e, T, plan.reverse))
        return next_state(xp, (hs, cs), lengths, a, plan.reverse, (h0, c0))
    states = _states(run, T, k, plan.reverse, (h0, c0))
    return h, c_last, states


# -- GRU -------------------------------------------------------------------------------------------
class _GRU(_Cell):
    def segment(self, a, e, carry):
        s = self.src
        if self.full is not None:
            dgx, dh0 = self.full
            return {"h": s.h, "gates": s.gates, "du": dgx, "start": (s.h0,)}, None, (dh0,)
        dh, (dl,), L = self.span(a, e)
        w = s.weights
        state = s.states[a // s.k]
        p = self.bk.input_projection(s.x[a:e], w["W"], w["b_x"], s.plan.tf32)
        h, g = self.bk.gru_fwd_seq(p, w["V"], w["b_h"], state[0], L, s.plan)
        dgx, back = self.bk.gru_bwd_seq(dh, dl, h, state[0], g, w["V"], L, s.plan,
                                        dh_next=None if carry is None else carry[0])
        return {"h": h, "gates": g, "du": dgx, "start": state}, (back,), (back,)

    def block(self, seg, lo, hi, a):
        s = self.src
        if self.full is not None:
            W, V, bx, bh = s.W, s.V, s.has_b_x, s.has_b_h
        else:
            W, V = s.weights["W"], s.weights["V"]
            bx, bh = s.flags["has_b_x"], s.flags["has_b_h"]
        x, h0, L = self.block_args(seg, lo, hi, a)
        dx, dW, dV, db_x, db_h = self.bk.gru_gradients(
            x, W, V, h0, seg["h"][lo:hi], seg["gates"][lo:hi], seg["du"][lo:hi], bx, bh,
            self.need_dx, lengths=L, reverse=s.reverse, tf32=s.plan.tf32)
        return dx, (dW, dV, db_x, db_h), None


def gru_grads(cache, dh, dh_last, need_dx, result=None):
    """(dx, dW, dV, db_x, db_h, dh0) of a GRU run: its GRUCache and gru_bwd_seq's result, or its
    Segmented cache."""
    dx, (dW, dV, db_x, db_h), _, (dh0,) = _GRU(cache, dh, (dh_last,), need_dx, result).run()
    return dx, dW, dV, db_x, db_h, dh0


def gru_forward(bk, x, W, V, b_x, b_h, h0, lengths, plan, k):
    """The forward of a recompute run, segment by segment: returns (h, the checkpoints)."""
    xp = bk.xp
    T, B, _ = x.shape
    h = xp.empty((T, B, h0.shape[1]), dtype=x.dtype)

    def run(a, e, state):
        L = sub_lengths(xp, lengths, a, e)
        hs, _ = bk.gru_fwd_seq(bk.input_projection(x[a:e], W, b_x, plan.tf32), V, b_h, state[0], L, plan)
        h[a:e] = hs
        return next_state(xp, (hs,), lengths, a, plan.reverse, (h0,))
    return h, _states(run, T, k, plan.reverse, (h0,))


# -- shared ----------------------------------------------------------------------------------------
def _states(run, T, k, reverse, initial):
    """Runs run(a, e, state) -> state after, over the segments in the forward's order (reversed:
    the last first); returns the state before each segment, in time order."""
    order = spans(T, k, not reverse)  # the forward visits them in the backward's order reversed
    states = [None] * len(order)
    state = initial
    for a, e in order:
        states[a // k] = state
        state = run(a, e, state)
    return states


def _merge(xp, have, new, mask):
    """have with new's rows where mask holds (None: all; False: none)."""
    if mask is False:
        return have
    return new if mask is None else xp.where(mask[:, None], new, have)
