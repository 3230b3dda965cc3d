"""The memory planner (gpu_bptt.memory_estimate, gpu_bptt.plan_memory; docs/architecture.md §1,
memory): its estimates against the peaks tracemalloc measures on the numpy backend, and the
choice memory="auto" makes. The measured quantities are defined as the estimate defines them:
held = what the cache keeps alive after the forward beyond x and the outputs (h counted in full,
where the cache refers to it); peak = the most traced at once during forward+backward minus the
outputs of both (h, h_last, c_last, dx and the gradients)."""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt import (elman_backward, elman_forward, gru_backward, gru_forward, lstm_backward,
                      lstm_forward)
from gpu_bptt.cells import memory_plan

GATES = {"elman": 1, "lstm": 4, "gru": 3}
RUNS = {
    "elman": (lambda x, W, V, b, m: elman_forward(x, W, V, b, backend="numpy", memory=m),
              elman_backward),
    "lstm": (lambda x, W, V, b, m: lstm_forward(x, W, V, b, backend="numpy", memory=m),
             lstm_backward),
    "gru": (lambda x, W, V, b, m: gru_forward(x, W, V, b, b, backend="numpy", memory=m),
            gru_backward),
}


def _bytes(obj):
    return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray))


def _measure(cell, T, B, I, H, memory):
    rng = np.random.default_rng(0)
    G = GATES[cell]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dh = rng.standard_normal((T, B, H)).astype(np.float32)
    W = (0.1 * rng.standard_normal((I, G * H))).astype(np.float32)
    V = (0.1 * rng.standard_normal((H, G * H))).astype(np.float32)
    b = np.zeros(G * H, np.float32)
    forward, backward = RUNS[cell]
    backward(dh[:2], forward(x[:2], W, V, b, memory).cache)  # imports and caches: not counted
    gc.collect()
    tracemalloc.start()
    try:
        out = forward(x, W, V, b, memory)
        held = tracemalloc.get_traced_memory()[0] - _bytes(out)
        held += out.h.nbytes if memory == "full" else 0
        grads = backward(dh, out.cache)
        peak = tracemalloc.get_traced_memory()[1] - _bytes(out) - _bytes(grads)
    finally:
        tracemalloc.stop()
    return held, peak


@pytest.mark.parametrize("memory", ("full", "recompute"))
@pytest.mark.parametrize("cell", ("elman", "lstm", "gru"))
def test_estimate_within_ten_percent_of_the_measured_peak(cell, memory):
    T, B, I, H = 1024, 8, 96, 128
    held, peak = _measure(cell, T, B, I, H, memory)
    est = gpu_bptt.memory_estimate(cell, T, B, I, H, "float32", memory=memory)
    for name, got, want in (("held", est.held, held), ("peak", est.peak, peak)):
        assert abs(got - want) <= 0.1 * want, f"{name}: estimated {got}, measured {want}"


def test_recompute_holds_and_peaks_far_less():
    full = gpu_bptt.memory_estimate("lstm", 4096, 8, 256, 256, "float32")
    rec = gpu_bptt.memory_estimate("lstm", 4096, 8, 256, 256, "float32", memory="recompute")
    assert rec.checkpoint_every == 64
    assert full.held > 50 * rec.held and full.peak > 20 * rec.peak


def test_auto_takes_full_where_it_fits_and_recompute_where_not():
    full = gpu_bptt.memory_estimate("gru", 4096, 8, 64, 64, "float32")
    fits = gpu_bptt.plan_memory("gru", 4096, 8, 64, 64, "float32", memory_limit=full.total)
    assert (fits.memory, fits.checkpoint_every) == ("full", 4096)
    tight = gpu_bptt.plan_memory("gru", 4096, 8, 64, 64, "float32", memory_limit=full.total - 1)
    assert (tight.memory, tight.checkpoint_every) == ("recompute", 64)
    assert "recompute every 64 steps: full would need about" in tight.reason
    assert "memory_limit" in tight.reason


def test_auto_in_the_forward_asks_for_the_room_there_is(monkeypatch):
    monkeypatch.setattr(memory_plan, "available", lambda backend=None: (1_000, "test room"))
    rng = np.random.default_rng(1)
    a = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    out = elman_forward(a(64, 32, 3), a(3, 5), a(5, 5), backend="numpy", memory="auto")
    assert out.cache.memory == "recompute" and out.cache.k == 16
    monkeypatch.setattr(memory_plan, "available", lambda backend=None: (10**12, "test room"))
    out = elman_forward(a(64, 32, 3), a(3, 5), a(5, 5), backend="numpy", memory="auto")
    assert isinstance(out.cache, gpu_bptt.ElmanCache)


@pytest.mark.parametrize("kw, err, name", [
    (dict(cell="rnn"), ValueError, "cell"),
    (dict(T=0), ValueError, "T"),
    (dict(dtype="int8"), TypeError, "dtype"),
    (dict(memory="auto"), ValueError, "memory"),
    (dict(memory="recompute", checkpoint_every=5), ValueError, "checkpoint_every"),
])
def test_estimate_arguments_are_checked(kw, err, name):
    args = dict(cell="elman", T=100, B=2, I=3, H=4, dtype="float32") | kw
    with pytest.raises(err, match=f"^{name}:"):
        gpu_bptt.memory_estimate(**args)


def test_plan_memory_limit_is_checked():
    with pytest.raises(ValueError, match="^memory_limit:"):
        gpu_bptt.plan_memory("elman", 100, 2, 3, 4, memory_limit=0)


def test_auto_on_a_backend_that_cannot_recompute_runs_full_and_says_why(monkeypatch):
    monkeypatch.setattr(memory_plan, "available", lambda backend=None: (1_000, "test room"))
    from gpu_bptt.backends.cuda.backend import CudaBackend  # it refuses no cell: make it
    monkeypatch.setattr(CudaBackend, "carry_refusal", lambda self, plan: "no carry (test)")
    rng = np.random.default_rng(2)
    a = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="memory='auto' runs full: recompute every 16 steps.*"
                                            "but no carry \\(test\\)"):
        out = gru_forward(a(64, 32, 3), a(3, 15), a(5, 15), backend="emulator", memory="auto",
                          algo="step")
    assert isinstance(out.cache, gpu_bptt.GRUCache)
