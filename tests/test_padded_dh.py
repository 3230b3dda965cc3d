"""Values of dh at padded steps (t >= lengths[b]) are ignored on every executor and algorithm:
NaN, inf or huge values there give bit-identical gradients to zeros there, and every executor agrees
with the numpy reference."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt

from .executors import CUDA, GRADS, NUMPY, assert_equal_arrays, elman_problem, forward_args
from .tolerances import assert_close

GARBAGE = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 3e38}
# numpy, and one thread order of the emulator: tiny sizes, the emulator runs every CUDA thread on
# the CPU
STEP = pytest.mark.executors(NUMPY, "emulator-forward", CUDA)
PERSISTENT = pytest.mark.executors("emulator-forward", CUDA)  # numpy has no persistent algorithm


def problem(dtype):
    return elman_problem(5, 4, 3, 6, dtype, seed=4, lengths=np.array([5, 1, 3, 4], np.int32))


def with_garbage(dh, lengths, value):
    out = dh.copy()
    for b, L in enumerate(lengths):
        out[L:, b] = value
    return out


def grads(backend, algo, p, dh):
    out = gpu_bptt.elman_forward(**forward_args(p), backend=backend, algo=algo)
    return gpu_bptt.elman_backward(dh, out.cache, dh_last=p["dh_last"])


def check_dh(backend, algo, garbage, dtype):
    p = problem(dtype)
    clean = with_garbage(p["dh"], p["lengths"], 0)
    with np.errstate(over="ignore"):  # 3e38 in float32 is finite; products of it are not
        dirty = with_garbage(p["dh"], p["lengths"], GARBAGE[garbage])
    ref = grads(backend, algo, p, clean)
    got = grads(backend, algo, p, dirty)
    assert_equal_arrays(GRADS, got, ref)
    if backend.name != NUMPY:
        numpy_ref = grads(NUMPY, "step", p, clean)
        for k in GRADS:
            assert_close(k, getattr(got, k), getattr(numpy_ref, k), dtype)


@STEP
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("garbage", GARBAGE)
def test_values_at_padded_steps_change_no_gradient(backend, garbage, dtype):
    check_dh(backend, "step", garbage, dtype)


@PERSISTENT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("garbage", GARBAGE)
def test_values_at_padded_steps_change_no_gradient_persistent(backend, garbage, dtype):
    check_dh(backend, "persistent", garbage, dtype)


def check_x(backend, algo, garbage):
    p = problem(np.float64)
    args = forward_args(p)
    dirty = dict(args, x=with_garbage(args["x"], p["lengths"], GARBAGE[garbage]))
    ref_out = gpu_bptt.elman_forward(**args, backend=backend, algo=algo)
    out = gpu_bptt.elman_forward(**dirty, backend=backend, algo=algo)
    assert_equal_arrays(("h", "h_last"), out, ref_out)
    ref = gpu_bptt.elman_backward(p["dh"], ref_out.cache, dh_last=p["dh_last"])
    got = gpu_bptt.elman_backward(p["dh"], out.cache, dh_last=p["dh_last"])
    assert_equal_arrays(GRADS if garbage == "huge" else ("dx", "dV", "db", "dh0"), got, ref)


# h is exactly 0 at padded steps whatever x holds there, and dx, dV, db, dh0 do not change.
# dW = Σ x[t].T @ du[t] is one GEMM over every step: it ignores finite values of x at padded
# steps (times du = 0) but not NaN or inf, on every executor.
@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")  # dW, p
@STEP
@pytest.mark.parametrize("garbage", GARBAGE)
def test_values_of_x_at_padded_steps_leave_h_zero_there(backend, garbage):
    check_x(backend, "step", garbage)


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")
@PERSISTENT
@pytest.mark.parametrize("garbage", GARBAGE)
def test_values_of_x_at_padded_steps_leave_h_zero_there_persistent(backend, garbage):
    check_x(backend, "persistent", garbage)
