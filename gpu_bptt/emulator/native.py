"""The C interface of a built emulator library (emu_entries, emu_launch): loading it, the kernel
arguments marshalled as a void*[], one launch and its fault codes (docs/architecture.md §3). Used by
module.py in this process and by sanitized.py in the sanitizer's child process."""
from __future__ import annotations

import ctypes

import numpy as np

ORDERS = {"forward": 0, "reverse": 1, "random": 2, "warps": 3}
ALIGN = 256   # cudaMalloc's alignment


class EmulatorError(RuntimeError):
    """Base class of the emulator's errors."""


class LaunchError(EmulatorError, ValueError):
    """A launch configuration a GPU would refuse (too many threads, too much shared memory)."""


class KernelFault(EmulatorError):
    """The kernel did something a GPU would hang or fail on. `kind` is one of: divergent_barrier,
    deadlock, grid_sync, timeout, trap, internal, sanitizer, address (an `ldmatrix` row address that
    is misaligned or not in shared memory)."""

    def __init__(self, message, kind):
        super().__init__(message)
        self.kind = kind


# emu_launch's return codes (enum Fault in cuda_emu.h)
FAULTS = {1: "divergent_barrier", 2: "deadlock", 3: "grid_sync", 4: "timeout", 5: "trap", 6: "internal", 7: "address"}


def fault(kernel, rc, message) -> KernelFault:
    """The KernelFault for emu_launch's return code `rc` (non-zero) and message."""
    return KernelFault(f"kernel {kernel!r}: {message}", FAULTS.get(rc, "internal"))


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


# 16-bit float types of cuda_fp16.h / cuda_bf16.h -> the name of the matching NumPy dtype
_SIXTEEN_BIT = {"__half": "float16", "__half2": "float16",
                "__nv_bfloat16": "bfloat16", "__nv_bfloat162": "bfloat16"}


def _dtype_ok(p, dtype):
    """Does an array of `dtype` fit a pointer parameter described by `p`?"""
    if p["base"] == "v" or p["size"] == 1:
        return True  # void* and byte pointers take any buffer
    if p["base"] == "s":  # vector types take arrays of their element type; other structs anything
        if p["cname"] in _SIXTEEN_BIT:  # the bits as uint16, or the NumPy / ml_dtypes type
            return dtype == np.uint16 or dtype.name == _SIXTEEN_BIT[p["cname"]]
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


def launch(lib, address, grid, block, shared_mem, argv, coop, order, seed, timeout):
    """Run one launch; (0, "") or (fault code, message)."""
    err = ctypes.create_string_buffer(4096)
    rc = lib.emu_launch(address, (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), shared_mem,
                        argv, int(coop), ORDERS[order], seed, timeout, err, len(err))
    return rc, err.value.decode(errors="replace")
