"""gpu_bptt.torch.RNN against torch.nn.RNN in float64: outputs, h_n and every gradient within 1e-10."""
import pytest

from .common import F64, assert_close, assert_same_grads, gt, torch, twins, weighted_sum

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402
from ..skips import TORCH, require_emulator, skip

IMPLS = ["custom_op", "function"]

CASES = {  # name: (T, B, I, H, constructor options)
    "tanh": (7, 5, 4, 6, {}),
    "relu": (7, 5, 4, 6, {"nonlinearity": "relu"}),
    "two_layers": (9, 3, 5, 4, {"num_layers": 2}),
    "batch_first": (7, 5, 4, 6, {"batch_first": True, "num_layers": 2}),
    "no_bias": (1, 33, 3, 5, {"bias": False}),
}


@pytest.fixture(params=IMPLS)
def impl(request, monkeypatch):
    if request.param == "custom_op" and not gt.HAS_CUSTOM_OP:
        skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op/register_autocast")
    if request.param == "function":
        # Force the autograd.Function fallback everywhere RNN calls elman.
        monkeypatch.setattr(gt.ops, "HAS_CUSTOM_OP", False)
    return request.param


def _run_both(ours, ref, x, h0):
    xs = [x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()]
    hs = [None, None] if h0 is None else [h0.detach().clone().requires_grad_() for _ in range(2)]
    outs = []
    for m, xi, hi in zip((ours, ref), xs, hs):
        out, h_n = m(xi) if hi is None else m(xi, hi)
        weighted_sum([out, h_n]).backward()
        outs.append((out, h_n))
    (o1, n1), (o2, n2) = outs
    assert_close("output", o1.detach(), o2.detach(), atol=1e-10)
    assert_close("h_n", n1.detach(), n2.detach(), atol=1e-10)
    extra = [("dx", xs[0].grad, xs[1].grad)]
    if h0 is not None:
        extra.append(("dh0", hs[0].grad, hs[1].grad))
    assert_same_grads(ours, ref, extra)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("with_h0", [False, True])
def test_matches_nn_rnn(case, with_h0, impl):
    T, B, I, H, kw = CASES[case]
    ours, ref = twins(I, H, **kw)
    g = torch.Generator().manual_seed(2)
    shape = (B, T, I) if kw.get("batch_first") else (T, B, I)
    x = torch.randn(shape, generator=g, dtype=F64)
    h0 = torch.randn(ours.num_layers, B, H, generator=g, dtype=F64) if with_h0 else None
    _run_both(ours, ref, x, h0)


def test_unbatched(impl):
    ours, ref = twins(4, 6, num_layers=2)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 4, generator=g, dtype=F64)
    h0 = torch.randn(2, 6, generator=g, dtype=F64)
    _run_both(ours, ref, x, h0)
    out, h_n = ours(x)
    assert out.shape == (7, 6) and h_n.shape == (2, 6)


@pytest.mark.parametrize("batch_first", [False, True])
def test_packed_sequence_unsorted_lengths(batch_first, impl):
    T, B, I, H = 8, 5, 3, 4
    ours, ref = twins(I, H, num_layers=2, batch_first=batch_first)
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([3, 8, 1, 5, 8])  # unsorted, with a tie
    padded = torch.randn((B, T, I) if batch_first else (T, B, I), generator=g, dtype=F64)
    h0 = torch.randn(2, B, H, generator=g, dtype=F64)
    results = []
    for m in (ours, ref):
        x = padded.clone().requires_grad_()
        hx = h0.clone().requires_grad_()
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, h_n = m(packed, hx)
        assert torch.equal(out.batch_sizes, packed.batch_sizes)
        assert torch.equal(out.sorted_indices, packed.sorted_indices)
        unpacked, out_lengths = pad_packed_sequence(out, batch_first=batch_first)
        assert torch.equal(out_lengths, lengths)
        weighted_sum([out.data, h_n]).backward()
        results.append((out.data, h_n, x.grad, hx.grad))
    for name, a, b in zip(("output.data", "h_n", "dx", "dh0"), *results):
        assert_close(name, a.detach(), b.detach(), atol=1e-10)
    assert_same_grads(ours, ref)


def test_state_dict_round_trip():
    """ours -> torch.nn.RNN -> a fresh one of ours: the same names, values and outputs. Layer 1 has
    I == H, so a mix-up of weight_ih and weight_hh would pass a shape check but not this."""
    models = []
    for seed, cls in ((1, gt.RNN), (2, torch.nn.RNN), (3, gt.RNN)):
        torch.manual_seed(seed)  # three different initial states
        models.append(cls(3, 4, num_layers=2, bias=True, dtype=F64))
    ours, ref, back = models
    want = {k: v.clone() for k, v in ours.state_dict().items()}
    assert list(want) == list(ref.state_dict())
    assert not any(torch.equal(v, ref.state_dict()[k]) for k, v in want.items())
    ref.load_state_dict(ours.state_dict())
    back.load_state_dict(ref.state_dict())
    for name, m in (("torch.nn.RNN", ref), ("the copy", back)):
        got = m.state_dict()
        for k, v in want.items():
            assert torch.equal(got[k], v), f"{name}: {k} differs after loading"
        for (n1, p1), (n2, p2) in zip(ours.named_parameters(), m.named_parameters()):
            assert n1 == n2 and torch.equal(p1, p2), f"{name}: parameter {n2} != {n1}"
    x = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(6), dtype=F64)
    out, h_n = ours(x)
    ref_out, ref_h = ref(x)
    assert_close("output after loading into torch.nn.RNN", ref_out.detach(), out.detach(), atol=1e-10)
    assert_close("h_n after loading into torch.nn.RNN", ref_h.detach(), h_n.detach(), atol=1e-10)
    back_out, back_h = back(x)
    assert torch.equal(back_out, out) and torch.equal(back_h, h_n), "the copy computes otherwise"


@pytest.mark.parametrize("algo", ["step", "persistent"])
def test_cuda_backend_code_through_the_emulator(algo):
    """The GPU path's backend code (kernels, launchers, contiguity of the framework's weight views),
    run on the CPU: packed, two layers, against torch.nn.RNN."""
    require_emulator()
    T, B, I, H = 6, 3, 3, 5
    torch.manual_seed(0)
    ref = torch.nn.RNN(I, H, num_layers=2, dtype=F64)
    ours = gt.RNN(I, H, num_layers=2, dtype=F64, backend="emulator", algo=algo)
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(5)
    padded = torch.randn(T, B, I, generator=g, dtype=F64)
    lengths = torch.tensor([4, 6, 2])
    results = []
    for m in (ours, ref):
        x = padded.clone().requires_grad_()
        out, h_n = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
        weighted_sum([out.data, h_n]).backward()
        results.append((out.data, h_n, x.grad))
    for name, a, b in zip(("output.data", "h_n", "dx"), *results):
        assert_close(name, a.detach(), b.detach(), atol=1e-10)
    assert_same_grads(ours, ref)
