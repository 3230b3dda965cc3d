"""Checkpoints of a training run: arrays in an .npz, everything else in checkpoint.json.

Layout of a run directory:
    checkpoint.json           metadata (task, sizes, step, optimizer scalars, RNG state), the name
                              of the .npz that goes with it and that file's SHA-256
    checkpoint-<step>.npz     parameters ("param/<name>"), optimizer arrays ("opt/<slot>/<name>"),
                              the training-loss history ("losses")
    .lock                     the pid of the process that holds the folder (see RunLock)

Every file is written to a temporary name and moved into place with os.replace, so no reader ever
sees a half-written file. checkpoint.json is replaced only after its .npz is complete, and older
.npz files are removed only after that: a crash at any point leaves the previous checkpoint whole.
A temporary file left by a killed write is removed by the next process that takes the folder.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

try:
    import fcntl
except ImportError:   # not a POSIX system
    fcntl = None

META = "checkpoint.json"
LOCK = ".lock"
FORMAT = 2        # 2 records the .npz's SHA-256; 1 (without it) is still read
TMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the run; the message names the file."""


class RunDirError(RuntimeError):
    """A run directory cannot be created, locked or written; the message names the path."""


class RunDirBusy(RunDirError):
    """Another live process holds the run directory."""

    def __init__(self, folder, pid):
        self.folder, self.pid = folder, pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"{folder} is in use by {who} (another training run writes there)")


def atomic_write(path, write):
    """Call write(file object) on a temporary file beside `path`, then move it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=TMP_SUFFIX)
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
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def exists(folder) -> bool:
    return os.path.isfile(os.path.join(folder, META))


def npz_name(step) -> str:
    return f"checkpoint-{int(step):08d}.npz"


def save(folder, meta: dict, arrays: dict):
    """Write one checkpoint: `arrays` (name -> NumPy array) and `meta` (JSON-able, with "step")."""
    name = npz_name(meta["step"])
    npz = os.path.join(folder, name)
    atomic_write(npz, lambda f: np.savez(f, **arrays))
    meta = {"format": FORMAT, **meta, "arrays": name, "sha256": _sha256(npz)}
    atomic_write_text(os.path.join(folder, META), json.dumps(meta, indent=1) + "\n")
    for old in glob.glob(os.path.join(folder, "checkpoint-*.npz")):
        if os.path.basename(old) != name:
            os.remove(old)


def load(folder):
    """(meta, arrays) of the checkpoint in `folder`, with the file-level facts checked (a JSON
    object, a known format, a positive integer step, the .npz named for that step and, from
    format 2 on, with the recorded SHA-256). The caller checks the contents against its run.
    CheckpointError naming the file and what is wrong."""
    path = os.path.join(folder, META)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {folder} ({META} not found)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read: {e}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") not in (1, FORMAT):
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    step = meta.get("step")
    if type(step) is not int or step < 1:
        raise CheckpointError(f"{path}: 'step' must be a positive integer, got {step!r}")
    if meta.get("arrays") != npz_name(step):
        raise CheckpointError(f"{path}: 'arrays' must name {npz_name(step)} (the file of step {step}), "
                              f"got {meta.get('arrays')!r}")
    npz = os.path.join(folder, meta["arrays"])
    if not os.path.isfile(npz):
        raise CheckpointError(f"{npz} is missing (named by {path})")
    if meta["format"] >= 2 and meta.get("sha256") != _sha256(npz):
        raise CheckpointError(f"{npz} does not match {path} (its SHA-256 differs from the one recorded: "
                              "a file from another run, or a damaged one)")
    try:
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
    # a damaged archive fails in whichever layer meets the damage first
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(f"{npz} cannot be read: {e}") from None
    return meta, arrays


def remove(folder):
    """Delete the checkpoint files in `folder` (for a run that starts over)."""
    for p in [os.path.join(folder, META)] + glob.glob(os.path.join(folder, "checkpoint-*.npz")):
        os.remove(p)


def remove_temporaries(folder) -> list:
    """Delete the temporary files of writes that were killed midway; returns their names.
    Call only while holding the folder's RunLock (a live writer's file would go too)."""
    found = glob.glob(os.path.join(folder, ".*" + TMP_SUFFIX))   # atomic_write's names
    for p in found:
        os.remove(p)
    return [os.path.basename(p) for p in found]


def _pid_in(path):
    """The pid written in a lock file, or None (no file, empty, or not a number)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # a live process of another user
        return True
    return True


def holder(folder):
    """The pid of a live process named in `folder`'s lock file, or None. A hint for choosing a
    folder; only RunLock decides."""
    pid = _pid_in(os.path.join(folder, LOCK))
    return pid if pid is not None and _alive(pid) else None


class RunLock:
    """Hold `folder` (an existing directory) for this process: a second process is refused with
    RunDirBusy naming the holder's pid. The lock is an flock on `.lock`, which the kernel releases
    when the process ends in any way, so a lock left by a killed run is taken over by the next
    one; the file's pid is then the dead run's (`stale`). OSError when the folder is not writable."""

    def __init__(self, folder):
        self.folder, self.fd, self.stale = folder, None, None

    def __enter__(self):
        if fcntl is None:
            raise RunDirError("run directories are locked with fcntl, which this system lacks; "
                              "train with --no-save here")
        path = os.path.join(self.folder, LOCK)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusy(self.folder, _pid_in(path)) from None
        self.stale = _pid_in(path)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        # The file stays (removing it would let a third process lock a fresh file while a
        # second one waits on the old); emptied, it names no holder.
        try:
            os.ftruncate(self.fd, 0)
        finally:
            os.close(self.fd)
            self.fd = None
