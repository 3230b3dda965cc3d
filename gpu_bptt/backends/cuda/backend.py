"""The cuda backend: CuPy arrays, raw CUDA kernels from kernels/ (docs/architecture.md §2).

Inputs may be NumPy or CuPy arrays; results are CuPy arrays on the current device. Every launch
and every CuPy operation goes to CuPy's current stream, but the reversed direction's of a
bidirectional pair that runs on two streams (streams.py, joined to the current one by events). Availability is probed without compiling
anything; CuPy is imported only here, and only when the backend is probed or built.

The class is written against two seams, so that the emulator backend runs this same code on the
CPU: an array module `xp` and a KernelLoader around a `cupy.RawModule`-like class.

Options (constructor arguments, else environment variables):
  gemm: "cublas" (default; xp.matmul) or "own" (kernels/gemm.cu) for the products outside the
        time loop (p = x @ W + b, dW, dV, dx, dh0).                    $GPU_BPTT_GEMM
  persist: "v2" (default) or "v1": the persistent kernels' version.       $GPU_BPTT_PERSIST_KERNEL
  step: "auto" (default), "v1", "v2", "v3" or "v4": the step kernels' version. $GPU_BPTT_STEP_KERNEL
        v4 leaves the recurrent product to cuBLAS (xp.matmul) and fuses the rest in one kernel.
        "auto" follows the rule in rules.py.
db is always the deterministic column-sum kernel (no float atomics).

The GRU (kernels/gru_*.cu) runs the same algorithms and versions: gru_fwd_seq / gru_bwd_seq with
a plan from resolve_algo(..., cell="gru").

algo (elman_forward's keyword): "step" launches one step kernel per t; "persistent" runs the whole
recurrence in one cooperative launch with V on chip (persistent.py, docs/persistent.md); "auto"
takes persistent when B <= 32 and it can run here. resolve_algo gathers the device's facts, then
makes the LaunchPlan (rules.py, a pure function of them) once per problem; the cache keeps it and
the backward runs the same plan.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys

import numpy as np

from ...precision import is_half
from ..base import Backend, check_seq, first_step_rows
from ..notices import warn_once
from ..plan import PairPlan, check_directions
from . import persistent, registry, rules
from .kernel_loader import OPTIONS, KernelLoader
from .launchers import Launchers
from .streams import IN_ORDER, Streams

log = logging.getLogger("gpu_bptt")

GEMM_CHOICES = ("cublas", "own")
STEP_VERSIONS = tuple(registry.STEP)
STEP_CHOICES = ("auto",) + STEP_VERSIONS
GEMM_ENV = "GPU_BPTT_GEMM"
STEP_ENV = "GPU_BPTT_STEP_KERNEL"
PERSIST_ENV = "GPU_BPTT_PERSIST_KERNEL"
PERSIST_CHOICES = (persistent.DEFAULT_VERSION,) + tuple(
    v for v in persistent.VERSIONS if v != persistent.DEFAULT_VERSION)
DEVICE_SEEN_BUT = "CuPy sees a CUDA device but cannot load"  # starts the reasons "auto" warns about


def cuda_unavailable_reason():
    """None when CuPy imports and sees a usable device, else a sentence saying what is missing."""
    try:
        import cupy
    except ImportError as e:
        return (f"CuPy is not installed ({e}); install gpu_bptt[cuda12] or gpu_bptt[cuda13]")
    except Exception as e:  # a broken CuPy install (e.g. missing CUDA libraries)
        return f"CuPy failed to import: {type(e).__name__}: {e}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no device, or a driver too old for this CuPy build
        return _driver_reason(e)
    if n == 0:
        return "CuPy sees no CUDA device"
    # CuPy loads NVRTC and cuBLAS only when first used; without them every kernel build or product
    # would fail later, so say it here (the cuda12/cuda13 extras install both).
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as e:
        return (f"{DEVICE_SEEN_BUT} NVRTC, which builds the kernels ({type(e).__name__}: {e}); "
                "install gpu_bptt[cuda12] or gpu_bptt[cuda13], or a CUDA toolkit")
    try:
        from cupy.cuda import cublas  # noqa: F401  (the import loads the library)
    except Exception as e:
        return (f"{DEVICE_SEEN_BUT} cuBLAS ({type(e).__name__}: {e}); "
                "install gpu_bptt[cuda12] or gpu_bptt[cuda13], or a CUDA toolkit")
    return None


CUDA_ERROR_NO_DEVICE = 100  # cudaErrorNoDevice (the runtime's status, CUDARuntimeError.status)
DRIVER_LIBRARY = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


def _driver_reason(e) -> str:
    """Why the CUDA runtime cannot start, in words that lead somewhere: without any NVIDIA driver
    it reports cudaErrorInsufficientDriver ("driver version is insufficient"), which would send a
    user to upgrade a driver that is not there; that message is kept where a driver is present."""
    if getattr(e, "status", None) == CUDA_ERROR_NO_DEVICE:
        return f"no CUDA device found (the NVIDIA driver sees no GPU: {e})"
    if not driver_loadable():
        return (f"no NVIDIA driver found ({DRIVER_LIBRARY} cannot be loaded): this machine has no "
                "usable NVIDIA GPU")
    return f"CuPy cannot talk to the CUDA driver: {type(e).__name__}: {e}"


def driver_loadable() -> bool:
    """Whether the NVIDIA driver's library loads (it is installed with the driver, not CUDA)."""
    try:
        ctypes.CDLL(DRIVER_LIBRARY)
    except OSError:
        return False
    return True


def include_options(cuda_path, nvrtc_major) -> tuple:
    """-I options that CuPy's NVRTC needs for <cooperative_groups.h> (persistent kernels) and does
    not add itself. CuPy adds `cuda_path`/include (cupy.cuda.get_cuda_path()), but finds no CUDA
    path with CUDA 12's pip wheels, which give each library a folder of its own. Then the
    nvidia-cuda-runtime wheel's include folder of the same major version as CuPy's NVRTC is added;
    CuPy brings the CCCL headers that <cooperative_groups.h> includes."""
    from ... import nvrtc

    if cuda_path and os.path.isfile(os.path.join(cuda_path, "include", "cooperative_groups.h")):
        return ()
    dirs = nvrtc.cuda_include_dirs(major=nvrtc_major)
    return (f"-I{dirs[0]}",) if dirs else ()


def device_report() -> dict:
    """The current device, its compute capability and multiprocessors, and the CuPy, CUDA runtime,
    driver and NVRTC versions; {"error": reason} when the cuda backend cannot run here."""
    reason = cuda_unavailable_reason()
    if reason:
        return {"error": reason}
    import cupy

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"]
    report = {
        "device": name.decode() if isinstance(name, bytes) else str(name),
        "device_id": dev.id,
        "compute_capability": f"{dev.compute_capability[:-1]}.{dev.compute_capability[-1]}",
        "multiprocessors": int(props["multiProcessorCount"]),
        "cupy": cupy.__version__,
        "cuda_runtime": _version(cupy.cuda.runtime.runtimeGetVersion()),
        "cuda_driver": _version(cupy.cuda.runtime.driverGetVersion()),
    }
    try:
        report["nvrtc"] = "%d.%d" % cupy.cuda.nvrtc.getVersion()
    except Exception:  # not every CuPy build exposes it
        pass
    return report


def _version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def compile_report(backend=None) -> dict:
    """{kernel file: None if every kernel in it compiles, else the error} on the cuda backend (or
    the given CudaBackend/EmulatorBackend instance)."""
    return (backend or CudaBackend()).loader.compile_all()


def _option(value, env, choices, name):
    value = value if value is not None else (os.environ.get(env) or choices[0])
    value = str(value).strip().lower()
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices} (or ${env}), got {value!r}")
    return value


class CudaBackend(Backend):
    name = "cuda"
    algos = ("auto", "step", "persistent")
    #: float32/float64 everywhere; the tensor-core modes where a cell has their kernels
    #: (registry.TC_CELLS; resolve_algo refuses the other cells, naming them)
    dtypes = ("float32", "float64", "bfloat16", "float16")
    tf32 = True
    streams = IN_ORDER  # the side stream of a bidirectional layer (CuPy's: __init__)

    def __init__(self, gemm=None, step=None, persist=None):
        import cupy

        extra = include_options(cupy.cuda.get_cuda_path(), cupy.cuda.nvrtc.getVersion()[0])
        loader = KernelLoader(cupy.RawModule, device=lambda: cupy.cuda.Device().id, kind="cupy",
                              options=OPTIONS + extra)
        self._setup(cupy, loader, gemm, step, persist)
        self.streams = Streams(cupy.cuda, loader.device)

    def _setup(self, xp, loader, gemm, step, persist):
        super().__init__(xp)
        self.loader = loader
        self.kernels = Launchers(xp, loader)
        self.gemm = _option(gemm, GEMM_ENV, GEMM_CHOICES, "gemm")
        self.step = _option(step, STEP_ENV, STEP_CHOICES, "step")
        self.persist = _option(persist, PERSIST_ENV, PERSIST_CHOICES, "persist")
        self._limits = {}  # device id -> persistent.DeviceLimits
        self._plans = {}   # (device, request, B, H, dtype, options) -> LaunchPlan
        self._pairs = {}   # (device, forward plan, reverse plan) -> PairPlan
        self._gru_carries = {}  # id(dh0) -> (dh0, dgh, zd): _gru_carry

    # -- the current device (CuPy's, at each call: one backend serves every device) ----------------
    @property
    def multiprocessors(self) -> int:
        return self.persistent_limits().multiprocessors

    def persistent_limits(self) -> persistent.DeviceLimits:
        """The current device's multiprocessors, per-block shared memory (opt-in) and
        cooperative-launch support (read once per device)."""
        import cupy

        dev = cupy.cuda.Device().id
        if dev not in self._limits:
            props = cupy.cuda.runtime.getDeviceProperties(dev)
            name = props["name"]
            self._limits[dev] = persistent.DeviceLimits(
                int(props["multiProcessorCount"]),
                int(props.get("sharedMemPerBlockOptin") or props["sharedMemPerBlock"]),
                bool(props.get("cooperativeLaunch", 1)),
                name=name.decode() if isinstance(name, bytes) else str(name))
        return self._limits[dev]

    def persistent_blocks_per_sm(self, fn, smem):
        """Blocks of `fn` (persistent.THREADS threads, `smem` bytes dynamic shared memory) that fit
        on one multiprocessor at once, from the driver's occupancy calculator; None if unknown."""
        import cupy

        if smem > persistent.DEFAULT_SMEM:
            fn.max_dynamic_shared_size_bytes = smem
        try:
            return int(cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
                fn.kernel.ptr, persistent.THREADS, smem))
        except AttributeError:  # a CuPy without these bindings: persistent.check refuses
            return None

    #: plans kept per backend; past this many distinct problems the oldest are forgotten
    MAX_PLANS = 256

    def resolve_algo(self, algo, T, B, H, dtype, reverse=False, cell="elman", P=0, tf32=False):
        """The LaunchPlan for a request at (B, H, dtype) on the current device, for a cell
        (registry.CELLS; P: an LSTM's proj_size), made once per problem and kept: the forward
        and its backward (also the framework paths, which resolve again from the same request)
        run the same plan. "auto" falling back to the step kernels warns with the reason, once
        per cause (attributed to the cell's forward's caller)."""
        self.check_algo(algo)
        self.check_mode(dtype, tf32, cell)
        tensor_cores = registry.tc_ctype(dtype, tf32) is not None
        if P and not registry.cell(cell).proj_param:  # ValueError naming `cell` if unknown
            raise ValueError(f"P: a projection (proj_size) is an LSTM's; got P={P} for the "
                             f"{cell} cell")
        reverse = bool(reverse)
        key = (self.loader.device(), algo, B, H, np.dtype(dtype).name, reverse, self.step,
               self.persist, cell, P, bool(tf32))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._make_tc_plan(algo, B, H, dtype, tf32, reverse, cell, P) \
                if tensor_cores else self._make_plan(algo, B, H, dtype, reverse, cell, P)
            if len(self._plans) >= self.MAX_PLANS:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
            log.debug("gpu_bptt: %s (B=%d, H=%d, %s): %s", plan.label, B, H, plan.dtype,
                      plan.reason)
        if plan.fallback:
            warn_once(f"algo='auto' runs the step kernels: {plan.fallback}", stacklevel=3)
        return plan

    def cell_dtypes(self, cell):
        registry.cell(cell)  # ValueError naming `cell` if unknown
        if cell in registry.TC_CELLS:
            return self.dtypes
        return tuple(d for d in self.dtypes if registry.tc_ctype(d) is None)

    def check_mode(self, dtype, tf32=False, cell=None):
        super().check_mode(dtype, tf32)
        if cell is not None and registry.tc_ctype(dtype, tf32) is not None:
            self._check_tc_mode(dtype, tf32, cell)

    def _check_tc_mode(self, dtype, tf32, cell):
        """Refuse a tensor-core mode (rules.mode_name) the cell has no kernels for, or the own
        GEMM (kernels/gemm.cu computes in float32/float64): TypeError naming dtype for a 16-bit
        one, ValueError naming allow_tf32 or gemm otherwise."""
        mode = rules.mode_name(dtype, tf32)
        if cell not in registry.TC_CELLS:
            registry.cell(cell)  # ValueError naming `cell` if unknown
            cells = ", ".join(registry.TC_CELLS)
            why = (f"the {self.name} backend has no {cell} kernels for {mode} yet (its "
                   f"tensor-core kernels serve {cells}); the numpy backend runs every cell in "
                   "every mode")
            if tf32:
                raise ValueError(f"allow_tf32: {why}")
            raise TypeError(f"dtype: {why}")
        if self.gemm == "own":
            raise ValueError(f"gemm: the own GEMM kernel (kernels/gemm.cu) runs float32 and "
                             f"float64 products; {mode} takes gemm='cublas'")

    def _make_plan(self, algo, B, H, dtype, reverse=False, cell="elman", P=0):
        """Gather the device's facts (only those the choice depends on), then plan."""
        limits = self.persistent_limits()
        kernels = self._persistent_kernels(limits, B, H, dtype, cell, P) \
            if rules.considers_persistent(algo, B) else ()
        return rules.launch_plan(algo, B, H, dtype, limits=limits, kernels=kernels,
                                 step=self.step, persist=self.persist, reverse=reverse,
                                 cell=cell, P=P)

    def _make_tc_plan(self, algo, B, H, dtype, tf32, reverse, cell, P):
        """_make_plan for a tensor-core mode: the facts of the tensor-core persistent kernels
        where the choice depends on them (rules.tc_plan)."""
        limits, kernels = None, ()
        if cell in persistent.TC_CELLS and rules.considers_persistent(algo, B):
            limits = self.persistent_limits()
            kernels = self._tc_persistent_kernels(limits, B, H, dtype, tf32)
        return rules.tc_plan(algo, B, H, dtype, step=self.step, tf32=tf32, reverse=reverse,
                             cell=cell, P=P, limits=limits, kernels=kernels)

    def _persistent_kernels(self, limits, B, H, dtype, cell="elman", P=0) -> tuple:
        """persistent.KernelFacts of the cell's persistent kernels, in launch order, for (B, H):
        whether each builds here and how many of its blocks fit on a multiprocessor at the
        plan's shared memory. () where V's slice does not fit (nothing to ask); stops at a build
        error."""
        spec = registry.cell(cell)
        try:
            smem = persistent.plan(limits, B, H, dtype, self.persist, gates=spec.gates,
                                   proj=P).smem
        except ValueError:
            return ()
        return self._kernel_facts(smem, [(f, f.expression(self.persist, dtype,
                                                           *spec.persist_params(P)))
                                         for f in (spec.persist_fwd, spec.persist_bwd)])

    def _tc_persistent_kernels(self, limits, B, H, dtype, tf32) -> tuple:
        """_persistent_kernels for the tensor-core persistent kernels (persistent.TC_FILES) of
        the mode's element type, at tc_plan's shared memory."""
        try:
            smem = persistent.tc_plan(limits, B, H, np.dtype(dtype).name).smem
        except ValueError:
            return ()
        ctype = registry.tc_ctype(dtype, tf32)
        return self._kernel_facts(smem, [(f, f.expression(persistent.TC_VERSION, ctype))
                                         for f in (registry.PERSIST_TC_FWD,
                                                   registry.PERSIST_TC_BWD)])

    def _kernel_facts(self, smem, instances) -> tuple:
        """persistent.KernelFacts of each (family, name expression) of `instances`, in launch
        order, at `smem` bytes of shared memory; stops at a build error."""
        facts = []
        for family, expression in instances:
            try:
                fn = self.loader.function(family.file, expression)
            except Exception as e:  # the compiler's error, whatever its class (CuPy's, NVRTC's)
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                facts.append(persistent.KernelFacts(family.file,
                                                    compile_error=f"{type(e).__name__}: {first}"))
                break
            facts.append(persistent.KernelFacts(
                family.file, blocks_per_sm=self.persistent_blocks_per_sm(fn, smem)))
        return tuple(facts)

    def step_version(self, B, H) -> str:
        """The step kernels' version for a (B, H) problem on the current device (rules.py)."""
        return rules.step_version(self.step, B, H, self.multiprocessors)[0]

    def carry_refusal(self, plan):
        """The float step and persistent kernels take a carry, in either direction, for every
        cell: one more row of du (or the GRU's dgh) that each row's first step reads as the next
        step's (_carried), the LSTM's dc through dc_last and the GRU's z path through zd
        (_gru_carry). The tensor-core kernels (tc1, persistent) do not yet."""
        if plan.tf32 or registry.tc_ctype(plan.dtype) is not None:
            return "the tensor-core kernels take no carry across segments"
        return None

    def _carried(self, plan, carry, *seqs):
        """The arrays of a backward that takes `carry` (B, N), the du of the step after each
        row's first: du (T+1, B, N) with carry as its row T, and each of `seqs` (T, B, .) or None
        with one more row (never read: step T is not launched). Forward, step T-1 reads du[T] as
        any step reads the next one's; flipped, row b's first step s = lengths[b]-1 reads the
        last row of du (StepState's `after`, kernels/step_order.cuh), and v4 starts from the
        carry as its state (a padded step leaves it)."""
        xp = self.xp
        T, B = next(a for a in seqs if a is not None).shape[:2]
        du = xp.empty((T + 1, B, carry.shape[1]), dtype=carry.dtype)
        du[T] = carry
        more = [None if a is None else xp.concatenate([a, xp.zeros_like(a[:1])]) for a in seqs]
        return du, more

    def _lengths(self, lengths, T, B):
        import numpy as np

        if lengths is None:
            return self.xp.full(B, T, dtype=np.int32)
        return self.xp.ascontiguousarray(lengths, dtype=np.int32)

    # -- products outside the time loop ------------------------------------------------------------
    def product(self, a, b, tf32=False):
        """Backend.product; on CuPy, a tensor-core mode's product (16-bit operands upcast, or
        TF32-rounded float32 ones: TF32 values either way, exactly) runs in cuBLAS's TF32 compute
        type, which is exact on them: products exact, sums in float32 (_tf32_compute). The
        emulator's is NumPy's BLAS on the same operands, the numpy reference's own product."""
        if self.xp is np or not (tf32 or is_half(a.dtype)):
            return super().product(a, b, tf32)
        with _tf32_compute(self.xp):
            return super().product(a, b, tf32)

    def input_projection(self, x, W, b, tf32=False):
        if self.gemm == "cublas":
            return super().input_projection(x, W, b, tf32)
        T, B, I = x.shape
        p = self.kernels.gemm(x.reshape(T * B, I), W, bias=b)
        return p.reshape(T, B, W.shape[1])

    def gradients(self, x, W, V, h0, h, du, need_db: bool, need_dx: bool = True, *,
                  lengths=None, reverse=False, tf32=False):
        T, B, I = x.shape
        N, Hs = du.shape[2], h.shape[2]  # G·H gate columns; the fed-back state's size
        du2 = du.reshape(T * B, N)
        if is_half(du.dtype):  # summed in float32, rounded once (base.column_sum)
            return super().gradients(x, W, V, h0, h, du, need_db, need_dx, lengths=lengths,
                                     reverse=reverse, tf32=tf32)
        db = self.kernels.column_sum(du2) if need_db else None
        if self.gemm == "cublas":
            dx, dW, dV, _, dh0 = super().gradients(x, W, V, h0, h, du, False, need_dx,
                                                   lengths=lengths, reverse=reverse, tf32=tf32)
            return dx, dW, dV, db, dh0
        k = self.kernels
        dW = k.gemm(x.reshape(T * B, I), du2, trans_a=True)
        first = self.xp.ascontiguousarray(first_step_rows(self.xp, du, lengths, reverse))
        dV = k.gemm(h0, first, trans_a=True)
        if T > 1:  # the state before step t is h[t-1] (h[t+1] reversed) but at the first step:
            # accumulate instead of building that array (h and du are 0 at padded steps)
            prev, cur = (h[1:], du[:-1]) if reverse else (h[:-1], du[1:])
            k.gemm(prev.reshape((T - 1) * B, Hs), cur.reshape((T - 1) * B, N), trans_a=True,
                   out=dV, accumulate=True)
        dx = k.gemm(du2, W, trans_b=True).reshape(T, B, I) if need_dx else None
        dh0 = k.gemm(first, V, trans_b=True)
        return dx, dW, dV, db, dh0

    # -- the recurrence: as the plan from resolve_algo says ------------------------------------------
    def elman_fwd_seq(self, p, V, h0, activation, lengths, plan):
        T, B, H = p.shape
        lens = self._lengths(lengths, T, B)
        if plan.algo == "persistent":
            run = self.kernels.persistent_tc_fwd if _on_tensor_cores(plan) else \
                self.kernels.persistent_fwd
            return run(p, h0, V, lens, activation, plan)
        step = self._fwd_stepper(p, V, h0, activation, lens, plan)
        for s in range(T):
            step(s)
        return p

    def _fwd_stepper(self, p, V, h0, activation, lens, plan):
        """The forward's step launcher (s -> step s), writing h over p."""
        plan.check_problem(p.shape[1], p.shape[2], p.dtype.name)
        if plan.version in registry.TC_STEP:
            return self.kernels.tc_fwd_stepper(p, h0, V, lens, activation, plan.version,
                                               flip=plan.reverse)
        return self.kernels.fwd_stepper(p, h0, V, lens, activation, plan.version,
                                        flip=plan.reverse)

    def elman_bwd_seq(self, dh, dh_last, h, V, activation, lengths, plan, du_next=None):
        T, B, H = h.shape
        lens = self._lengths(lengths, T, B)
        carry = du_next is not None
        if carry:
            du, (h, dh) = self._carried(plan, du_next, h, dh)
        else:
            du = self.xp.empty_like(h)  # every entry is written
        if plan.algo == "persistent" and _on_tensor_cores(plan):
            self.kernels.persistent_tc_bwd(du, dh, dh_last, h, V, lens, activation, plan)
        elif plan.algo == "persistent":
            self.kernels.persistent_bwd(du, dh, dh_last, h, V, lens, activation, plan,
                                        carry=carry)
        else:
            step = self._bwd_stepper(du, dh, dh_last, h, V, activation, lens, plan,
                                     state=du[T].copy() if carry and plan.reverse else None)
            for s in range(T - 1, -1, -1):
                step(s)
        return du[:T] if carry else du

    def _bwd_stepper(self, du, dh, dh_last, h, V, activation, lens, plan, state=None):
        """The backward's step launcher (s -> step s, called from T-1 down), writing du; state:
        v4's initial one, flipped (launchers._state)."""
        plan.check_problem(h.shape[1], h.shape[2], h.dtype.name)
        VT = self.xp.ascontiguousarray(V.T)  # once per sequence, so every step reads rows
        if plan.version in registry.TC_STEP:
            return self.kernels.tc_bwd_stepper(du, dh, dh_last, h, VT, lens, activation,
                                               plan.version, flip=plan.reverse)
        return self.kernels.bwd_stepper(du, dh, dh_last, h, VT, lens, activation, plan.version,
                                        flip=plan.reverse, state=state)

    # -- both directions of a bidirectional layer side by side (base.py has the contract) ----------
    def resolve_pair(self, forward, reverse):
        """Persistent: one cooperative launch of the pair kernels, grid (g, 2, 1), where its 2g
        blocks can be co-resident, else each direction's launch on a stream of its own (the
        reason says why). Step: each direction's step launches on a stream of its own. Made
        once per pair of plans and device, as the plans are."""
        check_directions(forward, reverse)
        key = (self.loader.device(), forward, reverse)
        if key not in self._pairs:
            if len(self._pairs) >= self.MAX_PLANS:
                self._pairs.pop(next(iter(self._pairs)))
            self._pairs[key] = self._make_pair(forward, reverse)
        return self._pairs[key]

    def _make_pair(self, forward, reverse):
        if forward.algo != "persistent":
            return PairPlan(forward, reverse, "two streams", "the step kernels launch one step "
                            "at a time: each direction's go to a CUDA stream of its own")
        if _on_tensor_cores(forward):
            return PairPlan(forward, reverse, "two streams", "the tensor-core persistent kernels "
                            "have no pair kernel: each direction's cooperative launch goes to a "
                            "CUDA stream of its own")
        facts = []
        for family in (registry.PERSIST_FWD, registry.PERSIST_BWD):
            fn = self.loader.function(family.file, family.expression(
                forward.version, np.dtype(forward.dtype), pair=True))
            facts.append(persistent.KernelFacts(
                family.file, blocks_per_sm=self.persistent_blocks_per_sm(fn, forward.smem)))
        g = forward.grid[0]
        unfit = persistent.pair_unfit(self.persistent_limits(), g, forward.version, facts)
        if unfit:
            return PairPlan(forward, reverse, "two streams", f"{unfit}: each direction's "
                            "cooperative launch goes to a CUDA stream of its own")
        return PairPlan(forward, reverse, "one launch", f"the pair kernels' 2 * {g} blocks are "
                        "co-resident: both directions in one cooperative launch",
                        grid=(g, 2, 1))

    def elman_fwd_pair(self, fwd, rev, activation, lengths, pair):
        (pf, Vf, h0f), (pr, Vr, h0r) = fwd, rev
        T, B, H = pf.shape
        lens = self._lengths(lengths, T, B)
        k = self.kernels
        if pair.how == "one launch":
            return k.persistent_fwd_pair((pf, h0f, Vf), (pr, h0r, Vr), lens, activation, pair)
        if pair.forward.algo == "persistent":
            queue = k.queue_persistent_tc_fwd if _on_tensor_cores(pair.forward) else \
                k.queue_persistent_fwd
            with self.streams.fork() as side:
                checks = [queue(pf, h0f, Vf, lens, activation, pair.forward)]
                with side:
                    checks.append(queue(pr, h0r, Vr, lens, activation, pair.reverse))
            for check in checks:  # the status reads wait: only once both launches are queued
                check()
            return pf, pr
        steps = [self._fwd_stepper(p, V, h0, activation, lens, plan)
                 for (p, V, h0), plan in zip((fwd, rev), (pair.forward, pair.reverse))]
        with self.streams.fork() as side:
            for s in range(T):
                steps[0](s)
                with side:
                    steps[1](s)
        return pf, pr

    def elman_bwd_pair(self, fwd, rev, activation, lengths, pair):
        T, B, H = fwd[2].shape
        lens = self._lengths(lengths, T, B)
        k = self.kernels
        dus = (self.xp.empty_like(fwd[2]), self.xp.empty_like(rev[2]))  # every entry written
        if pair.how == "one launch":
            return k.persistent_bwd_pair((dus[0],) + tuple(fwd), (dus[1],) + tuple(rev), lens,
                                         activation, pair)
        plans = (pair.forward, pair.reverse)
        if pair.forward.algo == "persistent":
            queue = k.queue_persistent_tc_bwd if _on_tensor_cores(plans[0]) else \
                k.queue_persistent_bwd
            with self.streams.fork() as side:
                checks = [queue(dus[0], *fwd, lens, activation, plans[0])]
                with side:
                    checks.append(queue(dus[1], *rev, lens, activation, plans[1]))
            for check in checks:  # the status reads wait: only once both launches are queued
                check()
            return dus
        steps = [self._bwd_stepper(du, *d, activation, lens, plan)
                 for du, d, plan in zip(dus, (fwd, rev), plans)]
        with self.streams.fork() as side:
            for s in range(T - 1, -1, -1):
                steps[0](s)
                with side:
                    steps[1](s)
        return dus

    # -- the LSTM (docs/architecture.md §1): as the plan from resolve_algo(cell="lstm") says ------
    def _lstm_plan(self, plan, B, H, dtype, P):
        plan.check_problem(B, H, np.dtype(dtype).name, cell="lstm", P=P)

    def lstm_fwd_seq(self, p, V, h0, c0, lengths, plan, R=None):
        """The LSTM's forward recurrence: p (T, B, 4H) = x @ W + b, owned by the callee (returned
        as `gates`); V (Hs, 4H); h0 (B, Hs), c0 (B, H) or None (zeros); R (H, P) or None.
        Returns h (T, B, Hs), c (T, B, H), gates (T, B, 4H), the activated [i|f|g|o]."""
        return _drain(self._lstm_fwd(p, V, h0, c0, lengths, plan, R))

    def _lstm_fwd(self, p, V, h0, c0, lengths, plan, R=None):
        xp = self.xp
        T, B, G4 = p.shape
        H = G4 // registry.LSTM_GATES
        Hs = V.shape[0]
        self._lstm_plan(plan, B, H, p.dtype, 0 if R is None else R.shape[1])
        lens = self._lengths(lengths, T, B)
        h0 = xp.zeros((B, Hs), dtype=p.dtype) if h0 is None else h0
        c0 = xp.zeros((B, H), dtype=p.dtype) if c0 is None else c0
        h = xp.empty((T, B, Hs), dtype=p.dtype)
        c = xp.empty((T, B, H), dtype=p.dtype)
        if plan.algo == "persistent":
            yield
            check = self.kernels.lstm_persistent_fwd(p, c, h, h0, c0, V, lens, plan, R=R,
                                                     queue=True)
            yield
            check()
            return h, c, p
        step = self.kernels.lstm_fwd_stepper(p, c, h, h0, c0, V, lens, plan.version,
                                             flip=plan.reverse, R=R)
        yield
        for s in range(T):
            step(s)
            yield
        return h, c, p

    def lstm_bwd_seq(self, dh, dh_last, dc_last, h, c, gates, c0, V, lengths, plan, R=None,
                     du_next=None, dc_next=None):
        """The LSTM's reverse recurrence: dh (T, B, Hs), dh_last (B, Hs), dc_last (B, H) or
        None; h, c, gates the forward's; c0 (B, H) or None (zeros); V (Hs, 4H); R (H, P) or
        None. Returns du (T, B, 4H), dc0 (B, H) and, with R, dhs (T, B, P) (else None).
        du_next, dc_next: the carry of a later segment (base.Backend.lstm_bwd_seq); dc_next
        enters through dc_last, where a step starting an example's backward takes it (an
        example either ends at T-1 and takes dc_last, or goes on and takes the carry: the
        other is 0 there)."""
        return _drain(self._lstm_bwd(dh, dh_last, dc_last, h, c, gates, c0, V, lengths, plan, R,
                                     du_next, dc_next))

    def _lstm_bwd(self, dh, dh_last, dc_last, h, c, gates, c0, V, lengths, plan, R=None,
                  du_next=None, dc_next=None):
        xp = self.xp
        T, B, H = c.shape
        dt = c.dtype
        self._lstm_plan(plan, B, H, dt, 0 if R is None else R.shape[1])
        lens = self._lengths(lengths, T, B)
        c0 = xp.zeros((B, H), dtype=dt) if c0 is None else c0
        # zeros: an example with no step here (length 0 in a segment) leaves its row alone
        dc = xp.zeros((B, H), dtype=dt)
        dhs = None if R is None else xp.empty((T, B, R.shape[1]), dtype=dt)
        if du_next is not None:
            du, (dh, gates, c, dhs) = self._carried(plan, du_next, dh, gates, c, dhs)
            if dc_next is not None:
                dc_last = dc_next if dc_last is None else dc_next + dc_last
        else:
            du = xp.empty((T, B, 4 * H), dtype=dt)  # every entry is written
        if plan.algo == "persistent":
            yield
            check = self.kernels.lstm_persistent_bwd(du, dc, dc_last, dh, dh_last, gates, c, c0,
                                                     V, lens, plan, R=R, dhs=dhs, queue=True,
                                                     carry=du_next is not None)
            yield
            check()
        else:
            VT = xp.ascontiguousarray(V.T)  # once per sequence, so every step reads rows
            state = du[T].copy() if du_next is not None and plan.reverse else None
            step = self.kernels.lstm_bwd_stepper(du, dc, dc_last, dhs, dh, dh_last, gates, c, c0,
                                                 VT, lens, plan.version, flip=plan.reverse, R=R,
                                                 state=state)
            yield
            for s in range(T - 1, -1, -1):
                step(s)
                yield
        if du_next is not None:
            return du[:T], dc, None if dhs is None else dhs[:T]
        return du, dc, dhs

    # -- the GRU (kernels/gru_*.cu): as the plan from resolve_algo(..., cell="gru") says ----------
    def gru_fwd_seq(self, p, V, b_h, h0, lengths, plan):
        """The GRU forward recurrence (the contract of base.Backend.gru_fwd_seq): p (T, B, 3H) =
        x @ W + b_x, read only; V (H, 3H); b_h (3H,) or None; h0 (B, H). Returns h (T, B, H) and
        gates (T, B, 4H) = [r|z|n|hn], both new."""
        return _drain(self._gru_fwd(p, V, b_h, h0, lengths, plan))

    def _gru_fwd(self, p, V, b_h, h0, lengths, plan):
        T, B, G3 = p.shape
        H = G3 // 3
        lens = self._lengths(lengths, T, B)
        _check_gru_plan(plan)
        h = self.xp.empty((T, B, H), dtype=p.dtype)
        gates = self.xp.empty((T, B, 4 * H), dtype=p.dtype)
        if plan.algo == "persistent":
            yield
            check = self.kernels.gru_persistent_fwd(h, gates, p, h0, V, b_h, lens, plan,
                                                    queue=True)
            yield
            check()
            return h, gates
        plan.check_problem(B, H, p.dtype.name, cell="gru")
        if plan.version in registry.TC_STEP:
            step = self.kernels.tc_gru_fwd_stepper(h, gates, p, h0, V, b_h, lens, plan.version,
                                                   flip=plan.reverse)
        else:
            step = self.kernels.gru_fwd_stepper(h, gates, p, h0, V, b_h, lens, plan.version,
                                                flip=plan.reverse)
        yield
        for s in range(T):
            step(s)
            yield
        return h, gates

    def gru_bwd_seq(self, dh, dh_last, h, h0, gates, V, lengths, plan, dh_next=None):
        """The GRU backward recurrence (the contract of base.Backend.gru_bwd_seq): dh (T, B, H) or
        None; dh_last (B, H) or None; h, h0, gates the forward's; V (H, 3H). Returns dgx
        (T, B, 3H), the gradient on p, and dh0 (B, H), both new. dh_next: a later segment's
        carry (_gru_carry)."""
        return _drain(self._gru_bwd(dh, dh_last, h, h0, gates, V, lengths, plan, dh_next))

    #: the GRU carries (_gru_carry) kept for the next segment's call: enough for a pair's two
    MAX_GRU_CARRIES = 4

    def _gru_carry(self, plan, dh_next, lens, T, B, H, dtype):
        """The two parts of a GRU carry as the kernels take them: dgh (B, 3H) of the step after
        each row's first, whose product by V.T the first step computes itself, and zd (B, H), the
        z path dhs·z, zeros but where that first step takes the carry (forward: rows of length
        T; reversed: rows of any length). dh0 of this backend's own call is their sum; such a
        dh_next is split back as it was made, so that a segmented run adds the same terms in the
        same order as a whole one (bit for bit). Any other dh_next enters whole through zd."""
        held = self._gru_carries.pop(id(dh_next), None)
        xp = self.xp
        if held is not None and held[0] is dh_next:
            dgh, zd = held[1], held[2]
        else:
            dgh, zd = xp.zeros((B, 3 * H), dtype=dtype), dh_next
        takes = lens > 0 if plan.reverse else lens == T
        return dgh, xp.where(takes[:, None], zd, xp.zeros_like(zd)).astype(dtype)

    def _gru_bwd(self, dh, dh_last, h, h0, gates, V, lengths, plan, dh_next=None):
        xp = self.xp
        T, B, H = h.shape
        lens = self._lengths(lengths, T, B)
        _check_gru_plan(plan)
        carry = dh_next is not None
        if carry:
            dgh, zd = self._gru_carry(plan, dh_next, lens, T, B, H, h.dtype)
            dg, (h, gates, dh) = self._carried(plan, dgh, h, gates, dh)
            gn = xp.empty((T + 1, B, H), dtype=h.dtype)
        else:
            dg = xp.empty((T, B, 3 * H), dtype=h.dtype)  # dgh in the loop: every entry written
            gn = xp.empty((T, B, H), dtype=h.dtype)
            zd = xp.zeros((B, H), dtype=h.dtype)  # the carry dhs·z: none before the first step
        if plan.algo == "persistent":
            yield
            check = self.kernels.gru_persistent_bwd(dg, gn, zd, dh, dh_last, h, h0, gates, V,
                                                    lens, plan, queue=True, carry=carry)
            yield
            check()
        else:
            plan.check_problem(B, H, h.dtype.name, cell="gru")
            VT = xp.ascontiguousarray(V.T)  # once per sequence, so every step reads rows
            state = dg[T].copy() if carry and plan.reverse else None
            if plan.version in registry.TC_STEP:
                step = self.kernels.tc_gru_bwd_stepper(dg, gn, zd, dh, dh_last, h, h0, gates, VT,
                                                       lens, plan.version, flip=plan.reverse)
            else:
                step = self.kernels.gru_bwd_stepper(dg, gn, zd, dh, dh_last, h, h0, gates, VT,
                                                    lens, plan.version, flip=plan.reverse,
                                                    state=state)
            yield
            for s in range(T - 1, -1, -1):
                step(s)
                yield
        dg, gn = (dg[:T], gn[:T]) if carry else (dg, gn)
        # the gradient on h0: the product of the first step's dgh and the z path left in zd
        first = xp.array(first_step_rows(xp, dg, lens, plan.reverse))  # a copy: dg changes
        if is_half(h.dtype) or plan.tf32:  # in float32, rounded once (the reference's carry)
            dh0 = self.product(first, V.T, plan.tf32)
            dh0 += zd.astype(dh0.dtype, copy=False)
            dh0 = dh0.astype(h.dtype, copy=False)
        else:
            if self.gemm == "own":
                dh0 = self.kernels.gemm(first, V, trans_b=True)
            else:
                dh0 = xp.matmul(first, V.T)
            dh0 += zd
            if len(self._gru_carries) >= self.MAX_GRU_CARRIES:
                self._gru_carries.pop(next(iter(self._gru_carries)))
            self._gru_carries[id(dh0)] = (dh0, first, zd)
        dg[:, :, 2 * H:] = gn  # dgh's n block is gn·r; the gradient on p's is gn
        return dg, dh0

    # -- both directions of a bidirectional LSTM or GRU level (base.py has the contract) ----------
    def seq_pair(self, name, fwd, rev):
        """Each direction's launches on a CUDA stream of its own (the reversed one's on the side
        stream of streams.fork), interleaved launch by launch; a persistent launch's status word
        is read only once both launches are queued. Each method's generator (_lstm_fwd, ...)
        yields once set up (its arrays allocated before the fork), then after every launch."""
        generators = {"lstm_fwd_seq": self._lstm_fwd, "lstm_bwd_seq": self._lstm_bwd,
                      "gru_fwd_seq": self._gru_fwd, "gru_bwd_seq": self._gru_bwd}
        run = generators[check_seq(self, name)]
        runs = [run(*fwd), run(*rev)]
        for r in runs:
            next(r)  # set up
        results = [None, None]
        with self.streams.fork() as side:
            while runs[0] or runs[1]:
                for i, stream in enumerate((contextlib.nullcontext(), side)):
                    if runs[i]:
                        with stream:
                            try:
                                next(runs[i])
                            except StopIteration as done:
                                results[i], runs[i] = done.value, None
        return tuple(results)


@contextlib.contextmanager
def _tf32_compute(cupy):
    """cuBLAS's float32 products in the TF32 compute type (CUBLAS_COMPUTE_32F_FAST_TF32) while
    inside: CuPy's compute type per dtype (cupy._core.set_compute_type, COMPUTE_TYPE_TF32 of
    cupy._core._routines_linalg), restored after. It is process-wide: a product another thread
    runs meanwhile takes it too."""
    from cupy._core import _routines_linalg as linalg

    core = cupy._core
    before = core.get_compute_type(np.float32)
    core.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32)
    try:
        yield
    finally:
        core.set_compute_type(np.float32, before)


def _on_tensor_cores(plan) -> bool:
    """Whether `plan` runs a tensor-core mode's kernels (a 16-bit dtype, or float32 with TF32)."""
    return registry.tc_ctype(plan.dtype, plan.tf32) is not None


def _drain(run):
    """The result of one of the sequence generators (_lstm_fwd, ...), run alone."""
    while True:
        try:
            next(run)
        except StopIteration as done:
            return done.value


def _check_gru_plan(plan):
    if plan.cell != "gru":
        raise ValueError(f"plan: made for the {plan.cell} cell, not the gru")
