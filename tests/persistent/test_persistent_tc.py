"""The tensor-core persistent kernels (kernels/elman_persistent_tc_fwd.cu, _bwd.cu: bfloat16 and
float16 storage on mma.m16n8k16, float32 in TF32 mode on m16n8k8, float32 accumulation; S =
float32 below means the TF32 kernels), launched directly on the emulator in
every thread order (one of them in the bounds-checking build), against float64 oracles
(tests/precision_oracle.py) and the numpy reference:
  - one step at a time: each step's output from the state the kernel itself stored before it,
    within the contract's one-product bound plus one rounding on store;
  - whole runs: against the float64 recurrence iterated on its own state, within the bound
    propagated over T steps, and against the numpy backend's run in the same mode.
Lengths, both directions, every activation, batches of more than one 16-row chunk, odd sizes,
and block widths whose warps split k (fewer than 8 n-tiles a block) or own whole n-tiles."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_bptt import activations
from gpu_bptt.backends.cuda import persistent as P
from gpu_bptt.backends.cuda import registry
from gpu_bptt.backends.cuda.kernel_loader import kernel_source, name_expressions
from gpu_bptt.backends.numpy_backend import NumpyBackend
from gpu_bptt.backends.plan import LaunchPlan
from tests.executors import KERNEL_RUNS
from tests.precision_oracle import (BF16, ELEM, F16, F32, TINY, U, acc_bound, rounding, tf32_ref,
                                    times)
from tests.skips import require_emulator, require_sanitizer

F64 = np.float64
EMULATED = P.DeviceLimits(4, P.DEFAULT_SMEM, name="emulator")
#: an emulated device of 4 multiprocessors with an H100's 227 KB per block (launches above 48 KB)
EMULATED_H100 = P.DeviceLimits(4, 227 * 1024, name="emulator, 227 KB")
SEED = 16
ACTS = activations.ACTIVATIONS
#: float32 rounding of one operation, relative
EPS32 = 2.0 ** -24

_modules = {}


def kernel(file, S, run):
    """The emulator's kernel of `file` for storage dtype S, built for `run` (an entry of
    KERNEL_RUNS), and the run's thread order."""
    from gpu_bptt.emulator import RawModule

    order, _, sanitize = run.removeprefix("emulator-").partition("+")
    require_sanitizer() if sanitize else require_emulator()
    key = (file, sanitize)
    if key not in _modules:
        _modules[key] = RawModule(code=kernel_source(file), name_expressions=name_expressions(file),
                                  enable_cooperative_groups=True, sanitize=bool(sanitize))
    fn = _modules[key].get_function(
        registry.family(file).expression(P.TC_VERSION, registry.TC_CTYPES[np.dtype(S).name]))
    return fn, order


def _launch(file, S, run, limits, B, H, args):
    fn, order = kernel(file, S, run)
    geo = P.tc_plan(limits, B, H, np.dtype(S).name)
    fn.max_dynamic_shared_size_bytes = max(geo.smem, P.DEFAULT_SMEM)
    status = np.full(1, -1, np.int32)
    # the kernel's arguments: args, then cols before the last two (act, flip), then status
    fn((geo.grid, 1, 1), (P.THREADS, 1, 1), (*args[:-2], np.int32(geo.cols), *args[-2:], status),
       shared_mem=geo.smem, order=order, seed=SEED)
    assert status[0] == 0, f"status {status[0]}"


def fwd(S, p, h0, V, lengths, act, reverse, run, limits=EMULATED):
    """The kernel's h (T, B, H) in S for p (T, B, H), h0 (B, H), V (H, H) (S values)."""
    T, B, H = p.shape
    h = p.astype(S)
    _launch(P.TC_FILES[0], S, run, limits, B, H,
            (h, h0.astype(S), V.astype(S), lengths, np.int32(T), np.int32(B), np.int32(H),
             np.int32(activations.ACTIVATION_CODES[act]), np.int32(reverse)))
    return h


def bwd(S, dh, dh_last, h, V, lengths, act, reverse, run, limits=EMULATED):
    """The kernel's du (T, B, H) in S; dh, dh_last may be None."""
    T, B, H = h.shape
    du = np.full((T, B, H), np.nan, np.float32).astype(S)  # every entry must be written
    none = np.zeros(1, S)
    _launch(P.TC_FILES[1], S, run, limits, B, H,
            (du, none if dh is None else dh.astype(S), np.int32(dh is not None),
             none if dh_last is None else dh_last.astype(S), np.int32(dh_last is not None),
             h.astype(S), V.astype(S), lengths, np.int32(T), np.int32(B), np.int32(H),
             np.int32(activations.ACTIVATION_CODES[act]), np.int32(reverse)))
    return du


def problem(S, T, B, H, seed, v_scale=1.0, lengths=True):
    """S-valued p, h0, V, dh, dh_last (float64 arrays) and int32 lengths (T first: the longest)."""
    rng = np.random.default_rng(seed)
    s = lambda a: a.astype(np.float32).astype(S).astype(F64)
    L = rng.integers(1, T + 1, B).astype(np.int32) if lengths else np.full(B, T, np.int32)
    L[0] = T
    return dict(p=s(rng.uniform(-1, 1, (T, B, H))), h0=s(rng.uniform(-1, 1, (B, H))),
                V=s(rng.standard_normal((H, H)) * v_scale / np.sqrt(H)),
                dh=s(rng.standard_normal((T, B, H))), dh_last=s(rng.standard_normal((B, H))),
                lengths=L)


def operand(S, a):
    """a (float64) as it enters the product: TF32-rounded (the oracle's own formula) for the TF32
    kernels, else as it is (S values)."""
    return tf32_ref(a).astype(F64) if S == F32 else a


def act64(act, u):
    return activations.apply(np, act, u)


def grad64(act, h):
    return activations.derivative_from_output(np, act, h)


def check_forward_steps(S, f, h, act, reverse):
    """Each step from the state the kernel stored before it (h0 first): the float64 value
    y = f(p + h_prev @ V) of the same S inputs, within one rounding on store of the float32 value
    plus what that value may differ from y by: the accumulation bound of the one product
    (K·2^-23·Σ|h_prev·V|, any order of the float32 sum), the add of p (2^-24|u|) and the
    activation's float32 evaluation (ELEM), all through f' <= 1 (the rounding taken of
    |y| + that error: the (1 + U) factor)."""
    T, B, H = h.shape
    h = h.astype(F64)
    for b, L in enumerate(f["lengths"]):
        prev = f["h0"][b]
        V = operand(S, f["V"])
        for t in times(T, L, reverse):
            u = f["p"][t, b] + operand(S, prev) @ V
            y = act64(act, u)
            err = acc_bound(operand(S, prev), V) + EPS32 * np.abs(u) + ELEM
            tol = rounding(S, np.abs(y) + err) + err
            bad = ~(np.abs(h[t, b] - y) <= tol)
            assert not bad.any(), (f"h[{t}, {b}] ({act}, reverse={reverse}): {bad.sum()} out of "
                                   f"bound, worst {np.nanmax(np.abs(h[t, b] - y) - tol):.3e} over")
            prev = h[t, b]
        assert not h[L:, b].any(), "padded steps are 0"


def check_backward_steps(S, f, h, du, act, reverse, with_dh=True, with_last=True):
    """Each step from the du the kernel stored for the step after it (nothing at the first):
    y = (g + du_next @ V.T)·f'(h), g = dh + dh_last at the example's last step, within one rounding
    on store plus the product's accumulation bound and the float32 work: g's add, the add of the
    product, f'(h) and the multiply (2^-23 of |g| and of |acc|, ELEM of |acc|; f' <= 1)."""
    T, B, H = h.shape
    h, du = h.astype(F64), du.astype(F64)
    VT = operand(S, f["V"]).T
    for b, L in enumerate(f["lengths"]):
        nxt = np.zeros(H)
        for k, t in enumerate(times(T, L, reverse)[::-1]):
            g = (f["dh"][t, b] if with_dh else 0) + (f["dh_last"][b] if with_last and k == 0 else 0)
            acc = g + operand(S, nxt) @ VT
            y = acc * grad64(act, h[t, b])
            err = acc_bound(operand(S, nxt), VT) + 2 * EPS32 * (np.abs(g) + np.abs(acc)) + ELEM * np.abs(acc)
            tol = rounding(S, np.abs(y) + err) + err
            bad = ~(np.abs(du[t, b] - y) <= tol)
            assert not bad.any(), (f"du[{t}, {b}] ({act}, reverse={reverse}): {bad.sum()} out of "
                                   f"bound, worst {np.nanmax(np.abs(du[t, b] - y) - tol):.3e} over")
            nxt = du[t, b]
        assert not du[L:, b].any(), "padded steps get no gradient"


def run_and_check(S, T, B, H, act, reverse, run, seed, limits=EMULATED, with_dh=True,
                  with_last=True, lengths=True):
    f = problem(S, T, B, H, seed, lengths=lengths)
    h = fwd(S, f["p"], f["h0"], f["V"], f["lengths"], act, reverse, run, limits)
    check_forward_steps(S, f, h, act, reverse)
    du = bwd(S, f["dh"] if with_dh else None, f["dh_last"] if with_last else None, h, f["V"],
             f["lengths"], act, reverse, run, limits)
    check_backward_steps(S, f, h, du, act, reverse, with_dh, with_last)


@pytest.mark.parametrize("run", KERNEL_RUNS)
@pytest.mark.parametrize("act", ACTS)
def test_each_activation_step_by_step(run, act):
    """H = 13 over 4 blocks: 4, 4, 4 and 1 columns, one n-tile each (8 warps split k: 1 k-step,
    7 warps with nothing); B = 3 < one chunk; K = 13 is no whole 16-byte vector (element copies)."""
    i = ACTS.index(act)
    run_and_check((BF16, F16)[i % 2], 7, 3, 13, act, bool(i // 2), run, seed=i)


# (T, B, H, S, reverse, dh, dh_last, limits), S = float32 the TF32 kernels: two batch chunks
# (16 + 3) and 2 n-tiles a block
# (4 warps per tile split 3 k-steps); T = 1; B = 1; a full chunk of 16 rows; H = 300 over 4
# blocks of 75 columns (10 n-tiles: the warps take whole tiles, two for some; ~95 KB per block,
# the kernel attribute raised above 48 KB as on a GPU).
CASES = [
    (5, 19, 40, BF16, True, True, True, EMULATED),
    (1, 4, 6, F16, False, False, True, EMULATED),
    (6, 1, 24, BF16, False, True, False, EMULATED),
    (4, 16, 37, F16, True, True, True, EMULATED),
    (3, 5, 300, BF16, False, True, True, EMULATED_H100),
    (5, 19, 21, F32, True, True, True, EMULATED),      # TF32: 3 n-tiles (2 k parts), 3 k-steps
    (3, 5, 300, F32, True, True, True, EMULATED_H100),  # TF32: ~180 KB per block, reversed
    (6, 1, 24, F32, False, True, False, EMULATED),      # TF32: 16-byte staging
]


@pytest.mark.parametrize("run", KERNEL_RUNS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}-B{}-H{}-{}-rev{:d}-dh{:d}-last{:d}".format(
    *c[:3], np.dtype(c[3]).name, *c[4:7]))
def test_shapes_step_by_step(run, case):
    T, B, H, S, reverse, dh, last, limits = case
    run_and_check(S, T, B, H, "tanh", reverse, run, seed=T * 100 + B * 10 + H, limits=limits,
                  with_dh=dh, with_last=last)


def col_norm(M):
    """max_j Σ_i |M_ij|: how much a row vector's largest error can grow through `@ M`."""
    return np.abs(M).sum(axis=0).max()


@pytest.mark.parametrize("S", [BF16, F16, F32], ids=["bfloat16", "float16", "tf32"])
@pytest.mark.parametrize("reverse", [False, True])
def test_whole_run_within_the_propagated_bound(S, reverse):
    """The kernel's whole run against the float64 recurrence iterated on its own state from the
    same S inputs (tests/test_precision.py derives the same bound for the numpy reference): with
    e_t the largest state error after step t, each step adds at most δ and multiplies the error
    it reads by at most ρ, so e_T <= δ·Σ_{k<T} ρ^k.
      forward (tanh): ρ = ‖V‖ (tanh' <= 1), δ = U_S (rounding on store, |h| <= 1) + the
        product's 2K·2^-24·‖V‖ + ELEM (p is an S value: exact), and for TF32 the operands'
        rounding, 2·2^-11·‖V‖ (h and V, each by half a TF32 ulp);
      backward: ρ = ‖V.T‖ (f' <= 1), δ = U_S·M + (2K·2^-24·ρ + 2^-21)·M + 2^-23·(G + ρM + M)
        (+ 2·2^-11·ρ·M for TF32) with M the largest |du| and G the largest |g| (the one-step
        terms at their largest).
    V is scaled so that ρ is about 0.5: the bound is a few δ. The numpy backend's run in the same
    mode lies within the same bound of the same oracle, so the two agree within twice it."""
    T, B, H = 12, 5, 24
    f = problem(S, T, B, H, seed=3 + reverse, v_scale=0.1)
    run = "emulator-random"
    h = fwd(S, f["p"], f["h0"], f["V"], f["lengths"], "tanh", reverse, run)
    du = bwd(S, f["dh"], f["dh_last"], h, f["V"], f["lengths"], "tanh", reverse, run)
    ys, ds = np.zeros((T, B, H)), np.zeros((T, B, H))
    for b, L in enumerate(f["lengths"]):
        hp = f["h0"][b]
        for t in times(T, L, reverse):
            hp = ys[t, b] = np.tanh(f["p"][t, b] + hp @ f["V"])
        nxt = np.zeros(H)
        for k, t in enumerate(times(T, L, reverse)[::-1]):  # from the kernel's h, as numpy's
            g = f["dh"][t, b] + (f["dh_last"][b] if k == 0 else 0)
            nxt = ds[t, b] = (g + nxt @ f["V"].T) * (1 - h[t, b].astype(F64) ** 2)
    rho, rho_b, K = col_norm(f["V"]), col_norm(f["V"].T), H
    u_op = 2 * 2.0 ** -11 if S == F32 else 0.0  # TF32 operands
    delta = U[S] + TINY[S] + 2 * K * EPS32 * rho + ELEM + u_op * rho
    bound = delta * sum(rho ** k for k in range(T))
    M, G = np.abs(ds).max() * 1.05, np.abs(f["dh"]).max() + np.abs(f["dh_last"]).max()
    delta_b = (U[S] + 2 * K * EPS32 * rho_b + 2.0 ** -21 + u_op * rho_b) * M + TINY[S] \
        + 2 * EPS32 * (G + rho_b * M + M)
    bound_b = delta_b * sum(rho_b ** k for k in range(T))
    assert rho < 0.7 and rho_b < 0.7, (rho, rho_b)
    err, err_b = np.abs(h.astype(F64) - ys).max(), np.abs(du.astype(F64) - ds).max()
    assert err <= bound, f"forward: max error {err:.3e} over the bound {bound:.3e}"
    assert err_b <= bound_b, f"backward: max error {err_b:.3e} over the bound {bound_b:.3e}"

    plan = LaunchPlan(algo="step", B=B, H=H, dtype=np.dtype(S).name, reverse=reverse,
                      tf32=S == F32)
    npb = NumpyBackend()
    h_np = npb.elman_fwd_seq(f["p"].astype(S), f["V"].astype(S), f["h0"].astype(S), "tanh",
                             f["lengths"], plan)
    du_np = npb.elman_bwd_seq(f["dh"].astype(S), f["dh_last"].astype(S), h, f["V"].astype(S),
                              "tanh", f["lengths"], plan)
    assert h_np.dtype == S and du_np.dtype == S
    err = np.abs(h.astype(F64) - h_np.astype(F64)).max()
    assert err <= 2 * bound, f"forward vs numpy: {err:.3e} over {2 * bound:.3e}"
    err_b = np.abs(du.astype(F64) - du_np.astype(F64)).max()
    assert err_b <= 2 * bound_b, f"backward vs numpy: {err_b:.3e} over {2 * bound_b:.3e}"


def test_gradients_are_bit_identical_across_runs_and_orders():
    """The k parts' partial tiles are added in a fixed order: no thread order changes a bit."""
    f = problem(BF16, 4, 3, 20, seed=5)
    out = []
    for run in ("emulator-forward", "emulator-warps"):
        h = fwd(BF16, f["p"], f["h0"], f["V"], f["lengths"], "tanh", False, run)
        out.append((h, bwd(BF16, f["dh"], f["dh_last"], h, f["V"], f["lengths"], "tanh", False,
                           run)))
    for a, b in zip(*out):
        assert np.array_equal(a.view(np.uint16), b.view(np.uint16))


def test_short_grid_writes_nothing_and_reports_it():
    """A grid that does not cover H (a runtime that shrank the launch): status names the blocks
    that ran and no output is written, as with the float kernels."""
    fn, order = kernel(P.TC_FILES[0], BF16, "emulator-forward")
    f = problem(BF16, 2, 2, 13, seed=1)
    geo = P.tc_plan(EMULATED, 2, 13, "bfloat16")
    h = f["p"].astype(BF16)
    before = h.copy()
    status = np.full(1, -1, np.int32)
    fn((geo.grid - 1, 1, 1), (P.THREADS, 1, 1),
       (h, f["h0"].astype(BF16), f["V"].astype(BF16), f["lengths"], np.int32(2), np.int32(2),
        np.int32(13), np.int32(geo.cols), np.int32(0), np.int32(0), status),
       shared_mem=geo.smem, order=order)
    assert status[0] == geo.grid - 1
    assert np.array_equal(h.view(np.uint16), before.view(np.uint16))


def test_planned_shared_memory_is_what_the_kernel_touches():
    """Under the sanitizer every access past the launch's dynamic shared memory is reported: the
    plan's bytes run (the tests above), and 4 bytes fewer fault. H = 13 has one n-tile a block,
    so all 8 k parts write their tile and the last float of the partial tiles is used."""
    from gpu_bptt.emulator import KernelFault

    fn, order = kernel(P.TC_FILES[0], BF16, "emulator-reverse+sanitize")
    f = problem(BF16, 2, 3, 13, seed=2)
    geo = P.tc_plan(EMULATED, 3, 13, "bfloat16")
    with pytest.raises(KernelFault, match="sanitizer"):
        fn((geo.grid, 1, 1), (P.THREADS, 1, 1),
           (f["p"].astype(BF16), f["h0"].astype(BF16), f["V"].astype(BF16), f["lengths"],
            np.int32(2), np.int32(3), np.int32(13), np.int32(geo.cols), np.int32(0), np.int32(0),
            np.zeros(1, np.int32)), shared_mem=geo.smem - 4, order=order)


def tc_launch_plan(S, B, H, reverse, limits=EMULATED):
    """A persistent LaunchPlan with tc_plan's geometry (S = float32: the TF32 kernels)."""
    name = np.dtype(S).name
    geo = P.tc_plan(limits, B, H, name)
    return LaunchPlan(algo="persistent", B=B, H=H, dtype=name, version=P.TC_VERSION,
                      grid=(geo.grid, 1, 1), block=(P.THREADS, 1, 1), smem=geo.smem,
                      cols=geo.cols, reverse=reverse, tf32=S == F32)


@pytest.mark.parametrize("S", [BF16, F16, F32], ids=["bfloat16", "float16", "tf32"])
def test_the_launchers_run_the_plan(S):
    """The cuda backend's launchers (on the emulator backend) run the kernels as the direct
    launches above do, bit for bit, from a persistent plan of the storage dtype; a plan of
    another problem or float32 without TF32 is refused naming the plan."""
    from gpu_bptt.backends.emulator import EmulatorBackend

    require_emulator()
    run = "emulator-warps"
    k = EmulatorBackend(order="warps").kernels
    f = problem(S, 5, 3, 21, seed=9)
    plan = tc_launch_plan(S, 3, 21, True)
    h = k.persistent_tc_fwd(f["p"].astype(S), f["h0"].astype(S), f["V"].astype(S), f["lengths"],
                            "sigmoid", plan)
    check_forward_steps(S, f, h, "sigmoid", True)
    du = k.persistent_tc_bwd(np.empty(h.shape, S), f["dh"].astype(S), None, h, f["V"].astype(S),
                             f["lengths"], "sigmoid", plan)
    check_backward_steps(S, f, h, du, "sigmoid", True, with_last=False)
    h_direct = fwd(S, f["p"], f["h0"], f["V"], f["lengths"], "sigmoid", True, run)
    du_direct = bwd(S, f["dh"], None, h, f["V"], f["lengths"], "sigmoid", True, run)
    bits = np.uint32 if S == F32 else np.uint16
    assert np.array_equal(h.view(bits), h_direct.view(bits))
    assert np.array_equal(du.view(bits), du_direct.view(bits))
    with pytest.raises(ValueError, match="plan: made for B=4"):
        k.persistent_tc_fwd(f["p"].astype(S), f["h0"].astype(S), f["V"].astype(S), f["lengths"],
                            "tanh", tc_launch_plan(S, 4, 21, True))


def test_the_launchers_refuse_float32_without_tf32():
    from gpu_bptt.backends.emulator import EmulatorBackend

    require_emulator()
    f = problem(F32, 2, 2, 8, seed=1)
    plan = tc_launch_plan(F32, 2, 8, False)
    plan = LaunchPlan(**{**plan.__dict__, "tf32": False})
    with pytest.raises(ValueError, match="float32 only with tf32"):
        EmulatorBackend().kernels.persistent_tc_fwd(f["p"].astype(F32), f["h0"].astype(F32),
                                                    f["V"].astype(F32), f["lengths"], "tanh", plan)
