"""What a run records about the machine, and how results are shown: table, JSON, Markdown, plots."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path

from ..blas_threads import blas_summary

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "GPU_BPTT_BACKEND", "GPU_BPTT_GEMM", "GPU_BPTT_STEP_KERNEL",
            "GPU_BPTT_PERSIST_KERNEL",
            "CUPY_TF32", "XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE")


def cpu_name() -> str:
    """The processor's model name, for result files."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit():
    root = Path(__file__).resolve().parents[2]
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,
                                        timeout=10)
        sha = run("rev-parse", "HEAD").stdout.strip()
        if not sha:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return sha[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("gpu_bptt", "numpy", "torch", "jax", "jaxlib", "cupy", "cupy-cuda12x",
                "cupy-cuda13x", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    if "gpu_bptt" not in out:
        import gpu_bptt

        out["gpu_bptt"] = gpu_bptt.__version__
    return out


def load_average():
    """The 1, 5 and 15 minute load averages (a shared machine's other work shows here), or None."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(with_gpu: bool) -> dict:
    info = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": _commit(), "host": platform.node(), "cpu": cpu_name(),
            "cpu_count": os.cpu_count(), "load_average": load_average(), "blas": blas_summary(),
            "versions": _versions(),
            "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ}}
    if with_gpu:
        info["gpu"] = gpu_info()
    return info


def gpu_info() -> dict:
    try:
        from ..backends.cuda import backend as cuda

        if hasattr(cuda, "device_report"):
            return cuda.device_report()
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        v = cupy.cuda.runtime.driverGetVersion()
        r = cupy.cuda.runtime.runtimeGetVersion()
        return {"device": props["name"].decode(), "cuda_driver": f"{v // 1000}.{v % 1000 // 10}",
                "cuda_runtime": f"{r // 1000}.{r % 1000 // 10}", "cupy": cupy.__version__}
    except Exception as e:  # reported, never fatal: the CPU part of a run stays useful
        return {"error": f"{type(e).__name__}: {e}"}


# -- table -----------------------------------------------------------------------------------------
def _ms(rec, phase):
    t = rec.get("times", {}).get(phase)
    return f"{t['median_s'] * 1e3:9.3f}" if t else f"{'-':>9}"


def _num(v, fmt):
    """v formatted, or a right-aligned "-" of the same width when it is missing."""
    width = "".join(ch for ch in fmt.split(".")[0] if ch.isdigit())
    return format(v, fmt) if v is not None else format("-", f">{width or 0}")


def _cell(run):
    return run.get("cell", "elman")


def _gemm_threads(rates):
    """How the BLAS ran for the GEMM rate, where contenders ran it with a thread limit."""
    by = rates.get("gemm_by_threads")
    if not by:
        return ""
    each = ", ".join(f"{k}: {v['gemm_gflops']:.1f}" for k, v in by.items())
    return f" (best of BLAS threads {each})"


def _limits(run):
    """The BLAS thread limits contenders ran under, as a sentence (or "")."""
    held = {k: n for k, n in run.get("blas_threads", {}).items() if n}
    return "".join(f" {k}: BLAS held to {n} thread{'s' if n > 1 else ''}." for k, n in held.items())


def table(run: dict) -> str:
    """One block per size: each contender's median times, rates, ratios and check."""
    lines = []
    for block in run["sizes"]:
        size = block["size"]
        rates = block["machine"]
        head = (f"T={size['T']} B={size['B']} I={size['I']} H={size['H']} {_cell(run)} "
                f"{run['dtype']}  |  GEMM {rates['gemm_gflops']:.1f} GFLOP/s{_gemm_threads(rates)}")
        if "copy_gbps" in rates:
            head += f", copy {rates['copy_gbps']:.0f} GB/s"
        lines += [head, f"  {'contender':<26}{'fwd ms':>9} {'bwd ms':>9} {'f+b ms':>9} "
                        f"{'GFLOP/s':>8} {'%GEMM':>6} {'%copy':>6} {'vs ' + block['baseline']:>17} "
                        f"{'peak MiB':>9} {'fwd us/step':>11}  check"]
        for rec in block["results"]:
            if "error" in rec:
                tag = "" if rec.get("not_applicable") else "ERROR: "
                lines.append(f"  {rec['contender']:<26}{tag}{rec['error']}")
                continue
            if not rec["check"]["ok"]:
                chk = rec["check"]
                lines.append(f"  {rec['contender']:<26}REJECTED: {chk['worst']} off by "
                             f"{chk['errors'][chk['worst']]:.2e} (tolerance {chk['tolerance']:.0e})")
                continue
            r = rec["ratios"]
            mem = rec.get("peak_bytes")
            lines.append(
                f"  {rec['contender']:<26}{_ms(rec, 'fwd')} {_ms(rec, 'bwd')} {_ms(rec, 'fwdbwd')} "
                f"{_num(rec['gflops'].get('fwdbwd'), '8.1f')} "
                f"{_num(r.get('gemm_fwdbwd') and 100 * r['gemm_fwdbwd'], '6.0f')} "
                f"{_num(r.get('copy_fwdbwd') and 100 * r['copy_fwdbwd'], '6.1f')} "
                f"{_num(r.get('speedup_fwdbwd') and format(r['speedup_fwdbwd'], '.2f') + 'x', '>17')} "
                f"{_num(mem and mem / 2**20, '9.1f')} {_num(rec.get('fwd_us_per_step'), '11.2f')}  "
                f"ok {max(rec['check']['errors'].values()):.0e}"
                + (f"  ran {rec['algo']}" if "algo" in rec else ""))
        lines.append("")
    if _limits(run):
        lines.append(_limits(run).strip())
    if run.get("skipped"):
        lines.append("not run: " + "; ".join(f"{k}: {v}" for k, v in run["skipped"].items()))
    return "\n".join(lines)


def markdown(run: dict) -> str:
    m = run["machine"]
    dev = m["gpu"].get("device", "?") if "gpu" in m else f"{m['cpu']} ({m['cpu_count']} cores)"
    cell = "tanh" if _cell(run) == "elman" else _cell(run).upper()
    load = ""
    if m.get("load_average"):
        load = f"; load average {m['load_average'][0]}"
        if run.get("load_average_end"):
            load += f" at the start, {run['load_average_end'][0]} at the end"
    out = [f"Device: {dev}; date {m['date']}; commit {m['commit']}{load}; {run['dtype']}, "
           f"{cell}, median of repeats. Times in ms.{_limits(run)}", "",
           "| size | contender | fwd | bwd | fwd+bwd | GFLOP/s | % of GEMM | "
           "speed-up (fwd+bwd) | peak MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for block in run["sizes"]:
        s = block["size"]
        label = f"T={s['T']} B={s['B']} I={s['I']} H={s['H']}"
        for rec in block["results"]:
            if "error" in rec or not rec["check"]["ok"]:
                why = rec.get("error", "rejected by the correctness check")
                out.append(f"| {label} | {rec['contender']} | {why} | | | | | | |")
                continue
            t = {p: rec["times"][p]["median_s"] * 1e3 for p in rec["times"]}
            r = rec["ratios"]
            mem = rec.get("peak_bytes")
            out.append(f"| {label} | {rec['contender']} | {t['fwd']:.3f} | {t['bwd']:.3f} | "
                       f"{t['fwdbwd']:.3f} | {rec['gflops']['fwdbwd']:.1f} | "
                       f"{100 * r['gemm_fwdbwd']:.0f}% | "
                       f"{_num(r.get('speedup_fwdbwd'), '.2f')}x vs {block['baseline']} | "
                       f"{_num(mem and mem / 2**20, '.1f')} |")
    return "\n".join(out) + "\n"


def write_json(run: dict, directory) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    stamp = run["machine"]["date"].replace(":", "").replace("-", "")[:15]
    path = d / f"{_cell(run)}-{run['name']}-{stamp}.json"
    path.write_text(json.dumps(run, indent=1) + "\n")
    return path
