"""The full Elman forward and backward on the emulator backend (the cuda backend's own code on the
CPU) against the numpy reference backend, in all four thread orders."""
from __future__ import annotations

import numpy as np
import pytest

from cuda_helpers import ORDERS, assert_close, emulator, require_emulator, rng
import gpu_bptt
from gpu_bptt.backends import get_backend

# (T, B, I, H, activation, lengths?, dh?, dh_last?, dtype, gemm, step)
CASES = [
    (1, 1, 3, 5, "tanh", False, True, True, np.float64, "cublas", "v2"),
    (7, 5, 4, 37, "relu", True, True, False, np.float32, "own", "v2"),
    (33, 3, 6, 20, "sigmoid", True, False, True, np.float64, "own", "v1"),
    (7, 33, 5, 70, "identity", False, True, True, np.float32, "cublas", "v3"),
    (7, 2, 3, 9, "tanh", True, True, True, np.float32, "own", "v3"),
    (1, 4, 2, 6, "relu", True, False, True, np.float32, "own", "auto"),
    (7, 6, 5, 11, "sigmoid", False, True, False, np.float64, "cublas", "auto"),
    (7, 5, 4, 37, "tanh", True, True, True, np.float32, "cublas", "v4"),
    (33, 3, 6, 20, "relu", True, False, True, np.float64, "own", "v4"),
]


def _inputs(T, B, I, H, with_lengths, dtype, seed):
    r = rng(seed)
    mk = lambda *s, scale=0.5: (r.standard_normal(s) * scale).astype(dtype)
    lengths = None
    if with_lengths:
        lengths = r.integers(1, T + 1, size=B).astype(np.int32)
        lengths[-1] = T
    return dict(x=mk(T, B, I), W=mk(I, H, scale=1 / np.sqrt(I)), V=mk(H, H, scale=0.9 / np.sqrt(H)),
                b=mk(H), h0=mk(B, H), lengths=lengths), (mk(T, B, H), mk(B, H))


def _run(backend, args, act, dh, dh_last):
    out = gpu_bptt.elman_forward(**args, activation=act, backend=backend)
    g = gpu_bptt.elman_backward(dh, out.cache, dh_last=dh_last)
    return out, g


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}-B{}-I{}-H{}-{}-len{:d}-dh{:d}-last{:d}-{}-{}-{}".format(
    *c[:8], np.dtype(c[8]).name, *c[9:]))
def test_forward_backward_match_numpy(order, case):
    T, B, I, H, act, with_lengths, with_dh, with_last, dtype, gemm, step = case
    bk = emulator(order, gemm=gemm, step=step)
    args, (dh, dh_last) = _inputs(T, B, I, H, with_lengths, dtype, seed=T * 1000 + B * 10 + H)
    dh = dh if with_dh else None
    dh_last = dh_last if with_last else None
    ref_out, ref_g = _run("numpy", args, act, dh, dh_last)
    out, g = _run(bk, args, act, dh, dh_last)
    assert isinstance(out.h, np.ndarray) and out.h.dtype == dtype
    assert_close("h", out.h, ref_out.h)
    assert_close("h_last", out.h_last, ref_out.h_last)
    for name in ("dx", "dW", "dV", "db", "dh0"):
        assert_close(name, getattr(g, name), getattr(ref_g, name))


def test_no_bias_gives_no_db_and_inputs_are_untouched():
    bk = emulator("random", gemm="own")
    args, (dh, _) = _inputs(5, 3, 4, 7, True, np.float32, seed=1)
    args["b"] = None
    before = {k: None if v is None else v.copy() for k, v in args.items()}
    dh_before = dh.copy()
    ref = _run("numpy", args, "tanh", dh, None)
    out, g = _run(bk, args, "tanh", dh, None)
    assert g.db is None
    assert_close("h", out.h, ref[0].h)
    assert_close("dW", g.dW, ref[1].dW)
    for k, v in before.items():
        assert v is None or np.array_equal(args[k], v), f"{k} was modified"
    assert np.array_equal(dh, dh_before), "dh was modified"


@pytest.mark.parametrize("gemm", ["cublas", "own"])
def test_gradients_are_bit_identical_across_runs(gemm):
    bk = emulator("random", gemm=gemm)
    args, (dh, dh_last) = _inputs(7, 5, 4, 9, True, np.float32, seed=2)
    g1 = _run(bk, args, "tanh", dh, dh_last)[1]
    g2 = _run(bk, args, "tanh", dh, dh_last)[1]
    for name in ("dx", "dW", "dV", "db", "dh0"):
        assert np.array_equal(getattr(g1, name), getattr(g2, name)), name


def test_registry_and_options(monkeypatch):
    require_emulator()
    from gpu_bptt.backends.emulator import EmulatorBackend

    assert get_backend("emulator").name == "emulator"
    monkeypatch.setenv("GPU_BPTT_GEMM", "own")
    monkeypatch.setenv("GPU_BPTT_STEP_KERNEL", "v1")
    monkeypatch.setenv("GPU_BPTT_PERSIST_KERNEL", "v1")
    bk = EmulatorBackend()
    assert (bk.gemm, bk.step, bk.persist) == ("own", "v1", "v1")
    assert EmulatorBackend(persist="V2").persist == "v2"
    with pytest.raises(ValueError, match=r"^persist: expected one of \('v2', 'v1'\)"):
        EmulatorBackend(persist="v3")
    monkeypatch.delenv("GPU_BPTT_PERSIST_KERNEL")
    assert EmulatorBackend().persist == "v2"  # the default
    monkeypatch.setenv("GPU_BPTT_GEMM", "magma")
    with pytest.raises(ValueError, match="gemm"):
        EmulatorBackend()
    with pytest.raises(ValueError, match="step"):
        EmulatorBackend(gemm="cublas", step="v7")
    auto = EmulatorBackend(gemm="cublas", step="auto")
    assert auto.step_version(4, 32) == "v2"
    assert auto.step_version(256, 1024) == "v4"  # a large product: cuBLAS + our epilogue
    assert auto.step_version(32, 1024) == "v3"
    with pytest.raises(ValueError, match="algo"):
        gpu_bptt.elman_forward(np.zeros((1, 1, 1)), np.zeros((1, 1)), np.zeros((1, 1)),
                               backend=auto, algo="fast")
    # "persistent" is honoured, and is an error naming the limit where V's slice does not fit.
    with pytest.raises(ValueError, match="algo='persistent' cannot run"):
        gpu_bptt.elman_forward(np.zeros((1, 1, 1)), np.zeros((1, 220)), np.zeros((220, 220)),
                               backend=auto, algo="persistent")


def test_compile_report_lists_every_file():
    from gpu_bptt.backends.cuda.backend import compile_report
    from gpu_bptt.backends.cuda.kernel_loader import kernel_files

    assert compile_report(emulator("forward")) == {f: None for f in kernel_files()}


@pytest.mark.parametrize("gemm", ["cublas", "own"])
def test_need_dx_false_skips_only_dx(gemm):
    bk = emulator("forward", gemm=gemm)
    args, (dh, dh_last) = _inputs(6, 3, 4, 9, True, np.float32, seed=3)
    out, full = _run(bk, args, "tanh", dh, dh_last)
    part = gpu_bptt.elman_backward(dh, out.cache, dh_last=dh_last, need_dx=False)
    assert part.dx is None
    for name in ("dW", "dV", "db", "dh0"):
        assert np.array_equal(getattr(part, name), getattr(full, name)), name
