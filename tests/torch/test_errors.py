"""Mistakes raise what torch.nn.RNN raises in this PyTorch: the same exception type and message,
found by running both; and the zero sizes it accepts (an empty batch) give what it gives."""
import pytest

from .common import F64, assert_close, gt, torch, twins, weighted_sum

from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402


def raised(fn):
    """(type, message) of what fn() raises; fails the test if it returns."""
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value)


CONSTRUCTOR = {  # name: (args, kwargs)
    "float input_size": ((4.0, 6), {}),
    "str hidden_size": ((4, "6"), {}),
    "int bias": ((4, 6), {"bias": 1}),
    "str batch_first": ((4, 6), {"batch_first": "False"}),
    "proj_size": ((4, 6), {"proj_size": 2}),
    "proj_size zero": ((4, 6), {"proj_size": 0}),
    "unknown nonlinearity": ((4, 6), {"nonlinearity": "sigmoid"}),
    "positional nonlinearity": ((4, 6, 1, "gelu"), {}),
    "zero hidden_size": ((4, 0), {}),
    "negative hidden_size": ((4, -1), {}),
    "zero input_size": ((0, 6), {}),
    "zero num_layers": ((4, 6), {"num_layers": 0}),
    "float num_layers": ((4, 6), {"num_layers": 1.5}),
    "dropout above one": ((4, 6), {"dropout": 1.5}),
    "bool dropout": ((4, 6), {"dropout": True}),
    "unknown argument": ((4, 6), {"hiden_size": 3}),
    "missing hidden_size": ((4,), {}),
}


@pytest.mark.parametrize("case", list(CONSTRUCTOR))
def test_constructor_errors_are_torchs(case):
    args, kw = CONSTRUCTOR[case]
    want = raised(lambda: torch.nn.RNN(*args, **kw))
    got = raised(lambda: gt.RNN(*args, **kw))
    assert got[0] is want[0], f"{case}: {got[0].__name__} ({got[1]}), torch.nn.RNN: {want[0].__name__}"
    assert got[1] == want[1]


def _packed(batch_first=False):
    x = torch.randn(5, 3, 4, dtype=F64)
    return pack_padded_sequence(x, torch.tensor([5, 2, 4]), enforce_sorted=False)


CALLS = {  # name: (constructor kwargs, input, hx)
    "4-D input": ({}, lambda: torch.randn(5, 3, 4, 1, dtype=F64), None),
    "1-D input": ({}, lambda: torch.randn(4, dtype=F64), None),
    "wrong input size": ({}, lambda: torch.randn(5, 3, 5, dtype=F64), None),
    "wrong input size, unbatched": ({}, lambda: torch.randn(5, 3, dtype=F64), None),
    "input dtype": ({}, lambda: torch.randn(5, 3, 4), None),
    "integer input": ({}, lambda: torch.ones(5, 3, 4, dtype=torch.long), None),
    "hx shape": ({}, lambda: torch.randn(5, 3, 4, dtype=F64), lambda: torch.zeros(1, 3, 5, dtype=F64)),
    "hx layers": ({"num_layers": 2}, lambda: torch.randn(5, 3, 4, dtype=F64),
                  lambda: torch.zeros(1, 3, 6, dtype=F64)),
    "hx batch, batch_first": ({"batch_first": True}, lambda: torch.randn(3, 5, 4, dtype=F64),
                              lambda: torch.zeros(1, 5, 6, dtype=F64)),
    "2-D hx, batched input": ({}, lambda: torch.randn(5, 3, 4, dtype=F64), lambda: torch.zeros(3, 6, dtype=F64)),
    "3-D hx, unbatched input": ({}, lambda: torch.randn(5, 4, dtype=F64), lambda: torch.zeros(1, 1, 6, dtype=F64)),
    "hx shape, unbatched": ({}, lambda: torch.randn(5, 4, dtype=F64), lambda: torch.zeros(2, 6, dtype=F64)),
    "hx shape, packed": ({}, _packed, lambda: torch.zeros(1, 3, 5, dtype=F64)),
    "hx batch, packed": ({}, _packed, lambda: torch.zeros(1, 2, 6, dtype=F64)),
    "wrong input size, packed": ({"input_size": 3}, _packed, None),
    "empty sequence": ({}, lambda: torch.randn(0, 3, 4, dtype=F64), None),
    "empty sequence, batch_first": ({"batch_first": True}, lambda: torch.randn(3, 0, 4, dtype=F64), None),
    "empty sequence, unbatched": ({}, lambda: torch.randn(0, 4, dtype=F64), None),
}


# Where torch.nn.RNN fails inside an operator, with that operator's words, ours says what is wrong.
OWN_WORDS = {
    # torch.nn.RNN reorders hx by the packed batch's order first: "INDICES element is out of DATA
    # bounds, id=2 axis_dim=2"
    "hx batch, packed": "Expected hidden size (1, 3, 6), got [1, 2, 6]",
}


@pytest.mark.parametrize("case", list(CALLS))
def test_call_errors_are_torchs(case):
    kw, make_input, make_hx = CALLS[case]
    kw = {"input_size": 4, **kw}
    ours, ref = twins(kw.pop("input_size"), 6, **kw)
    x = make_input()
    args = (x,) if make_hx is None else (x, make_hx())
    want, got = raised(lambda: ref(*args)), raised(lambda: ours(*args))
    assert got[0] is want[0], f"{case}: {got[0].__name__} ({got[1]}), torch.nn.RNN: {want[0].__name__}"
    if case in OWN_WORDS:
        assert got[1] == OWN_WORDS[case], f"torch.nn.RNN says: {want[1]}"
    else:
        assert got[1] == want[1]


def test_hx_dtype_raises_runtime_error_naming_hx():
    """torch.nn.RNN fails inside its matrix product ("mat1 and mat2 must have the same dtype");
    the same type, with a message that names the argument."""
    ours, ref = twins(4, 6)
    x, hx = torch.randn(5, 3, 4, dtype=F64), torch.zeros(1, 3, 6)
    assert raised(lambda: ref(x, hx))[0] is RuntimeError
    with pytest.raises(RuntimeError, match=r"hx: expected the input's dtype torch.float64, got torch.float32"):
        ours(x, hx)


@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch(batch_first):
    """B = 0: empty outputs of nn.RNN's shapes, with a graph (zero gradients), given hx or not."""
    ours, ref = twins(4, 6, num_layers=2, batch_first=batch_first)
    shape = (0, 5, 4) if batch_first else (5, 0, 4)
    for hx in (None, torch.zeros(2, 0, 6, dtype=F64, requires_grad=True)):
        results = []
        for m in (ours, ref):
            m.zero_grad()
            x = torch.randn(shape, dtype=F64, requires_grad=True)
            out, h_n = m(x) if hx is None else m(x, hx)
            weighted_sum([out, h_n]).backward()
            results.append((out, h_n, x.grad, [p.grad for p in m.parameters()]))
        (o1, n1, dx1, g1), (o2, n2, dx2, g2) = results
        assert o1.shape == o2.shape and n1.shape == n2.shape and dx1.shape == dx2.shape
        for a, b in zip(g1, g2):
            assert_close("zero gradient", a, b, atol=0, rtol=0)


def test_empty_batch_functional():
    h, h_last = gt.elman(torch.randn(3, 0, 2, dtype=F64), torch.randn(2, 5, dtype=F64),
                         torch.randn(5, 5, dtype=F64))
    assert h.shape == (3, 0, 5) and h_last.shape == (0, 5)
    with pytest.raises(ValueError, match="activation"):
        gt.elman(torch.randn(3, 0, 2, dtype=F64), torch.randn(2, 5, dtype=F64),
                 torch.randn(5, 5, dtype=F64), activation="softsign")
