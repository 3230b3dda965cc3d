"""Kernel sources and the one cached loader for kernels/ (docs/architecture.md §4).

Sources are read from the installed package `gpu_bptt.kernels` (the wheel ships kernels/*.cu and
*.cuh there), or from the checkout's top-level kernels/ when running from source. Local
`#include "x.cuh"` lines are expanded in Python, so the text handed to NVRTC (or to the CPU
emulator) is self-contained and needs no include path.

The loader takes any class with the `cupy.RawModule` interface; nothing compiles until a kernel is
first asked for, and each module is built once per (file, options, device).
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np

KERNEL_PACKAGE = "gpu_bptt.kernels"
_CHECKOUT_DIR = Path(__file__).resolve().parents[3] / "kernels"
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')

#: compile options for every kernel file (the NVRTC test uses the same)
OPTIONS = ("-std=c++17",)
#: what cupy.RawModule adds to every NVRTC build itself (CuPy 14), so that the CPU-side compile
#: checks build the code a GPU runs
CUPY_ADDED_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")
STEP_VERSIONS = ("v1", "v2", "v3", "v4")
PERSIST_VERSIONS = ("v1", "v2")
GEMM_VARIANTS = ((False, False), (True, False), (False, True))  # (TA, TB): NN, TN, NT
# Files whose kernels synchronize the grid: built for, and launched as, cooperative launches.
COOPERATIVE_FILES = ("elman_persistent_fwd.cu", "elman_persistent_bwd.cu")
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


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


def ctype(dtype) -> str:
    """The C type of a float dtype; TypeError for anything else."""
    dt = np.dtype(dtype)
    if dt not in _CTYPES:
        raise TypeError(f"dtype: kernels take float32 or float64, got {dt}")
    return _CTYPES[dt]


def template_name(fn: str, *params) -> str:
    """`fn<p1, p2>` with bools as true/false and dtypes as C types: the one spelling of a template
    instance, used both for name_expressions and for get_function."""
    def spell(p):
        if isinstance(p, bool):
            return "true" if p else "false"
        if isinstance(p, str):
            return p
        return ctype(p)
    return f"{fn}<{', '.join(spell(p) for p in params)}>"


def name_expressions(file: str) -> tuple:
    """Every template instance a .cu file provides (all are compiled together)."""
    dts = tuple(_CTYPES)
    if file in ("elman_fwd_step.cu", "elman_bwd_step.cu"):
        stem = file[:-3]
        return tuple(template_name(f"{stem}_{v}", dt) for v in STEP_VERSIONS for dt in dts)
    if file == "gemm.cu":
        return tuple(template_name("gemm_v1", dt, ta, tb) for dt in dts for ta, tb in GEMM_VARIANTS)
    if file == "column_sum.cu":
        return tuple(template_name("column_sum_v1", dt) for dt in dts)
    if file in COOPERATIVE_FILES:
        return tuple(template_name(f"{file[:-3]}_{v}", dt) for v in PERSIST_VERSIONS for dt in dts)
    raise ValueError(f"file: no kernel list for {file!r}")


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
            extra = {"enable_cooperative_groups": True} if file in COOPERATIVE_FILES else {}
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
