"""The PyTorch integration on a CUDA device (run with -m gpu; skipped, with the reason, elsewhere)."""
import pytest

from .common import F64, assert_close, assert_same_grads, gt, torch, twins, weighted_sum

import gpu_bptt  # noqa: E402
from ..skips import GPU, TORCH, import_or_skip, skip

pytestmark = pytest.mark.gpu


def _cuda_reason():
    if not torch.cuda.is_available():
        return f"PyTorch {torch.__version__} sees no CUDA device"
    return gpu_bptt.available_backends().get("cuda")


@pytest.fixture(scope="module", autouse=True)
def need_cuda():
    reason = _cuda_reason()
    if reason:
        skip(GPU, f"needs a CUDA device with the cuda backend: {reason}")


def _check_against_nn(ours, ref, x, h0):
    results = []
    for m in (ours, ref):
        xi, hi = x.clone().requires_grad_(), h0.clone().requires_grad_()
        out, h_n = m(xi, hi)
        weighted_sum([out, h_n]).backward()
        results.append((out, h_n, xi.grad, hi.grad))
    for name, a, b in zip(("output", "h_n", "dx", "dh0"), *results):
        assert_close(name, a.detach().cpu(), b.detach().cpu(), atol=1e-10)
    assert_same_grads(ours, ref)


@pytest.mark.parametrize("kw", [{}, {"nonlinearity": "relu", "num_layers": 2}, {"batch_first": True}])
def test_matches_nn_rnn_on_cuda(kw):
    ours, ref = twins(5, 33, device="cuda", **kw)
    x = torch.randn((3, 7, 5) if kw.get("batch_first") else (7, 3, 5), dtype=F64, device="cuda")
    h0 = torch.randn(ours.num_layers, 3, 33, dtype=F64, device="cuda")
    _check_against_nn(ours, ref, x, h0)


def test_runs_on_the_current_stream():
    """Work issued on a side stream must be ordered by that stream alone (no default-stream use)."""
    ours, _ = twins(4, 16, device="cuda")
    x = torch.randn(50, 8, 4, dtype=F64, device="cuda")
    want, _ = ours(x)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        x2 = x * 1.0  # produced on the side stream, consumed right away by the layer
        got, _ = ours(x2)
        got.sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    assert_close("output on a side stream", got.detach().cpu(), want.detach().cpu(), atol=0, rtol=0)


def test_memory_comes_from_pytorch():
    cupy = import_or_skip("cupy", GPU, "CuPy is not installed")
    ours, _ = twins(8, 64, device="cuda")
    x = torch.randn(100, 16, 8, dtype=F64, device="cuda")
    pool = cupy.get_default_memory_pool()
    used = pool.used_bytes()
    before = torch.cuda.memory_allocated()
    out, h_n = ours(x)
    assert torch.cuda.memory_allocated() - before >= out.numel() * out.element_size()
    assert pool.used_bytes() == used, "the layer allocated from CuPy's pool, not PyTorch's"


def test_compile_fullgraph_on_cuda():
    if not gt.HAS_CUSTOM_OP:
        skip(TORCH, "no torch.library.custom_op")
    ours, _ = twins(3, 32, device="cuda", num_layers=2)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x = torch.randn(9, 4, 3, dtype=F64, device="cuda")
    a, _ = ours(x)
    b, _ = compiled(x)
    assert_close("compiled output", b.detach().cpu(), a.detach().cpu(), atol=1e-12)


def check_bf16_autocast(device):
    """Under bfloat16 autocast the layer computes in float32 on bfloat16 inputs (its operator is
    registered to autocast to float32): outputs and gradients against torch.nn.RNN in float32."""
    ours, ref = twins(4, 32, device=device, dtype=torch.float32, num_layers=2)
    x = torch.randn(6, 2, 4, generator=torch.Generator().manual_seed(8)).to(device)
    xb = x.bfloat16().requires_grad_()
    with torch.autocast(device, dtype=torch.bfloat16):
        out, h_n = ours(xb)
    assert out.dtype == torch.float32 and h_n.dtype == torch.float32
    weighted_sum([out, h_n]).backward()
    assert xb.grad.dtype == torch.bfloat16
    # Against float32 on the same (bfloat16-rounded) input: float32's tolerance, as the layer
    # computes in float32.
    xr = xb.detach().float().requires_grad_()
    ref_out, ref_h = ref(xr)
    weighted_sum([ref_out, ref_h]).backward()
    assert_close("output", out.detach().cpu(), ref_out.detach().cpu())
    assert_close("h_n", h_n.detach().cpu(), ref_h.detach().cpu())
    for (name, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_close(f"d{name}", p.grad.cpu(), q.grad.cpu())
    # dx is rounded to bfloat16 (8-bit mantissa, relative error <= 2^-9): rtol 2^-8 for margin.
    assert_close("dx (bfloat16)", xb.grad.float().cpu(), xr.grad.cpu(), atol=1e-6, rtol=2**-8)
    # Against float32 on the unrounded input: each input carries a relative error <= 2^-9
    # (bfloat16's 8-bit mantissa); through the projection (4 inputs, |W| <= 1/sqrt(32)) and a
    # contracting tanh recurrence the outputs move by a few 2^-9 at most: 2^-7 leaves margin.
    with torch.no_grad():
        exact, _ = ref(x)
    assert_close("output vs unrounded input", out.detach().cpu(), exact.cpu(), atol=2**-7, rtol=0)


def test_bf16_autocast_on_cuda():
    check_bf16_autocast("cuda")


def test_gradgradcheck_on_cuda():
    """Double backward on the device: the torch-operation backward on CUDA tensors, through the
    cuda backend's forward and first-order backward."""
    from ..tolerances import GRADCHECK

    g = torch.Generator().manual_seed(0)
    shapes = ((3, 2, 2), (2, 3), (3, 3), (3,), (2, 3))
    args = [(torch.randn(s, generator=g, dtype=F64) * 0.5).cuda().requires_grad_() for s in shapes]
    lengths = torch.tensor([3, 2])
    assert torch.autograd.gradgradcheck(lambda *a: gt.elman(*a, lengths), args, **GRADCHECK)


def test_vmap_over_inputs_on_cuda():
    ours, ref = twins(3, 4, device="cuda", num_layers=2)
    xs = torch.randn(4, 5, 2, 3, dtype=F64, device="cuda")
    out, h_n = torch.func.vmap(ours)(xs)
    for n in range(len(xs)):
        want_out, want_h = ref(xs[n])
        assert_close(f"output {n}", out[n].detach().cpu(), want_out.detach().cpu(), atol=1e-10)
        assert_close(f"h_n {n}", h_n[n].detach().cpu(), want_h.detach().cpu(), atol=1e-10)
