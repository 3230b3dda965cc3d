"""The memory planner (docs/architecture.md §1, memory): the bytes a cell's forward+backward needs
in each memory mode, and the choice memory="auto" makes from them and the room there is.

The counts are the arrays the numpy backend allocates (tests/test_memory_plan.py checks them
against tracemalloc's peaks); the cuda backend keeps the same arrays (its kernels write into
buffers of the same shapes), so they serve it as well, with CuPy's pool rounding on top.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..precision import HALF
from ..validate import check_float_dtype, check_size
from ..backends import warn_once
from .recompute import MEMORY, block_steps, check_checkpoint_every, check_memory_option

HALF_NAMES = tuple(d.name for d in HALF)

CELLS = ("elman", "lstm", "gru")
GATES = {"elman": 1, "lstm": 4, "gru": 3}

FULL_HELD = {"elman": 0, "lstm": 5, "gru": 4}    # beyond h, which the cache refers to
# Values per example and step alive in each phase of a run, as (count of H, count of Hs) pairs: the
# forward (beyond its output h), the recurrence of the backward (A) and its reductions (B).
# full: Elman's du; the LSTM's gates and c, in A also c_prev, du and o·(1-tanh² c); the GRU's input
# projection and gates, in A h_prev and dgx. recompute, per step of the segment at hand: the
# replay's arrays (its own h included) and the backward's, as full's.
PHASES = {
    ("elman", "full"): ((0, 0), (1, 0), (1, 0)),
    ("lstm", "full"): ((5, 0), (11, 0), (9, 0)),
    ("gru", "full"): ((7, 0), (8, 0), (7, 0)),
    ("elman", "recompute"): ((0, 0), (1, 1), (1, 1)),
    ("lstm", "recompute"): ((5, 1), (11, 1), (9, 1)),
    ("gru", "recompute"): ((7, 1), (11, 1), (7, 1)),
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one forward+backward (docs/architecture.md §1, memory)."""
    memory: str             # "full" or "recompute"
    checkpoint_every: int   # k (T for "full")
    held: int               # kept by the cache between forward and backward, beyond x
    peak: int               # the most alive at once beyond the inputs and outputs
    workspace: int          # of peak: the temporaries of one block's reductions and the steps
    gradients: int          # the gradients' own bytes (dx, dW, dV, db, dh0...): outputs
    total: int              # what the call needs beyond its inputs: peak + outputs


@dataclass(frozen=True)
class MemoryPlan:
    """memory="auto"'s choice: the mode and k, the estimate, and why."""
    memory: str
    checkpoint_every: int
    estimate: MemoryEstimate
    available: object       # bytes, or None where unknown
    reason: str


def memory_estimate(cell, T, B, I, H, dtype="float32", *, memory="full", checkpoint_every=None,
                    backend=None, P=0) -> MemoryEstimate:
    """The bytes a forward+backward of one level needs. cell: "elman", "lstm" or "gru"; T, B, I,
    H: sizes; P: an LSTM's projection (0: none); memory: "full" or "recompute";
    checkpoint_every: k (default recompute.block_steps: ⌈√T⌉, at least 512/B); backend:
    accepted for symmetry with plan (the counts are the same on every backend)."""
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}")
    T, B, I, H = (check_size(n, v) for n, v in (("T", T), ("B", B), ("I", I), ("H", H)))
    P = 0 if not P else check_size("P", P)
    s = check_float_dtype(dtype).itemsize
    if memory not in ("full", "recompute"):
        raise ValueError(f"memory: expected 'full' or 'recompute' here, got {memory!r}")
    k = check_checkpoint_every(checkpoint_every, T, B) if memory == "recompute" else T
    G, Hs = GATES[cell], (P or H)
    b = block_steps(T, B)
    state = Hs + (H if cell == "lstm" else 0)               # a checkpoint's values per example
    weights = (I * G * H + Hs * G * H + G * H * (2 if cell == "gru" else 1) + H * P) * s
    copies = weights + B * state * s                          # the cache's weights and h0 (c0)
    # one block's reductions (its dx, dW, dV and a product's temporary; an LSTM's tanh(c)) and
    # V.T during the recurrence
    workspace = (b * B * (I + (H if cell == "lstm" else 0)) + I * G * H + 2 * Hs * G * H) * s
    vt = Hs * G * H * s
    grads = (T * B * I + B * state) * s + weights
    fwd, rec, red = ((nh * H + ns * Hs) * B * s for nh, ns in PHASES[cell, memory])
    if P:  # dhs, kept for dR
        rec, red = rec + B * P * s, red + B * P * s
    # the gradients (outputs) do not exist yet in the forward, nor in a full run's recurrence;
    # a recompute run makes dx before its first segment
    if memory == "full":
        held = T * B * (H * FULL_HELD[cell] + Hs) * s + copies
        n, before = T, grads   # n: the steps whose arrays are alive at once
    else:
        held = -(-T // k) * B * state * s + copies
        n, before = min(k, T), 0
    base = copies if memory == "full" else held  # the cell's arrays of a full run: in the phases
    phases = (n * fwd - grads, n * rec + vt - before, n * red + workspace)
    peak = base + max(phases)
    outputs = T * B * Hs * s + B * state * s + grads
    return MemoryEstimate(memory, k, held, peak, workspace, grads, peak + outputs)


def plan(cell, T, B, I, H, dtype="float32", *, memory="auto", checkpoint_every=None,
         backend=None, memory_limit=None, P=0) -> MemoryPlan:
    """The mode for a run: memory="auto" takes "full" where its estimate's total fits in
    memory_limit (bytes) or, without one, in what the backend's device has free, else
    "recompute" with checkpoint_every (default: block_steps); "full" or "recompute" are taken
    as asked.
    The reason says which and why."""
    if memory not in MEMORY:
        raise ValueError(f"memory: expected one of {MEMORY}, got {memory!r}")
    if memory_limit is not None:
        memory_limit = check_size("memory_limit", memory_limit)
    full = memory_estimate(cell, T, B, I, H, dtype, memory="full", P=P)
    rec = memory_estimate(cell, T, B, I, H, dtype, memory="recompute",
                          checkpoint_every=checkpoint_every, P=P)
    if memory != "auto":
        chosen = full if memory == "full" else rec
        return MemoryPlan(memory, chosen.checkpoint_every, chosen, None, f"memory={memory!r} "
                          "was asked for")
    room, what = ((memory_limit, "the memory_limit") if memory_limit is not None
                  else available(backend))
    if room is None or full.total <= room:
        why = ("no free memory is known here" if room is None else
               f"full needs about {size_text(full.total)}, within the {size_text(room)} of {what}")
        return MemoryPlan("full", T, full, room, f"full: {why}")
    return MemoryPlan("recompute", rec.checkpoint_every, rec, room,
                      f"recompute every {rec.checkpoint_every} steps: full would need about "
                      f"{size_text(full.total)}, more than the {size_text(room)} of {what}; "
                      f"recompute "
                      f"needs about {size_text(rec.total)}")


def check_memory(bk, memory, checkpoint_every, T, B, need_cache, sizes, plan_):
    """The segment length of a run of launch plan `plan_`: None for memory="full" (or no
    cache wanted), else k.
    memory="auto" asks plan whether the run fits (sizes: its keyword arguments but memory's);
    where it would recompute on a backend that cannot, it runs full and warns why. ValueError
    naming `memory` where "recompute" is asked of such a backend."""
    check_memory_option(memory, None)
    k = check_checkpoint_every(checkpoint_every, T, B)
    if not need_cache:
        return None
    if memory == "auto":
        choice = plan(**sizes, T=T, memory="auto", checkpoint_every=k, backend=bk)
        refusal = recompute_refusal(bk, plan_)
        if choice.memory == "recompute" and refusal:
            warn_once(f"memory='auto' runs full: {choice.reason}, but {refusal} yet",
                      stacklevel=4)
            return None
        memory, k = choice.memory, choice.checkpoint_every
    if memory == "full":
        return None
    refusal = recompute_refusal(bk, plan_)
    if refusal:
        raise ValueError(f"memory: 'recompute' is not available here yet: {refusal}; use "
                         "memory='full'" + ("" if plan_.dtype in HALF_NAMES else " or the numpy backend"))
    return k


def recompute_refusal(bk, plan_):
    """Why a run of launch plan `plan_` cannot recompute, or None. A 16-bit run's weight
    gradients are summed in float32 over the whole sequence and rounded once (docs/architecture.md
    §1, precision modes); recompute's blocked sums would round each block, so it is not offered."""
    if plan_.dtype in HALF_NAMES:
        return f"a {plan_.dtype} run sums its weight gradients over the whole sequence"
    return bk.carry_refusal(plan_)


def available(backend=None):
    """(bytes, what) a run may use: the GPU's free memory on the cuda backend (plus its pool's
    free blocks), else the host's available memory (within a cgroup's limit); (None, None)
    where the system does not say."""
    from ..backends import get_backend

    bk = get_backend(backend) if not hasattr(backend, "xp") else backend
    if bk.name == "cuda":
        cp = bk.xp
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


def size_text(n) -> str:
    if n < 1000:
        return f"{n} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"
