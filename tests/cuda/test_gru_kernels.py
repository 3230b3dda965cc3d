"""The GRU's kernels (kernels/gru_*.cu) through the cuda backend's gru_fwd_seq / gru_bwd_seq, on
each kernel executor (tests/executors.py: the emulator in every thread order, one of them in the
bounds-checking build, and a CUDA device): every step version and both persistent versions, both
directions, with lengths, against torch.nn.GRUCell run in float64 example by example."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gpu_bptt.backends.cuda import persistent as P
from gpu_bptt.backends.cuda import registry
from gpu_bptt.validate import to_host
from tests.executors import CUDA, KERNEL_RUNS
from tests.tolerances import assert_close

pytestmark = pytest.mark.executors(*KERNEL_RUNS, CUDA)
DTYPES = (np.float32, np.float64)


def problem(T, B, H, dtype, seed, *, bias=True, dh=True, dh_last=True):
    """p (T, B, 3H) = x @ W + b_x, V (H, 3H), b_h (3H,) or None, h0, lengths (lengths[0] = T),
    dh (T, B, H) or None, dh_last (B, H) or None. p and dh hold NaN at padded steps: the kernels
    must not read them there."""
    r = np.random.default_rng(seed)
    mk = lambda *s, scale=0.5: (r.standard_normal(s) * scale).astype(dtype)
    lengths = r.integers(1, T + 1, size=B).astype(np.int32)
    lengths[0] = T
    pad = np.arange(T)[:, None] >= lengths[None, :]
    pr = dict(p=mk(T, B, 3 * H, scale=1.0), V=mk(H, 3 * H, scale=1 / np.sqrt(H)),
              b_h=mk(3 * H) if bias else None, h0=mk(B, H), lengths=lengths,
              dh=mk(T, B, H) if dh else None, dh_last=mk(B, H) if dh_last else None)
    pr["p"][pad] = np.nan
    if dh:
        pr["dh"][pad] = np.nan
    return pr


def sigmoid(u):
    return 1 / (1 + np.exp(-u))


def reference(pr, reverse):
    """h, gates, dgx, dh0 in float64: torch.nn.GRUCell stepped over each example's valid steps
    (weight_ih = I and bias_ih = 0, so its input is p itself and p's gradient is dgx), gradients
    by autograd from the loss Σ dh·h + Σ dh_last·h_last; gates by the formulas from its h."""
    p64 = {k: None if v is None else np.asarray(v, np.float64) for k, v in pr.items()}
    T, B, G3 = p64["p"].shape
    H = G3 // 3
    lengths = pr["lengths"]
    cell = torch.nn.GRUCell(G3, H, dtype=torch.float64)
    b_h = np.zeros(G3) if p64["b_h"] is None else p64["b_h"]
    with torch.no_grad():
        cell.weight_ih.copy_(torch.eye(G3, dtype=torch.float64))
        cell.bias_ih.zero_()
        cell.weight_hh.copy_(torch.from_numpy(p64["V"].T.copy()))
        cell.bias_hh.copy_(torch.from_numpy(b_h))
    p = torch.from_numpy(np.nan_to_num(p64["p"])).requires_grad_()
    h0 = torch.from_numpy(p64["h0"]).requires_grad_()
    h = np.zeros((T, B, H))
    prev = np.zeros((T, B, H))  # the state each step started from
    loss = 0
    for b in range(B):
        state = h0[b:b + 1]
        L = int(lengths[b])
        for t in (range(L - 1, -1, -1) if reverse else range(L)):
            prev[t, b] = state.detach().numpy()[0]
            state = cell(p[t, b:b + 1], state)
            h[t, b] = state.detach().numpy()[0]
            if p64["dh"] is not None:
                loss = loss + (state[0] * torch.from_numpy(p64["dh"][t, b])).sum()
        if p64["dh_last"] is not None:
            loss = loss + (state[0] * torch.from_numpy(p64["dh_last"][b])).sum()
    loss.backward()
    valid = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
    x = np.nan_to_num(p64["p"])
    hh = prev @ p64["V"] + b_h
    r = sigmoid(x[..., :H] + hh[..., :H])
    z = sigmoid(x[..., H:2 * H] + hh[..., H:2 * H])
    n = np.tanh(x[..., 2 * H:] + r * hh[..., 2 * H:])
    gates = np.concatenate([r, z, n, hh[..., 2 * H:]], axis=-1) * valid
    return h, gates, p.grad.numpy(), h0.grad.numpy()


def run(backend, executor, pr, algo, reverse):
    """plan, [h, gates, dgx, dh0] on the host; checks that no input but p (the callee's) and
    neither h nor gates (the backward's inputs) changed."""
    T, B, G3 = pr["p"].shape
    H = G3 // 3
    plan = backend.resolve_algo(algo, T, B, H, pr["p"].dtype, reverse=reverse, cell="gru")
    assert (plan.algo, plan.cell, plan.reverse) == (algo, "gru", reverse)
    a = {k: executor.asarray(None if v is None else v.copy()) for k, v in pr.items()}
    h, gates = backend.gru_fwd_seq(a["p"], a["V"], a["b_h"], a["h0"], a["lengths"], plan)
    h_fwd, gates_fwd = to_host(h).copy(), to_host(gates).copy()
    dgx, dh0 = backend.gru_bwd_seq(a["dh"], a["dh_last"], h, a["h0"], gates, a["V"],
                                   a["lengths"], plan)
    for k in ("V", "b_h", "h0", "lengths", "dh", "dh_last"):
        if pr[k] is not None:
            np.testing.assert_array_equal(to_host(a[k]), pr[k], err_msg=f"{k} was changed")
    np.testing.assert_array_equal(to_host(h), h_fwd, err_msg="the backward changed h")
    np.testing.assert_array_equal(to_host(gates), gates_fwd, err_msg="the backward changed gates")
    return plan, [to_host(x) for x in (h, gates, dgx, dh0)]


def check(backend, executor, pr, algo, reverse, **tol):
    plan, got = run(backend, executor, pr, algo, reverse)
    ref = reference(pr, reverse)
    dtype = pr["p"].dtype
    for name, g, want in zip(("h", "gates", "dgx", "dh0"), got, ref):
        assert_close(f"{name} ({plan.label}, reverse={reverse})", g, want.astype(dtype), dtype,
                     **tol)
    return plan


# B = 3 with lengths 4 and shorter; H = 37: two 32-wide tiles (v2), a partial 64-wide one (v3).
@pytest.mark.backend_options(step=tuple(registry.STEP))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_step_kernels_equal_torch(executor, backend, dtype, reverse):
    version = backend.step
    i = tuple(registry.STEP).index(version)
    # b_h, dh and dh_last each left out in some version, so every option meets every kernel
    pr = problem(4, 3, 37, dtype, seed=10 * i + reverse, bias=i != 1, dh=i != 2,
                 dh_last=i != 3)
    assert check(backend, executor, pr, "step", reverse).version == version


# H = 13 over the emulator's 4 blocks: 4, 4, 4 and 1 units; B = 3 < one batch chunk.
@pytest.mark.backend_options(persist=P.VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_persistent_kernels_equal_torch(executor, backend, dtype, reverse):
    pr = problem(5, 3, 13, dtype, seed=3 + reverse, bias=dtype == np.float64,
                 dh_last=not reverse)
    check(backend, executor, pr, "persistent", reverse)


@pytest.mark.executors("emulator-warps", CUDA)
@pytest.mark.backend_options(persist=P.VERSIONS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_persistent_two_batch_chunks(backend, executor, reverse):
    """B = 9: two chunks (8 + 1) of the previous state staged per step, rows of 3H backward."""
    check(backend, executor, problem(3, 9, 8, np.float64, seed=5), "persistent", reverse)


@pytest.mark.executors("emulator-warps", CUDA)
@pytest.mark.backend_options(step=("v1", "v2", "v3"))
def test_step_tiles_across_the_batch(backend, executor):
    """B = 65: 17 row blocks of v1, 3 row tiles of v2, 2 of v3 (each row at its own length)."""
    check(backend, executor, problem(2, 65, 5, np.float64, seed=6), "step", True)


@pytest.mark.executors("emulator-random", CUDA)
@pytest.mark.parametrize("algo", ["step", "persistent"])
def test_gradients_are_bit_identical_across_runs(backend, executor, algo):
    pr = problem(4, 3, 10, np.float32, seed=8)
    first = run(backend, executor, pr, algo, False)[1]
    again = run(backend, executor, pr, algo, False)[1]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


# Device sizes (the emulator would take minutes a case): tiles and blocks by the dozen, long runs.
# (T, B, H, dtype, reverse)
DEVICE_CASES = [
    (33, 20, 257, np.float32, False),
    (17, 70, 130, np.float64, True),
    (40, 3, 1000, np.float32, True),
]


@pytest.mark.executors(CUDA)
@pytest.mark.parametrize("algo", ["step", "persistent"])
@pytest.mark.parametrize("case", DEVICE_CASES, ids=str)
def test_device_sizes(backend, executor, algo, case):
    from tests.skips import GPU_SIZE, skip

    T, B, H, dtype, reverse = case
    limits = backend.persistent_limits()
    if algo == "persistent" and H > P.cell_max_hidden(limits, B, dtype, backend.persist, "gru"):
        skip(GPU_SIZE, f"H={H} does not fit this device's shared memory ({limits})")
    # Long float32 recurrences: rounding grows with T, as for Elman's kernels.
    tol = dict(atol=1e-4, rtol=1e-3) if dtype == np.float32 else {}
    check(backend, executor, problem(T, B, H, dtype, seed=T), algo, reverse, **tol)


@pytest.mark.executors("emulator-forward", CUDA)
@pytest.mark.backend_options(gemm=("own",))
@pytest.mark.parametrize("algo", ["step", "persistent"])
def test_own_gemm(backend, executor, algo):
    """gemm="own": dh0's product by kernels/gemm.cu instead of the library's."""
    check(backend, executor, problem(3, 3, 9, np.float64, seed=2), algo, True)


@pytest.mark.parametrize("version", list(registry.STEP))
def test_step_launches_are_the_plans(version):
    """What the GRU's step launchers launch is the plan's grid and block, forward and backward."""
    from cuda_helpers import Recorder

    from gpu_bptt.backends.cuda import rules
    from gpu_bptt.backends.cuda.launchers import Launchers

    T, B, H = 2, 70, 100
    plan = rules.launch_plan("step", B, H, np.float32, limits=P.DeviceLimits(4, 48 * 1024),
                             kernels=(), step=version, persist="v2", cell="gru")
    rec = Recorder()
    k = Launchers(np, rec)
    z = lambda *s: np.zeros(s, np.float32)
    lengths = np.full(B, T, np.int32)
    k.gru_fwd_stepper(z(T, B, H), z(T, B, 4 * H), z(T, B, 3 * H), z(B, H), z(H, 3 * H), None,
                      lengths, plan.version)(1)
    k.gru_bwd_stepper(z(T, B, 3 * H), z(T, B, H), z(B, H), None, None, z(T, B, H), z(B, H),
                      z(T, B, 4 * H), z(3 * H, H), lengths, plan.version)(0)
    assert [(g, b) for _, g, b in rec.launches] == [(plan.grid, plan.block)] * 2
    assert [n for n, _, _ in rec.launches] == [f"gru_fwd_step_{version}<float>",
                                              f"gru_bwd_step_{version}<float>"]


# -- the plan: the GRU's shared memory and its limits ------------------------------------------------
def test_persistent_shared_memory_holds_both_launches():
    """Forward: 3·cols columns of V, each H long, and a chunk of H; backward: cols rows of 3H and a
    chunk of 3H (the larger, which the plan holds). Elman's formula is unchanged."""
    limits = P.DeviceLimits(4, 1 << 20)
    H, B, cols = 13, 3, 4
    fwd = P.smem_bytes(B, H, 3 * cols, 4, "v1")
    bwd = P.smem_bytes(B, 3 * H, cols, 4, "v1")
    assert fwd == (3 * cols + B) * H * 4
    assert bwd == (cols + B) * 3 * H * 4
    plan = P.cell_plan(limits, B, H, np.float32, "v1", "gru")
    assert plan.smem == bwd > fwd and plan == P.plan(limits, B, H, np.float32, "v1", gates=3)
    assert P.cell_plan(limits, B, H, np.float64, "v2", "gru").smem == \
        ((cols + B) * 3 * H + 8 * 64) * 8
    assert P.plan(limits, B, H, np.float32, "v1").smem == (cols + B) * H * 4  # Elman
    assert P.smem_bytes(B, H, cols, 4, "v1") == (cols + B) * H * 4


def largest_by_hand(limits, B, itemsize, version):
    """The largest H with (ceil(H / SMs) + min(B, 8)) * 3H elements (+ v2's 8 x 64 sums) within
    the limit: the backward's slice, the larger of the two, by brute force."""
    extra = 8 * 64 if version == "v2" else 0
    fits = [H for H in range(1, 4000) if ((-(-H // limits.multiprocessors) + min(B, 8)) * 3 * H
                                          + extra) * itemsize <= limits.smem_per_block]
    assert fits[-1] < 3999  # the range reaches past the limit
    return fits[-1]


@pytest.mark.parametrize("device", sorted(P.KNOWN_DEVICES))
@pytest.mark.parametrize("version", P.VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_largest_gru_hidden_size_fits_and_one_more_does_not(device, version, dtype):
    limits = P.KNOWN_DEVICES[device]
    for B in (1, 8):
        largest = P.cell_max_hidden(limits, B, dtype, version, "gru")
        assert largest == largest_by_hand(limits, B, np.dtype(dtype).itemsize, version)
        P.cell_plan(limits, B, largest, dtype, version, "gru")
        with pytest.raises(ValueError, match=rf"H={largest + 1} needs .* the largest H that fits "
                                             rf"here is {largest}$"):
            P.cell_plan(limits, B, largest + 1, dtype, version, "gru")
    lines = P.describe(limits, version)
    h = {(d, B): largest_by_hand(limits, B, d, version) for d in (4, 8) for B in (1, 8)}
    assert lines[-1] == (f"persistent, GRU ({version}): largest H: float32 {h[4, 1]} at B=1, "
                         f"{h[4, 8]} at B>=8; float64 {h[8, 1]} at B=1, {h[8, 8]} at B>=8")


@pytest.mark.executors("emulator-forward")
def test_auto_falls_back_for_a_gru_that_elman_would_run_persistent(backend, monkeypatch):
    """H = 160 on the emulator's 48 KB: Elman's slice fits ((40 + 3) x 160 x 4 bytes and v2's
    2048), the GRU's backward ((40 + 3) x 480 x 4 + 2048 = 84608 bytes) does not."""
    from gpu_bptt.backends import notices

    monkeypatch.setattr(notices, "_warned", set())
    assert backend.resolve_algo("auto", 2, 3, 160, np.float32).algo == "persistent"
    with pytest.warns(RuntimeWarning, match=r"V's slice does not fit on chip: H=160 needs 84608"):
        plan = backend.resolve_algo("auto", 2, 3, 160, np.float32, cell="gru")
    assert (plan.algo, plan.cell) == ("step", "gru")
    with pytest.raises(ValueError, match="cell: expected one of"):
        backend.resolve_algo("auto", 2, 3, 10, np.float32, cell="rnn")
    with pytest.raises(ValueError, match="P: a projection .* P=4 for the gru cell"):
        backend.resolve_algo("auto", 2, 3, 10, np.float32, cell="gru", P=4)


@pytest.mark.executors("emulator-forward")
def test_launchers_name_the_bad_argument(backend):
    T, B, H = 2, 3, 4
    pr = problem(T, B, H, np.float32, seed=1)
    plan = backend.resolve_algo("step", T, B, H, np.float32, cell="gru")
    args = dict(p=pr["p"], V=pr["V"], b_h=pr["b_h"], h0=pr["h0"], lengths=pr["lengths"])
    with pytest.raises(ValueError, match=r"V: expected shape \(4, 12\)"):
        backend.gru_fwd_seq(**dict(args, V=pr["V"][:, :8].copy()), plan=plan)
    with pytest.raises(TypeError, match="b_h: expected dtype float32"):
        backend.gru_fwd_seq(**dict(args, b_h=pr["b_h"].astype(np.float64)), plan=plan)
    elman = backend.resolve_algo("step", T, B, H, np.float32)
    with pytest.raises(ValueError, match="plan: made for the elman cell"):
        backend.gru_fwd_seq(**args, plan=elman)
    h, gates = backend.gru_fwd_seq(**args, plan=plan)
    with pytest.raises(ValueError, match=r"dh_last: expected shape \(3, 4\)"):
        backend.gru_bwd_seq(None, pr["dh_last"][:2], h, pr["h0"], gates, pr["V"],
                            pr["lengths"], plan)


def test_persistent_headers_state_the_shared_memory():
    """The amounts the GRU's persistent headers state are the registry's constants and the
    formulas tested above."""
    from gpu_bptt.backends.cuda import kernel_loader as kl

    c = registry.PERSIST_CONSTANTS
    bc = f"min(B, {c['PERSIST_BATCH']})"
    tail = f" * sizeof(T) bytes, plus {c['PERSIST_WARPS']} * {c['PERSIST_OUTS']} * sizeof(T) for v2"
    for family, amount in ((registry.GRU_PERSIST_FWD, f"(3 * cols + {bc}) * H"),
                           (registry.GRU_PERSIST_BWD, f"(cols + {bc}) * 3 * H")):
        head = " ".join(kl.read_kernel(family.file).split("\n\n")[0].replace("//", " ").split())
        assert f"block ({c['PERSIST_THREADS']}, 1, 1)" in head, family.file
        assert amount + tail in head, family.file
