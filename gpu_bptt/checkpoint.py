"""Checkpoints of a training run: arrays in an .npz, everything else in checkpoint.json.

Layout of a run directory:
    checkpoint.json           metadata (task, sizes, step, optimizer scalars, RNG state) and the
                              name of the .npz that goes with it
    checkpoint-<step>.npz     parameters ("param/<name>"), optimizer arrays ("opt/<slot>/<name>"),
                              the training-loss history ("losses")

Every file is written to a temporary name and moved into place with os.replace, so no reader ever
sees a half-written file. checkpoint.json is replaced only after its .npz is complete, and older
.npz files are removed only after that: a crash at any point leaves the previous checkpoint whole.
"""
from __future__ import annotations

import glob
import json
import os
import tempfile

import numpy as np

META = "checkpoint.json"
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the run."""


def _atomic_write(path, write):
    """Call write(file object) on a temporary file beside `path`, then move it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def exists(folder) -> bool:
    return os.path.isfile(os.path.join(folder, META))


def save(folder, meta: dict, arrays: dict):
    """Write one checkpoint: `arrays` (name -> NumPy array) and `meta` (JSON-able, with "step")."""
    os.makedirs(folder, exist_ok=True)
    name = f"checkpoint-{int(meta['step']):08d}.npz"
    _atomic_write(os.path.join(folder, name), lambda f: np.savez(f, **arrays))
    meta = {"format": FORMAT, **meta, "arrays": name}
    atomic_write_text(os.path.join(folder, META), json.dumps(meta, indent=1) + "\n")
    for old in glob.glob(os.path.join(folder, "checkpoint-*.npz")):
        if os.path.basename(old) != name:
            os.remove(old)


def load(folder):
    """(meta, arrays) of the checkpoint in `folder`; CheckpointError saying what is wrong."""
    path = os.path.join(folder, META)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {folder} ({META} not found)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read: {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    npz = os.path.join(folder, meta["arrays"])
    try:
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{npz} cannot be read: {e}") from None
    return meta, arrays


def remove(folder):
    """Delete the checkpoint files in `folder` (for a run that starts over)."""
    for p in [os.path.join(folder, META)] + glob.glob(os.path.join(folder, "checkpoint-*.npz")):
        os.remove(p)
