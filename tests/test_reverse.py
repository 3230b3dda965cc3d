"""The reversed direction (the second half of a bidirectional layer): elman_forward(reverse=True)
runs each example from its last valid step lengths[b]-1 down to 0 (docs/architecture.md §1), and
elman_backward follows the cache. References are independent of the code under test: a float64
loop by hand, the forward direction run on each example's valid prefix flipped by a per-example
loop here, and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends import get_backend
from gpu_bptt.backends.cuda import registry

from .executors import (CUDA, EMULATORS, GRADS, KERNEL_RUNS, NUMPY, assert_equal_arrays,
                        elman_problem, forward_args)
from .tolerances import GRADCHECK, assert_close

RUNS = pytest.mark.executors(NUMPY, *EMULATORS, CUDA)
LENGTHS = {"none": False, "ragged": np.array([7, 1, 4, 7, 3], np.int32),
           "full": np.array([7] * 5, np.int32)}


def problem(dtype, lengths="ragged", seed=3, **kw):
    return elman_problem(7, 5, 3, 6, dtype, seed=seed, lengths=LENGTHS[lengths], **kw)


def flip_valid(a, lengths):
    """a (T, B, ...) with each example's valid prefix a[:lengths[b], b] in reverse order; padded
    steps stay where they are."""
    if a is None:
        return None
    out = a.copy()
    T, B = a.shape[:2]
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        out[:n, b] = a[n - 1::-1, b]
    return out


def f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def reference(p, activation="tanh", dh=True, dh_last=True):
    """(h, h_last, grads) of the reversed run in float64: the forward direction on the flipped
    prefixes (numpy backend), its h, dh and dx flipped back."""
    L = p["lengths"]
    out = gpu_bptt.elman_forward(flip_valid(f64(p["x"]), L), f64(p["W"]), f64(p["V"]),
                                 f64(p["b"]), f64(p["h0"]), activation=activation, lengths=L,
                                 backend="numpy")
    g = gpu_bptt.elman_backward(flip_valid(f64(p["dh"]), L) if dh else None, out.cache,
                                dh_last=f64(p["dh_last"]) if dh_last else None)
    grads = dict(dx=flip_valid(g.dx, L), dW=g.dW, dV=g.dV, db=g.db, dh0=g.dh0)
    return flip_valid(out.h, L), out.h_last, grads


def by_hand(p, act=np.tanh):
    """h of the reversed run, a float64 loop per example and step."""
    x, W, V = f64(p["x"]), f64(p["W"]), f64(p["V"])
    T, B, _ = x.shape
    h = np.zeros((T, B, W.shape[1]))
    for e in range(B):
        prev = np.zeros(W.shape[1]) if p["h0"] is None else f64(p["h0"])[e]
        for t in range((T if p["lengths"] is None else int(p["lengths"][e])) - 1, -1, -1):
            u = x[t, e] @ W + prev @ V + (0 if p["b"] is None else f64(p["b"]))
            prev = h[t, e] = act(u)
    return h


def run_reverse(backend, p, activation="tanh", dh=True, dh_last=True, **kw):
    out = gpu_bptt.elman_forward(**forward_args(p), activation=activation, backend=backend,
                                 reverse=True, **kw)
    g = gpu_bptt.elman_backward(p["dh"] if dh else None, out.cache,
                                dh_last=p["dh_last"] if dh_last else None)
    return out, g


def check_against_reference(backend, p, dtype, activation="tanh", **kw):
    out, g = run_reverse(backend, p, activation, **kw)
    h, h_last, grads = reference(p, activation, **{k: v for k, v in kw.items()
                                                   if k in ("dh", "dh_last")})
    assert_close("h", out.h, h, dtype)
    assert_close("h_last", out.h_last, h_last, dtype)
    for k in GRADS:
        if grads[k] is None:
            assert getattr(g, k) is None, k
        else:
            assert_close(k, getattr(g, k), grads[k], dtype)


def test_reference_is_the_loop_by_hand():
    """The flipped-forward reference agrees with the reversed recurrence written out."""
    for lengths in LENGTHS:
        p = problem(np.float64, lengths)
        assert_close("h", reference(p)[0], by_hand(p))


@RUNS
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_reverse_matches_reference(backend, lengths, dtype):
    check_against_reference(backend, problem(dtype, lengths), dtype)


@pytest.mark.executors(*KERNEL_RUNS, CUDA)
@pytest.mark.backend_options(step=tuple(registry.STEP))  # a new version is tested as it lands
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lengths", ["none", "ragged"])
def test_reverse_step_kernels(backend, lengths, dtype):
    """Every step kernel version in the reversed direction, every thread order, sanitized."""
    check_against_reference(backend, problem(dtype, lengths), dtype, algo="step")


@pytest.mark.executors(*KERNEL_RUNS, CUDA)
@pytest.mark.backend_options(persist=tuple(registry.PERSIST))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lengths", ["none", "ragged"])
def test_reverse_persistent_kernels(backend, lengths, dtype):
    """Both persistent versions in the reversed direction, every thread order, sanitized."""
    check_against_reference(backend, problem(dtype, lengths), dtype, algo="persistent")


@pytest.mark.executors(*KERNEL_RUNS, CUDA)
@pytest.mark.backend_options(persist=tuple(registry.PERSIST))
@pytest.mark.parametrize("H", [39, 40])
def test_reverse_persistent_batch_chunks(backend, H):
    """B = 19: three batch chunks of the persistent kernels' staging, H over several blocks (the
    emulator's 4 multiprocessors); rows staged one by one with 16-byte loads (H = 40) or not."""
    lengths = np.array([9, 3, 1, 9, 7, 2, 5, 8, 6, 4, 9, 1, 2, 3, 8, 9, 7, 5, 6], np.int32)
    p = elman_problem(9, 19, 3, H, np.float64, seed=11, lengths=lengths)
    check_against_reference(backend, p, np.float64, algo="persistent")


@pytest.mark.executors("emulator-forward", CUDA)
@pytest.mark.backend_options(gemm=("own",))
@pytest.mark.parametrize("lengths", ["none", "ragged"])
def test_reverse_own_gemm(backend, lengths):
    """The gradient reductions by our GEMM kernel: the state before each step is h[t+1], h0 at
    each example's first step t = lengths[b]-1."""
    check_against_reference(backend, problem(np.float64, lengths), np.float64)


@RUNS
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "identity"])
def test_reverse_activations(backend, activation):
    check_against_reference(backend, problem(np.float64), np.float64, activation)


@RUNS
@pytest.mark.parametrize("given", [dict(dh=False), dict(dh_last=False)])
def test_reverse_one_gradient_from_above(backend, given):
    check_against_reference(backend, problem(np.float64), np.float64, **given)


@RUNS
def test_reverse_without_h0_or_bias(backend):
    p = problem(np.float64, h0=False, bias=False)
    check_against_reference(backend, p, np.float64)


@RUNS
@pytest.mark.parametrize("T", [1, 33])
def test_reverse_awkward_lengths(backend, T):
    lengths = np.array([T, 1, max(1, T // 2)], np.int32)
    p = elman_problem(T, 3, 2, 5, np.float64, seed=9, lengths=lengths)
    check_against_reference(backend, p, np.float64)


@RUNS
@pytest.mark.parametrize("garbage", [np.nan, np.inf])
def test_reverse_ignores_padded_steps(backend, garbage):
    """x and dh at padded steps reach nothing but dW (x there, through du = 0)."""
    p = problem(np.float64)
    dirty = dict(p, x=p["x"].copy(), dh=p["dh"].copy())
    for b, n in enumerate(p["lengths"]):
        dirty["x"][n:, b] = garbage
        dirty["dh"][n:, b] = garbage
    clean_out, clean = run_reverse(backend, p)
    with np.errstate(invalid="ignore"):  # p = x @ W + b and dW see the garbage, by design
        out, g = run_reverse(backend, dirty)
    assert_equal_arrays(("h", "h_last"), out, clean_out)
    assert_equal_arrays(("dx", "dV", "db", "dh0"), g, clean)


@RUNS
@pytest.mark.parametrize("lengths", ["none", "ragged"])
def test_reverse_finite_differences(backend, lengths):
    p = elman_problem(5, 3, 2, 4, np.float64, seed=2,
                      lengths=False if lengths == "none" else np.array([5, 2, 1], np.int32),
                      gain=0.6)
    gpu_bptt.elman_gradcheck(p["x"], p["W"], p["V"], p["b"], p["h0"], dh=p["dh"],
                             dh_last=p["dh_last"], lengths=p["lengths"], backend=backend,
                             reverse=True, **GRADCHECK).assert_ok()


def test_cache_records_the_direction():
    p = problem(np.float64)
    out, g = run_reverse("numpy", p)
    meta = out.cache.meta()
    assert meta["reverse"] is True and out.cache.reverse
    rebuilt = gpu_bptt.ElmanCache.from_arrays(out.cache.arrays(), **meta)
    again = gpu_bptt.elman_backward(p["dh"], rebuilt, dh_last=p["dh_last"])
    assert_equal_arrays(GRADS, again, g)
    forward_plan = get_backend("numpy").resolve_algo("step", 7, 5, 6, np.float64)
    with pytest.raises(ValueError, match="plan: made for reverse=False"):
        gpu_bptt.ElmanCache.from_arrays(out.cache.arrays(), activation="tanh", has_bias=True,
                                        algo=forward_plan, reverse=True)


@pytest.mark.parametrize("bad", ["False", 1, None])
def test_reverse_must_be_a_bool(bad):
    p = problem(np.float64)
    with pytest.raises(TypeError, match="reverse: expected a bool"):
        gpu_bptt.elman_forward(**forward_args(p), backend="numpy", reverse=bad)


@pytest.mark.executors(NUMPY, "emulator-forward", CUDA)
@pytest.mark.parametrize("lengths", ["none", "ragged"])
def test_reverse_is_torch_rnn_reverse_direction(backend, lengths):
    """The second half of torch.nn.RNN(bidirectional=True) on packed sequences, float64: output[t]
    pairs with input[t], h_n is the state at t = 0, and the gradients of its reverse weights."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    pack = torch.nn.utils.rnn
    p = problem(np.float64, lengths)
    T, B, I = p["x"].shape
    H = p["W"].shape[1]
    rnn = torch.nn.RNN(I, H, bidirectional=True, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0_reverse.copy_(torch.from_numpy(p["W"].T))
        rnn.weight_hh_l0_reverse.copy_(torch.from_numpy(p["V"].T))
        rnn.bias_ih_l0_reverse.copy_(torch.from_numpy(p["b"]))
        rnn.bias_hh_l0_reverse.zero_()
    x = torch.from_numpy(p["x"]).requires_grad_()
    h0 = torch.from_numpy(np.stack([np.zeros_like(p["h0"]), p["h0"]])).requires_grad_()
    L = np.full(B, T) if p["lengths"] is None else p["lengths"]
    packed = pack.pack_padded_sequence(x, torch.from_numpy(L.astype(np.int64)),
                                       enforce_sorted=False)
    out, hn = rnn(packed, h0)
    out = pack.pad_packed_sequence(out, total_length=T)[0][..., H:]
    dh = torch.from_numpy(p["dh"]) * torch.from_numpy(
        (np.arange(T)[:, None] < L[None, :])[..., None].astype(np.float64))
    ((out * dh).sum() + (hn[1] * torch.from_numpy(p["dh_last"])).sum()).backward()

    got, g = run_reverse(backend, p)
    assert_close("h", got.h, out.detach().numpy())
    assert_close("h_last", got.h_last, hn[1].detach().numpy())
    want = dict(dx=x.grad, dW=rnn.weight_ih_l0_reverse.grad.T, dV=rnn.weight_hh_l0_reverse.grad.T,
                db=rnn.bias_ih_l0_reverse.grad, dh0=h0.grad[1])
    for k, v in want.items():
        assert_close(k, getattr(g, k), v.numpy())
