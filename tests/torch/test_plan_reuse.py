"""The torch path runs the forward's launch plan backward: the device's facts are gathered once for
a problem, whichever implementation (custom op or autograd.Function) carries the call."""
import pytest

from ..skips import require_emulator
from .common import F64, gt, torch


@pytest.mark.parametrize("impl", ["custom_op", "function"])
def test_backward_runs_the_forwards_plan(impl, monkeypatch):
    if impl == "custom_op" and not gt.HAS_CUSTOM_OP:
        pytest.skip("no torch.library.custom_op")
    require_emulator()
    import gpu_bptt.backends as backends
    from gpu_bptt.backends.emulator import EmulatorBackend

    monkeypatch.setattr(backends, "_instances", {})  # a fresh backend: no plan kept yet
    asked = []  # the occupancy queries: one per persistent kernel each time a plan is made
    real = EmulatorBackend.persistent_blocks_per_sm
    monkeypatch.setattr(EmulatorBackend, "persistent_blocks_per_sm",
                        lambda self, fn, smem: asked.append(smem) or real(self, fn, smem))
    g = torch.Generator().manual_seed(0)
    T, B, I, H = 4, 3, 2, 5
    args = [torch.randn(s, generator=g, dtype=F64, requires_grad=True)
            for s in ((T, B, I), (I, H), (H, H), (H,), (B, H))]
    grads = []
    for backend in ("numpy", "emulator", "emulator"):
        h, h_last = gt.elman(*args, backend=backend, impl=impl)
        grads.append(torch.autograd.grad((h * h).sum() + h_last.sum(), args))
        if backend == "emulator":  # the plan was made once, by the first forward, for both
            assert len(asked) == 2, asked
    for ref, got in zip(grads[0], grads[1]):
        torch.testing.assert_close(got, ref, atol=1e-12, rtol=1e-10)
