"""SGD as in the seed (ΔW = -α Σ_t ∂e/∂W(t), W ← W + ΔW, for every level) with optional momentum,
Adam, and global gradient-norm clipping.

Optimizers update parameters in place. `state_dict()` gives scalars and per-parameter arrays
(None before the first step); `load_state_dict` restores them, so a resumed run continues exactly."""
from __future__ import annotations

import math

from ..validate import check_real


def _params_and_grads(params, grads):
    """(params, grads) dicts from a module or the two dicts."""
    if hasattr(params, "parameters"):
        params, grads = params.parameters(), params.gradients()
    if grads is None or set(grads) != set(params):
        raise ValueError("grads: expected one gradient per parameter (pass a module or both dicts)")
    return params, grads


def _fraction(name, v):
    """A decay rate in [0, 1) (momentum, Adam's betas)."""
    return check_real(name, v, low=0.0, high=1.0, low_closed=True)


class SGD:
    """params, grads: dicts name -> array (from `module.parameters()`, `module.gradients()`),
    or a module. Updates the parameters in place: v ← momentum·v - lr·g; W ← W + v."""

    def __init__(self, params, lr, momentum=0.0, grads=None):
        params, grads = _params_and_grads(params, grads)
        self.params, self.grads = params, grads
        self.lr, self.momentum = check_real("lr", lr), _fraction("momentum", momentum)
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

    def load_state_dict(self, state):
        self.lr, self.momentum = float(state["lr"]), float(state["momentum"])
        self.velocity = _load_slots(self.params, state["velocity"], "velocity")


class Adam:
    """Adam (Kingma & Ba 2015): m ← β1·m + (1-β1)·g, v ← β2·v + (1-β2)·g², and
    W ← W - lr·m̂ / (sqrt(v̂) + eps) with the bias-corrected m̂ = m/(1-β1^t), v̂ = v/(1-β2^t).
    params, grads: as for SGD."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, grads=None):
        params, grads = _params_and_grads(params, grads)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.params, self.grads = params, grads
        self.lr, self.eps = check_real("lr", lr), check_real("eps", eps)
        self.beta1, self.beta2 = (_fraction(f"betas[{i}]", b) for i, b in enumerate(betas))
        self.t = 0
        self.m = {k: None for k in params}
        self.v = {k: None for k in params}

    def step(self):
        self.t += 1
        c1 = 1 - self.beta1 ** self.t
        c2 = 1 - self.beta2 ** self.t
        for k, p in self.params.items():
            g = self.grads[k]
            if self.m[k] is None:
                self.m[k], self.v[k] = 0 * g, 0 * g
            m, v = self.m[k], self.v[k]
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * (g * g)
            # float32 parameters stay float32: the scalars are applied to arrays of p's dtype
            denom = (v / c2) ** 0.5
            denom += self.eps
            p -= (self.lr / c1) * m / denom

    def state_dict(self):
        return {"lr": self.lr, "betas": [self.beta1, self.beta2], "eps": self.eps, "t": self.t,
                "m": dict(self.m), "v": dict(self.v)}

    def load_state_dict(self, state):
        self.lr, self.eps, self.t = float(state["lr"]), float(state["eps"]), int(state["t"])
        self.beta1, self.beta2 = (float(b) for b in state["betas"])
        self.m = _load_slots(self.params, state["m"], "m")
        self.v = _load_slots(self.params, state["v"], "v")


def _load_slots(params, slots, what):
    """Per-parameter state arrays, copied onto each parameter's backend and dtype."""
    if set(slots) != set(params):
        raise ValueError(f"{what}: expected one entry per parameter {sorted(params)}, got {sorted(slots)}")
    out = {}
    for k, p in params.items():
        a = slots[k]
        if a is None:
            out[k] = None
            continue
        if tuple(a.shape) != tuple(p.shape):
            raise ValueError(f"{what}[{k!r}]: expected shape {tuple(p.shape)}, got {tuple(a.shape)}")
        s = 0 * p
        s[...] = _as_like(p, a)
        out[k] = s
    return out


def _as_like(p, a):
    """`a` (NumPy or the backend's array) as an array of p's kind."""
    import numpy as np

    if isinstance(p, np.ndarray):
        return np.asarray(a, dtype=p.dtype)
    import cupy  # only reached with CuPy parameters

    return cupy.asarray(a, dtype=p.dtype)


def grad_norm(grads) -> float:
    """Global L2 norm over every gradient array."""
    return math.sqrt(sum(float((g * g).sum()) for g in grads.values()))


def clip_grad_norm(grads, max_norm) -> float:
    """Scale every gradient so the global L2 norm is at most max_norm; returns the norm before.
    grads: dict name -> array, or a module. The rule is torch.nn.utils.clip_grad_norm_'s: scale
    by max_norm / (norm + 1e-6) where that is below 1."""
    if hasattr(grads, "gradients"):
        grads = grads.gradients()
    max_norm = check_real("max_norm", max_norm)
    norm = grad_norm(grads)
    if not math.isfinite(norm):
        raise FloatingPointError(f"gradient norm is {norm}; clipping cannot repair non-finite gradients")
    s = max_norm / (norm + 1e-6)
    if s < 1:
        for g in grads.values():
            g *= s
    return norm
