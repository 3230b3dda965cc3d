"""Launches of a sanitizer build (AddressSanitizer + UBSan), in a child process.

The sanitizer runtime must be loaded before anything else in a process, and its reports end the
process; so the parent pickles the arguments to a child interpreter with libasan preloaded, which
runs the launch, and the parent copies the results back, or raises KernelFault(kind="sanitizer")
with the report when the child ended (the next launch starts a new child). Meant for tests.
"""
from __future__ import annotations

import atexit
import ctypes
import functools
import os
import pickle
import re
import select
import subprocess
import sys
import tempfile
import threading

import numpy as np

from . import build
from .native import KernelFault, Marshalled, fault, launch, load_library


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


class _Child:
    """A child interpreter with the sanitizer runtime preloaded, running launches sent over a pipe
    until a report ends it (starting one costs about 0.25 s, a launch in it milliseconds)."""

    def __init__(self):
        env = dict(os.environ)
        env["LD_PRELOAD"] = asan_runtime()
        env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:verify_asan_link_order=0"
        env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "gpu_bptt.emulator.sanitized"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env)
        self.timed_out = False

    def run(self, request, timeout):
        """The child's answer, or None when it ended (a sanitizer report) or timed out."""
        self.stderr.seek(0)
        self.stderr.truncate()
        try:
            pickle.dump(request, self.proc.stdin)
            self.proc.stdin.flush()
            if select.select([self.proc.stdout], [], [], timeout)[0]:
                return pickle.load(self.proc.stdout)
            self.timed_out = True
        except (BrokenPipeError, EOFError, pickle.UnpicklingError):
            pass
        self.close()
        return None

    def report(self):
        """What the child wrote to stderr during the last launch (the file is closed after)."""
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace")
        self.stderr.close()
        return text

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


_child = None
_lock = threading.Lock()


def _close_child():
    if _child is not None:
        _child.close()
        _child.stderr.close()


atexit.register(_close_child)


def run_sanitized(kernel, args, grid, block, shared_mem, coop, order, seed, timeout):
    global _child
    so = kernel.module.compile(sanitize=True)
    request = dict(so=so, name=kernel.name, grid=grid, block=block, shared_mem=shared_mem,
                   coop=coop, order=order, seed=seed, timeout=timeout, args=list(args))
    with _lock:
        if _child is None or _child.proc.poll() is not None:
            _child = _Child()
        result = _child.run(request, timeout + 60)
        if result is None:
            child, _child = _child, None
            if child.timed_out:
                child.stderr.close()
                raise KernelFault(f"kernel {kernel.name!r}: the sanitizer build did not answer "
                                  f"within {timeout + 60:.0f} s", "timeout")
            status, report = child.proc.returncode, child.report()
            raise KernelFault(f"kernel {kernel.name!r}: the sanitizer build reported an error "
                              f"(exit status {status}):\n{_report(report)}", "sanitizer")
    if result["rc"]:
        raise fault(kernel.name, result["rc"], result["msg"])
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


def _launch_one(d):
    lib, entries = load_library(d["so"])
    address, params = entries[d["name"]]
    m = Marshalled(d["name"], params, [None] * len(params), d["args"])
    asan = ctypes.CDLL(None)  # the preloaded runtime
    _poison_slack(m, asan.__asan_poison_memory_region)
    rc, msg = launch(lib, address, d["grid"], d["block"], d["shared_mem"], m.argv, d["coop"],
                     d["order"], d["seed"], d["timeout"])
    _poison_slack(m, asan.__asan_unpoison_memory_region)
    m.finish()
    return dict(rc=rc, msg=msg, args=[a if isinstance(a, np.ndarray) else None for a in d["args"]])


def _serve():
    """The child: one launch per request on stdin, one answer each on the original stdout (a
    kernel's printf goes to stderr, so it cannot garble the answers)."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    while True:
        try:
            d = pickle.load(requests)
        except EOFError:
            return
        pickle.dump(_launch_one(d), answers)
        answers.flush()


if __name__ == "__main__":
    _serve()
