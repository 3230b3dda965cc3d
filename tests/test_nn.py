"""The multi-level network: gradients of every level, losses, SGD, clipping, initializers."""
import numpy as np
import pytest

from gpu_bptt import nn
from gpu_bptt.gradcheck import network_gradcheck

from .tolerances import GRADCHECK, assert_close


def two_level_net(I=4, O=3, act2="tanh"):
    return nn.Sequential(nn.Elman(I, 5, dtype=np.float64, rng=1),
                         nn.Dense(5, 6, activation="sigmoid", dtype=np.float64, rng=4),
                         nn.Elman(6, 4, activation=act2, dtype=np.float64, rng=2),
                         nn.Dense(4, O, dtype=np.float64, rng=3))


LOSSES = [
    (nn.MSELoss("all"), lambda r, T, B: r.standard_normal((T, B, 3))),
    (nn.MSELoss("last"), lambda r, T, B: r.standard_normal((T, B, 3))),
    (nn.SoftmaxCrossEntropy("all"), lambda r, T, B: r.integers(0, 3, (T, B))),
    (nn.SoftmaxCrossEntropy("last"), lambda r, T, B: r.integers(0, 3, (T, B))),
]


@pytest.mark.parametrize("loss, make_target", LOSSES, ids=["mse-all", "mse-last", "ce-all", "ce-last"])
@pytest.mark.parametrize("use_lengths", [False, True])
def test_network_with_two_recurrent_levels_gradcheck(loss, make_target, use_lengths):
    r = np.random.default_rng(7)
    T, B = 6, 3
    net = two_level_net()
    x = r.standard_normal((T, B, 4))
    lengths = np.array([6, 2, 4]) if use_lengths else None
    res = network_gradcheck(net, loss, x, make_target(r, T, B), lengths=lengths, **GRADCHECK)
    assert len(res.errors) == 10  # W, V, b of two Elman levels; W, b of two Dense levels
    res.assert_ok()


def test_losses_ignore_padded_steps():
    r = np.random.default_rng(0)
    y = r.standard_normal((5, 2, 3))
    t = r.standard_normal((5, 2, 3))
    L = np.array([5, 2])
    base, dy = nn.MSELoss()(y, t, lengths=L)
    y2 = y.copy()
    y2[2:, 1] += 100
    again, _ = nn.MSELoss()(y2, t, lengths=L)
    assert base == again and not dy[2:, 1].any()
    # the mean is over the 7 counted steps and the 3 features
    assert np.isclose(base, ((y - t) ** 2)[np.arange(5)[:, None] < L].mean())
    last, dyl = nn.MSELoss("last")(y, t, lengths=L)
    assert np.isclose(last, np.mean([((y[4, 0] - t[4, 0]) ** 2).mean(), ((y[1, 1] - t[1, 1]) ** 2).mean()]))
    assert np.count_nonzero(np.abs(dyl).sum(axis=2)) == 2


def test_cross_entropy_value_and_bad_targets():
    y = np.zeros((1, 2, 4))
    loss, _ = nn.SoftmaxCrossEntropy()(y, np.array([[0, 3]]))
    assert np.isclose(loss, np.log(4))
    with pytest.raises(ValueError, match=r"^target: class indices must be in 0..3"):
        nn.SoftmaxCrossEntropy()(y, np.array([[0, 4]]))
    with pytest.raises(ValueError, match=r"^target: expected class indices of shape"):
        nn.SoftmaxCrossEntropy()(y, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"^target: expected shape"):
        nn.MSELoss()(y, np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"^at: expected"):
        nn.MSELoss(at="first")


def test_sgd_is_the_seeds_rule_and_momentum():
    W = np.array([1.0, 2.0])
    g = np.array([0.5, -1.0])
    opt = nn.SGD({"W": W}, lr=0.1, grads={"W": g})
    opt.step()
    np.testing.assert_allclose(W, [0.95, 2.1])  # W <- W + ΔW, ΔW = -α ∂e/∂W
    W2 = np.array([1.0])
    g2 = np.array([1.0])
    opt = nn.SGD({"W": W2}, lr=0.1, momentum=0.9, grads={"W": g2})
    opt.step()
    opt.step()
    np.testing.assert_allclose(W2, [1.0 - 0.1 - (0.09 + 0.1)])
    with pytest.raises(ValueError, match="^lr: must be a finite number > 0, got 0.0$"):
        nn.SGD({"W": W}, lr=0, grads={"W": g})
    with pytest.raises(ValueError, match="^momentum: must be in"):
        nn.SGD({"W": W}, lr=0.1, momentum=1.0, grads={"W": g})


def test_clip_grad_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert nn.clip_grad_norm(grads, 10.0) == 5.0
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])
    assert nn.clip_grad_norm(grads, 1.0) == 5.0
    assert np.isclose(nn.grad_norm(grads), 1.0)
    with pytest.raises(FloatingPointError):
        nn.clip_grad_norm({"a": np.array([np.nan])}, 1.0)


def test_initializers():
    l = nn.Elman(3, 50, rng=0)
    k = 1 / np.sqrt(50)
    for name in ("W", "V", "b"):
        v = l.parameters()[name]
        assert v.dtype == np.float32 and np.abs(v).max() <= k and np.abs(v).max() > 0.9 * k
    irnn = nn.Elman(3, 4, activation="relu", init_V="identity", rng=0)
    np.testing.assert_array_equal(irnn.parameters()["V"], np.eye(4, dtype=np.float32))
    assert "b" not in nn.Elman(3, 4, bias=False).parameters()


def test_layer_input_errors():
    l = nn.Elman(3, 4)
    with pytest.raises(ValueError, match=r"^x: expected shape \(T, B, 3\)"):
        l.forward(np.zeros((2, 2, 5), np.float32))
    with pytest.raises(TypeError, match=r"^x: expected float32"):
        l.forward(np.zeros((2, 2, 3), np.float64))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Elman(3, 4).backward(np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError, match="init_V"):
        nn.Elman(3, 4, init_V="orthogonal")
    with pytest.raises(ValueError, match="hidden_size"):
        nn.Elman(3, 0)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: nn.Elman(2.7, 6), TypeError, r"^input_size: expected an int, got float 2.7$"),
    (lambda: nn.Elman("4", 6), TypeError, r"^input_size: expected an int, got str '4'$"),
    (lambda: nn.Elman(True, 6), TypeError, r"^input_size: expected an int, got bool True$"),
    (lambda: nn.Elman(4, 6.0), TypeError, r"^hidden_size: expected an int, got float 6.0$"),
    (lambda: nn.Elman(4, -1), ValueError, r"^hidden_size: must be >= 1, got -1$"),
    (lambda: nn.Elman(4, 6, algo="bogus"), ValueError, r"^algo: expected one of \('auto', 'step', 'persistent'\), got 'bogus'$"),
    (lambda: nn.Elman(4, 6, algo="persistent"), ValueError, r"^algo: 'persistent' is not supported by the (numpy|cpu) backend"),
    (lambda: nn.Elman(4, 6, dtype="bogus"), TypeError, r"^dtype: expected float32 or float64, got 'bogus'$"),
    (lambda: nn.Elman(4, 6, dtype=np.int32), TypeError, r"^dtype: expected float32 or float64, got int32$"),
    (lambda: nn.Dense(4.5, 2), TypeError, r"^input_size: expected an int, got float 4.5$"),
    (lambda: nn.Dense(4, False), TypeError, r"^output_size: expected an int, got bool False$"),
    (lambda: nn.Dense(4, 0), ValueError, r"^output_size: must be >= 1, got 0$"),
])
def test_layers_reject_bad_arguments_when_built(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_layer_sizes_take_numpy_integers():
    l = nn.Elman(np.int64(3), np.int32(4))
    assert (l.input_size, l.hidden_size) == (3, 4) and type(l.input_size) is int


def _opt_args():
    return {"W": np.ones(2)}, {"W": np.ones(2)}


@pytest.mark.parametrize("make, exc, match", [
    (lambda p, g: nn.SGD(p, lr=np.inf, grads=g), ValueError, r"^lr: must be a finite number > 0, got inf$"),
    (lambda p, g: nn.SGD(p, lr=np.nan, grads=g), ValueError, r"^lr: must be a finite number > 0, got nan$"),
    (lambda p, g: nn.SGD(p, lr=-0.1, grads=g), ValueError, r"^lr: must be a finite number > 0, got -0.1$"),
    (lambda p, g: nn.SGD(p, lr="0.1", grads=g), TypeError, r"^lr: expected a number, got str '0.1'$"),
    (lambda p, g: nn.SGD(p, lr=0.1, momentum=np.nan, grads=g), ValueError, r"^momentum: must be in \[0, 1\), got nan$"),
    (lambda p, g: nn.Adam(p, lr=np.inf, grads=g), ValueError, r"^lr: must be a finite number > 0"),
    (lambda p, g: nn.Adam(p, betas=(0.9, np.nan), grads=g), ValueError, r"^betas\[1\]: must be in \[0, 1\), got nan$"),
    (lambda p, g: nn.Adam(p, betas=0.9, grads=g), TypeError, r"^betas: expected a pair \(beta1, beta2\), got 0.9$"),
    (lambda p, g: nn.Adam(p, eps=np.inf, grads=g), ValueError, r"^eps: must be a finite number > 0, got inf$"),
    (lambda p, g: nn.clip_grad_norm(g, np.nan), ValueError, r"^max_norm: must be a finite number > 0, got nan$"),
    (lambda p, g: nn.clip_grad_norm(g, "1"), TypeError, r"^max_norm: expected a number, got str '1'$"),
])
def test_optimizers_reject_bad_hyperparameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make(*_opt_args())


def test_sgd_lowers_the_loss_on_a_sequence_task():
    """Predict the running sum of a ±1 sequence's last three inputs: needs memory across steps."""
    r = np.random.default_rng(0)
    T, B = 12, 32
    net = nn.Sequential(nn.Elman(1, 16, rng=0), nn.Dense(16, 1, rng=1))
    opt = nn.SGD(net, lr=0.1, momentum=0.9)
    loss_fn = nn.MSELoss()

    def batch():
        x = r.choice([-1.0, 1.0], size=(T, B, 1)).astype(np.float32)
        y = x.copy()
        y[1:] += x[:-1]
        y[2:] += x[:-2]
        return x, y / 3

    losses = []
    for step in range(300):
        x, y = batch()
        net.zero_grad()
        loss, dy = loss_fn(net.forward(x), y)
        net.backward(dy)
        nn.clip_grad_norm(net, 5.0)
        opt.step()
        losses.append(loss)
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    assert last < 0.25 * first, (first, last)


@pytest.mark.parametrize("make", [
    lambda: nn.Elman(4, 5, dtype=np.float64, rng=1),
    lambda: nn.Dense(4, 5, activation="tanh", dtype=np.float64, rng=1),
    lambda: nn.Sequential(nn.Elman(4, 5, dtype=np.float64, rng=1), nn.Dense(5, 5, dtype=np.float64, rng=2)),
], ids=["Elman", "Dense", "Sequential"])
def test_backward_accumulates_into_the_gradients(make):
    """Two backward calls double every gradient; calls with dy1 and dy2 sum to one with dy1 + dy2."""
    r = np.random.default_rng(8)
    x, L = r.standard_normal((6, 3, 4)), np.array([6, 2, 4])
    dy1, dy2 = r.standard_normal((6, 3, 5)), r.standard_normal((6, 3, 5))
    layer = make()
    layer.forward(x, lengths=L)

    def grads_after(*dys):
        layer.zero_grad()
        for dy in dys:
            layer.backward(dy)
        return {k: g.copy() for k, g in layer.gradients().items()}

    once, twice = grads_after(dy1), grads_after(dy1, dy1)
    assert len(once) == len(layer.parameters())
    for k, g in once.items():
        assert np.abs(g).max() > 0, k
        np.testing.assert_array_equal(twice[k], 2 * g, err_msg=k)  # g + g is exact
    summed, joint = grads_after(dy1, dy2), grads_after(dy1 + dy2)
    for k, g in joint.items():
        assert_close(k, summed[k], g)


def test_backward_without_input_grad_gives_the_same_parameter_gradients():
    r = np.random.default_rng(3)
    net = two_level_net()
    x, L = r.standard_normal((6, 3, 4)), np.array([6, 2, 4])
    _, dy = nn.MSELoss()(net.forward(x, lengths=L), r.standard_normal((6, 3, 3)), lengths=L)
    net.zero_grad()
    dx = net.backward(dy)
    full = {k: g.copy() for k, g in net.gradients().items()}
    net.zero_grad()
    assert net.backward(dy, need_input_grad=False) is None and dx.shape == x.shape
    for k, g in net.gradients().items():
        np.testing.assert_array_equal(g, full[k], err_msg=k)
