"""Every kernel file compiles through NVRTC for sm_80 and sm_90, with no register spills, and
docs/kernel_resources.md is the ptxas resource table of the current kernels ($GPU_BPTT_WRITE_RESOURCES=1
rewrites it)."""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from gpu_bptt import nvrtc
from gpu_bptt.backends.cuda.kernel_loader import (CUPY_ADDED_OPTIONS, OPTIONS, kernel_files,
                                             kernel_source, name_expressions)
from tests.skips import NVRTC, skip

ARCHS = ("sm_80", "sm_90")
TABLE = Path(__file__).resolve().parents[2] / "docs" / "kernel_resources.md"
REWRITE = "GPU_BPTT_WRITE_RESOURCES"  # =1: rewrite the table instead of only comparing


@pytest.fixture(scope="module")
def resources():
    reason = nvrtc.unavailable_reason()
    if reason:
        skip(NVRTC, f"NVRTC is not available: {reason}")
    rows = []
    for file in kernel_files():
        for arch in ARCHS:
            report = nvrtc.resources(kernel_source(file), name=file, arch=arch,
                                     name_expressions=name_expressions(file),
                                     options=OPTIONS + CUPY_ADDED_OPTIONS)
            rows += [dict(r, file=file, arch=arch, name=expr) for expr, r in report.items()]
    return rows


def test_every_kernel_compiles_for_each_arch(resources):
    got = {(r["file"], r["arch"], r["name"]) for r in resources}
    for file in kernel_files():
        for arch in ARCHS:
            for expr in name_expressions(file):
                assert (file, arch, expr) in got


def test_no_register_spills(resources):
    spills = [f"{r['name']} ({r['arch']}): {r['spill_stores']} B stores, {r['spill_loads']} B loads"
              for r in resources if r["spill_stores"] or r["spill_loads"]]
    assert not spills, "register spills:\n" + "\n".join(spills)


def test_no_local_memory_stack(resources):
    # A stack frame means a per-thread array indexed at run time lives in local memory (a loop
    # that did not unroll): slow, though ptxas does not call it a spill.
    stacks = [f"{r['name']} ({r['arch']}): {r['stack_bytes']} bytes" for r in resources
              if r["stack_bytes"]]
    assert not stacks, "kernels with a stack frame:\n" + "\n".join(stacks)


def resource_table(rows) -> str:
    """docs/kernel_resources.md as ptxas reports `rows` with this NVRTC."""
    major, minor = nvrtc.version()
    lines = [
        "# Kernel resources",
        "",
        "Registers per thread, static shared memory per block and spills as ptxas reports them",
        f"(NVRTC {major}.{minor}, `--ptxas-options=-v`). Checked by `tests/cuda/test_nvrtc.py`, which",
        "fails on any spill and when this table differs from what ptxas reports; after changing a",
        f"kernel, rewrite it with `{REWRITE}=1 python -m pytest -q tests/cuda/test_nvrtc.py`",
        "and commit the result.",
        "",
        "| kernel | arch | registers | shared memory (bytes) | spills (bytes) | stack (bytes) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        spill = (r["spill_stores"] or 0) + (r["spill_loads"] or 0)
        lines.append(f"| `{r['name']}` | {r['arch']} | {r['registers']} | {r['shared_bytes']} | "
                     f"{spill} | {r['stack_bytes'] or 0} |")
    return "\n".join(lines) + "\n"


def test_resource_table_is_current(resources):
    want = resource_table(resources)
    if os.environ.get(REWRITE) == "1":
        TABLE.write_text(want, encoding="utf-8")
    have = TABLE.read_text(encoding="utf-8") if TABLE.exists() else ""
    diff = list(difflib.unified_diff(have.splitlines(), want.splitlines(), "committed", "ptxas",
                                     lineterm="", n=0))
    if diff:
        pytest.fail(f"docs/{TABLE.name} differs from what ptxas reports; rewrite it with "
                    f"`{REWRITE}=1 python -m pytest -q tests/cuda/test_nvrtc.py` and commit it:\n"
                    + "\n".join(diff[:40]), pytrace=False)
