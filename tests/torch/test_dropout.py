"""Dropout between layers as torch.nn.RNN applies it on the CPU: the same draws from torch's
generator, so with the same seed the outputs and every gradient equal nn.RNN's in float64."""
import warnings

import pytest

from .common import (assert_close, assert_same_grads, gt, layer_input, torch, training_step,
                     twins)

T, B, I, H = 6, 4, 3, 5
LENGTHS = torch.tensor([4, 6, 1, 6])  # unsorted, with a tie


def _input(kind, batch_first):
    return layer_input(kind, batch_first, T, B, I)


def _run(m, kind, batch_first, with_h0, seed):
    return training_step(m, kind, batch_first, with_h0, seed, T=T, B=B, I=I, H=H, lengths=LENGTHS)


@pytest.mark.parametrize("kind", ["batched", "unbatched", "packed"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_dropout_equals_nn_rnn(kind, batch_first, with_h0):
    ours, ref = twins(I, H, num_layers=3, dropout=0.4, batch_first=batch_first, nonlinearity="relu")
    got = _run(ours, kind, batch_first, with_h0, seed=5)
    want = _run(ref, kind, batch_first, with_h0, seed=5)
    for name, a, b in zip(("output", "h_n", "dx", "dh0"), got, want):
        if b is not None:
            assert_close(name, a.detach(), b.detach(), atol=1e-10)
    assert_same_grads(ours, ref)
    # The dropout did something: another seed gives another output.
    other = _run(ours, kind, batch_first, with_h0, seed=6)[0]
    assert not torch.allclose(other, got[0]), "dropout changed nothing"


def test_dropout_is_read_at_call_time():
    ours, ref = twins(I, H, num_layers=2)
    x = _input("batched", False)
    torch.manual_seed(1)
    plain, _ = ours(x)
    for m in (ours, ref):
        m.dropout = 0.5
    outs = []
    for m in (ours, ref):
        torch.manual_seed(1)
        outs.append(m(x)[0].detach())
    assert not torch.allclose(outs[0], plain), "the dropout set after construction was ignored"
    assert_close("output with dropout set after construction", outs[0], outs[1], atol=1e-10)
    ours.eval()
    assert_close("eval mode: no dropout", ours(x)[0].detach(), plain.detach(), atol=0, rtol=0)


def test_dropout_one_and_invalid_at_call_time():
    """p = 1 zeroes the inputs of the next layer (no draw); p outside [0, 1] set after construction
    raises as nn.RNN raises, but only where dropout applies (training, between layers)."""
    ours, ref = twins(I, H, num_layers=2)
    x = _input("batched", False)
    for m in (ours, ref):
        m.dropout = 1.0
    assert_close("p = 1", ours(x)[0].detach(), ref(x)[0].detach(), atol=1e-10)
    for p in (1.5, -0.1):
        msgs = []
        for m in (ours, ref):
            m.dropout = p
            with pytest.raises(RuntimeError) as info:
                m(x)
            msgs.append(str(info.value))
        assert msgs[0] == msgs[1]
    for m in (ours, ref):
        m.eval()
    assert_close("eval ignores p", ours(x)[0].detach(), ref(x)[0].detach(), atol=1e-10)
    one_layer, ref_one = twins(I, H)
    one_layer.dropout = ref_one.dropout = 1.5
    assert_close("one layer ignores p", one_layer(x)[0].detach(), ref_one(x)[0].detach(), atol=1e-10)


def test_dropout_with_one_layer_warns_as_nn_rnn():
    caught = []
    for cls in (torch.nn.RNN, gt.RNN):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            cls(I, H, dropout=0.3)
        caught.append([(x.category, str(x.message)) for x in w])
    assert caught[0] and caught[1] == caught[0]
