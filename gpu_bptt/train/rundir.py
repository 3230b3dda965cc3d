"""The run directory of `gpu-bptt train`: which folder a run uses when none is given, creating it,
and holding it for this process (checkpoint.RunLock) while clearing what a killed run left."""
from __future__ import annotations

import os
from contextlib import contextmanager

from .. import checkpoint


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


def reason(e: OSError) -> str:
    """An OSError in the words of a one-line message ("Permission denied")."""
    return e.strerror or str(e)


def make_dir(out):
    """Create the run directory `out`; RunDirError naming it when that fails."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise checkpoint.RunDirError(f"--out {out}: is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise checkpoint.RunDirError(f"--out {out}: cannot create the folder: {reason(e)}") from None


@contextmanager
def hold(out, stream):
    """Hold the run directory for this process (checkpoint.RunLock) and clear what a killed run
    left behind."""
    try:
        lock = checkpoint.RunLock(out).__enter__()
    except OSError as e:
        raise checkpoint.RunDirError(f"--out {out}: cannot write there: {reason(e)}") from None
    try:
        try:
            removed = checkpoint.remove_temporaries(out)
        except OSError as e:
            raise checkpoint.RunDirError(f"--out {out}: cannot write there: {reason(e)}") from None
        if lock.stale:
            print(f"note: {out} was held by process {lock.stale}, which is no longer running; "
                  "this run takes it over", file=stream)
        if removed:
            print(f"note: removed {', '.join(removed)} from {out} (left by a write that was cut short)",
                  file=stream)
        yield
    finally:
        lock.__exit__(None, None, None)
