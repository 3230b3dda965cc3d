"""Float64 oracles and error bounds for the precision modes (docs/architecture.md §1, precision
modes), independent of gpu_bptt.precision: each cell's step written again in float64 from the
state the run under test stored (h in S, the LSTM's c in float32), TF32 rounding by a float64
formula (not by bit operations), and the bounds the tests hold the runs to.

The bounds, for one value y computed in float32 and rounded once to S:
  - the rounding on store: |round_S(y) - y| <= U[S]·|y| + TINY[S] (U: half an ulp relative,
    2^-8 bfloat16, 2^-11 float16; 2^-24 for float32, whose own last operation rounds too; TINY
    half the subnormal spacing);
  - a product over K terms accumulated in float32 in any order: <= 2·K·2^-24·Σ|a·b| (the
    standard γ_K bound, doubled for the blocked orders of BLAS);
  - the elementwise float32 work (σ, tanh, the products and sums of the epilogue): a few float32
    ulps of values <= 1 in size, covered by ELEM = 2^-21 absolute per evaluated function;
and the propagation into the output by a per-cell Lipschitz factor L (the largest derivative of
the step's output with respect to a pre-activation: tanh' <= 1, σ' <= 1/4).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
#: half an ulp, relative, of each output dtype (the rounding on store)
U = {BF16: 2.0 ** -8, F16: 2.0 ** -11, F32: 2.0 ** -24}
#: half the spacing below the normal range (float16's subnormals are 2^-24 apart)
TINY = {BF16: 2.0 ** -134, F16: 2.0 ** -25, F32: 2.0 ** -150}
#: float32 elementwise work per evaluated function (σ, tanh and their products), absolute
ELEM = 2.0 ** -21


def rounding(S, y):
    """The bound of one rounding of y to S on store: half an ulp, relative, or half the
    subnormal spacing."""
    return U[S] * np.abs(y) + TINY[S]


def to_s(a, dtype):
    """float64 array `a` as values of storage dtype `dtype` (float64 again)."""
    return np.asarray(a, np.float64).astype(F32).astype(dtype).astype(np.float64)


def tf32_ref(a):
    """a rounded to TF32 by arithmetic: 11 significant bits (10 below the leading one, spacing
    2^-136 below float32's normal range, as its raw bits are), half-way cases away from zero;
    inf and NaN as they are."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN payloads; a round up to inf
        a = np.asarray(a, np.float64)
        _, e = np.frexp(a)  # |a| = m·2^e, 1/2 <= m < 1
        q = np.maximum(np.ldexp(1.0, e - 11), 2.0 ** -136)
        r = np.sign(a) * np.floor(np.abs(a) / q + 0.5) * q
        return np.where(np.isfinite(a), r, a).astype(F32)


def acc_bound(a, b):
    """Per output, the float32 accumulation bound of a @ b: 2·K·2^-24·Σ|a·b| (K the inner size)."""
    return 2 * a.shape[-1] * 2.0 ** -24 * (np.abs(a) @ np.abs(b))


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def problem(cell, dtype, *, T=7, B=5, I=4, H=16, P=0, seed=0, h0=True, lengths=True,
            v_scale=1.0, r_scale=1.0):
    """A problem for `cell` in storage dtype `dtype` (as the call's arrays) and as float64 values.

    x, W and the biases lie on dyadic grids (x = k/16, W = m/64, b = n/1024) so that the input
    projection x @ W + b is exact in float32 in any order of summation: the oracle then knows p
    to the bit (round_S of the exact value), and each step's test measures that step alone.
    V, R, h0, c0 are random S values; v_scale and r_scale scale V and R (their column sums set
    how errors grow)."""
    rng = np.random.default_rng(seed)
    G = {"elman": 1, "lstm": 4, "gru": 3}[cell]
    Hs = P or H
    f = {}
    f["x"] = rng.integers(-16, 17, (T, B, I)) / 16
    f["W"] = rng.integers(-64, 65, (I, G * H)) / 64
    f["b"] = rng.integers(-255, 256, G * H) / 1024
    f["V"] = to_s(rng.standard_normal((Hs, G * H)) * v_scale / np.sqrt(Hs), dtype)
    if P:
        f["R"] = to_s(rng.standard_normal((H, P)) * r_scale / np.sqrt(H), dtype)
    if cell == "gru":
        f["b_h"] = rng.integers(-255, 256, G * H) / 1024
    f["h0"] = to_s(rng.uniform(-1, 1, (B, Hs)), dtype) if h0 else np.zeros((B, Hs))
    if cell == "lstm":
        f["c0"] = to_s(rng.uniform(-2, 2, (B, H)), dtype) if h0 else np.zeros((B, H))
    f["lengths"] = (np.array([T, 1, T - 2, 3, T][:B]) if lengths else np.full(B, T))
    return f


def arrays(f, dtype, cell, h0):
    """The call's keyword arguments from problem()'s float64 values, in `dtype`."""
    names = {"elman": ("x", "W", "V", "b", "h0"), "lstm": ("x", "W", "V", "b", "h0", "c0", "R"),
             "gru": ("x", "W", "V", "b", "b_h", "h0")}[cell]
    out = {k: f[k].astype(dtype) for k in names if k in f}
    if cell == "gru":
        out["b_x"] = out.pop("b")
    if not h0:
        out.pop("h0")
        out.pop("c0", None)
    return out


def times(T, length, reverse):
    """The steps of one example in the order the run takes them."""
    return list(range(length - 1, -1, -1)) if reverse else list(range(length))


# -- one step of each cell in float64, with its bound ---------------------------------------------
# Each returns (y, tol) per output, y the exact float64 value of the step from the given previous
# state, tol what the run may differ from it by (its own float32 work and its rounding on store).
def elman_step(p, h_prev, V, S):
    y = np.tanh(p + h_prev @ V)
    return y, rounding(S, y) + acc_bound(h_prev, V) + ELEM


def lstm_step(p, h_prev, c_prev, V, R, S, m_u):
    """m_u: the relative rounding of m as it enters the product with R (U[S] in a 16-bit S,
    2^-11 for TF32, 0 in plain float32)."""
    H = c_prev.shape[-1]
    u = p + h_prev @ V
    i, f, g, o = sigmoid(u[:H]), sigmoid(u[H:2 * H]), np.tanh(u[2 * H:3 * H]), sigmoid(u[3 * H:])
    c = f * c_prev + i * g
    m = o * np.tanh(c)
    E = acc_bound(h_prev, V) + ELEM              # on each pre-activation and gate
    E = np.maximum.reduce([E[j * H:(j + 1) * H] for j in range(4)])
    c_tol = (np.abs(c_prev) + 2) * E + 2.0 ** -22 * np.abs(c)  # dc <= |c_prev|dσ + |g|dσ + |i|dtanh
    m_tol = E + c_tol + ELEM                      # dm <= |tanh c|dσ + |o|dc
    if R is None:
        return (m, rounding(S, m) + m_tol), (c, c_tol)
    # m is rounded before the product with R: one rounding (a flip where the run's float32 m
    # and the exact one straddle a rounding boundary: up to one ulp, 2·m_u|m|) plus m_tol
    h = m @ R
    tol = rounding(S, h) + (2 * m_u * np.abs(m) + m_tol) @ np.abs(R) + acc_bound(m, R)
    return (h, tol), (c, c_tol)


def gru_step(p, h_prev, V, b_h, S, h_op):
    """h_op: h_prev as it enters the product (TF32-rounded in TF32 mode, else h_prev)."""
    H = h_prev.shape[-1]
    a = h_op @ V + b_h
    r, z = sigmoid(p[:H] + a[:H]), sigmoid(p[H:2 * H] + a[H:2 * H])
    n = np.tanh(p[2 * H:] + r * a[2 * H:])
    y = (1 - z) * n + z * h_prev
    E = acc_bound(h_op, V) + ELEM
    E = np.maximum.reduce([E[j * H:(j + 1) * H] for j in range(3)])
    # dn <= (1 + |hn|/4)·E (r·hn), dz <= E/4 times |h_prev - n| <= 2, plus the epilogue's own
    L = 1.5 + np.abs(a[2 * H:]) / 4
    return y, rounding(S, y) + L * E + 2 * ELEM


def elman_bwd(g, du_next, V, h, S):
    acc = g + du_next @ V.T
    y = acc * (1 - h * h)
    return y, rounding(S, y) + acc_bound(du_next, V.T) + ELEM * np.abs(acc)
