"""Backend selection (docs/architecture.md §2): explicit name, else $GPU_BPTT_BACKEND, else "auto".

"auto" is cuda when CuPy imports, sees a device and loads NVRTC and cuBLAS (with a warning, once
per cause, when a device is seen but a library is missing); otherwise cpu, the compiled time loops,
where the `cpu` extra (Numba) is installed; otherwise numpy, the plain reference. Probing never
compiles a kernel or a loop; CuPy is imported only when the cuda backend is asked for or probed.
"""
from __future__ import annotations

import os

from .base import Backend, first_step_rows, last_step_rows
from .notices import warn_once
from .plan import LaunchPlan, PairPlan

NAMES = ("numpy", "cpu", "cuda", "emulator")
ENV_VAR = "GPU_BPTT_BACKEND"


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says why."""


_instances: dict = {}


def _probe(name: str):
    """Return (factory, None) when `name` can run here, else (None, reason)."""
    if name == "numpy":
        from .numpy_backend import NumpyBackend

        return NumpyBackend, None
    if name == "cpu":
        from .cpu_backend import CpuBackend, cpu_unavailable_reason

        reason = cpu_unavailable_reason()
        return (None, reason) if reason else (CpuBackend, None)
    if name == "cuda":
        try:
            from .cuda import CudaBackend, cuda_unavailable_reason
        except ImportError as e:  # the module itself is missing or broken
            return None, f"cuda backend module cannot be imported: {e}"
        reason = cuda_unavailable_reason()
        return (None, reason) if reason else (CudaBackend, None)
    if name == "emulator":
        try:
            from .emulator import EmulatorBackend, emulator_unavailable_reason
        except ImportError as e:
            return None, f"emulator backend module cannot be imported: {e}"
        reason = emulator_unavailable_reason()
        return (None, reason) if reason else (EmulatorBackend, None)
    raise ValueError(f"backend: unknown {name!r}; expected one of {('auto',) + NAMES}")


def available_backends() -> dict:
    """{name: None if usable else the reason it is not}, for every known backend."""
    return {name: _probe(name)[1] for name in NAMES}


def get_backend(name=None) -> Backend:
    """The backend object for `name` (None: $GPU_BPTT_BACKEND, else "auto"). A Backend passes through."""
    if isinstance(name, Backend):
        return name
    from_env = name is None
    if from_env:
        name = os.environ.get(ENV_VAR) or "auto"
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a name or a Backend, got {type(name).__name__}")
    name = name.strip().lower()
    if from_env and name not in ("auto",) + NAMES:
        raise ValueError(f"backend: unknown {name!r} (from ${ENV_VAR}); expected one of {('auto',) + NAMES}")
    if name == "auto":
        factory, reason = _probe("cuda")
        name = "cuda" if factory is not None else "cpu" if _probe("cpu")[0] else "numpy"
        from .cuda.backend import DEVICE_SEEN_BUT

        if reason and reason.startswith(DEVICE_SEEN_BUT):  # a GPU is there: say why it is unused
            warn_once(f"backend 'auto' uses {name}: {reason}", stacklevel=2)
    if name not in _instances:
        factory, reason = _probe(name)
        if factory is None:
            raise BackendUnavailable(f"backend {name!r} is unavailable: {reason}")
        _instances[name] = factory()
    return _instances[name]


__all__ = ["Backend", "BackendUnavailable", "LaunchPlan", "PairPlan", "available_backends",
           "get_backend", "NAMES"]
