"""Training a recurrent network on a built-in task (`gpu-bptt train`).

The network is the seed's: one recurrent Elman level and a per-step Dense output level. One step
is one batch and one optimizer update. With truncated BPTT (bptt_trunc = K) the batch runs in
segments of K steps: the hidden state is carried from each segment into the next (so the forward
pass, and the loss, are exactly those of the whole sequence), the gradient stops at each segment's
first step, and the segments' gradients add up to one update. Only one segment's activations are
held at a time.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import checkpoint, memory, nn
from .activations import ACTIVATIONS
from .backends import NAMES as BACKENDS
from .backends import get_backend
from .blas_threads import blas_threads
from .progress import Progress
from .tasks import TASKS, TaskError, make_task

OPTIMIZERS = ("sgd", "momentum", "adam")

# Per-task defaults: each learns its task well below the trivial baseline in under two minutes
# on a 2-core CPU with the numpy backend (measured; see docs/training.md). "adam_lr" is the
# learning rate when the optimizer is adam; other optimizers use DEFAULT_LR.
TASK_DEFAULTS = {
    "adding": dict(seq_len=30, hidden=64, batch=128, steps=8000),
    # a tanh network sits at the memoryless baseline for a long time; an IRNN gets going at once
    "copy": dict(seq_len=30, hidden=64, batch=64, steps=10000, activation="relu", adam_lr=1e-3),
    "sine": dict(seq_len=50, hidden=32, batch=64, steps=3000),
    "charlm": dict(seq_len=100, hidden=128, batch=32, steps=2000),
}
# backend None: $GPU_BPTT_BACKEND, else auto (gpu_bptt.backends.get_backend)
DEFAULTS = dict(activation="tanh", optimizer="adam", momentum=0.9, clip=1.0, bptt_trunc=0,
                seed=0, checkpoint_every=500, threads=1)
DEFAULT_LR = {"sgd": 0.05, "momentum": 0.01, "adam": 2e-3}

# Settings that define a run: a resumed run keeps the checkpoint's (an explicit different value is
# an error). Others (steps, backend, out, ...) may change between invocations.
FIXED = ("task", "seq_len", "min_len", "text", "hidden", "activation", "batch", "optimizer", "lr",
         "momentum", "clip", "bptt_trunc", "seed")

SMOOTH = 50   # the reported training loss is the mean over this many last steps


class ConfigError(ValueError):
    """Bad training settings; the message names the option."""


class NonFiniteLoss(RuntimeError):
    """Training met a non-finite loss or gradient; the message says where and what to try."""


@dataclass
class Config:
    """None means: the task's default (TASK_DEFAULTS, DEFAULTS), or the checkpoint's when resuming.
    out: a folder for checkpoints and the loss curve, or None for no files."""

    task: Optional[str] = None     # default "adding"
    seq_len: Optional[int] = None
    min_len: Optional[int] = None
    text: Optional[str] = None
    hidden: Optional[int] = None
    activation: Optional[str] = None
    steps: Optional[int] = None
    batch: Optional[int] = None
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    momentum: Optional[float] = None
    clip: Optional[float] = None
    bptt_trunc: Optional[int] = None
    seed: Optional[int] = None
    backend: Optional[str] = None  # default $GPU_BPTT_BACKEND, else "auto"
    out: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    checkpoint_every: Optional[int] = None
    threads: Optional[int] = None   # CPU BLAS threads (default 1, see blas_threads; 0: BLAS's own)
    progress: bool = True


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
    baseline_name: str = ""
    out: Optional[str] = None
    stopped: Optional[str] = None   # the signal's name ("SIGINT", "SIGTERM") when one ended the run early
    start_step: int = 0             # the checkpoint's step when resumed, else 0
    train_seconds: float = 0.0      # training time of the whole run, every invocation together
    losses: list = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        """The one-line JSON summary of `gpu-bptt train --json`."""
        return {"task": self.task, "steps": self.steps, "final_loss": self.final_loss,
                "eval_metric": self.eval_metric, "baseline": self.baseline, "backend": self.backend,
                "seconds": round(self.seconds, 3), "metric": self.metric, "out": self.out,
                "start_step": self.start_step, "train_seconds": round(self.train_seconds, 3)}


# -- settings ---------------------------------------------------------------------------------------

def resolve(cfg: Config, saved: Optional[dict] = None) -> Config:
    """Fill defaults (or the checkpoint's settings `saved`) and check every value."""
    v = dataclasses.asdict(cfg)
    if saved is not None and v["task"] is None:
        v["task"] = saved["task"]
    v["task"] = v["task"] or "adding"
    if v["task"] not in TASKS:
        raise ConfigError(f"--task: unknown {v['task']!r}; expected one of {', '.join(TASKS)}")
    if v["text"] is not None:
        v["text"] = os.path.abspath(v["text"])
    if saved is not None:
        for k in FIXED:
            if v[k] is not None and v[k] != saved[k]:
                raise ConfigError(f"--{k.replace('_', '-')} {v[k]} differs from the checkpoint's "
                                  f"{saved[k]}; a resumed run keeps its settings (drop the option, "
                                  "or start a new run with --overwrite or another --out)")
            v[k] = saved[k]
        if v["steps"] is None:
            v["steps"] = saved["steps"]
    task_defaults = dict(TASK_DEFAULTS[v["task"]])
    adam_lr = task_defaults.pop("adam_lr", None)
    for k, d in {**DEFAULTS, **task_defaults}.items():
        if v[k] is None:
            v[k] = d
    if v["lr"] is None:
        v["lr"] = adam_lr if (adam_lr and v["optimizer"] == "adam") else DEFAULT_LR.get(v["optimizer"], 1e-3)
    for k in ("seq_len", "hidden", "steps", "batch", "checkpoint_every"):
        if not (isinstance(v[k], int) and v[k] >= 1):
            raise ConfigError(f"--{k.replace('_', '-')}: must be a positive integer, got {v[k]}")
    if v["min_len"] is not None and not 1 <= v["min_len"] <= v["seq_len"]:
        raise ConfigError(f"--min-len: must be in 1..{v['seq_len']} (--seq-len), got {v['min_len']}")
    if v["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"--optimizer: unknown {v['optimizer']!r}; expected one of {', '.join(OPTIMIZERS)}")
    if v["activation"] not in ACTIVATIONS:
        raise ConfigError(f"--activation: unknown {v['activation']!r}; expected one of {', '.join(ACTIVATIONS)}")
    if not (math.isfinite(v["lr"]) and v["lr"] > 0):
        raise ConfigError(f"--lr: must be > 0, got {v['lr']}")
    if not 0 <= v["momentum"] < 1:
        raise ConfigError(f"--momentum: must be in [0, 1), got {v['momentum']}")
    if not v["clip"] >= 0:
        raise ConfigError(f"--clip: must be >= 0 (0 turns clipping off), got {v['clip']}")
    if not (isinstance(v["bptt_trunc"], int) and v["bptt_trunc"] >= 0):
        raise ConfigError(f"--bptt-trunc: must be a positive number of steps (0: full BPTT), got {v['bptt_trunc']}")
    if not (isinstance(v["seed"], int) and v["seed"] >= 0):
        raise ConfigError(f"--seed: must be an integer >= 0, got {v['seed']}")
    if v["backend"] is not None and (not isinstance(v["backend"], str)
                                     or v["backend"].strip().lower() not in ("auto",) + BACKENDS):
        raise ConfigError(f"--backend: unknown {v['backend']!r}; expected one of auto, {', '.join(BACKENDS)}")
    if not (isinstance(v["threads"], int) and v["threads"] >= 0):
        raise ConfigError(f"--threads: must be >= 0 (0: the BLAS's default), got {v['threads']}")
    if v["resume"] and not v["out"]:
        raise ConfigError("--resume: needs the run's folder (--out DIR)")
    return Config(**v)


# -- model and one step ----------------------------------------------------------------------------

def build_model(task, cfg, backend, rng):
    """Elman level (relu gets the identity recurrent init of an IRNN) and a Dense output level."""
    init_V = "identity" if cfg.activation == "relu" else "uniform"
    rnn = nn.Elman(task.input_size, cfg.hidden, activation=cfg.activation, init_V=init_V,
                   backend=backend, rng=rng)
    return nn.Sequential(rnn, nn.Dense(cfg.hidden, task.output_size, backend=backend, rng=rng))


def build_optimizer(model, cfg):
    if cfg.optimizer == "adam":
        return nn.Adam(model, lr=cfg.lr)
    return nn.SGD(model, lr=cfg.lr, momentum=cfg.momentum if cfg.optimizer == "momentum" else 0.0)


def _counted(task, lengths, T, B):
    """(T, B) bool on the host: the steps where the task's loss counts."""
    L = np.full(B, T) if lengths is None else np.asarray(lengths)
    t = np.arange(T)[:, None]
    return (t == L[None, :] - 1) if task.at == "last" else (t < L[None, :])


def run_batch(model, task, batch, backend, trunc=0, backward=True):
    """Loss of `batch` (mean over its counted steps); with backward, the gradients are added to
    the model's gradient buffers. trunc: segment length of truncated BPTT (0: whole sequence)."""
    rnn, dense = model.layers
    xp = backend.xp
    loss_fn = nn.MSELoss("all") if task.loss == "mse" else nn.SoftmaxCrossEntropy("all")
    T, B = batch.x.shape[:2]
    L = np.full(B, T) if batch.lengths is None else np.asarray(batch.lengths)
    counted = _counted(task, batch.lengths, T, B)
    n_total = int(counted.sum())
    x, target = backend.asarray(batch.x), backend.asarray(batch.target)
    K = trunc if 0 < trunc < T else T
    h, total = None, 0.0
    for s in range(0, T, K):
        e = min(s + K, T)
        # Examples that ended before this segment run one ignored step (lengths must be >= 1).
        seg_len = np.clip(L - s, 1, e - s)
        hseq = rnn.forward(x[s:e], lengths=None if (seg_len == e - s).all() else seg_len, h0=h)
        h = rnn.h_last  # a plain array: no gradient flows back across the boundary
        n = int(counted[s:e].sum())
        if n == 0:
            continue
        y = dense.forward(hseq)
        # The loss objects average over what they are given: hand them only the counted steps.
        mask = backend.asarray(counted[s:e])
        loss, dyc = loss_fn(y[mask][None], target[s:e][mask][None])
        share = n / n_total
        total += loss * share
        if backward:
            dy = xp.zeros_like(y)
            dy[mask] = dyc[0] * y.dtype.type(share)
            rnn.backward(dense.backward(dy), need_dx=False)  # the data needs no gradient
    return total


def evaluate(model, task, batches, backend) -> float:
    """The task loss over held-out `batches`, each weighted by its counted steps."""
    total = count = 0.0
    for b in batches:
        T, B = b.x.shape[:2]
        n = int(_counted(task, b.lengths, T, B).sum())
        total += run_batch(model, task, b, backend, backward=False) * n
        count += n
    return total / count


# -- checkpoints -----------------------------------------------------------------------------------

# The optimizer state arrays a checkpoint holds after its first step (plain SGD keeps none).
SLOT_ARRAYS = {"sgd": (), "momentum": ("velocity",), "adam": ("m", "v")}


def _model_meta(task, cfg):
    return {"input_size": task.input_size, "hidden": cfg.hidden, "output_size": task.output_size,
            "activation": cfg.activation, "dtype": "float32"}


def _optimizer_meta(opt, cfg, step):
    state = opt.state_dict()
    slots = [k for k, val in state.items() if isinstance(val, dict)]
    scalars = {k: val for k, val in state.items() if k not in slots}
    if "t" in scalars:   # Adam counts its updates: one per step
        scalars["t"] = step
    return {"name": cfg.optimizer, "slots": slots, "scalars": scalars}


def _save(cfg, task, model, opt, rng, step, losses, seconds, backend):
    state = opt.state_dict()
    arrays = {f"param/{k}": backend.to_numpy(p) for k, p in model.parameters().items()}
    for slot in SLOT_ARRAYS[cfg.optimizer]:
        for k, a in state[slot].items():
            arrays[f"opt/{slot}/{k}"] = backend.to_numpy(a)
    arrays["losses"] = np.asarray(losses, np.float64)
    meta = {
        "step": step,
        "config": {k: getattr(cfg, k) for k in FIXED + ("steps",)},
        "task": task.meta(),
        "model": _model_meta(task, cfg),
        "optimizer": _optimizer_meta(opt, cfg, step),
        "rng": rng.bit_generator.state,
        "train_seconds": seconds,
        "backend": backend.name,
    }
    checkpoint.save(cfg.out, meta, arrays)


def _saved_config(folder, meta) -> dict:
    """The run settings recorded in a checkpoint, checked as the command's options are."""
    path = os.path.join(folder, checkpoint.META)
    saved = meta.get("config")
    keys = FIXED + ("steps",)
    if not isinstance(saved, dict) or not set(keys) <= set(saved):
        raise checkpoint.CheckpointError(f"{path}: 'config' must be an object with {', '.join(keys)}")
    try:
        resolve(Config(**{k: saved[k] for k in keys}))
    except (ConfigError, TypeError) as e:
        raise checkpoint.CheckpointError(f"{path}: 'config': {e}") from None
    return saved


def _check_saved(folder, meta, arrays, task, cfg, model, opt):
    """Every fact of a checkpoint against this run, before any of it is used."""
    path, npz = os.path.join(folder, checkpoint.META), os.path.join(folder, meta["arrays"])

    def bad(what, file=path):
        raise checkpoint.CheckpointError(f"{file}: {what}")

    step = meta["step"]
    if meta.get("task") != task.meta():
        bad(f"written for the task {meta.get('task')}, which differs from this run's {task.meta()} "
            "(a changed --text file?)")
    for key, want in (("model", _model_meta(task, cfg)), ("optimizer", _optimizer_meta(opt, cfg, step))):
        if meta.get(key) != want:
            bad(f"'{key}' is {meta.get(key)}, but this run's is {want}")
    try:
        np.random.default_rng().bit_generator.state = meta.get("rng")
    except (TypeError, ValueError, KeyError):
        bad("'rng' is not the state of NumPy's default generator (PCG64)")
    seconds = meta.get("train_seconds")
    if type(seconds) not in (int, float) or not 0 <= seconds < math.inf:
        bad(f"'train_seconds' must be a number >= 0, got {seconds!r}")
    want = {"losses": ((step,), np.dtype(np.float64))}
    for k, p in model.parameters().items():
        for name in [f"param/{k}"] + [f"opt/{slot}/{k}" for slot in SLOT_ARRAYS[cfg.optimizer]]:
            want[name] = (tuple(p.shape), np.dtype(np.float32))
    missing, extra = sorted(set(want) - set(arrays)), sorted(set(arrays) - set(want))
    if missing:
        bad(f"the array {missing[0]} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""), npz)
    if extra:
        bad(f"unexpected array {extra[0]} (not part of this run's model and optimizer)", npz)
    for name, (shape, dtype) in want.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != dtype:
            bad(f"{name} is {a.dtype} of shape {a.shape}, expected {dtype} of shape {shape}", npz)
    if not np.isfinite(arrays["losses"]).all():
        bad("the loss history holds a non-finite value", npz)


def _restore(meta, arrays, model, opt, rng, backend):
    """Load checked parameters, optimizer state and data RNG state; returns (step, losses, seconds)."""
    for k, p in model.parameters().items():
        p[...] = backend.asarray(arrays[f"param/{k}"], dtype=p.dtype)
    o = meta["optimizer"]
    state = dict(o["scalars"])
    for slot in o["slots"]:
        state[slot] = {k: arrays.get(f"opt/{slot}/{k}") for k in model.parameters()}
    opt.load_state_dict(state)
    rng.bit_generator.state = meta["rng"]
    return meta["step"], [float(v) for v in arrays["losses"]], float(meta["train_seconds"])


# -- the run directory -----------------------------------------------------------------------------

def _why(e: OSError) -> str:
    return e.strerror or str(e)


def _make_dir(out):
    if os.path.exists(out) and not os.path.isdir(out):
        raise checkpoint.RunDirError(f"--out {out}: is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise checkpoint.RunDirError(f"--out {out}: cannot create the folder: {_why(e)}") from None


@contextmanager
def _hold(out, stream):
    """Hold the run directory for this process (checkpoint.RunLock) and clear what a killed run
    left behind."""
    try:
        lock = checkpoint.RunLock(out).__enter__()
    except OSError as e:
        raise checkpoint.RunDirError(f"--out {out}: cannot write there: {_why(e)}") from None
    try:
        try:
            removed = checkpoint.remove_temporaries(out)
        except OSError as e:
            raise checkpoint.RunDirError(f"--out {out}: cannot write there: {_why(e)}") from None
        if lock.stale:
            print(f"note: {out} was held by process {lock.stale}, which is no longer running; "
                  "this run takes it over", file=stream)
        if removed:
            print(f"note: removed {', '.join(removed)} from {out} (left by a write that was cut short)",
                  file=stream)
        yield
    finally:
        lock.__exit__(None, None, None)


# -- the loop --------------------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _stop_after_step():
    """Turn the first Ctrl-C or SIGTERM (a batch scheduler's stop) into a flag the loop checks
    between steps (so a checkpoint is never taken mid-update); a second one interrupts at once."""
    flag = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["signal"] is not None:
            raise KeyboardInterrupt
        flag["signal"] = signum

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _kept(cfg, good_step):
    return (f"The last good checkpoint (step {good_step}) is kept in {cfg.out}."
            if good_step is not None else "No checkpoint had been written yet.")


def _stop_message(step, what, value, cfg, good_step):
    if cfg.clip:
        cause, hint = f"exploding gradients (clipped at --clip {cfg.clip:g})", "try a smaller --lr"
    else:
        cause, hint = "exploding gradients", "try a smaller --lr, or clip gradients with --clip 1.0"
    return (f"training stopped at step {step}: the {what} is {value}. Likely cause: the learning rate "
            f"is too high (--lr {cfg.lr:g} with --optimizer {cfg.optimizer}) or {cause}; {hint}. "
            + _kept(cfg, good_step))


def train(cfg: Config, stream=None) -> Result:
    """Train as `cfg` says; progress goes to `stream` (default stderr). Raises ConfigError,
    TaskError, CheckpointError, RunDirError (RunDirBusy), BackendUnavailable or NonFiniteLoss."""
    # Overflow is caught as a non-finite loss with a message of our own; NumPy's warnings add noise.
    with blas_threads(1 if cfg.threads is None else max(cfg.threads, 0)), np.errstate(all="ignore"):
        return _train(cfg, sys.stderr if stream is None else stream)


def _prepare(cfg):
    """The task and backend of a resolved `cfg`, once the run is known to fit in memory."""
    task = make_task(cfg.task, cfg.seq_len, cfg.min_len, cfg.text)
    try:
        backend = get_backend(cfg.backend)
    except (TypeError, ValueError) as e:   # an unknown $GPU_BPTT_BACKEND
        raise ConfigError(str(e)) from None
    too_big = memory.shortfall(cfg, task, backend)
    if too_big:
        raise ConfigError(too_big)
    return task, backend


def _train(cfg, stream):
    t_start = time.perf_counter()
    if not cfg.resume:
        cfg = resolve(cfg)
        task, backend = _prepare(cfg)
        if not cfg.out:
            return _loop(cfg, task, backend, None, stream, t_start)
        _make_dir(cfg.out)
    elif not cfg.out:
        raise ConfigError("--resume: needs the run's folder (--out DIR)")
    elif not checkpoint.exists(cfg.out):
        raise checkpoint.CheckpointError(f"no checkpoint in {cfg.out} ({checkpoint.META} not found)")
    with _hold(cfg.out, stream):
        saved = None
        if cfg.resume:
            saved = checkpoint.load(cfg.out)
            cfg = resolve(cfg, _saved_config(cfg.out, saved[0]))
            if cfg.steps < saved[0]["step"]:
                raise ConfigError(f"--steps {cfg.steps}: the run in {cfg.out} is already at step "
                                  f"{saved[0]['step']}; to continue it, pass a larger --steps")
            task, backend = _prepare(cfg)
        elif checkpoint.exists(cfg.out):
            if not cfg.overwrite:
                raise ConfigError(f"--out: {cfg.out} already holds a checkpoint; continue it with --resume, "
                                  "start over with --overwrite, or choose another --out")
            try:
                checkpoint.remove(cfg.out)
            except OSError as e:
                raise checkpoint.RunDirError(f"--overwrite: cannot remove the checkpoint in {cfg.out}: "
                                             f"{_why(e)}") from None
        return _loop(cfg, task, backend, saved, stream, t_start)


def _loop(cfg, task, backend, saved, stream, t_start):
    model = build_model(task, cfg, backend, np.random.default_rng([cfg.seed, 1]))
    opt = build_optimizer(model, cfg)
    rng = np.random.default_rng([cfg.seed, 2])   # the training data stream
    step, losses, seconds_before = 0, [], 0.0
    good_step = None   # the step of the newest checkpoint on disk
    if saved is not None:
        _check_saved(cfg.out, *saved, task, cfg, model, opt)
        step, losses, seconds_before = _restore(*saved, model, opt, rng, backend)
        good_step = step
        if step == cfg.steps:
            print(f"note: the run in {cfg.out} is already at step {step} (its --steps): nothing to "
                  "train, only the evaluation; pass a larger --steps to continue it", file=stream)
    start_step = step
    grads = model.gradients()
    bar = Progress(cfg.steps, step, cfg.batch, stream=stream, enabled=cfg.progress)
    t_loop = time.perf_counter()
    stopped = None

    def elapsed():
        return seconds_before + time.perf_counter() - t_loop

    with _stop_after_step() as stop:
        while step < cfg.steps:
            batch = task.sample(rng, cfg.batch)
            model.zero_grad()
            loss = run_batch(model, task, batch, backend, cfg.bptt_trunc)
            if not math.isfinite(loss):
                bar.close()
                raise NonFiniteLoss(_stop_message(step + 1, "loss", loss, cfg, good_step))
            try:
                if cfg.clip:
                    nn.clip_grad_norm(grads, cfg.clip)
                elif not math.isfinite(nn.grad_norm(grads)):
                    raise FloatingPointError
            except FloatingPointError:
                bar.close()
                raise NonFiniteLoss(_stop_message(step + 1, "gradient norm", "not finite", cfg,
                                                  good_step)) from None
            opt.step()
            step += 1
            losses.append(loss)
            bar.update(step, float(np.mean(losses[-SMOOTH:])))
            if cfg.out and (step % cfg.checkpoint_every == 0 or step == cfg.steps or stop["signal"]):
                try:
                    _save(cfg, task, model, opt, rng, step, losses, elapsed(), backend)
                except OSError as e:
                    bar.close()
                    raise checkpoint.RunDirError(f"cannot write the checkpoint of step {step} into "
                                                 f"{cfg.out}: {_why(e)}. {_kept(cfg, good_step)}") from None
                good_step = step
            if stop["signal"]:
                stopped = signal.Signals(stop["signal"]).name
                break
    bar.close()
    train_seconds = elapsed()
    eval_batches = task.eval_batches()
    metric = evaluate(model, task, eval_batches, backend)
    res = Result(task=cfg.task, steps=step, final_loss=float(np.mean(losses[-SMOOTH:])) if losses else math.nan,
                 eval_metric=metric, baseline=task.baseline(eval_batches), backend=backend.name,
                 seconds=time.perf_counter() - t_start, metric=task.metric,
                 baseline_name=task.baseline_name, out=cfg.out or None, stopped=stopped,
                 start_step=start_step, train_seconds=train_seconds, losses=losses)
    if cfg.out:
        try:
            _plot(os.path.join(cfg.out, "loss.png"), res)
        except OSError as e:   # the checkpoint is safe; the picture is a convenience
            print(f"note: loss.png not written: {_why(e)}", file=stream)
    return res


def _plot(path, res):
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
        f"  training loss (mean of last {min(SMOOTH, max(len(res.losses), 1))} steps): {res.final_loss:.4g}",
        f"  held-out {res.metric}: {res.eval_metric:.4g}   baseline ({res.baseline_name}): {res.baseline:.4g}"]
    if res.eval_metric < res.baseline:
        lines.append(f"  -> {res.baseline / max(res.eval_metric, 1e-300):.1f}x below the baseline")
    else:
        lines.append("  -> not below the baseline yet (train longer, or see docs/training.md)")
    if res.out:
        lines.append(f"  checkpoint: {os.path.join(res.out, checkpoint.META)}")
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------------------

def _per_task(key):
    return ", ".join(f"{t} {TASK_DEFAULTS[t].get(key, DEFAULTS.get(key))}" for t in TASKS)


def add_train_parser(sub):
    """Register `gpu-bptt train` on an argparse subparsers object."""
    p = sub.add_parser("train", help="train an Elman network on a built-in task",
                       description="Train an Elman network with BPTT on a built-in task. With no "
                       "options: the adding problem, checkpoints in runs/adding. Options left out "
                       "take the task's defaults (docs/training.md), or the checkpoint's with --resume.")
    a = p.add_argument
    a("--task", help=f"one of {', '.join(TASKS)} (default adding)")
    a("--text", metavar="PATH", help="text file for --task charlm")
    a("--seq-len", type=int, metavar="T", help=f"sequence length ({_per_task('seq_len')})")
    a("--min-len", type=int, metavar="N",
      help="shortest sequence: lengths vary in N..T (default T, i.e. fixed; charlm T/2)")
    a("--hidden", type=int, metavar="H", help=f"hidden units ({_per_task('hidden')})")
    a("--activation", help="tanh, relu (identity-initialized: an IRNN), sigmoid or identity "
      f"({_per_task('activation')})")
    a("--steps", type=int, help=f"total optimizer steps, counting those of a resumed run ({_per_task('steps')})")
    a("--batch", type=int, metavar="B", help=f"sequences per step ({_per_task('batch')})")
    a("--optimizer", help="sgd, momentum or adam (default)")
    a("--lr", type=float, help="learning rate (sgd 0.05, momentum 0.01, adam 0.002; copy with adam 0.001)")
    a("--momentum", type=float, help="momentum of --optimizer momentum (default 0.9)")
    a("--clip", type=float, help="clip the global gradient norm to this (default 1.0; 0: off)")
    a("--bptt-trunc", type=int, metavar="K", help="truncated BPTT: segments of K steps (default 0: full)")
    a("--backend", help="auto (cuda if usable, else numpy), numpy, cuda or emulator "
      "(default: $GPU_BPTT_BACKEND, else auto)")
    a("--seed", type=int, help="seed (>= 0) of the initialization and the training data (default 0)")
    a("--out", metavar="DIR", help="checkpoints and loss curve (default runs/<task>, or the first of runs/<task>-2, -3, ... "
                                        "not holding a run; with --resume the newest of them)")
    a("--no-save", action="store_true", help="write no files")
    a("--resume", action="store_true", help="continue the checkpoint in --out up to --steps")
    a("--overwrite", action="store_true", help="start over even if --out holds a checkpoint")
    a("--checkpoint-every", type=int, metavar="N", help="steps between checkpoints (default 500)")
    a("--threads", type=int, metavar="N", help="CPU BLAS threads (default 1: fastest for RNN-sized "
      "products; 0: the BLAS's default)")
    a("--json", action="store_true", help="print only a one-line JSON summary on stdout")
    a("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
    return p


def default_out(task, resume):
    """(folder, note): runs/<task>, or runs/<task>-2, -3, ... when earlier runs are there or
    another run holds the folder, so a new run never asks the user to pick one; --resume without
    --out continues the newest of them. note says which folders were skipped as in use, or None."""
    base = os.path.join("runs", task)
    taken = [base] + [f"{base}-{i}" for i in range(2, 10_000)]
    if resume:
        n = 0
        while n < len(taken) and checkpoint.exists(taken[n]):
            n += 1
        return taken[max(n - 1, 0)], None
    busy = []
    for folder in taken:
        pid = checkpoint.holder(folder)
        if pid is not None:
            busy.append(f"{folder} (process {pid})")
        elif not checkpoint.exists(folder):
            break
    note = f"{', '.join(busy)} in use by another run; this run writes to {folder}" if busy else None
    return folder, note


def cmd_train(args, stream=None) -> int:
    import json

    from .backends import BackendUnavailable

    stream = sys.stderr if stream is None else stream

    def error(message):
        print(f"gpu-bptt train: error: {message}", file=sys.stderr)
        return 2

    if args.no_save and (args.out or args.resume):
        return error("--no-save cannot be combined with --out or --resume")
    names = [f.name for f in dataclasses.fields(Config)]
    settings = {k: getattr(args, k) for k in names if hasattr(args, k) and k != "out"}
    chosen = not args.no_save and not args.out   # the folder is ours to pick
    out = None if args.no_save else args.out
    for _ in range(100):   # a folder taken between the choice and the lock: pick again
        if chosen:
            out, note = default_out(args.task or "adding", args.resume)
            if note:
                print(f"gpu-bptt train: {note}", file=sys.stderr)
        try:
            res = train(Config(**settings, out=out, progress=not args.quiet), stream=stream)
            break
        except checkpoint.RunDirBusy as e:
            if chosen and not args.resume:
                time.sleep(0.05)   # the holder writes its pid just after taking the lock
                continue
            return error(e)
        except (ConfigError, TaskError, checkpoint.CheckpointError, checkpoint.RunDirError,
                BackendUnavailable) as e:
            return error(e)
        except NonFiniteLoss as e:
            print(f"gpu-bptt train: {e}", file=sys.stderr)
            return 3
    else:
        return error("no free folder for the run under runs/ (pass --out DIR)")
    text = describe(res)
    if args.json:
        print(text, file=stream)
        print(json.dumps(res.summary()))
    else:
        print(text)
    if res.stopped:
        where = (f"a checkpoint of step {res.steps} is in {res.out}; continue with the same command "
                 "and --resume") if res.out else "nothing was saved (--no-save)"
        print(f"stopped by {res.stopped} at step {res.steps}: {where}", file=sys.stderr)
        return 128 + signal.Signals[res.stopped].value
    return 0
