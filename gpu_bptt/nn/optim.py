"""SGD as in the seed (ΔW = -α Σ_t ∂e/∂W(t), W ← W + ΔW, for every level) with optional momentum,
and global gradient-norm clipping."""
from __future__ import annotations

import math


class SGD:
    """params, grads: dicts name -> array (from `module.parameters()`, `module.gradients()`),
    or a module. Updates the parameters in place: v ← momentum·v - lr·g; W ← W + v."""

    def __init__(self, params, lr, momentum=0.0, grads=None):
        if hasattr(params, "parameters"):
            params, grads = params.parameters(), params.gradients()
        if grads is None or set(grads) != set(params):
            raise ValueError("grads: expected one gradient per parameter (pass a module or both dicts)")
        if not (lr > 0):
            raise ValueError(f"lr: must be > 0, got {lr}")
        if not (0 <= momentum < 1):
            raise ValueError(f"momentum: must be in [0, 1), got {momentum}")
        self.params, self.grads, self.lr, self.momentum = params, grads, float(lr), float(momentum)
        self.velocity = {k: None for k in params}

    def step(self):
        for k, p in self.params.items():
            g = self.grads[k]
            if self.momentum:
                v = self.velocity[k]
                if v is None:
                    v = self.velocity[k] = 0 * g
                v *= self.momentum
                v -= self.lr * g
                p += v
            else:
                p -= self.lr * g

    def state_dict(self):
        return {"lr": self.lr, "momentum": self.momentum, "velocity": dict(self.velocity)}


def grad_norm(grads) -> float:
    """Global L2 norm over every gradient array."""
    return math.sqrt(sum(float((g * g).sum()) for g in grads.values()))


def clip_grad_norm(grads, max_norm) -> float:
    """Scale every gradient so the global L2 norm is at most max_norm; returns the norm before.
    grads: dict name -> array, or a module."""
    if hasattr(grads, "gradients"):
        grads = grads.gradients()
    if not (max_norm > 0):
        raise ValueError(f"max_norm: must be > 0, got {max_norm}")
    norm = grad_norm(grads)
    if not math.isfinite(norm):
        raise FloatingPointError(f"gradient norm is {norm}; clipping cannot repair non-finite gradients")
    if norm > max_norm:
        s = max_norm / (norm + 1e-12)
        for g in grads.values():
            g *= s
    return norm
