"""The LSTM's kernels (kernels/lstm_*.cu) through the cuda backend's lstm_fwd_seq / lstm_bwd_seq,
on each kernel executor (tests/executors.py: the emulator in every thread order, one of them in
the bounds-checking build, and a CUDA device), against torch.nn.LSTM in float64 run one example
at a time over its valid steps (reversed for a reversed run): outputs, c, the gates, du (the
gradient on p = x @ W + b), dc0 and, with a projection, dhs. Both directions, lengths, h0/c0,
dh/dh_last/dc_last given or not, proj_size, float32 and float64; every step version and both
persistent versions."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_bptt.backends.cuda import persistent as PS
from gpu_bptt.backends.cuda import registry, rules
from gpu_bptt.validate import to_host
from tests import skips
from tests.executors import CUDA, KERNEL_RUNS
from tests.tolerances import assert_close

torch = skips.import_or_skip("torch", skips.TORCH, "PyTorch is not installed: no reference")

pytestmark = pytest.mark.executors(*KERNEL_RUNS, CUDA)


def lstm_problem(T, B, H, P, dtype, seed, *, lengths=True, h0=True, c0=True, grads=True):
    """A seeded LSTM problem for the backend methods: p (T, B, 4H) = x @ W + b, V (Hs, 4H),
    h0 (B, Hs), c0 (B, H), R (H, P) or None, lengths (B,) int32 or None, dh (T, B, Hs),
    dh_last (B, Hs), dc_last (B, H) (grads=False: dc_last only, so the gradient enters through
    the cell state alone)."""
    r = np.random.default_rng(seed)
    Hs = P or H
    mk = lambda *s, scale=0.5: (r.standard_normal(s) * scale).astype(dtype)
    q = dict(p=mk(T, B, 4 * H, scale=1.0), V=mk(Hs, 4 * H, scale=1 / np.sqrt(Hs)),
             h0=mk(B, Hs) if h0 else None, c0=mk(B, H) if c0 else None,
             R=mk(H, P, scale=1 / np.sqrt(H)) if P else None)
    lens = None
    if lengths:
        lens = r.integers(1, T + 1, size=B).astype(np.int32)
        lens[0] = T
    q["lengths"] = lens
    q.update(dh=mk(T, B, Hs) if grads else None, dh_last=mk(B, Hs) if grads else None,
             dc_last=mk(B, H))
    return q


def torch_reference(q, reverse):
    """torch.nn.LSTM (float64, CPU) with weight_ih = I (so its input is p), weight_hh = V.T,
    weight_hr = R.T, run one example at a time over its valid steps in the run's order; the loss
    Σ h·dh + h_last·dh_last + c_last·dc_last. Returns h, c, gates (by hand from torch's states),
    du = ∂loss/∂p, dc0, dhs = ∂loss/∂h[t] (total)."""
    p = q["p"].astype(np.float64)
    T, B, G4 = p.shape
    H = G4 // 4
    Hs = q["V"].shape[0]
    P = 0 if q["R"] is None else q["R"].shape[1]
    lstm = torch.nn.LSTM(G4, H, proj_size=P, bias=False, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.eye(G4, dtype=torch.float64))
        lstm.weight_hh_l0.copy_(torch.from_numpy(q["V"].T.astype(np.float64)))
        if P:
            lstm.weight_hr_l0.copy_(torch.from_numpy(q["R"].T.astype(np.float64)))
    f64 = lambda a, *shape: torch.zeros(shape, dtype=torch.float64) if a is None else \
        torch.tensor(a, dtype=torch.float64)
    pt = torch.tensor(p, requires_grad=True)
    h0, c0 = f64(q["h0"], B, Hs).requires_grad_(), f64(q["c0"], B, H).requires_grad_()
    dh, dh_last, dc_last = f64(q["dh"], T, B, Hs), f64(q["dh_last"], B, Hs), \
        f64(q["dc_last"], B, H)
    lengths = np.full(B, T) if q["lengths"] is None else q["lengths"]
    h, c, gates = (np.zeros((T, B, n)) for n in (Hs, H, G4))
    states, loss = {}, 0
    for b in range(B):
        n = int(lengths[b])
        hx, cx = h0[b].view(1, 1, Hs), c0[b].view(1, 1, H)
        for t in (range(n - 1, -1, -1) if reverse else range(n)):
            u = pt[t, b] + hx.view(Hs) @ torch.from_numpy(q["V"].astype(np.float64))
            _, (hx, cx) = lstm(pt[t, b].view(1, 1, G4), (hx, cx))
            hx.retain_grad()
            states[t, b] = hx
            i, f, g, o = u.detach().view(4, H)
            gates[t, b] = torch.cat([torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g),
                                     torch.sigmoid(o)]).numpy()
            h[t, b], c[t, b] = hx.detach().view(Hs).numpy(), cx.detach().view(H).numpy()
            loss = loss + (hx.view(Hs) * dh[t, b]).sum()
        loss = loss + (hx.view(Hs) * dh_last[b]).sum() + (cx.view(H) * dc_last[b]).sum()
    loss.backward()
    dhs = np.zeros((T, B, Hs))
    for (t, b), hx in states.items():
        dhs[t, b] = hx.grad.view(Hs).numpy()
    return dict(h=h, c=c, gates=gates, du=pt.grad.numpy(), dc0=c0.grad.numpy(), dhs=dhs)


def run_backend(backend, executor, q, algo, reverse):
    """h, c, gates, du, dc0, dhs of problem q on `backend` (its plan for algo)."""
    dev = executor.asarray
    T, B, G4 = q["p"].shape
    P = 0 if q["R"] is None else q["R"].shape[1]
    plan = backend.resolve_algo(algo, T, B, G4 // 4, q["p"].dtype, reverse=reverse, cell="lstm",
                                P=P)
    assert plan.algo == algo and plan.cell == "lstm"
    h, c, gates = backend.lstm_fwd_seq(dev(q["p"].copy()), dev(q["V"]), dev(q["h0"]),
                                       dev(q["c0"]), dev(q["lengths"]), plan, R=dev(q["R"]))
    du, dc0, dhs = backend.lstm_bwd_seq(dev(q["dh"]), dev(q["dh_last"]), dev(q["dc_last"]), h, c,
                                        gates, dev(q["c0"]), dev(q["V"]), dev(q["lengths"]), plan,
                                        R=dev(q["R"]))
    assert (dhs is None) == (P == 0)
    out = dict(h=h, c=c, gates=gates, du=du, dc0=dc0, dhs=dhs)
    return {k: to_host(v) for k, v in out.items() if v is not None}


def check(backend, executor, q, algo, reverse):
    ref = torch_reference(q, reverse)
    got = run_backend(backend, executor, q, algo, reverse)
    dtype = q["p"].dtype
    for name, value in got.items():
        assert_close(name, value, ref[name], dtype)


# (T, B, H, P, dtype, reverse, lengths, h0/c0, dh and dh_last (else dc_last alone)): every case
# has padding but one; H not a multiple of any tile.
STEP_CASES = [
    (4, 3, 5, 0, np.float64, False, True, True, True),
    (4, 3, 5, 0, np.float64, True, True, False, True),
    (3, 2, 6, 4, np.float64, False, True, True, True),   # a projection (torch: P < H)
    (3, 3, 5, 3, np.float64, True, True, True, False),   # reversed, the gradient from dc_last alone
    (4, 3, 6, 0, np.float32, True, True, True, True),
    (2, 1, 3, 2, np.float32, False, False, True, True),
]


def _ids(c):
    T, B, H, P, dt, rev, lens, init, grads = c
    return (f"T{T}-B{B}-H{H}-P{P}-{np.dtype(dt).name}-{'rev' if rev else 'fwd'}"
            f"{'-len' if lens else ''}{'' if init else '-noinit'}{'' if grads else '-dc_last'}")


@pytest.mark.backend_options(step=tuple(registry.LSTM_STEP))
@pytest.mark.parametrize("case", STEP_CASES, ids=_ids)
def test_step_kernels_equal_torch(executor, backend, case):
    T, B, H, P, dtype, reverse, lengths, init, grads = case
    q = lstm_problem(T, B, H, P, dtype, seed=T * 100 + B * 10 + H + P, lengths=lengths,
                     h0=init, c0=init, grads=grads)
    check(backend, executor, q, "step", reverse)


# (T, B, H, P, dtype, reverse, lengths, h0/c0, dh and dh_last (else dc_last alone)). On the
# emulator's 4 multiprocessors: H = 13 gives blocks of 4, 4, 4 and 1 units; H = 40, 10 units a
# block (warps 0-1 take two in v1); B = 9, two batch chunks (8 + 1). With a projection (P > 0) a
# second phase per step: P = 5 over the 4 blocks: 2, 2, 1 and none.
PERSIST_CASES = [
    (5, 3, 13, 0, np.float64, False, True, True, True),
    (5, 3, 13, 0, np.float64, True, True, True, True),
    (3, 2, 40, 0, np.float32, True, True, False, True),
    (3, 9, 6, 0, np.float64, False, True, True, False),
    (1, 2, 6, 0, np.float32, False, False, True, True),
    (4, 3, 13, 5, np.float64, False, True, True, True),
    (4, 3, 13, 5, np.float64, True, True, True, True),
    (3, 9, 7, 3, np.float32, True, True, False, False),
]


@pytest.mark.backend_options(persist=tuple(registry.PERSIST))
@pytest.mark.parametrize("case", PERSIST_CASES, ids=_ids)
def test_persistent_kernels_equal_torch(executor, backend, case):
    T, B, H, P, dtype, reverse, lengths, init, grads = case
    q = lstm_problem(T, B, H, P, dtype, seed=T * 100 + B * 10 + H + P, lengths=lengths,
                     h0=init, c0=init, grads=grads)
    check(backend, executor, q, "persistent", reverse)


@pytest.mark.executors("emulator-forward")
def test_auto_takes_the_persistent_kernels_for_the_lstm(executor, backend):
    assert backend.resolve_algo("auto", 4, 2, 5, np.float64, cell="lstm").algo == "persistent"
    plan = backend.resolve_algo("auto", 4, 2, 5, np.float64, cell="lstm", P=3)
    assert (plan.algo, plan.cell, plan.P) == ("persistent", "lstm", 3)
    with pytest.raises(ValueError, match="cell: expected one of"):
        backend.resolve_algo("step", 4, 2, 5, np.float64, cell="lstn")


def test_persistent_shared_memory_for_four_gates():
    """The forward holds 4·cols columns of V of length H and a chunk of H; the backward cols rows
    of length 4H and a chunk of 4H; the plan asks for the larger. B = 3, H = 13 over 4
    multiprocessors: cols = 4; float64, v1 (no cross-warp sums)."""
    limits = PS.DeviceLimits(4, 48 * 1024)
    fwd, bwd = (4 * 4 + 3) * 13 * 8, (4 + 3) * 4 * 13 * 8
    geo = PS.plan(limits, 3, 13, np.float64, "v1", gates=4)
    assert (geo.cols, geo.grid, geo.smem) == (4, 4, max(fwd, bwd))
    assert PS.plan(limits, 3, 13, np.float64, "v1").smem == (4 + 3) * 13 * 8  # Elman's, as before
    H = PS.max_hidden(limits, 8, np.float32, gates=4)
    PS.plan(limits, 8, H, np.float32, gates=4)
    with pytest.raises(ValueError, match=rf"the largest H that fits here is {H}"):
        PS.plan(limits, 8, H + 1, np.float32, gates=4)
    # A projection P = 5: R's slice too (pcols = 2 of the grid's 4 blocks), the chunk the longer
    # phase's state: forward 4·4·5 + 2·13 + 3·13, backward 2·52 + 4·5 + 3·52 elements.
    geo = PS.plan(limits, 3, 13, np.float64, "v1", gates=4, proj=5)
    assert geo.smem == max(4 * 4 * 5 + 2 * 13 + 3 * 13, 2 * 52 + 4 * 5 + 3 * 52) * 8
    H = PS.max_hidden(limits, 8, np.float32, gates=4, proj=64)
    PS.plan(limits, 8, H, np.float32, gates=4, proj=64)
    with pytest.raises(ValueError, match=r"a slice of R \(proj_size=64\).* the largest H that "
                                         rf"fits here is {H}"):
        PS.plan(limits, 8, H + 1, np.float32, gates=4, proj=64)


@pytest.mark.parametrize("version", tuple(registry.LSTM_STEP))
def test_step_plan_geometry_is_the_lstm_table(version):
    """The LSTM's step plan takes its own tiles (v3: 64x32), forward over the H units."""
    plan = rules.launch_plan("step", 70, 100, np.float64, limits=PS.DeviceLimits(4, 48 * 1024),
                             kernels=(), step=version, persist="v2", cell="lstm")
    assert (plan.grid, plan.block) == registry.LSTM_STEP[version].launch.geometry(70, 100)
    assert plan.cell == "lstm" and plan.product == registry.LSTM_STEP[version].product


# Device sizes (T, B, H, P, dtype, reverse, algo): past one pass of a 256-thread block, many
# blocks and tiles (the emulator would take minutes a case).
DEVICE_CASES = [
    (40, 8, 300, 0, np.float32, False, "persistent"),
    (17, 5, 257, 0, np.float64, True, "persistent"),
    (20, 12, 384, 128, np.float32, True, "persistent"),
    (33, 70, 130, 0, np.float32, True, "step"),
    (9, 3, 200, 64, np.float64, False, "step"),
]


@pytest.mark.executors(CUDA)
@pytest.mark.backend_options(step=tuple(registry.LSTM_STEP))
@pytest.mark.parametrize("case", DEVICE_CASES, ids=str)
def test_device_sizes(executor, backend, case):
    T, B, H, P, dtype, reverse, algo = case
    q = lstm_problem(T, B, H, P, dtype, seed=H)
    # Long float32 recurrences: rounding grows with T, as for Elman's kernels.
    tol = dict(atol=1e-4, rtol=1e-3) if dtype == np.float32 and T > 32 else {}
    ref = torch_reference(q, reverse)
    for name, value in run_backend(backend, executor, q, algo, reverse).items():
        assert_close(name, value, ref[name], dtype, **tol)


@pytest.mark.executors("emulator-random")
@pytest.mark.parametrize("algo", ("step", "persistent"))
def test_gradients_are_bit_identical_run_to_run(executor, backend, algo):
    q = lstm_problem(4, 3, 13, 0, np.float32, seed=5)
    first = run_backend(backend, executor, q, algo, True)
    again = run_backend(backend, executor, q, algo, True)
    for name in first:
        np.testing.assert_array_equal(again[name], first[name], err_msg=name)


@pytest.mark.executors("emulator-forward")
def test_bad_operands_name_the_argument(executor, backend):
    q = lstm_problem(3, 2, 5, 0, np.float64, seed=1)
    plan = backend.resolve_algo("step", 3, 2, 5, np.float64, cell="lstm")
    with pytest.raises(ValueError, match=r"V: expected shape \(5, 20\)"):
        backend.lstm_fwd_seq(q["p"].copy(), q["V"][:, :16].copy(), q["h0"], q["c0"],
                             q["lengths"], plan)
    with pytest.raises(TypeError, match="c0: expected dtype float64"):
        backend.lstm_fwd_seq(q["p"].copy(), q["V"], q["h0"], q["c0"].astype(np.float32),
                             q["lengths"], plan)
    with pytest.raises(ValueError, match=r"plan: made for cell='lstm', P=0; asked for "
                                         r"cell='lstm', P=4"):
        backend.lstm_fwd_seq(q["p"].copy(), q["V"], q["h0"], q["c0"], q["lengths"], plan,
                             R=np.zeros((5, 4)))
    elman = backend.resolve_algo("step", 3, 2, 5, np.float64)
    with pytest.raises(ValueError, match="plan: made for cell='elman'"):
        backend.lstm_fwd_seq(q["p"].copy(), q["V"], q["h0"], q["c0"], q["lengths"], elman)


@pytest.mark.executors(*KERNEL_RUNS, CUDA)
@pytest.mark.backend_options(step=("v1", "v4"), persist=("v2",))
@pytest.mark.parametrize("algo", ("step", "persistent"))
@pytest.mark.parametrize("reverse", (False, True), ids=("fwd", "rev"))
def test_carried_cell_gradient_starts_at_each_last_step(executor, backend, algo, reverse):
    """The kernels take the carried dc from the caller: filled with NaN and no dc_last, each
    example's last step must start from 0, never read what dc held (lengths: examples end at
    different steps, after their padded ones)."""
    q = lstm_problem(4, 3, 5, 0, np.float64, seed=3)
    q["dc_last"] = None
    ref = torch_reference(q, reverse)
    T, B, G4 = q["p"].shape
    H = G4 // 4
    dev = executor.asarray
    plan = backend.resolve_algo(algo, T, B, H, np.float64, reverse=reverse, cell="lstm")
    assert plan.algo == algo
    h, c, gates = backend.lstm_fwd_seq(dev(q["p"].copy()), dev(q["V"]), dev(q["h0"]),
                                       dev(q["c0"]), dev(q["lengths"]), plan)
    du = dev(np.full((T, B, G4), np.nan))
    dc = dev(np.full((B, H), np.nan))
    args = (dev(q["dh"]), dev(q["dh_last"]), gates, c, dev(q["c0"]))
    if algo == "persistent":
        backend.kernels.lstm_persistent_bwd(du, dc, None, *args, dev(q["V"]), dev(q["lengths"]),
                                            plan)
    else:
        step = backend.kernels.lstm_bwd_stepper(du, dc, None, None, *args,
                                                dev(np.ascontiguousarray(q["V"].T)),
                                                dev(q["lengths"]), plan.version, flip=reverse)
        for s in range(T - 1, -1, -1):
            step(s)
    assert_close("du", to_host(du), ref["du"])
    assert_close("dc0", to_host(dc), ref["dc0"])
