"""gpu_bptt.torch.LSTM and GRU against torch.nn.LSTM and GRU in float64: outputs, final states and
every gradient (parameters, input, initial states) within 1e-10, through both implementations
(custom op, autograd.Function); state_dicts load both ways."""
import pytest

from ..skips import TORCH, require_emulator, skip
from .common import (F64, assert_close, assert_same_grads, flat, gt, states, torch, twins,
                     weighted_sum)

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

KINDS = ["LSTM", "GRU"]
CASES = {  # name: (T, B, I, H, constructor options)
    "one_layer": (7, 5, 4, 6, {}),
    "three_layers": (9, 3, 5, 4, {"num_layers": 3}),
    "bidirectional": (6, 4, 3, 5, {"num_layers": 2, "bidirectional": True}),
    "batch_first": (7, 5, 4, 6, {"batch_first": True, "num_layers": 2}),
    "no_bias": (1, 33, 3, 5, {"bias": False, "num_layers": 2}),
    "projection": (6, 3, 4, 5, {"proj_size": 2, "num_layers": 2, "bidirectional": True}),
    "projection_no_bias": (5, 2, 3, 4, {"proj_size": 3, "bias": False, "batch_first": True}),
}


def _cases(kind):  # proj_size is LSTM's alone
    return [(kind, c) for c, (*_, kw) in CASES.items() if kind == "LSTM" or "proj_size" not in kw]


@pytest.fixture(params=["custom_op", "function"])
def impl(request, monkeypatch):
    if request.param == "custom_op":
        if not gt.HAS_CUSTOM_OP:
            skip(TORCH, f"torch {torch.__version__} has no torch.library.custom_op/register_autocast")
        monkeypatch.setattr(gt.gated_functional, "traced", lambda x: True)  # the op in eager mode
    return request.param


def _run_both(ours, ref, make_input, hx):
    """Run both on copies of the input and hx; compare outputs, final states and gradients."""
    results = []
    for m in (ours, ref):
        leaves = []
        inp = make_input(leaves)
        h = None
        if hx is not None:
            h = tuple(s.detach().clone().requires_grad_() for s in hx) if isinstance(hx, tuple) \
                else hx.detach().clone().requires_grad_()
            leaves += list(h) if isinstance(h, tuple) else [h]
        out, h_n = m(inp) if h is None else m(inp, h)
        out = out.data if hasattr(out, "batch_sizes") else out
        weighted_sum([out, flat(h_n)]).backward()
        results.append((out, flat(h_n), [t.grad for t in leaves]))
    (o1, n1, g1), (o2, n2, g2) = results
    assert_close("output", o1.detach(), o2.detach(), atol=1e-10)
    assert_close("final states", n1.detach(), n2.detach(), atol=1e-10)
    assert_same_grads(ours, ref, [(f"input/state gradient {i}", a, b)
                                  for i, (a, b) in enumerate(zip(g1, g2))])


@pytest.mark.parametrize("kind, case", _cases("LSTM") + _cases("GRU"))
@pytest.mark.parametrize("with_hx", [False, True])
def test_matches_nn(kind, case, with_hx, impl):
    T, B, I, H, kw = CASES[case]
    ours, ref = twins(I, H, kind=kind, **kw)
    g = torch.Generator().manual_seed(2)
    x = torch.randn((B, T, I) if kw.get("batch_first") else (T, B, I), generator=g, dtype=F64)

    def make_input(leaves):
        leaves.append(x.clone().requires_grad_())
        return leaves[-1]

    _run_both(ours, ref, make_input, states(ref, False, B) if with_hx else None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_hx", [False, True])
def test_unbatched(kind, with_hx, impl):
    kw = {"proj_size": 2} if kind == "LSTM" else {}
    ours, ref = twins(4, 6, kind=kind, num_layers=2, bidirectional=True, **kw)
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(3), dtype=F64)

    def make_input(leaves):
        leaves.append(x.clone().requires_grad_())
        return leaves[-1]

    _run_both(ours, ref, make_input, states(ref, True, None) if with_hx else None)
    out, h_n = ours(x)
    assert out.shape == (7, 2 * (2 if kind == "LSTM" else 6))
    shapes = [(4, 2), (4, 6)] if kind == "LSTM" else [(4, 6)]
    assert [s.shape for s in (h_n if kind == "LSTM" else (h_n,))] == shapes


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_sequence(kind, batch_first, enforce_sorted, impl):
    T, B, I, H = 8, 5, 3, 4
    kw = {"proj_size": 3} if kind == "LSTM" else {}
    ours, ref = twins(I, H, kind=kind, num_layers=2, bidirectional=True, batch_first=batch_first,
                      **kw)
    lengths = torch.tensor([8, 8, 5, 3, 1] if enforce_sorted else [3, 8, 1, 5, 8])
    padded = torch.randn((B, T, I) if batch_first else (T, B, I),
                         generator=torch.Generator().manual_seed(4), dtype=F64)
    packs = []

    def make_input(leaves):
        leaves.append(padded.clone().requires_grad_())
        packs.append(pack_padded_sequence(leaves[-1], lengths, batch_first=batch_first,
                                          enforce_sorted=enforce_sorted))
        return packs[-1]

    _run_both(ours, ref, make_input, states(ref, False, B))
    out, _ = ours(packs[0])
    assert torch.equal(out.batch_sizes, packs[0].batch_sizes)
    assert (out.sorted_indices is None) == enforce_sorted
    assert torch.equal(pad_packed_sequence(out, batch_first=batch_first)[1], lengths)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("algo", ["step", "persistent"])
def test_cuda_backend_code_through_the_emulator(kind, algo):
    """The GPU path (the cells' kernels, launchers, the framework's weight views) run on the CPU:
    packed, two bidirectional layers (LSTM with a projection), against torch.nn."""
    require_emulator()
    T, B, I, H = 6, 3, 3, 5
    kw = {"proj_size": 2} if kind == "LSTM" else {}
    ours, ref = twins(I, H, kind=kind, num_layers=2, bidirectional=True, **kw)
    ours.backend, ours.algo = "emulator", algo
    lengths = torch.tensor([4, 6, 2])
    padded = torch.randn(T, B, I, generator=torch.Generator().manual_seed(5), dtype=F64)

    def make_input(leaves):
        leaves.append(padded.clone().requires_grad_())
        return pack_padded_sequence(leaves[-1], lengths, enforce_sorted=False)

    _run_both(ours, ref, make_input, states(ref, False, B))


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip(kind):
    """ours -> torch.nn -> a fresh one of ours: the same names, values and outputs. Layer 1 has
    I == H, so a mix-up of weight_ih and weight_hh would pass a shape check but not this; the
    gates of one matrix differ, so a mix-up of their order would not pass either."""
    kw = {"proj_size": 2} if kind == "LSTM" else {}
    models = []
    for seed, cls in ((1, getattr(gt, kind)), (2, getattr(torch.nn, kind)), (3, getattr(gt, kind))):
        torch.manual_seed(seed)  # three different initial states
        models.append(cls(4, 4, num_layers=2, bidirectional=True, dtype=F64, **kw))
    ours, ref, back = models
    want = {k: v.clone() for k, v in ours.state_dict().items()}
    assert list(want) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    back.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 4, generator=torch.Generator().manual_seed(6), dtype=F64)
    out, h_n = ours(x)
    ref_out, ref_h = ref(x)
    assert_close("output after loading into torch.nn", ref_out.detach(), out.detach(), atol=1e-10)
    assert_close("states after loading into torch.nn", flat(ref_h).detach(), flat(h_n).detach(),
                 atol=1e-10)
    back_out, back_h = back(x)
    assert torch.equal(back_out, out) and torch.equal(flat(back_h), flat(h_n))
