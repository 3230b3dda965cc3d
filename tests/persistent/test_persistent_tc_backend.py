"""The tensor-core persistent kernels through the public functions (elman_forward, elman_backward,
elman_forward_pair, elman_backward_pair) on the emulator backend, the cuda backend's own code:
the plan rules.tc_plan makes (algo "persistent", and "auto" at small B), the refusals naming the
limit or the cell, and the results bit for bit those of the kernels launched directly
(tests/persistent/test_persistent_tc.py) on the same operands. The bounds against the numpy
reference are tests/cuda/test_tc_kernels.py's whole-run test, run there on both algorithms."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends.cuda import persistent as P
from gpu_bptt.backends.emulator import EmulatorBackend
from gpu_bptt.validate import to_host
from tests.executors import KERNEL_RUNS
from tests.persistent.test_persistent_tc import bwd, fwd
from tests.precision_oracle import BF16, F16, F32
from tests.skips import require_emulator

pytestmark = pytest.mark.executors(*KERNEL_RUNS)
#: mode -> (storage dtype, allow_tf32)
MODES = {"bfloat16": (BF16, False), "float16": (F16, False), "tf32": (F32, True)}
T, B, I, H = 4, 3, 3, 7  # 4 blocks of 2 columns on the emulator's 4 multiprocessors


def _inputs(S, seed):
    rng = np.random.default_rng(seed)
    x, W = rng.uniform(-1, 1, (T, B, I)), rng.uniform(-0.5, 0.5, (I, H))
    V = rng.standard_normal((H, H)) * 0.8 / np.sqrt(H)
    b, h0 = rng.uniform(-0.1, 0.1, H), rng.uniform(-1, 1, (B, H))
    dh, dh_last = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    return [a.astype(np.float32).astype(S) for a in (x, W, V, b, h0, dh, dh_last)]


def _bits(a):
    return to_host(a).view(np.uint8)


def _same(a, b) -> bool:
    """Bit for bit the same array, or both None (a gradient not asked for)."""
    return a is None and b is None or (a is not None and b is not None
                                       and np.array_equal(_bits(a), _bits(b)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse, lengths", [(False, True), (True, True), (True, False)])
def test_public_runs_are_the_direct_launches(executor, backend, mode, reverse, lengths):
    """elman_forward(algo="persistent") and elman_backward run the tensor-core persistent
    kernels: h and du bit for bit those of the kernels launched directly on the backend's own p
    (x @ W + b, its product outside the loop), and the gradients those of its products on that
    du."""
    S, tf32 = MODES[mode]
    x, W, V, b, h0, dh, dh_last = _inputs(S, 5 + reverse)
    lens = np.array([T, 1, T - 1], np.int32) if lengths else None
    out = gpu_bptt.elman_forward(x, W, V, b, h0, lengths=lens, reverse=reverse,
                                 backend=backend, algo="persistent", allow_tf32=tf32)
    plan = out.cache.plan
    assert (plan.label, plan.tf32, plan.dtype) == ("persistent v1", tf32, np.dtype(S).name)
    assert plan.reason.startswith(f"algo='persistent' asked for; the tensor-core persistent "
                                  f"kernels of {np.dtype(S).name}{' with TF32' * tf32}")
    L = lens if lengths else np.full(B, T, np.int32)
    p = backend.input_projection(x, W, b, tf32)
    h = fwd(S, p, h0, V, L, "tanh", reverse, executor.name)
    assert to_host(out.h).dtype == S and np.array_equal(_bits(out.h), _bits(h))

    g = gpu_bptt.elman_backward(dh, out.cache, dh_last=dh_last)
    du = bwd(S, dh, dh_last, h, V, L, "tanh", reverse, executor.name)
    mine = backend.gradients(x, W, V, h0, h, du, True, True, lengths=lens, reverse=reverse,
                             tf32=tf32)
    for name, r in zip(("dx", "dW", "dV", "db", "dh0"), mine):
        assert getattr(g, name) is not None and _same(getattr(g, name), r), name


@pytest.mark.executors("emulator-warps")
@pytest.mark.parametrize("mode", MODES)
def test_the_pair_runs_each_direction_on_a_stream_of_its_own(executor, backend, mode):
    """A bidirectional layer on tensor-core persistent plans: no pair kernel, so each direction's
    cooperative launch on a stream of its own (never the float pair kernel), its results bit for
    bit two elman_forward / elman_backward calls."""
    S, tf32 = MODES[mode]
    x, W, V, b, h0, dh, dh_last = _inputs(S, 9)
    Wr, Vr = W[:, ::-1].copy(), V[::-1, ::-1].copy()
    lens = np.array([T, 2, 1], np.int32)
    kw = dict(lengths=lens, backend=backend, algo="persistent", allow_tf32=tf32)
    out = gpu_bptt.elman_forward_pair(x, (W, V, b, h0), (Wr, Vr, None, None), **kw)
    assert out.plan.how == "two streams" and out.plan.forward.label == "persistent v1"
    assert "the tensor-core persistent kernels have no pair kernel" in out.plan.reason
    one = gpu_bptt.elman_forward(x, W, V, b, h0, **kw)
    rev = gpu_bptt.elman_forward(x, Wr, Vr, reverse=True, **kw)
    assert np.array_equal(_bits(out.forward.h), _bits(one.h))
    assert np.array_equal(_bits(out.reverse.h), _bits(rev.h))
    gf, gr = gpu_bptt.elman_backward_pair((dh, dh), (out.forward.cache, out.reverse.cache),
                                          dh_last=(dh_last, None))
    for got, want in ((gf, gpu_bptt.elman_backward(dh, one.cache, dh_last=dh_last)),
                      (gr, gpu_bptt.elman_backward(dh, rev.cache))):
        for name in ("dx", "dW", "dV", "db", "dh0"):
            assert _same(getattr(got, name), getattr(want, name)), name


@pytest.mark.parametrize("mode", MODES)
def test_auto_takes_the_persistent_kernels_at_small_batch(mode, monkeypatch):
    """"auto" takes the tensor-core persistent kernels where B <= AUTO_MAX_BATCH and they run
    (no warning), the step kernels' tc1 above that batch size; where V's slice does not fit,
    "persistent" is refused naming the limit and "auto" runs tc1 with that reason as its
    fallback (warned about)."""
    from gpu_bptt.backends import notices

    require_emulator()
    monkeypatch.setattr(notices, "_warned", set())  # each test hears its own warnings
    S, tf32 = MODES[mode]
    bk = EmulatorBackend(order="warps")
    name = np.dtype(S).name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = bk.resolve_algo("auto", T, 2, 5, S, tf32=tf32)
        geo = P.tc_plan(bk.persistent_limits(), 2, 5, name)
        assert (plan.label, plan.grid, plan.cols, plan.smem, plan.tf32) == \
            ("persistent v1", (geo.grid, 1, 1), geo.cols, geo.smem, tf32)
        assert plan.reason.startswith(f"algo='auto' and B=2 <= {P.AUTO_MAX_BATCH} where it runs; "
                                      "the tensor-core persistent kernels")
        big = P.AUTO_MAX_BATCH + 1
        plan = bk.resolve_algo("auto", T, big, 5, S, tf32=tf32)
        assert plan.label == "step tc1" and plan.fallback is None
        assert plan.reason.startswith(f"algo='auto' runs the step kernels: B={big} > "
                                      f"{P.AUTO_MAX_BATCH}")
    too_big = P.tc_max_hidden(bk.persistent_limits(), 2, name) + 1
    with pytest.raises(ValueError, match=r"^algo='persistent' cannot run: V's slice does not "
                                         rf"fit on chip: H={too_big} needs .* the largest H "
                                         rf"that fits here is {too_big - 1}$"):
        bk.resolve_algo("persistent", T, 2, too_big, S, tf32=tf32)
    with pytest.warns(RuntimeWarning, match=rf"H={too_big} needs"):
        plan = bk.resolve_algo("auto", T, 2, too_big, S, tf32=tf32)
    assert plan.label == "step tc1" and f"H={too_big} needs" in plan.fallback


@pytest.mark.parametrize("mode", MODES)
def test_the_gru_refuses_the_persistent_algorithm_naming_the_cell(mode):
    """The GRU has no tensor-core persistent kernels: "persistent" is refused naming the cell
    and the mode; "auto" runs tc1 at any batch size, its reason saying why (no warning: no
    request failed)."""
    require_emulator()
    S, tf32 = MODES[mode]
    bk = EmulatorBackend(order="warps")
    label = np.dtype(S).name + " with TF32" * tf32
    with pytest.raises(ValueError, match=rf"^algo: the gru cell has no tensor-core persistent "
                                         rf"kernels; {label} runs algo='step' \(or 'auto'\)$"):
        bk.resolve_algo("persistent", T, 2, 5, S, tf32=tf32, cell="gru")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = bk.resolve_algo("auto", T, 2, 5, S, tf32=tf32, cell="gru")
    assert plan.label == "step tc1" and plan.fallback is None
    assert f"the gru cell has no persistent kernels for {label}" in plan.reason
