"""memory="recompute" (and "auto") for the drop-in modules (docs/architecture.md §1, memory): one
autograd.Function over the core's recompute forward and backward, for any cell. Its context keeps
the core's cache (the checkpoints, a state every k steps; the weights' copies) instead of saved
tensors; the core's digest guards x against in-place changes, as saved tensors would. The
gradients are memory="full"'s bit for bit. First-order only: where a graph of the backward is
wanted (create_graph, torch.func) use memory="full", whose ops are differentiable twice.
"""
from __future__ import annotations

import torch

from ..cells import (elman_backward, elman_forward, gru_backward, gru_forward, lstm_backward,
                     lstm_forward)
from .exchange import backend_name, running_on, to_array, to_tensor

#: per cell: (the core's forward(x, *params, **kw) -> output, the output's returned fields,
#: the core's backward(grads of those fields, cache) -> grads of x and params, in order)
CELLS = {
    "elman": (lambda x, W, V, b, h0, **kw: elman_forward(x, W, V, b, h0, **kw), ("h", "h_last"),
              lambda g, c: _grads(elman_backward(g[0], c, dh_last=g[1]),
                                  ("dx", "dW", "dV", "db", "dh0"))),
    "lstm": (lambda x, W, V, b, h0, c0, R, **kw: lstm_forward(x, W, V, b, h0, c0, R=R, **kw),
             ("h", "h_last", "c_last"),
             lambda g, c: _grads(lstm_backward(g[0], c, dh_last=g[1], dc_last=g[2]),
                                 ("dx", "dW", "dV", "db", "dh0", "dc0", "dR"))),
    "gru": (lambda x, W, V, b_x, b_h, h0, **kw: gru_forward(x, W, V, b_x, b_h, h0, **kw),
            ("h", "h_last"),
            lambda g, c: _grads(gru_backward(g[0], c, dh_last=g[1]),
                                ("dx", "dW", "dV", "db_x", "db_h", "dh0"))),
}


def _grads(g, names):
    return tuple(getattr(g, n) for n in names)


class Recomputed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cell, kw, x, *params):
        forward, fields, _ = CELLS[cell]
        with running_on(x.device):
            out = forward(to_array(x), *(to_array(p) for p in params), **kw)
            ctx.cache, ctx.cell, ctx.device = out.cache, cell, x.device
            ctx.absent = [p is None for p in params]
            # new tensors over the core's arrays (h_last, c_last: copies; h: the output)
            return tuple(to_tensor(getattr(out, f)) for f in fields)

    @staticmethod
    def backward(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError("memory='recompute' gives first-order gradients only; use "
                               "memory='full' for a graph of the backward (create_graph, "
                               "torch.func)")
        _, _, backward = CELLS[ctx.cell]
        with running_on(ctx.device):
            out = backward(tuple(None if g is None else to_array(g.contiguous()) for g in grads),
                           ctx.cache)
            ctx.cache = None  # the checkpoints go with the graph
            params = [None if absent else to_tensor(a) for a, absent in zip(out[1:], ctx.absent)]
            return (None, None, to_tensor(out[0]), *params)


def recomputed(cell, x, params, lengths, *, backend, algo, reverse, memory, checkpoint_every,
               activation=None):
    """The outputs (h, h_last[, c_last]) of one direction of one layer of `cell`, run with
    memory "recompute" or "auto"; params in the core's order (None where absent)."""
    kw = dict(lengths=to_array(None if lengths is None else lengths.cpu()),
              backend=backend_name(x.device, backend), algo=algo, reverse=reverse,
              memory=memory, checkpoint_every=checkpoint_every)
    if activation is not None:
        kw["activation"] = activation
    return Recomputed.apply(cell, kw, x, *params)
