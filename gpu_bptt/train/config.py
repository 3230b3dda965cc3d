"""The settings of a training run (`gpu-bptt train`'s options): the defaults of each task, the
Config that holds them, and `resolve`, which fills in the defaults (or a resumed run's) and checks
every value, naming the option."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Optional

from ..activations import check_activation
from ..backends import NAMES as BACKENDS
from ..cells.recompute import MEMORY
from ..nn import CELLS
from ..tasks import TASKS

OPTIMIZERS = ("sgd", "momentum", "adam")

# Per-task defaults: each learns its task well below the trivial baseline in under two minutes
# on a 2-core CPU with the numpy backend (measured; see docs/training.md). "adam_lr" is the
# learning rate when the optimizer is adam; other optimizers use DEFAULT_LR. "lstm_forget_bias"
# is the forget gate's bias an LSTM level starts with (nn.LSTM's own init: uniform like the rest).
TASK_DEFAULTS = {
    "adding": dict(seq_len=30, hidden=64, batch=128, steps=8000),
    # a tanh Elman network sits at the memoryless baseline for a long time; an IRNN starts at once.
    # A forget bias of 1 (Jozefowicz et al. 2015) lets an LSTM keep its memory from the start.
    "copy": dict(seq_len=30, hidden=64, batch=64, steps=10000, activation="relu", adam_lr=3e-3,
                 lstm_forget_bias=1.0),
    "sine": dict(seq_len=50, hidden=32, batch=64, steps=3000),
    "charlm": dict(seq_len=100, hidden=128, batch=32, steps=2000),
}
# backend None: $GPU_BPTT_BACKEND, else auto (gpu_bptt.backends.get_backend)
DEFAULTS = dict(cell="elman", activation="tanh", optimizer="adam", momentum=0.9, clip=1.0,
                bptt_trunc=0, seed=0, checkpoint_every=500, threads=1, dtype="float32", tf32=False,
                memory="full")
# --dtype: the recurrent level's storage dtype (float32 master weights in every case: mixed.py)
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_LR = {"sgd": 0.05, "momentum": 0.01, "adam": 2e-3}

# Settings that apply to one cell only (the gated cells have no activation to choose).
ELMAN_ONLY = ("activation",)

# Settings that define a run: a resumed run keeps the checkpoint's (an explicit different value is
# an error). Others (steps, backend, out, ...) may change between invocations. A checkpoint
# written before --cell existed records no cell: its run is an Elman one.
FIXED = ("task", "cell", "seq_len", "min_len", "text", "hidden", "activation", "batch", "optimizer",
         "lr", "momentum", "clip", "bptt_trunc", "seed", "dtype", "tf32")
# What a checkpoint written before an option existed ran with.
BEFORE = {"cell": "elman", "dtype": "float32", "tf32": False}


def lstm_forget_bias(task):
    """The forget-gate bias an LSTM level starts with in a run of `task`, or None (nn.LSTM's)."""
    return TASK_DEFAULTS[task].get("lstm_forget_bias")


class ConfigError(ValueError):
    """Bad training settings; the message names the option."""


@dataclass
class Config:
    """None means: the task's default (TASK_DEFAULTS, DEFAULTS), or the checkpoint's when resuming.
    out: a folder for checkpoints and the loss curve, or None for no files."""

    task: Optional[str] = None     # default "adding"
    cell: Optional[str] = None     # default "elman"
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
    memory: Optional[str] = None   # default "full"; not FIXED: every mode gives the same gradients
    seed: Optional[int] = None
    backend: Optional[str] = None  # default $GPU_BPTT_BACKEND, else "auto"
    out: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    checkpoint_every: Optional[int] = None
    threads: Optional[int] = None   # CPU BLAS threads (default 1, see blas_threads; 0: BLAS's own)
    dtype: Optional[str] = None     # default "float32"
    tf32: Optional[bool] = None     # default False
    progress: bool = True


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
    cell = v["cell"] or (saved or {}).get("cell") or DEFAULTS["cell"]
    if cell not in CELLS:
        raise ConfigError(f"--cell: unknown {cell!r}; expected one of {', '.join(CELLS)}")
    if cell != "elman":
        for k in ELMAN_ONLY:
            if v[k] is not None:
                raise ConfigError(f"--{k.replace('_', '-')}: applies only to --cell elman, not to "
                                  f"--cell {cell}")
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
    task_defaults.pop("lstm_forget_bias", None)   # an initialization, not a setting (build_model)
    for k, d in {**DEFAULTS, **task_defaults}.items():
        if v[k] is None and (cell == "elman" or k not in ELMAN_ONLY):
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
    try:
        if cell == "elman":
            check_activation(v["activation"])
    except ValueError as e:   # the one rule for activations, in the option's words
        raise ConfigError(f"--{e}") from None
    if not (math.isfinite(v["lr"]) and v["lr"] > 0):
        raise ConfigError(f"--lr: must be > 0, got {v['lr']}")
    if not 0 <= v["momentum"] < 1:
        raise ConfigError(f"--momentum: must be in [0, 1), got {v['momentum']}")
    if not v["clip"] >= 0:
        raise ConfigError(f"--clip: must be >= 0 (0 turns clipping off), got {v['clip']}")
    if not (isinstance(v["bptt_trunc"], int) and v["bptt_trunc"] >= 0):
        raise ConfigError(f"--bptt-trunc: must be a positive number of steps (0: full BPTT), got {v['bptt_trunc']}")
    if v["memory"] not in MEMORY:
        raise ConfigError(f"--memory: expected one of {', '.join(MEMORY)}, got {v['memory']!r}")
    if not (isinstance(v["seed"], int) and v["seed"] >= 0):
        raise ConfigError(f"--seed: must be an integer >= 0, got {v['seed']}")
    if v["backend"] is not None and (not isinstance(v["backend"], str)
                                     or v["backend"].strip().lower() not in ("auto",) + BACKENDS):
        raise ConfigError(f"--backend: unknown {v['backend']!r}; expected one of auto, {', '.join(BACKENDS)}")
    if not (isinstance(v["threads"], int) and v["threads"] >= 0):
        raise ConfigError(f"--threads: must be >= 0 (0: the BLAS's default), got {v['threads']}")
    if v["resume"] and not v["out"]:
        raise ConfigError("--resume: needs the run's folder (--out DIR)")
    if v["dtype"] not in DTYPES:
        raise ConfigError(f"--dtype: unknown {v['dtype']!r}; expected one of {', '.join(DTYPES)}")
    if not isinstance(v["tf32"], bool):
        raise ConfigError(f"--tf32: expected true or false, got {v['tf32']!r}")
    if v["tf32"] and v["dtype"] != "float32":
        raise ConfigError(f"--tf32: applies to --dtype float32, not {v['dtype']}")
    return Config(**v)
