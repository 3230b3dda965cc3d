"""lstm_forward and lstm_backward by behaviour, against torch.nn.LSTM / nn.LSTMCell in float64
(tests/torch_cells.py), on each executor of EXECUTORS: lengths, projection, both directions,
h0/c0 given or not, with and without bias, every combination of gradients from above; padded
steps ignoring dh; caches rebuilt from their arrays; the in-place guard; errors naming the
argument."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import gpu_bptt
from gpu_bptt.cells import LSTMCache
from tests.executors import CPU, CUDA, KERNEL_RUNS, NUMPY, assert_equal_arrays
from tests.tolerances import GRADCHECK, assert_close
from tests.torch_cells import (LSTM_GRADS, assert_matches_reference, cell_problem, run,
                               torch_reference)

#: the executors the behaviour tests run on (the emulator's join when its LSTM kernels do)
EXECUTORS = (NUMPY, CPU, *KERNEL_RUNS, CUDA)
UP = ("dh", "dh_last", "dc_last")

# (T, B, I, H, P, lengths?, reverse?, h0?, c0?, bias?, gradients from above)
CASES = [
    (1, 1, 3, 5, 0, False, False, True, True, True, UP),
    (7, 5, 4, 6, 0, True, False, True, True, True, UP),
    (7, 5, 4, 6, 3, True, True, True, True, True, UP),
    (33, 3, 2, 4, 2, True, False, False, True, False, ("dh",)),
    (7, 4, 3, 5, 0, False, True, False, False, True, ("dh_last", "dc_last")),
    (5, 3, 3, 4, 0, True, True, True, False, False, ("dc_last",)),
    (7, 6, 3, 5, 4, False, False, True, True, True, ("dh_last",)),
    (6, 4, 2, 7, 3, True, True, False, False, True, ("dh", "dc_last")),
]


def _case_id(c):
    return "T{}-B{}-I{}-H{}-P{}-len{:d}-rev{:d}-h0{:d}-c0{:d}-bias{:d}-{}".format(
        *c[:10], "+".join(c[10]))


def _check_against_torch(backend, case, dtype=np.float64):
    T, B, I, H, P, with_lengths, reverse, h0, c0, bias, upstream = case
    p = cell_problem("lstm", T, B, I, H, P, dtype, seed=T * 100 + B * 10 + H, bias=bias, h0=h0,
                     c0=c0, lengths=with_lengths)
    ref = torch_reference("lstm", p, reverse=reverse, upstream=upstream)
    out, g = run("lstm", backend, p, reverse=reverse, upstream=upstream)
    assert_matches_reference("lstm", out, g, ref, dtype)
    return p, out


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_torch_lstm(executor, case):
    p, out = _check_against_torch(executor.backend(), case)
    if p["lengths"] is not None:  # padded steps are exactly zero, in h and in the saved c
        for b, L in enumerate(p["lengths"]):
            assert not out.h[L:, b].any() and not out.cache.c[L:, b].any()
            assert not out.cache.gates[L:, b].any()


@pytest.mark.executors(*EXECUTORS)
def test_float32_matches_torch_within_float32_tolerance(executor):
    _check_against_torch(executor.backend(), CASES[2], np.float32)


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("bias", [True, False])
def test_one_step_matches_lstm_cell(executor, bias):
    """T = 1 against torch.nn.LSTMCell (which has no projection; nn.LSTM's is checked above)."""
    B, I, H = 4, 3, 5
    p = cell_problem("lstm", 1, B, I, H, seed=7, bias=bias)
    cell = torch.nn.LSTMCell(I, H, bias=bias).double()
    t = lambda a, grad=False: torch.tensor(a, requires_grad=grad)
    with torch.no_grad():
        cell.weight_ih.copy_(t(p["W"].T))
        cell.weight_hh.copy_(t(p["V"].T))
        if bias:
            cell.bias_ih.copy_(t(p["b"]))
            cell.bias_hh.zero_()
    x, h0, c0 = t(p["x"][0], True), t(p["h0"], True), t(p["c0"], True)
    h, c = cell(x, (h0, c0))
    ((h * t(p["dh"][0])).sum() + (c * t(p["dc_last"])).sum()).backward()
    out = gpu_bptt.lstm_forward(p["x"], p["W"], p["V"], p["b"], p["h0"], p["c0"],
                                backend=executor.backend())
    g = gpu_bptt.lstm_backward(p["dh"], out.cache, dc_last=p["dc_last"])
    assert_close("h", out.h[0], h.detach().numpy())
    assert_close("h_last", out.h_last, h.detach().numpy())
    assert_close("c_last", out.c_last, c.detach().numpy())
    assert_close("dx", g.dx[0], x.grad.numpy())
    assert_close("dW", g.dW, cell.weight_ih.grad.numpy().T)
    assert_close("dV", g.dV, cell.weight_hh.grad.numpy().T)
    assert_close("dh0", g.dh0, h0.grad.numpy())
    assert_close("dc0", g.dc0, c0.grad.numpy())
    assert g.dR is None
    if bias:
        assert_close("db", g.db, cell.bias_ih.grad.numpy())
    else:
        assert g.db is None


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("reverse", [False, True])
def test_padded_steps_of_dh_are_ignored(executor, reverse):
    p = cell_problem("lstm", 7, 4, 3, 5, 2, seed=4, lengths=np.array([7, 2, 5, 1], np.int32))
    clean = run("lstm", executor.backend(), p, reverse=reverse)[1]
    for b, L in enumerate(p["lengths"]):
        p["dh"][L:, b] = np.nan
        p["dh"][L:, b, 0] = np.inf
    dirty = run("lstm", executor.backend(), p, reverse=reverse)[1]
    assert_equal_arrays(LSTM_GRADS, dirty, clean)


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("reverse", [False, True])
def test_cache_is_rebuilt_from_its_arrays(executor, reverse):
    bk = executor.backend()
    p = cell_problem("lstm", 6, 3, 4, 5, 2, seed=5, lengths=True)
    out, g = run("lstm", bk, p, reverse=reverse)
    meta = out.cache.meta()
    ran = "step" if bk.name == "numpy" else out.cache.plan.algo  # the kernels' "auto" decides
    assert meta == {"has_bias": True, "algo": ran, "backend": bk.name, "reverse": reverse}
    arrays = {k: None if v is None else v.copy() for k, v in out.cache.arrays().items()}
    for algo in (meta["algo"], out.cache.plan):
        again = LSTMCache.from_arrays(arrays, **{**meta, "algo": algo})
        assert again.digests is None and again.plan.cell == "lstm" and again.plan.P == 2
        g2 = gpu_bptt.lstm_backward(p["dh"], again, dh_last=p["dh_last"], dc_last=p["dc_last"])
        assert_equal_arrays(LSTM_GRADS, g2, g)
    elman_plan = bk.resolve_algo("step", 6, 3, 5, np.float64, reverse=reverse)
    with pytest.raises(ValueError, match=r"^plan: made for cell='elman', P=0; asked for "
                                         r"cell='lstm', P=2"):
        LSTMCache.from_arrays(arrays, **{**meta, "algo": elman_plan})
    with pytest.raises(ValueError, match=r"arrays: missing \['gates'\]"):
        LSTMCache.from_arrays({k: v for k, v in arrays.items() if k != "gates"}, **meta)
    with pytest.raises(ValueError, match=r"^V: expected shape \(P, 4H\) = \(2, 20\)"):
        LSTMCache.from_arrays({**arrays, "V": arrays["V"][:1]}, **meta)


@pytest.mark.executors(*EXECUTORS)
def test_inputs_are_untouched_and_weights_copied(executor):
    p = cell_problem("lstm", 5, 3, 4, 6, 3, seed=6, lengths=True)
    before = {k: None if v is None else v.copy() for k, v in p.items()}
    out, g = run("lstm", executor.backend(), p)
    for k, v in before.items():
        assert v is None or np.array_equal(p[k], v), f"{k} was modified"
    for k in ("W", "V", "R", "h0", "c0"):  # updated in place after the forward: no effect
        p[k] += 1
    g2 = gpu_bptt.lstm_backward(before["dh"], out.cache, dh_last=before["dh_last"],
                                dc_last=before["dc_last"])
    assert_equal_arrays(LSTM_GRADS, g2, g)


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("name", ["x", "h"])
def test_in_place_change_of_x_or_h_is_refused(executor, name):
    p = cell_problem("lstm", 5, 3, 4, 6, seed=7)
    out = gpu_bptt.lstm_forward(p["x"], p["W"], p["V"], backend=executor.backend())
    (p["x"] if name == "x" else out.h)[2, 1, 0] += 1
    with pytest.raises(ValueError, match=rf"^cache: {name} was changed in place after lstm_forward"):
        gpu_bptt.lstm_backward(p["dh"], out.cache)


@pytest.mark.executors(*EXECUTORS)
def test_need_dx_false_and_bit_identical_runs(executor):
    bk = executor.backend()
    p = cell_problem("lstm", 7, 5, 4, 9, 4, np.float32, seed=8, lengths=True)
    out, g = run("lstm", bk, p)
    part = gpu_bptt.lstm_backward(p["dh"], out.cache, dh_last=p["dh_last"], need_dx=False,
                                  dc_last=p["dc_last"])
    assert part.dx is None
    assert_equal_arrays(LSTM_GRADS[1:], part, g)
    assert_equal_arrays(LSTM_GRADS, run("lstm", bk, p)[1], g)


def test_numpy_plan_records_the_cell():
    plan = gpu_bptt.get_backend("numpy").resolve_algo("auto", 5, 3, 4, np.float32, cell="lstm",
                                                      P=2)
    assert (plan.algo, plan.cell, plan.P, plan.H) == ("step", "lstm", 2, 4)
    out = gpu_bptt.lstm_forward(np.zeros((2, 1, 1)), np.zeros((1, 8)), np.zeros((3, 8)),
                                R=np.zeros((2, 3)), backend="numpy")
    assert (out.cache.plan.cell, out.cache.plan.P, out.cache.plan.H) == ("lstm", 3, 2)


@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_wrapper(reverse):
    p = cell_problem("lstm", 4, 3, 2, 3, 2, seed=9, lengths=True)
    res = gpu_bptt.lstm_gradcheck(p["x"], p["W"], p["V"], p["b"], p["h0"], p["c0"], R=p["R"],
                                  dh=p["dh"], dh_last=p["dh_last"], dc_last=p["dc_last"],
                                  lengths=p["lengths"], backend="numpy", reverse=reverse,
                                  **GRADCHECK)
    assert set(res.errors) == {"x", "W", "V", "b", "h0", "c0", "R"}
    res.assert_ok()
    with pytest.raises(ValueError, match="^dh, dh_last, dc_last: at least one gradient"):
        gpu_bptt.lstm_gradcheck(p["x"], p["W"], p["V"], backend="numpy")


# -- bad input: a TypeError/ValueError naming the argument -----------------------------------------
def _good():
    """T=3, B=2, I=4, H=5, P=3."""
    p = cell_problem("lstm", 3, 2, 4, 5, 3, seed=10)
    return {k: p[k] for k in ("x", "W", "V", "b", "h0", "c0", "R")}


FORWARD_ERRORS = [  # (change, error, message)
    (dict(W=np.zeros((4, 18))), ValueError, r"^W: expected shape \(I, 4H\) for the LSTM's 4 gate "
                                            r"blocks; its second dimension 18"),
    (dict(W=np.zeros((3, 20))), ValueError, r"^W: expected shape \(I, 4H\) = \(4, 4H\)"),
    (dict(V=np.zeros((5, 20))), ValueError, r"^V: expected shape \(P, 4H\) = \(3, 20\), got \(5, 20\)"),
    (dict(V=np.zeros((5, 20)), R=None), None, None),  # no projection: V is (H, 4H)
    (dict(R=np.zeros((4, 3))), ValueError, r"^R: expected shape \(H, P\) = \(5, P\), got \(4, 3\)"),
    (dict(R=np.zeros((5, 0))), ValueError, r"^R: P \(its second dimension\) must be >= 1"),
    (dict(R=np.zeros((5, 3), np.float32)), TypeError, r"^R: dtype float32 differs"),
    (dict(c0=np.zeros((2, 3))), ValueError, r"^c0: expected shape \(B, H\) = \(2, 5\), got \(2, 3\)"),
    (dict(h0=np.zeros((2, 5))), ValueError, r"^h0: expected shape \(B, P\) = \(2, 3\), got \(2, 5\)"),
    (dict(b=np.zeros(5)), ValueError, r"^b: expected shape \(4H,\) = \(20,\)"),
    (dict(x=np.zeros((3, 2))), ValueError, r"^x: expected 3 dimensions"),
    (dict(x=np.zeros((3, 2, 4), np.int64)), TypeError, r"^x: expected float32, float64, bfloat16 or float16, got int64"),
    (dict(lengths=np.array([4, 1])), ValueError, r"^lengths: every entry must be in 1..T"),
    (dict(reverse="no"), TypeError, r"^reverse: expected a bool"),
    (dict(algo="fast"), ValueError, r"^algo: expected one of"),
    (dict(backend="tpu"), ValueError, r"^backend: unknown 'tpu'"),
]


@pytest.mark.parametrize("change,error,message", FORWARD_ERRORS)
def test_forward_errors_name_the_argument(change, error, message):
    args = {**_good(), **change}
    if error is None:
        args["h0"] = None  # (B, H) then; the point is that V's shape follows R
        gpu_bptt.lstm_forward(**args, backend="numpy")
        return
    backend = args.pop("backend", "numpy")
    with pytest.raises(error, match=message):
        gpu_bptt.lstm_forward(**args, backend=backend)


BACKWARD_ERRORS = [  # (gradients from above, error, message)
    (dict(dh=np.zeros((3, 2, 5))), ValueError, r"^dh: expected shape \(T, B, P\) = \(3, 2, 3\)"),
    (dict(dh_last=np.zeros((2, 5))), ValueError, r"^dh_last: expected shape \(B, P\) = \(2, 3\)"),
    (dict(dc_last=np.zeros((2, 3))), ValueError, r"^dc_last: expected shape \(B, H\) = \(2, 5\)"),
    (dict(dc_last=np.zeros((2, 5), np.float32)), TypeError, r"^dc_last: dtype float32 differs"),
    (dict(), ValueError, r"^dh, dh_last, dc_last: at least one gradient must be given"),
]


@pytest.mark.parametrize("grads,error,message", BACKWARD_ERRORS)
def test_backward_errors_name_the_argument(grads, error, message):
    out = gpu_bptt.lstm_forward(**_good(), backend="numpy")
    with pytest.raises(error, match=message):
        gpu_bptt.lstm_backward(grads.pop("dh", None), out.cache, **grads)


def test_backward_refuses_another_cache():
    out = gpu_bptt.elman_forward(np.zeros((2, 1, 1)), np.zeros((1, 2)), np.zeros((2, 2)),
                                 backend="numpy")
    with pytest.raises(TypeError, match="^cache: expected the LSTMCache of lstm_forward, got "
                                        "ElmanCache"):
        gpu_bptt.lstm_backward(np.zeros((2, 1, 2)), out.cache)
