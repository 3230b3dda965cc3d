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
        if self.fn.module.enable_cooperative_groups and limit is not None and grid[0] > limit:
            if warns:
                warnings.warn(f"The grid size will be reduced from {grid[0]} to {limit}, as the "
                              "specified grid size exceeds the limit.")
            grid = (limit,) + tuple(grid[1:])
        LAUNCHES.append(self.fn.name)
        return self.fn(grid, block, args, **kw)


SHRINK = [None, True]
LAUNCHES = []
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
        return 1

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
    LAUNCHES.clear()
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
