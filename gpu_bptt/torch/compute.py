"""The Elman forward and backward on tensors: thin calls into the functional core.

Arguments are tensors in the project's convention (time-major; W (I, H), V (H, H), b (H,)). Both
functions are shared by the custom ops and by the autograd.Functions. Nothing here keeps an
array after returning: backward rebuilds its arrays from the saved tensors each time, so a cache
never outlives the memory it views (FSDP frees and re-gathers parameter storage between passes).

The launch plan is not rebuilt for the backward: the backend keeps the plan it made for the
forward's request (Backend.resolve_algo), and backward asks for it with the same request, which
also holds under torch.compile, where only tensors and plain arguments pass between the ops.
"""
from __future__ import annotations

from ..activations import check_activation
from ..cells import (ElmanCache, elman_backward, elman_backward_pair, elman_forward,
                     elman_forward_pair)
from ..backends import get_backend
from .exchange import running_on, to_array, to_tensor


def forward(x, W, V, b, h0, lengths, activation: str, backend: str, algo: str,
            reverse: bool = False):
    """-> (h (T, B, H), h_last (B, H)), new tensors on x's device, in x's dtype. reverse: the
    reversed direction (elman_forward's reverse)."""
    if x.shape[1] == 0 and x.shape[0] > 0:  # an empty batch, which the core refuses: empty
        check_activation(activation)           # results, as torch.nn.RNN gives
        H = W.shape[1]
        return x.new_zeros((x.shape[0], 0, H)), x.new_zeros((0, H))
    with running_on(x.device):
        out = elman_forward(to_array(x), to_array(W), to_array(V), to_array(b), to_array(h0),
                            activation=activation, lengths=to_array(lengths), backend=backend,
                            algo=algo, need_cache=False,  # backward rebuilds it from saved tensors
                            reverse=reverse)
        return to_tensor(out.h), to_tensor(out.h_last)


def backward(dh, dh_last, x, W, V, h0, h, lengths, activation: str, backend: str, algo: str,
             need_dx: bool = True, reverse: bool = False):
    """Gradients of the forward above. dh (T, B, H) and dh_last (B, H) may each be None.
    -> (dx, dW, dV, db, dh0); db is always computed (one reduction), whether or not b existed;
    without need_dx, dx is an empty tensor (its GEMM is skipped)."""
    T, B, H = h.shape
    if B == 0:  # an empty batch: every gradient is empty or zero
        return (x.new_zeros(x.shape if need_dx else (0,)), W.new_zeros(W.shape), V.new_zeros(V.shape),
                h.new_zeros((H,)), h.new_zeros((0, H)))
    bk = get_backend(backend)
    with running_on(x.device):
        hx = to_array(h)
        arrays = dict(x=to_array(x), W=to_array(W), V=to_array(V), h=hx,
                      h0=bk.xp.zeros((B, H), hx.dtype) if h0 is None else to_array(h0),
                      lengths=to_array(lengths))
        # The forward's request again: the backend hands back the plan the forward ran.
        plan = bk.resolve_algo(algo, T, B, H, hx.dtype, reverse=reverse)
        cache = ElmanCache.from_arrays(arrays, activation=activation, has_bias=True, algo=plan,
                                       backend=bk, reverse=reverse)
        g = elman_backward(to_array(dh), cache, dh_last=to_array(dh_last), need_dx=need_dx)
        dx = to_tensor(g.dx) if need_dx else x.new_empty(0)
        return (dx,) + tuple(to_tensor(a) for a in (g.dW, g.dV, g.db, g.dh0))


def forward_pair(x, fwd, rev, lengths, activation: str, backend: str, algo: str):
    """Both directions of a bidirectional layer together (the core's elman_forward_pair): fwd, rev
    are each direction's (W, V, b, h0). -> (h, h_last) of the forward direction, then of the
    reversed one: new tensors, bit for bit those of forward() in each direction."""
    if x.shape[1] == 0 and x.shape[0] > 0:  # an empty batch: forward's empty results
        return (forward(x, *fwd, lengths, activation, backend, algo)
                + forward(x, *rev, lengths, activation, backend, algo, True))
    with running_on(x.device):
        out = elman_forward_pair(to_array(x), tuple(to_array(t) for t in fwd),
                                 tuple(to_array(t) for t in rev), activation=activation,
                                 lengths=to_array(lengths), backend=backend, algo=algo,
                                 need_cache=False)
        return tuple(to_tensor(a) for o in (out.forward, out.reverse) for a in (o.h, o.h_last))


def backward_pair(ups, x, fwd, rev, lengths, activation: str, backend: str, algo: str,
                  need_dx: bool = True):
    """Gradients of forward_pair: ups = (dh, dh_last) of the forward direction, then of the
    reversed one (each may be None); fwd, rev: each direction's (W, V, h0, h). -> (dx, then dW,
    dV, db, dh0 of the forward direction, then of the reversed one); dx is the sum of both
    directions' (an empty tensor without need_dx)."""
    T, B, H = fwd[3].shape
    if B == 0:  # an empty batch: backward's empty or zero gradients
        gf = backward(*ups[:2], x, *fwd, lengths, activation, backend, algo, need_dx)
        gr = backward(*ups[2:], x, *rev, lengths, activation, backend, algo, need_dx, True)
        return (gf[0],) + gf[1:] + gr[1:]
    bk = get_backend(backend)
    with running_on(x.device):
        xa, lens = to_array(x), to_array(lengths)
        caches = []
        for (W, V, h0, h), reverse in zip((fwd, rev), (False, True)):
            ha = to_array(h)
            arrays = dict(x=xa, W=to_array(W), V=to_array(V), h=ha, lengths=lens,
                          h0=bk.xp.zeros((B, H), ha.dtype) if h0 is None else to_array(h0))
            plan = bk.resolve_algo(algo, T, B, H, ha.dtype, reverse=reverse)
            caches.append(ElmanCache.from_arrays(arrays, activation=activation, has_bias=True,
                                                 algo=plan, backend=bk, reverse=reverse))
        gf, gr = elman_backward_pair((to_array(ups[0]), to_array(ups[2])), caches,
                                     dh_last=(to_array(ups[1]), to_array(ups[3])),
                                     need_dx=need_dx)
        dx = to_tensor(gf.dx + gr.dx) if need_dx else x.new_empty(0)
        return (dx,) + tuple(to_tensor(a) for g in (gf, gr) for a in (g.dW, g.dV, g.db, g.dh0))
