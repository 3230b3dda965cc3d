"""The drop-ins in bfloat16 and float16 (docs/architecture.md §1, precision modes): a module moved
to a 16-bit dtype, or called under torch.autocast, runs natively on the numpy backend through the
core's own 16-bit path (tests/test_precision.py checks that path against float64), its tensors
crossing as their bits; a backend without 16-bit kernels refuses them outside autocast."""
import numpy as np
import pytest

from .common import F64, gt, torch, weighted_sum

import gpu_bptt  # noqa: E402
from gpu_bptt.precision import BFLOAT16  # noqa: E402

KINDS = {"RNN": {}, "LSTM": dict(proj_size=3), "GRU": {}}
DTYPES = {torch.bfloat16: BFLOAT16, torch.float16: np.dtype(np.float16)}


def arr(t):
    """A tensor's values as a NumPy array of the matching storage dtype (bits kept)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16)
    return t.numpy()


def module(kind, dtype, **kw):
    torch.manual_seed(0)
    return getattr(gt, kind)(4, 6, **KINDS[kind], **kw).to(dtype)


def core_forward(kind, m, x, dtype):
    """One direction of layer 0 through the core's functions on x and the module's parameters
    in `dtype`, mapped as the drop-ins map them: the LSTM's and RNN's two biases summed in the
    parameters' own dtype, then cast."""
    w = {n: arr(p.to(dtype)) for n, p in m.named_parameters()}
    W, V = w["weight_ih_l0"].T, w["weight_hh_l0"].T
    x = x.to(dtype)
    if kind == "GRU":
        return gpu_bptt.gru_forward(arr(x), W, V, w["bias_ih_l0"], w["bias_hh_l0"],
                                    backend="numpy").h
    b = arr((m.bias_ih_l0 + m.bias_hh_l0).to(dtype))
    if kind == "LSTM":
        return gpu_bptt.lstm_forward(arr(x), W, V, b, R=w["weight_hr_l0"].T, backend="numpy").h
    return gpu_bptt.elman_forward(arr(x), W, V, b, backend="numpy").h


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_16_bit_module_runs_the_core_16_bit_path(kind, dtype):
    m = module(kind, dtype)
    x = torch.randn(5, 3, 4).to(dtype).requires_grad_()
    out, _ = m(x)
    assert out.dtype == dtype
    want = core_forward(kind, m, x, dtype)
    assert want.dtype == DTYPES[dtype]
    assert np.array_equal(arr(out).view(np.int16), want.view(np.int16))
    weighted_sum([out]).backward()
    assert x.grad.dtype == dtype
    assert all(p.grad is not None and p.grad.dtype == dtype for p in m.parameters())


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_16_bit_rnn_against_torch_nn_in_float64(dtype):
    """Against torch.nn.RNN in float64 on the same 16-bit values (input and weights upcast).
    Bound (tests/test_precision.py's whole-run derivation for Elman): each step adds at most
    δ = U·(1 + max|p| + max|b|) + (float32's few ulps), the rounding of h, of p = x@W + b and of
    the bias sum b_ih + b_hh, each stored in the 16-bit dtype (U: 2^-8 bfloat16, 2^-11 float16),
    and carries the error it reads through tanh' <= 1 and ‖V‖ = max_j Σ_i |V_ij|: over T steps
    the error is at most δ·Σ_{k<T} ‖V‖^k."""
    m = module("RNN", dtype)
    ref = torch.nn.RNN(4, 6, dtype=F64)
    ref.load_state_dict({k: v.to(F64) for k, v in m.state_dict().items()})
    x = torch.randn(5, 3, 4).to(dtype)
    out, _ = m(x)
    want, _ = ref(x.to(F64))
    U = 2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -11
    with torch.no_grad():
        p = x.to(F64) @ ref.weight_ih_l0.T + ref.bias_ih_l0 + ref.bias_hh_l0
        nV = ref.weight_hh_l0.abs().sum(dim=1).max().item()  # V = weight_hh.T: its columns
        b = (ref.bias_ih_l0 + ref.bias_hh_l0).abs().max().item()
    delta = U * (1 + p.abs().max().item() + b) + 2.0 ** -20
    bound = delta * sum(nV ** k for k in range(x.shape[0]))
    err = (out.to(F64) - want).abs().max().item()
    assert err <= bound, f"max error {err:.3e} over the bound {bound:.3e} (‖V‖ = {nV:.2f})"


@pytest.mark.parametrize("kind", KINDS)
def test_autocast_runs_the_layer_in_the_autocast_dtype(kind):
    """An eager call under autocast(bfloat16): the float32 module's parameters (its bias sum) and
    the input cast to bfloat16, as for a lower-precision op of autocast; the result is the core's
    bfloat16 run on those values, bit for bit, and the gradients reach the float32 parameters."""
    m = module(kind, torch.float32)
    x = torch.randn(5, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = m(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in m.parameters())
    want = core_forward(kind, m, x, torch.bfloat16)
    assert np.array_equal(arr(out).view(np.int16), want.view(np.int16))


def test_a_backend_without_16_bit_kernels_refuses_them_outside_autocast():
    """The emulator has 16-bit kernels for Elman and the GRU (tests/cuda/test_tc_kernels.py): an
    RNN runs there in bfloat16; an LSTM is refused naming its cell, and under autocast runs in
    float32, as before."""
    m = module("RNN", torch.bfloat16, backend="emulator")
    assert m(torch.randn(5, 3, 4).bfloat16())[0].dtype == torch.bfloat16
    m = module("LSTM", torch.bfloat16, backend="emulator")
    with pytest.raises(TypeError, match=r"^x: the emulator backend runs float32 and float64 for "
                                        r"the lstm cell, got torch.bfloat16"):
        m(torch.randn(5, 3, 4).bfloat16())
    m = module("LSTM", torch.float32, backend="emulator")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # there: float32, as before
        out, _ = m(torch.randn(2, 3, 4))
    assert out.dtype == torch.float32
    m = module("GRU", torch.float32, backend="emulator")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the GRU's kernels run it: bfloat16
        out, _ = m(torch.randn(2, 3, 4))
    assert out.dtype == torch.bfloat16
