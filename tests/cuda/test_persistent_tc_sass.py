"""The tensor-core persistent kernels (kernels/elman_persistent_tc_fwd.cu, _bwd.cu) as the GPU
would run them, from NVRTC's CUBIN and cuobjdump's SASS at sm_80 and sm_90: HMMA of the storage
type (HMMA.16816.F32.BF16 for bfloat16, HMMA.16816.F32 for float16, HMMA.1688.F32.TF32 for the
TF32 kernels) fed by LDSM (one ldmatrix.x4
for A and one .x2 for B per mma), no local memory, a main loop of HMMA and LDSM with no FFMA, and
the figures docs/persistent.md ("Tensor cores") lists: registers and the main loop's mix."""
from __future__ import annotations

from pathlib import Path

import pytest

from gpu_bptt import nvrtc, sass
from gpu_bptt.backends.cuda import persistent as P
from gpu_bptt.backends.cuda.kernel_loader import (CUPY_ADDED_OPTIONS, OPTIONS, kernel_source,
                                                  name_expressions)
from tests.skips import NVRTC, skip

ARCHS = ("sm_80", "sm_90")
DOC = Path(__file__).resolve().parents[2] / "docs" / "persistent.md"
HMMA = {"__nv_bfloat16": "HMMA.16816.F32.BF16", "__half": "HMMA.16816.F32",
        "float": "HMMA.1688.F32.TF32"}
A_LOAD, B_LOAD = "LDSM.16.M88.4", "LDSM.16.M88.2"


@pytest.fixture(scope="module")
def built():
    reason = sass.unavailable_reason()
    if reason:
        skip(NVRTC, f"NVRTC or cuobjdump is not available: {reason}")
    rows = {}
    for file in P.TC_FILES:
        for arch in ARCHS:
            res = nvrtc.build(kernel_source(file), name=file, arch=arch,
                              name_expressions=name_expressions(file),
                              options=OPTIONS + CUPY_ADDED_OPTIONS)
            report, code = nvrtc.report(res, name=file, arch=arch), sass.kernels(res)
            rows.update({(expr, arch): (report[expr], code[expr]) for expr in code})
    return rows


def hmma_type(name):
    return HMMA[name.split("<")[1].rstrip(">")]


def main_loop(k):
    """The inner loop with the most HMMA (the k-steps of ptc_tile)."""
    return max(k.loops, key=lambda lp: sum(n for op, n in lp.opcodes.items()
                                           if op.startswith("HMMA")))


def test_every_kernel_is_built(built):
    assert {n for n, _ in built} == {e for f in P.TC_FILES for e in name_expressions(f)}
    assert len(built) == 2 * len(HMMA) * len(ARCHS)


def test_hmma_of_the_storage_type_and_one_ldsm_pair_per_mma(built):
    for (name, arch), (_, k) in built.items():
        hmma = {op: n for op, n in k.opcodes.items() if op.startswith("HMMA")}
        n = hmma.get(hmma_type(name), 0)
        assert n > 0 and hmma == {hmma_type(name): n}, f"{name} ({arch}): {hmma}"
        ldsm = {op: c for op, c in k.opcodes.items() if op.startswith("LDSM")}
        assert ldsm == {A_LOAD: n, B_LOAD: n}, f"{name} ({arch}): {ldsm} for {n} HMMA"


def test_no_local_memory(built):
    for (name, arch), (r, k) in built.items():
        assert (r["spill_stores"], r["spill_loads"], r["stack_bytes"]) == (0, 0, 0), \
            f"{name} ({arch}): {r}"
        assert k.count("LDL") == 0 and k.count("STL") == 0, f"{name} ({arch})"
        assert r["shared_bytes"] == 0 and r["registers"] * P.THREADS <= 65536, f"{name}: {r}"


def test_main_loop_is_ldsm_and_hmma(built):
    """The k-steps unroll (4 a trip here): per HMMA one LDSM.x4 and one .x2, no FFMA, and the
    address arithmetic no more than 3 instructions per HMMA (a loop that lost its unrolling or
    gained a conversion falls below the 15% share)."""
    for (name, arch), (_, k) in built.items():
        lp = main_loop(k)
        n = lp.opcodes[hmma_type(name)]
        assert n >= 4 and lp.fmas == 0, f"{name} ({arch}): {dict(lp.opcodes)}"
        assert lp.opcodes[A_LOAD] == lp.opcodes[B_LOAD] == n, f"{name} ({arch}): {dict(lp.opcodes)}"
        assert n >= 0.15 * lp.instructions, f"{name} ({arch}): {n}/{lp.instructions}"


def doc_row(name, arch, r, k):
    lp = main_loop(k)
    n = lp.opcodes[hmma_type(name)]
    return (f"| `{name}` | {arch} | {r['registers']} | {k.opcodes[hmma_type(name)]} | "
            f"{n} / {lp.opcodes[A_LOAD] + lp.opcodes[B_LOAD]} / {lp.instructions} |")


def test_documented_figures_match(built):
    lines = DOC.read_text(encoding="utf-8").splitlines()
    want = [doc_row(name, arch, r, k) for (name, arch), (r, k) in sorted(built.items())]
    missing = [w for w in want if w not in lines]
    assert not missing, ("docs/persistent.md (Tensor cores) differs from ptxas and cuobjdump (NVRTC "
                         f"{'.'.join(map(str, nvrtc.version()))}); its rows should read:\n"
                         + "\n".join(want))
