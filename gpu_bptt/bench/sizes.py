"""Benchmark sizes, presets, the problem every contender runs, and the counts the ratios use.

FLOPs counted (multiply-add = 2), from the GEMM-shaped work only (elementwise work, the bias and
dh0 = du[0] @ V.T are left out: they are O(T·B·H) or O(B·H²), small next to these):
    forward   2·T·B·(I·H + H·H)         input projection x @ W, recurrence h[t-1] @ V
    backward  2·T·B·(2·I·H + 2·H·H)     recurrence du[t+1] @ V.T, dV, dW, dx
    fwd+bwd   2·T·B·(3·I·H + 3·H·H)
Compulsory bytes (each array read or written once; what a kernel that keeps everything else on chip
must move), used for the ratio to the copy bandwidth on a GPU:
    forward   x, W, V, b, h0 in; h out
    backward  dh, h, x, W, V, h0 in; dx, dW, dV, db, dh0 out
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Size:
    T: int
    B: int
    I: int
    H: int

    def __str__(self):
        return f"T={self.T} B={self.B} I={self.I} H={self.H}"

    def as_dict(self):
        return asdict(self)

    def flops(self, phase: str) -> int:
        T, B, I, H = self.T, self.B, self.I, self.H
        fwd = 2 * T * B * (I * H + H * H)
        bwd = 2 * T * B * (2 * I * H + 2 * H * H)
        return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[phase]

    def bytes(self, phase: str, itemsize: int) -> int:
        T, B, I, H = self.T, self.B, self.I, self.H
        fwd = T * B * I + I * H + H * H + H + B * H + T * B * H
        bwd = 2 * T * B * H + 2 * (T * B * I + I * H + H * H + B * H) + H
        return itemsize * {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[phase]


def parse_size(text: str) -> Size:
    """'T,B,I,H' (or 'TxBxIxH') -> Size."""
    parts = text.replace("x", ",").split(",")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) != 4 or min(vals) < 1:
        raise ValueError(f"size: expected four positive integers T,B,I,H, got {text!r}")
    return Size(*vals)


# device: which contenders a preset is for when none are named ("cpu" or "gpu").
PRESETS = {
    "cpu": ("cpu", [Size(100, 32, 256, 256), Size(50, 64, 512, 512), Size(200, 16, 64, 128),
                    Size(500, 1, 32, 64)]),
    "large-batch": ("gpu", [Size(256, 256, 1024, 1024)]),
    "small-batch": ("gpu", [Size(1024, B, 1024, 1024) for B in (1, 4, 8)]),
    "long-seq": ("gpu", [Size(T, 8, 512, 512) for T in (1024, 4096, 16384)]),
    "tiny": ("cpu", [Size(5, 3, 4, 6), Size(7, 2, 3, 5)]),  # smoke tests
}
GPU_PRESETS = ("large-batch", "small-batch", "long-seq")


@dataclass
class Problem:
    """The inputs every contender gets (host NumPy arrays, one dtype), and the upstream gradient dh
    (the loss is Σ h·dh). W, V uniform ±1/sqrt(H) as nn.RNN initializes them."""
    size: Size
    dtype: np.dtype
    x: np.ndarray
    W: np.ndarray
    V: np.ndarray
    b: np.ndarray
    h0: np.ndarray
    dh: np.ndarray

    def arrays(self):
        return dict(x=self.x, W=self.W, V=self.V, b=self.b, h0=self.h0, dh=self.dh)


def make_problem(size: Size, dtype="float32", seed=0) -> Problem:
    T, B, I, H = size.T, size.B, size.I, size.H
    r = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    dt = np.dtype(dtype)
    return Problem(size, dt,
                   x=r.standard_normal((T, B, I), dtype=np.float32).astype(dt),
                   W=r.uniform(-k, k, (I, H)).astype(dt), V=r.uniform(-k, k, (H, H)).astype(dt),
                   b=r.uniform(-k, k, H).astype(dt), h0=r.uniform(-0.5, 0.5, (B, H)).astype(dt),
                   dh=r.standard_normal((T, B, H), dtype=np.float32).astype(dt))


OUTPUTS = ("h", "dx", "dW", "dV", "db", "dh0")


def reference(problem: Problem) -> dict:
    """h and every gradient from our numpy backend in float64: what each contender is checked against."""
    from ..cells import elman_backward, elman_forward

    a = {k: v.astype(np.float64) for k, v in problem.arrays().items()}
    out = elman_forward(a["x"], a["W"], a["V"], a["b"], a["h0"], backend="numpy")
    g = elman_backward(a["dh"], out.cache)
    return dict(h=out.h, dx=g.dx, dW=g.dW, dV=g.dV, db=g.db, dh0=g.dh0)
