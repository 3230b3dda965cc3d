"""`gpu-bptt train`: its options and the command."""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time

from .. import checkpoint
from ..backends import BackendUnavailable
from ..nn import CELLS
from ..tasks import TASKS, TaskError
from .config import DEFAULTS, DTYPES, TASK_DEFAULTS, Config, ConfigError
from .loop import NonFiniteLoss, train
from .rundir import default_out
from .summary import describe


def _per_task(key):
    return ", ".join(f"{t} {TASK_DEFAULTS[t].get(key, DEFAULTS.get(key))}" for t in TASKS)


def add_train_parser(sub):
    """Register `gpu-bptt train` on an argparse subparsers object."""
    p = sub.add_parser("train", help="train a recurrent network on a built-in task",
                       description="Train a recurrent network (Elman, LSTM or GRU) with BPTT on a "
                       "built-in task. With no "
                       "options: the adding problem, checkpoints in runs/adding. Options left out "
                       "take the task's defaults (docs/training.md), or the checkpoint's with --resume.")
    a = p.add_argument
    a("--task", help=f"one of {', '.join(TASKS)} (default adding)")
    a("--text", metavar="PATH", help="text file for --task charlm")
    a("--cell", help=f"the recurrent level: {', '.join(CELLS)} (default elman)")
    a("--seq-len", type=int, metavar="T", help=f"sequence length ({_per_task('seq_len')})")
    a("--min-len", type=int, metavar="N",
      help="shortest sequence: lengths vary in N..T (default T, i.e. fixed; charlm T/2)")
    a("--hidden", type=int, metavar="H", help=f"hidden units ({_per_task('hidden')})")
    a("--activation", help="--cell elman only: tanh, relu (identity-initialized: an IRNN), "
      "sigmoid or identity "
      f"({_per_task('activation')})")
    a("--steps", type=int, help=f"total optimizer steps, counting those of a resumed run ({_per_task('steps')})")
    a("--batch", type=int, metavar="B", help=f"sequences per step ({_per_task('batch')})")
    a("--optimizer", help="sgd, momentum or adam (default)")
    a("--lr", type=float, help="learning rate (sgd 0.05, momentum 0.01, adam 0.002; copy with adam 0.001)")
    a("--momentum", type=float, help="momentum of --optimizer momentum (default 0.9)")
    a("--clip", type=float, help="clip the global gradient norm to this (default 1.0; 0: off)")
    a("--bptt-trunc", type=int, metavar="K", help="truncated BPTT: segments of K steps (default 0: "
      "full); it changes the gradient (none crosses a segment), --memory recompute does not")
    a("--memory", help="full (default: every step's state kept for the backward), recompute "
      "(a checkpoint every ~sqrt(T) steps, the rest recomputed: the same gradients, bit for "
      "bit, in far less memory, for about one more forward) or auto (recompute where full "
      "would not fit)")
    a("--backend", help="auto (cuda if usable, else numpy), numpy, cuda or emulator "
      "(default: $GPU_BPTT_BACKEND, else auto)")
    a("--dtype", help=f"the recurrent level's dtype: {', '.join(DTYPES)} (default float32); "
      "float32 master weights in every case, float16 with dynamic loss scaling")
    a("--tf32", action="store_true", default=None,
      help="float32 products on TF32 operands, as tensor cores take them (--dtype float32)")
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


def cmd_train(args, stream=None) -> int:
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
