#!/usr/bin/env python
"""Elman, LSTM and GRU forward/backward benchmarks from a checkout; the options of `gpu-bptt
bench` (--help).

    python bench/bench_elman.py                      # the cpu preset (GPU presets where a GPU is seen)
    python bench/bench_elman.py --preset small-batch --contenders cuda,torch
    python bench/bench_elman.py --size 64,16,128,128 --repeats 30
    python bench/bench_elman.py --cell lstm          # the LSTM (or gru)

Results (JSON, plots) go to bench/results/ beside this file unless --out says otherwise.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu_bptt.bench import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        argv += ["--out", str(ROOT / "bench" / "results")]
    sys.exit(main(argv))
