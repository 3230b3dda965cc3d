"""gpu_bptt.torch.RNN(bidirectional=True) against torch.nn.RNN(bidirectional=True) in float64:
outputs (forward features first), h_n of shape (num_layers·2, B, H) and every gradient, for
batched, unbatched and packed inputs (unsorted lengths), batch_first, h0, dropout between layers;
on the emulator's step and persistent kernels; under gradgradcheck, vmap, torch.compile and
torch.export. The reversed direction alone: tests/test_reverse.py."""
import warnings

import pytest

from ..skips import TORCH, require_emulator, skip
from ..tolerances import GRADCHECK
from .common import (F64, assert_close, assert_same_grads, gt, torch, training_step, twins,
                     weighted_sum)

T, B, I, H = 6, 4, 3, 5
LENGTHS = torch.tensor([4, 6, 1, 6])  # unsorted, with a tie


def _run(m, kind, batch_first, with_h0, seed=5):
    return training_step(m, kind, batch_first, with_h0, seed, T=T, B=B, I=I, H=H, lengths=LENGTHS)


@pytest.mark.parametrize("kind", ["batched", "unbatched", "packed"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_bidirectional_equals_nn_rnn(kind, batch_first, with_h0):
    ours, ref = twins(I, H, num_layers=2, bidirectional=True, dropout=0.3, batch_first=batch_first)
    got = _run(ours, kind, batch_first, with_h0)
    want = _run(ref, kind, batch_first, with_h0)
    assert got[0].shape[-1] == 2 * H and got[1].shape[0] == 4
    for name, a, b in zip(("output", "h_n", "dx", "dh0"), got, want):
        if b is not None:
            assert_close(name, a.detach(), b.detach(), atol=1e-10)
    assert_same_grads(ours, ref)


@pytest.mark.parametrize("algo", ["step", "persistent"])
def test_bidirectional_on_the_emulator_kernels(algo):
    require_emulator()
    ref, _ = twins(I, H, num_layers=2, bidirectional=True)
    ours = gt.RNN(I, H, num_layers=2, bidirectional=True, dtype=F64, backend="emulator", algo=algo)
    ours.load_state_dict(ref.state_dict())
    got = _run(ours, "packed", False, True)
    want = _run(ref, "packed", False, True)
    for name, a, b in zip(("output", "h_n", "dx", "dh0"), got, want):
        assert_close(name, a.detach(), b.detach(), atol=1e-10)
    assert_same_grads(ours, ref)


@pytest.mark.parametrize("impl", ["function", "custom_op"])
def test_reverse_gradgradcheck(impl):
    """Second derivatives of the reversed direction against finite differences (padded steps
    included): the torch-op twin of the recurrence runs reversed too."""
    if impl == "custom_op" and not gt.HAS_CUSTOM_OP:
        skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op")
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(s, generator=g, dtype=F64).mul_(0.5).requires_grad_()
            for s in ((3, 3, 2), (2, 2), (2, 2), (2,), (3, 2))]
    lengths = torch.tensor([3, 1, 2])

    def f(x, W, V, b, h0):
        return gt.elman(x, W, V, b, h0, lengths, impl=impl, reverse=True)

    assert torch.autograd.gradgradcheck(f, tuple(args), **GRADCHECK)


@pytest.mark.parametrize("impl", ["function", "custom_op"])
def test_reverse_backward_with_a_graph_equals_the_fast_one(impl):
    """create_graph=True takes the torch-op backward, plain first order the core's: the same
    gradients of the reversed direction (gradgradcheck alone would not see a wrong first one)."""
    if impl == "custom_op" and not gt.HAS_CUSTOM_OP:
        skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op")
    g = torch.Generator().manual_seed(1)
    args = [torch.randn(s, generator=g, dtype=F64).mul_(0.5).requires_grad_()
            for s in ((5, 4, 3), (3, 4), (4, 4), (4,), (4, 4))]
    lengths = torch.tensor([5, 2, 4, 1])
    grads = []
    for graph in (False, True):
        h, h_last = gt.elman(*args, lengths, impl=impl, reverse=True)
        grads.append(torch.autograd.grad(weighted_sum([h, h_last]), args, create_graph=graph))
    for name, a, b in zip(("dx", "dW", "dV", "db", "dh0"), *grads):
        assert_close(name, b.detach(), a, atol=1e-12)


def test_reverse_vmap_with_batched_weights():
    """vmap over weights runs the torch-op forward, reversed: each member as if run alone."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, 2, generator=g, dtype=F64)
    Ws, Vs = (torch.randn(s, generator=g, dtype=F64) * 0.5 for s in ((4, 2, 3), (4, 3, 3)))
    lengths = torch.tensor([5, 2, 4])
    out, last = torch.func.vmap(lambda W, V: gt.elman(x, W, V, None, None, lengths,
                                                      reverse=True))(Ws, Vs)
    for n in range(len(Ws)):
        want, want_last = gt.elman(x, Ws[n], Vs[n], None, None, lengths, reverse=True)
        assert_close(f"h {n}", out[n], want, atol=1e-12)
        assert_close(f"h_last {n}", last[n], want_last, atol=1e-12)


def test_bidirectional_vmap_equals_nn_rnn_per_input():
    ours, ref = twins(3, 4, num_layers=2, bidirectional=True)
    g = torch.Generator().manual_seed(4)
    xs = torch.randn(3, 5, 2, 3, generator=g, dtype=F64)
    hs = torch.randn(3, 4, 2, 4, generator=g, dtype=F64)
    out, h_n = torch.func.vmap(ours)(xs, hs)
    for n in range(len(xs)):
        want_out, want_h = ref(xs[n], hs[n])
        assert_close(f"output {n}", out[n].detach(), want_out.detach(), atol=1e-10)
        assert_close(f"h_n {n}", h_n[n].detach(), want_h.detach(), atol=1e-10)


def test_bidirectional_compiles_exports_and_traces():
    if not gt.HAS_CUSTOM_OP:
        skip(TORCH, "no torch.library.custom_op")
    ours, ref = twins(3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    assert_close("compiled output", compiled(x)[0].detach(), ref(x)[0].detach(), atol=1e-10)
    ours.eval()
    ep = torch.export.export(ours, (x,))
    assert_close("exported output", ep.module()(x)[0].detach(), ref(x)[0].detach(), atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated, and warns as for nn.RNN
        traced = torch.jit.trace(ours, (x,))
    longer = torch.randn(7, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    assert_close("traced output", traced(longer)[0].detach(), ref(longer)[0].detach(), atol=1e-10)


def test_reverse_must_be_a_bool():
    x = torch.zeros(2, 1, 1, dtype=F64)
    with pytest.raises(TypeError, match="reverse: expected a bool, got str"):
        gt.elman(x, torch.zeros(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), reverse="yes")
