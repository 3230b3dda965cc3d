"""RawModule / RawKernel with CuPy's interface, running kernels on NumPy arrays (docs/architecture.md §3)."""
from __future__ import annotations

import ctypes
import os

import numpy as np

from . import build

ORDERS = {"forward": 0, "reverse": 1, "random": 2, "warps": 3}
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK_DIM = (1024, 1024, 64)
MAX_GRID_DIM = (2**31 - 1, 65535, 65535)
DEFAULT_DYN_SMEM = 48 * 1024            # a launch gets this much dynamic shared memory by default
MAX_DYN_SMEM = build.DYN_SMEM_CAPACITY  # ... and up to this after opting in (227 KB on sm_90)
ALIGN = 256                             # cudaMalloc's alignment


class EmulatorError(RuntimeError):
    """Base class of the emulator's errors."""


class LaunchError(EmulatorError, ValueError):
    """A launch configuration a GPU would refuse (too many threads, too much shared memory)."""


class KernelFault(EmulatorError):
    """The kernel did something a GPU would hang or fail on. `kind` is one of: divergent_barrier,
    deadlock, grid_sync, timeout, trap, internal, sanitizer."""

    def __init__(self, message, kind):
        super().__init__(message)
        self.kind = kind


_FAULTS = {1: "divergent_barrier", 2: "deadlock", 3: "grid_sync", 4: "timeout", 5: "trap", 6: "internal"}


class _Param(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_char), ("base", ctypes.c_char), ("is_const", ctypes.c_short),
                ("size", ctypes.c_int), ("cname", ctypes.c_char_p)]


class _Entry(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("invoke", ctypes.c_void_p), ("nparams", ctypes.c_int),
                ("params", ctypes.POINTER(_Param))]


_libs = {}


def load_library(path):
    """(CDLL, {entry name: (entry address, [param dicts])}) for a built module, loaded once."""
    if path in _libs:
        return _libs[path]
    lib = ctypes.CDLL(path)
    lib.emu_entries.restype = ctypes.POINTER(_Entry)
    lib.emu_entries.argtypes = [ctypes.POINTER(ctypes.c_int)]
    lib.emu_launch.restype = ctypes.c_int
    lib.emu_launch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                               ctypes.c_ulonglong, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                               ctypes.c_int, ctypes.c_ulonglong, ctypes.c_double, ctypes.c_char_p,
                               ctypes.c_size_t]
    n = ctypes.c_int()
    table = lib.emu_entries(ctypes.byref(n))
    entries = {}
    for i in range(n.value):
        e = table[i]
        params = [dict(kind=e.params[j].kind.decode(), base=e.params[j].base.decode(),
                       const=bool(e.params[j].is_const), size=e.params[j].size,
                       cname=e.params[j].cname.decode()) for j in range(e.nparams)]
        entries[e.name.decode()] = (ctypes.addressof(e), params)
    _libs[path] = (lib, entries)
    return _libs[path]


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


def _dtype_ok(p, dtype):
    """Does an array of `dtype` fit a pointer parameter described by `p`?"""
    if p["base"] == "v" or p["size"] == 1:
        return True  # void* and byte pointers take any buffer
    if p["base"] == "s":  # vector types take arrays of their element type; other structs anything
        element = {"float2": "float32", "float4": "float32", "double2": "float64"}.get(p["cname"])
        return element is None or dtype == np.dtype(element)
    kinds = {"f": "f", "i": "i", "u": "u", "b": "b"}
    return dtype.kind == kinds[p["base"]] and dtype.itemsize == p["size"]


def _scalar_ok(p, value):
    if not isinstance(value, np.generic) or p["base"] in "vs":
        return False
    return value.dtype.kind == p["base"] and value.dtype.itemsize == p["size"]


def _describe(p):
    return f"{'const ' if p['const'] else ''}{p['cname']}{'*' if p['kind'] == 'p' else ''}"


class Marshalled:
    """Kernel arguments as a void*[] for emu_launch; aligned copies are written back by finish()."""

    def __init__(self, kernel, params, names, args):
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"kernel {kernel!r}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(params):
            raise TypeError(f"kernel {kernel!r} takes {len(params)} arguments, got {len(args)}")
        self.keep, self.copies, self.arrays = [], [], []
        self.aligned = []  # (allocation, aligned copy inside it): the sanitizer poisons the rest
        slots = []
        by_address = {}
        for i, (p, a) in enumerate(zip(params, args)):
            label = f"kernel {kernel!r}, parameter {i} ({names[i] or 'unnamed'}: {_describe(p)})"
            if p["kind"] == "p":
                slots.append(self._pointer(label, p, a, by_address))
            else:
                if not _scalar_ok(p, a):
                    got = (f"{type(a).__name__} {a.dtype}" if isinstance(a, np.generic)
                           else type(a).__name__)
                    raise TypeError(f"{label}: expected a NumPy scalar matching {p['cname']} "
                                    f"(e.g. np.{_numpy_name(p)}(...)), got {got}")
                buf = ctypes.create_string_buffer(a.tobytes(), max(p["size"], 8))
                self.keep.append(buf)
                slots.append(ctypes.addressof(buf))
        self.argv = (ctypes.c_void_p * max(len(slots), 1))(*slots)

    def _pointer(self, label, p, a, by_address):
        if a is None:
            value = ctypes.c_void_p(0)
        elif isinstance(a, np.ndarray):
            if not _dtype_ok(p, a.dtype):
                raise TypeError(f"{label}: got an array of dtype {a.dtype}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{label}: the array is not C-contiguous (a kernel sees a raw pointer)")
            self.arrays.append((a, p))
            addr = a.ctypes.data
            if a.nbytes and addr % ALIGN:
                if addr not in by_address:  # the same buffer passed twice keeps one copy
                    raw = np.empty(a.nbytes + ALIGN, np.uint8)
                    off = (-raw.ctypes.data) % ALIGN
                    copy = raw[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
                    copy[...] = a
                    by_address[addr] = copy
                    self.aligned.append((raw, copy))
                    if not p["const"] and a.flags.writeable:
                        self.copies.append((a, copy))
                    self.keep.append(raw)
                addr = by_address[addr].ctypes.data
            value = ctypes.c_void_p(addr)
        else:
            raise TypeError(f"{label}: expected a NumPy array (or None for a null pointer), "
                            f"got {type(a).__name__}")
        self.keep.append(value)
        return ctypes.addressof(value)

    def finish(self):
        for original, copy in self.copies:
            original[...] = copy


def _numpy_name(p):
    if p["base"] == "f":
        return {4: "float32", 8: "float64", 2: "float16"}.get(p["size"], "float32")
    if p["base"] == "b":
        return "bool_"
    return ("int" if p["base"] == "i" else "uint") + str(8 * p["size"])


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
            from .sanitized import run_sanitized
            run_sanitized(self, args, grid, block, shared_mem, coop, order, seed, timeout)
            return
        rc, msg = launch(m.library(), self._address, grid, block, shared_mem, marshalled.argv, coop,
                         order, seed, timeout)
        if rc:
            raise KernelFault(f"kernel {self.name!r}: {msg}", _FAULTS.get(rc, "internal"))
        marshalled.finish()


def launch(lib, address, grid, block, shared_mem, argv, coop, order, seed, timeout):
    """Run one launch; (0, "") or (fault code, message)."""
    err = ctypes.create_string_buffer(4096)
    rc = lib.emu_launch(address, (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), shared_mem,
                        argv, int(coop), ORDERS[order], seed, timeout, err, len(err))
    return rc, err.value.decode(errors="replace")


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
