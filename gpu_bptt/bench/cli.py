"""The `bench` subcommand of `gpu-bptt`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..progress import StatusLine
from .cells import CELLS
from .contenders import discover
from .report import markdown, table, write_json
from .runner import run_bench
from .sizes import GPU_PRESETS, PRESETS, parse_size

DEFAULT_OUT = Path("bench") / "results"
#: the numpy contender's BLAS thread limit when --blas-threads is not given (0: the BLAS's own):
#: LSTM and GRU as training runs them (gpu_bptt/train/loop.py holds the BLAS to 1 thread by
#: default); Elman as its committed results were measured
DEFAULT_BLAS_THREADS = {"elman": 0, "lstm": 1, "gru": 1}


def add_bench_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="time forward/backward of every backend against PyTorch, "
                                     "cuDNN, CuPy and JAX where installed",
                       description="Time the forward, backward and forward+backward of a "
                                   "cell (Elman, LSTM or GRU) by every contender installed here, "
                                   "after checking each against the float64 NumPy reference; "
                                   "table on stdout, JSON and plots under --out.")
    p.add_argument("--preset", action="append", choices=sorted(PRESETS),
                   help="size set (repeatable); default: cpu, or the GPU presets where a GPU is seen")
    p.add_argument("--cell", default="elman", metavar="CELL",
                   help=f"the cell timed: {', '.join(CELLS)} (default elman)")
    p.add_argument("--blas-threads", type=int, metavar="N",
                   help="hold the CPU BLAS to N threads while the numpy contender runs (0: the "
                        "BLAS's own); default: 1 for lstm and gru, as training does, the BLAS's "
                        "own for elman. Recorded in the JSON")
    p.add_argument("--size", action="append", type=_size, metavar="T,B,I,H",
                   help="a free size (repeatable)")
    p.add_argument("--contenders", metavar="A,B,...",
                   help="names or prefixes (e.g. numpy,torch,cuda); default: all for the device")
    p.add_argument("--list", action="store_true", help="list the contenders here and exit")
    p.add_argument("--tune", action="store_true",
                   help="data for the cuda backend's auto rules: every step kernel version and "
                        "the persistent algorithm at each (B, H) of a grid (or the --size "
                        "given), next to what auto picks")
    p.add_argument("--recompute", action="store_true",
                   help="memory='full' against memory='recompute' for --cell: time, memory held "
                        "between forward and backward and peak, measured and estimated, with "
                        "the ratios, at the --size given (default: the long-seq preset on a "
                        "GPU; T,B,I,H = 4096,8,256,256 on the CPU, with 1 BLAS thread unless "
                        "--blas-threads N)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15, help="timed calls per phase (median reported)")
    p.add_argument("--budget", type=float, default=20.0,
                   help="seconds per phase; fewer repeats (at least 3) when a call is slow")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the contender blocks this many times per size; median over all")
    p.add_argument("--pause", type=float, default=0.5, help="idle seconds between contenders")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for JSON and plots")
    p.add_argument("--no-json", action="store_true", help="print the table only")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write a Markdown table")
    p.add_argument("--quiet", action="store_true", help="no progress display on stderr")
    p.set_defaults(func=cmd_bench)
    return p


def _bad_argument(args):
    """The one-line message for an unusable option, or None; creates --out when JSON is written."""
    if _bad_cell(args):
        return _bad_cell(args)
    threads = args.blas_threads
    for option, value, ok, want in (("--blas-threads", threads, threads is None or threads >= 0,
                                     ">= 0"),
                                    ("--repeats", args.repeats, args.repeats >= 1, ">= 1"),
                                    ("--warmup", args.warmup, args.warmup >= 0, ">= 0"),
                                    ("--rounds", args.rounds, args.rounds >= 1, ">= 1"),
                                    ("--budget", args.budget, args.budget > 0, "> 0"),
                                    ("--pause", args.pause, args.pause >= 0, ">= 0")):
        if not ok:
            return f"{option}: must be {want}, got {value}"
    if args.markdown is not None and args.markdown.is_dir():
        return f"--markdown {args.markdown}: is a folder, not a file"
    if not args.no_json:
        if args.out.exists() and not args.out.is_dir():
            return f"--out {args.out}: is a file, not a folder"
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return f"--out {args.out}: cannot create the folder: {e.strerror or e}"
    return None


def _bad_cell(args):
    if args.cell not in CELLS:
        return f"--cell: expected one of {', '.join(CELLS)}, got {args.cell!r}"
    return None


def _size(text):
    """parse_size for argparse, whose message for a ValueError hides the reason."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("size: ")) from None


def cmd_bench(args) -> int:
    names = [n.strip() for n in args.contenders.split(",") if n.strip()] if args.contenders else None
    bad = _bad_cell(args) if args.list else _bad_argument(args)
    if bad:
        print(f"gpu-bptt bench: error: {bad}", file=sys.stderr)
        return 2
    if args.blas_threads is None:
        args.blas_threads = DEFAULT_BLAS_THREADS[args.cell]
    if args.list:
        found, skipped = discover(names, cell=args.cell)
        for c in found:
            print(f"{c.name:<28} {c.device}")
        for k, why in skipped.items():
            print(f"{k:<28} not here: {why}")
        return 0
    if args.tune:
        return cmd_tune(args)
    if args.recompute:
        return cmd_recompute(args)
    presets = args.preset or []
    if not presets and not args.size:
        gpu = any(c.device == "gpu" for c in discover(cell=args.cell)[0])
        presets = list(GPU_PRESETS) if gpu else ["cpu"]
    sizes = [s for name in presets for s in PRESETS[name][1]] + list(args.size or [])
    kinds = {PRESETS[name][0] for name in presets}
    device = kinds.pop() if len(kinds) == 1 and not args.size else None
    contenders, skipped = discover(names, device=device, cell=args.cell,
                                   blas_threads=args.blas_threads)
    if not contenders:
        print("no contender can run here: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
              file=sys.stderr)
        return 2
    run = _run(args, sizes, contenders, "+".join(presets) or "custom", skipped)
    print(table(run))
    return _save(args, run)


def _run(args, sizes, contenders, name, skipped):
    # A long run saves what it has after each size: a run cut short keeps its finished sizes.
    save = None if args.no_json else (lambda partial: write_json(partial, args.out))
    return run_bench(sizes, contenders, name=name, cell=args.cell, dtype=args.dtype, warmup=args.warmup,
                     repeats=args.repeats, budget_s=args.budget, pause_s=args.pause,
                     rounds=args.rounds, skipped=skipped,
                     progress=StatusLine(enabled=not args.quiet), on_size=save)


def _save(args, run, extra_markdown="") -> int:
    """JSON, plots and Markdown as asked; exit status 1 when a contender failed its check."""
    if not args.no_json:
        path = write_json(run, args.out)
        print(f"wrote {path}")
        if not args.no_plot:
            try:
                from .plots import write_plots

                for f in write_plots(run, path.with_suffix("")):
                    print(f"wrote {f}")
            except ImportError:
                print("plots skipped: matplotlib is not installed (pip install gpu_bptt[plot])")
    if args.markdown:
        args.markdown.write_text(markdown(run) + extra_markdown)
        print(f"wrote {args.markdown}")
    rejected = [r["contender"] for b in run["sizes"] for r in b["results"]
                if not r["check"]["ok"] and not r.get("not_applicable")]
    return 1 if rejected else 0


def cmd_recompute(args) -> int:
    import json

    from ..backends import available_backends
    from . import long_seq

    from ..blas_threads import blas_threads

    backend = "numpy" if available_backends()["cuda"] else "cuda"
    sizes = list(args.size or (PRESETS["long-seq"][1] if backend == "cuda" else long_seq.CPU_SIZES))
    threads = args.blas_threads or 1  # as training runs (a step's products are small)
    with blas_threads(threads):
        result = long_seq.run(args.cell, sizes, args.dtype, backend, repeats=args.repeats)
    result["blas_threads"] = threads
    text = long_seq.table(result)
    print(text)
    if not args.no_json:
        path = args.out / f"recompute-{args.cell}-{backend}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
    if args.markdown:
        args.markdown.write_text(text + "\n")
        print(f"wrote {args.markdown}")
    return 0


def cmd_tune(args) -> int:
    from ..backends import available_backends
    from . import tune

    reason = available_backends()["cuda"]
    if reason:
        print(f"--tune needs the cuda backend: {reason}", file=sys.stderr)
        return 2
    from ..backends.cuda import CudaBackend

    sizes = list(args.size or tune.TUNE_SIZES)
    run = _run(args, sizes, tune.tune_contenders(CudaBackend), "tune", {})
    run["tune"] = tune.summarize(run, CudaBackend(step="auto"))
    print(table(run))
    text = tune.grid(run["tune"])
    print(text)
    return _save(args, run, extra_markdown="\n```\n" + text + "\n```\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-bptt-bench")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
