"""Levels of the seed's network: a recurrent level (Elman), a per-timestep feed-forward level
(Dense), dropout between levels, and a container that stacks them. Arrays are time-major
(T, B, features).

Each layer owns its parameters and gradient buffers (`parameters()`, `gradients()`, keyed by
name); `backward` accumulates into the gradient buffers, `zero_grad` clears them. `train()` and
`eval()` set the mode (only Dropout behaves differently); a new module is in training mode.
"""
from __future__ import annotations

import numpy as np

from .. import activations
from ..backends import get_backend
from ..cells import elman_backward, elman_backward_pair, elman_forward, elman_forward_pair
from ..cells.recompute import check_memory_option
from ..cells.sequence import check_algo
from ..validate import check_float_dtype, check_real, check_size
from . import init


class Module:
    backend = None
    training = True

    def train(self, mode=True):
        """Training mode (mode=True) or evaluation mode; returns the module."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode: expected a bool, got {type(mode).__name__}")
        self.training = mode
        for child in getattr(self, "layers", ()):
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def parameters(self) -> dict:
        return {}

    def gradients(self) -> dict:
        return {}

    def zero_grad(self):
        for g in self.gradients().values():
            g[...] = 0


class Leaf(Module):
    """A layer with its own named parameters."""

    def __init__(self, backend, dtype, params: dict):
        self.backend = get_backend(backend)
        self.dtype = np.dtype(dtype)
        self._params = {k: self.backend.asarray(v) for k, v in params.items() if v is not None}
        self._grads = {k: self.backend.xp.zeros_like(v) for k, v in self._params.items()}

    def parameters(self):
        return self._params

    def gradients(self):
        return self._grads

    def _input(self, name, x, nfeat):
        x = self.backend.asarray(x)
        if x.ndim != 3 or x.shape[2] != nfeat:
            raise ValueError(f"{name}: expected shape (T, B, {nfeat}), got {tuple(x.shape)}")
        if x.dtype != self.dtype:
            raise TypeError(f"{name}: expected {self.dtype} (the layer's dtype), got {x.dtype}")
        return x


class Elman(Leaf):
    """Recurrent level r: h[t] = f(x[t] @ W + h[t-1] @ V + b).

    init_V: "uniform" (±1/sqrt(H), default) or "identity" (IRNN, for relu).
    bidirectional=True adds a second direction (W_reverse, V_reverse, b_reverse) that runs each
    example from its last valid step down to 0; the output is (T, B, 2H), the forward direction's
    features first, as torch.nn.RNN; h0, h_last and the backward's dh_last are then (2, B, H).
    memory, checkpoint_every: as elman_forward's ("recompute": the level keeps a checkpoint every
    k steps between forward and backward instead of h; the same gradients)."""

    def __init__(self, input_size, hidden_size, *, activation="tanh", bias=True, init_V="uniform",
                 dtype=np.float32, backend=None, rng=None, algo="auto", bidirectional=False,
                 memory="full", checkpoint_every=None):
        I, H = check_size("input_size", input_size), check_size("hidden_size", hidden_size)
        dtype = check_float_dtype(dtype)
        if init_V not in ("uniform", "identity"):
            raise ValueError(f"init_V: expected 'uniform' or 'identity', got {init_V!r}")
        if not isinstance(bidirectional, bool):
            raise TypeError(f"bidirectional: expected a bool, got {type(bidirectional).__name__}")
        self.activation = activations.check_activation(activation)
        check_algo(algo)
        self.memory, self.checkpoint_every = check_memory_option(memory, checkpoint_every)
        rng = np.random.default_rng(rng)
        k = 1 / np.sqrt(H)
        params = {}
        for suffix in ("", "_reverse") if bidirectional else ("",):
            params["W" + suffix] = init.uniform(rng, (I, H), k, dtype)
            params["V" + suffix] = (init.identity(H, dtype) if init_V == "identity"
                                    else init.uniform(rng, (H, H), k, dtype))
            params["b" + suffix] = init.uniform(rng, (H,), k, dtype) if bias else None
        super().__init__(backend, dtype, params)
        self.backend.check_algo(algo)
        self.input_size, self.hidden_size, self.algo = I, H, algo
        self.bidirectional = bidirectional
        self.directions = ("", "_reverse") if bidirectional else ("",)
        self._caches = None

    def forward(self, x, *, lengths=None, h0=None):
        """x (T, B, I) -> h (T, B, H), or (T, B, 2H) bidirectional; keeps the caches for
        backward. Also sets self.h_last."""
        x = self._input("x", x, self.input_size)
        h0s = self._per_direction("h0", h0, x.shape[1])
        kw = dict(activation=self.activation, lengths=lengths, backend=self.backend,
                  algo=self.algo, memory=self.memory, checkpoint_every=self.checkpoint_every)
        if not self.bidirectional:
            out = elman_forward(x, *self._weights(""), h0s[0], **kw)
            self._caches = [out.cache]
            self.h_last = out.h_last
            return out.h
        # both directions together: side by side on the GPU (elman_forward_pair)
        pair = elman_forward_pair(x, self._weights("") + (h0s[0],),
                                  self._weights("_reverse") + (h0s[1],), **kw)
        self.pair_plan = pair.plan  # how they ran (its label and reason)
        outs = (pair.forward, pair.reverse)
        self._caches = [o.cache for o in outs]
        xp = self.backend.xp
        self.h_last = xp.stack([o.h_last for o in outs])
        return xp.concatenate([o.h for o in outs], axis=2)

    def _weights(self, suffix):
        """(W, V, b) of one direction ("" or "_reverse"); b None without bias."""
        p = self._params
        return p["W" + suffix], p["V" + suffix], p.get("b" + suffix)

    def _per_direction(self, name, a, B):
        """[a] for one direction; a (2, B, H) split into its directions for two."""
        if not self.bidirectional or a is None:
            return [a] * len(self.directions)
        a = self.backend.asarray(a)
        if a.shape != (2, B, self.hidden_size):
            raise ValueError(f"{name}: expected shape (2, B, H) = (2, {B}, {self.hidden_size}) "
                             f"for a bidirectional level, got {tuple(a.shape)}")
        return [a[0], a[1]]

    def backward(self, dh, *, dh_last=None, need_dx=True):
        """Accumulates dW, dV, db (of each direction); returns dx (T, B, I), or None without
        need_dx (its GEMM is skipped: the bottom level's input gradient is rarely wanted). Sets
        self.dh0 ((2, B, H) bidirectional)."""
        if self._caches is None:
            raise RuntimeError("backward called before forward")
        H, B = self.hidden_size, self._caches[0].x.shape[1]
        if self.bidirectional and dh is not None:
            if dh.shape[-1] != 2 * H:
                raise ValueError(f"dh: expected (T, B, 2H) = (..., {2 * H}) for a bidirectional "
                                 f"level, got {tuple(dh.shape)}")
            dhs = [dh[..., :H], dh[..., H:]]
        else:
            dhs = [dh] * len(self.directions)
        dh_lasts = self._per_direction("dh_last", dh_last, B)
        if self.bidirectional:
            grads = elman_backward_pair(dhs, self._caches, dh_last=dh_lasts, need_dx=need_dx)
        else:
            grads = [elman_backward(dhs[0], self._caches[0], dh_last=dh_lasts[0],
                                    need_dx=need_dx)]
        dx, dh0 = None, []
        for suffix, g in zip(self.directions, grads):
            self._grads["W" + suffix] += g.dW
            self._grads["V" + suffix] += g.dV
            if g.db is not None:
                self._grads["b" + suffix] += g.db
            dh0.append(g.dh0)
            dx = g.dx if dx is None or g.dx is None else dx + g.dx
        self.dh0 = self.backend.xp.stack(dh0) if self.bidirectional else dh0[0]
        return dx


class Dense(Leaf):
    """Per-timestep level: y[t] = g(x[t] @ W + b), g one of the activations (default identity)."""

    def __init__(self, input_size, output_size, *, activation="identity", bias=True,
                 dtype=np.float32, backend=None, rng=None):
        I, O = check_size("input_size", input_size), check_size("output_size", output_size)
        dtype = check_float_dtype(dtype)
        self.activation = activations.check_activation(activation)
        rng = np.random.default_rng(rng)
        k = 1 / np.sqrt(I)
        W = init.uniform(rng, (I, O), k, dtype)
        b = init.uniform(rng, (O,), k, dtype) if bias else None
        super().__init__(backend, dtype, {"W": W, "b": b})
        self.input_size, self.output_size = I, O
        self._x = self._y = None

    def forward(self, x, *, lengths=None, h0=None):
        x = self._input("x", x, self.input_size)
        xp = self.backend.xp
        T, B, _ = x.shape
        y = xp.matmul(x.reshape(T * B, -1), self._params["W"]).reshape(T, B, -1)
        if "b" in self._params:
            y += self._params["b"]
        activations.apply(xp, self.activation, y, out=y)
        self._x, self._y = x, y
        return y

    def backward(self, dy, *, dh_last=None, need_dx=True):
        """Accumulates dW, db; returns dx (T, B, I), or None without need_dx."""
        if self._x is None:
            raise RuntimeError("backward called before forward")
        xp = self.backend.xp
        T, B, O = self._y.shape
        du = (dy * activations.derivative_from_output(xp, self.activation, self._y)).reshape(T * B, O)
        self._grads["W"] += xp.matmul(self._x.reshape(T * B, -1).T, du)
        if "b" in self._grads:
            self._grads["b"] += du.sum(axis=0)
        return xp.matmul(du, self._params["W"].T).reshape(T, B, -1) if need_dx else None


class Dropout(Module):
    """Between levels: in training mode each element is zeroed with probability p and the rest
    scaled by 1/(1-p) (so the expected output is the input); in evaluation mode the identity.
    rng: a seed or None; the mask is drawn on the backend with its own generator (NumPy's or
    CuPy's), so a seed repeats a run on one backend, not across backends."""

    def __init__(self, p=0.5, *, backend=None, rng=None):
        self.p = check_real("p", p, low=0.0, high=1.0, low_closed=True)
        self.backend = get_backend(backend)
        self._rng = self.backend.xp.random.default_rng(rng)
        self._scale = None

    def forward(self, x, *, lengths=None, h0=None):
        x = self.backend.asarray(x)
        if not self.training or self.p == 0.0:
            self._scale = None
            return x
        keep = self._rng.random(x.shape, dtype=x.dtype) >= self.p
        self._scale = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._scale

    def backward(self, dy, *, dh_last=None, need_dx=True):
        """dx = dy scaled by the forward's mask; nothing to accumulate."""
        if not need_dx:
            return None
        return dy if self._scale is None else dy * self._scale


class Sequential(Module):
    """Levels applied in order; parameters are named "<index>.<name>" (e.g. "0.W")."""

    def __init__(self, *layers):
        if not layers:
            raise ValueError("layers: at least one layer is required")
        names = {l.backend.name for l in layers}
        if len(names) > 1:
            raise ValueError(f"layers: all layers must share one backend, got {sorted(names)}")
        self.layers = list(layers)
        self.backend = layers[0].backend

    def parameters(self):
        return {f"{i}.{k}": v for i, l in enumerate(self.layers) for k, v in l.parameters().items()}

    def gradients(self):
        return {f"{i}.{k}": v for i, l in enumerate(self.layers) for k, v in l.gradients().items()}

    def forward(self, x, *, lengths=None):
        for l in self.layers:
            x = l.forward(x, lengths=lengths)
        return x

    def backward(self, dy, *, need_input_grad=True):
        """Back through every level; returns the input's gradient, or None without
        need_input_grad (the bottom level then skips that product)."""
        for i in range(len(self.layers) - 1, -1, -1):
            dy = self.layers[i].backward(dy, need_dx=need_input_grad or i > 0)
        return dy

    __call__ = forward
