"""Shared helpers of the PyTorch tests: a reference torch.nn.RNN twin and a loss touching every output."""
from ..skips import TORCH, import_or_skip

torch = import_or_skip("torch", TORCH, "PyTorch is not installed (pip install \"gpu_bptt[torch]\")")

import gpu_bptt.torch as gt  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

from ..tolerances import assert_close  # noqa: E402

F64 = torch.float64


def twins(I, H, *, seed=0, device="cpu", dtype=F64, kind="RNN", **kw):
    """(ours, reference): gpu_bptt.torch.RNN and torch.nn.RNN (or another `kind`: "LSTM", "GRU")
    with the same parameters."""
    torch.manual_seed(seed)
    ref = getattr(torch.nn, kind)(I, H, device=device, dtype=dtype, **kw)
    ours = getattr(gt, kind)(I, H, device=device, dtype=dtype, **kw)
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


def states(m, unbatched, B, seed=12):
    """Random initial states for module m (torch.nn's or ours): h0, or (h0, c0) for an LSTM."""
    n = m.num_layers * (2 if m.bidirectional else 1)
    g = torch.Generator().manual_seed(seed)
    sizes = [m.proj_size or m.hidden_size] + ([m.hidden_size] if m.mode == "LSTM" else [])
    hx = tuple(torch.randn((n, s) if unbatched else (n, B, s), generator=g, dtype=F64)
               .requires_grad_() for s in sizes)
    return hx if m.mode == "LSTM" else hx[0]


def flat(t):
    """A tensor, or an LSTM's tuple of states, as one flat tensor."""
    return torch.cat([a.reshape(-1) for a in t]) if isinstance(t, tuple) else t


def assert_gradient_penalty_equal(ours, ref):
    """A gradient penalty through both layers (the norm of dL/dx, differentiated again): dL/dx
    and every second-order gradient (input, parameters) equal within 1e-10."""
    x0 = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    results = []
    for m in (ours, ref):
        x = x0.clone().requires_grad_()
        out, h_n = m(x)
        (dx,) = torch.autograd.grad(weighted_sum([out, flat(h_n)]), x, create_graph=True)
        (dx ** 2).sum().backward()
        results.append((dx.detach(), x.grad) + tuple(q.grad for q in m.parameters()))
    for i, (a, b) in enumerate(zip(*results)):
        assert_close(f"item {i}", a, b, atol=1e-10)


def assert_traced_equal(traced, ours, ref, x, hx):
    """The traced module (of `ours`) and torch.nn's `ref` on (x, hx): outputs, dx and every
    parameter gradient equal within 1e-10."""
    x.requires_grad_()
    results = []
    for m in (traced, ref):
        x.grad = None
        y = m(x, hx)
        y.pow(2).sum().backward()
        results.append((y.detach(), x.grad.clone()))
    for name, a, b in zip(("output", "dx"), *results):
        assert_close(name, a, b, atol=1e-10)
    for (name, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_close(f"d{name}", p.grad, q.grad, atol=1e-10)


def training_step(m, kind, batch_first, with_h0, seed, *, T, B, I, H, lengths):
    """Output (the packed data for kind="packed", with `lengths`), h_n, dx, dh0 of one training
    step of module m (torch.nn.RNN or ours) whose random draws start from `seed` (for an LSTM,
    h_n and dh0 hold both states, flattened)."""
    x = layer_input(kind, batch_first, T, B, I).requires_grad_()
    h0 = states(m, kind == "unbatched", B) if with_h0 else None
    inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False) \
        if kind == "packed" else x
    torch.manual_seed(seed)
    out, h_n = m(inp) if h0 is None else m(inp, h0)
    out = out.data if kind == "packed" else out
    weighted_sum([out, flat(h_n)]).backward()
    dh0 = None if h0 is None else \
        flat(tuple(s.grad for s in h0) if isinstance(h0, tuple) else h0.grad)
    return out, flat(h_n), x.grad, dh0


def compile_fullgraph(m, request):
    """torch.compile(m, fullgraph=True) from a clean compiler state, cleaned again after the test
    (`request`: its pytest fixture). The drop-ins share one forward, and dynamo counts that code
    object's recompilations (one per layer configuration) over the whole session, failing a
    fullgraph compile past its recompile_limit."""
    torch._dynamo.reset()
    request.addfinalizer(torch._dynamo.reset)
    return torch.compile(m, backend="aot_eager", fullgraph=True)
