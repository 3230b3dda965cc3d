"""The time loops of every cell, compiled by Numba (docs/architecture.md §2, the cpu backend).

Each function is one cell's whole `*_fwd_seq` / `*_bwd_seq` of backends/base.py: the step's
product by NumPy's own BLAS (`matmul`, blas.py), everything else in one compiled pass per step
over the rows, with no Python between the steps. The formulas and the order of each operation
are those of numpy_backend.py's steps, written per element, and the products are NumPy's bit for
bit; tanh (`tanh` below: Eigen's form in float32, libm's in float64) and exp are not NumPy's.

Direction and padding without masks: step s of row b is valid while s < lens[b] (lens = T
without lengths); its time index is `step_time` (reverse: lens[b]-1-s, then s on its padded
steps, as time_loop.flipped_times). The state carried between steps is a buffer of the chunk's
rows: each step's product reads it whole whatever the direction. Optional arrays arrive as empty arrays of
the call's dtype and a flag, so each function compiles once per dtype.

A backward's carry (a later segment's, cells/recompute.py; `has_carry`) enters row b's state at
its first step processed, where the whole run's previous step would have left it: at s = T-1
forward, at s = lens[b]-1 (its t = 0) reversed, and not where that step is padded (`enters`).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import blas

_INT = types.int64 if blas.register() else types.int32  # the BLAS's integers
_E, _P = types.int32, types.intp  # CBLAS enums; pointers, passed as integers


def _gemm(name, real):
    return types.ExternalFunction(name, types.void(_E, _E, _E, _INT, _INT, _INT, real, _P, _INT,
                                                   _P, _INT, real, _P, _INT))


def _gemv(name, real):
    return types.ExternalFunction(name, types.void(_E, _E, _INT, _INT, real, _P, _INT, _P, _INT,
                                                   real, _P, _INT))


sgemm, dgemm = _gemm("gpu_bptt_sgemm", types.float32), _gemm("gpu_bptt_dgemm", types.float64)
sgemv, dgemv = _gemv("gpu_bptt_sgemv", types.float32), _gemv("gpu_bptt_dgemv", types.float64)

#: every loop is cached on disk (the first call of a cell, direction and dtype compiles it);
#: NumPy's error model: a division has no zero check, without which no loop with one vectorizes
JIT = dict(cache=True, nogil=True, error_model="numpy")

# Eigen's float32 tanh (the one XLA uses): a rational 13/6 approximation on [-7.9, 7.9], within a
# few ulp of tanh, that LLVM vectorizes; libm's tanhf is a call per element, ~6x slower here.
_CLAMP = np.float32(7.90531110763549805)
P0, P1, P2, P3, P4, P5, P6 = (np.float32(v) for v in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03))
Q0, Q1, Q2, Q3 = (np.float32(v) for v in (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03))


def tanh(x):
    """tanh of one float: Eigen's rational form in float32, libm's in float64 (compiled only)."""
    raise NotImplementedError("compiled code only")


@overload(tanh)
def _tanh_impl(x):
    if x == types.float32:
        def tanh32(x):
            x = min(max(x, -_CLAMP), _CLAMP)  # no branch: the loops calling it vectorize
            x2 = x * x
            p = ((((((P0 * x2 + P1) * x2 + P2) * x2 + P3) * x2 + P4) * x2 + P5) * x2 + P6) * x
            q = ((Q0 * x2 + Q1) * x2 + Q2) * x2 + Q3
            return p / q
        return tanh32
    return lambda x: math.tanh(x)


@njit
def matmul(a, b, out):
    """out = a @ b as np.dot computes it: a (M, K) and out (M, N) C-contiguous, b (K, N)
    C- or F-contiguous (a transposed view); one row (M = 1) by gemv, as NumPy does."""
    M, K = a.shape
    N = b.shape[1]
    trans = not b.flags.c_contiguous  # F: b is the transpose of a C (N, K) array
    ldb = K if trans else N
    pa, pb, pc = a.ctypes.data, b.ctypes.data, out.ctypes.data
    if M == 1:  # y = bᵀ-wise product of the row: b (K, N) row-major, or its transpose
        if a.itemsize == 4:
            sgemv(blas.ROW_MAJOR, blas.NO_TRANS if trans else blas.TRANS, N if trans else K,
                  K if trans else N, np.float32(1), pb, ldb, pa, 1, np.float32(0), pc, 1)
        else:
            dgemv(blas.ROW_MAJOR, blas.NO_TRANS if trans else blas.TRANS, N if trans else K,
                  K if trans else N, 1.0, pb, ldb, pa, 1, 0.0, pc, 1)
        return
    tb = blas.TRANS if trans else blas.NO_TRANS
    if a.itemsize == 4:
        sgemm(blas.ROW_MAJOR, blas.NO_TRANS, tb, M, N, K, np.float32(1), pa, K, pb, ldb,
              np.float32(0), pc, N)
    else:
        dgemm(blas.ROW_MAJOR, blas.NO_TRANS, tb, M, N, K, 1.0, pa, K, pb, ldb, 0.0, pc, N)


# Row helpers: plain loops compile in a fraction of the time Numba's slice assignment takes.
@njit
def clear(a):
    """a[...] = 0 for a contiguous row or (B, ·) block."""
    a = a.reshape(-1)
    for i in range(a.size):
        a[i] = 0


@njit
def copy(dst, src):
    """dst[...] = src, both contiguous and of one size."""
    dst, src = dst.reshape(-1), src.reshape(-1)
    for i in range(dst.size):
        dst[i] = src[i]


@njit
def add(dst, src):
    """dst += src, both contiguous and of one size."""
    dst, src = dst.reshape(-1), src.reshape(-1)
    for i in range(dst.size):
        dst[i] += src[i]


@njit
def add_from_above(row, dh, has_dh, dh_last, last, t, b):
    """row += the gradient from above on step t of row b: dh[t, b] (+ dh_last[b] at its last
    step), summed first as time_loop's feed does."""
    if has_dh:
        g = dh[t, b]
        if last:
            for j in range(row.size):
                row[j] += g[j] + dh_last[b, j]
        else:
            add(row, g)
    elif last:
        add(row, dh_last[b])


@njit
def step_time(s, b, lens, rev):
    """The time index of row b at step s of the run."""
    if not rev or s >= lens[b]:
        return s
    return lens[b] - 1 - s


@njit
def enters(has_carry, s, b, lens, rev, T):
    """Whether a carry enters row b's state at step s of a backward (see the module's doc)."""
    return has_carry and s == lens[b] - 1 and (rev or s == T - 1)


@njit
def consts(a):
    """(0, 1/2, 1) in a's dtype (a literal would promote float32 arithmetic to float64)."""
    c = np.array([0.0, 0.5, 1.0]).astype(a.dtype)
    return c[0], c[1], c[2]


# -- Elman -----------------------------------------------------------------------------------------
# Each loop runs the rows b0..b1-1 of the batch: rows are independent through the whole recurrence
# (row b's step reads only row b's state), so the cpu backend runs chunks of rows on threads of
# their own with no synchronization between steps. Arrays indexed by b are the whole batch's; the
# state buffers carried between steps (k = b - b0) are the chunk's own.
@njit(**JIT)
def elman_fwd(p, V, h0, act, lens, rev, b0, b1):
    """h = f(p[t] + h_prev @ V) over p (T, B, H), in place; act: activations.ACTIVATION_CODES."""
    T, _, H = p.shape
    zero, _, one = consts(p)
    lim = np.array([80.0 if p.itemsize == 4 else 700.0]).astype(p.dtype)[0]  # exp's overflow
    state = h0[b0:b1].copy()
    acc = np.empty((b1 - b0, H), p.dtype)
    for s in range(T):
        matmul(state, V, acc)
        for b in range(b0, b1):
            t = step_time(s, b, lens, rev)
            out, st, a = p[t, b], state[b - b0], acc[b - b0]
            if s >= lens[b]:
                clear(out)
                clear(st)
                continue
            for j in range(H):
                a[j] += out[j]
            if act == 0:
                for j in range(H):
                    a[j] = tanh(a[j])
            elif act == 1:
                for j in range(H):
                    a[j] = max(a[j], zero)
            elif act == 2:  # 1 / (1 + exp(-u)), as activations.apply
                for j in range(H):
                    a[j] = one / (math.exp(min(-a[j], lim)) + one)
            copy(out, a)
            copy(st, a)


@njit(**JIT)
def elman_bwd(dh, has_dh, dh_last, has_last, h, VT, act, lens, rev, du_in, has_carry, du,
              b0, b1):
    """du[t] = (dh[t] + du_next @ V.T) * f'(h[t]) into du (T, B, H), dh_last entering at each
    row's last step; du_in (B, H): the carry, the du of the step after."""
    T, _, H = h.shape
    zero, _, one = consts(h)
    nxt = np.zeros((b1 - b0, H), h.dtype)
    acc = np.zeros((b1 - b0, H), h.dtype)
    for s in range(T - 1, -1, -1):
        for b in range(b0, b1):
            if enters(has_carry, s, b, lens, rev, T):
                copy(nxt[b - b0], du_in[b])
        if s < T - 1 or has_carry:
            matmul(nxt, VT, acc)
        for b in range(b0, b1):
            t = step_time(s, b, lens, rev)
            out, a, y = du[t, b], acc[b - b0], h[t, b]
            if s >= lens[b]:
                clear(out)
                clear(nxt[b - b0])
                continue
            add_from_above(a, dh, has_dh, dh_last, has_last and s == lens[b] - 1, t, b)
            if act == 0:  # f'(u) from h = f(u): activations.derivative_from_output
                for j in range(H):
                    out[j] = a[j] * (one - y[j] * y[j])
            elif act == 1:
                for j in range(H):
                    out[j] = a[j] * (one if y[j] > zero else zero)
            elif act == 2:
                for j in range(H):
                    out[j] = a[j] * ((one - y[j]) * y[j])
            else:
                copy(out, a)
            copy(nxt[b - b0], out)


# -- LSTM ------------------------------------------------------------------------------------------
@njit(**JIT)
def lstm_fwd(p, V, h0, c0, R, has_R, lens, rev, h, c, b0, b1):
    """The LSTM recurrence: p (T, B, 4H) becomes the gates [i|f|g|o]; h (T, B, Hs) and c
    (T, B, H) are written."""
    T, _, G = p.shape
    H = G // 4
    _, half, _ = consts(p)
    hs, cs = h0[b0:b1].copy(), c0[b0:b1].copy()
    acc = np.empty((b1 - b0, G), p.dtype)
    m = np.zeros((b1 - b0, H), p.dtype)
    for s in range(T):
        matmul(hs, V, acc)
        for b in range(b0, b1):
            t, k = step_time(s, b, lens, rev), b - b0
            u, a = p[t, b], acc[k]
            if s >= lens[b]:
                clear(u)
                clear(c[t, b])
                clear(cs[k])
                clear(m[k])
                if not has_R:
                    clear(h[t, b])
                    clear(hs[k])
                continue
            for j in range(G):
                u[j] += a[j]
            for j in range(2 * H):   # i, f: σ(u) = tanh(u/2)/2 + 1/2
                u[j] = half * tanh(half * u[j]) + half
            for j in range(2 * H, 3 * H):
                u[j] = tanh(u[j])
            for j in range(3 * H, G):
                u[j] = half * tanh(half * u[j]) + half
            csb, ct, mb = cs[k], c[t, b], m[k]  # rows: the loop over j vectorizes
            for j in range(H):
                cc = u[H + j] * csb[j] + u[j] * u[2 * H + j]
                csb[j] = cc
                ct[j] = cc
                mb[j] = tanh(cc) * u[3 * H + j]
            if not has_R:
                copy(h[t, b], mb)
                copy(hs[k], mb)
        if has_R:
            matmul(m, R, hs)  # padded rows of m are 0: so are theirs of hs
            for b in range(b0, b1):
                copy(h[step_time(s, b, lens, rev), b], hs[b - b0])


@njit(**JIT)
def lstm_bwd(dh, has_dh, dh_last, has_last, dc_last, has_dcl, h, c, gates, c0, VT, RT, has_R,
             lens, rev, du_in, dc_in, has_carry, du, dc, dhs_all, b0, b1):
    """BPTT through the LSTM into du (T, B, 4H), dc (B, H: zeros on entry, dc0 on exit) and,
    with R, dhs_all (T, B, Hs); du_in (B, 4H), dc_in (B, H): the carry, the step after's du and
    the gradient on the c it read."""
    T, _, H = c.shape
    G, Hs = 4 * H, h.shape[2]
    _, _, one = consts(c)
    dn = np.zeros((b1 - b0, G), c.dtype)
    dhs = np.zeros((b1 - b0, Hs), c.dtype)
    dm = np.empty((b1 - b0, H), c.dtype) if has_R else dhs
    for s in range(T - 1, -1, -1):
        for b in range(b0, b1):
            if enters(has_carry, s, b, lens, rev, T):
                copy(dn[b - b0], du_in[b])
                copy(dc[b], dc_in[b])
        if s < T - 1 or has_carry:
            matmul(dn, VT, dhs)
        for b in range(b0, b1):
            t = step_time(s, b, lens, rev)
            if s >= lens[b]:
                clear(dhs[b - b0])
                continue
            add_from_above(dhs[b - b0], dh, has_dh, dh_last, has_last and s == lens[b] - 1, t, b)
        if has_R:
            matmul(dhs, RT, dm)
        for b in range(b0, b1):
            t, k = step_time(s, b, lens, rev), b - b0
            if has_R:
                copy(dhs_all[t, b], dhs[k])
            if s >= lens[b]:
                clear(du[t, b])
                clear(dn[k])
                continue
            if has_dcl and s == lens[b] - 1:
                add(dc[b], dc_last[b])
            prev = c0[b] if s == 0 else c[step_time(s - 1, b, lens, rev), b]
            g4, d4, cc = gates[t, b], du[t, b], c[t, b]
            dcb, dmb = dc[b], dm[k]
            for j in range(H):
                i, f, g, o = g4[j], g4[H + j], g4[2 * H + j], g4[3 * H + j]
                tc = tanh(cc[j])
                d = dcb[j] + dmb[j] * ((one - tc * tc) * o)
                d4[j] = (one - i) * i * g * d
                d4[H + j] = (one - f) * f * prev[j] * d
                d4[2 * H + j] = (one - g * g) * i * d
                d4[3 * H + j] = (one - o) * o * tc * dmb[j]
                dcb[j] = d * f
            copy(dn[k], d4)


# -- GRU -------------------------------------------------------------------------------------------
@njit(**JIT)
def gru_fwd(p, V, b_h, has_bh, h0, lens, rev, h, gates, b0, b1):
    """The GRU recurrence over p (T, B, 3H) (only read) into h (T, B, H) and gates (T, B, 4H)
    = [r|z|n|hn]."""
    T, _, G = p.shape
    H = G // 3
    _, half, _ = consts(p)
    hs = h0[b0:b1].copy()
    acc = np.empty((b1 - b0, G), p.dtype)
    for s in range(T):
        matmul(hs, V, acc)
        for b in range(b0, b1):
            t, k = step_time(s, b, lens, rev), b - b0
            g4, a, x = gates[t, b], acc[k], p[t, b]
            if s >= lens[b]:
                clear(g4)
                clear(h[t, b])
                clear(hs[k])
                continue
            if has_bh:
                for j in range(G):
                    a[j] += b_h[j]
            for j in range(2 * H):
                g4[j] = half * tanh(half * (x[j] + a[j])) + half
            hsb, ht = hs[k], h[t, b]
            for j in range(H):
                r, z, hn = g4[j], g4[H + j], a[2 * H + j]
                n = tanh(r * hn + x[2 * H + j])
                g4[2 * H + j] = n
                g4[3 * H + j] = hn
                v = (hsb[j] - n) * z + n
                hsb[j] = v
                ht[j] = v


@njit(**JIT)
def gru_bwd(dh, has_dh, dh_last, has_last, h, h0, gates, VT, lens, rev, dh_in, has_carry, dgx,
            dh0, b0, b1):
    """BPTT through the GRU into dgx (T, B, 3H), the gradient on p, and dh0 (B, H); dh_in
    (B, H): the carry, the gradient on the last h from the steps after."""
    T, _, H = h.shape
    _, _, one = consts(h)
    dgh = np.zeros((b1 - b0, 3 * H), h.dtype)
    zd = np.zeros((b1 - b0, H), h.dtype)
    carry = np.zeros((b1 - b0, H), h.dtype)
    for s in range(T - 1, -1, -1):
        if s < T - 1:
            matmul(dgh, VT, carry)
            add(carry, zd)
        for b in range(b0, b1):
            if enters(has_carry, s, b, lens, rev, T):
                copy(carry[b - b0], dh_in[b])
        for b in range(b0, b1):
            t, k = step_time(s, b, lens, rev), b - b0
            if s >= lens[b]:
                clear(dgx[t, b])
                clear(dgh[k])
                clear(zd[k])
                continue
            dhs = carry[k]  # becomes dh[t] + carry (the step's only use of carry)
            add_from_above(dhs, dh, has_dh, dh_last, has_last and s == lens[b] - 1, t, b)
            prev = h0[b] if s == 0 else h[step_time(s - 1, b, lens, rev), b]
            g4, d3, dghb, zdb = gates[t, b], dgx[t, b], dgh[k], zd[k]
            for j in range(H):
                d = dhs[j]
                r, z, n, hn = g4[j], g4[H + j], g4[2 * H + j], g4[3 * H + j]
                gn = (one - n * n) * (one - z) * d
                gr = (one - r) * r * hn * gn
                d3[j] = gr
                d3[H + j] = (prev[j] - n) * z * (one - z) * d
                d3[2 * H + j] = gn
                dghb[j] = gr
                dghb[H + j] = d3[H + j]
                dghb[2 * H + j] = gn * r
                zdb[j] = d * z
    matmul(dgh, VT, carry)
    add(carry, zd)
    copy(dh0[b0:b1], carry)


# -- the caches' digests ---------------------------------------------------------------------------
@njit(**JIT)
def weighted_sum(words):
    """Σ_i words[i]·(2i+1) mod 2^64 over uint32 words: Backend.digest's fingerprint, in one pass
    at memory speed (CRC-32, the numpy backend's, runs at about a tenth of it)."""
    total = np.uint64(0)
    for i in range(words.size):
        total += np.uint64(words[i]) * np.uint64(2 * i + 1)
    return total
