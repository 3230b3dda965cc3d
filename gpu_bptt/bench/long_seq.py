"""`gpu-bptt bench --recompute`: memory="full" against memory="recompute" (docs/architecture.md §1,
memory) side by side: the time of forward+backward, the memory held between them and the peak,
measured and as gpu_bptt.memory_estimate gives them, with the ratios.

Memory is measured with tracemalloc on the numpy backend, in a run of its own (tracing slows the
calls it times): held = what the cache keeps alive after the forward beyond x and the outputs (h
counted for full, whose cache refers to it); peak = the most traced at once during
forward+backward beyond the inputs and the outputs of both. On the cuda backend the memory
columns are the estimate's only.
"""
from __future__ import annotations

import gc
import statistics
import time
import tracemalloc

import numpy as np

from .. import (elman_backward, elman_forward, gru_backward, gru_forward, lstm_backward,
                lstm_forward, memory_estimate)
from ..backends import get_backend
from .sizes import Size

#: the CPU sizes (the GPU takes the long-seq preset's)
CPU_SIZES = (Size(4096, 8, 256, 256),)
MODES = ("full", "recompute")
GATES = {"elman": 1, "lstm": 4, "gru": 3}


def problem(cell, size, dtype, backend):
    """Seeded arrays of one level: (forward(memory) -> output, backward(output) -> grads)."""
    bk = get_backend(backend)
    T, B, I, H = size.T, size.B, size.I, size.H
    G = GATES[cell]
    rng = np.random.default_rng(0)

    def a(*shape, scale=1.0):
        return bk.asarray((scale * rng.standard_normal(shape)).astype(dtype))
    x, dh = a(T, B, I), a(T, B, H)
    W, V, b = a(I, G * H, scale=I ** -0.5), a(H, G * H, scale=0.9 * H ** -0.5), a(G * H)
    run = {"elman": (lambda m: elman_forward(x, W, V, b, backend=bk, memory=m), elman_backward),
           "lstm": (lambda m: lstm_forward(x, W, V, b, backend=bk, memory=m), lstm_backward),
           "gru": (lambda m: gru_forward(x, W, V, b, b, backend=bk, memory=m), gru_backward)}
    forward, backward = run[cell]
    return forward, lambda out: backward(dh, out.cache)


def _bytes(obj):
    return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray))


def measure_memory(forward, backward, memory):
    """(held, peak) bytes of one forward+backward on the numpy backend (module docstring)."""
    gc.collect()
    tracemalloc.start()
    try:
        out = forward(memory)
        held = tracemalloc.get_traced_memory()[0] - _bytes(out)
        held += out.h.nbytes if memory == "full" else 0
        grads = backward(out)
        peak = tracemalloc.get_traced_memory()[1] - _bytes(out) - _bytes(grads)
    finally:
        tracemalloc.stop()
    return held, peak


def time_pair(forward, backward, memory, repeats, sync):
    """Median seconds of forward+backward over `repeats` calls, after one warm-up."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        backward(forward(memory))
        sync()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(cell, sizes, dtype="float32", backend="numpy", repeats=5):
    """One row per size: each mode's seconds, held and peak (measured on numpy, else None) and
    estimates, and the ratios full / recompute."""
    bk = get_backend(backend)
    sync = (lambda: bk.xp.cuda.Device().synchronize()) if bk.name == "cuda" else (lambda: None)
    rows = []
    for size in sizes:
        forward, backward = problem(cell, size, np.dtype(dtype), bk)
        backward(forward("full"))  # imports and caches: not counted
        row = {"T": size.T, "B": size.B, "I": size.I, "H": size.H, "cell": cell}
        for m in MODES:
            est = memory_estimate(cell, size.T, size.B, size.I, size.H, dtype, memory=m)
            held, peak = (measure_memory(forward, backward, m) if bk.name == "numpy"
                          else (None, None))
            row[m] = {"seconds": time_pair(forward, backward, m, repeats, sync), "held": held,
                      "peak": peak, "held_estimate": est.held, "peak_estimate": est.peak,
                      "checkpoint_every": est.checkpoint_every}
        f, r = row["full"], row["recompute"]
        row["ratios"] = {"time": r["seconds"] / f["seconds"],
                         "held": None if f["held"] is None else f["held"] / r["held"],
                         "peak": None if f["peak"] is None else f["peak"] / r["peak"]}
        rows.append(row)
    return {"backend": bk.name, "dtype": dtype, "repeats": repeats, "rows": rows}


def table(result) -> str:
    """The rows as a Markdown table, memory in MB (estimates in parentheses)."""
    def mb(v, e):
        return f"({e / 1e6:.2f})" if v is None else f"{v / 1e6:.2f} ({e / 1e6:.2f})"
    lines = ["| cell | T, B, I, H | mode | k | fwd+bwd s | held MB (est.) | peak MB (est.) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["rows"]:
        shape = f"{row['T']}, {row['B']}, {row['I']}, {row['H']}"
        for m in MODES:
            d = row[m]
            lines.append(f"| {row['cell']} | {shape} | {m} | {d['checkpoint_every']} | "
                         f"{d['seconds']:.3f} | {mb(d['held'], d['held_estimate'])} | "
                         f"{mb(d['peak'], d['peak_estimate'])} |")
        q = row["ratios"]
        lines.append(f"| {row['cell']} | {shape} | full / recompute | | "
                     f"{1 / q['time']:.2f}x (recompute {q['time']:.2f}x the time) | "
                     + ("" if q["held"] is None else f"{q['held']:.1f}x") + " | "
                     + ("" if q["peak"] is None else f"{q['peak']:.1f}x") + " |")
    return "\n".join(lines)
