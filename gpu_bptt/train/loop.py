"""The training loop of `gpu-bptt train`.

The network is the seed's: one recurrent level (Elman, LSTM or GRU: --cell) and a per-step Dense
output level. One step
is one batch and one optimizer update. With truncated BPTT (bptt_trunc = K) the batch runs in
segments of K steps: the hidden state is carried from each segment into the next (so the forward
pass, and the loss, are exactly those of the whole sequence), the gradient stops at each segment's
first step, and the segments' gradients add up to one update. Only one segment's activations are
held at a time.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np

from .. import checkpoint, memory, nn
from ..backends import get_backend
from ..blas_threads import blas_threads
from ..progress import Progress
from ..tasks import make_task
from . import state
from .config import Config, ConfigError, lstm_forget_bias, resolve
from .mixed import DTYPES, LossScale, MixedLevel
from .rundir import hold, make_dir, reason
from .summary import SMOOTH, Result, plot


class NonFiniteLoss(RuntimeError):
    """Training met a non-finite loss or gradient; the message says where and what to try."""


def build_model(task, cfg, backend, rng):
    """The recurrent level of cfg.cell (an Elman relu level gets the identity recurrent init of an
    IRNN; an LSTM level the task's forget-gate bias, if it has one), run in cfg.dtype (and with
    TF32 products) by a MixedLevel where those are not plain float32, and a Dense output
    level."""
    if cfg.cell == "elman":
        init_V = "identity" if cfg.activation == "relu" else "uniform"
        rnn = nn.Elman(task.input_size, cfg.hidden, activation=cfg.activation, init_V=init_V,
                       backend=backend, rng=rng, memory=cfg.memory)
    else:
        rnn = nn.CELLS[cfg.cell](task.input_size, cfg.hidden, backend=backend, rng=rng,
                                 memory=cfg.memory)
        forget_bias = lstm_forget_bias(cfg.task)
        if cfg.cell == "lstm" and forget_bias is not None:
            rnn.parameters()["b"][cfg.hidden:2 * cfg.hidden] = forget_bias   # gates i, f, g, o
    dense = nn.Dense(cfg.hidden, task.output_size, backend=backend, rng=rng)
    if cfg.dtype != "float32" or cfg.tf32:
        rnn = MixedLevel(rnn, DTYPES[cfg.dtype], cfg.tf32)
    return nn.Sequential(rnn, dense)


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
    carry, total = {}, 0.0
    for s in range(0, T, K):
        e = min(s + K, T)
        # Examples that ended before this segment run one ignored step (lengths must be >= 1).
        seg_len = np.clip(L - s, 1, e - s)
        hseq = rnn.forward(x[s:e], lengths=None if (seg_len == e - s).all() else seg_len, **carry)
        # plain arrays: no gradient flows back across the boundary
        lstm = isinstance(getattr(rnn, "level", rnn), nn.LSTM)   # a MixedLevel's own level
        carry = {"h0": rnn.h_last, **({"c0": rnn.c_last} if lstm else {})}
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
    try:
        backend.check_mode(DTYPES[cfg.dtype], cfg.tf32, cfg.cell)
    except (TypeError, ValueError) as e:   # "dtype: the cuda backend runs ..."
        arg, why = str(e).split(": ", 1)
        flag = {"dtype": f"--dtype {cfg.dtype}", "allow_tf32": "--tf32"}.get(arg)
        raise ConfigError(f"{flag}: {why}" if flag else str(e)) from None  # gemm: as it is
    return task, backend


def _train(cfg, stream):
    t_start = time.perf_counter()
    if not cfg.resume:
        cfg = resolve(cfg)
        task, backend = _prepare(cfg)
        if not cfg.out:
            return _loop(cfg, task, backend, None, stream, t_start)
        make_dir(cfg.out)
    elif not cfg.out:
        raise ConfigError("--resume: needs the run's folder (--out DIR)")
    elif not checkpoint.exists(cfg.out):
        raise checkpoint.CheckpointError(f"no checkpoint in {cfg.out} ({checkpoint.META} not found)")
    with hold(cfg.out, stream):
        saved = None
        if cfg.resume:
            saved = checkpoint.load(cfg.out)
            cfg = resolve(cfg, state.saved_config(cfg.out, saved[0]))
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
                                             f"{reason(e)}") from None
        return _loop(cfg, task, backend, saved, stream, t_start)


def _loop(cfg, task, backend, saved, stream, t_start):
    model = build_model(task, cfg, backend, np.random.default_rng([cfg.seed, 1]))
    opt = build_optimizer(model, cfg)
    rng = np.random.default_rng([cfg.seed, 2])   # the training data stream
    step, losses, seconds_before = 0, [], 0.0
    good_step = None   # the step of the newest checkpoint on disk
    scaler = LossScale() if cfg.dtype == "float16" else None
    if saved is not None:
        state.check_saved(cfg.out, *saved, task, cfg, model, opt)
        step, losses, seconds_before = state.restore(*saved, model, opt, rng, backend)
        good_step = step
        if scaler is not None:
            scaler = state.loss_scale(saved[0])
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
            if scaler is not None:
                model.layers[0].loss_scale = scaler.scale
            loss = run_batch(model, task, batch, backend, cfg.bptt_trunc)
            if not math.isfinite(loss):
                bar.close()
                raise NonFiniteLoss(_stop_message(step + 1, "loss", loss, cfg, good_step))
            # float16: a scaled gradient that overflowed skips the update and halves the scale
            update = scaler is None or scaler.update(math.isfinite(nn.grad_norm(grads)))
            try:
                if update and cfg.clip:
                    nn.clip_grad_norm(grads, cfg.clip)
                elif update and not math.isfinite(nn.grad_norm(grads)):
                    raise FloatingPointError
            except FloatingPointError:
                bar.close()
                raise NonFiniteLoss(_stop_message(step + 1, "gradient norm", "not finite", cfg,
                                                  good_step)) from None
            if update:
                opt.step()
            step += 1
            losses.append(loss)
            bar.update(step, float(np.mean(losses[-SMOOTH:])))
            if cfg.out and (step % cfg.checkpoint_every == 0 or step == cfg.steps or stop["signal"]):
                try:
                    state.save(cfg, task, model, opt, rng, step, losses, elapsed(), backend,
                               scaler)
                except OSError as e:
                    bar.close()
                    raise checkpoint.RunDirError(f"cannot write the checkpoint of step {step} into "
                                                 f"{cfg.out}: {reason(e)}. {_kept(cfg, good_step)}") from None
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
                 seconds=time.perf_counter() - t_start, metric=task.metric, cell=cfg.cell,
                 hidden=cfg.hidden,
                 baseline_name=task.baseline_name, out=cfg.out or None, stopped=stopped,
                 start_step=start_step, train_seconds=train_seconds, losses=losses,
                 dtype=cfg.dtype + " with TF32" * cfg.tf32)
    if cfg.out:
        try:
            plot(os.path.join(cfg.out, "loss.png"), res)
        except OSError as e:   # the checkpoint is safe; the picture is a convenience
            print(f"note: loss.png not written: {reason(e)}", file=stream)
    return res
