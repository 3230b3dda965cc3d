"""gpu_bptt.nn's SGD, momentum SGD, Adam and clip_grad_norm against torch.optim and
torch.nn.utils.clip_grad_norm_ in float64, step by step, with gradients of very different scales
(tiny ones make Adam's eps matter; large ones are clipped)."""
import numpy as np
import pytest

from gpu_bptt import nn

from .common import assert_close, torch

SHAPES = {"W": (4, 3), "V": (3, 3), "b": (3,)}
# gradient scale of each step: some above max_norm (clipped), some far below it
SCALES = [1.0, 3.0, 0.01, 1e-5, 5.0, 0.2, 1e-4, 2.0, 1e-6, 0.5]

OPTIMIZERS = {  # name: (ours, torch's, keyword arguments)
    "sgd": (nn.SGD, torch.optim.SGD, dict(lr=0.1)),
    "momentum": (nn.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "adam": (nn.Adam, torch.optim.Adam, dict(lr=0.01)),
    "adam-eps": (nn.Adam, torch.optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), eps=1e-3)),
}


@pytest.mark.parametrize("clip", [None, 1.0])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_steps_match_torch_optim(name, clip):
    ours_cls, torch_cls, kw = OPTIMIZERS[name]
    r = np.random.default_rng(5)
    params = {k: r.standard_normal(s) for k, s in SHAPES.items()}
    grads = {k: np.zeros(s) for k, s in SHAPES.items()}
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = ours_cls(params, grads=grads, **kw)
    topt = torch_cls(list(tparams.values()), **kw)
    clipped = 0
    for step, scale in enumerate(SCALES):
        for k, s in SHAPES.items():
            g = r.standard_normal(s) * scale
            grads[k][...] = g
            tparams[k].grad = torch.tensor(g)
        if clip is not None:
            norm = nn.clip_grad_norm(grads, clip)
            tnorm = torch.nn.utils.clip_grad_norm_(list(tparams.values()), clip)
            assert norm == pytest.approx(float(tnorm), rel=1e-14)
            clipped += norm > clip
            for k in SHAPES:
                assert_close(f"step {step}: clipped grad {k}", grads[k], tparams[k].grad.numpy())
        opt.step()
        topt.step()
        for k in SHAPES:
            assert_close(f"step {step}: {k}", params[k], tparams[k].detach().numpy())
    assert clip is None or 0 < clipped < len(SCALES)  # both branches of the clipping ran
