"""The Elman forward/backward as PyTorch operators.

Two implementations of the same autograd contract:
- custom ops `gpu_bptt::elman_forward` / `gpu_bptt::elman_backward` (torch.library.custom_op, with
  fake kernels, autograd and autocast-to-float32 registrations): opaque to torch.compile, so
  `fullgraph=True` traces them without graph breaks;
- an autograd.Function pair, for PyTorch releases without `torch.library.custom_op`/
  `register_autocast`, or on request (`impl="function"`).

The forward saves its inputs and its output h as tensors (save_for_backward), so saved-tensor
hooks and in-place-modification checks apply. Double backward is refused with DOUBLE_BACKWARD.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import compute

DOUBLE_BACKWARD = ("gpu_bptt: double backward (a gradient of the Elman layer's gradient) is not "
                   "supported; differentiate once, or use torch.nn.RNN for higher-order gradients")

HAS_CUSTOM_OP = all(hasattr(torch.library, n) for n in
                    ("custom_op", "register_fake", "register_autograd", "register_autocast"))

# The order of the differentiable inputs, shared by both implementations.
_GRAD_INPUTS = ("x", "W", "V", "b", "h0")


def _refuse_double_backward(*args, **kwargs):
    raise RuntimeError(DOUBLE_BACKWARD)


def _select(grads, needs, inputs):
    """Keep the gradient of each input that needs one (None for the others), laid out like its
    input: W and V are usually transposed views of nn.RNN-shaped parameters, and a gradient in the
    parameter's own layout passes AccumulateGrad and DDP's buckets without another copy."""
    out = []
    for g, need, t in zip(grads, needs, inputs):
        if not need:
            g = None
        elif t is not None and t.dim() == 2 and g.stride() != t.stride():
            g = torch.empty_like(t).copy_(g)  # empty_like keeps a dense input's strides
        out.append(g)
    return tuple(out)


# -- custom ops ------------------------------------------------------------------------------------
if HAS_CUSTOM_OP:
    Tensor = torch.Tensor

    @torch.library.custom_op("gpu_bptt::elman_forward", mutates_args=())
    def elman_forward_op(x: Tensor, W: Tensor, V: Tensor, b: Optional[Tensor], h0: Optional[Tensor],
                         lengths: Optional[Tensor], activation: str, backend: str,
                         algo: str) -> tuple[Tensor, Tensor]:
        return compute.forward(x, W, V, b, h0, lengths, activation, backend, algo)

    @elman_forward_op.register_fake
    def _(x, W, V, b, h0, lengths, activation, backend, algo):
        T, B, _ = x.shape
        H = W.shape[1]
        return x.new_empty((T, B, H)), x.new_empty((B, H))

    @torch.library.custom_op("gpu_bptt::elman_backward", mutates_args=())
    def elman_backward_op(dh: Optional[Tensor], dh_last: Optional[Tensor], x: Tensor, W: Tensor,
                          V: Tensor, h0: Optional[Tensor], h: Tensor, lengths: Optional[Tensor],
                          activation: str, backend: str, algo: str,
                          need_dx: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return compute.backward(dh, dh_last, x, W, V, h0, h, lengths, activation, backend, algo,
                                need_dx)

    @elman_backward_op.register_fake
    def _(dh, dh_last, x, W, V, h0, h, lengths, activation, backend, algo, need_dx):
        T, B, H = h.shape
        return (x.new_empty(x.shape if need_dx else (0,)), W.new_empty(W.shape), V.new_empty(V.shape),
                h.new_empty((H,)), h.new_empty((B, H)))

    def _setup_context(ctx, inputs, output):
        x, W, V, b, h0, lengths, activation, backend, algo = inputs
        ctx.save_for_backward(x, W, V, h0, output[0], lengths)
        ctx.meta = (activation, backend, algo)

    def _backward(ctx, dh, dh_last):
        x, W, V, h0, h, lengths = ctx.saved_tensors
        needs = ctx.needs_input_grad[:len(_GRAD_INPUTS)]
        if not any(needs):
            return (None,) * 9
        grads = elman_backward_op(dh, dh_last, x, W, V, h0, h, lengths, *ctx.meta, needs[0])
        return _select(grads, needs, (x, W, V, None, h0)) + (None,) * 4

    torch.library.register_autograd("gpu_bptt::elman_forward", _backward,
                                    setup_context=_setup_context)
    torch.library.register_autograd("gpu_bptt::elman_backward", _refuse_double_backward,
                                    setup_context=lambda ctx, inputs, output: None)
    for _device in ("cpu", "cuda"):
        torch.library.register_autocast("gpu_bptt::elman_forward", _device, torch.float32)


# -- autograd.Function fallback --------------------------------------------------------------------
class ElmanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W, V, b, h0, lengths, activation, backend, algo):
        h, h_last = compute.forward(x, W, V, b, h0, lengths, activation, backend, algo)
        ctx.save_for_backward(x, W, V, h0, h, lengths)
        ctx.meta = (activation, backend, algo)
        return h, h_last

    @staticmethod
    def backward(ctx, dh, dh_last):
        x, W, V, h0, h, lengths = ctx.saved_tensors
        needs = ctx.needs_input_grad[:len(_GRAD_INPUTS)]
        if not any(needs):
            return (None,) * 9
        grads = ElmanBackwardFunction.apply(dh, dh_last, x, W, V, h0, h, lengths, *ctx.meta,
                                            needs[0])
        return _select(grads, needs, (x, W, V, None, h0)) + (None,) * 4


class ElmanBackwardFunction(torch.autograd.Function):
    """The backward as its own node, so that differentiating it raises DOUBLE_BACKWARD."""

    @staticmethod
    def forward(ctx, dh, dh_last, x, W, V, h0, h, lengths, activation, backend, algo, need_dx):
        return compute.backward(dh, dh_last, x, W, V, h0, h, lengths, activation, backend, algo,
                                need_dx)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(DOUBLE_BACKWARD)
