"""Launches of a sanitizer build (AddressSanitizer + UBSan), each in a child process.

The sanitizer runtime must be loaded before anything else in a process, and its reports end the
process; so the parent pickles the arguments, a fresh interpreter with libasan preloaded runs the
launch, and the parent copies the results back or raises KernelFault(kind="sanitizer") with the
report. Slow (about a second a launch) and meant for tests.
"""
from __future__ import annotations

import ctypes
import functools
import os
import pickle
import re
import subprocess
import sys
import tempfile

import numpy as np

from . import build
from .module import KernelFault, Marshalled, _FAULTS, launch, load_library


@functools.lru_cache(maxsize=None)
def asan_runtime():
    out = subprocess.run([build.compiler(), "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = out.stdout.strip()
    if out.returncode != 0 or not os.path.isabs(path) or not os.path.exists(path):
        raise RuntimeError(f"the sanitizer build needs libasan, which {build.compiler()} cannot find")
    return os.path.realpath(path)


def _report(stderr):
    """The useful part of a sanitizer report: from its first error line, at most 40 lines."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if "ERROR: AddressSanitizer" in line or "runtime error:" in line or "ERROR: UndefinedBehavior" in line:
            out = []
            for line in lines[i:i + 60]:
                if re.search(r"emu::|fiber_main|emu_ctx_start", line):
                    continue  # frames of the emulator itself, below the kernel
                out.append(line)
            return "\n".join(out[:40])
    return "\n".join(lines[-40:])


def run_sanitized(kernel, args, grid, block, shared_mem, coop, order, seed, timeout):
    so = kernel.module.compile(sanitize=True)
    with tempfile.TemporaryDirectory(prefix="gpu_bptt_emu_") as tmp:
        inp, outp = os.path.join(tmp, "in.pkl"), os.path.join(tmp, "out.pkl")
        with open(inp, "wb") as f:
            pickle.dump(dict(so=so, name=kernel.name, grid=grid, block=block, shared_mem=shared_mem,
                             coop=coop, order=order, seed=seed, timeout=timeout, args=list(args)), f)
        env = dict(os.environ)
        env["LD_PRELOAD"] = asan_runtime()
        env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:verify_asan_link_order=0"
        env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run([sys.executable, "-m", "gpu_bptt.emulator.sanitized", inp, outp],
                              capture_output=True, text=True, env=env, timeout=timeout + 60)
        if proc.returncode != 0 or not os.path.exists(outp):
            raise KernelFault(f"kernel {kernel.name!r}: the sanitizer build reported an error "
                              f"(exit status {proc.returncode}):\n{_report(proc.stderr)}", "sanitizer")
        with open(outp, "rb") as f:
            result = pickle.load(f)
    if result["rc"]:
        raise KernelFault(f"kernel {kernel.name!r}: {result['msg']}", _FAULTS.get(result["rc"], "internal"))
    for p, original, back in zip(kernel.params, args, result["args"]):
        if p["kind"] == "p" and not p["const"] and isinstance(original, np.ndarray) and original.flags.writeable:
            original[...] = back


def _poison_slack(m, poison):
    """Poison the bytes around each aligned copy of an argument (its allocation is larger, for the
    alignment), so that a read just past an array is reported as it is past a malloc'd one."""
    for raw, copy in m.aligned:
        start, end = raw.ctypes.data, raw.ctypes.data + raw.nbytes
        lo, hi = copy.ctypes.data, copy.ctypes.data + copy.nbytes
        poison(ctypes.c_void_p(start), ctypes.c_size_t(lo - start))
        poison(ctypes.c_void_p(hi), ctypes.c_size_t(end - hi))


def _child(inp, outp):
    with open(inp, "rb") as f:
        d = pickle.load(f)
    lib, entries = load_library(d["so"])
    address, params = entries[d["name"]]
    m = Marshalled(d["name"], params, [None] * len(params), d["args"])
    asan = ctypes.CDLL(None)  # the preloaded runtime
    _poison_slack(m, asan.__asan_poison_memory_region)
    rc, msg = launch(lib, address, d["grid"], d["block"], d["shared_mem"], m.argv, d["coop"],
                     d["order"], d["seed"], d["timeout"])
    _poison_slack(m, asan.__asan_unpoison_memory_region)
    m.finish()
    with open(outp, "wb") as f:
        pickle.dump(dict(rc=rc, msg=msg, args=[a if isinstance(a, np.ndarray) else None for a in d["args"]]), f)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
