"""Mixed precision for `gpu-bptt train --dtype bfloat16|float16 [--tf32]`: float32 master weights,
the recurrent level run in the storage dtype (docs/architecture.md §1, precision modes), float16's
small gradients kept in range by dynamic loss scaling.

The run's nn level keeps the parameters, gradient buffers and optimizer state in float32 (so
checkpoints, clipping and the optimizers are unchanged); each forward casts its weights and the
input to the storage dtype once and runs the cell's functional forward, whose outputs (h in the
storage dtype) go to the float32 output level. The backward hands the cell the upcast gradient,
times the loss scale for float16, and adds its 16-bit weight gradients, divided by the scale,
into the float32 buffers.
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..cells import elman_backward, elman_forward, gru_backward, gru_forward, lstm_backward, \
    lstm_forward
from ..precision import BFLOAT16, FLOAT16

DTYPES = {"float32": np.dtype(np.float32), "bfloat16": BFLOAT16, "float16": FLOAT16}

#: dynamic loss scaling (float16): the first scale, the factor on an overflow (the update is
#: skipped) and after GROWTH_STEPS good updates in a row (PyTorch's GradScaler's rule)
INITIAL_SCALE, GROWTH_STEPS = 2.0 ** 15, 1000


class MixedLevel(nn.Module):
    """`level` (nn.Elman, nn.LSTM or nn.GRU, float32, one direction) run in `dtype`, with TF32
    products where tf32. Its parameters and gradients are the level's own (float32)."""

    def __init__(self, level, dtype, tf32=False):
        if level.bidirectional:
            raise ValueError("level: mixed precision runs one direction")
        self.level, self.dtype, self.tf32 = level, np.dtype(dtype), bool(tf32)
        self.backend = level.backend
        self.loss_scale = 1.0  # the trainer's (LossScale.scale) for float16
        self.cell = {nn.Elman: "elman", nn.LSTM: "lstm", nn.GRU: "gru"}[type(level)]
        self._cache = None

    def parameters(self):
        return self.level.parameters()

    def gradients(self):
        return self.level.gradients()

    def forward(self, x, *, lengths=None, h0=None, c0=None):
        """x (T, B, I) float32 -> h (T, B, H) float32 (the storage dtype's values); sets h_last
        (and c_last) in the storage dtype, as the next segment's h0 (c0) takes them."""
        S = self.dtype
        p = {k: v.astype(S) for k, v in self.level.parameters().items()}
        kw = dict(lengths=lengths, backend=self.backend, allow_tf32=self.tf32)
        x = x.astype(S)
        if self.cell == "elman":
            out = elman_forward(x, p["W"], p["V"], p.get("b"), h0,
                                activation=self.level.activation, **kw)
        elif self.cell == "lstm":
            out = lstm_forward(x, p["W"], p["V"], p.get("b"), h0, c0, R=p.get("R"), **kw)
            self.c_last = out.c_last
        else:
            out = gru_forward(x, p["W"], p["V"], p.get("b_x"), p.get("b_h"), h0, **kw)
        self.h_last, self._cache = out.h_last, out.cache
        return out.h.astype(np.float32)

    def backward(self, dh, *, need_dx=True):
        """dh (T, B, H) float32: adds the weight gradients, unscaled, to the float32 buffers."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        dh = (dh * np.float32(self.loss_scale)).astype(self.dtype)
        g = {"elman": elman_backward, "lstm": lstm_backward,
             "gru": gru_backward}[self.cell](dh, self._cache, need_dx=False)
        names = {"W": g.dW, "V": g.dV, "b": getattr(g, "db", None), "R": getattr(g, "dR", None),
                 "b_x": getattr(g, "db_x", None), "b_h": getattr(g, "db_h", None)}
        inv = np.float32(1 / self.loss_scale)
        for k, buf in self.level.gradients().items():
            buf += names[k].astype(np.float32) * inv


class LossScale:
    """Dynamic loss scaling: `scale` multiplies the gradient the float16 level receives; an
    update whose gradients are not finite is skipped (counted in `skipped`) and halves it,
    GROWTH_STEPS good updates in a row double it. `state()` is what a checkpoint keeps of it."""

    def __init__(self, scale=INITIAL_SCALE, good=0, skipped=0):
        self.scale, self.good, self.skipped = float(scale), int(good), int(skipped)

    def update(self, finite: bool) -> bool:
        """After a backward: whether to apply the update."""
        if not finite:
            self.scale, self.good, self.skipped = self.scale / 2, 0, self.skipped + 1
            return False
        self.good += 1
        if self.good == GROWTH_STEPS:
            self.scale, self.good = self.scale * 2, 0
        return True

    def state(self) -> dict:
        return {"scale": self.scale, "good": self.good, "skipped": self.skipped}
