"""The LSTM and GRU forwards as time loops of torch operations: differentiable to any order and
batched by torch.func.vmap, where the core's arrays are neither (as differentiable.py for Elman).

The math is the core's (gpu_bptt/cells/lstm.py, gru.py), padded steps included: they are *selected*
away with torch.where, so NaN or inf there reaches nothing. Each returns what the core's forward
returns and keeps for its backward, so that the ops (gated_ops.py) can serve any of their outputs
from here: the layer runs these where the core cannot serve (a backward with a graph, through
torch.func.vjp of these; a forward under vmap with batched weights; an empty batch).
"""
from __future__ import annotations

import torch

from .differentiable import flip_valid, step_masks


def _flipped(outs, lengths, time_major):
    return tuple(flip_valid(o, lengths) if tm else o for o, tm in zip(outs, time_major))


def lstm_forward(x, W, V, b, h0, c0, R, lengths, reverse=False):
    """-> (h (T, B, Hs), h_last (B, Hs), c_last (B, H), c (T, B, H), gates (T, B, 4H): the
    activated [i|f|g|o]). x (T, B, I); W (I, 4H); V (Hs, 4H); b (4H,) or None; h0 (B, Hs),
    c0 (B, H) or None (zeros); R (H, P) or None (Hs = P with it, else H); lengths (B,) or None."""
    if reverse:
        outs = lstm_forward(flip_valid(x, lengths), W, V, b, h0, c0, R, lengths)
        return _flipped(outs, lengths, (True, False, False, True, True))
    T, B, _ = x.shape
    H, Hs = W.shape[-1] // 4, V.shape[-2]
    p = x @ W if b is None else x @ W + b
    h = h_last = x.new_zeros((B, Hs)) if h0 is None else h0
    c = c_last = x.new_zeros((B, H)) if c0 is None else c0
    hs, cs, gs = [], [], []
    for t, (valid, is_last) in enumerate(step_masks(T, lengths, x.device)):
        i, f, g, o = (p[t] + h @ V).split(H, -1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        m = o * torch.tanh(c)
        h = m if R is None else m @ R
        gates = torch.cat([i, f, g, o], -1)
        if valid is not None:
            h, c, gates = (torch.where(valid, a, 0) for a in (h, c, gates))
            h_last, c_last = torch.where(is_last, h, h_last), torch.where(is_last, c, c_last)
        hs.append(h)
        cs.append(c)
        gs.append(gates)
    if lengths is None:
        h_last, c_last = hs[-1], cs[-1]
    return torch.stack(hs), h_last, c_last, torch.stack(cs), torch.stack(gs)


def gru_forward(x, W, V, b_x, b_h, h0, lengths, reverse=False):
    """-> (h (T, B, H), h_last (B, H), gates (T, B, 4H): [r|z|n|hn]). x (T, B, I); W (I, 3H);
    V (H, 3H); b_x, b_h (3H,) or None; h0 (B, H) or None (zeros); lengths (B,) or None."""
    if reverse:
        outs = gru_forward(flip_valid(x, lengths), W, V, b_x, b_h, h0, lengths)
        return _flipped(outs, lengths, (True, False, True))
    T, B, _ = x.shape
    H = W.shape[-1] // 3
    p = x @ W if b_x is None else x @ W + b_x
    h = h_last = x.new_zeros((B, H)) if h0 is None else h0
    hs, gs = [], []
    for t, (valid, is_last) in enumerate(step_masks(T, lengths, x.device)):
        xr, xz, xn = p[t].split(H, -1)
        hr, hz, hn = (h @ V if b_h is None else h @ V + b_h).split(H, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        gates = torch.cat([r, z, n, hn], -1)
        if valid is not None:
            h, gates = torch.where(valid, h, 0), torch.where(valid, gates, 0)
            h_last = torch.where(is_last, h, h_last)
        hs.append(h)
        gs.append(gates)
    if lengths is None:
        h_last = hs[-1]
    return torch.stack(hs), h_last, torch.stack(gs)
