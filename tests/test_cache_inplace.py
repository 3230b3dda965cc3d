"""In-place changes between elman_forward and elman_backward: W, V and h0 are copied into the cache,
so backward uses the values the forward saw; x and the returned h are guarded by digests, so a
change to either raises ValueError instead of giving silently wrong gradients."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends.base import Backend

from .executors import CUDA, GRADS, NUMPY, assert_equal_arrays, elman_problem, forward_args

EXECUTORS = pytest.mark.executors(NUMPY, "emulator-forward", CUDA)


def problem(executor=None, dtype=np.float64):
    """(elman_forward arguments, on the executor's device if given; dh)."""
    p = elman_problem(5, 3, 4, 6, dtype, lengths=np.array([5, 2, 4]))
    args = forward_args(p)
    if executor is not None:
        args = {k: executor.asarray(v) for k, v in args.items()}
    return args, p["dh"]


@EXECUTORS
@pytest.mark.parametrize("name", ["W", "V", "h0"])
def test_weights_updated_in_place_after_forward_do_not_change_the_gradients(executor, backend,
                                                                           name):
    args, dh = problem(executor)
    ref_out = gpu_bptt.elman_forward(**{k: (v.copy() if k != "lengths" else v) for k, v in args.items()},
                                     backend=backend)
    ref = gpu_bptt.elman_backward(dh, ref_out.cache)
    out = gpu_bptt.elman_forward(**args, backend=backend)
    args[name] -= 0.1 * np.sign(args[name])  # an optimizer step taken before backward
    g = gpu_bptt.elman_backward(dh, out.cache)
    assert_equal_arrays(GRADS, g, ref)


def _bump(a):
    a.reshape(-1)[7] = np.nextafter(a.reshape(-1)[7], np.inf)  # the smallest possible change


def _swap(a):
    flat = a.reshape(-1)
    flat[[2, 9]] = flat[[9, 2]]  # same values, other places (an in-place shuffle)


@EXECUTORS
@pytest.mark.parametrize("change", [_bump, _swap])
@pytest.mark.parametrize("name", ["x", "h"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_x_or_h_changed_in_place_raises(executor, backend, name, change, dtype):
    args, dh = problem(executor, dtype=dtype)
    out = gpu_bptt.elman_forward(**args, backend=backend)
    change(args["x"] if name == "x" else out.h)
    with pytest.raises(ValueError, match=rf"^cache: {name} was changed in place after elman_forward"):
        gpu_bptt.elman_backward(dh, out.cache)


def test_a_rebuilt_cache_is_not_checked():
    """from_arrays is for frameworks that keep the arrays as their own tensors and guard them."""
    args, dh = problem()
    out = gpu_bptt.elman_forward(**args)
    rebuilt = gpu_bptt.ElmanCache.from_arrays(out.cache.arrays(), **out.cache.meta())
    assert out.cache.digests is not None and rebuilt.digests is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_generic_digest_sees_every_single_change_and_every_swap(dtype):
    """The xp-generic digest (the cuda and emulator backends' one), with chunks of 5 elements so
    that 23 elements span five chunks, the last one partial."""
    bk = Backend(np)
    bk.digest_chunk = 5
    a = np.random.default_rng(1).standard_normal(23).astype(dtype)
    a[10] = -a[3]  # a swap of x and -x changes the sign bits only
    base = bk.digest(a)
    assert bk.digest(a.copy()) == base
    for i in range(a.size):
        b = a.copy()
        b[i] = np.nextafter(b[i], np.inf)
        assert bk.digest(b) != base, f"a change at {i} went unseen"
        for j in range(i + 1, a.size):
            b = a.copy()
            b[[i, j]] = b[[j, i]]
            assert bk.digest(b) != base, f"a swap of {i} and {j} went unseen"


def test_no_cache_means_no_copies_and_no_digests(monkeypatch):
    """need_cache=False (inference; the torch path, whose saved tensors PyTorch guards) pays for
    neither the copies nor the digests, and computes the same h."""
    args, _ = problem()
    ref = gpu_bptt.elman_forward(**args, backend="numpy")

    def refuse(self, a):
        raise AssertionError("digest taken without a cache")
    from gpu_bptt.backends.numpy_backend import NumpyBackend
    monkeypatch.setattr(NumpyBackend, "digest", refuse)
    out = gpu_bptt.elman_forward(**args, backend="numpy", need_cache=False)
    assert out.cache is None
    np.testing.assert_array_equal(out.h, ref.h)
    np.testing.assert_array_equal(out.h_last, ref.h_last)

    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from gpu_bptt.torch import RNN

    rnn = RNN(4, 6, backend="numpy").double()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    rnn(x)[0].sum().backward()  # no digest on the way: the torch path keeps no cache
    assert x.grad is not None and torch.isfinite(x.grad).all()
