"""Higher-order and batched differentiation: gradgradcheck, double backward through the layer,
torch.func.vmap, jacrev, per-sample gradients and gradcheck's batched gradients, against
torch.nn.RNN (or finite differences) in float64."""
import pytest

from ..skips import TORCH, require_emulator, skip
from ..tolerances import GRADCHECK
from .common import F64, assert_close, assert_gradient_penalty_equal, gt, torch, twins

func = torch.func
IMPLS = ["function", "custom_op"]


def _impl(impl):
    if impl == "custom_op" and not gt.HAS_CUSTOM_OP:
        skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op")
    return impl


def problem(T=4, B=3, I=2, H=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = dict(x=(T, B, I), W=(I, H), V=(H, H), b=(H,), h0=(B, H))
    scale = dict(x=1.0, W=0.5, V=0.5, b=0.3, h0=0.5)
    return {k: (torch.randn(s, generator=g, dtype=F64) * scale[k]).requires_grad_()
            for k, s in shapes.items()}


# The emulator runs each forward in a few ms, and gradgradcheck calls it ~100 times: two cases.
@pytest.mark.parametrize("impl, backend, activation", [
    (impl, "numpy", act) for impl in IMPLS for act in ("tanh", "sigmoid")] + [
    ("function", "emulator", "tanh"), ("custom_op", "emulator", "sigmoid")])
def test_gradgradcheck(impl, backend, activation):
    """Second derivatives against finite differences of the first, padded steps included."""
    _impl(impl)
    if backend == "emulator":
        require_emulator()
    p = problem(T=3, B=3, I=2, H=2)
    lengths = torch.tensor([3, 1, 2])

    def f(x, W, V, b, h0):
        return gt.elman(x, W, V, b, h0, lengths, activation=activation, backend=backend, impl=impl)

    assert torch.autograd.gradgradcheck(f, tuple(p.values()), **GRADCHECK)


@pytest.mark.parametrize("impl", IMPLS)
def test_batched_gradcheck(impl):
    """gradcheck(check_batched_grad=True): the backward under vmap."""
    _impl(impl)
    p = problem()
    lengths = torch.tensor([2, 4, 3])

    def f(x, W, V, b, h0):
        return gt.elman(x, W, V, b, h0, lengths, impl=impl)

    assert torch.autograd.gradcheck(f, tuple(p.values()), check_batched_grad=True, **GRADCHECK)


def test_double_backward_through_the_layer_equals_nn_rnn():
    """A gradient penalty (the norm of dL/dx, differentiated again), two layers, packed-free."""
    ours, ref = twins(3, 4, num_layers=2, nonlinearity="tanh")
    assert_gradient_penalty_equal(ours, ref)


def test_first_order_keeps_the_core_backward(monkeypatch):
    """The torch-operation backward runs only where a graph of it is wanted."""
    calls = []
    real = gt.differentiable.backward
    monkeypatch.setattr(gt.differentiable, "backward", lambda *a: calls.append(1) or real(*a))
    ours, _ = twins(3, 4)
    out, _ = ours(torch.randn(5, 2, 3, dtype=F64, requires_grad=True))
    out.sum().backward()
    assert calls == []


@pytest.mark.parametrize("impl", IMPLS)
def test_vmap_over_inputs_equals_nn_rnn_per_input(impl, monkeypatch):
    """vmap over a batch of (input, h0) pairs: one merged call, the results of calling torch.nn.RNN
    on each pair (nn.RNN itself has no batching rule)."""
    _impl(impl)
    if impl == "custom_op":
        monkeypatch.setattr(gt.functional, "traced", lambda x: True)  # the op in eager mode
    ours, ref = twins(3, 4, num_layers=2)
    g = torch.Generator().manual_seed(4)
    xs = torch.randn(6, 5, 2, 3, generator=g, dtype=F64)
    hs = torch.randn(6, 2, 2, 4, generator=g, dtype=F64)
    calls = []
    real = gt.compute.forward
    monkeypatch.setattr(gt.compute, "forward", lambda *a: calls.append(a[0].shape) or real(*a))
    out, h_n = func.vmap(ours)(xs, hs)
    assert calls == [(5, 12, 3), (5, 12, 4)], "one call per layer over the merged batch"
    for n in range(len(xs)):
        want_out, want_h = ref(xs[n], hs[n])
        assert_close(f"output {n}", out[n].detach(), want_out.detach(), atol=1e-10)
        assert_close(f"h_n {n}", h_n[n].detach(), want_h.detach(), atol=1e-10)


def test_vmap_with_batched_weights():
    """vmap over weights (an ensemble through functional_call) against each member run alone."""
    ours, _ = twins(3, 4)
    g = torch.Generator().manual_seed(5)
    stacked = {k: v.detach() + 0.1 * torch.randn((3,) + v.shape, generator=g, dtype=F64)
               for k, v in ours.named_parameters()}
    x = torch.randn(5, 2, 3, generator=g, dtype=F64)
    out = func.vmap(lambda p: func.functional_call(ours, p, (x,))[0])(stacked)
    for n in range(3):
        member = {k: v[n] for k, v in stacked.items()}
        want = func.functional_call(ours, member, (x,))[0]
        assert_close(f"member {n}", out[n].detach(), want.detach(), atol=1e-10)


def test_jacrev_equals_nn_rnn():
    ours, ref = twins(3, 4)
    x = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(6), dtype=F64)
    jac = [func.jacrev(lambda t, m=m: m(t)[0])(x) for m in (ours, ref)]
    assert_close("jacobian", jac[0].detach(), jac[1].detach(), atol=1e-10)


def test_per_sample_gradients_equal_nn_rnn():
    """vmap(grad(loss)) over the examples of a batch, as functorch/Opacus compute per-sample
    gradients, against torch.nn.RNN's gradient of each example alone."""
    ours, ref = twins(3, 4, num_layers=2, batch_first=True)
    g = torch.Generator().manual_seed(7)
    xs, ys = torch.randn(5, 6, 3, generator=g, dtype=F64), torch.randn(5, 4, generator=g, dtype=F64)
    params = {k: v.detach() for k, v in ours.named_parameters()}

    def loss(p, x, y):
        out, h_n = func.functional_call(ours, p, (x[None],))
        return ((out[0, -1] - y) ** 2).sum() + h_n.pow(2).sum()

    per_sample = func.vmap(func.grad(loss), in_dims=(None, 0, 0))(params, xs, ys)
    for n in range(len(xs)):
        ref.zero_grad()
        out, h_n = ref(xs[n][None])
        (((out[0, -1] - ys[n]) ** 2).sum() + h_n.pow(2).sum()).backward()
        for k, q in ref.named_parameters():
            assert_close(f"example {n}: d{k}", per_sample[k][n], q.grad, atol=1e-10)
