"""`gpu-bptt train --dtype bfloat16|float16 [--tf32]`: float32 master weights, the recurrent
level in the storage dtype, float16's dynamic loss scaling, and resume."""
import numpy as np
import pytest

from gpu_bptt import checkpoint, nn
from gpu_bptt.cli import main
from gpu_bptt.precision import BFLOAT16, FLOAT16
from gpu_bptt.train import Config, train
from gpu_bptt.train.mixed import GROWTH_STEPS, LossScale, MixedLevel

TINY = ["--seq-len", "8", "--hidden", "8", "--batch", "8", "--quiet", "--backend", "numpy"]


def tiny(**kw):
    base = dict(task="adding", seq_len=8, hidden=8, batch=8, backend="numpy", progress=False)
    return Config(**{**base, **kw})


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_16_bit_run_learns_and_keeps_float32_master_weights(cell, dtype, tmp_path):
    res = train(tiny(task="sine", seq_len=20, hidden=16, batch=32, steps=300, cell=cell,
                     dtype=dtype, out=str(tmp_path / "r")))
    first, last = np.mean(res.losses[:20]), np.mean(res.losses[-20:])
    assert last < 0.5 * first, (first, last)
    meta, arrays = checkpoint.load(str(tmp_path / "r"))
    assert meta["config"]["dtype"] == dtype and meta["model"]["dtype"] == "float32"
    assert all(a.dtype == np.float32 for k, a in arrays.items() if k.startswith("param/"))


@pytest.mark.parametrize("extra", [dict(dtype="float16"), dict(dtype="bfloat16", cell="lstm",
                                                                bptt_trunc=3),
                                   dict(tf32=True, cell="gru")])
def test_resume_continues_a_16_bit_run_exactly(tmp_path, extra):
    straight = train(tiny(steps=24, out=str(tmp_path / "a"), checkpoint_every=10, **extra))
    train(tiny(steps=12, out=str(tmp_path / "b"), checkpoint_every=10, **extra))
    resumed = train(Config(steps=24, out=str(tmp_path / "b"), resume=True, progress=False))
    assert resumed.losses == straight.losses and resumed.eval_metric == straight.eval_metric
    (ma, pa), (mb, pb) = (checkpoint.load(str(tmp_path / d)) for d in "ab")
    assert ma.get("loss_scale") == mb.get("loss_scale")
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_loss_scaling_skips_an_overflow_and_grows_after_good_steps():
    s = LossScale(scale=8.0)
    assert s.update(False) is False and (s.scale, s.good, s.skipped) == (4.0, 0, 1)
    for _ in range(GROWTH_STEPS - 1):
        assert s.update(True)
    assert s.scale == 4.0
    assert s.update(True) and (s.scale, s.good) == (8.0, 0)


def test_float16_loss_scaling_keeps_small_gradients():
    """A gradient of 1e-9 on h underflows float16 (its smallest subnormal is 2^-24 ≈ 6e-8): the
    unscaled level gets no weight gradient, the scaled one gets the float32 one to float16's
    precision."""
    rng = np.random.default_rng(0)
    level = nn.Elman(3, 4, backend="numpy", rng=1)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    dh = np.full((5, 2, 4), 1e-9, np.float32)
    dW = {}
    for scale in (1.0, 2.0 ** 20):
        m = MixedLevel(level, FLOAT16)
        m.loss_scale = scale
        level.zero_grad()
        m.forward(x)
        m.backward(dh)
        dW[scale] = level.gradients()["W"].copy()
    assert not dW[1.0].any()
    # Scaled: dh (1e-3 after scaling) and each of the T = 5 steps' du and dW rounded once to
    # float16 (2^-11 relative each), through a contracting tanh recurrence: under 2^-7.
    ref = _ref_dW(level, x, dh)
    assert np.all(np.abs(dW[2.0 ** 20] - ref) <= 2 ** -7 * np.abs(ref).max())


def _ref_dW(level, x, dh):
    """dW of the same float16-rounded inputs in float64 (the scaled gradient stays normal)."""
    W, V, b = (level.parameters()[k].astype(FLOAT16).astype(np.float64) for k in "WVb")
    x = x.astype(FLOAT16).astype(np.float64)
    T, B, H = dh.shape
    h, hs = np.zeros((B, H)), []
    for t in range(T):
        h = np.tanh(x[t] @ W + h @ V + b)
        hs.append(h)
    dW, nxt = np.zeros_like(W), np.zeros((B, H))
    for t in range(T - 1, -1, -1):
        nxt = (dh[t] + nxt @ V.T) * (1 - hs[t] ** 2)
        dW += x[t].T @ nxt
    return dW


@pytest.mark.parametrize("args, message", [
    (["--dtype", "bf16"], "--dtype: unknown 'bf16'; expected one of float32, bfloat16, float16"),
    (["--dtype", "float16", "--tf32"], "--tf32: applies to --dtype float32, not float16"),
    (["--dtype", "bfloat16", "--backend", "emulator", "--cell", "lstm"],
     "--dtype bfloat16: the emulator backend has no lstm kernels for bfloat16 yet"),
    (["--tf32", "--backend", "emulator", "--cell", "lstm"],
     "--tf32: the emulator backend has no lstm kernels for float32 with TF32 yet"),
])
def test_dtype_option_errors_are_one_line_naming_the_option(args, message, tmp_path, capsys):
    assert main(["train", *TINY, "--steps", "2", "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"gpu-bptt train: error: {message}"), err


def test_resume_with_another_dtype_is_refused_naming_it(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", *TINY, "--steps", "3", "--dtype", "bfloat16", "--out", out]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", out, "--dtype", "float16", "--quiet"]) == 2
    assert "--dtype float16 differs from the checkpoint's bfloat16" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", out, "--steps", "5", "--quiet"]) == 0
    assert checkpoint.load(out)[0]["config"]["dtype"] == "bfloat16"
    assert BFLOAT16.name == "bfloat16"
