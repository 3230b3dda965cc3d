"""gpu_bptt.torch.LSTM and GRU behave as torch.nn.LSTM and GRU around the numbers: dropout between
layers (the same draws from torch's generator), bidirectional with every kind of input, the
errors torch raises (same type and message, found by running both), and empty batches."""
import warnings

import pytest

from .common import (F64, assert_close, assert_same_grads, gt, torch, training_step, twins,
                     weighted_sum, flat)
from .test_errors import raised

T, B, I, H = 6, 4, 3, 5
LENGTHS = torch.tensor([4, 6, 1, 6])  # unsorted, with a tie
KINDS = ["LSTM", "GRU"]


def _options(kind):
    return {"proj_size": 2} if kind == "LSTM" else {}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("input_kind", ["batched", "unbatched", "packed"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_bidirectional_dropout_equals_nn(kind, input_kind, batch_first, with_h0):
    ours, ref = twins(I, H, kind=kind, num_layers=3, bidirectional=True, dropout=0.4,
                      batch_first=batch_first, **_options(kind))
    run = dict(T=T, B=B, I=I, H=H, lengths=LENGTHS)
    got = training_step(ours, input_kind, batch_first, with_h0, 5, **run)
    want = training_step(ref, input_kind, batch_first, with_h0, 5, **run)
    for name, a, b in zip(("output", "final states", "dx", "dhx"), got, want):
        if b is not None:
            assert_close(name, a.detach(), b.detach(), atol=1e-10)
    assert_same_grads(ours, ref)
    other = training_step(ours, input_kind, batch_first, with_h0, 6, **run)[0]
    assert not torch.allclose(other, got[0]), "dropout changed nothing"


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_is_read_at_call_time_and_off_in_eval(kind):
    ours, ref = twins(I, H, kind=kind, num_layers=2)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    plain = ours(x)[0].detach()
    for m in (ours, ref):
        m.dropout = 0.5
    outs = []
    for m in (ours, ref):
        torch.manual_seed(1)
        outs.append(m(x)[0].detach())
    assert not torch.allclose(outs[0], plain), "the dropout set after construction was ignored"
    assert_close("output with dropout set after construction", outs[0], outs[1], atol=1e-10)
    ours.eval()
    assert torch.equal(ours(x)[0], plain)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_with_one_layer_warns_as_nn(kind):
    caught = []
    for cls in (getattr(torch.nn, kind), getattr(gt, kind)):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            cls(I, H, dropout=0.3)
        caught.append([(x.category, str(x.message)) for x in w])
    assert caught[0] and caught[1] == caught[0]


CONSTRUCTOR = {  # name: (args, kwargs)
    "float input_size": ((4.0, 6), {}),
    "str hidden_size": ((4, "6"), {}),
    "int bias": ((4, 6), {"bias": 1}),
    "str batch_first": ((4, 6), {"batch_first": "False"}),
    "proj_size": ((4, 6), {"proj_size": 2}),
    "proj_size equal to hidden_size": ((4, 6), {"proj_size": 6}),
    "negative proj_size": ((4, 6), {"proj_size": -1}),
    "zero hidden_size": ((4, 0), {}),
    "zero num_layers": ((4, 6), {"num_layers": 0}),
    "dropout above one": ((4, 6), {"dropout": 1.5}),
    "nonlinearity": ((4, 6), {"nonlinearity": "relu"}),
    "missing hidden_size": ((4,), {}),
}


@pytest.mark.parametrize("kind, case", [(k, c) for c in CONSTRUCTOR for k in KINDS
                                         if (k, c) != ("LSTM", "proj_size")])  # valid there
def test_constructor_errors_are_torchs(kind, case):
    args, kw = CONSTRUCTOR[case]
    want = raised(lambda: getattr(torch.nn, kind)(*args, **kw))
    got = raised(lambda: getattr(gt, kind)(*args, **kw))
    assert got == want, f"{case}: {got}, torch.nn.{kind}: {want}"


def _x(*shape):
    return lambda: torch.randn(*shape, dtype=F64)


def _hx(kind, *shapes):
    """hx of the given shapes: a tensor (GRU: the first) or a tuple (LSTM)."""
    def make():
        hx = tuple(torch.zeros(s, dtype=F64) for s in shapes)
        return hx if kind == "LSTM" else hx[0]
    return make


def _packed():
    x = torch.randn(5, 3, 4, dtype=F64)
    return torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([5, 2, 4]), enforce_sorted=False)


CALLS = {  # name: (constructor kwargs, input, hx shapes (h, c) or None)
    "4-D input": ({}, _x(5, 3, 4, 1), None),
    "1-D input": ({}, _x(4), None),
    "wrong input size": ({}, _x(5, 3, 5), None),
    "input dtype": ({}, lambda: torch.randn(5, 3, 4), None),
    "h shape": ({}, _x(5, 3, 4), ((1, 3, 5), (1, 3, 6))),
    "c shape": ({}, _x(5, 3, 4), ((1, 3, 6), (1, 3, 5))),
    "c shape, projection": ({"proj_size": 2}, _x(5, 3, 4), ((1, 3, 2), (1, 3, 2))),
    "h shape, projection": ({"proj_size": 2}, _x(5, 3, 4), ((1, 3, 6), (1, 3, 6))),
    "hx layers": ({"num_layers": 2}, _x(5, 3, 4), ((1, 3, 6), (1, 3, 6))),
    "hx directions": ({"bidirectional": True}, _x(5, 3, 4), ((1, 3, 6), (1, 3, 6))),
    "hx batch, batch_first": ({"batch_first": True}, _x(3, 5, 4), ((1, 5, 6), (1, 5, 6))),
    "2-D hx, batched input": ({}, _x(5, 3, 4), ((3, 6), (3, 6))),
    "2-D c, batched input": ({}, _x(5, 3, 4), ((1, 3, 6), (3, 6))),
    "3-D hx, unbatched input": ({}, _x(5, 4), ((1, 1, 6), (1, 1, 6))),
    "hx shape, unbatched": ({}, _x(5, 4), ((2, 6), (2, 6))),
    "hx shape, packed": ({}, _packed, ((1, 3, 5), (1, 3, 6))),
    "wrong input size, packed": ({"input_size": 3}, _packed, None),
    "empty sequence": ({}, _x(0, 3, 4), None),
    "empty sequence, batch_first": ({"batch_first": True}, _x(3, 0, 4), None),
    "empty sequence, unbatched": ({}, _x(0, 4), None),
}


LSTM_ONLY = ("c shape", "c shape, projection", "h shape, projection", "2-D c, batched input")


def _call_cases():
    return [(k, c) for c in CALLS for k in KINDS if k == "LSTM" or c not in LSTM_ONLY]


# Where torch.nn.LSTM checks nothing on a packed input and fails inside its operator, with that
# operator's words, ours says what is wrong (as torch.nn.GRU and RNN do).
OWN_WORDS = {
    ("LSTM", "hx shape, packed"): "Expected hidden[0] size (1, 3, 6), got [1, 3, 5]",  # torch: "got
    # an incorrect number of RNN parameters"
    ("LSTM", "wrong input size, packed"):  # torch: "mat1 and mat2 shapes cannot be multiplied"
        "input.size(-1) must be equal to input_size. Expected 3, got 4",
}


@pytest.mark.parametrize("kind, case", _call_cases())
def test_call_errors_are_torchs(kind, case):
    kw, make_input, hx_shapes = CALLS[case]
    kw = {"input_size": 4, **kw}
    ours, ref = twins(kw.pop("input_size"), 6, kind=kind, **kw)
    x = make_input()
    args = (x,) if hx_shapes is None else (x, _hx(kind, *hx_shapes)())
    want, got = raised(lambda: ref(*args)), raised(lambda: ours(*args))
    if (kind, case) in OWN_WORDS:
        want = (want[0], OWN_WORDS[kind, case])
    assert got == want, f"{case}: {got}, torch.nn.{kind}: {want}"


@pytest.mark.parametrize("kind", KINDS)
def test_state_dtype_raises_runtime_error_naming_the_state(kind):
    """torch.nn fails inside its operator; the same type, with a message naming the state. (A c0
    of another dtype, torch.nn.LSTM promotes in its arithmetic; ours refuses it the same way:
    README, PyTorch section.)"""
    ours, ref = twins(4, 6, kind=kind)
    x = torch.randn(5, 3, 4, dtype=F64)
    h0 = torch.zeros(1, 3, 6)  # float32
    hx = (h0, torch.zeros(1, 3, 6, dtype=F64)) if kind == "LSTM" else h0
    assert raised(lambda: ref(x, hx))[0] is RuntimeError
    name = r"hx\[0\]" if kind == "LSTM" else "hx"
    want = ": expected the input's dtype torch.float64, got torch.float32"
    with pytest.raises(RuntimeError, match=name + want):
        ours(x, hx)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch(kind, batch_first):
    """B = 0: empty outputs of torch.nn's shapes, with a graph (zero gradients)."""
    ours, ref = twins(4, 6, kind=kind, num_layers=2, batch_first=batch_first, bidirectional=True,
                      **({"proj_size": 3} if kind == "LSTM" else {}))
    shape = (0, 5, 4) if batch_first else (5, 0, 4)
    results = []
    for m in (ours, ref):
        x = torch.randn(shape, dtype=F64, requires_grad=True)
        out, h_n = m(x)
        weighted_sum([out, flat(h_n)]).backward()
        results.append((out, h_n if isinstance(h_n, tuple) else (h_n,), x.grad,
                        [p.grad for p in m.parameters()]))
    (o1, n1, dx1, g1), (o2, n2, dx2, g2) = results
    assert o1.shape == o2.shape and dx1.shape == dx2.shape
    assert [t.shape for t in n1] == [t.shape for t in n2]
    for a, b in zip(g1, g2):
        assert_close("zero gradient", a, b, atol=0, rtol=0)
