"""LSTM and GRU under higher-order and batched differentiation and tracers: gradgradcheck, double
backward through the layer, torch.func.vmap, jacrev, per-sample gradients and gradcheck's batched
gradients, torch.jit.trace, torch.compile(fullgraph=True) and torch.export, against torch.nn.LSTM
and GRU (or finite differences) in float64."""
import warnings

import pytest

import gpu_bptt.cells

from ..skips import TORCH, skip
from ..tolerances import GRADCHECK
from .common import (F64, assert_close, assert_gradient_penalty_equal, assert_traced_equal,
                     compile_fullgraph, flat, gt, states, torch, twins, weighted_sum)

func = torch.func
IMPLS = ["function", "custom_op"]
KINDS = ["LSTM", "GRU"]


def _impl(impl):
    if impl == "custom_op" and not gt.HAS_CUSTOM_OP:
        skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op")
    return impl


def problem(kind, T=3, B=3, I=2, H=2, P=0, seed=0):
    """The functional level's float arguments, small and random: (x, W, V, b, h0, c0, R) for the
    LSTM (R None without P), (x, W, V, b_x, b_h, h0) for the GRU."""
    g = torch.Generator().manual_seed(seed)
    G, Hs = (4, P or H) if kind == "LSTM" else (3, H)
    shapes = [(T, B, I), (I, G * H), (Hs, G * H), (G * H,)]
    shapes += [(B, Hs), (B, H), (H, P)] if kind == "LSTM" else [(G * H,), (B, H)]
    args = [(torch.randn(s, generator=g, dtype=F64) * 0.5).requires_grad_() for s in shapes]
    if kind == "LSTM" and not P:
        args[-1] = None
    return args


def level(kind, *args, **kw):
    """The caller's outputs of gt.lstm / gt.gru on the positional args of `problem`."""
    if kind == "LSTM":
        x, W, V, b, h0, c0, R, *rest = args
        return gt.lstm(x, W, V, b, h0, c0, *rest, R=R, **kw)
    return gt.gru(*args, **kw)


CASES = [("LSTM", 0), ("LSTM", 2), ("GRU", 0)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind, P", CASES)
@pytest.mark.parametrize("reverse", [False, True])
def test_gradgradcheck(impl, kind, P, reverse):
    """Second derivatives against finite differences of the first, padded steps included."""
    _impl(impl)
    args = problem(kind, H=3 if P else 2, P=P)
    lengths = torch.tensor([3, 1, 2])
    present = [i for i, a in enumerate(args) if a is not None]

    def f(*ts):
        full = list(args)
        for i, t in zip(present, ts):
            full[i] = t
        return level(kind, *full, lengths, impl=impl, reverse=reverse)

    inputs = tuple(args[i] for i in present)
    assert torch.autograd.gradgradcheck(f, inputs, **GRADCHECK)
    assert torch.autograd.gradcheck(f, inputs, check_batched_grad=True, **GRADCHECK)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind, P", CASES)
def test_backward_with_a_graph_equals_the_fast_one(impl, kind, P):
    """create_graph=True takes the torch-op backward, plain first order the core's: the same
    gradients (gradgradcheck alone would not see a wrong first one)."""
    _impl(impl)
    args = problem(kind, T=5, B=4, I=3, H=4, P=P, seed=1)
    lengths = torch.tensor([5, 2, 4, 1])
    present = [a for a in args if a is not None]
    grads = []
    for graph in (False, True):
        outs = level(kind, *args, lengths, impl=impl, reverse=True)
        grads.append(torch.autograd.grad(weighted_sum(outs), present, create_graph=graph))
    for i, (a, b) in enumerate(zip(*grads)):
        assert_close(f"gradient {i}", b.detach(), a, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_double_backward_through_the_layer_equals_nn(kind):
    """A gradient penalty (the norm of dL/dx, differentiated again), two layers, bidirectional."""
    ours, ref = twins(3, 4, kind=kind, num_layers=2, bidirectional=True,
                      **({"proj_size": 2} if kind == "LSTM" else {}))
    assert_gradient_penalty_equal(ours, ref)


def test_first_order_keeps_the_core_backward(monkeypatch):
    """The torch-op backward (the twin's vjp) runs only where a graph of it is wanted."""
    calls = []
    real = gt.gated_ops._graph_backward
    monkeypatch.setattr(gt.gated_ops, "_graph_backward", lambda *a: calls.append(1) or real(*a))
    for kind in KINDS:
        ours, _ = twins(3, 4, kind=kind)
        out, _ = ours(torch.randn(5, 2, 3, dtype=F64, requires_grad=True))
        out.sum().backward()
    assert calls == []


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_vmap_over_inputs_equals_nn_per_input(impl, kind, monkeypatch):
    """vmap over a batch of (input, hx) pairs: one merged call per layer and direction, the
    results of calling torch.nn on each pair (torch.nn's RNNs have no batching rule)."""
    _impl(impl)
    monkeypatch.setattr(gt.gated_functional, "traced", lambda x: impl == "custom_op")
    ours, ref = twins(3, 4, kind=kind, num_layers=2, bidirectional=True,
                      **({"proj_size": 2} if kind == "LSTM" else {}))
    g = torch.Generator().manual_seed(4)
    xs = torch.randn(6, 5, 2, 3, generator=g, dtype=F64)
    hx = states(ref, False, 2)
    hxs = tuple(torch.randn((6,) + s.shape, generator=g, dtype=F64) for s in
                (hx if isinstance(hx, tuple) else (hx,)))
    hxs = hxs if kind == "LSTM" else hxs[0]
    core = getattr(gpu_bptt.cells, kind.lower())
    real, calls = getattr(core, f"{kind.lower()}_forward"), []
    monkeypatch.setattr(core, f"{kind.lower()}_forward",
                        lambda x, *a, **k: calls.append(x.shape) or real(x, *a, **k))
    out, h_n = func.vmap(ours)(xs, hxs)
    width = 2 * (2 if kind == "LSTM" else 4)
    assert calls == [(5, 12, 3)] * 2 + [(5, 12, width)] * 2, "one call per layer and direction"
    for n in range(len(xs)):
        want_out, want_h = ref(xs[n], tuple(s[n] for s in hxs) if kind == "LSTM" else hxs[n])
        got_h = tuple(s[n] for s in h_n) if kind == "LSTM" else h_n[n]
        assert_close(f"output {n}", out[n].detach(), want_out.detach(), atol=1e-10)
        assert_close(f"states {n}", flat(got_h).detach(), flat(want_h).detach(), atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_with_batched_weights(kind):
    """vmap over weights (an ensemble through functional_call) against each member run alone."""
    ours, _ = twins(3, 4, kind=kind, bidirectional=True)
    g = torch.Generator().manual_seed(5)
    stacked = {k: v.detach() + 0.1 * torch.randn((3,) + v.shape, generator=g, dtype=F64)
               for k, v in ours.named_parameters()}
    x = torch.randn(5, 2, 3, generator=g, dtype=F64)
    out = func.vmap(lambda p: func.functional_call(ours, p, (x,))[0])(stacked)
    for n in range(3):
        member = {k: v[n] for k, v in stacked.items()}
        want = func.functional_call(ours, member, (x,))[0]
        assert_close(f"member {n}", out[n].detach(), want.detach(), atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_jacrev_equals_nn(kind):
    ours, ref = twins(3, 4, kind=kind)
    x = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(6), dtype=F64)
    jac = [func.jacrev(lambda t, m=m: m(t)[0])(x) for m in (ours, ref)]
    assert_close("jacobian", jac[0].detach(), jac[1].detach(), atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_per_sample_gradients_equal_nn(kind):
    """vmap(grad(loss)) over the examples of a batch, as functorch/Opacus compute per-sample
    gradients, against torch.nn's gradient of each example alone."""
    ours, ref = twins(3, 4, kind=kind, num_layers=2, batch_first=True)
    g = torch.Generator().manual_seed(7)
    xs, ys = torch.randn(5, 6, 3, generator=g, dtype=F64), torch.randn(5, 4, generator=g, dtype=F64)
    params = {k: v.detach() for k, v in ours.named_parameters()}

    def loss_of(out, h_n, y):
        return ((out[0, -1] - y) ** 2).sum() + flat(h_n).pow(2).sum()

    def loss(p, x, y):
        return loss_of(*func.functional_call(ours, p, (x[None],)), y)

    per_sample = func.vmap(func.grad(loss), in_dims=(None, 0, 0))(params, xs, ys)
    for n in range(len(xs)):
        ref.zero_grad()
        loss_of(*ref(xs[n][None]), ys[n]).backward()
        for k, q in ref.named_parameters():
            assert_close(f"example {n}: d{k}", per_sample[k][n], q.grad, atol=1e-10)


class Model(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(rnn.proj_size or rnn.hidden_size, 1, dtype=F64)

    def forward(self, x, hx):
        out, h_n = self.rnn(x, hx)
        return self.head(out).squeeze(-1) + flat(h_n).sum()


def _models(kind):
    ours, ref = twins(3, 4, kind=kind, num_layers=2, **({"proj_size": 2} if kind == "LSTM" else {}))
    a, b = Model(ours), Model(ref)
    b.head.load_state_dict(a.head.state_dict())
    return a, b


def _inputs(m, seed, T=5, B=2):
    x = torch.randn(T, B, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)
    hx = states(m.rnn, False, B, seed=seed + 100)
    return x, (tuple(s.detach() for s in hx) if isinstance(hx, tuple) else hx.detach())


@pytest.mark.parametrize("kind", KINDS)
def test_jit_trace(kind):
    if not gt.HAS_CUSTOM_OP:
        skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op: nothing to trace")
    ours, ref = _models(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated, and warns as for torch.nn
        traced = torch.jit.trace(ours, _inputs(ours, 0))
    assert f"gpu_bptt::{kind.lower()}_forward" in str(traced.inlined_graph)
    x, hx = _inputs(ours, 1, T=7)  # another length: the operator is traced, not its result
    assert_traced_equal(traced, ours, ref, x, hx)


@pytest.mark.parametrize("kind", KINDS)
def test_export(kind):
    if not gt.HAS_CUSTOM_OP:
        skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op: nothing to export")
    ours, ref = _models(kind)
    ours.eval()
    ep = torch.export.export(ours, _inputs(ours, 0))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert any(f"gpu_bptt.{kind.lower()}_forward" in t for t in targets), targets
    x, hx = _inputs(ours, 2)
    assert_close("exported output", ep.module()(x, hx).detach(), ref(x, hx).detach(), atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_compile_fullgraph_with_dropout_and_unbatched(kind, batch_first, request):
    """The module's Python (checks, hx, dropout, unbatched input) traces in one graph too."""
    if not gt.HAS_CUSTOM_OP:
        skip(TORCH, "no torch.library.custom_op")
    ours, ref = twins(3, 4, kind=kind, num_layers=2, batch_first=batch_first, dropout=0.3,
                      bidirectional=True)
    compiled = compile_fullgraph(ours, request)
    x, hx = torch.randn(5, 3, dtype=F64), states(ref, True, None)
    x.requires_grad_()
    results = []
    for m in (compiled, ref):
        torch.manual_seed(3)
        x.grad = None
        out, h_n = m(x, hx)
        weighted_sum([out, flat(h_n)]).backward()
        results.append((out.detach(), flat(h_n).detach(), x.grad.clone()))
    for name, a, b in zip(("output", "states", "dx"), *results):
        assert_close(f"compiled, dropout, unbatched: {name}", a, b, atol=1e-10)
