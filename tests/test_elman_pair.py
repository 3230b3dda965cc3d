"""Both directions of a bidirectional layer run together (elman_forward_pair, elman_backward_pair;
docs/architecture.md §1, both directions together): on the emulator the persistent pair kernel
runs both in one cooperative launch, and where its blocks cannot all be resident each direction
goes to a stream of its own; the step kernels always take two streams. Whatever ran, every
output, cache and gradient is bit for bit what two single-direction calls give (the same
kernels' arithmetic), and those are checked against an independent reference in
tests/test_reverse.py."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends.cuda import registry
from gpu_bptt.cells import elman_backward_pair, elman_forward_pair
from gpu_bptt.validate import to_host

from .executors import (CUDA, GRADS, KERNEL_RUNS, NUMPY, OUTPUTS, assert_equal_arrays,
                        elman_problem)

# (T, B, I, H, dtype, lengths): ragged lengths over batch chunks (B = 11: 8 + 3 rows in the
# persistent kernels), H over several blocks of the emulator's 4 multiprocessors, T = 1.
CASES = [
    (6, 5, 3, 7, np.float32, np.array([6, 1, 4, 6, 2], np.int32)),
    (4, 11, 2, 9, np.float64, True),
    (1, 3, 2, 5, np.float64, None),
]
IDS = ["T6-B5-H7-f32-ragged", "T4-B11-H9-f64-ragged", "T1-B3-H5-f64"]


def directions(case, seed=0):
    """x, lengths, the two directions' (W, V, b, h0) and upstream gradients of one problem."""
    T, B, I, H, dtype, lengths = case
    f = elman_problem(T, B, I, H, dtype, seed=seed, lengths=False if lengths is None else lengths)
    r = elman_problem(T, B, I, H, dtype, seed=seed + 1, lengths=False)
    weights = [tuple(p[k] for k in ("W", "V", "b", "h0")) for p in (f, r)]
    return f["x"], f["lengths"], weights, (f["dh"], r["dh"]), (f["dh_last"], r["dh_last"])


def singles(bk, x, lengths, weights, dh, dh_last, algo, **kw):
    """Two single-direction calls: (outputs, grads) of the forward then the reversed direction."""
    outs, grads = [], []
    for w, d, dl, reverse in zip(weights, dh, dh_last, (False, True)):
        out = gpu_bptt.elman_forward(x, *w, lengths=lengths, backend=bk, algo=algo,
                                     reverse=reverse)
        outs.append(out)
        grads.append(gpu_bptt.elman_backward(d, out.cache, dh_last=dl, **kw))
    return outs, grads


def check_pair(bk, case, algo, how, **kw):
    x, lengths, weights, dh, dh_last = directions(case)
    pair = elman_forward_pair(x, *weights, lengths=lengths, backend=bk, algo=algo)
    assert (pair.plan.how, pair.plan.forward.algo) == (how, algo), pair.plan.label
    got = elman_backward_pair(dh, (pair.forward.cache, pair.reverse.cache), dh_last=dh_last, **kw)
    outs, grads = singles(bk, x, lengths, weights, dh, dh_last, algo, **kw)
    for i, name in enumerate(("forward", "reverse")):
        single = getattr(pair, name)
        assert single.cache.plan == outs[i].cache.plan
        assert_equal_arrays(OUTPUTS, single, outs[i])
        assert_equal_arrays(GRADS, got[i], grads[i])
    # each cache alone, as a single call's: the single-direction backward takes it
    alone = gpu_bptt.elman_backward(dh[1], pair.reverse.cache, dh_last=dh_last[1], **kw)
    assert_equal_arrays(GRADS, alone, grads[1])
    return pair


@pytest.mark.executors(NUMPY)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pair_in_turn_on_numpy(backend, case):
    pair = check_pair(backend, case, "step", "in turn")
    assert pair.plan.label == "step, both directions in turn"


@pytest.mark.executors(*KERNEL_RUNS, CUDA)
@pytest.mark.backend_options(persist=tuple(registry.PERSIST))
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_persistent_pair_is_one_launch(backend, case):
    """The pair kernel (grid (g, 2, 1)) against each direction's own launch, every thread order,
    sanitized."""
    pair = check_pair(backend, case, "persistent", "one launch")
    assert pair.plan.grid == (pair.plan.forward.grid[0], 2, 1)
    assert pair.plan.label == f"persistent {backend.persist}, both directions in one launch"


@pytest.mark.executors(*KERNEL_RUNS, CUDA)
@pytest.mark.backend_options(step=tuple(registry.STEP))
@pytest.mark.parametrize("case", CASES[:2], ids=IDS[:2])
def test_step_pair_on_two_streams(backend, case):
    check_pair(backend, case, "step", "two streams")


@pytest.mark.executors("emulator-random", "emulator-warps")
def test_persistent_pair_on_two_streams_where_it_cannot_be_one_launch(backend, monkeypatch):
    """One block per multiprocessor: the pair's 2 * 3 blocks exceed the 4 multiprocessors, so
    each direction's launch goes to a stream of its own, and the plan says why."""
    monkeypatch.setattr(backend, "persistent_blocks_per_sm", lambda fn, smem: 1)
    monkeypatch.setattr(backend, "_pairs", {})
    pair = check_pair(backend, CASES[0], "persistent", "two streams", need_dx=False)
    g = pair.plan.forward.grid[0]
    assert f"2 * {g} = {2 * g} blocks cannot be co-resident (1 block(s)" in pair.plan.reason
    assert pair.plan.label.endswith("both directions on two streams")


def test_errors_name_the_argument():
    x, lengths, weights, dh, dh_last = directions(CASES[0])
    with pytest.raises(TypeError, match=r"^reverse: expected the direction's \(W, V, b, h0\)"):
        elman_forward_pair(x, weights[0], weights[1][:3], backend="numpy")
    W, V, b, h0 = weights[1]
    with pytest.raises(ValueError, match=r"^reverse: V: expected shape"):
        elman_forward_pair(x, weights[0], (W, V[:2], b, h0), backend="numpy")
    with pytest.raises(TypeError, match=r"^forward: "):
        elman_forward_pair(x, (W.astype(np.float64),) + weights[0][1:], weights[1],
                           backend="numpy")
    pair = elman_forward_pair(x, *weights, lengths=lengths, backend="numpy")
    caches = (pair.forward.cache, pair.reverse.cache)
    with pytest.raises(TypeError, match=r"^caches: expected a pair"):
        elman_backward_pair(dh, caches[0])
    with pytest.raises(ValueError, match=r"^caches: expected the forward direction's cache"):
        elman_backward_pair(dh, caches[::-1])
    other = gpu_bptt.elman_forward(x, *weights[1], backend="numpy", reverse=True)  # no lengths
    with pytest.raises(ValueError, match=r"^caches: not the two directions of one layer"):
        elman_backward_pair(dh, (caches[0], other.cache))


@pytest.mark.executors(NUMPY, "emulator-forward", CUDA)
@pytest.mark.parametrize("with_dh", [True, False], ids=["dh", "only-dh_last"])
def test_nn_bidirectional_level_runs_the_pair(executor, with_dh):
    """gpu_bptt.nn.Elman(bidirectional=True) runs both directions through the pair (its
    pair_plan says how) and gives, bit for bit, the two directions' single calls."""
    from gpu_bptt import nn

    bk = executor.backend()
    algo = "step" if executor.kind == NUMPY else "persistent"
    level = nn.Elman(3, 7, bidirectional=True, dtype=np.float64, backend=bk, rng=0, algo=algo)
    x, lengths, _, dh, dh_last = directions(CASES[1][:1] + (11, 3, 7, np.float64, True))
    y = level.forward(x, lengths=lengths)
    assert level.pair_plan.how == ("in turn" if executor.kind == NUMPY else "one launch")
    dx = level.backward(np.concatenate(dh, axis=2) if with_dh else None,
                        dh_last=np.stack(dh_last))
    p = level.parameters()
    weights = [(p["W" + s], p["V" + s], p["b" + s], None) for s in ("", "_reverse")]
    outs, grads = singles(bk, x, lengths, weights, dh if with_dh else (None, None), dh_last, algo)
    np.testing.assert_array_equal(to_host(y), np.concatenate([to_host(o.h) for o in outs], 2))
    np.testing.assert_array_equal(to_host(dx), to_host(grads[0].dx + grads[1].dx))
    for s, g in zip(("", "_reverse"), grads):
        np.testing.assert_array_equal(to_host(level.gradients()["V" + s]), to_host(g.dV))
