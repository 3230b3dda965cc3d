"""RawModule / RawKernel with CuPy's interface, running kernels on NumPy arrays (docs/architecture.md §3).

The launch itself (arguments marshalled for the built library, fault codes) is native.py's, which
the sanitizer's child process (sanitized.py) uses too."""
from __future__ import annotations

import os

import numpy as np

from . import build
from .native import ORDERS, LaunchError, Marshalled, fault, launch, load_library
from .sanitized import run_sanitized

MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK_DIM = (1024, 1024, 64)
MAX_GRID_DIM = (2**31 - 1, 65535, 65535)
DEFAULT_DYN_SMEM = 48 * 1024            # a launch gets this much dynamic shared memory by default
MAX_DYN_SMEM = build.DYN_SMEM_CAPACITY  # ... and up to this after opting in (227 KB on sm_90)


def _env_order(order):
    order = order or os.environ.get("GPU_BPTT_EMU_ORDER") or "forward"
    order = order.strip().lower()
    if order not in ORDERS:
        raise ValueError(f"emulator thread order: expected one of {tuple(ORDERS)}, got {order!r} "
                         "(keyword order= or $GPU_BPTT_EMU_ORDER)")
    return order


def _env_seed(seed):
    if seed is None:
        seed = os.environ.get("GPU_BPTT_EMU_SEED", "0")
    return int(seed) & (2**64 - 1)


def env_flag(value, var):
    if value is not None:
        return bool(value)
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")


def _dims(value, what, kernel):
    if isinstance(value, (int, np.integer)):
        value = (int(value),)
    try:
        dims = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"kernel {kernel!r}: {what} must be an int or a tuple of up to 3 ints, "
                        f"got {value!r}") from None
    if not 1 <= len(dims) <= 3 or any(d < 1 for d in dims):
        raise LaunchError(f"kernel {kernel!r}: {what} {value!r} must have 1 to 3 positive sizes")
    return dims + (1,) * (3 - len(dims))


class RawKernel:
    """One kernel of a RawModule: kernel(grid, block, args, shared_mem=0)."""

    def __init__(self, module, name, address, params, names):
        self.module = module
        self.name = name
        self._address = address
        self.params = params
        self.param_names = names
        self.max_dynamic_shared_size_bytes = DEFAULT_DYN_SMEM

    @property
    def num_params(self):
        return len(self.params)

    def __repr__(self):
        return f"<emulator RawKernel {self.name}>"

    def _check(self, grid, block, shared_mem, coop):
        grid = _dims(grid, "grid", self.name)
        block = _dims(block, "block", self.name)
        n = block[0] * block[1] * block[2]
        if n > MAX_THREADS_PER_BLOCK:
            raise LaunchError(f"kernel {self.name!r}: block {block} has {n} threads; a block may have "
                              f"at most {MAX_THREADS_PER_BLOCK}")
        for i, (b, lim) in enumerate(zip(block, MAX_BLOCK_DIM)):
            if b > lim:
                raise LaunchError(f"kernel {self.name!r}: block dimension {'xyz'[i]} = {b} exceeds {lim}")
        for i, (g, lim) in enumerate(zip(grid, MAX_GRID_DIM)):
            if g > lim:
                raise LaunchError(f"kernel {self.name!r}: grid dimension {'xyz'[i]} = {g} exceeds {lim}")
        shared_mem = int(shared_mem)
        limit = int(self.max_dynamic_shared_size_bytes)
        if shared_mem < 0:
            raise LaunchError(f"kernel {self.name!r}: shared_mem must be >= 0, got {shared_mem}")
        if limit > MAX_DYN_SMEM:
            raise LaunchError(f"kernel {self.name!r}: max_dynamic_shared_size_bytes = {limit} exceeds "
                              f"the device limit of {MAX_DYN_SMEM} bytes")
        if shared_mem > limit:
            raise LaunchError(f"kernel {self.name!r}: shared_mem = {shared_mem} bytes of dynamic shared "
                              f"memory exceeds the limit of {limit} bytes (48 KB unless "
                              "max_dynamic_shared_size_bytes is raised)")
        if coop:
            nb = grid[0] * grid[1] * grid[2]
            cap = int(os.environ.get("GPU_BPTT_EMU_MAX_COOP_BLOCKS", "1024"))
            if nb > cap:
                raise LaunchError(f"kernel {self.name!r}: a cooperative launch of {nb} blocks exceeds "
                                  f"the emulator's limit of {cap} co-resident blocks")
        return grid, block, shared_mem

    def __call__(self, grid, block, args, *, shared_mem=0, enable_cooperative_groups=None,
                 order=None, seed=None, timeout=None):
        m = self.module
        coop = m.enable_cooperative_groups if enable_cooperative_groups is None else bool(enable_cooperative_groups)
        grid, block, shared_mem = self._check(grid, block, shared_mem, coop)
        order = _env_order(order or m.order)
        seed = _env_seed(seed if seed is not None else m.seed)
        if timeout is None:
            timeout = float(os.environ.get("GPU_BPTT_EMU_TIMEOUT", "120"))
        marshalled = Marshalled(self.name, self.params, self.param_names, args)
        if m.sanitize:
            run_sanitized(self, args, grid, block, shared_mem, coop, order, seed, timeout)
            return
        rc, msg = launch(m.library(), self._address, grid, block, shared_mem, marshalled.argv, coop,
                         order, seed, timeout)
        if rc:
            raise fault(self.name, rc, msg)
        marshalled.finish()


class RawModule:
    """CuPy's RawModule for the CPU: the unchanged CUDA source is compiled with g++ and the
    kernels run on NumPy arrays.

    code / path: the CUDA source, or a .cu file (whose directory is searched for "x.cuh").
    options: NVRTC-style options; -I/--include-path and -D are honoured, GPU-only ones ignored.
    name_expressions: template instances to build, e.g. ("step<float>", "step<double>").
    enable_cooperative_groups: launches are cooperative (all blocks run at once; grid.sync() works).
    order, seed: thread order "forward" | "reverse" | "random" | "warps" (default
        $GPU_BPTT_EMU_ORDER, else forward) and the random orders' seed (default $GPU_BPTT_EMU_SEED,
        else 0). "warps" runs one warp, in a random order of warps, as far as it can go before the
        next (most skew between warps).
    sanitize: build with AddressSanitizer and UBSan and run each launch in a child process
        (default $GPU_BPTT_EMU_SANITIZE).
    backend, translate_cucomplex, jitify: accepted for CuPy compatibility and ignored.
    """

    def __init__(self, code=None, *, path=None, options=(), name_expressions=None,
                 enable_cooperative_groups=False, order=None, seed=None, sanitize=None,
                 backend=None, translate_cucomplex=False, jitify=False):
        if (code is None) == (path is None):
            raise TypeError("RawModule: give exactly one of code= or path=")
        if path is not None:
            if not str(path).endswith((".cu", ".cuh", ".cpp", ".cc")):
                raise ValueError(f"RawModule: the emulator runs CUDA source, not {path!r} "
                                 "(cubin/ptx cannot run on the CPU)")
            with open(path, encoding="utf-8") as f:
                code = f.read()
            self.display_name = os.path.abspath(path)
            self.src_dir = os.path.dirname(self.display_name)
        else:
            self.display_name = "kernel.cu"
            self.src_dir = None
        if order is not None:
            _env_order(order)
        self.code = code
        self.options = tuple(options)
        self.name_expressions = tuple(name_expressions or ())
        self.enable_cooperative_groups = bool(enable_cooperative_groups)
        self.order = order
        self.seed = seed
        self.sanitize = env_flag(sanitize, "GPU_BPTT_EMU_SANITIZE")
        self.kernels_in_source = build.find_kernels(code)
        self._paths = {}
        self._kernels = {}

    def _entries(self):
        plain = [n for n, (_, tmpl) in self.kernels_in_source.items() if not tmpl]
        return plain + [e for e in self.name_expressions if e not in plain]

    def compile(self, sanitize=False):
        """Build (or find in the cache) the shared library; returns its path. The sanitizer build
        is only ever loaded by a child process (see sanitized.py); kernel lookup and argument
        checks use the plain build."""
        key = bool(sanitize)
        if key not in self._paths:
            self._paths[key] = build.build(self.code, display_name=self.display_name, src_dir=self.src_dir,
                                           options=self.options, entries=self._entries(), sanitize=key)
        return self._paths[key]

    def library(self):
        return load_library(self.compile())[0]

    def get_function(self, name):
        if name in self._kernels:
            return self._kernels[name]
        _, entries = load_library(self.compile())
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            hint = (" (a template kernel must be listed in name_expressions)"
                    if name.split("<")[0] in self.kernels_in_source else "")
            raise LookupError(f"no kernel named {name!r} in {self.display_name}{hint}; kernels: {known}")
        address, params = entries[name]
        base = name.split("<")[0].strip()
        names = list(self.kernels_in_source.get(base, ([], False))[0])
        names = (names + [None] * len(params))[:len(params)]
        k = RawKernel(self, name, address, params, names)
        self._kernels[name] = k
        return k
