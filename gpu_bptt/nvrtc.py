"""NVRTC through ctypes: compile CUDA source without a GPU, a driver or CuPy.

Used to prove that kernels are valid CUDA (tests on CPU-only machines) and to read ptxas
resource reports (registers, spills, shared memory). The library comes from the
`nvidia-cuda-nvrtc` wheel (extra `gpu_bptt[nvrtc]`) or a CUDA install under $CUDA_HOME.
NVRTC builds in the basic device headers but not <cooperative_groups.h>; that one (and the CCCL
headers it includes) comes from the `nvidia-cuda-runtime` and `nvidia-cuda-cccl` wheels, and must
be of the library's CUDA major: where several majors are installed (the cuda12 extra beside the
test extra's CUDA 13), the newest major with both is used.
"""
from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass, field

_lib = None
_lib_error = None
_includes = []  # include folders of the same CUDA major as _lib


def _nvidia_roots():
    try:
        import nvidia  # namespace package installed by the nvidia-* wheels
    except ImportError:
        return []
    return list(getattr(nvidia, "__path__", []))


def _cuda_home():
    return os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")


_LIB = re.compile(r"libnvrtc\.so\.(\d+)$")  # not libnvrtc.alt.so.N, not the builtins


def _lib_dirs():
    """Folders that may hold libnvrtc: every wheel's lib/, then $CUDA_HOME/lib64."""
    dirs = [os.path.join(root, d, "lib") for root in _nvidia_roots() for d in _listdir(root)]
    return dirs + ([os.path.join(_cuda_home(), "lib64")] if _cuda_home() else [])


def _include_dirs():
    """Folders that may hold the CUDA headers: every wheel's include/, then $CUDA_HOME/include."""
    dirs = [os.path.join(root, d, "include") for root in _nvidia_roots() for d in _listdir(root)]
    return dirs + ([os.path.join(_cuda_home(), "include")] if _cuda_home() else [])


def tool_paths(name):
    """Where a CUDA tool (e.g. "cuobjdump") may be: every wheel's bin/, then $CUDA_HOME/bin."""
    dirs = [os.path.join(root, d, "bin") for root in _nvidia_roots() for d in _listdir(root)]
    dirs += [os.path.join(_cuda_home(), "bin")] if _cuda_home() else []
    return [os.path.join(d, name) for d in dirs]


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _libraries():
    """{CUDA major: path of its libnvrtc.so.N}, the first found for each major."""
    out = {}
    for d in _lib_dirs():
        for name in _listdir(d):
            if (m := _LIB.match(name)):
                out.setdefault(int(m.group(1)), os.path.join(d, name))
    return out


def _cccl_major(inc):
    """The CCCL major version of the headers in `inc`, or None."""
    try:
        with open(os.path.join(inc, "cuda", "std", "__cccl", "version.h"), encoding="utf-8",
                  errors="replace") as f:
            m = re.search(r"#define\s+CCCL_VERSION\s+(\d+)", f.read())
    except OSError:
        return None
    return int(m.group(1)) // 1000000 if m else None


def _header_sets():
    """{CUDA major: include folders} for every complete set of headers NVRTC needs for
    <cooperative_groups.h>: the runtime's headers and the CCCL ones (<nv/target>) of the same
    CUDA major. CUDA 13's wheel and a toolkit keep CCCL inside include/ or include/cccl; CUDA 12's
    CCCL wheel has a folder of its own, holding CCCL 2.x (CUDA 13 ships CCCL 3.x)."""
    incs = _include_dirs()
    out = {}
    for inc in incs:
        major = header_major(inc)
        if major is None or major in out or not os.path.isfile(
                os.path.join(inc, "cooperative_groups.h")):
            continue
        dirs = [inc] + [c for c in [os.path.join(inc, "cccl")] if os.path.isdir(c)]
        if not any(map(_has_nv_target, dirs)):
            dirs += [c for c in incs if header_major(c) is None and _has_nv_target(c)
                     and _cccl_major(c) in (None, major - 10)][:1]
        if any(map(_has_nv_target, dirs)):
            out[major] = dirs
    return out


def _has_nv_target(inc):
    return os.path.isfile(os.path.join(inc, "nv", "target"))


def _candidates():
    """[(path, include folders)] to try for NVRTC, best first. The library and the headers must
    come from one CUDA major (NVRTC 12 cannot read CUDA 13's headers, nor the reverse): every
    major with both, newest first; then the libraries without their headers, newest first (plain
    kernels still compile); then the system loader's names."""
    libs, heads = _libraries(), _header_sets()
    order = sorted(libs, key=lambda m: (m in heads, m), reverse=True)
    return [(libs[m], heads.get(m, [])) for m in order] + [
        (name, []) for name in ("libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12")]


def _declare(lib):
    P, C, S, I = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int
    pp, pc = ctypes.POINTER(P), ctypes.POINTER(C)
    sigs = {
        "nvrtcVersion": [ctypes.POINTER(I), ctypes.POINTER(I)],
        "nvrtcCreateProgram": [pp, C, C, I, pc, pc],
        "nvrtcDestroyProgram": [pp],
        "nvrtcAddNameExpression": [P, C],
        "nvrtcCompileProgram": [P, I, pc],
        "nvrtcGetProgramLogSize": [P, ctypes.POINTER(S)],
        "nvrtcGetProgramLog": [P, C],
        "nvrtcGetPTXSize": [P, ctypes.POINTER(S)],
        "nvrtcGetPTX": [P, C],
        "nvrtcGetCUBINSize": [P, ctypes.POINTER(S)],
        "nvrtcGetCUBIN": [P, C],
        "nvrtcGetLoweredName": [P, C, pc],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, I
    lib.nvrtcGetErrorString.argtypes = [I]
    lib.nvrtcGetErrorString.restype = C


def _load():
    global _lib, _lib_error, _includes
    if _lib is None and _lib_error is None:
        for path, includes in _candidates():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            _declare(lib)
            _lib, _includes = lib, includes
            break
        else:
            _lib_error = ("the NVRTC library was not found; install it with "
                          "`pip install nvidia-cuda-nvrtc` (or gpu_bptt[nvrtc]), or set CUDA_HOME")
    return _lib


def unavailable_reason():
    """None when NVRTC can be loaded, else a sentence saying why not."""
    return None if _load() is not None else _lib_error


def header_major(inc):
    """The CUDA major version of the headers in `inc` (from CUDART_VERSION), or None."""
    try:
        with open(os.path.join(inc, "cuda_runtime_api.h"), encoding="utf-8", errors="replace") as f:
            m = re.search(r"#define\s+CUDART_VERSION\s+(\d+)", f.read())
    except OSError:
        return None
    return int(m.group(1)) // 1000 if m else None


def cuda_include_dirs(major):
    """The first include folder holding <cooperative_groups.h> of CUDA `major` (wheels, then
    $CUDA_HOME/include), as a one-item list; [] if none. For CuPy's NVRTC, which brings its own
    CCCL headers."""
    for inc in _include_dirs():
        if header_major(inc) == major and os.path.isfile(os.path.join(inc, "cooperative_groups.h")):
            return [inc]
    return []


def headers_unavailable_reason():
    """None when NVRTC and the headers of <cooperative_groups.h> of its CUDA major are found, else
    a sentence saying why not."""
    if _load() is None:
        return _lib_error
    if _includes:
        return None
    major = version()[0]
    return (f"<cooperative_groups.h> and the CCCL headers of CUDA {major} (the NVRTC found is "
            f"{major}) were not found; install `nvidia-cuda-runtime` and `nvidia-cuda-cccl` of "
            f"CUDA {major} (gpu_bptt[nvrtc] brings NVRTC and both for the newest CUDA), or set "
            "CUDA_HOME")


class NvrtcError(RuntimeError):
    """An NVRTC call failed; `.log` holds the compiler's messages."""

    def __init__(self, message, log=""):
        super().__init__(message + (f"\n{log}" if log else ""))
        self.log = log


@dataclass
class CompileResult:
    log: str                      # compiler (and ptxas, with --ptxas-options=-v) messages
    ptx: bytes | None = None
    cubin: bytes | None = None    # only when cubin=True
    lowered_names: dict = field(default_factory=dict)  # name expression -> mangled symbol


def _require():
    lib = _load()
    if lib is None:
        raise RuntimeError(_lib_error)
    return lib


def _check(lib, rc, what, log=""):
    if rc != 0:
        raise NvrtcError(f"{what} failed: {lib.nvrtcGetErrorString(rc).decode()}", log)


def _blob(lib, prog, size_fn, get_fn):
    n = ctypes.c_size_t()
    if getattr(lib, size_fn)(prog, ctypes.byref(n)) != 0 or n.value == 0:
        return None
    buf = ctypes.create_string_buffer(n.value)
    getattr(lib, get_fn)(prog, buf)
    return buf.raw[: n.value]


def _c_strings(items):
    items = [s.encode() for s in items]
    return (ctypes.c_char_p * max(len(items), 1))(*items)


def version():
    """(major, minor) of the loaded NVRTC."""
    lib = _require()
    a, b = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(a), ctypes.byref(b)), "nvrtcVersion")
    return a.value, b.value


def compile_source(source, *, name="kernel.cu", options=(), name_expressions=(), headers=None,
                   include_dirs=(), arch="sm_90", cubin=False):
    """Compile CUDA `source` with NVRTC; return a CompileResult.

    options: extra NVRTC options, e.g. ("-std=c++17", "--ptxas-options=-v").
    arch: "sm_90", "sm_80", ...; cubin=True builds a CUBIN for that arch (ptxas runs, and the
        output of `--ptxas-options=-v` lands in the log), otherwise PTX for the matching compute_XX.
    name_expressions: e.g. ("f<float>",); their mangled names come back in `lowered_names`.
    headers: {include name: text} served from memory.
    include_dirs: searched first, then the CUDA headers of the loaded NVRTC's major version.
    Raises NvrtcError (carrying the log) when compilation fails.
    """
    lib = _require()
    headers = dict(headers or {})
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(),
                                       len(headers), _c_strings(headers.values()),
                                       _c_strings(headers.keys())), "nvrtcCreateProgram")
    try:
        for expr in name_expressions:
            _check(lib, lib.nvrtcAddNameExpression(prog, expr.encode()), "nvrtcAddNameExpression")
        dirs = list(include_dirs) + [d for d in _includes if d not in include_dirs]
        opts = [f"--gpu-architecture={arch if cubin else arch.replace('sm_', 'compute_')}"]
        opts += [f"--include-path={d}" for d in dirs] + list(options)
        rc = lib.nvrtcCompileProgram(prog, len(opts), _c_strings(opts))
        log = _blob(lib, prog, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog") or b""
        log = log.rstrip(b"\0").decode(errors="replace")
        _check(lib, rc, f"compiling {name} for {arch}", log)
        res = CompileResult(log=log, ptx=_blob(lib, prog, "nvrtcGetPTXSize", "nvrtcGetPTX"))
        if cubin:
            res.cubin = _blob(lib, prog, "nvrtcGetCUBINSize", "nvrtcGetCUBIN")
        for expr in name_expressions:
            out = ctypes.c_char_p()
            _check(lib, lib.nvrtcGetLoweredName(prog, expr.encode(), ctypes.byref(out)),
                   f"nvrtcGetLoweredName({expr})")
            res.lowered_names[expr] = out.value.decode()
        return res
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def compile_file(path, **kw):
    """compile_source on a file; the file's directory is searched first for "x.cuh" includes."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    dirs = [os.path.dirname(os.path.abspath(path))] + list(kw.pop("include_dirs", ()))
    return compile_source(src, name=os.path.basename(path), include_dirs=dirs, **kw)


_ENTRY = re.compile(r"Compiling entry function '([^']+)'|Function properties for (\S+)")
_USED = re.compile(r"Used (\d+) registers")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_STACK = re.compile(r"(\d+) bytes stack frame")
_SMEM = re.compile(r"(\d+) bytes smem")
_CMEM = re.compile(r"(\d+) bytes cmem\[0\]")
_BARS = re.compile(r"used (\d+) barriers")


def parse_ptxas_resources(log):
    """Per-kernel figures from a ptxas -v log (compile_source(..., cubin=True,
    options=("--ptxas-options=-v",)).log).

    Returns a list of dicts {kernel, registers, spill_stores, spill_loads, stack_bytes,
    shared_bytes, barriers, const_bytes}, in log order; `kernel` is the mangled symbol (map
    template instances through CompileResult.lowered_names); a figure absent from the log is None.
    """
    out, by_name, cur = [], {}, None
    for line in log.splitlines():
        if (m := _ENTRY.search(line)):
            name = m.group(1) or m.group(2)
            cur = by_name.get(name)
            if cur is None:
                cur = by_name[name] = dict(
                    kernel=name, registers=None, spill_stores=None, spill_loads=None,
                    stack_bytes=None, shared_bytes=None, barriers=None, const_bytes=None)
                out.append(cur)
            continue
        if cur is None:
            continue
        if (m := _SPILL.search(line)):
            cur["spill_stores"], cur["spill_loads"] = int(m.group(1)), int(m.group(2))
        if (m := _STACK.search(line)):
            cur["stack_bytes"] = int(m.group(1))
        if (m := _USED.search(line)):
            cur["registers"] = int(m.group(1))
            cur["shared_bytes"] = int(m.group(1)) if (m := _SMEM.search(line)) else 0
            cur["barriers"] = int(m.group(1)) if (m := _BARS.search(line)) else 0
            if (m := _CMEM.search(line)):
                cur["const_bytes"] = int(m.group(1))
    return out


def build(source, *, name, name_expressions, arch, options=()):
    """compile_source to a CUBIN for `arch` with ptxas' report (`--ptxas-options=-v`) in the log."""
    return compile_source(source, name=name, name_expressions=name_expressions, arch=arch,
                          cubin=True, options=tuple(options) + ("--ptxas-options=-v",))


def report(result, *, name, arch):
    """{name expression: parse_ptxas_resources row} for every template instance of a build();
    NvrtcError if ptxas reports nothing for one."""
    by_symbol = {r["kernel"]: r for r in parse_ptxas_resources(result.log)}
    out = {}
    for expr, symbol in result.lowered_names.items():
        row = by_symbol.get(symbol)
        if row is None:
            raise NvrtcError(f"{name} {arch}: no ptxas report for {expr}", result.log)
        out[expr] = row
    return out


def resources(source, *, name, name_expressions, arch, options=()):
    """report() of build(): the ptxas figures of every template instance of `source`."""
    return report(build(source, name=name, name_expressions=name_expressions, arch=arch,
                        options=options), name=name, arch=arch)
