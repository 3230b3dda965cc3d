"""memory="recompute" on the drop-in modules (gpu_bptt/torch/recompute.py): the outputs and every
gradient equal memory="full"'s bit for bit (which tests elsewhere check against torch.nn), with
packed variable lengths, layers and directions, and under torch.utils.checkpoint."""
import pytest
import torch.utils.checkpoint

from .common import gt, torch

MODULES = [("RNN", dict(bidirectional=True, num_layers=2)), ("LSTM", dict(proj_size=3)),
           ("GRU", dict(bidirectional=True))]


def _run(name, kw, memory, x, lengths=None, checkpointed=False):
    torch.manual_seed(1)
    mod = getattr(gt, name)(5, 6, memory=memory, **kw)
    inp = x if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        x, lengths, enforce_sorted=False)
    if checkpointed:
        out, hn = torch.utils.checkpoint.checkpoint(mod, inp, use_reentrant=False)
    else:
        out, hn = mod(inp)
    if lengths is not None:
        out = torch.nn.utils.rnn.pad_packed_sequence(out)[0]
    hn = hn[0] if isinstance(hn, tuple) else hn
    (out.square().sum() + hn.sum()).backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in mod.parameters()]
    x.grad = None
    return [out.detach()] + grads


@pytest.mark.parametrize("packed", (False, True))
@pytest.mark.parametrize("name, kw", MODULES)
def test_recompute_modules_equal_full_bit_for_bit(name, kw, packed):
    torch.manual_seed(0)
    x = torch.randn(70, 16, 5, requires_grad=True)  # blocks of 32 steps: three segments
    lengths = torch.randint(1, 71, (16,)) if packed else None
    full = _run(name, kw, "full", x, lengths)
    rec = _run(name, kw, "recompute", x, lengths)
    assert all(torch.equal(a, b) for a, b in zip(full, rec))


@pytest.mark.parametrize("name, kw", MODULES)
def test_recompute_modules_under_torch_checkpoint(name, kw):
    torch.manual_seed(0)
    x = torch.randn(70, 16, 5, requires_grad=True)
    full = _run(name, kw, "full", x)
    rec = _run(name, kw, "recompute", x, checkpointed=True)
    assert all(torch.equal(a, b) for a, b in zip(full, rec))


def test_recompute_refuses_a_graph_of_the_backward():
    x = torch.randn(20, 16, 3, requires_grad=True)
    out, _ = gt.GRU(3, 4, memory="recompute")(x)
    with pytest.raises(RuntimeError, match="memory='recompute' gives first-order gradients only"):
        torch.autograd.grad(out.sum(), x, create_graph=True)


def test_unknown_memory_is_refused_by_name():
    with pytest.raises(ValueError, match="^memory:"):
        gt.LSTM(3, 4, memory="little")
