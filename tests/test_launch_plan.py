"""The launch plan as the functional core keeps it: made by resolve_algo, held by the cache, and
checked where a framework hands one back to rebuild a cache."""
import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends import LaunchPlan
from gpu_bptt.cells import ElmanCache


def _forward(B=3, H=4, dtype=np.float64):
    r = np.random.default_rng(0)
    x = r.standard_normal((5, B, 2)).astype(dtype)
    return gpu_bptt.elman_forward(x, r.standard_normal((2, H)).astype(dtype),
                                  r.standard_normal((H, H)).astype(dtype) / 3, backend="numpy")


def test_numpy_backend_plans_its_step_loop():
    plan = gpu_bptt.get_backend("numpy").resolve_algo("auto", 5, 3, 4, np.float32)
    assert isinstance(plan, LaunchPlan)
    assert (plan.algo, plan.version, plan.label, plan.B, plan.H, plan.dtype) == (
        "step", None, "step", 3, 4, "float32")
    assert "numpy backend" in plan.reason and plan.fallback is None


def test_cache_keeps_the_forwards_plan():
    out = _forward()
    assert out.cache.plan.label == "step" and out.cache.algo == "step"
    assert out.cache.meta()["algo"] == "step"


def test_rebuilt_cache_takes_a_plan_and_checks_it():
    out = _forward()
    arrays, meta = out.cache.arrays(), out.cache.meta()
    again = ElmanCache.from_arrays(arrays, activation=meta["activation"], has_bias=False,
                                   algo=out.cache.plan, backend="numpy")
    assert again.plan is out.cache.plan
    g = gpu_bptt.elman_backward(np.ones((5, 3, 4)), again)
    ref = gpu_bptt.elman_backward(np.ones((5, 3, 4)), out.cache)
    np.testing.assert_array_equal(g.dV, ref.dV)
    other = _forward(B=2).cache.plan  # made for B = 2
    with pytest.raises(ValueError, match=r"plan: made for B=2, H=4, float64; the arrays have B=3"):
        ElmanCache.from_arrays(arrays, activation="tanh", has_bias=False, algo=other,
                               backend="numpy")
    persistent = LaunchPlan("persistent", 3, 4, "float64", version="v2")
    with pytest.raises(ValueError, match="algo: 'persistent' is not supported by the numpy"):
        ElmanCache.from_arrays(arrays, activation="tanh", has_bias=False, algo=persistent,
                               backend="numpy")
