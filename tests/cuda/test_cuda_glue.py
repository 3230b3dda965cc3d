"""The cuda backend's own glue to CuPy, which the emulator backend does not run: CudaBackend's
constructor, the device report, the persistent limits from the device properties and the
occupancy query, and `gpu-bptt info`. A stand-in `cupy` module gives NumPy arrays, the
emulator's RawModule (CuPy's interface) and the property names CuPy's runtime returns, so the
whole forward and backward runs through CudaBackend itself, against the numpy backend."""
from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

from cuda_helpers import Recorder, assert_close, require_emulator, rng
import gpu_bptt

PROPS = {"name": b"Stand-in GPU", "multiProcessorCount": 4, "sharedMemPerBlock": 48 * 1024,
         "sharedMemPerBlockOptin": 64 * 1024, "cooperativeLaunch": 1}


class CupyLaunch:
    """A kernel launched as CuPy 14 does (cupy/cuda/function.pyx, _launch): a cooperative 1-D grid
    above the occupancy limit is shrunk to it with only a warning. SHRINK[0] sets that limit
    (None: no shrink), SHRINK[1] whether the shrink warns (False: a runtime that shrinks silently);
    every launch is counted in LAUNCHES."""

    def __init__(self, fn):
        object.__setattr__(self, "fn", fn)

    def __getattr__(self, name):
        return getattr(self.fn, name)

    def __setattr__(self, name, value):  # max_dynamic_shared_size_bytes goes to the kernel
        setattr(self.fn, name, value)

    def __call__(self, grid, block, args, **kw):
        limit, warns = SHRINK
        grid = tuple(grid) + (1,) * (3 - len(grid))
        if self.fn.module.enable_cooperative_groups and limit is not None \
                and grid[0] * grid[1] * grid[2] > limit:
            if warns and grid[1:] != (1, 1):  # CuPy refuses a grid of more dimensions
                raise ValueError(f"The specified grid size ({grid[0]} * {grid[1]} * {grid[2]}) "
                                 f"exceeds the limit ({limit}).")
            if warns:
                warnings.warn(f"The grid size will be reduced from {grid[0]} to {limit}, as the "
                              "specified grid size exceeds the limit.")
            grid = (limit // (grid[1] * grid[2]),) + grid[1:]
        LAUNCHES.append(self.fn.name)
        EVENTS.append(("launch", self.fn.name, grid, STREAMS[-1].name))
        return self.fn(grid, block, args, **kw)


class Stream:
    """cupy.cuda.Stream's part the backend uses: `with stream:` makes it current, record() and
    wait_event() order it; each is recorded in EVENTS, in order with the launches."""

    def __init__(self, non_blocking=False, name="side"):
        self.name = name

    def __enter__(self):
        STREAMS.append(self)
        return self

    def __exit__(self, *exc):
        STREAMS.pop()

    def record(self):
        EVENTS.append(("record", self.name))
        return self.name

    def wait_event(self, event):
        EVENTS.append(("wait", self.name, event))


SHRINK = [None, True]
PER_SM = [1]  # what the occupancy query answers: blocks per multiprocessor
LAUNCHES = []
EVENTS = []   # ("launch", name, grid, stream), ("record", stream), ("wait", stream, on stream)
STREAMS = []  # the current stream last
OCCUPANCY = "occupancyMaxActiveBlocksPerMultiprocessor"  # cupy.cuda.driver's binding


@pytest.fixture
def fake_cupy(monkeypatch):
    require_emulator()
    from gpu_bptt.emulator import RawModule

    occupancy = []

    class Module(RawModule):
        def get_function(self, name):
            fn = super().get_function(name)
            fn.kernel = types.SimpleNamespace(ptr=id(fn))  # what CuPy's RawKernel.kernel gives
            return CupyLaunch(fn)

    def occupancy_query(ptr, threads, smem):
        occupancy.append((threads, smem))
        return PER_SM[0]

    cupy = types.ModuleType("cupy")
    for name in dir(np):
        if not name.startswith("_"):
            setattr(cupy, name, getattr(np, name))
    cupy.__version__ = "stand-in"
    cupy.RawModule = Module
    cuda = types.ModuleType("cupy.cuda")
    # two devices: the second has twice the multiprocessors; cupy.cuda.Device() is the current one
    props = [dict(PROPS), dict(PROPS, name=b"Second GPU", multiProcessorCount=8)]
    current = [0]
    cuda.runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 2, getDeviceProperties=lambda i: dict(props[i]),
        runtimeGetVersion=lambda: 12090, driverGetVersion=lambda: 12080)
    cuda.Device = lambda *a: types.SimpleNamespace(id=current[0], compute_capability="90")
    cuda.Stream = Stream
    cuda.get_current_stream = lambda: STREAMS[-1]
    cupy.current_device = current  # for the tests: which device is current
    cuda.get_cuda_path = lambda: None
    cuda.nvrtc = types.SimpleNamespace(getVersion=lambda: (12, 9))
    cuda.driver = types.SimpleNamespace(**{OCCUPANCY: occupancy_query})
    cuda.__getattr__ = lambda name: types.ModuleType(f"cupy.cuda.{name}")  # cublas loads
    cupy.cuda = cuda
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    import gpu_bptt.backends as backends
    from gpu_bptt.backends import notices
    from gpu_bptt.backends.cuda import kernel_loader

    # fresh caches of backends and modules, put back afterwards: the stand-in's modules must never
    # serve a real CuPy later in the same process
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.setattr(kernel_loader, "_MODULES", {})
    monkeypatch.setattr(notices, "_warned", set())  # each test hears its own warnings
    SHRINK[:] = [None, True]
    PER_SM[:] = [1]
    LAUNCHES.clear()
    EVENTS.clear()
    STREAMS[:] = [Stream(name="null")]
    return occupancy


def test_device_report_and_limits_from_the_properties(fake_cupy):
    from gpu_bptt.backends.cuda.backend import CudaBackend, device_report

    rep = device_report()
    assert rep["device"] == "Stand-in GPU" and rep["multiprocessors"] == 4
    assert (rep["compute_capability"], rep["cuda_runtime"], rep["cuda_driver"], rep["nvrtc"]) == (
        "9.0", "12.9", "12.8", "12.9")
    bk = CudaBackend()
    limits = bk.persistent_limits()
    assert (limits.multiprocessors, limits.smem_per_block, limits.cooperative) == (
        4, 64 * 1024, True)
    assert limits.name == "Stand-in GPU"


def test_limits_follow_the_current_device(fake_cupy):
    """One backend serves every device: the limits and the step rule read the current one."""
    from gpu_bptt.backends.cuda import CudaBackend

    bk = CudaBackend(step="auto")
    assert bk.multiprocessors == 4 and bk.step_version(192, 256) == "v3"  # 12 tiles >= 2 x 4
    sys.modules["cupy"].current_device[0] = 1
    assert bk.persistent_limits().name == "Second GPU" and bk.multiprocessors == 8
    assert bk.step_version(192, 256) == "v2"  # 12 tiles < 2 x 8


@pytest.mark.parametrize("algo", ["step", "persistent"])
def test_forward_backward_through_cuda_backend_itself(fake_cupy, algo):
    from gpu_bptt.backends.cuda import CudaBackend

    bk = CudaBackend(step="auto")
    assert bk.name == "cuda" and bk.loader.kind == "cupy"
    r = rng(4)
    T, B, I, H = 5, 3, 4, 24
    x, W = r.standard_normal((T, B, I)), r.standard_normal((I, H)) / 2
    V, b, h0 = r.standard_normal((H, H)) / 5, r.standard_normal(H), r.standard_normal((B, H))
    dh, lengths = r.standard_normal((T, B, H)), np.array([5, 2, 4], dtype=np.int32)
    outs = {}
    for name, backend, how in (("numpy", "numpy", "step"), ("cuda", bk, algo)):
        out = gpu_bptt.elman_forward(x, W, V, b, h0, lengths=lengths, backend=backend, algo=how)
        outs[name] = out, gpu_bptt.elman_backward(dh, out.cache)
    assert outs["cuda"][0].cache.algo == algo
    assert_close("h", outs["cuda"][0].h, outs["numpy"][0].h)
    for g in ("dx", "dW", "dV", "db", "dh0"):
        assert_close(g, getattr(outs["cuda"][1], g), getattr(outs["numpy"][1], g))
    if algo == "persistent":  # co-residency asked of the driver, for both directions
        assert len(fake_cupy) >= 2 and {t for t, _ in fake_cupy} == {256}


def test_info_prints_device_kernels_and_persistent_limits(fake_cupy, capsys):
    from gpu_bptt.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "default backend: cuda" in out and "Stand-in GPU" in out
    assert "every kernel compiles" in out
    assert "persistent (v2): largest H" in out


def _problem(T=4, B=2, I=3, H=24, seed=11):
    r = rng(seed)
    args = dict(x=r.standard_normal((T, B, I)), W=r.standard_normal((I, H)) / 2,
                V=r.standard_normal((H, H)) / 5, b=r.standard_normal(H),
                h0=r.standard_normal((B, H)))
    return args, r.standard_normal((T, B, H))


# -- cooperative launches: never fewer blocks than the columns need --------------------------------
def test_persistent_refused_when_co_residency_is_unknown(fake_cupy, monkeypatch):
    """A CuPy without the occupancy query: the grid's co-residency cannot be checked, so
    'persistent' is refused and 'auto' falls back with a warning, once."""
    from gpu_bptt.backends.cuda import CudaBackend

    monkeypatch.delattr(sys.modules["cupy"].cuda.driver, OCCUPANCY)
    bk = CudaBackend()
    args, _ = _problem()
    with pytest.raises(ValueError, match=r"algo='persistent' cannot run: whether the grid of 4 "
                                         r"blocks can be co-resident is unknown"):
        gpu_bptt.elman_forward(**args, backend=bk, algo="persistent")
    with pytest.warns(RuntimeWarning, match="algo='auto' runs the step kernels: .* co-resident is "
                                            "unknown"):
        assert gpu_bptt.elman_forward(**args, backend=bk).cache.algo == "step"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same cause again: no second warning
        assert gpu_bptt.elman_forward(**args, backend=bk).cache.algo == "step"
    assert not any("persistent" in name for name in LAUNCHES)


def test_cupy_shrinking_the_cooperative_grid_is_an_error(fake_cupy):
    """CuPy would launch fewer blocks than the plan (its occupancy limit is lower than the
    query's): the warning it gives is an error, and nothing is launched."""
    from gpu_bptt.backends.cuda import CudaBackend

    bk = CudaBackend()
    args, _ = _problem()
    SHRINK[:] = [3, True]  # the plan: 4 blocks of 6 columns for H = 24
    with pytest.raises(RuntimeError, match=r"elman_persistent_fwd_v2: CuPy would launch fewer than "
                                           r"the 4 co-resident blocks .*grid size will be reduced"):
        gpu_bptt.elman_forward(**args, backend=bk, algo="persistent")
    assert not any("persistent" in name for name in LAUNCHES)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_kernel_flags_a_grid_too_small_for_H(fake_cupy, direction):
    """A runtime that runs fewer blocks than asked, silently: the kernel sees that its grid does
    not cover H, writes nothing, and the launcher raises."""
    from gpu_bptt.backends.cuda import CudaBackend

    bk = CudaBackend()
    args, dh = _problem()
    if direction == "backward":
        out = gpu_bptt.elman_forward(**args, backend=bk, algo="persistent")
    SHRINK[:] = [3, False]
    stem = "elman_persistent_fwd_v2" if direction == "forward" else "elman_persistent_bwd_v2"
    with pytest.raises(RuntimeError, match=rf"{stem}: only 3 of the 4 blocks ran"):
        if direction == "forward":
            gpu_bptt.elman_forward(**args, backend=bk, algo="persistent")
        else:
            gpu_bptt.elman_backward(dh, out.cache)
    assert LAUNCHES[-1].startswith(stem)  # the launch happened; the device said it was short


# -- both directions of a bidirectional layer together ---------------------------------------------
def _pair(bk, algo, T=4, B=2, I=3, H=24):
    """elman_forward_pair and elman_backward_pair on `bk`, checked bit for bit against two
    single-direction calls on `bk` and within tolerance against the numpy backend's; returns the
    pair's plan and the EVENTS of the pair's forward and backward alone."""
    from gpu_bptt.cells import elman_backward_pair, elman_forward_pair

    args, dh = _problem(T, B, I, H)
    rev, dh_r = _problem(T, B, I, H, seed=12)
    lengths = np.array([T, 2][:B], dtype=np.int32)
    ws = [tuple(a[k] for k in ("W", "V", "b", "h0")) for a in (args, rev)]
    EVENTS.clear()
    pair = elman_forward_pair(args["x"], *ws, lengths=lengths, backend=bk, algo=algo)
    grads = elman_backward_pair((dh, dh_r), (pair.forward.cache, pair.reverse.cache))
    events = list(EVENTS)
    for i, (w, d) in enumerate(zip(ws, (dh, dh_r))):
        outs = {}
        for name, backend, how in (("numpy", "numpy", "step"), ("cuda", bk, algo)):
            out = gpu_bptt.elman_forward(args["x"], *w, lengths=lengths, backend=backend,
                                         algo=how, reverse=bool(i))
            outs[name] = out, gpu_bptt.elman_backward(d, out.cache)
        got = (pair.forward, pair.reverse)[i]
        np.testing.assert_array_equal(got.h, outs["cuda"][0].h)
        assert_close("h", got.h, outs["numpy"][0].h)
        for g in ("dx", "dW", "dV", "db", "dh0"):
            np.testing.assert_array_equal(getattr(grads[i], g), getattr(outs["cuda"][1], g))
            assert_close(g, getattr(grads[i], g), getattr(outs["numpy"][1], g))
    return pair.plan, events


def _launches(events):
    """The recurrence's launches (db's column sums aside): (name, grid, stream)."""
    return [e[1:] for e in events if e[0] == "launch" and e[1].startswith("elman_")]


def test_persistent_pair_is_one_cooperative_launch(fake_cupy):
    """Two blocks per multiprocessor fit: each pass of the pair is ONE launch of 2 * 4 blocks
    (grid (4, 2, 1)), on the current stream."""
    from gpu_bptt.backends.cuda import CudaBackend

    PER_SM[:] = [2]
    plan, events = _pair(CudaBackend(), "persistent")
    assert (plan.how, plan.grid) == ("one launch", (4, 2, 1)), plan.reason
    assert _launches(events) == [
        ("elman_persistent_fwd_pair_v2<double>", (4, 2, 1), "null"),
        ("elman_persistent_bwd_pair_v2<double>", (4, 2, 1), "null")]


def test_persistent_pair_on_two_streams_where_it_cannot_be_one_launch(fake_cupy, monkeypatch):
    """One block per multiprocessor: 2 * 4 blocks cannot be co-resident on 4 multiprocessors, so
    each direction's own cooperative launch goes to a stream of its own (the plan says why),
    and the status words are read only after both are queued."""
    from gpu_bptt.backends.cuda import CudaBackend
    from gpu_bptt.backends.cuda.launchers import Launchers

    queue = Launchers._cooperative

    def logged(self, *a, **kw):  # each status check, in EVENTS' order
        check = queue(self, *a, **kw)
        return lambda: EVENTS.append(("check",)) or check()
    monkeypatch.setattr(Launchers, "_cooperative", logged)
    plan, events = _pair(CudaBackend(), "persistent")
    assert plan.how == "two streams" and plan.grid == ()
    assert plan.reason.startswith("elman_persistent_fwd_pair_v2's 2 * 4 = 8 blocks cannot be "
                                  "co-resident (1 block(s) of 256 threads per multiprocessor, "
                                  "on 4 multiprocessors)")
    assert plan.label == "persistent v2, both directions on two streams"
    forward = [e for e in events[:events.index(("check",)) + 2] if e[0] != "launch"
               or e[1].startswith("elman_")]
    assert forward == [
        ("record", "null"), ("wait", "side", "null"),
        ("launch", "elman_persistent_fwd_v2<double>", (4, 1, 1), "null"),
        ("launch", "elman_persistent_fwd_v2<double>", (4, 1, 1), "side"),
        ("record", "side"), ("wait", "null", "side"), ("check",), ("check",)]
    assert _launches(events)[2:] == [("elman_persistent_bwd_v2<double>", (4, 1, 1), s)
                                     for s in ("null", "side")]


def test_step_pair_on_two_streams(fake_cupy):
    """The step kernels: step s of the forward direction on the current stream, of the reversed
    one on the side stream, interleaved; the side stream joins the current one at both ends."""
    from gpu_bptt.backends.cuda import CudaBackend

    T = 4
    plan, events = _pair(CudaBackend(step="v2"), "step", T=T)
    assert plan.how == "two streams"
    fork = [("record", "null"), ("wait", "side", "null")]
    join = [("record", "side"), ("wait", "null", "side")]
    want = []
    for d in ("fwd", "bwd"):
        want += fork + [("launch", f"elman_{d}_step_v2<double>", (1, 1, 1), s)
                        for _ in range(T) for s in ("null", "side")] + join
    assert [e for e in events if e[0] != "launch" or e[1].startswith("elman_")] == want


@pytest.mark.parametrize("algo", ["step", "persistent"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_pair_on_two_streams(fake_cupy, monkeypatch, cell, algo):
    """A bidirectional LSTM or GRU level (Backend.seq_pair): each direction's launches on a
    stream of its own, the step launches interleaved step by step, a persistent launch's status
    word read only once both directions' launches are queued; the side stream joins the current
    one at both ends. (tests/test_gated_pair.py: the results are two single calls'.)"""
    from gpu_bptt.backends.cuda import CudaBackend
    from gpu_bptt.backends.cuda.launchers import Launchers
    from gpu_bptt.cells import (gru_backward_pair, gru_forward_pair, lstm_backward_pair,
                                lstm_forward_pair)

    queue = Launchers._cooperative

    def logged(self, *a, **kw):  # each status check, in EVENTS' order
        check = queue(self, *a, **kw)
        return lambda: EVENTS.append(("check",)) or check()
    monkeypatch.setattr(Launchers, "_cooperative", logged)
    T, B, I, H = 3, 2, 3, 8
    r = rng(5)
    G = 4 if cell == "lstm" else 3
    dirs = [(r.standard_normal((I, G * H)) / 2, r.standard_normal((H, G * H)) / 5, None, None,
             None) + ((None,) if cell == "lstm" else ()) for _ in range(2)]
    fwd, bwd = ((lstm_forward_pair, lstm_backward_pair) if cell == "lstm"
                else (gru_forward_pair, gru_backward_pair))
    x, lengths = r.standard_normal((T, B, I)), np.array([T, 1], dtype=np.int32)
    EVENTS.clear()
    outs = fwd(x, *dirs, lengths=lengths, backend=CudaBackend(step="v2"), algo=algo)
    bwd((r.standard_normal((T, B, H)),) * 2, [o.cache for o in outs])
    fork = [("record", "null"), ("wait", "side", "null")]
    join = [("record", "side"), ("wait", "null", "side")]
    want = []
    for d in ("fwd", "bwd"):  # launches as (kernel, stream)
        if algo == "step":
            want += fork + [("launch", f"{cell}_{d}_step_v2", s)
                            for _ in range(T) for s in ("null", "side")] + join
        else:
            want += fork + [("launch", f"{cell}_persistent_{d}_v2", s)
                            for s in ("null", "side")] + [("check",)] * 2 + join
    assert [("launch", e[1].split("<")[0], e[3]) if e[0] == "launch" else e for e in EVENTS
            if e[0] != "launch" or e[1].startswith(f"{cell}_")] == want
    assert outs[1].cache.reverse and not outs[0].cache.reverse


def test_pair_kernel_flags_a_grid_too_small_for_H(fake_cupy):
    """A runtime that shrinks the pair's grid silently: each half sees that it does not cover H,
    writes nothing, and the launcher raises."""
    from gpu_bptt.backends.cuda import CudaBackend
    from gpu_bptt.cells import elman_forward_pair

    PER_SM[:] = [2]
    args, _ = _problem()
    w = tuple(args[k] for k in ("W", "V", "b", "h0"))
    SHRINK[:] = [6, False]
    with pytest.raises(RuntimeError, match=r"elman_persistent_fwd_pair_v2: only 3 of the 4 "
                                           r"blocks ran"):
        elman_forward_pair(args["x"], w, w, backend=CudaBackend(), algo="persistent")
    assert LAUNCHES == ["elman_persistent_fwd_pair_v2<double>"]


# -- fallbacks are visible -------------------------------------------------------------------------
def test_auto_fallback_warns_once_per_cause_and_the_algorithm_is_recorded(fake_cupy):
    """H = 200 does not fit the stand-in's 64 KB per block (float64): 'auto' runs the step kernels,
    says why once, and the cache, the bench record and `gpu-bptt info` say what ran."""
    from gpu_bptt.backends.cuda import CudaBackend
    from gpu_bptt.bench.contenders import Ours
    from gpu_bptt.bench.runner import run_contender
    from gpu_bptt.bench.sizes import Size, make_problem, reference

    bk = CudaBackend(step="v2")
    args, _ = _problem(H=200)
    with pytest.warns(RuntimeWarning, match=r"algo='auto' runs the step kernels: .*V's slice does "
                                            r"not fit on chip: H=200") as seen:
        for _ in range(3):
            out = gpu_bptt.elman_forward(**args, backend=bk)
    assert len(seen) == 1, [str(w.message) for w in seen]
    assert out.cache.algo == "step" and out.cache.meta()["algo"] == "step"
    small, _ = _problem(H=24)  # another size: persistent runs, nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gpu_bptt.elman_forward(**small, backend=bk).cache.algo == "persistent"

    problem = make_problem(Size(T=3, B=2, I=3, H=200), "float64", seed=1)
    rec = run_contender(Ours("cuda", lambda: bk), problem, reference(problem), warmup=0, repeats=1,
                        budget_s=5.0)
    assert rec["check"]["ok"] and rec["algo"] == "step v2", rec
    problem = make_problem(Size(T=3, B=2, I=3, H=24), "float64", seed=1)
    rec = run_contender(Ours("cuda", lambda: bk), problem, reference(problem), warmup=0, repeats=1,
                        budget_s=5.0)
    assert rec["algo"] == "persistent v2", rec


def test_info_says_when_persistent_cannot_run(fake_cupy, monkeypatch, capsys):
    from gpu_bptt.cli import main

    monkeypatch.delattr(sys.modules["cupy"].cuda.driver, OCCUPANCY)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "options: gemm=cublas step=auto persist=v2" in out
    assert "persistent: UNAVAILABLE here, algo='auto' always runs the step kernels: " in out
    assert "co-resident is unknown" in out


# -- lengths on the device -------------------------------------------------------------------------
def test_lengths_on_the_device_are_checked_there(fake_cupy, monkeypatch):
    """lengths already a (stand-in) CuPy array: checked on the device, never copied to the host
    (validate.to_host) and back; bad values are still an error naming the entry."""
    from gpu_bptt import validate
    from gpu_bptt.backends.cuda import CudaBackend

    def no_host_copy(a):
        raise AssertionError("lengths were copied to the host")

    bk = CudaBackend()
    args, dh = _problem(T=5, B=3)
    ref = gpu_bptt.elman_forward(**args, lengths=[5, 2, 4], backend="numpy")
    monkeypatch.setattr(validate, "to_host", no_host_copy)
    lengths = np.array([5, 2, 4], dtype=np.int64)  # the stand-in's device arrays are NumPy's
    out = gpu_bptt.elman_forward(**args, lengths=lengths, backend=bk, algo="step")
    assert out.cache.lengths.dtype == np.int32 and out.cache.lengths is not lengths
    assert_close("h", out.h, ref.h)
    with pytest.raises(ValueError, match=r"lengths: every entry must be in 1..T = 1..5; "
                                         r"lengths\[1\] = 6"):
        gpu_bptt.elman_forward(**args, lengths=np.array([5, 6, 0]), backend=bk)
    with pytest.raises(TypeError, match="lengths: expected integers, got dtype float64"):
        gpu_bptt.elman_forward(**args, lengths=np.array([5.0, 2, 4]), backend=bk)
    with pytest.raises(ValueError, match=r"lengths: expected shape \(B,\) = \(3,\), got \(2,\)"):
        gpu_bptt.elman_forward(**args, lengths=np.array([5, 2]), backend=bk)


# -- the own GEMM ----------------------------------------------------------------------------------


def test_own_gemm_grid_fits_cuda_limits_past_4m_rows():
    """p = x @ W with T·B = 4,194,241 rows (65,536 tiles of 64): the rows go on grid.x, whose
    limit is 2^31 - 1 blocks; grid.y and grid.z take at most 65535."""
    from gpu_bptt.backends.cuda.launchers import Launchers

    loader = Recorder()
    k = Launchers(np, loader)
    M = 65535 * 64 + 1
    k.gemm(np.zeros((M, 1), np.float32), np.zeros((1, 3), np.float32))
    k.gemm(np.zeros((M, 3), np.float32), np.zeros((2, 3), np.float32), trans_b=True)  # dx = du W.T
    for _, grid, _ in loader.launches:
        assert grid[0] <= 2**31 - 1 and grid[1] <= 65535 and grid[2] <= 65535, grid
        assert grid[0] * 64 >= M and grid[1] == 1, grid  # every row and column has a block


@pytest.mark.parametrize("M,N", [(130, 20), (20, 130)])
def test_own_gemm_on_a_grid_longer_in_one_direction(M, N):
    """The kernel reads its rows from the axis the launcher puts them on (a square grid of tiles
    would not tell the two apart)."""
    from gpu_bptt.backends.emulator import EmulatorBackend

    require_emulator()
    bk = EmulatorBackend(gemm="own")
    r = rng(12)
    A, B = r.standard_normal((M, 5)), r.standard_normal((5, N))
    assert_close("gemm", bk.kernels.gemm(A, B), A @ B)
