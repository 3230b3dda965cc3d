"""The parts every cell shares: f' from the output, the numpy backend's time loop (padded steps,
where the gradients from above enter), and the sequence driver's checks, last states and cache
guard. Each is checked against a float64 reference written out here element by element."""
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from gpu_bptt import activations, get_backend
from gpu_bptt.backends.time_loop import forward_steps, reverse_steps
from gpu_bptt.cells.sequence import (check_grads_from_above, check_state, check_unchanged,
                                     last_state, take_digests)

LENGTHS = np.array([4, 1, 3, 4, 2], dtype=np.int32)  # T = 4, B = 5: full, shortest, in between


def _fprime_of_u(activation, u):
    """f'(u) from u itself, by its closed form (not through h = f(u))."""
    if activation == "tanh":
        return 1 / np.cosh(u) ** 2
    if activation == "sigmoid":
        e = np.exp(-u)
        return e / (1 + e) ** 2
    if activation == "relu":
        return (u > 0).astype(u.dtype)
    return np.ones_like(u)


@pytest.mark.parametrize("activation", activations.ACTIVATIONS)
def test_derivative_from_output_equals_the_derivative_at_u(activation):
    u = np.random.default_rng(0).uniform(-4, 4, size=(7, 5, 3))
    u[0, 0, :] = [-0.0, 0.0, 1e-300]  # relu's kink: f' is 0 at h = 0, 1 just above it
    h = activations.apply(np, activation, u)
    ref = _fprime_of_u(activation, u)
    out = np.full_like(h, np.nan)
    got = activations.derivative_from_output(np, activation, h, out=out)
    assert got is out
    # atol: 1 - h² and h(1 - h) cancel where f' is small, leaving a few ulps of 1 absolute
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(activations.derivative_from_output(np, activation, h), got)


@pytest.mark.parametrize("activation", activations.ACTIVATIONS)
def test_derivative_into_a_buffer_allocates_nothing(activation):
    """The numpy backend computes f' for all T into its du array: no (T, B, H) temporary."""
    h = np.random.default_rng(1).uniform(0.01, 0.99, size=(64, 64, 64))  # 2 MiB
    out = np.empty_like(h)
    tracemalloc.start()
    try:
        activations.derivative_from_output(np, activation, h, out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < h.nbytes // 16, f"peak {peak} bytes for a {h.nbytes}-byte array"


def test_forward_steps_zero_padded_steps_before_the_next_step_reads_them():
    T, B = 4, len(LENGTHS)
    s = np.full((T, B, 2), np.nan)
    seen = np.full((T, B, 2), np.nan)
    for t in forward_steps(T, LENGTHS, s):
        prev = s[t - 1] if t else np.zeros((B, 2))
        seen[t] = prev
        s[t] = prev + 1
    for b, n in enumerate(LENGTHS):
        for t in range(T):
            assert (s[t, b] == (t + 1 if t < n else 0)).all()
            assert (seen[t, b] == (t if t <= n else 0)).all()  # t == n reads the last valid state


def _from_above_ref(seq, last, n, t, H):
    """What reverse_steps must hand step t for one (seq, last) pair, example by example (zeros
    where nothing comes from above)."""
    ref = np.zeros((n.size, H))
    for b in range(n.size):
        if t < n[b]:
            ref[b] = 0 if seq is None else seq[t, b]
        if last is not None and t == n[b] - 1:
            ref[b] += last[b]
    return ref


@pytest.mark.parametrize("with_dh", [True, False])
@pytest.mark.parametrize("with_last", [True, False])
@pytest.mark.parametrize("lengths", [LENGTHS, None])
def test_reverse_steps_give_each_step_its_gradients_from_above(with_dh, with_last, lengths):
    """Two pairs, as a cell with a cell state has: (dh, dh_last) and (None, dc_last)."""
    T, B, H = 4, len(LENGTHS), 3
    rng = np.random.default_rng(2)
    dh = rng.standard_normal((T, B, H))
    n = LENGTHS if lengths is not None else np.full(B, T)
    for b in range(B):
        dh[n[b]:, b] = [np.nan, np.inf, -np.inf]  # padding: must be replaced, not multiplied by 0
    dh_last, dc_last = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    given = [a.copy() for a in (dh, dh_last, dc_last)]
    pairs = [(dh if with_dh else None, dh_last if with_last else None), (None, dc_last)]
    order, got = [], {}
    for t, g_h, g_c in reverse_steps(T, lengths, *pairs):
        order.append(t)
        got[t] = [None if g is None else g.copy() for g in (g_h, g_c)]
    assert order == list(range(T - 1, -1, -1))
    for t in range(T):
        for (seq, last), g in zip(pairs, got[t]):
            if g is None:  # allowed only where nothing comes from above at t
                assert seq is None and (last is None or not (n - 1 == t).any())
            else:
                np.testing.assert_array_equal(g, _from_above_ref(seq, last, n, t, H))
    for a, before in zip((dh, dh_last, dc_last), given):  # the caller's arrays are never written
        np.testing.assert_array_equal(a, before)


def test_last_state_is_each_examples_last_valid_step():
    bk = get_backend("numpy")
    s = np.random.default_rng(3).standard_normal((4, len(LENGTHS), 2))
    ref = np.stack([s[n - 1, b] for b, n in enumerate(LENGTHS)])
    np.testing.assert_array_equal(last_state(np, s, bk.asarray(LENGTHS)), ref)
    full = last_state(np, s, None)
    np.testing.assert_array_equal(full, s[-1])
    full[:] = 0  # a copy: the sequence keeps its values
    assert (s[-1] != 0).all()


def test_initial_state_is_zeros_or_a_copy():
    bk = get_backend("numpy")
    assert (check_state(bk, "c0", None, 3, 2, np.float32) == 0).all()
    c0 = np.ones((3, 2), np.float32)
    kept = check_state(bk, "c0", c0, 3, 2, np.float32)
    c0[:] = 5
    assert (kept == 1).all()
    with pytest.raises(ValueError, match=r"^c0: expected shape \(B, H\) = \(3, 2\), got \(2, 2\)$"):
        check_state(bk, "c0", c0[:2], 3, 2, np.float32)


def test_gradients_from_above_named_for_a_cell_with_a_cell_state():
    bk = get_backend("numpy")
    with pytest.raises(ValueError, match=r"^dh, dh_last, dc_last: at least one gradient must be given$"):
        check_grads_from_above(bk, 4, 3, 2, np.float64, None, dh_last=None, dc_last=None)
    dc_last = np.ones((3, 2))
    dh, dh_last, got = check_grads_from_above(bk, 4, 3, 2, np.float64, None, dh_last=None,
                                              dc_last=dc_last)
    assert dh is None and dh_last is None and np.array_equal(got, dc_last)
    with pytest.raises(ValueError, match=r"^dc_last: expected shape \(B, H\)"):
        check_grads_from_above(bk, 4, 3, 2, np.float64, None, dc_last=dc_last[:1])


def test_cache_guard_names_the_changed_array_and_the_forward():
    bk = get_backend("numpy")
    cache = SimpleNamespace(backend=bk, x=np.arange(6.0), c=np.ones(4))
    cache.digests = take_digests(bk, x=cache.x, c=cache.c)
    check_unchanged(cache, "lstm_forward")  # nothing changed: no error
    cache.c[2] = 2.0
    with pytest.raises(ValueError, match=r"^cache: c was changed in place after lstm_forward"):
        check_unchanged(cache, "lstm_forward")
