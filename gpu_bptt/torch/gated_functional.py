"""`lstm` and `gru`: the LSTM and GRU levels on tensors, differentiable, in the project's
convention (docs/architecture.md §1; gpu_bptt/cells/lstm.py, gru.py for the math). The same
arguments, dispatch and checks as `elman` (functional.py)."""
from __future__ import annotations

import torch

from . import gated_ops
from .exchange import backend_name
from .functional import IMPLS, autocast_floats, autocast_on, check_dtypes, check_tensor, traced


def lstm(x, W, V, b=None, h0=None, c0=None, lengths=None, *, R=None, backend=None, algo="auto",
         impl="auto", reverse=False):
    """h, h_last, c_last = lstm(x, W, V, b, h0, c0, lengths, R=R): run one LSTM level and record
    it for autograd.

    x: (T, B, I); W: (I, 4H); V: (Hs, 4H); b: (4H,) or None; h0: (B, Hs), c0: (B, H), or None
    (zeros); R: (H, P) projection or None (Hs = P with it, else H); lengths as for `elman`.
    backend, algo, impl, reverse: as for `elman`. Returns h (T, B, Hs), h_last (B, Hs),
    c_last (B, H), new tensors."""
    floats = (x, W, V, b, h0, c0, R)
    out = _apply("lstm", floats, (3, 2, 2, 1, 2, 2, 2), lengths, backend, algo, impl, reverse)
    return out[:3]


def gru(x, W, V, b_x=None, b_h=None, h0=None, lengths=None, *, backend=None, algo="auto",
        impl="auto", reverse=False):
    """h, h_last = gru(x, W, V, b_x, b_h, h0, lengths): run one GRU level and record it for
    autograd.

    x: (T, B, I); W: (I, 3H); V: (H, 3H); b_x, b_h: (3H,) or None; h0: (B, H) or None (zeros);
    lengths as for `elman`. backend, algo, impl, reverse: as for `elman`. Returns h (T, B, H)
    and h_last (B, H), new tensors."""
    floats = (x, W, V, b_x, b_h, h0)
    out = _apply("gru", floats, (3, 2, 2, 1, 1, 2), lengths, backend, algo, impl, reverse)
    return out[:2]


def _apply(name, floats, ndims, lengths, backend, algo, impl, reverse):
    """Check the arguments and run the cell's op or Function, as `elman` does."""
    cell, plain, transform = gated_ops.CELLS[name]
    if impl not in IMPLS:
        raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse: expected a bool, got {type(reverse).__name__}")
    for arg, t, ndim in zip(cell.inputs, floats, ndims):
        if t is not None or arg in ("x", "W", "V"):
            check_tensor(arg, t, ndim)
    if lengths is not None:
        check_tensor("lengths", lengths, 1)
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex:
            raise TypeError(f"lengths: expected an integer tensor, got {lengths.dtype}")
        lengths = lengths.cpu()
    x = floats[0]
    tail = (lengths, backend_name(x.device, backend), algo, reverse)
    use_op = impl == "custom_op" or (impl == "auto" and gated_ops.HAS_CUSTOM_OP and traced(x))
    if impl == "custom_op" and not gated_ops.HAS_CUSTOM_OP:
        raise RuntimeError(f"impl='custom_op' needs torch.library.custom_op and register_autocast "
                           f"(PyTorch >= 2.5); this is {torch.__version__}")
    autocast = autocast_on(x.device.type)
    if use_op:
        # Autocast (registered on the op) casts to float32 before the op sees them.
        if not autocast:
            check_dtypes(floats, cell.inputs, tail[1], name)
        return gated_ops.OPS[name](*floats, *tail)
    fn = transform if torch._C._are_functorch_transforms_active() else plain
    if autocast:
        floats = autocast_floats(floats, x.device.type, tail[1], name)
        with torch.autocast(x.device.type, enabled=False):
            return fn.apply(*floats, *tail)
    check_dtypes(floats, cell.inputs, tail[1], name)
    return fn.apply(*floats, *tail)
