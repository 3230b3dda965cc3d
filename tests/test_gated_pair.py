"""Both directions of a bidirectional LSTM or GRU level run together (lstm_forward_pair,
lstm_backward_pair, gru_forward_pair, gru_backward_pair; Backend.seq_pair; docs/architecture.md
§1, both directions together): on the cuda backend (and its emulator) each direction's launches
go to a stream of its own, elsewhere one direction after the other. Whatever ran, every output,
cache and gradient is bit for bit what two single-direction calls give; those are checked
against torch.nn in tests/test_nn_gated.py and tests/test_lstm.py / tests/test_gru.py. The
stream order itself is checked on a stand-in CuPy in tests/cuda/test_cuda_glue.py."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_bptt import nn
from gpu_bptt.cells import (gru_backward, gru_backward_pair, gru_forward, gru_forward_pair,
                            lstm_backward, lstm_backward_pair, lstm_forward, lstm_forward_pair)

from .executors import CUDA, NUMPY, assert_equal_arrays

# (T, B, I, H, P, dtype, lengths): ragged lengths, an LSTM projection (P; the GRU ignores it);
# T = 1. Small: the emulator runs every kernel on the CPU.
CASES = [
    (5, 3, 2, 6, 0, np.float64, np.array([5, 1, 3], np.int32)),
    (3, 2, 2, 5, 3, np.float32, None),
    (1, 2, 3, 4, 0, np.float64, None),
]
IDS = ["T5-B3-H6-f64-ragged", "T3-B2-H5-P3-f32", "T1-B2-H4-f64"]
CELLS = {
    # forward, backward, their pairs, the outputs and gradients compared
    "lstm": (lstm_forward, lstm_backward, lstm_forward_pair, lstm_backward_pair,
             ("h", "h_last", "c_last"), ("dx", "dW", "dV", "db", "dR", "dh0", "dc0")),
    "gru": (gru_forward, gru_backward, gru_forward_pair, gru_backward_pair,
            ("h", "h_last"), ("dx", "dW", "dV", "db_x", "db_h", "dh0")),
}


def problem(cell, case, seed):
    """One direction's arguments (as the pair takes them) and gradients from above."""
    T, B, I, H, P, dtype, _ = case
    r = np.random.default_rng(seed)

    def a(*shape):
        return (r.standard_normal(shape) / 2).astype(dtype)
    if cell == "lstm":
        Hs = P or H
        d = (a(I, 4 * H), a(Hs, 4 * H), a(4 * H), a(B, Hs), a(B, H), a(H, P) if P else None)
        return d, dict(dh=a(T, B, Hs), dh_last=a(B, Hs), dc_last=a(B, H))
    d = (a(I, 3 * H), a(H, 3 * H), a(3 * H), a(3 * H), a(B, H))
    return d, dict(dh=a(T, B, H), dh_last=a(B, H))


def check_pair(bk, cell, case, algo):
    """The pair against two single calls on bk, bit for bit; returns the pair's outputs."""
    fwd, bwd, fwd_pair, bwd_pair, outputs, grads = CELLS[cell]
    T, B, I = case[:3]
    x = np.random.default_rng(9).standard_normal((T, B, I)).astype(case[5])
    lengths = case[6]
    dirs, ups = zip(*(problem(cell, case, seed) for seed in (1, 2)))
    pair = fwd_pair(x, *dirs, lengths=lengths, backend=bk, algo=algo)
    pairs = {k: tuple(u[k] for u in ups) for k in ups[0]}
    got = bwd_pair(pairs.pop("dh"), [o.cache for o in pair], **pairs)
    for i, (d, up) in enumerate(zip(dirs, ups)):
        kw = dict(R=d[5]) if cell == "lstm" else {}
        one = fwd(x, *d[:5], **kw, lengths=lengths, backend=bk, algo=algo, reverse=bool(i))
        assert pair[i].cache.plan == one.cache.plan and pair[i].cache.reverse == bool(i)
        assert_equal_arrays(outputs, pair[i], one)
        assert_equal_arrays(grads, got[i], bwd(up.pop("dh"), one.cache, **up))
    return pair


@pytest.mark.executors(NUMPY)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_pair_in_turn_on_numpy(backend, cell):
    check_pair(backend, cell, CASES[0], "step")


@pytest.mark.executors("emulator-forward", "emulator-random", CUDA)
@pytest.mark.parametrize("algo", ["step", "persistent"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_pair_on_two_streams_is_two_single_calls(backend, cell, case, algo):
    """The cuda backend's side-by-side runs (the emulator runs the same code, its side stream
    in order) against each direction's own call, in two thread orders."""
    check_pair(backend, cell, case, algo)


def test_errors_name_the_direction():
    case = CASES[0]
    x = np.zeros(case[:3])
    (f, _), (r, _) = problem("lstm", case, 1), problem("lstm", case, 2)
    with pytest.raises(TypeError, match=r"^reverse: expected the direction's \(W, V, b, h0, c0, "
                                        r"R\)"):
        lstm_forward_pair(x, f, r[:5], backend="numpy")
    with pytest.raises(ValueError, match=r"^reverse: V: expected shape"):
        lstm_forward_pair(x, f, (r[0], r[1][:2]) + r[2:], backend="numpy")
    (f, _), (r, _) = problem("gru", case, 1), problem("gru", case, 2)
    pair = gru_forward_pair(x, f, r, backend="numpy")
    with pytest.raises(TypeError, match=r"^caches: expected a pair"):
        gru_backward_pair(None, pair[0].cache, dh_last=(f[4], r[4]))
    with pytest.raises(TypeError, match=r"^forward: cache: expected the GRUCache"):
        gru_backward_pair(None, (None, pair[1].cache), dh_last=(f[4], r[4]))


@pytest.mark.executors(NUMPY, "emulator-forward")
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU], ids=["LSTM", "GRU"])
def test_nn_bidirectional_level_runs_the_pair(executor, cls, monkeypatch):
    """nn.LSTM/nn.GRU(bidirectional=True) run both directions through Backend.seq_pair, forward
    and backward."""
    bk = executor.backend()
    seen = []
    pair = type(bk).seq_pair
    monkeypatch.setattr(type(bk), "seq_pair",
                        lambda self, name, *a: seen.append(name) or pair(self, name, *a))
    level = cls(2, 4, bidirectional=True, dtype=np.float64, backend=bk, rng=0, algo="step")
    y = level.forward(np.ones((3, 2, 2)))
    level.backward(np.ones_like(y))
    assert seen == [f"{cls.__name__.lower()}_fwd_seq", f"{cls.__name__.lower()}_bwd_seq"]
