"""Losses over time-major outputs y (T, B, O), honouring `lengths`.

at="all": averaged over every valid step (t < lengths[b]) of every example;
at="last": only each example's last valid step, averaged over the batch.
Each call returns (loss as a Python float, dy with the shape of y); dy is zero at ignored steps.
"""
from __future__ import annotations

import numpy as np

from ..validate import to_host


def _valid_mask(xp, T, B, lengths, at):
    """(T, B) weights: 1/count at the steps that count, 0 elsewhere."""
    if at not in ("all", "last"):
        raise ValueError(f"at: expected 'all' or 'last', got {at!r}")
    lengths = xp.full(B, T) if lengths is None else xp.asarray(lengths)
    t = xp.arange(T)[:, None]
    m = (t < lengths[None, :]) if at == "all" else (t == lengths[None, :] - 1)
    m = m.astype(np.float64)
    return m / m.sum()


class _Loss:
    def __init__(self, at="all"):
        _valid_mask(np, 1, 1, None, at)  # rejects a bad `at` now, not at the first call
        self.at = at


class MSELoss(_Loss):
    """Mean over counted steps and output features of (y - target)^2. target: shape of y."""

    def __call__(self, y, target, *, lengths=None):
        xp = np if isinstance(y, np.ndarray) else _xp_of(y)
        target = xp.asarray(target)
        if target.shape != y.shape:
            raise ValueError(f"target: expected shape {tuple(y.shape)} (that of the output), got {tuple(target.shape)}")
        T, B, O = y.shape
        w = (_valid_mask(xp, T, B, lengths, self.at) / O).astype(y.dtype)[:, :, None]
        diff = y - target.astype(y.dtype)
        loss = float((w * diff * diff).sum())
        return loss, 2 * w * diff


class SoftmaxCrossEntropy(_Loss):
    """Mean over counted steps of -log softmax(y)[target]. target: (T, B) integer classes."""

    def __call__(self, y, target, *, lengths=None):
        xp = np if isinstance(y, np.ndarray) else _xp_of(y)
        target = xp.asarray(target)
        T, B, O = y.shape
        if target.shape != (T, B):
            raise ValueError(f"target: expected class indices of shape (T, B) = ({T}, {B}), got {tuple(target.shape)}")
        if target.dtype.kind not in "iu":
            raise TypeError(f"target: expected integer class indices, got {target.dtype}")
        w = _valid_mask(xp, T, B, lengths, self.at).astype(y.dtype)
        z = y - y.max(axis=2, keepdims=True)
        logp = z - xp.log(xp.exp(z).sum(axis=2, keepdims=True))
        tgt = xp.clip(target, 0, O - 1)  # padded steps may hold any value; their weight is 0
        bad = (target != tgt) & (w > 0)
        if bool(bad.any()):
            raise ValueError(f"target: class indices must be in 0..{O - 1} at counted steps")
        picked = xp.take_along_axis(logp, tgt[:, :, None], axis=2)[:, :, 0]
        loss = float(-(w * picked).sum())
        dy = xp.exp(logp)
        xp.put_along_axis(dy, tgt[:, :, None], xp.take_along_axis(dy, tgt[:, :, None], axis=2) - 1, axis=2)
        return loss, dy * w[:, :, None]


def _xp_of(a):
    import cupy  # only reached with CuPy arrays

    return cupy.get_array_module(a)


def last_step(y, lengths=None):
    """y[lengths[b]-1, b] for each example: (B, O) on the host, for evaluation."""
    y = to_host(y)
    T, B = y.shape[:2]
    idx = np.full(B, T - 1) if lengths is None else np.asarray(to_host(lengths)) - 1
    return y[idx, np.arange(B)]
