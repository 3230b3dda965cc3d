"""`elman`: the Elman level on tensors, differentiable, in the project's convention (docs/architecture.md §1)."""
from __future__ import annotations

import torch

from ..backends import get_backend
from . import ops
from .exchange import backend_name

IMPLS = ("auto", "custom_op", "function")
_are_functorch_transforms_active = torch._C._are_functorch_transforms_active
_FLOATS = (torch.float32, torch.float64)
HALF = (torch.float16, torch.bfloat16)


def check_tensor(name, t, ndim):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")


def elman(x, W, V, b=None, h0=None, lengths=None, *, activation="tanh", backend=None,
          algo="auto", impl="auto", reverse=False):
    """h, h_last = elman(x, W, V, b, h0, lengths): run one Elman level and record it for autograd.

    x: (T, B, I); W: (I, H); V: (H, H); b: (H,) or None; h0: (B, H) or None (zeros); lengths: (B,)
    integer tensor in 1..T, or None (all T), kept on the CPU. Float tensors share one dtype and
    device: float32 or float64, or bfloat16/float16 where the backend runs them (numpy does;
    precision.py). Inside an autocast region an eager call runs in the autocast dtype where the
    backend runs it, else in float32; a traced call (the custom op) in float32.
    backend: a gpu_bptt backend name or None (cpu: $GPU_BPTT_BACKEND if it is a CPU backend, else
    numpy; cuda: cuda). impl: "custom_op", "function" (autograd.Function) or "auto": the custom op
    where a tracer sees the call (torch.compile, export, jit.trace, fake tensors) and this PyTorch has
    it, else the Function, whose dispatch costs less per call in eager mode (and which carries the
    torch.func transforms: vmap, grad, jacrev). Double backward and vmap work on both.
    reverse=True: the reversed direction of a bidirectional layer (gpu_bptt.elman_forward's
    reverse): each example from its last valid step down to 0, h time-aligned, h_last = h[0].
    Returns h (T, B, H) and h_last (B, H), new tensors."""
    if impl not in IMPLS:
        raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse: expected a bool, got {type(reverse).__name__}")
    check_tensor("x", x, 3)
    check_tensor("W", W, 2)
    check_tensor("V", V, 2)
    if b is not None:
        check_tensor("b", b, 1)
    if h0 is not None:
        check_tensor("h0", h0, 2)
    if lengths is not None:
        check_tensor("lengths", lengths, 1)
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex:
            raise TypeError(f"lengths: expected an integer tensor, got {lengths.dtype}")
        lengths = lengths.cpu()
    name = backend_name(x.device, backend)
    use_op = impl == "custom_op" or (impl == "auto" and ops.HAS_CUSTOM_OP and traced(x))
    if impl == "custom_op" and not ops.HAS_CUSTOM_OP:
        raise RuntimeError(f"impl='custom_op' needs torch.library.custom_op and register_autocast "
                           f"(PyTorch >= 2.5); this is {torch.__version__}")
    floats = (x, W, V, b, h0)
    if use_op:
        # Autocast (registered on the op) casts to float32 before the op sees them.
        if not autocast_on(x.device.type):
            check_dtypes(floats, backend=name)
        return ops.elman_forward_op(x, W, V, b, h0, lengths, activation, name, algo, reverse)
    fn = ops.ElmanTransformFunction if _are_functorch_transforms_active() else ops.ElmanFunction
    if autocast_on(x.device.type):
        floats = autocast_floats(floats, x.device.type, name)
        with torch.autocast(x.device.type, enabled=False):
            return fn.apply(*floats, lengths, activation, name, algo, reverse)
    check_dtypes(floats, backend=name)
    return fn.apply(*floats, lengths, activation, name, algo, reverse)


def traced(x) -> bool:
    """Whether this call is being traced (compile, export, jit.trace) or runs on fake tensors."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    try:
        from torch._subclasses.fake_tensor import is_fake
    except ImportError:  # older PyTorch: no fake tensors to worry about
        return False
    return is_fake(x)


def autocast_on(device_type) -> bool:
    """Whether autocast is on for tensors of `device_type` ("cpu", "cuda")."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # PyTorch < 2.4: one query per device type
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def runs(backend, dtype, cell="elman") -> bool:
    """Whether the backend (a name) runs tensors of `dtype` for `cell` (Backend.cell_dtypes)."""
    return str(dtype).removeprefix("torch.") in get_backend(backend).cell_dtypes(cell)


def check_dtypes(floats, names=("x", "W", "V", "b", "h0"), backend="numpy", cell="elman"):
    """TypeError naming the first tensor whose dtype the backend does not run for `cell`."""
    for name, t in zip(names, floats):
        if t is not None and not (t.dtype in _FLOATS
                                  or t.dtype in HALF and runs(backend, t.dtype, cell)):
            if t.dtype in HALF:
                raise TypeError(f"{name}: the {backend} backend runs float32 and float64 for "
                                f"the {cell} cell, got "
                                f"{t.dtype} (the numpy backend runs it; inside torch.autocast "
                                f"this backend computes in float32)")
            raise TypeError(f"{name}: expected float32 or float64 (or bfloat16, float16), got "
                            f"{t.dtype}")


def autocast_floats(floats, device_type, backend, cell="elman"):
    """An eager call's tensors inside autocast: float32 and 16-bit tensors in the autocast dtype
    where the backend runs it (the layer then runs in it, as autocast's lower-precision ops do),
    else in float32 (as its float32 ops); float64 left alone."""
    try:
        dt = torch.get_autocast_dtype(device_type)
    except AttributeError:  # PyTorch < 2.4
        dt = (torch.get_autocast_cpu_dtype() if device_type == "cpu"
              else torch.get_autocast_gpu_dtype())
    if not runs(backend, dt, cell):
        dt = torch.float32
    return tuple(t.to(dt) if t is not None and t.dtype in (torch.float32,) + HALF else t
                 for t in floats)


def elman_pair(x, forward, reverse, lengths=None, *, activation="tanh", backend=None,
               algo="auto"):
    """(h, h_last), (h_r, h_last_r) = elman_pair(x, (W, V, b, h0), (W_r, V_r, b_r, h0_r), lengths):
    both directions of a bidirectional layer, recorded for autograd; each direction's results
    are those of `elman` (reverse=False, then True), arguments as there.

    In an eager call (no tracer, no torch.func transform, no autocast) the two directions run
    together, as one autograd node (the core's elman_forward_pair: side by side on the GPU,
    docs/architecture.md §1, both directions together). Where a tracer (torch.compile, export,
    jit.trace), a torch.func transform or autocast sees the call, they run as two `elman` calls,
    one after the other, each with its own operator: the same numbers."""
    for name, d in (("forward", forward), ("reverse", reverse)):
        if not isinstance(d, (tuple, list)) or len(d) != 4:
            raise TypeError(f"{name}: expected the direction's (W, V, b, h0) (b, h0 may be "
                            f"None), got {type(d).__name__}")
    if traced(x) or _are_functorch_transforms_active() or autocast_on(x.device.type):
        kw = dict(activation=activation, backend=backend, algo=algo)
        return (elman(x, *forward, lengths, **kw), elman(x, *reverse, lengths, **kw, reverse=True))
    check_tensor("x", x, 3)
    for d in (forward, reverse):
        for name, t, ndim in zip(("W", "V", "b", "h0"), d, (2, 2, 1, 2)):
            if t is not None:
                check_tensor(name, t, ndim)
        check_dtypes((x,) + tuple(d), backend=backend_name(x.device, backend))
    if lengths is not None:
        check_tensor("lengths", lengths, 1)
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex:
            raise TypeError(f"lengths: expected an integer tensor, got {lengths.dtype}")
        lengths = lengths.cpu()
    out = ops.ElmanPairFunction.apply(x, *forward, *reverse, lengths, activation,
                                      backend_name(x.device, backend), algo)
    return out[:2], out[2:]
