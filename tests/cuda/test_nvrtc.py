"""Every kernel file compiles through NVRTC for sm_80 and sm_90, with no register spills; each
kernel's product is a loop of FMAs in its SASS (cuobjdump), with a floor on the FMAs' share of it;
and docs/kernel_resources.md is the ptxas resource table and the SASS table of the current kernels
($GPU_BPTT_WRITE_RESOURCES=1 rewrites it)."""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from gpu_bptt import nvrtc, sass
from gpu_bptt.backends.cuda import registry
from gpu_bptt.backends.cuda.kernel_loader import (CUPY_ADDED_OPTIONS, OPTIONS, kernel_files,
                                             kernel_source, name_expressions)
from tests.skips import NVRTC, skip

ARCHS = ("sm_80", "sm_90")
TABLE = Path(__file__).resolve().parents[2] / "docs" / "kernel_resources.md"
REWRITE = "GPU_BPTT_WRITE_RESOURCES"  # =1: rewrite the table instead of only comparing


@pytest.fixture(scope="module")
def resources():
    reason = sass.unavailable_reason()
    if reason:
        skip(NVRTC, f"NVRTC or cuobjdump is not available: {reason}")
    rows = []
    for file in kernel_files():
        for arch in ARCHS:
            # One build gives both ptxas' report and the CUBIN cuobjdump reads.
            res = nvrtc.build(kernel_source(file), name=file, arch=arch,
                              name_expressions=name_expressions(file),
                              options=OPTIONS + CUPY_ADDED_OPTIONS)
            code = sass.kernels(res)
            rows += [dict(r, file=file, arch=arch, name=expr, sass=code[expr])
                     for expr, r in nvrtc.report(res, name=file, arch=arch).items()]
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


# Floor on the FMAs' share of the main inner loop, by kernel version; today's lowest share sits
# well above each (v1 16/90 = 18%, v2 and persistent v2 64/207 = 31%, v3 and gemm 256/545 = 47%),
# so a loop that gains address arithmetic or loses its unrolling falls below it.
FMA_SHARE_FLOOR = {"v1": 0.15, "v2": 0.25, "v3": 0.40, "gemm": 0.40}


def kernel_version(name):
    """"v1".."v4" of a step/persistent kernel, "gemm", or None (column_sum: no product)."""
    if name.startswith("gemm_"):
        return "gemm"
    base = name.split("<")[0]
    return base.rsplit("_", 1)[1] if base.startswith(("elman_", "gru_", "lstm_")) else None


#: a tensor-core kernel's T -> the HMMA its product must compile to (registry.TC_CTYPES)
HMMA = {"__nv_bfloat16": "HMMA.16816.F32.BF16", "__half": "HMMA.16816.F32",
        "float": "HMMA.1688.F32.TF32"}


def tensor_core(name):
    """Whether `name` is a tensor-core kernel (registry.TC_STEP's versions)."""
    return kernel_version(name) in registry.TC_STEP


def fma_product(r):
    """Whether the kernel's product is a loop of FMAs: not v4 (cuBLAS does its product), not a
    tensor-core kernel (HMMA loops: the step kernels' tc1 and the persistent ones,
    tests/cuda/test_persistent_tc_sass.py), not column_sum."""
    return (kernel_version(r["name"]) not in (None, "v4") and not tensor_core(r["name"])
            and not r["sass"].count("HMMA"))


def test_products_are_fma_loops(resources):
    # v4 runs only the epilogue (cuBLAS does its product); every other step, persistent and gemm
    # kernel must keep its product as a loop of FMAs, not unrolled away or gone (the
    # tensor-core kernels' is a loop of HMMA: test_tensor_core_products_are_hmma_loops).
    bad = [f"{r['name']} ({r['arch']}): loops (FMA/instructions) "
           f"{[(lp.fmas, lp.instructions) for lp in r['sass'].loops]}"
           for r in resources if fma_product(r) and not any(lp.fmas for lp in r["sass"].loops)]
    assert not bad, "kernels without an inner loop of FMAs:\n" + "\n".join(bad)


def test_tensor_core_products_are_hmma_loops(resources):
    """Each tensor-core kernel's product is a loop of HMMA of its type (and only that type) fed
    by LDSM (ldmatrix), at most 0.75 LDSM per HMMA for bf16/f16 (an x4 for A, an x4.trans for
    two column tiles of B per k-step of 4 HMMA: tc_tile.cuh; fewer where gates share A's), with
    no local memory anywhere."""
    tc = [r for r in resources if tensor_core(r["name"])]
    assert {r["file"] for r in tc} == {f.file for f in registry.TC_FAMILIES}
    for r in tc:
        want = HMMA[r["name"].split("<")[1].rstrip(">")]
        k, loop = r["sass"], r["sass"].mma_loop
        where = f"{r['name']} ({r['arch']})"
        assert {op for op in k.opcodes if op.startswith("HMMA")} == {want}, where
        assert loop is not None and loop.count("HMMA") >= 8 and loop.count("LDSM"), where
        if want != HMMA["float"]:
            assert 4 * loop.count("LDSM") <= 3 * loop.count("HMMA"), (where, loop.opcodes)
        assert k.count("LDL") == 0 and k.count("STL") == 0, where


def test_main_loop_fma_share(resources):
    low = []
    for r in resources:
        floor = FMA_SHARE_FLOOR.get(kernel_version(r["name"])) if fma_product(r) else None
        main = r["sass"].main_loop
        if floor is not None and main is not None and main.fmas < floor * main.instructions:
            low.append(f"{r['name']} ({r['arch']}): {main.fmas}/{main.instructions} "
                       f"< {floor:.0%}")
    assert not low, "main inner loop with too few FMAs:\n" + "\n".join(low)


def resource_table(rows) -> str:
    """docs/kernel_resources.md as ptxas and cuobjdump report `rows` with this NVRTC."""
    major, minor = nvrtc.version()
    lines = [
        "# Kernel resources",
        "",
        "Registers per thread, static shared memory per block and spills as ptxas reports them",
        f"(NVRTC {major}.{minor}, `--ptxas-options=-v`), and the instruction mix of each kernel's",
        "SASS as cuobjdump of the same release shows it (section SASS). Checked by",
        "`tests/cuda/test_nvrtc.py`, which fails on any spill and when these tables differ from",
        "what ptxas and cuobjdump report; after changing a",
        f"kernel, rewrite it with `{REWRITE}=1 python -m pytest -q tests/cuda/test_nvrtc.py`",
        "and commit the result.",
        "",
        "## ptxas",
        "",
        "| kernel | arch | registers | shared memory (bytes) | spills (bytes) | stack (bytes) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        spill = (r["spill_stores"] or 0) + (r["spill_loads"] or 0)
        lines.append(f"| `{r['name']}` | {r['arch']} | {r['registers']} | {r['shared_bytes']} | "
                     f"{spill} | {r['stack_bytes'] or 0} |")
    lines += [
        "",
        "## SASS",
        "",
        "Instructions of each kernel as `cuobjdump -sass` shows them: all of them, the FMAs (FFMA,",
        "DFMA) among them, and the main inner loop (of the loops holding no other loop, a loop",
        "being the instructions from a backward branch's target to the branch: the one with the",
        "most FMAs) as FMAs/instructions. The same test checks that every kernel with a product",
        "has an inner loop of FMAs and that the FMAs' share of the main loop stays above a floor.",
        "",
        "| kernel | arch | instructions | FMAs | main loop (FMAs/instructions) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        k, main = r["sass"], r["sass"].main_loop
        loop = f"{main.fmas}/{main.instructions}" if main else "none"
        lines.append(f"| `{r['name']}` | {r['arch']} | {k.instructions} | {k.fmas} | {loop} |")
    lines += [
        "",
        "## Tensor-core kernels",
        "",
        "The product loop of each tensor-core kernel (the innermost loop with the most HMMA): its",
        "instructions, HMMA (tensor-core multiply-adds), LDSM (ldmatrix loads) and FFMA among",
        "them, the HMMA share of the loop and LDSM per HMMA. The rest of the loop stages the next",
        "chunk of both operands into shared memory (16-bit rows by 16-byte loads where they allow,",
        "else and for TF32 element by element).",
        "",
        "| kernel | arch | loop instructions | HMMA | LDSM | FFMA | HMMA share | LDSM per HMMA |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        loop = r["sass"].mma_loop if tensor_core(r["name"]) else None
        if loop is None:
            continue
        n, m = loop.count("HMMA"), loop.count("LDSM")
        lines.append(f"| `{r['name']}` | {r['arch']} | {loop.instructions} | {n} | {m} | "
                     f"{loop.count('FFMA')} | {n / loop.instructions:.1%} | {m / n:.2f} |")
    return "\n".join(lines) + "\n"


def test_resource_table_is_current(resources):
    want = resource_table(resources)
    if os.environ.get(REWRITE) == "1":
        TABLE.write_text(want, encoding="utf-8")
    have = TABLE.read_text(encoding="utf-8") if TABLE.exists() else ""
    diff = list(difflib.unified_diff(have.splitlines(), want.splitlines(), "committed", "now",
                                     lineterm="", n=0))
    if diff:
        pytest.fail(f"docs/{TABLE.name} differs from what ptxas and cuobjdump report; rewrite it with "
                    f"`{REWRITE}=1 python -m pytest -q tests/cuda/test_nvrtc.py` and commit it:\n"
                    + "\n".join(diff[:40]), pytrace=False)
