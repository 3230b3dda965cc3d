"""An optimizer rebuilt from state_dict() continues exactly as the original: the same parameters,
bit for bit, over several more steps (what a resumed training run relies on)."""
import numpy as np
import pytest

from gpu_bptt import nn

MAKERS = {
    "sgd": lambda p, g: nn.SGD(p, lr=0.1, grads=g),
    "momentum": lambda p, g: nn.SGD(p, lr=0.1, momentum=0.9, grads=g),
    "adam": lambda p, g: nn.Adam(p, lr=0.01, betas=(0.8, 0.9), eps=1e-3, grads=g),
}


def _run(opt, grads, rng, steps):
    for _ in range(steps):
        for g in grads.values():
            g[...] = rng.standard_normal(g.shape)
        opt.step()


@pytest.mark.parametrize("name", MAKERS)
def test_an_optimizer_rebuilt_from_its_state_continues_exactly(name):
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    opt = MAKERS[name](params, grads)
    _run(opt, grads, rng, 3)

    # a second copy, built fresh and loaded from the first one's state, on copies of the parameters
    params2 = {k: v.copy() for k, v in params.items()}
    grads2 = {k: np.zeros_like(v) for k, v in params.items()}
    opt2 = MAKERS[name](params2, grads2)
    opt2.load_state_dict(opt.state_dict())

    before = params["W"].copy()
    state = rng.bit_generator.state
    _run(opt, grads, rng, 4)
    rng.bit_generator.state = state
    _run(opt2, grads2, rng, 4)
    for k in params:
        np.testing.assert_array_equal(params2[k], params[k], err_msg=k)
    assert not np.array_equal(params["W"], before)  # the steps compared above did move them
