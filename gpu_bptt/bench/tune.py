"""The data for the cuda backend's "auto" rules: at each (B, H) of a grid, every step kernel
version and every persistent kernel version, timed as the benchmark times them, next to what "auto"
picks there. The rules themselves (backends/cuda/rules.py) are edited by hand from
what this shows; nothing is tuned at run time.

Products outside the time loop use cuBLAS in every variant and I is small, so the differences are
the recurrence's. Times compared: forward+backward medians.
"""
from __future__ import annotations

import numpy as np

from .contenders import Ours
from .sizes import Size

TUNE_T, TUNE_I = 128, 64
TUNE_B = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TUNE_H = (256, 512, 1024, 2048)
#: every (B, H) of the grid, H-major
TUNE_SIZES = [Size(TUNE_T, B, TUNE_I, H) for H in TUNE_H for B in TUNE_B]
#: "auto" counts as well chosen when it is within this fraction of the fastest variant (run-to-run
#: differences between equal kernels are a few percent)
LOSS_OK = 0.10


def tune_contenders(make_backend, device="gpu") -> list:
    """Every step and persistent kernel version, then "auto" itself (the backend's defaults), all
    with cuBLAS outside the loop.
    make_backend: the CudaBackend class (or the EmulatorBackend, for tests)."""
    from ..backends.cuda import backend as cuda

    def variant(label, algo, step="auto", persist=None):
        options = dict(gemm="cublas", step=step, persist=persist or cuda.PERSIST_CHOICES[0])
        return Ours(f"cuda[{label}]", make_backend, algo=algo, device=device, backend_options=options)

    out = [variant(f"step,{v}", "step", step=v) for v in cuda.STEP_VERSIONS]
    out += [variant(f"persistent,{v}", "persistent", persist=v)
            for v in sorted(cuda.PERSIST_CHOICES)]
    out.append(variant("auto", "auto"))
    return out


def auto_choice(backend, size, dtype) -> str:
    """The variant label that "auto" runs at `size` on `backend` (its options at their defaults)."""
    algo = backend.resolve_algo("auto", size.T, size.B, size.H, np.dtype(dtype)).algo
    if algo == "persistent":
        return f"persistent,{backend.persist}"
    return f"step,{backend.step_version(size.B, size.H)}"


def summarize(run, backend) -> list:
    """Per size: the fastest variant, what auto picks, and how much slower auto was than the best.
    `backend`: a backend of the kind measured, with its step option at auto (gives auto's pick)."""
    rows = []
    for block in run["sizes"]:
        size = Size(**block["size"])
        times = {}
        for rec in block["results"]:
            label = rec["contender"][len("cuda["):-1]
            if "times" in rec:
                times[label] = rec["times"]["fwdbwd"]["median_s"]
        variants = {k: v for k, v in times.items() if k != "auto"}
        row = {"size": block["size"], "times_s": times,
               "auto_picks": auto_choice(backend, size, run["dtype"])}
        if variants:
            best = min(variants, key=variants.get)
            row.update(best=best, best_s=variants[best])
            if "auto" in times:
                row["auto_loss"] = times["auto"] / variants[best] - 1
        rows.append(row)
    return rows


def short(label) -> str:
    """'step,v3' -> 's3', 'persistent,v2' -> 'p2': the grid's cell names."""
    algo, _, version = label.partition(",")
    return algo[0] + version.lstrip("v")


def grid(rows) -> str:
    """Rows H, columns B; each cell the fastest variant, '*' where auto lost more than LOSS_OK."""
    Bs = sorted({r["size"]["B"] for r in rows})
    Hs = sorted({r["size"]["H"] for r in rows})
    cell = {(r["size"]["B"], r["size"]["H"]): r for r in rows}
    width, corner = 9, "H \\ B"
    lines = ["fastest variant (fwd+bwd) by H (rows) and B (columns): sN = step,vN, pN = "
             f"persistent,vN; '*': auto was more than {LOSS_OK:.0%} slower (its pick in brackets)",
             f"{corner:>6} " + "".join(f"{b:>{width}}" for b in Bs)]
    for h in Hs:
        out = []
        for b in Bs:
            r = cell.get((b, h))
            text = "-" if r is None or "best" not in r else short(r["best"])
            if r is not None and r.get("auto_loss", 0.0) > LOSS_OK:
                text = f"*{text}[{short(r['auto_picks'])}]"
            out.append(f"{text:>{width}}")
        lines.append(f"{h:>6} " + "".join(out))
    losses = [r["auto_loss"] for r in rows if "auto_loss" in r]
    if losses:
        bad = sum(x > LOSS_OK for x in losses)
        lines.append(f"auto within {LOSS_OK:.0%} of the fastest at {len(losses) - bad} of "
                     f"{len(losses)} sizes; worst loss {max(losses):.0%}")
    return "\n".join(lines)
