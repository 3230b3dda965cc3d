"""RNNCell: torch.nn.RNNCell's interface, and in the layer's convention: stepping it with the
layer's parameters gives the layer's outputs and gradients (the core against torch's cell)."""
import pytest

from .common import F64, assert_close, gt, torch, weighted_sum


def test_is_a_drop_in_for_nn_rnncell():
    torch.manual_seed(0)
    ref = torch.nn.RNNCell(3, 4, nonlinearity="relu", dtype=F64)
    cell = gt.RNNCell(3, 4, nonlinearity="relu", dtype=F64)
    assert isinstance(cell, torch.nn.RNNCell) and repr(cell) == repr(ref)
    cell.load_state_dict(ref.state_dict())
    x, h = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
    assert torch.equal(cell(x, h), ref(x, h))
    assert cell(x[0]).shape == (4,)  # unbatched, hx zeros


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_stepping_the_cell_reproduces_the_layer(nonlinearity):
    T, B, I, H = 6, 3, 3, 5
    torch.manual_seed(1)
    rnn = gt.RNN(I, H, num_layers=2, nonlinearity=nonlinearity, dtype=F64)
    cells = []
    for k in range(2):
        cell = gt.RNNCell(I if k == 0 else H, H, nonlinearity=nonlinearity, dtype=F64)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, name, getattr(rnn, f"{name}_l{k}"))  # shared parameters
        cells.append(cell)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, I, generator=g, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, B, H, generator=g, dtype=F64, requires_grad=True)
    params = list(rnn.parameters())
    results = []
    for run in ("layer", "cells"):
        if run == "layer":
            out, h_n = rnn(x, h0)
        else:
            hs, outs = list(h0.unbind(0)), []
            for t in range(T):
                inp = x[t]
                for k, cell in enumerate(cells):
                    hs[k] = inp = cell(inp, hs[k])
                outs.append(inp)
            out, h_n = torch.stack(outs), torch.stack(hs)
        grads = torch.autograd.grad(weighted_sum([out, h_n]), [x, h0] + params)
        results.append((out, h_n) + grads)
    names = ("output", "h_n", "dx", "dh0") + tuple(f"d{n}" for n, _ in rnn.named_parameters())
    for name, a, b in zip(names, *results):
        assert_close(name, a.detach(), b.detach(), atol=1e-10)
