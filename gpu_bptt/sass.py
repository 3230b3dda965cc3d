"""The SASS of a CUBIN through cuobjdump: per kernel, its instruction count, its FMAs and its
inner loops, so that a CPU-only machine can check what the GPU would run.

cuobjdump comes from the `nvidia-cuda-cuobjdump` wheel of the loaded NVRTC's CUDA major (the
test extra pins both) or from $CUDA_HOME/bin; a cuobjdump of another major may not read the
CUBIN, so only one of the same major is used. `cuobjdump -sass` runs nvdisasm from its own
folder (the `nvidia-cuda-nvdisasm` wheel, or the toolkit).
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field

from gpu_bptt import nvrtc

_cuobjdump = None
_RELEASE = re.compile(r"release (\d+)\.")
_FUNCTION = re.compile(r"^\s*Function : (\S+)", re.M)
_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);")
_BRANCH = re.compile(r"\bBRA\b.*?0x([0-9a-f]+)")
_FMA = re.compile(r"\b[FD]FMA\b")
_OPCODE = re.compile(r"^(?:@!?U?P\w+\s+)?(\S+)")  # the opcode with its modifiers, after a predicate


def _release(path):
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    m = _RELEASE.search(out.stdout)
    return int(m.group(1)) if m else None


def cuobjdump_path():
    """The cuobjdump of the loaded NVRTC's CUDA major, or None."""
    global _cuobjdump
    if _cuobjdump is None:
        major = nvrtc.version()[0]
        _cuobjdump = next((p for p in nvrtc.tool_paths("cuobjdump") if os.path.isfile(p)
                           and _release(p) == major), "")
    return _cuobjdump or None


def unavailable_reason():
    """None when NVRTC and a cuobjdump of its CUDA major are found, else a sentence saying why not."""
    reason = nvrtc.unavailable_reason()
    if reason or cuobjdump_path():
        return reason
    major = nvrtc.version()[0]
    return (f"cuobjdump of CUDA {major} (the NVRTC found is {major}) was not found; install "
            f"`nvidia-cuda-cuobjdump` of CUDA {major} (the test extra brings it), or set CUDA_HOME")


@dataclass
class Loop:
    fmas: int          # FFMA/DFMA instructions in the body
    instructions: int  # instructions from the branch's target to the branch, both included
    opcodes: Counter = field(default_factory=Counter, compare=False)  # the body's, as Kernel.opcodes

    def count(self, prefix):
        """How many of the body's instructions have an opcode starting with `prefix`."""
        return _count(self.opcodes, prefix)


@dataclass
class Kernel:
    instructions: int
    fmas: int
    loops: list        # the inner loops (those holding no other loop), in address order
    opcodes: Counter = field(default_factory=Counter)  # e.g. {"HMMA.16816.F32.BF16": 32, ...}
    every_loop: list = field(default_factory=list)  # all loops, nested ones too, in address order

    def count(self, prefix):
        """How many instructions have an opcode starting with `prefix` (e.g. "HMMA", "LDL")."""
        return _count(self.opcodes, prefix)

    @property
    def mma_loop(self):
        """The loop with the most HMMA (tensor-core) instructions, the innermost (fewest
        instructions) of those, or None without any (it may hold loops: a staging loop)."""
        best = max(self.every_loop, key=lambda lp: (lp.count("HMMA"), -lp.instructions),
                   default=None)
        return best if best is not None and best.count("HMMA") else None

    @property
    def main_loop(self):
        """The inner loop with the most FMAs (the fewer instructions on a tie), or None."""
        return max(self.loops, key=lambda lp: (lp.fmas, -lp.instructions), default=None)


def _count(opcodes, prefix):
    return sum(n for op, n in opcodes.items() if op == prefix or op.startswith(prefix + "."))


def disassemble(cubin: bytes) -> str:
    """`cuobjdump -sass` of `cubin`."""
    path = cuobjdump_path()
    if path is None:
        raise RuntimeError(unavailable_reason())
    with tempfile.TemporaryDirectory() as tmp:
        file = os.path.join(tmp, "module.cubin")
        with open(file, "wb") as f:
            f.write(cubin)
        out = subprocess.run([path, "-sass", file], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"cuobjdump -sass failed: {out.stderr.strip()}")
    return out.stdout


def parse(sass: str) -> dict:
    """{mangled kernel name: Kernel} from `cuobjdump -sass` text."""
    parts = _FUNCTION.split(sass)
    return {name: _kernel(body) for name, body in zip(parts[1::2], parts[2::2])}


def _kernel(body):
    found = _INSTRUCTION.findall(body)
    addr = {int(a, 16): i for i, (a, _) in enumerate(found)}
    text = [t for _, t in found]
    spans = []  # (first, last) instruction index of each backward branch's loop
    for i, (a, t) in enumerate(found):
        m = _BRANCH.search(t)  # a branch to itself (the padding after EXIT) is no loop
        if m and int(m.group(1), 16) < int(a, 16):
            spans.append((addr[int(m.group(1), 16)], i))
    inner = [(s, e) for s, e in spans
             if not any((s2, e2) != (s, e) and s <= s2 and e2 <= e for s2, e2 in spans)]
    ops = [m.group(1) if (m := _OPCODE.match(x.strip())) else None for x in text]
    def loop(s, e):
        return Loop(sum(1 for x in text[s:e + 1] if _FMA.search(x)), e - s + 1,
                    Counter(op for op in ops[s:e + 1] if op))

    opcodes = Counter(op for op in ops if op)
    return Kernel(len(text), sum(1 for x in text if _FMA.search(x)),
                  [loop(s, e) for s, e in sorted(inner)], opcodes,
                  [loop(s, e) for s, e in sorted(set(spans))])


def kernels(result) -> dict:
    """{name expression: Kernel} for the CUBIN of an nvrtc.CompileResult (cubin=True)."""
    by_symbol = parse(disassemble(result.cubin))
    out = {}
    for expr, symbol in result.lowered_names.items():
        if symbol not in by_symbol:
            raise RuntimeError(f"cuobjdump shows no function {symbol} ({expr})")
        out[expr] = by_symbol[symbol]
    return out
