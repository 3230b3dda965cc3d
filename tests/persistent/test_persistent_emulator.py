"""The persistent kernels on the emulator backend (the cuda backend's own code, kernels run on the
CPU with 4 emulated multiprocessors), in all four thread orders, one of them in the bounds-checking
build: forward and backward equal the numpy reference and the step kernels within the dtype's
tolerance."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import gpu_bptt
from tests.skips import require_emulator, require_sanitizer
from tests.tolerances import assert_close

# Every thread order; the reverse run in the bounds-checking build (tests/cuda/cuda_helpers.py).
ORDERS = ("forward", "reverse+sanitize", "random", "warps")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
OUTPUTS = ("h", "h_last")
GRADS = ("dx", "dW", "dV", "db", "dh0")


VERSIONS = ("v1", "v2")


@functools.lru_cache(maxsize=None)
def emulator(order, persist="v2", smem_per_block=None):
    """An EmulatorBackend; `order` may end in "+sanitize" (the bounds-checking build);
    smem_per_block as EmulatorBackend's (None: its default, 48 KB)."""
    from gpu_bptt.backends.emulator import EmulatorBackend

    order, _, sanitize = order.partition("+")
    require_sanitizer() if sanitize else require_emulator()
    extra = {} if smem_per_block is None else dict(smem_per_block=smem_per_block)
    return EmulatorBackend(order=order, persist=persist, sanitize=bool(sanitize) or None, **extra)


def problem(T, B, I, H, dtype, seed, lengths=True, dh=True, dh_last=True):
    r = np.random.default_rng(seed)
    mk = lambda *s, scale=0.5: (r.standard_normal(s) * scale).astype(dtype)
    lens = None
    if lengths:
        lens = r.integers(1, T + 1, size=B).astype(np.int32)
        lens[0] = T
    args = dict(x=mk(T, B, I), W=mk(I, H, scale=1 / np.sqrt(I)),
                V=mk(H, H, scale=0.9 / np.sqrt(H)), b=mk(H), h0=mk(B, H), lengths=lens)
    return args, (mk(T, B, H) if dh else None), (mk(B, H) if dh_last else None)


def run(backend, algo, args, act, dh, dh_last):
    out = gpu_bptt.elman_forward(**args, activation=act, backend=backend, algo=algo)
    return out, gpu_bptt.elman_backward(dh, out.cache, dh_last=dh_last)


def check(bk, args, act, dh, dh_last):
    dtype = args["x"].dtype
    ref_out, ref_g = run("numpy", "step", args, act, dh, dh_last)
    out, g = run(bk, "persistent", args, act, dh, dh_last)
    assert out.cache.algo == "persistent"
    # the step kernels of the same order, outside the (slow) bounds-checking build
    step_out, step_g = run(emulator(bk.order, bk.persist), "step", args, act, dh, dh_last)
    assert step_out.cache.algo == "step"
    for name in OUTPUTS:
        assert_close(name, getattr(out, name), getattr(ref_out, name), dtype)
        assert_close(f"{name} vs step", getattr(out, name), getattr(step_out, name), dtype)
    for name in GRADS:
        assert_close(name, getattr(g, name), getattr(ref_g, name), dtype)
        assert_close(f"{name} vs step", getattr(g, name), getattr(step_g, name), dtype)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_each_activation_with_lengths_and_dh_last(order, act, version):
    # H = 13 over 4 blocks: 4, 4, 4 and 1 columns; B = 3 < one chunk.
    args, dh, dh_last = problem(7, 3, 4, 13, np.float32, seed=ACTIVATIONS.index(act))
    check(emulator(order, version), args, act, dh, dh_last)


# (T, B, I, H, dtype, lengths, dh, dh_last): batch chunks, more columns than warps, T = 1, only
# dh or only dh_last, float64.
CASES = [
    (5, 11, 3, 9, np.float32, True, True, True),     # B = 11: two chunks (8 + 3)
    (3, 2, 5, 40, np.float32, False, True, False),   # 10 columns per block: warps 0-1 take two
    (1, 4, 2, 6, np.float64, True, False, True),     # T = 1, grid of 3 blocks
    (6, 1, 3, 5, np.float64, False, True, True),     # B = 1, H < multiprocessors * warps
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}-B{}-I{}-H{}-{}-len{:d}-dh{:d}-last{:d}".format(
    *c[:4], np.dtype(c[4]).name, *c[5:]))
def test_shapes(order, case, version):
    T, B, I, H, dtype, lengths, dh, dh_last = case
    args, dh, dh_last = problem(T, B, I, H, dtype, seed=T * 100 + B * 10 + H,
                                lengths=lengths, dh=dh, dh_last=dh_last)
    check(emulator(order, version), args, "tanh", dh, dh_last)


@pytest.mark.parametrize("version", VERSIONS)
def test_hidden_size_past_one_pass_of_the_block(version):
    """H = 300 > 256 threads: v2's threads take two k each, v1's lanes ten. It needs a grid of
    more than the 4 emulated multiprocessors to fit 48 KB, so this backend reports 16."""
    from gpu_bptt.backends.cuda import persistent as P
    from gpu_bptt.backends.emulator import EmulatorBackend

    class Wider(EmulatorBackend):
        def persistent_limits(self):
            return P.DeviceLimits(16, P.DEFAULT_SMEM, name="emulator, 16 blocks")

    emulator("random", version)  # skips where the emulator cannot run
    bk = Wider(order="random", persist=version)
    args, dh, dh_last = problem(3, 9, 2, 300, np.float32, seed=11)
    assert P.plan(bk.persistent_limits(), 9, 300, np.float32, version).grid == 16
    check(bk, args, "tanh", dh, dh_last)


# H = 300 > 256 threads, so v2's threads take two k each (v1's lanes ten), on an emulated device
# with an H100's opt-in limit of 227 KB per block: over 4 multiprocessors V's slice needs about
# 100 KB (float32) or 190 KB (float64), so each launch needs the kernel attribute raised above the
# default 48 KB, as on a GPU. B = 9: two batch chunks.
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("B,dtype", [(9, np.float32), (3, np.float64)], ids=["B9-float32", "B3-float64"])
def test_beyond_one_pass_above_48_kb(order, version, B, dtype):
    from gpu_bptt.backends.cuda import persistent as P
    from gpu_bptt.backends.emulator import SMEM_H100

    bk = emulator(order, version, SMEM_H100)
    assert P.plan(bk.persistent_limits(), B, 300, dtype, version).smem > P.DEFAULT_SMEM
    args, dh, dh_last = problem(3, B, 2, 300, dtype, seed=B)
    check(bk, args, "tanh", dh, dh_last)


def test_smem_per_block_is_checked():
    from gpu_bptt.backends.emulator import SMEM_H100, EmulatorBackend

    emulator("forward")  # skips where the emulator cannot run
    with pytest.raises(ValueError, match=r"smem_per_block: expected 49152 to 232448 bytes, got 1024"):
        EmulatorBackend(smem_per_block=1024)
    with pytest.raises(ValueError, match="smem_per_block"):
        EmulatorBackend(smem_per_block=SMEM_H100 + 1)
    with pytest.raises(TypeError, match="smem_per_block: expected an int, got float"):
        EmulatorBackend(smem_per_block=64e3)


def test_auto_takes_persistent_for_small_batches_and_warns_of_fallbacks(monkeypatch):
    from gpu_bptt.backends import notices

    monkeypatch.setattr(notices, "_warned", set())
    bk = emulator("random")
    args, dh, _ = problem(3, 2, 3, 7, np.float32, seed=5)
    assert gpu_bptt.elman_forward(**args, backend=bk).cache.algo == "persistent"
    # H = 220 needs (55 + 2) * 220 * 4 bytes per block, above the emulated 48 KB.
    big, _, _ = problem(1, 2, 1, 220, np.float32, seed=6)
    with pytest.warns(RuntimeWarning, match=r"algo='auto' runs the step kernels: .*V's slice does "
                                            r"not fit on chip: H=220"):
        assert gpu_bptt.elman_forward(**big, backend=bk, algo="auto").cache.algo == "step"
    with pytest.raises(ValueError, match=r"algo='persistent' cannot run: V's slice does not fit on "
                                         r"chip: H=220 .* 49152 bytes per block"):
        gpu_bptt.elman_forward(**big, backend=bk, algo="persistent")


def test_gradients_are_bit_identical_across_runs():
    bk = emulator("random")
    args, dh, dh_last = problem(4, 3, 3, 10, np.float32, seed=7)
    g1 = run(bk, "persistent", args, "tanh", dh, dh_last)[1]
    g2 = run(bk, "persistent", args, "tanh", dh, dh_last)[1]
    for name in GRADS:
        assert np.array_equal(getattr(g1, name), getattr(g2, name)), name
