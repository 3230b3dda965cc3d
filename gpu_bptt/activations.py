"""Activation functions f and their derivatives, written in terms of the output h = f(u).

Every supported f has f'(u) expressible from h alone, so the backward pass needs only h (not u).
"""
from __future__ import annotations

ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")

# Integer codes shared with the CUDA kernels (kernels/elman_common.cuh).
ACTIVATION_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "identity": 3}


def check_activation(activation) -> str:
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
    return activation


def apply(xp, activation: str, u, out=None):
    """h = f(u), elementwise; `out` may alias `u`."""
    if out is None:
        out = xp.empty_like(u)
    if activation == "tanh":
        xp.tanh(u, out=out)
    elif activation == "relu":
        xp.maximum(u, 0, out=out)
    elif activation == "sigmoid":
        # 1 / (1 + exp(-u)), written to avoid overflow warnings for large |u|.
        xp.negative(u, out=out)
        xp.minimum(out, 80.0 if u.dtype.itemsize == 4 else 700.0, out=out)  # no temporary
        xp.exp(out, out=out)
        out += 1
        xp.reciprocal(out, out=out)
    elif activation == "identity":
        if out is not u:
            out[...] = u
    else:
        raise ValueError(f"activation: unknown {activation!r}")
    return out


def derivative_from_output(xp, activation: str, h, out=None):
    """f'(u) computed from h = f(u), elementwise, with no temporaries: the numpy backend's reverse
    loop computes it for all T into the array that then receives du. `out` may not alias `h`."""
    if out is None:
        out = xp.empty_like(h)
    if activation == "tanh":        # 1 - h²
        xp.multiply(h, h, out=out)
        xp.subtract(1, out, out=out)
    elif activation == "sigmoid":   # h (1 - h)
        xp.subtract(1, h, out=out)
        out *= h
    elif activation == "relu":      # 1 where h > 0
        xp.greater(h, 0, out=out)
    elif activation == "identity":
        out.fill(1)
    else:
        raise ValueError(f"activation: unknown {activation!r}")
    return out
