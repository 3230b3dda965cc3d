"""memory="recompute" (docs/architecture.md §1, memory): the forward keeps a checkpoint every k
steps and the backward replays each segment; the gradients must equal memory="full"'s bit for bit
(np.array_equal), for every cell, with lengths, in both directions, and for the *_pair functions.
The reference here is the full run on the same backend: recomputation promises identity with it,
not closeness (the full run itself is checked against float64 by hand and torch elsewhere).
The per-cell tests run on the numpy backend and on the cpu backend's compiled loops, whose
backward takes the carry in its own loops."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from gpu_bptt import (elman_backward, elman_backward_pair, elman_forward, elman_forward_pair,
                      gru_backward, gru_forward, lstm_backward, lstm_forward)
from gpu_bptt.cells.gru import gru_backward_pair, gru_forward_pair
from gpu_bptt.cells.lstm import lstm_backward_pair, lstm_forward_pair
from gpu_bptt.backends import compiled
from gpu_bptt.cells.recompute import block_steps
from tests.executors import KERNEL_RUNS

SHAPES = ((1, 2, 3, 4), (70, 16, 3, 5), (37, 64, 4, 3))  # blocks of 1, 32 and 8 steps
CASES = list(itertools.product(SHAPES, (False, True), (False, True), (1, 2)))
IDS = [f"T{s[0]}-{'rev' if r else 'fwd'}-{'len' if n else 'full'}-k{m}b"
       for s, r, n, m in CASES]
#: the backends whose recurrences take the carry on the CPU: the reference and the compiled loops
_NO_CPU = compiled.unavailable_reason()
BACKENDS = ("numpy", pytest.param("cpu", marks=pytest.mark.skipif(
    _NO_CPU is not None, reason=f"cpu extra: {_NO_CPU}")))


def _rng_arrays(seed):
    rng = np.random.default_rng(seed)
    return rng, lambda *s: (0.5 * rng.standard_normal(s)).astype(np.float32)


def _lengths(rng, T, B, on):
    return rng.integers(1, T + 1, B).astype(np.int32) if on else None


def _same(a, b, names):
    for n in names:
        x, y = getattr(a, n), getattr(b, n)
        assert (x is None) == (y is None), n
        if x is not None:
            assert np.array_equal(x, y), f"{n}: max |diff| {np.abs(x - y).max()}"


def _both(forward, backward, grads, k, outputs=("h", "h_last")):
    """forward(memory=, checkpoint_every=) -> output; backward(output) -> grads; compares."""
    full = forward(memory="full", checkpoint_every=None)
    rec = forward(memory="recompute", checkpoint_every=k)
    assert rec.cache.memory == "recompute" and len(rec.cache.states) > 1 or k >= rec.h.shape[0]
    _same(full, rec, outputs)
    _same(backward(full), backward(rec), grads)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, reverse, with_lengths, m", CASES, ids=IDS)
def test_elman_recompute_is_bit_identical(shape, reverse, with_lengths, m, backend):
    T, B, I, H = shape
    rng, a = _rng_arrays(1)
    x, W, V, b, h0, dh, dl = a(T, B, I), a(I, H), a(H, H), a(H), a(B, H), a(T, B, H), a(B, H)
    lengths = _lengths(rng, T, B, with_lengths)
    _both(lambda **kw: elman_forward(x, W, V, b, h0, lengths=lengths, reverse=reverse,
                                     backend=backend, **kw),
          lambda o: elman_backward(dh, o.cache, dh_last=dl),
          ("dx", "dW", "dV", "db", "dh0"), m * block_steps(T, B))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, reverse, with_lengths, m", CASES, ids=IDS)
@pytest.mark.parametrize("P", (0, 3))
def test_lstm_recompute_is_bit_identical(shape, reverse, with_lengths, m, P, backend):
    T, B, I, H = shape
    rng, a = _rng_arrays(2)
    Hs = P or H
    x, W, V, b = a(T, B, I), a(I, 4 * H), a(Hs, 4 * H), a(4 * H)
    h0, c0, dh, dl, dcl = a(B, Hs), a(B, H), a(T, B, Hs), a(B, Hs), a(B, H)
    R = a(H, P) if P else None
    lengths = _lengths(rng, T, B, with_lengths)
    _both(lambda **kw: lstm_forward(x, W, V, b, h0, c0, R=R, lengths=lengths, reverse=reverse,
                                    backend=backend, **kw),
          lambda o: lstm_backward(dh, o.cache, dh_last=dl, dc_last=dcl),
          ("dx", "dW", "dV", "db", "dR", "dh0", "dc0"), m * block_steps(T, B),
          ("h", "h_last", "c_last"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, reverse, with_lengths, m", CASES, ids=IDS)
def test_gru_recompute_is_bit_identical(shape, reverse, with_lengths, m, backend):
    T, B, I, H = shape
    rng, a = _rng_arrays(3)
    x, W, V, bx, bh, h0 = a(T, B, I), a(I, 3 * H), a(H, 3 * H), a(3 * H), a(3 * H), a(B, H)
    dh, dl = a(T, B, H), a(B, H)
    lengths = _lengths(rng, T, B, with_lengths)
    _both(lambda **kw: gru_forward(x, W, V, bx, bh, h0, lengths=lengths, reverse=reverse,
                                   backend=backend, **kw),
          lambda o: gru_backward(dh, o.cache, dh_last=dl),
          ("dx", "dW", "dV", "db_x", "db_h", "dh0"), m * block_steps(T, B))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_lengths", (False, True))
def test_pairs_recompute_is_bit_identical(with_lengths, backend):
    T, B, I, H = 70, 16, 5, 6  # blocks of 32 steps
    rng, a = _rng_arrays(4)
    x = a(T, B, I)
    lengths = _lengths(rng, T, B, with_lengths)
    dh = (a(T, B, H), a(T, B, H))
    runs = {
        "elman": (lambda **kw: elman_forward_pair(x, (a(I, H), a(H, H), a(H), None),
                                                  (a(I, H), a(H, H), None, a(B, H)), **kw),
                  lambda o: elman_backward_pair(dh, (o.forward.cache, o.reverse.cache)),
                  ("dx", "dW", "dV", "db", "dh0")),
        "lstm": (lambda **kw: lstm_forward_pair(
            x, (a(I, 4 * H), a(H, 4 * H), a(4 * H), None, None, None),
            (a(I, 4 * H), a(H, 4 * H), None, a(B, H), a(B, H), None), **kw),
            lambda o: lstm_backward_pair(dh, (o[0].cache, o[1].cache)),
            ("dx", "dW", "dV", "db", "dh0", "dc0")),
        "gru": (lambda **kw: gru_forward_pair(
            x, (a(I, 3 * H), a(H, 3 * H), a(3 * H), None, None),
            (a(I, 3 * H), a(H, 3 * H), None, a(3 * H), a(B, H)), **kw),
            lambda o: gru_backward_pair(dh, (o[0].cache, o[1].cache)),
            ("dx", "dW", "dV", "db_x", "db_h", "dh0")),
    }
    for name, (fwd, bwd, grads) in runs.items():
        state = rng.bit_generator.state
        full = fwd(lengths=lengths, backend=backend)
        rng.bit_generator.state = state  # the same weights again
        rec = fwd(lengths=lengths, backend=backend, memory="recompute")
        for g_full, g_rec in zip(bwd(full), bwd(rec)):
            _same(g_full, g_rec, grads)


def test_recompute_keeps_checkpoints_only():
    """The cache of a recompute run holds the states at the segments' starts, not h."""
    T, B, I, H = 100, 32, 3, 4
    _, a = _rng_arrays(5)
    out = elman_forward(a(T, B, I), a(I, H), a(H, H), backend="numpy", memory="recompute")
    assert out.cache.k == 16 and len(out.cache.states) == 7
    assert not any(getattr(out.cache, n, None) is out.h for n in ("h", "x"))


@pytest.mark.parametrize("kw, name", [
    (dict(memory="some"), "memory"),
    (dict(memory="recompute", checkpoint_every=7), "checkpoint_every"),
    (dict(memory="recompute", checkpoint_every=0), "checkpoint_every"),
])
def test_bad_memory_arguments_name_the_argument(kw, name):
    _, a = _rng_arrays(6)
    with pytest.raises(ValueError, match=f"^{name}:"):
        elman_forward(a(16, 2, 3), a(3, 4), a(4, 4), backend="numpy", **kw)


def test_checkpoint_every_must_be_an_int():
    _, a = _rng_arrays(6)
    with pytest.raises(TypeError, match="^checkpoint_every:"):
        lstm_forward(a(16, 2, 3), a(3, 16), a(4, 16), backend="numpy", memory="recompute",
                     checkpoint_every=4.0)


#: a kernel problem with segments of 8 steps (blocks of 512/B) and a short last one
KT, KB, KI, KH = 20, 64, 3, 3


def _kernel_lengths(rng):
    """Lengths 1..KT with rows that are all padding in a later segment (forward) or in every
    segment after the first (reversed): lengths under 8 and under 16 for sure."""
    lengths = rng.integers(1, KT + 1, KB).astype(np.int32)
    lengths[:4] = (1, 7, 8, 15)
    return lengths


def _kernels_recompute(backend, algo, reverse, with_lengths):
    """Elman, LSTM (with a projection too) and GRU on the cuda backend's `algo` kernels:
    recompute against full, bit for bit."""
    T, B, I, H = KT, KB, KI, KH
    assert block_steps(T, B) == 8
    rng, a = _rng_arrays(9)
    x, dh = a(T, B, I), a(T, B, H)
    lengths = _kernel_lengths(rng) if with_lengths else None
    W, V, b, h0 = a(I, H), a(H, H), a(H), a(B, H)
    _both(lambda **kw: elman_forward(x, W, V, b, h0, lengths=lengths, reverse=reverse,
                                     backend=backend, algo=algo, **kw),
          lambda o: elman_backward(dh, o.cache, dh_last=h0), ("dx", "dW", "dV", "db", "dh0"), 8)
    for P in (0, 2):
        Hs = P or H
        W, V, b, h0, c0 = a(I, 4 * H), a(Hs, 4 * H), a(4 * H), a(B, Hs), a(B, H)
        R = a(H, P) if P else None
        _both(lambda **kw: lstm_forward(x, W, V, b, h0, c0, R=R, lengths=lengths,
                                        reverse=reverse, backend=backend, algo=algo, **kw),
              lambda o: lstm_backward(dh[:, :, :Hs].copy(), o.cache, dh_last=h0, dc_last=c0),
              ("dx", "dW", "dV", "db", "dR", "dh0", "dc0"), 8, ("h", "h_last", "c_last"))
    W, V, bx, bh, h0 = a(I, 3 * H), a(H, 3 * H), a(3 * H), a(3 * H), a(B, H)
    _both(lambda **kw: gru_forward(x, W, V, bx, bh, h0, lengths=lengths, reverse=reverse,
                                   backend=backend, algo=algo, **kw),
          lambda o: gru_backward(dh, o.cache, dh_last=h0),
          ("dx", "dW", "dV", "db_x", "db_h", "dh0"), 8)


@pytest.mark.executors(*KERNEL_RUNS)
@pytest.mark.backend_options(step=("v1", "v2", "v3", "v4"))
@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("with_lengths", (False, True))
def test_step_kernels_recompute_is_bit_identical(backend, reverse, with_lengths):
    """Each of the step kernels, run by the emulator in every thread order (one sanitized), in
    both directions: the carry enters as the du (GRU: dgh) row after each row's first step
    (CudaBackend._carried; v4 as its initial state), through dc_last and the GRU's zd, and not
    into rows all padding in a segment."""
    _kernels_recompute(backend, "step", reverse, with_lengths)


@pytest.mark.executors(*KERNEL_RUNS)
@pytest.mark.backend_options(persist=("v1", "v2"))
@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("with_lengths", (False, True))
def test_persistent_kernels_recompute_is_bit_identical(backend, reverse, with_lengths):
    """The persistent kernels, likewise: the carry is du's extra row, which each row's first
    step stages as the next step's du inside the one launch (the kernels' `carry` flag)."""
    _kernels_recompute(backend, "persistent", reverse, with_lengths)


@pytest.mark.parametrize("level, kw", [
    ("Elman", dict(bidirectional=True)), ("LSTM", dict(proj_size=3)),
    ("GRU", dict(bidirectional=True))])
def test_nn_levels_recompute_is_bit_identical(level, kw):
    from gpu_bptt import nn

    T, B, I, H = 70, 16, 4, 6  # blocks of 32 steps
    rng, a = _rng_arrays(8)
    x = a(T, B, I)
    lengths = _lengths(rng, T, B, True)
    grads = []
    for memory in ("full", "recompute"):
        net = getattr(nn, level)(I, H, backend="numpy", rng=0, memory=memory, **kw)
        h = net.forward(x, lengths=lengths)
        dx = net.backward(np.ones_like(h))
        grads.append((h, dx, net.gradients()))
    (h0, dx0, g0), (h1, dx1, g1) = grads
    assert np.array_equal(h0, h1) and np.array_equal(dx0, dx1)
    assert g0.keys() == g1.keys() and all(np.array_equal(g0[k], g1[k]) for k in g0)


def test_nn_level_refuses_an_unknown_memory():
    from gpu_bptt import nn

    with pytest.raises(ValueError, match="^memory:"):
        nn.GRU(3, 4, memory="half")


def test_training_with_recompute_follows_full_bit_for_bit():
    """--memory changes no number of a run: the same losses and parameters, step by step."""
    from gpu_bptt.train import Config, train

    runs = [train(Config(task="adding", cell="lstm", seq_len=70, hidden=8, batch=16, steps=5,
                         backend="numpy", progress=False, memory=m))
            for m in ("full", "recompute")]
    assert runs[0].losses == runs[1].losses


def test_train_refuses_an_unknown_memory(capsys):
    from gpu_bptt.cli import main

    assert main(["train", "--memory", "some", "--no-save", "--quiet", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--memory: expected one of full, recompute, auto" in err[0]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_sixteen_bit_runs_sum_the_whole_sequence_and_refuse_recompute(dtype):
    """A 16-bit run's weight gradients are one float32 sum over all T·B, rounded once
    (docs/architecture.md §1, precision modes): full mode does not split them into blocks even
    where T exceeds block_steps, and recompute (whose blocked sums would round per block) is
    refused by name."""
    import ml_dtypes

    from gpu_bptt.backends import get_backend

    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(np.float16)
    T, B, I, H = 600, 1, 3, 4
    assert block_steps(T, B) < T  # several blocks, were they used
    rng = np.random.default_rng(5)
    x, W, V = (rng.uniform(-0.5, 0.5, s).astype(dt) for s in ((T, B, I), (I, H), (H, H)))
    out = elman_forward(x, W, V, backend="numpy")
    dh = rng.uniform(-1, 1, (T, B, H)).astype(dt)
    g = elman_backward(dh, out.cache)
    bk = get_backend("numpy")
    c = out.cache
    du = bk.elman_bwd_seq(dh, None, c.h, c.V, c.activation, c.lengths, c.plan)
    _, dW, dV, _, _ = bk.gradients(c.x, c.W, c.V, c.h0, c.h, du, False)
    assert g.dW.dtype == dt
    np.testing.assert_array_equal(g.dW.view(np.uint16), dW.view(np.uint16))
    np.testing.assert_array_equal(g.dV.view(np.uint16), dV.view(np.uint16))
    with pytest.raises(ValueError, match=f"memory: .*{dtype} run sums its weight gradients"):
        elman_forward(x, W, V, backend="numpy", memory="recompute")
