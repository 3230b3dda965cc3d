"""The LSTM and GRU forward and backward on tensors: thin calls into the functional core (as
compute.py for Elman, whose notes hold here: nothing keeps an array after returning, the backward
rebuilds the cache from the saved tensors and gets the forward's plan back from the backend).

Each forward returns the core's outputs and then what its backward needs beyond them (c and the
gates), which the ops save as tensors. Each backward returns one gradient per forward input, in
the forward's order; a bias gradient is always computed (one reduction), dx is empty without
need_dx, dR empty without R. An empty batch (B = 0), which the core refuses: empty results from
the torch-op twin (gated_differentiable.py), zero gradients.
"""
from __future__ import annotations

import torch

from ..backends import get_backend
from ..cells import gru as core_gru
from ..cells import lstm as core_lstm
from . import gated_differentiable as twin
from .exchange import running_on, to_array, to_tensor


def _tensors(*arrays):
    return tuple(to_tensor(a) for a in arrays)


def _zero_grads(inputs, sizes, need_dx):
    """The gradients at B = 0: zeros shaped as each input (as `sizes` says where it is None)."""
    x = inputs[0]
    grads = [x.new_zeros(t.shape if t is not None else s) for t, s in zip(inputs, sizes)]
    if not need_dx:
        grads[0] = x.new_empty(0)
    return tuple(grads)


def _state(bk, t, shape, dtype):
    return bk.xp.zeros(shape, dtype) if t is None else to_array(t)


def lstm_forward(x, W, V, b, h0, c0, R, lengths, backend: str, algo: str, reverse: bool = False):
    """-> (h (T, B, Hs), h_last (B, Hs), c_last (B, H), c (T, B, H), gates (T, B, 4H)), new
    tensors on x's device, in x's dtype."""
    if x.shape[1] == 0:
        with torch.no_grad():
            return twin.lstm_forward(x, W, V, b, h0, c0, R, lengths)
    with running_on(x.device):
        out = core_lstm.lstm_forward(*(to_array(t) for t in (x, W, V, b, h0, c0)), R=to_array(R),
                                     lengths=to_array(lengths), backend=backend, algo=algo,
                                     reverse=reverse)
        return _tensors(out.h, out.h_last, out.c_last, out.cache.c, out.cache.gates)


def lstm_backward(dh, dh_last, dc_last, x, W, V, b, h0, c0, R, h, c, gates, lengths,
                  backend: str, algo: str, need_dx: bool = True, reverse: bool = False):
    """-> (dx, dW, dV, db, dh0, dc0, dR). dh, dh_last, dc_last may each be None; h, c, gates:
    lstm_forward's."""
    T, B, Hs = h.shape
    H = c.shape[2]
    if B == 0:
        return _zero_grads((x, W, V, b, h0, c0, R), (0, 0, 0, 4 * H, (0, Hs), (0, H), 0), need_dx)
    bk = get_backend(backend)
    with running_on(x.device):
        xa = to_array(x)  # its dtype is the call's (c is float32 for a 16-bit one)
        arrays = dict(x=xa, W=to_array(W), V=to_array(V), R=to_array(R), h=to_array(h),
                      h0=_state(bk, h0, (B, Hs), xa.dtype), c0=_state(bk, c0, (B, H), xa.dtype),
                      c=to_array(c), gates=to_array(gates), lengths=to_array(lengths))
        # The forward's request again: the backend hands back the plan the forward ran.
        plan = bk.resolve_algo(algo, T, B, H, xa.dtype, reverse=reverse, cell="lstm",
                               P=0 if R is None else R.shape[1])
        cache = core_lstm.LSTMCache.from_arrays(arrays, has_bias=True, algo=plan, backend=bk,
                                                reverse=reverse)
        g = core_lstm.lstm_backward(to_array(dh), cache, dh_last=to_array(dh_last),
                                    dc_last=to_array(dc_last), need_dx=need_dx)
        dx = to_tensor(g.dx) if need_dx else x.new_empty(0)
        dR = x.new_empty(0) if R is None else to_tensor(g.dR)
        return (dx,) + _tensors(g.dW, g.dV, g.db, g.dh0, g.dc0) + (dR,)


def gru_forward(x, W, V, b_x, b_h, h0, lengths, backend: str, algo: str, reverse: bool = False):
    """-> (h (T, B, H), h_last (B, H), gates (T, B, 4H)), new tensors on x's device, in x's
    dtype."""
    if x.shape[1] == 0:
        with torch.no_grad():
            return twin.gru_forward(x, W, V, b_x, b_h, h0, lengths)
    with running_on(x.device):
        out = core_gru.gru_forward(*(to_array(t) for t in (x, W, V, b_x, b_h, h0)),
                                   lengths=to_array(lengths), backend=backend, algo=algo,
                                   reverse=reverse)
        return _tensors(out.h, out.h_last, out.cache.gates)


def gru_backward(dh, dh_last, x, W, V, b_x, b_h, h0, h, gates, lengths, backend: str, algo: str,
                 need_dx: bool = True, reverse: bool = False):
    """-> (dx, dW, dV, db_x, db_h, dh0). dh, dh_last may each be None; h, gates: gru_forward's."""
    T, B, H = h.shape
    if B == 0:
        return _zero_grads((x, W, V, b_x, b_h, h0), (0, 0, 0, 3 * H, 3 * H, (0, H)), need_dx)
    bk = get_backend(backend)
    with running_on(x.device):
        hx = to_array(h)
        arrays = dict(x=to_array(x), W=to_array(W), V=to_array(V), h=hx,
                      h0=_state(bk, h0, (B, H), hx.dtype), gates=to_array(gates),
                      lengths=to_array(lengths))
        plan = bk.resolve_algo(algo, T, B, H, hx.dtype, reverse=reverse, cell="gru")
        cache = core_gru.GRUCache.from_arrays(arrays, has_b_x=True, has_b_h=True, algo=plan,
                                              backend=bk, reverse=reverse)
        g = core_gru.gru_backward(to_array(dh), cache, dh_last=to_array(dh_last), need_dx=need_dx)
        dx = to_tensor(g.dx) if need_dx else x.new_empty(0)
        return (dx,) + _tensors(g.dW, g.dV, g.db_x, g.db_h, g.dh0)
