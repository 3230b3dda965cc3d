"""The memory a training run needs, estimated before anything is allocated, and what the machine
has: `gpu-bptt train` refuses a run that cannot fit instead of failing minutes into it.

The estimate counts the arrays the run holds at its peak (float32 values, int64 class targets):
the parameters with their gradients and optimizer state, plus the larger of one training step and
the evaluation. tests/test_train.py compares it with the peak that tracemalloc measures.
"""
from __future__ import annotations

import os

from .nn import CELLS

F32 = 4
OPT_COPIES = {"sgd": 0, "momentum": 1, "adam": 2}   # optimizer arrays per parameter
GATES = {name: getattr(level, "gates", 1) for name, level in CELLS.items()}   # Elman: one
# Arrays of one time step's (B, H) or (B, O) values held at the peak of a training step (counted
# from the numpy backend and the loss objects): Elman's h, du, dh and the reduction's temporary
# (the gated cells' c, gates, input projection and their gradients fitted to the measured peak);
# y, dy, the counted steps' copies and the loss's temporaries. The evaluation runs forward only:
# h and its last state (and the gated cells' gates); y and the loss's temporaries.
PER_H, PER_O = {"elman": 3, "lstm": 12, "gru": 13}, 4
EVAL_PER_H, EVAL_PER_O = {"elman": 2, "lstm": 12, "gru": 13}, 4
EVAL_BATCH = 256


def estimate(cfg, task) -> int:
    """Bytes a run of resolved settings `cfg` on `task` needs at its peak."""
    T, B, I, H, O = cfg.seq_len, cfg.batch, task.input_size, cfg.hidden, task.output_size
    K = cfg.bptt_trunc if 0 < cfg.bptt_trunc < T else T
    cell, G = cfg.cell, GATES[cfg.cell]
    P = G * (I * H + H * H + H * (2 if cell == "gru" else 1)) + H * O + O
    # parameters, gradients, optimizer state; V.T and the update's temporaries (H, G·H) each
    weights = F32 * ((2 + OPT_COPIES[cfg.optimizer]) * P + 3 * G * H * H)
    target = F32 * O if task.loss == "mse" else 2 * 8   # class targets and the tokens they come from

    def data(n):   # inputs and targets of n sequences
        return T * n * (F32 * I + target)

    train_step = data(B) + K * B * F32 * (PER_H[cell] * H + PER_O * O)
    n_eval = min(EVAL_BATCH, task.eval_size)
    evaluation = (data(B) + data(task.eval_size)
                  + T * n_eval * F32 * (EVAL_PER_H[cell] * H + EVAL_PER_O * O))
    return weights + max(train_step, evaluation) + task.data_bytes


def available(backend):
    """(bytes, what) this run may use: the GPU's free memory on the cuda backend, else the host's
    available memory (within a cgroup's limit); (None, None) where the system does not say."""
    if backend.name == "cuda":
        cp = backend.xp
        free = cp.cuda.runtime.memGetInfo()[0] + cp.get_default_memory_pool().free_bytes()
        return free, "free memory on the GPU"
    host = _meminfo_available()
    limit = _cgroup_room()
    if host is None and limit is None:
        return None, None
    return min(x for x in (host, limit) if x is not None), "available memory"


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room():
    """memory.max - memory.current of this process's cgroup (v2), or None without a limit."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            current = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - current, 0)


def _size(n) -> str:
    if n < 1000:
        return f"{n} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"


def shortfall(cfg, task, backend):
    """None when the run fits, else the one-line reason (the estimate and what the machine has)."""
    need = estimate(cfg, task)
    have, what = available(backend)
    if have is None or need <= have:
        return None
    return (f"the run needs about {_size(need)} of memory (--hidden {cfg.hidden}, --batch {cfg.batch}, "
            f"--seq-len {cfg.seq_len}), more than the {_size(have)} of {what} here; choose smaller sizes")
