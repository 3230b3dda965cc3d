"""A model holding the layer under torch.jit.trace and torch.export.export, against the same
model holding torch.nn.RNN (torch.compile(fullgraph=True): tests/torch/test_ops.py)."""
import warnings

import pytest

from ..skips import TORCH, skip
from .common import F64, assert_close, assert_traced_equal, gt, torch, twins

IMPL_OP = "gpu_bptt::elman_forward"


class Model(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(rnn.hidden_size, 1, dtype=F64)

    def forward(self, x, h0):
        out, h_n = self.rnn(x, h0)
        return self.head(out).squeeze(-1) + h_n.sum()


def _models(**kw):
    ours, ref = twins(3, 4, num_layers=2, **kw)
    a, b = Model(ours), Model(ref)
    b.head.load_state_dict(a.head.state_dict())
    return a, b


def _inputs(seed, T=5, B=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, 3, generator=g, dtype=F64), torch.randn(2, B, 4, generator=g, dtype=F64)


def test_jit_trace():
    if not gt.HAS_CUSTOM_OP:
        skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op: nothing to trace")
    ours, ref = _models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated, and warns as for nn.RNN
        traced = torch.jit.trace(ours, _inputs(0))
    assert IMPL_OP in str(traced.inlined_graph), "the layer's operator is in the traced graph"
    x, h0 = _inputs(1, T=7)  # another length: the operator is traced, not its result
    assert_traced_equal(traced, ours, ref, x, h0)


def test_export():
    if not gt.HAS_CUSTOM_OP:
        skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op: nothing to export")
    ours, ref = _models(batch_first=False)
    ours.eval()
    ep = torch.export.export(ours, _inputs(0))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert any("gpu_bptt.elman_forward" in t for t in targets), targets
    x, h0 = _inputs(2)
    assert_close("exported output", ep.module()(x, h0).detach(), ref(x, h0).detach(), atol=1e-10)


@pytest.mark.parametrize("batch_first", [False, True])
def test_compile_fullgraph_with_dropout_and_unbatched(batch_first):
    """The module's Python (checks, hx, dropout, unbatched input) traces in one graph too."""
    if not gt.HAS_CUSTOM_OP:
        skip(TORCH, "no torch.library.custom_op")
    ours, ref = twins(3, 4, num_layers=2, batch_first=batch_first, dropout=0.3)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x, h0 = torch.randn(5, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
    outs = []
    for m in (compiled, ref):
        torch.manual_seed(3)
        outs.append(m(x, h0)[0].detach())
    assert_close("compiled unbatched output, dropout", outs[0], outs[1], atol=1e-10)
