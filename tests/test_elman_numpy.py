"""The numpy reference backend: forward against the seed's definition element by element, and every
gradient against float64 finite differences. The behaviours every executor shares (bit-identical
gradients, need_dx) are in tests/test_elman.py."""
import zlib

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.gradcheck import elman_gradcheck

from .executors import elman_problem
from .tolerances import GRADCHECK, assert_close

ACTS = ["tanh", "relu", "sigmoid", "identity"]
F = {"tanh": np.tanh, "relu": lambda u: np.maximum(u, 0), "sigmoid": lambda u: 1 / (1 + np.exp(-u)),
     "identity": lambda u: u}


def seed_forward(x, W, V, b, h0, f, lengths):
    """U_i(t) = Σ_l W_li X_l(t) + Σ_m V_mi X_m(t-1) + b_i, X(t) = f(U(t)), scalar loops."""
    T, B, I = x.shape
    H = W.shape[1]
    h = np.zeros((T, B, H))
    for bb in range(B):
        prev = np.zeros(H) if h0 is None else h0[bb].astype(np.float64)
        L = T if lengths is None else lengths[bb]
        for t in range(L):
            u = np.zeros(H)
            for i in range(H):
                u[i] = sum(W[l, i] * x[t, bb, l] for l in range(I)) + sum(V[m, i] * prev[m] for m in range(H))
                u[i] += 0 if b is None else b[i]
            prev = h[t, bb] = f(u)
    return h


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("use_lengths", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_seed_definition(act, use_lengths, dtype):
    p = elman_problem(7, 3, 5, 6, dtype=dtype, lengths=use_lengths, seed=3)
    out = gpu_bptt.elman_forward(p["x"], p["W"], p["V"], p["b"], p["h0"], activation=act,
                                 lengths=p["lengths"], backend="numpy")
    ref = seed_forward(p["x"], p["W"], p["V"], p["b"], p["h0"], F[act], p["lengths"])
    assert out.h.dtype == dtype and out.h_last.dtype == dtype
    assert_close("h", out.h, ref, dtype)
    L = p["lengths"] if use_lengths else np.full(3, 7)
    assert_close("h_last", out.h_last, ref[L - 1, np.arange(3)], dtype)
    if use_lengths:
        for bb in range(3):
            assert not out.h[L[bb]:, bb].any(), "padded steps must be exactly zero"


CONFIGS = [  # (T, B, I, H)
    (1, 1, 1, 1), (1, 3, 5, 4), (7, 1, 3, 5), (7, 5, 3, 7), (33, 2, 3, 3), (5, 4, 9, 11),
]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("use_lengths", [False, True])
def test_gradients_against_finite_differences(act, cfg, use_lengths):
    T, B, I, H = cfg
    # gain 0.6: a recurrence that contracts even at H = 3, so that h stays O(1) over 33 steps of
    # identity and the differences' rounding (relative to h) stays within GRADCHECK's tolerance
    p = elman_problem(T, B, I, H, seed=zlib.crc32(repr((act, cfg, use_lengths)).encode()),
                      lengths=use_lengths, gain=0.6)
    if act == "relu":  # keep |u| away from the kink at 0, where finite differences are meaningless
        p["b"] = np.abs(p["b"]) + 0.3
    res = elman_gradcheck(p["x"], p["W"], p["V"], p["b"], p["h0"], dh=p["dh"], dh_last=p["dh_last"],
                          activation=act, lengths=p["lengths"], backend="numpy",
                          max_entries=40, **GRADCHECK)
    assert set(res.errors) == {"x", "W", "V", "b", "h0"}
    res.assert_ok()


@pytest.mark.parametrize("which", ["dh", "dh_last"])
def test_each_upstream_gradient_alone(which):
    p = elman_problem(6, 4, 3, 5, seed=11, lengths=True)
    kw = {"dh": p["dh"] if which == "dh" else None, "dh_last": p["dh_last"] if which == "dh_last" else None}
    elman_gradcheck(p["x"], p["W"], p["V"], p["b"], p["h0"], lengths=p["lengths"], backend="numpy",
                    **kw, **GRADCHECK).assert_ok()


def test_no_bias_gives_db_none_and_no_h0_still_gives_dh0():
    p = elman_problem(4, 2, 3, 3, bias=False, h0=False)
    out = gpu_bptt.elman_forward(p["x"], p["W"], p["V"], backend="numpy")
    g = gpu_bptt.elman_backward(p["dh"], out.cache)
    assert g.db is None
    assert g.dh0.shape == (2, 3) and np.abs(g.dh0).sum() > 0
    elman_gradcheck(p["x"], p["W"], p["V"], dh=p["dh"], backend="numpy", **GRADCHECK).assert_ok()


def test_padded_steps_receive_and_pass_no_gradient():
    p = elman_problem(6, 3, 2, 4, lengths=True, seed=5)
    p["lengths"] = np.array([6, 2, 4])
    out = gpu_bptt.elman_forward(p["x"], p["W"], p["V"], p["b"], p["h0"], lengths=p["lengths"])
    g1 = gpu_bptt.elman_backward(p["dh"], out.cache)
    dh2 = p["dh"].copy()
    dh2[2:, 1] = 1e6  # garbage at padded steps must be ignored
    dh2[4:, 2] = -1e6
    g2 = gpu_bptt.elman_backward(dh2, out.cache)
    for k in ("dx", "dW", "dV", "db", "dh0"):
        np.testing.assert_array_equal(getattr(g1, k), getattr(g2, k))
    assert not g1.dx[2:, 1].any() and not g1.dx[4:, 2].any()


def test_cache_round_trips_through_its_arrays():
    p = elman_problem(5, 3, 4, 4, lengths=True)
    out = gpu_bptt.elman_forward(p["x"], p["W"], p["V"], p["b"], p["h0"], activation="sigmoid",
                                 lengths=p["lengths"])
    arrays = {k: (None if v is None else v.copy()) for k, v in out.cache.arrays().items()}
    rebuilt = gpu_bptt.ElmanCache.from_arrays(arrays, **out.cache.meta())
    g1 = gpu_bptt.elman_backward(p["dh"], out.cache, dh_last=p["dh_last"])
    g2 = gpu_bptt.elman_backward(p["dh"], rebuilt, dh_last=p["dh_last"])
    for k in ("dx", "dW", "dV", "db", "dh0"):
        np.testing.assert_array_equal(getattr(g1, k), getattr(g2, k))
    assert set(out.cache.arrays()) == {"x", "W", "V", "h0", "h", "lengths"}


def test_inputs_are_not_modified():
    p = elman_problem(5, 3, 4, 4, lengths=True)
    before = {k: (None if v is None else v.copy()) for k, v in p.items()}
    out = gpu_bptt.elman_forward(p["x"], p["W"], p["V"], p["b"], p["h0"], lengths=p["lengths"])
    gpu_bptt.elman_backward(p["dh"], out.cache, dh_last=p["dh_last"])
    for k, v in before.items():
        if v is not None:
            np.testing.assert_array_equal(p[k], v, err_msg=k)


def test_gradcheck_catches_a_wrong_gradient():
    p = elman_problem(4, 2, 3, 3)
    out = gpu_bptt.elman_forward(p["x"], p["W"], p["V"], p["b"], p["h0"])
    g = gpu_bptt.elman_backward(p["dh"], out.cache)

    def loss(x, W, V, b, h0):
        return float((gpu_bptt.elman_forward(x, W, V, b, h0).h * p["dh"]).sum())

    wrong = g.dV.copy()
    wrong[1, 2] *= 1.01
    inputs = {k: p[k] for k in ("x", "W", "V", "b", "h0")}
    assert gpu_bptt.gradcheck(loss, inputs, {"V": g.dV}, **GRADCHECK).ok
    res = gpu_bptt.gradcheck(loss, inputs, {"V": wrong}, **GRADCHECK)
    assert not res.ok
    with pytest.raises(AssertionError, match="FAILED"):
        res.assert_ok()


def test_cache_from_arrays_takes_views_and_checks_shapes():
    p = elman_problem(5, 3, 4, 4)
    out = gpu_bptt.elman_forward(p["x"], p["W"], p["V"], p["b"], p["h0"])
    arrays = dict(out.cache.arrays())
    arrays["V"] = np.asfortranarray(arrays["V"])  # a transposed-layout view, as frameworks hold
    rebuilt = gpu_bptt.ElmanCache.from_arrays(arrays, **out.cache.meta())
    np.testing.assert_array_equal(rebuilt.V, out.cache.V)
    g1 = gpu_bptt.elman_backward(p["dh"], out.cache)
    g2 = gpu_bptt.elman_backward(p["dh"], rebuilt)
    for k in ("dx", "dW", "dV", "db", "dh0"):
        np.testing.assert_allclose(getattr(g2, k), getattr(g1, k), rtol=1e-12, atol=1e-14)
    arrays["h0"] = arrays["h0"][:2]
    with pytest.raises(ValueError, match=r"^h0: expected shape \(B, H\)"):
        gpu_bptt.ElmanCache.from_arrays(arrays, **out.cache.meta())
