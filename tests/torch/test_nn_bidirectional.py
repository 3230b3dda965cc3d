"""gpu_bptt.nn.Elman(bidirectional=True) against torch.nn.RNN(bidirectional=True) in float64: the
output (forward features first), the final states of both directions and every gradient, with
variable lengths (torch's packed sequences) and without."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_bptt import nn

torch = pytest.importorskip("torch", reason="PyTorch is not installed: no reference to compare with")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

T, B, I, H = 6, 4, 3, 5


def _pair(seed=0):
    ours = nn.Elman(I, H, bidirectional=True, dtype=np.float64, backend="numpy", rng=seed)
    ref = torch.nn.RNN(I, H, bidirectional=True, dtype=torch.float64)
    p = ours.parameters()
    with torch.no_grad():
        for suffix in ("", "_reverse"):
            getattr(ref, f"weight_ih_l0{suffix}").copy_(torch.from_numpy(p["W" + suffix].T))
            getattr(ref, f"weight_hh_l0{suffix}").copy_(torch.from_numpy(p["V" + suffix].T))
            getattr(ref, f"bias_ih_l0{suffix}").copy_(torch.from_numpy(p["b" + suffix]))
            getattr(ref, f"bias_hh_l0{suffix}").zero_()
    return ours, ref


@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]], ids=["full", "ragged"])
def test_bidirectional_level_matches_torch(lengths):
    ours, ref = _pair()
    r = np.random.default_rng(1)
    x = r.standard_normal((T, B, I))
    h0 = r.standard_normal((2, B, H)) * 0.5
    dy = r.standard_normal((T, B, 2 * H))
    dh_last = r.standard_normal((2, B, H))
    L = None if lengths is None else np.array(lengths)
    if L is not None:  # padded steps: our output is 0 there, torch's padding is 0 too
        dy[np.arange(T)[:, None] >= L[None, :]] = 0

    y = ours.forward(x, lengths=L, h0=h0)
    dx = ours.backward(dy, dh_last=dh_last)

    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0)
    if L is None:
        yt, hn = ref(xt, h0t)
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        yp, hn = ref(packed, h0t)
        yt, _ = pad_packed_sequence(yp, total_length=T)
    (yt * torch.tensor(dy)).sum().add((hn * torch.tensor(dh_last)).sum()).backward()

    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.h_last, hn.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    g = ours.gradients()
    for suffix in ("", "_reverse"):
        np.testing.assert_allclose(g["W" + suffix], getattr(ref, f"weight_ih_l0{suffix}").grad.T,
                                   rtol=1e-9, atol=1e-11, err_msg="W" + suffix)
        np.testing.assert_allclose(g["V" + suffix], getattr(ref, f"weight_hh_l0{suffix}").grad.T,
                                   rtol=1e-9, atol=1e-11, err_msg="V" + suffix)
        np.testing.assert_allclose(g["b" + suffix], getattr(ref, f"bias_ih_l0{suffix}").grad,
                                   rtol=1e-9, atol=1e-11, err_msg="b" + suffix)


def test_a_bidirectional_stack_feeds_2h_features_up():
    net = nn.Sequential(nn.Elman(I, H, bidirectional=True, dtype=np.float64, rng=0),
                        nn.Elman(2 * H, H, dtype=np.float64, rng=1))
    x = np.random.default_rng(2).standard_normal((T, B, I))
    assert net.forward(x).shape == (T, B, H)
    assert net.backward(np.ones((T, B, H))).shape == x.shape


def test_bidirectional_shapes_are_checked():
    ours, _ = _pair()
    x = np.zeros((T, B, I))
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, B, H\) = \(2, 4, 5\)"):
        ours.forward(x, h0=np.zeros((B, H)))
    ours.forward(x)
    with pytest.raises(ValueError, match=r"dh: expected \(T, B, 2H\)"):
        ours.backward(np.zeros((T, B, H)))
    with pytest.raises(TypeError, match="bidirectional: expected a bool"):
        nn.Elman(I, H, bidirectional="yes")
