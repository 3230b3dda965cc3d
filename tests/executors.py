"""What the behaviour tests run on, and the problems they run (docs/architecture.md, testing).

An executor is one way to run gpu_bptt's public functions:
  "numpy"              the reference backend;
  "cpu"                the cpu backend (the time loops compiled by Numba: the cpu extra);
  "emulator-<order>"   the cuda backend's own code with the kernels run on the CPU, the threads of
                       a block scheduled in <order> (one of ORDERS); "emulator-<order>+sanitize"
                       runs every launch in the bounds-checking build;
  "cuda"               a CUDA device (skipped with cause GPU where there is none).
A test that takes the `executor` fixture (tests/conftest.py) runs once per executor, every one of
ALL unless @pytest.mark.executors(*names) narrows it; one that takes `backend` gets that executor's
backend, once per combination of @pytest.mark.backend_options(name=values) (see generate). So a
new cell's tests are written once.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt.backends import get_backend
from gpu_bptt.emulator.module import ORDERS as _ORDER_CODES
from gpu_bptt.validate import to_host
from tests import skips

#: the emulator's thread orders (the emulator's own table)
ORDERS = tuple(_ORDER_CODES)
#: the order the kernel tests run in the bounds-checking build: every kernel then also runs under
#: the sanitizer without a fifth run (that build is slower to compile and to run)
SANITIZED_ORDER = "reverse"

NUMPY, CPU, CUDA = "numpy", "cpu", "cuda"
EMULATORS = tuple(f"emulator-{o}" for o in ORDERS)
#: every thread order, one of them sanitized: the kernel tests' runs
KERNEL_RUNS = tuple(f"emulator-{o}+sanitize" if o == SANITIZED_ORDER else f"emulator-{o}"
                    for o in ORDERS)
#: the default set of the `executor` fixture
ALL = (NUMPY, *EMULATORS, CUDA)

GRADS = ("dx", "dW", "dV", "db", "dh0")
OUTPUTS = ("h", "h_last")


class Executor:
    """One executor by name (see the module docstring): its backends and its array type."""

    def __init__(self, name):
        kind, _, variant = name.partition("-")
        order, _, sanitize = variant.partition("+")
        if kind not in (NUMPY, CPU, "emulator", CUDA) or (kind == "emulator") != bool(order) \
                or (order and order not in ORDERS) or sanitize not in ("", "sanitize"):
            raise ValueError(f"executor: unknown {name!r}; expected numpy, cpu, cuda or "
                             f"emulator-<order>[+sanitize] with an order in {ORDERS}")
        self.name, self.kind, self.order, self.sanitize = name, kind, order or None, bool(sanitize)

    def __repr__(self):
        return f"Executor({self.name!r})"

    def require(self):
        """Skip the running test, with its cause, where this executor cannot run here."""
        __tracebackhide__ = True
        if self.kind == "emulator":
            skips.require_sanitizer() if self.sanitize else skips.require_emulator()
        elif self.kind == CUDA:
            from gpu_bptt.backends.cuda import cuda_unavailable_reason

            reason = cuda_unavailable_reason()
            if reason:
                skips.skip(skips.GPU, f"no CUDA device: {reason}")
        elif self.kind == CPU:
            from gpu_bptt.backends.compiled import unavailable_reason

            if unavailable_reason():  # no cause: in CI (the test extra has Numba) it fails
                pytest.skip(f"cpu extra: {unavailable_reason()}")

    def backend(self, **options):
        """The backend object with these constructor options (cached per options). The numpy
        and cpu backends take none: asking one for one is an error, not a silently ignored
        setting."""
        __tracebackhide__ = True
        self.require()
        if self.kind in (NUMPY, CPU) and options:
            raise TypeError(f"the {self.kind} executor takes no backend options, got "
                            f"{sorted(options)}")
        return _backend(self.kind, self.order, self.sanitize, tuple(sorted(options.items())))

    @property
    def array_type(self):
        """The type of the arrays the executor's results are."""
        if self.kind == CUDA:
            import cupy

            return cupy.ndarray
        return np.ndarray

    def asarray(self, a):
        """`a` (a NumPy array or None) as an array of this executor (copied to the device on
        cuda)."""
        if self.kind == CUDA and a is not None:
            import cupy

            return cupy.asarray(a)
        return a


@functools.lru_cache(maxsize=None)
def _backend(kind, order, sanitize, options):
    if kind in (NUMPY, CPU):
        return get_backend(kind)
    if kind == CUDA:
        from gpu_bptt.backends.cuda import CudaBackend

        return CudaBackend(**dict(options))
    from gpu_bptt.backends.emulator import EmulatorBackend

    # sanitize=None, not False: $GPU_BPTT_EMU_SANITIZE may still sanitize every run
    return EmulatorBackend(order=order, sanitize=sanitize or None, **dict(options))


def generate(metafunc):
    """pytest_generate_tests: a test taking `executor` runs once per executor (ALL, or those of
    its @pytest.mark.executors(*names)), and a test taking `backend` once per executor and
    combination of the backend options of its @pytest.mark.backend_options(name=values, ...);
    the numpy executor has no options and runs once. The cuda runs carry the `gpu` mark."""
    if "executor" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("executors")
    names = marker.args if marker else ALL
    for name in names:
        Executor(name)  # a misspelt name fails at collection
    marker = metafunc.definition.get_closest_marker("backend_options")
    choices = marker.kwargs if marker else {}
    combos = [dict(zip(choices, values)) for values in itertools.product(*choices.values())]
    with_options = "backend_options" in metafunc.fixturenames
    params = []
    for name in names:
        marks = [pytest.mark.gpu] if name == CUDA else []
        if not with_options:
            params.append(pytest.param(name, id=name, marks=marks))
            continue
        for options in ([{}] if name in (NUMPY, CPU) else combos):
            ident = "-".join([name, *(f"{k}={v}" for k, v in options.items())])
            params.append(pytest.param(name, options, id=ident, marks=marks))
    if with_options:
        metafunc.parametrize(("executor", "backend_options"), params, indirect=["executor"])
    else:
        metafunc.parametrize("executor", params, indirect=True)


def elman_problem(T, B, I, H, dtype=np.float64, seed=0, *, bias=True, h0=True, lengths=False,
                  gain=0.9):
    """A seeded Elman problem: dict of x (T, B, I), W (I, H), V (H, H), b (H,) or None,
    h0 (B, H) or None, lengths (B,) int32 or None (lengths=True: drawn in 1..T with lengths[0] = T
    where B > 1; or the array itself), dh (T, B, H), dh_last (B, H). Entries
    of N(0, 0.5²); W of N(0, 1/I), V of N(0, gain²/H) (gain < 1: a contracting recurrence).
    Magnitudes and draw order are those the kernel tests' cases were checked with on a GPU (a
    seed gives the data it gave there, lengths[0] aside). The caller owns the arrays."""
    r = np.random.default_rng(seed)
    mk = lambda *shape, scale=0.5: (r.standard_normal(shape) * scale).astype(dtype)
    p = dict(x=mk(T, B, I), W=mk(I, H, scale=1 / np.sqrt(I)),
             V=mk(H, H, scale=gain / np.sqrt(H)), b=mk(H) if bias else None,
             h0=mk(B, H) if h0 else None)
    if lengths is True:
        lengths = r.integers(1, T + 1, size=B).astype(np.int32)
        if B > 1:
            lengths[0] = T  # at least one full-length example
    p["lengths"] = None if lengths is False else lengths
    p.update(dh=mk(T, B, H), dh_last=mk(B, H))
    return p


def forward_args(p):
    """The elman_forward arguments of a problem from elman_problem."""
    return {k: p[k] for k in ("x", "W", "V", "b", "h0", "lengths")}


def run(backend, p, activation="tanh", *, algo=None, dh=True, dh_last=True):
    """(ElmanOutput, ElmanGrads) of problem p on `backend`; dh/dh_last=False leaves that upstream
    gradient out."""
    kw = {} if algo is None else dict(algo=algo)
    out = gpu_bptt.elman_forward(**forward_args(p), activation=activation, backend=backend, **kw)
    g = gpu_bptt.elman_backward(p["dh"] if dh else None, out.cache,
                                dh_last=p["dh_last"] if dh_last else None)
    return out, g


def assert_equal_arrays(names, got, ref):
    """Bit-identical attributes `names` of got and ref (on the host), naming the first that is
    not."""
    for name in names:
        a, b = getattr(got, name), getattr(ref, name)
        if a is None or b is None:
            assert a is None and b is None, f"{name}: {a is None=} but {b is None=}"
            continue
        np.testing.assert_array_equal(to_host(a), to_host(b), err_msg=name)
