"""The precision modes on the numpy reference (docs/architecture.md §1, precision modes):
bfloat16 and float16 storage, float32 with TF32 operands. Every cell, both directions, with and
without lengths and initial states, against the float64 oracles of tests/precision_oracle.py:
each step from the state the run stored (the one-step bound), the weight gradients as one product
each, and whole runs over T steps with the propagated bound derived in the test."""
import numpy as np
import pytest

import gpu_bptt
import gpu_bptt.cells
from gpu_bptt.backends import get_backend
from gpu_bptt.backends.numpy_backend import (elman_bwd_step, elman_fwd_step, gru_fwd_step,
                                             lstm_fwd_step)
from gpu_bptt.precision import round_tf32
from tests.precision_oracle import (BF16, ELEM, F16, F32, U, acc_bound, arrays, elman_bwd,
                                    elman_step, gru_step, lstm_step, problem, rounding, tf32_ref,
                                    times, to_s)

F64 = np.float64
#: mode name -> (storage dtype, allow_tf32)
MODES = {"bfloat16": (BF16, False), "float16": (F16, False), "tf32": (F32, True)}
FORWARD = {"elman": gpu_bptt.elman_forward, "lstm": gpu_bptt.lstm_forward,
           "gru": gpu_bptt.gru_forward}
CELLS = [("elman", 0), ("lstm", 0), ("lstm", 8), ("gru", 0)]
#: TF32's half ulp, relative: what rounding an operand to TF32 may change it by
U_TF32 = 2.0 ** -11


class Worst:
    """Collects |got - want| - tol over many checks; fails with the worst one."""

    def __init__(self):
        self.worst, self.where, self.n = -np.inf, None, 0

    def check(self, where, got, want, tol):
        got, want = np.asarray(got, F64), np.asarray(want, F64)
        excess = np.abs(got - want) - tol
        excess[np.isnan(got)] = np.inf
        k = int(np.argmax(excess))
        self.n += int(np.sum(excess > 0))
        if excess.flat[k] > self.worst:
            self.worst = float(excess.flat[k])
            self.where = (where, k, float(got.flat[k]), float(want.flat[k]),
                          float(np.broadcast_to(tol, got.shape).flat[k]))

    def assert_ok(self):
        assert self.worst <= 0, (f"{self.n} values out of bound; worst at {self.where[:2]}: got "
                                 f"{self.where[2]!r}, oracle {self.where[3]!r}, bound "
                                 f"{self.where[4]:.3e}")


def run_forward(cell, mode, P=0, *, reverse=False, h0=True, lengths=True, **kw):
    S, tf32 = MODES[mode]
    f = problem(cell, S, P=P, h0=h0, lengths=lengths, **kw)
    out = FORWARD[cell](**arrays(f, S, cell, h0), lengths=f["lengths"] if lengths else None,
                        reverse=reverse, backend="numpy", allow_tf32=tf32)
    return f, out


def operand(mode, a):
    """a as a product's operand in `mode` (TF32-rounded by the oracle's own formula)."""
    return tf32_ref(a).astype(F64) if MODES[mode][1] else a


def projection(f, mode):
    """p = x @ W + b: exact in float64 and float32 (the problem's dyadic grids), then stored."""
    p = f["x"] @ f["W"] + f["b"]
    S = MODES[mode][0]
    return to_s(p, S) if S in (BF16, F16) else p


# -- TF32 rounding ---------------------------------------------------------------------------------
BITS = [  # input bits -> cvt.rna.tf32.f32's, worked by hand (keep sign, exponent, 10 mantissa bits)
    (0x3F800000, 0x3F800000),  # 1.0: exact
    (0x3F801000, 0x3F802000),  # 1 + 2^-11: a tie, away from zero (nearest even would keep 1.0)
    (0xBF801000, 0xBF802000),  # its negative: away from zero too
    (0x3F800FFF, 0x3F800000),  # just below the tie: down
    (0x3F801001, 0x3F802000),  # just above: up
    (0x3F803000, 0x3F804000),  # 1 + 3·2^-11: a tie, away
    (0x3FFFF000, 0x40000000),  # the mantissa carries into the exponent: 2.0
    (0x7F7FFFFF, 0x7F800000),  # the largest float32 rounds past TF32's largest: inf
    (0x7F800000, 0x7F800000),  # inf kept
    (0xFF800000, 0xFF800000),  # -inf kept
    (0x7FC00000, 0x7FC00000),  # quiet NaN kept
    (0x7F800001, 0x7F800001),  # a NaN with a low payload kept (adding would make it inf)
    (0x00001000, 0x00002000),  # a subnormal tie: away from zero
    (0x80000000, 0x80000000),  # -0.0 kept
]


def test_round_tf32_bit_patterns():
    got = round_tf32(np.array([a for a, _ in BITS], np.uint32).view(F32)).view(np.uint32)
    for (a, want), g in zip(BITS, got):
        assert int(g) == want, f"{a:#010x}: got {int(g):#010x}, expected {want:#010x}"


def test_round_tf32_matches_arithmetic_over_a_sample():
    """2^20 random float32 bit patterns (every exponent, both signs, NaN and inf among them)
    against the float64 formula of precision_oracle.tf32_ref."""
    bits = np.random.default_rng(1).integers(0, 2 ** 32, 2 ** 20, dtype=np.uint64).astype(np.uint32)
    bits[:4096] = (bits[:4096] & np.uint32(0xFFFFE000)) | np.uint32(0x1000)  # ties
    a = bits.view(F32)
    got, want = round_tf32(a), tf32_ref(a)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), f"{np.sum(~same)} differ, first input {bits[~same][0]:#010x}"


# -- each step from the stored state ---------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell, P", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("h0, lengths", [(True, True), (False, False)])
def test_forward_each_step_within_the_one_step_bound(mode, cell, P, reverse, h0, lengths):
    S, tf32 = MODES[mode]
    f, out = run_forward(cell, mode, P, reverse=reverse, h0=h0, lengths=lengths)
    assert out.h.dtype == S and out.h_last.dtype == S
    h = out.h.astype(F64)
    c = None if cell != "lstm" else out.cache.c.astype(F64)
    if cell == "lstm":
        assert out.cache.c.dtype == F32 and out.c_last.dtype == S
    p = projection(f, mode)
    V = operand(mode, f["V"])
    R = operand(mode, f["R"]) if P else None
    m_u = U_TF32 if tf32 else U[S]
    T, B = h.shape[:2]
    w = Worst()
    for b, L in enumerate(f["lengths"]):
        hp = f["h0"][b]
        cp = f["c0"][b] if cell == "lstm" else None
        for t in times(T, L, reverse):
            if cell == "elman":
                y, tol = elman_step(p[t, b], operand(mode, hp), V, S)
            elif cell == "gru":
                y, tol = gru_step(p[t, b], hp, V, f["b_h"], S, operand(mode, hp))
            else:
                (y, tol), (yc, tol_c) = lstm_step(p[t, b], operand(mode, hp), cp, V, R, S, m_u)
                w.check(("c", t, b), c[t, b], yc, tol_c)
                cp = c[t, b]
            w.check(("h", t, b), h[t, b], y, tol)
            hp = h[t, b]
        assert not h[L:, b].any() and (c is None or not c[L:, b].any()), "padded steps are 0"
    w.assert_ok()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [True, False])
def test_elman_backward_each_step_within_the_one_step_bound(mode, reverse, lengths):
    S, _ = MODES[mode]
    f, out = run_forward("elman", mode, reverse=reverse, lengths=lengths)
    rng = np.random.default_rng(2)
    T, B, H = out.h.shape
    dh, dh_last = to_s(rng.standard_normal((T, B, H)), S), to_s(rng.standard_normal((B, H)), S)
    cache = out.cache
    du = get_backend("numpy").elman_bwd_seq(dh.astype(S), dh_last.astype(S), cache.h, cache.V,
                                            "tanh", cache.lengths, cache.plan)
    assert du.dtype == S
    du, h = du.astype(F64), out.h.astype(F64)
    V = operand(mode, f["V"])
    w = Worst()
    for b, L in enumerate(f["lengths"]):
        order = times(T, L, reverse)[::-1]  # the backward takes the forward's steps backwards
        nxt = np.zeros(H)
        for k, t in enumerate(order):
            g = dh[t, b] + (dh_last[b] if k == 0 else 0)
            y, tol = elman_bwd(g, operand(mode, nxt), V, h[t, b], S)
            w.check(("du", t, b), du[t, b], y, tol)
            nxt = du[t, b]
        assert not du[L:, b].any(), "padded steps get no gradient"
    w.assert_ok()


# -- the weight gradients: one product each, accumulated in float32, rounded once -----------------
def previous(s, s0, lengths, reverse):
    """The state before each step in the run's direction (float64), as the oracle sees it."""
    T = s.shape[0]
    prev = np.zeros_like(s)
    for b, L in enumerate(lengths):
        order = times(T, L, reverse)
        for k, t in enumerate(order):
            prev[t, b] = s0[b] if k == 0 else s[order[k - 1], b]
    return prev


def first_rows(a, lengths, reverse):
    return np.stack([a[times(a.shape[0], L, reverse)[0], b] for b, L in enumerate(lengths)])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell, P", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_weight_gradients_are_one_float32_product_rounded_once(mode, cell, P, reverse):
    S, tf32 = MODES[mode]
    f, out = run_forward(cell, mode, P, reverse=reverse)
    cache, bk = out.cache, get_backend("numpy")
    rng = np.random.default_rng(3)
    dh = to_s(rng.standard_normal(out.h.shape), S).astype(S)
    seq = {"elman": lambda: (bk.elman_bwd_seq(dh, None, cache.h, cache.V, "tanh", cache.lengths,
                                              cache.plan),),
           "lstm": lambda: bk.lstm_bwd_seq(dh, None, None, cache.h, cache.c, cache.gates,
                                           cache.c0, cache.V, cache.lengths, cache.plan, cache.R),
           "gru": lambda: bk.gru_bwd_seq(dh, None, cache.h, cache.h0, cache.gates, cache.V,
                                         cache.lengths, cache.plan)}[cell]()
    grads = {"elman": gpu_bptt.elman_backward, "lstm": gpu_bptt.lstm_backward,
             "gru": gpu_bptt.gru_backward}[cell](dh, cache)
    du = seq[0].astype(F64)  # what the backward ran on: the same call, deterministic
    T, B, I = f["x"].shape
    lengths = f["lengths"]
    H = cache.W.shape[1] // {"elman": 1, "lstm": 4, "gru": 3}[cell]
    op = (lambda a: operand(mode, a))
    x2, du2 = op(f["x"].reshape(T * B, I)), du.reshape(T * B, -1)
    h0 = f["h0"]
    want = {"dW": (x2.T, op(du2)), "dx": (op(du2), op(f["W"]).T)}
    if cell == "gru":  # dgh: the n block times r, one rounding (to float32 in TF32 mode)
        dgh = du.copy()
        dgh[:, :, 2 * H:] = to_s(du[:, :, 2 * H:] * cache.gates[:, :, :H].astype(F64), S)
    else:
        dgh = du
    hprev = previous(out.h.astype(F64), h0, lengths, reverse).reshape(T * B, -1)
    want["dV"] = (op(hprev).T, op(dgh.reshape(T * B, -1)))
    w = Worst()
    for name, (a, b) in want.items():
        got = getattr(grads, name)
        assert got.dtype == S, f"{name} is {got.dtype}"
        ref = a @ b
        w.check(name, got.astype(F64).reshape(ref.shape), ref,
                rounding(S, ref) + acc_bound(np.abs(a), np.abs(b)))
    db = grads.db_x if cell == "gru" else grads.db
    ref = du2.sum(axis=0)
    assert db.dtype == S
    w.check("db", db.astype(F64), ref,
            rounding(S, ref) + 2 * T * B * 2.0 ** -24 * np.abs(du2).sum(0))
    first = op(first_rows(dgh, lengths, reverse))
    dh0_ref = first @ op(f["V"]).T
    if cell != "gru":  # the GRU's dh0 also takes the z·h0 path (the step test covers its carry)
        w.check("dh0", grads.dh0.astype(F64), dh0_ref,
                rounding(S, dh0_ref) + acc_bound(np.abs(first), np.abs(op(f["V"])).T))
    assert grads.dh0.dtype == S
    if P:  # dR = Σ m.T @ dhs, m = o·tanh(c) rounded as it entered the product with R
        dhs = seq[2].astype(F64).reshape(T * B, -1)
        m = (cache.gates[:, :, 3 * H:].astype(F64) * np.tanh(cache.c.astype(F64))).reshape(T * B, H)
        m_u = U_TF32 if tf32 else U[S]
        ref = op(m).T @ op(dhs)
        tol = rounding(S, ref) + acc_bound(np.abs(m).T, np.abs(dhs)) \
            + (2 * m_u * np.abs(m) + 4 * ELEM).T @ np.abs(dhs)  # a flip of m's rounding
        assert grads.dR.dtype == S
        w.check("dR", grads.dR.astype(F64), ref, tol)
    if cell == "lstm":
        assert grads.dc0.dtype == S
    w.assert_ok()


# -- the gated cells' backward, step by step -------------------------------------------------------
# The state a step reads that the run does not return (the LSTM's dc, float32; the GRU's carry)
# is followed in float64 along the run, with a running bound on its float32 error: each step adds
# its products' accumulation bound and a few ulps of its own work; dc shrinks by f each step.
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("P", [0, 8])
@pytest.mark.parametrize("reverse, lengths", [(False, True), (True, True), (True, False)])
def test_lstm_backward_each_step_within_the_one_step_bound(mode, P, reverse, lengths):
    S, _ = MODES[mode]
    f, out = run_forward("lstm", mode, P, reverse=reverse, lengths=lengths)
    cache = out.cache
    rng = np.random.default_rng(4)
    T, B, Hs = out.h.shape
    H = cache.c.shape[2]
    dh, dc_last = to_s(rng.standard_normal((T, B, Hs)), S), to_s(rng.standard_normal((B, H)), S)
    du, dc0, dhs = get_backend("numpy").lstm_bwd_seq(
        dh.astype(S), None, dc_last.astype(S), cache.h, cache.c, cache.gates, cache.c0, cache.V,
        cache.lengths, cache.plan, cache.R)
    assert du.dtype == S and dc0.dtype == S and (dhs is None or dhs.dtype == S)
    du, dc0 = du.astype(F64), dc0.astype(F64)
    gates, c = cache.gates.astype(F64), cache.c.astype(F64)
    V = operand(mode, f["V"])
    R = operand(mode, f["R"]) if P else None
    w = Worst()
    for b, L in enumerate(f["lengths"]):
        order = times(T, L, reverse)
        nxt, dc, e_dc = np.zeros(4 * H), dc_last[b].copy(), np.zeros(H)
        for k, t in enumerate(order[::-1]):
            c_prev = f["c0"][b] if t == order[0] else c[order[order.index(t) - 1], b]
            i, fg, g, o = (gates[t, b, j * H:(j + 1) * H] for j in range(4))
            y = dh[t, b] + operand(mode, nxt) @ V.T
            e_dm = acc_bound(operand(mode, nxt), V.T) + 2.0 ** -24 * np.abs(y)
            if P:
                w.check(("dhs", t, b), dhs[t, b], y, rounding(S, y) + e_dm)
                hs = operand(mode, dhs[t, b].astype(F64))
                dm, e_dm = hs @ R.T, acc_bound(hs, R.T) + ELEM * np.abs(hs @ R.T)
            else:
                dm = y
            tc = np.tanh(c[t, b])
            a = o * (1 - tc * tc)
            dc = dc + dm * a
            e_dc = e_dc + e_dm * np.abs(a) + ELEM * (np.abs(dm) + np.abs(dc))
            want = np.concatenate([dc * g * i * (1 - i), dc * c_prev * fg * (1 - fg),
                                   dc * i * (1 - g * g), dm * tc * o * (1 - o)])
            err = np.concatenate([e_dc] * 3 + [e_dm]) \
                + ELEM * np.abs(np.concatenate([dc] * 3 + [dm]))
            w.check(("du", t, b), du[t, b], want, rounding(S, want) + err)
            nxt = du[t, b]
            dc, e_dc = dc * fg, (e_dc + 2.0 ** -24 * np.abs(dc)) * fg
        w.check(("dc0", b), dc0[b], dc, rounding(S, dc) + e_dc)
        assert not du[L:, b].any()
    w.assert_ok()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse, lengths", [(False, True), (True, True), (False, False)])
def test_gru_backward_each_step_within_the_one_step_bound(mode, reverse, lengths):
    S, _ = MODES[mode]
    f, out = run_forward("gru", mode, reverse=reverse, lengths=lengths)
    cache = out.cache
    rng = np.random.default_rng(5)
    T, B, H = out.h.shape
    dh, dh_last = to_s(rng.standard_normal((T, B, H)), S), to_s(rng.standard_normal((B, H)), S)
    dgx, dh0 = get_backend("numpy").gru_bwd_seq(dh.astype(S), dh_last.astype(S), cache.h,
                                                cache.h0, cache.gates, cache.V, cache.lengths,
                                                cache.plan)
    assert dgx.dtype == S and dh0.dtype == S
    dgx, dh0, h = dgx.astype(F64), dh0.astype(F64), out.h.astype(F64)
    gates = cache.gates.astype(F64)
    V = operand(mode, f["V"])
    w = Worst()
    for b, L in enumerate(f["lengths"]):
        order = times(T, L, reverse)
        carry, e = dh_last[b].copy(), np.zeros(H)
        for t in order[::-1]:
            h_prev = f["h0"][b] if t == order[0] else h[order[order.index(t) - 1], b]
            r, z, n, hn = (gates[t, b, j * H:(j + 1) * H] for j in range(4))
            dhs = dh[t, b] + carry
            e = e + 2.0 ** -24 * np.abs(dhs)
            gn = dhs * (1 - z) * (1 - n * n)
            want = np.concatenate([gn * hn * r * (1 - r), dhs * (h_prev - n) * z * (1 - z), gn])
            err = np.concatenate([e * np.abs(hn) / 4, 2 * e / 4, e]) + ELEM * np.abs(
                np.concatenate([dhs] * 3))
            w.check(("dgx", t, b), dgx[t, b], want, rounding(S, want) + err)
            dgh = dgx[t, b].copy()
            dgh[2 * H:] = to_s(dgh[2 * H:] * r, S)  # one rounding of an exact product
            dgh = operand(mode, dgh)
            zd = dhs * z
            carry = dgh @ V.T + zd
            e = acc_bound(dgh, V.T) + rounding(S, zd) + e * z + ELEM * np.abs(zd)
        w.check(("dh0", b), dh0[b], carry, rounding(S, carry) + e)
        assert not dgx[L:, b].any()
    w.assert_ok()


# -- whole runs over T steps against float64 ------------------------------------------------------
def col_norm(M):
    """max_j Σ_i |M_ij|: how much a row vector's largest error can grow through `@ M`."""
    return np.abs(M).sum(axis=0).max()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell, P", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_whole_run_within_the_propagated_bound(mode, cell, P, reverse):
    """The run against the float64 oracle iterated on its own state from the same rounded
    inputs. With e_t the largest state error after step t (h, and c for the LSTM), each step
    adds at most δ and multiplies the error it reads by at most ρ, so e_T <= δ·Σ_{k<T} ρ^k:
      Elman: ρ = ‖V‖ (tanh' <= 1), ‖V‖ = max_j Σ_i |V_ij|;
      GRU:   ρ = 1 + L‖V‖, L = 1.5 + max|hn|/4 (z·h_prev carries the error with z <= 1; n, z, r
             see ‖V‖·e through tanh' <= 1, σ' <= 1/4, r·hn and |h_prev - n| <= 2);
      LSTM:  ρ = max(1, ‖R‖)·(1 + Lc‖V‖), Lc = max|c|/4 + 1.5 (c = f·c_prev + i·g: f <= 1 carries
             c's error, σ' <= 1/4 times |c_prev| and |g| <= 1, tanh' <= 1 times |i| <= 1; then
             m = o·tanh c adds a quarter);
    δ: the rounding of the step's output on store (U_S·|h|), of p (U_S·max|p|, 16-bit S), of
    the TF32 operands (2·2^-11·max|h|·‖V‖: h and V both), each pre-activation's float32
    accumulation and elementwise work, times the cell's factor L. V (and R) are scaled so that
    ρ stays near 1 (about 0.45 for Elman, under 1.5 for the gated cells): the bound is then a
    few to some tens of δ over T = 7 steps, not a blow-up. It is a worst case (every error at
    its largest, in one direction); the step tests above hold each step to its own bound."""
    S, tf32 = MODES[mode]
    f, out = run_forward(cell, mode, P, reverse=reverse, v_scale=0.1 if cell == "elman" else 0.04,
                         r_scale=0.25)
    p = f["x"] @ f["W"] + f["b"]  # exact; the run's p is rounded to S (in δ)
    T, B = out.h.shape[:2]
    H = out.cache.W.shape[1] // {"elman": 1, "lstm": 4, "gru": 3}[cell]
    ys, cs, most = np.zeros(out.h.shape), np.zeros((T, B, H)), 0.0
    R = f.get("R")
    for b, L in enumerate(f["lengths"]):
        hp, cp = f["h0"][b], (f["c0"][b] if cell == "lstm" else None)
        for t in times(T, L, reverse):
            if cell == "gru":  # |hn| along the run, with room for the run's own error
                most = max(most, np.abs(hp @ f["V"][:, 2 * H:] + f["b_h"][2 * H:]).max() + 0.1)
            if cell == "elman":
                hp, _ = elman_step(p[t, b], hp, f["V"], S)
            elif cell == "gru":
                hp, _ = gru_step(p[t, b], hp, f["V"], f["b_h"], S, hp)
            else:
                (hp, _), (cp, _) = lstm_step(p[t, b], hp, cp, f["V"], R, S, 0.0)
                cs[t, b] = cp
                most = max(most, np.abs(cp).max() + 0.1)  # |c| along the run
            ys[t, b] = hp
    nV = col_norm(f["V"])
    u_op = 2 * U_TF32 if tf32 else 0.0
    u_p = U[S] * np.abs(p).max() if S != F32 else 0.0
    K = f["V"].shape[0]
    d_u = u_p + u_op * nV + 2 * K * 2.0 ** -24 * nV + ELEM  # on each pre-activation (|h| <= 1)
    if cell == "elman":
        rho, delta = nV, U[S] + d_u
    elif cell == "gru":
        Lg = 1.5 + most / 4
        rho, delta = 1 + Lg * nV, U[S] + Lg * d_u + 2 * ELEM
    else:
        Lc = most / 4 + 1.5
        nR = max(1.0, col_norm(R)) if P else 1.0
        u_m = (2 * U_TF32 if tf32 else U[S]) if P else 0.0
        rho = nR * (1 + Lc * nV)
        delta = nR * (Lc * d_u + u_m + 2 * ELEM) + U[S] * (1 + most * (not P))  # c's |h| <= 1
    bound = delta * sum(rho ** k for k in range(T))
    err = np.abs(out.h.astype(F64) - ys).max()
    if cell == "lstm":
        err = max(err, np.abs(out.cache.c.astype(F64) - cs).max())
    assert err <= bound, (f"max error {err:.3e} over the bound {bound:.3e} (ρ = {rho:.3f}, "
                          f"δ = {delta:.3e})")


# -- float32 and float64 as before -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_are_the_plain_path_bit_for_bit(dtype):
    """The mode's plumbing (work arrays, operand and store hooks) changes nothing outside the
    16-bit and TF32 modes: the public functions give, bit for bit, the plain steps (mode=None)
    run by hand with NumPy's products. (Checked once against the code before the precision
    modes too: 240 arrays of every cell, direction and lengths, identical.)"""
    rng = np.random.default_rng(6)
    T, B, I, H = 6, 3, 4, 5
    x = rng.standard_normal((T, B, I)).astype(dtype)
    W1, V1, b1 = (rng.standard_normal(s).astype(dtype) * 0.4 for s in ((I, H), (H, H), (H,)))
    h0 = rng.standard_normal((B, H)).astype(dtype)
    out = gpu_bptt.elman_forward(x, W1, V1, b1, h0, backend="numpy")
    hp, h = h0, []
    for t in range(T):
        hp = elman_fwd_step(x[t] @ W1 + b1, hp, V1, "tanh")
        h.append(hp)
    assert np.array_equal(out.h, np.stack(h))
    dh = rng.standard_normal((T, B, H)).astype(dtype)
    grads = gpu_bptt.elman_backward(dh, out.cache)
    du, nxt = np.zeros_like(dh), None
    for t in range(T - 1, -1, -1):
        nxt = du[t] = elman_bwd_step(dh[t], nxt, V1.T, 1 - out.h[t] ** 2)
    assert np.array_equal(grads.dW, np.matmul(x.reshape(T * B, I).T, du.reshape(T * B, H)))
    assert np.array_equal(grads.dx, np.matmul(du.reshape(T * B, H), W1.T).reshape(T, B, I))

    W4, V4, b4 = (rng.standard_normal(s).astype(dtype) * 0.4 for s in ((I, 4 * H), (H, 4 * H),
                                                                        (4 * H,)))
    c0 = rng.standard_normal((B, H)).astype(dtype)
    out = gpu_bptt.lstm_forward(x, W4, V4, b4, h0, c0, backend="numpy")
    hp, cp, h = h0, c0, []
    for t in range(T):
        hp, cp = lstm_fwd_step(x[t] @ W4 + b4, hp, cp, V4, np.empty_like(h0), np.empty_like(c0))
        h.append(hp)
    assert np.array_equal(out.h, np.stack(h)) and np.array_equal(out.c_last, cp)

    W3, V3, b3 = (rng.standard_normal(s).astype(dtype) * 0.4 for s in ((I, 3 * H), (H, 3 * H),
                                                                        (3 * H,)))
    out = gpu_bptt.gru_forward(x, W3, V3, b3, b3[::-1].copy(), h0, backend="numpy")
    hp, h = h0, []
    for t in range(T):
        hp = gru_fwd_step(x[t] @ W3 + b3, hp, V3, b3[::-1], np.empty((B, 4 * H), dtype),
                          np.empty_like(h0))
        h.append(hp)
    assert np.array_equal(out.h, np.stack(h))


# -- what the API accepts and what it refuses ------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_pair_functions_are_two_single_calls_in_every_mode(mode, cell):
    S, tf32 = MODES[mode]
    f = problem(cell, S)
    kw = arrays(f, S, cell, True)
    x = kw.pop("x")
    order = {"elman": ("W", "V", "b", "h0"), "lstm": ("W", "V", "b", "h0", "c0", "R"),
             "gru": ("W", "V", "b_x", "b_h", "h0")}[cell]
    d = tuple(kw.get(k) for k in order)
    pair = getattr(gpu_bptt.cells, f"{cell}_forward_pair")(x, d, d, lengths=f["lengths"],
                                                           backend="numpy", allow_tf32=tf32)
    outs = (pair.forward, pair.reverse) if cell == "elman" else pair
    for rev, o in zip((False, True), outs):
        one = FORWARD[cell](x, **kw, lengths=f["lengths"], reverse=rev, backend="numpy",
                            allow_tf32=tf32)
        assert o.h.dtype == S and np.array_equal(o.h.view(np.uint8), one.h.view(np.uint8))
        assert o.cache.plan.tf32 == tf32


def test_mixed_storage_dtypes_name_the_array():
    f = problem("elman", BF16)
    kw = arrays(f, BF16, "elman", True)
    kw["V"] = kw["V"].astype(np.float16)
    with pytest.raises(TypeError, match=r"^V: dtype float16 differs from x's bfloat16"):
        gpu_bptt.elman_forward(**kw, backend="numpy")


@pytest.mark.parametrize("bad, exc, match", [
    ("yes", TypeError, r"^allow_tf32: expected a bool, got str"),
    (1, TypeError, r"^allow_tf32: expected a bool, got int"),
])
def test_allow_tf32_must_be_a_bool(bad, exc, match):
    kw = arrays(problem("elman", F32), F32, "elman", True)
    with pytest.raises(exc, match=match):
        gpu_bptt.elman_forward(**kw, backend="numpy", allow_tf32=bad)


@pytest.mark.parametrize("dtype", [BF16, F16, np.dtype(np.float64)])
def test_allow_tf32_is_for_float32_only(dtype):
    kw = arrays(problem("gru", dtype), dtype, "gru", True)
    with pytest.raises(ValueError, match=rf"^allow_tf32: TF32 rounds float32 operands; the arrays "
                                         rf"are {dtype.name}"):
        gpu_bptt.gru_forward(**kw, backend="numpy", allow_tf32=True)


@pytest.mark.parametrize("cell", ["lstm"])
@pytest.mark.parametrize("dtype", [BF16, F16])
def test_a_backend_without_the_mode_refuses_it(cell, dtype):
    """The emulator (the cuda backend's code) has tensor-core kernels for Elman and the GRU: a
    16-bit or TF32 request of another cell is refused, naming dtype or allow_tf32, the cell and
    the backend, never run upcast (tests/cuda/test_tc_kernels.py runs Elman's and the GRU's)."""
    bk = get_backend("emulator")
    assert bk.cell_dtypes(cell) == ("float32", "float64")
    kw = arrays(problem(cell, dtype), dtype, cell, True)
    with pytest.raises(TypeError, match=rf"^dtype: the emulator backend has no {cell} kernels "
                                        rf"for {dtype.name} yet"):
        FORWARD[cell](**kw, backend=bk)
    kw = arrays(problem(cell, F32), F32, cell, True)
    with pytest.raises(ValueError, match=rf"^allow_tf32: the emulator backend has no {cell} "
                                         rf"kernels for float32 with TF32 yet"):
        FORWARD[cell](**kw, backend=bk, allow_tf32=True)


def test_the_cuda_backend_declares_the_tensor_core_modes():
    from gpu_bptt.backends.cuda import CudaBackend

    bk = CudaBackend.__new__(CudaBackend)  # no device needed: check_mode reads the declarations
    bk.check_mode(BF16)
    bk.check_mode(F32, True)
    assert bk.cell_dtypes("lstm") == ("float32", "float64")
    with pytest.raises(ValueError, match=r"^allow_tf32: TF32 rounds float32 operands; the arrays "
                                         r"are float16"):
        bk.check_mode(F16, True)


def test_a_rebuilt_lstm_cache_keeps_c_in_float32():
    f, out = run_forward("lstm", "bfloat16")
    arrs = out.cache.arrays()
    rebuilt = gpu_bptt.LSTMCache.from_arrays(arrs, has_bias=True, algo=out.cache.plan,
                                             backend="numpy")
    dh = np.ones(out.h.shape, BF16)
    a, b = gpu_bptt.lstm_backward(dh, out.cache), gpu_bptt.lstm_backward(dh, rebuilt)
    assert a.dW.dtype == BF16 and np.array_equal(a.dW.view(np.uint16), b.dW.view(np.uint16))
    arrs["c"] = arrs["c"].astype(BF16)
    with pytest.raises(TypeError,
                       match=r"^c: dtype bfloat16 differs from the other arrays' float32"):
        gpu_bptt.LSTMCache.from_arrays(arrs, has_bias=True, backend="numpy")


@pytest.mark.parametrize("dtype", [BF16, F16])
def test_the_generic_digest_takes_16_bit_arrays(dtype):
    """Backend.digest (the device backends' guard of x and h) over 16-bit words: an array of an
    odd number of elements has no whole 32-bit words."""
    from gpu_bptt.backends.base import Backend

    a = np.arange(7, dtype=np.float32).astype(dtype)
    bk = Backend(np)
    before = bk.digest(a)
    a[3] = dtype.type(3.5)
    assert bk.digest(a) != before
