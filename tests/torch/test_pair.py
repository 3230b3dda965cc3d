"""gpu_bptt.torch.elman_pair: both directions of a bidirectional layer in one autograd node, run
together by the core (elman_forward_pair). Its outputs and first-order gradients are bit for bit
those of two `elman` calls (which tests/torch/test_bidirectional.py checks against torch.nn.RNN);
its double backward passes gradgradcheck; RNN(bidirectional=True) records it in eager mode."""
import pytest

from ..skips import require_emulator
from ..tolerances import GRADCHECK
from .common import F64, gt, torch, weighted_sum

T, B, I, H = 5, 3, 2, 4
LENGTHS = torch.tensor([5, 2, 4])


def _inputs(seed=0, lengths=LENGTHS):
    g = torch.Generator().manual_seed(seed)

    def mk(*shape):
        return torch.randn(shape, generator=g, dtype=F64).mul_(0.5).requires_grad_()
    x = mk(T, B, I)
    dirs = [(mk(I, H), mk(H, H), mk(H), mk(B, H)) for _ in range(2)]
    return x, dirs, lengths


def _grads(outs, leaves):
    return torch.autograd.grad(weighted_sum(outs), leaves)


@pytest.mark.parametrize("backend,algo", [("numpy", "auto"), ("emulator", "step"),
                                          ("emulator", "persistent")])
@pytest.mark.parametrize("with_lengths", [True, False], ids=["lengths", "full"])
def test_pair_equals_two_elman_calls_bit_for_bit(backend, algo, with_lengths):
    if backend == "emulator":
        require_emulator()
    x, dirs, lengths = _inputs(lengths=LENGTHS if with_lengths else None)
    leaves = [x] + [t for d in dirs for t in d]
    kw = dict(backend=backend, algo=algo)
    (h, hl), (hr, hlr) = gt.elman_pair(x, *dirs, lengths, **kw)
    assert type(h.grad_fn).__name__ == "ElmanPairFunctionBackward"
    got = _grads([h, hl, hr, hlr], leaves)
    one = gt.elman(x, *dirs[0], lengths, **kw)
    two = gt.elman(x, *dirs[1], lengths, **kw, reverse=True)
    want = _grads([*one, *two], leaves)
    for a, b in zip((h, hl, hr, hlr), (*one, *two)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pair_gradgradcheck():
    """Second derivatives against finite differences, padded steps included: the pair's graph
    backward is each direction's differentiable twin."""
    x, dirs, lengths = _inputs(seed=1)
    leaves = (x,) + dirs[0] + dirs[1]

    def f(x, Wf, Vf, bf, h0f, Wr, Vr, br, h0r):
        (h, hl), (hr, hlr) = gt.elman_pair(x, (Wf, Vf, bf, h0f), (Wr, Vr, br, h0r), lengths,
                                           backend="numpy")
        return h, hl, hr, hlr
    assert torch.autograd.gradgradcheck(f, leaves, **GRADCHECK)


def test_bidirectional_rnn_records_the_pair():
    """Eager RNN(bidirectional=True): each layer's two directions are one ElmanPairFunction node."""
    m = gt.RNN(I, H, num_layers=2, bidirectional=True, dtype=F64)
    out, h_n = m(torch.randn(T, B, I, dtype=F64))
    seen, todo = set(), [out.grad_fn, h_n.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None and fn not in seen:
            seen.add(fn)
            todo += [n for n, _ in fn.next_functions]
    names = [type(fn).__name__ for fn in seen]
    assert names.count("ElmanPairFunctionBackward") == 2 and "ElmanFunctionBackward" not in names


def test_pair_errors_name_the_argument():
    x, dirs, lengths = _inputs()
    with pytest.raises(TypeError, match=r"^reverse: expected the direction's \(W, V, b, h0\)"):
        gt.elman_pair(x, dirs[0], dirs[1][:2], lengths)
    with pytest.raises(ValueError, match=r"^V: expected 2 dimensions"):
        gt.elman_pair(x, dirs[0], (dirs[1][0], dirs[1][2], None, None), lengths)
