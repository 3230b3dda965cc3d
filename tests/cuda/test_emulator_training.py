"""Training on the emulator backend (the cuda backend's own code, kernels run on the CPU) follows
the numpy backend step for step: the layers, losses, optimizers and truncated BPTT drive the cuda
path's orchestration as they drive the reference."""
from __future__ import annotations

import numpy as np
import pytest

from tests.skips import require_emulator
from gpu_bptt.train import Config, train


def _run(backend, **kw):
    base = dict(seq_len=9, hidden=12, batch=6, steps=6, seed=3, progress=False, backend=backend)
    return train(Config(**{**base, **kw}))


@pytest.mark.parametrize("kw, persistent", [
    (dict(task="adding"), True),  # B <= 32: auto takes the persistent kernels
    (dict(task="sine", bptt_trunc=4, optimizer="sgd", batch=40), False),  # B > 32: step kernels
    (dict(task="copy", optimizer="adam"), True),
], ids=["adding", "sine-B40-trunc4-sgd", "copy-adam"])
def test_training_on_the_emulator_follows_numpy(kw, persistent, monkeypatch):
    require_emulator()
    from gpu_bptt.backends.cuda.launchers import Launchers

    launches = []
    real = Launchers.persistent_fwd
    monkeypatch.setattr(Launchers, "persistent_fwd", lambda *a, **k: launches.append(1) or real(*a, **k))
    ref, emu = _run("numpy", **kw), _run("emulator", **kw)
    assert bool(launches) == persistent
    assert emu.backend == "emulator" and len(emu.losses) == len(ref.losses) == 6
    # float32 training: sums in another order differ by rounding, which six updates carry on;
    # a wrong gradient moves the losses far more than this
    np.testing.assert_allclose(emu.losses, ref.losses, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(emu.eval_metric, ref.eval_metric, rtol=1e-4, atol=1e-6)
