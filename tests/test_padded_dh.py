"""Values of dh at padded steps (t >= lengths[b]) are ignored on every backend and algorithm:
NaN, inf or huge values there give bit-identical gradients to zeros there, and every backend agrees
with the numpy reference."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt

from .tolerances import assert_close

GRADS = ("dx", "dW", "dV", "db", "dh0")
GARBAGE = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 3e38}


def emulator():
    from gpu_bptt.backends.emulator import EmulatorBackend, emulator_unavailable_reason

    reason = emulator_unavailable_reason()
    if reason:
        pytest.skip(f"the kernel emulator cannot run here: {reason}")
    return EmulatorBackend(order="forward")


def problem(dtype):
    """Tiny sizes: the emulator runs every CUDA thread on the CPU."""
    r = np.random.default_rng(4)
    T, B, I, H = 5, 4, 3, 6
    mk = lambda *s, scale=0.5: (r.standard_normal(s) * scale).astype(dtype)
    args = dict(x=mk(T, B, I), W=mk(I, H), V=mk(H, H, scale=0.3), b=mk(H), h0=mk(B, H),
                lengths=np.array([5, 1, 3, 4], np.int32))
    return args, mk(T, B, H), mk(B, H)


def with_garbage(dh, lengths, value):
    out = dh.copy()
    for b, L in enumerate(lengths):
        out[L:, b] = value
    return out


def grads(backend, algo, args, dh, dh_last):
    out = gpu_bptt.elman_forward(**args, backend=backend, algo=algo)
    return gpu_bptt.elman_backward(dh, out.cache, dh_last=dh_last)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("garbage", GARBAGE)
@pytest.mark.parametrize("where", ["numpy-step", "emulator-step", "emulator-persistent"])
def test_values_at_padded_steps_change_no_gradient(where, garbage, dtype):
    name, algo = where.split("-")
    backend = emulator() if name == "emulator" else "numpy"
    args, dh, dh_last = problem(dtype)
    clean = with_garbage(dh, args["lengths"], 0)
    with np.errstate(over="ignore"):  # 3e38 in float32 is finite; products of it are not
        dirty = with_garbage(dh, args["lengths"], GARBAGE[garbage])
    ref = grads(backend, algo, args, clean, dh_last)
    got = grads(backend, algo, args, dirty, dh_last)
    for k in GRADS:
        np.testing.assert_array_equal(getattr(got, k), getattr(ref, k), err_msg=k)
    if name != "numpy":
        numpy_ref = grads("numpy", "step", args, clean, dh_last)
        for k in GRADS:
            assert_close(k, getattr(got, k), getattr(numpy_ref, k), dtype)


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")  # dW, p
@pytest.mark.parametrize("garbage", GARBAGE)
@pytest.mark.parametrize("where", ["numpy-step", "emulator-step", "emulator-persistent"])
def test_values_of_x_at_padded_steps_leave_h_zero_there(where, garbage):
    """h is exactly 0 at padded steps whatever x holds there, and dx, dV, db, dh0 do not change.
    dW = Σ x[t].T @ du[t] is one GEMM over every step: it ignores finite values of x at padded
    steps (times du = 0) but not NaN or inf, on every backend."""
    name, algo = where.split("-")
    backend = emulator() if name == "emulator" else "numpy"
    args, dh, dh_last = problem(np.float64)
    L = args["lengths"]
    dirty = dict(args, x=with_garbage(args["x"], L, GARBAGE[garbage]))
    ref_out = gpu_bptt.elman_forward(**args, backend=backend, algo=algo)
    out = gpu_bptt.elman_forward(**dirty, backend=backend, algo=algo)
    np.testing.assert_array_equal(out.h, ref_out.h)
    np.testing.assert_array_equal(out.h_last, ref_out.h_last)
    ref = gpu_bptt.elman_backward(dh, ref_out.cache, dh_last=dh_last)
    got = gpu_bptt.elman_backward(dh, out.cache, dh_last=dh_last)
    for k in GRADS if garbage == "huge" else ("dx", "dV", "db", "dh0"):
        np.testing.assert_array_equal(getattr(got, k), getattr(ref, k), err_msg=k)
