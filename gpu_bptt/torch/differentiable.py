"""The Elman forward and backward as a time loop of torch operations: differentiable to any order
and batched by torch.func.vmap, where the core's arrays are neither.

The math is the core's (docs/architecture.md §1, padded steps included: they are *selected* away
with torch.where, so NaN or inf there reaches nothing). The layer runs these only where the core
cannot serve: the backward when a graph of it is wanted (create_graph=True: double backward,
torch.func.grad, jacrev), a backward under vmap (batched gradients), a forward under vmap with
batched weights, and an empty batch (B = 0), which the core refuses. First-order training never
comes here.
"""
from __future__ import annotations

import torch

# f(u) and f'(u) from h = f(u), as in gpu_bptt/activations.py (the definition), on tensors.
_F = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda u: u}
_DF = {"tanh": lambda h: 1 - h * h, "relu": lambda h: (h > 0).to(h.dtype),
       "sigmoid": lambda h: h * (1 - h), "identity": torch.ones_like}


def step_masks(T, lengths, device):
    """For each t, (valid, last): (B, 1) masks of the examples with t < lengths[b] and of those whose
    last step is t; None for a batch without lengths (every step valid, the last one is T-1)."""
    if lengths is None:
        return [(None, t == T - 1) for t in range(T)]
    lengths = lengths.to(device)[:, None]
    return [(t < lengths, t == lengths - 1) for t in range(T)]


def flip_valid(a, lengths):
    """a (T, B, ...) with each example's valid prefix a[:lengths[b], b] in reverse order, padded
    steps in place: its own inverse. The reversed direction is the forward one on flipped
    sequences (docs/architecture.md §1); here, in differentiable torch operations."""
    if a is None:
        return None
    if lengths is None:
        return a.flip(0)
    T, B = a.shape[:2]
    t = torch.arange(T, device=a.device)[:, None]
    n = lengths.to(a.device)[None, :]
    return a[torch.where(t < n, n - 1 - t, t), torch.arange(B, device=a.device)]


def forward(x, W, V, b, h0, lengths, activation, reverse=False):
    """-> (h (T, B, H), h_last (B, H)). x (T, B, I); W (I, H); V (H, H); b (H,) or None;
    h0 (B, H) or None (zeros); lengths (B,) integer tensor in 1..T, or None. reverse: the
    reversed direction (each example from its last valid step down to 0; h_last is h[0])."""
    if reverse:
        h, h_last = forward(flip_valid(x, lengths), W, V, b, h0, lengths, activation)
        return flip_valid(h, lengths), h_last
    T, B, _ = x.shape
    f = _F[activation]
    p = x @ W if b is None else x @ W + b
    prev = x.new_zeros((B, W.shape[-1])) if h0 is None else h0
    last = prev
    outs = []
    for t, (valid, is_last) in enumerate(step_masks(T, lengths, x.device)):
        h = f(p[t] + prev @ V)
        if valid is not None:
            h = torch.where(valid, h, 0)
            last = torch.where(is_last, h, last)
        outs.append(h)
        prev = h
    return torch.stack(outs), (outs[-1] if lengths is None else last)


def backward(dh, dh_last, x, W, V, h0, h, lengths, activation, reverse=False):
    """-> (dx, dW, dV, db, dh0), the gradients of forward above, themselves differentiable.
    dh (T, B, H) and dh_last (B, H) may each be None; h is forward's output."""
    if reverse:
        dx, dW, dV, db, dh0 = backward(flip_valid(dh, lengths), dh_last, flip_valid(x, lengths),
                                       W, V, h0, flip_valid(h, lengths), lengths, activation)
        return flip_valid(dx, lengths), dW, dV, db, dh0
    T, B, H = h.shape
    df = _DF[activation](h)
    du_next = h.new_zeros((B, H))
    dus = [None] * T
    steps = step_masks(T, lengths, h.device)
    for t in reversed(range(T)):
        valid, is_last = steps[t]
        g = du_next @ V.mT
        if dh is not None:
            g = g + dh[t]
        if dh_last is not None and is_last is not False:
            g = g + (dh_last if is_last is True else torch.where(is_last, dh_last, 0))
        du = g * df[t]
        if valid is not None:
            du = torch.where(valid, du, 0)
        dus[t] = du_next = du
    du = torch.stack(dus)
    first = h.new_zeros((1, B, H)) if h0 is None else h0[None]
    h_prev = torch.cat([first, h[:-1]])
    du2 = du.reshape(-1, H)  # (T·B, H): the weight gradients are one product over all steps
    dW = x.reshape(-1, x.shape[-1]).mT @ du2
    dV = h_prev.reshape(-1, H).mT @ du2
    return du @ W.mT, dW, dV, du.sum((0, 1)), du[0] @ V.mT
