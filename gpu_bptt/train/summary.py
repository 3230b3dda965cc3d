"""What a training run reports: the Result, the readable end-of-run summary, the loss curve."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .. import checkpoint

SMOOTH = 50   # the reported training loss is the mean over this many last steps


@dataclass
class Result:
    task: str
    steps: int
    final_loss: float          # mean training loss over the last SMOOTH steps
    eval_metric: float         # the task loss on held-out data
    baseline: float            # the trivial predictor's value of that metric
    backend: str
    seconds: float             # wall time of this invocation
    metric: str = "MSE"
    cell: str = "elman"             # the recurrent level (--cell)
    hidden: int = 0                 # its hidden units
    baseline_name: str = ""
    out: Optional[str] = None
    stopped: Optional[str] = None   # the signal's name ("SIGINT", "SIGTERM") when one ended the run early
    start_step: int = 0             # the checkpoint's step when resumed, else 0
    train_seconds: float = 0.0      # training time of the whole run, every invocation together
    losses: list = field(default_factory=list, repr=False)
    dtype: str = "float32"          # the recurrent level's (--dtype), " with TF32" for --tf32

    def summary(self) -> dict:
        """The one-line JSON summary of `gpu-bptt train --json`."""
        return {"task": self.task, "steps": self.steps, "final_loss": self.final_loss,
                "eval_metric": self.eval_metric, "baseline": self.baseline, "backend": self.backend,
                "seconds": round(self.seconds, 3), "metric": self.metric, "cell": self.cell,
                "hidden": self.hidden, "out": self.out,
                "start_step": self.start_step, "train_seconds": round(self.train_seconds, 3),
                "dtype": self.dtype}


def describe(res: Result) -> str:
    """The readable end-of-run summary."""
    stopped = f" (stopped by {res.stopped})" if res.stopped else ""
    if res.start_step:
        head = [f"{res.task}: steps {res.start_step + 1}-{res.steps} in {res.seconds:.1f} s on the "
                f"{res.backend} backend, resumed at step {res.start_step}{stopped}",
                f"  whole run: {res.steps} steps, {res.train_seconds:.1f} s of training"]
        if res.start_step == res.steps:
            head[0] = f"{res.task}: nothing to train (already at step {res.steps}), {res.seconds:.1f} s"
    else:
        head = [f"{res.task}: {res.steps} steps, {res.seconds:.1f} s on the {res.backend} backend{stopped}"]
    lines = head + [
        f"  cell: {res.cell}, {res.hidden} hidden units"
        + ("" if res.dtype == "float32" else f", in {res.dtype}"),
        f"  training loss (mean of last {min(SMOOTH, max(len(res.losses), 1))} steps): {res.final_loss:.4g}",
        f"  held-out {res.metric}: {res.eval_metric:.4g}   baseline ({res.baseline_name}): {res.baseline:.4g}"]
    if res.eval_metric < res.baseline:
        lines.append(f"  -> {res.baseline / max(res.eval_metric, 1e-300):.1f}x below the baseline")
    else:
        lines.append("  -> not below the baseline yet (train longer, or see docs/training.md)")
    if res.out:
        lines.append(f"  checkpoint: {os.path.join(res.out, checkpoint.META)}")
    return "\n".join(lines)


def plot(path, res):
    """Loss curve as a PNG when matplotlib is installed; silently nothing otherwise."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    y = np.asarray(res.losses)
    k = max(1, min(SMOOTH, len(y) // 10))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(y) + 1), y, alpha=0.3, label="training loss")
    if len(y) >= k:
        ax.plot(np.arange(k, len(y) + 1), np.convolve(y, np.ones(k) / k, "valid"), label=f"mean of {k}")
    ax.axhline(res.baseline, color="gray", ls="--", label=f"baseline ({res.baseline_name})")
    ax.axhline(res.eval_metric, color="green", ls=":", label="held-out")
    ax.set(xlabel="step", ylabel=res.metric, title=f"gpu-bptt train --task {res.task}")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    checkpoint.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
