"""The `gpu-bptt` command."""
from __future__ import annotations

import argparse
import os
import platform
import signal
import sys

from .bench import add_bench_parser
from .blas_threads import blas_summary
from .train import add_train_parser


def cmd_info(args) -> int:
    import numpy as np

    import gpu_bptt
    from gpu_bptt.backends import available_backends, get_backend
    from gpu_bptt.train import CELLS

    print(f"gpu_bptt {gpu_bptt.__version__}")
    print(f"python   {platform.python_version()} ({platform.machine()})")
    print(f"numpy    {np.__version__}; BLAS: {blas_summary()}")
    print(f"cells:   {', '.join(CELLS)} (gpu_bptt.nn levels; gpu-bptt train --cell)")
    print("backends:")
    status = available_backends()
    for name, reason in status.items():
        if name == "cpu" and reason is None:  # the compiled loops: Numba, and what is cached
            from gpu_bptt.backends.compiled import describe

            reason, state = None, f"available: {describe()}"
        else:
            state = "available" if reason is None else "unavailable: " + reason
        print(f"  {name:<9} {state}")
    try:
        auto = get_backend(None).name
    except Exception as e:  # e.g. $GPU_BPTT_BACKEND names an unavailable backend
        auto = f"error: {e}"
    print(f"default backend: {auto}")
    if status.get("cuda") is None:
        from gpu_bptt.backends.cuda import backend as cuda, persistent

        for key, value in cuda.device_report().items():
            print(f"  {key:<18} {value}")
        failures = {f: e for f, e in cuda.compile_report().items() if e}
        print(f"  kernels: {'every kernel compiles' if not failures else 'COMPILE ERRORS'}")
        for f, e in failures.items():
            print(f"    {f}: {e}")
        bk = get_backend("cuda")
        print(f"  options: gemm={bk.gemm} step={bk.step} persist={bk.persist}")
        for line in persistent.describe(bk.persistent_limits(), bk.persist,
                                        persistent.unavailable_reason(bk)):
            print(f"  {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu-bptt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="version, backends (and why any is unavailable), BLAS, device")
    p.set_defaults(func=cmd_info)
    add_train_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (`gpu-bptt info | head`): end quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
