"""Compiling a .cu file for the emulator: generated entry table, g++ invocation, the .so cache.

The unchanged CUDA source is compiled as C++20 with cuda_emu.h force-included. After the source, a
generated table lists the kernels (plain `__global__` names found in the source, plus the
`name_expressions`), so Python can look them up by name and check arguments against the
parameter types the compiler saw. `extern __shared__` arrays become undefined thread-local symbols;
a small C file defines them all as one aligned thread-local array (the per-block dynamic shared
memory), found with readelf so that namespaces and templates need no parsing.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
HEADERS = ("cuda_emu.h", "cuda_emu_runtime.h", "cooperative_groups.h", "cuda_fp16.h", "cuda_bf16.h")
ABI = "gpu_bptt-emulator-1"
# Dynamic shared memory capacity per block: the most a launch may opt in to (227 KB, sm_90).
DYN_SMEM_CAPACITY = 232448

BASE_FLAGS = ("-std=c++20", "-fPIC", "-fno-gnu-unique", "-fvisibility=hidden", "-fno-strict-aliasing",
              "-pthread", "-Wno-unknown-pragmas", "-Wno-attributes")
FAST_FLAGS = ("-O2",)
SANITIZE_FLAGS = ("-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                  "-fno-sanitize-recover=all")


class CompileError(RuntimeError):
    """g++ rejected the kernel source; the message carries the compiler's output."""


def compiler():
    return os.environ.get("CXX") or "g++"


@functools.lru_cache(maxsize=None)
def compiler_version(cxx):
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"{cxx} cannot be run: {e}"
    if out.returncode != 0:
        return None, f"{cxx} --version failed: {out.stderr.strip()[:200]}"
    return out.stdout.splitlines()[0] if out.stdout else cxx, None


@functools.lru_cache(maxsize=None)
def check_compiler(cxx):
    """None when `cxx` preprocesses C++20 with <source_location> and <atomic>, else why not."""
    version, err = compiler_version(cxx)
    if err:
        return err
    probe = ("#include <source_location>\n#include <atomic>\n"
             "#if __cplusplus < 202002L\n#error needs C++20\n#endif\n")
    try:
        out = subprocess.run([cxx, "-std=c++20", "-x", "c++", "-E", "-o", os.devnull, "-"],
                             input=probe, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{cxx} cannot be run: {e}"
    if out.returncode != 0:
        return f"{cxx} ({version}) cannot compile C++20: {out.stderr.strip()[:300]}"
    return None


def cache_dir():
    """$GPU_BPTT_CACHE_DIR/emulator, else $XDG_CACHE_HOME/gpu_bptt/emulator, else ~/.cache/..."""
    root = os.environ.get("GPU_BPTT_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "gpu_bptt")
    return os.path.join(root, "emulator")


# ------------------------------------------------------------------ parsing the source
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"')
_BOUNDS = re.compile(r"__launch_bounds__\s*\([^()]*\)")
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]', re.M)


def strip_comments(text):
    """Comments (and string contents) blanked out, keeping line breaks and offsets usable."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return _COMMENT.sub(blank, text)


def _balanced(text, i):
    """Index just past the parenthesis group that starts at text[i] == '('."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def _split_params(inner):
    parts, depth, cur = [], 0, ""
    for c in inner:
        if c in "(<[{":
            depth += 1
        elif c in ")>]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    if cur.strip():
        parts.append(cur)
    names = []
    for p in parts:
        p = p.split("=")[0]
        p = re.sub(r"\[[^\]]*\]", "", p).strip()
        toks = re.findall(r"[A-Za-z_]\w*", p)
        names.append(toks[-1] if len(toks) >= 2 and not p.endswith("*") else None)
    if names == [None] and parts and parts[0].strip() in ("", "void"):
        return []
    return names


def find_kernels(source):
    """{name: (param names, is_template)} for each `__global__` function in `source`."""
    text = _STRING.sub('""', strip_comments(source))
    text = _BOUNDS.sub(" ", text)
    out = {}
    for m in re.finditer(r"\b__global__\b", text):
        paren = text.find("(", m.end())
        if paren < 0:
            continue
        head = text[m.end():paren]
        ids = re.findall(r"[A-Za-z_]\w*", head)
        if not ids:
            continue
        name = ids[-1]
        start = max(text.rfind(";", 0, m.start()), text.rfind("}", 0, m.start()))
        is_template = re.search(r"\btemplate\b", text[start + 1:m.start()] + head) is not None
        params = _split_params(text[paren + 1:_balanced(text, paren) - 1])
        out.setdefault(name, (params, is_template))
    return out


def _resolve(name, quoted, cur_dir, include_dirs):
    dirs = ([cur_dir] if quoted and cur_dir else []) + list(include_dirs)
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return os.path.abspath(p)
    return None


def local_includes(source, src_dir, include_dirs):
    """[(path, text)] of every file reachable through #include from `source` that lives in the
    source's directory or the -I directories (system headers are not followed)."""
    seen, out, todo = set(), [], [(source, src_dir)]
    while todo:
        text, cur = todo.pop()
        for m in _INCLUDE.finditer(strip_comments(text)):
            p = _resolve(m.group(2), m.group(1) == '"', cur, include_dirs)
            if p and p not in seen:
                seen.add(p)
                with open(p, encoding="utf-8", errors="replace") as f:
                    t = f.read()
                out.append((p, t))
                todo.append((t, os.path.dirname(p)))
    return sorted(out)


def parse_options(options):
    """NVRTC-style options -> (include dirs, g++ defines). Options that only matter to a GPU
    compiler (-arch, -std, --use_fast_math, -lineinfo, ...) are ignored."""
    incs, defs = [], []
    opts = list(options)
    i = 0
    while i < len(opts):
        o = opts[i]
        nxt = opts[i + 1] if i + 1 < len(opts) else None
        if o in ("-I", "--include-path") and nxt is not None:
            incs.append(nxt)
            i += 1
        elif o.startswith("--include-path="):
            incs.append(o.split("=", 1)[1])
        elif o.startswith("-I"):
            incs.append(o[2:])
        elif o in ("-D", "--define-macro") and nxt is not None:
            defs.append("-D" + nxt)
            i += 1
        elif o.startswith("--define-macro="):
            defs.append("-D" + o.split("=", 1)[1])
        elif o.startswith("-D") or o.startswith("-U"):
            defs.append(o)
        i += 1
    return [os.path.abspath(d) for d in incs], defs


# ------------------------------------------------------------------ building
def generated_source(source, display_name, entries):
    """The translation unit: the user's source, then the entry table."""
    lines = [f'#line 1 "{display_name}"', source, "", '#line 1 "<emulator entry table>"',
             "static const ::emu::Entry emu_entry_table[] = {"]
    for expr in entries:
        lines.append(f"    ::emu::make_entry<&{expr}>({_c_string(expr)}),")
    lines.append("    ::emu::Entry{nullptr, nullptr, 0, nullptr},")
    lines.append("};")
    lines.append("EMU_API const ::emu::Entry* emu_entries(int* n) "
                 f"{{ *n = {len(entries)}; return emu_entry_table; }}")
    return "\n".join(lines) + "\n"


def _c_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dyn_smem_source(symbols, init_functions=()):
    """C source defining every undefined thread-local symbol as one shared dynamic array, and the
    thread-local init functions (_ZTH...) g++ may call for them as no-ops (the array needs none)."""
    cap = DYN_SMEM_CAPACITY if symbols else 16
    first = symbols[0] if symbols else "emu_dyn_smem_unused"
    lines = ["#include <stddef.h>",
             f'__attribute__((visibility("hidden"), aligned(256))) __thread unsigned char '
             f'emu_dyn_store[{cap}] __asm__("{first}");']
    for s in symbols[1:]:
        lines.append(f'__asm__(".globl {s}\\n.hidden {s}\\n.set {s}, {first}");')
    for i, s in enumerate(init_functions):
        lines.append(f'__attribute__((visibility("hidden"))) void emu_tls_init_{i}(void) __asm__("{s}");')
        lines.append(f"void emu_tls_init_{i}(void) {{}}")
    lines.append('__attribute__((visibility("hidden"))) void* emu_dyn_smem_base(void) '
                 "{ return emu_dyn_store; }")
    lines.append(f'__attribute__((visibility("hidden"))) size_t emu_dyn_smem_capacity(void) '
                 f"{{ return {cap}; }}")
    return "\n".join(lines) + "\n"


def undefined_tls_symbols(obj):
    """(undefined thread-local variables, undefined _ZTH init functions) of an object file."""
    out = subprocess.run(["readelf", "-sW", obj], capture_output=True, text=True)
    if out.returncode != 0:
        raise CompileError(f"readelf failed on {obj}: {out.stderr.strip()}")
    syms, inits = [], []
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) >= 8 and f[6] == "UND":
            if f[3] == "TLS" and f[7] not in syms:
                syms.append(f[7])
            elif f[7].startswith("_ZTH") and f[7] not in inits:
                inits.append(f[7])
    return syms, inits


def _run(cmd, what, cwd):
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if out.returncode != 0:
        msg = out.stderr.strip()
        if len(msg) > 6000:
            msg = msg[:6000] + "\n..."
        raise CompileError(f"{what} failed:\n{msg}")


def _plan(source, display_name, src_dir, options, entries, sanitize):
    """(cache path of the .so, g++ flags, include dirs) for one build."""
    cxx = compiler()
    incs, defs = parse_options(options)
    search = ([src_dir] if src_dir else []) + incs
    flags = list(BASE_FLAGS) + list(SANITIZE_FLAGS if sanitize else FAST_FLAGS) + defs
    h = hashlib.sha256()
    for part in [ABI, compiler_version(cxx)[0] or cxx, display_name, source, "\0".join(flags),
                 "\0".join(search), "\0".join(entries), str(DYN_SMEM_CAPACITY)]:
        h.update(part.encode() + b"\0\1")
    for name in HEADERS:
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(f.read())
    for path, text in local_includes(source, src_dir, incs):
        h.update(path.encode() + b"\0" + text.encode() + b"\0\1")
    key = h.hexdigest()[:32]
    stem = os.path.splitext(os.path.basename(display_name))[0] or "kernel"
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:40]
    target = os.path.join(cache_dir(), f"{stem}-{key}{'-asan' if sanitize else ''}.so")
    return target, flags, incs


def cached_path(source, *, display_name, src_dir, options, entries, sanitize):
    """Where build() keeps (or would keep) this library; nothing is compiled."""
    return _plan(source, display_name, src_dir, options, entries, sanitize)[0]


def build(source, *, display_name, src_dir, options, entries, sanitize):
    """Path to the cached .so for this source; compiles it when not cached.

    entries: C++ expressions naming kernels, e.g. "matmul" or "reduce<float>".
    """
    cxx = compiler()
    reason = check_compiler(cxx)
    if reason:
        raise CompileError(reason)
    target, flags, incs = _plan(source, display_name, src_dir, options, entries, sanitize)
    if os.path.exists(target):
        return target
    out_dir = os.path.dirname(target)
    stem = os.path.basename(target).split("-")[0]
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f"{stem}-", dir=out_dir)
    try:
        tu = os.path.join(work, "tu.cpp")
        with open(tu, "w", encoding="utf-8") as f:
            f.write(generated_source(source, display_name, entries))
        inc_flags = [f"-I{HERE}"] + [f"-iquote{src_dir}"] * bool(src_dir) + [f"-I{d}" for d in incs]
        obj = os.path.join(work, "tu.o")
        _run([cxx, *flags, "-include", os.path.join(HERE, "cuda_emu.h"), *inc_flags, "-c", tu, "-o", obj],
             f"compiling {display_name} for the emulator", work)
        dyn = os.path.join(work, "dyn.c")
        with open(dyn, "w", encoding="utf-8") as f:
            f.write(dyn_smem_source(*undefined_tls_symbols(obj)))
        tmp_so = os.path.join(work, "out.so")
        link_flags = [fl for fl in flags if not fl.startswith("-std=")]
        _run([cxx, *link_flags, "-shared", obj, "-x", "c", dyn, "-o", tmp_so],
             f"linking {display_name} for the emulator", work)
        os.replace(tmp_so, target)  # atomic: parallel builds of the same key are harmless
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
