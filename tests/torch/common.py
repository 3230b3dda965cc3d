"""Shared helpers of the PyTorch tests: a reference torch.nn.RNN twin and a loss touching every output."""
from ..skips import TORCH, import_or_skip

torch = import_or_skip("torch", TORCH, "PyTorch is not installed (pip install \"gpu_bptt[torch]\")")

import gpu_bptt.torch as gt  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

from ..tolerances import assert_close  # noqa: E402

F64 = torch.float64


def twins(I, H, *, seed=0, device="cpu", dtype=F64, **kw):
    """(ours, reference): gpu_bptt.torch.RNN and torch.nn.RNN with the same parameters."""
    torch.manual_seed(seed)
    ref = torch.nn.RNN(I, H, device=device, dtype=dtype, **kw)
    ours = gt.RNN(I, H, device=device, dtype=dtype, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def weighted_sum(tensors, seed=1):
    """sum_i <w_i, t_i> with fixed random weights w_i: every element gets its own gradient."""
    g = torch.Generator().manual_seed(seed)
    total = 0
    for t in tensors:
        w = torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device, t.dtype)
        total = total + (t * w).sum()
    return total


def assert_same_grads(ours, ref, extra=()):
    """Every parameter gradient (and each (name, ours, ref) in extra) equal within float64 tolerances."""
    for (name, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        assert p.grad is not None, f"{name}: no gradient"
        assert p.grad.stride() == p.stride(), f"{name}: gradient strides {p.grad.stride()} != {p.stride()}"
        assert_close(f"d{name}", p.grad.cpu(), q.grad.cpu(), atol=1e-10)
    for name, a, b in extra:
        assert_close(name, a.detach().cpu(), b.detach().cpu(), atol=1e-10)


def layer_input(kind, batch_first, T, B, I):
    """A fixed input: (T, I) unbatched, else (T, B, I), or (B, T, I) with batch_first."""
    g = torch.Generator().manual_seed(11)
    if kind == "unbatched":
        return torch.randn(T, I, generator=g, dtype=F64)
    return torch.randn((B, T, I) if batch_first else (T, B, I), generator=g, dtype=F64)


def training_step(m, kind, batch_first, with_h0, seed, *, T, B, I, H, lengths):
    """Output (the packed data for kind="packed", with `lengths`), h_n, dx, dh0 of one training
    step of module m (torch.nn.RNN or ours) whose random draws start from `seed`."""
    x = layer_input(kind, batch_first, T, B, I).requires_grad_()
    n = m.num_layers * (2 if m.bidirectional else 1)
    h0 = None
    if with_h0:
        shape = (n, H) if kind == "unbatched" else (n, B, H)
        h0 = torch.randn(shape, generator=torch.Generator().manual_seed(12), dtype=F64).requires_grad_()
    inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False) \
        if kind == "packed" else x
    torch.manual_seed(seed)
    out, h_n = m(inp) if h0 is None else m(inp, h0)
    out = out.data if kind == "packed" else out
    weighted_sum([out, h_n]).backward()
    return out, h_n, x.grad, None if h0 is None else h0.grad
