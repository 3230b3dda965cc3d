"""The tensor-core test kernels (tests/emulator/kernels/mma.cu and tc_tile.cu, through
kernels/mma.cuh and kernels/tc_tile.cuh) compile for sm_80 and sm_90 into HMMA instructions of
their type and LDSM for ldmatrix, with no spills, no stack frame and no local-memory traffic
(cuobjdump's SASS and ptxas' report)."""
from __future__ import annotations

import os

import pytest

from gpu_bptt import nvrtc, sass
from gpu_bptt.backends.cuda.kernel_loader import CUPY_ADDED_OPTIONS, OPTIONS
from tests.skips import NVRTC, skip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_KERNELS = os.path.join(ROOT, "tests", "emulator", "kernels")
ARCHS = ("sm_80", "sm_90")
# kernel -> (HMMA opcode, HMMAs, LDSM opcodes and their count): one HMMA per mma.sync executed
# (the loops unroll fully: 64x64x64 is 4 warps x 8 n-tiles x 4 k-steps of m16n8k16 = 32 per warp,
# 64 of m16n8k8), one LDSM per ldmatrix.
EXPECTED = {
    "mma16816_direct<__nv_bfloat16, 0>": ("HMMA.16816.F32.BF16", 1, {}),
    "mma16816_direct<__half, 0>": ("HMMA.16816.F32", 1, {}),
    "mma16816_from_float<0>": ("HMMA.16816.F32.BF16", 1, {}),
    "mma1688_tf32_direct": ("HMMA.1688.F32.TF32", 1, {}),
    "mma_tiled64<__nv_bfloat16, 0>": ("HMMA.16816.F32.BF16", 32, {"LDSM.16.M88.4": 4, "LDSM.16.MT88.2": 32}),
    "mma_tiled64<__half, 0>": ("HMMA.16816.F32", 32, {"LDSM.16.M88.4": 4, "LDSM.16.MT88.2": 32}),
    "mma_tiled64_tf32": ("HMMA.1688.F32.TF32", 64, {"LDSM.16.M88.4": 8, "LDSM.16.M88.2": 64}),
}


# tc_tile.cu: kernel -> (HMMA opcode, LDSM opcodes); its k loop (K at run time) unrolls as ptxas
# likes, but each k-step is one ldmatrix.x4 (A), NT / 2 ldmatrix.x4[.trans] (B) and NT mma.
TILE_EXPECTED = {
    "tile_product<__nv_bfloat16>": ("HMMA.16816.F32.BF16", {"LDSM.16.M88.4": 1, "LDSM.16.MT88.4": 2}),
    "tile_product<__half>": ("HMMA.16816.F32", {"LDSM.16.M88.4": 1, "LDSM.16.MT88.4": 2}),
    "tile_product_tf32": ("HMMA.1688.F32.TF32", {"LDSM.16.M88.4": 3}),
}
NT = 4


def _build(file, exprs, arch):
    reason = sass.unavailable_reason()
    if reason:
        skip(NVRTC, f"NVRTC or cuobjdump is not available: {reason}")
    with open(os.path.join(TEST_KERNELS, file), encoding="utf-8") as f:
        src = f.read()
    res = nvrtc.compile_source(src, name=file, name_expressions=tuple(exprs), arch=arch,
                               cubin=True, include_dirs=(os.path.join(ROOT, "kernels"),),
                               options=OPTIONS + CUPY_ADDED_OPTIONS + ("--ptxas-options=-v",))
    return arch, sass.kernels(res), nvrtc.report(res, name=file, arch=arch)


@pytest.fixture(scope="module", params=ARCHS)
def built(request):
    return _build("mma.cu", EXPECTED, request.param)


@pytest.fixture(scope="module", params=ARCHS)
def built_tile(request):
    return _build("tc_tile.cu", TILE_EXPECTED, request.param)


@pytest.mark.parametrize("kernel", EXPECTED)
def test_hmma_of_the_right_type(built, kernel):
    arch, code, _ = built
    opcode, count, _ = EXPECTED[kernel]
    hmma = {op: n for op, n in code[kernel].opcodes.items() if op.startswith("HMMA")}
    assert hmma == {opcode: count}, f"{kernel} ({arch}): {hmma}"


@pytest.mark.parametrize("kernel", EXPECTED)
def test_ldmatrix_is_ldsm(built, kernel):
    arch, code, _ = built
    ldsm = {op: n for op, n in code[kernel].opcodes.items() if op.startswith("LDSM")}
    assert ldsm == EXPECTED[kernel][2], f"{kernel} ({arch}): {ldsm}"


@pytest.mark.parametrize("kernel", EXPECTED)
def test_no_local_memory(built, kernel):
    arch, code, resources = built
    r = resources[kernel]
    assert (r["spill_stores"], r["spill_loads"], r["stack_bytes"]) == (0, 0, 0), f"{kernel} ({arch}): {r}"
    assert code[kernel].count("LDL") == 0 and code[kernel].count("STL") == 0, kernel


@pytest.mark.parametrize("kernel", TILE_EXPECTED)
def test_tile_is_ldsm_and_hmma_only(built_tile, kernel):
    arch, code, resources = built_tile
    k, (hmma, ldsm) = code[kernel], TILE_EXPECTED[kernel]
    steps = k.opcodes[hmma] // NT  # k-steps in the SASS (the unrolled body and the remainder)
    got = {op: n for op, n in k.opcodes.items() if op.startswith(("HMMA", "LDSM"))}
    assert steps >= 2 and got == {hmma: NT * steps, **{op: n * steps for op, n in ldsm.items()}}, \
        f"{kernel} ({arch}): {got}"
    r = resources[kernel]
    assert (r["spill_stores"], r["spill_loads"], r["stack_bytes"]) == (0, 0, 0), f"{kernel} ({arch}): {r}"
    assert k.count("LDL") == 0 and k.count("STL") == 0, kernel
