"""The tensor-core Elman step kernels (kernels/elman_{fwd,bwd}_step_tc.cu, version tc1) in each
precision mode (bfloat16, float16, float32 with TF32; docs/architecture.md §1, precision modes),
on each kernel executor (the emulator in every thread order, one of them in the bounds-checking
build, and a CUDA device).

One step at a time, from a stored previous state, against a float64 oracle of the same stored
(S-rounded, or TF32-rounded where they enter the product) values, within the contract's bound:
the product's float32 accumulation 2·K·2^-24·Σ|a·b| (tests/precision_oracle.py acc_bound; times
max |f'| <= 1) plus one rounding of the output to S on store, plus a few float32 ulps of the
epilogue's own work (ELEM). Whole runs through the public functions against the numpy reference
within a bound derived below, and the products outside the loop bit for bit the reference's."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends import get_backend
from gpu_bptt.validate import to_host
from tests.executors import CUDA, KERNEL_RUNS
from tests.precision_oracle import (BF16, ELEM, F16, F32, U, acc_bound, rounding, tf32_ref,
                                    to_s)

pytestmark = pytest.mark.executors(*KERNEL_RUNS, CUDA)
F64 = np.float64
#: mode -> (storage dtype, TF32 operands)
MODES = {"bfloat16": (BF16, False), "float16": (F16, False), "tf32": (F32, True)}
ACTS = ("tanh", "relu", "sigmoid", "identity")
# (B, H): one example; H across two 32-deep chunks and two 64-wide tiles; B across two 32-row
# tiles and not a multiple of 16 (the mma's rows); H a multiple of 8 (16-byte staging loads) but
# not of the tiles
SHAPES = [(1, 37), (5, 70), (40, 67), (3, 72)]


def act(name, u):
    return {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "identity": lambda v: v}[name](u)


def act_grad(name, h):
    """f' from h = f(u), in float64 (the kernels' act_grad_from_output)."""
    return {"tanh": 1 - h * h, "relu": (h > 0).astype(F64), "sigmoid": h * (1 - h),
            "identity": np.ones_like(h)}[name]


def operand(tf32, a):
    """a as it enters a product: TF32-rounded (the oracle's arithmetic formula) or as stored."""
    return tf32_ref(a).astype(F64) if tf32 else a


def step_time(s, length, flip):
    """kernels/step_order.cuh: the time index batch row b works on at step s."""
    return length - 1 - s if flip and s < length else s


def _values(rng, shape, S, scale=1.0):
    return to_s(rng.standard_normal(shape) * scale, S)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B, H", SHAPES)
@pytest.mark.parametrize("flip", [False, True])
def test_fwd_step_within_the_one_step_bound(executor, backend, mode, B, H, flip):
    S, tf32 = MODES[mode]
    T = 4
    rng = np.random.default_rng(B * H + flip)
    lengths = rng.integers(1, T + 1, B).astype(np.int32)
    lengths[0] = T
    V = _values(rng, (H, H), S, 1 / np.sqrt(H))
    h0 = _values(rng, (B, H), S)
    Vop = operand(tf32, V)
    for s, name in ((0, ACTS[B % 4]), (T - 1, ACTS[(B + 1) % 4]), (2, ACTS[(B + 2) % 4])):
        # the sequence at step s: rows already run hold states, the others p (any S values)
        h = _values(rng, (T, B, H), S)
        ts = [step_time(s, L, flip) for L in lengths]
        prev = np.stack([h0[b] if s == 0 else h[step_time(s - 1, L, flip), b]
                         for b, L in enumerate(lengths)])
        p = np.stack([h[t, b] for b, t in enumerate(ts)])
        y = act(name, p + operand(tf32, prev) @ Vop)
        tol = rounding(S, y) + acc_bound(operand(tf32, prev), Vop) + ELEM
        dev = executor.asarray
        h_dev = dev(h.astype(S))
        backend.kernels.tc_fwd_stepper(h_dev, dev(h0.astype(S)), dev(V.astype(S)),
                                       dev(lengths), name, flip=flip)(s)
        got = to_host(h_dev)
        assert got.dtype == S
        got = got.astype(F64)
        for b, (t, L) in enumerate(zip(ts, lengths)):
            want, bound = (y[b], tol[b]) if s < L else (0.0, 0.0)  # padded: exactly 0
            err = np.abs(got[t, b] - want)
            assert (err <= bound).all(), (f"s={s} ({name}) b={b} t={t}: max error "
                                          f"{err.max():.3e}, bound {np.max(bound):.3e}")
            others = np.delete(got[:, b], t, 0)
            assert np.array_equal(others, np.delete(h[:, b], t, 0)), "other rows changed"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B, H", SHAPES)
@pytest.mark.parametrize("flip", [False, True])
def test_bwd_step_within_the_one_step_bound(executor, backend, mode, B, H, flip):
    S, tf32 = MODES[mode]
    T = 4
    rng = np.random.default_rng(7 + B * H + flip)
    lengths = rng.integers(1, T + 1, B).astype(np.int32)
    lengths[0] = T
    V = _values(rng, (H, H), S, 1 / np.sqrt(H))
    VT = np.ascontiguousarray(V.T)
    dh, dh_last = _values(rng, (T, B, H), S), _values(rng, (B, H), S)
    cases = [(T - 1, True, True), (1, True, False), (0, False, True), (2, True, True)]
    for i, (s, with_dh, with_last) in enumerate(cases):
        name = ACTS[(i + B) % 4]
        h = to_s(act(name, rng.standard_normal((T, B, H))), S)
        du = _values(rng, (T, B, H), S)  # rows of steps after s hold their du; the rest any value
        ts = [step_time(s, L, flip) for L in lengths]
        nxt = np.stack([du[step_time(s + 1, L, flip), b] if s + 1 < T else np.zeros(H)
                        for b, L in enumerate(lengths)])
        g = np.zeros((B, H))
        for b, (t, L) in enumerate(zip(ts, lengths)):
            g[b] += (dh[t, b] if with_dh else 0) + (dh_last[b] if with_last and s == L - 1 else 0)
        acc = g + operand(tf32, nxt) @ operand(tf32, VT)
        fp = np.stack([act_grad(name, h[t, b]) for b, t in enumerate(ts)])
        y = acc * fp
        tol = rounding(S, y) + np.abs(fp) * acc_bound(operand(tf32, nxt), operand(tf32, VT)) \
            + ELEM * (np.abs(acc) + 1)
        dev = executor.asarray
        du_dev = dev(du.astype(S))
        backend.kernels.tc_bwd_stepper(du_dev, dev(dh.astype(S)) if with_dh else None,
                                       dev(dh_last.astype(S)) if with_last else None,
                                       dev(h.astype(S)), dev(VT.astype(S)), dev(lengths), name,
                                       flip=flip)(s)
        got = to_host(du_dev)
        assert got.dtype == S
        got = got.astype(F64)
        for b, (t, L) in enumerate(zip(ts, lengths)):
            want, bound = (y[b], tol[b]) if t < L else (0.0, 0.0)  # padded: no gradient
            err = np.abs(got[t, b] - want)
            assert (err <= bound).all(), (f"s={s} ({name}) b={b} t={t}: max error "
                                          f"{err.max():.3e}, bound {np.max(bound):.3e}")
            assert np.array_equal(np.delete(got[:, b], t, 0), np.delete(du[:, b], t, 0))


def _col_norm(M):
    return np.abs(M).sum(axis=0).max()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse, lengths", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("algo", ["step", "persistent"])
def test_whole_runs_against_the_numpy_reference(executor, backend, mode, reverse, lengths, algo):
    """elman_forward and elman_backward over T steps on the kernels (the step kernels' tc1, or
    the tensor-core persistent kernels) and on the numpy reference, from the same inputs.

    The two runs differ in each product's order of summation only, so their distance grows by
    the recurrence: with e_t the largest |h_t - h'_t| and ρ = max_j Σ_k |V[k, j]| (the largest
    column sum: (e·1) @ |V| <= ρ·e), each step adds both runs' accumulation error
    (2 · 2K·2^-24·ρ, |h| <= 1 for tanh), a flip of the TF32 rounding of h (2·2^-11·ρ·e ... kept
    in ρ_tf32 = ρ·(1 + 2^-10)), both roundings on store (2·U[S], |h| <= 1) and both epilogues'
    float32 work (2·ELEM): e_t <= ρ·e_{t-1} + δ with tanh' <= 1, so e_T <= δ·Σ_{k<T} ρ^k.
    Backward likewise for du, each run on its own forward's h: ρ_b = the largest row sum of |V|
    (tanh' <= 1), δ_b = both accumulations (4K·2^-24·ρ_b·|du|max) + both roundings
    (2·U[S]·|du|max) + both epilogues (2·ELEM·|acc|max) + the forward's difference through
    f'(h) = 1 - h² (2·e_T·|acc|max), |acc| <= |dh| + |dh_last| + ρ_b·|du|max, |du|max the
    reference run's.
    The weight gradients, one product each after the loop, are bit for bit the reference's when
    given the same du and h: the emulator's products are the reference's own float32 products
    (on a GPU, cuBLAS's own order: that comparison is skipped there)."""
    S, tf32 = MODES[mode]
    T, B, I, H = 7, 5, 4, 20
    rng = np.random.default_rng(11)
    x = _values(rng, (T, B, I), S)
    W = _values(rng, (I, H), S, 0.5)
    V = rng.standard_normal((H, H))
    V = to_s(0.9 * V / max(_col_norm(V), _col_norm(V.T)), S)  # ρ, ρ_b <= 0.9: the bound stays small
    b = _values(rng, (H,), S, 0.1)
    h0 = _values(rng, (B, H), S)
    lens = np.array([T, 1, T - 2, 3, T]) if lengths else None
    kw = dict(lengths=lens, reverse=reverse, allow_tf32=tf32)
    args = [a.astype(S) for a in (x, W, V, b, h0)]
    out = gpu_bptt.elman_forward(*args, backend=backend, algo=algo, **kw)
    ref = gpu_bptt.elman_forward(*args, backend="numpy", **kw)
    assert out.cache.plan.label == {"step": "step tc1", "persistent": "persistent v1"}[algo]
    assert out.cache.plan.tf32 == tf32
    assert to_host(out.h).dtype == S
    K, rho = H, _col_norm(V) * (1 + 2.0 ** -10 * tf32)
    delta = 2 * 2 * K * 2.0 ** -24 * rho + 2 * U[S] + 2 * ELEM
    bound = delta * sum(rho ** k for k in range(T))
    err = np.abs(to_host(out.h).astype(F64) - ref.h.astype(F64)).max()
    assert err <= bound, f"h: max error {err:.3e}, bound {bound:.3e}"

    dh, dh_last = _values(rng, (T, B, H), S).astype(S), _values(rng, (B, H), S).astype(S)
    g = gpu_bptt.elman_backward(executor.asarray(dh), out.cache,
                                dh_last=executor.asarray(dh_last))
    for name in ("dx", "dW", "dV", "db", "dh0"):
        assert to_host(getattr(g, name)).dtype == S, name
    c, rc = out.cache, ref.cache
    bk, npb = c.backend, get_backend("numpy")
    du = bk.elman_bwd_seq(executor.asarray(dh), executor.asarray(dh_last), c.h, c.V, "tanh",
                          c.lengths, c.plan)
    du_ref = npb.elman_bwd_seq(dh, dh_last, rc.h, rc.V, "tanh", rc.lengths, rc.plan).astype(F64)
    du_max = np.abs(du_ref).max()
    rho_b = np.abs(V).sum(axis=1).max() * (1 + 2.0 ** -10 * tf32)  # V.T's column sums
    acc_max = np.abs(dh.astype(F64)).max() + np.abs(dh_last.astype(F64)).max() + rho_b * du_max
    delta_b = 4 * K * 2.0 ** -24 * rho_b * du_max + 2 * U[S] * du_max \
        + 2 * ELEM * acc_max + 2 * bound * acc_max  # f'(h) = 1 - h² moves by <= 2|h - h'|
    bound_b = delta_b * sum(rho_b ** k for k in range(T))
    err = np.abs(to_host(du).astype(F64) - du_ref).max()
    assert err <= bound_b, f"du: max error {err:.3e}, bound {bound_b:.3e}"

    # the products outside the loop: given the kernels' du and h, bit for bit the reference's
    host = [to_host(a) if a is not None else None for a in (c.x, c.W, c.V, c.h0, c.h, du)]
    mine = bk.gradients(c.x, c.W, c.V, c.h0, c.h, du, True, True, lengths=c.lengths,
                        reverse=reverse, tf32=tf32)
    theirs = npb.gradients(*host, True, True, lengths=to_host(c.lengths) if lens is not None
                           else None, reverse=reverse, tf32=tf32)
    if executor.kind == CUDA:
        return  # cuBLAS sums in its own order: the bound above holds there
    for name, a, r in zip(("dx", "dW", "dV", "db", "dh0"), mine, theirs):
        if name == "db" and S == F32:  # float32's db: the column-sum kernel's own fixed order
            continue
        assert a.dtype == S and np.array_equal(a.view(np.uint8), r.view(np.uint8)), name
    p = bk.input_projection(c.x, c.W, executor.asarray(args[3]), tf32)
    assert np.array_equal(to_host(p).view(np.uint8),
                          npb.input_projection(*host[:2], args[3], tf32).view(np.uint8))


# -- what the cuda path refuses in these modes -----------------------------------------------------
def _elman_args(S, T=3, B=2, I=3, H=5):
    rng = np.random.default_rng(3)
    return [_values(rng, s, S).astype(S) for s in ((T, B, I), (I, H), (H, H))]


@pytest.mark.parametrize("cell", ["lstm"])
@pytest.mark.parametrize("mode", MODES)
def test_a_cell_without_tensor_core_kernels_refuses_the_mode(cell, mode):
    """The LSTM has no tensor-core kernels yet: the emulator (the cuda backend's code) refuses
    its 16-bit and TF32 modes naming the cell, the mode and the backend, never runs them
    upcast; Elman runs them (and the GRU: the tests above)."""
    S, tf32 = MODES[mode]
    bk = get_backend("emulator")
    assert bk.dtypes == ("float32", "float64", "bfloat16", "float16") and bk.tf32 is True
    assert bk.cell_dtypes(cell) == ("float32", "float64") and bk.cell_dtypes("elman") == bk.dtypes
    G = {"lstm": 4, "gru": 3}[cell]
    x, W, V = _elman_args(S)
    W, V = (np.concatenate([a] * G, axis=1) for a in (W, V))
    fwd = {"lstm": gpu_bptt.lstm_forward, "gru": gpu_bptt.gru_forward}[cell]
    exc, arg = (ValueError, "allow_tf32") if tf32 else (TypeError, "dtype")
    with pytest.raises(exc, match=rf"^{arg}: the emulator backend has no {cell} kernels for "
                                  rf"{mode.replace('tf32', 'float32 with TF32')} yet"):
        fwd(x, W, V, backend=bk, allow_tf32=tf32)
    out = gpu_bptt.elman_forward(*_elman_args(S), backend=bk, allow_tf32=tf32)
    assert out.cache.plan.label == "persistent v1"  # "auto" at B=2: the tensor-core kernels


@pytest.mark.parametrize("options, kw, match", [
    ({"step": "v2"}, {}, r"^step: v2 runs float32 and float64; bfloat16 runs the tensor-core "
                         r"step kernels \(tc1; step='auto'\)"),
    ({"gemm": "own"}, {}, r"^gemm: the own GEMM kernel \(kernels/gemm.cu\) runs float32 and "
                          r"float64 products; bfloat16 takes gemm='cublas'"),
])
def test_options_the_modes_lack_are_refused_by_name(options, kw, match):
    from gpu_bptt.backends.emulator import EmulatorBackend

    with pytest.raises(ValueError, match=match):
        gpu_bptt.elman_forward(*_elman_args(BF16), backend=EmulatorBackend(**options), **kw)


def test_auto_runs_the_tensor_core_step_kernels_above_the_persistent_batch_limit():
    """"auto" above the batch size where float32 would take the persistent kernels runs tc1,
    without a warning; TF32 too (below it, the tensor-core persistent kernels:
    tests/persistent/test_persistent_tc_backend.py)."""
    import warnings

    from gpu_bptt.backends.cuda.persistent import AUTO_MAX_BATCH

    bk = get_backend("emulator")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for S, tf32 in MODES.values():
            plan = bk.resolve_algo("auto", 3, AUTO_MAX_BATCH + 1, 5, S, tf32=tf32)
            assert (plan.label, plan.tf32, plan.block) == ("step tc1", tf32, (32, 4, 1))
            assert "tensor-core step kernels" in plan.reason
    assert bk.resolve_algo("auto", 3, 2, 5, F32).label.startswith("persistent")


# -- the GRU (kernels/gru_{fwd,bwd}_step_tc.cu): three gate blocks forward, K = 3H backward -------
def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B, H", SHAPES)
@pytest.mark.parametrize("flip", [False, True])
def test_gru_fwd_step_within_the_one_step_bound(executor, backend, mode, B, H, flip):
    """h[t] within precision_oracle.gru_step's bound; each gate within its own: r, z
    σ' <= 1/4 of their sums' accumulation bound E; hn E; n = tanh(p_n + r·hn) E·(1 + |hn|/4);
    each plus its rounding on store and ELEM."""
    S, tf32 = MODES[mode]
    T = 4
    rng = np.random.default_rng(21 + B * H + flip)
    lengths = rng.integers(1, T + 1, B).astype(np.int32)
    lengths[0] = T
    V = _values(rng, (H, 3 * H), S, 1 / np.sqrt(H))
    b_h, h0 = _values(rng, (3 * H,), S, 0.1), _values(rng, (B, H), S)
    p = _values(rng, (T, B, 3 * H), S)
    Vop = operand(tf32, V)
    for s in (0, T - 1, 2):
        h = to_s(np.tanh(rng.standard_normal((T, B, H))), S)  # rows run before s: their states
        gates = np.full((T, B, 4 * H), 7.0)
        ts = [step_time(s, L, flip) for L in lengths]
        prev = np.stack([h0[b] if s == 0 else h[step_time(s - 1, L, flip), b]
                         for b, L in enumerate(lengths)])
        hop = operand(tf32, prev)
        a = hop @ Vop + b_h
        E = acc_bound(hop, Vop) + ELEM
        pt = np.stack([p[t, b] for b, t in enumerate(ts)])
        r, z = _sigmoid(pt[:, :H] + a[:, :H]), _sigmoid(pt[:, H:2 * H] + a[:, H:2 * H])
        hn = a[:, 2 * H:]
        n = np.tanh(pt[:, 2 * H:] + r * hn)
        y = (1 - z) * n + z * prev
        Er, Ez, En = E[:, :H], E[:, H:2 * H], E[:, 2 * H:]
        En_tot = En * (1 + np.abs(hn) / 4) + Er * np.abs(hn) / 4 + ELEM
        tol_h = rounding(S, y) + En_tot + (Ez / 4) * np.abs(prev - n) + 2 * ELEM
        want_g = np.concatenate([r, z, n, hn], axis=1)
        tol_g = rounding(S, want_g) + np.concatenate([Er / 4, Ez / 4, En_tot, En], axis=1) + ELEM
        dev = executor.asarray
        h_dev, g_dev = dev(h.astype(S)), dev(gates.astype(S))
        backend.kernels.tc_gru_fwd_stepper(h_dev, g_dev, dev(p.astype(S)), dev(h0.astype(S)),
                                           dev(V.astype(S)), dev(b_h.astype(S)), dev(lengths),
                                           flip=flip)(s)
        got_h, got_g = to_host(h_dev).astype(F64), to_host(g_dev).astype(F64)
        for b, (t, L) in enumerate(zip(ts, lengths)):
            valid = s < L
            for name, got, want, tol in (("h", got_h[t, b], y[b], tol_h[b]),
                                         ("gates", got_g[t, b], want_g[b], tol_g[b])):
                want, tol = (want, tol) if valid else (0.0, 0.0)
                err = np.abs(got - want)
                assert (err <= tol).all(), (f"{name}: s={s} b={b} t={t}: max error "
                                            f"{err.max():.3e}, bound {np.max(tol):.3e}")
            assert np.array_equal(np.delete(got_h[:, b], t, 0), np.delete(h[:, b], t, 0))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B, H", SHAPES)
@pytest.mark.parametrize("flip", [False, True])
def test_gru_bwd_step_within_the_one_step_bound(executor, backend, mode, B, H, flip):
    """dhs = dh + [last] dh_last + dgh[t+1] @ V.T + zd, its error E the product's accumulation
    bound (K = 3H) and ELEM; each output (gr, gz, gn, zd = dhs·z) within |∂y/∂dhs|·E, its
    rounding on store and ELEM; dgh's n block is the stored gn times r, rounded again (the
    reference's rounding points)."""
    S, tf32 = MODES[mode]
    T = 4
    rng = np.random.default_rng(31 + B * H + flip)
    lengths = rng.integers(1, T + 1, B).astype(np.int32)
    lengths[0] = T
    V = _values(rng, (H, 3 * H), S, 1 / np.sqrt(H))
    VT = np.ascontiguousarray(V.T)
    h0 = _values(rng, (B, H), S)
    h = to_s(np.tanh(rng.standard_normal((T, B, H))), S)
    gates = np.concatenate([to_s(_sigmoid(rng.standard_normal((T, B, 2 * H))), S),
                            to_s(np.tanh(rng.standard_normal((T, B, H))), S),
                            _values(rng, (T, B, H), S)], axis=2)
    dh, dh_last = _values(rng, (T, B, H), S), _values(rng, (B, H), S)
    for i, (s, with_dh, with_last) in enumerate([(T - 1, True, True), (1, True, False),
                                                 (0, False, True)]):
        dg = _values(rng, (T, B, 3 * H), S)
        zd = _values(rng, (B, H), S) if s + 1 < T else np.zeros((B, H))
        gn = np.full((T, B, H), 5.0)
        ts = [step_time(s, L, flip) for L in lengths]
        nxt = np.stack([dg[step_time(s + 1, L, flip), b] if s + 1 < T else np.zeros(3 * H)
                        for b, L in enumerate(lengths)])
        prev = np.stack([h0[b] if s == 0 else h[step_time(s - 1, L, flip), b]
                         for b, L in enumerate(lengths)])
        dhs = operand(tf32, nxt) @ operand(tf32, VT) + zd
        for b, (t, L) in enumerate(zip(ts, lengths)):
            dhs[b] += (dh[t, b] if with_dh else 0) + (dh_last[b] if with_last and s == L - 1
                                                      else 0)
        E = acc_bound(operand(tf32, nxt), operand(tf32, VT)) + ELEM * (np.abs(dhs) + 1)
        g = np.stack([gates[t, b] for b, t in enumerate(ts)])
        r, z, c, hn = (g[:, q * H:(q + 1) * H] for q in range(4))
        fn = (1 - z) * (1 - c * c)
        outs = {"gr": (dhs * fn * hn * r * (1 - r), fn * hn * r * (1 - r)),
                "gz": (dhs * (prev - c) * z * (1 - z), (prev - c) * z * (1 - z)),
                "gn": (dhs * fn, fn), "zd": (dhs * z, z)}
        dev = executor.asarray
        dg_dev, gn_dev, zd_dev = dev(dg.astype(S)), dev(gn.astype(S)), dev(zd.astype(S))
        backend.kernels.tc_gru_bwd_stepper(
            dg_dev, gn_dev, zd_dev, dev(dh.astype(S)) if with_dh else None,
            dev(dh_last.astype(S)) if with_last else None, dev(h.astype(S)), dev(h0.astype(S)),
            dev(gates.astype(S)), dev(VT.astype(S)), dev(lengths), flip=flip)(s)
        got_dg, got_gn, got_zd = (to_host(a).astype(F64) for a in (dg_dev, gn_dev, zd_dev))
        for b, (t, L) in enumerate(zip(ts, lengths)):
            got = {"gr": got_dg[t, b, :H], "gz": got_dg[t, b, H:2 * H], "gn": got_gn[t, b],
                   "zd": got_zd[b]}
            for name, (y, factor) in outs.items():
                # a padded step writes zeros, but for zd, which keeps the value it had (zeros in
                # a run, or a later segment's carry: docs/architecture.md §1, memory)
                idle = zd[b] if name == "zd" else 0.0
                want, tol = ((y[b], rounding(S, y[b]) + np.abs(factor[b]) * E[b]
                              + ELEM * (np.abs(y[b]) + 1)) if t < L else (idle, 0.0))
                err = np.abs(got[name] - want)
                assert (err <= tol).all(), (f"{name}: s={s} b={b} t={t}: max error "
                                            f"{err.max():.3e}, bound {np.max(tol):.3e}")
            n_block = got["gn"] * r[b] if t < L else 0.0  # the stored gn times r, rounded once more
            err = np.abs(got_dg[t, b, 2 * H:] - n_block)
            assert (err <= rounding(S, n_block) + ELEM * np.abs(n_block)).all(), f"dgh n: b={b}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
def test_gru_whole_runs_and_products_outside_the_loop(executor, backend, mode, reverse):
    """gru_forward and gru_backward run on tc1 in the mode, in its dtype; given the kernels'
    dgx, the products after the loop (dW, dx, dV, db_x, db_h) are bit for bit the numpy
    reference's (the emulator's are the reference's own float32 products). The steps themselves
    are held to the one-step bounds above; the reference's whole runs to the propagated bound
    in tests/test_precision.py."""
    S, tf32 = MODES[mode]
    T, B, I, H = 6, 5, 4, 20
    rng = np.random.default_rng(41)
    x, W = _values(rng, (T, B, I), S), _values(rng, (I, 3 * H), S, 0.5)
    V = _values(rng, (H, 3 * H), S, 0.5 / np.sqrt(H))
    b_x, b_h, h0 = _values(rng, (3 * H,), S, 0.1), _values(rng, (3 * H,), S, 0.1), \
        _values(rng, (B, H), S)
    lens = np.array([T, 1, T - 2, 3, T])
    args = [a.astype(S) for a in (x, W, V, b_x, b_h, h0)]
    out = gpu_bptt.gru_forward(*args, lengths=lens, reverse=reverse, backend=backend,
                               allow_tf32=tf32)
    assert out.cache.plan.label == "step tc1" and to_host(out.h).dtype == S
    dh = _values(rng, (T, B, H), S).astype(S)
    g = gpu_bptt.gru_backward(executor.asarray(dh), out.cache)
    for name in ("dx", "dW", "dV", "db_x", "db_h", "dh0"):
        assert to_host(getattr(g, name)).dtype == S, name
    if executor.kind == CUDA:
        return  # cuBLAS sums in its own order
    c, bk, npb = out.cache, out.cache.backend, get_backend("numpy")
    dgx, _ = bk.gru_bwd_seq(dh, None, c.h, c.h0, c.gates, c.V, c.lengths, c.plan)
    mine = bk.gru_gradients(c.x, c.W, c.V, c.h0, c.h, c.gates, dgx.copy(), True, True,
                            lengths=c.lengths, reverse=reverse, tf32=tf32)
    theirs = npb.gru_gradients(*(to_host(a) for a in (c.x, c.W, c.V, c.h0, c.h, c.gates)),
                               to_host(dgx).copy(), True, True, lengths=to_host(c.lengths),
                               reverse=reverse, tf32=tf32)
    for name, a, r in zip(("dx", "dW", "dV", "db_x", "db_h"), mine, theirs):
        if name.startswith("db") and S == F32:  # float32's db: the column-sum kernel's order
            continue
        assert a.dtype == S and np.array_equal(a.view(np.uint8), r.view(np.uint8)), name


# -- the products outside the loop on CuPy: cuBLAS's TF32 compute type around them ----------------
def test_cupy_products_run_in_the_tf32_compute_type_and_restore_it(monkeypatch):
    """On CuPy (a stand-in recording CuPy's compute-type calls, NumPy's arithmetic), a
    tensor-core mode's product runs with float32's compute type set to COMPUTE_TYPE_TF32
    (exact on the operands: 16-bit values upcast, or TF32-rounded float32) and puts the previous
    one back, also when the product raises; a plain float32 product leaves it alone."""
    import sys
    import types

    from gpu_bptt.backends.cuda import CudaBackend

    calls, current = [], {np.dtype(np.float32): 1}  # COMPUTE_TYPE_DEFAULT
    linalg = types.ModuleType("cupy._core._routines_linalg")
    linalg.COMPUTE_TYPE_TF32 = 7
    core = types.ModuleType("cupy._core")
    core._routines_linalg = linalg
    core.get_compute_type = lambda dt: current[np.dtype(dt)]
    core.set_compute_type = lambda dt, ct: (calls.append(ct), current.update({np.dtype(dt): ct}))
    cupy = types.ModuleType("cupy")
    for name in ("matmul", "ascontiguousarray", "uint32", "copyto"):
        setattr(cupy, name, getattr(np, name))
    cupy._core = core
    for name, mod in (("cupy", cupy), ("cupy._core", core),
                      ("cupy._core._routines_linalg", linalg)):
        monkeypatch.setitem(sys.modules, name, mod)
    bk = CudaBackend.__new__(CudaBackend)
    bk.xp = cupy
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((6, 9)).astype(F32), rng.standard_normal((9, 4)).astype(F32)
    got = bk.product(a, b, tf32=True)
    assert calls == [7, 1] and current[np.dtype(np.float32)] == 1
    assert np.array_equal(got, tf32_ref(a) @ tf32_ref(b))  # float32 BLAS on the rounded values
    got = bk.product(a.astype(BF16), b.astype(BF16))
    assert calls == [7, 1, 7, 1] and got.dtype == F32
    bk.product(a, b)
    assert calls == [7, 1, 7, 1]
    monkeypatch.setattr(cupy, "matmul", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        bk.product(a, b, tf32=True)
    assert calls[-2:] == [7, 1] and current[np.dtype(np.float32)] == 1
