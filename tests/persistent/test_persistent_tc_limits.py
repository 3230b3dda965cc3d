"""Limits of the tensor-core persistent kernels (16-bit storage, TF32) without running them: the
shared-memory need, the largest H per GPU documented in docs/persistent.md ("Tensor cores"), and
the error naming the limit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpu_bptt.backends.cuda import persistent as P

DOC = Path(__file__).resolve().parents[2] / "docs" / "persistent.md"
#: the documented table's device column
DEVICE = {"sm_80": "A100, sm_80", "sm_90": "H100 SXM, sm_90"}


def test_plan_bytes_follow_the_kernel_layout():
    """(cols + min(B, 16)) rows of ceil(H / 16)·16 + 8 16-bit elements (TF32: ceil(H / 8)·8 + 4
    floats), plus 8 x 128 floats."""
    pl = P.tc_plan(P.KNOWN_DEVICES["sm_90"], 8, 1024, "bfloat16")
    assert (pl.grid, pl.cols, pl.smem) == (128, 8, (8 + 8) * 1032 * 2 + 4096)
    assert P.tc_plan(P.KNOWN_DEVICES["sm_90"], 8, 1024, "float32").smem == (8 + 8) * 1028 * 4 + 4096
    pl = P.tc_plan(P.DeviceLimits(4, 48 * 1024), 19, 13, "float16")  # 4 columns; 16 rows a chunk
    assert (pl.grid, pl.cols, pl.smem) == (4, 4, (4 + 16) * 24 * 2 + 4096)
    assert P.tc_plan(P.DeviceLimits(4, 48 * 1024), 1, 6, "bfloat16").grid == 3  # as float's
    assert P.tc_row(16, "bfloat16") == 24 and P.tc_row(17, "float16") == 40
    assert P.tc_row(8, "float32") == 12 and P.tc_row(9, "float32") == 20
    with pytest.raises(ValueError, match=r"dtype: the tensor-core persistent kernels take"):
        P.tc_plan(P.KNOWN_DEVICES["sm_90"], 8, 1024, "float64")


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_max_hidden_is_the_last_h_that_fits(arch, dtype):
    limits = P.KNOWN_DEVICES[arch]
    for B in (1, 8, 16, 64):
        H = P.tc_max_hidden(limits, B, dtype)
        assert P.tc_plan(limits, B, H, dtype).smem <= limits.smem_per_block
        with pytest.raises(ValueError):
            P.tc_plan(limits, B, H + 1, dtype)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_the_16_bit_slice_takes_about_sqrt2_times_the_float32_h(arch):
    """Half the bytes per element of a slice that grows with H²: about √2 times the largest H
    (less at B >= 16, where the chunk holds 16 rows against float32's 8)."""
    limits = P.KNOWN_DEVICES[arch]
    r1 = P.tc_max_hidden(limits, 1, "bfloat16") / P.max_hidden(limits, 1, np.float32)
    r16 = P.tc_max_hidden(limits, 16, "float16") / P.max_hidden(limits, 16, np.float32)
    assert 1.35 < r1 < 1.45 and 1.25 < r16 < r1, (r1, r16)


def test_documented_limits_match_the_code():
    lines = DOC.read_text(encoding="utf-8").splitlines()
    for arch, limits in P.KNOWN_DEVICES.items():
        row = next(line for line in lines if line.startswith(f"| {DEVICE[arch]} |"))
        cells = [int(c) for c in row.strip("|").split("|")[1:]]
        tc = [P.tc_max_hidden(limits, B, dt) for dt in ("bfloat16", "float32") for B in (1, 8, 16)]
        assert cells == [P.max_hidden(limits, 1, np.float32), P.max_hidden(limits, 8, np.float32),
                         *tc], row
        assert tc[:3] == [P.tc_max_hidden(limits, B, "float16") for B in (1, 8, 16)]


def test_plan_error_names_the_limit():
    # (23 + 16) rows x 3016 x 2 bytes + 4096 = 239344 (H = 3000 over 132 multiprocessors)
    with pytest.raises(ValueError, match=r"algo='persistent' cannot run: V's slice does not fit "
                                         r"on chip: H=3000 needs 239344 bytes .* above the "
                                         r"device's 232448 bytes per block; the largest H that "
                                         r"fits here is 2912"):
        P.tc_plan(P.KNOWN_DEVICES["sm_90"], 16, 3000, "bfloat16")
    with pytest.raises(ValueError, match="cooperative launches"):
        P.tc_plan(P.DeviceLimits(4, 1 << 20, cooperative=False), 1, 8, "bfloat16")
