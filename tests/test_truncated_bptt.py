"""Truncated BPTT in the training loop against an independent reference: the same model written
in PyTorch (float64, autograd), the state detached at every segment boundary. The loss and every
gradient that run_batch accumulates must match it."""
import numpy as np
import pytest

from gpu_bptt.backends import get_backend
from gpu_bptt.tasks import AddingTask, Batch, CopyTask, SineTask
from gpu_bptt.train import Config, build_model, resolve, run_batch

from .tolerances import assert_close

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install \"gpu_bptt[torch]\")")

ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda u: u}


def reference(params, activation, task, batch, K):
    """(loss, gradients) of the mean task loss over the counted steps, with no gradient flowing
    from a segment of K steps into the one before it (K = 0: full BPTT)."""
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    x = torch.tensor(batch.x, dtype=torch.float64)
    T, B = x.shape[:2]
    L = torch.tensor(np.full(B, T) if batch.lengths is None else batch.lengths)
    f = ACT[activation]
    h = torch.zeros(B, P["0.V"].shape[0], dtype=torch.float64)
    ys = []
    for t in range(T):
        if K and t > 0 and t % K == 0:
            h = h.detach()
        h = torch.where((t < L)[:, None], f(x[t] @ P["0.W"] + h @ P["0.V"] + P["0.b"]), h)
        ys.append(h @ P["1.W"] + P["1.b"])
    y = torch.stack(ys)
    steps = torch.arange(T)[:, None]
    counted = (steps == L[None, :] - 1) if task.at == "last" else (steps < L[None, :])
    if task.loss == "mse":
        per_step = ((y - torch.tensor(batch.target, dtype=torch.float64)) ** 2).mean(dim=2)
    else:
        logp = torch.log_softmax(y, dim=2)
        per_step = -logp.gather(2, torch.tensor(batch.target)[:, :, None])[:, :, 0]
    loss = per_step[counted].sum() / counted.sum()
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in P.items()}


CASES = {  # name: (task, lengths of the 5 examples or None, segment length K)
    "adding-K6": (AddingTask(12), [12, 5, 9, 12, 6], 6),    # some end in the first segment
    "adding-K5": (AddingTask(12), [12, 4, 10, 11, 7], 5),   # K does not divide T
    "adding-full": (AddingTask(12), [12, 5, 9, 12, 6], 0),
    "copy-K4": (CopyTask(13), [13, 5, 9, 13, 8], 4),         # the loss counts at every step
    "sine-K3": (SineTask(10), None, 3),
}


def make_batch(task, lengths, rng):
    """A batch of 5 examples with the given lengths: each is drawn from a task of its own length
    and padded with zeros to the task's."""
    if lengths is None:
        return task.sample(rng, 5)
    parts = [type(task)(L).sample(rng, 1) for L in lengths]
    pad = lambda a: np.concatenate([a, np.zeros((task.seq_len - len(a),) + a.shape[1:], a.dtype)])
    return Batch(np.concatenate([pad(p.x) for p in parts], axis=1),
                 np.concatenate([pad(p.target) for p in parts], axis=1), np.array(lengths))


@pytest.mark.parametrize("case", CASES)
def test_truncated_bptt_matches_an_independent_reference(case):
    task, lengths, K = CASES[case]
    batch = make_batch(task, lengths, np.random.default_rng(1))
    bk = get_backend("numpy")
    model = build_model(task, resolve(Config(task=task.name, hidden=7, backend="numpy")), bk,
                        np.random.default_rng(3))
    rnn, dense = model.layers
    assert dense.activation == "identity"  # as the reference assumes
    ref_loss, ref_grads = reference(model.parameters(), rnn.activation, task, batch, K)
    model.zero_grad()
    loss = run_batch(model, task, batch, bk, trunc=K)
    assert loss == pytest.approx(ref_loss, rel=1e-5)  # float32 forward against float64
    for k, g in model.gradients().items():
        assert np.abs(ref_grads[k]).max() > 0, k
        assert_close(f"grad {k}", g, ref_grads[k], dtype=np.float32)
