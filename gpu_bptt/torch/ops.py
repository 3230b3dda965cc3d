"""The Elman forward/backward as PyTorch operators.

Two implementations of the same autograd contract:
- custom ops `gpu_bptt::elman_forward` / `gpu_bptt::elman_backward` (torch.library.custom_op, with
  fake kernels, autograd, vmap and autocast-to-float32 registrations): opaque to torch.compile,
  torch.export and torch.jit.trace, so they trace without graph breaks;
- autograd.Functions for eager calls (also on PyTorch releases without `torch.library.custom_op`/
  `register_autocast`): one for plain calls, one with setup_context and a vmap rule for calls
  under torch.func transforms.

The forward saves its inputs and its output h as tensors, so saved-tensor hooks and in-place
checks apply. The backward takes one of two paths:
- first order (grad mode off, plain tensors): the core's backward, the fast path;
- where a graph of the backward is wanted (create_graph=True, which torch.func always asks for),
  or under vmap (batched gradients): `differentiable.backward`, torch operations. Its input h is
  this op's own output, so a gradient of the gradient flows back through this op, and any order
  of derivative works.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import compute, differentiable

HAS_CUSTOM_OP = all(hasattr(torch.library, n) for n in
                    ("custom_op", "register_fake", "register_autograd", "register_autocast"))

# The order of the differentiable inputs, shared by both implementations.
_GRAD_INPUTS = ("x", "W", "V", "b", "h0")
_F = torch._C._functorch
# Tensors of a torch.func transform (vmap's batched tensors, grad's wrappers) or of the legacy
# batched-gradient vmap: the core cannot read them.
_WRAPPED = tuple(getattr(_F, n) for n in ("is_batchedtensor", "is_gradtrackingtensor",
                                          "is_legacy_batchedtensor") if hasattr(_F, n))


def needs_graph(tensors) -> bool:
    """Whether the backward must be torch operations: its graph is wanted, or a transform wraps
    its tensors."""
    return torch.is_grad_enabled() or any(
        t is not None and any(test(t) for test in _WRAPPED) for t in tensors)


def _gradients(ctx, dh, dh_last, fast):
    """The backward of both implementations; `fast` is the first-order backward (op or call)."""
    x, W, V, h0, h, lengths = ctx.saved_tensors
    needs = ctx.needs_input_grad[:len(_GRAD_INPUTS)]
    rest = (None,) * 5  # lengths, activation, backend, algo, reverse: no gradients
    if not any(needs):
        return (None,) * len(_GRAD_INPUTS) + rest
    activation, backend, algo, reverse = ctx.meta
    if needs_graph((dh, dh_last, x, W, V, h0, h)):
        grads = differentiable.backward(dh, dh_last, x, W, V, h0, h, lengths, activation, reverse)
        return tuple(g if need else None for g, need in zip(grads, needs)) + rest
    grads = fast(dh, dh_last, x, W, V, h0, h, lengths, activation, backend, algo, needs[0],
                 reverse)
    return select_grads(grads, needs, (x, W, V, None, h0)) + rest


def select_grads(grads, needs, inputs):
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


def _setup_context(ctx, inputs, output):
    x, W, V, b, h0, lengths, activation, backend, algo, *rest = inputs
    reverse = rest[0] if rest else False  # the op's default when a caller leaves it out
    ctx.save_for_backward(x, W, V, h0, output[0], lengths)
    ctx.meta = (activation, backend, algo, reverse)


def _vmap(apply, info, in_dims, x, W, V, b, h0, lengths, activation, backend, algo,
          reverse=False):
    """The forward over a batch of problems (torch.func.vmap). With shared weights, the problems'
    batches are one batch of n·B examples: one call of `apply`. With batched weights, the
    differentiable loop, vmapped."""
    n = info.batch_size
    dims = in_dims[:6]
    if dims[1:4] != (None, None, None):
        def one(x, W, V, b, h0, lengths):
            return differentiable.forward(x, W, V, b, h0, lengths, activation, reverse)

        return torch.vmap(one, in_dims=tuple(dims))(x, W, V, b, h0, lengths), (0, 0)

    def leading(t, d):  # the problem index first, expanded where t is shared
        return t.movedim(d, 0) if d is not None else t.expand(n, *t.shape)

    x = leading(x, dims[0])
    T, B = x.shape[1], x.shape[2]
    x = x.transpose(0, 1).reshape(T, n * B, x.shape[3])
    h0 = None if h0 is None else leading(h0, dims[4]).reshape(n * B, -1)
    lengths = None if lengths is None else leading(lengths, dims[5]).reshape(n * B)
    h, h_last = apply(x, W, V, b, h0, lengths, activation, backend, algo, reverse)
    return (h.unflatten(1, (n, B)), h_last.unflatten(0, (n, B))), (1, 0)


# -- custom ops ------------------------------------------------------------------------------------
if HAS_CUSTOM_OP:
    Tensor = torch.Tensor

    @torch.library.custom_op("gpu_bptt::elman_forward", mutates_args=())
    def elman_forward_op(x: Tensor, W: Tensor, V: Tensor, b: Optional[Tensor], h0: Optional[Tensor],
                         lengths: Optional[Tensor], activation: str, backend: str,
                         algo: str, reverse: bool = False) -> tuple[Tensor, Tensor]:
        return compute.forward(x, W, V, b, h0, lengths, activation, backend, algo, reverse)

    @elman_forward_op.register_fake
    def _(x, W, V, b, h0, lengths, activation, backend, algo, reverse=False):
        T, B, _ = x.shape
        H = W.shape[1]
        return x.new_empty((T, B, H)), x.new_empty((B, H))

    @torch.library.custom_op("gpu_bptt::elman_backward", mutates_args=())
    def elman_backward_op(dh: Optional[Tensor], dh_last: Optional[Tensor], x: Tensor, W: Tensor,
                          V: Tensor, h0: Optional[Tensor], h: Tensor, lengths: Optional[Tensor],
                          activation: str, backend: str, algo: str, need_dx: bool,
                          reverse: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return compute.backward(dh, dh_last, x, W, V, h0, h, lengths, activation, backend, algo,
                                need_dx, reverse)

    @elman_backward_op.register_fake
    def _(dh, dh_last, x, W, V, h0, h, lengths, activation, backend, algo, need_dx, reverse=False):
        T, B, H = h.shape
        return (x.new_empty(x.shape if need_dx else (0,)), W.new_empty(W.shape), V.new_empty(V.shape),
                h.new_empty((H,)), h.new_empty((B, H)))

    torch.library.register_autograd(
        "gpu_bptt::elman_forward", lambda ctx, dh, dh_last: _gradients(ctx, dh, dh_last, elman_backward_op),
        setup_context=_setup_context)
    for _device in ("cpu", "cuda"):
        torch.library.register_autocast("gpu_bptt::elman_forward", _device, torch.float32)
    if hasattr(torch.library, "register_vmap"):  # PyTorch >= 2.4
        torch.library.register_vmap(
            "gpu_bptt::elman_forward", lambda info, in_dims, *args: _vmap(elman_forward_op, info, in_dims, *args))


# -- autograd.Functions ---------------------------------------------------------------------------
class ElmanFunction(torch.autograd.Function):
    """Eager calls outside torch.func. Its forward takes ctx: a Function with a separate
    setup_context has its arguments bound by inspect.signature at each apply (~30 µs a call)."""

    @staticmethod
    def forward(ctx, *args):
        out = compute.forward(*args)
        _setup_context(ctx, args, out)
        return out

    @staticmethod
    def backward(ctx, dh, dh_last):
        return _gradients(ctx, dh, dh_last, compute.backward)


class ElmanTransformFunction(torch.autograd.Function):
    """The same under torch.func transforms, which need forward and setup_context apart, and a
    vmap rule."""

    @staticmethod
    def forward(x, W, V, b, h0, lengths, activation, backend, algo, reverse):
        return compute.forward(x, W, V, b, h0, lengths, activation, backend, algo, reverse)

    setup_context = staticmethod(_setup_context)
    backward = ElmanFunction.backward

    @staticmethod
    def vmap(info, in_dims, *args):
        return _vmap(ElmanTransformFunction.apply, info, in_dims, *args)


# -- both directions of a bidirectional layer together (eager calls) -------------------------------
class ElmanPairFunction(torch.autograd.Function):
    """Both directions of a bidirectional layer in one autograd node, run together by the core
    (elman_forward_pair: side by side on the GPU). Inputs: x, the forward direction's W, V, b, h0,
    the reversed one's, lengths, activation, backend, algo. Outputs: h, h_last of the forward
    direction, then of the reversed one. Its backward is each direction's ElmanFunction backward,
    the two first-order ones run together by elman_backward_pair."""

    @staticmethod
    def forward(ctx, x, Wf, Vf, bf, h0f, Wr, Vr, br, h0r, lengths, activation, backend, algo):
        out = compute.forward_pair(x, (Wf, Vf, bf, h0f), (Wr, Vr, br, h0r), lengths, activation,
                                   backend, algo)
        ctx.save_for_backward(x, Wf, Vf, h0f, out[0], Wr, Vr, h0r, out[2], lengths)
        ctx.meta = (activation, backend, algo)
        return out

    @staticmethod
    def backward(ctx, dhf, dlf, dhr, dlr):
        x, Wf, Vf, h0f, hf, Wr, Vr, h0r, hr, lengths = ctx.saved_tensors
        activation, backend, algo = ctx.meta
        nf, nr = ctx.needs_input_grad[1:5], ctx.needs_input_grad[5:9]
        need_x = ctx.needs_input_grad[0]
        rest = (None,) * 4  # lengths, activation, backend, algo
        if not (need_x or any(nf) or any(nr)):
            return (None,) * 9 + rest
        if needs_graph((dhf, dlf, dhr, dlr, x, Wf, Vf, h0f, hf, Wr, Vr, h0r, hr)):
            gf = differentiable.backward(dhf, dlf, x, Wf, Vf, h0f, hf, lengths, activation)
            gr = differentiable.backward(dhr, dlr, x, Wr, Vr, h0r, hr, lengths, activation, True)
            return ((gf[0] + gr[0] if need_x else None,)
                    + tuple(g if n else None for g, n in zip(gf[1:] + gr[1:], nf + nr)) + rest)
        g = compute.backward_pair((dhf, dlf, dhr, dlr), x, (Wf, Vf, h0f, hf), (Wr, Vr, h0r, hr),
                                  lengths, activation, backend, algo, need_x)
        return ((g[0] if need_x else None,) + select_grads(g[1:5], nf, (Wf, Vf, None, h0f))
                + select_grads(g[5:9], nr, (Wr, Vr, None, h0r)) + rest)
