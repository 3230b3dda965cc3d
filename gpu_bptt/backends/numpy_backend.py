"""The NumPy backend: the reference every kernel is checked against.

A plain time loop with only the recurrence inside it (docs/architecture.md §4): the loop, shared by
every cell, is time_loop.py; a cell adds its steps here. `<cell>_fwd_step` and `<cell>_bwd_step`
(elman, lstm, gru) are the NumPy twins of the CUDA step kernels of the same names.

Speed notes (it is also the CPU backend users run): each step writes into buffers allocated once
per call (`out=`), because a fresh multi-megabyte temporary costs more in page faults than the
arithmetic on it; f'(u) for all T is computed once, before the loop, into the array that then
receives du, so the backward holds one (T, B, H) work array and never copies dh.

Precision modes (precision.py; docs/architecture.md §1): a sequence method runs on work arrays
(float32 for a 16-bit storage dtype S: its values are exact there) and a step takes the call's
`mode`: `mode.operand` on what enters a product (TF32 rounding), `mode.store` on what is kept
between steps or returned (rounded to S values once, after every use of the unrounded value in
the step); the method returns S arrays (the LSTM's c stays float32). Without a mode
(mode=None) a step is the plain float32/float64 one.
"""
from __future__ import annotations

import zlib

import numpy as np

from .. import activations
from ..precision import STORAGE, Mode
from .base import Backend
from .time_loop import (entering, flipped_entries, flipped_forward_steps, flipped_reverse_steps,
                        forward_steps, previous_states, reverse_steps, valid_steps)


def _operand(mode, a):
    """a as it enters a product in `mode` (precision.Mode.operand; None: as it is)."""
    return a if mode is None else mode.operand(a)


def _store(mode, a):
    """a rounded in place as it is stored in `mode` (precision.Mode.store; None: as it is)."""
    return a if mode is None else mode.store(a)


def elman_fwd_step(p_t, h_prev, V, activation, out=None, acc=None, mode=None):
    """h[t] = f(p[t] + h[t-1] @ V).  p_t, h_prev: (B, H); V: (H, H). Returns (B, H).

    `out` may alias `p_t` (the sequence driver writes h over p in place); `acc` is an optional
    (B, H) scratch buffer that must alias neither. mode: the call's precision.Mode (V already
    its operand), or None."""
    acc = np.dot(_operand(mode, h_prev), V, out=acc)
    acc += p_t
    return _store(mode, activations.apply(np, activation, acc, out=out))


def elman_bwd_step(dh_t, du_next, VT, fprime_t, out=None, acc=None, mode=None):
    """du[t] = (dh[t] + du[t+1] @ V.T) * f'(u[t]).  All (B, H) but VT (H, H); dh_t and du_next may
    be None (zeros). `out` may alias `fprime_t`; `acc` is an optional (B, H) scratch buffer.
    mode: as elman_fwd_step's."""
    if du_next is None:
        if dh_t is None:
            return np.multiply(fprime_t, 0, out=out)
        return _store(mode, np.multiply(dh_t, fprime_t, out=out))
    acc = np.dot(_operand(mode, du_next), VT, out=acc)
    if dh_t is not None:
        acc += dh_t
    return _store(mode, np.multiply(acc, fprime_t, out=out))


# The gates' sigmoids are written σ(a) = (1 + tanh(a/2)) / 2: NumPy's tanh is vectorized and needs
# no clamp against overflow, and the LSTM's four gates then take one tanh over the (B, 4H) block
# (g's tanh(1·a)·1 + 0 is exact). The small-batch CPU presets spend their time in these calls.
def _sigmoid(a):
    """σ(a) in place, as (1 + tanh(a/2)) / 2."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def lstm_gate_affine(H, dtype):
    """(2, 4H): per column of [i|f|g|o], the scale k and offset d with act(u) = k·tanh(k·u) + d:
    k = 1/2, d = 1/2 for the sigmoid gates; k = 1, d = 0 for g."""
    kd = np.full((2, 4 * H), 0.5, dtype=dtype)
    kd[0, 2 * H:3 * H], kd[1, 2 * H:3 * H] = 1, 0
    return kd


def lstm_fwd_step(p_t, h_prev, c_prev, V, h_out, c_out, R=None, acc=None, m=None, kd=None,
                  mode=None):
    """One LSTM step (docs/architecture.md §1): u = p[t] + h[t-1] @ V, the gates
    [i|f|g|o] = [σ|σ|tanh|σ](u) written over p_t (B, 4H); c_out = f·c_prev + i·g;
    h_out = o·tanh(c_out), times R (H, P) when given. h_prev (B, Hs), V (Hs, 4H), c_prev (B, H).
    h_out may alias h_prev and c_out c_prev; acc (B, 4H) and m (B, H) are optional scratch;
    kd: lstm_gate_affine(H, dtype), made here when not given. mode: as elman_fwd_step's (R
    too); c is not rounded, m is where it enters the product with R. Returns (h_out, c_out)."""
    H = c_prev.shape[1]
    k, d = lstm_gate_affine(H, p_t.dtype) if kd is None else kd
    acc = np.dot(_operand(mode, h_prev), V, out=acc)
    p_t += acc
    p_t *= k
    np.tanh(p_t, out=p_t)
    p_t *= k
    p_t += d
    i, f, g, o = (p_t[:, j * H:(j + 1) * H] for j in range(4))
    m = np.multiply(i, g, out=m)
    np.multiply(f, c_prev, out=c_out)
    c_out += m
    np.tanh(c_out, out=m)
    if R is None:
        np.multiply(m, o, out=h_out)
    else:
        m *= o
        np.dot(_operand(mode, _store(mode, m)), R, out=h_out)
    _store(mode, p_t)  # the gates, once c and h have used them
    return _store(mode, h_out), c_out


def lstm_bwd_factors(gates, c, c_prev):
    """What the backward needs of each step before its gradient is known, for all T at once
    (docs/architecture.md §1): du (T, B, 4H) = [g·i(1-i) | c_prev·f(1-f) | i(1-g²) | tc·o(1-o)]
    and a (T, B, H) = o·(1-tc²), tc = tanh(c); step t then multiplies du[t]'s first three blocks by
    its dc and the last by its dm (lstm_bwd_step). From the saved gates (T, B, 4H) = [i|f|g|o], c
    and c_prev (T, B, H), the cell state before each step (consumed: its memory is reused). Zero
    at padded steps, where the gates are."""
    H = c.shape[2]
    i, f, g, o = (gates[:, :, j * H:(j + 1) * H] for j in range(4))
    du = np.empty_like(gates)
    di, df, dg, do = (du[:, :, j * H:(j + 1) * H] for j in range(4))
    np.subtract(1, i, out=di)
    di *= i
    di *= g
    np.subtract(1, f, out=df)
    df *= f
    df *= c_prev
    np.multiply(g, g, out=dg)
    np.subtract(1, dg, out=dg)
    dg *= i
    a = np.tanh(c)
    np.subtract(1, o, out=do)
    do *= o
    do *= a
    a *= a
    np.subtract(1, a, out=a)
    a *= o
    return du, a


def lstm_bwd_step(dh_t, du_next, VT, dc, fac, a_t, f_t, dhs, RT=None, dm=None, work=None,
                  mode=None):
    """One step back through the LSTM (forward direction; docs/architecture.md §1):
    dhs (B, Hs) = dh[t] + du[t+1] @ V.T (dh_t (B, Hs), du_next (B, 4H): None for zeros; VT
    (4H, Hs)); dm = dhs @ R.T (RT (P, H)) or dhs; dc (B, H), in place: on entry the gradient on
    c[t] from step t+1 and from above, on exit the one passed to c[t-1] (dc·f). fac (B, 4H), in
    place: on entry step t's lstm_bwd_factors, on exit du[t] = [dc·.. | dc·.. | dc·.. | dm·..]
    with dc += dm·a_t first; f_t (B, H) the forget gate. dm (B, H) and work (B, H) are optional
    scratch. mode: as elman_fwd_step's; dc is not rounded, dhs is with a projection (it enters
    the product with R.T and is kept for dR). Returns (fac, dhs)."""
    B, H = dc.shape
    if du_next is not None:
        np.dot(_operand(mode, du_next), VT, out=dhs)
        if dh_t is not None:
            dhs += dh_t
    elif dh_t is not None:
        np.copyto(dhs, dh_t)
    else:
        dhs.fill(0)
    dm = dhs if RT is None else np.dot(_operand(mode, _store(mode, dhs)), RT, out=dm)
    dc += np.multiply(dm, a_t, out=work)
    blocks = fac.reshape(B, 4, H)  # a view: fac's rows are contiguous
    blocks[:, :3] *= dc[:, None, :]
    blocks[:, 3] *= dm
    dc *= f_t
    return _store(mode, fac), dhs


def gru_fwd_step(p_t, h_prev, V, b_h, gates_out, h_out, acc=None, mode=None):
    """One GRU step (docs/architecture.md §1): [hr|hz|hn] = h[t-1] @ V + b_h (b_h (3H,) or None),
    r = σ(p_r + hr), z = σ(p_z + hz), n = tanh(p_n + r·hn), h = (1-z)·n + z·h[t-1]. p_t (B, 3H) is
    only read; gates_out (B, 4H) receives [r|z|n|hn]; h_out (B, H) may alias h_prev; acc (B, 3H)
    is optional scratch. mode: as elman_fwd_step's. Returns h_out."""
    H = h_prev.shape[1]
    acc = np.dot(_operand(mode, h_prev), V, out=acc)
    if b_h is not None:
        acc += b_h
    rz, n, hn = gates_out[:, :2 * H], gates_out[:, 2 * H:3 * H], gates_out[:, 3 * H:]
    np.add(p_t[:, :2 * H], acc[:, :2 * H], out=rz)
    _sigmoid(rz)
    np.copyto(hn, acc[:, 2 * H:])
    np.multiply(gates_out[:, :H], hn, out=n)
    n += p_t[:, 2 * H:]
    np.tanh(n, out=n)
    np.subtract(h_prev, n, out=h_out)       # h = n + z·(h[t-1] - n)
    h_out *= gates_out[:, H:2 * H]
    h_out += n
    _store(mode, gates_out)
    return _store(mode, h_out)


def gru_bwd_factors(gates, h_prev):
    """What the backward needs of each step before its gradient is known, for all T at once
    (docs/architecture.md §1): dgx (T, B, 3H) = [hn·r(1-r) | (h_prev-n)·z(1-z) | (1-z)(1-n²)];
    step t multiplies the last two blocks by its dhs and the first by the result's last
    (gru_bwd_step). From the saved gates (T, B, 4H) = [r|z|n|hn] and h_prev (T, B, H), the state
    before each step (consumed: its memory is reused). Padded steps (gates 0) give [0 | 0 | 1]:
    they receive dhs = 0."""
    T, B, H = h_prev.shape
    r, z, n, hn = (gates[:, :, j * H:(j + 1) * H] for j in range(4))
    dgx = np.empty((T, B, 3 * H), dtype=gates.dtype)
    fr, fz, fn = (dgx[:, :, j * H:(j + 1) * H] for j in range(3))
    np.subtract(1, r, out=fr)
    fr *= r
    fr *= hn
    np.subtract(h_prev, n, out=fz)
    one_z = np.subtract(1, z, out=h_prev)
    fz *= z
    fz *= one_z
    np.multiply(n, n, out=fn)
    np.subtract(1, fn, out=fn)
    fn *= one_z
    return dgx


def gru_bwd_step(dh_t, carry, VT, fac, r_t, z_t, dgh, dhs, work, mode=None):
    """One step back through the GRU (forward direction; docs/architecture.md §1). carry (B, H),
    in place: on entry the gradient on h[t] from step t+1, on exit the one passed to h[t-1]
    (dgh @ V.T + dhs·z). dhs (B, H) receives dh[t] + carry (dh_t (B, H) or None). fac (B, 3H),
    in place: on entry step t's gru_bwd_factors, on exit dgx[t] = [gr|gz|gn] (the gradient on
    p[t]). r_t, z_t (B, H): the step's gates; VT (3H, H); dgh (B, 3H) and work (B, H) scratch.
    mode: as elman_fwd_step's; dgx, dgh (the product's operand) and the carried dhs·z are
    rounded. Returns fac."""
    B, H = carry.shape
    if dh_t is None:
        np.copyto(dhs, carry)
    else:
        np.add(dh_t, carry, out=dhs)
    fac.reshape(B, 3, H)[:, 1:] *= dhs[:, None, :]   # gz, gn (a view: fac's rows are contiguous)
    fac[:, :H] *= fac[:, 2 * H:]                      # gr = gn·hn·r(1-r)
    _store(mode, fac)
    np.copyto(dgh[:, :2 * H], fac[:, :2 * H])
    np.multiply(fac[:, 2 * H:], r_t, out=dgh[:, 2 * H:])
    np.dot(_operand(mode, _store(mode, dgh)), VT, out=carry)
    carry += _store(mode, np.multiply(dhs, z_t, out=work))
    return fac


class NumpyBackend(Backend):
    name = "numpy"
    algos = ("auto", "step")
    takes_strided = True  # BLAS takes transposed operands as they are: no copy of weight views
    dtypes = tuple(d.name for d in STORAGE)
    tf32 = True

    def __init__(self):
        super().__init__(np)

    def asarray(self, a, dtype=None):
        return np.asarray(self.to_numpy(a), dtype=dtype)

    def carry_refusal(self, plan):
        return None

    def digest(self, a):
        """CRC-32 of a's bytes (row by row where `a` is a strided view): on the CPU about twice
        as fast as the generic sum; it misses a change with a chance of about 2^-32."""
        if a.flags.c_contiguous:
            return zlib.crc32(a)
        crc = 0
        for row in a:
            crc = zlib.crc32(np.ascontiguousarray(row), crc)
        return crc

    def elman_fwd_seq(self, p, V, h0, activation, lengths, plan):
        mode = Mode.of(plan)
        p, h0 = mode.to_work(p), mode.to_work(h0)
        V = mode.operand(mode.to_work(V))
        T, B, H = p.shape
        h = p  # h[t] overwrites p[t] once it is consumed
        acc = np.empty((B, H), dtype=p.dtype)
        h_prev = h0
        if plan.reverse:
            for at, pad in flipped_forward_steps(T, lengths):
                p_s = p[at]  # a gather (a copy) with lengths, else a view
                h_prev = elman_fwd_step(p_s, h_prev, V, activation, out=p_s, acc=acc, mode=mode)
                if pad is not None:
                    h_prev[pad] = 0
                h[at] = h_prev
            return mode.to_storage(h)
        for t in forward_steps(T, lengths, h):
            h_prev = elman_fwd_step(p[t], h_prev, V, activation, out=h[t], acc=acc, mode=mode)
        return mode.to_storage(h)

    def elman_bwd_seq(self, dh, dh_last, h, V, activation, lengths, plan, du_next=None):
        mode = Mode.of(plan)
        dh, dh_last, h = mode.to_work(dh), mode.to_work(dh_last), mode.to_work(h)
        du_next = mode.to_work(du_next)
        T, B, H = h.shape
        # du starts as f'(u) (zero at padded steps); step t overwrites du[t] with its gradient.
        du = activations.derivative_from_output(np, activation, h, out=np.empty_like(h))
        valid = valid_steps(np, lengths, T)
        if valid is not None:
            du *= valid[:, :, None]  # f'(u) is finite there: h is exactly 0 at padded steps
        VT = mode.operand(np.ascontiguousarray(mode.to_work(V).T))
        acc = np.empty((B, H), dtype=h.dtype)
        if plan.reverse:
            entries = {} if du_next is None else flipped_entries(T, lengths)
            for s, (at, at_next, g) in zip(range(T - 1, -1, -1),
                                           flipped_reverse_steps(T, lengths, dh, dh_last)):
                du_s = du[at]
                nxt = None if at_next is None else du[at_next]
                if s in entries:
                    nxt = entering(nxt, du_next, entries[s])
                du[at] = elman_bwd_step(g, nxt, VT, du_s, out=du_s, acc=acc, mode=mode)
            return mode.to_storage(du)
        for t, g in reverse_steps(T, lengths, (dh, dh_last)):
            elman_bwd_step(g, du[t + 1] if t + 1 < T else du_next, VT, du[t], out=du[t], acc=acc,
                           mode=mode)
        return mode.to_storage(du)

    def lstm_fwd_seq(self, p, V, h0, c0, lengths, plan, R=None):
        mode = Mode.of(plan)
        p, h0, c0 = mode.to_work(p), mode.to_work(h0), mode.to_work(c0)
        V, R = mode.operand(mode.to_work(V)), mode.operand(mode.to_work(R))
        T, B, G = p.shape
        H, Hs = G // 4, h0.shape[1]
        gates = p  # step t turns p[t] into its gates
        h = np.empty((T, B, Hs), dtype=p.dtype)
        c = np.empty((T, B, H), dtype=p.dtype)
        acc = np.empty((B, G), dtype=p.dtype)
        m = np.empty((B, H), dtype=p.dtype)
        kd = lstm_gate_affine(H, p.dtype)
        h_prev, c_prev = h0, c0
        if plan.reverse:
            h_s, c_s = np.empty((B, Hs), dtype=p.dtype), np.empty((B, H), dtype=p.dtype)
            for at, pad in flipped_forward_steps(T, lengths):
                g_s = p[at]  # a gather (a copy) with lengths, else a view
                h_prev, c_prev = lstm_fwd_step(g_s, h_prev, c_prev, V, h_s, c_s, R, acc, m, kd,
                                               mode)
                if pad is not None:
                    for a in (g_s, h_s, c_s):
                        a[pad] = 0
                gates[at], h[at], c[at] = g_s, h_s, c_s
        else:
            for t in forward_steps(T, lengths, h, c, gates):
                h_prev, c_prev = lstm_fwd_step(p[t], h_prev, c_prev, V, h[t], c[t], R, acc, m,
                                               kd, mode)
        return mode.to_storage(h), c, mode.to_storage(gates)

    def lstm_bwd_seq(self, dh, dh_last, dc_last, h, c, gates, c0, V, lengths, plan, R=None,
                     du_next=None, dc_next=None):
        mode = Mode.of(plan)
        dh, dh_last, dc_last = (mode.to_work(a) for a in (dh, dh_last, dc_last))
        c, gates, c0 = mode.to_work(c), mode.to_work(gates), mode.to_work(c0)
        du_next, dc_next = mode.to_work(du_next), mode.to_work(dc_next)
        T, B, H = c.shape
        Hs = h.shape[2]
        dtype = c.dtype
        VT = mode.operand(np.ascontiguousarray(mode.to_work(V).T))
        RT = None if R is None else mode.operand(np.ascontiguousarray(mode.to_work(R).T))
        c_prev = previous_states(c, c0, lengths, plan.reverse)
        du, a = lstm_bwd_factors(gates, c, c_prev)
        f = gates[:, :, H:2 * H]
        dhs = None if R is None else np.empty((T, B, Hs), dtype=dtype)  # kept for dR
        dhs_s = np.empty((B, Hs), dtype=dtype)
        dc = np.zeros((B, H), dtype=dtype)
        dm = None if R is None else np.empty((B, H), dtype=dtype)
        work = c_prev[0]  # scratch: c_prev is consumed
        if plan.reverse:
            carry, du_next = du_next, None
            entries = {} if carry is None else flipped_entries(T, lengths)
            steps = zip(range(T - 1, -1, -1), flipped_reverse_steps(T, lengths, dh, dh_last),
                        flipped_reverse_steps(T, lengths, None, dc_last))
            for s, (at, _, gh), (_, _, gc) in steps:
                if s in entries:
                    du_next = entering(du_next, carry, entries[s])
                    dc[...] = entering(dc.copy(), dc_next, entries[s])
                if gc is not None:
                    dc += gc
                fac = du[at]  # a gather (a copy) with lengths, else a view
                du_next, _ = lstm_bwd_step(gh, du_next, VT, dc, fac, a[at], f[at], dhs_s, RT,
                                           dm, work, mode)
                if lengths is not None:
                    du[at] = fac
                if dhs is not None:
                    dhs[at] = dhs_s
        else:
            if dc_next is not None:
                dc[...] = dc_next
            for t, gh, gc in reverse_steps(T, lengths, (dh, dh_last), (None, dc_last)):
                if gc is not None:
                    dc += gc
                lstm_bwd_step(gh, du[t + 1] if t + 1 < T else du_next, VT, dc, du[t], a[t], f[t],
                              dhs_s if dhs is None else dhs[t], RT, dm, work, mode)
        return mode.to_storage(du), mode.to_storage(dc), mode.to_storage(dhs)

    def gru_fwd_seq(self, p, V, b_h, h0, lengths, plan):
        mode = Mode.of(plan)
        p, b_h, h0 = mode.to_work(p), mode.to_work(b_h), mode.to_work(h0)
        V = mode.operand(mode.to_work(V))
        T, B, G = p.shape
        H = G // 3
        gates = np.empty((T, B, 4 * H), dtype=p.dtype)
        h = np.empty((T, B, H), dtype=p.dtype)
        acc = np.empty((B, G), dtype=p.dtype)
        h_prev = h0
        if plan.reverse:
            g_s, h_s = np.empty((B, 4 * H), dtype=p.dtype), np.empty((B, H), dtype=p.dtype)
            for at, pad in flipped_forward_steps(T, lengths):
                h_prev = gru_fwd_step(p[at], h_prev, V, b_h, g_s, h_s, acc, mode)
                if pad is not None:
                    g_s[pad] = 0
                    h_s[pad] = 0
                gates[at], h[at] = g_s, h_s
        else:
            for t in forward_steps(T, lengths, h, gates):
                h_prev = gru_fwd_step(p[t], h_prev, V, b_h, gates[t], h[t], acc, mode)
        return mode.to_storage(h), mode.to_storage(gates)

    def gru_bwd_seq(self, dh, dh_last, h, h0, gates, V, lengths, plan, dh_next=None):
        mode = Mode.of(plan)
        dh, dh_last, h, h0, gates = (mode.to_work(a) for a in (dh, dh_last, h, h0, gates))
        dh_next = mode.to_work(dh_next)
        T, B, H = h.shape
        dtype = h.dtype
        VT = mode.operand(np.ascontiguousarray(mode.to_work(V).T))
        h_prev = previous_states(h, h0, lengths, plan.reverse)
        dgx = gru_bwd_factors(gates, h_prev)
        r, z = gates[:, :, :H], gates[:, :, H:2 * H]
        carry = np.zeros((B, H), dtype=dtype)  # ends as dh0
        dgh = np.empty((B, 3 * H), dtype=dtype)
        dhs, work = np.empty((B, H), dtype=dtype), h_prev[0]  # h_prev is consumed: scratch
        if plan.reverse:
            entries = {} if dh_next is None else flipped_entries(T, lengths)
            for s, (at, _, gh) in zip(range(T - 1, -1, -1),
                                      flipped_reverse_steps(T, lengths, dh, dh_last)):
                if s in entries:
                    carry[...] = entering(carry.copy(), dh_next, entries[s])
                fac = dgx[at]  # a gather (a copy) with lengths, else a view
                gru_bwd_step(gh, carry, VT, fac, r[at], z[at], dgh, dhs, work, mode)
                if lengths is not None:
                    dgx[at] = fac
        else:
            if dh_next is not None:
                carry[...] = dh_next
            for t, gh in reverse_steps(T, lengths, (dh, dh_last)):
                gru_bwd_step(gh, carry, VT, dgx[t], r[t], z[t], dgh, dhs, work, mode)
        return mode.to_storage(dgx), mode.to_storage(carry)
