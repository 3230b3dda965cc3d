"""The LSTM and GRU operators and modules around the numbers: opcheck, autocast, the autograd
contract (inputs that need no gradient, saved-tensor hooks, in-place checks), the core's backward
under torch.compile, and what code uses on a torch.nn.LSTM/GRU besides calling it."""
import copy
import pickle

import pytest

from .common import (F64, assert_close, assert_same_grads, compile_fullgraph, flat, gt, torch,
                     twins, weighted_sum)
from .test_gated_transforms import KINDS, level, problem

from torch.nn.utils import parametrizations  # noqa: E402

needs_custom_op = pytest.mark.skipif(
    not gt.HAS_CUSTOM_OP, reason="this PyTorch has no torch.library.custom_op/register_autocast")


def _ops(kind):
    name = kind.lower()
    return getattr(torch.ops.gpu_bptt, f"{name}_forward").default, \
        getattr(torch.ops.gpu_bptt, f"{name}_backward").default


@needs_custom_op
@pytest.mark.parametrize("kind, P", [("LSTM", 0), ("LSTM", 2), ("GRU", 0)])
@pytest.mark.parametrize("lengths", [None, (3, 1, 2)])
def test_opcheck(kind, P, lengths):
    """torch.library.opcheck: schema, fake kernel, autograd registration, on both directions."""
    args = problem(kind, H=3, P=P)
    lengths = None if lengths is None else torch.tensor(lengths)
    fwd, bwd = _ops(kind)
    n_top = 3 if kind == "LSTM" else 2
    for reverse in (False, True):
        tail = (lengths, "numpy", "auto", reverse)
        torch.library.opcheck(fwd, (*args, *tail))
        outs = fwd(*args, *tail)
        plain = [None if a is None else a.detach() for a in args]
        saved = (outs[0], outs[3], outs[4]) if kind == "LSTM" else (outs[0], outs[2])
        top = [torch.randn(o.shape, dtype=F64) for o in outs[:n_top]]
        for need_dx in (True, False):
            torch.library.opcheck(bwd, (*top, *plain, *(s.detach() for s in saved), lengths,
                                        "numpy", "auto", need_dx, reverse))


@needs_custom_op
@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast_of_the_custom_op_computes_in_float32(kind, monkeypatch):
    """The traced path's op is registered to autocast to float32 (an eager call runs in the
    autocast dtype: tests/torch/test_precision_torch.py)."""
    monkeypatch.setattr(gt.gated_functional, "traced", lambda x: True)
    torch.manual_seed(0)
    proj, rnn = torch.nn.Linear(3, 4), getattr(gt, kind)(4, 5)
    x = torch.randn(6, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u = proj(x)
        assert u.dtype == torch.bfloat16
        out, h_n = rnn(u)
    assert out.dtype == torch.float32 and flat(h_n).dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in rnn.parameters())
    ref, _ = rnn(u.detach().float())  # the same computation on the bf16 values, in float32
    assert_close("output", out.detach(), ref.detach(), dtype=None)


def test_half_types_outside_autocast_are_refused_where_the_backend_lacks_them():
    # the emulator (the cuda backend's code) has tensor-core kernels for the GRU, not the LSTM
    x, W, V = (a.detach().bfloat16() for a in problem("LSTM")[:3])
    with pytest.raises(TypeError, match="x: the emulator backend runs float32 and float64 for "
                                        "the lstm cell, got torch.bfloat16"):
        level("LSTM", x, W, V, None, None, None, None, backend="emulator")
    x, W, V = (a.detach().bfloat16() for a in problem("GRU")[:3])
    out = level("GRU", x, W, V, None, None, None, backend="emulator")
    assert out[0].dtype == torch.bfloat16


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", ["custom_op", "function"])
def test_needs_input_grad_is_honoured(kind, impl, monkeypatch):
    if impl == "custom_op" and not gt.HAS_CUSTOM_OP:
        pytest.skip("no torch.library.custom_op")
    args = problem(kind)
    args[0] = args[0].detach()  # x
    args[2] = args[2].detach()  # V
    calls = []
    core = getattr(gt.gated_compute, f"core_{kind.lower()}")
    real = getattr(core, f"{kind.lower()}_backward")
    monkeypatch.setattr(core, f"{kind.lower()}_backward",
                        lambda *a, **kw: calls.append(kw["need_dx"]) or real(*a, **kw))
    weighted_sum(level(kind, *args, impl=impl)).backward()
    assert args[0].grad is None and args[2].grad is None
    assert args[1].grad is not None and args[3].grad is not None
    assert calls == [False], "an input that needs no gradient is not computed (dx's GEMM skipped)"


@pytest.mark.parametrize("kind", KINDS)
def test_saved_tensor_hooks_and_inplace_check(kind):
    args = problem(kind, T=4, B=3, I=2, H=3)
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t.shape) or t, lambda t: t):
        h = level(kind, *args)[0]
    assert (4, 3, 3) in packed and (4, 3, 2) in packed and (4, 3, 12) in packed  # h, x, gates
    h.sum().backward()
    h = level(kind, *args)[0]
    h.mul_(2)  # modifies a saved output: backward must notice
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        h.sum().backward()


@needs_custom_op
@pytest.mark.parametrize("kind", KINDS)
def test_compile_fullgraph_runs_the_core_backward(kind, monkeypatch, request):
    calls = []  # the compiled backward runs the core's (the op), not the twin's vjp
    real = gt.gated_ops._graph_backward
    monkeypatch.setattr(gt.gated_ops, "_graph_backward", lambda *a: calls.append(1) or real(*a))
    ours, ref = twins(3, 5, kind=kind, num_layers=2, batch_first=True)
    compiled = compile_fullgraph(ours, request)
    x = torch.randn(4, 6, 3, dtype=F64)
    grads = []
    for m in (ref, compiled):
        xi = x.clone().requires_grad_()
        out, h_n = m(xi)
        weighted_sum([out, flat(h_n)]).backward()
        grads.append([out.detach(), flat(h_n).detach(), xi.grad])
    for i, (a, b) in enumerate(zip(*grads)):
        assert_close(f"item {i}", a, b, atol=1e-10)
    assert_same_grads(ours, ref)
    assert calls == []


@pytest.mark.parametrize("kind, kw", [
    ("LSTM", {}), ("LSTM", {"num_layers": 3, "bias": False, "proj_size": 2}),
    ("LSTM", {"batch_first": True, "bidirectional": True, "dropout": 0.25, "num_layers": 2}),
    ("GRU", {}), ("GRU", {"num_layers": 2, "bias": False, "bidirectional": True})])
def test_attributes_and_repr_equal_nn(kind, kw):
    ours, ref = twins(3, 4, kind=kind, **kw)
    assert isinstance(ours, torch.nn.RNNBase) and not isinstance(ours, gt.RNN)
    for name in ("mode", "proj_size", "input_size", "hidden_size", "num_layers", "bias",
                 "batch_first", "dropout", "bidirectional", "_flat_weights_names"):
        assert getattr(ours, name) == getattr(ref, name), name
    assert repr(ours) == repr(ref)
    assert [[tuple(p.shape) for p in layer] for layer in ours.all_weights] == \
        [[tuple(p.shape) for p in layer] for layer in ref.all_weights]
    assert repr(getattr(gt, kind)(3, 4, algo="step")) == f"{kind}(3, 4, algo='step')"


@pytest.mark.parametrize("kind", KINDS)
def test_parametrization_and_copies(kind):
    ours, ref = twins(3, 4, kind=kind, num_layers=2)
    for m in (ours, ref):
        parametrizations.weight_norm(m, "weight_hh_l1")
    x0 = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    outs = []
    for m in (ours, ref):
        x = x0.clone().requires_grad_()
        out, h_n = m(x)
        weighted_sum([out, flat(h_n)]).backward()
        outs.append((out.detach(), flat(h_n).detach(), x.grad))
    for name, a, b in zip(("output", "final states", "dx"), *outs):
        assert_close(name, a, b, atol=1e-10)
    assert_same_grads(ours, ref)
    plain = getattr(gt, kind)(3, 4, backend="numpy", dtype=F64)
    want = plain(x0)[0]
    for clone in (copy.deepcopy(plain), pickle.loads(pickle.dumps(plain))):
        assert clone.backend == "numpy" and torch.equal(clone(x0)[0], want)
