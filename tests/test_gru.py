"""gru_forward and gru_backward by behaviour, against torch.nn.GRU / nn.GRUCell in float64
(tests/torch_cells.py), on each executor of EXECUTORS: lengths, both directions, h0 given or not,
with and without bias, dh/dh_last combinations; padded steps ignoring dh; caches rebuilt from
their arrays; the in-place guard; errors naming the argument."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import gpu_bptt
from gpu_bptt.cells import GRUCache
from tests.executors import CPU, CUDA, KERNEL_RUNS, NUMPY, assert_equal_arrays
from tests.tolerances import GRADCHECK, assert_close
from tests.torch_cells import (GRU_GRADS, assert_matches_reference, cell_problem, run,
                               torch_reference)

#: the executors the behaviour tests run on (the emulator's join when its GRU kernels do)
EXECUTORS = (NUMPY, CPU, *KERNEL_RUNS, CUDA)
UP = ("dh", "dh_last")

# (T, B, I, H, lengths?, reverse?, h0?, bias?, gradients from above)
CASES = [
    (1, 1, 3, 5, False, False, True, True, UP),
    (7, 5, 4, 6, True, False, True, True, UP),
    (7, 5, 4, 6, True, True, True, True, UP),
    (33, 3, 2, 4, True, False, False, False, ("dh",)),
    (7, 4, 3, 5, False, True, False, True, ("dh_last",)),
    (5, 3, 3, 4, True, True, True, False, ("dh",)),
    (7, 6, 3, 9, False, False, True, True, ("dh_last",)),
]


def _case_id(c):
    return "T{}-B{}-I{}-H{}-len{:d}-rev{:d}-h0{:d}-bias{:d}-{}".format(*c[:8], "+".join(c[8]))


def _check_against_torch(backend, case, dtype=np.float64):
    T, B, I, H, with_lengths, reverse, h0, bias, upstream = case
    p = cell_problem("gru", T, B, I, H, 0, dtype, seed=T * 100 + B * 10 + H, bias=bias, h0=h0,
                     lengths=with_lengths)
    ref = torch_reference("gru", p, reverse=reverse, upstream=upstream)
    out, g = run("gru", backend, p, reverse=reverse, upstream=upstream)
    assert_matches_reference("gru", out, g, ref, dtype)
    return p, out


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_torch_gru(executor, case):
    p, out = _check_against_torch(executor.backend(), case)
    if p["lengths"] is not None:  # padded steps are exactly zero, in h and in the saved gates
        for b, L in enumerate(p["lengths"]):
            assert not out.h[L:, b].any() and not out.cache.gates[L:, b].any()


@pytest.mark.executors(*EXECUTORS)
def test_float32_matches_torch_within_float32_tolerance(executor):
    _check_against_torch(executor.backend(), CASES[2], np.float32)


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("bias", [True, False])
def test_one_step_matches_gru_cell(executor, bias):
    B, I, H = 4, 3, 5
    p = cell_problem("gru", 1, B, I, H, seed=7, bias=bias)
    cell = torch.nn.GRUCell(I, H, bias=bias).double()
    t = lambda a, grad=False: torch.tensor(a, requires_grad=grad)
    with torch.no_grad():
        cell.weight_ih.copy_(t(p["W"].T))
        cell.weight_hh.copy_(t(p["V"].T))
        if bias:
            cell.bias_ih.copy_(t(p["b_x"]))
            cell.bias_hh.copy_(t(p["b_h"]))
    x, h0 = t(p["x"][0], True), t(p["h0"], True)
    h = cell(x, h0)
    (h * t(p["dh"][0])).sum().backward()
    out = gpu_bptt.gru_forward(p["x"], p["W"], p["V"], p["b_x"], p["b_h"], p["h0"],
                               backend=executor.backend())
    g = gpu_bptt.gru_backward(p["dh"], out.cache)
    assert_close("h", out.h[0], h.detach().numpy())
    assert_close("h_last", out.h_last, h.detach().numpy())
    assert_close("dx", g.dx[0], x.grad.numpy())
    assert_close("dW", g.dW, cell.weight_ih.grad.numpy().T)
    assert_close("dV", g.dV, cell.weight_hh.grad.numpy().T)
    assert_close("dh0", g.dh0, h0.grad.numpy())
    if bias:
        assert_close("db_x", g.db_x, cell.bias_ih.grad.numpy())
        assert_close("db_h", g.db_h, cell.bias_hh.grad.numpy())
    else:
        assert g.db_x is None and g.db_h is None


@pytest.mark.executors(*EXECUTORS)
def test_one_bias_only(executor):
    """b_x and b_h are independent: either may be left out (torch has both or neither, so the
    missing one is given there as zeros)."""
    p = cell_problem("gru", 6, 3, 4, 5, seed=11, lengths=True)
    ref = torch_reference("gru", {**p, "b_h": np.zeros_like(p["b_h"])})
    out, g = run("gru", executor.backend(), {**p, "b_h": None})
    assert g.db_h is None
    assert_close("h", out.h, ref["h"])
    assert_close("db_x", g.db_x, ref["db_x"])
    assert_close("dV", g.dV, ref["dV"])
    ref = torch_reference("gru", {**p, "b_x": np.zeros_like(p["b_x"])})
    out, g = run("gru", executor.backend(), {**p, "b_x": None})
    assert g.db_x is None
    assert_close("db_h", g.db_h, ref["db_h"])


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("reverse", [False, True])
def test_padded_steps_of_dh_are_ignored(executor, reverse):
    p = cell_problem("gru", 7, 4, 3, 5, seed=4, lengths=np.array([7, 2, 5, 1], np.int32))
    clean = run("gru", executor.backend(), p, reverse=reverse)[1]
    for b, L in enumerate(p["lengths"]):
        p["dh"][L:, b] = np.nan
        p["dh"][L:, b, 0] = np.inf
    dirty = run("gru", executor.backend(), p, reverse=reverse)[1]
    assert_equal_arrays(GRU_GRADS, dirty, clean)


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("reverse", [False, True])
def test_cache_is_rebuilt_from_its_arrays(executor, reverse):
    bk = executor.backend()
    p = cell_problem("gru", 6, 3, 4, 5, seed=5, lengths=True)
    out, g = run("gru", bk, {**p, "b_h": None}, reverse=reverse)
    meta = out.cache.meta()
    ran = "step" if bk.name == "numpy" else out.cache.plan.algo  # the kernels' "auto" decides
    assert meta == {"has_b_x": True, "has_b_h": False, "algo": ran, "backend": bk.name,
                    "reverse": reverse}
    arrays = {k: None if v is None else v.copy() for k, v in out.cache.arrays().items()}
    for algo in (meta["algo"], out.cache.plan):
        again = GRUCache.from_arrays(arrays, **{**meta, "algo": algo})
        assert again.digests is None and again.plan.cell == "gru"
        assert_equal_arrays(GRU_GRADS, gpu_bptt.gru_backward(p["dh"], again,
                                                             dh_last=p["dh_last"]), g)
    lstm_plan = bk.resolve_algo("step", 6, 3, 5, np.float64, reverse=reverse, cell="lstm")
    with pytest.raises(ValueError, match=r"^plan: made for cell='lstm', P=0; asked for "
                                         r"cell='gru', P=0"):
        GRUCache.from_arrays(arrays, **{**meta, "algo": lstm_plan})
    with pytest.raises(ValueError, match=r"^gates: expected shape \(T, B, 4H\) = \(6, 3, 20\)"):
        GRUCache.from_arrays({**arrays, "gates": arrays["gates"][:, :, :15]}, **meta)


@pytest.mark.executors(*EXECUTORS)
def test_inputs_are_untouched_and_weights_copied(executor):
    p = cell_problem("gru", 5, 3, 4, 6, seed=6, lengths=True)
    before = {k: None if v is None else v.copy() for k, v in p.items()}
    out, g = run("gru", executor.backend(), p)
    for k, v in before.items():
        assert v is None or np.array_equal(p[k], v), f"{k} was modified"
    for k in ("W", "V", "h0"):  # updated in place after the forward: no effect
        p[k] += 1
    g2 = gpu_bptt.gru_backward(before["dh"], out.cache, dh_last=before["dh_last"])
    assert_equal_arrays(GRU_GRADS, g2, g)


@pytest.mark.executors(*EXECUTORS)
@pytest.mark.parametrize("name", ["x", "h"])
def test_in_place_change_of_x_or_h_is_refused(executor, name):
    p = cell_problem("gru", 5, 3, 4, 6, seed=7)
    out = gpu_bptt.gru_forward(p["x"], p["W"], p["V"], backend=executor.backend())
    (p["x"] if name == "x" else out.h)[2, 1, 0] += 1
    with pytest.raises(ValueError, match=rf"^cache: {name} was changed in place after gru_forward"):
        gpu_bptt.gru_backward(p["dh"], out.cache)


@pytest.mark.executors(*EXECUTORS)
def test_need_dx_false_and_bit_identical_runs(executor):
    bk = executor.backend()
    p = cell_problem("gru", 7, 5, 4, 9, 0, np.float32, seed=8, lengths=True)
    out, g = run("gru", bk, p)
    part = gpu_bptt.gru_backward(p["dh"], out.cache, dh_last=p["dh_last"], need_dx=False)
    assert part.dx is None
    assert_equal_arrays(GRU_GRADS[1:], part, g)
    assert_equal_arrays(GRU_GRADS, run("gru", bk, p)[1], g)


@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_wrapper(reverse):
    p = cell_problem("gru", 4, 3, 2, 3, seed=9, lengths=True)
    res = gpu_bptt.gru_gradcheck(p["x"], p["W"], p["V"], p["b_x"], p["b_h"], p["h0"],
                                 dh=p["dh"], dh_last=p["dh_last"], lengths=p["lengths"],
                                 backend="numpy", reverse=reverse, **GRADCHECK)
    assert set(res.errors) == {"x", "W", "V", "b_x", "b_h", "h0"}
    res.assert_ok()
    with pytest.raises(ValueError, match="^dh, dh_last: at least one gradient"):
        gpu_bptt.gru_gradcheck(p["x"], p["W"], p["V"], backend="numpy")


# -- bad input: a TypeError/ValueError naming the argument -----------------------------------------
def _good():
    """T=3, B=2, I=4, H=5."""
    p = cell_problem("gru", 3, 2, 4, 5, seed=10)
    return {k: p[k] for k in ("x", "W", "V", "b_x", "b_h", "h0")}


FORWARD_ERRORS = [  # (change, error, message)
    (dict(W=np.zeros((4, 16))), ValueError, r"^W: expected shape \(I, 3H\) for the GRU's 3 gate "
                                            r"blocks; its second dimension 16"),
    (dict(W=np.zeros((4, 0))), ValueError, r"^W: expected shape \(I, 3H\) for the GRU's"),
    (dict(V=np.zeros((5, 20))), ValueError, r"^V: expected shape \(H, 3H\) = \(5, 15\), got \(5, 20\)"),
    (dict(b_x=np.zeros(5)), ValueError, r"^b_x: expected shape \(3H,\) = \(15,\)"),
    (dict(b_h=np.zeros(20)), ValueError, r"^b_h: expected shape \(3H,\) = \(15,\)"),
    (dict(b_h=np.zeros(15, np.float32)), TypeError, r"^b_h: dtype float32 differs"),
    (dict(h0=np.zeros((3, 5))), ValueError, r"^h0: expected shape \(B, H\) = \(2, 5\), got \(3, 5\)"),
    (dict(x=np.zeros((3, 0, 4))), ValueError, r"^x: expected \(T, B, I\) with T, B, I >= 1"),
    (dict(lengths=np.array([1.0, 2.0])), TypeError, r"^lengths: expected integers"),
    (dict(reverse=1), TypeError, r"^reverse: expected a bool"),
    (dict(algo="persistent"), ValueError, r"^algo: 'persistent' is not supported by the numpy"),
]


@pytest.mark.parametrize("change,error,message", FORWARD_ERRORS)
def test_forward_errors_name_the_argument(change, error, message):
    with pytest.raises(error, match=message):
        gpu_bptt.gru_forward(**{**_good(), **change}, backend="numpy")


BACKWARD_ERRORS = [  # (gradients from above, error, message)
    (dict(dh=np.zeros((3, 2, 4))), ValueError, r"^dh: expected shape \(T, B, H\) = \(3, 2, 5\)"),
    (dict(dh_last=np.zeros((5,))), ValueError, r"^dh_last: expected 2 dimensions"),
    (dict(), ValueError, r"^dh, dh_last: at least one gradient must be given"),
]


@pytest.mark.parametrize("grads,error,message", BACKWARD_ERRORS)
def test_backward_errors_name_the_argument(grads, error, message):
    out = gpu_bptt.gru_forward(**_good(), backend="numpy")
    with pytest.raises(error, match=message):
        gpu_bptt.gru_backward(grads.pop("dh", None), out.cache, **grads)


def test_backward_refuses_another_cache():
    out = gpu_bptt.lstm_forward(np.zeros((2, 1, 1)), np.zeros((1, 8)), np.zeros((2, 8)),
                                backend="numpy")
    with pytest.raises(TypeError, match="^cache: expected the GRUCache of gru_forward, got "
                                        "LSTMCache"):
        gpu_bptt.gru_backward(np.zeros((2, 1, 2)), out.cache)
