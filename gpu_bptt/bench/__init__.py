"""Benchmarks of a cell's forward and BPTT backward (Elman, LSTM or GRU: cells.py): every backend
and kernel version of ours against the best peers that are installed, in one run, as ratios (see
bench/README.md).

`gpu-bptt bench` (or `python bench/bench_elman.py`) runs it; `run_bench` is the library entry.
"""
from .cli import add_bench_parser, cmd_bench, main
from .contenders import discover
from .runner import run_bench
from .sizes import PRESETS, Size, parse_size

__all__ = ["PRESETS", "Size", "add_bench_parser", "cmd_bench", "discover", "main", "parse_size",
           "run_bench"]
