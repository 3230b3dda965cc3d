"""What code uses on a torch.nn.RNN besides calling it: attributes, repr, flatten_parameters,
weight replacement, weight_norm and parametrizations, copies; against torch.nn.RNN."""
import copy
import pickle

import pytest

from .common import F64, assert_close, assert_same_grads, gt, torch, twins, weighted_sum

from torch.nn.utils import parametrizations, parametrize  # noqa: E402

KWARGS = [{}, {"num_layers": 3, "bias": False}, {"nonlinearity": "relu", "batch_first": True},
          {"num_layers": 2, "dropout": 0.25}]


@pytest.mark.parametrize("kw", KWARGS)
def test_attributes_and_repr_equal_nn_rnn(kw):
    ours, ref = twins(3, 4, **kw)
    assert isinstance(ours, torch.nn.RNNBase)
    for name in ("mode", "nonlinearity", "proj_size", "input_size", "hidden_size", "num_layers",
                 "bias", "batch_first", "dropout", "bidirectional", "_flat_weights_names"):
        assert getattr(ours, name) == getattr(ref, name), name
    assert repr(ours) == repr(ref)
    assert [[tuple(p.shape) for p in layer] for layer in ours.all_weights] == \
        [[tuple(p.shape) for p in layer] for layer in ref.all_weights]
    params = dict(ours.named_parameters())
    assert [p for layer in ours.all_weights for p in layer] == [params[n] for n in ours._flat_weights_names]
    assert all(w is params[n] for w, n in zip(ours._flat_weights, ours._flat_weights_names))


def test_repr_names_our_own_options():
    assert repr(gt.RNN(3, 4, backend="numpy", algo="step")) == "RNN(3, 4, backend='numpy', algo='step')"


def test_flatten_parameters_and_to_keep_the_weights():
    ours, _ = twins(3, 4, num_layers=2)
    before = [p.detach().clone() for p in ours.parameters()]
    assert ours.flatten_parameters() is None
    assert all(torch.equal(a, b) for a, b in zip(before, ours.parameters()))
    ours.float()
    assert ours._flat_weights[0] is ours.weight_ih_l0 and ours._flat_weights[0].dtype == torch.float32
    out, _ = ours(torch.randn(5, 2, 3))
    assert out.dtype == torch.float32


def test_replacing_a_weight_takes_effect():
    ours, ref = twins(3, 4)
    new = torch.nn.Parameter(torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=F64))
    for m in (ours, ref):
        m.weight_hh_l0 = new
    assert ours._flat_weights[1] is new
    x = torch.randn(5, 2, 3, dtype=F64)
    assert_close("output", ours(x)[0].detach(), ref(x)[0].detach(), atol=1e-10)


def _train_step(ours, ref):
    x0 = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    outs = []
    for m in (ours, ref):
        x = x0.clone().requires_grad_()
        out, h_n = m(x)
        weighted_sum([out, h_n]).backward()
        outs.append((out.detach(), h_n.detach(), x.grad))
    for name, a, b in zip(("output", "h_n", "dx"), *outs):
        assert_close(name, a, b, atol=1e-10)
    assert_same_grads(ours, ref)


def test_weight_norm():
    ours, ref = twins(3, 4, num_layers=2)
    for m in (ours, ref):
        with pytest.warns(FutureWarning):  # deprecated in favour of parametrizations.weight_norm
            torch.nn.utils.weight_norm(m, "weight_hh_l1")
    _train_step(ours, ref)


@pytest.mark.parametrize("how", ["orthogonal", "weight_norm", "custom"])
def test_parametrizations(how):
    class Symmetric(torch.nn.Module):
        def forward(self, X):
            return X.triu() + X.triu(1).mT

    ours, ref = twins(3, 4, num_layers=2)
    for m in (ours, ref):
        if how == "orthogonal":
            parametrizations.orthogonal(m, "weight_hh_l0")
        elif how == "weight_norm":
            parametrizations.weight_norm(m, "weight_ih_l1")
        else:
            parametrize.register_parametrization(m, "weight_hh_l1", Symmetric())
    _train_step(ours, ref)


def test_copies_and_pickling():
    ours = gt.RNN(3, 4, num_layers=2, backend="numpy", dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    want, _ = ours(x)
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert clone.backend == "numpy" and clone._flat_weights[0] is clone.weight_ih_l0
        assert torch.equal(clone(x)[0], want)
