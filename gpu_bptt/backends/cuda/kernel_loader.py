"""Kernel sources and the one cached loader for kernels/ (docs/architecture.md §4).

Sources are read from the installed package `gpu_bptt.kernels` (the wheel ships kernels/*.cu and
*.cuh there), or from the checkout's top-level kernels/ when running from source. Local
`#include "x.cuh"` lines are expanded in Python, so the text handed to NVRTC (or to the CPU
emulator) is self-contained and needs no include path.

Which kernels a file provides, and which files are cooperative, is the registry's (registry.py).
The loader takes any class with the `cupy.RawModule` interface; nothing compiles until a kernel is
first asked for, and each module is built once per (file, options, device).
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from . import registry

KERNEL_PACKAGE = "gpu_bptt.kernels"
_CHECKOUT_DIR = Path(__file__).resolve().parents[3] / "kernels"
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')

#: compile options for every kernel file (the NVRTC test uses the same)
OPTIONS = ("-std=c++17",)
#: what cupy.RawModule adds to every NVRTC build itself (CuPy 14), so that the CPU-side compile
#: checks build the code a GPU runs
CUPY_ADDED_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")


def kernel_dir():
    """The directory (a Traversable) holding the kernel sources: the installed package's, else
    the checkout's kernels/."""
    try:
        d = resources.files(KERNEL_PACKAGE)
        if d.joinpath("elman_fwd_step.cu").is_file():
            return d
    except (ModuleNotFoundError, TypeError):
        pass
    return _CHECKOUT_DIR


def kernel_files() -> list:
    """Names of every .cu file (one compiled module each), sorted."""
    return sorted(p.name for p in kernel_dir().iterdir() if p.name.endswith(".cu"))


def read_kernel(name: str) -> str:
    """The raw text of kernels/`name` (.cu or .cuh)."""
    f = kernel_dir().joinpath(name)
    if not f.is_file():
        raise FileNotFoundError(f"kernel source {name!r} not found in {kernel_dir()}")
    return f.read_text(encoding="utf-8")


def kernel_source(name: str, _seen=None) -> str:
    """kernels/`name` with its local includes expanded once each (so `#pragma once` holds)."""
    seen = set() if _seen is None else _seen
    out = []
    for line in read_kernel(name).splitlines():
        m = _INCLUDE.match(line)
        if m:
            inc = m.group(1)
            if inc not in seen:
                seen.add(inc)
                out.append(kernel_source(inc, seen))
            continue
        if line.strip() != "#pragma once":
            out.append(line)
    return "\n".join(out) + "\n"


def name_expressions(file: str) -> tuple:
    """Every template instance a .cu file provides (all are compiled together)."""
    return registry.family(file).name_expressions()


_MODULES: dict = {}  # (loader kind, file, options, device) -> module


class KernelLoader:
    """Builds and caches RawModule-like objects for kernels/ files.

    raw_module: a class with the cupy.RawModule interface (cupy.RawModule, or the emulator's).
    device: a function returning the current device's key (part of the cache key).
    kind: names the loader in the cache key, so CuPy and emulator modules never mix.
    """

    def __init__(self, raw_module, device, kind: str, options: tuple = OPTIONS):
        self.raw_module = raw_module
        self.device = device
        self.kind = kind
        self.options = tuple(options)

    def module(self, file: str):
        key = (self.kind, file, self.options, self.device())
        mod = _MODULES.get(key)
        if mod is None:
            extra = {"enable_cooperative_groups": True} if registry.family(file).cooperative else {}
            mod = self.raw_module(code=kernel_source(file), options=self.options,
                                  name_expressions=name_expressions(file), **extra)
            _MODULES[key] = mod
        return mod

    def function(self, file: str, name: str):
        return self.module(file).get_function(name)

    def compile_all(self) -> dict:
        """{file: None if every kernel in it compiles and loads, else the error text}."""
        report = {}
        for file in kernel_files():
            try:
                for name in name_expressions(file):
                    self.function(file, name)
                report[file] = None
            except Exception as e:  # the report says what failed; callers decide
                report[file] = f"{type(e).__name__}: {e}"
        return report
