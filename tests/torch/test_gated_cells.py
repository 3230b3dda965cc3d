"""LSTMCell and GRUCell: torch.nn.LSTMCell's and GRUCell's interface, and in the layers' convention:
stepping a cell with a layer's parameters gives that layer's outputs and gradients (our layer's
core against torch's cells)."""
import pytest

from ..skips import TORCH, skip
from .common import F64, assert_close, compile_fullgraph, gt, torch, weighted_sum

KINDS = ["LSTM", "GRU"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_is_a_drop_in_for_the_nn_cell(kind, bias):
    torch.manual_seed(0)
    ref = getattr(torch.nn, f"{kind}Cell")(3, 4, bias=bias, dtype=F64)
    cell = getattr(gt, f"{kind}Cell")(3, 4, bias=bias, dtype=F64)
    assert isinstance(cell, torch.nn.RNNCellBase) and repr(cell) == repr(ref)
    cell.load_state_dict(ref.state_dict())
    x, h = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
    hx = (h, torch.randn(2, 4, dtype=F64)) if kind == "LSTM" else h
    for args in ((x, hx), (x,), (x[0],)):  # with hx, zeros, unbatched
        got, want = cell(*args), ref(*args)
        for a, b in zip(got if kind == "LSTM" else (got,), want if kind == "LSTM" else (want,)):
            assert torch.equal(a, b)
    assert (cell(x[0])[0] if kind == "LSTM" else cell(x[0])).shape == (4,)


@pytest.mark.parametrize("kind", KINDS)
def test_cell_errors_are_torchs(kind):
    cell, ref = getattr(gt, f"{kind}Cell")(3, 4), getattr(torch.nn, f"{kind}Cell")(3, 4)
    for bad in (torch.randn(2, 2, 3), torch.randn(2, 5)):
        msgs = []
        for m in (cell, ref):
            with pytest.raises(Exception) as info:
                m(bad)
            msgs.append((type(info.value), str(info.value)))
        assert msgs[0] == msgs[1]


@pytest.mark.parametrize("kind", KINDS)
def test_stepping_the_cells_reproduces_the_layer(kind):
    T, B, I, H = 6, 3, 3, 5
    torch.manual_seed(1)
    layer = getattr(gt, kind)(I, H, num_layers=2, dtype=F64)
    cells = []
    for k in range(2):
        cell = getattr(gt, f"{kind}Cell")(I if k == 0 else H, H, dtype=F64)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, name, getattr(layer, f"{name}_l{k}"))  # shared parameters
        cells.append(cell)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, I, generator=g, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, B, H, generator=g, dtype=F64, requires_grad=True)
    c0 = torch.randn(2, B, H, generator=g, dtype=F64, requires_grad=True)
    leaves = [x, h0] + ([c0] if kind == "LSTM" else []) + list(layer.parameters())
    results = []
    for run in ("layer", "cells"):
        if run == "layer":
            out, h_n = layer(x, (h0, c0) if kind == "LSTM" else h0)
            finals = list(h_n) if kind == "LSTM" else [h_n]
        else:
            hs, cs, outs = list(h0.unbind(0)), list(c0.unbind(0)), []
            for t in range(T):
                inp = x[t]
                for k, cell in enumerate(cells):
                    if kind == "LSTM":
                        hs[k], cs[k] = cell(inp, (hs[k], cs[k]))
                    else:
                        hs[k] = cell(inp, hs[k])
                    inp = hs[k]
                outs.append(inp)
            out = torch.stack(outs)
            finals = [torch.stack(hs)] + ([torch.stack(cs)] if kind == "LSTM" else [])
        grads = torch.autograd.grad(weighted_sum([out] + finals), leaves)
        results.append([out] + finals + list(grads))
    for i, (a, b) in enumerate(zip(*results)):
        assert_close(f"item {i}", a.detach(), b.detach(), atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_cells_compile_fullgraph(kind, request):
    if not hasattr(torch, "compile"):
        skip(TORCH, "no torch.compile")
    torch.manual_seed(3)
    cell = getattr(gt, f"{kind}Cell")(3, 4, dtype=F64)
    x = torch.randn(2, 3, dtype=F64)
    compiled = compile_fullgraph(cell, request)
    got, want = compiled(x), cell(x)
    for a, b in zip(got if kind == "LSTM" else (got,), want if kind == "LSTM" else (want,)):
        assert_close("compiled cell", a.detach(), b.detach(), atol=1e-12)
