"""Benchmark sizes, presets, the problem every contender runs, and the counts the ratios use.

FLOPs counted (multiply-add = 2), from the GEMM-shaped work only (elementwise work, the bias and
dh0 = du[0] @ V.T are left out: they are O(T·B·G·H) or O(B·G·H²), small next to these); G is
the cell's number of gates (Elman 1, LSTM 4, GRU 3: each product is G·H columns wide):
    forward   2·T·B·G·(I·H + H·H)         input projection x @ W, recurrence h[t-1] @ V
    backward  2·T·B·G·(2·I·H + 2·H·H)     recurrence du[t+1] @ V.T, dV, dW, dx
    fwd+bwd   2·T·B·G·(3·I·H + 3·H·H)
Compulsory bytes (each array read or written once; what a kernel that keeps everything else on chip
must move), used for the ratio to the copy bandwidth on a GPU:
    forward   x, W, V, the biases, the initial states (h0; LSTM: c0) in; h out
    backward  dh, h, x, W, V, initial states in; dx, dW, dV, the biases' and states' gradients out
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .cells import BIASES, GATES, INPUTS, STATES, check_cell


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

    def flops(self, phase: str, cell: str = "elman") -> int:
        T, B, I, H, G = self.T, self.B, self.I, self.H, GATES[cell]
        fwd = 2 * T * B * G * (I * H + H * H)
        bwd = 2 * T * B * G * (2 * I * H + 2 * H * H)
        return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[phase]

    def bytes(self, phase: str, itemsize: int, cell: str = "elman") -> int:
        T, B, I, H, G = self.T, self.B, self.I, self.H, GATES[cell]
        biases, states = len(BIASES[cell]) * G * H, len(STATES[cell]) * B * H
        fwd = T * B * I + G * (I * H + H * H) + biases + states + T * B * H
        bwd = 2 * T * B * H + 2 * (T * B * I + G * (I * H + H * H) + states) + biases
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
    """The inputs every contender gets (host NumPy arrays, one dtype: cells.INPUTS[cell]), and the
    upstream gradient dh (the loss is Σ h·dh). W, V, the biases uniform ±1/sqrt(H) as torch.nn's
    RNN, LSTM and GRU initialize them; h0 (and c0) uniform ±0.5."""
    size: Size
    dtype: np.dtype
    inputs: dict
    cell: str = "elman"

    def arrays(self):
        return dict(self.inputs)


def make_problem(size: Size, dtype="float32", seed=0, cell="elman") -> Problem:
    T, B, I, H, G = size.T, size.B, size.I, size.H, GATES[check_cell(cell)]
    r = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    dt = np.dtype(dtype)
    normal = lambda shape: r.standard_normal(shape, dtype=np.float32)  # noqa: E731
    draw = {"x": lambda: normal((T, B, I)), "dh": lambda: normal((T, B, H)),
            "W": lambda: r.uniform(-k, k, (I, G * H)), "V": lambda: r.uniform(-k, k, (H, G * H)),
            "h0": lambda: r.uniform(-0.5, 0.5, (B, H)), "c0": lambda: r.uniform(-0.5, 0.5, (B, H))}
    bias = lambda: r.uniform(-k, k, G * H)  # noqa: E731
    return Problem(size, dt, {name: draw.get(name, bias)().astype(dt) for name in INPUTS[cell]},
                   cell)


def reference(problem: Problem) -> dict:
    """h and every gradient (cells.OUTPUTS) from our numpy backend in float64: what each contender
    is checked against."""
    from . import cells

    a = {k: v.astype(np.float64) for k, v in problem.arrays().items()}
    out = cells.forward(problem.cell, a, "numpy")
    g = cells.backward(problem.cell, a["dh"], out)
    return cells.outputs(problem.cell, out, g, lambda v: v)
