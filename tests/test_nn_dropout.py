"""gpu_bptt.nn.Dropout between levels, and the training/evaluation mode of modules."""
import numpy as np
import pytest

from gpu_bptt import nn


def test_training_mode_zeroes_a_fraction_p_and_scales_the_rest():
    x = np.random.default_rng(1).standard_normal((40, 25, 30)).astype(np.float32)  # 30,000 elements
    d = nn.Dropout(0.3, rng=0)
    y = d.forward(x)
    dropped = y == 0
    # binomial(30000, 0.3): standard deviation 0.0026 of the fraction; 0.015 is over 5 of them
    assert abs(dropped.mean() - 0.3) < 0.015
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.7, rtol=1e-6)
    # the backward uses the forward's mask and scale: dx = dy * mask / (1 - p)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    dx = d.backward(dy)
    np.testing.assert_array_equal(dx[dropped], 0)
    np.testing.assert_allclose(dx[~dropped], dy[~dropped] / 0.7, rtol=1e-6)
    assert y.dtype == dx.dtype == np.float32


def test_a_seed_repeats_the_masks_and_evaluation_is_the_identity():
    x = np.ones((5, 4, 3))
    a, b = nn.Dropout(0.5, rng=7), nn.Dropout(0.5, rng=7)
    for _ in range(3):
        np.testing.assert_array_equal(a.forward(x), b.forward(x))
    assert not np.array_equal(a.forward(x), a.forward(x))  # a new mask at every call
    a.eval()
    assert a.forward(x) is not None and np.array_equal(a.forward(x), x)
    np.testing.assert_array_equal(a.backward(x), x)
    assert np.array_equal(nn.Dropout(0.0).forward(x), x)


def test_sequential_sets_the_mode_of_every_level():
    net = nn.Sequential(nn.Elman(3, 4, dtype=np.float64, rng=0), nn.Dropout(0.5, rng=0),
                        nn.Dense(4, 2, dtype=np.float64, rng=0))
    x = np.random.default_rng(3).standard_normal((6, 2, 3))
    assert net.eval() is net and not any(l.training for l in net.layers)
    y1, y2 = net.forward(x), net.forward(x)
    np.testing.assert_array_equal(y1, y2)  # deterministic in evaluation mode
    net.train()
    assert all(l.training for l in net.layers)
    assert not np.array_equal(net.forward(x), y1)
    # gradients flow back through the dropout level to the recurrent one
    net.zero_grad()
    dx = net.backward(np.ones((6, 2, 2)))
    assert dx.shape == x.shape and np.isfinite(dx).all()
    assert np.abs(net.gradients()["0.W"]).sum() > 0


@pytest.mark.parametrize("p, exc, match", [
    (1.0, ValueError, r"p: must be in \[0, 1\), got 1.0"),
    (-0.1, ValueError, "p: must be in"),
    ("0.5", TypeError, "p: expected a number"),
])
def test_bad_probability(p, exc, match):
    with pytest.raises(exc, match=match):
        nn.Dropout(p)


def test_mode_must_be_a_bool():
    with pytest.raises(TypeError, match="mode: expected a bool"):
        nn.Dropout(0.1).train("no")
