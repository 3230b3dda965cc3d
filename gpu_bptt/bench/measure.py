"""Timing, memory, the correctness check, and the machine's own rates that results are compared to.

Times: warm-up calls, then repeats, median reported (min and all samples kept in the JSON). On a
GPU the interval is measured by device events on the current stream; on the CPU by the wall clock
after `sync()`. A contender's three phases run back to back in one block, never interleaved with
another contender (thread pools of different libraries slow each other when they alternate).
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from ..blas_threads import blas_threads

PHASES = ("fwd", "bwd", "fwdbwd")
DEFAULT_TOLERANCE = {"float32": 2e-3, "float64": 1e-9}


class WallTimer:
    def __init__(self, sync):
        self.sync = sync

    def start(self):
        self.sync()
        self.t0 = time.perf_counter()

    def stop(self) -> float:
        self.sync()
        return time.perf_counter() - self.t0


class CupyTimer:
    def __init__(self, sync=None):
        import cupy

        self.e0, self.e1 = cupy.cuda.Event(), cupy.cuda.Event()
        self.elapsed = cupy.cuda.get_elapsed_time

    def start(self):
        self.e0.record()

    def stop(self) -> float:
        self.e1.record()
        self.e1.synchronize()
        return self.elapsed(self.e0, self.e1) / 1e3


class TorchTimer:
    def __init__(self, sync=None):
        import torch

        self.e0 = torch.cuda.Event(enable_timing=True)
        self.e1 = torch.cuda.Event(enable_timing=True)

    def start(self):
        self.e0.record()

    def stop(self) -> float:
        self.e1.record()
        self.e1.synchronize()
        return self.e0.elapsed_time(self.e1) / 1e3


TIMERS = {"wall": WallTimer, "cupy": CupyTimer, "torch": TorchTimer}


def time_phase(c, phase, warmup=2, repeats=10, budget_s=20.0) -> list:
    """Seconds per call of `phase` for contender `c` (set up), one sample per repeat. Repeats are
    cut (to no fewer than 3) so that the phase stays within about budget_s."""
    timer = TIMERS[c.timer](c.sync)

    def once():
        if phase == "bwd":
            c.forward()
            timer.start()
            c.backward()
        elif phase == "fwd":
            timer.start()
            c.forward()
        else:
            timer.start()
            c.forward()
            c.backward()
        return timer.stop()

    first = [once() for _ in range(max(warmup, 1))][-1]
    n = max(3, min(repeats, int(budget_s / max(first, 1e-9))))
    return [once() for _ in range(n)]


def summarize(samples) -> dict:
    return {"median_s": statistics.median(samples), "min_s": min(samples), "repeats": len(samples),
            "samples_s": [float(s) for s in samples]}


def check(c, ref, dtype) -> dict:
    """Run forward+backward once and compare every output of the float64 reference `ref` (the
    cell's) with the contender's: error = max|out - ref| / max|ref| per output. ok when each is
    within the tolerance."""
    tol = c.tolerance or DEFAULT_TOLERANCE.get(np.dtype(dtype).name, 2e-3)
    c.forward()
    c.backward()
    c.sync()
    out = c.outputs()
    errors = {}
    for k, r in ref.items():
        a = out.get(k)
        if a is None or a.shape != r.shape:
            errors[k] = float("inf")
            continue
        scale = float(np.max(np.abs(r))) or 1.0
        err = float(np.max(np.abs(a - r))) / scale
        errors[k] = err if np.isfinite(err) else float("inf")
    worst = max(errors, key=errors.get)
    return {"ok": all(e <= tol for e in errors.values()), "tolerance": tol, "errors": errors,
            "worst": worst}


def peak_memory(c):
    """Peak bytes allocated during one forward+backward, or None where it cannot be seen
    (tracemalloc sees NumPy's buffers but not PyTorch's or XLA's)."""
    if c.memory == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            c.forward()
            c.backward()
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    if c.memory == "cupy":
        import cupy

        c.sync()
        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()  # the pool then grows to exactly the peak of what is live at once
        base = pool.used_bytes()
        c.forward()
        c.backward()
        c.sync()
        return pool.total_bytes() - base
    if c.memory == "torch":
        import torch

        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        c.forward()
        c.backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return None


# -- the machine's own rates -----------------------------------------------------------------------
def cpu_gemm_rate(size, dtype, repeats=20, samples=(), gates=1) -> dict:
    """GFLOP/s of one NumPy matmul (T·B, H) @ (H, G·H) into a preallocated output (G = gates: the
    cell's product width): the shape class of the products outside the time loop, at this size;
    what 'the machine's limit' means here, with the BLAS threads in force when it is called.
    `samples` (seconds) from earlier rounds are pooled with this round's before the median."""
    r = np.random.default_rng(1)
    a = r.standard_normal((size.T * size.B, size.H)).astype(dtype)
    b = r.standard_normal((size.H, gates * size.H)).astype(dtype)
    out = np.empty((a.shape[0], b.shape[1]), dtype=dtype)
    for _ in range(3):
        np.matmul(a, b, out=out)
    ts = list(samples)
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        ts.append(time.perf_counter() - t0)
    flops = 2 * a.shape[0] * size.H * b.shape[1]
    return {"gemm_gflops": flops / statistics.median(ts) / 1e9,
            "gemm_shape": [a.shape[0], size.H, b.shape[1]], "gemm_samples_s": ts}


def cpu_gemm_rates(size, dtype, gates=1, limits=(), previous=None) -> dict:
    """cpu_gemm_rate with the BLAS's own threads and, for each n in `limits` (the BLAS thread
    limits contenders run under), held to n threads. Without limits: cpu_gemm_rate's record.
    With them, "gemm_by_threads" has each rate ("blas default", "1", ..) and the record's
    "gemm_gflops" is the best of them (named by "gemm_threads"): the machine's limit at this shape
    whichever way its BLAS is run. `previous`: the last round's record, whose samples are pooled."""
    previous = previous or {}
    before = previous.get("gemm_by_threads", {"blas default": previous})
    own = cpu_gemm_rate(size, dtype, samples=before.get("blas default", {}).get(
        "gemm_samples_s", ()), gates=gates)
    if not limits:
        return own
    by = {"blas default": own}
    for n in limits:
        with blas_threads(n):
            by[str(n)] = cpu_gemm_rate(size, dtype, samples=before.get(str(n), {}).get(
                "gemm_samples_s", ()), gates=gates)
    best = max(by, key=lambda k: by[k]["gemm_gflops"])
    return {**by[best], "gemm_threads": best, "gemm_by_threads": by}


def gpu_rates(size, dtype, repeats=20, samples=(), gates=1) -> dict:
    """fp32 (no TF32) matmul GFLOP/s at (T·B, H) @ (H, G·H) and device-to-device copy GB/s (256 MiB),
    both by device events. Only this round's samples count (a GPU is not shared)."""
    import cupy

    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()

    def timed(fn):
        for _ in range(3):
            fn()
        ts = []
        for _ in range(repeats):
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            ts.append(cupy.cuda.get_elapsed_time(e0, e1) / 1e3)
        return statistics.median(ts)

    r = np.random.default_rng(1)  # made on the host: cuRAND is not among the cuda extras' libraries
    a = cupy.asarray(r.standard_normal((size.T * size.B, size.H)).astype(dtype))
    b = cupy.asarray(r.standard_normal((size.H, gates * size.H)).astype(dtype))
    out = cupy.empty((a.shape[0], b.shape[1]), dtype=dtype)
    t = timed(lambda: cupy.matmul(a, b, out=out))
    src = cupy.ones(64 * 2**20, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    tc = timed(lambda: dst.__setitem__(Ellipsis, src))
    return {"gemm_gflops": 2 * a.shape[0] * size.H * b.shape[1] / t / 1e9,
            "gemm_shape": [a.shape[0], size.H, b.shape[1]], "copy_gbps": 2 * src.nbytes / tc / 1e9}
