"""The operators under the layer: gradcheck, opcheck, autocast, torch.compile, autograd contract."""
import subprocess
import sys

import pytest

from .common import F64, assert_close, gt, torch, twins, weighted_sum

needs_custom_op = pytest.mark.skipif(
    not gt.HAS_CUSTOM_OP, reason="this PyTorch has no torch.library.custom_op/register_autocast")


def problem(T=4, B=3, I=2, H=3, dtype=F64, seed=0, lengths=True, grad=True):
    g = torch.Generator().manual_seed(seed)
    t = dict(x=torch.randn(T, B, I, generator=g), W=torch.randn(I, H, generator=g) * 0.5,
             V=torch.randn(H, H, generator=g) * 0.5, b=torch.randn(H, generator=g) * 0.3,
             h0=torch.randn(B, H, generator=g) * 0.5)
    t = {k: v.to(dtype).requires_grad_(grad) for k, v in t.items()}
    t["lengths"] = torch.tensor([T, 1, T - 1][:B]) if lengths else None
    return t


@pytest.mark.parametrize("impl", ["custom_op", "function"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_gradcheck(impl, activation):
    if impl == "custom_op" and not gt.HAS_CUSTOM_OP:
        pytest.skip("no torch.library.custom_op")
    p = problem()

    def f(x, W, V, b, h0):
        return gt.elman(x, W, V, b, h0, p["lengths"], activation=activation, impl=impl)

    inputs = tuple(p[k] for k in ("x", "W", "V", "b", "h0"))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@needs_custom_op
@pytest.mark.parametrize("lengths", [False, True])
def test_opcheck(lengths):
    p = problem(lengths=lengths)
    fwd = torch.ops.gpu_bptt.elman_forward.default
    args = (p["x"], p["W"], p["V"], p["b"], p["h0"], p["lengths"], "tanh", "numpy", "auto")
    torch.library.opcheck(fwd, args)
    torch.library.opcheck(fwd, args + (True,))  # the reversed direction
    torch.library.opcheck(fwd, (p["x"], p["W"], p["V"], None, None, None, "relu", "numpy", "auto"))
    q = {k: v.detach() for k, v in p.items() if v is not None}
    bwd = torch.ops.gpu_bptt.elman_backward.default
    for reverse in (False, True):
        h, _ = fwd(*args, reverse)
        dh = torch.randn(h.shape, dtype=F64)
        for need_dx in (True, False):
            torch.library.opcheck(bwd, (dh, None, q["x"], q["W"], q["V"], q["h0"], h.detach(),
                                        p["lengths"], "tanh", "numpy", "auto", need_dx, reverse))


@needs_custom_op
def test_compile_fullgraph_equals_eager(monkeypatch):
    calls = []  # the compiled backward runs the core's (the op), not the torch-operation loop
    real = gt.differentiable.backward
    monkeypatch.setattr(gt.differentiable, "backward", lambda *a: calls.append(1) or real(*a))
    ours, _ = twins(3, 5, num_layers=2, batch_first=True)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 6, 3, dtype=F64)
    grads = []
    for m in (ours, compiled):
        ours.zero_grad()
        xi = x.clone().requires_grad_()
        out, h_n = m(xi)
        weighted_sum([out, h_n]).backward()
        grads.append([out.detach(), h_n.detach(), xi.grad] + [p.grad.clone() for p in ours.parameters()])
    for i, (a, b) in enumerate(zip(*grads)):
        assert_close(f"item {i}", a, b, atol=1e-12)
    assert calls == []


@needs_custom_op
def test_bf16_autocast_of_the_custom_op_computes_in_float32(monkeypatch):
    """The traced path's op is registered to autocast to float32 (an eager call runs in the
    autocast dtype: tests/torch/test_precision_torch.py)."""
    monkeypatch.setattr(gt.functional, "traced", lambda x: True)
    torch.manual_seed(0)
    proj = torch.nn.Linear(3, 4)
    rnn = gt.RNN(4, 5)
    x = torch.randn(6, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u = proj(x)
        assert u.dtype == torch.bfloat16
        out, h_n = rnn(u)
    assert out.dtype == torch.float32 and h_n.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in rnn.parameters())
    ref, _ = rnn(u.detach().float())  # the same computation on the bf16 values, in float32
    assert_close("output", out.detach(), ref.detach(), dtype=None)


def test_half_types_outside_autocast_are_refused_where_the_backend_lacks_them(monkeypatch):
    p = problem(grad=False)
    from gpu_bptt.backends.emulator import EmulatorBackend

    # a backend declaring no 16-bit Elman kernels (the emulator has them: tc1)
    monkeypatch.setattr(EmulatorBackend, "cell_dtypes", lambda self, cell: ("float32", "float64"))
    with pytest.raises(TypeError, match="emulator backend runs float32 and float64 for the elman "
                                        "cell.*autocast"):
        gt.elman(p["x"].bfloat16(), p["W"].bfloat16(), p["V"].bfloat16(), backend="emulator")


@pytest.mark.parametrize("impl", ["custom_op", "function"])
def test_needs_input_grad_is_honoured(impl, monkeypatch):
    if impl == "custom_op" and not gt.HAS_CUSTOM_OP:
        pytest.skip("no torch.library.custom_op")
    p = problem()
    x = p["x"].detach()
    h, h_last = gt.elman(x, p["W"], p["V"].detach(), p["b"], None, impl=impl)
    calls = []
    real = gt.compute.elman_backward
    monkeypatch.setattr(gt.compute, "elman_backward",
                        lambda *a, **kw: calls.append(kw["need_dx"]) or real(*a, **kw))
    (h.sum() + h_last.sum()).backward()
    assert x.grad is None and p["V"].grad is None
    assert p["W"].grad is not None and p["b"].grad is not None
    assert calls == [False], "an input that needs no gradient is not computed (dx's GEMM skipped)"


def test_saved_tensor_hooks_and_inplace_check():
    p = problem()
    packed = []

    def pack(t):
        packed.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        h, _ = gt.elman(p["x"], p["W"], p["V"], p["b"], p["h0"], p["lengths"])
    assert (4, 3, 3) in packed and (4, 3, 2) in packed  # h and x went through the hooks
    h.sum().backward()
    h2, _ = gt.elman(p["x"], p["W"], p["V"], p["b"], p["h0"])
    h2.mul_(2)  # modifies a saved output: backward must notice
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        h2.sum().backward()


def test_output_shares_memory_with_core_result():
    """The wrapper hands the core's arrays over without a copy (DLPack both ways)."""
    import numpy as np

    x = torch.randn(3, 2, 4, dtype=F64)
    a = np.from_dlpack(x)
    assert a.ctypes.data == x.data_ptr()
    back = gt.exchange.to_tensor(a)
    assert back.data_ptr() == x.data_ptr()


def test_importing_gpu_bptt_does_not_import_torch():
    code = "import sys, gpu_bptt, gpu_bptt.nn; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_activation_checkpointing():
    ours, _ = twins(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3, dtype=F64)
    grads = []
    for use_checkpoint in (False, True):
        ours.zero_grad()
        if use_checkpoint:
            out = torch.utils.checkpoint.checkpoint(lambda t: ours(t)[0], x, use_reentrant=False)
        else:
            out = ours(x)[0]
        weighted_sum([out]).backward()
        grads.append([p.grad.clone() for p in ours.parameters()])
    for i, (a, b) in enumerate(zip(*grads)):
        assert_close(f"parameter {i}", a, b, atol=1e-12)


def test_auto_takes_the_function_in_eager_and_the_op_where_traced(monkeypatch):
    calls = []
    real_apply = gt.ops.ElmanFunction.apply
    monkeypatch.setattr(gt.ops.ElmanFunction, "apply", lambda *a: calls.append(1) or real_apply(*a))
    x, W, V = torch.randn(3, 2, 4), torch.randn(4, 5), torch.randn(5, 5)
    gt.elman(x, W, V)
    assert calls, "eager calls go through the autograd.Function"
    if not gt.HAS_CUSTOM_OP:
        pytest.skip(f"torch {torch.__version__} has no custom ops: nothing else to pick")
    from torch._subclasses.fake_tensor import FakeTensorMode

    calls.clear()
    with FakeTensorMode() as mode:
        h, h_last = gt.elman(mode.from_tensor(x), mode.from_tensor(W), mode.from_tensor(V))
    assert not calls and h.shape == (3, 2, 5) and h_last.shape == (2, 5)
