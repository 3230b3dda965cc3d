"""The LSTM and GRU forward/backward as PyTorch operators: the same two implementations and the
same autograd contract as ops.py gives Elman (custom ops `gpu_bptt::lstm_forward`/`_backward`,
`gpu_bptt::gru_forward`/`_backward` for tracers; autograd.Functions for eager calls and
torch.func), written once over a `Cell` that lists each cell's inputs and outputs.

A forward returns the caller's outputs and then what the core's backward needs beyond them (c,
the gates); those are saved, marked non-differentiable, and dropped by gated_functional.py. The
backward takes one of two paths, chosen as ops.py chooses (`needs_graph`):
- first order on plain tensors: the core's backward (gated_compute.py), the fast path;
- where a graph of the backward is wanted (create_graph=True, torch.func) or under vmap:
  torch.func.vjp of the torch-op twin (gated_differentiable.py), recomputed from the saved
  inputs, so that every order of derivative and every transform composes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from . import gated_compute as compute
from . import gated_differentiable as twin
from .ops import HAS_CUSTOM_OP, needs_graph, select_grads

_META = 4  # lengths, backend, algo, reverse: after the differentiable inputs, no gradients


@dataclass(frozen=True)
class Cell:
    inputs: tuple          # the differentiable inputs, in the ops' order
    batch_dims: tuple      # each input's batch dimension (None: a weight, shared by the batch)
    out_batch_dims: tuple  # each output's batch dimension
    n_top: int             # the caller's outputs come first; the rest are kept for the backward
    saved: tuple           # the outputs the core's backward reads (indices)
    forward: Callable      # gated_compute's: (*inputs, lengths, backend, algo, reverse)
    backward: Callable     # gated_compute's: (*top grads, *inputs, *saved, lengths, backend, ...)
    twin: Callable         # gated_differentiable's: (*inputs, lengths, reverse)


# Outputs: LSTM (h, h_last, c_last | c, gates), GRU (h, h_last | gates).
LSTM = Cell(inputs=("x", "W", "V", "b", "h0", "c0", "R"),
            batch_dims=(1, None, None, None, 0, 0, None), out_batch_dims=(1, 0, 0, 1, 1),
            n_top=3, saved=(0, 3, 4), forward=compute.lstm_forward,
            backward=compute.lstm_backward, twin=twin.lstm_forward)
GRU = Cell(inputs=("x", "W", "V", "b_x", "b_h", "h0"), batch_dims=(1, None, None, None, None, 0),
           out_batch_dims=(1, 0, 1), n_top=2, saved=(0, 2), forward=compute.gru_forward,
           backward=compute.gru_backward, twin=twin.gru_forward)


def _setup_context(cell, ctx, inputs, output):
    n = len(cell.inputs)
    ctx.save_for_backward(*inputs[:n + 1], *(output[i] for i in cell.saved))
    ctx.meta = tuple(inputs[n + 1:])  # backend, algo, reverse
    ctx.mark_non_differentiable(*output[cell.n_top:])


def _gradients(cell, ctx, grads, fast):
    """The backward of both implementations; `fast` is the first-order backward (op or call)."""
    n = len(cell.inputs)
    saved = ctx.saved_tensors
    inputs, lengths, kept = saved[:n], saved[n], saved[n + 1:]
    needs = ctx.needs_input_grad[:n]
    rest = (None,) * _META
    if not any(needs):
        return (None,) * n + rest
    backend, algo, reverse = ctx.meta
    top = tuple(grads[:cell.n_top])
    if needs_graph(top + inputs):
        grads = _graph_backward(cell, top, inputs, lengths, reverse)
        return tuple(g if need else None for g, need in zip(grads, needs)) + rest
    grads = fast(*top, *inputs, *kept, lengths, backend, algo, needs[0], reverse)
    return select_grads(grads, needs, inputs) + rest


def _graph_backward(cell, top, inputs, lengths, reverse):
    """The gradients as torch operations: the vjp of the twin at the saved inputs."""
    present = [i for i, t in enumerate(inputs) if t is not None]

    def f(*ts):
        full = list(inputs)
        for i, t in zip(present, ts):
            full[i] = t
        return cell.twin(*full, lengths, reverse)[:cell.n_top]

    outs, pull = torch.func.vjp(f, *(inputs[i] for i in present))
    grads = pull(tuple(torch.zeros_like(o) if g is None else g for o, g in zip(outs, top)))
    full = [None] * len(inputs)
    for i, g in zip(present, grads):
        full[i] = g
    return full


def _vmap(cell, apply, info, in_dims, *args):
    """The forward over a batch of problems (torch.func.vmap). With shared weights, the problems'
    batches are one batch of n·B examples: one call of `apply`. With batched weights, the twin,
    vmapped."""
    n, k = len(cell.inputs), info.batch_size
    dims = in_dims[:n + 1]
    tensors, (backend, algo, reverse) = args[:n + 1], args[n + 1:]
    if any(d is not None for d, bd in zip(dims, cell.batch_dims) if bd is None):
        outs = torch.vmap(lambda *a: cell.twin(*a, reverse), in_dims=tuple(dims))(*tensors)
        return outs, (0,) * len(outs)
    B = None
    merged = []
    for t, d, bd in zip(tensors, dims, cell.batch_dims + (0,)):  # lengths: batch dimension 0
        if t is None or bd is None:
            merged.append(t)
            continue
        t = t.movedim(d, 0) if d is not None else t.expand(k, *t.shape)  # the problem index first
        t = t.movedim(0, bd)  # next to the batch dimension it merges with
        B = t.shape[bd + 1]
        merged.append(t.flatten(bd, bd + 1))
    outs = apply(*merged, backend, algo, reverse)
    return tuple(o.unflatten(d, (k, B)) for o, d in zip(outs, cell.out_batch_dims)), \
        cell.out_batch_dims


def _functions(cell, name):
    """The autograd.Functions of `cell`: one for plain eager calls (its forward takes ctx: a
    separate setup_context costs a signature binding per call), one for torch.func transforms."""

    class Plain(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            out = cell.forward(*args)
            _setup_context(cell, ctx, args, out)
            return out

        @staticmethod
        def backward(ctx, *grads):
            return _gradients(cell, ctx, grads, cell.backward)

    class Transform(torch.autograd.Function):
        @staticmethod
        def forward(*args):
            return cell.forward(*args)

        @staticmethod
        def setup_context(ctx, inputs, output):
            _setup_context(cell, ctx, inputs, output)

        backward = Plain.backward

        @staticmethod
        def vmap(info, in_dims, *args):
            return _vmap(cell, Transform.apply, info, in_dims, *args)

    Plain.__name__, Transform.__name__ = f"{name}Function", f"{name}TransformFunction"
    return Plain, Transform


LSTMFunction, LSTMTransformFunction = _functions(LSTM, "LSTM")
GRUFunction, GRUTransformFunction = _functions(GRU, "GRU")
# name -> (its Cell, Function, transform Function); OPS: name -> its forward custom op
CELLS = {"lstm": (LSTM, LSTMFunction, LSTMTransformFunction),
         "gru": (GRU, GRUFunction, GRUTransformFunction)}
OPS = {}


# -- custom ops ------------------------------------------------------------------------------------
def _register(cell, forward_op, backward_op):
    """Autograd, autocast and vmap registrations of a cell's forward op."""
    name = forward_op._qualname
    torch.library.register_autograd(
        name, lambda ctx, *grads: _gradients(cell, ctx, grads, backward_op),
        setup_context=lambda ctx, inputs, output: _setup_context(cell, ctx, inputs, output))
    for device in ("cpu", "cuda"):
        torch.library.register_autocast(name, device, torch.float32)
    if hasattr(torch.library, "register_vmap"):  # PyTorch >= 2.4
        torch.library.register_vmap(
            name, lambda info, in_dims, *args: _vmap(cell, forward_op, info, in_dims, *args))


if HAS_CUSTOM_OP:
    Tensor = torch.Tensor
    Opt = Optional[Tensor]

    @torch.library.custom_op("gpu_bptt::lstm_forward", mutates_args=())
    def lstm_forward_op(x: Tensor, W: Tensor, V: Tensor, b: Opt, h0: Opt, c0: Opt, R: Opt,
                        lengths: Opt, backend: str, algo: str,
                        reverse: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return compute.lstm_forward(x, W, V, b, h0, c0, R, lengths, backend, algo, reverse)

    @lstm_forward_op.register_fake
    def _(x, W, V, b, h0, c0, R, lengths, backend, algo, reverse):
        T, B, _ = x.shape
        H, Hs = W.shape[1] // 4, V.shape[0]
        return tuple(x.new_empty(s) for s in ((T, B, Hs), (B, Hs), (B, H), (T, B, H),
                                              (T, B, 4 * H)))

    @torch.library.custom_op("gpu_bptt::lstm_backward", mutates_args=())
    def lstm_backward_op(dh: Opt, dh_last: Opt, dc_last: Opt, x: Tensor, W: Tensor, V: Tensor,
                         b: Opt, h0: Opt, c0: Opt, R: Opt, h: Tensor, c: Tensor, gates: Tensor,
                         lengths: Opt, backend: str, algo: str, need_dx: bool, reverse: bool
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        return compute.lstm_backward(dh, dh_last, dc_last, x, W, V, b, h0, c0, R, h, c, gates,
                                     lengths, backend, algo, need_dx, reverse)

    @lstm_backward_op.register_fake
    def _(dh, dh_last, dc_last, x, W, V, b, h0, c0, R, h, c, gates, lengths, backend, algo,
          need_dx, reverse):
        B, H = c.shape[1:]
        shapes = (x.shape if need_dx else (0,), W.shape, V.shape, (4 * H,), (B, h.shape[2]),
                  (B, H), (0,) if R is None else R.shape)
        return tuple(x.new_empty(s) for s in shapes)

    @torch.library.custom_op("gpu_bptt::gru_forward", mutates_args=())
    def gru_forward_op(x: Tensor, W: Tensor, V: Tensor, b_x: Opt, b_h: Opt, h0: Opt,
                       lengths: Opt, backend: str, algo: str,
                       reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
        return compute.gru_forward(x, W, V, b_x, b_h, h0, lengths, backend, algo, reverse)

    @gru_forward_op.register_fake
    def _(x, W, V, b_x, b_h, h0, lengths, backend, algo, reverse):
        T, B, _ = x.shape
        H = W.shape[1] // 3
        return x.new_empty((T, B, H)), x.new_empty((B, H)), x.new_empty((T, B, 4 * H))

    @torch.library.custom_op("gpu_bptt::gru_backward", mutates_args=())
    def gru_backward_op(dh: Opt, dh_last: Opt, x: Tensor, W: Tensor, V: Tensor, b_x: Opt,
                        b_h: Opt, h0: Opt, h: Tensor, gates: Tensor, lengths: Opt, backend: str,
                        algo: str, need_dx: bool, reverse: bool
                        ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        return compute.gru_backward(dh, dh_last, x, W, V, b_x, b_h, h0, h, gates, lengths,
                                    backend, algo, need_dx, reverse)

    @gru_backward_op.register_fake
    def _(dh, dh_last, x, W, V, b_x, b_h, h0, h, gates, lengths, backend, algo, need_dx, reverse):
        T, B, H = h.shape
        shapes = (x.shape if need_dx else (0,), W.shape, V.shape, (3 * H,), (3 * H,), (B, H))
        return tuple(x.new_empty(s) for s in shapes)

    _register(LSTM, lstm_forward_op, lstm_backward_op)
    _register(GRU, gru_forward_op, gru_backward_op)
    OPS.update(lstm=lstm_forward_op, gru=gru_forward_op)
