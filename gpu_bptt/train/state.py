"""A training run's checkpoint: what it holds (parameters, optimizer state, the data stream's RNG
state, the loss history, the run's settings), written, checked fact by fact against the run that
would continue it, and restored. The files themselves (atomic writes, format, hash) are
gpu_bptt/checkpoint.py's."""
from __future__ import annotations

import math
import os

import numpy as np

from .. import checkpoint
from .config import BEFORE, FIXED, Config, ConfigError, resolve
from .mixed import LossScale

# The optimizer state arrays a checkpoint holds after its first step (plain SGD keeps none).
SLOT_ARRAYS = {"sgd": (), "momentum": ("velocity",), "adam": ("m", "v")}


def model_meta(task, cfg):
    """The model's facts a checkpoint records (and a resumed run must match)."""
    return {"cell": cfg.cell, "input_size": task.input_size, "hidden": cfg.hidden,
            "output_size": task.output_size, "activation": cfg.activation, "dtype": "float32"}


def _with_cell(record, keys=("cell",)):
    """A config or model record with its cell (a config's also with dtype and tf32: keys); one
    written before those options existed ran with BEFORE's."""
    return {**{k: BEFORE[k] for k in keys}, **record} if isinstance(record, dict) else record


def optimizer_meta(opt, cfg, step, skipped=0):
    """The optimizer's name, state slots and scalars at `step`, as a checkpoint records them;
    skipped: the updates float16's loss scaling skipped."""
    state = opt.state_dict()
    slots = [k for k, val in state.items() if isinstance(val, dict)]
    scalars = {k: val for k, val in state.items() if k not in slots}
    if "t" in scalars:   # Adam counts its updates: one per step but the skipped ones
        scalars["t"] = step - skipped
    return {"name": cfg.optimizer, "slots": slots, "scalars": scalars}


def save(cfg, task, model, opt, rng, step, losses, seconds, backend, scaler=None):
    """Write the checkpoint of `step` into cfg.out (checkpoint.save: atomically); scaler: the
    float16 run's LossScale."""
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
        "model": model_meta(task, cfg),
        "optimizer": optimizer_meta(opt, cfg, step, 0 if scaler is None else scaler.skipped),
        "rng": rng.bit_generator.state,
        "train_seconds": seconds,
        "backend": backend.name,
    }
    if scaler is not None:
        meta["loss_scale"] = scaler.state()
    checkpoint.save(cfg.out, meta, arrays)


def saved_config(folder, meta) -> dict:
    """The run settings recorded in a checkpoint, checked as the command's options are."""
    path = os.path.join(folder, checkpoint.META)
    saved = _with_cell(meta.get("config"), tuple(BEFORE))
    keys = FIXED + ("steps",)
    if not isinstance(saved, dict) or not set(keys) <= set(saved):
        raise checkpoint.CheckpointError(f"{path}: 'config' must be an object with {', '.join(keys)}")
    try:
        resolve(Config(**{k: saved[k] for k in keys}))
    except (ConfigError, TypeError) as e:
        raise checkpoint.CheckpointError(f"{path}: 'config': {e}") from None
    return saved


def check_saved(folder, meta, arrays, task, cfg, model, opt):
    """Every fact of a checkpoint against this run, before any of it is used."""
    path, npz = os.path.join(folder, checkpoint.META), os.path.join(folder, meta["arrays"])

    def bad(what, file=path):
        raise checkpoint.CheckpointError(f"{file}: {what}")

    step = meta["step"]
    skipped = 0
    if cfg.dtype == "float16":
        ls = meta.get("loss_scale")
        if not (isinstance(ls, dict) and set(ls) == {"scale", "good", "skipped"}
                and type(ls["scale"]) is float and 0 < ls["scale"] < math.inf
                and all(type(ls[k]) is int and 0 <= ls[k] <= step for k in ("good", "skipped"))):
            bad(f"'loss_scale' must be {{'scale': a number > 0, 'good', 'skipped': ints in "
                f"0..step}}, got {ls!r}")
        skipped = ls["skipped"]
    if meta.get("task") != task.meta():
        bad(f"written for the task {meta.get('task')}, which differs from this run's {task.meta()} "
            "(a changed --text file?)")
    for key, want in (("model", model_meta(task, cfg)),
                      ("optimizer", optimizer_meta(opt, cfg, step, skipped))):
        have = _with_cell(meta.get(key)) if key == "model" else meta.get(key)
        if have != want:
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


def restore(meta, arrays, model, opt, rng, backend):
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


def loss_scale(meta) -> LossScale:
    """The float16 run's loss scale a checked checkpoint holds."""
    return LossScale(**meta["loss_scale"])
