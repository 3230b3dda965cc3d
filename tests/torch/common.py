"""Shared helpers of the PyTorch tests: a reference torch.nn.RNN twin and a loss touching every output."""
from ..skips import TORCH, import_or_skip

torch = import_or_skip("torch", TORCH, "PyTorch is not installed (pip install \"gpu_bptt[torch]\")")

import gpu_bptt.torch as gt  # noqa: E402

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
