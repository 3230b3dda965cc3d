"""Limits of the persistent algorithm without running it: the plan, the documented largest H,
errors naming the limit, the "auto" rule's fallbacks, and the ptxas report (no spills, nothing
but dynamic shared memory deciding co-residency)."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from gpu_bptt import nvrtc
from gpu_bptt.backends.cuda import persistent as P
from gpu_bptt.backends.cuda.kernel_loader import (CUPY_ADDED_OPTIONS, OPTIONS, kernel_source,
                                             name_expressions)
from tests.skips import NVRTC, skip

DOC = Path(__file__).resolve().parents[2] / "docs" / "persistent.md"


def test_plan_splits_columns_over_the_multiprocessors():
    limits = P.KNOWN_DEVICES["sm_90"]
    pl = P.plan(limits, 8, 1024, np.float32, "v1")
    assert (pl.grid, pl.cols, pl.smem) == (128, 8, (8 + 8) * 1024 * 4)
    pl = P.plan(limits, 8, 1024, np.float32)  # v2 adds 8 warps x 64 partial sums
    assert P.DEFAULT_VERSION == "v2" and pl.smem == ((8 + 8) * 1024 + 8 * 64) * 4
    pl = P.plan(P.DeviceLimits(4, 48 * 1024), 3, 13, np.float64)
    assert (pl.grid, pl.cols, pl.smem) == (4, 4, ((4 + 3) * 13 + 8 * 64) * 8)  # last: 1 column
    assert P.plan(P.DeviceLimits(4, 48 * 1024), 1, 6, np.float32).grid == 3


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_max_hidden_is_the_last_h_that_fits(arch):
    limits = P.KNOWN_DEVICES[arch]
    for B in (1, 8, 64):
        for dt in (np.float32, np.float64):
            for version in P.VERSIONS:
                H = P.max_hidden(limits, B, dt, version)
                P.plan(limits, B, H, dt, version)
                with pytest.raises(ValueError):
                    P.plan(limits, B, H + 1, dt, version)


def test_documented_limits_match_the_code():
    text = DOC.read_text(encoding="utf-8")
    for arch, limits in P.KNOWN_DEVICES.items():
        row = next(line for line in text.splitlines() if f"({arch})" in line and line.startswith("|"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        want = [P.max_hidden(limits, 1, np.float32), P.max_hidden(limits, 8, np.float32),
                P.max_hidden(limits, 1, np.float64), P.max_hidden(limits, 8, np.float64)]
        assert [int(c) for c in cells[-4:]] == want, row
        assert int(cells[1]) == limits.multiprocessors
        assert f"({limits.smem_per_block} B)" in cells[2]


def test_plan_error_names_the_limit():
    with pytest.raises(ValueError, match=r"algo='persistent' cannot run: V's slice does not fit "
                                         r"on chip: H=2048 .* 166912 bytes per block; the largest H "
                                         r"that fits here is 1728"):
        P.plan(P.KNOWN_DEVICES["sm_80"], 8, 2048, np.float32, "v1")
    with pytest.raises(ValueError, match=r"H=2048 needs 223232 bytes .* is 1717"):
        P.plan(P.KNOWN_DEVICES["sm_80"], 8, 2048, np.float32)  # v2: 2 KB more for its sums
    with pytest.raises(ValueError, match="cooperative launches"):
        P.plan(P.DeviceLimits(4, 1 << 20, cooperative=False), 1, 8, np.float32)


class FakeBackend:
    """Just what choose() asks of a backend, with a configurable occupancy."""

    def __init__(self, limits, per_sm=1):
        self.limits, self.per_sm = limits, per_sm
        self.loader = self

    def persistent_limits(self):
        return self.limits

    def persistent_blocks_per_sm(self, fn, smem):
        return self.per_sm

    def function(self, file, name):
        return name


@pytest.fixture
def fresh_warnings(monkeypatch):
    from gpu_bptt import backends

    monkeypatch.setattr(backends, "_warned", set())


def test_choose_auto_rule_and_warned_fallbacks(caplog, fresh_warnings):
    bk = FakeBackend(P.DeviceLimits(4, 48 * 1024))
    assert P.choose(bk, "step", 1, 8, np.float32) == "step"
    assert P.choose(bk, "auto", P.AUTO_MAX_BATCH, 8, np.float32) == "persistent"
    assert P.choose(bk, "persistent", 1000, 8, np.float32) == "persistent"
    with caplog.at_level(logging.DEBUG, logger="gpu_bptt"):  # the rule itself: logged only
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert P.choose(bk, "auto", P.AUTO_MAX_BATCH + 1, 8, np.float32) == "step"
    msgs = [r.getMessage() for r in caplog.records]
    assert any(f"B={P.AUTO_MAX_BATCH + 1} > {P.AUTO_MAX_BATCH}" in m for m in msgs), msgs
    with pytest.warns(RuntimeWarning, match="algo='auto' runs the step kernels: algo='persistent' "
                                            "cannot run: V's slice does not fit on chip: H=512"):
        assert P.choose(bk, "auto", 2, 512, np.float32) == "step"


def test_grid_that_cannot_be_co_resident_is_an_error_or_a_fallback(fresh_warnings):
    bk = FakeBackend(P.DeviceLimits(4, 48 * 1024), per_sm=0)
    with pytest.raises(ValueError, match="cannot be co-resident"):
        P.choose(bk, "persistent", 2, 16, np.float32)
    with pytest.warns(RuntimeWarning, match="cannot be co-resident"):
        assert P.choose(bk, "auto", 2, 16, np.float32) == "step"


def test_unknown_co_residency_is_an_error_or_a_fallback(fresh_warnings):
    """No occupancy query (None): the launch could be shrunk or fail, so it is not attempted."""
    bk = FakeBackend(P.DeviceLimits(4, 48 * 1024), per_sm=None)
    with pytest.raises(ValueError, match="co-resident is unknown"):
        P.choose(bk, "persistent", 2, 16, np.float32)
    with pytest.warns(RuntimeWarning, match="co-resident is unknown"):
        assert P.choose(bk, "auto", 2, 16, np.float32) == "step"
    assert "co-resident is unknown" in P.unavailable_reason(bk)
    assert P.unavailable_reason(FakeBackend(P.DeviceLimits(4, 48 * 1024))) is None


def test_kernels_that_do_not_compile_are_an_error_or_a_warned_fallback(fresh_warnings):
    class NoHeaders(FakeBackend):
        def function(self, file, name):
            raise RuntimeError('kern.cu(65): catastrophic error: could not open source file '
                               '"cooperative_groups.h"\nCompilation terminated.')

    bk = NoHeaders(P.DeviceLimits(4, 48 * 1024))
    with pytest.raises(ValueError, match=r"algo='persistent' cannot run: elman_persistent_fwd.cu "
                                         r"does not compile here \(RuntimeError: .*cooperative_groups"):
        P.choose(bk, "persistent", 2, 16, np.float32)
    with pytest.warns(RuntimeWarning, match=r"algo='auto' runs the step kernels: .* does not compile"):
        assert P.choose(bk, "auto", 2, 16, np.float32) == "step"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per cause
        assert P.choose(bk, "auto", 2, 16, np.float32) == "step"


def test_describe_reports_limits_and_rule():
    lines = P.describe(P.KNOWN_DEVICES["sm_90"])
    assert "132 blocks" in lines[0] and "232448 bytes" in lines[0]
    assert "persistent (v2): largest H: float32 2640 at B=1, 2244 at B>=8" in lines[1]
    assert "float32 2641 at B=1" in P.describe(P.KNOWN_DEVICES["sm_90"], "v1")[1]
    assert f"B <= {P.AUTO_MAX_BATCH}" in lines[2]
    lines = P.describe(P.KNOWN_DEVICES["sm_90"], reason="no occupancy query")
    assert lines[2] == ("persistent: UNAVAILABLE here, algo='auto' always runs the step kernels: "
                        "no occupancy query")


@pytest.fixture(scope="module")
def ptxas():
    reason = nvrtc.unavailable_reason() or nvrtc.headers_unavailable_reason()
    if reason:
        skip(NVRTC, f"NVRTC cannot compile the persistent kernels here: {reason}")
    rows = {}
    for file in (P.FWD_FILE, P.BWD_FILE):
        for arch in ("sm_80", "sm_90"):
            report = nvrtc.resources(kernel_source(file), name=file, arch=arch,
                                     name_expressions=name_expressions(file),
                                     options=OPTIONS + CUPY_ADDED_OPTIONS)
            rows.update({(expr, arch): r for expr, r in report.items()})
    return rows


def test_ptxas_no_spills_and_only_dynamic_shared_memory(ptxas):
    for (name, arch), r in ptxas.items():
        assert not r["spill_stores"] and not r["spill_loads"], f"{name} {arch} spills: {r}"
        assert r["shared_bytes"] == 0, f"{name} {arch}: static shared memory {r['shared_bytes']}"
        # One block of 256 threads per multiprocessor (the launch bounds) must fit the 64K
        # registers of a multiprocessor, so that registers never decide co-residency.
        assert r["registers"] * P.THREADS <= 65536, f"{name} {arch}: {r['registers']} registers"


def test_documented_registers_match_ptxas(ptxas):
    text = DOC.read_text(encoding="utf-8")
    for name in {n for n, _ in ptxas}:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        got = (ptxas[(name, "sm_80")]["registers"], ptxas[(name, "sm_90")]["registers"])
        assert (int(cells[1]), int(cells[2])) == got, (
            f"docs/persistent.md lists {cells[1:3]} registers for {name}, ptxas (NVRTC "
            f"{'.'.join(map(str, nvrtc.version()))}) reports {got}: update the table")
