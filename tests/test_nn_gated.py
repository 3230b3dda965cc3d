"""The gated levels gpu_bptt.nn.LSTM and nn.GRU against torch.nn.LSTM / nn.GRU in float64.

torch runs the same parameters (mapped: weight_ih = W.T, weight_hh = V.T, weight_hr = R.T; LSTM
bias_ih = b, bias_hh = 0; GRU bias_ih = b_x, bias_hh = b_h) over a packed sequence, so lengths and
the reverse direction are torch's own. Gradients come from torch.autograd on
e = Σ y·dy + Σ h_last·dh_last (+ Σ c_last·dc_last)."""
import numpy as np
import pytest
import torch

from gpu_bptt import nn

from .skips import require_emulator
from .tolerances import assert_close

T, B, I, H = 6, 3, 4, 5
LENGTHS = np.array([6, 2, 4])


def close(name, x, ref):
    """Within 1e-10, the issue's bar for float64 against torch."""
    assert_close(name, x, ref, atol=1e-10, rtol=1e-10)


def torch_twin(level):
    """The torch.nn module with `level`'s parameters."""
    kind = torch.nn.LSTM if isinstance(level, nn.LSTM) else torch.nn.GRU
    kw = dict(proj_size=level.proj_size) if kind is torch.nn.LSTM else {}
    bias = any(k.startswith("b") for k in level.parameters())
    t = kind(I, H, bias=bias, bidirectional=level.bidirectional, dtype=torch.float64, **kw)
    p = level.parameters()
    names = {"W": "weight_ih", "V": "weight_hh", "R": "weight_hr", "b": "bias_ih",
             "b_x": "bias_ih", "b_h": "bias_hh"}
    with torch.no_grad():
        for name, value in p.items():
            base = name.removesuffix("_reverse")
            target = getattr(t, f"{names[base]}_l0" + name[len(base):])
            target.copy_(torch.tensor(value.T if value.ndim == 2 else value))
        if "b" in p:   # torch's two LSTM biases add up to our one
            for suffix in level.directions:
                getattr(t, "bias_hh_l0" + suffix).zero_()
    return t, names


def torch_run(t, x, lengths, states, ups):
    """torch's outputs and gradients: (y, {h_last, c_last}, {dx, dh0, dc0, param grads})."""
    xt = torch.tensor(x, requires_grad=True)
    st = {k: torch.tensor(v, requires_grad=True) for k, v in states.items()}
    inp = xt if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), enforce_sorted=False)
    if isinstance(t, torch.nn.LSTM):
        init = (st["h"], st["c"]) if st else None
        y, (hn, cn) = t(inp, init)
        last = {"h": hn, "c": cn}
    else:
        y, hn = t(inp, st.get("h"))
        last = {"h": hn}
    if lengths is not None:
        y = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)[0]
    e = (y * torch.tensor(ups["y"])).sum()
    for k, v in last.items():
        e = e + (v * torch.tensor(ups[k])).sum()
    e.backward()
    grads = {"dx": xt.grad.numpy(), **{f"d{k}0": v.grad.numpy() for k, v in st.items()}}
    grads.update({name: p.grad.numpy() for name, p in t.named_parameters()})
    return y.detach().numpy(), {k: v.detach().numpy() for k, v in last.items()}, grads


def check_level(level, *, lengths, with_states, seed=0):
    r = np.random.default_rng(seed)
    D = 2 if level.bidirectional else 1
    F = getattr(level, "proj_size", 0) or H
    sizes = {"h": F, "c": H} if isinstance(level, nn.LSTM) else {"h": F}
    x = r.standard_normal((T, B, I))
    states = {k: r.standard_normal((D, B, n)) for k, n in sizes.items()} if with_states else {}
    ups = {"y": r.standard_normal((T, B, D * F)),
           **{k: r.standard_normal((D, B, n)) for k, n in sizes.items()}}
    t, names = torch_twin(level)
    y_t, last_t, grads_t = torch_run(t, x, lengths, states, ups)

    squeeze = (lambda a: a) if level.bidirectional else (lambda a: a[0])
    y = level.forward(x, lengths=lengths, **{k + "0": squeeze(v) for k, v in states.items()})
    close("y", y, y_t)
    for k in sizes:
        close(k + "_last", getattr(level, k + "_last"), squeeze(last_t[k]))
    level.zero_grad()
    dx = level.backward(ups["y"], **{f"d{k}_last": squeeze(ups[k]) for k in sizes})
    close("dx", dx, grads_t["dx"])
    for k in states:
        close(f"d{k}0", getattr(level, f"d{k}0"), squeeze(grads_t[f"d{k}0"]))
    grads = level.gradients()
    for name, g in grads.items():
        base = name.removesuffix("_reverse")
        want = grads_t[f"{names[base]}_l0" + name[len(base):]]
        close(name, g, want.T if want.ndim == 2 else want)
    assert len(grads) == len(list(t.parameters())) - (D if "b" in grads else 0)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("proj_size", [0, 3])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("with_states", [False, True], ids=["zero-states", "h0-c0"])
def test_lstm_level_matches_torch(bidirectional, proj_size, lengths, with_states):
    level = nn.LSTM(I, H, proj_size=proj_size, bidirectional=bidirectional, dtype=np.float64,
                    backend="numpy", rng=1)
    check_level(level, lengths=lengths, with_states=with_states)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("with_states", [False, True], ids=["zero-state", "h0"])
def test_gru_level_matches_torch(bidirectional, lengths, with_states):
    level = nn.GRU(I, H, bidirectional=bidirectional, dtype=np.float64, backend="numpy", rng=1)
    check_level(level, lengths=lengths, with_states=with_states)


@pytest.mark.parametrize("algo", ["step", "persistent"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_levels_on_the_kernels_match_torch(cell, algo):
    """The levels on the emulator (the CUDA kernels run on the CPU), bidirectional, with lengths
    and initial states (an LSTM with a projection)."""
    require_emulator()
    level = (nn.LSTM(I, H, proj_size=3, bidirectional=True, dtype=np.float64, backend="emulator",
                     rng=1, algo=algo) if cell == "lstm" else
             nn.GRU(I, H, bidirectional=True, dtype=np.float64, backend="emulator", rng=1,
                    algo=algo))
    check_level(level, lengths=LENGTHS, with_states=True)


@pytest.mark.parametrize("make", [
    lambda bi: nn.LSTM(I, H, bias=False, bidirectional=bi, dtype=np.float64, rng=2),
    lambda bi: nn.GRU(I, H, bias=False, bidirectional=bi, dtype=np.float64, rng=2),
], ids=["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_levels_without_bias_match_torch(make, bidirectional):
    level = make(bidirectional)
    assert not any(k.startswith("b") for k in level.parameters())
    check_level(level, lengths=LENGTHS, with_states=True)


def test_parameters_are_named_and_initialized_as_pytorch():
    lstm = nn.LSTM(I, H, proj_size=2, bidirectional=True, rng=0)
    shapes = {k: v.shape for k, v in lstm.parameters().items()}
    assert shapes == {"W": (I, 4 * H), "V": (2, 4 * H), "b": (4 * H,), "R": (H, 2),
                      "W_reverse": (I, 4 * H), "V_reverse": (2, 4 * H), "b_reverse": (4 * H,),
                      "R_reverse": (H, 2)}
    gru = nn.GRU(I, H, rng=0)
    assert {k: v.shape for k, v in gru.parameters().items()} == {
        "W": (I, 3 * H), "V": (H, 3 * H), "b_x": (3 * H,), "b_h": (3 * H,)}
    assert set(gru.gradients()) == set(gru.parameters())
    for level in (lstm, gru):
        for v in level.parameters().values():
            assert v.dtype == np.float32
            # torch.nn.LSTM/GRU: uniform in ±1/sqrt(hidden_size) for every parameter
            assert np.abs(v).max() <= 1 / np.sqrt(H) and np.abs(v).max() > 0.8 / np.sqrt(H)
    again = nn.GRU(I, H, rng=0).parameters()
    assert all(np.array_equal(again[k], v) for k, v in gru.parameters().items())


def test_a_stack_with_dropout_between_levels_matches_torch():
    """LSTM -> Dropout -> GRU in training mode: the mask the Dropout drew, applied to torch's
    stack by hand, gives the same output and input gradient."""
    r = np.random.default_rng(3)
    lstm = nn.LSTM(I, H, bidirectional=True, dtype=np.float64, rng=1)
    drop = nn.Dropout(0.4, rng=5)
    gru = nn.GRU(2 * H, I, dtype=np.float64, rng=2)
    net = nn.Sequential(lstm, drop, gru)
    x = r.standard_normal((T, B, I))
    y = net(x)
    dy = r.standard_normal(y.shape)
    dx = net.backward(dy)
    scale = drop._scale
    assert 0 < (scale == 0).mean() < 1

    t1, _ = torch_twin(lstm)
    t2 = torch.nn.GRU(2 * H, I, dtype=torch.float64)
    with torch.no_grad():
        p = gru.parameters()
        t2.weight_ih_l0.copy_(torch.tensor(p["W"].T))
        t2.weight_hh_l0.copy_(torch.tensor(p["V"].T))
        t2.bias_ih_l0.copy_(torch.tensor(p["b_x"]))
        t2.bias_hh_l0.copy_(torch.tensor(p["b_h"]))
    xt = torch.tensor(x, requires_grad=True)
    yt = t2(t1(xt)[0] * torch.tensor(scale))[0]
    (yt * torch.tensor(dy)).sum().backward()
    close("y", y, yt.detach().numpy())
    close("dx", dx, xt.grad.numpy())
    close("V_reverse", lstm.gradients()["V_reverse"], t1.weight_hh_l0_reverse.grad.numpy().T)
    net.eval()
    close("eval y", net(x), t2(t1(xt)[0])[0].detach().numpy())


@pytest.mark.parametrize("make, message", [
    (lambda: nn.LSTM(I, H, proj_size=H), "proj_size: must be in 0..hidden_size-1"),
    (lambda: nn.LSTM(I, H, proj_size=-1), "proj_size: must be in 0..hidden_size-1"),
    (lambda: nn.LSTM(0, H), "input_size"),
    (lambda: nn.GRU(I, 0), "hidden_size"),
    (lambda: nn.GRU(I, H, algo="fast"), "algo"),
])
def test_bad_constructor_values_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make, message", [
    (lambda: nn.LSTM(I, H, proj_size=1.5), "proj_size: expected an int"),
    (lambda: nn.LSTM(I, H, bidirectional=1), "bidirectional: expected a bool"),
    (lambda: nn.GRU(I, H, bias="yes"), "bias: expected a bool"),
    (lambda: nn.GRU(I, H, dtype=np.int32), "dtype"),
])
def test_bad_constructor_types_name_the_argument(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_bad_states_and_gradients_name_the_argument():
    x = np.zeros((T, B, I), np.float32)
    bi = nn.LSTM(I, H, proj_size=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, B, 2\)"):
        bi.forward(x, h0=np.zeros((2, B, H), np.float32))
    with pytest.raises(ValueError, match=r"c0: expected shape \(2, B, 5\)"):
        bi.forward(x, c0=np.zeros((B, H), np.float32))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.GRU(I, H).backward(np.zeros((T, B, H), np.float32))
    bi.forward(x)
    with pytest.raises(ValueError, match=r"dh: expected \(T, B, 4\)"):
        bi.backward(np.zeros((T, B, 2 * H), np.float32))
    with pytest.raises(ValueError, match="dc_last: expected shape"):
        bi.backward(None, dc_last=np.zeros((B, H), np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(T, B, 4\)"):
        nn.GRU(I, H).forward(np.zeros((T, B, I + 1), np.float32))
