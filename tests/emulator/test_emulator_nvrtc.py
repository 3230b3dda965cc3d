"""The emulator's test kernels are valid CUDA: NVRTC compiles them for sm_90 and sm_80."""
import glob
import os

import pytest

from emulator_helpers import KERNELS, KERNELS_ROOT
from gpu_bptt import nvrtc
from tests.skips import NVRTC, skip

TEMPLATES = {"warp_reduce.cu": ("block_sum<float>", "block_sum<double>"),
             "mma.cu": ("mma_tiled64<__nv_bfloat16, 0>", "mma_tiled64<__half, 0>",
                        "mma16816_direct<__nv_bfloat16, 0>", "mma16816_direct<__half, 0>"),
             "tc_tile.cu": ("tile_product<__nv_bfloat16>", "tile_product<__half>")}


def _require_nvrtc(path):
    reason = nvrtc.unavailable_reason()
    if reason:
        skip(NVRTC, reason)
    with open(path, encoding="utf-8") as f:
        if "<cooperative_groups.h>" in f.read() and nvrtc.headers_unavailable_reason():
            skip(NVRTC, nvrtc.headers_unavailable_reason())


@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(KERNELS, "*.cu"))))
def test_kernels_compile_with_nvrtc(name, arch):
    path = os.path.join(KERNELS, name)
    _require_nvrtc(path)
    exprs = TEMPLATES.get(name, ())
    cubin = arch == "sm_90"  # ptxas runs for sm_90 only, to keep the suite quick
    res = nvrtc.compile_file(path, arch=arch, cubin=cubin, name_expressions=exprs,
                             include_dirs=(KERNELS_ROOT,),  # kernels/mma.cuh
                             options=("-std=c++17",) + ("--ptxas-options=-v",) * cubin)
    assert res.ptx and (res.cubin or not cubin)
    assert set(res.lowered_names) == set(exprs)
    if not cubin:
        return
    kernels = {r["kernel"] for r in nvrtc.parse_ptxas_resources(res.log)}
    assert set(res.lowered_names.values()) <= kernels
    if name == "matmul.cu":
        info = {r["kernel"]: r for r in nvrtc.parse_ptxas_resources(res.log)}["matmul"]
        assert info["shared_bytes"] == 2 * 16 * 16 * 4 and info["registers"] > 0


def test_compile_error_carries_the_log():
    if nvrtc.unavailable_reason():
        skip(NVRTC, nvrtc.unavailable_reason())
    with pytest.raises(nvrtc.NvrtcError, match="undefined_thing"):
        nvrtc.compile_source('extern "C" __global__ void k() { undefined_thing(); }')


def test_parse_ptxas_resources():
    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z4stepIfEvPKT_PS0_i' for 'sm_90'
ptxas info    : Function properties for _Z4stepIfEvPKT_PS0_i
ptxas         .     8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 8448 bytes smem, 380 bytes cmem[0]
ptxas info    : Compiling entry function 'plain' for 'sm_90'
ptxas info    : Function properties for plain
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers
"""
    a, b = nvrtc.parse_ptxas_resources(log)
    assert a == dict(kernel="_Z4stepIfEvPKT_PS0_i", registers=255, spill_stores=12, spill_loads=16,
                     stack_bytes=8, shared_bytes=8448, barriers=1, const_bytes=380)
    assert b["kernel"] == "plain" and b["registers"] == 10 and b["shared_bytes"] == 0
