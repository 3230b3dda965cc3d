"""The gated recurrent levels, LSTM and GRU, beside layers.Elman: the same conventions (time-major
arrays, parameters keyed by name with a "_reverse" twin per parameter for the second direction,
uniform ±1/sqrt(H) initialization as PyTorch's, lengths, bidirectional output with the forward
direction's features first). The cells' math is cells/lstm.py's and cells/gru.py's."""
from __future__ import annotations

import numpy as np

from ..cells import (gru, gru_backward, gru_backward_pair, gru_forward, gru_forward_pair, lstm,
                     lstm_backward, lstm_backward_pair, lstm_forward, lstm_forward_pair)
from ..cells.recompute import check_memory_option
from ..cells.sequence import check_algo
from ..validate import check_float_dtype, check_size
from . import init
from .layers import Leaf


class _Gated(Leaf):
    """What LSTM and GRU share: the parameters of each direction, the split of (2, B, ·) states
    and of (T, B, 2·) gradients into the two directions, and the running of both (together,
    through the cells' *_pair functions: docs/architecture.md §1, both directions together)."""

    STATES = ()    # the recurrent states a caller may pass and gets back: "h", and "c" for LSTM

    def __init__(self, input_size, hidden_size, shapes, *, bias, dtype, backend, rng, algo,
                 bidirectional, memory="full", checkpoint_every=None):
        """shapes: parameter name -> shape (biases' names start with "b", left out without bias)."""
        dtype = check_float_dtype(dtype)
        if not isinstance(bias, bool):
            raise TypeError(f"bias: expected a bool, got {type(bias).__name__}")
        if not isinstance(bidirectional, bool):
            raise TypeError(f"bidirectional: expected a bool, got {type(bidirectional).__name__}")
        check_algo(algo)
        self.memory, self.checkpoint_every = check_memory_option(memory, checkpoint_every)
        rng = np.random.default_rng(rng)
        k = 1 / np.sqrt(hidden_size)
        self.directions = ("", "_reverse") if bidirectional else ("",)
        params = {name + suffix: init.uniform(rng, shape, k, dtype)
                  for suffix in self.directions for name, shape in shapes.items()
                  if bias or not name.startswith("b")}
        super().__init__(backend, dtype, params)
        self.backend.check_algo(algo)
        self.input_size, self.hidden_size, self.algo = input_size, hidden_size, algo
        self.bidirectional = bidirectional
        self._caches = None

    def _state_size(self, state):
        return self.hidden_size

    def _per_direction(self, name, a, B, size):
        """[a] for one direction; a (2, B, size) split into its directions for two."""
        if not self.bidirectional or a is None:
            return [a] * len(self.directions)
        a = self.backend.asarray(a)
        if a.shape != (2, B, size):
            raise ValueError(f"{name}: expected shape (2, B, {size}) = (2, {B}, {size}) for a "
                             f"bidirectional level, got {tuple(a.shape)}")
        return [a[0], a[1]]

    def _joined(self, parts):
        """One direction's array, or both stacked on a new first axis."""
        return self.backend.xp.stack(parts) if self.bidirectional else parts[0]

    def forward(self, x, *, lengths=None, **states):
        """x (T, B, I) -> (T, B, F), or (T, B, 2F) bidirectional (F: the output features); keeps
        the caches for backward. states: h0 (and c0 for LSTM), (B, ·) or (2, B, ·)
        bidirectional. Sets h_last (and c_last) likewise."""
        x = self._input("x", x, self.input_size)
        B = x.shape[1]
        per = {s: self._per_direction(s + "0", states.get(s + "0"), B, self._state_size(s))
               for s in self.STATES}
        dirs = [self._direction(suffix, {s: per[s][i] for s in self.STATES})
                for i, suffix in enumerate(self.directions)]
        kw = dict(lengths=lengths, backend=self.backend, algo=self.algo, memory=self.memory,
                  checkpoint_every=self.checkpoint_every)
        outs = (self._forward_pair(x, *dirs, **kw) if self.bidirectional
                else [self._forward_one(x, dirs[0], **kw)])
        self._caches = [o.cache for o in outs]
        for s in self.STATES:
            setattr(self, s + "_last", self._joined([getattr(o, s + "_last") for o in outs]))
        if not self.bidirectional:
            return outs[0].h
        return self.backend.xp.concatenate([o.h for o in outs], axis=2)

    def backward(self, dh, *, need_dx=True, **last):
        """Accumulates the gradients of each direction's parameters; returns dx (T, B, I), or
        None without need_dx. last: dh_last (and dc_last for LSTM), shaped as h_last (c_last).
        Sets dh0 (and dc0), shaped as h0 (c0)."""
        if self._caches is None:
            raise RuntimeError("backward called before forward")
        B, F = self._caches[0].x.shape[1], self._state_size("h")
        if self.bidirectional and dh is not None:
            if dh.ndim != 3 or dh.shape[-1] != 2 * F:
                raise ValueError(f"dh: expected (T, B, {2 * F}) for a bidirectional level, got "
                                 f"{tuple(dh.shape)}")
            dhs = [dh[..., :F], dh[..., F:]]
        else:
            dhs = [dh] * len(self.directions)
        per = {s: self._per_direction(f"d{s}_last", last.get(f"d{s}_last"), B, self._state_size(s))
               for s in self.STATES}
        if self.bidirectional:
            gs = self._backward_pair(dhs, self._caches, need_dx=need_dx,
                                     **{f"d{s}_last": per[s] for s in self.STATES})
        else:
            gs = [self._backward(dhs[0], self._caches[0], need_dx=need_dx,
                                 **{f"d{s}_last": per[s][0] for s in self.STATES})]
        dx, d0 = None, {s: [] for s in self.STATES}
        for g, suffix in zip(gs, self.directions):
            for name, value in self._param_grads(g).items():
                if value is not None:
                    self._grads[name + suffix] += value
            for s in self.STATES:
                d0[s].append(getattr(g, f"d{s}0"))
            dx = g.dx if dx is None or g.dx is None else dx + g.dx
        for s in self.STATES:
            setattr(self, f"d{s}0", self._joined(d0[s]))
        return dx


class LSTM(_Gated):
    """LSTM level (cells/lstm.py): parameters W (I, 4H), V (H, 4H) or (P, 4H) with a projection,
    b (4H,) (torch's bias_ih + bias_hh in one), R (H, P) with proj_size P > 0; gate blocks
    i, f, g, o. The output (and h0, h_last) has P features with a projection, else H; c0 and
    c_last have H. bidirectional: as Elman's (output (T, B, 2·); states (2, B, ·)). memory,
    checkpoint_every: as Elman's."""

    STATES = ("h", "c")
    gates = lstm.G

    def __init__(self, input_size, hidden_size, *, proj_size=0, bias=True, dtype=np.float32,
                 backend=None, rng=None, algo="auto", bidirectional=False, memory="full",
                 checkpoint_every=None):
        I, H = check_size("input_size", input_size), check_size("hidden_size", hidden_size)
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)):
            raise TypeError(f"proj_size: expected an int, got {type(proj_size).__name__}")
        if not 0 <= proj_size < H:
            raise ValueError(f"proj_size: must be in 0..hidden_size-1 = 0..{H - 1} (0: no "
                             f"projection), got {proj_size}")
        P = int(proj_size)
        shapes = {"W": (I, 4 * H), "V": (P or H, 4 * H), "b": (4 * H,)}
        if P:
            shapes["R"] = (H, P)
        super().__init__(I, H, shapes, bias=bias, dtype=dtype, backend=backend, rng=rng, algo=algo,
                         bidirectional=bidirectional, memory=memory,
                         checkpoint_every=checkpoint_every)
        self.proj_size = P

    def _state_size(self, state):
        return self.proj_size if state == "h" and self.proj_size else self.hidden_size

    def forward(self, x, *, lengths=None, h0=None, c0=None):
        return super().forward(x, lengths=lengths, h0=h0, c0=c0)

    def backward(self, dh, *, dh_last=None, dc_last=None, need_dx=True):
        return super().backward(dh, need_dx=need_dx, dh_last=dh_last, dc_last=dc_last)

    _forward_pair = staticmethod(lstm_forward_pair)
    _backward = staticmethod(lstm_backward)
    _backward_pair = staticmethod(lstm_backward_pair)

    def _direction(self, suffix, states):
        """One direction's (W, V, b, h0, c0, R), as lstm_forward_pair takes them."""
        p = self._params
        return (p["W" + suffix], p["V" + suffix], p.get("b" + suffix), states["h"], states["c"],
                p.get("R" + suffix))

    @staticmethod
    def _forward_one(x, d, **kw):
        return lstm_forward(x, *d[:5], R=d[5], **kw)

    @staticmethod
    def _param_grads(g):
        return {"W": g.dW, "V": g.dV, "b": g.db, "R": g.dR}


class GRU(_Gated):
    """GRU level (cells/gru.py): parameters W (I, 3H), V (H, 3H), b_x and b_h (3H,) (torch's
    bias_ih and bias_hh); gate blocks r, z, n. bidirectional, memory, checkpoint_every: as
    Elman's."""

    STATES = ("h",)
    gates = gru.G

    def __init__(self, input_size, hidden_size, *, bias=True, dtype=np.float32, backend=None,
                 rng=None, algo="auto", bidirectional=False, memory="full",
                 checkpoint_every=None):
        I, H = check_size("input_size", input_size), check_size("hidden_size", hidden_size)
        shapes = {"W": (I, 3 * H), "V": (H, 3 * H), "b_x": (3 * H,), "b_h": (3 * H,)}
        super().__init__(I, H, shapes, bias=bias, dtype=dtype, backend=backend, rng=rng, algo=algo,
                         bidirectional=bidirectional, memory=memory,
                         checkpoint_every=checkpoint_every)

    def forward(self, x, *, lengths=None, h0=None):
        return super().forward(x, lengths=lengths, h0=h0)

    def backward(self, dh, *, dh_last=None, need_dx=True):
        return super().backward(dh, need_dx=need_dx, dh_last=dh_last)

    _forward_pair = staticmethod(gru_forward_pair)
    _backward = staticmethod(gru_backward)
    _backward_pair = staticmethod(gru_backward_pair)

    def _direction(self, suffix, states):
        """One direction's (W, V, b_x, b_h, h0), as gru_forward_pair takes them."""
        p = self._params
        return (p["W" + suffix], p["V" + suffix], p.get("b_x" + suffix), p.get("b_h" + suffix),
                states["h"])

    @staticmethod
    def _forward_one(x, d, **kw):
        return gru_forward(x, *d, **kw)

    @staticmethod
    def _param_grads(g):
        return {"W": g.dW, "V": g.dV, "b_x": g.db_x, "b_h": g.db_h}
