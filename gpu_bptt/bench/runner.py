"""One benchmark run: for each size, the machine's rates, then each contender in its own block
(set up, peak memory, correctness check, then forward, backward and forward+backward timed)."""
from __future__ import annotations

import time

from ..progress import StatusLine
from .contenders import NotApplicable
from .cells import GATES, check_cell
from .measure import PHASES, check, cpu_gemm_rates, gpu_rates, peak_memory, summarize, time_phase
from .report import load_average, machine_info
from .sizes import Problem, make_problem, reference

BASELINE = {"cpu": "torch-cpu", "gpu": "torch-cudnn-fp32"}


def flop_count(cell) -> dict:
    """The FLOP formulas of sizes.Size.flops, as recorded in the JSON (G written out)."""
    g = "" if GATES[cell] == 1 else f"{GATES[cell]}*"
    return {"fwd": f"2*T*B*{g}(I*H + H*H)", "bwd": f"2*T*B*{g}(2*I*H + 2*H*H)",
            "fwdbwd": f"2*T*B*{g}(3*I*H + 3*H*H)"}


def run_contender(c, problem: Problem, ref, *, warmup, repeats, budget_s, say=lambda s, major=True: None):
    """The record of one contender at one size: check, memory, times (only if the check passed)."""
    rec = {"contender": c.name, "device": c.device, "timer": c.timer,
           "blas_threads": c.blas_threads}
    try:
        say("setup")
        c.setup(problem)
        say("memory", False)
        rec["peak_bytes"] = peak_memory(c)
        say("check", False)
        rec["check"] = check(c, ref, problem.dtype)
        used = c.used()  # what an "auto" choice ran (a fallback included), for the JSON and table
        if used:
            rec["algo"] = used
        if rec["check"]["ok"]:
            rec["times"] = {}
            for phase in PHASES:
                say(phase, False)
                rec["times"][phase] = summarize(time_phase(c, phase, warmup, repeats, budget_s))
    except NotApplicable as e:
        rec["not_applicable"] = True
        rec["error"] = f"not applicable: {e}"
        rec["check"] = {"ok": False, "errors": {}, "worst": None, "tolerance": 0.0}
    except Exception as e:  # one contender failing is reported, and the run goes on
        rec["error"] = f"{type(e).__name__}: {e}"
        rec.setdefault("check", {"ok": False, "errors": {"run": float("inf")}, "worst": "run",
                                 "tolerance": 0.0})
    finally:
        if c.note:
            rec["note"] = c.note
        c.teardown()
    return rec


def _merge(rec, more):
    """Fold a later round's samples into the first round's record (a failure anywhere wins)."""
    if "times" not in more or "times" not in rec:
        if "times" not in more:
            rec.pop("times", None)
            rec["check"], rec["error"] = more["check"], more.get("error", "failed in a later round")
        return
    for phase, t in more["times"].items():
        rec["times"][phase] = summarize(rec["times"][phase]["samples_s"] + t["samples_s"])


def _ratios(rec, size, rates, baseline_rec, itemsize, cell):
    rec["gflops"], rec["ratios"] = {}, {}
    if "times" not in rec:
        return
    for phase, t in rec["times"].items():
        sec = t["median_s"]
        gf = size.flops(phase, cell) / sec / 1e9
        rec["gflops"][phase] = gf
        rec["ratios"][f"gemm_{phase}"] = gf / rates["gemm_gflops"]
        if "copy_gbps" in rates:
            rec["ratios"][f"copy_{phase}"] = size.bytes(phase, itemsize, cell) / sec / 1e9 / rates["copy_gbps"]
        if baseline_rec and "times" in baseline_rec:
            rec["ratios"][f"speedup_{phase}"] = baseline_rec["times"][phase]["median_s"] / sec
    rec["fwd_us_per_step"] = rec["times"]["fwd"]["median_s"] / size.T * 1e6


def run_bench(sizes, contenders, *, name="custom", cell="elman", dtype="float32", warmup=2,
              repeats=15, budget_s=20.0, pause_s=0.5, rounds=1, skipped=None, progress=None,
              on_size=None) -> dict:
    """Run every contender at every size on `cell` (cells.CELLS); returns the run as a JSON-ready
    dict. "blas_threads" records, per contender, the BLAS thread limit it ran under (None: the
    BLAS's own); the CPU GEMM rate is then the best of the BLAS's own and each limit
    (measure.cpu_gemm_rates).

    rounds > 1 runs the sequence of contender blocks that many times per size and takes the median
    over all samples, so that a load that comes and goes on the machine is shared fairly.
    on_size(run): called after each size but the last with the run so far ("complete" is False
    until the end), so that a caller can save partial results of a long run.
    progress: a StatusLine for what is being measured (default: none shown)."""
    progress = progress or StatusLine(enabled=False)
    devices = {c.device for c in contenders}
    check_cell(cell)
    limits = sorted({c.blas_threads for c in contenders if c.device == "cpu" and c.blas_threads})
    run = {"name": name, "cell": cell, "dtype": dtype, "rounds": rounds, "warmup": warmup,
           "activation": "tanh" if cell == "elman" else f"{cell} gates (sigmoid, tanh)",
           "bias": True, "machine": machine_info(with_gpu="gpu" in devices),
           "flop_count": flop_count(cell), "contenders": [c.name for c in contenders],
           "blas_threads": {c.name: c.blas_threads for c in contenders},
           "skipped": dict(skipped or {}), "sizes": [], "complete": False}
    for i, size in enumerate(sizes):
        where = f"[{i + 1}/{len(sizes)}] {size}"
        progress.show(f"{where}: reference and machine rates")
        problem = make_problem(size, dtype, cell=cell)
        ref = reference(problem)
        rates = {}
        results = []
        for r in range(rounds):
            # the machine's rates are a block of their own in every round, pooled like the others
            if "cpu" in devices:
                rates["cpu"] = cpu_gemm_rates(size, problem.dtype, GATES[cell], limits,
                                              rates.get("cpu"))
            if "gpu" in devices and r == 0:
                rates["gpu"] = gpu_rates(size, problem.dtype, gates=GATES[cell])
            for j, c in enumerate(contenders):
                time.sleep(pause_s)  # let the previous block's spinning threads go idle
                tag = f"{where} {c.name}" + (f" (round {r + 1}/{rounds})" if rounds > 1 else "")
                rec = run_contender(c, problem, ref, warmup=warmup, repeats=repeats, budget_s=budget_s,
                                    say=lambda s, major=True, tag=tag: progress.show(f"{tag}: {s}",
                                                                                     major))
                if r == 0:
                    results.append(rec)
                else:
                    _merge(results[j], rec)
        by_name = {r["contender"]: r for r in results}
        for rec in results:
            _ratios(rec, size, rates[rec["device"]], by_name.get(BASELINE[rec["device"]]),
                    problem.dtype.itemsize, cell)
        main = "gpu" if "gpu" in devices else "cpu"
        run["sizes"].append({"size": size.as_dict(), "machine": rates[main], "rates": rates,
                             "baseline": BASELINE[main], "results": results})
        if on_size is not None and i + 1 < len(sizes):
            on_size(run)
    run["complete"] = True
    run["load_average_end"] = load_average()
    progress.close(keep=False)
    return run
